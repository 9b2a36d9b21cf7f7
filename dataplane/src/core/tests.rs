//! Fixture and property tests of the core: frames in, verdicts and frames out, checked with
//! etherparse (see `crate::testing`).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::addr::Addr;

use super::conn::Tables;
use super::service::{Fwd, Proto, Snapshot, VsKey};
use super::*;
use crate::testing::*;
use crate::wire::tcp::{ACK, FIN, RST, SYN};

pub(super) const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
pub(super) const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub(super) const RIP1: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 11);
pub(super) const RIP2: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 12);

fn core() -> Core {
    Core::new(Arc::new(Tables::new(1 << 20)))
}

fn nat_snap(sched: &str) -> Snapshot {
    snapshot(
        Proto::Tcp,
        (VIP, 80),
        &[(RIP1, 8080), (RIP2, 8080)],
        Fwd::Masq,
        sched,
    )
}

/// This module's frames are IPv4.
fn tuple(frame: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16, u8) {
    crate::testing::tuple(frame)
}

fn icmp_parts(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, Vec<u8>)> {
    crate::testing::icmp_parts(frame)
}

fn v4(a: std::net::IpAddr) -> Ipv4Addr {
    match a {
        std::net::IpAddr::V4(a) => a,
        std::net::IpAddr::V6(_) => panic!("not IPv4"),
    }
}

pub(super) fn t(s: u64) -> Instant {
    Instant::from_secs(s)
}

pub(super) fn client_seg(cport: u16, flags: u8) -> Vec<u8> {
    tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, cport), (VIP, 80), flags, 64, b"")
}

pub(super) fn reply_seg(rip: Ipv4Addr, cport: u16, flags: u8) -> Vec<u8> {
    tcp_frame(
        rs_mac(0),
        INT_MAC,
        (rip, 8080),
        (CIP, cport),
        flags,
        64,
        b"hello",
    )
}

#[test]
fn nat_syn_is_dnatted_to_a_realserver_with_port_remap() {
    let mut c = core();
    let snap = nat_snap("rr");
    let mut f = client_seg(40000, SYN);
    assert_eq!(c.process(t(1), &snap, &mut f, 0), Verdict::Tx(1));
    assert_eq!(tuple(&f), (CIP, 40000, RIP1, 8080, 63));
    assert_eq!(&f[..6], &rs_mac(0));
    assert_eq!(&f[6..12], &INT_MAC);
    assert!(checksums_ok(&f));
    assert_eq!(c.stats.new_conns, 1);
}

#[test]
fn realserver_counters_count_connections_packets_and_ip_bytes_each_way() {
    let snap = nat_snap("rr");
    let svc = snap.service(&svc_key()).unwrap();
    let rs1 = svc.dests.iter().find(|d| d.addr == RIP1).unwrap();
    let before = rs1.state.stats.totals();
    // Worker 3 (past the one shard a test realserver has: it shares shard 0); the totals
    // add every shard up.
    let mut c = Core::for_worker(Arc::new(Tables::new(1 << 10)), 3);
    let mut syn = client_seg(40002, SYN);
    c.process(t(1), &snap, &mut syn, 0);
    let mut sa = reply_seg(RIP1, 40002, SYN | ACK);
    c.process(t(1), &snap, &mut sa, 1);
    let mut ack = client_seg(40002, ACK);
    c.process(t(1), &snap, &mut ack, 0);
    // A segment for no connection counts nowhere.
    let mut stray = client_seg(40003, ACK);
    c.process(t(1), &snap, &mut stray, 0);
    let ip_len = |f: &[u8]| (f.len() - 14) as u64;
    let t = rs1.state.stats.totals().since(before);
    assert_eq!((t.conns, t.inpkts, t.outpkts), (1, 2, 1), "{t:?}");
    assert_eq!(t.inbytes, ip_len(&syn) + ip_len(&ack));
    assert_eq!(t.outbytes, ip_len(&sa));
}

#[test]
fn nat_reply_is_snatted_back_to_the_vip_and_the_client_hop() {
    let mut c = core();
    let snap = nat_snap("rr");
    let mut syn = client_seg(40001, SYN);
    c.process(t(1), &snap, &mut syn, 0);
    let mut r = reply_seg(RIP1, 40001, SYN | ACK);
    assert_eq!(c.process(t(1), &snap, &mut r, 1), Verdict::Tx(0));
    assert_eq!(tuple(&r), (VIP, 80, CIP, 40001, 63));
    assert_eq!(&r[..6], &CLIENT_MAC);
    assert_eq!(&r[6..12], &EXT_MAC);
    assert!(checksums_ok(&r));
}

#[test]
fn dr_rewrites_macs_and_ttl_only() {
    let mut c = core();
    let snap = snapshot(Proto::Tcp, (VIP, 80), &[(RIP1, 80)], Fwd::Route, "rr");
    let orig = tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 5555), (VIP, 80), SYN, 64, b"x");
    let mut f = orig.clone();
    assert_eq!(c.process(t(1), &snap, &mut f, 0), Verdict::Tx(1));
    assert_eq!(&f[..6], &rs_mac(0));
    assert_eq!(&f[6..12], &INT_MAC);
    // IPVS decrements the TTL on DR too; nothing else in IP or TCP changes.
    assert_eq!(tuple(&f), (CIP, 5555, VIP, 80, 63));
    assert_eq!(&f[34..], &orig[34..], "TCP untouched");
    assert!(checksums_ok(&f));
    let mut last = tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 5556), (VIP, 80), SYN, 1, b"x");
    assert_eq!(
        c.process(t(1), &snap, &mut last, 0),
        Verdict::Drop(DropReason::TtlExceeded)
    );
}

