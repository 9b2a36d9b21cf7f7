//! Connection events for the control plane's connection sync (IPVS `ip_vs_sync_conn`): each
//! worker's [`Core`](super::Core) puts them in its [`Outbox`], a bounded lock-free ring that a
//! reader (the control thread) drains.
//!
//! Nothing is produced while no one listens: the core keeps the outbox out of its per-packet
//! path until [`Outbox::set_listening`] is seen (by [`Core::refresh_listening`], once per batch),
//! and then only counts client packets (`Conn::in_pkts`) and looks at its events when listening.
//! An event is a copy of everything a sync message needs; a full ring drops it and counts it.
//!
//! [`Core::refresh_listening`]: super::Core::refresh_listening

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam::queue::ArrayQueue;

use super::addr::Addr;
use super::conn::{Conn, Template};
use super::service::{Fwd, Proto, Snapshot};
use super::tcp_state::TcpState;

/// What happened to a connection or template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A connection scheduled by this worker.
    Created,
    /// A TCP state transition.
    StateChanged,
    /// The IPVS sync rule: the connection's `threshold`-th, then every `period`-th client →
    /// director packet ([`Outbox::with_sync`]).
    Packets,
    /// A persistence template made for a new connection.
    TemplateCreated,
    /// An existing persistence template reused by a new connection.
    TemplateRefreshed,
    /// The connection or template left the table (idle past its timeout, or a connection
    /// reused by a new SYN).
    Expired,
}

/// A connection or template as a sync message carries it (IPVS sync v1 entry), copied out.
/// A connection's event is followed by the same kind of event for its persistence template,
/// if it has one (as IPVS sends `cp->control` right after `cp`), except `Created`, followed
/// by `TemplateCreated` or `TemplateRefreshed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnEvent {
    /// What happened.
    pub kind: EventKind,
    /// IP protocol number: 6 or 17; 0 for a fwmark service's template.
    pub proto: u8,
    /// Forwarding method (LVS-NAT or LVS-DR).
    pub fwd: Fwd,
    /// TCP state (`None` for UDP and templates).
    pub state: TcpState,
    /// A persistence template: `caddr` is the masked client address, `cport` 0, `vaddr` the
    /// mark for a fwmark service.
    pub template: bool,
    /// Counted inactive on its realserver (IPVS `IP_VS_CONN_F_INACTIVE`).
    pub inactive: bool,
    /// A connection controlled by a persistence template (IPVS `in_persistence`).
    pub persistent: bool,
    /// The mark of the fwmark service it belongs to (IPVS `cp->fwmark`), 0 for an address
    /// service's connection (a fwmark template carries its mark in `vaddr`).
    pub fwmark: u32,
    /// Client port (0 for a template).
    pub cport: u16,
    /// Virtual service port.
    pub vport: u16,
    /// Realserver port.
    pub dport: u16,
    /// Seconds: the full timeout of its state, or a template's persistence timeout (what IPVS
    /// sync v1 sends); 0 for `Expired`.
    pub timeout: u32,
    /// Client address (masked for a template).
    pub caddr: IpAddr,
    /// Virtual address (a fwmark service's template: the mark).
    pub vaddr: IpAddr,
    /// Realserver address.
    pub daddr: IpAddr,
}

impl ConnEvent {
    /// Event `kind` of connection `c`, whose state's timeout is `timeout` seconds.
    pub fn of_conn<A: Addr>(kind: EventKind, c: &Conn<A>, timeout: u32) -> Self {
        ConnEvent {
            kind,
            proto: c.proto().number(),
            fwd: c.fwd(),
            state: c.state(),
            template: false,
            inactive: c.inactive(),
            persistent: c.persistent(),
            fwmark: 0,
            cport: c.cport,
            vport: c.vport,
            dport: c.dport,
            timeout,
            caddr: c.caddr.ip(),
            vaddr: c.vaddr.ip(),
            daddr: c.daddr.ip(),
        }
    }

    /// Event `kind` of template `t`.
    pub fn of_template<A: Addr>(kind: EventKind, t: &Template<A>) -> Self {
        let (daddr, dport) = t.dest_addr();
        ConnEvent {
            kind,
            proto: t.key.proto,
            fwd: t.fwd,
            state: TcpState::None,
            template: true,
            inactive: false,
            persistent: false,
            fwmark: 0,
            cport: 0,
            vport: t.key.vport,
            dport,
            timeout: t.timeout().as_secs() as u32,
            caddr: t.key.caddr.ip(),
            vaddr: t.key.vaddr.ip(),
            daddr,
        }
    }
}

/// The mark of the fwmark service connection `c` belongs to, 0 if none.
pub(crate) fn fwmark_of<A: Addr>(c: &Conn<A>, snap: &Snapshot) -> u32 {
    let key = super::service::VsKey {
        proto: c.proto(),
        addr: c.vaddr.ip(),
        port: c.vport,
    };
    snap.service(&key).map_or(0, |s| s.mark)
}

