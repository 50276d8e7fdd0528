//! In-memory layers above the database and the device.
//!
//! - [`KvOverlay`]: the metadata changes of the batch being prepared, read
//!   through by later transactions of the same batch, with an undo log so
//!   that a failing transaction leaves no trace. At the end of the batch it
//!   becomes a [`Layer`] (and the journal record's database operations).
//! - [`DataOverlay`]: blocks whose new content is committed (in the
//!   journal) but not yet written to their home location. Readers look
//!   here first.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::collog::LogDelta;
use crate::device::AlignedBuf;
use crate::error::StoreError;
use crate::journal::cost::KV_CHANGE_BYTES;
use crate::kv::{KvPairs, KvRead};
use crate::layer::Layer;
use crate::layout::BLOCK_SIZE;
use crate::types::CollectionId;

enum Undo {
    Entry {
        key: Vec<u8>,
        prev: Option<Option<Vec<u8>>>,
    },
    Range {
        removed: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    },
    Log {
        cid: CollectionId,
        prev: Option<LogDelta>,
    },
}

/// Pending database changes; see the module documentation.
#[derive(Default)]
pub struct KvOverlay {
    /// `None` is a point deletion.
    entries: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    range_dels: Vec<(Vec<u8>, Vec<u8>)>,
    /// Changes of collection logs.
    logs: BTreeMap<CollectionId, LogDelta>,
    undo: Vec<Undo>,
    /// Collections whose log delta the current transaction has saved in
    /// `undo` already: the first save is the one a rollback restores, so
    /// later changes save nothing (saving the delta at every append made a
    /// transaction appending n entries to one log copy O(n^2) entries:
    /// seconds of CPU when a PG's whole log is rewritten).
    logs_saved: Vec<CollectionId>,
    bytes: usize,
}

enum Lookup<'a> {
    Value(&'a [u8]),
    Deleted,
    Miss,
}

impl KvOverlay {
    /// Starts recording undo information for one transaction.
    pub fn begin(&mut self) {
        self.undo.clear();
        self.logs_saved.clear();
    }

    /// Keeps the current transaction's changes.
    pub fn commit(&mut self) {
        self.undo.clear();
        self.logs_saved.clear();
    }

    /// Drops the current transaction's changes.
    pub fn rollback(&mut self) {
        self.logs_saved.clear();
        while let Some(u) = self.undo.pop() {
            match u {
                Undo::Entry { key, prev } => match prev {
                    Some(v) => {
                        self.entries.insert(key, v);
                    }
                    None => {
                        self.entries.remove(&key);
                    }
                },
                Undo::Range { removed } => {
                    self.range_dels.pop();
                    for (k, v) in removed {
                        self.entries.insert(k, v);
                    }
                }
                Undo::Log { cid, prev } => match prev {
                    Some(d) => {
                        self.logs.insert(cid, d);
                    }
                    None => {
                        self.logs.remove(&cid);
                    }
                },
            }
        }
    }

    /// Approximate encoded size of the changes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn set(&mut self, key: Vec<u8>, v: Option<Vec<u8>>) {
        self.bytes += key.len() + v.as_ref().map_or(0, Vec::len) + KV_CHANGE_BYTES as usize;
        let prev = self.entries.insert(key.clone(), v);
        self.undo.push(Undo::Entry { key, prev });
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.set(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.set(key, None);
    }

    /// Deletes every key of `[start, end)`, in the overlay and below it.
    pub fn delete_range(&mut self, start: Vec<u8>, end: Vec<u8>) {
        let keys: Vec<Vec<u8>> = self
            .entries
            .range::<[u8], _>((Bound::Included(&start[..]), Bound::Excluded(&end[..])))
            .map(|(k, _)| k.clone())
            .collect();
        let removed = keys
            .into_iter()
            .filter_map(|k| self.entries.remove(&k).map(|v| (k, v)))
            .collect();
        self.bytes += start.len() + end.len() + KV_CHANGE_BYTES as usize;
        self.range_dels.push((start, end));
        self.undo.push(Undo::Range { removed });
    }

