//! Group commit, second stage: make written batches durable, publish them
//! (data overlay, database), acknowledge their transactions in order and
//! hand their journaled blocks to the apply stage.
//!
//! On the sync thread (pipelined mode) every batch written while the
//! previous flush ran shares the next flush.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::apply::{Applier, ApplyItem};
use super::commit::fail_all;
use super::{Queued, Shared};
use crate::device::{AlignedBuf, PendingIo};
use crate::error::StoreError;
use crate::kv::KvOp;
use crate::layout::BLOCK_SIZE;
use crate::onode::StoreStats;
use crate::overlay::PendingBlock;
use crate::perf;
use crate::prepare::Counters;

/// A batch whose record (and big data) is written, not yet durable.
pub(crate) struct Written {
    pub seq: u64,
    /// The record (and big-write data) still on its way to the device,
    /// with the time it was started.
    pub io: Option<(PendingIo, Instant)>,
    pub accepted: Vec<Queued>,
    pub kv_ops: Vec<KvOp>,
    /// The record; deferred block contents live in it.
    pub buf: Arc<AlignedBuf>,
    /// (physical block, offset in `buf`, crc32c) of each deferred block.
    pub deferred: Vec<(u64, usize, u32)>,
    pub end_pos: u64,
    pub consumed: u64,
    /// False when the record went out with FUA and carries all the data.
    pub needs_flush: bool,
    pub stats: StoreStats,
    pub counters: Counters,
}

/// Queues a written batch for the sync thread.
pub(crate) fn hand_to_sync(sh: &Shared, w: Written) {
    sh.written.lock().items.push_back(w);
    sh.written_cv.notify_all();
}

/// The sync thread: flush and publish written batches until shutdown.
pub(crate) fn run(sh: Arc<Shared>) {
    loop {
        let group: Vec<Written> = {
            let mut q = sh.written.lock();
            while q.items.is_empty() && !q.shutdown {
                sh.written_cv.wait(&mut q);
            }
            if q.items.is_empty() {
                return;
            }
            q.items.drain(..).collect()
        };
        publish_group(&sh, group, None);
    }
}

/// Makes `group` durable (one flush if any needs it) and publishes each
/// batch in order.
pub(crate) fn publish_group(
    sh: &Shared,
    mut group: Vec<Written>,
    mut inline: Option<&mut Applier>,
) {
    for w in group.iter_mut() {
        if let Some((io, started)) = w.io.take() {
            if let Err(e) = io.wait() {
                sh.poison(&format!("writing a journal record failed: {e}"));
            }
            sh.perf.tinc(perf::L_JOURNAL_WRITE_LAT, started.elapsed());
        }
    }
    if sh.poisoned().is_none() && group.iter().any(|w| w.needs_flush) {
        let t = Instant::now();
        if let Err(e) = sh.dev.flush() {
            sh.poison(&format!("flushing journal records failed: {e}"));
        }
        sh.perf.tinc(perf::L_JOURNAL_FLUSH_LAT, t.elapsed());
    }
    for w in group {
        if let Some(reason) = sh.poisoned() {
            sh.inflight.lock().clear();
            fail_all(w.accepted, &StoreError::Poisoned(reason));
            continue;
        }
        if let Err(e) = publish(sh, w, inline.as_deref_mut()) {
            sh.poison(&format!("publishing a committed batch failed: {e}"));
        }
    }
    sh.written_cv.notify_all();
}

/// Publishes one durable batch.
fn publish(sh: &Shared, w: Written, inline: Option<&mut Applier>) -> Result<(), StoreError> {
    // Blocks first, so a reader that sees the new metadata always finds
    // the new data.
    for &(phys, offset, csum) in &w.deferred {
        sh.overlay.insert(
            phys,
            PendingBlock {
                seq: w.seq,
                csum,
                buf: w.buf.clone(),
                offset,
            },
        );
    }
    let t_kv = Instant::now();
    if let Err(e) = sh.kv.write(&w.kv_ops) {
        fail_all(w.accepted, &StoreError::Poisoned(e.to_string()));
        return Err(e);
    }
    sh.perf.tinc(perf::L_KV_COMMIT_LAT, t_kv.elapsed());
    *sh.stats.lock() = w.stats;
    sh.durable_seq.store(w.seq, Ordering::Release);
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
    p.set(
        perf::L_ALLOCATED_BYTES,
        sh.alloc.lock().used_blocks() * BLOCK_SIZE,
    );
    for q in w.accepted {
        p.tinc(perf::L_COMMIT_LAT, q.queued_at.elapsed());
        q.done.complete(Ok(()));
    }
    let item = ApplyItem {
        seq: w.seq,
        end_pos: w.end_pos,
        consumed: w.consumed,
        buf: w.buf,
        blocks: w
            .deferred
            .iter()
            .map(|&(phys, off, _)| (phys, off))
            .collect(),
        queued_at: Instant::now(),
    };
    let res = hand_to_apply(sh, item, inline);
    // Last: while a batch is in this list, no later batch publishes
    // around it (see `commit::run`), so acknowledgements stay in order.
    let mut inflight = sh.inflight.lock();
    if inflight.front().is_some_and(|f| f.seq == w.seq) {
        inflight.pop_front();
    }
    res
}

/// Hands a committed record to the apply thread (bounded by
/// `max_unapplied_bytes`), or applies it here in inline mode.
fn hand_to_apply(
    sh: &Shared,
    item: ApplyItem,
    inline: Option<&mut Applier>,
) -> Result<(), StoreError> {
    if let Some(a) = inline {
        a.apply(sh, std::slice::from_ref(&item))?;
        if a.checkpoint_due(sh, false) {
            a.checkpoint(sh, false)?;
        }
        return Ok(());
    }
    let mut q = sh.apply_q.lock();
    while q.unapplied_bytes > sh.settings.max_unapplied_bytes && sh.poisoned().is_none() {
        sh.apply_cv.wait_for(&mut q, Duration::from_millis(100));
    }
    q.unapplied_bytes += item.bytes();
    q.items.push_back(item);
    // Wake the apply thread to arm its delay, or when a burst is ready;
    // not for every record in between.
    let wake = q.items.len() == 1 || q.unapplied_bytes >= sh.settings.apply_min_bytes;
    drop(q);
    if wake {
        sh.apply_cv.notify_all();
    }
    Ok(())
}
