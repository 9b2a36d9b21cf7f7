//! `UDP_CHECK`: a datagram to the realserver draws no ICMP unreachable (keepalived's test);
//! with `require_reply`, it draws an answer (equal to `reply` if given).

use std::time::Duration;

use super::{io_fail, socket};
use crate::health::machine::{FailKind, Outcome};
use crate::health::spec::CheckSpec;

pub(super) async fn check(
    spec: &CheckSpec,
    payload: &[u8],
    require_reply: bool,
    reply: Option<&[u8]>,
) -> Outcome {
    let s = match socket(spec, socket2::Type::DGRAM, None) {
        Ok(s) => s,
        Err(e) => return io_fail("socket", &e),
    };
    let s = match tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(s)) {
        Ok(s) => s,
        Err(e) => return io_fail("socket", &e),
    };
    if let Err(e) = s.connect(spec.target).await {
        return io_fail("connect", &e);
    }
    if let Err(e) = s.send(payload).await {
        return io_fail("send", &e);
    }
    let mut buf = vec![0u8; 65536];
    // Without require_reply, silence until just before the deadline is a pass.
    let wait = if require_reply {
        spec.timeout
    } else {
        spec.timeout.saturating_sub(Duration::from_millis(50))
    };
    match tokio::time::timeout(wait, s.recv(&mut buf)).await {
        Ok(Ok(n)) => match reply {
            Some(want) if &buf[..n] != want => {
                Outcome::fail(FailKind::Reply, format!("reply of {n} bytes differs"))
            }
            _ => Outcome::PASS,
        },
        Ok(Err(e)) => io_fail("recv", &e),
        Err(_) if require_reply => Outcome::fail(FailKind::Reply, "no reply"),
        Err(_) => Outcome::PASS,
    }
}
