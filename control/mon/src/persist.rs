//! How map epochs are laid out in the mon store: creating a new cluster,
//! loading it back, one batch per commit, and trimming old epochs.

use std::collections::BTreeMap;
use std::path::Path;

use kalmar_maps::crush::build::DEFAULT_RULE;
use kalmar_maps::crush::map::Rule;
use kalmar_maps::time::now_us;
use kalmar_maps::{Epoch, Incremental, MgrMap, OsdMap};
use uuid::Uuid;

use crate::monmap::{MonIdentity, MonNode, KEY_INITIAL, KEY_SELF};
use crate::options::MonOptions;
use crate::store::{epoch_key, Batch, MonStore, StoreError};

pub const KEY_FSID: &str = "meta/fsid";
pub const OSD_FULL: &str = "osdmap/full";
pub const OSD_INC: &str = "osdmap/inc";
pub const OSD_FIRST: &str = "osdmap/first";
pub const OSD_LAST: &str = "osdmap/last";
pub const MGR_MAP: &str = "mgrmap/map";
pub const MGR_FIRST: &str = "mgrmap/first";
pub const MGR_LAST: &str = "mgrmap/last";
/// The auth database, whole (its version inside).
pub const AUTH_DB: &str = "auth/db";

/// Epochs deleted at most per commit, so one batch stays small.
pub const MAX_TRIM_PER_COMMIT: u32 = 500;

/// Epoch 1 of a new cluster's OSDMap and MgrMap, stamped `now_us`.
pub fn initial_maps(fsid: Uuid, opts: &MonOptions, now_us: u64) -> (OsdMap, MgrMap) {
    let mut map = OsdMap::new(fsid, now_us);
    map.epoch = 1;
    if let Some(root) = map.crush.bucket_by_name("default").map(|b| b.id) {
        map.crush.rules.insert(
            0,
            Rule::replicated(0, DEFAULT_RULE, root, opts.osd_crush_chooseleaf_type),
        );
    }
    let mgr = MgrMap {
        epoch: 1,
        ..MgrMap::default()
    };
    (map, mgr)
}

/// Creates the store of a new cluster. A single mon writes OSDMap and
/// MgrMap epoch 1 at once; a mon of several gets them from the first
/// leader through the consensus log (so every mon holds the same bytes).
pub fn mkfs(
    dir: &Path,
    fsid: Option<Uuid>,
    opts: &MonOptions,
    me: &MonIdentity,
    members: &BTreeMap<u64, MonNode>,
    auth: &kalmar_auth::AuthDb,
) -> Result<Uuid, StoreError> {
    let store = MonStore::create(dir)?;
    let fsid = fsid.unwrap_or_else(Uuid::new_v4);
    let mut b = Batch::default();
    b.put(KEY_FSID, fsid.as_bytes().to_vec());
    let json =
        |v: serde_json::Result<Vec<u8>>| v.map_err(|e| store.corrupt(format!("monmap: {e}")));
    b.put(KEY_SELF, json(serde_json::to_vec(me))?);
    b.put(KEY_INITIAL, json(serde_json::to_vec(members))?);
    // One mon: epoch 1 now. Several, or a mon joining a running cluster
    // (no members): from the log.
    if members.len() == 1 {
        let (map, mgr) = initial_maps(fsid, opts, now_us());
        put_osdmap_bytes(&mut b, 1, &map.encode_sealed(), None, 0, 1);
        put_mgrmap_bytes(&mut b, 1, &mgr.encode_sealed(), 0, 1);
        b.put(AUTH_DB, kalmar_common::encoding::Encode::to_bytes(auth));
    } else if !members.is_empty() {
        b.put(AUTH_SEED, kalmar_common::encoding::Encode::to_bytes(auth));
    }
    store.commit(&b)?;
    Ok(fsid)
}

