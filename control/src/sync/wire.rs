//! The IPVS sync wire format: [`SyncConn`] entries, the v1 [`Encoder`] and the v0/v1
//! [`decode`]r. Offsets, checks and their order follow `net/netfilter/ipvs/ip_vs_sync.c`
//! (`ip_vs_sync_conn`, `ip_vs_process_message`, `ip_vs_proc_sync_conn`,
//! `ip_vs_process_message_v0`); see the module docs of [`crate::sync`].
//!
//! Decoding never panics: every read is bounds-checked against the datagram.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xlvs_dataplane::core::events::{ConnEvent, EventKind};
use xlvs_dataplane::core::service::Fwd;

/// Connection flags (`IP_VS_CONN_F_*`, `include/uapi/linux/ip_vs.h`).
pub mod flags {
    /// The forwarding method's bits.
    pub const FWD_MASK: u32 = 0x0007;
    /// LVS-NAT.
    pub const FWD_MASQ: u32 = 0;
    /// Local node.
    pub const FWD_LOCAL: u32 = 1;
    /// LVS-TUN.
    pub const FWD_TUNNEL: u32 = 2;
    /// LVS-DR.
    pub const FWD_DR: u32 = 3;
    /// Bypass.
    pub const FWD_BYPASS: u32 = 4;
    /// Created by sync (set by the backup).
    pub const SYNC: u32 = 0x0020;
    /// Hashed in the table (never sent).
    pub const HASHED: u32 = 0x0040;
    /// No output packets: every forwarding method but NAT.
    pub const NOOUTPUT: u32 = 0x0080;
    /// Not established: counted inactive on its realserver (and every template).
    pub const INACTIVE: u32 = 0x0100;
    /// Adjust output sequence numbers.
    pub const OUT_SEQ: u32 = 0x0200;
    /// Adjust input sequence numbers.
    pub const IN_SEQ: u32 = 0x0400;
    /// Either sequence flag: v0 then carries 24 bytes of sequence data.
    pub const SEQ_MASK: u32 = OUT_SEQ | IN_SEQ;
    /// Client port not yet known.
    pub const NO_CPORT: u32 = 0x0800;
    /// A persistence template.
    pub const TEMPLATE: u32 = 0x1000;
    /// One-packet scheduling (never synced).
    pub const ONE_PACKET: u32 = 0x2000;
    /// What a v1 backup keeps of a received entry's flags (`IP_VS_CONN_F_BACKUP_MASK`).
    pub const BACKUP_MASK: u32 = FWD_MASK | NOOUTPUT | INACTIVE | SEQ_MASK | NO_CPORT | TEMPLATE;
    /// What a backup updates on an existing connection (`IP_VS_CONN_F_BACKUP_UPD_MASK`).
    pub const BACKUP_UPD_MASK: u32 = INACTIVE | SEQ_MASK;
}

/// A template's state once one of its connections was established (`IP_VS_CTPL_S_ASSURED`).
pub const TPL_ASSURED: u16 = 1;

/// The sync multicast group (IPv4).
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// The sync UDP port.
pub const PORT: u16 = 8848;
/// v0 header length.
pub const HEADER_V0: usize = 4;
/// v1 header length.
pub const HEADER_V1: usize = 8;
/// v0 entry length (without sequence data).
pub const ENTRY_V0: usize = 24;
/// v1 IPv4 entry length without options.
pub const ENTRY_V4: usize = 36;
/// v1 IPv6 entry length without options.
pub const ENTRY_V6: usize = 72;
/// Sequence data: in then out, each `init_seq, delta, previous_delta`.
pub const SEQ_LEN: usize = 24;
/// Longest persistence-engine data (`IP_VS_PEDATA_MAXLEN`).
pub const PE_DATA_MAX: usize = 255;
/// Longest persistence-engine name (`IP_VS_PENAME_MAXLEN`).
pub const PE_NAME_MAX: usize = 16;
/// Most entries a datagram can count (one byte).
pub const MAX_CONNS: usize = 255;
/// Largest datagram: UDP over IPv4 (the kernel clamps `sync_maxlen` to `65535 - headers`).
pub const MAX_DATAGRAM: usize = 65535 - 28;

