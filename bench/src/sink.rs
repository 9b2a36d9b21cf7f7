//! The sink: counts the frames a data plane delivered and records their one-way latency
//! (arrival time − the generator's stamp) in an HDR histogram.
//!
//! [`Tally`] is the sans-IO part (a frame and its arrival time in, counts out); [`run`] feeds
//! it from an AF_XDP socket that the `xlvs_sink` XDP program fills.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use aya::Ebpf;
use aya::maps::XskMap;
use aya::programs::{Xdp, XdpMode};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use xlvs_common::{MAP_SINK_XSKS, PROG_SINK};
use xsk_rs::FrameDesc;

use crate::loadgen::read_stamp;
use crate::xsk::{BATCH, Port, RING, mono_ns};

/// Latency percentiles, in nanoseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
    /// (percentile, ns) points of the distribution, for a CDF plot.
    pub cdf: Vec<(f64, u64)>,
}

/// What the sink saw.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SinkReport {
    /// Frames that carried a generator stamp.
    pub received: u64,
    /// Their bytes (without the FCS).
    pub bytes: u64,
    /// Frames without a stamp (ARP is passed to the kernel and not seen here).
    pub unstamped: u64,
    /// Stamps whose sequence number was not above the highest one seen (reordered or
    /// duplicated on the way).
    pub out_of_order: u64,
    pub latency: Latency,
}

/// Counts and latencies of the frames seen so far.
pub struct Tally {
    hist: Histogram<u64>,
    report: SinkReport,
    next_seq: u64,
}

/// The percentiles a CDF is drawn through.
const CDF_POINTS: &[f64] = &[
    0.0, 1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 97.0, 98.0, 99.0,
    99.5, 99.9, 99.95, 99.99, 100.0,
];

impl Default for Tally {
    fn default() -> Self {
        Tally {
            // 1 ns to 100 s at 3 significant digits.
            hist: Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds"),
            report: SinkReport::default(),
            next_seq: 0,
        }
    }
}

impl Tally {
    /// Counts one frame that arrived at `now_ns` (the generator's clock).
    pub fn record(&mut self, frame: &[u8], now_ns: u64) {
        let Some(stamp) = read_stamp(frame) else {
            self.report.unstamped += 1;
            return;
        };
        self.report.received += 1;
        self.report.bytes += frame.len() as u64;
        if stamp.seq < self.next_seq {
            self.report.out_of_order += 1;
        } else {
            self.next_seq = stamp.seq + 1;
        }
        self.hist
            .saturating_record(now_ns.saturating_sub(stamp.sent_ns).max(1));
    }

    pub fn report(&self) -> SinkReport {
        let h = &self.hist;
        let mut r = self.report.clone();
        if h.is_empty() {
            return r;
        }
        r.latency = Latency {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
            cdf: CDF_POINTS
                .iter()
                .map(|&p| (p, h.value_at_quantile(p / 100.0)))
                .collect(),
        };
        r
    }
}

/// The sink's XDP program attached to an interface; detached when dropped.
pub struct SinkProgram {
    _ebpf: Ebpf,
}

impl SinkProgram {
    /// Loads `xlvs_sink`, attaches it to `iface` (native mode, else generic) and puts
    /// `xsk_fd` in its XSKMAP for `queue`.
    pub fn attach(iface: &str, queue: u32, xsk_fd: std::os::fd::RawFd) -> anyhow::Result<Self> {
        let mut ebpf =
            Ebpf::load(xlvs_control::xdp::BENCH_XDP_OBJECT).context("loading the bench object")?;
        let mut xsks: XskMap<_> = ebpf
            .take_map(MAP_SINK_XSKS)
            .ok_or_else(|| anyhow!("map {MAP_SINK_XSKS} missing"))?
            .try_into()?;
        xsks.set(queue, xsk_fd, 0)
            .context("putting the socket in the XSKMAP")?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROG_SINK)
            .ok_or_else(|| anyhow!("program {PROG_SINK} missing"))?
            .try_into()?;
        prog.load().context("loading xlvs_sink (verifier)")?;
        if prog.attach(iface, XdpMode::Driver).is_err() {
            prog.attach(iface, XdpMode::Skb)
                .with_context(|| format!("attaching xlvs_sink to {iface}"))?;
        }
        drop(xsks);
        Ok(SinkProgram { _ebpf: ebpf })
    }
}

/// Receives until `duration`, or until `stop()` (then the frames already in the RX ring are
/// taken first, up to one ring's worth).
pub fn run(port: &mut Port, duration: Option<Duration>, stop: &dyn Fn() -> bool) -> SinkReport {
    let mut tally = Tally::default();
    let mut descs = [FrameDesc::default(); BATCH];
    let start = mono_ns();
    let end = duration.map(|d| start + d.as_nanos() as u64);
    // Frames taken since the stop request: at most one ring more, so traffic that never
    // stops cannot keep the sink running.
    let mut after_stop: Option<usize> = None;
    loop {
        port.refill();
        // Safety: the RX ring hands back frames of this port's UMEM that the kernel wrote.
        let n = unsafe { port.rx.consume(&mut descs) };
        let now = mono_ns();
        for d in &descs[..n] {
            // Safety: as above; read only.
            tally.record(unsafe { port.umem.data(d) }.contents(), now);
        }
        port.free.extend_from_slice(&descs[..n]);
        if end.is_some_and(|e| now >= e) {
            break;
        }
        if after_stop.is_none() && stop() {
            after_stop = Some(0);
        }
        if let Some(k) = after_stop.as_mut() {
            *k += n;
            if n == 0 || *k >= RING as usize {
                break;
            }
        }
        if n > 0 {
            continue;
        }
        // Wait for frames (a poll is also the fill ring's wakeup when the kernel asks for one).
        let _ = port.rx.poll(5);
    }
    tally.report()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::{L4, Size, Spec};
    use std::net::{Ipv4Addr, SocketAddrV4};

    #[test]
    fn tally_counts_and_percentiles() {
        let spec = Spec {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(198, 18, 0, 1),
            src_ips: 10,
            src_port: 1024,
            src_ports: 100,
            dst: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 100), 80),
            l4: L4::Udp,
            size: Size::Fixed(64),
        };
        let mut t = Tally::default();
        let mut buf = [0u8; 1518];
        // 1000 frames of 1..=1000 µs latency, the 500th sent twice and one out of order.
        for seq in 0..1000u64 {
            let n = spec.write(seq, 1_000_000, &mut buf);
            t.record(&buf[..n], 1_000_000 + (seq + 1) * 1000);
        }
        let n = spec.write(499, 1_000_000, &mut buf);
        t.record(&buf[..n], 1_000_000 + 500 * 1000);
        t.record(&[0u8; 60], 5);
        let r = t.report();
        assert_eq!(r.received, 1001);
        assert_eq!(r.bytes, 1001 * 60);
        assert_eq!(r.unstamped, 1);
        assert_eq!(r.out_of_order, 1);
        let near = |v: u64, want: u64| v.abs_diff(want) * 1000 <= want;
        assert!(near(r.latency.p50, 500_000), "{:?}", r.latency);
        assert!(near(r.latency.p99, 990_000), "{:?}", r.latency);
        assert!(near(r.latency.max, 1_000_000), "{:?}", r.latency);
        assert_eq!(r.latency.cdf.len(), CDF_POINTS.len());
        assert!(r.latency.cdf.windows(2).all(|w| w[0].1 <= w[1].1));
    }
}
