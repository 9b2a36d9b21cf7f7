//! Scripts: `MISC_CHECK`'s `misc_path` and the notify and quorum scripts. Run without a shell
//! (argv as configured), as the configured user, their output captured to the log; a
//! `MISC_CHECK` that outlives `misc_timeout` is killed with its process group and fails.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::health::machine::{FailKind, Outcome};
use crate::health::spec::{CheckKind, CheckSpec, Script, ScriptDefaults};

/// Output kept per script run (the rest is dropped).
const MAX_OUTPUT: usize = 64 << 10;

/// The (uid, gid) a script runs as: its own user, else `script_user`, else keepalived's
/// default (`keepalived_script` if that user exists, else root).
pub fn run_user(script: &Script, defaults: &ScriptDefaults) -> Result<(u32, u32), String> {
    let named = script.user.as_ref().or(defaults.script_user.as_ref());
    match named {
        Some((user, group)) => {
            let (uid, pgid) = lookup_user(user).ok_or_else(|| format!("no user {user:?}"))?;
            let gid = match group {
                Some(g) => lookup_group(g).ok_or_else(|| format!("no group {g:?}"))?,
                None => pgid,
            };
            Ok((uid, gid))
        }
        None => Ok(lookup_user("keepalived_script").unwrap_or((0, 0))),
    }
}

/// (uid, primary gid) of `user` from /etc/passwd (or a numeric uid).
fn lookup_user(user: &str) -> Option<(u32, u32)> {
    let numeric = user.parse::<u32>().ok();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let found = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let uid: u32 = f.get(2)?.parse().ok()?;
        let matches = f.len() >= 4 && (f[0] == user || numeric == Some(uid));
        matches.then(|| Some((uid, f[3].parse().ok()?)))?
    });
    // A numeric uid without a passwd entry runs with the same number as its group.
    found.or(numeric.map(|u| (u, u)))
}

fn lookup_group(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Some(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[0] == group).then(|| f[2].parse().ok())?
    })
}

/// keepalived's `enable_script_security` (`check_script_secure`): the script and every
/// directory above it must be owned by root, and writable by no one else (a group write
/// bit counts only for a non-root group; a sticky directory such as /tmp is fine).
fn insecure(path: &Path) -> Option<String> {
    let mut p = Some(path);
    while let Some(cur) = p {
        match std::fs::metadata(cur) {
            Ok(m) => {
                let sticky_dir = m.is_dir() && m.mode() & 0o1000 != 0;
                let writable = (m.gid() != 0 && m.mode() & 0o020 != 0) || m.mode() & 0o002 != 0;
                if m.uid() != 0 || (!sticky_dir && writable) {
                    return Some(format!("unsafe permissions on {}", cur.display()));
                }
            }
            Err(e) => return Some(format!("{}: {e}", cur.display())),
        }
        p = cur.parent().filter(|p| !p.as_os_str().is_empty());
    }
    None
}

/// How a script run ended.
enum Ended {
    Exit(i32),
    Signal(i32),
    TimedOut,
}

/// Runs `script` (killing it at `timeout`), logging its output under `why`.
async fn run(
    script: &Script,
    why: &str,
    defaults: &ScriptDefaults,
    timeout: Option<Duration>,
) -> Result<Ended, String> {
    let Some(prog) = script.argv.first() else {
        return Err("empty command".into());
    };
    let (uid, gid) = run_user(script, defaults)?;
    if defaults.enable_script_security
        && uid == 0
        && let Some(why) = insecure(Path::new(prog))
    {
        return Err(format!("refused by enable_script_security: {why}"));
    }
    let mut cmd = Command::new(prog);
    cmd.args(&script.argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if uid != 0 || gid != 0 {
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd.spawn().map_err(|e| format!("{prog}: {e}"))?;
    let pid = child.id();
    // Both pipes read at once (a script filling one while we wait on the other would hang),
    // kept up to MAX_OUTPUT each and drained past it.
    let out = child.stdout.take();
    let err = child.stderr.take();
    let output = async move { tokio::join!(read_capped(out), read_capped(err)) };
    tokio::pin!(output);
    let run = async {
        let status = child.wait().await;
        // A child the script left behind may hold the pipes: what came by then is enough.
        let pipes = tokio::time::timeout(PIPE_GRACE, &mut output).await.ok();
        (status, pipes)
    };
    let res = match timeout {
        Some(t) => tokio::time::timeout(t, run).await.ok(),
        None => Some(run.await),
    };
    let Some((status, pipes)) = res else {
        kill_group(pid);
        log::warn!(
            "{why}: {prog} killed after {:?}",
            timeout.unwrap_or_default()
        );
        return Ok(Ended::TimedOut);
    };
    if let Some((o, e)) = pipes {
        for line in String::from_utf8_lossy(&o)
            .lines()
            .chain(String::from_utf8_lossy(&e).lines())
        {
            log::info!("{why}: {prog}: {line}");
        }
    }
    let status = status.map_err(|e| format!("{prog}: {e}"))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => Ended::Exit(c),
        (None, Some(s)) => Ended::Signal(s),
        (None, None) => Ended::Signal(0),
    })
}

/// How long a script's output is still read after it exited.
const PIPE_GRACE: Duration = Duration::from_millis(100);

/// How long a notify or quorum script may run before it is killed with its process group.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads a pipe to its end, keeping the first [`MAX_OUTPUT`] bytes.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut p) = pipe else { return kept };
    let mut buf = [0u8; 4096];
    loop {
        match p.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// Kills a timed-out script's whole process group (it runs in its own, see `run`).
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is
        // touched.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// `MISC_CHECK`: exit 0 passes, 1 fails; with `misc_dynamic`, 2–255 pass with weight
/// code − 2 (keepalived's convention).
pub(super) async fn misc(spec: &CheckSpec, defaults: &ScriptDefaults) -> Outcome {
    let CheckKind::Misc {
        script,
        timeout,
        dynamic,
    } = &spec.kind
    else {
        return Outcome::fail(FailKind::Spawn, "not a MISC_CHECK");
    };
    let why = format!("MISC_CHECK of {}", spec.target);
    let timeout = timeout.unwrap_or(spec.timeout);
    match run(script, &why, defaults, Some(timeout)).await {
        Err(e) => Outcome::fail(FailKind::Spawn, e),
        Ok(Ended::TimedOut) => {
            Outcome::fail(FailKind::Killed, format!("timed out after {timeout:?}"))
        }
        Ok(Ended::Signal(s)) => Outcome::fail(FailKind::Killed, format!("killed by signal {s}")),
        Ok(Ended::Exit(0)) => Outcome::PASS,
        Ok(Ended::Exit(c)) if *dynamic && (2..=255).contains(&c) => Outcome::Pass {
            weight: Some(c as u32 - 2),
        },
        Ok(Ended::Exit(c)) => Outcome::fail(FailKind::Exit, format!("exit code {c}")),
    }
}

/// A notify or quorum script: run, its outcome logged.
pub(super) async fn notify(script: &Script, why: &str, defaults: &ScriptDefaults) {
    let prog = script.argv.first().map_or("", String::as_str);
    match run(script, why, defaults, Some(NOTIFY_TIMEOUT)).await {
        Ok(Ended::Exit(0)) => log::info!("{why}: {prog} ran"),
        Ok(Ended::Exit(c)) => log::warn!("{why}: {prog} exited {c}"),
        Ok(Ended::Signal(s)) => log::warn!("{why}: {prog} killed by signal {s}"),
        Ok(Ended::TimedOut) => {}
        Err(e) => log::warn!("{why}: {e}"),
    }
}
