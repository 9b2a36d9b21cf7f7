//! ns per packet through `Core::process` at a given table size:
//! `scale [nat|reply|dr|syn] FLOWS PACKETS`. Opens FLOWS connections (a SYN each, so the table
//! holds FLOWS), then, one at a time and then in batches of 32 after `Core::prefetch` (as the
//! workers run), forwards PACKETS
//! - `nat`, `dr`: client → server ACKs, visiting the flows in a scattered order (stride 7919);
//! - `reply`: LVS-NAT server → client ACKs, in the same order;
//! - `syn`: SYNs of new connections (into the table of FLOWS; it ends with FLOWS + 2 PACKETS),
//!   whose slots are memory the process never touched (the OS zeroes each page, a huge page
//!   at a time, on its first write);
//! - `syn-warm`: the same SYNs into slots that other connections used and left (opened and
//!   removed before the timed loops), as in a director that has run a while: its table's
//!   memory committed, connections coming and going.
//!
//! Prints both figures. The frames are one template whose addresses and ports are patched per
//! packet (the core does not verify checksums; it updates them incrementally), so no per-flow
//! frame is kept and 10 M flows fit. The two timed loops are functions of their own
//! (`single`, `batched`): under `valgrind --tool=callgrind --cache-sim=yes` their inclusive
//! cost divided by PACKETS is the instructions and the simulated last-level cache misses
//! per packet at this table size. At 10 M the opening is too slow to simulate: with
//! `SCALE_WAIT_FOR=FILE` the example waits (up to a minute) after opening until FILE exists,
//! so that a script can run valgrind with `--instr-atstart=no`, switch the instrumentation
//! on (`callgrind_control -i on`) and then create FILE (`scripts/scale_callgrind.sh`).
//! Compare versions side by side by running two builds' binaries alternately.

use std::time::Instant as StdInstant;

use xlvs_bench::*;
use xlvs_dataplane::core::Instant;
use xlvs_dataplane::core::service::Fwd;
use xlvs_dataplane::wire::tcp::{ACK, SYN};

