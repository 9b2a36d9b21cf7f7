//! Schedulers: pick a realserver for a new connection, with IPVS semantics.
//!
//! One file per scheduler behind [`Scheduler`]. A scheduler sees the service's realservers in
//! IPVS list order (newest first) and their shared connection counters; it never allocates
//! while scheduling. Every scheduler skips realservers that are not [`Dest::available`]
//! (weight 0 = quiescent, or over the upper threshold), as IPVS does.
//!
//! A scheduler instance is built for one set of realservers ([`build`]): the hashing
//! schedulers (sh, mh) precompute their lookup tables there, and the control thread builds a
//! new instance whenever a service's realservers change.

mod hash;
mod lc;
mod mh;
mod nq;
mod rr;
mod sed;
mod sh;
mod wlc;
mod wrr;

use std::net::IpAddr;

pub use lc::LeastConnection;
pub use mh::Maglev;
pub use nq::NeverQueue;
pub use rr::RoundRobin;
pub use sed::ShortestExpectedDelay;
pub use sh::SourceHash;
pub use wlc::WeightedLeastConnection;
pub use wrr::WeightedRoundRobin;

use super::service::Dest;

/// The packet a new connection starts with, as far as schedulers look at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    pub addr: IpAddr,
    pub port: u16,
}

/// A scheduling algorithm (`ipvsadm -s NAME`).
pub trait Scheduler: Send + Sync + std::fmt::Debug {
    /// The name ipvsadm uses.
    fn name(&self) -> &'static str;
    /// Index into `dests` of the realserver for a new connection from `src`, or None if no
    /// realserver can take one. `dests` is the list the instance was built for.
    fn schedule(&self, dests: &[Dest], src: &Source) -> Option<usize>;
}

/// Scheduler flags (`ipvsadm -b`): IPVS `IP_VS_SVC_F_SCHED1..3`. sh and mh name the first two
/// `*-fallback` (try other realservers when the hashed one is unavailable) and `*-port` (hash
/// the source port too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SchedFlags {
    pub flag1: bool,
    pub flag2: bool,
    pub flag3: bool,
}

impl SchedFlags {
    pub fn is_empty(&self) -> bool {
        !(self.flag1 || self.flag2 || self.flag3)
    }

    /// Parses ipvsadm's `-b` list (`sh-fallback,sh-port`, `flag-1`, ...) for scheduler `sched`.
    pub fn parse(list: &str, sched: &str) -> Result<SchedFlags, String> {
        let mut f = SchedFlags::default();
        for name in list.split(',').filter(|s| !s.is_empty()) {
            let (prefix, which) = match name {
                "flag-1" => (None, 1),
                "flag-2" => (None, 2),
                "flag-3" => (None, 3),
                "sh-fallback" => (Some("sh"), 1),
                "sh-port" => (Some("sh"), 2),
                "mh-fallback" => (Some("mh"), 1),
                "mh-port" => (Some("mh"), 2),
                _ => return Err(format!("invalid scheduler flag `{name}'")),
            };
            if prefix.is_some_and(|p| p != sched) {
                return Err(format!("incompatible scheduler flag `{name}'"));
            }
            match which {
                1 => f.flag1 = true,
                2 => f.flag2 = true,
                _ => f.flag3 = true,
            }
        }
        Ok(f)
    }

    /// ipvsadm's `print_sched_flags`: names for sh and mh, `flag-N` otherwise.
    pub fn render(&self, sched: &str) -> String {
        let names: [&str; 3] = match sched {
            "sh" => ["sh-fallback", "sh-port", "flag-3"],
            "mh" => ["mh-fallback", "mh-port", "flag-3"],
            _ => ["flag-1", "flag-2", "flag-3"],
        };
        [self.flag1, self.flag2, self.flag3]
            .iter()
            .zip(names)
            .filter(|(on, _)| **on)
            .map(|(_, n)| n)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Settings of the director that schedulers read when built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedConfig {
    /// Maglev lookup table size: a prime (IPVS `CONFIG_IP_VS_MH_TAB_INDEX` selects it at
    /// build time; here `xlvsd --mh-table-size`).
    pub mh_table_size: usize,
}

impl Default for SchedConfig {
    fn default() -> Self {
        SchedConfig {
            mh_table_size: mh::DEFAULT_TABLE_SIZE,
        }
    }
}

/// A scheduling algorithm by ipvsadm name (`-s rr`, ...): the schedulers this build knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum SchedKind {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Sed,
    Nq,
    Sh,
    Mh,
}

impl SchedKind {
    /// Every scheduler, in ipvsadm's order of its help text.
    pub const ALL: [SchedKind; 8] = [
        SchedKind::Rr,
        SchedKind::Wrr,
        SchedKind::Lc,
        SchedKind::Wlc,
        SchedKind::Sed,
        SchedKind::Nq,
        SchedKind::Sh,
        SchedKind::Mh,
    ];

    /// The name ipvsadm uses.
    pub fn name(self) -> &'static str {
        match self {
            SchedKind::Rr => "rr",
            SchedKind::Wrr => "wrr",
            SchedKind::Lc => "lc",
            SchedKind::Wlc => "wlc",
            SchedKind::Sed => "sed",
            SchedKind::Nq => "nq",
            SchedKind::Sh => "sh",
            SchedKind::Mh => "mh",
        }
    }

