//! ipvsadm's command-line grammar: `xlvsadm` arguments and the lines of an `ipvsadm -S -n`
//! rules file parse into the same [`Command`]s.
//!
//! ipvsadm's options are commands written as flags (`-A`, `-a`, `-L`), short options may be
//! bundled (`-Ln`), and errors have fixed wording and exit codes (2 for bad arguments, 255 for an
//! unknown option); the grammar is small and irregular enough that a hand parser states it more
//! plainly than a clap definition would.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use xlvs_dataplane::core::sched::{SchedFlags, SchedKind};
use xlvs_dataplane::core::service::{Fwd, Persistence, Proto, VsKey};

use crate::command::{
    CmdError, Command, DEFAULT_PERSISTENCE, DaemonSpec, DestSpec, ListFormat, MAX_WEIGHT,
    MarkMember, ServiceOpts, SvcKey, SyncRole, same_family,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    AddService,
    EditService,
    DelService,
    Clear,
    AddDest,
    EditDest,
    DelDest,
    AddMark,
    DelMark,
    List,
    Save,
    Restore,
    Zero,
    SetTimeouts,
    ListTimeouts,
    Workers,
    XdpStats,
    Help,
    Version,
    StartDaemon,
    StopDaemon,
    Resync,
}

impl Verb {
    fn long(self) -> &'static str {
        match self {
            Verb::AddService => "add-service",
            Verb::EditService => "edit-service",
            Verb::DelService => "delete-service",
            Verb::Clear => "clear",
            Verb::AddDest => "add-server",
            Verb::EditDest => "edit-server",
            Verb::DelDest => "delete-server",
            Verb::AddMark => "add-mark",
            Verb::DelMark => "delete-mark",
            Verb::List => "list",
            Verb::Save => "save",
            Verb::Restore => "restore",
            Verb::Zero => "zero",
            Verb::SetTimeouts => "set",
            Verb::ListTimeouts => "list",
            Verb::Workers => "workers",
            Verb::XdpStats => "xdp-stats",
            Verb::Help => "help",
            Verb::Version => "version",
            Verb::StartDaemon => "start-daemon",
            Verb::StopDaemon => "stop-daemon",
            Verb::Resync => "resync",
        }
    }
}

/// Options that take a value, by short name.
fn takes_value(c: char) -> bool {
    matches!(
        c,
        't' | 'u'
            | 'f'
            | 's'
            | 'r'
            | 'w'
            | 'M'
            | 'x'
            | 'y'
            | 'b'
            | SORRY
            | START_DAEMON
            | STOP_DAEMON
            | MCAST_IF
            | SYNCID
            | SYNC_MAXLEN
            | MCAST_GROUP
            | MCAST_PORT
            | MCAST_TTL
    )
}

/// Internal option letters for long-only options.
const WORKERS: char = '\u{1}';
const XDP_STATS: char = '\u{2}';
const SET: char = '\u{3}';
const TIMEOUT: char = '\u{4}';
const SORRY: char = '\u{5}';
const STATS: char = '\u{6}';
const RATE: char = '\u{7}';
const THRESHOLDS: char = '\u{8}';
const PERSISTENT_CONN: char = '\u{9}';
const DAEMON: char = '\u{10}';
const SORT: char = '\u{11}';
const JSON: char = '\u{12}';
const START_DAEMON: char = '\u{13}';
const STOP_DAEMON: char = '\u{14}';
/// `--mcast-interface`.
const MCAST_IF: char = '\u{15}';
const SYNCID: char = '\u{19}';
const SYNC_MAXLEN: char = '\u{1a}';
const MCAST_GROUP: char = '\u{1b}';
const MCAST_PORT: char = '\u{1c}';
const MCAST_TTL: char = '\u{1d}';
const ADD_MARK: char = '\u{16}';
const DEL_MARK: char = '\u{17}';
const HEALTH: char = '\u{18}';
const RESYNC: char = '\u{1e}';

/// `-p` takes an optional value: the next argument if it is a number.
fn optional_value(c: char) -> bool {
    c == 'p'
}

fn long_to_short(name: &str) -> Option<char> {
    Some(match name {
        "add-service" => 'A',
        "edit-service" => 'E',
        "delete-service" => 'D',
        "clear" => 'C',
        "add-server" => 'a',
        "edit-server" => 'e',
        "delete-server" => 'd',
        "list" => 'L',
        "save" => 'S',
        "help" => 'h',
        "version" => 'v',
        "numeric" => 'n',
        "tcp-service" => 't',
        "udp-service" => 'u',
        "fwmark-service" => 'f',
        "scheduler" => 's',
        "real-server" => 'r',
        "weight" => 'w',
        "masquerading" => 'm',
        "gatewaying" => 'g',
        "ipip" => 'i',
        "persistent" => 'p',
        "netmask" => 'M',
        "u-threshold" => 'x',
        "l-threshold" => 'y',
        "sched-flags" => 'b',
        "workers" => WORKERS,
        "xdp-stats" => XDP_STATS,
        "set" => SET,
        "timeout" => TIMEOUT,
        "sorry-server" => SORRY,
        "zero" => 'Z',
        "stats" => STATS,
        "rate" => RATE,
        "exact" => 'X',
        "thresholds" => THRESHOLDS,
        "persistent-conn" => PERSISTENT_CONN,
        "connection" => 'c',
        "restore" => 'R',
        "ipv6" => '6',
        "daemon" => DAEMON,
        "sort" => SORT,
        "json" => JSON,
        "start-daemon" => START_DAEMON,
        "stop-daemon" => STOP_DAEMON,
        "mcast-interface" => MCAST_IF,
        "syncid" => SYNCID,
        "sync-maxlen" => SYNC_MAXLEN,
        "mcast-group" => MCAST_GROUP,
        "mcast-port" => MCAST_PORT,
        "mcast-ttl" => MCAST_TTL,
        "add-mark" => ADD_MARK,
        "health" => HEALTH,
        "resync" => RESYNC,
        "delete-mark" => DEL_MARK,
        _ => return None,
    })
}

fn try_help() -> CmdError {
    CmdError {
        msg: "Try `xlvsadm -h' or 'xlvsadm --help' for more information.".into(),
        code: 255,
    }
}

