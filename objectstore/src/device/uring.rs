//! Real devices and files, through io_uring with O_DIRECT.
//!
//! Blocking batches ([`BlockDevice::submit`]: mount, replay, tools): the
//! calling thread takes a ring of its own from a small pool for the length
//! of one batch, so rings are never shared between threads and no
//! completion is ever reaped by the wrong waiter. A batch is pushed in
//! ring-sized chunks, submitted with one system call per chunk, and reaped
//! until nothing is in flight: only then are the buffers handed back.
//!
//! Commit engines get a ring each ([`UringQueue`]), with an eventfd that
//! the kernel signals on every completion, so the engine's event loop
//! sleeps on it next to its sockets.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use io_uring::{opcode, types, IoUring};
use parking_lot::{Condvar, Mutex};

use super::queue::{IoDone, IoQueue, QueuedOp};
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
    /// Direct-I/O granularity (see [`BlockDevice::dio_align`]).
    dio_align: u64,
    /// See [`BlockDevice::journal_sector`].
    journal_sector: u64,
    /// Shared with batches in flight, so the descriptor outlives them.
    file: Arc<File>,
    size_bytes: u64,
    opts: UringOptions,
    pool: Arc<RingPool>,
}

const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
/// The block major of loop devices.
const LOOP_MAJOR: u32 = 7;
const BLKSSZGET: libc::c_ulong = 0x1268;

fn os_err(e: std::io::Error) -> String {
    e.to_string()
}

