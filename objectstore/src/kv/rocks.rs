//! RocksDB behind [`KvStore`]. Nothing outside this module names `rocksdb`.
//!
//! RocksDB runs without its write-ahead log: the store writes it only at
//! checkpoints, from state the journal already holds, so a lost memtable
//! is rebuilt by journal replay. [`KvStore::flush`] (memtable to SST files,
//! synced) is the checkpoint step that lets the journal be trimmed.
//! Shutdown does not flush, so a crash and an abandoned store look the
//! same to replay.

use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, FlushOptions, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};

use super::{KvOp, KvOptions, KvRead, KvStore};
use crate::error::StoreError;
use crate::kvcache::ReadCache;

/// The open database.
pub struct RocksKv {
    db: DB,
    path: PathBuf,
    cache: ReadCache,
}

fn options(opts: &KvOptions, create: bool) -> Result<Options, StoreError> {
    let mut o = Options::default();
    o.create_if_missing(create);
    o.set_error_if_exists(create);
    o.set_write_buffer_size(opts.write_buffer_bytes);
    o.set_max_background_jobs(opts.background_jobs);
    // Flushes and the first compaction write uncompressed (LZ4 on them was
    // ~2 % of an OSD's CPU under small writes, for metadata that is soon
    // rewritten); the colder levels keep LZ4.
    let none = rocksdb::DBCompressionType::None;
    let lz4 = rocksdb::DBCompressionType::Lz4;
    o.set_compression_per_level(&[none, none, lz4, lz4, lz4, lz4, lz4]);
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

impl RocksKv {
    /// Creates a new, empty database at `path` (which must not hold one).
    pub fn create(path: &Path, opts: &KvOptions) -> Result<RocksKv, StoreError> {
        let o = options(opts, true)?;
        let db = DB::open(&o, path).map_err(|e| StoreError::MetadataDir {
            path: path.to_path_buf(),
            detail: format!("cannot create the database: {e}"),
        })?;
        Ok(RocksKv {
            db,
            path: path.to_path_buf(),
            cache: ReadCache::new(opts.read_cache_bytes),
        })
    }

    /// Opens an existing database.
    pub fn open(path: &Path, opts: &KvOptions) -> Result<RocksKv, StoreError> {
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
        Ok(RocksKv {
            db,
            path: path.to_path_buf(),
            cache: ReadCache::new(opts.read_cache_bytes),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl RocksKv {
    /// Reads `key` from the database after a cache miss at `epoch`, and
    /// offers the answer to the cache.
    fn fetch(&self, key: &[u8], epoch: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let v = self.db.get(key).map_err(StoreError::kv)?;
        self.cache.offer(key, &v, epoch);
        Ok(v)
    }
}

impl KvRead for RocksKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut hit = None;
        match self
            .cache
            .lookup_with(key, &mut |v| hit = Some(v.map(<[u8]>::to_vec)))
        {
            None => Ok(hit.flatten()),
            Some(epoch) => self.fetch(key, epoch),
        }
    }

    fn get_with(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), StoreError> {
        if let Some(epoch) = self.cache.lookup_with(key, f) {
            f(self.fetch(key, epoch)?.as_deref());
        }
        Ok(())
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        iterate(self.db.raw_iterator_opt(range_opts(start, end)), start, f)
    }
}

impl KvStore for RocksKv {
    /// Applies `ops` atomically, in order, without RocksDB's own log.
    fn write(&self, ops: &[KvOp]) -> Result<(), StoreError> {
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
    fn flush(&self) -> Result<(), StoreError> {
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        self.db.flush_opt(&fo).map_err(StoreError::kv)
    }

    fn describe(&self) -> String {
        format!("RocksDB at {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("db");
        let kv = RocksKv::create(&p, &KvOptions::default()).expect("create");
        super::super::tests::conformance(&kv);
        kv.write(&[KvOp::Put(b"kept".to_vec(), b"1".to_vec())])
            .expect("write");
        kv.flush().expect("flush");
        kv.write(&[KvOp::Put(b"lost".to_vec(), b"2".to_vec())])
            .expect("write");
        drop(kv);
        // No WAL and no shutdown flush: only flushed writes survive a
        // close, as they would a crash (replay owns the rest).
        let kv = RocksKv::open(&p, &KvOptions::default()).expect("reopen");
        assert_eq!(kv.get(b"kept").expect("get"), Some(b"1".to_vec()));
        assert_eq!(kv.get(b"lost").expect("get"), None);
        assert!(
            RocksKv::create(&p, &KvOptions::default()).is_err(),
            "create refuses an existing db"
        );
    }
}
