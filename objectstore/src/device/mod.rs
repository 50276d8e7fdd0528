//! Block devices: the trait the store is written against, the io_uring
//! implementation for real devices and files, and a fault-injecting device
//! for tests.
//!
//! A device executes batches of reads and writes. [`BlockDevice::submit`]
//! returns only when every operation of the batch has completed, so the
//! buffers, which the operations own, stay alive for as long as the kernel
//! may touch them; a commit engine instead drives its own [`IoQueue`]
//! (`BlockDevice::queue`) and never blocks on the device. A completed write
//! is *not* durable until a later flush, unless it was issued with `fua`.

mod faulty;
pub mod queue;
mod uring;

use std::path::Path;
use std::sync::Arc;

// The buffer types live in kalmar-io (shared with the messenger and the NBD
// server, which need them without the store); re-exported where the store's
// users have always found them.
pub use faulty::{FaultConfig, FaultyDevice};
pub use kalmar_io::{
    aligned_bytes, is_aligned, shared_aligned_bytes, AlignedBuf, IoBuf, BUF_ALIGN,
};
pub use queue::{IoDone, IoQueue, QueuedOp, SyncQueue};
pub use uring::{UringDevice, UringOptions};

use crate::error::DeviceError;

/// One operation of a batch.
#[derive(Debug)]
pub enum IoOp {
    /// Writes the buffer at `offset`; with `fua` the data is durable when
    /// the operation completes (forced unit access).
    Write { offset: u64, buf: IoBuf, fua: bool },
    /// Fills the buffer from `offset`.
    Read { offset: u64, buf: AlignedBuf },
}

impl IoOp {
    pub fn write(offset: u64, buf: AlignedBuf, fua: bool) -> IoOp {
        IoOp::Write {
            offset,
            buf: IoBuf::Owned(buf),
            fua,
        }
    }

    /// A read into a fresh buffer (its content is unspecified until the
    /// read completes).
    pub fn read(offset: u64, len: usize) -> IoOp {
        IoOp::Read {
            offset,
            buf: AlignedBuf::for_overwrite(len),
        }
    }

    pub fn offset(&self) -> u64 {
        match self {
            IoOp::Write { offset, .. } | IoOp::Read { offset, .. } => *offset,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            IoOp::Write { buf, .. } => buf.as_slice().len(),
            IoOp::Read { buf, .. } => buf.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer of a completed read.
    pub fn into_read_buf(self) -> Option<AlignedBuf> {
        match self {
            IoOp::Read { buf, .. } => Some(buf),
            IoOp::Write { .. } => None,
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            IoOp::Write { .. } => "write",
            IoOp::Read { .. } => "read",
        }
    }
}

/// A block device or file the store lives on.
pub trait BlockDevice: Send + Sync {
    /// Usable size in bytes.
    fn size_bytes(&self) -> u64;

    /// Where the device lives (for messages).
    fn path(&self) -> &Path;

    /// The granularity of direct I/O (offsets, lengths and buffer
    /// addresses): the logical sector, 512 on most devices.
    fn dio_align(&self) -> u64 {
        512
    }

    /// The journal sector mkfs picks by default: the smallest write the
    /// device takes without a penalty (see the implementations).
    fn journal_sector(&self) -> u64 {
        self.dio_align()
    }

    /// Runs every operation of `ops` and returns once all have completed.
    /// Operations of one batch may execute in any order: never put two
    /// overlapping writes, or a read and a write of the same range, in one
    /// batch. On error, the first failure is returned (after all
    /// operations finished); read buffers are then unspecified.
    fn submit(&self, ops: &mut [IoOp]) -> Result<(), DeviceError>;

    /// Makes every completed write durable.
    fn flush(&self) -> Result<(), DeviceError>;

    /// A submission queue for one thread (see [`queue`]).
    fn queue(self: Arc<Self>) -> Result<Box<dyn IoQueue>, DeviceError>;
}

/// Checks the alignment rules of direct I/O and the device bounds.
pub(crate) fn check_io(op: &IoOp, size_bytes: u64, align: u64) -> Result<(), DeviceError> {
    let (offset, len) = (op.offset(), op.len() as u64);
    let ptr = match op {
        IoOp::Write { buf, .. } => buf.as_slice().as_ptr() as u64,
        IoOp::Read { buf, .. } => buf.as_ptr() as u64,
    };
    if offset % align != 0 || len % align != 0 || len == 0 || ptr % align != 0 {
        return Err(DeviceError::Misaligned {
            offset,
            len,
            block_size: align as u32,
        });
    }
    if offset.checked_add(len).is_none_or(|end| end > size_bytes) {
        return Err(DeviceError::OutOfRange {
            offset,
            len,
            size: size_bytes,
        });
    }
    Ok(())
}

/// Reads `len` bytes at `offset` (both aligned).
pub fn read_at(dev: &dyn BlockDevice, offset: u64, len: usize) -> Result<AlignedBuf, DeviceError> {
    let mut ops = [IoOp::read(offset, len)];
    dev.submit(&mut ops)?;
    let [op] = ops;
    Ok(op.into_read_buf().unwrap_or_else(|| AlignedBuf::zeroed(0)))
}

/// Writes `data` at `offset` (both aligned), optionally with FUA.
pub fn write_at(
    dev: &dyn BlockDevice,
    offset: u64,
    data: &[u8],
    fua: bool,
) -> Result<(), DeviceError> {
    let mut ops = [IoOp::write(offset, AlignedBuf::from_slice(data), fua)];
    dev.submit(&mut ops)
}
