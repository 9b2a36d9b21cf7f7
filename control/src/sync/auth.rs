//! Authenticated sync between xlvs directors (`--sync-auth-key FILE`), sans IO. Off by default:
//! a kernel IPVS peer cannot speak it.
//!
//! # Where the MAC sits
//!
//! An authenticated datagram is an ordinary sync message (v1 header and entries, its size
//! field the length of the message alone) followed by a 44-byte trailer:
//!
//! ```text
//! | sync message (size bytes) | "XLVA" | sequence (u64, big endian) | HMAC-SHA256 (32) |
//! ```
//!
//! The MAC covers the message, the magic and the sequence number, so neither the entries nor
//! the sequence can be changed. The sequence is the sender's: it starts from the wall clock in
//! nanoseconds when the sender starts (so a restarted master goes on above its old numbers) and
//! grows by one per datagram. A receiver keeps, per sender address, the highest sequence seen
//! and a window of the 64 below it (IPsec's anti-replay window, RFC 4303 3.4.3): a datagram
//! older than the window, or already seen, is dropped as `replayed`.
//!
//! A kernel backup drops such a datagram: its length is not the header's size field
//! (`ip_vs_process_message`'s "bad length"). A receiver with a key drops every datagram
//! without a valid trailer (`bad_mac`): a kernel master cannot feed it.
//!
//! The resync stream ([`super::resync`]) carries the same trailer on each of its frames, and
//! its own sequence starts at the request's nonce, so one stream cannot be replayed into
//! another.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use ring::hmac;

/// The trailer's magic.
pub const MAGIC: &[u8; 4] = b"XLVA";
/// Bytes an authenticated datagram adds to its message.
pub const TRAILER: usize = 4 + 8 + 32;
/// Sequence numbers a receiver remembers below the highest.
const WINDOW: u64 = 64;

/// A shared key, read from a file.
#[derive(Clone)]
pub struct Key(hmac::Key);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Key {
    /// The key in `bytes` (at least 16 bytes; surrounding whitespace is not part of it).
    pub fn new(bytes: &[u8]) -> Result<Self, String> {
        let k = bytes.trim_ascii();
        if k.len() < 16 {
            return Err(format!(
                "the sync key has {} bytes; at least 16 are needed",
                k.len()
            ));
        }
        Ok(Key(hmac::Key::new(hmac::HMAC_SHA256, k)))
    }

    /// The key in file `path`; a file others may read is refused.
    pub fn load(path: &Path) -> Result<Self, String> {
        use std::os::unix::fs::PermissionsExt;
        let meta =
            std::fs::metadata(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "{}: the key file must not be readable by group or others (chmod 600)",
                path.display()
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::new(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn tag(&self, msg: &[u8], seq: u64) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(msg);
        ctx.update(MAGIC);
        ctx.update(&seq.to_be_bytes());
        ctx.sign()
    }

    /// Appends the trailer for sequence `seq` to message `buf`.
    pub fn seal(&self, buf: &mut Vec<u8>, seq: u64) {
        let tag = self.tag(buf, seq);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&seq.to_be_bytes());
        buf.extend_from_slice(tag.as_ref());
    }

    /// Checks `d`'s trailer: its message and sequence number if the MAC is right.
    pub fn open<'a>(&self, d: &'a [u8]) -> Option<(&'a [u8], u64)> {
        if d.len() < TRAILER {
            return None;
        }
        let (msg, t) = d.split_at(d.len() - TRAILER);
        if &t[..4] != MAGIC {
            return None;
        }
        let seq = u64::from_be_bytes(t[4..12].try_into().ok()?);
        let mut signed = Vec::with_capacity(msg.len() + 12);
        signed.extend_from_slice(msg);
        signed.extend_from_slice(&t[..12]);
        hmac::verify(&self.0, &signed, &t[12..]).ok()?;
        Some((msg, seq))
    }
}

/// A sender's sequence numbers.
#[derive(Debug)]
pub struct Sealer {
    key: Key,
    next: u64,
}

impl Sealer {
    /// Numbers from `start` on (a sender passes the wall clock in nanoseconds).
    pub fn new(key: Key, start: u64) -> Self {
        Sealer { key, next: start }
    }

    /// Seals message `buf` with the next number.
    pub fn seal(&mut self, buf: &mut Vec<u8>) {
        self.key.seal(buf, self.next);
        self.next = self.next.wrapping_add(1);
    }
}

