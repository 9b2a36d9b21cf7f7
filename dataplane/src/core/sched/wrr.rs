//! Weighted round robin (`ip_vs_wrr.c`).
//!
//! IPVS's interleaved WRR: a position in the list and a current weight `cw`. Each step moves to
//! the next realserver; passing the end of the list lowers `cw` by the gcd of the weights,
//! wrapping to the maximum weight (less gcd − 1, as IPVS's `mw`). The first available
//! realserver whose weight is ≥ `cw` is chosen. With weights 4, 3, 2 one cycle is
//! A A B A B C A B C. Weights are those the instance was built with (IPVS recomputes gcd and
//! maximum on every realserver change, as a rebuild does here).
//!
//! The position and `cw` are one atomic word, updated without a lock: two workers scheduling at
//! the same instant may both take the same step, which costs a little fairness, never
//! correctness.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Scheduler, Source, gcd};
use crate::core::service::Dest;

#[derive(Debug)]
pub struct WeightedRoundRobin {
    /// (index of the last realserver chosen) << 32 | cw.
    mark: AtomicU64,
    /// Gcd of the non-zero weights (IPVS `di`); 0 if all are zero.
    di: u32,
    /// IPVS `mw`: max weight − (di − 1).
    mw: u32,
}

impl WeightedRoundRobin {
    pub fn new(dests: &[Dest]) -> Self {
        let di = dests
            .iter()
            .map(|d| d.weight)
            .filter(|&w| w > 0)
            .fold(0, gcd);
        let max = dests.iter().map(|d| d.weight).max().unwrap_or(0);
        let mw = if di == 0 { 0 } else { max - (di - 1) };
        // Start just before the head with cw = 0, so the first step wraps to cw = mw.
        let last = dests.len().saturating_sub(1) as u64;
        WeightedRoundRobin {
            mark: AtomicU64::new(last << 32),
            di,
            mw,
        }
    }
}

impl Scheduler for WeightedRoundRobin {
    fn name(&self) -> &'static str {
        "wrr"
    }

    fn schedule(&self, dests: &[Dest], _src: &Source) -> Option<usize> {
        let n = dests.len();
        // Without this check an all-unavailable list would be walked n × mw/di times.
        if n == 0 || self.mw == 0 || !dests.iter().any(Dest::available) {
            return None;
        }
        let m = self.mark.load(Ordering::Relaxed);
        let (mut i, mut cw) = (((m >> 32) as usize) % n, m as u32 as i64);
        // Every realserver is looked at for every value cw takes, then we give up.
        let steps = n * (self.mw / self.di + 1) as usize;
        for _ in 0..steps {
            i = (i + 1) % n;
            if i == 0 {
                cw -= self.di as i64;
                if cw <= 0 {
                    cw = self.mw as i64;
                }
            }
            let d = &dests[i];
            if d.available() && d.weight as i64 >= cw {
                self.mark
                    .store((i as u64) << 32 | cw as u64, Ordering::Relaxed);
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{ANY, dests};
    use super::*;
    use crate::core::service::Binding;

    #[test]
    fn interleaves_by_weight() {
        let d = dests(&[4, 3, 2]);
        let s = WeightedRoundRobin::new(&d);
        let picks: String = (0..18)
            .map(|_| (b'A' + s.schedule(&d, &ANY).unwrap() as u8) as char)
            .collect();
        assert_eq!(picks, "AABABCABCAABABCABC");
    }

    #[test]
    fn gcd_reduces_the_cycle() {
        let d = dests(&[4, 2]);
        let s = WeightedRoundRobin::new(&d);
        let picks: Vec<_> = (0..6).map(|_| s.schedule(&d, &ANY).unwrap()).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 0, 1]);
    }

    #[test]
    fn distribution_proportional_to_weight() {
        let d = dests(&[1, 3, 6, 0]);
        let s = WeightedRoundRobin::new(&d);
        let mut counts = [0u32; 4];
        for _ in 0..10_000 {
            counts[s.schedule(&d, &ANY).unwrap()] += 1;
        }
        assert_eq!(counts, [1_000, 3_000, 6_000, 0]);
    }

    #[test]
    fn overloaded_server_is_passed_over_then_back() {
        let d = dests(&[1, 1]);
        let s = WeightedRoundRobin::new(&d);
        d[0].state.set_thresholds(1, 0);
        d[0].state.bind(Binding::Active);
        assert!((0..4).all(|_| s.schedule(&d, &ANY) == Some(1)));
        d[0].state.unbind(Binding::Active);
        let picks: Vec<_> = (0..4).map(|_| s.schedule(&d, &ANY).unwrap()).collect();
        assert!(picks.contains(&0));
    }
}
