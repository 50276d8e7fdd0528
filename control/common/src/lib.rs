//! Building blocks every Kalmar crate shares.
//!
//! - [`encoding`]: Ceph-style versioned binary encoding (version + compat in
//!   every struct, bounded decoding, crc-sealed blobs).
//! - [`perf`]: perf counters with Ceph's types, names and JSON shapes.
//! - [`admin_socket`]: the per-daemon unix socket (`perf dump`, `status`, ...).
//! - [`config`]: the TOML conf file with `[global]` and per-daemon sections.
//! - [`logging`]: leveled logs to stderr or a file.
//! - [`alloc_count`]: a counting global allocator (allocations per op).
#![deny(clippy::unwrap_used)]

pub mod admin_socket;
pub mod alloc_count;
pub mod config;
pub mod encoding;
pub mod logging;
pub mod perf;

pub use encoding::{Decode, DecodeError, Decoder, Encode};
