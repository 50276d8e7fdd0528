use kalmar_maps::crush::WEIGHT_ONE;
use kalmar_maps::osd::{OsdState, WEIGHT_IN, WEIGHT_OUT};
use kalmar_maps::PgPool;
use kalmar_proto::pgstats::{OsdPgStats, OsdStatEntry, PgStatEntry};

use super::*;
use crate::errors::{EINVAL, ENOENT};

fn pg(seed: u32, state: &str, acting: &[OsdId], min_size: u32) -> PgView {
    PgView {
        pgid: PgId::new(1, seed),
        state: state.into(),
        min_size,
        up: acting.to_vec(),
        acting: acting.to_vec(),
        reported_up: acting.to_vec(),
        reported_acting: acting.to_vec(),
    }
}

fn set(ids: &[OsdId]) -> BTreeSet<OsdId> {
    ids.iter().copied().collect()
}

fn pgids(seeds: &[u32]) -> BTreeSet<PgId> {
    seeds.iter().map(|&s| PgId::new(1, s)).collect()
}

/// A size 3, min_size 2 pool: one OSD may stop, two sharing a PG may not.
#[test]
fn one_osd_may_stop_two_sharing_a_pg_may_not() {
    let pgs = vec![
        pg(0, "active+clean", &[0, 1, 2], 2),
        pg(1, "active+clean", &[1, 2, 3], 2),
        pg(2, "active+clean", &[0, 3, 4], 2),
    ];
    let r = check_offline(&pgs, &set(&[0]));
    assert!(r.ok_to_stop(), "{r:?}");
    assert_eq!(r.ok, pgids(&[0, 2]));
    assert_eq!(r.ok_become_degraded, pgids(&[0, 2]));
    assert!(r.not_ok.is_empty());
    // 0 and 3 share PG 1.2: it would keep one copy.
    let r = check_offline(&pgs, &set(&[0, 3]));
    assert!(!r.ok_to_stop());
    assert_eq!(r.not_ok, pgids(&[2]));
    assert_eq!(r.bad_become_inactive, pgids(&[2]));
    assert_eq!(r.ok, pgids(&[0, 1]));
    assert_eq!(
        r.to_json(),
        json!({
            "ok_to_stop": false, "osds": [0, 3], "num_ok_pgs": 2, "num_not_ok_pgs": 1,
            "bad_become_inactive": ["1.2"], "ok_become_degraded": ["1.0", "1.1"],
        })
    );
    // 1 and 2 share two PGs, which keep one copy each.
    let r = check_offline(&pgs, &set(&[1, 2]));
    assert_eq!(r.not_ok, pgids(&[0, 1]));
}

#[test]
fn degraded_and_inactive_pgs() {
    let pgs = vec![
        // osd.7 is down: two copies left, none to spare.
        pg(0, "active+undersized+degraded", &[5, 6], 2),
        // size 4, three copies left: one may go (more degraded).
        pg(1, "active+undersized+degraded", &[8, 9, 10], 2),
        // Full-sized but recovering: which copies are complete is not
        // known, so none may go.
        pg(2, "active+recovering+degraded", &[11, 12, 13], 2),
        // Not active: already unavailable, whatever is left.
        pg(3, "peering", &[14, 15, 16], 2),
        pg(4, "stale+active+clean", &[17, 18, 19], 1),
        // Undersized and recovering the rest.
        pg(
            5,
            "active+recovery_wait+undersized+degraded",
            &[20, 21, 22],
            1,
        ),
    ];
    let r = check_offline(&pgs, &set(&[5]));
    assert_eq!(r.bad_become_inactive, pgids(&[0]));
    assert!(r.bad_already_inactive.is_empty());
    assert!(!r.ok_to_stop());
    let r = check_offline(&pgs, &set(&[8]));
    assert!(r.ok_to_stop(), "{r:?}");
    assert_eq!(r.ok_become_more_degraded, pgids(&[1]));
    assert!(r.ok_become_degraded.is_empty());
    let r = check_offline(&pgs, &set(&[13]));
    assert_eq!(r.bad_become_inactive, pgids(&[2]));
    let r = check_offline(&pgs, &set(&[16]));
    assert_eq!(r.bad_already_inactive, pgids(&[3]));
    assert!(r.bad_become_inactive.is_empty());
    assert_eq!(r.not_ok, pgids(&[3]));
    let r = check_offline(&pgs, &set(&[19]));
    assert_eq!(r.bad_already_inactive, pgids(&[4]));
    let r = check_offline(&pgs, &set(&[22]));
    assert_eq!(r.bad_become_inactive, pgids(&[5]));
}

