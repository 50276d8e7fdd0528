//! Committed metadata that is not yet in the database, and the read view
//! over it.
//!
//! The database holds the state of the last checkpoint (see [`crate::kv`]).
//! Every commit engine keeps what its durable records changed since then
//! in memory: an active [`Layer`] that each published batch merges into,
//! and sealed layers handed to the checkpoint that is writing them to the
//! database. A reader sees the newest layer first, then older ones, then
//! the database ([`LayeredRead`]); a layer is dropped only after the
//! database holds it, so no reader ever sees a hole.
//!
//! A layer records point values (a put, or a deletion) and range
//! deletions. A point value set after a range deletion that covers it
//! survives it (merging removes the older point values inside the range).

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::collog::{LogDelta, LogDeltas};
use crate::error::StoreError;
use crate::kv::{KvOp, KvOpRef, KvRead};
use crate::types::CollectionId;

/// Disjoint key ranges `[start, end)`, merged as they are added.
#[derive(Debug, Default, Clone)]
pub struct RangeSet {
    /// start -> end
    ranges: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl RangeSet {
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Adds `[start, end)`, merging it with every range it touches.
    pub fn insert(&mut self, start: Vec<u8>, end: Vec<u8>) {
        if start >= end {
            return;
        }
        let (mut lo, mut hi) = (start, end);
        // A range starting before `lo` that reaches it.
        if let Some((s, e)) = self
            .ranges
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(&lo[..])))
            .next_back()
        {
            if *e >= lo {
                if *e > hi {
                    hi = e.clone();
                }
                lo = s.clone();
            }
        }
        // Ranges starting inside `[lo, hi]`.
        let inside: Vec<Vec<u8>> = self
            .ranges
            .range::<[u8], _>((Bound::Included(&lo[..]), Bound::Included(&hi[..])))
            .map(|(s, _)| s.clone())
            .collect();
        for s in inside {
            if let Some(e) = self.ranges.remove(&s) {
                if e > hi {
                    hi = e;
                }
            }
        }
        self.ranges.insert(lo, hi);
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.ranges
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .is_some_and(|(_, e)| key < e.as_slice())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.ranges.iter()
    }
}

/// What a layer says about a key.
pub enum Seen<'a> {
    Value(&'a [u8]),
    Deleted,
    Unknown,
}

/// Metadata changes; see the module documentation.
#[derive(Debug, Default, Clone)]
pub struct Layer {
    /// `None` is a point deletion.
    entries: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    range_dels: RangeSet,
    /// Changes of collection logs (see [`crate::collog`]).
    logs: LogDeltas,
    /// Approximate memory held (keys and values).
    bytes: usize,
}

