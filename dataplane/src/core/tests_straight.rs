//! The straight line ([`super::straight`]) against the general path: the same frames through
//! two cores, one with the straight line turned off, give the same verdicts, bytes,
//! counters, connections, realserver counts, events and offload requests.

use std::sync::Arc;

use proptest::prelude::*;
use xlvs_common::FlowKey;

use super::conn::Tables;
use super::events::Outbox;
use super::inject::ConnSpec;
use super::offload::OffloadSeen;
use super::service::{ClientRoute, DestState, Fwd, NextHop, Proto, Snapshot, VsKey};
use super::tests::{CIP, RIP1, RIP2, VIP, t};
use super::*;
use crate::testing::*;
use crate::wire::tcp::{ACK, FIN, RST, SYN};

/// The program's view: nothing forwarded, nothing handed.
struct NoneSeen;

impl OffloadSeen for NoneSeen {
    fn last_seen(&mut self, _: &FlowKey) -> Option<Instant> {
        None
    }
    fn handed(&mut self, _: &FlowKey) -> Option<u32> {
        None
    }
}

struct Side {
    core: Core,
    snap: Snapshot,
    proto: Proto,
    route: bool,
    outbox: Arc<Outbox>,
}

/// A realserver no snapshot has.
const RIP3: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 10, 0, 13);

fn side(
    proto: Proto,
    fwd: Fwd,
    (listen, offload, route): (bool, bool, bool),
    general_only: bool,
) -> Side {
    let mut core = Core::new(Arc::new(Tables::new(1 << 10)));
    core.general_only = general_only;
    // Threshold 2, period 3: the sync rule's reports come often.
    let outbox = Arc::new(Outbox::with_sync(1 << 12, 2, 3));
    outbox.set_listening(listen);
    core.set_outbox(Some(outbox.clone()));
    core.refresh_listening();
    if offload {
        core.set_offload(Some(Box::new(NoneSeen)));
    }
    let snap = short(
        snapshot(proto, (VIP, 80), &[(RIP1, 8080), (RIP2, 8080)], fwd, "rr"),
        route,
    );
    Side {
        core,
        snap,
        proto,
        route,
        outbox,
    }
}

/// Short timeouts, shorter for the closing states: connections expire between frames (their
/// tuples come back new), and a FIN or RST moves a deadline earlier (a new wheel entry).
fn short(mut snap: Snapshot, route: bool) -> Snapshot {
    snap.timeouts.tcp = [4; TcpState::COUNT];
    snap.timeouts.tcp[TcpState::Established as usize] = 6;
    snap.timeouts.tcp[TcpState::Close as usize] = 1;
    snap.timeouts.tcp[TcpState::TimeWait as usize] = 2;
    snap.timeouts.udp = 3;
    // With `route`, replies of connections that do not know their client's hop go by a
    // default route (else they are dropped).
    if route {
        let gw = Arc::new(DestState::new(
            std::net::Ipv4Addr::new(198, 51, 100, 1).into(),
            0,
        ));
        gw.set_next_hop(Some(NextHop {
            iface: 0,
            mac: [2, 0, 0, 0, 0, 0xfe],
        }));
        snap.client_routes = vec![ClientRoute {
            net: std::net::Ipv4Addr::UNSPECIFIED.into(),
            len: 0,
            via: gw,
        }];
    }
    snap
}

fn key(proto: Proto) -> VsKey {
    VsKey {
        proto,
        addr: VIP.into(),
        port: 80,
    }
}

/// Everything either core knows that a frame may change.
fn state(s: &mut Side) -> String {
    let mut conns = Vec::new();
    s.core.tables().v4.for_each(|c| {
        conns.push(format!(
            "{}:{} {:?} dl={} in={} off={} inactive={} fwd={:?} noout={}",
            c.caddr,
            c.cport,
            c.state(),
            c.deadline(),
            c.in_pkts,
            c.offload(),
            c.inactive(),
            c.fwd(),
            c.no_output()
        ))
    });
    conns.sort();
    let dests: Vec<_> = s
        .snap
        .service(&key(s.proto))
        .into_iter()
        .flat_map(|svc| svc.dests.iter())
        .map(|d| format!("{:?} {:?}", d.state.stats.totals(), d.state.conns()))
        .collect();
    let events: Vec<_> = std::iter::from_fn(|| s.outbox.pop())
        .map(|e| format!("{e:?}"))
        .collect();
    let request = s.core.take_offload_request();
    format!(
        "{:?}\nconns {conns:?}\ndests {dests:?}\nevents {events:?}\nrequest {request:?}\n\
         wheel {} {:?}",
        s.core.stats,
        s.core.watched(),
        s.core.poll_timeout()
    )
}

