//! The saved table read back into a fresh one: every connection and template, its state,
//! realserver, origin and template link, its time left less the time between; broken files
//! refused whole, never half read.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use xlvs_dataplane::core::conn::{Tables, TemplateKey};
use xlvs_dataplane::core::inject::{ConnSpec, Spec, TemplateSpec};
use xlvs_dataplane::core::service::{Fwd, Proto, Snapshot};
use xlvs_dataplane::core::tcp_state::TcpState;
use xlvs_dataplane::core::{Core, Instant};

use super::codec::{self, Error};
use crate::conns;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const PEER: &str = "192.0.2.250";

/// `n` connections of ours and `n / 4` learned from [`PEER`] (one in 10 persistent), with
/// timeouts from 20 to 519 s; and two IPv6 ones.
fn filled(n: u32, now: Instant) -> Arc<Tables> {
    let tables = Arc::new(Tables::new(1 << 16));
    let mut core = Core::new(tables.clone());
    let snap = Snapshot::default();
    let states = [
        TcpState::Established,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
    ];
    for i in 0..n + n / 4 {
        let origin = (i >= n).then(|| ip(PEER));
        let caddr = IpAddr::V4(std::net::Ipv4Addr::from_bits(0xC633_6400 + (i >> 8)));
        let daddr = ip(if i % 2 == 0 { "10.0.0.11" } else { "10.0.0.12" });
        let udp = i % 7 == 3;
        let template = (i % 10 == 0).then(|| {
            let key = TemplateKey {
                proto: if udp { 17 } else { 6 },
                caddr,
                vaddr: ip("198.51.100.1"),
                vport: 80,
            };
            let t = Spec::Template(TemplateSpec {
                key,
                daddr,
                dport: 8080,
                fwd: Fwd::Masq,
                timeout: Duration::from_secs(300),
                origin,
            });
            core.insert(now, &snap, &t).unwrap();
            key
        });
        let c = Spec::Conn(ConnSpec {
            proto: if udp { Proto::Udp } else { Proto::Tcp },
            caddr,
            cport: 1024 + (i & 0xff) as u16 * 7,
            vaddr: ip("198.51.100.1"),
            vport: 80,
            daddr,
            dport: 8080,
            fwd: if i % 3 == 0 { Fwd::Route } else { Fwd::Masq },
            state: if udp {
                TcpState::None
            } else {
                states[i as usize % states.len()]
            },
            timeout: Duration::from_secs(20 + i as u64 % 500),
            client_hop: None,
            template,
            origin,
        });
        core.insert(now, &snap, &c).unwrap();
    }
    for k in 0..2u16 {
        let c = Spec::Conn(ConnSpec {
            proto: Proto::Tcp,
            caddr: ip("2001:db8::c"),
            cport: 40000 + k,
            vaddr: ip("2001:db8::100"),
            vport: 443,
            daddr: ip("2001:db8:1::11"),
            dport: 443,
            fwd: Fwd::Masq,
            state: TcpState::Established,
            timeout: Duration::from_secs(900),
            client_hop: None,
            template: None,
            origin: None,
        });
        core.insert(now, &snap, &c).unwrap();
    }
    tables
}

fn saved(tables: &Tables, now: Instant) -> (Vec<u8>, u64) {
    let mut out = Vec::new();
    let n = codec::encode(tables, now, |b| {
        out.extend_from_slice(b);
        Ok::<(), ()>(())
    })
    .unwrap();
    (out, n)
}

fn restore(specs: &[Spec], now: Instant) -> Arc<Tables> {
    let tables = Arc::new(Tables::new(1 << 16));
    let mut core = Core::new(tables.clone());
    let snap = Snapshot::default();
    for s in specs {
        core.insert(now, &snap, s).unwrap();
    }
    tables
}

type Key = (
    String,
    String,
    std::net::SocketAddr,
    std::net::SocketAddr,
    std::net::SocketAddr,
);

fn listing(t: &Tables, now: Instant) -> std::collections::BTreeMap<Key, (u64, Option<IpAddr>)> {
    conns::entries(t, now)
        .into_iter()
        .map(|e| {
            (
                (e.proto.into(), e.state.into(), e.client, e.virt, e.dest),
                (e.expire, e.peer),
            )
        })
        .collect()
}

