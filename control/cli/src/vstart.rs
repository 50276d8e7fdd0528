//! `kalmar vstart --osds N [--mgrs M] --dir DIR` and `kalmar vstop --dir
//! DIR`: a whole local cluster for development, tests and the README.
//!
//! DIR holds `kalmar.conf` (mon address, each daemon's admin socket, any
//! `--set` options), `<name>.pid` and `<name>.log` per daemon, the mon's
//! store in `mon.a/` and each OSD's device at `osd.N/device` (a sparse
//! file). Run again on an existing DIR, vstart starts what is not running
//! (restarting a killed daemon) and adds OSDs up to N.
//!
//! `--mons N` makes a quorum of N mons (`mon.a`, `mon.b`, ... on
//! consecutive free ports, one fsid, `mon_host` a list); the default is
//! one mon, as before, so small test clusters stay light. The number of
//! mons is fixed when DIR is created.
//!
//! `--mgrs` starts `kalmar-mgr` daemons (`mgr.x`, `mgr.y`, ...) when that
//! binary exists and waits until one is active and available; the
//! environment (e.g. `KALMAR_MGR_MODULE_PATH`) passes on to them. With
//! `--set exporter_addr=IP:PORT` it also runs the per-host `kalmar
//! exporter` on that address.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use kalmar_msgr::{EntityName, EntityType, MsgrConfig};
use kalmar_proto::monc::MonClient;
use serde_json::{json, Value};

use crate::procs::{find_bin, parse_size, pid_alive, read_pid, run_bounded, spawn_daemon, stop};

/// Default size of each OSD's sparse device file.
pub const DEFAULT_OSD_SIZE: &str = "10G";
/// Names of mgr daemons in start order (as Ceph's vstart names them).
const MGR_NAMES: &[&str] = &["x", "y", "z", "w", "v", "u"];
/// Pause between checks while waiting for the cluster.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, clap::Args)]
pub struct VstartArgs {
    /// Number of mons (only when DIR is new; 3 or 5 survive the loss of 1
    /// or 2).
    #[arg(long, default_value_t = 1)]
    pub mons: u32,
    /// Number of OSDs (existing ones are kept; more are added).
    #[arg(long, default_value_t = 3)]
    pub osds: u32,
    /// Number of mgrs (started only if the kalmar-mgr binary exists).
    #[arg(long, default_value_t = 1)]
    pub mgrs: u32,
    /// The cluster's directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Size of each new OSD's sparse device file (e.g. 10G, 512M).
    #[arg(long, default_value = DEFAULT_OSD_SIZE)]
    pub osd_size: String,
    /// Extra [global] conf settings, KEY=VALUE (repeatable); kept in
    /// DIR/kalmar.conf for later runs.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Bound on waiting for each daemon, in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct VstopArgs {
    /// The cluster's directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Seconds each daemon gets to stop before SIGKILL.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

/// What vstart brought up.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub dir: PathBuf,
    pub conf: PathBuf,
    /// The first mon.
    pub mon: SocketAddr,
    /// Every mon (the first is `mon`).
    pub mons: Vec<SocketAddr>,
    pub osds: u32,
    pub mgrs: u32,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Parses `--set` values as TOML scalars (numbers, booleans), else strings.
fn toml_value(v: &str) -> toml::Value {
    let v = v.trim();
    if let Ok(i) = v.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = v.parse::<f64>() {
        return toml::Value::Float(f);
    }
    match v {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        s => toml::Value::String(s.trim_matches('"').to_string()),
    }
}

fn section<'a>(t: &'a mut toml::Table, name: &str) -> &'a mut toml::Table {
    let v = t
        .entry(name.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !v.is_table() {
        *v = toml::Value::Table(toml::Table::new());
    }
    match v {
        toml::Value::Table(s) => s,
        _ => unreachable!("replaced by a table just above"),
    }
}

/// Shards per OSD when `osds` OSDs share this machine's cores.
fn colocated_shards(osds: u32) -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    (cores / osds.max(1)).max(1)
}

/// Mon names in rank order.
pub fn mon_name(rank: usize) -> String {
    const NAMES: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    match NAMES.get(rank) {
        Some(c) => (*c as char).to_string(),
        None => format!("m{rank}"),
    }
}

