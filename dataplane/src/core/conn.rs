//! The connection table, shared by all workers.
//!
//! Shaped like IPVS's own (`ip_vs_conn.c`): one hash table of chains, and each connection is
//! hashed **once**, by its client endpoint (protocol, client address, client port). That
//! endpoint is in both directions of an LVS-NAT connection (the source of the client's
//! frames, the destination of the realserver's replies), so one entry serves both lookups,
//! as IPVS's `ip_vs_conn_hashkey_param` does with `inverse`.
//!
//! Layout, for memory per connection (docs/BENCHMARKS.md measures it):
//! - `heads`: one `u32` per bucket: the chain's first slot, the bucket's lock in the top bit,
//!   and in the bits the slot numbers leave free (6 or more below 16 M connections) a tag of
//!   the first connection's hash with a bit that says whether more follow. Buckets are a
//!   power of two ≥ the maximum: at a full table a chain holds one connection on average.
//!   A lookup that finds its connection reads the head and walks 1.5 slots on average (each
//!   a cache miss in a large table); one that finds nothing (every new connection, and the
//!   first of a NAT reply's two probes) reads only the head when the chain is empty or holds
//!   one connection whose tag differs, so it takes no lock and misses no slot.
//! - `slots`: the connections themselves, preallocated (but not touched) for the configured
//!   maximum, linked by slot number. An IPv4 slot is 48 bytes, an IPv6 one 88 (tested
//!   below): the TCP state, the XDP fast path's marks and the persistence bit share a byte,
//!   and a persistent service's connection keeps its template's pointer in `controls`, an
//!   array beside the slots that only persistent services ever write.
//! - free slots go on free lists, one per thread (up to [`FREE_SHARDS`], each on its own
//!   cache line): a worker frees onto its own list and takes from it, so short connections
//!   on several workers share no lock; new slots come from a high-water mark, and only a
//!   full table takes slots from other threads' lists.
//!
//! A connection is read and written only by a thread holding its bucket's lock, a spin lock
//! held for one chain walk, never across a batch, and never two at once. Lookups its head rules
//! out (above) take no lock.
//!
//! Expiry: each worker files the connections it creates in its own timing wheel (see
//! [`super::wheel`]) by bucket; `armed` records the tick of the connection's wheel entry.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam::utils::CachePadded;
use dashmap::DashMap;

use super::Instant;
use super::addr::Addr;
use super::service::{Binding, Dest, DestState, Fwd, NextHop, Proto};
use super::tcp_state::TcpState;
use super::wheel::{MAX_TICK, TICKS_PER_SEC, tick, tick_ceil, tick_instant};
use crate::wire::{PROTO_TCP, PROTO_UDP};
use xlvs_common::FlowKey;

/// A 5-tuple as seen on the wire in one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey<A> {
    pub src: A,
    pub dst: A,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

const MASQ: u8 = 1;
const INACTIVE: u8 = 2;
const NO_OUTPUT: u8 = 4;
/// Learned from outside for a realserver the snapshot did not have: bound to a placeholder
/// [`DestState`] until a client packet finds the realserver configured.
const UNBOUND: u8 = 8;
/// Learned from outside without the client's next hop: the client's next frame teaches it.
const LEARN_HOP: u8 = 64;
/// Its TCP state changed since the last client packet (which reports it, if anyone listens).
const CHANGED: u8 = 32;
/// A UDP connection (else TCP): the protocol lives in the flags, so a connection slot keeps
/// room for its packet count within 48 bytes. The bit is the one that tells UDP (17) from
/// TCP (6) in their protocol numbers, so a key's protocol is matched with one mask.
const UDP: u8 = 16;
const _: () = assert!(PROTO_UDP & UDP != 0 && PROTO_TCP & UDP == 0);
/// Set on every connection: the core's hook mask ([`Conn::hooked`]) holds it while someone
/// listens for events, so then every client packet goes to its rare work.
const ANY: u8 = 128;
/// The hook mask while no one listens: only the flags that need work send a client packet to
/// it.
pub(crate) const HOOKS_QUIET: u8 = UNBOUND | LEARN_HOP | CHANGED;
/// The hook mask while someone listens: every client packet.
pub(crate) const HOOKS_LISTENING: u8 = HOOKS_QUIET | ANY;

/// The bits of `Conn::state_marks` that hold the TCP state.
const STATE_BITS: u8 = 0x0f;
/// The bit of `Conn::state_marks` set while a persistence template controls the connection.
const PERSISTENT: u8 = 0x10;
/// Where the offload marks start in `Conn::state_marks`: the top three bits, so that they
/// are read with one shift.
const MARKS_AT: u32 = 5;
const _: () =
    assert!((super::offload::IN | super::offload::OUT | super::offload::KEPT) == 0xff >> MARKS_AT);
const _: () = assert!(TcpState::COUNT <= 16);

/// A connection's offload marks that say the XDP program holds entries of it.
const OFFLOADED: u8 = super::offload::IN | super::offload::OUT;

/// A connection (IPVS `struct ip_vs_conn`).
#[derive(Debug)]
pub struct Conn<A> {
    pub caddr: A,
    pub vaddr: A,
    pub daddr: A,
    pub cport: u16,
    pub vport: u16,
    pub dport: u16,
    /// Its TCP state ([`Conn::state`], the low four bits), whether a persistence template
    /// controls it (the next bit; the template itself is kept beside the slots) and its
    /// offload marks ([`Conn::offload`], the top three): one byte.
    state_marks: u8,
    flags: u8,
    /// Where the client's frames came from: replies go back through it (LVS-NAT).
    pub client_hop: NextHop,
    /// When it expires, in wheel ticks (IPVS keeps `timeout` and re-arms a timer per packet;
    /// a deadline lets a packet extend it without touching any timer).
    deadline: u32,
    /// Client → director packets counted while someone listens for events, modulo the sync
    /// period (IPVS `in_pkts % sync_period`; see [`super::events::Outbox::with_sync`]).
    pub in_pkts: u8,
    pub dest: Arc<DestState>,
}

impl<A> Conn<A> {
    /// Its TCP state (IPVS `cp->state`; NONE for UDP).
    #[inline(always)]
    pub fn state(&self) -> TcpState {
        // Safety: the low four bits were written from a `TcpState` (`Conn::new`,
        // `set_state`), a `repr(u8)` enum whose values are all below 16.
        unsafe { std::mem::transmute::<u8, TcpState>(self.state_marks & STATE_BITS) }
    }

    /// Its directions the XDP program forwards itself ([`super::offload::IN`], `OUT`), or
    /// [`super::offload::KEPT`].
    #[inline(always)]
    pub(crate) fn offload(&self) -> u8 {
        self.state_marks >> MARKS_AT
    }

    /// Sets its offload marks.
    #[inline(always)]
    pub(crate) fn set_offload(&mut self, marks: u8) {
        self.state_marks = (self.state_marks & (STATE_BITS | PERSISTENT)) | marks << MARKS_AT;
    }

    /// Marks it as controlled by a persistence template or not (the table stores the
    /// template: [`ConnTable::insert_from`], [`Found::set_template`]).
    #[inline(always)]
    pub(crate) fn set_persistent(&mut self, on: bool) {
        self.state_marks = (self.state_marks & !PERSISTENT) | if on { PERSISTENT } else { 0 };
    }

    /// Whether a persistence template controls it (IPVS `cp->control`): the table keeps the
    /// template ([`Found::template`]).
    #[inline(always)]
    pub fn persistent(&self) -> bool {
        self.state_marks & PERSISTENT != 0
    }

    /// Its protocol.
    #[inline(always)]
    pub fn proto(&self) -> Proto {
        if self.flags & UDP != 0 {
            Proto::Udp
        } else {
            Proto::Tcp
        }
    }
}

