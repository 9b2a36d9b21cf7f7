//! xlvsadm: administer a running xlvsd with ipvsadm's syntax. The command line is parsed here
//! (help, version and syntax errors need no daemon); the daemon gets a typed request.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use xlvs_control::admin::{self, Request};
use xlvs_control::command::{CmdError, Command};
use xlvs_control::ipvsadm;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let socket = match control_socket(&mut args) {
        Ok(s) => s,
        Err(e) => exit_with(e),
    };
    // keepalived's hooks (xlvs): `--vrrp-notify` takes keepalived's notify arguments, which
    // the ipvsadm grammar has no place for.
    let command = match args.first().map(String::as_str) {
        Some("--vrrp-notify") => match xlvs_control::vrrp::parse_notify(&args[1..]) {
            Ok(n) => Command::VrrpNotify(n),
            Err(e) => exit_with(CmdError::usage(e)),
        },
        Some("--check") if args.len() == 1 => Command::Check,
        Some("--check") => match args.get(1..).unwrap_or_default() {
            [w, ms] if w == "--watch" => match ms.parse::<u64>() {
                Ok(ms) if (1..=60_000).contains(&ms) => watch(&socket, Duration::from_millis(ms)),
                _ => exit_with(CmdError::usage(format!(
                    "xlvsadm: --check --watch MS: want 1-60000 milliseconds, got {ms:?}"
                ))),
            },
            _ => exit_with(CmdError::usage("xlvsadm: usage: --check [--watch MS]")),
        },
        _ => match ipvsadm::parse(&args) {
            Ok(c) => c,
            Err(e) => exit_with(e),
        },
    };
    let mut req = match command {
        Command::Help => {
            print!("{}", ipvsadm::HELP);
            return;
        }
        Command::Version => {
            print!("{}", ipvsadm::version());
            return;
        }
        c => Request::new(c),
    };
    if req.command == Command::Restore {
        // -R restores the rules on standard input, all or nothing: a syntax error changes
        // nothing and needs no daemon.
        let mut text = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut text) {
            exit_with(CmdError::usage(format!(
                "xlvsadm: reading rules from standard input: {e}"
            )));
        }
        req.rules = match ipvsadm::parse_rules_numbered(&text) {
            Ok(r) => r,
            Err(e) => exit_with(CmdError {
                msg: e.to_string(),
                ..e.error
            }),
        };
    }
    match admin::call(&socket, &req) {
        Ok(r) => {
            print!("{}", r.stdout);
            eprint!("{}", r.stderr);
            let _ = std::io::stdout().flush();
            std::process::exit(r.code);
        }
        Err(e) => {
            eprintln!("xlvsadm: cannot talk to xlvsd at {}: {e}", socket.display());
            std::process::exit(2);
        }
    }
}

/// Takes `--control SOCKET` (or `--control=SOCKET`) out of the arguments; else
/// `$XLVS_CONTROL`, else the default.
fn control_socket(args: &mut Vec<String>) -> Result<PathBuf, CmdError> {
    let default = std::env::var_os("XLVS_CONTROL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(admin::DEFAULT_SOCKET));
    let Some(i) = args
        .iter()
        .position(|a| a == "--control" || a.starts_with("--control="))
    else {
        return Ok(default);
    };
    let v = match args.remove(i).strip_prefix("--control=") {
        Some(v) => v.to_string(),
        None if i < args.len() => args.remove(i),
        None => return Err(CmdError::usage("xlvsadm: --control needs a socket path")),
    };
    Ok(PathBuf::from(v))
}

/// How long one check may take for the answer (a wedged control thread does not answer).
const CHECK_TIMEOUT: Duration = Duration::from_millis(400);
/// How often `--check --watch` asks.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// `--check --watch MS`, keepalived's track script: checks every 50 ms for MS milliseconds
/// and exits 0, or exits 1 as soon as xlvsd is gone (its socket refuses), says it is not
/// fit (a dead worker, a resync still running on a returning node), or fails to answer
/// twice running. keepalived runs a script at most once a second, so a check that watches
/// for most of that second notices a dead xlvsd within 50 ms instead of up to a second.
fn watch(socket: &std::path::Path, span: Duration) -> ! {
    let start = Instant::now();
    let mut unanswered = 0;
    loop {
        match admin::call_within(socket, &Request::new(Command::Check), CHECK_TIMEOUT) {
            Ok(r) if r.code == 0 => unanswered = 0,
            Ok(r) => {
                eprint!("{}", r.stderr);
                std::process::exit(1);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                unanswered += 1;
                if unanswered >= 2 {
                    eprintln!("xlvsadm: xlvsd at {} does not answer", socket.display());
                    std::process::exit(1);
                }
            }
            Err(e) => {
                eprintln!("xlvsadm: cannot talk to xlvsd at {}: {e}", socket.display());
                std::process::exit(1);
            }
        }
        if start.elapsed() + WATCH_EVERY >= span {
            std::process::exit(0);
        }
        std::thread::sleep(WATCH_EVERY);
    }
}

fn exit_with(e: CmdError) -> ! {
    eprintln!("{}", e.msg);
    std::process::exit(e.code);
}
