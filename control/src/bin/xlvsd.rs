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
    /// Interface to drive (repeat for several: e.g. the external and the internal one). A
    /// kernel bond (bond0) is driven on its members, found in sysfs with its mode, hash
    /// policy and aggregator.
    #[arg(long = "iface", value_name = "IF", required_unless_present = "bonds")]
    ifaces: Vec<String>,
    /// A bond without a kernel bond device to read (another aggregation, a test bed):
    /// NAME=MEMBER,MEMBER... (NAME is the interface holding the addresses; a member may be
    /// another --bond, for active-backup over two aggregates). xlvs receives and transmits
    /// on the members and follows their carriers.
    #[arg(long = "bond", value_name = "NAME=MEMBER,...")]
    bonds: Vec<String>,
    /// The mode of the --bond bonds, or of one: [NAME=]MODE, MODE one of 802.3ad
    /// (default), balance-xor, active-backup.
    #[arg(long = "bond-mode", value_name = "[NAME=]MODE")]
    bond_modes: Vec<String>,
    /// The transmit hash of the --bond bonds, or of one: [NAME=]POLICY, POLICY one of
    /// layer3+4 (default), layer2+3, layer2 (as the bonding driver's xmit_hash_policy).
    #[arg(long = "xmit-hash", value_name = "[NAME=]POLICY")]
    xmit_hashes: Vec<String>,
    /// AF_XDP sockets set aside for devices that join a kernel bond while xlvsd runs (one
    /// per RX queue of the newcomer; each holds its UMEM frames from the start, 16 MiB at
    /// the default sizes).
    #[arg(long = "spare-sockets", value_name = "N", default_value_t = 2)]
    spare_sockets: u32,
    /// UMEM frames (4 KiB each) per AF_XDP socket, a power of two from 64 to 65536: the frames
    /// a worker can have in flight (in its RX and fill rings, waiting to be sent, on another
    /// worker's port). Too few, and bursts find the fill ring empty (counted: FillEmpty in
    /// --workers, xlvs_worker_xsk_fill_ring_empty_total).
    #[arg(long = "xsk-frames", value_name = "N", default_value_t = 4096, value_parser = xsk_frames)]
    xsk_frames: u32,
    /// Rules to load at start, in `ipvsadm -S -n` format; SIGHUP re-reads the file and
    /// applies only what changed.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// A keepalived.conf: its virtual_server blocks become services (next to --rules'), and
    /// their realservers are health checked as keepalived's checker would; vrrp blocks are
    /// skipped (give the same file to `keepalived -P`). SIGHUP re-reads it.
    #[arg(long = "keepalived-conf", value_name = "FILE")]
    keepalived_conf: Option<PathBuf>,
    /// Control socket for xlvsadm: mode 0600, so only root (and xlvsd's own user) may
    /// connect.
    #[arg(long, value_name = "SOCKET", default_value = admin::DEFAULT_SOCKET)]
    control: PathBuf,
    /// Opens the control socket to this group too (mode 0660): its members may run the
    /// commands that only read (-L, --stats, -c, --daemon, --health, --workers, -S,
    /// --check); changes stay root's.
    #[arg(long = "control-group", value_name = "GROUP")]
    control_group: Option<String>,
    /// Where the XDP links are pinned (a directory on a bpffs, created if missing), so the
    /// program outlives a crashed xlvsd: the virtual services' frames are then dropped,
    /// never handed to this host's stack (which would reset their connections), until
    /// keepalived moves the VIPs; a restarted xlvsd swaps its program into the same links.
    /// An orderly stop leaves it for --restart-hold. `none`: no pinning (a crash or a stop
    /// detaches XDP).
    #[arg(
        long = "pin-dir",
        value_name = "DIR|none",
        default_value = "/sys/fs/bpf/xlvs"
    )]
    pin_dir: String,
    /// Where an orderly stop saves the connection table for the next xlvsd (a directory,
    /// created if missing; the file is read once and removed).
    #[arg(long = "state-dir", value_name = "DIR", default_value = "/run/xlvs")]
    state_dir: PathBuf,
    /// An orderly stop (SIGTERM, SIGINT: `systemctl restart`, an upgrade) saves the
    /// connection table and leaves the pinned XDP program keeping the services' frames from
    /// this host's stack for this many milliseconds, so the next xlvsd carries on every
    /// connection (clients see a short silence, which TCP retransmits through); after it,
    /// they go to the kernel as if no director ran. 0: an orderly stop detaches XDP. Needs
    /// --pin-dir.
    #[arg(long = "restart-hold", value_name = "MS", default_value_t = 5000)]
    restart_hold: u64,
    /// Maximum number of connections (and persistence templates) per address family; the
    /// table reserves its memory up front (~60 bytes per IPv4 connection, committed as used).
    #[arg(long, default_value_t = 4 << 20)]
    max_conns: usize,
    /// Half-open (SYN_RECV) connections kept at most, per address family, shared out among
    /// the workers (default: a quarter of --max-conns; 0: no bound but the table's). A new
    /// one beyond makes its worker remove its oldest still half-open one: a SYN flood at R
    /// per second leaves each handshake N / R seconds, and cannot take the table's space
    /// from established connections.
    #[arg(long = "max-syn-recv", value_name = "N")]
    max_syn_recv: Option<usize>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (off by default).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// IPVS's expire_nodest_conn: a connection whose realserver left the table (deleted, or
    /// taken out by a failed health check) expires at its next client packet, which is
    /// dropped, instead of going on to that realserver (the default, as in IPVS).
    #[arg(long)]
    expire_nodest_conn: bool,
    /// The XDP fast path, on by default: once a TCP connection (IPv4 or IPv6) is established
    /// (a UDP one: from its second datagram), the XDP program rewrites and forwards its frames
    /// itself (SYN, FIN, RST and anything unusual still go to the workers, which keep its
    /// state and timeouts; on a sync master, so do the client packets IPVS's sync rule
    /// reports). Every egress port must take XDP redirects (a veth: its peer needs an XDP
    /// program or GRO on): by default it is on where the kernel says every port does
    /// (Linux 6.3 and later); `--offload` turns it on where the kernel cannot say.
    #[arg(long, conflicts_with = "no_offload")]
    offload: bool,
    /// Keeps every frame on the workers (no XDP fast path).
    #[arg(long)]
    no_offload: bool,
    /// Adaptive polling: after a round that forwarded something, a worker thread keeps
    /// looking at its rings for this many microseconds before it sleeps (0, the default:
    /// it sleeps at once). Spends CPU to save wakeups when frames come in quick succession.
    #[arg(long, default_value_t = 0, value_name = "US")]
    poll_spin_us: u64,
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
    /// IPVS's sync_threshold, "THRESHOLD PERIOD": a connection is synced at its
    /// THRESHOLD-th client packet and then every PERIOD-th (PERIOD 0: once). A packet
    /// count, not a time, as in the kernel.
    #[arg(
        long = "sync-threshold",
        value_name = "\"T P\"",
        default_value = "3 50"
    )]
    sync_threshold: String,
    /// How long a partial sync datagram waits for more entries, in milliseconds (the
    /// kernel's is 2000; the default keeps the sync lag under 100 ms).
    #[arg(long = "sync-flush-ms", value_name = "MS", default_value_t = 50)]
    sync_flush_ms: u64,
    /// A peer director (repeatable): sync datagrams and resync pullers are taken from these
    /// addresses only, and a starting daemon or `xlvsadm --resync` pulls their tables.
    #[arg(long = "sync-peer", value_name = "ADDR")]
    sync_peer: Vec<std::net::IpAddr>,
    /// Authenticate sync datagrams and resync streams between xlvs directors with
    /// HMAC-SHA256 and this key (a file of at least 16 bytes, mode 600). Kernel IPVS peers
    /// cannot speak it: they drop such datagrams, and theirs are dropped.
    #[arg(long = "sync-auth-key", value_name = "FILE")]
    sync_auth_key: Option<PathBuf>,
    /// IPVS's sync_version: the message format the master sends, 1 (the kernel's default)
    /// or 0 (for old backups: IPv4 only, no timeouts). Backups read both.
    #[arg(long = "sync-version", value_name = "0|1", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    sync_version: u8,
    /// IPVS's sync_persist_mode: 1 sends the persistence templates but not the connections
    /// they control (fewer messages; the backup learns where each client goes).
    #[arg(long = "sync-persist-mode", value_name = "0|1", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    sync_persist_mode: u8,
    /// IPVS's sync_refresh_period, in seconds (0: off): an entry is not sent again while
    /// its expiry would move by less than this (and half its timeout), except for
    /// --sync-retries resends. With a sync_threshold period of 0 every client packet is a
    /// candidate, as in the kernel.
    #[arg(long = "sync-refresh-period", value_name = "SECS", default_value_t = 0)]
    sync_refresh_period: u64,
    /// IPVS's sync_retries (0-3), with --sync-refresh-period.
    #[arg(long = "sync-retries", value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=3))]
    sync_retries: u8,
    /// When a master first sends a TCP connection: `now`, the moment it becomes ESTABLISHED
    /// (the client's handshake ACK), in a datagram that leaves at once (within 5 ms), so a
    /// connection opened just before the master dies survives it; `threshold`, the kernel's
    /// rule alone (its --sync-threshold-th packet, then the flush interval).
    #[arg(long = "sync-established", value_enum, default_value = "now")]
    sync_established: SyncEstablishedArg,
    /// How the sync daemons follow keepalived's VRRP state (`xlvsadm --vrrp-notify`): `both`
    /// keeps master and backup running (each director syncs its own connections and backs
    /// up its peer's), `follow` runs the master on MASTER and the backup on BACKUP/FAULT, as
    /// the LVS HOWTO does.
    #[arg(long = "sync-roles", value_enum, default_value = "both")]
    sync_roles: SyncRolesArg,
    /// TCP port of the resync server and of the peers' (0: no resync).
    #[arg(long = "resync-port", value_name = "PORT", default_value_t = 8849)]
    resync_port: u16,
    /// Entries per second a resync stream sends at most (0: no limit).
    #[arg(long = "resync-rate", value_name = "N", default_value_t = 1_000_000)]
    resync_rate: u64,
    /// Maglev (mh) lookup table size, a prime; IPVS fixes it at kernel build time.
    #[arg(long, default_value_t = sched::SchedConfig::default().mh_table_size)]
    mh_table_size: usize,
    /// Worker threads: `per-queue` runs RX queue N of every interface in one thread (give the
    /// director as many cores as queues); `per-socket` gives every (interface, queue) its own.
    #[arg(long, value_enum, default_value = "per-queue")]
    threads: ThreadsArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum SyncEstablishedArg {
    Now,
    Threshold,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum SyncRolesArg {
    Both,
    Follow,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ThreadsArg {
    PerQueue,
    PerSocket,
}

fn main() {
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        // Under systemd: the journal stamps the time; each line starts with its syslog
        // priority (sd-daemon's "<N>" prefixes), so `journalctl -p warning` works.
        use std::io::Write as _;
        logger.format(|buf, r| {
            let prio = match r.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(buf, "<{prio}>{}", r.args())
        });
    } else {
        logger.format_timestamp_millis();
    }
    logger.init();
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
    let sync_threshold = match parse_threshold(&a.sync_threshold) {
        // The kernel checks every client packet when the period is 0 and a refresh period
        // is set: the workers then report each one, and the refresh rule decides.
        Ok((t, 0)) if a.sync_refresh_period > 0 => (t, 1),
        Ok(t) => t,
        Err(e) => {
            eprintln!("xlvsd: --sync-threshold: {e}");
            std::process::exit(2);
        }
    };
    let key = match &a.sync_auth_key {
        Some(p) => match xlvs_control::sync::auth::Key::load(p) {
            Ok(k) => Some(k),
            Err(e) => {
                eprintln!("xlvsd: --sync-auth-key: {e}");
                std::process::exit(2);
            }
        },
        None => None,
    };
    let sync_opts = xlvs_control::sync::daemon::SyncOptions {
        flush: std::time::Duration::from_millis(a.sync_flush_ms),
        peers: a.sync_peer,
        key,
        resync_port: a.resync_port,
        resync_rate: a.resync_rate,
        version: if a.sync_version == 0 {
            xlvs_control::sync::Version::V0
        } else {
            xlvs_control::sync::Version::V1
        },
        persist_mode: a.sync_persist_mode == 1,
        refresh_period: std::time::Duration::from_secs(a.sync_refresh_period),
        retries: a.sync_retries,
        established_now: matches!(a.sync_established, SyncEstablishedArg::Now),
    };
    let bonds = match parse_bonds(&a.bonds, &a.bond_modes, &a.xmit_hashes) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("xlvsd: {e}");
            std::process::exit(2);
        }
    };
    let cfg = daemon::Config {
        ifaces: a.ifaces,
        bonds,
        rules: a.rules,
        keepalived: a.keepalived_conf,
        control: a.control,
        control_group: a.control_group,
        pin_dir: (a.pin_dir != "none").then(|| PathBuf::from(&a.pin_dir)),
        state_dir: a.state_dir,
        restart_hold: std::time::Duration::from_millis(a.restart_hold),
        max_conns: a.max_conns,
        max_syn_recv: a.max_syn_recv.unwrap_or(a.max_conns / 4),
        xsk: XskConfig {
            threads: match a.threads {
                ThreadsArg::PerQueue => Threads::PerQueue,
                ThreadsArg::PerSocket => Threads::PerSocket,
            },
            sync_threshold,
            spare_sockets: a.spare_sockets,
            frames_per_worker: a.xsk_frames,
            poll_spin: std::time::Duration::from_micros(a.poll_spin_us.min(10_000)),
            ..XskConfig::default()
        },
        sched: sched::SchedConfig {
            mh_table_size: a.mh_table_size,
        },
        metrics: a.metrics,
        expire_nodest_conn: a.expire_nodest_conn,
        offload: match (a.offload, a.no_offload) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        sync,
        sync_opts,
        sync_roles: match a.sync_roles {
            SyncRolesArg::Both => xlvs_control::vrrp::SyncRoles::Both,
            SyncRolesArg::Follow => xlvs_control::vrrp::SyncRoles::Follow,
        },
    };
    if let Err(e) = daemon::run(cfg) {
        eprintln!("xlvsd: {e:#}");
        std::process::exit(1);
    }
}

