//! The control socket protocol between `xlvsadm` and `xlvsd`: one JSON line each way.
//! `xlvsadm` sends its arguments untouched; the daemon parses them with the ipvsadm grammar,
//! executes them, and answers with what to print and the exit code.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/xlvs/xlvsd.sock";

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub args: Vec<String>,
    /// Standard input, for `-R`.
    #[serde(default)]
    pub input: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Response {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Sends one request and waits for the answer.
pub fn call(socket: &Path, args: Vec<String>, input: Option<String>) -> std::io::Result<Response> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_string(&Request { args, input })?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut r = BufReader::new(s);
    let mut answer = String::new();
    r.read_line(&mut answer)?;
    serde_json::from_str(&answer)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Largest request: a `-R` rules file of some 100 000 lines.
pub const MAX_REQUEST: u64 = 8 << 20;

/// Reads one request from an accepted connection (bounded in size and time).
pub fn read_request(s: &UnixStream) -> std::io::Result<Request> {
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut r = BufReader::new(s).take(MAX_REQUEST);
    let mut line = String::new();
    r.read_line(&mut line)?;
    serde_json::from_str(&line).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Writes the answer.
pub fn write_response(mut s: &UnixStream, resp: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_string(resp)?;
    line.push('\n');
    s.write_all(line.as_bytes())
}

use std::io::Read as _;
