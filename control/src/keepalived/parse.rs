//! keepalived.conf's blocks to the model: a tree of statements, then `global_defs`,
//! `virtual_server_group` and `virtual_server` read into settings that keep "not given" apart
//! from a value (keepalived's inheritance needs it), then each virtual server resolved into
//! commands and health specs with keepalived's defaults (`check_data.c`'s
//! `validate_check_config`, the checkers' `*_handler`s).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use xlvs_dataplane::core::sched::{SchedFlags, SchedKind};
use xlvs_dataplane::core::service::{Fwd, Persistence, Proto, VsKey};

use super::lexer::{Item, Lexed, Tok, split_quoted_escaped};
use super::{ConfError, ConfWarning, Config};
use crate::command::{Command, DestSpec, MAX_WEIGHT, ServiceOpts, SvcKey, same_family};
use crate::health::spec::{
    CheckKind, CheckSpec, RealSpec, Script, ScriptDefaults, ServiceSpec, Url,
};

/// keepalived's `KEEPALIVED_DEFAULT_DELAY`: `delay_loop`.
pub const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);
/// keepalived's default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// keepalived's `IPVS_SVC_PERSISTENT_TIMEOUT` (6 minutes, not ipvsadm's 300 s): a
/// `persistence_timeout` without a value, or a `persistence_granularity` alone.
pub const DEFAULT_PERSISTENCE_TIMEOUT: u32 = 360;
/// keepalived's `LVS_MAX_TIMEOUT` (31 days): the largest persistence and `lvs_timeouts` value.
const MAX_TIMEOUT: u32 = 86400 * 31;
/// The most IPVS services one `virtual_server_group` may expand to here.
const MAX_GROUP_SERVICES: u128 = 65536;

/// A statement and its block, if it has one.
#[derive(Debug)]
struct Node {
    words: Vec<String>,
    raw: String,
    file: usize,
    line: usize,
    block: Option<Vec<Node>>,
}

impl Node {
    fn kw(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }
}

/// Builds the statement tree; unbalanced braces are errors.
fn tree(items: Vec<Item>, files: &[PathBuf]) -> Result<Vec<Node>, ConfError> {
    let err = |file: usize, line: usize, msg: String| ConfError {
        file: files.get(file).cloned().unwrap_or_default(),
        line,
        msg,
    };
    // Each frame: the statements of a block, and the statement that opened it.
    let mut stack: Vec<(Vec<Node>, Option<Node>)> = vec![(Vec::new(), None)];
    let mut last_was_words = false;
    for it in items {
        let words_now = matches!(it.tok, Tok::Words { .. });
        match it.tok {
            Tok::Words { words, raw } => {
                if let Some(top) = stack.last_mut() {
                    top.0.push(Node {
                        words,
                        raw,
                        file: it.file,
                        line: it.line,
                        block: None,
                    });
                }
            }
            Tok::Open => {
                let opener = match stack.last_mut() {
                    Some(top) if last_was_words => top.0.pop(),
                    _ => None,
                };
                let Some(opener) = opener else {
                    return Err(err(
                        it.file,
                        it.line,
                        "'{' without a keyword before it".into(),
                    ));
                };
                stack.push((Vec::new(), Some(opener)));
            }
            Tok::Close => {
                if stack.len() < 2 {
                    return Err(err(
                        it.file,
                        it.line,
                        "unbalanced '}' (no block is open)".into(),
                    ));
                }
                if let Some((children, Some(mut opener))) = stack.pop() {
                    opener.block = Some(children);
                    if let Some(top) = stack.last_mut() {
                        top.0.push(opener);
                    }
                }
            }
        }
        last_was_words = words_now;
    }
    if stack.len() > 1
        && let Some((_, Some(open))) = stack.pop()
    {
        return Err(err(
            open.file,
            open.line,
            format!("`{}` block is never closed (missing '}}')", open.kw()),
        ));
    }
    Ok(stack.pop().map(|f| f.0).unwrap_or_default())
}

/// The resolved config of a lexed file.
pub(crate) fn parse(lexed: Lexed) -> Result<Config, ConfError> {
    let Lexed {
        files,
        items,
        notes,
    } = lexed;
    let nodes = tree(items, &files)?;
    let mut p = P {
        files,
        warnings: Vec::new(),
    };
    for (file, line, msg) in notes {
        p.warnings.push(ConfWarning {
            file: p.files.get(file).cloned().unwrap_or_default(),
            line,
            msg,
        });
    }
    let mut cfg = Config {
        commands: Vec::new(),
        services: Vec::new(),
        scripts: ScriptDefaults::default(),
        sync_daemons: Vec::new(),
        warnings: Vec::new(),
    };
    let mut sync_daemon: Option<(SyncDaemonConf, usize, usize)> = None;
    let mut groups: HashMap<String, Group> = HashMap::new();
    let mut vss = Vec::new();
    for n in &nodes {
        match n.kw() {
            "global_defs" => {
                if let Some(s) = p.global_defs(n, &mut cfg)? {
                    sync_daemon = Some(s);
                }
            }
            "virtual_server_group" => {
                let name = p.arg(n, 1)?.to_string();
                if let Some(g) = groups.get(&name) {
                    let at = p.at(g.file, g.line);
                    return Err(p.err(
                        n,
                        format!("virtual_server_group {name} is already defined at {at}"),
                    ));
                }
                let g = p.group(n)?;
                groups.insert(name, g);
            }
            "virtual_server" => vss.push(p.virtual_server(n)?),
            // vrrp_*, static_*, SSL, track_file, … belong to other keepalived processes or
            // to checkers xlvs does not run: skipped whole.
            _ => {}
        }
    }
    if let Some((sd, file, line)) = sync_daemon {
        cfg.sync_daemons = p.sync_daemons(sd, (file, line), &nodes);
    }
    let mut seen: HashMap<SvcKey, (usize, usize)> = HashMap::new();
    for vs in vss {
        p.build(vs, &groups, &mut seen, &mut cfg)?;
    }
    cfg.warnings = p.warnings;
    Ok(cfg)
}

/// `lvs_sync_daemon` as given.
#[derive(Clone, Debug)]
struct SyncDaemonConf {
    ifname: String,
    instance: String,
    syncid: Option<u8>,
    maxlen: Option<u16>,
    port: Option<u16>,
    ttl: Option<u8>,
    group: Option<IpAddr>,
}

/// Check timing settings as given at one level (virtual server, real server, checker).
#[derive(Clone, Debug, Default)]
struct Timing {
    connect_timeout: Option<Duration>,
    delay_loop: Option<Duration>,
    retry: Option<u32>,
    delay_before_retry: Option<Duration>,
    warmup: Option<Duration>,
    alpha: Option<bool>,
}

#[derive(Debug)]
enum Target {
    Addr(IpAddr, u16),
    Mark(u32),
    Group(String),
}

#[derive(Debug)]
struct VsConf {
    target: Target,
    file: usize,
    line: usize,
    sched: Option<SchedKind>,
    /// Scheduler flag keywords with their lines, checked once the scheduler is known.
    flags: Vec<(String, usize, usize)>,
    fwd: Option<Fwd>,
    persistence_timeout: Option<u32>,
    /// `persistence_granularity`'s value and line, read once the family is known.
    granularity: Option<(String, usize, usize)>,
    proto: Option<Proto>,
    /// `ip_family`: Some(true) for inet6.
    v6: Option<bool>,
    sorry: Option<(IpAddr, u16)>,
    sorry_fwd: Option<Fwd>,
    sorry_inhibit: bool,
    quorum: u32,
    hysteresis: u32,
    quorum_up: Option<Script>,
    quorum_down: Option<Script>,
    omega: bool,
    inhibit: bool,
    weight: u32,
    virtualhost: Option<String>,
    timing: Timing,
    reals: Vec<RsConf>,
}

