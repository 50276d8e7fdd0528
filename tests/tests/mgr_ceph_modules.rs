//! Ceph's own stock mgr modules, unchanged, on Kalmar's mgr: Debian's
//! `ceph-mgr-modules-core` (16.2.15) is installed with apt at test time
//! (never copied into the repository), its module folders are put on the
//! mgr's module path, and each module is enabled and its commands run
//! against a live cluster (mon, mgr, 4 OSDs): `iostat`, `osd status`,
//! `crash post|ls|info|stat|archive|rm|prune` with the `RECENT_CRASH`
//! health check, `influx send` and `telegraf send` to local listeners,
//! `balancer status|eval`, `osd pool autoscale-status`, `insights`,
//! `progress json`, and `alerts send` to a local SMTP listener; the
//! daemons' own crash reports; every `get()` name's shape.
//!
//! Skipped (with a message) only when the packages are missing and apt
//! cannot install them.

mod mgr_common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use kalmar_tests::{wait_for, Cluster};
use mgr_common::*;
use serde_json::{json, Value};

/// Where Debian installs Ceph's mgr modules.
const CEPH_MGR_DIR: &str = "/usr/share/ceph/mgr";
/// The stock modules this test runs.
const MODULES: [&str; 10] = [
    "iostat",
    "status",
    "crash",
    "influx",
    "telegraf",
    "alerts",
    "insights",
    "progress",
    "pg_autoscaler",
    "balancer",
];
/// Debian packages: the modules and the Python packages they import.
const PACKAGES: [&str; 3] = [
    "ceph-mgr-modules-core",
    "python3-prettytable",
    "python3-influxdb",
];
/// OSDs of the test cluster (one more than the pool size, so an OSD
/// marked out has its data moved).
const OSDS: u32 = 4;
/// Bound on each wait for a module's answer or a listener.
const WAIT: Duration = Duration::from_secs(30);

/// A module folder holding only the stock modules under test (so Ceph's
/// `prometheus` does not replace Kalmar's own exporter).
fn module_dir(dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    for m in MODULES {
        let src = Path::new(CEPH_MGR_DIR).join(m);
        anyhow::ensure!(
            src.join("module.py").is_file(),
            "{} is missing",
            src.display()
        );
        std::os::unix::fs::symlink(&src, dir.join(m))?;
    }
    Ok(dir.to_string_lossy().into_owned())
}

