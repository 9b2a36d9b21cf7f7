//! [`Control`] driven with fakes: steering maps that record their keys, no workers, a kernel
//! whose tables the test writes, and an injected clock. No root, no XDP, no sockets.

use std::cell::RefCell;
use std::net::IpAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use xlvs_common::{AddrKey, COUNTERS, L4Key, PROTO_TCP};
use xlvs_dataplane::afxdp::WorkerHandle;
use xlvs_dataplane::core::conn::Tables;
use xlvs_dataplane::core::service::{IfaceInfo, NextHop, Proto, Snapshot, VsKey};

use super::control::{Control, Parts, Steering, Workers};
use super::resolver::{SETTLE, System, tests::FakeKernel};
use crate::admin::{Request, Response};
use crate::ipvsadm;
use crate::table::ServiceTable;

/// What the fake steering maps hold.
#[derive(Default)]
struct Maps {
    vips: Vec<L4Key>,
    reals: Vec<L4Key>,
    local: Vec<AddrKey>,
    sets: usize,
    attached: Vec<String>,
    /// What the fast path was told each logical interface transmits on, in order.
    egress: Vec<Vec<xlvs_dataplane::bond::Egress>>,
    /// The calls, in order: "keys" (the steering keys, after a snapshot is published) and
    /// "egress".
    calls: Vec<&'static str>,
}

struct FakeSteering(Rc<RefCell<Maps>>);

impl Steering for FakeSteering {
    fn set_keys(
        &mut self,
        vips: &[L4Key],
        reals: &[L4Key],
        local: &[AddrKey],
    ) -> anyhow::Result<()> {
        let mut m = self.0.borrow_mut();
        m.vips = vips.to_vec();
        m.reals = reals.to_vec();
        m.local = local.to_vec();
        m.sets += 1;
        m.calls.push("keys");
        Ok(())
    }

    fn set_egress(&mut self, egress: &[xlvs_dataplane::bond::Egress]) -> anyhow::Result<()> {
        let mut m = self.0.borrow_mut();
        m.egress.push(egress.to_vec());
        m.calls.push("egress");
        Ok(())
    }

    fn counters(&self) -> [u64; COUNTERS as usize] {
        [7, 8, 9, 10, 11]
    }

    fn attach(&mut self, iface: &str) -> anyhow::Result<String> {
        self.0.borrow_mut().attached.push(iface.into());
        Ok("Native".into())
    }
}

struct NoWorkers(Rc<RefCell<bool>>);

impl Workers for NoWorkers {
    fn handles(&self) -> &[WorkerHandle] {
        &[]
    }

    fn stop(&mut self) {
        *self.0.borrow_mut() = true;
    }
}

struct Rig {
    ctl: Control,
    maps: Rc<RefCell<Maps>>,
    kernel: Rc<FakeKernel>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    stopped: Rc<RefCell<bool>>,
    t0: Instant,
}

/// The fake kernel, shared with the test.
struct SharedKernel(Rc<FakeKernel>);

impl System for SharedKernel {
    fn routes(&self) -> crate::neigh::Routes {
        self.0.routes()
    }
    fn neighbours(&self) -> crate::neigh::Neighbours {
        self.0.neighbours()
    }
    fn probe(&self, ip: IpAddr, dev: &str) {
        self.0.probe(ip, dev)
    }
    fn local_addrs(&self) -> Vec<IpAddr> {
        self.0.local_addrs()
    }
}

fn rig(rules: Option<PathBuf>) -> Rig {
    let mut table = ServiceTable::default();
    if let Some(p) = &rules {
        table = super::control::load_rules(&table, p).unwrap();
    }
    rig_with(table, rules)
}

