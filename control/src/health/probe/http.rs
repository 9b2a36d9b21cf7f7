//! `HTTP_GET` and `SSL_GET`: every url answers with an accepted status code and, if the url
//! has a `digest`, a body whose MD5 is that digest (what keepalived's `genhash` prints). The
//! request is keepalived's: `GET PATH HTTP/1.0`, `User-Agent: KeepAliveClient`, `Host`.
//! SSL_GET does not verify the certificate (keepalived's default).

use std::sync::{Arc, OnceLock};

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::tcp::connect;
use crate::health::machine::{FailKind, Outcome};
use crate::health::spec::{CheckKind, CheckSpec, Url};

/// The most of a response's header kept; the body is hashed as it streams (keepalived reads
/// the whole body too), never kept.
const MAX_HEADER: usize = 64 << 10;

pub(super) async fn check(spec: &CheckSpec) -> Outcome {
    let CheckKind::Http {
        tls,
        urls,
        virtualhost,
        sni,
    } = &spec.kind
    else {
        return Outcome::fail(FailKind::Protocol, "not an HTTP checker");
    };
    let default = [Url {
        path: "/".into(),
        digest: None,
        status: Vec::new(),
        virtualhost: None,
    }];
    let urls = if urls.is_empty() { &default[..] } else { urls };
    // Each url is its own connection under connect_timeout, as keepalived's.
    for url in urls {
        let host = url.virtualhost.as_ref().or(virtualhost.as_ref());
        let get = get(spec, url, host.map(String::as_str), *tls, *sni);
        let o = match tokio::time::timeout(spec.timeout, get).await {
            Ok(o) => o,
            Err(_) => Outcome::fail(
                FailKind::Timeout,
                format!("{} not answered within {:?}", url.path, spec.timeout),
            ),
        };
        if !matches!(o, Outcome::Pass { .. }) {
            return o;
        }
    }
    Outcome::PASS
}

async fn get(spec: &CheckSpec, url: &Url, vhost: Option<&str>, tls: bool, sni: bool) -> Outcome {
    let stream = match connect(spec).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    // keepalived sends a virtualhost as written, and an address with its port unless it is
    // the scheme's.
    let default_port = if tls { 443 } else { 80 };
    let host_hdr = match vhost {
        Some(h) => h.to_string(),
        None => {
            let host = match spec.target.ip() {
                std::net::IpAddr::V4(a) => a.to_string(),
                std::net::IpAddr::V6(a) => format!("[{a}]"),
            };
            if spec.target.port() == default_port {
                host
            } else {
                format!("{host}:{}", spec.target.port())
            }
        }
    };
    let req = format!(
        "GET {} HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: {host_hdr}\r\n\r\n",
        url.path
    );
    let resp = if tls {
        let name = match (sni, vhost) {
            (true, Some(h)) => rustls::pki_types::ServerName::try_from(h.to_string()).ok(),
            _ => None,
        }
        .unwrap_or_else(|| rustls::pki_types::ServerName::IpAddress(spec.target.ip().into()));
        let Some(cfg) = tls_config() else {
            return Outcome::fail(FailKind::Tls, "no TLS client configuration");
        };
        let conn = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, stream)
            .await;
        match conn {
            Ok(s) => exchange(s, &req, url).await,
            Err(e) => return Outcome::fail(FailKind::Tls, format!("handshake: {e}")),
        }
    } else {
        exchange(stream, &req, url).await
    };
    match resp {
        Ok(o) => o,
        Err(e) => super::io_fail("read", &e),
    }
}

/// Sends the request and judges the answer: the header kept (up to [`MAX_HEADER`]), the
/// body hashed as it comes.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    req: &str,
    url: &Url,
) -> std::io::Result<Outcome> {
    s.write_all(req.as_bytes()).await?;
    s.flush().await?;
    let mut head = Vec::new();
    let mut md5 = Md5::new();
    let mut in_body = false;
    let mut chunk = [0u8; 16384];
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => n,
            // A TLS peer that closes without close_notify: what was read counts.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && in_body => break,
            Err(e) => return Err(e),
        };
        if in_body {
            md5.update(&chunk[..n]);
            continue;
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            md5.update(&head[end + 4..]);
            head.truncate(end + 4);
            in_body = true;
            // Without a digest the status is all that counts.
            if url.digest.is_none() {
                break;
            }
        } else if head.len() > MAX_HEADER {
            return Ok(Outcome::fail(FailKind::Protocol, "HTTP header too long"));
        }
    }
    let digest = hex(&md5.finalize());
    Ok(judge_head(url, &head, &digest))
}

/// The status line and body of a whole response `resp` against `url`'s expectations.
#[cfg(test)]
pub(crate) fn judge(url: &Url, resp: &[u8]) -> Outcome {
    let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Outcome::fail(FailKind::Protocol, "no complete HTTP header");
    };
    judge_head(url, &resp[..end + 4], &md5_hex(&resp[end + 4..]))
}

/// The status line of `head` (the header, "\r\n\r\n" included) and the body's MD5 (hex)
/// against `url`'s expectations.
fn judge_head(url: &Url, head: &[u8], body_md5: &str) -> Outcome {
    if !head.ends_with(b"\r\n\r\n") {
        return Outcome::fail(FailKind::Protocol, "no complete HTTP header");
    }
    let head = String::from_utf8_lossy(head);
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok());
    let Some(status) = status else {
        return Outcome::fail(FailKind::Protocol, "no HTTP status line");
    };
    let accepted = if url.status.is_empty() {
        (200..=299).contains(&status)
    } else {
        url.status
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&status))
    };
    if !accepted {
        return Outcome::fail(FailKind::Status, format!("{} answered {status}", url.path));
    }
    if let Some(want) = &url.digest
        && !body_md5.eq_ignore_ascii_case(want)
    {
        return Outcome::fail(
            FailKind::Digest,
            format!("{} body MD5 {body_md5}, expected {want}", url.path),
        );
    }
    Outcome::PASS
}

/// MD5 as 32 lowercase hex digits.
#[cfg(test)]
pub(crate) fn md5_hex(data: &[u8]) -> String {
    hex(&Md5::digest(data))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// A TLS client that accepts any certificate (keepalived's SSL_GET does not verify); None if
/// the crypto provider cannot make one.
fn tls_config() -> Option<Arc<rustls::ClientConfig>> {
    static CFG: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    CFG.get_or_init(|| {
        // ring's provider lacks post-quantum key exchange, which a health probe that trusts
        // any certificate has no use for (aws-lc-rs would need cmake and a C build).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .ok()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth();
        Some(Arc::new(cfg))
    })
    .clone()
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
