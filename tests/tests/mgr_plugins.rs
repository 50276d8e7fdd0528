//! The mgr against a running cluster (mon, mgr, 3 OSDs): the plugin API
//! (`livecheck` plugin) returns Ceph's shapes and live values, `op_w`
//! grows by the writes made, prometheus shows what the admin sockets
//! show, and `pg stat`/`df`/`osd df`/`status` come from the mgr. Then:
//! rates, options, decorator commands, send_command, serve/shutdown and
//! the log ([`more_api`]); plugin health checks in `kalmar health`
//! ([`health_reaches_the_mon`]); `tell mgr hello` through the CLI; the
//! enabled modules after a mon restart.

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
        // The mgr's documents follow the stats period and the mon digest:
        // wait until they show the new pool's PGs and the mon's health.
        let ok = r["op_w"].as_object().is_some_and(|m| m.len() == 3)
            && r["docs"]["pg_summary"]["type"] == "dict"
            && r["pg_status"]["num_pgs"] == json!(8)
            && r["health_status"] == "HEALTH_OK";
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
    assert_eq!(
        before["health_status"], "HEALTH_OK",
        "{}",
        before["health_checks"]
    );
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

    more_api(&c, addr).await?;
    health_reaches_the_mon(&c).await?;
    hello_through_the_cli(&c, addr).await?;
    enabled_modules_survive_a_mon_restart(&c).await?;
    Ok(())
}

