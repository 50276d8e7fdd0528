//! Real devices and files, through io_uring with O_DIRECT.
//!
//! Each thread that submits takes a ring of its own from a small pool for
//! the length of one batch, so rings are never shared between threads and
//! no completion is ever reaped by the wrong waiter. A batch is pushed in
//! ring-sized chunks, submitted with one system call per chunk, and reaped
//! until nothing is in flight: only then are the buffers handed back.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use io_uring::{opcode, types, IoUring};
use parking_lot::{Condvar, Mutex};

use super::{check_io, BlockDevice, IoOp};
use crate::error::DeviceError;
use crate::layout::BLOCK_SIZE;

/// Tunables of a [`UringDevice`].
#[derive(Debug, Clone)]
pub struct UringOptions {
    /// Submission queue entries per ring: the most operations one system
    /// call hands to the kernel.
    pub ring_entries: u32,
    /// Upper bound on rings (threads doing I/O at the same time); a thread
    /// beyond it waits for a ring.
    pub max_rings: usize,
    /// Take an exclusive `flock` on the device (always on, except for
    /// read-only inspection in tests).
    pub lock: bool,
    /// How long to retry a lock held by someone else before failing with
    /// `Locked`: a killed process's rings release the device a moment
    /// after it is reaped.
    pub lock_wait_ms: u64,
}

impl Default for UringOptions {
    fn default() -> Self {
        UringOptions {
            ring_entries: 256,
            max_rings: 16,
            lock: true,
            lock_wait_ms: 2000,
        }
    }
}

struct RingPool {
    idle: Vec<IoUring>,
    created: usize,
}

/// A block device or regular file opened with O_DIRECT.
pub struct UringDevice {
    path: PathBuf,
    file: File,
    size_bytes: u64,
    opts: UringOptions,
    pool: Mutex<RingPool>,
    ring_free: Condvar,
}

const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
const BLKSSZGET: libc::c_ulong = 0x1268;

fn os_err(e: std::io::Error) -> String {
    e.to_string()
}