/// The direct-I/O granularity of a regular file, from `statx` (the larger
/// of the offset and memory alignments; 512 at least); 4096 when the kernel
/// does not say.
fn file_dio_align(file: &File) -> u64 {
    // SAFETY: statx fills the zeroed struct; an empty path with
    // AT_EMPTY_PATH names the descriptor itself.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut st,
        )
    };
    if rc != 0 || st.stx_mask & libc::STATX_DIOALIGN == 0 || st.stx_dio_offset_align == 0 {
        return BLOCK_SIZE;
    }
    let a = st.stx_dio_offset_align.max(st.stx_dio_mem_align) as u64;
    if a.is_power_of_two() && a <= BLOCK_SIZE {
        a.max(512)
    } else {
        BLOCK_SIZE
    }
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
        let mut dio_align = file_dio_align(&file);
        // A file, or a loop device over one: the filesystem below serializes
        // direct writes that are not aligned to its blocks (ext4 waits for
        // every other direct write of the file), so journal records keep to
        // whole blocks there. A real device takes its physical sector.
        let mut journal_sector = BLOCK_SIZE;
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
            if unsafe { libc::ioctl(fd, BLKSSZGET, &mut sector as *mut libc::c_int) } == 0 {
                if sector as u64 > BLOCK_SIZE {
                    return Err(open_err(format!(
                        "logical block size {sector} is larger than the store's {BLOCK_SIZE}"
                    )));
                }
                dio_align = (sector as u64).max(512);
            }
            let mut physical: libc::c_uint = 0;
            const BLKPBSZGET: libc::c_ulong = 0x127b;
            // SAFETY: BLKPBSZGET writes one unsigned int through the pointer.
            let is_loop = {
                use std::os::unix::fs::MetadataExt;
                libc::major(meta.rdev()) == LOOP_MAJOR
            };
            if !is_loop
                && unsafe { libc::ioctl(fd, BLKPBSZGET, &mut physical as *mut libc::c_uint) } == 0
            {
                journal_sector = (physical as u64).clamp(dio_align, BLOCK_SIZE);
                if !journal_sector.is_power_of_two() {
                    journal_sector = BLOCK_SIZE;
                }
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
            dio_align,
            journal_sector: journal_sector.max(dio_align),
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
            .try_for_each(|op| check_io(op, self.size_bytes, self.dio_align))
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

/// Builds the submission entry of `op`; `user_data` identifies it.
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

impl BlockDevice for UringDevice {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn dio_align(&self) -> u64 {
        self.dio_align
    }

    fn journal_sector(&self) -> u64 {
        self.journal_sector
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

    fn queue(self: Arc<Self>) -> Result<Box<dyn IoQueue>, DeviceError> {
        Ok(Box::new(UringQueue::new(self)?))
    }
}

/// An operation the kernel owns (buffers included) until its completion.
struct Slot {
    op: QueuedOp,
    token: u64,
}

/// A commit engine's ring; see the module documentation.
pub struct UringQueue {
    dev: Arc<UringDevice>,
    ring: IoUring,
    /// Signalled by the kernel on every completion.
    efd: std::os::fd::OwnedFd,
    /// Operations by `user_data`; `None` marks a free slot.
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// Pushed, not yet in the submission queue (it was full).
    backlog: std::collections::VecDeque<usize>,
    /// In the submission queue or with the kernel.
    started: usize,
    /// Completions being reaped (kept for its room).
    cqes: Vec<(u64, i32)>,
}

impl UringQueue {
    fn new(dev: Arc<UringDevice>) -> Result<UringQueue, DeviceError> {
        let setup = |what: &str, e: std::io::Error| DeviceError::Open {
            path: dev.path.clone(),
            reason: format!("{what}: {e}"),
        };
        let ring =
            IoUring::new(dev.opts.ring_entries.max(8)).map_err(|e| setup("io_uring setup", e))?;
        // SAFETY: plain eventfd creation; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(setup("eventfd", std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let efd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        ring.submitter()
            .register_eventfd(raw)
            .map_err(|e| setup("io_uring eventfd", e))?;
        Ok(UringQueue {
            dev,
            ring,
            efd,
            slots: Vec::new(),
            free: Vec::new(),
            backlog: std::collections::VecDeque::new(),
            started: 0,
            cqes: Vec::new(),
        })
    }

    /// Moves backlogged operations into the submission queue while it has
    /// room, keeping the operations with the kernel within the completion
    /// queue's size: a completion that overflows it signals no eventfd.
    fn fill_sq(&mut self) {
        let fd = types::Fd(self.dev.file.as_raw_fd());
        let cq_entries = self.ring.params().cq_entries() as usize;
        let mut sq = self.ring.submission();
        while let Some(&i) = self.backlog.front() {
            if sq.is_full() || self.started >= cq_entries {
                break;
            }
            let Some(Some(slot)) = self.slots.get_mut(i) else {
                self.backlog.pop_front();
                continue;
            };
            let e = match &mut slot.op {
                QueuedOp::Io(op) => entry(fd, op, i as u64),
                QueuedOp::Flush => opcode::Fsync::new(fd)
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(i as u64),
            };
            // SAFETY: the buffer lives in `slots[i]` until its completion
            // is reaped (and `Drop` waits for every started operation).
            if unsafe { sq.push(&e) }.is_err() {
                break;
            }
            self.backlog.pop_front();
            self.started += 1;
        }
    }

    fn drain_eventfd(&self) {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into `v` from our nonblocking eventfd.
        unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&self.efd),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            )
        };
    }
}

impl IoQueue for UringQueue {
    fn push(&mut self, op: QueuedOp, token: u64) {
        let slot = Slot { op, token };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        self.backlog.push_back(i);
    }

