//! Client ops on the primary (admission, dup detection, the write path)
//! and replicated writes on the other members.
//!
//! A write: plan it against the object's projected info, take the next log
//! version, append the log entry, and apply data + object info + log +
//! PG info in one local transaction; send the same store ops and log entry
//! to every other member; answer the client once the local transaction and
//! every member's are durable.

use std::time::Instant;

use bytes::Bytes;
use kalmar_common::encoding::Decode;
use kalmar_maps::pool::POOL_FLAG_FULL_QUOTA;
use kalmar_maps::time::now_us;
use kalmar_maps::OsdId;
use kalmar_msgr::SessionHandle;
use kalmar_objectstore::{ObjectId, StoreError, Transaction};
use kalmar_peering::{Event, Eversion, ReqId, State, WriteReadiness};
use kalmar_proto::client::{errno, OsdOpReply};
use kalmar_proto::osd::{RepOp, RepOpReply};
use kalmar_proto::Payload;

use super::actions::AfterCommit;
use super::plan::{plan_write, OpError, WriteLimits};
use super::{ClientOp, PgActor};
use crate::names::{check_object_name, ObjectInfo, OI_ATTR};
use crate::perf::*;
use crate::service::{apply_store_ops, data_bytes, reply};
use crate::shard::store::FollowUp;
use crate::wire::RepMeta;

/// The members of a write's acting set, inline up to a size-5 pool.
type Members = smallvec::SmallVec<[OsdId; 5]>;

/// A write waiting for its commits.
pub(super) struct InFlightWrite {
    version: Eversion,
    oid: String,
    /// OSDs (this one included) that have not committed yet.
    waiting: Members,
    op: ClientOp,
    /// Resends of the same request that arrived meanwhile.
    dups: Vec<ClientOp>,
    started: Instant,
    in_bytes: u64,
    /// 0, or the first negative errno a member reported.
    result: i32,
}

impl InFlightWrite {
    pub(super) fn oid(&self) -> &str {
        &self.oid
    }

    pub(super) fn into_ops(self) -> Vec<ClientOp> {
        let mut v = vec![self.op];
        v.extend(self.dups);
        v
    }
}

impl PgActor {
    fn limits(&self) -> WriteLimits {
        let o = &self.svc.opts;
        WriteLimits {
            max_write_size: o.osd_max_write_size,
            max_object_size: o.osd_max_object_size,
            max_attr_name_len: o.osd_max_attr_name_len,
            max_attr_size: o.osd_max_attr_size,
        }
    }

    /// Why a write growing this PG's pool is refused: the mon flagged the
    /// pool `full_quota` (its usage reached its quota).
    fn quota_full(&self) -> Option<String> {
        let pool = self.map.pool(self.pgid.pool).ok()?;
        pool.has_flag(POOL_FLAG_FULL_QUOTA).then(|| {
            format!(
                "pool '{}' is full (reached its quota: max_objects {}, max_bytes {})",
                pool.name, pool.quota_max_objects, pool.quota_max_bytes
            )
        })
    }

    /// Queues an op until the PG is active (bounded).
    fn wait_active(&mut self, op: ClientOp) {
        if self.queued_ops() >= self.svc.opts.osd_pg_max_queued_ops {
            let e = self.epoch;
            self.answer_error(
                op,
                -errno::EAGAIN,
                e,
                "too many ops wait in this PG (osd_pg_max_queued_ops)",
            );
            return;
        }
        op.track.mark("waiting_for_active");
        self.waiting_active.push_back(op);
    }

