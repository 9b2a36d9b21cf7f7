//! The services table as the workers see it: an immutable [`Snapshot`] that the control thread
//! rebuilds and swaps in whole. Per-realserver state that must outlive a snapshot (connection
//! counters, the L2 next hop) lives in an `Arc<DestState>` that successive snapshots share, so a
//! configuration change never resets counters nor disturbs existing connections.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::sched::Scheduler;
use super::stats::DestCounters;
use super::tcp_state::TcpState;
use crate::bond::Egress;
use crate::wire::{PROTO_TCP, PROTO_UDP};

/// Index of one of the director's interfaces in [`Snapshot::ifaces`].
pub type IfaceId = u8;

/// Transport protocol of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => PROTO_TCP,
            Proto::Udp => PROTO_UDP,
        }
    }

    /// The protocol of an IP protocol number, if it is TCP or UDP.
    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            PROTO_TCP => Some(Proto::Tcp),
            PROTO_UDP => Some(Proto::Udp),
            _ => None,
        }
    }

    /// ipvsadm's name in listings (`TCP`, `UDP`).
    pub fn label(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
}

/// A virtual service: (protocol, VIP, vport).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct VsKey {
    pub proto: Proto,
    pub addr: IpAddr,
    pub port: u16,
}

impl fmt::Display for VsKey {
    /// ipvsadm's `ADDR:PORT`, `[ADDR]:PORT` for IPv6.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        std::net::SocketAddr::new(self.addr, self.port).fmt(f)
    }
}

/// Packet forwarding method of a realserver (ipvsadm `-m` / `-g`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Fwd {
    /// LVS-NAT (`-m`, "Masq"): DNAT towards the realserver, SNAT of its replies.
    Masq,
    /// LVS-DR (`-g`, "Route"): only the MAC is rewritten; replies bypass the director.
    Route,
}

impl Fwd {
    /// ipvsadm's name in `-L` listings.
    pub fn label(self) -> &'static str {
        match self {
            Fwd::Masq => "Masq",
            Fwd::Route => "Route",
        }
    }
}

/// Where to send a frame at L2: an egress interface and the next hop's MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    pub iface: IfaceId,
    pub mac: [u8; 6],
}

impl NextHop {
    const VALID: u64 = 1 << 63;

    /// The client hop of a connection learned from outside before its client's first frame:
    /// an interface the snapshot never has, so a reply for it is dropped.
    pub const UNKNOWN: NextHop = NextHop {
        iface: IfaceId::MAX,
        mac: [0; 6],
    };

    /// The next hop of a connection whose realserver left the table, with
    /// `expire_nodest_conn`: an interface the snapshot never has, so its frames are dropped
    /// (as [`crate::core::DropReason::NoDest`]) until it expires.
    pub const GONE: NextHop = NextHop {
        iface: IfaceId::MAX - 1,
        mac: [0; 6],
    };

    fn pack(self) -> u64 {
        let mut m = [0u8; 8];
        m[2..].copy_from_slice(&self.mac);
        Self::VALID | (self.iface as u64) << 48 | u64::from_be_bytes(m)
    }

    fn unpack(v: u64) -> Option<NextHop> {
        if v & Self::VALID == 0 {
            return None;
        }
        let b = v.to_be_bytes();
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&b[2..]);
        Some(NextHop {
            iface: (v >> 48) as u8,
            mac,
        })
    }
}

