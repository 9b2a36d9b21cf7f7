//! The control thread's event loop: one `mio` poll over every source, woken by events and by
//! the next deadline [`Control::poll_timeout`] gives, never by a fixed tick. Nothing in it
//! blocks: an admin client is read and answered as its socket allows (a slow or silent one
//! costs a buffer and a deadline), a next hop that does not answer costs a retry timer.
//!
//! Sources (tokens):
//! - the admin socket: accepted clients send one [`Request`] line and get one answer; an
//!   answer to a change that added realservers waits (without blocking anything) until their
//!   next hops are resolved or [`super::resolver::SETTLE`] passed, as ipvsadm returns once
//!   the kernel has the change;
//! - signals (an eventfd the handlers write): SIGHUP reloads `--rules`, SIGINT/SIGTERM stop;
//! - rtnetlink notifications: neighbours, routes, the director's addresses;
//! - the waker of the metrics thread, of the health probes' runtime and of the resync
//!   puller: scrapes to render, probe results to apply, resync entries to hand out;
//! - the sync backup's socket, while a backup daemon runs;
//! - deadlines: housekeeping, next-hop retries, health checks to start, the sync master's
//!   drain and flush, resync entries to retry.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::control::Control;
use crate::admin::{MAX_REQUEST, Request, Response};
use crate::command::{CmdError, Command};
use crate::metrics::Scrape;
use crate::netlink;
use crate::sys::{self, SignalFd};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const NETLINK: Token = Token(2);
const WAKER: Token = Token(3);
/// The connection sync backup's socket.
const SYNC: Token = Token(4);
/// Admin clients get tokens from here on.
const FIRST_CLIENT: usize = 16;

/// How long a client may take to send its request.
pub const READ_TIME: Duration = Duration::from_secs(2);
/// How long a client may take to read its answer.
pub const WRITE_TIME: Duration = Duration::from_secs(10);
/// Clients served at once; beyond, the oldest one still sending its request is closed
/// (counted, logged at most once a minute), so a flood of idle connections can take
/// neither the daemon's descriptors nor the next real client's turn.
pub const MAX_CLIENTS: usize = 64;

/// What the loop polls besides its own waker.
pub struct Sources {
    /// The admin socket (non-blocking).
    pub listener: UnixListener,
    pub signals: SignalFd,
    /// rtnetlink notifications (None if the subscription failed: next hops are then found
    /// by the retry timers only).
    pub netlink: Option<netlink::Events>,
    /// Scrapes from the metrics thread, which wakes the loop through [`EventLoop::waker`].
    pub scrapes: Receiver<Scrape>,
}

/// Where an admin client is.
enum Phase {
    /// Its request line is coming.
    Reading,
    /// Its answer waits for new next hops to settle.
    Parked(Vec<u8>),
    /// Its answer is going out.
    Writing { out: Vec<u8>, sent: usize },
}

struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
    phase: Phase,
    deadline: Instant,
    /// Root or this daemon's own user: may run every command; others (members of
    /// `--control-group`) only those that read.
    privileged: bool,
}

/// The control thread's event loop.
pub struct EventLoop {
    poll: Poll,
    waker: Arc<Waker>,
    clients: HashMap<usize, Client>,
    next_token: usize,
    /// Clients closed to make room: [`MAX_CLIENTS`] were being served.
    refused: u64,
    /// When a refusal may be logged again.
    refused_logged: Option<Instant>,
}

