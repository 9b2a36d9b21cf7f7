//! The health state machine with an injected clock.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use xlvs_dataplane::core::service::{Proto, VsKey};

use super::machine::*;
use super::spec::*;
use crate::command::SvcKey;

const S: Duration = Duration::from_secs(1);

fn key() -> SvcKey {
    SvcKey::Addr(VsKey {
        proto: Proto::Tcp,
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        port: 80,
    })
}

fn rip(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))
}

fn script(name: &str) -> Script {
    Script {
        argv: vec![format!("/bin/{name}")],
        user: None,
    }
}

fn check(i: u8, kind: CheckKind) -> CheckSpec {
    CheckSpec {
        kind,
        target: SocketAddr::new(rip(i), 80),
        bind: None,
        bind_if: None,
        timeout: S,
        delay_loop: 3 * S,
        retry: 2,
        delay_before_retry: S,
        warmup: Some(Duration::ZERO),
        alpha: false,
        fwmark: None,
    }
}

fn real(i: u8) -> RealSpec {
    RealSpec {
        addr: rip(i),
        port: 80,
        weight: 1,
        inhibit_on_failure: false,
        notify_up: Some(script(&format!("up{i}"))),
        notify_down: Some(script(&format!("down{i}"))),
        checkers: vec![check(i, CheckKind::Tcp)],
    }
}

/// One realserver of configured weight `weight` checked by a `misc_dynamic` script.
fn misc_dynamic_service(weight: u32) -> ServiceSpec {
    let mut spec = service(1);
    spec.reals[0].weight = weight;
    spec.reals[0].checkers = vec![check(
        1,
        CheckKind::Misc {
            script: script("check"),
            timeout: None,
            dynamic: true,
        },
    )];
    spec
}

fn service(n: u8) -> ServiceSpec {
    ServiceSpec {
        key: key(),
        also: Vec::new(),
        reals: (1..=n).map(real).collect(),
        quorum: 1,
        hysteresis: 0,
        quorum_up: Some(script("qup")),
        quorum_down: Some(script("qdown")),
        omega: false,
        sorry: true,
        sorry_server_inhibit: false,
        label: "192.0.2.1:80".into(),
    }
}

/// A machine and its clock, and what its driver saw.
struct Rig {
    h: Health,
    now: Instant,
    /// Probes started and not answered yet.
    probes: Vec<(CheckId, std::sync::Arc<CheckSpec>)>,
    scripts: Vec<String>,
}

impl Rig {
    fn new(services: Vec<ServiceSpec>) -> Self {
        let now = Instant::now();
        let mut r = Rig {
            h: Health::new(services, now, 7),
            now,
            probes: Vec::new(),
            scripts: Vec::new(),
        };
        r.drain();
        r
    }

    fn drain(&mut self) {
        while let Some(a) = self.h.poll_action() {
            match a {
                Action::Probe { id, spec } => self.probes.push((id, spec)),
                Action::Script { script, .. } => self.scripts.push(script.argv[0].clone()),
            }
        }
    }

    /// Advances the clock to the next deadline (at most `max` ahead).
    fn step(&mut self, max: Duration) {
        if let Some(t) = self.h.poll_timeout() {
            self.now = t.min(self.now + max).max(self.now);
        } else {
            self.now += max;
        }
        self.h.handle_timeout(self.now);
        self.drain();
    }

    /// Answers every running probe: `outcome(target's last octet)`.
    fn answer(&mut self, outcome: impl Fn(u8) -> Outcome) {
        for (id, spec) in std::mem::take(&mut self.probes) {
            let IpAddr::V4(a) = spec.target.ip() else {
                panic!()
            };
            self.h.on_result(id, outcome(a.octets()[3]), self.now);
        }
        self.drain();
    }

    /// Runs checks for `d`, answering with `outcome`.
    fn run(&mut self, d: Duration, outcome: impl Fn(u8) -> Outcome) {
        let end = self.now + d;
        while self.now < end {
            self.step(end - self.now);
            self.answer(&outcome);
        }
    }

    /// Steps to the next probe of realserver `i`, answering the others' as passing; returns
    /// when it started.
    fn next_probe_of(&mut self, i: u8) -> Instant {
        loop {
            self.step(100 * S);
            if self.probes.iter().any(|(_, s)| s.target.ip() == rip(i)) {
                let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.probes)
                    .into_iter()
                    .partition(|(_, s)| s.target.ip() == rip(i));
                self.probes = others;
                self.answer(|_| Outcome::PASS);
                self.probes = mine;
                return self.now;
            }
            self.answer(|_| Outcome::PASS);
        }
    }

    fn alive(&self, i: u8) -> bool {
        self.h.overlay().dests[&(key(), rip(i), 80)].alive
    }
}

