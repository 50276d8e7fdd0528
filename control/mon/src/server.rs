//! The mon daemon: one task owns the state, takes messenger events and
//! timer ticks, and commits each batch of changes as one epoch per map in
//! one synced store write before anyone hears of it (replies to commands
//! and subscribers wait for the commit).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use kalmar_common::admin_socket::{AdminCommands, AdminSocket};
use kalmar_common::encoding::Blob;
use kalmar_maps::time::now_us;
use kalmar_maps::Epoch;
use kalmar_msgr::{
    event_channel, EntityName, EntityType, Event, Incoming, Listener, Message, MsgrConfig,
    SessionHandle,
};
use kalmar_proto::mon::*;
use kalmar_proto::registry::*;
use kalmar_proto::Payload;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::commands::{self, CmdReply};
use crate::options::MonOptions;
use crate::perf::*;
use crate::persist::{self, trim_target};
use crate::state::MonState;
use crate::store::{Batch, MonStore, StoreError};

mod subscriptions;

/// Events handled before a commit at most (bounds a commit's latency).
pub const MAX_EVENTS_PER_COMMIT: usize = 256;
/// Incrementals kept in memory for subscribers.
pub const INC_CACHE_EPOCHS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum MonError {
    #[error(transparent)]
    Store(#[from] StoreError),
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
    #[error("internal map error: {0}")]
    Map(String),
}

/// How to run a mon.
#[derive(Debug, Clone)]
pub struct MonConfig {
    /// The mon's id (`a` for `mon.a`).
    pub name: String,
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    pub admin_socket: PathBuf,
    pub opts: MonOptions,
    pub msgr: MsgrConfig,
}

#[derive(Default)]
struct Subscriber {
    handle: Option<SessionHandle>,
    osdmap: Option<SubscribeItem>,
    mgrmap: Option<SubscribeItem>,
}

struct Server {
    st: MonState,
    store: MonStore,
    osd_first: Epoch,
    mgr_first: Epoch,
    subs: HashMap<u64, Subscriber>,
    /// Replies that wait for the pending epoch to be committed.
    deferred: Vec<(SessionHandle, Message)>,
    incs: BTreeMap<Epoch, Blob>,
    perf: MonPerf,
    /// What the admin socket shows (it runs on its own thread).
    admin_status: Arc<Mutex<Value>>,
    /// Reports the mon's perf counters to the active mgr.
    mgr_client: kalmar_mgr_client::MgrClient,
}

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A running mon (returned by [`start`]); dropping it stops the listener.
pub struct RunningMon {
    pub addr: SocketAddr,
    pub fsid: uuid::Uuid,
    task: tokio::task::JoinHandle<Result<(), MonError>>,
    _listener: Listener,
    _admin: AdminSocket,
}

impl RunningMon {
    /// Waits until the mon stops (a store failure ends it with an error).
    pub async fn wait(self) -> Result<(), MonError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(MonError::Map(format!("mon task ended: {e}"))),
        }
    }
}

/// Opens the store, binds the port and the admin socket, and starts serving.
pub async fn start(cfg: MonConfig) -> Result<RunningMon, MonError> {
    let store = MonStore::open(&cfg.data_dir)?;
    let loaded = persist::load(&store)?;
    let opts = Arc::new(cfg.opts.clone());
    let now = Instant::now();
    let st = MonState::new(&cfg.name, opts, loaded.osdmap, loaded.mgrmap, now, now_us());
    let (tx, rx) = event_channel(&cfg.msgr);
    let me = EntityName::new(EntityType::Mon, cfg.name.clone());
    let listener = Listener::bind(cfg.bind, me, loaded.fsid, cfg.msgr.clone(), tx)
        .await
        .map_err(|source| MonError::Bind {
            addr: cfg.bind,
            source,
        })?;
    let addr = listener.local_addr();
    let perf = MonPerf::new();
    let admin_status = Arc::new(Mutex::new(Value::Null));
    let admin = start_admin_socket(&cfg, &perf, admin_status.clone())?;
    let mut mgrc =
        kalmar_mgr_client::MgrClientConfig::new(EntityName::new(EntityType::Mon, cfg.name.clone()));
    // Ceph's mon metadata keys that stock mgr modules read (telegraf and
    // influx tag every daemon's counters with its `hostname`).
    for (k, v) in [
        ("addr", cfg.bind.to_string()),
        ("addrs", format!("[v2:{}/0]", cfg.bind)),
        ("hostname", kalmar_common::hostname()),
        (
            "ceph_version",
            format!("kalmar {}", env!("CARGO_PKG_VERSION")),
        ),
    ] {
        mgrc.metadata.insert(k.into(), v);
    }
    let mgr_client = kalmar_mgr_client::MgrClient::start(mgrc, perf.collection.clone());
    mgr_client.handle_mgrmap(st.mgr.map());
    let mut server = Server {
        st,
        store,
        osd_first: loaded.osd_first,
        mgr_first: loaded.mgr_first,
        subs: HashMap::new(),
        deferred: Vec::new(),
        incs: BTreeMap::new(),
        perf,
        admin_status,
        mgr_client,
    };
    server.refresh_views();
    tracing::info!(
        %addr,
        fsid = %loaded.fsid,
        osdmap_epoch = server.st.osd.map().epoch,
        mgrmap_epoch = server.st.mgr.map().epoch,
        "mon.{} serving",
        cfg.name
    );
    let task = tokio::spawn(server.run(rx));
    Ok(RunningMon {
        addr,
        fsid: loaded.fsid,
        task,
        _listener: listener,
        _admin: admin,
    })
}

