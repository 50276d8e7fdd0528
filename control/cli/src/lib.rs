//! kalmar-cli: the `kalmar` admin CLI's command groups.
//!
//! - [`rados`] (+ [`bench`]): object access and `rados bench`.
//! - [`image`]: block images (`image create|ls|rm`).
//! - [`vstart`]: a local cluster (`vstart` / `vstop`), on [`procs`].
#![deny(clippy::unwrap_used)]

pub mod bench;
pub mod image;
pub mod procs;
pub mod rados;
pub mod vstart;
