//! The commit thread: group commit.
//!
//! Each round takes every queued transaction (within the batch bounds),
//! prepares them in queue order into one batch, writes the big-write data
//! and flushes it, writes one journal record with FUA, applies the
//! database changes, acknowledges the transactions and hands the deferred
//! blocks to the apply thread. A transaction is acknowledged only after
//! its record is durable; nothing of an unacknowledged one is visible.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::apply::{Applier, ApplyItem};
use super::{Queued, Shared};
use crate::device::{IoBuf, IoOp};
use crate::error::StoreError;
use crate::journal::{build_pad, build_record, Placement, RecordId};
use crate::layout::BLOCK_SIZE;
use crate::onode::StoreStats;
use crate::overlay::PendingBlock;
use crate::perf;
use crate::prepare::{Batch, Prepared};

/// Counters the commit thread carries from batch to batch.
pub(crate) struct CommitState {
    pub next_seq: u64,
    pub generation: u64,
    pub next_nid: u64,
    pub stats: StoreStats,
}

/// What the commit thread leaves behind.
pub(crate) struct CommitExit {
    /// The applier, in inline mode.
    pub applier: Option<Applier>,
}

/// Takes the next batch of transactions; `None` at shutdown with an empty
/// queue.
fn take_batch(sh: &Shared) -> Option<Vec<Queued>> {
    let mut q = sh.queue.lock();
    while q.txns.is_empty() {
        if q.shutdown {
            return None;
        }
        sh.queue_cv.wait(&mut q);
    }
    let mut out = Vec::new();
    let mut bytes = 0u64;
    while let Some(front) = q.txns.front() {
        let b = front.txn.payload_bytes();
        if !out.is_empty()
            && (out.len() >= sh.settings.max_batch_txns || bytes + b > sh.settings.max_batch_bytes)
        {
            break;
        }
        bytes += b;
        if let Some(t) = q.txns.pop_front() {
            out.push(t);
        }
    }
    Some(out)
}

fn fail_all(batch: Vec<Queued>, e: &StoreError) {
    for q in batch {
        q.done.complete(Err(e.clone()));
    }
}

/// The thread body.
pub(crate) fn run(sh: Arc<Shared>, mut st: CommitState, mut inline: Option<Applier>) -> CommitExit {
    while let Some(batch) = take_batch(&sh) {
        if let Some(reason) = sh.poisoned() {
            fail_all(batch, &StoreError::Poisoned(reason));
            continue;
        }
        run_batch(&sh, &mut st, batch, inline.as_mut());
    }
    CommitExit { applier: inline }
}

fn run_batch(
    sh: &Shared,
    st: &mut CommitState,
    txns: Vec<Queued>,
    mut inline: Option<&mut Applier>,
) {
    let t_prep = Instant::now();
    let mut batch = Batch::new(sh, st.next_seq, st.next_nid, st.stats);
    let mut accepted: Vec<Queued> = Vec::new();
    let mut leftover: VecDeque<Queued> = VecDeque::new();
    let max_record = sh
        .settings
        .max_record_bytes
        .min(sh.layout.journal_bytes / 4);
    let mut pending = txns.into_iter();
    while let Some(q) = pending.next() {
        if !leftover.is_empty() {
            leftover.push_back(q);
            continue;
        }
        match batch.prepare(&q.txn) {
            Err(e) if e.is_fatal() => {
                sh.poison(&format!("preparing a transaction failed: {e}"));
                fail_all(accepted, &e);
                q.done.complete(Err(e.clone()));
                fail_all(leftover.into_iter().chain(pending).collect(), &e);
                return;
            }
            Err(e) => {
                sh.perf.inc(perf::L_TXN_ERRORS, 1);
                q.done.complete(Err(e));
            }
            Ok(()) if batch.record_bytes() > max_record => {
                let bytes = batch.record_bytes();
                batch.rollback();
                if batch.n_ok == 0 {
                    sh.perf.inc(perf::L_TXN_ERRORS, 1);
                    q.done.complete(Err(StoreError::TooLarge {
                        bytes,
                        limit: max_record,
                    }));
                } else {
                    leftover.push_back(q);
                }
            }
            Ok(()) => {
                batch.keep();
                accepted.push(q);
            }
        }
    }
    if !leftover.is_empty() {
        let mut q = sh.queue.lock();
        while let Some(t) = leftover.pop_back() {
            q.txns.push_front(t);
        }
    }
    if accepted.is_empty() {
        return;
    }
    sh.perf.tinc(perf::L_PREPARE_LAT, t_prep.elapsed());
    let (seq, next_nid, stats, counters, n_ok) = (
        batch.seq,
        batch.next_nid,
        batch.stats,
        batch.counters,
        batch.n_ok,
    );
    let prepared = batch.finish();
    match write_and_apply(sh, st, seq, n_ok, prepared, inline.as_deref_mut()) {
        Ok(item) => {
            st.next_seq = seq + 1;
            st.next_nid = next_nid;
            st.stats = stats;
            *sh.stats.lock() = stats;
            let p = &sh.perf;
            p.inc(perf::L_TXNS, accepted.len() as u64);
            p.avg_add(perf::L_GROUP_COMMIT_TXNS, accepted.len() as u64);
            p.inc(perf::L_BYTES_WRITTEN, counters.bytes_written);
            p.inc(perf::L_DEFERRED_WRITE_OPS, counters.deferred_ops);
            p.inc(perf::L_DEFERRED_WRITE_BYTES, counters.deferred_bytes);
            p.inc(perf::L_BIG_WRITE_OPS, counters.big_ops);
            p.inc(perf::L_BIG_WRITE_BYTES, counters.big_bytes);
            p.inc(perf::L_ALLOCATIONS, counters.allocations);
            p.set(
                perf::L_ALLOCATED_BYTES,
                sh.alloc.lock().used_blocks() * BLOCK_SIZE,
            );
            for q in accepted {
                p.tinc(perf::L_COMMIT_LAT, q.queued_at.elapsed());
                q.done.complete(Ok(()));
            }
            if let Err(e) = hand_to_apply(sh, item, inline) {
                sh.poison(&format!("applying journaled blocks failed: {e}"));
            }
        }
        Err(e) => {
            sh.poison(&format!("committing a journal record failed: {e}"));
            fail_all(accepted, &StoreError::Poisoned(e.to_string()));
        }
    }
}

