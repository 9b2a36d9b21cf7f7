//! keepalived.conf reader: the `virtual_server`s of a keepalived 2.x configuration become
//! services-table [`Command`]s and health-check specs ([`ServiceSpec`]), so xlvsd can stand in
//! for keepalived's checker process on a file `keepalived -t` also accepts.
//!
//! - [`lexer`]: lines, comments, quotes, braces, `include` with file and line tracking.
//! - [`parse`]: blocks to the model, with keepalived's defaults and inheritance
//!   (virtual server → real server → checker).
//!
//! What is read, what each keyword means and its default, and what is refused or ignored is
//! in `docs/KEEPALIVED.md`. In short: `global_defs` (script settings, `lvs_timeouts`,
//! `lvs_sync_daemon`), `virtual_server_group`, `virtual_server` (address, `fwmark`, `group`)
//! with their real servers and TCP/HTTP/SSL/DNS/MISC/UDP/PING checkers. Other top-level blocks
//! (`vrrp_instance`, `static_ipaddress`, …) are skipped whole. Something xlvs cannot do
//! (tunnelling, SCTP, a scheduler it lacks) is an error; an unknown keyword inside a virtual
//! server, real server or checker is a warning, as keepalived logs it and carries on.

pub(crate) mod lexer;
#[cfg(fuzzing)]
pub use lexer::FUZZ_ROOT;
pub(crate) mod parse;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::command::Command;
use crate::health::spec::{ScriptDefaults, ServiceSpec};

/// What a keepalived.conf asks of the director.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `SetTimeouts` first if `lvs_timeouts` is given, then per virtual server and per IPVS
    /// service it makes: `AddService`, then an `AddDest` for each real server (every
    /// configured one, at its configured weight: which of them are live is the health
    /// checks' business).
    pub commands: Vec<Command>,
    /// The health spec, one per IPVS service, in the order of `commands`.
    pub services: Vec<ServiceSpec>,
    /// `global_defs`' `script_user` and `enable_script_security`.
    pub scripts: ScriptDefaults,
    /// `lvs_sync_daemon`: the sync daemons keepalived's checker would start, a master and a
    /// backup (keepalived 2 runs both and leaves the roles to the kernel's traffic), with
    /// the sync id given, else the named VRRP instance's `virtual_router_id`.
    pub sync_daemons: Vec<crate::command::DaemonSpec>,
    /// What keepalived would log and carry on from: unknown keywords, ignored settings,
    /// values it corrects (quorum above the total weight, mismatched DR ports, …).
    pub warnings: Vec<ConfWarning>,
}

/// A configuration the director cannot run: where, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfError {
    /// The file the error is in (an included file's path as the `include` resolved it).
    pub file: PathBuf,
    /// 1-based line number (0 when the file itself cannot be read).
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

impl std::fmt::Display for ConfError {
    /// `FILE:LINE: msg` (`FILE: msg` for the file as a whole: line 0).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file.display(), self.msg),
            n => write!(f, "{}:{n}: {}", self.file.display(), self.msg),
        }
    }
}

impl std::error::Error for ConfError {}

/// Something read but not (fully) honoured: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfWarning {
    /// The file the warning is about.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What was ignored or corrected.
    pub msg: String,
}

impl std::fmt::Display for ConfWarning {
    /// `FILE:LINE: msg`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.msg)
    }
}

/// Reads the keepalived.conf at `path` and the files it includes.
pub fn load(path: &Path) -> Result<Config, ConfError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfError {
        file: path.to_path_buf(),
        line: 0,
        msg: format!("cannot read: {e}"),
    })?;
    parse_str(&text, path)
}

/// Reads `text` as the keepalived.conf named `name`: `name` appears in errors and warnings,
/// and relative `include`s are resolved against its directory.
pub fn parse_str(text: &str, name: &Path) -> Result<Config, ConfError> {
    let lexed = lexer::lex(text, name)?;
    parse::parse(lexed)
}
