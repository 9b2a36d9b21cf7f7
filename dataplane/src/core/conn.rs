//! The connection table, shared by all workers.
//!
//! A connection is found from either direction: its *in* entry is keyed by the client's frame
//! as the director receives it (client → VIP), and for LVS-NAT an *out* entry is keyed by the
//! realserver's reply (RIP → client) and points back at the in key. Replies may arrive on any RX
//! queue, so the table is shared: a `DashMap` (sharded `RwLock`ed hash maps, ahash hasher), one
//! shard lock held per lookup, never across a batch. docs/BENCHMARKS.md has the measurements.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use super::Instant;
use super::service::{DestState, Fwd, NextHop, Proto};
use super::tcp_state::TcpState;

/// A 5-tuple as seen on the wire in one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// A connection (IPVS `struct ip_vs_conn`).
#[derive(Debug)]
pub struct Conn {
    pub proto: Proto,
    pub caddr: Ipv4Addr,
    pub cport: u16,
    pub vaddr: Ipv4Addr,
    pub vport: u16,
    pub daddr: Ipv4Addr,
    pub dport: u16,
    pub fwd: Fwd,
    pub state: TcpState,
    /// Counted in the realserver's inactive connections rather than its active ones.
    pub inactive: bool,
    /// IPVS `IP_VS_CONN_F_NOOUTPUT`: set for every method but NAT, so LVS-DR connections use the
    /// INPUT-ONLY state table; NAT connections use INPUT and OUTPUT from the start.
    pub no_output: bool,
    pub last_seen: Instant,
    pub timeout: Duration,
    pub dest: Arc<DestState>,
    /// Where the client's frames came from: replies go back through it (LVS-NAT).
    pub client_hop: NextHop,
}

impl Conn {
    /// Moves the realserver's active/inactive counters when the state crosses between an
    /// active and an inactive state (IPVS `set_tcp_state` with `tcp_state_active`, Linux ≥ 4.9).
    pub fn set_state(&mut self, new: TcpState) {
        if new == self.state {
            return;
        }
        let active = new.is_active();
        if !self.inactive && !active {
            self.dest.active.fetch_sub(1, Ordering::Relaxed);
            self.dest.inactive.fetch_add(1, Ordering::Relaxed);
            self.inactive = true;
        } else if self.inactive && active {
            self.dest.inactive.fetch_sub(1, Ordering::Relaxed);
            self.dest.active.fetch_add(1, Ordering::Relaxed);
            self.inactive = false;
        }
        self.state = new;
    }

    /// The key of the realserver's replies (LVS-NAT only).
    pub fn out_key(&self) -> ConnKey {
        ConnKey {
            src: self.daddr.to_bits(),
            dst: self.caddr.to_bits(),
            sport: self.dport,
            dport: self.cport,
            proto: self.proto.number(),
        }
    }

    pub fn in_key(&self) -> ConnKey {
        ConnKey {
            src: self.caddr.to_bits(),
            dst: self.vaddr.to_bits(),
            sport: self.cport,
            dport: self.vport,
            proto: self.proto.number(),
        }
    }

    pub fn expired(&self, now: Instant) -> bool {
        now.since(self.last_seen) >= self.timeout
    }

    /// Releases the connection's hold on its realserver's counters (IPVS `ip_vs_unbind_dest`).
    fn unbind(&self) {
        if self.inactive {
            self.dest.inactive.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.dest.active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A table entry: the connection itself, or the reply direction's pointer to it.
#[derive(Debug)]
pub enum Entry {
    In(Conn),
    Out(ConnKey),
}

/// Why a connection could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// The table holds its configured maximum of connections.
    Full,
}

/// The shared connection table.
#[derive(Debug)]
pub struct ConnTable {
    map: DashMap<ConnKey, Entry, ahash::RandomState>,
    conns: AtomicUsize,
    max: usize,
}

impl ConnTable {
    /// A table for at most `max` connections.
    pub fn new(max: usize) -> Self {
        ConnTable {
            map: DashMap::with_hasher(ahash::RandomState::new()),
            conns: AtomicUsize::new(0),
            max,
        }
    }

    /// Number of connections (not entries).
    pub fn len(&self) -> usize {
        self.conns.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub(crate) fn map(&self) -> &DashMap<ConnKey, Entry, ahash::RandomState> {
        &self.map
    }

    /// Adds a new connection and binds it to its realserver's counters, active or inactive as
    /// its `inactive` flag says (IPVS `ip_vs_bind_dest`).
    pub fn insert(&self, conn: Conn) -> Result<(), InsertError> {
        if self.conns.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.conns.fetch_sub(1, Ordering::Relaxed);
            return Err(InsertError::Full);
        }
        if conn.inactive {
            conn.dest.inactive.fetch_add(1, Ordering::Relaxed);
        } else {
            conn.dest.active.fetch_add(1, Ordering::Relaxed);
        }
        let in_key = conn.in_key();
        let out_key = (conn.fwd == Fwd::Masq).then(|| conn.out_key());
        if let Some(old) = self.map.insert(in_key, Entry::In(conn)) {
            // Two workers raced to create the same connection: release the loser (and its out
            // entry) before adding the winner's out entry, which may have the same key.
            self.release(old);
        }
        if let Some(k) = out_key {
            self.map.insert(k, Entry::Out(in_key));
        }
        Ok(())
    }

    /// Removes the connection whose in key is `in_key` (and its out entry).
    pub fn remove(&self, in_key: &ConnKey) -> bool {
        match self.map.remove_if(in_key, |_, v| matches!(v, Entry::In(_))) {
            Some((_, e)) => {
                self.release(e);
                true
            }
            None => false,
        }
    }

    fn release(&self, e: Entry) {
        if let Entry::In(c) = e {
            if c.fwd == Fwd::Masq {
                let ok = c.out_key();
                self.map
                    .remove_if(&ok, |_, v| matches!(v, Entry::Out(k) if *k == c.in_key()));
            }
            c.unbind();
            self.conns.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Removes every connection idle past its timeout; returns how many went.
    ///
    /// This walks the whole table and is run by the control thread, off the packet path, about
    /// once a second. It holds one shard lock at a time.
    pub fn expire(&self, now: Instant) -> usize {
        let mut gone_out = Vec::new();
        let mut removed = 0usize;
        self.map.retain(|_, e| match e {
            Entry::In(c) if c.expired(now) => {
                if c.fwd == Fwd::Masq {
                    gone_out.push((c.out_key(), c.in_key()));
                }
                c.unbind();
                removed += 1;
                false
            }
            _ => true,
        });
        for (ok, ik) in &gone_out {
            self.map
                .remove_if(ok, |_, v| matches!(v, Entry::Out(k) if k == ik));
        }
        self.conns.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Calls `f` on every connection (for listings); holds one shard read lock at a time.
    pub fn for_each(&self, mut f: impl FnMut(&Conn)) {
        for e in self.map.iter() {
            if let Entry::In(c) = e.value() {
                f(c);
            }
        }
    }
}