/// Splits bundled short options (`-Ln`) and attached values (`-w3`, `--weight=3`) into
/// (option, value) pairs.
fn tokenize(args: &[String]) -> Result<Vec<(char, Option<String>)>, CmdError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if let Some(long) = a.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let c = match long_to_short(name) {
                Some(c) => c,
                None => {
                    let mut e = try_help();
                    e.msg = format!("xlvsadm: unrecognized option '--{name}'\n{}", e.msg);
                    return Err(e);
                }
            };
            if c == SET {
                // `--set tcp tcpfin udp`: three values.
                let mut vals: Vec<String> = attached.into_iter().collect();
                while vals.len() < 3 && i < args.len() && !args[i].starts_with('-') {
                    vals.push(args[i].clone());
                    i += 1;
                }
                if vals.len() != 3 {
                    return Err(CmdError::usage("--set option requires 3 timeout values"));
                }
                out.push((c, Some(vals.join(" "))));
                continue;
            }
            let value = if optional_value(c) {
                attached.or_else(|| next_number(args, &mut i))
            } else if takes_value(c) {
                match attached {
                    Some(v) => Some(v),
                    None if i < args.len() => {
                        i += 1;
                        Some(args[i - 1].clone())
                    }
                    None => return Err(CmdError::usage(format!("option --{name} needs a value"))),
                }
            } else {
                None
            };
            out.push((c, value));
        } else if let Some(shorts) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            let chars: Vec<char> = shorts.chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                if optional_value(c) {
                    let rest: String = chars[j..].iter().collect();
                    let v = if !rest.is_empty() {
                        Some(rest)
                    } else {
                        next_number(args, &mut i)
                    };
                    out.push((c, v));
                    break;
                }
                if takes_value(c) {
                    let rest: String = chars[j..].iter().collect();
                    let v = if !rest.is_empty() {
                        rest
                    } else if i < args.len() {
                        i += 1;
                        args[i - 1].clone()
                    } else {
                        return Err(CmdError::usage(format!("option -{c} needs a value")));
                    };
                    out.push((c, Some(v)));
                    break;
                }
                out.push((c, None));
            }
        } else {
            return Err(CmdError::usage(format!("unexpected argument `{a}'")));
        }
    }
    Ok(out)
}

/// The next argument as an optional option value, if it is a number.
fn next_number(args: &[String], i: &mut usize) -> Option<String> {
    let v = args.get(*i).filter(|a| a.parse::<u32>().is_ok())?;
    *i += 1;
    Some(v.clone())
}

/// Parses `ADDR:PORT`, or `[ADDR]:PORT` for IPv6 (port required unless `port_optional`; then
/// `ADDR`, `[ADDR]` or a bare IPv6 address will do).
fn parse_endpoint(s: &str, port_optional: bool) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some((sa.ip(), Some(sa.port())));
    }
    if port_optional {
        let bare = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        return bare.parse::<IpAddr>().ok().map(|a| (a, None));
    }
    None
}

/// Parses a u32 option value, or fails with ipvsadm's message.
fn number(v: &str, msg: &str) -> Result<u32, CmdError> {
    v.parse::<u32>().map_err(|_| CmdError::usage(msg))
}