#[derive(Debug)]
struct RsConf {
    addr: IpAddr,
    /// As written; 0 when omitted.
    port: u16,
    file: usize,
    line: usize,
    weight: Option<u32>,
    fwd: Option<Fwd>,
    u_threshold: u32,
    l_threshold: u32,
    inhibit: Option<bool>,
    notify_up: Option<Script>,
    notify_down: Option<Script>,
    virtualhost: Option<String>,
    timing: Timing,
    checkers: Vec<CkConf>,
}

#[derive(Debug)]
struct CkConf {
    /// What it checks, as parsed (a MISC_CHECK without `misc_path` has an empty argv until
    /// checked; an HTTP virtualhost not yet inherited).
    kind: CheckKind,
    file: usize,
    line: usize,
    connect_ip: Option<IpAddr>,
    connect_port: Option<u16>,
    bindto: Option<IpAddr>,
    bind_port: Option<u16>,
    bind_if: Option<String>,
    fwmark: Option<u32>,
    timing: Timing,
}

/// One entry of a `virtual_server_group`.
#[derive(Debug)]
enum Member {
    /// Addresses `lo..=hi` on `port`.
    Range {
        lo: IpAddr,
        hi: IpAddr,
        port: u16,
        file: usize,
        line: usize,
    },
    /// `fwmark N [inet|inet6]`.
    Mark {
        mark: u32,
        v6: Option<bool>,
        file: usize,
        line: usize,
    },
}

#[derive(Debug)]
struct Group {
    members: Vec<Member>,
    file: usize,
    line: usize,
}

/// The parser's state: file names for messages, and the warnings so far.
struct P {
    files: Vec<PathBuf>,
    warnings: Vec<ConfWarning>,
}

impl P {
    fn file(&self, f: usize) -> PathBuf {
        self.files.get(f).cloned().unwrap_or_default()
    }

    fn at(&self, f: usize, line: usize) -> String {
        format!("{}:{line}", self.file(f).display())
    }

    fn err(&self, n: &Node, msg: impl Into<String>) -> ConfError {
        self.err_at(n.file, n.line, msg)
    }

    fn err_at(&self, file: usize, line: usize, msg: impl Into<String>) -> ConfError {
        ConfError {
            file: self.file(file),
            line,
            msg: msg.into(),
        }
    }

    fn warn(&mut self, n: &Node, msg: impl Into<String>) {
        self.warn_at(n.file, n.line, msg);
    }

    fn warn_at(&mut self, file: usize, line: usize, msg: impl Into<String>) {
        self.warnings.push(ConfWarning {
            file: self.file(file),
            line,
            msg: msg.into(),
        });
    }

    fn unknown(&mut self, n: &Node, within: &str) {
        let msg = if n.block.is_some() {
            format!(
                "unknown keyword `{}` in {within} (its block is skipped)",
                n.kw()
            )
        } else {
            format!("unknown keyword `{}` in {within} (ignored)", n.kw())
        };
        self.warn(n, msg);
    }

