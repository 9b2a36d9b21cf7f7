//! Maglev hashing (`ip_vs_mh.c`; Eisenbud et al., NSDI 2016).
//!
//! Each realserver has a permutation of the lookup table's slots (offset and skip from two
//! hashes of its address and port); realservers take turns claiming their next free slot, each
//! `turns` times in a row (its last non-zero weight divided by the weights' gcd, scaled down
//! as IPVS's `mh_shift` does), until every slot is claimed. A client goes to the slot its
//! (address, port if `mh-port`) hashes to. Removing one of N realservers remaps about 1/N of
//! the flows; quiescing one (weight 0) keeps its slots, so nothing else moves. An unavailable
//! realserver gives no realserver, unless `mh-fallback`: then further hashes are tried, as
//! `ip_vs_mh_get_fallback` does.

use super::hash::endpoint;
use super::{SchedFlags, Scheduler, Source, gcd};
use crate::core::service::Dest;

/// Default lookup table size (prime). IPVS's Kconfig offers primes from 251 to 131071.
pub const DEFAULT_TABLE_SIZE: usize = 65537;

const SEED_OFFSET: u64 = 2654435761;
const SEED_SKIP: u64 = 2654446892;
const NONE: u16 = u16::MAX;

#[derive(Debug)]
pub struct Maglev {
    /// Slot → dest index (`NONE` when no realserver has a weight).
    lookup: Box<[u16]>,
    fallback: bool,
    port: bool,
}

impl Maglev {
    /// Builds the table for `dests`; `size` must be a prime (the control thread checks).
    pub fn new(dests: &[Dest], flags: SchedFlags, size: usize) -> Self {
        let size = size.max(2);
        let mut lookup = vec![NONE; size].into_boxed_slice();
        let weights: Vec<u32> = dests.iter().map(|d| d.last_weight).collect();
        let g = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
        let n_dests = dests.len().min(NONE as usize);
        if let Some(mw) = weights.iter().max().copied().unwrap_or(0).checked_div(g) {
            // IPVS `ip_vs_mh_shift_weight`: keep weight/gcd within the table's fixed bits.
            let tab_bits = size.ilog2() / 2;
            let fls = 32 - mw.leading_zeros();
            let rshift = fls.saturating_sub(tab_bits);
            let mut perm = Vec::with_capacity(n_dests);
            let mut skip = Vec::with_capacity(n_dests);
            let mut turns = Vec::with_capacity(n_dests);
            for (d, &w) in dests.iter().zip(&weights).take(n_dests) {
                let a = d.addr;
                perm.push((endpoint(a, d.port, SEED_OFFSET, 0) % size as u64) as usize);
                skip.push((endpoint(a, d.port, SEED_SKIP, 0) % (size as u64 - 1) + 1) as usize);
                let t = (w / g) >> rshift;
                turns.push(if t > 0 { t } else { (w != 0) as u32 });
            }
            let mut filled = vec![false; size];
            let mut n = 0;
            'fill: loop {
                for i in 0..n_dests {
                    for _ in 0..turns[i] {
                        let mut c = perm[i];
                        while filled[c] {
                            perm[i] += skip[i];
                            if perm[i] >= size {
                                perm[i] -= size;
                            }
                            c = perm[i];
                        }
                        filled[c] = true;
                        lookup[c] = i as u16;
                        n += 1;
                        if n == size {
                            break 'fill;
                        }
                    }
                }
            }
        }
        Maglev {
            lookup,
            fallback: flags.flag1,
            port: flags.flag2,
        }
    }

    fn slot(&self, src: &Source, offset: u32) -> usize {
        let port = if self.port { src.port } else { 0 };
        (endpoint(src.addr, port, SEED_OFFSET, offset) % self.lookup.len() as u64) as usize
    }

    /// The table (slot → dest index), for tests and benchmarks of its disruption.
    pub fn table(&self) -> &[u16] {
        &self.lookup
    }
}

