//! Tests of the control plane's hooks into the core: connection events ([`events`]), entries
//! learned from outside ([`inject`]) and the expiry deadline ([`Core::poll_timeout`]), on an
//! injected clock.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::conn::{Tables, TemplateKey};
use super::events::{ConnEvent, EventKind, Outbox};
use super::inject::{ConnSpec, InjectError, Inserted, Spec, TemplateSpec};
use super::service::{DestState, Fwd, Persistence, Proto, Snapshot, VsKey};
use super::tcp_state::TcpState;
use super::tests::{CIP, RIP1, RIP2, VIP, client_seg, reply_seg, t};
use super::*;
use crate::testing::*;
use crate::wire::tcp::{ACK, SYN};

/// A realserver the snapshots below do not have at first.
const RIP9: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 99);

fn nat_snap(rips: &[(Ipv4Addr, u16)]) -> Snapshot {
    snapshot(Proto::Tcp, (VIP, 80), rips, Fwd::Masq, "rr")
}

/// A core whose outbox (8 events) is listened to, or not.
fn listened(listening: bool) -> (Core, Arc<Outbox>) {
    let mut c = Core::new(Arc::new(Tables::new(1 << 10)));
    let ob = Arc::new(Outbox::new(8));
    ob.set_listening(listening);
    c.set_outbox(Some(ob.clone()));
    (c, ob)
}

fn drain(ob: &Outbox) -> Vec<ConnEvent> {
    std::iter::from_fn(|| ob.pop()).collect()
}

fn kinds(evs: &[ConnEvent]) -> Vec<(EventKind, bool)> {
    evs.iter().map(|e| (e.kind, e.template)).collect()
}

fn spec(cport: u16, daddr: Ipv4Addr, state: TcpState, hop: Option<NextHop>) -> ConnSpec {
    ConnSpec {
        proto: Proto::Tcp,
        caddr: CIP.into(),
        cport,
        vaddr: VIP.into(),
        vport: 80,
        daddr: daddr.into(),
        dport: 8080,
        fwd: Fwd::Masq,
        state,
        timeout: Duration::from_secs(900),
        client_hop: hop,
        template: None,
        origin: None,
    }
}

const CLIENT_HOP: NextHop = NextHop {
    iface: 0,
    mac: CLIENT_MAC,
};

fn counts(snap: &Snapshot, rip: Ipv4Addr) -> (u32, u32, u32) {
    let svc = snap.services.values().next().expect("one service").clone();
    let d = svc
        .dests
        .iter()
        .find(|d| d.addr == IpAddr::from(rip))
        .unwrap();
    let s = &d.state;
    (
        s.active.load(Ordering::Relaxed),
        s.inactive.load(Ordering::Relaxed),
        s.persist.load(Ordering::Relaxed),
    )
}

#[test]
fn no_events_and_no_packet_counts_when_no_one_listens() {
    let (mut c, ob) = listened(false);
    let snap = nat_snap(&[(RIP1, 8080)]);
    for flags in [SYN, ACK, ACK, ACK] {
        assert!(matches!(
            c.process(t(1), &snap, &mut client_seg(40000, flags), 0),
            Verdict::Tx(_)
        ));
    }
    c.expire(t(10_000));
    assert!(ob.is_empty());
    // Switched on: seen at the next refresh (a worker's next batch), not before.
    ob.set_listening(true);
    c.process(t(20_000), &snap, &mut client_seg(40001, SYN), 0);
    assert!(ob.is_empty());
    c.refresh_listening();
    c.process(t(20_000), &snap, &mut client_seg(40002, SYN), 0);
    assert_eq!(kinds(&drain(&ob)), [(EventKind::Created, false)]);
}

