//! The core's side of the XDP fast path ([`super::offload`]), with an injected view of the
//! program's entries and an injected clock.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use xlvs_common::FlowKey;

use super::offload::{OffloadSeen, flow_key};
use super::tests::{CIP, VIP, client_seg, reply_seg, t};
use super::*;
use crate::testing::*;
use crate::wire::tcp::{ACK, FIN, SYN};

/// The driver's side in a test: the last frame time of each tuple, and the mark of the last
/// frame handed to a worker, as a test sets them.
#[derive(Clone, Default)]
struct Seen(
    Arc<Mutex<HashMap<FlowKey, Instant>>>,
    Arc<Mutex<HashMap<FlowKey, u32>>>,
);

impl OffloadSeen for Seen {
    fn last_seen(&mut self, key: &FlowKey) -> Option<Instant> {
        self.0.lock().unwrap().get(key).copied()
    }
    fn handed(&mut self, key: &FlowKey) -> Option<u32> {
        self.1.lock().unwrap().get(key).copied()
    }
}

/// A core with the fast path on and a NAT service `vport` → RIP1:`rport` of `proto`.
fn offload_core(proto: Proto, vport: u16, rport: u16) -> (Core, Seen, Snapshot) {
    let mut c = Core::new(Arc::new(conn::Tables::new(1 << 16)));
    let seen = Seen::default();
    c.set_offload(Some(Box::new(seen.clone())));
    let snap = snapshot(
        proto,
        (VIP, vport),
        &[(super::tests::RIP1, rport)],
        Fwd::Masq,
        "rr",
    );
    (c, seen, snap)
}

fn nat_core() -> (Core, Seen, Snapshot) {
    offload_core(Proto::Tcp, 80, 8080)
}

/// The map key of a frame from `src`:`sport` to `dst`:`dport`.
fn fk(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, proto: u8) -> FlowKey {
    flow_key(&conn::ConnKey {
        src,
        dst,
        sport,
        dport,
        proto,
    })
}

/// SYN, SYN-ACK, ACK: an established connection from client port `cport`. The handshake's
/// last ACK, which establishes it, is the client side's offer.
fn establish(c: &mut Core, snap: &Snapshot, cport: u16) {
    for (client, flags) in [(true, SYN), (false, SYN | ACK)] {
        let mut f = if client {
            client_seg(cport, flags)
        } else {
            reply_seg(super::tests::RIP1, cport, flags)
        };
        let iface = if client { 0 } else { 1 };
        assert!(matches!(
            c.process(t(1), snap, &mut f, iface),
            Verdict::Tx(_)
        ));
        assert_eq!(
            c.take_offload_request(),
            None,
            "nothing offloaded before ESTABLISHED"
        );
    }
    let mut f = client_seg(cport, ACK);
    assert_eq!(c.process(t(1), snap, &mut f, 0), Verdict::Tx(1));
    assert_eq!(c.take_offload_request().map(|r| r.key), Some(in_key(cport)));
}

fn in_key(cport: u16) -> FlowKey {
    fk(CIP, cport, VIP, 80, 6)
}

fn out_key(cport: u16) -> FlowKey {
    fk(super::tests::RIP1, 8080, CIP, cport, 6)
}

#[test]
fn each_direction_is_offered_once_when_established() {
    let (mut c, _, snap) = nat_core();
    establish(&mut c, &snap, 41000);
    // Offered once: a frame that still comes (the program passed it) asks nothing.
    let mut f = client_seg(41000, ACK);
    c.process(t(2), &snap, &mut f, 0);
    assert_eq!(c.take_offload_request(), None);
    let mut r = reply_seg(super::tests::RIP1, 41000, ACK);
    assert_eq!(c.process(t(2), &snap, &mut r, 1), Verdict::Tx(0));
    assert_eq!(
        c.take_offload_request().map(|r| r.key),
        Some(out_key(41000))
    );
}

