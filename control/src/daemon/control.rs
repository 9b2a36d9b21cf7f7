//! The control thread's state and what it does, apart from how events reach it: admin
//! requests, reloads, housekeeping, next hops, publishing. [`Control`] is built from the parts
//! it is given ([`Parts`]: the steering maps, the workers and the kernel behind small traits),
//! so unit tests drive it with fakes and an injected clock; [`super::event_loop`] feeds it.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use xlvs_common::{AddrKey, COUNTERS, L4Key};
use xlvs_dataplane::afxdp::{self, WorkerHandle};
use xlvs_dataplane::bond::Egress;
use xlvs_dataplane::core::conn::Tables;
use xlvs_dataplane::core::inject::Spec;
use xlvs_dataplane::core::service::{DestState, IfaceInfo, NextHop, Snapshot};

use super::report;
use super::resolver::{Resolver, System};
use crate::admin::{Request, Response};
use crate::command::{CmdError, Command};
use crate::health::driver::{self as health, Checker};
use crate::table::{ServiceTable, Source};
use crate::{conns, ipvsadm, metrics, stats as rates};

/// How long a burst of address changes may go on before the addresses are read.
pub const ADDRESS_SETTLE: Duration = Duration::from_millis(10);

/// The XDP program's steering maps.
pub trait Steering {
    /// Makes the maps hold exactly these keys: virtual services, LVS-NAT realservers, the
    /// director's own addresses.
    fn set_keys(
        &mut self,
        services: &[L4Key],
        reals: &[L4Key],
        local: &[AddrKey],
    ) -> anyhow::Result<()>;
    /// Summed counters: [steered, passed, redirect_failed].
    fn counters(&self) -> [u64; COUNTERS as usize];
    /// Attaches the program to `iface`; says how (native or generic XDP).
    fn attach(&mut self, iface: &str) -> anyhow::Result<String>;
    /// Whether the program stays attached when this is dropped (a crash), or is detached (an
    /// orderly stop).
    fn stay_attached(&mut self, _stay: bool) {}
    /// Leaves the program attached for a restart that comes by `until_ns` (CLOCK_MONOTONIC);
    /// false if it cannot (its links are not pinned).
    fn leave_for_restart(&mut self, _until_ns: u64) -> anyhow::Result<bool> {
        Ok(false)
    }
    /// A port added at run time: its sockets into the XSKMAP, its interface into `IFACES`.
    fn add_port(&mut self, p: &NewPort) -> anyhow::Result<()> {
        anyhow::bail!("cannot steer to {} (no XDP here)", p.name)
    }
    /// The ports each logical interface transmits on now, for the fast path's frames.
    fn set_egress(&mut self, _egress: &[Egress]) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A port (a bond member that joined) the workers have just bound.
#[derive(Clone, Debug)]
pub struct NewPort {
    pub name: String,
    pub port: u8,
    pub ifindex: u32,
    pub queues: u32,
    /// (RX queue, AF_XDP socket) of each of its sockets.
    pub sockets: Vec<(u32, std::os::fd::RawFd)>,
}

impl Steering for crate::xdp::XdpSteering {
    fn set_keys(
        &mut self,
        services: &[L4Key],
        reals: &[L4Key],
        local: &[AddrKey],
    ) -> anyhow::Result<()> {
        crate::xdp::XdpSteering::set_keys(self, services, reals, local)
    }

    fn counters(&self) -> [u64; COUNTERS as usize] {
        crate::xdp::XdpSteering::counters(self)
    }

    fn attach(&mut self, iface: &str) -> anyhow::Result<String> {
        crate::xdp::XdpSteering::attach(self, iface).map(|m| format!("{m:?}"))
    }

    fn stay_attached(&mut self, stay: bool) {
        crate::xdp::XdpSteering::stay_attached(self, stay)
    }

    fn leave_for_restart(&mut self, until_ns: u64) -> anyhow::Result<bool> {
        crate::xdp::XdpSteering::leave_for_restart(self, until_ns)
    }

    fn add_port(&mut self, p: &NewPort) -> anyhow::Result<()> {
        for (q, fd) in &p.sockets {
            self.set_socket(p.port as u32, *q, *fd)?;
        }
        self.set_iface(p.ifindex, p.port as u32, p.queues)?;
        // The fast path sends frames out of it only if it takes XDP redirects (a member
        // that joins later was not asked at start).
        if let Ok(Some(false)) = crate::xdp_features::takes_redirects(p.ifindex) {
            log::warn!(
                "{} takes no XDP redirects: the XDP fast path leaves the frames its bond sends to the workers",
                p.name
            );
            self.no_redirects_to(p.port as u32);
        }
        Ok(())
    }