    /// Entry of every client op into the PG.
    pub(super) async fn client_op(&mut self, op: ClientOp) {
        op.track.mark("reached_pg");
        if !self.pg.is_primary() {
            // The client's map and ours disagree: it resends once it has
            // our epoch (or a newer one, if ours is the older).
            let retry = if op.req.map_epoch >= self.epoch {
                self.epoch + 1
            } else {
                self.epoch
            };
            self.answer_error(
                op,
                -errno::EAGAIN,
                retry,
                "this OSD is not the PG's primary in its map",
            );
            return;
        }
        if let Some(cmd) = op.req.ops.iter().find(|o| o.is_pg_command()).cloned() {
            return self.pg_command(op, cmd).await;
        }
        let is_ls = op
            .req
            .ops
            .iter()
            .any(|o| matches!(o, kalmar_proto::client::OsdOp::PgLs { .. }));
        // The store's name of the object, checked once and kept for the
        // write (a listing names no object).
        let mut obj = None;
        if !is_ls {
            match check_object_name(&op.req.oid, self.svc.opts.osd_max_object_name_len) {
                Ok(o) => obj = Some(o),
                Err(msg) => {
                    let e = self.epoch;
                    let code = if op.req.oid.len() > self.svc.opts.osd_max_object_name_len {
                        errno::ENAMETOOLONG
                    } else {
                        errno::EINVAL
                    };
                    self.answer_error(op, -code, e, &msg);
                    return;
                }
            }
        }
        let oid = op.req.oid.clone();
        let readiness = if is_ls {
            if self.pg.is_active() {
                WriteReadiness::Ready
            } else {
                WriteReadiness::NotActive
            }
        } else {
            self.pg.readiness(&oid)
        };
        match readiness {
            WriteReadiness::Ready => {}
            WriteReadiness::NotActive => return self.wait_active(op),
            WriteReadiness::NeedsRecovery(o) => {
                op.track.mark("waiting_for_degraded_object");
                self.waiting_object
                    .entry(o.clone())
                    .or_default()
                    .push_back(op);
                let acts = self.pg.handle(Event::ClientWaitsFor { oid: o }, now_us());
                self.run_actions(acts, Transaction::new(), AfterCommit::Nothing)
                    .await;
                return;
            }
            WriteReadiness::InFlight(o) => {
                op.track.mark("waiting_for_recovery_push");
                self.waiting_object.entry(o).or_default().push_back(op);
                return;
            }
        }
        if op.req.is_write() && self.scrub_blocks(&oid) {
            // The object's scrub chunk is being compared: wait for it.
            op.track.mark("waiting_for_scrub");
            self.svc.scrub_perf.inc(L_SCRUB_WRITES_DELAYED, 1);
            self.waiting_object.entry(oid).or_default().push_back(op);
        } else if op.req.is_write() {
            self.write(op, obj).await;
        } else if self.objects.inflight(&oid) > 0 {
            // Reads see committed state: wait for this object's writes.
            op.track.mark("waiting_for_ondisk_writes");
            self.waiting_reads.entry(oid).or_default().push(op);
        } else {
            self.read(op);
        }
    }

    /// The object's current info: projected if cached, else from the store
    /// (inline, like the engine's own metadata lookups: the engine's
    /// layers, the read cache, then the database).
    fn object_info(&mut self, oid: &str, o: &ObjectId) -> Result<Option<ObjectInfo>, StoreError> {
        if let Some(i) = self.objects.get(oid) {
            return Ok(i);
        }
        let info =
            match self.svc.store.getattrs(&self.coll, o) {
                Ok(attrs) => match attrs.iter().find(|(k, _)| k == OI_ATTR) {
                    Some((_, v)) => Some(ObjectInfo::from_bytes(v).map_err(|e| {
                        StoreError::CorruptMetadata {
                            what: format!("object info of {oid}"),
                            detail: e.to_string(),
                        }
                    })?),
                    // Written behind the OSD's back (offline tool): its size is
                    // all we know.
                    None => {
                        let size_bytes = self.svc.store.size(&self.coll, o)?;
                        Some(ObjectInfo {
                            size_bytes,
                            ..Default::default()
                        })
                    }
                },
                Err(StoreError::ObjectNotFound { .. }) => None,
                Err(e) => return Err(e),
            };
        self.objects.fill(oid, info);
        Ok(info)
    }

