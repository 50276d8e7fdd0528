//! The prior set (`PeeringState::build_prior`): which OSDs the primary
//! must hear from before it can trust that it has seen every write that
//! may have been acknowledged.

use std::collections::{BTreeMap, BTreeSet};

use kalmar_maps::{Epoch, OsdId};
use serde::Serialize;

use crate::info::PgHistory;
use crate::intervals::{is_osd, ClusterView, PastIntervals, PgMapping};

/// Result of [`build_prior`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PriorSet {
    /// Up OSDs to query for their info.
    pub probe: BTreeSet<OsdId>,
    /// Down OSDs of maybe-rw intervals (informational: `pg query`).
    pub down: BTreeSet<OsdId>,
    /// Down OSDs we must wait for, with their `lost_at` (0 = not lost).
    pub blocked_by: BTreeMap<OsdId, Epoch>,
    /// Some interval that may have accepted writes has no surviving
    /// member: peering cannot know the newest data and the PG is down.
    pub pg_down: bool,
}

impl PriorSet {
    /// Whether a new map changes the prior set's assumptions: a probed OSD
    /// went down, or a down one came up or was declared lost. Peering
    /// restarts if so.
    pub fn affected_by_map(&self, map: &ClusterView) -> bool {
        self.probe.iter().any(|&o| !map.is_up(o))
            || self.down.iter().any(|&o| {
                map.is_up(o)
                    || self
                        .blocked_by
                        .get(&o)
                        .is_some_and(|&l| map.osd(o).lost_at != l)
            })
    }
}

