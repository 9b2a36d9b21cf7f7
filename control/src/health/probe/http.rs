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

/// The most of a response read (keepalived reads the whole body to hash it; a larger body
/// is hashed as far as this).
const MAX_RESPONSE: usize = 16 << 20;

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
    for url in urls {
        let host = url.virtualhost.as_ref().or(virtualhost.as_ref());
        let o = get(spec, url, host.map(String::as_str), *tls, *sni).await;
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
    let host = match vhost {
        Some(h) => h.to_string(),
        None => match spec.target.ip() {
            std::net::IpAddr::V4(a) => a.to_string(),
            std::net::IpAddr::V6(a) => format!("[{a}]"),
        },
    };
    let default_port = if tls { 443 } else { 80 };
    let host_hdr = if spec.target.port() == default_port {
        host.clone()
    } else {
        format!("{host}:{}", spec.target.port())
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
            Ok(s) => exchange(s, &req).await,
            Err(e) => return Outcome::fail(FailKind::Tls, format!("handshake: {e}")),
        }
    } else {
        exchange(stream, &req).await
    };
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return super::io_fail("read", &e),
    };
    judge(url, &resp)
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    req: &str,
) -> std::io::Result<Vec<u8>> {
    s.write_all(req.as_bytes()).await?;
    s.flush().await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() >= MAX_RESPONSE {
                    break;
                }
            }
            // A TLS peer that closes without close_notify: what was read counts.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(buf)
}

/// The status line and body of `resp` against `url`'s expectations.
pub(crate) fn judge(url: &Url, resp: &[u8]) -> Outcome {
    let Some(head_end) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Outcome::fail(FailKind::Protocol, "no complete HTTP header");
    };
    let head = String::from_utf8_lossy(&resp[..head_end]);
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
    if let Some(want) = &url.digest {
        let got = md5_hex(&resp[head_end + 4..]);
        if !got.eq_ignore_ascii_case(want) {
            return Outcome::fail(
                FailKind::Digest,
                format!("{} body MD5 {got}, expected {want}", url.path),
            );
        }
    }
    Outcome::PASS
}

/// MD5 as 32 lowercase hex digits.
pub(crate) fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