#[test]
fn established_dr_packets_follow_the_connection() {
    let mut c = core();
    let snap = snapshot(
        Proto::Tcp,
        (VIP, 80),
        &[(RIP1, 80), (RIP2, 80)],
        Fwd::Route,
        "rr",
    );
    let mut syn = tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 5556), (VIP, 80), SYN, 64, b"");
    c.process(t(1), &snap, &mut syn, 0);
    let first = syn[..6].to_vec();
    for _ in 0..5 {
        let mut ack = tcp_frame(
            CLIENT_MAC,
            EXT_MAC,
            (CIP, 5556),
            (VIP, 80),
            ACK,
            64,
            b"data",
        );
        assert_eq!(c.process(t(2), &snap, &mut ack, 0), Verdict::Tx(1));
        assert_eq!(&ack[..6], &first[..]);
    }
}

#[test]
fn rr_alternates_new_connections() {
    let mut c = core();
    let snap = nat_snap("rr");
    let mut seen = Vec::new();
    for port in 1000..1004 {
        let mut f = client_seg(port, SYN);
        c.process(t(1), &snap, &mut f, 0);
        seen.push(tuple(&f).2);
    }
    assert_eq!(seen, vec![RIP1, RIP2, RIP1, RIP2]);
}

#[test]
fn drops_are_counted_by_reason() {
    let mut c = core();
    let snap = nat_snap("rr");
    // Not a SYN and no connection.
    let mut f = client_seg(2000, ACK);
    assert_eq!(
        c.process(t(1), &snap, &mut f, 0),
        Verdict::Drop(DropReason::NoConn)
    );
    // No such service.
    let mut f = tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 1), (VIP, 81), SYN, 64, b"");
    assert_eq!(
        c.process(t(1), &snap, &mut f, 0),
        Verdict::Drop(DropReason::NoService)
    );
    // TTL would expire.
    let mut f = tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 2), (VIP, 80), SYN, 1, b"");
    assert_eq!(
        c.process(t(1), &snap, &mut f, 0),
        Verdict::Drop(DropReason::TtlExceeded)
    );
    // Truncated.
    let mut f = client_seg(3, SYN);
    f.truncate(30);
    assert_eq!(
        c.process(t(1), &snap, &mut f, 0),
        Verdict::Drop(DropReason::Malformed)
    );
    assert_eq!(c.stats.rx, 4);
    assert_eq!(c.stats.dropped(), 4);
    assert_eq!(c.stats.drops[DropReason::NoConn as usize], 1);
}

#[test]
fn unresolved_realserver_mac_drops_without_losing_the_connection() {
    let mut c = core();
    let snap = nat_snap("rr");
    let svc = snap
        .service(&VsKey {
            proto: Proto::Tcp,
            addr: VIP.into(),
            port: 80,
        })
        .unwrap();
    svc.dests[0].state.set_next_hop(None);
    let mut f = client_seg(4000, SYN);
    assert_eq!(
        c.process(t(1), &snap, &mut f, 0),
        Verdict::Drop(DropReason::NoNeighbour)
    );
    assert_eq!(c.tables().len(), 1);
}

#[test]
fn no_dest_when_all_quiescent() {
    let mut c = core();
    let snap = snapshot(Proto::Tcp, (VIP, 80), &[], Fwd::Masq, "wlc");
    let mut f = client_seg(4001, SYN);
    assert_eq!(
        c.process(t(1), &snap, &mut f, 0),
        Verdict::Drop(DropReason::NoDest)
    );
}

#[test]
fn udp_nat_round_trip() {
    let mut c = core();
    let snap = snapshot(Proto::Udp, (VIP, 53), &[(RIP1, 5353)], Fwd::Masq, "rr");
    let mut q = udp_frame(CLIENT_MAC, EXT_MAC, (CIP, 33333), (VIP, 53), b"query");
    assert_eq!(c.process(t(1), &snap, &mut q, 0), Verdict::Tx(1));
    assert_eq!(tuple(&q), (CIP, 33333, RIP1, 5353, 63));
    assert!(checksums_ok(&q));
    let mut a = udp_frame(rs_mac(0), INT_MAC, (RIP1, 5353), (CIP, 33333), b"answer");
    assert_eq!(c.process(t(1), &snap, &mut a, 1), Verdict::Tx(0));
    assert_eq!(tuple(&a), (VIP, 53, CIP, 33333, 63));
    assert!(checksums_ok(&a));
    // UDP connections count as inactive, as in IPVS.
    let d = &snap
        .service(&VsKey {
            proto: Proto::Udp,
            addr: VIP.into(),
            port: 53,
        })
        .unwrap()
        .dests[0];
    assert_eq!(d.state.inactive.load(Ordering::Relaxed), 1);
}

#[test]
fn udp_without_checksum_stays_without() {
    let mut c = core();
    let snap = snapshot(Proto::Udp, (VIP, 53), &[(RIP1, 53)], Fwd::Masq, "rr");
    let mut q = udp_frame(CLIENT_MAC, EXT_MAC, (CIP, 1), (VIP, 53), b"q");
    let l4 = 14 + 20;
    q[l4 + 6] = 0;
    q[l4 + 7] = 0;
    c.process(t(1), &snap, &mut q, 0);
    assert_eq!(&q[l4 + 6..l4 + 8], &[0, 0]);
}

