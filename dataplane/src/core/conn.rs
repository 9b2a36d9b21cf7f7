//! The connection table, shared by all workers.
//!
//! A connection is found from either direction: its *in* entry is keyed by the client's frame
//! as the director receives it (client → VIP), and for LVS-NAT an *out* entry is keyed by the
//! realserver's reply (RIP → client) and points back at the in key. Replies may arrive on any RX
//! queue, so the table is shared: a `DashMap` (sharded `RwLock`ed hash maps, ahash hasher), one
//! shard lock held per lookup, never across a batch. docs/BENCHMARKS.md has the measurements.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use super::Instant;
use super::service::{Binding, Dest, DestState, Fwd, NextHop, Proto};
use super::tcp_state::TcpState;

/// A 5-tuple as seen on the wire in one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// A connection (IPVS `struct ip_vs_conn`).
#[derive(Debug)]
pub struct Conn {
    pub proto: Proto,
    pub caddr: Ipv4Addr,
    pub cport: u16,
    pub vaddr: Ipv4Addr,
    pub vport: u16,
    pub daddr: Ipv4Addr,
    pub dport: u16,
    pub fwd: Fwd,
    pub state: TcpState,
    /// Counted in the realserver's inactive connections rather than its active ones.
    pub inactive: bool,
    /// IPVS `IP_VS_CONN_F_NOOUTPUT`: set for every method but NAT, so LVS-DR connections use the
    /// INPUT-ONLY state table; NAT connections use INPUT and OUTPUT from the start.
    pub no_output: bool,
    pub last_seen: Instant,
    pub timeout: Duration,
    pub dest: Arc<DestState>,
    /// Where the client's frames came from: replies go back through it (LVS-NAT).
    pub client_hop: NextHop,
    /// The persistence template that chose the realserver (IPVS `cp->control`): it lives at
    /// least as long as the connections it controls.
    pub template: Option<Arc<Template>>,
}

impl Conn {
    /// Moves the realserver's active/inactive counters when the state crosses between an
    /// active and an inactive state (IPVS `set_tcp_state` with `tcp_state_active`, Linux ≥ 4.9).
    pub fn set_state(&mut self, new: TcpState) {
        if new == self.state {
            return;
        }
        let active = new.is_active();
        if !self.inactive && !active {
            self.dest.rebind(Binding::Active, Binding::Inactive);
            self.inactive = true;
        } else if self.inactive && active {
            self.dest.rebind(Binding::Inactive, Binding::Active);
            self.inactive = false;
        }
        self.state = new;
    }

    fn binding(&self) -> Binding {
        if self.inactive {
            Binding::Inactive
        } else {
            Binding::Active
        }
    }

    /// The key of the realserver's replies (LVS-NAT only).
    pub fn out_key(&self) -> ConnKey {
        ConnKey {
            src: self.daddr.to_bits(),
            dst: self.caddr.to_bits(),
            sport: self.dport,
            dport: self.cport,
            proto: self.proto.number(),
        }
    }

    pub fn in_key(&self) -> ConnKey {
        ConnKey {
            src: self.caddr.to_bits(),
            dst: self.vaddr.to_bits(),
            sport: self.cport,
            dport: self.vport,
            proto: self.proto.number(),
        }
    }

    pub fn expired(&self, now: Instant) -> bool {
        now.since(self.last_seen) >= self.timeout
    }

    /// Releases the connection's hold on its realserver's counters (IPVS `ip_vs_unbind_dest`),
    /// and restarts its template's persistence timeout: a client that comes back within the
    /// timeout of its last connection's end finds the same realserver.
    fn unbind(&self, now: Instant) {
        self.dest.unbind(self.binding());
        if let Some(t) = &self.template {
            t.touch(now);
        }
    }
}

/// Key of a persistence template: the client's address masked with the service's netmask, and
/// the virtual service (IPVS keys a template as a connection from `caddr & mask:0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TemplateKey {
    pub proto: u8,
    pub caddr: u32,
    pub vaddr: u32,
    pub vport: u16,
}

/// A persistence template (IPVS `IP_VS_CONN_F_TEMPLATE`): which realserver a client's
/// connections to a persistent service go to. It counts toward the realserver's `persist`
/// connections from creation until it is out of the table and no connection holds it.
#[derive(Debug)]
pub struct Template {
    pub key: TemplateKey,
    /// The realserver's shared state: its identity and its `persist` counter.
    pub dest: Arc<DestState>,
    timeout: Duration,
    last_used: AtomicU64,
}

impl Template {
    pub fn new(key: TemplateKey, dest: Arc<DestState>, timeout: Duration, now: Instant) -> Self {
        dest.bind(Binding::Template);
        Template {
            key,
            dest,
            timeout,
            last_used: AtomicU64::new(now.0),
        }
    }

