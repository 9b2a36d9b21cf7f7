//! Never queue (`ip_vs_nq.c`).
//!
//! An available realserver with no active connection is taken at once (the first such in list
//! order); otherwise it behaves like sed: smallest `(active + 1) / weight`.

use super::{Scheduler, Source, least_weighted};
use crate::core::service::Dest;

#[derive(Debug, Default)]
pub struct NeverQueue;

impl Scheduler for NeverQueue {
    fn name(&self) -> &'static str {
        "nq"
    }

    fn schedule(&self, dests: &[Dest], _src: &Source) -> Option<usize> {
        // IPVS returns the first available idle realserver in list order as soon as it meets
        // it; failing one, the sed choice.
        dests
            .iter()
            .position(|d| d.available() && d.state.active_seen() == 0)
            .or_else(|| least_weighted(dests, super::sed::overhead))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{ANY, dests};
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn idle_server_first_even_if_light() {
        let d = dests(&[10, 1]);
        d[0].state.active.store(1, Ordering::Relaxed);
        // sed would pick 0 ((1+1)/10 < 1/1); nq takes the idle one.
        assert_eq!(NeverQueue.schedule(&d, &ANY), Some(1));
        d[1].state.active.store(1, Ordering::Relaxed);
        assert_eq!(NeverQueue.schedule(&d, &ANY), Some(0));
    }
}