#[test]
fn a_fin_takes_both_directions_back() {
    let (mut c, _, snap) = nat_core();
    establish(&mut c, &snap, 41001);
    let mut f = reply_seg(super::tests::RIP1, 41001, ACK);
    c.process(t(2), &snap, &mut f, 1);
    assert!(c.take_offload_request().is_some());
    let mut f = client_seg(41001, FIN | ACK);
    c.process(t(3), &snap, &mut f, 0);
    assert_eq!(c.take_offload_request(), None, "a FIN is not offloaded");
    let t4 = &c.tables().v4;
    let back: Vec<_> = [t4.take_unoffloaded(), t4.take_unoffloaded()]
        .into_iter()
        .map(|u| u.map(|u| (u.key, u.out)))
        .collect();
    assert_eq!(
        back,
        [Some((in_key(41001), false)), Some((out_key(41001), true))]
    );
    assert!(t4.take_unoffloaded().is_none());
    // Later frames go through the core's state machine, never offered again.
    let mut f = reply_seg(super::tests::RIP1, 41001, FIN | ACK);
    c.process(t(3), &snap, &mut f, 1);
    let mut f = client_seg(41001, ACK);
    c.process(t(3), &snap, &mut f, 0);
    assert_eq!(c.take_offload_request(), None);
}

#[test]
fn expiry_asks_the_program_when_it_last_forwarded() {
    let (mut c, seen, mut snap) = nat_core();
    snap.timeouts.tcp[TcpState::Established as usize] = 10;
    establish(&mut c, &snap, 41002);
    // The program forwards the connection's frames; the core sees none after t = 1.
    seen.0.lock().unwrap().insert(in_key(41002), t(9));
    assert_eq!(
        c.expire(t(13)),
        0,
        "alive: the program forwarded a frame at 9 s"
    );
    seen.0.lock().unwrap().insert(in_key(41002), t(20));
    assert_eq!(c.expire(t(25)), 0, "alive: a frame at 20 s");
    assert_eq!(c.tables().len(), 1);
    // Idle since 20 s: gone at 30 s, its entry handed back.
    assert_eq!(c.expire(t(31)), 1);
    assert!(c.tables().is_empty());
    assert_eq!(
        c.tables().v4.take_unoffloaded().map(|u| u.key),
        Some(in_key(41002))
    );
}

/// A client segment of connection `cport` with sequence number `seq` (what the program's
/// mark of a TCP frame is).
fn client_seg_seq(cport: u16, seq: u32) -> Vec<u8> {
    let mut f = client_seg(cport, ACK);
    f[38..42].copy_from_slice(&seq.to_be_bytes());
    f
}

/// The events waiting, as (kind, TCP state).
fn events_of(ob: &events::Outbox) -> Vec<(events::EventKind, TcpState)> {
    std::iter::from_fn(|| ob.pop())
        .map(|e| (e.kind, e.state))
        .collect()
}

#[test]
fn a_sync_master_counts_offloaded_connections_through_the_program() {
    use events::EventKind::{Created, Packets, StateChanged};
    let (mut c, seen, snap) = nat_core();
    let ob = Arc::new(events::Outbox::with_sync(64, 3, 50));
    ob.set_listening(true);
    c.set_outbox(Some(ob.clone()));
    // The handshake: SYN (the 1st client packet), SYN-ACK, ACK (the 2nd), which offers the
    // client's direction with the count so far and the rule.
    let mut f = client_seg(41010, SYN);
    c.process(t(1), &snap, &mut f, 0);
    let mut f = reply_seg(super::tests::RIP1, 41010, SYN | ACK);
    c.process(t(1), &snap, &mut f, 1);
    let mut f = client_seg(41010, ACK);
    c.process(t(1), &snap, &mut f, 0);
    let req = c
        .take_offload_request()
        .expect("offered while a master listens");
    assert_eq!(req.key, in_key(41010));
    assert_eq!(
        req.sync,
        Some(offload::SyncCount {
            pkts: 2,
            period: 50,
            due: 3
        })
    );
    assert_eq!(
        events_of(&ob),
        [
            (Created, TcpState::SynRecv),
            (StateChanged, TcpState::Established)
        ],
        "ESTABLISHED is reported at once"
    );
    // The reply direction counts nothing.
    let mut r = reply_seg(super::tests::RIP1, 41010, ACK);
    c.process(t(1), &snap, &mut r, 1);
    assert_eq!(c.take_offload_request().and_then(|r| r.sync), None);
    // A frame the program forwarded before its entry was filed is counted as ever: the 3rd
    // client packet is reported.
    let mut f = client_seg_seq(41010, 1000);
    c.process(t(2), &snap, &mut f, 0);
    assert_eq!(events_of(&ob), [(Packets, TcpState::Established)]);
    // The program counts the next ones and hands the worker the one the rule picks, which
    // is reported though the worker's own count is not due.
    let mark = offload::frame_mark(&client_seg_seq(41010, 5000), 14, 34, 6);
    seen.1.lock().unwrap().insert(in_key(41010), mark.unwrap());
    let mut f = client_seg_seq(41010, 5000);
    assert_eq!(c.process(t(3), &snap, &mut f, 0), Verdict::Tx(1));
    assert_eq!(events_of(&ob), [(Packets, TcpState::Established)]);
    // Another frame that reaches the worker (unmarked) is only counted: the 4th.
    let mut f = client_seg_seq(41010, 6000);
    c.process(t(3), &snap, &mut f, 0);
    assert_eq!(events_of(&ob), []);
    assert_eq!(c.take_offload_request(), None);
}

