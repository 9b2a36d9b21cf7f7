//! The sans-IO forwarding core: a frame and a time in, a verdict and the frame rewritten in
//! place out. No sockets, no clock reads, no threads; the AF_XDP workers are loops around
//! [`Core::process`], and the tests and benchmarks drive it directly.

pub mod conn;
pub mod sched;
pub mod service;
pub mod tcp_state;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::wire::{Error as WireError, IpProtocol, checksum, ethernet, ipv4, tcp, udp};
use conn::{Conn, ConnKey, ConnTable, Entry, Persisted, Template, TemplateKey};
use sched::Source;
use service::{Dest, Fwd, IfaceId, NextHop, Proto, Service, Snapshot, VsKey};
use tcp_state::{Dir, TcpState};

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
    /// Ethernet, IPv4, TCP or UDP header truncated or invalid.
    Malformed = 0,
    /// Not IPv4 (the XDP program should not have steered it).
    NotIpv4,
    /// Not TCP or UDP.
    NotTcpUdp,
    /// A non-first IP fragment (the XDP program passes these to the kernel).
    Fragment,
    /// No connection and no virtual service for it (e.g. a service deleted meanwhile).
    NoService,
    /// A TCP segment other than a SYN for a connection the table does not know.
    NoConn,
    /// The service has no realserver that can take a new connection.
    NoDest,
    /// The realserver's (or client's) MAC is not resolved yet.
    NoNeighbour,
    /// TTL would reach zero (IPVS decrements it on every forwarding method).
    TtlExceeded,
    /// The connection table is full.
    TableFull,
}

impl DropReason {
    pub const COUNT: usize = 10;
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Malformed,
        DropReason::NotIpv4,
        DropReason::NotTcpUdp,
        DropReason::Fragment,
        DropReason::NoService,
        DropReason::NoConn,
        DropReason::NoDest,
        DropReason::NoNeighbour,
        DropReason::TtlExceeded,
        DropReason::TableFull,
    ];

    /// Stable snake_case name for counters and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NotIpv4 => "not_ipv4",
            DropReason::NotTcpUdp => "not_tcp_udp",
            DropReason::Fragment => "fragment",
            DropReason::NoService => "no_service",
            DropReason::NoConn => "no_conn",
            DropReason::NoDest => "no_dest",
            DropReason::NoNeighbour => "no_neighbour",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::TableFull => "table_full",
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
}

impl CoreStats {
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// The forwarding core of one worker. Workers share the connection table.
#[derive(Debug)]
pub struct Core {
    table: Arc<ConnTable>,
    pub stats: CoreStats,
}

/// Offsets and fields read from a frame once, before the lookup.
struct Parsed {
    l3: usize,
    l4: usize,
    proto: Proto,
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    ttl: u8,
}

/// What the rewrite needs, copied out of the table so no lock is held while writing the frame.
enum Action {
    /// Client → realserver.
    ToDest {
        fwd: Fwd,
        daddr: u32,
        dport: u16,
        hop: Option<NextHop>,
    },
    /// Realserver → client (LVS-NAT): source back to VIP:vport.
    ToClient {
        vaddr: u32,
        vport: u16,
        hop: NextHop,
    },
}

impl Core {
    pub fn new(table: Arc<ConnTable>) -> Self {
        Core {
            table,
            stats: CoreStats::default(),
        }
    }

