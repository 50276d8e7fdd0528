//! Turning logical transactions into physical changes.
//!
//! A [`Batch`] collects the transactions of one group commit. Each
//! operation is resolved against the metadata as the batch sees it (the
//! committed state plus the earlier transactions of the batch) into:
//!
//! - database operations with final values, in a [`KvOverlay`];
//! - deferred blocks: full 4 KiB blocks with absolute homes, carried in the
//!   journal record and written home after the commit;
//! - big writes: data for newly allocated blocks, written before the
//!   journal record that points at them;
//! - allocations and frees, which the allocator commits when the record is
//!   durable (frees stay unusable until a checkpoint covers them);
//! - changes of the store's object and byte counts.
//!
//! Every transaction is atomic: on the first failing operation its changes
//! are undone and the batch goes on with the next transaction.

mod data;
mod ops;
mod view;

pub use view::{InFlight, View};

use std::collections::HashMap;

use bytes::Bytes;

use crate::alloc::Extent;
use crate::collog::LogMark;
use crate::error::StoreError;
use crate::journal::{BigRun, DeferredRun, RecordMeta, StatsDelta};
use crate::layer::Layer;
use crate::layout::BLOCK_SIZE;
use crate::overlay::{DataOverlay, KvOverlay};
use crate::store::Shared;
use crate::txn::Transaction;
use crate::types::CollectionId;

/// Data for newly allocated blocks `[phys, phys + buf.len() / BLOCK_SIZE)`.
pub struct BigWrite {
    pub phys: u64,
    /// Aligned: the caller's data itself when it was, else a copy.
    pub buf: Bytes,
    /// crc32c of each block of `buf`.
    pub crcs: Vec<u32>,
}

#[derive(Default)]
struct TxnUndo {
    deferred: Vec<(u64, Option<Bytes>)>,
    big_len: usize,
    allocs: Vec<Extent>,
    frees: Vec<Extent>,
    stats: StatsDelta,
    max_nid: u64,
    deferred_bytes: u64,
    counters: Counters,
}

/// Work counted for the perf counters.
#[derive(Default, Clone, Copy)]
pub struct Counters {
    pub bytes_written: u64,
    pub deferred_ops: u64,
    pub deferred_bytes: u64,
    pub big_ops: u64,
    pub big_bytes: u64,
    pub allocations: u64,
}

/// One group commit being prepared.
pub struct Batch<'a> {
    pub(crate) sh: &'a Shared,
    /// Committed blocks of this engine not yet written home.
    pub(crate) overlay: &'a DataOverlay,
    /// The metadata as this batch reads it.
    pub(crate) view: View<'a>,
    pub(crate) kv: KvOverlay,
    /// Deferred block contents by physical block.
    deferred: HashMap<u64, Bytes>,
    pub big: Vec<BigWrite>,
    /// Physical block -> (index in `big`, block index in its buffer).
    big_index: HashMap<u64, (usize, usize)>,
    allocs: Vec<Extent>,
    frees: Vec<Extent>,
    pub stats: StatsDelta,
    max_nid: u64,
    undo: TxnUndo,
    pub counters: Counters,
    /// Transactions that succeeded.
    pub n_ok: u32,
    /// Each collection log's marks as of the published batches (filled on
    /// first use; see [`crate::collog`]).
    pub(crate) log_marks: &'a mut HashMap<CollectionId, LogMark>,
    /// Collections this batch found to exist (each op of a PG write checks
    /// its collection: one lookup per batch instead). Forgotten when a
    /// collection is removed and on rollback, which may undo a creation.
    pub(crate) colls_seen: Vec<CollectionId>,
}

/// Collections remembered by a batch at most.
const MAX_COLLS_SEEN: usize = 64;

/// What a prepared batch hands to the journal writer.
pub struct Prepared {
    /// The record's metadata but its database and log changes (empty
    /// here: they are read from `layer` when the record is encoded).
    pub meta: RecordMeta,
    /// The metadata changes, for later batches (until the record is
    /// durable) and then for readers.
    pub layer: Layer,
    /// Deferred block contents in the order of `meta.deferred`.
    pub blocks: Vec<(u64, Bytes)>,
    pub big: Vec<BigWrite>,
}

