//! The mounted store: shared state, the public handle, and who drives the
//! commit engines.
//!
//! Three ways to drive them ([`Drive`]): the store's own threads (one per
//! engine, plus the checkpointer), the application's threads (an OSD shard
//! per engine: [`ObjectStore::take_engines`]), or inline on whichever
//! thread waits for a commit (deterministic, for seeded tests and the
//! simulator). Reads run on the caller's thread (the plain calls) or on
//! the reader pool (`*_async`).

mod mount;
mod read;
mod readers;

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use kalmar_common::perf::PerfCounters;
use parking_lot::Mutex;
use uuid::Uuid;

/// What [`ObjectStore::admit`] decided for one transaction.
enum Admission {
    /// A permit was free: push the transaction to engine (zone) `.0`.
    Now(usize, Queued, crate::Commit),
    /// The commit waits for room itself, or carries a refusal.
    Later(crate::Commit),
}

pub use mount::default_db_path;
pub(crate) use mount::write_superblock;

use crate::alloc::Allocator;
use crate::checkpoint::Checkpointer;
use crate::completion::{pair, Completion, ReadFuture};
use crate::device::BlockDevice;
use crate::engine::{CommitEngine, EngineShared, Notify, Queued};
use crate::error::StoreError;
use crate::kv::KvStore;
use crate::layout::{Label, Layout};
use crate::settings::{Drive, MkfsOptions, MountOptions, StoreSettings};
use crate::txn::{Op, Transaction};
use crate::types::{CollectionId, ObjectId, ObjectStat, StatFs};

/// Which engine a collection lives on.
pub type Placement = Arc<dyn Fn(&CollectionId) -> usize + Send + Sync>;

/// The default placement: `meta` on engine 0, other collections by hash.
pub fn default_placement(engines: usize) -> Placement {
    Arc::new(move |c: &CollectionId| {
        if engines <= 1 || c.as_str() == "meta" {
            0
        } else {
            crc32c::crc32c(c.as_str().as_bytes()) as usize % engines
        }
    })
}

/// State shared by the handle, the engines and the checkpointer.
pub(crate) struct Shared {
    pub dev: Arc<dyn BlockDevice>,
    pub kv: Arc<dyn KvStore>,
    pub label: Label,
    pub layout: Layout,
    pub settings: StoreSettings,
    pub perf: Arc<PerfCounters>,
    pub alloc: Mutex<Allocator>,
    /// Blocks in use and blocks not allocatable, mirrored from the
    /// allocator so `statfs` takes no lock.
    pub used_blocks: AtomicU64,
    pub busy_blocks: AtomicU64,
    pub next_nid: AtomicU64,
    /// The store counters as published.
    pub stats_objects: AtomicI64,
    pub stats_bytes: AtomicI64,
    pub engines: Vec<Arc<EngineShared>>,
    pub checkpointer: Checkpointer,
    /// This mount's generation (journal records carry it).
    pub generation: u64,
    pub placement: Placement,
    poisoned: AtomicBool,
    poison_reason: Mutex<Option<String>>,
    pub db_path: PathBuf,
}

impl Shared {
    /// Stops all writes after a failure that may have lost data.
    pub fn poison(&self, reason: &str) {
        let mut r = self.poison_reason.lock();
        if r.is_none() {
            tracing::error!(reason, "object store poisoned: refusing further writes");
            *r = Some(reason.to_string());
        }
        self.poisoned.store(true, Ordering::Release);
        drop(r);
        for e in &self.engines {
            e.wake.signal();
        }
        self.checkpointer.shutdown();
    }

