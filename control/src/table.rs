//! The services table as the control thread owns it: the configuration ipvsadm commands edit,
//! from which it builds the workers' immutable [`Snapshot`]s and the XDP steering keys.
//!
//! Realservers keep their `Arc<DestState>` (connection counters, next hop) across edits, and a
//! service whose configuration did not change keeps its `Arc<Service>` (and so its scheduler's
//! position), so publishing a new snapshot never disturbs existing connections.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use xlvs_common::{L4Key, MAX_STEER_KEYS};
use xlvs_dataplane::core::sched::{self, SchedConfig, SchedFlags};
use xlvs_dataplane::core::service::{
    Dest, DestState, Fwd, IfaceInfo, Persistence, Proto, Service, Snapshot, Timeouts, VsKey,
};
use xlvs_dataplane::core::stats::Totals;
use xlvs_dataplane::core::tcp_state::TcpState;

use crate::ipvsadm::{
    CmdError, Command, DestSpec, ListFormat, MarkMember, RulesError, ServiceOpts, SvcKey, mask_text,
};
use crate::stats::{Estimator, Rates, largenum};

/// IPVS's connection table size as ipvsadm reports it ("size=4096").
pub const IPVS_TAB_SIZE: u32 = 4096;

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
    pub sched: String,
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
            sched: self.sched.clone(),
            flags: self.flags,
            persist: self.persist,
            sorry: self.sorry.as_ref().map(DestEntry::spec),
        }
    }
}

/// The configuration: virtual services, their realservers, and the connection timeouts.
#[derive(Clone, Debug, Default)]
pub struct Table {
    services: BTreeMap<SvcKey, ServiceEntry>,
    /// Realservers deleted while connections still use them: their replies must still be
    /// steered until the last connection goes (LVS-NAT).
    retired: Vec<(SvcKey, DestEntry)>,
    /// Retired realservers of services deleted since: still steered until unused, but no
    /// longer counted in or revived by a service of the same key added later.
    orphans: Vec<(SvcKey, DestEntry)>,
    /// fwmark groups: which (proto, VIP, port ranges) each mark's service (`-f MARK`) takes.
    marks: BTreeMap<u32, Vec<MarkMember>>,
    timeouts: Timeouts,
    sched_cfg: SchedConfig,
}

fn totals_row(t: Totals) -> [u64; 5] {
    [t.conns, t.inpkts, t.outpkts, t.inbytes, t.outbytes]
}

fn rates_row(r: Rates) -> [u64; 5] {
    [r.cps, r.inpps, r.outpps, r.inbps, r.outbps]
}

/// ipvsadm's `ADDR:PORT`, `[ADDR]:PORT` for IPv6.
fn ep(addr: IpAddr, port: u16) -> String {
    SocketAddr::new(addr, port).to_string()
}

