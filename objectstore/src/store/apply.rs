//! Writing journaled blocks home, and checkpoints.
//!
//! A checkpoint makes the applied state durable on its own — device flush
//! (deferred blocks), database flush (memtables to SST files) — and then
//! advances the journal start in the superblock, which trims the journal.
//! Only after that are the blocks freed by the trimmed records released to
//! the allocator: before it, a replay could still write into them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use crate::device::{AlignedBuf, BlockDevice, IoBuf, IoOp};
use crate::error::StoreError;
use crate::layout::{encode_block, Superblock, BLOCK_SIZE, SUPERBLOCK_MAGIC, SUPERBLOCK_OFFSETS};
use crate::perf;

/// The deferred blocks of one committed record.
pub(crate) struct ApplyItem {
    pub seq: u64,
    /// Zone block where the next record starts.
    pub end_pos: u64,
    /// Zone blocks this record used up.
    pub consumed: u64,
    pub buf: Arc<AlignedBuf>,
    /// (physical block, byte offset of its content in `buf`).
    pub blocks: Vec<(u64, usize)>,
    pub queued_at: Instant,
}

impl ApplyItem {
    pub fn bytes(&self) -> u64 {
        self.blocks.len() as u64 * BLOCK_SIZE
    }
}

/// Owner of the superblock and of the applied-but-not-checkpointed state.
pub(crate) struct Applier {
    pub sb: Superblock,
    pub next_slot: usize,
    /// Last applied record: (seq, end position).
    last: Option<(u64, u64)>,
    consumed_since: u64,
    last_checkpoint: Instant,
}

/// Writes `sb` to superblock slot `slot` with FUA.
pub(crate) fn write_superblock(
    dev: &dyn BlockDevice,
    sb: &Superblock,
    slot: usize,
) -> Result<(), StoreError> {
    let block = encode_block(SUPERBLOCK_MAGIC, sb);
    let mut ops = [IoOp::write(
        SUPERBLOCK_OFFSETS[slot],
        AlignedBuf::from_slice(&block),
        true,
    )];
    dev.submit(&mut ops)?;
    Ok(())
}

impl Applier {
    pub fn new(sb: Superblock, next_slot: usize) -> Applier {
        Applier {
            sb,
            next_slot,
            last: None,
            consumed_since: 0,
            last_checkpoint: Instant::now(),
        }
    }

    /// Writes the blocks of `items` home (a later item's version of a
    /// block wins) and forgets them in the data overlay.
    pub fn apply(&mut self, sh: &Shared, items: &[ApplyItem]) -> Result<(), StoreError> {
        let t0 = Instant::now();
        let mut latest: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
        for (i, it) in items.iter().enumerate() {
            for &(phys, off) in &it.blocks {
                latest.insert(phys, (i, off));
            }
        }
        let bs = BLOCK_SIZE as usize;
        let max_blocks = (sh.settings.max_io_bytes / BLOCK_SIZE).max(1) as usize;
        let mut ops: Vec<IoOp> = Vec::new();
        // (item, first phys, first offset, blocks)
        let mut run: Option<(usize, u64, usize, usize)> = None;
        let flush_run = |run: (usize, u64, usize, usize), ops: &mut Vec<IoOp>| {
            let (i, phys, off, n) = run;
            ops.push(IoOp::Write {
                offset: sh.layout.block_offset(phys),
                buf: IoBuf::Shared {
                    buf: items[i].buf.clone(),
                    start: off,
                    len: n * bs,
                },
                fua: false,
            });
        };
        for (&phys, &(i, off)) in &latest {
            run = match run {
                Some((ri, rp, ro, n))
                    if ri == i && rp + n as u64 == phys && ro + n * bs == off && n < max_blocks =>
                {
                    Some((ri, rp, ro, n + 1))
                }
                Some(r) => {
                    flush_run(r, &mut ops);
                    Some((i, phys, off, 1))
                }
                None => Some((i, phys, off, 1)),
            };
        }
        if let Some(r) = run {
            flush_run(r, &mut ops);
        }
        for chunk in ops.chunks_mut(sh.settings.apply_batch_ios.max(1)) {
            sh.dev.submit(chunk)?;
        }
        for it in items {
            for &(phys, _) in &it.blocks {
                sh.overlay.remove_if_seq(phys, it.seq);
            }
            self.last = Some((it.seq, it.end_pos));
            self.consumed_since += it.consumed;
        }
        if !items.is_empty() {
            sh.perf.tinc(perf::L_DEFERRED_APPLY_LAT, t0.elapsed());
        }
        Ok(())
    }

