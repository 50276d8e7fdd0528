//! PG metadata in the store: what the state machine asks to persist
//! (`PgWrite`) turned into store operations, and the reverse on startup.
//!
//! The PG log lives in the collection log of the PG's collection (an
//! append costs its bytes in the journal record, no database key of its
//! own): one item per entry, keyed by [`Eversion::log_key`]. Trimmed
//! entries stay there as the dups until the dup bound evicts them, when
//! the store log is trimmed below the oldest dup kept. Each entry item
//! carries the info's fast fields ([`PgFastInfo`]); the whole info, past
//! intervals, missing set and map epoch are values of the `"\0pgmeta"`
//! object's omap, written only when a field beyond the fast ones changed.
//! So a steady-state write adds one log item and nothing else.

use std::ops::Bound;

use bytes::Bytes;
use kalmar_common::encoding::{encode_exact, Decode, DecodeError, Decoder, Encode};
use kalmar_maps::Epoch;
use kalmar_objectstore::{CollectionId, ObjectStore, StoreError, Transaction};
use kalmar_peering::{
    Eversion, LogWrite, PastIntervals, Pg, PgFastInfo, PgInfo, PgLog, PgLogDup, PgLogEntry, PgMeta,
    PgMissing, PgWrite,
};

use crate::names::{pgmeta_oid, KEY_EPOCH, KEY_INFO, KEY_MISSING, KEY_PAST_INTERVALS};

/// Omap entries read per page when loading a PG.
const LOAD_PAGE_KEYS: usize = 4096;

/// Journal bytes a PG log rewrite sets aside for what is neither log nor
/// missing set: the whole info, the past intervals, the map epoch, the
/// keys of the pgmeta object's omap and the cleared ranges. Past
/// intervals grow with the map changes a PG sees while it is not clean;
/// this holds hundreds of them.
pub const REWRITE_RESERVE_BYTES: u64 = 64 << 10;

/// Tags of the items in a PG's collection log.
const ITEM_ENTRY: u8 = 1;
const ITEM_DUP: u8 = 2;

fn kv(key: &str, value: Vec<u8>) -> (Bytes, Bytes) {
    (Bytes::copy_from_slice(key.as_bytes()), Bytes::from(value))
}

fn entry_item(e: &PgLogEntry, fast: &PgFastInfo) -> Vec<u8> {
    encode_exact(|v| {
        v.push(ITEM_ENTRY);
        e.encode(v);
        fast.encode(v);
    })
}

fn dup_item(d: &PgLogDup) -> Vec<u8> {
    encode_exact(|v| {
        v.push(ITEM_DUP);
        d.encode(v);
    })
}

/// One item of a PG's collection log, decoded.
enum LogItem {
    Entry(PgLogEntry, PgFastInfo),
    Dup(PgLogDup),
}

fn decode_item(bytes: &[u8]) -> Result<LogItem, DecodeError> {
    let mut d = Decoder::new(bytes);
    let item = match u8::decode(&mut d)? {
        ITEM_ENTRY => LogItem::Entry(PgLogEntry::decode(&mut d)?, PgFastInfo::decode(&mut d)?),
        ITEM_DUP => LogItem::Dup(PgLogDup::decode(&mut d)?),
        tag => {
            return Err(DecodeError::Invalid {
                what: "pg log item",
                detail: format!("unknown tag {tag}"),
            })
        }
    };
    d.finish()?;
    Ok(item)
}

/// Adds the creation of a PG (its collection, metadata object and log)
/// to `t`.
pub fn add_create(t: &mut Transaction, coll: &CollectionId, meta: &PgMeta, epoch: Epoch) {
    t.create_collection(coll);
    t.touch(coll, &pgmeta_oid());
    write_full(t, coll, meta, epoch);
}