    pub fn poisoned(&self) -> Option<String> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        self.poison_reason.lock().clone()
    }

    /// Copies the allocator's counts for lock-free `statfs`.
    pub fn sync_alloc_stats(&self, a: &Allocator) {
        self.used_blocks.store(a.used_blocks(), Ordering::Relaxed);
        self.busy_blocks
            .store(a.total_blocks() - a.free_blocks(), Ordering::Relaxed);
    }

    /// The engine of a collection.
    pub fn engine_of(&self, c: &CollectionId) -> usize {
        (self.placement)(c).min(self.engines.len().saturating_sub(1))
    }

    /// The engine a transaction runs on: that of every collection it names.
    fn route(&self, txn: &Transaction) -> Result<usize, StoreError> {
        let mut engine = None;
        for op in &txn.ops {
            for c in op_collections(op) {
                let e = self.engine_of(c);
                match engine {
                    None => engine = Some(e),
                    Some(x) if x == e => {}
                    Some(_) => {
                        return Err(StoreError::InvalidArgument(
                            "a transaction names collections of different engines".into(),
                        ))
                    }
                }
            }
        }
        Ok(engine.unwrap_or(0))
    }
}

fn op_collections(op: &Op) -> impl Iterator<Item = &CollectionId> {
    let (a, b) = match op {
        Op::CreateCollection(c) | Op::RemoveCollection(c) => (Some(c), None),
        Op::Touch(c, _) | Op::Remove(c, _) | Op::OmapClear(c, _) | Op::LogClear(c) => {
            (Some(c), None)
        }
        Op::LogAppend { cid, .. } | Op::LogTrim { cid, .. } => (Some(cid), None),
        Op::Write { cid, .. }
        | Op::Zero { cid, .. }
        | Op::Truncate { cid, .. }
        | Op::Clone { cid, .. }
        | Op::SetAttrs { cid, .. }
        | Op::RmAttr { cid, .. }
        | Op::OmapSetKeys { cid, .. }
        | Op::OmapRmKeys { cid, .. }
        | Op::OmapSetHeader { cid, .. } => (Some(cid), None),
        Op::CollectionMoveRename {
            src_cid, dst_cid, ..
        } => (Some(src_cid), Some(dst_cid)),
    };
    a.into_iter().chain(b)
}

/// The engines driven inline, by whoever waits for a commit.
pub(crate) struct InlineDriver {
    pub sh: Arc<Shared>,
    pub engines: Mutex<Vec<CommitEngine>>,
}

impl InlineDriver {
    /// Polls every engine once and advances a checkpoint round. Returns
    /// whether anything happened.
    pub fn step(&self) -> bool {
        let mut engines = self.engines.lock();
        let mut progress = false;
        for e in engines.iter_mut() {
            e.set_draining();
            progress |= e.poll();
        }
        progress |= crate::checkpoint::inline_step(&self.sh);
        progress
    }
}

/// Steps the checkpoints of a store mounted with [`Drive::Caller`]. The
/// application calls [`CheckpointStepper::step`] after polling its
/// engines, and again after polling them while it returns true (a round
/// needs every engine's report before it finishes). Every driver of an
/// engine steps: whichever sees the last report finishes the round.
#[derive(Clone)]
pub struct CheckpointStepper {
    sh: Arc<Shared>,
}

impl CheckpointStepper {
    /// Starts a due round or finishes one whose reports are all in;
    /// whether anything happened.
    pub fn step(&self) -> bool {
        if self.sh.poisoned().is_some() {
            return false;
        }
        crate::checkpoint::inline_step(&self.sh)
    }
}

/// Who drives the engines of this mount.
enum Runtime {
    Threads {
        stop: Arc<AtomicBool>,
        engines: Vec<JoinHandle<CommitEngine>>,
    },
    External {
        /// Until taken by the application, and once given back.
        engines: Vec<CommitEngine>,
        taken: bool,
    },
    Inline(Arc<InlineDriver>),
}

struct Running {
    runtime: Runtime,
    checkpointer: Option<JoinHandle<()>>,
    readers: readers::ReaderPool,
}

/// A mounted object store. See the crate documentation for the contract of
/// each call. `Send + Sync`: share it in an `Arc`.
pub struct ObjectStore {
    sh: Arc<Shared>,
    running: Mutex<Option<Running>>,
    /// Set when unmounting: new transactions are refused.
    closing: AtomicBool,
    inline: Option<Arc<InlineDriver>>,
}

