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
//! - Where xlvs goes beyond the kernel by default ([`MasterConfig::established_now`]): a TCP
//!   connection is also sent the moment it becomes ESTABLISHED (the client's handshake ACK),
//!   and the datagram holding it leaves at once instead of after the flush interval, so a
//!   backup knows a connection within one drain of its handshake (the kernel's rule waits for
//!   its 3rd packet and up to 2 s more). SYN_RECV is still never sent (a SYN flood must not
//!   flood the sync channel).
//! - Entries gather in a datagram of at most `sync_maxlen` bytes ([`Encoder`]); a partial one
//!   leaves after [`MasterConfig::flush`] (the kernel's 2 s).
//! - The kernel's optional modes: `sync_version` 0 (v0 datagrams, IPv4 only),
//!   `sync_persist_mode` 1 (connections controlled by a template are not sent, their
//!   templates are), and `sync_refresh_period` with `sync_retries` (an entry is not sent
//!   again while its expiry would move by less than the refresh period (and half its
//!   timeout, at least 10 s), except for up to `sync_retries` resends, each at least an
//!   eighth of the period after the last; `ip_vs_sync_conn_needed`). A connection's move to
//!   a closing state always goes at once.
//!
//! Where xlvs differs: the kernel evaluates a persistence template on every client packet of
//! its connections and, unless a refresh period or a `sync_period` of 0 holds it back, sends
//! it each time; xlvs sends it when its connection is sent (or would be, in persist mode),
//! which keeps the backup's template alive (its timeout is the persistence timeout) with a
//! fiftieth of the datagrams.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use xlvs_dataplane::core::events::{ConnEvent, EventKind};
use xlvs_dataplane::core::tcp_state::TcpState;

use super::{Encoder, SyncConn, Version};

/// A sync master's settings (ipvsadm `--start-daemon master` and the sysctls).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MasterConfig {
    pub syncid: u8,
    /// `--sync-maxlen`: the most bytes of a datagram's payload.
    pub maxlen: usize,
    /// How long a partial datagram waits for more entries.
    pub flush: Duration,
    /// `sync_version`: the message format sent.
    pub version: Version,
    /// `sync_persist_mode` 1: connections controlled by a template are not sent.
    pub persist_mode: bool,
    /// `sync_refresh_period` (zero: off).
    pub refresh_period: Duration,
    /// `sync_retries` (0–3): resends allowed within a refresh period.
    pub retries: u8,
    /// Send a TCP connection when it becomes ESTABLISHED, and its datagram at once
    /// (`--sync-established now`, the default); `false` is the kernel's rule alone.
    pub established_now: bool,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            syncid: 0,
            maxlen: super::Encoder::DEFAULT_MAXLEN,
            flush: Duration::from_secs(2),
            version: Version::V1,
            persist_mode: false,
            refresh_period: Duration::ZERO,
            retries: 0,
            established_now: true,
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
    /// The last connection event was due (sent, or held back by persist mode): its
    /// template (the next event) goes.
    conn_sent: bool,
    persist_mode: bool,
    refresh_period: Duration,
    retries: u8,
    established_now: bool,
    /// The last connection event went out at once: so does its template.
    conn_urgent: bool,
    /// With a refresh period: when each entry was last sent to expire, and its resends.
    sent: HashMap<EntryKey, (Instant, u8)>,
    stats: MasterStats,
}

/// An entry's identity for the refresh rule: template or connection, protocol, client and
/// virtual endpoints.
type EntryKey = (bool, u8, IpAddr, u16, IpAddr, u16);

