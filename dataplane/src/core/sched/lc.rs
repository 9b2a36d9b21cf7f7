//! Least-connection (`ip_vs_lc.c`).
//!
//! Picks the available realserver with the smallest overhead `active × 256 + inactive`,
//! ignoring weights (other than 0 = quiescent); ties go to the earlier realserver in list order
//! (IPVS replaces the candidate only on `doh < loh`).

use super::{Scheduler, Source};
use crate::core::service::Dest;

#[derive(Debug, Default)]
pub struct LeastConnection;

impl Scheduler for LeastConnection {
    fn name(&self) -> &'static str {
        "lc"
    }

    fn schedule(&self, dests: &[Dest], _src: &Source) -> Option<usize> {
        let mut least: Option<(usize, u64)> = None;
        for (i, d) in dests.iter().enumerate() {
            if !d.available() {
                continue;
            }
            let doh = d.state.overhead();
            if least.is_none_or(|(_, loh)| doh < loh) {
                least = Some((i, doh));
            }
        }
        least.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{ANY, dests};
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn ignores_weights_and_counts_inactive_as_1_256() {
        let d = dests(&[100, 1]);
        d[0].state.active.store(1, Ordering::Relaxed);
        assert_eq!(LeastConnection.schedule(&d, &ANY), Some(1));
        d[1].state.inactive.store(256, Ordering::Relaxed); // tie → first
        assert_eq!(LeastConnection.schedule(&d, &ANY), Some(0));
    }

    #[test]
    fn evens_out_long_lived_connections() {
        let d = dests(&[1, 5, 9]);
        let mut counts = [0u32; 3];
        for _ in 0..3_000 {
            let i = LeastConnection.schedule(&d, &ANY).unwrap();
            d[i].state.active.fetch_add(1, Ordering::Relaxed);
            counts[i] += 1;
        }
        assert_eq!(counts, [1_000, 1_000, 1_000]);
    }
}
