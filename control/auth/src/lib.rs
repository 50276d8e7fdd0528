//! Kalmar's authentication, as pure logic (no I/O):
//!
//! - [`key`]: secret keys in Ceph's printable format (`AQ...==`).
//! - [`keyring`]: keyring files in Ceph's INI-like format, written 0600.
//! - [`caps`]: the mon/osd/mgr cap grammar and the checks on it.
//! - [`crypto`]: HMAC-SHA256 proofs and AES-128-GCM sealing, from
//!   RustCrypto's crates.
//! - [`proto`], [`server`], [`client`]: the cephx-style handshake the
//!   messenger runs after hello (challenge-response on both nonces,
//!   tickets sealed under rotating service secrets); [`source`]: where an
//!   acceptor finds keys.
#![deny(clippy::unwrap_used)]

pub mod authdb;
pub mod caps;
pub mod client;
pub mod crypto;
pub mod key;
pub mod keyring;
pub mod proto;
pub mod server;
pub mod source;

use std::str::FromStr;

pub use authdb::AuthDb;
pub use caps::{Caps, EntityCaps, Perms, Profile, Service};
pub use client::ClientAuth;
pub use key::{ConnectionKey, CryptoKey};
pub use keyring::{Keyring, KeyringEntry};
pub use server::{AuthedPeer, ServerAuth, ServerStep};
pub use source::{AuthDbKeys, KeySource, MemKeySource};

/// `auth_cluster_required` / `auth_service_required` /
/// `auth_client_required`: `cephx` or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
    Cephx,
}

impl FromStr for AuthMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "none" | "" => Ok(AuthMode::None),
            "cephx" => Ok(AuthMode::Cephx),
            other => Err(format!(
                "unknown auth method '{other}' (expected cephx or none)"
            )),
        }
    }
}

impl AuthMode {
    /// What each of the three options is when the conf does not set it:
    /// `cephx`, as in Ceph (a new cluster requires authentication;
    /// `none` must be written out, and `health` warns AUTH_INSECURE).
    pub const DEFAULT: AuthMode = AuthMode::Cephx;

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Cephx => "cephx",
        }
    }
}

/// Why an authentication failed. The messages are for logs and the
/// refused peer; none carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required (this peer runs with cephx)")]
    Required,
    #[error("unsupported authentication method {0}")]
    Method(u8),
    #[error("unknown entity {0}")]
    UnknownEntity(String),
    #[error("{0}: wrong key (the proof does not match)")]
    BadProof(String),
    #[error("the {0:?} service authenticates with a ticket from the mon")]
    TicketNeeded(Service),
    #[error("ticket for the {ticket:?} service shown to the {ours:?} service")]
    TicketService { ticket: Service, ours: Service },
    #[error("ticket sealed under {0:?} secret {1}, which this service does not hold")]
    UnknownSecret(Service, u64),
    #[error("ticket could not be opened (forged or altered)")]
    BadTicket,
    #[error("ticket expired at {expired_unix_secs}")]
    TicketExpired { expired_unix_secs: u64 },
    #[error("ticket of {ticket} shown by {peer}")]
    TicketEntity { ticket: String, peer: String },
    #[error("stored caps do not parse: {0}")]
    Caps(String),
    #[error("the peer did not prove it holds our key: not the genuine service")]
    ServerNotGenuine,
    #[error("the mon's grant could not be opened")]
    BadGrant,
    #[error("authentication messages out of order")]
    OutOfOrder,
    #[error("the mon asks for this entity's key and it has none (no keyring?)")]
    NoKey,
    #[error("no valid ticket for the {0:?} service (authenticate with the mon first)")]
    NoTicket(Service),
    #[error("crypto: {0}")]
    Crypto(String),
}

impl From<key::KeyError> for AuthError {
    fn from(e: key::KeyError) -> Self {
        AuthError::Crypto(e.to_string())
    }
}

impl From<crypto::CryptoError> for AuthError {
    fn from(e: crypto::CryptoError) -> Self {
        AuthError::Crypto(e.to_string())
    }
}

#[cfg(test)]
mod handshake_tests;
