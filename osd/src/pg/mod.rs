//! One task per PG copy ("actor"): it owns the PG's state machine, feeds it
//! maps and peering messages, carries out its actions, and runs the PG's
//! client I/O (primary) or replicated writes (replica). Everything about a
//! PG happens on its task, in arrival order, so writes are ordered per PG
//! without locks.
//!
//! The channel into a PG is unbounded on purpose: what flows in is bounded
//! at the sources (the client throttle caps client ops and bytes in the
//! whole OSD; a primary's replicated writes are capped by its own clients),
//! and a bounded channel between OSDs could deadlock two PGs waiting on
//! each other's queues.

pub mod cache;
pub mod meta;
pub mod plan;

mod actions;
mod command;
mod push;
mod read;
mod recovery;
mod scrub;
mod scrub_map;
mod scrub_store;
mod write;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use kalmar_maps::time::now_us;
use kalmar_maps::{Epoch, OsdId, OsdMap, PgId};
use kalmar_msgr::SessionHandle;
use kalmar_objectstore::{CollectionId, Transaction};
use kalmar_peering::scrub::ScrubMap;
use kalmar_peering::{
    ClusterView, Event, Eversion, PeeringMessage, Pg, PgMapping, PgStatsReport, ReservationKind,
    ReserveFor, ScanResult,
};
use kalmar_proto::client::{errno, OsdOpReply, OsdOpRequest};
use kalmar_proto::osd::{
    PgBackfillRemove, PgPull, PgPush, PgPushReply, PgScan, PgScanReply, PgScrub, PgScrubMap, RepOp,
    RepOpReply,
};
use kalmar_proto::pgstats::PgStatEntry;
use tokio::sync::{mpsc, oneshot};

use crate::perf::*;
use crate::service::{reply, Service};
use crate::tracker::TrackedOp;

pub(crate) use actions::AfterCommit;
use cache::ObjectCache;
use scrub::Scrubber;
use scrub_store::ScrubRecord;
use write::InFlightWrite;

/// A client request waiting for or under execution.
pub struct ClientOp {
    pub req: OsdOpRequest,
    pub reply_to: SessionHandle,
    pub received: Instant,
    pub track: TrackedOp,
    /// Throttle permits, released when the op is answered.
    pub permits: crate::dispatch::ClientPermits,
    /// Times a read of this op found the primary's copy corrupt and had
    /// it recovered from another copy (retried once, then EIO).
    pub read_repairs: u8,
    /// Who sent it, with its parsed caps, when the session was
    /// authenticated (`None` with auth off: no cap check).
    pub auth: Option<Arc<kalmar_auth::AuthedPeer>>,
}

/// One map epoch as every PG sees it.
pub struct MapEpoch {
    pub map: Arc<OsdMap>,
    pub view: Arc<ClusterView>,
}

impl MapEpoch {
    pub fn new(map: Arc<OsdMap>) -> Arc<Self> {
        let view = Arc::new(ClusterView::from_osdmap(&map));
        Arc::new(MapEpoch { map, view })
    }
}