#[test]
fn counters_follow_tcp_state_and_expiry() {
    let mut c = core();
    let snap = nat_snap("wlc");
    let d = snap
        .service(&VsKey {
            proto: Proto::Tcp,
            addr: VIP.into(),
            port: 80,
        })
        .unwrap()
        .dests
        .clone();
    let cnt = |i: usize| {
        (
            d[i].state.active.load(Ordering::Relaxed),
            d[i].state.inactive.load(Ordering::Relaxed),
        )
    };
    let mut f = client_seg(5000, SYN);
    c.process(t(1), &snap, &mut f, 0);
    let rs = tuple(&f).2;
    let i = if rs == RIP1 { 0 } else { 1 };
    assert_eq!(cnt(i), (1, 0), "handshake counts as active");
    let steps: [(bool, u8); 5] = [
        (false, SYN | ACK),
        (true, ACK),
        (true, FIN | ACK),
        (false, FIN | ACK),
        (true, ACK),
    ];
    for (from_client, flags) in steps {
        let mut f = if from_client {
            client_seg(5000, flags)
        } else {
            reply_seg(rs, 5000, flags)
        };
        assert!(matches!(
            c.process(t(2), &snap, &mut f, if from_client { 0 } else { 1 }),
            Verdict::Tx(_)
        ));
    }
    assert_eq!(cnt(i), (0, 1), "closed connection is inactive");
    // TIME_WAIT lasts 120 s.
    assert_eq!(c.expire(t(100)), 0);
    assert_eq!(c.expire(t(123)), 1);
    assert_eq!(cnt(i), (0, 0));
    assert!(c.tables().is_empty());
    // The out entry went too: a late reply finds nothing.
    let mut late = reply_seg(rs, 5000, ACK);
    assert_eq!(
        c.process(t(124), &snap, &mut late, 1),
        Verdict::Drop(DropReason::NoService)
    );
}

#[test]
fn rst_closes_and_syn_on_closed_connection_is_rescheduled() {
    let mut c = core();
    let snap = nat_snap("rr");
    let mut f = client_seg(6000, SYN);
    c.process(t(1), &snap, &mut f, 0);
    let first = tuple(&f).2;
    // A RST during the handshake leaves SYN_RECV alone (IPVS table), so a SYN now is a
    // retransmission and goes to the same realserver.
    let mut r = client_seg(6000, RST);
    c.process(t(1), &snap, &mut r, 0);
    let mut retrans = client_seg(6000, SYN);
    c.process(t(1), &snap, &mut retrans, 0);
    assert_eq!(tuple(&retrans).2, first);
    let mut sa = reply_seg(first, 6000, SYN | ACK);
    c.process(t(1), &snap, &mut sa, 1);
    let mut ack = client_seg(6000, ACK);
    c.process(t(1), &snap, &mut ack, 0);
    let mut r = client_seg(6000, RST);
    c.process(t(1), &snap, &mut r, 0);
    let mut again = client_seg(6000, SYN);
    assert_eq!(c.process(t(2), &snap, &mut again, 0), Verdict::Tx(1));
    assert_ne!(
        tuple(&again).2,
        first,
        "conn_reuse_mode 1: rescheduled (rr moves on)"
    );
    assert_eq!(c.tables().len(), 1);
}

#[test]
fn full_table_drops_new_connections_but_keeps_old_ones() {
    let mut c = Core::new(Arc::new(Tables::new(1)));
    let snap = nat_snap("rr");
    let mut a = client_seg(7000, SYN);
    assert!(matches!(c.process(t(1), &snap, &mut a, 0), Verdict::Tx(_)));
    let mut b = client_seg(7001, SYN);
    assert_eq!(
        c.process(t(1), &snap, &mut b, 0),
        Verdict::Drop(DropReason::TableFull)
    );
    let mut a2 = client_seg(7000, ACK);
    assert!(matches!(c.process(t(1), &snap, &mut a2, 0), Verdict::Tx(_)));
}

#[test]
fn vlan_tagged_frames_are_forwarded() {
    let mut c = core();
    let snap = nat_snap("rr");
    let plain = client_seg(8000, SYN);
    let mut f = crate::testing::vlan_tagged(&plain, 42);
    assert_eq!(c.process(t(1), &snap, &mut f, 0), Verdict::Tx(1));
    let mut untagged = f[..12].to_vec();
    untagged.extend_from_slice(&f[16..]);
    assert_eq!(tuple(&untagged).2, RIP1);
    assert!(checksums_ok(&untagged));
}

fn svc_key() -> VsKey {
    VsKey {
        proto: Proto::Tcp,
        addr: VIP.into(),
        port: 80,
    }
}

fn syn_from(cip: Ipv4Addr, cport: u16) -> Vec<u8> {
    tcp_frame(CLIENT_MAC, EXT_MAC, (cip, cport), (VIP, 80), SYN, 64, b"")
}

/// A persistent NAT service over RIP1/RIP2 with this netmask.
pub(super) fn persistent_snap(netmask: Ipv4Addr) -> Snapshot {
    let mut svc = service(
        Proto::Tcp,
        (VIP, 80),
        &[(RIP1, 8080), (RIP2, 8080)],
        Fwd::Masq,
        "rr",
    );
    svc.persist = Some(service::Persistence {
        timeout: std::time::Duration::from_secs(300),
        netmask: netmask.into(),
    });
    snapshot_with(vec![svc])
}

#[test]
fn persistence_keeps_a_client_on_one_realserver() {
    let mut c = core();
    let snap = persistent_snap(Ipv4Addr::BROADCAST);
    let cip2 = Ipv4Addr::new(198, 51, 100, 8);
    let mut first = None;
    for port in 10_000..10_020 {
        let mut f = syn_from(CIP, port);
        assert_eq!(c.process(t(1), &snap, &mut f, 0), Verdict::Tx(1));
        let rs = tuple(&f).2;
        assert_eq!(*first.get_or_insert(rs), rs, "same client, same realserver");
    }
    // rr would alternate: the next client gets the other realserver.
    let mut f = syn_from(cip2, 10_000);
    c.process(t(1), &snap, &mut f, 0);
    assert_ne!(Some(tuple(&f).2), first);
    assert_eq!(c.tables().templates(), 2);
    let d = &snap.service(&svc_key()).unwrap().dests;
    let persist: u32 = d
        .iter()
        .map(|d| d.state.persist.load(Ordering::Relaxed))
        .sum();
    assert_eq!(persist, 2, "templates count toward their realservers");
}

