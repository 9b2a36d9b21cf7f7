//! The XDP program's fast path (`xlvsd --offload`), run by the kernel (`BPF_PROG_TEST_RUN`,
//! needs root) on arbitrary TCP and UDP segments to a virtual service, with an `OFFLOAD`
//! entry for the segment's own tuple built as a worker builds it (`offload_map::entry`) from
//! a rewrite the input chooses (new addresses, ports, MACs; with or without the sync rule's
//! count). The input's IP and TCP/UDP checksums are made valid first. Then:
//! - the program redirects the frame (forwarded by the fast path) or steers it to a worker
//!   (here: dropped, no socket), never anything else;
//! - a frame it forwards is the input rewritten exactly as the entry says: the same length
//!   and payload, the entry's addresses, ports and MACs, TTL one less, and valid checksums
//!   (a UDP datagram without a checksum keeps none);
//! - it forwards every TCP segment without SYN, FIN or RST and every UDP datagram whose TTL
//!   is above 1, except the one the sync rule picks, whose mark it leaves in the entry, and
//!   those whose logical interface has no usable port (a bond whose members are all down),
//!   whatever the entry's transmit hash;
//! - a frame with one 802.1Q tag (the input chooses) is handled the same, its tag kept.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use std::sync::{Mutex, OnceLock};
use xlvs_common::{L4Key, PROTO_TCP, PROTO_UDP, handoff_mark};
use xlvs_control::xdp::XdpSteering;
use xlvs_dataplane::bond::Egress;
use xlvs_dataplane::core::conn::ConnKey;
use xlvs_dataplane::core::offload::{OffloadRequest, OffloadSeen, SyncCount, flow_key};
use xlvs_dataplane::offload_map::{OffloadMap, entry};
use xlvs_dataplane::testing::{checksums_ok, vlan_tagged};

/// The virtual service's address (TCP port 80, UDP port 53).
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const XDP_DROP: u32 = 1;
const XDP_REDIRECT: u32 = 4;
const L3: usize = 14;
const L4: usize = 34;

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

/// Makes the IPv4 header checksum and the TCP/UDP checksum of `f` valid (a UDP checksum of
/// zero stays zero: none).
fn fix_checksums(f: &mut [u8], proto: u8, end: usize) {
    f[L3 + 10..L3 + 12].copy_from_slice(&[0, 0]);
    let c = fold(sum(&f[L3..L4], 0));
    f[L3 + 10..L3 + 12].copy_from_slice(&c.to_be_bytes());
    let at = if proto == PROTO_TCP { L4 + 16 } else { L4 + 6 };
    if proto == PROTO_UDP && f[at] == 0 && f[at + 1] == 0 {
        return;
    }
    f[at..at + 2].copy_from_slice(&[0, 0]);
    let len = (end - L4) as u32;
    let pseudo = sum(&f[L3 + 12..L3 + 20], proto as u32 + len);
    let mut c = fold(sum(&f[L4..end], pseudo));
    if proto == PROTO_UDP && c == 0 {
        c = 0xffff;
    }
    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

fuzz_target!(|data: &[u8]| {
    // 16 bytes of choices, then the segment from its Ethernet header on.
    if data.len() < 16 + L4 + 20 || data.len() > 16 + 3000 {
        return;
    }
    let (ctl, seg) = data.split_at(16);
    let tcp = ctl[0] & 1 == 0;
    let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
    let mut f = seg.to_vec();
    // A segment to the service: untagged IPv4 without options, not a fragment, whose length
    // the input chooses within the frame.
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[L3] = 0x45;
    f[L3 + 6] &= 0x40;
    f[L3 + 7] = 0;
    f[L3 + 9] = proto;
    f[L3 + 16..L3 + 20].copy_from_slice(&VIP.octets());
    let dport: u16 = if tcp { 80 } else { 53 };
    f[L4 + 2..L4 + 4].copy_from_slice(&dport.to_be_bytes());
    let min = if tcp { 40 } else { 28 };
    let total = (u16::from_be_bytes([ctl[1], ctl[2]]) as usize).clamp(min, f.len() - L3);
    f[L3 + 2..L3 + 4].copy_from_slice(&(total as u16).to_be_bytes());
    let end = L3 + total;
    if tcp {
        // A data offset of 5..=15 words that fits the segment.
        let words = (5 + f[L4 + 12] as usize % 11).min((total - 20) / 4).max(5);
        // The reserved bits clear (the checker rebuilds the header from its fields).
        f[L4 + 12] = (words as u8) << 4 | (f[L4 + 12] & 0x01);
    } else {
        let ulen = (total - 20) as u16;
        f[L4 + 4..L4 + 6].copy_from_slice(&ulen.to_be_bytes());
    }
    fix_checksums(&mut f, proto, end);
    assert!(checksums_ok(&f[..end]), "the input's checksums: {f:02x?}");

    // The rewrite the input chooses, as the core would have made it of an earlier frame.
    let src = [f[L3 + 12], f[L3 + 13], f[L3 + 14], f[L3 + 15]];
    let sport = u16::from_be_bytes([f[L4], f[L4 + 1]]);
    let key = flow_key(&ConnKey {
        src: src.into(),
        dst: VIP,
        sport,
        dport,
        proto,
    })
    .expect("an IPv4 tuple");
    let mut after = f.clone();
    after[0..12].copy_from_slice(&ctl[3..15]);
    let (new_src, new_dst) = if ctl[15] & 1 == 0 {
        (src, [10, 10, 0, ctl[3]])
    } else {
        ([192, 0, 2, ctl[4]], [10, 10, 0, ctl[5]])
    };
    after[L3 + 12..L3 + 16].copy_from_slice(&new_src);
    after[L3 + 16..L3 + 20].copy_from_slice(&new_dst);
    after[L4..L4 + 2].copy_from_slice(&[ctl[6], ctl[7]]);
    after[L4 + 2..L4 + 4].copy_from_slice(&[ctl[8], ctl[9]]);
    after[L3 + 8] = f[L3 + 8].wrapping_sub(1);
    let sync = (ctl[15] & 2 != 0).then_some(SyncCount {
        pkts: ctl[10],
        period: ctl[11],
        due: ctl[12],
    });
    let req = OffloadRequest { key, sync };
    let down = ctl[15] & 4 != 0;
    let hash = u32::from_be_bytes([ctl[0], ctl[3], ctl[6], ctl[9]]);
    let e = entry(&req, &after, (down as u8, hash), 1).expect("an entry for a plain IPv4 segment");

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

    let flags = f[L4 + 13];
    let ttl = f[L3 + 8];
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
            assert_eq!(out[L3 + 8], ttl - 1, "the TTL");
            assert_eq!(
                out[L3 + 12..L3 + 20],
                after[L3 + 12..L3 + 20],
                "the addresses"
            );
            assert_eq!(out[L4..L4 + 4], after[L4..L4 + 4], "the ports");
            let ck = if tcp { L4 + 16 } else { L4 + 6 };
            let mut rest = out[..end].to_vec();
            rest[L3 + 8] = ttl;
            for r in [L3 + 10..L3 + 12, L3 + 12..L3 + 20, L4..L4 + 4, ck..ck + 2] {
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
                let ip: &[u8; 20] = f[L3..L4].try_into().unwrap();
                let l4: &[u8; 8] = f[L4..L4 + 8].try_into().unwrap();
                assert_eq!(handed, Some(handoff_mark(proto, ip, l4)), "the mark");
            }
        }
        a => panic!("XDP action {a} for {f:02x?}"),
    }
});
