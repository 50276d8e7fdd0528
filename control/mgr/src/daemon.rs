//! The mgr daemon: a standby that beacons to the mon and follows the
//! MgrMap; when the map names it active it builds the active side
//! ([`Active`]: DaemonServer sessions, PGMap, ClusterState, plugins) and
//! tears it down when it loses the role.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kalmar_common::admin_socket::{AdminCommands, AdminSocket};
use kalmar_common::perf::{PerfCollection, PerfCounters};
use kalmar_maps::time::now_us;
use kalmar_maps::{EntityAddr, MgrMap, MgrModuleInfo, OsdMap};
use kalmar_mgr_py::{module_search_path, PyModules, PyModulesConfig, MODULE_PATH_ENV};
use kalmar_msgr::{event_channel, EntityName, EntityType, Listener, MsgrConfig};
use kalmar_proto::mon::{CommandDesc, HealthSeverity, MgrBeacon, MgrHealthCheck, MonMgrReport};
use kalmar_proto::monc::{MonClient, MonEvent};
use parking_lot::RwLock;
use serde_json::{json, Value};

use crate::active::Active;
use crate::host::{DaemonHost, FileStore};
use crate::options::MgrOptions;

#[derive(Debug, thiserror::Error)]
pub enum MgrError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin socket {path}: {source}")]
    AdminSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("module store: {0}")]
    Store(String),
    #[error("the mon session ended: {0}")]
    MonClosed(String),
}

/// How to run a mgr.
#[derive(Debug, Clone)]
pub struct MgrConfig {
    /// The `x` of `mgr.x`.
    pub name: String,
    pub mon: SocketAddr,
    /// More mons to hunt among (`--mon` lists).
    pub other_mons: Vec<SocketAddr>,
    /// Where daemons and the CLI reach this mgr (port 0: any).
    pub bind: SocketAddr,
    pub admin_socket: PathBuf,
    /// Module options and stores are kept here.
    pub data_dir: PathBuf,
    /// `--modules-dir` folders (searched before the conf's and the env's).
    pub module_dirs: Vec<PathBuf>,
    pub opts: MgrOptions,
    pub msgr: MsgrConfig,
    /// How often tickets and rotating secrets are renewed (with a key).
    pub auth_refresh: std::time::Duration,
    /// Crash reports of this host's daemons: the active mgr posts the new
    /// ones to the `crash` module (Ceph's `ceph-crash` agent's job).
    pub crash_dir: PathBuf,
}

/// State shared by the daemon's tasks.
pub struct MgrShared {
    pub name: String,
    pub gid: u64,
    pub opts: MgrOptions,
    pub addr: EntityAddr,
    pub perf: Arc<PerfCounters>,
    active: RwLock<Option<Arc<Active>>>,
    osdmap: RwLock<Arc<OsdMap>>,
    mgrmap: RwLock<MgrMap>,
}

impl MgrShared {
    pub fn active(&self) -> Option<Arc<Active>> {
        self.active.read().clone()
    }

    pub fn osdmap(&self) -> Arc<OsdMap> {
        self.osdmap.read().clone()
    }

    pub fn mgrmap(&self) -> MgrMap {
        self.mgrmap.read().clone()
    }

    /// A shared state with an active side already in place and no mon:
    /// for the DaemonServer alone (benchmarks, tests).
    pub fn standalone(name: &str, opts: MgrOptions, addr: EntityAddr) -> Arc<MgrShared> {
        let active = Active::new(&opts);
        active.ready.store(true, Ordering::Release);
        Arc::new(MgrShared {
            name: name.to_string(),
            gid: 1,
            addr,
            perf: crate::perf::build(),
            active: RwLock::new(Some(active)),
            osdmap: RwLock::new(Arc::new(OsdMap::new(uuid::Uuid::nil(), 0))),
            mgrmap: RwLock::new(MgrMap::default()),
            opts,
        })
    }
}

/// Starts the DaemonServer's listener and its serving task.
pub async fn start_server(
    bind: SocketAddr,
    name: &str,
    msgr: &MsgrConfig,
) -> Result<(Listener, tokio::sync::mpsc::Receiver<kalmar_msgr::Event>), MgrError> {
    let (tx, rx) = event_channel(msgr);
    let me = EntityName::new(EntityType::Mgr, name.to_string());
    let l = Listener::bind(bind, me, uuid::Uuid::nil(), msgr.clone(), tx)
        .await
        .map_err(|source| MgrError::Bind { addr: bind, source })?;
    Ok((l, rx))
}

/// What the beacon says about the plugins.
#[derive(Default)]
struct BeaconInfo {
    modules: Vec<MgrModuleInfo>,
    commands: Vec<CommandDesc>,
    services: std::collections::BTreeMap<String, String>,
}

