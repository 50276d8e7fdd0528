//! Writing journaled blocks home.
//!
//! Published records wait here until `apply_min_bytes` of their blocks
//! are waiting or the oldest waited `apply_max_delay_ms`; then one burst
//! writes the newest content of every waiting block home, sorted and merged
//! into runs. One burst is in flight at a time, so two writes of the same
//! block never race on the device. A record counts as applied once its
//! blocks and those of every record before it are home; the checkpointer
//! may trim the zone up to the last applied record.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{CommitEngine, Token};
use crate::device::{AlignedBuf, IoBuf, IoOp, QueuedOp};
use crate::layout::BLOCK_SIZE;
use crate::overlay::DataOverlay;
use crate::settings::StoreSettings;

/// A published record's place in the apply order.
struct Item {
    seq: u64,
    end_pos: u64,
    consumed: u64,
    buf: Arc<AlignedBuf>,
    /// (physical block, byte offset of its content in `buf`).
    blocks: Vec<(u64, usize)>,
    queued_at: Instant,
    /// In the burst in flight.
    submitted: bool,
}

/// The burst in flight.
struct Burst {
    id: u64,
    pending: usize,
    started: Instant,
}

pub(crate) struct ApplyState {
    /// Published records not yet applied, in order.
    items: VecDeque<Item>,
    /// Bytes of blocks waiting (not submitted).
    waiting_bytes: u64,
    /// Bytes of blocks published and not yet home.
    unapplied_bytes: u64,
    burst: Option<Burst>,
    next_burst: u64,
    /// The last applied record and where the next one starts.
    applied_seq: u64,
    applied_end: u64,
    /// Zone sectors of records applied since the last `take_applied`.
    applied_consumed: u64,
}

impl ApplyState {
    pub fn new(last_seq: u64, head: u64) -> ApplyState {
        ApplyState {
            items: VecDeque::new(),
            waiting_bytes: 0,
            unapplied_bytes: 0,
            burst: None,
            next_burst: 1,
            applied_seq: last_seq,
            applied_end: head,
            applied_consumed: 0,
        }
    }

    /// Queues a published record.
    pub fn push(
        &mut self,
        seq: u64,
        end_pos: u64,
        consumed: u64,
        buf: Arc<AlignedBuf>,
        blocks: Vec<(u64, usize)>,
    ) {
        self.waiting_bytes += blocks.len() as u64 * BLOCK_SIZE;
        self.unapplied_bytes += blocks.len() as u64 * BLOCK_SIZE;
        self.items.push_back(Item {
            seq,
            end_pos,
            consumed,
            buf,
            blocks,
            queued_at: Instant::now(),
            submitted: false,
        });
        self.advance();
    }

    /// Bytes published and not yet home.
    pub fn backlog_bytes(&self) -> u64 {
        self.unapplied_bytes
    }

    pub fn is_idle(&self) -> bool {
        self.items.is_empty() && self.burst.is_none()
    }

    /// When waiting blocks must go home at the latest.
    pub fn deadline(&self, s: &StoreSettings) -> Option<Instant> {
        let first = self
            .items
            .iter()
            .find(|i| !i.submitted && !i.blocks.is_empty())?;
        Some(first.queued_at + Duration::from_millis(s.apply_max_delay_ms))
    }

    /// How far the zone may be trimmed, and the sectors freed since the
    /// last call.
    pub fn take_applied(&mut self) -> (u64, u64, u64) {
        (
            self.applied_seq,
            self.applied_end,
            std::mem::take(&mut self.applied_consumed),
        )
    }

    /// Counts applied records at the front.
    fn advance(&mut self) {
        while let Some(front) = self.items.front() {
            let done = front.blocks.is_empty();
            if !done {
                break;
            }
            if let Some(i) = self.items.pop_front() {
                self.applied_seq = i.seq;
                self.applied_end = i.end_pos;
                self.applied_consumed += i.consumed;
            }
        }
    }

    /// A write of burst `id` finished; returns how long the burst took once
    /// its last write finished.
    pub fn io_done(&mut self, id: u64, overlay: &DataOverlay) -> Option<Duration> {
        let b = self.burst.as_mut().filter(|b| b.id == id)?;
        b.pending = b.pending.saturating_sub(1);
        if b.pending > 0 {
            return None;
        }
        let took = b.started.elapsed();
        self.burst = None;
        for it in self.items.iter_mut().filter(|i| i.submitted) {
            for &(phys, _) in &it.blocks {
                overlay.remove_if_seq(phys, it.seq);
            }
            self.unapplied_bytes -= it.blocks.len() as u64 * BLOCK_SIZE;
            it.blocks.clear();
        }
        self.advance();
        Some(took)
    }
}

impl CommitEngine {
    /// Starts a burst when one is due (or `force`d). Returns whether one
    /// started.
    pub(super) fn apply_step(&mut self, force: bool) -> bool {
        let s = &self.sh.settings;
        let a = &mut self.apply;
        if a.burst.is_some() || a.waiting_bytes == 0 {
            return false;
        }
        let due = force
            || a.waiting_bytes >= s.apply_min_bytes
            || a.deadline(s).is_some_and(|d| Instant::now() >= d)
            || a.waiting_bytes > s.max_unapplied_bytes / 2
            || self.waiting_checkpoint.is_some();
        if !due {
            return false;
        }
        // The newest content of every waiting block.
        let mut latest: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
        for (i, it) in a.items.iter_mut().enumerate() {
            if it.submitted {
                continue;
            }
            it.submitted = true;
            for &(phys, off) in &it.blocks {
                latest.insert(phys, (i, off));
            }
        }
        a.waiting_bytes = 0;
        let id = a.next_burst;
        a.next_burst += 1;
        let token = Token::Apply(id).encode();
        let bs = BLOCK_SIZE as usize;
        let max_blocks = (s.max_io_bytes / BLOCK_SIZE).max(1) as usize;
        let mut ops = 0usize;
        // (item, first phys, first offset, blocks)
        let mut run: Option<(usize, u64, usize, usize)> = None;
        let mut emit = |r: (usize, u64, usize, usize), items: &VecDeque<Item>| {
            let (i, phys, off, n) = r;
            self.io.push(
                QueuedOp::Io(IoOp::Write {
                    offset: self.sh.layout.block_offset(phys),
                    buf: IoBuf::Shared {
                        buf: items[i].buf.clone(),
                        start: off,
                        len: n * bs,
                    },
                    fua: false,
                }),
                token,
            );
            ops += 1;
        };
        for (&phys, &(i, off)) in &latest {
            run = match run {
                Some((ri, rp, ro, n))
                    if ri == i && rp + n as u64 == phys && ro + n * bs == off && n < max_blocks =>
                {
                    Some((ri, rp, ro, n + 1))
                }
                Some(r) => {
                    emit(r, &a.items);
                    Some((i, phys, off, 1))
                }
                None => Some((i, phys, off, 1)),
            };
        }
        if let Some(r) = run {
            emit(r, &a.items);
        }
        if ops == 0 {
            // Nothing to write after all: the records are applied.
            a.io_done_empty();
            return true;
        }
        a.burst = Some(Burst {
            id,
            pending: ops,
            started: Instant::now(),
        });
        true
    }
}

impl ApplyState {
    fn io_done_empty(&mut self) {
        for it in self.items.iter_mut().filter(|i| i.submitted) {
            self.unapplied_bytes -= it.blocks.len() as u64 * BLOCK_SIZE;
            it.blocks.clear();
        }
        self.advance();
    }
}