fn refused() -> Outcome {
    Outcome::fail(FailKind::Refused, "connection refused")
}

#[test]
fn first_checks_start_within_warmup_then_every_delay_loop() {
    let mut spec = service(3);
    for r in &mut spec.reals {
        r.checkers[0].warmup = Some(3 * S);
    }
    let mut r = Rig::new(vec![spec]);
    let t0 = r.now;
    assert!(r.probes.is_empty());
    let mut firsts = Vec::new();
    while firsts.len() < 3 {
        r.step(10 * S);
        for (_, s) in &r.probes {
            firsts.push(r.now - t0);
            assert_eq!(s.kind, CheckKind::Tcp);
        }
        r.answer(|_| Outcome::PASS);
    }
    assert!(firsts.iter().all(|d| *d <= 3 * S), "{firsts:?}");
    // Then every delay_loop.
    let before = r.now;
    r.step(10 * S);
    assert!(r.now - before <= 3 * S);
}

#[test]
fn a_failure_is_retried_before_the_realserver_goes_down() {
    let mut r = Rig::new(vec![service(2)]);
    r.run(S, |_| Outcome::PASS);
    assert!(r.alive(1) && r.alive(2));
    let fail1 = |i: u8| if i == 1 { refused() } else { Outcome::PASS };
    // The first failure and retries (retry 2, delay_before_retry 1 s): still alive.
    let t_fail = r.next_probe_of(1);
    r.answer(fail1);
    assert!(r.alive(1));
    let t = r.next_probe_of(1);
    assert_eq!(t - t_fail, S, "retried after delay_before_retry");
    r.answer(fail1);
    assert!(r.alive(1));
    r.next_probe_of(1);
    r.answer(fail1);
    assert!(!r.alive(1), "down after 1 + retry failures");
    assert!(r.alive(2));
    assert_eq!(r.scripts, vec!["/bin/down1"]);
    let o = r.h.overlay();
    assert!(o.quorum_lost.is_empty());
    // Down: tried every delay_loop, no retries.
    let t = r.next_probe_of(1);
    r.answer(fail1);
    assert_eq!(r.next_probe_of(1) - t, 3 * S);
    // One success brings it back.
    r.answer(|_| Outcome::PASS);
    assert!(r.alive(1));
    assert_eq!(r.scripts, vec!["/bin/down1", "/bin/up1"]);
}

#[test]
fn a_success_between_failures_resets_the_retries() {
    let mut r = Rig::new(vec![service(1)]);
    r.run(S, |_| Outcome::PASS);
    for _ in 0..5 {
        r.step(10 * S);
        r.answer(|_| refused());
        r.step(10 * S);
        r.answer(|_| refused());
        r.step(10 * S);
        r.answer(|_| Outcome::PASS);
        assert!(r.alive(1));
    }
    assert!(r.scripts.is_empty());
}

#[test]
fn alpha_starts_down_until_the_first_success() {
    let mut spec = service(1);
    spec.reals[0].checkers[0].alpha = true;
    let mut r = Rig::new(vec![spec]);
    assert!(!r.alive(1));
    // Started with quorum down (there is a sorry server): quorum_down ran.
    assert_eq!(r.scripts, vec!["/bin/qdown"]);
    assert!(r.h.overlay().quorum_lost.contains(&key()));
    r.step(10 * S);
    r.answer(|_| refused());
    assert!(!r.alive(1));
    r.step(10 * S);
    r.answer(|_| Outcome::PASS);
    assert!(r.alive(1));
    assert_eq!(r.scripts, vec!["/bin/qdown", "/bin/up1", "/bin/qup"]);
    assert!(r.h.overlay().quorum_lost.is_empty());
}

#[test]
fn inhibit_on_failure_is_in_the_overlay() {
    let mut spec = service(2);
    spec.reals[1].inhibit_on_failure = true;
    let mut r = Rig::new(vec![spec]);
    r.run(10 * S, |_| refused());
    let o = r.h.overlay();
    let d1 = o.dests[&(key(), rip(1), 80)];
    let d2 = o.dests[&(key(), rip(2), 80)];
    assert!(!d1.alive && !d1.inhibit);
    assert!(!d2.alive && d2.inhibit);
    assert!(o.quorum_lost.contains(&key()));
}

