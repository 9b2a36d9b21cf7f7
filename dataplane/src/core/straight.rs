//! The established IPv4 frame as one straight line: the common frame ([`parse_common_v4`]:
//! untagged IPv4 without options, TCP or UDP, not a fragment) of a connection the table
//! holds, looked up, accounted and rewritten in one function, without the general path's
//! per-frame choices (the family, the frame's kind): its offsets are constants.
//!
//! It does what [`Core::flow`] does for such a frame, in the same order, with the same
//! helpers (the TCP state machine, [`client_hooks`], [`offer`], [`request_offload`]) and its
//! own rewrite at fixed offsets ([`rewrite_v4`], the bytes [`super::rewrite`] writes); the
//! core's tests run through it, and
//! `tests_straight::the_straight_line_agrees_with_the_general_path` checks it against the
//! general path frame by frame.
//!
//! [`parse_common_v4`]: super::family::parse_common_v4

use std::net::Ipv4Addr;

use super::conn::Side;
use super::service::{Fwd, IfaceId, Proto, Snapshot};
use super::tcp_state::Dir;
use super::{
    Action, Core, DropReason, Instant, Kind, Parsed, client_hooks, fallback_hop, offer, offload,
    request_offload, tick, touch,
};
use crate::wire::checksum;

/// What [`Core::established`] did with a frame.
pub(super) enum Straight {
    /// Forwarded (or dropped, with the reason) as the general path would have.
    Done(Result<IfaceId, DropReason>),
    /// No connection takes it (none has its tuple, or the realserver side of one being
    /// expired): the general path schedules it, without looking again.
    Missed,
}

impl Core {
    /// Forwards `frame`, a common IPv4 frame parsed as `p` (not a TCP SYN: the general path
    /// takes those), if its connection is in the table.
    #[inline(always)]
    pub(super) fn established(
        &mut self,
        now: Instant,
        snap: &Snapshot,
        frame: &mut [u8],
        p: &Parsed<Ipv4Addr>,
        rx_iface: IfaceId,
    ) -> Straight {
        debug_assert!(matches!(
            p.kind,
            Kind::Plain {
                first_frag: false,
                ..
            }
        ));
        debug_assert!(p.l3 == 14 && p.l4 == 34);
        let now_tick = self.now_tick(now);
        let table = &self.tables.v4;
        let key = key(p);
        let Some(mut found) = table.lookup(&key) else {
            return Straight::Missed;
        };
        let on = self.offer_mask != 0;
        let side = found.side;
        let (c, control) = found.conn_and_template();
        let (offered, action) = match side {
            Side::In => {
                let dir = if c.no_output() {
                    Dir::InputOnly
                } else {
                    Dir::Input
                };
                touch(c, now_tick, snap, dir, p);
                if c.hooked(self.listen) {
                    let ev = self.live.as_deref();
                    let t = control.get(c);
                    let ct = (&mut *c, t);
                    client_hooks(
                        ct,
                        (snap, ev),
                        (frame, &{ *p }),
                        rx_iface,
                        &mut self.offload,
                    );
                }
                let offered = (c.offload() | self.offer_mask != 0
                    && offer(table, c, &{ *p }, offload::IN, on))
                .then_some(offload::Offer {
                    inbound: true,
                    pkts: c.in_pkts,
                });
                c.dest.stats.inbound(self.worker, p.len as u64);
                let a = Action::ToDest {
                    fwd: c.fwd(),
                    daddr: c.daddr,
                    dport: c.dport,
                    hop: c.dest.next_hop(),
                };
                (offered, a)
            }
            Side::Out => {
                // As in `lookup`: the replies of a connection being expired find none.
                if c.deadline() == 0 {
                    return Straight::Missed;
                }
                c.clear_no_output();
                touch(c, now_tick, snap, Dir::Output, p);
                let offered = (c.offload() | self.offer_mask != 0
                    && offer(table, c, &{ *p }, offload::OUT, on))
                .then_some(offload::Offer {
                    inbound: false,
                    pkts: 0,
                });
                c.dest.stats.outbound(self.worker, p.len as u64);
                let a = Action::ToClient {
                    vaddr: c.vaddr,
                    vport: c.vport,
                    hop: c.client_hop,
                };
                (offered, a)
            }
        };
        let deadline = c.deadline();
        if deadline < found.armed() {
            let ex = &mut self.expiry.v4;
            let at = ex.conns.at(tick(now), deadline);
            found.set_armed(at);
            ex.conns.push(at, found.bucket());
        }
        drop(found);
        let out = rewrite_v4(snap, frame, p, action);
        if out.is_ok()
            && let Some(o) = offered
        {
            request_offload(&mut self.offload, snap, self.live.as_deref(), &key, o);
        }
        Straight::Done(out)
    }
}

