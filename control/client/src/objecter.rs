//! The objecter: sends object ops to PG primaries computed from the
//! current OSDMap and sees each op through to an answer.
//!
//! An op is resent (same request id, so the OSD answers a repeat from its
//! PG log instead of applying it twice) when a new map moves its PG's
//! primary, when the session to the OSD is lost or reset, and when the OSD
//! asks for a retry (it is not, or not yet, the primary). Every op has a
//! deadline; ops in flight are bounded in count and bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use kalmar_maps::{EntityAddr, OsdId, OsdMap, PgId, PoolId};
use kalmar_msgr::{event_channel, Connection, EntityName, EntityType, Event};
use kalmar_proto::client::{errno, flags, OsdOp, OsdOpReply, OsdOpRequest};
use kalmar_proto::mon::OsdMapMsg;
use kalmar_proto::monc::{MonClient, MonEvent};
use kalmar_proto::registry::CLIENT_OSD_OP_REPLY;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio::time::Instant;

use crate::config::ClientConfig;
use crate::error::ClientError;

struct Pending {
    reply: oneshot::Sender<OsdOpReply>,
    /// Session the current attempt went out on.
    session: u64,
    kick: Arc<Notify>,
}

struct OsdSession {
    addr: EntityAddr,
    conn: Connection,
}

/// Where an op goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Object(&'a str),
    /// A whole PG (listing).
    Pg(PgId),
}

pub struct Objecter {
    pub(crate) config: ClientConfig,
    me: EntityName,
    client_id: u64,
    nonce: u64,
    pub(crate) mon: MonClient,
    map_tx: watch::Sender<Arc<OsdMap>>,
    sessions: Mutex<HashMap<OsdId, OsdSession>>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_tid: AtomicU64,
    sent: AtomicU64,
    events: mpsc::Sender<Event>,
    ops: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    shutdown: AtomicBool,
}

impl Objecter {
    /// Connects to the mon and waits (bounded) for the first OSD map.
    pub async fn connect(config: ClientConfig) -> Result<Arc<Objecter>, ClientError> {
        let client_id = rand::random::<u64>() >> 1;
        let nonce = u64::from(std::process::id()) << 32 | u64::from(rand::random::<u32>());
        let me = EntityName::new(EntityType::Client, client_id.to_string());
        let (mon, mon_events) = MonClient::connect(
            config.mon,
            me.clone(),
            uuid::Uuid::nil(),
            config.msgr.clone(),
        )
        .await?;
        mon.subscribe("osdmap", 0, false).await?;
        let (events, osd_events) = event_channel(&config.msgr);
        let (map_tx, mut map_rx) = watch::channel(Arc::new(OsdMap::new(uuid::Uuid::nil(), 0)));
        let o = Arc::new(Objecter {
            ops: Arc::new(Semaphore::new(config.max_inflight_ops.max(1))),
            bytes: Arc::new(Semaphore::new(
                config.max_inflight_bytes.min(u32::MAX as u64) as usize,
            )),
            config,
            me,
            client_id,
            nonce,
            mon,
            map_tx,
            sessions: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_tid: AtomicU64::new(1),
            sent: AtomicU64::new(0),
            events,
            shutdown: AtomicBool::new(false),
        });
        tokio::spawn(map_task(Arc::downgrade(&o), mon_events));
        tokio::spawn(reply_task(Arc::downgrade(&o), osd_events));
        let limit = o.config.mon_timeout;
        let got = tokio::time::timeout(limit, async {
            while map_rx.borrow_and_update().epoch == 0 {
                if map_rx.changed().await.is_err() {
                    return false;
                }
            }
            true
        })
        .await;
        match got {
            Ok(true) => Ok(o),
            _ => Err(ClientError::NoMap(limit.as_millis())),
        }
    }

    pub fn map(&self) -> Arc<OsdMap> {
        self.map_tx.borrow().clone()
    }

    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The pool's id in the current map.
    pub fn pool_id(&self, name: &str) -> Result<PoolId, ClientError> {
        self.map()
            .pool_by_name(name)
            .map(|p| p.id)
            .map_err(|_| ClientError::NoSuchPool(name.to_string()))
    }

    /// Test hook: drops every OSD session as a network failure would; ops
    /// in flight are resent on new sessions.
    pub fn reset_sessions(&self) {
        let old: Vec<OsdSession> = self.sessions.lock().drain().map(|(_, s)| s).collect();
        drop(old);
        for p in self.pending.lock().values() {
            p.kick.notify_one();
        }
    }