#[test]
fn quorum_has_hysteresis() {
    let mut spec = service(4);
    spec.quorum = 3;
    spec.hysteresis = 1;
    let mut r = Rig::new(vec![spec]);
    let lost = |r: &Rig| r.h.overlay().quorum_lost.contains(&key());
    let down_upto = |n: u8| move |i: u8| if i <= n { refused() } else { Outcome::PASS };
    r.run(10 * S, down_upto(0));
    assert!(!lost(&r));
    // 2 live of quorum 3: kept (lost below 3 - 1).
    r.run(10 * S, down_upto(2));
    assert!(!r.alive(2) && r.alive(3));
    assert!(!lost(&r));
    r.run(10 * S, down_upto(3));
    assert!(lost(&r));
    assert!(r.scripts.contains(&"/bin/qdown".to_string()));
    // 3 live: not yet regained (needs 3 + 1).
    r.run(10 * S, down_upto(1));
    assert!(r.alive(2) && r.alive(3));
    assert!(lost(&r));
    r.run(10 * S, down_upto(0));
    assert!(!lost(&r));
    assert_eq!(r.scripts.last().map(String::as_str), Some("/bin/qup"));
}

#[test]
fn misc_dynamic_sets_the_weight() {
    let spec = misc_dynamic_service(10);
    let mut r = Rig::new(vec![spec]);
    let w = |r: &Rig| r.h.overlay().dests[&(key(), rip(1), 80)].weight;
    r.run(S, |_| Outcome::Pass { weight: Some(5) });
    assert_eq!(w(&r), Some(5));
    assert!(r.h.take_changed());
    r.run(4 * S, |_| Outcome::Pass { weight: Some(5) });
    assert!(!r.h.take_changed(), "same weight: nothing to publish");
    r.run(4 * S, |_| Outcome::PASS);
    assert_eq!(w(&r), None, "exit 0: the configured weight");
    r.run(4 * S, |_| Outcome::Pass { weight: Some(0) });
    assert_eq!(w(&r), Some(0));
    assert!(r.alive(1));
}

#[test]
fn a_realserver_is_up_only_while_all_its_checkers_pass() {
    let mut spec = service(1);
    let mut http = check(
        1,
        CheckKind::Http {
            tls: false,
            urls: vec![],
            virtualhost: None,
            sni: false,
        },
    );
    http.target.set_port(8080);
    spec.reals[0].checkers.push(http);
    let mut r = Rig::new(vec![spec]);
    // The TCP checker passes, the HTTP one fails.
    let mixed = |r: &mut Rig| {
        for (id, spec) in std::mem::take(&mut r.probes) {
            let o = if spec.target.port() == 8080 {
                Outcome::fail(FailKind::Status, "500")
            } else {
                Outcome::PASS
            };
            r.h.on_result(id, o, r.now);
        }
        r.drain();
    };
    for _ in 0..20 {
        r.step(10 * S);
        mixed(&mut r);
    }
    assert!(!r.alive(1));
    let rows = r.h.rows(r.now);
    assert_eq!(rows.len(), 2);
    assert!(rows[0].up && !rows[1].up);
    assert_eq!(rows[1].checker, "HTTP_GET");
    assert_eq!(
        rows[1].last.as_ref().map(Outcome::text).as_deref(),
        Some("status: 500")
    );
}

#[test]
fn a_result_the_driver_lost_counts_as_a_timeout() {
    let mut r = Rig::new(vec![service(1)]);
    r.run(S, |_| Outcome::PASS);
    for _ in 0..3 {
        r.step(10 * S);
        assert_eq!(r.probes.len(), 1);
        r.probes.clear(); // never answered
        r.step(10 * S); // its result deadline
        r.drain();
    }
    assert!(!r.alive(1));
    let rows = r.h.rows(r.now);
    assert_eq!(
        rows[0].last,
        Some(Outcome::fail(FailKind::Timeout, "no result"))
    );
}

#[test]
fn a_reload_keeps_unchanged_checkers_and_ignores_old_results() {
    let mut r = Rig::new(vec![service(2)]);
    r.run(S, |_| Outcome::PASS);
    r.run(10 * S, |i| if i == 1 { refused() } else { Outcome::PASS });
    assert!(!r.alive(1));
    r.step(10 * S);
    let old = std::mem::take(&mut r.probes);
    assert!(!old.is_empty());
    // Realserver 2's checker changes; 1's stays (and stays down).
    let mut spec = service(2);
    spec.reals[1].checkers[0].delay_loop = 2 * S;
    r.h.update(vec![spec], r.now);
    r.drain();
    assert!(!r.alive(1), "health of an unchanged realserver kept");
    assert!(r.alive(2));
    for (id, _) in old {
        r.h.on_result(id, Outcome::PASS, r.now);
    }
    assert!(!r.alive(1), "a result of the old generation is ignored");
    r.run(10 * S, |_| Outcome::PASS);
    assert!(r.alive(1));
}

