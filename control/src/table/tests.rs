use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use super::*;
use crate::command::ListFormat;
use crate::health::machine::{DestHealth, Overlay};
use crate::ipvsadm::{parse, parse_rules};
use xlvs_common::{L4Key, PROTO_TCP};
use xlvs_dataplane::core::service::Proto;
use xlvs_dataplane::core::tcp_state::TcpState;

fn run(t: &mut ServiceTable, s: &str) -> Result<(), CmdError> {
    t.apply(
        &parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>()).unwrap(),
        &Source::Admin,
    )
}

const RULES: &str = "\
-A -t 192.0.2.100:80 -s rr
-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m -w 1
-a -t 192.0.2.100:80 -r 10.10.0.12:8080 -m -w 2
-A -u 192.0.2.100:53 -s wlc
-a -u 192.0.2.100:53 -r 10.10.0.11:53 -g -w 1
";

fn table() -> ServiceTable {
    let mut t = ServiceTable::default();
    t.apply_all(&parse_rules(RULES).unwrap(), &Source::Admin)
        .unwrap();
    t
}

#[test]
fn list_matches_ipvsadm_layout() {
    let t = table();
    let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.0.2.100:80 rr
  -> 10.10.0.11:80                Masq    1      0          0         
  -> 10.10.0.12:8080              Masq    2      0          0         
UDP  192.0.2.100:53 wlc
  -> 10.10.0.11:53                Route   1      0          0         
";
    assert_eq!(t.list(None, ListFormat::Normal, false).unwrap(), expected);
}

#[test]
fn save_restores_the_same_table() {
    let t = table();
    let saved = t.save();
    assert_eq!(saved, RULES);
    let mut t2 = ServiceTable::default();
    t2.apply_all(&parse_rules(&saved).unwrap(), &Source::Admin)
        .unwrap();
    assert_eq!(
        t2.list(None, ListFormat::Normal, false).unwrap(),
        t.list(None, ListFormat::Normal, false).unwrap()
    );
}

const V6_RULES: &str = "\
-A -t [2001:db8::100]:80 -s rr -p 60 -M 64 --sorry-server [fd00:10::99]:80 -m
-a -t [2001:db8::100]:80 -r [fd00:10::11]:8080 -m -w 1
-a -t [2001:db8::100]:80 -r [fd00:10::12]:8080 -m -w 1
";

#[test]
fn ipv6_services_list_save_and_steer_like_ipvsadm() {
    let mut t = ServiceTable::default();
    t.apply_all(&parse_rules(V6_RULES).unwrap(), &Source::Admin)
        .unwrap();
    let l = t.list(None, ListFormat::Normal, false).unwrap();
    assert!(
        l.contains("TCP  [2001:db8::100]:80 rr persistent 60 mask 64\n"),
        "{l}"
    );
    assert!(l.contains("  -> [fd00:10::11]:8080"), "{l}");
    assert_eq!(t.save(), V6_RULES);
    let (vips, reals) = t.steer_keys();
    let vip: std::net::Ipv6Addr = "2001:db8::100".parse().unwrap();
    assert_eq!(vips, [L4Key::v6(vip.octets(), 80, PROTO_TCP)]);
    assert_eq!(reals.len(), 3, "two realservers and the NAT sorry server");
    // A realserver of the other family is refused.
    let e = crate::ipvsadm::parse(
        &"-a -t [2001:db8::100]:80 -r 10.10.0.11:80 -m"
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>(),
    )
    .unwrap_err();
    assert!(e.msg.contains("address family"), "{}", e.msg);
}

const FULL_RULES: &str = "\
-A -t 192.0.2.100:80 -s sh -b sh-fallback,sh-port -p 60 -M 255.255.255.0 --sorry-server 10.10.0.99:80 -m
-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m -w 1 -x 100 -y 50
-a -t 192.0.2.100:80 -r 10.10.0.12:80 -m -w 0
-A -t 192.0.2.100:443 -s mh -p 300
-a -t 192.0.2.100:443 -r 10.10.0.11:443 -g -w 2
";