    fn set_egress(&mut self, egress: &[Egress]) -> anyhow::Result<()> {
        crate::xdp::XdpSteering::set_egress(self, egress)
    }
}

/// The running workers.
pub trait Workers {
    /// Their names, threads and counters.
    fn handles(&self) -> &[WorkerHandle];
    /// Stops them and waits until they have.
    fn stop(&mut self);
    /// Binds device `name` as port `port` of logical interface `logical` and starts its
    /// workers (their handles join [`Workers::handles`]).
    fn add_port(&mut self, name: &str, port: u8, _logical: u8) -> anyhow::Result<NewPort> {
        anyhow::bail!("cannot add {name} as port {port}: no spare sockets here")
    }
}

/// What [`Control`] is built from.
pub struct Parts {
    pub steering: Box<dyn Steering>,
    pub workers: Box<dyn Workers>,
    pub system: Box<dyn System>,
    /// The snapshot the workers read.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// The connection tables the workers share.
    pub conns: Arc<Tables>,
    /// The driven interfaces, by interface id.
    pub ifaces: Vec<IfaceInfo>,
}

/// The control thread's state.
pub struct Control {
    table: ServiceTable,
    steering: Box<dyn Steering>,
    workers: Box<dyn Workers>,
    system: Box<dyn System>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    conns: Arc<Tables>,
    ifaces: Vec<IfaceInfo>,
    iface_names: Vec<String>,
    resolver: Resolver,
    /// `--rules`: re-read on SIGHUP.
    rules: Option<PathBuf>,
    /// `--keepalived-conf`: re-read on SIGHUP.
    keepalived: Option<PathBuf>,
    /// Health checking of the keepalived.conf's realservers.
    checker: Option<Checker>,
    /// IPVS `expire_nodest_conn` (`--expire-nodest-conn`).
    expire_nodest_conn: bool,
    /// The connection sync daemons.
    sync: crate::sync::daemon::SyncDaemons,
    /// Realservers gone from the last snapshots: their connections are marked again at the
    /// next housekeeping, for those a worker still on the older snapshot made meanwhile.
    gone: Vec<Arc<DestState>>,
    /// Wakes the event loop from another thread (the resync puller).
    waker: Option<Arc<dyn Fn() + Send + Sync>>,
    /// When the director's addresses are read again (a burst of changes settling).
    addresses_due: Option<Instant>,
    /// Next hops towards the clients of connections learned from peers (gateways, or
    /// clients on a link), resolved like realservers, for the snapshot's routes towards
    /// clients: a takeover's first reply needs one before the client's next frame.
    client_vias: std::collections::HashMap<IpAddr, Arc<DestState>>,
    /// The routes towards clients last published, as (prefix, length, via).
    client_routes: Vec<(IpAddr, u8, IpAddr)>,
    /// The virtual service keys the XDP steering holds ([`Control::keep_unsteered`]).
    steered: HashSet<L4Key>,
    /// The last VRRP state keepalived reported, for which instance, and when.
    vrrp: Option<(crate::vrrp::Notify, Instant)>,
    /// How the sync daemons follow the VRRP state.
    sync_roles: crate::vrrp::SyncRoles,
    /// The settings of the daemons started so far, by role: a notify that starts a role
    /// again uses them (or the other role's).
    daemon_specs: Vec<crate::command::DaemonSpec>,
    /// Connections from peers that could not bind here, by service and realserver (counted
    /// every [`DRIFT_EVERY`] housekeeping rounds while a backup runs).
    drift: std::collections::BTreeMap<(String, std::net::SocketAddr), u64>,
    /// When housekeeping runs next (once a second).
    next_housekeeping: Instant,
    /// With the XDP fast path: its map, and what of each entry the realservers' counters
    /// already have (counted once a second, [`offload_credit`]).
    ///
    /// [`offload_credit`]: xlvs_dataplane::offload_credit
    fast_path: Option<(
        xlvs_dataplane::offload_map::OffloadMap,
        xlvs_dataplane::offload_credit::FastCredit,
    )>,
    /// Housekeeping rounds so far.
    tick: u64,
    /// Bonds and their members' links ([`Control::links_changed`]).
    links: Option<crate::bond::links::Links>,
}

impl Control {
    /// A control thread for `table` (its services already in place) over these parts; call
    /// [`Control::start`] next.
    pub fn new(table: ServiceTable, parts: Parts, rules: Option<PathBuf>, now: Instant) -> Self {
        Control {
            table,
            steering: parts.steering,
            workers: parts.workers,
            system: parts.system,
            snapshot: parts.snapshot,
            conns: parts.conns,
            iface_names: parts.ifaces.iter().map(|i| i.name.clone()).collect(),
            ifaces: parts.ifaces,
            resolver: Resolver::new(),
            rules,
            keepalived: None,
            checker: None,
            expire_nodest_conn: false,
            gone: Vec::new(),
            sync: Default::default(),
            waker: None,
            addresses_due: None,
            client_vias: Default::default(),
            client_routes: Vec::new(),
            steered: HashSet::new(),
            vrrp: None,
            sync_roles: Default::default(),
            daemon_specs: Vec::new(),
            drift: Default::default(),
            links: None,
            next_housekeeping: now + Duration::from_secs(1),
            fast_path: None,
            tick: 0,
        }
    }

    /// Resolves what it can of the realservers' next hops (probing the rest) and publishes
    /// the table.
    pub fn start(&mut self, now: Instant) -> anyhow::Result<()> {
        self.resolve(now);
        self.publish()
    }

    /// IPVS `expire_nodest_conn`: a connection whose realserver left the table (deleted, or
    /// taken out by a health check) expires at its next client packet instead of going on.
    pub fn set_expire_nodest_conn(&mut self, on: bool) {
        self.expire_nodest_conn = on;
    }

    /// The XDP fast path's map: what it forwards is counted for the realservers once a
    /// second.
    pub fn set_fast_path(&mut self, map: xlvs_dataplane::offload_map::OffloadMap) {
        self.fast_path = Some((map, Default::default()));
    }

    /// Health checks the services `keepalived` (a keepalived.conf, re-read on SIGHUP)
    /// configures, with `checker`.
    pub fn set_checker(&mut self, checker: Checker, keepalived: PathBuf) {
        self.checker = Some(checker);
        self.keepalived = Some(keepalived);
        self.apply_health();
    }

    /// Probe results came in (the probe runtime woke the loop).
    pub fn health_results(&mut self, now: Instant) {
        if let Some(c) = &mut self.checker {
            c.collect(now);
        }
        self.apply_health();
    }

    /// The sync settings beyond ipvsadm's daemon options (before any daemon starts).
    pub fn set_sync_options(&mut self, opts: crate::sync::daemon::SyncOptions) {
        self.sync.opts = opts;
    }

    /// How the sync daemons follow keepalived's VRRP state (`--sync-roles`).
    pub fn set_sync_roles(&mut self, roles: crate::vrrp::SyncRoles) {
        self.sync_roles = roles;
    }

    /// keepalived's notify: the state is recorded and the sync daemons take the roles it
    /// calls for (started with the settings they last had, or the other role's).
    fn vrrp_notify(&mut self, n: &crate::vrrp::Notify, now: Instant) -> Result<String, CmdError> {
        use crate::command::{Command, SyncRole};
        let (master, backup) = crate::vrrp::roles(n.state, self.sync_roles);
        let mut done = Vec::new();
        for (role, want) in [(SyncRole::Master, master), (SyncRole::Backup, backup)] {
            let running = match role {
                SyncRole::Master => self.sync.master.is_some(),
                SyncRole::Backup => self.sync.backup.is_some(),
            };
            if want && !running {
                let spec = self
                    .daemon_specs
                    .iter()
                    .find(|d| d.role == role)
                    .or_else(|| self.daemon_specs.first())
                    .cloned();
                if let Some(mut spec) = spec {
                    spec.role = role;
                    let r = self.execute(&Request::new(Command::StartDaemon(spec)), now);
                    if r.code != 0 {
                        return Err(CmdError::op(r.stderr.trim_end().to_string()));
                    }
                    done.push(format!("started the {} daemon", role.name()));
                }
            } else if !want && running {
                let r = self.execute(&Request::new(Command::StopDaemon { role }), now);
                if r.code != 0 {
                    return Err(CmdError::op(r.stderr.trim_end().to_string()));
                }
                done.push(format!("stopped the {} daemon", role.name()));
            }
        }
        log::info!(
            "VRRP{}: {}{}",
            n.instance
                .as_ref()
                .map(|i| format!(" {i}"))
                .unwrap_or_default(),
            n.state.name(),
            if done.is_empty() {
                String::new()
            } else {
                format!("; {}", done.join(", "))
            }
        );
        // Leaving MASTER (a healed split brain, or a preempting peer): what this node
        // scheduled meanwhile may be unknown to the peer that now carries its traffic, if
        // sync was cut too; ask the peers to pull it.
        let was_master = self
            .vrrp
            .as_ref()
            .is_some_and(|(o, _)| o.state == crate::vrrp::VrrpState::Master);
        if was_master && n.state != crate::vrrp::VrrpState::Master {
            self.sync.ask_peers_to_pull();
        }
        self.vrrp = Some((n.clone(), now));
        Ok(String::new())
    }

