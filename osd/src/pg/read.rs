//! Reads on the primary: run on their own task against committed state,
//! and answered from there. Data comes through the shard's store engine
//! (device reads on the shard's ring, no reader thread); the metadata a
//! read needs (object info, size) is looked up inline, like a commit's:
//! from the engine's layers in memory, the store's read cache, then the
//! database. Listings and omap pages, which scan, use the store's reader
//! threads.
//!
//! Every block a read returns passed its checksum in the store; a read of
//! a whole object is also checked against the data digest its object info
//! records. When either fails, the client is not answered from this copy:
//! the op goes back to the PG, which recovers the object from another
//! copy (Ceph's `rep_repair_primary_object`) and runs the read again.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use kalmar_common::encoding::{Blob, Decode, Encode};
use kalmar_objectstore::{CollectionId, ObjectId, ObjectStore, StoreError};
use kalmar_proto::client::{errno, ListPage, OmapPage, OpOutput, OsdOp, OsdOpReply, StatOut};

use kalmar_peering::{Event, Eversion};

use super::{ClientOp, PgActor, PgEvent};
use crate::names::{is_internal, user_attr, user_attr_name, ObjectInfo, DIGEST_SEED, OI_ATTR};
use crate::perf::*;
use crate::service::reply;
use crate::shard::store::ShardStore;

/// Entries returned per omap or listing page at most.
const MAX_PAGE_ENTRIES: u32 = 10_000;
/// Room a reply needs besides its data (header, error text, lengths):
/// reads may return the session's message limit minus this.
const REPLY_HEADROOM_BYTES: usize = 64 << 10;

impl PgActor {
    /// Starts a read op on its own task.
    pub(super) fn read(&mut self, op: ClientOp) {
        op.track.mark("started");
        let store = self.svc.store.clone();
        let shard = self.store.clone();
        let coll = self.coll.clone();
        let perf = self.svc.perf.clone();
        let epoch = self.epoch;
        let pgid = self.pgid;
        self.io.num_read += 1;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            // A reply the client's session cannot carry is refused before
            // anything is read (Ceph-like EMSGSIZE), never sent to be lost.
            let max_reply = op.reply_to.max_message_bytes();
            let budget = max_reply.saturating_sub(REPLY_HEADROOM_BYTES) as u64;
            let src = Source {
                store: &store,
                shard: &shard,
                coll: &coll,
            };
            let (mut r, corrupt) = execute(&src, &op.req.oid, &op.req.ops, budget).await;
            if let Some(version) = corrupt {
                if tx.send(PgEvent::ReadCorrupt { op, version }).is_err() {
                    tracing::debug!("pg gone; a corrupt read is dropped");
                }
                return;
            }
            r.tid = op.req.tid;
            r.map_epoch = epoch;
            let out: u64 = r.outputs.iter().map(|o| o.data.len() as u64).sum();
            perf.inc(L_OP, 1);
            perf.inc(L_OP_R, 1);
            perf.inc(L_OP_OUT_BYTES, out);
            perf.inc(L_OP_R_OUT_BYTES, out);
            perf.tinc(L_OP_R_PROCESS_LAT, started.elapsed());
            perf.tinc(L_OP_PROCESS_LAT, started.elapsed());
            perf.tinc(L_OP_R_LAT, op.received.elapsed());
            perf.tinc(L_OP_LAT, op.received.elapsed());
            if r.result == -errno::EMSGSIZE {
                tracing::warn!(%pgid, object = %op.req.oid, client = op.req.client, "read refused: {}", r.error);
            }
            let mut msg = r.to_message();
            if msg.len() > max_reply {
                // Many outputs together (omap pages, several reads).
                let e = format!(
                    "the reply would be {} bytes, over the {max_reply}-byte message limit of this session; ask for less per request",
                    msg.len()
                );
                tracing::warn!(%pgid, object = %op.req.oid, client = op.req.client, "read refused: {e}");
                msg = OsdOpReply::error(r.tid, -errno::EMSGSIZE, epoch, e).to_message();
            }
            op.track.mark("done");
            reply(&op.reply_to, msg);
        });
    }
}

/// Why one read op failed: negative errno, message, and whether this
/// copy's data is corrupt (then another copy may serve the read).
type Fail = (i32, String, bool);

impl PgActor {
    /// A read found this copy corrupt: recover the object from another
    /// copy and run the read again (once), else answer EIO.
    pub(super) async fn on_read_corrupt(&mut self, mut op: ClientOp, version: Eversion) {
        let oid = op.req.oid.clone();
        if op.read_repairs > 0 || !self.pg.is_primary() || !self.pg.is_active() {
            let e = self.epoch;
            return self.answer_error(
                op,
                -errno::EIO,
                e,
                "this object's copy on the primary is corrupt and could not be recovered",
            );
        }
        tracing::error!(pgid = %self.pgid, object = %oid, "the primary's copy is corrupt; recovering it from another copy before answering the read");
        self.svc.scrub_perf.inc(L_READ_REPAIRS, 1);
        op.read_repairs += 1;
        self.machine(Event::ReadError {
            oid: oid.clone(),
            version,
        })
        .await;
        Box::pin(self.client_op(op)).await;
    }
}

