//! xlvsd: attaches the XDP program, runs the AF_XDP workers, and owns the services table in a
//! control thread that serves the admin socket and follows the kernel's routes, neighbours and
//! addresses (the workers expire connections).
//!
//! - [`control`]: [`Control`], the control thread's state and verbs, built from parts behind
//!   traits so it is tested without root;
//! - [`event_loop`]: the sources that feed it and the deadlines it sleeps until;
//! - [`resolver`]: realservers' next hops, without waiting;
//! - [`report`]: xlvs's own listings.
//!
//! Where the next features plug in: a health checker is one more source of the event loop (its
//! probes' sockets and timers) whose results [`Control`] applies as an overlay on the
//! realservers before [`Control`] publishes; connection sync adds its sockets as sources and
//! reads the workers' connection-event outboxes on its timer; keepalived's notify reaches
//! [`Control`] as an admin request.

pub mod control;
pub mod event_loop;
pub mod report;
pub mod resolver;

/// Whether every one of these ports takes XDP redirects, as the XDP fast path needs: a port
/// whose driver does not (`ndo_xdp_xmit`; a veth whose peer has neither GRO nor an XDP
/// program) would drop every frame the program sends out of it.
#[derive(Debug, PartialEq, Eq)]
enum Redirects {
    /// The kernel says every port does.
    Yes,
    /// The kernel says this one does not (why, naming it).
    No(String),
    /// The kernel cannot say for this one (before Linux 6.3).
    Unknown(String),
}

fn redirects(specs: &[IfaceSpec]) -> Redirects {
    let mut unknown = None;
    for s in specs {
        match crate::xdp_features::takes_redirects(s.ifindex) {
            Ok(Some(false)) => {
                return Redirects::No(format!(
                    "{} takes no XDP redirects (its driver does not advertise ndo_xdp_xmit; a veth: turn GRO on on its peer, `ethtool -K PEER gro on`), so the frames of offloaded connections leaving by it would be dropped",
                    s.name
                ));
            }
            Ok(Some(true)) => {}
            Ok(None) => {
                unknown.get_or_insert_with(|| {
                    format!(
                        "the kernel does not say whether {} takes XDP redirects (the netdev family's XDP features came with Linux 6.3)",
                        s.name
                    )
                });
            }
            Err(e) => {
                unknown.get_or_insert_with(|| {
                    format!("asking whether {} takes XDP redirects: {e}", s.name)
                });
            }
        }
    }
    unknown.map_or(Redirects::Yes, Redirects::Unknown)
}

/// Whether to turn the fast path on, and what to say about it: `asked` is `--offload`
/// (Some(true)), `--no-offload` (Some(false)) or neither (on where the kernel says every
/// port takes XDP redirects, `can`).
fn fast_path(asked: Option<bool>, can: impl FnOnce() -> Redirects) -> (bool, log::Level, String) {
    use log::Level::{Error, Info, Warn};
    const ON: &str = "XDP fast path on: established TCP connections (and UDP flows) are forwarded by the XDP program";
    if asked == Some(false) {
        return (false, Info, "XDP fast path off (--no-offload)".into());
    }
    match (can(), asked) {
        (Redirects::Yes, _) => (true, Info, ON.into()),
        (Redirects::No(why), Some(true)) => (false, Error, format!("XDP fast path off: {why}")),
        (Redirects::No(why), _) => (false, Info, format!("XDP fast path off: {why}")),
        // Asked for: the operator's word.
        (Redirects::Unknown(why), Some(true)) => {
            (true, Warn, format!("{ON} as asked (--offload), but {why}"))
        }
        (Redirects::Unknown(why), _) => (
            false,
            Info,
            format!("XDP fast path off: {why}; --offload turns it on"),
        ),
    }
}

#[cfg(test)]
mod tests;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context as _, bail};
use arc_swap::ArcSwap;
use xlvs_dataplane::afxdp::{self, Dataplane, IfaceSpec, WorkerHandle, XskConfig};
use xlvs_dataplane::core::conn::Tables;
use xlvs_dataplane::core::sched::{self, SchedConfig};
use xlvs_dataplane::core::service::IfaceInfo;
use xlvs_dataplane::core::stats;

pub use control::{Control, Parts, Steering, Workers};

use crate::daemon::control::NewPort;
use crate::table::ServiceTable;
use crate::{bond, health, metrics, netlink, restart, sys, xdp};