#[test]
fn an_osd_without_pgs_may_stop_unless_states_are_unknown() {
    let mut pgs = vec![pg(0, "active+clean", &[0, 1, 2], 2)];
    let r = check_offline(&pgs, &set(&[9]));
    assert!(r.ok_to_stop());
    assert_eq!(
        r.to_json(),
        json!({"ok_to_stop": true, "osds": [9], "num_ok_pgs": 0, "num_not_ok_pgs": 0})
    );
    pgs.push(pg(1, "unknown", &[3, 4, 5], 2));
    let r = check_offline(&pgs, &set(&[9]));
    assert!(!r.ok_to_stop());
    assert_eq!(r.unknown, pgids(&[1]));
    assert_eq!(r.to_json()["unknown_pgs"], json!(["1.1"]));
}

/// A PG whose last report still lists an OSD the current map moved it
/// off (its data may still be there only) counts that OSD in.
#[test]
fn the_reported_acting_set_counts_too() {
    let mut p = pg(0, "active+clean", &[1, 2, 3], 2);
    p.reported_acting = vec![0, 1, 2];
    let r = check_offline(&[p], &set(&[0]));
    assert_eq!(r.ok, pgids(&[0]));
}

/// Three hosts of two OSDs, a size 3 / min_size 2 pool on the default
/// rule (one copy per host), every PG reported active+clean.
fn cluster() -> (OsdMap, PgMap) {
    let mut m = OsdMap::new(uuid::Uuid::nil(), 0);
    m.epoch = 5;
    m.set_max_osd(6);
    for i in 0..6 {
        m.crush
            .add_osd(i, WEIGHT_ONE, &format!("h{}", i / 2))
            .expect("osd");
        if let Some(s) = m.osd_mut(i) {
            s.state = OsdState(OsdState::EXISTS | OsdState::UP);
            s.weight = WEIGHT_IN;
        }
    }
    m.pools.insert(1, PgPool::replicated(1, "rbd", 3, 2, 8, 0));
    let pm = report_all(&m, "active+clean");
    (m, pm)
}

/// Every PG of the map reported by its primary in `state`.
fn report_all(m: &OsdMap, state: &str) -> PgMap {
    let mut pm = PgMap::default();
    let mut by_primary: BTreeMap<OsdId, Vec<PgStatEntry>> = BTreeMap::new();
    for (pgid, ua) in m.map_pool_pgs(1).expect("maps") {
        by_primary
            .entry(ua.acting_primary)
            .or_default()
            .push(PgStatEntry {
                pgid,
                state: state.into(),
                reported_epoch: m.epoch,
                reported_seq: 1,
                up: ua.up.clone(),
                acting: ua.acting.clone(),
                up_primary: ua.up_primary,
                acting_primary: ua.acting_primary,
                ..Default::default()
            });
    }
    for id in m.existing_osds() {
        pm.apply(
            &OsdPgStats {
                osd_id: id,
                epoch: m.epoch,
                pgs: by_primary.remove(&id).unwrap_or_default(),
                osd_stat: OsdStatEntry {
                    osd: id,
                    num_pgs: 4,
                    ..Default::default()
                },
            },
            1,
        );
    }
    pm
}

fn data(r: &CmdReply) -> Value {
    serde_json::from_slice(&r.outbuf).expect("json")
}

