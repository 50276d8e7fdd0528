//! Probing the other mons (as Ceph's mon probes before it joins a
//! quorum): every mon that does not lead asks its peers, now and then,
//! for their committed monmap and how far they applied the log. From the
//! answers it learns that it was removed (a newer monmap without it: it
//! stops), and a mon of several that starts with no log learns whether to
//! found the cluster or to wait for the existing leader's log.

use std::collections::BTreeMap;
use std::time::Duration;

use kalmar_proto::mon::raft_kind;

use super::Server;
use crate::monmap::MonNode;
use crate::monmap_history::{bootstrap_from, removed_by, Bootstrap, CommittedMonmap, ProbeReply};
use crate::raft::NodeId;

/// How often a mon that does not lead probes its peers.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// While bootstrapping, sooner (a new cluster waits on it).
const BOOTSTRAP_PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// Bound on one probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Server {
    /// On the tick: probe the peers when it is time.
    pub(super) fn probe_tick(&mut self) {
        if self.cons.is_leader() || self.cons.removed.is_some() {
            return;
        }
        let every = if self.cons.bootstrap.is_some() {
            BOOTSTRAP_PROBE_INTERVAL
        } else {
            PROBE_INTERVAL
        };
        let now = kalmar_common::clock::now();
        if self
            .cons
            .last_probe
            .is_some_and(|t| now.saturating_duration_since(t) < every)
        {
            return;
        }
        self.cons.last_probe = Some(now);
        let mut targets: BTreeMap<NodeId, MonNode> = BTreeMap::new();
        for m in [
            Some(&self.cons.monmap.members),
            Some(self.cons.members()),
            self.cons.bootstrap.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            targets.extend(m.iter().map(|(id, n)| (*id, n.clone())));
        }
        targets.remove(&self.cons.id);
        for (id, node) in targets {
            let Ok(conn) = self.cons.peers.get(id, &node) else {
                continue;
            };
            let tx = self.cons.probe_tx.clone();
            tokio::spawn(async move {
                match conn.call(raft_kind::PROBE, Vec::new(), PROBE_TIMEOUT).await {
                    Ok(body) => match serde_json::from_slice::<ProbeReply>(&body) {
                        Ok(r) => {
                            let _ = tx.send((id, r));
                        }
                        Err(e) => tracing::debug!(peer = id, "bad probe reply: {e}"),
                    },
                    Err(e) => tracing::debug!(peer = id, "probe: {e}"),
                }
            });
        }
    }

    /// A peer's answer.
    pub(super) fn on_probe_reply(&mut self, from: NodeId, reply: ProbeReply) {
        if let Some(members) = self.cons.bootstrap.take() {
            match bootstrap_from(&reply) {
                Bootstrap::Found if self.cons.probe_answers.is_empty() => {
                    tracing::info!(
                        peer = from,
                        "the other mons hold no history: founding the cluster with the initial members"
                    );
                    let raft = self.cons.raft.clone();
                    tokio::spawn(async move {
                        if let Err(e) = raft.initialize(members).await {
                            tracing::info!("consensus already initialized: {e}");
                        }
                    });
                }
                _ => {
                    if self.cons.probe_answers.is_empty() {
                        tracing::warn!(
                            peer = from,
                            peer_applied = ?reply.last_applied,
                            monmap_epoch = reply.monmap.epoch,
                            "the cluster exists and this mon has no log (a lost store?): it \
                             does not vote, and waits for every other member's answer before \
                             it takes a leader's log"
                        );
                    }
                    self.cons.probe_answers.insert(from, reply.clone());
                    let others = members.keys().filter(|id| **id != self.cons.id).count();
                    if self.cons.probe_answers.len() >= others {
                        // Every member answered: the newest term among them
                        // bounds the leaders this mon follows.
                        let newest = self
                            .cons
                            .probe_answers
                            .values()
                            .map(|r| r.term)
                            .max()
                            .unwrap_or(0);
                        let mut g = self.cons.gate.lock();
                        g.closed = false;
                        g.min_leader_term = newest;
                        tracing::info!(
                            min_leader_term = newest,
                            "every member answered: taking the log of a leader of that term or newer"
                        );
                    } else {
                        self.cons.bootstrap = Some(members);
                    }
                }
            }
        }
        if removed_by(self.cons.seen, self.cons.id, &self.cons.name, &reply.monmap) {
            tracing::info!(
                peer = from,
                epoch = reply.monmap.epoch,
                "a peer's monmap no longer has this mon"
            );
            self.cons.removed = Some(reply.monmap.epoch);
        }
    }

    /// The log committed `m` (or a snapshot brought it).
    pub(super) fn monmap_committed(&mut self, m: CommittedMonmap) {
        if m == self.cons.monmap {
            return;
        }
        tracing::info!(
            epoch = m.epoch,
            mons = ?m.members.values().map(|n| &n.name).collect::<Vec<_>>(),
            "monmap changed"
        );
        if m.has(self.cons.id, &self.cons.name) {
            self.cons.seen = Some(m.epoch);
            // Kept so that a removed mon started again knows it was a
            // member (its own store may already hold the monmap without it).
            let mut b = crate::store::Batch::default();
            b.put(super::consensus::KEY_SEEN, m.epoch.to_string().into_bytes());
            if let Err(e) = self.store.commit(&b) {
                tracing::warn!("recording the monmap epoch seen: {e}");
            }
        } else if removed_by(self.cons.seen, self.cons.id, &self.cons.name, &m) {
            self.cons.removed = Some(m.epoch);
        }
        self.cons.monmap = m;
    }
}
