//! Frame builders and independent checkers for tests and benchmarks.
//!
//! Frames are built with etherparse, and checksums verified with etherparse's full
//! recomputation, so the core's own wire code and incremental checksums are checked against an
//! implementation that shares nothing with them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use etherparse::{
    IpFragOffset, Ipv4Header, NetHeaders, PacketBuilder, PacketHeaders, TransportHeader,
};

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

/// A TCP frame with the given flags (`tcp::SYN` | `tcp::ACK` | ...).
#[allow(clippy::too_many_arguments)]
pub fn tcp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: u8,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    use crate::wire::tcp::{ACK, FIN, RST, SYN};
    let mut b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.0.octets(), dst.0.octets(), ttl)
        .tcp(src.1, dst.1, 1000, 64240);
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

/// A UDP frame (with a checksum).
pub fn udp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("build udp frame");
    out
}

/// The L3/L4 view of a frame: (src, sport, dst, dport, ttl).
pub fn tuple(frame: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16, u8) {
    let h = PacketHeaders::from_ethernet_slice(frame).expect("parse frame");
    let Some(NetHeaders::Ipv4(ip, _)) = h.net else {
        panic!("not ipv4")
    };
    let (sp, dp) = match h.transport {
        Some(TransportHeader::Tcp(t)) => (t.source_port, t.destination_port),
        Some(TransportHeader::Udp(u)) => (u.source_port, u.destination_port),
        _ => panic!("not tcp/udp"),
    };
    (
        ip.source.into(),
        sp,
        ip.destination.into(),
        dp,
        ip.time_to_live,
    )
}

/// True if the IPv4 header checksum and the TCP/UDP checksum equal a full recomputation
/// (a UDP checksum of 0, "none", is accepted).
pub fn checksums_ok(frame: &[u8]) -> bool {
    let Ok(h) = PacketHeaders::from_ethernet_slice(frame) else {
        return false;
    };
    let Some(NetHeaders::Ipv4(ip, _)) = h.net else {
        return false;
    };
    if ip.header_checksum != ip.calc_header_checksum() {
        return false;
    }
    let payload = h.payload.slice();
    match h.transport {
        Some(TransportHeader::Tcp(t)) => {
            t.calc_checksum_ipv4(&ip, payload).ok() == Some(t.checksum)
        }
        Some(TransportHeader::Udp(u)) => {
            u.checksum == 0 || u.calc_checksum_ipv4(&ip, payload).ok() == Some(u.checksum)
        }
        _ => false,
    }
}

/// An ICMP "fragmentation needed" (`mtu` given) or, with `mtu` None, "time exceeded" error
/// from `src` to `dst` quoting `quoted` (an IP packet, or its first bytes).
pub fn icmp_error(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    mtu: Option<u16>,
    quoted: &[u8],
) -> Vec<u8> {
    use etherparse::{Icmpv4Type, icmpv4};
    let ty =
        match mtu {
            Some(next_hop_mtu) => Icmpv4Type::DestinationUnreachable(
                icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu },
            ),
            None => Icmpv4Type::TimeExceeded(icmpv4::TimeExceededCode::TtlExceededInTransit),
        };
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), dst.octets(), 64)
        .icmpv4(ty);
    let mut out = Vec::with_capacity(b.size(quoted.len()));
    b.write(&mut out, quoted).expect("build icmp frame");
    out
}