/// `config set mgr mgr/MODULE/KEY VALUE`, as an admin sets module options.
async fn set_option(addr: SocketAddr, module: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let (rv, outs, _) = mgr_command(
        addr,
        json!({"prefix": "config set", "who": "mgr",
               "name": format!("mgr/{module}/{key}"), "value": value}),
    )
    .await?;
    if rv != 0 {
        bail!("config set mgr/{module}/{key}: {outs} (errno {rv})");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceph_stock_modules_enable_and_answer() -> anyhow::Result<()> {
    if let Err(why) = tokio::task::spawn_blocking(|| apt::ensure_packages(&PACKAGES)).await? {
        eprintln!("SKIPPED: Ceph's stock mgr modules are not available: {why}");
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let dir = module_dir(&tmp.path().join("ceph-mgr"))?;
    let mut o = opts(1).set("mgr_module_path", &format!("{dir}:{}", plugin_dir()));
    o.osds = OSDS;
    // `assert` on an admin socket crashes that daemon (a crash report test).
    let o = o.set("debug_asok_assert_abort", "true");
    let c = Cluster::start(o).await?;
    let r = run(&c).await;
    if r.is_err() {
        kalmar_tests::print_logs(c.dir());
    }
    r
}

async fn run(c: &Cluster) -> anyhow::Result<()> {
    let addr = wait_active(c, "x", Duration::from_secs(30)).await?;
    c.create_pool("rbd", 8, 3, 2).await?;
    c.wait_pgs(1, 8, &["active", "clean"], Duration::from_secs(60))
        .await?;

    // Every module loads (whatever its class is named) and can run.
    let ls = wait_for(
        "the stock modules in mgr module ls",
        Duration::from_secs(30),
        || async {
            let (rv, _, out) =
                mgr_command(addr, json!({"prefix": "mgr module ls", "format": "json"}))
                    .await
                    .ok()?;
            let v: Value = serde_json::from_slice(&out).ok()?;
            // `status` is always on (as in Ceph); the others start disabled.
            let names: Vec<&str> = v["disabled_modules"]
                .as_array()?
                .iter()
                .filter_map(|m| m["name"].as_str())
                .chain(
                    v["always_on_modules"]
                        .as_array()?
                        .iter()
                        .filter_map(Value::as_str),
                )
                .collect();
            (rv == 0 && MODULES.iter().all(|m| names.contains(m))).then_some(v)
        },
    )
    .await?;
    for m in ls["disabled_modules"].as_array().into_iter().flatten() {
        if MODULES.contains(&m["name"].as_str().unwrap_or("")) {
            assert_eq!(m["can_run"], true, "{m}");
        }
    }
    let always_on: Vec<&str> = ls["always_on_modules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(always_on, ["status"], "{ls}");
    for m in MODULES.into_iter().filter(|m| !always_on.contains(m)) {
        enable_module(c, addr, m)
            .await
            .with_context(|| format!("enabling {m}"))?;
    }

    // A client writing for the rest of the test, so rates are not zero.
    let writer = Writer::start(c, "rbd").await?;

    // iostat: one row with the client's writes, then a header at a width.
    let row = wait_for("iostat showing writes", WAIT, || async {
        let row = tell_text(addr, "iostat", b"").await.ok()?;
        let cols = table_cells(&row);
        // | Read | Write | Total | Read IOPS | Write IOPS | Total IOPS |
        (cols.len() == 6 && cols[4] != "0" && cols[1].ends_with("B/s")).then_some(row)
    })
    .await?;
    assert!(row.starts_with('|'), "{row}");
    let with_header = tell_text(addr, "iostat --width=120 --print_header=true", b"").await?;
    let lines: Vec<&str> = with_header.lines().collect();
    assert_eq!(lines.len(), 4, "{with_header}");
    assert_eq!(lines[0].len(), 120 / 6 * 6 + 1, "{with_header}");
    assert_eq!(
        table_cells(lines[1]),
        [
            "Read",
            "Write",
            "Total",
            "Read IOPS",
            "Write IOPS",
            "Total IOPS"
        ]
    );

    // osd status: every OSD with this host's name, its usage, and the
    // writes it serves as primary.
    let host = kalmar_common::hostname();
    let st = wait_for("osd status showing write ops", WAIT, || async {
        let st = tell_text(addr, "osd status", b"").await.ok()?;
        let rows = osd_status_rows(&st);
        let writing = rows.iter().any(|r| r[4] != "0");
        (rows.len() == OSDS as usize && writing).then_some(st)
    })
    .await?;
    let rows = osd_status_rows(&st);
    for (id, r) in rows.iter().enumerate() {
        // ID HOST USED AVAIL WR-OPS WR-DATA RD-OPS RD-DATA STATE
        assert_eq!(r[0], id.to_string(), "{st}");
        assert_eq!(r[1], host, "{st}");
        assert_ne!(r[2], "0", "osd.{id} uses nothing:\n{st}");
        assert_eq!(r[8], "exists,up", "{st}");
    }

    // crash: post a report, list it, the health warning, archive, rm.
    let crash_id = "2026-12-05T10:00:00.000000Z_11111111-2222-3333-4444-555555555555";
    let now = chrono_like_now();
    let meta = json!({"crash_id": crash_id, "timestamp": now, "entity_name": "osd.1",
                      "backtrace": ["(abort()+0x10) [0x1]", "(main()+0x20) [0x2]"]});
    tell_text(addr, "crash post", meta.to_string().as_bytes()).await?;
    let ls = tell(addr, "crash ls").await?;
    assert_eq!(ls[0]["crash_id"], crash_id, "{ls}");
    assert!(
        ls[0]["stack_sig"].as_str().is_some_and(|s| s.len() == 64),
        "{ls}"
    );
    let info = tell(addr, &format!("crash info {crash_id}")).await?;
    assert_eq!(info["entity_name"], "osd.1");
    let stat = tell_text(addr, "crash stat", b"").await?;
    assert!(stat.contains("1 crashes recorded"), "{stat}");
    wait_for(
        "RECENT_CRASH in health",
        Duration::from_secs(30),
        || async {
            let h = c.mon_command(json!({"prefix": "health"})).await.ok()?;
            h["checks"]["RECENT_CRASH"]["summary"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("1 daemons have recently crashed"))
                .then_some(())
        },
    )
    .await?;
    tell_text(addr, &format!("crash archive {crash_id}"), b"").await?;
    wait_for("RECENT_CRASH cleared", Duration::from_secs(30), || async {
        let h = c.mon_command(json!({"prefix": "health"})).await.ok()?;
        h["checks"].get("RECENT_CRASH").is_none().then_some(())
    })
    .await?;
    let new = tell(addr, "crash ls-new").await?;
    assert_eq!(new, json!([]));
    // prune 1 drops reports older than a day and keeps this one.
    let old_id = "2020-01-01T00:00:00.000000Z_66666666-7777-8888-9999-000000000000";
    let old = json!({"crash_id": old_id, "timestamp": "2020-01-01T00:00:00.000000Z",
                     "entity_name": "osd.2"});
    tell_text(addr, "crash post", old.to_string().as_bytes()).await?;
    assert_eq!(
        tell(addr, "crash ls").await?.as_array().map(Vec::len),
        Some(2)
    );
    tell_text(addr, "crash prune 1", b"").await?;
    let ls = tell(addr, "crash ls").await?;
    assert_eq!(ls.as_array().map(Vec::len), Some(1), "{ls}");
    assert_eq!(ls[0]["crash_id"], crash_id, "{ls}");
    tell_text(addr, &format!("crash rm {crash_id}"), b"").await?;
    assert_eq!(tell(addr, "crash ls").await?, json!([]));
    let bad = tell_text(addr, "crash post", b"{\"timestamp\": \"x\"}").await;
    assert!(
        bad.as_ref()
            .is_err_and(|e| e.to_string().contains("malformed crash metadata")),
        "{bad:?}"
    );

    // A daemon that crashes leaves a report, which the mgr posts: osd.1
    // asserts (its admin socket's `assert`), then comes back.
    let _ = c.admin("osd.1", "assert");
    let report = wait_for("osd.1's crash report posted", WAIT, || async {
        let ls = tell(addr, "crash ls").await.ok()?;
        ls.as_array()?
            .iter()
            .find(|r| r["entity_name"] == "osd.1")
            .cloned()
    })
    .await?;
    let id = report["crash_id"].as_str().context("crash_id")?;
    let info = tell(addr, &format!("crash info {id}")).await?;
    assert_eq!(info["process_name"], "kalmar-osd", "{info}");
    assert_eq!(
        info["assert_condition"], "assert from the admin socket",
        "{info}"
    );
    assert!(
        info["backtrace"].as_array().is_some_and(|b| b
            .iter()
            .take(4)
            .any(|f| f.as_str().is_some_and(|f| f.contains("(asok_assert)")))),
        "{info}"
    );
    assert_eq!(info["utsname_hostname"], host, "{info}");
    assert!(
        info["backtrace"].as_array().is_some_and(|b| !b.is_empty())
            && info["stack_sig"].as_str().is_some_and(|s| s.len() == 64),
        "{info}"
    );
    assert!(
        c.dir()
            .join("crash")
            .join("posted")
            .join(id)
            .join("meta")
            .is_file(),
        "the posted report was not moved to crash/posted"
    );
    wait_for("RECENT_CRASH for osd.1", WAIT, || async {
        let h = c
            .mon_command(json!({"prefix": "health", "detail": "detail"}))
            .await
            .ok()?;
        h["checks"]["RECENT_CRASH"]["detail"]
            .as_array()?
            .iter()
            .any(|d| {
                d["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("osd.1 crashed on host"))
            })
            .then_some(())
    })
    .await?;
    tell_text(addr, "crash archive-all", b"").await?;
    c.restart_missing().await?;
    c.wait_pgs(1, 8, &["active", "clean"], Duration::from_secs(60))
        .await?;

    // influx: points to a local InfluxDB stand-in.
    let (iport, influx_rx) = listeners::influxdb()?;
    tell_text(addr, "influx config-set hostname 127.0.0.1", b"").await?;
    tell_text(addr, &format!("influx config-set port {iport}"), b"").await?;
    let ic = tell(addr, "influx config-show").await?;
    assert_eq!(ic["hostname"], "127.0.0.1", "{ic}");
    assert_eq!(ic["port"], iport, "{ic}");
    tell_text(addr, "influx send", b"").await?;
    let (points, _) = listeners::next(influx_rx, "InfluxDB", WAIT).await?;
    let pools = measurements(&points, "ceph_pool_stats");
    assert!(
        pools
            .iter()
            .any(|(tags, _)| tags.contains("pool_name=rbd")
                && tags.contains("type_instance=objects")),
        "{points}"
    );
    for id in 0..OSDS {
        let daemon = measurements(&points, "ceph_daemon_stats");
        assert!(
            daemon
                .iter()
                .any(|(tags, _)| tags.contains(&format!("ceph_daemon=osd.{id},"))
                    && tags.contains(&format!("host={host}"))),
            "osd.{id} not in the influx points:\n{points}"
        );
    }
    assert!(
        !measurements(&points, "ceph_pg_summary_pool").is_empty(),
        "{points}"
    );

    // telegraf: line protocol to a local TCP listener.
    let (tport, telegraf_rx) = listeners::lines()?;
    tell_text(
        addr,
        &format!("telegraf config-set address tcp://127.0.0.1:{tport}"),
        b"",
    )
    .await?;
    let tc = tell(addr, "telegraf config-show").await?;
    assert_eq!(tc["address"], format!("tcp://127.0.0.1:{tport}"), "{tc}");
    tell_text(addr, "telegraf send", b"").await?;
    let (lines, _) = listeners::next(telegraf_rx, "Telegraf", WAIT).await?;
    let cluster = measurements(&lines, "ceph_cluster_stats");
    let value_of = |key: &str| {
        cluster
            .iter()
            .find(|(tags, _)| tags.contains(&format!("type_instance={key},")))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        value_of("num_osd").as_deref(),
        Some(format!("{OSDS}i").as_str()),
        "{lines}"
    );
    assert_eq!(
        value_of("num_osd_up").as_deref(),
        Some(format!("{OSDS}i").as_str()),
        "{lines}"
    );
    assert_eq!(value_of("num_pgs").as_deref(), Some("8i"), "{lines}");
    let op_w: u64 = measurements(&lines, "ceph_daemon_stats")
        .iter()
        .filter(|(tags, _)| tags.contains("type_instance=osd.op_w,"))
        .filter_map(|(_, v)| v.trim_end_matches('i').parse::<u64>().ok())
        .sum();
    assert!(op_w > 0, "no osd.op_w in telegraf's lines:\n{lines}");

    // balancer: status, and a score of the current distribution.
    let bs = tell(addr, "balancer status").await?;
    assert!(
        bs.get("mode").is_some() && bs.get("active").is_some(),
        "{bs}"
    );
    let ev = tell_text(addr, "balancer eval", b"").await?;
    assert!(ev.starts_with("current cluster score"), "{ev}");
    let evp = tell_text(addr, "balancer eval rbd", b"").await?;
    assert!(evp.starts_with("pool \"rbd\" score"), "{evp}");

    // pg_autoscaler: the pool with its PG numbers.
    let auto = tell(addr, "osd pool autoscale-status").await?;
    let rbd = auto
        .as_array()
        .and_then(|a| a.iter().find(|p| p["pool_name"] == "rbd"))
        .with_context(|| format!("rbd not in autoscale-status: {auto}"))?;
    assert_eq!(rbd["pg_num_target"], 8, "{rbd}");
    assert_eq!(rbd["raw_used_rate"], 3.0, "{rbd}");

    // insights: the report with health and the OSD map.
    let ins = tell(addr, "insights").await?;
    assert_eq!(ins["osd_dump"]["pools"][0]["pool_name"], "rbd", "{ins}");
    assert!(ins["health"]["current"].is_object(), "{ins}");
    // `config dump` (as admins type it) lists the options set.
    let dump = tell(addr, "config dump").await?;
    let port_text = iport.to_string();
    assert!(
        dump.as_array()
            .is_some_and(|d| d.iter().any(|o| o["section"] == "mgr"
                && o["name"] == "mgr/influx/port"
                && o["value"] == port_text.as_str())),
        "{dump}"
    );
    // Its `config dump` is the mgr's run-time options (Kalmar's mon keeps
    // no config database): the report is complete.
    assert_eq!(ins["errors"], json!([]), "{ins}");
    assert!(
        ins["config"].as_array().is_some_and(|c| c
            .iter()
            .any(|o| o["name"] == "mgr/influx/hostname" && o["value"] == "127.0.0.1")),
        "{}",
        ins["config"]
    );

    // alerts: a health change mailed to a local SMTP listener.
    let (port, mails) = listeners::smtp()?;
    for (k, v) in [
        ("smtp_host", "127.0.0.1".to_string()),
        ("smtp_port", port.to_string()),
        ("smtp_ssl", "false".into()),
        ("smtp_destination", "admin@example.com".into()),
        ("smtp_sender", "kalmar@example.com".into()),
        ("interval", "1".into()),
    ] {
        set_option(addr, "alerts", k, &v).await?;
    }
    // The module takes new options in config_notify(), which runs on its
    // notify thread after `config set` returns (as in Ceph): send until a
    // mail arrives.
    let mails = std::sync::Arc::new(std::sync::Mutex::new(mails));
    let mail = wait_for("a mail at the SMTP listener", WAIT, || async {
        tell_text(addr, "alerts send", b"").await.ok()?;
        let rx = mails.clone();
        tokio::task::spawn_blocking(move || {
            rx.lock().ok()?.recv_timeout(Duration::from_secs(1)).ok()
        })
        .await
        .ok()
        .flatten()
    })
    .await?;
    assert!(mail.contains("To: admin@example.com"), "{mail}");
    assert!(mail.contains("HEALTH_"), "{mail}");

    // progress: an OSD marked out starts a rebalancing event, which
    // completes once its PGs are active+clean again.
    let pj = tell(addr, "progress json").await?;
    assert!(
        pj["events"].is_array() && pj["completed"].is_array(),
        "{pj}"
    );
    let out = OSDS - 1;
    c.mon_command(json!({"prefix": "osd out", "ids": [out.to_string()]}))
        .await?;
    let message = format!("Rebalancing after osd.{out} marked out");
    let ev = wait_for("the rebalancing event", WAIT, || async {
        let pj = tell(addr, "progress json").await.ok()?;
        pj["events"]
            .as_array()?
            .iter()
            .chain(pj["completed"].as_array()?)
            .find(|e| e["message"] == message.as_str())
            .cloned()
    })
    .await?;
    assert_eq!(ev["refs"], json!([["osd", out]]), "{ev}");
    let done = wait_for(
        "the rebalancing event completed",
        Duration::from_secs(120),
        || async {
            let pj = tell(addr, "progress json").await.ok()?;
            pj["completed"]
                .as_array()?
                .iter()
                .find(|e| e["id"] == ev["id"])
                .cloned()
        },
    )
    .await?;
    assert!(
        done["finished_at"].as_f64().is_some() && done.get("failed").is_none(),
        "{done}"
    );
    c.wait_pgs(1, 8, &["active", "clean"], Duration::from_secs(60))
        .await?;
    let text = tell_text(addr, "progress", b"").await?;
    assert!(text.contains(&format!("[Complete]: {message}")), "{text}");

    writer.stop().await?;

    get_documents_keep_ceph_shapes(c, addr).await?;

    // None of them failed or raised.
    let (_, _, out) =
        mgr_command(addr, json!({"prefix": "mgr module ls", "format": "json"})).await?;
    let v: Value = serde_json::from_slice(&out)?;
    assert_eq!(v["failed_modules"], json!([]), "{v}");
    let h = c
        .mon_command(json!({"prefix": "health", "detail": "detail"}))
        .await?;
    for check in [
        "MGR_MODULE_ERROR",
        "MGR_MODULE_DEPENDENCY",
        "MGR_INSIGHTS_WARNING",
    ] {
        assert!(h["checks"].get(check).is_none(), "{check}: {h}");
    }
    Ok(())
}

/// Every name Ceph's modules pass to `get()`, with keys of Ceph's shape
/// that they index (read through the `livecheck` test plugin).
async fn get_documents_keep_ceph_shapes(c: &Cluster, addr: SocketAddr) -> anyhow::Result<()> {
    enable_module(c, addr, "livecheck").await?;
    let shapes: [(&str, &[&str]); 23] = [
        (
            "osd_map",
            &[
                "epoch",
                "fsid",
                "flags",
                "pools",
                "osds",
                "pg_temp",
                "pg_upmap_items",
                "crush_version",
            ],
        ),
        (
            "osd_map_crush",
            &["devices", "types", "buckets", "rules", "tunables"],
        ),
        ("osd_map_tree", &["nodes", "stray"]),
        ("osd_stats", &["osd_stats"]),
        ("df", &["stats", "stats_by_class", "pools"]),
        ("pg_summary", &["by_osd", "by_pool", "all", "pg_stats_sum"]),
        (
            "pg_status",
            &[
                "pgs_by_state",
                "num_pgs",
                "num_pools",
                "num_objects",
                "bytes_total",
                "bytes_used",
            ],
        ),
        (
            "pg_dump",
            &[
                "pg_stats",
                "pool_stats",
                "osd_stats",
                "pg_stats_sum",
                "osd_stats_sum",
                "pg_stats_delta",
            ],
        ),
        ("pg_stats", &["pg_stats"]),
        ("pool_stats", &["pool_stats"]),
        ("osd_pool_stats", &["pool_stats"]),
        ("io_rate", &["pg_stats_delta"]),
        ("health", &["json"]),
        ("mon_status", &["json"]),
        ("mon_map", &["epoch", "fsid", "mons"]),
        (
            "mgr_map",
            &[
                "epoch",
                "active_name",
                "available",
                "modules",
                "available_modules",
                "services",
            ],
        ),
        ("osd_metadata", &["0", "1", "2", "3"]),
        ("config", &["mon_target_pg_per_osd", "mgr_stats_period"]),
        ("service_map", &["epoch", "services"]),
        ("devices", &["devices"]),
        ("pg_progress", &["pgs", "pg_ready"]),
        ("active_clean_pgs", &["total_num_pgs", "pg_stats"]),
        ("fs_map", &["epoch", "filesystems", "standbys"]),
    ];
    for (name, keys) in shapes {
        let v = tell(addr, &format!("livecheck get {name}")).await?;
        for k in keys {
            assert!(v.get(k).is_some(), "get('{name}') has no '{k}': {v}");
        }
    }
    let osd = tell(addr, "livecheck get osd_stats").await?;
    assert!(
        osd["osd_stats"][0]["perf_stat"]["commit_latency_ms"].is_number()
            && osd["osd_stats"][0]["kb_used"].is_number(),
        "{osd}"
    );
    let pg = tell(addr, "livecheck get pg_stats").await?;
    let p0 = &pg["pg_stats"][0];
    for k in [
        "pgid",
        "state",
        "up",
        "acting",
        "up_primary",
        "acting_primary",
        "stat_sum",
        "reported_epoch",
    ] {
        assert!(p0.get(k).is_some(), "pg_stat_t has no {k}: {p0}");
    }
    let h = tell(addr, "livecheck get health").await?;
    assert!(
        h["json"]["status"]
            .as_str()
            .is_some_and(|s| s.starts_with("HEALTH_")),
        "{h}"
    );
    let fs = tell(addr, "livecheck get fs_map").await?;
    assert_eq!(fs["filesystems"], json!([]), "{fs}");
    Ok(())
}

/// A client writing 4 KiB objects in a loop until stopped.
struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<u64>>,
}

impl Writer {
    async fn start(c: &Cluster, pool: &str) -> anyhow::Result<Writer> {
        let rados = c.client().await?;
        let io = wait_for("the pool in the client's map", WAIT, || async {
            rados.ioctx(pool).ok()
        })
        .await?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let _rados = rados;
            let mut n = 0u64;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                io.write_full(&format!("w{}", n % 64), bytes::Bytes::from(vec![5u8; 4096]))
                    .await?;
                n += 1;
            }
            Ok(n)
        });
        Ok(Writer { stop, task })
    }

    /// Stops the loop; the number of writes it made.
    async fn stop(self) -> anyhow::Result<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let n = tokio::time::timeout(WAIT, self.task).await???;
        anyhow::ensure!(n > 0, "the writer made no write");
        Ok(n)
    }
}