/// A persistent fwmark service (mark 7) over RIP1/RIP2 with realserver port 0, listed under
/// TCP VIP:80, TCP VIP:443 and UDP VIP:53.
pub(super) fn fwmark_snap() -> Snapshot {
    let mut svc = service(
        Proto::Tcp,
        (VIP, 0),
        &[(RIP1, 0), (RIP2, 0)],
        Fwd::Masq,
        "rr",
    );
    svc.mark = 7;
    svc.persist = Some(service::Persistence {
        timeout: std::time::Duration::from_secs(300),
        netmask: Ipv4Addr::BROADCAST.into(),
    });
    let svc = Arc::new(svc);
    let mut snap = snapshot_with(vec![]);
    for (proto, port) in [(Proto::Tcp, 80), (Proto::Tcp, 443), (Proto::Udp, 53)] {
        let key = VsKey {
            proto,
            addr: VIP.into(),
            port,
        };
        snap.services.insert(key, svc.clone());
    }
    snap
}

#[test]
fn fwmark_service_keeps_the_port_and_one_template_across_ports_and_protocols() {
    let mut c = core();
    let snap = fwmark_snap();
    let mut f = tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 10_000), (VIP, 80), SYN, 64, b"");
    assert_eq!(c.process(t(1), &snap, &mut f, 0), Verdict::Tx(1));
    let (_, _, rs, port, _) = tuple(&f);
    assert_eq!(port, 80, "realserver port 0: the port the client asked for");
    let mut f = tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 10_001), (VIP, 443), SYN, 64, b"");
    assert_eq!(c.process(t(1), &snap, &mut f, 0), Verdict::Tx(1));
    assert_eq!(
        (tuple(&f).2, tuple(&f).3),
        (rs, 443),
        "same template, same realserver"
    );
    let mut f = udp_frame(CLIENT_MAC, EXT_MAC, (CIP, 10_002), (VIP, 53), b"q");
    assert_eq!(c.process(t(1), &snap, &mut f, 0), Verdict::Tx(1));
    assert_eq!((tuple(&f).2, tuple(&f).3), (rs, 53), "and across protocols");
    assert_eq!(c.tables().templates(), 1, "one template: keyed by the mark");
    // Another client: rr moves on to the other realserver, at its own port.
    let mut f = tcp_frame(
        CLIENT_MAC,
        EXT_MAC,
        (Ipv4Addr::new(198, 51, 100, 8), 10_000),
        (VIP, 443),
        SYN,
        64,
        b"",
    );
    assert_eq!(c.process(t(1), &snap, &mut f, 0), Verdict::Tx(1));
    assert_ne!(tuple(&f).2, rs);
    let mut keys = Vec::new();
    c.tables()
        .v4
        .for_each_template(|t| keys.push((t.key.proto, t.key.vaddr, t.key.vport)));
    assert_eq!(keys, [(0, Ipv4Addr::from_bits(7), 0); 2]);
    // The realserver's reply from its port 443 is SNATted back to VIP:443.
    let mut r = tcp_frame(
        rs_mac(1),
        INT_MAC,
        (tuple(&f).2, 443),
        (Ipv4Addr::new(198, 51, 100, 8), 10_000),
        SYN | ACK,
        64,
        b"",
    );
    assert_eq!(c.process(t(1), &snap, &mut r, 1), Verdict::Tx(0));
    assert_eq!(tuple(&r).0, VIP);
    assert_eq!(tuple(&r).1, 443);
}

#[test]
fn persistence_netmask_groups_clients() {
    let mut c = core();
    let snap = persistent_snap(Ipv4Addr::new(255, 255, 255, 0));
    let mut seen = std::collections::HashSet::new();
    for host in 1..50 {
        let mut f = syn_from(Ipv4Addr::new(198, 51, 100, host), 20_000);
        c.process(t(1), &snap, &mut f, 0);
        seen.insert(tuple(&f).2);
    }
    assert_eq!(seen.len(), 1, "one /24, one realserver");
    // Different /24 blocks spread over both realservers (rr over templates).
    for net in 0..10 {
        let mut f = syn_from(Ipv4Addr::new(203, 0, net, 1), 20_000);
        c.process(t(1), &snap, &mut f, 0);
        seen.insert(tuple(&f).2);
    }
    assert_eq!(seen.len(), 2);
    assert_eq!(c.tables().templates(), 11);
}

#[test]
fn template_outlives_its_connections_by_the_timeout_then_expires() {
    let mut c = core();
    let snap = persistent_snap(Ipv4Addr::BROADCAST);
    let mut f = syn_from(CIP, 30_000);
    c.process(t(1), &snap, &mut f, 0);
    let rs = tuple(&f).2;
    // The connection (SYN_RECV, 60 s) expires; the template holds the client for 300 s more.
    assert_eq!(c.expire(t(62)), 1);
    assert_eq!(c.tables().templates(), 1);
    let mut again = syn_from(CIP, 30_001);
    c.process(t(300), &snap, &mut again, 0);
    assert_eq!(
        tuple(&again).2,
        rs,
        "back within the timeout: same realserver"
    );
    c.expire(t(400));
    assert_eq!(c.tables().templates(), 1, "its new connection holds it");
    c.expire(t(2000));
    assert_eq!(c.tables().templates(), 0);
    assert_eq!(c.tables().len(), 0);
    let d = &snap.service(&svc_key()).unwrap().dests;
    assert!(d.iter().all(|d| d.state.total_conns() == 0));
}