#[test]
fn a_saved_table_comes_back_whole_less_the_time_between() {
    let t0 = Instant(1_000_000_000_000);
    let src = filled(2000, t0);
    let (file, n) = saved(&src, t0);
    let mut templates = 0;
    src.v4.for_each_template(|_| templates += 1);
    // 2 500 connections, their templates, each persistent connection's again after it.
    assert_eq!(n, 2502 + templates + 250);

    // Read back at once: everything, each with its time left, its origin and its link.
    let r = codec::decode(&file, t0).unwrap();
    assert_eq!((r.saved, r.expired, r.refused), (n, 0, 0));
    let dst = restore(&r.specs, t0);
    assert_eq!(dst.len(), src.len());
    let (a, b) = (listing(&src, t0), listing(&dst, t0));
    assert_eq!(a.len(), b.len());
    for (k, (ea, pa)) in &a {
        let (eb, pb) = b.get(k).unwrap_or_else(|| panic!("missing {k:?}"));
        assert!(ea.abs_diff(*eb) <= 1, "{k:?}: {ea} s vs {eb} s");
        assert_eq!(pa, pb, "{k:?}: origin");
    }
    assert!(b.values().any(|(_, p)| *p == Some(ip(PEER))));
    assert!(b.values().any(|(_, p)| p.is_none()));
    let linked = |t: &Tables| {
        let mut n = 0;
        t.v4.for_each(|c| n += c.persistent() as u32);
        n
    };
    assert_eq!((linked(&src), linked(&dst)), (250, 250));

    // 60 s later: those with at most 60 s left are gone, the others have 60 s less.
    let later = Instant(t0.0 + 60_000_000_000);
    let r = codec::decode(&file, later).unwrap();
    assert_eq!(r.age, Duration::from_secs(60));
    assert!(r.expired > 0);
    let dst = restore(&r.specs, later);
    let b = listing(&dst, later);
    let kept = a.iter().filter(|(_, (e, _))| *e > 61).count();
    let gone = a.iter().filter(|(_, (e, _))| *e < 59).count();
    assert!(
        b.len() >= kept && b.len() <= a.len() - gone,
        "{} of {}",
        b.len(),
        a.len()
    );
    for (k, (eb, _)) in &b {
        let (ea, _) = a[k];
        assert!(
            (ea.saturating_sub(60)).abs_diff(*eb) <= 1,
            "{k:?}: {ea} s then, {eb} s 60 s later"
        );
    }
}

#[test]
fn broken_files_are_refused_whole() {
    let t0 = Instant(5_000_000_000_000);
    let src = filled(300, t0);
    let (file, _) = saved(&src, t0);
    assert_eq!(
        codec::decode(b"XLVSSAV0\0\0\0\0\0\0\0\0\0\0\0\0", t0).unwrap_err(),
        Error::Format("bad magic")
    );
    assert_eq!(
        codec::decode(&file, Instant(t0.0 - 1)).unwrap_err(),
        Error::Future
    );
    // Cut anywhere: an error, never a panic, never a part.
    for cut in (0..file.len()).step_by(37) {
        assert!(codec::decode(&file[..cut], t0).is_err(), "cut at {cut}");
    }
    // A bad origin byte.
    let mut bad = file.clone();
    bad[20] = 9;
    assert_eq!(
        codec::decode(&bad, t0).unwrap_err(),
        Error::Format("a record with a bad origin")
    );
    // Flipped bytes inside the messages: the backup's checks refuse what they must; the
    // reader neither panics nor reads past the end.
    for i in (24..file.len()).step_by(53) {
        let mut f = file.clone();
        f[i] ^= 0x5a;
        let _ = codec::decode(&f, t0);
    }
}

#[test]
fn save_and_load_go_through_a_file_read_once() {
    let t0 = xlvs_dataplane::afxdp::now();
    let src = filled(100, t0);
    let dir = std::env::temp_dir().join(format!("xlvs-restart-test-{}", std::process::id()));
    let path = super::state_file(&dir);
    let n = super::save(&path, &src, t0).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let r = super::load(&path, t0).unwrap().unwrap();
    assert_eq!(r.saved, n);
    assert!(!path.exists(), "read once");
    assert!(super::load(&path, t0).unwrap().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}
