//! A counting global allocator: how many heap allocations a daemon makes,
//! so benchmarks can report allocations per operation (issue 11).
//!
//! [`CountingAlloc`] forwards every call to mimalloc (glibc malloc was ~18 %
//! of an OSD's CPU under 4 KiB writes; benches/RESULTS.md) and adds
//! to process-wide counters read with [`snapshot`]. A daemon installs it
//! with one line:
//!
//! ```
//! use kalmar_common::alloc_count::{snapshot, CountingAlloc};
//!
//! #[global_allocator]
//! static ALLOC: CountingAlloc = CountingAlloc;
//!
//! fn main() {
//!     let before = snapshot();
//!     let v = std::hint::black_box(vec![0u8; 4096]);
//!     drop(v);
//!     assert!(snapshot().since(&before).allocations >= 1);
//! }
//! ```
//!
//! and registers [`perf_counters`] in its perf collection, so `perf dump`
//! shows an `allocator` logger (`allocations`, `frees`, `bytes_allocated`).
//!
//! Cost: each of the first [`OWNED_STRIPES`] threads that allocate gets a
//! cache line of counters of its own, which only it writes: an update is a
//! plain load and store (no locked instruction, no line shared between
//! cores). Later threads (short-lived helpers, once the long-lived ones
//! have theirs) share one more stripe with atomic adds. Readers sum the
//! stripes with relaxed loads. The counts are exact: no sampling, no
//! batching a reader could miss. Measured in benches/RESULTS.md, "Counting
//! allocator overhead".
//!
//! A `realloc` counts as one allocation of the new size and one free of the
//! old one, so `allocations - frees` is the number of live blocks and every
//! growth of a `Vec` on a hot path shows up.

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::perf::{CounterKind, PerfCounters, PerfCountersBuilder, Unit, PRIO_DEBUGONLY};

/// Threads that get counters of their own (a shard-per-core daemon's
/// long-lived threads are far fewer; a stripe is never given back, as a
/// thread's exit is not seen without a TLS destructor, which an allocator
/// cannot register safely).
pub const OWNED_STRIPES: usize = 63;
/// The owned stripes plus the shared one.
const STRIPES: usize = OWNED_STRIPES + 1;

/// Process-wide allocator totals since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Blocks handed out (`alloc`, `alloc_zeroed`, and `realloc`).
    pub allocations: u64,
    /// Blocks given back (`dealloc`, and the old block of a `realloc`).
    pub frees: u64,
    /// Bytes of all blocks handed out (a `realloc` adds its new size).
    pub bytes_allocated: u64,
    /// Bytes of all blocks given back.
    pub bytes_freed: u64,
}

impl AllocStats {
    /// What happened between `earlier` and `self` (both from [`snapshot`]).
    pub fn since(&self, earlier: &AllocStats) -> AllocStats {
        AllocStats {
            allocations: self.allocations.wrapping_sub(earlier.allocations),
            frees: self.frees.wrapping_sub(earlier.frees),
            bytes_allocated: self.bytes_allocated.wrapping_sub(earlier.bytes_allocated),
            bytes_freed: self.bytes_freed.wrapping_sub(earlier.bytes_freed),
        }
    }

    /// Blocks allocated and not yet freed.
    pub fn live_blocks(&self) -> u64 {
        self.allocations.saturating_sub(self.frees)
    }
}

/// One cache-line-sized (128 bytes: adjacent-line prefetch pairs lines on
/// x86) set of counters.
#[repr(align(128))]
struct Stripe {
    allocations: AtomicU64,
    frees: AtomicU64,
    bytes_allocated: AtomicU64,
    bytes_freed: AtomicU64,
}

impl Stripe {
    const fn new() -> Self {
        Stripe {
            allocations: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            bytes_allocated: AtomicU64::new(0),
            bytes_freed: AtomicU64::new(0),
        }
    }
}

/// The striped counters. Separate from the allocator so tests can count
/// on a private instance exactly while the process allocates in parallel.
struct Counters {
    stripes: [Stripe; STRIPES],
}

impl Counters {
    const fn new() -> Self {
        Counters {
            stripes: [const { Stripe::new() }; STRIPES],
        }
    }

    fn on_alloc(&self, bytes: usize) {
        let i = stripe_index();
        let s = &self.stripes[i];
        add(&s.allocations, 1, i);
        add(&s.bytes_allocated, bytes as u64, i);
    }

    fn on_free(&self, bytes: usize) {
        let i = stripe_index();
        let s = &self.stripes[i];
        add(&s.frees, 1, i);
        add(&s.bytes_freed, bytes as u64, i);
    }

