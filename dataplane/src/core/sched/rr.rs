//! Round robin (`ip_vs_rr.c`).
//!
//! IPVS keeps a pointer to the last realserver chosen and walks the list from the one after it,
//! taking the first that is available (weight > 0, not overloaded); weights are otherwise
//! ignored. Workers race on the position without a lock: at worst two of them pick the same
//! realserver once, which keeps the long-run split even.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Scheduler, Source};
use crate::core::service::Dest;

#[derive(Debug, Default)]
pub struct RoundRobin {
    /// Index of the last realserver chosen, plus one (0 = none yet: start at the head).
    last: AtomicUsize,
}

impl Scheduler for RoundRobin {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn schedule(&self, dests: &[Dest], _src: &Source) -> Option<usize> {
        let n = dests.len();
        if n == 0 {
            return None;
        }
        let start = self.last.load(Ordering::Relaxed) % n;
        for i in 0..n {
            let idx = (start + i) % n;
            if dests[idx].available() {
                self.last.store(idx + 1, Ordering::Relaxed);
                return Some(idx);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{ANY, dests};
    use super::*;

    #[test]
    fn cycles_in_list_order() {
        let d = dests(&[1, 1, 1]);
        let rr = RoundRobin::default();
        let picks: Vec<_> = (0..7).map(|_| rr.schedule(&d, &ANY).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn ignores_weight_but_skips_quiescent() {
        let d = dests(&[5, 0, 1]);
        let rr = RoundRobin::default();
        let picks: Vec<_> = (0..4).map(|_| rr.schedule(&d, &ANY).unwrap()).collect();
        assert_eq!(picks, vec![0, 2, 0, 2]);
    }

    #[test]
    fn none_when_all_quiescent_or_empty() {
        assert_eq!(RoundRobin::default().schedule(&dests(&[0, 0]), &ANY), None);
        assert_eq!(RoundRobin::default().schedule(&[], &ANY), None);
    }

    #[test]
    fn even_split_over_many_draws() {
        let d = dests(&[1, 3]);
        let rr = RoundRobin::default();
        let mut counts = [0usize; 2];
        for _ in 0..10_000 {
            counts[rr.schedule(&d, &ANY).unwrap()] += 1;
        }
        assert_eq!(counts, [5_000, 5_000]);
    }
}
