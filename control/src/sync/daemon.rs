//! The sync daemons' sockets, as the control thread drives them (the decisions are
//! [`super::master`]'s and [`super::backup`]'s). Sockets as the kernel sets them up
//! (`make_send_sock`, `make_receive_sock`):
//!
//! - master: UDP, the group's family, multicast out of the interface, multicast loopback
//!   off, the daemon's TTL, bound to the interface's primary address, connected to
//!   group:port;
//! - backup: UDP, address reuse, bound to group:port and to the interface, joined to the
//!   group on it.
//!
//! The master drains the workers' event outboxes every [`DRAIN`] (the kernel's sync thread
//! wakes after 20 ms or 8 full buffers; xlvs's 5 ms bound how long a just-established
//! connection waits before it leaves, see [`super::master`]); the backup's socket is a source of the event loop.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::auth::{self, Key, Sealer, Verifier};
use super::backup::{Backup, BackupStats};
use super::master::{Master, MasterConfig, MasterStats};
use super::maxlen_for_mtu;
use super::resync::{self, Resync, server};
use crate::command::{DaemonSpec, SyncRole};
use crate::sys;

/// How often a master drains the workers' outboxes: a just-established connection waits at
/// most this long before it leaves (a director with a master wakes 200 times a second for
/// it; an adaptive period, 20 ms after an empty drain, let connections established in the
/// master's last 20 ms die with it: under a steady trickle of events most drains are empty).
pub const DRAIN: Duration = Duration::from_millis(5);

/// How long a partial datagram waits by default. The kernel waits up to 2 s, so a
/// connection opened in the last 2 s before a master dies is unknown to its backup; xlvs's
/// default is short enough for a sync lag well under 100 ms, and costs at most 20 datagrams
/// a second while connections trickle in (none while nothing happens; under load datagrams
/// fill up before the interval ends). `--sync-flush-ms 2000` is the kernel's behaviour.
pub const DEFAULT_FLUSH: Duration = Duration::from_millis(50);

/// xlvsd's sync settings beyond ipvsadm's daemon options (kept across reloads and
/// `--start-daemon`/`--stop-daemon`).
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// How long a partial datagram waits for more entries (`--sync-flush-ms`).
    pub flush: Duration,
    /// `--sync-peer`: the only addresses datagrams and resync pullers are taken from, and
    /// the directors a resync pulls from. Empty: datagrams from anyone (as the kernel) and
    /// no resync.
    pub peers: Vec<IpAddr>,
    /// `--sync-auth-key`: authenticate datagrams and resync streams.
    pub key: Option<Key>,
    /// `--resync-port` (0: no resync server).
    pub resync_port: u16,
    /// `--resync-rate`: entries per second a resync server sends per stream (0: no limit).
    pub resync_rate: u64,
    /// `--sync-version`: the message format a master sends.
    pub version: super::Version,
    /// `--sync-persist-mode`: connections controlled by a template are not sent.
    pub persist_mode: bool,
    /// `--sync-refresh-period` (zero: off) and `--sync-retries`.
    pub refresh_period: Duration,
    pub retries: u8,
    /// `--sync-established now`: a connection goes when it becomes ESTABLISHED, at once.
    pub established_now: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            flush: DEFAULT_FLUSH,
            peers: Vec::new(),
            key: None,
            resync_port: resync::DEFAULT_PORT,
            resync_rate: resync::DEFAULT_RATE,
            version: super::Version::V1,
            persist_mode: false,
            refresh_period: Duration::ZERO,
            retries: 0,
            established_now: true,
        }
    }
}

/// A running master.
pub struct MasterDaemon {
    pub spec: DaemonSpec,
    pub ifname: String,
    pub maxlen: u16,
    sock: UdpSocket,
    master: Master,
    next_drain: Instant,
    /// Datagrams the socket refused (e.g. no route), counted.
    pub send_errors: u64,
    sealer: Option<Sealer>,
}

/// A running backup.
pub struct BackupDaemon {
    pub spec: DaemonSpec,
    pub ifname: String,
    pub maxlen: u16,
    sock: UdpSocket,
    backup: Backup,
    peers: Vec<IpAddr>,
    verifier: Option<Verifier>,
    /// When the last entry was applied.
    last_applied: Option<Instant>,
}

