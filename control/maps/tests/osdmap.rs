//! OSDMap: encodings, incrementals (random sequences, rebuild from any
//! full map, diff), refusal of gaps and foreign fsids, temp mappings,
//! and Ceph-shaped dumps.

use kalmar_common::{Decode, Encode};
use kalmar_maps::crush::WEIGHT_ONE;
use kalmar_maps::dump::{
    crush_dump_json, osd_dump_json, osd_dump_plain, osd_tree_json, osd_tree_plain,
};
use kalmar_maps::osd::{OsdAddrs, OsdState, WEIGHT_IN};
use kalmar_maps::{EntityAddr, Incremental, MapError, OsdMap, PgId, PgPool, ITEM_NONE};
use proptest::prelude::*;

fn fsid() -> uuid::Uuid {
    uuid::Uuid::from_u128(0x54656202_0b55_49f3_a2fd_2337038b7535)
}

fn addr(port: u16, nonce: u32) -> EntityAddr {
    EntityAddr::new(([127, 0, 0, 1], port).into(), nonce)
}

/// A cluster of `n` OSDs (one host each), all up and in, pool 1 'rbd'.
fn cluster(n: i32) -> OsdMap {
    let mut m = OsdMap::new(fsid(), 1_795_262_533_000_000);
    let mut inc = Incremental::new(fsid(), 1, 1_795_262_534_000_000);
    inc.new_max_osd = Some(n);
    let mut crush = m.crush.clone();
    for i in 0..n {
        crush
            .add_osd(i, WEIGHT_ONE, &format!("host{i}"))
            .expect("crush");
        inc.new_uuid.insert(i, uuid::Uuid::from_u128(i as u128 + 1));
        inc.new_state.insert(i, OsdState::EXISTS);
        inc.new_weight.insert(i, WEIGHT_IN);
        inc.new_up
            .insert(i, OsdAddrs::all(addr(6800 + i as u16, 100 + i as u32)));
    }
    inc.crush = Some(crush);
    inc.new_pools
        .insert(1, PgPool::replicated(1, "rbd", 3, 2, 32, 0));
    m.apply_incremental(&inc).expect("epoch 1");
    m
}

#[test]
fn encode_roundtrip_and_crc() {
    let m = cluster(5);
    let b = m.encode_sealed();
    assert_eq!(OsdMap::decode_sealed(&b).expect("decodes"), m);
    assert_eq!(OsdMap::from_bytes(&m.to_bytes()).expect("plain"), m);
    let mut bad = b.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    assert!(
        OsdMap::decode_sealed(&bad).is_err(),
        "a flipped bit is caught"
    );
}

#[test]
fn newer_incompatible_encoding_is_refused() {
    let m = cluster(1);
    let mut b = m.to_bytes();
    // Pretend a future writer declared compat version 9.
    b[0] = 9;
    b[1] = 9;
    match OsdMap::from_bytes(&b) {
        Err(kalmar_common::DecodeError::Incompatible { compat: 9, .. }) => {}
        other => panic!("expected Incompatible, got {other:?}"),
    }
}

#[test]
fn epoch_gap_and_foreign_fsid_are_refused() {
    let mut m = cluster(3);
    let before = m.clone();
    let gap = Incremental::new(fsid(), m.epoch + 2, 0);
    assert_eq!(
        m.apply_incremental(&gap),
        Err(MapError::EpochGap { have: 1, got: 3 })
    );
    let stale = Incremental::new(fsid(), m.epoch, 0);
    assert!(matches!(
        m.apply_incremental(&stale),
        Err(MapError::EpochGap { .. })
    ));
    let other = Incremental::new(uuid::Uuid::from_u128(7), m.epoch + 1, 0);
    assert!(matches!(
        m.apply_incremental(&other),
        Err(MapError::FsidMismatch { .. })
    ));
    let mut huge = Incremental::new(fsid(), m.epoch + 1, 0);
    huge.new_max_osd = Some(i32::MAX);
    huge.new_flags = Some(0);
    assert!(matches!(
        m.apply_incremental(&huge),
        Err(MapError::MaxOsdOutOfRange { .. })
    ));
    assert_eq!(m, before, "a refused incremental changes nothing");
}

