//! The mon's durable state, in RocksDB. Nothing else in the mon touches
//! RocksDB: the rest sees a key-value store with atomic, synced batches.
//!
//! Keys (all values sealed with a crc by their writers):
//! - `meta/fsid`: the cluster fsid (16 bytes)
//! - `osdmap/full/<epoch>`, `osdmap/inc/<epoch>`: each epoch, zero-padded
//!   so keys sort by epoch
//! - `osdmap/first`, `osdmap/last`: the range held (u32 LE)
//! - `mgrmap/<epoch>`, `mgrmap/first`, `mgrmap/last`

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
        let db = rocksdb::DB::open(&MonStore::options(create), &path).map_err(|source| {
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