/// This mon's identity and the initial members (a store made before
/// mkfs wrote them is a single mon `a`).
pub fn load_monmap(store: &MonStore) -> Result<(MonIdentity, BTreeMap<u64, MonNode>), StoreError> {
    let me = match store.get(KEY_SELF)? {
        Some(raw) => {
            serde_json::from_slice(&raw).map_err(|e| store.corrupt(format!("{KEY_SELF}: {e}")))?
        }
        None => MonIdentity {
            id: 0,
            name: "a".into(),
        },
    };
    let members = match store.get(KEY_INITIAL)? {
        Some(raw) => serde_json::from_slice(&raw)
            .map_err(|e| store.corrupt(format!("{KEY_INITIAL}: {e}")))?,
        None => BTreeMap::from([(
            me.id,
            MonNode {
                name: me.name.clone(),
                addr: String::new(),
            },
        )]),
    };
    Ok((me, members))
}

/// The state a mon starts from.
pub struct Loaded {
    pub fsid: Uuid,
    pub osdmap: OsdMap,
    pub osd_first: Epoch,
    pub mgrmap: MgrMap,
    pub mgr_first: Epoch,
}

fn required_u32(store: &MonStore, key: &str) -> Result<u32, StoreError> {
    store
        .get_u32(key)?
        .ok_or_else(|| store.corrupt(format!("{key} is missing")))
}

pub fn load(store: &MonStore) -> Result<Loaded, StoreError> {
    let fsid_bytes = store
        .get(KEY_FSID)?
        .ok_or_else(|| store.corrupt("no fsid".into()))?;
    let fsid = Uuid::from_slice(&fsid_bytes).map_err(|e| store.corrupt(format!("fsid: {e}")))?;
    let Some(osd_last) = store.get_u32(OSD_LAST)? else {
        // A mon of several before the first leader wrote epoch 1: an
        // empty epoch 0 that nobody is sent.
        return Ok(Loaded {
            fsid,
            osdmap: OsdMap::new(fsid, 0),
            osd_first: 0,
            mgrmap: MgrMap::default(),
            mgr_first: 0,
        });
    };
    let osd_first = required_u32(store, OSD_FIRST)?;
    let osdmap = load_full(store, osd_last)?;
    if osdmap.fsid != fsid || osdmap.epoch != osd_last {
        return Err(store.corrupt(format!(
            "osdmap epoch {osd_last} holds epoch {} of cluster {}",
            osdmap.epoch, osdmap.fsid
        )));
    }
    let mgr_first = required_u32(store, MGR_FIRST)?;
    let mgr_last = required_u32(store, MGR_LAST)?;
    let raw = store
        .get(&epoch_key(MGR_MAP, mgr_last))?
        .ok_or_else(|| store.corrupt(format!("mgrmap epoch {mgr_last} is missing")))?;
    let mgrmap = MgrMap::decode_sealed(&raw)
        .map_err(|e| store.corrupt(format!("mgrmap {mgr_last}: {e}")))?;
    Ok(Loaded {
        fsid,
        osdmap,
        osd_first,
        mgrmap,
        mgr_first,
    })
}

/// Caps of `client.admin` (Ceph's: everything everywhere).
pub const ADMIN_CAPS: &[(&str, &str)] = &[
    ("mds", "allow *"),
    ("mgr", "allow *"),
    ("mon", "allow *"),
    ("osd", "allow *"),
];

/// The auth database of a new cluster, version 1: every key of `import`
/// (a keyring given to mkfs), plus `mon.` and `client.admin` made fresh
/// when it lacks them, and the first service secrets.
pub fn initial_auth(
    import: Option<&kalmar_auth::Keyring>,
    now_unix_secs: u64,
    ticket_ttl_secs: u64,
) -> Result<kalmar_auth::AuthDb, String> {
    let mut db = kalmar_auth::AuthDb::default();
    if let Some(ring) = import {
        for (name, e) in &ring.entries {
            db.add(name, &e.key, e.caps.clone()).map_err(|e| e.msg)?;
        }
    }
    let caps = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<BTreeMap<String, String>>()
    };
    db.get_or_create("mon.", caps(&[("mon", "allow *")]))
        .map_err(|e| e.msg)?;
    db.get_or_create("client.admin", caps(ADMIN_CAPS))
        .map_err(|e| e.msg)?;
    let expires = now_unix_secs.saturating_add(ticket_ttl_secs.saturating_mul(3));
    for s in [kalmar_auth::Service::Osd, kalmar_auth::Service::Mgr] {
        db.rotate(s, expires, crate::authmon::ROTATING_SECRETS_KEPT)
            .map_err(|e| e.to_string())?;
    }
    db.version = 1;
    Ok(db)
}

