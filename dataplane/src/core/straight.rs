//! The established IPv4 frame as one straight line: the common frame ([`parse_common_v4`]:
//! untagged IPv4 without options, TCP or UDP, not a fragment) of a connection the table
//! holds, looked up, accounted and rewritten at fixed offsets in one function, without the
//! general path's per-frame choices (the family, the frame's kind, an `Action` carried from
//! the lookup to the rewrite, offsets read from the parse).
//!
//! It does what [`Core::flow`] does for such a frame, in the same order, with the same
//! helpers for everything that is not the per-packet line (the TCP state machine,
//! [`client_hooks`], [`offer`], [`request_offload`], [`fallback_hop`]); the core's tests run
//! through it, and `tests_straight::the_straight_line_agrees_with_the_general_path` checks it against
//! the general path frame by frame.
//!
//! [`parse_common_v4`]: super::family::parse_common_v4

use std::net::Ipv4Addr;

use super::conn::Side;
use super::service::{Fwd, IfaceId, NextHop, Proto, Snapshot};
use super::tcp_state::Dir;
use super::{
    Action, Core, DropReason, Instant, Kind, Parsed, checksum, client_hooks, fallback_hop, offer,
    offload, request_offload, tick, touch,
};

const L3: usize = 14;
const L4: usize = L3 + 20;
/// Where the TTL, the header checksum and the addresses are.
const TTL: usize = L3 + 8;
const IP_CHECK: usize = L3 + 10;
const SRC: usize = L3 + 12;
const DST: usize = L3 + 16;

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
        debug_assert!(p.l3 as usize == L3 && p.l4 as usize == L4);
        let now_tick = self.now_tick(now);
        let table = &self.tables.v4;
        let key = key(p);
        let Some(mut found) = table.lookup(&key) else {
            return Straight::Missed;
        };
        let on = self.offer_mask != 0;
        let side = found.side;
        let c = found.conn();
        let (offered, rewrite) = match side {
            Side::In => {
                let dir = if c.no_output() {
                    Dir::InputOnly
                } else {
                    Dir::Input
                };
                touch(c, now_tick, snap, dir, p);
                if c.hooked(self.listen) {
                    let ev = self.live.as_deref();
                    client_hooks(c, (snap, ev), (frame, &{ *p }), rx_iface, &mut self.offload);
                }
                let offered = (c.offload() | self.offer_mask != 0
                    && offer(table, c, &{ *p }, offload::IN, on))
                .then_some(offload::Offer {
                    inbound: true,
                    pkts: c.in_pkts,
                });
                c.dest.stats.inbound(self.worker, p.len as u64);
                let r = match c.fwd() {
                    Fwd::Masq => Rewrite::Nat {
                        at: DST,
                        port_at: L4 + 2,
                        addr: c.daddr,
                        port: c.dport,
                    },
                    Fwd::Route => Rewrite::Route,
                };
                (offered, (r, Hop::Dest(c.dest.next_hop())))
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
                let r = Rewrite::Nat {
                    at: SRC,
                    port_at: L4,
                    addr: c.vaddr,
                    port: c.vport,
                };
                (offered, (r, Hop::Client(c.client_hop)))
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
        let out = write(snap, frame, p, rewrite);
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

/// The frame's rewrite: the address and port at fixed offsets (LVS-NAT), or none (LVS-DR).
#[derive(Clone, Copy)]
enum Rewrite {
    Nat {
        at: usize,
        port_at: usize,
        addr: Ipv4Addr,
        port: u16,
    },
    Route,
}

/// Where the frame goes: the realserver's hop (none while its neighbour is unknown), or the
/// client's.
#[derive(Clone, Copy)]
enum Hop {
    Dest(Option<NextHop>),
    Client(NextHop),
}

/// Rewrites the frame (TTL, addresses, ports, both checksums, MACs) and says where it goes.
#[inline(always)]
fn write(
    snap: &Snapshot,
    frame: &mut [u8],
    p: &Parsed<Ipv4Addr>,
    (rewrite, hop): (Rewrite, Hop),
) -> Result<IfaceId, DropReason> {
    let (hop, to_client) = match hop {
        Hop::Dest(h) => (h.ok_or(DropReason::NoNeighbour)?, false),
        Hop::Client(h) => (h, true),
    };
    let (hop, src_mac) = match snap.iface_mac(hop.iface) {
        Some(m) => (hop, m),
        None => {
            // Only which of the two it is matters there.
            let a = if to_client {
                Action::ToClient {
                    vaddr: p.src,
                    vport: p.sport,
                    hop,
                }
            } else {
                Action::ToDest {
                    fwd: Fwd::Route,
                    daddr: p.dst,
                    dport: p.dport,
                    hop: Some(hop),
                }
            };
            fallback_hop(snap, p.dst.into(), &a, hop)?
        }
    };
    // `parse_common_v4` took only frames that hold the IPv4 header and a whole UDP header
    // (a TCP one holds at least as much).
    let h: &mut [u8; L4 + 8] = frame.first_chunk_mut().ok_or(DropReason::Malformed)?;
    let ttl = h[TTL];
    if ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    h[TTL] = ttl - 1;
    let mut ip_delta = checksum::TTL_DEC;
    if let Rewrite::Nat {
        at,
        port_at,
        addr,
        port,
    } = rewrite
    {
        let old = u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let new = addr.to_bits();
        h[at..at + 4].copy_from_slice(&new.to_be_bytes());
        let delta = checksum::delta32(old, new);
        ip_delta += delta;
        let old_port = u16::from_be_bytes([h[port_at], h[port_at + 1]]);
        h[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
        let l4_delta = delta + checksum::delta16(old_port, port);
        let ck = match p.proto {
            Proto::Tcp => L4 + crate::wire::tcp::CHECKSUM_OFFSET,
            Proto::Udp => L4 + crate::wire::udp::CHECKSUM_OFFSET,
        };
        // A TCP frame holds its whole header (`parse_common_v4`).
        let l4 = frame.get_mut(ck..ck + 2).ok_or(DropReason::Malformed)?;
        let old = u16::from_be_bytes([l4[0], l4[1]]);
        // Zero means "no checksum" in UDP over IPv4: leave it so.
        if p.proto == Proto::Tcp || old != 0 {
            let mut c = checksum::apply(old, l4_delta);
            if p.proto == Proto::Udp && c == 0 {
                c = 0xffff;
            }
            l4.copy_from_slice(&c.to_be_bytes());
        }
    }
    let h: &mut [u8; L4 + 8] = frame.first_chunk_mut().ok_or(DropReason::Malformed)?;
    let check = u16::from_be_bytes([h[IP_CHECK], h[IP_CHECK + 1]]);
    h[IP_CHECK..IP_CHECK + 2].copy_from_slice(&checksum::apply(check, ip_delta).to_be_bytes());
    h[0..6].copy_from_slice(&hop.mac);
    h[6..12].copy_from_slice(&src_mac);
    Ok(hop.iface)
}
