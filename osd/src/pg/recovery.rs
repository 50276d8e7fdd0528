//! Recovery and backfill I/O the state machine asks for: pushing whole
//! objects to members, pulling them from a member, scanning collections in
//! object order, and removing extras from a backfill target. The object
//! written on the receiving side and the PG metadata its machine updates
//! go in one transaction.

use std::ops::Bound;
use std::time::Instant;

use bytes::Bytes;
use kalmar_common::encoding::Decode;
use kalmar_maps::OsdId;
use kalmar_msgr::SessionHandle;
use kalmar_objectstore::{CollectionId, ObjectId, ObjectStore, StoreError, Transaction};
use kalmar_peering::{Event, Eversion, ObjectBound, ScanResult};
use kalmar_proto::client::errno;
use kalmar_proto::osd::{PgBackfillRemove, PgPull, PgPush, PgPushReply, PgScan, PgScanReply};
use kalmar_proto::Payload;

use super::actions::AfterCommit;
use super::{PgActor, PgEvent};
use crate::names::{is_internal, pgmeta_oid, ObjectInfo, OI_ATTR};
use crate::perf::*;
use crate::service::reply;
use crate::wire::{decode_scan, encode_scan};

/// Omap entries read per page when copying an object.
const OMAP_PAGE: usize = 4096;
/// Names listed per store call while scanning.
const SCAN_PAGE: usize = 256;

/// A whole object, read for a push.
struct ObjectCopy {
    data: Bytes,
    attrs: Vec<(String, Bytes)>,
    omap: Vec<(Bytes, Bytes)>,
    omap_header: Option<Bytes>,
}