#[test]
fn ok_to_stop_command_answers_ceph_shapes() {
    let (m, pm) = cluster();
    let acting = m
        .pg_to_up_acting_osds(PgId::new(1, 0))
        .expect("maps")
        .acting;
    let (a, b) = (acting[0], acting[1]);
    let r = cmd_ok_to_stop(
        &m,
        &pm,
        &json!({"ids": [format!("osd.{a}")]}),
        Format::Plain,
    )
    .expect("ok");
    assert_eq!(r.retval, 0, "{r:?}");
    let v = data(&r);
    assert_eq!(v["ok_to_stop"], json!(true));
    assert_eq!(v["osds"], json!([a]));
    let n = v["num_ok_pgs"].as_u64().expect("n");
    assert!(n > 0 && n <= 8, "{v}");
    assert_eq!(
        v["ok_become_degraded"].as_array().map(Vec::len),
        Some(n as usize)
    );
    assert!(
        r.outs.contains(&format!("OSD(s) {a} are ok to stop")),
        "{}",
        r.outs
    );
    // Two OSDs sharing PG 1.0 (on two hosts): unsafe, EBUSY.
    let r = cmd_ok_to_stop(&m, &pm, &json!({"ids": [a, b]}), Format::Json).expect("reply");
    assert_eq!(r.retval, EBUSY);
    let v = data(&r);
    assert_eq!(v["ok_to_stop"], json!(false));
    let bad = v["num_not_ok_pgs"].as_u64().expect("n");
    assert!(bad > 0);
    assert_eq!(
        r.outs,
        format!("unsafe to stop osd(s) at this time ({bad} PGs are or would become offline)")
    );
    // Both OSDs of one host: each PG loses one copy only.
    let r = cmd_ok_to_stop(&m, &pm, &json!({"ids": ["0", "1"]}), Format::Plain).expect("ok");
    assert_eq!(r.retval, 0, "{r:?}");
    assert_eq!(data(&r)["num_ok_pgs"], json!(8));
    // Ids that do not exist, bad ids, none.
    let e = cmd_ok_to_stop(&m, &pm, &json!({"ids": ["7"]}), Format::Plain).expect_err("enoent");
    assert_eq!((e.retval, e.msg.as_str()), (ENOENT, "osd.7 does not exist"));
    let e = cmd_ok_to_stop(&m, &pm, &json!({"ids": ["x"]}), Format::Plain).expect_err("einval");
    assert_eq!(e.retval, EINVAL);
    let e = cmd_ok_to_stop(&m, &pm, &json!({}), Format::Plain).expect_err("none");
    assert_eq!(e.retval, EINVAL);
}

#[test]
fn max_grows_the_set_under_the_first_osds_host_only_while_safe() {
    let (m, pm) = cluster();
    let r = cmd_ok_to_stop(&m, &pm, &json!({"ids": ["2"], "max": 4}), Format::Plain).expect("ok");
    assert_eq!(r.retval, 0, "{r:?}");
    // osd.3 shares host h1 with osd.2; any further OSD is on a host that
    // holds the third copy of some PG.
    assert_eq!(data(&r)["osds"], json!([2, 3]));
    // A down OSD is not offered.
    let mut m2 = m.clone();
    if let Some(s) = m2.osd_mut(3) {
        s.state = OsdState(OsdState::EXISTS);
    }
    let r = ok_to_stop(
        &m2,
        &pg_views(&m2, &report_all(&m2, "active+clean")),
        &set(&[2]),
        4,
    );
    assert_eq!(r.osds, set(&[2]));
    // max below the ids given is the ids given.
    let r = cmd_ok_to_stop(
        &m,
        &pm,
        &json!({"ids": ["0", "1"], "max": "1"}),
        Format::Plain,
    )
    .expect("ok");
    assert_eq!(data(&r)["osds"], json!([0, 1]));
}

#[test]
fn unknown_pg_states_are_eagain_with_the_report() {
    let (m, _) = cluster();
    let empty = PgMap::default();
    let r = cmd_ok_to_stop(&m, &empty, &json!({"ids": ["0"]}), Format::Plain).expect("reply");
    assert_eq!(r.retval, EAGAIN);
    assert_eq!(
        r.outs,
        "8 pgs have unknown state; cannot draw any conclusions"
    );
    assert_eq!(data(&r)["unknown_pgs"].as_array().map(Vec::len), Some(8));
    let e =
        cmd_safe_to_destroy(&m, &empty, &json!({"ids": ["0"]}), Format::Json).expect_err("unknown");
    assert_eq!(e.retval, EAGAIN);
}

