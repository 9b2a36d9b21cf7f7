//! The health checker's decisions, sans IO: fed the time and probe results, it says which
//! probes to start, which scripts to run, and what the services table should make of each
//! realserver ([`Overlay`]). keepalived's semantics (keepalived/check/ipwrapper.c and the
//! checkers' epilogues):
//!
//! - A checker starts passing, or failed with `alpha`. It runs every `delay_loop`; the first
//!   run waits a random time up to `warmup`.
//! - A passing checker that fails is retried `retry` times `delay_before_retry` apart before
//!   it fails; a failed checker is tried every `delay_loop` and passes again after one
//!   success.
//! - A realserver is alive while all its checkers pass. A dead one leaves the table, or stays
//!   at weight 0 with `inhibit_on_failure`.
//! - `MISC_CHECK` with `misc_dynamic`: exit code 2–255 passes with weight code − 2.
//! - Quorum: the weights of the live realservers add up to at least `quorum`; it is lost
//!   below `quorum − hysteresis` and regained at `quorum + hysteresis`. While it is lost, a
//!   service with a sorry server has only the sorry server; `quorum_up`/`quorum_down` run on
//!   each change, `notify_up`/`notify_down` on each realserver change.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::spec::{CheckKind, CheckSpec, Script, ServiceSpec};
use crate::command::{MAX_WEIGHT, SvcKey};

/// A checker, as the machine names it to its driver: its index, and the generation of the
/// configuration it belongs to (a result for an older one is ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckId {
    pub index: u32,
    pub generation: u32,
    /// Which probe of the checker: a late result of an earlier one is ignored.
    pub seq: u32,
}

/// Why a probe failed (the `reason` label of the failure counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailKind {
    /// No answer within the timeout.
    Timeout,
    /// Connection refused (a TCP RST, an ICMP port unreachable).
    Refused,
    /// Any other connection or socket error.
    Io,
    /// TLS handshake failed.
    Tls,
    /// HTTP status not accepted.
    Status,
    /// HTTP body's MD5 differs from `digest`.
    Digest,
    /// Malformed answer (HTTP, DNS).
    Protocol,
    /// DNS answer with an error rcode.
    Rcode,
    /// Script exited with a failing code.
    Exit,
    /// Script killed (by a signal, or at its timeout).
    Killed,
    /// Script could not be started.
    Spawn,
    /// UDP reply missing or not the expected one.
    Reply,
}

impl FailKind {
    pub fn label(self) -> &'static str {
        match self {
            FailKind::Timeout => "timeout",
            FailKind::Refused => "refused",
            FailKind::Io => "io",
            FailKind::Tls => "tls",
            FailKind::Status => "status",
            FailKind::Digest => "digest",
            FailKind::Protocol => "protocol",
            FailKind::Rcode => "rcode",
            FailKind::Exit => "exit",
            FailKind::Killed => "killed",
            FailKind::Spawn => "spawn",
            FailKind::Reply => "reply",
        }
    }

    /// Every kind, for metrics.
    pub const ALL: [FailKind; 12] = [
        FailKind::Timeout,
        FailKind::Refused,
        FailKind::Io,
        FailKind::Tls,
        FailKind::Status,
        FailKind::Digest,
        FailKind::Protocol,
        FailKind::Rcode,
        FailKind::Exit,
        FailKind::Killed,
        FailKind::Spawn,
        FailKind::Reply,
    ];
}

/// A probe's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It passed; `weight` is a `misc_dynamic` script's weight (exit code − 2).
    Pass { weight: Option<u32> },
    /// It failed, why and a detail for the log.
    Fail(FailKind, String),
}

impl Outcome {
    pub const PASS: Outcome = Outcome::Pass { weight: None };

    pub fn fail(kind: FailKind, detail: impl Into<String>) -> Self {
        Outcome::Fail(kind, detail.into())
    }

    /// `ok` or `KIND: detail`, as listings show it.
    pub fn text(&self) -> String {
        match self {
            Outcome::Pass { weight: None } => "ok".into(),
            Outcome::Pass { weight: Some(w) } => format!("ok (weight {w})"),
            Outcome::Fail(k, d) if d.is_empty() => k.label().into(),
            Outcome::Fail(k, d) => format!("{}: {d}", k.label()),
        }
    }
}

