//! Collection logs: an append-only sequence of (key, value) per collection
//! (the OSD keeps its PG log in it).
//!
//! An append costs only its bytes in the journal record: committed
//! changes of a log are kept as a [`LogDelta`] (appended entries, a trim
//! point, a clear) in the engine's layers, and a checkpoint writes each
//! log's new entries to the database as one chunk. A chunk is keyed by the
//! key of its last entry, so trimming deletes every chunk whose last entry
//! is trimmed with one range deletion, and records the trim point (chunks
//! partly trimmed keep their older entries until a later trim covers them
//! whole; readers skip them). So the database sees one put per log per
//! checkpoint, not a put and a delete per entry.
//!
//! Keys must increase: an append must be above the log's floor, the highest
//! key appended or trimmed through since the last clear (the transaction is
//! refused otherwise). So chunks of one log are written in key order, and
//! applying a delta is idempotent: readers may stack a sealed layer on a
//! database that already holds it.

use std::collections::BTreeMap;

use bytes::Bytes;
use kalmar_common::encoding::{Decode, DecodeError, Decoder, Encode};

use crate::error::StoreError;
use crate::journal::cost;
use crate::keys;
use crate::kv::{KvOp, KvRead};
use crate::types::CollectionId;

/// Changes of one collection's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogDelta {
    /// Everything older was dropped first.
    pub cleared: bool,
    /// Entries with keys up to here were dropped (after the clear).
    pub trim: Option<u128>,
    /// Entries appended, in key order, all above `trim`.
    appended: Vec<(u128, Bytes)>,
    /// What `appended` costs in a journal record, kept as it changes: a
    /// layer merges every write's delta into its PG's delta and asks for
    /// the size each time, which a sum over the entries made quadratic.
    appended_bytes: usize,
}

fn item_bytes(v: &Bytes) -> usize {
    v.len() + cost::LOG_ITEM_BYTES as usize
}

impl LogDelta {
    /// A delta from its decoded parts (`appended` in key order).
    pub fn from_parts(cleared: bool, trim: Option<u128>, appended: Vec<(u128, Bytes)>) -> Self {
        debug_assert!(
            appended.windows(2).all(|w| w[0].0 < w[1].0),
            "keys increase"
        );
        let appended_bytes = appended.iter().map(|(_, v)| item_bytes(v)).sum();
        LogDelta {
            cleared,
            trim,
            appended,
            appended_bytes,
        }
    }

    /// Entries appended, in key order, all above the trim point.
    pub fn appended(&self) -> &[(u128, Bytes)] {
        &self.appended
    }

    pub fn bytes(&self) -> usize {
        self.appended_bytes + cost::LOG_DELTA_BYTES as usize
    }

    /// The marks after this delta, over a log whose marks were `base`.
    pub fn mark_over(&self, base: LogMark) -> LogMark {
        let mut m = if self.cleared {
            LogMark::default()
        } else {
            base
        };
        if let Some(t) = self.trim {
            m.trim = m.trim.max(t);
        }
        if let Some((k, _)) = self.appended.last() {
            m.last = m.last.max(*k);
        }
        m
    }

    pub fn append(&mut self, key: u128, value: Bytes) {
        let above_trim = self.trim.is_none_or(|t| key > t);
        let above_last = self.appended.last().is_none_or(|(k, _)| key > *k);
        if above_trim && above_last {
            self.appended_bytes += item_bytes(&value);
            self.appended.push((key, value));
        }
    }

    pub fn trim(&mut self, through: u128) {
        if self.trim.is_some_and(|t| t >= through) {
            return;
        }
        self.trim = Some(through);
        // Keys increase: the trimmed entries are a prefix.
        let n = self.appended.partition_point(|(k, _)| *k <= through);
        for (_, v) in self.appended.drain(..n) {
            self.appended_bytes -= item_bytes(&v);
        }
    }

    pub fn clear(&mut self) {
        *self = LogDelta {
            cleared: true,
            ..LogDelta::default()
        };
    }

    /// Applies a newer delta on top of this one.
    pub fn merge(&mut self, newer: &LogDelta) {
        if newer.cleared {
            self.clear();
        }
        if let Some(t) = newer.trim {
            self.trim(t);
        }
        for (k, v) in &newer.appended {
            self.append(*k, v.clone());
        }
    }

    /// The database operations that make the database show this delta
    /// applied to what it holds: deletions first, then the new chunk.
    pub fn to_ops(&self, c: &CollectionId, out: &mut Vec<KvOp>) {
        let (lo, hi) = keys::log_chunk_range(c);
        if self.cleared {
            out.push(KvOp::DeleteRange(lo.clone(), hi));
            out.push(KvOp::Delete(keys::log_trim(c)));
        }
        if let Some(t) = self.trim {
            // Chunks whose last entry is trimmed: keys up to `t`.
            out.push(KvOp::DeleteRange(
                lo,
                keys::log_chunk(c, t.saturating_add(1)),
            ));
            out.push(KvOp::Put(keys::log_trim(c), t.to_be_bytes().to_vec()));
        }
        if let Some((last, _)) = self.appended.last() {
            out.push(KvOp::Put(
                keys::log_chunk(c, *last),
                encode_chunk(&self.appended),
            ));
        }
    }
}

