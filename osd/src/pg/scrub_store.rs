//! The last scrub's findings, kept on disk (Ceph's `ScrubStore`), so the
//! primary answers `list-inconsistent-obj` after a restart as before it.
//!
//! They live in the omap of the PG collection's `"\0scrub"` object (apart
//! from `"\0pgmeta"`, whose omap a log rewrite clears): `_summary`, then
//! one `o_<object name>` key per recorded inconsistent object, so keys
//! sort in object order. A finished scrub replaces them in the transaction
//! that records its error counts in the PG info: after a crash the two
//! agree. A clean scrub leaves only the summary (an empty list).

use std::ops::Bound;

use bytes::Bytes;
use kalmar_common::encoding::{Decode, Encode};
use kalmar_common::impl_versioned;
use kalmar_maps::Epoch;
use kalmar_objectstore::{CollectionId, ObjectStore, StoreError, Transaction};
use kalmar_peering::scrub::Inconsistency;

use super::meta::LoadError;
use crate::names::scrub_oid;

const KEY_SUMMARY: &str = "_summary";
const OBJECT_PREFIX: &str = "o_";
/// Omap entries read per page when loading.
const LOAD_PAGE_KEYS: usize = 256;

/// What the last complete scrub this OSD ran as primary found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ScrubRecord {
    /// The interval the scrub ran in (`list-inconsistent-obj`'s epoch).
    pub(super) interval: Epoch,
    pub(super) deep: bool,
    /// The PG history's `last_scrub_stamp_us` the scrub set: the record
    /// is the PG's latest only while the history still shows it.
    pub(super) stamp_us: u64,
    /// In object order, at most `osd_scrub_max_recorded_inconsistent`.
    pub(super) inconsistents: Vec<Inconsistency>,
    /// Inconsistent objects beyond the bound.
    pub(super) unrecorded: u64,
}

/// The record without its objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Summary {
    interval: Epoch,
    deep: bool,
    stamp_us: u64,
    unrecorded: u64,
}
impl_versioned!(Summary, "scrub_summary", version = 1, compat = 1, {
    interval, deep, stamp_us, unrecorded,
});

fn key(k: &str) -> Bytes {
    Bytes::copy_from_slice(k.as_bytes())
}

/// Adds the replacement of the stored record by `r` to `t`.
pub(super) fn add_record(t: &mut Transaction, coll: &CollectionId, r: &ScrubRecord) {
    let o = scrub_oid();
    t.touch(coll, &o);
    t.omap_clear(coll, &o);
    let summary = Summary {
        interval: r.interval,
        deep: r.deep,
        stamp_us: r.stamp_us,
        unrecorded: r.unrecorded,
    };
    let mut entries = vec![(key(KEY_SUMMARY), Bytes::from(summary.to_bytes()))];
    for inc in &r.inconsistents {
        entries.push((
            key(&format!("{OBJECT_PREFIX}{}", inc.oid)),
            Bytes::from(inc.to_bytes()),
        ));
    }
    t.omap_setkeys(coll, &o, entries);
}

