//! The core's side of the XDP fast path (`xlvsd --offload`).
//!
//! The core stays the authority over every connection. Once an IPv4 TCP connection is
//! ESTABLISHED (a UDP one: from its second frame) and nobody listens for its events (no sync
//! master counting its packets), each direction's next plain frame (no SYN, FIN or RST, not a
//! fragment) makes [`Core::process`]
//! leave an [`OffloadRequest`]: the frame's tuple, for the driver to file in the XDP program's
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

/// A direction of a connection to offload: the tuple of the frame [`Core::process`] just
/// forwarded, whose rewritten copy tells the driver the rest (MACs, addresses, ports), with
/// the port the frame leaves by.
///
/// [`Core::process`]: super::Core::process
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffloadRequest {
    pub key: FlowKey,
}

/// What the driver knows about the XDP program's entries.
pub trait OffloadSeen: Send {
    /// When (`CLOCK_MONOTONIC`, the workers' clock) the program last forwarded a frame with
    /// tuple `key`, if it has an entry for it and has used it.
    fn last_seen(&mut self, key: &FlowKey) -> Option<Instant>;
}

/// The map key of a frame with tuple `k`: IPv4 only (None for IPv6).
pub fn flow_key<A: Addr>(k: &ConnKey<A>) -> Option<FlowKey> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (k.src.ip(), k.dst.ip()) else {
        return None;
    };
    // Ports as the XDP program reads them: the wire's two bytes.
    Some(FlowKey::v4_raw(
        s.octets(),
        d.octets(),
        k.sport.to_be(),
        k.dport.to_be(),
        k.proto,
    ))
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

/// The tuples of a connection's offloaded directions, each with whether it is the
/// realserver → director one.
pub(crate) fn offloaded_keys<A: Addr>(
    c: &Conn<A>,
) -> impl Iterator<Item = (FlowKey, bool)> + use<A> {
    let inn = (c.offload & IN != 0)
        .then(|| flow_key(&c.in_key()))
        .flatten()
        .map(|k| (k, false));
    let out = (c.offload & OUT != 0)
        .then(|| flow_key(&c.out_key()))
        .flatten()
        .map(|k| (k, true));
    inn.into_iter().chain(out)
}