#[test]
fn state_xor_down_and_destroy() {
    let mut m = cluster(3);
    let mut inc = Incremental::new(fsid(), 2, 0);
    inc.new_state.insert(1, OsdState::UP);
    m.apply_incremental(&inc).expect("down");
    assert!(m.exists(1) && !m.is_up(1));
    assert_eq!(m.osd(1).expect("slot").info.down_at, 2);
    let mut inc = Incremental::new(fsid(), 3, 0);
    inc.new_up.insert(1, OsdAddrs::all(addr(7000, 5)));
    inc.new_up_thru.insert(1, 3);
    m.apply_incremental(&inc).expect("boot");
    let s = m.osd(1).expect("slot");
    assert!(s.is_up());
    assert_eq!((s.info.up_from, s.info.up_thru), (3, 3));
    assert_eq!(s.addrs.public, addr(7000, 5));
    let mut inc = Incremental::new(fsid(), 4, 0);
    inc.new_state.insert(2, OsdState::EXISTS | OsdState::UP);
    m.apply_incremental(&inc).expect("destroy");
    assert!(!m.exists(2));
    assert!(
        m.osd(2).expect("slot").uuid.is_nil(),
        "destroy wipes the slot"
    );
}

#[test]
fn pg_temp_primary_temp_and_down_osds() {
    let mut m = cluster(6);
    let pg = PgId::new(1, 7);
    let base = m.pg_to_up_acting_osds(pg).expect("maps");
    assert_eq!(base.up.len(), 3);
    assert_eq!(base.up, base.acting);
    assert_eq!(base.up_primary, base.up[0]);

    // pg_temp overrides acting; its first up member is the primary.
    let temp: Vec<i32> = (0..6).filter(|o| !base.up.contains(o)).take(3).collect();
    let mut inc = Incremental::new(fsid(), 2, 0);
    inc.new_pg_temp.insert(pg, temp.clone());
    m.apply_incremental(&inc).expect("temp");
    let t = m.pg_to_up_acting_osds(pg).expect("maps");
    assert_eq!(t.up, base.up);
    assert_eq!(t.acting, temp);
    assert_eq!(t.acting_primary, temp[0]);
    // A raw pg (full hash) folds onto the same PG.
    let raw = PgId::new(1, 7 + 32 * 1000);
    assert_eq!(m.pg_to_up_acting_osds(raw).expect("raw"), t);

    // primary_temp picks the primary inside acting.
    let mut inc = Incremental::new(fsid(), 3, 0);
    inc.new_primary_temp.insert(pg, temp[2]);
    m.apply_incremental(&inc).expect("ptemp");
    assert_eq!(
        m.pg_to_up_acting_osds(pg).expect("maps").acting_primary,
        temp[2]
    );

    // A down member leaves up (replicated pools shift left) and pg_temp.
    let mut inc = Incremental::new(fsid(), 4, 0);
    inc.new_state.insert(base.up[0], OsdState::UP);
    inc.new_state.insert(temp[0], OsdState::UP);
    m.apply_incremental(&inc).expect("down");
    let d = m.pg_to_up_acting_osds(pg).expect("maps");
    assert!(!d.up.contains(&base.up[0]));
    assert_eq!(d.acting, temp[1..].to_vec());

    // Deleting temp entries restores CRUSH's answer.
    let mut inc = Incremental::new(fsid(), 5, 0);
    inc.new_pg_temp.insert(pg, vec![]);
    inc.new_primary_temp.insert(pg, -1);
    m.apply_incremental(&inc).expect("clear");
    assert!(m.pg_temp.is_empty() && m.primary_temp.is_empty());
    let c = m.pg_to_up_acting_osds(pg).expect("maps");
    assert_eq!(c.acting, c.up);

    // Removing the pool drops its temp entries; mapping it is an error.
    let mut inc = Incremental::new(fsid(), 6, 0);
    inc.old_pools.insert(1);
    m.apply_incremental(&inc).expect("rm pool");
    assert_eq!(m.pg_to_up_acting_osds(pg), Err(MapError::NoSuchPool(1)));
}

