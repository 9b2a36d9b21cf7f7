//! Traffic counters of a realserver, as IPVS keeps them (`struct ip_vs_counters`):
//! connections scheduled to it, and packets and bytes in each direction.
//!
//! Every worker adds to its own shard of each realserver's counters, on its own cache line,
//! with a plain load and store (it is the shard's only writer): no atomic read-modify-write
//! and no cache line shared between workers on the per-packet path. The control thread sums
//! the shards ([`DestCounters::totals`]); a sum may miss the increments of the last few
//! nanoseconds, never count one twice.
//!
//! A shard also holds the worker's deferred changes to the realserver's active and inactive
//! connection counts ([`defer_counts`]): a worker adds a change to the shared count only once
//! its deferred total reaches [`DEFER_MAX`] either way, or at its thread's next flush
//! ([`crate::core::service::flush_deferred_counts`], a millisecond or two later). New connections to one realserver from several workers then do not
//! write one shared cache line each time; what a scheduler on another worker does not see yet
//! is bounded ([`DestCounters::defer`]).
//!
//! The daemon sets the number of shards to its number of workers
//! ([`set_shards`]) before it creates any realserver. A worker whose index is beyond the
//! shards (only possible if that was not done) shares shard 0 and may lose counts, never
//! corrupt anything.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Shards new realservers get.
static SHARDS: AtomicUsize = AtomicUsize::new(1);

/// Sets the number of shards of realservers created from now on: one per worker.
pub fn set_shards(n: usize) {
    SHARDS.store(n.max(1), Ordering::Relaxed);
}

/// One worker's counters, alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard {
    conns: AtomicU64,
    inpkts: AtomicU64,
    outpkts: AtomicU64,
    inbytes: AtomicU64,
    outbytes: AtomicU64,
    /// Changes to the realserver's active and inactive counts this worker has not added to
    /// the shared ones yet (always below [`DEFER_MAX`] either way).
    active: AtomicI32,
    inactive: AtomicI32,
    /// Whether the realserver is on this worker's thread's list of those to flush.
    listed: AtomicBool,
}

/// How far a worker's deferred change to one of a realserver's connection counts may go
/// before the worker adds it to the shared count. A scheduler therefore sees each count off
/// by at most (workers − 1) × (`DEFER_MAX` − 1), for a millisecond or two (a worker thread
/// with deferred changes flushes them every millisecond, and sleeps at most that long); its
/// own worker's changes it always sees.
pub const DEFER_MAX: i32 = 8;

thread_local! {
    /// The worker whose counts this thread defers ([`defer_counts`]), or `usize::MAX`.
    static DEFERRING: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// From now on, changes this thread makes to realservers' active and inactive counts are
/// deferred in `worker`'s shards (a worker thread, around its worker's round, when there are
/// several worker threads; the worker's index is its shard's), or, with None, made to the
/// shared counts at once (the default: a lone worker thread, the control thread, tests). A
/// worker's shards have one writer: the thread running it.
pub fn defer_counts(worker: Option<usize>) {
    DEFERRING.set(worker.unwrap_or(usize::MAX));
}

/// The worker this thread defers its connection-count changes for ([`defer_counts`]), if
/// any: one thread-local read, the first test of the counts' readers and writers.
#[inline(always)]
pub(crate) fn deferring() -> Option<usize> {
    let w = DEFERRING.get();
    (w != usize::MAX).then_some(w)
}

/// What [`DestCounters::defer`] did with a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deferred {
    /// This thread does not defer: the caller changes the shared count.
    No,
    /// Deferred; the realserver is on the thread's list to flush already.
    Listed,
    /// Deferred; the caller must put the realserver on the thread's list.
    ListNow,
}

/// Adds `n` to a counter only this worker writes.
#[inline(always)]
fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// A realserver's counters, one shard per worker.
#[derive(Debug)]
pub struct DestCounters {
    shards: Box<[Shard]>,
}

impl Default for DestCounters {
    fn default() -> Self {
        DestCounters {
            shards: (0..SHARDS.load(Ordering::Relaxed))
                .map(|_| Shard::default())
                .collect(),
        }
    }
}

impl DestCounters {
    #[inline(always)]
    fn shard(&self, worker: usize) -> &Shard {
        self.shards.get(worker).unwrap_or(&self.shards[0])
    }

    /// A new connection (IPVS `ip_vs_conn_stats`).
    #[inline]
    pub fn conn(&self, worker: usize) {
        add(&self.shard(worker).conns, 1);
    }

    /// A packet of `bytes` (its IP length) from the client (IPVS `ip_vs_in_stats`).
    #[inline(always)]
    pub fn inbound(&self, worker: usize, bytes: u64) {
        self.packets(worker, false, 1, bytes);
    }

    /// A packet of `bytes` from the realserver (IPVS `ip_vs_out_stats`).
    #[inline(always)]
    pub fn outbound(&self, worker: usize, bytes: u64) {
        self.packets(worker, true, 1, bytes);
    }

    /// `pkts` packets of `bytes` (IP lengths) in all, from the realserver if `out`, else from
    /// the client: one packet as the workers forward it, or what the XDP fast path forwarded
    /// for a connection, counted when its entry is taken back.
    #[inline(always)]
    pub fn packets(&self, worker: usize, out: bool, pkts: u64, bytes: u64) {
        let s = self.shard(worker);
        if out {
            add(&s.outpkts, pkts);
            add(&s.outbytes, bytes);
        } else {
            add(&s.inpkts, pkts);
            add(&s.inbytes, bytes);
        }
    }