    fn arg<'n>(&self, n: &'n Node, i: usize) -> Result<&'n str, ConfError> {
        n.words
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| self.err(n, format!("`{}`: missing value", n.kw())))
    }

    fn no_block(&self, n: &Node) -> Result<(), ConfError> {
        match n.block {
            Some(_) => Err(self.err(n, format!("`{}` takes no {{ }} block", n.kw()))),
            None => Ok(()),
        }
    }

    fn u32_in(&self, n: &Node, i: usize, min: u32, max: u32) -> Result<u32, ConfError> {
        let s = self.arg(n, i)?;
        match s.parse::<u32>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(self.err(
                n,
                format!("`{}`: `{s}' is not a number in {min}..{max}", n.kw()),
            )),
        }
    }

    fn port(&self, n: &Node, i: usize) -> Result<u16, ConfError> {
        Ok(self.u32_in(n, i, 0, 65535)? as u16)
    }

    /// An optional port argument (keepalived takes any run of zeros as "no port").
    fn opt_port(&self, n: &Node, i: usize) -> Result<u16, ConfError> {
        if n.words.len() > i {
            self.port(n, i)
        } else {
            Ok(0)
        }
    }

    fn ip(&self, n: &Node, i: usize) -> Result<IpAddr, ConfError> {
        let s = self.arg(n, i)?;
        s.parse()
            .map_err(|_| self.err(n, format!("`{}`: `{s}' is not an IP address", n.kw())))
    }

    /// A keepalived TIMER: seconds with up to 6 decimals.
    fn timer(&self, n: &Node, i: usize, zero_ok: bool) -> Result<Duration, ConfError> {
        let s = self.arg(n, i)?;
        let bad = || self.err(n, format!("`{}`: `{s}' is not a time in seconds", n.kw()));
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() && frac.is_empty() || frac.len() > 6 {
            return Err(bad());
        }
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || !digits(frac) {
            return Err(bad());
        }
        let secs: u64 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let micros: u32 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}").parse().map_err(|_| bad())?
        };
        let d = Duration::new(secs, micros * 1000);
        if d.is_zero() && !zero_ok {
            return Err(self.err(n, format!("`{}`: must be more than 0", n.kw())));
        }
        if secs > u64::from(u32::MAX) {
            return Err(bad());
        }
        Ok(d)
    }

    /// keepalived's optional BOOL (`on|true|yes|off|false|no`); no argument means true.
    fn opt_bool(&self, n: &Node) -> Result<bool, ConfError> {
        match n.words.get(1).map(String::as_str) {
            None | Some("on" | "true" | "yes") => Ok(true),
            Some("off" | "false" | "no") => Ok(false),
            Some(o) => Err(self.err(n, format!("`{}`: `{o}' is not a boolean", n.kw()))),
        }
    }

    /// `notify_up`, `quorum_down`, …: `SCRIPT|"SCRIPT ARGS" [USER [GROUP]]`, split again with
    /// keepalived's quoting and escapes.
    fn script(&self, n: &Node, with_user: bool) -> Result<Script, ConfError> {
        let words =
            split_quoted_escaped(&n.raw).map_err(|m| self.err(n, format!("`{}`: {m}", n.kw())))?;
        let cmd = words
            .get(1)
            .ok_or_else(|| self.err(n, format!("`{}`: missing script", n.kw())))?;
        let argv =
            split_quoted_escaped(cmd).map_err(|m| self.err(n, format!("`{}`: {m}", n.kw())))?;
        if argv.is_empty() {
            return Err(self.err(n, format!("`{}`: empty script", n.kw())));
        }
        let user = match (with_user, words.get(2)) {
            (true, Some(u)) => Some((u.clone(), words.get(3).cloned())),
            _ => None,
        };
        Ok(Script { argv, user })
    }

    /// `lb_kind`, `lvs_method`, `sorry_server_lvs_method`.
    fn fwd(&self, n: &Node) -> Result<Fwd, ConfError> {
        match self.arg(n, 1)? {
            "NAT" => Ok(Fwd::Masq),
            "DR" => Ok(Fwd::Route),
            "TUN" => Err(self.err(
                n,
                format!("{} TUN is not supported (no tunnelling yet)", n.kw()),
            )),
            o => Err(self.err(
                n,
                format!("{}: unknown forwarding method `{o}' (NAT or DR)", n.kw()),
            )),
        }
    }

    /// The timing keywords every level shares; false if `n` is not one of them.
    fn timing(&self, n: &Node, t: &mut Timing, retry_min: u32) -> Result<bool, ConfError> {
        match n.kw() {
            "connect_timeout" => t.connect_timeout = Some(self.timer(n, 1, false)?),
            "delay_loop" => t.delay_loop = Some(self.timer(n, 1, false)?),
            "delay_before_retry" => t.delay_before_retry = Some(self.timer(n, 1, true)?),
            "warmup" => t.warmup = Some(self.timer(n, 1, true)?),
            "retry" => t.retry = Some(self.u32_in(n, 1, retry_min, u32::MAX)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn global_defs(
        &mut self,
        n: &Node,
        cfg: &mut Config,
    ) -> Result<Option<(SyncDaemonConf, usize, usize)>, ConfError> {
        let mut sync = None;
        for c in n.block.iter().flatten() {
            match c.kw() {
                "script_user" => {
                    let user = self.arg(c, 1)?.to_string();
                    cfg.scripts.script_user = Some((user, c.words.get(2).cloned()));
                }
                "enable_script_security" => cfg.scripts.enable_script_security = true,
                "lvs_timeouts" => {
                    let (mut tcp, mut tcpfin, mut udp) = (0, 0, 0);
                    if c.words.len() < 3 {
                        return Err(self.err(c, "`lvs_timeouts`: needs tcp, tcpfin or udp N"));
                    }
                    let mut i = 1;
                    while i < c.words.len() {
                        let v = self.u32_in(c, i + 1, 0, MAX_TIMEOUT)?;
                        match c.words[i].as_str() {
                            "tcp" => tcp = v,
                            "tcpfin" => tcpfin = v,
                            "udp" => udp = v,
                            o => {
                                return Err(
                                    self.err(c, format!("`lvs_timeouts`: unknown option `{o}'"))
                                );
                            }
                        }
                        i += 2;
                    }
                    cfg.commands.push(Command::SetTimeouts { tcp, tcpfin, udp });
                }
                "lvs_sync_daemon" => {
                    if let Some(sd) = self.lvs_sync_daemon(c) {
                        sync = Some((sd, c.file, c.line));
                    }
                }
                // Everything else in global_defs (router_id, notification_email, vrrp_*,
                // …) concerns keepalived itself or its VRRP side.
                _ => {}
            }
        }
        Ok(sync)
    }

    /// `lvs_sync_daemon IF VRRP_INSTANCE [id N] [maxlen L] [port P] [ttl T] [group G]`, as
    /// keepalived reads it (`lvs_syncd_handler`): a bad value is reported and ignored, the
    /// old form with the sync id third is accepted with a warning.
    fn lvs_sync_daemon(&mut self, c: &Node) -> Option<SyncDaemonConf> {
        let w = &c.words;
        if w.len() < 3 {
            self.warn(
                c,
                "lvs_sync_daemon requires interface, VRRP instance: ignored",
            );
            return None;
        }
        let mut sd = SyncDaemonConf {
            ifname: w[1].clone(),
            instance: w[2].clone(),
            syncid: None,
            maxlen: None,
            port: None,
            ttl: None,
            group: None,
        };
        let mut i = 3;
        if w.len() >= 4 && w[3].starts_with(|ch: char| ch.is_ascii_digit()) {
            self.warn(
                c,
                "Please use keyword \"id\" before lvs_sync_daemon syncid value",
            );
            sd.syncid = w[3].parse::<u8>().ok();
            i = 4;
        }
        while i < w.len() {
            let key = w[i].as_str();
            if !["id", "maxlen", "port", "ttl", "group"].contains(&key) {
                self.warn(
                    c,
                    format!("Unknown option {key} specified for lvs_sync_daemon"),
                );
                i += 1;
                continue;
            }
            let Some(v) = w.get(i + 1) else {
                self.warn(c, format!("No value specified for lvs_sync_daemon {key}"));
                break;
            };
            let bad =
                |p: &mut Self| p.warn(c, format!("Invalid lvs_sync_daemon {key} ({v}) - ignoring"));
            match key {
                "id" => match v.parse::<u8>() {
                    Ok(n) => sd.syncid = Some(n),
                    Err(_) => bad(self),
                },
                "maxlen" => match v.parse::<u16>() {
                    Ok(n) if n >= 1 && n as u32 <= 65535 - 20 - 8 => sd.maxlen = Some(n),
                    _ => bad(self),
                },
                "port" => match v.parse::<u16>() {
                    Ok(n) if n > 0 => sd.port = Some(n),
                    _ => bad(self),
                },
                "ttl" => match v.parse::<u8>() {
                    Ok(n) if n > 0 => sd.ttl = Some(n),
                    _ => bad(self),
                },
                "group" => match v.parse::<IpAddr>() {
                    Ok(g) if g.is_multicast() => sd.group = Some(g),
                    _ => bad(self),
                },
                _ => bad(self),
            }
            i += 2;
        }
        Some(sd)
    }

    /// The daemons of `lvs_sync_daemon`: its VRRP instance must exist (keepalived clears
    /// the setting otherwise), and gives the sync id if none is set.
    fn sync_daemons(
        &mut self,
        sd: SyncDaemonConf,
        (file, line): (usize, usize),
        nodes: &[Node],
    ) -> Vec<crate::command::DaemonSpec> {
        use crate::command::{DaemonSpec, SyncRole};
        let inst = nodes
            .iter()
            .find(|n| n.kw() == "vrrp_instance" && n.words.get(1) == Some(&sd.instance));
        let Some(inst) = inst else {
            self.warn_at(
                file,
                line,
                format!(
                    "Unable to find vrrp instance {} for lvs_syncd - lvs_sync_daemon ignored",
                    sd.instance
                ),
            );
            return Vec::new();
        };
        let vrid = inst
            .block
            .iter()
            .flatten()
            .find(|c| c.kw() == "virtual_router_id")
            .and_then(|c| c.words.get(1))
            .and_then(|v| v.parse::<u8>().ok());
        let syncid = sd.syncid.or(vrid).unwrap_or(0);
        [SyncRole::Master, SyncRole::Backup]
            .into_iter()
            .map(|role| DaemonSpec {
                ifname: Some(sd.ifname.clone()),
                syncid,
                maxlen: sd.maxlen,
                group: sd.group,
                port: sd.port.unwrap_or(DaemonSpec::PORT),
                ttl: sd.ttl.unwrap_or(1),
                ..DaemonSpec::new(role)
            })
            .collect()
    }

    fn group(&mut self, n: &Node) -> Result<Group, ConfError> {
        let Some(block) = &n.block else {
            return Err(self.err(n, "`virtual_server_group` needs a { } block"));
        };
        let mut members = Vec::new();
        for e in block {
            self.no_block(e)?;
            if e.kw() == "fwmark" {
                let mark = self.u32_in(e, 1, 1, u32::MAX)?;
                let v6 = match e.words.get(2).map(String::as_str) {
                    None => None,
                    Some("inet") => Some(false),
                    Some("inet6") => Some(true),
                    Some(o) => {
                        return Err(self.err(e, format!("fwmark {mark}: unknown family `{o}'")));
                    }
                };
                members.push(Member::Mark {
                    mark,
                    v6,
                    file: e.file,
                    line: e.line,
                });
                continue;
            }
            let (lo, hi) = self.range(e)?;
            let port = self.opt_port(e, 1)?;
            members.push(Member::Range {
                lo,
                hi,
                port,
                file: e.file,
                line: e.line,
            });
        }
        if members.is_empty() {
            return Err(self.err(n, "virtual_server_group has no entries"));
        }
        Ok(Group {
            members,
            file: n.file,
            line: n.line,
        })
    }

    /// A group entry's addresses: `IP`, `IP-LAST` (last octet, or last 16-bit group in hex
    /// for IPv6), `IP-IP`, or `IP/LEN`.
    fn range(&self, e: &Node) -> Result<(IpAddr, IpAddr), ConfError> {
        let s = e.kw();
        let bad = |why: &str| self.err(e, format!("virtual_server_group entry `{s}': {why}"));
        let parse = |t: &str| t.parse::<IpAddr>().map_err(|_| bad("not an IP address"));
        if let Some((a, len)) = s.split_once('/') {
            let lo = parse(a)?;
            let bits = if lo.is_ipv4() { 32 } else { 128 };
            let len: u32 = len.parse().map_err(|_| bad("bad prefix length"))?;
            if len == 0 || len > bits {
                return Err(bad("bad prefix length"));
            }
            let host = if len == bits {
                0
            } else {
                (u128::MAX >> (128 - bits)) >> len
            };
            let base = ip_bits(lo);
            if base & host != 0 {
                return Err(bad("address has host bits set"));
            }
            return Ok((lo, bits_ip(lo, base | host)));
        }
        let Some((a, end)) = s.split_once('-') else {
            return Ok((parse(s)?, parse(s)?));
        };
        let lo = parse(a)?;
        let hi = if (lo.is_ipv4() && end.contains('.')) || (lo.is_ipv6() && end.contains(':')) {
            parse(end)?
        } else {
            let (v, keep) = if lo.is_ipv4() {
                (end.parse::<u128>().ok().filter(|v| *v <= 255), !0xffu128)
            } else {
                (
                    u128::from_str_radix(end, 16).ok().filter(|v| *v <= 0xffff),
                    !0xffffu128,
                )
            };
            let v = v.ok_or_else(|| bad("bad range end"))?;
            bits_ip(lo, ip_bits(lo) & keep | v)
        };
        if lo.is_ipv4() != hi.is_ipv4() {
            return Err(bad("range ends of different families"));
        }
        if ip_bits(hi) < ip_bits(lo) {
            return Err(bad("range end is below its start"));
        }
        Ok((lo, hi))
    }

    fn virtual_server(&mut self, n: &Node) -> Result<VsConf, ConfError> {
        let target = match self.arg(n, 1)? {
            "group" => Target::Group(self.arg(n, 2)?.to_string()),
            "fwmark" => Target::Mark(self.u32_in(n, 2, 1, u32::MAX)?),
            _ => Target::Addr(self.ip(n, 1)?, self.opt_port(n, 2)?),
        };
        let mut vs = VsConf {
            target,
            file: n.file,
            line: n.line,
            sched: None,
            flags: Vec::new(),
            fwd: None,
            persistence_timeout: None,
            granularity: None,
            proto: None,
            v6: None,
            sorry: None,
            sorry_fwd: None,
            sorry_inhibit: false,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            omega: false,
            inhibit: false,
            weight: 1,
            virtualhost: None,
            timing: Timing::default(),
            reals: Vec::new(),
        };
        let Some(block) = &n.block else {
            return Err(self.err(n, "`virtual_server` needs a { } block"));
        };
        for c in block {
            if c.kw() == "real_server" {
                vs.reals.push(self.real_server(c)?);
                continue;
            }
            if c.block.is_some() {
                self.unknown(c, "virtual_server");
                continue;
            }
            if self.timing(c, &mut vs.timing, 1)? {
                continue;
            }
            match c.kw() {
                "lb_algo" | "lvs_sched" => {
                    let name = self.arg(c, 1)?;
                    vs.sched = Some(SchedKind::from_name(name).ok_or_else(|| {
                        let msg = match name {
                            "lblc" | "lblcr" | "dh" | "fo" | "ovf" | "twos" => format!(
                                "{} {name}: scheduler not supported by xlvs (rr wrr lc wlc sed nq sh mh)",
                                c.kw()
                            ),
                            _ => format!("{}: unknown scheduler `{name}'", c.kw()),
                        };
                        self.err(c, msg)
                    })?);
                }
                "lb_kind" | "lvs_method" => vs.fwd = Some(self.fwd(c)?),
                "flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback" | "mh-port"
                | "mh-fallback" => vs.flags.push((c.kw().to_string(), c.file, c.line)),
                "hashed" => {}
                "ops" => self.warn(c, "`ops` (one-packet scheduling) is not supported; ignored"),
                "persistence_timeout" => {
                    vs.persistence_timeout = Some(if c.words.len() < 2 {
                        DEFAULT_PERSISTENCE_TIMEOUT
                    } else {
                        self.u32_in(c, 1, 1, MAX_TIMEOUT)?
                    });
                }
                "persistence_granularity" => {
                    vs.granularity = Some((self.arg(c, 1)?.to_string(), c.file, c.line));
                }
                "persistence_engine" => {
                    self.warn(c, "`persistence_engine` is not supported; ignored");
                }
                "protocol" => {
                    vs.proto = Some(match self.arg(c, 1)?.to_ascii_uppercase().as_str() {
                        "TCP" => Proto::Tcp,
                        "UDP" => Proto::Udp,
                        "SCTP" => return Err(self.err(c, "protocol SCTP is not supported")),
                        o => return Err(self.err(c, format!("protocol: unknown `{o}'"))),
                    });
                }
                "ip_family" => {
                    let v6 = match self.arg(c, 1)? {
                        "inet" => false,
                        "inet6" => true,
                        o => return Err(self.err(c, format!("ip_family: unknown `{o}'"))),
                    };
                    if let Target::Addr(a, _) = vs.target
                        && a.is_ipv6() != v6
                    {
                        return Err(
                            self.err(c, "ip_family conflicts with the virtual server's address")
                        );
                    }
                    vs.v6 = Some(v6);
                }
                "sorry_server" => vs.sorry = Some((self.ip(c, 1)?, self.opt_port(c, 2)?)),
                "sorry_server_inhibit" => vs.sorry_inhibit = true,
                "sorry_server_lvs_method" => vs.sorry_fwd = Some(self.fwd(c)?),
                "quorum" => vs.quorum = self.u32_in(c, 1, 1, u32::MAX)?,
                "hysteresis" => vs.hysteresis = self.u32_in(c, 1, 0, u32::MAX)?,
                "quorum_up" => vs.quorum_up = Some(self.script(c, true)?),
                "quorum_down" => vs.quorum_down = Some(self.script(c, true)?),
                "alpha" => vs.timing.alpha = Some(true),
                "omega" => vs.omega = true,
                "inhibit_on_failure" => vs.inhibit = true,
                "weight" => vs.weight = self.u32_in(c, 1, 1, MAX_WEIGHT)?,
                "virtualhost" => vs.virtualhost = Some(self.arg(c, 1)?.to_string()),
                "ha_suspend" | "smtp_alert" | "snmp_name" => {}
                _ => self.unknown(c, "virtual_server"),
            }
        }
        Ok(vs)
    }

    fn real_server(&mut self, n: &Node) -> Result<RsConf, ConfError> {
        let mut rs = RsConf {
            addr: self.ip(n, 1)?,
            port: self.opt_port(n, 2)?,
            file: n.file,
            line: n.line,
            weight: None,
            fwd: None,
            u_threshold: 0,
            l_threshold: 0,
            inhibit: None,
            notify_up: None,
            notify_down: None,
            virtualhost: None,
            timing: Timing::default(),
            checkers: Vec::new(),
        };
        for c in n.block.iter().flatten() {
            match c.kw() {
                "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "DNS_CHECK" | "MISC_CHECK" | "UDP_CHECK"
                | "PING_CHECK" => {
                    if let Some(ck) = self.checker(c)? {
                        rs.checkers.push(ck);
                    }
                    continue;
                }
                "SMTP_CHECK" | "BFD_CHECK" | "FILE_CHECK" => {
                    return Err(self.err(c, format!("{} is not supported by xlvs", c.kw())));
                }
                _ => {}
            }
            if c.block.is_some() {
                self.unknown(c, "real_server");
                continue;
            }
            if self.timing(c, &mut rs.timing, 1)? {
                continue;
            }
            match c.kw() {
                "weight" => rs.weight = Some(self.u32_in(c, 1, 0, MAX_WEIGHT)?),
                "lvs_method" => rs.fwd = Some(self.fwd(c)?),
                "uthreshold" => rs.u_threshold = self.u32_in(c, 1, 0, u32::MAX)?,
                "lthreshold" => rs.l_threshold = self.u32_in(c, 1, 0, u32::MAX)?,
                "inhibit_on_failure" => rs.inhibit = Some(self.opt_bool(c)?),
                "alpha" => rs.timing.alpha = Some(self.opt_bool(c)?),
                "notify_up" => rs.notify_up = Some(self.script(c, true)?),
                "notify_down" => rs.notify_down = Some(self.script(c, true)?),
                "virtualhost" => rs.virtualhost = Some(self.arg(c, 1)?.to_string()),
                "smtp_alert" | "snmp_name" => {}
                _ => self.unknown(c, "real_server"),
            }
        }
        Ok(rs)
    }

    /// A checker block; None for one keepalived drops (an HTTP_GET without urls).
    fn checker(&mut self, n: &Node) -> Result<Option<CkConf>, ConfError> {
        let kind = match n.kw() {
            "TCP_CHECK" => CheckKind::Tcp,
            "HTTP_GET" | "SSL_GET" => CheckKind::Http {
                tls: n.kw() == "SSL_GET",
                urls: Vec::new(),
                virtualhost: None,
                sni: false,
            },
            "DNS_CHECK" => CheckKind::Dns {
                qtype: 6,
                name: ".".into(),
            },
            "MISC_CHECK" => CheckKind::Misc {
                script: Script {
                    argv: Vec::new(),
                    user: None,
                },
                timeout: None,
                dynamic: false,
            },
            "UDP_CHECK" => CheckKind::Udp {
                payload: Vec::new(),
                require_reply: false,
                reply: None,
                reply_mask: None,
                min_reply_len: 0,
                max_reply_len: 255,
            },
            _ => CheckKind::Ping,
        };
        let is_misc = matches!(kind, CheckKind::Misc { .. });
        let mut ck = CkConf {
            kind,
            file: n.file,
            line: n.line,
            connect_ip: None,
            connect_port: None,
            bindto: None,
            bind_port: None,
            bind_if: None,
            fwmark: None,
            timing: Timing::default(),
        };
        let within = n.kw().to_string();
        for c in n.block.iter().flatten() {
            if c.kw() == "url"
                && let CheckKind::Http { urls, .. } = &mut ck.kind
            {
                if let Some(u) = self.url(c)? {
                    urls.push(u);
                }
                continue;
            }
            if c.block.is_some() {
                self.unknown(c, &within);
                continue;
            }
            let connection = !is_misc
                && matches!(
                    c.kw(),
                    "connect_ip"
                        | "connect_port"
                        | "bindto"
                        | "bind_port"
                        | "bind_if"
                        | "connect_timeout"
                        | "fwmark"
                );
            if connection {
                match c.kw() {
                    "connect_ip" => ck.connect_ip = Some(self.ip(c, 1)?),
                    "connect_port" => ck.connect_port = Some(self.u32_in(c, 1, 1, 65535)? as u16),
                    "bindto" => ck.bindto = Some(self.ip(c, 1)?),
                    "bind_port" => ck.bind_port = Some(self.u32_in(c, 1, 1, 65535)? as u16),
                    "bind_if" => ck.bind_if = Some(self.arg(c, 1)?.to_string()),
                    "fwmark" => ck.fwmark = Some(self.u32_in(c, 1, 0, u32::MAX)?),
                    _ => ck.timing.connect_timeout = Some(self.timer(c, 1, false)?),
                }
                continue;
            }
            match c.kw() {
                "connect_timeout" => {}
                "delay_loop" | "delay_before_retry" | "warmup" | "retry" => {
                    self.timing(c, &mut ck.timing, 0)?;
                    continue;
                }
                "alpha" => {
                    ck.timing.alpha = Some(self.opt_bool(c)?);
                    continue;
                }
                "log_all_failures" => continue,
                _ => {}
            }
            match (&mut ck.kind, c.kw()) {
                (CheckKind::Http { .. }, "nb_get_retry") => {
                    ck.timing.retry = Some(self.u32_in(c, 1, 0, u32::MAX)?);
                    self.warn(c, "nb_get_retry is deprecated - please use `retry'");
                }
                (CheckKind::Http { virtualhost, .. }, "virtualhost") => {
                    *virtualhost = Some(self.arg(c, 1)?.to_string());
                }
                (CheckKind::Http { sni, .. }, "enable_sni") => *sni = self.opt_bool(c)?,
                (CheckKind::Http { .. }, "http_protocol" | "fast_recovery") => {
                    self.warn(c, format!("`{}` is not supported; ignored", c.kw()));
                }
                (CheckKind::Dns { qtype, .. }, "type") => {
                    let t = self.arg(c, 1)?;
                    *qtype = dns_type(t)
                        .ok_or_else(|| self.err(c, format!("DNS_CHECK: unknown type `{t}'")))?;
                }
                (CheckKind::Dns { name, .. }, "name") => {
                    let v = self.arg(c, 1)?;
                    if (v.starts_with('.') && v != ".") || v.contains("..") {
                        return Err(self.err(c, format!("DNS_CHECK name `{v}' has an empty label")));
                    }
                    *name = v.to_string();
                }
                (CheckKind::Misc { script, .. }, "misc_path") => {
                    let user = script.user.take();
                    *script = self.script(c, false)?;
                    script.user = user;
                }
                (CheckKind::Misc { timeout, .. }, "misc_timeout") => {
                    let t = self.u32_in(c, 1, 0, u32::MAX)?;
                    *timeout = (t > 0).then(|| Duration::from_secs(t.into()));
                }
                (CheckKind::Misc { dynamic, .. }, "misc_dynamic") => *dynamic = true,
                (CheckKind::Misc { script, .. }, "user") => {
                    script.user = Some((self.arg(c, 1)?.to_string(), c.words.get(2).cloned()));
                }
                (CheckKind::Udp { payload, .. }, "payload") => {
                    self.arg(c, 1)?;
                    *payload = self.hex(c, false)?.0;
                }
                (
                    CheckKind::Udp {
                        require_reply,
                        reply,
                        reply_mask,
                        ..
                    },
                    "require_reply",
                ) => {
                    *require_reply = true;
                    if c.words.len() > 1 {
                        let (data, mask) = self.hex(c, true)?;
                        *reply = Some(data);
                        *reply_mask = mask;
                    }
                }
                (CheckKind::Udp { min_reply_len, .. }, "min_reply_length") => {
                    *min_reply_len = self.u32_in(c, 1, 0, 65535)? as u16;
                }
                (CheckKind::Udp { max_reply_len, .. }, "max_reply_length") => {
                    *max_reply_len = self.u32_in(c, 1, 0, 65535)? as u16;
                }
                _ => self.unknown(c, &within),
            }
        }
        match &ck.kind {
            CheckKind::Http { urls, .. } if urls.is_empty() => {
                self.warn(
                    n,
                    format!("{within} has no url - checker ignored (as keepalived does)"),
                );
                return Ok(None);
            }
            CheckKind::Misc { script, .. } if script.argv.is_empty() => {
                return Err(self.err(n, "MISC_CHECK needs a misc_path"));
            }
            CheckKind::Udp {
                min_reply_len,
                max_reply_len,
                ..
            } if min_reply_len > max_reply_len => {
                self.warn(
                    n,
                    "UDP_CHECK min_reply_length > max_reply_length: it will always fail",
                );
            }
            _ => {}
        }
        if let (Some(a), Some(b)) = (ck.connect_ip, ck.bindto)
            && a.is_ipv4() != b.is_ipv4()
        {
            return Err(self.err(n, "connect_ip and bindto are of different families"));
        }
        Ok(Some(ck))
    }

    /// keepalived's `read_hex_str`: hex digits, spaces allowed between bytes (a lone digit
    /// before a space is one byte); with `wild`, `x`/`X` nibbles match anything.
    fn hex(&self, n: &Node, wild: bool) -> Result<(Vec<u8>, Option<Vec<u8>>), ConfError> {
        let s = n.words[1..].join(" ");
        let bad = || self.err(n, format!("`{}`: invalid hex string `{s}'", n.kw()));
        let nib = |c: u8| -> Option<(u8, u8)> {
            match c {
                b'x' | b'X' if wild => Some((0, 0xf)),
                _ => (c as char).to_digit(16).map(|d| (d as u8, 0)),
            }
        };
        let (mut data, mut mask) = (Vec::new(), Vec::new());
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b' ' || b[i] == b'\t' {
                i += 1;
                continue;
            }
            let (mut v, mut m) = nib(b[i]).ok_or_else(bad)?;
            i += 1;
            if i < b.len() && b[i] != b' ' && b[i] != b'\t' {
                let (v2, m2) = nib(b[i]).ok_or_else(bad)?;
                v = v << 4 | v2;
                m = m << 4 | m2;
                i += 1;
            }
            data.push(v);
            mask.push(m);
        }
        if data.is_empty() {
            return Err(bad());
        }
        let mask = mask.iter().any(|m| *m != 0).then_some(mask);
        Ok((data, mask))
    }

    /// A `url { }`; None for one without a path (keepalived drops it).
    fn url(&mut self, n: &Node) -> Result<Option<Url>, ConfError> {
        let mut u = Url {
            path: String::new(),
            digest: None,
            status: Vec::new(),
            virtualhost: None,
        };
        for c in n.block.iter().flatten() {
            if c.block.is_some() {
                self.unknown(c, "url");
                continue;
            }
            match c.kw() {
                "path" => u.path = self.arg(c, 1)?.to_string(),
                "digest" => {
                    let d = self.arg(c, 1)?;
                    if d.len() != 32 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(self.err(c, format!("digest `{d}' is not 32 hex digits")));
                    }
                    u.digest = Some(d.to_ascii_lowercase());
                }
                "status_code" => {
                    self.arg(c, 1)?;
                    for w in &c.words[1..] {
                        let (a, b) = w.split_once('-').unwrap_or((w, w));
                        let r = match (a.parse::<u16>(), b.parse::<u16>()) {
                            (Ok(a), Ok(b))
                                if (100..=599).contains(&a) && (a..=599).contains(&b) =>
                            {
                                (a, b)
                            }
                            _ => {
                                return Err(self.err(
                                    c,
                                    format!("status_code `{w}' is not a code or range in 100..599"),
                                ));
                            }
                        };
                        u.status.push(r);
                    }
                }
                "virtualhost" => u.virtualhost = Some(self.arg(c, 1)?.to_string()),
                "regex" | "regex_no_match" | "regex_options" | "regex_min_offset"
                | "regex_max_offset" | "regex_stack" => {
                    self.warn(c, format!("`{}` is not supported; ignored", c.kw()));
                }
                _ => self.unknown(c, "url"),
            }
        }
        if u.path.is_empty() {
            self.warn(n, "url has no path - ignored (as keepalived does)");
            return Ok(None);
        }
        if u.status.is_empty() {
            u.status.push((200, 299));
        }
        Ok(Some(u))
    }

    /// One virtual server's commands and specs.
    fn build(
        &mut self,
        vs: VsConf,
        groups: &HashMap<String, Group>,
        seen: &mut HashMap<SvcKey, (usize, usize)>,
        cfg: &mut Config,
    ) -> Result<(), ConfError> {
        let vs_err = |p: &P, msg: String| p.err_at(vs.file, vs.line, msg);
        let group = match &vs.target {
            Target::Group(name) => Some(groups.get(name).ok_or_else(|| {
                vs_err(self, format!("virtual_server_group {name} is not defined"))
            })?),
            _ => None,
        };
        let first_group_addr = group.and_then(|g| {
            g.members.iter().find_map(|m| match m {
                Member::Range { lo, .. } => Some(lo.is_ipv6()),
                Member::Mark { .. } => None,
            })
        });
        let v6 = match vs.target {
            Target::Addr(a, _) => a.is_ipv6(),
            _ => vs
                .v6
                .or_else(|| vs.reals.first().map(|r| r.addr.is_ipv6()))
                .or_else(|| vs.sorry.map(|s| s.0.is_ipv6()))
                .or(first_group_addr)
                .or_else(|| vs.granularity.as_ref().map(|g| !g.0.contains('.')))
                .unwrap_or(false),
        };
        let label = match &vs.target {
            Target::Addr(a, p) => SocketAddr::new(*a, *p).to_string(),
            Target::Mark(m) => format!("FWM {m}"),
            Target::Group(g) => format!("[{g}]"),
        };
        for r in &vs.reals {
            if r.addr.is_ipv6() != v6 {
                return Err(self.err_at(
                    r.file,
                    r.line,
                    format!(
                        "real_server {}: address family differs from virtual server {label}'s",
                        r.addr
                    ),
                ));
            }
        }
        if let Some((a, _)) = vs.sorry
            && a.is_ipv6() != v6
        {
            return Err(vs_err(
                self,
                format!("sorry_server {a}: address family differs from the virtual server's"),
            ));
        }
        if vs.reals.is_empty() {
            self.warn_at(
                vs.file,
                vs.line,
                format!(
                    "virtual server {label} has no real servers - ignored (as keepalived does)"
                ),
            );
            return Ok(());
        }

        // The IPVS services it makes.
        let mut keys: Vec<(SvcKey, String)> = Vec::new();
        let has_addr = match &vs.target {
            Target::Addr(..) => true,
            Target::Mark(_) => false,
            Target::Group(_) => first_group_addr.is_some(),
        };
        let proto = match vs.proto {
            Some(p) => p,
            None if has_addr => {
                self.warn_at(
                    vs.file,
                    vs.line,
                    format!("virtual server {label}: no protocol set - defaulting to UDP (as keepalived does)"),
                );
                Proto::Udp
            }
            None => Proto::Tcp,
        };
        if vs.proto.is_some() && !has_addr {
            self.warn_at(
                vs.file,
                vs.line,
                format!("virtual server {label}: protocol is ignored for a fwmark service"),
            );
        }
        match &vs.target {
            Target::Addr(a, p) => keys.push((
                SvcKey::Addr(VsKey {
                    proto,
                    addr: *a,
                    port: *p,
                }),
                label.clone(),
            )),
            Target::Mark(m) => keys.push((SvcKey::Mark { mark: *m, v6 }, label.clone())),
            Target::Group(name) => {
                for m in group.map(|g| g.members.as_slice()).unwrap_or_default() {
                    match *m {
                        Member::Range {
                            lo,
                            hi,
                            port,
                            file,
                            line,
                        } => {
                            if lo.is_ipv6() != v6 {
                                return Err(self.err_at(
                                    file,
                                    line,
                                    format!("group {name} entry {lo}: address family differs from the real servers'"),
                                ));
                            }
                            let (a, b) = (ip_bits(lo), ip_bits(hi));
                            if b - a >= MAX_GROUP_SERVICES
                                || keys.len() as u128 + (b - a) >= MAX_GROUP_SERVICES
                            {
                                return Err(self.err_at(
                                    file,
                                    line,
                                    format!(
                                        "group {name}: more than {MAX_GROUP_SERVICES} services"
                                    ),
                                ));
                            }
                            for x in a..=b {
                                let addr = bits_ip(lo, x);
                                keys.push((
                                    SvcKey::Addr(VsKey { proto, addr, port }),
                                    format!("[{name}]:{port}"),
                                ));
                            }
                        }
                        Member::Mark {
                            mark,
                            v6: fam,
                            file,
                            line,
                        } => {
                            if fam.is_some_and(|f| f != v6) {
                                return Err(self.err_at(
                                    file,
                                    line,
                                    format!("group {name} fwmark {mark}: family differs from the real servers'"),
                                ));
                            }
                            keys.push((SvcKey::Mark { mark, v6 }, format!("[{name}]:0")));
                        }
                    }
                }
            }
        }

        let sched = vs.sched.unwrap_or_else(|| {
            self.warn_at(
                vs.file,
                vs.line,
                format!("virtual server {label}: no lb_algo set - using wlc"),
            );
            SchedKind::Wlc
        });
        let mut flags = SchedFlags::default();
        for (f, file, line) in &vs.flags {
            let (owner, which) = match f.as_str() {
                "flag-1" => (None, 1),
                "flag-2" => (None, 2),
                "flag-3" => (None, 3),
                "sh-fallback" => (Some(SchedKind::Sh), 1),
                "sh-port" => (Some(SchedKind::Sh), 2),
                "mh-fallback" => (Some(SchedKind::Mh), 1),
                _ => (Some(SchedKind::Mh), 2),
            };
            if owner.is_some_and(|o| o != sched) {
                self.warn_at(
                    *file,
                    *line,
                    format!(
                        "{f} only applies to the {} scheduler - ignored",
                        owner.map_or("", SchedKind::name)
                    ),
                );
                continue;
            }
            match which {
                1 => flags.flag1 = true,
                2 => flags.flag2 = true,
                _ => flags.flag3 = true,
            }
        }
        let needs_default_fwd = vs.reals.iter().any(|r| r.fwd.is_none())
            || (vs.sorry.is_some() && vs.sorry_fwd.is_none());
        let fwd = match vs.fwd {
            Some(f) => f,
            None => {
                if needs_default_fwd {
                    self.warn_at(
                        vs.file,
                        vs.line,
                        format!("virtual server {label}: no lb_kind set - using NAT"),
                    );
                }
                Fwd::Masq
            }
        };
        let netmask = match &vs.granularity {
            None => None,
            Some((g, file, line)) => {
                Some(if v6 {
                    match g.parse::<u32>() {
                    Ok(len @ 1..=128) => IpAddr::V6(Ipv6Addr::from_bits(u128::MAX << (128 - len))),
                    _ => return Err(self.err_at(*file, *line, format!("persistence_granularity `{g}' is not an IPv6 prefix length (1..128)"))),
                }
                } else {
                    match g.parse::<Ipv4Addr>() {
                        Ok(m) => IpAddr::V4(m),
                        Err(_) => {
                            return Err(self.err_at(
                                *file,
                                *line,
                                format!("persistence_granularity `{g}' is not an IPv4 netmask"),
                            ));
                        }
                    }
                })
            }
        };
        let persist = match (vs.persistence_timeout, netmask) {
            (None, None) => None,
            (t, m) => Some(Persistence {
                timeout: Duration::from_secs(t.unwrap_or(DEFAULT_PERSISTENCE_TIMEOUT).into()),
                netmask: m.unwrap_or(if v6 {
                    IpAddr::V6(Ipv6Addr::from_bits(u128::MAX))
                } else {
                    IpAddr::V4(Ipv4Addr::BROADCAST)
                }),
            }),
        };

        // Real servers: duplicates dropped, weights and quorum settled.
        let mut reals: Vec<&RsConf> = Vec::new();
        for r in &vs.reals {
            if reals.iter().any(|o| o.addr == r.addr && o.port == r.port) {
                self.warn_at(
                    r.file,
                    r.line,
                    format!(
                        "real server {} is duplicated - second one ignored",
                        SocketAddr::new(r.addr, r.port)
                    ),
                );
                continue;
            }
            reals.push(r);
        }
        let weight_of = |r: &RsConf| r.weight.unwrap_or(vs.weight);
        let weight_sum: u64 = reals.iter().map(|r| u64::from(weight_of(r))).sum();
        let mut quorum = vs.quorum;
        if u64::from(quorum) > weight_sum {
            self.warn_at(vs.file, vs.line, format!("quorum {quorum} for {label} exceeds the real servers' total weight {weight_sum} - reduced to it"));
            quorum = weight_sum as u32;
        }
        let mut hysteresis = vs.hysteresis;
        if hysteresis >= quorum && hysteresis > 0 {
            let h = quorum.saturating_sub(1);
            self.warn_at(
                vs.file,
                vs.line,
                format!("hysteresis {hysteresis} >= quorum {quorum} for {label} - set to {h}"),
            );
            hysteresis = h;
        }

        let mut warned_port = false;
        // The index in cfg.services of this virtual server's first service.
        let mut first: Option<usize> = None;
        for (key, svc_label) in keys {
            if let Some((f, l)) = seen.get(&key) {
                let at = self.at(*f, *l);
                return Err(vs_err(
                    self,
                    format!(
                        "service {} is already defined at {at}",
                        key.label().trim_end()
                    ),
                ));
            }
            seen.insert(key, (vs.file, vs.line));
            let sorry = match vs.sorry {
                Some((addr, port)) => {
                    let f = vs.sorry_fwd.unwrap_or(fwd);
                    let (port, w) = dest_port(&key, port, f);
                    if let (Some(w), false) = (w, warned_port) {
                        self.warn_at(vs.file, vs.line, format!("sorry_server {addr}: {w}"));
                    }
                    Some(DestSpec {
                        addr,
                        port,
                        fwd: f,
                        weight: 1,
                        u_threshold: 0,
                        l_threshold: 0,
                    })
                }
                None => None,
            };
            let opts = ServiceOpts {
                sched,
                flags,
                persist,
                sorry,
            };
            let add = Command::AddService { key, opts };
            add.validate()
                .map_err(|e| vs_err(self, format!("virtual server {label}: {}", e.msg)))?;
            cfg.commands.push(add);
            let mut specs = Vec::new();
            for r in &reals {
                same_family(&key, r.addr).map_err(|e| {
                    self.err_at(r.file, r.line, format!("real_server {}: {}", r.addr, e.msg))
                })?;
                let rfwd = r.fwd.unwrap_or(fwd);
                let (port, w) = dest_port(&key, r.port, rfwd);
                if let (Some(w), false) = (w, warned_port) {
                    self.warn_at(r.file, r.line, format!("real server {}: {w}", r.addr));
                }
                let dest = DestSpec {
                    addr: r.addr,
                    port,
                    fwd: rfwd,
                    weight: weight_of(r),
                    u_threshold: r.u_threshold,
                    l_threshold: r.l_threshold,
                };
                let cmd = Command::AddDest { key, dest };
                cmd.validate().map_err(|e| {
                    self.err_at(r.file, r.line, format!("real_server {}: {}", r.addr, e.msg))
                })?;
                cfg.commands.push(cmd);
                let mut checkers = Vec::new();
                if first.is_none() {
                    for ck in &r.checkers {
                        checkers.push(self.check_spec(ck, r, &vs, port, !warned_port)?);
                    }
                }
                specs.push(RealSpec {
                    addr: r.addr,
                    port,
                    weight: weight_of(r),
                    inhibit_on_failure: r.inhibit.unwrap_or(vs.inhibit),
                    notify_up: r.notify_up.clone(),
                    notify_down: r.notify_down.clone(),
                    checkers,
                });
            }
            warned_port = true;
            // A group's later members share the first one's checkers.
            if let Some(i) = first {
                let ports = specs.iter().map(|r| r.port).collect();
                cfg.services[i].also.push((key, ports));
                continue;
            }
            first = Some(cfg.services.len());
            cfg.services.push(ServiceSpec {
                key,
                also: Vec::new(),
                reals: specs,
                quorum,
                hysteresis,
                quorum_up: vs.quorum_up.clone(),
                quorum_down: vs.quorum_down.clone(),
                omega: vs.omega,
                sorry: vs.sorry.is_some(),
                sorry_server_inhibit: vs.sorry_inhibit,
                label: svc_label,
            });
        }
        Ok(())
    }

    /// A checker's spec: its own setting, else the real server's, else the virtual server's,
    /// else keepalived's default for that checker.
    fn check_spec(
        &mut self,
        ck: &CkConf,
        rs: &RsConf,
        vs: &VsConf,
        rs_port: u16,
        warn: bool,
    ) -> Result<CheckSpec, ConfError> {
        let (c, r, v) = (&ck.timing, &rs.timing, &vs.timing);
        let delay_loop = c
            .delay_loop
            .or(r.delay_loop)
            .or(v.delay_loop)
            .unwrap_or(DEFAULT_DELAY_LOOP);
        let (default_retry, default_dbr) = match ck.kind {
            CheckKind::Http { .. } => (1, Duration::from_secs(3)),
            CheckKind::Dns { .. } => (3, delay_loop),
            CheckKind::Misc { .. } => (0, Duration::from_secs(1)),
            _ => (1, Duration::from_secs(1)),
        };
        let warmup = c.warmup.or(r.warmup).or(v.warmup).unwrap_or(delay_loop);
        let target = SocketAddr::new(
            ck.connect_ip.unwrap_or(rs.addr),
            ck.connect_port.unwrap_or(rs_port),
        );
        let needs_port = !matches!(ck.kind, CheckKind::Misc { .. } | CheckKind::Ping);
        if needs_port && target.port() == 0 && warn {
            self.warn_at(
                ck.file,
                ck.line,
                "checker has no port to probe (set connect_port)",
            );
        }
        if let IpAddr::V6(a) = target.ip()
            && a.is_unicast_link_local()
            && ck.bind_if.is_none()
        {
            return Err(self.err_at(
                ck.file,
                ck.line,
                format!("checker link-local address {a} requires a bind_if"),
            ));
        }
        let bind = match (ck.bindto, ck.bind_port) {
            (Some(a), p) => Some(SocketAddr::new(a, p.unwrap_or(0))),
            (None, Some(p)) => Some(SocketAddr::new(
                if target.is_ipv6() {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                } else {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                },
                p,
            )),
            (None, None) => None,
        };
        let timeout = match &ck.kind {
            CheckKind::Misc { timeout, .. } => {
                timeout.unwrap_or(v.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP))
            }
            _ => c
                .connect_timeout
                .or(r.connect_timeout)
                .or(v.connect_timeout)
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        };
        // An HTTP checker's virtualhost: its own, else its real server's, else its
        // virtual server's.
        let mut kind = ck.kind.clone();
        if let CheckKind::Http { virtualhost, .. } = &mut kind
            && virtualhost.is_none()
        {
            *virtualhost = rs.virtualhost.clone().or_else(|| vs.virtualhost.clone());
        }
        Ok(CheckSpec {
            kind,
            target,
            bind,
            bind_if: ck.bind_if.clone(),
            timeout,
            delay_loop,
            retry: c.retry.or(r.retry).or(v.retry).unwrap_or(default_retry),
            delay_before_retry: c
                .delay_before_retry
                .or(r.delay_before_retry)
                .or(v.delay_before_retry)
                .unwrap_or(default_dbr),
            warmup: (!warmup.is_zero()).then_some(warmup),
            alpha: c.alpha.or(r.alpha).or(v.alpha).unwrap_or(false),
            fwmark: ck.fwmark,
        })
    }
}

