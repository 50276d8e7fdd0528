//! The objecter: sends object ops to PG primaries computed from the
//! current OSDMap and sees each op through to an answer.
//!
//! An op is resent (same request id, so the OSD answers a repeat from its
//! PG log instead of applying it twice) when a new map moves its PG or
//! the PG's primary, when the session to the OSD is lost or reset, and
//! when the OSD asks for a retry (it is not, or not yet, the primary).
//! Every op has a deadline; ops in flight are bounded in count and bytes.
//!
//! The op runs in its caller's task: it places itself from the current
//! [`MapView`], takes a slot in the [`OpTable`], sends on the primary's
//! session, and sleeps on its slot until a reply, a kick or its deadline.
//! Map changes and lost sessions kick the slots they concern (a scan per
//! event, not a wake-up of every op per map). In steady state an op
//! allocates nothing here: no channel, no map entry, no error text (built
//! only on failure), no lock on the map or the sessions.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use kalmar_maps::{Epoch, OsdId, OsdMap, PgId, PoolId};
use kalmar_proto::client::{errno, flags, OsdOp, OsdOpReply, OsdOpRequest};
use nix::errno::Errno;
use parking_lot::Mutex;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::mapview::{Located, MapView, Placement};
use crate::optable::{OpTable, Waiting, Wake, MAX_SLOTS};
use crate::sessions::Sessions;
use crate::transport::{OsdSession, SendFailure, Transport};

/// Where an op goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Object(&'a str),
    /// A whole PG (listing, PG commands).
    Pg(PgId),
}

impl Target<'_> {
    /// For error messages only (allocates).
    fn describe(self) -> String {
        match self {
            Target::Object(o) => format!("op on '{o}'"),
            Target::Pg(pg) => format!("op on pg {pg}"),
        }
    }
}

pub struct Objecter<T: Transport> {
    pub(crate) config: ClientConfig,
    transport: T,
    client_id: u64,
    nonce: u64,
    view: ArcSwap<MapView>,
    /// The installed epoch, for tasks waiting on the first map.
    epoch_tx: watch::Sender<Epoch>,
    /// Serialises map installs (the scan of the ops relies on one writer).
    install: Mutex<()>,
    sessions: Sessions<T::Session>,
    table: Mutex<OpTable>,
    sent: AtomicU64,
    ops: Semaphore,
    bytes: Semaphore,
    shutdown: AtomicBool,
}

impl<T: Transport> Objecter<T> {
    /// An objecter with no map yet (ops wait for one); `client_id` and
    /// `nonce` make its request ids unique.
    pub fn new(transport: T, config: ClientConfig, client_id: u64, nonce: u64) -> Arc<Self> {
        let (epoch_tx, _) = watch::channel(0);
        Arc::new(Objecter {
            ops: Semaphore::new(config.max_inflight_ops.clamp(1, MAX_SLOTS)),
            bytes: Semaphore::new(config.max_inflight_bytes.min(u32::MAX as u64) as usize),
            config,
            transport,
            client_id,
            nonce,
            view: ArcSwap::from_pointee(MapView::new(OsdMap::new(uuid::Uuid::nil(), 0))),
            epoch_tx,
            install: Mutex::new(()),
            sessions: Sessions::new(),
            table: Mutex::new(OpTable::default()),
            sent: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
        })
    }

    /// Waits (at most `limit`) until the objecter has a map.
    pub async fn wait_for_map(&self, limit: std::time::Duration) -> bool {
        let mut rx = self.epoch_tx.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|&e| e > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub fn map(&self) -> Arc<OsdMap> {
        self.view.load().map().clone()
    }

    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The pool's id in the current map.
    pub fn pool_id(&self, name: &str) -> Result<PoolId, ClientError> {
        self.view
            .load()
            .map()
            .pool_by_name(name)
            .map(|p| p.id)
            .map_err(|_| ClientError::NoSuchPool(name.to_string()))
    }

    /// Ops holding a slot now (for tests and dumps).
    pub fn ops_in_flight(&self) -> usize {
        self.table.lock().in_flight()
    }

    /// Test hook: drops every OSD session as a network failure would; ops
    /// in flight are resent on new sessions.
    pub fn reset_sessions(&self) {
        self.sessions.retain("sessions reset", |_, _| false);
        self.table
            .lock()
            .kick(|_, w| matches!(w, Waiting::Reply { .. }));
    }

    /// Fails every op in flight and every later one with `Shutdown`.
    pub async fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.sessions
            .retain("the client is shut down", |_, _| false);
        self.table.lock().kick(|_, _| true);
    }

