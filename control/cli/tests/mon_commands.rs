//! The `kalmar` binary against a real mon process: Ceph's output and exit
//! codes, malformed arguments, unknown pools and OSDs, an unreachable mon.

#[path = "../../mon/tests/harness/mod.rs"]
mod harness;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use harness::Mon;
use serde_json::Value;

fn kalmar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kalmar"))
        .args(args)
        .env_remove("KALMAR_MON")
        .env_remove("KALMAR_CONF")
        .output()
        .expect("run kalmar")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `kalmar -m ADDR ARGS`; returns (exit code, stdout, stderr).
fn k(mon: &Mon, args: &str) -> (i32, String, String) {
    let addr = mon.addr.to_string();
    let mut argv = vec!["-m", addr.as_str()];
    argv.extend(args.split_whitespace());
    let out = kalmar(&argv);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn malformed_arguments_fail_clearly_without_a_mon() {
    for (args, code, needle) in [
        (vec!["osd", "pool", "create"], 22, "missing pool name"),
        (vec!["frobnicate"], 22, "unknown command 'frobnicate'"),
        (vec!["osd", "out", "abc"], 22, "invalid OSD id 'abc'"),
        (
            vec!["osd", "pool", "create", "p", "lots"],
            22,
            "PG_NUM must be a non-negative integer",
        ),
        (vec!["-f", "yaml", "status"], 1, "unknown format 'yaml'"),
        (vec!["status", "-f"], 1, "needs a value"),
        (vec![], 22, "no command given"),
        (vec!["osd", "crush", "test", "--num-rep", "3"], 1, "--map"),
        (
            vec!["daemon", "disk.0", "perf", "dump"],
            1,
            "invalid entity name",
        ),
        (
            vec!["daemon", "osd.0", "perf", "dump"],
            1,
            "no admin socket known for osd.0",
        ),
    ] {
        let out = kalmar(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A mon command with no mon address says how to give one.
    let out = kalmar(&["status"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("no mon address"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn unreachable_mon_is_a_bounded_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    let out = kalmar(&["-m", &addr, "--connect-timeout", "1", "status"]);
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t0.elapsed()
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("could not reach"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mon_commands_with_ceph_output() {
    let mon = Mon::start("osd_crush_chooseleaf_type = 0\nmon_tick_interval = 0.2\n").await;
    let m = mon.addr;
    let _osds = [
        harness::FakeOsd::create(m).await,
        harness::FakeOsd::create(m).await,
        harness::FakeOsd::create(m).await,
    ];
    let run = |args: &'static str| {
        let mon = &mon;
        tokio::task::block_in_place(|| k(mon, args))
    };
    let (rc, _, err) = run("osd pool create rbd 8 --size 2");
    assert_eq!((rc, err.trim()), (0, "pool 'rbd' created"));
    let (rc, _, err) = run("osd pool set rbd size 3");
    assert_eq!((rc, err.trim()), (0, "set pool 1 size to 3"));
    let (rc, out, _) = run("osd pool ls");
    assert_eq!((rc, out.as_str()), (0, "rbd\n"));
    let (rc, out, _) = run("osd dump -f json");
    assert_eq!(rc, 0);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["pools"][0]["size"], serde_json::json!(3));
    assert_eq!(v["osds"].as_array().map(Vec::len), Some(3));
    let (rc, out, _) = run("osd tree");
    assert_eq!(rc, 0);
    assert!(out.starts_with("ID  CLASS  WEIGHT"), "{out}");
    let (rc, out, _) = run("osd map rbd foo");
    assert_eq!(rc, 0);
    assert!(
        out.starts_with("osdmap e") && out.contains("object 'foo' -> pg 1.7fc1f406 (1.6)"),
        "{out}"
    );
    let (rc, out, _) = run("--format json osd map rbd foo");
    assert_eq!(rc, 0);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["pgid"], serde_json::json!("1.6"));
    // `pg map`: Ceph's line, and JSON agreeing with `osd map`.
    let (rc, out, _) = run("pg map 1.6");
    assert_eq!(rc, 0);
    assert!(
        out.starts_with("osdmap e")
            && out.contains(" pg 1.6 (1.6) -> up [")
            && out.contains("] acting ["),
        "{out}"
    );
    let (rc, out, _) = run("pg map 1.6 -f json");
    assert_eq!(rc, 0);
    let pg: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(pg["pgid"], serde_json::json!("1.6"));
    // The fake OSDs never boot: nothing is up, so the sets are empty.
    assert_eq!(pg["up"], serde_json::json!([]), "{pg}");
    assert_eq!(pg["epoch"], v["epoch"], "{pg}");
    assert_eq!(pg["acting"], v["acting"], "pg map and osd map agree");
    let (rc, _, err) = run("pg map 1.99");
    assert_eq!(rc, 2, "{err}");
    let (rc, _, err) = run("pg map nonsense");
    assert_ne!(rc, 0, "{err}");
    // `osd crush dump`: the devices, the host-less root and the rule.
    let (rc, out, _) = run("osd crush dump");
    assert_eq!(rc, 0);
    let crush: Value = serde_json::from_str(&out).expect("crush dump is JSON");
    let devices: Vec<&str> = crush["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(devices, vec!["osd.0", "osd.1", "osd.2"]);
    assert!(
        crush["buckets"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["name"] == "default")),
        "{crush}"
    );
    assert_eq!(crush["rules"][0]["rule_name"], "replicated_rule");
    assert!(crush["tunables"].is_object(), "{crush}");
    let (rc, out, _) = run("-s");
    assert_eq!(rc, 0);
    assert!(
        out.contains("  cluster:\n") && out.contains("pools:   1 pools, 8 pgs"),
        "{out}"
    );
    let (rc, out, _) = run("status -f json");
    assert_eq!(rc, 0);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["pgmap"]["num_pgs"], serde_json::json!(8));
    let (rc, _, err) = run("osd set noout");
    assert_eq!((rc, err.trim()), (0, "noout is set"));
    let (rc, out, _) = run("health");
    assert_eq!(rc, 0);
    assert!(
        out.starts_with("HEALTH_WARN") && out.contains("noout flag(s) set"),
        "{out}"
    );
    // Unknown pools and OSDs: Ceph's error line and errno as exit code.
    let (rc, _, err) = run("osd pool set nope size 2");
    assert_eq!(rc, 2, "{err}");
    assert!(
        err.starts_with("Error ENOENT: pool 'nope' does not exist"),
        "{err}"
    );
    let (rc, _, err) = run("osd out 9");
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("osd.9 does not exist"), "{err}");
    let (rc, _, err) = run("osd pool set rbd size 0");
    assert_eq!(rc, 34, "{err}");
    let (rc, _, err) = run("osd set noflag");
    assert_eq!(rc, 22, "{err}");
    let (rc, _, err) = run("osd pool rm rbd");
    assert_eq!(rc, 1, "{err}");
    let (rc, _, err) = run("osd pool rm rbd rbd --yes-i-really-really-mean-it");
    assert_eq!((rc, err.trim()), (0, "pool 'rbd' removed"));
    // Again: the pool is unknown now, a clear error and ENOENT's exit code.
    let (rc, _, err) = run("osd pool rm rbd rbd --yes-i-really-really-mean-it");
    assert_eq!(rc, 2, "{err}");
    assert_eq!(err.trim(), "Error ENOENT: pool 'rbd' does not exist");
    let (rc, out, _) = run("mgr stat");
    assert_eq!(rc, 0);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["available"], serde_json::json!(false));
    // The mon address from a conf file, and `daemon` via the conf.
    let conf = mon.dir.path().join("cli.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\nmon_host = \"{m}\"\n[\"mon.a\"]\nadmin_socket = \"{}\"\n",
            mon.admin_socket().display()
        ),
    )
    .expect("conf");
    let confs = conf.display().to_string();
    let out = tokio::task::block_in_place(|| kalmar(&["--conf", &confs, "osd", "stat"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("3 osds: 0 up"),
        "{}",
        text(&out.stdout)
    );
    let out = tokio::task::block_in_place(|| {
        kalmar(&["--conf", &confs, "daemon", "mon.a", "perf", "dump"])
    });
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["paxos"]["commit"].as_u64().is_some_and(|c| c > 0), "{v}");
    let out = tokio::task::block_in_place(|| {
        kalmar(&["--conf", &confs, "daemon", "mon.a", "config", "show"])
    });
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["osd_crush_chooseleaf_type"], serde_json::json!("0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mgr_dump_and_fail_through_the_cli() {
    let mon = Mon::start("mon_tick_interval = 0.2\nmon_mgr_beacon_grace = 30\n").await;
    let run = |args: &'static str| {
        let mon = &mon;
        tokio::task::block_in_place(|| k(mon, args))
    };
    // No mgr yet: nothing to fail.
    let (rc, _, err) = run("mgr fail");
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("no active mgr"), "{err}");
    let period = Duration::from_millis(200);
    let _a = harness::FakeMgr::start(mon.addr, "a", 11, period).await;
    harness::wait_for("mgr.a active", Duration::from_secs(10), || async {
        let v = mon.json(serde_json::json!({"prefix": "mgr dump"})).await;
        (v["active_name"] == "a" && v["available"] == true).then_some(())
    })
    .await;
    let _b = harness::FakeMgr::start(mon.addr, "b", 12, period).await;
    harness::wait_for("mgr.b standby", Duration::from_secs(10), || async {
        let v = mon.json(serde_json::json!({"prefix": "mgr dump"})).await;
        (v["standbys"][0]["name"] == "b").then_some(())
    })
    .await;
    let (rc, out, err) = run("mgr dump");
    assert_eq!(rc, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("mgr dump is JSON");
    assert_eq!(v["active_name"], "a");
    assert_eq!(v["active_gid"], 11);
    assert_eq!(v["standbys"][0]["gid"], 12);
    assert!(v["epoch"].as_u64().is_some_and(|e| e >= 2), "{v}");
    let epoch = v["epoch"].as_u64().unwrap_or(0);
    // `mgr fail` makes the standby active in a new epoch.
    let (rc, _, err) = run("mgr fail");
    assert_eq!(rc, 0, "{err}");
    let (rc, out, _) = run("mgr dump");
    assert_eq!(rc, 0);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["active_name"], "b", "{v}");
    assert!(v["epoch"].as_u64().is_some_and(|e| e > epoch), "{v}");
    let (rc, out, _) = run("mgr stat");
    assert_eq!(rc, 0);
    let s: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(s["active_name"], "b");
    // Failing a mgr by a name that is neither active nor standby.
    let (rc, _, err) = run("mgr fail nosuch");
    assert_eq!(rc, 2, "{err}");
    assert!(
        err.contains("'nosuch' is neither active nor standby"),
        "{err}"
    );
}
