//! Aligned buffers for direct I/O.
//!
//! O_DIRECT needs the memory, the offset and the length aligned to the
//! device's logical block size; [`AlignedBuf`] is always aligned to
//! [`BUF_ALIGN`] (4 KiB), which covers every device we accept.
//!
//! Large buffers are recycled through a small process-wide cache: a fresh
//! megabyte costs page faults, zeroing and an munmap, which profiling of
//! 1 MiB writes showed as a third of the store's CPU. The cache holds at
//! most [`CACHE_CAP_BYTES`] and only buffers of [`CACHE_MIN_BYTES`] to
//! [`CACHE_MAX_BYTES`].

use std::alloc::{alloc_zeroed, dealloc, Layout};

use bytes::Bytes;
use std::collections::HashMap;

use parking_lot::Mutex;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;

/// Memory alignment of every I/O buffer.
pub const BUF_ALIGN: usize = 4096;
/// Smallest buffer the cache keeps.
pub const CACHE_MIN_BYTES: usize = 64 << 10;
/// Largest buffer the cache keeps.
pub const CACHE_MAX_BYTES: usize = 16 << 20;
/// Most bytes the cache holds.
pub const CACHE_CAP_BYTES: usize = 128 << 20;

/// Idle buffers by length (addresses as integers: the cache owns them).
struct Cache {
    idle: Option<HashMap<usize, Vec<usize>>>,
    bytes: usize,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    idle: None,
    bytes: 0,
});

fn cache_take(len: usize) -> Option<NonNull<u8>> {
    if !(CACHE_MIN_BYTES..=CACHE_MAX_BYTES).contains(&len) {
        return None;
    }
    let mut c = CACHE.lock();
    let addr = c.idle.as_mut()?.get_mut(&len)?.pop()?;
    c.bytes -= len;
    NonNull::new(addr as *mut u8)
}

/// Keeps a buffer for reuse; false when it does not fit the cache.
fn cache_put(ptr: NonNull<u8>, len: usize) -> bool {
    if !(CACHE_MIN_BYTES..=CACHE_MAX_BYTES).contains(&len) {
        return false;
    }
    let mut c = CACHE.lock();
    if c.bytes + len > CACHE_CAP_BYTES {
        return false;
    }
    c.bytes += len;
    c.idle
        .get_or_insert_with(HashMap::new)
        .entry(len)
        .or_default()
        .push(ptr.as_ptr() as usize);
    true
}