/// Builds the prior set for the current interval.
///
/// Every up member of the current up and acting sets is probed. Then, for
/// each past interval since the last activation (`history.last_epoch_started`)
/// that may have gone read-write, every up member of its acting set is
/// probed; an interval whose acting members are all down (and not declared
/// lost) makes the PG down, since only they may hold its writes.
pub fn build_prior(
    current: &PgMapping,
    map: &ClusterView,
    past: &PastIntervals,
    history: &PgHistory,
) -> PriorSet {
    let mut ps = PriorSet::default();
    for o in current.up_members().chain(current.acting_members()) {
        if map.is_up(o) {
            ps.probe.insert(o);
        }
    }
    for interval in past.iter().rev() {
        if interval.last < history.last_epoch_started {
            break;
        }
        if !interval.maybe_went_rw {
            continue;
        }
        let mut any_survivor = false;
        let mut candidates_down = BTreeMap::new();
        for &o in interval.acting.iter().filter(|&&o| is_osd(o)) {
            let v = map.osd(o);
            if map.is_up(o) {
                ps.probe.insert(o);
                any_survivor = true;
            } else if !v.exists {
                // Gone from the map: its data is gone; nothing to wait for.
                ps.down.insert(o);
            } else if v.lost_at > interval.first {
                // Declared lost by an admin: accept its writes as lost.
                ps.down.insert(o);
                any_survivor = true;
            } else {
                ps.down.insert(o);
                candidates_down.insert(o, v.lost_at);
            }
        }
        if !any_survivor && !candidates_down.is_empty() {
            ps.pg_down = true;
            ps.blocked_by.extend(candidates_down);
        }
    }
    ps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intervals::{Interval, OsdView};

    fn map(up: &[OsdId], lost: &[(OsdId, Epoch)]) -> ClusterView {
        let mut osds = vec![
            OsdView {
                exists: true,
                ..Default::default()
            };
            6
        ];
        for &o in up {
            osds[o as usize].up = true;
        }
        for &(o, e) in lost {
            osds[o as usize].lost_at = e;
        }
        osds[5].exists = false;
        ClusterView {
            epoch: 30,
            osds,
            flags: 0,
        }
    }

    fn past(list: &[(Epoch, Epoch, &[OsdId], bool)]) -> PastIntervals {
        let mut p = PastIntervals::new();
        for &(first, last, acting, rw) in list {
            p.add(Interval {
                first,
                last,
                up: acting.to_vec(),
                acting: acting.to_vec(),
                up_primary: acting[0],
                primary: acting[0],
                maybe_went_rw: rw,
            });
        }
        p
    }

    fn current(acting: &[OsdId]) -> PgMapping {
        PgMapping {
            epoch: 30,
            pool_exists: true,
            pool_size: 3,
            pool_min_size: 1,
            pg_num: 1,
            up: acting.to_vec(),
            up_primary: acting[0],
            acting: acting.to_vec(),
            acting_primary: acting[0],
        }
    }

    #[test]
    fn table() {
        let h = |les| PgHistory {
            last_epoch_started: les,
            ..Default::default()
        };
        // (up now, lost, past, les, current acting) -> (probe, pg_down, blocked)
        type Case = (
            &'static [OsdId],
            &'static [(OsdId, Epoch)],
            &'static [(Epoch, Epoch, &'static [OsdId], bool)],
            Epoch,
            &'static [OsdId],
            &'static [OsdId],
            bool,
            &'static [OsdId],
        );
        let cases: &[Case] = &[
            // all survivors probed
            (
                &[0, 1, 2],
                &[],
                &[(10, 19, &[0, 1], true)],
                10,
                &[2],
                &[0, 1, 2],
                false,
                &[],
            ),
            // rw interval with everybody down -> down
            (
                &[2],
                &[],
                &[(10, 19, &[0, 1], true)],
                10,
                &[2],
                &[2],
                true,
                &[0, 1],
            ),
            // ... but not if it never went rw
            (
                &[2],
                &[],
                &[(10, 19, &[0, 1], false)],
                10,
                &[2],
                &[2],
                false,
                &[],
            ),
            // ... nor if it predates the last activation
            (
                &[2],
                &[],
                &[(10, 19, &[0, 1], true)],
                20,
                &[2],
                &[2],
                false,
                &[],
            ),
            // lost OSDs do not block
            (
                &[2],
                &[(0, 25), (1, 25)],
                &[(10, 19, &[0, 1], true)],
                10,
                &[2],
                &[2],
                false,
                &[],
            ),
            // lost before the interval began: still blocks
            (
                &[2],
                &[(0, 5), (1, 25)],
                &[(10, 19, &[0, 1], true)],
                10,
                &[2],
                &[2],
                false,
                &[],
            ),
            (
                &[2],
                &[(0, 5)],
                &[(10, 19, &[0, 1], true)],
                10,
                &[2],
                &[2],
                true,
                &[0, 1],
            ),
            // nonexistent OSD: nothing to wait for
            (
                &[2],
                &[],
                &[(10, 19, &[5], true)],
                10,
                &[2],
                &[2],
                false,
                &[],
            ),
            // one survivor is enough
            (
                &[1, 2],
                &[],
                &[(10, 14, &[0, 1], true), (15, 19, &[0], true)],
                10,
                &[2],
                &[1, 2],
                true,
                &[0],
            ),
        ];
        for (i, &(up, lost, p, les, cur, probe, down, blocked)) in cases.iter().enumerate() {
            let ps = build_prior(&current(cur), &map(up, lost), &past(p), &h(les));
            assert_eq!(
                ps.probe.iter().copied().collect::<Vec<_>>(),
                probe,
                "case {i}"
            );
            assert_eq!(ps.pg_down, down, "case {i}");
            assert_eq!(
                ps.blocked_by.keys().copied().collect::<Vec<_>>(),
                blocked,
                "case {i}"
            );
        }
    }

    #[test]
    fn affected_by_map() {
        let ps = build_prior(
            &current(&[2]),
            &map(&[2], &[]),
            &past(&[(10, 19, &[0, 1], true)]),
            &PgHistory::default(),
        );
        assert!(!ps.affected_by_map(&map(&[2], &[])));
        assert!(ps.affected_by_map(&map(&[0, 2], &[])));
        assert!(ps.affected_by_map(&map(&[2], &[(1, 30)])));
        assert!(ps.affected_by_map(&map(&[], &[])));
    }
}
