//! Configuration drift between the directors of a pair: a connection learned from a peer
//! binds only if this director has the same service and realserver; one that cannot is kept
//! unbound (as IPVS keeps it) and would be dropped (`no_neighbour`) if this director took
//! over. This counts them by service and realserver, for the log, `-L --daemon --json` and
//! /metrics (`xlvs_sync_unbound_connections`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use xlvs_dataplane::core::addr::Addr;
use xlvs_dataplane::core::conn::{ConnTable, Tables};

/// Connections from peers that are unbound, by (service as `PROTO VIP:PORT`, realserver).
pub fn unbound(tables: &Tables) -> BTreeMap<(String, SocketAddr), u64> {
    let mut out = BTreeMap::new();
    walk(&tables.v4, &mut out);
    walk(&tables.v6, &mut out);
    out
}

fn walk<A: Addr>(t: &ConnTable<A>, out: &mut BTreeMap<(String, SocketAddr), u64>) {
    t.for_each_with_origin(|c, origin| {
        if !origin.is_local() && c.unbound() {
            let svc = format!(
                "{} {}",
                c.proto().label(),
                SocketAddr::new(c.vaddr.ip(), c.vport)
            );
            *out.entry((svc, SocketAddr::new(c.daddr.ip(), c.dport)))
                .or_default() += 1;
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use xlvs_dataplane::core::Core;
    use xlvs_dataplane::core::inject::{ConnSpec, Spec};
    use xlvs_dataplane::core::service::{Fwd, Proto};
    use xlvs_dataplane::core::tcp_state::TcpState;
    use xlvs_dataplane::testing::snapshot;

    use super::*;

    #[test]
    fn peers_connections_to_realservers_not_configured_here_are_counted() {
        let tables = Arc::new(Tables::new(1024));
        let mut core = Core::new(tables.clone());
        let rs1: std::net::Ipv4Addr = "10.0.0.11".parse().unwrap();
        let vip: std::net::Ipv4Addr = "192.0.2.100".parse().unwrap();
        let snap = snapshot(Proto::Tcp, (vip, 80), &[(rs1, 80)], Fwd::Masq, "rr");
        let spec = |cport, rs: &str, origin: Option<&str>| {
            Spec::Conn(ConnSpec {
                proto: Proto::Tcp,
                caddr: "198.51.100.7".parse().unwrap(),
                cport,
                vaddr: vip.into(),
                vport: 80,
                daddr: rs.parse().unwrap(),
                dport: 80,
                fwd: Fwd::Masq,
                state: TcpState::Established,
                timeout: Duration::from_secs(900),
                client_hop: None,
                template: None,
                origin: origin.map(|o| o.parse().unwrap()),
            })
        };
        let now = xlvs_dataplane::core::Instant(1 << 30);
        for (p, rs, o) in [
            (1, "10.0.0.11", Some("10.0.0.1")), // bound
            (2, "10.0.0.12", Some("10.0.0.1")), // not configured here
            (3, "10.0.0.12", Some("10.0.0.1")),
            (4, "10.0.0.12", None), // local (a test's insertion): not drift
        ] {
            core.insert(now, &snap, &spec(p, rs, o)).unwrap();
        }
        let d = unbound(&tables);
        assert_eq!(
            d.into_iter().collect::<Vec<_>>(),
            [(
                (
                    "TCP 192.0.2.100:80".to_string(),
                    "10.0.0.12:80".parse().unwrap()
                ),
                2
            )]
        );
    }
}