/// A real (or sorry) server's port in service `key`, as keepalived settles it, and a warning
/// when the written one is not used: NAT keeps its own port (the service's when omitted); DR
/// always uses the service's (0 for a fwmark service: the port the client asked for).
fn dest_port(key: &SvcKey, given: u16, fwd: Fwd) -> (u16, Option<String>) {
    match (key, fwd) {
        (SvcKey::Mark { .. }, Fwd::Masq) => (given, None),
        (SvcKey::Mark { .. }, Fwd::Route) if given != 0 => (
            0,
            Some(format!("port {given} is ignored for a DR fwmark service")),
        ),
        (SvcKey::Mark { .. }, Fwd::Route) => (0, None),
        (SvcKey::Addr(k), Fwd::Masq) => (if given == 0 { k.port } else { given }, None),
        (SvcKey::Addr(k), Fwd::Route) if given != 0 && given != k.port => (
            k.port,
            Some(format!(
                "port {given} differs from the service's {} - DR uses {}",
                k.port, k.port
            )),
        ),
        (SvcKey::Addr(k), Fwd::Route) => (k.port, None),
    }
}

/// keepalived's DNS_CHECK types.
fn dns_type(name: &str) -> Option<u16> {
    Some(match name {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "RRSIG" => 46,
        "DNSKEY" => 48,
        _ => return None,
    })
}

fn ip_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(a.to_bits()),
        IpAddr::V6(a) => a.to_bits(),
    }
}

/// An address of `like`'s family from its bits.
fn bits_ip(like: IpAddr, bits: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from_bits(bits as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from_bits(bits)),
    }
}
