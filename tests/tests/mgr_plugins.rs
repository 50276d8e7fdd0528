//! The mgr against a running cluster (mon, mgr, 3 OSDs): the plugin API
//! (`livecheck` plugin) returns Ceph's shapes and live values, `op_w`
//! grows by the writes made, prometheus shows what the admin sockets
//! show, and `pg stat`/`df`/`osd df`/`status` come from the mgr.

mod mgr_common;

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use kalmar_tests::{wait_for, Cluster};
use mgr_common::*;
use serde_json::{json, Value};

const WRITES: u64 = 25;

/// GET `url` (plain HTTP on loopback), bounded.
fn http_get(url: &str) -> anyhow::Result<String> {
    let rest = url.strip_prefix("http://").context("not an http URL")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    match body.split_once("\r\n\r\n") {
        Some((head, b)) if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") => {
            Ok(b.to_string())
        }
        _ => bail!("GET {url}: {}", body.lines().next().unwrap_or("")),
    }
}

/// The value of `name{ceph_daemon="osd.N"}` in a metrics text.
fn metric(text: &str, name: &str, daemon: &str) -> Option<f64> {
    let prefix = format!("{name}{{ceph_daemon=\"{daemon}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_api_prometheus_and_cli_against_live_cluster() -> anyhow::Result<()> {
    let c = Cluster::start(opts(1)).await?;
    let addr = wait_active(&c, "x", Duration::from_secs(30)).await?;
    c.create_pool("rbd", 8, 3, 2).await?;
    c.wait_pgs(1, 8, &["active", "clean"], Duration::from_secs(60))
        .await?;
    enable_module(&c, addr, "livecheck").await?;

    // Every OSD reports; the first report has the API's shapes.
    let before = wait_for("reports of all OSDs", Duration::from_secs(30), || async {
        let r = tell(addr, "livecheck report").await.ok()?;
        let ok = r["op_w"].as_object().is_some_and(|m| m.len() == 3)
            && r["docs"]["pg_summary"]["type"] == "dict"
            && r["health_status"].is_string();
        ok.then_some(r)
    })
    .await?;
    assert_eq!(before["mgr_id"], "x");
    assert_eq!(before["have_mon_connection"], true);
    for doc in [
        "osd_map",
        "osd_map_tree",
        "osd_map_crush",
        "pg_summary",
        "pg_status",
        "pg_dump",
        "pg_stats",
        "osd_stats",
        "pool_stats",
        "df",
        "health",
        "mon_status",
        "mon_map",
        "mgr_map",
    ] {
        assert_eq!(
            before["docs"][doc]["type"], "dict",
            "get({doc}): {}",
            before["docs"][doc]
        );
    }
    let keys = |d: &str| before["docs"][d]["keys"].clone();
    for (doc, key) in [
        ("osd_map", "pools"),
        ("osd_map", "osds"),
        ("osd_map", "epoch"),
        ("osd_map_tree", "nodes"),
        ("pg_summary", "by_pool"),
        ("pg_summary", "all"),
        ("pg_dump", "pg_stats"),
        ("pg_dump", "osd_stats"),
        ("df", "pools"),
        ("df", "stats"),
        ("pg_status", "pgs_by_state"),
        ("mgr_map", "active_name"),
        ("mon_status", "json"),
        ("mon_map", "mons"),
    ] {
        assert!(
            keys(doc)
                .as_array()
                .is_some_and(|a| a.contains(&json!(key))),
            "get({doc}) lacks {key}: {}",
            keys(doc)
        );
    }
    assert_eq!(before["health_status"], "HEALTH_OK");
    assert_eq!(before["pools"], json!(["rbd"]));
    assert_eq!(before["mon_command"], json!({"retval": 0, "num_osds": 3}));
    let daemons: Vec<&str> = before["perf_daemons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for d in ["osd.0", "osd.1", "osd.2", "mon.a"] {
        assert!(
            daemons.contains(&d),
            "get_all_perf_counters lacks {d}: {daemons:?}"
        );
    }
    assert!(before["op_w_samples"]
        .as_u64()
        .is_some_and(|n| (1..=20).contains(&n)));
    assert_eq!(
        before["schema_op_w"]["type"],
        json!(10),
        "op_w is a u64 counter"
    );
    assert_eq!(before["metadata_osd0"]["osd_objectstore"], "kalmar");
    assert!(before["metadata_osd0"]["front_addr"]
        .as_str()
        .is_some_and(|a| a.starts_with("127.0.0.1:")));
    assert_eq!(before["option_interval"], json!(7));
    assert_eq!(before["pg_status"]["num_pgs"], json!(8));
    assert!(before["df_stats"]["total_bytes"]
        .as_u64()
        .is_some_and(|b| b >= 3 * (1 << 30)));
    assert!(before["osdmap_epoch"].as_u64().is_some_and(|e| e > 1));

    // op_w grows by exactly the writes made (replication sub-ops are not op_w).
    let base = op_w_sum(&before);
    write_objects(&c, "rbd", "mgrobj", WRITES, 4096).await?;
    let after = wait_for(
        "op_w to grow by the writes",
        Duration::from_secs(30),
        || async {
            let r = tell(addr, "livecheck report").await.ok()?;
            (op_w_sum(&r) >= base + WRITES).then_some(r)
        },
    )
    .await?;
    assert_eq!(op_w_sum(&after), base + WRITES, "{}", after["op_w"]);
    assert!(
        after["notified"]["pg_summary"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{}",
        after["notified"]
    );
    let stored = tell(addr, "livecheck store greeting hej").await?;
    assert_eq!(stored["value"], "hej");

    // The PG stats reach the mgr: objects and bytes of the writes.
    let pg = wait_for("pg stat from the mgr", Duration::from_secs(20), || async {
        let (rv, _, out) = mgr_command(addr, json!({"prefix": "pg stat", "format": "json"}))
            .await
            .ok()?;
        let v: Value = serde_json::from_slice(&out).ok()?;
        (rv == 0 && v["num_objects"] == json!(WRITES)).then_some(v)
    })
    .await?;
    assert_eq!(pg["num_bytes"], json!(WRITES * 4096));
    let (rv, _, out) = mgr_command(addr, json!({"prefix": "df", "format": "json"})).await?;
    assert_eq!(rv, 0);
    let df: Value = serde_json::from_slice(&out)?;
    assert_eq!(df["pools"][0]["stats"]["stored"], json!(WRITES * 4096));
    assert_eq!(
        df["pools"][0]["stats"]["bytes_used"],
        json!(3 * WRITES * 4096)
    );
    let (rv, _, out) = mgr_command(
        addr,
        json!({"prefix": "tell", "args": ["osd", "df"], "format": "json"}),
    )
    .await?;
    assert_eq!(rv, 0);
    let osd_df: Value = serde_json::from_slice(&out)?;
    assert_eq!(osd_df["nodes"].as_array().map(Vec::len), Some(3));

    // The CLI: status's data part comes from the mgr (objects counted).
    let conf = c.conf.display().to_string();
    let out = c.run_bin(
        "kalmar",
        &["--conf", &conf, "status"],
        Duration::from_secs(30),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("objects: {WRITES} objects")),
        "{text}"
    );
    assert!(text.contains("mgr: x(active"), "{text}");
    let out = c.run_bin(
        "kalmar",
        &["--conf", &conf, "tell", "mgr", "nosuch"],
        Duration::from_secs(30),
    )?;
    assert_eq!(
        out.status.code(),
        Some(22),
        "unknown tell command is EINVAL"
    );

    // Prometheus: the exporter's URL is in the MgrMap's services; op_w
    // per OSD equals what each admin socket shows once writes stop.
    enable_module(&c, addr, "prometheus").await?;
    let url = wait_for(
        "prometheus in mgr services",
        Duration::from_secs(30),
        || async {
            mgr_map(&c).await.ok()?["services"]["prometheus"]
                .as_str()
                .map(String::from)
        },
    )
    .await?;
    let metrics_url = format!("{}metrics", url);
    wait_for(
        "metrics equal to the admin sockets",
        Duration::from_secs(30),
        || async {
            let text = http_get(&metrics_url).ok()?;
            for osd in 0..3 {
                let name = format!("osd.{osd}");
                let asok = c.admin(&name, "perf dump").ok()?["osd"]["op_w"].as_f64()?;
                if metric(&text, "ceph_osd_op_w", &name) != Some(asok) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await?;
    let text = http_get(&metrics_url)?;
    for name in [
        "ceph_health_status 0.0",
        "ceph_osd_up{ceph_daemon=\"osd.2\"} 1.0",
        "ceph_pg_total",
    ] {
        assert!(text.contains(name), "metrics lack {name}");
    }
    Ok(())
}