/// Writes every value and every log item (over an empty log).
fn write_full(t: &mut Transaction, coll: &CollectionId, meta: &PgMeta, epoch: Epoch) {
    t.omap_setkeys(
        coll,
        &pgmeta_oid(),
        vec![
            kv(KEY_INFO, meta.info.to_bytes()),
            kv(KEY_PAST_INTERVALS, meta.past_intervals.to_bytes()),
            kv(KEY_MISSING, meta.missing.to_bytes()),
            kv(KEY_EPOCH, epoch.to_bytes()),
        ],
    );
    for d in meta.log.dups() {
        t.log_append(coll, d.version.log_key(), dup_item(d));
    }
    let fast = meta.info.fast();
    for e in meta.log.entries() {
        t.log_append(coll, e.version.log_key(), entry_item(e, &fast));
    }
}

/// The most journal bytes one PG log rewrite (`LogWrite::Rewrite`, one
/// transaction: see [`PgMetaWriter::add_write`]) takes when the log holds
/// `entries` entries and `dups` dups, every object name is `name_len`
/// bytes long and the missing set names as many objects as the log.
/// Counted as the store counts a record (`kalmar_objectstore::journal::cost`).
pub fn rewrite_record_bytes(entries: usize, dups: usize, name_len: usize) -> u64 {
    use kalmar_objectstore::journal::cost;
    let widest = Eversion::new(u32::MAX, u64::MAX);
    let entry = PgLogEntry {
        op: kalmar_peering::LogOp::Modify,
        oid: "n".repeat(name_len),
        version: widest,
        prior_version: widest,
        reqid: kalmar_peering::ReqId::new(u64::MAX, u64::MAX, u64::MAX),
        mtime_us: u64::MAX,
        return_code: i32::MIN,
        user_version: u64::MAX,
    };
    let entry_bytes =
        entry_item(&entry, &PgFastInfo::default()).len() as u64 + cost::LOG_ITEM_BYTES;
    let dup_bytes = dup_item(&PgLogDup::from(&entry)).len() as u64 + cost::LOG_ITEM_BYTES;
    // The missing set is one omap value: its size grows by one item per
    // object beyond the empty set's.
    let mut one = PgMissing::new();
    one.add(&entry.oid, widest, widest);
    let missing_item_bytes = (one.to_bytes().len() - PgMissing::new().to_bytes().len()) as u64;
    cost::RECORD_BASE_BYTES
        + cost::LOG_DELTA_BYTES
        + REWRITE_RESERVE_BYTES
        + entries as u64 * (entry_bytes + missing_item_bytes)
        + dups as u64 * dup_bytes
}

/// Records the map epoch the PG has processed (the first `AdvMap` after a
/// restart carries it).
pub fn add_epoch(t: &mut Transaction, coll: &CollectionId, epoch: Epoch) {
    t.omap_setkeys(coll, &pgmeta_oid(), vec![kv(KEY_EPOCH, epoch.to_bytes())]);
}

/// Turns a PG's `PgWrite`s into store operations; knows what of the info
/// is on disk, to write it only when more than its fast fields changed.
/// Every transaction it builds must be committed or stop the OSD (the
/// PG's rule), so what it believes is on disk is.
pub struct PgMetaWriter {
    coll: CollectionId,
    info_on_disk: PgInfo,
}

impl PgMetaWriter {
    /// For a PG whose stored info is (beyond the fast fields) `info`.
    pub fn new(coll: CollectionId, info: PgInfo) -> Self {
        PgMetaWriter {
            coll,
            info_on_disk: info,
        }
    }

