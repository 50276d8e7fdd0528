//! The mon quorum (issue 12): map commit latency with 1 and 3 mons, leader
//! failover time, and the mons' CPU with 1,000 simulated OSDs beaconing,
//! then beaconing and sending failure reports.
//!
//! Real `kalmar-mon` processes on loopback; clients and simulated OSDs are
//! `MonClient`s in this process. Commit latency is one `osd pool set`
//! command (each makes a new epoch) from send to the reply, which the mon
//! sends after the epoch is committed (by a majority with 3 mons), through
//! the leader and through a follower (which forwards). Failover is
//! `kill -9` of the leader to a new leader answering `quorum_status`.
//! CPU is each mon process's utime+stime from /proc over the window. The
//! reporting window adds, per OSD and second, a failure report about the
//! next OSD and its retraction (one reporter per target, below
//! `mon_osd_min_down_reporters`: nobody is marked down, every report goes
//! through the leader's failure bookkeeping).
//!
//! `cargo bench -p kalmar-benches --bench mon_quorum` (binaries from the
//! same `cargo build --release`; `KALMAR_BIN_DIR` overrides).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use kalmar_cli::procs::{find_bin, run_bounded, signal, spawn_daemon, stop};
use kalmar_maps::osd::OsdAddrs;
use kalmar_maps::EntityAddr;
use kalmar_msgr::{EntityName, EntityType, MsgrConfig};
use kalmar_proto::mon::{OsdBeacon, OsdBoot, OsdFailure};
use kalmar_proto::monc::MonClient;
use kalmar_proto::pgstats::{OsdPgStats, OsdStatEntry, PgStatEntry};
use serde_json::{json, Value};