#[test]
fn template_expires_exactly_one_timeout_after_its_last_use() {
    let mut c = core();
    let snap = persistent_snap(Ipv4Addr::BROADCAST);
    let mut f = syn_from(CIP, 30_100);
    c.process(t(1), &snap, &mut f, 0);
    // The connection (SYN_RECV, 60 s) goes at 61 s and touches the template: 300 s from then.
    assert_eq!(c.expire(t(61)), 1);
    c.expire(t(360));
    assert_eq!(c.tables().templates(), 1, "not before 361 s");
    c.expire(t(361));
    assert_eq!(c.tables().templates(), 0, "not later either");
}

#[test]
fn quiesced_realserver_keeps_persistent_clients_deleted_one_loses_them() {
    let mut c = core();
    let snap = persistent_snap(Ipv4Addr::BROADCAST);
    let mut f = syn_from(CIP, 31_000);
    c.process(t(1), &snap, &mut f, 0);
    let rs = tuple(&f).2;
    let d = &snap.service(&svc_key()).unwrap().dests;
    let (i, other) = if d[0].addr == rs { (0, 1) } else { (1, 0) };
    // Weight 0: IPVS (expire_quiescent_template = 0) still honours the template.
    let mut q = service(
        Proto::Tcp,
        (VIP, 80),
        &[(RIP1, 8080), (RIP2, 8080)],
        Fwd::Masq,
        "rr",
    );
    q.persist = snap.service(&svc_key()).unwrap().persist;
    for (k, dest) in q.dests.iter_mut().enumerate() {
        dest.state = d[k].state.clone();
    }
    q.dests[i].weight = 0;
    let quiesced = snapshot_with(vec![q]);
    let mut f = syn_from(CIP, 31_001);
    c.process(t(2), &quiesced, &mut f, 0);
    assert_eq!(tuple(&f).2, rs);
    // Deleted: the template is replaced and the client moves.
    let mut del = service(
        Proto::Tcp,
        (VIP, 80),
        &[(v4(d[other].addr), 8080)],
        Fwd::Masq,
        "rr",
    );
    del.persist = snap.service(&svc_key()).unwrap().persist;
    del.dests[0].state = d[other].state.clone();
    let deleted = snapshot_with(vec![del]);
    let mut f = syn_from(CIP, 31_002);
    c.process(t(3), &deleted, &mut f, 0);
    assert_eq!(tuple(&f).2, d[other].addr);
    assert_eq!(c.tables().templates(), 1);
}

#[test]
fn sorry_server_takes_over_when_no_realserver_can() {
    let mut c = core();
    let mut svc = service(Proto::Tcp, (VIP, 80), &[(RIP1, 8080)], Fwd::Masq, "wlc");
    svc.dests[0].weight = 0;
    let sorry_ip = Ipv4Addr::new(10, 10, 0, 99);
    svc.sorry = Some(dest(9, sorry_ip, 80, Fwd::Masq));
    let snap = snapshot_with(vec![svc]);
    let mut f = syn_from(CIP, 32_000);
    assert_eq!(c.process(t(1), &snap, &mut f, 0), Verdict::Tx(1));
    assert_eq!(tuple(&f).2, sorry_ip);
    assert_eq!(&f[..6], &rs_mac(9));
    assert!(checksums_ok(&f));
    // Its replies are SNATed like any realserver's.
    let mut r = tcp_frame(
        rs_mac(9),
        INT_MAC,
        (sorry_ip, 80),
        (CIP, 32_000),
        SYN | ACK,
        64,
        b"",
    );
    assert_eq!(c.process(t(1), &snap, &mut r, 1), Verdict::Tx(0));
    assert_eq!(tuple(&r), (VIP, 80, CIP, 32_000, 63));
}

#[test]
fn upper_threshold_overloads_until_below_lower() {
    let mut c = core();
    let snap = nat_snap("rr");
    let d = snap.service(&svc_key()).unwrap().dests.clone();
    d[0].state.set_thresholds(2, 1);
    let mut to_first = Vec::new();
    for port in 0..6 {
        let mut f = client_seg(33_000 + port, SYN);
        assert!(matches!(c.process(t(1), &snap, &mut f, 0), Verdict::Tx(_)));
        if tuple(&f).2 == d[0].addr {
            to_first.push(33_000 + port);
        }
    }
    assert_eq!(
        to_first.len(),
        2,
        "two connections reach -x 2, then no more"
    );
    assert!(d[0].state.overloaded());
    // One is established then reset (CLOSE, 10 s): still counted until it expires.
    let mut sa = reply_seg(v4(d[0].addr), to_first[0], SYN | ACK);
    c.process(t(2), &snap, &mut sa, 1);
    for flags in [ACK, RST] {
        let mut f = client_seg(to_first[0], flags);
        c.process(t(2), &snap, &mut f, 0);
    }
    assert!(d[0].state.overloaded());
    c.expire(t(13));
    assert_eq!(d[0].state.total_conns(), 1);
    assert!(d[0].state.overloaded(), "1 is not below -y 1");
    let mut f = client_seg(40_000, SYN);
    c.process(t(14), &snap, &mut f, 0);
    assert_eq!(tuple(&f).2, d[1].addr, "still no new connections");
    // The other (SYN_RECV, 60 s) expires: 0 < 1 clears the overload.
    c.expire(t(62));
    assert!(!d[0].state.overloaded());
}

