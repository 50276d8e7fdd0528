use std::sync::Arc;
use std::time::Instant;

use kalmar_maps::{MgrMap, OsdMap};
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::errors::{ENOENT, EPERM};
use crate::options::MonOptions;

fn state() -> MonState {
    let mut map = OsdMap::new(Uuid::new_v4(), 1);
    map.epoch = 1;
    let opts = Arc::new(MonOptions {
        osd_crush_chooseleaf_type: 0,
        ..cephx()
    });
    MonState::new("a", opts, map, MgrMap::default(), Instant::now(), 1)
}

/// Options with auth required everywhere (no AUTH_INSECURE).
fn cephx() -> MonOptions {
    use kalmar_auth::AuthMode::Cephx;
    MonOptions {
        auth_cluster_required: Cephx,
        auth_service_required: Cephx,
        auth_client_required: Cephx,
        ..MonOptions::default()
    }
}

fn run_cmd(st: &mut MonState, cmd: Value) -> CmdReply {
    let r = execute(st, &cmd, Instant::now(), 2);
    if let Some((map, _)) = st.osd.take_pending(3).expect("valid") {
        st.osd.committed(map);
    }
    if let Some(m) = st.mgr.take_pending() {
        st.mgr.committed(m);
    }
    r
}

fn text(r: &CmdReply) -> String {
    String::from_utf8(r.outbuf.clone()).expect("utf8")
}

#[test]
fn pool_and_osd_commands() {
    let mut st = state();
    for _ in 0..3 {
        let r = run_cmd(
            &mut st,
            json!({"prefix": "osd new", "uuid": Uuid::new_v4().to_string()}),
        );
        assert_eq!(r.retval, 0, "{r:?}");
    }
    let r = run_cmd(
        &mut st,
        json!({"prefix": "osd pool create", "pool": "rbd", "pg_num": 16, "size": "2"}),
    );
    assert_eq!((r.retval, r.outs.as_str()), (0, "pool 'rbd' created"));
    let r = run_cmd(
        &mut st,
        json!({"prefix": "osd pool set", "pool": "rbd", "var": "size", "val": "3"}),
    );
    assert_eq!((r.retval, r.outs.as_str()), (0, "set pool 1 size to 3"));
    let r = run_cmd(&mut st, json!({"prefix": "osd pool ls", "format": "json"}));
    assert_eq!(
        serde_json::from_slice::<Value>(&r.outbuf).expect("json"),
        json!(["rbd"])
    );
    let r = run_cmd(
        &mut st,
        json!({"prefix": "osd pool ls", "detail": "detail"}),
    );
    assert!(
        text(&r).starts_with("pool 1 'rbd' replicated size 3 min_size 1"),
        "{}",
        text(&r)
    );
    let r = run_cmd(&mut st, json!({"prefix": "osd out", "ids": ["1", "osd.2"]}));
    assert_eq!(
        r.outs, "osd.1 is already out. osd.2 is already out. ",
        "new OSDs start out"
    );
    let r = run_cmd(&mut st, json!({"prefix": "osd in", "ids": ["1"]}));
    assert_eq!(r.outs, "marked in osd.1. ");
    let r = run_cmd(&mut st, json!({"prefix": "osd out", "ids": ["1"]}));
    assert_eq!(r.outs, "marked out osd.1. ");
    let r = run_cmd(&mut st, json!({"prefix": "osd out", "ids": ["7"]}));
    assert_eq!(r.retval, ENOENT, "{r:?}");
    let r = run_cmd(&mut st, json!({"prefix": "osd out", "ids": ["x"]}));
    assert_eq!(r.retval, crate::errors::EINVAL);
    let r = run_cmd(&mut st, json!({"prefix": "osd dump", "format": "json"}));
    let v: Value = serde_json::from_slice(&r.outbuf).expect("json");
    assert_eq!(v["pools"][0]["pool_name"], json!("rbd"));
    assert_eq!(v["osds"].as_array().map(Vec::len), Some(3));
    let r = run_cmd(
        &mut st,
        json!({"prefix": "osd map", "pool": "rbd", "object": "foo", "format": "json"}),
    );
    let v: Value = serde_json::from_slice(&r.outbuf).expect("json");
    assert!(v["pgid"].as_str().expect("pgid").starts_with("1."), "{v}");
    let r = run_cmd(&mut st, json!({"prefix": "pg map", "pgid": "1.0"}));
    assert!(text(&r).contains("pg 1.0 (1.0) -> up"), "{}", text(&r));
    let r = run_cmd(&mut st, json!({"prefix": "pg map", "pgid": "1.99"}));
    assert_eq!(r.retval, ENOENT);
    let r = run_cmd(
        &mut st,
        json!({"prefix": "osd map", "pool": "nope", "object": "foo"}),
    );
    assert_eq!(r.retval, ENOENT);
    let r = run_cmd(&mut st, json!({"prefix": "osd pool rm", "pool": "rbd"}));
    assert_eq!(r.retval, EPERM);
    let r = run_cmd(
        &mut st,
        json!({"prefix": "osd pool rm", "pool": "rbd", "pool2": "rbd", "yes_i_really_really_mean_it": true}),
    );
    assert_eq!((r.retval, r.outs.as_str()), (0, "pool 'rbd' removed"));
    // Removing it again: unknown pool, ENOENT (not Ceph's silent 0).
    let r = run_cmd(
        &mut st,
        json!({"prefix": "osd pool rm", "pool": "rbd", "pool2": "rbd", "yes_i_really_really_mean_it": true}),
    );
    assert_eq!(
        (r.retval, r.outs.as_str()),
        (ENOENT, "pool 'rbd' does not exist")
    );
}

