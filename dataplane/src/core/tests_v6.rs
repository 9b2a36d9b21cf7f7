//! IPv6 through the core: NAT and DR round trips, ICMPv6 errors, fragments, persistence
//! masks; checked with etherparse (see `crate::testing`).

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use proptest::prelude::*;

use super::conn::Tables;
use super::service::{Fwd, Persistence, Proto, Snapshot};
use super::*;
use crate::testing::*;
use crate::wire::tcp::SYN;

const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const CIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
const RIP1: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0x11);
const RIP2: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0x12);

/// This module's frames are IPv6.
fn tuple(frame: &[u8]) -> (Ipv6Addr, u16, Ipv6Addr, u16, u8) {
    crate::testing::tuple(frame)
}

fn icmp_parts(frame: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr, Vec<u8>)> {
    crate::testing::icmp_parts(frame)
}

fn core() -> Core {
    Core::new(Arc::new(Tables::new(1 << 16)))
}

fn t(s: u64) -> Instant {
    Instant::from_secs(s)
}

fn nat_snap() -> Snapshot {
    snapshot(
        Proto::Tcp,
        (VIP, 80),
        &[(RIP1, 8080), (RIP2, 8080)],
        Fwd::Masq,
        "rr",
    )
}

fn syn(cport: u16) -> Vec<u8> {
    tcp_frame(
        CLIENT_MAC,
        EXT_MAC,
        (CIP, cport),
        (VIP, 80),
        SYN,
        64,
        b"hello",
    )
}

/// A NAT connection: [client SYN, as DNATed, realserver SYN-ACK, as SNATed].
fn nat_conn(c: &mut Core, snap: &Snapshot, cport: u16) -> [Vec<u8>; 4] {
    super::tests::open_nat_conn(c, snap, CIP, VIP, cport)
}

#[test]
fn nat_round_trip_rewrites_addresses_ports_and_checksums() {
    let mut c = core();
    let snap = nat_snap();
    let [_, dnat, _, snat] = nat_conn(&mut c, &snap, 40_000);
    assert_eq!(tuple(&dnat), (CIP, 40_000, RIP1, 8080, 63));
    assert_eq!(&dnat[..6], &rs_mac(0));
    assert!(checksums_ok(&dnat));
    assert_eq!(tuple(&snat), (VIP, 80, CIP, 40_000, 63));
    assert_eq!(&snat[..6], &CLIENT_MAC);
    assert!(checksums_ok(&snat));
    // The next connection goes to the other realserver (rr); both are in the IPv6 table.
    let [_, dnat2, _, _] = nat_conn(&mut c, &snap, 40_001);
    assert_eq!(tuple(&dnat2).2, RIP2);
    assert_eq!((c.tables().v6.len(), c.tables().v4.len()), (2, 0));
    let d = &snap
        .service(&VsKey {
            proto: Proto::Tcp,
            addr: VIP.into(),
            port: 80,
        })
        .unwrap()
        .dests;
    assert_eq!(
        d[0].state.active.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn udp_nat_round_trip() {
    let mut c = core();
    let snap = snapshot(Proto::Udp, (VIP, 53), &[(RIP1, 5353)], Fwd::Masq, "rr");
    let mut q = udp_frame(CLIENT_MAC, EXT_MAC, (CIP, 4444), (VIP, 53), b"query");
    assert_eq!(c.process(t(1), &snap, &mut q, 0), Verdict::Tx(1));
    assert_eq!(tuple(&q), (CIP, 4444, RIP1, 5353, 63));
    assert!(checksums_ok(&q));
    let mut a = udp_frame(rs_mac(0), INT_MAC, (RIP1, 5353), (CIP, 4444), b"answer");
    assert_eq!(c.process(t(1), &snap, &mut a, 1), Verdict::Tx(0));
    assert_eq!(tuple(&a), (VIP, 53, CIP, 4444, 63));
    assert!(checksums_ok(&a));
}

#[test]
fn dr_rewrites_macs_and_hop_limit_only() {
    let mut c = core();
    let snap = snapshot(Proto::Tcp, (VIP, 80), &[(RIP1, 80)], Fwd::Route, "rr");
    let orig = syn(5555);
    let mut f = orig.clone();
    assert_eq!(c.process(t(1), &snap, &mut f, 0), Verdict::Tx(1));
    assert_eq!(&f[..6], &rs_mac(0));
    assert_eq!(tuple(&f), (CIP, 5555, VIP, 80, 63));
    assert_eq!(
        &f[14 + 8..],
        &orig[14 + 8..],
        "only the hop limit changes in IP and TCP"
    );
    assert!(checksums_ok(&f));
    let mut last = tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 5556), (VIP, 80), SYN, 1, b"");
    assert_eq!(
        c.process(t(1), &snap, &mut last, 0),
        Verdict::Drop(DropReason::TtlExceeded)
    );
}

#[test]
fn icmpv6_packet_too_big_from_inside_goes_to_the_client_about_the_vip() {
    let mut c = core();
    let snap = nat_snap();
    let [s, dnat, _, _] = nat_conn(&mut c, &snap, 41_000);
    let router: Ipv6Addr = "fd00:10::fe".parse().unwrap();
    let mut e = icmp_error(rs_mac(0), INT_MAC, router, CIP, Some(1280), &dnat[14..]);
    assert_eq!(c.process(t(2), &snap, &mut e, 1), Verdict::Tx(0));
    assert_eq!(&e[..6], &CLIENT_MAC);
    let (src, dst, quoted) = icmp_parts(&e).expect("ICMPv6 checksum");
    // IPVS ip_vs_nat_icmp_v6: the outer source and the quoted destination become the VIP.
    assert_eq!((src, dst), (VIP, CIP));
    // The quote is the client's own packet again, TCP checksum included.
    assert_eq!(quoted, with_hop_limit(&s[14..], 63));
}

