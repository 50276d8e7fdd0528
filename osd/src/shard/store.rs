//! A shard's way to the store: its commit engine, driven on the shard's
//! thread.
//!
//! PGs of the shard submit transactions straight into the engine (after
//! taking an admission permit, before they change any state the
//! transaction records) and kick the driver task. The driver polls the
//! engine whenever it is kicked, its ring completes I/O (eventfd), another
//! thread submits or the checkpointer calls (eventfd), or a deadline
//! passes; it hands each finished transaction's follow-up to its PG right
//! there. A PG transaction that fails after admission stops the OSD: the
//! PG's memory may be ahead of its disk, which must never be served.
//!
//! Client reads go the same way: planned against the committed metadata
//! on this thread, their device reads on the engine's ring, their answers
//! completed by the driver (no reader thread in between).

use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::Arc;

use bytes::Bytes;
use kalmar_objectstore::{
    pair, CheckpointStepper, CollectionId, CommitEngine, Completer, Completion,
    Notify as StoreNotify, ObjectId, StoreError, Transaction,
};
use parking_lot::Mutex;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

use crate::pg::{AfterCommit, PgEvent};

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

/// What to do when a submitted transaction is durable.
struct Pending {
    tx: mpsc::UnboundedSender<PgEvent>,
    after: AfterCommit,
}

