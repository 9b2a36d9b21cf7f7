//! Restarts that keep every connection (beyond IPVS, whose table dies with the module).
//!
//! An orderly stop (SIGTERM, SIGINT: `systemctl restart`, a package upgrade) with
//! `--restart-hold` > 0 and the XDP links pinned:
//! 1. stops the workers, so the table holds still;
//! 2. writes it to `--state-dir`/`conns@netINODE` ([`codec`]: the resync walk's sync v1 messages,
//!    by origin, with the time each entry has left);
//! 3. tells the XDP program to keep dropping the virtual services' frames (no socket to take
//!    them now) until the hold ends, then to pass them to the kernel as if no director ran;
//! 4. exits with the links pinned, so the program stays on the interfaces.
//!
//! The next xlvsd swaps its program into the pinned links ([`crate::xdp`]), reads the file
//! (and removes it), and hands its entries to its workers through the same checks and queues
//! as a resync's, *before* the swap: the first frame it takes finds its connection. Between
//! the two, clients see a short silence, which TCP retransmits through: no reset, no
//! connection lost. A crash (SIGKILL, a panic) saves nothing; with a sync peer the restarted
//! director pulls the table back ([`crate::sync::resync`]).

pub mod codec;

#[cfg(test)]
mod tests;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use xlvs_dataplane::core::Instant;
use xlvs_dataplane::core::conn::Tables;

pub use codec::Restored;

/// The saved table's file in the state directory: `conns@netINODE`, this network
/// namespace's (each namespace has its own interfaces, pins and director).
pub fn state_file(dir: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt as _;
    match std::fs::metadata("/proc/self/ns/net") {
        Ok(m) => dir.join(format!("conns@net{}", m.ino())),
        Err(_) => dir.join("conns"),
    }
}

/// Writes `tables` (as they are at `now`, the workers stopped) to `path`, through a temporary
/// file renamed into place. Returns the entries written.
pub fn save(path: &Path, tables: &Tables, now: Instant) -> anyhow::Result<u64> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let n = codec::encode(tables, now, |b| w.write_all(b))
        .and_then(|n| w.flush().map(|()| n))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(n)
}

/// Reads and removes the table saved at `path`, if there is one.
pub fn load(path: &Path, now: Instant) -> anyhow::Result<Option<Restored>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    // Read once: a table that cannot be used now never will be.
    let _ = std::fs::remove_file(path);
    codec::decode(&data, now)
        .map(Some)
        .with_context(|| path.display().to_string())
}