    pub fn table(&self) -> &Arc<ConnTable> {
        &self.table
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

    fn forward(
        &mut self,
        now: Instant,
        snap: &Snapshot,
        frame: &mut [u8],
        rx_iface: IfaceId,
    ) -> Result<IfaceId, DropReason> {
        let p = parse(frame)?;
        let key = ConnKey {
            src: p.src,
            dst: p.dst,
            sport: p.sport,
            dport: p.dport,
            proto: p.proto.number(),
        };
        let action = match self.lookup(now, snap, &key, &p)? {
            Some(a) => a,
            None => self.new_conn(now, snap, frame, &p, rx_iface)?,
        };
        rewrite(snap, frame, &p, action)
    }

    /// The action for a known connection, updating its state; None if the table has none.
    fn lookup(
        &mut self,
        now: Instant,
        snap: &Snapshot,
        key: &ConnKey,
        p: &Parsed,
    ) -> Result<Option<Action>, DropReason> {
        let map = self.table.map();
        let mut e = match map.get_mut(key) {
            Some(e) => e,
            None => return Ok(None),
        };
        // One lookup for client → realserver; replies find the out entry, then the connection.
        let in_key = match e.value_mut() {
            Entry::In(c) => {
                if !(p.proto == Proto::Tcp && is_syn(p.tcp_flags) && reusable(c)) {
                    let dir = if c.no_output {
                        Dir::InputOnly
                    } else {
                        Dir::Input
                    };
                    touch(c, now, snap, dir, p);
                    return Ok(Some(Action::ToDest {
                        fwd: c.fwd,
                        daddr: c.daddr.to_bits(),
                        dport: c.dport,
                        hop: c.dest.next_hop(),
                    }));
                }
                None
            }
            Entry::Out(ik) => Some(*ik),
        };
        drop(e);
        match in_key {
            // IPVS conn_reuse_mode 1: a new SYN on a TIME_WAIT/CLOSE connection expires it and
            // is scheduled afresh.
            None => {
                self.table.remove(key, now);
                Ok(None)
            }
            // Realserver → client.
            Some(ik) => {
                let mut e = match map.get_mut(&ik) {
                    Some(e) => e,
                    None => return Err(DropReason::NoConn),
                };
                let Entry::In(c) = e.value_mut() else {
                    return Err(DropReason::NoConn);
                };
                c.no_output = false;
                touch(c, now, snap, Dir::Output, p);
                Ok(Some(Action::ToClient {
                    vaddr: c.vaddr.to_bits(),
                    vport: c.vport,
                    hop: c.client_hop,
                }))
            }
        }
    }

    /// Schedules a new connection to a realserver of the frame's virtual service.
    fn new_conn(
        &mut self,
        now: Instant,
        snap: &Snapshot,
        frame: &[u8],
        p: &Parsed,
        rx_iface: IfaceId,
    ) -> Result<Action, DropReason> {
        let vs = VsKey {
            proto: p.proto,
            addr: p.dst.into(),
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
        let (d, template) = self.choose_dest(now, svc, p)?;
        let client_mac = ethernet::Frame::new_unchecked(frame).src();
        let (state, timeout) = match p.proto {
            Proto::Tcp => {
                let st = tcp_state::next(TcpState::None, Dir::InputOnly, p.tcp_flags);
                (st, snap.timeouts.tcp[st as usize])
            }
            Proto::Udp => (TcpState::None, snap.timeouts.udp),
        };
        let conn = Conn {
            proto: p.proto,
            caddr: p.src.into(),
            cport: p.sport,
            vaddr: p.dst.into(),
            vport: p.dport,
            daddr: d.addr,
            dport: d.port,
            fwd: d.fwd,
            state,
            // IPVS binds a new connection as inactive and its first transition (NONE → SYN_RECV)
            // makes it active; UDP connections stay inactive.
            inactive: p.proto == Proto::Udp || !state.is_active(),
            // IPVS sets NOOUTPUT for every method but NAT: DR uses the INPUT-ONLY table.
            no_output: d.fwd != Fwd::Masq,
            last_seen: now,
            timeout,
            dest: d.state.clone(),
            client_hop: NextHop {
                iface: rx_iface,
                mac: client_mac,
            },
            template,
        };
        // Bind with the counters of the state the first packet moved it to.
        let action = Action::ToDest {
            fwd: d.fwd,
            daddr: d.addr.to_bits(),
            dport: d.port,
            hop: d.state.next_hop(),
        };
        self.table
            .insert(conn, now)
            .map_err(|_| DropReason::TableFull)?;
        self.stats.new_conns += 1;
        Ok(action)
    }

    /// The realserver for a new connection (IPVS `ip_vs_schedule`): through the client's
    /// persistence template if the service is persistent, else the scheduler; the sorry server
    /// if no realserver can take it.
    fn choose_dest<'s>(
        &self,
        now: Instant,
        svc: &'s Service,
        p: &Parsed,
    ) -> Result<(&'s Dest, Option<Arc<Template>>), DropReason> {
        let src = Source {
            addr: IpAddr::V4(p.src.into()),
            port: p.sport,
        };
        let pick = || svc.sched.schedule(&svc.dests, &src).map(|i| &svc.dests[i]);
        let sorry = || {
            svc.sorry
                .as_ref()
                .map(|d| (d, None))
                .ok_or(DropReason::NoDest)
        };
        let Some(pers) = svc.persist else {
            return pick().map(|d| (d, None)).map_or_else(sorry, Ok);
        };
        let key = TemplateKey {
            proto: p.proto.number(),
            caddr: p.src & pers.netmask.to_bits(),
            vaddr: p.dst,
            vport: p.dport,
        };
        let found = self
            .table
            .persist(
                key,
                now,
                pers.timeout,
                |st| svc.dests.iter().find(|d| Arc::ptr_eq(&d.state, st)),
                pick,
                |d: &Dest| (d.state.clone(), d.addr, d.port),
            )
            .map_err(|_| DropReason::TableFull)?;
        match found {
            Persisted::Template(d, t) => Ok((d, Some(t))),
            // The sorry server gets no template: the client returns to the realservers as soon
            // as one can take it.
            Persisted::NoDest => sorry(),
        }
    }
}

fn is_syn(flags: u8) -> bool {
    flags & (tcp::SYN | tcp::ACK | tcp::RST | tcp::FIN) == tcp::SYN
}

fn reusable(c: &Conn) -> bool {
    matches!(c.state, TcpState::TimeWait | TcpState::Close)
}

/// Records a packet on a bound connection: TCP state transition (moving the realserver's
/// active/inactive counters) and the idle timeout of the resulting state.
fn touch(c: &mut Conn, now: Instant, snap: &Snapshot, dir: Dir, p: &Parsed) {
    c.last_seen = now;
    match c.proto {
        Proto::Tcp => {
            c.set_state(tcp_state::next(c.state, dir, p.tcp_flags));
            c.timeout = snap.timeouts.tcp[c.state as usize];
        }
        Proto::Udp => c.timeout = snap.timeouts.udp,
    }
}

fn parse(frame: &[u8]) -> Result<Parsed, DropReason> {
    let eth = ethernet::Frame::new_checked(frame)?;
    if eth.ethertype() != ethernet::EtherType::Ipv4 {
        return Err(DropReason::NotIpv4);
    }
    let l3 = eth.payload_offset();
    let ip = ipv4::Packet::new_checked(&frame[l3..])?;
    if ip.frag_offset() != 0 {
        return Err(DropReason::Fragment);
    }
    let l4 = l3 + ip.header_len();
    let l4_buf = &frame[l4..l3 + ip.total_len()];
    let (proto, sport, dport, tcp_flags) = match ip.protocol() {
        IpProtocol::Tcp => {
            let t = tcp::Packet::new_checked(l4_buf)?;
            (Proto::Tcp, t.src_port(), t.dst_port(), t.flags())
        }
        IpProtocol::Udp => {
            // A first fragment holds only part of the datagram: check the header only.
            if l4_buf.len() < udp::HEADER_LEN {
                return Err(DropReason::Malformed);
            }
            let u = udp::Packet::new_unchecked(l4_buf);
            (Proto::Udp, u.src_port(), u.dst_port(), 0)
        }
        _ => return Err(DropReason::NotTcpUdp),
    };
    Ok(Parsed {
        l3,
        l4,
        proto,
        src: ip.src(),
        dst: ip.dst(),
        sport,
        dport,
        tcp_flags,
        ttl: ip.ttl(),
    })
}

/// Rewrites the frame for `action` and returns the egress interface.
fn rewrite(
    snap: &Snapshot,
    frame: &mut [u8],
    p: &Parsed,
    action: Action,
) -> Result<IfaceId, DropReason> {
    let hop = match action {
        Action::ToDest { hop, .. } => hop.ok_or(DropReason::NoNeighbour)?,
        Action::ToClient { hop, .. } => hop,
    };
    let src_mac = snap.iface_mac(hop.iface).ok_or(DropReason::NoNeighbour)?;
    match action {
        Action::ToDest {
            fwd: Fwd::Route, ..
        } => dec_ttl(frame, p)?,
        Action::ToDest {
            fwd: Fwd::Masq,
            daddr,
            dport,
            ..
        } => {
            nat(frame, p, NatField::Dst, daddr, dport)?;
        }
        Action::ToClient { vaddr, vport, .. } => {
            nat(frame, p, NatField::Src, vaddr, vport)?;
        }
    }
    let mut eth = ethernet::Frame::new_unchecked(&mut *frame);
    eth.set_dst(hop.mac);
    eth.set_src(src_mac);
    Ok(hop.iface)
}

/// Decrements the TTL with an incremental IP checksum update (LVS-DR: the L4 header is
/// untouched).
fn dec_ttl(frame: &mut [u8], p: &Parsed) -> Result<(), DropReason> {
    let mut ip = ipv4::Packet::new_unchecked(&mut frame[p.l3..]);
    let ttl = ip.ttl();
    if ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    let proto = u8::from(ip.protocol()) as u16;
    let c = checksum::update16(
        ip.checksum(),
        (ttl as u16) << 8 | proto,
        ((ttl - 1) as u16) << 8 | proto,
    );
    ip.set_ttl(ttl - 1);
    ip.set_checksum(c);
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum NatField {
    Src,
    Dst,
}

/// Rewrites the source or destination address and port, decrements the TTL, and updates the IP
/// and L4 checksums incrementally (RFC 1624).
fn nat(
    frame: &mut [u8],
    p: &Parsed,
    which: NatField,
    addr: u32,
    port: u16,
) -> Result<(), DropReason> {
    let (old_addr, old_port) = match which {
        NatField::Src => (p.src, p.sport),
        NatField::Dst => (p.dst, p.dport),
    };
    {
        let mut ip = ipv4::Packet::new_unchecked(&mut frame[p.l3..]);
        let ttl = ip.ttl();
        if ttl <= 1 {
            return Err(DropReason::TtlExceeded);
        }
        let mut c = ip.checksum();
        let proto = u8::from(ip.protocol()) as u16;
        c = checksum::update16(
            c,
            (ttl as u16) << 8 | proto,
            ((ttl - 1) as u16) << 8 | proto,
        );
        c = checksum::update32(c, old_addr, addr);
        ip.set_ttl(ttl - 1);
        match which {
            NatField::Src => ip.set_src(addr),
            NatField::Dst => ip.set_dst(addr),
        }
        ip.set_checksum(c);
    }
    let l4 = &mut frame[p.l4..];
    match p.proto {
        Proto::Tcp => {
            let mut t = tcp::Packet::new_unchecked(l4);
            let mut c = t.checksum();
            c = checksum::update32(c, old_addr, addr);
            c = checksum::update16(c, old_port, port);
            match which {
                NatField::Src => t.set_src_port(port),
                NatField::Dst => t.set_dst_port(port),
            }
            t.set_checksum(c);
        }
        Proto::Udp => {
            let mut u = udp::Packet::new_unchecked(l4);
            let old = u.checksum();
            match which {
                NatField::Src => u.set_src_port(port),
                NatField::Dst => u.set_dst_port(port),
            }
            // Zero means "no checksum" in UDP over IPv4: leave it so.
            if old != 0 {
                let mut c = checksum::update32(old, old_addr, addr);
                c = checksum::update16(c, old_port, port);
                u.set_checksum(if c == 0 { 0xffff } else { c });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
