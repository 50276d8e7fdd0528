//! PG metadata in the store: what the state machine asks to persist
//! (`PgWrite`) turned into omap operations on the PG's `"\0pgmeta"`
//! object, and the reverse on startup.

use std::ops::Bound;

use bytes::Bytes;
use kalmar_common::encoding::{Decode, Encode};
use kalmar_maps::Epoch;
use kalmar_objectstore::{CollectionId, ObjectId, ObjectStore, StoreError, Transaction};
use kalmar_peering::{
    Eversion, LogWrite, PastIntervals, PgInfo, PgLog, PgLogDup, PgLogEntry, PgMeta, PgMissing,
    PgWrite,
};

use crate::names::{pgmeta_oid, KEY_EPOCH, KEY_INFO, KEY_MISSING, KEY_PAST_INTERVALS};

/// Omap entries read per page when loading a PG.
const LOAD_PAGE_KEYS: usize = 4096;

fn kv(key: &str, value: Vec<u8>) -> (Bytes, Bytes) {
    (Bytes::copy_from_slice(key.as_bytes()), Bytes::from(value))
}

/// Adds the creation of a PG (its collection and metadata object) to `t`.
pub fn add_create(t: &mut Transaction, coll: &CollectionId, meta: &PgMeta, epoch: Epoch) {
    t.create_collection(coll);
    let o = pgmeta_oid();
    t.touch(coll, &o);
    write_full(t, coll, &o, meta, epoch);
}

fn write_full(t: &mut Transaction, coll: &CollectionId, o: &ObjectId, meta: &PgMeta, epoch: Epoch) {
    let mut entries = vec![
        kv(KEY_INFO, meta.info.to_bytes()),
        kv(KEY_PAST_INTERVALS, meta.past_intervals.to_bytes()),
        kv(KEY_MISSING, meta.missing.to_bytes()),
        kv(KEY_EPOCH, epoch.to_bytes()),
    ];
    for e in meta.log.entries() {
        entries.push(kv(&e.version.omap_key(), e.to_bytes()));
    }
    for d in meta.log.dups() {
        entries.push(kv(&d.omap_key(), d.to_bytes()));
    }
    t.omap_setkeys(coll, o, entries);
}

/// Adds one `PgWrite` to `t`. A log rewrite replaces the whole metadata
/// object from `current()` (the machine's state after the batch: writing
/// it early is harmless, it only persists more). Object removals are the
/// caller's (they need existence checks).
pub fn add_pg_write(
    t: &mut Transaction,
    coll: &CollectionId,
    w: &PgWrite,
    current: impl FnOnce() -> PgMeta,
    epoch: Epoch,
) {
    let o = pgmeta_oid();
    if let Some(LogWrite::Rewrite(log)) = &w.log {
        t.omap_clear(coll, &o);
        let meta = PgMeta {
            log: log.clone(),
            ..current()
        };
        write_full(t, coll, &o, &meta, epoch);
        return;
    }
    let mut set = Vec::new();
    let mut rm = Vec::new();
    if let Some(info) = &w.info {
        set.push(kv(KEY_INFO, info.to_bytes()));
    }
    if let Some(p) = &w.past_intervals {
        set.push(kv(KEY_PAST_INTERVALS, p.to_bytes()));
    }
    if let Some(m) = &w.missing {
        set.push(kv(KEY_MISSING, m.to_bytes()));
    }
    if let Some(LogWrite::Delta {
        append,
        remove,
        dups_add,
        dups_remove,
    }) = &w.log
    {
        for e in append {
            set.push(kv(&e.version.omap_key(), e.to_bytes()));
        }
        for d in dups_add {
            set.push(kv(&d.omap_key(), d.to_bytes()));
        }
        rm.extend(
            remove
                .iter()
                .map(|v| Bytes::from(v.omap_key().into_bytes())),
        );
        rm.extend(
            dups_remove
                .iter()
                .map(|d| Bytes::from(d.omap_key().into_bytes())),
        );
    }
    // Removals first: a trimmed key is never one appended in the same write.
    if !rm.is_empty() {
        t.omap_rmkeys(coll, &o, rm);
    }
    if !set.is_empty() {
        t.omap_setkeys(coll, &o, set);
    }
}

/// Records the map epoch the PG has processed (the first `AdvMap` after a
/// restart carries it).
pub fn add_epoch(t: &mut Transaction, coll: &CollectionId, epoch: Epoch) {
    t.omap_setkeys(coll, &pgmeta_oid(), vec![kv(KEY_EPOCH, epoch.to_bytes())]);
}

/// Why a PG could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("PG metadata in {coll}: {what} is corrupt: {detail}")]
    Corrupt {
        coll: String,
        what: String,
        detail: String,
    },
}

