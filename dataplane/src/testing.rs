//! Frame builders and independent checkers for tests and benchmarks.
//!
//! Frames are built with etherparse, and checksums verified with etherparse's full
//! recomputation, so the core's own wire code and incremental checksums are checked against an
//! implementation that shares nothing with them.

use std::net::{IpAddr, Ipv4Addr};
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