    pub async fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Relaxed);
        self.sessions.lock().clear();
        for p in self.pending.lock().values() {
            p.kick.notify_one();
        }
    }

    fn session(&self, map: &OsdMap, osd: OsdId) -> Option<kalmar_msgr::SessionHandle> {
        let addr = map.osd(osd).filter(|s| s.is_up())?.addrs.public;
        let mut s = self.sessions.lock();
        if let Some(cur) = s.get(&osd) {
            if cur.addr == addr && !cur.conn.handle().is_closed() {
                return Some(cur.conn.handle());
            }
        }
        let conn = Connection::start(
            addr.addr,
            self.me.clone(),
            map.fsid,
            self.config.msgr.clone(),
            self.events.clone(),
        );
        let h = conn.handle();
        s.insert(osd, OsdSession { addr, conn });
        Some(h)
    }

    fn on_map(&self, map: &OsdMap) {
        self.sessions.lock().retain(|&osd, s| {
            let keep = map
                .osd(osd)
                .is_some_and(|slot| slot.is_up() && slot.addrs.public == s.addr);
            if !keep {
                s.conn.handle().close("the OSD went down or moved");
            }
            keep
        });
    }

    /// Runs `ops` on an object (or a PG) of `pool` and returns the OSD's
    /// answer; an error result of the OSD is returned as `Err`.
    pub async fn submit(
        &self,
        pool: PoolId,
        target: Target<'_>,
        ops: Vec<OsdOp>,
    ) -> Result<OsdOpReply, ClientError> {
        let what = match target {
            Target::Object(o) => format!("op on '{o}'"),
            Target::Pg(pg) => format!("op on pg {pg}"),
        };
        let in_bytes: u64 = ops.iter().map(OsdOp::in_bytes).sum();
        let _op_permit = self
            .ops
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Shutdown)?;
        let n = in_bytes
            .min(self.config.max_inflight_bytes)
            .min(u32::MAX as u64) as u32;
        let _byte_permit = if n > 0 {
            Some(
                self.bytes
                    .clone()
                    .acquire_many_owned(n)
                    .await
                    .map_err(|_| ClientError::Shutdown)?,
            )
        } else {
            None
        };
        let tid = self.next_tid.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + self.config.op_timeout;
        let oid = match target {
            Target::Object(o) => o.to_string(),
            Target::Pg(_) => String::new(),
        };
        let mut req = OsdOpRequest {
            tid,
            client: self.client_id,
            nonce: self.nonce,
            pgid: PgId::default(),
            map_epoch: 0,
            oid,
            flags: 0,
            ops,
        };
        let result = self.run(&mut req, pool, target, deadline, &what).await;
        self.pending.lock().remove(&tid);
        let reply = result?;
        if reply.result < 0 {
            return Err(ClientError::Osd {
                errno: -reply.result,
                msg: if reply.error.is_empty() {
                    format!("{what} failed")
                } else {
                    format!("{what}: {}", reply.error)
                },
            });
        }
        Ok(reply)
    }

    async fn run(
        &self,
        req: &mut OsdOpRequest,
        pool: PoolId,
        target: Target<'_>,
        deadline: Instant,
        what: &str,
    ) -> Result<OsdOpReply, ClientError> {
        let timeout = || ClientError::Timeout {
            what: what.to_string(),
            ms: self.config.op_timeout.as_millis(),
        };
        let mut map_rx = self.map_tx.subscribe();
        let mut backoff = self.config.retry_backoff_min;
        let kick = Arc::new(Notify::new());
        loop {
            if self.shutdown.load(Ordering::Relaxed) {
                return Err(ClientError::Shutdown);
            }
            let map = map_rx.borrow_and_update().clone();
            let Ok(p) = map.pool(pool) else {
                return Err(ClientError::NoSuchPool(pool.to_string()));
            };
            let pgid = match target {
                Target::Object(o) => p.raw_pg_to_pg(p.object_to_raw_pg(o)),
                Target::Pg(pg) => pg,
            };
            let primary = map
                .pg_to_up_acting_osds(pgid)
                .map(|u| u.acting_primary)
                .unwrap_or(-1);
            let session = if primary >= 0 {
                self.session(&map, primary)
            } else {
                None
            };
            let Some(session) = session else {
                // No usable primary in this map: wait for the next one.
                tokio::select! {
                    r = map_rx.changed() => if r.is_err() { return Err(ClientError::Shutdown) },
                    _ = tokio::time::sleep_until(deadline) => return Err(timeout()),
                }
                continue;
            };
            req.pgid = pgid;
            req.map_epoch = map.epoch;
            let (tx, mut rx) = oneshot::channel();
            self.pending.lock().insert(
                req.tid,
                Pending {
                    reply: tx,
                    session: session.id(),
                    kick: kick.clone(),
                },
            );
            match session.send(req.to_message()).await {
                Ok(_) => {}
                // No session to any OSD would take it: fail now, not at
                // the deadline.
                Err(kalmar_msgr::SendError::TooLarge { len, max }) => {
                    return Err(ClientError::TooLarge {
                        what: what.to_string(),
                        len,
                        max,
                    });
                }
                Err(e) => {
                    tracing::debug!(tid = req.tid, osd = primary, "send failed: {e}; retrying")
                }
            }
            req.flags |= flags::RETRY;
            self.maybe_inject_failure(primary);
            let reply = loop {
                tokio::select! {
                    r = &mut rx => break r.ok(),
                    _ = kick.notified() => break None,
                    r = map_rx.changed() => {
                        if r.is_err() {
                            return Err(ClientError::Shutdown);
                        }
                        let m = map_rx.borrow().clone();
                        let moved = m.pg_to_up_acting_osds(pgid).map(|u| u.acting_primary).unwrap_or(-1) != primary
                            || m.pool(pool).is_err();
                        if moved {
                            break None;
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => return Err(timeout()),
                }
            };
            match reply {
                Some(r) if r.result == -errno::EAGAIN && r.retry_epoch > 0 => {
                    if r.retry_epoch > map_rx.borrow().epoch {
                        let want = r.retry_epoch;
                        let waited = tokio::time::timeout_at(deadline, async {
                            while map_rx.borrow_and_update().epoch < want {
                                if map_rx.changed().await.is_err() {
                                    return;
                                }
                            }
                        })
                        .await;
                        if waited.is_err() {
                            return Err(timeout());
                        }
                    } else {
                        tokio::time::sleep(
                            backoff.min(deadline.saturating_duration_since(Instant::now())),
                        )
                        .await;
                        backoff = (backoff * 2).min(self.config.retry_backoff_max);
                    }
                }
                Some(r) => return Ok(r),
                None => {}
            }
        }
    }

    fn maybe_inject_failure(&self, osd: OsdId) {
        let n = self.config.inject_socket_failures;
        if n == 0 {
            return;
        }
        if self.sent.fetch_add(1, Ordering::Relaxed) % n == n - 1 {
            if let Some(s) = self.sessions.lock().remove(&osd) {
                tracing::debug!(osd, "injected session failure");
                s.conn.handle().close("injected socket failure");
            }
            for p in self.pending.lock().values() {
                p.kick.notify_one();
            }
        }
    }

    fn on_reply(&self, r: OsdOpReply) {
        if let Some(p) = self.pending.lock().remove(&r.tid) {
            let _ = p.reply.send(r);
        }
    }

    /// A session ended or its OSD restarted: resend what went out on it.
    fn on_session_lost(&self, session: u64) {
        for p in self.pending.lock().values() {
            if p.session == session {
                p.kick.notify_one();
            }
        }
    }

    /// Applies an osdmap message; asks for a full map on a gap.
    async fn on_osdmap(&self, msg: OsdMapMsg) {
        let cur = self.map();
        let base = (cur.epoch > 0).then_some(&*cur);
        match msg.advance(base) {
            Ok(Some(m)) if m.epoch > cur.epoch => {
                self.on_map(&m);
                self.map_tx.send_replace(Arc::new(m));
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                if let Err(e) = self.mon.subscribe("osdmap", 0, true).await {
                    tracing::debug!("asking for a full map: {e}");
                }
            }
            Err(e) => tracing::warn!("bad osdmap from the mon: {e}"),
        }
    }
}

async fn map_task(o: std::sync::Weak<Objecter>, mut rx: mpsc::Receiver<MonEvent>) {
    while let Some(ev) = rx.recv().await {
        let Some(o) = o.upgrade() else { return };
        match ev {
            MonEvent::OsdMap(m) => o.on_osdmap(m).await,
            MonEvent::Closed(reason) => {
                tracing::warn!("mon session closed: {reason}");
            }
            _ => {}
        }
    }
}

async fn reply_task(o: std::sync::Weak<Objecter>, mut rx: mpsc::Receiver<Event>) {
    while let Some(ev) = rx.recv().await {
        let Some(o) = o.upgrade() else { return };
        match ev {
            Event::Message(inc) if inc.msg.msg_type == CLIENT_OSD_OP_REPLY => {
                match OsdOpReply::from_message(&inc.msg) {
                    Ok(r) => o.on_reply(r),
                    Err(e) => tracing::warn!(peer = %inc.peer.entity, "bad reply: {e}"),
                }
            }
            Event::Message(inc) => {
                tracing::debug!(peer = %inc.peer.entity, msg_type = inc.msg.msg_type, "unexpected message from an OSD")
            }
            Event::Reset(h) | Event::Closed(h, _) => o.on_session_lost(h.id()),
        }
    }
}