fn key_of(e: &ConnEvent) -> EntryKey {
    (e.template, e.proto, e.caddr, e.cport, e.vaddr, e.vport)
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
            enc: match cfg.version {
                Version::V1 => Encoder::new(cfg.syncid, cfg.maxlen),
                Version::V0 => Encoder::new_v0(cfg.syncid, cfg.maxlen),
            },
            flush: cfg.flush,
            flush_at: None,
            conn_sent: false,
            persist_mode: cfg.persist_mode,
            refresh_period: cfg.refresh_period,
            retries: cfg.retries.min(3),
            established_now: cfg.established_now,
            conn_urgent: false,
            sent: HashMap::new(),
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
                e.proto == 6
                    && synced_state(e.state)
                    && (e.state != TcpState::Established || self.established_now)
            }
            _ => false,
        };
        self.conn_sent = send;
        // Persist mode: the template goes, its connection does not.
        send && !(self.persist_mode && e.persistent)
    }

    /// The refresh rule (`sync_refresh_period`, `sync_retries`): whether an entry that the
    /// other rules send goes now. A move to a closing state always goes.
    fn refresh_allows(&mut self, e: &ConnEvent, now: Instant) -> bool {
        if self.refresh_period.is_zero() {
            return true;
        }
        let timeout = Duration::from_secs(e.timeout as u64);
        let end = now + timeout;
        let forced = e.kind == EventKind::StateChanged && !e.template;
        let key = key_of(e);
        let mut retries = 0;
        if let Some(&(orig, tries)) = self.sent.get(&key)
            && !forced
        {
            let diff = if end > orig { end - orig } else { orig - end };
            let min_diff = (timeout / 2).max(Duration::from_secs(10));
            if diff < self.refresh_period.min(min_diff) {
                if tries >= self.retries {
                    return false;
                }
                // At least an eighth of the period after the last send.
                if now < orig.checked_sub(timeout).unwrap_or(now) + self.refresh_period / 8 {
                    return false;
                }
                retries = tries + 1;
            }
        }
        self.sent.insert(key, (end, retries));
        true
    }

    /// One event from a worker's outbox at `now`; returns a finished datagram to send, if
    /// this event filled one.
    pub fn on_event(&mut self, e: &ConnEvent, now: Instant) -> Option<Vec<u8>> {
        self.stats.events += 1;
        if e.kind == EventKind::Expired && !self.refresh_period.is_zero() {
            self.sent.remove(&key_of(e));
        }
        if !self.wanted(e) || !self.refresh_allows(e, now) {
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
        // A connection just established (and its template) leaves with this drain.
        let urgent = if e.template {
            self.conn_urgent
        } else {
            self.conn_urgent = self.established_now
                && e.kind == EventKind::StateChanged
                && e.state == TcpState::Established;
            self.conn_urgent
        };
        match self.enc.push(&entry) {
            Ok(done) => {
                self.stats.entries += 1;
                if urgent {
                    self.flush_at = Some(now);
                } else if self.flush_at.is_none() || done.is_some() {
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

    /// The partial datagram, now (a master that stops).
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        self.flush_at = None;
        let d = self.enc.flush();
        if d.is_some() {
            self.stats.datagrams += 1;
        }
        d
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
            persistent: false,
            fwmark: 0,
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

    /// A datagram's entries as (client port, state, template?).
    fn summary(d: &[u8]) -> Vec<(u16, u16, bool)> {
        decode(d, 7)
            .expect("decodes")
            .conns
            .iter()
            .map(|c| (c.cport, c.state, c.flags & flags::TEMPLATE != 0))
            .collect()
    }

    fn master() -> Master {
        Master::new(MasterConfig {
            syncid: 7,
            ..Default::default()
        })
    }

    #[test]
    fn the_kernels_rules_decide_what_is_sent() {
        let mut m = Master::new(MasterConfig {
            syncid: 7,
            established_now: false,
            ..Default::default()
        });
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
        let summary = summary(&d);
        assert_eq!(summary, [(1, 1, false), (0, 1, true), (3, 4, false)]);
        let s = m.stats();
        assert_eq!((s.events, s.entries, s.datagrams, s.skipped), (8, 3, 1, 5));
        assert_eq!(m.poll_timeout(), Option::None);
    }

    /// xlvs's default: the handshake's ACK sends the connection (and its template), and the
    /// datagram leaves with the drain that read it; later entries wait for the interval.
    #[test]
    fn an_established_connection_leaves_at_once() {
        let mut m = master();
        let t0 = Instant::now();
        use EventKind::*;
        use TcpState::*;
        assert!(m.on_event(&ev(Created, SynRecv, 1), t0).is_none());
        assert!(m.on_event(&template(TemplateCreated), t0).is_none());
        assert_eq!(m.poll_timeout(), Option::None, "SYN_RECV is never sent");
        m.on_event(&ev(StateChanged, Established, 1), t0);
        m.on_event(&template(StateChanged), t0);
        assert_eq!(m.poll_timeout(), Some(t0), "due now");
        let d = m.handle_timeout(t0).expect("flushed at once");
        let summary = summary(&d);
        assert_eq!(summary, [(1, 1, false), (0, 1, true)]);
        // Its 3rd packet follows the kernel's rule: the flush interval.
        m.on_event(&ev(Packets, Established, 1), t0);
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(2)));
        // A move to FIN_WAIT is not urgent, and neither is its template.
        let mut m = master();
        m.on_event(&ev(StateChanged, FinWait, 2), t0);
        m.on_event(&template(StateChanged), t0);
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(2)));
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

    #[test]
    fn version_0_sends_v0_datagrams_of_60_ipv4_entries() {
        let mut m = Master::new(MasterConfig {
            syncid: 7,
            version: Version::V0,
            ..Default::default()
        });
        let t0 = Instant::now();
        let mut done = Vec::new();
        for p in 0..70 {
            done.extend(m.on_event(
                &ev(EventKind::Packets, TcpState::Established, 40000 + p),
                t0,
            ));
        }
        // IPv6 is not expressible in v0: counted, not sent.
        let v6 = ConnEvent {
            caddr: "2001:db8::1".parse().unwrap(),
            vaddr: "2001:db8::100".parse().unwrap(),
            daddr: "fd00::11".parse().unwrap(),
            ..ev(EventKind::Packets, TcpState::Established, 1)
        };
        assert!(m.on_event(&v6, t0).is_none());
        assert_eq!(m.stats().unencodable, 1);
        done.extend(m.handle_timeout(t0 + Duration::from_secs(3)));
        assert_eq!(done.len(), 2);
        // The kernel's v0 layout: closed once fewer than 48 bytes are left.
        assert_eq!(
            (done[0].len(), done[0][0], done[0][1]),
            (4 + 60 * 24, 60, 7)
        );
        let d = decode(&done[0], 7).unwrap();
        assert_eq!(d.version, Version::V0);
        assert_eq!(d.conns.len(), 60);
        assert_eq!(
            (d.conns[0].cport, d.conns[0].state, d.conns[0].timeout),
            (40000, 1, 0)
        );
        assert_eq!(decode(&done[1], 7).unwrap().conns.len(), 10);
    }

    #[test]
    fn persist_mode_sends_templates_not_their_connections() {
        let mut m = Master::new(MasterConfig {
            syncid: 7,
            persist_mode: true,
            ..Default::default()
        });
        let t0 = Instant::now();
        let persistent = ConnEvent {
            persistent: true,
            ..ev(EventKind::Packets, TcpState::Established, 40000)
        };
        assert!(m.on_event(&persistent, t0).is_none());
        assert!(m.on_event(&template(EventKind::Packets), t0).is_none());
        // A connection of a service without persistence still goes.
        assert!(
            m.on_event(&ev(EventKind::Packets, TcpState::Established, 40001), t0)
                .is_none()
        );
        let d = decode(&m.handle_timeout(t0 + Duration::from_secs(3)).unwrap(), 7).unwrap();
        let sent: Vec<(bool, u16)> = d.conns.iter().map(|c| (c.is_template(), c.cport)).collect();
        assert_eq!(sent, [(true, 0), (false, 40001)]);
    }

    #[test]
    fn the_refresh_period_holds_back_resends_but_allows_retries_and_closing() {
        let mut m = Master::new(MasterConfig {
            syncid: 7,
            refresh_period: Duration::from_secs(80),
            retries: 1,
            ..Default::default()
        });
        let t0 = Instant::now();
        let p = |m: &mut Master, at: u64| {
            m.on_event(
                &ev(EventKind::Packets, TcpState::Established, 40000),
                t0 + Duration::from_secs(at),
            );
            m.stats().entries
        };
        assert_eq!(p(&mut m, 0), 1);
        // Its expiry moved by < 80 s: one retry, not before 80/8 = 10 s after the send.
        assert_eq!(p(&mut m, 5), 1);
        assert_eq!(p(&mut m, 11), 2);
        assert_eq!(p(&mut m, 30), 2, "retries used up");
        // 80 s after the last send (the retry): the expiry moved by the period, sent again.
        assert_eq!(p(&mut m, 81), 2);
        assert_eq!(p(&mut m, 92), 3);
        // A move to a closing state goes at once.
        m.on_event(
            &ev(EventKind::StateChanged, TcpState::FinWait, 40000),
            t0 + Duration::from_secs(93),
        );
        assert_eq!(m.stats().entries, 4);
        // An expiry forgets it.
        m.on_event(
            &ev(EventKind::Expired, TcpState::Close, 40000),
            t0 + Duration::from_secs(95),
        );
        assert_eq!(p(&mut m, 96), 5);
    }
}
