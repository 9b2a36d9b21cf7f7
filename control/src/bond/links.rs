//! The driver between the kernel's link state and [`Bonds`]: reads the leaves' carriers and
//! the kernel bonds' reports (on an rtnetlink link message, and every [`POLL`] while a
//! kernel bond is followed, since an aggregator change need not announce itself), settles
//! the active members and hands back the egress of every logical interface when it changed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use xlvs_dataplane::bond::{Egress, PortId};

use super::{Bonds, Reported, sysfs};

/// Frames received from and sent on `port`, over its workers.
pub fn port_frames(workers: &[xlvs_dataplane::afxdp::WorkerHandle], port: PortId) -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    workers
        .iter()
        .filter(|w| w.iface == port)
        .fold((0, 0), |(rx, sent), w| {
            (
                rx + w.stats.rx.load(Relaxed),
                sent + w.stats.sent.load(Relaxed),
            )
        })
}

/// How often a kernel bond's sysfs report is read when no link message came.
pub const POLL: Duration = Duration::from_millis(50);

/// Where link states come from.
pub trait LinkSource {
    /// Whether each leaf has carrier.
    fn carriers(&self, leaves: &[String]) -> Vec<bool>;
    /// What the kernel bonds report.
    fn report(&self, bonds: &Bonds) -> Reported;
    /// Kernel bond `top` and the bonds under it, read again (none: not readable now).
    fn tree(&self, _top: &str) -> Option<Vec<super::BondSpec>> {
        None
    }
}

/// sysfs.
pub struct Sysfs(pub PathBuf);

impl LinkSource for Sysfs {
    fn carriers(&self, leaves: &[String]) -> Vec<bool> {
        leaves.iter().map(|l| sysfs::carrier(&self.0, l)).collect()
    }
    fn report(&self, bonds: &Bonds) -> Reported {
        sysfs::report(&self.0, bonds)
    }
    fn tree(&self, top: &str) -> Option<Vec<super::BondSpec>> {
        sysfs::read_tree(&self.0, top).ok()
    }
}

/// The director's interfaces: the logical ones (by `IfaceId`) and the ports (by
/// [`PortId`]), with the bonds between them.
pub struct Links {
    bonds: Bonds,
    /// Leaf names by port.
    ports: Vec<String>,
    /// Logical interface names by id.
    logical: Vec<String>,
    source: Box<dyn LinkSource>,
    /// The logical interfaces that are kernel bonds (membership re-read at each poll).
    kernel: Vec<String>,
    /// When to read the kernel bonds' reports next (none: no kernel bond).
    next_poll: Option<Instant>,
    egress: Vec<Egress>,
}

impl Links {
    /// `kernel`: the logical interfaces that are kernel bonds (their reports and
    /// membership are polled).
    pub fn new(
        bonds: Bonds,
        logical: Vec<String>,
        ports: Vec<String>,
        source: Box<dyn LinkSource>,
        kernel: Vec<String>,
        now: Instant,
    ) -> Links {
        let mut l = Links {
            bonds,
            ports,
            logical,
            source,
            next_poll: (!kernel.is_empty()).then_some(now),
            kernel,
            egress: Vec::new(),
        };
        l.read(true);
        l.egress = l.compute();
        l
    }

    fn port_of(&self, leaf: &str) -> Option<PortId> {
        self.ports
            .iter()
            .position(|p| p == leaf)
            .map(|i| i as PortId)
    }

    fn compute(&self) -> Vec<Egress> {
        self.logical
            .iter()
            .map(|n| self.bonds.egress(n, &|leaf| self.port_of(leaf)))
            .collect()
    }

