//! OSD maps under `meta`: turning a mon's osdmap message into the new
//! epochs (pure), storing each as `osdmap.<e>` + `inc_osdmap.<e>` in the
//! same transaction as the superblock's newest epoch, reading old epochs
//! back, and trimming beyond `osd_map_max_epochs_stored`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kalmar_maps::{Epoch, Incremental, OsdMap};
use kalmar_objectstore::meta::{self as smeta, MapEpoch as StoredEpoch, OsdSuperblock};
use kalmar_objectstore::{ObjectStore, StoreError};
use kalmar_proto::mon::OsdMapMsg;
use parking_lot::Mutex;

/// One new epoch, with the bytes to store.
#[derive(Debug, Clone)]
pub struct NewEpoch {
    pub map: Arc<OsdMap>,
    /// The sealed full map.
    pub full: Bytes,
    /// The sealed incremental, when the epoch came as one.
    pub inc: Option<Bytes>,
}

/// The epochs a message adds after `current` (`None`: the OSD has no map
/// yet), in order. Incrementals are applied one by one; where the message
/// carries a full map instead (the OSD is too far behind), the OSD jumps
/// to it. Epochs at or below `current` are duplicates and skipped.
pub fn advance(current: Option<&OsdMap>, msg: &OsdMapMsg) -> Result<Vec<NewEpoch>, String> {
    let mut out = Vec::new();
    let mut cur: Option<Arc<OsdMap>> = current.map(|m| Arc::new(m.clone()));
    let have = current.map_or(0, |m| m.epoch);
    let last = msg
        .maps
        .keys()
        .chain(msg.incrementals.keys())
        .copied()
        .max()
        .unwrap_or(0);
    let mut e = have + 1;
    while e <= last {
        if let Some(full) = msg.maps.get(&e) {
            let m = OsdMap::decode_sealed(&full.0).map_err(|err| format!("full map {e}: {err}"))?;
            if m.epoch != e {
                return Err(format!("full map labelled {e} holds epoch {}", m.epoch));
            }
            let m = Arc::new(m);
            out.push(NewEpoch {
                map: m.clone(),
                full: Bytes::from(full.0.clone()),
                inc: msg.incrementals.get(&e).map(|b| Bytes::from(b.0.clone())),
            });
            cur = Some(m);
            e += 1;
            continue;
        }
        match (msg.incrementals.get(&e), &cur) {
            (Some(inc_bytes), Some(prev)) if prev.epoch + 1 == e => {
                let inc = Incremental::decode_sealed(&inc_bytes.0)
                    .map_err(|err| format!("incremental {e}: {err}"))?;
                let mut m = (**prev).clone();
                m.apply_incremental(&inc)
                    .map_err(|err| format!("incremental {e}: {err}"))?;
                let m = Arc::new(m);
                out.push(NewEpoch {
                    full: Bytes::from(m.encode_sealed()),
                    map: m.clone(),
                    inc: Some(Bytes::from(inc_bytes.0.clone())),
                });
                cur = Some(m);
                e += 1;
            }
            _ => {
                // A gap: skip to the next full map the message carries.
                match msg.maps.range(e + 1..).next() {
                    Some((&next, _)) => e = next,
                    None => break,
                }
            }
        }
    }
    Ok(out)
}

/// The maps this OSD stored, with a small cache of decoded epochs.
pub struct MapStore {
    store: Arc<ObjectStore>,
    sb: Mutex<OsdSuperblock>,
    cache: Mutex<BTreeMap<Epoch, Arc<OsdMap>>>,
    cache_size: usize,
}

impl MapStore {
    pub fn new(store: Arc<ObjectStore>, sb: OsdSuperblock, cache_size: usize) -> Self {
        MapStore {
            store,
            sb: Mutex::new(sb),
            cache: Mutex::new(BTreeMap::new()),
            cache_size: cache_size.max(2),
        }
    }

    pub fn superblock(&self) -> OsdSuperblock {
        self.sb.lock().clone()
    }

    fn remember(&self, m: Arc<OsdMap>) {
        let mut c = self.cache.lock();
        c.insert(m.epoch, m);
        while c.len() > self.cache_size {
            c.pop_first();
        }
    }

    /// A stored epoch, or `None` if it is not (or no longer) stored.
    pub async fn get(&self, epoch: Epoch) -> Result<Option<Arc<OsdMap>>, StoreError> {
        if let Some(m) = self.cache.lock().get(&epoch) {
            return Ok(Some(m.clone()));
        }
        let store = self.store.clone();
        let bytes = self
            .store
            .run_read(move || smeta::read_osdmap(&store, epoch))
            .await?;
        let Some(b) = bytes else { return Ok(None) };
        let m = OsdMap::decode_sealed(&b).map_err(|e| StoreError::CorruptMetadata {
            what: format!("osdmap.{epoch}"),
            detail: e.to_string(),
        })?;
        let m = Arc::new(m);
        self.remember(m.clone());
        Ok(Some(m))
    }