/// Proptest seed 3abfd9da (kept in osdmap.proptest-regressions) as a plain
/// case: one incremental removes pool 1 and also sets a pool-1 pg_temp
/// equal to the one it had. Applying it used to re-add the entry after
/// `old_pools` cleared it, leaving an override for a pool that no longer
/// exists, which `diff` (seeing no change) could not reproduce.
#[test]
fn temp_entries_naming_a_removed_pool_are_dropped() {
    let mut m = cluster(4);
    let pg = PgId::new(1, 1);
    let mut inc = Incremental::new(fsid(), 2, 0);
    inc.new_pg_temp.insert(pg, vec![3, 1]);
    m.apply_incremental(&inc).expect("temp");
    let prev = m.clone();
    let mut inc = Incremental::new(fsid(), 3, 0);
    inc.old_pools.insert(1);
    inc.new_pg_temp.insert(pg, vec![3, 1]);
    inc.new_primary_temp.insert(pg, 1);
    m.apply_incremental(&inc).expect("rm pool");
    assert!(
        m.pg_temp.is_empty() && m.primary_temp.is_empty(),
        "temp entries of a removed pool survive: {:?} {:?}",
        m.pg_temp,
        m.primary_temp
    );
    let mut via_diff = prev.clone();
    via_diff
        .apply_incremental(&Incremental::diff(&prev, &m))
        .expect("diff applies");
    assert_eq!(via_diff, m, "diff rebuilds the map");

    // A later incremental cannot name the missing pool either, so a new
    // pool with the same id starts with CRUSH's own mapping.
    let mut inc = Incremental::new(fsid(), 4, 0);
    inc.new_pg_temp.insert(pg, vec![2, 0]);
    inc.new_primary_temp.insert(pg, 2);
    m.apply_incremental(&inc).expect("stale temp");
    assert!(m.pg_temp.is_empty() && m.primary_temp.is_empty());
    let mut inc = Incremental::new(fsid(), 5, 0);
    inc.new_pools
        .insert(1, PgPool::replicated(1, "again", 3, 2, 8, 0));
    m.apply_incremental(&inc).expect("pool again");
    let a = m.pg_to_up_acting_osds(pg).expect("maps");
    assert_eq!((a.acting, a.acting_primary), (a.up, a.up_primary));
}

/// An incremental carrying an unchanged CRUSH map still bumps
/// `crush_version` (Ceph's `apply_incremental` does the same); `diff` used
/// to compare only the maps and drop the bump. Found while looking for
/// other failures of `random_incremental_sequences` (op 9 twice, same OSD,
/// host and weight), which draws it too rarely to keep as a seed.
#[test]
fn diff_keeps_a_crush_version_bump_with_an_unchanged_crush_map() {
    let mut m = cluster(4);
    let mut inc = Incremental::new(fsid(), 2, 0);
    inc.crush = Some(m.crush.clone());
    let prev = m.clone();
    m.apply_incremental(&inc).expect("same crush");
    assert_eq!(m.crush, prev.crush);
    assert_eq!(m.crush_version, prev.crush_version + 1);
    let d = Incremental::diff(&prev, &m);
    let mut via_diff = prev.clone();
    via_diff.apply_incremental(&d).expect("diff applies");
    assert_eq!(via_diff, m);
    assert_eq!(
        Incremental::diff(&m, &m).crush,
        None,
        "no change sends no crush map"
    );
}

