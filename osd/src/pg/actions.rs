//! Carrying out the state machine's actions, in order. Metadata to persist
//! accumulates in one transaction; before any message leaves for another
//! OSD, what was persisted so far is made durable (a peer must never learn
//! of state a crash could lose). Every PG transaction goes through the
//! shard's store ([`crate::shard::store::ShardStore`]): a failure after
//! admission stops the OSD.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kalmar_common::encoding::{Blob, Encode};
use kalmar_common::perf::PerfCounters;
use kalmar_msgr::{Message, SessionHandle};
use kalmar_objectstore::{ObjectId, StoreError, Transaction};
use kalmar_peering::{Action, PeeringMessage, PgWrite};
use kalmar_proto::mon::OsdPgTemp;
use kalmar_proto::osd::{OsdPeeringMsg, PgBackfillRemove, PgPull, PgScan, RepOpReply};
use kalmar_proto::Payload;
use tokio::sync::mpsc;

use super::{PgActor, PgEvent};
use crate::perf::*;
use crate::service::reply;
use crate::shard::store::FollowUp;
use crate::wire::encode_peering;

/// Objects removed per transaction when a PG is deleted.
const DELETE_BATCH_OBJECTS: usize = 256;

/// What to do once a transaction is durable.
pub(crate) enum AfterCommit {
    Nothing,
    /// Tell the PG that write `tid` committed locally.
    Tid(u64),
    /// Answer a peer once durable (a push).
    Reply(SessionHandle, Message),
    /// Answer a replicated write.
    RepReply(
        SessionHandle,
        RepOpReply,
        Option<(Arc<PerfCounters>, Instant)>,
    ),
}

impl AfterCommit {
    /// Runs on the PG's shard once the transaction is durable.
    pub(crate) fn run(self, tx: &mpsc::UnboundedSender<PgEvent>) {
        match self {
            AfterCommit::Nothing => {}
            AfterCommit::Tid(tid) => {
                let _ = tx.send(PgEvent::Committed { tid });
            }
            AfterCommit::Reply(to, msg) => reply(&to, msg),
            AfterCommit::RepReply(to, r, lat) => {
                if let Some((perf, start)) = lat {
                    perf.tinc(L_SUBOP_W_LAT, start.elapsed());
                    perf.tinc(L_SUBOP_LAT, start.elapsed());
                }
                reply(&to, r.to_message());
            }
        }
    }
}