impl<A: Addr> Conn<A> {
    /// A new connection, counted inactive until a state change says otherwise (IPVS binds a
    /// new connection as inactive; its first transition NONE → SYN_RECV makes it active).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        proto: Proto,
        (caddr, cport): (A, u16),
        (vaddr, vport): (A, u16),
        (daddr, dport): (A, u16),
        fwd: Fwd,
        state: TcpState,
        client_hop: NextHop,
        dest: Arc<DestState>,
    ) -> Self {
        let mut flags = ANY;
        if proto == Proto::Udp {
            flags |= UDP;
        }
        if fwd == Fwd::Masq {
            flags |= MASQ;
        } else {
            // IPVS sets NOOUTPUT for every method but NAT: DR uses the INPUT-ONLY table.
            flags |= NO_OUTPUT;
        }
        if proto == Proto::Udp || !state.is_active() {
            flags |= INACTIVE;
        }
        Conn {
            caddr,
            vaddr,
            daddr,
            cport,
            vport,
            dport,
            state_marks: state as u8,
            flags,
            client_hop,
            deadline: 0,
            in_pkts: 0,
            dest,
        }
    }

    /// Marks a connection learned from outside as bound to a placeholder realserver, until a
    /// client packet finds the real one.
    pub(crate) fn mark_unbound(&mut self) {
        self.flags |= UNBOUND;
    }

    /// Marks a connection learned from outside as not knowing its client's next hop: the
    /// client's next frame teaches it; its replies are dropped until then.
    pub(crate) fn forget_client_hop(&mut self) {
        self.client_hop = NextHop::UNKNOWN;
        self.flags |= LEARN_HOP;
    }

    /// Whether a client packet has rare work to do on it, by the core's hook mask
    /// ([`HOOKS_QUIET`] or [`HOOKS_LISTENING`]): learned from outside (unbound or without the
    /// client's next hop), a state change to report, or someone listening for events. One
    /// test of the flags.
    #[inline(always)]
    pub(crate) fn hooked(&self, mask: u8) -> bool {
        self.flags & mask != 0
    }

    /// Marks a state change for the next client packet to report.
    pub(crate) fn mark_changed(&mut self) {
        self.flags |= CHANGED;
    }

    /// Whether the state changed since the last client packet; clears the mark.
    pub(crate) fn take_changed(&mut self) -> bool {
        let c = self.flags & CHANGED != 0;
        self.flags &= !CHANGED;
        c
    }

    /// Bound to a placeholder realserver, waiting for the real one.
    pub fn unbound(&self) -> bool {
        self.flags & UNBOUND != 0
    }

    /// Whether the client's next hop is known (replies can go back).
    pub fn knows_client_hop(&self) -> bool {
        self.flags & LEARN_HOP == 0
    }

    /// Records the client's next hop from its frame.
    pub(crate) fn learn_client_hop(&mut self, hop: NextHop) {
        self.client_hop = hop;
        self.flags &= !LEARN_HOP;
    }

    /// Moves the connection to realserver `dest` (counted there as it is counted now) and
    /// clears `UNBOUND` (IPVS `ip_vs_try_bind_dest`, or a sync message naming another one).
    pub(crate) fn rebind_dest(&mut self, dest: Arc<DestState>) {
        let b = self.binding();
        dest.bind(b);
        let old = std::mem::replace(&mut self.dest, dest);
        old.unbind(b);
        self.flags &= !UNBOUND;
    }

    /// Sets the forwarding method (a sync message naming another realserver).
    pub(crate) fn set_fwd(&mut self, fwd: Fwd) {
        self.flags &= !(MASQ | NO_OUTPUT);
        self.flags |= if fwd == Fwd::Masq { MASQ } else { NO_OUTPUT };
    }

    /// Sets the deadline to tick `deadline` (a timeout given from outside).
    pub(crate) fn set_deadline(&mut self, deadline: u32) {
        self.deadline = deadline.min(MAX_TICK);
    }

    pub fn fwd(&self) -> Fwd {
        if self.flags & MASQ != 0 {
            Fwd::Masq
        } else {
            Fwd::Route
        }
    }

    /// Counted in the realserver's inactive connections rather than its active ones.
    pub fn inactive(&self) -> bool {
        self.flags & INACTIVE != 0
    }

    /// IPVS `IP_VS_CONN_F_NOOUTPUT`: set for every method but NAT, so LVS-DR connections use
    /// the INPUT-ONLY state table; NAT connections use INPUT and OUTPUT from the start.
    pub fn no_output(&self) -> bool {
        self.flags & NO_OUTPUT != 0
    }

    pub fn clear_no_output(&mut self) {
        self.flags &= !NO_OUTPUT;
    }

    /// Moves the realserver's active/inactive counters when the state crosses between an
    /// active and an inactive state (IPVS `set_tcp_state` with `tcp_state_active`, Linux ≥ 4.9).
    pub fn set_state(&mut self, new: TcpState) {
        if new == self.state() {
            return;
        }
        let active = new.is_active();
        if !self.inactive() && !active {
            self.dest.rebind(Binding::Active, Binding::Inactive);
            self.flags |= INACTIVE;
        } else if self.inactive() && active {
            self.dest.rebind(Binding::Inactive, Binding::Active);
            self.flags &= !INACTIVE;
        }
        self.state_marks = (self.state_marks & !STATE_BITS) | new as u8;
    }

    /// Restarts the idle timeout: the connection expires `timeout` seconds after `now`, given
    /// as [`tick_ceil`]`(now)` (a tick count, so a whole-second timeout is an exact add).
    ///
    /// Written only when it moves (at most 16 times a second, a tick): a busy connection's
    /// packets in between read its slot without writing it, so its line is not taken from
    /// the other workers that read it (a NAT connection's replies usually arrive on another).
    #[inline]
    pub fn touch(&mut self, now: u32, timeout: u32) {
        let d = now
            .saturating_add(timeout.saturating_mul(TICKS_PER_SEC))
            .min(MAX_TICK);
        if d != self.deadline {
            self.deadline = d;
        }
    }

    /// The tick it expires at.
    pub fn deadline(&self) -> u32 {
        self.deadline
    }

    /// Time left before it expires (ipvsadm -L -c "expire").
    pub fn expires_in(&self, now: Instant) -> Duration {
        tick_instant(self.deadline).since(now)
    }

    pub fn expired(&self, now: Instant) -> bool {
        tick(now) >= self.deadline
    }

    fn binding(&self) -> Binding {
        if self.inactive() {
            Binding::Inactive
        } else {
            Binding::Active
        }
    }

    pub fn in_key(&self) -> ConnKey<A> {
        ConnKey {
            src: self.caddr,
            dst: self.vaddr,
            sport: self.cport,
            dport: self.vport,
            proto: self.proto().number(),
        }
    }

    /// The key of the realserver's replies (LVS-NAT).
    pub fn out_key(&self) -> ConnKey<A> {
        ConnKey {
            src: self.daddr,
            dst: self.caddr,
            sport: self.dport,
            dport: self.cport,
            proto: self.proto().number(),
        }
    }

    // (Keys are TCP or UDP: the UDP bit of the number tells them apart.)
    fn is_in(&self, k: &ConnKey<A>) -> bool {
        self.caddr == k.src
            && self.cport == k.sport
            && self.vaddr == k.dst
            && self.vport == k.dport
            && self.flags & UDP == k.proto & UDP
    }

    fn is_out(&self, k: &ConnKey<A>) -> bool {
        self.flags & MASQ != 0
            && self.caddr == k.dst
            && self.cport == k.dport
            && self.daddr == k.src
            && self.dport == k.sport
            && self.flags & UDP == k.proto & UDP
    }

    /// Releases the connection's hold on its realserver's counters (IPVS `ip_vs_unbind_dest`),
    /// and restarts its template's persistence timeout: a client that comes back within the
    /// timeout of its last connection's end finds the same realserver.
    fn unbind(&self, template: Option<&Template<A>>, now: Instant) {
        self.dest.unbind(self.binding());
        if let Some(t) = template {
            t.touch(now);
        }
    }
}

/// Key of a persistence template: the client's address masked with the service's netmask, and
/// the virtual service (IPVS keys a template as a connection from `caddr & mask:0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TemplateKey<A> {
    pub proto: u8,
    pub caddr: A,
    pub vaddr: A,
    pub vport: u16,
}

/// Where a connection or template came from: this director ([`Origin::LOCAL`]) or a peer
/// director's sync or resync, by the peer's number in its [`Tables`] ([`Tables::peer`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Origin(pub u8);

impl Origin {
    /// Made here.
    pub const LOCAL: Origin = Origin(0);
    /// From a peer past the [`Tables`]' 254 numbered ones.
    pub const SOME_PEER: Origin = Origin(u8::MAX);

    pub fn is_local(self) -> bool {
        self == Self::LOCAL
    }
}

/// A persistence template (IPVS `IP_VS_CONN_F_TEMPLATE`): which realserver a client's
/// connections to a persistent service go to. It counts toward the realserver's `persist`
/// connections from creation until it is out of the table and no connection holds it.
#[derive(Debug)]
pub struct Template<A> {
    pub key: TemplateKey<A>,
    /// The realserver's shared state: its identity and its `persist` counter.
    pub dest: Arc<DestState>,
    /// The realserver's forwarding method when the template was made.
    pub fwd: Fwd,
    /// Learned from outside for a realserver the snapshot did not have: `dest` is a
    /// placeholder, replaced when a new connection finds the realserver configured.
    placeholder: bool,
    timeout: Duration,
    last_used: AtomicU64,
    /// The tick of its wheel entry.
    armed: AtomicU32,
    /// Where it came from (set when it is made).
    pub origin: Origin,
}

impl<A> Template<A> {
    /// A template sending `key`'s clients to `dest`, counted in its `persist` connections.
    pub fn new(
        key: TemplateKey<A>,
        (dest, fwd): (Arc<DestState>, Fwd),
        timeout: Duration,
        now: Instant,
    ) -> Self {
        dest.bind(Binding::Template);
        Template {
            key,
            dest,
            fwd,
            placeholder: false,
            timeout,
            last_used: AtomicU64::new(now.0),
            armed: AtomicU32::new(0),
            origin: Origin::LOCAL,
        }
    }

    /// The realserver it sends clients to: address and port.
    pub fn dest_addr(&self) -> (IpAddr, u16) {
        (self.dest.addr, self.dest.port)
    }

    /// Bound to a placeholder realserver (learned from outside), waiting for the real one.
    pub fn unbound(&self) -> bool {
        self.placeholder
    }

    /// The persistence timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Restarts the persistence timeout (a new connection used it, or one it controls ended).
    pub fn touch(&self, now: Instant) {
        self.last_used.fetch_max(now.0, Ordering::Relaxed);
    }

    fn idle(&self, now: Instant) -> bool {
        now.since(Instant(self.last_used.load(Ordering::Relaxed))) >= self.timeout
    }

    /// The tick it becomes idle at.
    pub fn deadline(&self) -> u32 {
        tick_ceil(Instant(self.last_used.load(Ordering::Relaxed)) + self.timeout)
    }

    /// Time left before it goes idle (ipvsadm -L -c "expire"; it stays longer while
    /// connections hold it).
    pub fn expires_in(&self, now: Instant) -> Duration {
        (Instant(self.last_used.load(Ordering::Relaxed)) + self.timeout).since(now)
    }

    /// Records the tick of its wheel entry.
    pub fn arm(&self, at: u32) {
        self.armed.store(at, Ordering::Relaxed);
    }
}

impl<A> Drop for Template<A> {
    fn drop(&mut self) {
        self.dest.unbind(Binding::Template);
    }
}

/// The datagram a fragment belongs to: (source, destination, protocol, identification)
/// (RFC 791; RFC 8200 §4.5 for IPv6's 32-bit one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey<A> {
    pub src: A,
    pub dst: A,
    pub ident: u32,
    pub proto: u8,
}

/// How long the tuple of a forwarded first fragment is kept for its datagram's later
/// fragments. Fragments of one datagram leave the sender back to back; the kernel's
/// reassembly timeout (30 s) is for the receiver's buffer, not the path.
pub const FRAG_LIFETIME: Duration = Duration::from_secs(5);
/// Most datagrams whose fragments are tracked at once.
pub const MAX_FRAGS: usize = 65536;

/// Why a connection could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// The table holds its configured maximum of connections.
    Full,
}

/// Which way a frame found its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Client → virtual service.
    In,
    /// Realserver → client (LVS-NAT).
    Out,
}

/// Slot number that ends a chain. Slot 0 is never used, so an all-zero head array is a table
/// of empty buckets: it is allocated without being written, and the OS commits (and backs
/// with huge pages, when advised) only the parts that are used.
const NIL: u32 = 0;
/// Offloaded tuples waiting for the drivers to remove their XDP entries.
const UNOFFLOAD_QUEUE: usize = 1 << 16;