    /// keepalived's track_script check: the data plane is alive (every worker thread runs),
    /// and a node that is not MASTER has its peers' table: while it is still pulling it (a
    /// returning master), the check fails, so keepalived does not let it preempt before it
    /// holds the connections it would take over.
    fn check(&self) -> Result<String, CmdError> {
        if let Some(w) = self.workers.handles().iter().find(|w| !w.alive()) {
            return Err(CmdError::op(format!("worker {} is gone", w.name)));
        }
        let master = self
            .vrrp
            .as_ref()
            .is_some_and(|(n, _)| n.state == crate::vrrp::VrrpState::Master);
        if !master && self.sync.resync.pulling() {
            return Err(CmdError::op("still pulling the peers' connection table"));
        }
        Ok(String::new())
    }

    /// The VRRP state for `-L --daemon --json`.
    /// The workers' counts of entries learned from peers, by result.
    fn inject_counts(&self) -> [(&'static str, u64); 5] {
        let sum = |f: fn(&xlvs_dataplane::afxdp::WorkerStats) -> &std::sync::atomic::AtomicU64| {
            self.workers
                .handles()
                .iter()
                .map(|w| f(&w.stats).load(std::sync::atomic::Ordering::Relaxed))
                .sum::<u64>()
        };
        let taken = sum(|s| &s.conflicts_taken);
        [
            ("applied", sum(|s| &s.injected).saturating_sub(taken)),
            ("queue_full", sum(|s| &s.inject_full)),
            ("failed", sum(|s| &s.inject_failed)),
            ("conflict_kept", sum(|s| &s.conflicts_kept)),
            ("conflict_taken", taken),
        ]
    }

    fn vrrp_json(&self) -> serde_json::Value {
        match &self.vrrp {
            Some((n, at)) => serde_json::json!({
                "state": n.state.name(),
                "instance": n.instance,
                "since_ms": at.elapsed().as_millis() as u64,
            }),
            None => serde_json::Value::Null,
        }
    }

    /// How another thread (the resync puller) wakes the event loop, which then calls
    /// [`Control::woken`].
    pub fn set_waker(&mut self, wake: Arc<dyn Fn() + Send + Sync>) {
        self.sync.wake = Some(crate::sync::resync::server::Wake(wake.clone()));
        for w in self.workers.handles() {
            w.events.set_waker(wake.clone());
        }
        self.waker = Some(wake);
    }

    /// Another thread woke the loop: a worker with a just-established connection for the
    /// sync master (drained at once, by the [`Control::handle_timeout`] that follows),
    /// resync entries to hand to the workers, or a peer's ask to pull its table.
    pub fn woken(&mut self, now: Instant) {
        if let Some(m) = &mut self.sync.master {
            m.drain_now(now);
        }
        if self
            .sync
            .asked
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            if self.sync.resync.pulling() {
                log::info!("resync: a peer asked to be pulled from; a pull is running already");
            } else if let Err(e) = self.start_pull() {
                log::warn!("resync: a peer asked to be pulled from: {}", e.msg);
            }
        }
        self.drain_resync(now);
    }