#[test]
fn a_connection_reports_creation_state_changes_the_sync_rule_and_expiry() {
    let (mut c, ob) = listened(true);
    let snap = nat_snap(&[(RIP1, 8080)]);
    c.process(t(1), &snap, &mut client_seg(40000, SYN), 0);
    let created = drain(&ob);
    assert_eq!(
        created,
        [ConnEvent {
            kind: EventKind::Created,
            proto: 6,
            fwd: Fwd::Masq,
            state: TcpState::SynRecv,
            template: false,
            inactive: false,
            persistent: false,
            fwmark: 0,
            cport: 40000,
            vport: 80,
            dport: 8080,
            timeout: 60,
            caddr: CIP.into(),
            vaddr: VIP.into(),
            daddr: RIP1.into(),
        }]
    );
    // SYN-ACK: SYN_RECV stays SYN_RECV, nothing; the client's ACK (2nd packet) establishes.
    c.process(t(1), &snap, &mut reply_seg(RIP1, 40000, SYN | ACK), 1);
    assert!(ob.is_empty());
    c.process(t(1), &snap, &mut client_seg(40000, ACK), 0);
    let ev = drain(&ob);
    assert_eq!(kinds(&ev), [(EventKind::StateChanged, false)]);
    assert_eq!((ev[0].state, ev[0].timeout), (TcpState::Established, 900));
    // Client packets 3..=110: reported at the 3rd, 53rd and 103rd; replies count nothing.
    let mut reported = Vec::new();
    for n in 3..=110 {
        c.process(t(2), &snap, &mut client_seg(40000, ACK), 0);
        c.process(t(2), &snap, &mut reply_seg(RIP1, 40000, ACK), 1);
        for e in drain(&ob) {
            assert_eq!(e.kind, EventKind::Packets);
            reported.push(n);
        }
    }
    assert_eq!(reported, [3, 53, 103]);
    assert_eq!(c.expire(t(2 + 900)), 1);
    let ev = drain(&ob);
    assert_eq!(kinds(&ev), [(EventKind::Expired, false)]);
    assert_eq!((ev[0].cport, ev[0].timeout), (40000, 0));
}

#[test]
fn a_just_established_connection_wakes_the_reader_once_per_drain() {
    use std::sync::atomic::AtomicUsize;
    let (mut c, ob) = listened(true);
    let woken = Arc::new(AtomicUsize::new(0));
    let w = woken.clone();
    ob.set_waker(Arc::new(move || {
        w.fetch_add(1, Ordering::Relaxed);
    }));
    let snap = nat_snap(&[(RIP1, 8080)]);
    let handshake = |c: &mut Core, port| {
        c.process(t(1), &snap, &mut client_seg(port, SYN), 0);
        c.process(t(1), &snap, &mut reply_seg(RIP1, port, SYN | ACK), 1);
        // A SYN alone is not urgent: it waits for the periodic drain.
        let before = woken.load(Ordering::Relaxed);
        ob.wake_if_urgent();
        assert_eq!(woken.load(Ordering::Relaxed), before);
        c.process(t(1), &snap, &mut client_seg(port, ACK), 0);
    };
    handshake(&mut c, 40000);
    ob.wake_if_urgent();
    assert_eq!(woken.load(Ordering::Relaxed), 1);
    // The reader has not drained yet: another established connection does not wake it again.
    handshake(&mut c, 40001);
    ob.wake_if_urgent();
    assert_eq!(woken.load(Ordering::Relaxed), 1);
    // It drains and re-arms: the next one wakes it.
    drain(&ob);
    ob.arm();
    ob.wake_if_urgent();
    assert_eq!(woken.load(Ordering::Relaxed), 1, "nothing urgent since");
    handshake(&mut c, 40002);
    ob.wake_if_urgent();
    assert_eq!((woken.load(Ordering::Relaxed), ob.wakeups()), (2, 2));
}

