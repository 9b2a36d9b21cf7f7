//! xlvsadm: administer a running xlvsd with ipvsadm's syntax.

use std::io::{Read, Write};
use std::path::PathBuf;

use xlvs_control::admin;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut socket = std::env::var_os("XLVS_CONTROL").map(PathBuf::from);
    if let Some(i) = args
        .iter()
        .position(|a| a == "--control" || a.starts_with("--control="))
    {
        let v = if let Some(v) = args[i].strip_prefix("--control=") {
            let v = v.to_string();
            args.remove(i);
            Some(v)
        } else if i + 1 < args.len() {
            let v = args.remove(i + 1);
            args.remove(i);
            Some(v)
        } else {
            None
        };
        match v {
            Some(v) => socket = Some(PathBuf::from(v)),
            None => {
                eprintln!("xlvsadm: --control needs a socket path");
                std::process::exit(2);
            }
        }
    }
    let socket = socket.unwrap_or_else(|| PathBuf::from(admin::DEFAULT_SOCKET));
    // `-R` restores the rules on standard input; the daemon parses and applies them.
    let restore = args.iter().any(|a| {
        a == "--restore" || (a.starts_with('-') && !a.starts_with("--") && a.contains('R'))
    });
    let input = if restore {
        let mut text = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("xlvsadm: reading rules from standard input: {e}");
            std::process::exit(2);
        }
        Some(text)
    } else {
        None
    };
    match admin::call(&socket, args, input) {
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
