//! Raft RPCs between mons over the messenger: one session per peer mon
//! (kept by [`Peers`], reused by openraft's replication and votes and by
//! the server's forwarding to the leader), requests matched to replies by
//! tid, each bounded by openraft's time to live. The receiving side is
//! [`serve`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalmar_common::encoding::Blob;
use kalmar_msgr::{event_channel, Connection, EntityName, Event, MsgrConfig};
use kalmar_proto::mon::{raft_kind, MonRaft, MonRaftReply, MonRoute};
use kalmar_proto::registry::{MON_RAFT_REPLY, MON_ROUTE};
use kalmar_proto::Payload;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::state_machine::SharedProbe;
use super::{MonNode, MonRaftConfig, NodeId, Raft};

/// A reply the leader routed back for one of this mon's sessions.
pub type Routed = MonRoute;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("mon {0} is unreachable: {1}")]
    Unreachable(NodeId, String),
    #[error("mon {0} did not answer within {1:?}")]
    Timeout(NodeId, Duration),
    /// The peer's own error, encoded.
    #[error("mon {0} refused the request")]
    Remote(NodeId, Vec<u8>),
}

/// The session to one peer mon.
pub struct PeerConn {
    id: NodeId,
    addr: SocketAddr,
    conn: Connection,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<MonRaftReply>>>>,
    next_tid: AtomicU64,
    /// When this peer last took the leader's log (an append or a
    /// snapshot it answered): what puts it in the quorum a leader shows.
    last_ok: Mutex<Option<Instant>>,
    router: tokio::task::JoinHandle<()>,
}

impl Drop for PeerConn {
    fn drop(&mut self) {
        self.router.abort();
    }
}

impl PeerConn {
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn last_ok(&self) -> Option<Instant> {
        *self.last_ok.lock()
    }

    /// One request, waited for at most `ttl`.
    pub async fn call(&self, kind: u8, body: Vec<u8>, ttl: Duration) -> Result<Vec<u8>, CallError> {
        let tid = self.next_tid.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(tid, tx);
        let msg = MonRaft {
            tid,
            kind,
            body: Blob(body),
        };
        let result = async {
            if !self.conn.is_connected() {
                // Do not queue votes and heartbeats behind a dead link:
                // openraft retries with fresh ones.
                return Err(CallError::Unreachable(
                    self.id,
                    format!("no session to {}", self.addr),
                ));
            }
            self.conn
                .try_send(msg.to_message())
                .map_err(|e| CallError::Unreachable(self.id, e.to_string()))?;
            match tokio::time::timeout(ttl, rx).await {
                Ok(Ok(reply)) if reply.ok => Ok(reply.body.0),
                Ok(Ok(reply)) => Err(CallError::Remote(self.id, reply.body.0)),
                Ok(Err(_)) => Err(CallError::Unreachable(self.id, "session reset".into())),
                Err(_) => Err(CallError::Timeout(self.id, ttl)),
            }
        }
        .await;
        self.pending.lock().remove(&tid);
        // A probe or a vote answered says the peer is up, not that it
        // follows: a mon with no log answers probes while it still refuses
        // the leader's appends, and must not count in the quorum then.
        let replicates = matches!(
            kind,
            raft_kind::APPEND_ENTRIES | raft_kind::INSTALL_SNAPSHOT
        );
        if result.is_ok() && replicates {
            *self.last_ok.lock() = Some(kalmar_common::clock::now());
        }
        result
    }
}

/// The sessions to the other mons, by id.
pub struct Peers {
    me: EntityName,
    fsid: Uuid,
    msgr: MsgrConfig,
    conns: Mutex<HashMap<NodeId, Arc<PeerConn>>>,
    routed: mpsc::UnboundedSender<Routed>,
}

impl Peers {
    pub fn new(
        me: EntityName,
        fsid: Uuid,
        msgr: MsgrConfig,
        routed: mpsc::UnboundedSender<Routed>,
    ) -> Arc<Peers> {
        Arc::new(Peers {
            me,
            fsid,
            msgr,
            conns: Mutex::new(HashMap::new()),
            routed,
        })
    }

