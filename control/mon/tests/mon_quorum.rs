//! Three mon processes on loopback forming one quorum (openraft), with
//! scripted OSDs that reach them through the list of mons: the leader is
//! killed with SIGKILL while OSDs beacon and clients change maps; all mons
//! restart; one mon's store is wiped and it rejoins. Every map epoch any
//! OSD received is checked to have one content.

mod harness;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::*;
use kalmar_maps::OsdMap;
use serde_json::{json, Value};
use uuid::Uuid;

/// Default consensus timers (`mon_election_timeout` 1 s); OSD timers short
/// so a new leader that forgot its grace would mark the OSDs down.
const QFAST: &str = r#"
mon_tick_interval = 0.1
mon_osd_min_down_reporters = 2
osd_heartbeat_grace = 1
mon_osd_report_timeout = 4
mon_osd_down_out_interval = 600
mon_mgr_mkfs_grace = 0
osd_crush_chooseleaf_type = 0
osd_pool_default_size = 2
"#;

/// The bound this suite holds a leader failover to (issue 12: < 5 s with
/// the default timers).
const FAILOVER_BOUND: Duration = Duration::from_secs(5);

fn has_pool(m: &OsdMap, name: &str) -> bool {
    m.pool_by_name(name).is_ok()
}

async fn epoch(q: &MonQuorum) -> u32 {
    q.json(json!({"prefix": "osd dump"})).await["epoch"]
        .as_u64()
        .expect("epoch") as u32
}

/// Registers and boots `n` OSDs through the whole mon list.
async fn boot_osds(q: &MonQuorum, n: usize) -> Vec<FakeOsd> {
    let mut osds = Vec::new();
    for _ in 0..n {
        let uuid = Uuid::new_v4();
        let id = register_any(&q.addrs, uuid).await;
        osds.push(FakeOsd::connect_any(&q.addrs, id, uuid).await);
    }
    for o in &osds {
        o.boot().await;
    }
    for o in &osds {
        o.wait_map("all osds up", |m| (0..n as i32).all(|i| m.is_up(i)))
            .await;
    }
    osds
}

