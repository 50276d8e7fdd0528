//! Typed errors of the store and of its devices.
//!
//! Every variant says what failed and, where there is one, what to do about
//! it. Errors are `Clone` so that one failure (a poisoned store) can be handed
//! to every waiting transaction.

use std::path::PathBuf;

use uuid::Uuid;

/// An I/O failure below the store: the device or the metadata database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("cannot open device {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("device {path} is in use by another process (it holds the lock); stop it first")]
    Locked { path: PathBuf },
    #[error("{op} at offset {offset} length {len} failed: {reason}")]
    Io {
        op: &'static str,
        offset: u64,
        len: u64,
        reason: String,
    },
    #[error("flush failed: {reason}")]
    Flush { reason: String },
    #[error("misaligned I/O: offset {offset} length {len} (device block size {block_size})")]
    Misaligned {
        offset: u64,
        len: u64,
        block_size: u32,
    },
    #[error("I/O beyond the end of the device: offset {offset} length {len}, device size {size}")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    #[error("the device lost power (fault injection)")]
    PowerLost,
}

/// Everything an [`crate::ObjectStore`] call can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("metadata database error: {0}")]
    Kv(String),
    #[error("{path} does not hold a Kalmar object store (bad label: {detail}); run mkfs first")]
    NotAStore { path: PathBuf, detail: String },
    #[error(
        "{path} was formatted with on-disk format version {found}; this build reads only version {supported} \
         (a newer store needs a newer Kalmar; an older one must be recreated with mkfs after moving its data)"
    )]
    OtherFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path} belongs to cluster {found}, not to cluster {expected}")]
    WrongFsid {
        path: PathBuf,
        expected: Uuid,
        found: Uuid,
    },
    #[error("{path} already holds a Kalmar object store (osd uuid {osd_uuid}); pass force to overwrite it")]
    AlreadyFormatted { path: PathBuf, osd_uuid: Uuid },
    #[error("device {path} is too small: {size_bytes} bytes, at least {min_bytes} needed")]
    DeviceTooSmall {
        path: PathBuf,
        size_bytes: u64,
        min_bytes: u64,
    },
    #[error(
        "device {path} shrank: the label says {label_bytes} bytes, the device has {size_bytes}"
    )]
    DeviceShrank {
        path: PathBuf,
        label_bytes: u64,
        size_bytes: u64,
    },
    #[error(
        "both superblock copies on {path} are unreadable ({detail}); the store cannot be mounted"
    )]
    NoSuperblock { path: PathBuf, detail: String },
    #[error("metadata directory {path}: {detail}")]
    MetadataDir { path: PathBuf, detail: String },
    #[error(
        "journal record seq {seq} at offset {offset} is corrupt ({detail}) but later records exist; \
         mounting would drop acknowledged transactions. Mount with discard_journal_after_corruption to accept the loss"
    )]
    JournalCorrupt {
        seq: u64,
        offset: u64,
        detail: String,
    },
    #[error("corrupt metadata for {what}: {detail}")]
    CorruptMetadata { what: String, detail: String },
    #[error("checksum mismatch reading {what} at device offset {offset}: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        what: String,
        offset: u64,
        stored: u32,
        computed: u32,
    },
    #[error("collection {0} does not exist")]
    CollectionNotFound(String),
    #[error("collection {0} already exists")]
    CollectionExists(String),
    #[error("collection {0} is not empty")]
    CollectionNotEmpty(String),
    #[error("object {object} does not exist in collection {collection}")]
    ObjectNotFound { collection: String, object: String },
    #[error("object {object} already exists in collection {collection}")]
    ObjectExists { collection: String, object: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("no space left: {needed_bytes} bytes needed, {free_bytes} free")]
    NoSpace { needed_bytes: u64, free_bytes: u64 },
    #[error("transaction too large: {bytes} bytes of journal record, the limit is {limit}")]
    TooLarge { bytes: u64, limit: u64 },
    #[error("the store stopped accepting writes after a failure: {0}; remount it")]
    Poisoned(String),
    #[error("the store is unmounted")]
    Unmounted,
}

impl StoreError {
    pub(crate) fn kv(e: impl std::fmt::Display) -> StoreError {
        StoreError::Kv(e.to_string())
    }

    pub(crate) fn corrupt(what: impl Into<String>, detail: impl std::fmt::Display) -> StoreError {
        StoreError::CorruptMetadata {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    /// True for failures that leave the store unable to write (the commit
    /// path must poison the store), false for a refused transaction.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            StoreError::Device(_)
                | StoreError::Kv(_)
                | StoreError::Poisoned(_)
                | StoreError::Unmounted
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
