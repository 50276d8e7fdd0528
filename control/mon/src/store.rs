//! The mon's durable state, in RocksDB. Nothing else in the mon touches
//! RocksDB: the rest sees a key-value store with atomic, synced batches.
//!
//! Keys (all values sealed with a crc by their writers):
//! - `meta/fsid`: the cluster fsid (16 bytes)
//! - `osdmap/full/<epoch>`, `osdmap/inc/<epoch>`: each epoch, zero-padded
//!   so keys sort by epoch
//! - `osdmap/first`, `osdmap/last`: the range held (u32 LE)
//! - `mgrmap/<epoch>`, `mgrmap/first`, `mgrmap/last`
//! - `monmap/...`: the mons this store was created with (see
//!   [`crate::monmap`])
//! - `raft/...`: what the consensus state machine applied (see
//!   [`crate::raft`])
//!
//! The consensus log lives in its own column family ([`RAFT_CF`]), keyed by
//! binary index, with the vote and purge point beside it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("mon store {path}: {source}")]
    Db {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("mon store {path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("no mon store at {0} (run `kalmar-mon mkfs --data {0}` first)")]
    Missing(PathBuf),
    #[error("a mon store already exists at {0}")]
    Exists(PathBuf),
}

/// One change in a batch.
#[derive(Debug, Clone)]
pub enum Op {
    Put(String, Vec<u8>),
    Delete(String),
}

/// A batch of changes applied atomically and durably.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn put(&mut self, key: impl Into<String>, value: Vec<u8>) {
        self.ops.push(Op::Put(key.into(), value));
    }
    pub fn delete(&mut self, key: impl Into<String>) {
        self.ops.push(Op::Delete(key.into()));
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Column family of the consensus log.
pub const RAFT_CF: &str = "raft";

/// The file that marks a directory as a mon store (RocksDB lives in `db/`).
const MARKER: &str = "kalmar_mon";

pub struct MonStore {
    path: PathBuf,
    db: rocksdb::DB,
}

impl MonStore {
    fn options(create: bool) -> rocksdb::Options {
        let mut o = rocksdb::Options::default();
        o.create_if_missing(create);
        // Stores made before the consensus log get its column family on
        // first open.
        o.create_missing_column_families(true);
        o.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Bounded memory: the mon's data is small.
        o.set_write_buffer_size(8 << 20);
        o.set_max_open_files(256);
        o
    }

    /// Creates an empty store in `dir` (which must not hold one).
    pub fn create(dir: &Path) -> Result<MonStore, StoreError> {
        if dir.join(MARKER).exists() {
            return Err(StoreError::Exists(dir.to_path_buf()));
        }
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Corrupt {
            path: dir.to_path_buf(),
            detail: format!("cannot create directory: {e}"),
        })?;
        let store = MonStore::open_db(dir, true)?;
        std::fs::write(dir.join(MARKER), b"kalmar mon store v1\n").map_err(|e| {
            StoreError::Corrupt {
                path: dir.to_path_buf(),
                detail: format!("cannot write marker: {e}"),
            }
        })?;
        Ok(store)
    }

    /// Opens an existing store.
    pub fn open(dir: &Path) -> Result<MonStore, StoreError> {
        if !dir.join(MARKER).exists() {
            return Err(StoreError::Missing(dir.to_path_buf()));
        }
        MonStore::open_db(dir, false)
    }

    fn open_db(dir: &Path, create: bool) -> Result<MonStore, StoreError> {
        let path = dir.join("db");
        let opts = MonStore::options(create);
        let db = rocksdb::DB::open_cf(&opts, &path, ["default", RAFT_CF]).map_err(|source| {
            StoreError::Db {
                path: path.clone(),
                source,
            }
        })?;
        Ok(MonStore { path, db })
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get(key.as_bytes())
            .map_err(|source| StoreError::Db {
                path: self.path.clone(),
                source,
            })
    }

    pub fn get_u32(&self, key: &str) -> Result<Option<u32>, StoreError> {
        match self.get(key)? {
            None => Ok(None),
            Some(v) => {
                let b: [u8; 4] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| self.corrupt(format!("{key} is not a u32")))?;
                Ok(Some(u32::from_le_bytes(b)))
            }
        }
    }

    pub fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            detail,
        }
    }

    /// Applies `batch` atomically and waits until it is on stable storage:
    /// once this returns, a kill -9 or power loss keeps it.
    pub fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in &batch.ops {
            match op {
                Op::Put(k, v) => wb.put(k.as_bytes(), v),
                Op::Delete(k) => wb.delete(k.as_bytes()),
            }
        }
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(wb, &wo).map_err(|source| StoreError::Db {
            path: self.path.clone(),
            source,
        })
    }
}

