//! The resync stream's framing, sans IO.
//!
//! A resync is one TCP connection from the director that wants the table (the puller) to
//! its peer's resync port (the server):
//!
//! ```text
//! puller → server   request: "XLVSRSY1" | nonce (u64 BE) [| auth trailer, sequence = nonce]
//! server → puller   frames:  length (u32 BE) | payload, until the end frame
//!   payload: an IPVS sync v1 message (the datagrams' format, up to MAX_MESSAGE bytes)
//!         or the end: "XLVSEND1" | entries sent (u64 BE)
//!   [| auth trailer, sequences nonce+1, nonce+2, … in order]
//! ```
//!
//! A director can also ask its peer to pull from it (the peer then connects back as above):
//!
//! ```text
//! asker → server     "XLVSPUL1" | nonce (u64 BE) [| auth trailer, sequence = nonce]
//! server → asker     the end frame, 0 entries (the ask was taken)
//! ```
//!
//! A director that leaves MASTER asks, so that connections it scheduled while its peer could
//! not hear it (a split brain that cut sync too) reach the peer that now carries them.
//!
//! With `--sync-auth-key` every part carries the datagrams' trailer ([`super::super::auth`]):
//! the request proves the puller holds the key, and the frames' sequence numbers, which
//! start from the puller's random nonce and must come in order, make a recorded stream
//! useless. Without a key the stream is plain, and only the peer allowlist guards it.

use crate::sync::auth::{Key, TRAILER};

/// The request's magic.
pub const REQUEST: &[u8; 8] = b"XLVSRSY1";
/// The magic of an ask to pull from the asker.
pub const PULL_ME: &[u8; 8] = b"XLVSPUL1";

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// The server's table.
    Table,
    /// That the server pull the asker's table.
    PullMe,
}
/// The end frame's magic.
pub const END: &[u8; 8] = b"XLVSEND1";
/// The largest message a server sends (well under a frame's limit).
pub const MAX_MESSAGE: usize = 60_000;
/// The largest frame a puller accepts.
pub const MAX_FRAME: usize = 65_536 + TRAILER;

/// What went wrong in a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// Not a request, or the wrong length.
    BadRequest,
    /// A MAC that does not match, or a sequence out of order.
    BadMac,
    /// A frame longer than [`MAX_FRAME`] or shorter than a header.
    BadFrame,
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StreamError::BadRequest => "not a resync request",
            StreamError::BadMac => "bad MAC or sequence",
            StreamError::BadFrame => "bad frame length",
        })
    }
}

/// A request's length.
pub fn request_len(auth: bool) -> usize {
    16 + if auth { TRAILER } else { 0 }
}

/// The request for nonce `nonce`.
pub fn request(nonce: u64, key: Option<&Key>) -> Vec<u8> {
    request_for(Ask::Table, nonce, key)
}

/// The request asking `ask`, for nonce `nonce`.
pub fn request_for(ask: Ask, nonce: u64, key: Option<&Key>) -> Vec<u8> {
    let mut r = match ask {
        Ask::Table => REQUEST.to_vec(),
        Ask::PullMe => PULL_ME.to_vec(),
    };
    r.extend_from_slice(&nonce.to_be_bytes());
    if let Some(k) = key {
        k.seal(&mut r, nonce);
    }
    r
}

/// The nonce of a table request `r` (exactly [`request_len`] bytes).
pub fn parse_request(r: &[u8], key: Option<&Key>) -> Result<u64, StreamError> {
    match parse_ask(r, key)? {
        (Ask::Table, n) => Ok(n),
        (Ask::PullMe, _) => Err(StreamError::BadRequest),
    }
}

