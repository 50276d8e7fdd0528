//! Checkpoints: moving committed metadata from the engines' memory into
//! the database, and trimming the journal.
//!
//! A checkpoint is a round: every engine seals (its active layer becomes
//! read-only, and it reports how far its zone's data is home); then, off
//! every engine's thread,
//!
//! 1. the device is flushed, so the home writes the reports count are
//!    durable;
//! 2. one database batch writes the sealed layers, the allocator's changed
//!    bitmap segments and the checkpoint record (per zone, the last record
//!    whose metadata the batch holds; the store counters; the next object
//!    id), and the database is flushed;
//! 3. the superblock moves each zone's start past its last applied record;
//! 4. each engine drops its sealed layer (readers now find it in the
//!    database), gets its zone space back, and the allocator releases the
//!    blocks the trimmed records freed.
//!
//! A crash between steps 2 and 3 leaves the database ahead of the
//! superblock: replay then skips the metadata of records the checkpoint
//! record covers and only writes their data home, so each record's changes
//! are applied exactly once. Rounds run when an engine asks (zone or
//! layer filling up, waiting for freed space), every
//! `checkpoint_interval_ms` when anything was written, and at unmount.
//! One round is open at a time: an engine's sealed layer reaches the
//! database only through its round's report, so the unmount finishes a
//! round left open by the checkpointer's thread before its own.

use std::time::{Duration, Instant};

use kalmar_common::encoding::Encode;
use kalmar_common::impl_versioned;
use parking_lot::{Condvar, Mutex};

use crate::engine::SealReport;
use crate::error::StoreError;
use crate::keys;
use crate::kv::KvOp;
use crate::layout::{Superblock, ZoneStart};
use crate::onode::StoreStats;
use crate::perf;
use crate::store::{write_superblock, Shared};

/// What the database holds about the journal, written by every checkpoint
/// in the same batch as the metadata it covers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointRecord {
    /// The mount generation that wrote it.
    pub generation: u64,
    /// Per zone of that mount's division: the last record whose metadata
    /// the database holds.
    pub sealed: Vec<u64>,
    pub stats: StoreStats,
    pub next_nid: u64,
}
impl_versioned!(CheckpointRecord, "checkpoint record", version = 1, compat = 1, {
    generation, sealed, stats, next_nid
});

/// The checkpointer's state, shared by the engines and the thread that
/// runs the rounds.
#[derive(Default)]
struct State {
    /// An engine asked for a round.
    requested: bool,
    /// The round being collected (0: none) and the reports so far.
    round: u64,
    reports: Vec<Option<SealReport>>,
    shutdown: bool,
    /// The superblock as last written, and the slot the next one goes to.
    sb: Option<(Superblock, usize)>,
    /// The store counters the database holds.
    stats: StoreStats,
    /// When the last round finished.
    last: Option<Instant>,
    /// Where `round` is. One round is open at a time: rounds finish in
    /// order, each superblock and checkpoint record after the previous
    /// one's.
    phase: Phase,
}

/// Where the current round is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    /// Finished (or none yet): another may begin.
    #[default]
    Idle,
    /// Begun: the engines are sealing and reporting.
    Collecting,
    /// Its reports were taken: it is being written.
    Finishing,
}

pub(crate) struct Checkpointer {
    state: Mutex<State>,
    cv: Condvar,
    /// Anything published since the last round (set by every batch, so
    /// kept out of the lock).
    dirty: std::sync::atomic::AtomicBool,
}

impl Checkpointer {
    pub fn new(
        sb: Superblock,
        next_slot: usize,
        stats: StoreStats,
        engines: usize,
    ) -> Checkpointer {
        Checkpointer {
            state: Mutex::new(State {
                sb: Some((sb, next_slot)),
                stats,
                reports: vec![None; engines],
                last: Some(Instant::now()),
                ..State::default()
            }),
            cv: Condvar::new(),
            dirty: Default::default(),
        }
    }

    /// An engine wants a round soon.
    pub fn request(&self) {
        let mut st = self.state.lock();
        if !st.requested {
            st.requested = true;
            drop(st);
            self.cv.notify_all();
        }
    }