    /// The session to `id` at `node`'s address (made on first use; made
    /// again if the address changed).
    pub fn get(&self, id: NodeId, node: &MonNode) -> Result<Arc<PeerConn>, String> {
        let addr: SocketAddr = node
            .addr
            .parse()
            .map_err(|_| format!("mon.{} has no usable address '{}'", node.name, node.addr))?;
        let mut conns = self.conns.lock();
        if let Some(c) = conns.get(&id) {
            if c.addr == addr {
                return Ok(c.clone());
            }
        }
        let (tx, rx) = event_channel(&self.msgr);
        let conn = Connection::start(addr, self.me.clone(), self.fsid, self.msgr.clone(), tx);
        let pending = Arc::new(Mutex::new(HashMap::new()));
        let router = tokio::spawn(route(rx, pending.clone(), self.routed.clone()));
        let pc = Arc::new(PeerConn {
            id,
            addr,
            conn,
            pending,
            next_tid: AtomicU64::new(1),
            last_ok: Mutex::new(None),
            router,
        });
        conns.insert(id, pc.clone());
        Ok(pc)
    }

    /// When `id` last answered (None: never, or no session yet).
    pub fn last_ok(&self, id: NodeId) -> Option<Instant> {
        self.conns.lock().get(&id).and_then(|c| c.last_ok())
    }
}

async fn route(
    mut rx: mpsc::Receiver<Event>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<MonRaftReply>>>>,
    routed: mpsc::UnboundedSender<Routed>,
) {
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Message(m) => match m.msg.msg_type {
                MON_RAFT_REPLY => match MonRaftReply::from_message(&m.msg) {
                    Ok(r) => {
                        if let Some(tx) = pending.lock().remove(&r.tid) {
                            let _ = tx.send(r);
                        }
                    }
                    Err(e) => tracing::warn!("bad raft reply from a mon: {e}"),
                },
                MON_ROUTE => match MonRoute::from_message(&m.msg) {
                    Ok(r) => {
                        let _ = routed.send(r);
                    }
                    Err(e) => tracing::warn!("bad routed reply from a mon: {e}"),
                },
                other => tracing::debug!(msg_type = other, "unexpected message from a peer mon"),
            },
            Event::Reset(_) | Event::Closed(..) => {
                // Replies to requests sent before are gone with the peer.
                pending.lock().clear();
            }
        }
    }
}

/// openraft's factory: one [`MonNetwork`] per target, sharing [`Peers`].
pub struct MonNetworkFactory {
    pub peers: Arc<Peers>,
}

impl RaftNetworkFactory<MonRaftConfig> for MonNetworkFactory {
    type Network = MonNetwork;

    async fn new_client(&mut self, target: NodeId, node: &MonNode) -> MonNetwork {
        MonNetwork {
            target,
            node: node.clone(),
            peers: self.peers.clone(),
        }
    }
}

pub struct MonNetwork {
    target: NodeId,
    node: MonNode,
    peers: Arc<Peers>,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, MonNode, RaftError<NodeId, E>>;

impl MonNetwork {
    async fn rpc<Req, Resp, E>(&self, kind: u8, req: &Req, ttl: Duration) -> Result<Resp, RpcErr<E>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let body = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let conn = self
            .peers
            .get(self.target, &self.node)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e))))?;
        match conn.call(kind, body, ttl).await {
            Ok(raw) => {
                serde_json::from_slice(&raw).map_err(|e| RPCError::Network(NetworkError::new(&e)))
            }
            // An empty refusal carries no Raft error: a mon with no log
            // that does not take this request yet (see `RebuildGate`).
            Err(CallError::Remote(id, raw)) if raw.is_empty() => Err(RPCError::Unreachable(
                Unreachable::new(&std::io::Error::other(format!(
                    "mon {id} refused the request without a Raft error (a mon with no log \
                     refuses until it may take a leader's log)"
                ))),
            )),
            Err(CallError::Remote(_, raw)) => {
                let err: RaftError<NodeId, E> = serde_json::from_slice(&raw)
                    .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
                Err(RPCError::RemoteError(RemoteError::new_with_node(
                    self.target,
                    self.node.clone(),
                    err,
                )))
            }
            Err(e) => Err(RPCError::Unreachable(Unreachable::new(&e))),
        }
    }
}

impl RaftNetwork<MonRaftConfig> for MonNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<MonRaftConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        self.rpc(raft_kind::APPEND_ENTRIES, &rpc, option.hard_ttl())
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<MonRaftConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.rpc(raft_kind::INSTALL_SNAPSHOT, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.rpc(raft_kind::VOTE, &rpc, option.hard_ttl()).await
    }

    fn backoff(&self) -> openraft::network::Backoff {
        // A dead mon is retried often enough to rejoin fast, rarely
        // enough not to spin.
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}