/// Why an authenticated datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No trailer, or a MAC that does not match.
    BadMac,
    /// A sequence number already seen or older than the window.
    Replayed,
}

impl AuthError {
    pub fn label(self) -> &'static str {
        match self {
            AuthError::BadMac => "bad_mac",
            AuthError::Replayed => "replayed",
        }
    }
}

/// One sender's window.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    top: u64,
    /// Bit i: `top - i` was seen.
    seen: u64,
}

impl Window {
    /// Accepts `seq` once, if it is not below the window.
    fn accept(&mut self, seq: u64) -> bool {
        if self.seen == 0 {
            *self = Window { top: seq, seen: 1 };
            return true;
        }
        if seq > self.top {
            let shift = seq - self.top;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            } | 1;
            self.top = seq;
            return true;
        }
        let back = self.top - seq;
        if back >= WINDOW || self.seen & (1 << back) != 0 {
            return false;
        }
        self.seen |= 1 << back;
        true
    }
}

/// A receiver's check: the key and each sender's window.
#[derive(Debug)]
pub struct Verifier {
    key: Key,
    windows: HashMap<IpAddr, Window>,
}

/// Senders a receiver keeps windows for; a flood of spoofed sources with valid MACs cannot
/// exist without the key, so this bounds only a misconfiguration.
const MAX_SENDERS: usize = 1024;

impl Verifier {
    pub fn new(key: Key) -> Self {
        Verifier {
            key,
            windows: HashMap::new(),
        }
    }

    /// The message inside datagram `d` from `from`, if its MAC is right and its sequence new.
    pub fn check<'a>(&mut self, from: IpAddr, d: &'a [u8]) -> Result<&'a [u8], AuthError> {
        let (msg, seq) = self.key.open(d).ok_or(AuthError::BadMac)?;
        if !self.windows.contains_key(&from) && self.windows.len() >= MAX_SENDERS {
            self.windows.clear();
        }
        if !self.windows.entry(from).or_default().accept(seq) {
            return Err(AuthError::Replayed);
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new(b"0123456789abcdef0123\n").unwrap()
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(Key::new(b"  short \n").is_err());
    }

    #[test]
    fn sealed_opens_and_tampering_fails() {
        let mut s = Sealer::new(key(), 1000);
        let mut d = b"\x00\x07\x00\x10\x01\x00\x00\x00message!".to_vec();
        s.seal(&mut d);
        assert_eq!(d.len(), 16 + TRAILER);
        let mut v = Verifier::new(key());
        let from: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(v.check(from, &d), Ok(&d[..16]));
        // Every byte matters: message, magic, sequence, MAC.
        for i in 0..d.len() {
            let mut bad = d.clone();
            bad[i] ^= 1;
            assert_eq!(v.check(from, &bad), Err(AuthError::BadMac), "byte {i}");
        }
        // Another key.
        let mut other = Verifier::new(Key::new(b"another key of 16+ bytes").unwrap());
        assert_eq!(other.check(from, &d), Err(AuthError::BadMac));
        // Too short, or a plain kernel datagram.
        assert_eq!(v.check(from, &d[..20]), Err(AuthError::BadMac));
    }

    #[test]
    fn replays_are_refused_within_and_below_the_window() {
        let k = key();
        let mut v = Verifier::new(k.clone());
        let from: IpAddr = "10.0.0.1".parse().unwrap();
        let sealed = |seq| {
            let mut d = b"msg".to_vec();
            k.seal(&mut d, seq);
            d
        };
        assert!(v.check(from, &sealed(100)).is_ok());
        assert_eq!(v.check(from, &sealed(100)), Err(AuthError::Replayed));
        // Out of order within the window: once each.
        assert!(v.check(from, &sealed(98)).is_ok());
        assert_eq!(v.check(from, &sealed(98)), Err(AuthError::Replayed));
        assert!(v.check(from, &sealed(99)).is_ok());
        assert!(v.check(from, &sealed(200)).is_ok());
        // 200 - 64 = 136 is the oldest still in the window.
        assert_eq!(v.check(from, &sealed(136)), Err(AuthError::Replayed));
        assert!(v.check(from, &sealed(137)).is_ok());
        // Another sender has its own window.
        assert!(v.check("10.0.0.2".parse().unwrap(), &sealed(100)).is_ok());
        // A big jump clears the window.
        assert!(v.check(from, &sealed(10_000)).is_ok());
        assert!(v.check(from, &sealed(9_999)).is_ok());
    }
}