    /// `obj`: the object's store name if the caller already checked it.
    async fn write(&mut self, op: ClientOp, obj: Option<ObjectId>) {
        op.track.mark("started");
        let started = Instant::now();
        let reqid = ReqId::new(op.req.client, op.req.nonce, op.req.tid);
        if let Some(done) = self.pg.find_reqid(&reqid) {
            // A resend: answered from the log, never applied twice.
            if let Some(w) = self
                .inflight
                .values_mut()
                .find(|w| w.version == done.version)
            {
                op.track.mark("waiting_for_dup_commit");
                w.dups.push(op);
                return;
            }
            self.answer_write(op, done.version, done.return_code, started, 0);
            return;
        }
        let oid = op.req.oid.clone();
        let Some(o) = obj.or_else(|| ObjectId::new(&oid).ok()) else {
            let e = self.epoch;
            return self.answer_error(op, -errno::EINVAL, e, "invalid object name");
        };
        let current = match self.object_info(&oid, &o) {
            Ok(c) => c,
            Err(e) => {
                let ep = self.epoch;
                return self.answer_error(
                    op,
                    -errno::EIO,
                    ep,
                    &format!("reading object info: {e}"),
                );
            }
        };
        let now = now_us();
        let mut plan = match plan_write(current, &op.req.ops, &self.limits(), now) {
            Ok(p) => p,
            Err(OpError { result, msg }) => {
                let e = self.epoch;
                return self.answer_error(op, result, e, &msg);
            }
        };
        if plan.grows_pool() {
            if let Some(why) = self.quota_full() {
                let e = self.epoch;
                return self.answer_error(op, -errno::EDQUOT, e, &why);
            }
        }
        let adds = data_bytes(&plan.store_ops);
        if adds > 0 {
            if let Some(why) = self.svc.full_for(adds) {
                let e = self.epoch;
                return self.answer_error(op, -errno::ENOSPC, e, &why);
            }
        }
        // Room in the store before the PG changes: from here on nothing
        // refuses the write, and a failure of its transaction stops the OSD.
        let permit = match self.store.admit().await {
            Ok(p) => p,
            Err(e) => {
                let ep = self.epoch + 1;
                return self.answer_error(
                    op,
                    -errno::EAGAIN,
                    ep,
                    &format!("the OSD is stopping: {e}"),
                );
            }
        };
        let prior = current.map_or(Eversion::ZERO, |c| c.version);
        let entry = self
            .pg
            .new_log_entry(plan.log_op, &oid, prior, reqid, now, 0);
        let version = entry.version;
        let new_info = plan.finish(version, entry.user_version);
        let mut stats = self.pg.info().stats;
        stats.num_objects = stats.num_objects.saturating_add_signed(plan.delta_objects);
        stats.num_bytes = stats.num_bytes.saturating_add_signed(plan.delta_bytes);
        self.pg.set_object_stats(stats);
        let trim_to = self.pg.trim_to();
        let targets = self.pg.replication_targets(&oid);
        // The replicas' copy of the entry, encoded before the entry moves
        // into the log.
        let pg_meta = (!targets.is_empty()).then(|| {
            Bytes::from(RepMeta::encode_parts(
                std::slice::from_ref(&entry),
                trim_to,
                &stats,
            ))
        });
        let pgw = match self.pg.append_log(vec![entry], trim_to) {
            Ok(w) => w,
            Err(e) => {
                // The PG's state is no longer what its log says.
                self.svc
                    .fatal(format!("pg {}: log append refused: {e}", self.pgid));
                return;
            }
        };
        // What is queued is what the PG now says: the entry heads its log.
        assert_eq!(
            self.pg.info().last_update,
            version,
            "pg {}: the queued entry is not the log's head",
            self.pgid
        );
        debug_assert!(version > prior, "an entry newer than the object");
        let tid = self.next_tid;
        self.next_tid += 1;
        // The replicas' messages are encoded first, so the store ops then
        // move into the local transaction instead of being copied.
        let mut store_ops = std::mem::take(&mut plan.store_ops);
        let repops = pg_meta.map(|pg_meta| {
            // Every member that takes the data gets the same message: built
            // and encoded once, its segments shared between the sends.
            let mut repop = RepOp {
                pgid: self.pgid,
                from: self.whoami,
                map_epoch: self.epoch,
                interval: self.interval(),
                tid,
                oid: oid.clone(),
                ops: std::mem::take(&mut store_ops),
                pg_meta,
            };
            let with_data = repop.to_message();
            store_ops = std::mem::take(&mut repop.ops);
            // Backfill targets past the object get the log entry only.
            let without_data = targets
                .iter()
                .any(|t| !t.with_data)
                .then(|| repop.to_message());
            (with_data, without_data)
        });
        let mut t = Transaction::new();
        apply_store_ops(&mut t, &self.coll, &o, store_ops);
        self.meta.add_write(&mut t, &pgw, &self.pg, self.epoch);
        self.objects.start_write(&oid, new_info);
        self.svc.perf.tinc(L_OP_W_PREPARE_LAT, started.elapsed());
        self.svc.perf.tinc(L_OP_PREPARE_LAT, started.elapsed());
        let mut waiting: Members = targets.iter().map(|t| t.osd).collect();
        waiting.push(self.whoami);
        // The replicas' messages go out before the local transaction is
        // submitted (as Ceph's primary does): the shard runs its tasks in
        // the order they were woken, so submitting first would have the
        // store prepare and submit this write (and its batch) before the
        // connections' writers send it, delaying the longer of the two
        // paths a write waits for. Nothing here can fail after the sends:
        // a transaction failing after admission stops the OSD.
        if let Some((with_data, without_data)) = repops {
            for target in &targets {
                let msg = match (&without_data, target.with_data) {
                    (Some(m), false) => m.clone(),
                    _ => with_data.clone(),
                };
                self.svc.send_osd(target.osd, msg).await;
            }
            op.track.mark("sub_op_sent");
        }
        self.store.submit(
            t,
            permit,
            FollowUp {
                tx: self.tx.clone(),
                after: AfterCommit::Tid(tid),
            },
        );
        self.svc.perf.inc(L_OP_WIP, 1);
        let in_bytes = op.req.in_bytes();
        self.inflight.insert(
            tid,
            InFlightWrite {
                version,
                oid,
                waiting,
                op,
                dups: Vec::new(),
                started,
                in_bytes,
                result: 0,
            },
        );
    }

