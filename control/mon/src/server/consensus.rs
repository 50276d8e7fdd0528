//! The server's side of the consensus: who leads, the leader's commits
//! through the log, what every mon does with applied epochs, and the
//! forwarding of leader-only messages from a follower to the leader (and
//! of the leader's replies back).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalmar_common::encoding::{Blob, Encode};
use kalmar_maps::time::now_us;
use kalmar_msgr::{EntityName, EntityType, Event, Incoming, Message, MsgrConfig, SessionHandle};
use kalmar_proto::mon::*;
use kalmar_proto::registry::*;
use kalmar_proto::Payload;
use openraft::storage::RaftLogStorage;
use openraft::{RaftMetrics, ServerState};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{MonError, Origin, ReplyTo, Server, EAGAIN, INC_CACHE_EPOCHS};
use crate::mgrmon::MgrMon;
use crate::monmap::{MonNode, QuorumView};
use crate::monmap_history::{CommittedMonmap, ProbeReply};
use crate::options::MonOptions;
use crate::osdmon::OsdMon;
use crate::perf::*;
use crate::persist::{self, trim_target};
use crate::raft::log_store::LogStore;
use crate::raft::network::{self, MonNetworkFactory, Peers, SharedGate};
use crate::raft::state_machine::{applied_monmap, Applied, SharedProbe, StateMachine};
use crate::raft::{raft_config, AuthVersion, MapCommit, MgrEpoch, NodeId, OsdEpoch, Raft};
use crate::store::MonStore;

/// Bound on sessions a follower remembers for routed replies.
pub const MAX_ROUTES: usize = 65536;

pub(super) struct ConsensusConfig<'a> {
    pub store: Arc<MonStore>,
    pub me: EntityName,
    pub id: NodeId,
    pub members: BTreeMap<NodeId, MonNode>,
    pub fsid: Uuid,
    pub bind: SocketAddr,
    pub msgr: MsgrConfig,
    pub opts: &'a MonOptions,
}

pub(super) struct Started {
    pub cons: Consensus,
    pub applied: mpsc::UnboundedReceiver<Applied>,
    pub routed: mpsc::UnboundedReceiver<MonRoute>,
    pub probed: mpsc::UnboundedReceiver<(NodeId, ProbeReply)>,
    /// What this mon answers to probes.
    pub probe: SharedProbe,
    /// What a rebuilt mon accepts from leaders (see `RebuildGate`).
    pub gate: SharedGate,
}

pub(super) struct Consensus {
    pub raft: Raft,
    pub id: NodeId,
    /// This mon's name (a rank given again to another mon is not it).
    pub name: String,
    bind: SocketAddr,
    pub(super) peers: Arc<Peers>,
    /// The membership as the log has it (newest, maybe not committed yet):
    /// whom to forward to.
    members: BTreeMap<NodeId, MonNode>,
    /// The newest committed monmap (what `mon dump` shows).
    pub(super) monmap: CommittedMonmap,
    /// The newest committed monmap epoch that had this mon.
    pub(super) seen: Option<u64>,
    /// Set once a newer monmap without this mon was seen: the mon stops.
    pub(super) removed: Option<u64>,
    /// A mon of several with no log: the initial members it founds the
    /// cluster with, unless a probe finds the cluster exists.
    pub(super) bootstrap: Option<BTreeMap<NodeId, MonNode>>,
    /// While bootstrapping: the answers of the other members so far.
    pub(super) probe_answers: BTreeMap<NodeId, ProbeReply>,
    pub(super) gate: SharedGate,
    pub(super) probe_tx: mpsc::UnboundedSender<(NodeId, ProbeReply)>,
    pub(super) last_probe: Option<Instant>,
    leader: Option<NodeId>,
    term: u64,
    state: ServerState,
    leader_since: Instant,
    /// Within this, a follower that answered the leader counts in quorum.
    quorum_window: Duration,
    /// Follower side: sessions whose requests were forwarded, by id.
    pub routes: HashMap<u64, SessionHandle>,
    /// Follower side: forwarded requests still unanswered, by (session,
    /// tid), with their type; told to retry if the leader changes.
    fwd_pending: HashMap<(u64, u64), u16>,
    /// The newest metrics (membership, replication progress).
    pub last_metrics: Option<RaftMetrics<NodeId, MonNode>>,
    /// A learner promotion is in flight; `promote_done` ends it.
    pub promoting: bool,
    pub promote_done: Arc<std::sync::atomic::AtomicBool>,
}

