//! The mon as a process on loopback with scripted fake OSDs and mgrs:
//! boot, failure reports, down -> out timing, mark-me-down and its ack, pg_temp from the primary
//! and from a non-primary, subscriptions from an old epoch, mgr failover,
//! restart and kill -9 with state intact.

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use kalmar_maps::PgId;
use kalmar_proto::mon::OsdPgTemp;
use serde_json::{json, Value};

const FAST: &str = r#"
mon_tick_interval = 0.1
mon_osd_min_down_reporters = 2
osd_heartbeat_grace = 1
mon_osd_report_timeout = 60
mon_osd_down_out_interval = 2
mon_mgr_beacon_grace = 1
mon_mgr_mkfs_grace = 0
osd_crush_chooseleaf_type = 0
osd_pool_default_size = 2
"#;

fn osd_entry(dump: &Value, id: i64) -> Value {
    dump["osds"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["osd"] == json!(id)))
        .cloned()
        .unwrap_or(Value::Null)
}

async fn boot_all(mon: &Mon, n: usize) -> Vec<FakeOsd> {
    let mut osds = Vec::new();
    for _ in 0..n {
        osds.push(FakeOsd::create(mon.addr).await);
    }
    for o in &osds {
        o.boot().await;
    }
    for o in &osds {
        let id = o.id;
        o.wait_map("all osds up", |m| {
            (0..n as i32).all(|i| m.is_up(i)) && m.is_in(id)
        })
        .await;
    }
    osds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_failure_reports_and_down_out_timing() {
    let mon = Mon::start(FAST).await;
    let osds = boot_all(&mon, 3).await;
    // Registering the same uuid again gives the same id.
    assert_eq!(register(mon.addr, osds[1].uuid).await, 1);
    let dump = mon.json(json!({"prefix": "osd dump"})).await;
    for o in &osds {
        let e = osd_entry(&dump, o.id.into());
        assert_eq!(
            (e["up"].clone(), e["in"].clone()),
            (json!(1), json!(1)),
            "{e}"
        );
        assert!(e["up_from"].as_u64().expect("up_from") >= 2);
    }
    // One reporter is not enough.
    osds[0].report_failure(2, 5000).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        osds[0].map().expect("map").is_up(2),
        "a single reporter must not mark osd.2 down"
    );
    // A second reporter, already failing longer than the grace: down.
    osds[1].report_failure(2, 5000).await;
    let t_down = Instant::now();
    let m = osds[0].wait_map("osd.2 down", |m| !m.is_up(2)).await;
    assert!(m.is_in(2), "down is not out");
    let down_at = m.osd(2).expect("slot").info.down_at;
    assert_eq!(down_at, m.epoch);
    // Out after mon_osd_down_out_interval (2 s), not before.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(osds[0].map().expect("map").is_in(2), "out too early");
    osds[0].wait_map("osd.2 out", |m| !m.is_in(2)).await;
    let waited = t_down.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "marked out after {waited:?}"
    );
    let health = mon
        .json(json!({"prefix": "health", "detail": "detail"}))
        .await;
    assert_eq!(health["status"], json!("HEALTH_WARN"));
    assert!(health["checks"]["OSD_DOWN"]["detail"][0]["message"]
        .as_str()
        .is_some_and(|s| s.starts_with("osd.2 ")));
    // The OSD boots again: up, and back in (it was auto-marked out).
    osds[2].boot().await;
    osds[0]
        .wait_map("osd.2 back up and in", |m| m.is_up(2) && m.is_in(2))
        .await;
    // noout keeps a down OSD in.
    mon.ok(json!({"prefix": "osd set", "key": "noout"})).await;
    assert_eq!(
        mon.ok(json!({"prefix": "osd down", "ids": ["1"]})).await,
        "marked down osd.1. "
    );
    osds[0].wait_map("osd.1 down", |m| !m.is_up(1)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        osds[0].map().expect("map").is_in(1),
        "noout must keep osd.1 in"
    );
    let status = mon.json(json!({"prefix": "status"})).await;
    assert_eq!(status["osdmap"]["num_up_osds"], json!(2));
    assert_eq!(
        status["health"]["checks"]["OSDMAP_FLAGS"]["summary"]["message"],
        json!("noout flag(s) set")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_temp_from_primary_only() {
    let mon = Mon::start(FAST).await;
    let osds = boot_all(&mon, 4).await;
    assert_eq!(
        mon.ok(json!({"prefix": "osd pool create", "pool": "p", "pg_num": 8, "size": 2}))
            .await,
        "pool 'p' created"
    );
    let map = osds[0]
        .wait_map("the pool", |m| m.pool_by_name("p").is_ok())
        .await;
    let pg = PgId::new(1, 0);
    let acting = map.pg_to_up_acting_osds(pg).expect("mapping");
    let primary = acting.acting_primary;
    let not_primary = (0..4).find(|o| *o != primary).expect("another osd");
    let want: Vec<i32> = (0..4).filter(|o| !acting.up.contains(o)).collect();
    let request = |from: i32, osds: Vec<i32>, epoch: u32| OsdPgTemp {
        osd_id: from,
        map_epoch: epoch,
        pg_temp: [(pg, osds)].into(),
    };
    let e0 = mon.epoch().await;
    osds[not_primary as usize]
        .client
        .send(&request(not_primary, want.clone(), map.epoch))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        mon.epoch().await,
        e0,
        "a non-primary's pg_temp must not produce an epoch"
    );
    let up_thru_before = map.osd(primary).expect("slot").info.up_thru;
    osds[primary as usize]
        .client
        .send(&request(primary, want.clone(), map.epoch))
        .await
        .expect("send");
    let m = osds[0]
        .wait_map("pg_temp set", |m| m.pg_temp.contains_key(&pg))
        .await;
    assert_eq!(m.pg_temp.get(&pg), Some(&want));
    assert_eq!(m.epoch as u64, e0 + 1);
    let up_thru = m.osd(primary).expect("slot").info.up_thru;
    assert!(
        up_thru > up_thru_before && up_thru == m.epoch,
        "up_thru {up_thru_before} -> {up_thru}"
    );
    let dump = mon.json(json!({"prefix": "osd dump"})).await;
    assert_eq!(dump["pg_temp"], json!([{"pgid": "1.0", "osds": want}]));
    let mapped = mon.json(json!({"prefix": "pg map", "pgid": "1.0"})).await;
    assert_eq!(mapped["acting"], json!(want));
    assert_eq!(mapped["up"], json!(acting.up));
    // The new primary clears it with an empty list.
    let new_primary = want[0];
    osds[new_primary as usize]
        .client
        .send(&request(new_primary, vec![], m.epoch))
        .await
        .expect("send");
    osds[0]
        .wait_map("pg_temp removed", |m| m.pg_temp.is_empty())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_from_an_old_epoch() {
    let mon = Mon::start(&format!("{FAST}\nosd_map_message_max = 5\n")).await;
    let osds = boot_all(&mon, 1).await;
    let base = osds[0].map().expect("map");
    // A subscriber that has `base` and asks for what follows.
    for i in 0..3 {
        let key = ["noscrub", "nodeep-scrub", "norebalance"][i];
        mon.ok(json!({"prefix": "osd set", "key": key})).await;
    }
    let last = mon.epoch().await as u32;
    let late = FakeOsd::connect(mon.addr, 0, osds[0].uuid).await;
    *late.map.lock() = Some(base.clone());
    late.client
        .subscribe("osdmap", base.epoch + 1, false)
        .await
        .expect("subscribe");
    let got = late.wait_map("caught up", |m| m.epoch == last).await;
    assert_eq!(
        got,
        osds[0].wait_map("same epoch", |m| m.epoch == last).await
    );
    let msgs = late.received.lock().clone();
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].maps.is_empty(), "close enough: incrementals only");
    assert_eq!(
        msgs[0].incrementals.keys().copied().collect::<Vec<_>>(),
        (base.epoch + 1..=last).collect::<Vec<_>>()
    );
    // More than osd_map_message_max behind: a full map instead.
    for i in 0..6 {
        let key = ["noscrub", "nodeep-scrub", "norebalance"][i % 3];
        let prefix = if i < 3 { "osd unset" } else { "osd set" };
        mon.ok(json!({"prefix": prefix, "key": key})).await;
    }
    let last = mon.epoch().await as u32;
    let far = FakeOsd::connect(mon.addr, 0, osds[0].uuid).await;
    *far.map.lock() = Some(base.clone());
    far.client
        .subscribe("osdmap", base.epoch + 1, true)
        .await
        .expect("subscribe");
    far.wait_map("caught up from far behind", |m| m.epoch == last)
        .await;
    let msgs = far.received.lock().clone();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].maps.keys().copied().collect::<Vec<_>>(), vec![last]);
    assert!(msgs[0].incrementals.is_empty());
    // onetime: no further maps.
    mon.ok(json!({"prefix": "osd unset", "key": "noscrub"}))
        .await;
    osds[0]
        .wait_map("the subscriber moves on", |m| m.epoch == last + 1)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        far.received.lock().len(),
        1,
        "a onetime subscription gets one message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mgr_failover_and_mgr_fail() {
    let mon = Mon::start(FAST).await;
    let stat = mon.json(json!({"prefix": "mgr stat"})).await;
    assert_eq!(stat["available"], json!(false));
    let health = mon.json(json!({"prefix": "health"})).await;
    assert!(health["checks"]["MGR_DOWN"].is_object(), "{health}");
    let period = Duration::from_millis(200);
    let mut x = FakeMgr::start(mon.addr, "x", 101, period).await;
    let stat = wait_for("x active", WAIT, || async {
        let s = mon.json(json!({"prefix": "mgr stat"})).await;
        (s["active_name"] == json!("x") && s["available"] == json!(true)).then_some(s)
    })
    .await;
    assert_eq!(stat["num_standby"], json!(0));
    let _y = FakeMgr::start(mon.addr, "y", 102, period).await;
    wait_for("y standby", WAIT, || async {
        let s = mon.json(json!({"prefix": "mgr stat"})).await;
        (s["num_standby"] == json!(1)).then_some(())
    })
    .await;
    // x stops beaconing: y takes over after the grace (1 s).
    x.pause();
    let t0 = Instant::now();
    wait_for("y active", WAIT, || async {
        let s = mon.json(json!({"prefix": "mgr stat"})).await;
        (s["active_name"] == json!("y")).then_some(())
    })
    .await;
    assert!(
        t0.elapsed() >= Duration::from_millis(800),
        "failover before the grace: {:?}",
        t0.elapsed()
    );
    let dump = mon.json(json!({"prefix": "mgr dump"})).await;
    assert_eq!(dump["active_name"], json!("y"));
    // x comes back as a standby; `mgr fail` hands over to it.
    x.resume(period);
    wait_for("x standby", WAIT, || async {
        let s = mon.json(json!({"prefix": "mgr stat"})).await;
        (s["num_standby"] == json!(1)).then_some(())
    })
    .await;
    mon.ok(json!({"prefix": "mgr fail"})).await;
    let s = mon.json(json!({"prefix": "mgr stat"})).await;
    assert_eq!(s["active_name"], json!("x"));
    let (rv, outs, _) = mon
        .cmd(json!({"prefix": "mgr fail", "who": "nosuch"}))
        .await;
    assert_eq!(rv, -2, "{outs}");
    // A promoted mgr is unavailable until its next beacon says otherwise.
    assert_eq!(s["available"], json!(false));
    wait_for("x available", WAIT, || async {
        let st = mon.json(json!({"prefix": "status"})).await;
        (st["mgrmap"]["available"] == json!(true)).then_some(())
    })
    .await;
}

