//! Map views a PG needs, past intervals, and interval-change detection
//! (`PastIntervals::check_new_interval`).

use std::collections::BTreeMap;

use kalmar_common::encoding::{Decode, DecodeError, Decoder, Encode};
use kalmar_common::impl_versioned;
use kalmar_maps::{Epoch, OsdId, OsdMap, ITEM_NONE};
use serde::Serialize;

/// One OSD as the PG logic sees it at a map epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OsdView {
    pub exists: bool,
    pub up: bool,
    pub up_from: Epoch,
    pub up_thru: Epoch,
    pub down_at: Epoch,
    /// Epoch an admin declared the OSD lost (0 if never).
    pub lost_at: Epoch,
}

/// The OSD states of one map epoch, shared by all PGs of an OSD (wrap it
/// in an `Arc`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterView {
    pub epoch: Epoch,
    /// Indexed by OSD id.
    pub osds: Vec<OsdView>,
    /// `OsdMapFlags` bits (norecover, nobackfill...).
    pub flags: u32,
}

impl ClusterView {
    /// Extracts what peering needs from a full map.
    pub fn from_osdmap(map: &OsdMap) -> Self {
        ClusterView {
            epoch: map.epoch,
            flags: map.flags,
            osds: map
                .osds
                .iter()
                .map(|s| OsdView {
                    exists: s.exists(),
                    up: s.is_up(),
                    up_from: s.info.up_from,
                    up_thru: s.info.up_thru,
                    down_at: s.info.down_at,
                    lost_at: s.info.lost_at,
                })
                .collect(),
        }
    }

    /// The view of one OSD (a non-existent one for unknown ids).
    pub fn osd(&self, id: OsdId) -> OsdView {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.osds.get(i).copied())
            .unwrap_or_default()
    }

    pub fn is_up(&self, id: OsdId) -> bool {
        let o = self.osd(id);
        o.exists && o.up
    }

    pub fn test_flag(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }
}

/// Where one PG maps at one epoch, and its pool's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PgMapping {
    pub epoch: Epoch,
    /// False once the pool is deleted: the PG must go.
    pub pool_exists: bool,
    pub pool_size: u32,
    pub pool_min_size: u32,
    pub pg_num: u32,
    pub up: Vec<OsdId>,
    pub up_primary: OsdId,
    pub acting: Vec<OsdId>,
    /// Kalmar takes `acting[0]` (after pg_temp/primary_temp) as primary;
    /// -1 when acting is empty.
    pub acting_primary: OsdId,
}

impl PgMapping {
    /// Real members of the acting set (no holes).
    pub fn acting_members(&self) -> impl Iterator<Item = OsdId> + '_ {
        self.acting.iter().copied().filter(|&o| is_osd(o))
    }

    pub fn up_members(&self) -> impl Iterator<Item = OsdId> + '_ {
        self.up.iter().copied().filter(|&o| is_osd(o))
    }

    /// Acting differs from up: data is moving (pg_temp in place).
    pub fn is_remapped(&self) -> bool {
        self.acting != self.up
    }
}

/// Whether an id names an OSD (not -1, not `ITEM_NONE`).
pub fn is_osd(o: OsdId) -> bool {
    o >= 0 && o != ITEM_NONE
}

/// A closed run of epochs in which up, acting and the primaries did not
/// change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interval {
    pub first: Epoch,
    pub last: Epoch,
    pub up: Vec<OsdId>,
    pub acting: Vec<OsdId>,
    pub up_primary: OsdId,
    pub primary: OsdId,
    /// The interval could have accepted writes: its acting set met
    /// min_size and its primary got an up_thru inside it (or the PG was
    /// clean during it).
    pub maybe_went_rw: bool,
}
impl_versioned!(Interval, "pg_interval", version = 1, compat = 1, {
    first, last, up, acting, up_primary, primary, maybe_went_rw,
});

/// Past intervals of a PG back to its last clean epoch, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PastIntervals {
    intervals: BTreeMap<Epoch, Interval>,
}