impl Layer {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.range_dels.is_empty() && self.logs.is_empty()
    }

    /// The changes of collection `c`'s log, if any.
    pub fn log(&self, c: &CollectionId) -> Option<&LogDelta> {
        self.logs.get(c)
    }

    pub fn logs(&self) -> &LogDeltas {
        &self.logs
    }

    /// Applies a change of collection `c`'s log.
    pub fn merge_log(&mut self, c: &CollectionId, d: &LogDelta) {
        // The id is cloned only for a collection new to this layer: every
        // write merges its PG's log, so the common case is a hit.
        if !self.logs.contains_key(c) {
            self.logs.insert(c.clone(), LogDelta::default());
        }
        let Some(slot) = self.logs.get_mut(c) else {
            unreachable!("inserted above");
        };
        let before = slot.bytes();
        slot.merge(d);
        self.bytes = (self.bytes + slot.bytes()).saturating_sub(before);
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn lookup(&self, key: &[u8]) -> Seen<'_> {
        match self.entries.get(key) {
            Some(Some(v)) => Seen::Value(v),
            Some(None) => Seen::Deleted,
            None if self.range_dels.contains(key) => Seen::Deleted,
            None => Seen::Unknown,
        }
    }

    /// Whether a range deletion covers `key` (ignoring point entries).
    pub fn range_deleted(&self, key: &[u8]) -> bool {
        self.range_dels.contains(key)
    }

    pub fn range_dels(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.range_dels.iter()
    }

    /// Point entries within `[start, end)`.
    pub fn entries_in<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + 'a {
        self.entries
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
    }

    fn set(&mut self, key: Vec<u8>, v: Option<Vec<u8>>) {
        let (klen, vlen) = (key.len(), v.as_ref().map_or(0, Vec::len));
        match self.entries.insert(key, v) {
            Some(old) => {
                self.bytes = (self.bytes + vlen).saturating_sub(old.map_or(0, |o| o.len()))
            }
            None => self.bytes += klen + vlen + 32,
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.set(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.set(key, None);
    }

    /// Deletes `[start, end)`: the point values inside it and everything
    /// below the layer.
    pub fn delete_range(&mut self, start: Vec<u8>, end: Vec<u8>) {
        if start >= end {
            return;
        }
        let doomed: Vec<Vec<u8>> = self
            .entries
            .range::<[u8], _>((Bound::Included(&start[..]), Bound::Excluded(&end[..])))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            if let Some(v) = self.entries.remove(&k) {
                self.bytes = self
                    .bytes
                    .saturating_sub(k.len() + v.map_or(0, |v| v.len()) + 32);
            }
        }
        self.bytes += start.len() + end.len() + 32;
        self.range_dels.insert(start, end);
    }

    /// Applies `op` on top of the layer.
    pub fn apply_op(&mut self, op: &KvOp) {
        match op {
            KvOp::Put(k, v) => self.put(k.clone(), v.clone()),
            KvOp::Delete(k) => self.delete(k.clone()),
            KvOp::DeleteRange(s, e) => self.delete_range(s.clone(), e.clone()),
        }
    }

    /// Merges a newer layer on top of this one.
    pub fn merge(&mut self, newer: Layer) {
        for (s, e) in newer.range_dels.ranges {
            self.delete_range(s, e);
        }
        for (k, v) in newer.entries {
            self.set(k, v);
        }
        for (c, d) in &newer.logs {
            self.merge_log(c, d);
        }
    }

    /// The database operations that make the database show this layer:
    /// range deletions first (later point writes inside them survive), then
    /// point writes, then each log's chunk operations (log keys are apart
    /// from every other key, so their place in the order is free).
    pub fn to_ops(&self) -> Vec<KvOp> {
        let mut ops = self.kv_ops();
        for (c, d) in &self.logs {
            d.to_ops(c, &mut ops);
        }
        ops
    }

    /// The database operations of the layer's keys (records carry the log
    /// changes apart, see [`Layer::logs`]).
    pub fn kv_ops(&self) -> Vec<KvOp> {
        self.kv_op_refs().map(KvOpRef::to_owned).collect()
    }

    /// [`Layer::kv_ops`] borrowed, in the same order.
    pub fn kv_op_refs(&self) -> impl ExactSizeIterator<Item = KvOpRef<'_>> + '_ {
        let dels = self
            .range_dels
            .iter()
            .map(|(s, e)| KvOpRef::DeleteRange(s, e));
        let points = self.entries.iter().map(|(k, v)| match v {
            Some(v) => KvOpRef::Put(k, v),
            None => KvOpRef::Delete(k),
        });
        let n = self.range_dels.len() + self.entries.len();
        ExactLen(dels.chain(points), n)
    }
}

/// An iterator whose length is known ahead (a chain is not
/// `ExactSizeIterator`).
struct ExactLen<I>(I, usize);

impl<I: Iterator> Iterator for ExactLen<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let v = self.0.next()?;
        self.1 -= 1;
        Some(v)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

impl<I: Iterator> ExactSizeIterator for ExactLen<I> {}

/// Layers (newest first) above the database, read as one.
pub struct LayeredRead<'a> {
    /// Newest first.
    pub layers: Vec<&'a Layer>,
    pub base: &'a dyn KvRead,
}

/// What the newest of `layers` (newest first) that knows `key` says.
pub(crate) fn newest<'a>(layers: impl IntoIterator<Item = &'a Layer>, key: &[u8]) -> Seen<'a> {
    for l in layers {
        match l.lookup(key) {
            Seen::Unknown => continue,
            other => return other,
        }
    }
    Seen::Unknown
}

impl Seen<'_> {
    /// The value the layers said, else `base`'s.
    pub(crate) fn or_get(
        self,
        base: &dyn KvRead,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Seen::Value(v) => Ok(Some(v.to_vec())),
            Seen::Deleted => Ok(None),
            Seen::Unknown => base.get(key),
        }
    }

    /// [`Self::or_get`] shown to `f` without a copy.
    pub(crate) fn or_get_with(
        self,
        base: &dyn KvRead,
        key: &[u8],
        f: &mut dyn FnMut(Option<&[u8]>),
    ) -> Result<(), StoreError> {
        match self {
            Seen::Value(v) => f(Some(v)),
            Seen::Deleted => f(None),
            Seen::Unknown => return base.get_with(key, f),
        }
        Ok(())
    }
}