impl MonStore {
    fn db_err(&self, source: rocksdb::Error) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source,
        }
    }

    fn raft_cf(&self) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(RAFT_CF)
            .ok_or_else(|| self.corrupt(format!("column family {RAFT_CF} is missing")))
    }

    /// Every key of the main keyspace that starts with one of `prefixes`,
    /// plus the values of `keys`, read from one consistent snapshot.
    #[allow(clippy::type_complexity)]
    pub fn snapshot_scan(
        &self,
        prefixes: &[&str],
        keys: &[&str],
    ) -> Result<(Vec<(String, Vec<u8>)>, Vec<Option<Vec<u8>>>), StoreError> {
        let snap = self.db.snapshot();
        let mut out = Vec::new();
        for p in prefixes {
            for item in snap.iterator(rocksdb::IteratorMode::From(
                p.as_bytes(),
                rocksdb::Direction::Forward,
            )) {
                let (k, v) = item.map_err(|e| self.db_err(e))?;
                if !k.starts_with(p.as_bytes()) {
                    break;
                }
                let key = String::from_utf8(k.to_vec())
                    .map_err(|_| self.corrupt("a key is not UTF-8".into()))?;
                out.push((key, v.to_vec()));
            }
        }
        let mut vals = Vec::with_capacity(keys.len());
        for k in keys {
            vals.push(snap.get(k.as_bytes()).map_err(|e| self.db_err(e))?);
        }
        Ok((out, vals))
    }

    /// A value of the consensus column family.
    pub fn raft_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let cf = self.raft_cf()?;
        self.db.get_cf(cf, key).map_err(|e| self.db_err(e))
    }

    /// Writes `puts` and removes keys in `[del_from, del_to)` of the
    /// consensus column family in one batch (synced when `sync`).
    pub fn raft_write(
        &self,
        puts: &[(Vec<u8>, Vec<u8>)],
        delete_range: Option<(&[u8], &[u8])>,
        sync: bool,
    ) -> Result<(), StoreError> {
        let cf = self.raft_cf()?;
        let mut wb = rocksdb::WriteBatch::default();
        if let Some((from, to)) = delete_range {
            wb.delete_range_cf(cf, from, to);
        }
        for (k, v) in puts {
            wb.put_cf(cf, k, v);
        }
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(wb, &wo).map_err(|e| self.db_err(e))
    }

    /// Key-value pairs of the consensus column family in `[from, to)`, at
    /// most `limit`.
    #[allow(clippy::type_complexity)]
    pub fn raft_range(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let cf = self.raft_cf()?;
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            cf,
            rocksdb::IteratorMode::From(from, rocksdb::Direction::Forward),
        ) {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            if &*k >= to || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// The last key-value pair of the consensus column family below `to`.
    #[allow(clippy::type_complexity)]
    pub fn raft_last_before(
        &self,
        from: &[u8],
        to: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
        let cf = self.raft_cf()?;
        let mut it = self.db.iterator_cf(
            cf,
            rocksdb::IteratorMode::From(to, rocksdb::Direction::Reverse),
        );
        for item in it.by_ref() {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            if &*k >= to {
                continue;
            }
            if &*k < from {
                return Ok(None);
            }
            return Ok(Some((k.to_vec(), v.to_vec())));
        }
        Ok(None)
    }
}

/// `prefix/0000000042`: epochs sort as strings.
pub fn epoch_key(prefix: &str, epoch: u32) -> String {
    format!("{prefix}/{epoch:010}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_durable_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mon");
        assert!(matches!(MonStore::open(&path), Err(StoreError::Missing(_))));
        {
            let s = MonStore::create(&path).expect("create");
            let mut b = Batch::default();
            b.put("a", vec![1]);
            b.put(epoch_key("osdmap/full", 7), vec![7]);
            b.put("osdmap/last", 7u32.to_le_bytes().to_vec());
            s.commit(&b).expect("commit");
            let mut b = Batch::default();
            b.delete("a");
            s.commit(&b).expect("commit");
        }
        assert!(matches!(
            MonStore::create(&path),
            Err(StoreError::Exists(_))
        ));
        let s = MonStore::open(&path).expect("open");
        assert_eq!(s.get("a").expect("get"), None);
        assert_eq!(
            s.get(&epoch_key("osdmap/full", 7)).expect("get"),
            Some(vec![7])
        );
        assert_eq!(s.get_u32("osdmap/last").expect("get"), Some(7));
        assert!(s.get_u32(&epoch_key("osdmap/full", 7)).is_err());
        assert_eq!(epoch_key("x", 42), "x/0000000042");
    }
}
