//! Object records and extent shards: the metadata values, pure data.
//!
//! An object's data is mapped block by block: logical block `b` lives in
//! shard `b / SHARD_BLOCKS`, which records for each of its blocks either a
//! hole or the physical block and the crc32c of its 4 KiB. Sharding keeps a
//! small overwrite of a big object to one small metadata update.

use std::collections::BTreeMap;

use kalmar_common::encoding::{encode_versioned, Blob, Decode, DecodeError, Decoder, Encode};
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

// An encoded onode is `version, compat, body length (u32)`, then the body:
// `nid`, `size`, the attribute map. Most writes need only nid and size, or
// replace one attribute (the OSD's object info) with a value of the same
// length: done in place on the stored bytes, with no decoding of the map
// and no allocation beyond the new value.
const FRAME_BYTES: usize = 6;
const SIZE_AT: usize = FRAME_BYTES + 8;

/// The fixed fields of an onode, read from its stored bytes in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnodeHead {
    pub nid: u64,
    pub size: u64,
}

impl OnodeHead {
    /// Reads nid and size, checking the frame as a full decode does
    /// (version, length, nothing after it); the attributes are not read.
    pub fn read(raw: &[u8]) -> Result<OnodeHead, DecodeError> {
        let mut d = Decoder::new(raw);
        let head = d.versioned("onode", 1, |d, _| {
            Ok(OnodeHead {
                nid: d.u64()?,
                size: d.u64()?,
            })
        })?;
        d.finish()?;
        Ok(head)
    }
}

/// Sets the size in an encoded onode.
pub fn set_size_in_place(raw: &mut [u8], size: u64) -> Result<(), DecodeError> {
    OnodeHead::read(raw)?;
    raw[SIZE_AT..SIZE_AT + 8].copy_from_slice(&size.to_le_bytes());
    Ok(())
}