    /// Reads the source; logs each change (`quiet` at start). Returns whether anything
    /// changed.
    fn read(&mut self, quiet: bool) -> bool {
        let mut changed = false;
        let carriers = self.source.carriers(&self.ports);
        for (leaf, up) in self.ports.iter().zip(carriers) {
            if self.bonds.set_carrier(leaf, up) {
                changed = true;
                if !quiet {
                    match self.bonds.owner(leaf) {
                        Some(b) => log::warn!(
                            "{b}: member {leaf} {}",
                            if up {
                                "has carrier again: used again"
                            } else {
                                "lost carrier: its flows move to the other members"
                            }
                        ),
                        None => log::warn!("{leaf}: carrier {}", if up { "up" } else { "down" }),
                    }
                }
            }
        }
        let report = self.source.report(&self.bonds);
        changed |= self.bonds.set_reported(report);
        for (bond, active) in self.bonds.settle() {
            changed = true;
            match active {
                Some(a) => log::info!("{bond}: active member {a}"),
                None => log::warn!("{bond}: no usable member"),
            }
        }
        changed
    }

    /// The kernel said a link changed, or the poll is due: re-reads; returns the new egress
    /// of every logical interface if any changed.
    pub fn refresh(&mut self, now: Instant) -> Option<&[Egress]> {
        if let Some(t) = &mut self.next_poll {
            *t = now + POLL;
        }
        // The egress may change without a carrier or report changing (a member joined or
        // left): compared every time (a few members).
        self.read(false);
        let e = self.compute();
        if e == self.egress {
            return None;
        }
        for (name, (old, new)) in self.logical.iter().zip(self.egress.iter().zip(&e)) {
            if old != new {
                let names: Vec<&str> = new
                    .ports()
                    .iter()
                    .map(|p| self.ports[*p as usize].as_str())
                    .collect();
                log::info!(
                    "{name}: transmitting on {}",
                    if names.is_empty() {
                        "nothing".to_string()
                    } else {
                        names.join(", ")
                    }
                );
            }
        }
        self.egress = e;
        Some(&self.egress)
    }

    /// Re-reads the kernel bonds' membership: returns the leaves that joined and have no
    /// port yet, with their logical interface (the caller binds them and calls
    /// [`Links::port_added`]). Members that left are no longer used (the next
    /// [`Links::refresh`] publishes that).
    pub fn joined(&mut self) -> Vec<(String, u8)> {
        let mut out = Vec::new();
        for (i, top) in self.logical.iter().enumerate() {
            if !self.kernel.contains(top) {
                continue;
            }
            let Some(tree) = self.source.tree(top) else {
                continue;
            };
            let before: Vec<String> = self.bonds.leaves(top);
            match self.bonds.replace_tree(top, tree) {
                Ok(false) => {}
                Ok(true) => {
                    let after = self.bonds.leaves(top);
                    for leaf in before.iter().filter(|l| !after.contains(l)) {
                        log::warn!("{top}: {leaf} left the bond: no longer used");
                    }
                    for leaf in after.iter().filter(|l| !before.contains(l)) {
                        log::info!("{top}: {leaf} joined the bond");
                    }
                    for leaf in after {
                        if !self.ports.contains(&leaf) {
                            out.push((leaf, i as u8));
                        }
                    }
                }
                Err(e) => log::error!("{top}: its new membership is refused: {e}"),
            }
        }
        out
    }

    /// A joined leaf has its sockets: port `port` (the next number). Its carrier is read
    /// at once (no "carrier again" message for a newcomer).
    pub fn port_added(&mut self, leaf: String) -> PortId {
        let up = self
            .source
            .carriers(std::slice::from_ref(&leaf))
            .first()
            .copied()
            .unwrap_or(false);
        self.bonds.set_carrier(&leaf, up);
        self.ports.push(leaf);
        (self.ports.len() - 1) as PortId
    }

