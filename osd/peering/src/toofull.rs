//! Whether a copy's store has room for the recovery or backfill a primary
//! asks it to reserve for (Ceph's `tentative_backfill_full` and
//! `check_osdmap_full`).
//!
//! - Backfill copies a whole PG onto the target: the target refuses once
//!   its store, with the bytes the backfill would add (the primary's PG
//!   size less what the target holds of it already), reaches the OSDMap's
//!   `backfillfull_ratio`. The primary then waits in `backfill_toofull`
//!   and asks again after `osd_backfill_retry_interval`.
//! - Recovery only brings a member up to date: it is refused only once the
//!   store reaches the OSDMap's `full_ratio` (`recovery_toofull`, retried
//!   after `osd_recovery_retry_interval`).

use std::fmt;

use crate::machine::ReserveFor;

/// One OSD's store use and the cluster's ratios, as the OSD samples them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fullness {
    pub used_bytes: u64,
    pub total_bytes: u64,
    /// The OSDMap's `full_ratio`.
    pub full_ratio: f64,
    /// The OSDMap's `backfillfull_ratio`.
    pub backfillfull_ratio: f64,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TooFull {
    pub kind: ReserveFor,
    /// The use the work would bring the store to.
    pub ratio: f64,
    /// The ratio it reaches.
    pub limit: f64,
}

impl fmt::Display for TooFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, name) = match self.kind {
            ReserveFor::Backfill => ("backfill", "backfillfull_ratio"),
            ReserveFor::Recovery => ("recovery", "full_ratio"),
        };
        write!(
            f,
            "too full for {what}: {:.1}% used, {name} is {:.1}%",
            self.ratio * 100.0,
            self.limit * 100.0
        )
    }
}

/// Decides a reservation on the target. `adding_bytes`: what the work is
/// expected to add to the store (backfill only; recovery adds little).
/// Unknown fullness (no sample yet) allows the work: the store's own
/// failsafe still refuses writes that would overfill it.
pub fn reservation_verdict(
    kind: ReserveFor,
    fullness: Option<Fullness>,
    adding_bytes: u64,
) -> Result<(), TooFull> {
    let Some(f) = fullness else {
        return Ok(());
    };
    if f.total_bytes == 0 {
        return Ok(());
    }
    let (used, limit) = match kind {
        ReserveFor::Backfill => (
            f.used_bytes.saturating_add(adding_bytes),
            f.backfillfull_ratio,
        ),
        ReserveFor::Recovery => (f.used_bytes, f.full_ratio),
    };
    let ratio = used as f64 / f.total_bytes as f64;
    if ratio >= limit {
        Err(TooFull { kind, ratio, limit })
    } else {
        Ok(())
    }
}

/// What a backfill would add to a target holding `target_bytes` of a PG
/// whose primary holds `primary_bytes` (Ceph's pending adjustment).
pub fn backfill_adds(primary_bytes: u64, target_bytes: u64) -> u64 {
    primary_bytes.saturating_sub(target_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn f(used: u64, total: u64) -> Option<Fullness> {
        Some(Fullness {
            used_bytes: used,
            total_bytes: total,
            full_ratio: 0.95,
            backfillfull_ratio: 0.90,
        })
    }

    #[test]
    fn backfill_refused_at_backfillfull_with_pending_bytes() {
        assert!(reservation_verdict(ReserveFor::Backfill, f(80, 100), 0).is_ok());
        // 80 + 10 reaches 0.90: refused (at or above).
        let e = reservation_verdict(ReserveFor::Backfill, f(80, 100), 10).expect_err("refused");
        assert_eq!(e.kind, ReserveFor::Backfill);
        assert_eq!(e.limit, 0.90);
        assert!((e.ratio - 0.90).abs() < 1e-9);
        assert_eq!(
            e.to_string(),
            "too full for backfill: 90.0% used, backfillfull_ratio is 90.0%"
        );
        // Recovery only stops at full_ratio, whatever backfill would add.
        assert!(reservation_verdict(ReserveFor::Recovery, f(90, 100), 1000).is_ok());
        assert!(reservation_verdict(ReserveFor::Recovery, f(95, 100), 0).is_err());
    }

    #[test]
    fn unknown_or_empty_store_allows() {
        assert!(reservation_verdict(ReserveFor::Backfill, None, u64::MAX).is_ok());
        assert!(reservation_verdict(ReserveFor::Backfill, f(0, 0), 5).is_ok());
    }

    #[test]
    fn ratio_zero_refuses_everything() {
        let mut z = f(0, 100).expect("some");
        z.backfillfull_ratio = 0.0;
        assert!(reservation_verdict(ReserveFor::Backfill, Some(z), 0).is_err());
    }

    #[test]
    fn pending_adjustment() {
        assert_eq!(backfill_adds(100, 30), 70);
        assert_eq!(backfill_adds(30, 100), 0);
    }

    proptest! {
        /// More use or more pending bytes never turns a refusal into a
        /// grant; backfill is refused whenever recovery is (backfillfull
        /// <= full).
        #[test]
        fn monotone(used in 0u64..1000, extra in 0u64..1000, add in 0u64..1000,
                    bf in 0.0f64..1.0, gap in 0.0f64..0.5) {
            let total = 1000;
            let at = |u: u64| Some(Fullness { used_bytes: u, total_bytes: total,
                full_ratio: (bf + gap).min(1.0), backfillfull_ratio: bf });
            for kind in [ReserveFor::Backfill, ReserveFor::Recovery] {
                if reservation_verdict(kind, at(used), add).is_err() {
                    prop_assert!(reservation_verdict(kind, at(used + extra), add + extra).is_err());
                }
            }
            if reservation_verdict(ReserveFor::Recovery, at(used), 0).is_err() {
                prop_assert!(reservation_verdict(ReserveFor::Backfill, at(used), add).is_err());
            }
        }
    }
}
