//! The mounted store: shared state, the public handle and its threads.
//!
//! Threads: the caller's (queue, reads); the commit thread (prepare, group
//! commit, journal write); the sync thread (flush, database apply,
//! acknowledgement) when batches are pipelined; the apply thread (deferred
//! writes home, checkpoints); the reader pool (async reads). Locks are held
//! only for in-memory work, never across device I/O.

mod apply;
mod commit;
mod mount;
mod publish;
mod read;
mod readers;

use std::collections::VecDeque;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use kalmar_common::perf::PerfCounters;
use parking_lot::{Condvar, Mutex};
use uuid::Uuid;

pub(crate) use apply::ApplyItem;
pub use mount::default_db_path;

use crate::alloc::Allocator;
use crate::completion::{pair, Commit, Completer, Completion, ReadFuture};
use crate::device::BlockDevice;
use crate::error::StoreError;
use crate::journal::JournalRing;
use crate::kv::Kv;
use crate::layout::{Label, Layout};
use crate::onode::StoreStats;
use crate::overlay::DataOverlay;
use crate::settings::{MkfsOptions, MountOptions, StoreSettings};
use crate::txn::Transaction;
use crate::types::{CollectionId, ObjectId, ObjectStat, StatFs};

pub(crate) struct Queued {
    pub txn: Transaction,
    pub done: Completer<()>,
    pub queued_at: Instant,
    /// Already retried once after a checkpoint freed space.
    pub space_retried: bool,
}

#[derive(Default)]
pub(crate) struct SubmitQueue {
    pub txns: VecDeque<Queued>,
    pub shutdown: bool,
}

pub(crate) struct Space {
    pub ring: JournalRing,
    /// Highest record sequence number covered by a checkpoint.
    pub checkpointed_seq: u64,
}

#[derive(Default)]
pub(crate) struct WrittenQueue {
    pub items: VecDeque<publish::Written>,
    pub shutdown: bool,
}

#[derive(Default)]
pub(crate) struct ApplyQueue {
    pub items: VecDeque<ApplyItem>,
    pub unapplied_bytes: u64,
    pub checkpoint_requested: bool,
    pub shutdown: bool,
}

/// State shared by the handle and the store's threads.
pub(crate) struct Shared {
    pub dev: Arc<dyn BlockDevice>,
    pub kv: Kv,
    pub label: Label,
    pub layout: Layout,
    pub settings: StoreSettings,
    pub perf: Arc<PerfCounters>,
    pub alloc: Mutex<Allocator>,
    pub overlay: DataOverlay,
    pub queue: Mutex<SubmitQueue>,
    pub queue_cv: Condvar,
    pub space: Mutex<Space>,
    pub space_cv: Condvar,
    pub apply_q: Mutex<ApplyQueue>,
    pub apply_cv: Condvar,
    /// Batches written but not yet published, oldest first.
    pub inflight: Mutex<VecDeque<Arc<crate::prepare::InFlight>>>,
    /// Written batches waiting for the sync thread.
    pub written: Mutex<WrittenQueue>,
    pub written_cv: Condvar,
    /// Every record up to this one is durable and published.
    pub durable_seq: AtomicU64,
    poisoned: AtomicBool,
    poison_reason: Mutex<Option<String>>,
    /// Committed store statistics.
    pub stats: Mutex<StoreStats>,
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
        self.queue_cv.notify_all();
        self.space_cv.notify_all();
        self.apply_cv.notify_all();
        self.written_cv.notify_all();
    }

    pub fn poisoned(&self) -> Option<String> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        self.poison_reason.lock().clone()
    }
}

struct Threads {
    commit: JoinHandle<commit::CommitExit>,
    sync: Option<JoinHandle<()>>,
    apply: Option<JoinHandle<apply::Applier>>,
    readers: readers::ReaderPool,
}

/// A mounted object store. See the crate documentation for the contract of
/// each call. `Send + Sync`: share it in an `Arc`.
pub struct ObjectStore {
    sh: Arc<Shared>,
    threads: Mutex<Option<Threads>>,
}

impl ObjectStore {
    /// Formats `path` (a block device or a regular file) as an empty store.
    pub fn mkfs(path: &Path, opts: &MkfsOptions) -> Result<(), StoreError> {
        mount::mkfs(path, opts)
    }

