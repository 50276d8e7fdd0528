//! A scripted transport and small maps, so the objecter (and the image
//! layer above it) runs in-process with no OSDs: every request lands in a
//! queue the test reads ([`FakeOsds`]), and the test answers, drops
//! sessions and publishes maps itself. Built for this crate's tests and,
//! with the `test-support` feature, for other crates' tests and benches;
//! not part of the product API.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use kalmar_maps::crush::WEIGHT_ONE;
use kalmar_maps::osd::{OsdAddrs, OsdState, WEIGHT_IN};
use kalmar_maps::{EntityAddr, Incremental, OsdId, OsdMap, PgId, PgPool, PoolId};
use kalmar_proto::client::{errno, OsdOpReply, OsdOpRequest};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::config::ClientConfig;
use crate::objecter::Objecter;
use crate::transport::{OsdSession, SendFailure, Transport};

/// The pool every [`cluster_map`] has.
pub const POOL: PoolId = 1;
pub const POOL_NAME: &str = "rbd";
/// First OSD port in [`cluster_map`]: OSD `i` listens on `BASE_PORT + i`.
pub const BASE_PORT: u16 = 6800;

fn fsid() -> uuid::Uuid {
    uuid::Uuid::from_u128(0x6b61_6c6d_6172_0000_0000_0000_0000_0001)
}

/// Epoch 1: `osds` OSDs (one host each), up and in; pool [`POOL`] of
/// `pg_num` PGs, `size` copies.
pub fn cluster_map(osds: i32, pg_num: u32, size: u32) -> OsdMap {
    let mut m = OsdMap::new(fsid(), 1);
    let mut inc = Incremental::new(fsid(), 1, 1);
    inc.new_max_osd = Some(osds);
    let mut crush = m.crush.clone();
    for i in 0..osds {
        // The test map is built from constants; a failure is a bug here.
        crush
            .add_osd(i, WEIGHT_ONE, &format!("host{i}"))
            .expect("crush map of the test cluster");
        inc.new_uuid.insert(i, uuid::Uuid::from_u128(i as u128 + 1));
        inc.new_state.insert(i, OsdState::EXISTS);
        inc.new_weight.insert(i, WEIGHT_IN);
        inc.new_up.insert(i, OsdAddrs::all(osd_addr(i)));
    }
    inc.crush = Some(crush);
    inc.new_pools.insert(
        POOL,
        PgPool::replicated(POOL, POOL_NAME, size, 1, pg_num, 0),
    );
    m.apply_incremental(&inc)
        .expect("epoch 1 of the test cluster");
    m
}

/// The address OSD `osd` has in [`cluster_map`].
pub fn osd_addr(osd: OsdId) -> EntityAddr {
    EntityAddr::new(([127, 0, 0, 1], BASE_PORT + osd as u16).into(), 1)
}

/// `map` at the next epoch, changed by `edit`.
pub fn next_map(map: &OsdMap, edit: impl FnOnce(&mut Incremental)) -> OsdMap {
    let mut inc = Incremental::new(map.fsid, map.epoch + 1, u64::from(map.epoch) + 1);
    edit(&mut inc);
    let mut m = map.clone();
    m.apply_incremental(&inc).expect("test incremental applies");
    m
}

/// `map` at the next epoch with `osd` marked down.
pub fn mark_down(map: &OsdMap, osd: OsdId) -> OsdMap {
    next_map(map, |inc| {
        inc.new_state.insert(osd, OsdState::UP);
    })
}

/// `map` at the next epoch with `pool` deleted.
pub fn delete_pool(map: &OsdMap, pool: PoolId) -> OsdMap {
    next_map(map, |inc| {
        inc.old_pools.insert(pool);
    })
}

/// The acting primary of `oid`'s PG in `map`.
pub fn primary_of(map: &OsdMap, pool: PoolId, oid: &str) -> (PgId, OsdId) {
    let pg = map.object_to_pg(pool, oid).expect("pool exists");
    let primary = map
        .pg_to_up_acting_osds(pg)
        .expect("pool exists")
        .acting_primary;
    (pg, primary)
}

/// What a fake OSD received.
#[derive(Debug)]
pub struct FakeRequest {
    pub osd: OsdId,
    pub session: u64,
    pub tid: u64,
    pub flags: u32,
    pub pgid: PgId,
    pub map_epoch: u32,
    /// The whole request, when the transport records them.
    pub req: Option<OsdOpRequest>,
}

impl FakeRequest {
    /// A success answer.
    pub fn ok(&self) -> OsdOpReply {
        self.answer(0)
    }

    /// An answer with `result` (0 or a negative errno).
    pub fn answer(&self, result: i32) -> OsdOpReply {
        OsdOpReply {
            tid: self.tid,
            result,
            version_epoch: self.map_epoch,
            version: self.tid,
            map_epoch: self.map_epoch,
            retry_epoch: 0,
            error: String::new(),
            outputs: Vec::new(),
        }
    }

    /// "Not the primary (yet): retry with a map of at least `epoch`".
    pub fn eagain(&self, retry_epoch: u32) -> OsdOpReply {
        OsdOpReply {
            retry_epoch,
            ..self.answer(-errno::EAGAIN)
        }
    }
}

