//! L2 next hops from the kernel: the director's kernel owns ARP and NDP for its own addresses
//! and keeps the neighbour tables; xlvs reads them.
//!
//! For each realserver: a route lookup (longest prefix, lowest metric) in the kernel's routes
//! (`/proc/net/route`, `/proc/net/ipv6_route`) gives the egress interface and the next hop
//! (the RIP itself when on-link); the neighbour table gives its MAC (`/proc/net/arp` for IPv4;
//! IPv6 neighbours are not in /proc, so an rtnetlink `RTM_GETNEIGH` dump). A missing entry is
//! resolved by sending one UDP datagram to the next hop's discard port from the director's
//! kernel, which makes the kernel ARP (or solicit) for it; the control thread re-reads the
//! tables every second, so MAC changes are followed, and re-probes every realserver
//! periodically so the kernel refreshes its entries even though the forwarded traffic
//! bypasses it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};

/// A route: egress device and next-hop address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub dev: String,
    pub via: IpAddr,
}

/// The kernel's routes of both families.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    pub v4: Vec<(String, u32, u32, u32, u32, bool)>,
    pub v6: Vec<Route6>,
}

/// An IPv6 route: (device, destination, prefix length, next hop, metric, has a gateway).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route6 {
    pub dev: String,
    pub dst: u128,
    pub len: u32,
    pub via: u128,
    pub metric: u32,
    pub gateway: bool,
}

/// Neighbours of both families: (address, device) → MAC.
pub type Neighbours = HashMap<(IpAddr, String), [u8; 6]>;

/// Parses `/proc/net/route` text.
pub fn parse_routes(text: &str) -> Vec<(String, u32, u32, u32, u32, bool)> {
    // (dev, dest, mask, gateway, metric, has_gateway); addresses in host order.
    let mut v = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::from_le);
        let (Some(dst), Some(gw), Some(mask)) = (hex(f[1]), hex(f[2]), hex(f[7])) else {
            continue;
        };
        let flags = u32::from_str_radix(f[3], 16).unwrap_or(0);
        if flags & 1 == 0 {
            continue; // not RTF_UP
        }
        let metric = f[6].parse().unwrap_or(0);
        // /proc/net/route prints addresses as the raw __be32 in host-endian hex.
        let be = |x: u32| u32::from_be(x.to_le());
        v.push((
            f[0].to_string(),
            be(dst),
            be(mask),
            be(gw),
            metric,
            flags & 2 != 0,
        ));
    }
    v
}

/// Parses `/proc/net/ipv6_route` text (up routes only). The file lists the routes of every
/// table (main, local, policy tables); the longest-prefix lookup over all of them is right for
/// realservers reached through the main table, which is the setup xlvs supports.
pub fn parse_routes6(text: &str) -> Vec<Route6> {
    let mut v = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let hex128 = |s: &str| u128::from_str_radix(s, 16).ok();
        let hex32 = |s: &str| u32::from_str_radix(s, 16).ok();
        let (Some(dst), Some(len), Some(via), Some(metric), Some(flags)) = (
            hex128(f[0]),
            hex32(f[1]),
            hex128(f[4]),
            hex32(f[5]),
            hex32(f[8]),
        ) else {
            continue;
        };
        // RTF_UP, and not RTF_REJECT (the unreachable default on lo).
        if flags & 1 == 0 || flags & 0x200 != 0 || len > 128 {
            continue;
        }
        v.push(Route6 {
            dev: f[9].to_string(),
            dst,
            len,
            via,
            metric,
            gateway: flags & 2 != 0,
        });
    }
    v
}

/// The route to `ip` (longest prefix, then lowest metric).
pub fn lookup(routes: &Routes, ip: IpAddr) -> Option<Route> {
    match ip {
        IpAddr::V4(a) => lookup4(&routes.v4, a),
        IpAddr::V6(a) => {
            let bits = a.to_bits();
            let mask = |len: u32| u128::MAX.checked_shl(128 - len).unwrap_or(0);
            routes
                .v6
                .iter()
                .filter(|r| bits & mask(r.len) == r.dst & mask(r.len))
                .max_by_key(|r| (r.len, std::cmp::Reverse(r.metric)))
                .map(|r| Route {
                    dev: r.dev.clone(),
                    via: IpAddr::V6(if r.gateway {
                        Ipv6Addr::from_bits(r.via)
                    } else {
                        a
                    }),
                })
        }
    }
}

