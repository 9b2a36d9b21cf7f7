//! The load generator's frames, sans IO: what the generator puts on the wire and what the sink
//! reads back, with kernel pktgen's knobs (destination VIP:port, source address and port
//! ranges for many flows, frame size or IMIX, UDP or TCP SYN/ACK).
//!
//! Every frame's payload starts with a [`Stamp`] (a sequence number and the send time) that
//! LVS-NAT and LVS-DR leave untouched, so a sink behind the director can count loss and
//! one-way latency. As with pktgen, UDP frames carry no checksum (0 is valid for IPv4); TCP
//! frames carry a full one.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use xlvs_common::{PROTO_TCP, PROTO_UDP};
use xlvs_dataplane::wire::checksum;

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const UDP_LEN: usize = 8;
const TCP_LEN: usize = 20;
/// The NIC appends a 4-byte FCS: a 64-byte frame on the wire is 60 bytes in a buffer.
pub const FCS_LEN: usize = 4;
/// Marks a stamped payload.
pub const MAGIC: [u8; 2] = *b"xS";
/// Magic, sequence number and send time.
pub const STAMP_LEN: usize = 2 + 8 + 8;
/// The largest frame on the wire (1500-byte MTU).
pub const MAX_WIRE: usize = 1518;
/// The simple IMIX, 7:4:1 of 64-, 570- and 1518-byte frames (wire sizes).
pub const IMIX: [usize; 12] = [64, 64, 64, 64, 64, 64, 64, 570, 570, 570, 570, 1518];

/// What a frame carries above IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// UDP datagrams (pktgen's only kind).
    Udp,
    /// TCP SYNs: each a new connection for the director (a SYN flood).
    TcpSyn,
    /// TCP ACKs: segments of established flows (open them first with SYNs).
    TcpAck,
}

impl L4 {
    fn header_len(self) -> usize {
        match self {
            L4::Udp => UDP_LEN,
            L4::TcpSyn | L4::TcpAck => TCP_LEN,
        }
    }
}

/// Frame size on the wire, FCS included (pktgen's `pkt_size` + 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Fixed(usize),
    /// The 7:4:1 simple IMIX, in a fixed order over every 12 frames.
    Imix,
}

/// A generator's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// The first source address and how many consecutive ones to use.
    pub src_ip: Ipv4Addr,
    pub src_ips: u32,
    /// The first source port and how many consecutive ones to use.
    pub src_port: u16,
    pub src_ports: u16,
    /// The virtual service.
    pub dst: SocketAddrV4,
    pub l4: L4,
    pub size: Size,
}

/// A spec that cannot make frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

/// What the sink reads back from a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub seq: u64,
    /// Send time, in the generator's clock (CLOCK_MONOTONIC nanoseconds on one machine).
    pub sent_ns: u64,
}