/// Option types (`IPVS_OPT_*`).
pub mod opt {
    /// Sequence data, 24 bytes.
    pub const SEQ_DATA: u8 = 1;
    /// Persistence-engine data.
    pub const PE_DATA: u8 = 2;
    /// Persistence-engine name.
    pub const PE_NAME: u8 = 3;
    /// Set on an option a receiver may skip if it does not know it (`IPVS_OPT_F_PARAM`).
    pub const SKIPPABLE: u8 = 0x40;
}

/// The payload a sync datagram may fill on a link of `mtu` (the kernel's `sync_maxlen`:
/// `mtu - IP header - UDP header`); a master assumes MTU 1500.
pub fn maxlen_for_mtu(mtu: u16, ipv6_group: bool) -> usize {
    let headers = if ipv6_group { 40 + 8 } else { 20 + 8 };
    (mtu as usize).saturating_sub(headers).max(1)
}

/// How many states the backup knows for a (non-template) entry's protocol, `None` for a
/// protocol it drops. The kernel asks `ip_vs_proto_get`, which also knows SCTP, AH and ESP
/// when compiled in; xlvs forwards TCP and UDP only, so it keeps only those.
pub fn protocol_states(proto: u8) -> Option<u16> {
    match proto {
        6 => Some(11), // IP_VS_TCP_S_LAST
        17 => Some(1), // IP_VS_UDP_S_LAST
        _ => None,
    }
}

/// One connection or persistence template as a sync entry carries it.
///
/// Values are kept as on the wire, so a decoded entry encodes back to the same bytes, bar
/// what the decoder does not keep: skipped unknown options, the option order (the encoder
/// writes sequence data, engine data, engine name, as the kernel does), an odd type other
/// than 1 (read as IPv6, written as 1) and non-UTF-8 engine names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SyncConn {
    /// IP protocol (6 TCP, 17 UDP; 0 for a fwmark service's template).
    pub proto: u8,
    /// [`flags`] as sent. v0 carries 16 bits.
    pub flags: u32,
    /// Protocol state ([`TcpState`](xlvs_dataplane::core::tcp_state::TcpState) numbering
    /// for TCP, 0 for UDP; 0 or 1 for templates).
    pub state: u16,
    pub cport: u16,
    pub vport: u16,
    pub dport: u16,
    /// Firewall mark (v1; 0 in v0).
    pub fwmark: u32,
    /// Seconds: the full timeout of the current state (v1; 0 in v0: the backup then uses
    /// its own per-state timeouts, 180 s for templates).
    pub timeout: u32,
    /// Client address (masked for a template). All three addresses are of one family.
    pub caddr: IpAddr,
    /// Virtual address (the mark, for a fwmark service's template).
    pub vaddr: IpAddr,
    /// Realserver address.
    pub daddr: IpAddr,
    /// Sequence data, raw: v1 big-endian as sent, v0 in the sender's host byte order.
    pub seq: Option<[u8; SEQ_LEN]>,
    /// Persistence-engine data (xlvs never sends it).
    pub pe_data: Option<Vec<u8>>,
    /// Persistence-engine name (xlvs never sends it); non-UTF-8 bytes are replaced.
    pub pe_name: Option<String>,
}

impl SyncConn {
    /// Whether it carries IPv6 addresses (judged by `caddr`).
    pub fn is_ipv6(&self) -> bool {
        self.caddr.is_ipv6()
    }

    /// Whether it is a persistence template.
    pub fn is_template(&self) -> bool {
        self.flags & flags::TEMPLATE != 0
    }

    /// The forwarding method bits.
    pub fn fwd(&self) -> u32 {
        self.flags & flags::FWD_MASK
    }

    /// The flags a backup stores for it: v1 keeps [`flags::BACKUP_MASK`], v0 all but
    /// HASHED; both add SYNC.
    pub fn backup_flags(&self, version: Version) -> u32 {
        match version {
            Version::V1 => (self.flags & flags::BACKUP_MASK) | flags::SYNC,
            Version::V0 => (self.flags | flags::SYNC) & !flags::HASHED,
        }
    }

