//! Every bound and tunable of the store, by name, with its default.

use std::path::PathBuf;
use std::sync::Arc;

use uuid::Uuid;

use crate::kv::KvStore;

use crate::device::UringOptions;
use crate::kv::KvOptions;

/// Who drives the commit engines (see `crate::engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Drive {
    /// The store's own threads: one per engine, plus the checkpointer.
    #[default]
    Threads,
    /// The application's threads ([`crate::ObjectStore::take_engines`]);
    /// the store runs only the checkpointer.
    External,
    /// Whichever thread waits for a commit drives every engine and the
    /// checkpoints, and journaled blocks go home right after each commit:
    /// the same operations in the same order for the same submissions
    /// (seeded tests, the simulator).
    Inline,
    /// As `External`, and the store starts no thread at all: the
    /// application also steps the checkpoints
    /// ([`crate::ObjectStore::checkpoint_stepper`]) and `*_async` reads run
    /// on the calling thread. For the whole-cluster simulator, where every
    /// daemon shares one deterministic thread on an in-memory device.
    Caller,
}

/// Runtime settings (defaults suit an SSD or NVMe device).
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Commit engines, each with a zone of the journal and the collections
    /// placed on it (clamped to what the journal can be divided into).
    pub engines: usize,
    pub drive: Drive,
    /// Writes of at most this many bytes ride in the journal and are
    /// applied in place later; larger writes go to new space directly.
    pub deferred_max_bytes: u64,
    /// Deferred data one transaction may carry; beyond it, writes of that
    /// transaction take the big-write path.
    pub deferred_txn_max_bytes: u64,
    /// Batches written but not yet durable at once, per engine: with 2 or
    /// more, the next batch is prepared and written while the previous one
    /// waits for its flush. 1 runs every batch to completion first.
    pub commit_pipeline_depth: usize,
    /// Most transactions in one group commit.
    pub max_batch_txns: usize,
    /// Most payload bytes (data, attrs, omap) in one group commit.
    pub max_batch_bytes: u64,
    /// Most transactions in an engine (queued or committing); beyond it,
    /// submitters wait for admission.
    pub max_queued_txns: usize,
    /// Largest journal record; a transaction needing more is refused with
    /// `TooLarge`. Clamped to a quarter of the journal.
    pub max_record_bytes: u64,
    /// Largest object `clone` copies (its data is copied at commit).
    pub max_clone_bytes: u64,
    /// Checkpoint at least this often when anything was committed.
    pub checkpoint_interval_ms: u64,
    /// Checkpoint when an engine's journal zone is fuller than this
    /// (percent).
    pub checkpoint_journal_percent: u64,
    /// Checkpoint when an engine holds more committed metadata than this
    /// in memory (not yet in the database).
    pub max_dirty_meta_bytes: u64,
    /// Deferred data committed but not yet written home, at most, per
    /// engine; new batches wait beyond it.
    pub max_unapplied_bytes: u64,
    /// Journaled data is written home once this much is waiting...
    pub apply_min_bytes: u64,
    /// ... or once the oldest waited this long, so that home writes go out
    /// in sorted bursts instead of one behind every commit.
    pub apply_max_delay_ms: u64,
    /// Most block reads per submission of a read-modify-write or fsck.
    pub apply_batch_ios: usize,
    /// Largest single device read or write.
    pub max_io_bytes: u64,
    /// Largest `read` (after clamping to the object size); larger reads
    /// fail with `InvalidArgument`: read in pieces.
    pub max_read_bytes: u64,
    /// Threads serving the `*_async` reads.
    pub reader_threads: usize,
    /// Most async reads waiting for a reader thread; beyond it callers wait
    /// for room.
    pub max_queued_reads: usize,
    /// How often a read re-reads the metadata after a checksum mismatch
    /// (a concurrent commit may have moved the block) before it reports
    /// the error.
    pub read_retries: u32,
    pub kv: KvOptions,
    pub uring: UringOptions,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            engines: 1,
            drive: Drive::Threads,
            deferred_max_bytes: 64 * 1024,
            deferred_txn_max_bytes: 1 << 20,
            commit_pipeline_depth: 4,
            max_batch_txns: 256,
            max_batch_bytes: 16 << 20,
            max_queued_txns: 4096,
            max_record_bytes: 64 << 20,
            max_clone_bytes: 256 << 20,
            checkpoint_interval_ms: 5000,
            checkpoint_journal_percent: 50,
            max_dirty_meta_bytes: 256 << 20,
            max_unapplied_bytes: 256 << 20,
            apply_min_bytes: 256 << 10,
            apply_max_delay_ms: 20,
            apply_batch_ios: 512,
            max_io_bytes: 1 << 20,
            max_read_bytes: 256 << 20,
            reader_threads: 4,
            max_queued_reads: 1024,
            read_retries: 3,
            kv: KvOptions::default(),
            uring: UringOptions::default(),
        }
    }
}