    pub(super) fn local_committed(&mut self, tid: u64) {
        if let Some(w) = self.inflight.get_mut(&tid) {
            w.op.track.mark("op_commit");
        }
        self.acked(tid, self.whoami);
    }

    pub(super) fn rep_reply(&mut self, r: RepOpReply) {
        if r.interval != self.interval() {
            return;
        }
        if let Some(w) = self.inflight.get_mut(&r.tid) {
            w.op.track.mark("sub_op_commit_rec");
            if r.result < 0 {
                tracing::error!(pgid = %self.pgid, osd = r.from, result = r.result, "replica failed a write");
                if w.result == 0 {
                    w.result = r.result;
                }
            }
        }
        self.acked(r.tid, r.from);
    }

    /// One member committed write `tid`; when all did, the write is done.
    fn acked(&mut self, tid: u64, osd: OsdId) {
        let done = match self.inflight.get_mut(&tid) {
            Some(w) => {
                w.waiting.retain(|o| *o != osd);
                w.waiting.is_empty()
            }
            None => return,
        };
        if !done {
            return;
        }
        let Some(w) = self.inflight.remove(&tid) else {
            return;
        };
        self.svc.perf.dec(L_OP_WIP, 1);
        let all_clear = self.objects.finish_write(&w.oid);
        let result = w.result;
        if result == 0 {
            self.pg.on_write_committed(w.version);
        } else {
            // Members may differ on this object now: its next write starts
            // from the store, not from the projection.
            self.objects.forget(&w.oid);
        }
        self.io.num_write += 1;
        self.io.num_write_kb += w.in_bytes.div_ceil(1024);
        let perf = &self.svc.perf;
        let kind = write_counters(&w.op.req.ops);
        perf.inc(kind.in_bytes, w.in_bytes);
        perf.inc(L_OP_IN_BYTES, w.in_bytes);
        perf.tinc(kind.process_lat, w.started.elapsed());
        perf.tinc(L_OP_PROCESS_LAT, w.started.elapsed());
        let started = w.started;
        for op in std::iter::once(w.op).chain(w.dups) {
            self.answer_write(op, w.version, result, started, 0);
        }
        if all_clear {
            if let Some(reads) = self.waiting_reads.remove(&w.oid) {
                for op in reads {
                    self.read(op);
                }
            }
            self.release_held_pushes(&w.oid);
        }
        if self.scrub_waits_for_writes() {
            let _ = self.tx.send(super::PgEvent::ScrubStep);
        }
    }

