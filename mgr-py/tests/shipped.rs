//! The shipped prometheus and status plugins over HTTP.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use kalmar_common::perf::{CounterKind, PerfCountersBuilder, Unit, PRIO_DEBUGONLY, PRIO_USEFUL};
use kalmar_mgr_py::fake::FakeCluster;
use kalmar_mgr_py::{pack_values, DaemonKey, PerfCounterType, ReportData};
use serde_json::Value;

/// `name{labels}` -> value, from exposition text.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            l.rsplit_once(' ')
                .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        })
        .collect()
}

fn start_on_free_port(h: &Harness, module: &str) -> u16 {
    let port = free_port();
    h.mods
        .set_module_option(module, "server_port", Some(&port.to_string()))
        .unwrap();
    h.mods.enable(module, false).unwrap();
    assert!(wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    port
}

#[test]
fn prometheus_metrics_have_cephs_names_and_the_admin_socket_values() {
    let h = harness(&[]);
    // osd.0 reports real kalmar-common counters (what its admin socket shows).
    let mut b = PerfCountersBuilder::new("osd");
    let op_w = b.add(
        "op_w",
        CounterKind::Counter,
        "Client write operations",
        "",
        PRIO_USEFUL,
        Unit::None,
    );
    let lat = b.add(
        "op_w_latency",
        CounterKind::TimeAvg,
        "Latency of writes",
        "",
        PRIO_USEFUL,
        Unit::None,
    );
    let inb = b.add(
        "op_w_in_bytes",
        CounterKind::Counter,
        "Bytes written",
        "",
        PRIO_USEFUL,
        Unit::Bytes,
    );
    let numpg = b.add(
        "numpg",
        CounterKind::Gauge,
        "Placement groups",
        "pgs",
        PRIO_USEFUL,
        Unit::None,
    );
    let dbg = b.add(
        "subop_w",
        CounterKind::Counter,
        "debug only",
        "",
        PRIO_DEBUGONLY,
        Unit::None,
    );
    let logger = b.build();
    let writes = 25u64;
    for _ in 0..writes {
        logger.inc(op_w, 1);
        logger.inc(inb, 4096);
        logger.tinc(lat, Duration::from_micros(1500));
        logger.inc(dbg, 1);
    }
    logger.set(numpg, 45);
    let types = PerfCounterType::from_logger(&logger);
    let values: Vec<(u64, u64)> = (0..types.len())
        .map(|i| {
            let v = logger.get(i);
            (v.value, v.count)
        })
        .collect();
    let key = DaemonKey::new("osd", "0");
    h.state
        .open_session(&key, kalmar_mgr_py::fake::osd_metadata("0", "vm"))
        .unwrap();
    let packed = pack_values(&types, &values);
    h.state
        .ingest_report(
            &key,
            &ReportData {
                declare_types: &types,
                undeclare_types: &[],
                packed: &packed,
                timestamp: t0(),
            },
        )
        .unwrap();
    // A degraded cluster, to see health and per-pool PG states.
    let fake = FakeCluster {
        degraded_pgs: 4,
        ..FakeCluster::default()
    };
    fake.publish(&h.cluster);

    let port = start_on_free_port(&h, "prometheus");
    let (code, body) = http_get(port, "/metrics");
    assert_eq!(code, 200);
    let s = samples(&body);
    let dump = logger.dump();
    let d = "{ceph_daemon=\"osd.0\"}";
    assert_eq!(
        s[&format!("ceph_osd_op_w{d}")],
        dump["op_w"].as_f64().unwrap()
    );
    assert_eq!(s[&format!("ceph_osd_op_w{d}")], writes as f64);
    assert_eq!(
        s[&format!("ceph_osd_op_w_in_bytes{d}")],
        dump["op_w_in_bytes"].as_f64().unwrap()
    );
    assert_eq!(s[&format!("ceph_osd_numpg{d}")], 45.0);
    let sum = s[&format!("ceph_osd_op_w_latency_sum{d}")];
    assert!(
        (sum - dump["op_w_latency"]["sum"].as_f64().unwrap()).abs() < 1e-9,
        "{sum}"
    );
    assert_eq!(
        s[&format!("ceph_osd_op_w_latency_count{d}")],
        dump["op_w_latency"]["avgcount"].as_f64().unwrap()
    );
    assert!(
        !body.contains("ceph_osd_subop_w{"),
        "DEBUGONLY counters are not exported"
    );
    // Other OSDs' full counter sets are there too.
    assert!(s.contains_key("ceph_bluestore_commit_lat_sum{ceph_daemon=\"osd.2\"}"));
    assert!(body.contains("# TYPE ceph_osd_op_w counter"));
    assert!(body.contains("# TYPE ceph_osd_numpg gauge"));
    assert!(body.contains("# TYPE ceph_osd_op_w_latency_sum counter"));

    // Cluster metrics.
    assert_eq!(s["ceph_health_status"], 1.0);
    assert_eq!(
        s["ceph_health_detail{name=\"PG_DEGRADED\",severity=\"HEALTH_WARN\"}"],
        1.0
    );
    for i in 0..3 {
        assert_eq!(s[&format!("ceph_osd_up{{ceph_daemon=\"osd.{i}\"}}")], 1.0);
        assert_eq!(s[&format!("ceph_osd_in{{ceph_daemon=\"osd.{i}\"}}")], 1.0);
        assert_eq!(
            s[&format!("ceph_osd_weight{{ceph_daemon=\"osd.{i}\"}}")],
            1.0
        );
    }
    assert_eq!(s["ceph_pg_total{pool_id=\"1\"}"], 32.0);
    assert_eq!(s["ceph_pg_active{pool_id=\"1\"}"], 32.0);
    assert_eq!(s["ceph_pg_clean{pool_id=\"1\"}"], 28.0);
    assert_eq!(s["ceph_pg_degraded{pool_id=\"1\"}"], 4.0);
    assert_eq!(s["ceph_pg_undersized{pool_id=\"1\"}"], 4.0);
    assert_eq!(s["ceph_pg_clean{pool_id=\"2\"}"], 8.0);
    assert_eq!(s["ceph_pg_backfilling{pool_id=\"2\"}"], 0.0);
    let df = fake.df();
    assert_eq!(
        s["ceph_cluster_total_bytes"],
        df["stats"]["total_bytes"].as_f64().unwrap()
    );
    assert_eq!(
        s["ceph_cluster_total_used_bytes"],
        df["stats"]["total_used_bytes"].as_f64().unwrap()
    );
    assert_eq!(
        s["ceph_cluster_total_used_raw_bytes"],
        df["stats"]["total_used_raw_bytes"].as_f64().unwrap()
    );
    assert_eq!(s["ceph_pool_stored{pool_id=\"1\"}"], (2u64 << 30) as f64);
    assert_eq!(s["ceph_pool_objects{pool_id=\"2\"}"], 4780.0);
    assert!(s.contains_key("ceph_pool_max_avail{pool_id=\"1\"}"));
    assert!(s.contains_key("ceph_pool_wr_bytes{pool_id=\"1\"}"));
    assert!(s["ceph_num_objects_degraded"] > 0.0);
    assert_eq!(s["ceph_mon_quorum_status{ceph_daemon=\"mon.a\"}"], 1.0);
    assert_eq!(s["ceph_mgr_status{ceph_daemon=\"mgr.x\"}"], 1.0);
    assert!(body.contains("ceph_osd_metadata{back_iface=\"\",ceph_daemon=\"osd.0\""));
    assert!(body.contains("ceph_pool_metadata{pool_id=\"1\",name=\"rbd\",type=\"replicated\""));
    assert_eq!(s["ceph_osd_flag_noout"], 0.0);
    assert!(s.contains_key("ceph_osd_apply_latency_ms{ceph_daemon=\"osd.1\"}"));

    // promtool parses it; exit 3 only for lint findings Ceph's names draw.
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool missing: install the Debian package `prometheus` (scripts/setup.sh does)",
        );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out.status.code().unwrap();
    assert!(code == 0 || code == 3, "promtool exit {code}: {text}");
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let l = line.to_lowercase();
        assert!(
            l.contains("_total")
                || l.contains("should not have")
                || l.contains("counter metrics")
                || l.contains("units"),
            "unexpected promtool finding: {line}"
        );
    }

    // Same families and TYPEs as Ceph's own exporter where both have them.
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/reference/ceph-samples/mgr-prometheus-metrics-head200.txt"
    );
    if let Ok(ceph) = std::fs::read_to_string(sample) {
        let types = |t: &str| -> BTreeMap<String, String> {
            t.lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .filter_map(|l| {
                    l.split_once(' ')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                })
                .collect()
        };
        let (ours, theirs) = (types(&body), types(&ceph));
        let mut common_names = 0;
        for (name, t) in &theirs {
            if let Some(o) = ours.get(name) {
                common_names += 1;
                assert_eq!(o, t, "TYPE of {name} differs from Ceph's");
            }
        }
        assert!(
            common_names >= 40,
            "only {common_names} families in common with Ceph's exporter"
        );
    } else {
        eprintln!("note: {sample} not found; skipped the family comparison");
    }

    // Index, 404, the command form, then a bounded stop that frees the port.
    assert_eq!(http_get(port, "/").0, 200);
    assert_eq!(http_get(port, "/nope").0, 404);
    let r = h.cmd("prometheus metrics");
    assert!(r
        .stdout
        .contains("ceph_osd_op_w{ceph_daemon=\"osd.0\"} 25.0"));
    assert_eq!(
        h.mods.services()["prometheus"],
        format!("http://127.0.0.1:{port}/")
    );
    let rep = h.mods.disable("prometheus").unwrap().unwrap();
    assert!(rep.abandoned.is_empty(), "{rep:?}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn prometheus_port_in_use_is_reported() {
    let h = harness(&[]);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    h.mods
        .set_module_option("prometheus", "server_port", Some(&port.to_string()))
        .unwrap();
    h.mods.enable("prometheus", false).unwrap();
    assert!(wait_for(Duration::from_secs(10), || h
        .mods
        .health_checks()
        .contains_key("MGR_MODULE_ERROR")));
    let c = &h.mods.health_checks()["MGR_MODULE_ERROR"];
    assert!(
        c.summary.contains("prometheus") && c.summary.contains("Address already in use"),
        "{}",
        c.summary
    );
}

