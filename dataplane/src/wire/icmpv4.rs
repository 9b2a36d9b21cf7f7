//! ICMPv4 messages (RFC 792): the fixed 8-byte header, and for error messages the IPv4 header
//! and first bytes of the packet that caused the error, which follow it.

use super::{Error, be16, put16};

pub const HEADER_LEN: usize = 8;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
}

/// ICMP types that report an error about a packet and quote it.
pub const DEST_UNREACHABLE: u8 = 3;
pub const SOURCE_QUENCH: u8 = 4;
pub const TIME_EXCEEDED: u8 = 11;
pub const PARAMETER_PROBLEM: u8 = 12;
/// Code of "fragmentation needed and DF set" under [`DEST_UNREACHABLE`].
pub const FRAG_NEEDED: u8 = 4;

/// Whether `ty` is an error message quoting the offending packet.
pub fn is_error(ty: u8) -> bool {
    matches!(
        ty,
        DEST_UNREACHABLE | SOURCE_QUENCH | TIME_EXCEEDED | PARAMETER_PROBLEM
    )
}

/// A view of an ICMPv4 message starting at its first byte.
#[derive(Debug)]
pub struct Packet<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buf`, checking the 8-byte header fits.
    pub fn new_checked(buf: T) -> Result<Self, Error> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Packet { buf })
    }

    pub fn new_unchecked(buf: T) -> Self {
        Packet { buf }
    }

    pub fn msg_type(&self) -> u8 {
        self.buf.as_ref()[field::TYPE]
    }

    pub fn code(&self) -> u8 {
        self.buf.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), field::CHECKSUM)
    }

    /// What follows the header: for an error, the quoted packet.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buf.as_mut(), field::CHECKSUM, v);
    }

    /// Recomputes the checksum over the whole message (as IPVS does after rewriting a quoted
    /// packet).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = super::checksum::compute(self.buf.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_checksum() {
        let mut m = [3u8, 4, 0, 0, 0, 0, 5, 0xdc, 0x45, 0];
        let mut p = Packet::new_checked(&mut m[..]).unwrap();
        assert_eq!((p.msg_type(), p.code()), (3, FRAG_NEEDED));
        p.fill_checksum();
        assert_eq!(super::super::checksum::compute(&m), 0);
        assert!(is_error(11) && !is_error(8) && !is_error(0));
        assert!(Packet::new_checked(&[3u8, 0, 0][..]).is_err());
    }
}