#[test]
fn a_threshold_of_one_reports_the_creating_packet() {
    // IPVS counts the packet that created the connection, so `sync_threshold "1 0"` syncs
    // it there, and never again (period 0).
    let mut c = Core::new(Arc::new(Tables::new(1 << 10)));
    let ob = Arc::new(Outbox::with_sync(16, 1, 0));
    ob.set_listening(true);
    c.set_outbox(Some(ob.clone()));
    let snap = nat_snap(&[(RIP1, 8080)]);
    c.process(t(1), &snap, &mut client_seg(40000, SYN), 0);
    let ev = drain(&ob);
    assert_eq!(
        kinds(&ev),
        [(EventKind::Created, false), (EventKind::Packets, false)]
    );
    assert_eq!(ev[1].state, TcpState::SynRecv);
    c.process(t(1), &snap, &mut reply_seg(RIP1, 40000, SYN | ACK), 1);
    for _ in 0..300 {
        c.process(t(1), &snap, &mut client_seg(40000, ACK), 0);
    }
    let ev = drain(&ob);
    assert_eq!(kinds(&ev), [(EventKind::StateChanged, false)]);
}

#[test]
fn a_full_outbox_drops_events_and_forwarding_goes_on() {
    let (mut c, ob) = listened(true);
    let snap = nat_snap(&[(RIP1, 8080)]);
    for p in 0..20 {
        let v = c.process(t(1), &snap, &mut client_seg(41000 + p, SYN), 0);
        assert!(matches!(v, Verdict::Tx(_)));
    }
    assert_eq!((ob.len(), ob.events_dropped()), (8, 12));
}

#[test]
fn templates_are_reported_after_their_connections() {
    let (mut c, ob) = listened(true);
    let mut svc = service(Proto::Tcp, (VIP, 80), &[(RIP1, 8080)], Fwd::Route, "rr");
    svc.persist = Some(Persistence::default());
    let snap = snapshot_with(vec![svc]);
    c.process(t(1), &snap, &mut client_seg(40000, SYN), 0);
    c.process(t(1), &snap, &mut client_seg(40001, SYN), 0);
    let ev = drain(&ob);
    use EventKind::*;
    assert_eq!(
        kinds(&ev),
        [
            (Created, false),
            (TemplateCreated, true),
            (Created, false),
            (TemplateRefreshed, true)
        ]
    );
    let tp = ev[1];
    assert_eq!((tp.proto, tp.caddr, tp.cport), (6, CIP.into(), 0));
    assert_eq!((tp.vaddr, tp.vport), (VIP.into(), 80));
    assert_eq!(
        (tp.daddr, tp.dport, tp.fwd),
        (RIP1.into(), 8080, Fwd::Route)
    );
    assert_eq!((tp.timeout, tp.state), (300, TcpState::None));
    // A state change of a controlled connection brings its template along.
    c.process(t(1), &snap, &mut client_seg(40000, ACK), 0);
    assert_eq!(
        kinds(&drain(&ob)),
        [(StateChanged, false), (StateChanged, true)]
    );
}

#[test]
fn a_learned_connection_binds_to_its_realserver_and_counts_there() {
    let mut c = Core::new(Arc::new(Tables::new(1 << 10)));
    let snap = nat_snap(&[(RIP1, 8080), (RIP2, 8080)]);
    c.insert_conn(
        t(1),
        &snap,
        &spec(40000, RIP2, TcpState::Established, Some(CLIENT_HOP)),
    )
    .unwrap();
    assert_eq!(counts(&snap, RIP2), (1, 0, 0));
    assert_eq!(c.tables().len(), 1);
    let mut f = client_seg(40000, ACK);
    assert_eq!(c.process(t(2), &snap, &mut f, 0), Verdict::Tx(1));
    assert_eq!(tuple::<Ipv4Addr>(&f).2, RIP2);
    let mut r = reply_seg(RIP2, 40000, ACK);
    assert_eq!(c.process(t(2), &snap, &mut r, 1), Verdict::Tx(0));
    assert_eq!(&r[..6], &CLIENT_MAC);
    // The same key again: updated (state, counters), not duplicated.
    c.insert_conn(t(3), &snap, &spec(40000, RIP2, TcpState::FinWait, None))
        .unwrap();
    assert_eq!((c.tables().len(), counts(&snap, RIP2)), (1, (0, 1, 0)));
    // Another realserver, active: moves there.
    c.insert_conn(t(3), &snap, &spec(40000, RIP1, TcpState::Established, None))
        .unwrap();
    assert_eq!(counts(&snap, RIP2), (0, 0, 0));
    assert_eq!(counts(&snap, RIP1), (1, 0, 0));
    let mut f = client_seg(40000, ACK);
    assert_eq!(c.process(t(4), &snap, &mut f, 0), Verdict::Tx(1));
    assert_eq!(tuple::<Ipv4Addr>(&f).2, RIP1);
}

