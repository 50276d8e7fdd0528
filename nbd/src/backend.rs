//! What an export is served from: the [`BlockBackend`] trait the server is
//! written against, and its error type.
//!
//! Contract of every backend: a call resolves only when its effect is
//! complete; a write, trim or write-zeroes resolves `Ok` only once it is
//! durable (so FUA and FLUSH need no extra work), and reads see every
//! write that resolved before they were issued. Requests in flight at the
//! same time may complete in any order. Offsets and lengths were checked
//! against [`BlockBackend::size_bytes`] by the server.

use std::future::Future;

use bytes::Bytes;

use crate::proto::Errno;

/// Why a backend call failed; each maps to an NBD error value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("no space left: {0}")]
    NoSpace(String),
    #[error("I/O error: {0}")]
    Io(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("the backend is shutting down")]
    Shutdown,
}

impl BackendError {
    pub fn errno(&self) -> Errno {
        match self {
            BackendError::NoSpace(_) => Errno::NoSpc,
            BackendError::Io(_) => Errno::Io,
            BackendError::Invalid(_) => Errno::Inval,
            BackendError::Shutdown => Errno::Shutdown,
        }
    }
}

/// A block device the NBD server exports. See the module documentation.
pub trait BlockBackend: Send + Sync + 'static {
    /// Export size in bytes.
    fn size_bytes(&self) -> u64;

    /// True when FLUSH and FUA effects are visible to every connection on
    /// reply (the server then advertises `NBD_FLAG_CAN_MULTI_CONN`).
    fn can_multi_conn(&self) -> bool;

    /// Exactly `len` bytes at `offset`; never-written ranges read as zeros.
    fn read(
        &self,
        offset: u64,
        len: u32,
    ) -> impl Future<Output = Result<Bytes, BackendError>> + Send;

    /// Writes `data` at `offset`; resolves once durable. `fua` is passed
    /// for backends that distinguish it.
    fn write(
        &self,
        offset: u64,
        data: Bytes,
        fua: bool,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Resolves once every write that resolved before it is durable.
    fn flush(&self) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Discards the range: it reads as zeros afterwards and its space is
    /// freed where the backend can.
    fn trim(&self, offset: u64, len: u64) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Makes the range read as zeros. With `no_hole` the space stays
    /// allocated (zeros are written) instead of being freed.
    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        no_hole: bool,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}
