//! Connections and templates learned from outside: a peer director's sync messages, as an
//! IPVS backup keeps them (`ip_vs_proc_conn`). The control thread hands a [`Spec`] to the worker
//! that will own the entry; its core inserts it with [`Core::insert_conn`] /
//! [`Core::insert_template`] and files it on its own timing wheels.
//!
//! An entry whose realserver the snapshot does not have is kept *unbound*: it holds a
//! placeholder [`DestState`] with the realserver's address and no next hop (its client frames
//! are dropped as `no_neighbour`), and binds to the realserver when a client frame (or, for a
//! template, a new connection) finds it configured. A connection without the client's next hop
//! learns it from the client's next frame; until then its replies are dropped as
//! `no_client_hop`.
//!
//! **Conflicts** (split brain: both directors scheduled the same client connection, to
//! different realservers): an update from the peer the entry came from is that peer's word and
//! replaces it (as the kernel's backup takes its master's). Against an entry of our own (or of
//! another peer) the rule needs only what both sides hold, so both directors pick the same
//! realserver: the entry further along wins (ESTABLISHED over a closing state over the
//! handshake), then the lower realserver address and port. The loser changes nothing. A
//! connection of our own stays ours (its origin local) when a peer updates it, and one
//! closing here is not reopened by a peer's ESTABLISHED copy (a resync echoing it back).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::addr::Addr;
use super::conn::{Conn, ConnKey, InsertError, Origin, TemplateKey};
use super::family::Family;
use super::service::{DestState, Fwd, IfaceId, NextHop, Proto, Snapshot, VsKey};
use super::tcp_state::TcpState;
use super::wheel::{tick, tick_ceil};
use super::{Core, Instant};
use crate::wire::ethernet;

/// A connection as a peer's sync message describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnSpec {
    /// TCP or UDP.
    pub proto: Proto,
    /// The client's address.
    pub caddr: IpAddr,
    /// The client's port.
    pub cport: u16,
    /// The virtual service's address (VIP).
    pub vaddr: IpAddr,
    /// The virtual service's port.
    pub vport: u16,
    /// The realserver's address.
    pub daddr: IpAddr,
    /// The realserver's port.
    pub dport: u16,
    /// LVS-NAT or LVS-DR.
    pub fwd: Fwd,
    /// Its TCP state (`None` for UDP).
    pub state: TcpState,
    /// Time it lives from its insertion without traffic (IPVS sync v1: its state's timeout).
    pub timeout: Duration,
    /// The client's next hop, if the caller resolved it; else the client's next frame tells.
    pub client_hop: Option<NextHop>,
    /// The persistence template that controls it, linked if the table has it.
    pub template: Option<TemplateKey<IpAddr>>,
    /// The peer director it came from (listed as its origin; None: made here).
    pub origin: Option<IpAddr>,
}

/// A persistence template as a peer's sync message describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateSpec {
    /// Its key: protocol (0 for a fwmark service), masked client address, virtual address
    /// (the mark for a fwmark service) and port.
    pub key: TemplateKey<IpAddr>,
    /// The realserver's address.
    pub daddr: IpAddr,
    /// The realserver's port (0 for a fwmark service's).
    pub dport: u16,
    /// The realserver's forwarding method.
    pub fwd: Fwd,
    /// Its persistence timeout, from its insertion.
    pub timeout: Duration,
    /// The peer director it came from (None: made here).
    pub origin: Option<IpAddr>,
}

/// What the control thread hands a worker to insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spec {
    /// A connection ([`Core::insert_conn`]).
    Conn(ConnSpec),
    /// A persistence template ([`Core::insert_template`]).
    Template(TemplateSpec),
}

/// Why an entry from outside was not inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectError {
    /// Its addresses are not all of one family.
    Family,
    /// The table holds its configured maximum.
    Full,
}

/// What an insertion did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// A new entry.
    New,
    /// An existing entry updated (or refreshed).
    Updated,
    /// A conflict (another realserver) the existing entry won: nothing changed.
    ConflictKept,
    /// A conflict the message won: the entry moved to its realserver.
    ConflictTaken,
}

impl From<InsertError> for InjectError {
    fn from(_: InsertError) -> Self {
        InjectError::Full
    }
}

