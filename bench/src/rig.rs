//! `xlvs-bench run`: one netns topology, the data planes side by side on it.
//!
//! ```text
//!  gen ns            director ns (pinned to --director-cpu)          sink ns
//!  <p>g ──veth── <p>e  [XDP fwd | nftables DNAT | xlvsd NAT | DR]  <p>i ──veth── <p>s
//!  192.0.2.2         192.0.2.1           VIP 192.0.2.100   10.10.0.1        10.10.0.11, .12
//! ```
//!
//! The generator (`xlvs-bench gen`) and the sink (`xlvs-bench sink`) run pinned to
//! `--load-cpu`; every veth runs its NAPI in a kernel thread (`threaded` NAPI), and the
//! director's two NAPI threads are pinned to the director's CPU with xlvsd (at nice -10), so
//! the director's CPU time is exactly its threads' (worker and control threads, plus the NAPI
//! threads that run XDP, conntrack and forwarding): read from `/proc/<tid>/schedstat` before
//! and after each load.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::generator::GenReport;
use crate::sink::SinkReport;

const VIP: &str = "192.0.2.100";
const RIPS: [&str; 2] = ["10.10.0.11", "10.10.0.12"];
const PORT: u16 = 80;

/// A data plane under test.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Plane {
    /// XDP-only forwarder: stateless DNAT to one RIP and a redirect (the floor).
    Xdp,
    /// nftables DNAT (numgen round robin over the RIPs) with conntrack, kernel forwarding.
    Nft,
    /// xlvsd, LVS-NAT, rr over the RIPs.
    Nat,
    /// xlvsd, LVS-DR, rr over the RIPs.
    Dr,
    /// xlvsd, LVS-NAT as `nat`, one worker thread per socket (`--threads per-socket`): what a
    /// frame's hand-off between threads costs.
    NatSplit,
    /// xlvsd, LVS-NAT as `nat`, the client side a two-member bond (`--bond`, 802.3ad,
    /// layer3+4): the generator's flows arrive on both members (half each, as a switch
    /// spreads them), and every frame leaving on the bond picks its member by the hash.
    NatBond,
    /// xlvsd, LVS-NAT as `nat`, with the XDP fast path (`--offload`): a flow's frames after
    /// its first go through the XDP program alone.
    NatOffload,
    /// xlvsd, LVS-DR as `dr`, with the XDP fast path.
    DrOffload,
}

impl Plane {
    pub fn label(self) -> &'static str {
        match self {
            Plane::Xdp => "XDP forwarder (floor)",
            Plane::Nft => "nftables DNAT + conntrack",
            Plane::Nat => "xlvs LVS-NAT",
            Plane::Dr => "xlvs LVS-DR",
            Plane::NatSplit => "xlvs NAT, thread/socket",
            Plane::NatBond => "xlvs NAT, 2-member bond",
            Plane::NatOffload => "xlvs NAT, XDP fast path",
            Plane::DrOffload => "xlvs DR, XDP fast path",
        }
    }
    /// Run by xlvsd (every plane but the floor and nftables).
    pub fn is_xlvs(self) -> bool {
        !matches!(self, Plane::Xdp | Plane::Nft)
    }

    pub fn key(self) -> &'static str {
        match self {
            Plane::Xdp => "xdp",
            Plane::Nft => "nft",
            Plane::Nat => "nat",
            Plane::Dr => "dr",
            Plane::NatSplit => "nat-split",
            Plane::NatBond => "nat-bond",
            Plane::NatOffload => "nat-offload",
            Plane::DrOffload => "dr-offload",
        }
    }
}

#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct RunArgs {
    /// Data planes, in order.
    #[arg(long, value_delimiter = ',', default_value = "xdp,nft,nat,dr")]
    pub planes: Vec<Plane>,
    /// Offered loads in frames/s; 0 = as fast as the generator goes.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50000,100000,200000,300000,400000,0"
    )]
    pub loads: Vec<u64>,
    /// Seconds per load.
    #[arg(short = 'D', long, default_value_t = 5.0)]
    pub duration: f64,
    /// Frame size on the wire (64–1518) or "imix".
    #[arg(short = 'z', long, default_value = "64")]
    pub size: String,
    /// Source addresses (from 198.18.0.1) and ports (from 1024): flows = product.
    #[arg(long, default_value_t = 16)]
    pub src_ips: u32,
    #[arg(long, default_value_t = 64)]
    pub src_ports: u16,
    /// CPU for the director (xlvsd, its NAPI threads); the generator and sink get --load-cpu.
    #[arg(long, default_value_t = 1)]
    pub director_cpu: usize,
    #[arg(long, default_value_t = 0)]
    pub load_cpu: usize,
    /// Seconds of wrk short connections per plane (nft and nat); 0 skips them.
    #[arg(long, default_value_t = 5.0)]
    pub conn_secs: f64,
    /// wrk connections for the connection-rate run.
    #[arg(long, default_value_t = 16)]
    pub conn_clients: u32,
    /// Where to write results.json, throughput.svg and latency.svg.
    #[arg(short, long, default_value = "target/bench-rig")]
    pub out: PathBuf,
    /// Extra xlvsd arguments for the xlvs planes (repeat: `--xlvsd-arg=--busy-poll=50`).
    #[arg(long = "xlvsd-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub xlvsd_args: Vec<String>,
    /// xlvsd and xlvsadm (default: beside this binary).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Another build's xlvsd and xlvsadm (build B, the baseline): every xlvs plane runs with
    /// both builds, one after the other (alternating which goes first, round by round), and
    /// the ratios include each plane's build A against build B: a before and after from one
    /// run.
    #[arg(long)]
    pub vs_bin_dir: Option<PathBuf>,
    /// Under a minute in all (the smoke test): 20 000 frames/s and as fast as possible, 1 s
    /// each, wrk for 1 s.
    #[arg(long)]
    pub quick: bool,
    /// Runs every plane this many times, in turn (xdp, nft, ..., xdp, nft, ...), so that a
    /// drift of the machine's speed reaches every plane alike; the table, the ratios and the
    /// plots then give each figure's median over the rounds, with its range.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
}

/// Orders target loads: 0 ("as fast as possible") above every rate.
pub fn load_rank(target_pps: u64) -> u64 {
    if target_pps == 0 {
        u64::MAX
    } else {
        target_pps
    }
}

/// A target load as printed: its rate, or "max" for 0.
fn load_label(target_pps: u64) -> String {
    if target_pps == 0 {
        "max".into()
    } else {
        target_pps.to_string()
    }
}

/// What a figure is of: a plane, and whether of build B (`--vs-bin-dir`).
pub type Series = (Plane, bool);

/// A series as printed and in the plots' legends: build B's planes marked "(B)".
pub fn series_label((plane, baseline): Series) -> String {
    if baseline {
        format!("{} (B)", plane.label())
    } else {
        plane.label().to_string()
    }
}

impl Point {
    pub fn series(&self) -> Series {
        (self.plane, self.baseline)
    }
}

