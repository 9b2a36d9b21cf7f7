//! Bonded interfaces in the data plane: which member port a frame leaves on.
//!
//! A *logical* interface ([`IfaceId`](crate::core::service::IfaceId)) is what the core,
//! the routes and the neighbour table know: a plain NIC, or a bond (`bond0`) whose
//! addresses, ARP and LACP the kernel (or another aggregation) keeps. A *port* is a device
//! the workers have AF_XDP sockets on: the plain NIC itself, or each member of the bond.
//! The core answers "transmit on logical interface i"; the logical interface's [`Egress`],
//! which the control plane computes from the bond's mode and its members' state and
//! publishes in the snapshot, names the port: the only one, the active member of an
//! active-backup bond, or `members[hash % count]` over the members that can transmit with
//! the bond's transmit hash ([`xmit_hash`]), as the kernel's `bond_3ad_xor_xmit` does.

pub mod hash;

pub use hash::{XmitHash, xmit_hash};

/// A device with AF_XDP sockets: an index into the workers' interfaces (and the XDP
/// program's `IFACES` slots).
pub type PortId = u8;

/// How frames for one logical interface choose their port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Egress {
    /// Always this port: a plain interface, or the active member of an active-backup bond.
    Port(PortId),
    /// The transmit hash over these ports, in the bond's order (never empty).
    Hashed {
        policy: XmitHash,
        ports: Box<[PortId]>,
    },
    /// No member can transmit (every link down): frames are dropped and counted.
    Down,
}

impl Egress {
    /// The hashed egress over `ports`, [`Egress::Down`] when there is none. A single port
    /// stays hashed (its frames go to it without hashing): the XDP fast path's entries still
    /// get their flow's hash, to pick the member again when more are usable.
    pub fn hashed(policy: XmitHash, ports: &[PortId]) -> Egress {
        if ports.is_empty() {
            Egress::Down
        } else {
            Egress::Hashed {
                policy,
                ports: ports.into(),
            }
        }
    }

    /// The port `frame` (rewritten, ready to go) leaves on.
    #[inline(always)]
    pub fn port(&self, frame: &[u8]) -> Option<PortId> {
        match self {
            Egress::Port(p) => Some(*p),
            Egress::Hashed { ports, .. } if ports.len() == 1 => Some(ports[0]),
            Egress::Hashed { policy, ports } => {
                let h = xmit_hash(*policy, frame);
                ports.get((h % ports.len() as u32) as usize).copied()
            }
            Egress::Down => None,
        }
    }

    /// The bond's transmit hash of `frame` (0 without one): what the XDP fast path's entry
    /// for its flow picks the port with.
    pub fn hash(&self, frame: &[u8]) -> u32 {
        match self {
            Egress::Hashed { policy, .. } => xmit_hash(*policy, frame),
            _ => 0,
        }
    }

    /// The ports this egress may use.
    pub fn ports(&self) -> &[PortId] {
        match self {
            Egress::Port(p) => std::slice::from_ref(p),
            Egress::Hashed { ports, .. } => ports,
            Egress::Down => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(sport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f
    }

    #[test]
    fn hashed_egress_is_members_at_hash_modulo_count() {
        let e = Egress::hashed(XmitHash::Layer34, &[3, 5, 9]);
        let mut seen = [0usize; 3];
        for sport in 1000..1300 {
            let f = frame(sport);
            let want = [3, 5, 9][(xmit_hash(XmitHash::Layer34, &f) % 3) as usize];
            assert_eq!(e.port(&f), Some(want));
            seen[[3, 5, 9].iter().position(|&p| p == want).unwrap()] += 1;
        }
        // Every member takes a fair share of 300 flows.
        assert!(seen.iter().all(|&n| n > 60), "{seen:?}");
    }

    #[test]
    fn one_member_or_none() {
        let one = Egress::hashed(XmitHash::Layer34, &[4]);
        assert_eq!(one.port(&frame(1)), Some(4));
        assert_eq!(one.hash(&frame(1)), xmit_hash(XmitHash::Layer34, &frame(1)));
        assert_eq!(one.ports(), &[4]);
        assert_eq!(
            (
                Egress::Port(4).port(&frame(1)),
                Egress::Port(4).hash(&frame(1))
            ),
            (Some(4), 0)
        );
        let down = Egress::hashed(XmitHash::Layer34, &[]);
        assert_eq!(down, Egress::Down);
        assert_eq!(down.port(&frame(1)), None);
        assert!(down.ports().is_empty());
    }
}
