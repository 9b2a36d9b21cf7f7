//! The sync backup's decisions, sans IO: a received datagram becomes the connections and
//! templates to insert into the table (the workers insert them, [`Spec`]), as the kernel's
//! `ip_vs_proc_conn` would apply them:
//!
//! - the datagram is checked by [`decode`] (the kernel's checks in its order);
//! - an entry keeps the flags a backup keeps; an entry of a forwarding method xlvs does not
//!   have (tunnel, local, bypass) is dropped and counted;
//! - a v1 entry lives its message's timeout from now; a v0 entry (no timeout on the wire)
//!   the backup's own timeout for its state (templates: 180 s, as the kernel's v0 path);
//! - a template right after a connection with the same service and realserver is the
//!   connection's persistence template (the kernel sends `cp->control` right after `cp`):
//!   it is inserted first and the connection linked to it;
//! - the client's next hop is left to the caller (the control thread fills it in from the
//!   kernel's tables when it hands the entry to a worker), else the client's next frame
//!   teaches it.
//!
//! Every drop is counted by reason (the wire's [`Reject`] and [`EntryDrop`] labels, plus
//! this module's own).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use xlvs_dataplane::core::conn::TemplateKey;
use xlvs_dataplane::core::inject::{ConnSpec, Spec, TemplateSpec};
use xlvs_dataplane::core::service::{Fwd, Proto, Timeouts};
use xlvs_dataplane::core::tcp_state::TcpState;

use super::{SyncConn, Version, decode, flags};

/// What a backup did, for `-L --daemon`, `--json` and /metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupStats {
    pub datagrams: u64,
    /// Entries turned into insertions.
    pub entries: u64,
    /// Datagrams ignored or cut short, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Entries dropped, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
}

/// The sync backup, sans IO.
pub struct Backup {
    syncid: u8,
    stats: BackupStats,
}

/// A v0 template's lifetime (the kernel's v0 path: no timeout on the wire).
const V0_TEMPLATE_TIMEOUT: Duration = Duration::from_secs(180);

impl Backup {
    /// A backup of sync id `syncid` (0: every master's messages).
    pub fn new(syncid: u8) -> Self {
        Backup {
            syncid,
            stats: BackupStats::default(),
        }
    }

    pub fn stats(&self) -> &BackupStats {
        &self.stats
    }

    /// A datagram from a master (`from`, the entries' origin): what to insert, in order (a
    /// template before the connection it controls). `timeouts` are the backup's own (for v0).
    pub fn on_datagram(
        &mut self,
        data: &[u8],
        from: Option<IpAddr>,
        timeouts: &Timeouts,
    ) -> Vec<Spec> {
        self.stats.datagrams += 1;
        let d = match decode(data, self.syncid) {
            Ok(d) => d,
            Err(r) => {
                *self.stats.rejected.entry(r.label()).or_default() += 1;
                return Vec::new();
            }
        };
        if let Some((_, r)) = &d.stopped {
            *self.stats.rejected.entry(r.label()).or_default() += 1;
        }
        for (_, why) in &d.dropped {
            *self.stats.dropped.entry(why.label()).or_default() += 1;
        }
        let mut out: Vec<Spec> = Vec::with_capacity(d.conns.len());
        let mut i = 0;
        while i < d.conns.len() {
            let c = &d.conns[i];
            if c.is_template() {
                if let Some(t) = self.template(c, d.version) {
                    out.push(Spec::Template(t));
                }
                i += 1;
                continue;
            }
            let Some(mut spec) = self.conn(c, d.version, timeouts) else {
                i += 1;
                continue;
            };
            // Its template, if it follows.
            if let Some(next) = d.conns.get(i + 1).filter(|n| controls(n, c))
                && let Some(t) = self.template(next, d.version)
            {
                spec.template = Some(t.key);
                out.push(Spec::Template(t));
                i += 1;
            }
            out.push(Spec::Conn(spec));
            i += 1;
        }
        for s in &mut out {
            match s {
                Spec::Conn(c) => c.origin = from,
                Spec::Template(t) => t.origin = from,
            }
        }
        self.stats.entries += out.len() as u64;
        out
    }

    /// A datagram its driver refused before decoding (not from an allowed peer, a bad MAC),
    /// counted as received and rejected for `why`.
    pub fn reject(&mut self, why: &'static str) {
        self.stats.datagrams += 1;
        *self.stats.rejected.entry(why).or_default() += 1;
    }

    fn count_drop(&mut self, why: &'static str) {
        *self.stats.dropped.entry(why).or_default() += 1;
    }

    fn fwd(&mut self, c: &SyncConn) -> Option<Fwd> {
        match c.fwd() {
            flags::FWD_MASQ => Some(Fwd::Masq),
            flags::FWD_DR => Some(Fwd::Route),
            _ => {
                self.count_drop("forwarding_method");
                None
            }
        }
    }

    fn conn(&mut self, c: &SyncConn, version: Version, timeouts: &Timeouts) -> Option<ConnSpec> {
        let fwd = self.fwd(c)?;
        let Some(proto) = Proto::from_number(c.proto) else {
            self.count_drop("protocol");
            return None;
        };
        let state = match proto {
            Proto::Tcp => match TcpState::ALL.get(c.state as usize) {
                Some(s) => *s,
                None => {
                    self.count_drop("state");
                    return None;
                }
            },
            Proto::Udp => TcpState::None,
        };
        let secs = match (version, proto) {
            (Version::V1, _) => c.timeout,
            (Version::V0, Proto::Tcp) => timeouts.tcp[state as usize],
            (Version::V0, Proto::Udp) => timeouts.udp,
        };
        Some(ConnSpec {
            proto,
            caddr: c.caddr,
            cport: c.cport,
            vaddr: c.vaddr,
            vport: c.vport,
            daddr: c.daddr,
            dport: c.dport,
            fwd,
            state,
            timeout: Duration::from_secs(secs as u64),
            client_hop: None,
            template: None,
            origin: None,
        })
    }