#[test]
fn reads_status_health_and_errors() {
    let mut st = state();
    let r = run_cmd(&mut st, json!({"prefix": "status", "format": "json"}));
    let v: Value = serde_json::from_slice(&r.outbuf).expect("json");
    assert_eq!(v["pgmap"]["num_pgs"], json!(0));
    assert_eq!(v["osdmap"]["num_osds"], json!(0));
    let r = run_cmd(&mut st, json!({"prefix": "status"}));
    assert!(text(&r).contains("  cluster:\n"));
    let r = run_cmd(&mut st, json!({"prefix": "health"}));
    assert_eq!(text(&r), "HEALTH_OK\n");
    // The same mon with auth off (any option `none`) warns and names it.
    let mut map = OsdMap::new(Uuid::new_v4(), 1);
    map.epoch = 1;
    let insecure = Arc::new(MonOptions {
        auth_service_required: kalmar_auth::AuthMode::None,
        ..cephx()
    });
    let mut off = MonState::new("a", insecure, map, MgrMap::default(), Instant::now(), 1);
    let r = run_cmd(&mut off, json!({"prefix": "health", "detail": "detail"}));
    assert!(
        text(&r).starts_with("HEALTH_WARN")
            && text(&r).contains("[WRN] AUTH_INSECURE: auth is off: auth_service_required = none"),
        "{}",
        text(&r)
    );
    run_cmd(&mut st, json!({"prefix": "osd set", "key": "noout"}));
    let r = run_cmd(&mut st, json!({"prefix": "health", "detail": "detail"}));
    assert!(
        text(&r).contains("[WRN] OSDMAP_FLAGS: noout flag(s) set"),
        "{}",
        text(&r)
    );
    let r = run_cmd(&mut st, json!({"prefix": "mgr stat"}));
    let v: Value = serde_json::from_slice(&r.outbuf).expect("json");
    assert_eq!(v["available"], json!(false));
    assert_eq!(v["active_name"], json!(""));
    for bad in [
        json!({"prefix": "osd frobnicate"}),
        json!({"nope": 1}),
        json!({"prefix": "status", "format": "xml"}),
        json!({"prefix": "osd pool create"}),
        json!({"prefix": "osd pool create", "pool": "x", "pg_num": "many"}),
        json!({"prefix": "osd pool set", "pool": "x", "var": "size"}),
        json!({"prefix": "mgr fail"}),
    ] {
        let r = run_cmd(&mut st, bad.clone());
        assert!(r.retval < 0, "{bad} -> {r:?}");
        assert!(!r.outs.is_empty(), "{bad}: an error says what is wrong");
    }
}

#[test]
fn per_osd_flags() {
    let mut st = state();
    for _ in 0..2 {
        let r = run_cmd(
            &mut st,
            json!({"prefix": "osd new", "uuid": Uuid::new_v4().to_string()}),
        );
        assert_eq!(r.retval, 0, "{r:?}");
    }
    let r = run_cmd(
        &mut st,
        json!({"prefix": "osd add-noin", "ids": ["1", "osd.0"]}),
    );
    assert_eq!((r.retval, r.outs.as_str()), (0, "set osd(s) 1,0 to noin"));
    let noin = |st: &MonState, id| {
        st.osd
            .map()
            .osd(id)
            .is_some_and(|s| s.state.has(kalmar_maps::osd::OsdState::NOIN))
    };
    assert!(noin(&st, 0) && noin(&st, 1));
    let r = run_cmd(&mut st, json!({"prefix": "osd rm-noin", "ids": ["0"]}));
    assert_eq!((r.retval, r.outs.as_str()), (0, "unset osd(s) 0 from noin"));
    assert!(!noin(&st, 0) && noin(&st, 1));
    let r = run_cmd(&mut st, json!({"prefix": "osd add-noout", "ids": ["7"]}));
    assert_eq!(r.retval, ENOENT);
    let r = run_cmd(&mut st, json!({"prefix": "osd add-noin"}));
    assert_ne!(r.retval, 0);
}