    /// Its length in a v1 datagram (options included, padding not), or why it cannot be
    /// sent.
    pub fn wire_len(&self) -> Result<usize, Unencodable> {
        let mut len = match (self.caddr, self.vaddr, self.daddr) {
            (IpAddr::V4(_), IpAddr::V4(_), IpAddr::V4(_)) => ENTRY_V4,
            (IpAddr::V6(_), IpAddr::V6(_), IpAddr::V6(_)) => ENTRY_V6,
            _ => return Err(Unencodable::MixedFamilies),
        };
        if self.seq.is_some() {
            len += 2 + SEQ_LEN;
        }
        if let Some(d) = &self.pe_data {
            if d.is_empty() || d.len() > PE_DATA_MAX {
                return Err(Unencodable::PeDataLength);
            }
            len += 2 + d.len();
        }
        if let Some(n) = &self.pe_name {
            if n.is_empty() || n.len() > PE_NAME_MAX {
                return Err(Unencodable::PeNameLength);
            }
            len += 2 + n.len();
        }
        Ok(len)
    }

    /// The entry for a connection event, or `None` for [`EventKind::Expired`]: IPVS sends no
    /// expiry (a backup's entry lives `timeout` seconds after its last sync; a timeout of 0
    /// would make it take its own per-state default instead).
    pub fn from_event(e: &ConnEvent) -> Option<Self> {
        (e.kind != EventKind::Expired).then(|| Self::from(e))
    }
}

impl From<&ConnEvent> for SyncConn {
    /// The entry IPVS sends for it: NAT 0x0, DR `DR | NOOUTPUT` (0x83), INACTIVE while not
    /// established; a template carries `TEMPLATE | INACTIVE` besides its forwarding bits
    /// (IPVS gives every new connection the destination's flags, INACTIVE included, and
    /// only a connection's TCP state clears it), no NO_CPORT, and for a fwmark service
    /// (protocol 0) the mark in `fwmark` as well as in `vaddr`.
    ///
    /// A template's state is 0 here. IPVS moves a template to [`TPL_ASSURED`] once one of
    /// its TCP connections reaches ESTABLISHED or a UDP one sees a reply, and a Linux backup
    /// drops a template that is not assured together with its last connection; the event
    /// does not say, so the sender, which sees the connection's event just before, sets it.
    fn from(e: &ConnEvent) -> Self {
        let mut f = match e.fwd {
            Fwd::Masq => flags::FWD_MASQ,
            Fwd::Route => flags::FWD_DR | flags::NOOUTPUT,
        };
        if e.template {
            f |= flags::TEMPLATE | flags::INACTIVE;
        } else if e.inactive {
            f |= flags::INACTIVE;
        }
        let fwmark = if e.template && e.proto == 0 {
            mark_of(e.vaddr)
        } else {
            e.fwmark
        };
        SyncConn {
            proto: e.proto,
            flags: f,
            state: e.state as u16,
            cport: e.cport,
            vport: e.vport,
            dport: e.dport,
            fwmark,
            timeout: e.timeout,
            caddr: e.caddr,
            vaddr: e.vaddr,
            daddr: e.daddr,
            seq: None,
            pe_data: None,
            pe_name: None,
        }
    }
}

/// The mark a fwmark template keeps as its virtual address (IPVS: `.ip = htonl(mark)`, the
/// first 32 bits also for IPv6).
fn mark_of(a: IpAddr) -> u32 {
    match a {
        IpAddr::V4(a) => a.to_bits(),
        IpAddr::V6(a) => (a.to_bits() >> 96) as u32,
    }
}

/// Why an entry cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unencodable {
    /// The three addresses are not all IPv4 or all IPv6.
    MixedFamilies,
    /// Persistence-engine data empty or longer than [`PE_DATA_MAX`].
    PeDataLength,
    /// Persistence-engine name empty or longer than [`PE_NAME_MAX`].
    PeNameLength,
    /// An IPv6 entry or persistence-engine data in a v0 datagram (v0 carries neither: the
    /// kernel's v0 master skips IPv6 connections).
    NotInV0,
}

