//! Receive chunks, reused once every message sliced out of them is gone.
//!
//! A connection reads into a chunk (a [`BytesMut`]) and hands out each
//! message as a `Bytes` split off its front, without a copy; the chunk
//! memory lives as long as any of those slices. When a chunk runs out of
//! room the reader parks it here and takes another; a parked chunk whose
//! slices have all been dropped is handed out again as it is, so a steady
//! stream of messages allocates nothing.
//!
//! Why parked `BytesMut` and not `Bytes::from_owner` with an owner that
//! returns the buffer on drop: `from_owner` takes the owner's slice once,
//! as a shared reference, and the reader goes on writing into the same
//! chunk after earlier messages were handed out; under Rust's aliasing
//! rules that read-only slice may not see later writes. `BytesMut` hands
//! out slices of a buffer it keeps writing into by design, and
//! `try_reclaim` tells, without allocating, when no slice is left. (A
//! `from_owner` per message would be sound but allocate per message.)
//!
//! The pool is bounded: it keeps at most `recv_pool_max_chunks` parked
//! chunks, reclaimed or not; parking one more lets the oldest go (its
//! memory is freed when its last slice is).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use parking_lot::Mutex;

use crate::config::MsgrConfig;
use crate::frame::HEADER_BYTES;

/// The smallest chunk the pool hands out, whatever the setting: a few
/// frame headers and a small message.
const MIN_CHUNK_BYTES: usize = 4096;

/// Receive chunks shared by the connections of one endpoint.
#[derive(Clone)]
pub(crate) struct RecvPool {
    inner: Arc<Inner>,
}

struct Inner {
    chunk_bytes: usize,
    max_chunks: usize,
    parked: Mutex<VecDeque<BytesMut>>,
    /// Chunks allocated so far (for tests).
    allocated: AtomicU64,
}

impl RecvPool {
    pub(crate) fn new(config: &MsgrConfig) -> RecvPool {
        RecvPool {
            inner: Arc::new(Inner {
                chunk_bytes: config.recv_chunk_bytes.max(MIN_CHUNK_BYTES),
                max_chunks: config.recv_pool_max_chunks,
                parked: Mutex::new(VecDeque::new()),
                allocated: AtomicU64::new(0),
            }),
        }
    }

    pub(crate) fn chunk_bytes(&self) -> usize {
        self.inner.chunk_bytes
    }

    /// An empty chunk with room for `chunk_bytes`: a parked one no message
    /// refers to any more, else a new one.
    pub(crate) fn take(&self) -> BytesMut {
        let want = self.inner.chunk_bytes;
        {
            let mut parked = self.inner.parked.lock();
            // Oldest first: the likeliest to have been released.
            if let Some(i) = parked.iter_mut().position(|c| c.try_reclaim(want)) {
                if let Some(chunk) = parked.remove(i) {
                    return chunk;
                }
            }
        }
        self.inner.allocated.fetch_add(1, Ordering::Relaxed);
        BytesMut::with_capacity(want.max(HEADER_BYTES))
    }

    /// Keeps a chunk the reader is done with (its content is dropped; the
    /// messages sliced out of it stay valid).
    pub(crate) fn park(&self, mut chunk: BytesMut) {
        chunk.clear();
        let mut parked = self.inner.parked.lock();
        if parked.len() >= self.inner.max_chunks {
            parked.pop_front();
        }
        if self.inner.max_chunks > 0 {
            parked.push_back(chunk);
        }
    }

    /// Chunks allocated since the pool was made.
    #[cfg(test)]
    pub(crate) fn allocated(&self) -> u64 {
        self.inner.allocated.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn parked(&self) -> usize {
        self.inner.parked.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(max_chunks: usize) -> RecvPool {
        RecvPool::new(&MsgrConfig {
            recv_chunk_bytes: 8192,
            recv_pool_max_chunks: max_chunks,
            ..MsgrConfig::default()
        })
    }

    #[test]
    fn a_chunk_returns_after_its_last_slice_is_dropped() {
        let pool = pool(4);
        let mut a = pool.take();
        let base = a.as_ptr();
        a.extend_from_slice(&[1u8; 3000]);
        let first = a.split_to(1000).freeze();
        let second = a.split_to(1000).freeze();
        pool.park(a);
        // Both slices hold the chunk: the pool must not hand it out.
        let b = pool.take();
        assert_ne!(b.as_ptr(), base);
        assert_eq!(pool.allocated(), 2);
        drop(first);
        let c = pool.take();
        assert_ne!(c.as_ptr(), base, "one slice still refers to the chunk");
        assert_eq!(&second[..3], &[1, 1, 1], "the held slice is intact");
        drop(second);
        let d = pool.take();
        assert_eq!(d.as_ptr(), base, "the released chunk is reused");
        assert!(d.capacity() >= 8192);
        assert!(d.is_empty());
        assert_eq!(pool.allocated(), 3, "no allocation for the reused chunk");
        drop((b, c));
    }

    #[test]
    fn parked_chunks_are_bounded() {
        let pool = pool(2);
        let mut held = Vec::new();
        for _ in 0..5 {
            let mut c = pool.take();
            c.extend_from_slice(&[0u8; 10]);
            held.push(c.split_to(10).freeze());
            pool.park(c);
        }
        assert_eq!(pool.parked(), 2);
        assert_eq!(pool.allocated(), 5);
        // Nothing is kept with a bound of zero.
        let none = self::pool(0);
        none.park(none.take());
        assert_eq!(none.parked(), 0);
    }
}