/// Reads a PG's metadata back.
pub async fn load(store: &ObjectStore, coll: &CollectionId) -> Result<(PgMeta, Epoch), LoadError> {
    let o = pgmeta_oid();
    let corrupt = |what: &str, detail: String| LoadError::Corrupt {
        coll: coll.to_string(),
        what: what.to_string(),
        detail,
    };
    let mut info: Option<PgInfo> = None;
    let mut past = PastIntervals::new();
    let mut missing = PgMissing::new();
    let mut epoch: Epoch = 0;
    let mut entries: Vec<PgLogEntry> = Vec::new();
    let mut dups: Vec<PgLogDup> = Vec::new();
    let mut start: Bound<Vec<u8>> = Bound::Unbounded;
    loop {
        let page = store
            .omap_iter_async(coll, &o, start.clone(), Bound::Unbounded, LOAD_PAGE_KEYS)
            .await?;
        let n = page.len();
        for (k, v) in &page {
            let key = String::from_utf8_lossy(k);
            match key.as_ref() {
                KEY_INFO => {
                    info = Some(PgInfo::from_bytes(v).map_err(|e| corrupt("info", e.to_string()))?)
                }
                KEY_PAST_INTERVALS => {
                    past = PastIntervals::from_bytes(v)
                        .map_err(|e| corrupt("past intervals", e.to_string()))?
                }
                KEY_MISSING => {
                    missing =
                        PgMissing::from_bytes(v).map_err(|e| corrupt("missing", e.to_string()))?
                }
                KEY_EPOCH => {
                    epoch = Epoch::from_bytes(v).map_err(|e| corrupt("epoch", e.to_string()))?
                }
                k if k.starts_with("dup_") => {
                    dups.push(PgLogDup::from_bytes(v).map_err(|e| corrupt(k, e.to_string()))?)
                }
                k if Eversion::from_omap_key(k).is_some() => {
                    entries.push(PgLogEntry::from_bytes(v).map_err(|e| corrupt(k, e.to_string()))?)
                }
                other => tracing::warn!(%coll, key = other, "unknown key in PG metadata; ignored"),
            }
        }
        match page.last() {
            Some((k, _)) if n == LOAD_PAGE_KEYS => start = Bound::Excluded(k.to_vec()),
            _ => break,
        }
    }
    let info = info.ok_or_else(|| corrupt("info", "missing".into()))?;
    // Keys sort in version order, so entries and dups arrive ordered.
    let log = PgLog::from_parts(info.log_tail, entries, dups)
        .map_err(|e| corrupt("log", e.to_string()))?;
    Ok((
        PgMeta {
            info,
            log,
            missing,
            past_intervals: past,
        },
        epoch,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_maps::PgId;
    use kalmar_objectstore::{MkfsOptions, MountOptions};
    use kalmar_peering::ReqId;

    fn entry(v: u64) -> PgLogEntry {
        crate::wire::tests::test_entry(2, v, 7)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn persist_and_load_roundtrip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dev = dir.path().join("dev");
        std::fs::File::create(&dev)
            .and_then(|f| f.set_len(64 << 20))
            .expect("device file");
        ObjectStore::mkfs(
            &dev,
            &MkfsOptions::new(uuid::Uuid::new_v4(), uuid::Uuid::new_v4()),
        )
        .expect("mkfs");
        let store = ObjectStore::mount(&dev, &MountOptions::default()).expect("mount");
        let pgid = PgId::new(1, 2);
        let coll = crate::names::pg_collection(pgid);
        let mut meta = PgMeta {
            info: PgInfo::new(pgid, 2),
            log: PgLog::new(Eversion::ZERO),
            missing: PgMissing::new(),
            past_intervals: PastIntervals::new(),
        };
        let mut t = Transaction::new();
        add_create(&mut t, &coll, &meta, 2);
        store.queue_transaction(t).await.expect("create");
        // Append 5 entries, then trim 3 of them keeping 2 dups.
        for v in 1..=5 {
            meta.log.append(entry(v)).expect("append");
        }
        meta.info.last_update = meta.log.head();
        let w = PgWrite {
            info: Some(meta.info.clone()),
            log: Some(LogWrite::Delta {
                append: meta.log.entries().cloned().collect(),
                remove: vec![],
                dups_add: vec![],
                dups_remove: vec![],
            }),
            ..Default::default()
        };
        let mut t = Transaction::new();
        add_pg_write(&mut t, &coll, &w, || meta.clone(), 3);
        add_epoch(&mut t, &coll, 4);
        store.queue_transaction(t).await.expect("append");
        let trim = meta.log.trim(Eversion::new(2, 3), 2).expect("trim");
        meta.info.log_tail = meta.log.tail();
        let w = PgWrite {
            info: Some(meta.info.clone()),
            log: Some(LogWrite::Delta {
                append: vec![],
                remove: trim.trimmed,
                dups_add: trim.dups_added,
                dups_remove: trim.dups_removed,
            }),
            ..Default::default()
        };
        let mut t = Transaction::new();
        add_pg_write(&mut t, &coll, &w, || meta.clone(), 4);
        store.queue_transaction(t).await.expect("trim");
        let (back, epoch) = load(&store, &coll).await.expect("loads");
        assert_eq!(epoch, 4);
        assert_eq!(back.info, meta.info);
        assert_eq!(back.log, meta.log);
        assert!(
            back.log.find_reqid(&ReqId::new(7, 1, 3)).is_some(),
            "dup survives"
        );
        assert!(
            back.log.find_reqid(&ReqId::new(7, 1, 1)).is_none(),
            "beyond the dup bound"
        );
        // A rewrite replaces everything.
        let log = PgLog::from_entries(Eversion::ZERO, [entry(1)]).expect("log");
        meta.log = log.clone();
        meta.info.log_tail = Eversion::ZERO;
        meta.info.last_update = log.head();
        let w = PgWrite {
            log: Some(LogWrite::Rewrite(log)),
            ..Default::default()
        };
        let mut t = Transaction::new();
        add_pg_write(&mut t, &coll, &w, || meta.clone(), 9);
        store.queue_transaction(t).await.expect("rewrite");
        let (back, epoch) = load(&store, &coll).await.expect("loads");
        assert_eq!((back.log.len(), epoch), (1, 9));
        store.umount().expect("umount");
    }
}
