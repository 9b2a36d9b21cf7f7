//! IPv6 headers (RFC 8200): the fixed 40-byte header and the fragment extension header.

use super::{Error, be16, be32};

pub const HEADER_LEN: usize = 40;
/// Next-header value of the fragment header.
pub const NEXT_FRAGMENT: u8 = 44;
/// Next-header value of ICMPv6.
pub const NEXT_ICMPV6: u8 = 58;
pub const FRAG_HEADER_LEN: usize = 8;

mod field {
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// A view of an IPv6 packet starting at the first byte of its header.
#[derive(Debug)]
pub struct Packet<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buf`, checking version 6 and that the header and the payload length fit
    /// (trailing padding is allowed; jumbograms are not accepted).
    pub fn new_checked(buf: T) -> Result<Self, Error> {
        let p = Self::new_header_checked(buf)?;
        if p.buf.as_ref().len() < HEADER_LEN + p.payload_len() {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    /// Wraps a header that may be followed by less than its payload length (the packet quoted
    /// inside an ICMPv6 error).
    pub fn new_header_checked(buf: T) -> Result<Self, Error> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(Error::Malformed);
        }
        Ok(Packet { buf })
    }

    pub fn new_unchecked(buf: T) -> Self {
        Packet { buf }
    }

    pub fn payload_len(&self) -> usize {
        be16(self.buf.as_ref(), field::PAYLOAD_LEN) as usize
    }

    /// Header length plus payload length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    pub fn next_header(&self) -> u8 {
        self.buf.as_ref()[field::NEXT_HEADER]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buf.as_ref()[field::HOP_LIMIT]
    }

    pub fn src(&self) -> [u8; 16] {
        self.addr(field::SRC)
    }

    pub fn dst(&self) -> [u8; 16] {
        self.addr(field::DST)
    }

    fn addr(&self, at: usize) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buf.as_ref()[at..at + 16]);
        a
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buf.as_mut()[field::HOP_LIMIT] = v;
    }

    pub fn set_src(&mut self, a: [u8; 16]) {
        self.buf.as_mut()[field::SRC..field::SRC + 16].copy_from_slice(&a);
    }

    pub fn set_dst(&mut self, a: [u8; 16]) {
        self.buf.as_mut()[field::DST..field::DST + 16].copy_from_slice(&a);
    }
}

/// The fragment header (RFC 8200 §4.5).
#[derive(Debug)]
pub struct FragHeader<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> FragHeader<T> {
    pub fn new_checked(buf: T) -> Result<Self, Error> {
        if buf.as_ref().len() < FRAG_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(FragHeader { buf })
    }

    pub fn next_header(&self) -> u8 {
        self.buf.as_ref()[0]
    }

    /// Fragment offset in 8-byte units.
    pub fn offset(&self) -> u16 {
        be16(self.buf.as_ref(), 2) >> 3
    }

    pub fn more_frags(&self) -> bool {
        be16(self.buf.as_ref(), 2) & 1 != 0
    }

    pub fn ident(&self) -> u32 {
        be32(self.buf.as_ref(), 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(next: u8, payload: u16) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&payload.to_be_bytes());
        h.extend_from_slice(&[next, 64]);
        h.extend((0..32).map(|i| i as u8));
        h.resize(HEADER_LEN + payload as usize, 0);
        h
    }

    #[test]
    fn fields() {
        let mut b = header(6, 20);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(
            (p.next_header(), p.hop_limit(), p.payload_len()),
            (6, 64, 20)
        );
        assert_eq!(p.src()[0], 0);
        assert_eq!(p.dst()[15], 31);
        p.set_dst([7; 16]);
        p.set_hop_limit(3);
        assert_eq!((p.dst(), p.hop_limit()), ([7; 16], 3));
    }

    #[test]
    fn rejects_bad_input() {
        let b = header(6, 20);
        assert_eq!(Packet::new_checked(&b[..50]).unwrap_err(), Error::Truncated);
        let mut v4 = b.clone();
        v4[0] = 0x45;
        assert_eq!(Packet::new_checked(&v4[..]).unwrap_err(), Error::Malformed);
        assert!(Packet::new_header_checked(&b[..40]).is_ok());
    }

    #[test]
    fn fragment_header() {
        let f = [17u8, 0, 0x05, 0x39, 0xde, 0xad, 0xbe, 0xef];
        let h = FragHeader::new_checked(&f[..]).unwrap();
        assert_eq!(h.next_header(), 17);
        assert_eq!(h.offset(), 0x539 >> 3);
        assert!(h.more_frags());
        assert_eq!(h.ident(), 0xdead_beef);
        assert!(FragHeader::new_checked(&f[..7]).is_err());
    }
}
