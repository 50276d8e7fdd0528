//! Comparing the copies of one chunk (`be_compare_scrubmaps`): for each
//! object, the errors of each copy on its own, the authoritative copy, the
//! copies that disagree with it, and what repair must rewrite.
//!
//! # Choosing the authoritative copy
//! Only a copy without errors of its own can be chosen (no read or stat
//! error, an object info that decodes and agrees with the data's size and,
//! where it records one, the data digest). Among those, as Ceph's
//! `select_auth_object`: the newest object-info version wins; then the copy
//! most others agree with (same size, digests, info and xattrs); then the
//! primary; then the lowest OSD id. So a lone bad copy on the primary is
//! outvoted by two good replicas.
//!
//! One Kalmar addition: when the primary does not hold an object that its
//! log records as deleted after every surviving copy's version, the
//! surviving copies are stale, and repair removes them instead of copying
//! them back.

use std::collections::{BTreeMap, BTreeSet};

use kalmar_common::impl_versioned;
use kalmar_maps::OsdId;

use super::errors::{ObjectErrors, ShardErrors};
use super::{ScrubInfo, ScrubMap, ScrubObject};
use crate::eversion::Eversion;
use crate::object::ObjectName;

/// One copy of an inconsistent object, as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardReport {
    pub osd: OsdId,
    pub primary: bool,
    pub errors: ShardErrors,
    /// `None`: the copy does not exist.
    pub object: Option<ScrubObject>,
}
impl_versioned!(ShardReport, "scrub_shard_report", version = 1, compat = 1, {
    osd, primary, errors, object,
});

/// What repair does for one object: copy `from`'s object (or, with `from`
/// `None`, the object's absence) to each of `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairItem {
    pub oid: ObjectName,
    /// The authoritative copy's object-info version (for an absence: the
    /// version of the delete that the log records).
    pub version: Eversion,
    pub from: Option<OsdId>,
    pub to: BTreeSet<OsdId>,
}
impl_versioned!(RepairItem, "scrub_repair_item", version = 1, compat = 1, {
    oid, version, from, to,
});

/// An object whose copies disagree or are damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inconsistency {
    pub oid: ObjectName,
    pub errors: ObjectErrors,
    /// Every copy's errors together.
    pub union_shard_errors: ShardErrors,
    /// The authoritative copy (`None` when no copy qualifies or the object
    /// must not exist).
    pub auth: Option<OsdId>,
    pub selected_info: Option<ScrubInfo>,
    /// Every acting member's copy, in OSD order.
    pub shards: Vec<ShardReport>,
    /// `None`: no copy can be trusted; the object cannot be repaired.
    pub repair: Option<RepairItem>,
}
// Stored with the PG's scrub results (`list-inconsistent-obj` after a
// restart).
impl_versioned!(Inconsistency, "scrub_inconsistency", version = 1, compat = 1, {
    oid, errors, union_shard_errors, auth, selected_info, shards, repair,
});

impl Inconsistency {
    /// Whether finding it needed a deep scrub.
    pub fn is_deep(&self) -> bool {
        self.errors.has(ObjectErrors::DEEP) || self.union_shard_errors.has(ShardErrors::DEEP)
    }
}

/// The comparison of one chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkOutcome {
    pub inconsistents: Vec<Inconsistency>,
    /// Objects compared.
    pub objects: u64,
    /// Inconsistent objects found without / only with reading data.
    pub shallow_errors: u64,
    pub deep_errors: u64,
}

/// A copy's errors on its own, before any comparison.
fn own_errors(o: &ScrubObject) -> ShardErrors {
    let mut e = ShardErrors::default();
    if o.stat_error {
        e.set(ShardErrors::STAT_ERROR);
    }
    if o.read_error {
        e.set(ShardErrors::READ_ERROR);
    }
    match &o.info {
        None if o.info_corrupt => e.set(ShardErrors::INFO_CORRUPTED),
        None => e.set(ShardErrors::INFO_MISSING),
        Some(i) => {
            if !o.stat_error && i.size != o.size {
                e.set(ShardErrors::OBJ_SIZE_INFO_MISMATCH);
            }
            if let (Some(want), Some(got)) = (i.data_digest, o.data_digest) {
                if want != got {
                    e.set(ShardErrors::DATA_DIGEST_MISMATCH_INFO);
                }
            }
        }
    }
    e
}

