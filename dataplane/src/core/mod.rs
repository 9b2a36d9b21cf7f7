//! The sans-IO forwarding core: a frame and a time in, a verdict and the frame rewritten in
//! place out. No sockets, no clock reads, no threads; the AF_XDP workers are loops around
//! [`Core::process`], and the tests and benchmarks drive it directly.

pub mod addr;
pub mod conn;
pub mod events;
mod family;
pub mod inject;
pub mod offload;
pub mod sched;
pub mod service;
pub mod stats;
mod straight;
pub mod tcp_state;
pub mod wheel;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use crate::wire::{Error as WireError, checksum, ethernet, tcp};
use addr::Addr;
use conn::{Conn, ConnKey, ConnTable, FragKey, Persisted, Side, Tables, Template, TemplateKey};
use events::{EventKind, Outbox};
use family::{Family, NatField};
use sched::Source;
use service::{Dest, Fwd, IfaceId, NextHop, Proto, Service, Snapshot, VsKey};
use tcp_state::{Dir, TcpState};
use wheel::{Wheel, tick, tick_ceil};

/// A point in time, in nanoseconds since an epoch the driver chooses (the workers use
/// `CLOCK_MONOTONIC`). The core never reads a clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub u64);

impl Instant {
    pub fn from_secs(s: u64) -> Self {
        Instant(s * 1_000_000_000)
    }

    /// Time elapsed since `earlier` (zero if `earlier` is later).
    pub fn since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0 + d.as_nanos() as u64)
    }
}

/// What to do with a frame after [`Core::process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the (rewritten) frame on this interface.
    Tx(IfaceId),
    /// Drop it, counted under this reason.
    Drop(DropReason),
}

/// Why a frame was dropped. Every drop is counted under one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Ethernet, IP, TCP or UDP header truncated or invalid.
    Malformed = 0,
    /// Neither IPv4 nor IPv6 (the XDP program should not have steered it).
    NotIp,
    /// Not TCP, UDP, or an ICMP error quoting TCP or UDP.
    NotTcpUdp,
    /// A non-first IP fragment whose first fragment was not forwarded in the last few seconds
    /// (it came later, out of order, or never).
    Fragment,
    /// No connection and no virtual service for it (e.g. a service deleted meanwhile).
    NoService,
    /// A TCP segment other than a SYN, a fragment or an ICMP error for a connection the
    /// table does not know.
    NoConn,
    /// The service has no realserver that can take a new connection, or (with
    /// `expire_nodest_conn`) the connection's realserver left the table.
    NoDest,
    /// The realserver's (or client's) MAC is not resolved yet.
    NoNeighbour,
    /// TTL would reach zero (IPVS decrements it on every forwarding method).
    TtlExceeded,
    /// The connection table is full.
    TableFull,
    /// A realserver's reply for a connection learned from outside (a peer director's sync)
    /// whose client next hop is not known yet: no client frame has taught it and none was given.
    NoClientHop,
}

impl DropReason {
    pub const COUNT: usize = 11;
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Malformed,
        DropReason::NotIp,
        DropReason::NotTcpUdp,
        DropReason::Fragment,
        DropReason::NoService,
        DropReason::NoConn,
        DropReason::NoDest,
        DropReason::NoNeighbour,
        DropReason::TtlExceeded,
        DropReason::TableFull,
        DropReason::NoClientHop,
    ];

    /// Stable snake_case name for counters and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NotIp => "not_ip",
            DropReason::NotTcpUdp => "not_tcp_udp",
            DropReason::Fragment => "fragment",
            DropReason::NoService => "no_service",
            DropReason::NoConn => "no_conn",
            DropReason::NoDest => "no_dest",
            DropReason::NoNeighbour => "no_neighbour",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::TableFull => "table_full",
            DropReason::NoClientHop => "no_client_hop",
        }
    }
}

impl From<WireError> for DropReason {
    fn from(_: WireError) -> Self {
        DropReason::Malformed
    }
}

/// Counters of one core instance (one worker). Plain integers: only the owner writes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreStats {
    pub rx: u64,
    pub tx: u64,
    pub new_conns: u64,
    pub drops: [u64; DropReason::COUNT],
    /// Half-open (SYN_RECV) connections removed to make room for newer ones
    /// ([`Core::set_syn_recv_cap`]): a SYN flood's.
    pub syn_evicted: u64,
}

impl CoreStats {
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// The forwarding core of one worker. Workers share the connection tables; each has its own
/// timing wheels for the connections and templates it created.
#[derive(Debug)]
pub struct Core {
    tables: Arc<Tables>,
    expiry: Expiries,
    /// This worker's index: its shard of the realservers' counters.
    worker: usize,
    pub stats: CoreStats,
    /// Where this worker's connection events go, if anywhere.
    outbox: Option<Arc<Outbox>>,
    /// The outbox while someone listens, else None.
    live: Option<Arc<Outbox>>,
    /// The hook mask a client packet tests its connection's flags with
    /// ([`conn::HOOKS_LISTENING`] while someone listens, else [`conn::HOOKS_QUIET`]): all the
    /// per-packet path looks at.
    listen: u8,
    /// The last peer entries came from and its origin ([`inject`]).
    last_origin: Option<(std::net::IpAddr, conn::Origin)>,
    /// The XDP fast path, when on ([`Core::set_offload`]).
    offload: Option<Offloader>,
    /// All ones while the fast path is on, else 0: what a packet tests its connection's
    /// marks with ([`At::offload`]), set with `offload` rather than worked out per packet.
    offer_mask: u8,
    /// The last frame time seen and its [`tick_ceil`]: a batch's frames share one time.
    tick_memo: (Instant, u32),
    /// Tests compare the straight line ([`straight`]) with the general path by turning it off.
    #[cfg(test)]
    general_only: bool,
}

/// The XDP fast path's state in a core ([`offload`]).
struct Offloader {
    /// The driver's view of the XDP program's entries.
    seen: Box<dyn offload::OffloadSeen>,
    /// The TCP ESTABLISHED and the UDP timeout (seconds) of the snapshot the last request was
    /// made under, or the driver last noted ([`Core::note_timeouts`]): an offloaded TCP
    /// connection is ESTABLISHED, so expiry extends a connection by its protocol's from its
    /// last frame.
    timeouts: (u32, u32),
    /// What the last [`Core::process`] asks the driver to offload.
    request: Option<offload::OffloadRequest>,
}

impl Offloader {
    /// What [`Offloader::timeouts`] holds of a snapshot's timeouts.
    fn timeouts_of(t: &service::Timeouts) -> (u32, u32) {
        (t.tcp[TcpState::Established as usize], t.udp)
    }
}

impl std::fmt::Debug for Offloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offloader")
            .field("timeouts", &self.timeouts)
            .field("request", &self.request)
            .finish()
    }
}

