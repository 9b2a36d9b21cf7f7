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
    /// `status_code`: accepted codes and inclusive ranges; keepalived's default, 200–299, is
    /// filled in when none is given, so it is never empty.
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
        /// The `Host:` for urls without their own `virtualhost`: the checker's, else the real
        /// server's, else the virtual server's (None: the target address).
        virtualhost: Option<String>,
        /// SSL_GET `enable_sni` (keepalived's default: no SNI).
        sni: bool,
    },
    /// `DNS_CHECK`: a query of `name` of type `qtype` (A, NS, CNAME, SOA, MX, TXT, AAAA,
    /// RRSIG, DNSKEY) answered with rcode NOERROR. keepalived's defaults: type SOA (6), name
    /// `.` (the root).
    Dns { qtype: u16, name: String },
    /// `MISC_CHECK`: a script's exit code (0 up, else down; with `dynamic`, 2–255 up with
    /// weight code − 2).
    Misc {
        script: Script,
        /// `misc_timeout` as given (None: not given, or 0); the resolved value is
        /// [`CheckSpec::timeout`].
        timeout: Option<Duration>,
        dynamic: bool,
    },
    /// `UDP_CHECK`: a datagram (`payload`) gets no ICMP unreachable (with `require_reply`, gets
    /// an answer of `min_reply_len..=max_reply_len` bytes whose first bytes match `reply`).
    Udp {
        /// Empty: keepalived sends a random payload.
        payload: Vec<u8>,
        require_reply: bool,
        /// The expected start of the reply, compared up to the shorter of the two lengths.
        reply: Option<Vec<u8>>,
        /// Bits of `reply` to ignore (`x` nibbles in the hex string), if any.
        reply_mask: Option<Vec<u8>>,
        /// `min_reply_length` (default 0).
        min_reply_len: u16,
        /// `max_reply_length` (default 255).
        max_reply_len: u16,
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
    /// `connect_timeout` (default 5 s); for MISC_CHECK, `misc_timeout` (default: the virtual
    /// server's `delay_loop`, not the checker's).
    pub timeout: Duration,
    /// `delay_loop`: between two checks (default 60 s).
    pub delay_loop: Duration,
    /// `retry` (HTTP_GET/SSL_GET also `nb_get_retry`): failed attempts retried before the
    /// checker fails. keepalived's default: 3 for DNS_CHECK, 0 for MISC_CHECK, 1 otherwise.
    pub retry: u32,
    /// `delay_before_retry`. keepalived's default: 3 s for HTTP_GET/SSL_GET, `delay_loop` for
    /// DNS_CHECK, 1 s otherwise.
    pub delay_before_retry: Duration,
    /// `warmup`: the first check waits a random time up to it (default: the checker's
    /// delay_loop); None when `warmup 0` turns it off.
    pub warmup: Option<Duration>,
    /// `alpha` (checker, real server, or virtual server): the checker starts failed and the
    /// realserver down until the first success (default: starts passing).
    pub alpha: bool,
    /// `fwmark` to set on the probe's packets.
    pub fwmark: Option<u32>,
}

/// A realserver of a virtual server, with what its health decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealSpec {
    pub addr: IpAddr,
    /// The port the table uses for it (NAT: its own, or the service's when omitted; DR: the
    /// service's, 0 for a fwmark service).
    pub port: u16,
    /// Configured `weight` (default: the virtual server's `weight`, itself 1 by default);
    /// what quorum adds up.
    pub weight: u32,
    /// `inhibit_on_failure` (real server, else virtual server): when down, weight 0 instead
    /// of removal.
    pub inhibit_on_failure: bool,
    pub notify_up: Option<Script>,
    pub notify_down: Option<Script>,
    /// Empty: no checker, always up (keepalived adds it and never removes it).
    pub checkers: Vec<CheckSpec>,
}

/// A virtual server's health settings (one per virtual server: a `virtual_server group`'s
/// member services share it, see `also`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub key: SvcKey,
    /// The other services of a `virtual_server group`, checked once with this one (as
    /// keepalived runs one set of checkers per virtual server): each member's key and its
    /// realservers' ports there, in `reals` order.
    pub also: Vec<(SvcKey, Vec<u16>)>,
    pub reals: Vec<RealSpec>,
    /// `quorum` (default 1, lowered to the total weight when above it, as keepalived does):
    /// the live weight it needs; below it, the sorry server.
    pub quorum: u32,
    /// `hysteresis` (default 0; at most quorum − 1): quorum is lost below
    /// quorum − hysteresis and regained at quorum + hysteresis.
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
    /// The virtual server's label for logs (`VIP:PORT`, `FWM N`, or `[GROUP]:PORT` with the
    /// member's port, 0 for a fwmark member).
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
