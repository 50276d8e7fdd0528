//! The commit thread: group commit, first stage.
//!
//! Each round takes every queued transaction (within the batch bounds),
//! prepares them in queue order into one batch — reading through the
//! batches written but not yet published — and writes it: a record with
//! FUA when the batch has only journaled data, or the big-write data and
//! the record together, to be made durable by one flush. The second stage
//! ([`super::publish`]) flushes, publishes and acknowledges; it runs on
//! the sync thread when `commit_pipeline_depth` > 1, so that the next batch
//! is prepared and written while this one waits for its flush. A
//! transaction is acknowledged only after its record is durable; nothing
//! of an unacknowledged one is visible.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::apply::Applier;
use super::publish::{self, Written};
use super::{Queued, Shared};
use crate::device::{shared_aligned_bytes, IoBuf, IoOp};
use crate::error::StoreError;
use crate::journal::{build_pad, build_record, Placement, RecordId};
use crate::layout::BLOCK_SIZE;
use crate::onode::StoreStats;
use crate::perf;
use crate::prepare::{Batch, InFlight, Prepared, View};

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

pub(crate) fn fail_all(batch: Vec<Queued>, e: &StoreError) {
    for q in batch {
        q.done.complete(Err(e.clone()));
    }
}

/// Whether batches are handed to the sync thread.
pub(crate) fn pipelined(sh: &Shared) -> bool {
    !sh.settings.apply_inline && sh.settings.commit_pipeline_depth > 1
}

/// The thread body.
pub(crate) fn run(sh: Arc<Shared>, mut st: CommitState, mut inline: Option<Applier>) -> CommitExit {
    let pipelined = pipelined(&sh);
    while let Some(batch) = take_batch(&sh) {
        if let Some(reason) = sh.poisoned() {
            fail_all(batch, &StoreError::Poisoned(reason));
            continue;
        }
        if pipelined {
            wait_for_room(&sh);
        }
        let (written, need_space) = write_batch(&sh, &mut st, batch, inline.as_mut());
        let seq = written.as_ref().map(|w| w.seq);
        if let Some(w) = written {
            // A batch that needs no flush and has nothing in flight before
            // it is published here: one thread hand-off less per commit.
            let alone = !w.needs_flush && sh.inflight.lock().len() == 1;
            if pipelined && !alone {
                publish::hand_to_sync(&sh, w);
            } else {
                publish::publish_group(&sh, vec![w], inline.as_mut());
            }
        }
        if need_space {
            force_checkpoint(
                &sh,
                seq.unwrap_or(st.next_seq.saturating_sub(1)),
                inline.as_mut(),
            );
        }
    }
    CommitExit { applier: inline }
}

/// Waits until fewer than `commit_pipeline_depth` batches are in flight.
fn wait_for_room(sh: &Shared) {
    let depth = sh.settings.commit_pipeline_depth.max(1);
    let mut w = sh.written.lock();
    while sh.inflight.lock().len() >= depth && sh.poisoned().is_none() {
        sh.written_cv.wait_for(&mut w, Duration::from_millis(100));
    }
}

/// Prepares and writes one batch. Returns it (unless nothing was accepted
/// or the write failed) and whether a transaction waits for freed space.
fn write_batch(
    sh: &Shared,
    st: &mut CommitState,
    txns: Vec<Queued>,
    inline: Option<&mut Applier>,
) -> (Option<Written>, bool) {
    let t_prep = Instant::now();
    let view = View {
        layers: sh.inflight.lock().iter().cloned().collect(),
        base: &sh.kv,
    };
    let mut batch = Batch::new(sh, view, st.next_seq, st.next_nid, st.stats);
    let mut accepted: Vec<Queued> = Vec::new();
    let mut leftover: VecDeque<Queued> = VecDeque::new();
    let mut need_space = false;
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
                return (None, false);
            }
            Err(StoreError::NoSpace { .. })
                if !q.space_retried && sh.alloc.lock().pending_blocks() > 0 =>
            {
                // Space freed by committed transactions waits for a
                // checkpoint: take one, then retry this transaction once.
                let mut q = q;
                q.space_retried = true;
                leftover.push_back(q);
                need_space = true;
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
        return (None, need_space);
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
    match write_record(sh, st, seq, n_ok, prepared, inline) {
        Ok(mut w) => {
            st.next_seq = seq + 1;
            st.next_nid = next_nid;
            st.stats = stats;
            w.accepted = accepted;
            w.stats = stats;
            w.counters = counters;
            (Some(w), need_space)
        }
        Err(e) => {
            sh.poison(&format!("writing a journal record failed: {e}"));
            sh.inflight.lock().clear();
            fail_all(accepted, &StoreError::Poisoned(e.to_string()));
            (None, false)
        }
    }
}