fn rig_with(table: ServiceTable, rules: Option<PathBuf>) -> Rig {
    let maps = Rc::new(RefCell::new(Maps::default()));
    let mut k = FakeKernel::lab();
    k.local = vec!["192.0.2.2".parse().unwrap()];
    let kernel = Rc::new(k);
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let stopped = Rc::new(RefCell::new(false));
    let t0 = Instant::now();
    let ifaces = ["ext0", "int0"]
        .iter()
        .enumerate()
        .map(|(i, n)| IfaceInfo {
            name: n.to_string(),
            ifindex: i as u32 + 2,
            mac: [2, 0xd, 0, 0, 0, i as u8],
            egress: xlvs_dataplane::bond::Egress::Port(i as u8),
        })
        .collect();
    let mut ctl = Control::new(
        table,
        Parts {
            steering: Box::new(FakeSteering(maps.clone())),
            workers: Box::new(NoWorkers(stopped.clone())),
            system: Box::new(SharedKernel(kernel.clone())),
            snapshot: snapshot.clone(),
            conns: Arc::new(Tables::new(1024)),
            ifaces,
        },
        rules,
        t0,
    );
    ctl.start(t0).unwrap();
    Rig {
        ctl,
        maps,
        kernel,
        snapshot,
        stopped,
        t0,
    }
}

fn req(line: &str) -> Request {
    let args: Vec<String> = line.split_whitespace().map(String::from).collect();
    Request::new(ipvsadm::parse(&args).unwrap())
}

impl Rig {
    fn run(&mut self, line: &str) -> Response {
        let t = self.t0;
        self.ctl.execute(&req(line), t)
    }

    fn ok(&mut self, line: &str) -> String {
        let r = self.run(line);
        assert_eq!(r.code, 0, "{line}: {}", r.stderr);
        r.stdout
    }
}

fn vip(port: u16) -> VsKey {
    VsKey {
        proto: Proto::Tcp,
        addr: "192.0.2.100".parse().unwrap(),
        port,
    }
}

#[test]
fn an_admin_edit_reaches_the_snapshot_and_the_steering_keys() {
    let mut r = rig(None);
    let sets = r.maps.borrow().sets;
    r.ok("-A -t 192.0.2.100:80 -s rr");
    r.ok("-a -t 192.0.2.100:80 -r 10.10.0.11:8080 -m -w 2");
    let snap = r.snapshot.load();
    let svc = snap.service(&vip(80)).expect("published");
    assert_eq!(svc.dests.len(), 1);
    assert_eq!(svc.dests[0].weight, 2);
    let m = r.maps.borrow();
    assert_eq!(m.sets, sets + 2);
    assert_eq!(m.vips, [L4Key::v4([192, 0, 2, 100], 80, PROTO_TCP)]);
    assert_eq!(m.reals, [L4Key::v4([10, 10, 0, 11], 8080, PROTO_TCP)]);
    assert_eq!(m.local, [AddrKey::ip("192.0.2.2".parse().unwrap())]);
    drop(m);
    assert!(
        r.ok("-L -n")
            .contains("  -> 10.10.0.11:8080              Masq    2")
    );
    assert_eq!(
        r.ok("--xdp-stats"),
        "steered 7\npassed 8\nredirect_failed 9\noffloaded 10\nsync_handed 11\n"
    );
    r.ctl.attach("ext0", 1).unwrap();
    assert_eq!(r.maps.borrow().attached, ["ext0"]);
    r.ctl.stop();
    assert!(*r.stopped.borrow());
}

/// keepalived adding a thousand VIPs sends a thousand address messages: they settle into
/// one read of the addresses and one update of the steering maps, and no new snapshot.
#[test]
fn a_burst_of_address_changes_is_read_once_without_a_new_snapshot() {
    let mut r = rig(None);
    r.ok("-A -t 192.0.2.100:80 -s rr");
    let (sets, snap) = (r.maps.borrow().sets, r.snapshot.load_full());
    let t = r.t0 + Duration::from_secs(1);
    for i in 0..1000u32 {
        r.ctl
            .addresses_changed(t + Duration::from_micros(5 * i as u64));
        r.ctl
            .handle_timeout(t + Duration::from_micros(5 * i as u64));
    }
    assert_eq!(r.maps.borrow().sets, sets, "not before the burst settles");
    let due = t + super::control::ADDRESS_SETTLE;
    assert!(r.ctl.poll_timeout(t) <= due);
    r.ctl.handle_timeout(due);
    assert_eq!(r.maps.borrow().sets, sets + 1);
    assert_eq!(
        r.maps.borrow().local,
        [AddrKey::ip("192.0.2.2".parse().unwrap())]
    );
    assert!(
        Arc::ptr_eq(&snap, &r.snapshot.load_full()),
        "the snapshot stays"
    );
    r.ctl.handle_timeout(due + Duration::from_secs(1));
    assert_eq!(r.maps.borrow().sets, sets + 1, "once");
}

