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

use crate::wire::{Error as WireError, IpProtocol, checksum, ethernet, icmpv4, ipv4, tcp, udp};
use conn::{Conn, ConnKey, ConnTable, Entry, FragKey, Persisted, Template, TemplateKey};
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

/// Offsets and fields read from a frame once, before the lookup. `src`..`dport` are the
/// tuple the connection table is searched with: the frame's own, or for an ICMP error the
/// quoted packet's reversed (the direction the error travels in).
struct Parsed {
    // Offsets fit in u16 (frames are at most one UMEM frame): a small `Parsed` travels in
    // registers.
    l3: u16,
    l4: u16,
    proto: Proto,
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    ttl: u8,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A TCP or UDP packet, or the first fragment of one (`first_frag`; `ident` is its IP ID).
    Plain { first_frag: bool, ident: u16 },
    /// A non-first fragment: no L4 header; its ports come from the fragment table.
    Fragment { ident: u16 },
    /// An ICMP error quoting a TCP/UDP packet; offsets of the quoted IP and L4 headers and the
    /// end of the quote.
    IcmpError {
        inner_l3: u16,
        inner_l4: u16,
        end: u16,
    },
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
        let mut p = parse(frame)?;
        if let Kind::Fragment { ident } = p.kind {
            self.fragment_ports(&mut p, ident, now)?;
        }
        let key = ConnKey {
            src: p.src,
            dst: p.dst,
            sport: p.sport,
            dport: p.dport,
            proto: p.proto.number(),
        };
        let action = match self.lookup(now, snap, &key, &p)? {
            Some(a) => a,
            None if matches!(p.kind, Kind::Plain { .. }) => {
                self.new_conn(now, snap, frame, &p, rx_iface)?
            }
            // ICMP errors and fragments only follow existing connections (IPVS looks an ICMP
            // error's quoted packet up with `ip_vs_conn_in_get`/`out_get` and never schedules
            // for it).
            None => return Err(DropReason::NoConn),
        };
        let out = rewrite(snap, frame, &p, action)?;
        if let Kind::Plain {
            first_frag: true,
            ident,
        } = p.kind
        {
            let fk = FragKey::new(key.src, key.dst, key.proto, ident);
            self.table.track_fragments(fk, key, now);
        }
        Ok(out)
    }

    /// A non-first fragment takes the ports its first fragment was forwarded with.
    #[cold]
    #[inline(never)]
    fn fragment_ports(&self, p: &mut Parsed, ident: u16, now: Instant) -> Result<(), DropReason> {
        let first = self
            .table
            .fragment(&FragKey::new(p.src, p.dst, p.proto.number(), ident), now)
            .ok_or(DropReason::Fragment)?;
        p.sport = first.sport;
        p.dport = first.dport;
        Ok(())
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
                if matches!(p.kind, Kind::Plain { .. }) {
                    c.no_output = false;
                }
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
            .persist(key, now, pers.timeout, &svc.dests, pick)
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
/// active/inactive counters) and the idle timeout of the resulting state. Fragments refresh
/// the idle time only (their flags are not known); ICMP errors change nothing (IPVS leaves the
/// state to the connection's own segments).
fn touch(c: &mut Conn, now: Instant, snap: &Snapshot, dir: Dir, p: &Parsed) {
    if matches!(p.kind, Kind::IcmpError { .. }) {
        return;
    }
    c.last_seen = now;
    if matches!(p.kind, Kind::Fragment { .. }) {
        return;
    }
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
    let l4 = l3 + ip.header_len();
    let end = l3 + ip.total_len();
    let proto = match ip.protocol() {
        IpProtocol::Tcp => Proto::Tcp,
        IpProtocol::Udp => Proto::Udp,
        // A fragmented ICMP error cannot be rewritten (its checksum covers all fragments).
        IpProtocol::Icmp if ip.frag_offset() == 0 && !ip.more_frags() => {
            return parse_icmp(frame, l3, l4, end, ip.ttl());
        }
        _ => return Err(DropReason::NotTcpUdp),
    };
    let mut p = Parsed {
        l3: l3 as u16,
        l4: l4 as u16,
        proto,
        src: ip.src(),
        dst: ip.dst(),
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        ttl: ip.ttl(),
        kind: Kind::Fragment { ident: ip.ident() },
    };
    if ip.frag_offset() != 0 {
        return Ok(p);
    }
    p.kind = Kind::Plain {
        first_frag: ip.more_frags(),
        ident: ip.ident(),
    };
    let l4_buf = &frame[l4..end];
    match proto {
        Proto::Tcp => {
            let t = tcp::Packet::new_checked(l4_buf)?;
            (p.sport, p.dport, p.tcp_flags) = (t.src_port(), t.dst_port(), t.flags());
        }
        Proto::Udp => {
            // A first fragment holds only part of the datagram: check the header only.
            if l4_buf.len() < udp::HEADER_LEN {
                return Err(DropReason::Malformed);
            }
            let u = udp::Packet::new_unchecked(l4_buf);
            (p.sport, p.dport) = (u.src_port(), u.dst_port());
        }
    }
    Ok(p)
}

#[cold]
#[inline(never)]
/// An ICMP error quoting a TCP or UDP packet (IPVS `ip_vs_in_icmp`/`ip_vs_out_icmp`); the
/// lookup tuple is the quoted packet's reversed. Other ICMP (echo, ...) is not ours: the XDP
/// program passes it to the kernel.
fn parse_icmp(
    frame: &[u8],
    l3: usize,
    l4: usize,
    end: usize,
    ttl: u8,
) -> Result<Parsed, DropReason> {
    let icmp = icmpv4::Packet::new_checked(&frame[l4..end])?;
    if !icmpv4::is_error(icmp.msg_type()) {
        return Err(DropReason::NotTcpUdp);
    }
    let inner_l3 = l4 + icmpv4::HEADER_LEN;
    let inner = ipv4::Packet::new_header_checked(&frame[inner_l3..end])?;
    let inner_l4 = inner_l3 + inner.header_len();
    let proto = match inner.protocol() {
        IpProtocol::Tcp => Proto::Tcp,
        IpProtocol::Udp => Proto::Udp,
        _ => return Err(DropReason::NotTcpUdp),
    };
    // The quote must start at the transport header and hold both ports (RFC 792: 8 bytes).
    if inner.frag_offset() != 0 || end < inner_l4 + 4 {
        return Err(DropReason::Malformed);
    }
    let ports = &frame[inner_l4..inner_l4 + 4];
    Ok(Parsed {
        l3: l3 as u16,
        l4: l4 as u16,
        proto,
        src: inner.dst(),
        dst: inner.src(),
        sport: u16::from_be_bytes([ports[2], ports[3]]),
        dport: u16::from_be_bytes([ports[0], ports[1]]),
        tcp_flags: 0,
        ttl,
        kind: Kind::IcmpError {
            inner_l3: inner_l3 as u16,
            inner_l4: inner_l4 as u16,
            end: end as u16,
        },
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
        } => nat(frame, p, NatField::Dst, daddr, dport)?,
        Action::ToClient { vaddr, vport, .. } => nat(frame, p, NatField::Src, vaddr, vport)?,
    }
    let mut eth = ethernet::Frame::new_unchecked(&mut *frame);
    eth.set_dst(hop.mac);
    eth.set_src(src_mac);
    Ok(hop.iface)
}

/// Decrements the TTL with an incremental IP checksum update (LVS-DR: the L4 header is
/// untouched).
fn dec_ttl(frame: &mut [u8], p: &Parsed) -> Result<(), DropReason> {
    let mut ip = ipv4::Packet::new_unchecked(&mut frame[p.l3 as usize..]);
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

impl NatField {
    fn other(self) -> NatField {
        match self {
            NatField::Src => NatField::Dst,
            NatField::Dst => NatField::Src,
        }
    }
}

/// LVS-NAT rewrite of the source or destination to `addr:port`, with the TTL decremented and
/// every checksum updated incrementally (RFC 1624):
/// - a packet or first fragment: IP header, and port and L4 checksum;
/// - a non-first fragment: IP header only (the first fragment's L4 checksum already accounts
///   for the whole datagram);
/// - an ICMP error (IPVS `ip_vs_nat_icmp`): the outer address, the quoted packet's opposite
///   address and port with its IP and L4 checksums, then the ICMP checksum over the message.
fn nat(
    frame: &mut [u8],
    p: &Parsed,
    which: NatField,
    addr: u32,
    port: u16,
) -> Result<(), DropReason> {
    let old_addr = set_ip_addr(&mut frame[p.l3 as usize..], which, addr, true)?;
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
                (old_addr, addr),
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
            let old_inner = set_ip_addr(&mut frame[inner_l3..end], inner, addr, false)?;
            let l4 = &mut frame[inner_l4..end];
            let at = if inner == NatField::Src { 0 } else { 2 };
            let old_port = u16::from_be_bytes([l4[at], l4[at + 1]]);
            set_l4_port(l4, p.proto, inner, (old_inner, addr), (old_port, port));
            icmpv4::Packet::new_unchecked(&mut frame[p.l4 as usize..end]).fill_checksum();
        }
    }
    Ok(())
}

