//! The monmap's history as Ceph numbers it: epoch 1 is the membership mkfs
//! made, and every committed change of the mons (one `mon add`, one `mon
//! rm`) makes the next epoch. Promotions of a learner to a voter and the
//! joint configurations the consensus passes through are not changes of
//! the monmap (its mons and addresses stay the same).
//!
//! Also the pure decisions mons take from what a peer answers to a probe:
//! whether this mon was removed, and whether a mon starting from an empty
//! store joins an existing cluster instead of founding a new one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::monmap::MonNode;

/// Store key (in the snapshot's `meta/` keyspace, so a mon that installs a
/// snapshot gets the epoch with the maps).
pub const KEY_MONMAP_EPOCH: &str = "meta/monmap_epoch";

/// A monmap the log committed: its epoch and mons (by rank).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedMonmap {
    pub epoch: u64,
    pub members: BTreeMap<u64, MonNode>,
}

impl CommittedMonmap {
    /// Whether the mon `id` named `name` is in this monmap (an id given
    /// again to another mon does not count).
    pub fn has(&self, id: u64, name: &str) -> bool {
        self.members.get(&id).is_some_and(|n| n.name == name)
    }
}

/// The epoch after applying a membership with `nodes` on top of `prev`:
/// 1 for the first membership, one more when the mons or their addresses
/// changed, the same otherwise.
pub fn next_epoch(prev: &CommittedMonmap, nodes: &BTreeMap<u64, MonNode>) -> u64 {
    if prev.members.is_empty() && prev.epoch == 0 {
        return 1;
    }
    // A store written before epochs were counted has members but epoch 0.
    let base = prev.epoch.max(1);
    if *nodes == prev.members {
        base
    } else {
        base + 1
    }
}

/// A probe's answer: the peer's committed monmap and how far its log was
/// applied (`None`: it never applied anything, a mon of a cluster that has
/// not formed yet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReply {
    pub monmap: CommittedMonmap,
    pub last_applied: Option<u64>,
    /// The newest index in the mon's log, applied or not: a mon that
    /// acknowledged a leader's entries but was stopped before it applied
    /// them has no applied history, yet it was part of a formed cluster.
    #[serde(default)]
    pub last_log: Option<u64>,
    /// The mon's Raft term: a rebuilt mon takes entries only from a leader
    /// of at least the newest term its peers report.
    #[serde(default)]
    pub term: u64,
}

/// Whether a peer's monmap says this mon (`id`, `name`) was removed. Only
/// a mon that saw itself in a committed monmap (`seen`, the newest such
/// epoch) decides so, and only from a newer monmap without it: monmaps
/// form one history, so a newer one without this mon can only come from a
/// `mon rm`. A mon still catching up (never saw itself) never stops: the
/// older monmaps it reads predate its `mon add`.
pub fn removed_by(seen: Option<u64>, id: u64, name: &str, peer: &CommittedMonmap) -> bool {
    match seen {
        Some(s) => peer.epoch > s && !peer.has(id, name),
        None => false,
    }
}

/// What a mon of several, starting with no log, does after a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrap {
    /// The peer holds no history either: the cluster is being created,
    /// found it with the initial members (every initial mon writes the
    /// same first membership).
    Found,
    /// The peer applied committed entries: the cluster exists and this mon
    /// lost its store. It must not write a membership of its own nor vote
    /// before the leader's log (or snapshot) reached it.
    Join,
}