/// A zero-initialised, 4 KiB-aligned heap buffer.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    /// Came from the cache (content not zeroed).
    recycled: bool,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only give `&[u8]`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes (`len` may be 0).
    pub fn zeroed(len: usize) -> AlignedBuf {
        let mut b = AlignedBuf::for_overwrite(len);
        if b.recycled {
            b.fill(0);
        }
        b.recycled = false;
        b
    }

    /// A buffer of `len` bytes whose content is unspecified (zeros or
    /// bytes of an earlier use), for callers that overwrite all of it.
    pub fn for_overwrite(len: usize) -> AlignedBuf {
        if let Some(ptr) = cache_take(len) {
            return AlignedBuf {
                ptr,
                len,
                recycled: true,
            };
        }
        AlignedBuf::fresh(len)
    }

    fn fresh(len: usize) -> AlignedBuf {
        if len == 0 {
            return AlignedBuf {
                ptr: NonNull::dangling(),
                len: 0,
                recycled: false,
            };
        }
        let layout = Self::layout(len);
        // SAFETY: layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout);
        };
        AlignedBuf {
            ptr,
            len,
            recycled: false,
        }
    }

    /// An aligned copy of `data`.
    pub fn from_slice(data: &[u8]) -> AlignedBuf {
        let mut b = AlignedBuf::for_overwrite(data.len());
        b.copy_from_slice(data);
        b
    }

    fn layout(len: usize) -> Layout {
        // The only failure is an alignment that is not a power of two or a
        // size overflowing isize; neither can happen for a real buffer.
        Layout::from_size_align(len, BUF_ALIGN)
            .expect("4 KiB alignment and a sane size form a valid layout")
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.len > 0 && !cache_put(self.ptr, self.len) {
            // SAFETY: allocated in `fresh` with this exact layout (cached
            // buffers were too, and keep their length).
            unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.len)) }
        }
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid for len bytes (or dangling with len 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and we hold &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

/// The data of a write: a buffer of its own, or an aligned window of a
/// shared one (a journal record whose blocks are also written home).
#[derive(Debug)]
pub enum IoBuf {
    Owned(AlignedBuf),
    Shared {
        buf: Arc<AlignedBuf>,
        start: usize,
        len: usize,
    },
    /// Caller data written without a copy (see [`is_aligned`]); the device
    /// refuses a misaligned one.
    Bytes(Bytes),
}

impl IoBuf {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            IoBuf::Owned(b) => b,
            IoBuf::Shared { buf, start, len } => &buf[*start..*start + *len],
            IoBuf::Bytes(b) => b,
        }
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// A shared aligned buffer as the owner of a [`Bytes`].
struct SharedAligned(Arc<AlignedBuf>);

impl AsRef<[u8]> for SharedAligned {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// `buf` as `Bytes` without a copy; slices at multiples of [`BUF_ALIGN`]
/// stay aligned for direct I/O.
pub fn aligned_bytes(buf: AlignedBuf) -> Bytes {
    Bytes::from_owner(buf)
}

/// Like [`aligned_bytes`], for a buffer that is shared already.
pub fn shared_aligned_bytes(buf: Arc<AlignedBuf>) -> Bytes {
    Bytes::from_owner(SharedAligned(buf))
}

/// Whether `data` can go to the device as it is: its address and length
/// are multiples of [`BUF_ALIGN`].
pub fn is_aligned(data: &[u8]) -> bool {
    (data.as_ptr() as usize).is_multiple_of(BUF_ALIGN) && data.len().is_multiple_of(BUF_ALIGN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_zeroed() {
        for len in [0usize, 1, 512, 4096, 12345, 1 << 20] {
            let b = AlignedBuf::zeroed(len);
            assert_eq!(b.len(), len);
            if len > 0 {
                assert_eq!(b.as_ptr() as usize % BUF_ALIGN, 0);
            }
            assert!(b.iter().all(|&x| x == 0));
        }
        // Recycled buffers come back zeroed from `zeroed`.
        for _ in 0..3 {
            let mut big = AlignedBuf::for_overwrite(CACHE_MIN_BYTES);
            big.fill(0xee);
            drop(big);
            let z = AlignedBuf::zeroed(CACHE_MIN_BYTES);
            assert!(z.iter().all(|&x| x == 0));
        }
        let c = AlignedBuf::from_slice(b"hello");
        assert_eq!(&c[..], b"hello");
        let shared = Arc::new(AlignedBuf::from_slice(&[7u8; 8192]));
        let w = IoBuf::Shared {
            buf: shared,
            start: 4096,
            len: 4096,
        };
        assert_eq!(w.as_slice().len(), 4096);
    }

    #[test]
    fn aligned_bytes_share_the_buffer_and_keep_block_slices_aligned() {
        let mut b = AlignedBuf::for_overwrite(3 * BUF_ALIGN);
        b.fill(7);
        let base = b.as_ptr();
        let bytes = aligned_bytes(b);
        assert_eq!(bytes.as_ptr(), base, "no copy");
        let block = bytes.slice(BUF_ALIGN..2 * BUF_ALIGN);
        assert!(is_aligned(&block));
        assert!(!is_aligned(&bytes.slice(1..BUF_ALIGN + 1)));
        assert!(!is_aligned(&bytes.slice(0..100)), "length too");
        drop(bytes);
        // The slice keeps the buffer alive.
        assert!(block.iter().all(|&x| x == 7));
        let shared = Arc::new(AlignedBuf::zeroed(BUF_ALIGN));
        let s = shared_aligned_bytes(shared.clone());
        assert_eq!(s.as_ptr(), shared.as_ptr());
        assert!(is_aligned(&s));
    }
}
