//! Realservers' L2 next hops, resolved without ever waiting: the kernel's route and neighbour
//! tables are read when rtnetlink says they changed (or when a retry is due), a next hop the
//! kernel does not know yet is probed (the kernel then ARPs or solicits for it) and probed
//! again on a backoff timer, and every resolved one is probed every
//! [`REFRESH`] so the kernel keeps its entry fresh although forwarded traffic bypasses it.
//! The kernel is behind the [`System`] trait, so tests drive the resolver with a fake one and
//! an injected clock.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xlvs_dataplane::core::service::{DestState, NextHop};

use crate::neigh::{self, Neighbours, Routes};

/// First retry of an unanswered probe; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(20);
/// Longest wait between two probes of an unresolved next hop.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long a new next hop may take to resolve before a change that added it is reported
/// done (an admin command's answer and the daemon's "ready" wait for it, nothing else does).
pub const SETTLE: Duration = Duration::from_secs(1);
/// Every resolved next hop is probed this often.
pub const REFRESH: Duration = Duration::from_secs(10);

/// The kernel as the control thread reads it: routes, neighbours, the director's addresses,
/// and a way to make it resolve a neighbour.
pub trait System {
    /// The routes of both families.
    fn routes(&self) -> Routes;
    /// The neighbours with a usable MAC.
    fn neighbours(&self) -> Neighbours;
    /// Makes the kernel resolve `ip` on `dev`.
    fn probe(&self, ip: IpAddr, dev: &str);
    /// The director's own addresses.
    fn local_addrs(&self) -> Vec<IpAddr>;
}

/// The running kernel.
pub struct Kernel;

impl System for Kernel {
    fn routes(&self) -> Routes {
        neigh::routes()
    }

    fn neighbours(&self) -> Neighbours {
        neigh::neighbours()
    }

    fn probe(&self, ip: IpAddr, dev: &str) {
        neigh::probe(ip, dev)
    }

    fn local_addrs(&self) -> Vec<IpAddr> {
        crate::sys::local_addrs()
    }
}

/// An unresolved next hop's probes.
#[derive(Clone, Copy, Debug)]
struct Retry {
    /// When it was first found missing.
    since: Instant,
    /// When to probe it again.
    at: Instant,
    backoff: Duration,
}

/// The next-hop resolver of the control thread.
#[derive(Debug, Default)]
pub struct Resolver {
    routes: Routes,
    neighbours: Neighbours,
    /// The kernel tables must be read again before they are used.
    stale: bool,
    /// Realserver addresses without a next hop.
    retries: HashMap<IpAddr, Retry>,
    /// When every resolved next hop is probed next.
    next_refresh: Option<Instant>,
    /// Realservers whose next hop changed (another MAC or interface) since
    /// [`Resolver::take_moved`].
    moved: Vec<Arc<DestState>>,
}

impl Resolver {
    /// A resolver that reads the kernel tables on its first update.
    pub fn new() -> Self {
        Resolver {
            stale: true,
            ..Default::default()
        }
    }

    /// The realservers whose next hop changed since the last call (the XDP fast path's
    /// entries for their connections hold the old one).
    pub fn take_moved(&mut self) -> Vec<Arc<DestState>> {
        std::mem::take(&mut self.moved)
    }

    /// The kernel's routes or neighbours changed (an rtnetlink event).
    pub fn invalidate(&mut self) {
        self.stale = true;
    }