/// `--bond`, `--bond-mode` and `--xmit-hash`: a value without `NAME=` applies to every
/// bond that has no value of its own.
fn parse_bonds(
    bonds: &[String],
    modes: &[String],
    hashes: &[String],
) -> Result<Vec<xlvs_control::bond::BondSpec>, String> {
    use xlvs_control::bond::{BondSpec, Mode};
    use xlvs_dataplane::bond::XmitHash;
    let mut specs = bonds
        .iter()
        .map(|b| BondSpec::parse(b))
        .collect::<Result<Vec<_>, _>>()?;
    apply_per_bond(&mut specs, "--bond-mode", modes, |s, v| {
        s.mode = Mode::parse(v)?;
        Ok(())
    })?;
    apply_per_bond(&mut specs, "--xmit-hash", hashes, |s, v| {
        s.hash = XmitHash::parse(v).ok_or("one of layer2, layer2+3, layer3+4")?;
        Ok(())
    })?;
    Ok(specs)
}

/// Applies `[NAME=]VALUE` options (`opt`) to the bonds: the plain ones to every bond first,
/// then the named ones to theirs (so a named value wins whatever the order).
fn apply_per_bond(
    specs: &mut [xlvs_control::bond::BondSpec],
    opt: &str,
    values: &[String],
    set: impl Fn(&mut xlvs_control::bond::BondSpec, &str) -> Result<(), String>,
) -> Result<(), String> {
    for named in [false, true] {
        for v in values {
            let (name, x) = match v.split_once('=') {
                Some((n, x)) => (Some(n), x),
                None => (None, v.as_str()),
            };
            if name.is_some() != named {
                continue;
            }
            let mut hit = false;
            for s in specs
                .iter_mut()
                .filter(|s| name.is_none_or(|n| n == s.name))
            {
                set(s, x).map_err(|e| format!("{opt} {v}: {e}"))?;
                hit = true;
            }
            if !hit {
                return Err(format!("{opt} {v}: no such --bond"));
            }
        }
    }
    Ok(())
}

/// `"3 50"`: the kernel's sysctl takes a threshold below the period (or any with period 0).
fn parse_threshold(s: &str) -> Result<(u32, u32), String> {
    let v: Vec<&str> = s.split_whitespace().collect();
    let [t, p] = v.as_slice() else {
        return Err(format!("want \"THRESHOLD PERIOD\", got {s:?}"));
    };
    let (t, p) = match (t.parse::<u32>(), p.parse::<u32>()) {
        (Ok(t), Ok(p)) => (t, p),
        _ => return Err(format!("not two numbers: {s:?}")),
    };
    if p > 255 || (p != 0 && t >= p) {
        return Err(format!(
            "the threshold must be below the period, and the period at most 255: {s:?}"
        ));
    }
    Ok((t, p))
}

/// `--start-daemon` always parses to a `StartDaemon` command.
fn unreachable_daemon() -> ! {
    eprintln!("xlvsd: --start-daemon: internal error");
    std::process::exit(2);
}

fn xsk_frames(v: &str) -> Result<u32, String> {
    let n: u32 = v.parse().map_err(|_| format!("`{v}' is not a number"))?;
    if !(64..=65536).contains(&n) || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two from 64 to 65536"));
    }
    Ok(n)
}