/// What the driver is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run checker `id`'s probe now and report its [`Outcome`] ([`Health::on_result`]).
    Probe { id: CheckId, spec: Arc<CheckSpec> },
    /// Run a script (notify_up/down, quorum_up/down), `why` naming it for the log.
    Script { script: Script, why: String },
}

/// A realserver's health as the services table applies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestHealth {
    /// All its checkers pass.
    pub alive: bool,
    /// A `misc_dynamic` weight to publish while alive; None: its configured one.
    pub weight: Option<u32>,
    /// Dead: weight 0 instead of removed (`inhibit_on_failure`).
    pub inhibit: bool,
}

/// What health checking decides for the services table: an overlay on its realservers (never
/// an edit of their configuration, so a reload or `-S` never sees it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overlay {
    /// The realservers under health checking, by (service, address, port).
    pub dests: BTreeMap<(SvcKey, IpAddr, u16), DestHealth>,
    /// Services that lost quorum: with a sorry server, it alone takes new connections.
    pub quorum_lost: BTreeSet<SvcKey>,
}

/// One row of `xlvsadm -L -n --health`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRow {
    pub service: SvcKey,
    pub addr: IpAddr,
    pub port: u16,
    pub checker: &'static str,
    pub up: bool,
    /// The last result, None before the first.
    pub last: Option<Outcome>,
    /// Since the checker's state last changed (or it started).
    pub since: Duration,
}

struct CheckState {
    spec: Arc<CheckSpec>,
    real: usize,
    up: bool,
    has_run: bool,
    retry_it: u32,
    /// When the next probe starts (None while one runs).
    next: Option<Instant>,
    /// A probe runs; its result is due by then (else it counts as a timeout).
    running: Option<Instant>,
    /// The running (or last) probe's number.
    seq: u32,
    /// `misc_dynamic`: the weight the script's exit code set (None: the configured one).
    dyn_weight: Option<u32>,
    last: Option<Outcome>,
    changed: Instant,
}

struct RealState {
    svc: usize,
    addr: IpAddr,
    port: u16,
    weight: u32,
    inhibit: bool,
    notify_up: Option<Script>,
    notify_down: Option<Script>,
    checks: Vec<usize>,
    alive: bool,
}

impl RealState {
    /// keepalived `real_weight(effective_weight)`: the configured weight plus the dynamic
    /// changes of its checkers, within 0..=MAX_WEIGHT.
    fn effective(&self, checks: &[CheckState]) -> u32 {
        let w = self.weight as i64
            + self
                .checks
                .iter()
                .filter_map(|&c| checks[c].dyn_weight)
                .map(|d| d as i64 - self.weight as i64)
                .sum::<i64>();
        w.clamp(0, MAX_WEIGHT as i64) as u32
    }

    /// Whether a `misc_dynamic` script set its weight.
    fn dynamic(&self, checks: &[CheckState]) -> bool {
        self.checks.iter().any(|&c| checks[c].dyn_weight.is_some())
    }
}

struct SvcState {
    spec: ServiceSpec,
    quorum_up: bool,
    /// Its realservers' indices.
    reals: std::ops::Range<usize>,
}

/// The health checker's state machine; see the module documentation.
pub struct Health {
    generation: u32,
    services: Vec<SvcState>,
    reals: Vec<RealState>,
    checks: Vec<CheckState>,
    /// (due, check index): lazily cleaned, so an entry may be stale (its check's `next`
    /// differs).
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    /// (result deadline, check index) of running probes, lazily cleaned likewise (its
    /// check's `running` differs).
    running: BinaryHeap<Reverse<(Instant, u32)>>,
    /// The last probe number given.
    seq: u32,
    out: VecDeque<Action>,
    changed: bool,
    rng: u64,
}

/// How early a probe may start: probes due within this of each other start together.
pub const START_SLACK: Duration = Duration::from_millis(10);

/// How late a probe's result may come after its own timeout before the machine counts it as
/// a timeout itself (a driver that lost it).
const RESULT_GRACE: Duration = Duration::from_secs(2);