/// Writes (or updates) DIR/kalmar.conf; returns the mons' addresses.
fn write_conf(args: &VstartArgs, conf: &Path, mgrs: u32) -> anyhow::Result<Vec<SocketAddr>> {
    let mut t: toml::Table = match std::fs::read_to_string(conf) {
        Ok(s) => s
            .parse()
            .with_context(|| format!("{} is not valid TOML", conf.display()))?,
        Err(_) => toml::Table::new(),
    };
    let dir = &args.dir;
    let g = section(&mut t, "global");
    if !g.contains_key("mon_host") {
        let n = args.mons.clamp(1, 26) as usize;
        if n == 1 {
            g.insert(
                "mon_host".into(),
                format!("127.0.0.1:{}", free_port()?).into(),
            );
        } else {
            let mut hosts = Vec::new();
            for _ in 0..n {
                hosts.push(toml::Value::String(format!("127.0.0.1:{}", free_port()?)));
            }
            g.insert("mon_host".into(), toml::Value::Array(hosts));
            let names: Vec<String> = (0..n).map(mon_name).collect();
            g.insert("mon_initial_members".into(), names.join(",").into());
            g.insert("fsid".into(), uuid::Uuid::new_v4().to_string().into());
        }
        // One machine: replicas go to different OSDs, not hosts.
        g.insert("osd_crush_chooseleaf_type".into(), 0.into());
        g.insert(
            "osd_pool_default_size".into(),
            i64::from(args.osds.clamp(1, 3)).into(),
        );
        g.insert("mon_allow_pool_delete".into(), true.into());
        // The OSDs share this machine's cores: as many shard threads in
        // all as there are cores (one per OSD at least). More threads than
        // cores turn the hand-offs between shards into context switches
        // (benches/RESULTS.md: 3 OSDs on 2 cores, size-3 writes at 2.1x the
        // IOPS and 0.66x the CPU per write with one shard each).
        g.insert(
            "osd_op_num_shards".into(),
            i64::from(colocated_shards(args.osds)).into(),
        );
    }
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--set {kv}: expected KEY=VALUE"))?;
        g.insert(k.trim().to_string(), toml_value(v));
    }
    let mon_host: Vec<String> = match g.get("mon_host") {
        Some(toml::Value::String(s)) => vec![s.clone()],
        Some(toml::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => bail!(
            "{}: [global] mon_host is not a string or a list",
            conf.display()
        ),
    };
    let asok = |name: &str| dir.join(format!("{name}.asok")).display().to_string();
    for i in 0..mon_host.len() {
        let name = format!("mon.{}", mon_name(i));
        section(&mut t, &name).insert("admin_socket".into(), asok(&name).into());
    }
    for m in MGR_NAMES.iter().take(mgrs as usize) {
        let name = format!("mgr.{m}");
        section(&mut t, &name).insert("admin_socket".into(), asok(&name).into());
    }
    let existing = existing_osds(dir);
    for i in 0..args.osds.max(existing) {
        let name = format!("osd.{i}");
        section(&mut t, &name).insert("admin_socket".into(), asok(&name).into());
    }
    std::fs::write(conf, toml::to_string(&t)?)
        .with_context(|| format!("writing {}", conf.display()))?;
    kalmar_common::config::parse_mon_list(&mon_host.join(",")).map_err(anyhow::Error::msg)
}

/// OSDs already made in `dir` (highest id + 1).
fn existing_osds(dir: &Path) -> u32 {
    (0..)
        .take_while(|i| dir.join(format!("osd.{i}")).join("device").exists())
        .count() as u32
}

fn need_bin(name: &str) -> anyhow::Result<PathBuf> {
    find_bin(name).ok_or_else(|| {
        anyhow!(
            "cannot find {name}: build the workspace (cargo build --release) or set KALMAR_BIN_DIR"
        )
    })
}

/// The mons, and the admin key to talk to them with (read from DIR once
/// the first mon's mkfs wrote it).
struct Mons {
    addrs: Vec<SocketAddr>,
    admin: Option<Arc<kalmar_auth::ClientAuth>>,
}

