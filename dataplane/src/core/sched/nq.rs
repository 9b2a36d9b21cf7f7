//! Never queue (`ip_vs_nq.c`).
//!
//! An available realserver with no active connection is taken at once (the first such in list
//! order); otherwise it behaves like sed: smallest `(active + 1) / weight`.

use std::sync::atomic::Ordering;

use super::{Scheduler, Source};
use crate::core::service::Dest;

#[derive(Debug, Default)]
pub struct NeverQueue;

impl Scheduler for NeverQueue {
    fn name(&self) -> &'static str {
        "nq"
    }

    fn schedule(&self, dests: &[Dest], _src: &Source) -> Option<usize> {
        let mut least: Option<(usize, u64)> = None;
        for (i, d) in dests.iter().enumerate() {
            if !d.available() {
                continue;
            }
            // Return an idle server directly.
            if d.state.active.load(Ordering::Relaxed) == 0 {
                return Some(i);
            }
            let doh = super::sed::overhead(d);
            let better = match least {
                None => true,
                Some((l, loh)) => {
                    (loh as u128) * (d.weight as u128) > (doh as u128) * (dests[l].weight as u128)
                }
            };
            if better {
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
