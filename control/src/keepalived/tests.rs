//! Tests of the keepalived.conf reader: the fixture `control/tests/keepalived/full.conf`
//! (which keepalived 2.2.7's `keepalived -t` accepts), includes, errors with their file and
//! line, warnings, and keepalived's defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use xlvs_dataplane::core::sched::{SchedFlags, SchedKind};
use xlvs_dataplane::core::service::{Fwd, Persistence, Proto, VsKey};

use super::{ConfError, Config, load, parse_str};
use crate::command::{Command, DestSpec, ServiceOpts, SvcKey};
use crate::health::spec::{CheckKind, Script, Url};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn addr_key(proto: Proto, a: &str, port: u16) -> SvcKey {
    SvcKey::Addr(VsKey {
        proto,
        addr: ip(a),
        port,
    })
}

fn dest(a: &str, port: u16, fwd: Fwd, weight: u32) -> DestSpec {
    DestSpec {
        addr: ip(a),
        port,
        fwd,
        weight,
        u_threshold: 0,
        l_threshold: 0,
    }
}

fn svc(key: SvcKey, sched: SchedKind) -> Command {
    Command::AddService {
        key,
        opts: ServiceOpts {
            sched,
            ..ServiceOpts::default()
        },
    }
}

fn parse(text: &str) -> Result<Config, ConfError> {
    parse_str(text, Path::new("/etc/keepalived/keepalived.conf"))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let p =
            std::env::temp_dir().join(format!("xlvs-kconf-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("temp subdir");
        }
        std::fs::write(&p, text).expect("temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn full_fixture() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keepalived/full.conf");
    let cfg = load(&path).expect("full.conf loads");
    assert_eq!(cfg.warnings, vec![]);
    let lines: Vec<String> = cfg
        .sync_daemons
        .iter()
        .map(|d| d.line(d.ifname.as_deref().unwrap_or("?"), 1472))
        .collect();
    assert_eq!(
        lines,
        [
            "master sync daemon (mcast=eth0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)",
            "backup sync daemon (mcast=eth0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)"
        ]
    );
    assert_eq!(cfg.scripts.script_user, Some(("root".into(), None)));
    assert!(cfg.scripts.enable_script_security);

    let web = addr_key(Proto::Tcp, "192.0.2.10", 80);
    let https = addr_key(Proto::Tcp, "192.0.2.20", 443);
    let g = |a: &str, p: u16| addr_key(Proto::Udp, a, p);
    let mark = SvcKey::Mark { mark: 7, v6: false };
    let add = |key: SvcKey, dest: DestSpec| Command::AddDest { key, dest };
    let expected = vec![
        Command::SetTimeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300,
        },
        Command::AddService {
            key: web,
            opts: ServiceOpts {
                sched: SchedKind::Wlc,
                flags: SchedFlags::default(),
                persist: Some(Persistence {
                    timeout: secs(600),
                    netmask: ip("255.255.255.0"),
                }),
                sorry: Some(dest("198.51.100.9", 8080, Fwd::Masq, 1)),
            },
        },
        add(
            web,
            DestSpec {
                u_threshold: 1000,
                l_threshold: 100,
                ..dest("198.51.100.1", 8080, Fwd::Masq, 3)
            },
        ),
        add(web, dest("198.51.100.2", 8080, Fwd::Masq, 2)),
        Command::AddService {
            key: https,
            opts: ServiceOpts {
                sched: SchedKind::Sh,
                flags: SchedFlags {
                    flag2: true,
                    ..SchedFlags::default()
                },
                ..ServiceOpts::default()
            },
        },
        add(https, dest("192.0.2.101", 443, Fwd::Route, 1)),
        add(https, dest("192.0.2.102", 443, Fwd::Route, 5)),
        svc(g("192.0.2.30", 80), SchedKind::Rr),
        add(g("192.0.2.30", 80), dest("198.51.100.3", 53, Fwd::Masq, 1)),
        svc(g("192.0.2.31", 80), SchedKind::Rr),
        add(g("192.0.2.31", 80), dest("198.51.100.3", 53, Fwd::Masq, 1)),
        svc(g("192.0.2.40", 8080), SchedKind::Rr),
        add(
            g("192.0.2.40", 8080),
            dest("198.51.100.3", 53, Fwd::Masq, 1),
        ),
        svc(mark, SchedKind::Mh),
        add(mark, dest("192.0.2.111", 0, Fwd::Route, 1)),
    ];
    assert_eq!(cfg.commands, expected);
    for c in &cfg.commands {
        assert_eq!(c.validate(), Ok(()), "{c}");
    }

    // The specs: one per virtual server, in command order (a group's members are one
    // spec's key and `also`).
    let keys: Vec<_> = cfg
        .services
        .iter()
        .flat_map(|s| std::iter::once(s.key).chain(s.also.iter().map(|(k, _)| *k)))
        .collect();
    assert_eq!(
        keys,
        vec![
            web,
            https,
            g("192.0.2.30", 80),
            g("192.0.2.31", 80),
            g("192.0.2.40", 8080),
            mark
        ]
    );
    let s = &cfg.services[0];
    assert_eq!(s.label, "192.0.2.10:80");
    assert_eq!((s.quorum, s.hysteresis), (2, 1));
    assert!(s.sorry_server_inhibit && !s.omega);
    assert_eq!(
        s.quorum_up,
        Some(Script {
            argv: vec!["/bin/echo".into(), "quorum".into(), "up".into()],
            user: None
        })
    );
    let r1 = &s.reals[0];
    assert_eq!(
        (r1.weight, r1.port, r1.inhibit_on_failure),
        (3, 8080, false)
    );
    assert_eq!(
        r1.notify_up.as_ref().map(|s| s.argv.clone()),
        Some(vec!["/bin/echo".into(), "up".into(), "rs 1".into()])
    );
    assert_eq!(
        r1.notify_down.as_ref().and_then(|s| s.user.clone()),
        Some(("root".into(), Some("root".into())))
    );
    let http = &r1.checkers[0];
    assert_eq!(
        http.kind,
        CheckKind::Http {
            tls: false,
            urls: vec![
                Url {
                    path: "/health".into(),
                    digest: None,
                    status: vec![(200, 200), (204, 206)],
                    virtualhost: None,
                },
                Url {
                    path: "/index.html".into(),
                    digest: Some("9b3a0c85a887a256d6939da88aabd8cd".into()),
                    status: vec![(200, 299)],
                    virtualhost: Some("static.example.com".into()),
                },
            ],
            virtualhost: Some("www.example.com".into()),
            sni: false,
        }
    );
    assert_eq!(
        http.target,
        "198.51.100.1:8080".parse::<SocketAddr>().expect("sa")
    );
    assert_eq!(http.timeout, secs(3));
    assert_eq!(http.delay_loop, secs(10));
    assert_eq!(http.retry, 2);
    assert_eq!(http.delay_before_retry, secs(3));
    assert_eq!(http.warmup, Some(secs(10)));
    assert!(!http.alpha);
    let r2 = &s.reals[1];
    assert!(r2.inhibit_on_failure);
    let tcp = &r2.checkers[0];
    assert_eq!(tcp.kind, CheckKind::Tcp);
    assert_eq!(
        tcp.target,
        "198.51.100.2:8081".parse::<SocketAddr>().expect("sa")
    );
    assert_eq!(tcp.bind, Some("198.51.100.254:0".parse().expect("sa")));
    assert_eq!(
        (tcp.delay_loop, tcp.warmup, tcp.alpha),
        (secs(5), Some(secs(5)), true)
    );
    assert_eq!(
        (tcp.retry, tcp.delay_before_retry, tcp.timeout),
        (1, secs(1), secs(5))
    );

    let s = &cfg.services[1];
    let ssl = &s.reals[0].checkers[0];
    assert!(matches!(
        ssl.kind,
        CheckKind::Http {
            tls: true,
            sni: true,
            ..
        }
    ));
    assert_eq!(ssl.warmup, None);
    let ping = &s.reals[0].checkers[1];
    assert_eq!((&ping.kind, ping.retry), (&CheckKind::Ping, 4));
    let misc = &s.reals[1].checkers[0];
    assert_eq!(
        misc.kind,
        CheckKind::Misc {
            script: Script {
                argv: vec!["/bin/true".into(), "192.0.2.102".into()],
                user: Some(("root".into(), None)),
            },
            timeout: Some(secs(7)),
            dynamic: true,
        }
    );
    assert_eq!((misc.timeout, misc.retry), (secs(7), 0));

    // The group's three services share one spec: its first member's.
    assert_eq!(cfg.services[2].also.len(), 2);
    {
        let s = &cfg.services[2];
        assert_eq!(s.label, "[WEB]:80");
        let cks = &s.reals[0].checkers;
        assert_eq!(
            cks[0].kind,
            CheckKind::Dns {
                qtype: 1,
                name: "example.com".into()
            }
        );
        assert_eq!((cks[0].retry, cks[0].delay_before_retry), (3, secs(60)));
        assert_eq!(
            cks[0].target,
            "198.51.100.3:53".parse::<SocketAddr>().expect("sa")
        );
        assert_eq!(
            cks[1].kind,
            CheckKind::Udp {
                payload: vec![1, 2, 3],
                require_reply: true,
                reply: Some(vec![0x0a, 0x0b]),
                reply_mask: None,
                min_reply_len: 0,
                max_reply_len: 255,
            }
        );
    }
    let s = &cfg.services[3];
    assert_eq!(s.label, "FWM 7");
    let ck = &s.reals[0].checkers[0];
    assert_eq!(
        ck.target,
        "192.0.2.111:80".parse::<SocketAddr>().expect("sa")
    );
    assert_eq!(ck.delay_before_retry, secs(2));
}