/// Bound on forwarded requests remembered for a retry.
pub const MAX_FWD_PENDING: usize = 4096;

/// The tid of a request or reply that has one.
fn tid_of(msg_type: u16, msg: &Message) -> Option<u64> {
    match msg_type {
        MON_COMMAND => MonCommand::from_message(msg).ok().map(|c| c.tid),
        OSD_MKFS => OsdMkfs::from_message(msg).ok().map(|r| r.tid),
        MON_COMMAND_REPLY => MonCommandReply::from_message(msg).ok().map(|c| c.tid),
        OSD_MKFS_REPLY => OsdMkfsReply::from_message(msg).ok().map(|r| r.tid),
        _ => None,
    }
}

impl Consensus {
    pub async fn start(c: ConsensusConfig<'_>) -> Result<Started, MonError> {
        let (applied_tx, applied) = mpsc::unbounded_channel();
        let (routed_tx, routed) = mpsc::unbounded_channel();
        let (probe_tx, probed) = mpsc::unbounded_channel();
        let peers = Peers::new(c.me.clone(), c.fsid, c.msgr.clone(), routed_tx);
        let probe = SharedProbe::default();
        let sm = StateMachine::open(c.store.clone(), applied_tx, probe.clone())
            .map_err(|e| MonError::Raft(e.to_string()))?;
        let monmap = applied_monmap(&c.store).map_err(|e| MonError::Raft(e.to_string()))?;
        let mut log = LogStore::new(c.store.clone());
        // What the log holds at start, for probes answered before the
        // consensus reports its own figures (then `serve` takes the newer).
        let logged = log
            .get_log_state()
            .await
            .map_err(|e| MonError::Raft(e.to_string()))?
            .last_log_id;
        let voted = log
            .read_vote()
            .await
            .map_err(|e| MonError::Raft(e.to_string()))?;
        {
            let mut p = probe.lock();
            p.last_log = logged.map(|l| l.index);
            p.term = voted.map_or(0, |v| v.leader_id().term);
        }
        let gate = SharedGate::default();
        let config = raft_config(c.opts.mon_heartbeat_interval, c.opts.mon_election_timeout)
            .map_err(MonError::Config)?;
        let quorum_window = Duration::from_millis(config.election_timeout_max);
        let factory = MonNetworkFactory {
            peers: peers.clone(),
        };
        let raft = Raft::new(c.id, config, factory, log, sm)
            .await
            .map_err(|e| MonError::Raft(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| MonError::Raft(e.to_string()))?;
        // A mon made with `mkfs --join` knows no members: the leader's log
        // brings them. A single mon founds its cluster at once; one of
        // several first probes the others (see `server::probe`): a mon
        // whose store was wiped must not found a second history.
        let mut bootstrap = None;
        if !initialized && c.members.len() == 1 {
            tracing::info!("initializing the mon consensus");
            if let Err(e) = raft.initialize(c.members.clone()).await {
                tracing::info!("consensus already initialized: {e}");
            }
        } else if !initialized && !c.members.is_empty() {
            tracing::info!(
                members = c.members.len(),
                "no consensus log yet: probing the other initial mons"
            );
            bootstrap = Some(c.members.clone());
            gate.lock().closed = true;
        }
        let name = c.me.id.clone();
        Ok(Started {
            cons: Consensus {
                raft,
                id: c.id,
                bind: c.bind,
                peers,
                name,
                seen: first_seen(&c.store, &monmap, &c.members, c.id, &c.me.id)?,
                monmap,
                removed: None,
                bootstrap,
                probe_answers: BTreeMap::new(),
                gate: gate.clone(),
                probe_tx,
                last_probe: None,
                members: c.members,
                leader: None,
                term: 0,
                state: ServerState::Follower,
                leader_since: kalmar_common::clock::now(),
                quorum_window,
                routes: HashMap::new(),
                fwd_pending: HashMap::new(),
                last_metrics: None,
                promoting: false,
                promote_done: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            },
            applied,
            routed,
            probed,
            probe,
            gate,
        })
    }

    /// The members (voters and learners) as the log has them.
    pub fn members(&self) -> &BTreeMap<NodeId, MonNode> {
        &self.members
    }

    pub fn is_leader(&self) -> bool {
        self.state == ServerState::Leader && self.leader == Some(self.id)
    }

    pub fn state_name(&self) -> &'static str {
        match self.state {
            ServerState::Leader => "leader",
            ServerState::Follower if self.leader.is_some() => "peon",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
            _ => "electing",
        }
    }