    /// Starts a pull of the peers' tables (`--resync`, or a daemon starting).
    fn start_pull(&mut self) -> Result<(), CmdError> {
        let peers = self.sync.resync_peers();
        if peers.is_empty() {
            return Err(CmdError::op(
                "no resync peer: start xlvsd with --sync-peer ADDR (and --resync-port > 0)",
            ));
        }
        let wake = self.waker.clone();
        let key = self.sync.opts.key.clone();
        let from: Vec<_> = peers
            .iter()
            .map(|p| (*p, self.sync.resync_source(p.ip())))
            .collect();
        self.sync
            .resync
            .pull(from, key, move || {
                if let Some(w) = &wake {
                    w();
                }
            })
            .map_err(|e| CmdError::op(format!("resync: {e}")))?;
        log::info!(
            "resync: pulling the connection table from {}",
            peers
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(())
    }

    /// Hands a saved table's entries ([`crate::restart`]) to the workers and waits until they
    /// have inserted them all (or `limit` passed), before any frame reaches them. Returns
    /// (inserted, not inserted).
    pub fn restore(&mut self, specs: &[Spec], limit: Duration) -> (u64, u64) {
        let start = Instant::now();
        let handles = self.workers.handles();
        let done = || {
            handles
                .iter()
                .map(|w| {
                    let s = &w.stats;
                    s.injected.load(Relaxed)
                        + s.inject_failed.load(Relaxed)
                        + s.conflicts_kept.load(Relaxed)
                })
                .sum::<u64>()
        };
        if handles.is_empty() {
            return (0, specs.len() as u64);
        }
        let before = done();
        let mut to = Injector::new(handles, &self.resolver, &self.iface_names);
        let mut sent = 0u64;
        'all: for s in specs {
            while !to.inject(*s) {
                // A full queue: let its worker insert what it holds.
                to.handles[worker_of(s, to.handles.len())].wake();
                if start.elapsed() > limit {
                    break 'all;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            sent += 1;
        }
        let missing = to.finish();
        while done() - before < sent && start.elapsed() <= limit {
            std::thread::sleep(Duration::from_micros(200));
        }
        let took = (done() - before).min(sent);
        self.want_client_hops(Instant::now(), &missing);
        (took, specs.len() as u64 - took)
    }

    /// Leaves the XDP program attached for a restart: dropping the services' frames while
    /// the table is saved to `path` and for `hold` after, then passing them to the kernel.
    /// Returns the entries saved, or None if the program cannot stay (its links are not
    /// pinned: then it is detached as this is dropped).
    pub fn leave_for_restart(
        &mut self,
        path: &std::path::Path,
        hold: Duration,
    ) -> anyhow::Result<Option<u64>> {
        // Dropping (no end) while the table is written.
        if !self.steering.leave_for_restart(u64::MAX)? {
            return Ok(None);
        }
        let saved = crate::restart::save(path, &self.conns, xlvs_dataplane::afxdp::now());
        let until = xlvs_dataplane::afxdp::now().0 + hold.as_nanos() as u64;
        self.steering.leave_for_restart(until)?;
        saved.map(Some)
    }

    /// Hands the pulled entries the workers' queues take (the rest wait for a retry).
    fn drain_resync(&mut self, now: Instant) {
        let mut to = Injector::new(self.workers.handles(), &self.resolver, &self.iface_names);
        if to.handles.is_empty() {
            return;
        }
        self.sync.resync.drain(now, |s| {
            let ok = to.inject(*s);
            if !ok {
                // Let it insert what it holds.
                to.handles[worker_of(s, to.handles.len())].wake();
            }
            ok
        });
        let missing = to.finish();
        self.want_client_hops(now, &missing);
    }

    /// The sync backup's socket, for the event loop (None while no backup runs).
    pub fn sync_fd(&self) -> Option<std::os::fd::RawFd> {
        self.sync.backup.as_ref().map(|b| b.fd())
    }

    /// The sync backup's socket is readable: its entries go to the workers, each connection
    /// to one worker by its client (which then owns its expiry).
    pub fn sync_readable(&mut self) {
        let Some(b) = &mut self.sync.backup else {
            return;
        };
        let timeouts = *self.table.timeouts();
        let mut to = Injector::new(self.workers.handles(), &self.resolver, &self.iface_names);
        if to.handles.is_empty() {
            return;
        }
        b.readable(&timeouts, |specs| {
            for s in specs {
                // A full queue drops it (counted as `inject_full`): the next sync brings it.
                to.inject(s);
            }
        });
        let missing = to.finish();
        self.want_client_hops(Instant::now(), &missing);
    }

    /// Publishes what health checking decided, if anything changed.
    fn apply_health(&mut self) {
        let Some(overlay) = self.checker.as_mut().and_then(Checker::changed_overlay) else {
            return;
        };
        if self.table.set_health(overlay)
            && let Err(e) = self.publish()
        {
            log::error!("updating the XDP maps: {e:#}");
        }
    }

    /// The configuration.
    pub fn table(&self) -> &ServiceTable {
        &self.table
    }

    /// The workers.
    pub fn workers(&self) -> &[WorkerHandle] {
        self.workers.handles()
    }

    /// Attaches the XDP program to one of the driven interfaces.
    pub fn attach(&mut self, iface: &str, queues: u32) -> anyhow::Result<()> {
        let mode = self.steering.attach(iface)?;
        log::info!("XDP attached to {iface} ({mode} mode), {queues} RX queue(s)");
        Ok(())
    }

    /// Whether the XDP program stays attached when this is dropped: true while the daemon
    /// runs (a crash), false for an orderly stop.
    pub fn steering_stays(&mut self, stay: bool) {
        self.steering.stay_attached(stay);
    }

    /// Stops the workers, and health checking (after omega's scripts, if any).
    pub fn stop(&mut self) {
        self.workers.stop();
        // The master's last events and partial datagram go out before it stops (the kernel
        // drops them; a backup would otherwise miss the last flush interval's changes).
        if let Some(m) = &mut self.sync.master {
            let handles = self.workers.handles();
            m.finish(
                handles
                    .iter()
                    .flat_map(|w| std::iter::from_fn(|| w.events.pop())),
            );
        }
        if let Some(mut c) = self.checker.take() {
            c.shutdown();
            c.finish(health::SHUTDOWN_GRACE);
        }
    }

    /// Publishes the table: the workers' snapshot first, then the XDP steering maps, so a
    /// frame is steered only once the workers know its service.
    fn publish(&mut self) -> anyhow::Result<()> {
        let mut snap = self.table.snapshot(&self.ifaces);
        snap.expire_nodest_conn = self.expire_nodest_conn;
        snap.client_routes = super::resolver::client_routes(
            self.resolver.routes(),
            &self.iface_names,
            &self.client_vias,
        );
        self.client_routes = snap
            .client_routes
            .iter()
            .map(|r| (r.net, r.len, r.via.addr))
            .collect();
        let old = self.snapshot.swap(Arc::new(snap));
        if self.expire_nodest_conn {
            self.unbind_gone(&old);
        }
        self.set_steering_keys()
    }

    /// Wakes every worker thread, so that an idle one (whose connections' frames the XDP
    /// program forwards) removes the entries just queued for removal now, not at its next
    /// deadline.
    fn wake_workers(&self) {
        for w in self.workers.handles() {
            w.wake();
        }
    }

    /// Makes the XDP steering maps hold the table's services and NAT realservers and the
    /// director's addresses as the kernel has them now.
    fn set_steering_keys(&mut self) -> anyhow::Result<()> {
        let (vips, reals) = self.table.steer_keys();
        let local: Vec<AddrKey> = self
            .system
            .local_addrs()
            .into_iter()
            .map(AddrKey::ip)
            .collect();
        let r = self.steering.set_keys(&vips, &reals, &local);
        self.keep_unsteered(vips);
        r
    }

    /// The XDP program forwards an offloaded connection's frames from its entry alone,
    /// before it looks at the steering maps. So the connections of a virtual service key
    /// the steering no longer holds (a deleted service, a port gone from a fwmark group)
    /// are kept by the workers from now on, offloaded or not yet (a frame steered before
    /// the key went may still reach a worker): their frames meet the steering again, which
    /// no longer takes them, and the workers wake to remove their entries at once.
    fn keep_unsteered(&mut self, vips: Vec<L4Key>) {
        let now: HashSet<L4Key> = vips.into_iter().collect();
        let gone: HashSet<L4Key> = self.steered.difference(&now).copied().collect();
        self.steered = now;
        if gone.is_empty() {
            return;
        }
        let n = self.conns.keep_services(|k| gone.contains(&k));
        if n > 0 {
            log::info!(
                "{n} connection(s) of deleted services stay with the workers (none offloaded to the XDP program)"
            );
            self.wake_workers();
        }
    }

    /// With `expire_nodest_conn`: the connections of realservers `old` had and the snapshot
    /// now has not are marked, so that their next client packet expires them (again at the
    /// next housekeeping: a worker may still have been scheduling with `old`).
    fn unbind_gone(&mut self, old: &Snapshot) {
        fn dests(s: &Snapshot) -> impl Iterator<Item = &Arc<DestState>> {
            s.services
                .values()
                .flat_map(|svc| svc.dests.iter().chain(svc.sorry.iter()))
                .map(|d| &d.state)
        }
        let snap = self.snapshot.load();
        let now: HashSet<*const DestState> = dests(&snap).map(Arc::as_ptr).collect();
        let mut seen = HashSet::new();
        let gone: Vec<Arc<DestState>> = dests(old)
            .filter(|d| !now.contains(&Arc::as_ptr(d)) && seen.insert(Arc::as_ptr(d)))
            .cloned()
            .collect();
        if gone.is_empty() {
            return;
        }
        let n = self.mark_gone(&gone);
        log::info!(
            "expire_nodest_conn: {n} connection(s) of {} realserver(s) gone from the table expire at their next packet",
            gone.len()
        );
        self.gone.extend(gone);
    }

    /// Marks the connections of realservers `gone`; returns how many.
    fn mark_gone(&self, gone: &[Arc<DestState>]) -> usize {
        let set: HashSet<*const DestState> = gone.iter().map(Arc::as_ptr).collect();
        self.conns
            .unbind_gone(|d| set.contains(&(d as *const DestState)))
    }

    /// Brings the realservers' next hops up to date (never waits).
    fn resolve(&mut self, now: Instant) {
        self.resolver.update(
            now,
            &*self.system,
            &self.iface_names,
            self.table
                .all_dests()
                .map(|d| (d.addr, &d.state))
                .chain(self.client_vias.iter().map(|(a, s)| (*a, s))),
        );
        let moved = self.resolver.take_moved();
        if !moved.is_empty() {
            let n = self
                .conns
                .unoffload_dests(|d| moved.iter().any(|m| std::ptr::eq(&**m, d)));
            if n > 0 {
                log::info!(
                    "{n} offloaded connection(s) of {} realserver(s) whose next hop changed go back to the workers",
                    moved.len()
                );
                self.wake_workers();
            }
        }
    }

    /// Most next hops towards clients kept (gateways and on-link clients).
    const MAX_CLIENT_VIAS: usize = 4096;

    /// Clients of connections learned without their hop: their next hops are resolved from
    /// now on, and the workers get routes towards them (a new snapshot if one is new).
    fn want_client_hops(&mut self, now: Instant, clients: &[IpAddr]) {
        let mut new = false;
        for c in clients {
            let Some(r) = crate::neigh::lookup(self.resolver.routes(), *c) else {
                continue;
            };
            if !self.iface_names.contains(&r.dev)
                || self.client_vias.contains_key(&r.via)
                || self.client_vias.len() >= Self::MAX_CLIENT_VIAS
            {
                continue;
            }
            self.client_vias
                .insert(r.via, Arc::new(DestState::new(r.via, 0)));
            new = true;
        }
        if new {
            self.resolve(now);
            if let Err(e) = self.publish() {
                log::error!("updating the XDP maps: {e:#}");
            }
        }
    }

    /// Publishes again if the routes towards clients changed (a route or neighbour event).
    fn refresh_client_routes(&mut self) {
        if self.client_vias.is_empty() {
            return;
        }
        let now: Vec<(IpAddr, u8, IpAddr)> = super::resolver::client_routes(
            self.resolver.routes(),
            &self.iface_names,
            &self.client_vias,
        )
        .iter()
        .map(|r| (r.net, r.len, r.via.addr))
        .collect();
        if now != self.client_routes
            && let Err(e) = self.publish()
        {
            log::error!("updating the XDP maps: {e:#}");
        }
    }

    /// The next hop towards any address (a client's, for a connection learned from a peer),
    /// from the kernel tables last read; None if the kernel does not know it yet.
    pub fn next_hop(&self, addr: IpAddr) -> Option<NextHop> {
        self.resolver.next_hop(&self.iface_names, addr)
    }

    /// The kernel's neighbours or routes changed (rtnetlink): next hops are looked up again.
    pub fn neighbours_changed(&mut self, now: Instant) {
        self.resolver.invalidate();
        self.resolve(now);
        self.refresh_client_routes();
    }

    /// The director's addresses changed (rtnetlink): the XDP program must pass traffic to the
    /// new ones to the kernel. A burst (keepalived adding a thousand VIPs, one message each)
    /// is read once it settles: [`ADDRESS_SETTLE`] after its first message, the addresses
    /// are read and the LOCAL_ADDRS map brought in step, without a new snapshot, so a
    /// takeover's work here does not grow with the VIPs it brings.
    pub fn addresses_changed(&mut self, now: Instant) {
        if self.addresses_due.is_none() {
            self.addresses_due = Some(now + ADDRESS_SETTLE);
        }
    }

    /// The next deadline: housekeeping, a next-hop probe to retry, or the end of a settle.
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        [
            Some(self.next_housekeeping),
            self.resolver.poll_timeout(),
            self.resolver.settling(now),
            self.checker.as_ref().and_then(Checker::poll_timeout),
            self.links.as_ref().and_then(|l| l.poll_timeout()),
            self.sync.master.as_ref().map(|m| m.poll_timeout()),
            self.sync.resync.poll_timeout(),
            self.addresses_due,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.next_housekeeping)
    }

    /// Runs what is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.addresses_due.is_some_and(|t| now >= t) {
            self.addresses_due = None;
            // Only the steering maps: the snapshot holds no director address.
            if let Err(e) = self.set_steering_keys() {
                log::error!("updating the XDP maps: {e:#}");
            }
        }
        if now >= self.next_housekeeping {
            // Once a second on average, whatever the control traffic (the rate estimator counts
            // on its period being 2 s); a loop that fell far behind starts again from now.
            self.next_housekeeping += Duration::from_secs(1);
            if self.next_housekeeping + Duration::from_secs(5) < now {
                self.next_housekeeping = now + Duration::from_secs(1);
            }
            self.housekeeping(now);
        }
        if self.resolver.poll_timeout().is_some_and(|t| now >= t) {
            self.resolve(now);
        }
        if self
            .links
            .as_ref()
            .and_then(|l| l.poll_timeout())
            .is_some_and(|t| now >= t)
        {
            self.links_changed(now);
        }
        if self.sync.resync.poll_timeout().is_some_and(|t| now >= t) {
            self.drain_resync(now);
        }
        if let Some(m) = &mut self.sync.master {
            let handles = self.workers.handles();
            if m.handle_timeout(
                now,
                handles
                    .iter()
                    .flat_map(|w| std::iter::from_fn(|| w.events.pop())),
            ) {
                for w in handles {
                    w.events.arm();
                }
            }
        }
        if let Some(c) = &mut self.checker
            && c.poll_timeout().is_some_and(|t| now >= t)
        {
            c.handle_timeout(now);
            self.apply_health();
        }
    }