#[test]
fn timeouts_follow_the_state_with_an_injected_clock() {
    let mut c = core();
    let snap = nat_snap("rr");
    // SYN_RECV: 60 s.
    let mut f = client_seg(34_000, SYN);
    c.process(t(0), &snap, &mut f, 0);
    assert_eq!(c.expire(t(59)), 0);
    assert_eq!(c.expire(t(60)), 1);
    // ESTABLISHED: 900 s from the last packet.
    let mut f = client_seg(34_001, SYN);
    c.process(t(0), &snap, &mut f, 0);
    let rs = tuple(&f).2;
    let mut sa = reply_seg(rs, 34_001, SYN | ACK);
    c.process(t(0), &snap, &mut sa, 1);
    let mut a = client_seg(34_001, ACK);
    c.process(t(100), &snap, &mut a, 0);
    assert_eq!(c.expire(t(999)), 0);
    assert_eq!(c.expire(t(1000)), 1);
    // `--set 10 0 0`: ESTABLISHED now lasts 10 s from the next packet. (The clock only moves
    // forward: the wheel does not go back in time.)
    let mut short = nat_snap("rr");
    short.timeouts.tcp[TcpState::Established as usize] = 10;
    let mut f = client_seg(34_002, SYN);
    c.process(t(2000), &short, &mut f, 0);
    let rs = tuple(&f).2;
    let mut sa = reply_seg(rs, 34_002, SYN | ACK);
    c.process(t(2000), &short, &mut sa, 1);
    let mut a = client_seg(34_002, ACK);
    c.process(t(2001), &short, &mut a, 0);
    assert_eq!(c.expire(t(2010)), 0);
    assert_eq!(c.expire(t(2011)), 1);
    // RST: CLOSE, 10 s, though the entry was filed for ESTABLISHED's 900 s.
    let mut f = client_seg(34_003, SYN);
    c.process(t(3000), &snap, &mut f, 0);
    let rs = tuple(&f).2;
    let mut sa = reply_seg(rs, 34_003, SYN | ACK);
    c.process(t(3000), &snap, &mut sa, 1);
    let mut a = client_seg(34_003, ACK);
    c.process(t(3000), &snap, &mut a, 0);
    let mut r = client_seg(34_003, RST);
    c.process(t(3001), &snap, &mut r, 0);
    assert_eq!(c.expire(t(3010)), 0);
    assert_eq!(c.expire(t(3011)), 1);
    // UDP: 300 s.
    let udp = snapshot(Proto::Udp, (VIP, 53), &[(RIP1, 53)], Fwd::Masq, "rr");
    let mut u = udp_frame(CLIENT_MAC, EXT_MAC, (CIP, 5353), (VIP, 53), b"q");
    c.process(t(4000), &udp, &mut u, 0);
    assert_eq!(c.expire(t(4299)), 0);
    assert_eq!(c.expire(t(4300)), 1);
}

/// A NAT connection CIP:cport → VIP:80 → RIP:8080 set up by a SYN: (the client's SYN as
/// sent, the DNATed SYN as the realserver gets it, the realserver's SYN-ACK as sent, and as the
/// client gets it).
fn nat_conn(c: &mut Core, snap: &Snapshot, cport: u16) -> [Vec<u8>; 4] {
    open_nat_conn(c, snap, CIP, VIP, cport)
}

/// A NAT connection cip:cport → vip:80 → RIP:8080 opened through the core, over either family:
/// [the client's SYN, as DNATed, the realserver's SYN-ACK, as SNATed].
pub(super) fn open_nat_conn<A: Addr + Into<std::net::IpAddr>>(
    c: &mut Core,
    snap: &Snapshot,
    cip: A,
    vip: A,
    cport: u16,
) -> [Vec<u8>; 4] {
    let syn = tcp_frame(
        CLIENT_MAC,
        EXT_MAC,
        (cip, cport),
        (vip, 80),
        SYN,
        64,
        b"hello",
    );
    let mut dnat = syn.clone();
    assert_eq!(c.process(t(1), snap, &mut dnat, 0), Verdict::Tx(1));
    let rip = crate::testing::tuple::<A>(&dnat).2;
    let sa = tcp_frame(
        rs_mac(0),
        INT_MAC,
        (rip, 8080),
        (cip, cport),
        SYN | ACK,
        64,
        b"world",
    );
    let mut snat = sa.clone();
    assert_eq!(c.process(t(1), snap, &mut snat, 1), Verdict::Tx(0));
    [syn, dnat, sa, snat]
}

#[test]
fn icmp_error_from_inside_goes_to_the_client_about_the_vip() {
    let mut c = core();
    let snap = nat_snap("rr");
    let [syn, dnat, _, _] = nat_conn(&mut c, &snap, 41_000);
    let router = Ipv4Addr::new(10, 10, 0, 254);
    // A router between director and realserver: "fragmentation needed" to the client, quoting
    // the packet as the director sent it (CIP → RIP:8080).
    let mut e = icmp_error(rs_mac(0), INT_MAC, router, CIP, Some(1400), &dnat[14..]);
    assert_eq!(c.process(t(2), &snap, &mut e, 1), Verdict::Tx(0));
    assert_eq!(&e[..6], &CLIENT_MAC);
    let (src, dst, quoted) = icmp_parts(&e).expect("outer and ICMP checksums");
    // IPVS ip_vs_nat_icmp: the outer source and the quoted destination become the VIP.
    assert_eq!((src, dst), (VIP, CIP));
    // The quote is the client's own packet again (as it left the director: TTL 63), every
    // checksum in it right.
    assert_eq!(quoted, with_ttl(&syn[14..], 63));
}

#[test]
fn icmp_error_from_outside_goes_to_the_realserver_about_its_reply() {
    let mut c = core();
    let snap = nat_snap("rr");
    let [_, dnat, sa, snat] = nat_conn(&mut c, &snap, 41_001);
    let rip = tuple(&dnat).2;
    let router = Ipv4Addr::new(192, 0, 2, 254);
    let mut e = icmp_error(CLIENT_MAC, EXT_MAC, router, VIP, None, &snat[14..]);
    assert_eq!(c.process(t(2), &snap, &mut e, 0), Verdict::Tx(1));
    let (src, dst, quoted) = icmp_parts(&e).expect("outer and ICMP checksums");
    assert_eq!((src, dst), (router, rip));
    assert_eq!(quoted, with_ttl(&sa[14..], 63));
}

