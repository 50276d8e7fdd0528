//! The multi-process test harness: a whole cluster (a mon and N OSDs, and
//! mgrs once they exist) as real processes on dynamic 127.0.0.1 ports,
//! brought up by the same code as `kalmar vstart`, in a temporary
//! directory.
//!
//! - Every wait is bounded ([`wait_for`]).
//! - Daemons are stopped by PID when the [`Cluster`] is dropped, also when
//!   the test panics; then the tail of each daemon's log is printed so the
//!   failure can be read.
//! - Binaries come from `$KALMAR_BIN_DIR` (scripts/env.sh sets it), else
//!   the test executable's directory and its parent.
#![deny(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use kalmar_cli::procs::{find_bin, pid_alive, read_pid, run_bounded, signal, stop};
use kalmar_cli::vstart::{binary_of, daemons, vstart, VstartArgs};
use kalmar_client::{ClientConfig, IoCtx, Rados};
use kalmar_msgr::{event_channel, Connection, EntityName, EntityType, Event, MsgrConfig};
use kalmar_proto::client::{OsdOpReply, OsdOpRequest};
use kalmar_proto::monc::MonClient;
use serde_json::{json, Value};

/// Most a `kalmar` CLI call of a test may take.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// Lines of each daemon's log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;
/// Pause between polls in [`wait_for`].
const POLL: Duration = Duration::from_millis(100);

/// Settings of a test cluster.
#[derive(Debug, Clone)]
pub struct ClusterOpts {
    /// Mons (a quorum when more than one).
    pub mons: u32,
    pub osds: u32,
    pub mgrs: u32,
    pub osd_size: String,
    /// `[global]` conf settings.
    pub settings: Vec<(String, String)>,
    /// Bound on bringing the cluster up.
    pub start_timeout: Duration,
}

impl Default for ClusterOpts {
    /// Short timings so failures are detected in seconds: heartbeats every
    /// second, a 4 s grace, stats every second.
    fn default() -> Self {
        let s = |k: &str, v: &str| (k.to_string(), v.to_string());
        ClusterOpts {
            mons: 1,
            osds: 3,
            mgrs: 0,
            osd_size: "2G".into(),
            settings: vec![
                s("osd_heartbeat_interval", "1"),
                s("osd_heartbeat_grace", "4"),
                s("osd_mon_report_interval", "1"),
                s("osd_beacon_report_interval", "5"),
                s("mon_tick_interval", "0.5"),
                s("mon_osd_report_timeout", "120"),
                s("mon_osd_down_out_interval", "600"),
                s("mon_mgr_mkfs_grace", "600"),
                s("osd_op_queue_timeout", "60"),
                // Two shards per OSD whatever the cores (vstart would give
                // co-located OSDs one): messages crossing shards are the
                // paths these tests must cover.
                s("osd_op_num_shards", "2"),
            ],
            start_timeout: Duration::from_secs(90),
        }
    }
}

impl ClusterOpts {
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.to_string(), value.to_string()));
        self
    }
}

/// Waits until `f` returns `Some`, polling, at most `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {} s waiting for {what}", timeout.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One object as a stopped OSD's store holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredObject {
    pub size: u64,
    /// crc32c of the whole data (when asked for).
    pub crc32c: Option<u32>,
}

/// A `perf dump` counter (`logger.name`) as a number (0 if absent).
pub fn counter(dump: &Value, logger: &str, name: &str) -> u64 {
    dump[logger][name].as_u64().unwrap_or(0)
}

/// A raw session to an OSD's client port, for requests the client library
/// would not send (or would resend).
pub struct RawSession {
    conn: Connection,
    rx: tokio::sync::mpsc::Receiver<Event>,
}

impl RawSession {
    /// Opens a session as client `client`; `max_frame_bytes` bounds the
    /// messages it may send.
    pub async fn open(
        addr: SocketAddr,
        client: u64,
        max_frame_bytes: usize,
    ) -> anyhow::Result<RawSession> {
        let cfg = MsgrConfig {
            max_frame_bytes,
            ..MsgrConfig::default()
        };
        let (tx, rx) = event_channel(&cfg);
        let me = EntityName::new(EntityType::Client, client.to_string());
        let conn = Connection::connect(addr, me, uuid::Uuid::nil(), cfg, tx).await?;
        Ok(RawSession { conn, rx })
    }