fn main() {
    let mut args = std::env::args().skip(1);
    let which: String = arg(&mut args, "nat".into());
    let flows: u32 = arg(&mut args, 10_000);
    let packets: usize = arg(&mut args, 10_000_000);
    let mode = match which.as_str() {
        "nat" => Mode::Nat,
        "reply" => Mode::Reply,
        "dr" => Mode::Dr,
        "syn" => Mode::Syn,
        "syn-warm" => Mode::SynWarm,
        _ => {
            eprintln!("usage: scale [nat|reply|dr|syn|syn-warm] FLOWS PACKETS");
            std::process::exit(2);
        }
    };
    let fwd = if mode == Mode::Dr {
        Fwd::Route
    } else {
        Fwd::Masq
    };
    // SYN: room for the new connections of both loops.
    let syn = matches!(mode, Mode::Syn | Mode::SynWarm);
    let room = flows as usize + if syn { 2 * packets } else { 0 };
    let (mut core, snap) = setup(fwd, room.next_power_of_two().max(1 << 16));
    let t0 = StdInstant::now();
    let (opened, rs) = open_flows(&mut core, &snap, flows);
    eprintln!(
        "{which}: {opened} of {flows} connections opened in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    if mode == Mode::SynWarm {
        warm(&mut core, &snap, flows, 2 * packets as u32);
    }
    if let Some(p) = std::env::var_os("SCALE_WAIT_FOR") {
        eprintln!("{which}: waiting for {}", p.to_string_lossy());
        for _ in 0..600 {
            if std::path::Path::new(&p).exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let frames = Frames::new(mode, flows, rs);
    let single = single(&mut core, &snap, &frames, packets);
    let batched = batched(&mut core, &snap, &frames, packets);
    println!(
        "{which} flows {flows}: {:.1} ns/packet single, {:.1} batched 32 ({} of {packets} forwarded single)",
        single.0, batched, single.1
    );
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Nat,
    Reply,
    Dr,
    Syn,
    SynWarm,
}

/// Opens `n` connections other than the timed loops' (numbered from `flows + n`) and removes
/// them, so the loops' new connections take slots already used (from this thread's free
/// list) rather than fresh memory.
fn warm(
    core: &mut xlvs_dataplane::core::Core,
    snap: &xlvs_dataplane::core::service::Snapshot,
    flows: u32,
    n: u32,
) {
    let t = StdInstant::now();
    open_flows_in(core, snap, flows + n..flows + 2 * n);
    let tables = core.tables().clone();
    let mut removed = 0;
    // In a scattered order (as the timed loops visit flows), as connections end in a
    // director: the free list then holds slots from all over the table.
    let mut j = 0;
    for _ in 0..n {
        j = scatter_next(j, n as usize);
        let i = flows + n + j as u32;
        let key = xlvs_dataplane::core::conn::ConnKey {
            src: client(i),
            dst: VIP,
            sport: client_port(i),
            dport: 80,
            proto: 6,
        };
        if let Some(found) = tables.v4.lookup(&key) {
            found.remove(Instant(1));
            removed += 1;
        }
    }
    eprintln!(
        "syn-warm: {removed} of {n} connections opened and removed in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

/// Builds the frame of the benchmark's k-th packet in place.
struct Frames {
    mode: Mode,
    template: Vec<u8>,
    flows: u32,
    rs: Vec<u8>,
    /// The flow of the next packet (scattered order), or the next new connection's number.
    next: std::cell::Cell<u32>,
}

impl Frames {
    fn new(mode: Mode, flows: u32, rs: Vec<u8>) -> Frames {
        let template = match mode {
            Mode::Nat | Mode::Dr => client_frame(0, ACK),
            Mode::Syn | Mode::SynWarm => client_frame(0, SYN),
            Mode::Reply => reply_frame(),
        };
        let next = if matches!(mode, Mode::Syn | Mode::SynWarm) {
            flows
        } else {
            0
        };
        Frames {
            mode,
            template,
            flows,
            rs,
            next: std::cell::Cell::new(next),
        }
    }

    /// The next packet's frame into `buf`; returns its length and the interface it comes in
    /// on.
    #[inline(always)]
    fn next_into(&self, buf: &mut [u8]) -> (usize, u8) {
        let n = self.template.len();
        buf[..n].copy_from_slice(&self.template);
        let i = self.next.get();
        if matches!(self.mode, Mode::Syn | Mode::SynWarm) {
            self.next.set(i + 1);
        } else {
            self.next
                .set(scatter_next(i as usize, self.flows as usize) as u32);
        }
        if self.mode == Mode::Reply {
            set_reply(&mut buf[..n], i, self.rs[i as usize]);
            (n, 1)
        } else {
            set_client(&mut buf[..n], i);
            (n, 0)
        }
    }
}

/// One packet at a time: ns per packet and how many were forwarded.
#[inline(never)]
fn single(
    core: &mut xlvs_dataplane::core::Core,
    snap: &xlvs_dataplane::core::service::Snapshot,
    frames: &Frames,
    packets: usize,
) -> (f64, usize) {
    let mut buf = [0u8; 64];
    let mut tx = 0usize;
    let t = StdInstant::now();
    for _ in 0..packets {
        let (n, iface) = frames.next_into(&mut buf);
        tx += matches!(
            core.process(Instant(2), snap, &mut buf[..n], iface),
            xlvs_dataplane::core::Verdict::Tx(_)
        ) as usize;
    }
    (t.elapsed().as_nanos() as f64 / packets as f64, tx)
}

/// In batches of 32, their table loads started first (as a worker runs): ns per packet.
#[inline(never)]
fn batched(
    core: &mut xlvs_dataplane::core::Core,
    snap: &xlvs_dataplane::core::service::Snapshot,
    frames: &Frames,
    packets: usize,
) -> f64 {
    let mut bufs = [[0u8; 64]; BATCH];
    let mut ifaces = [0u8; BATCH];
    let t = StdInstant::now();
    for _ in 0..packets / BATCH {
        for (b, i) in bufs.iter_mut().zip(ifaces.iter_mut()) {
            *i = frames.next_into(b).1;
        }
        core.prefetch(bufs.iter().map(|b| &b[..]));
        for (b, &i) in bufs.iter_mut().zip(ifaces.iter()) {
            std::hint::black_box(core.process(Instant(3), snap, b, i));
        }
    }
    t.elapsed().as_nanos() as f64 / (packets / BATCH * BATCH) as f64
}