/// What a mon rebuilt with no log (`mkfs --initial-members` over a lost
/// store) accepts from leaders while it has not caught up. It lost its
/// term with its store: a stale mon restarting with a committed vote for
/// itself (openraft resumes leadership from it) would otherwise find in it
/// the second half of a majority and lead a history the others left.
#[derive(Debug, Default, Clone, Copy)]
pub struct RebuildGate {
    /// Until every other member answered a probe: nothing.
    pub closed: bool,
    /// Then: only leaders of at least this term (the newest any member
    /// reported).
    pub min_leader_term: u64,
}

pub type SharedGate = Arc<Mutex<RebuildGate>>;

/// Whether an empty-log mon behind `gate` refuses a leader of `term`.
fn gate_refuses(raft: &Raft, gate: &SharedGate, term: u64) -> bool {
    if raft.metrics().borrow().last_log_index.is_some() {
        return false;
    }
    let g = *gate.lock();
    g.closed || term < g.min_leader_term
}

fn refused(tid: u64, what: &str, term: u64) -> MonRaftReply {
    tracing::info!(leader_term = term, "{what} refused: this rebuilt mon has not heard from every member yet, or the leader is older than their newest term");
    MonRaftReply {
        tid,
        ok: false,
        body: Blob(Vec::new()),
    }
}

/// Answers one Raft request from a peer mon.
pub async fn serve(
    raft: &Raft,
    probe: &SharedProbe,
    gate: &SharedGate,
    req: &MonRaft,
) -> MonRaftReply {
    fn reply<T: serde::Serialize, E: serde::Serialize>(tid: u64, r: Result<T, E>) -> MonRaftReply {
        let (ok, body) = match r {
            Ok(v) => (true, serde_json::to_vec(&v)),
            Err(e) => (false, serde_json::to_vec(&e)),
        };
        match body {
            Ok(b) => MonRaftReply {
                tid,
                ok,
                body: Blob(b),
            },
            Err(e) => {
                tracing::error!("cannot encode a raft reply: {e}");
                MonRaftReply {
                    tid,
                    ok: false,
                    body: Blob(Vec::new()),
                }
            }
        }
    }
    let bad = |e: serde_json::Error| {
        tracing::warn!(kind = req.kind, "malformed raft request: {e}");
        MonRaftReply {
            tid: req.tid,
            ok: false,
            body: Blob(Vec::new()),
        }
    };
    match req.kind {
        raft_kind::APPEND_ENTRIES => {
            match serde_json::from_slice::<AppendEntriesRequest<MonRaftConfig>>(&req.body.0) {
                Ok(r) if gate_refuses(raft, gate, r.vote.leader_id().term) => {
                    refused(req.tid, "append", r.vote.leader_id().term)
                }
                Ok(r) => reply(req.tid, raft.append_entries(r).await),
                Err(e) => bad(e),
            }
        }
        raft_kind::VOTE => match serde_json::from_slice::<VoteRequest<NodeId>>(&req.body.0) {
            // An empty log is a mon made with `mkfs --join`, or one
            // rebuilt with `--initial-members` that found the cluster
            // exists (it does not write a first membership then, see
            // `server::probe`): its vote from before the loss is lost too.
            // It votes only once a leader has sent it the log (its vote is
            // then that leader's term), so it can never vote twice in one
            // term nor for a mon that lacks what it had acknowledged.
            Ok(_) if raft.metrics().borrow().last_log_index.is_none() => {
                tracing::info!("vote request refused: this mon has no log yet");
                MonRaftReply {
                    tid: req.tid,
                    ok: false,
                    body: Blob(Vec::new()),
                }
            }
            Ok(r) => reply(req.tid, raft.vote(r).await),
            Err(e) => bad(e),
        },
        raft_kind::INSTALL_SNAPSHOT => {
            match serde_json::from_slice::<InstallSnapshotRequest<MonRaftConfig>>(&req.body.0) {
                Ok(r) if gate_refuses(raft, gate, r.vote.leader_id().term) => {
                    refused(req.tid, "snapshot", r.vote.leader_id().term)
                }
                Ok(r) => reply(req.tid, raft.install_snapshot(r).await),
                Err(e) => bad(e),
            }
        }
        raft_kind::PROBE => {
            let mut answer = probe.lock().clone();
            let m = raft.metrics().borrow().clone();
            answer.last_log = answer.last_log.max(m.last_log_index);
            answer.term = answer.term.max(m.current_term);
            reply::<_, ()>(req.tid, Ok(answer))
        }
        other => {
            tracing::warn!(kind = other, "unknown raft request kind");
            MonRaftReply {
                tid: req.tid,
                ok: false,
                body: Blob(Vec::new()),
            }
        }
    }
}
