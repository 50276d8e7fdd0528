//! What every part of a running OSD shares: identity, options, the store,
//! perf counters, sessions to peers and the mon, the op tracker, the
//! reserver, the PG table and the current map.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use kalmar_common::perf::PerfCounters;
use kalmar_maps::{Epoch, OsdId, OsdMap, PgId};
use kalmar_msgr::{Message, SessionHandle};
use kalmar_objectstore::{CollectionId, ObjectId, ObjectStore, Transaction};
use kalmar_peering::Fullness;
use kalmar_proto::mon::OsdAlive;
use kalmar_proto::monc::MonClient;
use kalmar_proto::osd::StoreOp;
use parking_lot::RwLock;
use tokio::sync::watch;
use uuid::Uuid;

use crate::dispatch::ClusterSink;
use crate::options::OsdOptions;
use crate::peers::{PeerError, Peers};
use crate::pg::PgHandle;
use crate::reserver::Reserver;
use crate::shard::store::ShardStore;
use crate::tracker::OpTracker;

pub struct Service {
    pub whoami: OsdId,
    pub fsid: Uuid,
    pub osd_uuid: Uuid,
    pub opts: Arc<OsdOptions>,
    pub store: Arc<ObjectStore>,
    pub perf: Arc<PerfCounters>,
    pub rs_perf: Arc<PerfCounters>,
    pub scrub_perf: Arc<PerfCounters>,
    /// Sessions to other OSDs' cluster ports.
    pub cluster: Peers<Arc<ClusterSink>>,
    pub mon: Arc<MonClient>,
    pub tracker: OpTracker,
    pub reserver: Reserver,
    pub pgs: RwLock<HashMap<PgId, PgHandle>>,
    /// How many PG tasks are running (a stop waits for none).
    live_pg_tasks: watch::Sender<usize>,
    map: RwLock<Arc<OsdMap>>,
    /// Highest up_thru any PG asked for.
    want_up_thru: AtomicU32,
    /// Set to a reason when the OSD must stop (the store failed).
    fatal: watch::Sender<Option<String>>,
    /// The shards' runtimes and stores, by shard index.
    shards: Vec<(tokio::runtime::Handle, Arc<ShardStore>)>,
    /// Client ops refused by the clients' osd caps, for the logs.
    pub cap_refusals: crate::caps::RefusalLog,
}

impl Service {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        whoami: OsdId,
        fsid: Uuid,
        osd_uuid: Uuid,
        opts: Arc<OsdOptions>,
        store: Arc<ObjectStore>,
        perf: Arc<PerfCounters>,
        rs_perf: Arc<PerfCounters>,
        scrub_perf: Arc<PerfCounters>,
        cluster: Peers<Arc<ClusterSink>>,
        mon: Arc<MonClient>,
        map: Arc<OsdMap>,
        shards: Vec<(tokio::runtime::Handle, Arc<ShardStore>)>,
    ) -> Self {
        let (fatal, _) = watch::channel(None);
        Service {
            whoami,
            fsid,
            osd_uuid,
            reserver: Reserver::new(opts.osd_max_backfills, opts.osd_max_scrubs),
            opts,
            store,
            perf,
            rs_perf,
            scrub_perf,
            cluster,
            mon,
            tracker: OpTracker::new(),
            pgs: RwLock::new(HashMap::new()),
            live_pg_tasks: watch::channel(0).0,
            map: RwLock::new(map),
            want_up_thru: AtomicU32::new(0),
            fatal,
            shards,
            cap_refusals: crate::caps::RefusalLog::default(),
        }
    }

    /// Counts a PG task as running until the returned guard is dropped
    /// (when the task ends, or is dropped with its runtime).
    pub fn pg_task_started(self: &Arc<Self>) -> PgTaskAlive {
        self.live_pg_tasks.send_modify(|n| *n += 1);
        PgTaskAlive(self.clone())
    }

    /// Waits until no PG task runs, at most `bound`; returns how many
    /// still run.
    pub async fn pg_tasks_ended(&self, bound: std::time::Duration) -> usize {
        let mut live = self.live_pg_tasks.subscribe();
        let _ = tokio::time::timeout(bound, live.wait_for(|n| *n == 0)).await;
        let left = *live.borrow();
        left
    }

    /// The runtime and store of the shard a PG lives on.
    pub fn shard(&self, pgid: PgId) -> (tokio::runtime::Handle, Arc<ShardStore>) {
        let i = crate::shard::shard_of(pgid, self.shards.len());
        let (h, s) = &self.shards[i];
        (h.clone(), s.clone())
    }

    /// Every shard's store, by index.
    pub fn shard_stores(&self) -> impl Iterator<Item = &Arc<ShardStore>> {
        self.shards.iter().map(|(_, s)| s)
    }

    /// The newest map the OSD has consumed.
    pub fn map(&self) -> Arc<OsdMap> {
        self.map.read().clone()
    }

    pub fn epoch(&self) -> Epoch {
        self.map.read().epoch
    }

    pub fn set_map(&self, m: Arc<OsdMap>) {
        *self.map.write() = m;
    }

    pub fn pg(&self, pgid: PgId) -> Option<PgHandle> {
        self.pgs.read().get(&pgid).cloned()
    }

    /// Stops the OSD: a store failure means acknowledged writes can no
    /// longer be guaranteed.
    pub fn fatal(&self, reason: String) {
        tracing::error!("fatal: {reason}; the OSD stops");
        self.fatal.send_replace(Some(reason));
    }

    pub fn fatal_watch(&self) -> watch::Receiver<Option<String>> {
        self.fatal.subscribe()
    }

    /// Why a write adding `bytes` must be refused: the store would pass
    /// `osd_failsafe_full_ratio`.
    pub fn full_for(&self, bytes: u64) -> Option<String> {
        let s = self.store.statfs().ok()?;
        let used = s.settled_used_bytes().saturating_add(bytes);
        let ratio = used as f64 / s.total_bytes.max(1) as f64;
        (ratio >= self.opts.osd_failsafe_full_ratio).then(|| {
            format!(
                "osd.{} is full: {:.1}% used with this write, osd_failsafe_full_ratio is {:.1}%",
                self.whoami,
                ratio * 100.0,
                self.opts.osd_failsafe_full_ratio * 100.0
            )
        })
    }

    /// This OSD's store use with the map's ratios: what it answers a
    /// primary's recovery or backfill reservation by.
    pub fn fullness(&self) -> Option<Fullness> {
        let s = self.store.statfs().ok()?;
        let map = self.map();
        Some(Fullness {
            used_bytes: s.settled_used_bytes(),
            total_bytes: s.total_bytes,
            full_ratio: map.full_ratio,
            backfillfull_ratio: map.backfillfull_ratio,
        })
    }

    /// A PG needs `up_thru >= epoch` before it may activate.
    pub async fn request_up_thru(&self, epoch: Epoch) {
        let prev = self.want_up_thru.fetch_max(epoch, Ordering::Relaxed);
        if prev >= epoch {
            return;
        }
        self.send_up_thru().await;
    }

    /// (Re)sends the up_thru request if the map does not grant it yet.
    pub async fn send_up_thru(&self) {
        let want = self.want_up_thru.load(Ordering::Relaxed);
        let have = self.map().osd(self.whoami).map_or(0, |s| s.info.up_thru);
        if want > have {
            let msg = OsdAlive {
                osd_id: self.whoami,
                want_up_thru: want,
            };
            if let Err(e) = self.mon.send(&msg).await {
                tracing::info!("up_thru request not sent: {e}");
            }
        }
    }

    /// Sends to another OSD's cluster port (in order with everything else
    /// sent there).
    pub async fn send_osd(&self, osd: OsdId, msg: Message) {
        let map = self.map();
        match self.cluster.send(&map, osd, msg).await {
            Ok(()) => {}
            // A message no peer could take is a bug, never routine.
            Err(PeerError::Send(e @ kalmar_msgr::SendError::TooLarge { .. })) => {
                tracing::error!(osd, "message not sent: {e}");
            }
            Err(e) => tracing::debug!(osd, "message not sent: {e}"),
        }
    }
}

