//! The services table as the control thread owns it: the configuration ipvsadm commands edit,
//! from which it builds the workers' immutable [`Snapshot`]s and the XDP steering keys.
//!
//! Realservers keep their `Arc<DestState>` (connection counters, next hop) across edits, and a
//! service whose configuration did not change keeps its `Arc<Service>` (and so its scheduler's
//! position), so publishing a new snapshot never disturbs existing connections.

//!
//! Split by concern: [`edit`] applies the commands, [`diff`] finds the commands between two
//! tables (reloads), [`counters`] keeps the statistics and `-Z`, [`snapshot`] builds what the
//! workers and the XDP program read, [`list`] writes ipvsadm's listings and `-S`.

mod counters;
mod diff;
mod edit;
mod health;
mod list;
mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use xlvs_common::MAX_STEER_KEYS;
use xlvs_dataplane::core::sched::{SchedConfig, SchedFlags, SchedKind};
use xlvs_dataplane::core::service::{Dest, DestState, Fwd, Persistence, Service, Timeouts, VsKey};
use xlvs_dataplane::core::stats::Totals;

use crate::command::{CmdError, Command, DestSpec, MarkMember, ServiceOpts, SvcKey};
use crate::ipvsadm::RulesError;
use crate::stats::{Estimator, Rates};

pub use list::IPVS_TAB_SIZE;

