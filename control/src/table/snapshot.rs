//! What the data plane reads: the workers' immutable [`Snapshot`] and the XDP program's
//! steering keys.

use super::*;
use xlvs_common::L4Key;
use xlvs_dataplane::core::service::{IfaceInfo, Proto, Service, Snapshot};

impl ServiceTable {
    /// The snapshot the workers forward with.
    pub fn snapshot(&mut self, ifaces: &[IfaceInfo]) -> Snapshot {
        let mut snap = Snapshot {
            ifaces: ifaces.to_vec(),
            timeouts: self.timeouts,
            ..Default::default()
        };
        let cfg = self.sched_cfg;
        // Address services first: a fwmark group entry overrides one (IPVS looks a packet up
        // by its mark first).
        let lookup: Vec<Vec<VsKey>> = self.services.keys().map(|k| self.lookup_keys(k)).collect();
        // Each realserver's weight under health checking (None: out of the table).
        let live: Vec<Vec<Option<u32>>> = self
            .services
            .iter()
            .map(|(k, s)| self.live_weights(k, s))
            .collect();
        for (((key, svc), lookup), live) in self.services.iter_mut().zip(lookup).zip(live) {
            let built = svc.built.get_or_insert_with(|| {
                let dests: Vec<Dest> = svc
                    .dests
                    .iter()
                    .zip(live)
                    .filter_map(|(d, w)| {
                        let w = w?;
                        let mut p = d.published();
                        p.weight = w;
                        if w > 0 {
                            p.last_weight = w;
                        }
                        Some(p)
                    })
                    .collect();
                let (_, addr, port, mark) = key.parts();
                // A fwmark service is found under its group's keys, never its own.
                let key = match *key {
                    SvcKey::Addr(k) => k,
                    SvcKey::Mark { .. } => VsKey {
                        proto: Proto::Tcp,
                        addr,
                        port,
                    },
                };
                Arc::new(Service {
                    key,
                    mark,
                    sched: svc.sched.build(svc.flags, &dests, &cfg),
                    dests,
                    persist: svc.persist,
                    sorry: svc.sorry.as_ref().map(DestEntry::published),
                })
            });
            for k in lookup {
                snap.services.insert(k, built.clone());
            }
        }
        snap
    }

    /// Keys the XDP program steers: (virtual services, LVS-NAT realservers incl. retired ones).
    pub fn steer_keys(&self) -> (Vec<L4Key>, Vec<L4Key>) {
        // Each service's lookup keys, also for retired and orphaned realservers' services.
        let lookup: BTreeMap<&SvcKey, Vec<VsKey>> = self
            .services
            .keys()
            .chain(self.retired.iter().chain(&self.orphans).map(|(k, _)| k))
            .map(|k| (k, self.lookup_keys(k)))
            .collect();
        let mut vips: Vec<L4Key> = self
            .services
            .keys()
            .flat_map(|k| &lookup[k])
            .map(|k| L4Key::ip(k.addr, k.port, k.proto.number()))
            .collect();
        vips.sort_by_key(|k| (k.addr, k.port, k.proto));
        vips.dedup();
        // A NAT realserver's replies come from its port, or from the port the client asked
        // for if it has none (fwmark services): one key per port of the group.
        let mut reals: Vec<L4Key> = self
            .services
            .iter()
            .flat_map(|(k, s)| s.dests.iter().chain(s.sorry.iter()).map(move |d| (k, d)))
            .chain(
                self.retired
                    .iter()
                    .chain(&self.orphans)
                    .map(|(k, d)| (k, d)),
            )
            .filter(|(_, d)| d.fwd == Fwd::Masq)
            .flat_map(|(k, d)| {
                lookup[k].iter().map(move |v| {
                    let port = if d.port == 0 { v.port } else { d.port };
                    L4Key::ip(d.addr, port, v.proto.number())
                })
            })
            .collect();
        reals.sort_by_key(|k| (k.addr, k.port, k.proto));
        reals.dedup();
        (vips, reals)
    }
}
