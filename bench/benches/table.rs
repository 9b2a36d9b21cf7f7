//! The connection table at 10 k, 1 M and 10 M IPv4 connections: memory per connection (the
//! layout, and the resident memory the process actually gained), and the cost of a lookup
//! (find the connection, lock its bucket, read it, unlock) in a scattered order, one at a time
//! and in batches of 16 with the two-step prefetch the workers can use. Then two threads at
//! once: on different connections, and all on the same 16 (the worst case for bucket locks).
//! Last, churn: a connection inserted and removed (a short connection's life in the table:
//! the connection count, a slot off the free list and back, its bucket's lock twice, the
//! realserver's active counter up and down), one thread alone, then two at once on their
//! own connections, to the same realserver and to one each.
//!
//! Each size is measured twice: on 4 KB pages, and with the tables advised to use transparent
//! huge pages as xlvsd does (`afxdp::advise_huge_pages`).
//!
//! A plain timing harness, not criterion: each figure is the median of 5 rounds, and all of
//! them come from one run, so they can be compared as ratios.
//! `cargo bench -p xlvs-bench --bench table [-- --quick]` (`--quick` stops at 1 M).

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant as StdInstant};

use xlvs_dataplane::core::Instant;
use xlvs_dataplane::core::conn::{Conn, ConnKey, ConnTable};
use xlvs_dataplane::core::service::{DestState, Fwd, NextHop, Proto};
use xlvs_dataplane::core::tcp_state::TcpState;
use xlvs_dataplane::core::wheel::tick_ceil;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const LOOKUPS: usize = 2_000_000;
const BATCH: usize = 16;

fn client(i: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0x0b00_0000 | (i >> 4)),
        10_000 + (i & 15) as u16,
    )
}

fn key(i: u32) -> ConnKey<Ipv4Addr> {
    let (c, p) = client(i);
    ConnKey {
        src: c,
        dst: VIP,
        sport: p,
        dport: 80,
        proto: 6,
    }
}

fn fill(n: u32, huge: bool) -> ConnTable<Ipv4Addr> {
    fill_room(n, n, huge)
}

/// A table for `room` connections holding `n`.
fn fill_room(n: u32, room: u32, huge: bool) -> ConnTable<Ipv4Addr> {
    let t = ConnTable::new(room as usize);
    if huge {
        xlvs_dataplane::afxdp::advise_huge_pages(&t.regions());
    }
    let dest = Arc::new(DestState::new(Ipv4Addr::new(10, 10, 0, 11).into(), 8080));
    let hop = NextHop {
        iface: 0,
        mac: [2, 0, 0, 0, 0, 1],
    };
    let now = Instant::from_secs(1);
    for i in 0..n {
        let mut c = Conn::new(
            Proto::Tcp,
            client(i),
            (VIP, 80),
            (Ipv4Addr::new(10, 10, 0, 11), 8080),
            Fwd::Masq,
            TcpState::Established,
            hop,
            dest.clone(),
        );
        c.touch(tick_ceil(now), 900);
        t.insert(c, 0, now).expect("room for every connection");
    }
    t
}