/// Free lists per table: threads beyond this many share them.
const FREE_SHARDS: usize = 16;

/// One thread's free slots (alone on its cache line in the table, [`CachePadded`]).
#[derive(Default)]
struct FreeList(Mutex<Vec<u32>>);

impl FreeList {
    fn take(&self) -> Option<u32> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// [`FreeList::take`], and the slot the next take will return, if any.
    fn take_and_peek(&self) -> Option<(u32, Option<u32>)> {
        let mut l = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let i = l.pop()?;
        Some((i, l.last().copied()))
    }

    fn put(&self, i: u32) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(i);
    }
}

/// This thread's free list: threads are numbered as they first free or allocate a slot.
fn free_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % FREE_SHARDS;
    }
    SHARD.with(|s| *s)
}

/// The bucket lock, in a head's top bit.
const LOCK: u32 = 1 << 31;
/// Set in a head whose chain holds more than one connection: a lookup walks it whatever the
/// tag says.
const MULTI: u32 = 1 << 30;
/// Slot numbers stay below this, clear of [`LOCK`] and [`MULTI`].
const MAX_SLOTS: usize = 1 << 30;

/// A client endpoint's bucket, and its tag: the bits of its hash that a head keeps of its
/// first connection ([`ConnTable::hash`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hashed {
    pub bucket: u32,
    tag: u32,
}

#[derive(Debug)]
struct Slot<A> {
    /// Next slot in the bucket's chain.
    next: u32,
    /// The tick of the connection's wheel entry.
    armed: u32,
    conn: Option<Conn<A>>,
}

/// The connection table of one address family.
pub struct ConnTable<A: Addr> {
    heads: Box<[AtomicU32]>,
    mask: u32,
    /// The bits of a head that hold its first slot's number (the table's slots need no more).
    index: u32,
    /// The bits of a head that hold its first connection's tag: those between `index` and
    /// [`MULTI`] (none for a maximum of 2^29 connections or more, whose heads then say
    /// nothing of a chain but whether it is empty).
    tags: u32,
    slots: Box<[UnsafeCell<MaybeUninit<Slot<A>>>]>,
    /// The persistence template of each slot's connection (IPVS `cp->control`): an
    /// `Arc::into_raw` pointer, not null only for a linked connection marked
    /// [`Conn::persistent`]. Beside the slots, since only persistent services have one, and
    /// this array's memory is committed by the OS only where one was written. Zeroed (all
    /// null); accessed, like the slot, under its bucket's lock.
    controls: Box<[UnsafeCell<*const Template<A>>]>,
    /// Where each slot's connection came from ([`Origin`]), beside the slots so the 48-byte
    /// IPv4 slot does not grow: written when a connection is inserted (or updated from
    /// outside), read by listings, never on the forwarding path.
    origins: Box<[AtomicU8]>,
    /// Slots from 1 below it are initialised (in a chain or on a free list). It and the
    /// other counters every insert and remove writes are each alone on a cache line
    /// ([`CachePadded`]): the read-mostly fields every lookup reads (mask, seeds, where the
    /// heads and slots are) stay in every core's cache.
    fresh: CachePadded<AtomicU32>,
    free: Box<[CachePadded<FreeList>]>,
    /// Random keys of the bucket hash.
    seeds: [u64; 2],
    templates: DashMap<TemplateKey<A>, Arc<Template<A>>, ahash::RandomState>,
    /// Fragmented datagrams in flight: the tuple their first fragment was forwarded under.
    frags: DashMap<FragKey<A>, (ConnKey<A>, Instant), ahash::RandomState>,
    n_frags: CachePadded<AtomicUsize>,
    /// Connections plus templates, checked against `max`.
    conns: CachePadded<AtomicUsize>,
    n_templates: CachePadded<AtomicUsize>,
    max: usize,
    /// Offloaded tuples whose connection changed state or left the table: the drivers take
    /// their entries out of the XDP program's map ([`ConnTable::take_unoffloaded`]). Made
    /// with the first one (4 MB: a table without the fast path never pays for it).
    unoffloaded: std::sync::OnceLock<crossbeam::queue::ArrayQueue<super::offload::Unoffloaded>>,
    /// Set when `unoffloaded` was full: the drivers then empty the whole map.
    unoffload_overflow: std::sync::atomic::AtomicBool,
    /// What the XDP program forwarded of the entries the workers removed, for the control
    /// thread to count ([`ConnTable::take_offload_final`]). Made with its first entry.
    offload_finals: std::sync::OnceLock<crossbeam::queue::ArrayQueue<super::offload::Final>>,
}

// Safety: a slot is only accessed by the thread holding the lock of the bucket whose chain
// holds it, or by the thread that took it off the free list before it is linked; every other
// field is Sync.
unsafe impl<A: Addr> Sync for ConnTable<A> {}
// Safety: as above; the slots hold Send data (`Conn` is Send).
unsafe impl<A: Addr> Send for ConnTable<A> {}

impl<A: Addr> std::fmt::Debug for ConnTable<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTable")
            .field("conns", &self.len())
            .field("templates", &self.templates())
            .field("max", &self.max)
            .finish()
    }
}

/// A locked bucket. Unlocks when dropped.
struct Bucket<'t, A: Addr> {
    t: &'t ConnTable<A>,
    b: u32,
    /// `t.heads[b]`, indexed once.
    head: &'t AtomicU32,
}

impl<A: Addr> Drop for Bucket<'_, A> {
    #[inline(always)]
    fn drop(&mut self) {
        // Only the holder changes the chain bits, and a waiter's `fetch_or` of a set lock
        // bit changes nothing: a plain release store unlocks (one atomic RMW per lookup, not
        // two).
        let h = self.head;
        h.store(h.load(Ordering::Relaxed) & !LOCK, Ordering::Release);
    }
}

impl<'t, A: Addr> Bucket<'t, A> {
    #[inline(always)]
    fn first(&self) -> u32 {
        self.head.load(Ordering::Relaxed) & self.t.index
    }

    /// Makes slot `i` (or none, NIL) the chain's first, whose connection's tag is `tag`.
    fn set_first(&mut self, i: u32, tag: u32) {
        let more = if i != NIL && self.slot(i).next != NIL {
            MULTI
        } else {
            0
        };
        // The lock bit stays set: we hold it.
        self.head.store(LOCK | more | tag | i, Ordering::Relaxed);
    }

    #[inline(always)]
    fn slot(&mut self, i: u32) -> &mut Slot<A> {
        debug_assert!((i as usize) < self.t.slots.len());
        // Safety: slot `i` is in this bucket's chain (or being linked into it by us), so it
        // is below the slot count; we hold the bucket's lock, so no other thread accesses it;
        // slots in chains are initialised.
        unsafe { (*self.t.slots.get_unchecked(i as usize).get()).assume_init_mut() }
    }

    /// Slot `i`'s persistence template pointer (null: none).
    #[inline(always)]
    fn control(&mut self, i: u32) -> &mut *const Template<A> {
        debug_assert!((i as usize) < self.t.controls.len());
        // Safety: as `slot`: `i` is below the slot count (the array's length too) and its
        // bucket is locked by us.
        unsafe { &mut *self.t.controls.get_unchecked(i as usize).get() }
    }

    /// Takes slot `i`'s persistence template out of the array.
    fn take_control(&mut self, i: u32) -> Option<Arc<Template<A>>> {
        let p = std::mem::replace(self.control(i), std::ptr::null());
        // Safety: a pointer in the array came from `Arc::into_raw` (`put_control`) and is
        // taken out once (replaced by null here).
        (!p.is_null()).then(|| unsafe { Arc::from_raw(p) })
    }

    /// Stores `t` as slot `i`'s persistence template, dropping any it had.
    fn put_control(&mut self, i: u32, t: Arc<Template<A>>) {
        let old = self.take_control(i);
        *self.control(i) = Arc::into_raw(t);
        drop(old);
    }

    /// The slot of the first connection `pred` accepts, and the slot before it in the chain.
    #[inline(always)]
    fn find(&mut self, pred: impl Fn(&Conn<A>) -> bool) -> Option<(u32, u32)> {
        let (mut prev, mut i) = (NIL, self.first());
        while i != NIL {
            let s = self.slot(i);
            if s.conn.as_ref().is_some_and(&pred) {
                return Some((prev, i));
            }
            (prev, i) = (i, s.next);
        }
        None
    }

    /// Unlinks slot `i` (whose predecessor is `prev`) and frees it; returns its connection
    /// and the connection's template.
    fn unlink(&mut self, prev: u32, i: u32) -> (Conn<A>, Option<Arc<Template<A>>>) {
        let s = self.slot(i);
        let next = s.next;
        let conn = s.conn.take().expect("linked slots hold a connection");
        let template = if conn.persistent() {
            self.take_control(i)
        } else {
            None
        };
        if prev == NIL {
            let tag = if next == NIL {
                0
            } else {
                let t = self.t;
                let c = self.slot(next).conn.as_ref();
                t.hash_of(c.expect("linked slots hold a connection")).tag
            };
            self.set_first(next, tag);
        } else {
            self.slot(prev).next = next;
            // The first stays; whether others follow it may not.
            let h = self.head.load(Ordering::Relaxed);
            self.set_first(h & self.t.index, h & self.t.tags);
        }
        self.t.free_slot(i);
        (conn, template)
    }
}

/// A connection found by [`ConnTable::lookup`], its bucket locked until this is dropped.
pub struct Found<'t, A: Addr> {
    bucket: Bucket<'t, A>,
    prev: u32,
    slot: u32,
    pub side: Side,
}