    /// Brings every realserver's next hop up to date: `ifaces` are the driven interfaces (a
    /// next hop through another one cannot be used), `dests` every realserver state still
    /// referenced. Probes what is missing and due, never waits.
    pub fn update<'d>(
        &mut self,
        now: Instant,
        sys: &dyn System,
        ifaces: &[String],
        dests: impl Iterator<Item = (IpAddr, &'d Arc<DestState>)>,
    ) {
        if self.retries.values().any(|r| now >= r.at) {
            self.stale = true;
        }
        if std::mem::take(&mut self.stale) {
            self.routes = sys.routes();
            self.neighbours = sys.neighbours();
        }
        let refresh = self.next_refresh.is_none_or(|t| now >= t);
        if refresh {
            self.next_refresh = Some(now + REFRESH);
        }
        let mut seen = HashSet::new();
        for (addr, state) in dests {
            seen.insert(addr);
            let hop = self.next_hop(ifaces, addr);
            // A next hop that disappears keeps its last value until a new one is known:
            // the kernel drops a stale entry before it has the new MAC.
            if hop.is_some() || state.next_hop().is_none() {
                if state.next_hop().is_some() && state.next_hop() != hop {
                    self.moved.push(state.clone());
                }
                state.set_next_hop(hop);
            }
            let probe = match hop {
                Some(_) => {
                    self.retries.remove(&addr);
                    refresh
                }
                None => {
                    let r = self.retries.entry(addr).or_insert(Retry {
                        since: now,
                        at: now,
                        backoff: FIRST_BACKOFF,
                    });
                    let due = now >= r.at;
                    if due {
                        r.at = now + r.backoff;
                        r.backoff = (r.backoff * 2).min(MAX_BACKOFF);
                    }
                    due
                }
            };
            if probe && let Some(r) = neigh::lookup(&self.routes, addr) {
                sys.probe(r.via, &r.dev);
            }
        }
        // Realservers that are gone need no more probes.
        self.retries.retain(|a, _| seen.contains(a));
    }

    /// The routes last read.
    pub fn routes(&self) -> &crate::neigh::Routes {
        &self.routes
    }

    /// The next hop towards `addr` from the tables last read: the route's device must be one
    /// of `ifaces` and its next hop's MAC known.
    pub fn next_hop(&self, ifaces: &[String], addr: IpAddr) -> Option<NextHop> {
        let r = neigh::lookup(&self.routes, addr)?;
        let iface = ifaces.iter().position(|f| *f == r.dev)?;
        let mac = self.neighbours.get(&(r.via, r.dev))?;
        Some(NextHop {
            iface: iface as u8,
            mac: *mac,
        })
    }

    /// When [`Resolver::update`] has something to do next: a probe to retry or the refresh.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retries
            .values()
            .map(|r| r.at)
            .chain(self.next_refresh)
            .min()
    }

    /// Realservers without a next hop.
    pub fn unresolved(&self) -> usize {
        self.retries.len()
    }

    /// Until when a change that added realservers waits for their next hops: the end of the
    /// [`SETTLE`] time of the newest unresolved one, if that is still to come.
    pub fn settling(&self, now: Instant) -> Option<Instant> {
        self.retries
            .values()
            .map(|r| r.since + SETTLE)
            .filter(|t| *t > now)
            .max()
    }
}