/// A worker's timing wheels, per address family.
#[derive(Debug, Default)]
pub(crate) struct Expiries {
    v4: Expiry<Ipv4Addr>,
    v6: Expiry<Ipv6Addr>,
}

#[derive(Debug)]
pub(crate) struct Expiry<A> {
    /// Buckets of the connection table holding a connection filed for the entry's tick.
    conns: Wheel<u32>,
    templates: Wheel<TemplateKey<A>>,
    /// The half-open connections this worker made, oldest first (at most its cap).
    syn: SynRing<A>,
}

impl<A: Copy> Default for Expiry<A> {
    fn default() -> Self {
        Expiry {
            conns: Wheel::new(),
            templates: Wheel::new(),
            syn: SynRing::default(),
        }
    }
}

/// The keys of the TCP connections a worker created from a SYN, oldest first, at most `cap`:
/// when it is full, the oldest goes, and its connection with it if it is still half open
/// (SYN_RECV). Beyond IPVS, whose `drop_entry` defense drops random half-open entries once
/// memory runs low: here their space has its own bound from the start, so a SYN flood of R
/// per second leaves each half-open entry `cap / R` seconds to complete its handshake, and
/// established connections (and the rest of the table) are untouched.
#[derive(Debug)]
pub(crate) struct SynRing<A> {
    keys: std::collections::VecDeque<ConnKey<A>>,
    cap: usize,
}

impl<A> Default for SynRing<A> {
    fn default() -> Self {
        SynRing {
            keys: std::collections::VecDeque::new(),
            cap: 0,
        }
    }
}

/// Offsets and fields read from a frame once, before the lookup. `src`..`dport` are the
/// tuple the connection table is searched with: the frame's own, or for an ICMP error the
/// quoted packet's reversed (the direction the error travels in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Parsed<A> {
    // Offsets fit in u16 (frames are at most one UMEM frame).
    l3: u16,
    l4: u16,
    /// The IP packet's length (what the byte counters count).
    len: u16,
    proto: Proto,
    src: A,
    dst: A,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    /// TTL or hop limit.
    ttl: u8,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A TCP or UDP packet, or the first fragment of one (`first_frag`; `ident` is its
    /// datagram's identification).
    Plain { first_frag: bool, ident: u32 },
    /// A non-first fragment: no L4 header; its ports come from the fragment table.
    Fragment { ident: u32 },
    /// An ICMP error quoting a TCP/UDP packet; offsets of the quoted IP and L4 headers and the
    /// end of the quote.
    IcmpError {
        inner_l3: u16,
        inner_l4: u16,
        end: u16,
    },
}

/// What the rewrite needs, copied out of the table so no lock is held while writing the frame.
enum Action<A> {
    /// Client → realserver.
    ToDest {
        fwd: Fwd,
        daddr: A,
        dport: u16,
        hop: Option<NextHop>,
    },
    /// Realserver → client (LVS-NAT): source back to VIP:vport.
    ToClient { vaddr: A, vport: u16, hop: NextHop },
}

/// Frames [`Core::prefetch`] keeps the buckets of between its two passes (a worker's batch).
const PREFETCH_BATCH: usize = 64;

/// A frame's two candidate buckets in its family's table, for [`Core::prefetch`].
#[derive(Clone, Copy, Debug)]
enum Buckets {
    V4([conn::Hashed; 2]),
    V6([conn::Hashed; 2]),
}

/// Most wheel entries a worker fires per [`Core::expire_some`] call, so a mass expiry does not
/// stall a batch.
pub const EXPIRY_BUDGET: usize = 1024;

impl Core {
    pub fn new(tables: Arc<Tables>) -> Self {
        Self::for_worker(tables, 0)
    }

    /// The core of worker number `worker` (it counts in that shard of the realservers'
    /// counters, see [`stats`]).
    pub fn for_worker(tables: Arc<Tables>, worker: usize) -> Self {
        Core {
            tables,
            expiry: Expiries::default(),
            worker,
            stats: CoreStats::default(),
            outbox: None,
            live: None,
            listen: conn::HOOKS_QUIET,
            last_origin: None,
            offload: None,
            offer_mask: 0,
            tick_memo: (Instant(0), 0),
            #[cfg(test)]
            general_only: false,
        }
    }

    /// Turns the XDP fast path on (`Some`: the driver's view of the program's entries) or off
    /// ([`offload`]). While it is on, an established IPv4 connection's directions are offered
    /// to the driver one at a time ([`Core::take_offload_request`]); while a sync master
    /// listens, the client's carries the sync rule's count.
    pub fn set_offload(&mut self, seen: Option<Box<dyn offload::OffloadSeen>>) {
        let t = service::Timeouts::default();
        self.offload = seen.map(|seen| Offloader {
            seen,
            timeouts: Offloader::timeouts_of(&t),
            request: None,
        });
        self.offer_mask = if self.offload.is_some() { u8::MAX } else { 0 };
    }

    /// Takes the ESTABLISHED and UDP timeouts of `snap` as those an offloaded connection's
    /// expiry extends it by from the program's last frame of it (the driver calls this once a
    /// second, so an `xlvsadm --set` reaches offloaded connections within a second, as it
    /// reaches the others at their next packet). A no-op with the fast path off.
    pub fn note_timeouts(&mut self, snap: &Snapshot) {
        if let Some(o) = &mut self.offload {
            o.timeouts = Offloader::timeouts_of(&snap.timeouts);
        }
    }

    /// The direction the last [`Core::process`] call asks the driver to offload, if any: the
    /// frame it returned `Verdict::Tx` for is that direction's rewrite.
    #[inline]
    pub fn take_offload_request(&mut self) -> Option<offload::OffloadRequest> {
        self.offload.as_mut().and_then(|o| o.request.take())
    }

