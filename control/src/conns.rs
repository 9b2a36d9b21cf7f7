//! `ipvsadm -L -c`: the connection table, listed as ipvsadm lists `/proc/net/ip_vs_conn`
//! (ipvsadm.c `list_conn`, `print_conn`), persistence templates included.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use serde_json::json;
use xlvs_dataplane::core::Instant;
use xlvs_dataplane::core::addr::Addr;
use xlvs_dataplane::core::conn::{ConnTable, Tables};
use xlvs_dataplane::core::service::Proto;

/// One line of the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `TCP`, `UDP`, or `IP` for a fwmark service's template.
    pub proto: &'static str,
    /// Seconds until it expires.
    pub expire: u64,
    /// The TCP state, `UDP` for UDP (IPVS's UDP state name), `NONE` for a template.
    pub state: &'static str,
    pub client: SocketAddr,
    pub virt: SocketAddr,
    pub dest: SocketAddr,
    /// The peer director it was synced from (None: made here).
    pub peer: Option<IpAddr>,
    /// Synced from a peer (whose address may be past the numbered ones).
    pub synced: bool,
}

/// Every connection and template.
pub fn entries(tables: &Tables, now: Instant) -> Vec<Entry> {
    let mut out = Vec::new();
    collect(tables, &tables.v4, now, &mut out);
    collect(tables, &tables.v6, now, &mut out);
    out
}

fn collect<A: Addr>(tables: &Tables, t: &ConnTable<A>, now: Instant, out: &mut Vec<Entry>) {
    let ep = |a: A, port: u16| SocketAddr::new(a.ip(), port);
    t.for_each_with_origin(|c, origin| {
        out.push(Entry {
            proto: c.proto().label(),
            expire: c.expires_in(now).as_secs(),
            state: match c.proto() {
                Proto::Tcp => c.state().name(),
                Proto::Udp => "UDP",
            },
            client: ep(c.caddr, c.cport),
            virt: ep(c.vaddr, c.vport),
            dest: ep(c.daddr, c.dport),
            peer: tables.peer(origin),
            synced: !origin.is_local(),
        })
    });
    t.for_each_template(|tp| {
        let k = &tp.key;
        // The realserver's state knows its address (a template holds nothing else of it).
        let (daddr, dport) = tp.dest_addr();
        out.push(Entry {
            proto: Proto::from_number(k.proto).map_or("IP", Proto::label),
            expire: tp.expires_in(now).as_secs(),
            state: "NONE",
            client: ep(k.caddr, 0),
            virt: ep(k.vaddr, k.vport),
            dest: SocketAddr::new(daddr, dport),
            peer: tables.peer(tp.origin),
            synced: !tp.origin.is_local(),
        })
    });
}

/// ipvsadm's text: `pro expire state source virtual destination`; with `--persistent-conn`
/// the header gains ipvsadm's `pe name` and `pe_data` columns (no persistence engine here,
/// so lines have none, as ipvsadm prints them for connections without one).
pub fn text(entries: &[Entry], persistent: bool) -> String {
    let mut s = String::from("IPVS connection entries\n");
    if persistent {
        let _ = writeln!(
            s,
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
            "state", "source", "virtual", "destination", "pe name"
        );
    } else {
        let _ = writeln!(
            s,
            "pro expire {:<11} {:<18} {:<18} destination",
            "state", "source", "virtual"
        );
    }
    for e in entries {
        let expire = format!("{:02}:{:02}", e.expire / 60, e.expire % 60);
        let _ = writeln!(
            s,
            "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
            e.proto,
            expire,
            e.state,
            e.client.to_string(),
            e.virt.to_string(),
            e.dest
        );
    }
    s
}

