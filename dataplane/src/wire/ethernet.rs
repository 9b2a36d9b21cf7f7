//! Ethernet II frames with at most one 802.1Q tag.

use super::{Error, be16};

pub const HEADER_LEN: usize = 14;
pub const VLAN_TAG_LEN: usize = 4;

/// EtherType values, with no value lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtherType {
    Ipv4,
    Arp,
    Vlan,
    Ipv6,
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        match v {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x8100 => EtherType::Vlan,
            0x86dd => EtherType::Ipv6,
            other => EtherType::Unknown(other),
        }
    }
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const VLAN_TCI: usize = 14;
    pub const INNER_ETHERTYPE: usize = 16;
}

/// A view of an Ethernet frame.
#[derive(Debug)]
pub struct Frame<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buf`, checking the header (and a VLAN tag, if any) fits.
    pub fn new_checked(buf: T) -> Result<Self, Error> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if be16(b, field::ETHERTYPE) == 0x8100 && b.len() < HEADER_LEN + VLAN_TAG_LEN {
            return Err(Error::Truncated);
        }
        Ok(Frame { buf })
    }

    /// Wraps `buf` without checks (for buffers being written).
    pub fn new_unchecked(buf: T) -> Self {
        Frame { buf }
    }

    pub fn dst(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[field::DST]);
        m
    }

    pub fn src(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[field::SRC]);
        m
    }

    /// The 802.1Q VLAN ID, if the frame is tagged.
    pub fn vlan(&self) -> Option<u16> {
        let b = self.buf.as_ref();
        (be16(b, field::ETHERTYPE) == 0x8100).then(|| be16(b, field::VLAN_TCI) & 0x0fff)
    }

    /// The EtherType of the payload (after the VLAN tag, if any).
    pub fn ethertype(&self) -> EtherType {
        let b = self.buf.as_ref();
        let outer = be16(b, field::ETHERTYPE);
        if outer == 0x8100 {
            EtherType::from(be16(b, field::INNER_ETHERTYPE))
        } else {
            EtherType::from(outer)
        }
    }

    /// Offset of the payload (the L3 header).
    pub fn payload_offset(&self) -> usize {
        if be16(self.buf.as_ref(), field::ETHERTYPE) == 0x8100 {
            HEADER_LEN + VLAN_TAG_LEN
        } else {
            HEADER_LEN
        }
    }
}

/// The EtherType of the frame's payload and the payload's offset, past one 802.1Q tag if there
/// is one. Untagged IPv4, the common case, costs one comparison.
#[inline]
pub fn payload(buf: &[u8]) -> Result<(EtherType, usize), Error> {
    if buf.get(field::ETHERTYPE..field::ETHERTYPE + 2) == Some(&[0x08, 0x00]) {
        return Ok((EtherType::Ipv4, HEADER_LEN));
    }
    let f = Frame::new_checked(buf)?;
    Ok((f.ethertype(), f.payload_offset()))
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst(&mut self, mac: [u8; 6]) {
        self.buf.as_mut()[field::DST].copy_from_slice(&mac);
    }

    pub fn set_src(&mut self, mac: [u8; 6]) {
        self.buf.as_mut()[field::SRC].copy_from_slice(&mac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static UNTAGGED: [u8; 14] = [1, 2, 3, 4, 5, 6, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 0x08, 0x00];
    static TAGGED: [u8; 18] = [
        1, 2, 3, 4, 5, 6, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 0x81, 0x00, 0x20, 0x2a, 0x08, 0x00,
    ];

    #[test]
    fn deconstruct_untagged() {
        let f = Frame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(f.dst(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(f.src(), [0xa, 0xb, 0xc, 0xd, 0xe, 0xf]);
        assert_eq!(f.ethertype(), EtherType::Ipv4);
        assert_eq!(f.vlan(), None);
        assert_eq!(f.payload_offset(), 14);
    }

    #[test]
    fn deconstruct_tagged() {
        let f = Frame::new_checked(&TAGGED[..]).unwrap();
        assert_eq!(f.vlan(), Some(42));
        assert_eq!(f.ethertype(), EtherType::Ipv4);
        assert_eq!(f.payload_offset(), 18);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Frame::new_checked(&UNTAGGED[..13]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Frame::new_checked(&TAGGED[..16]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn construct() {
        let mut buf = UNTAGGED;
        let mut f = Frame::new_unchecked(&mut buf[..]);
        f.set_dst([9; 6]);
        f.set_src([8; 6]);
        assert_eq!(&buf[..12], &[9, 9, 9, 9, 9, 9, 8, 8, 8, 8, 8, 8]);
    }
}