impl Scheduler for Maglev {
    fn name(&self) -> &'static str {
        "mh"
    }

    fn schedule(&self, dests: &[Dest], src: &Source) -> Option<usize> {
        let ihash = self.slot(src, 0);
        let i = self.lookup[ihash];
        if i == NONE {
            return None;
        }
        if dests.get(i as usize)?.available() {
            return Some(i as usize);
        }
        // The fallback walk may hash up to the table size: not when nothing can take it.
        if !self.fallback || !dests.iter().any(Dest::available) {
            return None;
        }
        let size = self.lookup.len();
        for off in 0..size {
            let roff = ((off + ihash) % size) as u32;
            let i = self.lookup[self.slot(src, roff)];
            if i == NONE {
                break;
            }
            if dests.get(i as usize).is_some_and(Dest::available) {
                return Some(i as usize);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dests, src};
    use super::*;
    use std::net::IpAddr;

    fn owners(m: &Maglev, d: &[Dest]) -> Vec<IpAddr> {
        m.table().iter().map(|&i| d[i as usize].addr).collect()
    }

    #[test]
    fn table_shares_follow_weights() {
        let d = dests(&[1, 2, 1]);
        let m = Maglev::new(&d, SchedFlags::default(), 4093);
        let mut c = [0usize; 3];
        for &i in m.table() {
            c[i as usize] += 1;
        }
        let share = c[1] as f64 / 4093.0;
        assert!((share - 0.5).abs() < 0.02, "{c:?}");
    }

    #[test]
    fn removing_one_of_n_remaps_about_one_nth() {
        for n in [5usize, 10, 20] {
            let d = dests(&vec![1; n]);
            let before = owners(&Maglev::new(&d, SchedFlags::default(), 65537), &d);
            let mut d2 = d.clone();
            let gone = d2.remove(n / 2).addr;
            let after = owners(&Maglev::new(&d2, SchedFlags::default(), 65537), &d2);
            let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            let moved_others = before
                .iter()
                .zip(&after)
                .filter(|(a, b)| a != b && **a != gone)
                .count();
            let share = moved as f64 / 65537.0;
            let ideal = 1.0 / n as f64;
            assert!(
                share >= ideal * 0.95 && share <= ideal * 1.5,
                "n={n}: {share}"
            );
            // Flows of the realservers that stayed barely move.
            assert!(
                (moved_others as f64) < 0.05 * 65537.0,
                "n={n}: {moved_others}"
            );
        }
    }

    #[test]
    fn quiescing_moves_no_other_flow() {
        let d = dests(&[1, 1, 1]);
        let m = Maglev::new(&d, SchedFlags::default(), 4093);
        let mut q = d.clone();
        q[1].weight = 0; // last_weight stays 1: the table is the same.
        let m2 = Maglev::new(&q, SchedFlags::default(), 4093);
        assert_eq!(m.table(), m2.table());
        let fb = Maglev::new(
            &q,
            SchedFlags {
                flag1: true,
                ..Default::default()
            },
            4093,
        );
        for i in 0..2_000 {
            let c = src(i * 31);
            match m.schedule(&d, &c).unwrap() {
                1 => {
                    assert_eq!(m2.schedule(&q, &c), None);
                    assert_ne!(fb.schedule(&q, &c), Some(1));
                    assert!(fb.schedule(&q, &c).is_some());
                }
                k => assert_eq!(fb.schedule(&q, &c), Some(k)),
            }
        }
    }

    #[test]
    fn same_client_same_server() {
        let d = dests(&[1, 1, 1, 1]);
        let m = Maglev::new(&d, SchedFlags::default(), 251);
        for i in 0..500 {
            let c = src(i);
            let a = m.schedule(&d, &c);
            let c2 = Source { port: 1, ..c };
            assert_eq!(m.schedule(&d, &c2), a, "port ignored without mh-port");
        }
    }
}