/// State of a realserver that outlives snapshots: shared by every snapshot that contains the
/// realserver and by every connection bound to it.
///
/// Laid out by cache line: what every packet of its connections reads (the next hop, where
/// its traffic counters are) and its address first; the connection counters, which every
/// worker writes with each connection that starts, changes state or ends, on a line of their
/// own after. (Its alignment also keeps its `Arc`'s reference counts, written as connections
/// come and go, on the line before.) So a worker forwarding an established connection's
/// packets does not miss its cache whenever another opens a connection to the realserver.
#[derive(Debug)]
#[repr(C)]
pub struct DestState {
    /// Packed [`NextHop`]; zero until the control thread resolved the realserver's MAC.
    next_hop: AtomicU64,
    /// Connections, packets and bytes (IPVS `dest->stats`), per worker.
    pub stats: DestCounters,
    /// The realserver's address (fixed for its lifetime).
    pub addr: IpAddr,
    /// Its port; 0 for a fwmark service's realserver (the port the client asked for).
    pub port: u16,
    _written_below: CacheLine,
    /// Connections in an active state: ESTABLISHED or the handshake (IPVS `activeconns`).
    pub active: AtomicU32,
    /// Connections in any other state, and UDP ones (IPVS `inactconns`).
    pub inactive: AtomicU32,
    /// Persistence templates bound to it (IPVS `persistconns`).
    pub persist: AtomicU32,
    /// Upper connection threshold (`-x`); 0 = none.
    pub u_threshold: AtomicU32,
    /// Lower connection threshold (`-y`); 0 = none.
    pub l_threshold: AtomicU32,
    /// IPVS `IP_VS_DEST_F_OVERLOAD`: the upper threshold was reached; no new connections until
    /// the count falls below the lower one.
    overload: AtomicBool,
}

/// Starts a new cache line in a `#[repr(C)]` struct (and aligns the struct to one).
#[derive(Debug, Default)]
#[repr(align(64))]
struct CacheLine;

/// What a connection counts as on its realserver (IPVS `ip_vs_bind_dest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    Active,
    Inactive,
    /// A persistence template.
    Template,
}

impl DestState {
    /// The state of realserver `addr:port`: no connections, no thresholds, next hop unknown.
    pub fn new(addr: IpAddr, port: u16) -> Self {
        DestState {
            addr,
            port,
            active: AtomicU32::new(0),
            inactive: AtomicU32::new(0),
            persist: AtomicU32::new(0),
            u_threshold: AtomicU32::new(0),
            l_threshold: AtomicU32::new(0),
            overload: AtomicBool::new(false),
            next_hop: AtomicU64::new(0),
            stats: DestCounters::default(),
            _written_below: CacheLine,
        }
    }

    /// Whether it is realserver `addr:port`.
    pub fn is(&self, addr: IpAddr, port: u16) -> bool {
        self.addr == addr && self.port == port
    }

    /// The L2 next hop, once the control thread resolved it.
    pub fn next_hop(&self) -> Option<NextHop> {
        NextHop::unpack(self.next_hop.load(Ordering::Relaxed))
    }

    /// Set by the control thread when the neighbour table changes.
    pub fn set_next_hop(&self, hop: Option<NextHop>) {
        self.next_hop
            .store(hop.map_or(0, NextHop::pack), Ordering::Relaxed);
    }

    /// Its active and inactive counts as this thread's scheduler sees them: the shared
    /// counts and this worker's deferred changes ([`super::stats::defer_counts`]); other
    /// workers' deferred changes are not in them (at most (workers − 1) ×
    /// ([`super::stats::DEFER_MAX`] − 1) each, for about a millisecond).
    #[inline(always)]
    fn seen(&self) -> (u64, u64) {
        let (da, di) = super::stats::deferring().map_or((0, 0), |w| self.stats.deferred(w));
        (
            count(&self.active, da) as u64,
            count(&self.inactive, di) as u64,
        )
    }

    /// IPVS `ip_vs_dest_conn_overhead`: active × 256 + inactive, as this thread's scheduler
    /// sees them.
    #[inline]
    pub fn overhead(&self) -> u64 {
        let (a, i) = self.seen();
        (a << 8) + i
    }

    /// Its active connections as this thread's scheduler sees them (nq, sed).
    #[inline]
    pub fn active_seen(&self) -> u64 {
        self.seen().0
    }