    /// [`RawSession::open`] on a cluster with auth on: the session is
    /// `client.admin`'s (its tickets fetched from `mons` first), while the
    /// requests carry `client` as their client id, as a keyed `Rados` does.
    pub async fn open_authed(
        mons: &[SocketAddr],
        auth: kalmar_msgr::auth::MsgrAuth,
        addr: SocketAddr,
        max_frame_bytes: usize,
    ) -> anyhow::Result<RawSession> {
        let cfg = MsgrConfig {
            max_frame_bytes,
            auth,
            ..MsgrConfig::default()
        };
        let me: EntityName = match cfg.auth.client.as_ref().filter(|c| c.has_key()) {
            Some(c) => c
                .entity()
                .parse()
                .map_err(|e| anyhow!("entity {}: {e:?}", c.entity()))?,
            None => bail!("open_authed needs a key"),
        };
        // Authenticating with a mon leaves the tickets in the shared
        // ClientAuth; the OSD then checks them.
        let (mon, _ev) =
            MonClient::connect_any(mons, me.clone(), uuid::Uuid::nil(), cfg.clone()).await?;
        mon.close().await;
        let (tx, rx) = event_channel(&cfg);
        let conn = Connection::connect(addr, me, uuid::Uuid::nil(), cfg, tx).await?;
        Ok(RawSession { conn, rx })
    }

    /// Sends a request without waiting for its answer.
    pub async fn send(&self, req: &OsdOpRequest) -> anyhow::Result<()> {
        self.conn.send(req.to_message()).await?;
        Ok(())
    }

    /// Sends a request and waits (at most 20 s) for its answer.
    pub async fn call(&mut self, req: &OsdOpRequest) -> anyhow::Result<OsdOpReply> {
        self.send(req).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await? {
                Some(Event::Message(m)) => {
                    let r = OsdOpReply::from_message(&m.msg)?;
                    if r.tid == req.tid {
                        return Ok(r);
                    }
                }
                Some(_) => {}
                None => bail!("session ended"),
            }
        }
    }
}

/// An OSD's address of one purpose (`public_addr`, `cluster_addr`,
/// `heartbeat_back_addr`, ...) in an `osd dump`.
pub fn osd_addr(dump: &Value, osd: u32, key: &str) -> Option<SocketAddr> {
    dump["osds"]
        .as_array()?
        .iter()
        .find(|o| o["osd"].as_u64() == Some(u64::from(osd)))?[key]
        .as_str()?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// Where each object must be after recovery: its acting OSDs and what
/// they must hold (`crc32c: None` checks the size only).
pub type Placement = BTreeMap<String, (Vec<u32>, StoredObject)>;

/// Compares what stopped OSDs hold (`held`, from
/// [`Cluster::stored_objects`]) with `expect`: one line per object missing
/// or different on an acting OSD, left on an OSD outside its acting set,
/// or unknown to `expect`.
pub fn placement_problems(
    held: &BTreeMap<u32, BTreeMap<String, StoredObject>>,
    expect: &Placement,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, (acting, want)) in expect {
        for (osd, objs) in held {
            let got = objs.get(name);
            if !acting.contains(osd) {
                if got.is_some() {
                    problems.push(format!("{name} left on osd.{osd} (acting {acting:?})"));
                }
                continue;
            }
            match got {
                None => problems.push(format!("{name} missing on osd.{osd}")),
                Some(g) if g.size != want.size => problems.push(format!(
                    "{name} on osd.{osd}: {} bytes, want {}",
                    g.size, want.size
                )),
                Some(g) if want.crc32c.is_some() && g.crc32c != want.crc32c => {
                    problems.push(format!(
                        "{name} on osd.{osd}: crc32c {:?}, want {:?}",
                        g.crc32c, want.crc32c
                    ))
                }
                Some(_) => {}
            }
        }
    }
    for (osd, objs) in held {
        for name in objs.keys().filter(|n| !expect.contains_key(*n)) {
            problems.push(format!("osd.{osd} holds {name}, which no client wrote"));
        }
    }
    problems
}