/// The cells of one `| a | b |` table row, trimmed.
fn table_cells(row: &str) -> Vec<String> {
    let row = row.trim();
    let inner = row.strip_prefix('|').and_then(|r| r.strip_suffix('|'));
    inner
        .map(|r| r.split('|').map(|c| c.trim().to_string()).collect())
        .unwrap_or_default()
}

/// The rows of `osd status` (a prettytable without borders in 16.2):
/// `[id, host, used, avail, wr ops, wr data, rd ops, rd data, state]`,
/// sizes and rates joined to their unit letter.
fn osd_status_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            // A unit letter printed apart from its number joins it back.
            let mut cells: Vec<String> = Vec::new();
            for w in words {
                match (cells.last_mut(), w) {
                    (Some(last), u) if u.len() == 1 && "kMGTPE".contains(u) => last.push_str(u),
                    _ => cells.push(w.to_string()),
                }
            }
            (cells.len() == 9).then_some(cells)
        })
        .collect()
}

/// `(tags, value)` of each line-protocol line of `measurement`: tags as
/// `k=v,` pairs (each followed by a comma), the field `value=...`.
fn measurements(lines: &str, measurement: &str) -> Vec<(String, String)> {
    let prefix = format!("{measurement},");
    lines
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (tags, fields) = rest.split_once(' ')?;
            let value = fields.split_whitespace().next()?.strip_prefix("value=")?;
            Some((format!("{tags},"), value.to_string()))
        })
        .collect()
}

/// UTC now as Ceph's crash reports write it (`%Y-%m-%dT%H:%M:%S.%fZ`).
fn chrono_like_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%6NZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if out.is_empty() {
        "2026-12-05T10:00:00.000000Z".into()
    } else {
        out
    }
}
