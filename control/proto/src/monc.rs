//! A client of the mon, for daemons and the CLI.
//!
//! It keeps one messenger session to one mon of a list and a task that
//! routes what comes back: command and mkfs replies to their waiting
//! callers (by tid), maps to the owner's event channel. Subscriptions are
//! remembered and sent again when the mon restarts (the session is reset)
//! or when the client moves to another mon, starting after the newest
//! osdmap epoch this client has passed on, so no incremental is missed.
//!
//! With several mons the client hunts: when its session has not been up
//! for a while (a dead or unreachable mon), it moves to the next mon of the
//! list, waiting longer on each round (bounded by [`HUNT_WAIT_MAX`]). Any
//! mon serves maps; a follower forwards the rest to its leader. Commands
//! that meet a leader change (`EAGAIN`) or a lost session are retried
//! until their timeout.
//!
//! A client that subscribes to anything also subscribes to the `monmap`:
//! mons added later join its list, and when the mon it talks to is removed
//! it moves on at once (a removed mon no longer gets new epochs).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalmar_common::encoding::Blob;
use kalmar_msgr::{
    event_channel, Connection, EntityName, Event, Incoming, Message, MsgrConfig, SendError,
};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::mon::*;
use crate::registry::{MGR_MAP, MON_COMMAND_REPLY, MON_MAP, OSD_MAP, OSD_MKFS_REPLY};
use crate::{Payload, ProtoError};

/// Default bound on waiting for a command reply.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Events buffered for the owner before the routing task waits.
pub const EVENT_QUEUE_LEN: usize = 256;
/// How long a session may be down before the client tries the next mon
/// (doubled after each round over all mons, up to [`HUNT_WAIT_MAX`]).
pub const HUNT_WAIT_MIN: Duration = Duration::from_secs(1);
pub const HUNT_WAIT_MAX: Duration = Duration::from_secs(5);
/// How often the hunting task looks at the session.
const HUNT_POLL: Duration = Duration::from_millis(100);
/// Pause before a command is retried (no leader, lost session).
const COMMAND_RETRY_PAUSE: Duration = Duration::from_millis(200);
/// The errno of "no leader now, retry".
const EAGAIN: i32 = -11;
/// A mon that has answered "no leader" this long is likely cut off from
/// the majority: a command moves on to the next mon.
pub const NO_LEADER_HUNT_AFTER: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MonClientError {
    #[error("cannot talk to the mon: {0}")]
    Connect(#[from] kalmar_msgr::ConnectError),
    #[error("sending to the mon failed: {0}")]
    Send(#[from] SendError),
    #[error("the mon did not answer within {0} ms (is it running and reachable?)")]
    Timeout(u128),
    #[error("the session to the mon ended before the reply: {0}")]
    Closed(String),
    #[error("the mon sent a bad reply: {0}")]
    BadReply(#[from] ProtoError),
    #[error("command is not valid JSON: {0}")]
    BadCommand(String),
    #[error("no mon address given")]
    NoMons,
}

/// What the mon sends that nobody asked for by tid.
#[derive(Debug)]
pub enum MonEvent {
    OsdMap(OsdMapMsg),
    MgrMap(MgrMapMsg),
    /// Any other message (the owner's protocol extensions).
    Other(Incoming),
    /// The mon restarted; subscriptions were sent again.
    Reset,
    /// The session ended for good (kept for owners' matches; the client
    /// now opens a new session instead).
    Closed(String),
}

#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<u64, oneshot::Sender<Message>>>,
    subs: Mutex<BTreeMap<String, SubscribeItem>>,
}

/// The session in use.
struct Current {
    conn: Arc<Connection>,
    /// Its mon, and that mon's place in the list (the next one is tried
    /// after it).
    addr: SocketAddr,
    index: usize,
    forwarder: JoinHandle<()>,
}

/// Passes a session's events on to the router, tagged `gen`.
fn forward_events(
    mut rx: mpsc::Receiver<Event>,
    raw: mpsc::Sender<(u64, Event)>,
    gen: u64,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if raw.send((gen, ev)).await.is_err() {
                return;
            }
        }
    })
}

