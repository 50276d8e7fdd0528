//! `mon add NAME ADDR` and `mon rm NAME`: membership changes through the
//! log. A new mon joins as a learner (it cannot weaken the quorum while it
//! is not running or still catching up); the leader makes it a voter once
//! its log has caught up (see [`Server::promote_learners`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use kalmar_common::encoding::Blob;
use kalmar_proto::mon::MonCommandReply;
use kalmar_proto::Payload;
use openraft::ChangeMembers;
use serde_json::Value;

use super::{Origin, Server};
use crate::errors::{EEXIST, EINVAL};
use crate::monmap::MonNode;
use crate::raft::NodeId;

/// A learner whose matched log is this close to the leader's is promoted.
pub const PROMOTE_LAG_ENTRIES: u64 = 16;

impl Server {
    /// Runs `mon add` / `mon rm` (on the leader): the change is committed
    /// through the log by a task, which replies when it is done.
    pub(super) async fn membership_command(&mut self, m: &Origin, tid: u64, cmd: &Value) {
        let prefix = cmd.get("prefix").and_then(Value::as_str).unwrap_or("");
        let name = cmd
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_start_matches("mon.")
            .to_string();
        let reply_to = m.reply.clone();
        let answer = move |retval: i32, outs: String| MonCommandReply {
            tid,
            retval,
            outs,
            outbuf: Blob::default(),
        };
        let members = self.cons.members().clone();
        let fsid = self.st.osd.map().fsid;
        let raft = self.cons.raft.clone();
        let refuse = |retval: i32, outs: String| async move {
            let _ = reply_to.send(answer(retval, outs).to_message()).await;
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return refuse(EINVAL, format!("invalid mon name '{name}'")).await;
        }
        match prefix {
            "mon add" => {
                let addr: SocketAddr = match cmd.get("addr").and_then(Value::as_str).map(str::parse)
                {
                    Some(Ok(a)) => a,
                    _ => return refuse(EINVAL, "mon add needs an address IP:PORT".into()).await,
                };
                if let Some((id, n)) = members.iter().find(|(_, n)| n.name == name) {
                    let same = n.addr == addr.to_string();
                    return refuse(
                        if same { 0 } else { EEXIST },
                        format!("mon.{name} already exists at {} (rank {id})", n.addr),
                    )
                    .await;
                }
                if members.values().any(|n| n.addr == addr.to_string()) {
                    return refuse(EEXIST, format!("address {addr} is another mon's")).await;
                }
                let id = members.keys().max().map_or(0, |m| m + 1);
                let node = MonNode {
                    name: name.clone(),
                    addr: addr.to_string(),
                };
                let reply_to = m.reply.clone();
                tokio::spawn(async move {
                    let r = match raft.add_learner(id, node, false).await {
                        Ok(_) => answer(
                            0,
                            format!(
                                "adding mon.{name} at {addr} (rank {id}); on its host run \
                                 `kalmar-mon mkfs --name {name} --join {id} --fsid {fsid} --data DIR` \
                                 and `kalmar-mon run --name {name} --data DIR --bind {addr}`; \
                                 it votes once it has caught up"
                            ),
                        ),
                        Err(e) => answer(super::EAGAIN, format!("mon add: {e}; retry")),
                    };
                    let _ = reply_to.send(r.to_message()).await;
                });
            }
            "mon rm" => {
                let Some(id) = members
                    .iter()
                    .find(|(_, n)| n.name == name)
                    .map(|(id, _)| *id)
                else {
                    // As Ceph: removing an absent mon succeeds, so a client
                    // that retries after the removed leader closed its
                    // session (it stops as soon as it applies its removal)
                    // gets the answer of the first attempt.
                    return refuse(
                        0,
                        format!("mon.{name} does not exist or has already been removed"),
                    )
                    .await;
                };
                let Some(metrics) = self.cons.last_metrics.as_ref() else {
                    return refuse(
                        super::EAGAIN,
                        "the membership is not known yet; retry".into(),
                    )
                    .await;
                };
                let membership = metrics.membership_config.membership();
                let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
                if membership.get_joint_config().len() > 1 || self.cons.promoting {
                    return refuse(
                        super::EAGAIN,
                        "another membership change is in progress; retry".into(),
                    )
                    .await;
                }
                let view = self.cons.quorum_view(&fsid.to_string());
                let alive: BTreeSet<NodeId> = view.quorum.iter().copied().collect();
                let change = match removal(&voters, &alive, id) {
                    Ok(c) => c,
                    Err(why) => {
                        return refuse(EINVAL, format!("cannot remove mon.{name}: {why}")).await
                    }
                };
                let reply_to = m.reply.clone();
                tokio::spawn(async move {
                    let ids = BTreeSet::from([id]);
                    let change = match change {
                        Removal::Voter => ChangeMembers::RemoveVoters(ids),
                        Removal::Learner => ChangeMembers::RemoveNodes(ids),
                    };
                    let r = match raft.change_membership(change, false).await {
                        Ok(_) => answer(0, format!("removed mon.{name} at rank {id}")),
                        Err(e) => answer(super::EAGAIN, format!("mon rm: {e}; retry")),
                    };
                    let _ = reply_to.send(r.to_message()).await;
                });
            }
            _ => refuse(EINVAL, format!("unknown membership command '{prefix}'")).await,
        }
    }

