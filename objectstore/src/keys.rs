//! The key schema of the metadata database.
//!
//! | prefix | key                                   | value                    |
//! |--------|---------------------------------------|--------------------------|
//! | `C`    | collection id                         | collection record        |
//! | `O`    | u8 len(coll), coll, object name       | onode (object record)    |
//! | `E`    | nid (be64), shard index (be32)        | extent shard             |
//! | `M`    | nid (be64), omap key                  | omap value               |
//! | `H`    | nid (be64)                            | omap header              |
//! | `B`    | bitmap segment index (be64)           | allocation bitmap words  |
//! | `G`    | u8 len(coll), coll, last key (be128)  | collection log chunk     |
//! | `T`    | collection id                         | collection log trim point|
//! | `S`    | name                                  | store-wide values        |
//!
//! Objects are keyed by name once (`O`); everything else hangs off the
//! object's numeric id (`nid`), so names of 4 KiB are stored once, a rename
//! moves one key, and removing an object is a few range deletes. Big-endian
//! numbers keep the database order equal to numeric order.

use crate::types::{CollectionId, ObjectId};

pub const P_COLL: u8 = b'C';
pub const P_ONODE: u8 = b'O';
pub const P_EXTENT: u8 = b'E';
pub const P_OMAP: u8 = b'M';
pub const P_OMAP_HEADER: u8 = b'H';
pub const P_BITMAP: u8 = b'B';
pub const P_STORE: u8 = b'S';
pub const P_LOG_CHUNK: u8 = b'G';
pub const P_LOG_TRIM: u8 = b'T';

pub const STORE_KV_INSTANCE: &[u8] = b"Skv_instance";
/// The checkpoint record (`crate::checkpoint::CheckpointRecord`): how far
/// the journal is in the database, the store counters, the next object id.
pub const STORE_CHECKPOINT: &[u8] = b"Scheckpoint";

/// A key built for a lookup: on the stack up to 128 bytes (a collection
/// id and a typical object name), so a read of the metadata allocates
/// nothing; keys stored in a batch are `Vec`s.
pub type LookupKey = smallvec::SmallVec<[u8; 128]>;

pub fn collection(c: &CollectionId) -> Vec<u8> {
    collection_lookup(c).into_vec()
}

pub fn collection_lookup(c: &CollectionId) -> LookupKey {
    let mut k = LookupKey::new();
    k.push(P_COLL);
    k.extend_from_slice(c.as_str().as_bytes());
    k
}

/// Prefix of every object key of collection `c`.
pub fn onode_prefix(c: &CollectionId) -> Vec<u8> {
    let s = c.as_str().as_bytes();
    let mut k = Vec::with_capacity(2 + s.len());
    k.push(P_ONODE);
    // Collection ids are at most 255 bytes (checked by CollectionId).
    k.push(s.len() as u8);
    k.extend_from_slice(s);
    k
}

pub fn onode(c: &CollectionId, o: &ObjectId) -> Vec<u8> {
    onode_lookup(c, o).into_vec()
}

pub fn onode_lookup(c: &CollectionId, o: &ObjectId) -> LookupKey {
    let s = c.as_str().as_bytes();
    let mut k = LookupKey::with_capacity(2 + s.len() + o.as_bytes().len());
    k.push(P_ONODE);
    k.push(s.len() as u8);
    k.extend_from_slice(s);
    k.extend_from_slice(o.as_bytes());
    k
}

/// Splits an onode key back into its collection and object name.
pub fn parse_onode(key: &[u8]) -> Option<(CollectionId, ObjectId)> {
    if key.first() != Some(&P_ONODE) || key.len() < 2 {
        return None;
    }
    let n = key[1] as usize;
    let coll = key.get(2..2 + n)?;
    let name = key.get(2 + n..)?;
    let c = CollectionId::new(std::str::from_utf8(coll).ok()?).ok()?;
    let o = ObjectId::new(name).ok()?;
    Some((c, o))
}

pub fn parse_collection(key: &[u8]) -> Option<CollectionId> {
    if key.first() != Some(&P_COLL) {
        return None;
    }
    CollectionId::new(std::str::from_utf8(&key[1..]).ok()?).ok()
}

fn nid_key(prefix: u8, nid: u64, extra: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + extra);
    k.push(prefix);
    k.extend_from_slice(&nid.to_be_bytes());
    k
}

pub fn extent_shard(nid: u64, shard: u32) -> Vec<u8> {
    let mut k = nid_key(P_EXTENT, nid, 4);
    k.extend_from_slice(&shard.to_be_bytes());
    k
}

/// `[start, end)` covering every key of `prefix` for `nid`.
pub fn nid_range(prefix: u8, nid: u64) -> (Vec<u8>, Vec<u8>) {
    let start = nid_key(prefix, nid, 0);
    let end = match nid.checked_add(1) {
        Some(n) => nid_key(prefix, n, 0),
        None => vec![prefix + 1],
    };
    (start, end)
}

/// Parses an `E`, `M` or `H` key into (nid, rest).
pub fn parse_nid_key(key: &[u8]) -> Option<(u8, u64, &[u8])> {
    if key.len() < 9 {
        return None;
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&key[1..9]);
    Some((key[0], u64::from_be_bytes(a), &key[9..]))
}