    /// An engine published something: the interval round has work.
    pub fn mark_dirty(&self) {
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_dirty(&self) -> bool {
        self.dirty.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// An engine sealed for `round`.
    pub fn report(&self, round: u64, r: SealReport) {
        let mut st = self.state.lock();
        if st.round != round {
            return;
        }
        let zone = r.zone;
        if let Some(slot) = st.reports.get_mut(zone) {
            *slot = Some(r);
        }
        drop(st);
        self.cv.notify_all();
    }

    pub fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.cv.notify_all();
    }
}

/// Starts a round: asks every engine to seal. Returns the round number.
pub(crate) fn begin_round(sh: &Shared) -> u64 {
    // An open round's reports hold the layers its engines sealed, and
    // nothing else brings them to the database: a new round in its place
    // would lose those writes at the next mount.
    begin_round_unless_open(sh)
        .expect("a checkpoint round is still open: finish it before beginning another")
}

/// Starts a round unless one is open (checked and begun under one lock:
/// with caller driving, every shard's driver steps the checkpoints).
pub(crate) fn begin_round_unless_open(sh: &Shared) -> Option<u64> {
    let round = {
        let mut st = sh.checkpointer.state.lock();
        if st.phase != Phase::Idle {
            return None;
        }
        st.round += 1;
        st.requested = false;
        st.phase = Phase::Collecting;
        sh.checkpointer
            .dirty
            .store(false, std::sync::atomic::Ordering::Relaxed);
        for r in st.reports.iter_mut() {
            *r = None;
        }
        st.round
    };
    for es in &sh.engines {
        es.link.lock().seal_round = round;
        es.wake.signal();
    }
    Some(round)
}

/// The round begun and not being finished, if any (the checkpointer's
/// thread stops waiting for reports when the store unmounts).
pub(crate) fn open_round(sh: &Shared) -> Option<u64> {
    let st = sh.checkpointer.state.lock();
    (st.phase == Phase::Collecting).then_some(st.round)
}

/// The reports of `round` once every engine sent one.
pub(crate) fn take_reports(sh: &Shared, round: u64) -> Option<Vec<SealReport>> {
    let mut st = sh.checkpointer.state.lock();
    if st.round != round || st.phase != Phase::Collecting || st.reports.iter().any(Option::is_none)
    {
        return None;
    }
    st.phase = Phase::Finishing;
    Some(st.reports.iter_mut().filter_map(Option::take).collect())
}

/// Waits (on the checkpointer's thread) until every engine sealed.
fn wait_reports(sh: &Shared, round: u64) -> Option<Vec<SealReport>> {
    loop {
        if let Some(r) = take_reports(sh, round) {
            return Some(r);
        }
        let mut st = sh.checkpointer.state.lock();
        if st.shutdown || sh.poisoned().is_some() {
            return None;
        }
        // No timeout: the engines report under this lock and notify, so
        // the predicate cannot change unseen between the check and the wait.
        if st.reports.iter().any(Option::is_none) && st.round == round {
            sh.checkpointer.cv.wait(&mut st);
        }
    }
}

/// Finishes a round whose reports are all in (steps 1-4 of the module
/// documentation). With `clean`, marks the store cleanly unmounted.
pub(crate) fn finish_round(
    sh: &Shared,
    round: u64,
    reports: Vec<SealReport>,
    clean: bool,
) -> Result<(), StoreError> {
    let t0 = Instant::now();
    sh.dev.flush()?;
    let (sb, slot, mut stats) = {
        let st = sh.checkpointer.state.lock();
        let (sb, slot) = st
            .sb
            .clone()
            .ok_or_else(|| StoreError::Poisoned("no superblock state".into()))?;
        (sb, slot, st.stats)
    };
    let mut ops: Vec<KvOp> = Vec::new();
    for r in &reports {
        ops.extend(r.layer.to_ops());
        stats.num_objects = (stats.num_objects as i64 + r.stats.objects).max(0) as u64;
        stats.stored_bytes = (stats.stored_bytes as i64 + r.stats.stored_bytes).max(0) as u64;
    }
    {
        let mut a = sh.alloc.lock();
        for seg in a.take_dirty() {
            ops.push(KvOp::Put(keys::bitmap_segment(seg), a.segment_bytes(seg)));
        }
    }
    let mut sealed = vec![0u64; sh.engines.len()];
    for r in &reports {
        if let Some(s) = sealed.get_mut(r.zone) {
            *s = r.sealed_seq;
        }
    }
    let record = CheckpointRecord {
        generation: sh.generation,
        sealed,
        stats,
        next_nid: sh.next_nid.load(std::sync::atomic::Ordering::Relaxed),
    };
    ops.push(KvOp::Put(
        keys::STORE_CHECKPOINT.to_vec(),
        record.to_bytes(),
    ));
    let t_kv = Instant::now();
    sh.kv.write(&ops)?;
    sh.kv.flush()?;
    sh.perf.tinc(perf::L_KV_FLUSH_LAT, t_kv.elapsed());
    let mut zones = sb.zones.clone();
    for r in &reports {
        if let Some(z) = zones.get_mut(r.zone) {
            *z = ZoneStart {
                pos: r.applied_end,
                seq: r.applied_seq + 1,
            };
        }
    }
    let next = Superblock {
        sb_seq: sb.sb_seq + 1,
        clean_umount: clean,
        zones,
        ..sb
    };
    write_superblock(sh.dev.as_ref(), &next, slot)?;
    {
        let mut st = sh.checkpointer.state.lock();
        st.sb = Some((next, slot ^ 1));
        st.stats = stats;
        st.last = Some(Instant::now());
        // Durable: the next round may begin.
        st.phase = Phase::Idle;
    }
    for r in reports {
        let es = &sh.engines[r.zone];
        {
            let mut c = es.committed.write();
            c.sealed.retain(|l| !std::sync::Arc::ptr_eq(l, &r.layer));
        }
        {
            let mut a = sh.alloc.lock();
            a.release_through(r.zone, r.applied_seq);
            sh.sync_alloc_stats(&a);
        }
        {
            let mut l = es.link.lock();
            l.released += r.applied_consumed;
            l.finished_round = round;
        }
        es.wake.signal();
    }
    sh.perf.inc(perf::L_CHECKPOINTS, 1);
    sh.perf.tinc(perf::L_CHECKPOINT_LAT, t0.elapsed());
    Ok(())
}

/// Runs one whole round on the checkpointer's thread (the engines seal on
/// theirs). `false` when the store stopped or failed meanwhile.
pub(crate) fn run_round(sh: &Shared, clean: bool) -> bool {
    let round = begin_round(sh);
    let Some(reports) = wait_reports(sh, round) else {
        return false;
    };
    match finish_round(sh, round, reports, clean) {
        Ok(()) => true,
        Err(e) => {
            sh.poison(&format!("checkpoint failed: {e}"));
            false
        }
    }
}

/// Whether a round is due: asked for, or the interval passed with work.
fn due(sh: &Shared) -> (bool, Duration) {
    let st = sh.checkpointer.state.lock();
    let interval = Duration::from_millis(sh.settings.checkpoint_interval_ms);
    let since = st.last.map_or(interval, |t| t.elapsed());
    let wait = interval.saturating_sub(since);
    (
        st.requested || (sh.checkpointer.is_dirty() && wait.is_zero()),
        wait,
    )
}

/// The checkpointer's thread (threaded and external driving).
pub(crate) fn run_thread(sh: std::sync::Arc<Shared>) {
    loop {
        {
            let mut st = sh.checkpointer.state.lock();
            if st.shutdown || sh.poisoned().is_some() {
                return;
            }
            drop(st);
            let (go, wait) = due(&sh);
            if !go {
                st = sh.checkpointer.state.lock();
                if !st.requested && !st.shutdown {
                    // A timed wait for the interval; requests notify.
                    let wait = if sh.checkpointer.is_dirty() {
                        wait
                    } else {
                        Duration::from_millis(sh.settings.checkpoint_interval_ms)
                    };
                    sh.checkpointer
                        .cv
                        .wait_for(&mut st, wait.max(Duration::from_millis(1)));
                }
                continue;
            }
        }
        if !run_round(&sh, false) {
            return;
        }
    }
}

/// One step of a round driven from the waiting thread (inline driving):
/// starts a due round, or finishes the one whose reports are all in.
/// Returns whether anything happened.
pub(crate) fn inline_step(sh: &Shared) -> bool {
    let (round, phase) = {
        let st = sh.checkpointer.state.lock();
        (st.round, st.phase)
    };
    if phase != Phase::Idle {
        let Some(reports) = take_reports(sh, round) else {
            return false;
        };
        if let Err(e) = finish_round(sh, round, reports, false) {
            sh.poison(&format!("checkpoint failed: {e}"));
        }
        return true;
    }
    // Another driver may have begun one since the look above.
    due(sh).0 && begin_round_unless_open(sh).is_some()
}