/// What two copies must share to count as the same.
fn same_content(a: &ScrubObject, b: &ScrubObject) -> bool {
    a.size == b.size
        && a.data_digest == b.data_digest
        && a.omap_digest == b.omap_digest
        && a.info.map(|i| i.encoded_digest) == b.info.map(|i| i.encoded_digest)
        && a.attrs == b.attrs
}

/// Compares `cand` with the reference copy; returns whether they differ.
fn compare_with(
    reference: &ScrubObject,
    ref_info: Option<&ScrubInfo>,
    cand: &ScrubObject,
    shard: &mut ShardErrors,
    obj: &mut ObjectErrors,
) -> bool {
    let mut differs = false;
    if let (Some(a), Some(b)) = (reference.data_digest, cand.data_digest) {
        if a != b {
            obj.set(ObjectErrors::DATA_DIGEST_MISMATCH);
            differs = true;
        }
    }
    if let (Some(want), Some(got)) = (ref_info.and_then(|i| i.data_digest), cand.data_digest) {
        if want != got {
            shard.set(ShardErrors::DATA_DIGEST_MISMATCH_INFO);
            differs = true;
        }
    }
    if let (Some(a), Some(b)) = (reference.omap_digest, cand.omap_digest) {
        if a != b {
            obj.set(ObjectErrors::OMAP_DIGEST_MISMATCH);
            differs = true;
        }
    }
    if !reference.stat_error && !cand.stat_error && reference.size != cand.size {
        obj.set(ObjectErrors::SIZE_MISMATCH);
        differs = true;
    }
    if let Some(i) = ref_info {
        if !cand.stat_error && i.size != cand.size {
            shard.set(ShardErrors::SIZE_MISMATCH_INFO);
            differs = true;
        }
    }
    if let (Some(a), Some(b)) = (&reference.info, &cand.info) {
        if a.encoded_digest != b.encoded_digest {
            obj.set(ObjectErrors::OBJECT_INFO_INCONSISTENCY);
            differs = true;
        }
    }
    if !reference.attrs.keys().eq(cand.attrs.keys()) {
        obj.set(ObjectErrors::ATTR_NAME_MISMATCH);
        differs = true;
    }
    let value_differs = reference
        .attrs
        .iter()
        .any(|(k, v)| cand.attrs.get(k).is_some_and(|c| c != v));
    if value_differs {
        obj.set(ObjectErrors::ATTR_VALUE_MISMATCH);
        differs = true;
    }
    differs
}

/// The authoritative copy among `holders` (see the module docs).
fn choose_auth(
    primary: OsdId,
    holders: &BTreeMap<OsdId, (&ScrubObject, ShardErrors)>,
) -> Option<OsdId> {
    let clean: Vec<(OsdId, &ScrubObject)> = holders
        .iter()
        .filter(|(_, (_, e))| e.is_empty())
        .map(|(&o, &(obj, _))| (o, obj))
        .collect();
    clean
        .iter()
        .max_by_key(|&&(osd, obj)| {
            let version = obj.info.map_or(Eversion::ZERO, |i| i.version);
            let agree = clean.iter().filter(|(_, b)| same_content(obj, b)).count();
            // Higher is better: newest, most agreed, the primary, lowest id.
            (version, agree, osd == primary, std::cmp::Reverse(osd))
        })
        .map(|&(osd, _)| osd)
}

