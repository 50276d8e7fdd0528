//! Turning logical transactions into physical changes.
//!
//! A [`Batch`] collects the transactions of one group commit. Each
//! operation is resolved against the database as the batch sees it (the
//! committed state plus the earlier transactions of the batch) into:
//!
//! - database operations with final values (so replaying them is
//!   idempotent), in a [`KvOverlay`];
//! - deferred blocks: full 4 KiB blocks with absolute homes, carried in the
//!   journal record and written home after the commit;
//! - big writes: data for newly allocated blocks, written before the
//!   journal record that points at them;
//! - frees, which the allocator holds until a checkpoint.
//!
//! Every transaction is atomic: on the first failing operation its changes
//! are undone and the batch goes on with the next transaction.

mod data;
mod ops;
mod view;

pub use view::{InFlight, View};

use std::collections::HashMap;

use bytes::Bytes;
use kalmar_common::encoding::Encode;

use crate::alloc::Extent;
use crate::error::StoreError;
use crate::journal::{BigCheck, BigRun, DeferredRun, RecordMeta};
use crate::keys;
use crate::layout::BLOCK_SIZE;
use crate::onode::StoreStats;
use crate::overlay::KvOverlay;
use crate::store::Shared;
use crate::txn::Transaction;

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
    deferred: Vec<(u64, Option<Box<[u8]>>)>,
    big_len: usize,
    allocs: Vec<Extent>,
    frees: Vec<Extent>,
    nid: u64,
    stats: StoreStats,
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
    /// The database as this batch reads it.
    pub(crate) view: View<'a>,
    /// Sequence number of the journal record this batch becomes.
    pub seq: u64,
    pub(crate) kv: KvOverlay,
    /// Deferred block contents by physical block.
    deferred: HashMap<u64, Box<[u8]>>,
    pub big: Vec<BigWrite>,
    /// Physical block -> (index in `big`, block index in its buffer).
    big_index: HashMap<u64, (usize, usize)>,
    pub next_nid: u64,
    nid_at_start: u64,
    pub stats: StoreStats,
    stats_at_start: StoreStats,
    undo: TxnUndo,
    pub counters: Counters,
    /// Transactions that succeeded.
    pub n_ok: u32,
}

/// What a prepared batch hands to the journal writer.
pub struct Prepared {
    pub meta: RecordMeta,
    /// The database changes, for later batches to read until published.
    pub kv: crate::overlay::FrozenKv,
    /// Deferred block contents in the order of `meta.deferred`.
    pub blocks: Vec<(u64, Box<[u8]>)>,
    pub big: Vec<BigWrite>,
}

impl<'a> Batch<'a> {
    pub(crate) fn new(
        sh: &'a Shared,
        view: View<'a>,
        seq: u64,
        next_nid: u64,
        stats: StoreStats,
    ) -> Batch<'a> {
        Batch {
            sh,
            view,
            seq,
            kv: KvOverlay::default(),
            deferred: HashMap::new(),
            big: Vec::new(),
            big_index: HashMap::new(),
            next_nid,
            nid_at_start: next_nid,
            stats,
            stats_at_start: stats,
            undo: TxnUndo::default(),
            counters: Counters::default(),
            n_ok: 0,
        }
    }

    /// Bytes the journal record would take so far (approximate, upper).
    pub fn record_bytes(&self) -> u64 {
        self.kv.bytes() as u64 + 256 + self.deferred.len() as u64 * (BLOCK_SIZE + 12)
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
            nid: self.next_nid,
            stats: self.stats,
            counters: self.counters,
            ..TxnUndo::default()
        };
    }

    /// Keeps the transaction just prepared.
    pub fn keep(&mut self) {
        self.kv.commit();
        let frees = std::mem::take(&mut self.undo.frees);
        if !frees.is_empty() {
            let mut a = self.sh.alloc.lock();
            for e in frees {
                a.free(e, self.seq);
            }
        }
        self.undo = TxnUndo::default();
        self.n_ok += 1;
    }

    /// Undoes the current transaction (also used when a batch is cut).
    pub fn rollback(&mut self) {
        self.kv.rollback();
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
        }
        self.next_nid = u.nid;
        self.stats = u.stats;
        self.counters = u.counters;
    }

    /// Allocates `n` blocks for the current transaction.
    fn allocate(&mut self, n: u64) -> Result<Vec<Extent>, StoreError> {
        let es = self.sh.alloc.lock().allocate(n)?;
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

    fn set_deferred(&mut self, phys: u64, content: Box<[u8]>) {
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

    /// Ends the batch: adds the allocator, nid and stats records and
    /// returns the record contents.
    pub fn finish(mut self) -> Prepared {
        {
            let mut a = self.sh.alloc.lock();
            for seg in a.take_dirty() {
                self.kv.put(keys::bitmap_segment(seg), a.segment_bytes(seg));
            }
        }
        if self.next_nid != self.nid_at_start {
            self.kv.put(
                keys::STORE_NEXT_NID.to_vec(),
                self.next_nid.to_le_bytes().to_vec(),
            );
        }
        if self.stats != self.stats_at_start {
            self.kv
                .put(keys::STORE_STATS.to_vec(), self.stats.to_bytes());
        }
        self.kv.commit();
        let mut blocks: Vec<(u64, Box<[u8]>)> = self.deferred.into_iter().collect();
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
                check: BigCheck::Blocks(w.crcs.clone()),
            })
            .collect();
        let kv = self.kv.freeze();
        Prepared {
            meta: RecordMeta {
                kv_ops: kv.to_ops(),
                deferred: runs,
                big: big_runs,
            },
            kv,
            blocks,
            big: self.big,
        }
    }
}