/// What a PG task receives.
pub enum PgEvent {
    Client(ClientOp),
    RepOp {
        from: SessionHandle,
        op: RepOp,
    },
    RepOpReply(RepOpReply),
    Peering {
        from: OsdId,
        msg: Box<PeeringMessage>,
    },
    AdvMap(Arc<MapEpoch>),
    ActMap,
    /// The local transaction of write `tid` is durable.
    Committed {
        tid: u64,
    },
    Reserved(ReservationKind),
    /// Primary: the toofull wait is over (dropped if the interval changed
    /// meanwhile).
    RetryReservation {
        interval: Epoch,
        kind: ReserveFor,
    },
    /// A recovery or backfill push held back by `osd_recovery_sleep` or
    /// behind writes of its object, now due (dropped if the interval
    /// changed meanwhile).
    DelayedPush {
        interval: Epoch,
        oid: String,
        version: kalmar_peering::Eversion,
        to: Vec<OsdId>,
        backfill: bool,
    },
    Push {
        from: SessionHandle,
        push: Box<PgPush>,
    },
    PushReply(PgPushReply),
    Pull {
        from: SessionHandle,
        pull: PgPull,
    },
    Scan {
        from: SessionHandle,
        scan: PgScan,
    },
    ScanReply(PgScanReply),
    BackfillRemove(PgBackfillRemove),
    /// This OSD's own scan, taken when the machine asked for it.
    LocalScan(ScanResult),
    /// Member: the primary asks for a scrub map.
    ScrubRequest {
        from: SessionHandle,
        req: PgScrub,
    },
    /// Primary: a member's scrub map.
    ScrubMapReply(PgScrubMap),
    /// Primary: a scrub map (this OSD's own, or a member's decoded), with
    /// the data bytes read for it.
    ScrubMap {
        from: OsdId,
        id: u64,
        map: Result<(ScrubMap, u64), String>,
    },
    /// Primary: move the scrub on (next chunk, or maps once writes
    /// finished).
    ScrubStep,
    /// Primary: a read found this OSD's copy of the op's object corrupt
    /// (a block checksum or the object info's data digest failed);
    /// `version`: the object's version from its info, if readable.
    ReadCorrupt {
        op: ClientOp,
        version: Eversion,
    },
    /// Primary: our copy of an object could not be read to push it
    /// (dropped if the interval changed meanwhile).
    PushFailed {
        interval: Epoch,
        oid: String,
        version: Eversion,
    },
    Stats(oneshot::Sender<Option<PgStatEntry>>),
    Query(oneshot::Sender<serde_json::Value>),
    /// Periodic: expire client ops that waited too long.
    Tick,
    Shutdown,
}

/// The way into a PG task.
#[derive(Clone)]
pub struct PgHandle {
    pub tx: mpsc::UnboundedSender<PgEvent>,
}

impl PgHandle {
    pub fn send(&self, ev: PgEvent) -> bool {
        self.tx.send(ev).is_ok()
    }
}

/// The PG's mapping in `map` (`pool_exists == false` once the pool is gone).
pub fn mapping_for(map: &OsdMap, pgid: PgId) -> PgMapping {
    let Ok(pool) = map.pool(pgid.pool) else {
        return PgMapping {
            epoch: map.epoch,
            pool_exists: false,
            up_primary: -1,
            acting_primary: -1,
            ..Default::default()
        };
    };
    let ua = map.pg_to_up_acting_osds(pgid).unwrap_or_default();
    PgMapping {
        epoch: map.epoch,
        pool_exists: true,
        pool_size: pool.size,
        pool_min_size: pool.min_size,
        pg_num: pool.pg_num,
        up: ua.up,
        up_primary: ua.up_primary,
        acting: ua.acting,
        acting_primary: ua.acting_primary,
    }
}

/// The sender's map epoch of a message from another OSD.
fn cluster_epoch(ev: &PgEvent) -> Epoch {
    match ev {
        PgEvent::RepOp { op, .. } => op.map_epoch,
        PgEvent::Push { push, .. } => push.map_epoch,
        PgEvent::Pull { pull, .. } => pull.map_epoch,
        PgEvent::Scan { scan, .. } => scan.map_epoch,
        PgEvent::BackfillRemove(r) => r.map_epoch,
        PgEvent::ScrubRequest { req, .. } => req.map_epoch,
        _ => 0,
    }
}

/// Read/write counters of the PG (`pg dump`'s num_read/num_write).
#[derive(Default, Clone, Copy)]
struct IoCounts {
    num_read: u64,
    num_read_kb: u64,
    num_write: u64,
    num_write_kb: u64,
    num_objects_recovered: u64,
    num_bytes_recovered: u64,
}

