//! The resync server: a thread that accepts pullers on the resync port and streams the whole
//! table to each ([`super::walk`]), at most [`MAX_STREAMS`] at once, each paced to the
//! configured entries per second so the workers keep their cores.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use xlvs_dataplane::core::conn::Tables;

use super::stream::{self, Framer};
use super::walk::{allowed, walk};
use crate::sync::auth::Key;

/// Streams served at once; more pullers are refused (and counted).
pub const MAX_STREAMS: u64 = 4;

/// What the server needs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub port: u16,
    /// The interface it listens on (the sync daemons').
    pub ifname: String,
    /// Who may pull.
    pub peers: Vec<IpAddr>,
    pub key: Option<Key>,
    pub syncid: u8,
    /// Entries per second per stream (0: no limit).
    pub rate: u64,
    /// A peer asked to be pulled from: set, then `wake` called.
    pub asked: Arc<AtomicBool>,
    pub wake: Option<Wake>,
}

/// How the server wakes the control thread.
#[derive(Clone)]
pub struct Wake(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for Wake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wake")
    }
}

/// Its counters.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Streams served to their end.
    pub streams: AtomicU64,
    /// Entries sent, all streams.
    pub entries: AtomicU64,
    /// Pullers refused: not allowed, a bad request or MAC, too many at once.
    pub refused: AtomicU64,
    /// Peers' asks to pull from them.
    pub asks: AtomicU64,
    /// Streams cut short (the puller went away, a write timed out).
    pub failed: AtomicU64,
    /// Streams running.
    pub active: AtomicU64,
    /// The last finished stream: entries and milliseconds.
    pub last_entries: AtomicU64,
    pub last_ms: AtomicU64,
}

/// A running server; dropping it stops it.
pub struct Server {
    pub addr: SocketAddr,
    pub stats: Arc<ServerStats>,
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<()>>,
}

fn listener(port: u16, ifname: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let mut last = None;
    for (domain, addr) in [
        (
            Domain::IPV6,
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
        ),
        (
            Domain::IPV4,
            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port),
        ),
    ] {
        let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        if domain == Domain::IPV6 && s.set_only_v6(false).is_err() {
            continue;
        }
        s.set_reuse_address(true)?;
        s.bind_device(Some(ifname.as_bytes()))?;
        match s.bind(&SockAddr::from(addr)) {
            Ok(()) => {
                s.listen(8)?;
                s.set_nonblocking(true)?;
                let l: TcpListener = s.into();
                let addr = l.local_addr().unwrap_or(addr);
                return Ok((l, addr));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(
        || anyhow::anyhow!("no address family to listen on"),
        anyhow::Error::from,
    ))
}

impl Server {
    /// Listens on `cfg.port` of `cfg.ifname` and serves `tables`.
    pub fn start(cfg: ServerConfig, tables: Arc<Tables>) -> anyhow::Result<Self> {
        let (l, addr) = listener(cfg.port, &cfg.ifname)
            .with_context(|| format!("resync: listening on port {} of {}", cfg.port, cfg.ifname))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ServerStats::default());
        let (st, sa) = (stop.clone(), stats.clone());
        let join = std::thread::Builder::new()
            .name("xlvs-resync".into())
            .spawn(move || accept_loop(l, cfg, tables, st, sa))?;
        Ok(Server {
            addr,
            stats,
            stop,
            join: Some(join),
        })
    }
}

impl Server {
    /// Its address as a puller on this host reaches it (tests).
    pub fn addr_on_loopback(&self) -> SocketAddr {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.addr.port())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

fn accept_loop(
    l: TcpListener,
    cfg: ServerConfig,
    tables: Arc<Tables>,
    stop: Arc<AtomicBool>,
    stats: Arc<ServerStats>,
) {
    let cfg = Arc::new(cfg);
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((s, from)) => {
                if !allowed(&cfg.peers, from.ip()) {
                    log::warn!("resync: refused {from}: not a --sync-peer");
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if stats.active.load(Ordering::Relaxed) >= MAX_STREAMS {
                    log::warn!("resync: refused {from}: {MAX_STREAMS} streams already running");
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                stats.active.fetch_add(1, Ordering::Relaxed);
                let (cfg, tables, stats, stop) =
                    (cfg.clone(), tables.clone(), stats.clone(), stop.clone());
                let spawned = std::thread::Builder::new()
                    .name("xlvs-resync-tx".into())
                    .spawn(move || {
                        serve(s, from, &cfg, &tables, &stats, &stop);
                        stats.active.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    log::warn!("resync: no thread for {from}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                log::debug!("resync: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Why a stream ended early.
enum Cut {
    Io(std::io::Error),
    Stopped,
}

fn serve(
    mut s: TcpStream,
    from: SocketAddr,
    cfg: &ServerConfig,
    tables: &Tables,
    stats: &ServerStats,
    stop: &AtomicBool,
) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    let mut req = vec![0u8; stream::request_len(cfg.key.is_some())];
    let nonce = match s
        .read_exact(&mut req)
        .map_err(|e| e.to_string())
        .and_then(|()| stream::parse_ask(&req, cfg.key.as_ref()).map_err(|e| e.to_string()))
    {
        Ok((stream::Ask::Table, n)) => n,
        Ok((stream::Ask::PullMe, n)) => {
            log::info!("resync: {from} asks to be pulled from");
            stats.asks.fetch_add(1, Ordering::Relaxed);
            cfg.asked.store(true, Ordering::Relaxed);
            if let Some(w) = &cfg.wake {
                (w.0)();
            }
            let mut buf = Vec::new();
            Framer::new(cfg.key.clone(), n).end(0, &mut buf);
            let _ = s.write_all(&buf);
            return;
        }
        Err(e) => {
            log::warn!("resync: refused {from}: {e}");
            stats.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let start = Instant::now();
    let mut framer = Framer::new(cfg.key.clone(), nonce);
    let mut buf = Vec::with_capacity(1 << 18);
    let mut sent = 0u64;
    let now = xlvs_dataplane::afxdp::now();
    let r = walk(tables, now, cfg.syncid, |m| {
        if stop.load(Ordering::Relaxed) {
            return Err(Cut::Stopped);
        }
        // The message's entry count is its byte 4 (v1 header).
        sent += m.get(4).copied().unwrap_or(0) as u64;
        framer.frame(&m, &mut buf);
        if buf.len() >= 1 << 17 {
            s.write_all(&buf).map_err(Cut::Io)?;
            buf.clear();
        }
        pace(cfg.rate, start, sent);
        Ok(())
    })
    .and_then(|n| {
        framer.end(n, &mut buf);
        s.write_all(&buf).map_err(Cut::Io)?;
        Ok(n)
    });
    match r {
        Ok(n) => {
            let ms = start.elapsed().as_millis() as u64;
            stats.streams.fetch_add(1, Ordering::Relaxed);
            stats.entries.fetch_add(n, Ordering::Relaxed);
            stats.last_entries.store(n, Ordering::Relaxed);
            stats.last_ms.store(ms, Ordering::Relaxed);
            log::info!("resync: sent {n} entries to {from} in {ms} ms");
        }
        Err(Cut::Io(e)) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            log::warn!("resync: stream to {from} cut: {e}");
        }
        Err(Cut::Stopped) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sleeps until `sent` entries are due at `rate` per second since `start`.
fn pace(rate: u64, start: Instant, sent: u64) {
    if rate == 0 {
        return;
    }
    let due = start + Duration::from_nanos((sent as u128 * 1_000_000_000 / rate as u128) as u64);
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}