impl ConnRate {
    pub fn series(&self) -> Series {
        (self.plane, self.baseline)
    }
}

/// One plane at one offered load.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Point {
    pub plane: Plane,
    /// Measured with `--vs-bin-dir`'s build (B) rather than `--bin-dir`'s (A).
    #[serde(default)]
    pub baseline: bool,
    /// Which round of `--rounds` (from 0).
    #[serde(default)]
    pub round: u32,
    /// The load asked for (0 = as fast as possible).
    pub target_pps: u64,
    /// What the generator sent.
    pub offered_pps: f64,
    /// What reached the sink.
    pub delivered_pps: f64,
    pub loss_pct: f64,
    /// Director CPU time over the run's wall time (1.0 = one core busy).
    pub director_cores: f64,
    /// Director CPU time per delivered packet.
    pub cpu_ns_per_pkt: f64,
    /// Delivered packets per second of director CPU: throughput at equal CPU.
    pub pps_per_core: f64,
    pub generator: GenReport,
    pub sink: SinkReport,
    /// Director CPU by thread name (ns).
    pub cpu_by_thread: BTreeMap<String, u64>,
    /// Where frames were lost (veth counters over the run): `director_in`, frames the
    /// director's input queue refused (its NAPI or sockets fell behind); `sink_in`, frames
    /// the sink's input queue refused (the load CPU fell behind, not the director).
    pub drops: BTreeMap<String, u64>,
}

/// wrk with one request per connection through the VIP.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnRate {
    pub plane: Plane,
    /// As [`Point::baseline`].
    #[serde(default)]
    pub baseline: bool,
    /// Which round of `--rounds` (from 0).
    #[serde(default)]
    pub round: u32,
    pub requests: u64,
    pub secs: f64,
    pub requests_per_sec: f64,
    /// Socket errors (connect, read, write, timeout) and non-2xx/3xx answers.
    pub failed: u64,
    pub director_cores: f64,
    pub cpu_us_per_conn: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ratio {
    pub plane: Plane,
    /// Of build B (`--vs-bin-dir`).
    #[serde(default)]
    pub baseline: bool,
    pub vs: Plane,
    #[serde(default)]
    pub vs_baseline: bool,
    /// Best delivered pps of `plane` over best delivered pps of `vs`.
    pub peak_pps: f64,
    /// Delivered pps per director core, at the highest load both ran (equal CPU).
    pub pps_per_core: f64,
    /// Over several rounds: both ratios are the medians of the rounds' ratios (each round's
    /// planes against each other), and these their ranges (min, max).
    #[serde(default)]
    pub peak_range: Option<(f64, f64)>,
    #[serde(default)]
    pub pps_per_core_range: Option<(f64, f64)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub machine: String,
    pub started_unix: u64,
    pub args: serde_json::Value,
    pub points: Vec<Point>,
    pub conn_rate: Vec<ConnRate>,
    pub ratios: Vec<Ratio>,
}

