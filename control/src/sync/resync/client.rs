//! The puller: a thread that asks each peer's resync server for its whole table and hands the
//! entries, as a sync backup reads them ([`crate::sync::backup::Backup`]), to the control
//! thread through a bounded channel. A full channel stops the reading, and TCP's window then
//! stops the server: the table fills as fast as the workers insert, no faster.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xlvs_dataplane::core::inject::Spec;
use xlvs_dataplane::core::service::Timeouts;

use super::stream::{self, Deframer, Frame};
use crate::sync::auth::Key;
use crate::sync::backup::Backup;

/// Where a pull is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PullState {
    Running = 1,
    Done = 2,
    Failed = 3,
}

impl PullState {
    pub fn name(self) -> &'static str {
        match self {
            PullState::Running => "running",
            PullState::Done => "done",
            PullState::Failed => "failed",
        }
    }
}

/// A pull's progress, shared with the control thread.
#[derive(Debug, Default)]
pub struct Progress {
    state: AtomicU8,
    /// Entries received so far (all peers).
    pub entries: AtomicU64,
    /// Entries the peers said they sent (their end frames).
    pub announced: AtomicU64,
    /// Milliseconds from the start to the last end frame.
    pub ms: AtomicU64,
    /// Entries the backup's checks dropped.
    pub dropped: AtomicU64,
    /// Why the last peer failed, if it did.
    pub error: Mutex<String>,
}

impl Progress {
    pub fn state(&self) -> Option<PullState> {
        match self.state.load(Ordering::Relaxed) {
            1 => Some(PullState::Running),
            2 => Some(PullState::Done),
            3 => Some(PullState::Failed),
            _ => None,
        }
    }

    fn set(&self, s: PullState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }
}

/// A pull from peers.
pub struct Pull {
    pub progress: Arc<Progress>,
    /// The peers, in order.
    pub peers: Vec<SocketAddr>,
    join: Option<JoinHandle<()>>,
}

