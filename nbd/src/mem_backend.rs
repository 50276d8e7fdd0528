//! An export held in memory: for tests of the server and the protocol
//! against real clients without a store. Not durable, so it does not
//! claim multi-connection consistency beyond one process.

use bytes::Bytes;
use parking_lot::Mutex;

use crate::backend::{BackendError, BlockBackend};

/// A RAM disk of a fixed size (zero-filled).
pub struct MemBackend {
    data: Mutex<Vec<u8>>,
    size_bytes: u64,
}

impl MemBackend {
    /// Largest RAM export, to keep a mistyped size from eating the host.
    pub const MAX_SIZE_BYTES: u64 = 4 << 30;

    pub fn new(size_bytes: u64) -> Result<MemBackend, BackendError> {
        if size_bytes > Self::MAX_SIZE_BYTES {
            return Err(BackendError::Invalid(format!(
                "a memory export of {size_bytes} bytes exceeds the limit of {}",
                Self::MAX_SIZE_BYTES
            )));
        }
        Ok(MemBackend {
            data: Mutex::new(vec![0u8; size_bytes as usize]),
            size_bytes,
        })
    }

    fn range(&self, offset: u64, len: u64) -> Result<std::ops::Range<usize>, BackendError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size_bytes => Ok(offset as usize..end as usize),
            _ => Err(BackendError::Invalid(format!(
                "offset {offset} length {len} beyond size {}",
                self.size_bytes
            ))),
        }
    }
}

impl BlockBackend for MemBackend {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn can_multi_conn(&self) -> bool {
        true
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, BackendError> {
        let r = self.range(offset, u64::from(len))?;
        Ok(Bytes::copy_from_slice(&self.data.lock()[r]))
    }

    async fn write(&self, offset: u64, data: Bytes, _fua: bool) -> Result<(), BackendError> {
        let r = self.range(offset, data.len() as u64)?;
        self.data.lock()[r].copy_from_slice(&data);
        Ok(())
    }

    async fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn trim(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.write_zeroes(offset, len, false).await
    }

    async fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        _no_hole: bool,
    ) -> Result<(), BackendError> {
        let r = self.range(offset, len)?;
        self.data.lock()[r].fill(0);
        Ok(())
    }
}