/// Commands timed per configuration.
const COMMITS: usize = 200;
/// Leader kills measured.
const FAILOVERS: usize = 5;
/// Simulated OSDs and their beacon period.
const OSDS: usize = 1000;
const BEACON_PERIOD: Duration = Duration::from_secs(1);
const CPU_WINDOW: Duration = Duration::from_secs(15);
/// PGs of the PG-stats load: about 100 PG copies per OSD with 3 replicas
/// (1,000 x 100 / 3 = 33,333), rounded to a power of two as pg_num is.
const PG_NUM: u32 = 32768;
/// Bound on every wait.
const WAIT: Duration = Duration::from_secs(60);

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn cpu_ticks(pid: i32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
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

struct Mons {
    dir: tempfile::TempDir,
    bin: PathBuf,
    names: Vec<String>,
    addrs: Vec<SocketAddr>,
    pids: Vec<Option<i32>>,
}

impl Mons {
    fn start(n: usize) -> anyhow::Result<Mons> {
        let bin = find_bin("kalmar-mon").context("kalmar-mon is not built")?;
        let dir = tempfile::Builder::new().prefix("kalmar-monq-").tempdir()?;
        let names: Vec<String> = (0..n)
            .map(|i| ((b'a' + i as u8) as char).to_string())
            .collect();
        let mut addrs = Vec::new();
        for _ in 0..n {
            addrs.push(format!("127.0.0.1:{}", free_port()?).parse()?);
        }
        std::fs::write(
            dir.path().join("kalmar.conf"),
            // Auth off, written out: the simulated OSDs and clients have
            // no keys (this measures the mon's map and quorum work).
            "[global]\nauth_cluster_required = \"none\"\nauth_service_required = \"none\"\n\
             auth_client_required = \"none\"\n\
             [mon]\nosd_crush_chooseleaf_type = 0\nmon_osd_report_timeout = 600\n",
        )?;
        let members: Vec<String> = names
            .iter()
            .zip(&addrs)
            .map(|(n, a)| format!("{n}={a}"))
            .collect();
        let fsid = uuid::Uuid::new_v4().to_string();
        let mut m = Mons {
            dir,
            bin,
            names,
            addrs,
            pids: vec![None; n],
        };
        for i in 0..n {
            let mut a = vec![
                "mkfs".to_string(),
                "--name".into(),
                m.names[i].clone(),
                "--data".into(),
                m.data(i),
                "--conf".into(),
                m.conf(),
                "--fsid".into(),
                fsid.clone(),
            ];
            if n > 1 {
                a.push("--initial-members".into());
                a.push(members.join(","));
            }
            let out = run_bounded(&m.bin, &a, WAIT)?;
            if !out.status.success() {
                bail!("mkfs: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        for i in 0..n {
            m.spawn(i)?;
        }
        Ok(m)
    }

    fn data(&self, i: usize) -> String {
        self.dir
            .path()
            .join(format!("mon.{}", self.names[i]))
            .display()
            .to_string()
    }

    fn conf(&self) -> String {
        self.dir.path().join("kalmar.conf").display().to_string()
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let log = self.dir.path().join(format!("mon.{}.log", self.names[i]));
        let a = vec![
            "run".to_string(),
            "--name".into(),
            self.names[i].clone(),
            "--data".into(),
            self.data(i),
            "--conf".into(),
            self.conf(),
            "--bind".into(),
            self.addrs[i].to_string(),
            "--log-file".into(),
            log.display().to_string(),
        ];
        let pid_file = self.dir.path().join(format!("mon.{}.pid", self.names[i]));
        self.pids[i] = Some(spawn_daemon(&self.bin, &a, &log, &pid_file)?);
        Ok(())
    }

    fn kill9(&mut self, i: usize) {
        if let Some(pid) = self.pids[i].take() {
            signal(pid, "kalmar-mon", libc::SIGKILL);
            while kalmar_cli::procs::pid_alive(pid, "kalmar-mon") {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn running_addrs(&self) -> Vec<SocketAddr> {
        (0..self.addrs.len())
            .filter(|&i| self.pids[i].is_some())
            .map(|i| self.addrs[i])
            .collect()
    }
}

impl Drop for Mons {
    fn drop(&mut self) {
        for pid in self.pids.iter().flatten() {
            stop(*pid, "kalmar-mon", Duration::from_secs(5));
        }
    }
}

fn fast_msgr() -> MsgrConfig {
    MsgrConfig {
        connect_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(2),
        reconnect_backoff_min: Duration::from_millis(20),
        reconnect_backoff_max: Duration::from_millis(200),
        ..MsgrConfig::default()
    }
}

async fn client(addrs: &[SocketAddr], name: &str) -> anyhow::Result<MonClient> {
    let me = EntityName::new(EntityType::Client, name);
    Ok(
        MonClient::connect_any(addrs, me, uuid::Uuid::nil(), fast_msgr())
            .await?
            .0,
    )
}

async fn command(c: &MonClient, cmd: Value, timeout: Duration) -> anyhow::Result<Value> {
    let r = c.command(&cmd, timeout).await?;
    if r.retval != 0 {
        bail!("{cmd}: {} ({})", r.outs, r.retval);
    }
    Ok(serde_json::from_slice(&r.outbuf.0).unwrap_or(Value::Null))
}

/// The leader's index once `n` mons are in quorum.
async fn wait_quorum(m: &Mons, n: usize, bound: Duration) -> anyhow::Result<usize> {
    let t0 = Instant::now();
    loop {
        for a in m.running_addrs() {
            if let Ok(c) = client(&[a], "bench-q").await {
                let q = command(
                    &c,
                    json!({"prefix": "quorum_status", "format": "json"}),
                    Duration::from_millis(500),
                )
                .await;
                c.close().await;
                if let Ok(q) = q {
                    let leader = q["quorum_leader_name"].as_str().unwrap_or("");
                    let in_q = q["quorum"].as_array().map_or(0, Vec::len);
                    if let Some(l) = m.names.iter().position(|x| x == leader) {
                        if in_q >= n && m.pids[l].is_some() {
                            return Ok(l);
                        }
                    }
                }
            }
        }
        if t0.elapsed() > bound {
            bail!("no quorum of {n} within {bound:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn commit_latency(addr: SocketAddr, label: &str) -> anyhow::Result<()> {
    let c = client(&[addr], "bench-commit").await?;
    let _ = command(
        &c,
        json!({"prefix": "osd pool create", "pool": "bench", "pg_num": 8, "size": 2}),
        WAIT,
    )
    .await;
    let mut lat = Vec::with_capacity(COMMITS);
    for i in 0..COMMITS {
        let size = if i % 2 == 0 { "3" } else { "2" };
        let t0 = Instant::now();
        command(
            &c,
            json!({"prefix": "osd pool set", "pool": "bench", "var": "size", "val": size}),
            WAIT,
        )
        .await?;
        lat.push(t0.elapsed());
    }
    c.close().await;
    lat.sort();
    let mean = lat.iter().sum::<Duration>() / lat.len() as u32;
    println!(
        "commit latency, {label}: mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms ({COMMITS} epochs)",
        mean.as_secs_f64() * 1e3,
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3
    );
    Ok(())
}

/// Each mon's CPU share (of one core) over the window, beacons only, then
/// beacons and failure reports.
struct OsdLoadCpu {
    beacons: Vec<f64>,
    beacons_and_reports: Vec<f64>,
    /// Beacons and every OSD's PG stats (its primary PGs) each period.
    beacons_and_pg_stats: Vec<f64>,
}

/// 1,000 simulated OSDs: registered, booted, then beaconing (and
/// reporting).
async fn osd_load(m: &Mons) -> anyhow::Result<OsdLoadCpu> {
    let addrs = m.addrs.clone();
    let reg = client(&addrs, "bench-reg").await?;
    let mut ids = Vec::with_capacity(OSDS);
    for _ in 0..OSDS {
        let uuid = uuid::Uuid::new_v4();
        let r = reg.osd_mkfs(uuid, -1, "localhost", WAIT).await?;
        if r.retval != 0 {
            bail!("osd mkfs: {}", r.error);
        }
        ids.push((r.osd_id, uuid));
    }
    reg.close().await;
    let mut osds = Vec::with_capacity(OSDS);
    for (id, _) in &ids {
        let (c, mut ev) = MonClient::start_any(
            &addrs,
            EntityName::osd(*id as u32),
            uuid::Uuid::nil(),
            fast_msgr(),
        );
        // Drain the maps so the routing task never waits on us.
        tokio::spawn(async move { while ev.recv().await.is_some() {} });
        osds.push(Arc::new(c));
    }
    run_osds(m, osds, ids).await
}

async fn run_osds(
    m: &Mons,
    osds: Vec<Arc<MonClient>>,
    ids: Vec<(i32, uuid::Uuid)>,
) -> anyhow::Result<OsdLoadCpu> {
    let q = client(&m.addrs, "bench-stat").await?;
    for c in &osds {
        c.subscribe("osdmap", 0, false).await.ok();
    }
    let boot_all = || async {
        for (c, (id, uuid)) in osds.iter().zip(&ids) {
            let boot = OsdBoot {
                osd_id: *id,
                uuid: *uuid,
                addrs: OsdAddrs::all(EntityAddr::new(
                    format!("127.0.0.1:{}", 10000 + id).parse().expect("addr"),
                    1,
                )),
                have_epoch: 0,
                hostname: "localhost".into(),
                metadata: Default::default(),
            };
            c.send(&boot).await.ok();
        }
    };
    boot_all().await;
    let t0 = Instant::now();
    loop {
        let s = command(&q, json!({"prefix": "osd stat", "format": "json"}), WAIT).await?;
        if s["num_up_osds"].as_u64() == Some(OSDS as u64) {
            break;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("only {} of {OSDS} osds up", s["num_up_osds"]);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // As real OSDs do: boot again until the map has them up (a boot
        // an old leader took is lost with it; a repeated one is a no-op).
        boot_all().await;
    }
    println!("{OSDS} osds booted in {:.1} s", t0.elapsed().as_secs_f64());
    let epoch = command(&q, json!({"prefix": "osd stat", "format": "json"}), WAIT).await?["epoch"]
        .as_u64()
        .unwrap_or(0) as u32;
    let osds = Arc::new(osds);
    let ids = Arc::new(ids);
    let beacons = load_window(m, osds.clone(), ids.clone(), None).await;
    let beacons_and_reports = load_window(m, osds.clone(), ids.clone(), Some(epoch)).await;
    let beacons_and_pg_stats = pg_stats_window(m, &q, osds, ids).await?;
    let s = command(&q, json!({"prefix": "osd stat", "format": "json"}), WAIT).await?;
    if s["num_up_osds"].as_u64() != Some(OSDS as u64) {
        bail!("the reports marked osds down: {s}");
    }
    q.close().await;
    Ok(OsdLoadCpu {
        beacons,
        beacons_and_reports,
        beacons_and_pg_stats,
    })
}

/// A pool of [`PG_NUM`] PGs (size 3); every OSD beacons and reports the
/// stats of its share of them (one PG in [`OSDS`] per OSD as primary, as
/// CRUSH spreads primaries) every [`BEACON_PERIOD`], as OSDs send
/// `MPGStats` each report interval. Returns each mon's CPU share over
/// [`CPU_WINDOW`]; the commit latency under that load is printed.
async fn pg_stats_window(
    m: &Mons,
    q: &MonClient,
    osds: Arc<Vec<Arc<MonClient>>>,
    ids: Arc<Vec<(i32, uuid::Uuid)>>,
) -> anyhow::Result<Vec<f64>> {
    let t0 = Instant::now();
    command(
        q,
        json!({"prefix": "osd pool create", "pool": "pgload", "pg_num": PG_NUM, "size": 3}),
        WAIT,
    )
    .await?;
    let dump = command(q, json!({"prefix": "osd dump", "format": "json"}), WAIT).await?;
    let pool = dump["pools"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["pool_name"] == "pgload"))
        .and_then(|p| p["pool"].as_i64())
        .ok_or_else(|| anyhow!("pool pgload not in the osd dump"))?;
    let epoch = dump["epoch"].as_u64().unwrap_or(0) as u32;
    println!(
        "pool of {PG_NUM} pgs created in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let n = ids.len();
    let reports: Arc<Vec<OsdPgStats>> = Arc::new(
        ids.iter()
            .enumerate()
            .map(|(i, (id, _))| {
                let others = [ids[(i + 1) % n].0, ids[(i + 2) % n].0];
                let pgs: Vec<PgStatEntry> = (i as u32..PG_NUM)
                    .step_by(n)
                    .map(|seed| PgStatEntry {
                        pgid: kalmar_maps::PgId::new(pool as _, seed),
                        state: "active+clean".into(),
                        reported_epoch: epoch,
                        reported_seq: 1,
                        version_epoch: epoch,
                        version: 10,
                        up: vec![*id, others[0], others[1]],
                        up_primary: *id,
                        acting: vec![*id, others[0], others[1]],
                        acting_primary: *id,
                        num_objects: 100,
                        num_bytes: 400 << 20,
                        num_object_copies: 300,
                        log_size: 100,
                        last_epoch_clean: epoch,
                        ..Default::default()
                    })
                    .collect();
                OsdPgStats {
                    osd_id: *id,
                    epoch,
                    osd_stat: OsdStatEntry {
                        osd: *id,
                        num_pgs: (pgs.len() * 3) as u32,
                        kb: 1 << 30,
                        kb_used: 1 << 20,
                        kb_avail: (1 << 30) - (1 << 20),
                        hb_peers: others.to_vec(),
                        ..Default::default()
                    },
                    pgs,
                }
            })
            .collect(),
    );
    let load = tokio::spawn(async move {
        let mut seq = 1u64;
        loop {
            let round = Instant::now();
            seq += 1;
            for (c, (r, (id, _))) in osds.iter().zip(reports.iter().zip(ids.iter())) {
                let b = OsdBeacon {
                    osd_id: *id,
                    epoch: 0,
                    pgs: vec![],
                    last_epoch_clean: 0,
                };
                c.send(&b).await.ok();
                let mut r = r.clone();
                for p in &mut r.pgs {
                    p.reported_seq = seq;
                }
                c.send(&r).await.ok();
            }
            tokio::time::sleep(BEACON_PERIOD.saturating_sub(round.elapsed())).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pids: Vec<i32> = m.pids.iter().flatten().copied().collect();
    let before: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p).unwrap_or(0)).collect();
    let w0 = Instant::now();
    tokio::time::sleep(CPU_WINDOW).await;
    let secs = w0.elapsed().as_secs_f64();
    let after: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p).unwrap_or(0)).collect();
    // Commit latency under the same load (after the CPU window, so the
    // commits do not count in it).
    let leader = wait_quorum(m, m.pids.iter().flatten().count(), WAIT).await?;
    let label = format!(
        "{} mon(s), {OSDS} osds beaconing and sending pg stats of {PG_NUM} pgs",
        pids.len()
    );
    let lat = commit_latency(m.addrs[leader], &label).await;
    load.abort();
    let _ = load.await;
    lat?;
    Ok(before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b) as f64 / ticks_per_sec() / secs)
        .collect())
}

/// Every OSD beacons each [`BEACON_PERIOD`] (and, with `reports_at`, sends
/// a failure report of the next OSD and its retraction, at that epoch);
/// returns each mon's CPU share over [`CPU_WINDOW`].
async fn load_window(
    m: &Mons,
    osds: Arc<Vec<Arc<MonClient>>>,
    ids: Arc<Vec<(i32, uuid::Uuid)>>,
    reports_at: Option<u32>,
) -> Vec<f64> {
    let load = tokio::spawn(async move {
        loop {
            let round = Instant::now();
            for (i, (c, (id, _))) in osds.iter().zip(ids.iter()).enumerate() {
                let b = OsdBeacon {
                    osd_id: *id,
                    epoch: 0,
                    pgs: vec![],
                    last_epoch_clean: 0,
                };
                c.send(&b).await.ok();
                if let Some(epoch) = reports_at {
                    let target = ids[(i + 1) % ids.len()].0;
                    for is_failed in [true, false] {
                        let f = OsdFailure {
                            reporter: *id,
                            target,
                            failed_for_ms: 100,
                            epoch,
                            is_failed,
                            ..Default::default()
                        };
                        c.send(&f).await.ok();
                    }
                }
            }
            tokio::time::sleep(BEACON_PERIOD.saturating_sub(round.elapsed())).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pids: Vec<i32> = m.pids.iter().flatten().copied().collect();
    let before: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p).unwrap_or(0)).collect();
    let w0 = Instant::now();
    tokio::time::sleep(CPU_WINDOW).await;
    let secs = w0.elapsed().as_secs_f64();
    let after: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p).unwrap_or(0)).collect();
    load.abort();
    let _ = load.await;
    before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b) as f64 / ticks_per_sec() / secs)
        .collect()
}

async fn run() -> anyhow::Result<()> {
    // `--load-only`: only the OSD load (CPU and commit latency under it).
    let load_only = std::env::args().any(|a| a == "--load-only");
    if !load_only {
        latency_and_failover().await?;
    }
    osd_load_all().await
}

async fn latency_and_failover() -> anyhow::Result<()> {
    // 1 mon.
    {
        let m = Mons::start(1)?;
        wait_quorum(&m, 1, WAIT).await?;
        commit_latency(m.addrs[0], "1 mon").await?;
    }
    // 3 mons: through the leader and through a follower, then failovers.
    let mut m = Mons::start(3)?;
    let leader = wait_quorum(&m, 3, WAIT).await?;
    commit_latency(m.addrs[leader], "3 mons, client on the leader").await?;
    commit_latency(m.addrs[(leader + 1) % 3], "3 mons, client on a follower").await?;
    let mut times = Vec::new();
    for _ in 0..FAILOVERS {
        // Let a restarted mon settle, then take the leader two answers
        // agree on.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let leader = loop {
            let a = wait_quorum(&m, 3, WAIT).await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            if wait_quorum(&m, 3, WAIT).await? == a {
                break a;
            }
        };
        let t0 = Instant::now();
        m.kill9(leader);
        let new = wait_quorum(&m, 2, WAIT).await?;
        times.push(t0.elapsed());
        if new == leader {
            bail!("the killed mon is still the leader");
        }
        m.spawn(leader)?;
    }
    times.sort();
    println!(
        "leader failover (kill -9 to a new leader answering quorum_status), {FAILOVERS} runs: min {:.2} s, median {:.2} s, max {:.2} s",
        times[0].as_secs_f64(),
        percentile(&times, 0.5).as_secs_f64(),
        times[times.len() - 1].as_secs_f64()
    );
    wait_quorum(&m, 3, WAIT).await?;
    drop(m);
    Ok(())
}

async fn osd_load_all() -> anyhow::Result<()> {
    for n in [1usize, 3] {
        let m = Mons::start(n)?;
        wait_quorum(&m, n, WAIT).await?;
        let cpu = osd_load(&m).await?;
        let shown = |v: &[f64]| {
            v.iter()
                .map(|c| format!("{:.1}%", c * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{n} mon(s), {OSDS} osds beaconing every {:?}: mon CPU {} (of one core, per mon)",
            BEACON_PERIOD,
            shown(&cpu.beacons)
        );
        println!(
            "{n} mon(s), {OSDS} osds beaconing and reporting (a failure report and its \
             retraction per osd) every {:?}: mon CPU {}",
            BEACON_PERIOD,
            shown(&cpu.beacons_and_reports)
        );
        println!(
            "{n} mon(s), {OSDS} osds beaconing and sending the stats of their primary pgs \
             ({PG_NUM} pgs, size 3) every {:?}: mon CPU {}",
            BEACON_PERIOD,
            shown(&cpu.beacons_and_pg_stats)
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run()).map_err(|e| anyhow!("{e:#}"))
}