/// Runs `kalmar ARGS` against the cluster: (exit code, stdout, stderr).
fn cli(c: &Cluster, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let conf = c.conf.display().to_string();
    let mut a = vec!["--conf", conf.as_str()];
    a.extend_from_slice(args);
    let out = c.run_bin("kalmar", &a, Duration::from_secs(30))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Writes until `stop` is set (or 400 objects / 60 s), for rate checks.
async fn write_until(
    c: &Cluster,
    stop: &std::sync::atomic::AtomicBool,
    written: &std::sync::atomic::AtomicU64,
) -> anyhow::Result<u64> {
    use std::sync::atomic::Ordering;
    let rados = c.client().await?;
    let io = rados.ioctx("rbd")?;
    let start = std::time::Instant::now();
    let mut n = 0;
    while !stop.load(Ordering::Acquire) && n < 400 && start.elapsed() < Duration::from_secs(60) {
        io.write_full(&format!("rate{n}"), bytes::Bytes::from(vec![3u8; 8192]))
            .await?;
        n += 1;
        written.store(n, Ordering::Release);
    }
    Ok(n)
}

/// Rates from real deltas, osd_metadata, get_latest_avg, module options,
/// a @CLIReadCommand, send_command with its `command` notify, serve() and
/// shutdown(), and self.log in the mgr's log file.
async fn more_api(c: &Cluster, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    // Writes under way raise the pool's write rate and the io_rate delta.
    // The poll only ends once this test's writer has written (the rates may
    // already show earlier writes before its client has connected).
    let stop = AtomicBool::new(false);
    let writes = AtomicU64::new(0);
    let poll = async {
        let r = wait_for(
            "a write rate above 0 in io_rate and osd_pool_stats",
            Duration::from_secs(60),
            || async {
                let r = tell(addr, "livecheck report").await.ok()?;
                let delta = &r["io_rate"]["pg_stats_delta"];
                let pool = &r["osd_pool_stats"]["pool_stats"][0];
                let ok = writes.load(Ordering::Acquire) > 0
                    && delta["stat_sum"]["num_write"]
                        .as_i64()
                        .is_some_and(|w| w > 0)
                    && pool["client_io_rate"]["write_op_per_sec"]
                        .as_u64()
                        .is_some_and(|w| w > 0);
                ok.then_some(r)
            },
        )
        .await;
        stop.store(true, Ordering::Release);
        r
    };
    let (written, r) = tokio::join!(write_until(c, &stop, &writes), poll);
    let (written, r) = (written?, r?);
    assert!(written > 0);
    let delta = &r["io_rate"]["pg_stats_delta"];
    let stamp: f64 = delta["stamp_delta"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("stamp_delta is seconds");
    assert!(stamp > 0.0 && stamp < 60.0, "{delta}");
    // Every write in the window carried 4 KiB (earlier) or 8 KiB (now).
    assert!(
        delta["stat_sum"]["num_write_kb"].as_i64().unwrap_or(0)
            >= 4 * delta["stat_sum"]["num_write"].as_i64().unwrap_or(0),
        "at least 4 KiB per write: {delta}"
    );
    assert!(r["io_rate"]["rates"]["write_op_per_sec"].as_u64().is_some());
    let pool = &r["osd_pool_stats"]["pool_stats"][0];
    assert_eq!(pool["pool_name"], "rbd");
    assert!(
        pool["client_io_rate"]["write_bytes_sec"]
            .as_u64()
            .is_some_and(|b| b >= 8192),
        "{pool}"
    );
    // osd_metadata: one entry per OSD.
    let meta = r["osd_metadata"]
        .as_object()
        .expect("osd_metadata is a dict");
    assert_eq!(meta.len(), 3, "{meta:?}");
    assert_eq!(meta["1"]["osd_objectstore"], "kalmar");
    // get_latest_avg of a latency: (sum, count) per OSD, counting writes.
    let avgs = r["latest_avg_op_w_latency"].as_object().expect("dict");
    let count: u64 = avgs.values().filter_map(|v| v[1].as_u64()).sum();
    assert!(count >= WRITES, "op_w_latency counts {avgs:?}");
    assert!(avgs
        .values()
        .all(|v| v.as_array().is_some_and(|a| a.len() == 2)));
    // serve() runs on its own thread.
    assert_eq!(r["serving"], true);
    assert!(r["serve_loops"].as_u64().is_some_and(|n| n > 0));

    // set_module_option / get_module_option round trip.
    assert_eq!(tell(addr, "livecheck option 42").await?["value"], json!(42));
    assert_eq!(
        tell(addr, "livecheck report").await?["option_interval"],
        json!(42)
    );
    // A @CLIReadCommand, through the CLI too.
    assert_eq!(tell(addr, "livecheck ping hej").await?["pong"], "hej");
    let (code, out, err) = cli(c, &["tell", "mgr", "livecheck", "ping", "da"])?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\"pong\": \"da\"") || out.contains("\"pong\":\"da\""),
        "{out}"
    );
    // send_command completes and notifies `command` with its tag.
    let sent = tell(addr, "livecheck send").await?;
    assert_eq!(sent, json!({"retval": 0, "num_osds": 3}));
    wait_for("the command notify", Duration::from_secs(10), || async {
        let r = tell(addr, "livecheck report").await.ok()?;
        r["command_tags"]
            .as_array()?
            .iter()
            .any(|t| t == "livecheck-send")
            .then_some(())
    })
    .await?;
    // self.log reaches the mgr's log file.
    let mark = format!("mark{}", std::process::id());
    tell_plain(addr, &format!("livecheck log {mark}")).await?;
    let log = c.dir().join("mgr.x.log");
    wait_for(
        "the plugin's line in the mgr log",
        Duration::from_secs(10),
        || async {
            let text = std::fs::read_to_string(&log).ok()?;
            text.lines()
                .any(|l| l.contains(&format!("livecheck says {mark}")) && l.contains("livecheck"))
                .then_some(())
        },
    )
    .await?;
    // shutdown() runs when the module is disabled (it leaves a mark).
    c.mon_command(json!({"prefix": "mgr module disable", "module": "livecheck"}))
        .await?;
    wait_for("livecheck stopped", Duration::from_secs(30), || async {
        let (rv, _, _) = mgr_command(
            addr,
            json!({"prefix": "tell", "args": ["livecheck", "report"], "format": "json"}),
        )
        .await
        .ok()?;
        (rv != 0).then_some(())
    })
    .await?;
    enable_module(c, addr, "livecheck").await?;
    let r = tell(addr, "livecheck report").await?;
    assert!(
        r["shutdown_mark"]
            .as_str()
            .is_some_and(|s| s.parse::<u64>().is_ok()),
        "shutdown() left no mark: {}",
        r["shutdown_mark"]
    );
    Ok(())
}

/// `tell mgr WORDS` whose answer is not JSON: checks the return value.
async fn tell_plain(addr: std::net::SocketAddr, words: &str) -> anyhow::Result<String> {
    let args: Vec<&str> = words.split_whitespace().collect();
    let (rv, outs, _) = mgr_command(addr, json!({"prefix": "tell", "args": args})).await?;
    if rv != 0 {
        bail!("tell mgr {words}: {outs} (errno {rv})");
    }
    Ok(outs)
}