impl std::ops::Deref for Mons {
    type Target = [SocketAddr];
    fn deref(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

async fn mon_command(mons: &Mons, cmd: Value, timeout: Duration) -> anyhow::Result<Value> {
    // As the admin when its key is there (a cluster with auth on needs it).
    let me = match &mons.admin {
        Some(_) => EntityName::new(EntityType::Client, "admin"),
        None => EntityName::new(EntityType::Client, format!("vstart{}", std::process::id())),
    };
    let cfg = MsgrConfig {
        connect_timeout: timeout.min(Duration::from_secs(2)),
        auth: kalmar_msgr::auth::MsgrAuth {
            client: mons.admin.clone(),
            ..Default::default()
        },
        ..MsgrConfig::default()
    };
    let (c, _ev) = MonClient::connect_any(&mons.addrs, me, uuid::Uuid::nil(), cfg).await?;
    let r = c.command(&cmd, timeout).await;
    c.close().await;
    let r = r?;
    if r.retval != 0 {
        bail!("mon: {} (errno {})", r.outs, r.retval);
    }
    Ok(serde_json::from_slice(&r.outbuf.0).unwrap_or(Value::Null))
}

/// The admin keyring mkfs writes into DIR.
const ADMIN_KEYRING: &str = "kalmar.client.admin.keyring";
/// Caps of the daemons' keys, as Ceph's deployment tools give them.
const OSD_CAPS: &[&str] = &[
    "mon",
    "allow profile osd",
    "mgr",
    "allow profile osd",
    "osd",
    "allow *",
];
const MGR_CAPS: &[&str] = &[
    "mon",
    "allow profile mgr",
    "mgr",
    "allow *",
    "osd",
    "allow *",
];

/// The admin's key from DIR (none before the first mon's mkfs).
fn admin_auth(dir: &Path) -> anyhow::Result<Option<Arc<kalmar_auth::ClientAuth>>> {
    let path = dir.join(ADMIN_KEYRING);
    if !path.exists() {
        return Ok(None);
    }
    let ring = kalmar_auth::Keyring::read_file(&path)?;
    Ok(ring.get("client.admin").map(|e| {
        Arc::new(kalmar_auth::ClientAuth::new(
            "client.admin",
            Some(e.key.clone()),
        ))
    }))
}

/// A keyring with the first mon's `mon.` key and the admin key, for the
/// other mons' mkfs (DIR/kalmar.mon.keyring, 0600).
fn mon_keyring(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut ring =
        kalmar_auth::Keyring::read_file(&dir.join(format!("mon.{}/keyring", mon_name(0))))?;
    let admin = kalmar_auth::Keyring::read_file(&dir.join(ADMIN_KEYRING))?;
    ring.entries.extend(admin.entries);
    let path = dir.join("kalmar.mon.keyring");
    ring.write_file(&path)?;
    Ok(path)
}

/// Registers daemon `name`'s key with the mon (once) and writes it to
/// DIR/kalmar.NAME.keyring, where the daemon's keyring search finds it.
async fn daemon_key(
    mons: &Mons,
    dir: &Path,
    name: &str,
    caps: &[&str],
    timeout: Duration,
) -> anyhow::Result<()> {
    let path = dir.join(format!("kalmar.{name}.keyring"));
    if path.exists() {
        return Ok(());
    }
    let cmd =
        json!({"prefix": "auth get-or-create", "entity": name, "caps": caps, "format": "json"});
    let v = mon_command(mons, cmd, timeout).await?;
    let key = v[0]["key"]
        .as_str()
        .ok_or_else(|| anyhow!("auth get-or-create {name}: no key in the reply"))?;
    let mut ring = kalmar_auth::Keyring::default();
    let caps = caps
        .chunks(2)
        .map(|p| {
            (
                p[0].to_string(),
                p.get(1).copied().unwrap_or("").to_string(),
            )
        })
        .collect();
    ring.insert(
        name,
        kalmar_auth::KeyringEntry {
            key: key.parse().map_err(|e| anyhow!("{name}'s key: {e}"))?,
            caps,
        },
    );
    ring.write_file(&path)?;
    Ok(())
}

async fn wait_mon(mons: &Mons, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let r = mon_command(
            mons,
            json!({"prefix": "status", "format": "json"}),
            Duration::from_secs(2),
        )
        .await;
        match r {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() > timeout => bail!(
                "the mons at {:?} did not answer within {} s: {e}",
                mons.addrs,
                timeout.as_secs()
            ),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Each OSD's `(up, up_from)` in the mon's current map; empty when the mon
/// does not answer.
async fn osd_up_from(mons: &Mons) -> std::collections::BTreeMap<u32, (bool, u64)> {
    let Ok(d) = mon_command(
        mons,
        json!({"prefix": "osd dump", "format": "json"}),
        Duration::from_secs(5),
    )
    .await
    else {
        return Default::default();
    };
    d["osds"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| {
                    let id = o["osd"].as_u64()? as u32;
                    let up = o["up"].as_i64() == Some(1);
                    Some((id, (up, o["up_from"].as_u64().unwrap_or(0))))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every OSD in `want` is up with an `up_from` above the one it
/// had before vstart (re)started it: a restarted OSD whose old instance the
/// mon still shows as up is not the new instance yet.
async fn wait_osds_up(mons: &Mons, want: &[(u32, u64)], timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let now = osd_up_from(mons).await;
        let missing: Vec<u32> = want
            .iter()
            .filter(|(id, prev)| !matches!(now.get(id), Some(&(true, from)) if from > *prev))
            .map(|(id, _)| *id)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "osds {:?} are not up after {} s (see their logs in the cluster directory)",
                missing,
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn wait_mgr_available(mons: &Mons, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let stat = mon_command(
            mons,
            json!({"prefix": "mgr stat", "format": "json"}),
            Duration::from_secs(5),
        )
        .await;
        if stat.is_ok_and(|s| s["available"] == json!(true)) {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "no mgr became available within {} s (see mgr.*.log in the cluster directory)",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn running(dir: &Path, name: &str, bin: &str) -> bool {
    read_pid(&dir.join(format!("{name}.pid"))).is_some_and(|p| pid_alive(p, bin))
}

fn s(v: impl AsRef<std::ffi::OsStr>) -> String {
    v.as_ref().to_string_lossy().into_owned()
}

/// With `exporter_addr` in the conf (`--set exporter_addr=127.0.0.1:9926`),
/// the per-host `kalmar exporter` on that address over the cluster's admin
/// sockets (`DIR/exporter.pid`, `DIR/exporter.log`), stopped by vstop.
fn start_exporter(dir: &Path, conf: &Path) -> anyhow::Result<()> {
    let c = kalmar_common::config::Conf::load(conf)?;
    let Some(addr) = c.get::<String>("exporter", "exporter_addr")? else {
        return Ok(());
    };
    if running(dir, "exporter", "kalmar") {
        return Ok(());
    }
    let bin = need_bin("kalmar")?;
    let a = vec![
        "--conf".into(),
        s(conf),
        "exporter".into(),
        "--addr".into(),
        addr,
        "--sock-dir".into(),
        s(dir),
    ];
    spawn_daemon(
        &bin,
        &a,
        &dir.join("exporter.log"),
        &dir.join("exporter.pid"),
    )?;
    Ok(())
}

/// Brings the cluster in `args.dir` up (creating what is missing).
pub async fn vstart(args: &VstartArgs) -> anyhow::Result<Cluster> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let args = VstartArgs {
        dir: dir.clone(),
        ..args.clone()
    };
    let timeout = Duration::from_secs(args.timeout);
    let osd_size = parse_size(&args.osd_size).map_err(|e| anyhow!("--osd-size: {e}"))?;
    let mgr_bin = find_bin("kalmar-mgr");
    let mgrs = if mgr_bin.is_some() { args.mgrs } else { 0 };
    let conf = dir.join("kalmar.conf");
    let mut mons = Mons {
        addrs: write_conf(&args, &conf, mgrs)?,
        admin: None,
    };
    let mon_list = mons
        .iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let confs = s(&conf);

    let mon_bin = need_bin("kalmar-mon")?;
    for (rank, addr) in mons.iter().enumerate() {
        let name = mon_name(rank);
        let full = format!("mon.{name}");
        let mon_data = dir.join(&full);
        if !mon_data.exists() {
            let mut a = vec![
                "mkfs".into(),
                "--name".into(),
                name.clone(),
                "--data".into(),
                s(&mon_data),
                "--conf".into(),
                confs.clone(),
                "--admin-keyring".into(),
                s(dir.join(ADMIN_KEYRING)),
            ];
            // Every mon of the cluster starts from the first one's keys.
            if rank > 0 {
                a.extend(["--keyring".into(), s(mon_keyring(&dir)?)]);
            }
            let out = run_bounded(&mon_bin, &a, timeout)?;
            if !out.status.success() {
                bail!(
                    "kalmar-mon mkfs of {full} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        if !running(&dir, &full, "kalmar-mon") {
            let a = vec![
                "run".into(),
                "--name".into(),
                name.clone(),
                "--data".into(),
                s(&mon_data),
                "--conf".into(),
                confs.clone(),
                "--bind".into(),
                addr.to_string(),
                "--log-file".into(),
                s(dir.join(format!("{full}.log"))),
            ];
            spawn_daemon(
                &mon_bin,
                &a,
                &dir.join(format!("{full}.log")),
                &dir.join(format!("{full}.pid")),
            )?;
        }
    }
    mons.admin = admin_auth(&dir)?;
    wait_mon(&mons, timeout).await?;

    match (&mgr_bin, args.mgrs) {
        (Some(bin), _) => {
            for m in MGR_NAMES.iter().take(mgrs as usize) {
                let name = format!("mgr.{m}");
                daemon_key(&mons, &dir, &name, MGR_CAPS, timeout).await?;
                if !running(&dir, &name, "kalmar-mgr") {
                    let a = vec![
                        "run".into(),
                        "--name".into(),
                        m.to_string(),
                        "--mon".into(),
                        mon_list.clone(),
                        "--conf".into(),
                        confs.clone(),
                        "--log-file".into(),
                        s(dir.join(format!("{name}.log"))),
                    ];
                    spawn_daemon(
                        bin,
                        &a,
                        &dir.join(format!("{name}.log")),
                        &dir.join(format!("{name}.pid")),
                    )?;
                }
            }
        }
        (None, 0) => {}
        (None, n) => eprintln!("vstart: kalmar-mgr is not built yet; starting 0 of {n} mgrs"),
    }

    let osd_bin = need_bin("kalmar-osd")?;
    let total = args.osds.max(existing_osds(&dir));
    // up_from before anything restarts, so the wait below sees new instances.
    let before = osd_up_from(&mons).await;
    let mut want = Vec::new();
    for i in 0..total {
        let name = format!("osd.{i}");
        let odir = dir.join(&name);
        let dev = odir.join("device");
        let marker = odir.join("mkfs.done");
        daemon_key(&mons, &dir, &name, OSD_CAPS, timeout).await?;
        if !marker.exists() {
            std::fs::create_dir_all(&odir)?;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&dev)?;
            if f.metadata()?.len() < osd_size {
                f.set_len(osd_size)?;
            }
            let a = vec![
                "mkfs".into(),
                "--id".into(),
                i.to_string(),
                "--device".into(),
                s(&dev),
                "--mon".into(),
                mon_list.clone(),
                "--conf".into(),
                confs.clone(),
                "--force".into(),
            ];
            let out = run_bounded(&osd_bin, &a, timeout)?;
            if !out.status.success() {
                bail!(
                    "kalmar-osd mkfs of {name} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::fs::write(&marker, "")?;
        }
        if !running(&dir, &name, "kalmar-osd") {
            let a = vec![
                "run".into(),
                "--id".into(),
                i.to_string(),
                "--device".into(),
                s(&dev),
                "--mon".into(),
                mon_list.clone(),
                "--conf".into(),
                confs.clone(),
                "--admin-socket".into(),
                s(dir.join(format!("{name}.asok"))),
                "--log-file".into(),
                s(dir.join(format!("{name}.log"))),
            ];
            spawn_daemon(
                &osd_bin,
                &a,
                &dir.join(format!("{name}.log")),
                &dir.join(format!("{name}.pid")),
            )?;
            want.push((i, before.get(&i).map_or(0, |&(_, from)| from)));
        } else {
            // Already running: up is enough.
            want.push((i, 0));
        }
    }
    wait_osds_up(&mons, &want, timeout).await?;
    if mgrs > 0 {
        wait_mgr_available(&mons, timeout).await?;
    }
    start_exporter(&dir, &conf)?;
    Ok(Cluster {
        dir,
        conf,
        mon: mons[0],
        mons: mons.addrs,
        osds: total,
        mgrs,
    })
}

/// The daemons of a cluster directory with pid files, OSDs first and the
/// mon last (the order they stop in).
pub fn daemons(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pid"))
                .filter_map(|p| Some((p.file_stem()?.to_string_lossy().into_owned(), p)))
                .collect()
        })
        .unwrap_or_default();
    let rank = |n: &str| match n.split('.').next() {
        Some("osd") => 0,
        Some("mgr") => 1,
        _ => 2,
    };
    v.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)).then(a.0.cmp(&b.0)));
    v
}

/// The binary a daemon name runs (`osd.3` -> `kalmar-osd`).
pub fn binary_of(name: &str) -> &'static str {
    match name.split('.').next() {
        Some("osd") => "kalmar-osd",
        Some("mgr") => "kalmar-mgr",
        Some("exporter") => "kalmar",
        _ => "kalmar-mon",
    }
}

/// Stops every daemon of the cluster by PID. Returns the names stopped.
pub fn vstop(args: &VstopArgs) -> anyhow::Result<Vec<String>> {
    if !args.dir.is_dir() {
        bail!("{} is not a cluster directory", args.dir.display());
    }
    let grace = Duration::from_secs(args.timeout);
    let mut stopped = Vec::new();
    for (name, pid_file) in daemons(&args.dir) {
        if let Some(pid) = read_pid(&pid_file) {
            if stop(pid, binary_of(&name), grace) {
                stopped.push(name);
            }
        }
        let _ = std::fs::remove_file(&pid_file);
    }
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_is_written_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("kalmar.conf");
        let mut args = VstartArgs {
            mons: 1,
            osds: 2,
            mgrs: 0,
            dir: dir.path().to_path_buf(),
            osd_size: "1G".into(),
            set: vec![
                "osd_heartbeat_interval=1".into(),
                "osd_heartbeat_grace=3.5".into(),
            ],
            timeout: 1,
        };
        let mon = write_conf(&args, &conf, 0).expect("conf");
        let c = kalmar_common::config::Conf::load(&conf).expect("loads");
        assert_eq!(
            c.get::<i64>("osd.0", "osd_heartbeat_interval").expect("ok"),
            Some(1)
        );
        assert_eq!(
            c.get::<f64>("osd.1", "osd_heartbeat_grace").expect("ok"),
            Some(3.5)
        );
        assert!(c
            .get::<String>("osd.1", "admin_socket")
            .expect("ok")
            .is_some_and(|p| p.ends_with("osd.1.asok")));
        assert_eq!(
            c.get::<String>("mon.a", "mon_host").expect("ok"),
            Some(mon[0].to_string())
        );
        assert_eq!(
            c.get::<i64>("osd.1", "osd_op_num_shards").expect("ok"),
            Some(i64::from(colocated_shards(2)))
        );
        assert_eq!(colocated_shards(10_000), 1, "one shard per OSD at least");
        // A second run keeps the mon address and adds sections.
        args.osds = 3;
        args.set.clear();
        assert_eq!(write_conf(&args, &conf, 0).expect("conf"), mon);
        let c = kalmar_common::config::Conf::load(&conf).expect("loads");
        assert!(c
            .get::<String>("osd.2", "admin_socket")
            .expect("ok")
            .is_some());
        assert_eq!(
            c.get::<i64>("osd.0", "osd_heartbeat_interval").expect("ok"),
            Some(1)
        );
        assert!(args.set.is_empty());
        assert!(matches!(toml_value("x=y"), toml::Value::String(_)));
        // Three mons: a list, the members, one fsid, a socket each.
        let dir3 = tempfile::tempdir().expect("tempdir");
        let conf3 = dir3.path().join("kalmar.conf");
        let args3 = VstartArgs {
            mons: 3,
            dir: dir3.path().to_path_buf(),
            ..args.clone()
        };
        let mons = write_conf(&args3, &conf3, 0).expect("conf");
        assert_eq!(mons.len(), 3);
        let c = kalmar_common::config::Conf::load(&conf3).expect("loads");
        assert_eq!(
            kalmar_common::config::mon_hosts(&c, "osd.0").expect("ok"),
            mons
        );
        assert_eq!(
            c.get::<String>("mon.b", "mon_initial_members").expect("ok"),
            Some("a,b,c".into())
        );
        assert!(c.get::<String>("mon", "fsid").expect("ok").is_some());
        assert!(c
            .get::<String>("mon.c", "admin_socket")
            .expect("ok")
            .is_some_and(|p| p.ends_with("mon.c.asok")));
    }

    #[test]
    fn stop_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        for n in ["mon.a", "osd.1", "mgr.x", "osd.0"] {
            std::fs::write(dir.path().join(format!("{n}.pid")), "1").expect("pid");
        }
        let names: Vec<String> = daemons(dir.path()).into_iter().map(|d| d.0).collect();
        assert_eq!(names, vec!["osd.0", "osd.1", "mgr.x", "mon.a"]);
        assert_eq!(binary_of("osd.7"), "kalmar-osd");
    }
}
