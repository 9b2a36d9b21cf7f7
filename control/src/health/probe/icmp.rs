//! `PING_CHECK`: an ICMP (ICMPv6) echo request to the realserver draws its echo reply. A
//! raw socket (xlvsd runs as root); replies are matched by identifier, sequence and source.

use std::sync::atomic::{AtomicU16, Ordering};

use super::io_fail;
use crate::health::machine::Outcome;
use crate::health::spec::CheckSpec;

static SEQ: AtomicU16 = AtomicU16::new(1);

pub(super) async fn check(spec: &CheckSpec) -> Outcome {
    let v6 = spec.target.is_ipv6();
    let proto = if v6 {
        socket2::Protocol::ICMPV6
    } else {
        socket2::Protocol::ICMPV4
    };
    // Connected: the kernel hands this socket only the target's ICMP.
    let s = match super::connected_dgram(spec, Some(proto)).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let id = std::process::id() as u16;
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let req = echo_request(v6, id, seq);
    if let Err(e) = s.send(&req).await {
        return io_fail("send", &e);
    }
    let mut buf = [0u8; 1500];
    loop {
        match s.recv(&mut buf).await {
            Ok(n) if is_reply(v6, &buf[..n], id, seq) => return Outcome::PASS,
            Ok(_) => {}
            Err(e) => return io_fail("recv", &e),
        }
    }
}

/// An echo request with identifier `id` and sequence `seq` (ICMPv6's checksum is the
/// kernel's).
pub(crate) fn echo_request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut m = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(b"xlvs-health-check");
    if !v6 {
        let c = checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
    }
    m
}

/// Whether `pkt` (an IPv4 packet, or an ICMPv6 message) is the echo reply to (`id`, `seq`).
pub(crate) fn is_reply(v6: bool, pkt: &[u8], id: u16, seq: u16) -> bool {
    let icmp = if v6 {
        pkt
    } else {
        let ihl = pkt.first().map_or(0, |b| ((b & 0x0f) as usize) * 4);
        match pkt.get(ihl..) {
            Some(p) => p,
            None => return false,
        }
    };
    icmp.len() >= 8
        && icmp[0] == if v6 { 129 } else { 0 }
        && u16::from_be_bytes([icmp[4], icmp[5]]) == id
        && u16::from_be_bytes([icmp[6], icmp[7]]) == seq
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
