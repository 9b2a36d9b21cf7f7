//! ns per established packet through `Core::process` with N worker threads over one shared
//! connection table, as xlvsd's workers run (each its own `Core`, batches of 32 after
//! `Core::prefetch`): `threads [nat|dr|nat-split] FLOWS PACKETS THREADS`.
//! - `nat`, `dr`: each thread forwards the client → server ACKs of its own flows (flow i to
//!   thread i % THREADS, as a NIC's RSS spreads a service's clients over its RX queues);
//! - `nat-split` (THREADS = 2): thread 0 forwards the flows' client → server ACKs and
//!   thread 1 their realservers' replies, both over the same connections: LVS-NAT whose
//!   replies come in on another RX queue than the requests (the multi-core model's worst
//!   case: a connection's lines move between two cores about once per packet).
//!
//! Opens FLOWS connections first (one thread), then starts the threads together, thread t
//! pinned to the t-th CPU it may run on (modulo their number; `THREADS_PIN=0` leaves them to the scheduler,
//! which on a 2-vCPU VM sometimes runs both on one CPU for a while); each forwards PACKETS
//! frames in a scattered order (stride 7919 over its flows). Prints each
//! thread's ns per packet and the sum of their packet rates. Frames are
//! templates patched per flow, as in `examples/scale`.

use std::sync::{Arc, Barrier};
use std::time::Instant as StdInstant;

use xlvs_bench::*;
use xlvs_dataplane::core::service::{Fwd, Snapshot};
use xlvs_dataplane::core::{Core, Instant, Verdict};
use xlvs_dataplane::wire::tcp::ACK;

fn main() {
    let mut args = std::env::args().skip(1);
    let which: String = arg(&mut args, "nat".into());
    let flows: u32 = arg(&mut args, 10_000);
    let packets: usize = arg(&mut args, 4_000_000);
    let threads: usize = arg(&mut args, 1);
    let split = which == "nat-split";
    if !matches!(which.as_str(), "nat" | "dr" | "nat-split")
        || threads == 0
        || threads > 64
        || (flows as usize) < threads
        || (split && threads != 2)
    {
        eprintln!("usage: threads [nat|dr|nat-split] FLOWS PACKETS THREADS (nat-split: 2)");
        std::process::exit(2);
    }
    let fwd = if which == "dr" { Fwd::Route } else { Fwd::Masq };
    let (mut core, snap) = setup_for(
        fwd,
        (flows as usize).next_power_of_two().max(1 << 16),
        threads,
    );
    let (opened, rs) = open_flows(&mut core, &snap, flows);
    assert_eq!(opened, flows as usize, "every flow opened");
    let tables = core.tables().clone();
    drop(core);
    let snap = Arc::new(snap);
    let rs = Arc::new(rs);
    let start = Arc::new(Barrier::new(threads));
    let cpus = if std::env::var("THREADS_PIN").is_ok_and(|v| v == "0") {
        Vec::new()
    } else {
        allowed_cpus()
    };
    let handles: Vec<_> = (0..threads)
        .map(|w| {
            let (tables, snap, rs, start, cpus) = (
                tables.clone(),
                snap.clone(),
                rs.clone(),
                start.clone(),
                cpus.clone(),
            );
            std::thread::spawn(move || {
                if !cpus.is_empty() {
                    let cpu = cpus[w % cpus.len()];
                    if let Err(e) = xlvs_bench::rig::pin(0, cpu) {
                        eprintln!("threads: not pinned: {e:#}");
                    }
                }
                let mut core = Core::for_worker(tables, w);
                // nat/dr: this thread's flows; nat-split: all of them, one direction each.
                let mine: Vec<u32> = if split {
                    (0..flows).collect()
                } else {
                    (0..flows).filter(|i| *i as usize % threads == w).collect()
                };
                let reply = split && w == 1;
                start.wait();
                run(&mut core, &snap, &mine, &rs, reply, packets)
            })
        })
        .collect();
    let per: Vec<(f64, usize)> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let each: Vec<String> = per.iter().map(|(ns, _)| format!("{ns:.1}")).collect();
    let sent = packets / BATCH * BATCH * threads;
    let tx: usize = per.iter().map(|(_, tx)| tx).sum();
    println!(
        "{which} flows {flows} threads {threads}: ns/packet per thread {}; {:.2} M packets/s in all ({tx} of {sent} forwarded)",
        each.join(" / "),
        // Each thread's rate, from its own timed loop (after the common start).
        per.iter().map(|(ns, _)| 1e3 / ns).sum::<f64>()
    );
}

/// The CPUs this process may run on (under `taskset` or a cpuset, not 0..n); none if the
/// kernel does not say.
fn allowed_cpus() -> Vec<usize> {
    // Safety: a zeroed cpu_set_t is valid; sched_getaffinity fills it (0: this thread).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Forwards `packets` frames of the flows `mine` (their replies if `reply`) in batches, as a
/// worker does; returns ns per packet and how many it forwarded.
fn run(
    core: &mut Core,
    snap: &Snapshot,
    mine: &[u32],
    rs: &[u8],
    reply: bool,
    packets: usize,
) -> (f64, usize) {
    let template = if reply {
        reply_frame()
    } else {
        client_frame(0, ACK)
    };
    let n = template.len();
    let iface = reply as u8;
    let mut bufs = [[0u8; 64]; BATCH];
    let mut at = 0usize;
    let mut tx = 0usize;
    let t = StdInstant::now();
    for _ in 0..packets / BATCH {
        for b in bufs.iter_mut() {
            at = scatter_next(at, mine.len());
            let i = mine[at];
            b[..n].copy_from_slice(&template);
            if reply {
                set_reply(&mut b[..n], i, rs[i as usize]);
            } else {
                set_client(&mut b[..n], i);
            }
        }
        core.prefetch(bufs.iter().map(|b| &b[..n]));
        for b in bufs.iter_mut() {
            tx += matches!(
                core.process(Instant(2), snap, &mut b[..n], iface),
                Verdict::Tx(_)
            ) as usize;
        }
    }
    (
        t.elapsed().as_nanos() as f64 / (packets / BATCH * BATCH) as f64,
        tx,
    )
}
