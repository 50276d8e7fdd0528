//! Kalmar's I/O buffers, in a crate of their own so that the messenger and
//! the NBD server can hand the store data it writes without a copy, while
//! neither of them has to link the store (and RocksDB) to get the type.
//!
//! - [`AlignedBuf`]: an owned heap buffer aligned to [`BUF_ALIGN`] (4 KiB),
//!   as O_DIRECT needs; large ones are recycled through a small
//!   process-wide cache.
//! - [`IoBuf`]: the data of one device write: an owned buffer, an aligned
//!   window of a shared one, or caller [`bytes::Bytes`] that happen to be
//!   aligned ([`is_aligned`]).
//! - [`aligned_bytes`] / [`shared_aligned_bytes`]: an aligned buffer as
//!   `Bytes` without a copy, e.g. a network payload received straight into
//!   aligned memory.
#![deny(clippy::unwrap_used)]

mod aligned;

pub use aligned::{
    aligned_bytes, is_aligned, shared_aligned_bytes, AlignedBuf, IoBuf, BUF_ALIGN, CACHE_CAP_BYTES,
    CACHE_MAX_BYTES, CACHE_MIN_BYTES,
};