/// Everything the options said, before the verb decides which of it is allowed.
#[derive(Default)]
struct Opts {
    service: Option<(Proto, String)>,
    fwmark: Option<String>,
    v6: bool,
    connections: bool,
    daemon: bool,
    /// `--health` (xlvs): the health checkers' states.
    health: bool,
    json: bool,
    /// `--start-daemon`/`--stop-daemon` and its role.
    daemon_cmd: Option<(bool, SyncRole)>,
    /// The sync daemon settings given, by ipvsadm's option name, in order.
    sync: Vec<(&'static str, String)>,
    sched: Option<String>,
    real: Option<String>,
    weight: Option<String>,
    fwd: Option<Fwd>,
    persistent: Option<Option<String>>,
    netmask: Option<String>,
    u_threshold: Option<String>,
    l_threshold: Option<String>,
    sched_flags: Option<String>,
    sorry: Option<String>,
    timeouts: Option<String>,
    numeric: bool,
    format: Option<ListFormat>,
    exact: bool,
}

/// Parses one ipvsadm command line (without the program name).
pub fn parse(args: &[String]) -> Result<Command, CmdError> {
    let toks = tokenize(args)?;
    let mut verb: Option<Verb> = None;
    let mut o = Opts::default();
    let mut list_timeouts = false;
    for (c, v) in toks {
        let set_verb = |verb: &mut Option<Verb>, new: Verb| -> Result<(), CmdError> {
            if verb.is_some() {
                return Err(CmdError::usage("multiple commands specified"));
            }
            *verb = Some(new);
            Ok(())
        };
        match c {
            'A' => set_verb(&mut verb, Verb::AddService)?,
            'E' => set_verb(&mut verb, Verb::EditService)?,
            'D' => set_verb(&mut verb, Verb::DelService)?,
            'C' => set_verb(&mut verb, Verb::Clear)?,
            'a' => set_verb(&mut verb, Verb::AddDest)?,
            'e' => set_verb(&mut verb, Verb::EditDest)?,
            'd' => set_verb(&mut verb, Verb::DelDest)?,
            'L' | 'l' => set_verb(&mut verb, Verb::List)?,
            'S' => set_verb(&mut verb, Verb::Save)?,
            'R' => set_verb(&mut verb, Verb::Restore)?,
            ADD_MARK => set_verb(&mut verb, Verb::AddMark)?,
            DEL_MARK => set_verb(&mut verb, Verb::DelMark)?,
            START_DAEMON | STOP_DAEMON => {
                let start = c == START_DAEMON;
                set_verb(
                    &mut verb,
                    if start {
                        Verb::StartDaemon
                    } else {
                        Verb::StopDaemon
                    },
                )?;
                // ipvsadm's messages, the second misspelt as it is.
                let role = match v.as_deref() {
                    Some("master") => SyncRole::Master,
                    Some("backup") => SyncRole::Backup,
                    _ if start => {
                        return Err(CmdError::usage("illegal start-daemon parameter specified"));
                    }
                    _ => return Err(CmdError::usage("illegal start_daemon specified")),
                };
                o.daemon_cmd = Some((start, role));
            }
            MCAST_IF | SYNCID | SYNC_MAXLEN | MCAST_GROUP | MCAST_PORT | MCAST_TTL => {
                let name = match c {
                    MCAST_IF => "mcast-interface",
                    SYNCID => "syncid",
                    SYNC_MAXLEN => "sync-maxlen",
                    MCAST_GROUP => "mcast-group",
                    MCAST_PORT => "mcast-port",
                    _ => "mcast-ttl",
                };
                if o.sync.iter().any(|(n, _)| *n == name) {
                    return Err(CmdError::usage(format!(
                        "multiple '{name}' options specified"
                    )));
                }
                o.sync.push((name, v.unwrap_or_default()));
            }
            DAEMON => o.daemon = true,
            HEALTH => o.health = true,
            RESYNC => set_verb(&mut verb, Verb::Resync)?,
            // ipvsadm sorts by default: --sort is accepted for compatibility.
            SORT => {}
            JSON => o.json = true,
            'c' => o.connections = true,
            '6' => o.v6 = true,
            'Z' => set_verb(&mut verb, Verb::Zero)?,
            'h' => set_verb(&mut verb, Verb::Help)?,
            'v' => set_verb(&mut verb, Verb::Version)?,
            WORKERS => set_verb(&mut verb, Verb::Workers)?,
            XDP_STATS => set_verb(&mut verb, Verb::XdpStats)?,
            SET => {
                set_verb(&mut verb, Verb::SetTimeouts)?;
                o.timeouts = v;
            }
            // `--timeout` is a listing option: `-L --timeout`, or alone.
            TIMEOUT => list_timeouts = true,
            'n' => o.numeric = true,
            STATS | RATE | THRESHOLDS | PERSISTENT_CONN => {
                let f = match c {
                    STATS => ListFormat::Stats,
                    RATE => ListFormat::Rate,
                    THRESHOLDS => ListFormat::Thresholds,
                    _ => ListFormat::PersistentConn,
                };
                if o.format.is_some_and(|old| old != f) {
                    return Err(CmdError::usage("more than one output format specified"));
                }
                o.format = Some(f);
            }
            'X' => o.exact = true,
            't' | 'u' => {
                if o.service.is_some() {
                    return Err(CmdError::usage("multiple service options specified"));
                }
                let proto = if c == 't' { Proto::Tcp } else { Proto::Udp };
                o.service = Some((proto, v.unwrap_or_default()));
            }
            'f' => {
                if o.fwmark.is_some() {
                    return Err(CmdError::usage("multiple service options specified"));
                }
                o.fwmark = v;
            }
            's' => o.sched = v,
            'r' => o.real = v,
            'w' => o.weight = v,
            'm' => o.fwd = Some(Fwd::Masq),
            'g' => o.fwd = Some(Fwd::Route),
            'i' => {
                return Err(CmdError::usage("tunnelling (-i) is not supported yet"));
            }
            'p' => o.persistent = Some(v),
            'M' => o.netmask = v,
            'x' => o.u_threshold = v,
            'y' => o.l_threshold = v,
            'b' => o.sched_flags = v,
            SORRY => o.sorry = v,
            other => {
                let mut e = try_help();
                e.msg = format!("xlvsadm: invalid option -- '{other}'\n{}", e.msg);
                return Err(e);
            }
        }
    }
    if list_timeouts {
        match verb {
            None | Some(Verb::List) => verb = Some(Verb::ListTimeouts),
            Some(_) => return Err(CmdError::usage("--timeout is only valid with -L")),
        }
    }
    let verb = verb.ok_or_else(|| {
        CmdError::usage("no command specified\nTry `xlvsadm -h' for more information.")
    })?;
    build(verb, o)
}

/// `-f`'s value: a mark from 1 to 2^32 - 1.
fn parse_fwmark(v: &str) -> Result<u32, CmdError> {
    match v.parse::<u32>() {
        Ok(m) if m > 0 => Ok(m),
        _ => Err(CmdError::usage(format!(
            "invalid fwmark value `{v}' specified"
        ))),
    }
}

/// `--add-mark`'s `-t|-u VIP:PORT[-PORT]`.
fn parse_member(proto: Proto, text: &str) -> Result<MarkMember, CmdError> {
    let bad = || CmdError::usage("illegal fwmark group address:port[-port] specified");
    let (addr, ports) = text.rsplit_once(':').ok_or_else(bad)?;
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
    let (lo, hi): (u16, u16) = (
        lo.parse().map_err(|_| bad())?,
        hi.parse().map_err(|_| bad())?,
    );
    if lo == 0 || hi < lo {
        return Err(bad());
    }
    Ok(MarkMember {
        proto,
        addr,
        lo,
        hi,
    })
}

/// A sync daemon's settings from `--mcast-interface`, `--syncid`, `--sync-maxlen`,
/// `--mcast-group`, `--mcast-port`, `--mcast-ttl`, with ipvsadm's checks and messages.
fn daemon_spec(role: SyncRole, sync: &[(&'static str, String)]) -> Result<DaemonSpec, CmdError> {
    let mut d = DaemonSpec::new(role);
    for (name, v) in sync {
        let num = |lo: u32, hi: u32| {
            v.parse::<u32>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| CmdError::usage(format!("illegal {name} specified")))
        };
        match *name {
            "mcast-interface" => d.ifname = Some(v.clone()),
            "syncid" => d.syncid = num(0, 255)? as u8,
            "sync-maxlen" => d.maxlen = Some(num(1, 65535 - 20 - 8)? as u16),
            "mcast-port" => d.port = num(1, 65535)? as u16,
            "mcast-ttl" => d.ttl = num(1, 255)? as u8,
            _ => {
                let v6 = v.contains(':');
                let group = v
                    .parse::<IpAddr>()
                    .ok()
                    .filter(|a| a.is_multicast() && a.is_ipv6() == v6);
                d.group = Some(group.ok_or_else(|| {
                    CmdError::usage(format!(
                        "invalid IPv{} mcast-group `{v}'",
                        if v6 { 6 } else { 4 }
                    ))
                })?);
            }
        }
    }
    Ok(d)
}

/// Checks which options the verb allows and assembles the command.
fn build(verb: Verb, o: Opts) -> Result<Command, CmdError> {
    let mark_verb = matches!(verb, Verb::AddMark | Verb::DelMark);
    // ipvsadm takes the sync settings with the daemon commands and with -L (which ignores
    // them); with anything else the first is illegal.
    let daemon_verb = matches!(verb, Verb::StartDaemon | Verb::StopDaemon | Verb::List);
    if let (false, Some((name, _))) = (daemon_verb, o.sync.first()) {
        return Err(CmdError::usage(format!(
            "Illegal '{name}' option with the '{}' command",
            verb.long()
        )));
    }

    if o.v6 && o.fwmark.is_none() {
        return Err(CmdError::usage("-6 used before -f"));
    }
    if !mark_verb && o.service.is_some() && o.fwmark.is_some() {
        return Err(CmdError::usage("multiple service options specified"));
    }
    // ipvsadm's message for a missing option.
    let missing = |opt: &str| {
        CmdError::usage(format!(
            "You need to supply the '{opt}' option for the '{}' command",
            verb.long()
        ))
    };
    let need_service = || -> Result<SvcKey, CmdError> {
        if let Some(m) = &o.fwmark {
            return Ok(SvcKey::Mark {
                mark: parse_fwmark(m)?,
                v6: o.v6,
            });
        }
        let (proto, text) = o
            .service
            .as_ref()
            .ok_or_else(|| missing("service-address"))?;
        match parse_endpoint(text, false) {
            Some((addr, Some(port))) if port != 0 => Ok(SvcKey::Addr(VsKey {
                proto: *proto,
                addr,
                port,
            })),
            Some((_, Some(_))) => Err(CmdError::usage(
                "Zero port specified for non-persistent service",
            )),
            _ => Err(CmdError::usage(
                "illegal virtual server address[:port] specified",
            )),
        }
    };
    let optional_service = || match o.service.is_some() || o.fwmark.is_some() {
        true => need_service().map(Some),
        false => Ok(None),
    };
    let illegal_with = |opt: &str| -> CmdError {
        CmdError::usage(format!(
            "Illegal '{opt}' option with the '{}' command",
            verb.long()
        ))
    };
    let service_opts = [
        (o.sched.is_some(), "scheduler"),
        (o.persistent.is_some(), "persistent"),
        (o.netmask.is_some(), "netmask"),
        (o.sched_flags.is_some(), "sched-flags"),
        (o.sorry.is_some(), "sorry-server"),
    ];
    let dest_opts = [
        (o.real.is_some(), "real-server"),
        (o.weight.is_some(), "weight"),
        (o.fwd.is_some() && o.sorry.is_none(), "forwarding-method"),
        (o.u_threshold.is_some(), "u-threshold"),
        (o.l_threshold.is_some(), "l-threshold"),
    ];
    let only = |allowed_service: bool, allowed_dest: bool| -> Result<(), CmdError> {
        if !allowed_service && let Some((_, name)) = service_opts.iter().find(|(on, _)| *on) {
            return Err(illegal_with(name));
        }
        if !allowed_dest && let Some((_, name)) = dest_opts.iter().find(|(on, _)| *on) {
            return Err(illegal_with(name));
        }
        Ok(())
    };

    if verb != Verb::List {
        let name = match o.format {
            _ if o.connections => Some("connection"),
            _ if o.daemon => Some("daemon"),
            _ if o.health => Some("health"),
            _ if o.json => Some("json"),
            Some(ListFormat::Stats) => Some("stats"),
            Some(ListFormat::Rate) => Some("rate"),
            Some(ListFormat::Thresholds) => Some("thresholds"),
            Some(ListFormat::PersistentConn) => Some("persistent-conn"),
            _ if o.exact => Some("exact"),
            _ => None,
        };
        if let Some(name) = name {
            return Err(illegal_with(name));
        }
    }
    Ok(match verb {
        Verb::AddService | Verb::EditService => {
            let key = need_service()?;
            only(true, false)?;
            let opts = service_opts_of(&o, &key)?;
            if verb == Verb::AddService {
                Command::AddService { key, opts }
            } else {
                Command::EditService { key, opts }
            }
        }
        Verb::DelService => {
            let key = need_service()?;
            only(false, false)?;
            Command::DelService { key }
        }
        Verb::Clear => {
            only(false, false)?;
            Command::Clear
        }
        Verb::AddDest | Verb::EditDest | Verb::DelDest => {
            let key = need_service()?;
            only(false, true)?;
            let real = o.real.as_deref().ok_or_else(|| missing("real-server"))?;
            let dest = dest_spec(&key, real, &o)?;
            if verb == Verb::DelDest {
                if o.weight.is_some() {
                    return Err(illegal_with("weight"));
                }
                // ipvsadm forces the service port for -g on -a/-e only: -d names the
                // realserver as listed.
                let port = parse_endpoint(real, true)
                    .and_then(|(_, p)| p)
                    .unwrap_or(dest.port);
                Command::DelDest {
                    key,
                    addr: dest.addr,
                    port,
                }
            } else if verb == Verb::AddDest {
                Command::AddDest { key, dest }
            } else {
                Command::EditDest { key, dest }
            }
        }
        Verb::AddMark | Verb::DelMark => {
            only(false, false)?;
            let mark = parse_fwmark(
                o.fwmark
                    .as_deref()
                    .ok_or_else(|| missing("fwmark-service"))?,
            )?;
            if o.v6 {
                return Err(illegal_with("ipv6"));
            }
            let (proto, text) = o
                .service
                .as_ref()
                .ok_or_else(|| missing("service-address"))?;
            let member = parse_member(*proto, text)?;
            if verb == Verb::AddMark {
                Command::AddMark { mark, member }
            } else {
                Command::DelMark { mark, member }
            }
        }
        Verb::List => {
            only(false, false)?;
            if o.connections || o.daemon {
                // ipvsadm lists every connection whatever service is named.
                if o.exact || !matches!(o.format, None | Some(ListFormat::PersistentConn)) {
                    return Err(CmdError::usage("options conflicts in the list command"));
                }
                if o.daemon {
                    return Ok(Command::ListDaemon { json: o.json });
                }
                return Ok(Command::ListConns {
                    persistent: o.format == Some(ListFormat::PersistentConn),
                    json: o.json,
                });
            }
            if o.health {
                if o.exact || o.format.is_some() {
                    return Err(CmdError::usage("options conflicts in the list command"));
                }
                return Ok(Command::ListHealth {
                    key: optional_service()?,
                    json: o.json,
                });
            }
            let key = optional_service()?;
            Command::List {
                key,
                numeric: o.numeric,
                format: o.format.unwrap_or_default(),
                exact: o.exact,
                json: o.json,
            }
        }
        Verb::Zero => {
            only(false, false)?;
            Command::Zero {
                key: optional_service()?,
            }
        }
        Verb::Save => Command::Save { numeric: o.numeric },
        Verb::Restore => {
            only(false, false)?;
            Command::Restore
        }
        Verb::SetTimeouts => {
            only(false, false)?;
            let text = o.timeouts.unwrap_or_default();
            let v: Vec<u32> = text
                .split(' ')
                .map(|t| {
                    t.parse::<u32>().map_err(|_| {
                        CmdError::usage(format!("invalid timeout value `{t}' specified"))
                    })
                })
                .collect::<Result<_, _>>()?;
            Command::SetTimeouts {
                tcp: v[0],
                tcpfin: v[1],
                udp: v[2],
            }
        }
        Verb::ListTimeouts => Command::ListTimeouts,
        Verb::Workers => Command::Workers,
        Verb::XdpStats => Command::XdpStats,
        Verb::Resync => {
            only(false, false)?;
            if o.service.is_some() || o.fwmark.is_some() {
                return Err(illegal_with("service-address"));
            }
            Command::Resync
        }
        Verb::Help => Command::Help,
        Verb::Version => Command::Version,
        Verb::StartDaemon | Verb::StopDaemon => {
            only(false, false)?;
            // Set with these verbs.
            let Some((start, role)) = o.daemon_cmd else {
                return Err(try_help());
            };
            let spec = daemon_spec(role, &o.sync)?;
            if start {
                Command::StartDaemon(spec)
            } else {
                Command::StopDaemon { role }
            }
        }
    })
}

/// `-s -b -p -M --sorry-server` of `-A`/`-E`.
fn service_opts_of(o: &Opts, key: &SvcKey) -> Result<ServiceOpts, CmdError> {
    let name = o.sched.as_deref().unwrap_or("wlc");
    let flags = match &o.sched_flags {
        Some(list) => SchedFlags::parse(list, name).map_err(CmdError::usage)?,
        None => SchedFlags::default(),
    };
    // ipvsadm leaves the name to the kernel, which refuses one it does not know.
    let sched = SchedKind::from_name(name)
        .ok_or_else(|| CmdError::op("Scheduler or persistence engine not found"))?;
    let persist = match (&o.persistent, &o.netmask) {
        (None, Some(_)) => {
            return Err(CmdError::usage(
                "-M (netmask) is only valid with -p (persistent)",
            ));
        }
        (None, None) => None,
        (Some(t), mask) => {
            let secs = match t {
                Some(t) => match t.parse::<u32>() {
                    Ok(s) if s > 0 => s,
                    _ => {
                        return Err(CmdError::usage(format!(
                            "invalid timeout value `{t}' specified"
                        )));
                    }
                },
                None => DEFAULT_PERSISTENCE,
            };
            let netmask = match (mask, key.is_ipv4()) {
                (Some(m), true) => parse_netmask(m)
                    .map(IpAddr::V4)
                    .ok_or_else(|| CmdError::usage("invalid netmask specified"))?,
                // ipvsadm: an IPv6 service's -M is a prefix length.
                (Some(m), false) => parse_prefix6(m)
                    .map(IpAddr::V6)
                    .ok_or_else(|| CmdError::usage("illegal ipv6 netmask specified"))?,
                (None, true) => IpAddr::V4(Ipv4Addr::BROADCAST),
                (None, false) => IpAddr::V6(Ipv6Addr::from_bits(u128::MAX)),
            };
            Some(Persistence {
                timeout: Duration::from_secs(secs as u64),
                netmask,
            })
        }
    };
    let sorry = match &o.sorry {
        Some(text) => {
            let (addr, port) = parse_endpoint(text, true)
                .ok_or_else(|| CmdError::usage("illegal sorry server address[:port] specified"))?;
            same_family(key, addr)?;
            Some(DestSpec {
                addr,
                // Like a realserver: no port means the service's.
                port: port.unwrap_or(key.port()),
                fwd: o.fwd.unwrap_or(Fwd::Route),
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            })
        }
        None => None,
    };
    Ok(ServiceOpts {
        sched,
        flags,
        persist,
        sorry,
    })
}

/// A netmask in dotted form (or a prefix length, as `/24` or `24`), contiguous.
fn parse_netmask(s: &str) -> Option<Ipv4Addr> {
    let bits = match s.trim_start_matches('/').parse::<u32>() {
        Ok(len) if len <= 32 => u32::MAX.checked_shl(32 - len).unwrap_or(0),
        Ok(_) => return None,
        Err(_) => s.parse::<Ipv4Addr>().ok()?.to_bits(),
    };
    // Contiguous: ones then zeros.
    (bits.leading_ones() + bits.trailing_zeros() == 32).then(|| Ipv4Addr::from_bits(bits))
}

/// An IPv6 persistence netmask: a prefix length 1–128 (`64` or `/64`).
fn parse_prefix6(s: &str) -> Option<Ipv6Addr> {
    match s.trim_start_matches('/').parse::<u32>() {
        Ok(len) if (1..=128).contains(&len) => Some(Ipv6Addr::from_bits(u128::MAX << (128 - len))),
        _ => None,
    }
}

/// `-r -g|-m -w -x -y` of `-a`/`-e`/`-d`.
fn dest_spec(key: &SvcKey, real: &str, o: &Opts) -> Result<DestSpec, CmdError> {
    let (addr, port) = parse_endpoint(real, true)
        .ok_or_else(|| CmdError::usage("illegal real server address[:port] specified"))?;
    same_family(key, addr)?;
    let fwd = o.fwd.unwrap_or(Fwd::Route);
    // ipvsadm: for -g the realserver port is the service port (a fwmark service's realserver
    // keeps the port it is given).
    let port = match (fwd, port, key) {
        (Fwd::Route, _, SvcKey::Addr(_)) | (_, None, _) => key.port(),
        (_, Some(p), _) => p,
    };
    let weight = match &o.weight {
        None => 1,
        Some(w) => match w.parse::<u32>() {
            Ok(w) if w <= MAX_WEIGHT => w,
            _ => return Err(CmdError::usage("illegal weight specified")),
        },
    };
    let u_threshold = match &o.u_threshold {
        Some(v) => number(v, "illegal u_threshold specified")?,
        None => 0,
    };
    let l_threshold = match &o.l_threshold {
        Some(v) => number(v, "illegal l_threshold specified")?,
        None => 0,
    };
    Ok(DestSpec {
        addr,
        port,
        fwd,
        weight,
        u_threshold,
        l_threshold,
    })
}

/// A rules file line that failed to parse.
#[derive(Debug, PartialEq, Eq)]
pub struct RulesError {
    /// The line (from 1), or 0 when the rules fail as a whole (too many steering keys).
    pub line: usize,
    pub error: CmdError,
}

impl std::fmt::Display for RulesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => f.write_str(&self.error.msg),
            n => write!(f, "line {n}: {}", self.error.msg),
        }
    }
}