    /// On the leader's tick: learners whose log has caught up become
    /// voters (one change at a time).
    pub(super) fn promote_learners(&mut self) {
        if !self.cons.is_leader() || self.cons.promoting {
            return;
        }
        let Some(m) = self.cons.last_metrics.as_ref() else {
            return;
        };
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let last = m.last_log_index.unwrap_or(0);
        let ready: BTreeSet<NodeId> = membership
            .learner_ids()
            .filter(|id| !voters.contains(id))
            .filter(|id| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .is_some_and(|l| l.index + PROMOTE_LAG_ENTRIES >= last)
            })
            .collect();
        if ready.is_empty() {
            return;
        }
        tracing::info!(?ready, "promoting caught-up mons to voters");
        self.cons.promoting = true;
        let raft = self.cons.raft.clone();
        let done = self.cons.promote_done.clone();
        tokio::spawn(async move {
            if let Err(e) = raft
                .change_membership(ChangeMembers::AddVoterIds(ready), false)
                .await
            {
                tracing::info!("promoting mons failed (retried): {e}");
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
}

/// What removing a mon changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// A voter: the quorum shrinks (through a joint configuration).
    Voter,
    /// A learner (added, not yet promoted): only the node goes.
    Learner,
}

/// Whether mon `id` may be removed, given the voters and the mons in
/// quorum now (`alive`): never the last voter, and never when the voters
/// left would not hold a majority of live mons (the change itself could not
/// commit, and the cluster would be stuck until they came back).
pub fn removal(
    voters: &BTreeSet<NodeId>,
    alive: &BTreeSet<NodeId>,
    id: NodeId,
) -> Result<Removal, String> {
    if !voters.contains(&id) {
        return Ok(Removal::Learner);
    }
    if voters.len() <= 1 {
        return Err("it is the last mon".into());
    }
    let left: BTreeSet<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
    let live_left = left.intersection(alive).count();
    if live_left * 2 <= left.len() {
        return Err(format!(
            "only {live_left} of the {} mons left are in quorum; a majority of them must be \
             (start the missing mons first, or remove a dead one)",
            left.len()
        ));
    }
    Ok(Removal::Voter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn removal_keeps_a_live_majority() {
        let three = set(&[0, 1, 2]);
        // All alive: any may go.
        for id in 0..3 {
            assert_eq!(removal(&three, &three, id), Ok(Removal::Voter));
        }
        // One dead: removing the dead one leaves 2 of 2 alive.
        assert_eq!(removal(&three, &set(&[0, 1]), 2), Ok(Removal::Voter));
        // One dead: removing a live one leaves 1 of 2 alive.
        assert!(removal(&three, &set(&[0, 1]), 1).is_err());
        // The last mon never goes.
        assert!(removal(&set(&[0]), &set(&[0]), 0).is_err());
        // A learner always may.
        assert_eq!(removal(&three, &set(&[0]), 7), Ok(Removal::Learner));
        // Four voters, one dead: removing the dead one leaves 3 of 3, a
        // live one 2 of 3.
        let four = set(&[0, 1, 2, 3]);
        assert_eq!(removal(&four, &set(&[0, 1, 2]), 3), Ok(Removal::Voter));
        assert_eq!(removal(&four, &set(&[0, 1, 2]), 2), Ok(Removal::Voter));
        assert!(removal(&four, &set(&[0, 1]), 1).is_err());
        // Two voters: removing either leaves a single live one.
        assert_eq!(removal(&set(&[0, 1]), &set(&[0, 1]), 1), Ok(Removal::Voter));
        assert!(removal(&set(&[0, 1]), &set(&[0]), 0).is_err());
    }
}