    /// Its active and inactive connections (IPVS `activeconns`, `inactconns`): the shared
    /// counts and every worker's deferred changes, for listings and counters.
    pub fn conns(&self) -> (u32, u32) {
        let (da, di) = self.stats.all_deferred();
        (count(&self.active, da), count(&self.inactive, di))
    }

    /// IPVS `ip_vs_dest_totalconns`: active + inactive + templates, what thresholds compare.
    pub fn total_conns(&self) -> u32 {
        let (a, i) = self.conns();
        a + i + self.persist.load(Ordering::Relaxed)
    }

    pub fn overloaded(&self) -> bool {
        self.overload.load(Ordering::Relaxed)
    }

    fn counter(&self, b: Binding) -> &AtomicU32 {
        match b {
            Binding::Active => &self.active,
            Binding::Inactive => &self.inactive,
            Binding::Template => &self.persist,
        }
    }

    /// Counts a new connection or template (IPVS `ip_vs_bind_dest`): reaching the upper
    /// threshold marks the realserver overloaded.
    #[inline]
    pub fn bind(self: &Arc<Self>, b: Binding) {
        if let Some(w) = self.deferring_for(b)
            && self.defer(w, b, 1)
        {
            return;
        }
        self.counter(b).fetch_add(1, Ordering::Relaxed);
        let u = self.u_threshold.load(Ordering::Relaxed);
        if u != 0 && self.total_conns() >= u {
            self.overload.store(true, Ordering::Relaxed);
        }
    }

    /// Releases a connection or template (IPVS `ip_vs_unbind_dest`): the overload clears below
    /// the lower threshold, or below 3/4 of the upper one when no lower one is set.
    #[inline]
    pub fn unbind(self: &Arc<Self>, b: Binding) {
        if let Some(w) = self.deferring_for(b)
            && !self.overloaded()
            && self.defer(w, b, -1)
        {
            return;
        }
        self.counter(b).fetch_sub(1, Ordering::Relaxed);
        self.recheck_overload();
    }

    /// Moves a connection between the active and inactive counters (a TCP state change).
    /// Subtracts first: a racing `bind` must not see the connection counted twice and latch
    /// an overload.
    #[inline]
    pub fn rebind(self: &Arc<Self>, from: Binding, to: Binding) {
        // The total does not change: nothing to latch, even with a threshold.
        if let Some(w) = super::stats::deferring()
            && from != Binding::Template
            && to != Binding::Template
            && self.defer(w, from, -1)
        {
            self.defer(w, to, 1);
            return;
        }
        self.counter(from).fetch_sub(1, Ordering::Relaxed);
        self.counter(to).fetch_add(1, Ordering::Relaxed);
    }

    /// The worker whose shard this thread defers a new or ending connection's change to
    /// count `b` in ([`super::stats::defer_counts`]): none for a template, or for a
    /// realserver with an upper threshold (counted at once, so the overload latches exactly).
    #[inline(always)]
    fn deferring_for(&self, b: Binding) -> Option<usize> {
        let w = super::stats::deferring()?;
        (b != Binding::Template && self.u_threshold.load(Ordering::Relaxed) == 0).then_some(w)
    }

    /// Defers a change of `d` to count `b` in worker `w`'s shard, listing the realserver for
    /// its thread's next flush ([`flush_deferred_counts`]) when it is not listed yet. False
    /// if `w` does not defer (the control thread's shard, or one beyond the shards).
    #[inline(always)]
    fn defer(self: &Arc<Self>, w: usize, b: Binding, d: i32) -> bool {
        use super::stats::Deferred;
        match self
            .stats
            .defer(w, b == Binding::Active, d, self.counter(b))
        {
            Deferred::No => false,
            Deferred::Listed => true,
            Deferred::ListNow => {
                TO_FLUSH.with(|l| l.borrow_mut().push((w, self.clone())));
                true
            }
        }
    }