/// The timeout of `c`'s state in `snap`, in seconds.
pub(crate) fn state_timeout<A>(c: &Conn<A>, snap: &Snapshot) -> u32 {
    match c.proto() {
        Proto::Tcp => snap.timeouts.tcp[c.state() as usize],
        Proto::Udp => snap.timeouts.udp,
    }
}

/// How a worker wakes the reader of its outbox at once (the control thread's event loop).
pub type Wake = std::sync::Arc<dyn Fn() + Send + Sync>;

/// One worker's connection events: a bounded lock-free ring, its worker the only producer.
///
/// Most events wait for the reader's next periodic drain. A TCP connection that just became
/// ESTABLISHED is *urgent* (a sync master sends it at once, so a backup knows it before the
/// master can die): after the batch that produced one, the worker wakes the reader
/// ([`Outbox::wake_if_urgent`]), at most once per drain (the reader re-arms the wakeup with
/// [`Outbox::arm`] each time it drains), so a storm of new connections costs the reader one
/// wakeup per drain, not one per connection.
pub struct Outbox {
    ring: ArrayQueue<ConnEvent>,
    dropped: AtomicU64,
    listening: AtomicBool,
    threshold: u32,
    period: u32,
    /// An urgent event was pushed since the worker last looked.
    urgent: AtomicBool,
    /// The reader drained since the last wakeup: the next urgent event may wake it.
    armed: AtomicBool,
    waker: std::sync::OnceLock<Wake>,
    wakeups: AtomicU64,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("len", &self.ring.len())
            .field("dropped", &self.dropped)
            .field("listening", &self.listening)
            .field("wakeups", &self.wakeups)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// IPVS's default `sync_threshold` (the first of `"3 50"`).
    pub const SYNC_THRESHOLD: u32 = 3;
    /// IPVS's default `sync_period`.
    pub const SYNC_PERIOD: u32 = 50;

    /// An outbox of `capacity` events with IPVS's default sync rule; not listening.
    pub fn new(capacity: usize) -> Self {
        Self::with_sync(capacity, Self::SYNC_THRESHOLD, Self::SYNC_PERIOD)
    }

    /// An outbox of `capacity` events whose connections are reported at their `threshold`-th
    /// client packet, then every `period` packets (period 0: only at the threshold). A
    /// connection keeps its count in one byte, modulo the period: the period is at most 255
    /// and the threshold at most 254 (larger values are cut to these).
    pub fn with_sync(capacity: usize, threshold: u32, period: u32) -> Self {
        Outbox {
            ring: ArrayQueue::new(capacity.max(1)),
            dropped: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            threshold: threshold.min(254),
            period: period.min(255),
            urgent: AtomicBool::new(false),
            armed: AtomicBool::new(true),
            waker: std::sync::OnceLock::new(),
            wakeups: AtomicU64::new(0),
        }
    }

    /// How the worker wakes the reader for an urgent event (set once; later calls are
    /// ignored).
    pub fn set_waker(&self, wake: Wake) {
        let _ = self.waker.set(wake);
    }