    /// Whether a change that added realservers is still waiting for their next hops (for at
    /// most [`super::resolver::SETTLE`]): its answer, and the daemon's "ready", wait.
    pub fn settling(&self, now: Instant) -> bool {
        self.resolver.settling(now).is_some()
    }

    /// Follows bonds and the carriers of their members (`xlvsd` sets it at start).
    pub fn set_links(&mut self, links: crate::bond::links::Links) {
        self.links = Some(links);
    }

    /// The ports and bonds, if set.
    pub fn links(&self) -> Option<&crate::bond::links::Links> {
        self.links.as_ref()
    }

    /// A link changed (rtnetlink), or the kernel bonds' poll is due: if a bond's usable
    /// members changed, the snapshot carries the new egress at once.
    pub fn links_changed(&mut self, now: Instant) {
        let Some(mut l) = self.links.take() else {
            return;
        };
        for (leaf, logical) in l.joined() {
            let port = l.ports().len() as u8;
            match self.add_port(&leaf, port, logical) {
                Ok(()) => {
                    l.port_added(leaf);
                }
                Err(e) => log::error!("{leaf} joined a bond but cannot be used: {e:#}"),
            }
        }
        let changed = l.refresh(now).is_some();
        if changed {
            for (i, e) in self.ifaces.iter_mut().zip(l.egress()) {
                i.egress = e.clone();
            }
        }
        if changed {
            if let Err(e) = self.publish() {
                log::error!("publishing the new egress: {e:#}");
            }
            // The fast path's frames follow the workers' (after them: a frame the program
            // sends by the new ports meets workers that use them already).
            if let Err(e) = self.steering.set_egress(l.egress()) {
                log::error!("giving the XDP fast path the new egress: {e:#}");
            }
        }
        self.links = Some(l);
    }