pub fn omap(nid: u64, user_key: &[u8]) -> Vec<u8> {
    let mut k = nid_key(P_OMAP, nid, user_key.len());
    k.extend_from_slice(user_key);
    k
}

pub fn omap_header(nid: u64) -> Vec<u8> {
    nid_key(P_OMAP_HEADER, nid, 0)
}

pub fn bitmap_segment(seg: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(P_BITMAP);
    k.extend_from_slice(&seg.to_be_bytes());
    k
}

fn log_chunk_prefix(c: &CollectionId) -> Vec<u8> {
    let s = c.as_str().as_bytes();
    let mut k = Vec::with_capacity(2 + s.len() + 16);
    k.push(P_LOG_CHUNK);
    // Collection ids are at most 255 bytes (checked by CollectionId).
    k.push(s.len() as u8);
    k.extend_from_slice(s);
    k
}

/// The chunk of collection `c`'s log whose last entry has key `last`.
pub fn log_chunk(c: &CollectionId, last: u128) -> Vec<u8> {
    let mut k = log_chunk_prefix(c);
    k.extend_from_slice(&last.to_be_bytes());
    k
}

/// `[start, end)` covering every chunk of collection `c`'s log.
pub fn log_chunk_range(c: &CollectionId) -> (Vec<u8>, Vec<u8>) {
    let p = log_chunk_prefix(c);
    let end = prefix_end(&p);
    (p, end)
}

/// The trim point of collection `c`'s log.
pub fn log_trim(c: &CollectionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + c.as_str().len());
    k.push(P_LOG_TRIM);
    k.extend_from_slice(c.as_str().as_bytes());
    k
}

/// The collection of a log chunk or trim key.
pub fn parse_log_key(key: &[u8]) -> Option<CollectionId> {
    let name = match *key.first()? {
        P_LOG_CHUNK => {
            let n = *key.get(1)? as usize;
            key.get(2..2 + n)?
        }
        P_LOG_TRIM => key.get(1..)?,
        _ => return None,
    };
    CollectionId::new(std::str::from_utf8(name).ok()?).ok()
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff: no finite bound; the caller's range then runs to the end.
    vec![0xff; prefix.len() + 1]
}

/// A human-readable rendering of a key (for dump-journal and fsck).
pub fn describe(key: &[u8]) -> String {
    match key.first() {
        Some(&P_COLL) => format!("collection {}", String::from_utf8_lossy(&key[1..])),
        Some(&P_ONODE) => match parse_onode(key) {
            Some((c, o)) => format!("onode {c}/{o}"),
            None => format!("onode (bad key {} bytes)", key.len()),
        },
        Some(&P_EXTENT) | Some(&P_OMAP) | Some(&P_OMAP_HEADER) => match parse_nid_key(key) {
            Some((P_EXTENT, nid, rest)) if rest.len() == 4 => {
                format!(
                    "extent shard nid {nid} #{}",
                    u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]])
                )
            }
            Some((P_OMAP, nid, rest)) => {
                format!("omap nid {nid} key {:?}", String::from_utf8_lossy(rest))
            }
            Some((_, nid, _)) => format!("omap header nid {nid}"),
            None => "short nid key".into(),
        },
        Some(&P_BITMAP) if key.len() == 9 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(&key[1..9]);
            format!("bitmap segment {}", u64::from_be_bytes(a))
        }
        Some(&P_STORE) => format!("store {}", String::from_utf8_lossy(&key[1..])),
        Some(&P_LOG_CHUNK) => match parse_log_key(key) {
            Some(c) => format!("log chunk of {c}"),
            None => "bad log chunk key".into(),
        },
        Some(&P_LOG_TRIM) => format!("log trim point of {}", String::from_utf8_lossy(&key[1..])),
        _ => format!("unknown key {key:02x?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn onode_keys_roundtrip_and_sort_within_collection() {
        let c = CollectionId::new("1.1f_head").expect("cid");
        let a = ObjectId::new(b"a").expect("oid");
        let b = ObjectId::new(b"ab").expect("oid");
        assert_eq!(parse_onode(&onode(&c, &a)), Some((c.clone(), a.clone())));
        assert!(onode(&c, &a) < onode(&c, &b));
        assert!(onode(&c, &a).starts_with(&onode_prefix(&c)));
        // A collection whose id extends another's never shares its prefix.
        let c2 = CollectionId::new("1.1f_headx").expect("cid");
        assert!(!onode(&c2, &a).starts_with(&onode_prefix(&c)));
    }

    #[test]
    fn nid_ranges_are_disjoint() {
        let (s, e) = nid_range(P_OMAP, 5);
        assert!(omap(5, b"") >= s && omap(5, &[0xff; 40]) < e);
        assert!(omap(6, b"") >= e);
        assert!(extent_shard(5, u32::MAX) < nid_range(P_EXTENT, 5).1);
        assert_eq!(prefix_end(b"ab"), b"ac".to_vec());
        assert_eq!(prefix_end(&[1, 0xff]), vec![2]);
    }

    proptest! {
        #[test]
        fn omap_key_order_is_user_key_order(a in proptest::collection::vec(any::<u8>(), 0..20),
                                            b in proptest::collection::vec(any::<u8>(), 0..20)) {
            prop_assert_eq!(a.cmp(&b), omap(9, &a).cmp(&omap(9, &b)));
        }
    }
}