async fn state_of(mon: &Mon) -> (u64, Value, Value, Value) {
    let dump = mon.json(json!({"prefix": "osd dump"})).await;
    let pools = mon
        .json(json!({"prefix": "osd pool ls", "detail": "detail"}))
        .await;
    let mgr = mon.json(json!({"prefix": "mgr dump"})).await;
    (
        dump["epoch"].as_u64().expect("epoch"),
        dump["osds"].clone(),
        pools,
        mgr["active_name"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_and_kill9_keep_every_epoch() {
    let mut mon = Mon::start(&format!("{FAST}\nmon_min_osdmap_epochs = 5\n")).await;
    let osds = boot_all(&mon, 2).await;
    let _mgr = FakeMgr::start(mon.addr, "x", 7, Duration::from_millis(200)).await;
    wait_for("mgr active", WAIT, || async {
        let s = mon.json(json!({"prefix": "mgr stat"})).await;
        (s["active_name"] == json!("x")).then_some(())
    })
    .await;
    mon.ok(json!({"prefix": "osd pool create", "pool": "rbd", "pg_num": 16}))
        .await;
    mon.ok(json!({"prefix": "osd out", "ids": ["1"]})).await;
    let before = state_of(&mon).await;
    mon.stop();
    mon.restart().await;
    assert_eq!(state_of(&mon).await, before, "clean restart");
    // kill -9 right after an acknowledged change: it must survive.
    assert_eq!(
        mon.ok(json!({"prefix": "osd pool set", "pool": "rbd", "var": "pg_num", "val": "32"}))
            .await,
        "set pool 1 pg_num to 32"
    );
    let acked = state_of(&mon).await;
    mon.kill9();
    mon.restart().await;
    let after = state_of(&mon).await;
    assert_eq!(after, acked, "kill -9 lost an acknowledged epoch");
    assert_eq!(after.2[0]["pg_num"], json!(32));
    // Make enough epochs to trim, then check the range and a fresh
    // subscriber after another kill -9.
    for i in 0..12 {
        let prefix = if i % 2 == 0 { "osd set" } else { "osd unset" };
        mon.ok(json!({"prefix": prefix, "key": "noscrub"})).await;
    }
    let last = mon.epoch().await;
    mon.kill9();
    mon.restart().await;
    assert_eq!(mon.epoch().await, last);
    let st = kalmar_common::admin_socket::request(
        &mon.admin_socket(),
        &json!({"prefix": "status"}),
        WAIT,
    )
    .expect("admin socket");
    let first = st["osdmap_first_committed"].as_u64().expect("first");
    assert_eq!(st["osdmap_last_committed"].as_u64(), Some(last));
    assert!(
        first > 1 && last - first + 1 >= 5,
        "kept epochs {first}..{last}"
    );
    // The OSDs reconnect to the restarted mon on their own, and a fresh
    // subscriber from epoch 1 (trimmed) gets the newest full map.
    osds[0]
        .wait_map("osd.0 follows the restarted mon", |m| {
            m.epoch as u64 == last
        })
        .await;
    let fresh = FakeOsd::connect(mon.addr, 0, osds[0].uuid).await;
    fresh
        .client
        .subscribe("osdmap", 1, true)
        .await
        .expect("subscribe");
    let m = fresh.wait_map("full map", |m| m.epoch as u64 == last).await;
    assert_eq!(m.pool_by_name("rbd").expect("pool").pg_num, 32);
    let msgs = fresh.received.lock().clone();
    assert_eq!(msgs[0].oldest as u64, first);
    // The admin socket's perf counters name the epoch.
    let perf = kalmar_common::admin_socket::request(
        &mon.admin_socket(),
        &json!({"prefix": "perf dump"}),
        WAIT,
    )
    .expect("perf dump");
    assert_eq!(perf["cluster"]["osd_epoch"].as_u64(), Some(last));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_out_timer_survives_a_mon_restart() {
    // Down -> out after 10 s. The mon restarts 6 s into the window: the
    // OSD goes out about 4 s later, not 10 s after the restart.
    let conf = FAST.replace(
        "mon_osd_down_out_interval = 2",
        "mon_osd_down_out_interval = 10",
    );
    let mut mon = Mon::start(&conf).await;
    let _osds = boot_all(&mon, 3).await;
    mon.ok(json!({"prefix": "osd down", "ids": ["2"]})).await;
    let downed = Instant::now();
    let dump = mon.json(json!({"prefix": "osd dump"})).await;
    assert_eq!(osd_entry(&dump, 2)["up"], json!(0));
    tokio::time::sleep(Duration::from_secs(6)).await;
    mon.stop();
    let stopped = Instant::now();
    mon.restart().await;
    wait_for("osd.2 out", WAIT, || async {
        let dump = mon.json(json!({"prefix": "osd dump"})).await;
        (osd_entry(&dump, 2)["in"] == json!(0)).then_some(())
    })
    .await;
    let since_down = downed.elapsed();
    let since_stop = stopped.elapsed();
    assert!(
        since_down >= Duration::from_secs(10),
        "out after {since_down:?}"
    );
    // A window restarted by the mon would need 10 s from the restart.
    assert!(
        since_stop < Duration::from_secs(9),
        "the window restarted with the mon: out {since_stop:?} after the stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_me_down_is_acked_after_the_commit() {
    let mon = Mon::start(FAST).await;
    let osds = boot_all(&mon, 3).await;
    let up = |dump: &Value, id: i64| osd_entry(dump, id)["up"] == json!(1);
    // Another instance's request is ignored, and acked all the same.
    let stale = kalmar_maps::osd::OsdAddrs::all(kalmar_maps::EntityAddr::new(
        "127.0.0.1:7999".parse().expect("addr"),
        9,
    ));
    osds[2].mark_me_down(stale).await;
    let dump = mon.json(json!({"prefix": "osd dump"})).await;
    assert!(up(&dump, 2), "a stale instance's request marked osd.2 down");
    // The instance that is up: down, and the ack comes after the commit,
    // so the mon's map shows it down by the time the OSD hears back.
    let epoch = mon.epoch().await;
    osds[2].mark_me_down(osds[2].addrs()).await;
    let dump = mon.json(json!({"prefix": "osd dump"})).await;
    assert!(!up(&dump, 2), "osd.2 is still up after the ack");
    assert!(up(&dump, 0) && up(&dump, 1));
    assert_eq!(osd_entry(&dump, 2)["in"], json!(1), "down is not out");
    assert!(mon.epoch().await > epoch);
    // Already down: acked, nothing changes.
    let epoch = mon.epoch().await;
    osds[2].mark_me_down(osds[2].addrs()).await;
    assert_eq!(mon.epoch().await, epoch);
    assert!(mon.log_tail().contains("mark-me-down ignored"));
}
