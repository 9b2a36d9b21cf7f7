//! keepalived's VRRP and xlvsd (issue 18): what a notify call says, and what it makes of the
//! sync daemons, sans IO.
//!
//! keepalived runs the VRRP side (`keepalived -P`) and moves the VIPs; xlvsd forwards
//! whatever reaches it, so a takeover needs nothing of xlvsd but its connections, which the
//! sync daemons keep. keepalived calls `xlvsadm --vrrp-notify` on each transition, as a
//! `notify` script (keepalived appends `INSTANCE|GROUP NAME STATE PRIORITY`) or as a
//! `notify_master`/`notify_backup`/`notify_fault`/`notify_stop` script with the state
//! given (`xlvsadm --vrrp-notify master`). xlvsd then sets its sync daemons' roles
//! ([`SyncRoles`]), records the state (`-L --daemon --json`, /metrics), and logs it.
//! `xlvsadm --check` is the `track_script` check: it fails when xlvsd does not answer or a
//! worker thread is gone, so keepalived gives up MASTER on a node whose data plane is dead.

use serde::{Deserialize, Serialize};

/// A VRRP instance's (or sync group's) state as keepalived reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VrrpState {
    Master,
    Backup,
    Fault,
    Stop,
}

impl VrrpState {
    pub fn name(self) -> &'static str {
        match self {
            VrrpState::Master => "MASTER",
            VrrpState::Backup => "BACKUP",
            VrrpState::Fault => "FAULT",
            VrrpState::Stop => "STOP",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "MASTER" => VrrpState::Master,
            "BACKUP" => VrrpState::Backup,
            "FAULT" => VrrpState::Fault,
            "STOP" | "DELETED" => VrrpState::Stop,
            _ => return None,
        })
    }
}

/// A notify call: the state, and the instance or group it is about (keepalived's `notify`
/// form gives it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    pub state: VrrpState,
    /// `INSTANCE NAME` or `GROUP NAME`, if given.
    pub instance: Option<String>,
}

/// The arguments after `--vrrp-notify`: `STATE`, or keepalived's `notify` arguments
/// `INSTANCE|GROUP NAME STATE [PRIORITY]`.
pub fn parse_notify(args: &[String]) -> Result<Notify, String> {
    let usage = || {
        "--vrrp-notify: want STATE (master, backup, fault, stop) or keepalived's \
         `INSTANCE|GROUP NAME STATE PRIORITY`"
            .to_string()
    };
    match args {
        [s] => Ok(Notify {
            state: VrrpState::parse(s).ok_or_else(usage)?,
            instance: None,
        }),
        [kind, name, s] | [kind, name, s, _] => {
            if !matches!(kind.to_ascii_uppercase().as_str(), "INSTANCE" | "GROUP") {
                return Err(usage());
            }
            if let [_, _, _, p] = args
                && p.parse::<u8>().is_err()
            {
                return Err(format!("--vrrp-notify: bad priority `{p}'"));
            }
            Ok(Notify {
                state: VrrpState::parse(s).ok_or_else(usage)?,
                instance: Some(format!("{} {name}", kind.to_ascii_uppercase())),
            })
        }
        _ => Err(usage()),
    }
}

/// How the sync daemons follow the VRRP state (`xlvsd --sync-roles`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncRoles {
    /// Master and backup always (the pair syncs both ways: each director is master for the
    /// connections it forwards and backup for its peer's). The default.
    #[default]
    Both,
    /// The LVS HOWTO's way: master on MASTER, backup on BACKUP and FAULT, none on STOP.
    Follow,
}

/// The daemons to run in `state`: (master, backup).
pub fn roles(state: VrrpState, policy: SyncRoles) -> (bool, bool) {
    match (policy, state) {
        (SyncRoles::Both, _) => (true, true),
        (SyncRoles::Follow, VrrpState::Master) => (true, false),
        (SyncRoles::Follow, VrrpState::Backup | VrrpState::Fault) => (false, true),
        (SyncRoles::Follow, VrrpState::Stop) => (false, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn notify_takes_a_state_or_keepalived_notify_arguments() {
        assert_eq!(
            parse_notify(&args("master")).unwrap(),
            Notify {
                state: VrrpState::Master,
                instance: None
            }
        );
        assert_eq!(
            parse_notify(&args("INSTANCE VI_1 BACKUP 100")).unwrap(),
            Notify {
                state: VrrpState::Backup,
                instance: Some("INSTANCE VI_1".into())
            }
        );
        assert_eq!(
            parse_notify(&args("GROUP G FAULT")).unwrap().state,
            VrrpState::Fault
        );
        for bad in [
            "",
            "primary",
            "INSTANCE VI_1",
            "HOST x MASTER 1",
            "INSTANCE VI_1 MASTER x",
        ] {
            assert!(parse_notify(&args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_follow_the_howto_or_stay_both() {
        use VrrpState::*;
        assert_eq!(roles(Master, SyncRoles::Follow), (true, false));
        assert_eq!(roles(Backup, SyncRoles::Follow), (false, true));
        assert_eq!(roles(Fault, SyncRoles::Follow), (false, true));
        assert_eq!(roles(Stop, SyncRoles::Follow), (false, false));
        for s in [Master, Backup, Fault, Stop] {
            assert_eq!(roles(s, SyncRoles::Both), (true, true));
        }
    }
}
