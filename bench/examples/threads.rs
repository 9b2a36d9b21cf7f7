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
//! Opens FLOWS connections first (one thread), then starts the threads together; each
//! forwards PACKETS frames in a scattered order (stride 7919 over its flows). Prints each
//! thread's ns per packet and the packets per second of all of them together. Frames are
//! templates patched per flow, as in `examples/scale`.

use std::net::Ipv4Addr;
use std::sync::{Arc, Barrier};
use std::time::Instant as StdInstant;

use xlvs_bench::*;
use xlvs_dataplane::core::service::{Fwd, Snapshot};
use xlvs_dataplane::core::{Core, Instant, Verdict};
use xlvs_dataplane::testing::{INT_MAC, rs_mac, tcp_frame};
use xlvs_dataplane::wire::tcp::{ACK, SYN};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "nat".into());
    let flows: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let packets: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4_000_000);
    let threads: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let split = which == "nat-split";
    if !matches!(which.as_str(), "nat" | "dr" | "nat-split")
        || threads == 0
        || threads > 64
        || (split && threads != 2)
    {
        eprintln!("usage: threads [nat|dr|nat-split] FLOWS PACKETS THREADS (nat-split: 2)");
        std::process::exit(2);
    }
    let fwd = if which == "dr" { Fwd::Route } else { Fwd::Masq };
    let (mut core, snap) = setup(fwd, (flows as usize).next_power_of_two().max(1 << 16));
    // Each worker's own shard of the realservers' counters, as the daemon sizes them.
    xlvs_dataplane::core::stats::set_shards(threads + 1);
    // Open the flows; keep each one's realserver (the last octet of its address).
    let mut rs = vec![0u8; flows as usize];
    let mut syn = client_frame(0, SYN);
    for i in 0..flows {
        patch_client(&mut syn, i);
        let mut g = syn.clone();
        assert!(matches!(
            core.process(Instant(1), &snap, &mut g, 0),
            Verdict::Tx(_)
        ));
        rs[i as usize] = g[33];
    }
    let tables = core.tables().clone();
    drop(core);
    let snap = Arc::new(snap);
    let rs = Arc::new(rs);
    let start = Arc::new(Barrier::new(threads));
    let t0 = StdInstant::now();
    let handles: Vec<_> = (0..threads)
        .map(|w| {
            let (tables, snap, rs, start) =
                (tables.clone(), snap.clone(), rs.clone(), start.clone());
            std::thread::spawn(move || {
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
    let per: Vec<f64> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let wall = t0.elapsed().as_secs_f64();
    let each: Vec<String> = per.iter().map(|ns| format!("{ns:.1}")).collect();
    println!(
        "{which} flows {flows} threads {threads}: ns/packet per thread {}; {:.2} M packets/s in all",
        each.join(" / "),
        (packets / BATCH * BATCH * threads) as f64 / wall / 1e6
    );
}

/// Forwards `packets` frames of the flows `mine` (their replies if `reply`) in batches, as a
/// worker does; returns ns per packet.
fn run(
    core: &mut Core,
    snap: &Snapshot,
    mine: &[u32],
    rs: &[u8],
    reply: bool,
    packets: usize,
) -> f64 {
    let template = if reply {
        tcp_frame(
            rs_mac(0),
            INT_MAC,
            (RIP, 8080),
            (client(0), 10_000),
            ACK,
            64,
            &[],
        )
    } else {
        client_frame(0, ACK)
    };
    let n = template.len();
    let iface = reply as u8;
    let mut bufs = [[0u8; 64]; BATCH];
    let mut at = 0usize;
    let t = StdInstant::now();
    for _ in 0..packets / BATCH {
        for b in bufs.iter_mut() {
            at += 7919;
            while at >= mine.len() {
                at -= mine.len();
            }
            let i = mine[at];
            b[..n].copy_from_slice(&template);
            if reply {
                b[29] = rs[i as usize];
                b[30..34].copy_from_slice(&client(i).octets());
                b[36..38].copy_from_slice(&(10_000 + (i % 50_000) as u16).to_be_bytes());
            } else {
                patch_client(&mut b[..n], i);
            }
        }
        core.prefetch(bufs.iter().map(|b| &b[..n]));
        for b in bufs.iter_mut() {
            std::hint::black_box(core.process(Instant(2), snap, &mut b[..n], iface));
        }
    }
    t.elapsed().as_nanos() as f64 / (packets / BATCH * BATCH) as f64
}

/// Flow `i`'s source address and port in a client frame (as `client_frame(i, _)` has them).
fn patch_client(f: &mut [u8], i: u32) {
    let c: Ipv4Addr = client(i);
    f[26..30].copy_from_slice(&c.octets());
    f[34..36].copy_from_slice(&(10_000 + (i % 50_000) as u16).to_be_bytes());
}