    /// Adds one `PgWrite` to `t`. `pg` is the machine's state after the
    /// batch of actions the write belongs to: a rewrite persists all of
    /// it (writing it early is harmless, it only persists more). Object
    /// removals are the caller's (they need existence checks).
    pub fn add_write(&mut self, t: &mut Transaction, w: &PgWrite, pg: &Pg, epoch: Epoch) {
        let coll = &self.coll;
        if tracing::enabled!(tracing::Level::TRACE) {
            let kind = match &w.log {
                Some(LogWrite::Rewrite(l)) => {
                    format!("rewrite tail {} head {}", l.tail(), l.head())
                }
                Some(LogWrite::Delta { append, .. }) => format!(
                    "append {:?}",
                    append
                        .iter()
                        .map(|e| e.version.to_string())
                        .collect::<Vec<_>>()
                ),
                None => "no log".into(),
            };
            tracing::trace!(osd = pg.whoami(), %coll, last_update = %pg.info().last_update, "{kind}");
        }
        if let Some(LogWrite::Rewrite(log)) = &w.log {
            t.omap_clear(coll, &pgmeta_oid());
            t.log_clear(coll);
            let meta = PgMeta {
                log: log.clone(),
                ..pg.meta()
            };
            write_full(t, coll, &meta, epoch);
            self.info_on_disk = meta.info;
            return;
        }
        let mut set = Vec::new();
        let appended = match &w.log {
            Some(LogWrite::Delta { append, .. }) => append.as_slice(),
            _ => &[],
        };
        if let Some(info) = &w.info {
            // The newest item carries the fast fields, so the info itself
            // is written only when it says more.
            let carried = appended
                .last()
                .is_some_and(|e| e.version == info.last_update);
            if !carried || info.differs_beyond_fast(&self.info_on_disk) {
                set.push(kv(KEY_INFO, info.to_bytes()));
                self.info_on_disk.clone_from(info);
            }
        }
        if let Some(p) = &w.past_intervals {
            set.push(kv(KEY_PAST_INTERVALS, p.to_bytes()));
        }
        if let Some(m) = &w.missing {
            set.push(kv(KEY_MISSING, m.to_bytes()));
        }
        if !set.is_empty() {
            t.omap_setkeys(coll, &pgmeta_oid(), set);
        }
        if let Some(LogWrite::Delta {
            append,
            remove,
            dups_remove,
            ..
        }) = &w.log
        {
            debug_assert!(
                append.windows(2).all(|p| p[0].version < p[1].version),
                "log entries appended in version order"
            );
            let fast = w.info.as_ref().unwrap_or(pg.info()).fast();
            for e in append {
                t.log_append(coll, e.version.log_key(), entry_item(e, &fast));
            }
            if !remove.is_empty() || !dups_remove.is_empty() {
                // Keep exactly the dups (trimmed entries below the oldest
                // dup kept are gone; newer ones, up to the tail, are dups).
                let log = pg.log();
                let through = match log.dups().next() {
                    Some(d) => d.version.log_key() - 1,
                    None => log.tail().log_key(),
                };
                t.log_trim(coll, through);
            }
        }
    }
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
                other => tracing::warn!(%coll, key = other, "unknown key in PG metadata; ignored"),
            }
        }
        match page.last() {
            Some((k, _)) if n == LOAD_PAGE_KEYS => start = Bound::Excluded(k.to_vec()),
            _ => break,
        }
    }
    let mut info = info.ok_or_else(|| corrupt("info", "missing".into()))?;
    let mut items = Vec::new();
    for (key, v) in store.log_read_async(coll).await? {
        let version = Eversion::from_log_key(key)
            .ok_or_else(|| corrupt("log", format!("bad key {key:#x}")))?;
        let item =
            decode_item(&v).map_err(|e| corrupt(&format!("log item {version}"), e.to_string()))?;
        items.push((version, item));
    }
    // Writes after the last whole info left their fast fields with their
    // entries.
    if let Some((v, LogItem::Entry(_, fast))) = items
        .iter()
        .rev()
        .find(|(_, i)| matches!(i, LogItem::Entry(..)))
    {
        if *v > info.last_update {
            info.apply_fast(*v, fast);
        }
    }
    let mut entries = Vec::new();
    let mut dups = Vec::new();
    for (v, item) in items {
        match item {
            LogItem::Entry(e, _) if v > info.log_tail => entries.push(e),
            LogItem::Entry(e, _) => {
                if !e.reqid.is_none() {
                    dups.push(PgLogDup::from(&e));
                }
            }
            LogItem::Dup(d) if v <= info.log_tail => dups.push(d),
            LogItem::Dup(_) => {
                return Err(corrupt(
                    "log",
                    format!("dup {v} above the tail {}", info.log_tail),
                ))
            }
        }
    }
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
    use kalmar_objectstore::{MountOptions, Op};
    use kalmar_peering::{PeeringSettings, ReqId};

    fn entry(v: u64) -> PgLogEntry {
        crate::wire::tests::test_entry(2, v, 7)
    }

    async fn commit(store: &ObjectStore, t: Transaction) {
        store.queue_transaction(t).await.expect("commits");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn persist_and_load_roundtrip() {
        let (_dir, dev) = crate::test_store::formatted_device();
        let store = ObjectStore::mount(&dev, &MountOptions::default()).expect("mount");
        let pgid = PgId::new(1, 2);
        let coll = crate::names::pg_collection(pgid);
        let meta = PgMeta {
            info: PgInfo::new(pgid, 2),
            log: PgLog::new(Eversion::ZERO),
            missing: PgMissing::new(),
            past_intervals: PastIntervals::new(),
        };
        let mut t = Transaction::new();
        add_create(&mut t, &coll, &meta, 2);
        commit(&store, t).await;
        let settings = PeeringSettings {
            osd_pg_log_dups_tracked: 2,
            ..Default::default()
        };
        let mut pg = Pg::load(0, meta, settings.clone());
        let mut writer = PgMetaWriter::new(coll.clone(), pg.info().clone());
        let mut write = |pg: &mut Pg, v: u64, trim: Option<Eversion>| {
            let mut stats = pg.info().stats;
            stats.num_objects = v;
            pg.set_object_stats(stats);
            let w = pg.append_log(vec![entry(v)], trim).expect("appends");
            let mut t = Transaction::new();
            writer.add_write(&mut t, &w, pg, 3);
            t
        };
        for v in 1..=5 {
            let t = write(&mut pg, v, None);
            // Steady state: the log item alone, no info or other key.
            assert!(
                matches!(t.ops(), [Op::LogAppend { .. }]),
                "one metadata op per write: {:?}",
                t.ops()
            );
            commit(&store, t).await;
        }
        // Trim 1..=4: 3 and 4 stay as dups, 1 and 2 leave the store.
        let t = write(&mut pg, 6, Some(Eversion::new(2, 4)));
        commit(&store, t).await;
        let mut t = Transaction::new();
        add_epoch(&mut t, &coll, 4);
        commit(&store, t).await;
        let check = |back: &PgMeta, pg: &Pg| {
            assert_eq!(&back.info, pg.info());
            assert_eq!(&back.log, pg.log());
            assert_eq!(back.info.stats.num_objects, 6, "fast fields from the log");
            assert!(back.log.find_reqid(&ReqId::new(7, 1, 3)).is_some(), "dup");
            assert!(back.log.find_reqid(&ReqId::new(7, 1, 5)).is_some(), "entry");
            assert!(
                back.log.find_reqid(&ReqId::new(7, 1, 2)).is_none(),
                "beyond the dup bound"
            );
        };
        let (back, epoch) = load(&store, &coll).await.expect("loads");
        assert_eq!(epoch, 4);
        check(&back, &pg);
        // The same after the log went to the database and the store came
        // back.
        store.umount().expect("umount");
        drop(store);
        let store = ObjectStore::mount(&dev, &MountOptions::default()).expect("mount");
        let (back, _) = load(&store, &coll).await.expect("loads");
        check(&back, &pg);
        assert_eq!(store.log_read(&coll).expect("log").len(), 4, "3..=6 kept");
        // A rewrite replaces everything, with versions below the old head.
        let mut meta = pg.meta();
        meta.log = PgLog::from_entries(Eversion::ZERO, [entry(1)]).expect("log");
        meta.info.log_tail = Eversion::ZERO;
        meta.info.last_update = meta.log.head();
        meta.info.last_complete = meta.log.head();
        let pg = Pg::load(0, meta.clone(), settings);
        let w = PgWrite {
            log: Some(LogWrite::Rewrite(meta.log.clone())),
            ..Default::default()
        };
        let mut t = Transaction::new();
        writer.add_write(&mut t, &w, &pg, 9);
        commit(&store, t).await;
        let (back, epoch) = load(&store, &coll).await.expect("loads");
        assert_eq!((&back.log, &back.info, epoch), (pg.log(), pg.info(), 9));
        store.umount().expect("umount");
    }
}

