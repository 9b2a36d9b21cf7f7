//! ipvsadm's listings (`-L` in its layouts, `--json`, `-L --timeout`) and `-S`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use super::*;
use crate::command::{ListFormat, mask_text};
use crate::stats::largenum;
use xlvs_dataplane::core::tcp_state::TcpState;

/// IPVS's connection table size as ipvsadm reports it ("size=4096").
pub const IPVS_TAB_SIZE: u32 = 4096;

fn totals_row(t: Totals) -> [u64; 5] {
    [t.conns, t.inpkts, t.outpkts, t.inbytes, t.outbytes]
}

fn rates_row(r: Rates) -> [u64; 5] {
    [r.cps, r.inpps, r.outpps, r.inbps, r.outbps]
}

/// ipvsadm's `ADDR:PORT`, `[ADDR]:PORT` for IPv6.
fn ep(addr: IpAddr, port: u16) -> String {
    SocketAddr::new(addr, port).to_string()
}

impl ServiceTable {
    /// The services in ipvsadm's order (`ipvs_cmp_services`): by fwmark (address services
    /// have none), address family, protocol, address and port.
    pub(super) fn sorted(&self) -> Vec<(&SvcKey, &ServiceEntry)> {
        let mut v: Vec<_> = self.services.iter().collect();
        v.sort_by_key(|(k, _)| match k {
            SvcKey::Addr(a) => (0, a.addr.is_ipv6(), a.proto.number(), Some(a.addr), a.port),
            SvcKey::Mark { mark, v6 } => (*mark, *v6, 0, None, 0),
        });
        v
    }

    /// One service (or "No such service", ipvsadm's exit code 1), or all in ipvsadm's order.
    pub(super) fn select(
        &self,
        only: Option<&SvcKey>,
    ) -> Result<Vec<(&SvcKey, &ServiceEntry)>, CmdError> {
        match only {
            Some(k) => match self.services.get_key_value(k) {
                Some(kv) => Ok(vec![kv]),
                None => Err(CmdError {
                    msg: "No such service".into(),
                    code: 1,
                }),
            },
            None => Ok(self.sorted()),
        }
    }

    /// `ipvsadm -L -n` (or `-L -n -t SERVICE`) in one of its layouts (ipvsadm.c
    /// `print_title`, `print_service_entry`).
    pub fn list(
        &self,
        only: Option<&SvcKey>,
        format: ListFormat,
        exact: bool,
    ) -> Result<String, CmdError> {
        let mut out = String::new();
        if only.is_none() {
            let _ = writeln!(
                out,
                "IP Virtual Server version 1.2.1 (size={IPVS_TAB_SIZE})"
            );
        }
        let columns = |names: [&str; 5]| {
            format!(
                "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
                "Prot LocalAddress:Port", names[0], names[1], names[2], names[3], names[4]
            )
        };
        out.push_str(&match format {
            ListFormat::Normal => "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".to_string(),
            ListFormat::Stats => columns(["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"]),
            ListFormat::Rate => columns(["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"]),
            ListFormat::Thresholds => format!(
                "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
                "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
            ),
            ListFormat::PersistentConn => format!(
                "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
                "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
            ),
        });
        let services = self.select(only)?;
        let nums = |v: [u64; 5]| v.map(|n| largenum(n, exact)).concat();
        for (k, s) in services {
            // ipvsadm cuts an IPv4 service name at 33 characters and a realserver at 28.
            let mut name = k.label();
            if k.is_ipv4() {
                name.truncate(33);
            }
            match format {
                ListFormat::Stats => {
                    let t = self.raw_totals(k, s).since(s.zero);
                    let _ = write!(out, "{name:<33}{}", nums(totals_row(t)));
                }
                ListFormat::Rate => {
                    let r = s.est.rates();
                    let _ = write!(out, "{name:<33}{}", nums(rates_row(r)));
                }
                _ => {
                    let _ = write!(out, "{} {}", name, s.sched);
                    if !s.flags.is_empty() {
                        let _ = write!(out, " ({})", s.flags.render(s.sched.name()));
                    }
                    if let Some(p) = &s.persist {
                        let _ = write!(out, " persistent {}", p.timeout.as_secs());
                        if let Some(m) = mask_text(p.netmask) {
                            let _ = write!(out, " mask {m}");
                        }
                    }
                }
            }
            out.push('\n');
            // As IPVS under keepalived would list it: realservers health checking keeps out
            // are absent, and a sorry server that took over is listed.
            let mut dests: Vec<(&DestEntry, u32)> = s
                .dests
                .iter()
                .filter_map(|d| Some((d, self.live_weight(k, s, d)?)))
                .chain(
                    s.sorry
                        .iter()
                        .filter(|_| self.sorry_in_charge(k, s))
                        .map(|d| (d, d.weight)),
                )
                .collect();
            dests.sort_by_key(|(d, _)| (d.addr, d.port));
            for (d, weight) in dests {
                let mut dname = ep(d.addr, d.port);
                if d.addr.is_ipv4() {
                    dname.truncate(28);
                }
                let st = &d.state;
                let (active, inactive) = st.conns();
                let _ = match format {
                    ListFormat::Normal => writeln!(
                        out,
                        "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                        dname,
                        d.fwd.label(),
                        weight,
                        active,
                        inactive,
                    ),
                    ListFormat::Stats => {
                        writeln!(out, "  -> {dname:<28}{}", nums(totals_row(d.stats())))
                    }
                    ListFormat::Rate => {
                        let r = d.rates();
                        writeln!(
                            out,
                            "  -> {dname:<28} {:>8} {:>8} {:>8}{}{}",
                            r.cps,
                            r.inpps,
                            r.outpps,
                            largenum(r.inbps, exact),
                            largenum(r.outbps, exact)
                        )
                    }
                    ListFormat::Thresholds => writeln!(
                        out,
                        "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                        d.u_threshold, d.l_threshold, active, inactive
                    ),
                    ListFormat::PersistentConn => writeln!(
                        out,
                        "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                        weight,
                        st.persist.load(Ordering::Relaxed),
                        active,
                        inactive
                    ),
                };
            }
        }
        Ok(out)
    }