#[test]
fn a_failed_edit_changes_nothing() {
    let mut r = rig(None);
    r.ok("-A -t 192.0.2.100:80 -s rr");
    let before = r.snapshot.load_full();
    let sets = r.maps.borrow().sets;
    let e = r.run("-a -t 192.0.2.100:81 -r 10.10.0.11:80 -m");
    assert_eq!((e.code, e.stderr.as_str()), (255, "Service not defined\n"));
    let e = r.run("-A -t 192.0.2.100:80");
    assert_eq!(e.stderr, "Service already exists\n");
    assert!(
        Arc::ptr_eq(&before, &r.snapshot.load_full()),
        "not republished"
    );
    assert_eq!(r.maps.borrow().sets, sets);
    // A -R that fails on its last line restores nothing.
    let mut restore = req("-R");
    restore.rules = ipvsadm::parse_rules_numbered(
        "-A -t 192.0.2.100:81 -s rr\n-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m\n-A -t 192.0.2.100:80\n",
    )
    .unwrap();
    let e = r.ctl.execute(&restore, r.t0);
    assert_eq!(
        (e.code, e.stderr.as_str()),
        (255, "line 3: Service already exists; nothing restored\n")
    );
    assert_eq!(r.ok("-S -n"), "-A -t 192.0.2.100:80 -s rr\n");
}