/// Reads the stored record back (`None`: no scrub recorded one). Objects
/// beyond `limit` count as unrecorded (the bound may have been lowered).
pub(super) async fn load(
    store: &ObjectStore,
    coll: &CollectionId,
    limit: usize,
) -> Result<Option<ScrubRecord>, LoadError> {
    let o = scrub_oid();
    let corrupt = |what: &str, detail: String| LoadError::Corrupt {
        coll: coll.to_string(),
        what: format!("scrub record {what}"),
        detail,
    };
    let mut summary: Option<Summary> = None;
    let mut inconsistents = Vec::new();
    let mut beyond = 0u64;
    let mut start: Bound<Vec<u8>> = Bound::Unbounded;
    loop {
        let page = match store
            .omap_iter_async(coll, &o, start.clone(), Bound::Unbounded, LOAD_PAGE_KEYS)
            .await
        {
            Ok(p) => p,
            Err(StoreError::ObjectNotFound { .. } | StoreError::CollectionNotFound(_)) => {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        };
        for (k, v) in &page {
            let k = String::from_utf8_lossy(k);
            if k == KEY_SUMMARY {
                summary =
                    Some(Summary::from_bytes(v).map_err(|e| corrupt("summary", e.to_string()))?);
            } else if k.starts_with(OBJECT_PREFIX) {
                if inconsistents.len() == limit {
                    beyond += 1;
                    continue;
                }
                inconsistents
                    .push(Inconsistency::from_bytes(v).map_err(|e| corrupt(&k, e.to_string()))?);
            } else {
                tracing::warn!(%coll, key = %k, "unknown key in the scrub record; ignored");
            }
        }
        match page.last() {
            Some((k, _)) if page.len() == LOAD_PAGE_KEYS => start = Bound::Excluded(k.to_vec()),
            _ => break,
        }
    }
    let Some(s) = summary else {
        return Ok(None); // touched by an interrupted write: nothing recorded
    };
    Ok(Some(ScrubRecord {
        interval: s.interval,
        deep: s.deep,
        stamp_us: s.stamp_us,
        inconsistents,
        unrecorded: s.unrecorded + beyond,
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use kalmar_maps::PgId;
    use kalmar_objectstore::MountOptions;
    use kalmar_peering::scrub::{compare_chunk, ScrubMap, ScrubObject};

    /// Inconsistent objects `names`: osd.1's copy is short.
    fn found(names: &[&str]) -> Vec<Inconsistency> {
        let mut maps: BTreeMap<i32, ScrubMap> = BTreeMap::new();
        for n in names {
            for (osd, size) in [(0, 8), (1, 4), (2, 8)] {
                maps.entry(osd).or_default().objects.insert(
                    n.to_string(),
                    ScrubObject {
                        size,
                        ..Default::default()
                    },
                );
            }
        }
        compare_chunk(0, &maps, &BTreeMap::new()).inconsistents
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn record_replace_and_load() {
        let (_dir, dev) = crate::test_store::formatted_device();
        let store = ObjectStore::mount(&dev, &MountOptions::default()).expect("mount");
        let coll = crate::names::pg_collection(PgId::new(1, 2));
        // No collection, then no record yet: nothing.
        assert_eq!(load(&store, &coll, 10).await.expect("loads"), None);
        let mut t = Transaction::new();
        t.create_collection(&coll);
        store.queue_transaction(t).await.expect("create");
        assert_eq!(load(&store, &coll, 10).await.expect("loads"), None);

        let names: Vec<String> = (0..300).map(|i| format!("obj-{i:04}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let rec = ScrubRecord {
            interval: 7,
            deep: true,
            stamp_us: 123,
            inconsistents: found(&refs),
            unrecorded: 2,
        };
        assert_eq!(rec.inconsistents.len(), 300);
        let mut t = Transaction::new();
        add_record(&mut t, &coll, &rec);
        store.queue_transaction(t).await.expect("record");
        // Over several pages, in object order.
        assert_eq!(
            load(&store, &coll, 1000).await.expect("loads"),
            Some(rec.clone())
        );
        // A lower bound counts the rest as unrecorded.
        let capped = load(&store, &coll, 100)
            .await
            .expect("loads")
            .expect("some");
        assert_eq!(capped.inconsistents[..], rec.inconsistents[..100]);
        assert_eq!(capped.unrecorded, 202);

        // A clean scrub replaces it: an empty list.
        let clean = ScrubRecord {
            interval: 9,
            deep: false,
            stamp_us: 456,
            inconsistents: Vec::new(),
            unrecorded: 0,
        };
        let mut t = Transaction::new();
        add_record(&mut t, &coll, &clean);
        store.queue_transaction(t).await.expect("replace");
        assert_eq!(load(&store, &coll, 1000).await.expect("loads"), Some(clean));
        let keys = store
            .omap_iter_async(&coll, &scrub_oid(), Bound::Unbounded, Bound::Unbounded, 10)
            .await
            .expect("omap");
        assert_eq!(keys.len(), 1, "only the summary is left");
        store.umount().expect("umount");
    }
}