    /// Binds a device that joined a bond and steers its frames to its new workers (before
    /// the egress uses it).
    fn add_port(&mut self, name: &str, port: u8, logical: u8) -> anyhow::Result<()> {
        if port as u32 >= xlvs_common::MAX_IFACES {
            anyhow::bail!("at most {} devices", xlvs_common::MAX_IFACES);
        }
        let before = self.workers.handles().len();
        let p = self.workers.add_port(name, port, logical)?;
        let listening = self
            .workers
            .handles()
            .first()
            .is_some_and(|w| w.events.listening());
        for w in &self.workers.handles()[before..] {
            if let Some(wake) = &self.waker {
                w.events.set_waker(wake.clone());
            }
            w.set_listening(listening);
        }
        self.steering.add_port(&p)?;
        self.attach(name, p.queues)?;
        Ok(())
    }

    /// Once a second: forget old fragment entries, drop retired realservers, estimate rates
    /// (connections expire in the workers).
    fn housekeeping(&mut self, _now: Instant) {
        self.tick += 1;
        if let Some((map, credit)) = &mut self.fast_path {
            credit.pass(&self.conns, || map.entries());
        }
        let gone = self.conns.expire_fragments(afxdp::now());
        if gone > 0 {
            log::debug!("forgot {gone} fragmented datagram(s)");
        }
        let reaped = self.table.reap_retired();
        if !self.gone.is_empty() {
            let gone = std::mem::take(&mut self.gone);
            let n = self.mark_gone(&gone);
            if n > 0 {
                log::info!("expire_nodest_conn: {n} more connection(s) of realservers gone");
            }
        }
        if self.tick.is_multiple_of(rates::ESTIMATOR_PERIOD_SECS) {
            self.table.estimate();
        }
        if reaped && let Err(e) = self.publish() {
            log::error!("updating XDP maps: {e:#}");
        }
        if self.tick.is_multiple_of(DRIFT_EVERY)
            && (self.sync.backup.is_some() || !self.drift.is_empty())
        {
            self.count_drift();
        }
    }

    /// Counts the connections from peers that could not bind here; logs a change.
    fn count_drift(&mut self) {
        let now = crate::sync::drift::unbound(&self.conns);
        if now != self.drift {
            if now.is_empty() {
                log::info!("config drift: every connection from the peers binds here again");
            } else {
                let list: Vec<String> = now
                    .iter()
                    .take(5)
                    .map(|((svc, rs), n)| format!("{svc} -> {rs}: {n}"))
                    .collect();
                log::warn!(
                    "config drift: {} connection(s) from peers name a service or realserver this director does not have ({}{})",
                    now.values().sum::<u64>(),
                    list.join(", "),
                    if now.len() > 5 { ", ..." } else { "" }
                );
            }
        }
        self.drift = now;
    }

    /// SIGHUP: re-reads `--rules` and `--keepalived-conf` and applies only what changed in
    /// what each file owns (health state of unchanged realservers kept). A file that cannot be
    /// read, parsed or applied changes nothing; the log says why and where.
    pub fn reload(&mut self, now: Instant) {
        if self.rules.is_none() && self.keepalived.is_none() {
            log::warn!("SIGHUP: no --rules or --keepalived-conf file to reload");
            return;
        }
        if let Some(path) = self.rules.clone() {
            match load_rules(&self.table, &path) {
                Ok(t) => self.reload_file(&t, &path, now, |_| {}),
                Err(e) => log::error!("reload failed, nothing changed: {e:#}"),
            }
        }
        if let Some(path) = self.keepalived.clone() {
            match load_keepalived(&self.table, &path) {
                // The checkers first, so that the table is published once, with their view.
                Ok((t, conf)) => self.reload_file(&t, &path, now, |ctl| {
                    if let Some(c) = &mut ctl.checker {
                        c.update(conf.services, now);
                        if let Some(o) = c.changed_overlay() {
                            ctl.table.set_health(o);
                        }
                    }
                }),
                Err(e) => log::error!("reload failed, nothing changed: {e:#}"),
            }
        }
    }

