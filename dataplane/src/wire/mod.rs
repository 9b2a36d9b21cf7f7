//! Typed, zero-copy views of the wire formats the director touches, one protocol per file.
//!
//! Each view wraps a byte buffer: `new_checked` validates lengths of untrusted input and
//! returns an [`Error`] instead of panicking; getters read fields, setters (on `AsMut`
//! buffers) write them. Setters do not fix checksums: the rewrite code updates them
//! incrementally with [`checksum`] (RFC 1624), which tests compare against a full recomputation.
//!
//! Panics: no function here panics on any input once `new_checked` has succeeded.

pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

/// Why a frame could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the header (or the length field) says.
    Truncated,
    /// A field holds a value this code does not accept (IP version, header length, ...).
    Malformed,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated"),
            Error::Malformed => f.write_str("malformed"),
        }
    }
}

impl std::error::Error for Error {}

/// IP protocol numbers, with no value lost.
/// Numbers from `xlvs_common`, the one place the XDP program and userspace share them.
pub use xlvs_common::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpProtocol {
    Icmp,
    Tcp,
    Udp,
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(v: u8) -> Self {
        match v {
            PROTO_ICMP => IpProtocol::Icmp,
            PROTO_TCP => IpProtocol::Tcp,
            PROTO_UDP => IpProtocol::Udp,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(p: IpProtocol) -> u8 {
        match p {
            IpProtocol::Icmp => PROTO_ICMP,
            IpProtocol::Tcp => PROTO_TCP,
            IpProtocol::Udp => PROTO_UDP,
            IpProtocol::Unknown(v) => v,
        }
    }
}

// One bounds check per field, not one per byte.

#[inline(always)]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(
        *b[at..]
            .first_chunk()
            .expect("field within the checked header"),
    )
}

#[inline(always)]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(
        *b[at..]
            .first_chunk()
            .expect("field within the checked header"),
    )
}

#[inline(always)]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