#[test]
fn defaults() {
    let cfg = parse(
        "virtual_server 10.0.0.1 80 {\n\
         \x20 real_server 10.0.1.1 {\n\
         \x20   TCP_CHECK {\n    }\n\
         \x20   DNS_CHECK {\n    }\n\
         \x20 }\n\
         }\n\
         virtual_server fwmark 3 {\n\
         \x20 persistence_granularity 64\n\
         \x20 real_server 2001:db8::1 8080 {\n  }\n\
         }\n",
    )
    .expect("parses");
    // keepalived 2.2.7: no protocol → UDP, no lb_algo → wlc, no lb_kind → NAT, each with a
    // warning at the virtual_server line.
    let key = addr_key(Proto::Udp, "10.0.0.1", 80);
    assert_eq!(cfg.commands[0], svc(key, SchedKind::Wlc));
    assert_eq!(
        cfg.commands[1],
        Command::AddDest {
            key,
            dest: dest("10.0.1.1", 80, Fwd::Masq, 1)
        }
    );
    let lines: Vec<_> = cfg.warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, vec![1, 1, 1, 9, 9], "{:?}", cfg.warnings);
    let s = &cfg.services[0];
    assert_eq!((s.quorum, s.hysteresis), (1, 0));
    let tcp = &s.reals[0].checkers[0];
    assert_eq!(tcp.target, "10.0.1.1:80".parse::<SocketAddr>().expect("sa"));
    assert_eq!(
        (
            tcp.timeout,
            tcp.delay_loop,
            tcp.retry,
            tcp.delay_before_retry,
            tcp.warmup
        ),
        (secs(5), secs(60), 1, secs(1), Some(secs(60)))
    );
    assert_eq!(tcp.bind, None);
    let dns = &s.reals[0].checkers[1];
    assert_eq!(
        dns.kind,
        CheckKind::Dns {
            qtype: 6,
            name: ".".into()
        }
    );
    assert_eq!((dns.retry, dns.delay_before_retry), (3, secs(60)));

    // A fwmark service takes its family from its real servers; granularity alone means
    // persistence for keepalived's 360 s.
    let mark = SvcKey::Mark { mark: 3, v6: true };
    assert_eq!(
        cfg.commands[2],
        Command::AddService {
            key: mark,
            opts: ServiceOpts {
                persist: Some(Persistence {
                    timeout: secs(360),
                    netmask: ip("ffff:ffff:ffff:ffff::"),
                }),
                ..ServiceOpts::default()
            },
        }
    );
    assert_eq!(
        cfg.commands[3],
        Command::AddDest {
            key: mark,
            dest: dest("2001:db8::1", 8080, Fwd::Masq, 1)
        }
    );
}