/// Compares one object across every member's map.
fn compare_object(
    oid: &str,
    primary: OsdId,
    maps: &BTreeMap<OsdId, ScrubMap>,
    deleted_in_log: Option<Eversion>,
) -> Option<Inconsistency> {
    let holders: BTreeMap<OsdId, (&ScrubObject, ShardErrors)> = maps
        .iter()
        .filter_map(|(&osd, m)| m.objects.get(oid).map(|o| (osd, (o, own_errors(o)))))
        .collect();
    let newest = holders
        .values()
        .map(|(o, _)| o.info.map_or(Eversion::ZERO, |i| i.version))
        .max()
        .unwrap_or(Eversion::ZERO);
    let stale_everywhere =
        !holders.contains_key(&primary) && deleted_in_log.is_some_and(|deleted| deleted > newest);
    let auth = if stale_everywhere {
        None
    } else {
        choose_auth(primary, &holders)
    };
    // Object-level comparisons need a reference even when no copy can be
    // trusted: then the first holder.
    let reference = auth.or_else(|| holders.keys().next().copied());
    let ref_obj = reference.and_then(|r| holders.get(&r)).map(|(o, _)| *o);
    let ref_info = auth.and_then(|a| holders.get(&a)).and_then(|(o, _)| o.info);
    let mut errors = ObjectErrors::default();
    let mut union = ShardErrors::default();
    let mut shards = Vec::with_capacity(maps.len());
    let mut to = BTreeSet::new();
    for &osd in maps.keys() {
        let mut e = ShardErrors::default();
        let object = match holders.get(&osd) {
            None => {
                e.set(ShardErrors::MISSING);
                if auth.is_some() {
                    to.insert(osd);
                }
                None
            }
            Some(&(obj, own)) => {
                e.set(own.0);
                let mut differs = !own.is_empty();
                if let Some(r) = ref_obj.filter(|_| reference != Some(osd)) {
                    differs |= compare_with(r, ref_info.as_ref(), obj, &mut e, &mut errors);
                }
                if stale_everywhere || (differs && auth.is_some() && auth != Some(osd)) {
                    to.insert(osd);
                }
                Some(obj.clone())
            }
        };
        union.set(e.0);
        shards.push(ShardReport {
            osd,
            primary: osd == primary,
            errors: e,
            object,
        });
    }
    if union.is_empty() && errors.is_empty() {
        return None;
    }
    let repair = match (auth, stale_everywhere) {
        (_, true) => Some(RepairItem {
            oid: oid.to_string(),
            version: deleted_in_log.unwrap_or(Eversion::ZERO),
            from: None,
            to,
        }),
        (Some(a), false) => Some(RepairItem {
            oid: oid.to_string(),
            version: ref_info.map_or(Eversion::ZERO, |i| i.version),
            from: Some(a),
            to,
        }),
        (None, false) => None,
    };
    Some(Inconsistency {
        oid: oid.to_string(),
        errors,
        union_shard_errors: union,
        auth,
        selected_info: ref_info,
        shards,
        repair,
    })
}

/// Compares the maps every acting member (the primary included) built of
/// the same chunk. `deleted_in_log`: objects of the chunk whose newest
/// entry in the primary's log is a delete, with that entry's version.
pub fn compare_chunk(
    primary: OsdId,
    maps: &BTreeMap<OsdId, ScrubMap>,
    deleted_in_log: &BTreeMap<ObjectName, Eversion>,
) -> ChunkOutcome {
    let names: BTreeSet<&ObjectName> = maps.values().flat_map(|m| m.objects.keys()).collect();
    let mut out = ChunkOutcome {
        objects: names.len() as u64,
        ..Default::default()
    };
    for oid in names {
        if let Some(inc) = compare_object(oid, primary, maps, deleted_in_log.get(oid).copied()) {
            if inc.is_deep() {
                out.deep_errors += 1;
            } else {
                out.shallow_errors += 1;
            }
            out.inconsistents.push(inc);
        }
    }
    out
}

#[cfg(test)]
mod tests;
