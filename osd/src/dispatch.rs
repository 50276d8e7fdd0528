//! Routing inbound messages to PGs, right from the connections' read
//! tasks (each connection lives on a shard; see [`crate::shard`]).
//!
//! Client port ([`ClientSink`]): before reading the next op the connection
//! takes throttle permits (the OSD stops reading clients while
//! `osd_client_message_cap` ops or `osd_client_message_size_cap` bytes are
//! in flight); then the op is decoded (a malformed one closes that
//! client's session, nothing else) and handed to its PG's channel, or, when
//! it names a newer map epoch than the OSD has, to the map waiter
//! ([`map_waiter`]) until the OSD has it.
//!
//! Cluster port ([`ClusterSink`]): replicated writes, peering, recovery and
//! scrub messages, each checked to come from the OSD it claims, go to the
//! PG's channel. Peering messages for a PG this OSD has no copy of go to
//! the map task (room for one is reserved before the message is read).

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use kalmar_maps::{Epoch, OsdId};
use kalmar_msgr::sink::{EventSink, Upcoming};
use kalmar_msgr::{Event, Incoming};
use kalmar_peering::PeeringMessage;
use kalmar_proto::client::{errno, OsdOpReply, OsdOpRequest};
use kalmar_proto::osd::*;
use kalmar_proto::registry::*;
use kalmar_proto::{Payload, ProtoError};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::perf::L_MESSAGES_DELAYED_FOR_MAP;
use crate::pg::{ClientOp, PgEvent};
use crate::service::{reply, Service};
use crate::wire::decode_peering;

/// How often ops waiting for a map are checked for expiry.
const MAP_WAIT_CHECK: Duration = Duration::from_secs(1);

/// Caps on client ops in flight in the whole OSD.
pub struct ClientThrottle {
    ops: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_bytes: u64,
}

/// The throttle's hold on one op, released when the op is answered.
pub struct ClientPermits {
    _op: OwnedSemaphorePermit,
    _bytes: Option<OwnedSemaphorePermit>,
}

impl ClientThrottle {
    pub fn new(max_ops: usize, max_bytes: u64) -> Self {
        let max_bytes = max_bytes.min(u32::MAX as u64);
        ClientThrottle {
            ops: Arc::new(Semaphore::new(max_ops.max(1))),
            bytes: Arc::new(Semaphore::new(max_bytes as usize)),
            max_bytes,
        }
    }

    /// Waits for room for one op of `bytes` (a single op larger than the
    /// whole byte cap takes all of it). `None` once closed.
    async fn acquire(&self, bytes: u64) -> Option<ClientPermits> {
        let op = self.ops.clone().acquire_owned().await.ok()?;
        let n = bytes.min(self.max_bytes) as u32;
        let bytes = if n > 0 {
            Some(self.bytes.clone().acquire_many_owned(n).await.ok()?)
        } else {
            None
        };
        Some(ClientPermits {
            _op: op,
            _bytes: bytes,
        })
    }
}

/// Hands a client op to its PG, or answers it. An op of an authenticated
/// session is first checked against the session's osd caps.
fn route(svc: &Service, op: ClientOp) {
    if let Some(peer) = &op.auth {
        let map = svc.map();
        if let Err(r) = crate::caps::check_with_map(peer, &map, &op.req) {
            if r.result == -errno::ENOENT {
                // The same answer as without auth (below), naming the pool.
                let msg = format!("pool {} does not exist", op.req.pgid.pool);
                answer(&op, r.result, 0, &msg);
                return;
            }
            let pool = map.pool(op.req.pgid.pool).map_or("?", |p| p.name.as_str());
            svc.cap_refusals.log(peer, pool, &op.req, &r);
            answer(&op, r.result, 0, r.reason);
            return;
        }
    }
    let pgid = op.req.pgid;
    if let Some(h) = svc.pg(pgid) {
        op.track.mark("queued_for_pg");
        if let Err(mpsc::error::SendError(PgEvent::Client(op))) = h.tx.send(PgEvent::Client(op)) {
            answer(
                &op,
                -errno::EAGAIN,
                svc.epoch() + 1,
                "the PG is going away on this OSD",
            );
        }
        return;
    }
    let map = svc.map();
    let (result, retry, msg) = match map.pool(pgid.pool) {
        Err(_) => (
            -errno::ENOENT,
            0,
            format!("pool {} does not exist", pgid.pool),
        ),
        Ok(p) if pgid.seed >= p.pg_num => (
            -errno::ENOENT,
            0,
            format!("pg {pgid} does not exist (pool has pg_num {})", p.pg_num),
        ),
        Ok(_) => (
            -errno::EAGAIN,
            if op.req.map_epoch >= map.epoch {
                map.epoch + 1
            } else {
                map.epoch
            },
            format!("osd.{} does not hold pg {pgid}", svc.whoami),
        ),
    };
    answer(&op, result, retry, &msg);
}

