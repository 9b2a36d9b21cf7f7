//! xlvsd: attaches the XDP program, runs the AF_XDP workers, and owns the services table in a
//! control loop that serves the admin socket and follows the kernel's routes and neighbour
//! tables (the workers expire connections).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant as StdInstant};

use anyhow::{Context as _, bail};
use arc_swap::ArcSwap;
use xlvs_common::AddrKey;
use xlvs_dataplane::afxdp::{self, Dataplane, IfaceSpec, WorkerHandle, XskConfig};
use xlvs_dataplane::core::DropReason;
use xlvs_dataplane::core::conn::Tables;
use xlvs_dataplane::core::sched::{self, SchedConfig};
use xlvs_dataplane::core::service::{DestState, IfaceInfo, NextHop, Snapshot};
use xlvs_dataplane::core::stats;

use crate::admin::{self, Response};
use crate::ipvsadm::{self, CmdError, Command};
use crate::table::Table;
use crate::{conns, metrics, neigh, stats as rates, sys, xdp};

/// xlvsd's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Interfaces to drive.
    pub ifaces: Vec<String>,
    /// An `ipvsadm -S -n` rules file applied at start.
    pub rules: Option<PathBuf>,
    /// The admin socket.
    pub control: PathBuf,
    /// Most connections the table holds; new ones beyond are dropped and counted.
    pub max_conns: usize,
    /// AF_XDP sizes.
    pub xsk: XskConfig,
    /// Scheduler settings (the Maglev table size).
    pub sched: SchedConfig,
    /// `--metrics ADDR:PORT`: serve Prometheus metrics there (off when None).
    pub metrics: Option<std::net::SocketAddr>,
}

/// State of the running daemon's control thread.
struct Control {
    table: Table,
    snapshot: Arc<ArcSwap<Snapshot>>,
    conns: Arc<Tables>,
    ifaces: Vec<sys::Iface>,
    infos: Vec<IfaceInfo>,
    xdp: xdp::XdpSteering,
    workers: Vec<WorkerHandle>,
    tick: u64,
    /// `--rules`: re-read on SIGHUP.
    rules: Option<PathBuf>,
}