    /// Stores new epochs and the superblock's newest epoch in one
    /// transaction, and waits until it is durable.
    pub async fn persist(&self, epochs: &[NewEpoch]) -> Result<(), StoreError> {
        let Some(last) = epochs.last() else {
            return Ok(());
        };
        let mut sb = self.superblock();
        if sb.oldest_map == 0 {
            sb.oldest_map = epochs[0].map.epoch;
        }
        sb.newest_map = last.map.epoch;
        let stored: Vec<StoredEpoch> = epochs
            .iter()
            .map(|e| StoredEpoch {
                epoch: e.map.epoch,
                full: Some(e.full.clone()),
                incremental: e.inc.clone(),
            })
            .collect();
        smeta::store_maps(&self.store, &stored, &sb).await?;
        *self.sb.lock() = sb;
        for e in epochs {
            self.remember(e.map.clone());
        }
        Ok(())
    }

    /// Removes epochs older than the newest `keep` ones, at most
    /// `per_txn` epochs per transaction.
    pub async fn trim(&self, keep: u32, per_txn: u32) -> Result<(), StoreError> {
        loop {
            let sb = self.superblock();
            if sb.newest_map == 0 || sb.newest_map - sb.oldest_map < keep {
                return Ok(());
            }
            let keep_from = sb.newest_map - keep + 1;
            let last = (sb.oldest_map + per_txn.max(1) - 1).min(keep_from - 1);
            let mut next = sb.clone();
            next.oldest_map = last + 1;
            let store = self.store.clone();
            let first = sb.oldest_map;
            let sb2 = next.clone();
            let commit = self
                .store
                .run_read(move || smeta::trim_maps(&store, first, last, &sb2))
                .await?;
            commit.await?;
            tracing::debug!(first, last, "trimmed stored maps");
            *self.sb.lock() = next;
            self.cache.lock().retain(|&e, _| e > last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_common::encoding::Blob;
    use kalmar_maps::OsdMapFlags;

    fn chain(n: u32) -> Vec<OsdMap> {
        let mut maps = vec![{
            let mut m = OsdMap::new(uuid::Uuid::nil(), 1);
            m.epoch = 1;
            m
        }];
        for e in 2..=n {
            let mut m = maps[maps.len() - 1].clone();
            m.epoch = e;
            m.flags ^= OsdMapFlags::NOOUT;
            maps.push(m);
        }
        maps
    }

    fn msg(maps: &[OsdMap], incs: &[u32], fulls: &[u32]) -> OsdMapMsg {
        let by = |e: u32| &maps[(e - 1) as usize];
        OsdMapMsg {
            incrementals: incs
                .iter()
                .map(|&e| (e, Blob(Incremental::diff(by(e - 1), by(e)).encode_sealed())))
                .collect(),
            maps: fulls
                .iter()
                .map(|&e| (e, Blob(by(e).encode_sealed())))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn incrementals_full_maps_gaps_and_duplicates() {
        let maps = chain(10);
        // Incrementals 3..5 on top of epoch 2.
        let got = advance(Some(&maps[1]), &msg(&maps, &[3, 4, 5], &[])).expect("applies");
        assert_eq!(
            got.iter().map(|e| e.map.epoch).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(*got[2].map, maps[4]);
        assert!(got.iter().all(|e| e.inc.is_some()));
        // Duplicates of what we have are skipped.
        let got = advance(Some(&maps[4]), &msg(&maps, &[3, 4, 5, 6], &[])).expect("applies");
        assert_eq!(got.iter().map(|e| e.map.epoch).collect::<Vec<_>>(), vec![6]);
        // Too far behind: a full map, then incrementals after it.
        let got = advance(Some(&maps[0]), &msg(&maps, &[9, 10], &[8])).expect("applies");
        assert_eq!(
            got.iter().map(|e| e.map.epoch).collect::<Vec<_>>(),
            vec![8, 9, 10]
        );
        assert_eq!(*got[2].map, maps[9]);
        // No map yet: only a full map helps.
        assert!(advance(None, &msg(&maps, &[2], &[]))
            .expect("ok")
            .is_empty());
        let got = advance(None, &msg(&maps, &[], &[7])).expect("applies");
        assert_eq!(got[0].map.epoch, 7);
        // A corrupt incremental is an error, not a wrong map.
        let mut bad = msg(&maps, &[3], &[]);
        if let Some(b) = bad.incrementals.get_mut(&3) {
            b.0[5] ^= 1;
        }
        assert!(advance(Some(&maps[1]), &bad).is_err());
    }
}