    /// The scheduler named `name`, if this build knows it.
    pub fn from_name(name: &str) -> Option<SchedKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// An instance for these realservers.
    pub fn build(self, flags: SchedFlags, dests: &[Dest], cfg: &SchedConfig) -> Box<dyn Scheduler> {
        match self {
            SchedKind::Rr => Box::new(RoundRobin::default()),
            SchedKind::Wrr => Box::new(WeightedRoundRobin::new(dests)),
            SchedKind::Lc => Box::new(LeastConnection),
            SchedKind::Wlc => Box::new(WeightedLeastConnection),
            SchedKind::Sed => Box::new(ShortestExpectedDelay),
            SchedKind::Nq => Box::new(NeverQueue),
            SchedKind::Sh => Box::new(SourceHash::new(dests, flags)),
            SchedKind::Mh => Box::new(Maglev::new(dests, flags, cfg.mh_table_size)),
        }
    }
}

impl std::fmt::Display for SchedKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `name` is a scheduler this build knows.
pub fn known(name: &str) -> bool {
    SchedKind::from_name(name).is_some()
}

/// A scheduler instance by ipvsadm name, for these realservers.
pub fn build(
    name: &str,
    flags: SchedFlags,
    dests: &[Dest],
    cfg: &SchedConfig,
) -> Option<Box<dyn Scheduler>> {
    SchedKind::from_name(name).map(|k| k.build(flags, dests, cfg))
}

/// Greatest common divisor (of weights: wrr's step, Maglev's turns).
fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Whether `n` is prime (for the Maglev table size).
pub fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    let mut i = 2;
    while i * i <= n {
        if n.is_multiple_of(i) {
            return false;
        }
        i += 1;
    }
    true
}

/// The first available realserver minimising `overhead(d) / weight(d)`, compared as IPVS
/// does in integers (`loh * w_d > doh * w_least`), ties to the earlier one. Shared by wlc and
/// sed, which differ only in the overhead.
fn least_weighted(dests: &[Dest], overhead: impl Fn(&Dest) -> u64) -> Option<usize> {
    let first = dests.iter().position(Dest::available)?;
    let mut least = first;
    let mut loh = overhead(&dests[first]);
    for (i, d) in dests.iter().enumerate().skip(first + 1) {
        if !d.available() {
            continue;
        }
        let doh = overhead(d);
        if (loh as u128) * (d.weight as u128) > (doh as u128) * (dests[least].weight as u128) {
            least = i;
            loh = doh;
        }
    }
    Some(least)
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::super::service::{Dest, DestState, Fwd};
    use super::Source;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    pub fn dests(weights: &[u32]) -> Vec<Dest> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let addr = IpAddr::V4(Ipv4Addr::new(10, 0, (i >> 8) as u8, 10 + i as u8));
                Dest {
                    addr,
                    port: 80,
                    fwd: Fwd::Masq,
                    weight: w,
                    last_weight: w,
                    state: Arc::new(DestState::new(addr, 80)),
                }
            })
            .collect()
    }

    pub fn src(i: u32) -> Source {
        Source {
            addr: IpAddr::V4(Ipv4Addr::from_bits(0xc000_0200u32.wrapping_add(i))),
            port: 1024 + (i % 50_000) as u16,
        }
    }

    pub const ANY: Source = Source {
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        port: 40000,
    };
}

#[cfg(test)]
mod tests {
    use super::testutil::{ANY, dests};
    use super::*;

    #[test]
    fn flags_parse_and_render_like_ipvsadm() {
        let f = SchedFlags::parse("sh-fallback,sh-port", "sh").unwrap();
        assert!(f.flag1 && f.flag2 && !f.flag3);
        assert_eq!(f.render("sh"), "sh-fallback,sh-port");
        assert_eq!(f.render("wlc"), "flag-1,flag-2");
        assert_eq!(
            SchedFlags::parse("mh-port", "sh").unwrap_err(),
            "incompatible scheduler flag `mh-port'"
        );
        assert_eq!(
            SchedFlags::parse("bogus", "sh").unwrap_err(),
            "invalid scheduler flag `bogus'"
        );
        assert!(SchedFlags::parse("flag-3", "rr").unwrap().flag3);
    }

    #[test]
    fn every_scheduler_skips_weight_zero_and_overloaded() {
        for kind in SchedKind::ALL {
            let d = dests(&[0, 1, 1]);
            d[2].state
                .u_threshold
                .store(1, std::sync::atomic::Ordering::Relaxed);
            d[2].state.bind(super::super::service::Binding::Active);
            assert!(d[2].state.overloaded());
            let flags = SchedFlags {
                flag1: true,
                ..Default::default()
            };
            let s = kind.build(flags, &d, &SchedConfig::default());
            assert_eq!(s.name(), kind.name());
            assert_eq!(SchedKind::from_name(kind.name()), Some(kind));
            for i in 0..200 {
                let src = testutil::src(i);
                assert_eq!(s.schedule(&d, &src), Some(1), "{kind}");
            }
            let none = dests(&[0, 0]);
            let s = build(kind.name(), flags, &none, &SchedConfig::default()).unwrap();
            assert_eq!(s.schedule(&none, &ANY), None, "{kind}");
            let s = kind.build(flags, &[], &SchedConfig::default());
            assert_eq!(s.schedule(&[], &ANY), None, "{kind}");
        }
    }

    #[test]
    fn primes() {
        assert!(is_prime(65537) && is_prime(4093) && is_prime(251));
        assert!(!is_prime(65536) && !is_prime(1) && !is_prime(4095));
    }
}
