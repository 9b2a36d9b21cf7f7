//! The services the frame targets run against: LVS-NAT over TCP and UDP on one VIP, LVS-DR
//! on another, two realservers.

use std::net::Ipv4Addr;

use xlvs_dataplane::core::service::{Fwd, Proto, Snapshot};
use xlvs_dataplane::testing::{service, snapshot_with};

pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
pub const VIP_DR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 101);
pub const RIPS: [(Ipv4Addr, u16); 2] = [
    (Ipv4Addr::new(10, 10, 0, 11), 8080),
    (Ipv4Addr::new(10, 10, 0, 12), 8080),
];

/// TCP VIP:80 and UDP VIP:53 by LVS-NAT to RIPS, TCP VIP_DR:80 by LVS-DR.
pub fn snapshot() -> Snapshot {
    let dr = [(RIPS[0].0, 80), (RIPS[1].0, 80)];
    snapshot_with(vec![
        service(Proto::Tcp, (VIP, 80), &RIPS, Fwd::Masq, "rr"),
        service(Proto::Udp, (VIP, 53), &RIPS, Fwd::Masq, "wlc"),
        service(Proto::Tcp, (VIP_DR, 80), &dr, Fwd::Route, "sh"),
    ])
}