#[test]
fn inheritance_and_adjustments() {
    let cfg = parse(
        "virtual_server 10.0.0.1 80 {\n\
         protocol TCP\nlb_kind DR\nlb_algo rr\n\
         delay_loop 20\nretry 5\nconnect_timeout 2.5\nalpha\ninhibit_on_failure\nweight 4\n\
         quorum 100\nhysteresis 200\n\
         real_server 10.0.1.1 81 {\n\
         \x20 delay_before_retry 7\n\
         \x20 lvs_method NAT\n\
         \x20 alpha off\n\
         \x20 HTTP_GET {\n    url {\n      path /\n    }\n    nb_get_retry 9\n  }\n\
         \x20 MISC_CHECK {\n    misc_path \"/bin/x 'a b'\"\n    delay_loop 3\n  }\n\
         }\n\
         real_server 10.0.1.2 81 {\n  PING_CHECK {\n  }\n}\n\
         real_server 10.0.1.2 81 {\n}\n\
         }\n",
    )
    .expect("parses");
    let key = addr_key(Proto::Tcp, "10.0.0.1", 80);
    // NAT keeps its port; DR takes the service's.
    assert_eq!(
        cfg.commands[1..],
        [
            Command::AddDest {
                key,
                dest: dest("10.0.1.1", 81, Fwd::Masq, 4)
            },
            Command::AddDest {
                key,
                dest: dest("10.0.1.2", 80, Fwd::Route, 4)
            },
        ]
    );
    let s = &cfg.services[0];
    // quorum lowered to the total weight (8), hysteresis to quorum − 1.
    assert_eq!((s.quorum, s.hysteresis), (8, 7));
    let r1 = &s.reals[0];
    assert!(r1.inhibit_on_failure);
    let http = &r1.checkers[0];
    assert_eq!(
        (
            http.delay_loop,
            http.retry,
            http.delay_before_retry,
            http.timeout,
            http.alpha
        ),
        (secs(20), 9, secs(7), Duration::from_millis(2500), false)
    );
    let misc = &r1.checkers[1];
    // misc_timeout's default is the virtual server's delay_loop, not the checker's.
    assert_eq!(
        (misc.delay_loop, misc.timeout, misc.retry),
        (secs(3), secs(20), 5)
    );
    assert!(
        matches!(&misc.kind, CheckKind::Misc { script, .. } if script.argv == ["/bin/x", "a b"])
    );
    let ping = &s.reals[1].checkers[0];
    assert_eq!(ping.target.port(), 80);
    assert!(ping.alpha);
    let msgs: Vec<_> = cfg
        .warnings
        .iter()
        .map(|w| (w.line, w.msg.as_str()))
        .collect();
    assert!(
        msgs.iter()
            .any(|(l, m)| *l == 21 && m.contains("nb_get_retry")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|(l, m)| *l == 32 && m.contains("duplicated")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|(l, m)| *l == 1 && m.contains("quorum 100")),
        "{msgs:?}"
    );
}