fn answer(op: &ClientOp, result: i32, retry_epoch: Epoch, msg: &str) {
    let mut r = OsdOpReply::error(op.req.tid, result, 0, msg);
    r.retry_epoch = retry_epoch;
    op.track.mark("done");
    reply(&op.reply_to, r.to_message());
}

/// The client port's sink; see the module documentation.
pub struct ClientSink {
    svc: OnceLock<Arc<Service>>,
    throttle: ClientThrottle,
    /// Ops of a newer map epoch, to the map waiter.
    waiting: mpsc::Sender<ClientOp>,
}

impl ClientSink {
    pub fn new(throttle: ClientThrottle, waiting: mpsc::Sender<ClientOp>) -> ClientSink {
        ClientSink {
            svc: OnceLock::new(),
            throttle,
            waiting,
        }
    }

    /// Starts routing (messages before this close their sessions).
    pub fn set_service(&self, svc: Arc<Service>) {
        let _ = self.svc.set(svc);
    }
}

impl EventSink for ClientSink {
    type Permit<'a> = Option<ClientPermits>;

    async fn reserve(&self, next: &Upcoming<'_>) -> Option<Option<ClientPermits>> {
        match next {
            Upcoming::Message { payload_bytes, .. } => {
                Some(Some(self.throttle.acquire(*payload_bytes as u64).await?))
            }
            Upcoming::SessionChange => Some(None),
        }
    }

    fn deliver(&self, permits: Option<ClientPermits>, event: Event) {
        let Event::Message(Incoming { peer, msg, from }) = event else {
            return;
        };
        let (Some(svc), Some(permits)) = (self.svc.get(), permits) else {
            from.close("the OSD is not serving clients yet");
            return;
        };
        if msg.msg_type != CLIENT_OSD_OP {
            tracing::warn!(peer = %peer.entity, msg_type = msg.msg_type, "unexpected message on the client port; closing the session");
            from.close("unexpected message type on the client port");
            return;
        }
        let req = match OsdOpRequest::from_message(&msg) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(peer = %peer.entity, "malformed client op: {e}; closing the session");
                from.close(&format!("malformed op: {e}"));
                return;
            }
        };
        let track = svc.tracker.start(&req);
        track.mark("throttled");
        let op = ClientOp {
            req,
            reply_to: from,
            received: kalmar_common::clock::now(),
            track,
            permits,
            read_repairs: 0,
            auth: peer.auth.clone(),
        };
        if op.req.map_epoch > svc.epoch() {
            match self.waiting.try_send(op) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(op))
                | Err(mpsc::error::TrySendError::Closed(op)) => {
                    let e = op.req.map_epoch;
                    answer(&op, -errno::EAGAIN, e, "too many ops wait for a newer map");
                }
            }
        } else {
            route(svc, op);
        }
    }
}