/// The program hands tagged frames too: their mark is read past the tag.
#[test]
fn a_tagged_frames_mark_is_read_past_its_tag() {
    let f = client_seg_seq(41010, 5000);
    let tagged = crate::testing::vlan_tagged(&f, 42);
    let mark = offload::frame_mark(&f, 14, 34, 6);
    assert!(mark.is_some());
    assert_eq!(offload::frame_mark(&tagged, 18, 38, 6), mark);
    // IP options: never handed.
    assert_eq!(offload::frame_mark(&tagged, 18, 42, 6), None);
}

#[test]
fn a_connection_the_map_refused_stays_with_the_workers() {
    let (mut c, _, snap) = nat_core();
    establish(&mut c, &snap, 41011);
    let mut r = reply_seg(super::tests::RIP1, 41011, ACK);
    c.process(t(2), &snap, &mut r, 1);
    assert!(c.take_offload_request().is_some());
    // The driver could not file the reply direction: both go back, for good.
    c.tables().v4.keep_flow(&out_key(41011));
    let t4 = &c.tables().v4;
    let back: Vec<_> = std::iter::from_fn(|| t4.take_unoffloaded())
        .map(|u| u.key)
        .collect();
    assert_eq!(back, [in_key(41011), out_key(41011)]);
    for _ in 0..3 {
        let mut f = client_seg(41011, ACK);
        c.process(t(3), &snap, &mut f, 0);
        let mut r = reply_seg(super::tests::RIP1, 41011, ACK);
        c.process(t(3), &snap, &mut r, 1);
        assert_eq!(c.take_offload_request(), None);
    }
    // A FIN takes nothing back twice.
    let mut f = client_seg(41011, FIN | ACK);
    c.process(t(4), &snap, &mut f, 0);
    assert!(c.tables().v4.take_unoffloaded().is_none());
}

#[test]
fn a_sync_master_starting_leaves_the_offloaded_connections_to_the_workers() {
    let (mut c, _, snap) = nat_core();
    let ob = Arc::new(events::Outbox::new(64));
    c.set_outbox(Some(ob.clone()));
    // Nobody listens yet.
    establish(&mut c, &snap, 41003);
    // The master starts: the offloaded connection comes back (the program has not counted
    // its packets), and it is not offered again.
    ob.set_listening(true);
    c.refresh_listening();
    assert_eq!(
        c.tables().v4.take_unoffloaded().map(|u| u.key),
        Some(in_key(41003))
    );
    let mut r = reply_seg(super::tests::RIP1, 41003, ACK);
    c.process(t(2), &snap, &mut r, 1);
    assert_eq!(c.take_offload_request(), None);
    // A new connection is.
    establish(&mut c, &snap, 41004);
    // The master stops: the connection stays with the workers (taken back for good), and
    // the one whose packets the program counted for the master comes back as well.
    ob.set_listening(false);
    c.refresh_listening();
    assert_eq!(
        c.tables().v4.take_unoffloaded().map(|u| u.key),
        Some(in_key(41004))
    );
    let mut f = client_seg(41003, ACK);
    c.process(t(3), &snap, &mut f, 0);
    assert_eq!(c.take_offload_request(), None);
    // Its deadline is the workers' (900 s from its last frame at 3 s), though the program
    // never saw a frame of it.
    assert_eq!(c.expire(t(17)), 0);
    assert_eq!(c.tables().len(), 2);
}