impl Table {
    /// An empty table whose schedulers are built with `cfg`.
    pub fn new(cfg: SchedConfig) -> Self {
        Table {
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

    /// Sets a service's `-A`/`-E` options; a replaced sorry server is retired.
    fn set_opts(&mut self, key: &SvcKey, opts: &ServiceOpts) {
        let old_sorry = self.services.get_mut(key).and_then(|s| s.sorry.take());
        let sorry = match (&opts.sorry, old_sorry) {
            (Some(spec), Some(mut old)) if old.same(spec.addr, spec.port) => {
                old.update(spec);
                Some(old)
            }
            (spec, old) => {
                if let Some(old) = old {
                    self.retired.push((*key, old));
                }
                spec.as_ref().map(|spec| self.revive(key, spec))
            }
        };
        let svc = self.services.get_mut(key).expect("service exists");
        svc.sched = opts.sched.clone();
        svc.flags = opts.flags;
        svc.persist = opts.persist;
        svc.sorry = sorry;
        svc.built = None;
    }

    /// Applies a table-changing command (through [`Table::apply_all`], which checks the
    /// result against the steering maps). Listing commands are not handled here.
    fn apply(&mut self, cmd: &Command) -> Result<(), CmdError> {
        match cmd {
            Command::AddService { key, opts } => {
                check_sched(&opts.sched)?;
                if self.services.contains_key(key) {
                    return Err(CmdError::op("Service already exists"));
                }
                self.services.insert(
                    *key,
                    ServiceEntry {
                        sched: String::new(),
                        flags: SchedFlags::default(),
                        persist: None,
                        sorry: None,
                        dests: Vec::new(),
                        built: None,
                        gone: Totals::default(),
                        zero: Totals::default(),
                        est: Estimator::default(),
                    },
                );
                self.set_opts(key, opts);
            }
            Command::EditService { key, opts } => {
                check_sched(&opts.sched)?;
                if !self.services.contains_key(key) {
                    return Err(CmdError::op("No such service"));
                }
                self.set_opts(key, opts);
            }
            Command::DelService { key } => {
                let svc = self
                    .services
                    .remove(key)
                    .ok_or_else(|| CmdError::op("No such service"))?;
                // IPVS drops the connections of a deleted service; nothing to keep steering.
                drop(svc);
                self.orphan_retired(Some(key));
            }
            Command::Clear => {
                // The fwmark groups too: they are part of the table `-S` saves.
                self.services.clear();
                self.marks.clear();
                self.orphan_retired(None);
            }
            Command::AddDest { key, dest } => {
                check_thresholds(dest)?;
                let svc = self
                    .services
                    .get(key)
                    .ok_or_else(|| CmdError::op("Service not defined"))?;
                if svc.dests.iter().any(|d| d.same(dest.addr, dest.port)) {
                    return Err(CmdError::op("Destination already exists"));
                }
                let d = self.revive(key, dest);
                let svc = self.services.get_mut(key).expect("checked above");
                svc.dests.insert(0, d);
                svc.built = None;
            }
            Command::EditDest { key, dest } => {
                check_thresholds(dest)?;
                let svc = self
                    .services
                    .get_mut(key)
                    .ok_or_else(|| CmdError::op("Service not defined"))?;
                let d = svc
                    .dests
                    .iter_mut()
                    .find(|d| d.same(dest.addr, dest.port))
                    .ok_or_else(|| CmdError::op("No such destination"))?;
                d.update(dest);
                svc.built = None;
            }
            Command::DelDest { key, addr, port } => {
                let svc = self
                    .services
                    .get_mut(key)
                    .ok_or_else(|| CmdError::op("Service not defined"))?;
                let i = svc
                    .dests
                    .iter()
                    .position(|d| d.addr == *addr && d.port == *port)
                    .ok_or_else(|| CmdError::op("No such destination"))?;
                let d = svc.dests.remove(i);
                svc.built = None;
                self.retired.push((*key, d));
            }
            Command::SetTimeouts { tcp, tcpfin, udp } => {
                // ipvsadm --set: 0 leaves a timeout as it is.
                if *tcp > 0 {
                    self.timeouts.tcp[TcpState::Established as usize] = *tcp;
                }
                if *tcpfin > 0 {
                    self.timeouts.tcp[TcpState::FinWait as usize] = *tcpfin;
                }
                if *udp > 0 {
                    self.timeouts.udp = *udp;
                }
            }
            Command::AddMark { mark, member } => {
                if let Some((m, other)) = self
                    .marks
                    .iter()
                    .flat_map(|(m, v)| v.iter().map(move |o| (m, o)))
                    .find(|(_, o)| o.overlaps(member))
                {
                    return Err(CmdError::op(format!(
                        "fwmark group entry {member} overlaps {other} of mark {m}"
                    )));
                }
                let group = self.marks.entry(*mark).or_default();
                group.push(*member);
                group.sort();
            }
            Command::DelMark { mark, member } => {
                let group = self
                    .marks
                    .get_mut(mark)
                    .filter(|g| g.contains(member))
                    .ok_or_else(|| CmdError::op("No such fwmark group entry"))?;
                group.retain(|m| m != member);
                if group.is_empty() {
                    self.marks.remove(mark);
                }
            }
            _ => return Err(CmdError::op("not a table command")),
        }
        Ok(())
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

    /// Applies a list of commands all or nothing. An error names the command that failed, or
    /// none if the result as a whole does not fit the steering maps.
    pub fn apply_all(&mut self, cmds: &[Command]) -> Result<(), (Option<usize>, CmdError)> {
        let mut next = self.clone();
        for (i, c) in cmds.iter().enumerate() {
            next.apply(c).map_err(|e| (Some(i), e))?;
        }
        next.check_limits().map_err(|e| (None, e))?;
        *self = next;
        Ok(())
    }

    /// Applies the commands of a rules file all or nothing; an error names its line.
    pub fn apply_rules(&mut self, rules: &[(usize, Command)]) -> Result<(), RulesError> {
        let cmds: Vec<Command> = rules.iter().map(|(_, c)| c.clone()).collect();
        self.apply_all(&cmds).map_err(|(i, error)| RulesError {
            line: i.and_then(|i| rules.get(i)).map_or(0, |r| r.0),
            error,
        })
    }

    /// An empty table with the same scheduler settings.
    pub fn empty_like(&self) -> Table {
        Table::new(self.sched_cfg)
    }

    /// The commands that turn this table's configuration into `target`'s, touching only what
    /// differs: a service whose options and realservers are the same gets no command, so it
    /// keeps its published form, scheduler position and connections. Deletions come first
    /// (a fwmark group entry may move from one mark to another).
    pub fn diff(&self, target: &Table) -> Vec<Command> {
        let mut out = Vec::new();
        let entries = |t: &Table| -> Vec<(u32, MarkMember)> {
            t.marks
                .iter()
                .flat_map(|(m, g)| g.iter().map(move |e| (*m, *e)))
                .collect()
        };
        let (old_marks, new_marks) = (entries(self), entries(target));
        for (mark, member) in old_marks.iter().filter(|e| !new_marks.contains(e)) {
            out.push(Command::DelMark {
                mark: *mark,
                member: *member,
            });
        }
        for key in self
            .services
            .keys()
            .filter(|k| !target.services.contains_key(k))
        {
            out.push(Command::DelService { key: *key });
        }
        for (key, want) in &target.services {
            let add = |d: &DestEntry| Command::AddDest {
                key: *key,
                dest: d.spec(),
            };
            let Some(have) = self.services.get(key) else {
                out.push(Command::AddService {
                    key: *key,
                    opts: want.opts(),
                });
                // Oldest first, so the realservers end up in the same (IPVS) order.
                out.extend(want.dests.iter().rev().map(add));
                continue;
            };
            if have.opts() != want.opts() {
                out.push(Command::EditService {
                    key: *key,
                    opts: want.opts(),
                });
            }
            for d in &have.dests {
                if !want.dests.iter().any(|w| w.same(d.addr, d.port)) {
                    out.push(Command::DelDest {
                        key: *key,
                        addr: d.addr,
                        port: d.port,
                    });
                }
            }
            for w in want.dests.iter().rev() {
                match have.dests.iter().find(|d| d.same(w.addr, w.port)) {
                    Some(d) if d.spec() == w.spec() => {}
                    Some(_) => out.push(Command::EditDest {
                        key: *key,
                        dest: w.spec(),
                    }),
                    None => out.push(add(w)),
                }
            }
        }
        for (mark, member) in new_marks.iter().filter(|e| !old_marks.contains(e)) {
            out.push(Command::AddMark {
                mark: *mark,
                member: *member,
            });
        }
        if self.timeouts != target.timeouts {
            let t = &target.timeouts;
            out.push(Command::SetTimeouts {
                tcp: t.tcp[TcpState::Established as usize],
                tcpfin: t.tcp[TcpState::FinWait as usize],
                udp: t.udp,
            });
        }
        out
    }

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
    fn raw_totals(&self, key: &SvcKey, s: &ServiceEntry) -> Totals {
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

    /// The snapshot the workers forward with.
    pub fn snapshot(&mut self, ifaces: &[IfaceInfo]) -> Snapshot {
        let mut snap = Snapshot {
            ifaces: ifaces.to_vec(),
            timeouts: self.timeouts,
            ..Default::default()
        };
        let cfg = self.sched_cfg;
        // Address services first: a fwmark group entry overrides one (IPVS looks a packet up
        // by its mark first).
        let lookup: Vec<Vec<VsKey>> = self.services.keys().map(|k| self.lookup_keys(k)).collect();
        for ((key, svc), lookup) in self.services.iter_mut().zip(lookup) {
            let built = svc.built.get_or_insert_with(|| {
                let dests: Vec<Dest> = svc.dests.iter().map(DestEntry::published).collect();
                let (_, addr, port, mark) = key.parts();
                // A fwmark service is found under its group's keys, never its own.
                let key = match *key {
                    SvcKey::Addr(k) => k,
                    SvcKey::Mark { .. } => VsKey {
                        proto: Proto::Tcp,
                        addr,
                        port,
                    },
                };
                Arc::new(Service {
                    key,
                    mark,
                    sched: sched::build(&svc.sched, svc.flags, &dests, &cfg)
                        .expect("scheduler checked on apply"),
                    dests,
                    persist: svc.persist,
                    sorry: svc.sorry.as_ref().map(DestEntry::published),
                })
            });
            for k in lookup {
                snap.services.insert(k, built.clone());
            }
        }
        snap
    }

    /// Keys the XDP program steers: (virtual services, LVS-NAT realservers incl. retired ones).
    pub fn steer_keys(&self) -> (Vec<L4Key>, Vec<L4Key>) {
        // Each service's lookup keys, also for retired and orphaned realservers' services.
        let lookup: BTreeMap<&SvcKey, Vec<VsKey>> = self
            .services
            .keys()
            .chain(self.retired.iter().chain(&self.orphans).map(|(k, _)| k))
            .map(|k| (k, self.lookup_keys(k)))
            .collect();
        let mut vips: Vec<L4Key> = self
            .services
            .keys()
            .flat_map(|k| &lookup[k])
            .map(|k| L4Key::ip(k.addr, k.port, k.proto.number()))
            .collect();
        vips.sort_by_key(|k| (k.addr, k.port, k.proto));
        vips.dedup();
        // A NAT realserver's replies come from its port, or from the port the client asked
        // for if it has none (fwmark services): one key per port of the group.
        let mut reals: Vec<L4Key> = self
            .services
            .iter()
            .flat_map(|(k, s)| s.dests.iter().chain(s.sorry.iter()).map(move |d| (k, d)))
            .chain(
                self.retired
                    .iter()
                    .chain(&self.orphans)
                    .map(|(k, d)| (k, d)),
            )
            .filter(|(_, d)| d.fwd == Fwd::Masq)
            .flat_map(|(k, d)| {
                lookup[k].iter().map(move |v| {
                    let port = if d.port == 0 { v.port } else { d.port };
                    L4Key::ip(d.addr, port, v.proto.number())
                })
            })
            .collect();
        reals.sort_by_key(|k| (k.addr, k.port, k.proto));
        reals.dedup();
        (vips, reals)
    }

    /// The services in ipvsadm's order (`ipvs_cmp_services`): by fwmark (address services
    /// have none), address family, protocol, address and port.
    fn sorted(&self) -> Vec<(&SvcKey, &ServiceEntry)> {
        let mut v: Vec<_> = self.services.iter().collect();
        v.sort_by_key(|(k, _)| match k {
            SvcKey::Addr(a) => (0, a.addr.is_ipv6(), a.proto.number(), Some(a.addr), a.port),
            SvcKey::Mark { mark, v6 } => (*mark, *v6, 0, None, 0),
        });
        v
    }

    /// One service (or "No such service", ipvsadm's exit code 1), or all in ipvsadm's order.
    fn select(&self, only: Option<&SvcKey>) -> Result<Vec<(&SvcKey, &ServiceEntry)>, CmdError> {
        match only {
            Some(k) => match self.services.get_key_value(k) {
                Some(kv) => Ok(vec![kv]),
                None => Err(CmdError {
                    msg: "No such service".into(),
                    code: 1,
                }),
            },
            None => Ok(self.sorted()),
        }
    }

    /// `ipvsadm -L -n` (or `-L -n -t SERVICE`) in one of its layouts (ipvsadm.c
    /// `print_title`, `print_service_entry`).
    pub fn list(
        &self,
        only: Option<&SvcKey>,
        format: ListFormat,
        exact: bool,
    ) -> Result<String, CmdError> {
        let mut out = String::new();
        if only.is_none() {
            let _ = writeln!(
                out,
                "IP Virtual Server version 1.2.1 (size={IPVS_TAB_SIZE})"
            );
        }
        let columns = |names: [&str; 5]| {
            format!(
                "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
                "Prot LocalAddress:Port", names[0], names[1], names[2], names[3], names[4]
            )
        };
        out.push_str(&match format {
            ListFormat::Normal => "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".to_string(),
            ListFormat::Stats => columns(["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"]),
            ListFormat::Rate => columns(["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"]),
            ListFormat::Thresholds => format!(
                "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
                "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
            ),
            ListFormat::PersistentConn => format!(
                "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
                "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
            ),
        });
        let services = self.select(only)?;
        let nums = |v: [u64; 5]| v.map(|n| largenum(n, exact)).concat();
        for (k, s) in services {
            // ipvsadm cuts an IPv4 service name at 33 characters and a realserver at 28.
            let mut name = k.label();
            if k.is_ipv4() {
                name.truncate(33);
            }
            match format {
                ListFormat::Stats => {
                    let t = self.raw_totals(k, s).since(s.zero);
                    let _ = write!(out, "{name:<33}{}", nums(totals_row(t)));
                }
                ListFormat::Rate => {
                    let r = s.est.rates();
                    let _ = write!(out, "{name:<33}{}", nums(rates_row(r)));
                }
                _ => {
                    let _ = write!(out, "{} {}", name, s.sched);
                    if !s.flags.is_empty() {
                        let _ = write!(out, " ({})", s.flags.render(&s.sched));
                    }
                    if let Some(p) = &s.persist {
                        let _ = write!(out, " persistent {}", p.timeout.as_secs());
                        if let Some(m) = mask_text(p.netmask) {
                            let _ = write!(out, " mask {m}");
                        }
                    }
                }
            }
            out.push('\n');
            let mut dests: Vec<&DestEntry> = s.dests.iter().collect();
            dests.sort_by_key(|d| (d.addr, d.port));
            for d in dests {
                let mut dname = ep(d.addr, d.port);
                if d.addr.is_ipv4() {
                    dname.truncate(28);
                }
                let st = &d.state;
                let (active, inactive) = (
                    st.active.load(Ordering::Relaxed),
                    st.inactive.load(Ordering::Relaxed),
                );
                let _ = match format {
                    ListFormat::Normal => writeln!(
                        out,
                        "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                        dname,
                        d.fwd.label(),
                        d.weight,
                        active,
                        inactive,
                    ),
                    ListFormat::Stats => {
                        writeln!(out, "  -> {dname:<28}{}", nums(totals_row(d.stats())))
                    }
                    ListFormat::Rate => {
                        let r = d.rates();
                        writeln!(
                            out,
                            "  -> {dname:<28} {:>8} {:>8} {:>8}{}{}",
                            r.cps,
                            r.inpps,
                            r.outpps,
                            largenum(r.inbps, exact),
                            largenum(r.outbps, exact)
                        )
                    }
                    ListFormat::Thresholds => writeln!(
                        out,
                        "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                        d.u_threshold, d.l_threshold, active, inactive
                    ),
                    ListFormat::PersistentConn => writeln!(
                        out,
                        "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                        d.weight,
                        st.persist.load(Ordering::Relaxed),
                        active,
                        inactive
                    ),
                };
            }
        }
        Ok(out)
    }

    /// `-L --json`: the table, counters (since `-Z`) and rates for scripts. Field names follow
    /// ipvsadm's column names.
    pub fn list_json(&self, only: Option<&SvcKey>) -> Result<serde_json::Value, CmdError> {
        use serde_json::json;
        let services = self.select(only)?;
        let stats = |t: Totals| {
            json!({"conns": t.conns, "inpkts": t.inpkts, "outpkts": t.outpkts,
                   "inbytes": t.inbytes, "outbytes": t.outbytes})
        };
        let rates = |r: Rates| {
            json!({"cps": r.cps, "inpps": r.inpps, "outpps": r.outpps,
                   "inbps": r.inbps, "outbps": r.outbps})
        };
        let dest = |d: &DestEntry| {
            let st = &d.state;
            json!({
                "address": d.addr.to_string(),
                "port": d.port,
                "forward": d.fwd.label(),
                "weight": d.weight,
                "u_threshold": d.u_threshold,
                "l_threshold": d.l_threshold,
                "active_conns": st.active.load(Ordering::Relaxed),
                "inact_conns": st.inactive.load(Ordering::Relaxed),
                "persist_conns": st.persist.load(Ordering::Relaxed),
                "stats": stats(d.stats()),
                "rates": rates(d.rates()),
            })
        };
        let list: Vec<_> = services
            .into_iter()
            .map(|(k, s)| {
                let mut dests: Vec<&DestEntry> = s.dests.iter().collect();
                dests.sort_by_key(|d| (d.addr, d.port));
                let (protocol, address, port, mark) = k.parts();
                json!({
                    "protocol": protocol,
                    "address": (mark == 0).then(|| address.to_string()),
                    "port": port,
                    "fwmark": (mark != 0).then_some(mark),
                    "family": if k.is_ipv4() { "inet" } else { "inet6" },
                    "scheduler": s.sched,
                    "flags": s.flags.render(&s.sched),
                    "persistent": s.persist.map(|p| p.timeout.as_secs()),
                    "netmask": s.persist.and_then(|p| mask_text(p.netmask)),
                    "stats": stats(self.raw_totals(k, s).since(s.zero)),
                    "rates": rates(s.est.rates()),
                    "sorry_server": s.sorry.as_ref().map(dest),
                    "realservers": dests.into_iter().map(dest).collect::<Vec<_>>(),
                })
            })
            .collect();
        let marks: Vec<_> = self
            .marks
            .iter()
            .map(|(m, g)| json!({"fwmark": m, "entries": g.iter().map(|e| e.to_string()).collect::<Vec<_>>()}))
            .collect();
        let t = &self.timeouts;
        Ok(json!({
            "services": list,
            "fwmark_groups": marks,
            "timeouts": {
                "tcp": t.tcp[TcpState::Established as usize],
                "tcpfin": t.tcp[TcpState::FinWait as usize],
                "udp": t.udp,
            },
        }))
    }

    /// `ipvsadm -S -n`: the table as rules that `-R`/`--rules` restore (the fwmark groups
    /// first, then each service and its realservers).
    pub fn save(&self) -> String {
        let mut out = String::new();
        for (mark, group) in &self.marks {
            for m in group {
                let _ = writeln!(
                    out,
                    "{}",
                    Command::AddMark {
                        mark: *mark,
                        member: *m
                    }
                );
            }
        }
        for (k, s) in self.sorted() {
            let _ = writeln!(
                out,
                "{}",
                Command::AddService {
                    key: *k,
                    opts: s.opts()
                }
            );
            let mut dests: Vec<&DestEntry> = s.dests.iter().collect();
            dests.sort_by_key(|d| (d.addr, d.port));
            for d in dests {
                let _ = writeln!(
                    out,
                    "{}",
                    Command::AddDest {
                        key: *k,
                        dest: d.spec()
                    }
                );
            }
        }
        out
    }

    /// `ipvsadm -L --timeout`.
    pub fn list_timeouts(&self) -> String {
        let t = &self.timeouts;
        format!(
            "Timeout (tcp tcpfin udp): {} {} {}\n",
            t.tcp[TcpState::Established as usize],
            t.tcp[TcpState::FinWait as usize],
            t.udp
        )
    }
}

fn check_sched(s: &str) -> Result<(), CmdError> {
    if sched::known(s) {
        Ok(())
    } else {
        Err(CmdError::op("Scheduler or persistence engine not found"))
    }
}

/// IPVS refuses a lower threshold above the upper one (`-ERANGE`).
fn check_thresholds(d: &DestSpec) -> Result<(), CmdError> {
    if d.l_threshold > d.u_threshold {
        return Err(CmdError::op(
            "lower threshold is higher than upper threshold",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvsadm::{parse, parse_rules};
    use xlvs_common::PROTO_TCP;

    fn run(t: &mut Table, s: &str) -> Result<(), CmdError> {
        t.apply(&parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>()).unwrap())
    }

    const RULES: &str = "\
-A -t 192.0.2.100:80 -s rr
-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m -w 1
-a -t 192.0.2.100:80 -r 10.10.0.12:8080 -m -w 2
-A -u 192.0.2.100:53 -s wlc
-a -u 192.0.2.100:53 -r 10.10.0.11:53 -g -w 1
";

    fn table() -> Table {
        let mut t = Table::default();
        t.apply_all(&parse_rules(RULES).unwrap()).unwrap();
        t
    }

    #[test]
    fn list_matches_ipvsadm_layout() {
        let t = table();
        let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.0.2.100:80 rr
  -> 10.10.0.11:80                Masq    1      0          0         
  -> 10.10.0.12:8080              Masq    2      0          0         
UDP  192.0.2.100:53 wlc
  -> 10.10.0.11:53                Route   1      0          0         
";
        assert_eq!(t.list(None, ListFormat::Normal, false).unwrap(), expected);
    }

    #[test]
    fn save_restores_the_same_table() {
        let t = table();
        let saved = t.save();
        assert_eq!(saved, RULES);
        let mut t2 = Table::default();
        t2.apply_all(&parse_rules(&saved).unwrap()).unwrap();
        assert_eq!(
            t2.list(None, ListFormat::Normal, false).unwrap(),
            t.list(None, ListFormat::Normal, false).unwrap()
        );
    }

    const V6_RULES: &str = "\
-A -t [2001:db8::100]:80 -s rr -p 60 -M 64 --sorry-server [fd00:10::99]:80 -m
-a -t [2001:db8::100]:80 -r [fd00:10::11]:8080 -m -w 1
-a -t [2001:db8::100]:80 -r [fd00:10::12]:8080 -m -w 1
";

    #[test]
    fn ipv6_services_list_save_and_steer_like_ipvsadm() {
        let mut t = Table::default();
        t.apply_all(&parse_rules(V6_RULES).unwrap()).unwrap();
        let l = t.list(None, ListFormat::Normal, false).unwrap();
        assert!(
            l.contains("TCP  [2001:db8::100]:80 rr persistent 60 mask 64\n"),
            "{l}"
        );
        assert!(l.contains("  -> [fd00:10::11]:8080"), "{l}");
        assert_eq!(t.save(), V6_RULES);
        let (vips, reals) = t.steer_keys();
        let vip: std::net::Ipv6Addr = "2001:db8::100".parse().unwrap();
        assert_eq!(vips, [L4Key::v6(vip.octets(), 80, PROTO_TCP)]);
        assert_eq!(reals.len(), 3, "two realservers and the NAT sorry server");
        // A realserver of the other family is refused.
        let e = crate::ipvsadm::parse(
            &"-a -t [2001:db8::100]:80 -r 10.10.0.11:80 -m"
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>(),
        )
        .unwrap_err();
        assert!(e.msg.contains("address family"), "{}", e.msg);
    }

    const FULL_RULES: &str = "\
-A -t 192.0.2.100:80 -s sh -b sh-fallback,sh-port -p 60 -M 255.255.255.0 --sorry-server 10.10.0.99:80 -m
-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m -w 1 -x 100 -y 50
-a -t 192.0.2.100:80 -r 10.10.0.12:80 -m -w 0
-A -t 192.0.2.100:443 -s mh -p 300
-a -t 192.0.2.100:443 -r 10.10.0.11:443 -g -w 2
";

    #[test]
    fn options_show_in_list_and_save_round_trips() {
        let mut t = Table::default();
        t.apply_all(&parse_rules(FULL_RULES).unwrap()).unwrap();
        let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.0.2.100:80 sh (sh-fallback,sh-port) persistent 60 mask 255.255.255.0
  -> 10.10.0.11:80                Masq    1      0          0         
  -> 10.10.0.12:80                Masq    0      0          0         
TCP  192.0.2.100:443 mh persistent 300
  -> 10.10.0.11:443               Route   2      0          0         
";
        assert_eq!(t.list(None, ListFormat::Normal, false).unwrap(), expected);
        assert_eq!(t.save(), FULL_RULES);
        let mut t2 = Table::default();
        t2.apply_all(&parse_rules(&t.save()).unwrap()).unwrap();
        assert_eq!(t2.save(), FULL_RULES);
        // The sorry server's replies are steered like a NAT realserver's.
        let (_, reals) = t.steer_keys();
        assert!(reals.contains(&L4Key::v4([10, 10, 0, 99], 80, PROTO_TCP)));
        let snap = t.snapshot(&[]);
        let svc = snap.services.values().find(|s| s.key.port == 80).unwrap();
        assert_eq!(svc.sorry.as_ref().unwrap().addr.to_string(), "10.10.0.99");
        assert_eq!(svc.sched.name(), "sh");
        let d = svc
            .dests
            .iter()
            .find(|d| d.addr.to_string() == "10.10.0.11")
            .unwrap();
        assert_eq!(d.state.u_threshold.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn timeouts_set_and_list() {
        let mut t = table();
        assert_eq!(t.list_timeouts(), "Timeout (tcp tcpfin udp): 900 120 300\n");
        run(&mut t, "--set 3600 0 60").unwrap();
        assert_eq!(t.list_timeouts(), "Timeout (tcp tcpfin udp): 3600 120 60\n");
        let snap = t.snapshot(&[]);
        assert_eq!(snap.timeouts.tcp[TcpState::Established as usize], 3600);
    }

    #[test]
    fn thresholds_are_checked_and_applied_live() {
        let mut t = table();
        assert_eq!(
            run(&mut t, "-e -t 192.0.2.100:80 -r 10.10.0.11:80 -m -y 5")
                .unwrap_err()
                .msg,
            "lower threshold is higher than upper threshold"
        );
        let key = vs("tcp 192.0.2.100:80");
        let st = t.services[&key].dests[1].state.clone();
        run(&mut t, "-e -t 192.0.2.100:80 -r 10.10.0.11:80 -m -x 1").unwrap();
        st.bind(xlvs_dataplane::core::service::Binding::Active);
        assert!(st.overloaded());
        // Raising the upper threshold clears the overload (IPVS __ip_vs_update_dest).
        run(&mut t, "-e -t 192.0.2.100:80 -r 10.10.0.11:80 -m -x 5").unwrap();
        assert!(!st.overloaded());
    }

    #[test]
    fn errors_follow_ipvsadm() {
        let mut t = table();
        assert_eq!(
            run(&mut t, "-A -t 192.0.2.100:80").unwrap_err().msg,
            "Service already exists"
        );
        assert_eq!(
            run(&mut t, "-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m")
                .unwrap_err()
                .msg,
            "Destination already exists"
        );
        assert_eq!(
            run(&mut t, "-a -t 192.0.2.1:80 -r 10.10.0.11:80 -m")
                .unwrap_err()
                .msg,
            "Service not defined"
        );
        assert_eq!(
            run(&mut t, "-d -t 192.0.2.100:80 -r 10.10.0.99:80 -m")
                .unwrap_err()
                .msg,
            "No such destination"
        );
        assert_eq!(
            run(&mut t, "-D -t 192.0.2.1:80").unwrap_err(),
            CmdError::op("No such service")
        );
        assert_eq!(
            run(&mut t, "-A -t 192.0.2.1:80 -s bogus").unwrap_err().msg,
            "Scheduler or persistence engine not found"
        );
    }

    #[test]
    fn failed_batch_changes_nothing() {
        let mut t = table();
        let before = t.save();
        let cmds = parse_rules("-A -t 192.0.2.7:80 -s rr\n-a -t 192.0.2.8:80 -r 10.0.0.1:80 -m\n")
            .unwrap();
        assert_eq!(t.apply_all(&cmds).unwrap_err().0, Some(1));
        assert_eq!(t.save(), before);
    }

    #[test]
    fn newest_dest_is_first_in_ipvs_order_and_states_survive_edits() {
        let mut t = table();
        let key = vs("tcp 192.0.2.100:80");
        let svc = &t.services[&key];
        assert_eq!(svc.dests[0].port, 8080, "last added is first");
        let st = svc.dests[1].state.clone();
        st.active.store(7, Ordering::Relaxed);
        run(&mut t, "-e -t 192.0.2.100:80 -r 10.10.0.11:80 -m -w 5").unwrap();
        let snap = t.snapshot(&[]);
        let d = snap.services[&vk("tcp 192.0.2.100:80")]
            .dests
            .iter()
            .find(|d| d.port == 80)
            .unwrap();
        assert_eq!(d.weight, 5);
        assert!(Arc::ptr_eq(&d.state, &st));
    }

    #[test]
    fn reload_diff_touches_only_what_changed() {
        let mut t = table();
        let a = t.snapshot(&[]);
        let tcp = vk("tcp 192.0.2.100:80");
        let rules = |text: &str| {
            let mut n = Table::default();
            n.apply_all(&parse_rules(text).unwrap()).unwrap();
            n
        };
        // The same rules, reordered: nothing to do.
        let same = rules(
            "-A -u 192.0.2.100:53 -s wlc\n-a -u 192.0.2.100:53 -r 10.10.0.11:53 -g -w 1\n-A -t 192.0.2.100:80 -s rr\n-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m -w 1\n-a -t 192.0.2.100:80 -r 10.10.0.12:8080 -m -w 2\n",
        );
        assert_eq!(t.diff(&same), []);
        // UDP service gone, a new one, a weight changed, a realserver added.
        let next = rules(
            "-A -t 192.0.2.100:80 -s rr\n-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m -w 1\n-a -t 192.0.2.100:80 -r 10.10.0.12:8080 -m -w 2\n-A -t 192.0.2.100:443 -s sh\n-a -t 192.0.2.100:443 -r 10.10.0.11:443 -m -w 1\n-a -t 192.0.2.100:443 -r 10.10.0.12:443 -m -w 1\n--set 600 0 0\n",
        );
        let diff = t.diff(&next);
        assert_eq!(diff.len(), 5, "{diff:#?}");
        assert!(matches!(diff[0], Command::DelService { .. }));
        t.apply_all(&diff).unwrap();
        assert_eq!(t.save(), next.save());
        assert_eq!(t.list_timeouts(), "Timeout (tcp tcpfin udp): 600 120 300\n");
        let b = t.snapshot(&[]);
        assert!(
            Arc::ptr_eq(&a.services[&tcp], &b.services[&tcp]),
            "the unchanged service keeps its published form (scheduler state, connections)"
        );
        // An edit only: one command, and only that service republished.
        // (-S has no --set, as ipvsadm's: the file keeps its own.)
        let edited = rules(&format!(
            "{}--set 600 0 0\n",
            next.save()
                .replace("10.10.0.12:8080 -m -w 2", "10.10.0.12:8080 -m -w 5")
        ));
        let diff = t.diff(&edited);
        assert_eq!(diff.len(), 1, "{diff:#?}");
        assert!(matches!(&diff[0], Command::EditDest { dest, .. } if dest.weight == 5));
    }

    const MARK_RULES: &str = "\
--add-mark -f 1 -t 192.0.2.100:80
--add-mark -f 1 -t 192.0.2.100:443
--add-mark -f 1 -u 192.0.2.101:5000-5009
--add-mark -f 2 -t [2001:db8::100]:80
-A -t 192.0.2.100:80 -s wlc
-a -t 192.0.2.100:80 -r 10.10.0.13:80 -m -w 1
-A -f 1 -s rr -p 300
-a -f 1 -r 10.10.0.11:0 -m -w 1
-a -f 1 -r 10.10.0.12:0 -g -w 1
-A -f 2 -6 -s sh
-a -f 2 -6 -r [fd00:10::11]:8080 -m -w 1
";

    #[test]
    fn fwmark_services_list_save_steer_and_override_address_services() {
        let mut t = Table::default();
        t.apply_all(&parse_rules(MARK_RULES).unwrap()).unwrap();
        assert_eq!(t.save(), MARK_RULES);
        let l = t.list(None, ListFormat::Normal, false).unwrap();
        assert!(
            l.contains("\nFWM  1 rr persistent 300\n  -> 10.10.0.11:0"),
            "{l}"
        );
        assert!(
            l.contains("\nFWM  2 IPv6 sh\n  -> [fd00:10::11]:8080"),
            "{l}"
        );
        let snap = t.snapshot(&[]);
        // 2 TCP ports and 10 UDP ones for mark 1 (it overrides the address service on :80),
        // one IPv6 key for mark 2.
        assert_eq!(snap.services.len(), 13);
        let m1 = &snap.services[&vk("tcp 192.0.2.100:80")];
        assert_eq!(m1.mark, 1);
        assert!(Arc::ptr_eq(m1, &snap.services[&vk("udp 192.0.2.101:5007")]));
        let (vips, reals) = t.steer_keys();
        assert_eq!(vips.len(), 13);
        // NAT realservers: 10.10.0.11 at each of mark 1's 12 ports, 10.10.0.13:80 and
        // [fd00:10::11]:8080; not the DR one.
        assert_eq!(reals.len(), 12 + 1 + 1, "{reals:?}");
        // Group entries do not overlap, across marks too.
        let e = run(&mut t, "--add-mark -f 3 -u 192.0.2.101:5009-5010").unwrap_err();
        assert_eq!(
            e.msg,
            "fwmark group entry -u 192.0.2.101:5009-5010 overlaps -u 192.0.2.101:5000-5009 of mark 1"
        );
        assert_eq!(
            run(&mut t, "--delete-mark -f 1 -t 192.0.2.100:81")
                .unwrap_err()
                .msg,
            "No such fwmark group entry"
        );
        // The steering maps bound the keys: a change beyond them is refused whole.
        let before = t.save();
        let e = t
            .apply_all(&parse_rules("--add-mark -f 4 -t 192.0.2.102:1-65535\n-A -f 4\n").unwrap())
            .unwrap_err();
        assert_eq!(e.0, None, "the whole change fails, not one command");
        assert!(
            e.1.msg.starts_with("too many virtual service"),
            "{}",
            e.1.msg
        );
        assert_eq!(t.save(), before);
        // -C clears the groups too, and a restore of -S gives the same table.
        run(&mut t, "-C").unwrap();
        assert_eq!(t.save(), "");
        t.apply_all(&parse_rules(&before).unwrap()).unwrap();
        assert_eq!(t.save(), before);
    }

    #[test]
    fn listings_sort_as_ipvsadm_fwmark_family_protocol_address_port() {
        let mut t = Table::default();
        let rules = "\
-A -f 2 -s rr
-A -u 192.0.2.1:53 -s rr
-A -t [2001:db8::1]:80 -s rr
-A -t 192.0.2.2:80 -s rr
-A -t 192.0.2.1:443 -s rr
-A -f 1 -6 -s rr
";
        t.apply_all(&parse_rules(rules).unwrap()).unwrap();
        assert_eq!(
            t.save(),
            "\
-A -t 192.0.2.1:443 -s rr
-A -t 192.0.2.2:80 -s rr
-A -u 192.0.2.1:53 -s rr
-A -t [2001:db8::1]:80 -s rr
-A -f 1 -6 -s rr
-A -f 2 -s rr
"
        );
    }

    #[test]
    fn json_listing_has_the_table_counters_and_groups() {
        let mut t = Table::default();
        t.apply_all(&parse_rules(MARK_RULES).unwrap()).unwrap();
        let j = t.list_json(None).unwrap();
        assert_eq!(j["services"][0]["protocol"], "TCP");
        assert_eq!(j["services"][0]["address"], "192.0.2.100");
        assert_eq!(j["services"][1]["fwmark"], 1);
        assert_eq!(j["services"][1]["persistent"], 300);
        assert_eq!(j["services"][1]["realservers"][0]["forward"], "Masq");
        assert_eq!(j["services"][1]["stats"]["conns"], 0);
        assert_eq!(
            j["fwmark_groups"][0]["entries"][2],
            "-u 192.0.2.101:5000-5009"
        );
        assert_eq!(j["timeouts"]["tcp"], 900);
        assert_eq!(
            t.list_json(Some(&vs("tcp 192.0.2.100:81")))
                .unwrap_err()
                .msg,
            "No such service"
        );
    }

    #[test]
    fn unchanged_services_keep_their_published_form() {
        let mut t = table();
        let a = t.snapshot(&[]);
        run(&mut t, "-e -u 192.0.2.100:53 -r 10.10.0.11:53 -g -w 3").unwrap();
        let b = t.snapshot(&[]);
        let tcp = vk("tcp 192.0.2.100:80");
        let udp = vk("udp 192.0.2.100:53");
        assert!(Arc::ptr_eq(&a.services[&tcp], &b.services[&tcp]));
        assert!(!Arc::ptr_eq(&a.services[&udp], &b.services[&udp]));
    }

    #[test]
    fn deleted_nat_dest_stays_steered_while_connections_use_it() {
        let mut t = table();
        let key = vs("tcp 192.0.2.100:80");
        let held = t.services[&key].dests[1].state.clone(); // 10.10.0.11:80, as a connection would
        run(&mut t, "-d -t 192.0.2.100:80 -r 10.10.0.11:80").unwrap();
        let (_, reals) = t.steer_keys();
        assert!(reals.contains(&L4Key::v4([10, 10, 0, 11], 80, PROTO_TCP)));
        assert!(!t.reap_retired());
        drop(held);
        assert!(t.reap_retired());
        let (_, reals) = t.steer_keys();
        assert!(!reals.contains(&L4Key::v4([10, 10, 0, 11], 80, PROTO_TCP)));
    }

    /// Counts as a worker would: `conns` new connections, packets and bytes each way.
    fn feed(d: &DestState, [conns, inpkts, outpkts, inbytes, outbytes]: [u64; 5]) {
        for _ in 0..conns {
            d.stats.conn(0);
        }
        for i in 0..inpkts {
            d.stats.inbound(0, if i == 0 { inbytes } else { 0 });
        }
        for i in 0..outpkts {
            d.stats.outbound(0, if i == 0 { outbytes } else { 0 });
        }
    }

    /// The lookup key of an address service.
    fn vk(svc: &str) -> VsKey {
        match vs(svc) {
            SvcKey::Addr(k) => k,
            SvcKey::Mark { .. } => unreachable!(),
        }
    }

    /// A service key from `"tcp ADDR:PORT"` or `"udp ADDR:PORT"`.
    fn vs(svc: &str) -> SvcKey {
        let (proto, addr) = svc.split_once(' ').unwrap();
        let sa: SocketAddr = addr.parse().unwrap();
        SvcKey::Addr(VsKey {
            proto: if proto == "tcp" {
                Proto::Tcp
            } else {
                Proto::Udp
            },
            addr: sa.ip(),
            port: sa.port(),
        })
    }

    fn dest<'t>(t: &'t Table, svc: &str, rs: &str) -> &'t DestEntry {
        let rs: SocketAddr = rs.parse().unwrap();
        t.services[&vs(svc)]
            .dests
            .iter()
            .find(|d| d.same(rs.ip(), rs.port()))
            .unwrap()
    }

    /// A table with traffic on every realserver, and one estimation period passed.
    fn busy_table() -> Table {
        let mut t = table();
        feed(
            &dest(&t, "tcp 192.0.2.100:80", "10.10.0.11:80").state,
            [800, 8000, 4000, 8_000_000, 400_000_000],
        );
        feed(
            &dest(&t, "tcp 192.0.2.100:80", "10.10.0.12:8080").state,
            [8, 80, 60, 4000, 9000],
        );
        feed(
            &dest(&t, "udp 192.0.2.100:53", "10.10.0.11:53").state,
            [2, 2, 0, 100, 0],
        );
        t.estimate();
        t
    }

    // The expected texts below were printed with ipvsadm.c's own printf formats
    // (`print_title`, `print_service_entry`, `print_largenum`) and IPVS's estimator arithmetic.

    #[test]
    fn stats_listing_matches_ipvsadm() {
        let t = busy_table();
        let expected = STATS_GOLDEN;
        assert_eq!(t.list(None, ListFormat::Stats, false).unwrap(), expected);
    }

    #[test]
    fn rate_listing_matches_ipvsadm() {
        let t = busy_table();
        let expected = RATE_GOLDEN;
        assert_eq!(t.list(None, ListFormat::Rate, false).unwrap(), expected);
    }

    #[test]
    fn thresholds_and_persistent_conn_listings_match_ipvsadm() {
        let mut t = table();
        run(
            &mut t,
            "-e -t 192.0.2.100:80 -r 10.10.0.12:8080 -m -w 2 -x 500 -y 400",
        )
        .unwrap();
        let expected = TH_GOLDEN;
        assert_eq!(
            t.list(None, ListFormat::Thresholds, false).unwrap(),
            expected
        );
        let expected = PC_GOLDEN;
        assert_eq!(
            t.list(None, ListFormat::PersistentConn, false).unwrap(),
            expected
        );
    }

    #[test]
    fn exact_prints_whole_numbers() {
        let t = busy_table();
        let key = vs("tcp 192.0.2.100:80");
        let l = t.list(Some(&key), ListFormat::Stats, true).unwrap();
        assert!(l.contains("  8004000 400009000\n"), "{l}");
        assert!(!l.starts_with("IP Virtual Server"), "{l}");
    }

    #[test]
    fn zero_restarts_the_counts_and_deleted_realservers_stay_counted() {
        let mut t = busy_table();
        let key = vs("tcp 192.0.2.100:80");
        // As with ipvsadm, a port different from the service's needs -m (-g forces it).
        run(&mut t, "-d -t 192.0.2.100:80 -r 10.10.0.12:8080 -m").unwrap();
        // Retired (a connection still holds it), then gone: the service keeps its counts.
        let held = t.retired[0].1.state.clone();
        assert!(!t.reap_retired());
        assert_eq!(t.service_stats(&key).unwrap().conns, 808);
        drop(held);
        assert!(t.reap_retired());
        assert_eq!(t.service_stats(&key).unwrap().conns, 808);
        assert_eq!(
            t.zero(Some(&vs("tcp 192.0.2.100:81"))).unwrap_err().msg,
            "No such service"
        );
        t.zero(Some(&key)).unwrap();
        assert_eq!(t.service_stats(&key).unwrap(), Totals::default());
        assert_eq!(
            dest(&t, "tcp 192.0.2.100:80", "10.10.0.11:80").stats(),
            Totals::default()
        );
        // The other service is untouched.
        let udp = vs("udp 192.0.2.100:53");
        assert_eq!(t.service_stats(&udp).unwrap().conns, 2);
        feed(
            &dest(&t, "tcp 192.0.2.100:80", "10.10.0.11:80").state,
            [1, 2, 3, 4, 5],
        );
        assert_eq!(
            t.service_stats(&key).unwrap(),
            Totals {
                conns: 1,
                inpkts: 2,
                outpkts: 3,
                inbytes: 4,
                outbytes: 5
            }
        );
        t.zero(None).unwrap();
        assert_eq!(t.service_stats(&udp).unwrap(), Totals::default());
    }

    #[test]
    fn a_realserver_taken_back_keeps_its_zero_point_and_a_new_service_starts_at_zero() {
        let mut t = busy_table();
        let key = vs("tcp 192.0.2.100:80");
        t.zero(None).unwrap();
        // Deleted while a connection holds it, then added back: counts since the -Z only.
        let held = dest(&t, "tcp 192.0.2.100:80", "10.10.0.11:80")
            .state
            .clone();
        run(&mut t, "-d -t 192.0.2.100:80 -r 10.10.0.11:80 -m").unwrap();
        run(&mut t, "-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m").unwrap();
        let d = dest(&t, "tcp 192.0.2.100:80", "10.10.0.11:80");
        assert!(Arc::ptr_eq(&d.state, &held));
        assert_eq!(d.stats(), Totals::default());
        // Retired again, then the service goes and comes back: the new one starts at zero,
        // and the old realserver is still steered while the connection lasts.
        run(&mut t, "-d -t 192.0.2.100:80 -r 10.10.0.11:80 -m").unwrap();
        run(&mut t, "-D -t 192.0.2.100:80").unwrap();
        run(&mut t, "-A -t 192.0.2.100:80 -s rr").unwrap();
        run(&mut t, "-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m").unwrap();
        let d = dest(&t, "tcp 192.0.2.100:80", "10.10.0.11:80");
        assert!(!Arc::ptr_eq(&d.state, &held));
        assert_eq!(t.service_stats(&key).unwrap(), Totals::default());
        assert_eq!(
            t.all_dests()
                .filter(|d| Arc::ptr_eq(&d.state, &held))
                .count(),
            1
        );
        drop(held);
        assert!(t.reap_retired());
        assert_eq!(t.service_stats(&key).unwrap(), Totals::default());
    }

    const STATS_GOLDEN: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  192.0.2.100:80                    808     8080     4060  8004000  400009K
  -> 10.10.0.11:80                     800     8000     4000  8000000  400000K
  -> 10.10.0.12:8080                     8       80       60     4000     9000
UDP  192.0.2.100:53                      2        2        0      100        0
  -> 10.10.0.11:53                       2        2        0      100        0
";
    const RATE_GOLDEN: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS
  -> RemoteAddress:Port
TCP  192.0.2.100:80                    101     1010      507  1000500 50001125
  -> 10.10.0.11:80                     100     1000      500  1000000 50000000
  -> 10.10.0.12:8080                     1       10        7      500     1125
UDP  192.0.2.100:53                      0        0        0       12        0
  -> 10.10.0.11:53                       0        0        0       12        0
";
    const TH_GOLDEN: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  192.0.2.100:80 rr
  -> 10.10.0.11:80                0          0          0          0         
  -> 10.10.0.12:8080              500        400        0          0         
UDP  192.0.2.100:53 wlc
  -> 10.10.0.11:53                0          0          0          0         
";
    const PC_GOLDEN: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  192.0.2.100:80 rr
  -> 10.10.0.11:80                1         0           0          0         
  -> 10.10.0.12:8080              2         0           0          0         
UDP  192.0.2.100:53 wlc
  -> 10.10.0.11:53                1         0           0          0         
";
}
