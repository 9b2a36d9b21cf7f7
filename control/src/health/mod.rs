//! Realserver health checks (keepalived's checker for an xlvs director).
//!
//! - [`spec`]: what is checked and how, keepalived's defaults filled in.
//! - [`machine`]: the decisions, sans IO: when to probe, what a result means for the
//!   realserver and its service's quorum, which scripts run, the table's [`machine::Overlay`];
//! - [`probe`]: the probes and scripts, on a runtime of their own;
//! - [`driver`]: the two joined for the control thread, the `--health` listing, the metrics.

pub mod driver;
pub mod machine;
pub mod probe;
pub mod spec;
#[cfg(test)]
mod tests;
