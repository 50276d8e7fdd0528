//! Scrub decisions, apart from I/O: what one copy reports about each
//! object of a chunk ([`ScrubMap`]), comparing the copies of a chunk and
//! choosing the authoritative one ([`compare_chunk`]), the error names
//! Ceph prints ([`ShardErrors`], [`ObjectErrors`]), what a repair rewrites
//! ([`RepairItem`]) and when a scheduled scrub is due ([`scrub_due`]).
//!
//! The OSD builds one [`ScrubMap`] per acting member for an object range
//! (the chunk), all taken while writes to that range wait, and hands them
//! here; the result is plain data.

mod compare;
mod errors;
mod report;
mod schedule;

use std::collections::BTreeMap;

use kalmar_common::impl_versioned;
use serde::Serialize;

use crate::eversion::Eversion;
use crate::object::ObjectName;

pub use compare::{compare_chunk, ChunkOutcome, Inconsistency, RepairItem, ShardReport};
pub use errors::{ObjectErrors, ShardErrors};
pub use report::{inconsistency_json, inconsistents_json};
pub use schedule::{scrub_due, ScrubSchedule};

/// The object-info facts of one copy, decoded by the OSD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ScrubInfo {
    /// The size the object info records.
    pub size: u64,
    /// The log version of the object's last change.
    pub version: Eversion,
    pub user_version: u64,
    /// The whole-object data digest the info records, if it has one.
    pub data_digest: Option<u32>,
    /// crc32c of the encoded info: copies whose infos differ at all are
    /// told apart without shipping the info.
    pub encoded_digest: u32,
}
impl_versioned!(ScrubInfo, "scrub_info", version = 1, compat = 1, {
    size, version, user_version, data_digest, encoded_digest,
});

/// What one copy holds of one object (`ScrubMap::object`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ScrubObject {
    /// Data size in the store (meaningless with `stat_error`).
    pub size: u64,
    /// The store could not stat the object.
    pub stat_error: bool,
    /// Reading the object's data, xattrs or omap failed (a checksum
    /// mismatch or an I/O error).
    pub read_error: bool,
    /// The decoded object info; `None` with `info_corrupt` false: the
    /// object has none.
    pub info: Option<ScrubInfo>,
    /// The object info is there but does not decode.
    pub info_corrupt: bool,
    /// User xattrs: name -> crc32c of the value.
    pub attrs: BTreeMap<String, u32>,
    /// crc32c over the omap header, keys and values (`None` after a read
    /// error).
    pub omap_digest: Option<u32>,
    /// crc32c over the whole data (deep scrub only).
    pub data_digest: Option<u32>,
}
impl_versioned!(ScrubObject, "scrub_object", version = 1, compat = 1, {
    size, stat_error, read_error, info, info_corrupt, attrs, omap_digest, data_digest,
});

/// One copy's objects of a chunk, in object order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ScrubMap {
    pub objects: BTreeMap<ObjectName, ScrubObject>,
}
impl_versioned!(ScrubMap, "scrub_map", version = 1, compat = 1, { objects });

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_common::{Decode, Encode};

    #[test]
    fn maps_roundtrip() {
        let mut m = ScrubMap::default();
        m.objects.insert(
            "a".into(),
            ScrubObject {
                size: 5,
                info: Some(ScrubInfo {
                    size: 5,
                    version: Eversion::new(3, 4),
                    user_version: 4,
                    data_digest: Some(7),
                    encoded_digest: 9,
                }),
                attrs: [("_x".to_string(), 3)].into(),
                omap_digest: Some(1),
                data_digest: Some(2),
                ..Default::default()
            },
        );
        m.objects.insert(
            "b".into(),
            ScrubObject {
                read_error: true,
                info_corrupt: true,
                ..Default::default()
            },
        );
        assert_eq!(ScrubMap::from_bytes(&m.to_bytes()).expect("decodes"), m);
    }

    #[test]
    fn inconsistencies_roundtrip() {
        let good = ScrubObject {
            size: 3,
            info: Some(ScrubInfo {
                size: 3,
                version: Eversion::new(4, 2),
                user_version: 2,
                data_digest: Some(0x1234),
                encoded_digest: 1,
            }),
            attrs: [("_a".to_string(), 5)].into(),
            omap_digest: Some(9),
            data_digest: Some(0x1234),
            ..Default::default()
        };
        let mut bad = good.clone();
        bad.data_digest = Some(0x99);
        let maps: BTreeMap<_, _> = [(0, Some(good.clone())), (1, Some(bad)), (2, None)]
            .into_iter()
            .map(|(osd, o)| {
                let mut m = ScrubMap::default();
                if let Some(o) = o {
                    m.objects.insert("x".to_string(), o);
                }
                (osd, m)
            })
            .collect();
        let out = compare_chunk(0, &maps, &BTreeMap::new());
        let inc = out.inconsistents.into_iter().next().expect("inconsistent");
        assert!(inc.repair.is_some() && inc.shards.iter().any(|s| s.object.is_none()));
        assert_eq!(
            Inconsistency::from_bytes(&inc.to_bytes()).expect("decodes"),
            inc
        );
    }
}
