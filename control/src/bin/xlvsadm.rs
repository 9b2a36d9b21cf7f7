//! xlvsadm: administer a running xlvsd with ipvsadm's syntax. The command line is parsed here
//! (help, version and syntax errors need no daemon); the daemon gets a typed request.

use std::io::{Read, Write};
use std::path::PathBuf;

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

fn exit_with(e: CmdError) -> ! {
    eprintln!("{}", e.msg);
    std::process::exit(e.code);
}
