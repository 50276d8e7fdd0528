//! A plugin host over the fake cluster, for the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kalmar_mgr_py::fake::{FakeCluster, FakeHost, FakeOsd};
use kalmar_mgr_py::{
    shipped_modules_dir, ClusterStateStore, CommandResult, DaemonStateIndex, DaemonStateLimits,
    MemoryStore, PyModules, PyModulesConfig,
};
use serde_json::Value;

pub struct Harness {
    pub mods: PyModules,
    pub state: Arc<DaemonStateIndex>,
    pub cluster: Arc<ClusterStateStore>,
    pub host: Arc<FakeHost>,
    pub store: Arc<MemoryStore>,
    pub fake: FakeCluster,
    pub osds: Vec<FakeOsd>,
}

pub fn test_plugins_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/plugins"))
}

/// First report time of the fake OSDs.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

pub fn harness_with(enabled: &[&str], cfg: impl FnOnce(&mut PyModulesConfig)) -> Harness {
    let _ = tracing_subscriber_init();
    let mut config = PyModulesConfig {
        module_dirs: vec![test_plugins_dir(), shipped_modules_dir()],
        ..Default::default()
    };
    cfg(&mut config);
    let state = DaemonStateIndex::new(DaemonStateLimits::default());
    let cluster = ClusterStateStore::new();
    let fake = FakeCluster::default();
    fake.publish(&cluster);
    let mut osds: Vec<FakeOsd> = (0..fake.num_osds).map(FakeOsd::new).collect();
    for o in &mut osds {
        o.open(&state, &fake.hostname).unwrap();
        o.report(&state, t0()).unwrap();
    }
    let host = FakeHost::new("x");
    let store = Arc::new(MemoryStore::new());
    let mods = PyModules::new(
        config,
        state.clone(),
        cluster.clone(),
        host.clone(),
        store.clone(),
    )
    .unwrap();
    mods.load();
    mods.set_enabled(enabled.iter().map(|s| s.to_string()));
    mods.start();
    Harness {
        mods,
        state,
        cluster,
        host,
        store,
        fake,
        osds,
    }
}

pub fn harness(enabled: &[&str]) -> Harness {
    harness_with(enabled, |_| {})
}

fn tracing_subscriber_init() -> std::io::Result<()> {
    kalmar_common::logging::init("off", None)
}

pub fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

impl Harness {
    pub fn cmd(&self, line: &str) -> CommandResult {
        self.mods.handle_command(&words(line), None, None)
    }

    /// `api call METHOD ARGS` on the apitest plugin: `{type, value}`.
    pub fn call(&self, method: &str, args: Value) -> Value {
        let w = vec![
            "api".into(),
            "call".into(),
            method.to_string(),
            args.to_string(),
        ];
        let r = self.mods.handle_command(&w, None, None);
        assert_eq!(r.retval, 0, "{method}({args}) failed: {}", r.stderr);
        serde_json::from_str(&r.stdout).unwrap()
    }

    /// The same, expecting an exception: returns the traceback.
    pub fn call_err(&self, method: &str, args: Value) -> String {
        let w = vec![
            "api".into(),
            "call".into(),
            method.to_string(),
            args.to_string(),
        ];
        let r = self.mods.handle_command(&w, None, None);
        assert_eq!(
            r.retval, -22,
            "{method}({args}) should have raised, got {:?}",
            r
        );
        r.stderr
    }

    /// Ingests one more report of every fake OSD at `t`.
    pub fn report_all(&mut self, t: SystemTime) {
        for o in &mut self.osds {
            o.report(&self.state, t).unwrap();
        }
    }
}

/// Polls `f` every 10 ms until it is true or `limit` passes.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET http://127.0.0.1:port/path with a plain socket; returns the body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}