    /// Waits (at most `bound`) until this mon leads.
    pub async fn wait_leader(&self, bound: Duration) {
        let mut m = self.raft.metrics();
        let _ = tokio::time::timeout(bound, async {
            loop {
                let leads = {
                    let b = m.borrow_and_update();
                    b.state == ServerState::Leader && b.current_leader == Some(self.id)
                };
                if leads || m.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// The mons and who is in quorum, as this mon sees it: the leader
    /// counts the followers that answered it lately; a follower knows only
    /// the leader and itself.
    pub fn quorum_view(&self, fsid: &str) -> QuorumView {
        // The committed monmap; before the first commit, the members this
        // mon was made with (mkfs's monmap, epoch 1).
        let (mut members, epoch) = if self.monmap.members.is_empty() {
            (self.members.clone(), u64::from(!self.members.is_empty()))
        } else {
            (self.monmap.members.clone(), self.monmap.epoch)
        };
        if let Some(m) = members.get_mut(&self.id) {
            if m.addr.is_empty() {
                m.addr = self.bind.to_string();
            }
        }
        let now = kalmar_common::clock::now();
        let mut quorum: Vec<NodeId> = match self.leader {
            None => Vec::new(),
            Some(l) if l == self.id && self.is_leader() => members
                .keys()
                .copied()
                .filter(|&id| {
                    id == self.id
                        || self
                            .peers
                            .last_ok(id)
                            .is_some_and(|t| now.saturating_duration_since(t) <= self.quorum_window)
                })
                .collect(),
            Some(l) => vec![l, self.id],
        };
        quorum.sort_unstable();
        quorum.dedup();
        // A leader that no majority answers leads nothing (openraft resumes
        // leadership from a committed vote at a restart, before it hears
        // from anyone): no quorum, no leader, as Ceph shows it.
        let mut leader = self.leader;
        if leader == Some(self.id) && quorum.len() * 2 <= members.len() {
            quorum.clear();
            leader = None;
        }
        QuorumView {
            fsid: fsid.to_string(),
            members,
            quorum,
            leader,
            election_epoch: self.term,
            quorum_age: now.saturating_duration_since(self.leader_since),
            monmap_epoch: epoch,
        }
    }
}

/// The newest committed monmap epoch known to have had this mon: the one
/// recorded, the store's monmap if it has it, and epoch 1 for a mon made
/// with `--initial-members` that names it.
fn first_seen(
    store: &MonStore,
    monmap: &CommittedMonmap,
    initial: &BTreeMap<NodeId, MonNode>,
    id: NodeId,
    name: &str,
) -> Result<Option<u64>, MonError> {
    let recorded: Option<u64> = store
        .get(KEY_SEEN)?
        .and_then(|v| serde_json::from_slice(&v).ok());
    let in_map = monmap.has(id, name).then_some(monmap.epoch);
    let initial = initial
        .get(&id)
        .is_some_and(|n| n.name == name)
        .then_some(1);
    Ok([recorded, in_map, initial].into_iter().flatten().max())
}

/// Store key (this mon's own, not replicated): [`Consensus::seen`].
pub(super) const KEY_SEEN: &str = "monmap/seen_epoch";

/// Takes the listener's events: Raft requests from peer mons are answered
/// here at once (so a busy or blocked server task never stalls an
/// election), everything else goes to the server.
pub(super) async fn demux(
    mut rx: mpsc::Receiver<Event>,
    raft: Raft,
    probe: SharedProbe,
    gate: SharedGate,
    to_server: mpsc::Sender<Event>,
) {
    while let Some(ev) = rx.recv().await {
        if let Event::Message(m) = &ev {
            if m.msg.msg_type == MON_RAFT {
                if m.peer.entity.kind != EntityType::Mon {
                    tracing::warn!(peer = %m.peer.entity, "raft request from a non-mon; ignored");
                    continue;
                }
                match MonRaft::from_message(&m.msg) {
                    Ok(req) => {
                        let raft = raft.clone();
                        let probe = probe.clone();
                        let gate = gate.clone();
                        let from = m.from.clone();
                        tokio::spawn(async move {
                            let reply = network::serve(&raft, &probe, &gate, &req).await;
                            if let Err(e) = from.send(reply.to_message()).await {
                                tracing::debug!("raft reply not sent: {e}");
                            }
                        });
                    }
                    Err(e) => tracing::warn!(peer = %m.peer.entity, "bad raft request: {e}"),
                }
                continue;
            }
        }
        if to_server.send(ev).await.is_err() {
            return;
        }
    }
}

impl Server {
    /// Leadership and membership as openraft reports them.
    pub(super) async fn on_metrics(&mut self, m: &RaftMetrics<NodeId, MonNode>) {
        let was_leader = self.cons.is_leader();
        let old_leader = self.cons.leader;
        self.cons.state = m.state;
        self.cons.leader = m.current_leader;
        self.cons.term = m.current_term;
        self.cons.last_metrics = Some(m.clone());
        if self
            .cons
            .promote_done
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            self.cons.promoting = false;
        }
        let members: BTreeMap<NodeId, MonNode> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.clone()))
            .collect();
        if !members.is_empty() {
            self.cons.members = members;
            if self.cons.bootstrap.take().is_some() {
                tracing::info!("the consensus log started; probing for a bootstrap ends");
            }
        }
        if old_leader != self.cons.leader {
            self.cons.leader_since = kalmar_common::clock::now();
            self.retry_forwarded().await;
            tracing::info!(
                leader = ?self.cons.leader,
                term = self.cons.term,
                state = self.cons.state_name(),
                "mon leader changed"
            );
        }
        let leads = self.cons.is_leader();
        if leads && !was_leader {
            self.take_over();
        } else if !leads && was_leader {
            tracing::info!("mon.{} is no longer the leader", self.st.name);
            self.st.discard_pending();
            self.fail_deferred().await;
        }
        self.refresh_views();
    }

    /// A new leader starts its timers afresh: every up OSD and every mgr
    /// gets a full grace before it can be marked down for silence (the
    /// beacons went to the old leader), and failure reports start over
    /// (OSDs repeat them).
    fn take_over(&mut self) {
        let now = kalmar_common::clock::now();
        let opts = self.st.opts.clone();
        self.st.osd = OsdMon::new_at(self.st.osd.map().clone(), opts.clone(), now, now_us());
        self.st.mgr = MgrMon::new(self.st.mgr.map().clone(), opts, now);
        self.st.started = now;
        tracing::info!(
            term = self.cons.term,
            osdmap_epoch = self.st.osd.map().epoch,
            "mon.{} leads",
            self.st.name
        );
    }

    /// A committed entry was applied to the store: take its epochs, tell
    /// subscribers.
    pub(super) async fn on_applied(&mut self, a: Applied) -> Result<(), MonError> {
        match a {
            Applied::Reload => {
                let loaded = persist::load(&self.store)?;
                self.incs.clear();
                self.osd_first = loaded.osd_first;
                self.mgr_first = loaded.mgr_first;
                let old = self.st.osd.map().clone();
                self.st
                    .note_osdmap_change(&old, &loaded.osdmap, super::wall_us());
                self.st.discard_pending();
                self.st.osd.committed(loaded.osdmap);
                self.st.mgr.committed(loaded.mgrmap);
                self.st.auth.committed(persist::load_auth(&self.store)?);
                self.st.prune_pgs();
                let monmap =
                    applied_monmap(&self.store).map_err(|e| MonError::Raft(e.to_string()))?;
                self.monmap_committed(monmap);
            }
            Applied::Monmap(m) => self.monmap_committed(m),
            Applied::Maps {
                osd,
                mgr,
                osd_first,
                mgr_first,
                auth,
            } => {
                if let Some(db) = auth {
                    self.st.auth.committed(*db);
                }
                if self.st.has_pending() {
                    // Built on the epoch just replaced: it cannot commit.
                    self.st.discard_pending();
                    self.fail_deferred().await;
                }
                self.osd_first = osd_first;
                self.mgr_first = mgr_first;
                if let Some(boxed) = osd {
                    let (map, inc) = *boxed;
                    let old = self.st.osd.map().clone();
                    self.st.note_osdmap_change(&old, &map, super::wall_us());
                    if !inc.is_empty() {
                        self.incs.insert(map.epoch, Blob(inc));
                    }
                    while self.incs.len() > INC_CACHE_EPOCHS {
                        self.incs.pop_first();
                    }
                    self.incs.retain(|e, _| *e >= osd_first);
                    tracing::debug!(epoch = map.epoch, "osdmap committed");
                    self.st.osd.committed(map);
                    self.st.prune_pgs();
                }
                if let Some(m) = mgr {
                    tracing::info!(epoch = m.epoch, active = %m.active_name, available = m.available, "mgrmap committed");
                    self.mgr_client.handle_mgrmap(&m);
                    self.st.mgr.committed(m);
                }
            }
        }
        self.refresh_views();
        let sessions: Vec<u64> = self.subs.keys().copied().collect();
        for s in sessions {
            self.publish_to(s).await;
        }
        Ok(())
    }

    /// Requests forwarded to a leader that is gone get "retry" now, not
    /// at their client's timeout.
    async fn retry_forwarded(&mut self) {
        for ((session, tid), msg_type) in std::mem::take(&mut self.cons.fwd_pending) {
            let Some(h) = self.cons.routes.get(&session).cloned() else {
                continue;
            };
            if let Some(r) = retry_reply(msg_type, tid) {
                if let Err(e) = h.send(r).await {
                    tracing::debug!("retry reply not sent: {e}");
                }
            }
        }
    }

    /// The leader's reply to a message this mon forwarded.
    pub(super) async fn on_routed(&mut self, r: MonRoute) {
        let Some(h) = self.cons.routes.get(&r.session).cloned() else {
            return;
        };
        let msg = Message::new(r.msg_type, r.payload.0);
        if let Some(tid) = tid_of(r.msg_type, &msg) {
            self.cons.fwd_pending.remove(&(r.session, tid));
        }
        if let Err(e) = h.send(msg).await {
            tracing::debug!("routed reply not sent: {e}");
        }
    }

    /// A follower hands a message to the leader; with no leader known,
    /// requests are told to retry and one-way messages are dropped (their
    /// senders repeat them).
    pub(super) async fn forward(&mut self, m: Incoming) {
        let leader = self.cons.leader.filter(|l| *l != self.cons.id);
        let conn = leader.and_then(|l| {
            let node = self.cons.members.get(&l)?;
            self.cons.peers.get(l, node).ok()
        });
        if let Some(conn) = conn.filter(|c| c.connection().is_connected()) {
            if self.cons.routes.len() >= MAX_ROUTES && !self.cons.routes.contains_key(&m.from.id())
            {
                self.cons.routes.retain(|_, h| !h.is_closed());
            }
            if self.cons.routes.len() < MAX_ROUTES {
                self.cons.routes.insert(m.from.id(), m.from.clone());
            }
            let fwd = MonForward {
                session: m.from.id(),
                entity: m.peer.entity.to_string(),
                msg_type: m.msg.msg_type,
                payload: Blob(m.msg.contiguous().to_vec()),
            };
            let tid = tid_of(m.msg.msg_type, &m.msg);
            match conn.connection().try_send(fwd.to_message()) {
                Ok(_) => {
                    if let Some(tid) = tid {
                        if self.cons.fwd_pending.len() < MAX_FWD_PENDING {
                            self.cons
                                .fwd_pending
                                .insert((m.from.id(), tid), m.msg.msg_type);
                        }
                    }
                    return;
                }
                Err(e) => tracing::debug!("forwarding to the leader failed: {e}"),
            }
        }
        no_leader(&ReplyTo::Session(m.from.clone()), m.msg.msg_type, &m.msg).await;
    }

    /// The leader takes a message a follower forwarded.
    pub(super) async fn forwarded(&mut self, m: Incoming) {
        if m.peer.entity.kind != EntityType::Mon {
            tracing::warn!(peer = %m.peer.entity, "forwarded message from a non-mon; closing");
            m.from.close("only mons forward");
            return;
        }
        let f = match MonForward::from_message(&m.msg) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(peer = %m.peer.entity, "bad forwarded message: {e}");
                return;
            }
        };
        let reply = ReplyTo::Routed {
            via: m.from.clone(),
            session: f.session,
        };
        let inner = Message::new(f.msg_type, f.payload.0);
        if !self.cons.is_leader() || f.msg_type == MON_FORWARD || f.msg_type == MON_SUBSCRIBE {
            no_leader(&reply, f.msg_type, &inner).await;
            return;
        }
        let entity = match f.entity.parse::<EntityName>() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(peer = %m.peer.entity, "forwarded message names a bad entity: {e}");
                return;
            }
        };
        self.dispatch(Origin { entity, reply }, inner).await;
    }

    /// On the leader: commits the pending epochs through the log, then
    /// sends the replies that waited (or their failures).
    pub(super) async fn commit(
        &mut self,
        applied: &mut mpsc::UnboundedReceiver<Applied>,
    ) -> Result<(), MonError> {
        if !self.cons.is_leader() {
            if self.st.has_pending() {
                self.st.discard_pending();
            }
            self.fail_deferred().await;
            return Ok(());
        }
        let t0 = kalmar_common::clock::now();
        let stamp = now_us();
        let commit = if self.st.osd.map().epoch == 0 {
            // The first leader of a new cluster of several mons writes
            // epoch 1 for all of them.
            let (map, mgr) = persist::initial_maps(self.st.osd.map().fsid, &self.st.opts, stamp);
            self.st.discard_pending();
            tracing::info!("creating the cluster's first epochs");
            let auth = persist::auth_seed(&self.store)?.map(|db| AuthVersion {
                version: db.version,
                db: db.to_bytes(),
            });
            MapCommit {
                auth,
                osd: Some(OsdEpoch {
                    epoch: 1,
                    full: map.encode_sealed(),
                    inc: None,
                    new_first: 1,
                }),
                mgr: Some(MgrEpoch {
                    epoch: 1,
                    map: mgr.encode_sealed(),
                    new_first: 1,
                }),
            }
        } else {
            let osd = self.st.osd.take_pending(stamp).map_err(MonError::Map)?;
            let mgr = self.st.mgr.take_pending();
            let auth = self.st.auth.take_pending().map(|db| AuthVersion {
                version: db.version,
                db: db.to_bytes(),
            });
            if osd.is_none() && mgr.is_none() && auth.is_none() {
                self.flush_deferred().await;
                return Ok(());
            }
            let osd = osd.map(|(map, inc)| OsdEpoch {
                epoch: map.epoch,
                new_first: trim_target(
                    self.osd_first,
                    map.epoch,
                    self.st.opts.mon_min_osdmap_epochs,
                    self.st.osd.min_last_epoch_clean(),
                ),
                full: map.encode_sealed(),
                inc: Some(inc.encode_sealed()),
            });
            let mgr = mgr.map(|m| MgrEpoch {
                epoch: m.epoch,
                new_first: trim_target(
                    self.mgr_first,
                    m.epoch,
                    self.st.opts.mon_min_osdmap_epochs,
                    None,
                ),
                map: m.encode_sealed(),
            });
            MapCommit { osd, mgr, auth }
        };
        let bound = self.st.opts.mon_commit_timeout;
        match tokio::time::timeout(bound, self.cons.raft.client_write(commit)).await {
            Ok(Ok(resp)) if resp.data.applied => {
                self.perf.paxos.inc(PAXOS_COMMIT, 1);
                self.perf.paxos.tinc(PAXOS_COMMIT_LATENCY, t0.elapsed());
                // The state machine applied it before client_write
                // returned: take that (and anything before it) now.
                while let Ok(a) = applied.try_recv() {
                    self.on_applied(a).await?;
                }
                self.flush_deferred().await;
            }
            Ok(Ok(resp)) => {
                tracing::info!("map commit refused by the log: {}", resp.data.reason);
                self.fail_deferred().await;
            }
            Ok(Err(openraft::error::RaftError::Fatal(e))) => {
                tracing::error!("consensus failed, stopping: {e}");
                self.fail_deferred().await;
                return Err(MonError::Raft(e.to_string()));
            }
            Ok(Err(e)) => {
                tracing::info!("map commit failed: {e}");
                self.fail_deferred().await;
            }
            Err(_) => {
                tracing::warn!(
                    bound_ms = bound.as_millis() as u64,
                    "map commit timed out (no majority?)"
                );
                self.fail_deferred().await;
            }
        }
        Ok(())
    }
}

/// "No leader now, retry" for a request of `msg_type` with `tid`.
fn retry_reply(msg_type: u16, tid: u64) -> Option<Message> {
    const WHY: &str = "no mon leader right now (no quorum, or it changed); retry";
    match msg_type {
        MON_COMMAND => Some(
            MonCommandReply {
                tid,
                retval: EAGAIN,
                outs: WHY.into(),
                outbuf: Blob::default(),
            }
            .to_message(),
        ),
        OSD_MKFS => Some(
            OsdMkfsReply {
                tid,
                retval: EAGAIN,
                osd_id: -1,
                fsid: Uuid::nil(),
                error: WHY.into(),
            }
            .to_message(),
        ),
        _ => None,
    }
}

/// The answer when no leader can take a message now.
async fn no_leader(to: &ReplyTo, msg_type: u16, msg: &Message) {
    let reply = tid_of(msg_type, msg).and_then(|tid| retry_reply(msg_type, tid));
    if let Some(r) = reply {
        if let Err(e) = to.send(r).await {
            tracing::debug!("reply not sent: {e}");
        }
    }
}
