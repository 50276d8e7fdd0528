//! Every bound and tunable of the store, by name, with its default.

use std::path::PathBuf;

use uuid::Uuid;

use crate::device::UringOptions;
use crate::kv::KvOptions;

/// Runtime settings (defaults suit an SSD or NVMe device).
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Writes of at most this many bytes ride in the journal and are
    /// applied in place later; larger writes go to new space directly.
    pub deferred_max_bytes: u64,
    /// Deferred data one transaction may carry; beyond it, writes of that
    /// transaction take the big-write path.
    pub deferred_txn_max_bytes: u64,
    /// Batches written but not yet durable at once: with 2 or more, the
    /// next batch is prepared and written while the previous one waits for
    /// its flush. 1 runs every batch to completion first. `apply_inline`
    /// forces 1.
    pub commit_pipeline_depth: usize,
    /// Most transactions in one group commit.
    pub max_batch_txns: usize,
    /// Most payload bytes (data, attrs, omap) in one group commit.
    pub max_batch_bytes: u64,
    /// Most transactions queued and not yet committing; beyond it,
    /// `queue_transaction` fails with `Throttled`.
    pub max_queued_txns: usize,
    /// Largest journal record; a transaction needing more is refused with
    /// `TooLarge`. Clamped to a quarter of the journal.
    pub max_record_bytes: u64,
    /// Largest object `clone` copies (its data is copied at commit).
    pub max_clone_bytes: u64,
    /// Checkpoint at least this often when anything was committed.
    pub checkpoint_interval_ms: u64,
    /// Checkpoint when the journal is fuller than this (percent).
    pub checkpoint_journal_percent: u64,
    /// Deferred data committed but not yet written home, at most; commits
    /// wait beyond it.
    pub max_unapplied_bytes: u64,
    /// Journaled data is written home once this much is waiting...
    pub apply_min_bytes: u64,
    /// ... or once the oldest waited this long, so that home writes go out
    /// in sorted bursts instead of one behind every commit.
    pub apply_max_delay_ms: u64,
    /// Most block writes per deferred-apply submission.
    pub apply_batch_ios: usize,
    /// Largest single device read or write.
    pub max_io_bytes: u64,
    /// Largest `read` (after clamping to the object size); larger reads
    /// fail with `InvalidArgument`: read in pieces.
    pub max_read_bytes: u64,
    /// Threads serving the `*_async` reads.
    pub reader_threads: usize,
    /// Most async reads waiting for a reader thread; beyond it they fail
    /// with `Throttled`.
    pub max_queued_reads: usize,
    /// How often a read re-reads the metadata after a checksum mismatch
    /// (a concurrent commit may have moved the block) before it reports
    /// the error.
    pub read_retries: u32,
    /// Apply deferred writes and checkpoint on the commit thread instead of
    /// a thread of their own: slower, but deterministic (seeded tests).
    pub apply_inline: bool,
    pub kv: KvOptions,
    pub uring: UringOptions,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            deferred_max_bytes: 64 * 1024,
            deferred_txn_max_bytes: 1 << 20,
            commit_pipeline_depth: 2,
            max_batch_txns: 256,
            max_batch_bytes: 16 << 20,
            max_queued_txns: 4096,
            max_record_bytes: 64 << 20,
            max_clone_bytes: 256 << 20,
            checkpoint_interval_ms: 5000,
            checkpoint_journal_percent: 50,
            max_unapplied_bytes: 256 << 20,
            apply_min_bytes: 256 << 10,
            apply_max_delay_ms: 20,
            apply_batch_ios: 512,
            max_io_bytes: 1 << 20,
            max_read_bytes: 256 << 20,
            reader_threads: 4,
            max_queued_reads: 1024,
            read_retries: 3,
            apply_inline: false,
            kv: KvOptions::default(),
            uring: UringOptions::default(),
        }
    }
}

/// Options of [`crate::ObjectStore::mkfs`].
#[derive(Debug, Clone)]
pub struct MkfsOptions {
    /// Cluster fsid recorded in the label.
    pub fsid: Uuid,
    /// This OSD's uuid.
    pub osd_uuid: Uuid,
    /// Journal size; default 1/16 of the device within [1 MiB, 1 GiB].
    pub journal_bytes: Option<u64>,
    /// Metadata database directory; default `<device>.db` for a file,
    /// `/var/lib/kalmar/objectstore/<osd uuid>.db` for a block device.
    pub db_path: Option<PathBuf>,
    /// Overwrite an existing store (label and metadata directory).
    pub force: bool,
}

impl MkfsOptions {
    pub fn new(fsid: Uuid, osd_uuid: Uuid) -> MkfsOptions {
        MkfsOptions {
            fsid,
            osd_uuid,
            journal_bytes: None,
            db_path: None,
            force: false,
        }
    }
}

/// Options of [`crate::ObjectStore::mount`].
#[derive(Debug, Clone, Default)]
pub struct MountOptions {
    /// Refuse a store of another cluster.
    pub expected_fsid: Option<Uuid>,
    /// Metadata database directory; default: `<device>.db` when it exists,
    /// else the path recorded in the label at mkfs.
    pub db_path: Option<PathBuf>,
    /// Mount even when a corrupt journal record is followed by valid ones
    /// (losing the transactions after the corrupt record).
    pub discard_journal_after_corruption: bool,
    pub settings: StoreSettings,
}