    /// What the XDP fast path forwarded, counted by the control thread
    /// ([`crate::offload_credit`]) in the last shard, which the daemon makes its own (one
    /// more than the workers, [`set_shards`]).
    pub fn fast_path(&self, out: bool, pkts: u64, bytes: u64) {
        let last = self.shards.len() - 1;
        self.packets(last, out, pkts, bytes);
    }

    /// Whether worker `w` defers its changes to these counts: not the control thread, whose
    /// shard is the last, nor a worker beyond the shards.
    #[inline(always)]
    fn defers(&self, w: usize) -> bool {
        w < self.shards.len() - 1
    }

    /// Adds `d` to worker `w`'s deferred active (`active`) or inactive count
    /// ([`defer_counts`]); once its total reaches [`DEFER_MAX`] either way, it goes to
    /// `shared`. Says whether it deferred, and whether the realserver must now go on the
    /// thread's list of those to flush.
    #[inline(always)]
    pub(crate) fn defer(&self, w: usize, active: bool, d: i32, shared: &AtomicU32) -> Deferred {
        if !self.defers(w) {
            return Deferred::No;
        }
        let s = &self.shards[w];
        let p = if active { &s.active } else { &s.inactive };
        let v = p.load(Ordering::Relaxed) + d;
        if v.abs() >= DEFER_MAX {
            p.store(0, Ordering::Relaxed);
            // Two's complement: a negative change wraps the shared count down.
            shared.fetch_add(v as u32, Ordering::Relaxed);
        } else {
            p.store(v, Ordering::Relaxed);
        }
        if s.listed.load(Ordering::Relaxed) {
            Deferred::Listed
        } else {
            s.listed.store(true, Ordering::Relaxed);
            Deferred::ListNow
        }
    }

    /// Worker `w`'s deferred changes (active, inactive), if any: what its own scheduler adds
    /// to the shared counts.
    #[inline(always)]
    pub(crate) fn deferred(&self, w: usize) -> (i32, i32) {
        if !self.defers(w) {
            return (0, 0);
        }
        let s = &self.shards[w];
        (
            s.active.load(Ordering::Relaxed),
            s.inactive.load(Ordering::Relaxed),
        )
    }

    /// Every worker's deferred changes, summed (for exact counts: listings, thresholds).
    pub(crate) fn all_deferred(&self) -> (i32, i32) {
        self.shards.iter().fold((0, 0), |(a, i), s| {
            (
                a + s.active.load(Ordering::Relaxed),
                i + s.inactive.load(Ordering::Relaxed),
            )
        })
    }

    /// Adds worker `w`'s deferred changes to the shared counts (by its thread, which listed
    /// the realserver).
    pub(crate) fn flush_deferred(&self, w: usize, active: &AtomicU32, inactive: &AtomicU32) {
        if !self.defers(w) {
            return;
        }
        let s = &self.shards[w];
        s.listed.store(false, Ordering::Relaxed);
        for (p, shared) in [(&s.active, active), (&s.inactive, inactive)] {
            let v = p.load(Ordering::Relaxed);
            if v != 0 {
                p.store(0, Ordering::Relaxed);
                shared.fetch_add(v as u32, Ordering::Relaxed);
            }
        }
    }

    /// Counters with `n` shards (tests).
    #[cfg(test)]
    pub(crate) fn with_shards(n: usize) -> Self {
        DestCounters {
            shards: (0..n.max(1)).map(|_| Shard::default()).collect(),
        }
    }

    /// The sum over the workers.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in self.shards.iter() {
            let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
            t.conns += r(&s.conns);
            t.inpkts += r(&s.inpkts);
            t.outpkts += r(&s.outpkts);
            t.inbytes += r(&s.inbytes);
            t.outbytes += r(&s.outbytes);
        }
        t
    }
}

/// Counter values (IPVS `struct ip_vs_kstats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

impl Totals {
    /// Field-wise sum.
    pub fn plus(self, o: Totals) -> Totals {
        Totals {
            conns: self.conns + o.conns,
            inpkts: self.inpkts + o.inpkts,
            outpkts: self.outpkts + o.outpkts,
            inbytes: self.inbytes + o.inbytes,
            outbytes: self.outbytes + o.outbytes,
        }
    }

    /// Field-wise difference, never below zero (what `-Z` shows: counts since the zeroing).
    pub fn since(self, base: Totals) -> Totals {
        Totals {
            conns: self.conns.saturating_sub(base.conns),
            inpkts: self.inpkts.saturating_sub(base.inpkts),
            outpkts: self.outpkts.saturating_sub(base.outpkts),
            inbytes: self.inbytes.saturating_sub(base.inbytes),
            outbytes: self.outbytes.saturating_sub(base.outbytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_sum_and_a_stray_worker_shares_shard_zero() {
        let c = DestCounters {
            shards: (0..3).map(|_| Shard::default()).collect(),
        };
        c.conn(0);
        c.conn(2);
        c.inbound(1, 60);
        c.inbound(1, 1500);
        c.outbound(2, 40);
        c.inbound(7, 100);
        let t = c.totals();
        assert_eq!(
            t,
            Totals {
                conns: 2,
                inpkts: 3,
                outpkts: 1,
                inbytes: 1660,
                outbytes: 40
            }
        );
        let later = t.plus(Totals {
            conns: 1,
            ..Default::default()
        });
        assert_eq!(later.since(t).conns, 1);
        assert_eq!(t.since(later).conns, 0);
    }
}
