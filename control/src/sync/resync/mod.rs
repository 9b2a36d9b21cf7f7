//! Bulk resync (beyond IPVS): a director that starts, restarts, or asks (`xlvsadm --resync`)
//! gets its peer's whole table, every connection (SYN_RECV included) and every persistence
//! template, over one TCP stream per peer ([`stream`] has the format), instead of only the
//! connections that happen to be sent again.
//!
//! - Each director with a sync daemon and `--sync-peer`s runs a [`server::Server`] on
//!   `--resync-port` (default [`DEFAULT_PORT`]) of the daemons' interface. It streams
//!   everything it holds, its own connections and those it learned as a backup, so a
//!   restarted master pulls back the copies of its own connections its peer kept.
//! - The puller ([`client::Pull`]) reads each peer in turn; its entries go through the sync
//!   backup's checks ([`crate::sync::backup::Backup`]) and reach the workers as a sync
//!   datagram's do, by the control thread ([`Resync::drain`]), with backpressure from the
//!   workers' inject queues back to the server.
//! - The server paces each stream to `--resync-rate` entries per second (default
//!   [`DEFAULT_RATE`]) so its forwarding keeps its cores.
//! - Only `--sync-peer` addresses may connect; with `--sync-auth-key` the request and every
//!   frame are authenticated.

pub mod client;
pub mod server;
pub mod stream;
pub mod walk;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};
use std::time::{Duration, Instant};

use xlvs_dataplane::core::inject::Spec;

use crate::sync::auth::Key;

/// The resync port, next to IPVS's sync port 8848.
pub const DEFAULT_PORT: u16 = 8849;
/// Entries per second a server sends per stream: 1 M entries in about 1 s.
pub const DEFAULT_RATE: u64 = 1_000_000;
/// Batches in flight between the puller and the control thread.
const CHANNEL: usize = 64;
/// How soon the control thread retries entries the workers' queues refused.
const RETRY: Duration = Duration::from_millis(1);

/// The control thread's side of resync: the running pull and the entries it brought that the
/// workers have not taken yet.
#[derive(Default)]
pub struct Resync {
    pull: Option<client::Pull>,
    rx: Option<Receiver<Vec<Spec>>>,
    pending: VecDeque<Spec>,
    retry_at: Option<Instant>,
    /// Entries handed to the workers, all pulls.
    pub applied: u64,
    /// Pulls started.
    pub pulls: u64,
    started: Option<Instant>,
    /// The last pull: milliseconds from its start until the workers had every entry.
    pub applied_ms: Option<u64>,
}

impl Resync {
    /// Starts pulling from `peers` (replacing a pull still running); `wake` wakes the
    /// control thread.
    pub fn pull(
        &mut self,
        peers: Vec<(SocketAddr, Option<IpAddr>)>,
        key: Option<Key>,
        wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<()> {
        let (tx, rx) = sync_channel(CHANNEL);
        let pull = client::Pull::start(peers, key, 3, tx, wake)?;
        self.pull = Some(pull);
        self.rx = Some(rx);
        self.pulls += 1;
        self.started = Some(Instant::now());
        self.applied_ms = None;
        Ok(())
    }

    /// The current or last pull.
    pub fn last(&self) -> Option<&client::Pull> {
        self.pull.as_ref()
    }

    /// Hands waiting entries to `inject` until it refuses one (a full queue: retried after
    /// [`RETRY`]). Returns how many it took.
    pub fn drain(&mut self, now: Instant, mut inject: impl FnMut(&Spec) -> bool) -> usize {
        let mut n = 0;
        loop {
            while let Some(s) = self.pending.front() {
                if !inject(s) {
                    self.retry_at = Some(now + RETRY);
                    self.applied += n as u64;
                    return n;
                }
                self.pending.pop_front();
                n += 1;
            }
            let Some(rx) = &self.rx else { break };
            match rx.try_recv() {
                Ok(batch) => self.pending.extend(batch),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // The puller is done and every entry it sent is in the workers' queues.
                    self.rx = None;
                    self.applied_ms = self
                        .started
                        .map(|t| now.saturating_duration_since(t).as_millis() as u64);
                    break;
                }
            }
        }
        self.retry_at = None;
        self.applied += n as u64;
        n
    }

    /// Whether a pull is still bringing entries (its thread runs, or the workers have not
    /// taken all it brought).
    pub fn pulling(&self) -> bool {
        self.pull.as_ref().is_some_and(|p| !p.finished())
            || self.rx.is_some()
            || !self.pending.is_empty()
    }

    /// When refused entries are retried.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retry_at
    }
}
