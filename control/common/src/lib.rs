//! Building blocks every Kalmar crate shares.
//!
//! - [`encoding`]: Ceph-style versioned binary encoding (version + compat in
//!   every struct, bounded decoding, crc-sealed blobs).
//! - [`perf`]: perf counters with Ceph's types, names and JSON shapes.
//! - [`admin_socket`]: the per-daemon unix socket (`perf dump`, `status`, ...).
//! - [`config`]: the TOML conf file with `[global]` and per-daemon sections.
//! - [`logging`]: leveled logs to stderr or a file.
//! - [`crash`]: crash reports in Ceph's shape, written on a panic.
//! - [`alloc_count`]: a counting global allocator (allocations per op).
#![deny(clippy::unwrap_used)]

pub mod admin_socket;
pub mod alloc_count;
pub mod clock;
pub mod config;
pub mod crash;
pub mod encoding;
pub mod logging;
#[cfg(feature = "manpage")]
pub mod manpage;
pub mod perf;
pub mod release;

pub use encoding::{Decode, DecodeError, Decoder, Encode};

/// This host's name as daemons report it in their metadata (`hostname`,
/// which Ceph's mgr modules and dashboards group daemons by);
/// `localhost` when the kernel has none.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
