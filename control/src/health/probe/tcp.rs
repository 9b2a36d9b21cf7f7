//! `TCP_CHECK`: the realserver accepts a TCP connection.

use tokio::net::TcpStream;

use super::{io_fail, socket};
use crate::health::machine::Outcome;
use crate::health::spec::CheckSpec;

/// A connected stream to the checker's target (from its `bindto`, with its fwmark).
pub(super) async fn connect(spec: &CheckSpec) -> Result<TcpStream, Outcome> {
    let s = socket(spec, socket2::Type::STREAM, None).map_err(|e| io_fail("socket", &e))?;
    let s = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(s));
    s.connect(spec.target)
        .await
        .map_err(|e| io_fail("connect", &e))
}

/// Connected is up. The connection is then reset, not closed (as HAProxy's checks do): no
/// FIN exchange, no TIME_WAIT entry per check on the director.
pub(super) async fn check(spec: &CheckSpec) -> Outcome {
    match connect(spec).await {
        Ok(s) => {
            let _ = s.set_zero_linger();
            Outcome::PASS
        }
        Err(o) => o,
    }
}
