//! [`EngineDriver`]: a commit engine driven by a task on the caller's
//! tokio runtime (`Drive::External`), so that a transaction's submission,
//! its device I/O completions and its follow-up all happen on the thread
//! that asked for it — no engine thread, no reader pool, no condvar.
//!
//! Callers take an admission permit ([`EngineDriver::admit`]) before they
//! change any state the transaction records, then submit it with a
//! follow-up of their own type `P` (the OSD's: its PG's channel and what
//! to do) or wait for it ([`EngineDriver::commit`]). The driver task
//! ([`EngineDriver::drive`]) polls the engine whenever a submission kicks
//! it, its ring completes I/O (eventfd), another thread queues into the
//! engine or the checkpointer calls (eventfd), or a deadline passes; it
//! hands each finished transaction's follow-up to the caller's handler
//! right there. Reads ([`EngineDriver::read`]) are planned on the calling
//! thread against committed metadata and their device reads go through
//! the same ring.

use std::convert::Infallible;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::unix::AsyncFd;
use tokio::sync::{Notify as Kick, OwnedSemaphorePermit, Semaphore};

use crate::completion::{pair, Completer, Completion};
use crate::engine::{CommitEngine, Notify};
use crate::error::StoreError;
use crate::store::CheckpointStepper;
use crate::txn::Transaction;
use crate::types::{CollectionId, ObjectId};

/// Polls of the engine in a row before the driver lets other tasks run.
const MAX_POLLS_PER_WAKE: usize = 8;

/// Polls the engine until it is idle, at most `MAX_POLLS_PER_WAKE` times.
fn poll_some(e: &mut CommitEngine) {
    for _ in 0..MAX_POLLS_PER_WAKE {
        if !e.poll() {
            break;
        }
    }
}

/// Values by token; slots are reused, so steady state allocates nothing.
struct Slab<P> {
    slots: Vec<Option<P>>,
    free: Vec<u32>,
}

impl<P> Default for Slab<P> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<P> Slab<P> {
    fn insert(&mut self, p: P) -> u64 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(p);
                u64::from(i)
            }
            None => {
                self.slots.push(Some(p));
                (self.slots.len() - 1) as u64
            }
        }
    }

    fn take(&mut self, token: u64) -> Option<P> {
        let p = self.slots.get_mut(usize::try_from(token).ok()?)?.take()?;
        self.free.push(token as u32);
        Some(p)
    }
}

/// A raw descriptor the engine owns, for `AsyncFd`.
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// See the module documentation. `P` is what the caller wants back when
/// a submitted transaction has finished.
pub struct EngineDriver<P> {
    engine: Mutex<Option<CommitEngine>>,
    /// The store's checkpoints, when it has no thread to run them
    /// (`Drive::Caller`: the simulator).
    checkpoints: Option<CheckpointStepper>,
    admission: Arc<Semaphore>,
    kick: Kick,
    pending: Mutex<Slab<P>>,
    /// Reads waiting for their device reads.
    reads: Mutex<Slab<Completer<Bytes>>>,
    /// Set to stop the driver (it then gives the engine back).
    stopping: AtomicBool,
    stopped: tokio::sync::watch::Sender<bool>,
}