#[test]
fn status_plugin_over_command_and_http() {
    let h = harness(&[]);
    let port = start_on_free_port(&h, "status");
    let (code, body) = http_get(port, "/status");
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["fsid"], h.fake.fsid);
    assert_eq!(v["health"]["status"], "HEALTH_OK");
    assert_eq!(v["osdmap"]["num_osds"], 3);
    assert_eq!(v["osdmap"]["num_in_osds"], 3);
    assert_eq!(v["pgmap"]["num_pgs"], 40);
    assert_eq!(
        v["pgmap"]["pgs_by_state"][0],
        serde_json::json!({"state_name": "active+clean", "count": 40})
    );
    let (_, text) = http_get(port, "/status.txt");
    assert!(text.contains("health: HEALTH_OK"), "{text}");
    assert!(text.contains("osd: 3 osds: 3 up, 3 in"), "{text}");
    assert!(text.contains("40   active+clean"), "{text}");
    let r = h.cmd("status");
    assert_eq!(r.stdout, text);
    let r = h.cmd("osd status");
    assert_eq!(r.retval, 0, "{}", r.stderr);
    let first_row = r.stdout.lines().nth(1).unwrap().to_string();
    assert!(
        first_row.starts_with("0 ") && first_row.contains("vm") && first_row.contains("exists,up"),
        "{}",
        r.stdout
    );
    let r = h
        .mods
        .handle_command(&words("osd status"), Some("json"), None);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["OSDs"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["OSDs"][1]["wr_ops"],
        h.osds[1].values[h.osds[1].index("osd.op_w").unwrap()].0
    );
    let rep = h.mods.disable("status").unwrap().unwrap();
    assert!(rep.abandoned.is_empty());
}