/// `-L -c --json`: ipvsadm's columns, and each entry's origin: `local` (made here) or
/// `synced`, with the `peer` it came from.
pub fn json(entries: &[Entry]) -> serde_json::Value {
    let list: Vec<_> = entries
        .iter()
        .map(|e| {
            json!({
                "protocol": e.proto,
                "expire": e.expire,
                "state": e.state,
                "source": e.client.to_string(),
                "virtual": e.virt.to_string(),
                "destination": e.dest.to_string(),
                "origin": if e.synced { "synced" } else { "local" },
                "peer": e.peer.map(|p| p.to_string()),
            })
        })
        .collect();
    json!({ "connections": list })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use std::time::Duration;
    use xlvs_dataplane::core::conn::{Conn, TemplateKey};
    use xlvs_dataplane::core::service::{Dest, DestState, Fwd, NextHop};
    use xlvs_dataplane::core::tcp_state::TcpState;
    use xlvs_dataplane::core::wheel::tick_ceil;

    #[test]
    fn listing_matches_ipvsadm_print_conn() {
        let tables = Tables::new(1024);
        let now = Instant::from_secs(100);
        let dest = Arc::new(DestState::new(Ipv4Addr::new(10, 10, 0, 11).into(), 8080));
        let hop = NextHop {
            iface: 0,
            mac: [0; 6],
        };
        let mut c = Conn::new(
            Proto::Tcp,
            (Ipv4Addr::new(198, 51, 100, 7), 40000),
            (Ipv4Addr::new(192, 0, 2, 100), 80),
            (Ipv4Addr::new(10, 10, 0, 11), 8080),
            Fwd::Masq,
            TcpState::Established,
            hop,
            dest.clone(),
        );
        c.touch(tick_ceil(now), 900);
        tables.v4.insert(c, 0, now).unwrap();
        let mut u = Conn::new(
            Proto::Udp,
            (Ipv4Addr::new(198, 51, 100, 7), 5353),
            (Ipv4Addr::new(192, 0, 2, 100), 53),
            (Ipv4Addr::new(10, 10, 0, 12), 53),
            Fwd::Route,
            TcpState::None,
            hop,
            dest.clone(),
        );
        u.touch(tick_ceil(now), 299);
        tables.v4.insert(u, 0, now).unwrap();
        let dests = [Dest {
            addr: Ipv4Addr::new(10, 10, 0, 11).into(),
            port: 8080,
            fwd: Fwd::Masq,
            weight: 1,
            last_weight: 1,
            state: dest.clone(),
        }];
        let key = TemplateKey {
            proto: 6,
            caddr: Ipv4Addr::new(198, 51, 100, 7),
            vaddr: Ipv4Addr::new(192, 0, 2, 100),
            vport: 80,
        };
        tables
            .v4
            .persist(key, now, Duration::from_secs(360), &dests, || {
                Some(&dests[0])
            })
            .unwrap();
        let mut e = entries(&tables, now);
        e.sort_by_key(|e| (e.proto, e.expire));
        // Expected lines as ipvsadm's printf("%-3s %-6s %-11s %-18s %-18s %s\n") prints them.
        let expected = "\
IPVS connection entries
pro expire state       source             virtual            destination
TCP 06:00  NONE        198.51.100.7:0     192.0.2.100:80     10.10.0.11:8080
TCP 15:00  ESTABLISHED 198.51.100.7:40000 192.0.2.100:80     10.10.0.11:8080
UDP 04:59  UDP         198.51.100.7:5353  192.0.2.100:53     10.10.0.12:53
";
        assert_eq!(text(&e, false), expected);
        assert!(
            text(&e, true).starts_with(
                "IPVS connection entries\npro expire state       source             virtual            destination        pe name          pe_data\n"
            )
        );
        let j = json(&e);
        assert_eq!(j["connections"][1]["state"], "ESTABLISHED");
        assert_eq!(j["connections"][1]["source"], "198.51.100.7:40000");
        assert_eq!(j["connections"][1]["origin"], "local");
        assert_eq!(j["connections"][1]["peer"], serde_json::Value::Null);
    }
}
