//! The core's side of the XDP fast path (`xlvsd --offload`).
//!
//! The core stays the authority over every connection. Once a TCP connection, IPv4 or IPv6,
//! is ESTABLISHED (a UDP one: from its second frame), each direction's next plain frame (no
//! SYN, FIN or RST, not a fragment) makes [`Core::process`] leave an [`OffloadRequest`]: the frame's tuple, for the driver to file in the XDP program's
//! `OFFLOAD` map with the rewrite the core just did to that frame. From then on the program
//! forwards that direction itself and stamps the entry with the time of its last frame.
//!
//! The core keeps what only it can decide:
//! - a state change (FIN, RST, a new SYN: every such frame still reaches a worker) takes the
//!   connection's directions back: their tuples go to the table's queue of entries to remove
//!   ([`ConnTable::take_unoffloaded`]), which the drivers drain every round;
//! - so does a connection leaving the table for any reason (expiry, `expire_nodest_conn`, a
//!   new SYN on a closed one);
//! - expiry asks the driver ([`OffloadSeen`]) when the program last forwarded a frame of the
//!   connection, and a connection that is not idle is filed again instead of expiring.
//!
//! [`Core::process`]: super::Core::process
//! [`ConnTable::take_unoffloaded`]: super::conn::ConnTable::take_unoffloaded

use std::net::IpAddr;

use xlvs_common::FlowKey;

use super::Instant;
use super::addr::Addr;
use super::conn::{Conn, ConnKey};

/// The client → director direction of a connection is offloaded.
pub const IN: u8 = 1;
/// The realserver → director direction (LVS-NAT replies).
pub const OUT: u8 = 2;
/// The workers keep the connection for good: its entries were taken back without a state
/// change (its realserver moved or went, a sync master started or stopped, the map was
/// full), and it is never offered again.
pub const KEPT: u8 = 4;

/// A direction of a connection to offload: the tuple of the frame [`Core::process`] just
/// forwarded, whose rewritten copy tells the driver the rest (MACs, addresses, ports), with
/// the port the frame leaves by.
///
/// [`Core::process`]: super::Core::process
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffloadRequest {
    pub key: FlowKey,
    /// While a sync master runs, a client → director direction carries on the connection's
    /// count of client packets in the program ([`xlvs_common::Offload::sync_on`]).
    pub sync: Option<SyncCount>,
}

/// A direction [`super::Core::process`] offers: the client → director one (`inbound`) with
/// its connection's count of client packets, or the other.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Offer {
    pub inbound: bool,
    pub pkts: u8,
}

/// The IPVS sync rule as a client → director entry applies it: the connection's count so
/// far (with the frame of the request), modulo `period` (0: no period), and the count
/// (the stored sync threshold) whose frame the program hands to the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncCount {
    pub pkts: u8,
    pub period: u8,
    pub due: u8,
}

/// What the driver knows about the XDP program's entries.
pub trait OffloadSeen: Send {
    /// When (`CLOCK_MONOTONIC`, the workers' clock) the program last forwarded a frame with
    /// tuple `key`, if it has an entry for it and has used it.
    fn last_seen(&mut self, key: &FlowKey) -> Option<Instant>;
    /// The [`xlvs_common::handoff_mark`] of the last frame with tuple `key` the program
    /// handed to a worker for the sync rule, if it has an entry that counts.
    fn handed(&mut self, key: &FlowKey) -> Option<u32>;
}

/// The [`xlvs_common::handoff_mark`] (IPv4) or [`xlvs_common::handoff_mark6`] (IPv6) of a
/// frame without IPv4 options or IPv6 extension headers, untagged or with one 802.1Q tag,
/// whose TCP or UDP header is at `l4`; None for any other frame (the program never hands
/// those).
pub(crate) fn frame_mark(frame: &[u8], l3: usize, l4: usize, proto: u8) -> Option<u32> {
    let h: &[u8; 8] = frame.get(l4..l4 + 8)?.try_into().ok()?;
    match (l3, l4) {
        (14, 34) | (18, 38) => {
            let ip: &[u8; 20] = frame.get(l3..l4)?.try_into().ok()?;
            Some(xlvs_common::handoff_mark(proto, ip, h))
        }
        (14, 54) | (18, 58) => Some(xlvs_common::handoff_mark6(h)),
        _ => None,
    }
}

/// The map key of a frame with tuple `k`, as the XDP program builds it.
pub fn flow_key<A: Addr>(k: &ConnKey<A>) -> FlowKey {
    // Ports as the XDP program reads them: the wire's two bytes.
    let (sport, dport) = (k.sport.to_be(), k.dport.to_be());
    match (k.src.ip(), k.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            FlowKey::v4_raw(s.octets(), d.octets(), sport, dport, k.proto)
        }
        (s, d) => FlowKey::v6_raw(v6_octets(s), v6_octets(d), sport, dport, k.proto),
    }
}

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

/// The tuple of a map key of family `A` (the inverse of [`flow_key`]); None for a key of the
/// other family.
pub fn conn_key<A: Addr>(k: &FlowKey) -> Option<ConnKey<A>> {
    let ip = |a: &[u8; 16]| match k.family {
        xlvs_common::FAMILY_IPV4 => Some(IpAddr::from([a[0], a[1], a[2], a[3]])),
        xlvs_common::FAMILY_IPV6 => Some(IpAddr::from(*a)),
        _ => None,
    };
    Some(ConnKey {
        src: A::from_ip(ip(&k.src)?)?,
        dst: A::from_ip(ip(&k.dst)?)?,
        sport: u16::from_be(k.sport),
        dport: u16::from_be(k.dport),
        proto: k.proto,
    })
}

/// An offloaded direction taken back from the XDP program ([`ConnTable::take_unoffloaded`]):
/// its entry goes, and the frames the program forwarded are counted for its realserver.
///
/// [`ConnTable::take_unoffloaded`]: super::conn::ConnTable::take_unoffloaded
#[derive(Clone, Debug)]
pub struct Unoffloaded {
    pub key: FlowKey,
    pub dest: std::sync::Arc<super::service::DestState>,
    /// The realserver → director direction.
    pub out: bool,
}

/// What the XDP program forwarded of a direction whose entry a worker just removed: the
/// control thread counts it for the realserver ([`crate::offload_credit`]), less what it
/// counted while the entry lived.
#[derive(Clone, Debug)]
pub struct Final {
    pub key: FlowKey,
    /// The entry's `filed_ns` (which entry of the tuple it was).
    pub filed_ns: u64,
    pub dest: std::sync::Arc<super::service::DestState>,
    /// The realserver → director direction.
    pub out: bool,
    pub packets: u64,
    /// IP bytes (the packets' IP lengths, as the workers count).
    pub ip_bytes: u64,
}

/// The tuples of a connection's offloaded directions, each with whether it is the
/// realserver → director one.
pub(crate) fn offloaded_keys<A: Addr>(
    c: &Conn<A>,
) -> impl Iterator<Item = (FlowKey, bool)> + use<A> {
    let inn = (c.offload() & IN != 0).then(|| (flow_key(&c.in_key()), false));
    let out = (c.offload() & OUT != 0).then(|| (flow_key(&c.out_key()), true));
    inn.into_iter().chain(out)
}
