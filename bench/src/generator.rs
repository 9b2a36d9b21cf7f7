//! The generator: frames from a [`Spec`] out of an AF_XDP socket, stamped at send time,
//! paced to a rate, for a count or a duration (pktgen's `count`, `delay` and
//! `clone_skb 0`: every frame is written anew, with the next flow and sequence number).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use xsk_rs::FrameDesc;

use crate::loadgen::Spec;
use crate::xsk::{BATCH, Port, RING, mono_ns};

/// When to stop and how fast to go.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Frames per second; None = as fast as the socket takes them.
    pub rate: Option<u64>,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
}

/// What the generator did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct GenReport {
    /// Frames the kernel took from the TX ring (completed).
    pub sent: u64,
    /// Bytes of those frames, without the FCS.
    pub bytes: u64,
    /// From the first frame to the last completion.
    pub secs: f64,
    /// `sent / secs`.
    pub pps: f64,
    /// `sendto` calls made to push the TX ring (copy mode transmits only inside them).
    pub kicks: u64,
}

impl GenReport {
    /// Two generators' reports as one (they ran side by side): frames and bytes add up, the
    /// longer of the two times, the rates add up.
    pub fn merge(&self, o: &GenReport) -> GenReport {
        GenReport {
            sent: self.sent + o.sent,
            bytes: self.bytes + o.bytes,
            secs: self.secs.max(o.secs),
            pps: self.pps + o.pps,
            kicks: self.kicks + o.kicks,
        }
    }
}

/// How many frames may have left by `elapsed_ns` at `rate` per second (a token bucket that
/// starts with one batch, so a slow rate still sends in batches rather than one by one).
pub fn allowed(rate: Option<u64>, elapsed_ns: u64) -> u64 {
    match rate {
        None => u64::MAX,
        Some(r) => (r as u128 * elapsed_ns as u128 / 1_000_000_000) as u64 + BATCH as u64,
    }
}

/// Sends until a limit is reached; `stop` is polled once per batch.
pub fn run(port: &mut Port, spec: &Spec, limits: &Limits, stop: &dyn Fn() -> bool) -> GenReport {
    let count = limits.count.unwrap_or(u64::MAX);
    let deadline = limits.duration.map(|d| d.as_nanos() as u64);
    let mut scratch = [FrameDesc::default(); BATCH];
    let mut batch: Vec<FrameDesc> = Vec::with_capacity(BATCH);
    let (mut seq, mut done, mut bytes, mut kicks) = (0u64, 0u64, 0u64, 0u64);
    let mut in_flight = 0usize;
    let mut finished_at = None;
    let start = mono_ns();
    loop {
        let now = mono_ns();
        let elapsed = now - start;
        let n = port.reclaim(&mut scratch);
        done += n as u64;
        in_flight -= n;
        let finished = seq >= count || deadline.is_some_and(|d| elapsed >= d) || stop();
        if finished && in_flight == 0 && batch.is_empty() {
            break;
        }
        if !finished && batch.is_empty() {
            let want = allowed(limits.rate, elapsed)
                .saturating_sub(seq)
                .min(count - seq)
                .min(BATCH as u64) as usize;
            for _ in 0..want.min(port.free.len()) {
                let mut d = port.free.pop().expect("checked");
                let len = spec.len(seq);
                {
                    // Safety: `d` is a free frame of this port's UMEM, in no ring.
                    let mut data = unsafe { port.umem.data_mut(&mut d) };
                    data.cursor().set_pos(len);
                    spec.write(seq, now, data.contents_mut());
                }
                bytes += len as u64;
                batch.push(d);
                seq += 1;
            }
        }
        if !batch.is_empty() {
            // Safety: the frames are ours, written above.
            let put = unsafe { port.tx.produce(&batch) };
            batch.drain(..put);
            in_flight += put;
        }
        if port.tx.nb_free_exact() < RING {
            // Copy mode transmits only inside sendto(), 32 frames per call (and never sets
            // the ring's need_wakeup flag).
            let _ = port.tx.wakeup();
            kicks += 1;
        } else {
            // The kernel has every frame: sleep until the next batch is due (at most 1 ms),
            // or briefly while completions are awaited, rather than spin on the CPU the sink
            // shares.
            let ahead = match limits.rate {
                Some(r) if !finished => {
                    let due = allowed(Some(r), elapsed) - BATCH as u64;
                    (seq.saturating_sub(due) as u128 * 1_000_000_000 / r.max(1) as u128)
                        .min(1_000_000) as u64
                }
                _ => 0,
            };
            if ahead > 20_000 {
                std::thread::sleep(Duration::from_nanos(ahead));
            } else if in_flight > 0 && (finished || port.free.is_empty()) {
                std::thread::sleep(Duration::from_micros(20));
            }
        }
        if finished {
            // The kernel stopped completing (interface down): give up on the rest after 2 s.
            let since = *finished_at.get_or_insert(elapsed);
            if elapsed > since + 2_000_000_000 {
                break;
            }
        }
    }
    let secs = (mono_ns() - start) as f64 / 1e9;
    GenReport {
        sent: done,
        bytes,
        secs,
        pps: done as f64 / secs.max(1e-9),
        kicks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing() {
        assert_eq!(allowed(None, 0), u64::MAX);
        // One batch up front, then the rate.
        assert_eq!(allowed(Some(1000), 0), BATCH as u64);
        assert_eq!(allowed(Some(1000), 1_000_000_000), 1000 + BATCH as u64);
        assert_eq!(allowed(Some(1_000_000), 500_000), 500 + BATCH as u64);
        // No overflow at high rates over long runs.
        assert_eq!(
            allowed(Some(100_000_000), 3600 * 1_000_000_000),
            360_000_000_000 + BATCH as u64
        );
    }
}
