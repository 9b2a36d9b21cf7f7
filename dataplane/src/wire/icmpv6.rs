//! ICMPv6 messages (RFC 4443): the 8-byte header, and for error messages as much of the
//! offending packet as fits, which follows it. Unlike ICMPv4's, the checksum covers an IPv6
//! pseudo-header.

use super::{Error, be16, checksum, put16};

pub const HEADER_LEN: usize = 8;

pub const DEST_UNREACHABLE: u8 = 1;
pub const PACKET_TOO_BIG: u8 = 2;
pub const TIME_EXCEEDED: u8 = 3;
pub const PARAMETER_PROBLEM: u8 = 4;

/// Whether `ty` is an error message quoting the offending packet (types 0–127).
pub fn is_error(ty: u8) -> bool {
    matches!(
        ty,
        DEST_UNREACHABLE | PACKET_TOO_BIG | TIME_EXCEEDED | PARAMETER_PROBLEM
    )
}

/// A view of an ICMPv6 message starting at its first byte.
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
        self.buf.as_ref()[0]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    /// The checksum over the message and the pseudo-header of `src` → `dst`.
    pub fn compute_checksum(&self, src: &[u8; 16], dst: &[u8; 16]) -> u16 {
        let b = self.buf.as_ref();
        let mut s = checksum::sum(src, 0);
        s = checksum::sum(dst, s);
        s += (b.len() as u32 >> 16) + (b.len() as u32 & 0xffff) + super::ipv6::NEXT_ICMPV6 as u32;
        s = checksum::sum(&b[..2], s);
        s = checksum::sum(&b[4..], s);
        !checksum::fold(s)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Recomputes the checksum (after the quoted packet or an address changed).
    pub fn fill_checksum(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        let c = self.compute_checksum(src, dst);
        put16(self.buf.as_mut(), 2, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_verifies_to_zero_with_the_pseudo_header() {
        let (src, dst) = ([1u8; 16], [2u8; 16]);
        let mut m = [1u8, 4, 0xaa, 0xbb, 0, 0, 0, 0, 0x60, 0, 0];
        let mut p = Packet::new_checked(&mut m[..]).unwrap();
        p.fill_checksum(&src, &dst);
        let c = p.checksum();
        // Verifying: the sum over pseudo-header and message, checksum included, is all ones.
        let mut s = checksum::sum(&src, 0);
        s = checksum::sum(&dst, s);
        s += m.len() as u32 + 58;
        s = checksum::sum(&m, s);
        assert_eq!(checksum::fold(s), 0xffff);
        assert_ne!(c, 0);
        assert!(is_error(2) && !is_error(128) && !is_error(135));
        assert!(Packet::new_checked(&[1u8, 0, 0][..]).is_err());
    }
}