#[test]
fn icmp_error_with_a_short_quote_rewrites_what_is_there() {
    let mut c = core();
    let snap = nat_snap("rr");
    let [_, dnat, _, _] = nat_conn(&mut c, &snap, 41_002);
    // RFC 792's minimum: the IP header and 8 bytes (ports and sequence number, no checksum).
    let short = &dnat[14..14 + 20 + 8];
    let mut e = icmp_error(
        rs_mac(0),
        INT_MAC,
        Ipv4Addr::new(10, 10, 0, 254),
        CIP,
        None,
        short,
    );
    assert_eq!(c.process(t(2), &snap, &mut e, 1), Verdict::Tx(0));
    let (_, _, quoted) = icmp_parts(&e).expect("checksums");
    let h = etherparse::Ipv4Header::from_slice(&quoted).unwrap().0;
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    assert_eq!(Ipv4Addr::from(h.destination), VIP);
    assert_eq!(&quoted[22..24], &80u16.to_be_bytes());
}

#[test]
fn icmp_error_on_dr_goes_to_the_realserver_unchanged() {
    let mut c = core();
    let snap = snapshot(Proto::Tcp, (VIP, 80), &[(RIP1, 80)], Fwd::Route, "rr");
    let mut syn = tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 41_003), (VIP, 80), SYN, 64, b"");
    c.process(t(1), &snap, &mut syn, 0);
    // The realserver answered from the VIP directly; a router on the way back complains.
    let reply = tcp_frame(
        rs_mac(0),
        CLIENT_MAC,
        (VIP, 80),
        (CIP, 41_003),
        SYN | ACK,
        63,
        b"",
    );
    let e0 = icmp_error(
        CLIENT_MAC,
        EXT_MAC,
        Ipv4Addr::new(192, 0, 2, 254),
        VIP,
        Some(1280),
        &reply[14..],
    );
    let mut e = e0.clone();
    assert_eq!(c.process(t(2), &snap, &mut e, 0), Verdict::Tx(1));
    assert_eq!(&e[..6], &rs_mac(0));
    assert_eq!(icmp_parts(&e).unwrap().2, reply[14..]);
    assert_eq!(e[14 + 8], e0[14 + 8] - 1, "outer TTL decremented");
}

#[test]
fn icmp_about_unknown_flows_and_echo_are_not_forwarded() {
    let mut c = core();
    let snap = nat_snap("rr");
    let stray = tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 9), (RIP1, 8080), SYN, 64, b"");
    let mut e = icmp_error(rs_mac(0), INT_MAC, RIP1, CIP, None, &stray[14..]);
    assert_eq!(
        c.process(t(1), &snap, &mut e, 1),
        Verdict::Drop(DropReason::NoConn)
    );
    let b = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, EXT_MAC)
        .ipv4(CIP.octets(), VIP.octets(), 64)
        .icmpv4_echo_request(1, 1);
    let mut ping = Vec::new();
    b.write(&mut ping, b"ping").unwrap();
    assert_eq!(
        c.process(t(1), &snap, &mut ping, 0),
        Verdict::Drop(DropReason::NotTcpUdp)
    );
    assert_eq!(c.tables().len(), 0);
}

#[test]
fn fragments_follow_their_first_fragment_both_ways() {
    let mut c = core();
    let snap = snapshot(Proto::Udp, (VIP, 53), &[(RIP1, 5353)], Fwd::Masq, "rr");
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let q = udp_frame(CLIENT_MAC, EXT_MAC, (CIP, 40_053), (VIP, 53), &payload);
    let mut frags = fragments(&q, 1480);
    assert_eq!(frags.len(), 3);
    for f in frags.iter_mut() {
        assert_eq!(c.process(t(1), &snap, f, 0), Verdict::Tx(1));
        assert_eq!(&f[..6], &rs_mac(0));
    }
    let whole = reassemble(&frags).expect("consistent fragments");
    assert_eq!(tuple(&whole), (CIP, 40_053, RIP1, 5353, 63));
    assert!(checksums_ok(&whole), "UDP checksum over the whole datagram");
    // The realserver's fragmented answer goes back as from the VIP.
    let r = udp_frame(
        rs_mac(0),
        INT_MAC,
        (RIP1, 5353),
        (CIP, 40_053),
        &payload[..2000],
    );
    let mut frags = fragments(&r, 1000);
    for f in frags.iter_mut() {
        assert_eq!(c.process(t(1), &snap, f, 1), Verdict::Tx(0));
    }
    let whole = reassemble(&frags).expect("consistent fragments");
    assert_eq!(tuple(&whole), (VIP, 53, CIP, 40_053, 63));
    assert!(checksums_ok(&whole));
}

#[test]
fn fragments_without_their_first_are_dropped_and_counted() {
    let mut c = core();
    let snap = snapshot(Proto::Udp, (VIP, 53), &[(RIP1, 53)], Fwd::Masq, "rr");
    let q = udp_frame(CLIENT_MAC, EXT_MAC, (CIP, 40_054), (VIP, 53), &[1u8; 2000]);
    let mut frags = fragments(&q, 1480);
    // Out of order: the second before the first.
    assert_eq!(
        c.process(t(1), &snap, &mut frags[1].clone(), 0),
        Verdict::Drop(DropReason::Fragment)
    );
    assert_eq!(c.process(t(1), &snap, &mut frags[0], 0), Verdict::Tx(1));
    assert_eq!(
        c.process(t(1), &snap, &mut frags[1].clone(), 0),
        Verdict::Tx(1)
    );
    // Long after the first fragment: forgotten.
    let late = t(1) + conn::FRAG_LIFETIME;
    assert_eq!(
        c.process(late, &snap, &mut frags[1], 0),
        Verdict::Drop(DropReason::Fragment)
    );
    c.tables().expire_fragments(late);
    assert_eq!(c.tables().fragments(), 0);
    assert_eq!(c.stats.drops[DropReason::Fragment as usize], 2);
}