/// The auth database a mon of several was made with, for the first
/// leader to commit as version 1 (each mon's mkfs is given the same
/// keyring, so whichever leads writes the same keys).
pub const AUTH_SEED: &str = "auth/seed";

pub fn auth_seed(store: &MonStore) -> Result<Option<kalmar_auth::AuthDb>, StoreError> {
    use kalmar_common::encoding::Decode;
    match store.get(AUTH_SEED)? {
        None => Ok(None),
        Some(raw) => kalmar_auth::AuthDb::from_bytes(&raw)
            .map(Some)
            .map_err(|e| store.corrupt(format!("{AUTH_SEED}: {e}"))),
    }
}

/// The committed auth database (empty in a store made before auth).
pub fn load_auth(store: &MonStore) -> Result<kalmar_auth::AuthDb, StoreError> {
    use kalmar_common::encoding::Decode;
    match store.get(AUTH_DB)? {
        None => Ok(kalmar_auth::AuthDb::default()),
        Some(raw) => kalmar_auth::AuthDb::from_bytes(&raw)
            .map_err(|e| store.corrupt(format!("{AUTH_DB}: {e}"))),
    }
}

pub fn load_full(store: &MonStore, epoch: Epoch) -> Result<OsdMap, StoreError> {
    let raw = store
        .get(&epoch_key(OSD_FULL, epoch))?
        .ok_or_else(|| store.corrupt(format!("full osdmap {epoch} is missing")))?;
    OsdMap::decode_sealed(&raw).map_err(|e| store.corrupt(format!("full osdmap {epoch}: {e}")))
}

/// The sealed incremental of `epoch`, if held.
pub fn load_inc_bytes(store: &MonStore, epoch: Epoch) -> Result<Option<Vec<u8>>, StoreError> {
    store.get(&epoch_key(OSD_INC, epoch))
}

/// Where trimming may move the first epoch: keep `min_epochs` epochs and
/// everything an OSD may still need (`last_epoch_clean`), at most
/// [`MAX_TRIM_PER_COMMIT`] epochs at a time.
pub fn trim_target(first: Epoch, last: Epoch, min_epochs: u32, min_lec: Option<Epoch>) -> Epoch {
    let keep_from = last.saturating_sub(min_epochs.saturating_sub(1)).max(1);
    let bound = match min_lec {
        Some(lec) if lec > 0 => keep_from.min(lec),
        _ => keep_from,
    };
    bound.clamp(first, first.saturating_add(MAX_TRIM_PER_COMMIT))
}

/// Adds one OSDMap epoch (full + incremental) and any trimming to `b`.
/// Returns the new first epoch.
pub fn put_osdmap(
    b: &mut Batch,
    map: &OsdMap,
    inc: &Incremental,
    first: Epoch,
    new_first: Epoch,
) -> Epoch {
    put_osdmap_bytes(
        b,
        map.epoch,
        &map.encode_sealed(),
        Some(&inc.encode_sealed()),
        first,
        new_first,
    )
}

/// [`put_osdmap`] on sealed bytes (what the consensus log carries).
/// `first` 0 means no epoch is held yet.
pub fn put_osdmap_bytes(
    b: &mut Batch,
    epoch: Epoch,
    full: &[u8],
    inc: Option<&[u8]>,
    first: Epoch,
    new_first: Epoch,
) -> Epoch {
    b.put(epoch_key(OSD_FULL, epoch), full.to_vec());
    if let Some(inc) = inc {
        b.put(epoch_key(OSD_INC, epoch), inc.to_vec());
    }
    b.put(OSD_LAST, epoch.to_le_bytes().to_vec());
    if first == 0 {
        b.put(OSD_FIRST, epoch.to_le_bytes().to_vec());
        return epoch;
    }
    if new_first > first {
        for old in first..new_first {
            b.delete(epoch_key(OSD_FULL, old));
            b.delete(epoch_key(OSD_INC, old));
        }
        b.put(OSD_FIRST, new_first.to_le_bytes().to_vec());
    }
    new_first.max(first)
}