fn start_admin_socket(
    cfg: &MonConfig,
    perf: &MonPerf,
    status: Arc<Mutex<Value>>,
) -> Result<AdminSocket, MonError> {
    let cmds = AdminCommands::new();
    cmds.register_perf(perf.collection.clone());
    cmds.register(
        "status",
        "mon status: name, fsid, map epochs, sessions",
        move |_| Ok(status.lock().clone()),
    );
    let opts = cfg.opts.to_json();
    let extra = json!({
        "name": format!("mon.{}", cfg.name),
        "mon_data": cfg.data_dir.display().to_string(),
        "public_addr": cfg.bind.to_string(),
        "admin_socket": cfg.admin_socket.display().to_string(),
    });
    cmds.register("config show", "the mon's settings", move |_| {
        let mut v = opts.clone();
        if let (Value::Object(m), Value::Object(e)) = (&mut v, &extra) {
            m.extend(e.clone());
        }
        Ok(v)
    });
    AdminSocket::start(&cfg.admin_socket, cmds).map_err(|source| MonError::AdminSocket {
        path: cfg.admin_socket.clone(),
        source,
    })
}

impl Server {
    async fn run(mut self, mut rx: mpsc::Receiver<Event>) -> Result<(), MonError> {
        let mut tick = tokio::time::interval(self.st.opts.mon_tick_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let Some(ev) = ev else { return Ok(()) };
                    self.handle(ev).await;
                    let mut n = 1;
                    while n < MAX_EVENTS_PER_COMMIT {
                        match rx.try_recv() {
                            Ok(ev) => self.handle(ev).await,
                            Err(_) => break,
                        }
                        n += 1;
                    }
                }
                _ = tick.tick() => {
                    self.st.osd.tick(Instant::now());
                    // A quota changed by a command is re-evaluated here
                    // even when no new stats arrive.
                    self.update_pool_quotas();
                    self.st.mgr.tick(Instant::now(), now_us());
                }
            }
            self.commit().await?;
        }
    }

    async fn handle(&mut self, ev: Event) {
        match ev {
            Event::Message(m) => {
                self.perf.mon.inc(MON_MESSAGES, 1);
                self.dispatch(m).await
            }
            Event::Reset(_) => {}
            Event::Closed(h, reason) => {
                tracing::debug!(session = h.id(), "session closed: {reason}");
                if self.subs.remove(&h.id()).is_some() {
                    self.perf.mon.inc(MON_SESSION_RM, 1);
                }
                self.perf.mon.set(MON_NUM_SESSIONS, self.subs.len() as u64);
            }
        }
    }

    /// Checks that an OSD message comes from that OSD.
    fn from_osd(m: &Incoming, osd_id: i32) -> bool {
        let ok = m.peer.entity.osd_id() == u32::try_from(osd_id).ok();
        if !ok {
            tracing::warn!(peer = %m.peer.entity, osd_id, "message about another osd; ignored");
        }
        ok
    }

    async fn dispatch(&mut self, m: Incoming) {
        let now = Instant::now();
        let result: Result<(), String> = match m.msg.msg_type {
            MON_SUBSCRIBE => match MonSubscribe::from_message(&m.msg) {
                Ok(s) => {
                    self.subscribe(&m.from, s).await;
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            MON_COMMAND => match MonCommand::from_message(&m.msg) {
                Ok(c) => {
                    self.command(&m, c).await;
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            OSD_MKFS => match OsdMkfs::from_message(&m.msg) {
                Ok(req) => {
                    let reply = match self.st.osd.osd_mkfs(req.uuid, req.want_id, &req.hostname) {
                        Ok(id) => OsdMkfsReply {
                            tid: req.tid,
                            retval: 0,
                            osd_id: id,
                            fsid: self.st.osd.map().fsid,
                            error: String::new(),
                        },
                        Err(e) => OsdMkfsReply {
                            tid: req.tid,
                            retval: e.retval,
                            osd_id: -1,
                            fsid: self.st.osd.map().fsid,
                            error: e.msg,
                        },
                    };
                    self.reply(&m.from, reply.to_message()).await;
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            OSD_BOOT => match OsdBoot::from_message(&m.msg) {
                Ok(b) if Self::from_osd(&m, b.osd_id) => {
                    if let Err(e) = self.st.osd.boot(&b, now) {
                        tracing::warn!(osd = b.osd_id, "boot refused: {e}");
                    }
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            OSD_FAILURE => match OsdFailure::from_message(&m.msg) {
                Ok(f) if Self::from_osd(&m, f.reporter) => {
                    if let Err(e) = self.st.osd.failure(&f, now) {
                        tracing::debug!("failure report ignored: {e}");
                    }
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            OSD_BEACON => match OsdBeacon::from_message(&m.msg) {
                Ok(b) if Self::from_osd(&m, b.osd_id) => {
                    self.st.osd.beacon(&b, now);
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            OSD_ALIVE => match OsdAlive::from_message(&m.msg) {
                Ok(a) if Self::from_osd(&m, a.osd_id) => {
                    if let Err(e) = self.st.osd.alive(&a) {
                        tracing::debug!("alive ignored: {e}");
                    }
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            OSD_PG_TEMP => match OsdPgTemp::from_message(&m.msg) {
                Ok(p) if Self::from_osd(&m, p.osd_id) => {
                    if let Err(e) = self.st.osd.pg_temp(&p) {
                        tracing::info!(osd = p.osd_id, "pg_temp request refused: {e}");
                    }
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            OSD_MARK_ME_DOWN => match OsdMarkMeDown::from_message(&m.msg) {
                Ok(req) if Self::from_osd(&m, req.target_osd) => {
                    self.mark_me_down(&m.from, req, now).await;
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            OSD_PG_STATS => match kalmar_proto::pgstats::OsdPgStats::from_message(&m.msg) {
                Ok(r) if Self::from_osd(&m, r.osd_id) => {
                    self.st.pgmap.apply(&r, now_us());
                    self.st.refresh_pgs();
                    self.update_pool_quotas();
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            MGR_BEACON => match MgrBeacon::from_message(&m.msg) {
                Ok(b) => {
                    if m.peer.entity.kind == EntityType::Mgr && m.peer.entity.id == b.name {
                        self.st.mgr.beacon(&b, now, now_us());
                    } else {
                        tracing::warn!(peer = %m.peer.entity, name = %b.name, "mgr beacon from another entity; ignored");
                    }
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            MON_MGR_REPORT => match MonMgrReport::from_message(&m.msg) {
                Ok(r) if m.peer.entity.kind == EntityType::Mgr => {
                    if let Err(e) = self.st.mgrstat.report(&r, self.st.mgr.map(), now) {
                        tracing::debug!(peer = %m.peer.entity, "mgr report ignored: {e}");
                    }
                    Ok(())
                }
                Ok(_) => {
                    tracing::warn!(peer = %m.peer.entity, "mgr report from a non-mgr; ignored");
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            other => {
                tracing::warn!(peer = %m.peer.entity, msg_type = other, "unexpected message type; ignored");
                Ok(())
            }
        };
        if let Err(e) = result {
            // A peer that sends malformed messages is broken: drop it.
            tracing::warn!(peer = %m.peer.entity, "closing session: {e}");
            m.from.close(&format!("malformed message: {e}"));
        }
    }

    /// A stopping OSD's request to be marked down. The ack goes out after
    /// the commit that marks it down (or at once when the request is
    /// ignored and nothing is pending), so the OSD stops knowing its peers
    /// and clients can see it down.
    async fn mark_me_down(&mut self, from: &SessionHandle, req: OsdMarkMeDown, now: Instant) {
        match self.st.osd.mark_me_down(&req, now) {
            crate::osdmon::MarkMeDown::Marked => {}
            crate::osdmon::MarkMeDown::Ignored(why) => {
                tracing::info!(osd = req.target_osd, "mark-me-down ignored: {why}");
            }
        }
        if req.request_ack {
            self.reply(from, req.ack().to_message()).await;
        }
    }

    /// Pool quota flags from the latest PG stats (committed with the
    /// next batch).
    fn update_pool_quotas(&mut self) {
        let usage = self.st.pgmap.pool_usage();
        let n = self.st.osd.update_pool_quotas(&usage);
        if n > 0 {
            tracing::debug!(pools = n, "pool quota flags changed");
        }
    }

    /// Sends now, or after the commit when changes are pending.
    async fn reply(&mut self, to: &SessionHandle, msg: Message) {
        if self.st.osd.has_pending() || self.st.mgr.has_pending() {
            self.deferred.push((to.clone(), msg));
        } else if let Err(e) = to.send(msg).await {
            tracing::debug!("reply not sent: {e}");
        }
    }

    async fn command(&mut self, m: &Incoming, c: MonCommand) {
        self.perf.mon.inc(MON_COMMANDS, 1);
        let reply = match serde_json::from_str::<Value>(&c.cmd) {
            Ok(cmd) => {
                tracing::debug!(peer = %m.peer.entity, %cmd, "command");
                commands::execute(&mut self.st, &cmd, Instant::now(), wall_us())
            }
            Err(e) => CmdReply {
                retval: crate::errors::EINVAL,
                outs: format!("command is not JSON: {e}"),
                outbuf: Vec::new(),
            },
        };
        let msg = MonCommandReply {
            tid: c.tid,
            retval: reply.retval,
            outs: reply.outs,
            outbuf: Blob(reply.outbuf),
        };
        self.reply(&m.from, msg.to_message()).await;
    }

    /// Commits pending epochs (one synced batch), then tells subscribers
    /// and sends the replies that waited.
    async fn commit(&mut self) -> Result<(), MonError> {
        let t0 = Instant::now();
        let stamp = now_us();
        let osd = self.st.osd.take_pending(stamp).map_err(MonError::Map)?;
        let mgr = self.st.mgr.take_pending();
        if osd.is_none() && mgr.is_none() {
            self.flush_deferred().await;
            return Ok(());
        }
        let mut batch = Batch::default();
        let mut osd_first = self.osd_first;
        if let Some((map, inc)) = &osd {
            let target = trim_target(
                self.osd_first,
                map.epoch,
                self.st.opts.mon_min_osdmap_epochs,
                self.st.osd.min_last_epoch_clean(),
            );
            osd_first = persist::put_osdmap(&mut batch, map, inc, self.osd_first, target);
        }
        let mut mgr_first = self.mgr_first;
        if let Some(m) = &mgr {
            mgr_first = persist::put_mgrmap(
                &mut batch,
                m,
                self.mgr_first,
                self.st.opts.mon_min_osdmap_epochs,
            );
        }
        if let Err(e) = self.store.commit(&batch) {
            // Never acknowledge what is not durable: stop the mon.
            tracing::error!("store commit failed, stopping: {e}");
            self.st.osd.discard_pending();
            self.st.mgr.discard_pending();
            self.deferred.clear();
            return Err(e.into());
        }
        self.perf.paxos.inc(PAXOS_COMMIT, 1);
        self.perf
            .paxos
            .avg_add(PAXOS_COMMIT_KEYS, batch.ops.len() as u64);
        self.perf.paxos.tinc(PAXOS_COMMIT_LATENCY, t0.elapsed());
        self.osd_first = osd_first;
        self.mgr_first = mgr_first;
        if let Some((map, inc)) = osd {
            let old = self.st.osd.map().clone();
            self.st.note_osdmap_change(&old, &map, wall_us());
            self.incs.insert(map.epoch, Blob(inc.encode_sealed()));
            while self.incs.len() > INC_CACHE_EPOCHS {
                self.incs.pop_first();
            }
            self.incs.retain(|e, _| *e >= osd_first);
            tracing::debug!(epoch = map.epoch, "osdmap committed");
            self.st.osd.committed(map);
            self.st.refresh_pgs();
        }
        if let Some(m) = mgr {
            tracing::info!(epoch = m.epoch, active = %m.active_name, available = m.available, "mgrmap committed");
            self.mgr_client.handle_mgrmap(&m);
            self.st.mgr.committed(m);
        }
        self.refresh_views();
        let sessions: Vec<u64> = self.subs.keys().copied().collect();
        for s in sessions {
            self.publish_to(s).await;
        }
        self.flush_deferred().await;
        Ok(())
    }

    async fn flush_deferred(&mut self) {
        for (to, msg) in std::mem::take(&mut self.deferred) {
            if let Err(e) = to.send(msg).await {
                tracing::debug!("deferred reply not sent: {e}");
            }
        }
    }

    fn refresh_views(&mut self) {
        let m = self.st.osd.map();
        self.perf.cluster.set(CLUSTER_NUM_OSD, m.num_osds() as u64);
        self.perf
            .cluster
            .set(CLUSTER_NUM_OSD_UP, m.num_up_osds() as u64);
        self.perf
            .cluster
            .set(CLUSTER_NUM_OSD_IN, m.num_in_osds() as u64);
        self.perf.cluster.set(CLUSTER_OSD_EPOCH, u64::from(m.epoch));
        self.perf
            .cluster
            .set(CLUSTER_NUM_POOL, m.pools.len() as u64);
        *self.admin_status.lock() = json!({
            "name": self.st.name,
            "fsid": m.fsid.to_string(),
            "state": "leader",
            "osdmap_first_committed": self.osd_first,
            "osdmap_last_committed": m.epoch,
            "mgrmap_epoch": self.st.mgr.map().epoch,
            "num_subscribers": self.subs.len(),
        });
    }
}