impl PgActor {
    /// Runs `acts` on top of `t` (which may already hold object changes the
    /// actions' metadata must join); `after` runs once everything is
    /// durable.
    pub(super) async fn run_actions(
        &mut self,
        acts: Vec<Action>,
        mut t: Transaction,
        after: AfterCommit,
    ) {
        for a in acts {
            if self.stopped {
                break;
            }
            let outbound = matches!(
                a,
                Action::Send { .. }
                    | Action::Pull { .. }
                    | Action::Push { .. }
                    | Action::ScanLocal { .. }
                    | Action::ScanPeer { .. }
                    | Action::RemoveOnPeer { .. }
            );
            if outbound && !t.is_empty() {
                if let Err(e) = self.store.commit(std::mem::take(&mut t)).await {
                    self.svc
                        .fatal(format!("pg {} metadata commit failed: {e}", self.pgid));
                    return;
                }
            }
            match a {
                Action::Persist(w) => self.add_persist(&mut t, &w).await,
                Action::Send { to, msg } => {
                    if let PeeringMessage::ReserveRejectTooFull { kind, .. } = &msg {
                        let f = self.svc.fullness();
                        tracing::warn!(pgid = %self.pgid, primary = to, ?kind, fullness = ?f,
                            "reservation refused: this OSD is too full");
                    }
                    let m = OsdPeeringMsg {
                        from: self.whoami,
                        map_epoch: self.epoch,
                        body: Blob(encode_peering(&msg)),
                    };
                    self.svc.send_osd(to, m.to_message()).await;
                }
                Action::RequestPgTemp { want } => {
                    let m = OsdPgTemp {
                        osd_id: self.whoami,
                        map_epoch: self.epoch,
                        pg_temp: [(self.pgid, want)].into(),
                    };
                    if let Err(e) = self.svc.mon.send(&m).await {
                        tracing::info!(pgid = %self.pgid, "pg_temp request not sent: {e}");
                    }
                }
                Action::RequestUpThru { epoch } => self.svc.request_up_thru(epoch).await,
                Action::RequestReservation { kind, .. } => {
                    let tx = self.tx.clone();
                    self.svc.reserver.request(self.pgid, kind, move || {
                        let _ = tx.send(PgEvent::Reserved(kind));
                    });
                }
                Action::ReleaseReservation { kind } => self.svc.reserver.release(self.pgid, kind),
                Action::ScheduleRetry { kind, delay_ms } => {
                    tracing::info!(pgid = %self.pgid, ?kind, delay_ms,
                        "a copy is too full: reservations released, retrying later");
                    let ev = PgEvent::RetryReservation {
                        interval: self.interval(),
                        kind,
                    };
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
                        let _ = tx.send(ev);
                    });
                }
                Action::Pull { oid, version, from } => {
                    let m = PgPull {
                        pgid: self.pgid,
                        from: self.whoami,
                        map_epoch: self.epoch,
                        interval: self.interval(),
                        oid,
                        version_epoch: version.epoch,
                        version: version.version,
                    };
                    self.svc.perf.inc(L_PULL, 1);
                    self.svc.perf.inc(L_RECOVERY_OPS, 1);
                    self.svc.send_osd(from, m.to_message()).await;
                }
                Action::Push {
                    oid,
                    version,
                    to,
                    backfill,
                } => self.schedule_push(oid, version, to, backfill).await,
                Action::ScanLocal { begin, max } => {
                    self.svc.perf.inc(L_BACKFILL_SCANS, 1);
                    self.scan_local(begin, max).await
                }
                Action::ScanPeer { peer, begin, max } => {
                    self.svc.perf.inc(L_BACKFILL_SCANS, 1);
                    let m = PgScan {
                        pgid: self.pgid,
                        from: self.whoami,
                        map_epoch: self.epoch,
                        interval: self.interval(),
                        begin: Blob(begin.to_bytes()),
                        max: max.min(u32::MAX as usize) as u32,
                    };
                    self.svc.send_osd(peer, m.to_message()).await;
                }
                Action::RemoveOnPeer { peer, oid } => {
                    self.svc.perf.inc(L_BACKFILL_REMOVES, 1);
                    let m = PgBackfillRemove {
                        pgid: self.pgid,
                        from: self.whoami,
                        map_epoch: self.epoch,
                        interval: self.interval(),
                        oid,
                    };
                    self.svc.send_osd(peer, m.to_message()).await;
                }
                Action::StartScrub { deep, repair } => self.start_scrub(deep, repair),
                Action::PublishStats(r) => self.last_stats = Some(*r),
                Action::RecordStateLatency {
                    counter,
                    duration_us,
                } => {
                    if let Some(i) = self.svc.rs_perf.index_of(counter) {
                        self.svc.rs_perf.tinc(i, Duration::from_micros(duration_us));
                    }
                }
                Action::DeletePg => self.delete_pg().await,
            }
        }
        if self.stopped {
            return;
        }
        if t.is_empty() {
            // Everything before was made durable (or nothing was written).
            after.run(&self.tx);
            return;
        }
        self.queue_txn(t, after).await;
    }

    /// Adds a `Persist` to `t`, with its object removals (only of objects
    /// that exist: a removal of a missing object would fail the whole
    /// transaction).
    async fn add_persist(&mut self, t: &mut Transaction, w: &PgWrite) {
        for oid in &w.remove_objects {
            let Ok(o) = ObjectId::new(oid) else {
                continue;
            };
            match self.svc.store.stat_async(&self.coll, &o).await {
                Ok(_) => {
                    t.remove(&self.coll, &o);
                }
                Err(StoreError::ObjectNotFound { .. }) => {}
                Err(e) => self
                    .svc
                    .fatal(format!("pg {}: stat of {oid} failed: {e}", self.pgid)),
            }
        }
        self.meta.add_write(t, w, &self.pg, self.epoch);
    }

    /// Queues a transaction once admitted; `after` runs once it is
    /// durable (a failure stops the OSD).
    pub(super) async fn queue_txn(&self, t: Transaction, after: AfterCommit) {
        match self.store.admit().await {
            Ok(permit) => self.store.submit(
                t,
                permit,
                FollowUp {
                    tx: self.tx.clone(),
                    after,
                },
            ),
            Err(e) => tracing::debug!(pgid = %self.pgid, "transaction dropped: {e}"),
        }
    }

    /// Removes the PG's objects, metadata and collection, then stops.
    async fn delete_pg(&mut self) {
        tracing::info!(pgid = %self.pgid, "deleting pg");
        self.svc.perf.inc(L_NUMPG_REMOVING, 1);
        let store = self.svc.store.clone();
        let mut start = None;
        loop {
            let page = store
                .collection_list_async(&self.coll, start.clone(), DELETE_BATCH_OBJECTS)
                .await;
            let (names, next) = match page {
                Ok(p) => p,
                Err(StoreError::CollectionNotFound(_)) => break,
                Err(e) => {
                    self.svc.fatal(format!(
                        "pg {}: listing for deletion failed: {e}",
                        self.pgid
                    ));
                    break;
                }
            };
            let mut t = Transaction::new();
            for o in &names {
                t.remove(&self.coll, o);
            }
            let last = next.is_none();
            if last {
                t.remove_collection(&self.coll);
            }
            if let Err(e) = self.store.commit(t).await {
                self.svc
                    .fatal(format!("pg {}: deletion failed: {e}", self.pgid));
                break;
            }
            if last {
                break;
            }
            start = next;
        }
        self.svc.perf.dec(L_NUMPG_REMOVING, 1);
        self.svc.pgs.write().remove(&self.pgid);
        self.stopped = true;
    }
}
