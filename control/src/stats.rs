//! Rates of the traffic counters, estimated as IPVS does (`ip_vs_est.c`), and ipvsadm's way of
//! printing large numbers.

use xlvs_dataplane::core::stats::Totals;

/// How often [`Estimator::update`] runs (IPVS: every 2 s).
pub const ESTIMATOR_PERIOD_SECS: u64 = 2;

/// A rate estimator (IPVS `struct ip_vs_estimator`): every 2 s it takes the counters' increase
/// and moves an exponentially weighted average a quarter of the way to it. Rates are kept
/// scaled like IPVS's (packets and connections × 2¹⁰ per second, bytes × 2⁵), so the figures
/// come out as IPVS's would for the same counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Estimator {
    last: Totals,
    cps: u64,
    inpps: u64,
    outpps: u64,
    inbps: u64,
    outbps: u64,
}

/// Rates per second (IPVS `struct ip_vs_stats_user` rate fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// `avg += (rate − avg) / 4`, in the scaled integers IPVS uses.
fn ewma(avg: &mut u64, rate: u64) {
    let a = *avg as i128;
    *avg = (a + ((rate as i128 - a) >> 2)).max(0) as u64;
}

impl Estimator {
    /// An estimator that starts from counters `now` (rates zero).
    pub fn new(now: Totals) -> Self {
        Estimator {
            last: now,
            ..Default::default()
        }
    }

    /// One estimation period ended with the counters at `now` (IPVS `ip_vs_estimation_timer`).
    pub fn update(&mut self, now: Totals) {
        let d = now.since(self.last);
        self.last = now;
        // Packets and connections: × 2⁹ per 2 s = × 2¹⁰ per second; bytes: × 2⁴ = × 2⁵.
        ewma(&mut self.cps, d.conns << 9);
        ewma(&mut self.inpps, d.inpkts << 9);
        ewma(&mut self.outpps, d.outpkts << 9);
        ewma(&mut self.inbps, d.inbytes << 4);
        ewma(&mut self.outbps, d.outbytes << 4);
    }

    /// The rates, rounded as IPVS's `ip_vs_read_estimator` does.
    pub fn rates(&self) -> Rates {
        Rates {
            cps: (self.cps + 0x1ff) >> 10,
            inpps: (self.inpps + 0x1ff) >> 10,
            outpps: (self.outpps + 0x1ff) >> 10,
            inbps: (self.inbps + 0xf) >> 5,
            outbps: (self.outbps + 0xf) >> 5,
        }
    }
}

/// ipvsadm's `print_largenum`: 9 columns, with K/M/G/T past 100 million; `--exact` prints the
/// whole number.
pub fn largenum(i: u64, exact: bool) -> String {
    // A space, then at least 8 columns: whole numbers with --exact can be wider.
    if exact || i < 100_000_000 {
        format!(" {i:>8}")
    } else if i < 1_000_000_000 {
        format!("{:>8}K", i / 1_000)
    } else if i < 100_000_000_000 {
        format!("{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        format!("{:>8}G", i / 1_000_000_000)
    } else {
        format!("{:>8}T", i / 1_000_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largenum_is_ipvsadms() {
        assert_eq!(largenum(0, false), "        0");
        assert_eq!(largenum(99_999_999, false), " 99999999");
        assert_eq!(largenum(123_456_789, false), "  123456K");
        assert_eq!(largenum(12_345_678_901, false), "   12345M");
        assert_eq!(largenum(123_456_789, true), " 123456789");
        assert_eq!(largenum(42, true), "       42");
    }

    #[test]
    fn a_steady_rate_converges_to_ipvs_figures() {
        let mut e = Estimator::new(Totals::default());
        let mut t = Totals::default();
        // 100 connections, 1000 packets and 1 MB in, per second, for two minutes.
        for _ in 0..60 {
            t.conns += 200;
            t.inpkts += 2000;
            t.inbytes += 2_000_000;
            e.update(t);
        }
        let r = e.rates();
        assert_eq!((r.cps, r.inpps, r.inbps), (100, 1000, 1_000_000));
        assert_eq!((r.outpps, r.outbps), (0, 0));
        // The first period moves the average a quarter of the way.
        let mut e = Estimator::new(Totals::default());
        e.update(Totals {
            conns: 800,
            ..Default::default()
        });
        assert_eq!(e.rates().cps, 100);
        // Traffic stops: the rate decays to zero.
        for _ in 0..40 {
            e.update(Totals {
                conns: 800,
                ..Default::default()
            });
        }
        assert_eq!(e.rates().cps, 0);
    }
}