#[test]
fn options_show_in_list_and_save_round_trips() {
    let mut t = ServiceTable::default();
    t.apply_all(&parse_rules(FULL_RULES).unwrap(), &Source::Admin)
        .unwrap();
    let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.0.2.100:80 sh (sh-fallback,sh-port) persistent 60 mask 255.255.255.0
  -> 10.10.0.11:80                Masq    1      0          0         
  -> 10.10.0.12:80                Masq    0      0          0         
TCP  192.0.2.100:443 mh persistent 300
  -> 10.10.0.11:443               Route   2      0          0         
";
    assert_eq!(t.list(None, ListFormat::Normal, false).unwrap(), expected);
    assert_eq!(t.save(), FULL_RULES);
    let mut t2 = ServiceTable::default();
    t2.apply_all(&parse_rules(&t.save()).unwrap(), &Source::Admin)
        .unwrap();
    assert_eq!(t2.save(), FULL_RULES);
    // The sorry server's replies are steered like a NAT realserver's.
    let (_, reals) = t.steer_keys();
    assert!(reals.contains(&L4Key::v4([10, 10, 0, 99], 80, PROTO_TCP)));
    let snap = t.snapshot(&[]);
    let svc = snap.services.values().find(|s| s.key.port == 80).unwrap();
    assert_eq!(svc.sorry.as_ref().unwrap().addr.to_string(), "10.10.0.99");
    assert_eq!(svc.sched.name(), "sh");
    let d = svc
        .dests
        .iter()
        .find(|d| d.addr.to_string() == "10.10.0.11")
        .unwrap();
    assert_eq!(d.state.u_threshold.load(Ordering::Relaxed), 100);
}

#[test]
fn timeouts_set_and_list() {
    let mut t = table();
    assert_eq!(t.list_timeouts(), "Timeout (tcp tcpfin udp): 900 120 300\n");
    run(&mut t, "--set 3600 0 60").unwrap();
    assert_eq!(t.list_timeouts(), "Timeout (tcp tcpfin udp): 3600 120 60\n");
    let snap = t.snapshot(&[]);
    assert_eq!(snap.timeouts.tcp[TcpState::Established as usize], 3600);
}

#[test]
fn thresholds_are_checked_and_applied_live() {
    let mut t = table();
    assert_eq!(
        run(&mut t, "-e -t 192.0.2.100:80 -r 10.10.0.11:80 -m -y 5")
            .unwrap_err()
            .msg,
        "lower threshold is higher than upper threshold"
    );
    let key = vs("tcp 192.0.2.100:80");
    let st = t.services[&key].dests[1].state.clone();
    run(&mut t, "-e -t 192.0.2.100:80 -r 10.10.0.11:80 -m -x 1").unwrap();
    st.bind(xlvs_dataplane::core::service::Binding::Active);
    assert!(st.overloaded());
    // Raising the upper threshold clears the overload (IPVS __ip_vs_update_dest).
    run(&mut t, "-e -t 192.0.2.100:80 -r 10.10.0.11:80 -m -x 5").unwrap();
    assert!(!st.overloaded());
}

#[test]
fn errors_follow_ipvsadm() {
    let mut t = table();
    assert_eq!(
        run(&mut t, "-A -t 192.0.2.100:80").unwrap_err().msg,
        "Service already exists"
    );
    assert_eq!(
        run(&mut t, "-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m")
            .unwrap_err()
            .msg,
        "Destination already exists"
    );
    assert_eq!(
        run(&mut t, "-a -t 192.0.2.1:80 -r 10.10.0.11:80 -m")
            .unwrap_err()
            .msg,
        "Service not defined"
    );
    assert_eq!(
        run(&mut t, "-d -t 192.0.2.100:80 -r 10.10.0.99:80 -m")
            .unwrap_err()
            .msg,
        "No such destination"
    );
    assert_eq!(
        run(&mut t, "-D -t 192.0.2.1:80").unwrap_err(),
        CmdError::op("No such service")
    );
    // The scheduler is a type now: an unknown name is the parser's error, with ipvsadm's
    // wording and exit code for the kernel's refusal.
    let args: Vec<String> = "-A -t 192.0.2.1:80 -s bogus"
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(
        parse(&args).unwrap_err(),
        CmdError::op("Scheduler or persistence engine not found")
    );
}