struct Inner {
    /// The mons, as given and then as the monmap has them.
    addrs: Mutex<Vec<SocketAddr>>,
    /// The newest monmap epoch taken into `addrs`.
    monmap_epoch: AtomicU64,
    me: EntityName,
    fsid: Uuid,
    config: MsgrConfig,
    shared: Arc<Shared>,
    cur: Mutex<Current>,
    /// Every session's events, tagged with its generation.
    raw_tx: mpsc::Sender<(u64, Event)>,
    /// The generation whose resets and closes count.
    gen: AtomicU64,
    out: mpsc::Sender<MonEvent>,
}

impl Inner {
    /// A session to `addrs[index]`, its events tagged `gen`.
    fn open(&self, index: usize, gen: u64) -> Current {
        let (tx, rx) = event_channel(&self.config);
        let addr = {
            let addrs = self.addrs.lock();
            addrs[index % addrs.len()]
        };
        let conn = Connection::start(addr, self.me.clone(), self.fsid, self.config.clone(), tx);
        Current {
            conn: Arc::new(conn),
            addr,
            index,
            forwarder: forward_events(rx, self.raw_tx.clone(), gen),
        }
    }

    fn num_mons(&self) -> usize {
        self.addrs.lock().len()
    }

    /// Takes a monmap: its mons become the list. Returns whether the mon
    /// in use is gone from it.
    fn take_monmap(&self, m: &MonMapMsg) -> bool {
        let other_cluster = !self.fsid.is_nil() && m.fsid != self.fsid;
        if other_cluster || m.epoch <= self.monmap_epoch.load(Ordering::SeqCst) {
            return false;
        }
        let mut fresh: Vec<SocketAddr> = m
            .mons
            .values()
            .filter_map(|a| a.parse::<SocketAddr>().ok())
            .filter(|a| !a.ip().is_unspecified())
            .collect();
        if fresh.is_empty() || fresh.len() != m.mons.len() {
            tracing::warn!(epoch = m.epoch, "monmap with unusable addresses; ignored");
            return false;
        }
        fresh.sort_unstable();
        self.monmap_epoch.store(m.epoch, Ordering::SeqCst);
        let mut cur = self.cur.lock();
        let mut addrs = self.addrs.lock();
        if *addrs != fresh {
            tracing::info!(epoch = m.epoch, mons = ?fresh, "mon list changed");
        }
        let gone = !fresh.contains(&cur.addr);
        // The next mon tried is the one after the mon in use (or the first,
        // when it is gone).
        cur.index = fresh
            .iter()
            .position(|a| *a == cur.addr)
            .unwrap_or(fresh.len() - 1);
        *addrs = fresh;
        gone
    }

    fn conn(&self) -> Arc<Connection> {
        self.cur.lock().conn.clone()
    }

    /// Moves to the next mon: re-subscribes there, fails requests in flight
    /// (their callers retry), tells the owner.
    async fn hunt(&self) -> usize {
        let gen = self.gen.fetch_add(1, Ordering::SeqCst) + 1;
        let next = {
            let cur = self.cur.lock();
            (cur.index + 1) % self.num_mons()
        };
        let fresh = self.open(next, gen);
        let to = fresh.addr;
        let items: Vec<SubscribeItem> = self.shared.subs.lock().values().cloned().collect();
        if !items.is_empty() {
            if let Err(e) = fresh.conn.try_send(MonSubscribe { items }.to_message()) {
                tracing::warn!("re-subscribing at {to} failed: {e}");
            }
        }
        let old = std::mem::replace(&mut *self.cur.lock(), fresh);
        old.conn.handle().close("moving to another mon");
        old.forwarder.abort();
        self.shared.pending.lock().clear();
        tracing::info!(mon = %to, "hunting: trying another mon");
        let _ = self.out.send(MonEvent::Reset).await;
        next
    }
}

/// A session with the mons.
pub struct MonClient {
    inner: Arc<Inner>,
    next_tid: AtomicU64,
    router: JoinHandle<()>,
    hunter: Option<JoinHandle<()>>,
}

impl Drop for MonClient {
    fn drop(&mut self) {
        if let Some(h) = &self.hunter {
            h.abort();
        }
        self.inner.cur.lock().forwarder.abort();
    }
}

impl MonClient {
    /// Connects (bounded by the messenger's connect and handshake
    /// timeouts) and returns the client with its event stream.
    pub async fn connect(
        addr: SocketAddr,
        me: EntityName,
        fsid: Uuid,
        config: MsgrConfig,
    ) -> Result<(MonClient, mpsc::Receiver<MonEvent>), MonClientError> {
        MonClient::connect_any(&[addr], me, fsid, config).await
    }