/// Every epoch each OSD went through: one content per epoch across all of
/// them, and no epoch skipped by incrementals.
fn check_histories(osds: &[FakeOsd]) -> usize {
    let mut seen = BTreeMap::new();
    for o in osds {
        let h = o.history.lock().clone();
        check_one_content_per_epoch(&mut seen, &h);
        for w in h.windows(2) {
            assert!(
                w[1].epoch > w[0].epoch,
                "osd.{} went from epoch {} to {}",
                o.id,
                w[0].epoch,
                w[1].epoch
            );
        }
    }
    seen.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill9_fails_over_and_nothing_is_lost() {
    let mut q = MonQuorum::start(3, QFAST).await;
    let leader = q.wait_quorum(3, WAIT).await;

    // The quorum in Ceph's shapes, from a follower too.
    let follower = (leader + 1) % 3;
    let qs = q.quorum_status(follower).await.expect("quorum_status");
    assert_eq!(qs["quorum_names"], json!(["a", "b", "c"]), "{qs}");
    assert_eq!(qs["quorum_leader_name"], json!(q.names[leader]));
    assert!(qs["election_epoch"].as_u64() >= Some(1), "{qs}");
    assert_eq!(qs["monmap"]["mons"].as_array().map(Vec::len), Some(3));
    let stat = q.json(json!({"prefix": "mon stat"})).await;
    assert_eq!(stat["num_mons"], 3, "{stat}");
    let dump = q.json(json!({"prefix": "mon dump"})).await;
    assert_eq!(dump["mons"][1]["name"], "b", "{dump}");
    let (rv, _, text) = command_any(&q.addrs, json!({"prefix": "status"}))
        .await
        .expect("status");
    assert_eq!(rv, 0);
    let text = String::from_utf8_lossy(&text).to_string();
    assert!(text.contains("mon: 3 daemons, quorum a,b,c"), "{text}");

    let osds = Arc::new(boot_osds(&q, 3).await);
    // OSDs beacon every 0.5 s through whichever mon they are on.
    let beacons = {
        let osds = osds.clone();
        tokio::spawn(async move {
            loop {
                for o in osds.iter() {
                    o.beacon().await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    q.ok(json!({"prefix": "osd pool create", "pool": "p0", "pg_num": 8}))
        .await;

    // A client keeps changing the map through the list of mons.
    let writer = {
        let mons = q.addrs.clone();
        tokio::spawn(async move {
            let mut done = Vec::new();
            for i in 1..=30 {
                let pool = format!("w{i}");
                let r = command_any(
                    &mons,
                    json!({"prefix": "osd pool create", "pool": pool, "pg_num": 4}),
                )
                .await;
                // EEXIST: a retried create that had committed.
                if let Ok((rv, _, _)) = r {
                    if rv == 0 || rv == -17 {
                        done.push(pool);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            done
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;

    let t0 = Instant::now();
    q.kill9(leader);
    let new_leader = q.wait_quorum(2, Duration::from_secs(20)).await;
    let failover = t0.elapsed();
    eprintln!("leader failover (kill -9 to a new leader answering quorum_status): {failover:?}");
    assert_ne!(new_leader, leader);
    assert!(
        failover < FAILOVER_BOUND,
        "failover took {failover:?} (bound {FAILOVER_BOUND:?})"
    );

    // Health names the dead mon.
    let h = q
        .json(json!({"prefix": "health", "detail": "detail"}))
        .await;
    let down = &h["checks"]["MON_DOWN"];
    assert!(
        down["summary"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("1/3 mons down")),
        "{h}"
    );
    assert!(down["detail"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains(&format!("mon.{}", q.names[leader]))));

    // Every change the writer was told about is in the map, and the OSDs
    // follow the new leader's epochs.
    let done = writer.await.expect("writer");
    assert!(
        done.len() >= 20,
        "only {} of 30 creates succeeded",
        done.len()
    );
    q.ok(json!({"prefix": "osd pool create", "pool": "after", "pg_num": 8}))
        .await;
    let e = epoch(&q).await;
    for o in osds.iter() {
        let m = o
            .wait_map("the osd follows the new leader", |m| {
                m.epoch >= e && has_pool(m, "after")
            })
            .await;
        for p in &done {
            assert!(has_pool(&m, p), "pool {p} was acknowledged but is missing");
        }
    }

    // The new leader gave every OSD a fresh grace: after more than
    // mon_osd_report_timeout (4 s) all are still up.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let dump = q.json(json!({"prefix": "osd dump"})).await;
    for i in 0..3 {
        let o = dump["osds"]
            .as_array()
            .and_then(|a| a.iter().find(|o| o["osd"] == json!(i)))
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(
            o["up"], 1,
            "osd.{i} was marked down after the takeover: {dump}"
        );
    }

    // The killed mon comes back and catches up; it serves maps itself.
    q.spawn(leader);
    q.wait_quorum(3, WAIT).await;
    let e = epoch(&q).await;
    let watcher = FakeOsd::connect(q.addrs[leader], 0, Uuid::nil()).await;
    watcher
        .client
        .subscribe("osdmap", 1, false)
        .await
        .expect("subscribe");
    watcher
        .wait_map("the restarted mon serves the newest epoch", |m| {
            m.epoch >= e
        })
        .await;
    beacons.abort();
    let _ = beacons.await;

    let mut all: Vec<FakeOsd> = Arc::try_unwrap(osds).ok().expect("sole owner");
    all.push(watcher);
    let epochs = check_histories(&all);
    eprintln!(
        "checked {epochs} distinct epochs across {} observers",
        all.len()
    );
    assert!(epochs > 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_mons_restart_and_a_wiped_mon_rejoins() {
    let mut q = MonQuorum::start(3, QFAST).await;
    q.ok(json!({"prefix": "osd pool create", "pool": "p1", "pg_num": 8}))
        .await;
    let e1 = epoch(&q).await;

    for i in 0..3 {
        q.kill9(i);
    }
    for i in 0..3 {
        q.spawn(i);
    }
    q.wait_quorum(3, WAIT).await;
    let dump = q.json(json!({"prefix": "osd dump"})).await;
    assert!(dump["epoch"].as_u64() >= Some(u64::from(e1)), "{dump}");
    assert!(
        dump["pools"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["pool_name"] == "p1")),
        "{dump}"
    );

    // mon.c loses its store: a fresh mkfs with the same members and fsid,
    // then it catches up from the others (log or snapshot).
    q.kill9(2);
    std::fs::remove_dir_all(q.data(2)).expect("wipe mon.c");
    q.ok(json!({"prefix": "osd pool create", "pool": "p2", "pg_num": 8}))
        .await;
    q.mkfs(2);
    q.spawn(2);
    q.wait_quorum(3, WAIT).await;
    q.ok(json!({"prefix": "osd pool create", "pool": "p3", "pg_num": 8}))
        .await;
    let e3 = epoch(&q).await;
    let watcher = FakeOsd::connect(q.addrs[2], 0, Uuid::nil()).await;
    watcher
        .client
        .subscribe("osdmap", 1, false)
        .await
        .expect("subscribe");
    let m = watcher
        .wait_map("the wiped mon serves every pool", |m| {
            m.epoch >= e3 && has_pool(m, "p3")
        })
        .await;
    assert!(has_pool(&m, "p1") && has_pool(&m, "p2"));
    // Its epochs are the others': same content for the same epoch.
    let other = FakeOsd::connect(q.addrs[0], 1, Uuid::nil()).await;
    other
        .client
        .subscribe("osdmap", 1, false)
        .await
        .expect("subscribe");
    let m0 = other
        .wait_map("mon.a serves the same epoch", |x| x.epoch == m.epoch)
        .await;
    assert_eq!(m0, m);

    // mon.b loses its store and is rebuilt the recommended way: `mkfs
    // --join` its rank (no members, no vote until the leader's log
    // arrives).
    q.kill9(1);
    std::fs::remove_dir_all(q.data(1)).expect("wipe mon.b");
    q.ok(json!({"prefix": "osd pool create", "pool": "p4", "pg_num": 8}))
        .await;
    q.mkfs_join(1, 1);
    q.spawn(1);
    q.wait_quorum(3, WAIT).await;
    let e4 = epoch(&q).await;
    let m1 = map_at(&q, 1, e4).await;
    assert!(has_pool(&m1, "p4") && has_pool(&m1, "p1"));
    let m0 = map_at(&q, 0, m1.epoch).await;
    if m0.epoch == m1.epoch {
        assert_eq!(m0, m1);
    }
}

/// The newest map mon `i` itself serves (a subscription to it alone).
async fn map_at(q: &MonQuorum, i: usize, min_epoch: u32) -> OsdMap {
    let w = FakeOsd::connect(q.addrs[i], 0, Uuid::nil()).await;
    w.client
        .subscribe("osdmap", 1, false)
        .await
        .expect("subscribe");
    w.wait_map("the mon's newest epoch", |m| m.epoch >= min_epoch)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_steps_down_and_a_minority_cannot_commit() {
    let mut q = MonQuorum::start(3, QFAST).await;
    q.ok(json!({"prefix": "osd pool create", "pool": "p1", "pg_num": 8}))
        .await;
    let leader = q.wait_quorum(3, WAIT).await;

    // The leader is cut off (frozen): the other two elect and commit.
    q.signal(leader, libc::SIGSTOP);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let mons: Vec<_> = others.iter().map(|&i| q.addrs[i]).collect();
    let (rv, outs, _) = command_any(
        &mons,
        json!({"prefix": "osd pool create", "pool": "p2", "pg_num": 8}),
    )
    .await
    .expect("command");
    assert_eq!(rv, 0, "the majority commits without the old leader: {outs}");
    let majority = map_at(&q, others[0], 1).await;
    assert!(has_pool(&majority, "p2"));

    // Healed: the old leader steps down and takes the majority's epochs;
    // its epoch N is the majority's epoch N.
    q.signal(leader, libc::SIGCONT);
    q.wait_quorum(3, WAIT).await;
    let healed = map_at(&q, leader, majority.epoch).await;
    if healed.epoch == majority.epoch {
        assert_eq!(healed, majority, "one content per epoch after healing");
    }
    assert!(has_pool(&healed, "p2"));

    // A minority alone cannot commit: two mons down, the third refuses.
    let survivor = others[0];
    let before = map_at(&q, survivor, 1).await.epoch;
    for &i in &[leader, others[1]] {
        q.kill9(i);
    }
    let r = command_at(
        q.addrs[survivor],
        json!({"prefix": "osd pool create", "pool": "lonely", "pg_num": 8}),
    )
    .await;
    assert!(
        !matches!(r, Ok((0, _, _))),
        "a lone mon committed a map change: {r:?}"
    );
    let after = map_at(&q, survivor, 1).await;
    assert_eq!(after.epoch, before, "the minority made an epoch");
    assert!(!has_pool(&after, "lonely"));

    // The majority returns and the cluster goes on.
    q.spawn(leader);
    q.spawn(others[1]);
    q.wait_quorum(3, WAIT).await;
    q.ok(json!({"prefix": "osd pool create", "pool": "p3", "pg_num": 8}))
        .await;
    // The lone mon's proposal was answered EAGAIN ("not confirmed"); if
    // the lone mon led, the entry sat in its log and a leader of the
    // healed majority may commit it (Raft keeps a leader's uncommitted
    // entries that a majority can still accept), in one epoch like any
    // other. What must hold: nothing committed while it was alone (above),
    // and every mon agrees on every epoch (below).
    let m = map_at(&q, survivor, before + 1).await;
    assert!(has_pool(&m, "p3"));
    for i in 0..3 {
        let mi = map_at(&q, i, m.epoch).await;
        if mi.epoch == m.epoch {
            assert_eq!(mi, m, "mon {i} disagrees at epoch {}", m.epoch);
        }
    }
}

/// A seeded generator for the failure schedule (`KALMAR_TEST_SEED`
/// replays one; a failing seed is printed).
fn next_rand(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_mon_failures_keep_one_content_per_epoch() {
    let seed: u64 = std::env::var("KALMAR_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    eprintln!("seed {seed} (KALMAR_TEST_SEED={seed} replays it)");
    let mut rng = seed;
    let mut q = MonQuorum::start(3, QFAST).await;
    let osds = Arc::new(boot_osds(&q, 2).await);
    // Map changes all the time, through whichever mons answer.
    let writer = {
        let mons = q.addrs.clone();
        tokio::spawn(async move {
            let mut ok = 0u32;
            for i in 0..400u32 {
                let prefix = if i % 2 == 0 { "osd set" } else { "osd unset" };
                if let Ok((0, _, _)) =
                    command_any(&mons, json!({"prefix": prefix, "key": "noscrub"})).await
                {
                    ok += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            ok
        })
    };
    let mut down: Option<usize> = None;
    for round in 0..8 {
        match down.take() {
            Some(i) => {
                eprintln!("seed {seed} round {round}: restart mon.{}", q.names[i]);
                q.spawn(i);
            }
            None => {
                // Half the time the leader, else any mon.
                let i = if next_rand(&mut rng).is_multiple_of(2) {
                    q.wait_quorum(2, WAIT).await
                } else {
                    (next_rand(&mut rng) % 3) as usize
                };
                eprintln!("seed {seed} round {round}: kill -9 mon.{}", q.names[i]);
                q.kill9(i);
                down = Some(i);
            }
        }
        let pause = 500 + next_rand(&mut rng) % 2500;
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    if let Some(i) = down {
        q.spawn(i);
    }
    q.wait_quorum(3, WAIT).await;
    writer.abort();
    let _ = writer.await;
    let last = epoch(&q).await;
    for o in osds.iter() {
        o.wait_map("the osd reaches the last epoch", |m| m.epoch >= last)
            .await;
    }
    let epochs = check_histories(&osds);
    // Every mon serves the same content for the last epoch.
    let m0 = map_at(&q, 0, last).await;
    for i in 1..3 {
        let mi = map_at(&q, i, last).await;
        if mi.epoch == m0.epoch {
            assert_eq!(mi, m0, "seed {seed}: mons disagree on epoch {}", m0.epoch);
        }
    }
    eprintln!("seed {seed}: {epochs} distinct epochs, one content each");
    assert!(epochs > 10, "seed {seed}: only {epochs} epochs");
}

/// A command's errno and status through any running mon.
async fn try_cmd(q: &MonQuorum, cmd: Value) -> (i32, String) {
    let mons: Vec<_> = q.running().iter().map(|&i| q.addrs[i]).collect();
    let (rv, outs, _) = command_any(&mons, cmd).await.expect("mon command");
    (rv, outs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mon_add_joins_as_a_voter_and_mon_rm_removes() {
    let mut q = MonQuorum::start(3, QFAST).await;
    // An OSD that knows only the first three mons.
    let osds = boot_osds(&q, 1).await;
    let osd = &osds[0];
    let monmap_epoch = |qs: &Value| qs["monmap"]["epoch"].as_u64().expect("monmap epoch");
    let e0 = monmap_epoch(&q.quorum_status(0).await.expect("quorum_status"));
    assert_eq!(e0, 1, "mkfs makes monmap epoch 1");

    let d = q.new_slot("d");
    let outs = q
        .ok(json!({"prefix": "mon add", "name": "d", "addr": q.addrs[d].to_string()}))
        .await;
    assert!(outs.contains("rank 3"), "{outs}");
    // Adding it again is a no-op; another address for the name is refused.
    assert_eq!(
        try_cmd(
            &q,
            json!({"prefix": "mon add", "name": "d", "addr": q.addrs[d].to_string()})
        )
        .await
        .0,
        0
    );
    let (rv, outs) = try_cmd(
        &q,
        json!({"prefix": "mon add", "name": "d", "addr": "127.0.0.1:1"}),
    )
    .await;
    assert_eq!(rv, -17, "{outs}");
    q.mkfs_join(d, 3);
    q.spawn(d);
    // It catches up, is promoted, and counts in a quorum of four.
    let qs = wait_for("mon.d in quorum", WAIT, || async {
        let qs = q.quorum_status(0).await?;
        let names = qs["quorum_names"].as_array()?.clone();
        (names.len() == 4 && names.contains(&json!("d"))).then_some(qs)
    })
    .await;
    assert_eq!(qs["monmap"]["mons"].as_array().map(Vec::len), Some(4));
    assert_eq!(monmap_epoch(&qs), 2, "one mon add is one epoch: {qs}");
    // Every mon shows the same epoch (the promotion made none).
    for i in q.running() {
        let qs = wait_for("every mon at monmap epoch 2", WAIT, || async {
            let qs = q.quorum_status(i).await?;
            (qs["monmap"]["epoch"] == 2).then_some(qs)
        })
        .await;
        assert_eq!(qs["monmap"]["mons"].as_array().map(Vec::len), Some(4));
    }
    let dump = q.json(json!({"prefix": "mon dump"})).await;
    assert_eq!(dump["epoch"], 2, "{dump}");
    // The OSD learns the fourth mon from the monmap.
    wait_for("the osd knows mon.d", WAIT, || async {
        osd.client.mons().contains(&q.addrs[d]).then_some(())
    })
    .await;
    q.ok(json!({"prefix": "osd pool create", "pool": "p4", "pg_num": 8}))
        .await;
    let e = epoch(&q).await;
    let m = map_at(&q, d, e).await;
    assert!(has_pool(&m, "p4"), "mon.d serves the committed maps");

    // With four voters, losing one (the leader) keeps a majority of three.
    let leader = q.wait_quorum(4, WAIT).await;
    q.kill9(leader);
    q.wait_quorum(3, Duration::from_secs(20)).await;
    q.ok(json!({"prefix": "osd pool create", "pool": "p5", "pg_num": 8}))
        .await;
    // The dead mon is removed: three members, all in quorum, no MON_DOWN.
    let gone = q.names[leader].clone();
    q.ok(json!({"prefix": "mon rm", "name": gone})).await;
    let qs = wait_for("three members", WAIT, || async {
        let i = q.running()[0];
        let qs = q.quorum_status(i).await?;
        (qs["monmap"]["mons"].as_array()?.len() == 3 && qs["quorum"].as_array()?.len() == 3)
            .then_some(qs)
    })
    .await;
    assert!(
        !qs["quorum_names"]
            .as_array()
            .is_some_and(|a| a.contains(&json!(gone))),
        "{qs}"
    );
    assert_eq!(monmap_epoch(&qs), 3, "mon rm is the next epoch: {qs}");
    let h = q.json(json!({"prefix": "health"})).await;
    assert!(h["checks"].get("MON_DOWN").is_none(), "{h}");
    wait_for("the osd forgets the removed mon", WAIT, || async {
        (!osd.client.mons().contains(&q.addrs[leader])).then_some(())
    })
    .await;

    // One of the three left dies: removing a live one would leave one of
    // two in quorum, so it is refused; removing the dead one is not asked.
    let leader = q.wait_quorum(3, WAIT).await;
    let victim = *q
        .running()
        .iter()
        .find(|&&i| i != leader)
        .expect("a follower");
    q.kill9(victim);
    wait_for("the leader sees two in quorum", WAIT, || async {
        let qs = q.quorum_status(leader).await?;
        (qs["quorum"].as_array()?.len() == 2).then_some(())
    })
    .await;
    let (rv, outs) = wait_for("a refused mon rm", WAIT, || async {
        let (rv, outs) = try_cmd(&q, json!({"prefix": "mon rm", "name": q.names[leader]})).await;
        (rv != -11).then_some((rv, outs))
    })
    .await;
    assert_eq!(rv, -22, "{outs}");
    assert!(outs.contains("majority"), "{outs}");
    // An absent mon: removed already, as Ceph answers.
    let (rv, outs) = try_cmd(&q, json!({"prefix": "mon rm", "name": "nosuch"})).await;
    assert_eq!(rv, 0, "{outs}");
    assert!(outs.contains("does not exist"), "{outs}");
    q.spawn(victim);
    q.wait_quorum(3, WAIT).await;
    q.ok(json!({"prefix": "osd pool create", "pool": "p6", "pg_num": 8}))
        .await;
    osd.wait_map("p6 reaches the osd", |m| has_pool(m, "p6"))
        .await;
}

/// Failure detection across a leader change: a failure report made to the
/// old leader is lost with it, the reporters repeat theirs (as OSDs do
/// while a failure lasts) and the target is marked down once; no other OSD
/// is marked down for the election's silence; a pg_temp request commits
/// with the new leader; the active mgr (beaconing through a follower)
/// stays active past its grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_reports_pg_temp_and_mgr_beacons_across_a_leader_change() {
    let conf = format!("{QFAST}mon_mgr_beacon_grace = 3\n");
    let mut q = MonQuorum::start(3, &conf).await;
    let leader = q.wait_quorum(3, WAIT).await;
    let follower = (leader + 1) % 3;
    let osds = Arc::new(boot_osds(&q, 4).await);
    // Every OSD beacons, the failed one too: only the reports mark it.
    let beacons = {
        let osds = osds.clone();
        tokio::spawn(async move {
            loop {
                for o in osds.iter() {
                    o.beacon().await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let _mgr = FakeMgr::start(q.addrs[follower], "x", 101, Duration::from_millis(300)).await;
    wait_for("mgr.x active", WAIT, || async {
        let s = q.json(json!({"prefix": "mgr stat"})).await;
        (s["active_name"] == json!("x") && s["available"] == json!(true)).then_some(())
    })
    .await;
    q.ok(json!({"prefix": "osd pool create", "pool": "p", "pg_num": 8, "size": 2}))
        .await;

    // One reporter tells the old leader, which dies before the second.
    osds[0].report_failure(3, 5000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    q.kill9(leader);
    q.wait_quorum(2, Duration::from_secs(20)).await;
    let reports = {
        let osds = osds.clone();
        tokio::spawn(async move {
            loop {
                osds[0].report_failure(3, 5000).await;
                osds[1].report_failure(3, 5000).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    osds[2].wait_map("osd.3 marked down", |m| !m.is_up(3)).await;
    // Reports keep coming for a while: no second marking, no flapping.
    tokio::time::sleep(Duration::from_secs(2)).await;
    reports.abort();
    let _ = reports.await;

    // pg_temp from a primary that is up, with the new leader.
    let map = osds[0].map().expect("a map");
    let (pg, acting) = (0..8)
        .map(|s| kalmar_maps::PgId::new(1, s))
        .map(|pg| (pg, map.pg_to_up_acting_osds(pg).expect("mapping")))
        .find(|(_, a)| a.acting_primary != 3 && a.acting_primary >= 0 && a.up.len() == 2)
        .expect("a pg with a live primary");
    let other = (0..3)
        .find(|o| !acting.up.contains(o))
        .expect("an up osd outside the pg");
    let want = vec![other, acting.acting_primary];
    osds[acting.acting_primary as usize]
        .client
        .send(&kalmar_proto::mon::OsdPgTemp {
            osd_id: acting.acting_primary,
            map_epoch: map.epoch,
            pg_temp: [(pg, want.clone())].into(),
        })
        .await
        .expect("send pg_temp");
    osds[0]
        .wait_map("pg_temp set by the new leader", |m| {
            m.pg_temp.get(&pg) == Some(&want)
        })
        .await;

    // The mgr beaconed through the election: still active, past its grace.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let s = q.json(json!({"prefix": "mgr stat"})).await;
    assert_eq!(s["active_name"], json!("x"), "{s}");
    assert_eq!(s["available"], json!(true), "{s}");
    beacons.abort();
    let _ = beacons.await;

    // Over every epoch the OSDs saw: osd.3 went down once, the others
    // never after they were all up.
    let all: Vec<FakeOsd> = Arc::try_unwrap(osds).ok().expect("sole owner");
    for o in &all {
        let h = o.history.lock().clone();
        let downs = h
            .windows(2)
            .filter(|w| w[0].is_up(3) && !w[1].is_up(3))
            .count();
        assert!(
            downs <= 1,
            "osd.{} saw osd.3 marked down {downs} times",
            o.id
        );
        let from = h
            .iter()
            .position(|m| (0..4).all(|i| m.is_up(i)))
            .unwrap_or(h.len());
        for m in &h[from..] {
            for i in 0..3 {
                assert!(m.is_up(i), "osd.{i} down at epoch {}", m.epoch);
            }
        }
    }
    let epochs = check_histories(&all);
    eprintln!("{epochs} epochs checked");
}

/// `mon rm` of a live mon: it notices it is no longer in the monmap and
/// exits with status 0; started again later, it stops again at once; the
/// others keep their quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_mon_stops() {
    let mut q = MonQuorum::start(3, QFAST).await;
    q.ok(json!({"prefix": "mon rm", "name": "c"})).await;
    let code = q.wait_exit(2, Duration::from_secs(15)).await;
    assert_eq!(code, Some(0), "mon.c exits cleanly once removed");
    let log = std::fs::read_to_string(q.dir.path().join("mon.c.log")).unwrap_or_default();
    assert!(
        log.contains("it was removed; shutting down"),
        "{}",
        q.log_tail(2)
    );
    let qs = q.quorum_status(0).await.expect("quorum_status");
    assert_eq!(qs["monmap"]["epoch"], 2, "{qs}");
    assert_eq!(qs["monmap"]["mons"].as_array().map(Vec::len), Some(2));
    // Removing it again succeeds (Ceph's answer), so a retried `mon rm`
    // whose first attempt the removed leader never answered reports success.
    q.ok(json!({"prefix": "mon rm", "name": "c"})).await;
    // Restarted from its old store, it learns from a peer that it was
    // removed and stops again.
    q.spawn(2);
    let code = q.wait_exit(2, Duration::from_secs(15)).await;
    assert_eq!(code, Some(0), "a removed mon started again stops");
    q.wait_quorum(2, WAIT).await;
    q.ok(json!({"prefix": "osd pool create", "pool": "after", "pg_num": 8}))
        .await;
}

/// A mon rebuilt from an empty store with `--initial-members` does not
/// vote before the leader's log reaches it: with the mon that has the
/// newest log down, the wiped mon and a stale one cannot elect the stale
/// one (which would lose committed epochs). Once the up-to-date mon is
/// back, the wiped one catches up to the same monmap and osdmap epochs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_mon_does_not_vote_before_it_caught_up() {
    let mut q = MonQuorum::start(3, QFAST).await;
    // mon.b misses what mon.a and mon.c commit.
    q.kill9(1);
    q.wait_quorum(2, WAIT).await;
    q.ok(json!({"prefix": "osd pool create", "pool": "only_ac", "pg_num": 8}))
        .await;
    let e = epoch(&q).await;
    // mon.c loses its store and is rebuilt with the initial members;
    // mon.a (the only full log) goes down.
    q.kill9(2);
    std::fs::remove_dir_all(q.data(2)).expect("wipe mon.c");
    q.mkfs(2);
    q.kill9(0);
    q.spawn(1);
    q.spawn(2);
    // Several election timeouts: no leader may form of b and c.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for i in [1, 2] {
        if let Some(qs) = q.quorum_status(i).await {
            assert!(
                qs["quorum_leader_name"].as_str().unwrap_or("").is_empty(),
                "mon.{} reports a leader without mon.a: {qs}",
                q.names[i]
            );
        }
    }
    // mon.a returns: one history, with the pool only a and c had.
    q.spawn(0);
    q.wait_quorum(3, Duration::from_secs(20)).await;
    let m = map_at(&q, 2, e).await;
    assert!(
        has_pool(&m, "only_ac"),
        "the wiped mon has the committed pool"
    );
    let m0 = map_at(&q, 0, m.epoch).await;
    if m0.epoch == m.epoch {
        assert_eq!(m0, m, "one content per epoch");
    }
    let qs = wait_for("the wiped mon at monmap epoch 1", WAIT, || async {
        let qs = q.quorum_status(2).await?;
        (qs["monmap"]["epoch"] == 1 && qs["monmap"]["mons"].as_array()?.len() == 3).then_some(qs)
    })
    .await;
    assert_eq!(qs["quorum_names"].as_array().map(Vec::len), Some(3), "{qs}");
}

/// `mon add` rewrites nobody's conf: a client that was given only mon.a
/// and mon.b learns mon.c, mon.d and mon.e from the monmap it subscribed
/// to, and once a and b are down it hunts across those (c, d, e keep a
/// majority of five) and still receives new epochs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_follows_the_monmap_past_its_conf() {
    let mut q = MonQuorum::start(3, QFAST).await;
    let watcher = FakeOsd::connect_any(&[q.addrs[0], q.addrs[1]], 0, Uuid::nil()).await;
    watcher
        .client
        .subscribe("osdmap", 1, false)
        .await
        .expect("subscribe");
    for (name, rank) in [("d", 3u64), ("e", 4)] {
        let i = q.new_slot(name);
        q.ok(json!({"prefix": "mon add", "name": name, "addr": q.addrs[i].to_string()}))
            .await;
        q.mkfs_join(i, rank);
        q.spawn(i);
        q.wait_quorum(rank as usize + 1, Duration::from_secs(30))
            .await;
    }
    let qs = q.quorum_status(0).await.expect("quorum_status");
    assert_eq!(qs["monmap"]["epoch"], 3, "two mon adds: {qs}");
    wait_for("the client knows all five mons", WAIT, || async {
        let known = watcher.client.mons();
        q.addrs.iter().all(|a| known.contains(a)).then_some(())
    })
    .await;
    q.kill9(0);
    q.kill9(1);
    q.wait_quorum(3, Duration::from_secs(20)).await;
    q.ok(json!({"prefix": "osd pool create", "pool": "later", "pg_num": 8}))
        .await;
    let m = watcher
        .wait_map("the client gets the new epoch from c, d or e", |m| {
            has_pool(m, "later")
        })
        .await;
    assert!(m.epoch >= 2);
}