    /// Makes what `path` owns in the table what it is in `target`, runs `then` (before
    /// anything is published), and publishes. If the table refuses the change, nothing
    /// changes and `then` does not run.
    fn reload_file(
        &mut self,
        target: &ServiceTable,
        path: &Path,
        now: Instant,
        then: impl FnOnce(&mut Self),
    ) {
        let source = Source::File(path.to_path_buf());
        let diff = match self.table.reload(target, &source) {
            Ok(d) => d,
            Err(e) => {
                log::error!(
                    "reload failed, nothing changed: {}: {}",
                    path.display(),
                    e.msg
                );
                return;
            }
        };
        then(self);
        self.changed(now);
        if diff.is_empty() {
            log::info!("reload of {}: no change to the table", path.display());
            return;
        }
        log::info!(
            "reload of {}: {} change(s) applied",
            path.display(),
            diff.len()
        );
        for c in &diff {
            log::info!("  {c}");
        }
    }

    /// After the table changed: resolve new realservers' next hops, then publish.
    fn changed(&mut self, now: Instant) -> Option<CmdError> {
        self.resolve(now);
        self.publish().err().map(|e| {
            log::error!("updating the XDP maps: {e:#}");
            CmdError::op(format!("applied, but updating the XDP maps failed: {e:#}"))
        })
    }

    /// Executes one admin request (already decoded and validated, see
    /// [`Request::decode`]).
    pub fn execute(&mut self, req: &Request, now: Instant) -> Response {
        match self.run(req, now) {
            Ok(out) => Response::ok(out),
            Err(e) => Response::err(e),
        }
    }

    fn run(&mut self, req: &Request, now: Instant) -> Result<String, CmdError> {
        Ok(match &req.command {
            Command::List {
                key,
                format,
                exact,
                json,
                ..
            } => {
                if *json {
                    format!("{:#}\n", self.table.list_json(key.as_ref())?)
                } else {
                    self.table.list(key.as_ref(), *format, *exact)?
                }
            }
            Command::ListConns { persistent, json } => {
                let entries = conns::entries(&self.conns, afxdp::now());
                if *json {
                    format!("{:#}\n", conns::json(&entries))
                } else {
                    conns::text(&entries, *persistent)
                }
            }
            Command::VrrpNotify(n) => self.vrrp_notify(n, now)?,
            Command::Check => self.check()?,
            Command::ListDaemon { json } => {
                if *json {
                    let mut j = self.sync.json();
                    j["vrrp"] = self.vrrp_json();
                    self.count_drift();
                    j["injected"] = self
                        .inject_counts()
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                        .collect::<serde_json::Map<_, _>>()
                        .into();
                    j["unbound"] = self
                        .drift
                        .iter()
                        .map(|((svc, rs), n)| {
                            serde_json::json!({
                                "service": svc,
                                "realserver": rs.to_string(),
                                "connections": n,
                            })
                        })
                        .collect();
                    format!("{j:#}\n")
                } else {
                    self.sync.list()
                }
            }
            Command::Resync => {
                self.start_pull()?;
                String::new()
            }
            Command::StartDaemon(spec) => {
                let master = spec.role == crate::command::SyncRole::Master;
                self.daemon_specs.retain(|d| d.role != spec.role);
                self.daemon_specs.push(spec.clone());
                self.sync
                    .start(spec.clone(), now, &self.conns)
                    .map_err(|e| CmdError::op(format!("{e:#}")))?;
                // A director that starts syncing gets its peers' tables (once at a time).
                if !self.sync.resync_peers().is_empty()
                    && self.sync.resync.last().is_none_or(|p| p.finished())
                    && let Err(e) = self.start_pull()
                {
                    log::warn!("{}", e.msg);
                }
                if master {
                    for w in self.workers.handles() {
                        w.set_listening(true);
                    }
                }
                log::info!(
                    "started {}",
                    self.sync.list().lines().last().unwrap_or_default()
                );
                String::new()
            }
            Command::StopDaemon { role } => {
                if *role == crate::command::SyncRole::Master
                    && let Some(m) = &mut self.sync.master
                {
                    let handles = self.workers.handles();
                    m.finish(
                        handles
                            .iter()
                            .flat_map(|w| std::iter::from_fn(|| w.events.pop())),
                    );
                }
                self.sync
                    .stop(*role)
                    .map_err(|e| CmdError::op(format!("{e:#}")))?;
                if *role == crate::command::SyncRole::Master {
                    for w in self.workers.handles() {
                        w.set_listening(false);
                    }
                }
                log::info!("stopped the sync {} daemon", role.name());
                String::new()
            }
            Command::ListHealth { key, json } => {
                if let Some(k) = key
                    && self.table.source(k).is_none()
                {
                    return Err(CmdError::op("No such service"));
                }
                let rows = self
                    .checker
                    .as_ref()
                    .map(|c| c.rows(key.as_ref(), now))
                    .unwrap_or_default();
                if *json {
                    format!("{:#}\n", health::json(&rows))
                } else {
                    health::list(&rows)
                }
            }
            Command::Restore => {
                self.table
                    .apply_rules(&req.rules, &Source::Admin)
                    .map_err(|e| CmdError {
                        msg: format!("{e}; nothing restored"),
                        ..e.error
                    })?;
                if let Some(e) = self.changed(now) {
                    return Err(e);
                }
                log::info!("restored {} rule(s)", req.rules.len());
                String::new()
            }
            Command::Zero { key } => {
                self.table.zero(key.as_ref())?;
                String::new()
            }
            Command::Save { .. } => self.table.save(),
            Command::ListTimeouts => self.table.list_timeouts(),
            Command::Workers => report::workers(
                self.workers.handles(),
                self.conns.len(),
                self.links.as_ref(),
            ),
            Command::XdpStats => report::xdp(self.steering.counters()),
            Command::Help => ipvsadm::HELP.to_string(),
            Command::Version => ipvsadm::version(),
            cmd => {
                let owner = self.file_owner(cmd);
                self.table
                    .apply_all(std::slice::from_ref(cmd), &Source::Admin)
                    .map_err(|(_, e)| e)?;
                if let Some(e) = self.changed(now) {
                    return Err(e);
                }
                log::info!("applied: {cmd}");
                if let Some(file) = owner {
                    log::warn!(
                        "`{cmd}` changed what {file} configures: its next reload restores the file's version"
                    );
                }
                String::new()
            }
        })
    }

