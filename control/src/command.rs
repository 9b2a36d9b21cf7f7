//! The command model: what an admin request, a rules file or (next) a keepalived.conf asks of
//! the services table, independent of any one syntax. [`crate::ipvsadm`] parses ipvsadm's
//! grammar into it; [`Command`]'s `Display` writes a table-changing command back as an
//! `ipvsadm -S -n` rule. The types are serde-serialisable: `xlvsadm` sends them to the daemon
//! ([`crate::admin`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};
use xlvs_dataplane::core::sched::{SchedFlags, SchedKind};
use xlvs_dataplane::core::service::{Fwd, Persistence, Proto, VsKey};

/// A virtual service as ipvsadm names it: `-t|-u VIP:PORT`, or `-f MARK [-6]`. Address
/// services sort before fwmark services, as ipvsadm lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SvcKey {
    Addr(VsKey),
    /// A fwmark service: the (proto, VIP, port) keys of its mark's group, in one family.
    Mark {
        mark: u32,
        v6: bool,
    },
}

impl SvcKey {
    pub fn is_ipv4(&self) -> bool {
        match self {
            SvcKey::Addr(k) => k.addr.is_ipv4(),
            SvcKey::Mark { v6, .. } => !v6,
        }
    }

    /// The service port: a realserver without one gets it (0 for a fwmark service, which
    /// then forwards to the port the client asked for).
    pub fn port(&self) -> u16 {
        match self {
            SvcKey::Addr(k) => k.port,
            SvcKey::Mark { .. } => 0,
        }
    }

    /// Protocol name (`TCP`, `UDP`, `FWM`), address (a fwmark service's family's unspecified
    /// one), port (0 for a fwmark service) and mark (0 for an address service).
    pub fn parts(&self) -> (&'static str, IpAddr, u16, u32) {
        match *self {
            SvcKey::Addr(k) => (k.proto.label(), k.addr, k.port, 0),
            SvcKey::Mark { mark, v6: false } => ("FWM", Ipv4Addr::UNSPECIFIED.into(), 0, mark),
            SvcKey::Mark { mark, v6: true } => ("FWM", Ipv6Addr::UNSPECIFIED.into(), 0, mark),
        }
    }

    /// What the parser guarantees of a key: a port for an address service, a mark for a
    /// fwmark one.
    pub fn validate(&self) -> Result<(), CmdError> {
        match self {
            SvcKey::Addr(k) if k.port == 0 => Err(CmdError::usage(
                "Zero port specified for non-persistent service",
            )),
            SvcKey::Mark { mark: 0, .. } => {
                Err(CmdError::usage("invalid fwmark value `0' specified"))
            }
            _ => Ok(()),
        }
    }

    /// ipvsadm `-L`'s name: `TCP  VIP:PORT`, `FWM  MARK`, `FWM  MARK IPv6`.
    pub fn label(&self) -> String {
        match self {
            SvcKey::Addr(k) => format!("{:<4} {k}", k.proto.label()),
            SvcKey::Mark { mark, v6: false } => format!("FWM  {mark}"),
            SvcKey::Mark { mark, v6: true } => format!("FWM  {mark} IPv6"),
        }
    }

    /// ipvsadm `-S`'s: `-t VIP:PORT`, `-f MARK`, `-f MARK -6`.
    pub fn rule(&self) -> String {
        match self {
            SvcKey::Addr(k) if k.proto == Proto::Tcp => format!("-t {k}"),
            SvcKey::Addr(k) => format!("-u {k}"),
            SvcKey::Mark { mark, v6: false } => format!("-f {mark}"),
            SvcKey::Mark { mark, v6: true } => format!("-f {mark} -6"),
        }
    }
}

/// One entry of a fwmark group (`--add-mark -f MARK -t|-u VIP:PORT[-PORT]`): the traffic an
/// iptables `MARK` rule would have marked for an IPVS fwmark service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MarkMember {
    pub proto: Proto,
    pub addr: IpAddr,
    /// First and last port of the range.
    pub lo: u16,
    pub hi: u16,
}

