//! The Prometheus exposition (`xlvsd --metrics ADDR:PORT`, text format 0.0.4): per service and
//! realserver the IPVS counters and rates, per worker its packet, drop and ring counts, and the
//! XDP program's counters.
//!
//! Label names follow node_exporter's IPVS collector (`local_address`, `local_port`,
//! `local_mark`, `proto`, `remote_address`, `remote_port`), plus `role` (realserver or sorry
//! server). A fwmark service has `proto="FWM"`, the unspecified address of its family and its
//! mark in decimal.
//! Cardinality is bounded by the configuration (services × realservers, workers × drop
//! reasons): no label per connection or per client.
//!
//! Counters are totals since the daemon started: `-Z` zeroes what ipvsadm shows, not these
//! (a Prometheus counter only goes up; its rates come from `rate()`).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::{Duration, Instant};

use xlvs_dataplane::afxdp::WorkerHandle;
use xlvs_dataplane::core::DropReason;
use xlvs_dataplane::core::stats::Totals;

use crate::command::SvcKey;
use crate::stats::Rates;
use crate::table::ServiceTable;

/// One metric family: its samples must be written together.
struct Family {
    name: String,
    kind: &'static str,
    help: &'static str,
    /// (name suffix, labels, value).
    samples: Vec<(&'static str, String, String)>,
}

/// Metric families in the order first added.
#[derive(Default)]
pub struct Exposition {
    families: Vec<Family>,
}

pub type Labels<'a> = &'a [(&'a str, String)];

impl Exposition {
    fn add(&mut self, name: &str, kind: &'static str, help: &'static str, l: Labels, v: u64) {
        self.sample(name, kind, help, "", l, v.to_string());
    }

    /// A sample of family `xlvs_{name}` (created with `kind` and `help` if new), named with
    /// `suffix` (a histogram's `_bucket`, `_sum`, `_count`).
    pub fn sample(
        &mut self,
        name: &str,
        kind: &'static str,
        help: &'static str,
        suffix: &'static str,
        l: Labels,
        v: String,
    ) {
        let name = format!("xlvs_{name}");
        let i = match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family {
                    name,
                    kind,
                    help,
                    samples: Vec::new(),
                });
                self.families.len() - 1
            }
        };
        let mut labels = String::new();
        for (k, val) in l {
            let sep = if labels.is_empty() { "" } else { "," };
            let _ = write!(labels, "{sep}{k}=\"{}\"", escape(val));
        }
        self.families[i].samples.push((suffix, labels, v));
    }

    fn counter(&mut self, name: &str, help: &'static str, l: Labels, v: u64) {
        self.add(name, "counter", help, l, v);
    }