/// A running test cluster; dropping it stops every daemon.
pub struct Cluster {
    /// Always `Some` until dropped.
    dir: Option<tempfile::TempDir>,
    /// The first mon.
    pub mon: SocketAddr,
    /// Every mon (the first is `mon`).
    pub mons: Vec<SocketAddr>,
    pub conf: PathBuf,
    pub osds: u32,
    opts: ClusterOpts,
}

impl Cluster {
    /// Starts a cluster with `opts`.
    pub async fn start(opts: ClusterOpts) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("kalmar-test-").tempdir()?;
        let args = VstartArgs {
            mons: opts.mons,
            osds: opts.osds,
            mgrs: opts.mgrs,
            dir: dir.path().to_path_buf(),
            osd_size: opts.osd_size.clone(),
            set: opts
                .settings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            timeout: opts.start_timeout.as_secs(),
        };
        let cluster = match vstart(&args).await {
            Ok(c) => c,
            Err(e) => {
                print_logs(dir.path());
                stop_all(dir.path(), Duration::from_secs(2));
                return Err(e.context("vstart"));
            }
        };
        Ok(Cluster {
            mon: cluster.mon,
            mons: cluster.mons,
            conf: cluster.conf,
            osds: cluster.osds,
            dir: Some(dir),
            opts,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// The device file of `osd.N`.
    pub fn device(&self, osd: u32) -> PathBuf {
        self.dir().join(format!("osd.{osd}")).join("device")
    }

    pub fn admin_socket(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}.asok"))
    }

    pub fn pid(&self, name: &str) -> Option<i32> {
        read_pid(&self.dir().join(format!("{name}.pid"))).filter(|&p| pid_alive(p, binary_of(name)))
    }

    /// `kill -9` of a daemon (`osd.1`, `mon.a`).
    pub fn kill9(&self, name: &str) -> anyhow::Result<()> {
        let pid = self
            .pid(name)
            .ok_or_else(|| anyhow!("{name} is not running"))?;
        signal(pid, binary_of(name), libc::SIGKILL);
        let start = Instant::now();
        while pid_alive(pid, binary_of(name)) {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("{name} (pid {pid}) survived SIGKILL for 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Sends `sig` to a daemon (SIGSTOP / SIGCONT to freeze and thaw it).
    pub fn signal(&self, name: &str, sig: i32) -> anyhow::Result<()> {
        let pid = self
            .pid(name)
            .ok_or_else(|| anyhow!("{name} is not running"))?;
        signal(pid, binary_of(name), sig);
        Ok(())
    }

    /// Stops a daemon cleanly (SIGTERM, bounded).
    pub fn stop(&self, name: &str) -> anyhow::Result<()> {
        let pid = self
            .pid(name)
            .ok_or_else(|| anyhow!("{name} is not running"))?;
        stop(pid, binary_of(name), Duration::from_secs(20));
        Ok(())
    }

    /// Starts whatever is not running (the same as `vstart` on the dir).
    pub async fn restart_missing(&self) -> anyhow::Result<()> {
        let args = VstartArgs {
            mons: self.opts.mons,
            osds: self.osds,
            mgrs: self.opts.mgrs,
            dir: self.dir().to_path_buf(),
            osd_size: self.opts.osd_size.clone(),
            set: Vec::new(),
            timeout: self.opts.start_timeout.as_secs(),
        };
        vstart(&args).await.map(|_| ())
    }

    /// Adds OSDs until there are `total` (made and started like `vstart
    /// --osds TOTAL` on the directory), waiting until they are up.
    pub async fn add_osds(&mut self, total: u32) -> anyhow::Result<()> {
        let args = VstartArgs {
            mons: self.opts.mons,
            osds: total,
            mgrs: self.opts.mgrs,
            dir: self.dir().to_path_buf(),
            osd_size: self.opts.osd_size.clone(),
            set: Vec::new(),
            timeout: self.opts.start_timeout.as_secs(),
        };
        let c = vstart(&args).await?;
        self.osds = c.osds;
        Ok(())
    }

    /// Runs a mon command and returns its JSON output.
    pub async fn mon_command(&self, mut cmd: Value) -> anyhow::Result<Value> {
        if let Value::Object(m) = &mut cmd {
            m.entry("format").or_insert(json!("json"));
        }
        let msgr = MsgrConfig {
            auth: self.admin_auth()?,
            ..MsgrConfig::default()
        };
        let me = match msgr.auth.client.as_ref().filter(|c| c.has_key()) {
            Some(_) => EntityName::new(EntityType::Client, "admin"),
            None => EntityName::new(EntityType::Client, format!("test{}", std::process::id())),
        };
        let (c, _ev) = MonClient::connect_any(&self.mons, me, uuid::Uuid::nil(), msgr).await?;
        let r = c.command(&cmd, Duration::from_secs(30)).await;
        c.close().await;
        let r = r?;
        if r.retval != 0 {
            bail!("mon command {cmd}: {} (errno {})", r.outs, r.retval);
        }
        if r.outbuf.0.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&r.outbuf.0)
            .with_context(|| format!("mon output of {cmd} is not JSON"))
    }

    /// A raw session to an OSD's client port (see [`RawSession`]) as
    /// client.admin when the cluster has its key, else anonymous.
    pub async fn raw_session(
        &self,
        addr: SocketAddr,
        client: u64,
        max_frame_bytes: usize,
    ) -> anyhow::Result<RawSession> {
        let auth = self.admin_auth()?;
        if auth.client.as_ref().is_some_and(|c| c.has_key()) {
            RawSession::open_authed(&self.mons, auth, addr, max_frame_bytes).await
        } else {
            RawSession::open(addr, client, max_frame_bytes).await
        }
    }

    /// `client.admin`'s authentication, from the keyring vstart's mon
    /// mkfs wrote next to the conf (found by the keyring search path).
    pub fn admin_auth(&self) -> anyhow::Result<kalmar_msgr::auth::MsgrAuth> {
        self.auth_as("client.admin")
    }

    /// `entity`'s authentication from the cluster's conf and keyrings.
    pub fn auth_as(&self, entity: &str) -> anyhow::Result<kalmar_msgr::auth::MsgrAuth> {
        let conf = kalmar_common::config::Conf::load(&self.conf)?;
        kalmar_msgr::auth::MsgrAuth::client_from_conf(&conf, entity).map_err(anyhow::Error::msg)
    }

    /// A client with a short op timeout, as client.admin.
    pub async fn client(&self) -> anyhow::Result<Rados> {
        let mut cfg = ClientConfig::new(self.mon);
        cfg.other_mons = self.mons[1..].to_vec();
        cfg.op_timeout = Duration::from_secs(60);
        cfg.msgr.auth = self.admin_auth()?;
        Ok(Rados::connect(cfg).await?)
    }

    /// A client with `cfg` (as client.admin unless it names its own auth).
    pub async fn client_with(&self, mut cfg: ClientConfig) -> anyhow::Result<Rados> {
        if cfg.msgr.auth.client.is_none() {
            cfg.msgr.auth = self.admin_auth()?;
        }
        Ok(Rados::connect(cfg).await?)
    }

    /// Creates a replicated pool.
    pub async fn create_pool(
        &self,
        name: &str,
        pg_num: u32,
        size: u32,
        min_size: u32,
    ) -> anyhow::Result<()> {
        self.mon_command(json!({
            "prefix": "osd pool create", "pool": name, "pg_num": pg_num,
            "size": size, "min_size": min_size,
        }))
        .await?;
        Ok(())
    }

    /// Creates a replicated pool, waits (bounded) until every PG of it is
    /// active+clean, and returns a client with an I/O context on it: the
    /// start of most cluster tests.
    pub async fn ready_pool(
        &self,
        name: &str,
        pg_num: u32,
        size: u32,
        min_size: u32,
    ) -> anyhow::Result<(Rados, IoCtx)> {
        self.create_pool(name, pg_num, size, min_size).await?;
        let rados = self.client().await?;
        let io = wait_for("the pool", Duration::from_secs(30), || async {
            rados.ioctx(name).ok()
        })
        .await?;
        self.wait_pgs(
            io.pool_id() as u64,
            pg_num,
            &["active", "clean"],
            Duration::from_secs(60),
        )
        .await?;
        Ok((rados, io))
    }

    /// `pg dump` PG lines (`pg_stats`), as the mon sees them.
    pub async fn pg_stats(&self) -> anyhow::Result<Vec<Value>> {
        let d = self
            .mon_command(json!({"prefix": "pg dump", "dumpcontents": ["pgs"]}))
            .await?;
        let arr = d["pg_map"]["pg_stats"]
            .as_array()
            .or_else(|| d["pg_stats"].as_array())
            .cloned()
            .unwrap_or_default();
        Ok(arr)
    }

    /// Waits until every PG of `pool` reports a state containing all of
    /// `want` (e.g. `["active", "clean"]`).
    pub async fn wait_pgs(
        &self,
        pool: u64,
        pg_num: u32,
        want: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let prefix = format!("{pool}.");
        let has_want = |p: &Value| {
            let st = p["state"].as_str().unwrap_or("");
            want.iter().all(|w| st.split('+').any(|s| s == *w))
        };
        let waited = wait_for(
            &format!("pool {pool}'s PGs to be {}", want.join("+")),
            timeout,
            || async {
                let stats = self.pg_stats().await.ok()?;
                let good = stats
                    .iter()
                    .filter(|p| p["pgid"].as_str().is_some_and(|id| id.starts_with(&prefix)))
                    .filter(|p| has_want(p))
                    .count();
                (good == pg_num as usize).then_some(())
            },
        )
        .await;
        let Err(e) = waited else {
            return Ok(());
        };
        // A stuck PG is read from its state, its up/acting sets and the
        // daemons' logs: a test that returns this error does not panic, so
        // the cluster's drop would not print them.
        let stuck: Vec<String> = match self.pg_stats().await {
            Ok(stats) => stats
                .iter()
                .filter(|p| p["pgid"].as_str().is_some_and(|id| id.starts_with(&prefix)))
                .filter(|p| !has_want(p))
                .map(|p| {
                    format!(
                        "{} {} up {} acting {}",
                        p["pgid"].as_str().unwrap_or("?"),
                        p["state"].as_str().unwrap_or("?"),
                        p["up"],
                        p["acting"]
                    )
                })
                .collect(),
            Err(pe) => vec![format!("pg dump failed: {pe}")],
        };
        print_logs(self.dir());
        Err(e.context(format!("not yet {}: {stuck:?}", want.join("+"))))
    }

    /// The `up` flag of each OSD in `osd dump`.
    pub async fn osds_up(&self) -> anyhow::Result<Vec<(u32, bool)>> {
        let d = self.mon_command(json!({"prefix": "osd dump"})).await?;
        Ok(d["osds"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| Some((o["osd"].as_u64()? as u32, o["up"].as_i64()? == 1)))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// An admin socket command of a daemon.
    pub fn admin(&self, name: &str, cmd: &str) -> anyhow::Result<Value> {
        kalmar_common::admin_socket::request(
            &self.admin_socket(name),
            &json!({"prefix": cmd}),
            Duration::from_secs(10),
        )
        .map_err(|e| anyhow!("{name} {cmd}: {e}"))
    }

    /// `kalmar-objectstore-tool --device <osd.N> --format json ARGS`
    /// (the OSD must be stopped: the tool locks the device).
    pub fn objectstore_tool(&self, osd: u32, args: &[&str]) -> anyhow::Result<Value> {
        let bin = find_bin("kalmar-objectstore-tool")
            .ok_or_else(|| anyhow!("kalmar-objectstore-tool not built"))?;
        let mut a: Vec<String> = vec![
            "--device".into(),
            self.device(osd).display().to_string(),
            "--format".into(),
            "json".into(),
        ];
        a.extend(args.iter().map(|s| s.to_string()));
        let out = run_bounded(&bin, &a, Duration::from_secs(60))?;
        if !out.status.success() {
            bail!(
                "objectstore-tool {args:?} on osd.{osd}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// The client objects of `pool` on the stopped `osd.N`, by name (PG
    /// metadata objects left out); with `digest`, each object's data is
    /// read and its crc32c given.
    pub fn stored_objects(
        &self,
        osd: u32,
        pool: u64,
        digest: bool,
    ) -> anyhow::Result<BTreeMap<String, StoredObject>> {
        let colls: Vec<String> =
            serde_json::from_value(self.objectstore_tool(osd, &["list-collections"])?)?;
        let mut out = BTreeMap::new();
        let prefix = format!("{pool}.");
        for coll in colls.iter().filter(|c| c.starts_with(&prefix)) {
            let mut args = vec!["list", coll.as_str()];
            if digest {
                args.push("--digest");
            }
            let list = self.objectstore_tool(osd, &args)?;
            for e in list.as_array().cloned().unwrap_or_default() {
                let name = e["name"].as_str().unwrap_or_default().to_string();
                if name.starts_with('\0') {
                    continue;
                }
                let obj = StoredObject {
                    size: e["size_bytes"]
                        .as_u64()
                        .ok_or_else(|| anyhow!("osd.{osd} {coll}: no size in {e}"))?,
                    crc32c: e["data_crc32c"].as_u64().map(|c| c as u32),
                };
                if out.insert(name.clone(), obj).is_some() {
                    bail!("osd.{osd} holds {name} in two collections");
                }
            }
        }
        Ok(out)
    }

    /// `perf dump` of a daemon.
    pub fn perf_dump(&self, name: &str) -> anyhow::Result<Value> {
        self.admin(name, "perf dump")
    }

    /// Runs a binary of the workspace with `args`, bounded.
    pub fn run_bin(
        &self,
        name: &str,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<std::process::Output> {
        let bin = find_bin(name).ok_or_else(|| anyhow!("{name} not built"))?;
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Ok(run_bounded(&bin, &a, timeout)?)
    }

    /// `kalmar --conf <this cluster's conf> ARGS`, bounded by
    /// [`CLI_TIMEOUT`].
    pub fn kalmar(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let conf = self.conf.display().to_string();
        let mut a = vec!["--conf", conf.as_str()];
        a.extend_from_slice(args);
        self.run_bin("kalmar", &a, CLI_TIMEOUT)
    }

    /// [`Cluster::kalmar`] that must exit 0: its standard output.
    pub fn kalmar_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.kalmar(args)?;
        anyhow::ensure!(
            out.status.success(),
            "kalmar {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Stops every daemon now (also done on drop).
    pub fn stop_all(&self) {
        stop_all(self.dir(), Duration::from_secs(20));
    }
}

fn stop_all(dir: &Path, grace: Duration) {
    for (name, pid_file) in daemons(dir) {
        if let Some(pid) = read_pid(&pid_file) {
            stop(pid, binary_of(&name), grace);
        }
    }
}

/// Prints the tail of every daemon log in `dir`.
pub fn print_logs(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    for l in logs {
        let text = std::fs::read_to_string(&l).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(LOG_TAIL_LINES);
        eprintln!(
            "===== {} (last {} lines) =====",
            l.display(),
            lines.len() - from
        );
        for line in &lines[from..] {
            eprintln!("{line}");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_logs(self.dir());
        }
        // SIGTERM with a short grace, then SIGKILL: a failed test must not
        // leave daemons behind.
        stop_all(self.dir(), Duration::from_secs(5));
        if std::env::var_os("KALMAR_KEEP_TEST_DIR").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("keeping {}", d.keep().display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(size: u64, crc: Option<u32>) -> StoredObject {
        StoredObject { size, crc32c: crc }
    }

    #[test]
    fn placement_problems_names_each_discrepancy() {
        let mut expect = Placement::new();
        expect.insert("a".into(), (vec![0, 1], obj(3, Some(7))));
        expect.insert("b".into(), (vec![1, 2], obj(5, None)));
        let mut held: BTreeMap<u32, BTreeMap<String, StoredObject>> = BTreeMap::new();
        held.entry(0)
            .or_default()
            .insert("a".into(), obj(3, Some(7)));
        held.entry(1)
            .or_default()
            .insert("a".into(), obj(3, Some(7)));
        held.entry(1)
            .or_default()
            .insert("b".into(), obj(5, Some(1)));
        held.entry(2)
            .or_default()
            .insert("b".into(), obj(5, Some(2)));
        assert!(placement_problems(&held, &expect).is_empty());

        held.entry(1)
            .or_default()
            .insert("a".into(), obj(3, Some(8)));
        held.entry(0).or_default().insert("b".into(), obj(5, None));
        held.entry(2).or_default().remove("b");
        held.entry(2).or_default().insert("c".into(), obj(1, None));
        let p = placement_problems(&held, &expect);
        assert_eq!(
            p,
            vec![
                "a on osd.1: crc32c Some(8), want Some(7)".to_string(),
                "b left on osd.0 (acting [1, 2])".to_string(),
                "b missing on osd.2".to_string(),
                "osd.2 holds c, which no client wrote".to_string(),
            ]
        );
    }
}
