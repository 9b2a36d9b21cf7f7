//! ipvsadm's command-line grammar: `xlvsadm` arguments and the lines of an `ipvsadm -S -n`
//! rules file parse into the same [`Command`]s.
//!
//! ipvsadm's options are commands written as flags (`-A`, `-a`, `-L`), short options may be
//! bundled (`-Ln`), and errors have fixed wording and exit codes (2 for bad arguments, 255 for an
//! unknown option); the grammar is small and irregular enough that a hand parser states it more
//! plainly than a clap definition would.

use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};
use xlvs_dataplane::core::service::{Fwd, Proto, VsKey};

/// A parsed ipvsadm command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `-A`: add a virtual service.
    AddService { key: VsKey, sched: String },
    /// `-E`: edit a virtual service.
    EditService { key: VsKey, sched: String },
    /// `-D`: delete a virtual service.
    DelService { key: VsKey },
    /// `-C`: clear the table.
    Clear,
    /// `-a`: add a realserver.
    AddDest { key: VsKey, dest: DestSpec },
    /// `-e`: edit a realserver.
    EditDest { key: VsKey, dest: DestSpec },
    /// `-d`: delete a realserver.
    DelDest {
        key: VsKey,
        addr: Ipv4Addr,
        port: u16,
    },
    /// `-L`/`-l`: list.
    List { key: Option<VsKey>, numeric: bool },
    /// `-S`: save in rules format.
    Save { numeric: bool },
    /// `--workers` (xlvs): per-worker counters.
    Workers,
    /// `--xdp-stats` (xlvs): the XDP program's counters.
    XdpStats,
    /// `-h`.
    Help,
    /// `-v`.
    Version,
}

/// A realserver as given to `-a`/`-e`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestSpec {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub fwd: Fwd,
    pub weight: u32,
}

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    AddService,
    EditService,
    DelService,
    Clear,
    AddDest,
    EditDest,
    DelDest,
    List,
    Save,
    Workers,
    XdpStats,
    Help,
    Version,
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
            Verb::List => "list",
            Verb::Save => "save",
            Verb::Workers => "workers",
            Verb::XdpStats => "xdp-stats",
            Verb::Help => "help",
            Verb::Version => "version",
        }
    }
}

