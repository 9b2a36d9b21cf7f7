//! Schedulers: pick a realserver for a new connection, with IPVS semantics.
//!
//! One file per scheduler behind [`Scheduler`]. A scheduler sees the service's realservers in
//! IPVS list order and their shared connection counters; it never allocates.

mod rr;
mod wlc;

pub use rr::RoundRobin;
pub use wlc::WeightedLeastConnection;

use super::service::Dest;

/// A scheduling algorithm (`ipvsadm -s NAME`).
pub trait Scheduler: Send + Sync + std::fmt::Debug {
    /// The name ipvsadm uses.
    fn name(&self) -> &'static str;
    /// Index into `dests` of the realserver for a new connection, or None if no realserver
    /// can take one (all quiescent).
    fn schedule(&self, dests: &[Dest]) -> Option<usize>;
}

/// Names of the schedulers this build knows.
pub const NAMES: &[&str] = &["rr", "wlc"];

/// A fresh scheduler instance by ipvsadm name.
pub fn by_name(name: &str) -> Option<Box<dyn Scheduler>> {
    match name {
        "rr" => Some(Box::new(RoundRobin::default())),
        "wlc" => Some(Box::new(WeightedLeastConnection)),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::super::service::{Dest, DestState, Fwd};
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    pub fn dests(weights: &[u32]) -> Vec<Dest> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Dest {
                addr: Ipv4Addr::new(10, 0, 0, 10 + i as u8),
                port: 80,
                fwd: Fwd::Masq,
                weight: w,
                state: Arc::new(DestState::default()),
            })
            .collect()
    }
}
