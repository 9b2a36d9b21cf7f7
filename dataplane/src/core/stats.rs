//! Traffic counters of a realserver, as IPVS keeps them (`struct ip_vs_counters`):
//! connections scheduled to it, and packets and bytes in each direction.
//!
//! Every worker adds to its own shard of each realserver's counters, on its own cache line,
//! with a plain load and store (it is the shard's only writer): no atomic read-modify-write
//! and no cache line shared between workers on the per-packet path. The control thread sums
//! the shards ([`DestCounters::totals`]); a sum may miss the increments of the last few
//! nanoseconds, never count one twice.
//!
//! The daemon sets the number of shards to its number of workers
//! ([`set_shards`]) before it creates any realserver. A worker whose index is beyond the
//! shards (only possible if that was not done) shares shard 0 and may lose counts, never
//! corrupt anything.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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
