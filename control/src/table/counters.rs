//! Statistics as IPVS keeps them: service totals that include deleted realservers, `-Z`
//! zero points, and the rate estimator's periods.

use super::*;

impl ServiceTable {
    /// Drops retired realservers no connection uses any more (their counts stay in their
    /// service's); true if any went.
    pub fn reap_retired(&mut self) -> bool {
        let before = self.retired.len() + self.orphans.len();
        self.orphans
            .retain(|(_, d)| Arc::strong_count(&d.state) > 1);
        let services = &mut self.services;
        self.retired.retain(|(k, d)| {
            let used = Arc::strong_count(&d.state) > 1;
            if !used && let Some(s) = services.get_mut(k) {
                s.gone = s.gone.plus(d.state.stats.totals());
            }
            used
        });
        before != self.retired.len() + self.orphans.len()
    }

    /// A service's counters (all its realservers', past ones included), not zeroed.
    pub(super) fn raw_totals(&self, key: &SvcKey, s: &ServiceEntry) -> Totals {
        s.dests
            .iter()
            .chain(s.sorry.iter())
            .chain(
                self.retired
                    .iter()
                    .filter(|(k, _)| k == key)
                    .map(|(_, d)| d),
            )
            .fold(s.gone, |t, d| t.plus(d.state.stats.totals()))
    }

    /// A service's counters since the daemon started (the metrics' counters).
    pub fn service_raw_totals(&self, key: &SvcKey) -> Option<Totals> {
        let s = self.services.get(key)?;
        Some(self.raw_totals(key, s))
    }

    /// A service's counters since the last `-Z`.
    pub fn service_stats(&self, key: &SvcKey) -> Option<Totals> {
        let s = self.services.get(key)?;
        Some(self.raw_totals(key, s).since(s.zero))
    }

    /// One estimation period (every [`ESTIMATOR_PERIOD_SECS`]): updates every rate.
    pub fn estimate(&mut self) {
        let raw: Vec<Totals> = self
            .services
            .iter()
            .map(|(k, s)| self.raw_totals(k, s))
            .collect();
        for (s, t) in self.services.values_mut().zip(raw) {
            s.est.update(t);
            for d in s.dests.iter_mut().chain(s.sorry.iter_mut()) {
                d.est.update(d.state.stats.totals());
            }
        }
    }

    /// `-Z`: zeroes the counters and rates of one service and its realservers, or of all.
    pub fn zero(&mut self, only: Option<&SvcKey>) -> Result<(), CmdError> {
        if let Some(k) = only
            && !self.services.contains_key(k)
        {
            return Err(CmdError::op("No such service"));
        }
        let keys: Vec<SvcKey> = self
            .services
            .keys()
            .filter(|k| only.is_none_or(|o| o == *k))
            .copied()
            .collect();
        for k in keys {
            let raw = self.raw_totals(&k, &self.services[&k]);
            let s = self.services.get_mut(&k).expect("listed above");
            s.zero = raw;
            s.est = Estimator::new(raw);
            for d in s.dests.iter_mut().chain(s.sorry.iter_mut()) {
                d.zero();
            }
            // Retired ones too: one added back shows its counts since this zeroing.
            for (_, d) in self.retired.iter_mut().filter(|(rk, _)| *rk == k) {
                d.zero();
            }
        }
        Ok(())
    }
}
