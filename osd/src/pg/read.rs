//! Reads on the primary: run on their own task against committed state
//! (the store's async reads never block the PG), and answered from there.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use kalmar_common::encoding::{Blob, Decode, Encode};
use kalmar_objectstore::{CollectionId, ObjectId, ObjectStore, StoreError};
use kalmar_proto::client::{errno, ListPage, OmapPage, OpOutput, OsdOp, OsdOpReply, StatOut};

use super::{ClientOp, PgActor};
use crate::names::{is_internal, user_attr, user_attr_name, ObjectInfo, OI_ATTR};
use crate::perf::*;
use crate::service::reply;

/// Entries returned per omap or listing page at most.
const MAX_PAGE_ENTRIES: u32 = 10_000;

impl PgActor {
    /// Starts a read op on its own task.
    pub(super) fn read(&mut self, op: ClientOp) {
        op.track.mark("started");
        let store = self.svc.store.clone();
        let coll = self.coll.clone();
        let perf = self.svc.perf.clone();
        let epoch = self.epoch;
        self.io.num_read += 1;
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut r = execute(&store, &coll, &op.req.oid, &op.req.ops).await;
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
            op.track.mark("done");
            reply(&op.reply_to, r.to_message());
        });
    }
}

fn fail(e: StoreError) -> (i32, String) {
    match e {
        StoreError::ObjectNotFound { .. } => (-errno::ENOENT, "no such object".into()),
        StoreError::CollectionNotFound(_) => (-errno::ENOENT, "no such PG on this OSD".into()),
        e => (-errno::EIO, e.to_string()),
    }
}

/// Runs the read ops; the first failure is the request's result.
async fn execute(
    store: &Arc<ObjectStore>,
    coll: &CollectionId,
    oid: &str,
    ops: &[OsdOp],
) -> OsdOpReply {
    let mut reply = OsdOpReply::default();
    let o = ObjectId::new(oid.as_bytes().to_vec()).ok();
    let mut attrs: Option<Vec<(String, Bytes)>> = None;
    for op in ops {
        let r = run_one(store, coll, o.as_ref(), op, &mut attrs).await;
        match r {
            Ok(data) => reply.outputs.push(OpOutput { rval: 0, data }),
            Err((rval, msg)) => {
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
    if let Some(oi) = attrs
        .as_ref()
        .and_then(|a| a.iter().find(|(k, _)| k == OI_ATTR))
        .and_then(|(_, v)| ObjectInfo::from_bytes(v).ok())
    {
        reply.version_epoch = oi.version.epoch;
        reply.version = oi.version.version;
    }
    reply
}

async fn get_attrs<'a>(
    store: &ObjectStore,
    coll: &CollectionId,
    o: &ObjectId,
    cache: &'a mut Option<Vec<(String, Bytes)>>,
) -> Result<&'a Vec<(String, Bytes)>, StoreError> {
    if cache.is_none() {
        *cache = Some(store.getattrs_async(coll, o).await?);
    }
    Ok(cache.get_or_insert_with(Vec::new))
}

async fn run_one(
    store: &Arc<ObjectStore>,
    coll: &CollectionId,
    o: Option<&ObjectId>,
    op: &OsdOp,
    attrs: &mut Option<Vec<(String, Bytes)>>,
) -> Result<Bytes, (i32, String)> {
    if let OsdOp::PgLs { start_after, max } = op {
        return list(store, coll, start_after, *max).await.map_err(fail);
    }
    let o = o.ok_or((-errno::EINVAL, "invalid object name".to_string()))?;
    match op {
        OsdOp::Read { offset, len } => {
            let len = if *len == 0 {
                store
                    .stat_async(coll, o)
                    .await
                    .map_err(fail)?
                    .size_bytes
                    .saturating_sub(*offset)
            } else {
                *len
            };
            store.read_async(coll, o, *offset, len).await.map_err(fail)
        }
        OsdOp::Stat => {
            let a = get_attrs(store, coll, o, attrs).await.map_err(fail)?;
            let out = match a.iter().find(|(k, _)| k == OI_ATTR) {
                Some((_, v)) => {
                    let oi = ObjectInfo::from_bytes(v)
                        .map_err(|e| (-errno::EIO, format!("object info: {e}")))?;
                    StatOut {
                        size_bytes: oi.size_bytes,
                        mtime_us: oi.mtime_us,
                    }
                }
                None => StatOut {
                    size_bytes: store.stat_async(coll, o).await.map_err(fail)?.size_bytes,
                    mtime_us: 0,
                },
            };
            Ok(Bytes::from(out.to_bytes()))
        }
        OsdOp::GetXattr { name } => {
            let want = user_attr(name);
            let a = get_attrs(store, coll, o, attrs).await.map_err(fail)?;
            a.iter()
                .find(|(k, _)| *k == want)
                .map(|(_, v)| v.clone())
                .ok_or((-errno::ENODATA, format!("no xattr {name}")))
        }
        OsdOp::GetXattrs => {
            let a = get_attrs(store, coll, o, attrs).await.map_err(fail)?;
            let m: std::collections::BTreeMap<String, Blob> = a
                .iter()
                .filter_map(|(k, v)| user_attr_name(k).map(|n| (n.to_string(), Blob(v.to_vec()))))
                .collect();
            Ok(Bytes::from(m.to_bytes()))
        }
        OsdOp::OmapGetVals { start_after, max } => {
            let max = (*max).clamp(1, MAX_PAGE_ENTRIES) as usize;
            // Existence first: a missing object is ENOENT, not empty.
            store.stat_async(coll, o).await.map_err(fail)?;
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
            let (s, c, obj) = (store.clone(), coll.clone(), o.clone());
            let vals = tokio::task::spawn_blocking(move || s.omap_get_values(&c, &obj, &keys))
                .await
                .map_err(|e| (-errno::EIO, e.to_string()))?
                .map_err(fail)?;
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
        ObjectId::new(start_after.as_bytes().to_vec()).ok()
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