/// An ICMP error frame, checked with etherparse: (outer source, outer destination, the
/// quoted bytes). None unless the outer IP checksum and the ICMP checksum equal a full
/// recomputation.
pub fn icmp_parts(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, Vec<u8>)> {
    let h = PacketHeaders::from_ethernet_slice(frame).ok()?;
    let Some(NetHeaders::Ipv4(ip, _)) = h.net else {
        return None;
    };
    if ip.header_checksum != ip.calc_header_checksum() {
        return None;
    }
    let Some(TransportHeader::Icmpv4(icmp)) = h.transport else {
        return None;
    };
    let payload = h.payload.slice();
    let mut check = icmp.clone();
    check.update_checksum(payload);
    (check.checksum == icmp.checksum)
        .then(|| (ip.source.into(), ip.destination.into(), payload.to_vec()))
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

/// An IPv6 TCP frame with the given flags (`hop` is the hop limit).
#[allow(clippy::too_many_arguments)]
pub fn tcp_frame6(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
    flags: u8,
    hop: u8,
    payload: &[u8],
) -> Vec<u8> {
    use crate::wire::tcp::{ACK, FIN, RST, SYN};
    let mut b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(src.0.octets(), dst.0.octets(), hop)
        .tcp(src.1, dst.1, 1000, 64240);
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

/// An IPv6 UDP frame.
pub fn udp_frame6(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("build udp frame");
    out
}

/// The L3/L4 view of an IPv6 frame: (src, sport, dst, dport, hop limit).
pub fn tuple6(frame: &[u8]) -> (Ipv6Addr, u16, Ipv6Addr, u16, u8) {
    let h = PacketHeaders::from_ethernet_slice(frame).expect("parse frame");
    let Some(NetHeaders::Ipv6(ip, _)) = h.net else {
        panic!("not ipv6")
    };
    let (sp, dp) = match h.transport {
        Some(TransportHeader::Tcp(t)) => (t.source_port, t.destination_port),
        Some(TransportHeader::Udp(u)) => (u.source_port, u.destination_port),
        _ => panic!("not tcp/udp"),
    };
    (
        ip.source.into(),
        sp,
        ip.destination.into(),
        dp,
        ip.hop_limit,
    )
}

/// True if an IPv6 frame's TCP/UDP checksum equals a full recomputation.
pub fn checksums_ok6(frame: &[u8]) -> bool {
    let Ok(h) = PacketHeaders::from_ethernet_slice(frame) else {
        return false;
    };
    let Some(NetHeaders::Ipv6(ip, _)) = h.net else {
        return false;
    };
    let payload = h.payload.slice();
    match h.transport {
        Some(TransportHeader::Tcp(t)) => {
            t.calc_checksum_ipv6(&ip, payload).ok() == Some(t.checksum)
        }
        Some(TransportHeader::Udp(u)) => {
            u.calc_checksum_ipv6(&ip, payload).ok() == Some(u.checksum)
        }
        _ => false,
    }
}

/// An ICMPv6 "packet too big" (`mtu` given) or, with `mtu` None, "time exceeded" error from
/// `src` to `dst` quoting `quoted`.
pub fn icmp6_error(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    mtu: Option<u32>,
    quoted: &[u8],
) -> Vec<u8> {
    use etherparse::{Icmpv6Type, icmpv6};
    let ty = match mtu {
        Some(mtu) => Icmpv6Type::PacketTooBig { mtu },
        None => Icmpv6Type::TimeExceeded(icmpv6::TimeExceededCode::HopLimitExceeded),
    };
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(src.octets(), dst.octets(), 64)
        .icmpv6(ty);
    let mut out = Vec::with_capacity(b.size(quoted.len()));
    b.write(&mut out, quoted).expect("build icmpv6 frame");
    out
}

/// An ICMPv6 error frame, checked with etherparse: (outer source, outer destination, the
/// quoted bytes). None unless the ICMPv6 checksum equals a full recomputation.
pub fn icmp6_parts(frame: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr, Vec<u8>)> {
    let h = PacketHeaders::from_ethernet_slice(frame).ok()?;
    let Some(NetHeaders::Ipv6(ip, _)) = h.net else {
        return None;
    };
    let Some(TransportHeader::Icmpv6(icmp)) = h.transport else {
        return None;
    };
    let payload = h.payload.slice();
    let mut check = icmp.clone();
    check
        .update_checksum(ip.source, ip.destination, payload)
        .ok()?;
    (check.checksum == icmp.checksum)
        .then(|| (ip.source.into(), ip.destination.into(), payload.to_vec()))
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
    let state = Arc::new(DestState::default());
    state.set_next_hop(Some(NextHop {
        iface: 1,
        mac: rs_mac(i),
    }));
    Dest {
        addr: addr.into(),
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
            },
            IfaceInfo {
                name: "int0".into(),
                ifindex: 3,
                mac: INT_MAC,
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
