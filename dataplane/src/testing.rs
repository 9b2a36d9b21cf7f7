//! Frame builders and independent checkers for tests and benchmarks.
//!
//! Frames are built with etherparse, and checksums verified with etherparse's full
//! recomputation, so the core's own wire code and incremental checksums are checked against an
//! implementation that shares nothing with them.

use std::net::IpAddr;
use std::sync::Arc;

use etherparse::{
    IpFragOffset, IpHeaders, Ipv4Header, NetHeaders, PacketBuilder, PacketBuilderStep,
    PacketHeaders, TransportHeader,
};

use crate::bond::Egress;
use crate::core::addr::Addr;
use crate::core::sched;
use crate::core::service::{
    Dest, DestState, Fwd, IfaceInfo, NextHop, Proto, Service, Snapshot, VsKey,
};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const EXT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xe0];
pub const INT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];

/// MAC of realserver number `i` in [`snapshot`].
pub fn rs_mac(i: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 1, i]
}

/// The Ethernet and IP headers of a frame from `src` to `dst` (IPv4 or IPv6; `ttl` is the
/// TTL or hop limit).
fn ip_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
) -> PacketBuilderStep<IpHeaders> {
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), ttl),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), ttl),
        _ => panic!("source and destination of different families"),
    }
}

/// A TCP frame with the given flags (`tcp::SYN` | `tcp::ACK` | ...), over IPv4 or IPv6.
#[allow(clippy::too_many_arguments)]
pub fn tcp_frame<A: Into<IpAddr>>(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: (A, u16),
    dst: (A, u16),
    flags: u8,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    use crate::wire::tcp::{ACK, FIN, RST, SYN};
    let mut b =
        ip_frame(src_mac, dst_mac, src.0.into(), dst.0.into(), ttl).tcp(src.1, dst.1, 1000, 64240);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if flags & ACK != 0 {
        b = b.ack(1);
    }
    if flags & FIN != 0 {
        b = b.fin();
    }
    if flags & RST != 0 {
        b = b.rst();
    }
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("build tcp frame");
    out
}

/// A UDP frame (with a checksum), over IPv4 or IPv6.
pub fn udp_frame<A: Into<IpAddr>>(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: (A, u16),
    dst: (A, u16),
    payload: &[u8],
) -> Vec<u8> {
    let b = ip_frame(src_mac, dst_mac, src.0.into(), dst.0.into(), 64).udp(src.1, dst.1);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("build udp frame");
    out
}

/// (source, destination, TTL or hop limit) of a frame's IP header; for IPv4 only if its header
/// checksum equals a full recomputation.
fn ip_parts<A: Addr>(net: &Option<NetHeaders>) -> Option<(A, A, u8)> {
    let (src, dst, ttl): (IpAddr, IpAddr, u8) = match net.as_ref()? {
        NetHeaders::Ipv4(ip, _) => {
            if ip.header_checksum != ip.calc_header_checksum() {
                return None;
            }
            (ip.source.into(), ip.destination.into(), ip.time_to_live)
        }
        NetHeaders::Ipv6(ip, _) => (ip.source.into(), ip.destination.into(), ip.hop_limit),
        _ => return None,
    };
    Some((A::from_ip(src)?, A::from_ip(dst)?, ttl))
}

/// The L3/L4 view of a frame: (src, sport, dst, dport, TTL or hop limit).
pub fn tuple<A: Addr>(frame: &[u8]) -> (A, u16, A, u16, u8) {
    let h = PacketHeaders::from_ethernet_slice(frame).expect("parse frame");
    let (src, dst, ttl) = ip_parts::<A>(&h.net).expect("an IP header of this family");
    let (sp, dp) = match h.transport {
        Some(TransportHeader::Tcp(t)) => (t.source_port, t.destination_port),
        Some(TransportHeader::Udp(u)) => (u.source_port, u.destination_port),
        _ => panic!("not tcp/udp"),
    };
    (src, sp, dst, dp, ttl)
}

/// True if the IPv4 header checksum and the TCP/UDP checksum equal a full recomputation
/// (a UDP checksum of 0, "none", is accepted over IPv4).
pub fn checksums_ok(frame: &[u8]) -> bool {
    let Ok(h) = PacketHeaders::from_ethernet_slice(frame) else {
        return false;
    };
    let payload = h.payload.slice();
    match (&h.net, &h.transport) {
        (Some(NetHeaders::Ipv4(ip, _)), Some(t)) => {
            ip.header_checksum == ip.calc_header_checksum()
                && match t {
                    TransportHeader::Tcp(t) => {
                        t.calc_checksum_ipv4(ip, payload).ok() == Some(t.checksum)
                    }
                    TransportHeader::Udp(u) => {
                        u.checksum == 0
                            || u.calc_checksum_ipv4(ip, payload).ok() == Some(u.checksum)
                    }
                    _ => false,
                }
        }
        (Some(NetHeaders::Ipv6(ip, _)), Some(t)) => match t {
            TransportHeader::Tcp(t) => t.calc_checksum_ipv6(ip, payload).ok() == Some(t.checksum),
            TransportHeader::Udp(u) => u.calc_checksum_ipv6(ip, payload).ok() == Some(u.checksum),
            _ => false,
        },
        _ => false,
    }
}

