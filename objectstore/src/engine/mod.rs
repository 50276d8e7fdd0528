//! A commit engine: the single-threaded commit pipeline of one journal
//! zone.
//!
//! Each engine owns its zone of the journal, its device queue
//! ([`crate::device::IoQueue`]) and the collections placed on it; one
//! thread drives it by calling [`CommitEngine::poll`] whenever something
//! happened (a submission, an I/O completion, a checkpoint message) and
//! otherwise sleeps on its descriptors ([`CommitEngine::event_fds`]). No
//! step blocks: a poll prepares queued transactions into a batch, writes
//! its journal record, reaps finished I/O, publishes durable batches in
//! order, writes journaled blocks home, and answers the checkpointer.
//!
//! The life of a batch:
//!
//! 1. **prepare** ([`write`]): queued transactions are resolved against
//!    the engine's metadata (batches still in flight, committed layers,
//!    the database) into one journal record;
//! 2. **write**: the record goes out with FUA when it carries all the
//!    data; big writes go out beside it and are made durable by one flush
//!    before anything is acknowledged;
//! 3. **publish** ([`publish`]): once durable, in order, the batch's
//!    changes join the engine's committed layer and the data overlay, its
//!    allocations and frees reach the allocator, its transactions are
//!    acknowledged;
//! 4. **apply** ([`apply`]): journaled blocks go to their homes in sorted
//!    bursts; a checkpoint (see [`crate::checkpoint`]) then trims the zone.
//!
//! Up to `commit_pipeline_depth` batches are between 2 and 3 at once.
//! Transactions commit in submission order. Admission is bounded by
//! `max_queued_txns` permits, taken before submitting (never an error);
//! a failure of the device or the database poisons the store.

mod apply;
mod publish;
mod read;
mod write;

use std::collections::VecDeque;
use std::os::unix::io::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::completion::Completer;
use crate::device::{IoDone, IoQueue};
use crate::error::StoreError;
use crate::journal::{JournalRing, StatsDelta};
use crate::layer::Layer;
use crate::layout::ZoneRange;
use crate::overlay::DataOverlay;
use crate::prepare::InFlight;
use crate::store::Shared;
use crate::txn::Transaction;

pub(crate) use apply::ApplyState;
pub(crate) use publish::Written;

/// How a submitter learns that its transaction committed.
pub enum Notify {
    /// Collected by the driver with [`CommitEngine::take_completions`].
    Token(u64),
    /// Resolves a [`crate::Commit`].
    Completer(Completer<()>),
}

impl Notify {
    fn complete(self, res: Result<(), StoreError>, out: &mut Vec<(u64, Result<(), StoreError>)>) {
        match self {
            Notify::Token(t) => out.push((t, res)),
            Notify::Completer(c) => c.complete(res),
        }
    }
}

/// A transaction on its way through an engine.
pub(crate) struct Queued {
    pub txn: Transaction,
    pub notify: Notify,
    pub queued_at: Instant,
    /// Held until the transaction is answered.
    pub permit: Option<OwnedSemaphorePermit>,
    /// Already retried once after a checkpoint freed space.
    pub space_retried: bool,
}

/// The committed metadata of an engine not yet in the database.
#[derive(Default)]
pub(crate) struct Committed {
    /// Changes of batches published since the last seal.
    pub active: Layer,
    /// Sealed layers being written by a checkpoint, oldest first.
    pub sealed: VecDeque<Arc<Layer>>,
}

impl Committed {
    /// Newest first.
    pub fn layers(&self) -> Vec<&Layer> {
        let mut v = vec![&self.active];
        v.extend(self.sealed.iter().rev().map(|l| l.as_ref()));
        v
    }
}

/// What a checkpoint learns from an engine when it seals.
#[derive(Clone)]
pub(crate) struct SealReport {
    pub zone: usize,
    /// Every record up to this one has its metadata in `layer`.
    pub sealed_seq: u64,
    /// Every record up to this one has its data home: the zone may be
    /// trimmed to `applied_end`.
    pub applied_seq: u64,
    pub applied_end: u64,
    /// Zone sectors the records up to `applied_seq` use (since the last
    /// checkpoint).
    pub applied_consumed: u64,
    pub layer: Arc<Layer>,
    /// Counter changes of the records in `layer`.
    pub stats: StatsDelta,
}

