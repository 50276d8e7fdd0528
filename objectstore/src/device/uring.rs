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
use std::sync::Arc;

use io_uring::{opcode, types, IoUring};
use parking_lot::{Condvar, Mutex};

use super::{check_io, BlockDevice, IoOp, Pending, PendingIo};
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

/// Rings not in use; shared with batches in flight, which give their ring
/// back when they complete.
struct RingPool {
    state: Mutex<PoolState>,
    ring_free: Condvar,
}

struct PoolState {
    idle: Vec<IoUring>,
    created: usize,
}

/// A block device or regular file opened with O_DIRECT.
pub struct UringDevice {
    path: PathBuf,
    /// Shared with batches in flight, so the descriptor outlives them.
    file: Arc<File>,
    size_bytes: u64,
    opts: UringOptions,
    pool: Arc<RingPool>,
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
            file: Arc::new(file),
            size_bytes,
            opts,
            pool: Arc::new(RingPool {
                state: Mutex::new(PoolState {
                    idle: Vec::new(),
                    created: 0,
                }),
                ring_free: Condvar::new(),
            }),
        })
    }

    fn take_ring(&self) -> Result<IoUring, DeviceError> {
        let mut pool = self.pool.state.lock();
        loop {
            if let Some(r) = pool.idle.pop() {
                return Ok(r);
            }
            if pool.created < self.opts.max_rings.max(1) {
                pool.created += 1;
                drop(pool);
                return IoUring::new(self.opts.ring_entries.max(8)).map_err(|e| {
                    self.pool.state.lock().created -= 1;
                    DeviceError::Open {
                        path: self.path.clone(),
                        reason: format!("io_uring setup: {e}"),
                    }
                });
            }
            self.pool.ring_free.wait(&mut pool);
        }
    }

    fn fd(&self) -> types::Fd {
        types::Fd(self.file.as_raw_fd())
    }

    fn check_all(&self, ops: &[IoOp]) -> Result<(), DeviceError> {
        ops.iter()
            .try_for_each(|op| check_io(op, self.size_bytes, BLOCK_SIZE))
    }
}

impl RingPool {
    /// Takes back a ring; `None` for one that cannot be reused (entries
    /// were pushed but never submitted), which frees its slot.
    fn put(&self, ring: Option<IoUring>) {
        let mut pool = self.state.lock();
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

/// Progress of one batch on its ring.
#[derive(Default)]
struct BatchState {
    /// Next operation to push.
    next: usize,
    /// Taken by the kernel, not completed.
    in_flight: usize,
    /// Pushed to the submission queue, not yet taken by the kernel.
    queued: usize,
    first_err: Option<DeviceError>,
}

impl BatchState {
    fn finished(&self, ops: &[IoOp]) -> bool {
        self.in_flight == 0
            && (self.queued == 0 || self.first_err.is_some())
            && (self.first_err.is_some() || self.next >= ops.len())
    }

    /// Pushes what fits, submits, and (with `wait`) reaps until the batch
    /// is finished; without `wait`, returns after one submission.
    fn drive(&mut self, ring: &mut IoUring, fd: types::Fd, ops: &mut [IoOp], wait: bool) {
        loop {
            if self.first_err.is_none() {
                let mut sq = ring.submission();
                while self.next < ops.len() && !sq.is_full() {
                    let e = entry(fd, &mut ops[self.next], self.next as u64);
                    // SAFETY: the buffer lives in `ops`, which the caller
                    // keeps (and does not touch) until the batch finished.
                    if unsafe { sq.push(&e) }.is_err() {
                        break;
                    }
                    self.next += 1;
                    self.queued += 1;
                }
            }
            if self.finished(ops) {
                return;
            }
            let res = if wait {
                ring.submit_and_wait(1)
            } else {
                ring.submit()
            };
            match res {
                Ok(n) => {
                    let n = n.min(self.queued);
                    self.queued -= n;
                    self.in_flight += n;
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
                    ) => {}
                Err(e) => {
                    self.first_err.get_or_insert(DeviceError::Io {
                        op: "submit",
                        offset: 0,
                        len: 0,
                        reason: e.to_string(),
                    });
                }
            }
            for cqe in ring.completion() {
                self.in_flight = self.in_flight.saturating_sub(1);
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
                    self.first_err.get_or_insert(DeviceError::Io {
                        op: op.kind(),
                        offset: op.offset(),
                        len: op.len() as u64,
                        reason,
                    });
                }
            }
            if !wait {
                return;
            }
        }
    }

    /// The outcome of a finished batch, and whether its ring may be reused.
    fn outcome(self) -> (Result<(), DeviceError>, bool) {
        let reusable = self.queued == 0;
        (self.first_err.map_or(Ok(()), Err), reusable)
    }
}

/// A batch started by [`UringDevice`]'s `start`: it holds its ring, its
/// operations (and so their buffers) and the descriptor until it finished.
pub(super) struct InFlight {
    ring: Option<IoUring>,
    file: Arc<File>,
    ops: Vec<IoOp>,
    state: BatchState,
    pool: Arc<RingPool>,
}

impl InFlight {
    fn finish(&mut self) -> Result<(), DeviceError> {
        let Some(mut ring) = self.ring.take() else {
            return Ok(());
        };
        let fd = types::Fd(self.file.as_raw_fd());
        self.state.drive(&mut ring, fd, &mut self.ops, true);
        let (res, reusable) = std::mem::take(&mut self.state).outcome();
        self.pool.put(reusable.then_some(ring));
        res
    }

