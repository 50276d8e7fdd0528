//! Kalmar's client library: object operations against a cluster.
//!
//! [`Rados::connect`] talks to the mon and follows the OSDMap;
//! [`Rados::ioctx`] gives an [`IoCtx`] for a pool with librados-like
//! calls (write, write_full, append, read, stat, remove, truncate, xattrs,
//! omap, listing). Each op is computed to its PG's primary from the
//! current map and resent — with the same request id, so it is never
//! applied twice — on a new map that moves the PG, on a lost session, or
//! when the OSD asks for a retry; it fails with ETIMEDOUT after
//! [`ClientConfig::op_timeout`].
//!
//! The objecter reaches the OSDs through a [`transport::Transport`]: the
//! messenger in production ([`msgr_transport`]), a scripted fake in tests
//! ([`testing`], feature `test-support`).
#![deny(clippy::unwrap_used)]

pub mod config;
pub mod error;
mod mapview;
pub mod msgr_transport;
pub mod objecter;
mod optable;
pub mod rados;
mod sessions;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod transport;

pub use config::ClientConfig;
pub use error::ClientError;
pub use msgr_transport::MsgrTransport;
pub use rados::{IoCtx, ObjectStat, Rados};
