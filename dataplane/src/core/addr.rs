//! Address families. The connection table, its keys and the rewrite code are generic over the
//! address type, so an IPv4 connection carries 4-byte addresses and an IPv6 one 16-byte ones
//! (IPVS keeps one `union nf_inet_addr` of 16 bytes for both).

use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4 or IPv6 address as the core stores it.
pub trait Addr: Copy + Eq + Ord + Hash + Debug + Display + Send + Sync + 'static {
    /// The netmask that keeps every bit.
    const ONES: Self;
    /// `self & mask`.
    fn mask(self, mask: Self) -> Self;
    fn ip(self) -> IpAddr;
    /// The address if `ip` is of this family.
    fn from_ip(ip: IpAddr) -> Option<Self>;
    /// A number as an address (IPVS keeps a fwmark service's persistence templates under
    /// the mark as their virtual address).
    fn from_u32(v: u32) -> Self;
    /// The address as two words for hashing (IPv4: one word and zero).
    fn words(self) -> (u64, u64);
}

impl Addr for Ipv4Addr {
    const ONES: Self = Ipv4Addr::BROADCAST;
    fn mask(self, mask: Self) -> Self {
        self & mask
    }
    fn ip(self) -> IpAddr {
        IpAddr::V4(self)
    }
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
    fn from_u32(v: u32) -> Self {
        Ipv4Addr::from_bits(v)
    }
    #[inline(always)]
    fn words(self) -> (u64, u64) {
        (self.to_bits() as u64, 0)
    }
}

impl Addr for Ipv6Addr {
    const ONES: Self = Ipv6Addr::from_bits(u128::MAX);
    fn mask(self, mask: Self) -> Self {
        self & mask
    }
    fn ip(self) -> IpAddr {
        IpAddr::V6(self)
    }
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }
    fn from_u32(v: u32) -> Self {
        // IPVS: `.ip = htonl(mark)`, the first 32 bits of the address (`0:1::` for 1).
        Ipv6Addr::from_bits((v as u128) << 96)
    }
    #[inline(always)]
    fn words(self) -> (u64, u64) {
        let b = self.to_bits();
        ((b >> 64) as u64, b as u64)
    }
}
