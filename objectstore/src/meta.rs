//! The `meta` collection: OSD maps and the OSD superblock.
//!
//! As in Ceph, every map epoch an OSD keeps is an object `osdmap.<e>`
//! (full map) and/or `inc_osdmap.<e>` (incremental), written in the same
//! transaction as the OSD superblock object, which records the oldest and
//! newest stored epoch. Trimming removes a range of epochs and updates the
//! superblock in one transaction, so the superblock never names a map that
//! is gone.

use std::collections::BTreeSet;

use bytes::Bytes;
use kalmar_common::encoding::{Decode, Encode};
use kalmar_common::impl_versioned;
use uuid::Uuid;

use crate::completion::Commit;
use crate::error::StoreError;
use crate::store::ObjectStore;
use crate::txn::Transaction;
use crate::types::{CollectionId, ObjectId};

/// Collection id of the meta collection.
pub const META_COLLECTION: &str = "meta";
/// Object name of the OSD superblock.
pub const SUPERBLOCK_OBJECT: &str = "osd_superblock";
const FULL_PREFIX: &str = "osdmap.";
const INC_PREFIX: &str = "inc_osdmap.";

/// The OSD's own record in the meta collection.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct OsdSuperblock {
    pub cluster_fsid: Uuid,
    pub osd_fsid: Uuid,
    /// The OSD id (`whoami`).
    pub whoami: i32,
    /// Oldest map epoch stored (0: none).
    pub oldest_map: u32,
    /// Newest map epoch stored (0: none).
    pub newest_map: u32,
}
impl_versioned!(OsdSuperblock, "osd superblock", version = 1, compat = 1, {
    cluster_fsid, osd_fsid, whoami, oldest_map, newest_map
});

/// The maps of one epoch to store.
#[derive(Debug, Clone, Default)]
pub struct MapEpoch {
    pub epoch: u32,
    pub full: Option<Bytes>,
    pub incremental: Option<Bytes>,
}

/// Epochs found in the meta collection.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetaListing {
    pub full_maps: Vec<u32>,
    pub incremental_maps: Vec<u32>,
    pub superblock: Option<OsdSuperblock>,
}

fn oid(s: String) -> ObjectId {
    // Names built here are short ASCII: always valid.
    ObjectId::new(s.into_bytes()).expect("meta object names are 1..4096 bytes")
}

pub fn meta_collection() -> CollectionId {
    CollectionId::new(META_COLLECTION).expect("\"meta\" is a valid collection id")
}

pub fn osdmap_object(epoch: u32) -> ObjectId {
    oid(format!("{FULL_PREFIX}{epoch}"))
}

pub fn inc_osdmap_object(epoch: u32) -> ObjectId {
    oid(format!("{INC_PREFIX}{epoch}"))
}

pub fn superblock_object() -> ObjectId {
    oid(SUPERBLOCK_OBJECT.to_string())
}

/// Adds to `txn` the creation of the meta collection (for the first
/// transaction of a new OSD).
pub fn create_meta_collection(txn: &mut Transaction) {
    txn.create_collection(&meta_collection());
}

fn replace_object(txn: &mut Transaction, o: &ObjectId, data: Bytes) {
    let c = meta_collection();
    txn.truncate(&c, o, 0);
    txn.write(&c, o, 0, data);
}

/// Adds to `txn` the maps of `epochs` and the superblock `sb` (whose
/// oldest/newest the caller sets to cover them).
pub fn add_maps(txn: &mut Transaction, epochs: &[MapEpoch], sb: &OsdSuperblock) {
    for e in epochs {
        if let Some(f) = &e.full {
            replace_object(txn, &osdmap_object(e.epoch), f.clone());
        }
        if let Some(i) = &e.incremental {
            replace_object(txn, &inc_osdmap_object(e.epoch), i.clone());
        }
    }
    replace_object(txn, &superblock_object(), Bytes::from(sb.to_bytes()));
}

/// Stores maps and the superblock in one transaction.
pub fn store_maps(store: &ObjectStore, epochs: &[MapEpoch], sb: &OsdSuperblock) -> Commit {
    let mut t = Transaction::new();
    add_maps(&mut t, epochs, sb);
    store.queue_transaction(t)
}

/// Removes the stored maps of epochs `first..=last` (those that exist) and
/// writes `sb`, in one transaction. The caller keeps each call to a
/// bounded range (Ceph trims `osd_target_transaction_size` per pass).
pub fn trim_maps(
    store: &ObjectStore,
    first: u32,
    last: u32,
    sb: &OsdSuperblock,
) -> Result<Commit, StoreError> {
    let c = meta_collection();
    let mut t = Transaction::new();
    for e in first..=last {
        for o in [osdmap_object(e), inc_osdmap_object(e)] {
            if store.exists(&c, &o)? {
                t.remove(&c, &o);
            }
        }
    }
    replace_object(&mut t, &superblock_object(), Bytes::from(sb.to_bytes()));
    Ok(store.queue_transaction(t))
}

fn read_whole(store: &ObjectStore, o: &ObjectId) -> Result<Option<Bytes>, StoreError> {
    let c = meta_collection();
    match store.stat(&c, o) {
        Ok(st) => store.read(&c, o, 0, st.size_bytes).map(Some),
        Err(StoreError::ObjectNotFound { .. }) | Err(StoreError::CollectionNotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn read_superblock(store: &ObjectStore) -> Result<Option<OsdSuperblock>, StoreError> {
    match read_whole(store, &superblock_object())? {
        None => Ok(None),
        Some(b) => OsdSuperblock::from_bytes(&b)
            .map(Some)
            .map_err(|e| StoreError::corrupt("osd superblock", e)),
    }
}

pub fn read_osdmap(store: &ObjectStore, epoch: u32) -> Result<Option<Bytes>, StoreError> {
    read_whole(store, &osdmap_object(epoch))
}

pub fn read_inc_osdmap(store: &ObjectStore, epoch: u32) -> Result<Option<Bytes>, StoreError> {
    read_whole(store, &inc_osdmap_object(epoch))
}

/// Every stored epoch (numerically sorted) and the superblock.
pub fn list(store: &ObjectStore) -> Result<MetaListing, StoreError> {
    let c = meta_collection();
    if !store.collection_exists(&c)? {
        return Ok(MetaListing::default());
    }
    let (mut full, mut inc) = (BTreeSet::new(), BTreeSet::new());
    let mut start: Option<ObjectId> = None;
    loop {
        let (names, next) = store.collection_list(&c, start.as_ref(), 1024)?;
        for n in names {
            let s = n.to_display();
            if let Some(e) = s
                .strip_prefix(FULL_PREFIX)
                .and_then(|e| e.parse::<u32>().ok())
            {
                full.insert(e);
            } else if let Some(e) = s
                .strip_prefix(INC_PREFIX)
                .and_then(|e| e.parse::<u32>().ok())
            {
                inc.insert(e);
            }
        }
        match next {
            Some(n) => start = Some(n),
            None => break,
        }
    }
    Ok(MetaListing {
        full_maps: full.into_iter().collect(),
        incremental_maps: inc.into_iter().collect(),
        superblock: read_superblock(store)?,
    })
}