impl std::fmt::Display for Unencodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unencodable::MixedFamilies => "addresses of mixed families",
            Unencodable::PeDataLength => "persistence-engine data empty or over 255 bytes",
            Unencodable::PeNameLength => "persistence-engine name empty or over 16 bytes",
            Unencodable::NotInV0 => "not expressible in sync v0 (IPv6 or engine data)",
        })
    }
}

impl std::error::Error for Unencodable {}

/// Builds v1 datagrams as the kernel's master does: entries gather in one buffer; one that
/// does not fit (or a 256th) closes it and starts the next.
#[derive(Debug)]
pub struct Encoder {
    version: Version,
    syncid: u8,
    maxlen: usize,
    buf: Vec<u8>,
    count: usize,
    spare: Vec<u8>,
}

impl Encoder {
    /// A master's `sync_maxlen` for an IPv4 group: MTU 1500 less the IP and UDP headers.
    pub const DEFAULT_MAXLEN: usize = 1472;

    /// An encoder for `syncid` filling datagrams up to `maxlen` bytes (clamped to
    /// 1..=[`MAX_DATAGRAM`]). As in the kernel, a datagram always takes one entry, even if
    /// that entry alone exceeds `maxlen`.
    pub fn new(syncid: u8, maxlen: usize) -> Self {
        let maxlen = maxlen.clamp(1, MAX_DATAGRAM);
        Encoder {
            version: Version::V1,
            syncid,
            maxlen,
            buf: Vec::with_capacity(maxlen),
            count: 0,
            spare: Vec::new(),
        }
    }

    /// An encoder of v0 datagrams (`sync_version` 0), as the kernel's v0 master builds them
    /// (`ip_vs_sync_conn_v0`): a 4-byte header, 24-byte IPv4 entries (48 with sequence
    /// data), no padding, no timeout or fwmark, 16 bits of flags; a datagram is closed as
    /// soon as fewer than 48 bytes are left (60 entries in 1472 bytes).
    pub fn new_v0(syncid: u8, maxlen: usize) -> Self {
        Encoder {
            version: Version::V0,
            ..Self::new(syncid, maxlen)
        }
    }

    /// The message format it writes.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Its syncid.
    pub fn syncid(&self) -> u8 {
        self.syncid
    }

    /// Its datagram size limit.
    pub fn maxlen(&self) -> usize {
        self.maxlen
    }

    /// Entries in the datagram being built.
    pub fn pending(&self) -> usize {
        self.count
    }

    /// Adds `c`. If the current datagram cannot take it (too long, or 255 entries already),
    /// returns that datagram finished and starts the next with `c`. An entry that cannot be
    /// encoded is refused and leaves the encoder as it was.
    pub fn push(&mut self, c: &SyncConn) -> Result<Option<Vec<u8>>, Unencodable> {
        if self.version == Version::V0 {
            return self.push_v0(c);
        }
        let len = c.wire_len()?;
        let mut done = None;
        if self.count > 0 {
            let pad = pad_of(self.buf.len());
            if self.count >= MAX_CONNS || self.buf.len() + pad + len > self.maxlen {
                done = self.finish();
            }
        }
        if self.count == 0 {
            self.buf.clear();
            self.buf
                .extend_from_slice(&[0, self.syncid, 0, 0, 0, 1, 0, 0]);
        } else {
            let pad = pad_of(self.buf.len());
            self.buf.resize(self.buf.len() + pad, 0);
        }
        self.write(c, len);
        self.count += 1;
        Ok(done)
    }

    /// Adds a connection and its template to one datagram (a backup links a template to
    /// the connection right before it in the same datagram): if the current datagram cannot
    /// take both, it is returned finished and both start the next.
    pub fn push_pair(
        &mut self,
        conn: &SyncConn,
        template: &SyncConn,
    ) -> Result<Option<Vec<u8>>, Unencodable> {
        let (a, b) = (conn.wire_len()?, template.wire_len()?);
        let mut done = None;
        if self.count > 0 {
            let end = self.buf.len() + pad_of(self.buf.len()) + a;
            if self.count + 2 > MAX_CONNS || end + pad_of(end) + b > self.maxlen {
                done = self.finish();
            }
        }
        let first = self.push(conn)?;
        let second = self.push(template)?;
        debug_assert!(first.is_none() || done.is_none());
        Ok(done.or(first).or(second))
    }