/// Replaces attribute `name`'s value in an encoded onode when it exists
/// with a value of the same length, and says whether it did; otherwise
/// the caller decodes, changes and re-encodes. The total attribute bytes
/// do not change, so their limit still holds.
pub fn replace_attr_in_place(
    raw: &mut [u8],
    name: &str,
    value: &[u8],
) -> Result<bool, DecodeError> {
    match attr_value_range(raw, name)? {
        Some(r) if r.len() == value.len() => {
            raw[r].copy_from_slice(value);
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Where attribute `name`'s value lies in an encoded onode.
fn attr_value_range(raw: &[u8], name: &str) -> Result<Option<std::ops::Range<usize>>, DecodeError> {
    let mut d = Decoder::new(raw);
    let found = d.versioned("onode", 1, |d, _| {
        d.u64()?;
        d.u64()?;
        let n = d.len_prefix(2, "map")?;
        for _ in 0..n {
            let k = d.bytes()?;
            let v = d.bytes()?;
            if k == name.as_bytes() {
                let end = FRAME_BYTES + d.position();
                return Ok(Some(end - v.len()..end));
            }
        }
        Ok(None)
    })?;
    d.finish()?;
    Ok(found)
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

    /// The run starting at mapped block `i`: its first mapping and length
    /// (blocks whose physical blocks follow each other).
    fn run_at(&self, i: usize) -> Option<(BlockMap, usize)> {
        let first = self.blocks.get(i).copied().flatten()?;
        let mut n = 1;
        while let Some(Some(m)) = self.blocks.get(i + n) {
            if m.phys != first.phys + n as u64 {
                break;
            }
            n += 1;
        }
        Some((first, n))
    }
}

// A shard is written as a list of runs, each a versioned frame of
// `start: u16, phys: u64, csums: [u32]` (the encoding a `Vec` of such
// structs has), built straight from the block array: a write re-encodes
// its shard, and building the runs first cost an allocation per run.
const RUN_VERSION: u8 = 1;

impl Encode for Shard {
    fn encode(&self, buf: &mut Vec<u8>) {
        encode_versioned(buf, 1, 1, |buf| {
            let count_at = buf.len();
            0u32.encode(buf);
            let mut count = 0u32;
            let mut i = 0;
            while i < self.blocks.len() {
                let Some((first, n)) = self.run_at(i) else {
                    i += 1;
                    continue;
                };
                encode_versioned(buf, RUN_VERSION, RUN_VERSION, |buf| {
                    (i as u16).encode(buf);
                    first.phys.encode(buf);
                    (n as u32).encode(buf);
                    for m in self.blocks[i..i + n].iter().flatten() {
                        m.csum.encode(buf);
                    }
                });
                count += 1;
                i += n;
            }
            buf[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
        });
    }
}

impl Decode for Shard {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.versioned("extent shard", 1, |d, _| {
            let mut s = Shard::default();
            let runs = d.len_prefix(1, "vec")?;
            for _ in 0..runs {
                d.versioned("extent run", RUN_VERSION, |d, _| {
                    let start = d.u16()? as usize;
                    let phys = d.u64()?;
                    let n = d.len_prefix(4, "vec")?;
                    // All the run's checksums at once (`len_prefix` made
                    // sure they are there), then one range check.
                    let csums = d.take(n * 4, "extent run")?;
                    let slots =
                        s.blocks
                            .get_mut(start..start + n)
                            .ok_or_else(|| DecodeError::Invalid {
                                what: "extent shard",
                                detail: format!("blocks {start}..{} beyond the shard", start + n),
                            })?;
                    for (j, (slot, c)) in slots.iter_mut().zip(csums.chunks_exact(4)).enumerate() {
                        if slot.is_some() {
                            return Err(DecodeError::Invalid {
                                what: "extent shard",
                                detail: format!("block {} mapped twice", start + j),
                            });
                        }
                        let phys =
                            phys.checked_add(j as u64)
                                .ok_or_else(|| DecodeError::Invalid {
                                    what: "extent shard",
                                    detail: "block address overflows".into(),
                                })?;
                        *slot = Some(BlockMap {
                            phys,
                            csum: u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                        });
                    }
                    Ok(())
                })?;
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

    /// The shard format as a list of structs: the oracle for the direct
    /// encoding above.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    struct Run {
        start: u16,
        phys: u64,
        csums: Vec<u32>,
    }
    impl_versioned!(Run, "extent run", version = 1, compat = 1, { start, phys, csums });

    fn runs_of(s: &Shard) -> Vec<Run> {
        let mut runs: Vec<Run> = Vec::new();
        for (i, m) in s.mapped() {
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

    fn oracle_bytes(s: &Shard) -> Vec<u8> {
        let mut buf = Vec::new();
        kalmar_common::encoding::encode_versioned(&mut buf, 1, 1, |buf| runs_of(s).encode(buf));
        buf
    }

    proptest! {
        #[test]
        fn shard_roundtrip(entries in proptest::collection::vec(proptest::option::of((0u64..100, any::<u32>())), 64)) {
            let mut s = Shard::default();
            for (i, e) in entries.iter().enumerate() {
                s.set(i, e.map(|(p, c)| BlockMap { phys: p * 3 + (i as u64 % 2), csum: c }));
            }
            let bytes = s.to_bytes();
            prop_assert_eq!(&bytes, &oracle_bytes(&s), "same bytes as a list of runs");
            let back = Shard::from_bytes(&bytes).expect("decodes");
            prop_assert_eq!(back, s);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Shard::from_bytes(&bytes);
            let _ = Onode::from_bytes(&bytes);
        }
    }

    fn onode_with(attrs: &[(&str, &[u8])]) -> Onode {
        Onode {
            nid: 7,
            size: 12_345,
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), Blob(v.to_vec())))
                .collect(),
        }
    }

    #[test]
    fn head_and_size_are_read_and_set_in_place() {
        let on = onode_with(&[("_", b"object info"), ("snapset", b"ss")]);
        let mut raw = on.to_bytes();
        assert_eq!(
            OnodeHead::read(&raw).expect("reads"),
            OnodeHead {
                nid: 7,
                size: 12_345
            }
        );
        set_size_in_place(&mut raw, 99).expect("sets");
        let back = Onode::from_bytes(&raw).expect("decodes");
        assert_eq!(back, Onode { size: 99, ..on });
        // A damaged frame is refused, as a full decode refuses it.
        assert!(OnodeHead::read(&raw[..raw.len() - 1]).is_err());
        let mut longer = raw.clone();
        longer.push(0);
        assert!(OnodeHead::read(&longer).is_err());
        assert!(set_size_in_place(&mut raw[..10], 1).is_err());
    }

    #[test]
    fn same_length_attribute_is_replaced_in_place_and_others_are_not() {
        let on = onode_with(&[("_", b"old info"), ("a", b"x"), ("snapset", b"ss")]);
        let mut raw = on.to_bytes();
        assert!(replace_attr_in_place(&mut raw, "_", b"new info").expect("parses"));
        assert!(replace_attr_in_place(&mut raw, "snapset", b"SS").expect("parses"));
        let mut want = on.clone();
        want.attrs.insert("_".into(), Blob(b"new info".to_vec()));
        want.attrs.insert("snapset".into(), Blob(b"SS".to_vec()));
        assert_eq!(Onode::from_bytes(&raw).expect("decodes"), want);
        // A different length or a new name is left to the caller, untouched.
        let before = raw.clone();
        assert!(!replace_attr_in_place(&mut raw, "_", b"longer info").expect("parses"));
        assert!(!replace_attr_in_place(&mut raw, "b", b"x").expect("parses"));
        assert_eq!(raw, before);
    }

    proptest! {
        #[test]
        fn in_place_changes_match_decode_change_encode(
            attrs in proptest::collection::btree_map("[a-c_]{1,3}", proptest::collection::vec(any::<u8>(), 0..6), 0..5),
            name in "[a-c_]{1,3}",
            value in proptest::collection::vec(any::<u8>(), 0..6),
            size in any::<u64>(),
        ) {
            let on = Onode {
                nid: 3,
                size: 1,
                attrs: attrs.into_iter().map(|(k, v)| (k, Blob(v))).collect(),
            };
            let mut raw = on.to_bytes();
            let mut want = on.clone();
            set_size_in_place(&mut raw, size).expect("sets");
            want.size = size;
            let same_len = on.attrs.get(&name).is_some_and(|v| v.0.len() == value.len());
            prop_assert_eq!(replace_attr_in_place(&mut raw, &name, &value).expect("parses"), same_len);
            if same_len {
                want.attrs.insert(name, Blob(value));
            }
            prop_assert_eq!(Onode::from_bytes(&raw).expect("decodes"), want);
        }

        #[test]
        fn garbage_onode_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = OnodeHead::read(&bytes);
            let _ = replace_attr_in_place(&mut bytes, "_", b"v");
            let _ = set_size_in_place(&mut bytes, 5);
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
        assert_eq!(runs_of(&s).len(), 1);
        assert_eq!(s.to_bytes(), oracle_bytes(&s));
        // 64 crcs plus a few bytes of framing.
        assert!(s.to_bytes().len() < 64 * 4 + 40);
        s.set(10, None);
        assert_eq!(runs_of(&s).len(), 2);
        assert_eq!(s.to_bytes(), oracle_bytes(&s));
        assert_eq!(shard_of(130), (2, 2));
    }

    /// A stored shard whose runs reach past its 64 blocks, map a block
    /// twice or run past the largest address is refused (corruption).
    #[test]
    fn runs_past_the_shard_or_overlapping_are_refused() {
        let encode = |runs: Vec<Run>| {
            let mut buf = Vec::new();
            kalmar_common::encoding::encode_versioned(&mut buf, 1, 1, |buf| runs.encode(buf));
            buf
        };
        let run = |start: u16, n: u32| Run {
            start,
            phys: 500,
            csums: (0..n).collect(),
        };
        let ok = Shard::from_bytes(&encode(vec![run(0, 4), run(60, 4)])).expect("decodes");
        assert_eq!(ok.get(63), Some(BlockMap { phys: 503, csum: 3 }));
        let past = Shard::from_bytes(&encode(vec![run(62, 3)])).expect_err("past the end");
        assert!(
            past.to_string().contains("blocks 62..65 beyond the shard"),
            "{past}"
        );
        let twice = Shard::from_bytes(&encode(vec![run(0, 4), run(3, 2)])).expect_err("overlap");
        assert!(
            twice.to_string().contains("block 3 mapped twice"),
            "{twice}"
        );
        let mut high = run(0, 4);
        high.phys = u64::MAX - 1;
        let over = Shard::from_bytes(&encode(vec![high])).expect_err("overflow");
        assert!(
            over.to_string().contains("block address overflows"),
            "{over}"
        );
    }
}