/// Holds client ops of map epochs the OSD has not reached, routes them
/// when it does, and answers those that waited too long.
pub async fn map_waiter(
    svc: Arc<Service>,
    mut rx: mpsc::Receiver<ClientOp>,
    mut epochs: watch::Receiver<Epoch>,
) {
    let mut waiting: VecDeque<ClientOp> = VecDeque::new();
    let mut check = tokio::time::interval(MAP_WAIT_CHECK);
    loop {
        tokio::select! {
            op = rx.recv() => {
                let Some(op) = op else { return };
                if op.req.map_epoch <= svc.epoch() {
                    route(&svc, op);
                    continue;
                }
                svc.perf.inc(L_MESSAGES_DELAYED_FOR_MAP, 1);
                op.track.mark("waiting_for_map");
                waiting.push_back(op);
            }
            changed = epochs.changed() => {
                if changed.is_err() {
                    return;
                }
                let epoch = *epochs.borrow_and_update();
                let (ready, still): (VecDeque<ClientOp>, VecDeque<ClientOp>) =
                    waiting.drain(..).partition(|op| op.req.map_epoch <= epoch);
                waiting = still;
                for op in ready {
                    route(&svc, op);
                }
            }
            _ = check.tick() => {
                let limit = svc.opts.osd_op_queue_timeout;
                let (old, young): (VecDeque<ClientOp>, VecDeque<ClientOp>) =
                    waiting.drain(..).partition(|op| kalmar_common::clock::since(op.received) > limit);
                waiting = young;
                for op in old {
                    let e = op.req.map_epoch;
                    answer(&op, -errno::EAGAIN, e, "this OSD did not get the client's map epoch in time");
                }
            }
        }
    }
}

/// A peering message for a PG this OSD holds no copy of: the map task
/// answers a query, creates the copy for an activation, and holds either
/// until the OSD has the message's epoch.
pub struct CreateRequest {
    pub from: OsdId,
    pub msg: PeeringMessage,
}

fn sender_osd(inc: &Incoming) -> Option<OsdId> {
    inc.peer
        .entity
        .osd_id()
        .and_then(|i| OsdId::try_from(i).ok())
}

/// The cluster port's sink (also of this OSD's outbound cluster sessions,
/// which carry the answers); see the module documentation.
pub struct ClusterSink {
    svc: OnceLock<Weak<Service>>,
    create: mpsc::Sender<CreateRequest>,
}

impl ClusterSink {
    pub fn new(create: mpsc::Sender<CreateRequest>) -> ClusterSink {
        ClusterSink {
            svc: OnceLock::new(),
            create,
        }
    }

    /// Starts routing (weakly: the service holds the sessions that hold
    /// this sink).
    pub fn set_service(&self, svc: &Arc<Service>) {
        let _ = self.svc.set(Arc::downgrade(svc));
    }
}

impl EventSink for ClusterSink {
    type Permit<'a> = Option<mpsc::Permit<'a, CreateRequest>>;

    async fn reserve(
        &self,
        next: &Upcoming<'_>,
    ) -> Option<Option<mpsc::Permit<'_, CreateRequest>>> {
        match next {
            // Room for the map task, in case the PG is not here.
            Upcoming::Message {
                msg_type: OSD_PEERING,
                ..
            } => Some(Some(self.create.reserve().await.ok()?)),
            _ => Some(None),
        }
    }

    fn deliver(&self, permit: Option<mpsc::Permit<'_, CreateRequest>>, event: Event) {
        let Event::Message(inc) = event else { return };
        let Some(svc) = self.svc.get().and_then(Weak::upgrade) else {
            return;
        };
        let Some(peer) = sender_osd(&inc) else {
            tracing::warn!(peer = %inc.peer.entity, "non-OSD peer on the cluster port; closing");
            inc.from.close("only OSDs talk on the cluster port");
            return;
        };
        if let Err(e) = cluster_message(&svc, peer, inc, permit) {
            tracing::warn!(osd = peer, "bad cluster message: {e}");
        }
    }
}

/// Checks that a message claiming to be from `claimed` came from `peer`.
fn check_from(peer: OsdId, claimed: OsdId) -> Result<(), ProtoError> {
    if peer == claimed {
        Ok(())
    } else {
        Err(ProtoError::Decode {
            what: "sender",
            source: kalmar_common::DecodeError::Invalid {
                what: "sender",
                detail: format!("osd.{peer} sent a message claiming to be from osd.{claimed}"),
            },
        })
    }
}

fn to_pg(svc: &Service, pgid: kalmar_maps::PgId, ev: PgEvent) {
    match svc.pg(pgid) {
        Some(h) => {
            h.send(ev);
        }
        None => tracing::debug!(%pgid, "message for a PG this OSD does not hold; dropped"),
    }
}