/// Messages between the checkpointer and an engine.
#[derive(Default)]
pub(crate) struct CheckpointLink {
    /// The checkpoint round the engine must seal for.
    pub seal_round: u64,
    /// Sectors of the zone a finished checkpoint released.
    pub released: u64,
    /// A checkpoint finished (wakes engines waiting for room or space).
    pub finished_round: u64,
}

/// The part of an engine other threads reach.
pub(crate) struct EngineShared {
    pub zone: usize,
    pub committed: RwLock<Committed>,
    pub overlay: DataOverlay,
    /// Admission permits: `max_queued_txns` transactions in the engine.
    pub admission: Arc<Semaphore>,
    /// Submissions from other threads.
    pub inbox: Mutex<Inbox>,
    pub link: Mutex<CheckpointLink>,
    /// Wakes the engine's driver: inbox or checkpoint message.
    pub wake: crate::eventfd::EventFd,
}

impl EngineShared {
    pub fn new(zone: usize, max_queued: usize) -> Result<EngineShared, StoreError> {
        Ok(EngineShared {
            zone,
            committed: RwLock::new(Committed::default()),
            overlay: DataOverlay::default(),
            admission: Arc::new(Semaphore::new(max_queued.max(1))),
            inbox: Mutex::new(Inbox::default()),
            link: Mutex::new(CheckpointLink::default()),
            wake: crate::eventfd::EventFd::new()
                .map_err(|e| StoreError::Poisoned(format!("eventfd: {e}")))?,
        })
    }

    /// Queues a transaction from another thread and wakes the driver; once
    /// the engine is gone, answers it with the reason at once.
    pub fn push(&self, q: Queued) {
        self.push_all(std::iter::once(q));
    }

    /// Queues several transactions under one lock, so the driver finds
    /// them together and prepares them as one batch.
    pub fn push_all(&self, qs: impl IntoIterator<Item = Queued>) {
        let mut inbox = self.inbox.lock();
        if let Some(e) = inbox.closed.clone() {
            drop(inbox);
            for q in qs {
                q.notify.complete(Err(e.clone()), &mut Vec::new());
            }
            return;
        }
        inbox.items.extend(qs);
        drop(inbox);
        self.wake.signal();
    }
}

/// Transactions from other threads, until the engine stops.
#[derive(Default)]
pub(crate) struct Inbox {
    pub items: Vec<Queued>,
    /// Set when the engine stopped: later submissions get this error.
    pub closed: Option<StoreError>,
}

/// Where an engine starts: the state of its zone after replay.
pub(crate) struct ZoneState {
    pub range: ZoneRange,
    pub head: u64,
    pub used: u64,
    pub next_seq: u64,
    /// Records up to here are in the database (see the checkpointer).
    pub sealed_seq: u64,
}

/// What the I/O tokens of an engine's queue mean (top byte: the kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token {
    /// A write of batch `seq` (record, pad or big data).
    Batch(u64),
    /// A flush covering the batches up to `seq`.
    Flush(u64),
    /// Home writes of apply burst `id`.
    Apply(u64),
    /// A device read of a client read (see [`read`]).
    Read(u64),
}

impl Token {
    const SHIFT: u32 = 56;

    pub fn encode(self) -> u64 {
        let (k, v) = match self {
            Token::Batch(s) => (1u64, s),
            Token::Flush(s) => (2, s),
            Token::Apply(i) => (3, i),
            Token::Read(v) => (4, v),
        };
        debug_assert!(v < 1 << Self::SHIFT, "token value overflows");
        k << Self::SHIFT | v
    }

    pub fn decode(t: u64) -> Option<Token> {
        let v = t & ((1 << Self::SHIFT) - 1);
        match t >> Self::SHIFT {
            1 => Some(Token::Batch(v)),
            2 => Some(Token::Flush(v)),
            3 => Some(Token::Apply(v)),
            4 => Some(Token::Read(v)),
            _ => None,
        }
    }
}

