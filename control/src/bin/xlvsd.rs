//! xlvsd: the xlvs director daemon.

use std::path::PathBuf;

use clap::Parser;
use xlvs_control::{admin, daemon};
use xlvs_dataplane::afxdp::{Threads, XskConfig};
use xlvs_dataplane::core::sched;

/// The xlvs Linux Virtual Server director: XDP steering, AF_XDP workers, LVS-NAT and LVS-DR.
#[derive(Parser, Debug)]
#[command(name = "xlvsd", version)]
struct Args {
    /// Interface to drive (repeat for several: e.g. the external and the internal one).
    #[arg(long = "iface", value_name = "IF", required = true)]
    ifaces: Vec<String>,
    /// Rules to load at start, in `ipvsadm -S -n` format; SIGHUP re-reads the file and
    /// applies only what changed.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// A keepalived.conf: its virtual_server blocks become services (next to --rules'), and
    /// their realservers are health checked as keepalived's checker would; vrrp blocks are
    /// skipped (give the same file to `keepalived -P`). SIGHUP re-reads it.
    #[arg(long = "keepalived-conf", value_name = "FILE")]
    keepalived_conf: Option<PathBuf>,
    /// Control socket for xlvsadm.
    #[arg(long, value_name = "SOCKET", default_value = admin::DEFAULT_SOCKET)]
    control: PathBuf,
    /// Maximum number of connections (and persistence templates) per address family; the
    /// table reserves its memory up front (~60 bytes per IPv4 connection, committed as used).
    #[arg(long, default_value_t = 4 << 20)]
    max_conns: usize,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (off by default).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// IPVS's expire_nodest_conn: a connection whose realserver left the table (deleted, or
    /// taken out by a failed health check) expires at its next client packet, which is
    /// dropped, instead of going on to that realserver (the default, as in IPVS).
    #[arg(long)]
    expire_nodest_conn: bool,
    /// Starts a connection sync daemon, `master` or `backup` (give it twice for both), as
    /// `ipvsadm --start-daemon` with the options below; it keeps running across SIGHUP.
    #[arg(long = "start-daemon", value_name = "master|backup")]
    start_daemon: Vec<String>,
    /// The sync daemons' interface (ipvsadm `--mcast-interface`).
    #[arg(long = "mcast-interface", value_name = "IF")]
    mcast_interface: Option<String>,
    /// The sync daemons' sync id, 0-255 (ipvsadm `--syncid`).
    #[arg(long)]
    syncid: Option<String>,
    /// Most bytes of a sync datagram (ipvsadm `--sync-maxlen`).
    #[arg(long = "sync-maxlen")]
    sync_maxlen: Option<String>,
    /// The sync multicast group (ipvsadm `--mcast-group`, default 224.0.0.81).
    #[arg(long = "mcast-group")]
    mcast_group: Option<String>,
    /// The sync UDP port (ipvsadm `--mcast-port`, default 8848).
    #[arg(long = "mcast-port")]
    mcast_port: Option<String>,
    /// The sync multicast TTL (ipvsadm `--mcast-ttl`, default 1).
    #[arg(long = "mcast-ttl")]
    mcast_ttl: Option<String>,
    /// Maglev (mh) lookup table size, a prime; IPVS fixes it at kernel build time.
    #[arg(long, default_value_t = sched::SchedConfig::default().mh_table_size)]
    mh_table_size: usize,
    /// Worker threads: `per-queue` runs RX queue N of every interface in one thread (give the
    /// director as many cores as queues); `per-socket` gives every (interface, queue) its own.
    #[arg(long, value_enum, default_value = "per-queue")]
    threads: ThreadsArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ThreadsArg {
    PerQueue,
    PerSocket,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let a = Args::parse();
    // The sync daemons, parsed as ipvsadm would parse the same options.
    let mut sync = Vec::new();
    for role in &a.start_daemon {
        let mut args = vec!["--start-daemon".to_string(), role.clone()];
        for (name, v) in [
            ("--mcast-interface", &a.mcast_interface),
            ("--syncid", &a.syncid),
            ("--sync-maxlen", &a.sync_maxlen),
            ("--mcast-group", &a.mcast_group),
            ("--mcast-port", &a.mcast_port),
            ("--mcast-ttl", &a.mcast_ttl),
        ] {
            if let Some(v) = v {
                args.push(name.to_string());
                args.push(v.clone());
            }
        }
        match xlvs_control::ipvsadm::parse(&args) {
            Ok(xlvs_control::command::Command::StartDaemon(spec)) => sync.push(spec),
            Ok(_) => unreachable_daemon(),
            Err(e) => {
                eprintln!("xlvsd: {}", e.msg);
                std::process::exit(2);
            }
        }
    }
    let cfg = daemon::Config {
        ifaces: a.ifaces,
        rules: a.rules,
        keepalived: a.keepalived_conf,
        control: a.control,
        max_conns: a.max_conns,
        xsk: XskConfig {
            threads: match a.threads {
                ThreadsArg::PerQueue => Threads::PerQueue,
                ThreadsArg::PerSocket => Threads::PerSocket,
            },
            ..XskConfig::default()
        },
        sched: sched::SchedConfig {
            mh_table_size: a.mh_table_size,
        },
        metrics: a.metrics,
        expire_nodest_conn: a.expire_nodest_conn,
        sync,
    };
    if let Err(e) = daemon::run(cfg) {
        eprintln!("xlvsd: {e:#}");
        std::process::exit(1);
    }
}

/// `--start-daemon` always parses to a `StartDaemon` command.
fn unreachable_daemon() -> ! {
    eprintln!("xlvsd: --start-daemon: internal error");
    std::process::exit(2);
}