impl<A: Addr> Found<'_, A> {
    #[inline(always)]
    pub fn conn(&mut self) -> &mut Conn<A> {
        let i = self.slot;
        let c = self.bucket.slot(i).conn.as_mut();
        debug_assert!(c.is_some(), "found slots hold a connection");
        // Safety: a `Found` is made only for a slot whose connection matched the key (it
        // holds one), and its bucket stays locked, so nothing takes it out meanwhile.
        unsafe { c.unwrap_unchecked() }
    }

    /// Its persistence template (IPVS `cp->control`), if a persistent service's.
    pub fn template(&mut self) -> Option<&Template<A>> {
        let (c, t) = self.conn_and_template();
        t.get(c)
    }

    /// The connection, and where its persistence template is ([`Control::get`]): both
    /// borrowed at once.
    #[inline(always)]
    pub(crate) fn conn_and_template(&mut self) -> (&mut Conn<A>, Control<'_, A>) {
        let t = Control {
            t: self.bucket.t,
            slot: self.slot,
        };
        (self.conn(), t)
    }

    /// Puts the connection under persistence template `t` (replacing any it had).
    pub fn set_template(&mut self, t: Arc<Template<A>>) {
        let i = self.slot;
        self.bucket.put_control(i, t);
        self.conn().set_persistent(true);
    }

    /// The bucket it is in (what wheel entries hold).
    pub fn bucket(&self) -> u32 {
        self.bucket.b
    }

    /// The tick of its wheel entry.
    pub fn armed(&mut self) -> u32 {
        let i = self.slot;
        self.bucket.slot(i).armed
    }

    /// Where it came from.
    pub fn origin(&self) -> Origin {
        Origin(self.bucket.t.origins[self.slot as usize].load(Ordering::Relaxed))
    }

    /// Records that it came from `o` (an update from outside).
    pub fn set_origin(&mut self, o: Origin) {
        self.bucket.t.origins[self.slot as usize].store(o.0, Ordering::Relaxed);
    }

    /// Records that a wheel entry for tick `at` now stands for it (older entries are stale).
    pub fn set_armed(&mut self, at: u32) {
        let i = self.slot;
        self.bucket.slot(i).armed = at;
    }

    /// Removes the connection now (IPVS `conn_reuse_mode`: a new SYN on a closed one).
    pub fn remove(mut self, now: Instant) {
        let (c, t) = self.bucket.unlink(self.prev, self.slot);
        self.bucket.t.release(c, t, now);
    }
}

/// Where a found connection's persistence template is ([`Found::conn_and_template`]), valid
/// while its bucket is locked.
pub(crate) struct Control<'f, A: Addr> {
    t: &'f ConnTable<A>,
    slot: u32,
}

impl<'f, A: Addr> Control<'f, A> {
    /// The template of connection `c`, which must be the one found with it, if it is
    /// persistent.
    #[inline(always)]
    pub(crate) fn get(&self, c: &Conn<A>) -> Option<&'f Template<A>> {
        if !c.persistent() {
            return None;
        }
        let p = self.t.controls[self.slot as usize].get();
        // Safety: the slot's template pointer is not its connection's memory, and its bucket
        // stays locked for `'f` (the `Found`'s borrow), so the pointer (from `into_raw`, or
        // null) is not replaced and its `Arc` not dropped meanwhile.
        unsafe { (*p).as_ref() }
    }
}

/// Where a persistent service's new connection goes: the template's realserver, found again or
/// newly chosen.
pub enum Persisted<'a, A> {
    /// Bound to this template (existing and still valid, or created now: `new`).
    Template {
        dest: &'a Dest,
        template: Arc<Template<A>>,
        new: bool,
    },
    /// The scheduler found no realserver: the caller may use its sorry server (no template).
    NoDest,
}

impl<A: Addr> ConnTable<A> {
    /// A table for at most `max` connections (and templates). The slots are reserved, not
    /// touched: memory is committed as connections arrive.
    pub fn new(max: usize) -> Self {
        let max = max.clamp(1, MAX_SLOTS - 2);
        let buckets = max.next_power_of_two().max(1024);
        // Slot numbers run to `max`.
        let index = (max as u32 + 1).next_power_of_two() - 1;
        let uninit: Box<[MaybeUninit<Slot<A>>]> = Box::new_uninit_slice(max + 1);
        // Safety: `UnsafeCell` is `repr(transparent)`, so both slices have the same layout;
        // the allocation is not written (the OS commits pages as slots are first used).
        let slots = unsafe {
            Box::from_raw(Box::into_raw(uninit) as *mut [UnsafeCell<MaybeUninit<Slot<A>>>])
        };
        ConnTable {
            // Safety: an all-zero `AtomicU32` is a valid one (0 = NIL, unlocked).
            heads: unsafe { Box::<[AtomicU32]>::new_zeroed_slice(buckets).assume_init() },
            mask: buckets as u32 - 1,
            index,
            tags: !(LOCK | MULTI | index),
            // Safety: an all-zero `AtomicU8` is a valid one (0 = local); zeroed memory is
            // committed by the OS as it is first written, like the slots.
            origins: unsafe { Box::<[AtomicU8]>::new_zeroed_slice(max + 1).assume_init() },
            // Safety: an all-zero raw pointer is null (no template); `UnsafeCell` is
            // `repr(transparent)`.
            controls: unsafe {
                Box::<[UnsafeCell<*const Template<A>>]>::new_zeroed_slice(max + 1).assume_init()
            },
            slots,
            fresh: CachePadded::new(AtomicU32::new(1)),
            free: (0..FREE_SHARDS).map(|_| Default::default()).collect(),
            seeds: {
                let r = ahash::RandomState::new();
                [r.hash_one(1u8), r.hash_one(2u8)]
            },
            templates: DashMap::with_hasher(ahash::RandomState::new()),
            frags: DashMap::with_hasher(ahash::RandomState::new()),
            n_frags: CachePadded::new(AtomicUsize::new(0)),
            conns: CachePadded::new(AtomicUsize::new(0)),
            n_templates: CachePadded::new(AtomicUsize::new(0)),
            max,
            unoffloaded: std::sync::OnceLock::new(),
            unoffload_overflow: std::sync::atomic::AtomicBool::new(false),
            offload_finals: std::sync::OnceLock::new(),
        }
    }

    /// Gives back a connection's offloaded directions: their tuples go to the queue the
    /// drivers drain (or, if it is full, the drivers are told to empty the whole map). For a
    /// connection that changed state or leaves the table.
    pub(crate) fn unoffload(&self, c: &mut Conn<A>) {
        self.take_entries_back(c);
        c.set_offload(c.offload() & super::offload::KEPT);
    }

    /// Has the XDP entries of a connection removed and marks it [`offload::KEPT`], so it is
    /// not offered again: from now on its frames reach the workers, which refresh its
    /// deadline. For a realserver gone or moved, a sync master starting or stopping, or an
    /// entry the map refused.
    ///
    /// [`offload::KEPT`]: super::offload::KEPT
    pub(crate) fn keep(&self, c: &mut Conn<A>) {
        self.take_entries_back(c);
        c.set_offload(super::offload::KEPT);
    }