/// An ICMP "fragmentation needed" (ICMPv6 "packet too big") error when `mtu` is given, or
/// else a "time exceeded", from `src` to `dst` quoting `quoted` (an IP packet, or its first
/// bytes).
pub fn icmp_error<A: Into<IpAddr>>(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: A,
    dst: A,
    mtu: Option<u32>,
    quoted: &[u8],
) -> Vec<u8> {
    use etherparse::{Icmpv4Type, Icmpv6Type, icmpv4, icmpv6};
    let (src, dst) = (src.into(), dst.into());
    let b = ip_frame(src_mac, dst_mac, src, dst, 64);
    let mut out = Vec::new();
    let written = if src.is_ipv4() {
        let ty = match mtu {
            Some(mtu) => Icmpv4Type::DestinationUnreachable(
                icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: mtu as u16,
                },
            ),
            None => Icmpv4Type::TimeExceeded(icmpv4::TimeExceededCode::TtlExceededInTransit),
        };
        b.icmpv4(ty).write(&mut out, quoted)
    } else {
        let ty = match mtu {
            Some(mtu) => Icmpv6Type::PacketTooBig { mtu },
            None => Icmpv6Type::TimeExceeded(icmpv6::TimeExceededCode::HopLimitExceeded),
        };
        b.icmpv6(ty).write(&mut out, quoted)
    };
    written.expect("build icmp frame");
    out
}

/// An ICMP or ICMPv6 error frame, checked with etherparse: (outer source, outer destination,
/// the quoted bytes). None unless the outer IPv4 checksum (if any) and the ICMP checksum equal
/// a full recomputation.
pub fn icmp_parts<A: Addr>(frame: &[u8]) -> Option<(A, A, Vec<u8>)> {
    let h = PacketHeaders::from_ethernet_slice(frame).ok()?;
    let (src, dst, _) = ip_parts::<A>(&h.net)?;
    let payload = h.payload.slice();
    let ok = match (&h.net, h.transport) {
        (_, Some(TransportHeader::Icmpv4(icmp))) => {
            let mut check = icmp.clone();
            check.update_checksum(payload);
            check.checksum == icmp.checksum
        }
        (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Icmpv6(icmp))) => {
            let mut check = icmp.clone();
            check
                .update_checksum(ip.source, ip.destination, payload)
                .is_ok()
                && check.checksum == icmp.checksum
        }
        _ => false,
    };
    ok.then(|| (src, dst, payload.to_vec()))
}

/// `frame` with one 802.1Q tag (TCI `tci`) after its MAC addresses.
pub fn vlan_tagged(frame: &[u8], tci: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&[0x81, 0x00]);
    f.extend_from_slice(&tci.to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

/// An IPv4 packet (no Ethernet header) with its TTL set and header checksum recomputed.
pub fn with_ttl(ip_packet: &[u8], ttl: u8) -> Vec<u8> {
    let (mut h, rest) = Ipv4Header::from_slice(ip_packet).expect("ipv4 header");
    h.time_to_live = ttl;
    h.header_checksum = h.calc_header_checksum();
    let mut out = h.to_bytes().to_vec();
    out.extend_from_slice(rest);
    out
}

/// Splits an Ethernet + IPv4 frame into fragments of at most `chunk` payload bytes (a
/// multiple of 8), as a router would.
pub fn fragments(frame: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    assert!(chunk.is_multiple_of(8));
    let (h, payload) = Ipv4Header::from_slice(&frame[14..]).expect("ipv4 header");
    let payload = &payload[..h.payload_len().expect("payload len") as usize];
    payload
        .chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            let mut f = h.clone();
            f.fragment_offset = IpFragOffset::try_new((i * chunk / 8) as u16).expect("offset");
            f.more_fragments = (i + 1) * chunk < payload.len();
            f.set_payload_len(part.len()).expect("len");
            f.header_checksum = f.calc_header_checksum();
            let mut out = frame[..14].to_vec();
            out.extend_from_slice(&f.to_bytes());
            out.extend_from_slice(part);
            out
        })
        .collect()
}

/// Reassembles fragments (in order) into one frame; None unless every fragment's header
/// checksum is right and they agree on addresses, protocol and ID.
pub fn reassemble(frags: &[Vec<u8>]) -> Option<Vec<u8>> {
    let mut first: Option<Ipv4Header> = None;
    let mut payload = Vec::new();
    for f in frags {
        let (h, rest) = Ipv4Header::from_slice(&f[14..]).ok()?;
        if h.header_checksum != h.calc_header_checksum() {
            return None;
        }
        if let Some(a) = &first {
            let same = (a.source, a.destination, a.protocol, a.identification)
                == (h.source, h.destination, h.protocol, h.identification);
            if !same {
                return None;
            }
        }
        if h.fragment_offset.value() as usize * 8 != payload.len() {
            return None;
        }
        payload.extend_from_slice(&rest[..h.payload_len().ok()? as usize]);
        first.get_or_insert(h);
    }
    let mut h = first?;
    h.fragment_offset = IpFragOffset::ZERO;
    h.more_fragments = false;
    h.set_payload_len(payload.len()).ok()?;
    h.header_checksum = h.calc_header_checksum();
    let mut out = frags[0][..14].to_vec();
    out.extend_from_slice(&h.to_bytes());
    out.extend_from_slice(&payload);
    Some(out)
}

