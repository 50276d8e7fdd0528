//! Choosing the authoritative log (`find_best_info`) and the acting set
//! (`choose_acting` / `calc_replicated_acting`), including the PG Temp
//! handoff: when the up set's primary cannot serve (empty or too far
//! behind), ask for a pg_temp that keeps the old holders acting.

use std::collections::{BTreeMap, BTreeSet};

use kalmar_maps::OsdId;
use serde::Serialize;

use crate::eversion::Eversion;
use crate::info::PgInfo;
use crate::intervals::{is_osd, ClusterView};

/// The OSD whose log is authoritative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BestInfo {
    pub osd: OsdId,
    /// The last-epoch-started bound came from a history, not from any
    /// queried copy: no candidate may be chosen below it.
    pub history_les_bound: bool,
}

/// Picks the authoritative copy among the infos gathered (Ceph's rules):
///
/// 1. `max_les` = the newest `last_epoch_started` of any complete copy,
///    raised to the newest `history.last_epoch_started` seen unless
///    `ignore_history_les`. Copies that activated in that epoch saw every
///    acknowledged write, so the oldest `last_update` among them is the
///    least a candidate may have.
/// 2. Among complete copies with at least that `last_update`: the newest
///    `last_update`, then the longest log (oldest tail), then one without
///    missing objects, then the current primary.
///
/// `None`: no copy can be trusted, the PG is incomplete.
pub fn find_best_info(
    infos: &BTreeMap<OsdId, PgInfo>,
    primary: OsdId,
    ignore_history_les: bool,
) -> Option<BestInfo> {
    let mut max_les = infos
        .values()
        .filter(|i| !i.is_incomplete())
        .map(|i| i.last_epoch_started)
        .max()
        .unwrap_or(0);
    let mut history_les_bound = false;
    if !ignore_history_les {
        let hist = infos
            .values()
            .map(|i| i.history.last_epoch_started)
            .max()
            .unwrap_or(0);
        if hist > max_les {
            max_les = hist;
            history_les_bound = true;
        }
    }
    let min_acceptable = infos
        .values()
        .filter(|i| i.last_epoch_started >= max_les)
        .map(|i| i.last_update)
        .min()?;
    let mut best: Option<(OsdId, &PgInfo)> = None;
    for (&osd, info) in infos {
        if info.is_incomplete() || info.last_update < min_acceptable {
            continue;
        }
        let better = match best {
            None => true,
            Some((bo, b)) => {
                let key = |i: &PgInfo, o: OsdId| {
                    (
                        i.last_update,
                        std::cmp::Reverse(i.log_tail),
                        !i.has_missing(),
                        o == primary,
                    )
                };
                key(info, osd) > key(b, bo)
            }
        };
        if better {
            best = Some((osd, info));
        }
    }
    best.map(|(osd, _)| BestInfo {
        osd,
        history_les_bound,
    })
}

/// Inputs of [`choose_acting`].
#[derive(Debug, Clone, Copy)]
pub struct ActingInputs<'a> {
    pub up: &'a [OsdId],
    pub up_primary: OsdId,
    pub acting: &'a [OsdId],
    pub pool_size: usize,
    pub map: &'a ClusterView,
    /// Infos gathered in GetInfo (including the primary's own).
    pub infos: &'a BTreeMap<OsdId, PgInfo>,
    /// The authoritative copy from [`find_best_info`].
    pub auth: OsdId,
    /// Copies found unusable for log recovery after GetInfo (their log
    /// diverged before the authoritative tail): treated as needing
    /// backfill.
    pub force_backfill: &'a BTreeSet<OsdId>,
}

/// What [`choose_acting`] decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActingChoice {
    /// The acting set we want, primary first.
    pub want: Vec<OsdId>,
    /// Up OSDs that cannot recover from the log: they get a full backfill.
    pub backfill_targets: BTreeSet<OsdId>,
    /// `want` plus the backfill targets: everyone that must end up with
    /// every object.
    pub acting_recovery_backfill: BTreeSet<OsdId>,
    /// `Some(set)`: ask the mon for this pg_temp (empty = remove it),
    /// because `want` differs from the current acting set.
    pub pg_temp: Option<Vec<OsdId>>,
}

impl ActingChoice {
    pub fn want_primary(&self) -> Option<OsdId> {
        self.want.first().copied()
    }
}

