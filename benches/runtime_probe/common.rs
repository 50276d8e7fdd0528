//! What every variant of the probe shares: the wire shape of requests and
//! replies, the aligned request buffers, the offsets, the disk file, the
//! reply outbox and the per-thread CPU reading.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use tokio::sync::Notify;

/// A request: an 8-byte slot id (little-endian) and payload, 4 KiB in all,
/// written to disk as it arrives (the data of a 4 KiB client write).
pub const REQUEST_BYTES: usize = 4096;
/// A reply: the request's slot id and padding (an OSD's op reply size).
pub const REPLY_BYTES: usize = 64;
/// O_DIRECT alignment of buffers, offsets and lengths.
pub const DIRECT_ALIGN: usize = 4096;
/// Request buffers a server owns: the most requests it has in flight. Above
/// the deepest queue the client uses (32), so the pool never throttles.
pub const MAX_IN_FLIGHT: usize = 64;

/// Where a server writes each request, when the run has a disk.
#[derive(Debug, Clone)]
pub struct DiskTarget {
    pub path: PathBuf,
    /// Number of 4 KiB blocks of the (filled) file.
    pub blocks: u64,
}

/// Opens the data file for direct writes. `dsync` asks for O_DSYNC on the
/// file, for runtimes whose write call takes no per-write flags: the kernel
/// then marks every write as RWF_DSYNC does (IOCB_DSYNC, a FUA write on a
/// device with a volatile cache), so both give the same device traffic.
pub fn open_direct(path: &Path, dsync: bool) -> io::Result<File> {
    let mut flags = libc::O_DIRECT;
    if dsync {
        flags |= libc::O_DSYNC;
    }
    OpenOptions::new()
        .write(true)
        .custom_flags(flags)
        .open(path)
}

/// Writes `mib` MiB of zeros to `path` with direct writes, then syncs.
pub fn fill_direct(path: &Path, mib: u64) -> io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let layout = Layout::from_size_align(CHUNK, DIRECT_ALIGN).map_err(io::Error::other)?;
    // SAFETY: a non-zero-sized layout; freed below with the same layout.
    let raw = unsafe { alloc_zeroed(layout) };
    if raw.is_null() {
        return Err(io::Error::other("out of memory for the fill buffer"));
    }
    let result = (|| {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)?;
        // SAFETY: `raw` is CHUNK zeroed bytes, alive until dealloc below.
        let chunk = unsafe { std::slice::from_raw_parts(raw, CHUNK) };
        for i in 0..mib {
            std::os::unix::fs::FileExt::write_all_at(&f, chunk, i * CHUNK as u64)?;
        }
        f.sync_all()
    })();
    // SAFETY: allocated above with this layout.
    unsafe { dealloc(raw, layout) };
    result
}

/// Evicts the file's pages from the page cache (see `fill_direct`).
pub fn drop_cached_pages(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = File::open(path)?;
    // SAFETY: a valid descriptor; the call only advises the kernel.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// A 4 KiB buffer aligned for O_DIRECT. `len` is the initialised length
/// (what the runtimes' buffer traits call init/len).
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    pub len: usize,
}

impl AlignedBuf {
    fn layout() -> Layout {
        // REQUEST_BYTES and DIRECT_ALIGN are non-zero powers of two.
        Layout::from_size_align(REQUEST_BYTES, DIRECT_ALIGN).expect("constant layout")
    }

    pub fn new() -> Self {
        // SAFETY: a non-zero-sized layout.
        let raw = unsafe { alloc_zeroed(Self::layout()) };
        let ptr = NonNull::new(raw).expect("out of memory for a 4 KiB buffer");
        AlignedBuf { ptr, len: 0 }
    }

    pub const fn capacity(&self) -> usize {
        REQUEST_BYTES
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the allocation is REQUEST_BYTES long, zero-initialised,
        // and `len <= REQUEST_BYTES`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn full_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, over the whole capacity.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), REQUEST_BYTES) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout()) }
    }
}

// The runtimes may move buffers between their driver and the task; the
// buffer is plain owned memory.
unsafe impl Send for AlignedBuf {}

/// A request's slot id (the client's, echoed in the reply).
pub fn request_slot(req: &[u8]) -> u64 {
    let mut id = [0u8; 8];
    id.copy_from_slice(&req[..8]);
    u64::from_le_bytes(id)
}

