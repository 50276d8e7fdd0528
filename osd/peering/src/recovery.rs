//! Log-based recovery planning: which objects to pull to the primary,
//! which to push to which replicas, bounded by `osd_recovery_max_active`.

use std::collections::{BTreeMap, BTreeSet};

use kalmar_maps::OsdId;
use serde::Serialize;

use crate::eversion::Eversion;
use crate::missing::PgMissing;
use crate::object::{ObjectBound, ObjectName};

/// What the primary knows about one other copy.
#[derive(Debug, Clone, Copy)]
pub struct PeerCopy<'a> {
    pub missing: &'a PgMissing,
    pub last_update: Eversion,
    pub last_backfill: &'a ObjectBound,
}

impl PeerCopy<'_> {
    /// Whether this copy holds `oid` at `need` (or newer, which only the
    /// authoritative log can name, so exactly `need`).
    pub fn has(&self, oid: &str, need: Eversion) -> bool {
        self.last_backfill.covers(oid) && self.last_update >= need && !self.missing.is_missing(oid)
    }
}

/// One recovery operation for the OSD to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum RecoveryOp {
    /// Fetch `oid` at `version` from `from` into the primary's store.
    Pull {
        oid: ObjectName,
        version: Eversion,
        from: OsdId,
    },
    /// Send the primary's copy of `oid` to each of `to`.
    Push {
        oid: ObjectName,
        version: Eversion,
        to: Vec<OsdId>,
    },
}

impl RecoveryOp {
    pub fn oid(&self) -> &str {
        match self {
            RecoveryOp::Pull { oid, .. } | RecoveryOp::Push { oid, .. } => oid,
        }
    }
}

/// Inputs of [`plan_recovery`].
#[derive(Debug, Clone, Copy)]
pub struct RecoveryInputs<'a> {
    pub primary_missing: &'a PgMissing,
    /// Every other copy whose missing set is known; pushes go to those in
    /// `targets`, pulls may come from any.
    pub peers: &'a BTreeMap<OsdId, PeerCopy<'a>>,
    /// Copies that must end up complete (acting + backfill targets with
    /// log-recoverable objects), excluding the primary.
    pub targets: &'a BTreeSet<OsdId>,
    /// Objects with an operation under way.
    pub in_flight: &'a BTreeSet<ObjectName>,
    /// Objects a client is waiting for: recovered first.
    pub prioritized: &'a [ObjectName],
    pub max_active: usize,
}

/// A batch of operations, and objects no copy can provide.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryPlan {
    pub ops: Vec<RecoveryOp>,
    pub unfound: Vec<ObjectName>,
}