#[test]
fn a_dropped_frame_asks_nothing() {
    let (mut c, _, snap) = nat_core();
    for (client, flags) in [(true, SYN), (false, SYN | ACK)] {
        let mut f = if client {
            client_seg(41004, flags)
        } else {
            reply_seg(super::tests::RIP1, 41004, flags)
        };
        c.process(t(1), &snap, &mut f, if client { 0 } else { 1 });
    }
    // The realserver's MAC is gone: the ACK that establishes the connection is dropped,
    // and nothing is offloaded.
    for d in snap.services.values().flat_map(|s| s.dests.iter()) {
        d.state.set_next_hop(None);
    }
    let mut f = client_seg(41004, ACK);
    assert!(matches!(
        c.process(t(2), &snap, &mut f, 0),
        Verdict::Drop(_)
    ));
    assert_eq!(c.take_offload_request(), None);
}

#[test]
fn a_udp_flow_is_offered_from_its_second_frame() {
    let (mut c, _, snap) = offload_core(Proto::Udp, 53, 53);
    let dgram = || udp_frame(CLIENT_MAC, EXT_MAC, (CIP, 5353), (VIP, 53), b"q");
    let mut f = dgram();
    assert_eq!(c.process(t(1), &snap, &mut f, 0), Verdict::Tx(1));
    assert_eq!(
        c.take_offload_request(),
        None,
        "the first frame creates the connection"
    );
    let mut f = dgram();
    assert_eq!(c.process(t(1), &snap, &mut f, 0), Verdict::Tx(1));
    assert_eq!(
        c.take_offload_request().map(|r| r.key),
        Some(fk(CIP, 5353, VIP, 53, 17))
    );
}

#[test]
fn a_realserver_that_leaves_takes_its_offloaded_connections_back() {
    for expire in [false, true] {
        let (mut c, seen, snap) = nat_core();
        establish(&mut c, &snap, 41020);
        let mut r = reply_seg(super::tests::RIP1, 41020, ACK);
        c.process(t(2), &snap, &mut r, 1);
        assert!(c.take_offload_request().is_some());
        seen.0.lock().unwrap().insert(in_key(41020), t(3));
        // RIP1 leaves the table (deleted, or its health check failed): the control thread
        // marks its connections, and their entries go, so that the next client frame
        // reaches a worker (the program would go on forwarding to the gone realserver).
        let d1 = snap.services.values().next().unwrap().dests[0]
            .state
            .clone();
        let mut next = snapshot(
            Proto::Tcp,
            (VIP, 80),
            &[(super::tests::RIP2, 8080)],
            Fwd::Masq,
            "rr",
        );
        next.expire_nodest_conn = expire;
        assert_eq!(c.tables().unbind_gone(|d| std::ptr::eq(d, &*d1)), 1);
        let t4 = &c.tables().v4;
        let back: Vec<_> = std::iter::from_fn(|| t4.take_unoffloaded())
            .map(|u| u.key)
            .collect();
        assert_eq!(back, [in_key(41020), out_key(41020)]);
        let v = c.process(t(4), &next, &mut client_seg(41020, ACK), 0);
        assert_eq!(c.take_offload_request(), None, "never offered again");
        if expire {
            // expire_nodest_conn: dropped, and gone at the wheel's next tick.
            assert_eq!(v, Verdict::Drop(DropReason::NoDest));
            c.expire_some(t(5));
            assert_eq!(c.tables().len(), 0);
            assert_eq!(d1.total_conns(), 0);
        } else {
            // IPVS's default: the connection stays bound to its realserver, through the
            // workers, until it ends.
            assert_eq!(v, Verdict::Tx(1));
            assert_eq!(c.tables().len(), 1);
            let mut f = client_seg(41020, ACK);
            assert_eq!(c.process(t(4), &next, &mut f, 0), Verdict::Tx(1));
            assert_eq!(tuple::<Ipv4Addr>(&f).2, super::tests::RIP1, "still to RIP1");
        }
    }
}

