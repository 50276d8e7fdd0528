//! Debian's Prometheus scraping a live cluster through both endpoints
//! (the mgr's prometheus module and `kalmar exporter`), with Ceph's alert
//! rules (Debian's `ceph-prometheus-alerts`) loaded and every query of
//! Ceph's cluster, OSD, pool and host dashboards (`ceph-grafana-dashboards`)
//! evaluated through the HTTP API: each query about what Kalmar has must
//! return data. Then an OSD is killed: `CephOSDDown` fires naming it, and
//! `promtool test rules` evaluates Ceph's rules over the samples Prometheus
//! scraped and must find the same alert, with the same text.
//!
//! Packages are installed with apt when missing; skipped (with a message)
//! only when that fails.

mod mgr_common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use kalmar_tests::{wait_for, Cluster};
use mgr_common::scrape::*;
use mgr_common::*;
use serde_json::{json, Value};

const PACKAGES: [&str; 3] = [
    "prometheus",
    "ceph-prometheus-alerts",
    "ceph-grafana-dashboards",
];
const RULES: &str = "/etc/prometheus/ceph/ceph_default_alerts.yml";
const DASHBOARDS_DIR: &str = "/etc/grafana/dashboards/ceph-dashboard";
/// The dashboards of what an OSD-only system has (not CephFS, RGW, RBD).
const DASHBOARDS: [&str; 7] = [
    "ceph-cluster.json",
    "hosts-overview.json",
    "host-details.json",
    "osds-overview.json",
    "osd-device-details.json",
    "pool-overview.json",
    "pool-detail.json",
];
/// Names with no Kalmar counterpart (README: not BlueStore; no per-daemon
/// health metrics): queries using them are not expected to return data.
const NOT_APPLICABLE: [&str; 4] = [
    "ceph_bluefs_wal_total_bytes",
    "ceph_bluestore_onode_hits",
    "ceph_bluestore_onode_misses",
    "ceph_daemon_health_metrics",
];
const WAIT: Duration = Duration::from_secs(60);

/// Prometheus as a child process, killed (by its handle) when dropped.
struct Prometheus {
    child: Child,
    api: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn host_port(url: &str) -> anyhow::Result<String> {
    let rest = url.strip_prefix("http://").context("not an http URL")?;
    Ok(rest.split('/').next().unwrap_or(rest).to_string())
}

/// Ceph's rules with every `for:` shortened to 1 s, so an alert that
/// waits 5 minutes on a real cluster fires within the test's bounds.
fn fast_rules(dir: &Path) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(RULES)?;
    let fast: String = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: \"1s\"", &l[..l.len() - l.trim_start().len()]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let p = dir.join("rules.yml");
    std::fs::write(&p, fast)?;
    Ok(p)
}