#[test]
fn erasure_pools_keep_holes_and_affinity_moves_primary() {
    let mut m = cluster(6);
    let mut ec = PgPool::replicated(2, "ec", 4, 3, 16, 1);
    ec.pool_type = kalmar_maps::PoolType::Erasure;
    let mut crush = m.crush.clone();
    let root = crush.bucket_by_name("default").expect("root").id;
    let mut rule = kalmar_maps::crush::Rule::replicated(1, "ec", root, 1);
    rule.rule_type = 3;
    rule.steps[1] = kalmar_maps::crush::RuleStep::Choose {
        leaf: true,
        mode: kalmar_maps::crush::ChooseMode::Indep,
        num: 0,
        type_id: 1,
    };
    crush.rules.insert(1, rule);
    let mut inc = Incremental::new(fsid(), 2, 0);
    inc.crush = Some(crush);
    inc.new_pools.insert(2, ec);
    m.apply_incremental(&inc).expect("ec pool");
    let pg = PgId::new(2, 3);
    let up = m.pg_to_up_acting_osds(pg).expect("maps").up;
    assert_eq!(up.len(), 4);
    let mut inc = Incremental::new(fsid(), 3, 0);
    inc.new_state.insert(up[1], OsdState::UP);
    m.apply_incremental(&inc).expect("down");
    let d = m.pg_to_up_acting_osds(pg).expect("maps");
    assert_eq!(d.up[1], ITEM_NONE, "EC keeps the position of a down shard");
    assert_eq!((d.up[0], d.up[2], d.up[3]), (up[0], up[2], up[3]));

    // Primary affinity 0 on a replicated PG's primary moves it away.
    let pg = PgId::new(1, 0);
    let before = m.pg_to_up_acting_osds(pg).expect("maps");
    let mut inc = Incremental::new(fsid(), 4, 0);
    inc.new_primary_affinity.insert(before.up_primary, 0);
    m.apply_incremental(&inc).expect("affinity");
    let after = m.pg_to_up_acting_osds(pg).expect("maps");
    assert_ne!(after.up_primary, before.up_primary);
    assert_eq!(
        after.up[0], after.up_primary,
        "replicated pools move the primary to the front"
    );
}

#[test]
fn osd_map_and_pg_map_lines() {
    let m = cluster(4);
    let om = m.map_object("rbd", "foo").expect("maps");
    assert_eq!(om.raw_pgid, "1.7fc1f406", "ceph_str_hash_rjenkins(\"foo\")");
    assert_eq!(om.pgid, "1.6");
    let line = om.to_line();
    assert!(
        line.starts_with("osdmap e1 pool 'rbd' (1) object 'foo' -> pg 1.7fc1f406 (1.6) -> up (["),
        "{line}"
    );
    let json = serde_json::to_value(&om).expect("json");
    for k in [
        "epoch",
        "pool",
        "pool_id",
        "objname",
        "raw_pgid",
        "pgid",
        "up",
        "up_primary",
        "acting",
        "acting_primary",
    ] {
        assert!(json.get(k).is_some(), "osd map json lacks {k}");
    }
    let pm = m.map_pg("1.6".parse().expect("pgid")).expect("pg map");
    assert_eq!(pm.up, om.up);
    assert!(pm.to_line().starts_with("osdmap e1 pg 1.6 (1.6) -> up ["));
    assert!(matches!(
        m.map_pg(PgId::new(1, 32)),
        Err(MapError::PgOutOfRange { .. })
    ));
    assert!(matches!(
        m.map_object("nope", "foo"),
        Err(MapError::NoSuchPoolName(_))
    ));
    assert_eq!(m.map_pool_pgs(1).expect("pgs").len(), 32);
    // Namespaced objects hash "nspace\x1fname" (pg_pool_t::hash_key).
    let ns = m.map_object_ns("rbd", "ns1", "foo").expect("maps");
    let want = kalmar_maps::hash::str_hash_rjenkins(b"ns1\x1ffoo");
    assert_eq!(ns.raw_pgid, PgId::new(1, want).to_string());
    assert_eq!(ns.objname, "ns1/foo");
    assert!(ns.to_line().contains("object 'ns1/foo' -> pg 1."));
}

#[test]
fn osd_tree_matches_ceph_sample_layout() {
    // Ceph's sample: root default (-1) > host vm (-3) > osd.0-2, class ssd.
    let mut m = OsdMap::new(fsid(), 0);
    let mut crush = kalmar_maps::CrushMap::empty();
    for &(id, n) in kalmar_maps::crush::build::DEFAULT_TYPES {
        crush.types.insert(id, n.to_string());
    }
    crush.add_bucket(-1, "default", 11).expect("root");
    crush.add_bucket(-3, "vm", 1).expect("host");
    crush.insert_item(-1, -3, 0).expect("host in root");
    for i in 0..3 {
        crush
            .add_device(i, &format!("osd.{i}"), Some("ssd"))
            .expect("dev");
        crush.insert_item(-3, i, 511).expect("osd in host");
    }
    m.crush = crush;
    m.set_max_osd(3);
    for i in 0..3 {
        let s = m.osd_mut(i).expect("slot");
        s.state = OsdState(OsdState::EXISTS | OsdState::UP);
        s.weight = WEIGHT_IN;
    }
    let sample = include_str!("fixtures/ceph/ceph-osd-tree.txt");
    assert_eq!(osd_tree_plain(&m), sample);
    let j = osd_tree_json(&m);
    assert_eq!(j["nodes"][0]["name"], "default");
    assert_eq!(j["nodes"][1]["children"], serde_json::json!([2, 1, 0]));
    assert_eq!(j["nodes"][2]["status"], "up");
    assert_eq!(j["stray"], serde_json::json!([]));
}