/// Where a piece of the configuration comes from. A reload of a file changes only what that
/// file owns; `xlvsadm` may edit anything (the next reload of the owning file restores the
/// file's version).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// `xlvsadm` edits and restores.
    #[default]
    Admin,
    /// A configuration file xlvsd reads at start and on SIGHUP (`--rules`).
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Admin => f.write_str("xlvsadm"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A configured realserver.
#[derive(Clone, Debug)]
pub struct DestEntry {
    pub addr: IpAddr,
    pub port: u16,
    pub fwd: Fwd,
    pub weight: u32,
    /// The last non-zero weight (IPVS `last_weight`, what Maglev builds its table from).
    pub last_weight: u32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub state: Arc<DestState>,
    /// The counters when they were last zeroed (`-Z`): listings show the increase since.
    zero: Totals,
    est: Estimator,
}

impl DestEntry {
    fn new(spec: &DestSpec, state: Arc<DestState>) -> Self {
        let est = Estimator::new(state.stats.totals());
        let mut d = DestEntry {
            addr: spec.addr,
            port: spec.port,
            fwd: spec.fwd,
            weight: 0,
            last_weight: 0,
            u_threshold: 0,
            l_threshold: 0,
            state,
            zero: Totals::default(),
            est,
        };
        d.update(spec);
        d
    }

    /// Applies `-e` (IPVS `__ip_vs_update_dest`).
    fn update(&mut self, spec: &DestSpec) {
        self.fwd = spec.fwd;
        self.weight = spec.weight;
        if spec.weight > 0 {
            self.last_weight = spec.weight;
        }
        self.u_threshold = spec.u_threshold;
        self.l_threshold = spec.l_threshold;
        self.state
            .set_thresholds(spec.u_threshold, spec.l_threshold);
    }

    fn published(&self) -> Dest {
        Dest {
            addr: self.addr,
            port: self.port,
            fwd: self.fwd,
            weight: self.weight,
            last_weight: self.last_weight,
            state: self.state.clone(),
        }
    }

    fn same(&self, addr: IpAddr, port: u16) -> bool {
        self.addr == addr && self.port == port
    }

    /// Its configuration, as `-a`/`-e` give it.
    fn spec(&self) -> DestSpec {
        DestSpec {
            addr: self.addr,
            port: self.port,
            fwd: self.fwd,
            weight: self.weight,
            u_threshold: self.u_threshold,
            l_threshold: self.l_threshold,
        }
    }

    /// Its counters since the last `-Z`.
    pub fn stats(&self) -> Totals {
        self.state.stats.totals().since(self.zero)
    }

    pub fn rates(&self) -> Rates {
        self.est.rates()
    }

    fn zero(&mut self) {
        let now = self.state.stats.totals();
        self.zero = now;
        self.est = Estimator::new(now);
    }
}

/// A configured virtual service.
#[derive(Clone, Debug)]
pub struct ServiceEntry {
    /// Where it was added from.
    pub source: Source,
    pub sched: SchedKind,
    pub flags: SchedFlags,
    pub persist: Option<Persistence>,
    pub sorry: Option<DestEntry>,
    /// In IPVS list order: the newest realserver first (IPVS adds at the head).
    pub dests: Vec<DestEntry>,
    /// The published form, rebuilt when this service changes.
    built: Option<Arc<Service>>,
    /// Counts of its realservers that are gone (deleted and no longer used by any
    /// connection): the service's counters keep them, as IPVS's do.
    gone: Totals,
    /// The counters when they were last zeroed.
    zero: Totals,
    est: Estimator,
}

impl ServiceEntry {
    /// Its rates (since the last `-Z`).
    pub fn rates(&self) -> Rates {
        self.est.rates()
    }

    /// Its configuration, as `-A`/`-E` give it.
    fn opts(&self) -> ServiceOpts {
        ServiceOpts {
            sched: self.sched,
            flags: self.flags,
            persist: self.persist,
            sorry: self.sorry.as_ref().map(DestEntry::spec),
        }
    }
}

/// The configuration: virtual services, their realservers, and the connection timeouts.
#[derive(Clone, Debug, Default)]
pub struct ServiceTable {
    services: BTreeMap<SvcKey, ServiceEntry>,
    /// Realservers deleted while connections still use them: their replies must still be
    /// steered until the last connection goes (LVS-NAT).
    retired: Vec<(SvcKey, DestEntry)>,
    /// Retired realservers of services deleted since: still steered until unused, but no
    /// longer counted in or revived by a service of the same key added later.
    orphans: Vec<(SvcKey, DestEntry)>,
    /// fwmark groups: which (proto, VIP, port ranges) each mark's service (`-f MARK`) takes.
    marks: BTreeMap<u32, Vec<MarkMember>>,
    /// Who added each fwmark group entry.
    mark_sources: BTreeMap<MarkMember, Source>,
    timeouts: Timeouts,
    /// Who set the timeouts last (`--set`), if anyone did.
    timeouts_source: Option<Source>,
    sched_cfg: SchedConfig,
    /// Health checking's view of the realservers ([`health`]).
    health: crate::health::machine::Overlay,
}

impl ServiceTable {
    /// An empty table whose schedulers are built with `cfg`.
    pub fn new(cfg: SchedConfig) -> Self {
        ServiceTable {
            sched_cfg: cfg,
            ..Default::default()
        }
    }

    pub fn services(&self) -> impl Iterator<Item = (&SvcKey, &ServiceEntry)> {
        self.services.iter()
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Every realserver state still referenced: configured (sorry servers included) and
    /// retired ones.
    pub fn all_dests(&self) -> impl Iterator<Item = &DestEntry> {
        self.services
            .values()
            .flat_map(|s| s.dests.iter().chain(s.sorry.iter()))
            .chain(self.retired.iter().chain(&self.orphans).map(|(_, d)| d))
    }

    /// The realserver (service, `spec`'s address and port) as configured now: IPVS takes a
    /// deleted realserver back from its trash, counters, zero point and rates included.
    fn revive(&mut self, key: &SvcKey, spec: &DestSpec) -> DestEntry {
        match self
            .retired
            .iter()
            .position(|(k, d)| k == key && d.same(spec.addr, spec.port))
        {
            Some(i) => {
                let mut d = self.retired.swap_remove(i).1;
                d.update(spec);
                d
            }
            None => DestEntry::new(spec, Arc::new(DestState::new(spec.addr, spec.port))),
        }
    }

    /// A service is gone: its retired realservers stay steered while connections use them,
    /// apart from the table a new service of the same key would use.
    fn orphan_retired(&mut self, key: Option<&SvcKey>) {
        let (gone, kept) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|(k, _)| key.is_none_or(|key| key == k));
        self.retired = kept;
        self.orphans.extend::<Vec<_>>(gone);
    }

    /// The (proto, VIP, port) keys a service is found under: its own, or its mark's group
    /// entries of its family.
    fn lookup_keys(&self, key: &SvcKey) -> Vec<VsKey> {
        match key {
            SvcKey::Addr(k) => vec![*k],
            SvcKey::Mark { mark, v6 } => self
                .marks
                .get(mark)
                .into_iter()
                .flatten()
                .filter(|m| m.addr.is_ipv6() == *v6)
                .flat_map(MarkMember::keys)
                .collect(),
        }
    }

    /// The XDP maps hold [`MAX_STEER_KEYS`] keys each: a change that needs more is refused.
    fn check_limits(&self) -> Result<(), CmdError> {
        let (vips, reals) = self.steer_keys();
        for (n, what) in [
            (vips.len(), "virtual service"),
            (reals.len(), "LVS-NAT realserver"),
        ] {
            if n > MAX_STEER_KEYS as usize {
                return Err(CmdError::op(format!(
                    "too many {what} (address, port, protocol) keys: {n}, the XDP map holds {MAX_STEER_KEYS} (fwmark port ranges count a key per port)"
                )));
            }
        }
        Ok(())
    }

    /// Who owns service `key`, if it exists.
    pub fn source(&self, key: &SvcKey) -> Option<&Source> {
        self.services.get(key).map(|s| &s.source)
    }

    /// Applies a list of commands all or nothing; what they add belongs to `source`. An error
    /// names the command that failed, or none if the result as a whole does not fit the
    /// steering maps.
    pub fn apply_all(
        &mut self,
        cmds: &[Command],
        source: &Source,
    ) -> Result<(), (Option<usize>, CmdError)> {
        let mut next = self.clone();
        for (i, c) in cmds.iter().enumerate() {
            next.apply(c, source).map_err(|e| (Some(i), e))?;
        }
        next.check_limits().map_err(|e| (None, e))?;
        *self = next;
        Ok(())
    }

    /// Applies the commands of a rules file all or nothing; an error names its line.
    pub fn apply_rules(
        &mut self,
        rules: &[(usize, Command)],
        source: &Source,
    ) -> Result<(), RulesError> {
        let cmds: Vec<Command> = rules.iter().map(|(_, c)| c.clone()).collect();
        self.apply_all(&cmds, source)
            .map_err(|(i, error)| RulesError {
                line: i.and_then(|i| rules.get(i)).map_or(0, |r| r.0),
                error,
            })
    }

    /// An empty table with the same scheduler settings (and health overlay).
    pub fn empty_like(&self) -> ServiceTable {
        ServiceTable {
            health: self.health.clone(),
            ..ServiceTable::new(self.sched_cfg)
        }
    }
}
