//! Source hashing (`ip_vs_sh.c`).
//!
//! A 256-bucket table filled in list order, each realserver taking `weight` consecutive buckets
//! (at least one), repeated until the table is full. A client goes to the bucket
//! `hash_32(port + addr) & 255` (port 0 unless `sh-port`). If that realserver is unavailable
//! (weight 0 or overloaded) there is no realserver, unless `sh-fallback`: then the buckets after
//! it are tried in turn, as IPVS's `ip_vs_sh_get_fallback` does.

use super::hash::{fold, hash_32};
use super::{SchedFlags, Scheduler, Source};
use crate::core::service::Dest;

/// IPVS `IP_VS_SH_TAB_BITS`.
const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;

#[derive(Debug)]
pub struct SourceHash {
    /// Bucket → dest index; `None` only when there are no realservers.
    buckets: Box<[Option<u16>; TAB_SIZE]>,
    fallback: bool,
    port: bool,
}

impl SourceHash {
    pub fn new(dests: &[Dest], flags: SchedFlags) -> Self {
        let mut buckets = Box::new([None; TAB_SIZE]);
        if !dests.is_empty() {
            let (mut p, mut count) = (0usize, 0u32);
            for b in buckets.iter_mut() {
                *b = Some(p as u16);
                count += 1;
                if count >= dests[p].weight {
                    p = (p + 1) % dests.len();
                    count = 0;
                }
            }
        }
        SourceHash {
            buckets,
            fallback: flags.flag1,
            port: flags.flag2,
        }
    }

    /// IPVS `ip_vs_sh_hashkey`.
    fn hashkey(&self, src: &Source, offset: usize) -> usize {
        let port = if self.port { src.port } else { 0 };
        (offset + hash_32((port as u32).wrapping_add(fold(src.addr)), TAB_BITS) as usize)
            & (TAB_SIZE - 1)
    }
}

impl Scheduler for SourceHash {
    fn name(&self) -> &'static str {
        "sh"
    }

    fn schedule(&self, dests: &[Dest], src: &Source) -> Option<usize> {
        let ihash = self.hashkey(src, 0);
        let i = self.buckets[ihash]? as usize;
        if dests.get(i)?.available() {
            return Some(i);
        }
        if !self.fallback || !dests.iter().any(Dest::available) {
            return None;
        }
        (0..TAB_SIZE)
            .map(|off| self.buckets[self.hashkey(src, (off + ihash) % TAB_SIZE)])
            .map_while(|b| b.map(usize::from))
            .find(|&i| dests.get(i).is_some_and(Dest::available))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dests, src};
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn same_client_same_server_and_weights_shape_the_table() {
        let d = dests(&[1, 3]);
        let s = SourceHash::new(&d, SchedFlags::default());
        assert_eq!(
            s.buckets.iter().filter(|b| **b == Some(1)).count(),
            192,
            "weight 3 of 4 → 3/4 of 256 buckets"
        );
        let mut by_client = HashMap::new();
        for i in 0..5_000u32 {
            let c = src(i % 100);
            let got = s.schedule(&d, &c).unwrap();
            assert_eq!(*by_client.entry(c.addr).or_insert(got), got);
        }
        let mut counts = [0u32; 2];
        for i in 0..20_000 {
            counts[s.schedule(&d, &src(i * 7919)).unwrap()] += 1;
        }
        assert!(
            (counts[1] as f64 / 20_000.0 - 0.75).abs() < 0.05,
            "{counts:?}"
        );
    }

    #[test]
    fn unavailable_without_fallback_is_no_server() {
        let d = dests(&[1, 1]);
        let s = SourceHash::new(&d, SchedFlags::default());
        let c = (0..)
            .map(src)
            .find(|c| s.schedule(&d, c) == Some(0))
            .unwrap();
        let mut d2 = d.clone();
        d2[0].weight = 0;
        assert_eq!(s.schedule(&d2, &c), None);
        let fb = SourceHash::new(
            &d,
            SchedFlags {
                flag1: true,
                ..Default::default()
            },
        );
        assert_eq!(fb.schedule(&d2, &c), Some(1));
    }

    #[test]
    fn port_flag_spreads_one_client() {
        let d = dests(&[1, 1, 1, 1]);
        let flags = SchedFlags {
            flag2: true,
            ..Default::default()
        };
        let s = SourceHash::new(&d, flags);
        let mut seen = [false; 4];
        for p in 1000..1200 {
            let c = Source { port: p, ..src(1) };
            seen[s.schedule(&d, &c).unwrap()] = true;
        }
        assert!(seen.iter().all(|&x| x));
    }
}
