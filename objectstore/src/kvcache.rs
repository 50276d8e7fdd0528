//! A bounded cache of values read through [`crate::kv::Kv`]'s `get`, in
//! front of RocksDB: every operation of a transaction looks up its
//! collection, onode and extent shards, and the same few keys are read
//! again and again (profiling put RocksDB's `Get` at a fifth of the commit
//! thread under 4 KiB random writes).
//!
//! Coherence: the cache keeps only keys that were read, and
//! [`ReadCache::wrote`] updates those a database write touches while the
//! writer still holds the write. A read that misses remembers the write
//! epoch before it asks RocksDB and caches its answer only if no write
//! happened meanwhile, so a value read before a write can never be cached
//! after it. Absent keys are cached too (as `None`). Eviction is first in,
//! first out, by bytes.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

use crate::kv::KvOp;

/// Bytes an entry costs beyond its key and value.
const ENTRY_OVERHEAD_BYTES: usize = 64;

struct Entry {
    value: Option<Vec<u8>>,
    /// Insertion number, to tell a key's current entry from an older one
    /// still queued for eviction.
    seq: u64,
}

impl Entry {
    fn cost(key: &[u8], value: &Option<Vec<u8>>) -> usize {
        key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD_BYTES
    }
}

struct Inner {
    map: HashMap<Vec<u8>, Entry>,
    /// Keys in insertion order (with their insertion numbers).
    order: VecDeque<(Vec<u8>, u64)>,
    bytes: usize,
    next_seq: u64,
    /// Bumped by every write.
    epoch: u64,
}

/// See the module documentation.
pub(crate) struct ReadCache {
    inner: Mutex<Inner>,
    max_bytes: usize,
}

impl ReadCache {
    pub fn new(max_bytes: usize) -> ReadCache {
        ReadCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
                next_seq: 0,
                epoch: 0,
            }),
            max_bytes,
        }
    }

    /// Shows `f` the cached value of `key` without a copy, or says the
    /// key is not cached: `Some(epoch)` to pass to [`Self::offer`]. `f`
    /// runs under the cache's lock.
    pub fn lookup_with(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) -> Option<u64> {
        let g = self.inner.lock();
        match g.map.get(key) {
            Some(e) => {
                f(e.value.as_deref());
                None
            }
            None => Some(g.epoch),
        }
    }

    /// Caches what the database answered for `key`, unless a write
    /// happened since the lookup that missed at `epoch`.
    pub fn offer(&self, key: &[u8], value: &Option<Vec<u8>>, epoch: u64) {
        let cost = Entry::cost(key, value);
        if self.max_bytes == 0 || cost > self.max_bytes / 16 {
            return;
        }
        let mut g = self.inner.lock();
        if g.epoch != epoch || g.map.contains_key(key) {
            return;
        }
        let seq = g.next_seq;
        g.next_seq += 1;
        g.map.insert(
            key.to_vec(),
            Entry {
                value: value.clone(),
                seq,
            },
        );
        g.order.push_back((key.to_vec(), seq));
        g.bytes += cost;
        while g.bytes > self.max_bytes {
            let Some((k, s)) = g.order.pop_front() else {
                break;
            };
            if g.map.get(&k).is_some_and(|e| e.seq == s) {
                if let Some(e) = g.map.remove(&k) {
                    g.bytes -= Entry::cost(&k, &e.value);
                }
            }
        }
    }

    /// Brings the cached keys `ops` touch up to date; called with the
    /// database write done and before the writer returns.
    pub fn wrote(&self, ops: &[KvOp]) {
        let mut g = self.inner.lock();
        g.epoch += 1;
        for op in ops {
            match op {
                KvOp::Put(k, v) => g.replace(k, Some(v)),
                KvOp::Delete(k) => g.replace(k, None),
                KvOp::DeleteRange(s, e) => {
                    let gone: Vec<Vec<u8>> = g
                        .map
                        .keys()
                        .filter(|k| k.as_slice() >= s.as_slice() && k.as_slice() < e.as_slice())
                        .cloned()
                        .collect();
                    for k in gone {
                        g.replace(&k, None);
                    }
                }
            }
        }
    }

    #[cfg(test)]
    fn cached_bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