/// Waits until a checkpoint covers record `seq` (so the space its
/// transactions freed can be reused), running it here in inline mode.
fn force_checkpoint(sh: &Shared, seq: u64, inline: Option<&mut Applier>) {
    if let Some(a) = inline {
        if let Err(e) = a.checkpoint(sh, false) {
            sh.poison(&format!("checkpoint failed: {e}"));
        }
        return;
    }
    let mut sp = sh.space.lock();
    while sp.checkpointed_seq < seq && sh.poisoned().is_none() {
        sh.apply_q.lock().checkpoint_requested = true;
        sh.apply_cv.notify_all();
        sh.space_cv.wait_for(&mut sp, Duration::from_millis(100));
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

/// Builds, places and writes the record (and big-write data) of a batch.
fn write_record(
    sh: &Shared,
    st: &CommitState,
    seq: u64,
    n_txns: u32,
    prepared: Prepared,
    inline: Option<&mut Applier>,
) -> Result<Written, StoreError> {
    let Prepared {
        meta,
        kv,
        blocks,
        big,
    } = prepared;
    let id = RecordId {
        seq,
        generation: st.generation,
        nonce: sh.label.journal_nonce,
        durable_seq: sh.durable_seq.load(Ordering::Acquire),
    };
    let refs: Vec<&[u8]> = blocks.iter().map(|(_, b)| &b[..]).collect();
    let (buf, data_at) = build_record(id, n_txns, &meta, &refs);
    let buf = Arc::new(buf);
    let bs = BLOCK_SIZE as usize;
    let mut inflight = InFlight {
        seq,
        kv,
        blocks: HashMap::with_capacity(blocks.len()),
    };
    let place = reserve(sh, buf.len() as u64 / BLOCK_SIZE, inline)?;
    let joff = |pos: u64| sh.layout.journal_offset + pos * BLOCK_SIZE;
    let record_op = |fua: bool| IoOp::Write {
        offset: joff(place.at),
        buf: IoBuf::Shared {
            buf: buf.clone(),
            start: 0,
            len: buf.len(),
        },
        fua,
    };
    let needs_flush = !big.is_empty();
    let mut ops = Vec::new();
    let max = sh.settings.max_io_bytes.max(BLOCK_SIZE) as usize;
    for w in big {
        let data = w.buf;
        for i in 0..data.len() / bs {
            inflight
                .blocks
                .insert(w.phys + i as u64, (data.clone(), i * bs));
        }
        let mut at = 0usize;
        while at < data.len() {
            let len = max.min(data.len() - at);
            ops.push(IoOp::Write {
                offset: sh.layout.block_offset(w.phys) + at as u64,
                buf: IoBuf::Bytes(data.slice(at..at + len)),
                fua: false,
            });
            at += len;
        }
    }
    // Deferred blocks last: a block big-written and then overwritten in
    // the same batch reads as the overwrite.
    let mut deferred = Vec::with_capacity(blocks.len());
    let record = (!blocks.is_empty()).then(|| shared_aligned_bytes(buf.clone()));
    for (i, (phys, content)) in blocks.iter().enumerate() {
        let at = data_at + i * bs;
        if let Some(r) = &record {
            inflight.blocks.insert(*phys, (r.clone(), at));
        }
        deferred.push((*phys, at, crc32c::crc32c(content)));
    }
    // Later batches read this one's changes until it is published.
    sh.inflight.lock().push_back(Arc::new(inflight));
    let t_j = Instant::now();
    let io = if !needs_flush {
        if let Some(pad_at) = place.pad_at {
            // The pad goes first and alone: a record is never durable
            // before the pad that leads to it.
            sh.dev
                .submit(&mut [IoOp::write(joff(pad_at), build_pad(id), true)])?;
        }
        sh.dev.start(vec![record_op(true)])
    } else {
        // Big-write data, the pad and the record together; the publish
        // stage flushes before anything is acknowledged, and replay checks
        // the data of records not yet proven durable (`BigRun`).
        if let Some(pad_at) = place.pad_at {
            ops.push(IoOp::write(joff(pad_at), build_pad(id), false));
        }
        ops.push(record_op(false));
        sh.dev.start(ops)
    };
    sh.perf.inc(perf::L_JOURNAL_RECORDS, 1);
    sh.perf.inc(perf::L_JOURNAL_BYTES, buf.len() as u64);
    Ok(Written {
        seq,
        io: Some((io, t_j)),
        accepted: Vec::new(),
        kv_ops: meta.kv_ops,
        buf,
        deferred,
        end_pos: place.end(sh.layout.journal_blocks()),
        consumed: place.consumed,
        needs_flush,
        stats: StoreStats::default(),
        counters: Default::default(),
    })
}