#[test]
fn failed_batch_changes_nothing() {
    let mut t = table();
    let before = t.save();
    let cmds =
        parse_rules("-A -t 192.0.2.7:80 -s rr\n-a -t 192.0.2.8:80 -r 10.0.0.1:80 -m\n").unwrap();
    assert_eq!(t.apply_all(&cmds, &Source::Admin).unwrap_err().0, Some(1));
    assert_eq!(t.save(), before);
}

#[test]
fn newest_dest_is_first_in_ipvs_order_and_states_survive_edits() {
    let mut t = table();
    let key = vs("tcp 192.0.2.100:80");
    let svc = &t.services[&key];
    assert_eq!(svc.dests[0].port, 8080, "last added is first");
    let st = svc.dests[1].state.clone();
    st.active.store(7, Ordering::Relaxed);
    run(&mut t, "-e -t 192.0.2.100:80 -r 10.10.0.11:80 -m -w 5").unwrap();
    let snap = t.snapshot(&[]);
    let d = snap.services[&vk("tcp 192.0.2.100:80")]
        .dests
        .iter()
        .find(|d| d.port == 80)
        .unwrap();
    assert_eq!(d.weight, 5);
    assert!(Arc::ptr_eq(&d.state, &st));
}

#[test]
fn reload_diff_touches_only_what_changed() {
    let mut t = table();
    let a = t.snapshot(&[]);
    let tcp = vk("tcp 192.0.2.100:80");
    let rules = |text: &str| {
        let mut n = ServiceTable::default();
        n.apply_all(&parse_rules(text).unwrap(), &Source::Admin)
            .unwrap();
        n
    };
    // The same rules, reordered: nothing to do.
    let same = rules(
        "-A -u 192.0.2.100:53 -s wlc\n-a -u 192.0.2.100:53 -r 10.10.0.11:53 -g -w 1\n-A -t 192.0.2.100:80 -s rr\n-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m -w 1\n-a -t 192.0.2.100:80 -r 10.10.0.12:8080 -m -w 2\n",
    );
    assert_eq!(t.diff(&same, &Source::Admin), []);
    // UDP service gone, a new one, a weight changed, a realserver added.
    let next = rules(
        "-A -t 192.0.2.100:80 -s rr\n-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m -w 1\n-a -t 192.0.2.100:80 -r 10.10.0.12:8080 -m -w 2\n-A -t 192.0.2.100:443 -s sh\n-a -t 192.0.2.100:443 -r 10.10.0.11:443 -m -w 1\n-a -t 192.0.2.100:443 -r 10.10.0.12:443 -m -w 1\n--set 600 0 0\n",
    );
    let diff = t.diff(&next, &Source::Admin);
    assert_eq!(diff.len(), 5, "{diff:#?}");
    assert!(matches!(diff[0], Command::DelService { .. }));
    t.apply_all(&diff, &Source::Admin).unwrap();
    assert_eq!(t.save(), next.save());
    assert_eq!(t.list_timeouts(), "Timeout (tcp tcpfin udp): 600 120 300\n");
    let b = t.snapshot(&[]);
    assert!(
        Arc::ptr_eq(&a.services[&tcp], &b.services[&tcp]),
        "the unchanged service keeps its published form (scheduler state, connections)"
    );
    // An edit only: one command, and only that service republished.
    // (-S has no --set, as ipvsadm's: the file keeps its own.)
    let edited = rules(&format!(
        "{}--set 600 0 0\n",
        next.save()
            .replace("10.10.0.12:8080 -m -w 2", "10.10.0.12:8080 -m -w 5")
    ));
    let diff = t.diff(&edited, &Source::Admin);
    assert_eq!(diff.len(), 1, "{diff:#?}");
    assert!(matches!(&diff[0], Command::EditDest { dest, .. } if dest.weight == 5));
}

