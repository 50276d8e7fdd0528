//! The mon daemon: one task owns the state, takes messenger events and
//! timer ticks; on the leader each batch of changes becomes one epoch per
//! map, committed through the consensus log before anyone hears of it
//! (replies to commands wait for the commit). Every mon applies committed
//! epochs and serves them to its subscribers; a follower forwards what
//! only the leader may decide (see [`consensus`]).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use kalmar_common::admin_socket::{AdminCommands, AdminSocket};
use kalmar_common::encoding::Blob;
use kalmar_maps::crush::map::WEIGHT_ONE;
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
use crate::persist;
use crate::raft::state_machine::Applied;
use crate::state::MonState;
use crate::store::{MonStore, StoreError};

mod consensus;
mod membership;
mod probe;
mod subscriptions;

/// Events handled before a commit at most (bounds a commit's latency).
pub const MAX_EVENTS_PER_COMMIT: usize = 256;
/// Incrementals kept in memory for subscribers.
pub const INC_CACHE_EPOCHS: usize = 64;
/// Bound on waiting, at start, for a single mon to lead itself.
pub const SINGLE_MON_LEAD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// errno a request gets when no leader can take it now (retry later).
pub const EAGAIN: i32 = -11;

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
    #[error("consensus: {0}")]
    Raft(String),
    #[error("{0}")]
    Config(String),
}

/// How to run a mon.
#[derive(Debug, Clone)]
pub struct MonConfig {
    /// The mon's id (`a` for `mon.a`).
    pub name: String,
    pub data_dir: PathBuf,
    /// Where to listen; by default the address the monmap gives this mon.
    pub bind: Option<SocketAddr>,
    pub admin_socket: PathBuf,
    pub opts: MonOptions,
    pub msgr: MsgrConfig,
}

#[derive(Default)]
struct Subscriber {
    handle: Option<SessionHandle>,
    osdmap: Option<SubscribeItem>,
    mgrmap: Option<SubscribeItem>,
    monmap: Option<SubscribeItem>,
}

/// Where a reply goes: the session the request came on, or back through
/// the follower mon that forwarded it.
#[derive(Clone)]
pub(crate) enum ReplyTo {
    Session(SessionHandle),
    Routed { via: SessionHandle, session: u64 },
}