#[cfg(test)]
mod rewrite_bound_tests {
    use super::*;
    use kalmar_maps::PgId;
    use kalmar_objectstore::MountOptions;
    use kalmar_peering::{LogOp, ReqId};

    const ENTRIES: usize = 60;
    const DUPS: usize = 40;
    const NAME_LEN: usize = 300;

    /// A log of `ENTRIES` entries above `DUPS` dups, every name
    /// `NAME_LEN` bytes, and a missing set naming every logged object.
    fn widest_meta(pgid: PgId) -> PgMeta {
        let entry = |v: u64| PgLogEntry {
            op: LogOp::Modify,
            oid: format!("{v:0>NAME_LEN$}"),
            version: Eversion::new(2, v),
            prior_version: Eversion::ZERO,
            reqid: ReqId::new(7, 1, v),
            mtime_us: v,
            return_code: 0,
            user_version: v,
        };
        let dups: Vec<PgLogDup> = (1..=DUPS as u64)
            .map(|v| PgLogDup::from(&entry(v)))
            .collect();
        let tail = Eversion::new(2, DUPS as u64);
        let entries: Vec<PgLogEntry> = (DUPS as u64 + 1..=(DUPS + ENTRIES) as u64)
            .map(entry)
            .collect();
        let mut missing = PgMissing::new();
        for e in &entries {
            missing.add(&e.oid, e.version, Eversion::ZERO);
        }
        let log = PgLog::from_parts(tail, entries, dups).expect("log");
        let mut info = PgInfo::new(pgid, 2);
        info.log_tail = tail;
        info.last_update = log.head();
        PgMeta {
            info,
            log,
            missing,
            past_intervals: PastIntervals::new(),
        }
    }