const MARK_RULES: &str = "\
--add-mark -f 1 -t 192.0.2.100:80
--add-mark -f 1 -t 192.0.2.100:443
--add-mark -f 1 -u 192.0.2.101:5000-5009
--add-mark -f 2 -t [2001:db8::100]:80
-A -t 192.0.2.100:80 -s wlc
-a -t 192.0.2.100:80 -r 10.10.0.13:80 -m -w 1
-A -f 1 -s rr -p 300
-a -f 1 -r 10.10.0.11:0 -m -w 1
-a -f 1 -r 10.10.0.12:0 -g -w 1
-A -f 2 -6 -s sh
-a -f 2 -6 -r [fd00:10::11]:8080 -m -w 1
";

#[test]
fn fwmark_services_list_save_steer_and_override_address_services() {
    let mut t = ServiceTable::default();
    t.apply_all(&parse_rules(MARK_RULES).unwrap(), &Source::Admin)
        .unwrap();
    assert_eq!(t.save(), MARK_RULES);
    let l = t.list(None, ListFormat::Normal, false).unwrap();
    assert!(
        l.contains("\nFWM  1 rr persistent 300\n  -> 10.10.0.11:0"),
        "{l}"
    );
    assert!(
        l.contains("\nFWM  2 IPv6 sh\n  -> [fd00:10::11]:8080"),
        "{l}"
    );
    let snap = t.snapshot(&[]);
    // 2 TCP ports and 10 UDP ones for mark 1 (it overrides the address service on :80),
    // one IPv6 key for mark 2.
    assert_eq!(snap.services.len(), 13);
    let m1 = &snap.services[&vk("tcp 192.0.2.100:80")];
    assert_eq!(m1.mark, 1);
    assert!(Arc::ptr_eq(m1, &snap.services[&vk("udp 192.0.2.101:5007")]));
    let (vips, reals) = t.steer_keys();
    assert_eq!(vips.len(), 13);
    // NAT realservers: 10.10.0.11 at each of mark 1's 12 ports, 10.10.0.13:80 and
    // [fd00:10::11]:8080; not the DR one.
    assert_eq!(reals.len(), 12 + 1 + 1, "{reals:?}");
    // Group entries do not overlap, across marks too.
    let e = run(&mut t, "--add-mark -f 3 -u 192.0.2.101:5009-5010").unwrap_err();
    assert_eq!(
        e.msg,
        "fwmark group entry -u 192.0.2.101:5009-5010 overlaps -u 192.0.2.101:5000-5009 of mark 1"
    );
    assert_eq!(
        run(&mut t, "--delete-mark -f 1 -t 192.0.2.100:81")
            .unwrap_err()
            .msg,
        "No such fwmark group entry"
    );
    // The steering maps bound the keys: a change beyond them is refused whole.
    let before = t.save();
    let e = t
        .apply_all(
            &parse_rules("--add-mark -f 4 -t 192.0.2.102:1-65535\n-A -f 4\n").unwrap(),
            &Source::Admin,
        )
        .unwrap_err();
    assert_eq!(e.0, None, "the whole change fails, not one command");
    assert!(
        e.1.msg.starts_with("too many virtual service"),
        "{}",
        e.1.msg
    );
    assert_eq!(t.save(), before);
    // -C clears the groups too, and a restore of -S gives the same table.
    run(&mut t, "-C").unwrap();
    assert_eq!(t.save(), "");
    t.apply_all(&parse_rules(&before).unwrap(), &Source::Admin)
        .unwrap();
    assert_eq!(t.save(), before);
}

#[test]
fn listings_sort_as_ipvsadm_fwmark_family_protocol_address_port() {
    let mut t = ServiceTable::default();
    let rules = "\
-A -f 2 -s rr
-A -u 192.0.2.1:53 -s rr
-A -t [2001:db8::1]:80 -s rr
-A -t 192.0.2.2:80 -s rr
-A -t 192.0.2.1:443 -s rr
-A -f 1 -6 -s rr
";
    t.apply_all(&parse_rules(rules).unwrap(), &Source::Admin)
        .unwrap();
    assert_eq!(
        t.save(),
        "\
-A -t 192.0.2.1:443 -s rr
-A -t 192.0.2.2:80 -s rr
-A -u 192.0.2.1:53 -s rr
-A -t [2001:db8::1]:80 -s rr
-A -f 1 -6 -s rr
-A -f 2 -s rr
"
    );
}