/// Split brain: directors A and B both scheduled the client's connection, to different
/// realservers; each then hears the other's entry. The rule (further along wins, then the
/// lower realserver) leaves both on the same realserver, whichever hears first.
#[test]
fn both_directors_settle_a_conflict_on_the_same_realserver() {
    let peer_a: IpAddr = Ipv4Addr::new(10, 10, 0, 1).into();
    let peer_b: IpAddr = Ipv4Addr::new(10, 10, 0, 3).into();
    let from = |mut s: ConnSpec, p: IpAddr| {
        s.origin = Some(p);
        s
    };
    let snap_a = nat_snap(&[(RIP1, 8080), (RIP2, 8080)]);
    let snap_b = nat_snap(&[(RIP1, 8080), (RIP2, 8080)]);
    let mut a = Core::new(Arc::new(Tables::new(1 << 10)));
    let mut b = Core::new(Arc::new(Tables::new(1 << 10)));
    let est = TcpState::Established;
    // Their own (local) entries: A sent it to RIP2, B to RIP1.
    a.insert_conn(t(1), &snap_a, &spec(40000, RIP2, est, Some(CLIENT_HOP)))
        .unwrap();
    b.insert_conn(t(1), &snap_b, &spec(40000, RIP1, est, Some(CLIENT_HOP)))
        .unwrap();
    // B hears A's: RIP1 < RIP2, B keeps its own, untouched.
    let r = b.insert_conn(t(2), &snap_b, &from(spec(40000, RIP2, est, None), peer_a));
    assert_eq!(r, Ok(Inserted::ConflictKept));
    assert_eq!(
        (counts(&snap_b, RIP1), counts(&snap_b, RIP2)),
        ((1, 0, 0), (0, 0, 0))
    );
    // A hears B's: moves to RIP1.
    let r = a.insert_conn(t(2), &snap_a, &from(spec(40000, RIP1, est, None), peer_b));
    assert_eq!(r, Ok(Inserted::ConflictTaken));
    assert_eq!(
        (counts(&snap_a, RIP1), counts(&snap_a, RIP2)),
        ((1, 0, 0), (0, 0, 0))
    );
    for (core, snap) in [(&mut a, &snap_a), (&mut b, &snap_b)] {
        let mut f = client_seg(40000, ACK);
        assert_eq!(core.process(t(3), snap, &mut f, 0), Verdict::Tx(1));
        assert_eq!(tuple::<Ipv4Addr>(&f).2, RIP1);
    }
    // Further along wins over the lower address: a handshake at RIP1 gives way to an
    // established connection at RIP2, and a closing one to an established one.
    let mut c = Core::new(Arc::new(Tables::new(1 << 10)));
    let snap = nat_snap(&[(RIP1, 8080), (RIP2, 8080)]);
    c.insert_conn(t(1), &snap, &spec(40001, RIP1, TcpState::SynRecv, None))
        .unwrap();
    let r = c.insert_conn(t(2), &snap, &from(spec(40001, RIP2, est, None), peer_b));
    assert_eq!(r, Ok(Inserted::ConflictTaken));
    let r = c.insert_conn(
        t(2),
        &snap,
        &from(spec(40001, RIP1, TcpState::TimeWait, None), peer_a),
    );
    assert_eq!(r, Ok(Inserted::ConflictKept));
    // The peer an entry came from has the last word on it: B, whose entry this now is,
    // moves it back (a port reused for a new connection, say).
    let r = c.insert_conn(
        t(3),
        &snap,
        &from(spec(40001, RIP1, TcpState::TimeWait, None), peer_b),
    );
    assert_eq!(r, Ok(Inserted::Updated));
    assert_eq!(counts(&snap, RIP1), (0, 1, 0));
    // Our own connection, closing here: a peer's ESTABLISHED copy (its resync echoing what
    // we synced) does not reopen it; a closing update does move it on.
    let mut c = Core::new(Arc::new(Tables::new(1 << 10)));
    c.insert_conn(t(1), &snap, &spec(40002, RIP1, TcpState::FinWait, None))
        .unwrap();
    let before = counts(&snap, RIP1);
    let r = c.insert_conn(t(2), &snap, &from(spec(40002, RIP1, est, None), peer_b));
    assert_eq!(r, Ok(Inserted::Updated));
    assert_eq!(counts(&snap, RIP1), before, "still closing");
    let mut e = Vec::new();
    c.tables()
        .v4
        .for_each_with_origin(|c, o| e.push((c.state(), o.is_local())));
    assert_eq!(e, [(TcpState::FinWait, true)], "state, still ours");
}