    /// Mounts the store on `path`: checks the label, takes the device's
    /// exclusive lock, replays the journal and starts the store's threads.
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
        let (sh, commit_state, applier) = mount::mount(dev, path, opts)?;
        let sh = Arc::new(sh);
        let (apply_thread, inline) = if sh.settings.apply_inline {
            (None, Some(applier))
        } else {
            let sh2 = sh.clone();
            (
                Some(spawn("kalmar-os-apply", move || apply::run(sh2, applier))?),
                None,
            )
        };
        let sync = if commit::pipelined(&sh) {
            let sh2 = sh.clone();
            Some(spawn("kalmar-os-sync", move || publish::run(sh2))?)
        } else {
            None
        };
        let sh2 = sh.clone();
        let commit = spawn("kalmar-os-commit", move || {
            commit::run(sh2, commit_state, inline)
        })?;
        let readers = readers::ReaderPool::start(sh.clone())?;
        Ok(ObjectStore {
            sh,
            threads: Mutex::new(Some(Threads {
                commit,
                sync,
                apply: apply_thread,
                readers,
            })),
        })
    }

    /// Applies every committed transaction, checkpoints, marks the store
    /// clean and stops its threads. Queued transactions are committed
    /// first. Later calls fail with `Unmounted`. Dropping the store
    /// unmounts it too (errors are then only logged).
    pub fn umount(&self) -> Result<(), StoreError> {
        let Some(t) = self.threads.lock().take() else {
            return Err(StoreError::Unmounted);
        };
        t.readers.stop();
        self.sh.queue.lock().shutdown = true;
        self.sh.queue_cv.notify_all();
        let exit = t
            .commit
            .join()
            .map_err(|_| StoreError::Poisoned("commit thread panicked".into()))?;
        if let Some(h) = t.sync {
            self.sh.written.lock().shutdown = true;
            self.sh.written_cv.notify_all();
            h.join()
                .map_err(|_| StoreError::Poisoned("sync thread panicked".into()))?;
        }
        let applier = match t.apply {
            Some(h) => {
                self.sh.apply_q.lock().shutdown = true;
                self.sh.apply_cv.notify_all();
                Some(
                    h.join()
                        .map_err(|_| StoreError::Poisoned("apply thread panicked".into()))?,
                )
            }
            None => exit.applier,
        };
        if let Some(reason) = self.sh.poisoned() {
            return Err(StoreError::Poisoned(reason));
        }
        match applier {
            Some(mut a) => a.checkpoint(&self.sh, true),
            None => Ok(()),
        }
    }

    /// Stops the threads without a final checkpoint, as a crash would
    /// leave the store (acknowledged transactions are in the journal).
    /// For tests of replay.
    #[doc(hidden)]
    pub fn abandon(&self) {
        if let Some(t) = self.threads.lock().take() {
            self.sh.poison("abandoned");
            t.readers.stop();
            self.sh.queue.lock().shutdown = true;
            self.sh.apply_q.lock().shutdown = true;
            self.sh.queue_cv.notify_all();
            self.sh.apply_cv.notify_all();
            let _ = t.commit.join();
            if let Some(h) = t.sync {
                self.sh.written.lock().shutdown = true;
                self.sh.written_cv.notify_all();
                let _ = h.join();
            }
            if let Some(h) = t.apply {
                let _ = h.join();
            }
        }
    }

    /// Queues a transaction; the returned [`Commit`] resolves once it is
    /// durable (or refused). Never blocks: beyond `max_queued_txns` the
    /// commit fails at once with `Throttled`. Transactions commit in queue
    /// order.
    pub fn queue_transaction(&self, txn: Transaction) -> Commit {
        self.queue_transactions(vec![txn])
            .pop()
            .unwrap_or_else(|| Completion::ready(Ok(())))
    }

    /// Queues several transactions at once (they are seen together, so
    /// they share a group commit when the bounds allow).
    pub fn queue_transactions(&self, txns: Vec<Transaction>) -> Vec<Commit> {
        if let Some(reason) = self.sh.poisoned() {
            return txns
                .iter()
                .map(|_| Completion::ready(Err(StoreError::Poisoned(reason.clone()))))
                .collect();
        }
        let now = Instant::now();
        let mut q = self.sh.queue.lock();
        if q.shutdown {
            return txns
                .iter()
                .map(|_| Completion::ready(Err(StoreError::Unmounted)))
                .collect();
        }
        let limit = self.sh.settings.max_queued_txns;
        let mut out = Vec::with_capacity(txns.len());
        for txn in txns {
            if q.txns.len() >= limit {
                out.push(Completion::ready(Err(StoreError::Throttled { limit })));
                continue;
            }
            let (tx, rx) = pair();
            q.txns.push_back(Queued {
                txn,
                done: tx,
                queued_at: now,
                space_retried: false,
            });
            out.push(rx);
        }
        drop(q);
        self.sh.queue_cv.notify_one();
        out
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

    /// Space and object counts of the whole store.
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

    fn spawn_read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> Result<T, StoreError> + Send + 'static,
    ) -> ReadFuture<T> {
        match self.threads.lock().as_ref() {
            Some(t) => t.readers.spawn(f),
            None => Completion::ready(Err(StoreError::Unmounted)),
        }
    }
}

impl Drop for ObjectStore {
    fn drop(&mut self) {
        if self.threads.lock().is_some() {
            if let Err(e) = self.umount() {
                tracing::warn!(error = %e, "umount on drop failed");
            }
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