impl ObjectStore {
    /// Formats `path` (a block device or a regular file) as an empty store.
    pub fn mkfs(path: &Path, opts: &MkfsOptions) -> Result<(), StoreError> {
        mount::mkfs(path, opts)
    }

    /// The data capacity (what `statfs` will report as total bytes) that
    /// [`ObjectStore::mkfs`] with `opts` gives a store on `path`; writes
    /// nothing. An OSD registers with its CRUSH weight from it before it
    /// formats the device.
    pub fn planned_capacity(path: &Path, opts: &MkfsOptions) -> Result<u64, StoreError> {
        mount::planned_capacity(path, opts)
    }

    /// Mounts the store on `path`: checks the label, takes the device's
    /// exclusive lock, replays the journal and starts the store's engines.
    pub fn mount(path: &Path, opts: &MountOptions) -> Result<ObjectStore, StoreError> {
        let dev = Arc::new(crate::device::UringDevice::open(
            path,
            opts.settings.uring.clone(),
        )?);
        ObjectStore::mount_device(dev, path, opts)
    }

    /// Formats a store on any [`BlockDevice`] (e.g. the fault-injecting one).
    pub fn mkfs_device(dev: &dyn BlockDevice, opts: &MkfsOptions) -> Result<(), StoreError> {
        mount::mkfs_on(dev, opts)
    }

    /// Mounts a store on any [`BlockDevice`]; `path` locates the metadata
    /// directory when `opts.db_path` is unset.
    pub fn mount_device(
        dev: Arc<dyn BlockDevice>,
        path: &Path,
        opts: &MountOptions,
    ) -> Result<ObjectStore, StoreError> {
        let (sh, engines) = mount::mount(dev, path, opts)?;
        let readers = readers::ReaderPool::start(sh.clone())?;
        let mut inline = None;
        let (runtime, checkpointer) = match sh.settings.drive {
            Drive::Threads => {
                let stop = Arc::new(AtomicBool::new(false));
                let mut handles = Vec::new();
                for e in engines {
                    let stop = stop.clone();
                    handles.push(spawn(&format!("kalmar-os-eng{}", e.index()), move || {
                        run_engine(e, stop)
                    })?);
                }
                let sh2 = sh.clone();
                let cp = spawn("kalmar-os-ckpt", move || crate::checkpoint::run_thread(sh2))?;
                (
                    Runtime::Threads {
                        stop,
                        engines: handles,
                    },
                    Some(cp),
                )
            }
            Drive::External => {
                let sh2 = sh.clone();
                let cp = spawn("kalmar-os-ckpt", move || crate::checkpoint::run_thread(sh2))?;
                (
                    Runtime::External {
                        engines,
                        taken: false,
                    },
                    Some(cp),
                )
            }
            // The application steps the checkpoints itself.
            Drive::Caller => (
                Runtime::External {
                    engines,
                    taken: false,
                },
                None,
            ),
            Drive::Inline => {
                let d = Arc::new(InlineDriver {
                    sh: sh.clone(),
                    engines: Mutex::new(engines),
                });
                inline = Some(d.clone());
                (Runtime::Inline(d), None)
            }
        };
        Ok(ObjectStore {
            sh,
            running: Mutex::new(Some(Running {
                runtime,
                checkpointer,
                readers,
            })),
            closing: AtomicBool::new(false),
            inline,
        })
    }

    /// With [`Drive::External`]: hands the engines to the application,
    /// whose threads then drive them (see [`CommitEngine`]). Give them back
    /// with [`ObjectStore::return_engines`] before unmounting.
    pub fn take_engines(&self) -> Result<Vec<CommitEngine>, StoreError> {
        let mut r = self.running.lock();
        match r.as_mut().map(|r| &mut r.runtime) {
            Some(Runtime::External { engines, taken }) if !*taken => {
                *taken = true;
                Ok(std::mem::take(engines))
            }
            _ => Err(StoreError::InvalidArgument(
                "the engines are not available (mounted with another Drive, or taken)".into(),
            )),
        }
    }

