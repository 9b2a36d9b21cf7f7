//! Per-packet cost of the forwarding core, in memory, one core: established LVS-NAT in both
//! directions, LVS-DR, and new connections (SYN: schedule + insert). Each iteration copies the
//! 64-byte template into a scratch buffer (the core rewrites in place); that copy is included.

use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};
use xlvs_bench::*;
use xlvs_dataplane::core::Instant;
use xlvs_dataplane::core::service::Fwd;
use xlvs_dataplane::wire::tcp::SYN;

const FLOWS: u32 = 10_000;

/// The next index of a round over `len` frames (a compare, not a division: the harness should
/// cost as little as possible next to the packet).
fn next(i: usize, len: usize) -> usize {
    if i + 1 == len { 0 } else { i + 1 }
}

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
                let f = &frames[i].0;
                i = next(i, frames.len());
                buf[..f.len()].copy_from_slice(f);
                black_box(core.process(Instant(2), &snap, &mut buf[..f.len()], 0))
            })
        });
        // The same, a batch at a time with the table loads started first, as a worker does.
        let mut bufs = [[0u8; 64]; BATCH];
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(format!("{name}_client_to_server_batched"), |b| {
            b.iter(|| {
                for buf in bufs.iter_mut() {
                    let f = &frames[i].0;
                    i = next(i, frames.len());
                    buf[..f.len()].copy_from_slice(f);
                }
                process_batch(&mut core, &snap, Instant(2), &mut bufs);
            })
        });
        g.throughput(Throughput::Elements(1));
        if fwd == Fwd::Masq {
            // What the harness itself costs per iteration (frame copy, index), for reading
            // the other figures.
            g.bench_function("harness_only", |b| {
                b.iter(|| {
                    let f = &frames[i].0;
                    i = next(i, frames.len());
                    buf[..f.len()].copy_from_slice(f);
                    black_box(&mut buf);
                })
            });
            g.bench_function("nat_server_to_client", |b| {
                b.iter(|| {
                    let f = &frames[i].1;
                    i = next(i, frames.len());
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
    // A batch of SYNs with the table loads started first, as a worker does.
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("nat_syn_batched", |b| {
        b.iter_batched(
            || {
                std::array::from_fn::<_, BATCH, _>(|_| {
                    n = n.wrapping_add(1);
                    let mut f = [0u8; 64];
                    let syn = client_frame(n, SYN);
                    f[..syn.len()].copy_from_slice(&syn);
                    f
                })
            },
            |mut bufs| process_batch(&mut core, &snap, Instant(1), &mut bufs),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn conn_table_size(c: &mut Criterion) {
    let mut g = c.benchmark_group("table_size");
    for flows in [10_000u32, 1_000_000] {
        let (mut core, snap) = setup(Fwd::Masq, 1 << 22);
        let frames: Vec<_> = (0..flows)
            .map(|i| established(&mut core, &snap, i).0)
            .collect();
        // Walk the flows in a scattered order so the lookups miss the CPU cache like real traffic.
        let step = |i: &mut usize| *i = scatter_next(*i, frames.len());
        let mut buf = [0u8; 64];
        let mut i = 0usize;
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("nat_lookup_{flows}"), |b| {
            b.iter(|| {
                step(&mut i);
                let f = &frames[i];
                buf[..f.len()].copy_from_slice(f);
                black_box(core.process(Instant(2), &snap, &mut buf[..f.len()], 0))
            })
        });
        // As a worker does it: a batch of frames, the table loads of all of them started
        // (`Core::prefetch`) before the first is processed.
        let mut bufs = [[0u8; 64]; BATCH];
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(format!("nat_lookup_{flows}_batched"), |b| {
            b.iter(|| {
                for buf in bufs.iter_mut() {
                    step(&mut i);
                    let f = &frames[i];
                    buf[..f.len()].copy_from_slice(f);
                }
                process_batch(&mut core, &snap, Instant(2), &mut bufs);
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