#[test]
fn pool_quotas_and_health() {
    let mut st = state();
    for _ in 0..3 {
        run_cmd(
            &mut st,
            json!({"prefix": "osd new", "uuid": Uuid::new_v4().to_string()}),
        );
    }
    let r = run_cmd(
        &mut st,
        json!({"prefix": "osd pool create", "pool": "rbd", "pg_num": 4, "size": "3"}),
    );
    assert_eq!(r.retval, 0, "{r:?}");
    let r = run_cmd(
        &mut st,
        json!({"prefix": "osd pool set-quota", "pool": "rbd", "field": "max_objects", "val": "0"}),
    );
    assert_eq!(
        (r.retval, r.outs.as_str()),
        (0, "set-quota max_objects = 0 for pool rbd")
    );
    let health = |st: &MonState| {
        st.health(Instant::now())
            .checks
            .iter()
            .find(|c| c.code == "POOL_FULL")
            .map(|c| c.detail.clone())
    };
    // No quota, nothing reported: not full.
    assert_eq!(health(&st), None);
    run_cmd(
        &mut st,
        json!({"prefix": "osd pool set-quota", "pool": "rbd", "field": "max_objects", "val": 10}),
    );
    // Twelve objects reported in one PG: at quota, POOL_FULL.
    let mut stats = kalmar_proto::pgstats::OsdPgStats {
        osd_id: 0,
        epoch: st.osd.map().epoch,
        ..Default::default()
    };
    stats.pgs.push(kalmar_proto::pgstats::PgStatEntry {
        pgid: kalmar_maps::PgId::new(1, 0),
        state: "active+clean".into(),
        num_objects: 12,
        ..Default::default()
    });
    st.pgmap.apply(&stats, 1);
    assert_eq!(
        health(&st),
        Some(vec!["pool 'rbd' is full (running out of quota)".to_string()])
    );
    let r = run_cmd(
        &mut st,
        json!({"prefix": "osd pool get-quota", "pool": "rbd", "format": "json"}),
    );
    let v: Value = serde_json::from_slice(&r.outbuf).expect("json");
    assert_eq!(v["quota_max_objects"], 10);
    assert_eq!(v["quota_max_bytes"], 0);
    let r = run_cmd(
        &mut st,
        json!({"prefix": "osd pool get-quota", "pool": "rbd"}),
    );
    assert_eq!(
        text(&r),
        "quotas for pool 'rbd':\n  max objects: 10 objects\n  max bytes  : N/A\n"
    );
    for bad in [
        json!({"prefix": "osd pool set-quota", "pool": "rbd", "field": "max_pies", "val": "1"}),
        json!({"prefix": "osd pool set-quota", "pool": "rbd", "field": "max_bytes", "val": "-1"}),
        json!({"prefix": "osd pool set-quota", "pool": "nope", "field": "max_bytes", "val": "1"}),
    ] {
        assert_ne!(run_cmd(&mut st, bad.clone()).retval, 0, "{bad}");
    }
}

#[test]
fn mgr_health_checks_in_health_and_status() {
    use kalmar_proto::mon::{HealthSeverity, MgrHealthCheck, MonMgrReport};
    let mut map = OsdMap::new(Uuid::new_v4(), 1);
    map.epoch = 1;
    let mgrmap = MgrMap {
        epoch: 2,
        active_gid: 5,
        active_name: "x".into(),
        available: true,
        ..Default::default()
    };
    let mut st = MonState::new(
        "a",
        Arc::new(MonOptions::default()),
        map,
        mgrmap.clone(),
        Instant::now(),
        1,
    );
    let report = MonMgrReport {
        gid: 5,
        health_checks: vec![MgrHealthCheck {
            code: "MGR_MODULE_ERROR".into(),
            severity: HealthSeverity::Error,
            summary: "Module 'broken' has failed: no module".into(),
            count: 1,
            detail: vec!["Module 'broken' has failed: no module".into()],
        }],
    };
    st.mgrstat
        .report(&report, &mgrmap, Instant::now())
        .expect("from the active mgr");
    let r = run_cmd(
        &mut st,
        json!({"prefix": "health", "detail": "detail", "format": "json"}),
    );
    let v: Value = serde_json::from_slice(&r.outbuf).expect("json");
    assert_eq!(v["status"], "HEALTH_ERR");
    assert_eq!(
        v["checks"]["MGR_MODULE_ERROR"]["detail"][0]["message"],
        "Module 'broken' has failed: no module"
    );
    let r = run_cmd(&mut st, json!({"prefix": "status"}));
    assert!(
        text(&r).contains("Module 'broken' has failed: no module"),
        "{}",
        text(&r)
    );
    // An empty report clears it.
    st.mgrstat
        .report(
            &MonMgrReport {
                gid: 5,
                health_checks: vec![],
            },
            &mgrmap,
            Instant::now(),
        )
        .expect("clear");
    let r = run_cmd(&mut st, json!({"prefix": "health", "format": "json"}));
    let v: Value = serde_json::from_slice(&r.outbuf).expect("json");
    assert!(v["checks"].get("MGR_MODULE_ERROR").is_none(), "{v}");
}