/// Options that take a value, by short name.
fn takes_value(c: char) -> bool {
    matches!(c, 't' | 'u' | 'f' | 's' | 'r' | 'w' | 'p' | 'M' | 'x' | 'y')
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
            let c = match name {
                "workers" => '\u{1}',
                "xdp-stats" => '\u{2}',
                other => match long_to_short(other) {
                    Some(c) => c,
                    None => {
                        let mut e = try_help();
                        e.msg = format!("xlvsadm: unrecognized option '--{other}'\n{}", e.msg);
                        return Err(e);
                    }
                },
            };
            let value = if takes_value(c) {
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

/// Parses `ADDR:PORT` (port required unless `port_optional`).
fn parse_endpoint(s: &str, port_optional: bool) -> Option<(Ipv4Addr, Option<u16>)> {
    if let Ok(sa) = s.parse::<SocketAddrV4>() {
        return Some((*sa.ip(), Some(sa.port())));
    }
    if port_optional {
        return s.parse::<Ipv4Addr>().ok().map(|a| (a, None));
    }
    None
}

/// Parses one ipvsadm command line (without the program name).
pub fn parse(args: &[String]) -> Result<Command, CmdError> {
    let toks = tokenize(args)?;
    let mut verb: Option<Verb> = None;
    let mut service: Option<(Proto, String)> = None;
    let mut sched: Option<String> = None;
    let mut real: Option<String> = None;
    let mut weight: Option<String> = None;
    let mut fwd: Option<Fwd> = None;
    let mut numeric = false;
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
            'h' => set_verb(&mut verb, Verb::Help)?,
            'v' => set_verb(&mut verb, Verb::Version)?,
            '\u{1}' => set_verb(&mut verb, Verb::Workers)?,
            '\u{2}' => set_verb(&mut verb, Verb::XdpStats)?,
            'n' => numeric = true,
            't' | 'u' => {
                if service.is_some() {
                    return Err(CmdError::usage("multiple service options specified"));
                }
                let proto = if c == 't' { Proto::Tcp } else { Proto::Udp };
                service = Some((proto, v.unwrap_or_default()));
            }
            'f' => {
                return Err(CmdError::usage(
                    "fwmark services (-f) are not supported yet: this data plane has no netfilter marks",
                ));
            }
            's' => sched = v,
            'r' => real = v,
            'w' => weight = v,
            'm' => fwd = Some(Fwd::Masq),
            'g' => fwd = Some(Fwd::Route),
            'i' => {
                return Err(CmdError::usage("tunnelling (-i) is not supported yet"));
            }
            'p' | 'M' | 'x' | 'y' => {
                return Err(CmdError::usage(format!("option -{c} is not supported yet")));
            }
            other => {
                let mut e = try_help();
                e.msg = format!("xlvsadm: invalid option -- '{other}'\n{}", e.msg);
                return Err(e);
            }
        }
    }
    let verb = verb.ok_or_else(|| {
        CmdError::usage("no command specified\nTry `xlvsadm -h' for more information.")
    })?;

    let need_service = |service: &Option<(Proto, String)>| -> Result<VsKey, CmdError> {
        let (proto, text) = service.as_ref().ok_or_else(|| {
            CmdError::usage(format!(
                "You need to supply the 'service-address' option for the '{}' command",
                verb.long()
            ))
        })?;
        match parse_endpoint(text, false) {
            Some((addr, Some(port))) if port != 0 => Ok(VsKey {
                proto: *proto,
                addr,
                port,
            }),
            Some((_, Some(_))) => Err(CmdError::usage(
                "Zero port specified for non-persistent service",
            )),
            _ => Err(CmdError::usage(
                "illegal virtual server address[:port] specified",
            )),
        }
    };
    let illegal_with = |opt: &str| -> CmdError {
        CmdError::usage(format!(
            "Illegal '{opt}' option with the '{}' command",
            verb.long()
        ))
    };
    let dest_only = |real: &Option<String>,
                     weight: &Option<String>,
                     fwd: &Option<Fwd>|
     -> Result<(), CmdError> {
        if real.is_some() {
            return Err(illegal_with("real-server"));
        }
        if weight.is_some() {
            return Err(illegal_with("weight"));
        }
        if fwd.is_some() {
            return Err(illegal_with("forwarding-method"));
        }
        Ok(())
    };

    Ok(match verb {
        Verb::AddService | Verb::EditService => {
            let key = need_service(&service)?;
            dest_only(&real, &weight, &fwd)?;
            let sched = sched.unwrap_or_else(|| "wlc".into());
            if verb == Verb::AddService {
                Command::AddService { key, sched }
            } else {
                Command::EditService { key, sched }
            }
        }
        Verb::DelService => {
            let key = need_service(&service)?;
            dest_only(&real, &weight, &fwd)?;
            Command::DelService { key }
        }
        Verb::Clear => Command::Clear,
        Verb::AddDest | Verb::EditDest | Verb::DelDest => {
            let key = need_service(&service)?;
            if sched.is_some() {
                return Err(illegal_with("scheduler"));
            }
            let real = real.ok_or_else(|| {
                CmdError::usage(format!(
                    "You need to supply the 'real-server' option for the '{}' command",
                    verb.long()
                ))
            })?;
            let (addr, port) = parse_endpoint(&real, true)
                .ok_or_else(|| CmdError::usage("illegal real server address[:port] specified"))?;
            let fwd_m = fwd.unwrap_or(Fwd::Route);
            // ipvsadm: for -g the realserver port is the service port.
            let port = match (fwd_m, port) {
                (Fwd::Route, _) | (_, None) => key.port,
                (_, Some(p)) => p,
            };
            if verb == Verb::DelDest {
                if weight.is_some() {
                    return Err(illegal_with("weight"));
                }
                Command::DelDest { key, addr, port }
            } else {
                let weight = match weight {
                    None => 1,
                    Some(w) => match w.parse::<u32>() {
                        Ok(w) if w <= 65535 => w,
                        _ => return Err(CmdError::usage("illegal weight specified")),
                    },
                };
                let dest = DestSpec {
                    addr,
                    port,
                    fwd: fwd_m,
                    weight,
                };
                if verb == Verb::AddDest {
                    Command::AddDest { key, dest }
                } else {
                    Command::EditDest { key, dest }
                }
            }
        }
        Verb::List => {
            let key = match &service {
                Some(_) => Some(need_service(&service)?),
                None => None,
            };
            Command::List { key, numeric }
        }
        Verb::Save => Command::Save { numeric },
        Verb::Workers => Command::Workers,
        Verb::XdpStats => Command::XdpStats,
        Verb::Help => Command::Help,
        Verb::Version => Command::Version,
    })
}