/// The interface a daemon uses: the given one, else the default route's (the kernel's
/// choice when ipvsadm names none).
fn ifname_of(spec: &DaemonSpec) -> anyhow::Result<String> {
    if let Some(i) = &spec.ifname {
        sys::iface(i).map_err(|_| anyhow!("No such device"))?;
        return Ok(i.clone());
    }
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    routes
        .lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&"00000000")).then(|| f[0].to_string())
        })
        .ok_or_else(|| anyhow!("No such device"))
}

/// The maxlen in use: the given one, else from the interface's MTU.
fn maxlen_of(spec: &DaemonSpec, ifname: &str) -> u16 {
    spec.maxlen.unwrap_or_else(|| {
        let mtu = sys::iface_mtu(ifname).unwrap_or(1500).min(u16::MAX as u32) as u16;
        maxlen_for_mtu(mtu, spec.group().is_ipv6()) as u16
    })
}

fn ifindex(ifname: &str) -> anyhow::Result<u32> {
    Ok(sys::iface(ifname)?.ifindex)
}

impl MasterDaemon {
    pub fn start(spec: DaemonSpec, opts: &SyncOptions, now: Instant) -> anyhow::Result<Self> {
        let ifname = ifname_of(&spec)?;
        let maxlen = maxlen_of(&spec, &ifname);
        // An authenticated datagram carries its trailer within the same limit.
        let payload = if opts.key.is_some() {
            (maxlen as usize).saturating_sub(auth::TRAILER).max(64)
        } else {
            maxlen as usize
        };
        let group = spec.group();
        // The source its peers know it by (and name in --sync-peer): the interface's own
        // address, not a VIP on it or a link-local one.
        let src = sys::iface_source(&ifname, group.is_ipv6())
            .ok_or_else(|| anyhow!("{ifname} has no address of the group's family"))?;
        let s = Socket::new(
            Domain::for_address(SocketAddr::new(group, 0)),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        match (group, src) {
            (IpAddr::V4(_), IpAddr::V4(a)) => {
                s.set_multicast_if_v4(&a)?;
                s.set_multicast_loop_v4(false)?;
                s.set_multicast_ttl_v4(spec.ttl as u32)?;
            }
            _ => {
                s.set_multicast_if_v6(ifindex(&ifname)?)?;
                s.set_multicast_loop_v6(false)?;
                s.set_multicast_hops_v6(spec.ttl as u32)?;
            }
        }
        s.bind_device(Some(ifname.as_bytes()))?;
        s.bind(&SockAddr::from(SocketAddr::new(src, 0)))
            .with_context(|| format!("binding the sync master to {src}"))?;
        s.connect(&SockAddr::from(SocketAddr::new(group, spec.port)))?;
        s.set_nonblocking(true)?;
        let master = Master::new(MasterConfig {
            syncid: spec.syncid,
            maxlen: payload,
            flush: opts.flush,
            version: opts.version,
            persist_mode: opts.persist_mode,
            refresh_period: opts.refresh_period,
            retries: opts.retries,
            established_now: opts.established_now,
        });
        // Sequence numbers from the wall clock: a restarted master goes on above its old ones.
        let sealer = opts.key.clone().map(|k| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            Sealer::new(k, t.as_nanos() as u64)
        });
        Ok(MasterDaemon {
            spec,
            ifname,
            maxlen,
            sock: s.into(),
            master,
            next_drain: now + DRAIN,
            send_errors: 0,
            sealer,
        })
    }

    pub fn stats(&self) -> MasterStats {
        self.master.stats()
    }

    /// When it next drains the outboxes (or flushes a partial datagram).
    pub fn poll_timeout(&self) -> Instant {
        self.master
            .poll_timeout()
            .map_or(self.next_drain, |t| t.min(self.next_drain))
    }

    /// A worker woke the loop for a just-established connection: drain at once.
    pub fn drain_now(&mut self, now: Instant) {
        self.next_drain = self.next_drain.min(now);
    }