    /// Bounds the half-open (SYN_RECV) connections this worker creates to `cap` per address
    /// family (0: no bound but the table's): a new one beyond removes the oldest still half
    /// open. The space for the keys is reserved now (committed as used), not on the path.
    pub fn set_syn_recv_cap(&mut self, cap: usize) {
        self.expiry.v4.syn = SynRing {
            keys: std::collections::VecDeque::with_capacity(cap),
            cap,
        };
        self.expiry.v6.syn = SynRing {
            keys: std::collections::VecDeque::with_capacity(cap),
            cap,
        };
    }

    /// Sets where this worker's connection events go ([`events`]), and reads whether they are
    /// wanted.
    pub fn set_outbox(&mut self, outbox: Option<Arc<Outbox>>) {
        self.outbox = outbox;
        self.live = None;
        self.refresh_listening();
    }

    /// The outbox of this worker's connection events.
    pub fn outbox(&self) -> Option<&Arc<Outbox>> {
        self.outbox.as_ref()
    }

    /// Reads the outbox's listening flag (a worker: once per batch, never per packet).
    #[inline]
    pub fn refresh_listening(&mut self) {
        let on = self.outbox.as_ref().is_some_and(|o| o.listening());
        if on != self.live.is_some() {
            // A sync master counts every client packet: the program counts those of the
            // connections offloaded from now on. Those it forwards now do not count (or count
            // for nobody): the workers keep them (once per table; the other workers find none
            // left).
            if self.offload.is_some() {
                self.tables.unoffload_dests(|_| true);
            }
            self.live = if on { self.outbox.clone() } else { None };
            self.listen = if on {
                conn::HOOKS_LISTENING
            } else {
                conn::HOOKS_QUIET
            };
        }
    }

    /// The packet count a connection inserted from outside starts at (IPVS sets a synced
    /// connection's to the sync threshold).
    fn sync_threshold(&self) -> u8 {
        self.outbox
            .as_ref()
            .map_or(Outbox::SYNC_THRESHOLD as u8, |o| o.stored(o.threshold()))
    }

    pub fn tables(&self) -> &Arc<Tables> {
        &self.tables
    }

    /// Forwards one frame received on `rx_iface` at `now`: looks up or creates its connection,
    /// rewrites the frame in place, and says where it goes.
    pub fn process(
        &mut self,
        now: Instant,
        snap: &Snapshot,
        frame: &mut [u8],
        rx_iface: IfaceId,
    ) -> Verdict {
        self.stats.rx += 1;
        let v = match self.forward(now, snap, frame, rx_iface) {
            Ok(iface) => Verdict::Tx(iface),
            Err(r) => Verdict::Drop(r),
        };
        match v {
            Verdict::Tx(_) => self.stats.tx += 1,
            Verdict::Drop(r) => self.stats.drops[r as usize] += 1,
        }
        v
    }

    #[inline(always)]
    fn forward(
        &mut self,
        now: Instant,
        snap: &Snapshot,
        frame: &mut [u8],
        rx_iface: IfaceId,
    ) -> Result<IfaceId, DropReason> {
        // The common frame (untagged IPv4 TCP or UDP without options, not a fragment) at fixed
        // offsets; the general parse for the rest.
        let (p, missed) = match family::parse_common_v4(frame) {
            // A connection's frame (any but a TCP SYN) in one straight line.
            Some(p) if (p.proto == Proto::Udp || !is_syn(p.tcp_flags)) && self.straight() => {
                match self.established(now, snap, frame, &p, rx_iface) {
                    straight::Straight::Done(r) => return r,
                    straight::Straight::Missed => (p, true),
                }
            }
            Some(p) => (p, false),
            None => {
                let (ethertype, l3) = ethernet::payload(frame)?;
                match ethertype {
                    ethernet::EtherType::Ipv4 => (Ipv4Addr::parse(frame, l3)?, false),
                    ethernet::EtherType::Ipv6 => {
                        let p = Ipv6Addr::parse(frame, l3)?;
                        return self.flow(now, snap, frame, p, rx_iface, false);
                    }
                    _ => return Err(DropReason::NotIp),
                }
            }
        };
        self.flow(now, snap, frame, p, rx_iface, missed)
    }

    /// [`tick_ceil`]`(now)`, worked out once per frame time.
    #[inline(always)]
    fn now_tick(&mut self, now: Instant) -> u32 {
        if self.tick_memo.0 != now {
            self.tick_memo = (now, tick_ceil(now));
        }
        self.tick_memo.1
    }

    /// Whether the straight line takes the frames it can (always, but in tests that turn it
    /// off).
    #[inline(always)]
    fn straight(&self) -> bool {
        #[cfg(test)]
        return !self.general_only;
        #[cfg(not(test))]
        true
    }

    /// Forwards a parsed frame of family `F`; `missed`: its tuple is known to have no
    /// connection (the straight line looked).
    #[inline(always)]
    fn flow<F: Family>(
        &mut self,
        now: Instant,
        snap: &Snapshot,
        frame: &mut [u8],
        mut p: Parsed<F>,
        rx_iface: IfaceId,
        missed: bool,
    ) -> Result<IfaceId, DropReason> {
        let table = F::table(&self.tables);
        if let Kind::Fragment { ident } = p.kind {
            fragment_ports(table, &mut p, ident, now)?;
        }
        let key = ConnKey {
            src: p.src,
            dst: p.dst,
            sport: p.sport,
            dport: p.dport,
            proto: p.proto.number(),
        };
        let ex = F::expiry(&mut self.expiry);
        let worker = self.worker;
        let at = At {
            now,
            worker,
            snap,
            ev: self.live.as_deref(),
            listen: self.listen,
            offload: self.offer_mask,
        };
        let mut offer_it = None;
        let found = if missed {
            None
        } else {
            lookup(
                table,
                ex,
                at,
                (frame, rx_iface),
                &key,
                &p,
                (&mut offer_it, &mut self.offload),
            )
        };
        let action = match found {
            Some(a) => a,
            None if matches!(p.kind, Kind::Plain { .. }) => {
                let (a, evicted) = new_conn(table, ex, at, frame, &p, rx_iface)?;
                self.stats.new_conns += 1;
                self.stats.syn_evicted += evicted as u64;
                a
            }
            // ICMP errors and fragments only follow existing connections (IPVS looks an ICMP
            // error's quoted packet up with `ip_vs_conn_in_get`/`out_get` and never schedules
            // for it).
            None => return Err(DropReason::NoConn),
        };
        let out = rewrite(snap, frame, &p, action)?;
        if let Some(o) = offer_it {
            request_offload(&mut self.offload, snap, self.live.as_deref(), &key, o);
        }
        if let Kind::Plain {
            first_frag: true,
            ident,
        } = p.kind
        {
            let fk = FragKey {
                src: key.src,
                dst: key.dst,
                ident,
                proto: key.proto,
            };
            table.track_fragments(fk, key, now);
        }
        Ok(out)
    }