/// Sets an IPv4 header's source or destination address (decrementing the TTL if `ttl`), with
/// an incremental header checksum update; returns the old address.
fn set_ip_addr(buf: &mut [u8], which: NatField, addr: u32, ttl: bool) -> Result<u32, DropReason> {
    let mut ip = ipv4::Packet::new_unchecked(buf);
    let old = match which {
        NatField::Src => ip.src(),
        NatField::Dst => ip.dst(),
    };
    let mut c = ip.checksum();
    if ttl {
        let t = ip.ttl();
        if t <= 1 {
            return Err(DropReason::TtlExceeded);
        }
        let proto = u8::from(ip.protocol()) as u16;
        c = checksum::update16(c, (t as u16) << 8 | proto, ((t - 1) as u16) << 8 | proto);
        ip.set_ttl(t - 1);
    }
    c = checksum::update32(c, old, addr);
    match which {
        NatField::Src => ip.set_src(addr),
        NatField::Dst => ip.set_dst(addr),
    }
    ip.set_checksum(c);
    Ok(old)
}

/// Sets a TCP or UDP header's source or destination port and updates its checksum for the
/// port and the pseudo-header address change. `l4` may be a quote cut short: a checksum that
/// lies beyond its end is left alone.
fn set_l4_port(
    l4: &mut [u8],
    proto: Proto,
    which: NatField,
    (old_addr, addr): (u32, u32),
    (old_port, port): (u16, u16),
) {
    let at = if which == NatField::Src { 0 } else { 2 };
    l4[at..at + 2].copy_from_slice(&port.to_be_bytes());
    let ck = match proto {
        Proto::Tcp => tcp::CHECKSUM_OFFSET,
        Proto::Udp => udp::CHECKSUM_OFFSET,
    };
    if l4.len() < ck + 2 {
        return;
    }
    let old = u16::from_be_bytes([l4[ck], l4[ck + 1]]);
    // Zero means "no checksum" in UDP over IPv4: leave it so.
    if proto == Proto::Udp && old == 0 {
        return;
    }
    let mut c = checksum::update32(old, old_addr, addr);
    c = checksum::update16(c, old_port, port);
    if proto == Proto::Udp && c == 0 {
        c = 0xffff;
    }
    l4[ck..ck + 2].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests;