/// Runs a command; its stderr goes into the error.
fn sh(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The namespaces and processes of one run; dropping it kills the processes and deletes the
/// namespaces (their veths go with them).
struct Lab {
    p: String,
    gen_ns: String,
    dir_ns: String,
    sink_ns: String,
    ext_mac: String,
    dir_cpu: usize,
    load_cpu: usize,
    tmp: PathBuf,
    children: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.gen_ns, &self.dir_ns, &self.sink_ns] {
            if let Ok(pids) = sh(&["ip", "netns", "pids", ns]) {
                for pid in pids.split_whitespace().filter_map(|p| p.parse().ok()) {
                    // Safety: plain kill(2) of a process inside our own namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// Deletes the namespaces of runs whose process is gone (killed before it could clean up):
/// `xb<pid>-gen|dir|sink`, where no process `<pid>` exists any more.
fn remove_stale_labs() {
    let Ok(list) = sh(&["ip", "netns", "list"]) else {
        return;
    };
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some((pid, role)) = ns.strip_prefix("xb").and_then(|r| r.split_once('-')) else {
            continue;
        };
        if ["gen", "dir", "sink"].contains(&role)
            && pid.parse::<u32>().is_ok()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

/// Runs `args` inside network namespace `ns`.
fn ns_exec(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    sh(&[&["ip", "netns", "exec", ns][..], args].concat())
}

/// A sysfs file of namespace `ns` (sysfs shows the interfaces of the namespace it is read
/// from), trimmed.
fn read_sys(ns: &str, path: &str) -> anyhow::Result<String> {
    Ok(ns_exec(ns, &["cat", path])?.trim().to_string())
}

fn mac_of(ns: &str, dev: &str) -> anyhow::Result<String> {
    read_sys(ns, &format!("/sys/class/net/{dev}/address"))
}

impl Lab {
    fn dev(&self, which: char) -> String {
        format!("{}{which}", self.p)
    }

    fn up(dir_cpu: usize, load_cpu: usize) -> anyhow::Result<Lab> {
        remove_stale_labs();
        let p = format!("xb{}", std::process::id());
        let tmp = std::env::temp_dir().join(format!("xlvs-bench-{p}"));
        std::fs::create_dir_all(&tmp)?;
        let mut lab = Lab {
            gen_ns: format!("{p}-gen"),
            dir_ns: format!("{p}-dir"),
            sink_ns: format!("{p}-sink"),
            p,
            ext_mac: String::new(),
            dir_cpu,
            load_cpu,
            tmp,
            children: Vec::new(),
        };
        let (g, d, s) = (&lab.gen_ns, &lab.dir_ns, &lab.sink_ns);
        let (gi, ei, ii, si) = (lab.dev('g'), lab.dev('e'), lab.dev('i'), lab.dev('s'));
        for ns in [g, d, s] {
            sh(&["ip", "netns", "add", ns])?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        sh(&[
            "ip", "link", "add", &gi, "netns", g, "type", "veth", "peer", "name", &ei, "netns", d,
        ])?;
        sh(&[
            "ip", "link", "add", &ii, "netns", d, "type", "veth", "peer", "name", &si, "netns", s,
        ])?;
        // The second member of the nat-bond plane's bond (f, its switch side h), and the
        // device that stands for the bond (b: an empty bridge, for its MAC; no address on it,
        // the director's client-side neighbours are static).
        let (hi, fi, bi) = (lab.dev('h'), lab.dev('f'), lab.dev('b'));
        sh(&[
            "ip", "link", "add", &hi, "netns", g, "type", "veth", "peer", "name", &fi, "netns", d,
        ])?;
        sh(&["ip", "link", "add", &bi, "netns", d, "type", "bridge"])?;
        sh(&["ip", "-n", d, "link", "set", &bi, "up"])?;
        for (ns, dev) in [(g, &hi), (d, &fi)] {
            ns_exec(ns, &["ethtool", "-K", dev, "tx", "off", "gro", "on"])?;
            sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            let threaded = format!("echo 1 > /sys/class/net/{dev}/threaded");
            ns_exec(ns, &["sh", "-c", &threaded])?;
        }
        for (ns, dev, addrs) in [
            (g, &gi, &["192.0.2.2/24"][..]),
            (d, &ei, &["192.0.2.1/24"][..]),
            (d, &ii, &["10.10.0.1/24"][..]),
            (s, &si, &["10.10.0.11/24", "10.10.0.12/24"][..]),
        ] {
            for a in addrs {
                sh(&["ip", "-n", ns, "addr", "add", a, "dev", dev])?;
            }
            // Endpoints compute full checksums (the director updates them incrementally);
            // GRO keeps each veth on NAPI with or without XDP, and `threaded` puts that NAPI
            // in a kernel thread we can pin and measure.
            ns_exec(ns, &["ethtool", "-K", dev, "tx", "off", "gro", "on"])?;
            sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            let threaded = format!("echo 1 > /sys/class/net/{dev}/threaded");
            ns_exec(ns, &["sh", "-c", &threaded])?;
        }
        sh(&["ip", "-n", g, "route", "add", "default", "via", "192.0.2.1"])?;
        sh(&["ip", "-n", s, "route", "add", "default", "via", "10.10.0.1"])?;
        ns_exec(d, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        ns_exec(
            g,
            &["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"],
        )?;
        // Static neighbours: no ARP in the measurements. The VIP is on the client's link:
        // the director's MAC answers for it.
        let (gm, sm) = (mac_of(g, &gi)?, mac_of(s, &si)?);
        let (em, im) = (mac_of(d, &ei)?, mac_of(d, &ii)?);
        for (ns, ip, mac, dev) in [
            (d, "192.0.2.2", &gm, &ei),
            (d, RIPS[0], &sm, &ii),
            (d, RIPS[1], &sm, &ii),
            (g, "192.0.2.1", &em, &gi),
            (g, VIP, &em, &gi),
            (s, "10.10.0.1", &im, &si),
        ] {
            let args = [
                "ip", "-n", ns, "neigh", "replace", ip, "lladdr", mac, "dev", dev,
            ];
            sh(&[&args[..], &["nud", "permanent"]].concat())?;
        }
        lab.ext_mac = em;
        Ok(lab)
    }

    /// Starts `args` in `ns` pinned to `cpu`; stdout piped if `pipe`.
    fn spawn(
        &mut self,
        ns: &str,
        cpu: usize,
        args: &[&str],
        log: &str,
        pipe: bool,
    ) -> anyhow::Result<usize> {
        let logf = std::fs::File::create(self.tmp.join(log))?;
        let cpu = cpu.to_string();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "taskset", "-c", &cpu])
            .args(args)
            .stdin(Stdio::null())
            .stderr(logf.try_clone()?);
        cmd.stdout(if pipe {
            Stdio::piped()
        } else {
            Stdio::from(logf)
        });
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", args[0]))?;
        self.children.push(child);
        Ok(self.children.len() - 1)
    }

    fn stop(&mut self, i: usize) -> anyhow::Result<std::process::ExitStatus> {
        let c = &mut self.children[i];
        // Safety: kill(2) of our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = c.try_wait()? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return Ok(c.wait()?);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Frames the veths refused to pass on: a veth's TX drop counts frames its peer's
    /// queue had no room for.
    fn drops(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let read = |ns: &str, dev: String| -> anyhow::Result<u64> {
            let f = format!("/sys/class/net/{dev}/statistics/tx_dropped");
            let v = read_sys(ns, &f)?;
            v.parse().with_context(|| format!("{f}: {v:?}"))
        };
        Ok(BTreeMap::from([
            (
                "director_in".to_string(),
                read(&self.gen_ns, self.dev('g'))? + read(&self.gen_ns, self.dev('h'))?,
            ),
            ("sink_in".to_string(), read(&self.dir_ns, self.dev('i'))?),
        ]))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.tmp.join(name)).unwrap_or_default()
    }

    /// (tid, name) of the NAPI kernel threads of `dev`.
    fn napi_threads(dev: &str) -> Vec<(u32, String)> {
        let want = format!("napi/{dev}-");
        let mut v = Vec::new();
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                // A thread name is cut at 15 bytes: with a 7-digit pid, "napi/xb1234567e".
                if let Ok(c) = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    && (c.starts_with(&want)
                        || (c.trim().len() == 15 && want.starts_with(c.trim())))
                {
                    v.push((pid, c.trim().to_string()));
                }
            }
        }
        v
    }

    /// Pins every NAPI thread: the director's two to its CPU, the others to the load CPU.
    /// Returns the director's.
    fn pin_napi(&self) -> anyhow::Result<Vec<(u32, String)>> {
        let mut dir = Vec::new();
        for (c, cpu) in [
            ('e', self.dir_cpu),
            ('f', self.dir_cpu),
            ('i', self.dir_cpu),
            ('g', self.load_cpu),
            ('h', self.load_cpu),
            ('s', self.load_cpu),
        ] {
            for (tid, name) in Lab::napi_threads(&self.dev(c)) {
                pin(tid, cpu)?;
                if c == 's' {
                    // The sink side before the generator on the shared CPU (see `measure`).
                    // Safety: setpriority(2) on a thread id; no memory is passed.
                    unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, -10) };
                }
                if cpu == self.dir_cpu && (c == 'e' || c == 'f' || c == 'i') {
                    dir.push((tid, name));
                }
            }
        }
        Ok(dir)
    }
}

/// Pins thread `tid` (0: the calling one) to CPU `cpu` (`sched_setaffinity`).
pub fn pin(tid: u32, cpu: usize) -> anyhow::Result<()> {
    // Safety: a zeroed cpu_set_t is empty; CPU_SET and sched_setaffinity get valid pointers.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid as i32, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        bail!(
            "pinning thread {tid} to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// CPU time of threads, by name (ns, from schedstat).
fn cpu_ns(threads: &[(u32, String)]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for (tid, name) in threads {
        let ns = std::fs::read_to_string(format!("/proc/{tid}/schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        *m.entry(name.clone()).or_insert(0) += ns;
    }
    m
}

/// `after − before`, key by key (a key new in `after` counts from 0).
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(*before.get(k).unwrap_or(&0))))
        .collect()
}

/// Every thread of a process, as (tid, name).
fn threads_of(pid: u32) -> Vec<(u32, String)> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in rd.flatten() {
            let Ok(tid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .unwrap_or_default()
                .trim()
                .to_string();
            v.push((tid, name));
        }
    }
    v
}

/// What runs a plane: a child process (xlvsd, the XDP forwarder's holder) or nothing
/// (nftables).
type Running = Option<usize>;

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