fn beacon_info(active: Option<&Arc<Active>>) -> BeaconInfo {
    let Some(py) = active.and_then(|a| a.py()) else {
        return BeaconInfo::default();
    };
    BeaconInfo {
        modules: py
            .module_infos()
            .into_iter()
            .map(|m| MgrModuleInfo {
                name: m.name,
                can_run: m.can_run,
                error_string: m.error_string,
            })
            .collect(),
        commands: py
            .commands()
            .into_iter()
            .map(|(_, c)| CommandDesc {
                cmd: c.signature,
                help: c.desc,
                perm: c.perm,
            })
            .collect(),
        services: py.services(),
    }
}

struct Daemon {
    cfg: MgrConfig,
    shared: Arc<MgrShared>,
    mon: Arc<MonClient>,
    store: Arc<FileStore>,
    module_dirs: Vec<PathBuf>,
    /// A crash-report scan is running (at most one at a time).
    crash_scan: Arc<std::sync::atomic::AtomicBool>,
}

/// Runs the mgr until `shutdown` resolves or the mon session ends.
pub async fn run(
    cfg: MgrConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), MgrError> {
    let gid = rand::random::<u64>() >> 1 | 1;
    let (listener, server_rx) = start_server(cfg.bind, &cfg.name, &cfg.msgr).await?;
    let addr = EntityAddr::new(listener.local_addr(), std::process::id());
    let perf = crate::perf::build();
    let shared = Arc::new(MgrShared {
        name: cfg.name.clone(),
        gid,
        opts: cfg.opts.clone(),
        addr,
        perf: perf.clone(),
        active: RwLock::new(None),
        osdmap: RwLock::new(Arc::new(OsdMap::new(uuid::Uuid::nil(), 0))),
        mgrmap: RwLock::new(MgrMap::default()),
    });
    let collection = PerfCollection::new();
    collection.add(perf);
    let _admin = start_admin(&cfg, &shared, collection)?;
    let store = FileStore::open(&cfg.data_dir.join("store.json"))
        .map_err(|e| MgrError::Store(e.to_string()))?;
    for (k, v) in &cfg.opts.module_config {
        store
            .set_default(k, v)
            .map_err(|e| MgrError::Store(e.to_string()))?;
    }
    tokio::spawn(crate::server::serve(shared.clone(), server_rx));

    let me = EntityName::new(EntityType::Mgr, cfg.name.clone());
    let mons: Vec<SocketAddr> = std::iter::once(cfg.mon)
        .chain(cfg.other_mons.iter().copied())
        .collect();
    let (mon, mut events) =
        MonClient::start_any(&mons, me.clone(), uuid::Uuid::nil(), cfg.msgr.clone());
    if cfg.msgr.auth.client.as_ref().is_some_and(|c| c.has_key()) {
        kalmar_msgr::auth::spawn_refresh(
            mons.clone(),
            me,
            uuid::Uuid::nil(),
            cfg.msgr.clone(),
            cfg.auth_refresh,
        );
    }
    let mon = Arc::new(mon);
    let env_path = std::env::var(MODULE_PATH_ENV).ok();
    let module_dirs = module_search_path(
        &cfg.module_dirs,
        cfg.opts.mgr_module_path.as_deref(),
        env_path.as_deref(),
    );
    tracing::info!(%addr, gid, mon = %cfg.mon, dirs = ?module_dirs, "mgr.{} starting as a standby", cfg.name);
    let d = Daemon {
        cfg,
        shared: shared.clone(),
        mon: mon.clone(),
        store: Arc::new(store),
        module_dirs,
        crash_scan: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    for what in ["mgrmap", "osdmap"] {
        if let Err(e) = mon.subscribe(what, 0, false).await {
            tracing::warn!("{what} subscription not sent yet: {e}");
        }
    }
    let mut beacon = tokio::time::interval(d.cfg.opts.mgr_tick_period);
    let mut stats = tokio::time::interval(d.cfg.opts.mgr_stats_period);
    let mut digest = tokio::time::interval(d.cfg.opts.mgr_digest_period);
    for t in [&mut beacon, &mut stats, &mut digest] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(MonEvent::MgrMap(m)) => match m.decode_map() {
                    Ok(map) => d.on_mgrmap(map).await,
                    Err(e) => tracing::warn!("bad mgrmap from the mon: {e}"),
                },
                Some(MonEvent::OsdMap(m)) => {
                    let cur = d.shared.osdmap();
                    let base = (cur.epoch > 0).then_some(&*cur);
                    match m.advance(base) {
                        Ok(Some(next)) if next.epoch > cur.epoch => {
                            let next = Arc::new(next);
                            *d.shared.osdmap.write() = next.clone();
                            if let Some(a) = d.shared.active() {
                                a.on_osdmap(&next);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!("osdmap from the mon not applied: {e}"),
                    }
                }
                Some(MonEvent::Reset) => d.send_beacon().await,
                Some(MonEvent::Closed(r)) => break Err(MgrError::MonClosed(r)),
                Some(MonEvent::Other(_)) => {}
                None => break Err(MgrError::MonClosed("mon client stopped".into())),
            },
            _ = beacon.tick() => {
                d.send_beacon().await;
                d.post_crashes();
            }
            _ = stats.tick() => {
                if let Some(a) = d.shared.active() {
                    let map = d.shared.osdmap();
                    tokio::task::block_in_place(|| a.on_stats_tick(&map, now_us()));
                }
            }
            _ = digest.tick() => d.digest(),
            _ = &mut shutdown => break Ok(()),
        }
    };
    d.deactivate().await;
    drop(listener);
    result
}