impl MarkMember {
    /// The (proto, VIP, port) keys it covers.
    pub fn keys(&self) -> impl Iterator<Item = VsKey> + '_ {
        (self.lo..=self.hi).map(|port| VsKey {
            proto: self.proto,
            addr: self.addr,
            port,
        })
    }

    pub fn overlaps(&self, o: &MarkMember) -> bool {
        self.proto == o.proto && self.addr == o.addr && self.lo <= o.hi && o.lo <= self.hi
    }

    pub fn covers(&self, k: &VsKey) -> bool {
        self.proto == k.proto && self.addr == k.addr && (self.lo..=self.hi).contains(&k.port)
    }
}

impl std::fmt::Display for MarkMember {
    /// `-t VIP:PORT` or `-t VIP:LO-HI` (`[VIP]` for IPv6), as `--add-mark` takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flag = if self.proto == Proto::Tcp { "-t" } else { "-u" };
        write!(f, "{flag} {}", SocketAddr::new(self.addr, self.lo))?;
        if self.hi != self.lo {
            write!(f, "-{}", self.hi)?;
        }
        Ok(())
    }
}

/// A parsed ipvsadm command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// `-A`: add a virtual service.
    AddService { key: SvcKey, opts: ServiceOpts },
    /// `-E`: edit a virtual service (like ipvsadm, options not given take their defaults).
    EditService { key: SvcKey, opts: ServiceOpts },
    /// `-D`: delete a virtual service.
    DelService { key: SvcKey },
    /// `-C`: clear the table.
    Clear,
    /// `-a`: add a realserver.
    AddDest { key: SvcKey, dest: DestSpec },
    /// `-e`: edit a realserver.
    EditDest { key: SvcKey, dest: DestSpec },
    /// `-d`: delete a realserver.
    DelDest {
        key: SvcKey,
        addr: IpAddr,
        port: u16,
    },
    /// `--add-mark -f MARK -t|-u VIP:PORT[-PORT]` (xlvs): puts traffic in a fwmark group.
    AddMark { mark: u32, member: MarkMember },
    /// `--delete-mark -f MARK -t|-u VIP:PORT[-PORT]` (xlvs): takes an entry out of it.
    DelMark { mark: u32, member: MarkMember },
    /// `-L`/`-l`: list, in one of ipvsadm's layouts.
    List {
        key: Option<SvcKey>,
        numeric: bool,
        format: ListFormat,
        /// `--exact`: whole numbers in `--stats` and `--rate`.
        exact: bool,
        /// `--json` (xlvs): the table, counters and rates as one JSON document.
        json: bool,
    },
    /// `-L -c`: the connection table (`--persistent-conn` adds ipvsadm's pe columns).
    ListConns { persistent: bool, json: bool },
    /// `-L --daemon`: the connection sync daemons.
    ListDaemon { json: bool },
    /// `--start-daemon master|backup` and its settings.
    StartDaemon(DaemonSpec),
    /// `--stop-daemon master|backup`.
    StopDaemon { role: SyncRole },
    /// `--resync` (xlvs): pull the whole connection table from the sync peers.
    Resync,
    /// `--vrrp-notify` (xlvs): keepalived reports a VRRP state change.
    VrrpNotify(crate::vrrp::Notify),
    /// `--check` (xlvs): keepalived's track_script asks whether the data plane is alive.
    Check,
    /// `-L --health` (xlvs): one line per (realserver, checker) of health checking.
    ListHealth { key: Option<SvcKey>, json: bool },
    /// `-Z`: zero the counters of one service or of all.
    Zero { key: Option<SvcKey> },
    /// `-S`: save in rules format.
    Save { numeric: bool },
    /// `-R`: restore rules from standard input, all or nothing.
    Restore,
    /// `--set tcp tcpfin udp`: connection timeouts in seconds; 0 leaves one unchanged.
    SetTimeouts { tcp: u32, tcpfin: u32, udp: u32 },
    /// `-L --timeout`.
    ListTimeouts,
    /// `--workers` (xlvs): per-worker counters.
    Workers,
    /// `--xdp-stats` (xlvs): the XDP program's counters.
    XdpStats,
    /// `-h`.
    Help,
    /// `-v`.
    Version,
}