    fn gauge(&mut self, name: &str, help: &'static str, l: Labels, v: u64) {
        self.add(name, "gauge", help, l, v);
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for f in &self.families {
            let _ = writeln!(s, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(s, "# TYPE {} {}", f.name, f.kind);
            for (suffix, labels, v) in &f.samples {
                if labels.is_empty() {
                    let _ = writeln!(s, "{}{suffix} {v}", f.name);
                } else {
                    let _ = writeln!(s, "{}{suffix}{{{labels}}} {v}", f.name);
                }
            }
        }
        s
    }
}

/// A label value escaped as the text format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The labels of a service.
pub(crate) fn service_labels(k: &SvcKey) -> Vec<(&'static str, String)> {
    let (proto, addr, port, mark) = k.parts();
    let mark = if mark == 0 {
        String::new()
    } else {
        mark.to_string()
    };
    vec![
        ("proto", proto.to_string()),
        ("local_address", addr.to_string()),
        ("local_port", port.to_string()),
        ("local_mark", mark),
    ]
}

/// The counters and rates of a service or realserver, under `prefix` (`service`, `backend`).
fn traffic(e: &mut Exposition, prefix: &str, l: Labels, t: Totals, r: Rates) {
    const COUNTERS: [(&str, &str); 5] = [
        ("connections_total", "Connections scheduled (IPVS conns)."),
        (
            "incoming_packets_total",
            "Packets from clients (IPVS inpkts).",
        ),
        (
            "outgoing_packets_total",
            "Packets to clients (IPVS outpkts; LVS-NAT only, DR replies bypass the director).",
        ),
        (
            "incoming_bytes_total",
            "IP bytes from clients (IPVS inbytes).",
        ),
        (
            "outgoing_bytes_total",
            "IP bytes to clients (IPVS outbytes).",
        ),
    ];
    const RATES: [(&str, &str); 5] = [
        (
            "connection_rate",
            "Connections per second, IPVS's 2 s estimator (ipvsadm --rate CPS).",
        ),
        (
            "incoming_packet_rate",
            "Packets per second from clients (ipvsadm --rate InPPS).",
        ),
        (
            "outgoing_packet_rate",
            "Packets per second to clients (ipvsadm --rate OutPPS).",
        ),
        (
            "incoming_byte_rate",
            "Bytes per second from clients (ipvsadm --rate InBPS).",
        ),
        (
            "outgoing_byte_rate",
            "Bytes per second to clients (ipvsadm --rate OutBPS).",
        ),
    ];
    let totals = [t.conns, t.inpkts, t.outpkts, t.inbytes, t.outbytes];
    for ((name, help), v) in COUNTERS.into_iter().zip(totals) {
        e.counter(&format!("{prefix}_{name}"), help, l, v);
    }
    let rates = [r.cps, r.inpps, r.outpps, r.inbps, r.outbps];
    for ((name, help), v) in RATES.into_iter().zip(rates) {
        e.gauge(&format!("{prefix}_{name}"), help, l, v);
    }
}

/// Services and realservers.
pub fn table(e: &mut Exposition, t: &ServiceTable) {
    for (k, s) in t.services() {
        let l = service_labels(k);
        let total = t.service_raw_totals(k).unwrap_or_default();
        traffic(e, "service", &l, total, s.rates());
        // A sorry server may share its address with a realserver: `role` keeps the series
        // apart.
        let roles = s.dests.iter().map(|d| (d, "realserver"));
        for (d, role) in roles.chain(s.sorry.iter().map(|d| (d, "sorry"))) {
            let mut l = l.clone();
            l.push(("remote_address", d.addr.to_string()));
            l.push(("remote_port", d.port.to_string()));
            l.push(("role", role.to_string()));
            let st = &d.state;
            e.gauge(
                "backend_connections_active",
                "Connections in an active state (ipvsadm ActiveConn).",
                &l,
                st.conns().0 as u64,
            );
            e.gauge(
                "backend_connections_inactive",
                "Connections in any other state, and UDP ones (ipvsadm InActConn).",
                &l,
                st.conns().1 as u64,
            );
            e.gauge(
                "backend_persistent_connections",
                "Persistence templates bound to the realserver (ipvsadm PersistConn).",
                &l,
                st.persist.load(Ordering::Relaxed) as u64,
            );
            e.gauge(
                "backend_weight",
                "Configured weight (the sorry server counts 1).",
                &l,
                d.weight as u64,
            );
            traffic(e, "backend", &l, st.stats.totals(), d.rates());
        }
    }
}

/// The workers' counters.
pub fn workers(e: &mut Exposition, workers: &[WorkerHandle]) {
    for w in workers {
        let l = [("worker", w.name.clone())];
        let st = &w.stats;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        for r in DropReason::ALL {
            e.counter(
                "worker_drops_total",
                "Frames dropped, by reason.",
                &[("worker", w.name.clone()), ("reason", r.name().to_string())],
                get(&st.drops[r as usize]),
            );
        }
        e.counter(
            "worker_drops_total",
            "Frames dropped, by reason.",
            &[("worker", w.name.clone()), ("reason", "inbox_full".into())],
            get(&st.inbox_full),
        );
        let k = &st.xsk;
        for (name, help, v) in [
            (
                "rx_packets_total",
                "Frames the worker received from its AF_XDP socket.",
                &st.rx,
            ),
            ("tx_packets_total", "Frames the worker forwarded.", &st.tx),
            (
                "sent_packets_total",
                "Frames the worker put on its own port (a bond member's share of the transmissions).",
                &st.sent,
            ),
            (
                "no_egress_total",
                "Frames dropped because no member of their bond could transmit.",
                &st.no_egress,
            ),
            (
                "new_connections_total",
                "Connections the worker created.",
                &st.new_conns,
            ),
            (
                "offloaded_total",
                "Connection directions the worker handed to the XDP fast path (--offload).",
                &st.offloaded,
            ),
            (
                "offload_refused_total",
                "Connection directions the XDP fast path's map refused (full).",
                &st.offload_refused,
            ),
            (
                "syn_evicted_total",
                "Half-open connections removed to make room for newer ones (--max-syn-recv).",
                &st.syn_evicted,
            ),
            (
                "tx_ring_full_total",
                "Batches that found the TX ring without room for every frame.",
                &st.tx_ring_full,
            ),
            (
                "fill_ring_starved_total",
                "Times the fill ring could not be topped up (no free frames).",
                &st.fill_starved,
            ),
            (
                "tx_kicks_total",
                "sendto() calls that pushed the TX ring (copy mode sends only inside them).",
                &st.tx_kicks,
            ),
            (
                "xsk_rx_ring_full_total",
                "Frames the kernel dropped because the RX ring was full (XDP_STATISTICS).",
                &k.rx_ring_full,
            ),
            (
                "xsk_fill_ring_empty_total",
                "Frames the kernel could not receive: fill ring empty (XDP_STATISTICS).",
                &k.rx_fill_ring_empty,
            ),
            (
                "xsk_tx_ring_empty_total",
                "Times the kernel found the TX ring empty when asked to send (XDP_STATISTICS).",
                &k.tx_ring_empty,
            ),
            (
                "xsk_rx_dropped_total",
                "Frames the kernel dropped for other reasons (XDP_STATISTICS).",
                &k.rx_dropped,
            ),
            (
                "xsk_rx_invalid_descs_total",
                "RX descriptors the kernel found invalid (XDP_STATISTICS).",
                &k.rx_invalid_descs,
            ),
            (
                "xsk_tx_invalid_descs_total",
                "TX descriptors the kernel found invalid (XDP_STATISTICS).",
                &k.tx_invalid_descs,
            ),
        ] {
            e.counter(&format!("worker_{name}"), help, &l, get(v));
        }
    }
}

/// The ports (plain interfaces and bond members): whether each can transmit, and the frames
/// received and sent on it.
pub fn ports(e: &mut Exposition, workers: &[WorkerHandle], links: &crate::bond::links::Links) {
    for (p, name) in links.ports().iter().enumerate() {
        let p = p as u8;
        let l = [
            ("port", name.clone()),
            ("bond", links.bond_of(p).unwrap_or("").to_string()),
        ];
        let (rx, sent) = crate::bond::links::port_frames(workers, p);
        e.gauge(
            "port_up",
            "Whether the port (a bond member, or a plain interface) can transmit: carrier up and in the bond's active aggregator.",
            &l,
            links.usable(p) as u64,
        );
        e.counter(
            "port_rx_packets_total",
            "Frames received from the port's AF_XDP sockets.",
            &l,
            rx,
        );
        e.counter(
            "port_sent_packets_total",
            "Frames transmitted on the port.",
            &l,
            sent,
        );
    }
}

/// The XDP program's counters, and the connection table's size.
pub fn globals(
    e: &mut Exposition,
    xdp: [u64; xlvs_common::COUNTERS as usize],
    conns: usize,
    templates: usize,
) {
    for (action, v) in ["steered", "passed", "redirect_failed", "offloaded"]
        .iter()
        .zip(xdp)
    {
        e.counter(
            "xdp_packets_total",
            "Frames the XDP program saw, by what it did: steered to a worker, passed to the kernel, dropped because the redirect to a worker failed, or rewritten and sent on itself (an offloaded connection).",
            &[("action", action.to_string())],
            v,
        );
    }
    e.counter(
        "xdp_sync_handed_total",
        "Frames of offloaded connections the XDP program handed to a worker (counted in the steered ones) because the IPVS sync rule picks them, so that the sync master reports their connections.",
        &[],
        xdp[4],
    );
    e.gauge(
        "connections",
        "Connections in the table (persistence templates not included).",
        &[],
        conns as u64,
    );
    e.gauge(
        "templates",
        "Persistence templates in the table.",
        &[],
        templates as u64,
    );
}

/// A scrape asking the control thread for the body: it renders the exposition and sends it
/// on the enclosed channel.
pub type Scrape = SyncSender<String>;

/// Connections served at once; more are closed at once.
const MAX_SCRAPERS: usize = 8;

/// Serves scrapes on `listener` from a thread of its own, each connection in a short-lived
/// thread (at most [`MAX_SCRAPERS`] at once): HTTP I/O never blocks the control thread, which
/// only renders the body when a scrape asks (`requests`; `wake` wakes its loop after each),
/// and a client that sends nothing holds only its own thread, for 2 s at most. The threads
/// end when the control thread is gone.
pub fn spawn_server(
    listener: TcpListener,
    requests: SyncSender<Scrape>,
    wake: impl Fn() + Send + Sync + 'static,
) -> std::io::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    listener.set_nonblocking(false)?;
    let wake = Arc::new(wake);
    let active = Arc::new(AtomicUsize::new(0));
    let gone = Arc::new(AtomicBool::new(false));
    std::thread::Builder::new()
        .name("xlvs-metrics".into())
        .spawn(move || {
            for s in listener.incoming() {
                if gone.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(s) = s else { continue };
                if active.load(Ordering::Relaxed) >= MAX_SCRAPERS {
                    drop(s);
                    continue;
                }
                active.fetch_add(1, Ordering::Relaxed);
                let (requests, wake, active2, gone2) =
                    (requests.clone(), wake.clone(), active.clone(), gone.clone());
                let spawned = std::thread::Builder::new()
                    .name("xlvs-scrape".into())
                    .spawn(move || {
                        let body = || {
                            let (tx, rx) = sync_channel(1);
                            requests.send(tx).ok()?;
                            wake();
                            rx.recv_timeout(Duration::from_secs(10)).ok()
                        };
                        match serve(s, body) {
                            Ok(true) => {}
                            Ok(false) => gone2.store(true, Ordering::Relaxed),
                            Err(e) => log::debug!("metrics scrape: {e}"),
                        }
                        active2.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::Relaxed);
                }
            }
        })?;
    Ok(())
}