/// The frame's tuple.
#[inline(always)]
fn key(p: &Parsed<Ipv4Addr>) -> super::ConnKey<Ipv4Addr> {
    super::ConnKey {
        src: p.src,
        dst: p.dst,
        sport: p.sport,
        dport: p.dport,
        proto: p.proto.number(),
    }
}

/// Where the IP header of a common frame starts.
const L3: usize = 14;
/// Where its TCP or UDP header starts.
const L4: usize = L3 + 20;

/// [`super::rewrite`] for a common IPv4 frame ([`super::family::parse_common_v4`]): the same
/// checks in the same order and the same bytes (`tests_straight` compares them), with the
/// headers at fixed offsets and no choice of family, frame kind or header length left.
#[inline(always)]
fn rewrite_v4(
    snap: &Snapshot,
    frame: &mut [u8],
    p: &Parsed<Ipv4Addr>,
    action: Action<Ipv4Addr>,
) -> Result<IfaceId, DropReason> {
    // The next hop as `rewrite` finds it. (One helper for both was tried: it cost 15–20
    // instructions per packet here, the compiler then laying the path out differently.)
    let hop = match action {
        Action::ToDest { hop, .. } => hop.ok_or(DropReason::NoNeighbour)?,
        Action::ToClient { hop, .. } => hop,
    };
    let (hop, src_mac) = match snap.iface_mac(hop.iface) {
        Some(m) => (hop, m),
        None => fallback_hop(snap, std::net::IpAddr::V4(p.dst), &action, hop)?,
    };
    // Ethernet, IPv4 and the first 8 bytes of TCP or UDP: the parse saw them whole.
    let h: &mut [u8; L4 + 8] = frame.first_chunk_mut().ok_or(DropReason::Malformed)?;
    let ttl = h[L3 + 8];
    if ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    h[L3 + 8] = ttl - 1;
    let (at, addr, (port_at, old_port, port)) = match action {
        Action::ToDest {
            fwd: Fwd::Route, ..
        } => {
            set_ip_checksum(h, checksum::TTL_DEC);
            set_macs(h, hop.mac, src_mac);
            return Ok(hop.iface);
        }
        Action::ToDest { daddr, dport, .. } => (L3 + 16, daddr, (L4 + 2, p.dport, dport)),
        Action::ToClient { vaddr, vport, .. } => (L3 + 12, vaddr, (L4, p.sport, vport)),
    };
    let old = u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    h[at..at + 4].copy_from_slice(&addr.octets());
    let delta = checksum::delta32(old, addr.to_bits());
    set_ip_checksum(h, checksum::TTL_DEC + delta);
    h[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    set_macs(h, hop.mac, src_mac);
    // The L4 checksum, which the parse also saw whole (TCP's at 16, UDP's at 6). (The general
    // path's `set_l4_port` here cost 9 instructions per packet more, measured.)
    let (ck, udp) = match p.proto {
        Proto::Tcp => (L4 + crate::wire::tcp::CHECKSUM_OFFSET, false),
        Proto::Udp => (L4 + crate::wire::udp::CHECKSUM_OFFSET, true),
    };
    if let Some(c) = frame.get_mut(ck..ck + 2) {
        let old = u16::from_be_bytes([c[0], c[1]]);
        // Zero means "no checksum" in UDP over IPv4: left so.
        if !(udp && old == 0) {
            let mut new = checksum::apply(old, delta + checksum::delta16(old_port, port));
            if udp && new == 0 {
                new = 0xffff;
            }
            c.copy_from_slice(&new.to_be_bytes());
        }
    }
    Ok(hop.iface)
}

/// Updates the IPv4 header checksum of a common frame by `delta` ([`checksum::apply`]).
#[inline(always)]
fn set_ip_checksum(h: &mut [u8; L4 + 8], delta: u32) {
    let old = u16::from_be_bytes([h[L3 + 10], h[L3 + 11]]);
    h[L3 + 10..L3 + 12].copy_from_slice(&checksum::apply(old, delta).to_be_bytes());
}

/// Addresses the frame to `dst` from `src`.
#[inline(always)]
fn set_macs(h: &mut [u8; L4 + 8], dst: [u8; 6], src: [u8; 6]) {
    h[..6].copy_from_slice(&dst);
    h[6..12].copy_from_slice(&src);
}