impl Command {
    /// It may add a realserver, whose next hop must then be resolved.
    pub fn adds_dests(&self) -> bool {
        matches!(
            self,
            Command::AddDest { .. }
                | Command::EditDest { .. }
                | Command::AddService { .. }
                | Command::EditService { .. }
        )
    }
    /// It only reads: what a member of `--control-group` who is not root may run (listings,
    /// counters, the health and daemon state, the keepalived check, a save to stdout).
    pub fn reads_only(&self) -> bool {
        matches!(
            self,
            Command::List { .. }
                | Command::ListConns { .. }
                | Command::ListDaemon { .. }
                | Command::Check
                | Command::ListHealth { .. }
                | Command::Save { .. }
                | Command::ListTimeouts
                | Command::Workers
                | Command::XdpStats
                | Command::Help
                | Command::Version
        )
    }
    /// A command that changes the table (what a rules file may hold).
    pub fn edits_table(&self) -> bool {
        matches!(
            self,
            Command::AddService { .. }
                | Command::EditService { .. }
                | Command::DelService { .. }
                | Command::Clear
                | Command::AddDest { .. }
                | Command::EditDest { .. }
                | Command::DelDest { .. }
                | Command::AddMark { .. }
                | Command::DelMark { .. }
                | Command::SetTimeouts { .. }
        )
    }

