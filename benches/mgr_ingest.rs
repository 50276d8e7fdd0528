//! Mgr ingest: how many MgrReports per second the real `kalmar-mgr`
//! absorbs from simulated OSDs (100 and 1,000, each with a full counter
//! set: 100 counters, every one at a priority the mgr asks for), the CPU
//! the mgr process takes for it, and `get_all_perf_counters()` latency
//! from a Python plugin with 1,000 OSDs reporting.
//!
//! A real `kalmar-mon` and `kalmar-mgr` run as processes on loopback; the
//! simulated OSDs are `kalmar-mgr-client` MgrClients in this process (the
//! same code the OSDs run), each its own session. Offered load is what the
//! clients sent; absorbed is the mgr's own `mgr.reports` counter; CPU is
//! the mgr process's utime+stime from /proc over the same window.
//!
//! `cargo bench -p kalmar-benches --bench mgr_ingest` (binaries from the
//! same `cargo build --release`; `KALMAR_BIN_DIR` overrides).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use kalmar_cli::procs::{find_bin, run_bounded, spawn_daemon, stop};
use kalmar_common::perf::{CounterKind, PerfCollection, PerfCountersBuilder, Unit};
use kalmar_mgr_client::{MgrClient, MgrClientConfig};
use kalmar_msgr::{EntityName, EntityType, MsgrConfig};
use kalmar_proto::monc::{MonClient, MonEvent};
use serde_json::{json, Value};

/// Measurement window per configuration.
const WINDOW: Duration = Duration::from_secs(10);
/// Warm-up after the clients are configured, before measuring.
const WARMUP: Duration = Duration::from_secs(3);
/// Bound on every wait for the cluster.
const WAIT: Duration = Duration::from_secs(60);

/// Names of 100 counters: kinds and priorities like an OSD's set (every
/// one reported: priority >= the mgr's threshold of 5).
fn osd_like_perf() -> Arc<PerfCollection> {
    let perf = PerfCollection::new();
    let mut b = PerfCountersBuilder::new("osd");
    for i in 0..100 {
        let kind = match i % 10 {
            0..=5 => CounterKind::Counter,
            6 | 7 => CounterKind::Gauge,
            _ => CounterKind::TimeAvg,
        };
        let name: &'static str = Box::leak(format!("counter_{i:03}").into_boxed_str());
        b.add(
            name,
            kind,
            "a simulated OSD counter",
            "",
            5 + (i % 6) as u8,
            Unit::None,
        );
    }
    let l = b.build();
    for i in 0..100 {
        l.inc(i, i as u64);
    }
    perf.add(l);
    perf
}

fn cpu_ticks(pid: i32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|x| x.1).context("bad stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).context("utime")?.parse()?;
    let stime: u64 = f.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn admin(asok: &Path, cmd: &str) -> anyhow::Result<Value> {
    kalmar_common::admin_socket::request(asok, &json!({"prefix": cmd}), Duration::from_secs(10))
        .map_err(|e| anyhow!("{cmd}: {e}"))
}

struct Cluster {
    dir: tempfile::TempDir,
    mon: std::net::SocketAddr,
    mon_pid: i32,
    mgr_pid: i32,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        stop(self.mgr_pid, "kalmar-mgr", Duration::from_secs(10));
        stop(self.mon_pid, "kalmar-mon", Duration::from_secs(10));
    }
}

fn bin(name: &str) -> anyhow::Result<PathBuf> {
    find_bin(name).ok_or_else(|| anyhow!("{name} not built: cargo build --release first"))
}