    /// Drains the workers' events (`events`) and sends what is due; returns whether it
    /// drained (the caller then re-arms the workers' wakeups).
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        events: impl Iterator<Item = xlvs_dataplane::core::events::ConnEvent>,
    ) -> bool {
        if now < self.poll_timeout() {
            return false;
        }
        let drained = now >= self.next_drain;
        if drained {
            self.next_drain = now + DRAIN;
            for e in events {
                if let Some(d) = self.master.on_event(&e, now) {
                    self.send(d);
                }
            }
        }
        if let Some(d) = self.master.handle_timeout(now) {
            self.send(d);
        }
        drained
    }

    /// Sends what is pending at once: the workers' `events` and the partial datagram (a
    /// master that stops).
    pub fn finish(
        &mut self,
        events: impl Iterator<Item = xlvs_dataplane::core::events::ConnEvent>,
    ) {
        let now = Instant::now();
        for e in events {
            if let Some(d) = self.master.on_event(&e, now) {
                self.send(d);
            }
        }
        if let Some(d) = self.master.flush() {
            self.send(d);
        }
    }

    fn send(&mut self, mut d: Vec<u8>) {
        if let Some(s) = &mut self.sealer {
            s.seal(&mut d);
        }
        if let Err(e) = self.sock.send(&d) {
            self.send_errors += 1;
            log::debug!("sync master: send: {e}");
        }
        self.master.recycle(d);
    }
}

impl BackupDaemon {
    pub fn start(spec: DaemonSpec, opts: &SyncOptions) -> anyhow::Result<Self> {
        let ifname = ifname_of(&spec)?;
        let maxlen = maxlen_of(&spec, &ifname);
        let group = spec.group();
        let s = Socket::new(
            Domain::for_address(SocketAddr::new(group, 0)),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        s.set_reuse_address(true)?;
        s.bind_device(Some(ifname.as_bytes()))?;
        s.bind(&SockAddr::from(SocketAddr::new(group, spec.port)))
            .with_context(|| format!("binding the sync backup to {group}:{}", spec.port))?;
        match group {
            IpAddr::V4(g) => {
                let a = sys::iface_addrs(&ifname)
                    .into_iter()
                    .find_map(|a| match a {
                        IpAddr::V4(a) => Some(a),
                        IpAddr::V6(_) => None,
                    })
                    .ok_or_else(|| anyhow!("{ifname} has no IPv4 address"))?;
                s.join_multicast_v4(&g, &a)?;
            }
            IpAddr::V6(g) => s.join_multicast_v6(&g, ifindex(&ifname)?)?,
        }
        // Room for a burst of datagrams while the control thread is busy.
        let _ = s.set_recv_buffer_size(4 << 20);
        s.set_nonblocking(true)?;
        Ok(BackupDaemon {
            backup: Backup::new(spec.syncid),
            spec,
            ifname,
            maxlen,
            sock: s.into(),
            peers: opts.peers.clone(),
            verifier: opts.key.clone().map(Verifier::new),
            last_applied: None,
        })
    }

    pub fn stats(&self) -> &BackupStats {
        self.backup.stats()
    }

    /// When it last applied an entry.
    pub fn last_applied(&self) -> Option<Instant> {
        self.last_applied
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Reads every datagram waiting and hands each one's insertions to `apply`.
    pub fn readable(
        &mut self,
        timeouts: &xlvs_dataplane::core::service::Timeouts,
        mut apply: impl FnMut(Vec<xlvs_dataplane::core::inject::Spec>),
    ) {
        let mut buf = [0u8; 65536];
        // Bounded: a flood cannot keep the control thread here.
        for _ in 0..1024 {
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if !self.peers.is_empty() && !resync::walk::allowed(&self.peers, from.ip()) {
                        self.backup.reject("not_allowed");
                        continue;
                    }
                    let msg = match &mut self.verifier {
                        Some(v) => match v.check(from.ip(), &buf[..n]) {
                            Ok(m) => m,
                            Err(e) => {
                                self.backup.reject(e.label());
                                continue;
                            }
                        },
                        None => &buf[..n],
                    };
                    let specs = self.backup.on_datagram(msg, Some(from.ip()), timeouts);
                    if !specs.is_empty() {
                        self.last_applied = Some(Instant::now());
                    }
                    apply(specs)
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::debug!("sync backup: recv: {e}");
                    return;
                }
            }
        }
    }
}