    /// Checks what the ipvsadm grammar guarantees of a parsed command, for commands that come
    /// from elsewhere (the control socket: the daemon never trusts its client). The messages
    /// are the parser's.
    pub fn validate(&self) -> Result<(), CmdError> {
        match self {
            Command::AddService { key, opts } | Command::EditService { key, opts } => {
                key.validate()?;
                if let Some(p) = &opts.persist {
                    if p.timeout.is_zero() || p.timeout.as_secs() > u32::MAX as u64 {
                        return Err(CmdError::usage(format!(
                            "invalid timeout value `{}' specified",
                            p.timeout.as_secs()
                        )));
                    }
                    let contiguous = match (p.netmask, key.is_ipv4()) {
                        (IpAddr::V4(m), true) => {
                            let b = m.to_bits();
                            b.leading_ones() + b.trailing_zeros() == 32
                        }
                        (IpAddr::V6(m), false) => {
                            let b = m.to_bits();
                            b != 0 && b.leading_ones() + b.trailing_zeros() == 128
                        }
                        _ => false,
                    };
                    if !contiguous {
                        return Err(CmdError::usage("invalid netmask specified"));
                    }
                }
                if let Some(d) = &opts.sorry {
                    same_family(key, d.addr)?;
                }
                Ok(())
            }
            Command::AddDest { key, dest } | Command::EditDest { key, dest } => {
                key.validate()?;
                same_family(key, dest.addr)?;
                if dest.weight > MAX_WEIGHT {
                    return Err(CmdError::usage("illegal weight specified"));
                }
                Ok(())
            }
            Command::DelDest { key, addr, .. } => {
                key.validate()?;
                same_family(key, *addr)
            }
            Command::DelService { key } => key.validate(),
            Command::List { key, .. } | Command::Zero { key } => {
                key.as_ref().map_or(Ok(()), SvcKey::validate)
            }
            Command::AddMark { mark, member } | Command::DelMark { mark, member } => {
                if *mark == 0 {
                    return Err(CmdError::usage("invalid fwmark value `0' specified"));
                }
                if member.lo == 0 || member.hi < member.lo {
                    return Err(CmdError::usage(
                        "illegal fwmark group address:port[-port] specified",
                    ));
                }
                Ok(())
            }
            Command::StartDaemon(d) => {
                let bad = |name: &str| Err(CmdError::usage(format!("illegal {name} specified")));
                if d.port == 0 {
                    return bad("mcast-port");
                }
                if d.ttl == 0 {
                    return bad("mcast-ttl");
                }
                if d.maxlen.is_some_and(|m| m == 0 || m > 65535 - 20 - 8) {
                    return bad("sync-maxlen");
                }
                match d.group {
                    Some(g) if !g.is_multicast() => Err(CmdError::usage(format!(
                        "invalid IPv{} mcast-group `{g}'",
                        if g.is_ipv6() { 6 } else { 4 }
                    ))),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

/// The largest realserver weight ipvsadm takes.
pub const MAX_WEIGHT: u32 = 65535;

/// A realserver (or sorry server) must be of the service's address family: IPVS accepts
/// mixed families for tunnelling only, which xlvs does not do.
pub fn same_family(key: &SvcKey, addr: IpAddr) -> Result<(), CmdError> {
    if key.is_ipv4() != addr.is_ipv4() {
        return Err(CmdError::usage(
            "real server address family differs from the virtual service's",
        ));
    }
    Ok(())
}

impl std::fmt::Display for Command {
    /// A table-changing command as an `ipvsadm -S -n` rule (what `-R` and `--rules` read);
    /// other commands in their debug form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dest = |f: &mut std::fmt::Formatter<'_>, d: &DestSpec| {
            write!(
                f,
                " -r {} {} -w {}",
                SocketAddr::new(d.addr, d.port),
                fwd_switch(d.fwd),
                d.weight
            )?;
            if d.u_threshold != 0 {
                write!(f, " -x {}", d.u_threshold)?;
            }
            if d.l_threshold != 0 {
                write!(f, " -y {}", d.l_threshold)?;
            }
            Ok(())
        };
        match self {
            Command::AddService { key, opts } | Command::EditService { key, opts } => {
                let verb = if matches!(self, Command::AddService { .. }) {
                    "-A"
                } else {
                    "-E"
                };
                write!(f, "{verb} {} -s {}", key.rule(), opts.sched)?;
                if !opts.flags.is_empty() {
                    write!(f, " -b {}", opts.flags.render(opts.sched.name()))?;
                }
                if let Some(p) = &opts.persist {
                    write!(f, " -p {}", p.timeout.as_secs())?;
                    if let Some(m) = mask_text(p.netmask) {
                        write!(f, " -M {m}")?;
                    }
                }
                if let Some(d) = &opts.sorry {
                    write!(
                        f,
                        " --sorry-server {} {}",
                        SocketAddr::new(d.addr, d.port),
                        fwd_switch(d.fwd)
                    )?;
                }
                Ok(())
            }
            Command::DelService { key } => write!(f, "-D {}", key.rule()),
            Command::Clear => f.write_str("-C"),
            Command::AddDest { key, dest: d } => {
                write!(f, "-a {}", key.rule())?;
                dest(f, d)
            }
            Command::EditDest { key, dest: d } => {
                write!(f, "-e {}", key.rule())?;
                dest(f, d)
            }
            Command::DelDest { key, addr, port } => {
                write!(f, "-d {} -r {}", key.rule(), SocketAddr::new(*addr, *port))
            }
            Command::AddMark { mark, member } => write!(f, "--add-mark -f {mark} {member}"),
            Command::DelMark { mark, member } => write!(f, "--delete-mark -f {mark} {member}"),
            Command::SetTimeouts { tcp, tcpfin, udp } => write!(f, "--set {tcp} {tcpfin} {udp}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// ipvsadm's `-m`/`-g` for a forwarding method.
pub fn fwd_switch(f: Fwd) -> &'static str {
    match f {
        Fwd::Masq => "-m",
        Fwd::Route => "-g",
    }
}

/// A persistence netmask as ipvsadm shows it: dotted for IPv4, a prefix length for IPv6;
/// None for the default (every bit).
pub fn mask_text(m: IpAddr) -> Option<String> {
    match m {
        IpAddr::V4(a) if a.to_bits() == u32::MAX => None,
        IpAddr::V6(a) if a.to_bits() == u128::MAX => None,
        IpAddr::V4(a) => Some(a.to_string()),
        IpAddr::V6(a) => Some(a.to_bits().leading_ones().to_string()),
    }
}

/// A connection sync daemon's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SyncRole {
    Master,
    Backup,
}

impl SyncRole {
    pub fn name(self) -> &'static str {
        match self {
            SyncRole::Master => "master",
            SyncRole::Backup => "backup",
        }
    }
}

/// A connection sync daemon as `--start-daemon` gives it (ipvsadm's defaults: syncid 0,
/// group 224.0.0.81 or ff02::8848... see [`DaemonSpec::group`], port 8848, TTL 1, maxlen
/// from the interface's MTU).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonSpec {
    pub role: SyncRole,
    /// `--mcast-interface` (None: the kernel's choice, the interface of the default route).
    pub ifname: Option<String>,
    pub syncid: u8,
    /// `--sync-maxlen` (None: the interface's MTU less the IP and UDP headers).
    pub maxlen: Option<u16>,
    /// `--mcast-group` (None: 224.0.0.81).
    pub group: Option<IpAddr>,
    pub port: u16,
    pub ttl: u8,
}

impl DaemonSpec {
    /// IPVS's default group and port.
    pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
    pub const PORT: u16 = 8848;

    pub fn new(role: SyncRole) -> Self {
        DaemonSpec {
            role,
            ifname: None,
            syncid: 0,
            maxlen: None,
            group: None,
            port: Self::PORT,
            ttl: 1,
        }
    }

    /// The multicast group.
    pub fn group(&self) -> IpAddr {
        self.group.unwrap_or(IpAddr::V4(Self::GROUP))
    }

    /// `-L --daemon`'s line (ipvsadm's `print_daemon`), with the interface and maxlen in
    /// use.
    pub fn line(&self, ifname: &str, maxlen: u16) -> String {
        format!(
            "{} sync daemon (mcast={ifname}, syncid={}, maxlen={maxlen}, group={}, port={}, ttl={})",
            self.role.name(),
            self.syncid,
            self.group(),
            self.port,
            self.ttl
        )
    }
}

/// The layouts of `-L`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListFormat {
    /// Forward, weight, active and inactive connections.
    #[default]
    Normal,
    /// `--stats`: connections, packets and bytes.
    Stats,
    /// `--rate`: connections, packets and bytes per second.
    Rate,
    /// `--thresholds`: upper and lower thresholds, active and inactive connections.
    Thresholds,
    /// `--persistent-conn`: weight, templates, active and inactive connections.
    PersistentConn,
}

/// A realserver as given to `-a`/`-e`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestSpec {
    pub addr: IpAddr,
    pub port: u16,
    pub fwd: Fwd,
    pub weight: u32,
    /// `-x`: upper connection threshold, 0 = none.
    pub u_threshold: u32,
    /// `-y`: lower connection threshold, 0 = none.
    pub l_threshold: u32,
}

/// A virtual service's settings as given to `-A`/`-E`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceOpts {
    /// `-s` (default wlc).
    pub sched: SchedKind,
    /// `-b`.
    pub flags: SchedFlags,
    /// `-p [timeout]` and `-M netmask`.
    pub persist: Option<Persistence>,
    /// `--sorry-server ADDR:PORT [-m|-g]` (xlvs; keepalived's `sorry_server`).
    pub sorry: Option<DestSpec>,
}

impl Default for ServiceOpts {
    fn default() -> Self {
        ServiceOpts {
            sched: SchedKind::Wlc,
            flags: SchedFlags::default(),
            persist: None,
            sorry: None,
        }
    }
}

/// ipvsadm's default persistence timeout (`-p` without a value).
pub const DEFAULT_PERSISTENCE: u32 = 300;

/// An ipvsadm-style error: the message printed on stderr and the exit code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmdError {
    pub msg: String,
    pub code: i32,
}

impl CmdError {
    /// A usage error (ipvsadm's `fail(2, ...)`).
    pub fn usage(msg: impl Into<String>) -> Self {
        CmdError {
            msg: msg.into(),
            code: 2,
        }
    }

    /// A failed operation on the table (ipvsadm exits 255 when the kernel refuses).
    pub fn op(msg: impl Into<String>) -> Self {
        CmdError {
            msg: msg.into(),
            code: 255,
        }
    }
}

impl std::fmt::Display for CmdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for CmdError {}