    /// Hints the CPU to load the connection-table memory [`Core::process`] will read for each
    /// of a batch of frames, before the batch is processed: first the bucket heads of every
    /// frame, then the first connection of each bucket, so the batch's cache misses (two
    /// dependent ones per lookup in a large table) overlap instead of queueing. Only TCP/UDP
    /// over IPv4 without options or IPv6 without extension headers (one VLAN tag allowed) is
    /// looked at; anything else is just processed. Writes nothing. Each frame is parsed and
    /// hashed once: the first pass keeps its buckets (up to [`PREFETCH_BATCH`] frames at a
    /// time) for the second, which reads the heads the first one brought into the cache.
    pub fn prefetch<'f>(&self, frames: impl Iterator<Item = &'f [u8]>) {
        let mut frames = frames.peekable();
        let none = conn::Hashed::default();
        let mut found = [Buckets::V4([none; 2]); PREFETCH_BATCH];
        while frames.peek().is_some() {
            let mut n = 0;
            for f in frames.by_ref().take(PREFETCH_BATCH) {
                if let Some(b) = self.buckets(f) {
                    match b {
                        Buckets::V4(bs) => bs.map(|h| self.tables.v4.prefetch_bucket(h.bucket)),
                        Buckets::V6(bs) => bs.map(|h| self.tables.v6.prefetch_bucket(h.bucket)),
                    };
                    found[n] = b;
                    n += 1;
                }
            }
            for b in &found[..n] {
                match *b {
                    Buckets::V4(bs) => bs.map(|b| self.tables.v4.prefetch_chain(b)),
                    Buckets::V6(bs) => bs.map(|b| self.tables.v6.prefetch_chain(b)),
                };
            }
        }
    }

    /// The two buckets a frame's lookup may read: either endpoint may be the client (the
    /// frame's source, client → service, or its destination, a realserver's reply).
    #[inline]
    fn buckets(&self, frame: &[u8]) -> Option<Buckets> {
        let l4 = |at: usize, proto: u8| {
            let p = frame.get(at..at + 4)?;
            let ports = (
                u16::from_be_bytes([p[0], p[1]]),
                u16::from_be_bytes([p[2], p[3]]),
            );
            matches!(proto, 6 | 17).then_some(ports)
        };
        fn pair<A: Addr>(
            t: &ConnTable<A>,
            proto: u8,
            s: (A, u16),
            d: (A, u16),
        ) -> [conn::Hashed; 2] {
            [t.hash(proto, s.0, s.1), t.hash(proto, d.0, d.1)]
        }
        let (ethertype, l3) = ethernet::payload(frame).ok()?;
        match ethertype {
            ethernet::EtherType::Ipv4 => {
                let ip = frame.get(l3..l3 + 20)?;
                let (sp, dp) = l4(l3 + 20, ip[9]).filter(|_| ip[0] == 0x45)?;
                let a = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
                Some(Buckets::V4(pair(
                    &self.tables.v4,
                    ip[9],
                    (a(12), sp),
                    (a(16), dp),
                )))
            }
            ethernet::EtherType::Ipv6 => {
                let ip = frame.get(l3..l3 + 40)?;
                let (sp, dp) = l4(l3 + 40, ip[6])?;
                let a = |at: usize| {
                    Ipv6Addr::from(<[u8; 16]>::try_from(&ip[at..at + 16]).unwrap_or_default())
                };
                Some(Buckets::V6(pair(
                    &self.tables.v6,
                    ip[6],
                    (a(8), sp),
                    (a(24), dp),
                )))
            }
            _ => None,
        }
    }

    /// Fires the due entries of this worker's timing wheels: connections idle past their
    /// timeout and idle templates go (at most [`EXPIRY_BUDGET`] entries per family and kind;
    /// the rest wait for the next call). Returns the number of entries fired: non-zero means
    /// there may be more to do.
    pub fn expire_some(&mut self, now: Instant) -> usize {
        self.expire_families(now, EXPIRY_BUDGET).fired
    }

    /// Fires every due entry (tests and shutdown); returns the number of connections removed.
    pub fn expire(&mut self, now: Instant) -> usize {
        self.expire_families(now, usize::MAX).removed
    }

    /// [`expire`] over both families' tables and wheels, at most `budget` entries each.
    fn expire_families(&mut self, now: Instant, budget: usize) -> Expired {
        let ev = self.live.as_deref();
        let mut off = self.offload.as_mut();
        let a = expire(
            &self.tables.v4,
            &mut self.expiry.v4,
            now,
            budget,
            ev,
            &mut off,
        );
        let b = expire(
            &self.tables.v6,
            &mut self.expiry.v6,
            now,
            budget,
            ev,
            &mut off,
        );
        Expired {
            fired: a.fired + b.fired,
            removed: a.removed + b.removed,
        }
    }

    /// When this worker's timing wheels (connections and templates, both families) next have
    /// entries to fire: the driver may sleep until then ([`Core::expire_some`] does nothing
    /// before). None if nothing is filed. Entries are lazy, so it may be early, never late.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let e = &self.expiry;
        [
            e.v4.conns.next_due(),
            e.v4.templates.next_due(),
            e.v6.conns.next_due(),
            e.v6.templates.next_due(),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(wheel::tick_instant)
    }

    /// Entries in this worker's wheels (connections and templates it watches).
    pub fn watched(&self) -> usize {
        let e = &self.expiry;
        e.v4.conns.len() + e.v4.templates.len() + e.v6.conns.len() + e.v6.templates.len()
    }
}

/// What one expiry pass did.
struct Expired {
    /// Wheel entries fired.
    fired: usize,
    /// Connections removed.
    removed: usize,
}