/// Replies on a session without stalling the caller: a full queue hands
/// the message to a task that waits for room.
pub fn reply(to: &SessionHandle, msg: Message) {
    match to.try_send(msg.clone()) {
        Ok(_) => {}
        Err(kalmar_msgr::SendError::Full { .. }) => {
            let to = to.clone();
            tokio::spawn(async move {
                let _ = to.send(msg).await;
            });
        }
        // A reply no session could take is a bug, never routine.
        Err(e @ kalmar_msgr::SendError::TooLarge { .. }) => {
            tracing::error!("reply not sent: {e}")
        }
        Err(e) => tracing::debug!("reply not sent: {e}"),
    }
}

/// Adds the store operations of a client or replicated write of one
/// object, moving their buffers and names into the transaction.
pub fn apply_store_ops(
    t: &mut Transaction,
    coll: &CollectionId,
    oid: &ObjectId,
    ops: impl IntoIterator<Item = StoreOp>,
) {
    for op in ops {
        match op {
            StoreOp::Touch => {
                t.touch(coll, oid);
            }
            StoreOp::Write { offset, data } => {
                t.write(coll, oid, offset, data);
            }
            StoreOp::Truncate { size } => {
                t.truncate(coll, oid, size);
            }
            StoreOp::Zero { offset, len } => {
                t.zero(coll, oid, offset, len);
            }
            StoreOp::Remove => {
                t.remove(coll, oid);
            }
            StoreOp::SetAttrs { attrs } => {
                t.setattrs(coll, oid, attrs);
            }
            StoreOp::RmAttr { name } => {
                t.rmattr(coll, oid, &name);
            }
            StoreOp::OmapSet { entries } => {
                t.omap_setkeys(coll, oid, entries);
            }
            StoreOp::OmapRm { keys } => {
                t.omap_rmkeys(coll, oid, keys);
            }
            StoreOp::OmapClear => {
                t.omap_clear(coll, oid);
            }
        }
    }
}

/// Bytes of data a list of store ops writes.
pub fn data_bytes(ops: &[StoreOp]) -> u64 {
    ops.iter()
        .map(|o| match o {
            StoreOp::Write { data, .. } => data.len() as u64,
            _ => 0,
        })
        .sum()
}

/// A copy of a small byte string as `Bytes`.
pub fn bytes_of(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A running PG task, counted by [`Service::pg_task_started`].
pub struct PgTaskAlive(Arc<Service>);

impl Drop for PgTaskAlive {
    fn drop(&mut self) {
        self.0.live_pg_tasks.send_modify(|n| *n -= 1);
    }
}
