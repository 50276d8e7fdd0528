//! Reads on the engine's own device queue, for the thread that drives the
//! engine (an OSD shard): the read is planned against the committed
//! metadata right away, its device reads join the queue the commits use,
//! and the data comes back with the engine's other completions. No reader
//! thread, no hand-off.
//!
//! Read slots are reused, with their plans and buffers, so a steady stream
//! of reads allocates only the device buffers (from the aligned cache).
//! A device error fails the read (EIO to its caller), never the store:
//! nothing was written.

use std::time::Instant;

use bytes::Bytes;

use super::{CommitEngine, Token};
use crate::device::{AlignedBuf, IoDone, QueuedOp};
use crate::error::{DeviceError, StoreError};
use crate::read_plan::{ReadEnd, ReadPlan};
use crate::types::{CollectionId, ObjectId};

/// Most device reads one read may need: the run index lives in the low
/// bits of the I/O token.
const RUN_BITS: u32 = 24;

/// A read with device I/O in flight.
#[derive(Default)]
pub(crate) struct ReadSlot {
    /// The caller's token; `None` while the slot is free.
    token: Option<u64>,
    coll: Option<CollectionId>,
    oid: Option<ObjectId>,
    off: u64,
    len: u64,
    attempt: u32,
    started: Option<Instant>,
    plan: ReadPlan,
    /// One buffer per run of the plan, as they come back.
    bufs: Vec<Option<AlignedBuf>>,
    pending: usize,
    failed: Option<DeviceError>,
}

/// The engine's reads in flight and their answers.
#[derive(Default)]
pub(crate) struct Reads {
    slots: Vec<ReadSlot>,
    free: Vec<u32>,
    pub done: Vec<(u64, Result<Bytes, StoreError>)>,
    /// The engine stopped: every read gets this answer.
    closed: Option<StoreError>,
}

impl Reads {
    /// Reads waiting for their device reads.
    pub fn in_flight(&self) -> usize {
        self.slots.iter().filter(|s| s.token.is_some()).count()
    }
}

/// The I/O token of run `run` of read slot `slot`.
pub(crate) fn io_token(slot: u32, run: usize) -> u64 {
    debug_assert!(run < 1 << RUN_BITS, "a read needs too many device reads");
    Token::Read((u64::from(slot) << RUN_BITS) | run as u64).encode()
}

fn split(v: u64) -> (u32, usize) {
    ((v >> RUN_BITS) as u32, (v & ((1 << RUN_BITS) - 1)) as usize)
}