    /// Installs a newer map (an older or equal epoch is ignored): closes
    /// sessions to OSDs that went down or moved, and kicks the ops whose
    /// PG or primary changed, whose pool went away, or that waited for
    /// this epoch.
    pub fn apply_map(&self, map: OsdMap) {
        let _one_writer = self.install.lock();
        if map.epoch <= self.view.load().epoch() {
            return;
        }
        let view = Arc::new(MapView::new(map));
        self.sessions
            .retain("the OSD went down or moved", |osd, addr| {
                view.map()
                    .osd(osd)
                    .is_some_and(|s| s.is_up() && s.addrs.public == *addr)
            });
        // Published before the scan: an op placing itself meanwhile
        // either sees this epoch or is seen by the scan (see `attempt`).
        self.view.store(view.clone());
        self.table.lock().kick(|placement, waiting| match waiting {
            Waiting::Nothing => false,
            Waiting::Epoch(e) => view.epoch() >= e,
            Waiting::Reply { pgid, primary, .. } => match view.locate(placement) {
                None => true,
                Some(at) => at.pgid != pgid || at.primary.map(|p| p.0) != Some(primary),
            },
        });
        self.epoch_tx.send_replace(view.epoch());
    }

    /// An OSD's reply (from the transport's reader).
    pub fn on_reply(&self, r: OsdOpReply) {
        let waker = self.table.lock().deliver(r);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// A session ended or its OSD restarted: resend what went out on it.
    pub fn on_session_lost(&self, session: u64) {
        self.table.lock().kick(|_, w| match w {
            Waiting::Reply { session: s, .. } => s == session,
            _ => false,
        });
    }

    /// Runs `ops` on an object (or a PG) of `pool` and returns the OSD's
    /// answer; an error result of the OSD is returned as `Err`.
    pub async fn submit(
        &self,
        pool: PoolId,
        target: Target<'_>,
        ops: impl IntoIterator<Item = OsdOp>,
    ) -> Result<OsdOpReply, ClientError> {
        if self.shutdown.load(Ordering::Acquire) {
            return Err(ClientError::Shutdown);
        }
        let placement = {
            let view = self.view.load();
            match target {
                Target::Object(o) => view.place_object(pool, o),
                Target::Pg(pg) => Some(Placement::Pg(pg)),
            }
        }
        .ok_or_else(|| ClientError::NoSuchPool(pool.to_string()))?;
        let _op_permit = self
            .ops
            .acquire()
            .await
            .map_err(|_| ClientError::Shutdown)?;
        let mut op = OpSlot::take(self, placement);
        op.req.tid = op.tid;
        op.req.client = self.client_id;
        op.req.nonce = self.nonce;
        op.req.flags = 0;
        if let Target::Object(o) = target {
            op.req.oid.push_str(o);
        }
        op.req.ops.extend(ops);
        let in_bytes: u64 = op.req.ops.iter().map(OsdOp::in_bytes).sum();
        let n = in_bytes
            .min(self.config.max_inflight_bytes)
            .min(u32::MAX as u64) as u32;
        let _byte_permit = if n > 0 {
            Some(
                self.bytes
                    .acquire_many(n)
                    .await
                    .map_err(|_| ClientError::Shutdown)?,
            )
        } else {
            None
        };
        let deadline = Instant::now() + self.config.op_timeout;
        let reply = self.run(&mut op, target, deadline).await?;
        if reply.result < 0 {
            return Err(self.reply_error(target, placement, reply));
        }
        Ok(reply)
    }

    /// The error for a failed reply (the only place its text is built).
    fn reply_error(&self, target: Target<'_>, placement: Placement, r: OsdOpReply) -> ClientError {
        let errno = Errno::from_raw(-r.result);
        let what = target.describe();
        let msg = if r.error.is_empty() {
            format!("{what} failed")
        } else {
            format!("{what}: {}", r.error)
        };
        match (errno, target) {
            // The OSD answers a PG it has no record of (its map has no
            // such pool or PG) before any PG sees the op, with map epoch
            // 0; only a PG's own ENOENT (with its epoch) is about the
            // object.
            (Errno::ENOENT, _) if r.map_epoch == 0 => {
                let pool_known = self.view.load().locate(placement).is_some();
                match target {
                    Target::Pg(pg) if pool_known => ClientError::NoSuchPg(pg.to_string()),
                    // An object's PG always exists where its pool does
                    // (pg_num never shrinks): the OSD's newer map has no
                    // such pool.
                    _ => ClientError::NoSuchPool(placement_pool(placement)),
                }
            }
            (Errno::ENOENT, Target::Object(o)) => ClientError::ObjectNotFound {
                object: o.to_string(),
                msg,
            },
            _ => ClientError::Osd { errno, msg },
        }
    }

    fn timeout(&self, target: Target<'_>) -> ClientError {
        ClientError::Timeout {
            what: target.describe(),
            ms: self.config.op_timeout.as_millis(),
        }
    }

    async fn run(
        &self,
        op: &mut OpSlot<'_, T>,
        target: Target<'_>,
        deadline: Instant,
    ) -> Result<OsdOpReply, ClientError> {
        let expired = tokio::time::sleep_until(deadline);
        tokio::pin!(expired);
        let mut backoff = self.config.retry_backoff_min;
        loop {
            if self.shutdown.load(Ordering::Acquire) {
                return Err(ClientError::Shutdown);
            }
            let (epoch, fsid, at) = {
                let view = self.view.load();
                (view.epoch(), view.map().fsid, view.locate(op.placement))
            };
            let Some(at) = at else {
                return Err(ClientError::NoSuchPool(placement_pool(op.placement)));
            };
            let Located {
                pgid,
                primary: Some((primary, addr)),
            } = at
            else {
                // No usable primary in this map: wait for the next one.
                if self.wait_for_epoch(op, epoch + 1) {
                    tokio::select! {
                        _ = op.wake() => {}
                        _ = &mut expired => return Err(self.timeout(target)),
                    }
                }
                continue;
            };
            let session = self
                .sessions
                .get_or_open(primary, &addr, || self.transport.open(primary, &addr, fsid));
            op.req.pgid = pgid;
            op.req.map_epoch = epoch;
            if !self.attempt(op, epoch, session.id(), pgid, primary) {
                continue;
            }
            match session.send(&op.req).await {
                Ok(()) => {}
                Err(SendFailure::TooLarge { len, max }) => {
                    return Err(ClientError::TooLarge {
                        what: target.describe(),
                        len,
                        max,
                    });
                }
                Err(SendFailure::Closed) => {
                    // Resent on a new session after a pause, so a peer
                    // that keeps closing is not hammered.
                    tracing::debug!(tid = op.tid, osd = primary, "session closed; resending");
                    self.table.lock().set_waiting(op.tid, Waiting::Nothing);
                    self.pause(op, &mut backoff, expired.as_mut(), target)
                        .await?;
                    continue;
                }
            }
            op.req.flags |= flags::RETRY;
            self.maybe_inject_failure(primary);
            let reply = tokio::select! {
                w = op.wake() => w,
                _ = &mut expired => return Err(self.timeout(target)),
            };
            match reply {
                Wake::Kicked => {}
                Wake::Reply(r) if r.result == -errno::EAGAIN && r.retry_epoch > 0 => {
                    if self.wait_for_epoch(op, r.retry_epoch) {
                        tokio::select! {
                            _ = op.wake() => {}
                            _ = &mut expired => return Err(self.timeout(target)),
                        }
                    } else {
                        self.pause(op, &mut backoff, expired.as_mut(), target)
                            .await?;
                    }
                }
                Wake::Reply(r) => return Ok(r),
            }
        }
    }

    /// Registers op as sent on `session` to `primary`, unless a newer map
    /// than `epoch` was installed meanwhile (then the op places itself
    /// again). Checked under the table's lock, which the install takes
    /// after publishing the map, so no map change is missed.
    fn attempt(
        &self,
        op: &OpSlot<'_, T>,
        epoch: Epoch,
        session: u64,
        pgid: PgId,
        primary: OsdId,
    ) -> bool {
        let mut table = self.table.lock();
        if self.view.load().epoch() != epoch {
            return false;
        }
        table.set_waiting(
            op.tid,
            Waiting::Reply {
                session,
                pgid,
                primary,
            },
        );
        true
    }

    /// Registers op as waiting for a map of `epoch`; false when the
    /// objecter already has one.
    fn wait_for_epoch(&self, op: &OpSlot<'_, T>, epoch: Epoch) -> bool {
        let mut table = self.table.lock();
        if self.view.load().epoch() >= epoch {
            return false;
        }
        table.set_waiting(op.tid, Waiting::Epoch(epoch));
        true
    }

    /// Sleeps `backoff` (doubled for next time, up to
    /// `retry_backoff_max`), or until shutdown or the deadline.
    async fn pause(
        &self,
        op: &OpSlot<'_, T>,
        backoff: &mut std::time::Duration,
        expired: Pin<&mut tokio::time::Sleep>,
        target: Target<'_>,
    ) -> Result<(), ClientError> {
        let pause = tokio::time::sleep(*backoff);
        *backoff = (*backoff * 2).min(self.config.retry_backoff_max);
        tokio::select! {
            _ = pause => Ok(()),
            // A shutdown kick, or a late reply from an earlier attempt
            // (it is taken on the next wait).
            _ = op.wake() => Ok(()),
            _ = expired => Err(self.timeout(target)),
        }
    }

    fn maybe_inject_failure(&self, osd: OsdId) {
        let n = self.config.inject_socket_failures;
        if n == 0 {
            return;
        }
        if self.sent.fetch_add(1, Ordering::Relaxed) % n == n - 1 {
            if let Some(s) = self.sessions.get(osd) {
                tracing::debug!(osd, "injected session failure");
                s.close("injected socket failure");
                self.on_session_lost(s.id());
            }
        }
    }
}

fn placement_pool(p: Placement) -> String {
    match p {
        Placement::Object { raw } => raw.pool.to_string(),
        Placement::Pg(pg) => pg.pool.to_string(),
    }
}

/// An op's slot in the table, given back (with its request buffers) when
/// the op ends or its caller drops it.
struct OpSlot<'a, T: Transport> {
    o: &'a Objecter<T>,
    slot: u32,
    tid: u64,
    placement: Placement,
    req: OsdOpRequest,
}

