//! Submission queues: how a commit engine drives its device without
//! blocking.
//!
//! An engine owns one [`IoQueue`]: it pushes operations with a token,
//! starts them together (one system call for the batch), and later reaps
//! the finished ones without waiting, so one thread keeps preparing and
//! publishing batches while its I/O is in flight. A queue whose completions
//! arrive asynchronously says so with an event descriptor that becomes
//! readable when there is something to reap; the engine's event loop waits
//! on it. The queue owns every buffer until its operation finished, even
//! when it is dropped.

use std::collections::VecDeque;
use std::os::unix::io::RawFd;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{BlockDevice, IoOp};
use crate::error::DeviceError;

/// An operation of a queue: data I/O, or a flush of every write that
/// completed before it was started.
#[derive(Debug)]
pub enum QueuedOp {
    Io(IoOp),
    /// Makes every write reaped before this flush was pushed durable. A
    /// flush says nothing about writes still in flight with it.
    Flush,
}

impl QueuedOp {
    pub fn into_io(self) -> Option<IoOp> {
        match self {
            QueuedOp::Io(op) => Some(op),
            QueuedOp::Flush => None,
        }
    }
}

/// A finished operation.
#[derive(Debug)]
pub struct IoDone {
    pub token: u64,
    pub op: QueuedOp,
    pub result: Result<(), DeviceError>,
}

/// One thread's way to a device; see the module documentation.
pub trait IoQueue: Send {
    /// Queues an operation; it starts at the next [`IoQueue::submit`].
    fn push(&mut self, op: QueuedOp, token: u64);

    /// Starts every pushed operation.
    fn submit(&mut self) -> Result<(), DeviceError>;

    /// Moves finished operations into `out`, in no particular order;
    /// never blocks.
    fn reap(&mut self, out: &mut Vec<IoDone>);

    /// Blocks until an operation finished or `timeout` passed (for a
    /// thread that has nothing else to wait on).
    fn wait(&mut self, timeout: Duration);

    /// Readable when operations finished (an eventfd), for event loops;
    /// `None` when completions are ready as soon as `submit` returns.
    fn event_fd(&self) -> Option<RawFd>;

    /// Operations started and not yet reaped.
    fn in_flight(&self) -> usize;

    /// When finished operations are held back without an event to say
    /// when they are ready (a simulated device's delays): poll again after
    /// this long.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// The queue of a device that runs operations synchronously: `submit`
/// executes the batch (writes in any order the device chooses, flushes in
/// place) and the results are ready to reap at once. Deterministic, so the
/// fault-injecting device and the simulator use it.
pub struct SyncQueue {
    dev: Arc<dyn BlockDevice>,
    pushed: Vec<(QueuedOp, u64)>,
    /// Finished operations, each with the reaps it is still hidden from.
    done: VecDeque<(IoDone, u32)>,
    delays: Option<Delays>,
}

/// Completion delays of a [`SyncQueue`]: up to `max` reaps each, drawn
/// from a seeded generator.
struct Delays {
    max: u32,
    rng: ChaCha8Rng,
}

/// How long a queue with held-back completions asks its poller to wait.
const DELAY_POLL_INTERVAL: Duration = Duration::from_millis(1);

impl SyncQueue {
    pub fn new(dev: Arc<dyn BlockDevice>) -> SyncQueue {
        SyncQueue {
            dev,
            pushed: Vec::new(),
            done: VecDeque::new(),
            delays: None,
        }
    }

    /// Holds each finished operation back for up to `max` reaps (drawn
    /// from `seed`); see `FaultConfig::completion_delay_polls`.
    pub fn with_delays(mut self, max: u32, seed: u64) -> SyncQueue {
        self.delays = Some(Delays {
            max,
            rng: ChaCha8Rng::seed_from_u64(seed),
        });
        self
    }

    fn finished(&mut self, d: IoDone) {
        let hold = self
            .delays
            .as_mut()
            .map_or(0, |d| d.rng.random_range(0..=d.max));
        self.done.push_back((d, hold));
    }

    /// Runs a run of data operations as one device batch.
    fn run_batch(&mut self, batch: Vec<(IoOp, u64)>) {
        if batch.is_empty() {
            return;
        }
        let (mut ops, tokens): (Vec<IoOp>, Vec<u64>) = batch.into_iter().unzip();
        let res = self.dev.submit(&mut ops);
        for (op, token) in ops.into_iter().zip(tokens) {
            self.finished(IoDone {
                token,
                op: QueuedOp::Io(op),
                result: res.clone(),
            });
        }
    }
}

impl IoQueue for SyncQueue {
    fn push(&mut self, op: QueuedOp, token: u64) {
        self.pushed.push((op, token));
    }

