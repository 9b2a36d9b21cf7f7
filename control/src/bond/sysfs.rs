//! Kernel bonds as sysfs shows them (`/sys/class/net/BOND/bonding/...` and each member's
//! `bonding_slave/...`), and the carriers of the leaves. Every function takes the root
//! (`/sys/class/net`) so tests can lay out a tree of their own.

use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use xlvs_dataplane::bond::XmitHash;

use super::{BondSpec, Bonds, Mode, Reported};

/// The live tree.
pub const ROOT: &str = "/sys/class/net";

fn read(root: &Path, rel: String) -> Option<String> {
    std::fs::read_to_string(root.join(rel))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Whether `name` is a kernel bond.
pub fn is_bond(root: &Path, name: &str) -> bool {
    root.join(name).join("bonding").is_dir()
}

/// The kernel bond `name` and the bonds among its members (an active-backup bond over two
/// 802.3ad bonds gives three), members in the bond's order.
pub fn read_tree(root: &Path, name: &str) -> anyhow::Result<Vec<BondSpec>> {
    let mut out = Vec::new();
    read_into(root, name, &mut out, 0)?;
    Ok(out)
}

fn read_into(root: &Path, name: &str, out: &mut Vec<BondSpec>, depth: usize) -> anyhow::Result<()> {
    if depth > 4 {
        bail!("{name}: bonds nested too deep");
    }
    let members: Vec<String> = read(root, format!("{name}/bonding/slaves"))
        .with_context(|| format!("{name}: no bonding/slaves in sysfs"))?
        .split_whitespace()
        .map(String::from)
        .collect();
    if members.is_empty() {
        bail!("bond {name} has no members");
    }
    let mode_s = read(root, format!("{name}/bonding/mode")).unwrap_or_default();
    let mode = Mode::parse(&mode_s).map_err(|e| anyhow!("{name}: {e}"))?;
    let hash_s = read(root, format!("{name}/bonding/xmit_hash_policy")).unwrap_or_default();
    let hash = match mode {
        // active-backup hashes nothing.
        Mode::ActiveBackup => XmitHash::parse(&hash_s).unwrap_or(XmitHash::Layer2),
        _ => XmitHash::parse(&hash_s).ok_or_else(|| {
            anyhow!(
                "{name}: xmit_hash_policy {hash_s:?}: xlvs computes layer2, layer2+3 and layer3+4"
            )
        })?,
    };
    for m in &members {
        if is_bond(root, m) {
            read_into(root, m, out, depth + 1)?;
        }
    }
    out.push(BondSpec {
        name: name.to_string(),
        members,
        mode,
        hash,
    });
    Ok(())
}

/// Whether leaf `name` has carrier (and is administratively up).
pub fn carrier(root: &Path, name: &str) -> bool {
    // `carrier` cannot be read (EINVAL) while the device is down.
    read(root, format!("{name}/carrier")).as_deref() == Some("1")
}

/// What the kernel bonds among `bonds` report: the active member of each active-backup
/// bond, and the members of 802.3ad bonds outside the active aggregator. Bonds that sysfs
/// does not show (declared with `--bond`) report nothing.
pub fn report(root: &Path, bonds: &Bonds) -> Reported {
    let mut r = Reported::default();
    for b in bonds.specs() {
        if !is_bond(root, &b.name) {
            continue;
        }
        match b.mode {
            Mode::ActiveBackup => {
                if let Some(a) = read(root, format!("{}/bonding/active_slave", b.name))
                    && !a.is_empty()
                {
                    r.active.insert(b.name.clone(), a);
                }
            }
            Mode::Lacp => {
                let active = read(root, format!("{}/bonding/ad_aggregator", b.name));
                for m in &b.members {
                    let agg = read(root, format!("{m}/bonding_slave/ad_aggregator_id"));
                    if active.is_some() && agg != active {
                        r.out.insert(m.clone());
                    }
                }
            }
            Mode::BalanceXor => {}
        }
        for m in &b.members {
            if read(root, format!("{m}/bonding_slave/mii_status")).as_deref() == Some("down") {
                r.out.insert(m.clone());
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, v: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("{v}\n")).unwrap();
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        // bond0: active-backup over bondA (eth0, eth1) and bondB (eth2, eth3).
        write(r, "bond0/bonding/slaves", "bondA bondB");
        write(r, "bond0/bonding/mode", "active-backup 1");
        write(r, "bond0/bonding/xmit_hash_policy", "layer2 0");
        write(r, "bond0/bonding/active_slave", "bondB");
        for (b, m) in [("bondA", ["eth0", "eth1"]), ("bondB", ["eth2", "eth3"])] {
            write(r, &format!("{b}/bonding/slaves"), &m.join(" "));
            write(r, &format!("{b}/bonding/mode"), "802.3ad 4");
            write(r, &format!("{b}/bonding/xmit_hash_policy"), "layer3+4 1");
            write(r, &format!("{b}/bonding/ad_aggregator"), "1");
            for x in m {
                write(r, &format!("{x}/bonding_slave/ad_aggregator_id"), "1");
                write(r, &format!("{x}/bonding_slave/mii_status"), "up");
                write(r, &format!("{x}/carrier"), "1");
            }
        }
        d
    }

    #[test]
    fn a_stacked_kernel_bond_reads_as_three_bonds() {
        let d = tree();
        let specs = read_tree(d.path(), "bond0").unwrap();
        let names: Vec<_> = specs.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["bondA", "bondB", "bond0"]);
        assert_eq!(specs[0].mode, Mode::Lacp);
        assert_eq!(specs[0].hash, XmitHash::Layer34);
        assert_eq!(specs[2].mode, Mode::ActiveBackup);
        let b = Bonds::new(specs).unwrap();
        assert_eq!(b.leaves("bond0"), ["eth0", "eth1", "eth2", "eth3"]);
        assert!(carrier(d.path(), "eth0"));
        assert!(!carrier(d.path(), "eth9"));
    }

    #[test]
    fn the_report_names_the_active_member_and_who_left_the_aggregator() {
        let d = tree();
        let b = Bonds::new(read_tree(d.path(), "bond0").unwrap()).unwrap();
        let r = report(d.path(), &b);
        assert_eq!(r.active.get("bond0").map(String::as_str), Some("bondB"));
        assert!(r.out.is_empty());
        write(d.path(), "eth3/bonding_slave/ad_aggregator_id", "2");
        write(d.path(), "eth0/bonding_slave/mii_status", "down");
        let r = report(d.path(), &b);
        assert_eq!(r.out, ["eth3".to_string(), "eth0".to_string()].into());
    }

    #[test]
    fn unsupported_modes_and_policies_are_refused_with_the_reason() {
        let d = tree();
        write(d.path(), "bondA/bonding/mode", "balance-rr 0");
        assert!(format!("{:#}", read_tree(d.path(), "bond0").unwrap_err()).contains("reorder"));
        let d = tree();
        write(d.path(), "bondA/bonding/xmit_hash_policy", "encap3+4 4");
        assert!(read_tree(d.path(), "bond0").is_err());
        assert!(read_tree(d.path(), "eth0").is_err());
    }
}