/// What the data device is made of. The store's choices follow Ceph's
/// HDD/SSD split (BlueStore's `_hdd` / `_ssd` option pairs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// SSD or NVMe: [`StoreSettings::default`].
    Solid,
    /// A spinning disk: seeks cost milliseconds, so journaled data waits
    /// longer and goes home in larger sorted bursts, with fewer operations
    /// in flight.
    Rotational,
}

impl StoreSettings {
    /// The defaults for `media`. What differs on a rotational device, and
    /// the BlueStore option it follows:
    ///
    /// - `apply_min_bytes` 1 MiB (SSD 256 KiB) and `apply_max_delay_ms`
    ///   100 (SSD 20): deferred writes are batched 4x deeper before they
    ///   go home (`bluestore_deferred_batch_ops_hdd` 64 vs `_ssd` 16), so
    ///   a sorted burst replaces scattered seeks.
    /// - `apply_batch_ios` 64 (SSD 512): fewer reads in flight per
    ///   submission (`bluestore_throttle_cost_per_io_hdd` charges an I/O
    ///   ~170x what `_ssd` does, for the same reason: a disk serves one
    ///   seek at a time).
    ///
    /// The same on both: writes up to `deferred_max_bytes` (64 KiB) ride in
    /// the journal (`bluestore_prefer_deferred_size_hdd` is 64 KiB; on SSD
    /// BlueStore writes small overwrites directly, where this store keeps
    /// one flush for data and metadata), and the checksum block is the 4 KiB
    /// data block (BlueStore's checksum chunk follows `min_alloc_size`,
    /// 4 KiB on both since Pacific).
    pub fn for_media(media: Media) -> StoreSettings {
        let solid = StoreSettings::default();
        match media {
            Media::Solid => solid,
            Media::Rotational => StoreSettings {
                apply_min_bytes: 1 << 20,
                apply_max_delay_ms: 100,
                apply_batch_ios: 64,
                ..solid
            },
        }
    }
}

/// A metadata database given by the caller instead of RocksDB at the
/// metadata path (the in-memory one of tests and the simulator).
#[derive(Clone)]
pub struct KvHandle(pub Arc<dyn KvStore>);

impl std::fmt::Debug for KvHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KvHandle({})", self.0.describe())
    }
}

/// Which engine each collection lives on (default: `meta` on engine 0,
/// the others by hash); an OSD places a PG's collection on its shard.
#[derive(Clone)]
pub struct PlacementFn(pub crate::store::Placement);

impl std::fmt::Debug for PlacementFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlacementFn")
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
    /// Use this database instead of creating one at `db_path`.
    pub kv: Option<KvHandle>,
    /// The journal's sector (512 to 4096, a power of two, at least the
    /// device's direct-I/O alignment); default: the device's preference
    /// (see `BlockDevice::journal_sector`).
    pub journal_sector: Option<u32>,
}

impl MkfsOptions {
    pub fn new(fsid: Uuid, osd_uuid: Uuid) -> MkfsOptions {
        MkfsOptions {
            fsid,
            osd_uuid,
            journal_bytes: None,
            db_path: None,
            force: false,
            kv: None,
            journal_sector: None,
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
    /// Use this database instead of opening the one at the metadata path.
    pub kv: Option<KvHandle>,
    /// Where collections live (see [`PlacementFn`]).
    pub placement: Option<PlacementFn>,
}
