//! The services table as the workers see it: an immutable [`Snapshot`] that the control thread
//! rebuilds and swaps in whole. Per-realserver state that must outlive a snapshot (connection
//! counters, the L2 next hop) lives in an `Arc<DestState>` that successive snapshots share, so a
//! configuration change never resets counters nor disturbs existing connections.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::sched::Scheduler;
use super::tcp_state::TcpState;

/// Index of one of the director's interfaces in [`Snapshot::ifaces`].
pub type IfaceId = u8;

/// Transport protocol of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    /// ipvsadm's name in listings (`TCP`, `UDP`).
    pub fn label(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
}

/// A virtual service: (protocol, VIP, vport).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VsKey {
    pub proto: Proto,
    pub addr: Ipv4Addr,
    pub port: u16,
}

impl fmt::Display for VsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.addr, self.port)
    }
}

/// Packet forwarding method of a realserver (ipvsadm `-m` / `-g`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fwd {
    /// LVS-NAT (`-m`, "Masq"): DNAT towards the realserver, SNAT of its replies.
    Masq,
    /// LVS-DR (`-g`, "Route"): only the MAC is rewritten; replies bypass the director.
    Route,
}

impl Fwd {
    /// ipvsadm's name in `-L` listings.
    pub fn label(self) -> &'static str {
        match self {
            Fwd::Masq => "Masq",
            Fwd::Route => "Route",
        }
    }
}

/// Where to send a frame at L2: an egress interface and the next hop's MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    pub iface: IfaceId,
    pub mac: [u8; 6],
}

impl NextHop {
    const VALID: u64 = 1 << 63;

    fn pack(self) -> u64 {
        let mut m = [0u8; 8];
        m[2..].copy_from_slice(&self.mac);
        Self::VALID | (self.iface as u64) << 48 | u64::from_be_bytes(m)
    }

    fn unpack(v: u64) -> Option<NextHop> {
        if v & Self::VALID == 0 {
            return None;
        }
        let b = v.to_be_bytes();
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&b[2..]);
        Some(NextHop {
            iface: (v >> 48) as u8,
            mac,
        })
    }
}

/// State of a realserver that outlives snapshots: shared by every snapshot that contains the
/// realserver and by every connection bound to it.
#[derive(Debug, Default)]
pub struct DestState {
    /// Connections in an active state: ESTABLISHED or the handshake (IPVS `activeconns`).
    pub active: AtomicU32,
    /// Connections in any other state, and UDP ones (IPVS `inactconns`).
    pub inactive: AtomicU32,
    /// Packed [`NextHop`]; zero until the control thread resolved the realserver's MAC.
    next_hop: AtomicU64,
}

impl DestState {
    pub fn next_hop(&self) -> Option<NextHop> {
        NextHop::unpack(self.next_hop.load(Ordering::Relaxed))
    }

    /// Set by the control thread when the neighbour table changes.
    pub fn set_next_hop(&self, hop: Option<NextHop>) {
        self.next_hop
            .store(hop.map_or(0, NextHop::pack), Ordering::Relaxed);
    }

    /// IPVS `ip_vs_dest_conn_overhead`: active × 256 + inactive.
    pub fn overhead(&self) -> u64 {
        ((self.active.load(Ordering::Relaxed) as u64) << 8)
            + self.inactive.load(Ordering::Relaxed) as u64
    }
}

/// A realserver of one service, as configured in this snapshot.
#[derive(Clone, Debug)]
pub struct Dest {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub fwd: Fwd,
    /// IPVS weight; 0 means quiescent: no new connections, existing ones continue.
    pub weight: u32,
    pub state: Arc<DestState>,
}

impl Dest {
    /// Whether the scheduler may give it a new connection.
    pub fn available(&self) -> bool {
        self.weight > 0
    }
}

/// A virtual service and its realservers, in IPVS list order.
#[derive(Debug)]
pub struct Service {
    pub key: VsKey,
    pub sched: Box<dyn Scheduler>,
    pub dests: Vec<Dest>,
}

/// One of the director's interfaces, as the data plane needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceInfo {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// IPVS timeouts per protocol state (defaults from `ip_vs_proto_tcp.c` / `ip_vs_proto_udp.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: [Duration; TcpState::COUNT],
    pub udp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let s = Duration::from_secs;
        let mut tcp = [s(0); TcpState::COUNT];
        for st in TcpState::ALL {
            tcp[st as usize] = s(match st {
                TcpState::None => 2,
                TcpState::Established => 15 * 60,
                TcpState::SynSent => 2 * 60,
                TcpState::SynRecv => 60,
                TcpState::FinWait => 2 * 60,
                TcpState::TimeWait => 2 * 60,
                TcpState::Close => 10,
                TcpState::CloseWait => 60,
                TcpState::LastAck => 30,
                TcpState::Listen => 2 * 60,
                TcpState::SynAck => 2 * 60,
            });
        }
        Timeouts {
            tcp,
            udp: s(5 * 60),
        }
    }
}

/// Everything the workers read to forward a frame. Immutable once published.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub services: HashMap<VsKey, Arc<Service>, ahash::RandomState>,
    pub ifaces: Vec<IfaceInfo>,
    pub timeouts: Timeouts,
}

impl Snapshot {
    pub fn service(&self, key: &VsKey) -> Option<&Service> {
        self.services.get(key).map(|s| &**s)
    }

    pub fn iface_mac(&self, id: IfaceId) -> Option<[u8; 6]> {
        self.ifaces.get(id as usize).map(|i| i.mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_hop_round_trips() {
        let s = DestState::default();
        assert_eq!(s.next_hop(), None);
        let hop = NextHop {
            iface: 3,
            mac: [0xfe, 1, 2, 3, 4, 0xff],
        };
        s.set_next_hop(Some(hop));
        assert_eq!(s.next_hop(), Some(hop));
        s.set_next_hop(None);
        assert_eq!(s.next_hop(), None);
    }

    #[test]
    fn default_timeouts_are_ipvs() {
        let t = Timeouts::default();
        assert_eq!(
            t.tcp[TcpState::Established as usize],
            Duration::from_secs(900)
        );
        assert_eq!(t.tcp[TcpState::FinWait as usize], Duration::from_secs(120));
        assert_eq!(t.udp, Duration::from_secs(300));
    }
}