impl EventLoop {
    pub fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(EventLoop {
            poll,
            waker,
            clients: HashMap::new(),
            next_token: FIRST_CLIENT,
            refused: 0,
            refused_logged: None,
        })
    }

    /// Wakes the loop from another thread (the metrics server, after queueing a scrape).
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Runs until SIGINT/SIGTERM. `ready` is called once, when the first next hops are
    /// resolved (or [`super::resolver::SETTLE`] passed).
    pub fn run(
        &mut self,
        ctl: &mut Control,
        mut src: Sources,
        ready: impl FnOnce(),
    ) -> io::Result<()> {
        let reg = self.poll.registry();
        reg.register(&mut src.listener, LISTENER, Interest::READABLE)?;
        reg.register(
            &mut SourceFd(&src.signals.as_raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )?;
        if let Some(nl) = &src.netlink {
            reg.register(&mut SourceFd(&nl.as_raw_fd()), NETLINK, Interest::READABLE)?;
        }
        let mut ready = Some(ready);
        let mut events = Events::with_capacity(64);
        // The sync backup's socket, registered while one runs.
        let mut sync_fd: Option<std::os::fd::RawFd> = None;
        while !sys::stop_requested() {
            let now = Instant::now();
            let fd = ctl.sync_fd();
            if fd != sync_fd {
                if let Some(old) = sync_fd {
                    let _ = self.poll.registry().deregister(&mut SourceFd(&old));
                }
                if let Some(new) = fd {
                    self.poll
                        .registry()
                        .register(&mut SourceFd(&new), SYNC, Interest::READABLE)?;
                }
                sync_fd = fd;
            }
            let settling = ctl.settling(now);
            if !settling {
                if let Some(r) = ready.take() {
                    r();
                }
                self.release_parked()?;
            }
            // A parked answer waits for the settle deadline, which `poll_timeout` includes.
            let deadline = self
                .clients
                .values()
                .filter(|c| !matches!(c.phase, Phase::Parked(_)))
                .map(|c| c.deadline)
                .chain([ctl.poll_timeout(now)])
                .min()
                .unwrap_or(now);
            let timeout = deadline.saturating_duration_since(now);
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                let now = Instant::now();
                match ev.token() {
                    LISTENER => self.accept(&src.listener, now)?,
                    SIGNALS => {
                        src.signals.drain();
                        if sys::reload_requested() {
                            sys::sd_notify("RELOADING=1");
                            ctl.reload(now);
                            sys::sd_notify("READY=1");
                        }
                    }
                    NETLINK => {
                        if let Some(nl) = &src.netlink {
                            let c = nl.drain();
                            if c.neighbours {
                                ctl.neighbours_changed(now);
                            }
                            if c.addresses {
                                ctl.addresses_changed(now);
                            }
                            if c.links {
                                ctl.links_changed(now);
                            }
                        }
                    }
                    SYNC => ctl.sync_readable(),
                    WAKER => {
                        ctl.woken(now);
                        ctl.health_results(now);
                        while let Ok(reply) = src.scrapes.try_recv() {
                            let _ = reply.send(ctl.metrics());
                        }
                    }
                    Token(t) => self.client_event(t, ctl, now),
                }
            }
            let now = Instant::now();
            ctl.handle_timeout(now);
            self.drop_late_clients(now);
        }
        Ok(())
    }

    fn accept(&mut self, listener: &UnixListener, now: Instant) -> io::Result<()> {
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    if self.clients.len() >= MAX_CLIENTS {
                        // The oldest client still sending its request makes room: a flood
                        // of idle connections churns, the next real request is served.
                        let oldest = self
                            .clients
                            .iter()
                            .filter(|(_, c)| matches!(c.phase, Phase::Reading))
                            .min_by_key(|(_, c)| c.deadline)
                            .map(|(t, _)| *t);
                        self.refused += 1;
                        if self.refused_logged.is_none_or(|t| now >= t) {
                            log::warn!(
                                "control socket: {MAX_CLIENTS} clients at once; closing the oldest idle ones ({} so far)",
                                self.refused
                            );
                            self.refused_logged = Some(now + Duration::from_secs(60));
                        }
                        match oldest {
                            Some(t) => self.close(t),
                            None => {
                                drop(stream);
                                continue;
                            }
                        }
                    }
                    let uid = {
                        use std::os::fd::AsRawFd as _;
                        sys::peer_uid(stream.as_raw_fd())
                    };
                    let privileged = uid.is_some_and(|u| u == 0 || u == sys::euid());
                    let t = self.next_token;
                    self.next_token += 1;
                    self.poll
                        .registry()
                        .register(&mut stream, Token(t), Interest::READABLE)?;
                    self.clients.insert(
                        t,
                        Client {
                            stream,
                            buf: Vec::new(),
                            phase: Phase::Reading,
                            deadline: now + READ_TIME,
                            privileged,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => {
                    log::warn!("control socket: {e}");
                    return Ok(());
                }
            }
        }
    }

    fn client_event(&mut self, t: usize, ctl: &mut Control, now: Instant) {
        let Some(c) = self.clients.get_mut(&t) else {
            return;
        };
        let done = match c.phase {
            Phase::Reading => read_request(c, ctl, now),
            Phase::Parked(_) => Ok(false),
            Phase::Writing { .. } => write_answer(c),
        };
        match done {
            Ok(false) => {
                if let Some(c) = self.clients.get_mut(&t)
                    && matches!(c.phase, Phase::Writing { .. })
                {
                    let _ = self.poll.registry().reregister(
                        &mut c.stream,
                        Token(t),
                        Interest::WRITABLE,
                    );
                }
            }
            Ok(true) => self.close(t),
            Err(e) => {
                log::warn!("control client: {e}");
                self.close(t);
            }
        }
    }

    /// Starts sending the answers that waited for next hops.
    fn release_parked(&mut self) -> io::Result<()> {
        for (t, c) in self.clients.iter_mut() {
            if let Phase::Parked(out) = &mut c.phase {
                c.phase = Phase::Writing {
                    out: std::mem::take(out),
                    sent: 0,
                };
                c.deadline = Instant::now() + WRITE_TIME;
                self.poll
                    .registry()
                    .reregister(&mut c.stream, Token(*t), Interest::WRITABLE)?;
            }
        }
        Ok(())
    }

    fn drop_late_clients(&mut self, now: Instant) {
        let late: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| now >= c.deadline && !matches!(c.phase, Phase::Parked(_)))
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            log::warn!("control client too slow; dropped");
            self.close(t);
        }
    }

    fn close(&mut self, t: usize) {
        if let Some(mut c) = self.clients.remove(&t) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }
}

