//! A small multi-process harness for the mon: the real `kalmar-mon`
//! binary on a dynamic 127.0.0.1 port in a temp directory, plus scripted
//! fake OSDs and mgrs speaking the mon protocol in-process.
//!
//! Every wait is bounded; the mon is killed by PID when the harness is
//! dropped (also when a test panics), and its log tail is printed then.
#![allow(dead_code)]

pub mod netns;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalmar_maps::osd::OsdAddrs;
use kalmar_maps::{EntityAddr, OsdMap};
use kalmar_msgr::{EntityName, EntityType, Message, MsgrConfig};
use kalmar_proto::mon::*;
use kalmar_proto::monc::{MonClient, MonEvent};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Bound on any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(20);

/// The `[global]` of every harness conf: auth off, written out. The fake
/// OSDs and mgrs speak the mon protocol without keys (these tests are about
/// maps, elections and commands; `tests/tests/auth_*.rs` cover cephx on a
/// whole cluster), so the mon's health carries AUTH_INSECURE here.
pub const AUTH_NONE: &str = "[global]\nauth_cluster_required = \"none\"\nauth_service_required = \"none\"\nauth_client_required = \"none\"\n";
const POLL: Duration = Duration::from_millis(50);

/// Where the built binaries are: `$KALMAR_BIN_DIR`, else next to the test
/// executable (`target/release/deps/..`).
pub fn bin(name: &str) -> PathBuf {
    if name == "kalmar-mon" {
        if let Some(p) = option_env!("CARGO_BIN_EXE_kalmar-mon") {
            return PathBuf::from(p);
        }
    }
    if let Ok(dir) = std::env::var("KALMAR_BIN_DIR") {
        let p = Path::new(&dir).join(name);
        if p.exists() {
            return p;
        }
    }
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    for d in [deps, deps.parent().unwrap_or(deps)] {
        let p = d.join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not built: run `cargo build --release --workspace --bins` first (or set KALMAR_BIN_DIR)");
}

/// Polls `f` until it returns `Some`, at most `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let t0 = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if t0.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("addr").port()
}

pub fn fast_msgr() -> MsgrConfig {
    MsgrConfig {
        keepalive_interval: Duration::from_millis(200),
        keepalive_timeout: Duration::from_secs(3),
        reconnect_backoff_min: Duration::from_millis(20),
        reconnect_backoff_max: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(2),
        ..MsgrConfig::default()
    }
}

/// The mon process.
pub struct Mon {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl Mon {
    /// mkfs + run with `[mon]` settings `conf` (TOML lines).
    pub async fn start(conf: &str) -> Mon {
        let dir = tempfile::Builder::new()
            .prefix("kalmar-mon-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::write(
            dir.path().join("kalmar.conf"),
            format!("{AUTH_NONE}[mon]\n{conf}\n"),
        )
        .expect("conf");
        let out = Command::new(bin("kalmar-mon"))
            .args(["mkfs", "--data"])
            .arg(dir.path().join("data"))
            .arg("--conf")
            .arg(dir.path().join("kalmar.conf"))
            .output()
            .expect("run kalmar-mon mkfs");
        assert!(
            out.status.success(),
            "mkfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut mon = Mon {
            dir,
            addr,
            child: None,
        };
        mon.spawn().await;
        mon
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.data().join("mon.a.asok")
    }

    async fn spawn(&mut self) {
        let child = Command::new(bin("kalmar-mon"))
            .args(["run", "--data"])
            .arg(self.data())
            .arg("--conf")
            .arg(self.dir.path().join("kalmar.conf"))
            .args([
                "--bind",
                &self.addr.to_string(),
                "--log-level",
                "debug,openraft=info",
                "--log-file",
            ])
            .arg(self.dir.path().join("mon.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn kalmar-mon");
        self.child = Some(child);
        let addr = self.addr;
        wait_for("the mon to answer", WAIT, || async move {
            command_at(addr, json!({"prefix": "osd stat", "format": "json"}))
                .await
                .ok()
        })
        .await;
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded), then SIGKILL.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(POLL);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the mon first");
        self.spawn().await;
    }

    pub async fn cmd(&self, cmd: Value) -> (i32, String, Vec<u8>) {
        command_at(self.addr, cmd).await.expect("mon command")
    }

    /// A JSON command that must succeed.
    pub async fn json(&self, mut cmd: Value) -> Value {
        cmd["format"] = json!("json");
        let (rv, outs, out) = self.cmd(cmd.clone()).await;
        assert_eq!(rv, 0, "{cmd}: {outs}");
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{cmd}: not JSON ({e}): {}", String::from_utf8_lossy(&out)))
    }

