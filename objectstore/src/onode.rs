//! Object records and extent shards: the metadata values, pure data.
//!
//! An object's data is mapped block by block: logical block `b` lives in
//! shard `b / SHARD_BLOCKS`, which records for each of its blocks either a
//! hole or the physical block and the crc32c of its 4 KiB. Sharding keeps a
//! small overwrite of a big object to one small metadata update.

use std::collections::BTreeMap;

use kalmar_common::encoding::{Blob, Decode, DecodeError, Decoder, Encode};
use kalmar_common::impl_versioned;

/// Logical blocks per extent shard (256 KiB of object data).
pub const SHARD_BLOCKS: u64 = 64;

/// The record of one object, stored under its name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Onode {
    /// Numeric id that the object's extents, omap and header hang off.
    pub nid: u64,
    pub size: u64,
    pub attrs: BTreeMap<String, Blob>,
}
impl_versioned!(Onode, "onode", version = 1, compat = 1, { nid, size, attrs });

impl Onode {
    pub fn attrs_bytes(&self) -> usize {
        self.attrs.iter().map(|(k, v)| k.len() + v.0.len()).sum()
    }
}

/// The record of a collection (empty for now; versioned for later fields).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CollectionRecord {
    pub created_seq: u64,
}
impl_versioned!(CollectionRecord, "collection", version = 1, compat = 1, {
    created_seq
});

/// Store-wide counters kept in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    pub num_objects: u64,
    pub stored_bytes: u64,
}
impl_versioned!(StoreStats, "store stats", version = 1, compat = 1, { num_objects, stored_bytes });

/// Where one logical block lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMap {
    /// Block index in the data area.
    pub phys: u64,
    pub csum: u32,
}

/// The mapping of [`SHARD_BLOCKS`] consecutive logical blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    blocks: [Option<BlockMap>; SHARD_BLOCKS as usize],
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            blocks: [None; SHARD_BLOCKS as usize],
        }
    }
}

/// A run of physically contiguous blocks, as encoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Run {
    start: u16,
    phys: u64,
    csums: Vec<u32>,
}
impl_versioned!(Run, "extent run", version = 1, compat = 1, { start, phys, csums });

impl Shard {
    pub fn get(&self, i: usize) -> Option<BlockMap> {
        self.blocks.get(i).copied().flatten()
    }

    /// Sets block `i`; returns the block it replaced.
    pub fn set(&mut self, i: usize, m: Option<BlockMap>) -> Option<BlockMap> {
        std::mem::replace(&mut self.blocks[i], m)
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.iter().all(Option::is_none)
    }

    /// Mapped blocks as (index in shard, mapping).
    pub fn mapped(&self) -> impl Iterator<Item = (usize, BlockMap)> + '_ {
        self.blocks
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.map(|m| (i, m)))
    }

    fn runs(&self) -> Vec<Run> {
        let mut runs: Vec<Run> = Vec::new();
        for (i, m) in self.mapped() {
            match runs.last_mut() {
                Some(r)
                    if r.start as usize + r.csums.len() == i
                        && r.phys + r.csums.len() as u64 == m.phys =>
                {
                    r.csums.push(m.csum)
                }
                _ => runs.push(Run {
                    start: i as u16,
                    phys: m.phys,
                    csums: vec![m.csum],
                }),
            }
        }
        runs
    }
}

impl Encode for Shard {
    fn encode(&self, buf: &mut Vec<u8>) {
        kalmar_common::encoding::encode_versioned(buf, 1, 1, |buf| self.runs().encode(buf));
    }
}

impl Decode for Shard {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.versioned("extent shard", 1, |d, _| {
            let runs = Vec::<Run>::decode(d)?;
            let mut s = Shard::default();
            for r in runs {
                for (j, csum) in r.csums.iter().enumerate() {
                    let i = r.start as usize + j;
                    let slot = s.blocks.get_mut(i).ok_or_else(|| DecodeError::Invalid {
                        what: "extent shard",
                        detail: format!("block {i} beyond the shard"),
                    })?;
                    if slot.is_some() {
                        return Err(DecodeError::Invalid {
                            what: "extent shard",
                            detail: format!("block {i} mapped twice"),
                        });
                    }
                    *slot = Some(BlockMap {
                        phys: r.phys + j as u64,
                        csum: *csum,
                    });
                }
            }
            Ok(s)
        })
    }
}

/// Splits logical block `b` into (shard index, index within the shard).
pub fn shard_of(block: u64) -> (u32, usize) {
    (
        (block / SHARD_BLOCKS) as u32,
        (block % SHARD_BLOCKS) as usize,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn shard_roundtrip(entries in proptest::collection::vec(proptest::option::of((0u64..100, any::<u32>())), 64)) {
            let mut s = Shard::default();
            for (i, e) in entries.iter().enumerate() {
                s.set(i, e.map(|(p, c)| BlockMap { phys: p * 3 + (i as u64 % 2), csum: c }));
            }
            let back = Shard::from_bytes(&s.to_bytes()).expect("decodes");
            prop_assert_eq!(back, s);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Shard::from_bytes(&bytes);
            let _ = Onode::from_bytes(&bytes);
        }
    }

    #[test]
    fn contiguous_shard_is_one_run() {
        let mut s = Shard::default();
        for i in 0..64 {
            s.set(
                i,
                Some(BlockMap {
                    phys: 1000 + i as u64,
                    csum: i as u32,
                }),
            );
        }
        assert_eq!(s.runs().len(), 1);
        // 64 crcs plus a few bytes of framing.
        assert!(s.to_bytes().len() < 64 * 4 + 40);
        s.set(10, None);
        assert_eq!(s.runs().len(), 2);
        assert_eq!(shard_of(130), (2, 2));
    }
}
