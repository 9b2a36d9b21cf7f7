//! xlvs data plane.
//!
//! - [`wire`]: typed zero-copy views of Ethernet, IPv4, TCP, UDP and the Internet checksum.
//! - [`core`]: the sans-IO forwarding core (connection table, schedulers, TCP state, NAT/DR
//!   rewrite). Frame and time in, verdict and rewritten frame out.
//! - [`bond`]: the member port a frame leaves a bonded interface on (the kernel bond's
//!   transmit hash).
//! - `afxdp` (feature `afxdp`): the AF_XDP workers that drive the core from real NICs.

pub mod bond;
pub mod core;
pub mod wire;

#[cfg(feature = "afxdp")]
pub mod afxdp;
#[cfg(feature = "afxdp")]
pub mod offload_credit;
#[cfg(feature = "afxdp")]
pub mod offload_map;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