    /// Connects to the first of `addrs` that answers (each bounded by the
    /// messenger's timeouts), then hunts among them as [`MonClient::start_any`].
    pub async fn connect_any(
        addrs: &[SocketAddr],
        me: EntityName,
        fsid: Uuid,
        config: MsgrConfig,
    ) -> Result<(MonClient, mpsc::Receiver<MonEvent>), MonClientError> {
        if addrs.len() <= 1 {
            let Some(&addr) = addrs.first() else {
                return Err(MonClientError::NoMons);
            };
            let (tx, rx) = event_channel(&config);
            let conn = Connection::connect(addr, me.clone(), fsid, config.clone(), tx).await?;
            return Ok(MonClient::build(
                addrs,
                0,
                Some((conn, rx)),
                me,
                fsid,
                config,
            ));
        }
        // Several mons: try them all at once and keep the first session
        // up (a dead mon would otherwise cost a whole connect timeout).
        let mut tries = tokio::task::JoinSet::new();
        for (i, addr) in addrs.iter().copied().enumerate() {
            let (me, config) = (me.clone(), config.clone());
            tries.spawn(async move {
                let (tx, rx) = event_channel(&config);
                let r = Connection::connect(addr, me, fsid, config, tx).await;
                (i, r.map(|c| (c, rx)))
            });
        }
        let mut last = MonClientError::NoMons;
        while let Some(done) = tries.join_next().await {
            match done {
                Ok((i, Ok(connected))) => {
                    // The other attempts end when their tasks are dropped.
                    tries.abort_all();
                    return Ok(MonClient::build(
                        addrs,
                        i,
                        Some(connected),
                        me,
                        fsid,
                        config,
                    ));
                }
                Ok((i, Err(e))) => {
                    tracing::debug!(mon = %addrs[i], "mon not reachable: {e}");
                    last = MonClientError::Connect(e);
                }
                Err(e) => tracing::debug!("a connect attempt ended: {e}"),
            }
        }
        Err(last)
    }

    /// Like [`MonClient::connect`] but returns at once and keeps trying in
    /// the background (a daemon starting before its mon).
    pub fn start(
        addr: SocketAddr,
        me: EntityName,
        fsid: Uuid,
        config: MsgrConfig,
    ) -> (MonClient, mpsc::Receiver<MonEvent>) {
        MonClient::start_any(&[addr], me, fsid, config)
    }

    /// Returns at once; keeps a session to one of `addrs` (a first one
    /// chosen by the process id, to spread daemons over the mons), moving
    /// on when it stays down.
    pub fn start_any(
        addrs: &[SocketAddr],
        me: EntityName,
        fsid: Uuid,
        config: MsgrConfig,
    ) -> (MonClient, mpsc::Receiver<MonEvent>) {
        let first = if addrs.is_empty() {
            0
        } else {
            std::process::id() as usize % addrs.len()
        };
        MonClient::build(addrs, first, None, me, fsid, config)
    }