#[test]
fn an_offloaded_connection_holds_its_persistence_template() {
    let mut c = Core::new(Arc::new(conn::Tables::new(1 << 16)));
    let seen = Seen::default();
    c.set_offload(Some(Box::new(seen.clone())));
    // Persistence 300 s, ESTABLISHED 60 s.
    let mut snap = super::tests::persistent_snap(Ipv4Addr::BROADCAST);
    snap.timeouts.tcp[TcpState::Established as usize] = 60;
    establish(&mut c, &snap, 41030);
    let rs = super::tests::RIP1;
    // The program forwards the connection's frames for 20 minutes; the core sees none.
    for s in (50..=1200).step_by(50) {
        seen.0.lock().unwrap().insert(in_key(41030), t(s));
        c.expire(t(s + 5));
        assert_eq!(c.tables().len(), 1, "alive at {} s", s + 5);
        assert_eq!(
            c.tables().templates(),
            1,
            "its template too, at {} s",
            s + 5
        );
    }
    // Long past the persistence timeout, the client's new connection still goes where its
    // first one is (IPVS: a template lives while connections it controls do).
    let mut f = client_seg(41031, SYN);
    assert_eq!(c.process(t(1205), &snap, &mut f, 0), Verdict::Tx(1));
    assert_eq!(tuple::<Ipv4Addr>(&f).2, rs);
    // Both connections end (the new one in SYN_RECV at 60 s, the offloaded one idle from
    // 1200 s); the template then lives its own timeout.
    assert_eq!(c.expire(t(1300)), 2);
    assert_eq!(c.tables().templates(), 1);
    c.expire(t(1700));
    assert_eq!(c.tables().templates(), 0);
}

#[test]
fn a_new_established_timeout_reaches_offloaded_connections() {
    let (mut c, seen, mut snap) = nat_core();
    snap.timeouts.tcp[TcpState::Established as usize] = 10;
    establish(&mut c, &snap, 41040);
    seen.0.lock().unwrap().insert(in_key(41040), t(9));
    // `xlvsadm --set 100 0 0`: the driver notes the new snapshot's timeouts; no new offer.
    snap.timeouts.tcp[TcpState::Established as usize] = 100;
    c.note_timeouts(&snap);
    assert_eq!(
        c.expire(t(30)),
        0,
        "alive: 100 s from the program's last frame"
    );
    assert_eq!(c.expire(t(110)), 1, "idle 100 s since 9 s");
}