    /// The connection with a frame of the XDP program's tuple `key`, if it is of this
    /// family and in the table.
    pub fn lookup_flow(&self, key: &FlowKey) -> Option<Found<'_, A>> {
        self.lookup(&super::offload::conn_key(key)?)
    }

    /// [`ConnTable::keep`] for the connection with a frame of tuple `key`, if any (the
    /// driver's, when the XDP program's map refused one of its directions).
    pub fn keep_flow(&self, key: &FlowKey) {
        if let Some(mut f) = self.lookup_flow(key) {
            self.keep(f.conn());
        }
    }

    /// Moves the deadline of the connection with a frame of tuple `key`, if any, to what
    /// `at` says (a tick and a timeout in seconds) when that is later: the XDP program's
    /// last frame of it, as its entry is taken back.
    pub fn extend_from(&self, key: &FlowKey, at: impl FnOnce(&Conn<A>) -> (u32, u32)) {
        if let Some(mut f) = self.lookup_flow(key) {
            let c = f.conn();
            let (tick, timeout) = at(c);
            let old = c.deadline();
            c.touch(tick, timeout);
            if c.deadline() < old {
                c.deadline = old;
            }
        }
    }

    /// Queues the removal of a connection's XDP entries.
    fn take_entries_back(&self, c: &Conn<A>) {
        for (key, out) in super::offload::offloaded_keys(c) {
            let u = super::offload::Unoffloaded {
                key,
                dest: c.dest.clone(),
                out,
            };
            let q = self
                .unoffloaded
                .get_or_init(|| crossbeam::queue::ArrayQueue::new(UNOFFLOAD_QUEUE));
            if q.push(u).is_err() {
                self.unoffload_overflow.store(true, Ordering::Release);
            }
        }
    }

    /// A direction whose XDP entry must go (its connection changed state or left the table).
    pub fn take_unoffloaded(&self) -> Option<super::offload::Unoffloaded> {
        self.unoffloaded.get()?.pop()
    }

    /// Hands the control thread what the XDP program forwarded of a removed entry; gives it
    /// back if the queue is full.
    pub fn push_offload_final(
        &self,
        f: super::offload::Final,
    ) -> Result<(), super::offload::Final> {
        self.offload_finals
            .get_or_init(|| crossbeam::queue::ArrayQueue::new(UNOFFLOAD_QUEUE))
            .push(f)
    }

    /// The oldest of [`ConnTable::push_offload_final`]'s.
    pub fn take_offload_final(&self) -> Option<super::offload::Final> {
        self.offload_finals.get()?.pop()
    }

    /// Whether the queue of [`ConnTable::take_unoffloaded`] overflowed since the last call:
    /// then every entry of the map must go (the connections are forwarded by the workers
    /// again; those still offloaded in the core are not offloaded twice).
    pub fn take_unoffload_overflow(&self) -> bool {
        self.unoffload_overflow.swap(false, Ordering::AcqRel)
    }

    /// The bucket of a client endpoint: two rounds of a folded 64×64→128 multiply over the
    /// address words, port and protocol, keyed with random seeds (as IPVS keys its jhash with
    /// a random `ip_vs_conn_rnd`, so clients cannot aim at one chain).
    #[inline]
    pub fn bucket(&self, proto: u8, caddr: A, cport: u16) -> u32 {
        self.hash(proto, caddr, cport).bucket
    }

    /// [`ConnTable::bucket`] with the endpoint's tag: the hash's low bits pick the bucket, its
    /// high half gives the tag.
    #[inline]
    pub fn hash(&self, proto: u8, caddr: A, cport: u16) -> Hashed {
        const K1: u64 = 0x9e37_79b9_7f4a_7c15;
        const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
        let (hi, lo) = caddr.words();
        let tail = (cport as u64) << 8 | proto as u64;
        let h = folded_mul(hi ^ self.seeds[0], K1);
        let h = folded_mul(h ^ lo ^ tail.rotate_left(40) ^ self.seeds[1], K2);
        Hashed {
            bucket: h as u32 & self.mask,
            tag: (h >> 32) as u32 & self.tags,
        }
    }

    /// The hash of a connection's client endpoint (what it is filed by).
    fn hash_of(&self, c: &Conn<A>) -> Hashed {
        self.hash(c.proto().number(), c.caddr, c.cport)
    }

    /// Whether bucket `h.bucket`'s chain, by its head `v`, may hold a connection hashed as `h`:
    /// it is not empty, and its first connection has `h`'s tag or others follow.
    #[inline(always)]
    fn may_hold(&self, v: u32, h: Hashed) -> bool {
        v & self.index != NIL && (v & MULTI != 0 || v & self.tags == h.tag)
    }

    #[inline(always)]
    fn lock(&self, b: u32) -> Bucket<'_, A> {
        self.lock_head(b, &self.heads[b as usize])
    }

    /// [`ConnTable::lock`] with `h`, bucket `b`'s head, at hand.
    #[inline(always)]
    fn lock_head<'t>(&'t self, b: u32, h: &'t AtomicU32) -> Bucket<'t, A> {
        let mut spins = 0u32;
        loop {
            if h.load(Ordering::Relaxed) & LOCK == 0
                && h.fetch_or(LOCK, Ordering::Acquire) & LOCK == 0
            {
                return Bucket {
                    t: self,
                    b,
                    head: h,
                };
            }
            spins += 1;
            if spins < 128 {
                std::hint::spin_loop();
            } else {
                // The holder was preempted mid-walk: let it run.
                std::thread::yield_now();
            }
        }
    }

    fn empty(&self, b: u32) -> bool {
        self.heads[b as usize].load(Ordering::Relaxed) & self.index == NIL
    }

    /// Hints the CPU to load bucket `b`'s head: a worker calls it for a whole batch before
    /// processing it, so the batch's cache misses overlap.
    #[inline]
    pub fn prefetch_bucket(&self, b: u32) {
        prefetch::<READ>(&self.heads[b as usize] as *const AtomicU32 as *const u8);
    }

    /// Hints the CPU to load the first connection of `h`'s bucket (after its head arrived),
    /// unless the head says the lookup will not read it.
    #[inline]
    pub fn prefetch_chain(&self, h: Hashed) {
        let v = self.heads[h.bucket as usize].load(Ordering::Relaxed);
        if self.may_hold(v, h) {
            self.prefetch_slot::<READ>(v & self.index);
        }
    }

    /// Hints the CPU to load slot `i`, for writing if `W`: both of its cache lines, since a
    /// 48-byte slot spans two in two cases of four (an 88-byte IPv6 one always does).
    #[inline(always)]
    fn prefetch_slot<const W: bool>(&self, i: u32) {
        let s = self.slots[i as usize].get() as *const u8;
        prefetch::<W>(s);
        prefetch::<W>(s.wrapping_add(size_of::<Slot<A>>() - 1));
    }

    #[inline(always)]
    fn find(
        &self,
        hd: Hashed,
        side: Side,
        pred: impl Fn(&Conn<A>) -> bool,
    ) -> Option<Found<'_, A>> {
        let b = hd.bucket;
        let h = &self.heads[b as usize];
        if !self.may_hold(h.load(Ordering::Relaxed), hd) {
            return None;
        }
        let mut bucket = self.lock_head(b, h);
        let (prev, slot) = bucket.find(pred)?;
        Some(Found {
            bucket,
            prev,
            slot,
            side,
        })
    }

    /// The connection a frame with tuple `key` belongs to: as the client's frame (the client
    /// is the source), else as the realserver's reply (the client is the destination).
    #[inline(always)]
    pub fn lookup(&self, key: &ConnKey<A>) -> Option<Found<'_, A>> {
        if let Some(f) = self.lookup_in(key) {
            return Some(f);
        }
        let h = self.hash(key.proto, key.dst, key.dport);
        self.find(h, Side::Out, |c| c.is_out(key))
    }

    /// The connection a client's frame with tuple `key` belongs to (the client side only).
    #[inline(always)]
    pub fn lookup_in(&self, key: &ConnKey<A>) -> Option<Found<'_, A>> {
        let h = self.hash(key.proto, key.src, key.sport);
        self.find(h, Side::In, |c| c.is_in(key))
    }

    /// Number of connections, templates excluded.
    pub fn len(&self) -> usize {
        // The two counters move separately: never underflow on a racing read.
        self.conns
            .load(Ordering::Relaxed)
            .saturating_sub(self.n_templates.load(Ordering::Relaxed))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of persistence templates.
    pub fn templates(&self) -> usize {
        self.n_templates.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes the table has reserved: heads and slots for the maximum (slots are committed by
    /// the OS as they are first used), without templates, fragments and the array of
    /// persistent connections' template pointers (8 bytes a slot, committed only where a
    /// persistent service writes one).
    pub fn reserved_bytes(&self) -> usize {
        self.heads.len() * size_of::<AtomicU32>() + self.slots.len() * size_of::<Slot<A>>()
    }

    /// The table's two large allocations (bucket heads, slots) as (start, bytes): the driver
    /// may ask the OS to back them with huge pages (a lookup at 10 M connections otherwise
    /// pays a TLB miss per access).
    pub fn regions(&self) -> [(*const u8, usize); 2] {
        [
            (
                self.heads.as_ptr().cast(),
                self.heads.len() * size_of::<AtomicU32>(),
            ),
            (
                self.slots.as_ptr().cast(),
                self.slots.len() * size_of::<Slot<A>>(),
            ),
        ]
    }

    /// Bytes of one connection slot.
    pub const SLOT_BYTES: usize = size_of::<Slot<A>>();

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.heads.len()
    }

    /// Reserves room for one more entry (connection or template) under the maximum.
    fn reserve(&self) -> Result<(), InsertError> {
        if self.conns.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.conns.fetch_sub(1, Ordering::Relaxed);
            return Err(InsertError::Full);
        }
        Ok(())
    }

    /// A free slot, uninitialised or holding no connection: off this thread's free list,
    /// else from the high-water mark, else (a full table) off another thread's list. Called
    /// after `reserve`, so one exists: every slot in use holds a reserved connection.
    fn alloc_slot(&self) -> u32 {
        let me = free_shard();
        if let Some((i, next)) = self.free[me].take_and_peek() {
            // The next new connection's slot, freed a while ago and likely cold: start
            // loading it (for writing) now, so that its miss overlaps this connection's work.
            if let Some(n) = next {
                self.prefetch_slot::<WRITE>(n);
            }
            return i;
        }
        let mut f = self.fresh.load(Ordering::Relaxed);
        while (f as usize) < self.slots.len() {
            match self
                .fresh
                .compare_exchange_weak(f, f + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return f,
                Err(now) => f = now,
            }
        }
        // Every slot was used once: one is on some thread's list (or about to be, freed
        // by a thread that has not pushed it yet).
        loop {
            for k in 1..=FREE_SHARDS {
                if let Some(i) = self.free[(me + k) % FREE_SHARDS].take() {
                    return i;
                }
            }
            std::thread::yield_now();
        }
    }

    fn free_slot(&self, i: u32) {
        self.free[free_shard()].put(i);
    }

    /// Adds a new connection, binds it to its realserver's counters, active or inactive as its
    /// state says (IPVS `ip_vs_bind_dest`), and records `armed`, the tick of the wheel entry
    /// the caller files for it. Returns its bucket (what the wheel entry holds).
    pub fn insert(&self, conn: Conn<A>, armed: u32, now: Instant) -> Result<u32, InsertError> {
        self.insert_from((conn, None), armed, now, Origin::LOCAL)
    }

    /// [`ConnTable::insert`] of a connection with its persistence template, if any (IPVS
    /// `cp->control`), learned from outside if `origin` says so.
    pub fn insert_from(
        &self,
        (mut conn, template): (Conn<A>, Option<Arc<Template<A>>>),
        armed: u32,
        now: Instant,
        origin: Origin,
    ) -> Result<u32, InsertError> {
        self.reserve()?;
        conn.set_persistent(template.is_some());
        conn.dest.bind(conn.binding());
        let hd = self.hash_of(&conn);
        let b = hd.bucket;
        let key = conn.in_key();
        let i = self.alloc_slot();
        let mut bucket = self.lock(b);
        // Two workers raced to create the same connection: the loser's goes. (The head rules
        // that out without a walk for most buckets.)
        let old = if self.may_hold(bucket.head.load(Ordering::Relaxed), hd) {
            bucket
                .find(|c| c.is_in(&key))
                .map(|(p, j)| bucket.unlink(p, j))
        } else {
            None
        };
        let next = bucket.first();
        let slot = Slot {
            next,
            armed,
            conn: Some(conn),
        };
        // Safety: slot `i` came off the free list or the high-water mark: no chain holds it,
        // so no other thread accesses it; writing over a free slot drops nothing (its
        // connection is `None`).
        unsafe { (*self.slots[i as usize].get()).write(slot) };
        if let Some(t) = template {
            bucket.put_control(i, t);
        }
        self.origins[i as usize].store(origin.0, Ordering::Relaxed);
        bucket.set_first(i, hd.tag);
        drop(bucket);
        if let Some((c, t)) = old {
            self.release(c, t, now);
        }
        Ok(b)
    }

    fn release(&self, mut c: Conn<A>, template: Option<Arc<Template<A>>>, now: Instant) {
        if c.offload() & OFFLOADED != 0 {
            self.unoffload(&mut c);
        }
        c.unbind(template.as_deref(), now);
        drop((c, template));
        self.conns.fetch_sub(1, Ordering::Relaxed);
    }

    /// Fires the wheel entry of bucket `b` for tick `at`: each connection of the bucket whose
    /// entry it is goes if it is expired (shown to `on_gone` first), else is filed again at its
    /// deadline by `refile` (which returns the tick it was filed for). Returns how many went.
    pub fn expire_bucket(
        &self,
        b: u32,
        at: u32,
        now: Instant,
        mut refile: impl FnMut(u32) -> u32,
        mut on_gone: impl FnMut(&Conn<A>),
        mut revive: impl FnMut(&mut Conn<A>),
    ) -> usize {
        if self.empty(b) {
            return 0;
        }
        let mut bucket = self.lock(b);
        let (mut prev, mut i) = (NIL, bucket.first());
        let mut gone = 0;
        while i != NIL {
            let s = bucket.slot(i);
            let next = s.next;
            if s.armed == at
                && let Some(c) = &mut s.conn
            {
                // An offloaded connection's frames bypass the core: the XDP program's last
                // one may move its deadline on.
                if c.offload() != 0 && c.expired(now) {
                    revive(c);
                }
                if c.expired(now) {
                    on_gone(c);
                    let (c, t) = bucket.unlink(prev, i);
                    self.release(c, t, now);
                    gone += 1;
                    i = next;
                    continue;
                }
                s.armed = refile(c.deadline);
            }
            (prev, i) = (i, next);
        }
        gone
    }

    /// The persistence template for `key` (IPVS `ip_vs_sched_persist`). An existing template
    /// is used if its realserver is still one of the service's `dests`; like IPVS with
    /// `expire_quiescent_template = 0`, a quiescent (weight 0) or overloaded realserver keeps
    /// its persistent clients, and only a deleted one loses them. Otherwise `pick` chooses a
    /// realserver and a new template replaces the old one; the caller files it for expiry.
    pub fn persist<'a>(
        &self,
        key: TemplateKey<A>,
        now: Instant,
        timeout: Duration,
        dests: &'a [Dest],
        pick: impl FnOnce() -> Option<&'a Dest>,
    ) -> Result<Persisted<'a, A>, InsertError> {
        use dashmap::mapref::entry::Entry as MapEntry;
        let slot = self.templates.entry(key);
        let mut learned = None;
        if let MapEntry::Occupied(e) = &slot {
            let t = e.get();
            if let Some(d) = dests.iter().find(|d| Arc::ptr_eq(&d.state, &t.dest)) {
                t.touch(now);
                return Ok(Persisted::Template {
                    dest: d,
                    template: t.clone(),
                    new: false,
                });
            }
            // Learned from outside before its realserver existed: bound to it now.
            if t.placeholder {
                learned = dests.iter().find(|d| d.state.is(t.dest.addr, t.dest.port));
            }
        }
        let Some(d) = learned.or_else(pick) else {
            return Ok(Persisted::NoDest);
        };
        if matches!(slot, MapEntry::Vacant(_)) {
            self.reserve()?;
            self.n_templates.fetch_add(1, Ordering::Relaxed);
        }
        // A stale template is replaced; connections holding it keep it alive.
        let t = Arc::new(Template::new(key, (d.state.clone(), d.fwd), timeout, now));
        slot.insert(t.clone());
        Ok(Persisted::Template {
            dest: d,
            template: t,
            new: true,
        })
    }

    /// A template learned from outside (a peer director's sync message): `key`'s clients go
    /// to `dest` (a placeholder if `bound` is false: the realserver is not configured yet)
    /// for `timeout` from `now`. An existing template for the same realserver is touched and
    /// returned; one for another realserver (or a placeholder, when `dest` is the real one)
    /// is replaced. Returns the template and whether it is new (the caller files it for
    /// expiry).
    pub fn learn_template(
        &self,
        key: TemplateKey<A>,
        (dest, fwd, bound): (Arc<DestState>, Fwd, bool),
        timeout: Duration,
        now: Instant,
        origin: Origin,
    ) -> Result<(Arc<Template<A>>, bool), InsertError> {
        use dashmap::mapref::entry::Entry as MapEntry;
        let slot = self.templates.entry(key);
        match &slot {
            MapEntry::Occupied(e) => {
                let t = e.get();
                if t.dest.is(dest.addr, dest.port) && (!t.placeholder || !bound) {
                    t.touch(now);
                    return Ok((t.clone(), false));
                }
            }
            MapEntry::Vacant(_) => {
                self.reserve()?;
                self.n_templates.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut t = Template::new(key, (dest, fwd), timeout, now);
        t.placeholder = !bound;
        t.origin = origin;
        let t = Arc::new(t);
        slot.insert(t.clone());
        Ok((t, true))
    }

    /// The persistence template for `key`, if the table has one.
    pub fn template(&self, key: &TemplateKey<A>) -> Option<Arc<Template<A>>> {
        self.templates.get(key).map(|t| t.value().clone())
    }

    /// Fires template `key`'s wheel entry for tick `at`: it goes once idle past its timeout
    /// and no connection holds it (IPVS defers a template's expiry while `n_control` > 0),
    /// else is filed again by `refile`. Returns it if it went.
    pub fn expire_template(
        &self,
        key: &TemplateKey<A>,
        at: u32,
        now: Instant,
        refile: impl FnOnce(u32) -> u32,
    ) -> Option<Arc<Template<A>>> {
        use dashmap::mapref::entry::Entry as MapEntry;
        let MapEntry::Occupied(e) = self.templates.entry(*key) else {
            return None;
        };
        let t = e.get();
        if t.armed.load(Ordering::Relaxed) != at {
            return None;
        }
        if t.idle(now) && Arc::strong_count(t) == 1 {
            let t = e.remove();
            self.n_templates.fetch_sub(1, Ordering::Relaxed);
            self.conns.fetch_sub(1, Ordering::Relaxed);
            return Some(t);
        }
        let deadline = if t.idle(now) {
            // Idle but held: look again one timeout later (a connection ending touches it).
            tick_ceil(now + t.timeout)
        } else {
            // Used since it was filed: it goes one timeout after that use.
            t.deadline()
        };
        t.arm(refile(deadline));
        None
    }

    /// Remembers that the first fragment of datagram `fk` was forwarded as the connection
    /// tuple `key`, so its other fragments follow it. Beyond [`MAX_FRAGS`] datagrams in flight
    /// it is not remembered (their later fragments are dropped and counted).
    #[cold]
    #[inline(never)]
    pub fn track_fragments(&self, fk: FragKey<A>, key: ConnKey<A>, now: Instant) {
        if self.n_frags.load(Ordering::Relaxed) >= MAX_FRAGS {
            return;
        }
        if self.frags.insert(fk, (key, now)).is_none() {
            self.n_frags.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The connection tuple of the datagram a non-first fragment belongs to.
    pub fn fragment(&self, fk: &FragKey<A>, now: Instant) -> Option<ConnKey<A>> {
        let e = self.frags.get(fk)?;
        let (key, at) = *e.value();
        (now.since(at) < FRAG_LIFETIME).then_some(key)
    }

    /// Number of fragmented datagrams tracked.
    pub fn fragments(&self) -> usize {
        self.n_frags.load(Ordering::Relaxed)
    }

    /// Forgets fragmented datagrams older than [`FRAG_LIFETIME`] (the control thread, once a
    /// second: at most [`MAX_FRAGS`] entries).
    pub fn expire_fragments(&self, now: Instant) -> usize {
        let mut gone = 0;
        self.frags.retain(|_, (_, at)| {
            let keep = now.since(*at) < FRAG_LIFETIME;
            gone += (!keep) as usize;
            keep
        });
        self.n_frags.fetch_sub(gone, Ordering::Relaxed);
        gone
    }

    /// Calls `f` on every connection (for listings), one bucket locked at a time.
    pub fn for_each(&self, mut f: impl FnMut(&Conn<A>)) {
        self.for_each_mut(|c| f(c));
    }

    /// Calls `f` on every connection of buckets `range` (of `0..buckets()`), one bucket
    /// locked at a time: a long walk (a resync) goes in parts and does its IO between them.
    pub fn for_each_in(&self, range: std::ops::Range<u32>, mut f: impl FnMut(&Conn<A>)) {
        self.for_each_mut_in(range, |c, _, _| f(c));
    }

    /// Calls `f` on every connection and where it came from (for listings).
    pub fn for_each_with_origin(&self, mut f: impl FnMut(&Conn<A>, Origin)) {
        self.for_each_mut_in(0..self.buckets() as u32, |c, o, _| f(c, o));
    }

    /// [`ConnTable::for_each_in`], with each connection's origin and persistence template.
    pub fn for_each_in_with_origin(
        &self,
        range: std::ops::Range<u32>,
        mut f: impl FnMut(&Conn<A>, Origin, Option<&Template<A>>),
    ) {
        self.for_each_mut_in(range, |c, o, t| f(c, o, t));
    }

    /// Calls `f` on every connection, one bucket locked at a time (so it may change it).
    fn for_each_mut(&self, mut f: impl FnMut(&mut Conn<A>)) {
        self.for_each_mut_in(0..self.buckets() as u32, |c, _, _| f(c));
    }

    fn for_each_mut_in(
        &self,
        range: std::ops::Range<u32>,
        mut f: impl FnMut(&mut Conn<A>, Origin, Option<&Template<A>>),
    ) {
        for b in range.start..range.end.min(self.buckets() as u32) {
            if self.empty(b) {
                continue;
            }
            let mut bucket = self.lock(b);
            let mut i = bucket.first();
            while i != NIL {
                let origin = Origin(self.origins[i as usize].load(Ordering::Relaxed));
                let s: *mut Slot<A> = bucket.slot(i);
                // Safety: the slot and its template (`control`) are two locations, and the
                // bucket stays locked while both are borrowed.
                let s = unsafe { &mut *s };
                if let Some(c) = s.conn.as_mut() {
                    let t = if c.persistent() {
                        // Safety: an `into_raw` pointer (or null), its `Arc` held by the
                        // array while the bucket stays locked.
                        unsafe { (*bucket.control(i)).as_ref() }
                    } else {
                        None
                    };
                    f(c, origin, t);
                }
                i = s.next;
            }
        }
    }

    /// Marks every connection bound to a realserver `gone` says is gone as unbound: its next
    /// client packet looks its realserver up in the snapshot again (and, with
    /// `expire_nodest_conn`, expires it if it is not there). One bucket locked at a time;
    /// returns how many it marked.
    pub fn unbind_gone(&self, gone: impl Fn(&DestState) -> bool) -> usize {
        let mut n = 0;
        self.for_each_mut(|c| {
            if !c.unbound() && gone(&c.dest) {
                c.mark_unbound();
                // Its next client packet must reach a worker.
                if c.offload() & OFFLOADED != 0 {
                    self.keep(c);
                }
                n += 1;
            }
        });
        n
    }

    /// Takes the offloaded directions back from every connection to a realserver `which`
    /// says (its next hop changed: the XDP entries hold the old MAC), for good: the workers
    /// forward them from now on. Returns how many.
    pub fn unoffload_dests(&self, which: impl Fn(&DestState) -> bool) -> usize {
        let mut n = 0;
        self.for_each_mut(|c| {
            if c.offload() & OFFLOADED != 0 && which(&c.dest) {
                self.keep(c);
                n += 1;
            }
        });
        n
    }

    /// Has every connection whose virtual service key (protocol, VIP, vport) `gone` says
    /// is gone kept by the workers for good ([`ConnTable::keep`]), offloaded or not: its
    /// entries go, and none is filed again. Returns how many.
    pub fn keep_services(&self, gone: impl Fn(xlvs_common::L4Key) -> bool) -> usize {
        let mut n = 0;
        self.for_each_mut(|c| {
            if c.offload() & super::offload::KEPT == 0
                && gone(xlvs_common::L4Key::ip(
                    c.vaddr.ip(),
                    c.vport,
                    c.proto().number(),
                ))
            {
                self.keep(c);
                n += 1;
            }
        });
        n
    }

    /// Calls `f` on every persistence template (for listings).
    pub fn for_each_template(&self, mut f: impl FnMut(&Template<A>)) {
        for t in self.templates.iter() {
            f(t.value());
        }
    }
}

impl<A: Addr> Drop for ConnTable<A> {
    fn drop(&mut self) {
        let fresh = *self.fresh.get_mut() as usize;
        for (s, t) in self.slots[1..fresh]
            .iter_mut()
            .zip(&mut self.controls[1..fresh])
        {
            // Safety: slots from 1 below the high-water mark are initialised, and we own them
            // all; a template pointer is not null only for a linked persistent connection,
            // and came from `Arc::into_raw`.
            unsafe {
                let s = s.get_mut().assume_init_mut();
                if s.conn.as_ref().is_some_and(|c| c.persistent()) && !t.get_mut().is_null() {
                    drop(Arc::from_raw(*t.get_mut()));
                }
                std::ptr::drop_in_place(s as *mut Slot<A>);
            }
        }
    }
}

#[inline(always)]
fn folded_mul(a: u64, b: u64) -> u64 {
    let m = a as u128 * b as u128;
    m as u64 ^ (m >> 64) as u64
}

/// Prefetch for reading.
const READ: bool = false;
/// Prefetch for writing.
const WRITE: bool = true;

/// Hints the CPU to load the cache line at `p`, for writing if `W`.
#[inline(always)]
fn prefetch<const W: bool>(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // Safety: a prefetch is a hint; it does not dereference `p` in the abstract machine.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_ET0, _MM_HINT_T0, _mm_prefetch};
        if W {
            _mm_prefetch::<_MM_HINT_ET0>(p as *const i8)
        } else {
            _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
        }
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The connection tables of both address families, shared by every worker.
#[derive(Debug)]
pub struct Tables {
    pub v4: ConnTable<Ipv4Addr>,
    pub v6: ConnTable<Ipv6Addr>,
    /// The peers connections came from, numbered from 1 ([`Origin`]).
    peers: Mutex<Vec<IpAddr>>,
}

impl Tables {
    /// The origin of entries from peer `addr` (numbered at its first entry).
    pub fn origin_of(&self, addr: IpAddr) -> Origin {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = peers.iter().position(|p| *p == addr) {
            return Origin(i as u8 + 1);
        }
        if peers.len() >= Origin::SOME_PEER.0 as usize - 1 {
            return Origin::SOME_PEER;
        }
        peers.push(addr);
        Origin(peers.len() as u8)
    }

    /// The peer of origin `o` (None: local, or a peer past the numbered ones).
    pub fn peer(&self, o: Origin) -> Option<IpAddr> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        (o.0 as usize)
            .checked_sub(1)
            .and_then(|i| peers.get(i).copied())
    }

    /// [`ConnTable::unbind_gone`] over both families.
    pub fn unbind_gone(&self, gone: impl Fn(&DestState) -> bool) -> usize {
        self.v4.unbind_gone(&gone) + self.v6.unbind_gone(&gone)
    }

    /// [`ConnTable::keep_flow`] in the table of the key's family.
    pub fn keep_flow(&self, key: &FlowKey) {
        if key.family == xlvs_common::FAMILY_IPV6 {
            self.v6.keep_flow(key)
        } else {
            self.v4.keep_flow(key)
        }
    }

    /// The realserver of the connection with a frame of the XDP program's tuple `key`, and
    /// whether that frame is a reply (realserver → director), if the connection is in the
    /// table of the key's family.
    pub fn flow_dest(&self, key: &FlowKey) -> Option<(Arc<DestState>, bool)> {
        fn of<A: Addr>(t: &ConnTable<A>, key: &FlowKey) -> Option<(Arc<DestState>, bool)> {
            let mut f = t.lookup_flow(key)?;
            let out = f.side == Side::Out;
            Some((f.conn().dest.clone(), out))
        }
        if key.family == xlvs_common::FAMILY_IPV6 {
            of(&self.v6, key)
        } else {
            of(&self.v4, key)
        }
    }

    /// [`ConnTable::take_offload_final`] from either family's table.
    pub fn take_offload_final(&self) -> Option<super::offload::Final> {
        self.v4
            .take_offload_final()
            .or_else(|| self.v6.take_offload_final())
    }

    /// [`ConnTable::keep_services`] over both families.
    pub fn keep_services(&self, gone: impl Fn(xlvs_common::L4Key) -> bool) -> usize {
        self.v4.keep_services(&gone) + self.v6.keep_services(&gone)
    }

    /// [`ConnTable::unoffload_dests`] over both families.
    pub fn unoffload_dests(&self, which: impl Fn(&DestState) -> bool) -> usize {
        self.v4.unoffload_dests(&which) + self.v6.unoffload_dests(&which)
    }

    /// Tables for at most `max` connections per address family.
    pub fn new(max: usize) -> Self {
        Tables {
            v4: ConnTable::new(max),
            v6: ConnTable::new(max),
            peers: Mutex::new(Vec::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn templates(&self) -> usize {
        self.v4.templates() + self.v6.templates()
    }

    pub fn fragments(&self) -> usize {
        self.v4.fragments() + self.v6.fragments()
    }

    pub fn expire_fragments(&self, now: Instant) -> usize {
        self.v4.expire_fragments(now) + self.v6.expire_fragments(now)
    }

    /// Every large allocation of both tables (see [`ConnTable::regions`]).
    pub fn regions(&self) -> [(*const u8, usize); 4] {
        let [a, b] = self.v4.regions();
        let [c, d] = self.v6.regions();
        [a, b, c, d]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl<A: Addr> ConnTable<A> {
        /// Every head as the chain it leads says: unlocked, its first slot, its first
        /// connection's tag, and MULTI exactly when more follow. Returns the connections seen.
        fn check_heads(&self) -> usize {
            let mut seen = 0;
            for b in 0..self.buckets() as u32 {
                let v = self.heads[b as usize].load(Ordering::Relaxed);
                assert_eq!(v & LOCK, 0, "bucket {b} left locked");
                let bucket = self.lock(b);
                let (mut n, mut i, mut tag) = (0, v & self.index, 0);
                while i != NIL {
                    // Safety: we hold the lock; slots in chains are initialised.
                    let s = unsafe { (*self.slots[i as usize].get()).assume_init_ref() };
                    let c = s.conn.as_ref().expect("linked slots hold a connection");
                    assert_eq!(self.bucket(c.proto().number(), c.caddr, c.cport), b);
                    if n == 0 {
                        tag = self.hash_of(c).tag;
                    }
                    (n, i) = (n + 1, s.next);
                }
                drop(bucket);
                seen += n;
                if n == 0 {
                    assert_eq!(v, 0, "bucket {b}: an empty chain's head is 0");
                } else {
                    assert_eq!(v & self.tags, tag, "bucket {b}: its first connection's tag");
                    assert_eq!(v & MULTI != 0, n > 1, "bucket {b}: {n} connections");
                }
            }
            seen
        }
    }

    #[test]
    fn heads_keep_their_first_connections_tag_and_whether_more_follow() {
        // As many buckets as connections, so chains of two to five are common; inserts,
        // lookups, removals from any place in a chain and expiry, in a random order, with the
        // heads checked against their chains after every step.
        let t = ConnTable::new(1024);
        assert_eq!(t.buckets(), 1024);
        assert!(t.tags.count_ones() >= 6, "{:#x}", t.tags);
        let now = Instant::from_secs(0);
        let mut live = std::collections::BTreeSet::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for step in 0..20_000 {
            let (c, port) = ((next() % 8) as u8 + 1, (next() % 256) as u16 + 1);
            let key = conn(c, port, Fwd::Masq).in_key();
            match next() % 4 {
                0 | 1 if live.len() < 1024 => {
                    t.insert(conn(c, port, Fwd::Masq), 0, now).unwrap();
                    live.insert((c, port));
                }
                2 => {
                    if let Some(f) = t.lookup(&key) {
                        f.remove(now);
                    }
                    live.remove(&(c, port));
                }
                _ => {
                    // Expire a whole bucket: its connections are armed at 0 and long expired.
                    let b = t.bucket(PROTO_TCP, key.src, key.sport);
                    let later = Instant::from_secs(3600);
                    t.expire_bucket(b, 0, later, |_| 0, |_| {}, |_| {});
                    live.retain(|&(c, p)| {
                        let k = conn(c, p, Fwd::Masq).in_key();
                        t.bucket(PROTO_TCP, k.src, k.sport) != b
                    });
                }
            }
            assert_eq!(t.check_heads(), live.len(), "step {step}");
            assert_eq!(t.len(), live.len());
            assert_eq!(t.lookup(&key).is_some(), live.contains(&(c, port)));
            let out = conn(c, port, Fwd::Masq).out_key();
            assert_eq!(t.lookup(&out).is_some(), live.contains(&(c, port)));
        }
        // Every connection is found both ways, and none other.
        for c in 1..=8u8 {
            for port in 1..=256u16 {
                let k = conn(c, port, Fwd::Masq).in_key();
                assert_eq!(t.lookup_in(&k).is_some(), live.contains(&(c, port)));
            }
        }
    }

    #[test]
    fn a_lookup_the_head_rules_out_takes_no_lock_and_reads_no_slot() {
        // A bucket holding one connection, locked (as by another worker mid-walk): a lookup
        // of another endpoint in that bucket whose tag differs answers at once from the head.
        let t = Arc::new(ConnTable::new(1024));
        let now = Instant::from_secs(0);
        let held = conn(1, 1, Fwd::Masq);
        t.insert(held, 0, now).unwrap();
        let h = t.hash(PROTO_TCP, Ipv4Addr::new(10, 0, 0, 1), 1);
        let other = (2..u16::MAX)
            .map(|p| conn(1, p, Fwd::Masq).in_key())
            .find(|k| {
                let o = t.hash(PROTO_TCP, k.src, k.sport);
                o.bucket == h.bucket && o.tag != h.tag
            })
            .expect("an endpoint in the same bucket with another tag");
        t.check_heads();
        let found = t.lookup(&conn(1, 1, Fwd::Masq).in_key()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let t2 = t.clone();
        std::thread::spawn(move || {
            let _ = tx.send(t2.lookup(&other).is_none());
        });
        let answer = rx.recv_timeout(std::time::Duration::from_secs(10));
        drop(found);
        assert_eq!(answer, Ok(true), "the lookup waited for the bucket's lock");
    }

    #[test]
    fn a_persistent_connection_keeps_its_template_beside_its_slot() {
        // The template lives in `controls`, not in the slot: found, listed, replaced,
        // released with its connection (touched then), and dropped with the table.
        let t = ConnTable::new(64);
        let now = Instant::from_secs(0);
        let key = TemplateKey {
            proto: 6,
            caddr: Ipv4Addr::new(1, 1, 1, 0),
            vaddr: Ipv4Addr::new(10, 0, 0, 1),
            vport: 80,
        };
        let tp = Arc::new(Template::new(
            key,
            (rs(), Fwd::Masq),
            Duration::from_secs(300),
            now,
        ));
        let (held, plain) = (conn(1, 1000, Fwd::Masq), conn(2, 2000, Fwd::Masq));
        let (held_key, plain_key) = (held.in_key(), plain.in_key());
        t.insert_from((held, Some(tp.clone())), 0, now, Origin::LOCAL)
            .unwrap();
        t.insert(plain, 0, now).unwrap();
        assert_eq!(Arc::strong_count(&tp), 2);
        {
            let mut f = t.lookup(&held_key).unwrap();
            assert!(f.conn().persistent());
            assert!(std::ptr::eq(f.template().unwrap(), &*tp));
            let (c, control) = f.conn_and_template();
            assert!(control.get(c).is_some());
        }
        {
            let mut f = t.lookup(&plain_key).unwrap();
            assert!(!f.conn().persistent());
            assert!(f.template().is_none());
        }
        let mut listed = vec![];
        t.for_each_in_with_origin(0..t.buckets() as u32, |c, _, tp| {
            listed.push((c.cport, tp.map(|t| t.key)))
        });
        listed.sort_by_key(|l| l.0);
        assert_eq!(listed, [(1000, Some(key)), (2000, None)]);
        // A template learned later replaces it (a sync update naming one).
        let other = Arc::new(Template::new(
            key,
            (rs(), Fwd::Masq),
            Duration::from_secs(300),
            now,
        ));
        t.lookup(&plain_key).unwrap().set_template(other.clone());
        assert_eq!(Arc::strong_count(&other), 2);
        assert!(t.lookup(&plain_key).unwrap().conn().persistent());
        // Removing the connection lets its template go and restarts its timeout.
        let later = Instant::from_secs(100);
        t.lookup(&held_key).unwrap().remove(later);
        assert_eq!(Arc::strong_count(&tp), 1);
        assert_eq!(tp.expires_in(later), Duration::from_secs(300));
        // A slot reused by a connection without one has none.
        t.insert(conn(3, 3000, Fwd::Masq), 0, now).unwrap();
        assert!(
            t.lookup(&conn(3, 3000, Fwd::Masq).in_key())
                .unwrap()
                .template()
                .is_none()
        );
        drop(t);
        assert_eq!(Arc::strong_count(&other), 1, "the table's drop released it");
    }

    #[test]
    fn slots_are_48_bytes_for_ipv4_and_88_for_ipv6() {
        assert_eq!(ConnTable::<Ipv4Addr>::SLOT_BYTES, 48);
        assert_eq!(ConnTable::<Ipv6Addr>::SLOT_BYTES, 88);
    }

    fn rs() -> Arc<DestState> {
        Arc::new(DestState::new(Ipv4Addr::new(10, 10, 0, 1).into(), 8080))
    }

    fn conn(c: u8, port: u16, fwd: Fwd) -> Conn<Ipv4Addr> {
        let mut c = Conn::new(
            Proto::Tcp,
            (Ipv4Addr::new(10, 0, 0, c), port),
            (Ipv4Addr::new(192, 0, 2, 1), 80),
            (Ipv4Addr::new(10, 10, 0, 1), 8080),
            fwd,
            TcpState::SynRecv,
            NextHop {
                iface: 0,
                mac: [0; 6],
            },
            rs(),
        );
        c.touch(tick_ceil(Instant::from_secs(0)), 60);
        c
    }

    #[test]
    fn both_directions_find_one_entry_and_full_is_counted() {
        let t = ConnTable::new(3);
        let now = Instant::from_secs(0);
        for i in 0..3 {
            t.insert(conn(1, 1000 + i, Fwd::Masq), 0, now).unwrap();
        }
        assert_eq!(
            t.insert(conn(1, 2000, Fwd::Masq), 0, now),
            Err(InsertError::Full)
        );
        let c = conn(1, 1001, Fwd::Masq);
        assert_eq!(t.lookup(&c.in_key()).unwrap().side, Side::In);
        let mut out = t.lookup(&c.out_key()).unwrap();
        assert_eq!(out.side, Side::Out);
        assert_eq!(out.conn().cport, 1001);
        drop(out);
        // DR connections have no reply direction.
        let dr = conn(2, 1, Fwd::Route);
        t.lookup(&c.in_key()).unwrap().remove(now);
        assert!(t.lookup(&c.in_key()).is_none());
        t.insert(dr, 0, now).unwrap();
        assert!(t.lookup(&conn(2, 1, Fwd::Route).out_key()).is_none());
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn slots_are_reused_and_counters_released() {
        let t = ConnTable::new(2);
        let now = Instant::from_secs(0);
        let d = rs();
        for round in 0..10u16 {
            let mut c = conn(1, round, Fwd::Masq);
            c.dest = d.clone();
            let b = t.insert(c, 5, now).unwrap();
            assert_eq!(d.total_conns(), 1);
            // Not its entry's tick: nothing happens.
            assert_eq!(
                t.expire_bucket(b, 4, Instant::from_secs(100), |_| 0, |_| {}, |_| {}),
                0
            );
            assert_eq!(
                t.expire_bucket(b, 5, Instant::from_secs(100), |_| 0, |_| {}, |_| {}),
                1
            );
            assert_eq!(d.total_conns(), 0);
        }
        assert!(t.fresh.load(Ordering::Relaxed) <= 3);
    }

    /// Each thread frees onto its own list; a thread that finds its own empty and the
    /// high-water mark at the top takes another thread's free slots: a full table stays
    /// usable to the last slot from any thread.
    #[test]
    fn a_full_table_takes_free_slots_from_other_threads_lists() {
        let t = Arc::new(ConnTable::new(64));
        let now = Instant::from_secs(0);
        // Another thread fills the table and empties it: every slot on its list.
        {
            let t = t.clone();
            std::thread::spawn(move || {
                for p in 0..64 {
                    t.insert(conn(1, p, Fwd::Masq), 0, now).unwrap();
                }
                for p in 0..64 {
                    t.lookup_in(&conn(1, p, Fwd::Masq).in_key())
                        .unwrap()
                        .remove(now);
                }
            })
            .join()
            .unwrap();
        }
        assert_eq!(t.fresh.load(Ordering::Relaxed), 65, "every slot used once");
        // This thread's list is empty: all 64 come off the other's.
        for p in 0..64 {
            t.insert(conn(2, p, Fwd::Masq), 0, now).unwrap();
        }
        assert_eq!(t.len(), 64);
        assert!(matches!(
            t.insert(conn(3, 0, Fwd::Masq), 0, now),
            Err(InsertError::Full)
        ));
        for p in 0..64 {
            assert!(t.lookup_in(&conn(2, p, Fwd::Masq).in_key()).is_some());
        }
    }

    #[test]
    fn a_live_connection_is_filed_again_at_its_deadline() {
        let t = ConnTable::new(8);
        let b = t
            .insert(conn(1, 1, Fwd::Masq), 7, Instant::from_secs(0))
            .unwrap();
        let mut refiled = None;
        let gone = t.expire_bucket(
            b,
            7,
            Instant::from_secs(1),
            |d| {
                refiled = Some(d);
                d
            },
            |_| {},
            |_| {},
        );
        assert_eq!(gone, 0);
        assert_eq!(refiled, Some(60 * 16));
        // Its entry is now the refiled one.
        assert_eq!(
            t.expire_bucket(b, 7, Instant::from_secs(61), |d| d, |_| {}, |_| {}),
            0
        );
        assert_eq!(
            t.expire_bucket(b, 960, Instant::from_secs(61), |d| d, |_| {}, |_| {}),
            1
        );
    }

    #[test]
    fn two_threads_insert_look_up_and_expire_without_losing_counts() {
        let t = Arc::new(ConnTable::new(1 << 14));
        let d = rs();
        let now = Instant::from_secs(0);
        let handles: Vec<_> = (0..2u8)
            .map(|w| {
                let (t, d) = (t.clone(), d.clone());
                std::thread::spawn(move || {
                    let mut buckets = Vec::new();
                    // Each thread's own ticks: an expired connection goes whichever thread's
                    // entry fires first, and this test counts per thread.
                    for round in (0..20).map(|r| r + 100 * w as u32) {
                        for p in 0..500u16 {
                            let mut c = conn(w, p, Fwd::Masq);
                            c.dest = d.clone();
                            let k = (c.in_key(), c.out_key());
                            buckets.push(t.insert(c, round, now).unwrap());
                            assert!(t.lookup(&k.0).is_some());
                            assert!(t.lookup(&k.1).is_some());
                        }
                        for b in buckets.drain(..) {
                            t.expire_bucket(
                                b,
                                round,
                                Instant::from_secs(100),
                                |x| x,
                                |_| {},
                                |_| {},
                            );
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(t.len(), 0);
        assert_eq!(d.total_conns(), 0);
    }
}