struct SessionState {
    id: u64,
    osd: OsdId,
    closed: Arc<AtomicBool>,
}

struct Shared {
    next_session: AtomicU64,
    sessions: Mutex<Vec<SessionState>>,
    requests: mpsc::UnboundedSender<FakeRequest>,
    record: bool,
    encode: bool,
    /// Messages refused as too large from this size on (0: no limit).
    max_message_bytes: usize,
}

/// Sessions that queue every request for the test to read.
pub struct FakeTransport {
    shared: Arc<Shared>,
}

/// One fake session.
#[derive(Clone)]
pub struct FakeSession {
    id: u64,
    osd: OsdId,
    closed: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

impl Transport for FakeTransport {
    type Session = FakeSession;

    fn open(&self, osd: OsdId, _addr: &EntityAddr, _fsid: uuid::Uuid) -> FakeSession {
        let id = self.shared.next_session.fetch_add(1, Ordering::Relaxed);
        let closed = Arc::new(AtomicBool::new(false));
        self.shared.sessions.lock().push(SessionState {
            id,
            osd,
            closed: closed.clone(),
        });
        FakeSession {
            id,
            osd,
            closed,
            shared: self.shared.clone(),
        }
    }
}

impl OsdSession for FakeSession {
    fn id(&self) -> u64 {
        self.id
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn close(&self, _reason: &str) {
        self.closed.store(true, Ordering::Relaxed);
    }

    fn send(
        &self,
        req: &OsdOpRequest,
    ) -> impl std::future::Future<Output = Result<(), SendFailure>> + Send {
        let max = self.shared.max_message_bytes;
        let len = req.in_bytes() as usize;
        let r = if self.is_closed() {
            Err(SendFailure::Closed)
        } else if max > 0 && len > max {
            Err(SendFailure::TooLarge { len, max })
        } else {
            if self.shared.encode {
                // What the messenger transport does with every request.
                drop(std::hint::black_box(req.to_message()));
            }
            let seen = FakeRequest {
                osd: self.osd,
                session: self.id,
                tid: req.tid,
                flags: req.flags,
                pgid: req.pgid,
                map_epoch: req.map_epoch,
                req: self.shared.record.then(|| req.clone()),
            };
            // The receiver is gone only when the test ended.
            let _ = self.shared.requests.send(seen);
            Ok(())
        };
        std::future::ready(r)
    }
}

/// The test's side: the requests the OSDs got, and their sessions.
pub struct FakeOsds {
    rx: mpsc::UnboundedReceiver<FakeRequest>,
    shared: Arc<Shared>,
}

impl FakeOsds {
    /// The next request sent to any OSD (waits for one).
    pub async fn next(&mut self) -> FakeRequest {
        match self.rx.recv().await {
            Some(r) => r,
            // The transport (held by the objecter) outlives the test body.
            None => std::future::pending().await,
        }
    }

    /// A request already sent, if any.
    pub fn try_next(&mut self) -> Option<FakeRequest> {
        self.rx.try_recv().ok()
    }

    /// Drops every open session to `osd` as a network failure would, and
    /// tells the objecter, as the messenger's reader does.
    pub fn lose_sessions<T: Transport>(&self, osd: OsdId, o: &Objecter<T>) {
        let lost: Vec<u64> = self
            .shared
            .sessions
            .lock()
            .iter()
            .filter(|s| s.osd == osd && !s.closed.swap(true, Ordering::Relaxed))
            .map(|s| s.id)
            .collect();
        for id in lost {
            o.on_session_lost(id);
        }
    }

    /// Sessions opened so far to `osd`.
    pub fn sessions_opened(&self, osd: OsdId) -> usize {
        self.shared
            .sessions
            .lock()
            .iter()
            .filter(|s| s.osd == osd)
            .count()
    }
}

/// How the fake transport behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct FakeOptions {
    /// Keep a clone of each whole request in [`FakeRequest::req`] (off
    /// when counting allocations).
    pub record: bool,
    /// Encode each request into a message (and drop it), as the
    /// messenger transport does, so its cost is counted too.
    pub encode: bool,
    /// Refuse requests with more payload than this as too large (0: any).
    pub max_message_bytes: usize,
}

/// A fake transport and the test's side of it.
pub fn fake_transport(opts: FakeOptions) -> (FakeTransport, FakeOsds) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        next_session: AtomicU64::new(1),
        sessions: Mutex::new(Vec::new()),
        requests: tx,
        record: opts.record,
        encode: opts.encode,
        max_message_bytes: opts.max_message_bytes,
    });
    (
        FakeTransport {
            shared: shared.clone(),
        },
        FakeOsds { rx, shared },
    )
}

/// An objecter over a fake transport, with `map` installed.
pub fn fake_objecter(
    config: ClientConfig,
    opts: FakeOptions,
    map: OsdMap,
) -> (Arc<Objecter<FakeTransport>>, FakeOsds) {
    let (t, osds) = fake_transport(opts);
    let o = Objecter::new(t, config, 4242, 7);
    o.apply_map(map);
    (o, osds)
}

/// A client configuration for tests (the mon address is never used).
pub fn test_config() -> ClientConfig {
    ClientConfig::new(([127, 0, 0, 1], 1).into())
}