#[test]
fn a_learned_connection_without_a_client_hop_learns_it_from_the_client() {
    let mut c = Core::new(Arc::new(Tables::new(1 << 10)));
    let snap = nat_snap(&[(RIP1, 8080)]);
    c.insert_conn(t(1), &snap, &spec(40000, RIP1, TcpState::Established, None))
        .unwrap();
    let mut r = reply_seg(RIP1, 40000, ACK);
    assert_eq!(
        c.process(t(2), &snap, &mut r, 1),
        Verdict::Drop(DropReason::NoClientHop)
    );
    assert_eq!(c.stats.drops[DropReason::NoClientHop as usize], 1);
    // The client's frame (from another MAC, on interface 0) teaches it.
    let other_mac = [2, 0, 0, 0, 0, 0x77];
    let mut f = tcp_frame(other_mac, EXT_MAC, (CIP, 40000), (VIP, 80), ACK, 64, b"");
    assert_eq!(c.process(t(2), &snap, &mut f, 0), Verdict::Tx(1));
    let mut r = reply_seg(RIP1, 40000, ACK);
    assert_eq!(c.process(t(2), &snap, &mut r, 1), Verdict::Tx(0));
    assert_eq!(&r[..6], &other_mac);
}

#[test]
fn a_learned_connections_first_reply_goes_by_the_routes_towards_clients() {
    // A takeover: the realserver answers before the client sends anything to this director.
    let mut c = Core::new(Arc::new(Tables::new(1 << 10)));
    let mut snap = nat_snap(&[(RIP1, 8080)]);
    c.insert_conn(t(1), &snap, &spec(40000, RIP1, TcpState::Established, None))
        .unwrap();
    // A route towards the client's /24 whose next hop is not resolved yet: still dropped.
    let gw = Arc::new(DestState::new(IpAddr::from([192, 0, 2, 254]), 0));
    let route = |net: [u8; 4], len: u8, via: &Arc<DestState>| service::ClientRoute {
        net: IpAddr::from(net),
        len,
        via: via.clone(),
    };
    snap.client_routes = vec![route([0, 0, 0, 0], 0, &gw)];
    let mut r = reply_seg(RIP1, 40000, ACK);
    assert_eq!(
        c.process(t(2), &snap, &mut r, 1),
        Verdict::Drop(DropReason::NoClientHop)
    );
    // Resolved (the resolver sets it; no new snapshot): the reply goes out there.
    let gw_mac = [2, 0, 0, 0, 0, 0xfe];
    gw.set_next_hop(Some(NextHop {
        iface: 0,
        mac: gw_mac,
    }));
    let mut r = reply_seg(RIP1, 40000, ACK);
    assert_eq!(c.process(t(2), &snap, &mut r, 1), Verdict::Tx(0));
    assert_eq!(&r[..6], &gw_mac);
    // A longer prefix wins (the client itself, on a link).
    let on_link = Arc::new(DestState::new(IpAddr::from(CIP), 0));
    on_link.set_next_hop(Some(CLIENT_HOP));
    snap.client_routes.push(route(CIP.octets(), 32, &on_link));
    let mut r = reply_seg(RIP1, 40000, ACK);
    assert_eq!(c.process(t(2), &snap, &mut r, 1), Verdict::Tx(0));
    assert_eq!(&r[..6], &CLIENT_MAC);
    // Another family's route never matches.
    assert_eq!(snap.client_hop(IpAddr::from([0u16; 8])), None);
}

