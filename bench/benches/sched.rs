//! Schedulers: the cost of one decision per scheduler (10 realservers), the Maglev table build,
//! and Maglev's disruption when one of N realservers leaves (printed: the share of the lookup
//! table that changed owner; 1/N is ideal).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use xlvs_dataplane::core::sched::{self, Maglev, SchedConfig, SchedFlags, Source};
use xlvs_dataplane::core::service::{Dest, DestState, Fwd};

fn dests(n: usize) -> Vec<Dest> {
    (0..n)
        .map(|i| {
            let addr = Ipv4Addr::from(0x0a0a_0000 + i as u32 + 1).into();
            Dest {
                addr,
                port: 80,
                fwd: Fwd::Masq,
                weight: 1 + (i % 3) as u32,
                last_weight: 1 + (i % 3) as u32,
                state: Arc::new(DestState::new(addr, 80)),
            }
        })
        .collect()
}

fn source(i: u32) -> Source {
    Source {
        addr: IpAddr::V4(Ipv4Addr::from(0x0b00_0000 | (i & 0x00ff_ffff))),
        port: 1024 + (i % 60_000) as u16,
    }
}

fn decision(c: &mut Criterion) {
    let mut g = c.benchmark_group("schedule_10_dests");
    let d = dests(10);
    for kind in sched::SchedKind::ALL {
        let s = kind.build(SchedFlags::default(), &d, &SchedConfig::default());
        let mut i = 0u32;
        g.bench_function(kind.name(), |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                black_box(s.schedule(&d, &source(i)))
            })
        });
    }
    g.finish();
}

/// Share of slots whose owner (by address) differs between two tables.
fn moved(a: &Maglev, da: &[Dest], b: &Maglev, db: &[Dest]) -> f64 {
    let owner = |m: &Maglev, d: &[Dest], s: usize| d[m.table()[s] as usize].addr;
    let n = a.table().len();
    (0..n)
        .filter(|&s| owner(a, da, s) != owner(b, db, s))
        .count() as f64
        / n as f64
}

fn maglev(c: &mut Criterion) {
    let mut g = c.benchmark_group("maglev_build");
    g.sample_size(20);
    for (n, size) in [(10, 65537), (100, 65537), (10, 4093)] {
        let d = dests(n);
        g.bench_function(format!("{n}_dests_{size}_slots"), |b| {
            b.iter(|| black_box(Maglev::new(&d, SchedFlags::default(), size)))
        });
    }
    g.finish();
    for n in [5, 10, 100] {
        let mut d = dests(n);
        for x in d.iter_mut() {
            x.weight = 1;
            x.last_weight = 1;
        }
        let before = Maglev::new(&d, SchedFlags::default(), 65537);
        let mut less = d.clone();
        less.remove(n / 2);
        let after = Maglev::new(&less, SchedFlags::default(), 65537);
        let share = moved(&before, &d, &after, &less);
        println!(
            "maglev_disruption: {n} dests, one leaves: {:.4} of 65537 slots moved (ideal 1/{n} = {:.4}, ratio {:.3})",
            share,
            1.0 / n as f64,
            share * n as f64
        );
    }
}

criterion_group!(benches, decision, maglev);
criterion_main!(benches);
