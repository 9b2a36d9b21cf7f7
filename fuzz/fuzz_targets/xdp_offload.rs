//! The XDP program's fast path (`xlvsd --offload`), run by the kernel (`BPF_PROG_TEST_RUN`,
//! needs root) on arbitrary TCP and UDP segments to a virtual service, IPv4 or IPv6 (the
//! input chooses), with an `OFFLOAD` entry for the segment's own tuple built as a worker
//! builds it (`offload_map::entry`) from a rewrite the input chooses (new addresses, ports,
//! MACs; with or without the sync rule's count). The input's IP and TCP/UDP checksums are
//! made valid first. Then:
//! - the program redirects the frame (forwarded by the fast path) or steers it to a worker
//!   (here: dropped, no socket), never anything else;
//! - a frame it forwards is the input rewritten exactly as the entry says: the same length
//!   and payload, the entry's addresses, ports and MACs, TTL (hop limit) one less, and valid
//!   checksums (an IPv4 UDP datagram without a checksum keeps none);
//! - it forwards every TCP segment without SYN, FIN or RST and every UDP datagram whose TTL
//!   is above 1, except the one the sync rule picks, whose mark it leaves in the entry, and
//!   those whose logical interface has no usable port (a bond whose members are all down),
//!   whatever the entry's transmit hash;
//! - a frame with one 802.1Q tag (the input chooses) is handled the same, its tag kept.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::sync::{Mutex, OnceLock};
use xlvs_common::{FlowKey, L4Key, PROTO_TCP, PROTO_UDP, handoff_mark, handoff_mark6};
use xlvs_control::xdp::XdpSteering;
use xlvs_dataplane::bond::Egress;
use xlvs_dataplane::core::conn::ConnKey;
use xlvs_dataplane::core::offload::{OffloadRequest, OffloadSeen, SyncCount, flow_key};
use xlvs_dataplane::offload_map::{OffloadMap, entry};
use xlvs_dataplane::testing::{checksums_ok, vlan_tagged};

/// The virtual service's addresses (TCP port 80, UDP port 53).
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const XDP_DROP: u32 = 1;
const XDP_REDIRECT: u32 = 4;
const L3: usize = 14;

/// Where a family's header keeps what the fast path rewrites.
struct Layout {
    v6: bool,
    /// The TCP or UDP header.
    l4: usize,
    /// The TTL or hop limit.
    ttl: usize,
    /// Source and destination address, back to back.
    addrs: Range<usize>,
    /// The header checksum (IPv4 only).
    ip_ck: Option<Range<usize>>,
}

const V4: Layout = Layout {
    v6: false,
    l4: L3 + 20,
    ttl: L3 + 8,
    addrs: L3 + 12..L3 + 20,
    ip_ck: Some(L3 + 10..L3 + 12),
};
const V6: Layout = Layout {
    v6: true,
    l4: L3 + 40,
    ttl: L3 + 7,
    addrs: L3 + 8..L3 + 40,
    ip_ck: None,
};

struct State {
    xdp: XdpSteering,
    map: OffloadMap,
}

fn state() -> &'static Mutex<State> {
    static S: OnceLock<Mutex<State>> = OnceLock::new();
    S.get_or_init(|| {
        let mut xdp = XdpSteering::load(None).expect("loading the XDP program (root?)");
        xdp.set_keys(
            &[
                L4Key::v4(VIP.octets(), 80, PROTO_TCP),
                L4Key::v4(VIP.octets(), 53, PROTO_UDP),
                L4Key::v6(VIP6.octets(), 80, PROTO_TCP),
                L4Key::v6(VIP6.octets(), 53, PROTO_UDP),
            ],
            &[],
            &[],
        )
        .expect("steering keys");
        // lo (ifindex 1), one RX queue, no socket.
        xdp.set_iface(1, 0, 1).expect("IFACES");
        // Logical interface 0 transmits on it, 1 on nothing.
        xdp.set_egress(&[Egress::Port(0), Egress::Down])
            .expect("EGRESS");
        let map = OffloadMap::new(xdp.offload_fd());
        Mutex::new(State { xdp, map })
    })
}