impl Spec {
    /// Checks that the ranges are not empty, stay inside their address and port spaces, and
    /// that every frame has room for the headers and the stamp.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.src_ips == 0 || self.src_ports == 0 {
            return Err(SpecError("empty source address or port range".into()));
        }
        if u32::from(self.src_ip)
            .checked_add(self.src_ips - 1)
            .is_none()
        {
            return Err(SpecError(
                "source address range runs past 255.255.255.255".into(),
            ));
        }
        if self.src_port.checked_add(self.src_ports - 1).is_none() {
            return Err(SpecError("source port range runs past 65535".into()));
        }
        let min = self.min_wire_len();
        let sizes: &[usize] = match &self.size {
            Size::Fixed(n) => std::slice::from_ref(n),
            Size::Imix => &IMIX,
        };
        for &n in sizes {
            if n < min || n > MAX_WIRE {
                return Err(SpecError(format!(
                    "{n}-byte frames: {:?} frames with a stamp need {min} to {MAX_WIRE} bytes",
                    self.l4
                )));
            }
        }
        Ok(())
    }

    /// The smallest frame on the wire that holds the headers and the stamp (64 for UDP).
    pub fn min_wire_len(&self) -> usize {
        (ETH_LEN + IPV4_LEN + self.l4.header_len() + STAMP_LEN + FCS_LEN).max(64)
    }

    /// Distinct (source address, source port) pairs: the flows.
    pub fn flows(&self) -> u64 {
        self.src_ips as u64 * self.src_ports as u64
    }

    /// The source of frame `seq`: flows are visited in turn, ports fastest.
    pub fn flow(&self, seq: u64) -> (Ipv4Addr, u16) {
        let f = seq % self.flows();
        let port = self.src_port + (f % self.src_ports as u64) as u16;
        let ip = u32::from(self.src_ip) + (f / self.src_ports as u64) as u32;
        (Ipv4Addr::from(ip), port)
    }

    /// Length of frame `seq` in a buffer (its wire size without the FCS).
    pub fn len(&self, seq: u64) -> usize {
        let wire = match self.size {
            Size::Fixed(n) => n,
            Size::Imix => IMIX[(seq % IMIX.len() as u64) as usize],
        };
        wire - FCS_LEN
    }

    /// Writes frame `seq`, sent at `sent_ns`, to the start of `buf` and returns its length.
    /// `buf` must hold [`Spec::len`] bytes and the spec be [`Spec::validate`]d.
    pub fn write(&self, seq: u64, sent_ns: u64, buf: &mut [u8]) -> usize {
        let len = self.len(seq);
        let f = &mut buf[..len];
        let (src, sport) = self.flow(seq);
        f[0..6].copy_from_slice(&self.dst_mac);
        f[6..12].copy_from_slice(&self.src_mac);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());

        let ip = &mut f[ETH_LEN..ETH_LEN + IPV4_LEN];
        let proto = match self.l4 {
            L4::Udp => PROTO_UDP,
            L4::TcpSyn | L4::TcpAck => PROTO_TCP,
        };
        ip[0] = 0x45;
        ip[1] = 0;
        ip[2..4].copy_from_slice(&((len - ETH_LEN) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
        ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
        ip[8] = 64;
        ip[9] = proto;
        ip[10..12].fill(0);
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&self.dst.ip().octets());
        let c = checksum::compute(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());

        let l4_at = ETH_LEN + IPV4_LEN;
        let payload_at = l4_at + self.l4.header_len();
        let p = &mut f[payload_at..];
        p[..2].copy_from_slice(&MAGIC);
        p[2..10].copy_from_slice(&seq.to_be_bytes());
        p[10..18].copy_from_slice(&sent_ns.to_be_bytes());
        p[STAMP_LEN..].fill(0);

        let l4 = &mut f[l4_at..];
        let l4_len = l4.len();
        l4[0..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&self.dst.port().to_be_bytes());
        match self.l4 {
            L4::Udp => {
                l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                l4[6..8].fill(0);
            }
            L4::TcpSyn | L4::TcpAck => {
                let (flags, ack) = match self.l4 {
                    L4::TcpSyn => (0x02u8, 0u32),
                    _ => (0x10, 1),
                };
                l4[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
                l4[8..12].copy_from_slice(&ack.to_be_bytes());
                l4[12] = 5 << 4;
                l4[13] = flags;
                l4[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
                l4[16..20].fill(0);
                // Pseudo header: addresses, protocol, length.
                let mut s = checksum::sum(&src.octets(), 0);
                s = checksum::sum(&self.dst.ip().octets(), s);
                s += proto as u32 + l4_len as u32;
                let c = !checksum::fold(checksum::sum(l4, s));
                l4[16..18].copy_from_slice(&c.to_be_bytes());
            }
        }
        len
    }
}

/// The stamp of a frame that left the generator, after any LVS rewrite: IPv4 (with options)
/// over Ethernet, with or without one 802.1Q tag; None for anything else.
pub fn read_stamp(frame: &[u8]) -> Option<Stamp> {
    let mut at = ETH_LEN;
    let mut ty = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if ty == 0x8100 {
        ty = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        at += 4;
    }
    if ty != 0x0800 {
        return None;
    }
    let ihl = (*frame.get(at)? & 0x0f) as usize * 4;
    let proto = *frame.get(at + 9)?;
    let l4 = at + ihl;
    let payload = match proto {
        PROTO_UDP => l4 + UDP_LEN,
        PROTO_TCP => l4 + (*frame.get(l4 + 12)? >> 4) as usize * 4,
        _ => return None,
    };
    let s = frame.get(payload..payload + STAMP_LEN)?;
    if s[..2] != MAGIC {
        return None;
    }
    Some(Stamp {
        seq: u64::from_be_bytes(s[2..10].try_into().ok()?),
        sent_ns: u64::from_be_bytes(s[10..18].try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use xlvs_dataplane::core::service::{Fwd, Proto};
    use xlvs_dataplane::core::{Instant, Verdict};
    use xlvs_dataplane::testing::{CLIENT_MAC, EXT_MAC, checksums_ok, snapshot};

    fn spec(l4: L4, size: Size) -> Spec {
        Spec {
            src_mac: CLIENT_MAC,
            dst_mac: EXT_MAC,
            src_ip: Ipv4Addr::new(198, 51, 100, 1),
            src_ips: 4,
            src_port: 10_000,
            src_ports: 1000,
            dst: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 100), 53),
            l4,
            size,
        }
    }

    #[test]
    fn udp_64_byte_frames_are_valid_and_stamped() {
        let s = spec(L4::Udp, Size::Fixed(64));
        s.validate().unwrap();
        let mut buf = [0u8; 2048];
        let n = s.write(12_345, 987_654_321, &mut buf);
        assert_eq!(n, 60, "64 bytes on the wire");
        let f = &buf[..n];
        let p = etherparse::SlicedPacket::from_ethernet(f).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header().source_addr(), Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(
            ip.header().destination_addr(),
            Ipv4Addr::new(192, 0, 2, 100)
        );
        assert!(checksums_ok(f), "IPv4 checksum (UDP's is 0, as pktgen's)");
        let Some(etherparse::TransportSlice::Udp(u)) = p.transport else {
            panic!("not UDP")
        };
        assert_eq!((u.source_port(), u.destination_port()), (10_000 + 345, 53));
        assert_eq!(u.checksum(), 0);
        assert_eq!(
            read_stamp(f),
            Some(Stamp {
                seq: 12_345,
                sent_ns: 987_654_321
            })
        );
    }

    #[test]
    fn tcp_frames_carry_a_full_checksum() {
        for (l4, flag) in [(L4::TcpSyn, 0x02), (L4::TcpAck, 0x10)] {
            let s = spec(l4, Size::Fixed(128));
            s.validate().unwrap();
            let mut buf = [0u8; 2048];
            let n = s.write(7, 42, &mut buf);
            assert_eq!(n, 124);
            assert!(checksums_ok(&buf[..n]), "{l4:?}");
            assert_eq!(buf[ETH_LEN + IPV4_LEN + 13], flag);
            assert_eq!(
                read_stamp(&buf[..n]),
                Some(Stamp {
                    seq: 7,
                    sent_ns: 42
                })
            );
        }
        let e = spec(L4::TcpSyn, Size::Fixed(64)).validate().unwrap_err();
        assert_eq!(
            e.0,
            "64-byte frames: TcpSyn frames with a stamp need 76 to 1518 bytes"
        );
    }

    #[test]
    fn flows_cover_every_source_pair_once_per_round() {
        let s = spec(L4::Udp, Size::Fixed(64));
        assert_eq!(s.flows(), 4000);
        let seen: HashSet<(Ipv4Addr, u16)> = (0..s.flows()).map(|i| s.flow(i)).collect();
        assert_eq!(seen.len(), 4000);
        assert_eq!(s.flow(0), s.flow(4000));
        assert_eq!(s.flow(3999), (Ipv4Addr::new(198, 51, 100, 4), 10_999));
        let mut bad = spec(L4::Udp, Size::Fixed(64));
        bad.src_port = 65_000;
        assert!(bad.validate().is_err(), "ports past 65535");
        bad = spec(L4::Udp, Size::Fixed(64));
        bad.src_ips = 0;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn imix_is_seven_four_one() {
        let s = spec(L4::Udp, Size::Imix);
        s.validate().unwrap();
        let lens: Vec<usize> = (0..24).map(|i| s.len(i) + FCS_LEN).collect();
        for (size, count) in [(64, 14), (570, 8), (1518, 2)] {
            assert_eq!(lens.iter().filter(|&&l| l == size).count(), count);
        }
        let mut buf = [0u8; 2048];
        for i in 0..12 {
            let n = s.write(i, i, &mut buf);
            assert!(checksums_ok(&buf[..n]));
            assert_eq!(read_stamp(&buf[..n]).unwrap().seq, i);
        }
    }

    #[test]
    fn stamps_survive_lvs_nat() {
        let snap = snapshot(
            Proto::Udp,
            (Ipv4Addr::new(192, 0, 2, 100), 53),
            &[(Ipv4Addr::new(10, 10, 0, 11), 5353)],
            Fwd::Masq,
            "rr",
        );
        let (mut core, _) = crate::setup(Fwd::Masq, 1 << 12);
        let s = spec(L4::Udp, Size::Imix);
        let mut buf = [0u8; 2048];
        for seq in 0..24 {
            let n = s.write(seq, 1000 + seq, &mut buf);
            let v = core.process(Instant(1), &snap, &mut buf[..n], 0);
            assert!(matches!(v, Verdict::Tx(_)), "{v:?}");
            assert_eq!(&buf[30..34], &[10, 10, 0, 11], "DNATted");
            assert!(checksums_ok(&buf[..n]));
            assert_eq!(
                read_stamp(&buf[..n]),
                Some(Stamp {
                    seq,
                    sent_ns: 1000 + seq
                })
            );
        }
        assert_eq!(read_stamp(&buf[..10]), None, "truncated");
    }
}