    /// Restarts the persistence timeout (a new connection used it, or one it controls ended).
    pub fn touch(&self, now: Instant) {
        self.last_used.fetch_max(now.0, Ordering::Relaxed);
    }

    fn idle(&self, now: Instant) -> bool {
        now.since(Instant(self.last_used.load(Ordering::Relaxed))) >= self.timeout
    }
}

impl Drop for Template {
    fn drop(&mut self) {
        self.dest.unbind(Binding::Template);
    }
}

/// The datagram a fragment belongs to: (source, destination, protocol, IP ID) (RFC 791).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: u32,
    pub dst: u32,
    pub ident: u16,
    pub proto: u8,
}

impl FragKey {
    pub fn new(src: u32, dst: u32, proto: u8, ident: u16) -> Self {
        FragKey {
            src,
            dst,
            ident,
            proto,
        }
    }
}

/// How long the tuple of a forwarded first fragment is kept for its datagram's later
/// fragments. Fragments of one datagram leave the sender back to back; the kernel's
/// reassembly timeout (30 s) is for the receiver's buffer, not the path.
pub const FRAG_LIFETIME: Duration = Duration::from_secs(5);
/// Most datagrams whose fragments are tracked at once.
pub const MAX_FRAGS: usize = 65536;

/// A table entry: the connection itself, or the reply direction's pointer to it.
#[derive(Debug)]
pub enum Entry {
    In(Conn),
    Out(ConnKey),
}

/// Why a connection could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// The table holds its configured maximum of connections.
    Full,
}

/// The shared connection table.
#[derive(Debug)]
pub struct ConnTable {
    map: DashMap<ConnKey, Entry, ahash::RandomState>,
    templates: DashMap<TemplateKey, Arc<Template>, ahash::RandomState>,
    /// Fragmented datagrams in flight: the tuple their first fragment was forwarded under.
    frags: DashMap<FragKey, (ConnKey, Instant), ahash::RandomState>,
    n_frags: AtomicUsize,
    /// Connections plus templates, checked against `max`.
    conns: AtomicUsize,
    n_templates: AtomicUsize,
    max: usize,
}

/// Where a persistent service's new connection goes: the template's realserver, found again or
/// newly chosen.
pub enum Persisted<'a> {
    /// Bound to this template (existing and still valid, or created now).
    Template(&'a Dest, Arc<Template>),
    /// The scheduler found no realserver: the caller may use its sorry server (no template).
    NoDest,
}

impl ConnTable {
    /// A table for at most `max` connections.
    pub fn new(max: usize) -> Self {
        ConnTable {
            map: DashMap::with_hasher(ahash::RandomState::new()),
            templates: DashMap::with_hasher(ahash::RandomState::new()),
            frags: DashMap::with_hasher(ahash::RandomState::new()),
            n_frags: AtomicUsize::new(0),
            conns: AtomicUsize::new(0),
            n_templates: AtomicUsize::new(0),
            max,
        }
    }

    /// Number of connections (not entries), templates excluded.
    pub fn len(&self) -> usize {
        // The two counters move separately: never underflow on a racing read.
        self.conns
            .load(Ordering::Relaxed)
            .saturating_sub(self.n_templates.load(Ordering::Relaxed))
    }

    /// Number of persistence templates.
    pub fn templates(&self) -> usize {
        self.n_templates.load(Ordering::Relaxed)
    }