#[test]
fn icmpv6_time_exceeded_from_outside_goes_to_the_realserver() {
    let mut c = core();
    let snap = nat_snap();
    let [_, dnat, sa, snat] = nat_conn(&mut c, &snap, 41_001);
    let rip = tuple(&dnat).2;
    let router: Ipv6Addr = "2001:db8::fe".parse().unwrap();
    let mut e = icmp_error(CLIENT_MAC, EXT_MAC, router, VIP, None, &snat[14..]);
    assert_eq!(c.process(t(2), &snap, &mut e, 0), Verdict::Tx(1));
    let (src, dst, quoted) = icmp_parts(&e).expect("ICMPv6 checksum");
    assert_eq!((src, dst), (router, rip));
    assert_eq!(quoted, with_hop_limit(&sa[14..], 63));
}

#[test]
fn neighbour_discovery_and_unknown_flows_are_not_forwarded() {
    let mut c = core();
    let snap = nat_snap();
    // An echo request (type 128) is not an error.
    let b = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, EXT_MAC)
        .ipv6(CIP.octets(), VIP.octets(), 64)
        .icmpv6_echo_request(1, 1);
    let mut echo = Vec::new();
    b.write(&mut echo, b"ping").unwrap();
    assert_eq!(
        c.process(t(1), &snap, &mut echo, 0),
        Verdict::Drop(DropReason::NotTcpUdp)
    );
    // An error about a flow the table does not know.
    let stray = syn(42_000);
    let mut e = icmp_error(CLIENT_MAC, EXT_MAC, CIP, VIP, None, &stray[14..]);
    assert_eq!(
        c.process(t(1), &snap, &mut e, 0),
        Verdict::Drop(DropReason::NoConn)
    );
}

#[test]
fn fragments_follow_their_first_fragment() {
    let mut c = core();
    let snap = snapshot(Proto::Udp, (VIP, 53), &[(RIP1, 5353)], Fwd::Masq, "rr");
    let q = udp_frame(CLIENT_MAC, EXT_MAC, (CIP, 40_053), (VIP, 53), &[7u8; 3000]);
    let mut frags = fragments6(&q, 1232, 0xfeed_beef);
    assert_eq!(frags.len(), 3);
    // Out of order: a later fragment before the first is dropped and counted.
    assert_eq!(
        c.process(t(1), &snap, &mut frags[2].clone(), 0),
        Verdict::Drop(DropReason::Fragment)
    );
    for f in frags.iter_mut() {
        assert_eq!(c.process(t(1), &snap, f, 0), Verdict::Tx(1));
    }
    let whole = reassemble6(&frags).expect("fragments agree");
    assert_eq!(tuple(&whole), (CIP, 40_053, RIP1, 5353, 63));
    assert!(
        checksums_ok(&whole),
        "the first fragment's checksum covers the datagram"
    );
}

#[test]
fn persistence_prefix_groups_clients() {
    let mut c = core();
    let mut snap = nat_snap();
    let key = VsKey {
        proto: Proto::Tcp,
        addr: VIP.into(),
        port: 80,
    };
    let mut svc = service(
        Proto::Tcp,
        (VIP, 80),
        &[(RIP1, 8080), (RIP2, 8080)],
        Fwd::Masq,
        "rr",
    );
    // -M 64: every client of 2001:db8::/64 is one persistence group.
    svc.persist = Some(Persistence {
        timeout: std::time::Duration::from_secs(300),
        netmask: IpAddr::V6(Ipv6Addr::from_bits(u128::MAX << 64)),
    });
    snap.services.insert(key, Arc::new(svc));
    let mut first = None;
    for (i, host) in [7u16, 8, 9, 0x77].into_iter().enumerate() {
        let cip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, host);
        let mut f = tcp_frame(
            CLIENT_MAC,
            EXT_MAC,
            (cip, 1000 + i as u16),
            (VIP, 80),
            SYN,
            64,
            b"",
        );
        assert_eq!(c.process(t(1), &snap, &mut f, 0), Verdict::Tx(1));
        let rs = tuple(&f).2;
        assert_eq!(*first.get_or_insert(rs), rs);
    }
    assert_eq!(c.tables().v6.templates(), 1);
}

fn arb_ip6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from_bits)
}

proptest! {
    /// IPv6 NAT then the reverse rewrite restores the tuple; every checksum equals a full
    /// recomputation.
    #[test]
    fn nat_round_trip_restores_tuple_and_checksums(
        cip in arb_ip6(), vip in arb_ip6(), rip in arb_ip6(),
        cport in 1u16.., vport in 1u16.., rport in 1u16..,
        hop in 2u8.., udp in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        prop_assume!(cip != rip && cip != vip);
        super::tests::nat_round_trip(&mut core(), (cip, cport), (vip, vport), (rip, rport), hop, udp, &payload, &payload)?;
    }

    /// Mutated IPv6 frames never panic.
    #[test]
    fn mutated_frames_never_panic(pos in 0usize..80, val in any::<u8>(), cut in 0usize..80) {
        let mut c = core();
        let snap = nat_snap();
        let mut f = syn(9000);
        let pos = pos % f.len();
        f[pos] = val;
        f.truncate(f.len() - cut.min(f.len()));
        let _ = c.process(t(1), &snap, &mut f, 0);
        prop_assert_eq!(c.stats.rx, 1);
    }
}