/// An IPv6 packet (no Ethernet header) with its hop limit set.
pub fn with_hop_limit(ip_packet: &[u8], hop: u8) -> Vec<u8> {
    let mut out = ip_packet.to_vec();
    out[7] = hop;
    out
}

/// Splits an Ethernet + IPv6 frame (no extension headers) into fragments of at most `chunk`
/// bytes of the original payload (a multiple of 8), each with a fragment header of `ident`
/// (RFC 8200 §4.5).
pub fn fragments6(frame: &[u8], chunk: usize, ident: u32) -> Vec<Vec<u8>> {
    assert!(chunk.is_multiple_of(8));
    let next = frame[14 + 6];
    let payload = &frame[14 + 40..];
    payload
        .chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            let mut out = frame[..14 + 40].to_vec();
            out[14 + 6] = 44;
            let len = (8 + part.len()) as u16;
            out[14 + 4..14 + 6].copy_from_slice(&len.to_be_bytes());
            let more = (i + 1) * chunk < payload.len();
            let off = ((i * chunk / 8) as u16) << 3 | more as u16;
            out.extend_from_slice(&[next, 0]);
            out.extend_from_slice(&off.to_be_bytes());
            out.extend_from_slice(&ident.to_be_bytes());
            out.extend_from_slice(part);
            out
        })
        .collect()
}

/// Reassembles IPv6 fragments (in order) into one frame; None unless they agree on
/// addresses and identification.
pub fn reassemble6(frags: &[Vec<u8>]) -> Option<Vec<u8>> {
    let first = frags.first()?;
    let mut out = first[..14 + 40].to_vec();
    out[14 + 6] = first[14 + 40];
    for f in frags {
        if f[14 + 8..14 + 40] != first[14 + 8..14 + 40]
            || f[14 + 44..14 + 48] != first[14 + 44..14 + 48]
        {
            return None;
        }
        let off = (u16::from_be_bytes([f[14 + 42], f[14 + 43]]) & !7) as usize;
        if off != out.len() - 14 - 40 {
            return None;
        }
        out.extend_from_slice(&f[14 + 48..]);
    }
    let len = (out.len() - 14 - 40) as u16;
    out[14 + 4..14 + 6].copy_from_slice(&len.to_be_bytes());
    Some(out)
}

/// Realserver number `i` of the fixtures: weight 1, its MAC resolved on interface 1 (int0).
pub fn dest(i: u8, addr: impl Into<IpAddr>, port: u16, fwd: Fwd) -> Dest {
    let addr = addr.into();
    let state = Arc::new(DestState::new(addr, port));
    state.set_next_hop(Some(NextHop {
        iface: 1,
        mac: rs_mac(i),
    }));
    Dest {
        addr,
        port,
        fwd,
        weight: 1,
        last_weight: 1,
        state,
    }
}

/// A virtual service with realservers `rips` (weight 1 each), not persistent, no sorry server.
pub fn service<A: Into<IpAddr> + Copy>(
    proto: Proto,
    vip: (A, u16),
    rips: &[(A, u16)],
    fwd: Fwd,
    scheduler: &str,
) -> Service {
    let dests: Vec<Dest> = rips
        .iter()
        .enumerate()
        .map(|(i, &(addr, port))| dest(i as u8, addr, port, fwd))
        .collect();
    let key = VsKey {
        proto,
        addr: vip.0.into(),
        port: vip.1,
    };
    Service {
        key,
        mark: 0,
        sched: sched::build(scheduler, Default::default(), &dests, &Default::default())
            .expect("scheduler"),
        dests,
        persist: None,
        sorry: None,
    }
}

/// A snapshot of the fixtures' two interfaces (0 = ext0, 1 = int0) and these services.
pub fn snapshot_with(services: Vec<Service>) -> Snapshot {
    let mut snap = Snapshot {
        ifaces: vec![
            IfaceInfo {
                name: "ext0".into(),
                ifindex: 2,
                mac: EXT_MAC,
                egress: Egress::Port(0),
            },
            IfaceInfo {
                name: "int0".into(),
                ifindex: 3,
                mac: INT_MAC,
                egress: Egress::Port(1),
            },
        ],
        ..Default::default()
    };
    for svc in services {
        snap.services.insert(svc.key, Arc::new(svc));
    }
    snap
}

/// A snapshot with one virtual service (see [`service`]).
pub fn snapshot<A: Into<IpAddr> + Copy>(
    proto: Proto,
    vip: (A, u16),
    rips: &[(A, u16)],
    fwd: Fwd,
    scheduler: &str,
) -> Snapshot {
    snapshot_with(vec![service(proto, vip, rips, fwd, scheduler)])
}