    /// Reserves room for one more entry (connection or template) under the maximum.
    fn reserve(&self) -> Result<(), InsertError> {
        if self.conns.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.conns.fetch_sub(1, Ordering::Relaxed);
            return Err(InsertError::Full);
        }
        Ok(())
    }

    /// The persistence template for `key` (IPVS `ip_vs_sched_persist`). An existing template
    /// is used if its realserver is still one of the service's `dests`; like IPVS with
    /// `expire_quiescent_template = 0`, a quiescent (weight 0) or overloaded realserver keeps
    /// its persistent clients, and only a deleted one loses them. Otherwise `pick` chooses a
    /// realserver and a new template replaces the old one.
    pub fn persist<'a>(
        &self,
        key: TemplateKey,
        now: Instant,
        timeout: Duration,
        dests: &'a [Dest],
        pick: impl FnOnce() -> Option<&'a Dest>,
    ) -> Result<Persisted<'a>, InsertError> {
        use dashmap::mapref::entry::Entry as MapEntry;
        let slot = self.templates.entry(key);
        if let MapEntry::Occupied(e) = &slot
            && let Some(d) = dests.iter().find(|d| Arc::ptr_eq(&d.state, &e.get().dest))
        {
            e.get().touch(now);
            return Ok(Persisted::Template(d, e.get().clone()));
        }
        let Some(d) = pick() else {
            return Ok(Persisted::NoDest);
        };
        if matches!(slot, MapEntry::Vacant(_)) {
            self.reserve()?;
            self.n_templates.fetch_add(1, Ordering::Relaxed);
        }
        // A stale template is replaced; connections holding it keep it alive.
        let t = Arc::new(Template::new(key, d.state.clone(), timeout, now));
        slot.insert(t.clone());
        Ok(Persisted::Template(d, t))
    }

    /// Remembers that the first fragment of datagram `fk` was forwarded as the connection
    /// tuple `key`, so its other fragments follow it. Beyond [`MAX_FRAGS`] datagrams in flight
    /// it is not remembered (their later fragments are dropped and counted).
    #[cold]
    #[inline(never)]
    pub fn track_fragments(&self, fk: FragKey, key: ConnKey, now: Instant) {
        if self.n_frags.load(Ordering::Relaxed) >= MAX_FRAGS {
            return;
        }
        if self.frags.insert(fk, (key, now)).is_none() {
            self.n_frags.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The connection tuple of the datagram a non-first fragment belongs to.
    pub fn fragment(&self, fk: &FragKey, now: Instant) -> Option<ConnKey> {
        let e = self.frags.get(fk)?;
        let (key, at) = *e.value();
        (now.since(at) < FRAG_LIFETIME).then_some(key)
    }

    /// Number of fragmented datagrams tracked.
    pub fn fragments(&self) -> usize {
        self.n_frags.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub(crate) fn map(&self) -> &DashMap<ConnKey, Entry, ahash::RandomState> {
        &self.map
    }

    /// Adds a new connection and binds it to its realserver's counters, active or inactive as
    /// its `inactive` flag says (IPVS `ip_vs_bind_dest`).
    pub fn insert(&self, conn: Conn, now: Instant) -> Result<(), InsertError> {
        self.reserve()?;
        conn.dest.bind(conn.binding());
        let in_key = conn.in_key();
        let out_key = (conn.fwd == Fwd::Masq).then(|| conn.out_key());
        if let Some(old) = self.map.insert(in_key, Entry::In(conn)) {
            // Two workers raced to create the same connection: release the loser (and its out
            // entry) before adding the winner's out entry, which may have the same key.
            self.release(old, now);
        }
        if let Some(k) = out_key {
            self.map.insert(k, Entry::Out(in_key));
        }
        Ok(())
    }

    /// Removes the connection whose in key is `in_key` (and its out entry).
    pub fn remove(&self, in_key: &ConnKey, now: Instant) -> bool {
        match self.map.remove_if(in_key, |_, v| matches!(v, Entry::In(_))) {
            Some((_, e)) => {
                self.release(e, now);
                true
            }
            None => false,
        }
    }

    fn release(&self, e: Entry, now: Instant) {
        if let Entry::In(c) = e {
            if c.fwd == Fwd::Masq {
                let ok = c.out_key();
                self.map
                    .remove_if(&ok, |_, v| matches!(v, Entry::Out(k) if *k == c.in_key()));
            }
            c.unbind(now);
            self.conns.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Removes every connection idle past its timeout; returns how many went.
    ///
    /// This walks the whole table and is run by the control thread, off the packet path, about
    /// once a second. It holds one shard lock at a time.
    pub fn expire(&self, now: Instant) -> usize {
        let mut gone_out = Vec::new();
        let mut removed = 0usize;
        self.map.retain(|_, e| match e {
            Entry::In(c) if c.expired(now) => {
                if c.fwd == Fwd::Masq {
                    gone_out.push((c.out_key(), c.in_key()));
                }
                c.unbind(now);
                removed += 1;
                false
            }
            _ => true,
        });
        for (ok, ik) in &gone_out {
            self.map
                .remove_if(ok, |_, v| matches!(v, Entry::Out(k) if k == ik));
        }
        // A template goes once idle past its timeout and no connection holds it (IPVS defers
        // a template's expiry while `n_control` > 0).
        let mut gone_templates = 0;
        self.templates.retain(|_, t| {
            let keep = !(t.idle(now) && Arc::strong_count(t) == 1);
            gone_templates += (!keep) as usize;
            keep
        });
        self.n_templates
            .fetch_sub(gone_templates, Ordering::Relaxed);
        self.conns
            .fetch_sub(removed + gone_templates, Ordering::Relaxed);
        let mut gone_frags = 0;
        self.frags.retain(|_, (_, at)| {
            let keep = now.since(*at) < FRAG_LIFETIME;
            gone_frags += (!keep) as usize;
            keep
        });
        self.n_frags.fetch_sub(gone_frags, Ordering::Relaxed);
        removed
    }

    /// Calls `f` on every connection (for listings); holds one shard read lock at a time.
    pub fn for_each(&self, mut f: impl FnMut(&Conn)) {
        for e in self.map.iter() {
            if let Entry::In(c) = e.value() {
                f(c);
            }
        }
    }
}