    fn total(&self) -> AllocStats {
        let mut t = AllocStats::default();
        for s in &self.stripes {
            t.allocations += s.allocations.load(Ordering::Relaxed);
            t.frees += s.frees.load(Ordering::Relaxed);
            t.bytes_allocated += s.bytes_allocated.load(Ordering::Relaxed);
            t.bytes_freed += s.bytes_freed.load(Ordering::Relaxed);
        }
        t
    }
}

static COUNTERS: Counters = Counters::new();
/// The next owned stripe to give; saturates past OWNED_STRIPES in effect
/// (`min` on use), and a usize does not wrap in a process's life.
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialised and without Drop: reading it never allocates and
    // never registers a destructor, which an allocator must not do.
    static THREAD_STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Adds to a counter of stripe `i`. An owned stripe has a single writer
/// (its thread), so a relaxed load and store cannot lose an update and cost
/// no locked instruction; the shared stripe needs the atomic add.
#[inline(always)]
fn add(c: &AtomicU64, n: u64, i: usize) {
    if i < OWNED_STRIPES {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    } else {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// This thread's stripe, given on its first allocation: its own while
/// owned stripes last, else the shared one.
#[inline(always)]
fn stripe_index() -> usize {
    THREAD_STRIPE
        .try_with(|c| {
            let mut i = c.get();
            if i == usize::MAX {
                i = NEXT_STRIPE
                    .fetch_add(1, Ordering::Relaxed)
                    .min(OWNED_STRIPES);
                c.set(i);
            }
            i
        })
        // Only during thread teardown on platforms that destroy TLS: the
        // shared stripe keeps the count exact.
        .unwrap_or(OWNED_STRIPES)
}

/// mimalloc, counting. Zero-sized: the counters are statics of
/// this module, so [`snapshot`] needs no handle.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc;

// SAFETY: every call is forwarded unchanged to `MiMalloc`, which upholds the
// `GlobalAlloc` contract; the counting only touches atomics and a
// const-initialised thread-local, neither of which allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { MiMalloc.alloc(layout) };
        if !p.is_null() {
            COUNTERS.on_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            COUNTERS.on_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { MiMalloc.dealloc(ptr, layout) };
        COUNTERS.on_free(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            COUNTERS.on_free(layout.size());
            COUNTERS.on_alloc(new_size);
        }
        p
    }
}

/// Process-wide totals. All zero when [`CountingAlloc`] is not the global
/// allocator of this binary.
pub fn snapshot() -> AllocStats {
    COUNTERS.total()
}

/// Indexes of the `allocator` logger's counters.
pub const L_ALLOCATIONS: usize = 0;
pub const L_FREES: usize = 1;
pub const L_BYTES_ALLOCATED: usize = 2;

/// The `allocator` perf logger: [`snapshot`]'s totals, refreshed each time
/// the logger is read (`perf dump`, mgr reports), so nothing has to update
/// it periodically. One shared instance per process; `perf reset` cannot
/// zero it (the next read shows the totals again), so compare deltas.
pub fn perf_counters() -> Arc<PerfCounters> {
    static LOGGER: OnceLock<Arc<PerfCounters>> = OnceLock::new();
    LOGGER
        .get_or_init(|| {
            let mut b = PerfCountersBuilder::new("allocator");
            let allocations = b.add(
                "allocations",
                CounterKind::Counter,
                "Heap blocks allocated (alloc, alloc_zeroed, realloc)",
                "",
                PRIO_DEBUGONLY,
                Unit::None,
            );
            let frees = b.add(
                "frees",
                CounterKind::Counter,
                "Heap blocks freed (dealloc, and the old block of a realloc)",
                "",
                PRIO_DEBUGONLY,
                Unit::None,
            );
            let bytes = b.add(
                "bytes_allocated",
                CounterKind::Counter,
                "Bytes of the heap blocks allocated",
                "",
                PRIO_DEBUGONLY,
                Unit::Bytes,
            );
            debug_assert_eq!(
                (allocations, frees, bytes),
                (L_ALLOCATIONS, L_FREES, L_BYTES_ALLOCATED)
            );
            b.refresh_with(refresh_logger);
            b.build()
        })
        .clone()
}

fn refresh_logger(pc: &PerfCounters) {
    let s = snapshot();
    pc.set(L_ALLOCATIONS, s.allocations);
    pc.set(L_FREES, s.frees);
    pc.set(L_BYTES_ALLOCATED, s.bytes_allocated);
}

#[cfg(test)]
mod tests {
    use super::*;

    // The unit-test binary of this crate counts through it, so the global
    // path is exercised too (other tests allocate in parallel: only lower
    // bounds hold there; exact checks use a private `Counters`).
    #[global_allocator]
    static TEST_ALLOC: CountingAlloc = CountingAlloc;

    #[test]
    fn private_counters_are_exact_across_threads() {
        static C: Counters = Counters::new();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for i in 0..1000 {
                        C.on_alloc(i);
                        C.on_free(i);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("counting thread");
        }
        C.on_alloc(7);
        let t = C.total();
        assert_eq!(t.allocations, 4001);
        assert_eq!(t.frees, 4000);
        assert_eq!(t.bytes_allocated, 4 * (999 * 1000 / 2) + 7);
        assert_eq!(t.bytes_freed, 4 * (999 * 1000 / 2));
        assert_eq!(t.live_blocks(), 1);
    }

    #[test]
    fn exact_when_threads_outnumber_owned_stripes() {
        // More threads than owned stripes: the later ones share a stripe
        // with atomic adds, and nothing is lost either way.
        static C: Counters = Counters::new();
        let threads: Vec<_> = (0..OWNED_STRIPES + 20)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..100 {
                        C.on_alloc(3);
                    }
                    stripe_index()
                })
            })
            .collect();
        let mut shared = false;
        for t in threads {
            shared |= t.join().expect("counting thread") == OWNED_STRIPES;
        }
        assert!(shared, "some thread used the shared stripe");
        let t = C.total();
        assert_eq!(t.allocations, (OWNED_STRIPES as u64 + 20) * 100);
        assert_eq!(t.bytes_allocated, (OWNED_STRIPES as u64 + 20) * 300);
    }

    #[test]
    fn a_thread_keeps_its_stripe() {
        let mine = stripe_index();
        let other = std::thread::spawn(|| (stripe_index(), stripe_index()))
            .join()
            .expect("thread");
        assert_eq!(stripe_index(), mine, "a thread keeps its stripe");
        assert_eq!(other.0, other.1, "a thread keeps its stripe");
        assert!(mine <= OWNED_STRIPES && other.0 <= OWNED_STRIPES);
        assert!(
            mine != other.0 || mine == OWNED_STRIPES,
            "owned stripes are not shared"
        );
    }

    #[test]
    fn global_allocator_counts_allocations_frees_and_bytes() {
        let before = snapshot();
        let mut v: Vec<u8> = Vec::with_capacity(10_000);
        v.push(1);
        let mid = snapshot().since(&before);
        v.reserve(50_000); // a realloc: one free and one allocation more
        drop(std::hint::black_box(v));
        let after = snapshot().since(&before);
        assert!(mid.allocations >= 1, "{mid:?}");
        assert!(mid.bytes_allocated >= 10_000, "{mid:?}");
        assert!(after.allocations >= 2, "{after:?}");
        assert!(after.frees >= 2, "{after:?}");
        assert!(after.bytes_allocated >= 60_000, "{after:?}");
        assert!(after.bytes_freed >= 60_000, "{after:?}");
    }

    #[test]
    fn realloc_counts_one_free_and_one_allocation() {
        let a = CountingAlloc;
        let layout = Layout::from_size_align(64, 8).expect("layout");
        // Counted through the same statics as the global path; the deltas
        // include other tests' allocations, so compare lower bounds.
        let before = snapshot();
        // SAFETY: a non-zero layout; the block is freed below with the
        // layout realloc gives it.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            let q = a.realloc(p, layout, 4096);
            assert!(!q.is_null());
            a.dealloc(q, Layout::from_size_align(4096, 8).expect("layout"));
        }
        let d = snapshot().since(&before);
        assert!(d.allocations >= 2 && d.frees >= 2, "{d:?}");
        assert!(d.bytes_allocated >= 64 + 4096, "{d:?}");
        assert!(d.bytes_freed >= 64 + 4096, "{d:?}");
    }

    #[test]
    fn perf_logger_is_current_on_each_read() {
        let pc = perf_counters();
        assert_eq!(pc.name(), "allocator");
        let first = pc.get(L_ALLOCATIONS).value;
        let v = std::hint::black_box(vec![0u8; 100]);
        drop(v);
        let second = pc.get(L_ALLOCATIONS).value;
        assert!(second > first, "{first} -> {second}");
        assert!(pc.get(L_FREES).value >= 1);
        assert!(pc.get(L_BYTES_ALLOCATED).value >= 100);
        let dump = pc.dump();
        assert!(dump["allocations"].as_u64().is_some_and(|n| n >= second));
        assert!(Arc::ptr_eq(&pc, &perf_counters()), "one logger per process");
    }
}