proptest! {
    /// Frames of a few connections, in any order and with any flags, TTL 1 among them, the
    /// realserver's MAC now and then unknown, connections expiring between frames, some
    /// learned from a peer, the first realserver leaving, a route towards clients or none,
    /// with
    /// and without someone listening for events and the XDP fast path: the straight line
    /// does to each what the general path does.
    #[test]
    fn the_straight_line_agrees_with_the_general_path(
        udp in any::<bool>(), dr in any::<bool>(),
        opts in (any::<bool>(), any::<bool>(), any::<bool>()),
        steps in proptest::collection::vec(
            (0u16..4, any::<bool>(), 0u8..64, 0u8..8, 0u64..3, any::<bool>(), 0u8..24),
            1..80,
        ),
    ) {
        let proto = if udp { Proto::Udp } else { Proto::Tcp };
        let fwd = if dr { Fwd::Route } else { Fwd::Masq };
        let mut a = side(proto, fwd, opts, false);
        let mut b = side(proto, fwd, opts, true);
        let mut now = 1;
        for (i, (flow, reply, bits, ttl, wait, zero_ck, hop)) in steps.into_iter().enumerate() {
            now += wait;
            let cport = 40_000 + flow;
            // Now and then the first realserver's MAC is forgotten (a neighbour entry gone),
            // then learned again; a connection is learned from a peer (without its client's
            // hop, to a realserver of the snapshot or not); the first realserver leaves the
            // table, with `expire_nodest_conn`.
            if hop < 2 {
                let learned = (hop == 1).then_some(NextHop {
                    iface: 1,
                    mac: rs_mac(0),
                });
                for s in [&a, &b] {
                    let svc = s.snap.service(&key(s.proto)).expect("the service");
                    svc.dests[0].state.set_next_hop(learned);
                }
            } else if hop < 4 {
                let spec = ConnSpec {
                    proto,
                    caddr: CIP.into(),
                    cport,
                    vaddr: VIP.into(),
                    vport: 80,
                    daddr: if hop == 2 { RIP1 } else { RIP3 }.into(),
                    dport: 8080,
                    fwd,
                    state: TcpState::Established,
                    timeout: std::time::Duration::from_secs(5),
                    client_hop: None,
                    template: None,
                    origin: None,
                };
                for s in [&mut a, &mut b] {
                    let r = s.core.insert_conn(t(now), &s.snap, &spec).map(|_| ());
                    prop_assert!(r.is_ok(), "step {}: {:?}", i, r);
                }
            } else if hop == 4 {
                for s in [&mut a, &mut b] {
                    let gone = s.snap.service(&key(proto)).expect("the service").dests[0]
                        .state
                        .clone();
                    if gone.is(RIP1.into(), 8080) {
                        let mut next = short(snapshot(proto, (VIP, 80), &[(RIP2, 8080)], fwd, "rr"), s.route);
                        next.expire_nodest_conn = true;
                        s.snap = next;
                        s.core.tables().unbind_gone(|d| std::ptr::eq(d, &*gone));
                    }
                }
            }
            // FIN, SYN, RST, PSH and ACK are the low five bits of TCP's flags.
            let flags = bits & (FIN | SYN | RST | 0x08 | ACK);
            let ttl = if ttl == 0 { 1 } else { 64 };
            // A reply from either realserver: the connection's, or not.
            let (src, dst, macs) = if reply {
                let rip = if bits & 0x20 == 0 { RIP1 } else { RIP2 };
                ((rip, 8080), (CIP, cport), (rs_mac(0), INT_MAC))
            } else {
                ((CIP, cport), (VIP, 80), (CLIENT_MAC, EXT_MAC))
            };
            let mut f = if udp {
                let mut f = udp_frame(macs.0, macs.1, src, dst, b"datagram");
                if zero_ck {
                    f[40..42].copy_from_slice(&[0, 0]);
                }
                f
            } else {
                tcp_frame(macs.0, macs.1, src, dst, flags, 64, b"segment")
            };
            f[22] = ttl;
            let ck = crate::wire::checksum::compute(&{
                let mut h = f[14..34].to_vec();
                h[10..12].copy_from_slice(&[0, 0]);
                h
            });
            f[24..26].copy_from_slice(&ck.to_be_bytes());
            let iface = reply as IfaceId;
            let mut g = f.clone();
            let va = a.core.process(t(now), &a.snap, &mut f, iface);
            let vb = b.core.process(t(now), &b.snap, &mut g, iface);
            prop_assert_eq!(va, vb, "step {}", i);
            prop_assert_eq!(&f, &g, "step {}", i);
            a.core.expire(t(now));
            b.core.expire(t(now));
            prop_assert_eq!(state(&mut a), state(&mut b), "step {}", i);
        }
    }
}

/// The straight line takes the frames of established connections (the comparison above
/// would pass with it never used), and leaves a tuple no connection has to the general path.
#[test]
fn the_straight_line_takes_established_frames() {
    let Side { mut core, snap, .. } = side(Proto::Tcp, Fwd::Masq, (false, false, false), false);
    let mut syn = tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 5000), (VIP, 80), SYN, 64, b"");
    assert!(matches!(
        core.process(t(1), &snap, &mut syn, 0),
        Verdict::Tx(_)
    ));
    for (reply, flags) in [
        (true, SYN | ACK),
        (false, ACK),
        (true, ACK),
        (false, FIN | ACK),
    ] {
        let mut f = if reply {
            tcp_frame(
                rs_mac(0),
                INT_MAC,
                (RIP1, 8080),
                (CIP, 5000),
                flags,
                64,
                b"",
            )
        } else {
            tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 5000), (VIP, 80), flags, 64, b"")
        };
        let p = family::parse_common_v4(&f).expect("a common frame");
        let done = core.established(t(1), &snap, &mut f, &p, reply as IfaceId);
        assert!(matches!(done, straight::Straight::Done(Ok(_))));
        assert!(checksums_ok(&f));
    }
    let mut stray = tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 5001), (VIP, 80), ACK, 64, b"");
    let p = family::parse_common_v4(&stray).expect("a common frame");
    let missed = core.established(t(1), &snap, &mut stray, &p, 0);
    assert!(matches!(missed, straight::Straight::Missed));
}