    /// Commits the widest rewrite on a store whose records are limited to
    /// `limit` bytes.
    async fn rewrite_with_record_limit(limit: u64) -> Result<(), StoreError> {
        let (_dir, dev) = crate::test_store::formatted_device();
        let mut mount = MountOptions::default();
        mount.settings.max_record_bytes = limit;
        let store = ObjectStore::mount(&dev, &mount).expect("mount");
        let pgid = PgId::new(1, 2);
        let coll = crate::names::pg_collection(pgid);
        let meta = widest_meta(pgid);
        let mut t = Transaction::new();
        add_create(
            &mut t,
            &coll,
            &PgMeta {
                log: PgLog::new(Eversion::ZERO),
                missing: PgMissing::new(),
                ..meta.clone()
            },
            2,
        );
        store.queue_transaction(t).await.expect("creates");
        let pg = Pg::load(0, meta.clone(), Default::default());
        let mut writer = PgMetaWriter::new(coll.clone(), pg.info().clone());
        let w = PgWrite {
            log: Some(LogWrite::Rewrite(meta.log.clone())),
            ..Default::default()
        };
        let mut t = Transaction::new();
        writer.add_write(&mut t, &w, &pg, 3);
        let res = store.queue_transaction(t).await;
        if res.is_ok() {
            let (back, _) = load(&store, &coll).await.expect("loads");
            assert_eq!((&back.log, &back.missing), (&meta.log, &meta.missing));
        }
        store.umount().expect("umount");
        res
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_widest_rewrite_fits_its_computed_bound() {
        let bound = rewrite_record_bytes(ENTRIES, DUPS, NAME_LEN);
        rewrite_with_record_limit(bound)
            .await
            .expect("a rewrite within the bound commits");
        // The bound is not vacuous: the same rewrite does not fit in the
        // bound's log and missing share halved.
        let tight = (bound - REWRITE_RESERVE_BYTES) / 2;
        match rewrite_with_record_limit(tight).await {
            Err(StoreError::TooLarge { .. }) => {}
            other => panic!("expected TooLarge under {tight} bytes, got {other:?}"),
        }
    }

    #[test]
    fn the_bound_grows_with_each_option() {
        let base = rewrite_record_bytes(100, 100, 100);
        assert!(rewrite_record_bytes(200, 100, 100) > base);
        assert!(rewrite_record_bytes(100, 200, 100) > base);
        assert!(rewrite_record_bytes(100, 100, 200) > base);
        // Each entry costs its name twice: in the log and in the missing set.
        assert!(rewrite_record_bytes(100, 100, 200) - base >= 2 * 100 * 100);
    }
}