#[test]
fn omega_runs_notify_down_and_quorum_down_at_shutdown() {
    let mut spec = service(2);
    spec.omega = true;
    let mut r = Rig::new(vec![spec]);
    r.run(S, |_| Outcome::PASS);
    r.h.shutdown();
    r.drain();
    assert_eq!(r.scripts, vec!["/bin/down1", "/bin/down2", "/bin/qdown"]);
    let mut r = Rig::new(vec![service(2)]);
    r.h.shutdown();
    r.drain();
    assert!(r.scripts.is_empty(), "no omega: nothing runs");
}

#[test]
fn a_reload_that_changes_only_timing_keeps_the_checkers_state() {
    let mut r = Rig::new(vec![service(2)]);
    r.run(S, |_| Outcome::PASS);
    r.run(10 * S, |i| if i == 1 { refused() } else { Outcome::PASS });
    assert!(!r.alive(1));
    // delay_loop, retry and delay_before_retry change: the same probe, state kept.
    let mut spec = service(2);
    for real in &mut spec.reals {
        real.checkers[0].delay_loop = 2 * S;
        real.checkers[0].retry = 0;
        real.checkers[0].delay_before_retry = 2 * S;
    }
    r.h.update(vec![spec.clone()], r.now);
    r.drain();
    assert!(
        !r.alive(1),
        "a timing change puts no failed realserver back"
    );
    // A different target is another probe: it starts afresh (up).
    spec.reals[0].checkers[0].target.set_port(81);
    r.h.update(vec![spec], r.now);
    r.drain();
    assert!(r.alive(1));
}

#[test]
fn a_reload_reevaluates_quorum_and_notifies_removed_live_realservers() {
    let mut r = Rig::new(vec![service(2)]);
    r.run(S, |_| Outcome::PASS);
    assert!(r.h.overlay().quorum_lost.is_empty());
    let mut spec = service(2);
    spec.quorum = 5;
    r.h.update(vec![spec], r.now);
    r.drain();
    assert!(
        r.h.overlay().quorum_lost.contains(&key()),
        "quorum 5 > live weight 2"
    );
    assert!(r.scripts.contains(&"/bin/qdown".to_string()));
    let mut one = service(1);
    one.quorum = 5;
    r.h.update(vec![one], r.now);
    r.drain();
    assert!(
        r.scripts.contains(&"/bin/down2".to_string()),
        "{:?}",
        r.scripts
    );
}

#[test]
fn a_late_result_of_an_earlier_probe_is_ignored() {
    let mut r = Rig::new(vec![service(1)]);
    r.run(S, |_| Outcome::PASS);
    r.step(10 * S);
    let (first, _) = r.probes.pop().unwrap();
    // Its result never comes: it times out, the next probe starts.
    r.step(10 * S);
    r.drain();
    r.step(10 * S);
    assert_eq!(r.probes.len(), 1);
    let (second, _) = r.probes[0].clone();
    assert_ne!(first.seq, second.seq);
    // The first probe's late failure is not taken for the second's.
    let before = r.h.rows(r.now)[0].last.clone();
    r.h.on_result(first, refused(), r.now);
    assert_eq!(r.h.rows(r.now)[0].last, before);
    r.answer(|_| Outcome::PASS);
    assert_eq!(r.h.rows(r.now)[0].last, Some(Outcome::PASS));
}

#[test]
fn misc_dynamic_keeps_its_weight_while_a_failure_is_retried() {
    let spec = misc_dynamic_service(100);
    let mut r = Rig::new(vec![spec]);
    let w = |r: &Rig| r.h.overlay().dests[&(key(), rip(1), 80)].weight;
    r.run(S, |_| Outcome::Pass { weight: Some(2) });
    assert_eq!(w(&r), Some(2));
    // One failure, retried (retry 2): still alive at weight 2, not 100.
    r.next_probe_of(1);
    r.answer(|_| Outcome::fail(FailKind::Exit, "exit code 1"));
    assert!(r.alive(1));
    assert_eq!(w(&r), Some(2));
}