#[test]
fn scrub_errors_in_health_and_status() {
    use kalmar_maps::crush::map::WEIGHT_ONE;
    use kalmar_maps::osd::{OsdState, WEIGHT_IN};
    use kalmar_maps::pool::PgPool;
    // Three up OSDs and a pool, so the report is not stale.
    let mut map = OsdMap::new(Uuid::new_v4(), 1);
    map.epoch = 9;
    map.set_max_osd(3);
    for i in 0..3 {
        map.crush
            .add_osd(i, WEIGHT_ONE, &format!("h{i}"))
            .expect("add");
        let s = map.osd_mut(i).expect("slot");
        s.state = OsdState(OsdState::EXISTS | OsdState::UP);
        s.weight = WEIGHT_IN;
    }
    map.pools
        .insert(1, PgPool::replicated(1, "rbd", 3, 2, 2, 0));
    let mut st = MonState::new(
        "a",
        Arc::new(MonOptions::default()),
        map,
        MgrMap::default(),
        Instant::now(),
        1,
    );
    let report = |state: &str, seq: u64, errors: u64| kalmar_proto::pgstats::OsdPgStats {
        osd_id: 0,
        epoch: 9,
        pgs: vec![
            kalmar_proto::pgstats::PgStatEntry {
                pgid: kalmar_maps::PgId::new(1, 0),
                state: "active+clean".into(),
                reported_epoch: 9,
                reported_seq: seq,
                ..Default::default()
            },
            kalmar_proto::pgstats::PgStatEntry {
                pgid: kalmar_maps::PgId::new(1, 1),
                state: state.into(),
                reported_epoch: 9,
                reported_seq: seq,
                acting: vec![0, 2, 1],
                num_scrub_errors: errors,
                num_deep_scrub_errors: errors,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    st.pgmap
        .apply(&report("active+clean+inconsistent", 1, 2), 1);
    let r = run_cmd(
        &mut st,
        json!({"prefix": "health", "detail": "detail", "format": "json"}),
    );
    let v: Value = serde_json::from_slice(&r.outbuf).expect("json");
    assert_eq!(v["status"], "HEALTH_ERR");
    let errs = &v["checks"]["OSD_SCRUB_ERRORS"];
    assert_eq!(errs["severity"], "HEALTH_ERR");
    assert_eq!(errs["summary"]["message"], "2 scrub errors");
    let dmg = &v["checks"]["PG_DAMAGED"];
    assert_eq!(dmg["severity"], "HEALTH_ERR");
    assert_eq!(
        dmg["summary"]["message"],
        "Possible data damage: 1 pg inconsistent"
    );
    assert_eq!(
        dmg["detail"],
        json!([{"message": "pg 1.1 is active+clean+inconsistent, acting [0,2,1]"}])
    );
    let r = run_cmd(&mut st, json!({"prefix": "health"}));
    assert_eq!(
        text(&r).trim_end(),
        "HEALTH_ERR 2 scrub errors; Possible data damage: 1 pg inconsistent"
    );
    let status = text(&run_cmd(&mut st, json!({"prefix": "status"})));
    assert!(
        status.contains("health: HEALTH_ERR\n")
            && status.contains("            2 scrub errors\n")
            && status.contains("            Possible data damage: 1 pg inconsistent\n"),
        "{status}"
    );
    // Repaired: the next report clears both.
    st.pgmap.apply(&report("active+clean", 2, 0), 2);
    let r = run_cmd(&mut st, json!({"prefix": "health", "format": "json"}));
    let v: Value = serde_json::from_slice(&r.outbuf).expect("json");
    assert!(
        v["checks"].get("OSD_SCRUB_ERRORS").is_none() && v["checks"].get("PG_DAMAGED").is_none(),
        "{v}"
    );
}
