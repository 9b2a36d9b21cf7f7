//! The realservers' counters for what the XDP fast path forwards (`xlvsd --offload`), kept
//! live: once a second the control thread reads every entry of the program's `OFFLOAD` map
//! and counts, for the realserver of the entry's connection, what the entry forwarded since
//! it last looked. When a worker removes an entry it hands the entry's last figures over
//! ([`Final`]), and the next pass counts the rest. So `--stats`, the rates and `/metrics`
//! lag the fast path by a second at most, every frame is counted once, and the counters
//! only grow.
//!
//! Sans-IO: [`FastCredit::pass`] is given the entries (the driver reads the map,
//! [`crate::offload_map::OffloadMap::entries`]) and the table, and writes the counters
//! ([`crate::core::stats::DestCounters::fast_path`], the control thread's own shard).

use std::collections::HashMap;

use xlvs_common::{FlowKey, Offload};

use crate::core::conn::Tables;
use crate::core::offload::Final;
use crate::core::service::DestState;

/// What has been counted of one entry (a tuple, filed at a time).
#[derive(Clone, Copy, Debug, Default)]
struct Counted {
    packets: u64,
    ip_bytes: u64,
    /// The pass that last saw the entry in the map.
    seen: u64,
}

impl Counted {
    /// Counts for `dest` (direction `out`) what an entry's figures add to these; returns
    /// the packets.
    fn credit(&self, dest: &DestState, out: bool, packets: u64, ip_bytes: u64) -> u64 {
        let (p, b) = (
            packets.saturating_sub(self.packets),
            ip_bytes.saturating_sub(self.ip_bytes),
        );
        if p > 0 || b > 0 {
            dest.stats.fast_path(out, p, b);
        }
        p
    }
}

/// The control thread's record of what it counted of each live entry.
#[derive(Debug, Default)]
pub struct FastCredit {
    counted: HashMap<(FlowKey, u64), Counted>,
    passes: u64,
}

impl FastCredit {
    /// One pass: first the entries the workers removed since the last pass (from
    /// `table`'s queue), then every live entry, as `read` gives them. The map must be read
    /// after the queue is emptied: an entry removed in between is then either in neither
    /// (its final figures wait for the next pass) or in the read with figures no larger
    /// than its final ones, so nothing is counted twice. Returns the packets counted.
    pub fn pass<I: IntoIterator<Item = (FlowKey, Offload)>>(
        &mut self,
        tables: &Tables,
        read: impl FnOnce() -> I,
    ) -> u64 {
        self.passes += 1;
        let mut counted = 0;
        while let Some(f) = tables.take_offload_final() {
            counted += self.final_figures(&f);
        }
        for (key, v) in read() {
            // The realserver and direction are the connection's; an entry whose connection
            // is gone is on its way out, and its final figures will come.
            let Some((dest, out)) = tables.flow_dest(&key) else {
                continue;
            };
            let c = self.counted.entry((key, v.filed_ns)).or_default();
            counted += c.credit(&dest, out, v.packets, v.bytes);
            c.packets = c.packets.max(v.packets);
            c.ip_bytes = c.ip_bytes.max(v.bytes);
            c.seen = self.passes;
        }
        // An entry missing from two passes in a row without final figures went with the
        // whole map (the queue of entries to remove overflowed): forgotten.
        let passes = self.passes;
        self.counted.retain(|_, c| c.seen + 1 >= passes);
        counted
    }

    fn final_figures(&mut self, f: &Final) -> u64 {
        let c = self
            .counted
            .remove(&(f.key, f.filed_ns))
            .unwrap_or_default();
        c.credit(&f.dest, f.out, f.packets, f.ip_bytes)
    }

    /// Entries it keeps figures of.
    pub fn len(&self) -> usize {
        self.counted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counted.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::*;
    use crate::core::conn::{ConnKey, Tables};
    use crate::core::offload::flow_key;
    use crate::core::service::{Fwd, Proto};
    use crate::core::{Core, Instant, Verdict};
    use crate::testing::{EXT_MAC, snapshot, tcp_frame};
    use crate::wire::tcp::SYN;

    const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
    const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const RIP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 11);

    fn key(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> FlowKey {
        flow_key(&ConnKey {
            src: src.0,
            dst: dst.0,
            sport: src.1,
            dport: dst.1,
            proto: 6,
        })
    }

    /// An entry that forwarded `packets` 64-byte frames (50 bytes of IP each), filed at
    /// `filed`.
    fn entry(packets: u64, filed: u64) -> Offload {
        Offload {
            packets,
            bytes: packets * 50,
            filed_ns: filed,
            ..Offload::default()
        }
    }

    /// Live entries are counted as they grow, each frame once; a removed entry's last
    /// figures add only what was not counted yet; a new entry of the same tuple counts from
    /// zero; the reply direction counts as outbound; entries that vanish are forgotten.
    #[test]
    fn every_frame_the_program_forwards_is_counted_once_as_it_goes() {
        let tables = Arc::new(Tables::new(1 << 10));
        let mut core = Core::new(tables.clone());
        let snap = snapshot(Proto::Tcp, (VIP, 80), &[(RIP, 8080)], Fwd::Masq, "rr");
        let mut syn = tcp_frame(EXT_MAC, EXT_MAC, (CIP, 40000), (VIP, 80), SYN, 64, b"");
        assert!(matches!(
            core.process(Instant(1), &snap, &mut syn, 0),
            Verdict::Tx(_)
        ));
        let t = &*tables;
        let (dest, _) = t.flow_dest(&key((CIP, 40000), (VIP, 80))).unwrap();
        let base = dest.stats.totals();
        let totals = || {
            let n = dest.stats.totals();
            (
                n.inpkts - base.inpkts,
                n.inbytes - base.inbytes,
                n.outpkts - base.outpkts,
            )
        };
        let inn = key((CIP, 40000), (VIP, 80));
        let out = key((RIP, 8080), (CIP, 40000));
        let mut c = FastCredit::default();
        assert_eq!(c.pass(t, || [(inn, entry(10, 5)), (out, entry(4, 6))]), 14);
        assert_eq!(totals(), (10, 10 * 50, 4));
        assert_eq!(c.pass(t, || [(inn, entry(15, 5)), (out, entry(4, 6))]), 5);
        assert_eq!(totals(), (15, 15 * 50, 4));
        // The worker removed the client entry after 20 frames.
        t.v4.push_offload_final(Final {
            key: inn,
            filed_ns: 5,
            dest: dest.clone(),
            out: false,
            packets: 20,
            ip_bytes: 20 * 50,
        })
        .unwrap();
        assert_eq!(c.pass(t, || [(out, entry(4, 6))]), 5);
        assert_eq!(totals(), (20, 20 * 50, 4));
        // The tuple comes back as a new entry.
        c.pass(t, || [(inn, entry(3, 9)), (out, entry(4, 6))]);
        assert_eq!(totals(), (23, 23 * 50, 4));
        // The map emptied without final figures: the records go after two passes.
        c.pass(t, Vec::new);
        assert_eq!(c.len(), 2);
        c.pass(t, Vec::new);
        assert!(c.is_empty());
        assert_eq!(totals(), (23, 23 * 50, 4));
        // An entry whose connection is gone is left for its final figures.
        let stray = key((CIP, 40001), (VIP, 80));
        assert_eq!(c.pass(t, || [(stray, entry(7, 1))]), 0);
    }
}
