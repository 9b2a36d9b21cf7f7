//! What differs between IPv4 and IPv6 in the forwarding path: parsing the IP header (and an
//! ICMP error's quote), the TTL or hop limit, rewriting an address with its checksums, and the
//! ICMP checksum. Everything else in [`super`] is written once, generic over [`Family`].

use std::net::{Ipv4Addr, Ipv6Addr};

use super::conn::{ConnTable, Tables};
use super::service::Proto;
use super::{DropReason, Expiries, Expiry, Kind, Parsed};
use crate::wire::{IpProtocol, checksum, icmpv4, icmpv6, ipv4, ipv6, tcp, udp};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NatField {
    Src,
    Dst,
}

impl NatField {
    pub(crate) fn other(self) -> NatField {
        match self {
            NatField::Src => NatField::Dst,
            NatField::Dst => NatField::Src,
        }
    }
}

pub(crate) trait Family: super::addr::Addr {
    fn table(t: &Tables) -> &ConnTable<Self>;
    fn expiry(e: &mut Expiries) -> &mut Expiry<Self>;
    /// Parses the IP header at `l3` and what follows it.
    fn parse(frame: &[u8], l3: usize) -> Result<Parsed<Self>, DropReason>;
    /// Decrements the TTL or hop limit (LVS-DR: nothing else changes).
    fn dec_ttl(l3: &mut [u8]) -> Result<(), DropReason>;
    /// Sets the source or destination address of the IP header at the start of `l3` (and
    /// decrements the TTL if `ttl`), fixing the header checksum; returns the checksum delta
    /// of the address change ([`checksum::apply`]), which the TCP/UDP pseudo-header changes by.
    fn set_addr(l3: &mut [u8], which: NatField, addr: Self, ttl: bool) -> Result<u32, DropReason>;
    /// Recomputes the checksum of the ICMP message `frame[l4..end]` in the packet at `l3`.
    fn fill_icmp_checksum(frame: &mut [u8], l3: usize, l4: usize, end: usize);
}

fn l4_proto(p: IpProtocol) -> Option<Proto> {
    match p {
        IpProtocol::Tcp => Some(Proto::Tcp),
        IpProtocol::Udp => Some(Proto::Udp),
        _ => None,
    }
}

/// A TCP or UDP packet at `l4` (IP header at `l3`, packet up to `end`), given its IP header's
/// fields: a non-first fragment (`offset` ≠ 0) carries no ports; a packet or first fragment
/// has its ports (and TCP flags) read.
#[inline(always)]
fn transport<A>(
    frame: &[u8],
    (l3, l4, end): (usize, usize, usize),
    proto: Proto,
    (src, dst, ttl): (A, A, u8),
    (offset, more_frags, ident): (u16, bool, u32),
) -> Result<Parsed<A>, DropReason> {
    let mut p = Parsed {
        l3: l3 as u16,
        l4: l4 as u16,
        len: (end - l3) as u16,
        proto,
        src,
        dst,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        ttl,
        kind: Kind::Fragment { ident },
    };
    if offset != 0 {
        return Ok(p);
    }
    p.kind = Kind::Plain {
        first_frag: more_frags,
        ident,
    };
    read_ports(frame, end, &mut p)?;
    Ok(p)
}

