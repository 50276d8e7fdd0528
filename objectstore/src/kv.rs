//! The metadata database: RocksDB behind the few calls the store needs.
//! Nothing outside this module names `rocksdb`.
//!
//! RocksDB runs without its write-ahead log: every change reaches it from a
//! journal record that is already durable, so a lost memtable is rebuilt by
//! journal replay. [`Kv::flush`] (memtable to SST files, synced) is the
//! checkpoint step that lets the journal be trimmed. Shutdown does not
//! flush, so a crash and an abandoned store look the same to replay.

use std::path::{Path, PathBuf};

use kalmar_common::encoding::{encode_versioned, put_bytes, Decode, DecodeError, Decoder, Encode};
use rocksdb::{
    BlockBasedOptions, Cache, FlushOptions, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};

use crate::error::StoreError;
use crate::kvcache::{Lookup, ReadCache};

/// One physical change to the database, as carried by journal records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// Deletes `[start, end)`.
    DeleteRange(Vec<u8>, Vec<u8>),
}

impl KvOp {
    pub fn key(&self) -> &[u8] {
        match self {
            KvOp::Put(k, _) | KvOp::Delete(k) | KvOp::DeleteRange(k, _) => k,
        }
    }

    pub fn encoded_len(&self) -> usize {
        match self {
            KvOp::Put(k, v) | KvOp::DeleteRange(k, v) => 9 + k.len() + v.len(),
            KvOp::Delete(k) => 5 + k.len(),
        }
    }
}

impl Encode for KvOp {
    fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            KvOp::Put(k, v) => {
                buf.push(1);
                put_bytes(buf, k);
                put_bytes(buf, v);
            }
            KvOp::Delete(k) => {
                buf.push(2);
                put_bytes(buf, k);
            }
            KvOp::DeleteRange(s, e) => {
                buf.push(3);
                put_bytes(buf, s);
                put_bytes(buf, e);
            }
        }
    }
}

impl Decode for KvOp {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        match d.u8()? {
            1 => Ok(KvOp::Put(d.bytes()?.to_vec(), d.bytes()?.to_vec())),
            2 => Ok(KvOp::Delete(d.bytes()?.to_vec())),
            3 => Ok(KvOp::DeleteRange(d.bytes()?.to_vec(), d.bytes()?.to_vec())),
            t => Err(DecodeError::Invalid {
                what: "kv op",
                detail: format!("tag {t}"),
            }),
        }
    }
}

/// Encodes ops as a versioned list (used inside journal records).
pub fn encode_ops(ops: &[KvOp], buf: &mut Vec<u8>) {
    encode_versioned(buf, 1, 1, |buf| ops.encode(buf));
}

/// Database tunables.
#[derive(Debug, Clone)]
pub struct KvOptions {
    /// Memtable size; a full memtable is flushed in the background.
    pub write_buffer_bytes: usize,
    /// Block cache for SST reads.
    pub block_cache_bytes: usize,
    /// Background flush and compaction threads.
    pub background_jobs: i32,
    /// Values kept in memory in front of the database (see
    /// [`crate::kvcache`]); 0 turns the cache off.
    pub read_cache_bytes: usize,
}

impl Default for KvOptions {
    fn default() -> Self {
        KvOptions {
            write_buffer_bytes: 64 << 20,
            block_cache_bytes: 64 << 20,
            background_jobs: 2,
            read_cache_bytes: 32 << 20,
        }
    }
}

/// Key/value pairs in key order.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Read access shared by the database and its snapshots.
pub trait KvRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Visits keys in `[start, end)` in order until `f` returns false.
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;

    /// Collects up to `limit` pairs of `[start, end)`.
    fn scan_collect(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KvPairs, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.scan(start, end, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            out.len() < limit
        })?;
        Ok(out)
    }
}

/// The open database.
pub struct Kv {
    db: DB,
    path: PathBuf,
    cache: ReadCache,
}

/// A consistent read view.
pub struct KvSnapshot<'a> {
    snap: rocksdb::Snapshot<'a>,
}

fn options(opts: &KvOptions, create: bool) -> Result<Options, StoreError> {
    let mut o = Options::default();
    o.create_if_missing(create);
    o.set_error_if_exists(create);
    o.set_write_buffer_size(opts.write_buffer_bytes);
    o.set_max_background_jobs(opts.background_jobs);
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    o.set_paranoid_checks(true);
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    table.set_block_cache(&Cache::new_lru_cache(opts.block_cache_bytes));
    o.set_block_based_table_factory(&table);
    // Not exposed as a setter: journal replay, not a shutdown flush, is
    // what makes the database whole after a stop.
    o.get_options_from_string("avoid_flush_during_shutdown=true")
        .map_err(StoreError::kv)
}

fn iterate(
    mut it: rocksdb::DBRawIteratorWithThreadMode<'_, DB>,
    start: &[u8],
    f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), StoreError> {
    it.seek(start);
    while it.valid() {
        let (Some(k), Some(v)) = (it.key(), it.value()) else {
            break;
        };
        if !f(k, v) {
            return Ok(());
        }
        it.next();
    }
    it.status().map_err(StoreError::kv)
}

fn range_opts(start: &[u8], end: &[u8]) -> ReadOptions {
    let mut ro = ReadOptions::default();
    ro.set_iterate_range(start.to_vec()..end.to_vec());
    ro
}

