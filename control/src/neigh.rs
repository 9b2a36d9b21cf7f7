//! L2 next hops from the kernel: the director's kernel owns ARP for its own addresses and keeps
//! the neighbour table; xlvs reads it.
//!
//! For each realserver: route lookup in the main IPv4 table (`/proc/net/route`, longest prefix,
//! lowest metric) gives the egress interface and the next hop (the RIP itself when on-link);
//! the neighbour table (`/proc/net/arp`) gives its MAC. A missing entry is resolved by sending
//! one UDP datagram to the next hop's discard port from the director's kernel, which makes the
//! kernel ARP for it; the control thread re-reads the table every second, so MAC changes are
//! followed, and re-probes every realserver periodically so the kernel refreshes its entries
//! even though the forwarded traffic bypasses it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};

/// A route: egress device and next-hop address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub dev: String,
    pub via: Ipv4Addr,
}

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

/// The route to `ip` in `routes` (longest prefix, then lowest metric).
pub fn lookup(routes: &[(String, u32, u32, u32, u32, bool)], ip: Ipv4Addr) -> Option<Route> {
    let a = ip.to_bits();
    routes
        .iter()
        .filter(|(_, dst, mask, ..)| a & mask == *dst)
        .max_by_key(|(_, _, mask, _, metric, _)| (mask.count_ones(), std::cmp::Reverse(*metric)))
        .map(|(dev, _, _, gw, _, has_gw)| Route {
            dev: dev.clone(),
            via: if *has_gw {
                Ipv4Addr::from_bits(*gw)
            } else {
                ip
            },
        })
}

/// Parses `/proc/net/arp` into complete entries: (ip, dev) → MAC.
pub fn parse_arp(text: &str) -> HashMap<(Ipv4Addr, String), [u8; 6]> {
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
        m.insert((ip, f[5].to_string()), mac);
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
pub fn routes() -> Vec<(String, u32, u32, u32, u32, bool)> {
    std::fs::read_to_string("/proc/net/route")
        .map(|t| parse_routes(&t))
        .unwrap_or_default()
}

/// Reads the kernel's neighbour table.
pub fn arp() -> HashMap<(Ipv4Addr, String), [u8; 6]> {
    std::fs::read_to_string("/proc/net/arp")
        .map(|t| parse_arp(&t))
        .unwrap_or_default()
}

/// Makes the kernel resolve `ip`: one empty UDP datagram to its discard port.
pub fn probe(ip: Ipv4Addr) {
    if let Ok(s) = UdpSocket::bind("0.0.0.0:0") {
        let _ = s.send_to(&[], (ip, 9));
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
    fn route_lookup_prefers_longest_prefix() {
        let r = parse_routes(ROUTES);
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
            m[&("10.10.0.11".parse().unwrap(), "int0".to_string())],
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