/// Adds one MgrMap epoch and trimming to `b`. Returns the new first epoch.
pub fn put_mgrmap(b: &mut Batch, map: &MgrMap, first: Epoch, min_epochs: u32) -> Epoch {
    let new_first = trim_target(first, map.epoch, min_epochs, None);
    put_mgrmap_bytes(b, map.epoch, &map.encode_sealed(), first, new_first)
}

/// [`put_mgrmap`] on sealed bytes, with the first epoch to keep given.
pub fn put_mgrmap_bytes(
    b: &mut Batch,
    epoch: Epoch,
    sealed: &[u8],
    first: Epoch,
    new_first: Epoch,
) -> Epoch {
    b.put(epoch_key(MGR_MAP, epoch), sealed.to_vec());
    b.put(MGR_LAST, epoch.to_le_bytes().to_vec());
    if first == 0 {
        b.put(MGR_FIRST, epoch.to_le_bytes().to_vec());
        return epoch;
    }
    if new_first > first {
        for old in first..new_first {
            b.delete(epoch_key(MGR_MAP, old));
        }
        b.put(MGR_FIRST, new_first.to_le_bytes().to_vec());
    }
    new_first.max(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_keeps_min_epochs_and_lec() {
        assert_eq!(trim_target(1, 10, 500, None), 1);
        assert_eq!(trim_target(1, 600, 500, None), 101);
        assert_eq!(trim_target(1, 600, 500, Some(50)), 50);
        assert_eq!(trim_target(1, 600, 500, Some(0)), 101);
        assert_eq!(
            trim_target(101, 600, 500, Some(50)),
            101,
            "never moves back"
        );
        assert_eq!(trim_target(1, 5000, 500, None), 1 + MAX_TRIM_PER_COMMIT);
        assert_eq!(trim_target(1, 3, 1, None), 3);
    }

    #[test]
    fn mkfs_load_commit_trim() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = MonOptions {
            osd_crush_chooseleaf_type: 0,
            ..MonOptions::default()
        };
        let me = MonIdentity {
            id: 0,
            name: "a".into(),
        };
        let members = BTreeMap::from([(
            0,
            MonNode {
                name: "a".into(),
                addr: String::new(),
            },
        )]);
        let auth = initial_auth(None, 1000, 60).expect("keys");
        let fsid = mkfs(dir.path(), None, &opts, &me, &members, &auth).expect("mkfs");
        assert!(
            mkfs(dir.path(), None, &opts, &me, &members, &auth).is_err(),
            "mkfs twice"
        );
        let store = MonStore::open(dir.path()).expect("open");
        let loaded_auth = load_auth(&store).expect("auth");
        assert_eq!(loaded_auth, auth);
        assert!(loaded_auth.get("client.admin").is_some() && loaded_auth.get("mon.").is_some());
        assert_eq!(
            loaded_auth.service_secrets(kalmar_auth::Service::Osd).len(),
            1
        );
        let l = load(&store).expect("load");
        assert_eq!(
            (l.fsid, l.osdmap.epoch, l.osd_first, l.mgrmap.epoch),
            (fsid, 1, 1, 1)
        );
        let mut first = l.osd_first;
        let mut map = l.osdmap;
        for _ in 0..5 {
            let mut next = map.clone();
            next.epoch += 1;
            next.flags ^= kalmar_maps::OsdMapFlags::NOOUT;
            let inc = Incremental::diff(&map, &next);
            let mut b = Batch::default();
            let target = trim_target(first, next.epoch, 3, None);
            first = put_osdmap(&mut b, &next, &inc, first, target);
            store.commit(&b).expect("commit");
            map = next;
        }
        drop(store);
        let store = MonStore::open(dir.path()).expect("reopen");
        let l = load(&store).expect("load");
        assert_eq!((l.osdmap.epoch, l.osd_first), (6, 4));
        assert_eq!(l.osdmap, map);
        assert!(load_inc_bytes(&store, 3).expect("get").is_none(), "trimmed");
        let inc5 = load_inc_bytes(&store, 5).expect("get").expect("kept");
        assert_eq!(Incremental::decode_sealed(&inc5).expect("decodes").epoch, 5);
    }
}
