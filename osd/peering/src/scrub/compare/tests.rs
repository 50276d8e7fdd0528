use super::*;
use proptest::prelude::*;

fn info(size: u64, v: u64) -> ScrubInfo {
    ScrubInfo {
        size,
        version: Eversion::new(5, v),
        user_version: v,
        data_digest: None,
        encoded_digest: (size as u32) ^ (v as u32).rotate_left(8),
    }
}

fn obj(size: u64, v: u64, data: u32) -> ScrubObject {
    ScrubObject {
        size,
        info: Some(info(size, v)),
        omap_digest: Some(0xffff_ffff),
        data_digest: Some(data),
        ..Default::default()
    }
}

fn maps(copies: &[(OsdId, Option<ScrubObject>)]) -> BTreeMap<OsdId, ScrubMap> {
    copies
        .iter()
        .map(|(osd, o)| {
            let mut m = ScrubMap::default();
            if let Some(o) = o {
                m.objects.insert("obj".into(), o.clone());
            }
            (*osd, m)
        })
        .collect()
}

fn one(copies: &[(OsdId, Option<ScrubObject>)]) -> Option<Inconsistency> {
    let out = compare_chunk(0, &maps(copies), &BTreeMap::new());
    assert!(out.inconsistents.len() <= 1);
    out.inconsistents.into_iter().next()
}

fn shard(inc: &Inconsistency, osd: OsdId) -> &ShardReport {
    inc.shards.iter().find(|s| s.osd == osd).expect("shard")
}

#[test]
fn equal_copies_are_consistent() {
    let o = obj(10, 3, 7);
    assert_eq!(
        one(&[(0, Some(o.clone())), (1, Some(o.clone())), (2, Some(o))]),
        None
    );
}

#[test]
fn a_bad_replica_is_outvoted_and_repaired_from_the_primary() {
    let good = obj(10, 3, 7);
    let inc = one(&[
        (0, Some(good.clone())),
        (1, Some(obj(10, 3, 8))),
        (2, Some(good)),
    ])
    .expect("inconsistent");
    assert_eq!(inc.errors.names(), vec!["data_digest_mismatch"]);
    assert_eq!(inc.auth, Some(0));
    assert!(inc.is_deep());
    let r = inc.repair.expect("repairable");
    assert_eq!((r.from, r.to), (Some(0), [1].into()));
}

#[test]
fn a_bad_primary_is_outvoted_by_two_agreeing_replicas() {
    let good = obj(10, 3, 7);
    let inc = one(&[
        (0, Some(obj(10, 3, 9))),
        (1, Some(good.clone())),
        (2, Some(good)),
    ])
    .expect("inconsistent");
    assert_eq!(inc.auth, Some(1));
    assert_eq!(inc.repair.expect("repairable").to, [0].into());
}

#[test]
fn read_errors_and_info_mismatches_disqualify_a_copy() {
    let good = obj(10, 3, 7);
    let mut unreadable = good.clone();
    unreadable.read_error = true;
    unreadable.data_digest = None;
    let inc = one(&[(0, Some(unreadable)), (1, Some(good.clone()))]).expect("inconsistent");
    assert_eq!(shard(&inc, 0).errors.names(), vec!["read_error"]);
    assert_eq!(inc.union_shard_errors.names(), vec!["read_error"]);
    assert_eq!(inc.auth, Some(1));
    assert_eq!(inc.repair.expect("repairable").to, [0].into());

    // A copy whose data size disagrees with its own info.
    let mut short = good.clone();
    short.size = 4;
    let inc = one(&[(0, Some(good.clone())), (1, Some(short))]).expect("inconsistent");
    assert_eq!(
        shard(&inc, 1).errors.names(),
        vec!["size_mismatch_info", "obj_size_info_mismatch"]
    );
    assert_eq!(inc.errors.names(), vec!["size_mismatch"]);
    assert!(!inc.is_deep());

    // The info's recorded digest beats the majority.
    let with_digest = |d: u32| {
        let mut o = good.clone();
        o.data_digest = Some(d);
        if let Some(i) = o.info.as_mut() {
            i.data_digest = Some(7);
        }
        o
    };
    let inc = one(&[
        (0, Some(with_digest(9))),
        (1, Some(with_digest(7))),
        (2, Some(with_digest(9))),
    ])
    .expect("inconsistent");
    assert_eq!(inc.auth, Some(1));
    assert_eq!(
        shard(&inc, 0).errors.names(),
        vec!["data_digest_mismatch_info"]
    );
}

#[test]
fn missing_copies_and_newer_versions() {
    let inc = one(&[
        (0, Some(obj(10, 3, 7))),
        (1, None),
        (2, Some(obj(10, 3, 7))),
    ])
    .expect("inconsistent");
    assert_eq!(shard(&inc, 1).errors.names(), vec!["missing"]);
    assert!(shard(&inc, 1).object.is_none());
    assert_eq!(inc.repair.expect("repairable").to, [1].into());
    // The newest info wins over the primary.
    let inc = one(&[(0, Some(obj(10, 3, 7))), (1, Some(obj(12, 4, 8)))]).expect("inconsistent");
    assert_eq!(inc.auth, Some(1));
    assert_eq!(
        inc.selected_info.map(|i| i.version),
        Some(Eversion::new(5, 4))
    );
    // No copy qualifies: reported, not repairable.
    let mut bad = obj(10, 3, 7);
    bad.info = None;
    let inc = one(&[(0, Some(bad.clone())), (1, Some(bad))]).expect("inconsistent");
    assert_eq!(inc.union_shard_errors.names(), vec!["info_missing"]);
    assert_eq!(inc.repair, None);
}