/// The routes towards clients that the workers use for a reply whose connection (learned
/// from a peer) does not know its client's hop ([`Snapshot::client_routes`]): for each route
/// of a driven interface through a gateway in `vias`, the route's prefix; for each address of
/// `vias` on a link of a driven interface, that address alone. Each carries the via's state,
/// which the resolver keeps resolved.
///
/// [`Snapshot::client_routes`]: xlvs_dataplane::core::service::Snapshot::client_routes
pub fn client_routes(
    routes: &crate::neigh::Routes,
    ifaces: &[String],
    vias: &HashMap<IpAddr, Arc<DestState>>,
) -> Vec<xlvs_dataplane::core::service::ClientRoute> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use xlvs_dataplane::core::service::ClientRoute;
    let mut out = Vec::new();
    let driven = |dev: &str| ifaces.iter().any(|f| f == dev);
    for (dev, dst, mask, gw, _, has_gw) in &routes.v4 {
        if !driven(dev) {
            continue;
        }
        let len = mask.count_ones() as u8;
        if *has_gw {
            if let Some(v) = vias.get(&IpAddr::V4(Ipv4Addr::from_bits(*gw))) {
                let net = IpAddr::V4(Ipv4Addr::from_bits(*dst));
                out.push(ClientRoute {
                    net,
                    len,
                    via: v.clone(),
                });
            }
        } else {
            for (a, v) in vias {
                if let IpAddr::V4(a4) = a
                    && a4.to_bits() & mask == dst & mask
                {
                    out.push(ClientRoute {
                        net: *a,
                        len: 32,
                        via: v.clone(),
                    });
                }
            }
        }
    }
    for r in &routes.v6 {
        if !driven(&r.dev) {
            continue;
        }
        let m = u128::MAX.checked_shl(128 - r.len).unwrap_or(0);
        if r.gateway {
            if let Some(v) = vias.get(&IpAddr::V6(Ipv6Addr::from_bits(r.via))) {
                let net = IpAddr::V6(Ipv6Addr::from_bits(r.dst));
                out.push(ClientRoute {
                    net,
                    len: r.len as u8,
                    via: v.clone(),
                });
            }
        } else {
            for (a, v) in vias {
                if let IpAddr::V6(a6) = a
                    && a6.to_bits() & m == r.dst & m
                {
                    out.push(ClientRoute {
                        net: *a,
                        len: 128,
                        via: v.clone(),
                    });
                }
            }
        }
    }
    out.sort_by_key(|r| (std::cmp::Reverse(r.len), r.net));
    out.dedup_by(|a, b| a.net == b.net && a.len == b.len);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A kernel whose tables the test writes, recording probes.
    #[derive(Default)]
    pub struct FakeKernel {
        pub routes: RefCell<Routes>,
        pub neighbours: RefCell<Neighbours>,
        pub probes: RefCell<Vec<IpAddr>>,
        pub reads: RefCell<usize>,
        pub local: Vec<IpAddr>,
    }

    impl FakeKernel {
        /// `10.10.0.0/24` on int0, `192.0.2.0/24` on ext0, default via 192.0.2.1.
        pub fn lab() -> Self {
            let k = FakeKernel::default();
            *k.routes.borrow_mut() = Routes {
                v4: neigh::parse_routes(
                    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
ext0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
ext0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
int0\t00000A0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
",
                ),
                v6: Vec::new(),
            };
            k
        }

        pub fn learn(&self, ip: &str, dev: &str, last: u8) {
            self.neighbours
                .borrow_mut()
                .insert((ip.parse().unwrap(), dev.into()), [2, 0, 0, 0, 0, last]);
        }
    }

    impl System for FakeKernel {
        fn routes(&self) -> Routes {
            *self.reads.borrow_mut() += 1;
            self.routes.borrow().clone()
        }
        fn neighbours(&self) -> Neighbours {
            self.neighbours.borrow().clone()
        }
        fn probe(&self, ip: IpAddr, _dev: &str) {
            self.probes.borrow_mut().push(ip);
        }
        fn local_addrs(&self) -> Vec<IpAddr> {
            self.local.clone()
        }
    }

    fn ifaces() -> Vec<String> {
        vec!["ext0".into(), "int0".into()]
    }

    #[test]
    fn a_silent_neighbour_costs_a_retry_timer_and_resolves_on_the_kernels_word() {
        let k = FakeKernel::lab();
        let mut r = Resolver::new();
        let t0 = Instant::now();
        let rip: IpAddr = "10.10.0.11".parse().unwrap();
        let d = Arc::new(DestState::new(rip, 80));
        let one = || std::iter::once((rip, &d));
        r.update(t0, &k, &ifaces(), one());
        assert_eq!(*k.probes.borrow(), [rip], "probed at once");
        assert_eq!(r.unresolved(), 1);
        assert_eq!(r.poll_timeout(), Some(t0 + FIRST_BACKOFF));
        assert_eq!(r.settling(t0), Some(t0 + SETTLE));
        // Not due: no probe, no table read.
        let reads = *k.reads.borrow();
        r.update(t0 + Duration::from_millis(5), &k, &ifaces(), one());
        assert_eq!((k.probes.borrow().len(), *k.reads.borrow()), (1, reads));
        // Due: probed again, backoff doubled.
        r.update(t0 + FIRST_BACKOFF, &k, &ifaces(), one());
        assert_eq!(k.probes.borrow().len(), 2);
        assert_eq!(r.poll_timeout(), Some(t0 + FIRST_BACKOFF * 3));
        // The kernel learned it and said so: resolved without waiting for the timer.
        k.learn("10.10.0.11", "int0", 0x11);
        r.invalidate();
        r.update(t0 + Duration::from_millis(30), &k, &ifaces(), one());
        assert_eq!(
            d.next_hop(),
            Some(NextHop {
                iface: 1,
                mac: [2, 0, 0, 0, 0, 0x11]
            })
        );
        assert_eq!(r.unresolved(), 0);
        assert_eq!(r.settling(t0 + Duration::from_millis(30)), None);
        assert_eq!(
            r.poll_timeout(),
            Some(t0 + REFRESH),
            "only the refresh is left"
        );
    }

    #[test]
    fn backoff_is_capped_settling_ends_and_gone_realservers_are_forgotten() {
        let k = FakeKernel::lab();
        let mut r = Resolver::new();
        let t0 = Instant::now();
        let rip: IpAddr = "10.10.0.99".parse().unwrap();
        let d = Arc::new(DestState::new(rip, 80));
        let mut t = t0;
        for _ in 0..12 {
            r.update(t, &k, &ifaces(), std::iter::once((rip, &d)));
            t = r.poll_timeout().unwrap();
        }
        let at = r.poll_timeout().unwrap();
        r.update(at, &k, &ifaces(), std::iter::once((rip, &d)));
        assert_eq!(r.poll_timeout().unwrap() - at, MAX_BACKOFF);
        assert_eq!(
            r.settling(t0 + SETTLE),
            None,
            "a dead realserver holds nothing"
        );
        r.update(at, &k, &ifaces(), std::iter::empty());
        assert_eq!(r.unresolved(), 0);
    }

    #[test]
    fn routes_through_other_interfaces_and_gateways() {
        let k = FakeKernel::lab();
        k.learn("192.0.2.1", "ext0", 1);
        let mut r = Resolver::new();
        let far: IpAddr = "198.51.100.7".parse().unwrap();
        let d = Arc::new(DestState::new(far, 80));
        r.update(Instant::now(), &k, &ifaces(), std::iter::once((far, &d)));
        assert_eq!(
            d.next_hop(),
            Some(NextHop {
                iface: 0,
                mac: [2, 0, 0, 0, 0, 1]
            }),
            "through the default gateway"
        );
        // A route through an interface xlvs does not drive gives no next hop.
        assert_eq!(
            r.next_hop(&["ext0".into()], "10.10.0.11".parse().unwrap()),
            None
        );
    }

    #[test]
    fn client_routes_cover_gateway_prefixes_and_on_link_clients_of_driven_interfaces() {
        use crate::neigh::{Route6, Routes};
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let v4 = |a: &str| u32::from(a.parse::<std::net::Ipv4Addr>().unwrap());
        let routes = Routes {
            v4: vec![
                ("ext0".into(), 0, 0, v4("192.0.2.254"), 0, true),
                (
                    "ext0".into(),
                    v4("192.0.2.0"),
                    v4("255.255.255.0"),
                    0,
                    0,
                    false,
                ),
                (
                    "mgmt0".into(),
                    v4("198.51.100.0"),
                    v4("255.255.255.0"),
                    0,
                    0,
                    false,
                ),
            ],
            v6: vec![Route6 {
                dev: "ext0".into(),
                dst: 0,
                len: 0,
                via: u128::from("fe80::1".parse::<std::net::Ipv6Addr>().unwrap()),
                metric: 1024,
                gateway: true,
            }],
        };
        let ifaces = vec!["ext0".to_string()];
        let mut vias = HashMap::new();
        for a in ["192.0.2.254", "192.0.2.7", "198.51.100.9", "fe80::1"] {
            vias.insert(ip(a), Arc::new(DestState::new(ip(a), 0)));
        }
        let got: Vec<(IpAddr, u8, IpAddr)> = client_routes(&routes, &ifaces, &vias)
            .iter()
            .map(|r| (r.net, r.len, r.via.addr))
            .collect();
        assert_eq!(
            got,
            [
                // Longest first: the on-link clients (the gateway is one too), then the
                // default routes through the gateways; nothing on an interface not driven.
                (ip("192.0.2.7"), 32, ip("192.0.2.7")),
                (ip("192.0.2.254"), 32, ip("192.0.2.254")),
                (ip("0.0.0.0"), 0, ip("192.0.2.254")),
                (ip("::"), 0, ip("fe80::1")),
            ]
        );
    }
}
