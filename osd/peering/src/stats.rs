//! Degraded and misplaced object-copy counts for `pg dump` / `ceph -s`.
//!
//! Counts are of object *copies*, as Ceph reports them (`45/300 objects
//! degraded`): the total is `num_objects * pool_size`.
//! - degraded: copies that should exist but have no up-to-date holder:
//!   `pool_size - acting` per object when undersized, plus each acting
//!   member's missing objects;
//! - misplaced: up-to-date copies held outside the up set while an up
//!   member still lacks them (bounded by what the up members lack).

use kalmar_maps::OsdId;
use serde::Serialize;

/// Per-copy facts the counts need.
#[derive(Debug, Clone, Copy)]
pub struct CopyState {
    pub osd: OsdId,
    /// Objects this copy is missing (log-based recovery).
    pub missing: u64,
    /// Objects not yet backfilled to this copy (`None`: not a backfill
    /// target). An estimate: the primary's objects past `last_backfill`.
    pub not_backfilled: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CopyCounts {
    pub num_object_copies: u64,
    pub degraded: u64,
    pub misplaced: u64,
}

/// Computes degraded and misplaced copy counts.
pub fn copy_counts(
    num_objects: u64,
    pool_size: u64,
    up: &[OsdId],
    acting: &[CopyState],
    backfill: &[CopyState],
) -> CopyCounts {
    let total = num_objects * pool_size;
    let acting_n = acting.len() as u64;
    let mut degraded = num_objects * pool_size.saturating_sub(acting_n);
    for c in acting {
        degraded += c.missing.min(num_objects);
    }
    // Copies on acting members outside up stand in for up members that
    // are still being filled.
    let outside_up: u64 = acting
        .iter()
        .filter(|c| !up.contains(&c.osd))
        .map(|c| num_objects.saturating_sub(c.missing))
        .sum();
    let up_lacking: u64 = backfill
        .iter()
        .filter(|c| up.contains(&c.osd))
        .map(|c| c.not_backfilled.unwrap_or(num_objects).min(num_objects))
        .sum();
    CopyCounts {
        num_object_copies: total,
        degraded: degraded.min(total),
        misplaced: outside_up.min(up_lacking),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(osd: OsdId, missing: u64, nb: Option<u64>) -> CopyState {
        CopyState {
            osd,
            missing,
            not_backfilled: nb,
        }
    }

    #[test]
    fn table() {
        // clean
        assert_eq!(
            copy_counts(
                100,
                3,
                &[0, 1, 2],
                &[c(0, 0, None), c(1, 0, None), c(2, 0, None)],
                &[]
            )
            .degraded,
            0
        );
        // undersized: one copy short of every object
        let k = copy_counts(100, 3, &[0, 1], &[c(0, 0, None), c(1, 0, None)], &[]);
        assert_eq!(
            (k.degraded, k.misplaced, k.num_object_copies),
            (100, 0, 300)
        );
        // replica missing 7 objects
        assert_eq!(
            copy_counts(
                100,
                3,
                &[0, 1, 2],
                &[c(0, 0, None), c(1, 7, None), c(2, 0, None)],
                &[]
            )
            .degraded,
            7
        );
        // pg_temp handoff: acting [0,1,2], up [3,1,2], osd.3 has 40 left
        let k = copy_counts(
            100,
            3,
            &[3, 1, 2],
            &[c(0, 0, None), c(1, 0, None), c(2, 0, None)],
            &[c(3, 0, Some(40))],
        );
        assert_eq!((k.degraded, k.misplaced), (0, 40));
    }
}
