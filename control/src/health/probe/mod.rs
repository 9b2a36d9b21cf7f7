//! The probes: one async task per check, on a runtime of their own (thread `xlvs-health`), so
//! the control thread never waits on a realserver. Each probe has its checker's deadline; at
//! most [`MAX_CONCURRENT`] run at once. Results go back through a channel and a wakeup of the
//! control thread's event loop.

mod dns;
mod http;
mod icmp;
mod script;
mod tcp;
mod udp;

use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc as tmpsc};

use super::machine::{CheckId, FailKind, Outcome};
use super::spec::{CheckKind, CheckSpec, Script, ScriptDefaults};

pub use script::run_user;

/// Probes running at once, at most.
pub const MAX_CONCURRENT: usize = 512;
/// Notify and quorum scripts running at once, at most (a pool apart from the probes', so a
/// hanging script never holds a probe back).
pub const MAX_SCRIPTS: usize = 64;

/// How long a stopping runtime waits for what still runs.
const FINISH_WAIT: Duration = Duration::from_secs(5);

/// What the control thread asks of the probe runtime.
enum Job {
    /// A probe, to start before `not_after` (else it is dropped: the machine counts it as
    /// lost).
    Probe {
        id: CheckId,
        spec: Arc<CheckSpec>,
        not_after: Instant,
    },
    Script {
        script: Script,
        why: String,
    },
}

/// A probe's result, with how long it took.
#[derive(Debug)]
pub struct Done {
    pub id: CheckId,
    pub spec: Arc<CheckSpec>,
    pub outcome: Outcome,
    pub took: Duration,
}