    pub async fn ok(&self, cmd: Value) -> String {
        let (rv, outs, _) = self.cmd(cmd.clone()).await;
        assert_eq!(rv, 0, "{cmd}: {outs}");
        outs
    }

    pub async fn epoch(&self) -> u64 {
        self.json(json!({"prefix": "osd dump"})).await["epoch"]
            .as_u64()
            .expect("epoch")
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("mon.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(400)..].join("\n")
    }
}

impl Drop for Mon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- mon log tail ----\n{}", self.log_tail());
        }
        self.kill9();
    }
}

/// One command over a fresh client session.
pub async fn command_at(addr: SocketAddr, cmd: Value) -> Result<(i32, String, Vec<u8>), String> {
    command_any(&[addr], cmd).await
}

/// One command through any of `mons`.
pub async fn command_any(
    mons: &[SocketAddr],
    cmd: Value,
) -> Result<(i32, String, Vec<u8>), String> {
    let cfg = MsgrConfig {
        reconnect_max_attempts: Some(2),
        ..fast_msgr()
    };
    let (c, _ev) = MonClient::connect_any(
        mons,
        EntityName::new(EntityType::Client, "test"),
        Uuid::nil(),
        cfg,
    )
    .await
    .map_err(|e| e.to_string())?;
    let r = c
        .command(&cmd, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string());
    c.close().await;
    let r = r?;
    Ok((r.retval, r.outs, r.outbuf.0))
}