    /// The file that owns what an edit changes, if a file does.
    fn file_owner(&self, cmd: &Command) -> Option<Source> {
        let key = match cmd {
            Command::EditService { key, .. }
            | Command::DelService { key }
            | Command::AddDest { key, .. }
            | Command::EditDest { key, .. }
            | Command::DelDest { key, .. } => key,
            Command::Clear => {
                return self
                    .table
                    .services()
                    .map(|(_, s)| &s.source)
                    .find(|s| **s != Source::Admin)
                    .cloned();
            }
            _ => return None,
        };
        self.table
            .source(key)
            .filter(|s| **s != Source::Admin)
            .cloned()
    }

    /// The Prometheus exposition.
    pub fn metrics(&self) -> String {
        let mut e = metrics::Exposition::default();
        metrics::table(&mut e, &self.table);
        metrics::workers(&mut e, self.workers.handles());
        if let Some(l) = &self.links {
            metrics::ports(&mut e, self.workers.handles(), l);
        }
        metrics::globals(
            &mut e,
            self.steering.counters(),
            self.conns.len(),
            self.conns.templates(),
        );
        if let Some(c) = &self.checker {
            c.metrics(&mut e, Instant::now());
        }
        let handles = self.workers.handles();
        let drops = handles.iter().map(|w| w.events.events_dropped()).sum();
        let queued = handles.iter().map(|w| w.events.len() as u64).sum();
        self.sync.metrics(&mut e, drops, queued);
        for (result, v) in self.inject_counts() {
            e.sample(
                "sync_injected_total",
                "counter",
                "Entries learned from peers (sync, resync) by what the workers did with them: inserted or updated, refused by a full queue, failed, or a conflict with a connection held here at another realserver, kept or taken.",
                "",
                &[("result", result.to_string())],
                v.to_string(),
            );
        }
        for ((svc, rs), n) in &self.drift {
            e.sample(
                "sync_unbound_connections",
                "gauge",
                "Connections from peers that could not bind here (no such service or realserver: configuration drift).",
                "",
                &[("service", svc.clone()), ("realserver", rs.to_string())],
                n.to_string(),
            );
        }
        if let Some((n, _)) = &self.vrrp {
            e.sample(
                "vrrp_state",
                "gauge",
                "The VRRP state keepalived last reported (1 for that state).",
                "",
                &[("state", n.state.name().to_string())],
                "1".to_string(),
            );
        }
        e.render()
    }
}

/// A table with the rules of `path` applied to an empty one like `like`, owned by the file.
pub fn load_rules(like: &ServiceTable, path: &Path) -> anyhow::Result<ServiceTable> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading rules file {}", path.display()))?;
    let rules = ipvsadm::parse_rules_numbered(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut t = like.empty_like();
    t.apply_rules(&rules, &Source::File(path.to_path_buf()))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(t)
}

/// A table with the services of keepalived.conf `path` applied to an empty one like `like`,
/// owned by the file, and the file's health checking. Warnings (unknown keywords) are logged.
pub fn load_keepalived(
    like: &ServiceTable,
    path: &Path,
) -> anyhow::Result<(ServiceTable, crate::keepalived::Config)> {
    let conf = crate::keepalived::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &conf.warnings {
        log::warn!("{w}");
    }
    let mut t = like.empty_like();
    t.apply_all(&conf.commands, &Source::File(path.to_path_buf()))
        .map_err(|(i, e)| match i.and_then(|i| conf.commands.get(i)) {
            Some(c) => anyhow::anyhow!("{}: `{c}`: {}", path.display(), e.msg),
            None => anyhow::anyhow!("{}: {}", path.display(), e.msg),
        })?;
    Ok((t, conf))
}

/// Housekeeping rounds (seconds) between two counts of the configuration drift.
const DRIFT_EVERY: u64 = 10;

/// Hands entries learned from peers to the workers: each to the worker of its client (a
/// connection and its template meet there), with the client's next hop when the kernel
/// knows it; notes the clients whose hop it does not (a few distinct ones: their next hops
/// are what matters, and most share a gateway), and wakes each worker it fed once.
struct Injector<'a> {
    handles: &'a [WorkerHandle],
    resolver: &'a Resolver,
    names: &'a [String],
    touched: Vec<bool>,
    missing: Vec<IpAddr>,
}

impl<'a> Injector<'a> {
    fn new(handles: &'a [WorkerHandle], resolver: &'a Resolver, names: &'a [String]) -> Self {
        Injector {
            handles,
            resolver,
            names,
            touched: vec![false; handles.len()],
            missing: Vec::new(),
        }
    }

    /// Hands `s` to its worker; false if the worker's queue is full.
    fn inject(&mut self, mut s: xlvs_dataplane::core::inject::Spec) -> bool {
        if let xlvs_dataplane::core::inject::Spec::Conn(c) = &mut s
            && c.client_hop.is_none()
        {
            c.client_hop = self.resolver.next_hop(self.names, c.caddr);
            let a = c.caddr;
            if c.client_hop.is_none()
                && self.missing.len() < 256
                && self.missing.last() != Some(&a)
                && !self.missing.contains(&a)
            {
                self.missing.push(a);
            }
        }
        let w = worker_of(&s, self.handles.len());
        let ok = self.handles[w].inject(s);
        self.touched[w] |= ok;
        ok
    }

    /// Wakes the workers it fed; the clients whose hop was missing.
    fn finish(self) -> Vec<IpAddr> {
        for (w, t) in self.handles.iter().zip(self.touched) {
            if t {
                w.wake();
            }
        }
        self.missing
    }
}

/// The worker a synced entry goes to: by its client, so a connection and its template (same
/// client address) go to the same one.
fn worker_of(s: &xlvs_dataplane::core::inject::Spec, n: usize) -> usize {
    use std::hash::{Hash, Hasher};
    use xlvs_dataplane::core::inject::Spec;
    let caddr = match s {
        Spec::Conn(c) => c.caddr,
        Spec::Template(t) => t.key.caddr,
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    caddr.hash(&mut h);
    (h.finish() % n as u64) as usize
}
