//! Kalmar's ObjectStore: Ceph's object model on a raw block device or a
//! file, with a write-ahead journal, metadata in RocksDB and a checksum on
//! every data block.
//!
//! # Model
//!
//! A store holds **collections** ([`CollectionId`], e.g. `meta`,
//! `1.1f_head`) of **objects** ([`ObjectId`], byte names up to 4 KiB). An
//! object has data (a sparse byte array up to 1 TiB), xattrs (small named
//! values, kept with the object record) and an omap (an ordered key/value
//! map) with an omap header. All changes are [`Transaction`]s: ordered
//! operations applied atomically — all or nothing.
//!
//! # Writing
//!
//! [`ObjectStore::queue_transaction`] never blocks and returns a
//! [`Commit`], a `Future<Output = Result<(), StoreError>>` that also has a
//! blocking `wait()`. It resolves `Ok` once the transaction is **durable**
//! (its journal record is on stable storage) and visible to reads.
//! Transactions queued together are committed with one journal write
//! (group commit) and commit in queue order, so order within a collection
//! (and across collections) is kept. A refused transaction (`Err`) has no
//! effect. The store never refuses for load: a transaction first takes an
//! admission permit (`max_queued_txns` per engine) and waits for one while
//! the engine is full.
//!
//! The journal is divided into zones, one per commit [`engine`]
//! (`settings.engines`); a collection belongs to one engine
//! ([`MountOptions::placement`]), so order holds per collection. An engine
//! is single-threaded and non-blocking: it is driven by a thread of the
//! store (`Drive::Threads`), by the caller's own event loop
//! (`Drive::External`, [`ObjectStore::take_engines`]; [`EngineDriver`]
//! runs one as a task on a tokio runtime: the OSD's shards, `kalmar-nbd`),
//! inline by the committing caller (`Drive::Inline`), or wholly by the
//! application, checkpoints and reads included, with no thread of the
//! store's own (`Drive::Caller`, the whole-cluster simulator).
//!
//! Metadata is written back: a committed transaction's metadata lives in
//! the journal record and in in-memory layers; a checkpoint writes the
//! sealed layers to the database in one batch (so a hot object's record
//! is written once per checkpoint, not once per write). Collection logs
//! ([`collog`], [`Transaction::log_append`]) are append-only sequences per
//! collection (the OSD's PG log) that cost one database write per log per
//! checkpoint. After a device or database failure the store is *poisoned*:
//! every later write fails with [`StoreError::Poisoned`] and the store must
//! be remounted (which replays the journal).
//!
//! Errors of transaction operations: `CollectionNotFound` for an object
//! operation in a missing collection; `ObjectNotFound` for `remove`,
//! `rmattr`, `omap_rmkeys`, `omap_clear`, `clone` (source) and
//! `collection_move_rename` (source) on a missing object; `ObjectExists`
//! when the move destination exists; `CollectionExists` /
//! `CollectionNotEmpty` for collection operations; `InvalidArgument` for
//! limits ([`types`]); `NoSpace`; `TooLarge` for a transaction whose journal
//! record would exceed `max_record_bytes`. Every other object operation
//! creates a missing object. Each builder method documents its contract.
//!
//! # Reading
//!
//! Reads see committed (durable) state only. The plain methods
//! ([`ObjectStore::read`], [`ObjectStore::stat`], ...) block the calling
//! thread for a metadata lookup and, for `read`, device I/O; metadata-only
//! calls are short (an in-memory or SST lookup). From async code use the
//! `*_async` variants ([`ObjectStore::read_async`], `stat_async`,
//! `getattrs_async`, `omap_iter_async`, `collection_list_async`), which run
//! on the store's reader threads and never block the executor. Every data
//! block read is verified against its crc32c: a mismatch is
//! [`StoreError::Checksum`], never wrong bytes. One read returns at most
//! `max_read_bytes` (256 MiB by default, above the OSD's largest object):
//! the bound on the memory a single call can take.
//!
//! # On disk
//!
//! See [`layout`] (label, two superblocks, journal, data area) and
//! [`journal`] (record format, replay rules). Small writes (up to
//! `deferred_max_bytes`) ride in the journal record (written with FUA) and
//! are written in place afterwards, in sorted bursts; large writes go to
//! newly allocated blocks, written together with the record that points at
//! them and made durable by one flush before anything is acknowledged, so
//! big data is written once. Up to `commit_pipeline_depth` batches are in
//! flight: the next one is prepared and written while the previous one
//! waits for its flush. A checkpoint (device flush, database flush,
//! superblock) trims the journal; space freed by a transaction is reused
//! only after the checkpoint that covers it. Mount replays exactly the
//! committed records and stops at the first torn one; records say how far
//! the journal was durable when they were written, so replay tells a torn
//! tail (dropped, never acknowledged) from corruption in the middle
//! (refused with `JournalCorrupt`).
//!
//! # Devices
//!
//! [`device::UringDevice`] drives a block device or file with O_DIRECT
//! through io_uring and takes an exclusive lock; [`device::FaultyDevice`]
//! keeps a volatile write cache and loses power on command, for tests. The
//! store runs the same code on both ([`ObjectStore::mount_device`]).
//!
//! # Also here
//!
//! [`meta`]: helpers for the `meta` collection (OSD maps and superblock);
//! [`fsck`]: the consistency check; [`perf`]: the `objectstore` perf
//! counters ([`ObjectStore::perf_counters`]).
#![deny(clippy::unwrap_used)]

pub mod alloc;
mod checkpoint;
pub mod collog;
mod completion;
pub mod device;
mod driver;
pub mod engine;
mod error;
mod eventfd;
pub mod fsck;
pub mod inspect;
pub mod journal;
pub mod keys;
pub mod kv;
mod kvcache;
pub mod layer;
pub mod layout;
pub mod meta;
pub mod onode;
mod overlay;
pub mod perf;
mod prepare;
mod read_plan;
mod settings;
mod store;
mod txn;
pub mod types;

pub use bytes::Bytes;
pub use checkpoint::CheckpointRecord;
pub use completion::{pair, Commit, Completer, Completion, ReadFuture};
pub use driver::{CommitDriver, EngineDriver};
pub use engine::{CommitEngine, Notify};
pub use error::{DeviceError, Result, StoreError};
pub use fsck::FsckReport;
pub use settings::{Drive, KvHandle, Media, MkfsOptions, MountOptions, PlacementFn, StoreSettings};
pub use store::{default_db_path, default_placement, CheckpointStepper, ObjectStore, Placement};
pub use txn::{Op, Transaction};
pub use types::{BlockLocation, CollectionId, ObjectId, ObjectStat, StatFs};