/// xlvsd's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Interfaces to drive (plain, or kernel bonds whose members are found in sysfs).
    pub ifaces: Vec<String>,
    /// Bonds declared with `--bond` (no kernel bond, or another aggregation).
    pub bonds: Vec<crate::bond::BondSpec>,
    /// An `ipvsadm -S -n` rules file applied at start.
    pub rules: Option<PathBuf>,
    /// A keepalived.conf whose virtual servers are applied at start and health checked.
    pub keepalived: Option<PathBuf>,
    /// The admin socket.
    pub control: PathBuf,
    /// A group whose members may connect to it (and run the commands that only read).
    pub control_group: Option<String>,
    /// Where XDP links are pinned (none: not pinned).
    pub pin_dir: Option<PathBuf>,
    /// Where an orderly stop saves the connection table for the next xlvsd.
    pub state_dir: PathBuf,
    /// How long after an orderly stop the pinned program keeps the services' frames from
    /// the kernel, waiting for the next xlvsd (zero: an orderly stop detaches XDP).
    pub restart_hold: std::time::Duration,
    /// Most connections the table holds; new ones beyond are dropped and counted.
    pub max_conns: usize,
    /// Most half-open connections (all workers), the oldest making room beyond.
    pub max_syn_recv: usize,
    /// AF_XDP sizes.
    pub xsk: XskConfig,
    /// Scheduler settings (the Maglev table size).
    pub sched: SchedConfig,
    /// `--metrics ADDR:PORT`: serve Prometheus metrics there (off when None).
    pub metrics: Option<std::net::SocketAddr>,
    /// IPVS `expire_nodest_conn`.
    pub expire_nodest_conn: bool,
    /// The XDP fast path for established connections: `--offload` (Some(true)),
    /// `--no-offload` (Some(false)), or on where every port takes XDP redirects (None).
    pub offload: Option<bool>,
    /// Connection sync daemons to start (`--start-daemon`).
    pub sync: Vec<crate::command::DaemonSpec>,
    /// The sync settings beyond ipvsadm's.
    pub sync_opts: crate::sync::daemon::SyncOptions,
    /// How the sync daemons follow keepalived's VRRP state.
    pub sync_roles: crate::vrrp::SyncRoles,
}

/// The AF_XDP workers, as [`Control`] sees them.
struct AfXdpWorkers {
    handles: Vec<WorkerHandle>,
    stop: Arc<AtomicBool>,
    hotplug: afxdp::Hotplug,
}

impl Workers for AfXdpWorkers {
    fn handles(&self) -> &[WorkerHandle] {
        &self.handles
    }

    fn stop(&mut self) {
        afxdp::stop_all(&self.stop, &self.handles);
        for w in self.handles.iter_mut() {
            w.join();
        }
    }

    fn add_port(&mut self, name: &str, port: u8, logical: u8) -> anyhow::Result<NewPort> {
        let f = sys::iface(name)?;
        let queues = f.rx_queues.min(xlvs_common::MAX_QUEUES);
        let spec = IfaceSpec {
            id: port,
            name: name.to_string(),
            queues,
            logical,
            ifindex: f.ifindex,
        };
        let added = self
            .hotplug
            .add_port(&spec)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.handles.extend(added.handles);
        let sockets = added.sockets;
        Ok(NewPort {
            name: name.to_string(),
            port,
            ifindex: f.ifindex,
            queues,
            sockets,
        })
    }
}

