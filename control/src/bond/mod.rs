//! Bonded interfaces, as the control plane follows them (sans-IO: fed link states, asked
//! for each logical interface's [`Egress`]).
//!
//! A bond is declared on the command line (`--bond bond0=eth0,eth1`, with `--bond-mode`
//! and `--xmit-hash`), or read from a kernel bond's sysfs ([`sysfs`]). Members may be
//! bonds themselves (active-backup over two LACP aggregates). The kernel, or whatever runs
//! the aggregation, keeps LACP, ARP and the addresses; xlvs transmits service traffic on the
//! *leaves* (the devices without members) as the bond would:
//!
//! - **active-backup**: only the active member (the kernel's `active_slave` for a kernel
//!   bond; otherwise the first usable member, kept while it stays usable, as the kernel
//!   keeps its current slave without a `primary`);
//! - **balance-xor** and **802.3ad**: `usable[hash % count]` over the members that can
//!   transmit, in the bond's order, with its `xmit_hash_policy` (for 802.3ad, those of the
//!   active aggregator, where the aggregation reports it).
//!
//! A member is *usable* when its carrier is up and no aggregator reports it out; a bond
//! when one of its members is.

pub mod links;
pub mod sysfs;

use std::collections::{HashMap, HashSet};

use xlvs_dataplane::bond::{Egress, PortId, XmitHash};

/// The bond modes xlvs transmits like (`mode=` of the bonding driver).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    ActiveBackup,
    BalanceXor,
    Lacp,
}

impl Mode {
    /// The driver's name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::ActiveBackup => "active-backup",
            Mode::BalanceXor => "balance-xor",
            Mode::Lacp => "802.3ad",
        }
    }

    /// Parses a mode as the driver names or numbers it (sysfs's `802.3ad 4` form too).
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s.split_whitespace().next().unwrap_or("") {
            "active-backup" | "1" => Ok(Mode::ActiveBackup),
            "balance-xor" | "2" => Ok(Mode::BalanceXor),
            "802.3ad" | "4" => Ok(Mode::Lacp),
            "balance-rr" | "0" | "broadcast" | "3" | "balance-tlb" | "5" | "balance-alb" | "6" => {
                Err(format!(
                    "bond mode {s:?}: xlvs transmits like active-backup, balance-xor and 802.3ad bonds only (round robin and broadcast reorder or duplicate a flow's frames; tlb/alb rewrite MAC addresses per peer)"
                ))
            }
            _ => Err(format!("unknown bond mode {s:?}")),
        }
    }
}

/// One bond: its name (the logical interface, or a member of another bond), its members in
/// the bond's order, its mode and transmit hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BondSpec {
    pub name: String,
    pub members: Vec<String>,
    pub mode: Mode,
    pub hash: XmitHash,
}

impl BondSpec {
    /// Parses `--bond NAME=MEMBER,MEMBER...` (mode 802.3ad, hash layer3+4 until
    /// `--bond-mode`/`--xmit-hash` say otherwise).
    pub fn parse(s: &str) -> Result<BondSpec, String> {
        let (name, members) = s
            .split_once('=')
            .ok_or_else(|| format!("--bond {s:?}: expected NAME=MEMBER,MEMBER..."))?;
        let members: Vec<String> = members
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(String::from)
            .collect();
        if name.is_empty() || members.is_empty() {
            return Err(format!("--bond {s:?}: expected NAME=MEMBER,MEMBER..."));
        }
        Ok(BondSpec {
            name: name.trim().to_string(),
            members,
            mode: Mode::Lacp,
            hash: XmitHash::Layer34,
        })
    }
}

/// What the aggregation reports beyond carriers (a kernel bond's sysfs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reported {
    /// The active member of an active-backup bond, by bond.
    pub active: HashMap<String, String>,
    /// Members outside their bond's active aggregator (802.3ad).
    pub out: HashSet<String>,
}

/// The bonds of a director and the state of their members.
#[derive(Clone, Debug, Default)]
pub struct Bonds {
    specs: Vec<BondSpec>,
    /// Leaves whose carrier is up.
    up: HashSet<String>,
    reported: Reported,
    /// The active member xlvs chose for each active-backup bond without a report.
    chosen: HashMap<String, String>,
}

