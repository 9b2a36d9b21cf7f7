//! The Linux bonding driver's transmit hash (`bond_xmit_hash` in Linux 6.1's
//! `drivers/net/bonding/bond_main.c`), computed over an outgoing Ethernet frame the way the
//! kernel computes it over the skb it sends, so that a flow leaves on the member a kernel
//! bond would choose and the switch sees what it would see from that bond.
//!
//! The kernel loads addresses and ports as they lie in the frame (`__be32` cast to `u32` on
//! a little-endian machine); this does the same (`from_le_bytes` of the wire bytes), so the
//! value equals the x86 kernel's.
//!
//! - **layer2**: `dst[5] ^ src[5] ^ ethertype` (`bond_eth_hash`).
//! - **layer2+3**: the layer2 value, then the IP addresses folded in (`bond_ip_hash`).
//! - **layer3+4**: the first four bytes of the L4 header (ports; 0 for fragments and
//!   protocols without ports; an ICMP echo's type, code and id), then the addresses folded
//!   in, then the lowest bit dropped ("the common even ports pattern").
//!
//! An ICMP error is hashed as the datagram it quotes (addresses and ports of the inner
//! header), so it follows its flow. A frame that is neither IPv4 nor IPv6, or is too short,
//! falls back to the layer2 value, as the kernel's.

/// `xmit_hash_policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XmitHash {
    Layer2,
    Layer23,
    Layer34,
}

impl XmitHash {
    /// The name `xmit_hash_policy` takes (and sysfs shows before the number).
    pub fn name(self) -> &'static str {
        match self {
            XmitHash::Layer2 => "layer2",
            XmitHash::Layer23 => "layer2+3",
            XmitHash::Layer34 => "layer3+4",
        }
    }

    /// Parses a policy name; sysfs's `layer3+4 1` form is accepted too.
    pub fn parse(s: &str) -> Option<XmitHash> {
        match s.split_whitespace().next()? {
            "layer2" | "0" => Some(XmitHash::Layer2),
            "layer3+4" | "1" => Some(XmitHash::Layer34),
            "layer2+3" | "2" => Some(XmitHash::Layer23),
            _ => None,
        }
    }
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

/// What the kernel's dissection keeps of a frame (`struct flow_keys`, the parts the bond
/// reads): the addresses folded to 32 bits each, the ports word and the ICMP word.
#[derive(Default)]
struct Flow {
    src: u32,
    dst: u32,
    ports: u32,
    icmp: u32,
}

#[inline(always)]
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// `bond_eth_hash`.
#[inline(always)]
fn eth_hash(frame: &[u8]) -> u32 {
    if frame.len() < 14 {
        return 0;
    }
    (frame[5] ^ frame[11]) as u32 ^ u16::from_be_bytes([frame[12], frame[13]]) as u32
}

/// The 32-bit fold of an IPv6 address (`ipv6_addr_hash`): the XOR of its four words.
#[inline(always)]
fn v6_fold(b: &[u8], at: usize) -> Option<u32> {
    Some(le32(b, at)? ^ le32(b, at + 4)? ^ le32(b, at + 8)? ^ le32(b, at + 12)?)
}

/// Offset of the ports word in the L4 header of `proto` (`proto_ports_offset`).
#[inline(always)]
fn ports_offset(proto: u8) -> Option<usize> {
    match proto {
        6 | 17 | 33 | 132 | 136 => Some(0), // TCP, UDP, DCCP, SCTP, UDP-Lite
        50 => Some(0),                      // ESP: the SPI
        51 => Some(4),                      // AH: the SPI
        _ => None,
    }
}

/// `bond_flow_ip`: the addresses at `nh`, and (layer3+4) the ports; returns the L4 offset
/// and protocol (`None` for a fragment), or `None` if the header is not there.
#[inline(always)]
fn flow_ip(
    frame: &[u8],
    l2_proto: u16,
    nh: usize,
    l34: bool,
    fk: &mut Flow,
) -> Option<(usize, Option<u8>)> {
    let (l4, proto) = match l2_proto {
        ETH_P_IP => {
            let h = frame.get(nh..nh + 20)?;
            fk.src = le32(h, 12)?;
            fk.dst = le32(h, 16)?;
            let ihl = (h[0] & 0x0f) as usize * 4;
            let frag = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
            (nh + ihl, (!frag).then_some(h[9]))
        }
        ETH_P_IPV6 => {
            let h = frame.get(nh..nh + 40)?;
            fk.src = v6_fold(h, 8)?;
            fk.dst = v6_fold(h, 24)?;
            (nh + 40, Some(h[6]))
        }
        _ => return None,
    };
    if l34 && let Some(off) = proto.and_then(ports_offset) {
        // The kernel reads nothing (0) when the ports lie beyond the frame.
        fk.ports = le32(frame, l4 + off).unwrap_or(0);
    }
    Some((l4, proto))
}