/// `kalmar health detail --format json` until `f` accepts it.
async fn wait_health<T>(
    c: &Cluster,
    what: &str,
    f: impl Fn(&Value) -> Option<T>,
) -> anyhow::Result<T> {
    wait_for(what, Duration::from_secs(30), || async {
        let (code, out, _) = cli(c, &["health", "detail", "--format", "json"]).ok()?;
        let v: Value = serde_json::from_str(&out).ok()?;
        if code != 0 {
            return None;
        }
        f(&v)
    })
    .await
}

/// A plugin's `set_health_checks` and the mgr's MGR_MODULE_ERROR reach
/// `kalmar health` / `status` through the mon; clearing removes them.
async fn health_reaches_the_mon(c: &Cluster) -> anyhow::Result<()> {
    let (code, _, err) = cli(
        c,
        &["tell", "mgr", "livecheck", "health", "LIVECHECK_RAISED"],
    )?;
    assert_eq!(code, 0, "{err}");
    let check = wait_health(c, "LIVECHECK_RAISED in health detail", |v| {
        v["checks"].get("LIVECHECK_RAISED").cloned()
    })
    .await?;
    assert_eq!(check["severity"], "HEALTH_WARN");
    assert_eq!(check["summary"]["message"], "raised by livecheck");
    assert_eq!(check["detail"][0]["message"], "livecheck detail line");
    let (_, text, _) = cli(c, &["health", "detail"])?;
    assert!(
        text.starts_with("HEALTH_WARN")
            && text.contains("[WRN] LIVECHECK_RAISED: raised by livecheck"),
        "{text}"
    );
    let (_, status, _) = cli(c, &["status"])?;
    assert!(status.contains("raised by livecheck"), "{status}");
    let (code, _, err) = cli(c, &["tell", "mgr", "livecheck", "clear"])?;
    assert_eq!(code, 0, "{err}");
    wait_health(c, "LIVECHECK_RAISED cleared", |v| {
        v["checks"].get("LIVECHECK_RAISED").is_none().then_some(())
    })
    .await?;

    // A plugin that cannot load, enabled anyway: MGR_MODULE_ERROR.
    let (code, _, err) = cli(c, &["mgr", "module", "enable", "brokencheck", "--force"])?;
    assert_eq!(code, 0, "{err}");
    let check = wait_health(c, "MGR_MODULE_ERROR in health", |v| {
        v["checks"].get("MGR_MODULE_ERROR").cloned()
    })
    .await?;
    assert_eq!(check["severity"], "HEALTH_ERR");
    assert!(
        check["summary"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Module 'brokencheck' has failed")),
        "{check}"
    );
    let (code, text, _) = cli(c, &["health"])?;
    assert_eq!(code, 0);
    assert!(
        text.starts_with("HEALTH_ERR") && text.contains("Module 'brokencheck' has failed"),
        "{text}"
    );
    let (code, _, err) = cli(c, &["mgr", "module", "disable", "brokencheck"])?;
    assert_eq!(code, 0, "{err}");
    wait_health(c, "MGR_MODULE_ERROR gone", |v| {
        v["checks"].get("MGR_MODULE_ERROR").is_none().then_some(())
    })
    .await?;
    Ok(())
}

/// The seed's `hello` module answers `Hello World` through `kalmar`.
async fn hello_through_the_cli(c: &Cluster, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    enable_module(c, addr, "hello").await?;
    let (code, out, err) = cli(c, &["tell", "mgr", "hello"])?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Hello World") || err.contains("Hello World"),
        "stdout {out:?} stderr {err:?}"
    );
    Ok(())
}

/// `mgr module enable` is kept in the MgrMap: a mon restart keeps it.
async fn enabled_modules_survive_a_mon_restart(c: &Cluster) -> anyhow::Result<()> {
    let before = mgr_map(c).await?["modules"].clone();
    for m in ["livecheck", "hello", "prometheus"] {
        assert!(
            before.as_array().is_some_and(|a| a.contains(&json!(m))),
            "{m} not enabled: {before}"
        );
    }
    c.stop("mon.a")?;
    c.restart_missing().await?;
    let after = wait_for("the mon back", Duration::from_secs(30), || async {
        mgr_map(c).await.ok()
    })
    .await?;
    assert_eq!(after["modules"], before, "{after}");
    // The mgr still runs them (it follows the restarted mon's map).
    let addr = wait_active(c, "x", Duration::from_secs(30)).await?;
    let r = wait_for(
        "livecheck after the mon restart",
        Duration::from_secs(30),
        || async { tell(addr, "livecheck report").await.ok() },
    )
    .await?;
    assert_eq!(r["mgr_id"], "x");
    Ok(())
}