#[test]
fn json_listing_has_the_table_counters_and_groups() {
    let mut t = ServiceTable::default();
    t.apply_all(&parse_rules(MARK_RULES).unwrap(), &Source::Admin)
        .unwrap();
    let j = t.list_json(None).unwrap();
    assert_eq!(j["services"][0]["protocol"], "TCP");
    assert_eq!(j["services"][0]["address"], "192.0.2.100");
    assert_eq!(j["services"][1]["fwmark"], 1);
    assert_eq!(j["services"][1]["persistent"], 300);
    assert_eq!(j["services"][1]["realservers"][0]["forward"], "Masq");
    assert_eq!(j["services"][1]["stats"]["conns"], 0);
    assert_eq!(
        j["fwmark_groups"][0]["entries"][2],
        "-u 192.0.2.101:5000-5009"
    );
    assert_eq!(j["timeouts"]["tcp"], 900);
    assert_eq!(
        t.list_json(Some(&vs("tcp 192.0.2.100:81")))
            .unwrap_err()
            .msg,
        "No such service"
    );
}

#[test]
fn unchanged_services_keep_their_published_form() {
    let mut t = table();
    let a = t.snapshot(&[]);
    run(&mut t, "-e -u 192.0.2.100:53 -r 10.10.0.11:53 -g -w 3").unwrap();
    let b = t.snapshot(&[]);
    let tcp = vk("tcp 192.0.2.100:80");
    let udp = vk("udp 192.0.2.100:53");
    assert!(Arc::ptr_eq(&a.services[&tcp], &b.services[&tcp]));
    assert!(!Arc::ptr_eq(&a.services[&udp], &b.services[&udp]));
}

#[test]
fn deleted_nat_dest_stays_steered_while_connections_use_it() {
    let mut t = table();
    let key = vs("tcp 192.0.2.100:80");
    let held = t.services[&key].dests[1].state.clone(); // 10.10.0.11:80, as a connection would
    run(&mut t, "-d -t 192.0.2.100:80 -r 10.10.0.11:80").unwrap();
    let (_, reals) = t.steer_keys();
    assert!(reals.contains(&L4Key::v4([10, 10, 0, 11], 80, PROTO_TCP)));
    assert!(!t.reap_retired());
    drop(held);
    assert!(t.reap_retired());
    let (_, reals) = t.steer_keys();
    assert!(!reals.contains(&L4Key::v4([10, 10, 0, 11], 80, PROTO_TCP)));
}

/// Counts as a worker would: `conns` new connections, packets and bytes each way.
fn feed(d: &DestState, [conns, inpkts, outpkts, inbytes, outbytes]: [u64; 5]) {
    for _ in 0..conns {
        d.stats.conn(0);
    }
    for i in 0..inpkts {
        d.stats.inbound(0, if i == 0 { inbytes } else { 0 });
    }
    for i in 0..outpkts {
        d.stats.outbound(0, if i == 0 { outbytes } else { 0 });
    }
}

/// The lookup key of an address service.
fn vk(svc: &str) -> VsKey {
    match vs(svc) {
        SvcKey::Addr(k) => k,
        SvcKey::Mark { .. } => unreachable!(),
    }
}

/// A service key from `"tcp ADDR:PORT"` or `"udp ADDR:PORT"`.
fn vs(svc: &str) -> SvcKey {
    let (proto, addr) = svc.split_once(' ').unwrap();
    let sa: SocketAddr = addr.parse().unwrap();
    SvcKey::Addr(VsKey {
        proto: if proto == "tcp" {
            Proto::Tcp
        } else {
            Proto::Udp
        },
        addr: sa.ip(),
        port: sa.port(),
    })
}