/// Reads what the client sent; once its line is complete, executes it and moves it on to
/// [`Phase::Parked`] or [`Phase::Writing`]. True if the client is done with (it hung up).
fn read_request(c: &mut Client, ctl: &mut Control, now: Instant) -> io::Result<bool> {
    let mut chunk = [0u8; 64 * 1024];
    let mut eof = false;
    loop {
        match c.stream.read(&mut chunk) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if c.buf.len() > MAX_REQUEST {
            break;
        }
    }
    let answer = match c.buf.iter().position(|&b| b == b'\n') {
        Some(end) => {
            let resp = match Request::decode(&c.buf[..end]) {
                Ok(req) if !c.privileged && !req.command.reads_only() => {
                    Response::err(CmdError::op(
                        "permission denied: only root changes the director (members of the control group may list)",
                    ))
                }
                Ok(req) => {
                    let resp = ctl.execute(&req, now);
                    if resp.code == 0 && changes_table(&req.command) && ctl.settling(now) {
                        c.phase = Phase::Parked(resp.encode());
                        return Ok(false);
                    }
                    resp
                }
                Err(e) => Response::err(e),
            };
            resp.encode()
        }
        None if c.buf.len() > MAX_REQUEST => Response::err(CmdError::usage(format!(
            "request larger than {MAX_REQUEST} bytes"
        )))
        .encode(),
        // Hung up before a whole line: nothing to answer.
        None => return Ok(eof),
    };
    c.phase = Phase::Writing {
        out: answer,
        sent: 0,
    };
    c.deadline = now + WRITE_TIME;
    write_answer(c)
}

/// Sends what the socket takes of the answer. True once all of it went.
fn write_answer(c: &mut Client) -> io::Result<bool> {
    let Phase::Writing { out, sent } = &mut c.phase else {
        return Ok(false);
    };
    while *sent < out.len() {
        match c.stream.write(&out[*sent..]) {
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A command whose answer waits for the next hops of the realservers it may add.
fn changes_table(c: &Command) -> bool {
    c.edits_table() || *c == Command::Restore
}
