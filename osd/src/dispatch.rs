//! Routing inbound messages to PGs.
//!
//! Client port: decode the op (a malformed one closes that client's
//! session, nothing else), take throttle permits (the OSD stops reading
//! clients while `osd_client_message_cap` ops or
//! `osd_client_message_size_cap` bytes are in flight), hold ops of a newer
//! map epoch until the OSD has it, then hand the op to its PG.
//!
//! Cluster port: replicated writes, peering, recovery and scrub messages, each
//! checked to come from the OSD it claims, to the PG's task. Peering
//! messages for a PG this OSD has no copy of go to the map task.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalmar_maps::{Epoch, OsdId};
use kalmar_msgr::{Event, Incoming};
use kalmar_peering::PeeringMessage;
use kalmar_proto::client::{errno, OsdOpReply, OsdOpRequest};
use kalmar_proto::osd::*;
use kalmar_proto::registry::*;
use kalmar_proto::{Payload, ProtoError};
use tokio::sync::{mpsc, watch, Semaphore};

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
    /// whole byte cap takes all of it).
    async fn acquire(&self, bytes: u64) -> Vec<tokio::sync::OwnedSemaphorePermit> {
        let mut out = Vec::with_capacity(2);
        if let Ok(p) = self.ops.clone().acquire_owned().await {
            out.push(p);
        }
        let n = bytes.min(self.max_bytes) as u32;
        if n > 0 {
            if let Ok(p) = self.bytes.clone().acquire_many_owned(n).await {
                out.push(p);
            }
        }
        out
    }
}

/// Ceph-style description of a client op for `dump_ops_in_flight`.
fn describe(r: &OsdOpRequest) -> String {
    let ops: Vec<String> = r.ops.iter().map(|o| o.describe()).collect();
    format!(
        "osd_op(client.{}.{}:{} {} {} [{}] e{})",
        r.client,
        r.nonce,
        r.tid,
        r.pgid,
        r.oid,
        ops.join(","),
        r.map_epoch
    )
}

/// Hands a client op to its PG, or answers it.
fn route(svc: &Service, op: ClientOp) {
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

/// Serves the client port until its channel closes.
pub async fn client_dispatcher(
    svc: Arc<Service>,
    mut rx: mpsc::Receiver<Event>,
    mut epochs: watch::Receiver<Epoch>,
    throttle: ClientThrottle,
) {
    let mut waiting: VecDeque<ClientOp> = VecDeque::new();
    let mut check = tokio::time::interval(MAP_WAIT_CHECK);
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { return };
                let Event::Message(Incoming { peer, msg, from }) = ev else { continue };
                if msg.msg_type != CLIENT_OSD_OP {
                    tracing::warn!(peer = %peer.entity, msg_type = msg.msg_type, "unexpected message on the client port; closing the session");
                    from.close("unexpected message type on the client port");
                    continue;
                }
                let req = match OsdOpRequest::from_message(&msg) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(peer = %peer.entity, "malformed client op: {e}; closing the session");
                        from.close(&format!("malformed op: {e}"));
                        continue;
                    }
                };
                let track = svc.tracker.start(describe(&req));
                let permits = throttle.acquire(req.in_bytes()).await;
                track.mark("throttled");
                let op = ClientOp { req, reply_to: from, received: Instant::now(), track, permits, read_repairs: 0 };
                if op.req.map_epoch > svc.epoch() {
                    if waiting.len() >= svc.opts.osd_pg_max_queued_ops {
                        answer(&op, -errno::EAGAIN, op.req.map_epoch, "too many ops wait for a newer map");
                        continue;
                    }
                    svc.perf.inc(L_MESSAGES_DELAYED_FOR_MAP, 1);
                    op.track.mark("waiting_for_map");
                    waiting.push_back(op);
                } else {
                    route(&svc, op);
                }
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
                    waiting.drain(..).partition(|op| op.received.elapsed() > limit);
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

/// Serves the cluster port (and answers on outbound cluster sessions)
/// until its channel closes.
pub async fn cluster_dispatcher(
    svc: Arc<Service>,
    mut rx: mpsc::Receiver<Event>,
    create: mpsc::Sender<CreateRequest>,
) {
    while let Some(ev) = rx.recv().await {
        let Event::Message(inc) = ev else { continue };
        let Some(peer) = sender_osd(&inc) else {
            tracing::warn!(peer = %inc.peer.entity, "non-OSD peer on the cluster port; closing");
            inc.from.close("only OSDs talk on the cluster port");
            continue;
        };
        if let Err(e) = cluster_message(&svc, peer, inc, &create).await {
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

async fn cluster_message(
    svc: &Service,
    peer: OsdId,
    inc: Incoming,
    create: &mpsc::Sender<CreateRequest>,
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
                peering(svc, peer, pm, create).await;
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

async fn peering(
    svc: &Service,
    from: OsdId,
    msg: PeeringMessage,
    create: &mpsc::Sender<CreateRequest>,
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
    let _ = create.send(CreateRequest { from, msg }).await;
}
