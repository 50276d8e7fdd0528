//! kalmar-cli: the `kalmar` admin CLI's command groups.
//!
//! - [`rados`] (+ [`bench`]): object access and `rados bench`.
//! - [`image`]: block images (`image create|ls|rm`).
//! - [`vstart`]: a local cluster (`vstart` / `vstop`), on [`procs`].
//! - [`args`], [`grammar`], [`moncmd`]: global options, Ceph's grammar for
//!   mon commands, sending them and printing replies.
//! - [`mgrcmd`]: `tell mgr`, `mgr module ...`, and the commands the
//!   active mgr answers (`pg stat|dump`, `df`, `osd df`, `status` data).
//! - [`pgcmd`]: `pg PGID query`, `pg scrub|deep-scrub|repair PGID`,
//!   answered by the PG's primary OSD.
//! - [`crush`]: `osd crush test` (offline); [`daemon`]: admin sockets.
//! - [`exporter`]: the per-host perf-counter endpoint (Ceph's
//!   `ceph-exporter`, port 9926).
#![deny(clippy::unwrap_used)]

pub mod args;
pub mod bench;
pub mod crush;
pub mod crush_grammar;
pub mod daemon;
pub mod exporter;
pub mod grammar;
pub mod image;
pub mod mgrcmd;
pub mod moncmd;
pub mod pgcmd;
pub mod procs;
pub mod rados;
pub mod vstart;