    /// Changes collection `c`'s log with `f` (undone with the transaction).
    fn change_log(&mut self, c: &CollectionId, f: impl FnOnce(&mut LogDelta)) {
        if !self.logs_saved.contains(c) {
            let prev = self.logs.get(c).cloned();
            self.undo.push(Undo::Log {
                cid: c.clone(),
                prev,
            });
            self.logs_saved.push(c.clone());
        }
        if !self.logs.contains_key(c) {
            self.logs.insert(c.clone(), LogDelta::default());
        }
        let Some(d) = self.logs.get_mut(c) else {
            unreachable!("inserted above");
        };
        let before = d.bytes();
        f(d);
        self.bytes = (self.bytes + d.bytes()).saturating_sub(before);
    }

    /// The changes of collection `c`'s log in this batch, if any.
    pub fn log(&self, c: &CollectionId) -> Option<&LogDelta> {
        self.logs.get(c)
    }

    pub fn log_append(&mut self, c: &CollectionId, key: u128, value: bytes::Bytes) {
        self.change_log(c, |d| d.append(key, value));
    }

    pub fn log_trim(&mut self, c: &CollectionId, through: u128) {
        self.change_log(c, |d| d.trim(through));
    }

    pub fn log_clear(&mut self, c: &CollectionId) {
        self.change_log(c, LogDelta::clear);
    }

    fn covered(&self, key: &[u8]) -> bool {
        self.range_dels
            .iter()
            .any(|(s, e)| key >= s.as_slice() && key < e.as_slice())
    }

    fn lookup(&self, key: &[u8]) -> Lookup<'_> {
        match self.entries.get(key) {
            Some(Some(v)) => Lookup::Value(v),
            Some(None) => Lookup::Deleted,
            None if self.covered(key) => Lookup::Deleted,
            None => Lookup::Miss,
        }
    }

    /// The value of `key` as the batch sees it.
    pub fn get(&self, kv: &dyn KvRead, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.lookup(key) {
            Lookup::Value(v) => Ok(Some(v.to_vec())),
            Lookup::Deleted => Ok(None),
            Lookup::Miss => kv.get(key),
        }
    }

    /// Shows `f` the value of `key` as the batch sees it, without a copy
    /// where it is in memory.
    pub fn get_with(
        &self,
        kv: &dyn KvRead,
        key: &[u8],
        f: &mut dyn FnMut(Option<&[u8]>),
    ) -> Result<(), StoreError> {
        match self.lookup(key) {
            Lookup::Value(v) => f(Some(v)),
            Lookup::Deleted => f(None),
            Lookup::Miss => return kv.get_with(key, f),
        }
        Ok(())
    }

    /// Up to `limit` pairs of `[start, end)` as the batch sees them.
    pub fn scan(
        &self,
        kv: &dyn KvRead,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<KvPairs, StoreError> {
        let mut below = Vec::new();
        if limit > 0 {
            kv.scan(start, end, &mut |k, v| {
                if matches!(self.lookup(k), Lookup::Miss) {
                    below.push((k.to_vec(), v.to_vec()));
                }
                below.len() < limit
            })?;
        }
        let mine = self
            .entries
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
            .take(limit);
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = below.into_iter().chain(mine).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.truncate(limit);
        Ok(out)
    }

    /// Ends the batch: the changes as a layer.
    pub fn freeze(self) -> Layer {
        let mut l = Layer::default();
        for (s, e) in self.range_dels {
            l.delete_range(s, e);
        }
        for (k, v) in self.entries {
            match v {
                Some(v) => l.put(k, v),
                None => l.delete(k),
            }
        }
        for (c, d) in &self.logs {
            l.merge_log(c, d);
        }
        l
    }
}

/// A committed block not yet at home: a window of a journal record buffer.
#[derive(Clone)]
pub struct PendingBlock {
    pub seq: u64,
    pub csum: u32,
    pub buf: Arc<AlignedBuf>,
    pub offset: usize,
}

impl PendingBlock {
    pub fn data(&self) -> &[u8] {
        &self.buf[self.offset..self.offset + BLOCK_SIZE as usize]
    }
}

/// Committed, unapplied blocks by physical block number.
#[derive(Default)]
pub struct DataOverlay {
    map: Mutex<HashMap<u64, PendingBlock>>,
}

impl DataOverlay {
    pub fn insert(&self, phys: u64, b: PendingBlock) {
        self.map.lock().insert(phys, b);
    }

    pub fn get(&self, phys: u64) -> Option<PendingBlock> {
        self.map.lock().get(&phys).cloned()
    }