/// Plans up to `max_active - in_flight` operations: pulls of what the
/// primary lacks (from any copy that has the needed version), then pushes
/// of what replicas lack. An object missing on the primary is pushed only
/// after its pull completes.
pub fn plan_recovery(r: RecoveryInputs<'_>) -> RecoveryPlan {
    let mut plan = RecoveryPlan::default();
    let mut budget = r.max_active.saturating_sub(r.in_flight.len());
    let mut planned: BTreeSet<&str> = BTreeSet::new();

    // Candidate objects: prioritized first, then object order.
    let mut order: Vec<&str> = r.prioritized.iter().map(String::as_str).collect();
    order.extend(r.primary_missing.items.keys().map(String::as_str));
    for t in r.targets {
        if let Some(p) = r.peers.get(t) {
            order.extend(p.missing.items.keys().map(String::as_str));
        }
    }

    for oid in order {
        if budget == 0 {
            break;
        }
        if r.in_flight.contains(oid) || !planned.insert(oid) {
            continue;
        }
        if let Some(m) = r.primary_missing.get(oid) {
            let source = r
                .peers
                .iter()
                .find(|(_, p)| p.has(oid, m.need))
                .map(|(&o, _)| o);
            match source {
                Some(from) => {
                    plan.ops.push(RecoveryOp::Pull {
                        oid: oid.to_string(),
                        version: m.need,
                        from,
                    });
                    budget -= 1;
                }
                None => plan.unfound.push(oid.to_string()),
            }
            continue;
        }
        let mut to = Vec::new();
        let mut version = None;
        for t in r.targets {
            if let Some(m) = r.peers.get(t).and_then(|p| p.missing.get(oid)) {
                to.push(*t);
                version = Some(version.map_or(m.need, |v: Eversion| v.max(m.need)));
            }
        }
        if let Some(version) = version {
            plan.ops.push(RecoveryOp::Push {
                oid: oid.to_string(),
                version,
                to,
            });
            budget -= 1;
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(v: u64) -> Eversion {
        Eversion::new(1, v)
    }

    #[test]
    fn pulls_then_pushes_within_budget() {
        let mut pm = PgMissing::new();
        pm.add("a", ev(5), ev(1));
        pm.add("z", ev(6), ev(1));
        let mut m1 = PgMissing::new();
        m1.add("b", ev(3), ev(1));
        m1.add("z", ev(6), ev(1));
        let m2 = PgMissing::new();
        let max = ObjectBound::Max;
        let peers = BTreeMap::from([
            (
                1,
                PeerCopy {
                    missing: &m1,
                    last_update: ev(6),
                    last_backfill: &max,
                },
            ),
            (
                2,
                PeerCopy {
                    missing: &m2,
                    last_update: ev(6),
                    last_backfill: &max,
                },
            ),
        ]);
        let targets = BTreeSet::from([1, 2]);
        let none = BTreeSet::new();
        let plan = plan_recovery(RecoveryInputs {
            primary_missing: &pm,
            peers: &peers,
            targets: &targets,
            in_flight: &none,
            prioritized: &[],
            max_active: 10,
        });
        assert_eq!(
            plan.ops,
            vec![
                RecoveryOp::Pull {
                    oid: "a".into(),
                    version: ev(5),
                    from: 1
                },
                RecoveryOp::Pull {
                    oid: "z".into(),
                    version: ev(6),
                    from: 2
                },
                RecoveryOp::Push {
                    oid: "b".into(),
                    version: ev(3),
                    to: vec![1]
                },
            ]
        );
        assert!(plan.unfound.is_empty());
        // budget and priority
        let busy = BTreeSet::from(["q".to_string()]);
        let plan = plan_recovery(RecoveryInputs {
            primary_missing: &pm,
            peers: &peers,
            targets: &targets,
            in_flight: &busy,
            prioritized: &["b".to_string()],
            max_active: 2,
        });
        assert_eq!(plan.ops.len(), 1);
        assert_eq!(plan.ops[0].oid(), "b");
    }

    #[test]
    fn unfound_when_no_copy_has_it() {
        let mut pm = PgMissing::new();
        pm.add("a", ev(5), ev(1));
        let mut m1 = PgMissing::new();
        m1.add("a", ev(5), ev(1));
        let max = ObjectBound::Max;
        let behind = ObjectBound::Object("0".into());
        let m2 = PgMissing::new();
        let peers = BTreeMap::from([
            (
                1,
                PeerCopy {
                    missing: &m1,
                    last_update: ev(6),
                    last_backfill: &max,
                },
            ),
            // complete log but mid-backfill below "a": cannot serve it
            (
                2,
                PeerCopy {
                    missing: &m2,
                    last_update: ev(6),
                    last_backfill: &behind,
                },
            ),
        ]);
        let none = BTreeSet::new();
        let plan = plan_recovery(RecoveryInputs {
            primary_missing: &pm,
            peers: &peers,
            targets: &BTreeSet::from([1]),
            in_flight: &none,
            prioritized: &[],
            max_active: 4,
        });
        assert!(plan.ops.is_empty());
        assert_eq!(plan.unfound, vec!["a".to_string()]);
    }
}