fn expire<A: Addr>(
    t: &ConnTable<A>,
    ex: &mut Expiry<A>,
    now: Instant,
    budget: usize,
    ev: Option<&Outbox>,
    off: &mut Option<&mut Offloader>,
) -> Expired {
    let now_t = tick(now);
    let mut removed = 0;
    let mut fired = ex.conns.advance(now_t, budget, |b, at, filer| {
        removed += t.expire_bucket(
            b,
            at,
            now,
            |d| filer.file(d, b),
            |c| {
                if let Some(ob) = ev {
                    ob.expired(c);
                }
            },
            |c| {
                // Idle since the XDP program's last frame of it, not the core's.
                if let Some(o) = off.as_deref_mut()
                    && let Some(last) = offload::offloaded_keys(c)
                        .filter_map(|(k, _)| o.seen.last_seen(&k))
                        .max()
                {
                    let timeout = match c.proto() {
                        Proto::Tcp => o.timeouts.0,
                        Proto::Udp => o.timeouts.1,
                    };
                    c.touch(wheel::tick_ceil(last), timeout);
                }
            },
        );
    });
    fired += ex.templates.advance(now_t, budget, |k, at, filer| {
        let gone = t.expire_template(&k, at, now, |d| filer.file(d, k));
        if let (Some(ob), Some(tp)) = (ev, gone) {
            ob.template_expired(&tp);
        }
    });
    Expired { fired, removed }
}

/// What a packet's handling reads besides the frame: the time, the worker, the snapshot, and
/// the outbox while someone listens.
#[derive(Clone, Copy)]
struct At<'a> {
    now: Instant,
    worker: usize,
    snap: &'a Snapshot,
    ev: Option<&'a Outbox>,
    /// The core's hook mask: what a client packet tests its connection's flags with.
    listen: u8,
    /// Offer established connections to the XDP fast path: all ones, else 0 (so that one
    /// OR with a connection's marks tells whether a packet has fast-path work).
    offload: u8,
}

/// A non-first fragment takes the ports its first fragment was forwarded with.
#[cold]
#[inline(never)]
fn fragment_ports<A: Addr>(
    table: &ConnTable<A>,
    p: &mut Parsed<A>,
    ident: u32,
    now: Instant,
) -> Result<(), DropReason> {
    let fk = FragKey {
        src: p.src,
        dst: p.dst,
        ident,
        proto: p.proto.number(),
    };
    let first = table.fragment(&fk, now).ok_or(DropReason::Fragment)?;
    p.sport = first.sport;
    p.dport = first.dport;
    Ok(())
}

/// The action for a known connection, updating its state; None if the table has none (or
/// the frame is a new SYN for a closed one, which is then removed).
#[inline(always)]
fn lookup<A: Addr>(
    table: &ConnTable<A>,
    ex: &mut Expiry<A>,
    at: At<'_>,
    (frame, rx_iface): (&[u8], IfaceId),
    key: &ConnKey<A>,
    p: &Parsed<A>,
    (offer_it, off): (&mut Option<offload::Offer>, &mut Option<Offloader>),
) -> Option<Action<A>> {
    let At {
        now,
        worker,
        snap,
        ev,
        ..
    } = at;
    // A TCP SYN comes from a client: a realserver answers one with a SYN-ACK, so only the
    // client side is searched (one chain walk fewer for every new connection).
    let syn = p.proto == Proto::Tcp && is_syn(p.tcp_flags);
    let mut found = if syn {
        table.lookup_in(key)?
    } else {
        table.lookup(key)?
    };
    let side = found.side;
    let (c, control) = found.conn_and_template();
    let (action, deadline) = match side {
        Side::In => {
            // IPVS conn_reuse_mode 1: a new SYN on a TIME_WAIT/CLOSE connection expires it and
            // is scheduled afresh.
            if syn && reusable(c) {
                if let Some(ob) = ev {
                    ob.expired(c);
                }
                found.remove(now);
                return None;
            }
            let dir = if c.no_output() {
                Dir::InputOnly
            } else {
                Dir::Input
            };
            touch(c, tick_ceil(now), snap, dir, p);
            // One test for the rare work: a connection learned from outside (bind it, learn
            // the client's hop), a state change to report, someone listening. Before the
            // offer, so that the offering frame is counted as the workers' own.
            if c.hooked(at.listen) {
                let t = control.get(c);
                client_hooks((c, t), (snap, ev), (frame, p), rx_iface, off);
            }
            if c.offload() | at.offload != 0 && offer(table, c, p, offload::IN, at.offload != 0) {
                *offer_it = Some(offload::Offer {
                    inbound: true,
                    pkts: c.in_pkts,
                });
            }
            c.dest.stats.inbound(worker, p.len as u64);
            let a = Action::ToDest {
                fwd: c.fwd(),
                daddr: c.daddr,
                dport: c.dport,
                hop: c.dest.next_hop(),
            };
            (a, c.deadline())
        }
        // Realserver → client.
        Side::Out => {
            // A connection being expired now (`expire_nodest_conn`, its realserver gone)
            // stays so: its realserver's replies neither go through nor revive it (in IPVS
            // it is gone at once, and so are they).
            if c.deadline() == 0 {
                return None;
            }
            if matches!(p.kind, Kind::Plain { .. }) {
                c.clear_no_output();
            }
            touch(c, tick_ceil(now), snap, Dir::Output, p);
            if c.offload() | at.offload != 0 && offer(table, c, p, offload::OUT, at.offload != 0) {
                *offer_it = Some(offload::Offer {
                    inbound: false,
                    pkts: 0,
                });
            }
            c.dest.stats.outbound(worker, p.len as u64);
            let a = Action::ToClient {
                vaddr: c.vaddr,
                vport: c.vport,
                hop: c.client_hop,
            };
            (a, c.deadline())
        }
    };
    // A shorter timeout (RST → CLOSE, FIN → FIN_WAIT, a lower `--set`) must not wait for the
    // entry filed for the longer one: file an earlier one here (the old one goes stale).
    if deadline < found.armed() {
        let at = ex.conns.at(tick(now), deadline);
        found.set_armed(at);
        ex.conns.push(at, found.bucket());
    }
    Some(action)
}