#[test]
fn unknown_keywords_warn() {
    let cfg = parse(
        "vrrp_instance X {\n  whatever { nested }\n}\n\
         virtual_server 10.0.0.1 80 {\n\
         protocol TCP\nlb_algo rr\nlb_kind NAT\n\
         bogus_vs 1\n\
         real_server 10.0.1.1 80 {\n\
         \x20 bogus_rs\n\
         \x20 TCP_CHECK {\n    bogus_ck 2\n  }\n\
         \x20 bogus_block {\n    weight 1\n  }\n\
         }\n}\n",
    )
    .expect("parses");
    let w: Vec<_> = cfg
        .warnings
        .iter()
        .map(|w| (w.line, w.msg.split('`').nth(1).unwrap_or("").to_string()))
        .collect();
    assert_eq!(
        w,
        vec![
            (8, "bogus_vs".to_string()),
            (10, "bogus_rs".to_string()),
            (12, "bogus_ck".to_string()),
            (14, "bogus_block".to_string()),
        ]
    );
    assert_eq!(
        cfg.warnings[0].to_string(),
        "/etc/keepalived/keepalived.conf:8: unknown keyword `bogus_vs` in virtual_server (ignored)"
    );
}

/// The error of `text`, as (line, message).
fn error(text: &str) -> (usize, String) {
    match parse(text) {
        Ok(c) => panic!("parsed: {c:?}"),
        Err(e) => {
            assert_eq!(e.file, Path::new("/etc/keepalived/keepalived.conf"));
            (e.line, e.msg)
        }
    }
}