impl Drop for CommitEngine {
    fn drop(&mut self) {
        let e = match self.sh.poisoned() {
            Some(reason) => StoreError::Poisoned(reason),
            None => StoreError::Unmounted,
        };
        self.close(e);
    }
}

/// One zone's commit pipeline; see the module documentation.
pub struct CommitEngine {
    pub(crate) sh: Arc<Shared>,
    pub(crate) es: Arc<EngineShared>,
    pub(crate) zone: ZoneRange,
    pub(crate) io: Box<dyn IoQueue>,
    pub(crate) ring: JournalRing,
    pub(crate) next_seq: u64,
    /// Every record up to this one is durable.
    pub(crate) durable_seq: u64,
    /// Admitted, not yet prepared.
    pub(crate) queue: VecDeque<Queued>,
    /// Written batches, oldest first, until published.
    pub(crate) writing: VecDeque<Written>,
    /// Their metadata, for the batches prepared after them.
    pub(crate) inflight: Vec<Arc<InFlight>>,
    /// A flush in flight covering batches up to this seq, and its start.
    pub(crate) flushing: Option<(u64, Instant)>,
    pub(crate) apply: ApplyState,
    /// Record seq whose metadata the database has (replayed or sealed).
    pub(crate) sealed_seq: u64,
    /// Seq of the last published record.
    pub(crate) published_seq: u64,
    /// Counter changes published since the last seal.
    pub(crate) stats_unsealed: StatsDelta,
    /// The last checkpoint round answered / seen finished.
    pub(crate) sealed_round: u64,
    pub(crate) finished_round: u64,
    /// Preparing waits for a checkpoint (no journal room, or a
    /// transaction waits for freed space).
    pub(crate) waiting_checkpoint: Option<u64>,
    pub(crate) completions: Vec<(u64, Result<(), StoreError>)>,
    pub(crate) done: Vec<IoDone>,
    /// Write journaled blocks home as soon as they are published (inline
    /// driving, and unmount).
    pub(crate) draining: bool,
    /// Each collection log's marks as of the published batches, for the
    /// collections used since mount (see [`crate::collog`]).
    pub(crate) log_marks:
        std::collections::HashMap<crate::types::CollectionId, crate::collog::LogMark>,
    /// Reads on this engine's queue (see [`read`]).
    pub(crate) reads: read::Reads,
}

impl CommitEngine {
    pub(crate) fn new(
        sh: Arc<Shared>,
        es: Arc<EngineShared>,
        io: Box<dyn IoQueue>,
        z: ZoneState,
    ) -> CommitEngine {
        let last = z.next_seq.saturating_sub(1);
        CommitEngine {
            sh,
            es,
            zone: z.range,
            io,
            ring: JournalRing {
                zone_sectors: z.range.sectors,
                head: z.head,
                used: z.used,
            },
            next_seq: z.next_seq,
            durable_seq: last,
            queue: VecDeque::new(),
            writing: VecDeque::new(),
            inflight: Vec::new(),
            flushing: None,
            apply: ApplyState::new(last, z.head),
            sealed_seq: z.sealed_seq,
            published_seq: last,
            stats_unsealed: StatsDelta::default(),
            sealed_round: 0,
            finished_round: 0,
            waiting_checkpoint: None,
            completions: Vec::new(),
            done: Vec::new(),
            draining: false,
            log_marks: Default::default(),
            reads: Default::default(),
        }
    }

    /// From now on, journaled blocks go home right after their commit.
    pub fn set_draining(&mut self) {
        self.draining = true;
    }

    /// Device operations started and not yet reaped.
    pub fn io_in_flight(&self) -> usize {
        self.io.in_flight()
    }

    /// The engine's index (its journal zone and the collections placed
    /// on it).
    pub fn index(&self) -> usize {
        self.es.zone
    }

