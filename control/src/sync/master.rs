//! The sync master's decisions, sans IO: which of the workers' connection events go on the
//! wire, and when a partial datagram leaves. The kernel's rules (`ip_vs_sync_conn`,
//! `sync_thread_master`):
//!
//! - Only client → director packets trigger sync; the core reports on them only.
//! - TCP is synced only in ESTABLISHED, FIN_WAIT, CLOSE, CLOSE_WAIT and TIME_WAIT (never
//!   SYN_RECV): a move into one of them other than ESTABLISHED is sent at once
//!   ([`EventKind::StateChanged`]); otherwise a connection is sent on its `sync_threshold`-th
//!   and every `sync_period`-th packet after ([`EventKind::Packets`], counted by the core).
//!   UDP: the packet rule alone.
//! - A connection's template is sent right after it (the core reports it right after); it
//!   is marked assured (state 1), as a template of a connection that reached a synced state
//!   is in the kernel.
//! - Creations and expiries are never sent.
//! - Entries gather in a datagram of at most `sync_maxlen` bytes ([`Encoder`]); a partial one
//!   leaves after [`MasterConfig::flush`] (the kernel's 2 s).

use std::time::{Duration, Instant};

use xlvs_dataplane::core::events::{ConnEvent, EventKind};
use xlvs_dataplane::core::tcp_state::TcpState;

use super::{Encoder, SyncConn};

/// A sync master's settings (ipvsadm `--start-daemon master` and the sysctls).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MasterConfig {
    pub syncid: u8,
    /// `--sync-maxlen`: the most bytes of a datagram's payload.
    pub maxlen: usize,
    /// How long a partial datagram waits for more entries.
    pub flush: Duration,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            syncid: 0,
            maxlen: super::Encoder::DEFAULT_MAXLEN,
            flush: Duration::from_secs(2),
        }
    }
}

/// What a master did, for `-L --daemon`, `--json` and /metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MasterStats {
    /// Events read from the workers.
    pub events: u64,
    /// Entries put in datagrams.
    pub entries: u64,
    /// Datagrams finished (handed out to send).
    pub datagrams: u64,
    /// Events the rules do not send (creations, expiries, states not synced).
    pub skipped: u64,
    /// Entries the wire cannot carry (none expected from the core's events).
    pub unencodable: u64,
}

/// The sync master, sans IO.
pub struct Master {
    enc: Encoder,
    flush: Duration,
    /// When the partial datagram must leave.
    flush_at: Option<Instant>,
    /// The last connection event went on the wire: its template (the next event) goes too.
    conn_sent: bool,
    stats: MasterStats,
}

/// TCP states the kernel syncs in.
fn synced_state(s: TcpState) -> bool {
    matches!(
        s,
        TcpState::Established
            | TcpState::FinWait
            | TcpState::Close
            | TcpState::CloseWait
            | TcpState::TimeWait
    )
}

impl Master {
    pub fn new(cfg: MasterConfig) -> Self {
        Master {
            enc: Encoder::new(cfg.syncid, cfg.maxlen),
            flush: cfg.flush,
            flush_at: None,
            conn_sent: false,
            stats: MasterStats::default(),
        }
    }

    pub fn stats(&self) -> MasterStats {
        self.stats
    }

    /// Whether the kernel would send this event.
    fn wanted(&mut self, e: &ConnEvent) -> bool {
        if e.template {
            return self.conn_sent
                && matches!(e.kind, EventKind::Packets | EventKind::StateChanged);
        }
        let send = match e.kind {
            EventKind::Packets => e.proto != 6 || synced_state(e.state),
            EventKind::StateChanged => {
                e.proto == 6 && synced_state(e.state) && e.state != TcpState::Established
            }
            _ => false,
        };
        self.conn_sent = send;
        send
    }

    /// One event from a worker's outbox at `now`; returns a finished datagram to send, if
    /// this event filled one.
    pub fn on_event(&mut self, e: &ConnEvent, now: Instant) -> Option<Vec<u8>> {
        self.stats.events += 1;
        if !self.wanted(e) {
            self.stats.skipped += 1;
            return None;
        }
        let Some(mut entry) = SyncConn::from_event(e) else {
            self.stats.skipped += 1;
            return None;
        };
        if e.template {
            entry.state = 1; // assured: its connection reached a synced state
        }
        match self.enc.push(&entry) {
            Ok(done) => {
                self.stats.entries += 1;
                if self.flush_at.is_none() || done.is_some() {
                    self.flush_at = Some(now + self.flush);
                }
                if done.is_some() {
                    self.stats.datagrams += 1;
                }
                done
            }
            Err(_) => {
                self.stats.unencodable += 1;
                None
            }
        }
    }

