//! How PGs and objects are laid out in the ObjectStore.
//!
//! - One collection per PG: `<pool>.<seed hex>_head` (Ceph's naming).
//! - Client objects keep the name the client gave (the pool is implied by
//!   the collection). Names are UTF-8, 1 to `osd_max_object_name_len`
//!   bytes, and may not start with a NUL byte: that prefix is reserved for
//!   the OSD's own objects, which sort first in the collection.
//! - `"\0pgmeta"` in each PG collection holds the PG's metadata in its
//!   omap: the log (one key per entry, one per dup), info, past intervals,
//!   missing set, and the map epoch the PG last processed.
//! - `"\0scrub"` holds the primary's last scrub findings in its omap
//!   (`pg::scrub_store`).
//! - Each client object carries its [`ObjectInfo`] in the xattr `_`; user
//!   xattrs are stored as `_<name>` so the two never collide.

use kalmar_common::impl_versioned;
use kalmar_maps::PgId;
use kalmar_objectstore::{CollectionId, ObjectId, StoreError};
use kalmar_peering::Eversion;

/// The PG metadata object of every PG collection.
pub const PGMETA_OID: &str = "\0pgmeta";
/// The last scrub's findings (primary).
pub const SCRUB_OID: &str = "\0scrub";
/// The object-info xattr.
pub const OI_ATTR: &str = "_";
/// Prefix of user xattrs.
pub const USER_ATTR_PREFIX: &str = "_";

/// Omap keys of the PG metadata object (log entries and dups use the
/// peering crate's keys, which are digits and `dup_...`).
pub const KEY_INFO: &str = "_info";
pub const KEY_PAST_INTERVALS: &str = "_past_intervals";
pub const KEY_MISSING: &str = "_missing";
pub const KEY_EPOCH: &str = "_epoch";

/// The collection of a PG.
pub fn pg_collection(pgid: PgId) -> CollectionId {
    CollectionId::new(format!("{}.{:x}_head", pgid.pool, pgid.seed))
        .expect("a pool id and a hex seed make a valid collection id")
}

/// The PG of a collection name, if it is one (`1.1f_head`).
pub fn parse_pg_collection(c: &CollectionId) -> Option<PgId> {
    let s = c.as_str().strip_suffix("_head")?;
    s.parse().ok()
}

pub fn pgmeta_oid() -> ObjectId {
    ObjectId::new(PGMETA_OID).expect("the pgmeta name is valid")
}

pub fn scrub_oid() -> ObjectId {
    ObjectId::new(SCRUB_OID).expect("the scrub record's name is valid")
}

/// Whether a stored name is one of the OSD's own objects.
pub fn is_internal(name: &[u8]) -> bool {
    name.first() == Some(&0)
}

/// Checks a client object name against the limits; the message says what
/// is wrong.
pub fn check_object_name(name: &str, max_len: usize) -> Result<ObjectId, String> {
    if name.is_empty() {
        return Err("object name is empty".into());
    }
    if name.len() > max_len {
        return Err(format!(
            "object name of {} bytes exceeds osd_max_object_name_len ({max_len})",
            name.len()
        ));
    }
    if is_internal(name.as_bytes()) {
        return Err("object names may not start with a NUL byte".into());
    }
    ObjectId::new(name).map_err(|e: StoreError| e.to_string())
}

/// The stored name of a user xattr.
pub fn user_attr(name: &str) -> String {
    format!("{USER_ATTR_PREFIX}{name}")
}

/// The user name of a stored xattr (`None` for the object info).
pub fn user_attr_name(stored: &str) -> Option<&str> {
    stored
        .strip_prefix(USER_ATTR_PREFIX)
        .filter(|n| !n.is_empty())
}

/// Seed of every data and omap digest (Ceph's `bufferlist::crc32c(-1)`);
/// also the digest of no data.
pub const DIGEST_SEED: u32 = u32::MAX;

/// What the OSD keeps about each object (Ceph's `object_info_t` subset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ObjectInfo {
    pub size_bytes: u64,
    /// The log version of the last change.
    pub version: Eversion,
    pub user_version: u64,
    pub mtime_us: u64,
    /// crc32c of the whole data, kept while writes leave it computable
    /// (whole-object writes and appends, as Ceph's); a deep scrub checks
    /// every copy against it.
    pub data_digest: Option<u32>,
}
impl_versioned!(ObjectInfo, "object_info", version = 2, compat = 1, {
    size_bytes, version, user_version, mtime_us,
}, since 2 { data_digest });

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_common::{Decode, Encode};

    #[test]
    fn collections_and_names() {
        let pg = PgId::new(3, 0x1f);
        let c = pg_collection(pg);
        assert_eq!(c.as_str(), "3.1f_head");
        assert_eq!(parse_pg_collection(&c), Some(pg));
        assert_eq!(
            parse_pg_collection(&CollectionId::new("meta").expect("valid")),
            None
        );
        assert!(is_internal(pgmeta_oid().as_bytes()));
        assert!(check_object_name("a", 10).is_ok());
        assert!(check_object_name("", 10).is_err());
        assert!(check_object_name(&"x".repeat(11), 10).is_err());
        assert!(check_object_name("\0x", 10).is_err());
        assert_eq!(user_attr_name(&user_attr("color")), Some("color"));
        assert_eq!(user_attr_name(OI_ATTR), None);
        let oi = ObjectInfo {
            size_bytes: 5,
            version: Eversion::new(3, 4),
            user_version: 4,
            mtime_us: 9,
            data_digest: Some(3),
        };
        assert_eq!(ObjectInfo::from_bytes(&oi.to_bytes()).expect("decodes"), oi);
    }
}
