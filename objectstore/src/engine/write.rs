//! Group commit, first stage: prepare queued transactions into a batch and
//! start its journal record (and big-write data) on the device.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::publish::Written;
use super::{CommitEngine, Queued, Token};
use crate::device::{shared_aligned_bytes, IoBuf, IoOp, QueuedOp};
use crate::error::StoreError;
use crate::journal::{build_pad, build_record, record_sectors, RecordId};
use crate::layout::BLOCK_SIZE;
use crate::perf;
use crate::prepare::{Batch, InFlight, Prepared, View};

impl CommitEngine {
    /// Starts batches while the pipeline has room. Returns whether any
    /// transaction was taken.
    pub(super) fn write_batches(&mut self) -> bool {
        let mut progress = false;
        let depth = self.sh.settings.commit_pipeline_depth.max(1);
        // Beyond `max_unapplied_bytes` of journaled data not yet home, new
        // batches wait for the apply stage.
        while !self.queue.is_empty()
            && self.writing.len() < depth
            && self.waiting_checkpoint.is_none()
            && self.apply.backlog_bytes() <= self.sh.settings.max_unapplied_bytes
            && self.sh.poisoned().is_none()
        {
            let batch = self.take_batch();
            progress = true;
            self.write_batch(batch);
        }
        progress
    }

    /// The next transactions of the queue within the batch bounds.
    fn take_batch(&mut self) -> Vec<Queued> {
        let s = &self.sh.settings;
        let mut out = Vec::new();
        let mut bytes = 0u64;
        while let Some(front) = self.queue.front() {
            let b = front.txn.payload_bytes();
            if !out.is_empty() && (out.len() >= s.max_batch_txns || bytes + b > s.max_batch_bytes) {
                break;
            }
            bytes += b;
            if let Some(t) = self.queue.pop_front() {
                out.push(t);
            }
        }
        out
    }