#[test]
fn osd_dump_shapes() {
    let mut m = cluster(3);
    m.pools
        .get_mut(&1)
        .expect("pool")
        .application_metadata
        .insert("rbd".into(), Default::default());
    m.pools.get_mut(&1).expect("pool").flags |= 1 << 13;
    m.pools.get_mut(&1).expect("pool").last_change = 25;
    m.pools.get_mut(&1).expect("pool").id = 2;
    let p = m.pools.remove(&1).expect("pool");
    m.pools.insert(2, p);
    let plain = osd_dump_plain(&m);
    let sample = include_str!("fixtures/ceph/ceph-osd-dump.txt");
    let want_pool = sample
        .lines()
        .find(|l| l.starts_with("pool 2 "))
        .expect("sample pool");
    assert!(
        plain.lines().any(|l| l == want_pool),
        "pool line differs:\n{plain}\nwant {want_pool}"
    );
    assert!(plain.contains("flags sortbitwise,recovery_deletes,purged_snapdirs,pglog_hardlimit\n"));
    let osd0 = plain
        .lines()
        .find(|l| l.starts_with("osd.0 "))
        .expect("osd line");
    assert!(osd0.starts_with("osd.0 up   in  weight 1 up_from 1 up_thru 0 down_at 0 last_clean_interval [0,0) [v2:127.0.0.1:6800/100]"), "{osd0}");
    assert!(osd0.contains(" exists,up 00000000-0000-0000-0000-000000000001"));
    let j = osd_dump_json(&m);
    assert_eq!(j["epoch"], 1);
    assert_eq!(j["max_osd"], 3);
    assert_eq!(j["pools"][0]["pool_name"], "rbd");
    assert_eq!(j["pools"][0]["pg_placement_num"], 32);
    assert_eq!(j["osds"][0]["up"], 1);
    assert_eq!(j["osds"][0]["in"], 1);
    assert_eq!(j["osds"][0]["state"], serde_json::json!(["exists", "up"]));
    assert_eq!(j["osds"][2]["public_addr"], "127.0.0.1:6802/102");
    assert!(j["pg_temp"].is_array() && j["primary_temp"].is_array());
    let c = crush_dump_json(&m.crush);
    assert_eq!(c["rules"][0]["steps"][1]["op"], "chooseleaf_firstn");
    assert_eq!(c["rules"][0]["steps"][1]["type"], "host");
    assert_eq!(c["buckets"][0]["name"], "default");
    assert_eq!(c["buckets"][0]["weight"], 3 * 0x10000);
    assert_eq!(c["tunables"]["choose_total_tries"], 50);
}

