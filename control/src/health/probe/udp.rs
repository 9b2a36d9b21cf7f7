//! `UDP_CHECK`: a datagram to the realserver draws no ICMP unreachable (keepalived's test);
//! with `require_reply`, it draws an answer of an accepted length whose start matches
//! `reply` (bits under `reply_mask` ignored).

use std::time::Duration;

use super::io_fail;
use crate::health::machine::{FailKind, Outcome};
use crate::health::spec::{CheckKind, CheckSpec};

pub(super) async fn check(spec: &CheckSpec) -> Outcome {
    let CheckKind::Udp {
        payload,
        require_reply,
        reply,
        reply_mask,
        min_reply_len,
        max_reply_len,
    } = &spec.kind
    else {
        return Outcome::fail(FailKind::Protocol, "not a UDP checker");
    };
    let s = match super::connected_dgram(spec, None).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    // keepalived sends a random payload when none is configured.
    let random;
    let payload = if payload.is_empty() {
        random = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_le_bytes();
        &random[..]
    } else {
        &payload[..]
    };
    if let Err(e) = s.send(payload).await {
        return io_fail("send", &e);
    }
    let mut buf = vec![0u8; 65536];
    // Without require_reply, silence until just before the deadline is a pass.
    let wait = if *require_reply {
        spec.timeout
    } else {
        spec.timeout.saturating_sub(Duration::from_millis(50))
    };
    match tokio::time::timeout(wait, s.recv(&mut buf)).await {
        Ok(Ok(n)) if *require_reply => judge(
            &buf[..n],
            reply.as_deref(),
            reply_mask.as_deref(),
            (*min_reply_len, *max_reply_len),
        ),
        Ok(Ok(_)) => Outcome::PASS,
        Ok(Err(e)) => io_fail("recv", &e),
        Err(_) if *require_reply => Outcome::fail(FailKind::Reply, "no reply"),
        Err(_) => Outcome::PASS,
    }
}

/// A reply against the expected start, mask and length bounds.
pub(crate) fn judge(
    got: &[u8],
    want: Option<&[u8]>,
    mask: Option<&[u8]>,
    (min, max): (u16, u16),
) -> Outcome {
    if got.len() < min as usize || got.len() > max as usize {
        return Outcome::fail(
            FailKind::Reply,
            format!("reply of {} bytes, expected {min}..={max}", got.len()),
        );
    }
    if let Some(want) = want {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let m = mask.and_then(|m| m.get(i)).copied().unwrap_or(0);
            if (g ^ w) & !m != 0 {
                return Outcome::fail(FailKind::Reply, format!("reply differs at byte {i}"));
            }
        }
    }
    Outcome::PASS
}