const VS_HEAD: &str = "virtual_server 10.0.0.1 80 {\nprotocol TCP\n";

#[test]
fn errors_name_the_line() {
    let (l, m) = error(&format!("{VS_HEAD}lb_kind TUN\n}}\n"));
    assert_eq!(
        (l, m.as_str()),
        (3, "lb_kind TUN is not supported (no tunnelling yet)")
    );
    let (l, m) = error(&format!(
        "{VS_HEAD}real_server 10.0.1.1 80 {{\nlvs_method TUN\n}}\n}}\n"
    ));
    assert_eq!(
        (l, m.as_str()),
        (4, "lvs_method TUN is not supported (no tunnelling yet)")
    );
    let (l, m) = error(&format!("{VS_HEAD}lb_algo lblc\n}}\n"));
    assert!(l == 3 && m.contains("not supported"), "{m}");
    let (l, m) = error(&format!("{VS_HEAD}\nlb_algo fancy\n}}\n"));
    assert!(l == 4 && m.contains("unknown scheduler"), "{m}");
    let (l, m) = error(&format!("{VS_HEAD}protocol SCTP\n}}\n"));
    assert!(l == 3 && m.contains("SCTP"), "{m}");
    // Braces: an extra '}', a block never closed, a '{' with no keyword.
    let (l, m) = error("global_defs {\n}\n}\n");
    assert!(l == 3 && m.contains("unbalanced"), "{m}");
    let (l, m) = error(&format!(
        "{VS_HEAD}real_server 10.0.1.1 80 {{\nweight 1\n}}\n"
    ));
    assert!(l == 1 && m.contains("never closed"), "{m}");
    let (l, _) = error("global_defs {\n}\n{\n}\n");
    assert_eq!(l, 3);
    // Addresses and numbers.
    let (l, m) = error(&format!("{VS_HEAD}real_server 10.0.1.300 80 {{\n}}\n}}\n"));
    assert!(l == 3 && m.contains("10.0.1.300"), "{m}");
    let (l, m) = error("virtual_server 10.0.0 80 {\n}\n");
    assert!(l == 1 && m.contains("not an IP address"), "{m}");
    let (l, m) = error(&format!(
        "{VS_HEAD}\n\nreal_server 10.0.1.1 80 {{\nweight heavy\n}}\n}}\n"
    ));
    assert!(l == 6 && m.contains("heavy"), "{m}");
    let (l, m) = error(&format!("{VS_HEAD}delay_loop\n}}\n"));
    assert!(l == 3 && m.contains("missing value"), "{m}");
    // A real server of the other family.
    let (l, m) = error(&format!(
        "{VS_HEAD}real_server 10.0.1.1 80 {{\n}}\nreal_server 2001:db8::1 80 {{\n}}\n}}\n"
    ));
    assert!(l == 5 && m.contains("family"), "{m}");
    let (l, m) = error(
        "virtual_server fwmark 1 {\nreal_server 10.0.1.1 {\n}\nreal_server 2001:db8::2 {\n}\n}\n",
    );
    assert!(l == 4 && m.contains("family"), "{m}");
    // Command validation at the virtual_server's line.
    let (l, m) =
        error("\nvirtual_server 10.0.0.1 0 {\nprotocol TCP\nreal_server 10.0.1.1 80 {\n}\n}\n");
    assert!(l == 2 && m.contains("Zero port"), "{m}");
    let (l, m) = error(&format!(
        "{VS_HEAD}real_server 10.0.1.1 80 {{\n}}\n}}\nvirtual_server 10.0.0.1 80 {{\nprotocol TCP\nreal_server 10.0.1.2 80 {{\n}}\n}}\n"
    ));
    assert!(
        l == 6 && m.contains("already defined at /etc/keepalived/keepalived.conf:1"),
        "{m}"
    );
    let (l, m) = error("virtual_server group NOPE {\nreal_server 10.0.1.1 80 {\n}\n}\n");
    assert!(l == 1 && m.contains("NOPE"), "{m}");
    let (l, _) = error("$X=1\n");
    assert_eq!(l, 1);
    let (l, m) = error("\n@node1 virtual_server 10.0.0.1 80 {\n}\n");
    assert!(l == 2 && m.contains("conditional"), "{m}");
}

