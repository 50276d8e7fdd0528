//! kalmar-mgr: the mgr daemon.
#![deny(clippy::unwrap_used)]

pub mod options;
pub mod pgmap;
pub mod units;
