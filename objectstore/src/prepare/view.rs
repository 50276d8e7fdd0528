//! What a batch being prepared reads through: the batches of its engine
//! written but not yet durable (newest first), then the engine's committed
//! layers, then the database. This lets the next batch be prepared and
//! written while the previous one waits for its flush.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::StoreError;
use crate::kv::KvRead;
use crate::layer::{newest, Layer, LayeredRead};
use crate::layout::BLOCK_SIZE;

/// A written batch, not yet durable, as later batches see it.
pub struct InFlight {
    pub seq: u64,
    pub layer: Layer,
    /// Physical block -> (buffer, byte offset) of its new content.
    pub blocks: HashMap<u64, (Bytes, usize)>,
}

impl InFlight {
    pub fn block(&self, phys: u64) -> Option<&[u8]> {
        let (buf, at) = self.blocks.get(&phys)?;
        Some(&buf[*at..*at + BLOCK_SIZE as usize])
    }
}

/// The metadata as the batch being prepared sees it.
pub struct View<'a> {
    /// Oldest first.
    pub inflight: &'a [Arc<InFlight>],
    /// The engine's committed layers, newest first.
    pub committed: Vec<&'a Layer>,
    pub base: &'a dyn KvRead,
}

impl<'a> View<'a> {
    /// The newest unpublished content of a physical block, if any.
    pub fn block(&self, phys: u64) -> Option<&[u8]> {
        self.inflight.iter().rev().find_map(|l| l.block(phys))
    }

    fn layers(&self) -> Vec<&'a Layer> {
        self.layers_iter().collect()
    }

    /// The layers newest first, without collecting them.
    fn layers_iter(&self) -> impl Iterator<Item = &'a Layer> + '_ {
        self.inflight
            .iter()
            .rev()
            .map(|f| &f.layer)
            .chain(self.committed.iter().copied())
    }
}

impl KvRead for View<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        newest(self.layers_iter(), key).or_get(self.base, key)
    }

    fn get_with(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), StoreError> {
        newest(self.layers_iter(), key).or_get_with(self.base, key, f)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        LayeredRead {
            layers: self.layers(),
            base: self.base,
        }
        .scan(start, end, f)
    }
}
