//! Connection sync, one core: the master's encoding (workers' events → v1 datagrams, the
//! kernel's rules), the backup's decoding and insertion (datagrams → table), and the hand-off
//! cost a worker pays per forwarded packet while a sync master listens (the same established
//! LVS-NAT packets with the outbox off and on, side by side in one run).

use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};
use xlvs_bench::*;
use xlvs_control::sync::backup::Backup;
use xlvs_control::sync::master::{Master, MasterConfig};
use xlvs_dataplane::core::conn::Tables;
use xlvs_dataplane::core::events::{ConnEvent, EventKind, Outbox};
use xlvs_dataplane::core::service::{Fwd, Timeouts};
use xlvs_dataplane::core::tcp_state::TcpState;
use xlvs_dataplane::core::{Core, Instant};

const ENTRIES: u32 = 10_000;

/// The events of `ENTRIES` established LVS-NAT connections (their sync-threshold packet).
fn events() -> Vec<ConnEvent> {
    (0..ENTRIES)
        .map(|i| ConnEvent {
            kind: EventKind::Packets,
            proto: 6,
            fwd: Fwd::Masq,
            state: TcpState::Established,
            template: false,
            inactive: false,
            persistent: false,
            fwmark: 0,
            cport: 10_000 + (i % 50_000) as u16,
            vport: 80,
            dport: 8080,
            timeout: 900,
            caddr: client(i).into(),
            vaddr: VIP.into(),
            daddr: RIP.into(),
        })
        .collect()
}

/// The datagrams a master sends for them.
fn datagrams() -> Vec<Vec<u8>> {
    let mut m = Master::new(MasterConfig::default());
    let now = StdInstant::now();
    let mut out: Vec<Vec<u8>> = events().iter().filter_map(|e| m.on_event(e, now)).collect();
    out.extend(m.handle_timeout(now + Duration::from_secs(3)));
    out
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("sync");
    g.throughput(Throughput::Elements(ENTRIES as u64));
    let ev = events();
    let mut m = Master::new(MasterConfig::default());
    let now = StdInstant::now();
    g.bench_function("encode_10k", |b| {
        b.iter(|| {
            for e in &ev {
                if let Some(d) = m.on_event(e, now) {
                    m.recycle(black_box(d));
                }
            }
        })
    });
    let dgrams = datagrams();
    let n: usize = dgrams.iter().map(|d| d[4] as usize).sum();
    assert_eq!(n, ENTRIES as usize);
    let timeouts = Timeouts::default();
    let mut backup = Backup::new(0);
    g.bench_function("decode_10k", |b| {
        b.iter(|| {
            for d in &dgrams {
                black_box(backup.on_datagram(d, None, &timeouts));
            }
        })
    });
    // Decoded and inserted into an empty table (a backup learning new connections).
    let (_, snap) = setup(Fwd::Masq, 1 << 15);
    g.bench_function("apply_insert_10k", |b| {
        b.iter_batched(
            || Core::new(Arc::new(Tables::new(1 << 15))),
            |mut core| {
                for d in &dgrams {
                    for s in backup.on_datagram(d, None, &timeouts) {
                        let _ = core.insert(Instant(1), &snap, &s);
                    }
                }
                core
            },
            BatchSize::LargeInput,
        )
    });
    // The same entries again (a master's periodic refresh): updates in place.
    let mut core = Core::new(Arc::new(Tables::new(1 << 15)));
    g.bench_function("apply_update_10k", |b| {
        b.iter(|| {
            for d in &dgrams {
                for s in backup.on_datagram(d, None, &timeouts) {
                    let _ = core.insert(Instant(1), &snap, &s);
                }
            }
        })
    });
    g.finish();
}

/// The worker's side: established LVS-NAT packets with no sync master, and with one (the
/// outbox listening: each connection counts its client packets and hands an event to the
/// outbox at the 3rd and every 50th). The outbox is emptied when half full, as the master
/// drains it every 20 ms.
fn handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("sync_handoff");
    g.throughput(Throughput::Elements(1));
    for on in [false, true] {
        let (mut core, snap) = setup(Fwd::Masq, 1 << 20);
        let outbox = Arc::new(Outbox::new(1 << 16));
        if on {
            outbox.set_listening(true);
            core.set_outbox(Some(outbox.clone()));
        }
        let frames: Vec<_> = (0..ENTRIES)
            .map(|i| established(&mut core, &snap, i).0)
            .collect();
        let mut buf = [0u8; 64];
        let mut i = 0usize;
        let name = if on {
            "nat_master_on"
        } else {
            "nat_master_off"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let f = &frames[i];
                i += 1;
                if i == frames.len() {
                    i = 0;
                    if outbox.len() > 1 << 15 {
                        while outbox.pop().is_some() {}
                    }
                }
                buf[..f.len()].copy_from_slice(f);
                black_box(core.process(Instant(2), &snap, &mut buf[..f.len()], 0))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, encode, handoff);
criterion_main!(benches);