impl ReplyTo {
    async fn send(&self, msg: Message) -> Result<(), String> {
        match self {
            ReplyTo::Session(h) => h.send(msg).await.map(|_| ()).map_err(|e| e.to_string()),
            ReplyTo::Routed { via, session } => {
                let r = MonRoute {
                    session: *session,
                    msg_type: msg.msg_type,
                    payload: Blob(msg.contiguous().to_vec()),
                };
                via.send(r.to_message())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Drops a peer that sent a malformed message (not the follower that
    /// forwarded it: it only passed it on).
    fn close(&self, reason: &str) {
        if let ReplyTo::Session(h) = self {
            h.close(reason);
        }
    }
}

/// Who sent a message, and where its reply goes.
pub(crate) struct Origin {
    entity: EntityName,
    reply: ReplyTo,
}

/// A reply held until the pending epoch commits; `on_failure` goes out
/// instead when it does not.
struct Deferred {
    to: ReplyTo,
    msg: Message,
    on_failure: Option<Message>,
}

struct Server {
    st: MonState,
    store: Arc<MonStore>,
    osd_first: Epoch,
    mgr_first: Epoch,
    subs: HashMap<u64, Subscriber>,
    /// Replies that wait for the pending epoch to be committed.
    deferred: Vec<Deferred>,
    incs: BTreeMap<Epoch, Blob>,
    perf: MonPerf,
    /// What the admin socket shows (it runs on its own thread).
    admin_status: Arc<Mutex<Value>>,
    /// Reports the mon's perf counters to the active mgr.
    mgr_client: kalmar_mgr_client::MgrClient,
    cons: consensus::Consensus,
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

/// The keys this mon was made with (its mkfs seed, and the shared `mon.`
/// key of DATA/keyring), for its listener until the first auth version is
/// committed (see [`crate::authmon::ListenerKeys`]).
fn bootstrap_keys(
    store: &MonStore,
    data_dir: &std::path::Path,
) -> Result<kalmar_auth::Keyring, MonError> {
    let mut ring = kalmar_auth::Keyring::default();
    if let Some(seed) = persist::auth_seed(store)? {
        for (name, e) in seed.entries() {
            ring.insert(name, e);
        }
    }
    let path = data_dir.join("keyring");
    if path.exists() {
        match kalmar_auth::Keyring::read_file(&path) {
            Ok(own) => {
                if let Some(e) = own.get("mon.") {
                    ring.insert("mon.", e.clone());
                }
            }
            Err(e) => tracing::warn!(path = %path.display(), "reading the mon's keyring: {e}"),
        }
    }
    Ok(ring)
}

/// Opens the store, joins the consensus, binds the port and the admin
/// socket, and starts serving.
pub async fn start(cfg: MonConfig) -> Result<RunningMon, MonError> {
    let store = Arc::new(MonStore::open(&cfg.data_dir)?);
    let (ident, members) = persist::load_monmap(&store)?;
    if ident.name != cfg.name {
        return Err(MonError::Config(format!(
            "the store at {} belongs to mon.{}, not mon.{} (pass --name {})",
            cfg.data_dir.display(),
            ident.name,
            cfg.name,
            ident.name
        )));
    }
    let loaded = persist::load(&store)?;
    // The log's membership is newer than the initial members (and the only
    // one a mon made with `mkfs --join` has).
    let log_members = crate::raft::state_machine::applied_members(&store)
        .map_err(|e| MonError::Raft(e.to_string()))?;
    let known = if log_members.is_empty() {
        &members
    } else {
        &log_members
    };
    let bind = match cfg.bind {
        Some(b) => b,
        None => known
            .get(&ident.id)
            .and_then(|m| m.addr.parse().ok())
            .ok_or_else(|| {
                MonError::Config(format!(
                    "mon.{} has no address in its monmap: pass --bind IP:PORT",
                    cfg.name
                ))
            })?,
    };
    let opts = Arc::new(cfg.opts.clone());
    let me = EntityName::new(EntityType::Mon, cfg.name.clone());
    let cons_start = consensus::Consensus::start(consensus::ConsensusConfig {
        store: store.clone(),
        me: me.clone(),
        id: ident.id,
        members: members.clone(),
        fsid: loaded.fsid,
        bind,
        msgr: cfg.msgr.clone(),
        opts: &opts,
    })
    .await?;
    let now = kalmar_common::clock::now();
    let mut st = MonState::new(&cfg.name, opts, loaded.osdmap, loaded.mgrmap, now, now_us());
    st.quorum = cons_start.cons.quorum_view(&loaded.fsid.to_string());
    st.auth.committed(persist::load_auth(&store)?);
    let (ltx, lrx) = event_channel(&cfg.msgr);
    let mut lcfg = cfg.msgr.clone();
    // The mon authenticates its peers against its own database.
    lcfg.auth.server = Some(kalmar_auth::ServerAuth {
        mode: st.opts.listener_auth_mode(),
        service: kalmar_auth::Service::Mon,
        keys: Arc::new(crate::authmon::ListenerKeys::new(
            st.auth.keys(),
            bootstrap_keys(&store, &cfg.data_dir)?,
        )),
    });
    let me_for_refresh = me.clone();
    let opts_ttl = st.opts.auth_service_ticket_ttl_secs;
    let listener = Listener::bind(bind, me, loaded.fsid, lcfg, ltx)
        .await
        .map_err(|source| MonError::Bind { addr: bind, source })?;
    let addr = listener.local_addr();
    let (tx, rx) = event_channel(&cfg.msgr);
    tokio::spawn(consensus::demux(
        lrx,
        cons_start.cons.raft.clone(),
        cons_start.probe.clone(),
        cons_start.gate.clone(),
        tx,
    ));
    let perf = MonPerf::new();
    let admin_status = Arc::new(Mutex::new(Value::Null));
    let admin = start_admin_socket(&cfg, bind, &perf, admin_status.clone())?;
    let mut mgrc =
        kalmar_mgr_client::MgrClientConfig::new(EntityName::new(EntityType::Mon, cfg.name.clone()));
    // Ceph's mon metadata keys that stock mgr modules read (telegraf and
    // influx tag every daemon's counters with its `hostname`).
    for (k, v) in [
        ("addr", bind.to_string()),
        ("addrs", format!("[v2:{bind}/0]")),
        ("hostname", kalmar_common::hostname()),
        (
            "ceph_version",
            format!("kalmar {}", env!("CARGO_PKG_VERSION")),
        ),
    ] {
        mgrc.metadata.insert(k.into(), v);
    }
    // Reports to the mgr go with a ticket, which the mon earns by
    // authenticating with itself (and renews like any daemon).
    mgrc.msgr.auth = cfg.msgr.auth.clone();
    mgrc.msgr.transport = cfg.msgr.transport.clone();
    if cfg.msgr.auth.client.as_ref().is_some_and(|c| c.has_key()) {
        kalmar_msgr::auth::spawn_refresh(
            vec![addr],
            me_for_refresh,
            loaded.fsid,
            cfg.msgr.clone(),
            kalmar_msgr::auth::refresh_interval(opts_ttl),
        );
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
        cons: cons_start.cons,
    };
    server.refresh_views();
    tracing::info!(
        %addr,
        fsid = %loaded.fsid,
        rank = ident.id,
        mons = known.len(),
        osdmap_epoch = server.st.osd.map().epoch,
        mgrmap_epoch = server.st.mgr.map().epoch,
        "mon.{} serving",
        cfg.name
    );
    if known.len() == 1 && known.contains_key(&ident.id) {
        // A single mon leads itself at once: wait for that, so a client
        // that connects right after start finds a leader.
        server.cons.wait_leader(SINGLE_MON_LEAD_WAIT).await;
    }
    let task =
        tokio::spawn(server.run(rx, cons_start.applied, cons_start.routed, cons_start.probed));
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
    bind: SocketAddr,
    perf: &MonPerf,
    status: Arc<Mutex<Value>>,
) -> Result<AdminSocket, MonError> {
    let cmds = AdminCommands::new();
    cmds.register_perf(perf.collection.clone());
    cmds.register(
        "status",
        "mon status: name, fsid, map epochs, sessions, quorum",
        move |_| Ok(status.lock().clone()),
    );
    let opts = cfg.opts.to_json();
    let extra = json!({
        "name": format!("mon.{}", cfg.name),
        "mon_data": cfg.data_dir.display().to_string(),
        "public_addr": bind.to_string(),
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
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Event>,
        mut applied: mpsc::UnboundedReceiver<Applied>,
        mut routed: mpsc::UnboundedReceiver<MonRoute>,
        mut probed: mpsc::UnboundedReceiver<(
            crate::raft::NodeId,
            crate::monmap_history::ProbeReply,
        )>,
    ) -> Result<(), MonError> {
        let mut tick = tokio::time::interval(self.st.opts.mon_tick_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut metrics = self.cons.raft.metrics();
        let first = metrics.borrow_and_update().clone();
        self.on_metrics(&first).await;
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
                a = applied.recv() => {
                    let Some(a) = a else { return Err(MonError::Raft("the state machine stopped".into())) };
                    self.on_applied(a).await?;
                }
                r = routed.recv() => {
                    if let Some(r) = r {
                        self.on_routed(r).await;
                    }
                }
                p = probed.recv() => {
                    if let Some((from, reply)) = p {
                        self.on_probe_reply(from, reply);
                    }
                }
                c = metrics.changed() => {
                    if c.is_err() {
                        return Err(MonError::Raft("the consensus stopped".into()));
                    }
                    let m = metrics.borrow_and_update().clone();
                    if let Err(e) = &m.running_state {
                        return Err(MonError::Raft(format!("fatal consensus error: {e}")));
                    }
                    self.on_metrics(&m).await;
                }
                _ = tick.tick() => {
                    self.probe_tick();
                    if self.cons.is_leader() {
                        self.promote_learners();
                        self.st.osd.tick(kalmar_common::clock::now());
                        // A quota changed by a command is re-evaluated here
                        // even when no new stats arrive.
                        self.update_pool_quotas();
                        self.st.mgr.tick(kalmar_common::clock::now(), now_us());
                        self.st.auth.rotate_if_due(wall_us() / 1_000_000);
                    }
                    self.refresh_views();
                }
            }
            if let Some(epoch) = self.cons.removed {
                // As Ceph's mon: removed from the monmap, it stops (its
                // store is no longer part of the cluster).
                tracing::warn!(
                    epoch,
                    "mon.{} is not in monmap epoch {epoch}: it was removed; shutting down",
                    self.st.name
                );
                self.fail_deferred().await;
                if let Err(e) = self.cons.raft.shutdown().await {
                    tracing::info!("consensus shutdown: {e}");
                }
                return Ok(());
            }
            self.commit(&mut applied).await?;
        }
    }

    async fn handle(&mut self, ev: Event) {
        match ev {
            Event::Message(m) => {
                self.perf.mon.inc(MON_MESSAGES, 1);
                match m.msg.msg_type {
                    MON_SUBSCRIBE => match MonSubscribe::from_message(&m.msg) {
                        // Any mon serves the maps it has committed.
                        Ok(s) => self.subscribe(&m.from, s).await,
                        Err(e) => {
                            tracing::warn!(peer = %m.peer.entity, "closing session: {e}");
                            m.from.close(&format!("malformed message: {e}"));
                        }
                    },
                    MON_FORWARD => self.forwarded(m).await,
                    MON_COMMAND if !self.admitted(&m).await => {}
                    _ if self.cons.is_leader() => {
                        let origin = Origin {
                            entity: m.peer.entity.clone(),
                            reply: ReplyTo::Session(m.from.clone()),
                        };
                        self.dispatch(origin, m.msg).await
                    }
                    _ => self.forward(m).await,
                }
            }
            Event::Reset(_) => {}
            Event::Closed(h, reason) => {
                tracing::debug!(session = h.id(), "session closed: {reason}");
                self.cons.routes.remove(&h.id());
                if self.subs.remove(&h.id()).is_some() {
                    self.perf.mon.inc(MON_SESSION_RM, 1);
                }
                self.perf.mon.set(MON_NUM_SESSIONS, self.subs.len() as u64);
            }
        }
    }

    /// An authenticated caller's command is checked against its mon caps
    /// here, at the mon it reached (before any forwarding); a refusal
    /// is answered with EACCES and logged. Unauthenticated sessions exist
    /// only with auth off, and keep every right.
    async fn admitted(&mut self, m: &Incoming) -> bool {
        let Some(auth) = &m.peer.auth else {
            return true;
        };
        let Ok(c) = MonCommand::from_message(&m.msg) else {
            // Malformed: dispatch reports it.
            return true;
        };
        let cmd: Value = serde_json::from_str(&c.cmd).unwrap_or(Value::Null);
        match crate::auth_cmds::check_caps(&auth.caps.mon, &cmd) {
            Ok(()) => true,
            Err(e) => {
                let prefix = cmd.get("prefix").and_then(|p| p.as_str()).unwrap_or("?");
                tracing::warn!(peer = %m.peer.entity, prefix, "command refused: {e}");
                let reply = MonCommandReply {
                    tid: c.tid,
                    retval: e.retval,
                    outs: e.msg,
                    outbuf: Blob::default(),
                };
                if let Err(e) = m.from.send(reply.to_message()).await {
                    tracing::debug!("reply not sent: {e}");
                }
                false
            }
        }
    }

    /// Checks that an OSD message comes from that OSD.
    fn from_osd(m: &Origin, osd_id: i32) -> bool {
        let ok = m.entity.osd_id() == u32::try_from(osd_id).ok();
        if !ok {
            tracing::warn!(peer = %m.entity, osd_id, "message about another osd; ignored");
        }
        ok
    }

    async fn dispatch(&mut self, m: Origin, msg: Message) {
        let now = kalmar_common::clock::now();
        let result: Result<(), String> = match msg.msg_type {
            MON_COMMAND => match MonCommand::from_message(&msg) {
                Ok(c) => {
                    self.command(&m, c).await;
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            OSD_MKFS => match OsdMkfs::from_message(&msg) {
                Ok(req) => {
                    let reply = match self.st.osd.osd_mkfs_class(
                        req.uuid,
                        req.want_id,
                        &req.hostname,
                        &req.device_class,
                        // Senders before version 3 leave it 0: weight 1.
                        match req.crush_weight {
                            0 => WEIGHT_ONE,
                            w => w,
                        },
                    ) {
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
                    let fail = OsdMkfsReply {
                        tid: req.tid,
                        retval: EAGAIN,
                        osd_id: -1,
                        fsid: self.st.osd.map().fsid,
                        error: "the registration was not confirmed as committed; retry".into(),
                    };
                    self.reply(&m.reply, reply.to_message(), Some(fail.to_message()))
                        .await;
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            OSD_BOOT => match OsdBoot::from_message(&msg) {
                Ok(b) if Self::from_osd(&m, b.osd_id) => {
                    if let Err(e) = self.st.osd.boot(&b, now) {
                        tracing::warn!(osd = b.osd_id, "boot refused: {e}");
                    }
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            OSD_FAILURE => match OsdFailure::from_message(&msg) {
                Ok(f) if Self::from_osd(&m, f.reporter) => {
                    if let Err(e) = self.st.osd.failure(&f, now) {
                        tracing::debug!("failure report ignored: {e}");
                    }
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            OSD_BEACON => match OsdBeacon::from_message(&msg) {
                Ok(b) if Self::from_osd(&m, b.osd_id) => {
                    self.st.osd.beacon(&b, now);
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            OSD_ALIVE => match OsdAlive::from_message(&msg) {
                Ok(a) if Self::from_osd(&m, a.osd_id) => {
                    if let Err(e) = self.st.osd.alive(&a) {
                        tracing::debug!("alive ignored: {e}");
                    }
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            OSD_PG_TEMP => match OsdPgTemp::from_message(&msg) {
                Ok(p) if Self::from_osd(&m, p.osd_id) => {
                    if let Err(e) = self.st.osd.pg_temp(&p) {
                        tracing::info!(osd = p.osd_id, "pg_temp request refused: {e}");
                    }
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            OSD_MARK_ME_DOWN => match OsdMarkMeDown::from_message(&msg) {
                Ok(req) if Self::from_osd(&m, req.target_osd) => {
                    self.mark_me_down(&m.reply, req, now).await;
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            OSD_PG_STATS => match kalmar_proto::pgstats::OsdPgStats::from_message(&msg) {
                Ok(r) if Self::from_osd(&m, r.osd_id) => {
                    self.st.pgmap.apply(&r, now_us());
                    self.update_pool_quotas();
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            MGR_BEACON => match MgrBeacon::from_message(&msg) {
                Ok(b) => {
                    if m.entity.kind == EntityType::Mgr && m.entity.id == b.name {
                        self.st.mgr.beacon(&b, now, now_us());
                    } else {
                        tracing::warn!(peer = %m.entity, name = %b.name, "mgr beacon from another entity; ignored");
                    }
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            MON_MGR_REPORT => match MonMgrReport::from_message(&msg) {
                Ok(r) if m.entity.kind == EntityType::Mgr => {
                    if let Err(e) = self.st.mgrstat.report(&r, self.st.mgr.map(), now) {
                        tracing::debug!(peer = %m.entity, "mgr report ignored: {e}");
                    }
                    Ok(())
                }
                Ok(_) => {
                    tracing::warn!(peer = %m.entity, "mgr report from a non-mgr; ignored");
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            other => {
                tracing::warn!(peer = %m.entity, msg_type = other, "unexpected message type; ignored");
                Ok(())
            }
        };
        if let Err(e) = result {
            // A peer that sends malformed messages is broken: drop it.
            tracing::warn!(peer = %m.entity, "closing session: {e}");
            m.reply.close(&format!("malformed message: {e}"));
        }
    }

    /// A stopping OSD's request to be marked down. The ack goes out after
    /// the commit that marks it down (or at once when the request is
    /// ignored and nothing is pending), so the OSD stops knowing its peers
    /// and clients can see it down.
    async fn mark_me_down(&mut self, from: &ReplyTo, req: OsdMarkMeDown, now: Instant) {
        match self.st.osd.mark_me_down(&req, now) {
            crate::osdmon::MarkMeDown::Marked => {}
            crate::osdmon::MarkMeDown::Ignored(why) => {
                tracing::info!(osd = req.target_osd, "mark-me-down ignored: {why}");
            }
        }
        if req.request_ack {
            self.reply(from, req.ack().to_message(), None).await;
        }
    }

    /// Pool quota flags from the latest PG stats (committed with the
    /// next batch).
    fn update_pool_quotas(&mut self) {
        let n = self.st.osd.update_pool_quotas(self.st.pgmap.pool_usage());
        if n > 0 {
            tracing::debug!(pools = n, "pool quota flags changed");
        }
    }

    /// Sends now, or after the commit when changes are pending
    /// (`on_failure` instead, if that commit fails).
    async fn reply(&mut self, to: &ReplyTo, msg: Message, on_failure: Option<Message>) {
        if self.st.has_pending() {
            self.deferred.push(Deferred {
                to: to.clone(),
                msg,
                on_failure,
            });
        } else if let Err(e) = to.send(msg).await {
            tracing::debug!("reply not sent: {e}");
        }
    }

    async fn command(&mut self, m: &Origin, c: MonCommand) {
        self.perf.mon.inc(MON_COMMANDS, 1);
        if let Ok(cmd) = serde_json::from_str::<Value>(&c.cmd) {
            if matches!(
                cmd.get("prefix").and_then(Value::as_str),
                Some("mon add" | "mon rm")
            ) {
                return self.membership_command(m, c.tid, &cmd).await;
            }
        }
        self.st.quorum = self.cons.quorum_view(&self.st.osd.map().fsid.to_string());
        let reply = match serde_json::from_str::<Value>(&c.cmd) {
            Ok(cmd) => {
                tracing::debug!(peer = %m.entity, %cmd, "command");
                commands::execute(&mut self.st, &cmd, kalmar_common::clock::now(), wall_us())
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
        let fail = MonCommandReply {
            tid: c.tid,
            retval: EAGAIN,
            outs:
                "the change was not confirmed as committed (the mon leader changed, the map moved on, \
                 or no majority answered in time; it may still commit); check and retry"
                    .into(),
            outbuf: Blob::default(),
        };
        self.reply(&m.reply, msg.to_message(), Some(fail.to_message()))
            .await;
    }

    async fn flush_deferred(&mut self) {
        for d in std::mem::take(&mut self.deferred) {
            if let Err(e) = d.to.send(d.msg).await {
                tracing::debug!("deferred reply not sent: {e}");
            }
        }
    }

    /// The pending change did not commit: its requesters are told so.
    async fn fail_deferred(&mut self) {
        for d in std::mem::take(&mut self.deferred) {
            if let Some(f) = d.on_failure {
                if let Err(e) = d.to.send(f).await {
                    tracing::debug!("failure reply not sent: {e}");
                }
            }
        }
    }

    fn refresh_views(&mut self) {
        self.st.quorum = self.cons.quorum_view(&self.st.osd.map().fsid.to_string());
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
            "state": self.cons.state_name(),
            "rank": self.cons.id,
            "quorum": self.st.quorum.quorum_names(),
            "leader": self.st.quorum.leader_name(),
            "election_epoch": self.st.quorum.election_epoch,
            "osdmap_first_committed": self.osd_first,
            "osdmap_last_committed": m.epoch,
            "mgrmap_epoch": self.st.mgr.map().epoch,
            "num_subscribers": self.subs.len(),
        });
    }
}
