//! Shortest expected delay (`ip_vs_sed.c`).
//!
//! Overhead is `active + 1` (inactive connections do not count); picks the smallest
//! overhead / weight, compared in integers like wlc, ties to the earlier realserver.

use super::{Scheduler, Source, least_weighted};
use crate::core::service::Dest;

/// IPVS `ip_vs_sed_dest_overhead`.
pub(super) fn overhead(d: &Dest) -> u64 {
    d.state.active_seen() + 1
}

#[derive(Debug, Default)]
pub struct ShortestExpectedDelay;

impl Scheduler for ShortestExpectedDelay {
    fn name(&self) -> &'static str {
        "sed"
    }

    fn schedule(&self, dests: &[Dest], _src: &Source) -> Option<usize> {
        least_weighted(dests, overhead)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{ANY, dests};
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn idle_heavy_server_wins_over_idle_light_one() {
        // (0+1)/1 vs (0+1)/3: the weight-3 server has the shorter expected delay.
        let d = dests(&[1, 3]);
        assert_eq!(ShortestExpectedDelay.schedule(&d, &ANY), Some(1));
        // Inactive connections do not count.
        d[1].state.inactive.store(1000, Ordering::Relaxed);
        assert_eq!(ShortestExpectedDelay.schedule(&d, &ANY), Some(1));
        // (2+1)/3 = 1 vs 1/1: tie → the earlier one.
        d[1].state.active.store(2, Ordering::Relaxed);
        assert_eq!(ShortestExpectedDelay.schedule(&d, &ANY), Some(0));
    }

    #[test]
    fn distribution_follows_weights() {
        let d = dests(&[1, 4]);
        let mut counts = [0u32; 2];
        for _ in 0..5_000 {
            let i = ShortestExpectedDelay.schedule(&d, &ANY).unwrap();
            d[i].state.active.fetch_add(1, Ordering::Relaxed);
            counts[i] += 1;
        }
        assert!((counts[1] as i64 - 4_000).abs() <= 2, "{counts:?}");
    }
}
