//! Texts of xlvs's own listings: `xlvsadm --workers` and `--xdp-stats`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use xlvs_common::COUNTERS;
use xlvs_dataplane::afxdp::WorkerHandle;
use xlvs_dataplane::core::DropReason;

use crate::bond::links::Links;

/// `xlvsadm --xdp-stats`.
pub fn xdp(c: [u64; COUNTERS as usize]) -> String {
    format!(
        "steered {}\npassed {}\nredirect_failed {}\noffloaded {}\nsync_handed {}\n",
        c[0], c[1], c[2], c[3], c[4]
    )
}

/// `xlvsadm --workers`: per-worker counters (TX: frames the worker forwarded, on whatever
/// port; Sent: frames it put on its own port), drops by reason, ring counters, threads, the
/// ports of bonds (their state, and the frames received and sent on each), and the number
/// of connections.
pub fn workers(workers: &[WorkerHandle], conns: usize, links: Option<&Links>) -> String {
    let mut s = format!(
        "{:<12} {:>12} {:>12} {:>12} {:>12} {:>12}\n",
        "Worker", "RX", "TX", "Sent", "Dropped", "NewConns"
    );
    for w in workers {
        let st = &w.stats;
        let dropped: u64 = st
            .drops
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .sum::<u64>()
            + st.inbox_full.load(Ordering::Relaxed)
            + st.no_egress.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "{:<12} {:>12} {:>12} {:>12} {:>12} {:>12}",
            w.name,
            st.rx.load(Ordering::Relaxed),
            st.tx.load(Ordering::Relaxed),
            st.sent.load(Ordering::Relaxed),
            dropped,
            st.new_conns.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(s, "Drops by reason:");
    for r in DropReason::ALL {
        let n: u64 = workers
            .iter()
            .map(|w| w.stats.drops[r as usize].load(Ordering::Relaxed))
            .sum();
        if n > 0 {
            let _ = writeln!(s, "  {:<14} {n}", r.name());
        }
    }
    // A counter summed over the workers.
    let sum = |f: fn(&WorkerHandle) -> &AtomicU64| -> u64 {
        workers.iter().map(|w| f(w).load(Ordering::Relaxed)).sum()
    };
    for (name, counter) in [
        (
            "inbox_full",
            (|w| &w.stats.inbox_full) as fn(&WorkerHandle) -> &AtomicU64,
        ),
        ("no_egress", |w| &w.stats.no_egress),
        ("syn_evicted", |w| &w.stats.syn_evicted),
    ] {
        let n = sum(counter);
        if n > 0 {
            let _ = writeln!(s, "  {name:<14} {n}");
        }
    }
    let _ = writeln!(
        s,
        "Rings:{:<6} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "", "TxRingFull", "FillStarved", "RxRingFull", "FillEmpty", "TxEmpty", "TxKicks"
    );
    for w in workers {
        let st = &w.stats;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "{:<12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
            w.name,
            get(&st.tx_ring_full),
            get(&st.fill_starved),
            get(&st.xsk.rx_ring_full),
            get(&st.xsk.rx_fill_ring_empty),
            get(&st.xsk.tx_ring_empty),
            get(&st.tx_kicks)
        );
    }
    let n = workers.iter().map(|w| w.thread + 1).max().unwrap_or(0);
    let mut threads: Vec<(&str, Vec<&str>)> = vec![("", Vec::new()); n];
    for w in workers {
        threads[w.thread].0 = &w.thread_name;
        threads[w.thread].1.push(&w.name);
    }
    let _ = writeln!(s, "Threads:");
    for (t, ws) in threads {
        let _ = writeln!(s, "  {:<16} {}", t, ws.join(" "));
    }
    if let Some(l) = links.filter(|l| {
        l.ports()
            .iter()
            .enumerate()
            .any(|(p, _)| l.bond_of(p as u8).is_some())
    }) {
        let _ = writeln!(
            s,
            "Ports:{:<6} {:<10} {:<6} {:>12} {:>12}",
            "", "Bond", "State", "RX", "Sent"
        );
        for (p, name) in l.ports().iter().enumerate() {
            let p = p as u8;
            let (rx, sent) = crate::bond::links::port_frames(workers, p);
            let _ = writeln!(
                s,
                "{:<12} {:<10} {:<6} {:>12} {:>12}",
                name,
                l.bond_of(p).unwrap_or("-"),
                if l.usable(p) { "up" } else { "down" },
                rx,
                sent,
            );
        }
    }
    let _ = writeln!(s, "Connections: {}", conns);
    let (off, refused) = (
        sum(|w| &w.stats.offloaded),
        sum(|w| &w.stats.offload_refused),
    );
    if off + refused > 0 {
        let _ = writeln!(
            s,
            "Offloaded to XDP: {off} connection direction(s), {refused} refused"
        );
    }
    s
}