impl Encode for PastIntervals {
    fn encode(&self, buf: &mut Vec<u8>) {
        kalmar_common::encoding::encode_versioned(buf, 1, 1, |buf| {
            (self.intervals.len() as u32).encode(buf);
            for i in self.intervals.values() {
                i.encode(buf);
            }
        })
    }
}

impl Decode for PastIntervals {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.versioned("past_intervals", 1, |d, _| {
            let n = d.len_prefix(1, "past intervals")?;
            let mut pi = PastIntervals::default();
            for _ in 0..n {
                let i = Interval::decode(d)?;
                if i.first > i.last {
                    return Err(DecodeError::Invalid {
                        what: "past interval",
                        detail: format!("first {} after last {}", i.first, i.last),
                    });
                }
                pi.intervals.insert(i.first, i);
            }
            Ok(pi)
        })
    }
}

impl PastIntervals {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    pub fn len(&self) -> usize {
        self.intervals.len()
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Interval> {
        self.intervals.values()
    }

    /// Adds a closed interval; one overlapping a known interval is ignored
    /// (every OSD derives the same intervals from the same maps).
    pub fn add(&mut self, i: Interval) -> bool {
        if i.first > i.last || self.overlaps(i.first, i.last) {
            return false;
        }
        self.intervals.insert(i.first, i);
        true
    }

    fn overlaps(&self, first: Epoch, last: Epoch) -> bool {
        self.intervals
            .range(..=last)
            .next_back()
            .is_some_and(|(_, o)| o.last >= first)
    }

    /// Takes the intervals another member knows and we do not. Returns
    /// whether anything was added.
    pub fn merge(&mut self, other: &PastIntervals) -> bool {
        let mut changed = false;
        for i in other.iter() {
            changed |= self.add(i.clone());
        }
        changed
    }

    /// Drops intervals wholly before `epoch` (the PG was clean since).
    pub fn prune_before(&mut self, epoch: Epoch) {
        self.intervals.retain(|_, i| i.last >= epoch);
    }

    pub fn clear(&mut self) {
        self.intervals.clear();
    }
}

/// Did the move from `old` to `new` start a new interval? Ceph's rules:
/// any change of up, acting, either primary, pool size, min_size or pg_num.
pub fn is_new_interval(old: &PgMapping, new: &PgMapping) -> bool {
    old.acting != new.acting
        || old.up != new.up
        || old.acting_primary != new.acting_primary
        || old.up_primary != new.up_primary
        || old.pool_size != new.pool_size
        || old.pool_min_size != new.pool_min_size
        || old.pg_num != new.pg_num
}

/// Inputs of [`check_new_interval`].
#[derive(Debug, Clone, Copy)]
pub struct IntervalChange<'a> {
    /// Mapping at the last epoch of the old interval.
    pub old: &'a PgMapping,
    pub new: &'a PgMapping,
    /// OSD states of the last map of the old interval (its up_thru).
    pub last_map: &'a ClusterView,
    /// `history.same_interval_since`: first epoch of the old interval.
    pub same_interval_since: Epoch,
    pub last_epoch_clean: Epoch,
}

