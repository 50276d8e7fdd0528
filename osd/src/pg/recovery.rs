//! Recovery and backfill I/O the state machine asks for, on the receiving
//! side and for backfill: pushes held back by `osd_recovery_sleep`,
//! writing pushed objects and pull replies (chunk by chunk; see
//! [`super::push`] for the sending side), scanning collections in object
//! order, and removing extras from a backfill target.
//!
//! An object's first chunk replaces the local copy; its last chunk and the
//! PG metadata its machine updates go in one transaction, so an object is
//! recovered only once it is whole, and until then it stays missing (never
//! read, never a source).

use std::time::Instant;

use kalmar_common::encoding::Decode;
use kalmar_maps::OsdId;
use kalmar_msgr::SessionHandle;
use kalmar_objectstore::{CollectionId, ObjectId, ObjectStore, StoreError, Transaction};
use kalmar_peering::{Event, Eversion, ObjectBound, ScanResult};
use kalmar_proto::client::errno;
use kalmar_proto::osd::{PgBackfillRemove, PgPush, PgPushReply, PgScan, PgScanReply};
use kalmar_proto::Payload;

use super::actions::AfterCommit;
use super::{PgActor, PgEvent};
use crate::names::{is_internal, pgmeta_oid, ObjectInfo, OI_ATTR};
use crate::perf::*;
use crate::service::reply;
use crate::wire::{decode_scan, encode_scan};

/// Names listed per store call while scanning.
const SCAN_PAGE: usize = 256;
/// The next offset of an object whose chunk the store refused: no later
/// chunk matches it, so the object is never completed (nor acknowledged).
const REFUSED_CHUNK: u64 = u64::MAX;

