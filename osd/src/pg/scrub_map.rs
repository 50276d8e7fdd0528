//! Building one copy's scrub map of a chunk from the local store (the I/O
//! half of scrubbing; the comparison is the peering crate's). Per object:
//! its size, its object info, a digest of each user xattr, a digest of its
//! omap (header, keys and values) and, for a deep scrub, a digest of its
//! whole data read through the store, which checks every block's checksum:
//! a failed read is recorded as the copy's `read_error`.
//!
//! Digests are crc32c seeded with -1, as Ceph's; memory is bounded by the
//! chunk's object count and `osd_deep_scrub_stride`.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use kalmar_common::encoding::Decode;
use kalmar_objectstore::{CollectionId, ObjectId, ObjectStore, StoreError};
use kalmar_peering::scrub::{ScrubInfo, ScrubMap, ScrubObject};
use kalmar_peering::ObjectBound;

use crate::names::{is_internal, user_attr_name, ObjectInfo, DIGEST_SEED as SEED, OI_ATTR};

/// Names listed per store call.
const LIST_PAGE: usize = 256;
/// Omap entries read per store call.
const OMAP_PAGE: usize = 1024;

/// What a chunk covers: objects after `start`, up to and including `end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRange {
    pub start: ObjectBound,
    pub end: ObjectBound,
}

impl ChunkRange {
    pub fn contains(&self, oid: &str) -> bool {
        !self.start.covers(oid) && self.end.covers(oid)
    }
}

/// Lists the client objects of `range` in object order, at most `max`
/// (then `truncated`).
async fn list_range(
    store: &ObjectStore,
    coll: &CollectionId,
    range: &ChunkRange,
    max: usize,
) -> Result<(Vec<ObjectId>, bool), StoreError> {
    let mut out = Vec::new();
    let mut start = match &range.start {
        ObjectBound::Min => None,
        ObjectBound::Object(o) => ObjectId::new(o).ok(),
        ObjectBound::Max => return Ok((out, false)),
    };
    loop {
        let (page, next) = store
            .collection_list_async(coll, start.clone(), LIST_PAGE)
            .await?;
        for n in page {
            if is_internal(n.as_bytes()) {
                continue;
            }
            let name = String::from_utf8_lossy(n.as_bytes());
            if range.start.covers(&name) {
                continue;
            }
            if !range.end.covers(&name) {
                return Ok((out, false));
            }
            if out.len() == max {
                return Ok((out, true));
            }
            out.push(n);
        }
        match next {
            Some(n) => start = Some(n),
            None => return Ok((out, false)),
        }
    }
}

/// Where the next chunk after `start` ends on the primary: after
/// `max_objects` objects, or `Max` when fewer are left.
pub async fn chunk_end(
    store: &ObjectStore,
    coll: &CollectionId,
    start: &ObjectBound,
    max_objects: usize,
) -> Result<ObjectBound, StoreError> {
    let range = ChunkRange {
        start: start.clone(),
        end: ObjectBound::Max,
    };
    let (names, more) = list_range(store, coll, &range, max_objects.max(1)).await?;
    Ok(match (more, names.last()) {
        (true, Some(last)) => {
            ObjectBound::Object(String::from_utf8_lossy(last.as_bytes()).into_owned())
        }
        _ => ObjectBound::Max,
    })
}

/// The scrub map of this copy's objects in `range` (at most `max_objects`:
/// a copy holding far more than the primary's chunk stops there, and the
/// objects left out are reported missing and rewritten by a repair).
/// `Err` only for failures of the store as a whole; an object that cannot
/// be read is recorded with its error.
pub async fn build_map(
    store: &Arc<ObjectStore>,
    coll: &CollectionId,
    range: &ChunkRange,
    deep: bool,
    stride: u64,
    max_objects: usize,
) -> Result<(ScrubMap, u64), StoreError> {
    let (names, truncated) = list_range(store, coll, range, max_objects).await?;
    if truncated {
        tracing::warn!(%coll, "scrub chunk holds more than {max_objects} objects here; the rest are left out");
    }
    let mut map = ScrubMap::default();
    let mut bytes_read = 0;
    for o in names {
        let name = String::from_utf8_lossy(o.as_bytes()).into_owned();
        if let Some((obj, read)) = scrub_object(store, coll, &o, deep, stride).await {
            bytes_read += read;
            map.objects.insert(name, obj);
        }
    }
    Ok((map, bytes_read))
}

