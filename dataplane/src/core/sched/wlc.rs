//! Weighted least-connection (`ip_vs_wlc.c`).
//!
//! Picks the realserver with the smallest overhead / weight, where overhead is
//! `active × 256 + inactive` (`ip_vs_dest_conn_overhead`). Like IPVS it compares
//! `overhead_a × weight_b > overhead_b × weight_a` in integers, starts from the first available
//! realserver in list order, and only replaces the candidate on a strictly smaller ratio, so ties
//! go to the earlier realserver. Weight 0 is never chosen.

use super::Scheduler;
use crate::core::service::Dest;

#[derive(Debug, Default)]
pub struct WeightedLeastConnection;

impl Scheduler for WeightedLeastConnection {
    fn name(&self) -> &'static str {
        "wlc"
    }

    fn schedule(&self, dests: &[Dest]) -> Option<usize> {
        let first = dests.iter().position(Dest::available)?;
        let mut least = first;
        let mut loh = dests[first].state.overhead();
        for (i, d) in dests.iter().enumerate().skip(first + 1) {
            if !d.available() {
                continue;
            }
            let doh = d.state.overhead();
            if (loh as u128) * (d.weight as u128) > (doh as u128) * (dests[least].weight as u128) {
                least = i;
                loh = doh;
            }
        }
        Some(least)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::dests;
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn prefers_fewest_active() {
        let d = dests(&[1, 1]);
        d[0].state.active.store(3, Ordering::Relaxed);
        assert_eq!(WeightedLeastConnection.schedule(&d), Some(1));
    }

    #[test]
    fn active_weighs_256_inactive() {
        let d = dests(&[1, 1]);
        d[0].state.active.store(1, Ordering::Relaxed); // overhead 256
        d[1].state.inactive.store(255, Ordering::Relaxed); // overhead 255
        assert_eq!(WeightedLeastConnection.schedule(&d), Some(1));
        d[1].state.inactive.store(256, Ordering::Relaxed); // tie: first wins
        assert_eq!(WeightedLeastConnection.schedule(&d), Some(0));
    }

    #[test]
    fn weight_scales_overhead() {
        let d = dests(&[3, 1]);
        d[0].state.active.store(2, Ordering::Relaxed); // 512/3 = 170.6
        d[1].state.active.store(1, Ordering::Relaxed); // 256/1
        assert_eq!(WeightedLeastConnection.schedule(&d), Some(0));
    }

    #[test]
    fn weight_zero_never_chosen() {
        let d = dests(&[0, 1]);
        d[1].state.active.store(1000, Ordering::Relaxed);
        assert_eq!(WeightedLeastConnection.schedule(&d), Some(1));
        assert_eq!(WeightedLeastConnection.schedule(&dests(&[0, 0])), None);
    }

    #[test]
    fn distribution_follows_weights() {
        // Simulate long-lived connections: each pick adds one active connection.
        let d = dests(&[1, 2, 5]);
        let mut counts = [0u32; 3];
        for _ in 0..8_000 {
            let i = WeightedLeastConnection.schedule(&d).unwrap();
            d[i].state.active.fetch_add(1, Ordering::Relaxed);
            counts[i] += 1;
        }
        assert_eq!(counts, [1_000, 2_000, 5_000]);
    }
}