    fn recheck_overload(&self) {
        if !self.overloaded() {
            return;
        }
        let l = self.l_threshold.load(Ordering::Relaxed);
        let u = self.u_threshold.load(Ordering::Relaxed);
        let total = self.total_conns() as u64;
        let clear = if l != 0 {
            total < l as u64
        } else if u != 0 {
            total * 4 < u as u64 * 3
        } else {
            true
        };
        if clear {
            self.overload.store(false, Ordering::Relaxed);
        }
    }

    /// New thresholds from the control thread (IPVS `__ip_vs_update_dest`): removing the upper
    /// threshold or raising it clears the overload.
    pub fn set_thresholds(&self, upper: u32, lower: u32) {
        let old = self.u_threshold.load(Ordering::Relaxed);
        if upper == 0 || upper > old {
            self.overload.store(false, Ordering::Relaxed);
        }
        self.u_threshold.store(upper, Ordering::Relaxed);
        self.l_threshold.store(lower, Ordering::Relaxed);
    }
}

thread_local! {
    /// The realservers this thread's workers deferred count changes on since its last
    /// [`flush_deferred_counts`], with the worker (one entry per realserver and worker; the
    /// `Arc` keeps a realserver that left the table until its changes are added).
    static TO_FLUSH: std::cell::RefCell<Vec<(usize, Arc<DestState>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether this thread has deferred count changes to flush ([`flush_deferred_counts`]).
pub fn deferred_counts_pending() -> bool {
    TO_FLUSH.with(|l| !l.borrow().is_empty())
}

/// Adds this thread's workers' deferred connection-count changes to the realservers' shared
/// counts ([`super::stats::defer_counts`]): a worker thread's, every millisecond while it has
/// any. Its cost is one entry per realserver a worker changed since the last flush.
pub fn flush_deferred_counts() {
    // Flushing lists nothing, so the list stays borrowed (and keeps its buffer).
    TO_FLUSH.with(|l| {
        for (w, d) in l.borrow_mut().drain(..) {
            d.stats.flush_deferred(w, &d.active, &d.inactive);
        }
    });
}

/// A shared count with a worker's or every worker's deferred changes `d`, read as signed: a
/// shared count is below zero (wrapped) while a worker holds connections it ended that
/// another counted. Never below zero.
#[inline(always)]
fn count(shared: &AtomicU32, d: i32) -> u32 {
    (shared.load(Ordering::Relaxed) as i32 + d).max(0) as u32
}

/// A realserver of one service, as configured in this snapshot.
#[derive(Clone, Debug)]
pub struct Dest {
    pub addr: IpAddr,
    pub port: u16,
    pub fwd: Fwd,
    /// IPVS weight; 0 means quiescent: no new connections, existing ones continue.
    pub weight: u32,
    /// The last non-zero weight (IPVS `last_weight`): Maglev keeps a quiesced realserver's
    /// table slots, so quiescing one does not remap the others' flows.
    pub last_weight: u32,
    pub state: Arc<DestState>,
}

impl Dest {
    /// Whether the scheduler may give it a new connection: weight > 0 and not overloaded
    /// (IPVS skips `IP_VS_DEST_F_OVERLOAD` and weight 0 in every scheduler).
    pub fn available(&self) -> bool {
        self.weight > 0 && !self.state.overloaded()
    }
}

/// Persistence of a service (`-p timeout -M netmask`, IPVS `IP_VS_SVC_F_PERSISTENT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Persistence {
    /// How long a client's template outlives its last connection (ipvsadm default 300 s).
    pub timeout: Duration,
    /// Clients are grouped by `caddr & netmask` (default 255.255.255.255, or /128 for an
    /// IPv6 service: per client).
    pub netmask: IpAddr,
}

impl Default for Persistence {
    fn default() -> Self {
        Persistence {
            timeout: Duration::from_secs(300),
            netmask: IpAddr::V4(Ipv4Addr::BROADCAST),
        }
    }
}

/// A virtual service and its realservers, in IPVS list order.
#[derive(Debug)]
pub struct Service {
    /// The key it is found under; for a fwmark service, (TCP, its family's unspecified
    /// address, 0): the snapshot lists it under each (proto, VIP, vport) of its mark instead.
    pub key: VsKey,
    /// A fwmark service's mark (`-f`), 0 for an address service. Its persistence templates
    /// are keyed by the mark (IPVS: protocol IP, vaddr = mark, vport 0), so one client sticks to
    /// one realserver across every port and protocol of the mark.
    pub mark: u32,
    pub sched: Box<dyn Scheduler>,
    /// Its realservers; port 0 (fwmark services) forwards to the port the client asked for.
    pub dests: Vec<Dest>,
    /// Persistence, if the service is persistent.
    pub persist: Option<Persistence>,
    /// Sorry server (keepalived's `sorry_server`): takes new connections when no realserver
    /// can (all quiescent, overloaded or none configured).
    pub sorry: Option<Dest>,
}

/// One of the director's (logical) interfaces, as the data plane needs it: a plain NIC or
/// a bond.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceInfo {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// The port(s) its frames leave on.
    pub egress: Egress,
}