impl Core {
    /// The origin of entries from `peer` (remembered for the next ones: a sync datagram or a
    /// resync brings many from one peer).
    fn origin_of(&mut self, peer: Option<IpAddr>) -> Origin {
        let Some(p) = peer else {
            return Origin::LOCAL;
        };
        match self.last_origin {
            Some((q, o)) if q == p => o,
            _ => {
                let o = self.tables.origin_of(p);
                self.last_origin = Some((p, o));
                o
            }
        }
    }

    /// Inserts a connection or template from outside ([`Core::insert_conn`],
    /// [`Core::insert_template`]).
    pub fn insert(
        &mut self,
        now: Instant,
        snap: &Snapshot,
        spec: &Spec,
    ) -> Result<Inserted, InjectError> {
        match spec {
            Spec::Conn(c) => self.insert_conn(now, snap, c),
            Spec::Template(t) => self.insert_template(now, snap, t).map(|new| {
                if new {
                    Inserted::New
                } else {
                    Inserted::Updated
                }
            }),
        }
    }

    /// Inserts a connection learned from outside, or updates the one with its key (state,
    /// timeout, realserver, client hop): bound to the snapshot's realserver `daddr:dport` of
    /// its service if there is one (counted active or inactive as its state says), else kept
    /// unbound until a client frame finds it. It is filed on this core's wheel: the caller
    /// picks the worker that will own it.
    pub fn insert_conn(
        &mut self,
        now: Instant,
        snap: &Snapshot,
        spec: &ConnSpec,
    ) -> Result<Inserted, InjectError> {
        match spec.caddr {
            IpAddr::V4(_) => self.insert_conn_in::<std::net::Ipv4Addr>(now, snap, spec),
            IpAddr::V6(_) => self.insert_conn_in::<std::net::Ipv6Addr>(now, snap, spec),
        }
    }

    fn insert_conn_in<F: Family>(
        &mut self,
        now: Instant,
        snap: &Snapshot,
        spec: &ConnSpec,
    ) -> Result<Inserted, InjectError> {
        let a = |ip: IpAddr| F::from_ip(ip).ok_or(InjectError::Family);
        let (caddr, vaddr, daddr) = (a(spec.caddr)?, a(spec.vaddr)?, a(spec.daddr)?);
        let threshold = self.sync_threshold();
        let origin = self.origin_of(spec.origin);
        let table = F::table(&self.tables);
        let ex = F::expiry(&mut self.expiry);
        let vs = VsKey {
            proto: spec.proto,
            addr: spec.vaddr,
            port: spec.vport,
        };
        let found = find_dest(snap, &vs, spec.daddr, spec.dport);
        let template = match spec.template {
            Some(k) => table.template(&template_key::<F>(&k)?),
            None => None,
        };
        let deadline = tick_ceil(now + spec.timeout);
        let key = ConnKey {
            src: caddr,
            dst: vaddr,
            sport: spec.cport,
            dport: spec.vport,
            proto: spec.proto.number(),
        };
        if let Some(mut f) = table.lookup_in(&key) {
            let ours = f.origin();
            let from_it = ours == origin && !origin.is_local();
            let other;
            {
                let c = f.conn();
                other = c.daddr != daddr || c.dport != spec.dport;
                if other && !from_it && !wins(spec.state, (spec.daddr, spec.dport), c) {
                    return Ok(Inserted::ConflictKept);
                }
                // Our own connection, closing here, is not reopened by an older copy of it
                // (a peer's resync echoing what we synced to it).
                if !other
                    && ours.is_local()
                    && spec.state == TcpState::Established
                    && progress(c.state(), c.proto()) == 1
                    && c.proto() == Proto::Tcp
                {
                    return Ok(Inserted::Updated);
                }
            }
            // Our own connection stays ours unless the peer's realserver replaced ours.
            if !origin.is_local() && (!ours.is_local() || other) {
                f.set_origin(origin);
            }
            let c = f.conn();
            let outcome = if other && !from_it {
                Inserted::ConflictTaken
            } else {
                Inserted::Updated
            };
            update(c, spec, daddr, found);
            c.set_deadline(deadline);
            if let Some(t) = template {
                f.set_template(t);
            }
            // A shorter deadline is filed here (this worker owns it from now on).
            if deadline < f.armed() {
                let at = ex.conns.at(tick(now), deadline);
                f.set_armed(at);
                ex.conns.push(at, f.bucket());
            }
            return Ok(outcome);
        }
        let dest = found
            .cloned()
            .unwrap_or_else(|| Arc::new(DestState::new(spec.daddr, spec.dport)));
        // Counted on its realserver as its state says (`insert` binds it).
        let mut conn = Conn::new(
            spec.proto,
            (caddr, spec.cport),
            (vaddr, spec.vport),
            (daddr, spec.dport),
            spec.fwd,
            spec.state,
            spec.client_hop.unwrap_or(NextHop::UNKNOWN),
            dest,
        );
        if found.is_none() {
            conn.mark_unbound();
        }
        if spec.client_hop.is_none() {
            conn.forget_client_hop();
        }
        conn.in_pkts = threshold;
        conn.set_deadline(deadline);
        let at = ex.conns.at(tick(now), deadline);
        let b = table.insert_from((conn, template), at, now, origin)?;
        ex.conns.push(at, b);
        Ok(Inserted::New)
    }