    /// The datagram being built, finished, if it has an entry.
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        if self.count == 0 { None } else { self.finish() }
    }

    /// Gives back a sent datagram's buffer, so the next datagram reuses it.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > self.spare.capacity() {
            buf.clear();
            self.spare = buf;
        }
    }

    /// [`Encoder::push`] of a v0 entry.
    fn push_v0(&mut self, c: &SyncConn) -> Result<Option<Vec<u8>>, Unencodable> {
        let v4 = |a: IpAddr| match a {
            IpAddr::V4(a) => Ok(a.octets()),
            IpAddr::V6(_) => Err(Unencodable::NotInV0),
        };
        let (caddr, vaddr, daddr) = (v4(c.caddr)?, v4(c.vaddr)?, v4(c.daddr)?);
        if c.pe_data.is_some() || c.pe_name.is_some() {
            return Err(Unencodable::NotInV0);
        }
        let len = ENTRY_V0 + if c.seq.is_some() { SEQ_LEN } else { 0 };
        // The kernel closes a datagram right after an entry leaves no room for a full one;
        // this catches only a maxlen below one entry (the first still goes).
        let mut done = None;
        if self.count > 0 && (self.count >= MAX_CONNS || self.buf.len() + len > self.maxlen) {
            done = self.finish();
        }
        if self.count == 0 {
            self.buf.clear();
            self.buf.extend_from_slice(&[0, self.syncid, 0, 0]);
        }
        let b = &mut self.buf;
        b.extend_from_slice(&[0, c.proto]);
        b.extend_from_slice(&c.cport.to_be_bytes());
        b.extend_from_slice(&c.vport.to_be_bytes());
        b.extend_from_slice(&c.dport.to_be_bytes());
        b.extend_from_slice(&caddr);
        b.extend_from_slice(&vaddr);
        b.extend_from_slice(&daddr);
        b.extend_from_slice(&((c.flags & !flags::HASHED) as u16).to_be_bytes());
        b.extend_from_slice(&c.state.to_be_bytes());
        if let Some(s) = &c.seq {
            b.extend_from_slice(s);
        }
        self.count += 1;
        if done.is_none()
            && (self.buf.len() + ENTRY_V0 + SEQ_LEN > self.maxlen || self.count >= MAX_CONNS)
        {
            done = self.finish();
        }
        Ok(done)
    }

    fn finish(&mut self) -> Option<Vec<u8>> {
        let size = self.buf.len() as u16;
        self.buf[2..4].copy_from_slice(&size.to_be_bytes());
        match self.version {
            Version::V1 => self.buf[4] = self.count as u8,
            Version::V0 => self.buf[0] = self.count as u8,
        }
        self.count = 0;
        let mut next = std::mem::take(&mut self.spare);
        if next.capacity() < self.maxlen {
            next.reserve(self.maxlen);
        }
        Some(std::mem::replace(&mut self.buf, next))
    }

    fn write(&mut self, c: &SyncConn, len: usize) {
        let b = &mut self.buf;
        b.push(u8::from(c.is_ipv6()));
        b.push(c.proto);
        b.extend_from_slice(&(len as u16 & 0x0fff).to_be_bytes());
        b.extend_from_slice(&c.flags.to_be_bytes());
        b.extend_from_slice(&c.state.to_be_bytes());
        b.extend_from_slice(&c.cport.to_be_bytes());
        b.extend_from_slice(&c.vport.to_be_bytes());
        b.extend_from_slice(&c.dport.to_be_bytes());
        b.extend_from_slice(&c.fwmark.to_be_bytes());
        b.extend_from_slice(&c.timeout.to_be_bytes());
        for a in [c.caddr, c.vaddr, c.daddr] {
            match a {
                IpAddr::V4(a) => b.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => b.extend_from_slice(&a.octets()),
            }
        }
        if let Some(s) = &c.seq {
            b.extend_from_slice(&[opt::SEQ_DATA, SEQ_LEN as u8]);
            b.extend_from_slice(s);
        }
        if let Some(d) = &c.pe_data {
            b.extend_from_slice(&[opt::PE_DATA, d.len() as u8]);
            b.extend_from_slice(d);
        }
        if let Some(n) = &c.pe_name {
            b.extend_from_slice(&[opt::PE_NAME, n.len() as u8]);
            b.extend_from_slice(n.as_bytes());
        }
    }
}

