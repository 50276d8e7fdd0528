//! Block devices: the trait the store is written against, the io_uring
//! implementation for real devices and files, and a fault-injecting device
//! for tests.
//!
//! A device executes batches of reads and writes. [`BlockDevice::submit`]
//! returns only when every operation of the batch has completed, so the
//! buffers, which the operations own, stay alive for as long as the kernel
//! may touch them. A completed write is *not* durable until a later
//! [`BlockDevice::flush`] returns, unless it was issued with `fua`.

mod buf;
mod faulty;
mod uring;

use std::path::Path;

pub use buf::{aligned_bytes, is_aligned, shared_aligned_bytes, AlignedBuf, IoBuf, BUF_ALIGN};
pub use faulty::{FaultConfig, FaultyDevice};
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

    /// Runs every operation of `ops` and returns once all have completed.
    /// Operations of one batch may execute in any order: never put two
    /// overlapping writes, or a read and a write of the same range, in one
    /// batch. On error, the first failure is returned (after all
    /// operations finished); read buffers are then unspecified.
    fn submit(&self, ops: &mut [IoOp]) -> Result<(), DeviceError>;

    /// Starts every operation of `ops` and returns without waiting for
    /// them, so the caller can prepare more work while the device is busy;
    /// [`PendingIo::wait`] completes them. The same ordering rules as
    /// [`BlockDevice::submit`] apply. A device that cannot overlap runs the
    /// batch here (the default).
    fn start(&self, mut ops: Vec<IoOp>) -> PendingIo {
        let res = self.submit(&mut ops);
        PendingIo::done(ops, res)
    }

    /// Makes every completed write durable.
    fn flush(&self) -> Result<(), DeviceError>;
}

/// A batch started with [`BlockDevice::start`]. Its operations own their
/// buffers until it completes; dropping it without [`PendingIo::wait`]
/// still waits for the device, so no buffer is freed under the kernel.
pub struct PendingIo(Pending);

enum Pending {
    Done(Vec<IoOp>, Result<(), DeviceError>),
    // Boxed: a ring is large, and one allocation per batch is cheap.
    Uring(Box<uring::InFlight>),
}

impl PendingIo {
    fn done(ops: Vec<IoOp>, res: Result<(), DeviceError>) -> PendingIo {
        PendingIo(Pending::Done(ops, res))
    }

    /// Waits until every operation completed; returns them (read buffers
    /// filled) or the first failure.
    pub fn wait(self) -> Result<Vec<IoOp>, DeviceError> {
        match self.0 {
            Pending::Done(ops, res) => res.map(|()| ops),
            Pending::Uring(f) => f.wait(),
        }
    }
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