    /// When the kernel bonds' reports are read next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_poll
    }

    /// The egress of every logical interface, by id.
    pub fn egress(&self) -> &[Egress] {
        &self.egress
    }

    /// The ports' leaf names, by port.
    pub fn ports(&self) -> &[String] {
        &self.ports
    }

    /// The bond a port belongs to, if any.
    pub fn bond_of(&self, port: PortId) -> Option<&str> {
        self.bonds.owner(self.ports.get(port as usize)?)
    }

    /// Whether a leaf is usable now.
    pub fn usable(&self, port: PortId) -> bool {
        self.ports
            .get(port as usize)
            .is_some_and(|l| self.bonds.usable(l))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::super::{BondSpec, Mode};
    use super::*;
    use xlvs_dataplane::bond::XmitHash;

    #[derive(Clone, Default)]
    struct Fake(Rc<RefCell<Vec<bool>>>, Rc<RefCell<Option<Vec<BondSpec>>>>);

    impl LinkSource for Fake {
        fn carriers(&self, leaves: &[String]) -> Vec<bool> {
            let c = self.0.borrow();
            if leaves.len() == 1 {
                return vec![true];
            }
            c.clone()
        }
        fn report(&self, _: &Bonds) -> Reported {
            Reported::default()
        }
        fn tree(&self, _: &str) -> Option<Vec<BondSpec>> {
            self.1.borrow().clone()
        }
    }

    fn lacp(members: &[&str]) -> BondSpec {
        BondSpec {
            name: "bond0".into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            mode: Mode::Lacp,
            hash: XmitHash::Layer34,
        }
    }

    #[test]
    fn a_member_that_joins_a_kernel_bond_gets_a_port_and_one_that_leaves_is_dropped() {
        let fake = Fake::default();
        *fake.0.borrow_mut() = vec![true];
        *fake.1.borrow_mut() = Some(vec![lacp(&["m0"])]);
        let t0 = Instant::now();
        let mut l = Links::new(
            Bonds::new(vec![lacp(&["m0"])]).unwrap(),
            vec!["bond0".into()],
            vec!["m0".into()],
            Box::new(fake.clone()),
            vec!["bond0".into()],
            t0,
        );
        assert_eq!(l.poll_timeout(), Some(t0));
        assert!(l.joined().is_empty(), "nothing changed");
        *fake.1.borrow_mut() = Some(vec![lacp(&["m0", "m1"])]);
        assert_eq!(l.joined(), [("m1".to_string(), 0)]);
        assert_eq!(l.port_added("m1".into()), 1);
        *fake.0.borrow_mut() = vec![true, true];
        assert_eq!(
            l.refresh(t0).map(|e| e.to_vec()),
            Some(vec![Egress::hashed(XmitHash::Layer34, &[0, 1])])
        );
        assert_eq!(l.poll_timeout(), Some(t0 + POLL));
        // m1 leaves: its port stays, unused.
        *fake.1.borrow_mut() = Some(vec![lacp(&["m0"])]);
        assert!(l.joined().is_empty());
        assert_eq!(
            l.refresh(t0).map(|e| e.to_vec()),
            Some(vec![Egress::hashed(XmitHash::Layer34, &[0])])
        );
        assert_eq!(l.bond_of(1), None);
    }

    #[test]
    fn a_member_losing_carrier_changes_the_egress_once() {
        let bonds = Bonds::new(vec![BondSpec {
            name: "bond0".into(),
            members: vec!["m0".into(), "m1".into()],
            mode: Mode::Lacp,
            hash: XmitHash::Layer34,
        }])
        .unwrap();
        let fake = Fake::default();
        *fake.0.borrow_mut() = vec![true, true, true];
        let t0 = Instant::now();
        // Logical 0 = bond0 (ports 0, 1), logical 1 = a plain int0 (port 2).
        let mut l = Links::new(
            bonds,
            vec!["bond0".into(), "int0".into()],
            vec!["m0".into(), "m1".into(), "int0".into()],
            Box::new(fake.clone()),
            Vec::new(),
            t0,
        );
        assert_eq!(
            l.egress(),
            [Egress::hashed(XmitHash::Layer34, &[0, 1]), Egress::Port(2)]
        );
        assert_eq!(l.poll_timeout(), None);
        assert!(l.refresh(t0).is_none(), "nothing changed");
        fake.0.borrow_mut()[1] = false;
        assert_eq!(
            l.refresh(t0).map(|e| e.to_vec()),
            Some(vec![
                Egress::hashed(XmitHash::Layer34, &[0]),
                Egress::Port(2)
            ])
        );
        assert!(l.refresh(t0).is_none());
        assert_eq!(l.bond_of(1), Some("bond0"));
        assert!(!l.usable(1));
        fake.0.borrow_mut()[1] = true;
        assert_eq!(
            l.refresh(t0).map(|e| e[0].clone()),
            Some(Egress::hashed(XmitHash::Layer34, &[0, 1]))
        );
    }
}