impl Daemon {
    /// Posts new crash reports on a blocking thread, unless a scan runs.
    fn post_crashes(&self) {
        use std::sync::atomic::Ordering;
        let Some(py) = self.shared.active().and_then(|a| a.py()) else {
            return;
        };
        if self.crash_scan.swap(true, Ordering::AcqRel) {
            return;
        }
        let busy = self.crash_scan.clone();
        let dir = self.cfg.crash_dir.clone();
        tokio::task::spawn_blocking(move || {
            crate::crashpost::post_pending(&py, &dir);
            busy.store(false, Ordering::Release);
        });
    }

    async fn send_beacon(&self) {
        let active = self.shared.active();
        let info = beacon_info(active.as_ref());
        let b = MgrBeacon {
            gid: self.shared.gid,
            name: self.shared.name.clone(),
            addr: self.shared.addr,
            available: crate::server::is_ready(&self.shared),
            available_modules: info.modules,
            command_descs: info.commands,
            metadata: [
                ("hostname".to_string(), kalmar_common::hostname()),
                (
                    "ceph_version".to_string(),
                    format!("kalmar {}", env!("CARGO_PKG_VERSION")),
                ),
                ("addr".to_string(), self.shared.addr.to_string()),
            ]
            .into(),
            services: info.services,
        };
        if let Err(e) = self.mon.send(&b).await {
            tracing::debug!("beacon not sent: {e}");
        }
        if let Some(a) = active {
            self.send_health_report(&a).await;
        }
    }

    /// The active mgr's health checks to the mon (Ceph's MMonMgrReport),
    /// once the plugins have started: the whole set each time, so a
    /// cleared check disappears at the next report.
    async fn send_health_report(&self, active: &Arc<Active>) {
        if !active.ready.load(Ordering::Acquire) {
            return;
        }
        let checks = active.py().map(|py| py.health_checks()).unwrap_or_default();
        let r = MonMgrReport {
            gid: self.shared.gid,
            health_checks: checks
                .into_iter()
                .map(|(code, c)| MgrHealthCheck {
                    code,
                    severity: match c.severity {
                        kalmar_mgr_py::Severity::Warning => HealthSeverity::Warning,
                        kalmar_mgr_py::Severity::Error => HealthSeverity::Error,
                    },
                    summary: c.summary,
                    count: c.count,
                    detail: c.detail,
                })
                .collect(),
        };
        if let Err(e) = self.mon.send(&r).await {
            tracing::debug!("health report not sent: {e}");
        }
    }

    async fn on_mgrmap(&self, map: MgrMap) {
        let was_active = self.shared.active().is_some();
        let is_active = map.active_gid == self.shared.gid;
        let modules = map.modules.clone();
        *self.shared.mgrmap.write() = map.clone();
        match (was_active, is_active) {
            (false, true) => {
                tracing::info!(
                    epoch = map.epoch,
                    "the MgrMap makes mgr.{} active",
                    self.shared.name
                );
                self.activate(&map).await;
                self.send_beacon().await;
            }
            (true, false) => {
                tracing::info!(epoch = map.epoch, active = %map.active_name, "mgr.{} is no longer active", self.shared.name);
                self.deactivate().await;
                self.send_beacon().await;
            }
            (true, true) => {
                if let Some(a) = self.shared.active() {
                    a.on_mgrmap(&map);
                    if let Some(py) = a.py() {
                        if py.enabled() != modules {
                            // Starting/stopping modules waits on Python.
                            tokio::task::spawn_blocking(move || {
                                for r in py.set_enabled(modules) {
                                    tracing::info!("module stopped: {r:?}");
                                }
                            });
                        }
                    }
                }
            }
            (false, false) => {}
        }
    }