/// A rules file line that failed to parse.
#[derive(Debug, PartialEq, Eq)]
pub struct RulesError {
    pub line: usize,
    pub error: CmdError,
}

impl std::fmt::Display for RulesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.error.msg)
    }
}

/// Parses an `ipvsadm -S -n` rules file: one command per line; blank lines and `#` comments
/// are skipped. Only commands that change the table are allowed.
pub fn parse_rules(text: &str) -> Result<Vec<Command>, RulesError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        let cmd = parse(&args).map_err(|error| RulesError { line: i + 1, error })?;
        match cmd {
            Command::AddService { .. }
            | Command::EditService { .. }
            | Command::DelService { .. }
            | Command::AddDest { .. }
            | Command::EditDest { .. }
            | Command::DelDest { .. }
            | Command::Clear => out.push(cmd),
            _ => {
                return Err(RulesError {
                    line: i + 1,
                    error: CmdError::usage(
                        "only -A, -E, -D, -C, -a, -e and -d belong in a rules file",
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// `xlvsadm -h`.
pub const HELP: &str = "\
xlvsadm - administer the xlvs director (ipvsadm syntax)
Usage:
  xlvsadm -A|E -t|u service-address [-s scheduler]
  xlvsadm -D -t|u service-address
  xlvsadm -C
  xlvsadm -a|e -t|u service-address -r server-address [-g|m] [-w weight]
  xlvsadm -d -t|u service-address -r server-address
  xlvsadm -L|l [-t|u service-address] [-n]
  xlvsadm -S [-n]
  xlvsadm --workers        per-worker packet counters (xlvs)
  xlvsadm --xdp-stats      XDP steering counters (xlvs)
Options:
  --control SOCKET         the daemon's control socket (or $XLVS_CONTROL; default /run/xlvs/xlvsd.sock)
Schedulers: rr, wlc (default). Forwarding: -g route (LVS-DR, default), -m masquerading (LVS-NAT).
";

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, CmdError> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    fn vs(s: &str) -> VsKey {
        let sa: SocketAddrV4 = s.parse().unwrap();
        VsKey {
            proto: Proto::Tcp,
            addr: *sa.ip(),
            port: sa.port(),
        }
    }

    #[test]
    fn add_service_defaults_to_wlc() {
        assert_eq!(
            p("-A -t 10.0.0.1:80").unwrap(),
            Command::AddService {
                key: vs("10.0.0.1:80"),
                sched: "wlc".into()
            }
        );
        assert_eq!(
            p("-A -t 10.0.0.1:80 -s rr").unwrap(),
            Command::AddService {
                key: vs("10.0.0.1:80"),
                sched: "rr".into()
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
                    weight: 3
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
                    weight: 1
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
    fn bundled_short_options() {
        assert_eq!(
            p("-Ln").unwrap(),
            Command::List {
                key: None,
                numeric: true
            }
        );
        assert_eq!(
            p("-L -n").unwrap(),
            Command::List {
                key: None,
                numeric: true
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