impl Health {
    /// Health checking of `services` from `now`; `seed` randomises the warmup delays.
    pub fn new(services: Vec<ServiceSpec>, now: Instant, seed: u64) -> Self {
        let mut h = Health {
            generation: 0,
            services: Vec::new(),
            reals: Vec::new(),
            checks: Vec::new(),
            timers: BinaryHeap::new(),
            running: BinaryHeap::new(),
            seq: 0,
            out: VecDeque::new(),
            changed: true,
            rng: seed | 1,
        };
        h.build(services, now, None);
        h
    }

    /// A new configuration (SIGHUP): checkers that stay the same (service, realserver and
    /// checker settings) keep their state and schedule; the others start afresh.
    pub fn update(&mut self, services: Vec<ServiceSpec>, now: Instant) {
        let old = OldState::take(self);
        self.generation = self.generation.wrapping_add(1);
        self.build(services, now, Some(old));
        self.changed = true;
    }

    fn build(&mut self, services: Vec<ServiceSpec>, now: Instant, mut old: Option<OldState>) {
        self.timers.clear();
        self.running.clear();
        for spec in services {
            let svc = self.services.len();
            let first_real = self.reals.len();
            for r in &spec.reals {
                let real = self.reals.len();
                let mut checks = Vec::new();
                for c in &r.checkers {
                    let i = self.checks.len();
                    let kept = old
                        .as_mut()
                        .and_then(|o| o.checks.remove(&(spec.key, r.addr, r.port, identity(c))));
                    let mut st = match kept {
                        // keepalived's migrate_checkers: the same probe keeps its state and
                        // takes the new timing.
                        Some(mut st) => {
                            st.real = real;
                            st.retry_it = st.retry_it.min(c.retry);
                            st.spec = Arc::new(c.clone());
                            // A result of the old generation is ignored: start it again.
                            if st.running.is_some() {
                                st.running = None;
                                st.next = Some(now);
                            }
                            st
                        }
                        None => {
                            let warmup = c.warmup.unwrap_or(c.delay_loop);
                            CheckState {
                                spec: Arc::new(c.clone()),
                                real,
                                up: !c.alpha,
                                has_run: false,
                                retry_it: 0,
                                next: Some(now + self.random_upto(warmup)),
                                running: None,
                                seq: 0,
                                dyn_weight: None,
                                last: None,
                                changed: now,
                            }
                        }
                    };
                    if let Some(t) = st.next {
                        self.timers.push(Reverse((t, i as u32)));
                    }
                    st.real = real;
                    self.checks.push(st);
                    checks.push(i);
                }
                let alive = checks.iter().all(|&c| self.checks[c].up);
                let was = old
                    .as_mut()
                    .and_then(|o| o.alive.remove(&(spec.key, r.addr, r.port)))
                    .map(|(alive, _, _)| alive);
                self.reals.push(RealState {
                    svc,
                    addr: r.addr,
                    port: r.port,
                    weight: r.weight,
                    inhibit: r.inhibit_on_failure,
                    notify_up: r.notify_up.clone(),
                    notify_down: r.notify_down.clone(),
                    checks,
                    alive: was.unwrap_or(alive),
                });
            }
            let kept_quorum = old.as_ref().and_then(|o| o.quorum.get(&spec.key).copied());
            self.services.push(SvcState {
                spec,
                quorum_up: true,
                reals: first_real..self.reals.len(),
            });
            let live = self.live_weight(svc);
            let s = &mut self.services[svc];
            match kept_quorum {
                Some(q) => s.quorum_up = q,
                None => {
                    // keepalived set_quorum_states, then update_quorum_state(init): starting
                    // down runs quorum_down only where a sorry server takes over.
                    s.quorum_up = live >= s.spec.quorum as u64 + s.spec.hysteresis as u64;
                    if !s.quorum_up && s.spec.sorry {
                        log::info!(
                            "{}: starting with quorum down ({live} < {})",
                            s.spec.label,
                            s.spec.quorum
                        );
                        if let Some(sc) = &s.spec.quorum_down {
                            self.out.push_back(Action::Script {
                                script: sc.clone(),
                                why: format!("quorum_down of {}", s.spec.label),
                            });
                        }
                    }
                }
            }
        }
        // Realservers whose alive state changed across a reload (e.g. a checker removed).
        for r in 0..self.reals.len() {
            self.refresh_real(r);
        }
        if let Some(old) = old {
            // A reload may change quorum, hysteresis or weights: keepalived re-evaluates.
            for svc in 0..self.services.len() {
                self.update_quorum(svc);
            }
            // Live realservers the file no longer has: their notify_down runs (keepalived
            // `clear_service_rs`).
            for ((_, addr, port), (alive, notify_down, label)) in old.alive {
                if let (true, Some(sc)) = (alive, notify_down) {
                    self.out.push_back(Action::Script {
                        script: sc,
                        why: format!("notify_down of {} removed from {label}", fmt_rs(addr, port)),
                    });
                }
            }
        }
    }