pub struct PgActor {
    svc: Arc<Service>,
    /// The store of this PG's shard.
    store: Arc<crate::shard::store::ShardStore>,
    pgid: PgId,
    whoami: OsdId,
    coll: CollectionId,
    pg: Pg,
    /// Turns the PG's writes into store operations.
    meta: meta::PgMetaWriter,
    /// Last map epoch processed.
    epoch: Epoch,
    map: Arc<OsdMap>,
    rx: mpsc::UnboundedReceiver<PgEvent>,
    tx: mpsc::UnboundedSender<PgEvent>,
    objects: ObjectCache,
    inflight: BTreeMap<u64, InFlightWrite>,
    next_tid: u64,
    waiting_active: VecDeque<ClientOp>,
    waiting_object: BTreeMap<String, VecDeque<ClientOp>>,
    /// Reads behind writes of the same object still in flight.
    waiting_reads: BTreeMap<String, Vec<ClientOp>>,
    /// Messages of epochs this PG has not reached yet.
    pending_peering: Vec<(OsdId, PeeringMessage)>,
    /// Replicated writes and recovery messages of epochs not reached yet.
    pending_cluster: Vec<PgEvent>,
    last_stats: Option<PgStatsReport>,
    stats_seq: u64,
    io: IoCounts,
    /// The scrub under way (primary).
    scrubber: Option<Scrubber>,
    /// What the last scrub this OSD ran as primary found (stored).
    scrub_record: Option<ScrubRecord>,
    /// Identifies scrub chunks, for their maps.
    scrub_tid: u64,
    /// When this task took the PG on: never-scrubbed PGs count their
    /// scrub schedule from it.
    since_us: u64,
    /// When the next push may leave under `osd_recovery_sleep`.
    next_push_at: Option<tokio::time::Instant>,
    /// Objects being received in chunks: the offset the next must have.
    receiving: BTreeMap<String, u64>,
    /// Pushes (`PgEvent::DelayedPush`) behind writes of the same object
    /// still in flight here, sent to this task when the last one ends.
    pushes_behind_writes: BTreeMap<String, Vec<PgEvent>>,
    stopped: bool,
}