/// Schedules a new connection to a realserver of the frame's virtual service.
/// A new connection for `p` (IPVS `ip_vs_schedule`): its action, and whether a half-open
/// connection was removed to make room for it.
fn new_conn<F: Family>(
    table: &ConnTable<F>,
    ex: &mut Expiry<F>,
    at: At<'_>,
    frame: &[u8],
    p: &Parsed<F>,
    rx_iface: IfaceId,
) -> Result<(Action<F>, bool), DropReason> {
    let At {
        now,
        worker,
        snap,
        ev,
        ..
    } = at;
    let vs = VsKey {
        proto: p.proto,
        addr: p.dst.ip(),
        port: p.dport,
    };
    let svc = snap.service(&vs).ok_or(DropReason::NoService)?;
    // IPVS schedules TCP only on a SYN (sloppy_tcp off).
    if p.proto == Proto::Tcp && !is_syn(p.tcp_flags) {
        return Err(DropReason::NoConn);
    }
    // IPVS decrements the TTL on every forwarding method (`decrement_ttl`): a frame that
    // cannot be forwarded creates no connection.
    if p.ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    let (d, template, new_template) = choose_dest(table, ex, now, svc, p)?;
    // A realserver of the other family cannot take it (IPVS allows that for tunnels only).
    let daddr = F::from_ip(d.addr).ok_or(DropReason::NoDest)?;
    // Port 0 (a fwmark service's realserver): the port the client asked for.
    let dport = if d.port == 0 { p.dport } else { d.port };
    let client_mac = ethernet::Frame::new_unchecked(frame).src();
    let (state, timeout) = match p.proto {
        Proto::Tcp => {
            let st = tcp_state::next(TcpState::None, Dir::InputOnly, p.tcp_flags);
            (st, snap.timeouts.tcp[st as usize])
        }
        Proto::Udp => (TcpState::None, snap.timeouts.udp),
    };
    let hop = NextHop {
        iface: rx_iface,
        mac: client_mac,
    };
    let mut conn = Conn::new(
        p.proto,
        (p.src, p.sport),
        (p.dst, p.dport),
        (daddr, dport),
        d.fwd,
        state,
        hop,
        d.state.clone(),
    );
    conn.set_persistent(template.is_some());
    conn.touch(tick_ceil(now), timeout);
    if let Some(ob) = ev {
        // IPVS counts the packet that created it.
        conn.in_pkts = ob.stored(1);
        let c = (&conn, template.as_deref());
        new_conn_events(ob, c, timeout, new_template, svc.mark);
    }
    let action = Action::ToDest {
        fwd: d.fwd,
        daddr,
        dport,
        hop: d.state.next_hop(),
    };
    // A half-open connection: the oldest of this worker's makes room if their space is full.
    let half_open = state == TcpState::SynRecv && ex.syn.cap > 0;
    let evicted = half_open && ex.syn.keys.len() >= ex.syn.cap && evict_oldest(table, ex, now);
    let key = half_open.then(|| conn.in_key());
    let at = ex.conns.at(tick(now), conn.deadline());
    let b = table
        .insert_from((conn, template), at, now, conn::Origin::LOCAL)
        .map_err(|_| DropReason::TableFull)?;
    ex.conns.push(at, b);
    if let Some(key) = key {
        ex.syn.keys.push_back(key);
    }
    d.state.stats.conn(worker);
    d.state.stats.inbound(worker, p.len as u64);
    Ok((action, evicted))
}

/// Takes the oldest key off the worker's half-open ring; removes its connection if it is still
/// half open (a completed or closed one stays). True if one went.
#[cold]
#[inline(never)]
fn evict_oldest<A: Addr>(table: &ConnTable<A>, ex: &mut Expiry<A>, now: Instant) -> bool {
    let Some(key) = ex.syn.keys.pop_front() else {
        return false;
    };
    let Some(mut f) = table.lookup(&key) else {
        return false;
    };
    if f.side == Side::In && f.conn().state() == TcpState::SynRecv {
        f.remove(now);
        return true;
    }
    false
}

/// Reports new connection `c` (its state's timeout `timeout`) and its template, made for it
/// (`new_template`) or reused.
#[cold]
#[inline(never)]
fn new_conn_events<A: Addr>(
    ob: &Outbox,
    (c, template): (&Conn<A>, Option<&Template<A>>),
    timeout: u32,
    new_template: bool,
    fwmark: u32,
) {
    let of_conn = |kind| events::ConnEvent {
        fwmark,
        ..events::ConnEvent::of_conn(kind, c, timeout)
    };
    ob.push(of_conn(EventKind::Created));
    if let Some(t) = template {
        let kind = if new_template {
            EventKind::TemplateCreated
        } else {
            EventKind::TemplateRefreshed
        };
        ob.push(events::ConnEvent::of_template(kind, t));
    }
    // The creating packet is the first counted: with a sync threshold of 1 it is the one
    // IPVS syncs (`ip_vs_in` counts it right after `ip_vs_schedule`).
    if ob.picks_first_packet() {
        ob.push(of_conn(EventKind::Packets));
        if let Some(t) = template {
            ob.push(events::ConnEvent::of_template(EventKind::Packets, t));
        }
    }
}

/// A new connection's realserver, the persistence template that chose it if any, and whether
/// that template is new.
type Chosen<'s, A> = (&'s Dest, Option<Arc<Template<A>>>, bool);

/// The realserver for a new connection (IPVS `ip_vs_schedule`): through the client's
/// persistence template if the service is persistent, else the scheduler; the sorry server
/// if no realserver can take it.
fn choose_dest<'s, A: Addr>(
    table: &ConnTable<A>,
    ex: &mut Expiry<A>,
    now: Instant,
    svc: &'s Service,
    p: &Parsed<A>,
) -> Result<Chosen<'s, A>, DropReason> {
    let src = Source {
        addr: p.src.ip(),
        port: p.sport,
    };
    let pick = || svc.sched.schedule(&svc.dests, &src).map(|i| &svc.dests[i]);
    let sorry = || {
        svc.sorry
            .as_ref()
            .map(|d| (d, None, false))
            .ok_or(DropReason::NoDest)
    };
    let Some(pers) = svc.persist else {
        return pick().map(|d| (d, None, false)).map_or_else(sorry, Ok);
    };
    let netmask = A::from_ip(pers.netmask).unwrap_or(A::ONES);
    let caddr = p.src.mask(netmask);
    let key = match svc.mark {
        0 => TemplateKey {
            proto: p.proto.number(),
            caddr,
            vaddr: p.dst,
            vport: p.dport,
        },
        mark => TemplateKey {
            proto: 0,
            caddr,
            vaddr: A::from_u32(mark),
            vport: 0,
        },
    };
    let found = table
        .persist(key, now, pers.timeout, &svc.dests, pick)
        .map_err(|_| DropReason::TableFull)?;
    match found {
        Persisted::Template {
            dest,
            template,
            new,
        } => {
            if new {
                template.arm(ex.templates.file(tick(now), template.deadline(), key));
            }
            Ok((dest, Some(template), new))
        }
        // The sorry server gets no template: the client returns to the realservers as soon
        // as one can take it.
        Persisted::NoDest => sorry(),
    }
}