fn encode_chunk(entries: &[(u128, Bytes)]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(entries.iter().map(|(_, v)| v.len() + 24).sum());
    kalmar_common::encoding::encode_versioned(&mut buf, 1, 1, |buf| {
        (entries.len() as u32).encode(buf);
        for (k, v) in entries {
            k.encode(buf);
            kalmar_common::encoding::put_bytes(buf, v);
        }
    });
    buf
}

fn decode_chunk(bytes: &[u8]) -> Result<Vec<(u128, Bytes)>, DecodeError> {
    let mut d = Decoder::new(bytes);
    let v = d.versioned("log chunk", 1, |d, _| {
        let n = d.len_prefix(20, "log chunk entries")?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let k = u128::decode(d)?;
            let v = Bytes::copy_from_slice(d.bytes()?);
            out.push((k, v));
        }
        Ok(out)
    })?;
    d.finish()?;
    Ok(v)
}

/// How far a log went since its last clear: the highest key trimmed
/// through and the highest key appended. Appends must be above both (the
/// floor); a trim not above `trim` changes nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogMark {
    pub trim: u128,
    pub last: u128,
}

impl LogMark {
    pub fn floor(&self) -> u128 {
        self.trim.max(self.last)
    }
}

/// A log as read: its marks and its entries in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogState {
    pub mark: LogMark,
    pub entries: Vec<(u128, Bytes)>,
}

/// A collection's log as the database holds it (partly trimmed chunks
/// filtered).
pub fn read_persisted(kv: &dyn KvRead, c: &CollectionId) -> Result<LogState, StoreError> {
    let trim = match kv.get(&keys::log_trim(c))? {
        Some(v) => {
            let a: [u8; 16] = v.as_slice().try_into().map_err(|_| {
                StoreError::corrupt(format!("log trim point of {c}"), "not 16 bytes")
            })?;
            Some(u128::from_be_bytes(a))
        }
        None => None,
    };
    let (lo, hi) = keys::log_chunk_range(c);
    let mut out = LogState {
        mark: LogMark {
            trim: trim.unwrap_or(0),
            last: 0,
        },
        entries: Vec::new(),
    };
    let mut bad = None;
    kv.scan(&lo, &hi, &mut |k, v| {
        match decode_chunk(v) {
            Ok(entries) => {
                for (key, val) in entries {
                    out.mark.last = out.mark.last.max(key);
                    if key > out.mark.trim && out.entries.last().is_none_or(|(l, _)| key > *l) {
                        out.entries.push((key, val));
                    }
                }
            }
            Err(e) => {
                bad = Some(StoreError::corrupt(keys::describe(k), e));
                return false;
            }
        }
        true
    })?;
    match bad {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Applies `deltas` (oldest first) to a log.
pub fn apply_deltas<'a>(mut log: LogState, deltas: impl Iterator<Item = &'a LogDelta>) -> LogState {
    for d in deltas {
        if d.cleared {
            log = LogState::default();
        }
        if let Some(t) = d.trim {
            log.entries.retain(|(k, _)| *k > t);
            log.mark.trim = log.mark.trim.max(t);
        }
        for (k, v) in &d.appended {
            if *k > log.mark.floor() {
                log.mark.last = *k;
                log.entries.push((*k, v.clone()));
            }
        }
    }
    log
}

/// The log changes of a layer, by collection.
pub type LogDeltas = BTreeMap<CollectionId, LogDelta>;

/// One log change as a journal record carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOp {
    pub cid: CollectionId,
    pub delta: LogDelta,
}

impl Encode for LogOp {
    fn encode(&self, buf: &mut Vec<u8>) {
        encode_log_op(&self.cid, &self.delta, buf)
    }
}

/// A [`LogOp`]'s encoding from its parts (a batch's layer holds them).
pub fn encode_log_op(cid: &CollectionId, delta: &LogDelta, buf: &mut Vec<u8>) {
    cid.as_str().encode(buf);
    delta.cleared.encode(buf);
    delta.trim.encode(buf);
    (delta.appended.len() as u32).encode(buf);
    for (k, v) in &delta.appended {
        k.encode(buf);
        kalmar_common::encoding::put_bytes(buf, v);
    }
}