/// When `new` starts a new interval, returns the closed old interval with
/// `maybe_went_rw` decided; `None` if the interval continues.
pub fn check_new_interval(c: IntervalChange<'_>) -> Option<Interval> {
    if !is_new_interval(c.old, c.new) {
        return None;
    }
    let first = c.same_interval_since;
    let last = c.new.epoch.saturating_sub(1).max(first);
    let primary = c.old.acting_primary;
    let acting_count = c.old.acting_members().count() as u32;
    let maybe_went_rw =
        if is_osd(primary) && acting_count > 0 && acting_count >= c.old.pool_min_size {
            let p = c.last_map.osd(primary);
            // The primary must have been granted an up_thru inside the
            // interval (it cannot activate without one), or the PG must have
            // been clean during it, which needs an activation.
            (p.up_thru >= first && p.up_from <= first)
                || (c.last_epoch_clean >= first && c.last_epoch_clean <= last)
        } else {
            false
        };
    Some(Interval {
        first,
        last,
        up: c.old.up.clone(),
        acting: c.old.acting.clone(),
        up_primary: c.old.up_primary,
        primary,
        maybe_went_rw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(epoch: Epoch, up: &[OsdId], acting: &[OsdId]) -> PgMapping {
        PgMapping {
            epoch,
            pool_exists: true,
            pool_size: 3,
            pool_min_size: 2,
            pg_num: 8,
            up: up.to_vec(),
            up_primary: up.first().copied().unwrap_or(-1),
            acting: acting.to_vec(),
            acting_primary: acting.first().copied().unwrap_or(-1),
        }
    }

    fn cluster(up_thru: &[(OsdId, Epoch, Epoch)]) -> ClusterView {
        let mut c = ClusterView {
            epoch: 10,
            osds: vec![OsdView::default(); 6],
            flags: 0,
        };
        for &(o, from, thru) in up_thru {
            c.osds[o as usize] = OsdView {
                exists: true,
                up: true,
                up_from: from,
                up_thru: thru,
                ..Default::default()
            };
        }
        c
    }

    #[test]
    fn table() {
        // (old acting, new acting, primary up_from, up_thru, lec, min_size) -> (new?, rw?)
        type Case = (
            &'static [OsdId],
            &'static [OsdId],
            Epoch,
            Epoch,
            Epoch,
            u32,
            Option<bool>,
        );
        let cases: &[Case] = &[
            (&[0, 1, 2], &[0, 1, 2], 1, 5, 0, 2, None),
            (&[0, 1, 2], &[0, 1], 1, 5, 0, 2, Some(true)),
            // up_thru before the interval started: could not have activated
            (&[0, 1, 2], &[0, 1], 1, 4, 0, 2, Some(false)),
            // ... unless the PG was clean inside it
            (&[0, 1, 2], &[0, 1], 1, 4, 7, 2, Some(true)),
            // below min_size: never rw
            (&[0], &[0, 1], 1, 9, 0, 2, Some(false)),
            // primary booted after the interval began
            (&[0, 1, 2], &[1, 2], 6, 9, 0, 2, Some(false)),
            // primary change alone is a new interval
            (&[0, 1, 2], &[1, 0, 2], 1, 5, 0, 2, Some(true)),
            (&[], &[0], 1, 9, 0, 1, Some(false)),
        ];
        for (i, &(oa, na, from, thru, lec, min, want)) in cases.iter().enumerate() {
            let mut old = mapping(9, oa, oa);
            old.pool_min_size = min;
            let mut new = mapping(10, na, na);
            new.pool_min_size = min;
            let last_map = cluster(&[(oa.first().copied().unwrap_or(0), from, thru)]);
            let got = check_new_interval(IntervalChange {
                old: &old,
                new: &new,
                last_map: &last_map,
                same_interval_since: 5,
                last_epoch_clean: lec,
            });
            assert_eq!(got.as_ref().map(|i| i.maybe_went_rw), want, "case {i}");
            if let Some(iv) = got {
                assert_eq!((iv.first, iv.last), (5, 9), "case {i}");
                assert_eq!(iv.acting, oa.to_vec());
            }
        }
        let mut a = mapping(10, &[0, 1], &[0, 1]);
        let b = a.clone();
        a.pool_size = 2;
        assert!(is_new_interval(&a, &b));
    }

    #[test]
    fn past_intervals_merge_and_encode() {
        let iv = |f, l| Interval {
            first: f,
            last: l,
            up: vec![0],
            acting: vec![0],
            up_primary: 0,
            primary: 0,
            maybe_went_rw: true,
        };
        let mut a = PastIntervals::new();
        assert!(a.add(iv(5, 9)));
        assert!(!a.add(iv(7, 12)));
        let mut b = PastIntervals::new();
        b.add(iv(1, 4));
        b.add(iv(5, 9));
        b.add(iv(10, 11));
        assert!(a.merge(&b));
        assert_eq!(a.len(), 3);
        assert_eq!(
            PastIntervals::from_bytes(&a.to_bytes()).expect("decodes"),
            a
        );
        a.prune_before(6);
        assert_eq!(a.iter().next().map(|i| i.first), Some(5));
    }
}