    /// Inserts a persistence template learned from outside, or refreshes the one with its key:
    /// bound to the snapshot's realserver `daddr:dport` if the template's service has it, else
    /// to a placeholder until a new connection finds the realserver. Filed on this core's wheel.
    pub fn insert_template(
        &mut self,
        now: Instant,
        snap: &Snapshot,
        spec: &TemplateSpec,
    ) -> Result<bool, InjectError> {
        match spec.key.caddr {
            IpAddr::V4(_) => self.insert_template_in::<std::net::Ipv4Addr>(now, snap, spec),
            IpAddr::V6(_) => self.insert_template_in::<std::net::Ipv6Addr>(now, snap, spec),
        }
    }

    fn insert_template_in<F: Family>(
        &mut self,
        now: Instant,
        snap: &Snapshot,
        spec: &TemplateSpec,
    ) -> Result<bool, InjectError> {
        let key = template_key::<F>(&spec.key)?;
        F::from_ip(spec.daddr).ok_or(InjectError::Family)?;
        let found = template_dest(snap, &spec.key, spec.daddr, spec.dport);
        let bound = found.is_some();
        let dest = found
            .cloned()
            .unwrap_or_else(|| Arc::new(DestState::new(spec.daddr, spec.dport)));
        let origin = self.origin_of(spec.origin);
        let table = F::table(&self.tables);
        let (t, new) =
            table.learn_template(key, (dest, spec.fwd, bound), spec.timeout, now, origin)?;
        if new {
            let ex = F::expiry(&mut self.expiry);
            t.arm(ex.templates.file(tick(now), t.deadline(), key));
        }
        Ok(new)
    }
}

/// A template key of family `F`.
fn template_key<F: Addr>(k: &TemplateKey<IpAddr>) -> Result<TemplateKey<F>, InjectError> {
    let a = |ip: IpAddr| F::from_ip(ip).ok_or(InjectError::Family);
    Ok(TemplateKey {
        proto: k.proto,
        caddr: a(k.caddr)?,
        vaddr: a(k.vaddr)?,
        vport: k.vport,
    })
}

/// Updates an existing connection from a sync message that the conflict rule lets through:
/// its realserver (if another), its state (which moves the realserver's counters), a given
/// client hop in place of a learned one.
fn update<A: Addr>(c: &mut Conn<A>, spec: &ConnSpec, daddr: A, found: Option<&Arc<DestState>>) {
    let other = c.daddr != daddr || c.dport != spec.dport;
    if other {
        let dest = found
            .cloned()
            .unwrap_or_else(|| Arc::new(DestState::new(spec.daddr, spec.dport)));
        c.rebind_dest(dest);
        if found.is_none() {
            c.mark_unbound();
        }
        (c.daddr, c.dport) = (daddr, spec.dport);
        c.set_fwd(spec.fwd);
    } else if !other
        && c.unbound()
        && let Some(d) = found
    {
        c.rebind_dest(d.clone());
    }
    c.set_state(spec.state);
    if let Some(h) = spec.client_hop {
        c.learn_client_hop(h);
    }
}

