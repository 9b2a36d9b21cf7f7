//! The table as resync messages: every persistence template, then every connection followed
//! by its template (so the puller links them as a sync backup does), each with the time it
//! has left. The walk goes a part of the table at a time, one bucket locked at a time, and
//! hands out each finished message outside any lock.

use std::net::IpAddr;

use xlvs_dataplane::core::Instant;
use xlvs_dataplane::core::addr::Addr;
use xlvs_dataplane::core::conn::{ConnTable, Origin, Tables};
use xlvs_dataplane::core::events::{ConnEvent, EventKind};

use super::stream::MAX_MESSAGE;
use crate::sync::{Encoder, SyncConn};

/// Buckets walked between two hand-outs.
const PART: u32 = 4096;

/// Seconds left, at least 1 (a 0 timeout would mean "the backup's default").
fn secs_left(d: std::time::Duration) -> u32 {
    (d.as_secs() + (d.subsec_nanos() > 0) as u64).clamp(1, u32::MAX as u64) as u32
}

/// Walks `tables` at `now`, handing each finished v1 message (sync id `syncid`) to `out`;
/// stops at `out`'s first error. Returns the entries sent.
pub fn walk<E>(
    tables: &Tables,
    now: Instant,
    syncid: u8,
    out: impl FnMut(Vec<u8>) -> Result<(), E>,
) -> Result<u64, E> {
    walk_from(tables, now, syncid, |_| true, out)
}

/// [`walk`] over the entries whose origin `pick` takes (a connection's template goes with
/// it whatever the template's origin).
pub fn walk_from<E>(
    tables: &Tables,
    now: Instant,
    syncid: u8,
    pick: impl Fn(Origin) -> bool,
    mut out: impl FnMut(Vec<u8>) -> Result<(), E>,
) -> Result<u64, E> {
    let mut enc = Encoder::new(syncid, MAX_MESSAGE);
    let mut n = 0u64;
    let mut part: Vec<SyncConn> = Vec::new();
    // A connection and its template go in one message (the puller links them there).
    let mut emit = |part: &mut Vec<SyncConn>, enc: &mut Encoder| -> Result<(), E> {
        let mut it = part.drain(..).peekable();
        while let Some(c) = it.next() {
            let pair = !c.is_template() && it.peek().is_some_and(SyncConn::is_template);
            let r = if pair {
                let t = it.next().unwrap_or_else(|| c.clone());
                n += 1;
                enc.push_pair(&c, &t)
            } else {
                enc.push(&c)
            };
            match r {
                Ok(Some(m)) => out(m)?,
                Ok(None) => {}
                Err(_) => continue,
            }
            n += 1;
        }
        Ok(())
    };
    templates(&tables.v4, now, &pick, &mut part);
    templates(&tables.v6, now, &pick, &mut part);
    emit(&mut part, &mut enc)?;
    for b in (0..tables.v4.buckets() as u32).step_by(PART as usize) {
        conns(&tables.v4, b..b.saturating_add(PART), now, &pick, &mut part);
        emit(&mut part, &mut enc)?;
    }
    for b in (0..tables.v6.buckets() as u32).step_by(PART as usize) {
        conns(&tables.v6, b..b.saturating_add(PART), now, &pick, &mut part);
        emit(&mut part, &mut enc)?;
    }
    if let Some(m) = enc.flush() {
        out(m)?;
    }
    Ok(n)
}

fn template_entry<A: Addr>(t: &xlvs_dataplane::core::conn::Template<A>, now: Instant) -> SyncConn {
    let mut e = ConnEvent::of_template(EventKind::Packets, t);
    e.timeout = secs_left(t.expires_in(now));
    let mut s = SyncConn::from(&e);
    s.state = 1; // assured, as the master sends them
    s
}

fn templates<A: Addr>(
    t: &ConnTable<A>,
    now: Instant,
    pick: &impl Fn(Origin) -> bool,
    out: &mut Vec<SyncConn>,
) {
    t.for_each_template(|tp| {
        if pick(tp.origin) {
            out.push(template_entry(tp, now))
        }
    });
}

fn conns<A: Addr>(
    t: &ConnTable<A>,
    buckets: std::ops::Range<u32>,
    now: Instant,
    pick: &impl Fn(Origin) -> bool,
    out: &mut Vec<SyncConn>,
) {
    t.for_each_in_with_origin(buckets, |c, o, tp| {
        if !pick(o) {
            return;
        }
        let e = ConnEvent::of_conn(EventKind::Packets, c, secs_left(c.expires_in(now)));
        out.push(SyncConn::from(&e));
        if let Some(tp) = tp {
            out.push(template_entry(tp, now));
        }
    });
}

/// Whether `a` is an address a resync peer may come from (`peers`, IPv4-mapped IPv6 seen as
/// IPv4).
pub fn allowed(peers: &[IpAddr], a: IpAddr) -> bool {
    let a = a.to_canonical();
    peers.iter().any(|p| p.to_canonical() == a)
}
