//! Per-packet cost of the forwarding core, in memory, one core: established LVS-NAT in both
//! directions, LVS-DR, and new connections (SYN: schedule + insert). Each iteration copies the
//! 64-byte template into a scratch buffer (the core rewrites in place); that copy is included.

use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};
use xlvs_bench::*;
use xlvs_dataplane::core::Instant;
use xlvs_dataplane::core::service::Fwd;
use xlvs_dataplane::wire::tcp::SYN;

const FLOWS: u32 = 10_000;

fn established_nat(c: &mut Criterion) {
    let mut g = c.benchmark_group("established");
    g.throughput(Throughput::Elements(1));
    for (name, fwd) in [("nat", Fwd::Masq), ("dr", Fwd::Route)] {
        let (mut core, snap) = setup(fwd, 1 << 22);
        let frames: Vec<_> = (0..FLOWS)
            .map(|i| established(&mut core, &snap, i))
            .collect();
        let mut buf = [0u8; 64];
        let mut i = 0usize;
        g.bench_function(format!("{name}_client_to_server"), |b| {
            b.iter(|| {
                let f = &frames[i % frames.len()].0;
                i += 1;
                buf[..f.len()].copy_from_slice(f);
                black_box(core.process(Instant(2), &snap, &mut buf[..f.len()], 0))
            })
        });
        if fwd == Fwd::Masq {
            g.bench_function("nat_server_to_client", |b| {
                b.iter(|| {
                    let f = &frames[i % frames.len()].1;
                    i += 1;
                    buf[..f.len()].copy_from_slice(f);
                    black_box(core.process(Instant(2), &snap, &mut buf[..f.len()], 1))
                })
            });
        }
    }
    g.finish();
}

fn new_connections(c: &mut Criterion) {
    let mut g = c.benchmark_group("new_connection");
    g.throughput(Throughput::Elements(1));
    let (mut core, snap) = setup(Fwd::Masq, 1 << 24);
    let mut n = 0u32;
    let mut buf = [0u8; 64];
    g.bench_function("nat_syn", |b| {
        b.iter_batched(
            || {
                n = n.wrapping_add(1);
                client_frame(n, SYN)
            },
            |f| {
                buf[..f.len()].copy_from_slice(&f);
                black_box(core.process(Instant(1), &snap, &mut buf[..f.len()], 0))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn conn_table_size(c: &mut Criterion) {
    let mut g = c.benchmark_group("table_size");
    g.throughput(Throughput::Elements(1));
    for flows in [10_000u32, 1_000_000] {
        let (mut core, snap) = setup(Fwd::Masq, 1 << 22);
        let frames: Vec<_> = (0..flows)
            .map(|i| established(&mut core, &snap, i).0)
            .collect();
        let mut buf = [0u8; 64];
        let mut i = 0usize;
        // Walk the flows in a scattered order so the lookups miss the CPU cache like real traffic.
        g.bench_function(format!("nat_lookup_{flows}"), |b| {
            b.iter(|| {
                i = (i + 7919) % frames.len();
                let f = &frames[i];
                buf[..f.len()].copy_from_slice(f);
                black_box(core.process(Instant(2), &snap, &mut buf[..f.len()], 0))
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = established_nat, new_connections, conn_table_size
}
criterion_main!(benches);