/// Reads everything of an object; `None` if it does not exist.
async fn read_whole(
    store: &std::sync::Arc<ObjectStore>,
    coll: &CollectionId,
    o: &ObjectId,
    max_bytes: u64,
) -> Result<Option<ObjectCopy>, String> {
    let st = match store.stat_async(coll, o).await {
        Ok(st) => st,
        Err(StoreError::ObjectNotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if st.size_bytes > max_bytes {
        return Err(format!(
            "object of {} bytes exceeds osd_recovery_max_object_size ({max_bytes})",
            st.size_bytes
        ));
    }
    let data = store
        .read_async(coll, o, 0, st.size_bytes)
        .await
        .map_err(|e| e.to_string())?;
    let attrs = store
        .getattrs_async(coll, o)
        .await
        .map_err(|e| e.to_string())?;
    let mut omap = Vec::new();
    let mut start = Bound::Unbounded;
    loop {
        let page = store
            .omap_iter_async(coll, o, start, Bound::Unbounded, OMAP_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        let full = page.len() == OMAP_PAGE;
        start = match page.last() {
            Some((k, _)) => Bound::Excluded(k.to_vec()),
            None => Bound::Unbounded,
        };
        omap.extend(page);
        if !full {
            break;
        }
    }
    let (s, c, obj) = (store.clone(), coll.clone(), o.clone());
    let omap_header = tokio::task::spawn_blocking(move || s.omap_get_header(&c, &obj))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(Some(ObjectCopy {
        data,
        attrs,
        omap,
        omap_header,
    }))
}

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
        ObjectBound::Object(name) => ObjectId::new(name.as_bytes().to_vec()).ok(),
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

    /// Primary: copies the local object (or its absence) to `to`.
    pub(super) async fn push_object(
        &mut self,
        oid: &str,
        version: Eversion,
        to: &[OsdId],
        backfill: bool,
    ) {
        let Ok(o) = ObjectId::new(oid.as_bytes().to_vec()) else {
            return;
        };
        let copy = read_whole(
            &self.svc.store,
            &self.coll,
            &o,
            self.svc.opts.osd_recovery_max_object_size,
        )
        .await;
        let copy = match copy {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(pgid = %self.pgid, %oid, "cannot push: {e}");
                return;
            }
        };
        let mut push = PgPush {
            pgid: self.pgid,
            from: self.whoami,
            map_epoch: self.epoch,
            interval: self.interval(),
            oid: oid.to_string(),
            version_epoch: version.epoch,
            version: version.version,
            exists: copy.is_some(),
            ..Default::default()
        };
        if let Some(c) = copy {
            push.data = c.data;
            push.attrs = c.attrs;
            push.omap = c.omap;
            push.omap_header = c.omap_header;
        }
        let bytes = push.data.len() as u64;
        let msg = push.to_message();
        for &peer in to {
            self.svc.perf.inc(L_PUSH, 1);
            self.svc.perf.inc(L_PUSH_OUT_BYTES, bytes);
            self.svc.perf.inc(L_RECOVERY_OPS, 1);
            self.svc.perf.inc(L_RECOVERY_BYTES, bytes);
            if backfill {
                self.svc.perf.inc(L_BACKFILL_OPS, 1);
                self.svc.perf.inc(L_BACKFILL_BYTES, bytes);
            }
            self.svc.send_osd(peer, msg.clone()).await;
        }
    }

    /// Writes a pushed object (replacing any local copy) into `t`.
    async fn add_pushed_object(&self, t: &mut Transaction, push: &PgPush) -> bool {
        let Ok(o) = ObjectId::new(push.oid.as_bytes().to_vec()) else {
            return false;
        };
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
            if !push.attrs.is_empty() {
                t.setattrs(&self.coll, &o, push.attrs.clone());
            }
            if !push.omap.is_empty() {
                t.omap_setkeys(&self.coll, &o, push.omap.clone());
            }
            if let Some(h) = &push.omap_header {
                t.omap_setheader(&self.coll, &o, h.clone());
            }
        }
        true
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
        let started = Instant::now();
        let mut t = Transaction::new();
        if !self.add_pushed_object(&mut t, &push).await {
            return;
        }
        self.objects.forget(&push.oid);
        let perf = &self.svc.perf;
        perf.inc(L_SUBOP_PUSH, 1);
        perf.inc(L_SUBOP_PUSH_IN_BYTES, push.data.len() as u64);
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
            let r = PgPushReply {
                pgid: self.pgid,
                from: self.whoami,
                interval: push.interval,
                oid: push.oid.clone(),
                version_epoch: push.version_epoch,
                version: push.version,
                result: 0,
            };
            AfterCommit::Reply(from, r.to_message())
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

    /// Primary: a member committed a push.
    pub(super) async fn on_push_reply(&mut self, r: PgPushReply) {
        if r.interval != self.interval() {
            return;
        }
        let ev = Event::PushCompleted {
            peer: r.from,
            oid: r.oid,
            version: Eversion::new(r.version_epoch, r.version),
        };
        self.machine(ev).await;
    }

    /// Member: the primary wants our copy of an object.
    pub(super) async fn on_pull(&mut self, from: SessionHandle, pull: PgPull) {
        if pull.map_epoch > self.epoch {
            self.pending_cluster.push(PgEvent::Pull { from, pull });
            return;
        }
        if pull.interval != self.interval() {
            return;
        }
        self.svc.perf.inc(L_SUBOP_PULL, 1);
        let mut push = PgPush {
            pgid: self.pgid,
            from: self.whoami,
            map_epoch: self.epoch,
            interval: pull.interval,
            oid: pull.oid.clone(),
            version_epoch: pull.version_epoch,
            version: pull.version,
            is_pull_reply: true,
            ..Default::default()
        };
        let copy = match ObjectId::new(pull.oid.as_bytes().to_vec()) {
            Ok(o) => {
                read_whole(
                    &self.svc.store,
                    &self.coll,
                    &o,
                    self.svc.opts.osd_recovery_max_object_size,
                )
                .await
            }
            Err(e) => Err(e.to_string()),
        };
        match copy {
            Ok(Some(c)) => {
                push.exists = true;
                push.data = c.data;
                push.attrs = c.attrs;
                push.omap = c.omap;
                push.omap_header = c.omap_header;
            }
            Ok(None) => push.result = -errno::ENOENT,
            Err(e) => {
                tracing::warn!(pgid = %self.pgid, oid = %pull.oid, "pull not served: {e}");
                push.result = -errno::EIO;
            }
        }
        reply(&from, push.to_message());
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
        if let Err(e) = self.svc.store.queue_transaction(barrier).await {
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
        let Ok(o) = ObjectId::new(r.oid.as_bytes().to_vec()) else {
            return;
        };
        match self.svc.store.stat_async(&self.coll, &o).await {
            Ok(_) => {
                self.svc.perf.inc(L_SUBOP_BACKFILL_REMOVE, 1);
                let mut t = Transaction::new();
                t.remove(&self.coll, &o);
                self.queue_txn(t, AfterCommit::Nothing);
            }
            Err(StoreError::ObjectNotFound { .. }) => {}
            Err(e) => self
                .svc
                .fatal(format!("pg {}: stat failed: {e}", self.pgid)),
        }
    }
}