#[test]
fn a_reload_applies_only_its_diff_to_what_its_file_owns() {
    let dir = std::env::temp_dir().join(format!("xlvs-ctl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rules");
    std::fs::write(
        &path,
        "-A -t 192.0.2.100:80 -s rr\n-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m -w 1\n-A -t 192.0.2.100:81 -s wlc\n",
    )
    .unwrap();
    let mut r = rig(Some(path.clone()));
    // An admin service, and an admin edit of a file-owned one.
    r.ok("-A -t 192.0.2.100:90 -s sh");
    r.ok("-e -t 192.0.2.100:80 -r 10.10.0.11:80 -m -w 5");
    let s80 = r.snapshot.load().services[&vip(80)].clone();
    let s90 = r.snapshot.load().services[&vip(90)].clone();
    // The file drops :81 and adds :82; :80 is unchanged in the file.
    std::fs::write(
        &path,
        "-A -t 192.0.2.100:80 -s rr\n-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m -w 1\n-A -t 192.0.2.100:82 -s wlc\n",
    )
    .unwrap();
    r.ctl.reload(r.t0);
    let snap = r.snapshot.load();
    assert!(
        snap.service(&vip(81)).is_none(),
        "the file's deleted service went"
    );
    assert!(
        snap.service(&vip(82)).is_some(),
        "the file's new service came"
    );
    assert!(
        Arc::ptr_eq(&s90, &snap.services[&vip(90)]),
        "the admin's service is not the file's to touch"
    );
    assert_eq!(
        snap.services[&vip(80)].dests[0].weight,
        1,
        "the file's version of its service is restored"
    );
    assert!(!Arc::ptr_eq(&s80, &snap.services[&vip(80)]));
    // Reloading the same file again changes nothing: :80 keeps its published form.
    let s80 = snap.services[&vip(80)].clone();
    r.ctl.reload(r.t0);
    assert!(Arc::ptr_eq(&s80, &r.snapshot.load().services[&vip(80)]));
    // A file that no longer parses changes nothing.
    std::fs::write(
        &path,
        "-A -t 192.0.2.100:80 -s rr\n-a -t 192.0.2.100:80 -r bogus\n",
    )
    .unwrap();
    let before = r.ok("-S -n");
    r.ctl.reload(r.t0);
    assert_eq!(r.ok("-S -n"), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_new_realserver_is_probed_without_waiting_and_resolves_on_the_kernels_word() {
    let mut r = rig(None);
    r.ok("-A -t 192.0.2.100:80 -s rr");
    r.ok("-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m");
    let t0 = r.t0;
    assert_eq!(
        *r.kernel.probes.borrow(),
        ["10.10.0.11".parse::<IpAddr>().unwrap()]
    );
    assert!(r.ctl.settling(t0), "the admin's answer waits");
    assert!(!r.ctl.settling(t0 + SETTLE), "but not for ever");
    let retry = r.ctl.poll_timeout(t0);
    assert!(
        retry > t0 && retry < t0 + SETTLE,
        "a retry timer: {:?}",
        retry - t0
    );
    r.ctl.handle_timeout(retry);
    assert_eq!(r.kernel.probes.borrow().len(), 2, "probed again when due");
    // The kernel answered; rtnetlink says so.
    r.kernel.learn("10.10.0.11", "int0", 0x11);
    r.ctl.neighbours_changed(retry);
    assert!(!r.ctl.settling(retry));
    let snap = r.snapshot.load();
    let hop = snap.services[&vip(80)].dests[0].state.next_hop();
    assert_eq!(
        hop,
        Some(NextHop {
            iface: 1,
            mac: [2, 0, 0, 0, 0, 0x11]
        })
    );
    // A client behind the default gateway: its next hop is the gateway's, once known.
    let client: IpAddr = "198.51.100.9".parse().unwrap();
    assert_eq!(r.ctl.next_hop(client), None);
    r.kernel.learn("192.0.2.1", "ext0", 1);
    r.ctl.neighbours_changed(retry);
    assert_eq!(
        r.ctl.next_hop(client),
        Some(NextHop {
            iface: 0,
            mac: [2, 0, 0, 0, 0, 1]
        })
    );
}

#[test]
fn housekeeping_runs_once_a_second_from_deadlines() {
    let mut r = rig(None);
    let t0 = r.t0;
    assert_eq!(r.ctl.poll_timeout(t0), t0 + Duration::from_secs(1));
    r.ctl.handle_timeout(t0 + Duration::from_millis(1500));
    assert_eq!(
        r.ctl.poll_timeout(t0 + Duration::from_millis(1500)),
        t0 + Duration::from_secs(2),
        "on the second, not a second after it ran late"
    );
    // Far behind (a stopped process): starts again from now.
    let late = t0 + Duration::from_secs(60);
    r.ctl.handle_timeout(late);
    assert_eq!(r.ctl.poll_timeout(late), late + Duration::from_secs(1));
}

/// Probes the test answers: they are queued, and results handed back on demand.
#[derive(Default)]
struct Probed {
    running: Vec<(
        crate::health::machine::CheckId,
        Arc<crate::health::spec::CheckSpec>,
    )>,
    results: Vec<crate::health::probe::Done>,
    scripts: Vec<String>,
}

struct FakeProbes(Rc<RefCell<Probed>>);

impl crate::health::driver::Probes for FakeProbes {
    fn probe(
        &mut self,
        id: crate::health::machine::CheckId,
        spec: Arc<crate::health::spec::CheckSpec>,
    ) {
        self.0.borrow_mut().running.push((id, spec));
    }
    fn script(&mut self, script: crate::health::spec::Script, _why: String) {
        self.0.borrow_mut().scripts.push(script.argv.join(" "));
    }
    fn results(&mut self) -> Vec<crate::health::probe::Done> {
        std::mem::take(&mut self.0.borrow_mut().results)
    }
    fn finish(&mut self, _grace: Duration) {}
}

#[test]
fn health_checks_from_a_keepalived_conf_reach_the_snapshot_and_survive_a_reload() {
    use crate::health::machine::{FailKind, Outcome};
    let dir = std::env::temp_dir().join(format!("xlvs-ctl-health-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("keepalived.conf");
    let text = |weight2: u32| {
        format!(
            "virtual_server 192.0.2.100 80 {{\n  delay_loop 2\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n\
             real_server 10.10.0.11 80 {{\n    TCP_CHECK {{\n      connect_timeout 1\n      retry 0\n    }}\n  }}\n\
             real_server 10.10.0.12 80 {{\n    weight {weight2}\n    TCP_CHECK {{\n      connect_timeout 1\n      retry 0\n    }}\n  }}\n}}\n"
        )
    };
    std::fs::write(&conf, text(1)).unwrap();
    // As xlvsd starts: the file's services, owned by the file, then its checker.
    let (table, kconf) = super::control::load_keepalived(&ServiceTable::default(), &conf).unwrap();
    assert_eq!(table.services().count(), 1);
    let mut r = rig_with(table, None);
    let probed = Rc::new(RefCell::new(Probed::default()));
    let checker = crate::health::driver::Checker::new(
        kconf.services,
        Box::new(FakeProbes(probed.clone())),
        r.t0,
    );
    r.ctl.set_checker(checker, conf.clone());
    let dests = |r: &Rig| {
        let snap = r.snapshot.load();
        let mut d: Vec<String> = snap
            .service(&vip(80))
            .map(|s| s.dests.iter().map(|d| d.addr.to_string()).collect())
            .unwrap_or_default();
        d.sort();
        d
    };
    assert_eq!(dests(&r), ["10.10.0.11", "10.10.0.12"]);
    // The probes start from the loop's deadlines (warmup: within delay_loop).
    let mut now = r.t0;
    let answer = |r: &mut Rig, now: Instant, down: &str| {
        let running = std::mem::take(&mut probed.borrow_mut().running);
        for (id, spec) in running {
            let outcome = if spec.target.ip().to_string() == down {
                Outcome::fail(FailKind::Refused, "connection refused")
            } else {
                Outcome::PASS
            };
            probed
                .borrow_mut()
                .results
                .push(crate::health::probe::Done {
                    id,
                    spec,
                    outcome,
                    took: Duration::from_millis(1),
                });
        }
        r.ctl.health_results(now);
    };
    for _ in 0..40 {
        now = r.ctl.poll_timeout(now).max(now + Duration::from_millis(1));
        r.ctl.handle_timeout(now);
        answer(&mut r, now, "10.10.0.12");
    }
    assert!(now - r.t0 < Duration::from_secs(30), "bounded");
    assert_eq!(
        dests(&r),
        ["10.10.0.11"],
        "the failed realserver left the snapshot"
    );
    let health = r.ok("-L -n --health");
    assert!(
        health.contains("10.10.0.12:80              TCP_CHECK  DOWN"),
        "{health}"
    );
    assert!(
        r.ctl
            .metrics()
            .contains("xlvs_health_check_failures_total{checker=\"TCP_CHECK\",reason=\"refused\"}")
    );
    // -S keeps the configured table.
    assert!(
        r.ok("-S -n")
            .contains("-a -t 192.0.2.100:80 -r 10.10.0.12:80 -m -w 1")
    );
    // A reload that changes the other realserver's weight keeps 10.10.0.12 down.
    std::fs::write(
        &conf,
        text(1).replace(
            "real_server 10.10.0.11 80 {\n",
            "real_server 10.10.0.11 80 {\n    weight 3\n",
        ),
    )
    .unwrap();
    r.ctl.reload(now);
    assert_eq!(
        dests(&r),
        ["10.10.0.11"],
        "a reload puts no failed realserver back"
    );
    assert!(
        r.ok("-S -n")
            .contains("-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m -w 3")
    );
    // A broken file changes nothing.
    std::fs::write(&conf, "virtual_server 192.0.2.100 80 {\n  lb_kind TUN\n").unwrap();
    r.ctl.reload(now);
    assert_eq!(dests(&r), ["10.10.0.11"]);
    // It comes back after one success.
    for _ in 0..10 {
        now = r.ctl.poll_timeout(now).max(now + Duration::from_millis(1));
        r.ctl.handle_timeout(now);
        answer(&mut r, now, "none");
    }
    assert_eq!(dests(&r), ["10.10.0.11", "10.10.0.12"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The fast path is on by default only where the kernel says every port takes XDP
/// redirects; `--offload` also where it cannot say, never where a port takes none;
/// `--no-offload` never (without asking the kernel).
#[test]
fn the_fast_path_is_on_by_default_where_the_kernel_says_every_port_can() {
    use super::{Redirects, fast_path};
    use log::Level;
    let no = || Redirects::No("ext0 takes no XDP redirects".into());
    let unknown = || Redirects::Unknown("the kernel does not say".into());
    for (asked, can, on, level) in [
        (None, Redirects::Yes, true, Level::Info),
        (None, no(), false, Level::Info),
        (None, unknown(), false, Level::Info),
        (Some(true), Redirects::Yes, true, Level::Info),
        (Some(true), no(), false, Level::Error),
        (Some(true), unknown(), true, Level::Warn),
    ] {
        let (got, l, what) = fast_path(asked, || can);
        assert_eq!((got, l), (on, level), "{asked:?}: {what}");
        assert!(what.starts_with(if on {
            "XDP fast path on"
        } else {
            "XDP fast path off"
        }));
    }
    let (on, _, what) = fast_path(Some(false), || panic!("asked the kernel"));
    assert!(!on);
    assert_eq!(what, "XDP fast path off (--no-offload)");
    let (_, _, what) = fast_path(None, no);
    assert!(what.contains("ext0 takes no XDP redirects"), "{what}");
}

/// Links whose carriers the test sets.
struct Carriers(Rc<RefCell<Vec<bool>>>);

impl crate::bond::links::LinkSource for Carriers {
    fn carriers(&self, leaves: &[String]) -> Vec<bool> {
        let c = self.0.borrow();
        leaves.iter().enumerate().map(|(i, _)| c[i]).collect()
    }
    fn report(&self, _: &crate::bond::Bonds) -> crate::bond::Reported {
        Default::default()
    }
}

/// A bond member losing its carrier changes the workers' egress (the snapshot) and then the
/// XDP fast path's (`EGRESS`), in that order; when nothing changed, neither is written.
#[test]
fn a_members_loss_reaches_the_fast_path_after_the_workers() {
    use crate::bond::links::Links;
    use crate::bond::{BondSpec, Bonds, Mode};
    use xlvs_dataplane::bond::{Egress, XmitHash};
    let mut r = rig(None);
    let up = Rc::new(RefCell::new(vec![true, true, true]));
    let bonds = Bonds::new(vec![BondSpec {
        name: "ext0".into(),
        members: vec!["m0".into(), "m1".into()],
        mode: Mode::Lacp,
        hash: XmitHash::Layer34,
    }])
    .unwrap();
    let links = Links::new(
        bonds,
        vec!["ext0".into(), "int0".into()],
        vec!["m0".into(), "m1".into(), "int0".into()],
        Box::new(Carriers(up.clone())),
        Vec::new(),
        r.t0,
    );
    r.ctl.set_links(links);
    r.maps.borrow_mut().calls.clear();
    r.ctl.links_changed(r.t0);
    assert!(r.maps.borrow().calls.is_empty(), "nothing changed");
    up.borrow_mut()[1] = false;
    r.ctl.links_changed(r.t0);
    let want = vec![Egress::hashed(XmitHash::Layer34, &[0]), Egress::Port(2)];
    assert_eq!(r.maps.borrow().calls, ["keys", "egress"]);
    assert_eq!(r.maps.borrow().egress.last(), Some(&want));
    assert_eq!(r.snapshot.load().ifaces[0].egress, want[0]);
    // Back: both members again.
    up.borrow_mut()[1] = true;
    r.ctl.links_changed(r.t0);
    assert_eq!(
        r.maps.borrow().egress.last().map(|e| e[0].clone()),
        Some(Egress::hashed(XmitHash::Layer34, &[0, 1]))
    );
}