/// The probe runtime's handle: submit checks, collect results. Dropping it stops the
/// runtime (running probes are abandoned, scripts killed).
pub struct Prober {
    jobs: Option<tmpsc::UnboundedSender<Job>>,
    done: mpsc::Receiver<Done>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Prober {
    /// Starts the runtime; `wake` is called when results are queued (at most once per
    /// [`RESULT_BATCH`]: results are gathered, not announced one by one).
    pub fn start(
        scripts: ScriptDefaults,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let (jobs, mut rx) = tmpsc::unbounded_channel::<Job>();
        let (tx, done) = mpsc::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let scripts = Arc::new(scripts);
        let thread = thread::Builder::new()
            .name("xlvs-health".into())
            .spawn(move || {
                let limit = Arc::new(Semaphore::new(MAX_CONCURRENT));
                let script_limit = Arc::new(Semaphore::new(MAX_SCRIPTS));
                rt.block_on(async move {
                    let (res_tx, res_rx) = tmpsc::unbounded_channel::<Done>();
                    tokio::spawn(forward(res_rx, tx, wake));
                    // Scripts running (omega's must finish before the runtime stops).
                    let mut scripts_running = tokio::task::JoinSet::new();
                    while let Some(job) = rx.recv().await {
                        while scripts_running.try_join_next().is_some() {}
                        let scripts = scripts.clone();
                        match job {
                            Job::Probe {
                                id,
                                spec,
                                not_after,
                            } => {
                                let Ok(permit) = limit.clone().acquire_owned().await else {
                                    break;
                                };
                                if Instant::now() > not_after {
                                    log::debug!(
                                        "probe of {} dropped: started too late",
                                        spec.target
                                    );
                                    continue;
                                }
                                let res_tx = res_tx.clone();
                                tokio::spawn(async move {
                                    let start = Instant::now();
                                    let outcome = probe(&spec, &scripts).await;
                                    drop(permit);
                                    let took = start.elapsed();
                                    let _ = res_tx.send(Done {
                                        id,
                                        spec,
                                        outcome,
                                        took,
                                    });
                                });
                            }
                            Job::Script { script, why } => {
                                let limit = script_limit.clone();
                                scripts_running.spawn(async move {
                                    let Ok(_permit) = limit.acquire_owned().await else {
                                        return;
                                    };
                                    script::notify(&script, &why, &scripts).await;
                                });
                            }
                        }
                    }
                    // Stopping: let running scripts (omega's) finish, within bounds.
                    let all = async { while scripts_running.join_next().await.is_some() {} };
                    let _ = tokio::time::timeout(FINISH_WAIT, all).await;
                });
            })?;
        Ok(Prober {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }

    /// Starts checker `id`'s probe.
    pub fn probe(&self, id: CheckId, spec: Arc<CheckSpec>) {
        if let Some(j) = &self.jobs {
            let not_after = Instant::now() + spec.timeout;
            let _ = j.send(Job::Probe {
                id,
                spec,
                not_after,
            });
        }
    }

    /// Runs a notify or quorum script (its output goes to the log).
    pub fn script(&self, script: Script, why: String) {
        if let Some(j) = &self.jobs {
            let _ = j.send(Job::Script { script, why });
        }
    }

    /// The results that came in.
    pub fn results(&self) -> impl Iterator<Item = Done> + '_ {
        self.done.try_iter()
    }

    /// Stops taking jobs and waits up to `grace` for running scripts (omega's).
    pub fn finish(&mut self, grace: Duration) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let end = Instant::now() + grace;
            while !t.is_finished() && Instant::now() < end {
                thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// How long results gather before the control thread is woken for them: a thousand checks a
/// second cost some fifty wakeups, not a thousand, and a result waits at most this long.
pub const RESULT_BATCH: Duration = Duration::from_millis(20);

/// Hands results to the control thread in batches ([`RESULT_BATCH`]).
async fn forward(
    mut rx: tmpsc::UnboundedReceiver<Done>,
    tx: mpsc::Sender<Done>,
    wake: impl Fn() + Send + Sync + 'static,
) {
    while let Some(first) = rx.recv().await {
        tokio::time::sleep(RESULT_BATCH).await;
        if tx.send(first).is_err() {
            return;
        }
        while let Ok(d) = rx.try_recv() {
            if tx.send(d).is_err() {
                return;
            }
        }
        wake();
    }
}

/// Runs one probe to its outcome within its deadline.
async fn probe(spec: &CheckSpec, scripts: &ScriptDefaults) -> Outcome {
    let fut = async {
        match &spec.kind {
            CheckKind::Tcp => tcp::check(spec).await,
            CheckKind::Http { .. } => http::check(spec).await,
            CheckKind::Dns { qtype, name } => dns::check(spec, *qtype, name).await,
            CheckKind::Misc { .. } => return script::misc(spec, scripts).await,
            CheckKind::Udp { .. } => udp::check(spec).await,
            CheckKind::Ping => icmp::check(spec).await,
        }
    };
    match &spec.kind {
        // A script keeps its own deadline (misc_timeout) and kills what overstays it; an
        // HTTP checker has one per url.
        CheckKind::Misc { .. } | CheckKind::Http { .. } => fut.await,
        _ => match tokio::time::timeout(spec.timeout, fut).await {
            Ok(o) => o,
            Err(_) => Outcome::fail(
                FailKind::Timeout,
                format!("no answer within {:?}", spec.timeout),
            ),
        },
    }
}

/// An I/O error as a failure: refused, or anything else.
fn io_fail(what: &str, e: &std::io::Error) -> Outcome {
    let kind = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => FailKind::Refused,
        std::io::ErrorKind::TimedOut => FailKind::Timeout,
        _ => FailKind::Io,
    };
    Outcome::fail(kind, format!("{what}: {e}"))
}

/// A socket of the target's family with the checker's source address and fwmark set.
fn socket(
    spec: &CheckSpec,
    ty: socket2::Type,
    proto: Option<socket2::Protocol>,
) -> std::io::Result<socket2::Socket> {
    let domain = socket2::Domain::for_address(spec.target);
    let s = socket2::Socket::new(domain, ty.nonblocking().cloexec(), proto)?;
    if let Some(m) = spec.fwmark {
        s.set_mark(m)?;
    }
    if let Some(iface) = &spec.bind_if {
        s.bind_device(Some(iface.as_bytes()))?;
    }
    if let Some(b) = spec.bind {
        if ty == socket2::Type::STREAM {
            s.set_reuse_address(true)?;
        }
        s.bind(&b.into())?;
    }
    Ok(s)
}

/// A UDP socket of the checker's (see [`socket`]), or a raw one of `proto`, connected to its
/// target (port 0 for raw) and registered with the runtime. tokio's UDP socket only
/// registers the descriptor and calls send(2)/recv(2), which a connected raw socket takes
/// as they are.
async fn connected_dgram(
    spec: &CheckSpec,
    raw: Option<socket2::Protocol>,
) -> Result<tokio::net::UdpSocket, Outcome> {
    let ty = if raw.is_some() {
        socket2::Type::RAW
    } else {
        socket2::Type::DGRAM
    };
    let s = socket(spec, ty, raw).map_err(|e| io_fail("socket", &e))?;
    let s = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(s))
        .map_err(|e| io_fail("socket", &e))?;
    let to = match raw {
        Some(_) => std::net::SocketAddr::new(spec.target.ip(), 0),
        None => spec.target,
    };
    s.connect(to).await.map_err(|e| io_fail("connect", &e))?;
    Ok(s)
}

#[cfg(test)]
mod tests;