impl UringDevice {
    /// Opens `path` for direct I/O and, with `opts.lock`, takes an
    /// exclusive lock, failing with [`DeviceError::Locked`] when another
    /// process (or another open in this one) holds it.
    pub fn open(path: &Path, opts: UringOptions) -> Result<UringDevice, DeviceError> {
        let open_err = |reason: String| DeviceError::Open {
            path: path.to_path_buf(),
            reason,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| open_err(os_err(e)))?;
        let meta = file.metadata().map_err(|e| open_err(os_err(e)))?;
        let fd = file.as_raw_fd();
        let size_bytes = if meta.file_type().is_block_device() {
            let mut size: u64 = 0;
            // SAFETY: BLKGETSIZE64 writes one u64 through the pointer.
            if unsafe { libc::ioctl(fd, BLKGETSIZE64, &mut size as *mut u64) } != 0 {
                return Err(open_err(format!(
                    "BLKGETSIZE64: {}",
                    std::io::Error::last_os_error()
                )));
            }
            let mut sector: libc::c_int = 0;
            // SAFETY: BLKSSZGET writes one int through the pointer.
            if unsafe { libc::ioctl(fd, BLKSSZGET, &mut sector as *mut libc::c_int) } == 0
                && sector as u64 > BLOCK_SIZE
            {
                return Err(open_err(format!(
                    "logical block size {sector} is larger than the store's {BLOCK_SIZE}"
                )));
            }
            size
        } else if meta.file_type().is_file() {
            meta.len()
        } else {
            return Err(open_err("not a block device or a regular file".into()));
        };
        if opts.lock {
            let deadline =
                std::time::Instant::now() + std::time::Duration::from_millis(opts.lock_wait_ms);
            // SAFETY: plain flock on our own descriptor.
            while unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    return Err(open_err(format!("flock: {e}")));
                }
                if std::time::Instant::now() >= deadline {
                    return Err(DeviceError::Locked {
                        path: path.to_path_buf(),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        Ok(UringDevice {
            path: path.to_path_buf(),
            file,
            size_bytes,
            opts,
            pool: Mutex::new(RingPool {
                idle: Vec::new(),
                created: 0,
            }),
            ring_free: Condvar::new(),
        })
    }

    fn take_ring(&self) -> Result<IoUring, DeviceError> {
        let mut pool = self.pool.lock();
        loop {
            if let Some(r) = pool.idle.pop() {
                return Ok(r);
            }
            if pool.created < self.opts.max_rings.max(1) {
                pool.created += 1;
                drop(pool);
                return IoUring::new(self.opts.ring_entries.max(8)).map_err(|e| {
                    self.pool.lock().created -= 1;
                    DeviceError::Open {
                        path: self.path.clone(),
                        reason: format!("io_uring setup: {e}"),
                    }
                });
            }
            self.ring_free.wait(&mut pool);
        }
    }

    fn put_ring(&self, ring: Option<IoUring>) {
        let mut pool = self.pool.lock();
        match ring {
            Some(r) => pool.idle.push(r),
            None => pool.created -= 1,
        }
        drop(pool);
        self.ring_free.notify_one();
    }
}

/// Builds the submission entry of `op`; `user_data` is its batch index.
fn entry(fd: types::Fd, op: &mut IoOp, user_data: u64) -> io_uring::squeue::Entry {
    match op {
        IoOp::Write { offset, buf, fua } => {
            let s = buf.as_slice();
            opcode::Write::new(fd, s.as_ptr(), s.len() as u32)
                .offset(*offset)
                .rw_flags(if *fua { libc::RWF_DSYNC } else { 0 })
                .build()
                .user_data(user_data)
        }
        IoOp::Read { offset, buf } => opcode::Read::new(fd, buf.as_mut_ptr(), buf.len() as u32)
            .offset(*offset)
            .build()
            .user_data(user_data),
    }
}

/// Runs the batch on one ring. Returns the first error and whether the ring
/// may be reused (false when entries were pushed but never submitted).
fn run_batch(
    ring: &mut IoUring,
    fd: types::Fd,
    ops: &mut [IoOp],
) -> (Result<(), DeviceError>, bool) {
    let mut first_err: Option<DeviceError> = None;
    let mut next = 0usize;
    let mut in_flight = 0usize; // taken by the kernel, not completed
    let mut queued = 0usize; // pushed to the SQ, not yet taken by the kernel
    loop {
        if first_err.is_none() {
            let mut sq = ring.submission();
            while next < ops.len() && !sq.is_full() {
                let e = entry(fd, &mut ops[next], next as u64);
                // SAFETY: the buffer lives in `ops`, which outlives this
                // function, and we return only when nothing is in flight.
                if unsafe { sq.push(&e) }.is_err() {
                    break;
                }
                next += 1;
                queued += 1;
            }
        }
        if in_flight == 0
            && (queued == 0 || first_err.is_some())
            && (first_err.is_some() || next >= ops.len())
        {
            break;
        }
        match ring.submit_and_wait(1) {
            Ok(n) => {
                let n = n.min(queued);
                queued -= n;
                in_flight += n;
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
                ) => {}
            Err(e) => {
                first_err.get_or_insert(DeviceError::Io {
                    op: "submit",
                    offset: 0,
                    len: 0,
                    reason: e.to_string(),
                });
            }
        }
        for cqe in ring.completion() {
            in_flight = in_flight.saturating_sub(1);
            let Some(op) = ops.get(cqe.user_data() as usize) else {
                continue;
            };
            let res = cqe.result();
            if res < 0 || res as usize != op.len() {
                let reason = if res < 0 {
                    std::io::Error::from_raw_os_error(-res).to_string()
                } else {
                    format!("short transfer of {res} bytes")
                };
                first_err.get_or_insert(DeviceError::Io {
                    op: op.kind(),
                    offset: op.offset(),
                    len: op.len() as u64,
                    reason,
                });
            }
        }
    }
    (first_err.map_or(Ok(()), Err), queued == 0)
}

impl BlockDevice for UringDevice {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn submit(&self, ops: &mut [IoOp]) -> Result<(), DeviceError> {
        if ops.is_empty() {
            return Ok(());
        }
        for op in ops.iter() {
            check_io(op, self.size_bytes, BLOCK_SIZE)?;
        }
        let mut ring = self.take_ring()?;
        let (res, reusable) = run_batch(&mut ring, types::Fd(self.file.as_raw_fd()), ops);
        self.put_ring(reusable.then_some(ring));
        res
    }

    fn flush(&self) -> Result<(), DeviceError> {
        // SAFETY: fdatasync on our own descriptor. On a block device it
        // sends a cache flush; on a file it also persists the allocation.
        if unsafe { libc::fdatasync(self.file.as_raw_fd()) } != 0 {
            return Err(DeviceError::Flush {
                reason: std::io::Error::last_os_error().to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{read_at, AlignedBuf};

    #[test]
    fn write_read_flush_and_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dev");
        let f = File::create(&path).expect("create");
        f.set_len(1 << 20).expect("size");
        let dev = UringDevice::open(&path, UringOptions::default()).expect("open");
        assert_eq!(dev.size_bytes(), 1 << 20);
        let mut ops: Vec<IoOp> = (0..300u64)
            .map(|i| {
                let mut b = AlignedBuf::zeroed(4096);
                b.fill((i % 251) as u8);
                IoOp::write(i * 4096 % (1 << 20), b, i % 7 == 0)
            })
            .take(256)
            .collect();
        dev.submit(&mut ops).expect("writes");
        dev.flush().expect("flush");
        let b = read_at(&dev, 5 * 4096, 4096).expect("read");
        assert!(b.iter().all(|&x| x == 5));
        let mut bad = [IoOp::read(100, 4096)];
        assert!(matches!(
            dev.submit(&mut bad),
            Err(DeviceError::Misaligned { .. })
        ));
        let mut past = [IoOp::read(1 << 20, 4096)];
        assert!(matches!(
            dev.submit(&mut past),
            Err(DeviceError::OutOfRange { .. })
        ));
        let quick = UringOptions {
            lock_wait_ms: 50,
            ..UringOptions::default()
        };
        assert!(matches!(
            UringDevice::open(&path, quick),
            Err(DeviceError::Locked { .. })
        ));
        drop(dev);
        assert!(UringDevice::open(&path, UringOptions::default()).is_ok());
    }
}
