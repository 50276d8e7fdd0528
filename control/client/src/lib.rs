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
#![deny(clippy::unwrap_used)]

pub mod config;
pub mod error;
pub mod objecter;
pub mod rados;

pub use config::ClientConfig;
pub use error::ClientError;
pub use rados::{IoCtx, ObjectStat, Rados};
