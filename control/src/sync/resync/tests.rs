//! A resync over loopback between two tables: the puller ends with the server's connections
//! and templates, states, realservers and links; a wrong key, a stranger and a tampered
//! stream get nothing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc::sync_channel;
use std::time::Duration;

use xlvs_dataplane::core::conn::{Tables, TemplateKey};
use xlvs_dataplane::core::inject::{ConnSpec, Spec, TemplateSpec};
use xlvs_dataplane::core::service::{Fwd, Proto, Snapshot};
use xlvs_dataplane::core::tcp_state::TcpState;
use xlvs_dataplane::core::{Core, Instant};

use super::client::{Pull, PullState};
use super::server::{Server, ServerConfig};
use crate::conns;
use crate::sync::auth::Key;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `n` connections (a tenth of them persistent, with their template), a few of each state.
fn filled(n: u32) -> (Arc<Tables>, Instant) {
    let tables = Arc::new(Tables::new(1 << 16));
    let mut core = Core::new(tables.clone());
    let snap = Snapshot::default();
    let now = xlvs_dataplane::afxdp::now();
    let states = [
        TcpState::Established,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
    ];
    for i in 0..n {
        let caddr = IpAddr::V4(std::net::Ipv4Addr::from_bits(0xC000_0200 + (i >> 8)));
        let daddr = ip(if i % 2 == 0 { "10.0.0.11" } else { "10.0.0.12" });
        let template = (i % 10 == 0).then(|| {
            let key = TemplateKey {
                proto: 6,
                caddr,
                vaddr: ip("198.51.100.1"),
                vport: 80,
            };
            let t = Spec::Template(TemplateSpec {
                key,
                daddr,
                dport: 8080,
                fwd: Fwd::Masq,
                timeout: Duration::from_secs(300),
                origin: None,
            });
            core.insert(now, &snap, &t).unwrap();
            key
        });
        let c = Spec::Conn(ConnSpec {
            proto: Proto::Tcp,
            caddr,
            cport: 1024 + (i & 0xff) as u16 * 7,
            vaddr: ip("198.51.100.1"),
            vport: 80,
            daddr,
            dport: 8080,
            fwd: if i % 3 == 0 { Fwd::Route } else { Fwd::Masq },
            state: states[i as usize % states.len()],
            timeout: Duration::from_secs(100 + i as u64 % 500),
            client_hop: None,
            template,
            origin: None,
        });
        core.insert(now, &snap, &c).unwrap();
    }
    (tables, now)
}

fn server(tables: &Arc<Tables>, key: Option<Key>, peers: Vec<IpAddr>) -> Server {
    server_asked(tables, key, peers, Default::default(), None)
}

fn server_asked(
    tables: &Arc<Tables>,
    key: Option<Key>,
    peers: Vec<IpAddr>,
    asked: Arc<std::sync::atomic::AtomicBool>,
    wake: Option<super::server::Wake>,
) -> Server {
    Server::start(
        ServerConfig {
            asked,
            wake,
            port: 0,
            ifname: "lo".into(),
            peers,
            key,
            syncid: 0,
            rate: 0,
        },
        tables.clone(),
    )
    .expect("resync server on lo")
}