impl Inner {
    /// Updates `key`'s entry if it is cached (the queue keeps its place).
    fn replace(&mut self, key: &[u8], value: Option<&Vec<u8>>) {
        let Some(e) = self.map.get_mut(key) else {
            return;
        };
        let old = Entry::cost(key, &e.value);
        e.value = value.cloned();
        let new = Entry::cost(key, &e.value);
        self.bytes = self.bytes - old + new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(c: &ReadCache, db: &HashMap<Vec<u8>, Vec<u8>>, k: &[u8]) -> Option<Vec<u8>> {
        match peek(c, k) {
            Ok(v) => v,
            Err(epoch) => {
                let v = db.get(k).cloned();
                c.offer(k, &v, epoch);
                v
            }
        }
    }

    #[test]
    fn hits_follow_writes_and_absent_keys() {
        let c = ReadCache::new(1 << 20);
        let mut db: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        db.insert(b"a".to_vec(), b"1".to_vec());
        assert_eq!(get(&c, &db, b"a"), Some(b"1".to_vec()));
        assert_eq!(get(&c, &db, b"b"), None);
        assert!(matches!(peek(&c, b"a"), Ok(Some(_))));
        assert!(matches!(peek(&c, b"b"), Ok(None)));
        let ops = vec![
            KvOp::Put(b"a".to_vec(), b"2".to_vec()),
            KvOp::Put(b"b".to_vec(), b"3".to_vec()),
        ];
        for op in &ops {
            if let KvOp::Put(k, v) = op {
                db.insert(k.clone(), v.clone());
            }
        }
        c.wrote(&ops);
        assert_eq!(get(&c, &db, b"a"), Some(b"2".to_vec()));
        assert_eq!(get(&c, &db, b"b"), Some(b"3".to_vec()));
        c.wrote(&[KvOp::Delete(b"a".to_vec())]);
        assert!(matches!(peek(&c, b"a"), Ok(None)));
        c.wrote(&[KvOp::DeleteRange(b"a".to_vec(), b"c".to_vec())]);
        assert!(matches!(peek(&c, b"b"), Ok(None)));
    }

    /// `lookup_with`'s answer: the value shown on a hit, the epoch on a miss.
    fn peek(c: &ReadCache, k: &[u8]) -> Result<Option<Vec<u8>>, u64> {
        let mut seen = None;
        match c.lookup_with(k, &mut |v| seen = Some(v.map(<[u8]>::to_vec))) {
            Some(epoch) => {
                assert!(seen.is_none(), "a miss shows nothing");
                Err(epoch)
            }
            None => Ok(seen.expect("a hit shows the value")),
        }
    }

    #[test]
    fn lookup_with_shows_cached_values_and_follows_writes() {
        let c = ReadCache::new(1 << 20);
        let Err(epoch) = peek(&c, b"k") else {
            panic!("empty cache")
        };
        c.offer(b"k", &Some(b"v".to_vec()), epoch);
        let Err(epoch) = peek(&c, b"gone") else {
            panic!("not cached yet")
        };
        c.offer(b"gone", &None, epoch);
        assert_eq!(peek(&c, b"k"), Ok(Some(b"v".to_vec())));
        assert_eq!(peek(&c, b"gone"), Ok(None));
        c.wrote(&[KvOp::Put(b"k".to_vec(), b"w".to_vec())]);
        assert_eq!(peek(&c, b"k"), Ok(Some(b"w".to_vec())));
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_cached() {
        let c = ReadCache::new(1 << 20);
        let Err(epoch) = peek(&c, b"k") else {
            panic!("empty cache")
        };
        // The database answered with the old value, then a write landed.
        c.wrote(&[KvOp::Put(b"k".to_vec(), b"new".to_vec())]);
        c.offer(b"k", &Some(b"old".to_vec()), epoch);
        assert!(peek(&c, b"k").is_err());
    }

    #[test]
    fn bytes_stay_bounded() {
        let max = 64 * 1024;
        let c = ReadCache::new(max);
        for i in 0..10_000u32 {
            let k = i.to_be_bytes();
            let Err(e) = peek(&c, &k) else {
                panic!("fresh key")
            };
            c.offer(&k, &Some(vec![7u8; 100]), e);
            assert!(c.cached_bytes() <= max);
        }
        // The newest keys are still there, the oldest gone.
        assert!(matches!(peek(&c, &9_999u32.to_be_bytes()), Ok(Some(_))));
        assert!(peek(&c, &0u32.to_be_bytes()).is_err());
    }
}