/// IPVS timeouts per protocol state (defaults from `ip_vs_proto_tcp.c` / `ip_vs_proto_udp.c`),
/// in whole seconds as `ipvsadm --set` gives them: a packet turns one into a deadline with an
/// add and a shift (wheel ticks are 1/16 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: [u32; TcpState::COUNT],
    pub udp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        let mut tcp = [0; TcpState::COUNT];
        for st in TcpState::ALL {
            tcp[st as usize] = match st {
                TcpState::None => 2,
                TcpState::Established => 15 * 60,
                TcpState::SynSent => 2 * 60,
                TcpState::SynRecv => 60,
                TcpState::FinWait => 2 * 60,
                TcpState::TimeWait => 2 * 60,
                TcpState::Close => 10,
                TcpState::CloseWait => 60,
                TcpState::LastAck => 30,
                TcpState::Listen => 2 * 60,
                TcpState::SynAck => 2 * 60,
            };
        }
        Timeouts { tcp, udp: 5 * 60 }
    }
}

/// Everything the workers read to forward a frame. Immutable once published.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub services: HashMap<VsKey, Arc<Service>, ahash::RandomState>,
    pub ifaces: Vec<IfaceInfo>,
    pub timeouts: Timeouts,
    /// IPVS `expire_nodest_conn`: a client packet of a connection whose realserver is no
    /// longer in the table (marked by [`crate::core::conn::Tables::unbind_gone`]) expires it
    /// instead of being forwarded to it.
    pub expire_nodest_conn: bool,
    /// Where replies go for a connection learned from a peer whose client's hop is not
    /// known yet (it never saw the client's frames): the director's routes towards the
    /// clients such connections came from, longest prefix first ([`Snapshot::client_hop`]).
    pub client_routes: Vec<ClientRoute>,
}

/// A route towards clients: the prefix and the next hop's state (kept up to date by the
/// control thread's resolver, read atomically).
#[derive(Clone, Debug)]
pub struct ClientRoute {
    pub net: IpAddr,
    pub len: u8,
    pub via: Arc<DestState>,
}

impl ClientRoute {
    fn covers(&self, a: IpAddr) -> bool {
        match (self.net, a) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = u32::MAX
                    .checked_shl(32 - self.len.min(32) as u32)
                    .unwrap_or(0);
                n.to_bits() & m == a.to_bits() & m
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = u128::MAX
                    .checked_shl(128 - self.len.min(128) as u32)
                    .unwrap_or(0);
                n.to_bits() & m == a.to_bits() & m
            }
            _ => false,
        }
    }
}

impl Snapshot {
    /// The next hop towards client `a` from [`Snapshot::client_routes`]: the longest prefix
    /// whose next hop is resolved (the cold path of a reply whose connection does not know
    /// its client's hop).
    pub fn client_hop(&self, a: IpAddr) -> Option<NextHop> {
        self.client_routes
            .iter()
            .filter(|r| r.covers(a))
            .filter_map(|r| r.via.next_hop().map(|h| (r.len, h)))
            .max_by_key(|(len, _)| *len)
            .map(|(_, h)| h)
    }