    /// Whether enough time passed or the journal is full enough.
    /// `waiting`: committed records not yet applied exist.
    pub fn checkpoint_due(&self, sh: &Shared, waiting: bool) -> bool {
        if self.last.is_none() && !waiting {
            return false;
        }
        if self.last_checkpoint.elapsed()
            >= Duration::from_millis(sh.settings.checkpoint_interval_ms)
        {
            return true;
        }
        {
            // Freed space waits for a checkpoint: do not let it pile up.
            let a = sh.alloc.lock();
            if a.pending_blocks() > 0 && a.pending_blocks() >= a.free_blocks() {
                return true;
            }
        }
        let sp = sh.space.lock();
        sp.ring.used * 100 >= sp.ring.zone_blocks * sh.settings.checkpoint_journal_percent
    }

    /// Time until the interval checkpoint is due.
    pub fn until_due(&self, sh: &Shared) -> Duration {
        Duration::from_millis(sh.settings.checkpoint_interval_ms)
            .saturating_sub(self.last_checkpoint.elapsed())
    }

    /// Makes everything applied durable and trims the journal up to it;
    /// with `clean`, also marks the store cleanly unmounted.
    pub fn checkpoint(&mut self, sh: &Shared, clean: bool) -> Result<(), StoreError> {
        if self.last.is_none() && !clean {
            return Ok(());
        }
        let t0 = Instant::now();
        sh.dev.flush()?;
        let t_kv = Instant::now();
        sh.kv.flush()?;
        sh.perf.tinc(perf::L_KV_FLUSH_LAT, t_kv.elapsed());
        let mut sb = self.sb.clone();
        if let Some((seq, end)) = self.last {
            sb.journal_start_pos = end;
            sb.journal_start_seq = seq + 1;
        }
        sb.clean_umount = clean;
        sb.sb_seq += 1;
        write_superblock(sh.dev.as_ref(), &sb, self.next_slot)?;
        self.sb = sb;
        self.next_slot ^= 1;
        let done = self.last.take().map(|(seq, _)| seq);
        if let Some(seq) = done {
            sh.alloc.lock().release_through(seq);
        }
        {
            let mut sp = sh.space.lock();
            sp.ring.release(std::mem::take(&mut self.consumed_since));
            if let Some(seq) = done {
                sp.checkpointed_seq = sp.checkpointed_seq.max(seq);
            }
        }
        sh.space_cv.notify_all();
        self.last_checkpoint = Instant::now();
        sh.perf.inc(perf::L_CHECKPOINTS, 1);
        sh.perf.tinc(perf::L_CHECKPOINT_LAT, t0.elapsed());
        Ok(())
    }
}

/// The apply thread: writes committed records' blocks home in bursts
/// (`apply_min_bytes` / `apply_max_delay_ms`), checkpoints when due or
/// asked, and returns the applier at shutdown.
pub(crate) fn run(sh: Arc<Shared>, mut a: Applier) -> Applier {
    let max_delay = Duration::from_millis(sh.settings.apply_max_delay_ms);
    loop {
        if sh.poisoned().is_some() {
            return a;
        }
        // Outside the queue lock: it takes the space and allocator locks,
        // which the commit thread holds while taking the queue lock.
        let waiting = !sh.apply_q.lock().items.is_empty();
        let due = a.checkpoint_due(&sh, waiting);
        let (items, requested, shutdown) = {
            let mut q = sh.apply_q.lock();
            let oldest = q.items.front().map(|i| i.queued_at);
            let ready = q.shutdown
                || q.checkpoint_requested
                || due
                || q.unapplied_bytes >= sh.settings.apply_min_bytes
                || oldest.is_some_and(|t| t.elapsed() >= max_delay);
            if !ready {
                let mut wait = if a.last.is_some() || oldest.is_some() {
                    a.until_due(&sh)
                } else {
                    Duration::from_secs(3600)
                };
                if let Some(t) = oldest {
                    wait = wait.min(max_delay.saturating_sub(t.elapsed()));
                }
                sh.apply_cv
                    .wait_for(&mut q, wait.max(Duration::from_millis(1)));
                continue;
            }
            let items: Vec<ApplyItem> = q.items.drain(..).collect();
            let requested = std::mem::take(&mut q.checkpoint_requested);
            (items, requested, q.shutdown)
        };
        if !items.is_empty() {
            if let Err(e) = a.apply(&sh, &items) {
                sh.poison(&format!("writing journaled blocks home failed: {e}"));
                return a;
            }
            let bytes: u64 = items.iter().map(ApplyItem::bytes).sum();
            let mut q = sh.apply_q.lock();
            q.unapplied_bytes = q.unapplied_bytes.saturating_sub(bytes);
            drop(q);
            sh.apply_cv.notify_all();
        }
        if requested || due || a.checkpoint_due(&sh, false) {
            if let Err(e) = a.checkpoint(&sh, false) {
                sh.poison(&format!("checkpoint failed: {e}"));
                return a;
            }
        }
        if shutdown && sh.apply_q.lock().items.is_empty() {
            return a;
        }
    }
}