#[test]
fn groups_expand() {
    let cfg = parse(
        "virtual_server_group G {\n\
         10.0.0.1-3 80\n\
         10.0.1.254-10.0.2.1 443\n\
         10.0.3.0/31 25\n\
         fwmark 9\n\
         }\n\
         virtual_server group G {\nprotocol TCP\nlb_algo rr\nlb_kind DR\n\
         real_server 10.9.9.9 {\n}\n}\n",
    )
    .expect("parses");
    assert_eq!(cfg.services.len(), 1, "one set of checkers for the group");
    let s = &cfg.services[0];
    let keys: Vec<String> = std::iter::once(s.key)
        .chain(s.also.iter().map(|(k, _)| *k))
        .map(|k| k.label())
        .collect();
    assert_eq!(
        keys,
        [
            "TCP  10.0.0.1:80",
            "TCP  10.0.0.2:80",
            "TCP  10.0.0.3:80",
            "TCP  10.0.1.254:443",
            "TCP  10.0.1.255:443",
            "TCP  10.0.2.0:443",
            "TCP  10.0.2.1:443",
            "TCP  10.0.3.0:25",
            "TCP  10.0.3.1:25",
            "FWM  9",
        ]
    );
    // DR: every member's realserver takes the member's port (0 for the fwmark one).
    let ports: Vec<u16> = std::iter::once(s.reals[0].port)
        .chain(s.also.iter().map(|(_, p)| p[0]))
        .collect();
    assert_eq!(ports, [80, 80, 80, 443, 443, 443, 443, 25, 25, 0]);
    let (l, m) = error("virtual_server_group G {\n10.0.0.5-3 80\n}\n");
    assert!(l == 2 && m.contains("below"), "{m}");
}

#[test]
fn includes() {
    let d = TempDir::new("inc");
    d.write(
        "keepalived.conf",
        "global_defs {\n  include defs.inc\n}\ninclude conf.d/*.conf\n",
    );
    d.write("defs.inc", "lvs_timeouts udp 30\n");
    d.write(
        "conf.d/a.conf",
        "virtual_server 10.0.0.1 80 {\nprotocol TCP\nlb_algo rr\nlb_kind NAT\n  include ../rs/*.rs\n}\n",
    );
    d.write("conf.d/b.conf", "! nothing but a comment\n");
    d.write("conf.d/.hidden.conf", "this would not parse {\n");
    d.write("rs/1.rs", "real_server 10.0.1.1 80 {\n}\n");
    d.write("rs/2.rs", "real_server 10.0.1.2 80 {\n  unknown_here\n}\n");
    let cfg = load(&d.0.join("keepalived.conf")).expect("loads");
    assert_eq!(
        cfg.commands[0],
        Command::SetTimeouts {
            tcp: 0,
            tcpfin: 0,
            udp: 30
        }
    );
    assert_eq!(cfg.commands.len(), 4);
    assert_eq!(cfg.warnings.len(), 1);
    assert_eq!(cfg.warnings[0].file, d.0.join("conf.d/../rs/2.rs"));
    assert_eq!(cfg.warnings[0].line, 2);

    // An error in an included file names that file and its line.
    d.write("rs/2.rs", "real_server 10.0.1.2 80 {\n  weight -1\n}\n");
    let e = load(&d.0.join("keepalived.conf")).expect_err("bad weight");
    assert_eq!((e.file, e.line), (d.0.join("conf.d/../rs/2.rs"), 2));

    // A loop, through a relative path.
    d.write("rs/2.rs", "include ../conf.d/a.conf\n");
    let e = load(&d.0.join("keepalived.conf")).expect_err("loop");
    assert_eq!((e.file.clone(), e.line), (d.0.join("conf.d/../rs/2.rs"), 1));
    assert!(e.msg.contains("include loop"), "{e}");
    let e = load(&d.write("self.conf", "\ninclude self.conf\n")).expect_err("self loop");
    assert_eq!(e.line, 2);

    // A missing literal file is an error; a pattern that matches nothing, a warning.
    let e = load(&d.write("m.conf", "include nope.conf\n")).expect_err("missing");
    assert_eq!((e.file, e.line), (d.0.join("m.conf"), 1));
    let cfg = load(&d.write("w.conf", "include none/*.conf\n")).expect("empty glob");
    assert_eq!(cfg.warnings.len(), 1);

    // parse_str resolves includes against its name's directory.
    let cfg = parse_str("include defs.inc\n", &d.0.join("virtual.conf")).expect("parses");
    assert!(cfg.commands.is_empty());
}