/// A copy that can be brought up to date from the authoritative log: it
/// is complete and its log reaches the authoritative tail.
fn log_recoverable(info: Option<&PgInfo>, auth_tail: Eversion, forced: bool) -> bool {
    info.is_some_and(|i| !forced && !i.is_incomplete() && i.last_update >= auth_tail)
}

/// Computes the wanted acting set for a replicated pool.
///
/// The primary is the up primary if its copy is log-recoverable, else the
/// authoritative copy (PG Temp handoff: the old holder serves while the up
/// primary is backfilled). Then up members in order: log-recoverable ones
/// join `want`, the others become backfill targets. The remaining slots
/// (up to the pool size) go to log-recoverable members of the current
/// acting set, then to any other log-recoverable copy that is up.
/// Returns `None` if the authoritative copy is unknown.
pub fn choose_acting(c: ActingInputs<'_>) -> Option<ActingChoice> {
    let auth_info = c.infos.get(&c.auth)?;
    let tail = auth_info.log_tail;
    let usable = |o: OsdId| {
        is_osd(o)
            && c.map.is_up(o)
            && log_recoverable(c.infos.get(&o), tail, c.force_backfill.contains(&o))
    };
    let primary = if usable(c.up_primary) {
        c.up_primary
    } else {
        c.auth
    };
    let mut want = vec![primary];
    let mut backfill = BTreeSet::new();
    for &o in c.up.iter().filter(|&&o| is_osd(o) && o != primary) {
        if !c.map.is_up(o) {
            continue;
        }
        if usable(o) {
            if want.len() < c.pool_size {
                want.push(o);
            }
        } else {
            backfill.insert(o);
        }
    }
    let others: Vec<OsdId> = c
        .acting
        .iter()
        .copied()
        .chain(c.infos.keys().copied())
        .collect();
    for o in others {
        if want.len() >= c.pool_size {
            break;
        }
        if !want.contains(&o) && !backfill.contains(&o) && usable(o) {
            want.push(o);
        }
    }
    let mut arb: BTreeSet<OsdId> = want.iter().copied().collect();
    arb.extend(backfill.iter().copied());
    let pg_temp = if want.as_slice() != c.acting {
        Some(if want.as_slice() == c.up {
            Vec::new()
        } else {
            want.clone()
        })
    } else {
        None
    };
    Some(ActingChoice {
        want,
        backfill_targets: backfill,
        acting_recovery_backfill: arb,
        pg_temp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intervals::OsdView;
    use crate::object::ObjectBound;
    use kalmar_maps::PgId;

    fn info(les: u32, hist_les: u32, lu: (u32, u64), tail: (u32, u64), complete: bool) -> PgInfo {
        let mut i = PgInfo::new(PgId::new(1, 0), 1);
        i.last_epoch_started = les;
        i.history.last_epoch_started = hist_les;
        i.last_update = Eversion::new(lu.0, lu.1);
        i.last_complete = i.last_update;
        i.log_tail = Eversion::new(tail.0, tail.1);
        if !complete {
            i.last_backfill = ObjectBound::Min;
        }
        i
    }

    #[test]
    fn best_info_table() {
        type Row = (OsdId, u32, u32, (u32, u64), (u32, u64), bool);
        // (infos, primary, ignore_history) -> best
        let cases: &[(&[Row], OsdId, bool, Option<OsdId>)] = &[
            // newest last_update wins
            (
                &[
                    (0, 10, 10, (10, 5), (0, 0), true),
                    (1, 10, 10, (10, 7), (0, 0), true),
                ],
                0,
                false,
                Some(1),
            ),
            // a newer les beats a longer divergent log from an older interval
            (
                &[
                    (0, 5, 10, (9, 9), (0, 0), true),
                    (1, 10, 10, (10, 3), (0, 0), true),
                ],
                0,
                false,
                Some(1),
            ),
            // ...but an unacked older-interval tail above the floor is kept
            (
                &[
                    (0, 5, 10, (5, 9), (0, 0), true),
                    (1, 10, 10, (5, 3), (0, 0), true),
                ],
                0,
                false,
                Some(0),
            ),
            // tie on last_update: longer log (older tail)
            (
                &[
                    (0, 10, 10, (10, 5), (3, 0), true),
                    (1, 10, 10, (10, 5), (2, 0), true),
                ],
                0,
                false,
                Some(1),
            ),
            // tie everywhere: current primary
            (
                &[
                    (0, 10, 10, (10, 5), (2, 0), true),
                    (1, 10, 10, (10, 5), (2, 0), true),
                ],
                1,
                false,
                Some(1),
            ),
            // incomplete copies are never authoritative
            (
                &[
                    (0, 10, 10, (10, 9), (0, 0), false),
                    (1, 10, 10, (10, 5), (0, 0), true),
                ],
                0,
                false,
                Some(1),
            ),
            // history says epoch 20 activated but nobody we asked did: incomplete
            (&[(0, 10, 20, (10, 9), (0, 0), true)], 0, false, None),
            (&[(0, 10, 20, (10, 9), (0, 0), true)], 0, true, Some(0)),
            (&[], 0, false, None),
        ];
        for (i, (rows, primary, ignore, want)) in cases.iter().enumerate() {
            let infos: BTreeMap<OsdId, PgInfo> = rows
                .iter()
                .map(|&(o, les, h, lu, t, c)| (o, info(les, h, lu, t, c)))
                .collect();
            let got = find_best_info(&infos, *primary, *ignore).map(|b| b.osd);
            assert_eq!(got, *want, "case {i}");
        }
    }

    fn all_up(n: usize) -> ClusterView {
        ClusterView {
            epoch: 20,
            osds: vec![
                OsdView {
                    exists: true,
                    up: true,
                    ..Default::default()
                };
                n
            ],
            flags: 0,
        }
    }

    #[test]
    fn pg_temp_handoff_when_new_primary_is_empty() {
        // CRUSH moved the PG from [0,1,2] to [3,1,2]; osd.3 is new.
        let map = all_up(4);
        let mut infos = BTreeMap::new();
        for o in 0..3 {
            infos.insert(o, info(10, 10, (10, 50), (5, 0), true));
        }
        infos.insert(3, info(0, 10, (0, 0), (0, 0), false));
        let none = BTreeSet::new();
        let c = choose_acting(ActingInputs {
            up: &[3, 1, 2],
            up_primary: 3,
            acting: &[3, 1, 2],
            pool_size: 3,
            map: &map,
            infos: &infos,
            auth: 0,
            force_backfill: &none,
        })
        .expect("auth known");
        assert_eq!(c.want, vec![0, 1, 2]);
        assert_eq!(c.pg_temp, Some(vec![0, 1, 2]));
        assert_eq!(c.backfill_targets, BTreeSet::from([3]));
        // Under the pg_temp the old primary keeps the same acting set and
        // backfills osd.3.
        let c = choose_acting(ActingInputs {
            acting: &[0, 1, 2],
            auth: 0,
            ..ActingInputs {
                up: &[3, 1, 2],
                up_primary: 3,
                acting: &[],
                pool_size: 3,
                map: &map,
                infos: &infos,
                auth: 0,
                force_backfill: &none,
            }
        })
        .expect("auth known");
        assert_eq!(c.pg_temp, None);
        assert_eq!(c.acting_recovery_backfill, BTreeSet::from([0, 1, 2, 3]));
        // Once osd.3 is backfilled, want == up: remove the pg_temp.
        infos.insert(3, info(10, 10, (10, 50), (5, 0), true));
        let c = choose_acting(ActingInputs {
            up: &[3, 1, 2],
            up_primary: 3,
            acting: &[0, 1, 2],
            pool_size: 3,
            map: &map,
            infos: &infos,
            auth: 0,
            force_backfill: &none,
        })
        .expect("auth known");
        assert_eq!(c.want, vec![3, 1, 2]);
        assert_eq!(c.pg_temp, Some(vec![]));
        assert!(c.backfill_targets.is_empty());
    }

    #[test]
    fn behind_replica_is_backfilled_and_log_recoverable_one_is_not() {
        let map = all_up(3);
        let mut infos = BTreeMap::new();
        infos.insert(0, info(10, 10, (10, 50), (8, 0), true));
        // log overlaps (last_update >= auth tail): log recovery
        infos.insert(1, info(9, 9, (8, 10), (1, 0), true));
        // too far behind: backfill
        infos.insert(2, info(5, 5, (5, 10), (1, 0), true));
        let none = BTreeSet::new();
        let c = choose_acting(ActingInputs {
            up: &[0, 1, 2],
            up_primary: 0,
            acting: &[0, 1, 2],
            pool_size: 3,
            map: &map,
            infos: &infos,
            auth: 0,
            force_backfill: &none,
        })
        .expect("auth known");
        assert_eq!(c.want, vec![0, 1]);
        assert_eq!(c.backfill_targets, BTreeSet::from([2]));
        assert_eq!(c.pg_temp, Some(vec![0, 1]));
    }
}