fn fail(e: StoreError) -> Fail {
    match e {
        StoreError::ObjectNotFound { .. } => (-errno::ENOENT, "no such object".into(), false),
        StoreError::CollectionNotFound(_) => {
            (-errno::ENOENT, "no such PG on this OSD".into(), false)
        }
        e @ StoreError::Checksum { .. } => (-errno::EIO, e.to_string(), true),
        e => (-errno::EIO, e.to_string(), false),
    }
}

fn object_info(attrs: &Option<Vec<(String, Bytes)>>) -> Option<ObjectInfo> {
    attrs
        .as_ref()
        .and_then(|a| a.iter().find(|(k, _)| k == OI_ATTR))
        .and_then(|(_, v)| ObjectInfo::from_bytes(v).ok())
}

/// Where a read's data and metadata come from.
struct Source<'a> {
    store: &'a Arc<ObjectStore>,
    shard: &'a ShardStore,
    coll: &'a CollectionId,
}

/// Runs the read ops; the first failure is the request's result. The
/// second value is set (to the object's version) when this copy turned
/// out corrupt.
/// `budget` bounds the data bytes the reads may return together.
async fn execute(
    src: &Source<'_>,
    oid: &str,
    ops: &[OsdOp],
    mut budget: u64,
) -> (OsdOpReply, Option<Eversion>) {
    let mut reply = OsdOpReply::default();
    let o = ObjectId::new(oid).ok();
    let mut attrs: Option<Vec<(String, Bytes)>> = None;
    let mut corrupt = false;
    for op in ops {
        let r = run_one(src, o.as_ref(), op, &mut attrs, &mut budget).await;
        match r {
            Ok(data) => reply.outputs.push(OpOutput { rval: 0, data }),
            Err((rval, msg, bad_copy)) => {
                corrupt |= bad_copy;
                reply.outputs.push(OpOutput {
                    rval,
                    data: Bytes::new(),
                });
                if reply.result == 0 {
                    reply.result = rval;
                    reply.error = msg;
                }
            }
        }
    }
    let oi = object_info(&attrs);
    if let Some(oi) = oi {
        reply.version_epoch = oi.version.epoch;
        reply.version = oi.version.version;
    }
    let corrupt = corrupt.then(|| oi.map_or(Eversion::ZERO, |i| i.version));
    (reply, corrupt)
}