/// Runs xlvsd until SIGINT/SIGTERM.
pub fn run(cfg: Config) -> anyhow::Result<()> {
    let missing = sys::missing_caps();
    if !missing.is_empty() {
        bail!(
            "missing capabilities {} (XDP programs and AF_XDP sockets need CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW; run as root or grant them, as the xlvsd.service unit does)",
            missing.join(", ")
        );
    }
    if cfg.ifaces.is_empty() && cfg.bonds.is_empty() {
        bail!("no interface given (--iface IF or --bond BOND=MEMBER,...)");
    }
    let sysfs_root = std::path::Path::new(bond::sysfs::ROOT);
    let plan = bond::plan(&cfg.ifaces, &cfg.bonds, sysfs_root)?;
    if plan.ports.len() > xlvs_common::MAX_IFACES as usize {
        bail!(
            "at most {} devices (interfaces and bond members)",
            xlvs_common::MAX_IFACES
        );
    }
    // The logical interfaces (what routes and neighbours name) and the ports (the devices
    // with sockets: plain interfaces and bond members).
    let logical = plan
        .logical
        .iter()
        .map(|n| sys::iface(n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ifaces = plan
        .ports
        .iter()
        .map(|(n, _)| sys::iface(n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for b in plan.bonds.specs() {
        log::info!(
            "bond {}: {} over {} (xmit_hash_policy {}{})",
            b.name,
            b.mode.name(),
            b.members.join(", "),
            b.hash.name(),
            if cfg.bonds.iter().any(|d| d.name == b.name) {
                ""
            } else {
                ", from sysfs"
            }
        );
    }
    if !sched::is_prime(cfg.sched.mh_table_size) {
        bail!("--mh-table-size {} is not a prime", cfg.sched.mh_table_size);
    }
    let specs: Vec<IfaceSpec> = ifaces
        .iter()
        .enumerate()
        .map(|(i, f)| IfaceSpec {
            id: i as u8,
            name: f.name.clone(),
            queues: f.rx_queues.min(xlvs_common::MAX_QUEUES),
            logical: plan.ports[i].1,
            ifindex: f.ifindex,
        })
        .collect();
    // One worker per (interface, RX queue): each counts in its own shard of every
    // realserver's counters, so the shards must exist before the first realserver does.
    // One more, the control thread's: what the XDP fast path forwarded.
    stats::set_shards(
        specs.iter().map(|s| s.queues as usize).sum::<usize>() + cfg.xsk.spare_sockets as usize + 1,
    );
    let mut table = ServiceTable::new(cfg.sched);
    if let Some(path) = &cfg.rules {
        table = control::load_rules(&table, path)?;
    }
    // The keepalived.conf's services join the rules' (all or nothing, like a reload).
    let keepalived = match &cfg.keepalived {
        Some(path) => {
            let (_, conf) = control::load_keepalived(&table, path)?;
            table
                .apply_all(&conf.commands, &crate::table::Source::File(path.clone()))
                .map_err(|(i, e)| match i.and_then(|i| conf.commands.get(i)) {
                    Some(c) => anyhow::anyhow!("{}: `{c}`: {}", path.display(), e.msg),
                    None => anyhow::anyhow!("{}: {}", path.display(), e.msg),
                })?;
            Some((path.clone(), conf))
        }
        None => None,
    };
    let keepalived_daemons = keepalived
        .as_ref()
        .map(|(_, c)| c.sync_daemons.clone())
        .unwrap_or_default();
    let signals = sys::SignalFd::install().context("signal handlers")?;
    sys::raise_memlock();
    sys::raise_nofile();

    let mut steering = xdp::XdpSteering::load(cfg.pin_dir.as_deref().and_then(pin_dir))?;
    let mut xsk = cfg.xsk;
    let mut offload_fd = None;
    let (on, level, what) = fast_path(cfg.offload, || redirects(&specs));
    log::log!(level, "{what}");
    if on {
        xsk.offload_map = Some(steering.offload_fd());
        offload_fd = Some(steering.offload_fd());
    }
    let sockets = specs
        .iter()
        .map(|s| s.queues as usize)
        .sum::<usize>()
        .max(1);
    xsk.syn_recv_per_worker = match cfg.max_syn_recv {
        0 => 0,
        n => n.div_ceil(sockets).max(256),
    };
    let dp = Dataplane::bind(&specs, xsk).map_err(|e| anyhow::anyhow!("{e}"))?;
    for (id, q, fd) in dp.sockets() {
        steering.set_socket(id as u32, q, fd)?;
    }
    for (i, f) in ifaces.iter().enumerate() {
        steering.set_iface(f.ifindex, i as u32, specs[i].queues)?;
    }
    let links = bond::links::Links::new(
        plan.bonds,
        plan.logical.clone(),
        plan.ports.iter().map(|(n, _)| n.clone()).collect(),
        Box::new(bond::links::Sysfs(sysfs_root.into())),
        plan.kernel,
        Instant::now(),
    );
    let infos: Vec<IfaceInfo> = logical
        .iter()
        .zip(links.egress())
        .map(|(f, e)| IfaceInfo {
            name: f.name.clone(),
            ifindex: f.ifindex,
            mac: f.mac,
            egress: e.clone(),
        })
        .collect();
    steering.set_egress(links.egress())?;
    let snapshot = Arc::new(ArcSwap::from_pointee(table.snapshot(&infos)));
    let conns = Arc::new(Tables::new(cfg.max_conns));
    let huge = afxdp::advise_huge_pages(&conns.regions());
    log::debug!("connection tables: {huge} region(s) advised to use huge pages");
    let stop = Arc::new(AtomicBool::new(false));
    let (handles, hotplug) = dp
        .run(conns.clone(), snapshot.clone(), stop.clone())
        .context("starting workers")?;
    let nworkers = handles.len();
    let nthreads = handles.iter().map(|w| w.thread + 1).max().unwrap_or(0);

    // The loop first: the metrics thread needs its waker.
    let mut event_loop = event_loop::EventLoop::new().context("event loop")?;
    let netlink = netlink::Events::subscribe()
        .map_err(|e| log::warn!("rtnetlink notifications: {e}; next hops by retry timers only"))
        .ok();
    let mut ctl = Control::new(
        table,
        Parts {
            steering: Box::new(steering),
            workers: Box::new(AfXdpWorkers {
                handles,
                stop,
                hotplug,
            }),
            system: Box::new(resolver::Kernel),
            snapshot,
            conns,
            ifaces: infos,
        },
        cfg.rules.clone(),
        Instant::now(),
    );
    ctl.set_expire_nodest_conn(cfg.expire_nodest_conn);
    if let Some(fd) = offload_fd {
        ctl.set_fast_path(xlvs_dataplane::offload_map::OffloadMap::new(fd));
    }
    ctl.set_links(links);
    ctl.set_sync_options(cfg.sync_opts.clone());
    ctl.set_sync_roles(cfg.sync_roles);
    {
        let waker = event_loop.waker();
        ctl.set_waker(Arc::new(move || {
            let _ = waker.wake();
        }));
    }
    if let Some((path, conf)) = keepalived {
        let waker = event_loop.waker();
        let prober = health::probe::Prober::start(conf.scripts.clone(), move || {
            let _ = waker.wake();
        })
        .context("starting the health checks' runtime")?;
        let n = conf.services.iter().map(|s| s.reals.len()).sum::<usize>();
        let checker = health::driver::Checker::new(conf.services, Box::new(prober), Instant::now());
        log::info!(
            "{}: {} health checker(s) over {n} realserver(s)",
            path.display(),
            checker.len()
        );
        ctl.set_checker(checker, path);
    }
    // The snapshot and the steering maps first: a frame is steered only once the workers
    // know its service.
    ctl.start(Instant::now())?;
    // Then the table the last xlvsd saved, all of it in the workers before the program swap
    // sends them their first frame.
    restore_table(&cfg, &mut ctl, &ifaces);
    for f in &ifaces {
        ctl.attach(&f.name, f.rx_queues)?;
    }
    // keepalived.conf's lvs_sync_daemon, for the roles the command line does not start.
    let mut daemons = cfg.sync.clone();
    for d in keepalived_daemons {
        if !daemons.iter().any(|c| c.role == d.role) {
            daemons.push(d);
        }
    }
    for spec in &daemons {
        let req = crate::admin::Request::new(crate::command::Command::StartDaemon(spec.clone()));
        let r = ctl.execute(&req, Instant::now());
        if r.code != 0 {
            bail!(
                "--start-daemon {}: {}",
                spec.role.name(),
                r.stderr.trim_end()
            );
        }
    }

    if let Some(dir) = cfg.control.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::remove_file(&cfg.control);
    let gid = match &cfg.control_group {
        Some(g) => {
            Some(sys::group_id(g).with_context(|| format!("--control-group {g}: no such group"))?)
        }
        None => None,
    };
    // Created 0600 (no moment with a looser mode), then opened to the group if asked.
    // SAFETY: umask has no preconditions; no other thread creates files meanwhile.
    let old_mask = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(&cfg.control);
    // SAFETY: as above.
    unsafe { libc::umask(old_mask) };
    let listener =
        bound.with_context(|| format!("binding the control socket {}", cfg.control.display()))?;
    sys::control_socket_access(&cfg.control, gid)
        .with_context(|| format!("the control socket's mode {}", cfg.control.display()))?;
    listener.set_nonblocking(true)?;
    // Scrapes are served by their own thread; the control loop renders their bodies.
    let (scrape_tx, scrapes) = std::sync::mpsc::sync_channel::<metrics::Scrape>(4);
    if let Some(addr) = cfg.metrics {
        let l = TcpListener::bind(addr)
            .with_context(|| format!("binding the metrics address {addr}"))?;
        let waker = event_loop.waker();
        metrics::spawn_server(l, scrape_tx, move || {
            let _ = waker.wake();
        })
        .context("starting the metrics thread")?;
        log::info!("Prometheus metrics on http://{addr}/metrics");
    } else {
        drop(scrape_tx);
    }
    let sources = event_loop::Sources {
        listener: mio::net::UnixListener::from_std(listener),
        signals,
        netlink,
        scrapes,
    };
    let (names, socket) = (plan.logical.join(", "), cfg.control.display().to_string());
    // Running: from here a crash (or a panic) leaves the pinned XDP program dropping the
    // virtual services' frames until keepalived moves the VIPs.
    ctl.steering_stays(true);
    event_loop.run(&mut ctl, sources, || {
        eprintln!(
            "xlvsd: ready: {nworkers} worker(s) in {nthreads} thread(s) on {names}; control socket {socket}"
        );
        // systemd (Type=notify): XDP is attached and the workers run.
        sys::sd_notify("READY=1");
    })?;

    sys::sd_notify("STOPPING=1");
    log::info!("stopping");
    ctl.steering_stays(false);
    ctl.stop();
    if !cfg.restart_hold.is_zero() {
        let path = restart::state_file(&cfg.state_dir);
        let hold = cfg.restart_hold.as_millis();
        match ctl.leave_for_restart(&path, cfg.restart_hold) {
            Ok(Some(n)) => log::info!(
                "{n} connection table entries saved to {}; XDP stays attached, keeping the services' frames from the kernel for {hold} ms while xlvsd restarts",
                path.display()
            ),
            Ok(None) => {
                log::info!("XDP links not pinned: detaching (no restart keeps the connections)")
            }
            Err(e) => log::warn!(
                "saving the connection table to {}: {e:#}; XDP stays attached for {hold} ms",
                path.display()
            ),
        }
    }
    drop(ctl); // detaches XDP, unless left for a restart
    let _ = std::fs::remove_file(&cfg.control);
    eprintln!("xlvsd: stopped");
    Ok(())
}

/// Hands the workers the table an orderly stop saved, if the program it left is still
/// pinned on one of our interfaces (else the file is stale: its frames went to the kernel).
fn restore_table(cfg: &Config, ctl: &mut Control, ifaces: &[sys::Iface]) {
    let path = restart::state_file(&cfg.state_dir);
    let pinned = cfg.pin_dir.as_deref().is_some_and(|d| {
        ifaces
            .iter()
            .any(|f| xdp::pin_path(d, &f.name).is_some_and(|p| p.exists()))
    });
    if !pinned {
        if path.exists() {
            log::info!(
                "{}: no XDP program left pinned for it; a stale table, removed",
                path.display()
            );
            let _ = std::fs::remove_file(&path);
        }
        return;
    }
    let r = match restart::load(&path, afxdp::now()) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            log::warn!("the saved connection table: {e:#}; starting with an empty one");
            return;
        }
    };
    let t = Instant::now();
    let (inserted, not) = ctl.restore(&r.specs, std::time::Duration::from_secs(30));
    log::info!(
        "connection table from {} (saved {} ms ago): {inserted} entries back in {} ms, {not} not inserted, {} timed out meanwhile, {} refused",
        path.display(),
        r.age.as_millis(),
        t.elapsed().as_millis(),
        r.expired,
        r.refused
    );
}

/// The pin directory if it can hold pins (created on a bpffs if missing), else a warning.
fn pin_dir(dir: &std::path::Path) -> Option<PathBuf> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    if let Err(e) = std::fs::create_dir_all(dir) {
        log::warn!(
            "--pin-dir {}: {e}; XDP links not pinned (a crashed xlvsd leaves the VIPs' frames to the kernel)",
            dir.display()
        );
        return None;
    }
    if sys::fs_magic(dir) != Some(BPF_FS_MAGIC) {
        log::warn!(
            "--pin-dir {}: not on a bpffs (mount -t bpf bpf /sys/fs/bpf); XDP links not pinned (a crashed xlvsd leaves the VIPs' frames to the kernel)",
            dir.display()
        );
        return None;
    }
    Some(dir.to_path_buf())
}