    /// Gives back the engines taken with [`ObjectStore::take_engines`], in
    /// any order.
    pub fn return_engines(&self, mut back: Vec<CommitEngine>) {
        if let Some(Runtime::External { engines, .. }) =
            self.running.lock().as_mut().map(|r| &mut r.runtime)
        {
            engines.append(&mut back);
            engines.sort_by_key(|e| e.index());
        }
    }

    /// How many engines (journal zones) this mount runs.
    pub fn engines(&self) -> usize {
        self.sh.engines.len()
    }

    /// The engine a collection lives on.
    pub fn engine_of(&self, c: &CollectionId) -> usize {
        self.sh.engine_of(c)
    }

    /// Commits every queued transaction, writes every journaled block
    /// home, checkpoints, marks the store clean and stops its threads.
    /// Later calls fail with `Unmounted`. Dropping the store unmounts it
    /// too (errors are then only logged).
    pub fn umount(&self) -> Result<(), StoreError> {
        let Some(running) = self.running.lock().take() else {
            return Err(StoreError::Unmounted);
        };
        self.closing.store(true, Ordering::Release);
        running.readers.stop();
        let engines = self.collect_engines(running.runtime)?;
        self.sh.checkpointer.shutdown();
        if let Some(h) = running.checkpointer {
            h.join()
                .map_err(|_| StoreError::Poisoned("checkpoint thread panicked".into()))?;
        }
        if let Some(reason) = self.sh.poisoned() {
            return Err(StoreError::Poisoned(reason));
        }
        let driver = InlineDriver {
            sh: self.sh.clone(),
            engines: Mutex::new(engines),
        };
        mount::quiesce_and_close(&driver)
    }

    /// The engines back from whoever drove them.
    fn collect_engines(&self, rt: Runtime) -> Result<Vec<CommitEngine>, StoreError> {
        match rt {
            Runtime::Threads { stop, engines } => {
                stop.store(true, Ordering::Release);
                for e in &self.sh.engines {
                    e.wake.signal();
                }
                let mut out = Vec::new();
                for h in engines {
                    out.push(
                        h.join()
                            .map_err(|_| StoreError::Poisoned("engine thread panicked".into()))?,
                    );
                }
                Ok(out)
            }
            Runtime::External { engines, .. } => {
                if engines.len() != self.sh.engines.len() {
                    return Err(StoreError::InvalidArgument(
                        "unmount before the application gave back every engine".into(),
                    ));
                }
                Ok(engines)
            }
            Runtime::Inline(d) => Ok(std::mem::take(&mut *d.engines.lock())),
        }
    }

    /// Stops without a final checkpoint, as a crash would leave the store
    /// (acknowledged transactions are in the journal). For tests of replay.
    #[doc(hidden)]
    pub fn abandon(&self) {
        if let Some(running) = self.running.lock().take() {
            self.sh.poison("abandoned");
            running.readers.stop();
            if let Ok(engines) = self.collect_engines(running.runtime) {
                drop(engines);
            }
            if let Some(h) = running.checkpointer {
                let _ = h.join();
            }
        }
    }

    /// Queues a transaction; the returned [`Commit`] resolves once it is
    /// durable (or refused). When the engine already holds
    /// `max_queued_txns` transactions, the commit first waits for room
    /// (never an error). Transactions of one engine commit in queue order.
    ///
    /// [`Commit`]: crate::Commit
    pub fn queue_transaction(&self, txn: Transaction) -> crate::Commit {
        self.driven(self.submit(txn))
    }

    /// `commit`, which in inline driving runs the engines while waited on.
    fn driven(&self, commit: crate::Commit) -> crate::Commit {
        match &self.inline {
            Some(d) => commit.driven_by(d.clone()),
            None => commit,
        }
    }

    fn submit(&self, txn: Transaction) -> crate::Commit {
        match self.admit(txn) {
            Admission::Now(zone, queued, commit) => {
                self.sh.engines[zone].push(queued);
                commit
            }
            Admission::Later(commit) => commit,
        }
    }