/// Answers one HTTP request: `GET /metrics` gets `body()`, anything else 404. The request
/// must arrive within 2 s in all. False if `body` had none (the daemon is stopping).
fn serve(mut s: TcpStream, body: impl FnOnce() -> Option<String>) -> std::io::Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(2);
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut req = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(true);
        }
        s.set_read_timeout(Some(left))?;
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&req);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, ctype, body) = match (line.starts_with("GET "), path) {
        (true, "/metrics") => match body() {
            Some(b) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", b),
            None => return Ok(false),
        },
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "xlvsd serves /metrics\n".to_string(),
        ),
    };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvsadm::parse_rules;
    use crate::table::Source;

    #[test]
    fn exposition_groups_families_and_escapes_labels() {
        let mut t = ServiceTable::default();
        t.apply_all(
            &parse_rules(
                "-A -t 192.0.2.100:80 -s rr\n-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m -w 3\n-A -f 7 -s sh\n-a -f 7 -r 10.10.0.12:0 -g\n",
            )
            .unwrap(), &Source::Admin
        )
        .unwrap();
        let mut e = Exposition::default();
        table(&mut e, &t);
        globals(&mut e, [5, 6, 0, 3, 4], 2, 1);
        e.gauge("test_escape", "Escaping.", &[("v", "a\"b\\c\nd".into())], 1);
        let text = e.render();
        assert!(text.contains(
            "xlvs_backend_weight{proto=\"TCP\",local_address=\"192.0.2.100\",local_port=\"80\",local_mark=\"\",remote_address=\"10.10.0.11\",remote_port=\"80\",role=\"realserver\"} 3\n"
        ), "{text}");
        assert!(text.contains(
            "xlvs_service_connections_total{proto=\"FWM\",local_address=\"0.0.0.0\",local_port=\"0\",local_mark=\"7\"} 0\n"
        ), "{text}");
        assert!(text.contains("xlvs_xdp_packets_total{action=\"passed\"} 6\n"));
        assert!(text.contains("xlvs_xdp_sync_handed_total 4\n"));
        assert!(text.contains("xlvs_test_escape{v=\"a\\\"b\\\\c\\nd\"} 1\n"));
        // Each family once, its samples together.
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut dedup = types.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(types.len(), dedup.len());
        let mut seen = Vec::new();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            if seen.last() != Some(&name) {
                assert!(!seen.contains(&name), "{name} is split");
                seen.push(name);
            }
        }
    }
}
