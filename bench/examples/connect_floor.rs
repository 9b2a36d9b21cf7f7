//! The floor under a TCP health checker: the kernel's own cost of RATE TCP connections per
//! second (socket, connect, reset) to the addresses in a file (one per line, port 80), with
//! nothing else, for SECONDS. Prints the CPU time it used as a percentage of one core
//! (`/proc/self/schedstat`). `scripts/bench_health.sh` runs it in the same lab as xlvsd's
//! checks, so the two figures compare side by side.
//!
//!   connect_floor ADDRS RATE SECONDS

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn cpu_ns() -> u64 {
    let mut s = String::new();
    let _ = std::fs::File::open("/proc/self/schedstat").and_then(|mut f| f.read_to_string(&mut s));
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, rate, secs] = &args[..] else {
        anyhow::bail!("usage: connect_floor ADDRS RATE SECONDS");
    };
    let addrs: Vec<SocketAddr> = std::fs::read_to_string(file)?
        .lines()
        .filter_map(|l| l.trim().parse::<IpAddr>().ok())
        .map(|a| SocketAddr::new(a, 80))
        .collect();
    anyhow::ensure!(!addrs.is_empty(), "no addresses in {file}");
    let rate: u64 = rate.parse()?;
    let secs: u64 = secs.parse()?;
    let gap = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let (start, cpu0) = (Instant::now(), cpu_ns());
    let (mut ok, mut failed) = (0u64, 0u64);
    let n = rate * secs;
    for i in 0..n {
        let due = start + gap * i as u32;
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        match TcpStream::connect_timeout(&addrs[i as usize % addrs.len()], Duration::from_secs(2)) {
            Ok(s) => {
                // Reset, as the checker does (no TIME_WAIT).
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                ok += 1;
            }
            Err(_) => failed += 1,
        }
    }
    let cpu = cpu_ns() - cpu0;
    let wall = start.elapsed().as_secs_f64();
    println!(
        "connect_floor: cpu={:.2}% connects/s={:.0} failed={failed} ({} addresses)",
        100.0 * cpu as f64 / 1e9 / wall,
        ok as f64 / wall,
        addrs.len()
    );
    Ok(())
}
