//! What a health check is asked to do: the virtual servers, realservers and checkers of a
//! keepalived.conf (see [`crate::keepalived`]), with keepalived's defaults already filled in.
//! The state machine ([`super::machine`]) runs them; the probes ([`super::probe`]) carry them
//! out. Nothing here knows about the file syntax.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::command::SvcKey;

/// A script keepalived would run (`notify_up`, `quorum_down`, `misc_path`, …): the program
/// and its arguments, split as keepalived splits them (whitespace, `"…"` quoting), run
/// without a shell, as `user` (keepalived's `script_user`, or the one named after the
/// script).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Script {
    pub argv: Vec<String>,
    /// User (and optional group) to run it as; None: `global_defs`' `script_user`, else
    /// keepalived's default (`keepalived_script` if it exists, else root).
    pub user: Option<(String, Option<String>)>,
}

/// One `url { }` of an `HTTP_GET`/`SSL_GET`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Url {
    pub path: String,
    /// `digest`: the MD5 of the body as 32 lowercase hex digits (genhash's output).
    pub digest: Option<String>,
    /// `status_code`: accepted codes and ranges; empty means keepalived's default, any 2xx.
    pub status: Vec<(u16, u16)>,
    /// `virtualhost` of this url (overrides the checker's).
    pub virtualhost: Option<String>,
}

/// What a checker does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// `TCP_CHECK`: a TCP connection is accepted.
    Tcp,
    /// `HTTP_GET` (`tls` false) or `SSL_GET` (`tls` true): every url answers with an accepted
    /// status (and body digest).
    Http {
        tls: bool,
        urls: Vec<Url>,
        virtualhost: Option<String>,
        /// SSL_GET `enable_sni` (keepalived's default: no SNI).
        sni: bool,
    },
    /// `DNS_CHECK`: a query of `name` of type `qtype` (A, NS, CNAME, SOA, MX, TXT, AAAA)
    /// answered with rcode NOERROR.
    Dns { qtype: u16, name: String },
    /// `MISC_CHECK`: a script's exit code (0 up, else down; with `dynamic`, 2–255 up with
    /// weight code − 2).
    Misc {
        script: Script,
        timeout: Option<Duration>,
        dynamic: bool,
    },
    /// `UDP_CHECK`: a datagram (`payload`) gets no ICMP unreachable (with `require_reply`, gets
    /// an answer, optionally equal to `reply`).
    Udp {
        payload: Vec<u8>,
        require_reply: bool,
        reply: Option<Vec<u8>>,
    },
    /// `PING_CHECK`: an ICMP (ICMPv6) echo gets its reply.
    Ping,
}

impl CheckKind {
    /// keepalived's block name, used in listings, logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Tcp => "TCP_CHECK",
            CheckKind::Http { tls: false, .. } => "HTTP_GET",
            CheckKind::Http { tls: true, .. } => "SSL_GET",
            CheckKind::Dns { .. } => "DNS_CHECK",
            CheckKind::Misc { .. } => "MISC_CHECK",
            CheckKind::Udp { .. } => "UDP_CHECK",
            CheckKind::Ping => "PING_CHECK",
        }
    }
}

/// One checker of a realserver, with the timing keepalived resolves for it (the checker's own
/// setting, else the realserver's, else the virtual server's, else keepalived's default).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckSpec {
    pub kind: CheckKind,
    /// Where the probe goes: `connect_ip`/`connect_port`, defaulting to the realserver's.
    pub target: SocketAddr,
    /// `bindto`/`bind_port`: the director's address (and port) the probe leaves from.
    pub bind: Option<SocketAddr>,
    /// `bind_if`: the interface for an IPv6 link-local bindto.
    pub bind_if: Option<String>,
    /// `connect_timeout` (default 5 s); for MISC_CHECK, `misc_timeout` (default delay_loop).
    pub timeout: Duration,
    /// `delay_loop`: between two checks (default 60 s).
    pub delay_loop: Duration,
    /// `retry`: failed attempts retried before the checker fails (keepalived's default: 1
    /// for HTTP_GET/SSL_GET, and for the others 1 too since 2.0).
    pub retry: u32,
    /// `delay_before_retry` (default 1 s).
    pub delay_before_retry: Duration,
    /// `warmup`: the first check waits a random time up to it (default: delay_loop).
    pub warmup: Option<Duration>,
    /// `alpha`: the checker starts failed and the realserver down until the first success
    /// (default: starts passing).
    pub alpha: bool,
    /// `fwmark` to set on the probe's packets.
    pub fwmark: Option<u32>,
}

/// A realserver of a virtual server, with what its health decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealSpec {
    pub addr: IpAddr,
    pub port: u16,
    /// Configured `weight` (default 1); what quorum adds up.
    pub weight: u32,
    /// `inhibit_on_failure`: when down, weight 0 instead of removal.
    pub inhibit_on_failure: bool,
    pub notify_up: Option<Script>,
    pub notify_down: Option<Script>,
    /// Empty: no checker, always up (keepalived adds it and never removes it).
    pub checkers: Vec<CheckSpec>,
}

/// A virtual server's health settings (one per service; a `virtual_server group` gives one
/// per member service, all alike).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub key: SvcKey,
    pub reals: Vec<RealSpec>,
    /// `quorum` (default 1): the live weight it needs; below it, the sorry server.
    pub quorum: u32,
    /// `hysteresis` (default 0): quorum is lost below quorum − hysteresis and regained at
    /// quorum + hysteresis.
    pub hysteresis: u32,
    pub quorum_up: Option<Script>,
    pub quorum_down: Option<Script>,
    /// `omega`: on shutdown, run notify_down of the live realservers and quorum_down.
    pub omega: bool,
    /// It has a `sorry_server`: losing quorum then takes the live realservers out and lets
    /// the sorry server take every new connection.
    pub sorry: bool,
    /// `sorry_server_inhibit`: the sorry server is kept in the table at weight 0 while
    /// quorum holds, instead of being absent.
    pub sorry_server_inhibit: bool,
    /// The virtual server's label for logs and scripts (`VIP:PORT`, `FWM N`, or
    /// `[GROUP]:PORT`).
    pub label: String,
}

/// The script settings of `global_defs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScriptDefaults {
    /// `script_user USER [GROUP]`.
    pub script_user: Option<(String, Option<String>)>,
    /// `enable_script_security`: refuse scripts writable by a non-root user.
    pub enable_script_security: bool,
}