impl Bonds {
    /// Checks the declarations: every bond has members, a member belongs to one bond, no
    /// bond contains itself, and only active-backup bonds have bonds as members.
    pub fn new(specs: Vec<BondSpec>) -> Result<Bonds, String> {
        let names: HashSet<&str> = specs.iter().map(|b| b.name.as_str()).collect();
        if names.len() != specs.len() {
            return Err("a bond is declared twice".into());
        }
        let mut owner: HashMap<&str, &str> = HashMap::new();
        for b in &specs {
            for m in &b.members {
                if let Some(o) = owner.insert(m, &b.name) {
                    return Err(format!("{m} is a member of both {o} and {}", b.name));
                }
                if names.contains(m.as_str()) && b.mode != Mode::ActiveBackup {
                    return Err(format!(
                        "{}: a {} bond over bond {m}: only active-backup bonds may have bonds as members",
                        b.name,
                        b.mode.name()
                    ));
                }
            }
        }
        // No cycles: walking up from any name ends within the number of bonds.
        for b in &specs {
            let mut at = b.name.as_str();
            for _ in 0..=specs.len() {
                match owner.get(at) {
                    Some(o) => at = o,
                    None => break,
                }
                if at == b.name {
                    return Err(format!("bond {} contains itself", b.name));
                }
            }
        }
        Ok(Bonds {
            specs,
            ..Default::default()
        })
    }

    fn spec(&self, name: &str) -> Option<&BondSpec> {
        self.specs.iter().find(|b| b.name == name)
    }

    /// Whether `name` is a bond.
    pub fn is_bond(&self, name: &str) -> bool {
        self.spec(name).is_some()
    }

    /// The bond declarations.
    pub fn specs(&self) -> &[BondSpec] {
        &self.specs
    }

    /// The bond `name` is a member of, if any.
    pub fn owner(&self, name: &str) -> Option<&str> {
        self.specs
            .iter()
            .find(|b| b.members.iter().any(|m| m == name))
            .map(|b| b.name.as_str())
    }

    /// The devices xlvs binds sockets to for interface `name`: itself if it is no bond,
    /// else the leaves under it, in the bonds' order.
    pub fn leaves(&self, name: &str) -> Vec<String> {
        match self.spec(name) {
            None => vec![name.to_string()],
            Some(b) => b.members.iter().flat_map(|m| self.leaves(m)).collect(),
        }
    }

    /// Replaces the bonds under `top` (a kernel bond read again: members joined or left)
    /// with `specs`; carriers and choices are kept. Returns whether anything changed, or an
    /// error (and no change) if the new tree is not valid with the other bonds.
    pub fn replace_tree(&mut self, top: &str, specs: Vec<BondSpec>) -> Result<bool, String> {
        let mut old = Vec::new();
        let mut stack = vec![top.to_string()];
        while let Some(n) = stack.pop() {
            if let Some(b) = self.spec(&n) {
                stack.extend(b.members.iter().cloned());
                old.push(n);
            }
        }
        let mut mine: Vec<&BondSpec> = self
            .specs
            .iter()
            .filter(|b| old.contains(&b.name))
            .collect();
        mine.sort_by(|a, b| a.name.cmp(&b.name));
        let mut new: Vec<&BondSpec> = specs.iter().collect();
        new.sort_by(|a, b| a.name.cmp(&b.name));
        if mine == new {
            return Ok(false);
        }
        let mut all: Vec<BondSpec> = self
            .specs
            .iter()
            .filter(|b| !old.contains(&b.name))
            .cloned()
            .collect();
        all.extend(specs);
        let checked = Bonds::new(all)?;
        self.specs = checked.specs;
        Ok(true)
    }

    /// A leaf's carrier; returns whether it changed.
    pub fn set_carrier(&mut self, leaf: &str, up: bool) -> bool {
        if up {
            self.up.insert(leaf.to_string())
        } else {
            self.up.remove(leaf)
        }
    }