    async fn activate(&self, map: &MgrMap) {
        let active = Active::new(&self.shared.opts);
        active.on_mgrmap(map);
        let osdmap = self.shared.osdmap();
        active.on_osdmap(&osdmap);
        // The PG documents exist (all PGs `unknown`) from the start.
        active.on_stats_tick(&osdmap, now_us());
        *self.shared.active.write() = Some(active.clone());
        let config = PyModulesConfig {
            module_dirs: self.module_dirs.clone(),
            always_on: self.shared.opts.mgr_always_on_modules.clone(),
            command_timeout: self.shared.opts.mgr_command_timeout,
            mon_command_timeout: self.shared.opts.mgr_mon_command_timeout,
            ..PyModulesConfig::default()
        };
        let host = Arc::new(DaemonHost {
            name: self.shared.name.clone(),
            mon: self.mon.clone(),
            rt: tokio::runtime::Handle::current(),
            timeout: self.shared.opts.mgr_mon_command_timeout,
            store: self.store.clone(),
        });
        let store = self.store.clone();
        let enabled = map.modules.clone();
        let a = active.clone();
        // Python starts on a blocking thread; daemon reports flow already.
        tokio::task::spawn_blocking(move || {
            let ds = a.daemon_state.clone();
            let cluster = a.cluster.clone();
            match PyModules::new(config, ds, cluster, host, store) {
                Ok(py) => {
                    py.load();
                    let _ = py.set_enabled(enabled);
                    py.start();
                    tracing::info!(python = %py.python().version, "plugins started");
                    *a.py.write() = Some(Arc::new(py));
                }
                Err(e) => {
                    tracing::error!("the plugin host cannot start: {e}");
                    *a.py_error.lock() = Some(e.to_string());
                }
            }
            a.ready.store(true, Ordering::Release);
        });
    }

    async fn deactivate(&self) {
        let Some(active) = self.shared.active.write().take() else {
            return;
        };
        let stopped = tokio::task::spawn_blocking(move || {
            // Plugins still starting finish first, then stop.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !active.ready.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Some(py) = active.py.write().take() {
                for r in py.shutdown() {
                    tracing::info!("module stopped: {r:?}");
                }
            }
        })
        .await;
        if let Err(e) = stopped {
            tracing::warn!("stopping the plugins failed: {e}");
        }
    }

    /// Asks the mon for health and status (Ceph's mgr digest), without
    /// holding up the daemon loop.
    fn digest(&self) {
        let Some(active) = self.shared.active() else {
            return;
        };
        let mon = self.mon.clone();
        let timeout = self
            .shared
            .opts
            .mgr_digest_period
            .max(Duration::from_secs(1));
        let mon_addr = self.cfg.mon.to_string();
        tokio::spawn(async move {
            let get = |prefix: &'static str| {
                let mon = mon.clone();
                async move {
                    let r = mon
                        .command(&json!({"prefix": prefix, "format": "json"}), timeout)
                        .await
                        .ok()?;
                    (r.retval == 0)
                        .then(|| serde_json::from_slice::<Value>(&r.outbuf.0).ok())
                        .flatten()
                }
            };
            let health = get("health").await;
            let status = get("status").await;
            active.on_digest(health, status.as_ref(), &mon_addr);
        });
    }
}

fn start_admin(
    cfg: &MgrConfig,
    shared: &Arc<MgrShared>,
    perf: Arc<PerfCollection>,
) -> Result<AdminSocket, MgrError> {
    let cmds = AdminCommands::new();
    cmds.register_perf(perf);
    let s = shared.clone();
    cmds.register("status", "mgr status: role, gid, address, daemons", move |_| {
        let active = s.active();
        let map = s.mgrmap();
        Ok(json!({
            "name": format!("mgr.{}", s.name),
            "gid": s.gid,
            "addr": s.addr.to_string(),
            "state": if active.is_some() { "active" } else { "standby" },
            "available": crate::server::is_ready(&s),
            "mgrmap_epoch": map.epoch,
            "active_name": map.active_name,
            "osdmap_epoch": s.osdmap().epoch,
            "daemons": active.map(|a| a.daemon_state.daemons().iter().map(|k| k.to_string()).collect::<Vec<_>>()).unwrap_or_default(),
        }))
    });
    let opts = cfg.opts.to_json();
    cmds.register("config show", "the mgr's settings", move |_| {
        Ok(opts.clone())
    });
    AdminSocket::start(&cfg.admin_socket, cmds).map_err(|source| MgrError::AdminSocket {
        path: cfg.admin_socket.clone(),
        source,
    })
}