impl<'a, T: Transport> OpSlot<'a, T> {
    fn take(o: &'a Objecter<T>, placement: Placement) -> Self {
        let taken = o.table.lock().take(placement);
        OpSlot {
            o,
            slot: taken.slot,
            tid: taken.tid,
            placement,
            req: taken.req,
        }
    }

    /// Resolves on a reply or a kick.
    fn wake(&self) -> WakeFuture<'_, T> {
        WakeFuture {
            o: self.o,
            tid: self.tid,
        }
    }
}

impl<T: Transport> Drop for OpSlot<'_, T> {
    fn drop(&mut self) {
        let req = std::mem::replace(&mut self.req, placeholder_request());
        self.o.table.lock().give_back(self.slot, req);
    }
}

/// Stands in for the request moved back into the table (empty: no heap).
fn placeholder_request() -> OsdOpRequest {
    OsdOpRequest {
        tid: 0,
        client: 0,
        nonce: 0,
        pgid: PgId::default(),
        map_epoch: 0,
        oid: String::new(),
        flags: 0,
        ops: Vec::new(),
    }
}

struct WakeFuture<'a, T: Transport> {
    o: &'a Objecter<T>,
    tid: u64,
}

impl<T: Transport> Future for WakeFuture<'_, T> {
    type Output = Wake;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Wake> {
        self.o.table.lock().poll_wake(self.tid, cx)
    }
}

#[cfg(test)]
#[path = "objecter_tests.rs"]
mod tests;
