//! Health checking as the control thread runs it: the state machine ([`Health`]) fed by the
//! probe runtime ([`super::probe::Prober`], behind [`Probes`] so tests can answer probes
//! themselves), plus what the operator sees of it: the `--health` listing and the metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::machine::{Action, CheckId, CheckRow, Health, Outcome, Overlay, fmt_rs};
use super::probe::{Done, Prober};
use super::spec::{CheckSpec, Script, ServiceSpec};
use crate::command::SvcKey;
use std::net::IpAddr;

use crate::metrics::{Exposition, service_labels};

/// Where probes run.
pub trait Probes {
    /// Starts a probe; its result comes back through [`Probes::results`].
    fn probe(&mut self, id: CheckId, spec: Arc<CheckSpec>);
    /// Runs a script.
    fn script(&mut self, script: Script, why: String);
    /// The results that came in since the last call.
    fn results(&mut self) -> Vec<Done>;
    /// Stops, waiting up to `grace` for running scripts.
    fn finish(&mut self, grace: Duration);
}

impl Probes for Prober {
    fn probe(&mut self, id: CheckId, spec: Arc<CheckSpec>) {
        Prober::probe(self, id, spec)
    }

    fn script(&mut self, script: Script, why: String) {
        Prober::script(self, script, why)
    }

    fn results(&mut self) -> Vec<Done> {
        Prober::results(self).collect()
    }

    fn finish(&mut self, grace: Duration) {
        Prober::finish(self, grace)
    }
}

/// Upper bounds (seconds) of the check duration histogram's buckets.
pub const DURATION_BUCKETS: [f64; 10] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0];

#[derive(Default)]
struct Durations {
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Health checking in the control thread.
pub struct Checker {
    health: Health,
    probes: Box<dyn Probes>,
    /// Probe durations by checker kind.
    durations: BTreeMap<&'static str, Durations>,
    /// Failed probes by (checker kind, reason).
    failures: BTreeMap<(&'static str, &'static str), u64>,
}

impl Checker {
    pub fn new(services: Vec<ServiceSpec>, probes: Box<dyn Probes>, now: Instant) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Checker {
            health: Health::new(services, now, seed),
            probes,
            durations: BTreeMap::new(),
            failures: BTreeMap::new(),
        }
    }

    /// A new configuration (SIGHUP); unchanged checkers keep their state.
    pub fn update(&mut self, services: Vec<ServiceSpec>, now: Instant) {
        self.health.update(services, now);
        self.dispatch();
    }

    /// Number of checkers.
    pub fn len(&self) -> usize {
        self.health.len()
    }

    pub fn is_empty(&self) -> bool {
        self.health.is_empty()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.health.poll_timeout()
    }