fn cluster_message(
    svc: &Service,
    peer: OsdId,
    inc: Incoming,
    create: Option<mpsc::Permit<'_, CreateRequest>>,
) -> Result<(), ProtoError> {
    let Incoming { msg, from, .. } = inc;
    let result = match msg.msg_type {
        OSD_REPOP => RepOp::from_message(&msg).and_then(|op| {
            check_from(peer, op.from)?;
            to_pg(
                svc,
                op.pgid,
                PgEvent::RepOp {
                    from: from.clone(),
                    op,
                },
            );
            Ok(())
        }),
        OSD_REPOP_REPLY => RepOpReply::from_message(&msg).and_then(|r| {
            check_from(peer, r.from)?;
            to_pg(svc, r.pgid, PgEvent::RepOpReply(r));
            Ok(())
        }),
        OSD_PEERING => match OsdPeeringMsg::from_message(&msg) {
            Ok(m) => {
                check_from(peer, m.from)?;
                let pm = decode_peering(&m.body.0).map_err(|source| ProtoError::Decode {
                    what: "peering message",
                    source,
                })?;
                peering(svc, peer, pm, create);
                Ok(())
            }
            Err(e) => Err(e),
        },
        OSD_PG_PUSH => PgPush::from_message(&msg).and_then(|push| {
            check_from(peer, push.from)?;
            to_pg(
                svc,
                push.pgid,
                PgEvent::Push {
                    from: from.clone(),
                    push: Box::new(push),
                },
            );
            Ok(())
        }),
        OSD_PG_PUSH_REPLY => PgPushReply::from_message(&msg).and_then(|r| {
            check_from(peer, r.from)?;
            to_pg(svc, r.pgid, PgEvent::PushReply(r));
            Ok(())
        }),
        OSD_PG_PULL => PgPull::from_message(&msg).and_then(|pull| {
            check_from(peer, pull.from)?;
            to_pg(
                svc,
                pull.pgid,
                PgEvent::Pull {
                    from: from.clone(),
                    pull,
                },
            );
            Ok(())
        }),
        OSD_PG_SCAN => PgScan::from_message(&msg).and_then(|scan| {
            check_from(peer, scan.from)?;
            to_pg(
                svc,
                scan.pgid,
                PgEvent::Scan {
                    from: from.clone(),
                    scan,
                },
            );
            Ok(())
        }),
        OSD_PG_SCAN_REPLY => PgScanReply::from_message(&msg).and_then(|r| {
            check_from(peer, r.from)?;
            to_pg(svc, r.pgid, PgEvent::ScanReply(r));
            Ok(())
        }),
        OSD_PG_BACKFILL_REMOVE => PgBackfillRemove::from_message(&msg).and_then(|r| {
            check_from(peer, r.from)?;
            to_pg(svc, r.pgid, PgEvent::BackfillRemove(r));
            Ok(())
        }),
        OSD_PG_SCRUB => PgScrub::from_message(&msg).and_then(|req| {
            check_from(peer, req.from)?;
            to_pg(
                svc,
                req.pgid,
                PgEvent::ScrubRequest {
                    from: from.clone(),
                    req,
                },
            );
            Ok(())
        }),
        OSD_PG_SCRUB_MAP => PgScrubMap::from_message(&msg).and_then(|r| {
            check_from(peer, r.from)?;
            to_pg(svc, r.pgid, PgEvent::ScrubMapReply(r));
            Ok(())
        }),
        other => Err(ProtoError::UnknownType(other)),
    };
    if let Err(e) = &result {
        from.close(&format!("protocol error: {e}"));
    }
    result
}

fn peering(
    svc: &Service,
    from: OsdId,
    msg: PeeringMessage,
    create: Option<mpsc::Permit<'_, CreateRequest>>,
) {
    if let Some(h) = svc.pg(msg.pgid()) {
        h.send(PgEvent::Peering {
            from,
            msg: Box::new(msg),
        });
        return;
    }
    // The map task answers it, creates the PG, or holds it until this OSD
    // reaches the message's epoch (the PG may be created by that map).
    match create {
        Some(p) => p.send(CreateRequest { from, msg }),
        None => tracing::warn!(
            osd = from,
            "peering message without room for the map task; dropped"
        ),
    }
}
