//! Kalmar's authentication, as pure logic (no I/O):
//!
//! - [`key`]: secret keys in Ceph's printable format (`AQ...==`).
//! - [`keyring`]: keyring files in Ceph's INI-like format, written 0600.
//! - [`caps`]: the mon/osd/mgr cap grammar and the checks on it.
//! - [`crypto`]: HMAC-SHA256 proofs and AES-128-GCM sealing, from
//!   RustCrypto's crates.
#![deny(clippy::unwrap_used)]

pub mod caps;
pub mod crypto;
pub mod key;
pub mod keyring;

pub use caps::{Caps, EntityCaps, Perms, Profile, Service};
pub use key::CryptoKey;
pub use keyring::{Keyring, KeyringEntry};
