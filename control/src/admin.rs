//! The control socket protocol between `xlvsadm` and `xlvsd`: one JSON line each way.
//! `xlvsadm` parses its command line itself (the ipvsadm grammar, [`crate::ipvsadm`]) and sends
//! the typed [`Request`]; the daemon checks the version, validates the command again (it never
//! trusts its client), executes it and answers with what to print and the exit code.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::command::{CmdError, Command};
use crate::ipvsadm::{NOT_A_RULE, RulesError};

/// Default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/xlvs/xlvsd.sock";

/// The protocol version; a daemon answers a request of another version with an error.
pub const VERSION: u32 = 1;

/// Largest request: a `-R` rules file of some 100 000 lines.
pub const MAX_REQUEST: usize = 16 << 20;

/// One admin request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// [`VERSION`] of the sender.
    pub version: u32,
    /// The parsed command.
    pub command: Command,
    /// For `-R`: the rules read from standard input, with their line numbers.
    #[serde(default)]
    pub rules: Vec<(usize, Command)>,
}

impl Request {
    /// A request of this version.
    pub fn new(command: Command) -> Self {
        Request {
            version: VERSION,
            command,
            rules: Vec::new(),
        }
    }

    /// Decodes and validates one request line: the version, then every command as the
    /// parser would have checked it.
    pub fn decode(line: &[u8]) -> Result<Request, CmdError> {
        let req: Request = serde_json::from_slice(line)
            .map_err(|e| CmdError::usage(format!("bad control request: {e}")))?;
        if req.version != VERSION {
            return Err(CmdError::usage(format!(
                "xlvsadm speaks control protocol {}, xlvsd {VERSION}: use the xlvsadm of this xlvsd",
                req.version
            )));
        }
        req.command.validate()?;
        for (line, c) in &req.rules {
            let checked = match c.edits_table() {
                true => c.validate(),
                false => Err(CmdError::usage(NOT_A_RULE)),
            };
            checked.map_err(|error| {
                let msg = RulesError { line: *line, error }.to_string();
                CmdError::usage(msg)
            })?;
        }
        Ok(req)
    }
}

/// What to print and the exit code.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Response {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Response {
    /// Success, printing `stdout`.
    pub fn ok(stdout: String) -> Self {
        Response {
            code: 0,
            stdout,
            stderr: String::new(),
        }
    }

    /// Failure, as ipvsadm prints it.
    pub fn err(e: CmdError) -> Self {
        Response {
            code: e.code,
            stdout: String::new(),
            stderr: format!("{}\n", e.msg),
        }
    }

    /// The JSON line sent back.
    pub fn encode(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// Sends one request and waits for the answer (the client side).
pub fn call(socket: &Path, req: &Request) -> std::io::Result<Response> {
    call_within(socket, req, Duration::from_secs(30))
}

/// [`call`], waiting at most `timeout` for the answer.
pub fn call_within(socket: &Path, req: &Request, timeout: Duration) -> std::io::Result<Response> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut r = BufReader::new(s);
    let mut answer = String::new();
    r.read_line(&mut answer)?;
    serde_json::from_str(&answer)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvsadm;

    fn cmd(s: &str) -> Command {
        ipvsadm::parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn requests_round_trip() {
        let mut r = Request::new(cmd(
            "-A -t 10.0.0.1:80 -s sh -b sh-port -p 60 -M 255.255.255.0",
        ));
        r.rules = vec![(3, cmd("-a -f 1 -6 -r [fd00::1]:80 -m -w 2"))];
        let line = serde_json::to_vec(&r).unwrap();
        assert_eq!(Request::decode(&line).unwrap(), r);
    }

    #[test]
    fn the_daemon_checks_what_the_client_sent() {
        let bad = |json: &str| Request::decode(json.as_bytes()).unwrap_err();
        assert!(bad("{").msg.starts_with("bad control request"));
        let mut r = Request::new(Command::Clear);
        r.version = 99;
        assert!(
            Request::decode(&serde_json::to_vec(&r).unwrap())
                .unwrap_err()
                .msg
                .contains("protocol 99")
        );
        // What the parser would refuse, forged on the wire.
        let mut r = Request::new(cmd("-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 7"));
        let forge = |r: &Request, from: &str, to: &str| {
            let text = serde_json::to_string(r).unwrap().replace(from, to);
            Request::decode(text.as_bytes()).unwrap_err()
        };
        assert_eq!(
            forge(&r, "\"weight\":7", "\"weight\":70000").msg,
            "illegal weight specified"
        );
        assert_eq!(
            forge(&r, "\"10.1.0.2\"", "\"fd00::2\"").msg,
            "real server address family differs from the virtual service's"
        );
        r.command = cmd("-A -t 10.0.0.1:80");
        assert_eq!(
            forge(&r, "\"port\":80", "\"port\":0").msg,
            "Zero port specified for non-persistent service"
        );
        r.command = Command::Restore;
        r.rules = vec![(1, Command::Workers)];
        assert!(
            Request::decode(&serde_json::to_vec(&r).unwrap())
                .unwrap_err()
                .msg
                .starts_with("line 1: only -A")
        );
    }
}