    fn submit(&mut self) -> Result<(), DeviceError> {
        let mut batch = Vec::new();
        for (op, token) in std::mem::take(&mut self.pushed) {
            match op {
                QueuedOp::Io(io) => batch.push((io, token)),
                QueuedOp::Flush => {
                    self.run_batch(std::mem::take(&mut batch));
                    let result = self.dev.flush();
                    self.finished(IoDone {
                        token,
                        op: QueuedOp::Flush,
                        result,
                    });
                }
            }
        }
        self.run_batch(batch);
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<IoDone>) {
        if self.delays.is_none() {
            out.extend(self.done.drain(..).map(|(d, _)| d));
            return;
        }
        for _ in 0..self.done.len() {
            let Some((d, hold)) = self.done.pop_front() else {
                break;
            };
            match hold.checked_sub(1) {
                None => out.push(d),
                Some(left) => self.done.push_back((d, left)),
            }
        }
    }

    fn wait(&mut self, timeout: Duration) {
        if self.done.is_empty() {
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
        }
    }

    fn event_fd(&self) -> Option<RawFd> {
        None
    }

    fn in_flight(&self) -> usize {
        self.done.len()
    }

    fn retry_after(&self) -> Option<Duration> {
        (!self.done.is_empty() && self.delays.is_some()).then_some(DELAY_POLL_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{read_at, AlignedBuf, FaultConfig, FaultyDevice};

    #[test]
    fn sync_queue_runs_batches_and_flushes_in_place() {
        let dev = Arc::new(FaultyDevice::new(64 * 4096, FaultConfig::new(3)));
        let mut q = SyncQueue::new(dev.clone());
        q.push(
            QueuedOp::Io(IoOp::write(0, AlignedBuf::from_slice(&[7u8; 4096]), false)),
            1,
        );
        q.push(QueuedOp::Flush, 2);
        q.push(
            QueuedOp::Io(IoOp::write(
                4096,
                AlignedBuf::from_slice(&[8u8; 512]),
                false,
            )),
            3,
        );
        q.submit().expect("submit");
        let mut out = Vec::new();
        q.reap(&mut out);
        let tokens: Vec<u64> = out.iter().map(|d| d.token).collect();
        assert_eq!(tokens, vec![1, 2, 3]);
        assert!(out.iter().all(|d| d.result.is_ok()));
        assert!(dev.media_image()[..4096].iter().all(|&b| b == 7), "flushed");
        assert_eq!(read_at(dev.as_ref(), 4096, 512).expect("read")[0], 8);
        assert_eq!(
            dev.media_image()[4096],
            0,
            "written after the flush: cached"
        );
        assert_eq!(q.in_flight(), 0);
        assert_eq!(q.retry_after(), None, "no delays: nothing to poll for");
    }

    #[test]
    fn delayed_completions_come_within_their_bound_and_ask_for_polls() {
        let dev = Arc::new(FaultyDevice::new(64 * 4096, FaultConfig::new(3)));
        let mut q = SyncQueue::new(dev).with_delays(3, 11);
        for t in 0..32u64 {
            let buf = AlignedBuf::from_slice(&[t as u8; 4096]);
            q.push(QueuedOp::Io(IoOp::write(t * 4096, buf, false)), t);
        }
        q.submit().expect("submit");
        let mut seen = Vec::new();
        let mut reaps = 0;
        let mut held_back = false;
        while seen.len() < 32 {
            assert!(
                reaps <= 3,
                "every completion within 3 reaps after the first"
            );
            let mut out = Vec::new();
            q.reap(&mut out);
            reaps += 1;
            held_back |= out.len() < 32 - seen.len();
            seen.extend(out.iter().map(|d| d.token));
            if seen.len() < 32 {
                assert_eq!(q.retry_after(), Some(DELAY_POLL_INTERVAL));
            }
        }
        assert!(held_back, "a seed that delays nothing tests nothing");
        seen.sort_unstable();
        assert_eq!(seen, (0..32).collect::<Vec<_>>(), "each exactly once");
        assert_eq!(q.retry_after(), None);
        assert_eq!(q.in_flight(), 0);
    }
}