/// Reserves journal room for `blocks`, waiting for (or, inline, running)
/// a checkpoint when the journal is full.
fn reserve(
    sh: &Shared,
    blocks: u64,
    mut inline: Option<&mut Applier>,
) -> Result<Placement, StoreError> {
    loop {
        {
            let mut sp = sh.space.lock();
            if let Some(p) = sp.ring.place(blocks) {
                sp.ring.advance(&p);
                return Ok(p);
            }
            if inline.is_none() {
                sh.apply_q.lock().checkpoint_requested = true;
                sh.apply_cv.notify_all();
                sh.space_cv.wait_for(&mut sp, Duration::from_millis(100));
            }
        }
        if let Some(reason) = sh.poisoned() {
            return Err(StoreError::Poisoned(reason));
        }
        if let Some(a) = inline.as_deref_mut() {
            a.checkpoint(sh, false)?;
        }
    }
}

/// Writes the batch to the device and the database; returns the deferred
/// blocks to apply.
fn write_and_apply(
    sh: &Shared,
    st: &CommitState,
    seq: u64,
    n_txns: u32,
    prepared: Prepared,
    inline: Option<&mut Applier>,
) -> Result<ApplyItem, StoreError> {
    let Prepared { meta, blocks, big } = prepared;
    // Big-write data first, durable before any record points at it.
    if !big.is_empty() {
        let max = sh.settings.max_io_bytes.max(BLOCK_SIZE) as usize;
        let mut ops = Vec::new();
        for w in big {
            let buf = Arc::new(w.buf);
            let mut at = 0usize;
            while at < buf.len() {
                let len = max.min(buf.len() - at);
                ops.push(IoOp::Write {
                    offset: sh.layout.block_offset(w.phys) + at as u64,
                    buf: IoBuf::Shared {
                        buf: buf.clone(),
                        start: at,
                        len,
                    },
                    fua: false,
                });
                at += len;
            }
        }
        for chunk in ops.chunks_mut(sh.settings.apply_batch_ios.max(1)) {
            sh.dev.submit(chunk)?;
        }
        sh.dev.flush()?;
    }

    let id = RecordId {
        seq,
        generation: st.generation,
        nonce: sh.label.journal_nonce,
    };
    let refs: Vec<&[u8]> = blocks.iter().map(|(_, b)| &b[..]).collect();
    let (buf, data_at) = build_record(id, n_txns, &meta, &refs);
    let buf = Arc::new(buf);
    let record_blocks = buf.len() as u64 / BLOCK_SIZE;
    let place = reserve(sh, record_blocks, inline)?;
    let t_j = Instant::now();
    let joff = |pos: u64| sh.layout.journal_offset + pos * BLOCK_SIZE;
    if let Some(pad_at) = place.pad_at {
        // The pad goes first and alone: a record is never durable before
        // the pad that leads to it.
        let mut ops = [IoOp::write(joff(pad_at), build_pad(id), true)];
        sh.dev.submit(&mut ops)?;
    }
    let mut ops = [IoOp::Write {
        offset: joff(place.at),
        buf: IoBuf::Shared {
            buf: buf.clone(),
            start: 0,
            len: buf.len(),
        },
        fua: true,
    }];
    sh.dev.submit(&mut ops)?;
    sh.perf.tinc(perf::L_JOURNAL_WRITE_LAT, t_j.elapsed());
    sh.perf.inc(perf::L_JOURNAL_RECORDS, 1);
    sh.perf.inc(perf::L_JOURNAL_BYTES, buf.len() as u64);

    // Durable: publish. Blocks first, so a reader that sees the new
    // metadata always finds the new data.
    let bs = BLOCK_SIZE as usize;
    let mut item_blocks = Vec::with_capacity(blocks.len());
    for (i, (phys, content)) in blocks.iter().enumerate() {
        let offset = data_at + i * bs;
        sh.overlay.insert(
            *phys,
            PendingBlock {
                seq,
                csum: crc32c::crc32c(content),
                buf: buf.clone(),
                offset,
            },
        );
        item_blocks.push((*phys, offset));
    }
    let t_kv = Instant::now();
    sh.kv.write(&meta.kv_ops)?;
    sh.perf.tinc(perf::L_KV_COMMIT_LAT, t_kv.elapsed());
    Ok(ApplyItem {
        seq,
        end_pos: place.end(sh.layout.journal_blocks()),
        consumed: place.consumed,
        buf,
        blocks: item_blocks,
    })
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
        if a.checkpoint_due(sh) {
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
    drop(q);
    sh.apply_cv.notify_all();
    Ok(())
}