/// Follow-ups by token; slots are reused, so steady state allocates nothing.
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
                i as u64
            }
            None => {
                self.slots.push(Some(p));
                (self.slots.len() - 1) as u64
            }
        }
    }

    fn take(&mut self, token: u64) -> Option<P> {
        let p = self.slots.get_mut(token as usize)?.take()?;
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

/// See the module documentation.
pub struct ShardStore {
    pub id: usize,
    engine: Mutex<Option<CommitEngine>>,
    /// The store's checkpoints, when it has no thread to run them
    /// (`Drive::Caller`: the simulator).
    checkpoints: Option<CheckpointStepper>,
    admission: Arc<Semaphore>,
    kick: Notify,
    pending: Mutex<Slab<Pending>>,
    /// Reads waiting for their device reads.
    reads: Mutex<Slab<Completer<Bytes>>>,
    /// Set to stop the driver (it then gives the engine back).
    stopping: std::sync::atomic::AtomicBool,
    stopped: tokio::sync::watch::Sender<bool>,
}

impl ShardStore {
    pub fn new(
        id: usize,
        engine: CommitEngine,
        checkpoints: Option<CheckpointStepper>,
    ) -> Arc<ShardStore> {
        let admission = engine.admission();
        let (stopped, _) = tokio::sync::watch::channel(false);
        Arc::new(ShardStore {
            id,
            engine: Mutex::new(Some(engine)),
            checkpoints,
            admission,
            kick: Notify::new(),
            pending: Mutex::new(Slab::default()),
            reads: Mutex::new(Slab::default()),
            stopping: Default::default(),
            stopped,
        })
    }

    /// An admission permit: the store takes the transaction it is given
    /// with without refusing it for load. Waits while the engine is full.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, StoreError> {
        self.admission
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unmounted)
    }

    /// Submits `t` (admitted with `permit`); once it is durable, `after`
    /// runs with `tx` (the PG's channel), on this shard's thread.
    pub(crate) fn submit(
        &self,
        t: Transaction,
        permit: OwnedSemaphorePermit,
        tx: mpsc::UnboundedSender<PgEvent>,
        after: AfterCommit,
    ) {
        let token = self.pending.lock().insert(Pending { tx, after });
        match self.engine.lock().as_mut() {
            Some(e) => e.submit(t, StoreNotify::Token(token), permit),
            None => {
                // Stopping: the follow-up never runs.
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
            Some(e) => e.submit(t, StoreNotify::Completer(done), permit),
            None => return Err(StoreError::Unmounted),
        }
        self.kick.notify_one();
        rx.await
    }

    /// Reads committed data of `c/o` on this shard's engine (`c` must
    /// belong to this shard); see `CommitEngine::read`.
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

    /// The driver task (spawned on the shard's runtime). `fatal` stops the
    /// OSD (`Service::fatal`).
    pub async fn drive(self: Arc<Self>, fatal: impl Fn(String)) {
        let fds = self.engine.lock().as_ref().map(|e| e.event_fds());
        let Some((wake_fd, io_fd)) = fds else {
            return;
        };
        // SAFETY: both descriptors belong to the engine, which stays in
        // `self.engine` until this task has returned (see `stop`): they
        // remain open for as long as these registrations live.
        let wake = unsafe { AsyncFd::register(Fd(wake_fd)) };
        let io = io_fd.map(|fd| unsafe { AsyncFd::register(Fd(fd)) });
        let (wake, io) = match (wake, io.transpose()) {
            (Ok(w), Ok(i)) => (w, i),
            _ => {
                fatal(format!(
                    "shard {}: cannot watch the store's descriptors",
                    self.id
                ));
                self.stopped.send_replace(true);
                return;
            }
        };
        let mut done = Vec::new();
        let mut reads = Vec::new();
        loop {
            if self.stopping.load(std::sync::atomic::Ordering::Acquire) {
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
                e.next_deadline()
            };
            for (token, res) in done.drain(..) {
                self.complete(token, res, &fatal);
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
                    Some(d) => tokio::time::sleep_until(d.into()).await,
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
    }

    /// Runs the follow-up of a finished transaction.
    fn complete(&self, token: u64, res: Result<(), StoreError>, fatal: &impl Fn(String)) {
        let Some(p) = self.pending.lock().take(token) else {
            return;
        };
        match res {
            Ok(()) => p.after.run(&p.tx),
            Err(e) => fatal(format!(
                "shard {}: a PG transaction failed after admission: {e}",
                self.id
            )),
        }
    }

    /// Stops the driver and takes the engine back (to give to the store
    /// for unmounting).
    pub async fn stop(&self) -> Option<CommitEngine> {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        self.kick.notify_one();
        let mut rx = self.stopped.subscribe();
        let _ = rx.wait_for(|s| *s).await;
        // Reads not answered yet end with an error (a dropped completer
        // resolves its completion).
        *self.reads.lock() = Slab::default();
        self.engine.lock().take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_objectstore::{CollectionId, Drive, MountOptions, ObjectStore};

    /// A transaction that fails after admission stops the OSD and its
    /// follow-up never runs (the PG's memory may be ahead of its disk);
    /// one that commits runs its follow-up on the shard.
    #[test]
    fn a_failed_transaction_after_admission_is_fatal() {
        let (_dir, dev) = crate::test_store::formatted_device();
        let mut opts = MountOptions::default();
        opts.settings.drive = Drive::External;
        opts.settings.engines = 1;
        let store = ObjectStore::mount(&dev, &opts).expect("mount");
        let engine = store.take_engines().expect("engines").pop().expect("one");
        let shard = ShardStore::new(0, engine, store.checkpoint_stepper());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let fatal = Arc::new(Mutex::new(Vec::<String>::new()));
        let engine = rt.block_on(async {
            let f = fatal.clone();
            let driver = tokio::spawn(shard.clone().drive(move |why| f.lock().push(why)));
            let (tx, mut rx) = mpsc::unbounded_channel();
            let c = CollectionId::new("pg_1.0").expect("cid");
            let mut ok = Transaction::new();
            ok.create_collection(&c);
            let permit = shard.admit().await.expect("admitted");
            shard.submit(ok, permit, tx.clone(), AfterCommit::Tid(1));
            let ev = rx.recv().await.expect("follow-up");
            assert!(matches!(ev, PgEvent::Committed { tid: 1 }));
            assert!(fatal.lock().is_empty());
            // Refused by the store after admission: a write into a
            // collection that does not exist.
            let mut bad = Transaction::new();
            let o = kalmar_objectstore::ObjectId::new(b"x").expect("name");
            bad.write(
                &CollectionId::new("pg_1.1").expect("cid"),
                &o,
                0,
                vec![1u8; 4096],
            );
            let permit = shard.admit().await.expect("admitted");
            shard.submit(bad, permit, tx, AfterCommit::Tid(2));
            tokio::time::timeout(std::time::Duration::from_secs(10), async {
                while fatal.lock().is_empty() {
                    tokio::task::yield_now().await;
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            })
            .await
            .expect("the failure is reported");
            assert!(rx.try_recv().is_err(), "no follow-up for the failed one");
            let engine = shard.stop().await;
            driver.await.expect("driver ends");
            engine
        });
        let why = fatal.lock().join("; ");
        assert!(why.contains("failed after admission"), "{why}");
        store.return_engines(engine.into_iter().collect());
        store.umount().expect("umount");
    }
}
