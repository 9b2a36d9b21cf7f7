//! Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! The director rewrites addresses, ports and the TTL in place; recomputing a TCP checksum over a
//! 1500-byte segment for every packet would cost more than everything else it does, so it updates
//! the checksums with RFC 1624's equation 3: `HC' = ~(~HC + ~m + m')`.

/// One's-complement sum of `data` (big-endian 16-bit words, odd byte padded with zero),
/// added to `initial`, not folded.
pub fn sum(data: &[u8], initial: u32) -> u32 {
    let mut acc = initial as u64;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = chunks.remainder() {
        acc += (*last as u64) << 8;
    }
    while acc >> 32 != 0 {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// Folds a 32-bit one's-complement sum to 16 bits.
#[inline]
pub fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The checksum (complemented folded sum) of `data`.
pub fn compute(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// RFC 1624 eq. 3, `HC' = ~(~HC + ~m + m')`, with `delta` the unfolded sum of `~m + m'` over
/// every changed word (from [`delta16`], [`delta32`], [`delta128`], added together): one fold
/// for any number of changed fields.
#[inline(always)]
pub fn apply(check: u16, delta: u32) -> u16 {
    !fold(!check as u32 + delta)
}

/// The `~m + m'` of one 16-bit word changing from `old` to `new`.
#[inline(always)]
pub fn delta16(old: u16, new: u16) -> u32 {
    !old as u32 + new as u32
}

/// The `~m + m'` of a 32-bit field (two words).
#[inline(always)]
pub fn delta32(old: u32, new: u32) -> u32 {
    delta16((old >> 16) as u16, (new >> 16) as u16) + delta16(old as u16, new as u16)
}

/// The `~m + m'` of a 16-byte field (an IPv6 address): at most 16 × 0xffff, so any few
/// deltas added together stay far from overflowing a `u32`.
#[inline(always)]
pub fn delta128(old: u128, new: u128) -> u32 {
    let mut s = 0;
    for i in 0..8 {
        s += delta16((old >> (16 * i)) as u16, (new >> (16 * i)) as u16);
    }
    s
}

/// The `~m + m'` of decrementing the TTL (hop limit) when it is the high byte of its word, as
/// in the IPv4 header: `m' = m − 0x100`, so `~m + m' = 0xffff − 0x100`.
pub const TTL_DEC: u32 = 0xfeff;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
        assert_eq!(compute(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0xab], 0), 0xab00);
    }

    #[test]
    fn update128_matches_recompute() {
        let mut data = [0u8; 40];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i * 37) as u8;
        }
        let c = compute(&data);
        let old = u128::from_be_bytes(data[8..24].try_into().unwrap());
        let new = 0x2001_0db8_0000_0000_0000_0000_dead_beef_u128;
        data[8..24].copy_from_slice(&new.to_be_bytes());
        assert_eq!(apply(c, delta128(old, new)), compute(&data));
    }

    #[test]
    fn update_matches_recompute() {
        let mut data = [
            0x45u8, 0x00, 0x00, 0x54, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0, 0, 10, 0, 0, 1, 10, 0,
            0, 2,
        ];
        let c = compute(&data);
        data[10..12].copy_from_slice(&c.to_be_bytes());
        let old = u32::from_be_bytes([data[16], data[17], data[18], data[19]]);
        let new: u32 = 0xc0a8_0101;
        data[16..20].copy_from_slice(&new.to_be_bytes());
        let inc = apply(c, delta32(old, new));
        data[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(inc, compute(&data));
    }

    proptest::proptest! {
        /// A TTL decrement and an address change applied with one fold give the checksum
        /// of the rewritten header.
        #[test]
        fn ttl_and_address_in_one_fold(
            mut hdr in proptest::array::uniform20(0u8..),
            ttl in 2u8..,
            new in 0u32..,
        ) {
            hdr[8] = ttl;
            hdr[10..12].copy_from_slice(&[0, 0]);
            let c = compute(&hdr);
            let old = u32::from_be_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]);
            hdr[8] = ttl - 1;
            hdr[12..16].copy_from_slice(&new.to_be_bytes());
            let inc = apply(c, TTL_DEC + delta32(old, new));
            proptest::prop_assert_eq!(inc, compute(&hdr));
        }
    }
}