/// Resident memory of this process, bytes.
fn rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = s
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A scattered visiting order: i × a large prime, modulo n.
fn order(n: u32) -> Vec<u32> {
    (0..LOOKUPS as u64)
        .map(|i| (i * 2_654_435_761 % n as u64) as u32)
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// ns per lookup, one at a time.
fn single(t: &ConnTable<Ipv4Addr>, keys: &[ConnKey<Ipv4Addr>]) -> f64 {
    let start = StdInstant::now();
    let mut sum = 0u32;
    for k in keys {
        if let Some(mut f) = t.lookup(k) {
            sum = sum.wrapping_add(f.conn().dport as u32);
        }
    }
    black_box(sum);
    start.elapsed().as_nanos() as f64 / keys.len() as f64
}

/// ns per lookup in batches: prefetch every bucket head of the batch, then every first slot,
/// then look each up.
fn batched(t: &ConnTable<Ipv4Addr>, keys: &[ConnKey<Ipv4Addr>]) -> f64 {
    let start = StdInstant::now();
    let mut sum = 0u32;
    let mut buckets = [Default::default(); BATCH];
    for chunk in keys.chunks(BATCH) {
        for (b, k) in buckets.iter_mut().zip(chunk) {
            *b = t.hash(k.proto, k.src, k.sport);
            t.prefetch_bucket(b.bucket);
        }
        for b in &buckets[..chunk.len()] {
            t.prefetch_chain(*b);
        }
        for k in chunk {
            if let Some(mut f) = t.lookup(k) {
                sum = sum.wrapping_add(f.conn().dport as u32);
            }
        }
    }
    black_box(sum);
    start.elapsed().as_nanos() as f64 / keys.len() as f64
}

/// ns per connection inserted then removed, for connections `first..first + CHURN` (a round
/// of them) to `dest`, 64 open at a time (each round of 64 inserted, then removed), by worker
/// `worker` (its connection counts deferred in its shard and flushed every 10 240
/// connections, about every millisecond, as xlvsd's workers do with other worker threads).
fn churn(t: &ConnTable<Ipv4Addr>, first: u32, dest: &Arc<DestState>, worker: usize) -> f64 {
    xlvs_dataplane::core::stats::defer_counts(Some(worker));
    let now = Instant::from_secs(1);
    let hop = NextHop {
        iface: 0,
        mac: [2, 0, 0, 0, 0, 1],
    };
    let start = StdInstant::now();
    for round in (first..first + CHURN).step_by(64) {
        for i in round..round + 64 {
            let c = Conn::new(
                Proto::Tcp,
                client(i),
                (VIP, 80),
                (Ipv4Addr::new(10, 10, 0, 11), 8080),
                Fwd::Masq,
                TcpState::SynRecv,
                hop,
                dest.clone(),
            );
            t.insert(c, 0, now).expect("room");
        }
        for i in round..round + 64 {
            t.lookup(&key(i)).expect("just inserted").remove(now);
        }
        if (round - first).is_multiple_of(10_240) {
            xlvs_dataplane::core::service::flush_deferred_counts();
        }
    }
    start.elapsed().as_nanos() as f64 / CHURN as f64
}

const CHURN: u32 = 512_000;

/// Churn alone, then with a second thread churning its own connections at the same time: to
/// the same realserver (`shared_dest`) or another.
fn churn_pair(shared_dest: bool) -> (f64, f64) {
    let t = Arc::new(ConnTable::<Ipv4Addr>::new(1 << 20));
    let d1 = Arc::new(DestState::new(Ipv4Addr::new(10, 10, 0, 11).into(), 8080));
    let d2 = if shared_dest {
        d1.clone()
    } else {
        Arc::new(DestState::new(Ipv4Addr::new(10, 10, 0, 12).into(), 8080))
    };
    let alone = median((0..5).map(|_| churn(&t, 0, &d1, 0)).collect());
    let both = {
        let t2 = t.clone();
        beside(
            move || {
                churn(&t2, 1 << 24, &d2, 1);
            },
            || churn(&t, 0, &d1, 0),
        )
    };
    (alone, both)
}

/// ns per established packet's table work (lookup, then the realserver's next hop read and
/// its traffic counted in this worker's shard, as `Core::process` does), over 10 k
/// connections to one realserver: alone, and while a second thread opens and closes
/// connections to that realserver (its connection counters and reference count written
/// each time).
fn forward_beside_churn() -> (f64, f64) {
    let t = Arc::new(fill_room(10_000, 1 << 16, false));
    let dest = t.lookup(&key(0)).expect("filled").conn().dest.clone();
    let keys: Vec<_> = order(10_000).into_iter().map(key).collect();
    let run = |t: &ConnTable<Ipv4Addr>| {
        let start = StdInstant::now();
        let mut sum = 0u64;
        for k in &keys {
            if let Some(mut f) = t.lookup(k) {
                let c = f.conn();
                sum = sum.wrapping_add(c.dest.next_hop().map_or(0, |h| h.mac[5] as u64));
                c.dest.stats.inbound(0, 64);
            }
        }
        black_box(sum);
        start.elapsed().as_nanos() as f64 / keys.len() as f64
    };
    let alone = median((0..5).map(|_| run(&t)).collect());
    let both = {
        let t2 = t.clone();
        beside(
            move || {
                churn(&t2, 1 << 24, &dest, 1);
            },
            || run(&t),
        )
    };
    (alone, both)
}

/// ns per lookup of `mine` while a second thread looks up `theirs` on the same table.
fn contended(
    t: &Arc<ConnTable<Ipv4Addr>>,
    mine: &[ConnKey<Ipv4Addr>],
    theirs: Vec<ConnKey<Ipv4Addr>>,
) -> f64 {
    let t2 = t.clone();
    beside(
        move || {
            single(&t2, &theirs[..theirs.len().min(100_000)]);
        },
        || single(t, mine),
    )
}

/// The median of 5 rounds of `measure` while a second thread runs `other` again and again
/// (bounded: until the rounds are done, or 10 s whatever happens).
fn beside(mut other: impl FnMut() + Send + 'static, mut measure: impl FnMut() -> f64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let h = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let end = StdInstant::now() + Duration::from_secs(10);
            while !stop.load(Ordering::Relaxed) && StdInstant::now() < end {
                other();
            }
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    let r = median((0..5).map(|_| measure()).collect());
    stop.store(true, Ordering::Relaxed);
    h.join().expect("the second thread");
    r
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // Realservers' counters with a shard for each of two workers and the control thread.
    xlvs_dataplane::core::stats::set_shards(3);
    let sizes: &[u32] = if quick {
        &[10_000, 1_000_000]
    } else {
        &[10_000, 1_000_000, 10_000_000]
    };
    println!(
        "IPv4 slot {} B; {} lookups per round, median of 5 rounds",
        ConnTable::<Ipv4Addr>::SLOT_BYTES,
        LOOKUPS
    );
    println!(
        "{:>10} {:>5} {:>8} {:>10} {:>10} {:>11} {:>11}",
        "conns", "pages", "buckets", "B/conn", "RSS B/conn", "ns/lookup", "batched 16"
    );
    let mut first = None;
    for (n, huge) in sizes.iter().flat_map(|&n| [(n, false), (n, true)]) {
        let before = rss();
        let t = fill(n, huge);
        let grew = rss().saturating_sub(before);
        let keys: Vec<_> = order(n).into_iter().map(key).collect();
        assert!(t.lookup(&keys[0]).is_some());
        let one = median((0..5).map(|_| single(&t, &keys)).collect());
        let bat = median((0..5).map(|_| batched(&t, &keys)).collect());
        let base = *first.get_or_insert(one);
        println!(
            "{:>10} {:>5} {:>8} {:>10.1} {:>10.1} {:>11.1} {:>11.1}   (single {:.2}x, batched {:.2}x the 10 k single)",
            n,
            if huge { "2M" } else { "4K" },
            t.buckets(),
            t.reserved_bytes() as f64 / n as f64,
            grew as f64 / n as f64,
            one,
            bat,
            one / base,
            bat / base,
        );
        if n == 10_000 && !huge {
            let t = Arc::new(t);
            let alone = median((0..5).map(|_| single(&t, &keys)).collect());
            let other: Vec<_> = order(n).into_iter().rev().map(key).collect();
            let shared = contended(&t, &keys, other);
            let hot: Vec<_> = (0..LOOKUPS as u32).map(|i| key(i % 16)).collect();
            let hot_alone = median((0..5).map(|_| single(&t, &hot)).collect());
            let hot_shared = contended(&t, &hot, hot.clone());
            println!(
                "  2 threads, 10 k table: {alone:.1} ns alone, {shared:.1} ns with the other thread on other connections ({:.2}x); \
                 same 16 connections: {hot_alone:.1} ns alone, {hot_shared:.1} ns contended ({:.2}x)",
                shared / alone,
                hot_shared / hot_alone
            );
        }
    }
    {
        let (alone, both) = forward_beside_churn();
        println!(
            "established packets (lookup, the realserver's next hop and traffic counter): {alone:.1} ns alone, \
             {both:.1} ns while a second thread churns connections to the same realserver ({:.2}x)",
            both / alone
        );
    }
    for shared in [true, false] {
        let (alone, both) = churn_pair(shared);
        println!(
            "churn (insert + remove), {}: {alone:.1} ns alone, {both:.1} ns with a second thread churning ({:.2}x)",
            if shared {
                "both threads to one realserver"
            } else {
                "a realserver each"
            },
            both / alone
        );
    }
}