    /// What the aggregation reports now (replaces the last report); returns whether it
    /// changed.
    pub fn set_reported(&mut self, r: Reported) -> bool {
        let changed = self.reported != r;
        self.reported = r;
        changed
    }

    /// Whether `name` (a leaf or a bond) can carry frames.
    pub fn usable(&self, name: &str) -> bool {
        if self.reported.out.contains(name) {
            return false;
        }
        match self.spec(name) {
            None => self.up.contains(name),
            Some(b) => b.members.iter().any(|m| self.usable(m)),
        }
    }

    /// Settles each active-backup bond's active member after a change: the reported one if
    /// usable, else the chosen one while it stays usable, else the first usable member. Returns the
    /// bonds whose active member changed, with the new one (none: no member usable).
    pub fn settle(&mut self) -> Vec<(String, Option<String>)> {
        let mut changed = Vec::new();
        for b in self.specs.clone() {
            if b.mode != Mode::ActiveBackup {
                continue;
            }
            // The kernel's choice while it can carry frames; once it cannot, the next one
            // at once (the kernel moves within its miimon interval, to the same member
            // unless a primary or more than two members make it choose otherwise, and xlvs
            // follows its report then).
            let now = match self.reported.active.get(&b.name) {
                Some(a) if b.members.contains(a) && self.usable(a) => Some(a.clone()),
                _ => match self.chosen.get(&b.name) {
                    Some(c) if self.usable(c) => Some(c.clone()),
                    _ => b.members.iter().find(|m| self.usable(m)).cloned(),
                },
            };
            let before = match &now {
                Some(a) => self.chosen.insert(b.name.clone(), a.clone()),
                None => self.chosen.remove(&b.name),
            };
            if before != now {
                changed.push((b.name.clone(), now));
            }
        }
        changed
    }

    /// The egress of interface `name`, `port` mapping a leaf to its port.
    pub fn egress(&self, name: &str, port: &impl Fn(&str) -> Option<PortId>) -> Egress {
        // A plain interface transmits whatever its carrier says (as the kernel would try);
        // a bond's members are filtered by usability below.
        let Some(b) = self.spec(name) else {
            return port(name).map_or(Egress::Down, Egress::Port);
        };
        match b.mode {
            Mode::ActiveBackup => match self.chosen.get(&b.name) {
                Some(a) if self.usable(a) => self.egress(a, port),
                _ => Egress::Down,
            },
            Mode::BalanceXor | Mode::Lacp => {
                let ports: Vec<PortId> = b
                    .members
                    .iter()
                    .filter(|m| self.usable(m))
                    .filter_map(|m| port(m))
                    .collect();
                Egress::hashed(b.hash, &ports)
            }
        }
    }
}

/// What xlvsd drives: the logical interfaces (by `IfaceId`), the ports (leaves, by
/// `PortId`, each with its logical interface) and the bonds between them.
#[derive(Debug)]
pub struct Plan {
    pub logical: Vec<String>,
    pub ports: Vec<(String, u8)>,
    pub bonds: Bonds,
    /// The logical interfaces that are kernel bonds (their sysfs report and membership are
    /// followed).
    pub kernel: Vec<String>,
}