    /// Starts what is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.health.handle_timeout(now);
        self.dispatch();
    }

    /// Takes in the probes' results.
    pub fn collect(&mut self, now: Instant) {
        for d in self.probes.results() {
            let name = d.spec.kind.name();
            let h = self.durations.entry(name).or_default();
            let secs = d.took.as_secs_f64();
            h.count += 1;
            h.sum += secs;
            for (b, le) in h.buckets.iter_mut().zip(DURATION_BUCKETS) {
                if secs <= le {
                    *b += 1;
                }
            }
            if let Outcome::Fail(kind, _) = &d.outcome {
                *self.failures.entry((name, kind.label())).or_default() += 1;
            }
            self.health.on_result(d.id, d.outcome, now);
        }
        self.dispatch();
    }

    fn dispatch(&mut self) {
        while let Some(a) = self.health.poll_action() {
            match a {
                Action::Probe { id, spec } => self.probes.probe(id, spec),
                Action::Script { script, why } => self.probes.script(script, why),
            }
        }
    }

    /// The overlay, if it changed since the last call.
    pub fn changed_overlay(&mut self) -> Option<Overlay> {
        self.health.take_changed().then(|| self.health.overlay())
    }

    /// Shutting down: omega's scripts.
    pub fn shutdown(&mut self) {
        self.health.shutdown();
        self.dispatch();
    }

    /// Stops the probes, waiting up to `grace` for running scripts.
    pub fn finish(&mut self, grace: Duration) {
        self.probes.finish(grace);
    }

    /// The checkers' rows, of one service or all.
    pub fn rows(&self, key: Option<&SvcKey>, now: Instant) -> Vec<CheckRow> {
        let mut rows = self.health.rows(now);
        rows.retain(|r| key.is_none_or(|k| *k == r.service));
        rows
    }

    /// Its metrics: realservers up, checkers up, probe durations, failures.
    pub fn metrics(&self, e: &mut Exposition, now: Instant) {
        let overlay = self.health.overlay();
        let rs_labels = |svc: &SvcKey, addr: IpAddr, port: u16| {
            let mut l = service_labels(svc);
            l.push(("remote_address", addr.to_string()));
            l.push(("remote_port", port.to_string()));
            l
        };
        for ((svc, addr, port), h) in &overlay.dests {
            e.sample(
                "realserver_up",
                "gauge",
                "1 while every health checker of the realserver passes.",
                "",
                &rs_labels(svc, *addr, *port),
                (h.alive as u8).to_string(),
            );
        }
        for r in self.health.rows(now) {
            let mut l = rs_labels(&r.service, r.addr, r.port);
            l.push(("checker", r.checker.to_string()));
            e.sample(
                "health_check_up",
                "gauge",
                "1 while the health checker passes.",
                "",
                &l,
                (r.up as u8).to_string(),
            );
        }
        const HIST: &str = "health_check_duration_seconds";
        const HELP: &str = "How long health check probes took, by checker.";
        for (name, h) in &self.durations {
            let checker = ("checker", name.to_string());
            for (b, le) in h.buckets.iter().zip(DURATION_BUCKETS) {
                let l = [checker.clone(), ("le", le.to_string())];
                e.sample(HIST, "histogram", HELP, "_bucket", &l, b.to_string());
            }
            let l = [checker.clone(), ("le", "+Inf".to_string())];
            e.sample(HIST, "histogram", HELP, "_bucket", &l, h.count.to_string());
            let l = [checker];
            e.sample(HIST, "histogram", HELP, "_sum", &l, h.sum.to_string());
            e.sample(HIST, "histogram", HELP, "_count", &l, h.count.to_string());
        }
        for ((name, reason), n) in &self.failures {
            e.sample(
                "health_check_failures_total",
                "counter",
                "Failed health check probes, by checker and reason.",
                "",
                &[
                    ("checker", name.to_string()),
                    ("reason", reason.to_string()),
                ],
                n.to_string(),
            );
        }
    }
}

/// `xlvsadm -L -n --health`: one line per (realserver, checker).
pub fn list(rows: &[CheckRow]) -> String {
    let mut out = format!(
        "{:<27} {:<26} {:<10} {:<5} {:>7}  {}\n",
        "Prot LocalAddress:Port", "RemoteAddress:Port", "Checker", "State", "Since", "Last result"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<27} {:<26} {:<10} {:<5} {:>6}s  {}",
            r.service.label(),
            fmt_rs(r.addr, r.port),
            r.checker,
            if r.up { "UP" } else { "DOWN" },
            r.since.as_secs(),
            r.last
                .as_ref()
                .map_or_else(|| "-".to_string(), Outcome::text),
        );
    }
    out
}

/// `xlvsadm -L --health --json`.
pub fn json(rows: &[CheckRow]) -> serde_json::Value {
    use serde_json::json;
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            let (protocol, address, port, mark) = r.service.parts();
            let (result, reason) = match &r.last {
                None => (None, None),
                Some(Outcome::Pass { .. }) => (Some("ok"), None),
                Some(Outcome::Fail(k, _)) => (Some("failed"), Some(k.label())),
            };
            json!({
                "service": {
                    "protocol": protocol,
                    "address": (mark == 0).then(|| address.to_string()),
                    "port": port,
                    "fwmark": (mark != 0).then_some(mark),
                },
                "realserver": {"address": r.addr.to_string(), "port": r.port},
                "checker": r.checker,
                "state": if r.up { "UP" } else { "DOWN" },
                "since_secs": r.since.as_secs(),
                "last_result": result,
                "reason": reason,
                "detail": r.last.as_ref().map(Outcome::text),
            })
        })
        .collect();
    json!({ "checks": rows })
}

/// How long a stopping daemon waits for omega's scripts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