impl KvRead for LayeredRead<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        newest(self.layers.iter().copied(), key).or_get(self.base, key)
    }

    fn get_with(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), StoreError> {
        newest(self.layers.iter().copied(), key).or_get_with(self.base, key, f)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        if self.layers.iter().all(|l| l.is_empty()) {
            return self.base.scan(start, end, f);
        }
        // The layers' view of the range, oldest applied first.
        let mut upper: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
        for l in self.layers.iter().rev() {
            for (s, e) in l.range_dels() {
                let doomed: Vec<&[u8]> = upper
                    .range::<[u8], _>((Bound::Included(&s[..]), Bound::Excluded(&e[..])))
                    .map(|(k, _)| *k)
                    .collect();
                for k in doomed {
                    upper.remove(k);
                }
            }
            for (k, v) in l.entries_in(start, end) {
                upper.insert(k.as_slice(), v.as_deref());
            }
        }
        let shadowed =
            |k: &[u8]| upper.contains_key(k) || self.layers.iter().any(|l| l.range_deleted(k));
        let mut pending = upper
            .iter()
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .peekable();
        let mut go_on = true;
        self.base.scan(start, end, &mut |k, v| {
            while let Some((uk, uv)) = pending.next_if(|(uk, _)| *uk < k) {
                if !f(uk, uv) {
                    go_on = false;
                    return false;
                }
            }
            if shadowed(k) {
                return true;
            }
            go_on = f(k, v);
            go_on
        })?;
        if go_on {
            for (uk, uv) in pending {
                if !f(uk, uv) {
                    break;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::KvStore;
    use crate::kv::MemKv;
    use proptest::prelude::*;

    #[test]
    fn range_set_merges() {
        let mut r = RangeSet::default();
        r.insert(b"c".to_vec(), b"e".to_vec());
        r.insert(b"a".to_vec(), b"b".to_vec());
        r.insert(b"b".to_vec(), b"c".to_vec());
        assert_eq!(r.len(), 1, "touching ranges merge");
        assert!(r.contains(b"a") && r.contains(b"d") && !r.contains(b"e"));
        r.insert(b"x".to_vec(), b"z".to_vec());
        r.insert(b"d".to_vec(), b"y".to_vec());
        assert_eq!(r.len(), 1);
        assert!(r.contains(b"yy") && !r.contains(b"z"));
        r.insert(b"q".to_vec(), b"p".to_vec());
        assert_eq!(r.len(), 1, "an empty range adds nothing");
    }

    /// Applies ops to a plain map: the meaning the layers must keep.
    fn model_apply(m: &mut BTreeMap<Vec<u8>, Vec<u8>>, op: &KvOp) {
        match op {
            KvOp::Put(k, v) => {
                m.insert(k.clone(), v.clone());
            }
            KvOp::Delete(k) => {
                m.remove(k);
            }
            KvOp::DeleteRange(s, e) => m.retain(|k, _| !(k >= s && k < e)),
        }
    }

    fn op() -> impl Strategy<Value = KvOp> {
        let key = proptest::collection::vec(0u8..4, 1..3);
        prop_oneof![
            (key.clone(), proptest::collection::vec(any::<u8>(), 0..3))
                .prop_map(|(k, v)| KvOp::Put(k, v)),
            key.clone().prop_map(KvOp::Delete),
            (key.clone(), key).prop_map(|(a, b)| {
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                KvOp::DeleteRange(lo, hi)
            }),
        ]
    }

    proptest! {
        /// Base, then a stack of layers, read as one, equals the model;
        /// merging the layers and writing them to the base does too.
        #[test]
        fn layers_read_like_the_model(
            base_ops in proptest::collection::vec(op(), 0..10),
            layer_ops in proptest::collection::vec(proptest::collection::vec(op(), 0..8), 1..4),
        ) {
            let kv = MemKv::new();
            let mut model = BTreeMap::new();
            for o in &base_ops {
                model_apply(&mut model, o);
            }
            kv.write(&base_ops).expect("write");
            let mut layers: Vec<Layer> = Vec::new();
            for ops in &layer_ops {
                let mut l = Layer::default();
                for o in ops {
                    l.apply_op(o);
                    model_apply(&mut model, o);
                }
                layers.push(l);
            }
            let view = LayeredRead { layers: layers.iter().rev().collect(), base: &kv };
            let got = view.scan_collect(b"", &[0xff], usize::MAX).expect("scan");
            let want: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
            prop_assert_eq!(&got, &want);
            for k in [vec![0u8], vec![1], vec![2, 3], vec![3, 3]] {
                prop_assert_eq!(view.get(&k).expect("get"), model.get(&k).cloned());
            }
            let mut merged = Layer::default();
            for l in layers {
                merged.merge(l);
            }
            kv.write(&merged.to_ops()).expect("write");
            prop_assert_eq!(kv.scan_collect(b"", &[0xff], usize::MAX).expect("scan"), want);
        }
    }
}