/// Pulls from `addr` into a fresh table; the pull's final state.
fn pull(addr: SocketAddr, key: Option<Key>) -> (Arc<Tables>, PullState, u64) {
    let (tx, rx) = sync_channel(4);
    let p = Pull::start(vec![(addr, None)], key, 1, tx, || {}).unwrap();
    let tables = Arc::new(Tables::new(1 << 16));
    let mut core = Core::new(tables.clone());
    let snap = Snapshot::default();
    let now = xlvs_dataplane::afxdp::now();
    // The channel closes when the puller's thread ends.
    while let Ok(batch) = rx.recv_timeout(Duration::from_secs(20)) {
        for s in &batch {
            core.insert(now, &snap, s).unwrap();
        }
    }
    for _ in 0..200 {
        if p.finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = p
        .progress
        .entries
        .load(std::sync::atomic::Ordering::Relaxed);
    (tables, p.progress.state().unwrap(), got)
}

/// What must match: everything, the seconds left within 2 s (they tick during the test).
fn assert_same(a: &Tables, b: &Tables) {
    let now = xlvs_dataplane::afxdp::now();
    let key = |e: &conns::Entry| {
        (
            e.proto.to_string(),
            e.state.to_string(),
            e.client,
            e.virt,
            e.dest,
        )
    };
    let map = |t: &Tables| {
        conns::entries(t, now)
            .into_iter()
            .map(|e| (key(&e), e.expire))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (ma, mb) = (map(a), map(b));
    assert_eq!(ma.len(), mb.len());
    for (k, ea) in &ma {
        let eb = mb.get(k).unwrap_or_else(|| panic!("missing {k:?}"));
        assert!(ea.abs_diff(*eb) <= 2, "{k:?}: {ea} s vs {eb} s");
    }
}

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn a_pull_copies_the_whole_table_with_templates_linked() {
    if !root() {
        eprintln!("skipped: binding to a device needs root");
        return;
    }
    let (src, _) = filled(5000);
    let s = server(&src, None, vec![ip("127.0.0.1")]);
    let (dst, state, got) = pull(s.addr_on_loopback(), None);
    assert_eq!(state, PullState::Done);
    let mut templates = 0;
    src.v4.for_each_template(|_| templates += 1);
    assert!(templates > 10, "{templates} templates");
    assert_eq!(
        got,
        5000 + templates + 500,
        "connections, templates, and each persistent connection's template again after it"
    );
    assert_eq!(dst.len(), src.len());
    assert_same(&dst, &src);
    // Every entry is listed as synced from the server.
    let e = conns::entries(&dst, xlvs_dataplane::afxdp::now());
    assert!(
        e.iter()
            .all(|e| e.synced && e.peer == Some(ip("127.0.0.1")))
    );
    assert!(
        conns::entries(&src, xlvs_dataplane::afxdp::now())
            .iter()
            .all(|e| !e.synced)
    );
    // Links: every persistent connection's template has its connection counted.
    let linked = |t: &Tables| {
        let mut n = 0;
        t.v4.for_each(|c| n += c.persistent() as u32);
        n
    };
    assert_eq!((linked(&src), linked(&dst)), (500, 500));
    assert_eq!(
        s.stats.streams.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn strangers_wrong_keys_and_unauthenticated_pullers_get_nothing() {
    if !root() {
        eprintln!("skipped: binding to a device needs root");
        return;
    }
    let (src, _) = filled(100);
    let key = Key::new(b"the pair's shared resync key").unwrap();
    // Not a peer.
    let s = server(&src, None, vec![ip("192.0.2.99")]);
    let (dst, state, _) = pull(s.addr_on_loopback(), None);
    assert_eq!((state, dst.len()), (PullState::Failed, 0));
    // A server with a key: a puller without one, or with another.
    let s = server(&src, Some(key.clone()), vec![ip("127.0.0.1")]);
    let (dst, state, _) = pull(s.addr_on_loopback(), None);
    assert_eq!((state, dst.len()), (PullState::Failed, 0));
    let other = Key::new(b"not the pair's key at all!!").unwrap();
    let (dst, state, _) = pull(s.addr_on_loopback(), Some(other));
    assert_eq!((state, dst.len()), (PullState::Failed, 0));
    let refused = s.stats.refused.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(refused, 2);
    // The right key.
    let (dst, state, _) = pull(s.addr_on_loopback(), Some(key.clone()));
    assert_eq!(state, PullState::Done);
    assert_same(&dst, &src);
    // A puller with a key against a plain server: the frames fail their MAC.
    let plain = server(&src, None, vec![ip("127.0.0.1")]);
    let (dst, state, _) = pull(plain.addr_on_loopback(), Some(key));
    assert_eq!((state, dst.len()), (PullState::Failed, 0));
}

/// A director that leaves MASTER asks its peer to pull from it: the peer's server sets its
/// flag and wakes its control thread; an ask with the wrong key is refused.
#[test]
fn a_peer_asks_to_be_pulled_from() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let key = Key::new(b"resync test key, long enough").unwrap();
    let tables = Arc::new(Tables::new(1 << 10));
    let asked = Arc::new(AtomicBool::new(false));
    let woken = Arc::new(AtomicU32::new(0));
    let w = woken.clone();
    let s = server_asked(
        &tables,
        Some(key.clone()),
        vec!["127.0.0.1".parse().unwrap()],
        asked.clone(),
        Some(super::server::Wake(Arc::new(move || {
            w.fetch_add(1, Ordering::Relaxed);
        }))),
    );
    let wait = |what: &dyn Fn() -> bool| {
        for _ in 0..300 {
            if what() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    };
    let wrong = Key::new(b"another key, just as long......").unwrap();
    super::client::ask_to_pull(s.addr_on_loopback(), None, Some(wrong));
    assert!(wait(&|| s.stats.refused.load(Ordering::Relaxed) >= 1));
    assert!(!asked.load(Ordering::Relaxed));
    super::client::ask_to_pull(s.addr_on_loopback(), None, Some(key));
    assert!(wait(&|| asked.load(Ordering::Relaxed)));
    assert_eq!(woken.load(Ordering::Relaxed), 1);
    assert_eq!(s.stats.asks.load(Ordering::Relaxed), 1);
    // Asks are not pulls: nothing was streamed.
    assert_eq!(s.stats.streams.load(Ordering::Relaxed), 0);
}