fn dest<'t>(t: &'t ServiceTable, svc: &str, rs: &str) -> &'t DestEntry {
    let rs: SocketAddr = rs.parse().unwrap();
    t.services[&vs(svc)]
        .dests
        .iter()
        .find(|d| d.same(rs.ip(), rs.port()))
        .unwrap()
}

/// A table with traffic on every realserver, and one estimation period passed.
fn busy_table() -> ServiceTable {
    let mut t = table();
    feed(
        &dest(&t, "tcp 192.0.2.100:80", "10.10.0.11:80").state,
        [800, 8000, 4000, 8_000_000, 400_000_000],
    );
    feed(
        &dest(&t, "tcp 192.0.2.100:80", "10.10.0.12:8080").state,
        [8, 80, 60, 4000, 9000],
    );
    feed(
        &dest(&t, "udp 192.0.2.100:53", "10.10.0.11:53").state,
        [2, 2, 0, 100, 0],
    );
    t.estimate();
    t
}

// The expected texts below were printed with ipvsadm.c's own printf formats
// (`print_title`, `print_service_entry`, `print_largenum`) and IPVS's estimator arithmetic.

#[test]
fn stats_listing_matches_ipvsadm() {
    let t = busy_table();
    let expected = STATS_GOLDEN;
    assert_eq!(t.list(None, ListFormat::Stats, false).unwrap(), expected);
}

#[test]
fn rate_listing_matches_ipvsadm() {
    let t = busy_table();
    let expected = RATE_GOLDEN;
    assert_eq!(t.list(None, ListFormat::Rate, false).unwrap(), expected);
}

#[test]
fn thresholds_and_persistent_conn_listings_match_ipvsadm() {
    let mut t = table();
    run(
        &mut t,
        "-e -t 192.0.2.100:80 -r 10.10.0.12:8080 -m -w 2 -x 500 -y 400",
    )
    .unwrap();
    let expected = TH_GOLDEN;
    assert_eq!(
        t.list(None, ListFormat::Thresholds, false).unwrap(),
        expected
    );
    let expected = PC_GOLDEN;
    assert_eq!(
        t.list(None, ListFormat::PersistentConn, false).unwrap(),
        expected
    );
}

#[test]
fn exact_prints_whole_numbers() {
    let t = busy_table();
    let key = vs("tcp 192.0.2.100:80");
    let l = t.list(Some(&key), ListFormat::Stats, true).unwrap();
    assert!(l.contains("  8004000 400009000\n"), "{l}");
    assert!(!l.starts_with("IP Virtual Server"), "{l}");
}

#[test]
fn zero_restarts_the_counts_and_deleted_realservers_stay_counted() {
    let mut t = busy_table();
    let key = vs("tcp 192.0.2.100:80");
    // As with ipvsadm, a port different from the service's needs -m (-g forces it).
    run(&mut t, "-d -t 192.0.2.100:80 -r 10.10.0.12:8080 -m").unwrap();
    // Retired (a connection still holds it), then gone: the service keeps its counts.
    let held = t.retired[0].1.state.clone();
    assert!(!t.reap_retired());
    assert_eq!(t.service_stats(&key).unwrap().conns, 808);
    drop(held);
    assert!(t.reap_retired());
    assert_eq!(t.service_stats(&key).unwrap().conns, 808);
    assert_eq!(
        t.zero(Some(&vs("tcp 192.0.2.100:81"))).unwrap_err().msg,
        "No such service"
    );
    t.zero(Some(&key)).unwrap();
    assert_eq!(t.service_stats(&key).unwrap(), Totals::default());
    assert_eq!(
        dest(&t, "tcp 192.0.2.100:80", "10.10.0.11:80").stats(),
        Totals::default()
    );
    // The other service is untouched.
    let udp = vs("udp 192.0.2.100:53");
    assert_eq!(t.service_stats(&udp).unwrap().conns, 2);
    feed(
        &dest(&t, "tcp 192.0.2.100:80", "10.10.0.11:80").state,
        [1, 2, 3, 4, 5],
    );
    assert_eq!(
        t.service_stats(&key).unwrap(),
        Totals {
            conns: 1,
            inpkts: 2,
            outpkts: 3,
            inbytes: 4,
            outbytes: 5
        }
    );
    t.zero(None).unwrap();
    assert_eq!(t.service_stats(&udp).unwrap(), Totals::default());
}

