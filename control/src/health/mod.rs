//! Realserver health checks (keepalived's checker for an xlvs director).
//!
//! - [`spec`]: what is checked and how, keepalived's defaults filled in.

pub mod spec;