    fn random_upto(&mut self, d: Duration) -> Duration {
        // xorshift64*: enough to spread first checks.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let ns = d.as_nanos() as u64;
        if ns == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(r % ns)
        }
    }

    /// When [`Health::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let next = self.timers.peek().map(|Reverse((t, _))| *t);
        let running = self.running.peek().map(|Reverse((t, _))| *t);
        next.into_iter().chain(running).min()
    }

    /// Starts the probes due at `now`, and those due within [`START_SLACK`] after it (so a
    /// thousand checks a second wake the driver some hundred times, not a thousand), and
    /// counts a result lost by the driver as a timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((t, i))) = self.timers.peek() {
            if t > now + START_SLACK {
                break;
            }
            self.timers.pop();
            let c = &mut self.checks[i as usize];
            if c.next != Some(t) {
                continue; // stale
            }
            c.next = None;
            let due = now + c.spec.timeout + RESULT_GRACE;
            self.seq = self.seq.wrapping_add(1);
            c.running = Some(due);
            c.seq = self.seq;
            self.running.push(Reverse((due, i)));
            self.out.push_back(Action::Probe {
                id: CheckId {
                    index: i,
                    generation: self.generation,
                    seq: self.seq,
                },
                spec: c.spec.clone(),
            });
        }
        while let Some(&Reverse((t, i))) = self.running.peek() {
            if t > now {
                break;
            }
            self.running.pop();
            if self.checks[i as usize].running != Some(t) {
                continue; // answered (or restarted) meanwhile
            }
            let id = CheckId {
                index: i,
                generation: self.generation,
                seq: self.checks[i as usize].seq,
            };
            self.on_result(id, Outcome::fail(FailKind::Timeout, "no result"), now);
        }
    }

    /// A probe's result (keepalived's checker epilogue).
    pub fn on_result(&mut self, id: CheckId, outcome: Outcome, now: Instant) {
        if id.generation != self.generation {
            return;
        }
        let Some(real) = self.checks.get(id.index as usize).map(|c| c.real) else {
            return;
        };
        let c = &mut self.checks[id.index as usize];
        if c.seq != id.seq || c.running.take().is_none() {
            return;
        }
        let success = matches!(outcome, Outcome::Pass { .. });
        let mut delay = c.spec.delay_loop;
        let mut became = None;
        if success || ((c.up || !c.has_run) && c.retry_it >= c.spec.retry) {
            c.retry_it = 0;
            if success && (!c.up || !c.has_run) {
                became = Some(true);
            } else if !success && (c.up || !c.has_run) {
                became = Some(false);
            }
        } else if c.up {
            delay = c.spec.delay_before_retry;
            c.retry_it += 1;
            log::debug!(
                "{} {}: {} failed ({}), retry {}/{}",
                c.spec.kind.name(),
                c.spec.target,
                c.spec.kind.name(),
                outcome.text(),
                c.retry_it,
                c.spec.retry
            );
        }
        c.has_run = true;
        // misc_dynamic: a passing exit code sets the weight (0: the configured one); a
        // failure takes it back once the checker fails, not while it is retried.
        let dyn_weight = match (&outcome, &c.spec.kind) {
            (Outcome::Pass { weight: Some(w) }, CheckKind::Misc { dynamic: true, .. }) => Some(*w),
            (Outcome::Pass { .. }, _) => None,
            (Outcome::Fail(..), _) if became == Some(false) => None,
            (Outcome::Fail(..), _) => c.dyn_weight,
        };
        let weight_changed = dyn_weight != c.dyn_weight;
        c.dyn_weight = dyn_weight;
        c.last = Some(outcome.clone());
        let t = now + delay;
        c.next = Some(t);
        self.timers.push(Reverse((t, id.index)));
        if let Some(up) = became
            && c.up != up
        {
            let name = c.spec.kind.name();
            let target = c.spec.target;
            c.changed = now;
            c.up = up;
            let r = &self.reals[real];
            let label = &self.services[r.svc].spec.label;
            if up {
                log::info!(
                    "{label}: {name} of {} (to {target}) passes: {}",
                    fmt_rs(r.addr, r.port),
                    outcome.text()
                );
            } else {
                log::warn!(
                    "{label}: {name} of {} (to {target}) fails: {}",
                    fmt_rs(r.addr, r.port),
                    outcome.text()
                );
            }
        }
        if weight_changed {
            self.changed = true;
            let svc = self.reals[real].svc;
            self.update_quorum(svc);
        }
        self.refresh_real(real);
    }

    /// Brings realserver `r`'s alive state in line with its checkers, with its notifies and
    /// its service's quorum.
    fn refresh_real(&mut self, r: usize) {
        let alive = self.reals[r].checks.iter().all(|&c| self.checks[c].up);
        let rs = &mut self.reals[r];
        if rs.alive != alive {
            rs.alive = alive;
            self.changed = true;
            let label = &self.services[rs.svc].spec.label;
            let verb = match (alive, rs.inhibit) {
                (true, true) => "enabling",
                (true, false) => "adding",
                (false, true) => "disabling",
                (false, false) => "removing",
            };
            log::info!("{label}: {verb} realserver {}", fmt_rs(rs.addr, rs.port));
            let script = if alive {
                &rs.notify_up
            } else {
                &rs.notify_down
            };
            if let Some(sc) = script {
                self.out.push_back(Action::Script {
                    script: sc.clone(),
                    why: format!(
                        "{} of {} in {label}",
                        if alive { "notify_up" } else { "notify_down" },
                        fmt_rs(rs.addr, rs.port)
                    ),
                });
            }
            let svc = self.reals[r].svc;
            self.update_quorum(svc);
        }
    }

    /// The weights of service `svc`'s live realservers (keepalived `weigh_live_realservers`).
    fn live_weight(&self, svc: usize) -> u64 {
        self.reals[self.services[svc].reals.clone()]
            .iter()
            .filter(|r| r.alive)
            .map(|r| r.effective(&self.checks) as u64)
            .sum()
    }

    /// keepalived `update_quorum_state`.
    fn update_quorum(&mut self, svc: usize) {
        let live = self.live_weight(svc);
        let s = &mut self.services[svc];
        let (q, h) = (s.spec.quorum as i64, s.spec.hysteresis as i64);
        let threshold = if s.quorum_up { q - h } else { q + h };
        let live_i = live as i64;
        let change = if !s.quorum_up && live_i >= threshold {
            Some(true)
        } else if s.quorum_up && (live == 0 || live_i < threshold) {
            Some(false)
        } else {
            None
        };
        let Some(up) = change else { return };
        s.quorum_up = up;
        self.changed = true;
        if up {
            log::info!("{}: gained quorum ({live} >= {threshold})", s.spec.label);
        } else {
            log::warn!("{}: lost quorum ({live} < {threshold})", s.spec.label);
        }
        let script = if up {
            &s.spec.quorum_up
        } else {
            &s.spec.quorum_down
        };
        if let Some(sc) = script {
            self.out.push_back(Action::Script {
                script: sc.clone(),
                why: format!(
                    "{} of {}",
                    if up { "quorum_up" } else { "quorum_down" },
                    s.spec.label
                ),
            });
        }
    }

    /// The next thing for the driver to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// The overlay changed since the last call (the table must be re-applied and published).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// What the services table makes of the realservers.
    pub fn overlay(&self) -> Overlay {
        let mut o = Overlay::default();
        for (i, r) in self.reals.iter().enumerate() {
            let svc = &self.services[r.svc];
            let h = DestHealth {
                alive: r.alive,
                weight: r.dynamic(&self.checks).then(|| r.effective(&self.checks)),
                inhibit: r.inhibit,
            };
            o.dests.insert((svc.spec.key, r.addr, r.port), h);
            // The same realserver in the group's other services.
            let nth = i - svc.reals.start;
            for (key, ports) in &svc.spec.also {
                if let Some(&port) = ports.get(nth) {
                    o.dests.insert((*key, r.addr, port), h);
                }
            }
        }
        for s in &self.services {
            if !s.quorum_up {
                o.quorum_lost.insert(s.spec.key);
                o.quorum_lost.extend(s.spec.also.iter().map(|(k, _)| *k));
            }
        }
        o
    }

    /// One row per (realserver, checker), in configuration order.
    pub fn rows(&self, now: Instant) -> Vec<CheckRow> {
        let mut rows = Vec::new();
        for r in &self.reals {
            for &c in &r.checks {
                let c = &self.checks[c];
                rows.push(CheckRow {
                    service: self.services[r.svc].spec.key,
                    addr: r.addr,
                    port: r.port,
                    checker: c.spec.kind.name(),
                    up: c.up,
                    last: c.last.clone(),
                    since: now.saturating_duration_since(c.changed),
                });
            }
        }
        rows
    }

    /// Shutting down: with `omega`, the live realservers' notify_down and the quorum_down of
    /// services that had quorum (keepalived runs them when it clears its services).
    pub fn shutdown(&mut self) {
        for s in 0..self.services.len() {
            if !self.services[s].spec.omega {
                continue;
            }
            let label = self.services[s].spec.label.clone();
            for r in self.reals.iter().filter(|r| r.svc == s && r.alive) {
                if let Some(sc) = &r.notify_down {
                    self.out.push_back(Action::Script {
                        script: sc.clone(),
                        why: format!(
                            "notify_down (omega) of {} in {label}",
                            fmt_rs(r.addr, r.port)
                        ),
                    });
                }
            }
            // keepalived runs it when stopping whatever the quorum was.
            if let Some(sc) = &self.services[s].spec.quorum_down {
                self.out.push_back(Action::Script {
                    script: sc.clone(),
                    why: format!("quorum_down (omega) of {label}"),
                });
            }
        }
    }

    /// Number of checkers.
    pub fn len(&self) -> usize {
        self.checks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }
}