impl Pull {
    /// Pulls from `peers` in turn (each tried `attempts` times, a second apart; from the
    /// given source address, if any), sending the entries to `tx` and calling `wake` after
    /// each batch.
    pub fn start(
        peers: Vec<(SocketAddr, Option<IpAddr>)>,
        key: Option<Key>,
        attempts: u32,
        tx: SyncSender<Vec<Spec>>,
        wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<Self> {
        let progress = Arc::new(Progress::default());
        progress.set(PullState::Running);
        let (p, list) = (progress.clone(), peers.clone());
        let peers = peers.into_iter().map(|(a, _)| a).collect();
        let join = std::thread::Builder::new()
            .name("xlvs-resync-rx".into())
            .spawn(move || {
                let start = Instant::now();
                let mut ok = true;
                for (peer, source) in list {
                    let mut last = String::new();
                    let mut done = false;
                    for i in 0..attempts.max(1) {
                        if i > 0 {
                            std::thread::sleep(Duration::from_secs(1));
                        }
                        match pull_one(peer, source, key.as_ref(), &tx, &wake, &p) {
                            Ok(n) => {
                                log::info!(
                                    "resync: {n} entries from {peer} in {} ms",
                                    start.elapsed().as_millis()
                                );
                                done = true;
                                break;
                            }
                            Err(PullError::Closed) => return,
                            Err(PullError::Other(e)) => last = e,
                        }
                    }
                    if !done {
                        log::warn!("resync from {peer}: {last}");
                        *p.error.lock().unwrap_or_else(|e| e.into_inner()) =
                            format!("{peer}: {last}");
                        ok = false;
                    }
                }
                p.ms.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                p.set(if ok {
                    PullState::Done
                } else {
                    PullState::Failed
                });
                // The channel closes before the last wake, so the control thread that wakes
                // sees the end (not an empty, still open channel).
                drop(tx);
                wake();
            })?;
        Ok(Pull {
            progress,
            peers,
            join: Some(join),
        })
    }

    /// Whether its thread has finished.
    pub fn finished(&self) -> bool {
        self.join.as_ref().is_none_or(|j| j.is_finished())
    }
}

impl Drop for Pull {
    fn drop(&mut self) {
        // The thread ends on its own: its channel is gone (the next send fails) or its
        // socket times out; it is not joined, so a stop never waits for a slow peer.
        drop(self.join.take());
    }
}

enum PullError {
    /// The control thread went away.
    Closed,
    Other(String),
}

fn pull_one(
    peer: SocketAddr,
    source: Option<IpAddr>,
    key: Option<&Key>,
    tx: &SyncSender<Vec<Spec>>,
    wake: &impl Fn(),
    p: &Progress,
) -> Result<u64, PullError> {
    let o = |e: std::io::Error| PullError::Other(e.to_string());
    let mut s = connect(peer, source).map_err(o)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(o)?;
    let nonce = nonce();
    s.write_all(&stream::request(nonce, key)).map_err(o)?;
    let mut d = Deframer::new(key.cloned(), nonce);
    let mut backup = Backup::new(0);
    let timeouts = Timeouts::default();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    loop {
        let n = s.read(&mut buf).map_err(o)?;
        if n == 0 {
            return Err(PullError::Other(format!(
                "the stream ended after {got} entries, before its end"
            )));
        }
        d.feed(&buf[..n]);
        let mut batch = Vec::new();
        loop {
            match d.next_frame() {
                Ok(Some(Frame::Message(m))) => {
                    let specs = backup.on_datagram(&m, Some(peer.ip()), &timeouts);
                    got += specs.len() as u64;
                    batch.extend(specs);
                }
                Ok(Some(Frame::End(n))) => {
                    p.entries.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    send(tx, batch, wake)?;
                    p.announced.fetch_add(n, Ordering::Relaxed);
                    let dropped: u64 = backup.stats().dropped.values().sum();
                    p.dropped.fetch_add(dropped, Ordering::Relaxed);
                    return Ok(got);
                }
                Ok(None) => break,
                Err(e) => return Err(PullError::Other(e.to_string())),
            }
        }
        p.entries.fetch_add(batch.len() as u64, Ordering::Relaxed);
        send(tx, batch, wake)?;
    }
}

fn send(tx: &SyncSender<Vec<Spec>>, batch: Vec<Spec>, wake: &impl Fn()) -> Result<(), PullError> {
    if batch.is_empty() {
        return Ok(());
    }
    // Wake first: the control thread may be asleep with the channel full.
    wake();
    tx.send(batch).map_err(|_| PullError::Closed)?;
    wake();
    Ok(())
}

/// Asks `peer`'s resync server to pull this director's table (from `source`, as
/// [`Pull`]s come), up to 3 times a second apart while the peer cannot be reached; in a
/// thread of its own, which ends with the ask.
pub fn ask_to_pull(peer: SocketAddr, source: Option<IpAddr>, key: Option<Key>) {
    let spawned = std::thread::Builder::new()
        .name("xlvs-resync-ask".into())
        .spawn(move || {
            let mut last = String::new();
            for attempt in 0..3 {
                if attempt > 0 {
                    std::thread::sleep(Duration::from_secs(1));
                }
                match ask_once(peer, source, key.as_ref()) {
                    Ok(()) => {
                        log::info!("resync: asked {peer} to pull this director's table");
                        return;
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            log::warn!("resync: could not ask {peer} to pull this director's table: {last}");
        });
    if let Err(e) = spawned {
        log::warn!("resync: no thread to ask {peer}: {e}");
    }
}

fn ask_once(peer: SocketAddr, source: Option<IpAddr>, key: Option<&Key>) -> std::io::Result<()> {
    let mut s = connect(peer, source)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let n = nonce();
    s.write_all(&stream::request_for(stream::Ask::PullMe, n, key))?;
    let mut d = stream::Deframer::new(key.cloned(), n);
    let mut buf = [0u8; 256];
    loop {
        let got = s.read(&mut buf)?;
        if got == 0 {
            return Err(std::io::Error::other("closed before answering"));
        }
        d.feed(&buf[..got]);
        match d.next_frame() {
            Ok(Some(stream::Frame::End(_))) => return Ok(()),
            Ok(Some(_)) => return Err(std::io::Error::other("not an answer to an ask")),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
    }
}

/// A TCP connection to `peer` from `source` (the address the peer's allowlist names; the
/// kernel might pick a VIP on the same interface).
fn connect(peer: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let s = Socket::new(Domain::for_address(peer), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(a) = source.filter(|a| a.is_ipv6() == peer.is_ipv6()) {
        s.bind(&SockAddr::from(SocketAddr::new(a, 0)))?;
    }
    s.connect_timeout(&SockAddr::from(peer), Duration::from_secs(2))?;
    Ok(s.into())
}

/// A random nonce.
fn nonce() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 ^ std::process::id() as u64;
    }
    u64::from_le_bytes(b)
}
