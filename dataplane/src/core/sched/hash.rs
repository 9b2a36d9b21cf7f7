//! Deterministic hashes for the hashing schedulers.
//!
//! Two directors must map a client to the same realserver (that is what makes sh and Maglev
//! survive a failover), so these hashes are fixed functions of their input: no per-process
//! random seed, no CPU-dependent instructions. IPVS likewise seeds mh's hsiphash with constants.

use std::net::IpAddr;

/// Linux `GOLDEN_RATIO_32`, for `hash_32`.
const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// Linux `hash_32(val, bits)`.
pub fn hash_32(val: u32, bits: u32) -> u32 {
    val.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits)
}

/// IPVS's address fold: the IPv4 address, or the XOR of an IPv6 address's four words, in host
/// byte order.
pub fn fold(addr: IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => a.to_bits(),
        IpAddr::V6(a) => {
            let b = a.to_bits();
            (b as u32) ^ ((b >> 32) as u32) ^ ((b >> 64) as u32) ^ ((b >> 96) as u32)
        }
    }
}

/// The splitmix64 finaliser: a bijective 64-bit mix with full avalanche.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 64-bit hash of (address, port, offset) under `seed` (Maglev's two permutation hashes
/// and its lookup use different seeds).
pub fn endpoint(addr: IpAddr, port: u16, seed: u64, offset: u32) -> u64 {
    let mut h = mix64(seed ^ ((port as u64) << 32 | offset as u64));
    match addr {
        IpAddr::V4(a) => h = mix64(h ^ a.to_bits() as u64),
        IpAddr::V6(a) => {
            let b = a.to_bits();
            h = mix64(h ^ (b >> 64) as u64);
            h = mix64(h ^ b as u64);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_32_is_linux() {
        // hash_32(1, 8) = 0x61C88647 >> 24.
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(0, 8), 0);
    }

    #[test]
    fn endpoint_is_deterministic_and_spreads() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(endpoint(a, 80, 1, 0), endpoint(a, 80, 1, 0));
        assert_ne!(endpoint(a, 80, 1, 0), endpoint(a, 81, 1, 0));
        assert_ne!(endpoint(a, 80, 1, 0), endpoint(a, 80, 2, 0));
        assert_ne!(endpoint(a, 80, 1, 0), endpoint(a, 80, 1, 1));
    }
}
