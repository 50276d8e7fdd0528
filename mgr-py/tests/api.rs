//! Every MgrModule API method, called from a real plugin (tests/plugins/
//! apitest) against the fake cluster: shapes and values.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use kalmar_mgr_py::fake::OSD_COUNTERS;
use kalmar_mgr_py::{MgrStore, MonCommandReply};
use serde_json::{json, Value};

#[test]
fn get_returns_ceph_shaped_documents() {
    let h = harness(&["apitest"]);
    let v = h.call("get", json!(["osd_map"]))["value"].clone();
    assert_eq!(v["epoch"], 30);
    assert_eq!(v["osds"].as_array().unwrap().len(), 3);
    assert_eq!(v["osds"][1]["osd"], 1);
    assert_eq!(v["osds"][1]["up"], 1);
    assert_eq!(v["pools"][0]["pool_name"], "rbd");
    assert_eq!(v["pools"][0]["pg_placement_num"], 32);

    let tree = h.call("get", json!(["osd_map_tree"]))["value"].clone();
    assert!(tree["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["name"] == "osd.2" && n["status"] == "up"));
    let crush = h.call("get", json!(["osd_map_crush"]))["value"].clone();
    assert_eq!(crush["rules"][0]["steps"][1]["op"], "chooseleaf_firstn");

    let s = h.call("get", json!(["pg_summary"]))["value"].clone();
    assert_eq!(s["all"]["active+clean"], 40);
    assert_eq!(s["by_pool"]["1"]["active+clean"], 32);
    let st = h.call("get", json!(["pg_status"]))["value"].clone();
    assert_eq!(st["num_pgs"], 40);
    assert_eq!(st["pgs_by_state"][0]["state_name"], "active+clean");

    let dump = h.call("get", json!(["pg_dump"]))["value"].clone();
    assert_eq!(dump["pg_stats"].as_array().unwrap().len(), 40);
    assert_eq!(dump["osd_stats"].as_array().unwrap().len(), 3);
    let pgs = h.call("get", json!(["pg_stats"]))["value"].clone();
    assert_eq!(pgs["pg_stats"][0]["pgid"], "1.0");
    assert!(pgs["pg_stats"][0]["stat_sum"]["num_objects"].is_u64());
    let os = h.call("get", json!(["osd_stats"]))["value"].clone();
    assert!(os["osd_stats"][0]["perf_stat"]["commit_latency_ms"].is_u64());

    let df = h.call("get", json!(["df"]))["value"].clone();
    assert_eq!(df["stats"]["total_bytes"], 3u64 * (8 << 30));
    assert_eq!(df["pools"][1]["stats"]["objects"], 4780);

    // health and mon_status are {"json": text}, as in Ceph.
    let health = h.call("get", json!(["health"]));
    assert_eq!(health["type"], "dict");
    let inner: Value = serde_json::from_str(health["value"]["json"].as_str().unwrap()).unwrap();
    assert_eq!(inner["status"], "HEALTH_OK");
    let mon: Value = serde_json::from_str(
        h.call("get", json!(["mon_status"]))["value"]["json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(mon["monmap"]["mons"][0]["name"], "a");

    assert_eq!(
        h.call("get", json!(["mgr_map"]))["value"]["active_name"],
        "x"
    );
    assert!(h.call("get", json!(["io_rate"]))["value"]["pg_stats_delta"].is_object());
    let md = h.call("get", json!(["osd_metadata"]))["value"].clone();
    assert_eq!(md["2"]["hostname"], "vm");
    assert_eq!(md["2"]["id"], "2");
    // No file systems: an empty FSMap, as Ceph's on a cluster without any.
    let fs = h.call("get", json!(["fs_map"]))["value"].clone();
    assert_eq!(fs["filesystems"], json!([]), "{fs}");
    assert_eq!(fs["standbys"], json!([]), "{fs}");
    // Unknown names give None.
    assert_eq!(h.call("get", json!(["no_such_map"]))["value"], Value::Null);
    // get_osdmap wrapper.
    assert_eq!(
        h.call("get_osdmap", json!([])).get("type").unwrap(),
        "OSDMap"
    );
}

#[test]
fn perf_counter_accessors() {
    let mut h = harness(&["apitest"]);
    let schema = h.call("get_perf_schema", json!(["osd", "0"]))["value"].clone();
    let s = &schema["osd.0"]["osd.op_w"];
    assert_eq!(s["type"], 10);
    assert_eq!(s["priority"], 5);
    assert_eq!(s["units"], 1);
    assert!(s["description"].is_string() && s["nick"].is_string());
    assert_eq!(
        schema["osd.0"].as_object().unwrap().len(),
        OSD_COUNTERS.len()
    );
    // "" is a wildcard.
    let all = h.call("get_perf_schema", json!(["osd", ""]))["value"].clone();
    assert_eq!(all.as_object().unwrap().len(), 3);

    // Writes on osd.1 between two reports: op_w grows by their number.
    let before = h.call("get_latest", json!(["osd", "1", "osd.op_w"]))["value"]
        .as_u64()
        .unwrap();
    h.osds[1].add("osd.op_w", 7, 0);
    h.osds[1].add("osd.op_w_latency", 7_000_000, 7);
    h.report_all(t0() + Duration::from_secs(5));
    let after = h.call("get_latest", json!(["osd", "1", "osd.op_w"]));
    assert_eq!(after["type"], "int");
    assert_eq!(after["value"].as_u64().unwrap(), before + 7);

    let c = h.call("get_counter", json!(["osd", "1", "osd.op_w"]))["value"].clone();
    let samples = c["osd.op_w"].as_array().unwrap();
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0][0], 1_800_000_000.0);
    assert_eq!(samples[1][0], 1_800_000_005.0);
    assert_eq!(
        samples[1][1].as_u64().unwrap() - samples[0][1].as_u64().unwrap(),
        7
    );

    let avg = h.call("get_counter", json!(["osd", "1", "osd.op_w_latency"]))["value"].clone();
    assert_eq!(avg["osd.op_w_latency"][1].as_array().unwrap().len(), 3);
    let (s0, c0) = (
        h.osds[1].values[h.osds[1].index("osd.op_w_latency").unwrap()].0,
        0,
    );
    let la = h.call("get_latest_avg", json!(["osd", "1", "osd.op_w_latency"]));
    assert_eq!(la["type"], "tuple");
    assert_eq!(la["value"][0].as_u64().unwrap(), s0);
    assert!(la["value"][1].as_u64().unwrap() > c0);
    let lc = h.call("get_latest_counter", json!(["osd", "1", "osd.op_w"]))["value"].clone();
    assert_eq!(lc["osd.op_w"][0], 1_800_000_005.0);

    let all = h.call("get_all_perf_counters", json!([]))["value"].clone();
    let op_w = &all["osd.1"]["osd.op_w"];
    assert_eq!(op_w["value"].as_u64().unwrap(), before + 7);
    assert_eq!(op_w["type"], 10);
    assert!(op_w.get("count").is_none());
    assert!(all["osd.1"]["osd.op_w_latency"]["count"].as_u64().unwrap() > 0);
    // PRIO_USEFUL by default: the DEBUGONLY bluestore.kv_commit_lat is left out.
    assert!(all["osd.0"].get("bluestore.kv_commit_lat").is_none());
    let prio0 = h.call("get_all_perf_counters", json!([0]))["value"].clone();
    assert!(prio0["osd.0"].get("bluestore.kv_commit_lat").is_some());
    let none = h.call("get_all_perf_counters", json!([5, ["mds"]]))["value"].clone();
    assert_eq!(none, json!({}));
    // Missing things are empty, not errors.
    assert_eq!(
        h.call("get_latest", json!(["osd", "9", "osd.op_w"]))["value"],
        0
    );
    assert_eq!(
        h.call("get_latest_avg", json!(["osd", "9", "osd.x"]))["value"],
        json!([0, 0])
    );
    assert_eq!(
        h.call("get_counter", json!(["osd", "9", "osd.op_w"]))["value"],
        json!({"osd.op_w": []})
    );
    // Reef names.
    assert_eq!(
        h.call(
            "get_unlabeled_counter_latest",
            json!(["osd", "1", "osd.op_w"])
        )["value"],
        before + 7
    );
}

#[test]
fn servers_metadata_identity() {
    let h = harness(&["apitest"]);
    let servers = h.call("list_servers", json!([]))["value"].clone();
    assert_eq!(servers[0]["hostname"], "vm");
    assert_eq!(servers[0]["services"].as_array().unwrap().len(), 3);
    assert_eq!(servers[0]["services"][0]["type"], "osd");
    assert_eq!(servers[0]["services"][0]["id"], "0");
    assert_eq!(
        h.call("get_server", json!(["vm"]))["value"]["hostname"],
        "vm"
    );
    assert_eq!(h.call("get_server", json!(["nope"]))["value"], Value::Null);
    assert_eq!(
        h.call("get_metadata", json!(["osd", "0"]))["value"]["osd_objectstore"],
        "kalmar"
    );
    assert_eq!(
        h.call("get_metadata", json!(["osd", "7", "dflt"]))["value"],
        "dflt"
    );
    assert_eq!(h.call("get_mgr_id", json!([]))["value"], "x");
    assert_eq!(h.call("have_mon_connection", json!([]))["value"], true);
    h.host
        .connected
        .store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(h.call("have_mon_connection", json!([]))["value"], false);
}

#[test]
fn mon_command_round_trip_and_timeout() {
    let h = harness_with(&["apitest"], |c| {
        c.mon_command_timeout = Duration::from_millis(300)
    });
    h.host.replies.lock().insert(
        "osd pool ls".into(),
        MonCommandReply {
            retval: 0,
            outb: b"[\"rbd\"]".to_vec(),
            outs: String::new(),
        },
    );
    let r = h.call(
        "mon_command",
        json!([{"prefix": "osd pool ls", "format": "json"}]),
    );
    assert_eq!(r["value"], json!([0, "[\"rbd\"]", ""]));
    assert_eq!(h.host.commands.lock()[0]["format"], "json");
    let r = h.call("mon_command", json!([{"prefix": "bogus"}]));
    assert_eq!(r["value"][0], -22);
    let tb = h.call_err("check_mon_command", json!([{"prefix": "bogus"}]));
    assert!(tb.contains("MonCommandFailed"), "{tb}");
    // A mon that never answers: the plugin gets -ETIMEDOUT, bounded.
    h.host.hang_prefixes.lock().push("osd tree".into());
    let t = std::time::Instant::now();
    let r = h.call("mon_command", json!([{"prefix": "osd tree"}]));
    assert_eq!(r["value"][0], -110);
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn options_store_health_log() {
    let h = harness(&["apitest"]);
    // Declared defaults, typed.
    assert_eq!(
        h.call("get_module_option", json!(["interval"]))["value"],
        60
    );
    assert_eq!(h.call("get_module_option", json!(["ratio"]))["value"], 0.5);
    assert_eq!(
        h.call("get_module_option", json!(["enabled_feature"]))["value"],
        false
    );
    assert_eq!(
        h.call("get_module_option", json!(["legacy_dict_option"]))["value"],
        "x"
    );
    assert_eq!(
        h.call("get_module_option", json!(["log_level"]))["value"],
        ""
    );
    // Set and read back; stored where Ceph keeps it.
    h.call("set_module_option", json!(["interval", 120]));
    assert_eq!(
        h.call("get_module_option", json!(["interval"]))["value"],
        120
    );
    assert_eq!(
        h.store.config_get("mgr/apitest/interval").as_deref(),
        Some("120")
    );
    h.call("set_module_option", json!(["enabled_feature", true]));
    assert_eq!(
        h.call("get_module_option", json!(["enabled_feature"]))["value"],
        true
    );
    h.call("set_module_option", json!(["interval", null]));
    assert_eq!(
        h.call("get_module_option", json!(["interval"]))["value"],
        60
    );
    // Undeclared keys and bad values raise.
    assert!(h
        .call_err("get_module_option", json!(["nope"]))
        .contains("RuntimeError"));
    assert!(h
        .call_err("set_module_option", json!(["nope", 1]))
        .contains("RuntimeError"));
    assert!(h
        .call_err("set_module_option", json!(["interval", 0]))
        .contains("below the minimum"));
    assert!(h
        .call_err("set_module_option", json!(["mode", "medium"]))
        .contains("not one of"));
    assert!(h
        .call_err("set_module_option", json!(["interval", "abc"]))
        .contains("ValueError"));
    // Localized options fall back to the global value.
    h.call("set_module_option", json!(["mode", "slow"]));
    assert_eq!(
        h.call("get_localized_module_option", json!(["mode"]))["value"],
        "slow"
    );
    h.call("set_localized_module_option", json!(["mode", "fast"]));
    assert_eq!(
        h.store.config_get("mgr/apitest/x/mode").as_deref(),
        Some("fast")
    );
    assert_eq!(
        h.call("get_localized_module_option", json!(["mode"]))["value"],
        "fast"
    );

    // Options set from outside reach config_notify.
    h.mods
        .set_module_option("apitest", "ratio", Some("0.25"))
        .unwrap();
    assert!(h
        .mods
        .set_module_option("apitest", "nope", Some("1"))
        .is_err());
    assert!(h
        .mods
        .set_module_option("apitest", "interval", Some("x"))
        .is_err());
    assert!(wait_for(Duration::from_secs(5), || {
        let r = h.cmd("api notifications");
        serde_json::from_str::<Value>(&r.stdout).unwrap()["config_changes"] == 1
    }));
    assert_eq!(h.call("get_module_option", json!(["ratio"]))["value"], 0.25);

    // Store.
    assert_eq!(h.call("get_store", json!(["k1"]))["value"], Value::Null);
    assert_eq!(h.call("get_store", json!(["k1", "dflt"]))["value"], "dflt");
    h.call("set_store", json!(["k1", "v1"]));
    h.call("set_store", json!(["k2", "v2"]));
    h.call("set_store", json!(["other", "v3"]));
    assert_eq!(h.call("get_store", json!(["k1"]))["value"], "v1");
    assert_eq!(h.store.kv_get("mgr/apitest/k1").as_deref(), Some("v1"));
    assert_eq!(
        h.call("get_store_prefix", json!(["k"]))["value"],
        json!({"k1": "v1", "k2": "v2"})
    );
    h.call("set_store", json!(["k1", null]));
    assert_eq!(h.call("get_store", json!(["k1"]))["value"], Value::Null);
    h.call("set_localized_store", json!(["lk", "lv"]));
    assert_eq!(h.call("get_localized_store", json!(["lk"]))["value"], "lv");
    let big = "x".repeat(70 * 1024);
    assert!(h
        .call_err("set_store", json!(["big", big]))
        .contains("max_store_value_bytes"));

    // Health checks: set, merged into the host's view, cleared.
    h.call(
        "set_health_checks",
        json!([{"APITEST_WARN": {"severity": "warning", "summary": "apitest is unhappy", "count": 2,
                                  "detail": ["one", "two"]}}]),
    );
    let checks = h.mods.health_checks();
    let c = &checks["APITEST_WARN"];
    assert_eq!(c.count, 2);
    assert_eq!(c.detail, vec!["one", "two"]);
    assert_eq!(c.to_json()["severity"], "HEALTH_WARN");
    assert!(h
        .call_err(
            "set_health_checks",
            json!([{"X": {"severity": "bad", "summary": "s"}}])
        )
        .contains("severity"));
    h.call("set_health_checks", json!([{}]));
    assert!(h.mods.health_checks().is_empty());

    // Cluster log and the module's logger.
    h.call(
        "cluster_log",
        json!(["cluster", 3, "apitest to the cluster log"]),
    );
    assert_eq!(h.host.clog.lock()[0].2, "apitest to the cluster log");
    assert_eq!(h.cmd("api log hello").retval, 0);
    // set_uri shows in services.
    h.call("set_uri", json!(["http://127.0.0.1:1/"]));
    assert_eq!(h.mods.services()["apitest"], "http://127.0.0.1:1/");
}

#[test]
fn notify_fan_out_serve_and_shutdown() {
    let h = harness(&["apitest", "hello"]);
    assert!(wait_for(Duration::from_secs(5), || h
        .store
        .kv_get("mgr/apitest/serve_state")
        .as_deref()
        == Some("running")));
    for t in [
        "osd_map",
        "pg_summary",
        "health",
        "mon_map",
        "command",
        "clog",
        "fs_map",
    ] {
        h.mods
            .notify_all(t, if t == "command" { "tag1" } else { "" });
    }
    let seen = || -> Value {
        let r = h.cmd("api notifications");
        serde_json::from_str::<Value>(&r.stdout).unwrap()["seen"].clone()
    };
    assert!(wait_for(Duration::from_secs(5), || seen()
        .as_array()
        .unwrap()
        .len()
        == 5));
    // Only NOTIFY_TYPES arrive, in order, as NotifyType members.
    assert_eq!(
        seen(),
        json!([
            ["osd_map", "", "NotifyType"],
            ["pg_summary", "", "NotifyType"],
            ["health", "", "NotifyType"],
            ["mon_map", "", "NotifyType"],
            ["command", "tag1", "NotifyType"]
        ])
    );
    // The seed-era hello module declares no notify: not queued for it.
    assert_eq!(h.mods.notify_all("osd_map", ""), 1);

    let t = std::time::Instant::now();
    let reports = h.mods.shutdown();
    assert!(
        reports.iter().all(|r| r.abandoned.is_empty()),
        "{reports:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(
        h.store.kv_get("mgr/apitest/serve_state").as_deref(),
        Some("stopped")
    );
    assert_eq!(h.mods.notify_all("osd_map", ""), 0);
}