/// IPv6 connections take the fast path as IPv4 ones do: each direction is offered once it
/// is established, under a key of the IPv6 family, and a FIN takes both back through the
/// IPv6 table's queue; the entry built from the core's rewrite of the offering frame turns
/// the next frame's checksum into the one the core gives it.
#[test]
fn ipv6_connections_are_offered_and_taken_back() {
    use std::net::Ipv6Addr;
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
    const CIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
    const RIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0x11);
    let mut c = Core::new(Arc::new(conn::Tables::new(1 << 16)));
    c.set_offload(Some(Box::new(Seen::default())));
    let snap = snapshot(Proto::Tcp, (VIP6, 80), &[(RIP6, 8080)], Fwd::Masq, "rr");
    let client_from = |cport, flags, payload: &[u8]| {
        tcp_frame(
            CLIENT_MAC,
            EXT_MAC,
            (CIP6, cport),
            (VIP6, 80),
            flags,
            64,
            payload,
        )
    };
    let client = |flags, payload: &[u8]| client_from(41100, flags, payload);
    let reply_to = |cport, flags| {
        tcp_frame(
            rs_mac(0),
            INT_MAC,
            (RIP6, 8080),
            (CIP6, cport),
            flags,
            64,
            b"hi",
        )
    };
    let reply = |flags| reply_to(41100, flags);
    let key = |src, sport, dst, dport| {
        flow_key(&conn::ConnKey {
            src,
            dst,
            sport,
            dport,
            proto: 6,
        })
    };
    let (inn, out) = (key(CIP6, 41100, VIP6, 80), key(RIP6, 8080, CIP6, 41100));
    assert_eq!(inn.family, xlvs_common::FAMILY_IPV6);
    assert_eq!(
        offload::conn_key::<Ipv6Addr>(&inn).map(|k| k.src),
        Some(CIP6)
    );
    assert_eq!(offload::conn_key::<Ipv4Addr>(&inn), None);
    assert!(matches!(
        c.process(t(1), &snap, &mut client(SYN, b""), 0),
        Verdict::Tx(_)
    ));
    assert!(matches!(
        c.process(t(1), &snap, &mut reply(SYN | ACK), 1),
        Verdict::Tx(_)
    ));
    assert_eq!(c.take_offload_request(), None, "nothing before ESTABLISHED");
    let mut first = client(ACK, b"first");
    assert_eq!(c.process(t(1), &snap, &mut first, 0), Verdict::Tx(1));
    let req = c
        .take_offload_request()
        .expect("the client direction offered");
    assert_eq!(req.key, inn);
    // The entry the driver files from the rewritten frame, applied to the next frame's
    // checksum, gives the checksum the core computes for it.
    let e = crate::offload_map::entry(&req, &first, (1, 0), 1).expect("an IPv6 entry");
    assert_eq!(e.dst, RIP6.octets());
    assert_eq!(e.dport, 8080u16.to_be());
    let mut next = client(ACK, b"the next one, odd");
    let before = u16::from_be_bytes([next[14 + 40 + 16], next[14 + 40 + 17]]);
    c.process(t(2), &snap, &mut next, 0);
    let after = u16::from_be_bytes([next[14 + 40 + 16], next[14 + 40 + 17]]);
    assert_eq!(crate::wire::checksum::apply(before, e.l4_delta), after);
    assert_eq!(c.take_offload_request(), None, "offered once");
    // The mark the program leaves for a frame it hands over for the sync rule: the TCP
    // sequence number, read at the IPv6 offsets (tagged or not).
    let f = client(ACK, b"");
    assert_eq!(offload::frame_mark(&f, 14, 54, 6), Some(1000));
    let tagged = vlan_tagged(&f, 7);
    assert_eq!(offload::frame_mark(&tagged, 18, 58, 6), Some(1000));
    assert_eq!(c.process(t(2), &snap, &mut reply(ACK), 1), Verdict::Tx(0));
    assert_eq!(c.take_offload_request().map(|r| r.key), Some(out));
    assert!(c.tables().v4.take_unoffloaded().is_none());
    c.process(t(3), &snap, &mut client(FIN | ACK, b""), 0);
    assert_eq!(c.take_offload_request(), None, "a FIN is not offloaded");
    let t6 = &c.tables().v6;
    let back: Vec<_> = std::iter::from_fn(|| t6.take_unoffloaded())
        .map(|u| (u.key, u.out))
        .collect();
    assert_eq!(back, [(inn, false), (out, true)]);
    // A sync master starting takes IPv6 connections back too (the program has not counted
    // their packets).
    for (flags, iface) in [(SYN, 0), (ACK, 0)] {
        let mut f = client_from(41101, flags, b"");
        if flags == ACK {
            c.process(t(4), &snap, &mut reply_to(41101, SYN | ACK), 1);
        }
        c.process(t(4), &snap, &mut f, iface);
    }
    let k2 = key(CIP6, 41101, VIP6, 80);
    assert_eq!(c.take_offload_request().map(|r| r.key), Some(k2));
    let ob = Arc::new(events::Outbox::new(64));
    c.set_outbox(Some(ob.clone()));
    ob.set_listening(true);
    c.refresh_listening();
    assert_eq!(c.tables().v6.take_unoffloaded().map(|u| u.key), Some(k2));
}