    fn template(&mut self, c: &SyncConn, version: Version) -> Option<TemplateSpec> {
        let fwd = self.fwd(c)?;
        let timeout = match version {
            Version::V1 => Duration::from_secs(c.timeout as u64),
            Version::V0 => V0_TEMPLATE_TIMEOUT,
        };
        Some(TemplateSpec {
            key: TemplateKey {
                proto: c.proto,
                caddr: c.caddr,
                vaddr: c.vaddr,
                vport: c.vport,
            },
            daddr: c.daddr,
            dport: c.dport,
            fwd,
            timeout,
            origin: None,
        })
    }
}

/// Whether template `t` is the persistence template of connection `c` (sent right after it):
/// the same realserver, and the same service (a fwmark template carries the mark).
fn controls(t: &SyncConn, c: &SyncConn) -> bool {
    t.is_template()
        && t.daddr == c.daddr
        && (t.dport == c.dport || t.dport == 0)
        && ((t.proto == c.proto && t.vaddr == c.vaddr && (t.vport == c.vport || t.vport == 0))
            || (t.proto == 0 && t.fwmark != 0))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use xlvs_dataplane::core::Core;
    use xlvs_dataplane::core::Instant;
    use xlvs_dataplane::core::conn::Tables;
    use xlvs_dataplane::core::service::Snapshot;

    use super::*;
    use crate::conns;
    use crate::sync::tests::{V0_CAPTURE, V1_CAPTURE, udp_payloads};

    /// The kernel master's datagram through a backup into a real core: the connections
    /// tshark shows, with the kernel's states and timeouts.
    #[test]
    fn the_kernel_masters_datagram_becomes_the_same_connections() {
        let datagrams = udp_payloads(V1_CAPTURE);
        assert_eq!(datagrams.len(), 1);
        let mut b = Backup::new(7);
        let specs = b.on_datagram(&datagrams[0], None, &Timeouts::default());
        assert_eq!(specs.len(), 15);
        let tables = Arc::new(Tables::new(1024));
        let mut core = Core::new(tables.clone());
        let snap = Snapshot::default();
        let now = Instant(1 << 20);
        for s in &specs {
            core.insert(now, &snap, s).expect("inserted");
        }
        // Five connections, each sent three times as it moved ESTABLISHED (900 s) →
        // CLOSE_WAIT (60 s) → TIME_WAIT (120 s): each update replaced the entry, so the
        // backup holds five, in their last state for its full timeout.
        let e = conns::entries(&tables, now);
        assert_eq!(e.len(), 5);
        for e in &e {
            assert_eq!(e.state, "TIME_WAIT", "{}", e.client);
            assert!((119..=120).contains(&e.expire), "{} s", e.expire);
        }
        assert!(e.iter().all(|e| e.proto == "TCP"));
        assert_eq!(b.stats().entries, 15);
        // Another syncid: ignored and counted.
        let mut other = Backup::new(8);
        assert!(
            other
                .on_datagram(&datagrams[0], None, &Timeouts::default())
                .is_empty()
        );
        assert_eq!(other.stats().rejected.get("wrong_syncid"), Some(&1));
    }

    #[test]
    fn the_v0_datagram_takes_the_backups_own_timeout() {
        let datagrams = udp_payloads(V0_CAPTURE);
        let mut b = Backup::new(0);
        let specs = b.on_datagram(&datagrams[0], None, &Timeouts::default());
        let [Spec::Conn(c)] = &specs[..] else {
            panic!("one connection: {specs:?}")
        };
        assert_eq!(c.fwd, Fwd::Route);
        assert_eq!(
            c.timeout,
            Duration::from_secs(Timeouts::default().tcp[c.state as usize] as u64)
        );
    }

    #[test]
    fn a_template_after_its_connection_is_inserted_first_and_linked() {
        use crate::sync::{Encoder, SyncConn};
        let conn = SyncConn {
            proto: 6,
            flags: 0,
            state: 1,
            cport: 40000,
            vport: 80,
            dport: 8080,
            fwmark: 0,
            timeout: 900,
            caddr: "192.0.2.10".parse().unwrap(),
            vaddr: "198.51.100.1".parse().unwrap(),
            daddr: "10.0.0.11".parse().unwrap(),
            seq: None,
            pe_data: None,
            pe_name: None,
        };
        let tpl = SyncConn {
            flags: flags::TEMPLATE | flags::INACTIVE,
            cport: 0,
            timeout: 300,
            caddr: "192.0.2.0".parse().unwrap(),
            ..conn.clone()
        };
        let mut enc = Encoder::new(3, Encoder::DEFAULT_MAXLEN);
        assert!(enc.push(&conn).unwrap().is_none());
        assert!(enc.push(&tpl).unwrap().is_none());
        let d = enc.flush().unwrap();
        let mut b = Backup::new(3);
        let specs = b.on_datagram(&d, None, &Timeouts::default());
        let [Spec::Template(t), Spec::Conn(c)] = &specs[..] else {
            panic!("template then connection: {specs:?}")
        };
        assert_eq!(c.template, Some(t.key));
        assert_eq!(t.timeout, Duration::from_secs(300));
    }
}