/// Reads the ports (and TCP flags) of a packet or first fragment.
#[inline(always)]
fn read_ports<A>(frame: &[u8], end: usize, p: &mut Parsed<A>) -> Result<(), DropReason> {
    let l4_buf = frame.get(p.l4 as usize..end).ok_or(DropReason::Malformed)?;
    match p.proto {
        Proto::Tcp => {
            tcp::Packet::new_checked(l4_buf)?;
            let t = tcp::Packet::new_unchecked(fixed::<{ tcp::MIN_HEADER_LEN }>(l4_buf)?);
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
    Ok(())
}

/// The ports of a quoted packet, reversed into the lookup tuple of the error.
fn quoted<A>(
    frame: &[u8],
    (l3, l4): (usize, usize),
    (inner_l3, inner_l4, end): (usize, usize, usize),
    (proto, src, dst, ttl): (Proto, A, A, u8),
) -> Result<Parsed<A>, DropReason> {
    // The quote must start at the transport header and hold both ports (RFC 792: 8 bytes).
    if end < inner_l4 + 4 {
        return Err(DropReason::Malformed);
    }
    let ports = &frame[inner_l4..inner_l4 + 4];
    Ok(Parsed {
        l3: l3 as u16,
        l4: l4 as u16,
        len: (end - l3) as u16,
        proto,
        src: dst,
        dst: src,
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

/// The first `N` bytes of `b` as an array, for a header already checked: the field accessors
/// of a view on it need no bounds checks.
#[inline(always)]
fn fixed<const N: usize>(b: &[u8]) -> Result<&[u8; N], DropReason> {
    b.first_chunk().ok_or(DropReason::Malformed)
}

/// The first `N` bytes of `l3` as an array: one bounds check for a whole header.
#[inline(always)]
fn header<const N: usize>(l3: &mut [u8]) -> Result<&mut [u8; N], DropReason> {
    l3.first_chunk_mut().ok_or(DropReason::Malformed)
}

/// Decrements an IPv4 TTL (IPVS `ip_vs_decrement_ttl`); returns the header checksum's delta.
#[inline(always)]
fn dec_ttl4(ip: &mut ipv4::Packet<&mut [u8; 20]>) -> Result<u32, DropReason> {
    let ttl = ip.ttl();
    if ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    ip.set_ttl(ttl - 1);
    Ok(checksum::TTL_DEC)
}

/// The common frame at fixed offsets: untagged IPv4 without options, not fragmented, with a
/// whole TCP or UDP header. None for anything else, which [`Family::parse`] then reads; for
/// every frame it takes it gives what [`Family::parse`] would (`tests::the_fixed_offset_parse_
/// agrees_with_the_general_one`), with a few comparisons on bytes the first cache line holds.
#[inline(always)]
pub(crate) fn parse_common_v4(frame: &[u8]) -> Option<Parsed<Ipv4Addr>> {
    const L3: usize = 14;
    const L4: usize = L3 + 20;
    // Ethernet, the IPv4 header and UDP's 8 bytes: the shortest frame taken.
    let h: &[u8; L4 + 8] = frame.first_chunk()?;
    let total = u16::from_be_bytes([h[L3 + 2], h[L3 + 3]]) as usize;
    // Untagged IPv4, IHL 5, neither MF nor a fragment offset, the packet inside the frame.
    if h[12..14] != [0x08, 0x00]
        || h[L3] != 0x45
        || h[L3 + 6] & 0x3f != 0
        || h[L3 + 7] != 0
        || L3 + total > frame.len()
    {
        return None;
    }
    let proto = match h[L3 + 9] {
        6 => {
            // The whole TCP header (with its options) inside the packet.
            let off = ((*frame.get(L4 + 12)? >> 4) as usize) * 4;
            if off < tcp::MIN_HEADER_LEN || L4 + off > L3 + total {
                return None;
            }
            Proto::Tcp
        }
        17 if total >= 20 + udp::HEADER_LEN => Proto::Udp,
        _ => return None,
    };
    let w32 = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let tcp_flags = if proto == Proto::Tcp {
        frame[L4 + 13]
    } else {
        0
    };
    Some(Parsed {
        l3: L3 as u16,
        l4: L4 as u16,
        len: total as u16,
        proto,
        src: Ipv4Addr::from_bits(w32(L3 + 12)),
        dst: Ipv4Addr::from_bits(w32(L3 + 16)),
        sport: u16::from_be_bytes([h[L4], h[L4 + 1]]),
        dport: u16::from_be_bytes([h[L4 + 2], h[L4 + 3]]),
        tcp_flags,
        ttl: h[L3 + 8],
        kind: Kind::Plain {
            first_frag: false,
            ident: u16::from_be_bytes([h[L3 + 4], h[L3 + 5]]) as u32,
        },
    })
}

impl Family for Ipv4Addr {
    fn table(t: &Tables) -> &ConnTable<Self> {
        &t.v4
    }

    fn expiry(e: &mut Expiries) -> &mut Expiry<Self> {
        &mut e.v4
    }

    fn parse(frame: &[u8], l3: usize) -> Result<Parsed<Self>, DropReason> {
        let b = frame.get(l3..).ok_or(DropReason::Malformed)?;
        ipv4::Packet::new_checked(b)?;
        let ip = ipv4::Packet::new_unchecked(fixed::<{ ipv4::MIN_HEADER_LEN }>(b)?);
        let l4 = l3 + ip.header_len();
        let end = l3 + ip.total_len();
        let proto = match ip.protocol() {
            // A fragmented ICMP error cannot be rewritten (its checksum covers all fragments).
            IpProtocol::Icmp if ip.frag_offset() == 0 && !ip.more_frags() => {
                return parse_icmp4(frame, l3, l4, end, ip.ttl());
            }
            p => l4_proto(p).ok_or(DropReason::NotTcpUdp)?,
        };
        transport(
            frame,
            (l3, l4, end),
            proto,
            (
                Ipv4Addr::from_bits(ip.src()),
                Ipv4Addr::from_bits(ip.dst()),
                ip.ttl(),
            ),
            (ip.frag_offset(), ip.more_frags(), ip.ident() as u32),
        )
    }

    #[inline(always)]
    fn dec_ttl(l3: &mut [u8]) -> Result<(), DropReason> {
        let mut ip = ipv4::Packet::new_unchecked(header::<20>(l3)?);
        let delta = dec_ttl4(&mut ip)?;
        ip.set_checksum(checksum::apply(ip.checksum(), delta));
        Ok(())
    }

    #[inline(always)]
    fn set_addr(l3: &mut [u8], which: NatField, addr: Self, ttl: bool) -> Result<u32, DropReason> {
        // A fixed-size view: the field accessors need no bounds checks.
        let mut ip = ipv4::Packet::new_unchecked(header::<20>(l3)?);
        let ttl_delta = if ttl { dec_ttl4(&mut ip)? } else { 0 };
        let old = match which {
            NatField::Src => ip.src(),
            NatField::Dst => ip.dst(),
        };
        match which {
            NatField::Src => ip.set_src(addr.to_bits()),
            NatField::Dst => ip.set_dst(addr.to_bits()),
        }
        let delta = checksum::delta32(old, addr.to_bits());
        ip.set_checksum(checksum::apply(ip.checksum(), ttl_delta + delta));
        Ok(delta)
    }

    fn fill_icmp_checksum(frame: &mut [u8], _l3: usize, l4: usize, end: usize) {
        icmpv4::Packet::new_unchecked(&mut frame[l4..end]).fill_checksum();
    }
}

/// An ICMP error quoting a TCP or UDP packet (IPVS `ip_vs_in_icmp`/`ip_vs_out_icmp`); the
/// lookup tuple is the quoted packet's reversed. Other ICMP (echo, ...) is not ours: the XDP
/// program passes it to the kernel.
#[cold]
#[inline(never)]
fn parse_icmp4(
    frame: &[u8],
    l3: usize,
    l4: usize,
    end: usize,
    ttl: u8,
) -> Result<Parsed<Ipv4Addr>, DropReason> {
    let icmp = icmpv4::Packet::new_checked(&frame[l4..end])?;
    if !icmpv4::is_error(icmp.msg_type()) {
        return Err(DropReason::NotTcpUdp);
    }
    let inner_l3 = l4 + icmpv4::HEADER_LEN;
    let inner = ipv4::Packet::new_header_checked(&frame[inner_l3..end])?;
    let inner_l4 = inner_l3 + inner.header_len();
    let proto = l4_proto(inner.protocol()).ok_or(DropReason::NotTcpUdp)?;
    if inner.frag_offset() != 0 {
        return Err(DropReason::Malformed);
    }
    let (src, dst) = (
        Ipv4Addr::from_bits(inner.src()),
        Ipv4Addr::from_bits(inner.dst()),
    );
    quoted(
        frame,
        (l3, l4),
        (inner_l3, inner_l4, end),
        (proto, src, dst, ttl),
    )
}

impl Family for Ipv6Addr {
    fn table(t: &Tables) -> &ConnTable<Self> {
        &t.v6
    }

    fn expiry(e: &mut Expiries) -> &mut Expiry<Self> {
        &mut e.v6
    }

    /// The fixed header, at most a fragment header, then TCP, UDP or ICMPv6. Other extension
    /// headers are not steered by the XDP program; here they are `not_tcp_udp`.
    fn parse(frame: &[u8], l3: usize) -> Result<Parsed<Self>, DropReason> {
        let ip = ipv6::Packet::new_checked(&frame[l3..])?;
        let end = l3 + ip.total_len();
        let mut l4 = l3 + ipv6::HEADER_LEN;
        let mut next = ip.next_header();
        let mut frag = None;
        if next == ipv6::NEXT_FRAGMENT {
            let f = ipv6::FragHeader::new_checked(&frame[l4..end])?;
            frag = Some((f.offset(), f.more_frags(), f.ident()));
            next = f.next_header();
            l4 += ipv6::FRAG_HEADER_LEN;
        }
        let proto = match IpProtocol::from(next) {
            IpProtocol::Unknown(ipv6::NEXT_ICMPV6) if frag.is_none() => {
                return parse_icmp6(frame, l3, l4, end, ip.hop_limit());
            }
            p => l4_proto(p).ok_or(DropReason::NotTcpUdp)?,
        };
        transport(
            frame,
            (l3, l4, end),
            proto,
            (
                Ipv6Addr::from(ip.src()),
                Ipv6Addr::from(ip.dst()),
                ip.hop_limit(),
            ),
            frag.unwrap_or((0, false, 0)),
        )
    }

    fn dec_ttl(l3: &mut [u8]) -> Result<(), DropReason> {
        let mut ip = ipv6::Packet::new_unchecked(header::<{ ipv6::HEADER_LEN }>(l3)?);
        let hl = ip.hop_limit();
        if hl <= 1 {
            return Err(DropReason::TtlExceeded);
        }
        ip.set_hop_limit(hl - 1);
        Ok(())
    }

    /// IPv6 has no header checksum.
    fn set_addr(l3: &mut [u8], which: NatField, addr: Self, ttl: bool) -> Result<u32, DropReason> {
        if ttl {
            Self::dec_ttl(l3)?;
        }
        let mut ip = ipv6::Packet::new_unchecked(header::<{ ipv6::HEADER_LEN }>(l3)?);
        let old = match which {
            NatField::Src => ip.src(),
            NatField::Dst => ip.dst(),
        };
        match which {
            NatField::Src => ip.set_src(addr.octets()),
            NatField::Dst => ip.set_dst(addr.octets()),
        }
        Ok(checksum::delta128(u128::from_be_bytes(old), addr.to_bits()))
    }

    fn fill_icmp_checksum(frame: &mut [u8], l3: usize, l4: usize, end: usize) {
        let ip = ipv6::Packet::new_unchecked(&frame[l3..]);
        let (src, dst) = (ip.src(), ip.dst());
        icmpv6::Packet::new_unchecked(&mut frame[l4..end]).fill_checksum(&src, &dst);
    }
}

/// An ICMPv6 error quoting a TCP or UDP packet (IPVS `ip_vs_in_icmp_v6`); as for IPv4. A
/// quote that starts with a fragment header must be of a first fragment.
#[cold]
#[inline(never)]
fn parse_icmp6(
    frame: &[u8],
    l3: usize,
    l4: usize,
    end: usize,
    hop_limit: u8,
) -> Result<Parsed<Ipv6Addr>, DropReason> {
    let icmp = icmpv6::Packet::new_checked(&frame[l4..end])?;
    if !icmpv6::is_error(icmp.msg_type()) {
        return Err(DropReason::NotTcpUdp);
    }
    let inner_l3 = l4 + icmpv6::HEADER_LEN;
    let inner = ipv6::Packet::new_header_checked(&frame[inner_l3..end])?;
    let mut inner_l4 = inner_l3 + ipv6::HEADER_LEN;
    let mut next = inner.next_header();
    if next == ipv6::NEXT_FRAGMENT {
        let f = ipv6::FragHeader::new_checked(&frame[inner_l4..end])?;
        if f.offset() != 0 {
            return Err(DropReason::Malformed);
        }
        next = f.next_header();
        inner_l4 += ipv6::FRAG_HEADER_LEN;
    }
    let proto = l4_proto(IpProtocol::from(next)).ok_or(DropReason::NotTcpUdp)?;
    let (src, dst) = (Ipv6Addr::from(inner.src()), Ipv6Addr::from(inner.dst()));
    quoted(
        frame,
        (l3, l4),
        (inner_l3, inner_l4, end),
        (proto, src, dst, hop_limit),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fragments, tcp_frame, udp_frame};
    use crate::wire::tcp::{ACK, SYN};

    /// Every frame the fixed-offset parse takes, it reads as the general parse does; it takes
    /// the common ones. Checked over frames with random bytes of their headers changed and
    /// random lengths (a deterministic generator, 200 000 frames).
    #[test]
    fn the_fixed_offset_parse_agrees_with_the_general_one() {
        let (a, b) = (Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 100));
        let mac = [2, 0, 0, 0, 0, 1];
        let mut with_options = tcp_frame(mac, mac, (a, 40000), (b, 80), SYN, 64, b"xyz");
        // Twelve bytes of TCP options (NOPs): data offset 8.
        with_options.splice(54..54, [1u8; 12]);
        with_options[46] = 8 << 4;
        let len = (with_options.len() - 14) as u16;
        with_options[16..18].copy_from_slice(&len.to_be_bytes());
        let bases = [
            tcp_frame(mac, mac, (a, 40000), (b, 80), ACK, 64, b"hello"),
            tcp_frame(mac, mac, (a, 40000), (b, 80), SYN, 64, b""),
            udp_frame(mac, mac, (a, 5353), (b, 53), b"q"),
            udp_frame(mac, mac, (a, 5353), (b, 53), b""),
            with_options,
            fragments(&udp_frame(mac, mac, (a, 5353), (b, 53), &[7; 64]), 32)[0].clone(),
        ];
        for f in &bases[..5] {
            let p = parse_common_v4(f).expect("a common frame");
            assert_eq!(Ok(p), Ipv4Addr::parse(f, 14));
        }
        assert_eq!(parse_common_v4(&bases[5]), None, "a first fragment");
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut taken, mut left) = (0, 0);
        for i in 0..200_000 {
            let mut f = bases[i % bases.len()].clone();
            for _ in 0..1 + next() % 3 {
                let at = (next() % 60) as usize % f.len();
                // Mostly small changes, so that some stay parseable.
                f[at] = match next() % 4 {
                    0 => next() as u8,
                    1 => f[at] ^ 1 << (next() % 8),
                    2 => 0,
                    _ => f[at].wrapping_add(4),
                };
            }
            if next() % 4 == 0 {
                f.truncate((next() as usize) % (f.len() + 1));
            }
            match parse_common_v4(&f) {
                Some(p) => {
                    taken += 1;
                    assert_eq!(Ok(p), Ipv4Addr::parse(&f, 14), "{f:02x?}");
                }
                None => left += 1,
            }
        }
        assert!(
            taken > 20_000 && left > 20_000,
            "taken {taken}, left {left}"
        );
    }
}