#[test]
fn a_deleted_object_left_on_a_replica_is_removed() {
    let mut deleted = BTreeMap::new();
    deleted.insert("obj".to_string(), Eversion::new(6, 1));
    let out = compare_chunk(0, &maps(&[(0, None), (1, Some(obj(10, 3, 7)))]), &deleted);
    let r = out.inconsistents[0].repair.clone().expect("repairable");
    assert_eq!(
        (r.from, r.to, r.version),
        (None, [1].into(), Eversion::new(6, 1))
    );
    // A delete older than the copy does not make it stale.
    deleted.insert("obj".to_string(), Eversion::new(5, 1));
    let out = compare_chunk(0, &maps(&[(0, None), (1, Some(obj(10, 3, 7)))]), &deleted);
    let r = out.inconsistents[0].repair.clone().expect("repairable");
    assert_eq!((r.from, r.to), (Some(1), [0].into()));
}

#[test]
fn xattrs_are_compared_by_name_and_value() {
    let mut a = obj(10, 3, 7);
    a.attrs.insert("_color".into(), 1);
    let mut b = a.clone();
    b.attrs.insert("_color".into(), 2);
    let inc = one(&[(0, Some(a.clone())), (1, Some(b))]).expect("inconsistent");
    assert_eq!(inc.errors.names(), vec!["attr_value_mismatch"]);
    let mut c = a.clone();
    c.attrs.insert("_shape".into(), 3);
    let inc = one(&[(0, Some(a)), (1, Some(c))]).expect("inconsistent");
    assert_eq!(inc.errors.names(), vec!["attr_name_mismatch"]);
}

/// A copy drawn from a small palette, so that copies often agree.
fn any_copy() -> impl Strategy<Value = Option<ScrubObject>> {
    (
        0u8..6,
        0u64..3,
        1u64..3,
        0u32..3,
        0u32..2,
        any::<bool>(),
        0u8..8,
    )
        .prop_map(|(kind, size, v, data, omap, attr, damage)| {
            if kind == 0 {
                return None;
            }
            let mut o = obj(size * 10, v, data);
            o.omap_digest = Some(omap);
            if attr {
                o.attrs.insert("_a".into(), data);
            }
            match damage {
                0 => o.read_error = true,
                1 => o.size += 1,
                2 => o.info = None,
                3 => {
                    o.info = None;
                    o.info_corrupt = true
                }
                _ => {}
            }
            Some(o)
        })
}

proptest! {
    /// After a repair copies the authoritative object to every copy it
    /// names (or removes stale copies), the chunk compares clean; the
    /// authoritative copy is never a target and has no errors of its own.
    #[test]
    fn repair_makes_the_chunk_consistent(
        copies in proptest::collection::vec(proptest::collection::vec(any_copy(), 1..5), 1..4),
        deleted_v in proptest::option::of(1u64..4),
    ) {
        let n = copies[0].len();
        let mut maps: BTreeMap<OsdId, ScrubMap> = BTreeMap::new();
        for (i, per_osd) in copies.iter().enumerate() {
            for osd in 0..n {
                let m = maps.entry(osd as OsdId).or_default();
                if let Some(o) = per_osd.get(osd).cloned().flatten() {
                    m.objects.insert(format!("o{i}"), o);
                }
            }
        }
        let deleted: BTreeMap<ObjectName, Eversion> = deleted_v
            .map(|v| ("o0".to_string(), Eversion::new(5, v)))
            .into_iter()
            .collect();
        let out = compare_chunk(0, &maps, &deleted);
        prop_assert_eq!(out.shallow_errors + out.deep_errors, out.inconsistents.len() as u64);
        let mut repaired = maps.clone();
        let mut all_repairable = true;
        for inc in &out.inconsistents {
            let Some(r) = &inc.repair else {
                all_repairable = false;
                continue;
            };
            if let Some(a) = r.from {
                prop_assert!(!r.to.contains(&a));
                let s = inc.shards.iter().find(|s| s.osd == a).expect("auth shard");
                prop_assert!(s.errors.is_empty(), "auth {} has {:?}", a, s.errors.names());
            }
            let good = r.from.and_then(|a| maps[&a].objects.get(&r.oid).cloned());
            for t in &r.to {
                let m = repaired.get_mut(t).expect("member");
                match &good {
                    Some(o) => { m.objects.insert(r.oid.clone(), o.clone()); }
                    None => { m.objects.remove(&r.oid); }
                }
            }
        }
        if all_repairable {
            let again = compare_chunk(0, &repaired, &deleted);
            prop_assert!(again.inconsistents.is_empty(), "{:?}", again.inconsistents);
        }
    }

    /// Copies without errors that all agree are never reported.
    #[test]
    fn agreeing_copies_are_clean(n in 1usize..5, size in 0u64..100, v in 1u64..9, d in any::<u32>()) {
        let o = obj(size, v, d);
        let copies: Vec<(OsdId, Option<ScrubObject>)> = (0..n).map(|i| (i as OsdId, Some(o.clone()))).collect();
        prop_assert!(compare_chunk(0, &maps(&copies), &BTreeMap::new()).inconsistents.is_empty());
    }
}
