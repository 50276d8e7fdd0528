//! What a batch being prepared reads through: the batches written but not
//! yet published (newest first), then the database and the data overlay.
//! This lets the next batch be prepared and written while the previous
//! one waits for its flush.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::StoreError;
use crate::kv::{Kv, KvRead};
use crate::layout::BLOCK_SIZE;
use crate::overlay::{FrozenKv, Seen};

/// A written, unpublished batch as later batches see it.
pub struct InFlight {
    pub seq: u64,
    pub kv: FrozenKv,
    /// Physical block -> (buffer, byte offset) of its new content.
    pub blocks: HashMap<u64, (Bytes, usize)>,
}

impl InFlight {
    pub fn block(&self, phys: u64) -> Option<&[u8]> {
        let (buf, at) = self.blocks.get(&phys)?;
        Some(&buf[*at..*at + BLOCK_SIZE as usize])
    }
}

/// The database seen through the in-flight batches.
pub struct View<'a> {
    /// Oldest first.
    pub layers: Vec<Arc<InFlight>>,
    pub base: &'a Kv,
}

impl View<'_> {
    /// The newest unpublished content of a physical block, if any.
    pub fn block(&self, phys: u64) -> Option<&[u8]> {
        self.layers.iter().rev().find_map(|l| l.block(phys))
    }

    /// What the layers say about `key`, newest first.
    fn layered(&self, key: &[u8]) -> Seen<'_> {
        for l in self.layers.iter().rev() {
            match l.kv.lookup(key) {
                Seen::Unknown => continue,
                other => return other,
            }
        }
        Seen::Unknown
    }
}

impl KvRead for View<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.layered(key) {
            Seen::Value(v) => Ok(Some(v.to_vec())),
            Seen::Deleted => Ok(None),
            Seen::Unknown => self.base.get(key),
        }
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        if self.layers.is_empty() {
            return self.base.scan(start, end, f);
        }
        // The layers' view of the range, oldest applied first.
        let mut upper: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> = Default::default();
        for l in &self.layers {
            for (s, e) in l.kv.range_dels() {
                upper.retain(|k, _| !(k >= s && k < e));
            }
            for (k, v) in l.kv.entries_in(start, end) {
                upper.insert(k.clone(), v.clone());
            }
        }
        let shadowed =
            |k: &[u8]| upper.contains_key(k) || self.layers.iter().any(|l| l.kv.range_deleted(k));
        let mut pending = upper
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
            .peekable();
        let mut go_on = true;
        self.base.scan(start, end, &mut |k, v| {
            while let Some((uk, uv)) = pending.next_if(|(uk, _)| uk.as_slice() < k) {
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
