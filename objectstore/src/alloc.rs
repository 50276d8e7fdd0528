//! The block allocator of the data area: pure logic over bitmaps.
//!
//! Two bitmaps: `used` is the committed allocation state (what the
//! database records, segment by segment, at each checkpoint), `busy` is
//! what the allocator must not hand out: used blocks, blocks handed to
//! transactions not yet committed, and blocks freed by committed
//! transactions that are not yet checkpointed. A freed block becomes
//! reusable only when the journal zone that freed it has been trimmed past
//! the freeing record: until then a replay could still write deferred data
//! into it.
//!
//! The life of a block: [`Allocator::allocate`] (busy) while a transaction
//! is prepared; [`Allocator::commit_alloc`] (used) once its record is
//! durable, or [`Allocator::unallocate`] if it never commits;
//! [`Allocator::free`] (not used, still busy) when a durable record drops
//! it; [`Allocator::release_through`] (free) after the checkpoint.

use std::collections::BTreeSet;

use crate::error::StoreError;
use crate::layout::BLOCK_SIZE;

/// Blocks per bitmap segment stored as one database value (1 KiB value
/// covering 32 MiB of data area).
pub const SEGMENT_BLOCKS: u64 = 8192;
const SEGMENT_WORDS: usize = (SEGMENT_BLOCKS / 64) as usize;

/// A run of blocks `[start, start + len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Extent {
    pub start: u64,
    pub len: u64,
}

pub struct Allocator {
    total_blocks: u64,
    used: Vec<u64>,
    busy: Vec<u64>,
    /// Per journal zone: (seq of the freeing record, extent), in seq order.
    pending: std::collections::BTreeMap<usize, Vec<(u64, Extent)>>,
    cursor: u64,
    used_blocks: u64,
    busy_blocks: u64,
    dirty: BTreeSet<u64>,
}

fn bit(v: &[u64], b: u64) -> bool {
    v[(b / 64) as usize] >> (b % 64) & 1 == 1
}

fn set_bit(v: &mut [u64], b: u64, on: bool) {
    let w = &mut v[(b / 64) as usize];
    if on {
        *w |= 1 << (b % 64);
    } else {
        *w &= !(1 << (b % 64));
    }
}

impl Allocator {
    /// An allocator with every block free.
    pub fn new(total_blocks: u64) -> Allocator {
        let words = total_blocks.div_ceil(64) as usize;
        let mut a = Allocator {
            total_blocks,
            used: vec![0; words],
            busy: vec![0; words],
            pending: Default::default(),
            cursor: 0,
            used_blocks: 0,
            busy_blocks: 0,
            dirty: BTreeSet::new(),
        };
        // Bits past the end are permanently busy so searches never return them.
        for b in total_blocks..(words as u64 * 64) {
            set_bit(&mut a.busy, b, true);
        }
        a
    }

    pub fn total_blocks(&self) -> u64 {
        self.total_blocks
    }

    pub fn segments(&self) -> u64 {
        self.total_blocks.div_ceil(SEGMENT_BLOCKS)
    }

    pub fn used_blocks(&self) -> u64 {
        self.used_blocks
    }

    /// Blocks that can be allocated now.
    pub fn free_blocks(&self) -> u64 {
        self.total_blocks - self.busy_blocks
    }

    /// Freed blocks waiting for a checkpoint.
    pub fn pending_blocks(&self) -> u64 {
        self.busy_blocks - self.used_blocks
    }

    pub fn is_used(&self, b: u64) -> bool {
        b < self.total_blocks && bit(&self.used, b)
    }

