//! Sending objects for recovery and backfill: a push from the primary to
//! members, or the answer to a pull, in messages of at most
//! `osd_recovery_max_chunk` data bytes. One chunk is read and sent at a
//! time (the send waits while the session's queue is full), so a large
//! object never sits whole in memory nor exceeds a message's size bound.
//! The chunks of one object travel in order on one session; the last
//! carries the xattrs and omap. Objects of any size recover this way.
//! A push copies what the primary's disk holds, so it leaves only once no
//! write of its object is in flight here (see `push_object`).

use std::ops::Bound;

use bytes::Bytes;
use kalmar_maps::OsdId;
use kalmar_msgr::SessionHandle;
use kalmar_objectstore::{CollectionId, ObjectId, ObjectStore, StoreError};
use kalmar_peering::Eversion;
use kalmar_proto::client::errno;
use kalmar_proto::osd::{PgPull, PgPush};

use super::PgActor;
use crate::perf::*;

/// Omap entries read per page when copying an object.
const OMAP_PAGE: usize = 4096;

/// An object's xattrs and omap, sent with its last chunk.
struct ObjectMeta {
    attrs: Vec<(String, Bytes)>,
    omap: Vec<(Bytes, Bytes)>,
    omap_header: Option<Bytes>,
}

async fn read_meta(
    store: &std::sync::Arc<ObjectStore>,
    coll: &CollectionId,
    o: &ObjectId,
) -> Result<ObjectMeta, String> {
    let e = |e: StoreError| e.to_string();
    let attrs = store.getattrs_async(coll, o).await.map_err(e)?;
    let mut omap = Vec::new();
    let mut start = Bound::Unbounded;
    loop {
        let page = store
            .omap_iter_async(coll, o, start, Bound::Unbounded, OMAP_PAGE)
            .await
            .map_err(e)?;
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
    let omap_header = store
        .run_read(move || s.omap_get_header(&c, &obj))
        .await
        .map_err(e)?;
    Ok(ObjectMeta {
        attrs,
        omap,
        omap_header,
    })
}

/// Where an object's chunks go.
enum Dest<'a> {
    /// Recovery or backfill targets (`backfill` for the counters).
    Peers { to: &'a [OsdId], backfill: bool },
    /// Back on the session a pull came from.
    Session(&'a SessionHandle),
}

/// Why an object was not (wholly) sent.
enum SendFailure {
    Absent,
    Failed(String),
}

impl PgActor {
    /// Primary: copies the local object (or its absence) to `to`.
    pub(super) async fn push_object(
        &mut self,
        oid: &str,
        version: Eversion,
        to: &[OsdId],
        backfill: bool,
    ) {
        if self.objects.inflight(oid) > 0 {
            // A write of this object is logged here but may not be on our
            // disk yet, and the push copies what the disk holds: it waits
            // for the write (new writes of the object wait for the push).
            // Sent now, a target that took the write's log entry without
            // its data (a backfill target past the object) would be
            // recovered to a copy without that write.
            let push = super::PgEvent::DelayedPush {
                interval: self.interval(),
                oid: oid.to_string(),
                version,
                to: to.to_vec(),
                backfill,
            };
            self.pushes_behind_writes
                .entry(oid.to_string())
                .or_default()
                .push(push);
            return;
        }
        let base = PgPush {
            pgid: self.pgid,
            from: self.whoami,
            map_epoch: self.epoch,
            interval: self.interval(),
            oid: oid.to_string(),
            version_epoch: version.epoch,
            version: version.version,
            ..Default::default()
        };
        match self.send_object(&base, Dest::Peers { to, backfill }).await {
            Ok(()) => {}
            Err(SendFailure::Absent) => {
                // The object is gone here: the push carries its removal.
                let msg = base.to_message();
                for &peer in to {
                    self.count_push(0, true, backfill);
                    self.svc.send_osd(peer, msg.clone()).await;
                }
            }
            Err(SendFailure::Failed(e)) => {
                // Never a push nobody answers: our copy counts as missing,
                // and recovery finds another (or reports it unfound).
                tracing::error!(pgid = %self.pgid, %oid, "cannot read our copy to push it: {e}; recovering it from another copy");
                let ev = super::PgEvent::PushFailed {
                    interval: self.interval(),
                    oid: oid.to_string(),
                    version,
                };
                let _ = self.tx.send(ev);
            }
        }
    }

    /// Member: the primary wants our copy of an object.
    pub(super) async fn on_pull(&mut self, from: SessionHandle, pull: PgPull) {
        if pull.map_epoch > self.epoch {
            self.pending_cluster
                .push(super::PgEvent::Pull { from, pull });
            return;
        }
        if pull.interval != self.interval() {
            return;
        }
        self.svc.perf.inc(L_SUBOP_PULL, 1);
        let base = PgPush {
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
        let result = match self.send_object(&base, Dest::Session(&from)).await {
            Ok(()) => return,
            Err(SendFailure::Absent) => -errno::ENOENT,
            Err(SendFailure::Failed(e)) => {
                tracing::warn!(pgid = %self.pgid, oid = %pull.oid, "pull not served: {e}");
                -errno::EIO
            }
        };
        let failed = PgPush { result, ..base };
        let _ = from.send(failed.to_message()).await;
    }

    /// Sends the local object in chunks, each a copy of `base` with its
    /// data (and, on the last, the xattrs and omap).
    async fn send_object(&mut self, base: &PgPush, dest: Dest<'_>) -> Result<(), SendFailure> {
        let store = self.svc.store.clone();
        let o = ObjectId::new(&base.oid).map_err(|e| SendFailure::Failed(e.to_string()))?;
        let failed = |e: StoreError| SendFailure::Failed(e.to_string());
        let size = match store.stat_async(&self.coll, &o).await {
            Ok(st) => st.size_bytes,
            Err(StoreError::ObjectNotFound { .. }) => return Err(SendFailure::Absent),
            Err(e) => return Err(failed(e)),
        };
        let mut meta = Some(
            read_meta(&store, &self.coll, &o)
                .await
                .map_err(SendFailure::Failed)?,
        );
        let chunk = self.svc.opts.osd_recovery_max_chunk.max(1);
        let mut offset = 0;
        loop {
            let len = chunk.min(size - offset);
            let data = if len == 0 {
                Bytes::new()
            } else {
                store
                    .read_async(&self.coll, &o, offset, len)
                    .await
                    .map_err(failed)?
            };
            let complete = offset + len >= size;
            let mut push = PgPush {
                exists: true,
                data,
                data_offset: offset,
                complete,
                ..base.clone()
            };
            if complete {
                if let Some(m) = meta.take() {
                    push.attrs = m.attrs;
                    push.omap = m.omap;
                    push.omap_header = m.omap_header;
                }
            }
            let msg = push.to_message();
            match &dest {
                Dest::Peers { to, backfill } => {
                    for &peer in to.iter() {
                        self.count_push(len, offset == 0, *backfill);
                        self.svc.send_osd(peer, msg.clone()).await;
                    }
                }
                Dest::Session(h) => {
                    h.send(msg)
                        .await
                        .map_err(|e| SendFailure::Failed(e.to_string()))?;
                }
            }
            if complete {
                return Ok(());
            }
            offset += len;
        }
    }

    /// Counters of one push message to one peer (`first`: the object's
    /// first, which starts a recovery op).
    fn count_push(&mut self, bytes: u64, first: bool, backfill: bool) {
        self.io.num_bytes_recovered += bytes;
        if first {
            self.io.num_objects_recovered += 1;
        }
        let perf = &self.svc.perf;
        perf.inc(L_PUSH, 1);
        perf.inc(L_PUSH_OUT_BYTES, bytes);
        perf.inc(L_RECOVERY_BYTES, bytes);
        if first {
            perf.inc(L_RECOVERY_OPS, 1);
        }
        if backfill {
            perf.inc(L_BACKFILL_BYTES, bytes);
            if first {
                perf.inc(L_BACKFILL_OPS, 1);
            }
        }
    }
}