    fn build(
        addrs: &[SocketAddr],
        index: usize,
        connected: Option<(Connection, mpsc::Receiver<Event>)>,
        me: EntityName,
        fsid: Uuid,
        config: MsgrConfig,
    ) -> (MonClient, mpsc::Receiver<MonEvent>) {
        let mut addrs = addrs.to_vec();
        if addrs.is_empty() {
            // Nothing to reach; the session never comes up.
            addrs.push(SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        let shared = Arc::new(Shared::default());
        let (out_tx, out_rx) = mpsc::channel(EVENT_QUEUE_LEN);
        let (raw_tx, raw_rx) = mpsc::channel(config.dispatch_queue_messages.max(1));
        let first = match connected {
            Some((conn, rx)) => Current {
                conn: Arc::new(conn),
                addr: addrs[index],
                index,
                forwarder: forward_events(rx, raw_tx.clone(), 0),
            },
            None => {
                let (tx, rx) = event_channel(&config);
                Current {
                    conn: Arc::new(Connection::start(
                        addrs[index],
                        me.clone(),
                        fsid,
                        config.clone(),
                        tx,
                    )),
                    addr: addrs[index],
                    index,
                    forwarder: forward_events(rx, raw_tx.clone(), 0),
                }
            }
        };
        let inner = Arc::new(Inner {
            addrs: Mutex::new(addrs),
            monmap_epoch: AtomicU64::new(0),
            me,
            fsid,
            config,
            shared: shared.clone(),
            cur: Mutex::new(first),
            raw_tx,
            gen: AtomicU64::new(0),
            out: out_tx.clone(),
        });
        let router = tokio::spawn(route(raw_rx, inner.clone(), out_tx));
        // Also with one mon: a session that mon closed (a clean stop) is
        // opened again rather than lost for good.
        let hunter = Some(tokio::spawn(hunt_loop(Arc::downgrade(&inner))));
        let client = MonClient {
            inner,
            next_tid: AtomicU64::new(1),
            router,
            hunter,
        };
        (client, out_rx)
    }

    pub fn is_connected(&self) -> bool {
        self.inner.conn().is_connected()
    }

    /// The mon this client talks to now.
    pub fn current_mon(&self) -> SocketAddr {
        self.inner.cur.lock().addr
    }

    /// The mons this client knows (given at start, then from the monmap).
    pub fn mons(&self) -> Vec<SocketAddr> {
        self.inner.addrs.lock().clone()
    }

    /// Sends any payload to the mon.
    pub async fn send<T: Payload>(&self, payload: &T) -> Result<(), MonClientError> {
        self.inner.conn().send(payload.to_message()).await?;
        Ok(())
    }

    /// Runs a command (a JSON object with a `prefix`) and waits for the
    /// reply, at most `timeout`. A command that meets no leader (`EAGAIN`)
    /// or a lost session is sent again until then.
    pub async fn command(
        &self,
        cmd: &serde_json::Value,
        timeout: Duration,
    ) -> Result<MonCommandReply, MonClientError> {
        self.command_with_input(cmd, Vec::new(), timeout).await
    }

    /// [`MonClient::command`] with an input buffer (`-i FILE` of Ceph's
    /// CLI: `crash post`, `config-key set`, ...).
    pub async fn command_with_input(
        &self,
        cmd: &serde_json::Value,
        inbuf: Vec<u8>,
        timeout: Duration,
    ) -> Result<MonCommandReply, MonClientError> {
        if !cmd.get("prefix").is_some_and(|p| p.is_string()) {
            return Err(MonClientError::BadCommand(format!(
                "no \"prefix\" in {cmd}"
            )));
        }
        let deadline = kalmar_common::clock::now() + timeout;
        let mut no_leader_since = None;
        loop {
            let left = deadline.saturating_duration_since(kalmar_common::clock::now());
            let tid = self.next_tid.fetch_add(1, Ordering::Relaxed);
            let msg = MonCommand {
                tid,
                cmd: cmd.to_string(),
                inbuf: Blob(inbuf.clone()),
            };
            let r = match self.request(tid, msg.to_message(), left).await {
                Ok(reply) => MonCommandReply::from_message(&reply).map_err(MonClientError::from),
                Err(e) => Err(e),
            };
            let eagain = matches!(&r, Ok(rep) if rep.retval == EAGAIN);
            let retry = eagain
                || matches!(
                    &r,
                    Err(MonClientError::Closed(_)) | Err(MonClientError::Send(_))
                );
            if !retry || kalmar_common::clock::now() + COMMAND_RETRY_PAUSE >= deadline {
                return r;
            }
            self.hunt_if_leaderless(eagain, &mut no_leader_since).await;
            tokio::time::sleep(COMMAND_RETRY_PAUSE).await;
        }
    }

    /// Registers an OSD by uuid (see [`OsdMkfs`]); retried like a command.
    pub async fn osd_mkfs(
        &self,
        uuid: Uuid,
        want_id: i32,
        hostname: &str,
        timeout: Duration,
    ) -> Result<OsdMkfsReply, MonClientError> {
        let req = OsdMkfs {
            uuid,
            want_id,
            hostname: hostname.to_string(),
            ..OsdMkfs::default()
        };
        self.register_osd(req, timeout).await
    }

    /// Sends `req` (its `tid` is set here) until the mon answers, like a
    /// command: [`MonClient::osd_mkfs`] with every field of [`OsdMkfs`].
    pub async fn register_osd(
        &self,
        req: OsdMkfs,
        timeout: Duration,
    ) -> Result<OsdMkfsReply, MonClientError> {
        let deadline = kalmar_common::clock::now() + timeout;
        let mut no_leader_since = None;
        loop {
            let left = deadline.saturating_duration_since(kalmar_common::clock::now());
            let tid = self.next_tid.fetch_add(1, Ordering::Relaxed);
            let msg = OsdMkfs { tid, ..req.clone() };
            let r = match self.request(tid, msg.to_message(), left).await {
                Ok(reply) => OsdMkfsReply::from_message(&reply).map_err(MonClientError::from),
                Err(e) => Err(e),
            };
            let eagain = matches!(&r, Ok(rep) if rep.retval == EAGAIN);
            let retry = eagain
                || matches!(
                    &r,
                    Err(MonClientError::Closed(_)) | Err(MonClientError::Send(_))
                );
            if !retry || kalmar_common::clock::now() + COMMAND_RETRY_PAUSE >= deadline {
                return r;
            }
            self.hunt_if_leaderless(eagain, &mut no_leader_since).await;
            tokio::time::sleep(COMMAND_RETRY_PAUSE).await;
        }
    }

    /// After [`NO_LEADER_HUNT_AFTER`] of "no leader" answers from the mon
    /// in use, moves to the next one (with several).
    async fn hunt_if_leaderless(&self, eagain: bool, since: &mut Option<Instant>) {
        if !eagain || self.inner.num_mons() < 2 {
            *since = None;
            return;
        }
        let first = *since.get_or_insert_with(kalmar_common::clock::now);
        if kalmar_common::clock::since(first) >= NO_LEADER_HUNT_AFTER {
            *since = None;
            self.inner.hunt().await;
        }
    }

    async fn request(
        &self,
        tid: u64,
        msg: Message,
        timeout: Duration,
    ) -> Result<Message, MonClientError> {
        let (tx, rx) = oneshot::channel();
        self.inner.shared.pending.lock().insert(tid, tx);
        let conn = self.inner.conn();
        let result = async {
            conn.send(msg).await?;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(_)) => Err(MonClientError::Closed(if conn.handle().is_closed() {
                    "session closed".to_string()
                } else {
                    "the mon restarted or the client moved to another mon".to_string()
                })),
                Err(_) => Err(MonClientError::Timeout(timeout.as_millis())),
            }
        }
        .await;
        self.inner.shared.pending.lock().remove(&tid);
        result
    }