/// One random, Ceph-style change to the map at `m.epoch`.
fn random_inc(m: &OsdMap, ops: &[(u8, u8, u16)]) -> Incremental {
    let mut inc = Incremental::new(m.fsid, m.epoch + 1, m.modified_us + 1000);
    let max = m.max_osd().max(1);
    for &(op, a, b) in ops {
        let osd = i32::from(a) % (max + 2);
        match op % 11 {
            0 => inc.new_max_osd = Some(i32::from(a % 12)),
            1 => {
                inc.new_state.insert(osd, u32::from(b) & 0xfff);
            }
            2 => {
                inc.new_weight.insert(osd, u32::from(b) * 2);
            }
            3 => {
                inc.new_up.insert(osd, OsdAddrs::all(addr(b, u32::from(a))));
            }
            4 => {
                inc.new_up_thru.insert(osd, u32::from(b));
            }
            5 => {
                let pg = PgId::new(1, u32::from(b) % 40);
                let v = if a % 3 == 0 {
                    vec![]
                } else {
                    vec![osd, (osd + 1) % max]
                };
                inc.new_pg_temp.insert(pg, v);
            }
            6 => {
                let pg = PgId::new(1, u32::from(b) % 40);
                inc.new_primary_temp
                    .insert(pg, if a % 2 == 0 { -1 } else { osd });
            }
            7 => {
                let id = u64::from(a % 4) + 1;
                inc.new_pools.insert(
                    id,
                    PgPool::replicated(id, &format!("p{id}"), 3, 2, u32::from(b % 64) + 1, 0),
                );
            }
            8 => {
                inc.old_pools.insert(u64::from(a % 4) + 1);
            }
            9 => {
                let mut c = inc.crush.clone().unwrap_or_else(|| m.crush.clone());
                // Few weights and hosts, so re-adding an OSD often leaves
                // the map unchanged (still a new crush_version).
                let w = u32::from(b % 4) * 0x8000;
                let _ = c.add_osd(osd, w, &format!("h{}", a % 3));
                inc.crush = Some(c);
            }
            _ => {
                inc.new_flags = Some(m.flags ^ (1 << (b % 16)));
            }
        }
    }
    inc
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Incrementals applied one by one give the same maps as decoding the
    /// stored full maps; any full map plus the later (decoded) incrementals
    /// rebuilds the newest; `diff` reproduces each step exactly.
    #[test]
    fn random_incremental_sequences(steps in proptest::collection::vec(
        proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u16>()), 1..6), 1..25),
        start in any::<prop::sample::Index>(),
    ) {
        let mut m = cluster(4);
        let mut fulls = vec![m.encode_sealed()];
        let mut incs = Vec::new();
        for ops in &steps {
            let inc = random_inc(&m, ops);
            let bytes = inc.encode_sealed();
            let decoded = Incremental::decode_sealed(&bytes).expect("inc decodes");
            prop_assert_eq!(&decoded, &inc);
            let prev = m.clone();
            m.apply_incremental(&decoded).expect("applies");
            prop_assert!(
                m.pg_temp.keys().chain(m.primary_temp.keys()).all(|pg| m.pools.contains_key(&pg.pool)),
                "a temp entry names a missing pool"
            );
            let d = Incremental::diff(&prev, &m);
            let mut via_diff = prev.clone();
            via_diff.apply_incremental(&d).expect("diff applies");
            prop_assert_eq!(&via_diff, &m);
            fulls.push(m.encode_sealed());
            incs.push(bytes);
        }
        let k = start.index(fulls.len());
        let mut rebuilt = OsdMap::decode_sealed(&fulls[k]).expect("full decodes");
        for b in &incs[k..] {
            rebuilt.apply_incremental(&Incremental::decode_sealed(b).expect("inc")).expect("applies");
        }
        prop_assert_eq!(&rebuilt, &m);
        prop_assert_eq!(OsdMap::decode_sealed(fulls.last().expect("last")).expect("decodes"), m);
    }

    /// Random bytes never panic any decoder.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = OsdMap::decode_sealed(&bytes);
        let _ = OsdMap::from_bytes(&bytes);
        let _ = Incremental::decode_sealed(&bytes);
        let _ = Incremental::from_bytes(&bytes);
        let _ = kalmar_maps::MgrMap::from_bytes(&bytes);
        let _ = kalmar_maps::CrushMap::from_bytes(&bytes);
        let _ = PgId::from_bytes(&bytes);
    }

    /// Mutated real encodings never panic either (and the crc catches them).
    #[test]
    fn mutated_encodings_never_panic(pos in any::<prop::sample::Index>(), val in any::<u8>()) {
        let m = cluster(3);
        let mut b = m.to_bytes();
        let i = pos.index(b.len());
        b[i] = val;
        let _ = OsdMap::from_bytes(&b);
        let mut s = m.encode_sealed();
        let i = pos.index(s.len());
        if s[i] != val {
            s[i] = val;
            prop_assert!(OsdMap::decode_sealed(&s).is_err());
        }
    }

    /// Crush map text parsing never panics on garbage.
    #[test]
    fn crush_text_never_panics(s in "[a-z0-9 {}#\\n.-]{0,300}") {
        let _ = kalmar_maps::CrushMap::from_text(&s);
    }
}