/// One's-complement sum of `b` (big-endian 16-bit words, an odd byte padded).
fn sum(b: &[u8], mut s: u32) -> u32 {
    let mut it = b.chunks_exact(2);
    for w in &mut it {
        s += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    if let [x] = it.remainder() {
        s += (*x as u32) << 8;
    }
    s
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Makes the IPv4 header checksum and the TCP/UDP checksum of `f` valid (an IPv4 UDP
/// checksum of zero stays zero: none; IPv6 has no such thing).
fn fix_checksums(f: &mut [u8], at: &Layout, proto: u8, end: usize) {
    if let Some(ck) = at.ip_ck.clone() {
        f[ck.clone()].copy_from_slice(&[0, 0]);
        let c = fold(sum(&f[L3..at.l4], 0));
        f[ck].copy_from_slice(&c.to_be_bytes());
    }
    let ck = if proto == PROTO_TCP {
        at.l4 + 16
    } else {
        at.l4 + 6
    };
    if !at.v6 && proto == PROTO_UDP && f[ck] == 0 && f[ck + 1] == 0 {
        return;
    }
    f[ck..ck + 2].copy_from_slice(&[0, 0]);
    let len = (end - at.l4) as u32;
    let pseudo = sum(&f[at.addrs.clone()], proto as u32 + len);
    let mut c = fold(sum(&f[at.l4..end], pseudo));
    if proto == PROTO_UDP && c == 0 {
        c = 0xffff;
    }
    f[ck..ck + 2].copy_from_slice(&c.to_be_bytes());
}

fuzz_target!(|data: &[u8]| {
    // 16 bytes of choices, then the segment from its Ethernet header on.
    if data.len() < 16 + V4.l4 + 20 || data.len() > 16 + 3000 {
        return;
    }
    let (ctl, seg) = data.split_at(16);
    let at = if ctl[15] & 16 != 0 { &V6 } else { &V4 };
    if seg.len() < at.l4 + 20 {
        return;
    }
    let l4 = at.l4;
    let tcp = ctl[0] & 1 == 0;
    let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
    let mut f = seg.to_vec();
    let dport: u16 = if tcp { 80 } else { 53 };
    // A segment to the service: untagged IPv4 without options, not a fragment, or IPv6
    // without extension headers, whose length the input chooses within the frame.
    let hlen = l4 - L3;
    let min = hlen + if tcp { 20 } else { 8 };
    let total = (u16::from_be_bytes([ctl[1], ctl[2]]) as usize).clamp(min, f.len() - L3);
    if at.v6 {
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[L3] = 0x60 | (f[L3] & 0x0f);
        f[L3 + 4..L3 + 6].copy_from_slice(&((total - hlen) as u16).to_be_bytes());
        f[L3 + 6] = proto;
        f[L3 + 24..L3 + 40].copy_from_slice(&VIP6.octets());
    } else {
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[L3] = 0x45;
        f[L3 + 6] &= 0x40;
        f[L3 + 7] = 0;
        f[L3 + 9] = proto;
        f[L3 + 16..L3 + 20].copy_from_slice(&VIP.octets());
        f[L3 + 2..L3 + 4].copy_from_slice(&(total as u16).to_be_bytes());
    }
    f[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
    let end = L3 + total;
    if tcp {
        // A data offset of 5..=15 words that fits the segment.
        let words = (5 + f[l4 + 12] as usize % 11)
            .min((total - hlen) / 4)
            .max(5);
        // The reserved bits clear (the checker rebuilds the header from its fields).
        f[l4 + 12] = (words as u8) << 4 | (f[l4 + 12] & 0x01);
    } else {
        let ulen = (total - hlen) as u16;
        f[l4 + 4..l4 + 6].copy_from_slice(&ulen.to_be_bytes());
    }
    fix_checksums(&mut f, at, proto, end);
    assert!(checksums_ok(&f[..end]), "the input's checksums: {f:02x?}");

    // The rewrite the input chooses, as the core would have made it of an earlier frame:
    // to another destination, and maybe from another source.
    let sport = u16::from_be_bytes([f[l4], f[l4 + 1]]);
    let alen = at.addrs.len() / 2;
    let src = &f[at.addrs.start..at.addrs.start + alen];
    let key: FlowKey = if at.v6 {
        let src: [u8; 16] = src.try_into().unwrap();
        flow_key(&ConnKey {
            src: Ipv6Addr::from(src),
            dst: VIP6,
            sport,
            dport,
            proto,
        })
    } else {
        let src: [u8; 4] = src.try_into().unwrap();
        flow_key(&ConnKey {
            src: Ipv4Addr::from(src),
            dst: VIP,
            sport,
            dport,
            proto,
        })
    };
    let mut after = f.clone();
    after[0..12].copy_from_slice(&ctl[3..15]);
    let (new_src, new_dst) = if at.v6 {
        let dst = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, ctl[3] as u16).octets();
        if ctl[15] & 1 == 0 {
            (src.to_vec(), dst)
        } else {
            let s = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, ctl[4] as u16);
            (s.octets().to_vec(), dst)
        }
    } else {
        let mut dst = [0; 16];
        dst[..4].copy_from_slice(&[10, 10, 0, ctl[3]]);
        if ctl[15] & 1 == 0 {
            (src.to_vec(), dst)
        } else {
            let mut d = [0; 16];
            d[..4].copy_from_slice(&[10, 10, 0, ctl[5]]);
            (vec![192, 0, 2, ctl[4]], d)
        }
    };
    let a = at.addrs.start;
    after[a..a + alen].copy_from_slice(&new_src);
    after[a + alen..a + 2 * alen].copy_from_slice(&new_dst[..alen]);
    after[l4..l4 + 2].copy_from_slice(&[ctl[6], ctl[7]]);
    after[l4 + 2..l4 + 4].copy_from_slice(&[ctl[8], ctl[9]]);
    after[at.ttl] = f[at.ttl].wrapping_sub(1);
    let sync = (ctl[15] & 2 != 0).then_some(SyncCount {
        pkts: ctl[10],
        period: ctl[11],
        due: ctl[12],
    });
    let req = OffloadRequest { key, sync };
    let down = ctl[15] & 4 != 0;
    let hash = u32::from_be_bytes([ctl[0], ctl[3], ctl[6], ctl[9]]);
    let e = entry(&req, &after, (down as u8, hash), 1).expect("an entry for a plain segment");

    // Tagged (one 802.1Q tag, the TCI from the input) or not: the program keeps the tag.
    let tag = (ctl[15] & 8 != 0).then(|| u16::from_be_bytes([ctl[13], ctl[14]]));
    let with_tag = |b: &[u8]| match tag {
        Some(tci) => vlan_tagged(b, tci),
        None => b.to_vec(),
    };
    let e = if tag.is_some() {
        let te = entry(&req, &with_tag(&after), (down as u8, hash), 1)
            .expect("an entry for a tagged segment");
        assert_eq!(te, e, "a tagged frame's entry");
        te
    } else {
        e
    };
    let mut st = state().lock().unwrap_or_else(|e| e.into_inner());
    assert!(st.map.update(&key, &e), "filing the entry");
    let (action, out) = st
        .xdp
        .test_run_out(&with_tag(&f), 1, 0)
        .expect("BPF_PROG_TEST_RUN");
    // Checked untagged from here on: the tag as it was.
    let out = match tag {
        Some(tci) => {
            assert_eq!(out[12..16], vlan_tagged(&f, tci)[12..16], "the tag");
            [&out[..12], &out[16..]].concat()
        }
        None => out,
    };
    let handed = st.map.handed(&key);
    st.map.delete(&key);
    drop(st);

    let flags = f[l4 + 13];
    let ttl = f[at.ttl];
    let picked = sync.is_some_and(|s| {
        let n = s.pkts as u16 + 1;
        let n = if s.period == 0 {
            n.min(255) as u8
        } else {
            (n % s.period as u16) as u8
        };
        n == s.due
    });
    let must_forward = (!tcp || flags & 0x07 == 0) && ttl > 1 && !picked && !down;
    match action {
        XDP_REDIRECT => {
            assert!(!picked, "forwarded a frame the sync rule picks");
            assert!(!down, "forwarded a frame with no port to leave by");
            assert_eq!(out.len(), f.len(), "the length");
            assert_eq!(out[end..], f[end..], "the bytes past the packet");
            assert_eq!(out[0..12], after[0..12], "the MACs");
            assert_eq!(out[at.ttl], ttl - 1, "the TTL");
            assert_eq!(
                out[at.addrs.clone()],
                after[at.addrs.clone()],
                "the addresses"
            );
            assert_eq!(out[l4..l4 + 4], after[l4..l4 + 4], "the ports");
            let ck = if tcp { l4 + 16 } else { l4 + 6 };
            let mut rest = out[..end].to_vec();
            rest[at.ttl] = ttl;
            let changed = [at.addrs.clone(), l4..l4 + 4, ck..ck + 2];
            for r in changed.into_iter().chain(at.ip_ck.clone()) {
                rest[r.clone()].copy_from_slice(&f[r]);
            }
            rest[0..12].copy_from_slice(&f[0..12]);
            assert_eq!(rest, f[..end], "nothing else changed");
            assert!(
                checksums_ok(&out[..end]),
                "checksums after the fast path's rewrite: in {f:02x?} out {out:02x?}"
            );
        }
        XDP_DROP => {
            assert!(
                !must_forward,
                "a segment the fast path must forward went to a worker: {f:02x?}"
            );
            if picked && ttl > 1 && (!tcp || flags & 0x07 == 0) && !down {
                let h: &[u8; 8] = f[l4..l4 + 8].try_into().unwrap();
                let mark = if at.v6 {
                    handoff_mark6(h)
                } else {
                    handoff_mark(proto, f[L3..l4].try_into().unwrap(), h)
                };
                assert_eq!(handed, Some(mark), "the mark");
            }
        }
        a => panic!("XDP action {a} for {f:02x?}"),
    }
});