/// Checks a read from offset 0 that returned the whole object against
/// the data digest of its object info.
fn verify_whole(
    src: &Source<'_>,
    o: &ObjectId,
    data: &Bytes,
    attrs: &mut Option<Vec<(String, Bytes)>>,
) -> Result<(), Fail> {
    let coll = src.coll;
    get_attrs(src, o, attrs).map_err(fail)?;
    let Some(oi) = object_info(attrs) else {
        return Ok(());
    };
    match oi.data_digest {
        Some(want) if oi.size_bytes == data.len() as u64 => {
            let got = crc32c::crc32c_append(DIGEST_SEED, data);
            if got != want {
                tracing::error!(%coll, object = %o, "read: data digest {got:#010x} != {want:#010x} in the object info");
                return Err((
                    -errno::EIO,
                    format!(
                        "data digest mismatch: read {got:#010x}, object info records {want:#010x}"
                    ),
                    true,
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn get_attrs<'a>(
    src: &Source<'_>,
    o: &ObjectId,
    cache: &'a mut Option<Vec<(String, Bytes)>>,
) -> Result<&'a Vec<(String, Bytes)>, StoreError> {
    if cache.is_none() {
        *cache = Some(src.store.getattrs(src.coll, o)?);
    }
    Ok(cache.get_or_insert_with(Vec::new))
}

async fn run_one(
    src: &Source<'_>,
    o: Option<&ObjectId>,
    op: &OsdOp,
    attrs: &mut Option<Vec<(String, Bytes)>>,
    budget: &mut u64,
) -> Result<Bytes, Fail> {
    let (store, coll) = (src.store, src.coll);
    if let OsdOp::PgLs { start_after, max } = op {
        return list(store, coll, start_after, *max).await.map_err(fail);
    }
    let o = o.ok_or((-errno::EINVAL, "invalid object name".to_string(), false))?;
    match op {
        OsdOp::Read { offset, len } => {
            let mut size = None;
            let mut len = *len;
            if len == 0 {
                let s = store.size(coll, o).map_err(fail)?;
                size = Some(s);
                len = s.saturating_sub(*offset);
            }
            if len > *budget {
                // Only what the object holds counts against the budget.
                let s = match size {
                    Some(s) => s,
                    None => store.size(coll, o).map_err(fail)?,
                };
                len = len.min(s.saturating_sub(*offset));
            }
            if len > *budget {
                return Err((
                    -errno::EMSGSIZE,
                    format!(
                        "a read of {len} bytes at offset {offset} does not fit one reply \
                         (at most {budget} data bytes on this session); read in smaller pieces",
                        budget = *budget
                    ),
                    false,
                ));
            }
            *budget -= len;
            let data = src.shard.read(coll, o, *offset, len).await.map_err(fail)?;
            if *offset == 0 {
                verify_whole(src, o, &data, attrs)?;
            }
            Ok(data)
        }
        OsdOp::Stat => {
            let a = get_attrs(src, o, attrs).map_err(fail)?;
            let out = match a.iter().find(|(k, _)| k == OI_ATTR) {
                Some((_, v)) => {
                    let oi = ObjectInfo::from_bytes(v)
                        .map_err(|e| (-errno::EIO, format!("object info: {e}"), false))?;
                    StatOut {
                        size_bytes: oi.size_bytes,
                        mtime_us: oi.mtime_us,
                    }
                }
                None => StatOut {
                    size_bytes: store.size(coll, o).map_err(fail)?,
                    mtime_us: 0,
                },
            };
            Ok(Bytes::from(out.to_bytes()))
        }
        OsdOp::GetXattr { name } => {
            let want = user_attr(name);
            let a = get_attrs(src, o, attrs).map_err(fail)?;
            a.iter()
                .find(|(k, _)| *k == want)
                .map(|(_, v)| v.clone())
                .ok_or((-errno::ENODATA, format!("no xattr {name}"), false))
        }
        OsdOp::GetXattrs => {
            let a = get_attrs(src, o, attrs).map_err(fail)?;
            let m: std::collections::BTreeMap<String, Blob> = a
                .iter()
                .filter_map(|(k, v)| user_attr_name(k).map(|n| (n.to_string(), Blob(v.to_vec()))))
                .collect();
            Ok(Bytes::from(m.to_bytes()))
        }
        OsdOp::OmapGetVals { start_after, max } => {
            let max = (*max).clamp(1, MAX_PAGE_ENTRIES) as usize;
            // Existence first: a missing object is ENOENT, not empty.
            store.size(coll, o).map_err(fail)?;
            let start = if start_after.is_empty() {
                Bound::Unbounded
            } else {
                Bound::Excluded(start_after.as_bytes().to_vec())
            };
            let mut page = store
                .omap_iter_async(coll, o, start, Bound::Unbounded, max + 1)
                .await
                .map_err(fail)?;
            let more = page.len() > max;
            page.truncate(max);
            let entries = page
                .into_iter()
                .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), Blob(v.to_vec())))
                .collect();
            Ok(Bytes::from(OmapPage { entries, more }.to_bytes()))
        }
        OsdOp::OmapGetValsByKeys { keys } => {
            let keys: Vec<Bytes> = keys
                .iter()
                .map(|k| Bytes::copy_from_slice(k.as_bytes()))
                .collect();
            // Point lookups: inline, like the other metadata reads.
            let vals = store.omap_get_values(coll, o, &keys).map_err(fail)?;
            let m: std::collections::BTreeMap<String, Blob> = vals
                .into_iter()
                .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), Blob(v.to_vec())))
                .collect();
            Ok(Bytes::from(m.to_bytes()))
        }
        write => Err((
            -errno::EINVAL,
            format!(
                "{} in a read request: reads and writes may not be mixed",
                write.describe()
            ),
            false,
        )),
    }
}

/// Lists client objects after `start_after` (the OSD's own objects are
/// left out).
async fn list(
    store: &ObjectStore,
    coll: &CollectionId,
    start_after: &str,
    max: u32,
) -> Result<Bytes, StoreError> {
    let max = max.clamp(1, MAX_PAGE_ENTRIES) as usize;
    let mut names = Vec::new();
    let mut start = if start_after.is_empty() {
        None
    } else {
        ObjectId::new(start_after).ok()
    };
    let mut more = false;
    loop {
        let (page, next) = store
            .collection_list_async(coll, start.clone(), max + 1)
            .await?;
        for n in page {
            if is_internal(n.as_bytes()) || n.as_bytes() == start_after.as_bytes() {
                continue;
            }
            if names.len() == max {
                more = true;
                break;
            }
            names.push(String::from_utf8_lossy(n.as_bytes()).into_owned());
        }
        if more || next.is_none() {
            break;
        }
        start = next;
    }
    Ok(Bytes::from(ListPage { names, more }.to_bytes()))
}