/// A scripted OSD: registers, boots, reports, and follows the OSDMap.
pub struct FakeOsd {
    pub id: i32,
    pub uuid: Uuid,
    pub client: MonClient,
    pub map: Arc<Mutex<Option<OsdMap>>>,
    /// Every osdmap message received (for subscription tests).
    pub received: Arc<Mutex<Vec<OsdMapMsg>>>,
    /// Every other message from the mon (acks).
    pub others: Arc<Mutex<Vec<Message>>>,
    /// Every map epoch this OSD went through, in order.
    pub history: Arc<Mutex<Vec<OsdMap>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeOsd {
    /// Registers a new OSD (`osd mkfs`) and connects as it.
    pub async fn create(mon: SocketAddr) -> FakeOsd {
        let uuid = Uuid::new_v4();
        let id = register(mon, uuid).await;
        FakeOsd::connect(mon, id, uuid).await
    }

    pub async fn connect(mon: SocketAddr, id: i32, uuid: Uuid) -> FakeOsd {
        FakeOsd::connect_any(&[mon], id, uuid).await
    }

    /// Connects to one of `mons` (hunting among them later).
    pub async fn connect_any(mons: &[SocketAddr], id: i32, uuid: Uuid) -> FakeOsd {
        let (client, events) =
            MonClient::connect_any(mons, EntityName::osd(id as u32), Uuid::nil(), fast_msgr())
                .await
                .expect("osd connects");
        let map = Arc::new(Mutex::new(None));
        let received = Arc::new(Mutex::new(Vec::new()));
        let others = Arc::new(Mutex::new(Vec::new()));
        let history = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(follow(
            events,
            map.clone(),
            received.clone(),
            others.clone(),
            history.clone(),
        ));
        FakeOsd {
            id,
            uuid,
            client,
            map,
            received,
            others,
            history,
            task,
        }
    }

    pub fn addrs(&self) -> OsdAddrs {
        OsdAddrs::all(EntityAddr::new(
            format!("127.0.0.1:{}", 6800 + self.id)
                .parse()
                .expect("addr"),
            1,
        ))
    }

    pub async fn boot(&self) {
        let have = self.epoch();
        let boot = OsdBoot {
            osd_id: self.id,
            uuid: self.uuid,
            addrs: self.addrs(),
            have_epoch: have,
            hostname: "localhost".into(),
            metadata: Default::default(),
        };
        self.client
            .subscribe("osdmap", have + 1, false)
            .await
            .expect("subscribe");
        self.client.send(&boot).await.expect("boot");
    }

    pub fn epoch(&self) -> u32 {
        self.map.lock().as_ref().map(|m| m.epoch).unwrap_or(0)
    }

    pub fn map(&self) -> Option<OsdMap> {
        self.map.lock().clone()
    }

    /// Waits until this OSD's copy of the map satisfies `f`.
    pub async fn wait_map(&self, what: &str, f: impl Fn(&OsdMap) -> bool) -> OsdMap {
        let map = self.map.clone();
        wait_for(what, WAIT, || {
            let m = map.lock().clone();
            let ok = m.filter(|m| f(m));
            async move { ok }
        })
        .await
    }

    pub async fn report_failure(&self, target: i32, failed_for_ms: u64) {
        let f = OsdFailure {
            reporter: self.id,
            target,
            failed_for_ms,
            epoch: self.epoch(),
            is_failed: true,
            ..Default::default()
        };
        self.client.send(&f).await.expect("failure report");
    }

    /// Asks to be marked down as the instance at `addrs` and waits for the
    /// mon's ack (panics after [`WAIT`]).
    pub async fn mark_me_down(&self, addrs: OsdAddrs) {
        use kalmar_proto::Payload;
        let map = self.map().expect("a map before mark-me-down");
        let req = OsdMarkMeDown {
            fsid: map.fsid,
            target_osd: self.id,
            target_addrs: addrs,
            epoch: map.epoch,
            request_ack: true,
        };
        self.others.lock().clear();
        self.client.send(&req).await.expect("mark me down");
        let others = self.others.clone();
        let want = req.ack();
        wait_for("the mark-me-down ack", WAIT, || {
            let acked = others
                .lock()
                .iter()
                .any(|m| OsdMarkMeDown::from_message(m).is_ok_and(|a| a == want));
            async move { acked.then_some(()) }
        })
        .await
    }

    pub async fn beacon(&self) {
        let b = OsdBeacon {
            osd_id: self.id,
            epoch: self.epoch(),
            pgs: vec![],
            last_epoch_clean: self.epoch(),
        };
        self.client.send(&b).await.expect("beacon");
    }
}

impl Drop for FakeOsd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `osd mkfs` for `uuid`; returns the id.
pub async fn register(mon: SocketAddr, uuid: Uuid) -> i32 {
    register_any(&[mon], uuid).await
}

/// `osd mkfs` through any of `mons`.
pub async fn register_any(mons: &[SocketAddr], uuid: Uuid) -> i32 {
    let (c, _ev) = MonClient::connect_any(
        mons,
        EntityName::new(EntityType::Client, "osd-mkfs"),
        Uuid::nil(),
        fast_msgr(),
    )
    .await
    .expect("connect for mkfs");
    let r = c
        .osd_mkfs(uuid, -1, "localhost", Duration::from_secs(10))
        .await
        .expect("mkfs reply");
    c.close().await;
    assert_eq!(r.retval, 0, "osd mkfs: {}", r.error);
    r.osd_id
}

async fn follow(
    mut events: mpsc::Receiver<MonEvent>,
    map: Arc<Mutex<Option<OsdMap>>>,
    received: Arc<Mutex<Vec<OsdMapMsg>>>,
    others: Arc<Mutex<Vec<Message>>>,
    history: Arc<Mutex<Vec<OsdMap>>>,
) {
    while let Some(ev) = events.recv().await {
        if let MonEvent::Other(m) = &ev {
            others.lock().push(m.msg.clone());
        }
        if let MonEvent::OsdMap(msg) = ev {
            let cur = map.lock().clone();
            history.lock().extend(epochs_of(&msg, cur.as_ref()));
            match msg.advance(cur.as_ref()) {
                Ok(Some(next)) => *map.lock() = Some(next),
                Ok(None) => eprintln!(
                    "fake osd: osdmap message does not connect to epoch {:?}",
                    cur.map(|m| m.epoch)
                ),
                Err(e) => panic!("fake osd: bad osdmap message: {e}"),
            }
            received.lock().push(msg);
        }
    }
}

/// Each epoch an osdmap message moves `cur` through (full maps newer than
/// it, then each incremental applied).
pub fn epochs_of(msg: &OsdMapMsg, cur: Option<&OsdMap>) -> Vec<OsdMap> {
    let have = cur.map(|m| m.epoch).unwrap_or(0);
    let mut out = Vec::new();
    let mut m = match msg.maps.range(have + 1..).next_back() {
        Some((_, b)) => match OsdMap::decode_sealed(&b.0) {
            Ok(m) => {
                out.push(m.clone());
                m
            }
            Err(_) => return out,
        },
        None => match cur {
            Some(c) => c.clone(),
            None => return out,
        },
    };
    for (e, b) in msg.incrementals.range(m.epoch + 1..) {
        if *e != m.epoch + 1 {
            break;
        }
        let Ok(inc) = kalmar_maps::Incremental::decode_sealed(&b.0) else {
            break;
        };
        if m.apply_incremental(&inc).is_err() {
            break;
        }
        out.push(m.clone());
    }
    out
}

/// A scripted mgr sending beacons until stopped.
pub struct FakeMgr {
    pub name: String,
    pub gid: u64,
    beacons: Option<tokio::task::JoinHandle<()>>,
    client: Arc<MonClient>,
}

impl FakeMgr {
    pub async fn start(mon: SocketAddr, name: &str, gid: u64, period: Duration) -> FakeMgr {
        let (client, _ev) = MonClient::connect(
            mon,
            EntityName::new(EntityType::Mgr, name),
            Uuid::nil(),
            fast_msgr(),
        )
        .await
        .expect("mgr connects");
        let client = Arc::new(client);
        let mut mgr = FakeMgr {
            name: name.into(),
            gid,
            beacons: None,
            client,
        };
        mgr.resume(period);
        mgr
    }