/// A mon and one mgr reporting every `period_s` seconds.
fn start_cluster(period_s: f64) -> anyhow::Result<Cluster> {
    let dir = tempfile::Builder::new()
        .prefix("kalmar-mgr-bench-")
        .tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mon: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let conf = dir.path().join("kalmar.conf");
    let plugins = concat!(env!("CARGO_MANIFEST_DIR"), "/mgr-plugins");
    std::fs::write(
        &conf,
        format!(
            "[global]\nmon_host = \"{mon}\"\nmgr_stats_period = {period_s}\nmgr_tick_period = 1\n\
             auth_cluster_required = \"none\"\nauth_service_required = \"none\"\n\
             auth_client_required = \"none\"\n\
             mgr_module_path = \"{plugins}\"\nmon_tick_interval = 0.5\n\
             [\"mgr.x\"]\nadmin_socket = \"{}\"\n",
            dir.path().join("mgr.x.asok").display()
        ),
    )?;
    let s = |p: &Path| p.display().to_string();
    let mon_bin = bin("kalmar-mon")?;
    let out = run_bounded(
        &mon_bin,
        &[
            "mkfs".into(),
            "--data".into(),
            s(&dir.path().join("mon.a")),
            "--conf".into(),
            s(&conf),
        ],
        WAIT,
    )?;
    if !out.status.success() {
        bail!("mon mkfs: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mon_pid = spawn_daemon(
        &mon_bin,
        &[
            "run".into(),
            "--data".into(),
            s(&dir.path().join("mon.a")),
            "--conf".into(),
            s(&conf),
            "--bind".into(),
            mon.to_string(),
            "--log-level".into(),
            "warn".into(),
        ],
        &dir.path().join("mon.a.log"),
        &dir.path().join("mon.a.pid"),
    )?;
    let mgr_pid = spawn_daemon(
        &bin("kalmar-mgr")?,
        &[
            "run".into(),
            "--name".into(),
            "x".into(),
            "--mon".into(),
            mon.to_string(),
            "--conf".into(),
            s(&conf),
            "--log-level".into(),
            "warn".into(),
        ],
        &dir.path().join("mgr.x.log"),
        &dir.path().join("mgr.x.pid"),
    )?;
    Ok(Cluster {
        dir,
        mon,
        mon_pid,
        mgr_pid,
    })
}

async fn mon_cmd(mon: &MonClient, cmd: Value) -> anyhow::Result<Value> {
    let r = mon.command(&cmd, Duration::from_secs(10)).await?;
    if r.retval != 0 {
        bail!("{cmd}: {}", r.outs);
    }
    Ok(serde_json::from_slice(&r.outbuf.0).unwrap_or(Value::Null))
}

async fn wait_available(
    mon: &MonClient,
) -> anyhow::Result<(kalmar_maps::MgrMap, std::net::SocketAddr)> {
    let start = Instant::now();
    loop {
        let d = mon_cmd(mon, json!({"prefix": "mgr dump", "format": "json"})).await?;
        if d["available"] == json!(true) {
            let addr = d["active_addr"]
                .as_str()
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse().ok())
                .context("active_addr")?;
            mon.subscribe("mgrmap", 0, true).await?;
            return Ok((kalmar_maps::MgrMap::default(), addr));
        }
        if start.elapsed() > WAIT {
            bail!("no mgr available within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Row {
    osds: usize,
    period_s: f64,
    offered_per_s: f64,
    absorbed_per_s: f64,
    mgr_cpu_pct: f64,
    cpu_us_per_report: f64,
    perf_ms: Option<(f64, f64, f64, u64)>,
}

async fn run_config(period_s: f64, osds: usize) -> anyhow::Result<Row> {
    let cluster = start_cluster(period_s)?;
    let me = EntityName::new(EntityType::Client, "mgrbench");
    let (mon, mut events) =
        MonClient::connect(cluster.mon, me, uuid::Uuid::nil(), MsgrConfig::default())
            .await
            .map_err(|e| anyhow!("{e}"))?;
    let wait_mon = Instant::now();
    while mon_cmd(&mon, json!({"prefix": "status", "format": "json"}))
        .await
        .is_err()
    {
        if wait_mon.elapsed() > WAIT {
            bail!("mon not answering");
        }
    }
    let (_, mgr_addr) = wait_available(&mon).await?;
    let map = loop {
        match tokio::time::timeout(WAIT, events.recv()).await? {
            Some(MonEvent::MgrMap(m)) => break m.decode_map()?,
            Some(_) => {}
            None => bail!("mon session ended"),
        }
    };
    // The plugin that times get_all_perf_counters.
    mon_cmd(
        &mon,
        json!({"prefix": "mgr module enable", "module": "mgrbench"}),
    )
    .await?;

    let perf = osd_like_perf();
    let mut clients = Vec::with_capacity(osds);
    for i in 0..osds {
        let mut cfg = MgrClientConfig::new(EntityName::osd(i as u32));
        cfg.metadata.insert("hostname".into(), "bench".into());
        let c = MgrClient::start(cfg, perf.clone());
        c.handle_mgrmap(&map);
        clients.push(c);
    }
    let start = Instant::now();
    while clients.iter().any(|c| !c.status().configured) {
        if start.elapsed() > WAIT {
            let n = clients.iter().filter(|c| c.status().configured).count();
            bail!("only {n}/{osds} simulated OSDs configured within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(WARMUP).await;
    let asok = cluster.dir.path().join("mgr.x.asok");
    let sent = |cs: &[MgrClient]| cs.iter().map(|c| c.status().reports_sent).sum::<u64>();
    let absorbed = |v: &Value| v["mgr"]["reports"].as_u64().unwrap_or(0);
    let (s0, a0, c0, t0) = (
        sent(&clients),
        absorbed(&admin(&asok, "perf dump")?),
        cpu_ticks(cluster.mgr_pid)?,
        Instant::now(),
    );
    tokio::time::sleep(WINDOW).await;
    let (s1, a1, c1, dt) = (
        sent(&clients),
        absorbed(&admin(&asok, "perf dump")?),
        cpu_ticks(cluster.mgr_pid)?,
        t0.elapsed(),
    );
    let secs = dt.as_secs_f64();
    let cpu_s = (c1 - c0) as f64 / ticks_per_sec();
    let reports = (a1 - a0) as f64;
    let perf_ms = if osds >= 1000 {
        let r = kalmar_proto::monc::MonClient::connect(
            mgr_addr,
            EntityName::new(EntityType::Client, "mgrbench2"),
            uuid::Uuid::nil(),
            MsgrConfig::default(),
        )
        .await
        .map_err(|e| anyhow!("{e}"))?;
        let reply =
            r.0.command(
                &json!({"prefix": "tell", "args": ["mgrbench", "perf", "15"], "format": "json"}),
                Duration::from_secs(120),
            )
            .await?;
        if reply.retval != 0 {
            bail!("mgrbench perf: {}", reply.outs);
        }
        let v: Value = serde_json::from_slice(&reply.outbuf.0)?;
        Some((
            v["median_ms"].as_f64().unwrap_or(0.0),
            v["min_ms"].as_f64().unwrap_or(0.0),
            v["max_ms"].as_f64().unwrap_or(0.0),
            v["counters"].as_u64().unwrap_or(0),
        ))
    } else {
        None
    };
    drop(clients);
    mon.close().await;
    Ok(Row {
        osds,
        period_s,
        offered_per_s: (s1 - s0) as f64 / secs,
        absorbed_per_s: reports / secs,
        mgr_cpu_pct: cpu_s * 100.0 / secs,
        cpu_us_per_report: if reports > 0.0 {
            cpu_s * 1e6 / reports
        } else {
            0.0
        },
        perf_ms,
    })
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for (period_s, osds) in [(1.0, 100), (1.0, 1000), (0.1, 100), (0.1, 1000)] {
        eprintln!("running: {osds} simulated OSDs, report period {period_s} s ...");
        rows.push(rt.block_on(run_config(period_s, osds))?);
    }
    println!("| OSDs | report period s | offered reports/s | absorbed reports/s | absorbed/offered | mgr CPU % of a core | mgr CPU us/report |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.3} | {:.1} | {:.1} |",
            r.osds,
            r.period_s,
            r.offered_per_s,
            r.absorbed_per_s,
            r.absorbed_per_s / r.offered_per_s.max(1.0),
            r.mgr_cpu_pct,
            r.cpu_us_per_report
        );
    }
    for r in rows.iter().filter(|r| r.perf_ms.is_some()) {
        if let Some((med, min, max, counters)) = r.perf_ms {
            println!(
                "get_all_perf_counters with {} OSDs reporting every {} s: median {med:.1} ms (min {min:.1}, max {max:.1}), {counters} counters returned",
                r.osds, r.period_s
            );
        }
    }
    Ok(())
}
