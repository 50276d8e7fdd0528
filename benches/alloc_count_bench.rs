//! Cost of counting allocations (`kalmar_common::alloc_count`): ns per
//! alloc+free pair through the system allocator, through `CountingAlloc`
//! (counters striped per thread), and through a one-cache-line variant
//! (every thread adding to the same atomics), on 1 and 2 threads.
//!
//!   cargo bench -p kalmar-benches --bench alloc_count_bench
//!
//! The allocators are called directly (none is installed as the global
//! allocator here), so all three run in one process, back to back.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use kalmar_common::alloc_count::CountingAlloc;

/// Pairs per thread and measurement.
const PAIRS: u64 = 20_000_000;
/// Repeats of each measurement; the median is printed.
const REPEATS: usize = 5;

/// The naive design: one set of counters shared by every thread.
struct OneLine;

static ONE_ALLOCS: AtomicU64 = AtomicU64::new(0);
static ONE_BYTES: AtomicU64 = AtomicU64::new(0);
static ONE_FREES: AtomicU64 = AtomicU64::new(0);
static ONE_FREED: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to System unchanged.
unsafe impl GlobalAlloc for OneLine {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ONE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        ONE_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ONE_FREES.fetch_add(1, Ordering::Relaxed);
        ONE_FREED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn pairs<A: GlobalAlloc>(a: &A, layout: Layout) {
    for _ in 0..PAIRS {
        // SAFETY: a non-zero layout; freed with the same layout.
        unsafe {
            let p = a.alloc(layout);
            black_box(p);
            a.dealloc(p, layout);
        }
    }
}

/// Median ns per pair with `threads` threads each doing PAIRS pairs.
fn measure<A: GlobalAlloc + Sync>(a: &A, layout: Layout, threads: usize) -> f64 {
    let mut ns: Vec<f64> = (0..REPEATS)
        .map(|_| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| pairs(a, layout));
                }
            });
            start.elapsed().as_nanos() as f64 / PAIRS as f64
        })
        .collect();
    ns.sort_by(|x, y| x.total_cmp(y));
    ns[REPEATS / 2]
}

fn main() {
    println!("alloc_count_bench: ns per alloc+free pair (median of {REPEATS}; wall time per thread's pair)");
    println!(
        "{:<8} {:>7} {:>9} {:>14} {:>9} {:>14} {:>9}",
        "size", "threads", "System", "CountingAlloc", "+ns", "one line", "+ns"
    );
    for size in [64usize, 4096] {
        let layout = Layout::from_size_align(size, 8).expect("layout");
        for threads in [1usize, 2] {
            let sys = measure(&System, layout, threads);
            let counting = measure(&CountingAlloc, layout, threads);
            let one = measure(&OneLine, layout, threads);
            println!(
                "{size:<8} {threads:>7} {sys:>9.1} {counting:>14.1} {:>9.1} {one:>14.1} {:>9.1}",
                counting - sys,
                one - sys
            );
        }
    }
}