    fn submit(&mut self) -> Result<(), DeviceError> {
        loop {
            self.fill_sq();
            if self.ring.submission().is_empty() {
                // Nothing to start: no system call.
                return Ok(());
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
                    ) => {}
                Err(e) => {
                    return Err(DeviceError::Io {
                        op: "submit",
                        offset: 0,
                        len: 0,
                        reason: e.to_string(),
                    })
                }
            }
            // More waits in the backlog only when a queue was full: it
            // goes out as completions make room (see `reap`).
            let cq_entries = self.ring.params().cq_entries() as usize;
            if self.backlog.is_empty()
                || self.ring.submission().is_full()
                || self.started >= cq_entries
            {
                return Ok(());
            }
        }
    }

    fn reap(&mut self, out: &mut Vec<IoDone>) {
        if self.ring.completion().is_empty() {
            // Nothing to reap: leave the eventfd (a count left there only
            // wakes the driver once more), no system call.
            return;
        }
        // Clear the eventfd first: a completion posted after the drain
        // below signals it again, so no wake-up is lost.
        self.drain_eventfd();
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
        for (ud, res) in cqes.drain(..) {
            let Some(slot) = self.slots.get_mut(ud as usize).and_then(Option::take) else {
                continue;
            };
            self.free.push(ud as usize);
            self.started = self.started.saturating_sub(1);
            let result = match &slot.op {
                QueuedOp::Io(op) if res >= 0 && res as usize == op.len() => Ok(()),
                QueuedOp::Io(op) => Err(DeviceError::Io {
                    op: op.kind(),
                    offset: op.offset(),
                    len: op.len() as u64,
                    reason: if res < 0 {
                        std::io::Error::from_raw_os_error(-res).to_string()
                    } else {
                        format!("short transfer of {res} bytes")
                    },
                }),
                QueuedOp::Flush if res >= 0 => Ok(()),
                QueuedOp::Flush => Err(DeviceError::Flush {
                    reason: std::io::Error::from_raw_os_error(-res).to_string(),
                }),
            };
            out.push(IoDone {
                token: slot.token,
                op: slot.op,
                result,
            });
        }
        self.cqes = cqes;
        if !self.backlog.is_empty() {
            let _ = self.submit();
        }
    }

    fn wait(&mut self, timeout: Duration) {
        if self.started == 0 {
            return;
        }
        let ts = types::Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        let _ = self.ring.submitter().submit_with_args(1, &args);
    }

    fn event_fd(&self) -> Option<std::os::unix::io::RawFd> {
        Some(std::os::fd::AsRawFd::as_raw_fd(&self.efd))
    }

    fn in_flight(&self) -> usize {
        self.started + self.backlog.len()
    }
}

impl Drop for UringQueue {
    fn drop(&mut self) {
        // The kernel may still read from or write into the slots' buffers.
        self.backlog.clear();
        let mut sink = Vec::new();
        while self.started > 0 {
            if self.ring.submit_and_wait(1).is_err() {
                break;
            }
            self.reap(&mut sink);
            sink.clear();
        }
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
    fn queue_overlaps_batches_signals_and_flushes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dev");
        File::create(&path)
            .and_then(|f| f.set_len(4 << 20))
            .expect("create");
        let small = UringOptions {
            ring_entries: 8, // fewer than the ops pushed: they go in rounds
            ..UringOptions::default()
        };
        let dev = Arc::new(UringDevice::open(&path, small).expect("open"));
        assert!(dev.dio_align() >= 512 && dev.dio_align() <= 4096);
        let mut q = dev.clone().queue().expect("queue");
        let fd = q.event_fd().expect("a ring has an eventfd");
        for i in 0..40u64 {
            let mut b = AlignedBuf::zeroed(4096);
            b.fill((i % 251) as u8);
            q.push(QueuedOp::Io(IoOp::write(i * 4096, b, i % 5 == 0)), i);
        }
        q.submit().expect("submit");
        let mut done = Vec::new();
        while done.len() < 40 {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
            assert_eq!(n, 1, "the eventfd signals completions");
            q.reap(&mut done);
        }
        assert!(done.iter().all(|d| d.result.is_ok()));
        let mut tokens: Vec<u64> = done.iter().map(|d| d.token).collect();
        tokens.sort_unstable();
        assert_eq!(tokens, (0..40).collect::<Vec<_>>());
        q.push(QueuedOp::Flush, 99);
        q.push(QueuedOp::Io(IoOp::read(100, 4096)), 100);
        q.submit().expect("submit");
        let mut more = Vec::new();
        while more.len() < 2 {
            q.wait(Duration::from_secs(5));
            q.reap(&mut more);
        }
        for d in &more {
            match d.token {
                99 => assert!(d.result.is_ok(), "flush"),
                _ => assert!(d.result.is_err(), "a misaligned read fails in the kernel"),
            }
        }
        assert_eq!(q.in_flight(), 0);
        let back = read_at(dev.as_ref(), 0, 40 * 4096).expect("read back");
        for i in 0..40usize {
            assert!(
                back[i * 4096..(i + 1) * 4096]
                    .iter()
                    .all(|&x| x == (i % 251) as u8),
                "block {i}"
            );
        }
        // Dropped with operations in flight: waits for them.
        let mut b = AlignedBuf::zeroed(4096);
        b.fill(1);
        q.push(QueuedOp::Io(IoOp::write(0, b, false)), 1);
        q.submit().expect("submit");
        drop(q);
    }
}