    /// Takes an admission permit for `txn` if one is free at once (the
    /// caller pushes it); otherwise the commit waits for room itself, or
    /// carries the refusal.
    fn admit(&self, txn: Transaction) -> Admission {
        if let Some(reason) = self.sh.poisoned() {
            return Admission::Later(Completion::ready(Err(StoreError::Poisoned(reason))));
        }
        if self.closing.load(Ordering::Acquire) {
            return Admission::Later(Completion::ready(Err(StoreError::Unmounted)));
        }
        let zone = match self.sh.route(&txn) {
            Ok(z) => z,
            Err(e) => return Admission::Later(Completion::ready(Err(e))),
        };
        let es = self.sh.engines[zone].clone();
        let (tx, rx) = pair();
        let queued = move |permit| Queued {
            txn,
            notify: Notify::Completer(tx),
            queued_at: std::time::Instant::now(),
            permit: Some(permit),
            space_retried: false,
        };
        match es.admission.clone().try_acquire_owned() {
            Ok(permit) => Admission::Now(zone, queued(permit), rx),
            // Full: wait for room, then queue.
            Err(_) => Admission::Later(Completion::from_future(async move {
                let permit = es
                    .admission
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| StoreError::Unmounted)?;
                es.push(queued(permit));
                rx.await
            })),
        }
    }

    /// Queues several transactions at once, in order. Those admitted at
    /// once reach their engine together and are prepared as one batch
    /// (a later one sees what an earlier one created or undid).
    pub fn queue_transactions(&self, txns: Vec<Transaction>) -> Vec<crate::Commit> {
        let mut commits = Vec::with_capacity(txns.len());
        // Admitted, not yet pushed, per engine.
        let mut held: Vec<Vec<Queued>> = self.sh.engines.iter().map(|_| Vec::new()).collect();
        let mut waiting = false;
        for txn in txns {
            if waiting {
                // One already waits for room: the rest queue behind it.
                commits.push(self.submit(txn));
                continue;
            }
            match self.admit(txn) {
                Admission::Now(zone, queued, commit) => {
                    held[zone].push(queued);
                    commits.push(commit);
                }
                Admission::Later(commit) => {
                    self.push_held(&mut held);
                    waiting = true;
                    commits.push(commit);
                }
            }
        }
        self.push_held(&mut held);
        commits.into_iter().map(|c| self.driven(c)).collect()
    }

    /// Pushes admitted transactions, each engine's in one go and in order.
    fn push_held(&self, held: &mut [Vec<Queued>]) {
        for (es, qs) in self.sh.engines.iter().zip(held) {
            if !qs.is_empty() {
                es.push_all(qs.drain(..));
            }
        }
    }

    /// Queues `txn` and blocks until it is durable.
    pub fn apply_transaction(&self, txn: Transaction) -> Result<(), StoreError> {
        self.queue_transaction(txn).wait()
    }

    /// Reads up to `len` bytes at `offset` (fewer at the end of the object,
    /// none past it). Holes read as zeros. Every block is checksummed: a
    /// mismatch is a `Checksum` error, never wrong bytes. Blocking; see
    /// [`ObjectStore::read_async`].
    pub fn read(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, StoreError> {
        self.sh.read(cid, oid, offset, len)
    }

    /// [`ObjectStore::read`] on the store's reader threads; the future
    /// never blocks the executor.
    pub fn read_async(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        offset: u64,
        len: u64,
    ) -> ReadFuture<Bytes> {
        let (c, o) = (cid.clone(), oid.clone());
        self.spawn_read(move |sh| sh.read(&c, &o, offset, len))
    }

    /// Size and allocation of an object; `ObjectNotFound` if missing.
    pub fn stat(&self, cid: &CollectionId, oid: &ObjectId) -> Result<ObjectStat, StoreError> {
        self.sh.stat(cid, oid)
    }

    /// The size of an object in bytes (its record only: cheaper than
    /// [`ObjectStore::stat`], which counts allocated blocks).
    pub fn size(&self, cid: &CollectionId, oid: &ObjectId) -> Result<u64, StoreError> {
        self.sh.size(cid, oid)
    }

    pub fn stat_async(&self, cid: &CollectionId, oid: &ObjectId) -> ReadFuture<ObjectStat> {
        let (c, o) = (cid.clone(), oid.clone());
        self.spawn_read(move |sh| sh.stat(&c, &o))
    }

    /// Where each mapped data block of an object lives on the device, in
    /// block order (holes are left out). For offline inspection: blocks
    /// written since the last checkpoint may still be served from the
    /// journal, so the home copy is current only after a clean unmount.
    pub fn block_map(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
    ) -> Result<Vec<crate::types::BlockLocation>, StoreError> {
        self.sh.block_map(cid, oid)
    }

    /// True if the object exists (false also for a missing collection).
    pub fn exists(&self, cid: &CollectionId, oid: &ObjectId) -> Result<bool, StoreError> {
        self.sh.exists(cid, oid)
    }

    /// One xattr, `None` if absent; `ObjectNotFound` if the object is.
    pub fn getattr(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        name: &str,
    ) -> Result<Option<Bytes>, StoreError> {
        self.sh.getattr(cid, oid, name)
    }

    /// All xattrs in name order.
    pub fn getattrs(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
    ) -> Result<Vec<(String, Bytes)>, StoreError> {
        self.sh.getattrs(cid, oid)
    }

    pub fn getattrs_async(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
    ) -> ReadFuture<Vec<(String, Bytes)>> {
        let (c, o) = (cid.clone(), oid.clone());
        self.spawn_read(move |sh| sh.getattrs(&c, &o))
    }

    /// The omap header, `None` if never set.
    pub fn omap_get_header(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
    ) -> Result<Option<Bytes>, StoreError> {
        self.sh.omap_get_header(cid, oid)
    }

    /// Values of the given keys (absent keys are left out), in key order.
    pub fn omap_get_values(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        keys: &[Bytes],
    ) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        self.sh.omap_get_values(cid, oid, keys)
    }

    /// Omap entries in key order within `(start, end)` bounds, at most
    /// `limit`. `Bound::Excluded(k)` as start is "start after k".
    pub fn omap_iter(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        self.sh.omap_iter(cid, oid, start, end, limit)
    }

    pub fn omap_iter_async(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        limit: usize,
    ) -> ReadFuture<Vec<(Bytes, Bytes)>> {
        let (c, o) = (cid.clone(), oid.clone());
        self.spawn_read(move |sh| {
            sh.omap_iter(
                &c,
                &o,
                start.as_ref().map(|v| &v[..]),
                end.as_ref().map(|v| &v[..]),
                limit,
            )
        })
    }

    /// The entries of collection `cid`'s log in key order (see
    /// [`Transaction::log_append`]). `CollectionNotFound` if missing.
    pub fn log_read(&self, cid: &CollectionId) -> Result<Vec<(u128, Bytes)>, StoreError> {
        self.sh.log_read(cid)
    }

    pub fn log_read_async(&self, cid: &CollectionId) -> ReadFuture<Vec<(u128, Bytes)>> {
        let c = cid.clone();
        self.spawn_read(move |sh| sh.log_read(&c))
    }

    /// Every collection, in id order.
    pub fn list_collections(&self) -> Result<Vec<CollectionId>, StoreError> {
        self.sh.list_collections()
    }

    pub fn collection_exists(&self, cid: &CollectionId) -> Result<bool, StoreError> {
        self.sh.collection_exists(cid)
    }

    /// Objects of `cid` in bytewise name order, starting at `start`
    /// (inclusive; `None` for the first), at most `limit`. Returns the
    /// objects and the name to pass as `start` for the next page (`None`
    /// when the listing is complete). `CollectionNotFound` if missing.
    pub fn collection_list(
        &self,
        cid: &CollectionId,
        start: Option<&ObjectId>,
        limit: usize,
    ) -> Result<(Vec<ObjectId>, Option<ObjectId>), StoreError> {
        self.sh.collection_list(cid, start, limit)
    }

    pub fn collection_list_async(
        &self,
        cid: &CollectionId,
        start: Option<ObjectId>,
        limit: usize,
    ) -> ReadFuture<(Vec<ObjectId>, Option<ObjectId>)> {
        let c = cid.clone();
        self.spawn_read(move |sh| sh.collection_list(&c, start.as_ref(), limit))
    }

    /// Space and object counts of the whole store (no lock taken).
    pub fn statfs(&self) -> Result<StatFs, StoreError> {
        Ok(self.sh.statfs())
    }

    /// The `objectstore` perf counters; add them to a daemon's
    /// `PerfCollection` to serve them on its admin socket.
    pub fn perf_counters(&self) -> Arc<PerfCounters> {
        self.sh.perf.clone()
    }

    pub fn fsid(&self) -> Uuid {
        self.sh.label.fsid
    }

    pub fn osd_uuid(&self) -> Uuid {
        self.sh.label.osd_uuid
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.sh.settings
    }

    /// Where the metadata database lives.
    pub fn db_path(&self) -> &Path {
        &self.sh.db_path
    }

    /// Checks the whole store; see [`crate::fsck`].
    pub fn fsck(&self, deep: bool) -> Result<crate::fsck::FsckReport, StoreError> {
        crate::fsck::run(&self.sh, deep)
    }

    /// With [`Drive::Caller`]: what the application calls to run the
    /// store's checkpoints (None with any other drive, whose checkpoints
    /// run on their own).
    pub fn checkpoint_stepper(&self) -> Option<CheckpointStepper> {
        (self.sh.settings.drive == Drive::Caller).then(|| CheckpointStepper {
            sh: self.sh.clone(),
        })
    }

    /// Runs `f` (blocking store calls: metadata lookups, listings) where
    /// the `*_async` reads run: on a reader thread, or on the calling
    /// thread with [`Drive::Caller`]. For async callers that must not
    /// block their executor.
    pub fn run_read<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> ReadFuture<T> {
        self.spawn_read(move |_| f())
    }

    fn spawn_read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> Result<T, StoreError> + Send + 'static,
    ) -> ReadFuture<T> {
        match self.running.lock().as_ref() {
            Some(r) => r.readers.spawn(f),
            None => Completion::ready(Err(StoreError::Unmounted)),
        }
    }
}