    /// The largest journal record this engine writes: the setting, at
    /// most a quarter of its zone so that a checkpoint always makes room
    /// for one. A transaction whose record would be larger is refused
    /// with `TooLarge`.
    pub fn max_record_bytes(&self) -> u64 {
        self.sh
            .settings
            .max_record_bytes
            .min(self.zone.sectors * self.sh.layout.sector / 4)
    }

    /// Queues a transaction from the driving thread. Take the permit from
    /// [`CommitEngine::admission`] first, before changing any state that
    /// depends on the transaction: an admitted transaction is never
    /// refused for load.
    pub fn submit(&mut self, txn: Transaction, notify: Notify, permit: OwnedSemaphorePermit) {
        self.queue.push_back(Queued {
            txn,
            notify,
            queued_at: Instant::now(),
            permit: Some(permit),
            space_retried: false,
        });
    }

    /// The engine's admission permits (see [`CommitEngine::submit`]).
    pub fn admission(&self) -> Arc<Semaphore> {
        self.es.admission.clone()
    }

    /// Answers of [`Notify::Token`] submissions since the last call.
    pub fn take_completions(&mut self, out: &mut Vec<(u64, Result<(), StoreError>)>) {
        out.append(&mut self.completions);
    }

    /// Descriptors that become readable when the engine has work: its wake
    /// eventfd, and its device queue's (if completions are asynchronous).
    pub fn event_fds(&self) -> (RawFd, Option<RawFd>) {
        (self.es.wake.fd(), self.io.event_fd())
    }

