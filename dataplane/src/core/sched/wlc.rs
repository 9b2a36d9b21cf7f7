//! Weighted least-connection (`ip_vs_wlc.c`), the ipvsadm default.
//!
//! Picks the realserver with the smallest overhead / weight, where overhead is
//! `active × 256 + inactive` (`ip_vs_dest_conn_overhead`). Like IPVS it compares
//! `overhead_a × weight_b > overhead_b × weight_a` in integers, starts from the first available
//! realserver in list order, and only replaces the candidate on a strictly smaller ratio, so ties
//! go to the earlier realserver.

use super::{Scheduler, Source, least_weighted};
use crate::core::service::Dest;

#[derive(Debug, Default)]
pub struct WeightedLeastConnection;

impl Scheduler for WeightedLeastConnection {
    fn name(&self) -> &'static str {
        "wlc"
    }

    fn schedule(&self, dests: &[Dest], _src: &Source) -> Option<usize> {
        least_weighted(dests, |d| d.state.overhead())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{ANY, dests};
    use super::*;
    use std::sync::atomic::Ordering;

    fn pick(d: &[Dest]) -> Option<usize> {
        WeightedLeastConnection.schedule(d, &ANY)
    }

    #[test]
    fn prefers_fewest_active() {
        let d = dests(&[1, 1]);
        d[0].state.active.store(3, Ordering::Relaxed);
        assert_eq!(pick(&d), Some(1));
    }

    #[test]
    fn active_weighs_256_inactive() {
        let d = dests(&[1, 1]);
        d[0].state.active.store(1, Ordering::Relaxed); // overhead 256
        d[1].state.inactive.store(255, Ordering::Relaxed); // overhead 255
        assert_eq!(pick(&d), Some(1));
        d[1].state.inactive.store(256, Ordering::Relaxed); // tie: first wins
        assert_eq!(pick(&d), Some(0));
    }

    #[test]
    fn weight_scales_overhead() {
        let d = dests(&[3, 1]);
        d[0].state.active.store(2, Ordering::Relaxed); // 512/3 = 170.6
        d[1].state.active.store(1, Ordering::Relaxed); // 256/1
        assert_eq!(pick(&d), Some(0));
    }

    #[test]
    fn weight_zero_never_chosen() {
        let d = dests(&[0, 1]);
        d[1].state.active.store(1000, Ordering::Relaxed);
        assert_eq!(pick(&d), Some(1));
        assert_eq!(pick(&dests(&[0, 0])), None);
    }

    #[test]
    fn distribution_follows_weights() {
        // Simulate long-lived connections: each pick adds one active connection.
        let d = dests(&[1, 2, 5]);
        let mut counts = [0u32; 3];
        for _ in 0..8_000 {
            let i = pick(&d).unwrap();
            d[i].state.active.fetch_add(1, Ordering::Relaxed);
            counts[i] += 1;
        }
        assert_eq!(counts, [1_000, 2_000, 5_000]);
    }
}
