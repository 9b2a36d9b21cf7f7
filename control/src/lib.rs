//! xlvs control plane: the library behind `xlvsd` and `xlvsadm`.
//!
//! - [`command`]: the command model every configuration source speaks.
//! - [`ipvsadm`]: ipvsadm's command grammar and rules files.
//! - [`keepalived`]: keepalived.conf's virtual servers as commands and health-check specs.
//! - [`table`]: the services table, snapshots for the workers, ipvsadm listings.
//! - [`conns`]: the connection listing (`-L -c`).
//! - [`metrics`]: the Prometheus exposition (`xlvsd --metrics`).
//! - [`neigh`]: L2 next hops from the kernel's route and neighbour tables.
//! - [`xdp`]: the XDP program and its steering maps.
//! - [`stats`]: rate estimation and ipvsadm's number format for `--stats`/`--rate`.
//! - [`admin`]: the control socket protocol.
//! - [`daemon`]: xlvsd's control thread.
//! - [`restart`]: the table saved by an orderly stop and read back by the next xlvsd.
//! - [`sync`]: the Linux IPVS connection-sync wire codec (v0/v1), sans IO.
//! - [`sys`]: interfaces, local addresses, signals.

pub mod admin;
pub mod bond;
pub mod command;
pub mod conns;
pub mod daemon;
pub mod health;
pub mod ipvsadm;
pub mod keepalived;
pub mod metrics;
pub mod neigh;
pub mod netlink;
pub mod restart;
pub mod stats;
pub mod sync;
pub mod sys;
pub mod table;
pub mod vrrp;
pub mod xdp;
pub mod xdp_features;