/// The daemons of one director (ipvsadm: at most one master and one backup).
#[derive(Default)]
pub struct SyncDaemons {
    pub master: Option<MasterDaemon>,
    pub backup: Option<BackupDaemon>,
    pub opts: SyncOptions,
    /// The resync server, while a daemon runs and peers are configured.
    pub server: Option<server::Server>,
    /// Pulls from the peers and their entries on their way to the workers.
    pub resync: Resync,
    /// A peer asked (through the resync server) to be pulled from.
    pub asked: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// How the resync server wakes the control thread.
    pub wake: Option<server::Wake>,
}

impl SyncDaemons {
    /// Daemons with these settings (none running yet).
    pub fn new(opts: SyncOptions) -> Self {
        SyncDaemons {
            opts,
            ..Default::default()
        }
    }

    /// `--start-daemon`: ipvsadm's answers when one of that role already runs. The first
    /// daemon also starts the resync server, if peers are configured.
    pub fn start(
        &mut self,
        spec: DaemonSpec,
        now: Instant,
        tables: &std::sync::Arc<xlvs_dataplane::core::conn::Tables>,
    ) -> anyhow::Result<()> {
        let syncid = spec.syncid;
        match spec.role {
            SyncRole::Master if self.master.is_some() => bail!("Daemon has already run"),
            SyncRole::Backup if self.backup.is_some() => bail!("Daemon has already run"),
            SyncRole::Master => {
                self.master = Some(MasterDaemon::start(spec, &self.opts, now)?);
            }
            SyncRole::Backup => self.backup = Some(BackupDaemon::start(spec, &self.opts)?),
        }
        if self.server.is_none() && !self.opts.peers.is_empty() && self.opts.resync_port != 0 {
            let ifname = self
                .master
                .as_ref()
                .map(|m| m.ifname.clone())
                .or_else(|| self.backup.as_ref().map(|b| b.ifname.clone()))
                .unwrap_or_default();
            let cfg = server::ServerConfig {
                port: self.opts.resync_port,
                ifname,
                peers: self.opts.peers.clone(),
                key: self.opts.key.clone(),
                syncid,
                rate: self.opts.resync_rate,
                asked: self.asked.clone(),
                wake: self.wake.clone(),
            };
            match server::Server::start(cfg, tables.clone()) {
                Ok(s) => {
                    log::info!("resync server on {}", s.addr);
                    self.server = Some(s);
                }
                Err(e) => log::error!("{e:#}"),
            }
        }
        Ok(())
    }

    /// The address a resync pull to `peer` comes from: the daemons' interface's own
    /// address of its family (the one the peer's allowlist names), if a daemon runs.
    pub fn resync_source(&self, peer: IpAddr) -> Option<IpAddr> {
        let ifname = self
            .master
            .as_ref()
            .map(|m| m.ifname.as_str())
            .or_else(|| self.backup.as_ref().map(|b| b.ifname.as_str()))?;
        sys::iface_source(ifname, peer.is_ipv6())
    }

    /// The resync peers' addresses (empty: no resync).
    /// Asks every resync peer to pull this director's table (it leaves MASTER: what it
    /// scheduled while its peers could not hear it must reach them).
    pub fn ask_peers_to_pull(&self) {
        for p in self.resync_peers() {
            resync::client::ask_to_pull(p, self.resync_source(p.ip()), self.opts.key.clone());
        }
    }

    pub fn resync_peers(&self) -> Vec<SocketAddr> {
        if self.opts.resync_port == 0 {
            return Vec::new();
        }
        self.opts
            .peers
            .iter()
            .map(|p| SocketAddr::new(*p, self.opts.resync_port))
            .collect()
    }