impl Decode for LogOp {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let name = String::decode(d)?;
        let cid = CollectionId::new(name).map_err(|e| DecodeError::Invalid {
            what: "log op collection",
            detail: e.to_string(),
        })?;
        let cleared = bool::decode(d)?;
        let trim = Option::<u128>::decode(d)?;
        let n = d.len_prefix(20, "log op entries")?;
        let mut appended = Vec::with_capacity(n);
        for _ in 0..n {
            let k = u128::decode(d)?;
            appended.push((k, Bytes::copy_from_slice(d.bytes()?)));
        }
        Ok(LogOp {
            cid,
            delta: LogDelta::from_parts(cleared, trim, appended),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{KvStore, MemKv};
    use proptest::prelude::*;

    fn b(v: u8) -> Bytes {
        Bytes::from(vec![v; 3])
    }

    #[test]
    fn checkpointed_chunks_read_back_with_trims_and_clears() {
        let c = CollectionId::new("1.2_head").expect("cid");
        let kv = MemKv::new();
        let mut d1 = LogDelta::default();
        for k in 1..=5u8 {
            d1.append(k as u128, b(k));
        }
        let mut ops = Vec::new();
        d1.to_ops(&c, &mut ops);
        kv.write(&ops).expect("write");
        // A second checkpoint: trim to 3 (chunk 1..5 is partly trimmed and
        // stays), append 6..7.
        let mut d2 = LogDelta::default();
        d2.trim(3);
        d2.append(6, b(6));
        d2.append(7, b(7));
        let mut ops = Vec::new();
        d2.to_ops(&c, &mut ops);
        kv.write(&ops).expect("write");
        let keys: Vec<u128> = read_persisted(&kv, &c)
            .expect("read")
            .entries
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![4, 5, 6, 7]);
        // Trimming through 5 drops the first chunk entirely.
        let mut d3 = LogDelta::default();
        d3.trim(5);
        let mut ops = Vec::new();
        d3.to_ops(&c, &mut ops);
        kv.write(&ops).expect("write");
        assert_eq!(
            kv.scan_collect(
                &keys::log_chunk_range(&c).0,
                &keys::log_chunk_range(&c).1,
                10
            )
            .expect("scan")
            .len(),
            1
        );
        // Another collection's log is untouched by a clear.
        let other = CollectionId::new("1.20_head").expect("cid");
        let mut o = LogDelta::default();
        o.append(1, b(1));
        let mut ops = Vec::new();
        o.to_ops(&other, &mut ops);
        let mut clear = LogDelta::default();
        clear.clear();
        clear.to_ops(&c, &mut ops);
        kv.write(&ops).expect("write");
        assert!(read_persisted(&kv, &c).expect("read").entries.is_empty());
        assert_eq!(read_persisted(&kv, &other).expect("read").entries.len(), 1);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Append(u8),
        Trim(u8),
        Clear,
        Checkpoint,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => any::<u8>().prop_map(Step::Append),
            2 => any::<u8>().prop_map(Step::Trim),
            1 => Just(Step::Clear),
            2 => Just(Step::Checkpoint),
        ]
    }

    proptest! {
        /// Deltas checkpointed at random points and the rest read from
        /// memory show the same log as applying every change to a list;
        /// stacking a delta the database already holds changes nothing.
        #[test]
        fn deltas_and_chunks_read_like_a_list(steps in proptest::collection::vec(step(), 0..60)) {
            let c = CollectionId::new("3.7_head").expect("cid");
            let kv = MemKv::new();
            let mut model: Vec<(u128, Bytes)> = Vec::new();
            let mut floor = 0u128;
            let mut trimmed = 0u128;
            let mut pending = LogDelta::default();
            let mut last_written = LogDelta::default();
            let mut next = 0u128;
            for s in steps {
                match s {
                    Step::Append(v) => {
                        // The store refuses keys at or below the floor
                        // before they reach a delta.
                        let key = next + 1 + v as u128 % 3;
                        next = key;
                        prop_assert!(key > floor);
                        pending.append(key, b(v));
                        floor = key;
                        model.push((key, b(v)));
                    }
                    Step::Trim(v) => {
                        // The store drops a trim not above the trim point
                        // before it reaches a delta.
                        let t = next.saturating_sub(v as u128 % 8);
                        if t > trimmed {
                            pending.trim(t);
                            trimmed = t;
                        }
                        model.retain(|(k, _)| *k > t);
                        floor = floor.max(t);
                    }
                    Step::Clear => {
                        pending.clear();
                        model.clear();
                        floor = 0;
                        next = 0;
                        trimmed = 0;
                    }
                    Step::Checkpoint => {
                        let mut ops = Vec::new();
                        pending.to_ops(&c, &mut ops);
                        kv.write(&ops).expect("write");
                        last_written = std::mem::take(&mut pending);
                    }
                }
                // The kept size is the sum over the pending entries.
                let sum: usize = pending.appended().iter().map(|(_, v)| item_bytes(v)).sum();
                prop_assert_eq!(pending.bytes(), sum + cost::LOG_DELTA_BYTES as usize);
                let read = apply_deltas(read_persisted(&kv, &c).expect("read"), [&pending].into_iter());
                prop_assert_eq!(&read.entries, &model);
                let again = apply_deltas(
                    read_persisted(&kv, &c).expect("read"),
                    [&last_written, &pending].into_iter(),
                );
                prop_assert_eq!(&again.entries, &model);
            }
        }
    }
}