/// How far along a connection in `state` is, for the conflict rule: ESTABLISHED (2) over a
/// closing state or UDP (1) over the handshake (0).
fn progress(state: TcpState, proto: Proto) -> u8 {
    match state {
        _ if proto == Proto::Udp => 1,
        TcpState::Established => 2,
        TcpState::SynSent | TcpState::SynRecv | TcpState::SynAck | TcpState::None => 0,
        _ => 1,
    }
}

/// The conflict rule: whether a message's entry (`state`, realserver `dest`) wins over `c`,
/// which holds another realserver. Both directors decide alike from what both hold.
fn wins<A: Addr>(state: TcpState, dest: (IpAddr, u16), c: &Conn<A>) -> bool {
    let proto = c.proto();
    let theirs = progress(state, proto);
    let ours = progress(c.state(), proto);
    theirs > ours || (theirs == ours && dest < (c.daddr.ip(), c.dport))
}

/// The state of realserver `daddr:dport` of service `vs` in `snap` (its sorry server too),
/// if configured. A realserver of port 0 (fwmark services) takes any port.
fn find_dest<'s>(
    snap: &'s Snapshot,
    vs: &VsKey,
    daddr: IpAddr,
    dport: u16,
) -> Option<&'s Arc<DestState>> {
    let svc = snap.service(vs)?;
    svc.dests
        .iter()
        .chain(svc.sorry.as_ref())
        .find(|d| d.addr == daddr && (d.port == dport || d.port == 0))
        .map(|d| &d.state)
}

/// The state of realserver `daddr:dport` of the service template `key` belongs to: for a
/// fwmark service (protocol 0), any service of the mark.
fn template_dest<'s>(
    snap: &'s Snapshot,
    key: &TemplateKey<IpAddr>,
    daddr: IpAddr,
    dport: u16,
) -> Option<&'s Arc<DestState>> {
    if let Some(proto) = Proto::from_number(key.proto) {
        let vs = VsKey {
            proto,
            addr: key.vaddr,
            port: key.vport,
        };
        return find_dest(snap, &vs, daddr, dport);
    }
    let mark = match key.vaddr {
        IpAddr::V4(a) => a.to_bits(),
        IpAddr::V6(a) => (a.to_bits() >> 96) as u32,
    };
    snap.services
        .values()
        .filter(|s| s.mark == mark && s.mark != 0)
        .flat_map(|s| s.dests.iter())
        .find(|d| d.state.is(daddr, dport) || (d.addr == daddr && d.port == 0))
        .map(|d| &d.state)
}

/// A client frame of a connection learned from outside (or whose realserver left the table):
/// binds it to its realserver if the snapshot has it now, and learns the client's next hop
/// from the frame (source MAC, receiving interface), as a new connection does. With
/// `expire_nodest_conn` and its realserver gone, the connection is moved to a realserver
/// with no way out ([`NextHop::GONE`]: the frame is dropped as [`DropReason::NoDest`]) and
/// expires now (the core files the earlier deadline; the wheel removes it at the next tick).
#[inline]
pub(crate) fn hooks<A: Addr>(c: &mut Conn<A>, snap: &Snapshot, frame: &[u8], rx_iface: IfaceId) {
    if c.unbound() {
        let vs = VsKey {
            proto: c.proto(),
            addr: c.vaddr.ip(),
            port: c.vport,
        };
        match find_dest(snap, &vs, c.daddr.ip(), c.dport) {
            Some(d) => c.rebind_dest(d.clone()),
            None if snap.expire_nodest_conn => {
                if c.dest.next_hop() != Some(NextHop::GONE) {
                    let gone = Arc::new(DestState::new(c.daddr.ip(), c.dport));
                    gone.set_next_hop(Some(NextHop::GONE));
                    c.rebind_dest(gone);
                    c.mark_unbound();
                }
                c.set_deadline(0);
            }
            None => {}
        }
    }
    if !c.knows_client_hop() {
        c.learn_client_hop(NextHop {
            iface: rx_iface,
            mac: ethernet::Frame::new_unchecked(frame).src(),
        });
    }
}