    /// When the partial datagram must leave, if there is one.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.flush_at.filter(|_| self.enc.pending() > 0)
    }

    /// The partial datagram, if it is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.poll_timeout().is_some_and(|t| now >= t) {
            self.flush_at = None;
            let d = self.enc.flush();
            if d.is_some() {
                self.stats.datagrams += 1;
            }
            return d;
        }
        None
    }

    /// Gives a sent datagram's buffer back for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.enc.recycle(buf);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use xlvs_dataplane::core::service::Fwd;

    use super::*;
    use crate::sync::{decode, flags};

    fn ev(kind: EventKind, state: TcpState, cport: u16) -> ConnEvent {
        ConnEvent {
            kind,
            proto: 6,
            fwd: Fwd::Masq,
            state,
            template: false,
            inactive: state != TcpState::Established,
            cport,
            vport: 80,
            dport: 8080,
            timeout: 900,
            caddr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            vaddr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            daddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 11)),
        }
    }

    fn template(kind: EventKind) -> ConnEvent {
        ConnEvent {
            template: true,
            cport: 0,
            state: TcpState::None,
            timeout: 300,
            ..ev(kind, TcpState::None, 0)
        }
    }

    fn master() -> Master {
        Master::new(MasterConfig {
            syncid: 7,
            ..Default::default()
        })
    }

    #[test]
    fn the_kernels_rules_decide_what_is_sent() {
        let mut m = master();
        let t0 = Instant::now();
        use EventKind::*;
        use TcpState::*;
        // Created and its template, SYN_RECV, the move to ESTABLISHED: nothing yet.
        for e in [
            ev(Created, SynRecv, 1),
            template(TemplateCreated),
            ev(StateChanged, Established, 1),
            ev(Packets, SynRecv, 2),
        ] {
            assert!(m.on_event(&e, t0).is_none());
        }
        assert_eq!(m.poll_timeout(), Option::None, "nothing pending");
        // The 3rd packet in ESTABLISHED, with its template; a move to FIN_WAIT at once; an
        // expiry never.
        m.on_event(&ev(Packets, Established, 1), t0);
        m.on_event(&template(Packets), t0);
        m.on_event(&ev(StateChanged, FinWait, 3), t0);
        m.on_event(&ev(Expired, Close, 4), t0);
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(2)));
        assert!(m.handle_timeout(t0 + Duration::from_secs(1)).is_none());
        let d = m
            .handle_timeout(t0 + Duration::from_secs(2))
            .expect("flushed");
        let got = decode(&d, 7).expect("decodes");
        let summary: Vec<(u16, u16, bool)> = got
            .conns
            .iter()
            .map(|c| (c.cport, c.state, c.flags & flags::TEMPLATE != 0))
            .collect();
        assert_eq!(summary, [(1, 1, false), (0, 1, true), (3, 4, false)]);
        let s = m.stats();
        assert_eq!((s.events, s.entries, s.datagrams, s.skipped), (8, 3, 1, 5));
        assert_eq!(m.poll_timeout(), Option::None);
    }

    #[test]
    fn a_full_datagram_leaves_at_once() {
        let mut m = master();
        let t0 = Instant::now();
        let mut sent = Vec::new();
        for i in 0..100 {
            if let Some(d) = m.on_event(&ev(EventKind::Packets, TcpState::Established, i), t0) {
                sent.push(d);
            }
        }
        // 40 IPv4 entries per 1472-byte datagram.
        assert_eq!(sent.len(), 2);
        assert!(sent.iter().all(|d| d.len() <= 1472));
        assert_eq!(decode(&sent[0], 7).expect("decodes").conns.len(), 40);
        let rest = m
            .handle_timeout(t0 + Duration::from_secs(2))
            .expect("the rest");
        assert_eq!(decode(&rest, 7).expect("decodes").conns.len(), 20);
    }

    #[test]
    fn udp_follows_the_packet_rule_alone() {
        let mut m = master();
        let t0 = Instant::now();
        let mut udp = ev(EventKind::Packets, TcpState::None, 9);
        udp.proto = 17;
        udp.timeout = 300;
        m.on_event(&udp, t0);
        let d = m.handle_timeout(t0 + Duration::from_secs(3)).expect("sent");
        let c = &decode(&d, 7).expect("decodes").conns[0];
        assert_eq!((c.proto, c.state, c.timeout), (17, 0, 300));
    }
}
