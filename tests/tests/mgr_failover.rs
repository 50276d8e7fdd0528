//! Mgr failover on a running cluster: two mgrs; kill -9 the active one;
//! the standby takes over within the beacon grace plus one beacon (plus
//! the mon's tick), the OSDs reconnect to it, and their counters keep
//! flowing. Then `mgr fail` forces a switch back.

mod mgr_common;

use std::time::{Duration, Instant};

use kalmar_tests::{wait_for, Cluster};
use mgr_common::*;
use serde_json::Value;

/// The mon notices a silent mgr at its next tick (0.5 s in tests); the
/// test machine is shared, so allow one more second of scheduling.
const MON_TICK_SLACK: Duration = Duration::from_millis(1500);

fn daemons_of(c: &Cluster, mgr: &str) -> Vec<String> {
    c.admin(mgr, "status")
        .ok()
        .and_then(|s| s["daemons"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|d| d.as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_active_mgr_standby_takes_over_and_reports_flow() -> anyhow::Result<()> {
    let c = Cluster::start(opts(2)).await?;
    // vstart starts both; whichever beaconed first is active.
    let (first, x) = wait_for("an available mgr", Duration::from_secs(30), || async {
        active(&c).await.ok().flatten()
    })
    .await?;
    let second = if first == "x" { "y" } else { "x" };
    let (mgr_first, mgr_second) = (format!("mgr.{first}"), format!("mgr.{second}"));
    assert_eq!(mgr_map(&c).await?["standbys"][0]["name"], second);
    c.create_pool("rbd", 8, 3, 2).await?;
    c.wait_pgs(1, 8, &["active", "clean"], Duration::from_secs(60))
        .await?;
    enable_module(&c, x, "livecheck").await?;
    wait_for(
        "3 OSDs reporting to the first mgr",
        Duration::from_secs(30),
        || async {
            let d = daemons_of(&c, &mgr_first);
            (["osd.0", "osd.1", "osd.2"]
                .iter()
                .all(|o| d.iter().any(|x| x == o)))
            .then_some(())
        },
    )
    .await?;
    write_objects(&c, "rbd", "before", 10, 1024).await?;
    let before = wait_for(
        "writes counted by the first mgr",
        Duration::from_secs(20),
        || async {
            let r = tell(x, "livecheck report").await.ok()?;
            (op_w_sum(&r) >= 10).then_some(op_w_sum(&r))
        },
    )
    .await?;

    // kill -9 the active mgr: y is promoted within grace + one beacon.
    let killed = Instant::now();
    c.kill9(&mgr_first)?;
    let bound = Duration::from_secs(BEACON_GRACE_S + BEACON_PERIOD_S) + MON_TICK_SLACK;
    wait_for("the standby named active", bound, || async {
        (mgr_map(&c).await.ok()?["active_name"] == second).then_some(())
    })
    .await?;
    let promoted = killed.elapsed();
    // The grace runs from the last beacon, which came at most one beacon
    // period before the kill.
    assert!(
        promoted
            >= Duration::from_secs(BEACON_GRACE_S - BEACON_PERIOD_S) - Duration::from_millis(200),
        "promoted after {promoted:?}, before the grace ran out"
    );
    // Available once its server and plugins are up (one beacon later).
    let y = wait_active(&c, second, Duration::from_secs(15)).await?;
    eprintln!(
        "mgr.{second} promoted after {promoted:?}, available after {:?}",
        killed.elapsed()
    );

    // The OSDs (and the mon) reconnect and declare their counters again.
    wait_for(
        "3 OSDs and the mon reporting to the new mgr",
        Duration::from_secs(20),
        || async {
            let d = daemons_of(&c, &mgr_second);
            (["osd.0", "osd.1", "osd.2", "mon.a"]
                .iter()
                .all(|o| d.iter().any(|x| x == o)))
            .then_some(())
        },
    )
    .await?;
    let first_report = wait_for(
        "counters at the new mgr",
        Duration::from_secs(20),
        || async {
            let r = tell(y, "livecheck report").await.ok()?;
            (r["op_w"].as_object()?.len() == 3).then_some(r)
        },
    )
    .await?;
    assert!(
        op_w_sum(&first_report) >= before,
        "the OSDs' counters are cumulative"
    );
    write_objects(&c, "rbd", "after", 10, 1024).await?;
    wait_for(
        "counters keep flowing at the new mgr",
        Duration::from_secs(20),
        || async {
            let r = tell(y, "livecheck report").await.ok()?;
            (op_w_sum(&r) >= before + 10).then_some(())
        },
    )
    .await?;
    // PG stats flow too: the mgr's pg stat counts every object.
    wait_for(
        "pg stat at the new mgr",
        Duration::from_secs(20),
        || async {
            let (rv, _, out) = mgr_command(
                y,
                serde_json::json!({"prefix": "pg stat", "format": "json"}),
            )
            .await
            .ok()?;
            let v: Value = serde_json::from_slice(&out).ok()?;
            (rv == 0 && v["num_objects"] == serde_json::json!(20)).then_some(())
        },
    )
    .await?;

    // The killed mgr comes back as a standby; `mgr fail` switches to it.
    c.restart_missing().await?;
    wait_for(
        "the killed mgr back as a standby",
        Duration::from_secs(30),
        || async {
            let m = mgr_map(&c).await.ok()?;
            (m["standbys"].as_array()?.iter().any(|s| s["name"] == first)).then_some(())
        },
    )
    .await?;
    c.mon_command(serde_json::json!({"prefix": "mgr fail", "who": second}))
        .await?;
    let x2 = wait_active(&c, &first, Duration::from_secs(20)).await?;
    wait_for(
        "OSDs back at the first mgr",
        Duration::from_secs(20),
        || async {
            let r = tell(x2, "livecheck report").await.ok()?;
            (r["op_w"].as_object()?.len() == 3 && op_w_sum(&r) >= before + 10).then_some(())
        },
    )
    .await?;
    Ok(())
}
