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
//! wakes after 20 ms or 8 full buffers); the backup's socket is a source of the event loop.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::backup::{Backup, BackupStats};
use super::master::{Master, MasterConfig, MasterStats};
use super::maxlen_for_mtu;
use crate::command::{DaemonSpec, SyncRole};
use crate::sys;

/// How often a master drains the workers' outboxes.
pub const DRAIN: Duration = Duration::from_millis(20);

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
}

/// A running backup.
pub struct BackupDaemon {
    pub spec: DaemonSpec,
    pub ifname: String,
    pub maxlen: u16,
    sock: UdpSocket,
    backup: Backup,
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
    pub fn start(spec: DaemonSpec, flush: Duration, now: Instant) -> anyhow::Result<Self> {
        let ifname = ifname_of(&spec)?;
        let maxlen = maxlen_of(&spec, &ifname);
        let group = spec.group();
        let src = sys::iface_addrs(&ifname)
            .into_iter()
            .find(|a| a.is_ipv6() == group.is_ipv6())
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
            maxlen: maxlen as usize,
            flush,
        });
        Ok(MasterDaemon {
            spec,
            ifname,
            maxlen,
            sock: s.into(),
            master,
            next_drain: now + DRAIN,
            send_errors: 0,
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

    /// Drains the workers' events (`events`) and sends what is due.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        events: impl Iterator<Item = xlvs_dataplane::core::events::ConnEvent>,
    ) {
        if now < self.poll_timeout() {
            return;
        }
        if now >= self.next_drain {
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
    }

    fn send(&mut self, d: Vec<u8>) {
        if let Err(e) = self.sock.send(&d) {
            self.send_errors += 1;
            log::debug!("sync master: send: {e}");
        }
        self.master.recycle(d);
    }
}

impl BackupDaemon {
    pub fn start(spec: DaemonSpec) -> anyhow::Result<Self> {
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
        })
    }

    pub fn stats(&self) -> &BackupStats {
        self.backup.stats()
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Reads every datagram waiting and hands each one's insertions to `apply`.
    pub fn readable(
        &mut self,
        timeouts: &xlvs_dataplane::core::service::Timeouts,
        hop: impl Fn(IpAddr) -> Option<xlvs_dataplane::core::service::NextHop>,
        mut apply: impl FnMut(Vec<xlvs_dataplane::core::inject::Spec>),
    ) {
        let mut buf = [0u8; 65536];
        // Bounded: a flood cannot keep the control thread here.
        for _ in 0..1024 {
            match self.sock.recv(&mut buf) {
                Ok(n) => apply(self.backup.on_datagram(&buf[..n], timeouts, &hop)),
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
}

impl SyncDaemons {
    /// `--start-daemon`: ipvsadm's answers when one of that role already runs.
    pub fn start(&mut self, spec: DaemonSpec, now: Instant) -> anyhow::Result<()> {
        match spec.role {
            SyncRole::Master if self.master.is_some() => bail!("Daemon has already run"),
            SyncRole::Backup if self.backup.is_some() => bail!("Daemon has already run"),
            SyncRole::Master => {
                self.master = Some(MasterDaemon::start(spec, Duration::from_secs(2), now)?);
            }
            SyncRole::Backup => self.backup = Some(BackupDaemon::start(spec)?),
        }
        Ok(())
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