impl<'a> Batch<'a> {
    pub(crate) fn new(
        sh: &'a Shared,
        overlay: &'a DataOverlay,
        view: View<'a>,
        log_marks: &'a mut HashMap<CollectionId, LogMark>,
    ) -> Batch<'a> {
        Batch {
            log_marks,
            sh,
            overlay,
            view,
            kv: KvOverlay::default(),
            deferred: HashMap::new(),
            big: Vec::new(),
            big_index: HashMap::new(),
            allocs: Vec::new(),
            frees: Vec::new(),
            stats: StatsDelta::default(),
            max_nid: 0,
            undo: TxnUndo::default(),
            counters: Counters::default(),
            n_ok: 0,
            colls_seen: Vec::new(),
        }
    }

    /// Remembers that collection `c` exists (see `colls_seen`).
    pub(crate) fn saw_coll(&mut self, c: &CollectionId) {
        if self.colls_seen.len() >= MAX_COLLS_SEEN {
            self.colls_seen.clear();
        }
        self.colls_seen.push(c.clone());
    }

    /// Bytes the journal record would take so far (approximate, upper).
    pub fn record_bytes(&self) -> u64 {
        self.kv.bytes() as u64
            + crate::journal::cost::RECORD_BASE_BYTES
            + self.deferred.len() as u64 * (BLOCK_SIZE + 12)
    }

    /// Applies `txn` to the batch. On error its changes are already
    /// undone; on success the caller decides with [`Batch::keep`] or
    /// [`Batch::rollback`] (e.g. when the record would grow too large).
    pub fn prepare(&mut self, txn: &Transaction) -> Result<(), StoreError> {
        self.begin();
        let res = txn.ops.iter().try_for_each(|op| self.apply_op(op));
        if res.is_err() {
            self.rollback();
        }
        res
    }

    fn begin(&mut self) {
        self.kv.begin();
        self.undo = TxnUndo {
            big_len: self.big.len(),
            stats: self.stats,
            max_nid: self.max_nid,
            counters: self.counters,
            ..TxnUndo::default()
        };
    }

    /// Keeps the transaction just prepared.
    pub fn keep(&mut self) {
        self.kv.commit();
        let u = std::mem::take(&mut self.undo);
        self.allocs.extend(u.allocs);
        self.frees.extend(u.frees);
        self.n_ok += 1;
    }

    /// Undoes the current transaction (also used when a batch is cut).
    pub fn rollback(&mut self) {
        self.kv.rollback();
        self.colls_seen.clear();
        let u = std::mem::take(&mut self.undo);
        for (phys, prev) in u.deferred.into_iter().rev() {
            match prev {
                Some(b) => {
                    self.deferred.insert(phys, b);
                }
                None => {
                    self.deferred.remove(&phys);
                }
            }
        }
        for w in self.big.drain(u.big_len..) {
            for i in 0..(w.buf.len() as u64 / BLOCK_SIZE) {
                self.big_index.remove(&(w.phys + i));
            }
        }
        if !u.allocs.is_empty() {
            let mut a = self.sh.alloc.lock();
            for e in u.allocs {
                a.unallocate(e);
            }
            self.sh.sync_alloc_stats(&a);
        }
        self.stats = u.stats;
        self.max_nid = u.max_nid;
        self.counters = u.counters;
    }

    /// Undoes the whole batch (the store failed while preparing it).
    pub fn rollback_all(&mut self) {
        self.rollback();
        let mut a = self.sh.alloc.lock();
        for e in self.allocs.drain(..) {
            a.unallocate(e);
        }
        self.sh.sync_alloc_stats(&a);
    }

    /// The marks of collection `c`'s log as this batch sees it: the
    /// published marks, then the batches in flight, then this one.
    pub(crate) fn log_mark(&mut self, c: &CollectionId) -> Result<LogMark, StoreError> {
        let base = match self.log_marks.get(c) {
            Some(m) => *m,
            None => {
                let persisted = crate::collog::read_persisted(self.view.base, c)?;
                let log = crate::collog::apply_deltas(
                    persisted,
                    self.view.committed.iter().rev().filter_map(|l| l.log(c)),
                );
                self.log_marks.insert(c.clone(), log.mark);
                log.mark
            }
        };
        let mut m = base;
        for l in self.view.inflight.iter() {
            if let Some(d) = l.layer.log(c) {
                m = d.mark_over(m);
            }
        }
        if let Some(d) = self.kv.log(c) {
            m = d.mark_over(m);
        }
        Ok(m)
    }

    /// A new object id (ids skipped by a rolled-back transaction are never
    /// reused: they only need to be unique).
    fn new_nid(&mut self) -> u64 {
        let nid = self
            .sh
            .next_nid
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.max_nid = self.max_nid.max(nid);
        nid
    }

    /// Allocates `n` blocks for the current transaction.
    fn allocate(&mut self, n: u64) -> Result<Vec<Extent>, StoreError> {
        let es = {
            let mut a = self.sh.alloc.lock();
            let es = a.allocate(n)?;
            self.sh.sync_alloc_stats(&a);
            es
        };
        self.undo.allocs.extend_from_slice(&es);
        self.counters.allocations += 1;
        Ok(es)
    }

    /// Frees a block when the current transaction commits.
    fn free_block(&mut self, phys: u64) {
        match self.undo.frees.last_mut() {
            Some(e) if e.start + e.len == phys => e.len += 1,
            _ => self.undo.frees.push(Extent {
                start: phys,
                len: 1,
            }),
        }
    }

    /// `content`: one block, often a slice of the caller's data (no copy
    /// until the journal record is built).
    fn set_deferred(&mut self, phys: u64, content: Bytes) {
        let prev = self.deferred.insert(phys, content);
        self.undo.deferred.push((phys, prev));
    }

    fn push_big(&mut self, w: BigWrite) {
        let idx = self.big.len();
        for i in 0..(w.buf.len() / BLOCK_SIZE as usize) {
            self.big_index.insert(w.phys + i as u64, (idx, i));
        }
        self.big.push(w);
    }

    /// Content of a block written earlier in this batch or in a batch not
    /// yet published, if any.
    fn batch_block(&self, phys: u64) -> Option<&[u8]> {
        if let Some(b) = self.deferred.get(&phys) {
            return Some(b);
        }
        if !self.big_index.contains_key(&phys) {
            return self.view.block(phys);
        }
        let &(i, j) = self.big_index.get(&phys)?;
        let bs = BLOCK_SIZE as usize;
        Some(&self.big[i].buf[j * bs..(j + 1) * bs])
    }

    /// Ends the batch: the record's metadata and the batch's changes.
    pub fn finish(mut self) -> Prepared {
        self.kv.commit();
        let mut blocks: Vec<(u64, Bytes)> = self.deferred.into_iter().collect();
        blocks.sort_by_key(|(p, _)| *p);
        let mut runs: Vec<DeferredRun> = Vec::new();
        for (p, _) in &blocks {
            match runs.last_mut() {
                Some(r) if r.phys + r.blocks as u64 == *p => r.blocks += 1,
                _ => runs.push(DeferredRun {
                    phys: *p,
                    blocks: 1,
                }),
            }
        }
        let big_runs = self
            .big
            .iter()
            .map(|w| BigRun {
                phys: w.phys,
                blocks: (w.buf.len() as u64 / BLOCK_SIZE) as u32,
                crcs: w.crcs.clone(),
            })
            .collect();
        let layer = self.kv.freeze();
        Prepared {
            // The database and log changes stay in the layer; the record
            // is encoded from it (`RecordMeta::encode_from_layer`).
            meta: RecordMeta {
                kv_ops: Vec::new(),
                logs: Vec::new(),
                deferred: runs,
                big: big_runs,
                allocs: self.allocs,
                frees: self.frees,
                stats: self.stats,
                max_nid: self.max_nid,
            },
            layer,
            blocks,
            big: self.big,
        }
    }
}