    pub fn service(&self, key: &VsKey) -> Option<&Service> {
        self.services.get(key).map(|s| &**s)
    }

    pub fn iface_mac(&self, id: IfaceId) -> Option<[u8; 6]> {
        self.ifaces.get(id as usize).map(|i| i.mac)
    }

    /// The port a frame (rewritten, ready to go) for logical interface `id` leaves on; none
    /// if no port can transmit.
    #[inline(always)]
    pub fn egress_port(&self, id: IfaceId, frame: &[u8]) -> Option<crate::bond::PortId> {
        self.ifaces.get(id as usize)?.egress.port(frame)
    }

    /// The bond's transmit hash of a frame for logical interface `id` ([`Egress::hash`]).
    ///
    /// [`Egress::hash`]: crate::bond::Egress::hash
    pub fn egress_hash(&self, id: IfaceId, frame: &[u8]) -> u32 {
        self.ifaces
            .get(id as usize)
            .map_or(0, |i| i.egress.hash(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What packets read and what new connections write are on different cache lines.
    #[test]
    fn a_realservers_counters_are_on_a_line_of_their_own() {
        let d = DestState::new(Ipv4Addr::new(10, 0, 0, 1).into(), 80);
        let at = |p: *const u8| p as usize - &d as *const DestState as usize;
        let line = |p: *const u8| (at(p) / 64, at(p) % 64);
        assert_eq!(std::mem::align_of::<DestState>(), 64);
        let read = [
            line(&d.next_hop as *const _ as *const u8),
            line(&d.stats as *const _ as *const u8),
        ];
        for (l, _) in read {
            assert_eq!(l, 0, "{read:?}");
        }
        for w in [&d.active as *const AtomicU32, &d.inactive, &d.persist] {
            assert_eq!(line(w as *const u8).0, 1);
        }
    }

    /// A realserver with shards for `workers` workers and the control thread.
    fn with_workers(workers: usize) -> Arc<DestState> {
        Arc::new(DestState {
            stats: DestCounters::with_shards(workers + 1),
            ..DestState::new(Ipv4Addr::new(10, 0, 0, 1).into(), 80)
        })
    }

    /// The shared active and inactive counts.
    fn shared(d: &DestState) -> (u32, u32) {
        (
            d.active.load(Ordering::Relaxed),
            d.inactive.load(Ordering::Relaxed),
        )
    }

    #[test]
    fn a_workers_count_changes_wait_in_its_shard_until_they_add_up() {
        use super::super::stats::{DEFER_MAX, defer_counts};
        let d = with_workers(2);
        defer_counts(Some(0));
        for _ in 0..3 {
            d.bind(Binding::Active);
        }
        assert_eq!(shared(&d), (0, 0), "the shared line is not written");
        assert_eq!(d.conns(), (3, 0), "listings count every shard");
        assert_eq!(d.overhead(), 3 << 8, "its own scheduler sees its changes");
        defer_counts(Some(1));
        assert_eq!(d.overhead(), 0, "another worker's does not, yet");
        defer_counts(Some(0));
        for _ in 3..DEFER_MAX {
            d.bind(Binding::Active);
        }
        assert_eq!(shared(&d), (DEFER_MAX as u32, 0), "added up at DEFER_MAX");
        // A state change moves one from active to inactive, deferred both ways.
        d.rebind(Binding::Active, Binding::Inactive);
        assert_eq!(shared(&d), (DEFER_MAX as u32, 0));
        assert_eq!(d.conns(), (DEFER_MAX as u32 - 1, 1));
        assert!(deferred_counts_pending());
        flush_deferred_counts();
        assert!(!deferred_counts_pending());
        assert_eq!(shared(&d), (DEFER_MAX as u32 - 1, 1));
        // Worker 1 ends connections worker 0 counted: the shared count may go below what a
        // shard still holds, never the sum.
        for _ in 0..DEFER_MAX + 1 {
            d.bind(Binding::Active);
        }
        defer_counts(Some(1));
        for _ in 0..DEFER_MAX * 2 - 1 {
            d.unbind(Binding::Active);
        }
        assert_eq!(d.conns(), (1, 1));
        assert_eq!(
            d.overhead() >> 8,
            0,
            "worker 1 sees none (a count never below zero)"
        );
        defer_counts(Some(0));
        assert_eq!(
            d.overhead() >> 8,
            1 + (DEFER_MAX as u64 - 1),
            "worker 0 does not see worker 1's last 7 yet: (workers - 1) x (DEFER_MAX - 1) at most"
        );
        defer_counts(None);
        assert_eq!(d.total_conns(), 2);
    }

    #[test]
    fn thresholds_and_threads_that_do_not_defer_count_at_once() {
        use super::super::stats::defer_counts;
        let d = with_workers(2);
        // The control thread (its shard, the last), and threads that set nothing.
        for w in [Some(2), Some(7), None] {
            defer_counts(w);
            d.bind(Binding::Inactive);
        }
        assert_eq!(shared(&d), (0, 3));
        // With an upper threshold a worker counts at once, so the overload latches exactly.
        defer_counts(Some(0));
        d.set_thresholds(5, 0);
        d.bind(Binding::Active);
        assert!(!d.overloaded());
        d.bind(Binding::Active);
        assert!(d.overloaded(), "5 connections with -x 5");
        assert_eq!(shared(&d), (2, 3));
        d.unbind(Binding::Active);
        d.unbind(Binding::Inactive);
        assert!(!d.overloaded(), "3 < 3/4 of 5");
        defer_counts(None);
    }

    #[test]
    fn a_thread_flushes_what_its_workers_deferred_on_any_realserver() {
        use super::super::stats::defer_counts;
        // Two workers on one thread; realservers in no snapshot (a sorry server, or one
        // that left the table) are flushed as well.
        let (a, b) = (with_workers(2), with_workers(2));
        for w in [0, 1] {
            defer_counts(Some(w));
            a.bind(Binding::Active);
            b.bind(Binding::Inactive);
            b.bind(Binding::Inactive);
        }
        assert_eq!((shared(&a), shared(&b)), ((0, 0), (0, 0)));
        TO_FLUSH.with(|l| assert_eq!(l.borrow().len(), 4, "once per realserver and worker"));
        flush_deferred_counts();
        assert_eq!((shared(&a), shared(&b)), ((2, 0), (0, 4)));
        assert!(!deferred_counts_pending());
        // Listed again at the next change.
        defer_counts(Some(1));
        a.unbind(Binding::Active);
        assert!(deferred_counts_pending());
        flush_deferred_counts();
        assert_eq!(shared(&a), (1, 0));
        defer_counts(None);
    }

    #[test]
    fn next_hop_round_trips() {
        let s = DestState::new(Ipv4Addr::new(10, 0, 0, 1).into(), 80);
        assert!(s.is(Ipv4Addr::new(10, 0, 0, 1).into(), 80));
        assert!(!s.is(Ipv4Addr::new(10, 0, 0, 1).into(), 81));
        assert_eq!(s.next_hop(), None);
        let hop = NextHop {
            iface: 3,
            mac: [0xfe, 1, 2, 3, 4, 0xff],
        };
        s.set_next_hop(Some(hop));
        assert_eq!(s.next_hop(), Some(hop));
        s.set_next_hop(None);
        assert_eq!(s.next_hop(), None);
    }

    #[test]
    fn default_timeouts_are_ipvs() {
        let t = Timeouts::default();
        assert_eq!(t.tcp[TcpState::Established as usize], 900);
        assert_eq!(t.tcp[TcpState::FinWait as usize], 120);
        assert_eq!(t.udp, 300);
    }
}