/// What request `r` (exactly [`request_len`] bytes) asks, and its nonce.
pub fn parse_ask(r: &[u8], key: Option<&Key>) -> Result<(Ask, u64), StreamError> {
    let msg = match key {
        Some(k) => {
            let (msg, seq) = k.open(r).ok_or(StreamError::BadMac)?;
            if msg.len() != 16 || seq != nonce_of(msg) {
                return Err(StreamError::BadMac);
            }
            msg
        }
        None => r,
    };
    if msg.len() != 16 {
        return Err(StreamError::BadRequest);
    }
    let ask = match &msg[..8] {
        m if m == REQUEST => Ask::Table,
        m if m == PULL_ME => Ask::PullMe,
        _ => return Err(StreamError::BadRequest),
    };
    Ok((ask, nonce_of(msg)))
}

fn nonce_of(msg: &[u8]) -> u64 {
    u64::from_be_bytes(msg[8..16].try_into().unwrap_or_default())
}

/// The server's side: frames, sealed in order.
pub struct Framer {
    key: Option<Key>,
    seq: u64,
}

impl Framer {
    /// Frames for the request of nonce `nonce`.
    pub fn new(key: Option<Key>, nonce: u64) -> Self {
        Framer {
            key,
            seq: nonce.wrapping_add(1),
        }
    }

    /// Appends the frame of `payload` to `out`.
    pub fn frame(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(payload);
        if let Some(k) = &self.key {
            let mut p = out.split_off(start + 4);
            k.seal(&mut p, self.seq);
            out.extend_from_slice(&p);
        }
        self.seq = self.seq.wrapping_add(1);
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Appends the end frame, `entries` sent.
    pub fn end(&mut self, entries: u64, out: &mut Vec<u8>) {
        let mut p = END.to_vec();
        p.extend_from_slice(&entries.to_be_bytes());
        self.frame(&p, out);
    }
}

/// A frame as the puller reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A sync v1 message.
    Message(Vec<u8>),
    /// The end: how many entries the server sent.
    End(u64),
}

/// The puller's side: bytes in, frames out.
pub struct Deframer {
    key: Option<Key>,
    seq: u64,
    buf: Vec<u8>,
    /// Bytes of `buf` already returned.
    used: usize,
}

impl Deframer {
    /// Frames answering the request of nonce `nonce`.
    pub fn new(key: Option<Key>, nonce: u64) -> Self {
        Deframer {
            key,
            seq: nonce.wrapping_add(1),
            buf: Vec::new(),
            used: 0,
        }
    }

