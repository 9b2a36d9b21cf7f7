//! Connection synchronization with Linux IPVS (`net/netfilter/ipvs/ip_vs_sync.c`): the wire
//! codec, sans IO. No sockets, clock or threads here; the daemon's sync thread (to come)
//! feeds [`Encoder`] with the workers' [`ConnEvent`]s and sends what it returns to
//! 224.0.0.81:8848, and hands received datagrams to [`decode`].
//!
//! # What the kernel does, and where xlvs follows it
//!
//! **Master.** IPVS gathers entries in one buffer per sync thread and sends the buffer when
//! the next entry does not fit in `sync_maxlen` (MTU 1500 less the IP and UDP headers: 1472
//! bytes for an IPv4 group), or after 2 s. [`Encoder`] does the same: v1 only (the kernel's
//! default `sync_version`), an 8-byte header whose size field is the whole datagram,
//! entries after the first padded to a 4-byte boundary, no padding after the last, the
//! padding counted when deciding whether an entry fits. 40 IPv4 or 20 IPv6 entries fit a
//! 1472-byte datagram. The kernel has no cap on the count, which is one byte, so a large
//! `sync_maxlen` would wrap it; xlvs closes a datagram at 255 entries. The timer is the
//! caller's: [`Encoder::flush`].
//!
//! **Entries.** [`SyncConn`] is an entry as the wire carries it. From a [`ConnEvent`] it
//! takes the flags the kernel would send: NAT 0x0, DR `DR | NOOUTPUT` (0x83), plus INACTIVE
//! while the connection is not established; templates `TEMPLATE | INACTIVE` and their
//! forwarding bits (0x1100 NAT, 0x1183 DR: IPVS gives every new connection its
//! destination's flags, which include INACTIVE, and only TCP state changes clear it, which
//! templates never have), client port 0 without NO_CPORT (only the FTP helper sets it), and
//! for a fwmark service protocol 0 with the mark in both the virtual address and `fwmark`.
//! The timeout is the full timeout of the state. IPVS never sends expiries:
//! [`SyncConn::from_event`] returns `None` for them.
//!
//! **Backup.** [`decode`] makes the kernel's checks in the kernel's order
//! (`ip_vs_process_message`): shorter than 4 bytes, length ≠ size field, syncid (a backup
//! with syncid 0 accepts all) — these drop the datagram, `Err`. Then v1 if version = 1
//! and reserved = spare = 0, else v0 (so a "v1" datagram with a non-zero spare is read as
//! v0 with the count in byte 0: 0 entries). Per v1 entry: fewer than 36 bytes left, length
//! past the datagram, entry version ≠ 0, unknown type (bit 0 set = IPv6, 0 = IPv4, other
//! even values unknown), length shorter than the addresses, and the option checks (one byte
//! left, zero length, past the entry, bad or repeated sequence data / engine data / engine
//! name) drop the rest of the datagram. The kernel has already applied the entries before,
//! so [`decode`] keeps them and reports the stop in [`Decoded::stopped`]. An unknown
//! option without the skippable bit 0x40 (met before any later malformed option: the
//! kernel stops reading the entry there), an unknown protocol or a state past the
//! protocol's (both unchecked for templates), and engine data without an engine name drop
//! only that entry ([`Decoded::dropped`]). Option type bits are compared with 0x40 masked
//! off, so 0x41 is sequence data. v0 entries are 24 bytes, IPv4, with 24 bytes of sequence
//! data in the sender's host byte order when flags has 0x0600; no fwmark or timeout.
//!
//! Where xlvs differs: the kernel's protocol check knows TCP, UDP and, when compiled in,
//! SCTP, AH and ESP; xlvs forwards only TCP and UDP ([`protocol_states`]). The kernel
//! drops an entry whose persistence engine is not loaded; xlvs has none, and leaves that
//! decision to the caller (the entry keeps `pe_name`). Entries are returned with their
//! flags as sent; [`SyncConn::backup_flags`] gives what a backup stores (v1:
//! `flags & 0x1F87 | SYNC`; v0: all but HASHED, plus SYNC).
//!
//! [`ConnEvent`]: xlvs_dataplane::core::events::ConnEvent

pub mod auth;
pub mod backup;
pub mod daemon;
pub mod drift;
pub mod master;
pub mod resync;
mod wire;

pub use wire::*;

#[cfg(test)]
pub(crate) mod tests;
