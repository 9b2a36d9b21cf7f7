//! TCP headers: the fields a director reads or rewrites.

use super::{Error, be16, put16};

pub const MIN_HEADER_LEN: usize = 20;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const CHECKSUM: usize = 16;
}

/// A view of a TCP segment.
#[derive(Debug)]
pub struct Packet<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buf`, checking the fixed header and the data offset fit.
    pub fn new_checked(buf: T) -> Result<Self, Error> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let off = ((b[field::DATA_OFF] >> 4) as usize) * 4;
        if off < MIN_HEADER_LEN {
            return Err(Error::Malformed);
        }
        if b.len() < off {
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

    /// The flag byte (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR).
    pub fn flags(&self) -> u8 {
        self.buf.as_ref()[field::FLAGS]
    }

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

/// Offset of the checksum field inside a TCP header.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

#[cfg(test)]
mod tests {
    use super::*;

    static SYN_SEG: [u8; 20] = [
        0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, SYN, 0xff, 0xff, 0x12, 0x34, 0, 0,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&SYN_SEG[..]).unwrap();
        assert_eq!(p.src_port(), 12345);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.flags(), SYN);
        assert_eq!(p.checksum(), 0x1234);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            Packet::new_checked(&SYN_SEG[..10]).unwrap_err(),
            Error::Truncated
        );
        let mut bad = SYN_SEG;
        bad[12] = 0x40;
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Malformed);
        bad[12] = 0x60;
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn construct() {
        let mut b = SYN_SEG;
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_src_port(1);
        p.set_dst_port(8080);
        p.set_checksum(0xbeef);
        assert_eq!(&b[..4], &[0, 1, 0x1f, 0x90]);
        assert_eq!(&b[16..18], &[0xbe, 0xef]);
    }
}