/// What a reload carries over.
struct OldState {
    checks: HashMap<(SvcKey, IpAddr, u16, Identity), CheckState>,
    /// Each realserver's alive state and notify_down script.
    alive: BTreeMap<(SvcKey, IpAddr, u16), OldReal>,
    quorum: BTreeMap<SvcKey, bool>,
}

/// A realserver before a reload: alive, its notify_down, its service's label.
type OldReal = (bool, Option<Script>, String);

/// What makes a checker the same probe across a reload (keepalived's `compare_*_check` and
/// `compare_conn_opts`): its kind and settings, target, source, interface, timeout and mark.
/// Its timing (`delay_loop`, `retry`, ...) may change without losing its state.
type Identity = (
    CheckKind,
    std::net::SocketAddr,
    Option<std::net::SocketAddr>,
    Option<String>,
    Duration,
    Option<u32>,
);

fn identity(c: &CheckSpec) -> Identity {
    (
        c.kind.clone(),
        c.target,
        c.bind,
        c.bind_if.clone(),
        c.timeout,
        c.fwmark,
    )
}

impl OldState {
    fn take(h: &mut Health) -> Self {
        let services = std::mem::take(&mut h.services);
        let reals = std::mem::take(&mut h.reals);
        let mut checks = HashMap::new();
        for c in std::mem::take(&mut h.checks) {
            let r = &reals[c.real];
            let key = services[r.svc].spec.key;
            checks.insert((key, r.addr, r.port, identity(&c.spec)), c);
        }
        let alive = reals
            .iter()
            .map(|r| {
                let s = &services[r.svc].spec;
                (
                    (s.key, r.addr, r.port),
                    (r.alive, r.notify_down.clone(), s.label.clone()),
                )
            })
            .collect();
        let quorum = services.iter().map(|s| (s.spec.key, s.quorum_up)).collect();
        OldState {
            checks,
            alive,
            quorum,
        }
    }
}

/// `ADDR:PORT`, `[ADDR]:PORT` for IPv6.
pub fn fmt_rs(addr: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}