    /// Prepares `txns` in order and writes their record. Transactions that
    /// do not fit go back to the front of the queue.
    fn write_batch(&mut self, txns: Vec<Queued>) {
        let t_prep = Instant::now();
        let max_record = self.max_record_bytes();
        let mut accepted: Vec<Queued> = Vec::new();
        let mut leftover: VecDeque<Queued> = VecDeque::new();
        let prepared = {
            let committed = self.es.committed.read();
            let view = View {
                inflight: &self.inflight,
                committed: committed.layers(),
                base: self.sh.kv.as_ref(),
            };
            let mut batch = Batch::new(&self.sh, &self.es.overlay, view, &mut self.log_marks);
            let mut pending = txns.into_iter();
            while let Some(q) = pending.next() {
                if !leftover.is_empty() {
                    leftover.push_back(q);
                    continue;
                }
                match batch.prepare(&q.txn) {
                    Err(e) if e.is_fatal() => {
                        self.sh
                            .poison(&format!("preparing a transaction failed: {e}"));
                        batch.rollback_all();
                        let err = StoreError::Poisoned(e.to_string());
                        for q in accepted
                            .drain(..)
                            .chain(std::iter::once(q))
                            .chain(pending.by_ref())
                        {
                            q.notify.complete(Err(err.clone()), &mut self.completions);
                        }
                        return;
                    }
                    Err(StoreError::NoSpace { .. })
                        if !q.space_retried && self.sh.alloc.lock().pending_blocks() > 0 =>
                    {
                        // Space freed by committed transactions waits for a
                        // checkpoint: take one, then retry this transaction
                        // once.
                        let mut q = q;
                        q.space_retried = true;
                        leftover.push_back(q);
                        self.waiting_checkpoint = Some(self.finished_round + 1);
                        self.sh.checkpointer.request();
                    }
                    Err(e) => {
                        self.sh.perf.inc(perf::L_TXN_ERRORS, 1);
                        q.notify.complete(Err(e), &mut self.completions);
                    }
                    Ok(()) if batch.record_bytes() > max_record => {
                        let bytes = batch.record_bytes();
                        batch.rollback();
                        if batch.n_ok == 0 {
                            self.sh.perf.inc(perf::L_TXN_ERRORS, 1);
                            q.notify.complete(
                                Err(StoreError::TooLarge {
                                    bytes,
                                    limit: max_record,
                                }),
                                &mut self.completions,
                            );
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
            if accepted.is_empty() {
                None
            } else {
                Some((batch.n_ok, batch.counters, batch.finish()))
            }
        };
        while let Some(q) = leftover.pop_back() {
            self.queue.push_front(q);
        }
        let Some((n_ok, counters, prepared)) = prepared else {
            return;
        };
        self.sh.perf.tinc(perf::L_PREPARE_LAT, t_prep.elapsed());
        match self.start_record(n_ok, prepared) {
            Ok(mut w) => {
                w.accepted = accepted;
                w.counters = counters;
                self.writing.push_back(w);
            }
            Err((e, prepared)) => {
                // No room in the zone: undo the batch's allocations and
                // wait for a checkpoint; the transactions go back in order.
                if let Some(p) = prepared {
                    let mut a = self.sh.alloc.lock();
                    for ext in &p.meta.allocs {
                        a.unallocate(*ext);
                    }
                    self.sh.sync_alloc_stats(&a);
                    drop(a);
                    for q in accepted.into_iter().rev() {
                        self.queue.push_front(q);
                    }
                    self.waiting_checkpoint = Some(self.finished_round + 1);
                    self.sh.checkpointer.request();
                } else {
                    self.sh
                        .poison(&format!("writing a journal record failed: {e}"));
                    let err = StoreError::Poisoned(e.to_string());
                    for q in accepted {
                        q.notify.complete(Err(err.clone()), &mut self.completions);
                    }
                }
            }
        }
    }

    /// Builds, places and starts the record (and big-write data) of a
    /// batch. `Err((_, Some(prepared)))` when the zone has no room for it.
    #[allow(clippy::result_large_err)]
    fn start_record(
        &mut self,
        n_txns: u32,
        prepared: Prepared,
    ) -> Result<Written, (StoreError, Option<Prepared>)> {
        let sector = self.sh.layout.sector;
        let meta_bytes = prepared.meta.encode_from_layer(&prepared.layer);
        let sectors = record_sectors(meta_bytes.len(), prepared.blocks.len(), sector);
        let Some(place) = self.ring.place(sectors) else {
            return Err((
                StoreError::NoSpace {
                    needed_bytes: sectors * sector,
                    free_bytes: (self.ring.zone_sectors - self.ring.used) * sector,
                },
                Some(prepared),
            ));
        };
        self.ring.advance(&place);
        let Prepared {
            meta,
            layer,
            blocks,
            big,
        } = prepared;
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = RecordId {
            seq,
            generation: self.sh.generation,
            nonce: self.sh.label.journal_nonce,
            durable_seq: self.durable_seq,
        };
        let refs: Vec<&[u8]> = blocks.iter().map(|(_, b)| &b[..]).collect();
        let (buf, data_at) = build_record(id, n_txns, &meta_bytes, &refs, sector);
        debug_assert_eq!(buf.len() as u64, sectors * sector, "record size as placed");
        let buf = Arc::new(buf);
        let bs = BLOCK_SIZE as usize;
        let joff = |pos: u64| self.sh.layout.journal_sector_offset(self.zone.start + pos);
        let needs_flush = !big.is_empty();
        let token = Token::Batch(seq).encode();
        let mut inflight = InFlight {
            seq,
            layer,
            blocks: HashMap::with_capacity(blocks.len()),
        };
        let mut ios = 0usize;
        let max = self.sh.settings.max_io_bytes.max(BLOCK_SIZE) as usize;
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
                self.io.push(
                    QueuedOp::Io(IoOp::Write {
                        offset: self.sh.layout.block_offset(w.phys) + at as u64,
                        buf: IoBuf::Bytes(data.slice(at..at + len)),
                        fua: false,
                    }),
                    token,
                );
                ios += 1;
                at += len;
            }
        }
        // Deferred blocks: a block big-written and then overwritten in the
        // same batch reads as the overwrite.
        let mut deferred = Vec::with_capacity(blocks.len());
        let record = (!blocks.is_empty()).then(|| shared_aligned_bytes(buf.clone()));
        for (i, (phys, content)) in blocks.iter().enumerate() {
            let at = data_at + i * bs;
            if let Some(r) = &record {
                inflight.blocks.insert(*phys, (r.clone(), at));
            }
            deferred.push((*phys, at, crc32c::crc32c(content)));
        }
        if let Some(pad_at) = place.pad_at {
            // Written with the record and acknowledged with it, so the
            // record is never durable without the pad that leads to it.
            self.io.push(
                QueuedOp::Io(IoOp::write(
                    joff(pad_at),
                    build_pad(id, sector),
                    !needs_flush,
                )),
                token,
            );
            ios += 1;
        }
        self.io.push(
            QueuedOp::Io(IoOp::Write {
                offset: joff(place.at),
                buf: IoBuf::Shared {
                    buf: buf.clone(),
                    start: 0,
                    len: buf.len(),
                },
                fua: !needs_flush,
            }),
            token,
        );
        ios += 1;
        let inflight = Arc::new(inflight);
        self.inflight.push(inflight.clone());
        self.sh.perf.inc(perf::L_JOURNAL_RECORDS, 1);
        self.sh.perf.inc(perf::L_JOURNAL_BYTES, buf.len() as u64);
        Ok(Written {
            seq,
            started: Instant::now(),
            pending_ios: ios,
            needs_flush,
            flushed: false,
            accepted: Vec::new(),
            buf,
            deferred,
            end_pos: place.end(self.ring.zone_sectors),
            consumed: place.consumed,
            allocs: meta.allocs,
            frees: meta.frees,
            stats: meta.stats,
            max_nid: meta.max_nid,
            inflight,
            counters: Default::default(),
        })
    }
}