fn lookup4(routes: &[(String, u32, u32, u32, u32, bool)], ip: Ipv4Addr) -> Option<Route> {
    let a = ip.to_bits();
    routes
        .iter()
        .filter(|(_, dst, mask, ..)| a & mask == *dst)
        .max_by_key(|(_, _, mask, _, metric, _)| (mask.count_ones(), std::cmp::Reverse(*metric)))
        .map(|(dev, _, _, gw, _, has_gw)| Route {
            dev: dev.clone(),
            via: IpAddr::V4(if *has_gw {
                Ipv4Addr::from_bits(*gw)
            } else {
                ip
            }),
        })
}

/// Parses `/proc/net/arp` into complete entries: (ip, dev) → MAC.
pub fn parse_arp(text: &str) -> Neighbours {
    let mut m = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 {
            continue;
        }
        let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).unwrap_or(0);
        if flags & 0x2 == 0 {
            continue; // not ATF_COM: incomplete
        }
        let (Ok(ip), Some(mac)) = (f[0].parse::<Ipv4Addr>(), parse_mac(f[3])) else {
            continue;
        };
        if mac == [0; 6] {
            continue;
        }
        m.insert((IpAddr::V4(ip), f[5].to_string()), mac);
    }
    m
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Reads the kernel's routes.
pub fn routes() -> Routes {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    Routes {
        v4: parse_routes(&read("/proc/net/route")),
        v6: parse_routes6(&read("/proc/net/ipv6_route")),
    }
}

/// Reads the kernel's neighbour tables (ARP from /proc, NDP over rtnetlink).
pub fn neighbours() -> Neighbours {
    let mut m = std::fs::read_to_string("/proc/net/arp")
        .map(|t| parse_arp(&t))
        .unwrap_or_default();
    match crate::netlink::neighbours6() {
        Ok(v6) => m.extend(v6),
        Err(e) => log::debug!("reading IPv6 neighbours: {e}"),
    }
    m
}

/// Makes the kernel resolve `ip` on `dev`: one empty UDP datagram to its discard port. A
/// link-local IPv6 next hop (a router's `fe80::…`) needs `dev` as its scope.
pub fn probe(ip: IpAddr, dev: &str) {
    let to = match ip {
        IpAddr::V4(a) => SocketAddr::from((a, 9)),
        IpAddr::V6(a) => {
            let scope = if a.segments()[0] & 0xffc0 == 0xfe80 {
                let name = std::ffi::CString::new(dev).unwrap_or_default();
                // Safety: `name` is a valid NUL-terminated string.
                unsafe { libc::if_nametoindex(name.as_ptr()) }
            } else {
                0
            };
            SocketAddr::V6(SocketAddrV6::new(a, 9, 0, scope))
        }
    };
    let any = if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    if let Ok(s) = UdpSocket::bind(any) {
        let _ = s.send_to(&[], to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
ext0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
ext0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
int0\t00000A0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    #[test]
    fn ipv6_routes_parse_and_look_up() {
        let text = "\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000000000000000000001 00000400 00000001 00000000 00000003     ext0
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     int0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";
        let r = Routes {
            v4: Vec::new(),
            v6: parse_routes6(text),
        };
        assert_eq!(r.v6.len(), 2);
        assert_eq!(
            lookup(&r, "fd00::11".parse().unwrap()),
            Some(Route {
                dev: "int0".into(),
                via: "fd00::11".parse().unwrap()
            })
        );
        assert_eq!(
            lookup(&r, "2001:db8:1::5".parse().unwrap()),
            Some(Route {
                dev: "ext0".into(),
                via: "2001:db8::1".parse().unwrap()
            })
        );
    }

    #[test]
    fn route_lookup_prefers_longest_prefix() {
        let r = Routes {
            v4: parse_routes(ROUTES),
            v6: Vec::new(),
        };
        assert_eq!(
            lookup(&r, "10.10.0.11".parse().unwrap()),
            Some(Route {
                dev: "int0".into(),
                via: "10.10.0.11".parse().unwrap()
            })
        );
        assert_eq!(
            lookup(&r, "8.8.8.8".parse().unwrap()),
            Some(Route {
                dev: "ext0".into(),
                via: "192.0.2.1".parse().unwrap()
            })
        );
    }

    #[test]
    fn arp_keeps_complete_entries() {
        let text = "\
IP address       HW type     Flags       HW address            Mask     Device
10.10.0.11       0x1         0x2         aa:bb:cc:00:11:22     *        int0
10.10.0.12       0x1         0x0         00:00:00:00:00:00     *        int0
";
        let m = parse_arp(text);
        assert_eq!(m.len(), 1);
        assert_eq!(
            m[&("10.10.0.11".parse::<IpAddr>().unwrap(), "int0".to_string())],
            [0xaa, 0xbb, 0xcc, 0, 0x11, 0x22]
        );
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("02:00:00:00:00:0a"), Some([2, 0, 0, 0, 0, 10]));
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00:0a:0b"), None);
    }
}