    /// `--stop-daemon`.
    pub fn stop(&mut self, role: SyncRole) -> anyhow::Result<()> {
        let gone = match role {
            SyncRole::Master => self.master.take().is_some(),
            SyncRole::Backup => self.backup.take().is_some(),
        };
        if !gone {
            bail!("No daemon is running");
        }
        if self.master.is_none() && self.backup.is_none() {
            self.server = None;
        }
        Ok(())
    }

    /// `-L --daemon`: ipvsadm's lines, master first.
    pub fn list(&self) -> String {
        let mut out = String::new();
        if let Some(m) = &self.master {
            out += &m.spec.line(&m.ifname, m.maxlen);
            out.push('\n');
        }
        if let Some(b) = &self.backup {
            out += &b.spec.line(&b.ifname, b.maxlen);
            out.push('\n');
        }
        out
    }
}

impl SyncDaemons {
    /// `-L --daemon --json`: the daemons as `-L --daemon` shows them, their counters, the
    /// sync options and the resync server and last pull.
    pub fn json(&self) -> serde_json::Value {
        use serde_json::json;
        use std::sync::atomic::Ordering::Relaxed;
        let daemon = |spec: &DaemonSpec, ifname: &str, maxlen: u16| {
            json!({
                "role": spec.role.name(),
                "mcast_interface": ifname,
                "syncid": spec.syncid,
                "maxlen": maxlen,
                "group": spec.group().to_string(),
                "port": spec.port,
                "ttl": spec.ttl,
            })
        };
        let mut daemons = Vec::new();
        if let Some(m) = &self.master {
            let s = m.stats();
            let mut d = daemon(&m.spec, &m.ifname, m.maxlen);
            d["stats"] = json!({
                "events": s.events,
                "entries": s.entries,
                "datagrams": s.datagrams,
                "skipped": s.skipped,
                "send_errors": m.send_errors,
            });
            daemons.push(d);
        }
        if let Some(b) = &self.backup {
            let s = b.stats();
            let mut d = daemon(&b.spec, &b.ifname, b.maxlen);
            d["stats"] = json!({
                "datagrams": s.datagrams,
                "entries": s.entries,
                "rejected": s.rejected,
                "dropped": s.dropped,
                "last_applied_ms_ago": b.last_applied().map(|t| t.elapsed().as_millis() as u64),
            });
            daemons.push(d);
        }
        let server = self.server.as_ref().map(|sv| {
            let st = &sv.stats;
            json!({
                "listen": sv.addr.to_string(),
                "streams": st.streams.load(Relaxed),
                "active": st.active.load(Relaxed),
                "entries": st.entries.load(Relaxed),
                "refused": st.refused.load(Relaxed),
                "asks": st.asks.load(Relaxed),
                "failed": st.failed.load(Relaxed),
                "last_entries": st.last_entries.load(Relaxed),
                "last_ms": st.last_ms.load(Relaxed),
            })
        });
        let pull = self.resync.last().map(|p| {
            let pr = &p.progress;
            json!({
                "peers": p.peers.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "state": pr.state().map(|s| s.name()),
                "received": pr.entries.load(Relaxed),
                "announced": pr.announced.load(Relaxed),
                "dropped": pr.dropped.load(Relaxed),
                "ms": pr.ms.load(Relaxed),
                "error": pr.error.lock().map(|e| e.clone()).unwrap_or_default(),
            })
        });
        json!({
            "daemons": daemons,
            "options": {
                "flush_ms": self.opts.flush.as_millis() as u64,
                "peers": self.opts.peers.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "auth": self.opts.key.is_some(),
                "resync_port": self.opts.resync_port,
                "resync_rate": self.opts.resync_rate,
                "version": match self.opts.version { super::Version::V0 => 0, super::Version::V1 => 1 },
                "persist_mode": self.opts.persist_mode as u8,
                "refresh_period_s": self.opts.refresh_period.as_secs(),
                "retries": self.opts.retries,
                "established": if self.opts.established_now { "now" } else { "threshold" },
            },
            "resync": {
                "server": server,
                "pull": pull,
                "applied": self.resync.applied,
                "applied_ms": self.resync.applied_ms,
                "pulls": self.resync.pulls,
            },
        })
    }