    /// `-L --json`: the table, counters (since `-Z`) and rates for scripts. Field names follow
    /// ipvsadm's column names.
    pub fn list_json(&self, only: Option<&SvcKey>) -> Result<serde_json::Value, CmdError> {
        use serde_json::json;
        let services = self.select(only)?;
        let stats = |t: Totals| {
            json!({"conns": t.conns, "inpkts": t.inpkts, "outpkts": t.outpkts,
                   "inbytes": t.inbytes, "outbytes": t.outbytes})
        };
        let rates = |r: Rates| {
            json!({"cps": r.cps, "inpps": r.inpps, "outpps": r.outpps,
                   "inbps": r.inbps, "outbps": r.outbps})
        };
        let dest = |(d, weight): (&DestEntry, u32)| {
            let st = &d.state;
            let conns = st.conns();
            json!({
                "address": d.addr.to_string(),
                "port": d.port,
                "forward": d.fwd.label(),
                "weight": weight,
                "u_threshold": d.u_threshold,
                "l_threshold": d.l_threshold,
                "active_conns": conns.0,
                "inact_conns": conns.1,
                "persist_conns": st.persist.load(Ordering::Relaxed),
                "stats": stats(d.stats()),
                "rates": rates(d.rates()),
            })
        };
        let list: Vec<_> = services
            .into_iter()
            .map(|(k, s)| {
                let mut dests: Vec<(&DestEntry, u32)> = s
                    .dests
                    .iter()
                    .filter_map(|d| Some((d, self.live_weight(k, s, d)?)))
                    .collect();
                dests.sort_by_key(|(d, _)| (d.addr, d.port));
                let (protocol, address, port, mark) = k.parts();
                json!({
                    "protocol": protocol,
                    "address": (mark == 0).then(|| address.to_string()),
                    "port": port,
                    "fwmark": (mark != 0).then_some(mark),
                    "family": if k.is_ipv4() { "inet" } else { "inet6" },
                    "scheduler": s.sched.name(),
                    "flags": s.flags.render(s.sched.name()),
                    "persistent": s.persist.map(|p| p.timeout.as_secs()),
                    "netmask": s.persist.and_then(|p| mask_text(p.netmask)),
                    "stats": stats(self.raw_totals(k, s).since(s.zero)),
                    "rates": rates(s.est.rates()),
                    "sorry_server": s.sorry.as_ref().map(|d| dest((d, d.weight))),
                    "sorry_in_charge": self.sorry_in_charge(k, s),
                    "realservers": dests.into_iter().map(dest).collect::<Vec<_>>(),
                })
            })
            .collect();
        let marks: Vec<_> = self
            .marks
            .iter()
            .map(|(m, g)| json!({"fwmark": m, "entries": g.iter().map(|e| e.to_string()).collect::<Vec<_>>()}))
            .collect();
        let t = &self.timeouts;
        Ok(json!({
            "services": list,
            "fwmark_groups": marks,
            "timeouts": {
                "tcp": t.tcp[TcpState::Established as usize],
                "tcpfin": t.tcp[TcpState::FinWait as usize],
                "udp": t.udp,
            },
        }))
    }

    /// `ipvsadm -S -n`: the table as rules that `-R`/`--rules` restore (the fwmark groups
    /// first, then each service and its realservers).
    pub fn save(&self) -> String {
        let mut out = String::new();
        for (mark, group) in &self.marks {
            for m in group {
                let _ = writeln!(
                    out,
                    "{}",
                    Command::AddMark {
                        mark: *mark,
                        member: *m
                    }
                );
            }
        }
        for (k, s) in self.sorted() {
            let _ = writeln!(
                out,
                "{}",
                Command::AddService {
                    key: *k,
                    opts: s.opts()
                }
            );
            let mut dests: Vec<&DestEntry> = s.dests.iter().collect();
            dests.sort_by_key(|d| (d.addr, d.port));
            for d in dests {
                let _ = writeln!(
                    out,
                    "{}",
                    Command::AddDest {
                        key: *k,
                        dest: d.spec()
                    }
                );
            }
        }
        out
    }

    /// `ipvsadm -L --timeout`.
    pub fn list_timeouts(&self) -> String {
        let t = &self.timeouts;
        format!(
            "Timeout (tcp tcpfin udp): {} {} {}\n",
            t.tcp[TcpState::Established as usize],
            t.tcp[TcpState::FinWait as usize],
            t.udp
        )
    }
}