    /// Stops sending beacons (the mgr "hangs").
    pub fn pause(&mut self) {
        if let Some(t) = self.beacons.take() {
            t.abort();
        }
    }

    pub fn resume(&mut self, period: Duration) {
        self.pause();
        let client = self.client.clone();
        let (name, gid) = (self.name.clone(), self.gid);
        self.beacons = Some(tokio::spawn(async move {
            loop {
                let b = MgrBeacon {
                    gid,
                    name: name.clone(),
                    addr: EntityAddr::new("127.0.0.1:7000".parse().expect("addr"), gid as u32),
                    available: true,
                    ..Default::default()
                };
                let _ = client.send(&b).await;
                tokio::time::sleep(period).await;
            }
        }));
    }
}

impl Drop for FakeMgr {
    fn drop(&mut self) {
        self.pause();
    }
}

/// Several mon processes forming one quorum, each in its own directory,
/// on dynamic 127.0.0.1 ports.
pub struct MonQuorum {
    pub dir: tempfile::TempDir,
    pub names: Vec<String>,
    pub addrs: Vec<SocketAddr>,
    pub fsid: Uuid,
    children: Vec<Option<Child>>,
}

impl MonQuorum {
    /// mkfs and run `n` mons (`a`, `b`, ...) with `[mon]` settings `conf`.
    pub async fn start(n: usize, conf: &str) -> MonQuorum {
        let dir = tempfile::Builder::new()
            .prefix("kalmar-quorum-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::write(
            dir.path().join("kalmar.conf"),
            format!("{AUTH_NONE}[mon]\n{conf}\n"),
        )
        .expect("conf");
        let names: Vec<String> = (0..n)
            .map(|i| ((b'a' + i as u8) as char).to_string())
            .collect();
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_port()).parse().expect("addr"))
            .collect();
        let mut q = MonQuorum {
            dir,
            names,
            addrs,
            fsid: Uuid::new_v4(),
            children: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            q.mkfs(i);
        }
        for i in 0..n {
            q.spawn(i);
        }
        q.wait_quorum(n, WAIT).await;
        q
    }

    pub fn data(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("mon.{}", self.names[i]))
    }

    fn members(&self) -> String {
        self.names
            .iter()
            .zip(&self.addrs)
            .map(|(n, a)| format!("{n}={a}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `kalmar-mon mkfs` for mon `i` (its directory must not hold a store).
    pub fn mkfs(&self, i: usize) {
        let out = Command::new(bin("kalmar-mon"))
            .args(["mkfs", "--name", &self.names[i], "--data"])
            .arg(self.data(i))
            .arg("--conf")
            .arg(self.dir.path().join("kalmar.conf"))
            .args(["--fsid", &self.fsid.to_string()])
            .args(["--initial-members", &self.members()])
            .output()
            .expect("run kalmar-mon mkfs");
        assert!(
            out.status.success(),
            "mkfs mon.{}: {}",
            self.names[i],
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new mon slot (`mon add` it, then [`MonQuorum::mkfs_join`] and
    /// [`MonQuorum::spawn`]); returns its index.
    pub fn new_slot(&mut self, name: &str) -> usize {
        self.names.push(name.to_string());
        self.addrs
            .push(format!("127.0.0.1:{}", free_port()).parse().expect("addr"));
        self.children.push(None);
        self.addrs.len() - 1
    }

    /// `kalmar-mon mkfs --join RANK` for mon `i`.
    pub fn mkfs_join(&self, i: usize, rank: u64) {
        let out = Command::new(bin("kalmar-mon"))
            .args(["mkfs", "--name", &self.names[i], "--data"])
            .arg(self.data(i))
            .arg("--conf")
            .arg(self.dir.path().join("kalmar.conf"))
            .args(["--fsid", &self.fsid.to_string()])
            .args(["--join", &rank.to_string()])
            .output()
            .expect("run kalmar-mon mkfs");
        assert!(
            out.status.success(),
            "mkfs --join mon.{}: {}",
            self.names[i],
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts mon `i` (no wait).
    pub fn spawn(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "mon.{} runs", self.names[i]);
        let child = Command::new(bin("kalmar-mon"))
            .args(["run", "--name", &self.names[i], "--data"])
            .arg(self.data(i))
            .args(["--bind", &self.addrs[i].to_string()])
            .arg("--conf")
            .arg(self.dir.path().join("kalmar.conf"))
            .args(["--log-level", "debug,openraft=info", "--log-file"])
            .arg(self.log_path(i))
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn kalmar-mon");
        self.children[i] = Some(child);
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("mon.{}.log", self.names[i]))
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` to mon `i` (SIGSTOP freezes it: to its peers it is
    /// partitioned away; SIGCONT heals).
    pub fn signal(&self, i: usize, sig: i32) {
        if let Some(c) = &self.children[i] {
            // SAFETY: kill(2) on the pid of a child this harness started.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    /// Waits (at most `bound`) for mon `i` to exit on its own; returns its
    /// exit code (None: still running at the bound, or killed by a signal).
    pub async fn wait_exit(&mut self, i: usize, bound: Duration) -> Option<i32> {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < bound {
            let c = self.children[i].as_mut()?;
            if let Ok(Some(st)) = c.try_wait() {
                self.children[i] = None;
                return st.code();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.addrs.len())
            .filter(|&i| self.children[i].is_some())
            .collect()
    }

    /// The quorum status as mon `i` answers it (forwarded to its leader).
    pub async fn quorum_status(&self, i: usize) -> Option<Value> {
        let (rv, _, out) = command_at(
            self.addrs[i],
            json!({"prefix": "quorum_status", "format": "json"}),
        )
        .await
        .ok()?;
        if rv != 0 {
            return None;
        }
        serde_json::from_slice(&out).ok()
    }

    /// Waits until a running mon reports a leader with `n` mons in quorum;
    /// returns the leader's index.
    pub async fn wait_quorum(&self, n: usize, bound: Duration) -> usize {
        let running = self.running();
        let names = self.names.clone();
        wait_for(&format!("a quorum of {n}"), bound, || {
            let running = running.clone();
            let names = names.clone();
            async move {
                for &i in &running {
                    if let Some(q) = self.quorum_status(i).await {
                        let in_q = q["quorum_names"].as_array().map_or(0, |a| a.len());
                        let leader = q["quorum_leader_name"].as_str().unwrap_or("");
                        if let Some(l) = names.iter().position(|x| x == leader) {
                            if in_q >= n && running.contains(&l) {
                                return Some(l);
                            }
                        }
                    }
                }
                None
            }
        })
        .await
    }

    /// A JSON command through any running mon that must succeed.
    pub async fn json(&self, mut cmd: Value) -> Value {
        cmd["format"] = json!("json");
        let mons: Vec<SocketAddr> = self.running().iter().map(|&i| self.addrs[i]).collect();
        let (rv, outs, out) = command_any(&mons, cmd.clone()).await.expect("mon command");
        assert_eq!(rv, 0, "{cmd}: {outs}");
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{cmd}: not JSON ({e}): {}", String::from_utf8_lossy(&out)))
    }

    pub async fn ok(&self, cmd: Value) -> String {
        let mons: Vec<SocketAddr> = self.running().iter().map(|&i| self.addrs[i]).collect();
        let (rv, outs, _) = command_any(&mons, cmd.clone()).await.expect("mon command");
        assert_eq!(rv, 0, "{cmd}: {outs}");
        outs
    }

    pub fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for MonQuorum {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..self.addrs.len() {
                eprintln!(
                    "---- mon.{} log tail ----\n{}",
                    self.names[i],
                    self.log_tail(i)
                );
            }
        }
        for i in 0..self.addrs.len() {
            self.kill9(i);
        }
    }
}

/// The full map each epoch had, as seen by one observer; panics when two
/// observers saw different content for one epoch.
pub fn check_one_content_per_epoch(
    seen: &mut std::collections::BTreeMap<u32, OsdMap>,
    maps: &[OsdMap],
) {
    for m in maps {
        match seen.get(&m.epoch) {
            Some(prev) => assert_eq!(prev, m, "two different maps for epoch {}", m.epoch),
            None => {
                seen.insert(m.epoch, m.clone());
            }
        }
    }
}