#[test]
fn a_realserver_taken_back_keeps_its_zero_point_and_a_new_service_starts_at_zero() {
    let mut t = busy_table();
    let key = vs("tcp 192.0.2.100:80");
    t.zero(None).unwrap();
    // Deleted while a connection holds it, then added back: counts since the -Z only.
    let held = dest(&t, "tcp 192.0.2.100:80", "10.10.0.11:80")
        .state
        .clone();
    run(&mut t, "-d -t 192.0.2.100:80 -r 10.10.0.11:80 -m").unwrap();
    run(&mut t, "-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m").unwrap();
    let d = dest(&t, "tcp 192.0.2.100:80", "10.10.0.11:80");
    assert!(Arc::ptr_eq(&d.state, &held));
    assert_eq!(d.stats(), Totals::default());
    // Retired again, then the service goes and comes back: the new one starts at zero,
    // and the old realserver is still steered while the connection lasts.
    run(&mut t, "-d -t 192.0.2.100:80 -r 10.10.0.11:80 -m").unwrap();
    run(&mut t, "-D -t 192.0.2.100:80").unwrap();
    run(&mut t, "-A -t 192.0.2.100:80 -s rr").unwrap();
    run(&mut t, "-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m").unwrap();
    let d = dest(&t, "tcp 192.0.2.100:80", "10.10.0.11:80");
    assert!(!Arc::ptr_eq(&d.state, &held));
    assert_eq!(t.service_stats(&key).unwrap(), Totals::default());
    assert_eq!(
        t.all_dests()
            .filter(|d| Arc::ptr_eq(&d.state, &held))
            .count(),
        1
    );
    drop(held);
    assert!(t.reap_retired());
    assert_eq!(t.service_stats(&key).unwrap(), Totals::default());
}

const STATS_GOLDEN: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  192.0.2.100:80                    808     8080     4060  8004000  400009K
  -> 10.10.0.11:80                     800     8000     4000  8000000  400000K
  -> 10.10.0.12:8080                     8       80       60     4000     9000
UDP  192.0.2.100:53                      2        2        0      100        0
  -> 10.10.0.11:53                       2        2        0      100        0
";
const RATE_GOLDEN: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS
  -> RemoteAddress:Port
TCP  192.0.2.100:80                    101     1010      507  1000500 50001125
  -> 10.10.0.11:80                     100     1000      500  1000000 50000000
  -> 10.10.0.12:8080                     1       10        7      500     1125
UDP  192.0.2.100:53                      0        0        0       12        0
  -> 10.10.0.11:53                       0        0        0       12        0
";
const TH_GOLDEN: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  192.0.2.100:80 rr
  -> 10.10.0.11:80                0          0          0          0         
  -> 10.10.0.12:8080              500        400        0          0         
UDP  192.0.2.100:53 wlc
  -> 10.10.0.11:53                0          0          0          0         
";
const PC_GOLDEN: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  192.0.2.100:80 rr
  -> 10.10.0.11:80                1         0           0          0         
  -> 10.10.0.12:8080              2         0           0          0         
UDP  192.0.2.100:53 wlc
  -> 10.10.0.11:53                1         0           0          0         
";

/// Health checking's view: `(realserver, alive, inhibit, dynamic weight)` of the TCP service.
fn overlay(dests: &[(&str, bool, bool, Option<u32>)], quorum_lost: bool) -> Overlay {
    let key = vs("tcp 192.0.2.100:80");
    let mut o = Overlay::default();
    for &(rs, alive, inhibit, weight) in dests {
        let sa: SocketAddr = rs.parse().unwrap();
        o.dests.insert(
            (key, sa.ip(), sa.port()),
            DestHealth {
                alive,
                weight,
                inhibit,
            },
        );
    }
    if quorum_lost {
        o.quorum_lost.insert(key);
    }
    o
}