impl Drop for ObjectStore {
    fn drop(&mut self) {
        if self.running.lock().is_some() {
            if let Err(e) = self.umount() {
                tracing::warn!(error = %e, "umount on drop failed");
            }
        }
    }
}

/// An engine's own thread (threaded driving): poll, then sleep on its
/// descriptors until woken or its next deadline.
fn run_engine(mut e: CommitEngine, stop: Arc<AtomicBool>) -> CommitEngine {
    loop {
        let stopping = stop.load(Ordering::Acquire);
        if stopping {
            e.set_draining();
        }
        let progress = e.poll();
        if let Some(reason) = e.sh.poisoned() {
            e.close(StoreError::Poisoned(reason));
            return e;
        }
        if stopping && e.is_idle() {
            return e;
        }
        // `poll` consumed the wake-up: a stop signalled after the check
        // above left nothing to wake the wait below (an unmount then
        // waited forever for this thread). Look again before sleeping.
        if progress || (!stopping && stop.load(Ordering::Acquire)) {
            continue;
        }
        let (wake, io) = e.event_fds();
        let timeout_ms = match e.next_deadline() {
            Some(d) => d
                .saturating_duration_since(std::time::Instant::now())
                .as_millis()
                .min(i32::MAX as u128) as i32,
            None => -1,
        };
        match io {
            Some(fd) => crate::eventfd::wait_readable(&[wake, fd], timeout_ms),
            None if e.io_in_flight() > 0 => {}
            None => crate::eventfd::wait_readable(&[wake], timeout_ms),
        }
    }
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, StoreError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(|e| StoreError::Poisoned(format!("cannot start thread {name}: {e}")))
}