/// Padding before an entry that would start at `offset` (entries start on 4-byte
/// boundaries; the header is 8 bytes).
fn pad_of(offset: usize) -> usize {
    (4 - offset % 4) % 4
}

/// The message format a datagram was read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    V0,
    V1,
}

/// What [`decode`] read from a datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The sender's syncid.
    pub syncid: u8,
    pub version: Version,
    /// The entries a backup applies, in order.
    pub conns: Vec<SyncConn>,
    /// Entries dropped on their own (index in the datagram, reason); the rest continue.
    pub dropped: Vec<(usize, EntryDrop)>,
    /// Where the rest of the datagram was dropped (index of the entry being read, reason).
    /// The kernel applies each entry as it reads it, so those before still count:
    /// `conns` holds them.
    pub stopped: Option<(usize, Reject)>,
}

/// Why a datagram, or the rest of it, is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Shorter than the 4-byte v0 header ("message header too short").
    Short,
    /// Length differs from the header's size field ("bogus message size").
    SizeMismatch,
    /// Another syncid, and ours is not 0.
    WrongSyncid,
    /// Fewer bytes left than an entry's fixed part (v1: 36, v0: 24): the connection count
    /// claims more entries than the datagram holds.
    EntryTruncated,
    /// An entry's length runs past the datagram (v0: its sequence data).
    EntryOverrun,
    /// An entry's version (top 4 bits of its length field) is not 0.
    EntryVersion,
    /// An entry's type is neither IPv4 (0) nor IPv6 (bit 0 set).
    UnknownType,
    /// An entry's length is shorter than its addresses.
    EntryShort,
    /// One byte left in an entry where an option header should be.
    OptionTruncated,
    /// An option of length 0.
    OptionZeroLength,
    /// An option running past its entry.
    OptionOverrun,
    /// Sequence data not 24 bytes, or twice.
    BadSeqOption,
    /// Persistence-engine data twice.
    BadPeData,
    /// Persistence-engine name over 16 bytes, or twice.
    BadPeName,
}

impl Reject {
    /// A name for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Reject::Short => "short",
            Reject::SizeMismatch => "size_mismatch",
            Reject::WrongSyncid => "wrong_syncid",
            Reject::EntryTruncated => "entry_truncated",
            Reject::EntryOverrun => "entry_overrun",
            Reject::EntryVersion => "entry_version",
            Reject::UnknownType => "unknown_type",
            Reject::EntryShort => "entry_short",
            Reject::OptionTruncated => "option_truncated",
            Reject::OptionZeroLength => "option_zero_length",
            Reject::OptionOverrun => "option_overrun",
            Reject::BadSeqOption => "bad_seq_option",
            Reject::BadPeData => "bad_pe_data",
            Reject::BadPeName => "bad_pe_name",
        }
    }
}

/// Why one entry is dropped while the others are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryDrop {
    /// An option type the backup does not know, without the skippable bit.
    UnknownMandatoryOption,
    /// A protocol the backup does not handle ([`protocol_states`]); not checked for
    /// templates.
    UnknownProtocol,
    /// A state number past the protocol's states; not checked for templates.
    UnknownState,
    /// Persistence-engine data without a name.
    PeDataWithoutName,
}

impl EntryDrop {
    /// A name for metrics.
    pub fn label(self) -> &'static str {
        match self {
            EntryDrop::UnknownMandatoryOption => "unknown_mandatory_option",
            EntryDrop::UnknownProtocol => "unknown_protocol",
            EntryDrop::UnknownState => "unknown_state",
            EntryDrop::PeDataWithoutName => "pe_data_without_name",
        }
    }
}