/// Parses an `ipvsadm -S -n` rules file: one command per line; blank lines and `#` comments
/// are skipped. Only commands that change the table are allowed.
pub fn parse_rules(text: &str) -> Result<Vec<Command>, RulesError> {
    Ok(parse_rules_numbered(text)?
        .into_iter()
        .map(|(_, c)| c)
        .collect())
}

/// [`parse_rules`], each command with its line number (from 1).
pub fn parse_rules_numbered(text: &str) -> Result<Vec<(usize, Command)>, RulesError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        let cmd = parse(&args).map_err(|error| RulesError { line: i + 1, error })?;
        if !cmd.edits_table() {
            return Err(RulesError {
                line: i + 1,
                error: CmdError::usage(NOT_A_RULE),
            });
        }
        out.push((i + 1, cmd));
    }
    Ok(out)
}

/// The error for a line of a rules file that does not change the table.
pub const NOT_A_RULE: &str =
    "only -A, -E, -D, -C, -a, -e, -d, --set and --add-mark/--delete-mark belong in a rules file";

/// `xlvsadm -v`.
pub fn version() -> String {
    format!(
        "xlvsadm {} (ipvsadm 1.31 syntax)\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// `xlvsadm -h`.
pub const HELP: &str = "\
xlvsadm - administer the xlvs director (ipvsadm syntax)
Usage:
  xlvsadm -A|E virtual-service [-s scheduler] [-b sched-flags]
          [-p [timeout]] [-M netmask] [--sorry-server server-address [-g|m]]
  xlvsadm -D virtual-service
  xlvsadm -C
  xlvsadm -R < rules       restore rules (all or nothing)
  xlvsadm -S [-n]          save rules
  xlvsadm -a|e virtual-service -r server-address [-g|m] [-w weight]
          [-x upper-threshold] [-y lower-threshold]
  xlvsadm -d virtual-service -r server-address
  xlvsadm -L|l [virtual-service] [-n] [--stats|--rate|--thresholds|--persistent-conn]
          [--exact] [--sort] [--json]
  xlvsadm -L|l -c [-n] [--persistent-conn] [--json]   connections
  xlvsadm -L --timeout
  xlvsadm -Z [virtual-service]
  xlvsadm --set tcp tcpfin udp
  xlvsadm --add-mark|--delete-mark -f fwmark -t|u vip:port[-port]
                           put traffic in (or take it out of) a fwmark group (xlvs)
  xlvsadm --start-daemon master|backup [--mcast-interface IF] [--syncid N]
          [--sync-maxlen L] [--mcast-group G] [--mcast-port P] [--mcast-ttl T]
  xlvsadm --stop-daemon master|backup
  xlvsadm -L --daemon [--json]   the sync daemons (--json: with their counters)
  xlvsadm --resync         pull the whole connection table from the --sync-peers (xlvs)
  xlvsadm --vrrp-notify master|backup|fault|stop   (or keepalived's notify arguments)
                           keepalived's notify hook: sync roles follow the VRRP state (xlvs)
  xlvsadm --check          keepalived's track_script: fails if xlvsd or a worker is gone (xlvs)
  xlvsadm --workers        per-worker packet counters (xlvs)
  xlvsadm -L -n --health [service]   health checkers' states (xlvs)
  xlvsadm --xdp-stats      XDP steering counters (xlvs)
  xlvsadm -h | -v
virtual-service:
  -t|u vip:port            a TCP or UDP virtual service ([vip]:port for IPv6)
  -f fwmark [-6]           a fwmark service: every vip:port of its fwmark group
Options:
  --control SOCKET         the daemon's control socket (or $XLVS_CONTROL; default /run/xlvs/xlvsd.sock)
Schedulers: rr, wrr, lc, wlc (default), sed, nq, sh, mh.
Scheduler flags (-b): sh-fallback, sh-port, mh-fallback, mh-port, flag-1..3.
Forwarding: -g route (LVS-DR, default), -m masquerading (LVS-NAT); -i (tunnel) is not supported.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, CmdError> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    fn vs(s: &str) -> SvcKey {
        let sa: SocketAddr = s.parse().unwrap();
        SvcKey::Addr(VsKey {
            proto: Proto::Tcp,
            addr: sa.ip(),
            port: sa.port(),
        })
    }

    #[test]
    fn add_service_defaults_to_wlc() {
        assert_eq!(
            p("-A -t 10.0.0.1:80").unwrap(),
            Command::AddService {
                key: vs("10.0.0.1:80"),
                opts: ServiceOpts::default()
            }
        );
        assert_eq!(
            p("-A -t 10.0.0.1:80 -s rr").unwrap(),
            Command::AddService {
                key: vs("10.0.0.1:80"),
                opts: ServiceOpts {
                    sched: SchedKind::Rr,
                    ..Default::default()
                }
            }
        );
        assert_eq!(
            p("--add-service --tcp-service=10.0.0.1:80 --scheduler rr").unwrap(),
            p("-A -t 10.0.0.1:80 -s rr").unwrap()
        );
    }

    #[test]
    fn add_dest_forms() {
        let d = p("-a -t 10.0.0.1:80 -r 10.1.0.2:8080 -m -w 3").unwrap();
        assert_eq!(
            d,
            Command::AddDest {
                key: vs("10.0.0.1:80"),
                dest: DestSpec {
                    addr: "10.1.0.2".parse().unwrap(),
                    port: 8080,
                    fwd: Fwd::Masq,
                    weight: 3,
                    u_threshold: 0,
                    l_threshold: 0,
                }
            }
        );
        // -g forces the service port; default method is -g, default weight 1.
        let d = p("-a -t 10.0.0.1:80 -r 10.1.0.2:8080").unwrap();
        assert_eq!(
            d,
            Command::AddDest {
                key: vs("10.0.0.1:80"),
                dest: DestSpec {
                    addr: "10.1.0.2".parse().unwrap(),
                    port: 80,
                    fwd: Fwd::Route,
                    weight: 1,
                    u_threshold: 0,
                    l_threshold: 0,
                }
            }
        );
        assert!(matches!(
            p("-a -u 10.0.0.1:53 -r 10.1.0.2 -m").unwrap(),
            Command::AddDest {
                dest: DestSpec { port: 53, .. },
                ..
            }
        ));
    }

    #[test]
    fn listing_formats_and_zero() {
        let list = |format, exact| Command::List {
            key: None,
            numeric: true,
            format,
            exact,
            json: false,
        };
        assert_eq!(p("-Ln --stats").unwrap(), list(ListFormat::Stats, false));
        assert_eq!(p("-L -n --rate -X").unwrap(), list(ListFormat::Rate, true));
        assert_eq!(
            p("-Ln --thresholds").unwrap(),
            list(ListFormat::Thresholds, false)
        );
        assert_eq!(
            p("-Ln --persistent-conn").unwrap(),
            list(ListFormat::PersistentConn, false)
        );
        let e = p("-Ln --stats --rate").unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (2, "more than one output format specified")
        );
        let e = p("-A -t 10.0.0.1:80 --stats").unwrap_err();
        assert_eq!(
            e.msg,
            "Illegal 'stats' option with the 'add-service' command"
        );
        assert_eq!(p("-Z").unwrap(), Command::Zero { key: None });
        assert_eq!(
            p("--zero -t 10.0.0.1:80").unwrap(),
            Command::Zero {
                key: Some(vs("10.0.0.1:80"))
            }
        );
    }

    #[test]
    fn bundled_short_options() {
        assert_eq!(
            p("-Ln").unwrap(),
            Command::List {
                key: None,
                numeric: true,
                format: ListFormat::Normal,
                exact: false,
                json: false,
            }
        );
        assert_eq!(
            p("-L -n").unwrap(),
            Command::List {
                key: None,
                numeric: true,
                format: ListFormat::Normal,
                exact: false,
                json: false,
            }
        );
        assert_eq!(p("-Sn").unwrap(), Command::Save { numeric: true });
        assert_eq!(
            p("-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w3").unwrap(),
            p("-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 3").unwrap()
        );
    }

    #[test]
    fn errors_use_ipvsadm_wording_and_codes() {
        assert_eq!(
            p("-A -t 10.0.0:80").unwrap_err(),
            CmdError::usage("illegal virtual server address[:port] specified")
        );
        assert_eq!(
            p("-a -t 10.0.0.1:80 -r 10.1.0.2:80 -w 70000").unwrap_err(),
            CmdError::usage("illegal weight specified")
        );
        assert_eq!(
            p("-a -t 10.0.0.1:80 -r 10.1.0.2:80 -w -1")
                .unwrap_err()
                .code,
            2
        );
        assert_eq!(
            p("-a -t 10.0.0.1:80 -r bogus").unwrap_err(),
            CmdError::usage("illegal real server address[:port] specified")
        );
        assert_eq!(
            p("-a -t 10.0.0.1:80").unwrap_err().msg,
            "You need to supply the 'real-server' option for the 'add-server' command"
        );
        assert_eq!(
            p("-A -L").unwrap_err(),
            CmdError::usage("multiple commands specified")
        );
        assert_eq!(
            p("-A -t 10.0.0.1:0").unwrap_err(),
            CmdError::usage("Zero port specified for non-persistent service")
        );
        assert_eq!(p("-Q").unwrap_err().code, 255);
        assert_eq!(p("--bogus").unwrap_err().code, 255);
        assert!(
            p("-a -t 10.0.0.1:80 -r 10.1.0.2 -i")
                .unwrap_err()
                .msg
                .contains("not supported")
        );
    }

    #[test]
    fn persistence_netmask_flags_and_sorry_server() {
        let Command::AddService { opts, .. } =
            p("-A -t 10.0.0.1:80 -s sh -b sh-fallback,sh-port -p -M 255.255.255.0").unwrap()
        else {
            panic!()
        };
        assert!(opts.flags.flag1 && opts.flags.flag2);
        assert_eq!(
            opts.persist,
            Some(Persistence {
                timeout: Duration::from_secs(300),
                netmask: Ipv4Addr::new(255, 255, 255, 0).into()
            })
        );
        // -p takes an optional value: a number after it, attached or not.
        for line in [
            "-A -t 10.0.0.1:80 -p 60",
            "-A -t 10.0.0.1:80 -p60",
            "-A -t 10.0.0.1:80 --persistent=60",
            "-A -p 60 -t 10.0.0.1:80",
        ] {
            let Command::AddService { opts, .. } = p(line).unwrap() else {
                panic!()
            };
            assert_eq!(
                opts.persist.unwrap().timeout,
                Duration::from_secs(60),
                "{line}"
            );
        }
        let Command::AddService { opts, .. } =
            p("-A -t 10.0.0.1:80 --sorry-server 10.1.0.9:8080 -m").unwrap()
        else {
            panic!()
        };
        let sorry = opts.sorry.unwrap();
        assert_eq!((sorry.port, sorry.fwd), (8080, Fwd::Masq));
        let Command::AddService { opts, .. } =
            p("-A -t 10.0.0.1:80 --sorry-server 10.1.0.9").unwrap()
        else {
            panic!()
        };
        assert_eq!(opts.sorry.unwrap().port, 80, "no port: the service's");
        assert_eq!(
            p("-A -t 10.0.0.1:80 -p 0").unwrap_err(),
            CmdError::usage("invalid timeout value `0' specified")
        );
        assert_eq!(
            p("-A -t 10.0.0.1:80 -p -M 255.0.255.0").unwrap_err(),
            CmdError::usage("invalid netmask specified")
        );
        assert_eq!(
            p("-A -t 10.0.0.1:80 -s rr -b sh-port").unwrap_err(),
            CmdError::usage("incompatible scheduler flag `sh-port'")
        );
        assert_eq!(
            p("-A -t 10.0.0.1:80 -m").unwrap_err().msg,
            "Illegal 'forwarding-method' option with the 'add-service' command"
        );
        assert_eq!(
            p("-a -t 10.0.0.1:80 -r 10.1.0.2 -p").unwrap_err().msg,
            "Illegal 'persistent' option with the 'add-server' command"
        );
    }

    #[test]
    fn thresholds_and_timeouts() {
        let Command::AddDest { dest, .. } =
            p("-a -t 10.0.0.1:80 -r 10.1.0.2 -x 100 -y 50").unwrap()
        else {
            panic!()
        };
        assert_eq!((dest.u_threshold, dest.l_threshold), (100, 50));
        assert_eq!(
            p("-a -t 10.0.0.1:80 -r 10.1.0.2 -x lots").unwrap_err(),
            CmdError::usage("illegal u_threshold specified")
        );
        assert_eq!(
            p("--set 900 120 300").unwrap(),
            Command::SetTimeouts {
                tcp: 900,
                tcpfin: 120,
                udp: 300
            }
        );
        assert_eq!(
            p("--set 900 120").unwrap_err(),
            CmdError::usage("--set option requires 3 timeout values")
        );
        assert_eq!(p("-L --timeout").unwrap(), Command::ListTimeouts);
        assert_eq!(p("--timeout").unwrap(), Command::ListTimeouts);
    }

    #[test]
    fn connection_daemon_sort_json_and_sync_options() {
        assert_eq!(
            p("-L -n -c").unwrap(),
            Command::ListConns {
                persistent: false,
                json: false
            }
        );
        assert_eq!(
            p("-Lnc --persistent-conn --json").unwrap(),
            Command::ListConns {
                persistent: true,
                json: true
            }
        );
        assert_eq!(
            p("-L --daemon").unwrap(),
            Command::ListDaemon { json: false }
        );
        assert_eq!(
            p("-L --daemon --json").unwrap(),
            Command::ListDaemon { json: true }
        );
        assert_eq!(p("--resync").unwrap(), Command::Resync);
        assert!(p("--resync -t 10.0.0.1:80").is_err());
        assert_eq!(p("-L -n --sort").unwrap(), p("-L -n").unwrap());
        assert!(matches!(
            p("-L -n --json -t 10.0.0.1:80").unwrap(),
            Command::List {
                json: true,
                key: Some(_),
                ..
            }
        ));
        assert_eq!(
            p("--start-daemon master --mcast-interface eth0 --syncid 7").unwrap(),
            Command::StartDaemon(DaemonSpec {
                ifname: Some("eth0".into()),
                syncid: 7,
                ..DaemonSpec::new(SyncRole::Master)
            })
        );
        assert_eq!(
            p("--stop-daemon backup").unwrap(),
            Command::StopDaemon {
                role: SyncRole::Backup
            }
        );
        assert_eq!(
            p("-L -n -c -t 10.0.0.1:80").unwrap(),
            p("-L -n -c").unwrap(),
            "ipvsadm lists every connection"
        );
        assert_eq!(
            p("-L -c --stats").unwrap_err(),
            CmdError::usage("options conflicts in the list command")
        );
        // ipvsadm takes (and ignores) sync settings with -L.
        assert!(matches!(
            p("-L -n --syncid 3").unwrap(),
            Command::List { .. }
        ));
        assert_eq!(p("-R").unwrap(), Command::Restore);
        assert_eq!(p("--restore").unwrap(), Command::Restore);
        assert_eq!(
            p("-A -t 10.0.0.1:80 -c").unwrap_err().msg,
            "Illegal 'connection' option with the 'add-service' command"
        );
    }

    /// What a real ipvsadm 1.31 on Debian's 6.1 kernel answered (under qemu, see
    /// control/tests/kernel/ipvsadm-daemon-6.1.sh and .txt): the same messages and codes.
    #[test]
    fn sync_daemon_commands_as_the_kernels_ipvsadm() {
        let err = |line: &str| p(line).unwrap_err();
        for (line, msg) in [
            (
                "--start-daemon master --mcast-group 1.2.3.4",
                "invalid IPv4 mcast-group `1.2.3.4'",
            ),
            (
                "--start-daemon master --mcast-group ff02::x",
                "invalid IPv6 mcast-group `ff02::x'",
            ),
            (
                "--start-daemon master --mcast-group 10.0.0.1",
                "invalid IPv4 mcast-group `10.0.0.1'",
            ),
            (
                "--start-daemon master --syncid 256",
                "illegal syncid specified",
            ),
            (
                "--start-daemon master --mcast-port 0",
                "illegal mcast-port specified",
            ),
            (
                "--start-daemon master --mcast-ttl 0",
                "illegal mcast-ttl specified",
            ),
            (
                "--start-daemon master --sync-maxlen 70000",
                "illegal sync-maxlen specified",
            ),
            (
                "--start-daemon foo",
                "illegal start-daemon parameter specified",
            ),
            ("--stop-daemon foo", "illegal start_daemon specified"),
            (
                "--start-daemon master --mcast-interface eth0 --syncid 3 --syncid 4",
                "multiple 'syncid' options specified",
            ),
            (
                "-A -t 1.2.3.4:80 --syncid 3",
                "Illegal 'syncid' option with the 'add-service' command",
            ),
        ] {
            assert_eq!(err(line), CmdError::usage(msg), "{line}");
        }
        assert!(p("--start-daemon").is_err(), "no role");
        assert_eq!(
            p("--start-daemon master --mcast-interface eth0 --syncid 5 --sync-maxlen 1000 --mcast-group 239.1.2.3 --mcast-port 9000 --mcast-ttl 3").unwrap(),
            Command::StartDaemon(DaemonSpec {
                role: SyncRole::Master,
                ifname: Some("eth0".into()),
                syncid: 5,
                maxlen: Some(1000),
                group: Some("239.1.2.3".parse().unwrap()),
                port: 9000,
                ttl: 3,
            })
        );
        assert!(matches!(
            p("--start-daemon backup --mcast-group ff02::1").unwrap(),
            Command::StartDaemon(DaemonSpec {
                group: Some(IpAddr::V6(_)),
                ..
            })
        ));
        assert!(matches!(
            p("--stop-daemon master --syncid 3").unwrap(),
            Command::StopDaemon { .. }
        ));
        // -L --daemon's line, as the kernel's ipvsadm printed it.
        let d = DaemonSpec {
            syncid: 6,
            ..DaemonSpec::new(SyncRole::Backup)
        };
        assert_eq!(
            d.line("eth0", 1472),
            "backup sync daemon (mcast=eth0, syncid=6, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)"
        );
        let kernel = include_str!("../tests/kernel/ipvsadm-daemon-6.1.txt");
        assert!(kernel.contains(&d.line("eth0", 1472)));
    }

    #[test]
    fn fwmark_services_and_groups() {
        assert_eq!(
            p("-A -f 1 -s rr -p 60").unwrap(),
            Command::AddService {
                key: SvcKey::Mark { mark: 1, v6: false },
                opts: ServiceOpts {
                    sched: SchedKind::Rr,
                    persist: Some(Persistence {
                        timeout: Duration::from_secs(60),
                        netmask: Ipv4Addr::BROADCAST.into(),
                    }),
                    ..Default::default()
                }
            }
        );
        let Command::AddService { opts, .. } = p("-A -f 2 -6 -p -M 64").unwrap() else {
            panic!()
        };
        assert_eq!(
            opts.persist.unwrap().netmask,
            "ffff:ffff:ffff:ffff::".parse::<IpAddr>().unwrap()
        );
        // A fwmark realserver keeps the port it is given, 0 if none, whatever the method.
        for (line, port) in [
            ("-a -f 1 -r 10.1.0.2 -m", 0),
            ("-a -f 1 -r 10.1.0.2 -g", 0),
            ("-a -f 1 -r 10.1.0.2:8080 -m", 8080),
        ] {
            let Command::AddDest { dest, .. } = p(line).unwrap() else {
                panic!()
            };
            assert_eq!(dest.port, port, "{line}");
        }
        assert_eq!(
            p("-a -f 1 -6 -r 10.1.0.2 -m").unwrap_err().msg,
            "real server address family differs from the virtual service's"
        );
        assert_eq!(
            p("--add-mark -f 1 -t 192.0.2.1:8000-8099").unwrap(),
            Command::AddMark {
                mark: 1,
                member: MarkMember {
                    proto: Proto::Tcp,
                    addr: "192.0.2.1".parse().unwrap(),
                    lo: 8000,
                    hi: 8099
                }
            }
        );
        let Command::DelMark { member, .. } = p("--delete-mark -f 1 -u [2001:db8::1]:53").unwrap()
        else {
            panic!()
        };
        assert_eq!((member.lo, member.hi), (53, 53));
        assert_eq!(member.to_string(), "-u [2001:db8::1]:53");
        assert_eq!(
            p("-A -f 0").unwrap_err(),
            CmdError::usage("invalid fwmark value `0' specified")
        );
        assert_eq!(
            p("-A -t 10.0.0.1:80 -6").unwrap_err(),
            CmdError::usage("-6 used before -f")
        );
        assert_eq!(
            p("-A -t 10.0.0.1:80 -f 1").unwrap_err(),
            CmdError::usage("multiple service options specified")
        );
        for bad in ["192.0.2.1:90-80", "192.0.2.1:0", "192.0.2.1", "bogus:80"] {
            assert_eq!(
                p(&format!("--add-mark -f 1 -t {bad}")).unwrap_err(),
                CmdError::usage("illegal fwmark group address:port[-port] specified"),
                "{bad}"
            );
        }
    }

    #[test]
    fn table_commands_print_as_rules_that_parse_back() {
        for line in [
            "-A -t 10.0.0.1:80 -s sh -b sh-port -p 60 -M 255.255.255.0 --sorry-server 10.1.0.9:80 -m",
            "-E -f 3 -6 -s mh -b mh-fallback",
            "-D -u [2001:db8::1]:53",
            "-C",
            "-a -f 3 -r 10.1.0.2:0 -g -w 0 -x 10 -y 5",
            "-e -t 10.0.0.1:80 -r 10.1.0.2:8080 -m -w 7",
            "-d -t 10.0.0.1:80 -r 10.1.0.2:8080",
            "--add-mark -f 3 -u 10.0.0.1:5000-5010",
            "--delete-mark -f 3 -t 10.0.0.1:80",
            "--set 900 120 300",
        ] {
            let c = p(line).unwrap();
            assert_eq!(c.to_string(), line);
            assert_eq!(p(&c.to_string()).unwrap(), c);
        }
    }

    #[test]
    fn rules_file() {
        let text = "# saved\n-A -t 192.0.2.100:80 -s rr\n\n-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m -w 1\n";
        let cmds = parse_rules(text).unwrap();
        assert_eq!(cmds.len(), 2);
        let bad = "-A -t 192.0.2.100:80 -s rr\n-a -t 192.0.2.100:80 -r 10.10.0.300:80 -m\n";
        let e = parse_rules(bad).unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(
            e.to_string(),
            "line 2: illegal real server address[:port] specified"
        );
        assert_eq!(parse_rules("-L -n\n").unwrap_err().line, 1);
    }
}
