//! The established IPv4 frame as one straight line: the common frame ([`parse_common_v4`]:
//! untagged IPv4 without options, TCP or UDP, not a fragment) of a connection the table
//! holds, looked up, accounted and rewritten in one function, without the general path's
//! per-frame choices (the family, the frame's kind): its offsets are constants.
//!
//! It does what [`Core::flow`] does for such a frame, in the same order, with the same
//! helpers (the TCP state machine, [`client_hooks`], [`offer`], [`request_offload`],
//! [`rewrite`]); the core's tests run
//! through it, and `tests_straight::the_straight_line_agrees_with_the_general_path` checks it against
//! the general path frame by frame.
//!
//! [`parse_common_v4`]: super::family::parse_common_v4

use std::net::Ipv4Addr;

use super::conn::Side;
use super::service::{IfaceId, Snapshot};
use super::tcp_state::Dir;
use super::{
    Action, Core, DropReason, Instant, Kind, Parsed, client_hooks, offer, offload, request_offload,
    rewrite, tick, touch,
};

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
        let out = rewrite(snap, frame, p, action);
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