/// Plans the interfaces from `--iface` names and `--bond` declarations: a bond declared
/// with `--bond` is used as declared (its top joins the logical interfaces if `--iface`
/// does not name it); an `--iface` that sysfs shows as a kernel bond is read from sysfs
/// (`root`) with its members, mode and hash policy; any other is a plain interface.
pub fn plan(
    ifaces: &[String],
    declared: &[BondSpec],
    root: &std::path::Path,
) -> anyhow::Result<Plan> {
    let mut logical: Vec<String> = Vec::new();
    for n in ifaces {
        if logical.contains(n) {
            anyhow::bail!("interface {n} given twice");
        }
        logical.push(n.clone());
    }
    let members: HashSet<&str> = declared
        .iter()
        .flat_map(|b| b.members.iter().map(String::as_str))
        .collect();
    for b in declared {
        if !members.contains(b.name.as_str()) && !logical.contains(&b.name) {
            logical.push(b.name.clone());
        }
    }
    let mut specs = declared.to_vec();
    let mut kernel = Vec::new();
    for n in &logical {
        if !declared.iter().any(|b| &b.name == n) && sysfs::is_bond(root, n) {
            specs.extend(sysfs::read_tree(root, n)?);
            kernel.push(n.clone());
        }
    }
    let bonds = Bonds::new(specs).map_err(|e| anyhow::anyhow!(e))?;
    let mut ports: Vec<(String, u8)> = Vec::new();
    for (i, n) in logical.iter().enumerate() {
        if bonds.owner(n).is_some() {
            anyhow::bail!(
                "{n} is a member of bond {}: give the bond",
                bonds.owner(n).unwrap_or("")
            );
        }
        for leaf in bonds.leaves(n) {
            if let Some((_, o)) = ports.iter().find(|(p, _)| *p == leaf) {
                anyhow::bail!("{leaf} is under both {} and {n}", logical[*o as usize]);
            }
            ports.push((leaf, i as u8));
        }
    }
    Ok(Plan {
        logical,
        ports,
        bonds,
        kernel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lacp(name: &str, members: &[&str]) -> BondSpec {
        BondSpec {
            name: name.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            mode: Mode::Lacp,
            hash: XmitHash::Layer34,
        }
    }

    fn ports(name: &str) -> Option<PortId> {
        name.strip_prefix("eth").and_then(|n| n.parse().ok())
    }

    #[test]
    fn an_lacp_bond_hashes_over_its_members_with_carrier() {
        let mut b = Bonds::new(vec![lacp("bond0", &["eth0", "eth1", "eth2"])]).unwrap();
        assert_eq!(b.leaves("bond0"), ["eth0", "eth1", "eth2"]);
        assert_eq!(b.leaves("eth9"), ["eth9"]);
        assert_eq!(b.egress("bond0", &ports), Egress::Down);
        for m in ["eth0", "eth1", "eth2"] {
            assert!(b.set_carrier(m, true));
        }
        assert!(!b.set_carrier("eth0", true), "no change");
        assert_eq!(
            b.egress("bond0", &ports),
            Egress::hashed(XmitHash::Layer34, &[0, 1, 2])
        );
        // eth1 loses its carrier: the others share its flows.
        b.set_carrier("eth1", false);
        assert_eq!(
            b.egress("bond0", &ports),
            Egress::hashed(XmitHash::Layer34, &[0, 2])
        );
        // The aggregator reports eth2 out: eth0 alone.
        b.set_reported(Reported {
            out: ["eth2".to_string()].into(),
            ..Default::default()
        });
        assert_eq!(
            b.egress("bond0", &ports),
            Egress::hashed(XmitHash::Layer34, &[0])
        );
        b.set_carrier("eth0", false);
        assert_eq!(b.egress("bond0", &ports), Egress::Down);
    }

    #[test]
    fn active_backup_keeps_its_member_until_it_fails() {
        let mut b = Bonds::new(vec![BondSpec {
            mode: Mode::ActiveBackup,
            ..lacp("bond0", &["eth0", "eth1"])
        }])
        .unwrap();
        b.set_carrier("eth1", true);
        assert_eq!(
            b.settle(),
            [("bond0".to_string(), Some("eth1".to_string()))]
        );
        assert_eq!(b.egress("bond0", &ports), Egress::Port(1));
        // eth0 comes up: eth1 stays active (no primary).
        b.set_carrier("eth0", true);
        assert!(b.settle().is_empty());
        assert_eq!(b.egress("bond0", &ports), Egress::Port(1));
        b.set_carrier("eth1", false);
        assert_eq!(
            b.settle(),
            [("bond0".to_string(), Some("eth0".to_string()))]
        );
        assert_eq!(b.egress("bond0", &ports), Egress::Port(0));
        // What the kernel reports wins.
        b.set_carrier("eth1", true);
        b.set_reported(Reported {
            active: [("bond0".to_string(), "eth1".to_string())].into(),
            ..Default::default()
        });
        b.settle();
        assert_eq!(b.egress("bond0", &ports), Egress::Port(1));
        // The reported member loses its carrier before the kernel reports the next one:
        // xlvs moves at once.
        b.set_carrier("eth1", false);
        assert_eq!(
            b.settle(),
            [("bond0".to_string(), Some("eth0".to_string()))]
        );
        assert_eq!(b.egress("bond0", &ports), Egress::Port(0));
    }

    #[test]
    fn active_backup_over_two_aggregates_follows_the_active_one() {
        let mut b = Bonds::new(vec![
            lacp("bondA", &["eth0", "eth1"]),
            lacp("bondB", &["eth2", "eth3"]),
            BondSpec {
                mode: Mode::ActiveBackup,
                ..lacp("bond0", &["bondA", "bondB"])
            },
        ])
        .unwrap();
        assert_eq!(b.leaves("bond0"), ["eth0", "eth1", "eth2", "eth3"]);
        assert_eq!(b.owner("eth2"), Some("bondB"));
        assert_eq!(b.owner("bondB"), Some("bond0"));
        for m in ["eth0", "eth1", "eth2", "eth3"] {
            b.set_carrier(m, true);
        }
        b.settle();
        assert_eq!(
            b.egress("bond0", &ports),
            Egress::hashed(XmitHash::Layer34, &[0, 1])
        );
        // One member of A down: A still carries, on one port.
        b.set_carrier("eth0", false);
        assert!(b.settle().is_empty());
        assert_eq!(
            b.egress("bond0", &ports),
            Egress::hashed(XmitHash::Layer34, &[1])
        );
        // A wholly down: B takes over, and keeps it when A returns.
        b.set_carrier("eth1", false);
        assert_eq!(
            b.settle(),
            [("bond0".to_string(), Some("bondB".to_string()))]
        );
        assert_eq!(
            b.egress("bond0", &ports),
            Egress::hashed(XmitHash::Layer34, &[2, 3])
        );
        b.set_carrier("eth0", true);
        assert!(b.settle().is_empty());
        assert_eq!(
            b.egress("bond0", &ports),
            Egress::hashed(XmitHash::Layer34, &[2, 3])
        );
    }

    #[test]
    fn a_plan_puts_each_bonds_leaves_under_its_logical_interface() {
        let root = std::path::Path::new("/nonexistent");
        let p = plan(&["ext0".into()], &[lacp("bond0", &["eth0", "eth1"])], root).unwrap();
        assert_eq!(p.logical, ["ext0", "bond0"]);
        assert_eq!(
            p.ports,
            [("ext0".into(), 0), ("eth0".into(), 1), ("eth1".into(), 1)]
        );
        assert!(p.kernel.is_empty());
        assert!(plan(&["eth0".into()], &[lacp("bond0", &["eth0"])], root).is_err());
        assert!(plan(&["a".into(), "a".into()], &[], root).is_err());
    }

    #[test]
    fn declarations_are_checked() {
        assert!(Bonds::new(vec![lacp("b", &["eth0"]), lacp("c", &["eth0"])]).is_err());
        assert!(Bonds::new(vec![lacp("a", &["b"]), lacp("b", &["eth0"])]).is_err());
        let ab = |n: &str, m: &[&str]| BondSpec {
            mode: Mode::ActiveBackup,
            ..lacp(n, m)
        };
        assert!(Bonds::new(vec![ab("a", &["b"]), ab("b", &["a"])]).is_err());
        assert!(Bonds::new(vec![lacp("a", &["e"]), lacp("a", &["f"])]).is_err());
        assert_eq!(
            BondSpec::parse("bond0=eth0, eth1").unwrap().members,
            ["eth0", "eth1"]
        );
        assert!(BondSpec::parse("bond0").is_err());
        assert!(BondSpec::parse("bond0=").is_err());
        assert_eq!(Mode::parse("802.3ad 4"), Ok(Mode::Lacp));
        assert!(Mode::parse("balance-rr").unwrap_err().contains("reorder"));
    }
}