impl Kv {
    /// Creates a new, empty database at `path` (which must not hold one).
    pub fn create(path: &Path, opts: &KvOptions) -> Result<Kv, StoreError> {
        let o = options(opts, true)?;
        let db = DB::open(&o, path).map_err(|e| StoreError::MetadataDir {
            path: path.to_path_buf(),
            detail: format!("cannot create the database: {e}"),
        })?;
        Ok(Kv {
            db,
            path: path.to_path_buf(),
            cache: ReadCache::new(opts.read_cache_bytes),
        })
    }

    /// Opens an existing database.
    pub fn open(path: &Path, opts: &KvOptions) -> Result<Kv, StoreError> {
        if !path.join("CURRENT").exists() {
            return Err(StoreError::MetadataDir {
                path: path.to_path_buf(),
                detail: "no metadata database here (pass the right metadata path, or run mkfs)"
                    .into(),
            });
        }
        let o = options(opts, false)?;
        let db = DB::open(&o, path).map_err(|e| StoreError::MetadataDir {
            path: path.to_path_buf(),
            detail: format!("cannot open the database: {e}"),
        })?;
        Ok(Kv {
            db,
            path: path.to_path_buf(),
            cache: ReadCache::new(opts.read_cache_bytes),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies `ops` atomically, in order, without RocksDB's own log.
    pub fn write(&self, ops: &[KvOp]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut b = WriteBatch::default();
        for op in ops {
            match op {
                KvOp::Put(k, v) => b.put(k, v),
                KvOp::Delete(k) => b.delete(k),
                KvOp::DeleteRange(s, e) => b.delete_range(s, e),
            }
        }
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.db.write_opt(b, &wo).map_err(StoreError::kv)?;
        self.cache.wrote(ops);
        Ok(())
    }

    /// Persists everything written so far (memtables to synced SST files).
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        self.db.flush_opt(&fo).map_err(StoreError::kv)
    }

    pub fn snapshot(&self) -> KvSnapshot<'_> {
        KvSnapshot {
            snap: self.db.snapshot(),
        }
    }
}

/// Both the database (through its read cache) and a snapshot (straight
/// from RocksDB, which keeps its point in time) read the same way.
macro_rules! impl_kv_read {
    ($ty:ty, $field:ident, |$s:ident, $key:ident| $get:expr) => {
        impl KvRead for $ty {
            fn get(&self, $key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
                let $s = self;
                $get
            }

            fn scan(
                &self,
                start: &[u8],
                end: &[u8],
                f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
            ) -> Result<(), StoreError> {
                iterate(
                    self.$field.raw_iterator_opt(range_opts(start, end)),
                    start,
                    f,
                )
            }
        }
    };
}
impl_kv_read!(Kv, db, |kv, key| match kv.cache.lookup(key) {
    Lookup::Hit(v) => Ok(v),
    Lookup::Miss(epoch) => {
        let v = kv.db.get(key).map_err(StoreError::kv)?;
        kv.cache.offer(key, &v, epoch);
        Ok(v)
    }
});
impl_kv_read!(KvSnapshot<'_>, snap, |s, key| s
    .snap
    .get(key)
    .map_err(StoreError::kv));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_scan_snapshot_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("db");
        let kv = Kv::create(&p, &KvOptions::default()).expect("create");
        kv.write(&[
            KvOp::Put(b"a1".to_vec(), b"x".to_vec()),
            KvOp::Put(b"a2".to_vec(), b"y".to_vec()),
            KvOp::Put(b"b1".to_vec(), b"z".to_vec()),
        ])
        .expect("write");
        let snap_vals = {
            let s = kv.snapshot();
            kv.write(&[KvOp::DeleteRange(b"a".to_vec(), b"b".to_vec())])
                .expect("range delete");
            s.scan_collect(b"a", b"b", 10).expect("scan")
        };
        assert_eq!(snap_vals.len(), 2, "snapshot unaffected by later writes");
        assert!(kv.scan_collect(b"a", b"b", 10).expect("scan").is_empty());
        assert_eq!(kv.get(b"b1").expect("get"), Some(b"z".to_vec()));
        kv.flush().expect("flush");
        drop(kv);
        let kv = Kv::open(&p, &KvOptions::default()).expect("reopen");
        assert_eq!(kv.get(b"b1").expect("get"), Some(b"z".to_vec()));
        assert!(
            Kv::create(&p, &KvOptions::default()).is_err(),
            "create refuses an existing db"
        );
    }

    #[test]
    fn unflushed_writes_are_lost_on_close() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("db");
        let kv = Kv::create(&p, &KvOptions::default()).expect("create");
        kv.write(&[KvOp::Put(b"k".to_vec(), b"v".to_vec())])
            .expect("write");
        drop(kv);
        let kv = Kv::open(&p, &KvOptions::default()).expect("reopen");
        assert_eq!(
            kv.get(b"k").expect("get"),
            None,
            "no WAL, no shutdown flush: replay owns it"
        );
    }

    #[test]
    fn op_encoding_roundtrip() {
        let ops = vec![
            KvOp::Put(b"k".to_vec(), vec![1, 2, 3]),
            KvOp::Delete(b"d".to_vec()),
            KvOp::DeleteRange(b"s".to_vec(), b"t".to_vec()),
        ];
        let mut buf = Vec::new();
        ops.encode(&mut buf);
        assert_eq!(Vec::<KvOp>::from_bytes(&buf).expect("decodes"), ops);
        assert_eq!(
            ops.iter().map(KvOp::encoded_len).sum::<usize>() + 4,
            buf.len()
        );
    }
}