impl PgActor {
    /// Starts the task of `pg` (created or loaded) on its shard, registers
    /// it, and delivers `Initialize` then the given maps. `create`, when
    /// given, is committed before anything else the PG writes (the PG's
    /// collection and metadata).
    pub fn spawn(
        svc: Arc<Service>,
        pg: Pg,
        epoch: Epoch,
        map: Arc<OsdMap>,
        create: Option<Transaction>,
    ) -> PgHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let pgid = pg.pgid();
        let (runtime, store) = svc.shard(pgid);
        let actor = PgActor {
            store,
            whoami: svc.whoami,
            coll: crate::names::pg_collection(pgid),
            meta: meta::PgMetaWriter::new(crate::names::pg_collection(pgid), pg.info().clone()),
            objects: ObjectCache::new(svc.opts.osd_pg_object_cache_size),
            svc: svc.clone(),
            pgid,
            pg,
            epoch,
            map,
            rx,
            tx: tx.clone(),
            inflight: BTreeMap::new(),
            next_tid: 1,
            waiting_active: VecDeque::new(),
            waiting_object: BTreeMap::new(),
            waiting_reads: BTreeMap::new(),
            pending_peering: Vec::new(),
            pending_cluster: Vec::new(),
            last_stats: None,
            stats_seq: 0,
            io: IoCounts::default(),
            scrubber: None,
            scrub_record: None,
            scrub_tid: 0,
            since_us: now_us(),
            next_push_at: None,
            receiving: BTreeMap::new(),
            pushes_behind_writes: BTreeMap::new(),
            stopped: false,
        };
        let handle = PgHandle { tx };
        svc.pgs.write().insert(pgid, handle.clone());
        let alive = svc.pg_task_started();
        runtime.spawn(async move {
            actor.run(create).await;
            drop(alive);
        });
        handle
    }

    async fn run(mut self, create: Option<Transaction>) {
        if let Some(t) = create {
            if let Err(e) = self.store.commit(t).await {
                self.svc.fatal(format!("creating pg {}: {e}", self.pgid));
                return;
            }
        }
        let limit = self.svc.opts.osd_scrub_max_recorded_inconsistent;
        self.scrub_record = match scrub_store::load(&self.svc.store, &self.coll, limit).await {
            Ok(r) => r,
            Err(e) => {
                // Only `list-inconsistent-obj` needs it: the next scrub
                // writes a new one.
                tracing::error!(pgid = %self.pgid, "scrub record not loaded: {e}");
                None
            }
        };
        self.machine(Event::Initialize).await;
        while let Some(ev) = self.rx.recv().await {
            self.on_event(ev).await;
            if self.stopped {
                break;
            }
        }
        self.svc.reserver.release_all(self.pgid);
        let epoch = self.epoch;
        for op in self.drain_all_ops() {
            self.answer_error(
                op,
                -errno::EAGAIN,
                epoch + 1,
                "the PG went away on this OSD",
            );
        }
        tracing::debug!(pgid = %self.pgid, "pg task ended");
    }

    async fn on_event(&mut self, ev: PgEvent) {
        match ev {
            PgEvent::Client(op) => self.client_op(op).await,
            PgEvent::RepOp { from, op } => self.rep_op(from, op).await,
            PgEvent::RepOpReply(r) => self.rep_reply(r),
            PgEvent::Peering { from, msg } => {
                if msg.epoch() > self.epoch {
                    self.pending_peering.push((from, *msg));
                } else {
                    self.machine(Event::Message { from, msg: *msg }).await;
                }
            }
            PgEvent::AdvMap(me) => self.adv_map(me).await,
            PgEvent::ActMap => self.machine(Event::ActMap).await,
            PgEvent::Committed { tid } => self.local_committed(tid),
            PgEvent::Reserved(kind) => self.machine(Event::ReservationGranted { kind }).await,
            PgEvent::RetryReservation { interval, kind } => {
                if interval == self.interval() {
                    self.machine(Event::RetryReservation { kind }).await
                }
            }
            PgEvent::DelayedPush {
                interval,
                oid,
                version,
                to,
                backfill,
            } => {
                if interval == self.interval() {
                    self.push_object(&oid, version, &to, backfill).await
                }
            }
            PgEvent::Push { from, push } => self.on_push(from, push).await,
            PgEvent::PushReply(r) => self.on_push_reply(r).await,
            PgEvent::Pull { from, pull } => self.on_pull(from, pull).await,
            PgEvent::Scan { from, scan } => self.on_scan(from, scan).await,
            PgEvent::ScanReply(r) => self.on_scan_reply(r).await,
            PgEvent::BackfillRemove(r) => self.on_backfill_remove(r).await,
            PgEvent::LocalScan(scan) => {
                let from = self.whoami;
                self.machine(Event::ScanCompleted { from, scan }).await
            }
            PgEvent::ScrubRequest { from, req } => self.on_scrub_request(from, req).await,
            PgEvent::ScrubMapReply(r) => self.on_scrub_map_reply(r).await,
            PgEvent::ScrubMap { from, id, map } => self.on_scrub_map(from, id, map).await,
            PgEvent::ScrubStep => self.scrub_step().await,
            PgEvent::ReadCorrupt { op, version } => self.on_read_corrupt(op, version).await,
            PgEvent::PushFailed {
                interval,
                oid,
                version,
            } => {
                if interval == self.interval() {
                    self.machine(Event::PushFailed { oid, version }).await
                }
            }
            PgEvent::Stats(tx) => {
                let _ = tx.send(self.stat_entry());
            }
            PgEvent::Query(tx) => {
                let _ = tx.send(self.query_json());
            }
            PgEvent::Tick => {
                self.expire_waiting();
                self.scrub_tick().await;
            }
            PgEvent::Shutdown => self.stopped = true,
        }
    }

    fn interval(&self) -> Epoch {
        self.pg.info().history.same_interval_since
    }

    /// Feeds one event to the machine and carries out its actions; then
    /// reacts to a new interval or activation.
    async fn machine(&mut self, ev: Event) {
        self.machine_with(ev, |_, _| {}).await
    }

    /// `machine`, with `also` adding to the transaction of the actions
    /// once the machine has handled `ev` (what must be durable with them).
    async fn machine_with(&mut self, ev: Event, also: impl FnOnce(&mut Self, &mut Transaction)) {
        let interval = self.interval();
        // Reservations are decided by the store's room at that moment.
        let reserving = matches!(
            ev,
            Event::ReservationGranted { .. }
                | Event::Message {
                    msg: PeeringMessage::ReserveRequest { .. },
                    ..
                }
        );
        if reserving {
            self.pg.set_fullness(self.svc.fullness());
        }
        let acts = self.pg.handle(ev, now_us());
        let mut t = Transaction::new();
        also(self, &mut t);
        self.run_actions(acts, t, AfterCommit::Nothing).await;
        if self.interval() != interval {
            self.new_interval();
        }
        if !self.stopped && self.pg.is_primary() && self.pg.is_active() {
            self.retry_waiting().await;
        }
    }

    async fn adv_map(&mut self, me: Arc<MapEpoch>) {
        if me.map.epoch <= self.epoch {
            return;
        }
        let mapping = mapping_for(&me.map, self.pgid);
        self.epoch = me.map.epoch;
        self.map = me.map.clone();
        self.machine(Event::AdvMap {
            map: me.view.clone(),
            mapping,
        })
        .await;
        if self.stopped {
            return;
        }
        let mut t = Transaction::new();
        meta::add_epoch(&mut t, &self.coll, self.epoch);
        self.queue_txn(t, AfterCommit::Nothing).await;
        let ready: Vec<(OsdId, PeeringMessage)> = {
            let epoch = self.epoch;
            let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_peering)
                .into_iter()
                .partition(|(_, m)| m.epoch() <= epoch);
            self.pending_peering = later;
            now
        };
        for (from, msg) in ready {
            self.machine(Event::Message { from, msg }).await;
        }
        let epoch = self.epoch;
        let (now, later): (Vec<PgEvent>, Vec<PgEvent>) = std::mem::take(&mut self.pending_cluster)
            .into_iter()
            .partition(|ev| cluster_epoch(ev) <= epoch);
        self.pending_cluster = later;
        for ev in now {
            Box::pin(self.on_event(ev)).await;
        }
    }

    /// A new interval: writes in flight are abandoned (their log entries
    /// are settled by peering; the clients' ops are answered once the PG
    /// is active again, from the log), and projected object infos are
    /// dropped since peering may roll entries back.
    fn new_interval(&mut self) {
        self.scrub_new_interval();
        self.objects.clear();
        // Pushes held back for the old interval are dropped when due;
        // chunks of the old interval no longer arrive.
        self.next_push_at = None;
        self.receiving.clear();
        self.pushes_behind_writes.clear();
        let mut requeue: Vec<ClientOp> = Vec::new();
        for (_, w) in std::mem::take(&mut self.inflight) {
            requeue.extend(w.into_ops());
        }
        for (_, ops) in std::mem::take(&mut self.waiting_reads) {
            requeue.extend(ops);
        }
        for op in requeue.into_iter().rev() {
            self.waiting_active.push_front(op);
        }
        let epoch = self.epoch;
        self.pending_cluster.retain(|ev| cluster_epoch(ev) > epoch);
        self.svc.perf.set(L_OP_WIP, 0);
        if !self.pg.is_primary() {
            // No longer the primary: the ops go back to their clients,
            // which resend them to the new one. Kept here, an op would run
            // when this OSD leads again, long after its client was
            // answered by another primary and wrote newer versions (the
            // log may no longer hold its request id to catch the repeat):
            // the simulator saw an old version written over a newer one.
            for op in self.drain_all_ops() {
                self.answer_error(
                    op,
                    -errno::EAGAIN,
                    epoch,
                    "this OSD is no longer the PG's primary",
                );
            }
        }
    }

    /// Re-runs queued client ops once the PG is active.
    async fn retry_waiting(&mut self) {
        let mut ops: Vec<ClientOp> = self.waiting_active.drain(..).collect();
        for (_, q) in std::mem::take(&mut self.waiting_object) {
            ops.extend(q);
        }
        if ops.is_empty() {
            return;
        }
        ops.sort_by_key(|o| o.received);
        for op in ops {
            self.client_op(op).await;
        }
    }

    fn drain_all_ops(&mut self) -> Vec<ClientOp> {
        let mut ops: Vec<ClientOp> = self.waiting_active.drain(..).collect();
        for (_, q) in std::mem::take(&mut self.waiting_object) {
            ops.extend(q);
        }
        for (_, q) in std::mem::take(&mut self.waiting_reads) {
            ops.extend(q);
        }
        for (_, w) in std::mem::take(&mut self.inflight) {
            ops.extend(w.into_ops());
        }
        ops
    }

    /// Answers ops that waited longer than `osd_op_queue_timeout`.
    fn expire_waiting(&mut self) {
        let limit = self.svc.opts.osd_op_queue_timeout;
        let epoch = self.epoch;
        let mut expired = Vec::new();
        let mut keep = VecDeque::new();
        for op in self.waiting_active.drain(..) {
            if kalmar_common::clock::since(op.received) > limit {
                expired.push(op);
            } else {
                keep.push_back(op);
            }
        }
        self.waiting_active = keep;
        for q in self.waiting_object.values_mut() {
            let (old, young): (VecDeque<ClientOp>, VecDeque<ClientOp>) = q
                .drain(..)
                .partition(|op| kalmar_common::clock::since(op.received) > limit);
            expired.extend(old);
            *q = young;
        }
        self.waiting_object.retain(|_, q| !q.is_empty());
        for op in expired {
            self.answer_error(
                op,
                -errno::ETIMEDOUT,
                epoch,
                "the PG did not become able to serve the op within osd_op_queue_timeout",
            );
        }
    }

    fn queued_ops(&self) -> usize {
        self.waiting_active.len()
            + self
                .waiting_object
                .values()
                .map(VecDeque::len)
                .sum::<usize>()
            + self.waiting_reads.values().map(Vec::len).sum::<usize>()
    }

    /// Answers an op with an error.
    fn answer_error(&self, op: ClientOp, result: i32, retry_epoch: Epoch, msg: &str) {
        let mut r = OsdOpReply::error(op.req.tid, result, self.epoch, msg);
        if result == -errno::EAGAIN {
            r.retry_epoch = retry_epoch;
        }
        op.track.mark("done");
        reply(&op.reply_to, r.to_message());
    }

    /// The PG's line for `pg dump` (primary only).
    fn stat_entry(&mut self) -> Option<PgStatEntry> {
        if !self.pg.is_primary() {
            return None;
        }
        let r = self.pg.stats_report();
        self.stats_seq += 1;
        Some(PgStatEntry {
            pgid: self.pgid,
            state: r.state.to_string(),
            reported_epoch: self.epoch,
            reported_seq: self.stats_seq,
            version_epoch: r.last_update.epoch,
            version: r.last_update.version,
            up: r.up,
            up_primary: r.up_primary,
            acting: r.acting,
            acting_primary: r.acting_primary,
            num_objects: r.num_objects,
            num_bytes: r.num_bytes,
            num_object_copies: r.num_object_copies,
            num_objects_degraded: r.degraded,
            num_objects_misplaced: r.misplaced,
            num_objects_missing_on_primary: r.missing_on_primary,
            num_objects_unfound: r.unfound,
            num_scrub_errors: r.num_scrub_errors,
            num_shallow_scrub_errors: r.num_shallow_scrub_errors,
            num_deep_scrub_errors: r.num_deep_scrub_errors,
            log_size: r.log_size,
            num_read: self.io.num_read,
            num_read_kb: self.io.num_read_kb,
            num_write: self.io.num_write,
            num_write_kb: self.io.num_write_kb,
            num_objects_recovered: self.io.num_objects_recovered,
            num_bytes_recovered: self.io.num_bytes_recovered,
            state_stamp_us: r.state_stamp_us,
            last_scrub_stamp_us: r.last_scrub_stamp_us,
            last_deep_scrub_stamp_us: r.last_deep_scrub_stamp_us,
            last_epoch_clean: r.last_epoch_clean,
        })
    }
}