/// Runs xlvsd until SIGINT/SIGTERM.
pub fn run(cfg: Config) -> anyhow::Result<()> {
    if !sys::is_root() {
        bail!(
            "must run as root (XDP programs and AF_XDP sockets need CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW)"
        );
    }
    if cfg.ifaces.is_empty() {
        bail!("no interface given (--iface IF)");
    }
    if cfg.ifaces.len() > xlvs_common::MAX_IFACES as usize {
        bail!("at most {} interfaces", xlvs_common::MAX_IFACES);
    }
    let mut ifaces = Vec::new();
    for name in &cfg.ifaces {
        if ifaces.iter().any(|i: &sys::Iface| &i.name == name) {
            bail!("interface {name} given twice");
        }
        ifaces.push(sys::iface(name)?);
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
        })
        .collect();
    // One worker per (interface, RX queue): each counts in its own shard of every
    // realserver's counters, so the shards must exist before the first realserver does.
    stats::set_shards(specs.iter().map(|s| s.queues as usize).sum());
    let mut table = Table::new(cfg.sched);
    if let Some(path) = &cfg.rules {
        table = load_rules(&table, path)?;
    }
    sys::install_signal_handlers();
    sys::raise_memlock();

    let mut steering = xdp::XdpSteering::load()?;
    let dp = Dataplane::bind(&specs, cfg.xsk).map_err(|e| anyhow::anyhow!("{e}"))?;
    for (id, q, fd) in dp.sockets() {
        steering.set_socket(id as u32, q, fd)?;
    }
    for (i, f) in ifaces.iter().enumerate() {
        steering.set_iface(f.ifindex, i as u32, specs[i].queues)?;
    }
    let infos: Vec<IfaceInfo> = ifaces
        .iter()
        .map(|f| IfaceInfo {
            name: f.name.clone(),
            ifindex: f.ifindex,
            mac: f.mac,
        })
        .collect();
    let snapshot = Arc::new(ArcSwap::from_pointee(table.snapshot(&infos)));
    let conns = Arc::new(Tables::new(cfg.max_conns));
    let huge = afxdp::advise_huge_pages(&conns.regions());
    log::debug!("connection tables: {huge} region(s) advised to use huge pages");
    let stop = Arc::new(AtomicBool::new(false));
    let workers = dp
        .run(conns.clone(), snapshot.clone(), stop.clone())
        .context("starting workers")?;

    let mut ctl = Control {
        table,
        snapshot,
        conns,
        ifaces,
        infos,
        xdp: steering,
        workers,
        tick: 0,
        rules: cfg.rules.clone(),
    };
    ctl.resolve_neighbours(true);
    ctl.publish()?;
    for f in &ctl.ifaces {
        let mode = ctl.xdp.attach(&f.name)?;
        log::info!(
            "XDP attached to {} ({:?} mode), {} RX queue(s)",
            f.name,
            mode,
            f.rx_queues
        );
    }

    if let Some(dir) = cfg.control.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::remove_file(&cfg.control);
    let listener = UnixListener::bind(&cfg.control)
        .with_context(|| format!("binding the control socket {}", cfg.control.display()))?;
    listener.set_nonblocking(true)?;
    // Scrapes are served by their own thread; the control loop renders their bodies.
    let (scrape_tx, scrapes) = std::sync::mpsc::sync_channel::<metrics::Scrape>(4);
    if let Some(addr) = cfg.metrics {
        let l = TcpListener::bind(addr)
            .with_context(|| format!("binding the metrics address {addr}"))?;
        metrics::spawn_server(l, scrape_tx).context("starting the metrics thread")?;
        log::info!("Prometheus metrics on http://{addr}/metrics");
    } else {
        drop(scrape_tx);
    }
    eprintln!(
        "xlvsd: ready: {} worker(s) in {} thread(s) on {}; control socket {}",
        ctl.workers.len(),
        ctl.workers.iter().map(|w| w.thread + 1).max().unwrap_or(0),
        cfg.ifaces.join(", "),
        cfg.control.display()
    );

    let mut last_tick = StdInstant::now();
    while !sys::stop_requested() {
        // Once a second on average, whatever the control traffic (the rate estimator counts
        // on its period being 2 s).
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick += Duration::from_secs(1);
            ctl.housekeeping();
        }
        if sys::reload_requested() {
            ctl.reload();
        }
        while let Ok(reply) = scrapes.try_recv() {
            let _ = reply.send(ctl.metrics());
        }
        match listener.accept() {
            Ok((s, _)) => {
                let _ = s.set_nonblocking(false);
                match admin::read_request(&s) {
                    Ok(req) => {
                        let resp = ctl.execute(&req.args, req.input.as_deref());
                        let _ = admin::write_response(&s, &resp);
                    }
                    Err(e) => log::warn!("bad control request: {e}"),
                }
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => log::warn!("control socket: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    log::info!("stopping");
    stop.store(true, Ordering::SeqCst);
    for w in ctl.workers.iter_mut() {
        w.join();
    }
    drop(ctl); // detaches XDP
    let _ = std::fs::remove_file(&cfg.control);
    eprintln!("xlvsd: stopped");
    Ok(())
}

impl Control {
    /// Publishes the table: the workers' snapshot first, then the XDP steering maps, so a
    /// frame is steered only once the workers know its service.
    fn publish(&mut self) -> anyhow::Result<()> {
        self.snapshot
            .store(Arc::new(self.table.snapshot(&self.infos)));
        let (vips, reals) = self.table.steer_keys();
        let local: Vec<AddrKey> = sys::local_addrs().into_iter().map(AddrKey::ip).collect();
        self.xdp.sync(&vips, &reals, &local)
    }

    /// Once a second: forget old fragment entries, drop retired realservers, follow neighbours
    /// (connections expire in the workers).
    fn housekeeping(&mut self) {
        self.tick += 1;
        // Connections and templates expire in the workers' timing wheels; fragments here.
        let gone = self.conns.expire_fragments(afxdp::now());
        if gone > 0 {
            log::debug!("forgot {gone} fragmented datagram(s)");
        }
        let reaped = self.table.reap_retired();
        if self.tick.is_multiple_of(rates::ESTIMATOR_PERIOD_SECS) {
            self.table.estimate();
        }
        self.resolve_neighbours(false);
        if (reaped || self.tick.is_multiple_of(5))
            && let Err(e) = self.publish()
        {
            log::error!("updating XDP maps: {e:#}");
        }
    }

    /// Updates every realserver's next hop from the kernel's tables; probes unresolved ones
    /// (and all of them every 10 s, so the kernel keeps its entries fresh). With `wait`,
    /// gives the kernel up to a second to answer the probes.
    fn resolve_neighbours(&mut self, wait: bool) {
        let routes = neigh::routes();
        let dests: Vec<_> = self
            .table
            .all_dests()
            .map(|d| (d.addr, d.state.clone()))
            .collect();
        let deadline = StdInstant::now() + Duration::from_secs(1);
        let mut probed = false;
        loop {
            let arp = neigh::neighbours();
            let mut missing = 0;
            for (addr, state) in &dests {
                let hop = self.next_hop(&routes, &arp, *addr);
                if !probed
                    && (hop.is_none() || self.tick.is_multiple_of(10))
                    && let Some(r) = neigh::lookup(&routes, *addr)
                {
                    neigh::probe(r.via, &r.dev);
                }
                if hop.is_none() {
                    missing += 1;
                }
                if hop.is_some() || state.next_hop().is_none() {
                    state.set_next_hop(hop);
                }
            }
            probed = true;
            if !wait || missing == 0 || StdInstant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn next_hop(
        &self,
        routes: &neigh::Routes,
        arp: &neigh::Neighbours,
        addr: IpAddr,
    ) -> Option<NextHop> {
        let r = neigh::lookup(routes, addr)?;
        let iface = self.ifaces.iter().position(|f| f.name == r.dev)?;
        let mac = arp.get(&(r.via, r.dev))?;
        Some(NextHop {
            iface: iface as u8,
            mac: *mac,
        })
    }

    /// SIGHUP: re-reads `--rules` and applies only what changed. A file that cannot be read,
    /// parsed or applied changes nothing; the log says why and where.
    fn reload(&mut self) {
        let Some(path) = self.rules.clone() else {
            log::warn!("SIGHUP: no --rules file to reload");
            return;
        };
        let target = match load_rules(&self.table, &path) {
            Ok(t) => t,
            Err(e) => {
                log::error!("reload failed, nothing changed: {e:#}");
                return;
            }
        };
        let diff = self.table.diff(&target);
        if diff.is_empty() {
            log::info!("reload of {}: no change", path.display());
            return;
        }
        if let Err((i, e)) = self.table.apply_all(&diff) {
            let at = i
                .map(|i| format!("applying `{}`: ", diff[i]))
                .unwrap_or_default();
            log::error!(
                "reload failed, nothing changed: {}: {at}{}",
                path.display(),
                e.msg
            );
            return;
        }
        self.changed(diff.iter().any(Command::adds_dests));
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
    fn changed(&mut self, new_dests: bool) -> Option<CmdError> {
        if new_dests {
            self.resolve_neighbours(true);
        }
        self.publish().err().map(|e| {
            log::error!("updating the XDP maps: {e:#}");
            CmdError::op(format!("applied, but updating the XDP maps failed: {e:#}"))
        })
    }

    /// Executes one xlvsadm command line (`input`: its standard input, for `-R`).
    fn execute(&mut self, args: &[String], input: Option<&str>) -> Response {
        let cmd = match ipvsadm::parse(args) {
            Ok(c) => c,
            Err(e) => return err(e),
        };
        let out = match &cmd {
            Command::List {
                key,
                format,
                exact,
                json,
                ..
            } => {
                let r = if *json {
                    self.table
                        .list_json(key.as_ref())
                        .map(|v| format!("{v:#}\n"))
                } else {
                    self.table.list(key.as_ref(), *format, *exact)
                };
                match r {
                    Ok(s) => s,
                    Err(e) => return err(e),
                }
            }
            Command::ListConns { persistent, json } => {
                let dests: HashMap<*const DestState, (IpAddr, u16)> = self
                    .table
                    .all_dests()
                    .map(|d| (Arc::as_ptr(&d.state), (d.addr, d.port)))
                    .collect();
                let dest_of = |s: &Arc<DestState>| dests.get(&Arc::as_ptr(s)).copied();
                let entries = conns::entries(&self.conns, afxdp::now(), &dest_of);
                if *json {
                    format!("{:#}\n", conns::json(&entries))
                } else {
                    conns::text(&entries, *persistent)
                }
            }
            // No connection sync daemon runs yet: ipvsadm prints nothing then.
            Command::ListDaemon => String::new(),
            Command::Restore => {
                let rules = match ipvsadm::parse_rules_numbered(input.unwrap_or_default()) {
                    Ok(r) => r,
                    Err(e) => {
                        return err(CmdError {
                            msg: e.to_string(),
                            ..e.error
                        });
                    }
                };
                if let Err(e) = self.table.apply_rules(&rules) {
                    return err(CmdError {
                        msg: format!("{e}; nothing restored"),
                        ..e.error
                    });
                }
                if let Some(e) = self.changed(true) {
                    return err(e);
                }
                log::info!("restored {} rule(s)", rules.len());
                String::new()
            }
            Command::Zero { key } => match self.table.zero(key.as_ref()) {
                Ok(()) => String::new(),
                Err(e) => return err(e),
            },
            Command::Save { .. } => self.table.save(),
            Command::ListTimeouts => self.table.list_timeouts(),
            Command::Workers => self.workers_text(),
            Command::XdpStats => {
                let c = self.xdp.counters();
                format!(
                    "steered {}\npassed {}\nredirect_failed {}\n",
                    c[0], c[1], c[2]
                )
            }
            Command::Help => ipvsadm::HELP.to_string(),
            Command::Version => format!(
                "xlvsadm {} (ipvsadm 1.31 syntax)\n",
                env!("CARGO_PKG_VERSION")
            ),
            _ => {
                if let Err((_, e)) = self.table.apply_all(std::slice::from_ref(&cmd)) {
                    return err(e);
                }
                if let Some(e) = self.changed(cmd.adds_dests()) {
                    return err(e);
                }
                log::info!("applied: {}", args.join(" "));
                String::new()
            }
        };
        Response {
            code: 0,
            stdout: out,
            stderr: String::new(),
        }
    }

    /// The Prometheus exposition.
    fn metrics(&self) -> String {
        let mut e = metrics::Exposition::default();
        metrics::table(&mut e, &self.table);
        metrics::workers(&mut e, &self.workers);
        metrics::globals(
            &mut e,
            self.xdp.counters(),
            self.conns.len(),
            self.conns.templates(),
        );
        e.render()
    }

    fn workers_text(&self) -> String {
        let mut s = format!(
            "{:<12} {:>12} {:>12} {:>12} {:>12}\n",
            "Worker", "RX", "TX", "Dropped", "NewConns"
        );
        for w in &self.workers {
            let st = &w.stats;
            let dropped: u64 = st
                .drops
                .iter()
                .map(|d| d.load(Ordering::Relaxed))
                .sum::<u64>()
                + st.inbox_full.load(Ordering::Relaxed);
            let _ = writeln!(
                s,
                "{:<12} {:>12} {:>12} {:>12} {:>12}",
                w.name,
                st.rx.load(Ordering::Relaxed),
                st.tx.load(Ordering::Relaxed),
                dropped,
                st.new_conns.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(s, "Drops by reason:");
        for r in DropReason::ALL {
            let n: u64 = self
                .workers
                .iter()
                .map(|w| w.stats.drops[r as usize].load(Ordering::Relaxed))
                .sum();
            if n > 0 {
                let _ = writeln!(s, "  {:<14} {n}", r.name());
            }
        }
        let inbox: u64 = self
            .workers
            .iter()
            .map(|w| w.stats.inbox_full.load(Ordering::Relaxed))
            .sum();
        if inbox > 0 {
            let _ = writeln!(s, "  {:<14} {inbox}", "inbox_full");
        }
        let _ = writeln!(
            s,
            "Rings:{:<6} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
            "", "TxRingFull", "FillStarved", "RxRingFull", "FillEmpty", "TxEmpty", "TxKicks"
        );
        for w in &self.workers {
            let st = &w.stats;
            let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            let _ = writeln!(
                s,
                "{:<12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
                w.name,
                get(&st.tx_ring_full),
                get(&st.fill_starved),
                get(&st.xsk.rx_ring_full),
                get(&st.xsk.rx_fill_ring_empty),
                get(&st.xsk.tx_ring_empty),
                get(&st.tx_kicks)
            );
        }
        let n = self.workers.iter().map(|w| w.thread + 1).max().unwrap_or(0);
        let mut threads: Vec<(&str, Vec<&str>)> = vec![("", Vec::new()); n];
        for w in &self.workers {
            threads[w.thread].0 = &w.thread_name;
            threads[w.thread].1.push(&w.name);
        }
        let _ = writeln!(s, "Threads:");
        for (t, ws) in threads {
            let _ = writeln!(s, "  {:<16} {}", t, ws.join(" "));
        }
        let _ = writeln!(s, "Connections: {}", self.conns.len());
        s
    }
}

/// A table with the rules of `path` applied to an empty one like `like`.
fn load_rules(like: &Table, path: &std::path::Path) -> anyhow::Result<Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading rules file {}", path.display()))?;
    let rules = ipvsadm::parse_rules_numbered(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut t = like.empty_like();
    t.apply_rules(&rules)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(t)
}

fn err(e: CmdError) -> Response {
    Response {
        code: e.code,
        stdout: String::new(),
        stderr: format!("{}\n", e.msg),
    }
}