fn is_syn(flags: u8) -> bool {
    flags & (tcp::SYN | tcp::ACK | tcp::RST | tcp::FIN) == tcp::SYN
}

fn reusable<A: Addr>(c: &Conn<A>) -> bool {
    matches!(c.state(), TcpState::TimeWait | TcpState::Close)
}

/// Leaves the request for the frame with tuple `key` that [`lookup`] offered.
#[cold]
#[inline(never)]
fn request_offload<A: Addr>(
    off: &mut Option<Offloader>,
    snap: &Snapshot,
    ev: Option<&Outbox>,
    key: &ConnKey<A>,
    offer: offload::Offer,
) {
    if let Some(o) = off {
        let k = offload::flow_key(key);
        // While a sync master listens, the program counts the client's frames on.
        let sync = ev.filter(|_| offer.inbound).map(|ob| offload::SyncCount {
            pkts: offer.pkts,
            period: ob.period() as u8,
            due: ob.stored(ob.threshold()),
        });
        o.request = Some(offload::OffloadRequest { key: k, sync });
        o.timeouts = Offloader::timeouts_of(&snap.timeouts);
    }
}

/// The fast path's part of a packet on a known connection (direction `bit`): a TCP connection
/// that left ESTABLISHED gives its offloaded directions back; an established TCP one (or any
/// UDP one) whose direction is not offloaded yet asks for it on a plain frame (no
/// SYN, FIN, RST, not a fragment) when `on`: then it is marked, and true says this frame
/// is the offer.
#[cold]
#[inline(never)]
fn offer<A: Addr>(table: &ConnTable<A>, c: &mut Conn<A>, p: &Parsed<A>, bit: u8, on: bool) -> bool {
    let is_tcp = p.proto == Proto::Tcp;
    if is_tcp
        && c.offload() & (offload::IN | offload::OUT) != 0
        && c.state() != TcpState::Established
    {
        table.unoffload(c);
        return false;
    }
    if on
        && c.offload() & (bit | offload::KEPT) == 0
        && (!is_tcp
            || (c.state() == TcpState::Established
                && p.tcp_flags & (tcp::SYN | tcp::FIN | tcp::RST) == 0))
        && matches!(
            p.kind,
            Kind::Plain {
                first_frag: false,
                ..
            }
        )
        // The program takes only TCP or UDP right after the fixed IP header (no IPv4
        // options, no IPv6 extension header such as an atomic fragment's): an offer for
        // any other frame would be refused and keep the connection for good.
        && p.l4 - p.l3 == if p.src.ip().is_ipv4() { 20 } else { 40 }
    {
        c.set_offload(c.offload() | bit);
        return true;
    }
    false
}

/// Records a packet on a bound connection: TCP state transition (moving the realserver's
/// active/inactive counters; the next client packet reports it) and the idle timeout of the
/// resulting state. Fragments refresh the idle time only (their flags are not known); ICMP
/// errors change nothing (IPVS leaves the state to the connection's own segments).
#[inline(always)]
fn touch<A: Addr>(c: &mut Conn<A>, now_tick: u32, snap: &Snapshot, dir: Dir, p: &Parsed<A>) {
    // The frame's protocol is the connection's (its key matched).
    let timeout = match p.kind {
        Kind::IcmpError { .. } => return,
        Kind::Fragment { .. } => match p.proto {
            Proto::Tcp => snap.timeouts.tcp[c.state() as usize],
            Proto::Udp => snap.timeouts.udp,
        },
        Kind::Plain { .. } => match p.proto {
            Proto::Tcp => {
                let new = tcp_state::next(c.state(), dir, p.tcp_flags);
                if new != c.state() {
                    change_state(c, new);
                }
                snap.timeouts.tcp[c.state() as usize]
            }
            Proto::Udp => snap.timeouts.udp,
        },
    };
    c.touch(now_tick, timeout);
}

/// A TCP state transition (a few per connection, off the per-packet path): moves the
/// realserver's counters and marks it for the next client packet to report (IPVS syncs on
/// client packets only).
#[cold]
#[inline(never)]
fn change_state<A: Addr>(c: &mut Conn<A>, new: TcpState) {
    c.set_state(new);
    c.mark_changed();
}

/// A client packet's rare work on its connection ([`Conn::hooked`]): binding a connection
/// learned from outside and learning its client's hop ([`inject::hooks`]), then, if someone
/// listens, reporting a state change and counting the packet for the sync rule.
#[cold]
#[inline(never)]
fn client_hooks<A: Addr>(
    (c, t): (&mut Conn<A>, Option<&Template<A>>),
    (snap, ev): (&Snapshot, Option<&Outbox>),
    (frame, p): (&[u8], &Parsed<A>),
    rx_iface: IfaceId,
    off: &mut Option<Offloader>,
) {
    inject::hooks(c, snap, frame, rx_iface);
    let changed = c.take_changed();
    if let Some(ob) = ev {
        if changed {
            ob.conn(EventKind::StateChanged, (c, t), snap);
        }
        // The program forwards this connection's client frames and counts them: one that
        // reaches a worker anyway is the one the sync rule picks if it says so (the others
        // were on their way before its entry was filed).
        if c.offload() & offload::IN != 0 && handed(off, c, frame, p) {
            ob.handed_packet((c, t), snap);
        } else {
            ob.client_packet((c, t), snap);
        }
    }
}

/// Whether the XDP program handed `frame`, of offloaded connection `c`, to the worker for
/// the sync rule.
#[cold]
#[inline(never)]
fn handed<A: Addr>(off: &mut Option<Offloader>, c: &Conn<A>, frame: &[u8], p: &Parsed<A>) -> bool {
    let Some(o) = off.as_mut() else {
        return false;
    };
    let k = offload::flow_key(&c.in_key());
    let mark = offload::frame_mark(frame, p.l3 as usize, p.l4 as usize, p.proto.number());
    mark.is_some() && o.seen.handed(&k) == mark
}