#[test]
fn an_unbound_connection_forwards_once_its_realserver_appears() {
    let mut c = Core::new(Arc::new(Tables::new(1 << 10)));
    let before = nat_snap(&[(RIP1, 8080)]);
    c.insert_conn(
        t(1),
        &before,
        &spec(40000, RIP9, TcpState::Established, None),
    )
    .unwrap();
    assert_eq!(c.tables().len(), 1);
    // No realserver, so no next hop.
    assert_eq!(
        c.process(t(2), &before, &mut client_seg(40000, ACK), 0),
        Verdict::Drop(DropReason::NoNeighbour)
    );
    let after = nat_snap(&[(RIP1, 8080), (RIP9, 8080)]);
    assert_eq!(counts(&after, RIP9), (0, 0, 0));
    let mut f = client_seg(40000, ACK);
    assert_eq!(c.process(t(3), &after, &mut f, 0), Verdict::Tx(1));
    assert_eq!(tuple::<Ipv4Addr>(&f).2, RIP9);
    assert_eq!(&f[..6], &rs_mac(1));
    assert_eq!(counts(&after, RIP9), (1, 0, 0));
    // Its replies reach the client it learned.
    let mut r = reply_seg(RIP9, 40000, ACK);
    assert_eq!(c.process(t(3), &after, &mut r, 1), Verdict::Tx(0));
}

#[test]
fn a_learned_connection_lands_on_this_cores_wheel() {
    let mut c = Core::new(Arc::new(Tables::new(1 << 10)));
    let snap = nat_snap(&[(RIP1, 8080)]);
    assert_eq!(c.poll_timeout(), None);
    let mut s = spec(40000, RIP1, TcpState::Established, None);
    s.timeout = Duration::from_secs(30);
    c.insert_conn(t(100), &snap, &s).unwrap();
    assert_eq!(c.watched(), 1);
    assert_eq!(c.poll_timeout(), Some(t(130)));
    assert_eq!(c.expire(t(129)), 0);
    assert_eq!(c.expire(t(130)), 1);
    assert_eq!(counts(&snap, RIP1), (0, 0, 0));
    assert!(c.tables().is_empty());
    // Mixed families are refused.
    s.daddr = "2001:db8::1".parse().unwrap();
    assert_eq!(c.insert_conn(t(200), &snap, &s), Err(InjectError::Family));
}

#[test]
fn poll_timeout_is_the_earliest_deadline_of_every_wheel() {
    let mut c = Core::new(Arc::new(Tables::new(1 << 10)));
    let snap = nat_snap(&[(RIP1, 8080)]);
    // A SYN: SYN_RECV, 60 s.
    c.process(t(10), &snap, &mut client_seg(40000, SYN), 0);
    assert_eq!(c.poll_timeout(), Some(t(70)));
    let mut s = spec(40001, RIP1, TcpState::Close, None);
    s.timeout = Duration::from_secs(10);
    c.insert_conn(t(10), &snap, &s).unwrap();
    assert_eq!(c.poll_timeout(), Some(t(20)));
    assert_eq!(c.expire(t(20)), 1);
    assert_eq!(c.poll_timeout(), Some(t(70)));
}