fn start_plane(
    lab: &mut Lab,
    plane: Plane,
    bin: &Path,
    me: &Path,
    xlvsd_args: &[String],
) -> anyhow::Result<Running> {
    let (d, ei, ii) = (lab.dir_ns.clone(), lab.dev('e'), lab.dev('i'));
    match plane {
        Plane::Xdp => {
            let sm = mac_of(&lab.sink_ns, &lab.dev('s'))?;
            let args = [
                me.to_str().unwrap_or_default(),
                "fwd",
                "--from",
                &ei,
                "--to",
                &ii,
                "--vip",
                VIP,
                "--rip",
                RIPS[0],
                "--rip-mac",
                &sm,
            ];
            let i = lab.spawn(&d, lab.dir_cpu, &args, "fwd.log", true)?;
            wait_ready(lab, i, "fwd.log")?;
            Ok(Some(i))
        }
        Plane::Nft => {
            let rule = |proto: &str| {
                format!(
                    "ip daddr {VIP} {proto} dport {PORT} dnat to numgen inc mod 2 map {{ 0 : {}, 1 : {} }}",
                    RIPS[0], RIPS[1]
                )
            };
            let ruleset = format!(
                "table ip xlvsbench {{\n chain pre {{\n  type nat hook prerouting priority dstnat;\n  {}\n  {}\n }}\n}}\n",
                rule("udp"),
                rule("tcp")
            );
            let f = lab.tmp.join("nft.rules");
            write_file(&f, &ruleset)?;
            ns_exec(&d, &["nft", "-f", f.to_str().unwrap_or_default()])?;
            Ok(None)
        }
        _ => {
            let fwd = if matches!(plane, Plane::Dr | Plane::DrOffload) {
                "-g"
            } else {
                "-m"
            };
            let threads = if plane == Plane::NatSplit {
                "per-socket"
            } else {
                "per-queue"
            };
            let mut rules = String::new();
            for flag in ["-u", "-t"] {
                rules += &format!("-A {flag} {VIP}:{PORT} -s rr\n");
                for rip in RIPS {
                    rules += &format!("-a {flag} {VIP}:{PORT} -r {rip}:{PORT} {fwd} -w 1\n");
                }
            }
            let f = lab.tmp.join("rules");
            write_file(&f, &rules)?;
            let sock = lab.tmp.join("xlvsd.sock");
            let xlvsd = bin.join("xlvsd");
            let (fi, bi) = (lab.dev('f'), lab.dev('b'));
            let bond = format!("{bi}={ei},{fi}");
            let client_side: Vec<&str> = if plane == Plane::NatBond {
                vec!["--bond", &bond]
            } else {
                vec!["--iface", &ei]
            };
            // Above the NAPI threads it shares its CPU with (as a unit file's Nice=-10): in
            // overload the worker then drains its RX ring and frames are lost at the veth
            // before the kernel has copied them, instead of after.
            let mut args = vec![
                "nice",
                "-n",
                "-10",
                xlvsd.to_str().unwrap_or_default(),
                "--iface",
                &ii,
                "--rules",
                f.to_str().unwrap_or_default(),
                "--control",
                sock.to_str().unwrap_or_default(),
                "--max-conns",
                "1048576",
                "--threads",
                threads,
            ];
            args.extend(client_side);
            // The fast path is on by default where the ports take XDP redirects (the rig's
            // peers have XDP programs): the workers' planes turn it off.
            args.push(if matches!(plane, Plane::NatOffload | Plane::DrOffload) {
                "--offload"
            } else {
                "--no-offload"
            });
            args.extend(xlvsd_args.iter().map(String::as_str));
            let log = format!("xlvsd-{}.log", plane.key());
            let i = lab.spawn(&d, lab.dir_cpu, &args, &log, false)?;
            let deadline = Instant::now() + Duration::from_secs(30);
            while !lab.log(&log).contains("xlvsd: ready") {
                if lab.children[i].try_wait()?.is_some() || Instant::now() > deadline {
                    bail!("xlvsd did not start: {}", lab.log(&log));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(Some(i))
        }
    }
}

fn stop_plane(lab: &mut Lab, plane: Plane, r: Running) -> anyhow::Result<()> {
    if let Some(i) = r {
        lab.stop(i)?;
    }
    if plane == Plane::Nft {
        ns_exec(&lab.dir_ns, &["nft", "delete", "table", "ip", "xlvsbench"])?;
        let _ = ns_exec(&lab.dir_ns, &["conntrack", "-F"]);
    }
    Ok(())
}

/// Waits for a child's first stdout line to be "ready".
fn wait_ready(
    lab: &mut Lab,
    i: usize,
    log: &str,
) -> anyhow::Result<BufReader<std::process::ChildStdout>> {
    let out = lab.children[i]
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no stdout"))?;
    let mut r = BufReader::new(out);
    let mut line = String::new();
    r.read_line(&mut line)?;
    if line.trim() != "ready" {
        bail!("{log}: {}", lab.log(log).trim());
    }
    Ok(r)
}

/// Director threads: xlvsd's (if any) and the director's NAPI threads.
fn director_threads(lab: &Lab, r: &Running) -> anyhow::Result<Vec<(u32, String)>> {
    let mut t = lab.pin_napi()?;
    if let Some(i) = *r {
        t.extend(threads_of(lab.children[i].id()));
    }
    Ok(t)
}

fn measure(
    lab: &mut Lab,
    plane: Plane,
    r: &Running,
    target: u64,
    a: &RunArgs,
    me: &Path,
) -> anyhow::Result<Point> {
    let (sink_ns, si) = (lab.sink_ns.clone(), lab.dev('s'));
    let me_s = me.to_str().unwrap_or_default();
    let sink = lab.spawn(
        &sink_ns,
        lab.load_cpu,
        &["nice", "-n", "-10", me_s, "sink", "-i", &si],
        "sink.log",
        true,
    )?;
    // The sink (and its NAPI thread) run at nice -10 and the generator at nice 10 on the
    // shared load CPU, so frames are lost at the director rather than at the sink: the
    // generator offers what the sink side leaves it.
    let mut sink_out = wait_ready(lab, sink, "sink.log")?;
    let threads = director_threads(lab, r)?;
    // The bond plane's switch: half the flows (source addresses) and half the rate on each
    // member.
    let halves = if plane == Plane::NatBond { 2 } else { 1 };
    let per = (a.src_ips / halves).max(1);
    let sport = format!("1024-{}", 1024 + a.src_ports as u32 - 1);
    let dur = a.duration.to_string();
    let rate = (target / halves as u64).to_string();
    let ext_mac = lab.ext_mac.clone();
    let dst = format!("{VIP}:{PORT}");
    let before = cpu_ns(&threads);
    let drops_before = lab.drops()?;
    let t0 = Instant::now();
    let gen_ns = lab.gen_ns.clone();
    let mut gens = Vec::new();
    for h in 0..halves {
        let first = u32::from(std::net::Ipv4Addr::new(198, 18, 0, 1)) + h * per;
        let src = format!(
            "{}-{}",
            std::net::Ipv4Addr::from(first),
            std::net::Ipv4Addr::from(first + per - 1)
        );
        let dev = lab.dev(if h == 0 { 'g' } else { 'h' });
        let mut gen_args = vec![
            "nice", "-n", "10", me_s, "gen", "-i", &dev, "-d", &dst, "-m", &ext_mac, "-s", &src,
            "-p", &sport, "-z", &a.size, "-D", &dur,
        ];
        if target > 0 {
            gen_args.extend(["-r", &rate]);
        }
        let log = format!("gen{h}.log");
        gens.push((
            lab.spawn(&gen_ns, lab.load_cpu, &gen_args, &log, true)?,
            log,
        ));
    }
    let mut reports = Vec::new();
    for (g, log) in &gens {
        let out = lab.children[*g]
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout"))?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        reports.push((line, log.clone()));
    }
    let wall = t0.elapsed().as_secs_f64();
    let after = cpu_ns(&threads);
    let mut generator: Option<GenReport> = None;
    for ((g, _), (line, log)) in gens.iter().zip(&reports) {
        lab.children[*g].wait()?;
        let r: GenReport = serde_json::from_str(line.trim())
            .with_context(|| format!("generator: {}", lab.log(log).trim()))?;
        generator = Some(match generator {
            None => r,
            Some(acc) => acc.merge(&r),
        });
    }
    let generator = generator.ok_or_else(|| anyhow!("no generator"))?;
    // Let the last frames through, then stop the sink.
    std::thread::sleep(Duration::from_millis(200));
    lab.stop(sink)?;
    let mut line = String::new();
    sink_out.read_line(&mut line)?;
    let sink: SinkReport = serde_json::from_str(line.trim())
        .with_context(|| format!("sink: {}", lab.log("sink.log").trim()))?;
    let drops = delta(&drops_before, &lab.drops()?);
    let mut by = delta(&before, &after);
    by.retain(|_, v| *v > 0);
    let cpu: u64 = by.values().sum();
    let delivered = sink.received as f64 / generator.secs.max(1e-9);
    let cores = cpu as f64 / 1e9 / wall.max(1e-9);
    Ok(Point {
        plane,
        baseline: false,
        round: 0,
        target_pps: target,
        offered_pps: generator.pps,
        delivered_pps: delivered,
        loss_pct: if generator.sent == 0 {
            0.0
        } else {
            100.0 * (1.0 - sink.received as f64 / generator.sent as f64).max(0.0)
        },
        director_cores: cores,
        cpu_ns_per_pkt: if sink.received == 0 {
            0.0
        } else {
            cpu as f64 / sink.received as f64
        },
        pps_per_core: if cpu == 0 {
            0.0
        } else {
            sink.received as f64 / (cpu as f64 / 1e9)
        },
        generator,
        sink,
        cpu_by_thread: by,
        drops,
    })
}

const NGINX_CONF: &str = "user root root;
daemon off;
master_process off;
worker_processes 1;
pid DIR/nginx.pid;
error_log DIR/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path DIR/body;
    proxy_temp_path DIR/proxy;
    fastcgi_temp_path DIR/fastcgi;
    uwsgi_temp_path DIR/uwsgi;
    scgi_temp_path DIR/scgi;
    server {
        listen 0.0.0.0:80 backlog=4096;
        location = / { default_type text/plain; return 200 \"ok\\n\"; }
    }
}
";

/// Parses wrk's summary: (requests, seconds, failed).
pub fn parse_wrk(out: &str) -> Option<(u64, f64, u64)> {
    let mut requests = None;
    let mut secs = None;
    let mut failed = 0;
    for line in out.lines().map(str::trim) {
        if let Some((n, rest)) = line.split_once(" requests in ") {
            requests = n.trim().parse().ok();
            let t = rest.split(',').next()?.trim();
            secs = if let Some(ms) = t.strip_suffix("ms") {
                ms.parse::<f64>().ok().map(|v| v / 1000.0)
            } else if let Some(m) = t.strip_suffix('m') {
                m.parse::<f64>().ok().map(|v| v * 60.0)
            } else {
                t.strip_suffix('s')?.parse().ok()
            };
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            for part in rest.split(',') {
                failed += part.split_whitespace().last()?.parse::<u64>().ok()?;
            }
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            failed += n.trim().parse::<u64>().ok()?;
        }
    }
    Some((requests?, secs?, failed))
}

fn conn_rate(lab: &mut Lab, plane: Plane, r: &Running, a: &RunArgs) -> anyhow::Result<ConnRate> {
    let dir = lab.tmp.join("nginx");
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("nginx.conf");
    write_file(
        &conf,
        &NGINX_CONF.replace("DIR", dir.to_str().unwrap_or_default()),
    )?;
    let sink_ns = lab.sink_ns.clone();
    let ng = lab.spawn(
        &sink_ns,
        lab.load_cpu,
        &[
            "nginx",
            "-p",
            dir.to_str().unwrap_or_default(),
            "-c",
            conf.to_str().unwrap_or_default(),
        ],
        "nginx.log",
        false,
    )?;
    // Wait for nginx to listen.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ns_exec(&sink_ns, &["ss", "-Hltn", "sport = :80"])?
        .trim()
        .is_empty()
    {
        if Instant::now() > deadline {
            bail!("nginx did not start: {}", lab.log("nginx.log"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let threads = director_threads(lab, r)?;
    let before = cpu_ns(&threads);
    let t0 = Instant::now();
    let secs = format!("{}s", a.conn_secs.max(1.0).round());
    let conns = a.conn_clients.to_string();
    let url = format!("http://{VIP}:{PORT}/");
    let out = ns_exec(
        &lab.gen_ns,
        &[
            "taskset",
            "-c",
            &lab.load_cpu.to_string(),
            "wrk",
            "-t1",
            "-c",
            &conns,
            "-d",
            &secs,
            "-H",
            "Connection: close",
            &url,
        ],
    )?;
    let wall = t0.elapsed().as_secs_f64();
    let after = cpu_ns(&threads);
    lab.stop(ng)?;
    let (requests, secs, failed) =
        parse_wrk(&out).ok_or_else(|| anyhow!("cannot read wrk's output:\n{out}"))?;
    let cpu: u64 = delta(&before, &after).values().sum();
    Ok(ConnRate {
        plane,
        baseline: false,
        round: 0,
        requests,
        secs,
        requests_per_sec: requests as f64 / secs.max(1e-9),
        failed,
        director_cores: cpu as f64 / 1e9 / wall,
        cpu_us_per_conn: if requests == 0 {
            0.0
        } else {
            cpu as f64 / 1e3 / requests as f64
        },
    })
}

/// Ratios of every plane to the floor and to nftables, and of each xlvs plane's build A to
/// its build B where both ran.
pub fn ratios(points: &[Point]) -> Vec<Ratio> {
    let peak = |p: Series| {
        points
            .iter()
            .filter(|x| x.series() == p)
            .map(|x| x.delivered_pps)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    // pps per core at the highest target load both planes ran (0, "as fast as possible",
    // counts as the highest).
    let at_top = |p: Series, vs: Series| {
        let top = points
            .iter()
            .filter(|x| x.series() == p)
            .map(|x| load_rank(x.target_pps))
            .filter(|t| {
                points
                    .iter()
                    .any(|y| y.series() == vs && load_rank(y.target_pps) == *t)
            })
            .max()?;
        let get = |q: Series| {
            points
                .iter()
                .find(|x| x.series() == q && load_rank(x.target_pps) == top)
                .map(|x| x.pps_per_core)
        };
        Some(get(p)? / get(vs)?)
    };
    let all = <Plane as clap::ValueEnum>::value_variants();
    let mut pairs: Vec<(Series, Series)> = Vec::new();
    for vs in [Plane::Xdp, Plane::Nft] {
        for &p in all.iter().filter(|&&p| p != vs) {
            pairs.push(((p, false), (vs, false)));
            pairs.push(((p, true), (vs, false)));
        }
    }
    for &p in all {
        pairs.push(((p, false), (p, true)));
    }
    let mut v = Vec::new();
    for (p, vs) in pairs {
        if let (Some(a), Some(b), Some(c)) = (peak(p), peak(vs), at_top(p, vs)) {
            v.push(Ratio {
                plane: p.0,
                baseline: p.1,
                vs: vs.0,
                vs_baseline: vs.1,
                peak_pps: a / b,
                pps_per_core: c,
                peak_range: None,
                pps_per_core_range: None,
            });
        }
    }
    v
}

/// The rounds' numbers, in order.
fn rounds_of(points: &[Point]) -> Vec<u32> {
    let mut v: Vec<u32> = points.iter().map(|p| p.round).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The median of `v` (of an even count, the mean of the middle two), and the range. None for
/// an empty `v`.
fn median_range(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    v.sort_by(f64::total_cmp);
    let (lo, hi) = (*v.first()?, *v.last()?);
    let n = v.len();
    Some(((v[(n - 1) / 2] + v[n / 2]) / 2.0, lo, hi))
}

/// [`ratios`] of each round apart (a plane against another of the same round), then per
/// pair of planes the median and the range over the rounds.
pub fn ratios_over_rounds(points: &[Point]) -> Vec<Ratio> {
    let rounds = rounds_of(points);
    if rounds.len() <= 1 {
        return ratios(points);
    }
    let per_round: Vec<Vec<Ratio>> = rounds
        .iter()
        .map(|&n| {
            let pts: Vec<Point> = points.iter().filter(|p| p.round == n).cloned().collect();
            ratios(&pts)
        })
        .collect();
    let mut out: Vec<Ratio> = Vec::new();
    for r in per_round.iter().flatten() {
        let same = |o: &Ratio| {
            (o.plane, o.baseline, o.vs, o.vs_baseline) == (r.plane, r.baseline, r.vs, r.vs_baseline)
        };
        if out.iter().any(same) {
            continue;
        }
        let all: Vec<&Ratio> = per_round.iter().flatten().filter(|o| same(o)).collect();
        let (Some(peak), Some(core)) = (
            median_range(all.iter().map(|o| o.peak_pps).collect()),
            median_range(all.iter().map(|o| o.pps_per_core).collect()),
        ) else {
            continue;
        };
        out.push(Ratio {
            peak_pps: peak.0,
            pps_per_core: core.0,
            peak_range: Some((peak.1, peak.2)),
            pps_per_core_range: Some((core.1, core.2)),
            ..r.clone()
        });
    }
    out
}

/// For each plane and load, the point of the round whose delivered pps per director core is
/// the median of the rounds' (a measured point, every figure of it from one round: of an
/// even count of rounds, the lower middle one, so odd counts are better), in the order they
/// were first measured. With one round, every point.
pub fn medians(points: &[Point]) -> Vec<Point> {
    median_members(points, |p| (p.series(), p.target_pps), |p| p.pps_per_core)
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

/// For each plane, the connection-rate run whose CPU per connection is the median of the
/// rounds', with that figure's range.
fn conn_medians(conns: &[ConnRate]) -> Vec<(ConnRate, (f64, f64))> {
    median_members(conns, ConnRate::series, |c| c.cpu_us_per_conn)
}

/// For each group of `items` (by `key`, in the order first seen), the member whose `metric`
/// is the median of the group's (the lower middle one of an even count), with the metric's
/// range over the group.
fn median_members<T: Clone, K: PartialEq>(
    items: &[T],
    key: impl Fn(&T) -> K,
    metric: impl Fn(&T) -> f64,
) -> Vec<(T, (f64, f64))> {
    let mut keys: Vec<K> = Vec::new();
    let mut out = Vec::new();
    for it in items {
        let k = key(it);
        if keys.contains(&k) {
            continue;
        }
        let mut same: Vec<&T> = items.iter().filter(|o| key(o) == k).collect();
        same.sort_by(|a, b| metric(a).total_cmp(&metric(b)));
        let range = (metric(same[0]), metric(same[same.len() - 1]));
        out.push((same[(same.len() - 1) / 2].clone(), range));
        keys.push(k);
    }
    out
}

/// The report with each plane and load's median round only (see [`medians`]): what the
/// plots draw.
pub fn median_report(r: &Report) -> Report {
    Report {
        points: medians(&r.points),
        conn_rate: conn_medians(&r.conn_rate)
            .into_iter()
            .map(|c| c.0)
            .collect(),
        ..r.clone()
    }
}

pub fn table(r: &Report) -> String {
    let rounds = rounds_of(&r.points).len();
    let points = medians(&r.points);
    let mut s = String::new();
    s += &format!(
        "{:<30} {:>9} {:>10} {:>10} {:>7} {:>6} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8}\n",
        "plane",
        "target",
        "offered",
        "delivered",
        "loss%",
        "cores",
        "ns/pkt",
        "pps/core",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs"
    );
    for p in &points {
        let l = &p.sink.latency;
        let us = |v: u64| v as f64 / 1000.0;
        s += &format!(
            "{:<30} {:>9} {:>10.0} {:>10.0} {:>7.2} {:>6.2} {:>8.0} {:>10.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1}\n",
            series_label(p.series()),
            load_label(p.target_pps),
            p.offered_pps,
            p.delivered_pps,
            p.loss_pct,
            p.director_cores,
            p.cpu_ns_per_pkt,
            p.pps_per_core,
            us(l.p50),
            us(l.p99),
            us(l.p999),
            us(l.max),
        );
    }
    if rounds > 1 {
        s += &format!(
            "\nover {rounds} rounds (each row above is the round with the median pps/core): min, median, max\n"
        );
        s += &format!(
            "{:<30} {:>9} {:>26} {:>26}\n",
            "plane", "target", "pps/core", "p99 µs"
        );
        for p in &points {
            let same = || {
                r.points
                    .iter()
                    .filter(|o| o.series() == p.series() && o.target_pps == p.target_pps)
            };
            let range = |v: Vec<f64>| {
                median_range(v).map_or(String::new(), |(m, lo, hi)| {
                    format!("{lo:.0} {m:.0} {hi:.0}")
                })
            };
            s += &format!(
                "{:<30} {:>9} {:>26} {:>26}\n",
                series_label(p.series()),
                load_label(p.target_pps),
                range(same().map(|o| o.pps_per_core).collect()),
                range(same().map(|o| o.sink.latency.p99 as f64 / 1000.0).collect()),
            );
        }
    }
    if !r.ratios.is_empty() {
        s += "\nratios (same run): peak delivered pps, and delivered pps per director core at the highest common load\n";
        if rounds > 1 {
            s += &format!("(each the median of the {rounds} rounds' ratios, with their range)\n");
        }
        let range = |x: Option<(f64, f64)>| {
            format!(
                "{:<12}",
                x.map_or(String::new(), |(lo, hi)| format!(" ({lo:.2}–{hi:.2})"))
            )
        };
        for x in &r.ratios {
            s += &format!(
                "  {:<30} vs {:<30} peak {:>5.2}×{} at equal CPU {:>5.2}×{}\n",
                series_label((x.plane, x.baseline)),
                series_label((x.vs, x.vs_baseline)),
                x.peak_pps,
                range(x.peak_range),
                x.pps_per_core,
                range(x.pps_per_core_range),
            );
        }
    }
    if !r.conn_rate.is_empty() {
        s += "\nconnection rate (wrk, one request per connection)\n";
        for (c, (lo, hi)) in conn_medians(&r.conn_rate) {
            let range = if rounds > 1 {
                format!(" ({lo:.1}–{hi:.1} over {rounds} rounds)")
            } else {
                String::new()
            };
            s += &format!(
                "  {:<30} {:>8.0} req/s  {:>6} failed  director {:.2} cores, {:.1} µs CPU/conn{range}\n",
                series_label(c.series()),
                c.requests_per_sec,
                c.failed,
                c.director_cores,
                c.cpu_us_per_conn
            );
        }
    }
    s
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cpus} CPUs, Linux {}", kernel.trim())
}

/// Every (round, plane, build B) in the order they run: the planes in turn, round after
/// round; with a build B (`two`), each xlvs plane runs with both builds, A first in even
/// rounds and B first in odd ones (so neither always follows the other).
fn run_order(rounds: u32, planes: &[Plane], two: bool) -> Vec<(u32, Plane, bool)> {
    (0..rounds)
        .flat_map(|r| {
            planes.iter().flat_map(move |&p| {
                let builds: &[bool] = match (two && p.is_xlvs(), r % 2) {
                    (false, _) => &[false],
                    (true, 0) => &[false, true],
                    (true, _) => &[true, false],
                };
                builds.iter().map(move |&b| (r, p, b))
            })
        })
        .collect()
}

pub fn run(mut a: RunArgs) -> anyhow::Result<()> {
    if a.quick {
        a.loads = vec![20_000, 0];
        a.duration = 1.0;
        a.conn_secs = a.conn_secs.min(1.0);
    }
    if !xlvs_control::sys::is_root() {
        bail!("the rig needs root (network namespaces, XDP)");
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if a.director_cpu >= cpus || a.load_cpu >= cpus {
        bail!(
            "CPUs {} and {} asked for, {cpus} present",
            a.director_cpu,
            a.load_cpu
        );
    }
    let me = std::env::current_exe()?;
    let bin = match &a.bin_dir {
        Some(b) => b.clone(),
        None => me.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let vs_bin = a.vs_bin_dir.clone();
    if let Some(b) = &vs_bin
        && a.planes.iter().any(|p| p.is_xlvs())
        && !b.join("xlvsd").exists()
    {
        bail!("no xlvsd in {} (--vs-bin-dir)", b.display());
    }
    if a.planes.iter().any(|p| p.is_xlvs()) && !bin.join("xlvsd").exists() {
        bail!(
            "no xlvsd in {} (cargo build --release -p xlvs-control, or --bin-dir)",
            bin.display()
        );
    }
    std::fs::create_dir_all(&a.out)?;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // SIGINT/SIGTERM end the run between points, through `Lab`'s clean-up.
    let _signals = xlvs_control::sys::SignalFd::install()?;
    let mut lab = Lab::up(a.director_cpu, a.load_cpu)?;
    eprintln!(
        "xlvs-bench: lab {} up; director on CPU {}, generator and sink on CPU {}; {} s per load",
        lab.p, a.director_cpu, a.load_cpu, a.duration
    );
    let mut points = Vec::new();
    let mut conns = Vec::new();
    let order = run_order(a.rounds, &a.planes, vs_bin.is_some());
    let total = order.len() * a.loads.len();
    for (round, plane, baseline) in order {
        let series = series_label((plane, baseline));
        let dir = match (&vs_bin, baseline) {
            (Some(b), true) => b,
            _ => &bin,
        };
        let running = start_plane(&mut lab, plane, dir, &me, &a.xlvsd_args)
            .with_context(|| format!("starting {series}"))?;
        for &load in &a.loads {
            if xlvs_control::sys::stop_requested() {
                // Dropping the lab on the way out kills its processes and namespaces.
                bail!("interrupted");
            }
            let mut p = measure(&mut lab, plane, &running, load, &a, &me)
                .with_context(|| format!("{series} at {load} pps"))?;
            (p.round, p.baseline) = (round, baseline);
            eprintln!(
                "[{:>2}/{total}] {:<30} target {:>7}: offered {:>8.0}, delivered {:>8.0} pps, loss {:>5.2} %, director {:.2} cores, {:>5.0} ns/pkt, p99 {:.1} µs; lost at director {}, at sink {}",
                points.len() + 1,
                series,
                load_label(load),
                p.offered_pps,
                p.delivered_pps,
                p.loss_pct,
                p.director_cores,
                p.cpu_ns_per_pkt,
                p.sink.latency.p99 as f64 / 1000.0,
                p.drops["director_in"],
                p.drops["sink_in"],
            );
            points.push(p);
        }
        if a.conn_secs > 0.0 && matches!(plane, Plane::Nft | Plane::Nat | Plane::NatOffload) {
            let mut c = conn_rate(&mut lab, plane, &running, &a)
                .with_context(|| format!("connection rate through {series}"))?;
            (c.round, c.baseline) = (round, baseline);
            eprintln!(
                "        {:<30} wrk short connections: {:.0} req/s, {} failed",
                series, c.requests_per_sec, c.failed
            );
            conns.push(c);
        }
        stop_plane(&mut lab, plane, running)?;
    }
    drop(lab);
    let report = Report {
        machine: machine(),
        started_unix: started,
        args: serde_json::to_value(&a)?,
        ratios: ratios_over_rounds(&points),
        points,
        conn_rate: conns,
    };
    let json = a.out.join("results.json");
    write_file(&json, &serde_json::to_string_pretty(&report)?)?;
    crate::plot::all(&median_report(&report), &a.out)?;
    print!("{}", table(&report));
    eprintln!(
        "xlvs-bench: wrote {}, throughput.svg, cpu.svg, conns.svg and latency.svg in {}",
        json.display(),
        a.out.display()
    );
    Ok(())
}

/// `xlvs-bench plot RESULTS.json`: the table and the plots of an earlier run, again (next to
/// the results file).
pub fn replot(results: &std::path::Path) -> anyhow::Result<()> {
    let report: Report = serde_json::from_str(
        &std::fs::read_to_string(results)
            .with_context(|| format!("reading {}", results.display()))?,
    )
    .with_context(|| format!("parsing {}", results.display()))?;
    let dir = results.parent().unwrap_or(std::path::Path::new("."));
    crate::plot::all(&median_report(&report), dir)?;
    print!("{}", table(&report));
    eprintln!("xlvs-bench: plots written in {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_summary() {
        let out = "Running 5s test @ http://192.0.2.100:80/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms  300.00us   5.00ms   70.00%
  21234 requests in 5.00s, 3.10MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:   4246.80
Transfer/sec:    634.00KB
";
        assert_eq!(parse_wrk(out), Some((21234, 5.0, 9)));
        assert_eq!(
            parse_wrk("  10 requests in 900.5ms, 1KB read\n"),
            Some((10, 0.9005, 0))
        );
        assert_eq!(parse_wrk("garbage"), None);
    }

    fn pt(plane: Plane, target: u64, delivered: f64, per_core: f64) -> Point {
        Point {
            plane,
            baseline: false,
            round: 0,
            target_pps: target,
            offered_pps: target as f64,
            delivered_pps: delivered,
            loss_pct: 0.0,
            director_cores: delivered / per_core,
            cpu_ns_per_pkt: 1e9 / per_core,
            pps_per_core: per_core,
            generator: GenReport::default(),
            sink: SinkReport::default(),
            cpu_by_thread: BTreeMap::new(),
            drops: BTreeMap::new(),
        }
    }

    #[test]
    fn ratios_use_peaks_and_the_top_common_load() {
        let pts = [
            pt(Plane::Xdp, 100, 100.0, 1000.0),
            pt(Plane::Xdp, 0, 900.0, 2000.0),
            pt(Plane::Nft, 100, 100.0, 500.0),
            pt(Plane::Nft, 0, 300.0, 400.0),
            pt(Plane::Nat, 100, 100.0, 800.0),
            pt(Plane::Nat, 0, 600.0, 1200.0),
        ];
        let r = ratios(&pts);
        let get = |p, vs| r.iter().find(|x| x.plane == p && x.vs == vs).unwrap();
        assert_eq!(get(Plane::Nat, Plane::Nft).peak_pps, 2.0);
        assert_eq!(get(Plane::Nat, Plane::Nft).pps_per_core, 3.0);
        assert_eq!(get(Plane::Nat, Plane::Xdp).peak_pps, 600.0 / 900.0);
        assert_eq!(get(Plane::Nat, Plane::Xdp).pps_per_core, 0.6);
        assert!(r.iter().all(|x| x.plane != Plane::Dr));
    }

    /// A report of `points` and `ratios` alone.
    fn report(points: Vec<Point>, ratios: Vec<Ratio>) -> Report {
        Report {
            machine: String::new(),
            started_unix: 0,
            args: serde_json::Value::Null,
            ratios,
            points,
            conn_rate: Vec::new(),
        }
    }

    #[test]
    fn medians_of_no_odd_and_even_counts() {
        assert_eq!(median_range(vec![]), None);
        assert_eq!(median_range(vec![3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(median_range(vec![4.0, 1.0]), Some((2.5, 1.0, 4.0)));
    }

    #[test]
    fn a_second_build_runs_beside_each_xlvs_plane_and_is_compared_with_it() {
        let planes = [Plane::Xdp, Plane::NatOffload];
        assert_eq!(
            run_order(2, &planes, true),
            [
                (0, Plane::Xdp, false),
                (0, Plane::NatOffload, false),
                (0, Plane::NatOffload, true),
                (1, Plane::Xdp, false),
                (1, Plane::NatOffload, true),
                (1, Plane::NatOffload, false),
            ]
        );
        assert_eq!(run_order(1, &planes, false).len(), 2);
        let mut b = pt(Plane::NatOffload, 0, 800.0, 800.0);
        b.baseline = true;
        let pts = [
            pt(Plane::Xdp, 0, 1000.0, 1000.0),
            pt(Plane::NatOffload, 0, 900.0, 900.0),
            b,
        ];
        let r = ratios(&pts);
        let get = |p, pb, vs, vb| {
            r.iter()
                .find(|x| (x.plane, x.baseline, x.vs, x.vs_baseline) == (p, pb, vs, vb))
                .map(|x| x.pps_per_core)
        };
        assert_eq!(get(Plane::NatOffload, false, Plane::Xdp, false), Some(0.9));
        assert_eq!(get(Plane::NatOffload, true, Plane::Xdp, false), Some(0.8));
        assert_eq!(
            get(Plane::NatOffload, false, Plane::NatOffload, true),
            Some(900.0 / 800.0)
        );
        assert_eq!(r.len(), 3, "{r:?}");
        let t = table(&report(pts.to_vec(), r.clone()));
        assert!(
            t.contains("xlvs NAT, XDP fast path        vs xlvs NAT, XDP fast path (B)"),
            "{t}"
        );
    }

    #[test]
    fn rounds_give_each_figure_its_median_round_and_each_ratio_its_rounds_median() {
        // Three rounds; the machine is fast in round 1 and slow in round 2 for every plane.
        let speed = [1.0, 1.5, 0.5];
        let mut pts = Vec::new();
        for (round, f) in speed.iter().enumerate() {
            for (plane, per_core) in [(Plane::Xdp, 1000.0), (Plane::NatOffload, 900.0)] {
                let mut p = pt(plane, 0, per_core * f, per_core * f);
                p.round = round as u32;
                p.sink.latency.p99 = 1000 * (round as u64 + 1);
                pts.push(p);
            }
        }
        // The fast plane's round 1 alone would give 1500 / 450 = 3.3; each round says 0.9.
        let r = ratios_over_rounds(&pts);
        let x = r
            .iter()
            .find(|x| x.plane == Plane::NatOffload && x.vs == Plane::Xdp)
            .unwrap();
        assert!((x.pps_per_core - 0.9).abs() < 1e-9, "{x:?}");
        let (lo, hi) = x.pps_per_core_range.unwrap();
        assert!((lo - 0.9).abs() < 1e-9 && (hi - 0.9).abs() < 1e-9);
        // The median round of each plane is round 0 (speeds 0.5, 1.0, 1.5), every figure
        // from it.
        let m = medians(&pts);
        assert_eq!(m.len(), 2);
        assert!(m.iter().all(|p| p.round == 0 && p.sink.latency.p99 == 1000));
        assert_eq!(m[0].plane, Plane::Xdp);
        assert_eq!(m[0].pps_per_core, 1000.0);
        let t = table(&report(pts.clone(), r.clone()));
        assert!(t.contains("over 3 rounds"), "{t}");
        assert!(t.contains("500 1000 1500"), "{t}");
        assert!(t.contains("(0.90–0.90)"), "{t}");
        // One round: the points as they are, and the plain ratios.
        let one: Vec<Point> = pts.iter().filter(|p| p.round == 2).cloned().collect();
        assert_eq!(medians(&one).len(), 2);
        assert!(
            ratios_over_rounds(&one)
                .iter()
                .all(|x| x.pps_per_core_range.is_none())
        );
        let r1 = ratios(&one);
        assert!(!table(&report(one, r1)).contains("rounds"));
    }
}