/// A NAT connection's first frame through the core and its reply back, over either family:
/// the rewrite restores the tuple (TTL one less each way), and every rewritten frame's
/// checksums equal a full recomputation. Shared by the IPv4 and IPv6 property tests.
#[allow(clippy::too_many_arguments)]
pub(super) fn nat_round_trip<A: Addr + Into<std::net::IpAddr>>(
    c: &mut Core,
    (cip, cport): (A, u16),
    (vip, vport): (A, u16),
    (rip, rport): (A, u16),
    ttl: u8,
    udp: bool,
    payload: &[u8],
    reply: &[u8],
) -> Result<(), TestCaseError> {
    use crate::testing::tuple;
    let proto = if udp { Proto::Udp } else { Proto::Tcp };
    let snap = snapshot(proto, (vip, vport), &[(rip, rport)], Fwd::Masq, "rr");
    let mut f = if udp {
        udp_frame(CLIENT_MAC, EXT_MAC, (cip, cport), (vip, vport), payload)
    } else {
        tcp_frame(
            CLIENT_MAC,
            EXT_MAC,
            (cip, cport),
            (vip, vport),
            SYN,
            ttl,
            payload,
        )
    };
    let in_ttl = tuple::<A>(&f).4;
    prop_assert_eq!(c.process(t(1), &snap, &mut f, 0), Verdict::Tx(1));
    prop_assert_eq!(tuple(&f), (cip, cport, rip, rport, in_ttl - 1));
    prop_assert!(checksums_ok(&f));
    let mut r = if udp {
        udp_frame(rs_mac(0), INT_MAC, (rip, rport), (cip, cport), reply)
    } else {
        tcp_frame(
            rs_mac(0),
            INT_MAC,
            (rip, rport),
            (cip, cport),
            SYN | ACK,
            ttl,
            reply,
        )
    };
    let r_ttl = tuple::<A>(&r).4;
    prop_assert_eq!(c.process(t(1), &snap, &mut r, 1), Verdict::Tx(0));
    prop_assert_eq!(tuple(&r), (vip, vport, cip, cport, r_ttl - 1));
    prop_assert!(checksums_ok(&r));
    Ok(())
}

fn arb_ip() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

proptest! {
    /// NAT rewrite then reverse rewrite restores the original tuple, and every rewritten frame's
    /// checksums equal a full recomputation.
    #[test]
    fn nat_round_trip_restores_tuple_and_checksums(
        cip in arb_ip(), vip in arb_ip(), rip in arb_ip(),
        cport in 1u16.., vport in 1u16.., rport in 1u16..,
        ttl in 2u8.., udp in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        reply in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        prop_assume!(cip != rip && cip != vip);
        nat_round_trip(&mut core(), (cip, cport), (vip, vport), (rip, rport), ttl, udp, &payload, &reply)?;
    }

    /// Arbitrary bytes never panic the core: they are forwarded or dropped with a reason.
    #[test]
    fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut c = core();
        let snap = nat_snap("wlc");
        let mut f = bytes;
        let _ = c.process(t(1), &snap, &mut f, 0);
        prop_assert_eq!(c.stats.rx, 1);
    }

    /// Mutated valid frames never panic either (reaches deeper than random bytes).
    #[test]
    fn mutated_frames_never_panic(pos in 0usize..60, val in any::<u8>(), cut in 0usize..60) {
        let mut c = core();
        let snap = nat_snap("rr");
        let mut f = client_seg(9000, SYN);
        let p = pos % f.len();
        f[p] = val;
        f.truncate(f.len() - cut.min(f.len()));
        let _ = c.process(t(1), &snap, &mut f, 0);
        prop_assert_eq!(c.stats.rx, 1);
    }
}

#[test]
fn half_open_connections_beyond_the_cap_make_room_oldest_first() {
    let mut c = core();
    c.set_syn_recv_cap(4);
    let snap = nat_snap("rr");
    // One that completes its handshake is never taken for a half-open one.
    let [..] = nat_conn(&mut c, &snap, 5000);
    let mut ack = client_seg(5000, ACK);
    assert_eq!(c.process(t(1), &snap, &mut ack, 0), Verdict::Tx(1));
    // A flood of 20 half-open ones: the table holds the established one and the last 4.
    for i in 0..20u16 {
        let mut syn = syn_from(Ipv4Addr::new(203, 0, 113, (i % 250) as u8), 40000 + i);
        assert_eq!(c.process(t(2), &snap, &mut syn, 0), Verdict::Tx(1));
    }
    assert_eq!(c.tables().len(), 5);
    // 20 new ones, 4 places, the established one's taken back without removing it.
    assert_eq!(c.stats.syn_evicted, 16);
    let mut ack = client_seg(5000, ACK);
    assert_eq!(c.process(t(3), &snap, &mut ack, 0), Verdict::Tx(1));
    // The newest half-open ones are there: their handshakes complete.
    let mut late = tcp_frame(
        CLIENT_MAC,
        EXT_MAC,
        (Ipv4Addr::new(203, 0, 113, 19), 40019),
        (VIP, 80),
        ACK,
        64,
        b"",
    );
    assert_eq!(c.process(t(3), &snap, &mut late, 0), Verdict::Tx(1));
    // The oldest are gone: their ACK finds nothing.
    let mut early = tcp_frame(
        CLIENT_MAC,
        EXT_MAC,
        (Ipv4Addr::new(203, 0, 113, 0), 40000),
        (VIP, 80),
        ACK,
        64,
        b"",
    );
    assert_eq!(
        c.process(t(3), &snap, &mut early, 0),
        Verdict::Drop(DropReason::NoConn)
    );
}
