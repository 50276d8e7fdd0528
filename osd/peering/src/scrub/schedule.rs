//! When a scheduled scrub is due (Ceph's `osd_scrub_min_interval` and
//! `osd_deep_scrub_interval`, held back by the `noscrub` and
//! `nodeep-scrub` map flags). Scrubs an operator asks for ignore all of it.

/// The schedule's settings; an interval of 0 turns that kind off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrubSchedule {
    pub min_interval_us: u64,
    pub deep_interval_us: u64,
    pub noscrub: bool,
    pub nodeep_scrub: bool,
}

/// `Some(deep)` when a scrub of that kind is due at `now_us`. A stamp of 0
/// (never scrubbed) counts from `since_us`, when this OSD took the PG on,
/// so that new PGs do not all scrub at once.
pub fn scrub_due(
    now_us: u64,
    last_scrub_stamp_us: u64,
    last_deep_scrub_stamp_us: u64,
    since_us: u64,
    s: &ScrubSchedule,
) -> Option<bool> {
    let age = |stamp: u64| now_us.saturating_sub(if stamp == 0 { since_us } else { stamp });
    let deep_due = s.deep_interval_us > 0
        && !s.nodeep_scrub
        && age(last_deep_scrub_stamp_us) >= s.deep_interval_us;
    if deep_due {
        return Some(true);
    }
    let due = s.min_interval_us > 0 && !s.noscrub && age(last_scrub_stamp_us) >= s.min_interval_us;
    due.then_some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3_600_000_000;

    #[test]
    fn table() {
        let s = ScrubSchedule {
            min_interval_us: 24 * H,
            deep_interval_us: 7 * 24 * H,
            noscrub: false,
            nodeep_scrub: false,
        };
        // Never scrubbed: counted from when the PG was taken on.
        assert_eq!(scrub_due(10 * H, 0, 0, 5 * H, &s), None);
        assert_eq!(scrub_due(30 * H, 0, 0, 5 * H, &s), Some(false));
        assert_eq!(scrub_due(200 * H, 0, 0, 5 * H, &s), Some(true));
        // Recently scrubbed, deep scrub old.
        assert_eq!(scrub_due(200 * H, 199 * H, 20 * H, 0, &s), Some(true));
        assert_eq!(scrub_due(200 * H, 199 * H, 190 * H, 0, &s), None);
        // Flags hold each kind back.
        let flags = ScrubSchedule {
            nodeep_scrub: true,
            ..s
        };
        assert_eq!(scrub_due(200 * H, 100 * H, 20 * H, 0, &flags), Some(false));
        let both = ScrubSchedule {
            noscrub: true,
            ..flags
        };
        assert_eq!(scrub_due(200 * H, 100 * H, 20 * H, 0, &both), None);
        // Interval 0: off.
        let off = ScrubSchedule {
            min_interval_us: 0,
            deep_interval_us: 0,
            ..s
        };
        assert_eq!(scrub_due(u64::MAX, 0, 0, 0, &off), None);
    }
}
