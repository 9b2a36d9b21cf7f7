//! UDP headers.

use super::{Error, be16, put16};

pub const HEADER_LEN: usize = 8;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// Offset of the checksum field inside a UDP header.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

/// A view of a UDP datagram.
#[derive(Debug)]
pub struct Packet<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buf`, checking the header fits and the length field is sane.
    pub fn new_checked(buf: T) -> Result<Self, Error> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = be16(b, field::LENGTH) as usize;
        if len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if b.len() < len {
            return Err(Error::Truncated);
        }
        Ok(Packet { buf })
    }

    pub fn new_unchecked(buf: T) -> Self {
        Packet { buf }
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buf.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buf.as_ref(), field::DST_PORT)
    }

    pub fn len(&self) -> u16 {
        be16(self.buf.as_ref(), field::LENGTH)
    }

    pub fn is_empty(&self) -> bool {
        self.len() as usize == HEADER_LEN
    }

    /// The checksum; 0 means the sender computed none.
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), field::CHECKSUM)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buf.as_mut(), field::SRC_PORT, v)
    }

    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buf.as_mut(), field::DST_PORT, v)
    }

    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buf.as_mut(), field::CHECKSUM, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static DGRAM: [u8; 12] = [0x13, 0x88, 0x23, 0x28, 0x00, 0x0c, 0xab, 0xcd, 1, 2, 3, 4];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&DGRAM[..]).unwrap();
        assert_eq!(p.src_port(), 5000);
        assert_eq!(p.dst_port(), 9000);
        assert_eq!(p.len(), 12);
        assert_eq!(p.checksum(), 0xabcd);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            Packet::new_checked(&DGRAM[..7]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&DGRAM[..10]).unwrap_err(),
            Error::Truncated
        );
        let mut bad = DGRAM;
        bad[5] = 4;
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Malformed);
    }

    #[test]
    fn construct() {
        let mut b = DGRAM;
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_dst_port(53);
        p.set_checksum(0);
        assert_eq!(&b[2..4], &[0, 53]);
        assert_eq!(&b[6..8], &[0, 0]);
    }
}