/// The bootstrap decision from one peer's answer.
pub fn bootstrap_from(reply: &ProbeReply) -> Bootstrap {
    // Index 0 is the initial membership every founding mon writes itself;
    // anything past it was committed by a quorum.
    let past_first = |i: Option<u64>| i.is_some_and(|i| i >= 1);
    if past_first(reply.last_applied) || past_first(reply.last_log) || reply.monmap.epoch >= 1 {
        Bootstrap::Join
    } else {
        Bootstrap::Found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, port: u16) -> MonNode {
        MonNode {
            name: name.into(),
            addr: format!("127.0.0.1:{port}"),
        }
    }

    fn map(epoch: u64, names: &[(u64, &str)]) -> CommittedMonmap {
        CommittedMonmap {
            epoch,
            members: names
                .iter()
                .map(|(id, n)| (*id, node(n, 6789 + *id as u16)))
                .collect(),
        }
    }

    #[test]
    fn epochs_count_membership_changes_only() {
        let abc = map(0, &[(0, "a"), (1, "b"), (2, "c")]).members;
        // mkfs: epoch 1.
        let e1 = CommittedMonmap {
            epoch: next_epoch(&CommittedMonmap::default(), &abc),
            members: abc.clone(),
        };
        assert_eq!(e1.epoch, 1);
        // The same mons again (a promotion, a joint configuration): no new
        // epoch.
        assert_eq!(next_epoch(&e1, &abc), 1);
        // mon add d: 2.
        let mut abcd = abc.clone();
        abcd.insert(3, node("d", 6792));
        let e2 = CommittedMonmap {
            epoch: next_epoch(&e1, &abcd),
            members: abcd.clone(),
        };
        assert_eq!(e2.epoch, 2);
        // d promoted: still 2; mon rm a: 3.
        assert_eq!(next_epoch(&e2, &abcd), 2);
        let mut bcd = abcd.clone();
        bcd.remove(&0);
        assert_eq!(next_epoch(&e2, &bcd), 3);
        // A moved address is a change too.
        let mut moved = abcd.clone();
        moved.insert(3, node("d", 7000));
        assert_eq!(next_epoch(&e2, &moved), 3);
        // A store from before epochs were counted starts at 1.
        let old = CommittedMonmap {
            epoch: 0,
            members: abc.clone(),
        };
        assert_eq!(next_epoch(&old, &abc), 1);
        assert_eq!(next_epoch(&old, &abcd), 2);
    }

    #[test]
    fn only_a_newer_monmap_without_me_removes_me() {
        let with_c = map(3, &[(0, "a"), (1, "b"), (2, "c")]);
        let without_c = map(4, &[(0, "a"), (1, "b")]);
        assert!(removed_by(Some(3), 2, "c", &without_c));
        // An older or equal monmap (a lagging peer) decides nothing.
        assert!(!removed_by(Some(4), 2, "c", &map(3, &[(0, "a")])));
        assert!(!removed_by(Some(3), 2, "c", &with_c));
        // A newer one that has me: still a member.
        assert!(!removed_by(Some(1), 2, "c", &with_c));
        // My rank given to another mon: I was removed.
        assert!(removed_by(
            Some(3),
            2,
            "c",
            &map(5, &[(0, "a"), (1, "b"), (2, "e")])
        ));
        // A mon that never saw itself (mkfs --join, catching up) is not
        // removed by the monmaps from before its `mon add`.
        assert!(!removed_by(None, 3, "d", &without_c));
    }

    #[test]
    fn a_mon_with_no_log_joins_a_cluster_with_history() {
        let fresh = ProbeReply::default();
        assert_eq!(bootstrap_from(&fresh), Bootstrap::Found);
        let founded = ProbeReply {
            last_applied: Some(0),
            ..ProbeReply::default()
        };
        assert_eq!(bootstrap_from(&founded), Bootstrap::Found);
        let formed = ProbeReply {
            last_applied: Some(1),
            ..ProbeReply::default()
        };
        assert_eq!(bootstrap_from(&formed), Bootstrap::Join);
        let with_map = ProbeReply {
            monmap: map(1, &[(0, "a")]),
            last_applied: Some(0),
            ..ProbeReply::default()
        };
        assert_eq!(bootstrap_from(&with_map), Bootstrap::Join);
        // Stopped after it logged a leader's entry, before applying it.
        let logged_only = ProbeReply {
            last_applied: None,
            last_log: Some(1),
            ..ProbeReply::default()
        };
        assert_eq!(bootstrap_from(&logged_only), Bootstrap::Join);
        let founder_log = ProbeReply {
            last_log: Some(0),
            ..ProbeReply::default()
        };
        assert_eq!(bootstrap_from(&founder_log), Bootstrap::Found);
    }
}
