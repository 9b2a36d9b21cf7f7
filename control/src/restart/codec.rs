//! The saved table's format, sans IO.
//!
//! ```text
//! header   "XLVSSAV1" | saved at (u64 BE, CLOCK_MONOTONIC ns)
//! records  length (u32 BE, > 0) | origin | an IPVS sync v1 message (resync's, walk.rs)
//!   origin: 0 (made here) | 4 + 4 bytes IPv4 | 6 + 16 bytes IPv6 (the peer it came from)
//! end      length 0 | entries (u64 BE)
//! ```
//!
//! The entries are the resync walk's (every template, then every connection followed by its
//! template, each with the seconds it had left), so a restarted xlvsd reads them with the sync
//! backup's checks; the time between the save and the load comes off every timeout.

use std::net::IpAddr;
use std::time::Duration;

use xlvs_dataplane::core::Instant;
use xlvs_dataplane::core::conn::{Origin, Tables};
use xlvs_dataplane::core::inject::Spec;
use xlvs_dataplane::core::service::Timeouts;

use crate::sync::backup::Backup;
use crate::sync::resync::walk::walk_from;

/// The header's magic.
pub const MAGIC: &[u8; 8] = b"XLVSSAV1";
/// The largest record a reader takes.
const MAX_RECORD: usize = 1 << 17;

/// Why a saved table was not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// Not a saved table (no magic), or one cut short.
    Format(&'static str),
    /// Saved at a later time than now: another boot's.
    Future,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Format(w) => write!(f, "not a saved xlvs table: {w}"),
            Error::Future => write!(f, "saved later than now (another boot's): ignored"),
        }
    }
}

impl std::error::Error for Error {}

/// Writes `tables` as they are at `now` (the workers stopped) to `out`. Returns the entries
/// written.
pub fn encode<E>(
    tables: &Tables,
    now: Instant,
    mut out: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let mut head = Vec::with_capacity(16);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&now.0.to_be_bytes());
    out(&head)?;
    let mut origins = vec![(Origin::LOCAL, None)];
    for o in 1..Origin::SOME_PEER.0 {
        match tables.peer(Origin(o)) {
            Some(a) => origins.push((Origin(o), Some(a))),
            None => break,
        }
    }
    // Entries from peers past the numbered ones have no address to keep: they go as ours.
    origins.push((Origin::SOME_PEER, None));
    let mut n = 0;
    let mut rec = Vec::new();
    for (o, peer) in origins {
        let tag = origin_tag(peer);
        n += walk_from(
            tables,
            now,
            0,
            |x| x == o,
            |m| {
                rec.clear();
                rec.extend_from_slice(&((tag.len() + m.len()) as u32).to_be_bytes());
                rec.extend_from_slice(&tag);
                rec.extend_from_slice(&m);
                out(&rec)
            },
        )?;
    }
    let mut end = vec![0u8; 4];
    end.extend_from_slice(&n.to_be_bytes());
    out(&end)?;
    Ok(n)
}

fn origin_tag(peer: Option<IpAddr>) -> Vec<u8> {
    match peer {
        None => vec![0],
        Some(IpAddr::V4(a)) => [&[4u8][..], &a.octets()].concat(),
        Some(IpAddr::V6(a)) => [&[6u8][..], &a.octets()].concat(),
    }
}

/// A saved table read back.
#[derive(Debug, Default)]
pub struct Restored {
    /// What to insert, in order (a template before the connection it controls).
    pub specs: Vec<Spec>,
    /// Entries the file said it holds.
    pub saved: u64,
    /// Entries whose time ran out between the save and now.
    pub expired: u64,
    /// Entries the sync backup's checks refused.
    pub refused: u64,
    /// How long ago it was saved.
    pub age: Duration,
}

/// Reads a saved table at `now`.
pub fn decode(data: &[u8], now: Instant) -> Result<Restored, Error> {
    let f = Error::Format;
    let head = data.get(..16).ok_or(f("shorter than its header"))?;
    if &head[..8] != MAGIC {
        return Err(f("bad magic"));
    }
    let saved_at = u64::from_be_bytes(head[8..16].try_into().expect("8 bytes"));
    if saved_at > now.0 {
        return Err(Error::Future);
    }
    let age = Duration::from_nanos(now.0 - saved_at);
    let mut r = Restored {
        age,
        ..Restored::default()
    };
    let mut backup = Backup::new(0);
    let timeouts = Timeouts::default();
    let mut at = 16;
    loop {
        let len = data.get(at..at + 4).ok_or(f("cut short before its end"))?;
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        at += 4;
        if len == 0 {
            let n = data.get(at..at + 8).ok_or(f("cut short in its end"))?;
            r.saved = u64::from_be_bytes(n.try_into().expect("8 bytes"));
            break;
        }
        if len > MAX_RECORD {
            return Err(f("a record too long"));
        }
        let rec = data.get(at..at + len).ok_or(f("a record cut short"))?;
        at += len;
        let (origin, msg) = match rec[0] {
            0 => (None, &rec[1..]),
            4 if rec.len() > 5 => {
                let a: [u8; 4] = rec[1..5].try_into().expect("4 bytes");
                (Some(IpAddr::from(a)), &rec[5..])
            }
            6 if rec.len() > 17 => {
                let a: [u8; 16] = rec[1..17].try_into().expect("16 bytes");
                (Some(IpAddr::from(a)), &rec[17..])
            }
            _ => return Err(f("a record with a bad origin")),
        };
        for mut s in backup.on_datagram(msg, origin, &timeouts) {
            let t = match &mut s {
                Spec::Conn(c) => &mut c.timeout,
                Spec::Template(t) => &mut t.timeout,
            };
            match t.checked_sub(age) {
                Some(left) if !left.is_zero() => *t = left,
                _ => {
                    r.expired += 1;
                    continue;
                }
            }
            r.specs.push(s);
        }
    }
    let st = backup.stats();
    r.refused = st.dropped.values().sum::<u64>() + st.rejected.values().sum::<u64>();
    Ok(r)
}