    /// When the engine must be polled even if nothing else happens.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.apply.deadline(&self.sh.settings)
    }

    /// When the device holds finished operations back without an event
    /// (a simulated device's delays): poll again after this long, on the
    /// caller's clock.
    pub fn io_retry_after(&self) -> Option<Duration> {
        self.io.retry_after()
    }

    /// Nothing queued, in flight or waiting to be written home.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
            && self.writing.is_empty()
            && self.apply.is_idle()
            && self.reads.in_flight() == 0
            && self.es.inbox.lock().items.is_empty()
    }

    /// Does all the work possible now without blocking; see the module
    /// documentation. Returns whether anything happened.
    pub fn poll(&mut self) -> bool {
        let mut progress = false;
        self.es.wake.clear();
        {
            let mut inbox = self.es.inbox.lock();
            if !inbox.items.is_empty() {
                progress = true;
                self.queue.extend(inbox.items.drain(..));
            }
        }
        if let Some(reason) = self.sh.poisoned() {
            progress |= self.fail_everything(&reason);
            return progress;
        }
        progress |= self.checkpoint_messages();
        progress |= self.reap();
        if let Some(reason) = self.sh.poisoned() {
            // An I/O just failed: nothing written may be acknowledged.
            self.fail_everything(&reason);
            return true;
        }
        progress |= self.publish_durable();
        progress |= self.apply_step(self.draining);
        progress |= self.write_batches();
        self.maybe_want_checkpoint();
        if let Err(e) = self.io.submit() {
            self.sh
                .poison(&format!("submitting journal I/O failed: {e}"));
        }
        progress
    }

    /// Reaps finished I/O into the batches and apply bursts they belong to.
    fn reap(&mut self) -> bool {
        let mut done = std::mem::take(&mut self.done);
        self.io.reap(&mut done);
        let any = !done.is_empty();
        for d in done.drain(..) {
            let token = Token::decode(d.token);
            if let Some(Token::Read(v)) = token {
                // A failed read fails that read only.
                self.read_io_done(v, d);
                continue;
            }
            if let Err(e) = &d.result {
                self.sh.poison(&format!("journal or data I/O failed: {e}"));
            }
            match token {
                Some(Token::Batch(seq)) => {
                    if let Some(w) = self.writing.iter_mut().find(|w| w.seq == seq) {
                        w.pending_ios = w.pending_ios.saturating_sub(1);
                    }
                }
                Some(Token::Flush(seq)) => {
                    if let Some((_, started)) = self.flushing.take() {
                        self.sh
                            .perf
                            .tinc(crate::perf::L_JOURNAL_FLUSH_LAT, started.elapsed());
                    }
                    for w in self.writing.iter_mut().filter(|w| w.seq <= seq) {
                        w.flushed = true;
                    }
                }
                Some(Token::Apply(id)) => {
                    if let Some(took) = self.apply.io_done(id, &self.es.overlay) {
                        self.sh.perf.tinc(crate::perf::L_DEFERRED_APPLY_LAT, took);
                    }
                }
                Some(Token::Read(_)) | None => {}
            }
        }
        self.done = done;
        any
    }

    /// Answers every transaction, and every later submission, with the
    /// poison reason.
    fn fail_everything(&mut self, reason: &str) -> bool {
        let any = !self.queue.is_empty() || !self.writing.is_empty();
        self.close(StoreError::Poisoned(reason.to_string()));
        // Reap what the device still returns, so buffers are released.
        let mut done = std::mem::take(&mut self.done);
        self.io.reap(&mut done);
        done.clear();
        self.done = done;
        any
    }

    /// Seal requests and finished checkpoints from the checkpointer.
    fn checkpoint_messages(&mut self) -> bool {
        let (round, released, finished) = {
            let mut l = self.es.link.lock();
            (
                l.seal_round,
                std::mem::take(&mut l.released),
                l.finished_round,
            )
        };
        let mut progress = false;
        if released > 0 {
            self.ring.release(released);
            progress = true;
        }
        if finished > self.finished_round {
            self.finished_round = finished;
            if self.waiting_checkpoint.is_some_and(|r| r <= finished) {
                self.waiting_checkpoint = None;
            }
            progress = true;
        }
        if round > self.sealed_round {
            self.sealed_round = round;
            let report = self.seal();
            self.sh.checkpointer.report(round, report);
            progress = true;
        }
        progress
    }

    /// Moves the active layer to the sealed list and says how far the zone
    /// may be trimmed.
    fn seal(&mut self) -> SealReport {
        let layer = {
            let mut c = self.es.committed.write();
            let l = Arc::new(std::mem::take(&mut c.active));
            c.sealed.push_back(l.clone());
            l
        };
        self.sealed_seq = self.published_seq;
        let (applied_seq, applied_end, applied_consumed) = self.apply.take_applied();
        SealReport {
            zone: self.es.zone,
            sealed_seq: self.published_seq,
            applied_seq,
            applied_end,
            applied_consumed,
            layer,
            stats: std::mem::take(&mut self.stats_unsealed),
        }
    }

    /// Asks for a checkpoint when the zone or the committed layer fills.
    fn maybe_want_checkpoint(&mut self) {
        let s = &self.sh.settings;
        let journal_full =
            self.ring.used * 100 >= self.ring.zone_sectors * s.checkpoint_journal_percent;
        let layer_full = self.es.committed.read().active.bytes() as u64 >= s.max_dirty_meta_bytes;
        if journal_full || layer_full || self.waiting_checkpoint.is_some() {
            self.sh.checkpointer.request();
        }
    }

    /// Stops the engine: every transaction not yet answered, and every
    /// later submission, gets `e`.
    pub(crate) fn close(&mut self, e: StoreError) {
        let left: Vec<Queued> = {
            let mut inbox = self.es.inbox.lock();
            inbox.closed.get_or_insert(e.clone());
            inbox.items.drain(..).collect()
        };
        for q in left.into_iter().chain(self.queue.drain(..)) {
            q.notify.complete(Err(e.clone()), &mut self.completions);
        }
        for w in self.writing.drain(..) {
            w.fail(&e, &mut self.completions);
        }
        self.inflight.clear();
        self.fail_reads(&e);
    }

    /// Records a store-wide counter change of a published batch.
    pub(crate) fn add_stats(&mut self, d: crate::journal::StatsDelta) {
        self.stats_unsealed.objects += d.objects;
        self.stats_unsealed.stored_bytes += d.stored_bytes;
        self.sh
            .stats_objects
            .fetch_add(d.objects, Ordering::Relaxed);
        self.sh
            .stats_bytes
            .fetch_add(d.stored_bytes, Ordering::Relaxed);
    }
}