/// Lists the collection in object order after `begin`, with versions.
async fn scan(
    store: &ObjectStore,
    coll: &CollectionId,
    begin: &ObjectBound,
    max: usize,
) -> Result<ScanResult, StoreError> {
    let mut out = ScanResult {
        begin: begin.clone(),
        end: ObjectBound::Max,
        objects: Default::default(),
    };
    let mut start = match begin {
        ObjectBound::Min => None,
        ObjectBound::Object(name) => ObjectId::new(name).ok(),
        ObjectBound::Max => return Ok(out),
    };
    loop {
        let (page, next) = store
            .collection_list_async(coll, start.clone(), SCAN_PAGE)
            .await?;
        for n in page {
            if is_internal(n.as_bytes()) {
                continue;
            }
            let name = String::from_utf8_lossy(n.as_bytes()).into_owned();
            if begin.covers(&name) {
                continue;
            }
            if out.objects.len() == max {
                let last = out.objects.keys().next_back().cloned().unwrap_or_default();
                out.end = ObjectBound::Object(last);
                return Ok(out);
            }
            let version = match store.getattrs_async(coll, &n).await {
                Ok(attrs) => attrs
                    .iter()
                    .find(|(k, _)| k == OI_ATTR)
                    .and_then(|(_, v)| ObjectInfo::from_bytes(v).ok())
                    .map_or(Eversion::ZERO, |oi| oi.version),
                Err(StoreError::ObjectNotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            out.objects.insert(name, version);
        }
        match next {
            Some(n) => start = Some(n),
            None => return Ok(out),
        }
    }
}

impl PgActor {
    /// The last write of `oid` in flight finished: its held pushes go.
    pub(super) fn release_held_pushes(&mut self, oid: &str) {
        for push in self.pushes_behind_writes.remove(oid).unwrap_or_default() {
            let _ = self.tx.send(push);
        }
    }

    /// Pushes now, or, under `osd_recovery_sleep`, once the previous push
    /// of this PG is a sleep old. The object stays in flight in the
    /// machine meanwhile (writes to it wait), so it is read when it leaves.
    pub(super) async fn schedule_push(
        &mut self,
        oid: String,
        version: Eversion,
        to: Vec<OsdId>,
        backfill: bool,
    ) {
        let sleep = self.svc.opts.osd_recovery_sleep;
        if sleep.is_zero() {
            return self.push_object(&oid, version, &to, backfill).await;
        }
        let now = tokio::time::Instant::now();
        let due = self.next_push_at.map_or(now, |t| t.max(now));
        self.next_push_at = Some(due + sleep);
        let ev = PgEvent::DelayedPush {
            interval: self.interval(),
            oid,
            version,
            to,
            backfill,
        };
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let _ = tx.send(ev);
        });
    }

    /// Writes one pushed chunk into `t`: the first replaces any local
    /// copy, the last sets the xattrs and omap.
    async fn add_pushed_chunk(&self, t: &mut Transaction, push: &PgPush) -> bool {
        let Ok(o) = ObjectId::new(&push.oid) else {
            return false;
        };
        if push.data_offset > 0 {
            t.write(&self.coll, &o, push.data_offset, push.data.clone());
            self.add_pushed_meta(t, &o, push);
            return true;
        }
        match self.svc.store.stat_async(&self.coll, &o).await {
            Ok(_) => {
                t.remove(&self.coll, &o);
            }
            Err(StoreError::ObjectNotFound { .. }) => {}
            Err(e) => {
                self.svc.fatal(format!(
                    "pg {}: stat of {} failed: {e}",
                    self.pgid, push.oid
                ));
                return false;
            }
        }
        if push.exists {
            t.touch(&self.coll, &o);
            if !push.data.is_empty() {
                t.write(&self.coll, &o, 0, push.data.clone());
            }
            self.add_pushed_meta(t, &o, push);
        }
        true
    }

    fn add_pushed_meta(&self, t: &mut Transaction, o: &ObjectId, push: &PgPush) {
        if !push.attrs.is_empty() {
            t.setattrs(&self.coll, o, push.attrs.clone());
        }
        if !push.omap.is_empty() {
            t.omap_setkeys(&self.coll, o, push.omap.clone());
        }
        if let Some(h) = &push.omap_header {
            t.omap_setheader(&self.coll, o, h.clone());
        }
    }

    /// A push (recovery/backfill target) or a pull reply (primary).
    pub(super) async fn on_push(&mut self, from: SessionHandle, push: Box<PgPush>) {
        if push.map_epoch > self.epoch {
            self.pending_cluster.push(PgEvent::Push { from, push });
            return;
        }
        if push.interval != self.interval() {
            return;
        }
        let version = Eversion::new(push.version_epoch, push.version);
        if push.is_pull_reply && push.result < 0 {
            let ev = Event::PullFailed {
                from: push.from,
                oid: push.oid,
            };
            return self.machine(ev).await;
        }
        // Chunks continue where the previous one ended; a first chunk
        // (re)starts the object.
        let expected = self.receiving.get(&push.oid).copied();
        if push.data_offset > 0 && expected != Some(push.data_offset) {
            tracing::warn!(pgid = %self.pgid, oid = %push.oid, offset = push.data_offset,
                ?expected, "push chunk out of sequence dropped");
            self.receiving.remove(&push.oid);
            return;
        }
        // A store past its failsafe ratio takes no recovered data: the
        // primary hears so and stops (toofull), never waits for the rest.
        if push.exists && !push.data.is_empty() {
            if let Some(why) = self.svc.full_for(push.data.len() as u64) {
                return self.refuse_push_full(&from, &push, &why).await;
            }
        }
        let started = Instant::now();
        let mut t = Transaction::new();
        if !self.add_pushed_chunk(&mut t, &push).await {
            return;
        }
        self.objects.forget(&push.oid);
        let perf = &self.svc.perf;
        perf.inc(L_SUBOP_PUSH, 1);
        perf.inc(L_SUBOP_PUSH_IN_BYTES, push.data.len() as u64);
        if push.is_pull_reply {
            // The primary recovers its own copy from a peer.
            if push.data_offset == 0 {
                self.io.num_objects_recovered += 1;
            }
            self.io.num_bytes_recovered += push.data.len() as u64;
        }
        if !push.complete {
            // Durable before the next chunk is taken: a refused chunk must
            // keep the object from being completed with a hole.
            let next = match self.store.commit(t).await {
                Ok(()) => push.data_offset + push.data.len() as u64,
                Err(StoreError::NoSpace { .. }) => {
                    let why = format!("osd.{} store has no space for the chunk", self.whoami);
                    return self.refuse_push_full(&from, &push, &why).await;
                }
                Err(e) => {
                    if e.is_fatal() {
                        self.svc
                            .fatal(format!("pg {}: push chunk failed: {e}", self.pgid));
                    }
                    tracing::error!(pgid = %self.pgid, oid = %push.oid, "push chunk refused: {e}");
                    REFUSED_CHUNK
                }
            };
            self.receiving.insert(push.oid.clone(), next);
            return;
        }
        self.receiving.remove(&push.oid);
        let interval_before = self.interval();
        let acts = self.pg.handle(
            Event::ObjectRecovered {
                oid: push.oid.clone(),
                version,
            },
            kalmar_maps::time::now_us(),
        );
        let after = if push.is_pull_reply {
            AfterCommit::Nothing
        } else {
            AfterCommit::Reply(from, self.push_reply(&push, 0).to_message())
        };
        self.run_actions(acts, t, after).await;
        self.svc.perf.tinc(L_SUBOP_LAT, started.elapsed());
        if self.interval() != interval_before {
            self.new_interval();
        }
        if self.pg.is_primary() && self.pg.is_active() {
            self.retry_waiting().await;
        }
    }

    /// The push of an object is refused for lack of space (ENOSPC): its
    /// later chunks are dropped, and the primary (the sender of a push,
    /// or this OSD itself for a pull reply) stops the work and retries.
    async fn refuse_push_full(&mut self, from: &SessionHandle, push: &PgPush, why: &str) {
        tracing::warn!(pgid = %self.pgid, oid = %push.oid, "recovered object refused: {why}");
        self.receiving.insert(push.oid.clone(), REFUSED_CHUNK);
        if push.is_pull_reply {
            let ev = Event::PushRefusedFull {
                peer: self.whoami,
                oid: push.oid.clone(),
            };
            return self.machine(ev).await;
        }
        reply(from, self.push_reply(push, -errno::ENOSPC).to_message());
    }

    /// This OSD's answer to `push`: 0 once committed, or an error.
    fn push_reply(&self, push: &PgPush, result: i32) -> PgPushReply {
        PgPushReply {
            pgid: self.pgid,
            from: self.whoami,
            interval: push.interval,
            oid: push.oid.clone(),
            version_epoch: push.version_epoch,
            version: push.version,
            result,
        }
    }

    /// Primary: a member committed a push (or refused it for space).
    pub(super) async fn on_push_reply(&mut self, r: PgPushReply) {
        if r.interval != self.interval() {
            return;
        }
        if r.result == -errno::ENOSPC {
            tracing::warn!(pgid = %self.pgid, osd = r.from, oid = %r.oid, "push refused: target full");
            let ev = Event::PushRefusedFull {
                peer: r.from,
                oid: r.oid,
            };
            return self.machine(ev).await;
        }
        let ev = Event::PushCompleted {
            peer: r.from,
            oid: r.oid,
            version: Eversion::new(r.version_epoch, r.version),
        };
        self.machine(ev).await;
    }

    /// Backfill target: list our objects for the primary.
    pub(super) async fn on_scan(&mut self, from: SessionHandle, s: PgScan) {
        if s.map_epoch > self.epoch {
            self.pending_cluster.push(PgEvent::Scan { from, scan: s });
            return;
        }
        if s.interval != self.interval() {
            return;
        }
        let Ok(begin) = ObjectBound::from_bytes(&s.begin.0) else {
            tracing::warn!(pgid = %self.pgid, "scan request with a bad bound");
            return;
        };
        match scan(&self.svc.store, &self.coll, &begin, s.max as usize).await {
            Ok(result) => {
                let r = PgScanReply {
                    pgid: self.pgid,
                    from: self.whoami,
                    interval: s.interval,
                    scan: kalmar_common::encoding::Blob(encode_scan(&result)),
                };
                reply(&from, r.to_message());
            }
            Err(e) => self
                .svc
                .fatal(format!("pg {}: scan failed: {e}", self.pgid)),
        }
    }

    pub(super) async fn on_scan_reply(&mut self, r: PgScanReply) {
        if r.interval != self.interval() {
            return;
        }
        match decode_scan(&r.scan.0) {
            Ok(scan) => {
                self.machine(Event::ScanCompleted { from: r.from, scan })
                    .await
            }
            Err(e) => tracing::warn!(pgid = %self.pgid, osd = r.from, "bad scan reply: {e}"),
        }
    }

    /// Our own scan: everything queued before is made durable first, so the
    /// listing matches the log head the machine noted.
    pub(super) async fn scan_local(&mut self, begin: ObjectBound, max: usize) {
        let mut barrier = Transaction::new();
        barrier.touch(&self.coll, &pgmeta_oid());
        if let Err(e) = self.store.commit(barrier).await {
            self.svc
                .fatal(format!("pg {}: barrier failed: {e}", self.pgid));
            return;
        }
        match scan(&self.svc.store, &self.coll, &begin, max).await {
            Ok(result) => {
                let _ = self.tx.send(PgEvent::LocalScan(result));
            }
            Err(e) => self
                .svc
                .fatal(format!("pg {}: local scan failed: {e}", self.pgid)),
        }
    }

    /// Backfill target: drop an object the primary does not have.
    pub(super) async fn on_backfill_remove(&mut self, r: PgBackfillRemove) {
        if r.map_epoch > self.epoch {
            self.pending_cluster.push(PgEvent::BackfillRemove(r));
            return;
        }
        if r.interval != self.interval() {
            return;
        }
        let Ok(o) = ObjectId::new(&r.oid) else {
            return;
        };
        match self.svc.store.stat_async(&self.coll, &o).await {
            Ok(_) => {
                self.svc.perf.inc(L_SUBOP_BACKFILL_REMOVE, 1);
                let mut t = Transaction::new();
                t.remove(&self.coll, &o);
                self.queue_txn(t, AfterCommit::Nothing).await;
            }
            Err(StoreError::ObjectNotFound { .. }) => {}
            Err(e) => self
                .svc
                .fatal(format!("pg {}: stat failed: {e}", self.pgid)),
        }
    }
}
