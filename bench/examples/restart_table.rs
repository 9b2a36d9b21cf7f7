//! What a restart costs per connection in the table: N established connections (one in 10
//! persistent) are saved as an orderly stop saves them (`restart::codec::encode`), read back
//! (`decode`) and inserted into a fresh table by a core, as the next xlvsd's workers do.
//! Prints the bytes and the milliseconds of each step (median of 3 runs).
//!
//!   restart_table [N]   (default 1000000)

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant as Clock};

use xlvs_control::restart::codec;
use xlvs_dataplane::core::conn::{Tables, TemplateKey};
use xlvs_dataplane::core::inject::{ConnSpec, Spec, TemplateSpec};
use xlvs_dataplane::core::service::{Fwd, Proto, Snapshot};
use xlvs_dataplane::core::tcp_state::TcpState;
use xlvs_dataplane::core::{Core, Instant};

fn filled(n: u32, now: Instant) -> Arc<Tables> {
    let tables = Arc::new(Tables::new(n as usize + n as usize / 8 + 1024));
    let mut core = Core::new(tables.clone());
    let snap = Snapshot::default();
    let vip: IpAddr = Ipv4Addr::new(192, 0, 2, 100).into();
    for i in 0..n {
        let caddr = IpAddr::V4(Ipv4Addr::from_bits(0x0a00_0000 + (i >> 6)));
        let daddr = IpAddr::V4(Ipv4Addr::new(10, 10, 0, 11 + (i % 8) as u8));
        let template = (i % 10 == 0).then(|| {
            let key = TemplateKey {
                proto: 6,
                caddr,
                vaddr: vip,
                vport: 80,
            };
            let t = Spec::Template(TemplateSpec {
                key,
                daddr,
                dport: 80,
                fwd: Fwd::Masq,
                timeout: Duration::from_secs(300),
                origin: None,
            });
            core.insert(now, &snap, &t).expect("template");
            key
        });
        let c = Spec::Conn(ConnSpec {
            proto: Proto::Tcp,
            caddr,
            cport: 1024 + (i & 63) as u16,
            vaddr: vip,
            vport: 80,
            daddr,
            dport: 80,
            fwd: Fwd::Masq,
            state: TcpState::Established,
            timeout: Duration::from_secs(900),
            client_hop: None,
            template,
            origin: None,
        });
        core.insert(now, &snap, &c).expect("connection");
    }
    tables
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let now = Instant(1_000_000_000_000);
    let src = filled(n, now);
    let (mut enc, mut dec, mut ins) = (Vec::new(), Vec::new(), Vec::new());
    let mut bytes = 0;
    for _ in 0..3 {
        let t = Clock::now();
        let mut out = Vec::new();
        codec::encode(&src, now, |b| {
            out.extend_from_slice(b);
            Ok::<(), ()>(())
        })
        .expect("encode");
        enc.push(t.elapsed().as_secs_f64() * 1e3);
        bytes = out.len();
        let t = Clock::now();
        let r = codec::decode(&out, now).expect("decode");
        dec.push(t.elapsed().as_secs_f64() * 1e3);
        let dst = Arc::new(Tables::new(n as usize + n as usize / 8 + 1024));
        let mut core = Core::new(dst.clone());
        let snap = Snapshot::default();
        let t = Clock::now();
        for s in &r.specs {
            core.insert(now, &snap, s).expect("insert");
        }
        ins.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(dst.len(), src.len());
    }
    println!(
        "{n} connections (+{} templates): file {:.1} MB; save {:.0} ms, read {:.0} ms, insert {:.0} ms (one core; medians of 3)",
        src.templates(),
        bytes as f64 / 1e6,
        median(enc),
        median(dec),
        median(ins)
    );
}