#[test]
fn learned_templates_keep_clients_on_their_realserver_and_bind_late() {
    let (mut c, ob) = listened(true);
    let mk = |rips: &[(Ipv4Addr, u16)]| {
        let mut svc = service(Proto::Tcp, (VIP, 80), rips, Fwd::Masq, "rr");
        svc.persist = Some(Persistence::default());
        snapshot_with(vec![svc])
    };
    let key = TemplateKey {
        proto: 6,
        caddr: IpAddr::from(CIP),
        vaddr: IpAddr::from(VIP),
        vport: 80,
    };
    let tspec = |d: Ipv4Addr| {
        Spec::Template(TemplateSpec {
            key,
            daddr: d.into(),
            dport: 8080,
            fwd: Fwd::Masq,
            timeout: Duration::from_secs(300),
            origin: None,
        })
    };
    // Bound: RIP2 although round-robin would pick RIP1 first.
    let snap = mk(&[(RIP1, 8080), (RIP2, 8080)]);
    c.insert(t(1), &snap, &tspec(RIP2)).unwrap();
    assert_eq!(counts(&snap, RIP2), (0, 0, 1));
    assert_eq!(c.tables().templates(), 1);
    let mut f = client_seg(40000, SYN);
    assert_eq!(c.process(t(2), &snap, &mut f, 0), Verdict::Tx(1));
    assert_eq!(tuple::<Ipv4Addr>(&f).2, RIP2);
    let tp = c.tables().v4.template(&TemplateKey {
        proto: 6,
        caddr: CIP,
        vaddr: VIP,
        vport: 80,
    });
    assert_eq!(tp.unwrap().dest_addr(), (RIP2.into(), 8080));
    assert_eq!(
        kinds(&drain(&ob)),
        [
            (EventKind::Created, false),
            (EventKind::TemplateRefreshed, true)
        ]
    );
    // Unbound (RIP9 not configured), then the realserver appears: the next connection goes
    // there and binds the template.
    let (mut c, _) = listened(false);
    c.insert(t(1), &snap, &tspec(RIP9)).unwrap();
    let after = mk(&[(RIP1, 8080), (RIP9, 8080)]);
    let mut f = client_seg(40000, SYN);
    assert_eq!(c.process(t(2), &after, &mut f, 0), Verdict::Tx(1));
    assert_eq!(tuple::<Ipv4Addr>(&f).2, RIP9);
    assert_eq!(counts(&after, RIP9), (1, 0, 1));
    // The template is on this core's wheel: it goes 300 s after its last use.
    assert_eq!(c.tables().templates(), 1);
    c.expire(t(2 + 60));
    c.expire(t(2 + 60 + 300));
    assert_eq!(c.tables().templates(), 0);
}

#[test]
fn a_learned_connection_links_its_template() {
    let mut c = Core::new(Arc::new(Tables::new(1 << 10)));
    let snap = nat_snap(&[(RIP1, 8080)]);
    let key = TemplateKey {
        proto: 6,
        caddr: IpAddr::from(CIP),
        vaddr: IpAddr::from(VIP),
        vport: 80,
    };
    let ts = TemplateSpec {
        key,
        daddr: RIP1.into(),
        dport: 8080,
        fwd: Fwd::Masq,
        timeout: Duration::from_secs(10),
        origin: None,
    };
    c.insert_template(t(1), &snap, &ts).unwrap();
    let mut s = spec(40000, RIP1, TcpState::Established, None);
    s.template = Some(key);
    c.insert_conn(t(1), &snap, &s).unwrap();
    // Held by its connection: the template outlives its own timeout.
    c.expire(t(20));
    assert_eq!(c.tables().templates(), 1);
    assert_eq!(c.expire(t(1 + 900)), 1);
    c.expire(t(1 + 900 + 10));
    assert_eq!(c.tables().templates(), 0);
}