    pub(super) fn wait(mut self) -> Result<Vec<IoOp>, DeviceError> {
        self.finish()?;
        Ok(std::mem::take(&mut self.ops))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // The kernel may still write into (or read from) the buffers.
        let _ = self.finish();
    }
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
        self.check_all(ops)?;
        let mut ring = self.take_ring()?;
        let mut st = BatchState::default();
        st.drive(&mut ring, self.fd(), ops, true);
        let (res, reusable) = st.outcome();
        self.pool.put(reusable.then_some(ring));
        res
    }

    fn start(&self, mut ops: Vec<IoOp>) -> PendingIo {
        if ops.is_empty() {
            return PendingIo::done(ops, Ok(()));
        }
        if let Err(e) = self.check_all(&ops) {
            return PendingIo::done(ops, Err(e));
        }
        let mut ring = match self.take_ring() {
            Ok(r) => r,
            Err(e) => return PendingIo::done(ops, Err(e)),
        };
        let mut state = BatchState::default();
        state.drive(&mut ring, self.fd(), &mut ops, false);
        PendingIo(Pending::Uring(Box::new(InFlight {
            ring: Some(ring),
            file: self.file.clone(),
            ops,
            state,
            pool: self.pool.clone(),
        })))
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

    #[test]
    fn started_batches_overlap_and_complete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dev");
        File::create(&path)
            .and_then(|f| f.set_len(4 << 20))
            .expect("create");
        let small = UringOptions {
            ring_entries: 8, // fewer than the ops of a batch: pushed in rounds
            ..UringOptions::default()
        };
        let dev = UringDevice::open(&path, small).expect("open");
        let batch = |first: u64| -> Vec<IoOp> {
            (first..first + 40)
                .map(|i| {
                    let mut b = AlignedBuf::zeroed(4096);
                    b.fill((i % 251) as u8);
                    IoOp::write(i * 4096, b, i % 5 == 0)
                })
                .collect()
        };
        let a = dev.start(batch(0));
        let b = dev.start(batch(40));
        // Dropped without wait: still completes before its buffers go.
        drop(dev.start(batch(80)));
        assert_eq!(b.wait().expect("b").len(), 40);
        assert_eq!(a.wait().expect("a").len(), 40);
        let back = read_at(&dev, 0, 120 * 4096).expect("read back");
        for i in 0..120usize {
            assert!(
                back[i * 4096..(i + 1) * 4096]
                    .iter()
                    .all(|&x| x == (i % 251) as u8),
                "block {i}"
            );
        }
        let reads = dev
            .start(vec![IoOp::read(7 * 4096, 4096), IoOp::read(100, 4096)])
            .wait();
        assert!(matches!(reads, Err(DeviceError::Misaligned { .. })));
    }
}