/// Whether ICMP `t` (IPv4) is an error (`icmp_is_err`).
fn icmp4_err(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

/// Whether ICMPv6 `t` is an error (`icmpv6_is_err`).
fn icmp6_err(t: u8) -> bool {
    matches!(t, 1..=4)
}

/// Whether ICMP type `t` carries an identifier (`icmp_has_id`).
fn icmp_has_id(t: u8, v6: bool) -> bool {
    if v6 {
        matches!(t, 128 | 129)
    } else {
        matches!(t, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18)
    }
}

/// `bond_flow_dissect` for the layer2+3 and layer3+4 policies.
#[inline(always)]
fn dissect(frame: &[u8], l34: bool) -> Option<Flow> {
    let l2_proto = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let mut fk = Flow::default();
    let (l4, proto) = flow_ip(frame, l2_proto, 14, l34, &mut fk)?;
    let v6 = match proto {
        Some(1) => false,
        Some(58) => true,
        _ => return Some(fk),
    };
    // ICMP: type, code, and the identifier of an echo (`skb_flow_get_icmp_tci`).
    let Some(&[t, c]) = frame
        .get(l4..l4 + 2)
        .map(|b| <&[u8; 2]>::try_from(b).unwrap())
    else {
        return Some(fk);
    };
    let id = if icmp_has_id(t, v6) {
        frame
            .get(l4 + 4..l4 + 6)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
    } else {
        0
    };
    fk.icmp = t as u32 | (c as u32) << 8 | (id as u32) << 16;
    let err = if v6 { icmp6_err(t) } else { icmp4_err(t) };
    if !err {
        return Some(fk);
    }
    // An error: the quoted datagram's header replaces the outer one's.
    flow_ip(frame, l2_proto, l4 + 8, l34, &mut fk)?;
    Some(fk)
}

/// The bond's transmit hash of an outgoing Ethernet frame under `policy`
/// (`__bond_xmit_hash`); the member is `members[hash % count]`.
#[inline]
pub fn xmit_hash(policy: XmitHash, frame: &[u8]) -> u32 {
    if policy == XmitHash::Layer2 {
        return eth_hash(frame);
    }
    let l34 = policy == XmitHash::Layer34;
    let Some(fk) = dissect(frame, l34) else {
        return eth_hash(frame);
    };
    let mut h = if l34 {
        if fk.icmp >> 16 != 0 {
            fk.icmp
        } else {
            fk.ports
        }
    } else {
        eth_hash(frame)
    };
    h ^= fk.dst ^ fk.src;
    h ^= h >> 16;
    h ^= h >> 8;
    if l34 { h >> 1 } else { h }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + TCP/UDP header (no payload).
    fn v4(proto: u8, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, frag: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x11]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x22]);
        f[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
        f[14] = 0x45;
        f[20..22].copy_from_slice(&frag.to_be_bytes());
        f[23] = proto;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    /// The kernel's arithmetic spelled out for one frame: 10.0.0.1:1000 → 10.0.0.2:80.
    #[test]
    fn layer34_is_the_kernels_arithmetic() {
        let f = v4(6, [10, 0, 0, 1], [10, 0, 0, 2], 1000, 80, 0);
        // ports as memory: 03 e8 00 50 → LE u32 0x5000_e803
        let ports = 0x5000_e803u32;
        let (src, dst) = (0x0100_000au32, 0x0200_000au32);
        let mut h = ports ^ dst ^ src;
        h ^= h >> 16;
        h ^= h >> 8;
        assert_eq!(xmit_hash(XmitHash::Layer34, &f), h >> 1);
        // layer2+3: the MAC bytes and the ethertype instead of the ports, no shift.
        let mut h = (0x11u32 ^ 0x22) ^ 0x0800 ^ dst ^ src;
        h ^= h >> 16;
        h ^= h >> 8;
        assert_eq!(xmit_hash(XmitHash::Layer23, &f), h);
        assert_eq!(xmit_hash(XmitHash::Layer2, &f), 0x11 ^ 0x22 ^ 0x0800);
    }

    #[test]
    fn a_flow_hashes_alike_whatever_its_payload_and_fragments_by_addresses() {
        let a = v4(6, [10, 0, 0, 1], [10, 0, 0, 2], 1000, 80, 0);
        let mut b = a.clone();
        b.extend_from_slice(&[9; 100]);
        assert_eq!(
            xmit_hash(XmitHash::Layer34, &a),
            xmit_hash(XmitHash::Layer34, &b)
        );
        // Another port: another hash (for these values).
        let c = v4(6, [10, 0, 0, 1], [10, 0, 0, 2], 1001, 80, 0);
        assert_ne!(
            xmit_hash(XmitHash::Layer34, &a),
            xmit_hash(XmitHash::Layer34, &c)
        );
        // A fragment (MF or an offset) is hashed without ports, like any other of its datagram.
        let f1 = v4(6, [10, 0, 0, 1], [10, 0, 0, 2], 1000, 80, 0x2000);
        let f2 = v4(6, [10, 0, 0, 1], [10, 0, 0, 2], 7, 7, 0x0010);
        assert_eq!(
            xmit_hash(XmitHash::Layer34, &f1),
            xmit_hash(XmitHash::Layer34, &f2)
        );
        let (src, dst) = (0x0100_000au32, 0x0200_000au32);
        let mut h = dst ^ src;
        h ^= h >> 16;
        h ^= h >> 8;
        assert_eq!(xmit_hash(XmitHash::Layer34, &f1), h >> 1);
    }

    #[test]
    fn an_icmp_error_follows_the_flow_it_quotes() {
        // The flow 10.0.0.2:80 → 10.0.0.1:1000 and an ICMP frag-needed about a segment of
        // the reverse direction quoted from 10.0.0.9 ... hashed as the quoted header.
        let quoted = v4(6, [10, 0, 0, 1], [10, 0, 0, 2], 1000, 80, 0);
        let mut f = v4(1, [10, 0, 0, 9], [10, 0, 0, 1], 0, 0, 0);
        f.truncate(34);
        f.extend_from_slice(&[3, 4, 0, 0, 0, 0, 0x05, 0xdc]);
        f.extend_from_slice(&quoted[14..]);
        assert_eq!(
            xmit_hash(XmitHash::Layer34, &f),
            xmit_hash(XmitHash::Layer34, &quoted)
        );
        // An echo request: its type, code and id instead of ports.
        let mut e = v4(1, [10, 0, 0, 1], [10, 0, 0, 2], 0, 0, 0);
        e.truncate(34);
        e.extend_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
        let icmp = 8u32 | 0x3412 << 16;
        let (src, dst) = (0x0100_000au32, 0x0200_000au32);
        let mut h = icmp ^ dst ^ src;
        h ^= h >> 16;
        h ^= h >> 8;
        assert_eq!(xmit_hash(XmitHash::Layer34, &e), h >> 1);
    }

    #[test]
    fn ipv6_folds_each_address_to_one_word() {
        let mut f = vec![0u8; 14 + 40 + 8];
        f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
        f[14] = 0x60;
        f[20] = 17;
        for i in 0..16 {
            f[22 + i] = i as u8;
            f[38 + i] = 0x80 | i as u8;
        }
        f[54..56].copy_from_slice(&53u16.to_be_bytes());
        f[56..58].copy_from_slice(&4000u16.to_be_bytes());
        let fold = |b: &[u8]| {
            (0..4).fold(0u32, |a, i| {
                a ^ u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap())
            })
        };
        let ports = u32::from_le_bytes(f[54..58].try_into().unwrap());
        let mut h = ports ^ fold(&f[38..54]) ^ fold(&f[22..38]);
        h ^= h >> 16;
        h ^= h >> 8;
        assert_eq!(xmit_hash(XmitHash::Layer34, &f), h >> 1);
    }

    #[test]
    fn anything_else_or_truncated_falls_back_to_layer2() {
        let mut arp = vec![0u8; 42];
        arp[5] = 7;
        arp[11] = 1;
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(xmit_hash(XmitHash::Layer34, &arp), 7 ^ 1 ^ 0x0806);
        let short = v4(6, [10, 0, 0, 1], [10, 0, 0, 2], 1000, 80, 0);
        assert_eq!(
            xmit_hash(XmitHash::Layer34, &short[..30]),
            0x11 ^ 0x22 ^ 0x0800
        );
        assert_eq!(xmit_hash(XmitHash::Layer34, &short[..5]), 0);
        // Ports beyond the frame read as 0.
        let mut h = 0x0200_000au32 ^ 0x0100_000a;
        h ^= h >> 16;
        h ^= h >> 8;
        assert_eq!(xmit_hash(XmitHash::Layer34, &short[..34]), h >> 1);
    }

    #[test]
    fn policy_names_parse_as_sysfs_and_modprobe_give_them() {
        for p in [XmitHash::Layer2, XmitHash::Layer23, XmitHash::Layer34] {
            assert_eq!(XmitHash::parse(p.name()), Some(p));
        }
        assert_eq!(XmitHash::parse("layer3+4 1"), Some(XmitHash::Layer34));
        assert_eq!(XmitHash::parse("encap3+4 4"), None);
    }
}