    /// Their metrics: datagrams and entries sent and received, drops by reason, the
    /// workers' events lost to full outboxes (`outbox_drops`) and waiting (`queued`).
    pub fn metrics(&self, e: &mut crate::metrics::Exposition, outbox_drops: u64, queued: u64) {
        let counter =
            |e: &mut crate::metrics::Exposition, name: &str, help, l: &[(&str, String)], v: u64| {
                e.sample(name, "counter", help, "", l, v.to_string());
            };
        // What both roles count.
        let master = self
            .master
            .as_ref()
            .map(|m| ("master", m.stats().datagrams, m.stats().entries));
        let backup = self
            .backup
            .as_ref()
            .map(|b| ("backup", b.stats().datagrams, b.stats().entries));
        for (role, datagrams, entries) in master.into_iter().chain(backup) {
            let role = [("role", role.to_string())];
            counter(
                e,
                "sync_datagrams_total",
                "Sync datagrams sent (master) or received (backup).",
                &role,
                datagrams,
            );
            counter(
                e,
                "sync_entries_total",
                "Sync entries sent (master) or applied (backup).",
                &role,
                entries,
            );
        }
        if let Some(m) = &self.master {
            let role = [("role", "master".to_string())];
            for (name, help, v) in [
                (
                    "sync_events_total",
                    "Connection events the master read from the workers.",
                    m.stats().events,
                ),
                (
                    "sync_send_errors_total",
                    "Sync datagrams the socket refused.",
                    m.send_errors,
                ),
                (
                    "sync_events_dropped_total",
                    "Connection events lost to a full worker outbox.",
                    outbox_drops,
                ),
            ] {
                counter(e, name, help, &role, v);
            }
            e.sample(
                "sync_events_queued",
                "gauge",
                "Connection events waiting in the workers' outboxes.",
                "",
                &role,
                queued.to_string(),
            );
        }
        if let Some(b) = &self.backup
            && let Some(t) = b.last_applied()
        {
            e.sample(
                "sync_last_applied_seconds",
                "gauge",
                "Seconds since the backup last applied a sync entry (its lag while the master is busy).",
                "",
                &[],
                format!("{:.3}", t.elapsed().as_secs_f64()),
            );
        }
        if let Some(sv) = &self.server {
            use std::sync::atomic::Ordering::Relaxed;
            let st = &sv.stats;
            for (name, help, v) in [
                (
                    "resync_streams_total",
                    "Resync streams served to their end.",
                    st.streams.load(Relaxed),
                ),
                (
                    "resync_entries_sent_total",
                    "Entries sent by resync streams.",
                    st.entries.load(Relaxed),
                ),
                (
                    "resync_refused_total",
                    "Resync pullers refused (not a peer, bad request or MAC, too many).",
                    st.refused.load(Relaxed),
                ),
                (
                    "resync_failed_total",
                    "Resync streams cut short.",
                    st.failed.load(Relaxed),
                ),
            ] {
                counter(e, name, help, &[], v);
            }
        }
        if let Some(p) = self.resync.last() {
            use std::sync::atomic::Ordering::Relaxed;
            let pr = &p.progress;
            counter(
                e,
                "resync_entries_received_total",
                "Entries received by the last resync pull.",
                &[],
                pr.entries.load(Relaxed),
            );
            e.sample(
                "resync_pull_running",
                "gauge",
                "Whether a resync pull is running.",
                "",
                &[],
                ((pr.state() == Some(resync::client::PullState::Running)) as u8).to_string(),
            );
            counter(
                e,
                "resync_entries_applied_total",
                "Resync entries handed to the workers.",
                &[],
                self.resync.applied,
            );
        }
        if let Some(b) = &self.backup {
            let s = b.stats();
            for (reason, n) in &s.rejected {
                counter(
                    e,
                    "sync_datagrams_rejected_total",
                    "Sync datagrams ignored or cut short, by reason.",
                    &[("reason", reason.to_string())],
                    *n,
                );
            }
            for (reason, n) in &s.dropped {
                counter(
                    e,
                    "sync_entries_dropped_total",
                    "Sync entries dropped, by reason.",
                    &[("reason", reason.to_string())],
                    *n,
                );
            }
        }
    }
}