    /// Subscribes to `what` (`osdmap`, `mgrmap`) from epoch `start`.
    pub async fn subscribe(
        &self,
        what: &str,
        start: u32,
        onetime: bool,
    ) -> Result<(), MonClientError> {
        let item = SubscribeItem {
            what: what.to_string(),
            start,
            onetime,
        };
        let mut items = vec![item.clone()];
        {
            let mut subs = self.inner.shared.subs.lock();
            if !onetime {
                subs.insert(what.to_string(), item);
            }
            if !subs.contains_key("monmap") {
                let mon = SubscribeItem {
                    what: "monmap".into(),
                    start: 0,
                    onetime: false,
                };
                subs.insert("monmap".into(), mon.clone());
                items.push(mon);
            }
        }
        self.send(&MonSubscribe { items }).await
    }

    /// Ends the session (the mon is told). Dropping the client also ends
    /// it; the routing task stops when the session's events stop.
    pub async fn close(self) {
        self.router.abort();
        if let Some(h) = &self.hunter {
            h.abort();
        }
        let conn = self.inner.conn();
        conn.handle().close("closed by the application");
        let _ = tokio::time::timeout(self.inner.config.keepalive_interval, async {
            while !conn.handle().is_closed() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }
}

/// Watches the session; when it has been down for the round's wait (or
/// closed for good), moves to the next mon. With a single mon the session
/// reconnects by itself, so only a closed one is opened again (after the
/// wait).
async fn hunt_loop(inner: std::sync::Weak<Inner>) {
    let mut wait = HUNT_WAIT_MIN;
    let mut down_since: Option<Instant> = None;
    let mut tried_in_round = 0usize;
    loop {
        tokio::time::sleep(HUNT_POLL).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let conn = inner.conn();
        if conn.is_connected() {
            down_since = None;
            wait = HUNT_WAIT_MIN;
            tried_in_round = 0;
            continue;
        }
        let now = kalmar_common::clock::now();
        let since = *down_since.get_or_insert(now);
        let closed = conn.handle().is_closed();
        let waited = now.saturating_duration_since(since) >= wait;
        let mons = inner.num_mons();
        let due = if mons == 1 {
            closed && waited
        } else {
            closed || waited
        };
        if due {
            inner.hunt().await;
            down_since = None;
            tried_in_round += 1;
            if tried_in_round >= mons {
                tried_in_round = 0;
                wait = (wait * 2).min(HUNT_WAIT_MAX);
            }
        }
    }
}

fn reply_tid(msg: &Message) -> Result<u64, ProtoError> {
    Ok(match msg.msg_type {
        MON_COMMAND_REPLY => MonCommandReply::from_message(msg)?.tid,
        _ => OsdMkfsReply::from_message(msg)?.tid,
    })
}

async fn route(
    mut rx: mpsc::Receiver<(u64, Event)>,
    inner: Arc<Inner>,
    out: mpsc::Sender<MonEvent>,
) {
    let shared = inner.shared.clone();
    while let Some((gen, ev)) = rx.recv().await {
        let current = gen == inner.gen.load(Ordering::SeqCst);
        let forward = match ev {
            Event::Message(m) => match m.msg.msg_type {
                MON_COMMAND_REPLY | OSD_MKFS_REPLY => {
                    match reply_tid(&m.msg) {
                        Ok(tid) => {
                            if let Some(tx) = shared.pending.lock().remove(&tid) {
                                let _ = tx.send(m.msg);
                            }
                        }
                        Err(e) => tracing::warn!("dropping reply from the mon: {e}"),
                    }
                    None
                }
                OSD_MAP => match OsdMapMsg::from_message(&m.msg) {
                    Ok(map) => {
                        if let Some(sub) = shared.subs.lock().get_mut("osdmap") {
                            sub.start = sub.start.max(map.newest.saturating_add(1));
                        }
                        Some(MonEvent::OsdMap(map))
                    }
                    Err(e) => {
                        tracing::warn!("dropping osdmap from the mon: {e}");
                        None
                    }
                },
                MON_MAP => {
                    match MonMapMsg::from_message(&m.msg) {
                        Ok(map) => {
                            if let Some(sub) = shared.subs.lock().get_mut("monmap") {
                                let next = u32::try_from(map.epoch + 1).unwrap_or(u32::MAX);
                                sub.start = sub.start.max(next);
                            }
                            if current && inner.take_monmap(&map) {
                                tracing::info!("the mon in use left the monmap; moving on");
                                inner.hunt().await;
                            }
                        }
                        Err(e) => tracing::warn!("dropping monmap from the mon: {e}"),
                    }
                    None
                }
                MGR_MAP => match MgrMapMsg::from_message(&m.msg) {
                    Ok(map) => Some(MonEvent::MgrMap(map)),
                    Err(e) => {
                        tracing::warn!("dropping mgrmap from the mon: {e}");
                        None
                    }
                },
                _ => Some(MonEvent::Other(m)),
            },
            // A session the client already left: its end is expected.
            Event::Reset(_) | Event::Closed(..) if !current => None,
            Event::Reset(handle) => {
                // Replies to requests in flight are lost with the mon's
                // state: fail them now rather than at their timeout.
                shared.pending.lock().clear();
                let items: Vec<SubscribeItem> = shared.subs.lock().values().cloned().collect();
                if !items.is_empty() {
                    if let Err(e) = handle.send(MonSubscribe { items }.to_message()).await {
                        tracing::warn!("re-subscribing after a mon restart failed: {e}");
                    }
                }
                Some(MonEvent::Reset)
            }
            Event::Closed(_, reason) => {
                // The hunting task opens a session to the next mon (the
                // same one when there is one).
                shared.pending.lock().clear();
                tracing::info!("session to a mon ended: {reason}");
                None
            }
        };
        if let Some(ev) = forward {
            // An owner that dropped its receiver (the CLI) still gets its
            // replies routed; a slow owner is waited for.
            if let Err(mpsc::error::TrySendError::Full(ev)) = out.try_send(ev) {
                let _ = out.send(ev).await;
            }
        }
    }
}