    /// Bytes read from the stream.
    pub fn feed(&mut self, data: &[u8]) {
        if self.used > 0 && self.used == self.buf.len() {
            self.buf.clear();
            self.used = 0;
        } else if self.used > 1 << 20 {
            self.buf.drain(..self.used);
            self.used = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame, if one is in.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, StreamError> {
        let rest = &self.buf[self.used..];
        if rest.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if !(8..=MAX_FRAME).contains(&len) {
            return Err(StreamError::BadFrame);
        }
        if rest.len() < 4 + len {
            return Ok(None);
        }
        let raw = &rest[4..4 + len];
        let payload = match &self.key {
            Some(k) => match k.open(raw) {
                Some((p, seq)) if seq == self.seq => p,
                _ => return Err(StreamError::BadMac),
            },
            None => raw,
        };
        self.seq = self.seq.wrapping_add(1);
        let f = if payload.len() == 16 && &payload[..8] == END {
            Frame::End(u64::from_be_bytes(
                payload[8..16].try_into().unwrap_or_default(),
            ))
        } else {
            Frame::Message(payload.to_vec())
        };
        self.used += 4 + len;
        Ok(Some(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(key: Option<Key>, nonce: u64) -> Vec<u8> {
        let mut f = Framer::new(key, nonce);
        let mut out = Vec::new();
        f.frame(b"\x00\x00\x00\x0c\x00\x01\x00\x00abcd", &mut out);
        f.frame(b"\x00\x00\x00\x08\x00\x01\x00\x00", &mut out);
        f.end(7, &mut out);
        out
    }

    fn read_all(d: &mut Deframer, bytes: &[u8], step: usize) -> Result<Vec<Frame>, StreamError> {
        let mut out = Vec::new();
        for chunk in bytes.chunks(step) {
            d.feed(chunk);
            while let Some(f) = d.next_frame()? {
                out.push(f);
            }
        }
        Ok(out)
    }

    #[test]
    fn frames_round_trip_in_any_chunking() {
        let key = Key::new(b"resync test key, long enough").unwrap();
        for k in [None, Some(key)] {
            let bytes = frames(k.clone(), 42);
            for step in [1, 3, 7, 1000] {
                let mut d = Deframer::new(k.clone(), 42);
                let got = read_all(&mut d, &bytes, step).unwrap();
                assert_eq!(got.len(), 3);
                assert_eq!(got[2], Frame::End(7));
                assert!(matches!(&got[0], Frame::Message(m) if m.ends_with(b"abcd")));
            }
        }
    }

    #[test]
    fn authenticated_streams_refuse_other_nonces_and_tampering() {
        let key = Key::new(b"resync test key, long enough").unwrap();
        let bytes = frames(Some(key.clone()), 42);
        // A recorded stream replayed to another request.
        let mut d = Deframer::new(Some(key.clone()), 43);
        assert_eq!(read_all(&mut d, &bytes, 1000), Err(StreamError::BadMac));
        // A flipped byte in the first payload.
        let mut bad = bytes.clone();
        bad[6] ^= 0x10;
        let mut d = Deframer::new(Some(key.clone()), 42);
        assert_eq!(read_all(&mut d, &bad, 1000), Err(StreamError::BadMac));
        // Frames dropped from the middle: the sequence tells.
        let first = 4 + u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        let mut cut = bytes[..first].to_vec();
        let second = 4 + u32::from_be_bytes(bytes[first..first + 4].try_into().unwrap()) as usize;
        cut.extend_from_slice(&bytes[first + second..]);
        let mut d = Deframer::new(Some(key), 42);
        assert_eq!(read_all(&mut d, &cut, 1000), Err(StreamError::BadMac));
        // A plain reader of a sealed stream sees the trailer as part of each message, never
        // an end; a sealed reader of a plain stream refuses the first frame.
        let plain = frames(None, 42);
        let mut d = Deframer::new(Some(Key::new(b"resync test key, long enough").unwrap()), 42);
        assert_eq!(read_all(&mut d, &plain, 1000), Err(StreamError::BadMac));
    }

    #[test]
    fn requests_check_magic_length_and_mac() {
        let key = Key::new(b"resync test key, long enough").unwrap();
        assert_eq!(parse_request(&request(9, None), None), Ok(9));
        assert_eq!(parse_request(&request(9, Some(&key)), Some(&key)), Ok(9));
        assert_eq!(
            parse_request(&request(9, None), Some(&key)),
            Err(StreamError::BadMac)
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\n", None),
            Err(StreamError::BadRequest)
        );
        assert_eq!(request_len(false), 16);
        assert_eq!(request(1, Some(&key)).len(), request_len(true));
        // An ask to pull is told apart, sealed alike, and is not a table request.
        let ask = request_for(Ask::PullMe, 5, Some(&key));
        assert_eq!(ask.len(), request_len(true));
        assert_eq!(parse_ask(&ask, Some(&key)), Ok((Ask::PullMe, 5)));
        assert_eq!(parse_ask(&request(5, None), None), Ok((Ask::Table, 5)));
        assert_eq!(
            parse_request(&ask, Some(&key)),
            Err(StreamError::BadRequest)
        );
        let mut forged = request_for(Ask::PullMe, 5, Some(&key));
        forged[3] ^= 1;
        assert_eq!(parse_ask(&forged, Some(&key)), Err(StreamError::BadMac));
    }

    #[test]
    fn oversized_and_tiny_frames_are_refused() {
        for len in [0u32, 7, MAX_FRAME as u32 + 1, u32::MAX] {
            let mut d = Deframer::new(None, 0);
            d.feed(&len.to_be_bytes());
            assert_eq!(d.next_frame(), Err(StreamError::BadFrame), "{len}");
        }
    }
}