    /// Loads one segment as stored in the database (mount).
    pub fn load_segment(&mut self, seg: u64, bytes: &[u8]) -> Result<(), StoreError> {
        if seg >= self.segments() || bytes.len() != SEGMENT_WORDS * 8 {
            return Err(StoreError::corrupt(
                format!("bitmap segment {seg}"),
                format!(
                    "{} bytes for a store of {} segments",
                    bytes.len(),
                    self.segments()
                ),
            ));
        }
        for (i, chunk) in bytes.chunks_exact(8).enumerate() {
            let mut a = [0u8; 8];
            a.copy_from_slice(chunk);
            let word = u64::from_le_bytes(a);
            for j in 0..64u64 {
                let b = seg * SEGMENT_BLOCKS + i as u64 * 64 + j;
                if word >> j & 1 == 1 {
                    if b >= self.total_blocks {
                        return Err(StoreError::corrupt(
                            format!("bitmap segment {seg}"),
                            format!("block {b} beyond the data area"),
                        ));
                    }
                    if !bit(&self.used, b) {
                        set_bit(&mut self.used, b, true);
                        set_bit(&mut self.busy, b, true);
                        self.used_blocks += 1;
                        self.busy_blocks += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// The database value of segment `seg`.
    pub fn segment_bytes(&self, seg: u64) -> Vec<u8> {
        let first = (seg * SEGMENT_BLOCKS / 64) as usize;
        let mut out = Vec::with_capacity(SEGMENT_WORDS * 8);
        for i in 0..SEGMENT_WORDS {
            let w = self.used.get(first + i).copied().unwrap_or(0);
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Segments changed since the last call.
    pub fn take_dirty(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    fn mark(&mut self, e: Extent, used: bool, busy: bool) {
        for b in e.start..e.start + e.len {
            if bit(&self.used, b) != used {
                set_bit(&mut self.used, b, used);
                if used {
                    self.used_blocks += 1;
                } else {
                    self.used_blocks -= 1;
                }
            }
            if bit(&self.busy, b) != busy {
                set_bit(&mut self.busy, b, busy);
                if busy {
                    self.busy_blocks += 1;
                } else {
                    self.busy_blocks -= 1;
                }
            }
        }
        for seg in e.start / SEGMENT_BLOCKS..=(e.start + e.len - 1) / SEGMENT_BLOCKS {
            self.dirty.insert(seg);
        }
    }

    /// Finds `n` contiguous free blocks at or after `from`.
    fn find_run(&self, from: u64, to: u64, n: u64) -> Option<u64> {
        let mut b = from;
        let mut run_start = from;
        let mut run_len = 0u64;
        while b < to {
            let w = self.busy[(b / 64) as usize];
            if b.is_multiple_of(64) && w == u64::MAX {
                run_len = 0;
                b += 64;
                run_start = b;
                continue;
            }
            if b.is_multiple_of(64) && w == 0 && b + 64 <= to {
                if run_len == 0 {
                    run_start = b;
                }
                run_len += 64;
                b += 64;
            } else {
                if bit(&self.busy, b) {
                    run_len = 0;
                    run_start = b + 1;
                } else {
                    if run_len == 0 {
                        run_start = b;
                    }
                    run_len += 1;
                }
                b += 1;
            }
            if run_len >= n {
                return Some(run_start);
            }
        }
        None
    }

    /// Hands out `n` blocks (busy, not yet used), contiguous when
    /// possible, else in pieces.
    pub fn allocate(&mut self, n: u64) -> Result<Vec<Extent>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        if n > self.free_blocks() {
            return Err(StoreError::NoSpace {
                needed_bytes: n * BLOCK_SIZE,
                free_bytes: self.free_blocks() * BLOCK_SIZE,
            });
        }
        let start = self
            .find_run(self.cursor, self.total_blocks, n)
            .or_else(|| self.find_run(0, self.total_blocks, n));
        if let Some(s) = start {
            let e = Extent { start: s, len: n };
            self.set_busy(e, true);
            self.cursor = (s + n) % self.total_blocks.max(1);
            return Ok(vec![e]);
        }
        // Fragmented: gather free blocks from the cursor, wrapping once.
        let mut out: Vec<Extent> = Vec::new();
        let mut left = n;
        let mut b = self.cursor;
        let mut scanned = 0;
        while left > 0 && scanned < self.total_blocks {
            if !bit(&self.busy, b) {
                match out.last_mut() {
                    Some(e) if e.start + e.len == b => e.len += 1,
                    _ => out.push(Extent { start: b, len: 1 }),
                }
                left -= 1;
            }
            b = (b + 1) % self.total_blocks;
            scanned += 1;
        }
        for e in &out {
            self.set_busy(*e, true);
        }
        self.cursor = b;
        Ok(out)
    }

    fn set_busy(&mut self, e: Extent, busy: bool) {
        for b in e.start..e.start + e.len {
            if bit(&self.busy, b) != busy {
                set_bit(&mut self.busy, b, busy);
                if busy {
                    self.busy_blocks += 1;
                } else {
                    self.busy_blocks -= 1;
                }
            }
        }
    }

    /// Takes back blocks handed out for a transaction that never commits.
    pub fn unallocate(&mut self, e: Extent) {
        debug_assert!(
            (e.start..e.start + e.len).all(|b| !bit(&self.used, b)),
            "unallocating committed blocks {e:?}"
        );
        self.set_busy(e, false);
    }

    /// Records blocks as used: their transaction's record is durable.
    pub fn commit_alloc(&mut self, e: Extent) {
        debug_assert!(
            (e.start..e.start + e.len).all(|b| bit(&self.busy, b)),
            "committing blocks {e:?} that were not handed out"
        );
        self.mark(e, true, true);
    }

    /// Records blocks as no longer used by durable record `seq` of journal
    /// zone `zone`: they stay busy until [`Allocator::release_through`]
    /// covers it.
    pub fn free(&mut self, e: Extent, zone: usize, seq: u64) {
        // Only blocks of durable records are freed (a batch commits its
        // allocations before its frees): a free of a block not in use is
        // a second free of it.
        debug_assert!(
            (e.start..e.start + e.len).all(|b| bit(&self.used, b)),
            "freeing blocks {e:?} that are not in use"
        );
        self.mark(e, false, true);
        self.pending.entry(zone).or_default().push((seq, e));
    }

    /// Replays an allocation of a journal record (mount).
    pub fn replay_alloc(&mut self, e: Extent) -> Result<(), StoreError> {
        self.check_extent(e)?;
        self.mark(e, true, true);
        Ok(())
    }

    /// Replays a free of a journal record (mount): busy until
    /// [`Allocator::release_all`].
    pub fn replay_free(&mut self, e: Extent) -> Result<(), StoreError> {
        self.check_extent(e)?;
        self.mark(e, false, true);
        self.pending.entry(usize::MAX).or_default().push((0, e));
        Ok(())
    }

    fn check_extent(&self, e: Extent) -> Result<(), StoreError> {
        if e.len == 0
            || e.start
                .checked_add(e.len)
                .is_none_or(|end| end > self.total_blocks)
        {
            return Err(StoreError::corrupt(
                "journal record",
                format!(
                    "extent {e:?} outside the data area of {} blocks",
                    self.total_blocks
                ),
            ));
        }
        Ok(())
    }

    /// Makes blocks freed by records of `zone` up to `seq` allocatable
    /// (after a checkpoint trimmed the zone past them).
    pub fn release_through(&mut self, zone: usize, seq: u64) {
        let Some(list) = self.pending.get_mut(&zone) else {
            return;
        };
        let n = list.partition_point(|(s, _)| *s <= seq);
        let released: Vec<(u64, Extent)> = list.drain(..n).collect();
        self.release(released.into_iter().map(|(_, e)| e));
    }

    /// Makes every freed block allocatable (a checkpoint trimmed every
    /// zone, as at the end of mount).
    pub fn release_all(&mut self) {
        let all = std::mem::take(&mut self.pending);
        self.release(all.into_values().flatten().map(|(_, e)| e));
    }

    fn release(&mut self, extents: impl Iterator<Item = Extent>) {
        for e in extents {
            for b in e.start..e.start + e.len {
                // A block freed, released... cannot be reallocated before
                // its release; if it is used here, it was freed twice.
                if !bit(&self.used, b) && bit(&self.busy, b) {
                    set_bit(&mut self.busy, b, false);
                    self.busy_blocks -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Checked builds (CI's `checked` profile) catch a block freed twice.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "not in use")]
    fn a_block_freed_twice_is_caught() {
        let mut a = Allocator::new(16);
        let e = a.allocate(4).expect("alloc")[0];
        a.commit_alloc(e);
        a.free(e, 0, 1);
        let last = Extent {
            start: e.start + 3,
            len: 1,
        };
        a.free(last, 0, 2);
    }

    #[test]
    fn contiguous_then_fragmented() {
        let mut a = Allocator::new(100);
        let e = a.allocate(10).expect("alloc");
        assert_eq!(e, vec![Extent { start: 0, len: 10 }]);
        assert_eq!(
            (a.used_blocks(), a.free_blocks()),
            (0, 90),
            "busy, not used"
        );
        a.commit_alloc(e[0]);
        let e2 = a.allocate(80).expect("alloc");
        assert_eq!(e2, vec![Extent { start: 10, len: 80 }]);
        a.commit_alloc(e2[0]);
        a.free(Extent { start: 0, len: 5 }, 0, 1);
        a.free(Extent { start: 50, len: 5 }, 1, 2);
        assert_eq!(a.free_blocks(), 10, "freed blocks wait for a checkpoint");
        assert!(a.allocate(11).is_err());
        a.release_through(0, 1);
        assert_eq!(a.free_blocks(), 15);
        a.release_through(0, 5);
        assert_eq!(a.free_blocks(), 15, "zone 1's frees are not zone 0's");
        a.release_through(1, 2);
        let uncommitted = a.allocate(3).expect("alloc");
        a.unallocate(uncommitted[0]);
        let frag = a.allocate(20).expect("fragments");
        assert_eq!(frag.iter().map(|e| e.len).sum::<u64>(), 20);
        assert_eq!(a.free_blocks(), 0);
        assert!(matches!(a.allocate(1), Err(StoreError::NoSpace { .. })));
    }

    #[test]
    fn segments_roundtrip() {
        let mut a = Allocator::new(SEGMENT_BLOCKS * 2 + 5);
        for e in a.allocate(SEGMENT_BLOCKS + 3).expect("alloc") {
            a.commit_alloc(e);
        }
        let dirty = a.take_dirty();
        assert_eq!(dirty, vec![0, 1]);
        let mut b = Allocator::new(SEGMENT_BLOCKS * 2 + 5);
        for s in 0..a.segments() {
            b.load_segment(s, &a.segment_bytes(s)).expect("load");
        }
        assert_eq!(b.used_blocks(), SEGMENT_BLOCKS + 3);
        assert!(b.load_segment(3, &a.segment_bytes(0)).is_err());
    }

    proptest! {
        #[test]
        fn never_double_allocates(ops in proptest::collection::vec((0u8..3, 1u64..40), 1..80)) {
            let total = 300u64;
            let mut a = Allocator::new(total);
            let mut owned: Vec<Extent> = Vec::new();
            let mut model = vec![false; total as usize];
            let mut pending = vec![false; total as usize];
            let mut seq = 0;
            for (kind, n) in ops {
                match kind {
                    0 => if let Ok(es) = a.allocate(n) {
                        prop_assert_eq!(es.iter().map(|e| e.len).sum::<u64>(), n);
                        for e in es {
                            a.commit_alloc(e);
                            for b in e.start..e.start + e.len {
                                prop_assert!(!model[b as usize], "block {} handed out twice", b);
                                prop_assert!(!pending[b as usize], "block {} reused before its release", b);
                                model[b as usize] = true;
                            }
                            owned.push(e);
                        }
                    },
                    1 => if let Some(e) = owned.pop() {
                        seq += 1;
                        a.free(e, 0, seq);
                        for b in e.start..e.start + e.len {
                            model[b as usize] = false;
                            pending[b as usize] = true;
                        }
                    },
                    _ => {
                        a.release_through(0, seq);
                        pending.iter_mut().for_each(|p| *p = false);
                    }
                }
                let used = model.iter().filter(|&&u| u).count() as u64;
                prop_assert_eq!(a.used_blocks(), used);
                prop_assert!(a.free_blocks() <= total - used);
            }
        }
    }
}