/// Random 4 KiB-aligned offsets in the file, from a fixed seed
/// (xorshift64*: cheap and allocation-free, the same in every variant).
pub struct Offsets {
    state: u64,
    blocks: u64,
}

impl Offsets {
    pub fn new(blocks: u64) -> Self {
        Offsets {
            state: 0x9E37_79B9_7F4A_7C15,
            blocks: blocks.max(1),
        }
    }

    pub fn next_offset(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let r = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r % self.blocks) * DIRECT_ALIGN as u64
    }
}

/// Replies waiting for the connection's writer task, which sends all of
/// them with one write. Runtime-neutral (tokio's `Notify` needs no tokio
/// runtime), so every variant batches replies the same way.
pub struct Outbox {
    pub replies: RefCell<Vec<u8>>,
    pub wake: Notify,
    pub closed: std::cell::Cell<bool>,
}

impl Outbox {
    pub fn new() -> Self {
        Outbox {
            replies: RefCell::new(Vec::with_capacity(MAX_IN_FLIGHT * REPLY_BYTES)),
            wake: Notify::new(),
            closed: std::cell::Cell::new(false),
        }
    }

    pub fn push_reply(&self, slot: u64) {
        let mut r = self.replies.borrow_mut();
        r.extend_from_slice(&slot.to_le_bytes());
        let len = r.len();
        r.resize(len + REPLY_BYTES - 8, 0);
        drop(r);
        self.wake.notify_one();
    }

    /// Swaps the pending replies into `batch` (emptied by the caller after
    /// sending); true when the outbox is closed and nothing is left.
    pub fn take(&self, batch: &mut Vec<u8>) -> bool {
        std::mem::swap(&mut *self.replies.borrow_mut(), batch);
        batch.is_empty() && self.closed.get()
    }

    pub fn close(&self) {
        self.closed.set(true);
        self.wake.notify_one();
    }
}

/// A pool of request buffers; `take` waits when all are in flight.
pub struct BufPool {
    free: RefCell<Vec<AlignedBuf>>,
    returned: Notify,
}

impl BufPool {
    pub fn new() -> Self {
        BufPool {
            free: RefCell::new((0..MAX_IN_FLIGHT).map(|_| AlignedBuf::new()).collect()),
            returned: Notify::new(),
        }
    }

    pub async fn take(&self) -> AlignedBuf {
        loop {
            if let Some(mut b) = self.free.borrow_mut().pop() {
                b.len = 0;
                return b;
            }
            self.returned.notified().await;
        }
    }

    pub fn put(&self, b: AlignedBuf) {
        self.free.borrow_mut().push(b);
        self.returned.notify_one();
    }

    /// Waits until every buffer is back (no request in flight).
    pub async fn drained(&self) {
        while self.free.borrow().len() < MAX_IN_FLIGHT {
            self.returned.notified().await;
        }
    }
}

/// CPU time and context switches of a thread or of the process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_us: f64,
    pub voluntary_csw: f64,
    pub involuntary_csw: f64,
}

impl Usage {
    pub fn minus(&self, o: &Usage) -> Usage {
        Usage {
            cpu_us: self.cpu_us - o.cpu_us,
            voluntary_csw: self.voluntary_csw - o.voluntary_csw,
            involuntary_csw: self.involuntary_csw - o.involuntary_csw,
        }
    }
}

fn rusage(who: libc::c_int) -> Usage {
    // SAFETY: getrusage fills the struct; zeroed is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    if rc != 0 {
        return Usage::default();
    }
    let tv_us = |tv: libc::timeval| tv.tv_sec as f64 * 1e6 + tv.tv_usec as f64;
    Usage {
        cpu_us: tv_us(ru.ru_utime) + tv_us(ru.ru_stime),
        voluntary_csw: ru.ru_nvcsw as f64,
        involuntary_csw: ru.ru_nivcsw as f64,
    }
}

/// The calling thread's usage (RUSAGE_THREAD).
pub fn thread_usage() -> Usage {
    rusage(libc::RUSAGE_THREAD)
}

/// The whole process's usage, every thread (io_uring's io-wq workers too).
pub fn process_usage() -> Usage {
    rusage(libc::RUSAGE_SELF)
}

/// What a server reports when its connection closes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeStats {
    pub requests: u64,
    /// The server thread's usage from accept to the last reply.
    pub thread: Usage,
}