    fn answer_write(
        &self,
        op: ClientOp,
        version: Eversion,
        result: i32,
        _started: Instant,
        _out: u64,
    ) {
        let lat = op.received.elapsed();
        let perf = &self.svc.perf;
        let kind = write_counters(&op.req.ops);
        perf.inc(L_OP, 1);
        perf.inc(kind.ops, 1);
        perf.tinc(L_OP_LAT, lat);
        perf.tinc(kind.lat, lat);
        let r = OsdOpReply {
            tid: op.req.tid,
            result,
            version_epoch: version.epoch,
            version: version.version,
            map_epoch: self.epoch,
            outputs: op.req.ops.iter().map(|_| Default::default()).collect(),
            error: match result {
                0 => String::new(),
                r if r == -errno::ENOSPC => "a member of the acting set is full".into(),
                _ => "a member of the acting set failed the write".into(),
            },
            ..Default::default()
        };
        op.track.mark("commit_sent");
        reply(&op.reply_to, r.to_message());
    }

    /// A replicated write from the primary.
    pub(super) async fn rep_op(&mut self, from: SessionHandle, mut op: RepOp) {
        if op.map_epoch > self.epoch {
            self.pending_cluster
                .push(super::PgEvent::RepOp { from, op });
            return;
        }
        if op.interval != self.interval() || !matches!(self.pg.state(), State::ReplicaActive(_)) {
            tracing::debug!(pgid = %self.pgid, interval = op.interval, "replicated write of another interval dropped");
            return;
        }
        let started = Instant::now();
        let fail = |result: i32| RepOpReply {
            pgid: op.pgid,
            from: self.whoami,
            interval: op.interval,
            tid: op.tid,
            result,
            ..Default::default()
        };
        let adds = data_bytes(&op.ops);
        if adds > 0 {
            if let Some(why) = self.svc.full_for(adds) {
                tracing::warn!(pgid = %self.pgid, "refusing a replicated write: {why}");
                reply(&from, fail(-errno::ENOSPC).to_message());
                return;
            }
        }
        let meta = match RepMeta::from_bytes(&op.pg_meta) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(pgid = %self.pgid, "bad replicated write metadata: {e}");
                reply(&from, fail(-errno::EINVAL).to_message());
                return;
            }
        };
        let obj = if op.ops.is_empty() {
            None
        } else {
            match ObjectId::new(&op.oid) {
                Ok(o) => Some(o),
                Err(e) => {
                    reply(&from, fail(-errno::EINVAL).to_message());
                    tracing::error!(pgid = %self.pgid, "bad object name in a replicated write: {e}");
                    return;
                }
            }
        };
        // Room in the store before the PG changes (see `write`).
        let Ok(permit) = self.store.admit().await else {
            return;
        };
        self.pg.set_object_stats(meta.stats);
        let pgw = match self.pg.append_log(meta.entries, meta.trim_to) {
            Ok(w) => w,
            Err(e) => {
                self.svc.fatal(format!(
                    "pg {}: replicated log entry refused: {e}",
                    self.pgid
                ));
                return;
            }
        };
        let mut t = Transaction::new();
        if let Some(o) = &obj {
            apply_store_ops(&mut t, &self.coll, o, std::mem::take(&mut op.ops));
        }
        self.meta.add_write(&mut t, &pgw, &self.pg, self.epoch);
        let bytes = adds;
        let perf = &self.svc.perf;
        perf.inc(L_SUBOP, 1);
        perf.inc(L_SUBOP_W, 1);
        perf.inc(L_SUBOP_IN_BYTES, bytes);
        perf.inc(L_SUBOP_W_IN_BYTES, bytes);
        let last = self.pg.info().last_update;
        let ok = RepOpReply {
            pgid: op.pgid,
            from: self.whoami,
            interval: op.interval,
            tid: op.tid,
            result: 0,
            committed_epoch: last.epoch,
            committed_version: last.version,
        };
        let lat = Some((self.svc.perf.clone(), started));
        self.store.submit(
            t,
            permit,
            FollowUp {
                tx: self.tx.clone(),
                after: AfterCommit::RepReply(from, ok, lat),
            },
        );
    }
}
