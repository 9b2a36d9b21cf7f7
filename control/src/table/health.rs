//! Health checking's overlay ([`Overlay`]): which realservers are in the published table and
//! at which weight. The configuration itself never changes, so `-S` and reloads never see it.

use super::*;
use crate::health::machine::Overlay;

impl ServiceTable {
    /// Applies health checking's view of the realservers; the services it changes are
    /// rebuilt at the next snapshot. Returns whether any did.
    pub fn set_health(&mut self, overlay: Overlay) -> bool {
        let before: Vec<Vec<Option<u32>>> = self
            .services
            .iter()
            .map(|(k, s)| self.live_weights(k, s))
            .collect();
        self.health = overlay;
        let after: Vec<Vec<Option<u32>>> = self
            .services
            .iter()
            .map(|(k, s)| self.live_weights(k, s))
            .collect();
        let mut changed = false;
        for ((_, s), (b, a)) in self.services.iter_mut().zip(before.iter().zip(&after)) {
            if b != a {
                s.built = None;
                changed = true;
            }
        }
        changed
    }

    /// The health overlay in force.
    pub fn health(&self) -> &Overlay {
        &self.health
    }

    /// Each realserver's weight as published (None: out of the table), in `dests` order.
    pub(super) fn live_weights(&self, key: &SvcKey, s: &ServiceEntry) -> Vec<Option<u32>> {
        s.dests
            .iter()
            .map(|d| self.live_weight(key, s, d))
            .collect()
    }

    /// Realserver `d` of service `key` as published: None while health checking keeps it out
    /// (dead without `inhibit_on_failure`, or its service lost quorum and has a sorry
    /// server), else its weight (0 while dead and inhibited, a `misc_dynamic` weight, or its
    /// configured one).
    pub(super) fn live_weight(&self, key: &SvcKey, s: &ServiceEntry, d: &DestEntry) -> Option<u32> {
        if s.sorry.is_some() && self.health.quorum_lost.contains(key) {
            return None;
        }
        match self.health.dests.get(&(*key, d.addr, d.port)) {
            None => Some(d.weight),
            Some(h) if h.alive => Some(h.weight.unwrap_or(d.weight)),
            Some(h) if h.inhibit => Some(0),
            Some(_) => None,
        }
    }

    /// Whether service `key`'s sorry server takes every new connection (lost quorum).
    pub(super) fn sorry_in_charge(&self, key: &SvcKey, s: &ServiceEntry) -> bool {
        s.sorry.is_some() && self.health.quorum_lost.contains(key)
    }
}
