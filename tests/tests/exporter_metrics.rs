//! Both Prometheus endpoints that Ceph's dashboards and alert rules read,
//! on a live cluster: the per-host `kalmar exporter` (Ceph's ceph-exporter,
//! daemon perf counters) and the mgr's prometheus module (cluster, mon,
//! mgr, OSD, PG and pool metrics). Every name of Ceph 20.2's dashboards
//! and alerts that Kalmar has a counterpart for is served, with the labels
//! the queries match on and values that follow the cluster (writes, reads,
//! an OSD killed).

mod mgr_common;

use std::time::Duration;

use kalmar_tests::{wait_for, Cluster};
use mgr_common::scrape::*;
use mgr_common::*;

/// Bound on each wait.
const WAIT: Duration = Duration::from_secs(30);
const OSDS: u32 = 3;

/// Names the dashboards read from the per-host exporter (port 9926).
const EXPORTER_NAMES: [&str; 12] = [
    "ceph_osd_numpg",
    "ceph_osd_op_r",
    "ceph_osd_op_r_latency_count",
    "ceph_osd_op_r_latency_sum",
    "ceph_osd_op_r_out_bytes",
    "ceph_osd_op_w",
    "ceph_osd_op_w_in_bytes",
    "ceph_osd_op_w_latency_count",
    "ceph_osd_op_w_latency_sum",
    "ceph_osd_recovery_ops",
    "ceph_osd_stat_bytes",
    "ceph_osd_stat_bytes_used",
];

/// Exporter names with no Kalmar counterpart (see the README): Kalmar's
/// store is not BlueStore, so there is no BlueFS WAL and no onode cache.
const NOT_APPLICABLE: [&str; 3] = [
    "ceph_bluefs_wal_total_bytes",
    "ceph_bluestore_onode_hits",
    "ceph_bluestore_onode_misses",
];

