//! `xlvs-bench`: the end-to-end benchmark rig.
//!
//! - `xlvs-bench gen`: a pktgen-style generator on an AF_XDP socket.
//! - `xlvs-bench sink`: counts what arrives and records one-way latency.
//! - `xlvs-bench run`: builds a netns topology and runs the XDP-only forwarder, nftables DNAT,
//!   xlvs LVS-NAT and LVS-DR side by side; table, JSON and SVG plots.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use xlvs_bench::loadgen::{L4, Size, Spec};
use xlvs_bench::{generator, rig, sink, xsk};
use xlvs_control::sys;

#[derive(Parser)]
#[command(name = "xlvs-bench", about = "xlvs end-to-end benchmark rig", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send stamped frames to a virtual service from an AF_XDP socket; prints a JSON report.
    Gen(GenArgs),
    /// Count stamped frames arriving on an interface; prints "ready", then a JSON report when
    /// stopped (SIGINT/SIGTERM) or after --duration.
    Sink(SinkArgs),
    /// Build a netns lab and compare the data planes side by side.
    Run(rig::RunArgs),
    /// Attach the XDP-only forwarder (the rig's floor); prints "ready", detaches on SIGTERM.
    Fwd(FwdArgs),
    /// Print the table and draw the plots of an earlier run again (next to its results.json).
    Plot {
        /// The run's results.json.
        results: std::path::PathBuf,
    },
}

#[derive(clap::Args)]
struct FwdArgs {
    /// The client-side interface.
    #[arg(long)]
    from: String,
    /// The realservers' interface.
    #[arg(long)]
    to: String,
    #[arg(long)]
    vip: Ipv4Addr,
    #[arg(long)]
    rip: Ipv4Addr,
    #[arg(long)]
    rip_mac: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum Proto {
    Udp,
    Syn,
    Ack,
}

#[derive(clap::Args)]
struct GenArgs {
    /// Interface to send from.
    #[arg(short, long)]
    iface: String,
    /// TX queue.
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// The virtual service, VIP:PORT.
    #[arg(short, long)]
    dst: SocketAddrV4,
    /// Destination MAC (the director's interface).
    #[arg(short = 'm', long)]
    dst_mac: String,
    /// Source MAC (default: the interface's).
    #[arg(long)]
    src_mac: Option<String>,
    /// Source addresses, A or A-B.
    #[arg(short, long, default_value = "198.18.0.1")]
    src: String,
    /// Source ports, P or P-Q.
    #[arg(short = 'p', long, default_value = "1024-65535")]
    sport: String,
    #[arg(long, value_enum, default_value = "udp")]
    proto: Proto,
    /// Frame size on the wire with the FCS (64–1518), or "imix".
    #[arg(short = 'z', long, default_value = "64")]
    size: String,
    /// Frames per second (default: as fast as possible).
    #[arg(short, long)]
    rate: Option<u64>,
    /// Stop after this many frames.
    #[arg(short, long)]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(short = 'D', long)]
    duration: Option<f64>,
}

#[derive(clap::Args)]
struct SinkArgs {
    #[arg(short, long)]
    iface: String,
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// Stop after this many seconds.
    #[arg(short = 'D', long)]
    duration: Option<f64>,
}

fn range<T: Copy + std::str::FromStr>(s: &str) -> anyhow::Result<(T, T)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let p = |x: &str| {
        x.parse::<T>()
            .map_err(|_| anyhow!("bad range bound {x:?} in {s:?}"))
    };
    Ok((p(a)?, p(b)?))
}

fn mac(s: &str) -> anyhow::Result<[u8; 6]> {
    xlvs_control::neigh::parse_mac(s).ok_or_else(|| anyhow!("bad MAC address {s:?}"))
}

fn seconds(s: Option<f64>) -> anyhow::Result<Option<Duration>> {
    s.map(|s| Duration::try_from_secs_f64(s).map_err(|_| anyhow!("bad duration {s}")))
        .transpose()
}

fn gen_spec(a: &GenArgs) -> anyhow::Result<Spec> {
    let (ip0, ip1): (Ipv4Addr, Ipv4Addr) = range(&a.src)?;
    let (p0, p1): (u16, u16) = range(&a.sport)?;
    if ip1 < ip0 || p1 < p0 {
        bail!("source ranges must go upwards");
    }
    let src_mac = match &a.src_mac {
        Some(m) => mac(m)?,
        None => sys::iface(&a.iface)?.mac,
    };
    let size = match a.size.as_str() {
        "imix" => Size::Imix,
        n => Size::Fixed(n.parse().map_err(|_| anyhow!("bad size {n:?}"))?),
    };
    let spec = Spec {
        src_mac,
        dst_mac: mac(&a.dst_mac)?,
        src_ip: ip0,
        src_ips: u32::from(ip1) - u32::from(ip0) + 1,
        src_port: p0,
        src_ports: p1 - p0 + 1,
        dst: a.dst,
        l4: match a.proto {
            Proto::Udp => L4::Udp,
            Proto::Syn => L4::TcpSyn,
            Proto::Ack => L4::TcpAck,
        },
        size,
    };
    spec.validate()?;
    Ok(spec)
}

fn cmd_gen(a: GenArgs) -> anyhow::Result<()> {
    let spec = gen_spec(&a)?;
    let limits = generator::Limits {
        rate: a.rate.filter(|&r| r > 0),
        count: a.count,
        duration: seconds(a.duration)?,
    };
    if limits.count.is_none() && limits.duration.is_none() {
        bail!("give --count or --duration: the generator stops by itself");
    }
    sys::raise_memlock();
    let _signals = sys::SignalFd::install()?;
    let mut port = xsk::Port::open(&a.iface, a.queue)?;
    let report = generator::run(&mut port, &spec, &limits, &sys::stop_requested);
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn cmd_sink(a: SinkArgs) -> anyhow::Result<()> {
    sys::raise_memlock();
    let _signals = sys::SignalFd::install()?;
    let mut port = xsk::Port::open(&a.iface, a.queue)?;
    let prog = sink::SinkProgram::attach(&a.iface, a.queue, port.fd())?;
    println!("ready");
    let report = sink::run(&mut port, seconds(a.duration)?, &sys::stop_requested);
    drop(prog);
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn cmd_fwd(a: FwdArgs) -> anyhow::Result<()> {
    sys::raise_memlock();
    let _signals = sys::SignalFd::install()?;
    let fwd = xlvs_bench::fwd::Forwarder::attach(&a.from, &a.to, a.vip, a.rip, mac(&a.rip_mac)?)?;
    println!("ready");
    while !sys::stop_requested() {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(fwd);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Gen(a) => cmd_gen(a),
        Cmd::Sink(a) => cmd_sink(a),
        Cmd::Run(a) => rig::run(a),
        Cmd::Fwd(a) => cmd_fwd(a),
        Cmd::Plot { results } => rig::replot(&results),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xlvs-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}