/// Reads a received datagram as a backup with `my_syncid` does (0 accepts every syncid).
///
/// `Err` when the whole datagram is ignored (short, size mismatch, another syncid). A
/// problem met inside is reported in [`Decoded::stopped`], with the entries read before
/// it kept, as the kernel keeps them.
pub fn decode(d: &[u8], my_syncid: u8) -> Result<Decoded, Reject> {
    if d.len() < HEADER_V0 {
        return Err(Reject::Short);
    }
    if d.len() != be16(d, 2) as usize {
        return Err(Reject::SizeMismatch);
    }
    let syncid = d[1];
    if my_syncid != 0 && syncid != my_syncid {
        return Err(Reject::WrongSyncid);
    }
    // The kernel reads version and spare from its receive buffer even when the datagram is
    // shorter than 8 bytes (stale bytes); such a datagram can hold no v1 entry anyway, so
    // it is read as v0 here.
    let v1 = d.len() >= HEADER_V1 && d[0] == 0 && d[5] == 1 && d[6] == 0 && d[7] == 0;
    let mut out = Decoded {
        syncid,
        version: if v1 { Version::V1 } else { Version::V0 },
        conns: Vec::new(),
        dropped: Vec::new(),
        stopped: None,
    };
    if v1 {
        decode_v1(d, &mut out);
    } else {
        decode_v0(d, &mut out);
    }
    Ok(out)
}

/// One entry's outcome.
enum Entry {
    Keep(SyncConn),
    Drop(EntryDrop),
    Stop(Reject),
}

fn record(out: &mut Decoded, i: usize, e: Entry) -> bool {
    match e {
        Entry::Keep(c) => out.conns.push(c),
        Entry::Drop(why) => out.dropped.push((i, why)),
        Entry::Stop(why) => {
            out.stopped = Some((i, why));
            return false;
        }
    }
    true
}

fn decode_v1(d: &[u8], out: &mut Decoded) {
    let mut next = HEADER_V1;
    for i in 0..d[4] as usize {
        let p = next;
        if p + ENTRY_V4 > d.len() {
            out.stopped = Some((i, Reject::EntryTruncated));
            return;
        }
        let ver_size = be16(d, p + 2);
        let size = (ver_size & 0x0fff) as usize;
        if p + size > d.len() {
            out.stopped = Some((i, Reject::EntryOverrun));
            return;
        }
        if ver_size >> 12 != 0 {
            out.stopped = Some((i, Reject::EntryVersion));
            return;
        }
        if !record(out, i, entry_v1(d, p, size)) {
            return;
        }
        next = p + ((size + 3) & !3);
    }
}