fn start_prometheus(dir: &Path, targets: &[(&str, String)]) -> anyhow::Result<Prometheus> {
    let rules = fast_rules(dir)?;
    let mut conf = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [\"{}\"]\nscrape_configs:\n",
        rules.display()
    );
    for (job, target) in targets {
        conf.push_str(&format!(
            "  - job_name: {job}\n    honor_labels: true\n    static_configs: [{{targets: [\"{target}\"]}}]\n"
        ));
    }
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, conf)?;
    let port = free_port()?;
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log"))?)
        .spawn()
        .context("starting prometheus")?;
    Ok(Prometheus {
        child,
        api: format!("http://127.0.0.1:{port}/api/v1"),
    })
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query's result vector.
fn query(p: &Prometheus, q: &str) -> anyhow::Result<Vec<Value>> {
    let body = http_get(&format!("{}/query?query={}", p.api, percent_encode(q)))?;
    let v: Value = serde_json::from_str(&body)?;
    if v["status"] != "success" {
        bail!("query {q}: {v}");
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Every `expr` of a dashboard, wherever it is nested.
fn exprs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(e)) => {
                        out.insert(e.clone());
                    }
                    _ => exprs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

/// The template variables of the dashboards, set to this cluster's.
fn substitute(q: &str, host: &str) -> String {
    let vars = [
        ("$__rate_interval", "1m"),
        ("$__interval", "1m"),
        ("$__range", "1m"),
        ("$interval", "1m"),
        ("$pool_name", "rbd"),
        ("$ceph_hosts", host),
        ("$osd_hosts", host),
        ("$rbd_hosts", host),
        ("$osd", "osd.0"),
        ("$topk", "15"),
        ("$job", "ceph"),
    ];
    let mut q = q.to_string();
    for (k, v) in vars {
        q = q.replace(&format!("${{{}}}", &k[1..]), v).replace(k, v);
    }
    q
}

/// Removes `"..."` strings, `{...}` label matchers and the label lists of
/// `by|on|without|ignoring|group_left|group_right (...)`: what is left
/// names metrics and functions only.
fn bare(q: &str) -> String {
    let mut out = String::new();
    let mut chars = q.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                for d in chars.by_ref() {
                    if d == '"' {
                        break;
                    }
                }
            }
            '{' => {
                for d in chars.by_ref() {
                    if d == '}' {
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
    }
    for kw in [
        "by",
        "on",
        "without",
        "ignoring",
        "group_left",
        "group_right",
    ] {
        let mut s = String::new();
        let mut rest = out.as_str();
        while let Some(i) = find_word(rest, kw) {
            s.push_str(&rest[..i]);
            let after = rest[i + kw.len()..].trim_start();
            match after
                .strip_prefix('(')
                .and_then(|a| a.find(')').map(|j| &a[j + 1..]))
            {
                Some(tail) => rest = tail,
                None => {
                    s.push_str(kw);
                    rest = &rest[i + kw.len()..];
                }
            }
        }
        s.push_str(rest);
        out = s;
    }
    out
}

fn find_word(s: &str, w: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(i) = s[from..].find(w).map(|i| i + from) {
        let before = s[..i].chars().next_back().is_none_or(|c| !is_ident(c));
        let after = s[i + w.len()..].chars().next().is_none_or(|c| !is_ident(c));
        if before && after {
            return Some(i);
        }
        from = i + w.len();
    }
    None
}

/// The `ceph_*` and `node_*` metric names a query reads.
fn metrics_of(q: &str) -> BTreeSet<String> {
    bare(q)
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("ceph_") || w.starts_with("node_"))
        .map(String::from)
        .collect()
}

/// Whether a query filters by value or label exclusion, so that an empty
/// answer can be right (`ceph_osd_up == 0` on a healthy cluster).
fn may_be_empty(q: &str) -> bool {
    let b = bare(q);
    ["==", "!=", ">", "<"].iter().any(|op| b.contains(op)) || q.contains("!=") || q.contains("!~")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_runs_ceph_dashboards_and_alerts() -> anyhow::Result<()> {
    if let Err(why) = tokio::task::spawn_blocking(|| apt::ensure_packages(&PACKAGES)).await? {
        eprintln!("SKIPPED: Prometheus or Ceph's dashboards are not available: {why}");
        return Ok(());
    }
    let c = Cluster::start(opts(1)).await?;
    let tmp = tempfile::tempdir()?;
    let r = run(&c, tmp.path()).await;
    if r.is_err() {
        kalmar_tests::print_logs(c.dir());
        if let Ok(log) = std::fs::read_to_string(tmp.path().join("prometheus.log")) {
            eprintln!(
                "===== prometheus.log (last lines)\n{}",
                log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
            );
        }
    }
    r
}

async fn run(c: &Cluster, tmp: &Path) -> anyhow::Result<()> {
    let addr = wait_active(c, "x", WAIT).await?;
    c.create_pool("rbd", 8, 3, 2).await?;
    c.wait_pgs(1, 8, &["active", "clean"], WAIT).await?;
    enable_module(c, addr, "prometheus").await?;
    let mgr_url = wait_for("prometheus in mgr services", WAIT, || async {
        mgr_map(c).await.ok()?["services"]["prometheus"]
            .as_str()
            .map(String::from)
    })
    .await?;
    let exporter = Exporter::start(c)?;
    write_objects(c, "rbd", "obj", 20, 64 * 1024).await?;

    let prom = start_prometheus(
        tmp,
        &[
            ("ceph", host_port(&mgr_url)?),
            ("ceph-exporter", host_port(&exporter.url)?),
        ],
    )?;
    wait_for("both targets scraped", WAIT, || async {
        let v: Value =
            serde_json::from_str(&http_get(&format!("{}/targets", prom.api)).ok()?).ok()?;
        let targets = v["data"]["activeTargets"].as_array()?;
        (targets.len() == 2 && targets.iter().all(|t| t["health"] == "up")).then_some(())
    })
    .await?;
    // Rates need two samples of each series.
    wait_for("two scrapes of the pool's writes", WAIT, || async {
        let r = query(&prom, "count_over_time(ceph_pool_wr[1m])").ok()?;
        r.iter()
            .any(|s| s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()) >= Some(2.0))
            .then_some(())
    })
    .await?;

    // Every dashboard query about what Kalmar serves returns data.
    let served: BTreeSet<String> = query(&prom, "count by (__name__) ({__name__=~\"ceph_.+\"})")?
        .iter()
        .filter_map(|s| s["metric"]["__name__"].as_str().map(String::from))
        .collect();
    let host = kalmar_common::hostname();
    let (mut evaluated, mut skipped) = (0, 0);
    let mut empty = Vec::new();
    for d in DASHBOARDS {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(Path::new(DASHBOARDS_DIR).join(d))?)?;
        let mut all = BTreeSet::new();
        exprs(&v, &mut all);
        for e in all {
            let q = substitute(&e, &host);
            let names = metrics_of(&q);
            let ours = !names.is_empty() && names.iter().all(|n| served.contains(n));
            if !ours {
                // node_exporter's host metrics, or a name listed as not
                // applicable: nothing Kalmar serves.
                assert!(
                    names.iter().all(|n| n.starts_with("node_") || served.contains(n) || NOT_APPLICABLE.contains(&n.as_str())),
                    "{d}: {q} reads a Ceph name Kalmar neither serves nor lists as not applicable: {names:?}"
                );
                skipped += 1;
                continue;
            }
            evaluated += 1;
            let r = query(&prom, &q).with_context(|| format!("{d}: {q}"))?;
            if r.is_empty() && !may_be_empty(&q) {
                empty.push(format!("{d}: {q}"));
            }
        }
    }
    eprintln!("dashboard queries: {evaluated} evaluated, {skipped} about other exporters or not applicable");
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );
    assert!(evaluated >= 80, "only {evaluated} queries evaluated");

    // An OSD killed: CephOSDDown fires and names it.
    c.kill9("osd.2")?;
    let alert = wait_for("CephOSDDown firing", WAIT, || async {
        let v: Value =
            serde_json::from_str(&http_get(&format!("{}/alerts", prom.api)).ok()?).ok()?;
        v["data"]["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == "CephOSDDown" && a["state"] == "firing")
            .cloned()
    })
    .await?;
    let description = alert["annotations"]["description"].as_str().unwrap_or("");
    assert!(
        description.contains(&format!("- osd.2 on {host}")),
        "{alert}"
    );

    // promtool: Ceph's own rules (their real `for:`) over the samples
    // Prometheus scraped give the same alert with the same text.
    let mut series = String::new();
    for name in ["ceph_health_detail", "ceph_osd_up", "ceph_osd_metadata"] {
        for s in query(&prom, name)? {
            let labels: Vec<String> = s["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.as_str() != "__name__")
                .map(|(k, v)| format!("{k}={}", json!(v.as_str().unwrap_or(""))))
                .collect();
            let value = s["value"][1].as_str().unwrap_or("0");
            series.push_str(&format!(
                "      - series: {}\n        values: '{value}x15'\n",
                json!(format!("{name}{{{}}}", labels.join(",")))
            ));
        }
    }
    let yaml_map = |v: &Value| -> String {
        v.as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != "alertname")
            .map(|(k, v)| format!("              {k}: {}\n", json!(v.as_str().unwrap_or(""))))
            .collect()
    };
    let test = format!(
        "rule_files: [\"{RULES}\"]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{series}    alert_rule_test:\n      - eval_time: 10m\n        alertname: CephOSDDown\n        exp_alerts:\n          - exp_labels:\n{}            exp_annotations:\n{}",
        yaml_map(&alert["labels"]),
        yaml_map(&alert["annotations"])
    );
    let test_file = tmp.join("osd_down_test.yml");
    std::fs::write(&test_file, &test)?;
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&test_file)
        .output()?;
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}\n{test}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(prom);
    drop(exporter);
    Ok(())
}