/// Rewrites the frame for `action` and returns the egress interface.
#[inline(always)]
fn rewrite<F: Family>(
    snap: &Snapshot,
    frame: &mut [u8],
    p: &Parsed<F>,
    action: Action<F>,
) -> Result<IfaceId, DropReason> {
    let hop = match action {
        Action::ToDest { hop, .. } => hop.ok_or(DropReason::NoNeighbour)?,
        Action::ToClient { hop, .. } => hop,
    };
    let (hop, src_mac) = match snap.iface_mac(hop.iface) {
        Some(m) => (hop, m),
        None => fallback_hop(snap, p.dst.ip(), &action, hop)?,
    };
    match action {
        Action::ToDest {
            fwd: Fwd::Route, ..
        } => F::dec_ttl(&mut frame[p.l3 as usize..])?,
        Action::ToDest {
            fwd: Fwd::Masq,
            daddr,
            dport,
            ..
        } => nat(frame, p, NatField::Dst, daddr, dport)?,
        Action::ToClient { vaddr, vport, .. } => nat(frame, p, NatField::Src, vaddr, vport)?,
    }
    // Parsed frames hold their Ethernet header.
    let eth: &mut [u8; 12] = frame.first_chunk_mut().ok_or(DropReason::Malformed)?;
    eth[..6].copy_from_slice(&hop.mac);
    eth[6..].copy_from_slice(&src_mac);
    Ok(hop.iface)
}

/// A reply whose connection (learned from a peer) does not know its client's hop yet goes by
/// the snapshot's routes towards clients; anything else without a way out is dropped with
/// its reason ([`no_hop`]).
#[cold]
#[inline(never)]
fn fallback_hop<F: Family>(
    snap: &Snapshot,
    client: std::net::IpAddr,
    action: &Action<F>,
    hop: NextHop,
) -> Result<(NextHop, [u8; 6]), DropReason> {
    if matches!(action, Action::ToClient { .. })
        && hop.iface == NextHop::UNKNOWN.iface
        && let Some(h) = snap.client_hop(client)
        && let Some(m) = snap.iface_mac(h.iface)
    {
        return Ok((h, m));
    }
    Err(no_hop(hop.iface))
}

/// Why a frame has no way out through interface `iface`: a client hop still unknown (a
/// connection learned from outside, [`NextHop::UNKNOWN`]), or an interface the snapshot does
/// not have.
#[inline(always)]
fn no_hop(iface: IfaceId) -> DropReason {
    if iface == NextHop::UNKNOWN.iface {
        DropReason::NoClientHop
    } else if iface == NextHop::GONE.iface {
        DropReason::NoDest
    } else {
        DropReason::NoNeighbour
    }
}

/// LVS-NAT rewrite of the source or destination to `addr:port`, with the TTL (hop limit)
/// decremented and every checksum updated incrementally (RFC 1624):
/// - a packet or first fragment: IP header (IPv4), and port and L4 checksum;
/// - a non-first fragment: IP header only (the first fragment's L4 checksum already accounts
///   for the whole datagram);
/// - an ICMP error (IPVS `ip_vs_nat_icmp`, `ip_vs_nat_icmp_v6`): the outer address, the quoted
///   packet's opposite address and port with its IP and L4 checksums, then the ICMP checksum
///   over the message.
#[inline(always)]
fn nat<F: Family>(
    frame: &mut [u8],
    p: &Parsed<F>,
    which: NatField,
    addr: F,
    port: u16,
) -> Result<(), DropReason> {
    let delta = F::set_addr(&mut frame[p.l3 as usize..], which, addr, true)?;
    match p.kind {
        Kind::Plain { .. } => {
            let old_port = match which {
                NatField::Src => p.sport,
                NatField::Dst => p.dport,
            };
            set_l4_port(
                &mut frame[p.l4 as usize..],
                p.proto,
                which,
                delta,
                (old_port, port),
            );
        }
        Kind::Fragment { .. } => {}
        Kind::IcmpError {
            inner_l3,
            inner_l4,
            end,
        } => {
            let inner = which.other();
            let (inner_l3, inner_l4, end) = (inner_l3 as usize, inner_l4 as usize, end as usize);
            let delta = F::set_addr(&mut frame[inner_l3..end], inner, addr, false)?;
            let l4 = &mut frame[inner_l4..end];
            let at = if inner == NatField::Src { 0 } else { 2 };
            let old_port = u16::from_be_bytes([l4[at], l4[at + 1]]);
            set_l4_port(l4, p.proto, inner, delta, (old_port, port));
            F::fill_icmp_checksum(frame, p.l3 as usize, p.l4 as usize, end);
        }
    }
    Ok(())
}

/// Sets a TCP or UDP header's source or destination port and updates its checksum for the
/// port and the pseudo-header address change (`addr_delta`, from [`Family::set_addr`]). `l4`
/// may be a quote cut short: a checksum that lies beyond its end is left alone.
#[inline(always)]
fn set_l4_port(
    l4: &mut [u8],
    proto: Proto,
    which: NatField,
    addr_delta: u32,
    (old_port, port): (u16, u16),
) {
    let at = if which == NatField::Src { 0 } else { 2 };
    l4[at..at + 2].copy_from_slice(&port.to_be_bytes());
    let ck = match proto {
        Proto::Tcp => tcp::CHECKSUM_OFFSET,
        Proto::Udp => crate::wire::udp::CHECKSUM_OFFSET,
    };
    if l4.len() < ck + 2 {
        return;
    }
    let old = u16::from_be_bytes([l4[ck], l4[ck + 1]]);
    // Zero means "no checksum" in UDP over IPv4 (and is invalid over IPv6): leave it so.
    if proto == Proto::Udp && old == 0 {
        return;
    }
    let mut c = checksum::apply(old, addr_delta + checksum::delta16(old_port, port));
    if proto == Proto::Udp && c == 0 {
        c = 0xffff;
    }
    l4[ck..ck + 2].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_hooks;
#[cfg(test)]
mod tests_offload;
#[cfg(test)]
mod tests_straight;
#[cfg(test)]
mod tests_v6;