#[test]
fn safe_to_destroy_needs_the_osd_empty_and_the_data_elsewhere() {
    let (mut m, pm) = cluster();
    // An OSD holding PG 1.0, and the other OSD of its host.
    let x = m
        .pg_to_up_acting_osds(PgId::new(1, 0))
        .expect("maps")
        .acting[2];
    let partner = x ^ 1;
    let ids = |v: &[OsdId]| json!({"ids": v.iter().map(|i| i.to_string()).collect::<Vec<_>>()});
    // Up, in, holding PGs: EBUSY.
    let r = cmd_safe_to_destroy(&m, &pm, &ids(&[x]), Format::Plain).expect("r");
    assert_eq!(r.retval, EBUSY);
    assert!(
        r.outs.starts_with(&format!("OSD(s) {x} have ")),
        "{}",
        r.outs
    );
    assert!(
        r.outs.ends_with(" pgs currently mapped to them."),
        "{}",
        r.outs
    );
    // Marked out: the map moves its PGs to its host's other OSD, but
    // until the PGs report their new sets it still shows in them.
    if let Some(s) = m.osd_mut(x) {
        s.weight = WEIGHT_OUT;
    }
    m.epoch += 1;
    let r = cmd_safe_to_destroy(&m, &pm, &ids(&[x]), Format::Plain).expect("r");
    assert_eq!(r.retval, EBUSY, "{r:?}");
    // Backfilled: every PG active+clean elsewhere.
    let pm = report_all(&m, "active+clean");
    let r = cmd_safe_to_destroy(&m, &pm, &ids(&[x]), Format::Plain).expect("r");
    assert_eq!(r.retval, 0, "{r:?}");
    assert_eq!(
        r.outs,
        format!("OSD(s) {x} are safe to destroy without reducing data durability.")
    );
    // A format answers the lists, and 0 even when not safe (Ceph's).
    let r = cmd_safe_to_destroy(&m, &pm, &ids(&[x, partner]), Format::Json).expect("r");
    assert_eq!(r.retval, 0);
    assert_eq!(
        data(&r),
        json!({"safe_to_destroy": [x], "active": [partner], "missing_stats": [], "stored_pgs": []})
    );
    let r = cmd_safe_to_destroy(&m, &pm, &ids(&[x, partner]), Format::Plain).expect("r");
    assert_eq!(r.retval, EBUSY);
    let want = format!(
        "OSD(s) {x} are safe to destroy without reducing data durability. OSD(s) {partner} have 8 pgs currently mapped to them."
    );
    assert_eq!(r.outs, want);
    let e = cmd_safe_to_destroy(&m, &pm, &json!({"ids": ["osd.9"]}), Format::Plain)
        .expect_err("enoent");
    assert_eq!(e.retval, ENOENT);
}

/// While not every PG is active+clean, only an up OSD whose stats show
/// no PG is safe; a down one, or one without stats, is EAGAIN; one that
/// still holds PGs is EBUSY.
#[test]
fn safe_to_destroy_while_pgs_are_not_clean() {
    let (mut m, _) = cluster();
    let pgs = vec![
        pg(0, "active+clean", &[0, 2, 4], 2),
        pg(1, "active+undersized+degraded", &[1, 3], 2),
    ];
    if let Some(s) = m.osd_mut(5) {
        s.state = OsdState(OsdState::EXISTS);
    }
    let stats = |o: OsdId| Some(if o == 1 { 3 } else { 0 });
    let r = safe_to_destroy(&m, &pgs, stats, &set(&[0, 5]));
    assert_eq!(r.active, set(&[0]));
    assert_eq!(r.affected_pgs, 1);
    assert_eq!(r.missing_stats, set(&[5]), "down: its stats are old");
    // Mapped nowhere now, but reported holding PGs.
    let pgs2 = vec![
        pg(0, "active+clean", &[0, 2, 4], 2),
        pg(1, "active+undersized+degraded", &[2, 3], 2),
    ];
    let r = safe_to_destroy(&m, &pgs2, stats, &set(&[1]));
    assert_eq!(r.stored_pgs, set(&[1]));
    let r = safe_to_destroy(&m, &pgs2, |_| Some(0), &set(&[1]));
    assert_eq!(r.safe_to_destroy, set(&[1]));
    let r = safe_to_destroy(&m, &pgs2, |_| None, &set(&[1]));
    assert_eq!(r.missing_stats, set(&[1]));
    // All clean: no stats needed.
    let clean = vec![pg(0, "active+clean", &[0, 2, 4], 2)];
    let r = safe_to_destroy(&m, &clean, |_| None, &set(&[1, 5]));
    assert_eq!(r.safe_to_destroy, set(&[1, 5]));
}

#[test]
fn both_commands_are_read_only_for_auth() {
    use kalmar_auth::Perms;
    for p in ["osd ok-to-stop", "osd safe-to-destroy"] {
        assert_eq!(crate::auth_cmds::required_perms(p), Perms::R, "{p}");
        assert!(crate::commands::PREFIXES.contains(&p));
    }
}