impl CommitEngine {
    /// Reads `len` bytes at `off` of `c/o` as committed (durable) now,
    /// like [`crate::ObjectStore::read`]. Returns the answer when no device
    /// read is needed (holes, blocks not yet written home, errors);
    /// otherwise the read is started and its answer comes with `token`
    /// from [`CommitEngine::take_read_completions`] after a later poll.
    /// `c` must be placed on this engine.
    pub fn read(
        &mut self,
        c: &CollectionId,
        o: &ObjectId,
        off: u64,
        len: u64,
        token: u64,
    ) -> Option<Result<Bytes, StoreError>> {
        debug_assert_eq!(
            self.sh.engine_of(c),
            self.es.zone,
            "read on the wrong engine"
        );
        if let Some(e) = &self.reads.closed {
            return Some(Err(e.clone()));
        }
        let started = Instant::now();
        let i = match self.reads.free.pop() {
            Some(i) => i,
            None => {
                self.reads.slots.push(ReadSlot::default());
                (self.reads.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.reads.slots[i as usize];
        slot.token = Some(token);
        slot.off = off;
        slot.len = len;
        slot.attempt = 0;
        slot.started = Some(started);
        match self.start_read(i, c, o) {
            Some(r) => {
                self.free_read(i);
                Some(r)
            }
            None => {
                let slot = &mut self.reads.slots[i as usize];
                slot.coll = Some(c.clone());
                slot.oid = Some(o.clone());
                None
            }
        }
    }

    /// Answers of [`CommitEngine::read`] since the last call.
    pub fn take_read_completions(&mut self, out: &mut Vec<(u64, Result<Bytes, StoreError>)>) {
        out.append(&mut self.reads.done);
    }

    /// Answers every read in flight with `e`, and every later one. Their
    /// device reads still come back to the queue (which owns the buffers)
    /// and are ignored: no slot is reused after this.
    pub(crate) fn fail_reads(&mut self, e: &StoreError) {
        self.reads.closed.get_or_insert_with(|| e.clone());
        for slot in &mut self.reads.slots {
            if let Some(token) = slot.token.take() {
                self.reads.done.push((token, Err(e.clone())));
            }
        }
    }

    /// Plans read slot `i` and queues its device reads; the answer when
    /// there is nothing to read from the device.
    fn start_read(
        &mut self,
        i: u32,
        c: &CollectionId,
        o: &ObjectId,
    ) -> Option<Result<Bytes, StoreError>> {
        let slot = &mut self.reads.slots[i as usize];
        if let Err(e) = self.sh.plan_read(c, o, slot.off, slot.len, &mut slot.plan) {
            return Some(Err(e));
        }
        if slot.plan.runs() == 0 {
            let mut attempt = slot.attempt;
            let started = slot_started(slot);
            return match self.sh.finish_read(c, o, &slot.plan, &mut [], &mut attempt) {
                ReadEnd::Done(r) => Some(self.counted(r, started)),
                // Overlay blocks are checked when published: unreachable,
                // but a retry is harmless.
                ReadEnd::Retry => self.start_read(i, c, o),
            };
        }
        slot.bufs.clear();
        slot.bufs.resize_with(slot.plan.runs(), || None);
        slot.pending = slot.plan.runs();
        slot.failed = None;
        for (run, op) in slot.plan.io_ops(&self.sh.layout).enumerate() {
            self.io.push(QueuedOp::Io(op), io_token(i, run));
        }
        if let Err(e) = self.io.submit() {
            self.sh.poison(&format!("submitting read I/O failed: {e}"));
        }
        None
    }

    fn counted(&self, r: Result<Bytes, StoreError>, started: Instant) -> Result<Bytes, StoreError> {
        if let Ok(b) = &r {
            self.sh.count_read(b, started);
        }
        r
    }

    fn free_read(&mut self, i: u32) {
        let slot = &mut self.reads.slots[i as usize];
        slot.token = None;
        slot.coll = None;
        slot.oid = None;
        slot.bufs.clear();
        self.reads.free.push(i);
    }

    /// A device read of a read slot finished (from the engine's reap).
    pub(crate) fn read_io_done(&mut self, v: u64, d: IoDone) {
        let (i, run) = split(v);
        let Some(slot) = self.reads.slots.get_mut(i as usize) else {
            return;
        };
        if slot.token.is_none() {
            return;
        }
        match d.result {
            Ok(()) => {
                if let Some(b) = slot.bufs.get_mut(run) {
                    *b = d.op.into_io().and_then(|op| op.into_read_buf());
                }
            }
            Err(e) => slot.failed = Some(e),
        }
        slot.pending = slot.pending.saturating_sub(1);
        if slot.pending > 0 {
            return;
        }
        let token = slot.token.unwrap_or_default();
        let started = slot_started(slot);
        let (Some(c), Some(o)) = (slot.coll.take(), slot.oid.take()) else {
            return;
        };
        let answer = match slot.failed.take() {
            Some(e) => Some(Err(StoreError::Device(e))),
            None => {
                let mut attempt = slot.attempt;
                let end = self
                    .sh
                    .finish_read(&c, &o, &slot.plan, &mut slot.bufs, &mut attempt);
                slot.attempt = attempt;
                match end {
                    ReadEnd::Done(r) => Some(self.counted(r, started)),
                    ReadEnd::Retry => self.start_read(i, &c, &o),
                }
            }
        };
        match answer {
            Some(r) => {
                self.free_read(i);
                self.reads.done.push((token, r));
            }
            None => {
                // Retried: its device reads are queued again.
                let slot = &mut self.reads.slots[i as usize];
                slot.coll = Some(c);
                slot.oid = Some(o);
            }
        }
    }
}

fn slot_started(slot: &ReadSlot) -> Instant {
    slot.started.unwrap_or_else(Instant::now)
}
