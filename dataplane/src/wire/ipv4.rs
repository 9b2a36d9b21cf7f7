//! IPv4 headers.

use super::{Error, IpProtocol, be16, be32, put16, put32};

pub const MIN_HEADER_LEN: usize = 20;

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// A view of an IPv4 packet (header and payload) starting at the first byte of the header.
#[derive(Debug)]
pub struct Packet<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buf`, checking version 4, a header length of at least 20 bytes, and that the
    /// header and the total length both fit in the buffer (trailing padding is allowed).
    pub fn new_checked(buf: T) -> Result<Self, Error> {
        let p = Self::new_header_checked(buf)?;
        let total = p.total_len();
        if total < p.header_len() {
            return Err(Error::Malformed);
        }
        if p.buf.as_ref().len() < total {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    pub fn new_unchecked(buf: T) -> Self {
        Packet { buf }
    }

    /// Wraps a header that may be followed by less than its total length (the packet quoted
    /// inside an ICMP error): checks version 4, a header length of at least 20 bytes, and that
    /// the header itself fits.
    pub fn new_header_checked(buf: T) -> Result<Self, Error> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(Error::Malformed);
        }
        let hl = ((b[field::VER_IHL] & 0x0f) as usize) * 4;
        if hl < MIN_HEADER_LEN {
            return Err(Error::Malformed);
        }
        if b.len() < hl {
            return Err(Error::Truncated);
        }
        Ok(Packet { buf })
    }

    /// The identification field (fragments of one datagram share it).
    pub fn ident(&self) -> u16 {
        be16(self.buf.as_ref(), field::IDENT)
    }

    pub fn header_len(&self) -> usize {
        ((self.buf.as_ref()[field::VER_IHL] & 0x0f) as usize) * 4
    }

    pub fn total_len(&self) -> usize {
        be16(self.buf.as_ref(), field::TOTAL_LEN) as usize
    }

    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buf.as_ref()[field::PROTOCOL])
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), field::CHECKSUM)
    }

    pub fn src(&self) -> u32 {
        be32(self.buf.as_ref(), field::SRC)
    }

    pub fn dst(&self) -> u32 {
        be32(self.buf.as_ref(), field::DST)
    }

    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        be16(self.buf.as_ref(), field::FLAGS_FRAG) & 0x1fff
    }

    pub fn more_frags(&self) -> bool {
        be16(self.buf.as_ref(), field::FLAGS_FRAG) & 0x2000 != 0
    }

    /// True if the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        super::checksum::compute(&self.buf.as_ref()[..self.header_len()]) == 0
    }

    /// The payload, up to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_ttl(&mut self, v: u8) {
        self.buf.as_mut()[field::TTL] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buf.as_mut(), field::CHECKSUM, v)
    }

    pub fn set_src(&mut self, v: u32) {
        put32(self.buf.as_mut(), field::SRC, v)
    }

    pub fn set_dst(&mut self, v: u32) {
        put32(self.buf.as_mut(), field::DST, v)
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = super::checksum::compute(&self.buf.as_ref()[..hl]);
        self.set_checksum(c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len(), self.total_len());
        &mut self.buf.as_mut()[hl..tl]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 10.0.0.1 -> 10.0.0.2, TCP, TTL 64, total length 40, valid checksum.
    static HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x28, 0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0x26, 0xcd, 10, 0, 0, 1, 10, 0,
        0, 2,
    ];

    fn packet() -> Vec<u8> {
        let mut v = HDR.to_vec();
        v.extend_from_slice(&[0u8; 20]);
        v
    }

    #[test]
    fn deconstruct() {
        let buf = packet();
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 40);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::Tcp);
        assert_eq!(p.src(), 0x0a00_0001);
        assert_eq!(p.dst(), 0x0a00_0002);
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.more_frags());
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 20);
    }

    #[test]
    fn rejects_bad_input() {
        let buf = packet();
        assert_eq!(
            Packet::new_checked(&buf[..19]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&buf[..30]).unwrap_err(),
            Error::Truncated
        );
        let mut v6 = buf.clone();
        v6[0] = 0x65;
        assert_eq!(Packet::new_checked(&v6[..]).unwrap_err(), Error::Malformed);
        let mut short_ihl = buf.clone();
        short_ihl[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&short_ihl[..]).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn construct() {
        let mut buf = packet();
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_dst(0xc0a8_0001);
        p.set_ttl(63);
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.dst(), 0xc0a8_0001);
    }
}