    /// Forgets `phys` if its pending content is still the one of `seq`
    /// (a later record may have replaced it).
    pub fn remove_if_seq(&self, phys: u64, seq: u64) {
        let mut m = self.map.lock();
        if m.get(&phys).is_some_and(|b| b.seq == seq) {
            m.remove(&phys);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::KvOp;

    struct MapKv(BTreeMap<Vec<u8>, Vec<u8>>);
    impl KvRead for MapKv {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.0.get(key).cloned())
        }
        fn scan(
            &self,
            s: &[u8],
            e: &[u8],
            f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
        ) -> Result<(), StoreError> {
            for (k, v) in self
                .0
                .range::<[u8], _>((Bound::Included(s), Bound::Excluded(e)))
            {
                if !f(k, v) {
                    break;
                }
            }
            Ok(())
        }
    }

    fn kv(pairs: &[(&str, &str)]) -> MapKv {
        MapKv(
            pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    fn apply(base: &mut MapKv, ops: Vec<KvOp>) {
        for op in ops {
            match op {
                KvOp::Put(k, v) => {
                    base.0.insert(k, v);
                }
                KvOp::Delete(k) => {
                    base.0.remove(&k);
                }
                KvOp::DeleteRange(s, e) => base.0.retain(|k, _| !(k >= &s && k < &e)),
            }
        }
    }

    #[test]
    fn reads_through_and_rolls_back() {
        let base = kv(&[("a1", "x"), ("a2", "y"), ("b", "z")]);
        let mut o = KvOverlay::default();
        o.begin();
        o.put(b"a3".to_vec(), b"new".to_vec());
        o.commit();
        o.begin();
        o.delete_range(b"a".to_vec(), b"b".to_vec());
        o.put(b"a9".to_vec(), b"after".to_vec());
        assert_eq!(o.get(&base, b"a1").expect("get"), None);
        let s = o.scan(&base, b"a", b"c", 10).expect("scan");
        assert_eq!(s.len(), 2, "a9 and b: {s:?}");
        o.rollback();
        assert_eq!(o.get(&base, b"a1").expect("get"), Some(b"x".to_vec()));
        assert_eq!(o.get(&base, b"a3").expect("get"), Some(b"new".to_vec()));
        let s = o.scan(&base, b"a", b"b", 2).expect("scan");
        assert_eq!(
            s.iter().map(|p| p.0.clone()).collect::<Vec<_>>(),
            vec![b"a1".to_vec(), b"a2".to_vec()]
        );
    }

    #[test]
    fn a_transaction_saves_a_log_once_and_rolls_back_to_its_start() {
        let c = CollectionId::new("1.0_head").expect("valid");
        let v = |i: u128| bytes::Bytes::from(i.to_le_bytes().to_vec());
        let mut o = KvOverlay::default();
        o.begin();
        for i in 1..=3 {
            o.log_append(&c, i, v(i));
        }
        o.commit();
        let kept = o.log(&c).cloned();
        o.begin();
        for i in 4..=1000 {
            o.log_append(&c, i, v(i));
        }
        o.log_trim(&c, 2);
        // One saved delta for the whole transaction, not one per change
        // (each a copy of everything appended so far).
        assert_eq!(o.undo.len(), 1);
        assert_eq!(o.log(&c).map(|d| d.appended().len()), Some(998));
        o.rollback();
        assert_eq!(o.log(&c).cloned(), kept);
        assert_eq!(kept.map(|d| d.appended().len()), Some(3));
        // A new transaction saves again.
        o.begin();
        o.log_clear(&c);
        o.rollback();
        assert_eq!(o.log(&c).map(|d| d.appended().len()), Some(3));
    }

    #[test]
    fn ops_reproduce_the_overlay_view() {
        let mut base = kv(&[("a1", "x"), ("a2", "y"), ("b", "z")]);
        let mut o = KvOverlay::default();
        o.begin();
        o.put(b"a1".to_vec(), b"first".to_vec());
        o.delete_range(b"a".to_vec(), b"a5".to_vec());
        o.put(b"a2".to_vec(), b"again".to_vec());
        o.delete(b"b".to_vec());
        o.commit();
        let view = o.scan(&base, b"", b"z", 100).expect("scan");
        apply(&mut base, o.freeze().to_ops());
        let after: Vec<(Vec<u8>, Vec<u8>)> = base.0.into_iter().collect();
        assert_eq!(view, after);
    }
}