/// One v1 entry of `size` bytes at `p` in datagram `d` (its first 36 bytes are within `d`:
/// the kernel reads the type before checking the entry is long enough for its addresses).
fn entry_v1(d: &[u8], p: usize, size: usize) -> Entry {
    let ty = d[p];
    let e = &d[p..p + size];
    let fixed = if ty & 1 != 0 {
        ENTRY_V6
    } else if ty == 0 {
        ENTRY_V4
    } else {
        return Entry::Stop(Reject::UnknownType);
    };
    if fixed > e.len() {
        return Entry::Stop(Reject::EntryShort);
    }
    let mut seq = None;
    let mut pe_data: Option<&[u8]> = None;
    let mut pe_name: Option<&[u8]> = None;
    let mut p = fixed;
    while p < e.len() {
        if p + 2 > e.len() {
            return Entry::Stop(Reject::OptionTruncated);
        }
        let (ptype, plen) = (e[p], e[p + 1] as usize);
        p += 2;
        if plen == 0 {
            return Entry::Stop(Reject::OptionZeroLength);
        }
        if p + plen > e.len() {
            return Entry::Stop(Reject::OptionOverrun);
        }
        let data = &e[p..p + plen];
        match ptype & !opt::SKIPPABLE {
            opt::SEQ_DATA => {
                if plen != SEQ_LEN || seq.is_some() {
                    return Entry::Stop(Reject::BadSeqOption);
                }
                let mut s = [0; SEQ_LEN];
                s.copy_from_slice(data);
                seq = Some(s);
            }
            opt::PE_DATA => {
                // plen <= 255 = PE_DATA_MAX always.
                if pe_data.is_some() {
                    return Entry::Stop(Reject::BadPeData);
                }
                pe_data = Some(data);
            }
            opt::PE_NAME => {
                if plen > PE_NAME_MAX || pe_name.is_some() {
                    return Entry::Stop(Reject::BadPeName);
                }
                pe_name = Some(data);
            }
            _ if ptype & opt::SKIPPABLE == 0 => {
                return Entry::Drop(EntryDrop::UnknownMandatoryOption);
            }
            _ => {}
        }
        p += plen;
    }
    let proto = e[1];
    let f = be32(e, 4);
    let state = be16(e, 8);
    if let Some(why) = check_proto_state(proto, f, state) {
        return Entry::Drop(why);
    }
    if pe_data.is_some() && pe_name.is_none() {
        return Entry::Drop(EntryDrop::PeDataWithoutName);
    }
    let addr = |at: usize| -> IpAddr {
        if fixed == ENTRY_V6 {
            let mut o = [0; 16];
            o.copy_from_slice(&e[at..at + 16]);
            IpAddr::V6(Ipv6Addr::from(o))
        } else {
            IpAddr::V4(Ipv4Addr::from_bits(be32(e, at)))
        }
    };
    let step = if fixed == ENTRY_V6 { 16 } else { 4 };
    Entry::Keep(SyncConn {
        proto,
        flags: f,
        state,
        cport: be16(e, 10),
        vport: be16(e, 12),
        dport: be16(e, 14),
        fwmark: be32(e, 16),
        timeout: be32(e, 20),
        caddr: addr(24),
        vaddr: addr(24 + step),
        daddr: addr(24 + 2 * step),
        seq,
        pe_data: pe_data.map(<[u8]>::to_vec),
        pe_name: pe_name.map(|n| String::from_utf8_lossy(n).into_owned()),
    })
}

/// The backup's protocol and state checks (skipped for templates).
fn check_proto_state(proto: u8, f: u32, state: u16) -> Option<EntryDrop> {
    if f & flags::TEMPLATE != 0 {
        // The kernel only logs a template state past IP_VS_CTPL_S_LAST.
        return None;
    }
    match protocol_states(proto) {
        None => Some(EntryDrop::UnknownProtocol),
        Some(n) if state >= n => Some(EntryDrop::UnknownState),
        Some(_) => None,
    }
}

fn decode_v0(d: &[u8], out: &mut Decoded) {
    let mut p = HEADER_V0;
    for i in 0..d[0] as usize {
        if p + ENTRY_V0 > d.len() {
            out.stopped = Some((i, Reject::EntryTruncated));
            return;
        }
        let e = &d[p..p + ENTRY_V0];
        let f = be16(e, 20) as u32;
        let mut seq = None;
        if f & flags::SEQ_MASK != 0 {
            p += ENTRY_V0 + SEQ_LEN;
            if p > d.len() {
                out.stopped = Some((i, Reject::EntryOverrun));
                return;
            }
            let mut s = [0; SEQ_LEN];
            s.copy_from_slice(&d[p - SEQ_LEN..p]);
            seq = Some(s);
        } else {
            p += ENTRY_V0;
        }
        let proto = e[1];
        let state = be16(e, 22);
        let entry = match check_proto_state(proto, f, state) {
            Some(why) => Entry::Drop(why),
            None => Entry::Keep(SyncConn {
                proto,
                flags: f,
                state,
                cport: be16(e, 2),
                vport: be16(e, 4),
                dport: be16(e, 6),
                fwmark: 0,
                timeout: 0,
                caddr: IpAddr::V4(Ipv4Addr::from_bits(be32(e, 8))),
                vaddr: IpAddr::V4(Ipv4Addr::from_bits(be32(e, 12))),
                daddr: IpAddr::V4(Ipv4Addr::from_bits(be32(e, 16))),
                seq,
                pe_data: None,
                pe_name: None,
            }),
        };
        record(out, i, entry);
    }
}

/// Big-endian u16 at `at`; callers have checked the bounds.
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Big-endian u32 at `at`; callers have checked the bounds.
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