#[test]
fn drop_reasons_are_consistent() {
    assert_eq!(DropReason::ALL.len(), DropReason::COUNT);
    for (i, r) in DropReason::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i);
    }
    assert_eq!(DropReason::NoClientHop.name(), "no_client_hop");
    let _ = VsKey {
        proto: Proto::Udp,
        addr: VIP.into(),
        port: 53,
    };
}

#[test]
fn expire_nodest_conn_expires_a_connection_whose_realserver_left_the_table() {
    for expire in [false, true] {
        let (mut c, ob) = listened(true);
        let snap = nat_snap(&[(RIP1, 8080), (RIP2, 8080)]);
        for flags in [SYN, ACK] {
            c.process(t(1), &snap, &mut client_seg(40000, flags), 0);
        }
        let d1 = snap.services.values().next().unwrap().dests[0]
            .state
            .clone();
        assert!(d1.is(RIP1.into(), 8080), "rr's first pick");
        drain(&ob);
        // RIP1 leaves the table (health check failed): the control thread marks its
        // connections.
        let mut next = nat_snap(&[(RIP2, 8080)]);
        next.expire_nodest_conn = expire;
        let marked = c.tables().unbind_gone(|d| std::ptr::eq(d, &*d1));
        assert_eq!(marked, 1);
        let v = c.process(t(2), &next, &mut client_seg(40000, ACK), 0);
        if expire {
            assert_eq!(
                v,
                Verdict::Drop(DropReason::NoDest),
                "a packet of the gone conn"
            );
            assert_eq!(
                d1.active.load(Ordering::Relaxed),
                0,
                "no longer counted there"
            );
            // Its realserver's replies neither go through nor keep it alive (a download
            // the realserver keeps sending must not outlive the expiry).
            for _ in 0..3 {
                let v = c.process(t(2), &next, &mut reply_seg(RIP1, 40000, ACK), 1);
                assert!(
                    matches!(v, Verdict::Drop(_)),
                    "a reply of the gone conn: {v:?}"
                );
            }
            // Expired at the next tick of the wheel.
            c.expire_some(t(3));
            assert_eq!(c.tables().len(), 0);
            assert_eq!(
                kinds(&drain(&ob)).last(),
                Some(&(EventKind::Expired, false))
            );
            // The client's next connection goes to a realserver that is there.
            let mut f = client_seg(40001, SYN);
            assert!(matches!(c.process(t(3), &next, &mut f, 0), Verdict::Tx(_)));
            let (_, _, daddr, dport, _) = tuple::<Ipv4Addr>(&f);
            assert_eq!((daddr, dport), (RIP2, 8080));
        } else {
            // IPVS's default: the connection carries on to its realserver.
            let mut f = client_seg(40000, ACK);
            assert!(matches!(c.process(t(3), &next, &mut f, 0), Verdict::Tx(_)));
            let (_, _, daddr, dport, _) = tuple::<Ipv4Addr>(&f);
            assert_eq!((daddr, dport), (RIP1, 8080));
            assert_eq!(c.tables().len(), 1);
        }
    }
}

#[test]
fn a_fwmark_services_connections_carry_its_mark() {
    // IPVS sends `cp->fwmark`: a backup finds the fwmark service by it.
    let (mut c, ob) = listened(true);
    let snap = super::tests::fwmark_snap();
    let mut f = client_seg(40000, SYN);
    c.process(t(1), &snap, &mut f, 0);
    c.process(t(1), &snap, &mut client_seg(40000, ACK), 0);
    for _ in 0..3 {
        c.process(t(1), &snap, &mut client_seg(40000, ACK), 0);
    }
    let ev = drain(&ob);
    assert!(
        ev.iter()
            .any(|e| e.kind == EventKind::Packets && !e.template)
    );
    for e in &ev {
        if e.template {
            assert_eq!(
                (e.proto, e.fwmark),
                (0, 0),
                "the template's mark is its vaddr"
            );
        } else {
            assert_eq!(e.fwmark, 7, "{e:?}");
        }
    }
}