/// Names the dashboards and alerts read from the mgr module (port 9283).
const MGR_NAMES: [&str; 55] = [
    "ceph_cluster_total_bytes",
    "ceph_cluster_total_used_bytes",
    "ceph_health_detail",
    "ceph_health_status",
    "ceph_healthcheck_slow_ops",
    "ceph_mgr_metadata",
    "ceph_mgr_status",
    "ceph_mon_metadata",
    "ceph_mon_quorum_status",
    "ceph_disk_occupation",
    "ceph_disk_occupation_human",
    "ceph_osd_apply_latency_ms",
    "ceph_osd_commit_latency_ms",
    "ceph_osd_in",
    "ceph_osd_metadata",
    "ceph_osd_up",
    "ceph_pg_active",
    "ceph_pg_backfill",
    "ceph_pg_backfill_toofull",
    "ceph_pg_clean",
    "ceph_pg_creating",
    "ceph_pg_deep",
    "ceph_pg_degraded",
    "ceph_pg_down",
    "ceph_pg_forced_backfill",
    "ceph_pg_forced_recovery",
    "ceph_pg_incomplete",
    "ceph_pg_inconsistent",
    "ceph_pg_peered",
    "ceph_pg_peering",
    "ceph_pg_recovering",
    "ceph_pg_remapped",
    "ceph_pg_repair",
    "ceph_pg_scrubbing",
    "ceph_pg_stale",
    "ceph_pg_total",
    "ceph_pg_undersized",
    "ceph_pg_wait_backfill",
    "ceph_unclean_pgs",
    "ceph_pool_bytes_used",
    "ceph_pool_compress_bytes_used",
    "ceph_pool_compress_under_bytes",
    "ceph_pool_max_avail",
    "ceph_pool_metadata",
    "ceph_pool_objects",
    "ceph_pool_percent_used",
    "ceph_pool_quota_bytes",
    "ceph_pool_quota_objects",
    "ceph_pool_rd",
    "ceph_pool_rd_bytes",
    "ceph_pool_stored",
    "ceph_pool_stored_raw",
    "ceph_pool_wr",
    "ceph_pool_wr_bytes",
    // A family with no samples while no daemon reports a health metric.
    "ceph_daemon_health_metrics",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_and_mgr_module_serve_the_dashboard_names() -> anyhow::Result<()> {
    let mut o = opts(1);
    o.osds = OSDS;
    let c = Cluster::start(o).await?;
    let r = run(&c).await;
    if r.is_err() {
        kalmar_tests::print_logs(c.dir());
    }
    r
}

async fn run(c: &Cluster) -> anyhow::Result<()> {
    let addr = wait_active(c, "x", WAIT).await?;
    c.create_pool("rbd", 8, 3, 2).await?;
    c.wait_pgs(1, 8, &["active", "clean"], Duration::from_secs(60))
        .await?;
    let exporter = Exporter::start(c)?;
    enable_module(c, addr, "prometheus").await?;
    let mgr_url = wait_for("prometheus in mgr services", WAIT, || async {
        mgr_map(c).await.ok()?["services"]["prometheus"]
            .as_str()
            .map(|u| format!("{u}metrics"))
    })
    .await?;

    write_objects(c, "rbd", "obj", 20, 64 * 1024).await?;
    let rados = c.client().await?;
    let io = rados.ioctx("rbd")?;
    for i in 0..20 {
        io.read(&format!("obj{i}"), 0, 0).await?;
    }

    // The exporter: every OSD's counters, equal to its admin socket.
    let text = wait_for(
        "exporter counters equal to the admin sockets",
        WAIT,
        || async {
            let text = http_get(&exporter.url).ok()?;
            for id in 0..OSDS {
                let dump = c.admin(&format!("osd.{id}"), "perf dump").ok()?;
                for (name, asok) in [
                    ("ceph_osd_op_w", &dump["osd"]["op_w"]),
                    ("ceph_osd_op_r", &dump["osd"]["op_r"]),
                    (
                        "ceph_osd_op_w_latency_count",
                        &dump["osd"]["op_w_latency"]["avgcount"],
                    ),
                ] {
                    if value(&text, name, &osd_label(id)) != asok.as_f64() {
                        return None;
                    }
                }
            }
            Some(text)
        },
    )
    .await?;
    for name in EXPORTER_NAMES {
        for id in 0..OSDS {
            assert!(
                value(&text, name, &osd_label(id)).is_some(),
                "{name} for osd.{id} missing from the exporter"
            );
        }
    }
    for name in NOT_APPLICABLE {
        assert!(samples(&text, name).is_empty(), "{name}");
    }
    let total = |name: &str| samples(&text, name).iter().map(|(_, v)| v).sum::<f64>();
    // 20 writes of 64 KiB to a size-3 pool: counted once, by the primary.
    assert_eq!(total("ceph_osd_op_w"), 20.0, "{text}");
    assert_eq!(total("ceph_osd_op_w_in_bytes"), 20.0 * 65536.0);
    assert_eq!(total("ceph_osd_op_r"), 20.0);
    assert_eq!(total("ceph_osd_op_r_out_bytes"), 20.0 * 65536.0);
    assert!(total("ceph_osd_op_w_latency_sum") > 0.0);
    // Every OSD holds all 8 PGs of the size-3 pool on 3 OSDs.
    assert_eq!(total("ceph_osd_numpg"), 24.0);
    for id in 0..OSDS {
        let l = osd_label(id);
        assert!(value(&text, "ceph_osd_stat_bytes", &l).is_some_and(|b| b >= 1e9));
        assert!(value(&text, "ceph_osd_stat_bytes_used", &l).is_some_and(|b| b > 0.0));
    }
    // loadavg (1-minute load ×100, as Ceph) follows the host's.
    wait_for("osd.0's loadavg near the host's", WAIT, || async {
        let proc_load: f64 = std::fs::read_to_string("/proc/loadavg")
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let asok = c.admin("osd.0", "perf dump").ok()?["osd"]["loadavg"].as_f64()?;
        let near = (asok - proc_load * 100.0).abs() <= 25.0 + proc_load * 20.0;
        (near && (asok > 0.0 || proc_load < 0.05)).then_some(())
    })
    .await?;
    // The mon and the mgr answer too, and the scrape counts them.
    assert_eq!(
        value(&text, "ceph_exporter_scrape_daemons", ""),
        Some(f64::from(OSDS) + 2.0)
    );
    assert_eq!(
        value(&text, "ceph_exporter_scrape_failed_daemons", ""),
        Some(0.0)
    );

    // The mgr module: every name, with the labels the queries join on.
    // (Pool stats reach the mgr with the next PG stats reports, one PG's
    // at a time: wait until every PG's latest report has arrived.)
    let pool = "pool_id=\"1\"";
    let mgr = wait_for(
        "the pool's objects, bytes and writes in the mgr metrics",
        WAIT,
        || async {
            let mgr = http_get(&mgr_url).ok()?;
            let settled = value(&mgr, "ceph_pool_objects", pool) == Some(20.0)
                && value(&mgr, "ceph_pool_stored", pool) == Some(20.0 * 65536.0)
                && value(&mgr, "ceph_pool_wr", pool) == Some(20.0);
            settled.then_some(mgr)
        },
    )
    .await?;
    for name in MGR_NAMES {
        assert!(
            mgr.lines()
                .any(|l| l.starts_with(&format!("# TYPE {name} "))),
            "{name} missing from the mgr module"
        );
    }
    let host = kalmar_common::hostname();
    for id in 0..OSDS {
        let meta = samples(&mgr, "ceph_osd_metadata");
        assert!(
            meta.iter().any(|(l, v)| *v == 1.0
                && l.contains(&osd_label(id))
                && l.contains(&format!("hostname=\"{host}\""))),
            "ceph_osd_metadata for osd.{id}: {meta:?}"
        );
        assert_eq!(value(&mgr, "ceph_osd_up", &osd_label(id)), Some(1.0));
        assert_eq!(value(&mgr, "ceph_osd_in", &osd_label(id)), Some(1.0));
    }
    assert_eq!(value(&mgr, "ceph_pg_total", "pool_id=\"1\""), Some(8.0));
    assert_eq!(value(&mgr, "ceph_pg_clean", "pool_id=\"1\""), Some(8.0));
    assert_eq!(
        value(&mgr, "ceph_pool_stored", "pool_id=\"1\""),
        Some(20.0 * 65536.0)
    );
    assert_eq!(value(&mgr, "ceph_pool_wr", "pool_id=\"1\""), Some(20.0));
    assert_eq!(value(&mgr, "ceph_unclean_pgs", ""), Some(0.0));
    assert_eq!(value(&mgr, "ceph_healthcheck_slow_ops", ""), Some(0.0));
    assert_eq!(
        value(&mgr, "ceph_mgr_status", "ceph_daemon=\"mgr.x\""),
        Some(1.0)
    );
    assert_eq!(
        value(&mgr, "ceph_mon_quorum_status", "ceph_daemon=\"mon.a\""),
        Some(1.0)
    );
    assert!(
        samples(&mgr, "ceph_pool_metadata")
            .iter()
            .any(|(l, _)| l.contains("pool_id=\"1\"") && l.contains("name=\"rbd\"")),
        "ceph_pool_metadata"
    );

    // An OSD killed: down on the mgr side (what the OSD-down alert reads),
    // and a socket that no longer answers on the exporter's.
    c.kill9("osd.2")?;
    wait_for(
        "osd.2 down in the mgr metrics",
        Duration::from_secs(60),
        || async {
            let mgr = http_get(&mgr_url).ok()?;
            (value(&mgr, "ceph_osd_up", &osd_label(2)) == Some(0.0)).then_some(())
        },
    )
    .await?;
    let text = http_get(&exporter.url)?;
    assert_eq!(
        value(&text, "ceph_exporter_scrape_failed_daemons", ""),
        Some(1.0)
    );
    assert!(value(&text, "ceph_osd_op_w", &osd_label(2)).is_none());
    assert!(value(&text, "ceph_osd_op_w", &osd_label(0)).is_some());
    drop(exporter);
    Ok(())
}