/// The README's "Health checks" example is read as it says: no warning, the services and
/// checkers it describes.
#[test]
fn the_readme_example() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let at = readme
        .find("### Health checks")
        .expect("a Health checks section");
    let start = at + readme[at..].find("```\nglobal_defs").expect("its example") + 4;
    let end = start + readme[start..].find("```\n").expect("the example's end");
    let cfg = parse(&readme[start..end]).expect("the README's example parses");
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert_eq!(cfg.services.len(), 2);
    let s = &cfg.services[0];
    assert_eq!((s.quorum, s.hysteresis, s.sorry), (2, 1, true));
    let kinds: Vec<&str> = s
        .reals
        .iter()
        .flat_map(|r| r.checkers.iter().map(|c| c.kind.name()))
        .collect();
    assert_eq!(kinds, ["HTTP_GET", "TCP_CHECK", "MISC_CHECK"]);
    assert!(s.reals[0].inhibit_on_failure);
    assert_eq!(s.reals[0].checkers[0].retry, 2);
    assert!(matches!(
        s.reals[2].checkers[0].kind,
        CheckKind::Misc { dynamic: true, .. }
    ));
    assert_eq!(cfg.services[1].reals[0].checkers[0].kind.name(), "SSL_GET");
    assert!(cfg.scripts.enable_script_security);
}

/// `lvs_sync_daemon` as keepalived reads it: the sync id from `id`, else the VRRP instance's
/// `virtual_router_id`; the old positional id; bad values warned and ignored; an unknown
/// instance drops the setting.
#[test]
fn lvs_sync_daemon_follows_keepalived() {
    let parse = |global: &str| {
        let text = format!(
            "global_defs {{\n    {global}\n}}\nvrrp_instance VI_9 {{\n    interface eth1\n    virtual_router_id 42\n}}\n"
        );
        parse_str(&text, Path::new("k.conf")).expect("parses")
    };
    let c = parse("lvs_sync_daemon eth1 VI_9");
    assert_eq!(c.sync_daemons.len(), 2);
    assert!(
        c.sync_daemons
            .iter()
            .all(|d| d.syncid == 42 && d.ifname.as_deref() == Some("eth1"))
    );
    assert_eq!(c.warnings, vec![]);
    let c = parse("lvs_sync_daemon eth1 VI_9 5");
    assert_eq!(c.sync_daemons[0].syncid, 5);
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    let c = parse("lvs_sync_daemon eth1 VI_9 id 3 maxlen 1400 port 9000 ttl 2 group ff02::8848");
    let d = &c.sync_daemons[1];
    assert_eq!(
        (d.syncid, d.maxlen, d.port, d.ttl, d.group),
        (3, Some(1400), 9000, 2, Some("ff02::8848".parse().unwrap()))
    );
    let c = parse("lvs_sync_daemon eth1 VI_9 id 300 group 10.0.0.1 colour blue");
    assert_eq!(c.sync_daemons[0].syncid, 42);
    assert_eq!(c.sync_daemons[0].group, None);
    assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
    let c = parse("lvs_sync_daemon eth1 VI_NONE id 3");
    assert!(c.sync_daemons.is_empty());
    assert!(c.warnings[0].msg.contains("VI_NONE"), "{:?}", c.warnings);
}
