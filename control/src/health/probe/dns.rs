//! `DNS_CHECK`: a query of the checker's name and type, answered with rcode NOERROR.

use super::io_fail;
use crate::health::machine::{FailKind, Outcome};
use crate::health::spec::CheckSpec;

pub(super) async fn check(spec: &CheckSpec, qtype: u16, name: &str) -> Outcome {
    let id = (std::process::id() as u16) ^ (spec.target.port().rotate_left(7)) ^ nonce();
    let Some(query) = query(id, qtype, name) else {
        return Outcome::fail(FailKind::Protocol, format!("bad name {name:?}"));
    };
    let s = match super::connected_dgram(spec, None).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    if let Err(e) = s.send(&query).await {
        return io_fail("send", &e);
    }
    let mut buf = [0u8; 4096];
    loop {
        let n = match s.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => return io_fail("recv", &e),
        };
        match judge(id, &buf[..n]) {
            // Not an answer to this query: keep waiting (the deadline bounds it).
            None => continue,
            Some(o) => return o,
        }
    }
}

fn nonce() -> u16 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u16)
}

/// A recursive query (RD set) of `name`, type `qtype`, class IN.
pub(crate) fn query(id: u16, qtype: u16, name: &str) -> Option<Vec<u8>> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        if label.len() > 63 {
            return None;
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    if q.len() > 12 + 255 {
        return None;
    }
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    Some(q)
}

/// The answer's verdict, or None if `resp` is not the answer to query `id`.
pub(crate) fn judge(id: u16, resp: &[u8]) -> Option<Outcome> {
    if resp.len() < 12 || u16::from_be_bytes([resp[0], resp[1]]) != id || resp[2] & 0x80 == 0 {
        return None;
    }
    let rcode = resp[3] & 0x0f;
    Some(if rcode == 0 {
        Outcome::PASS
    } else {
        let name = match rcode {
            1 => "FORMERR",
            2 => "SERVFAIL",
            3 => "NXDOMAIN",
            4 => "NOTIMP",
            5 => "REFUSED",
            _ => "error",
        };
        Outcome::fail(FailKind::Rcode, format!("rcode {rcode} ({name})"))
    })
}