#[test]
fn health_overlay_removes_inhibits_and_reweighs_without_editing_the_configuration() {
    let mut t = table();
    let saved = t.save();
    let a = t.snapshot(&[]);
    let tcp = vk("tcp 192.0.2.100:80");
    let udp = vk("udp 192.0.2.100:53");
    let weights = |t: &mut ServiceTable| {
        let s = t.snapshot(&[]);
        s.services[&tcp]
            .dests
            .iter()
            .map(|d| (d.addr.to_string(), d.port, d.weight))
            .collect::<Vec<_>>()
    };
    // 10.10.0.11:80 dead (removed), 10.10.0.12:8080 alive at a misc_dynamic weight.
    let o = overlay(
        &[
            ("10.10.0.11:80", false, false, None),
            ("10.10.0.12:8080", true, false, Some(7)),
        ],
        false,
    );
    assert!(t.set_health(o.clone()));
    assert!(!t.set_health(o), "the same overlay changes nothing");
    assert_eq!(weights(&mut t), vec![("10.10.0.12".into(), 8080, 7)]);
    let b = t.snapshot(&[]);
    assert!(
        Arc::ptr_eq(&a.services[&udp], &b.services[&udp]),
        "other services untouched"
    );
    let listed = t.list(None, ListFormat::Normal, false).unwrap();
    assert!(!listed.contains("10.10.0.11:80"), "{listed}");
    assert!(
        listed.contains("  -> 10.10.0.12:8080              Masq    7      "),
        "{listed}"
    );
    // Inhibited: in the table at weight 0.
    t.set_health(overlay(&[("10.10.0.11:80", false, true, None)], false));
    let mut w = weights(&mut t);
    w.sort();
    assert_eq!(
        w,
        vec![("10.10.0.11".into(), 80, 0), ("10.10.0.12".into(), 8080, 2)]
    );
    // The configuration never changed: -S and the steering keys are as before.
    assert_eq!(t.save(), saved);
    let (_, reals) = t.steer_keys();
    assert!(reals.contains(&L4Key::v4([10, 10, 0, 11], 80, PROTO_TCP)));
    // An edit of a health-checked realserver keeps its health.
    run(&mut t, "-e -t 192.0.2.100:80 -r 10.10.0.12:8080 -m -w 5").unwrap();
    t.set_health(overlay(&[("10.10.0.11:80", false, false, None)], false));
    assert_eq!(weights(&mut t), vec![("10.10.0.12".into(), 8080, 5)]);
}

#[test]
fn lost_quorum_hands_a_service_with_a_sorry_server_to_it() {
    let mut t = table();
    // No sorry server: lost quorum leaves the live realservers (keepalived does the same).
    t.set_health(overlay(&[("10.10.0.11:80", false, false, None)], true));
    assert_eq!(
        t.snapshot(&[]).services[&vk("tcp 192.0.2.100:80")]
            .dests
            .len(),
        1
    );
    run(
        &mut t,
        "-E -t 192.0.2.100:80 -s rr --sorry-server 10.10.0.99:80 -m",
    )
    .unwrap();
    let s = t.snapshot(&[]);
    let svc = &s.services[&vk("tcp 192.0.2.100:80")];
    assert!(svc.dests.is_empty());
    assert!(svc.sorry.is_some());
    let listed = t.list(None, ListFormat::Normal, false).unwrap();
    assert!(listed.contains("  -> 10.10.0.99:80"), "{listed}");
    assert!(!listed.contains("10.10.0.12:8080"), "{listed}");
    t.set_health(overlay(&[("10.10.0.11:80", false, false, None)], false));
    assert_eq!(
        t.snapshot(&[]).services[&vk("tcp 192.0.2.100:80")]
            .dests
            .len(),
        1
    );
    let listed = t.list(None, ListFormat::Normal, false).unwrap();
    assert!(!listed.contains("10.10.0.99:80"), "{listed}");
}
