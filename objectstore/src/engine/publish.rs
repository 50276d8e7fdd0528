//! Group commit, second stage: make written batches durable (one flush
//! for every batch with big-write data whose I/O finished), then publish
//! them in order: data overlay, committed layer, allocator, counters,
//! acknowledgements, and the hand-off of their journaled blocks to the
//! apply stage.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{CommitEngine, Queued, Token};
use crate::alloc::Extent;
use crate::device::{AlignedBuf, QueuedOp};
use crate::error::StoreError;
use crate::journal::StatsDelta;
use crate::layout::BLOCK_SIZE;
use crate::overlay::PendingBlock;
use crate::perf;
use crate::prepare::{Counters, InFlight};

/// A batch whose record (and big data) is written, until it is published.
pub(crate) struct Written {
    pub seq: u64,
    pub started: Instant,
    /// Writes of the batch not finished yet.
    pub pending_ios: usize,
    /// Big-write data went out without FUA: a flush must follow.
    pub needs_flush: bool,
    pub flushed: bool,
    pub accepted: Vec<Queued>,
    /// The record; deferred block contents live in it.
    pub buf: Arc<AlignedBuf>,
    /// (physical block, offset in `buf`, crc32c) of each deferred block.
    pub deferred: Vec<(u64, usize, u32)>,
    /// Zone sector where the next record starts.
    pub end_pos: u64,
    pub consumed: u64,
    pub allocs: Vec<Extent>,
    pub frees: Vec<Extent>,
    pub stats: StatsDelta,
    pub max_nid: u64,
    pub inflight: Arc<InFlight>,
    pub counters: Counters,
}

impl Written {
    fn durable(&self) -> bool {
        self.pending_ios == 0 && (!self.needs_flush || self.flushed)
    }

    /// Answers the batch's transactions with `e` (the store is poisoned).
    pub fn fail(self, e: &StoreError, out: &mut Vec<(u64, Result<(), StoreError>)>) {
        for q in self.accepted {
            q.notify.complete(Err(e.clone()), out);
        }
    }
}

impl CommitEngine {
    /// Starts a flush for the written batches that need one, and publishes
    /// every batch at the front that is durable. Returns whether anything
    /// was published.
    pub(super) fn publish_durable(&mut self) -> bool {
        // A failed write poisons the store before this runs; never publish
        // past it.
        if self.sh.poisoned().is_some() {
            return false;
        }
        if self.flushing.is_none() {
            // One flush for every batch whose writes all finished.
            let through = self
                .writing
                .iter()
                .take_while(|w| w.pending_ios == 0)
                .filter(|w| w.needs_flush && !w.flushed)
                .map(|w| w.seq)
                .last();
            if let Some(seq) = through {
                self.io.push(QueuedOp::Flush, Token::Flush(seq).encode());
                self.flushing = Some((seq, Instant::now()));
            }
        }
        let mut progress = false;
        while self.writing.front().is_some_and(|w| w.durable()) {
            let Some(w) = self.writing.pop_front() else {
                break;
            };
            self.publish(w);
            progress = true;
        }
        progress
    }

    /// Publishes one durable batch.
    fn publish(&mut self, w: Written) {
        // Acknowledgement order is journal order: a batch is published only
        // after every earlier one, and only once all of its I/O is durable.
        assert!(
            w.seq > self.published_seq && w.pending_ios == 0 && w.durable(),
            "batch {} published out of order or before it is durable (last {})",
            w.seq,
            self.published_seq
        );
        let sh = self.sh.clone();
        sh.perf.tinc(perf::L_JOURNAL_WRITE_LAT, w.started.elapsed());
        // Blocks first, so a reader that sees the new metadata always finds
        // the new data.
        for &(phys, offset, csum) in &w.deferred {
            self.es.overlay.insert(
                phys,
                PendingBlock {
                    seq: w.seq,
                    csum,
                    buf: w.buf.clone(),
                    offset,
                },
            );
        }
        // The batch's layer is only read from here on: move it, or copy it
        // if a batch prepared after it still holds it.
        let pos = self.inflight.iter().position(|f| f.seq == w.seq);
        if let Some(i) = pos {
            self.inflight.remove(i);
        }
        let inflight = w.inflight;
        let layer = match Arc::try_unwrap(inflight) {
            Ok(f) => f.layer,
            Err(shared) => shared.layer.clone(),
        };
        for (c, d) in layer.logs() {
            if let Some(m) = self.log_marks.get_mut(c) {
                *m = d.mark_over(*m);
            }
        }
        self.es.committed.write().active.merge(layer);
        {
            let mut a = sh.alloc.lock();
            for e in &w.allocs {
                a.commit_alloc(*e);
            }
            for e in &w.frees {
                a.free(*e, self.es.zone, w.seq);
            }
            sh.perf
                .set(perf::L_ALLOCATED_BYTES, a.used_blocks() * BLOCK_SIZE);
            sh.sync_alloc_stats(&a);
        }
        self.add_stats(w.stats);
        sh.checkpointer.mark_dirty();
        self.durable_seq = w.seq;
        self.published_seq = w.seq;
        if w.max_nid > 0 {
            sh.next_nid.fetch_max(w.max_nid + 1, Ordering::Relaxed);
        }
        let p = &sh.perf;
        let c = &w.counters;
        p.inc(perf::L_TXNS, w.accepted.len() as u64);
        p.avg_add(perf::L_GROUP_COMMIT_TXNS, w.accepted.len() as u64);
        p.inc(perf::L_BYTES_WRITTEN, c.bytes_written);
        p.inc(perf::L_DEFERRED_WRITE_OPS, c.deferred_ops);
        p.inc(perf::L_DEFERRED_WRITE_BYTES, c.deferred_bytes);
        p.inc(perf::L_BIG_WRITE_OPS, c.big_ops);
        p.inc(perf::L_BIG_WRITE_BYTES, c.big_bytes);
        p.inc(perf::L_ALLOCATIONS, c.allocations);
        for q in w.accepted {
            p.tinc(perf::L_COMMIT_LAT, q.queued_at.elapsed());
            q.notify.complete(Ok(()), &mut self.completions);
            drop(q.permit);
        }
        let blocks: Vec<(u64, usize)> = w
            .deferred
            .iter()
            .map(|&(phys, off, _)| (phys, off))
            .collect();
        self.apply.push(w.seq, w.end_pos, w.consumed, w.buf, blocks);
    }
}
