//! The metadata database behind a small interface, so the store runs on
//! RocksDB in production and on an in-memory twin (that can lose what was
//! not flushed) in tests and the simulator.
//!
//! The store writes the database only at checkpoints ([`KvStore::write`]
//! then [`KvStore::flush`]); between checkpoints, committed changes live in
//! the journal and in memory (see `crate::layer`). So the database always
//! holds the state of some checkpoint, never more, and a lost memtable is
//! rebuilt by journal replay.

mod mem;
mod powered;
mod rocks;

pub use mem::MemKv;
pub use powered::PoweredKv;
pub use rocks::RocksKv;

use kalmar_common::encoding::{encode_versioned, put_bytes, Decode, DecodeError, Decoder, Encode};

use crate::error::StoreError;

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

/// A [`KvOp`] over borrowed bytes: what a journal record is encoded
/// from, straight out of the batch's layer.
#[derive(Debug, Clone, Copy)]
pub enum KvOpRef<'a> {
    Put(&'a [u8], &'a [u8]),
    Delete(&'a [u8]),
    DeleteRange(&'a [u8], &'a [u8]),
}

impl KvOpRef<'_> {
    pub fn to_owned(self) -> KvOp {
        match self {
            KvOpRef::Put(k, v) => KvOp::Put(k.to_vec(), v.to_vec()),
            KvOpRef::Delete(k) => KvOp::Delete(k.to_vec()),
            KvOpRef::DeleteRange(s, e) => KvOp::DeleteRange(s.to_vec(), e.to_vec()),
        }
    }

    pub fn encode(self, buf: &mut Vec<u8>) {
        match self {
            KvOpRef::Put(k, v) => {
                buf.push(1);
                put_bytes(buf, k);
                put_bytes(buf, v);
            }
            KvOpRef::Delete(k) => {
                buf.push(2);
                put_bytes(buf, k);
            }
            KvOpRef::DeleteRange(s, e) => {
                buf.push(3);
                put_bytes(buf, s);
                put_bytes(buf, e);
            }
        }
    }
}

impl KvOp {
    pub fn as_ref(&self) -> KvOpRef<'_> {
        match self {
            KvOp::Put(k, v) => KvOpRef::Put(k, v),
            KvOp::Delete(k) => KvOpRef::Delete(k),
            KvOp::DeleteRange(s, e) => KvOpRef::DeleteRange(s, e),
        }
    }
}

impl Encode for KvOp {
    fn encode(&self, buf: &mut Vec<u8>) {
        self.as_ref().encode(buf)
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

/// Read access: the database, and the in-memory layers above it.
pub trait KvRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Shows `f` the value of `key` (`None` if absent) without handing out
    /// a copy where the value is in memory: every write reads its
    /// object's record this way.
    fn get_with(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), StoreError> {
        let v = self.get(key)?;
        f(v.as_deref());
        Ok(())
    }

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

/// A metadata database.
pub trait KvStore: KvRead + Send + Sync {
    /// Applies `ops` atomically, in order. Not durable until [`KvStore::flush`].
    fn write(&self, ops: &[KvOp]) -> Result<(), StoreError>;

    /// Makes everything written so far durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// Where it lives (for messages).
    fn describe(&self) -> String;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// What every implementation must do; run by each one's tests.
    pub(crate) fn conformance(kv: &dyn KvStore) {
        kv.write(&[
            KvOp::Put(b"a1".to_vec(), b"x".to_vec()),
            KvOp::Put(b"a2".to_vec(), b"y".to_vec()),
            KvOp::Put(b"b1".to_vec(), b"z".to_vec()),
            KvOp::Put(b"a2".to_vec(), b"y2".to_vec()),
        ])
        .expect("write");
        assert_eq!(
            kv.get(b"a2").expect("get"),
            Some(b"y2".to_vec()),
            "later op wins"
        );
        assert_eq!(
            kv.scan_collect(b"a", b"b", 10).expect("scan"),
            vec![
                (b"a1".to_vec(), b"x".to_vec()),
                (b"a2".to_vec(), b"y2".to_vec())
            ]
        );
        assert_eq!(
            kv.scan_collect(b"a", b"c", 1).expect("scan").len(),
            1,
            "limit"
        );
        assert!(kv.scan_collect(b"b", b"a", 10).expect("scan").is_empty());
        // A range deletion followed by a put inside the range, in one batch.
        kv.write(&[
            KvOp::DeleteRange(b"a".to_vec(), b"b".to_vec()),
            KvOp::Put(b"a5".to_vec(), b"new".to_vec()),
            KvOp::Delete(b"b1".to_vec()),
        ])
        .expect("write");
        assert_eq!(
            kv.scan_collect(b"", b"\xff", 10).expect("scan"),
            vec![(b"a5".to_vec(), b"new".to_vec())]
        );
        kv.flush().expect("flush");
        assert_eq!(kv.get(b"a1").expect("get"), None);
        kv.write(&[KvOp::DeleteRange(b"a".to_vec(), b"b".to_vec())])
            .expect("cleanup");
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