/// One object's entry; `None` if it vanished since the listing. Also
/// returns the data bytes read.
async fn scrub_object(
    store: &Arc<ObjectStore>,
    coll: &CollectionId,
    o: &ObjectId,
    deep: bool,
    stride: u64,
) -> Option<(ScrubObject, u64)> {
    let mut obj = ScrubObject::default();
    match store.stat_async(coll, o).await {
        Ok(st) => obj.size = st.size_bytes,
        Err(StoreError::ObjectNotFound { .. }) => return None,
        Err(_) => obj.stat_error = true,
    }
    match store.getattrs_async(coll, o).await {
        Ok(attrs) => record_attrs(&mut obj, &attrs),
        Err(StoreError::ObjectNotFound { .. }) => return None,
        Err(_) => obj.read_error = true,
    }
    match omap_digest(store, coll, o).await {
        Ok(d) => obj.omap_digest = Some(d),
        Err(_) => obj.read_error = true,
    }
    let mut read = 0;
    if deep && !obj.stat_error {
        match data_digest(store, coll, o, obj.size, stride).await {
            Ok(d) => {
                obj.data_digest = Some(d);
                read = obj.size;
            }
            Err(e) => {
                tracing::error!(%coll, object = %o, "deep scrub read failed: {e}");
                obj.read_error = true;
            }
        }
    }
    Some((obj, read))
}

fn record_attrs(obj: &mut ScrubObject, attrs: &[(String, Bytes)]) {
    for (k, v) in attrs {
        if k == OI_ATTR {
            match ObjectInfo::from_bytes(v) {
                Ok(oi) => {
                    obj.info = Some(ScrubInfo {
                        size: oi.size_bytes,
                        version: oi.version,
                        user_version: oi.user_version,
                        data_digest: oi.data_digest,
                        encoded_digest: crc32c::crc32c_append(SEED, v),
                    })
                }
                Err(_) => obj.info_corrupt = true,
            }
        } else if user_attr_name(k).is_some() {
            obj.attrs.insert(k.clone(), crc32c::crc32c_append(SEED, v));
        }
    }
}

/// crc32c over the header, then each key and value with its length (so
/// that moving bytes between a key and its value changes the digest).
async fn omap_digest(
    store: &Arc<ObjectStore>,
    coll: &CollectionId,
    o: &ObjectId,
) -> Result<u32, StoreError> {
    let (s, c, obj) = (store.clone(), coll.clone(), o.clone());
    let header = store.run_read(move || s.omap_get_header(&c, &obj)).await?;
    let mut d = SEED;
    if let Some(h) = header {
        d = crc32c::crc32c_append(d, &(h.len() as u32).to_le_bytes());
        d = crc32c::crc32c_append(d, &h);
    }
    let mut start = Bound::Unbounded;
    loop {
        let page = store
            .omap_iter_async(coll, o, start, Bound::Unbounded, OMAP_PAGE)
            .await?;
        for (k, v) in &page {
            for part in [k, v] {
                d = crc32c::crc32c_append(d, &(part.len() as u32).to_le_bytes());
                d = crc32c::crc32c_append(d, part);
            }
        }
        match page.last() {
            Some((k, _)) if page.len() == OMAP_PAGE => start = Bound::Excluded(k.to_vec()),
            _ => return Ok(d),
        }
    }
}

/// crc32c of the whole data, read `stride` bytes at a time.
async fn data_digest(
    store: &Arc<ObjectStore>,
    coll: &CollectionId,
    o: &ObjectId,
    size: u64,
    stride: u64,
) -> Result<u32, StoreError> {
    let mut d = SEED;
    let mut off = 0;
    while off < size {
        let len = stride.max(4096).min(size - off);
        let b = store.read_async(coll, o, off, len).await?;
        if b.len() as u64 != len {
            return Err(StoreError::InvalidArgument(format!(
                "short read: {} of {len} bytes at {off}",
                b.len()
            )));
        }
        d = crc32c::crc32c_append(d, &b);
        off += len;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = ChunkRange {
            start: ObjectBound::Object("b".into()),
            end: ObjectBound::Object("d".into()),
        };
        assert!(!r.contains("a") && !r.contains("b"));
        assert!(r.contains("c") && r.contains("d"));
        assert!(!r.contains("e"));
        let all = ChunkRange {
            start: ObjectBound::Min,
            end: ObjectBound::Max,
        };
        assert!(all.contains("") && all.contains("zzz"));
    }
}