    /// The reader drained: the next urgent event may wake it again.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::Release);
    }

    /// Called by the worker after a batch: wakes the reader if the batch pushed an urgent
    /// event and the reader has drained since its last wakeup (otherwise the wakeup already
    /// on its way, or the next periodic drain, takes the event).
    #[inline]
    pub fn wake_if_urgent(&self) {
        if !self.urgent.load(Ordering::Relaxed) {
            return;
        }
        self.urgent.store(false, Ordering::Relaxed);
        if self.armed.swap(false, Ordering::AcqRel)
            && let Some(w) = self.waker.get()
        {
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            w();
        }
    }

    /// Wakeups the worker gave the reader.
    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }

    /// The count a connection stores after `pkts` client packets: `pkts` modulo the period
    /// (with period 0, `pkts` up to 255).
    pub fn stored(&self, pkts: u32) -> u8 {
        match self.period {
            0 => pkts.min(255) as u8,
            p => (pkts % p) as u8,
        }
    }

    /// Whether a connection's first client packet (the one that creates it) is the one the
    /// sync rule reports (a threshold of 1).
    pub fn picks_first_packet(&self) -> bool {
        self.stored(1) == self.stored(self.threshold)
    }

    /// Starts or stops the events (the worker sees it at its next batch).
    pub fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::Relaxed);
    }

    /// Whether events are wanted.
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// The next event, oldest first.
    pub fn pop(&self) -> Option<ConnEvent> {
        self.ring.pop()
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Events dropped because the ring was full.
    pub fn events_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The packet count `threshold` an inserted connection starts from (IPVS sets a synced
    /// connection's `in_pkts` to it, so it is sent again `period` packets later).
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// The sync period (at most 255; 0: none).
    pub fn period(&self) -> u32 {
        self.period
    }

    /// Adds an event; a full ring drops it (counted). Never blocks, never allocates.
    pub fn push(&self, e: ConnEvent) {
        if self.ring.push(e).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether a connection's `pkts`-th client packet is one the sync rule reports.
    pub fn sync_due(&self, pkts: u32) -> bool {
        if self.period == 0 {
            pkts == self.threshold
        } else {
            pkts % self.period == self.threshold
        }
    }

    /// Event `kind` of connection `c` (state timeout from `snap`), then of its template `t`.
    pub(crate) fn conn<A: Addr>(
        &self,
        kind: EventKind,
        (c, t): (&Conn<A>, Option<&Template<A>>),
        snap: &Snapshot,
    ) {
        let mut e = ConnEvent::of_conn(kind, c, state_timeout(c, snap));
        e.fwmark = fwmark_of(c, snap);
        if kind == EventKind::StateChanged && e.proto == 6 && e.state == TcpState::Established {
            self.urgent.store(true, Ordering::Relaxed);
        }
        self.push(e);
        if let Some(t) = t {
            self.push(ConnEvent::of_template(kind, t));
        }
    }

    /// A client → director packet went through connection `c`: counted, and reported if the
    /// sync rule picks it.
    #[cold]
    #[inline(never)]
    pub(crate) fn client_packet<A: Addr>(
        &self,
        (c, t): (&mut Conn<A>, Option<&Template<A>>),
        snap: &Snapshot,
    ) {
        c.in_pkts = self.stored(c.in_pkts as u32 + 1);
        if c.in_pkts == self.stored(self.threshold) {
            self.conn(EventKind::Packets, (c, t), snap);
        }
    }

    /// The XDP program, which counts connection `c`'s client packets, handed a worker the
    /// one the sync rule picks: reported, and the count is the rule's again.
    #[cold]
    #[inline(never)]
    pub(crate) fn handed_packet<A: Addr>(
        &self,
        (c, t): (&mut Conn<A>, Option<&Template<A>>),
        snap: &Snapshot,
    ) {
        c.in_pkts = self.stored(self.threshold);
        self.conn(EventKind::Packets, (c, t), snap);
    }

    /// Connection `c` left the table.
    #[cold]
    pub(crate) fn expired<A: Addr>(&self, c: &Conn<A>) {
        self.push(ConnEvent::of_conn(EventKind::Expired, c, 0));
    }

    /// Template `t` left the table.
    #[cold]
    pub(crate) fn template_expired<A: Addr>(&self, t: &Template<A>) {
        let mut e = ConnEvent::of_template(EventKind::Expired, t);
        e.timeout = 0;
        self.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_rule_is_ipvs_threshold_then_every_period() {
        let o = Outbox::new(4);
        let due: Vec<u32> = (1..=160).filter(|&n| o.sync_due(n)).collect();
        assert_eq!(due, [3, 53, 103, 153]);
        let once = Outbox::with_sync(4, 2, 0);
        assert_eq!((1..100).filter(|&n| once.sync_due(n)).count(), 1);
    }

    #[test]
    fn a_connection_keeps_its_count_in_a_byte_modulo_the_period() {
        // What `client_packet` does, packet by packet, against the rule on whole counts.
        for o in [
            Outbox::new(4),
            Outbox::with_sync(4, 2, 0),
            Outbox::with_sync(4, 7, 9),
            Outbox::with_sync(4, 300, 1000),
        ] {
            let mut stored = 0u8;
            for pkts in 1..=600u32 {
                stored = o.stored(stored as u32 + 1);
                let due = stored == o.stored(o.threshold());
                assert_eq!(due, o.sync_due(pkts), "{o:?} packet {pkts}");
            }
        }
        // Cut to what a byte holds.
        let big = Outbox::with_sync(4, 300, 1000);
        assert_eq!((big.threshold(), big.stored(255 + 3)), (254, 3));
    }

    #[test]
    fn a_full_outbox_drops_and_counts() {
        let o = Outbox::new(2);
        let e = ConnEvent {
            kind: EventKind::Created,
            proto: 6,
            fwd: Fwd::Masq,
            state: TcpState::SynRecv,
            template: false,
            inactive: false,
            persistent: false,
            fwmark: 0,
            cport: 1,
            vport: 80,
            dport: 8080,
            timeout: 60,
            caddr: IpAddr::from([198, 51, 100, 7]),
            vaddr: IpAddr::from([192, 0, 2, 1]),
            daddr: IpAddr::from([10, 0, 0, 1]),
        };
        for _ in 0..5 {
            o.push(e);
        }
        assert_eq!((o.len(), o.events_dropped()), (2, 3));
        assert_eq!(o.pop(), Some(e));
        assert!(!o.listening());
        o.set_listening(true);
        assert!(o.listening());
    }

    #[test]
    fn an_event_is_small() {
        assert!(size_of::<ConnEvent>() <= 72, "{}", size_of::<ConnEvent>());
    }
}