impl<P: Send + 'static> EngineDriver<P> {
    /// A driver of `engine` (taken with `ObjectStore::take_engines`);
    /// `checkpoints` when the store was mounted with `Drive::Caller`.
    pub fn new(engine: CommitEngine, checkpoints: Option<CheckpointStepper>) -> Arc<Self> {
        let admission = engine.admission();
        let (stopped, _) = tokio::sync::watch::channel(false);
        Arc::new(EngineDriver {
            engine: Mutex::new(Some(engine)),
            checkpoints,
            admission,
            kick: Kick::new(),
            pending: Mutex::new(Slab::default()),
            reads: Mutex::new(Slab::default()),
            stopping: AtomicBool::new(false),
            stopped,
        })
    }

    /// An admission permit: the engine takes the transaction it is given
    /// with without refusing it for load. Waits while the engine is full.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, StoreError> {
        self.admission
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unmounted)
    }

    /// Submits `t` (admitted with `permit`); once it has finished, the
    /// driver's handler gets `follow_up` with the result, on the driver's
    /// thread. After [`EngineDriver::stop`] the follow-up is dropped.
    pub fn submit(&self, t: Transaction, permit: OwnedSemaphorePermit, follow_up: P) {
        let token = self.pending.lock().insert(follow_up);
        match self.engine.lock().as_mut() {
            Some(e) => e.submit(t, Notify::Token(token), permit),
            None => {
                self.pending.lock().take(token);
                return;
            }
        }
        self.kick.notify_one();
    }

    /// Admits, submits and waits for `t` to be durable.
    pub async fn commit(&self, t: Transaction) -> Result<(), StoreError> {
        let permit = self.admit().await?;
        let (done, rx) = pair();
        match self.engine.lock().as_mut() {
            Some(e) => e.submit(t, Notify::Completer(done), permit),
            None => return Err(StoreError::Unmounted),
        }
        self.kick.notify_one();
        rx.await
    }

    /// Reads committed data of `c/o` (placed on this engine); see
    /// [`CommitEngine::read`].
    pub fn read(&self, c: &CollectionId, o: &ObjectId, off: u64, len: u64) -> Completion<Bytes> {
        let (done, rx) = pair();
        let token = self.reads.lock().insert(done);
        let mut g = self.engine.lock();
        let (answer, queue_signals) = match g.as_mut() {
            Some(e) => (e.read(c, o, off, len, token), e.event_fds().1.is_some()),
            None => (Some(Err(StoreError::Unmounted)), true),
        };
        drop(g);
        match answer {
            Some(r) => {
                if let Some(done) = self.reads.lock().take(token) {
                    done.complete(r);
                }
            }
            // A queue without an event descriptor completes at the next
            // poll: make it happen.
            None if !queue_signals => self.kick.notify_one(),
            None => {}
        }
        rx
    }

    /// The driver task: spawn it on the runtime whose thread should own
    /// the engine. `on_done` runs for each submitted transaction when it
    /// has finished. Returns when [`EngineDriver::stop`] is called, or at
    /// once with the error if the engine's descriptors cannot be watched.
    pub async fn drive(
        self: Arc<Self>,
        mut on_done: impl FnMut(P, Result<(), StoreError>),
    ) -> std::io::Result<()> {
        let fds = self.engine.lock().as_ref().map(|e| e.event_fds());
        let Some((wake_fd, io_fd)) = fds else {
            self.stopped.send_replace(true);
            return Ok(());
        };
        let wake = watch(wake_fd);
        let io = io_fd.map(watch).transpose();
        let (wake, io) = match (wake, io) {
            (Ok(w), Ok(i)) => (w, i),
            (Err(e), _) | (_, Err(e)) => {
                self.stopped.send_replace(true);
                return Err(e);
            }
        };
        let mut done = Vec::new();
        let mut reads = Vec::new();
        loop {
            if self.stopping.load(Ordering::Acquire) {
                break;
            }
            let deadline = {
                let mut g = self.engine.lock();
                let Some(e) = g.as_mut() else { break };
                poll_some(e);
                if let Some(cp) = &self.checkpoints {
                    while cp.step() {
                        poll_some(e);
                    }
                }
                e.take_completions(&mut done);
                e.take_read_completions(&mut reads);
                // A delayed device's retry is measured on tokio's clock
                // (simulated time in the simulator).
                let retry = e.io_retry_after().map(|d| tokio::time::Instant::now() + d);
                let deadline = e.next_deadline().map(tokio::time::Instant::from_std);
                match (deadline, retry) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            };
            for (token, res) in done.drain(..) {
                let p = self.pending.lock().take(token);
                if let Some(p) = p {
                    on_done(p, res);
                }
            }
            if !reads.is_empty() {
                let mut slab = self.reads.lock();
                for (token, res) in reads.drain(..) {
                    if let Some(done) = slab.take(token) {
                        done.complete(res);
                    }
                }
            }
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let io_ready = async {
                match &io {
                    Some(fd) => {
                        if let Ok(mut g) = fd.readable().await {
                            g.clear_ready();
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.kick.notified() => {}
                r = wake.readable() => {
                    if let Ok(mut g) = r {
                        g.clear_ready();
                    }
                }
                _ = io_ready => {}
                _ = sleep => {}
            }
        }
        drop(wake);
        drop(io);
        self.stopped.send_replace(true);
        Ok(())
    }

    /// Stops the driver and takes the engine back (to return to the store
    /// before unmounting). Reads not answered yet end with an error.
    pub async fn stop(&self) -> Option<CommitEngine> {
        self.stopping.store(true, Ordering::Release);
        self.kick.notify_one();
        let mut rx = self.stopped.subscribe();
        let _ = rx.wait_for(|s| *s).await;
        // A dropped completer resolves its completion with an error.
        *self.reads.lock() = Slab::default();
        self.engine.lock().take()
    }
}

/// A driver whose callers only wait for their commits
/// ([`EngineDriver::commit`]) and reads: no follow-ups to hand back.
pub type CommitDriver = EngineDriver<Infallible>;

impl CommitDriver {
    /// The driver task of a [`CommitDriver`] (see [`EngineDriver::drive`]).
    pub async fn drive_commits(self: Arc<Self>) -> std::io::Result<()> {
        self.drive(|never, _| match never {}).await
    }
}

/// Registers one of the engine's descriptors with the runtime.
fn watch(fd: RawFd) -> std::io::Result<AsyncFd<Fd>> {
    // SAFETY: the descriptor belongs to the engine, which stays in the
    // driver until `drive` has returned (see `stop`), and `drive` drops
    // its registrations before returning: it stays open and the same for
    // as long as the registration lives.
    unsafe { AsyncFd::register(Fd(fd)) }.map_err(std::io::Error::from)
}
