//! Health checks the active mgr reports (Ceph's MgrStatMonitor): a
//! plugin's `set_health_checks`, `MGR_MODULE_ERROR`, `MGR_MODULE_STALLED`.
//!
//! Each [`MonMgrReport`] replaces the previous set. The checks count only
//! while the reporting mgr is the MgrMap's active, available mgr and its
//! reports keep coming: a failed-over or silent mgr's checks disappear
//! instead of lingering. Kept in memory only: the active mgr reports again
//! within a beacon period after a mon restart.

use std::time::{Duration, Instant};

use kalmar_maps::MgrMap;
use kalmar_proto::mon::{HealthSeverity, MgrHealthCheck, MonMgrReport};

use crate::health::{Check, Severity};

/// Bounds on what one report may hold: a broken mgr cannot make the mon's
/// health output (or its memory) unbounded. Excess is dropped.
pub const MAX_MGR_CHECKS: usize = 256;
pub const MAX_DETAIL_LINES: usize = 64;
pub const MAX_TEXT_BYTES: usize = 4096;

#[derive(Debug)]
struct Latest {
    gid: u64,
    at: Instant,
    checks: Vec<Check>,
}

/// The last report of the active mgr.
#[derive(Debug, Default)]
pub struct MgrStat {
    latest: Option<Latest>,
}

fn cut(s: &str) -> String {
    let mut end = s.len().min(MAX_TEXT_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A health code is upper-case letters, digits and `_` (Ceph's style);
/// anything else could not be told apart from the mon's own output.
fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn to_check(c: &MgrHealthCheck) -> Check {
    Check {
        code: c.code.clone(),
        severity: match c.severity {
            HealthSeverity::Warning => Severity::Warn,
            HealthSeverity::Error => Severity::Err,
        },
        summary: cut(&c.summary),
        count: usize::try_from(c.count).unwrap_or(usize::MAX),
        detail: c
            .detail
            .iter()
            .take(MAX_DETAIL_LINES)
            .map(|d| cut(d))
            .collect(),
    }
}

impl MgrStat {
    /// Takes a report from the mgr `gid`; refused unless that mgr is the
    /// active one in `mgrmap`.
    pub fn report(
        &mut self,
        r: &MonMgrReport,
        mgrmap: &MgrMap,
        now: Instant,
    ) -> Result<(), String> {
        if r.gid == 0 || r.gid != mgrmap.active_gid {
            return Err(format!(
                "health report from mgr gid {} which is not the active mgr (gid {})",
                r.gid, mgrmap.active_gid
            ));
        }
        let mut checks: Vec<Check> = Vec::with_capacity(r.health_checks.len().min(MAX_MGR_CHECKS));
        for c in &r.health_checks {
            if checks.len() == MAX_MGR_CHECKS {
                tracing::warn!(
                    dropped = r.health_checks.len() - MAX_MGR_CHECKS,
                    "mgr health report over {MAX_MGR_CHECKS} checks; the rest dropped"
                );
                break;
            }
            if !valid_code(&c.code) {
                tracing::warn!(code = %c.code, "mgr health check with an invalid code; dropped");
                continue;
            }
            if checks.iter().any(|x| x.code == c.code) {
                continue;
            }
            checks.push(to_check(c));
        }
        self.latest = Some(Latest {
            gid: r.gid,
            at: now,
            checks,
        });
        Ok(())
    }

    /// The checks to show now: those of the active, available mgr whose
    /// last report is at most `stale_after` old.
    pub fn checks(&self, mgrmap: &MgrMap, now: Instant, stale_after: Duration) -> &[Check] {
        match &self.latest {
            Some(l)
                if l.gid == mgrmap.active_gid
                    && mgrmap.available
                    && now.saturating_duration_since(l.at) <= stale_after =>
            {
                &l.checks
            }
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(gid: u64) -> MgrMap {
        MgrMap {
            active_gid: gid,
            active_name: "x".into(),
            available: true,
            ..Default::default()
        }
    }

    fn check(code: &str, severity: HealthSeverity) -> MgrHealthCheck {
        MgrHealthCheck {
            code: code.into(),
            severity,
            summary: format!("{code} raised"),
            count: 2,
            detail: vec!["one".into(), "two".into()],
        }
    }

    #[test]
    fn active_mgr_checks_shown_until_stale_or_failed_over() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(10);
        let mut s = MgrStat::default();
        let r = MonMgrReport {
            gid: 7,
            health_checks: vec![
                check("MGR_MODULE_ERROR", HealthSeverity::Error),
                check("bad code", HealthSeverity::Warning),
                check("LIVECHECK", HealthSeverity::Warning),
            ],
        };
        assert!(s.report(&r, &active(8), t0).is_err(), "not the active mgr");
        assert!(s.checks(&active(7), t0, grace).is_empty());
        s.report(&r, &active(7), t0).expect("from the active mgr");
        let got = s.checks(&active(7), t0 + Duration::from_secs(5), grace);
        let codes: Vec<&str> = got.iter().map(|c| c.code.as_str()).collect();
        assert_eq!(codes, vec!["MGR_MODULE_ERROR", "LIVECHECK"]);
        assert_eq!(got[0].severity, Severity::Err);
        assert_eq!(got[0].count, 2);
        assert_eq!(got[0].detail, vec!["one", "two"]);
        // Stale, failed over, or not yet available: nothing.
        assert!(s
            .checks(&active(7), t0 + Duration::from_secs(11), grace)
            .is_empty());
        assert!(s.checks(&active(9), t0, grace).is_empty());
        let unavailable = MgrMap {
            available: false,
            ..active(7)
        };
        assert!(s.checks(&unavailable, t0, grace).is_empty());
        // An empty report clears the set.
        s.report(
            &MonMgrReport {
                gid: 7,
                health_checks: vec![],
            },
            &active(7),
            t0,
        )
        .expect("clear");
        assert!(s.checks(&active(7), t0, grace).is_empty());
    }

    #[test]
    fn reports_are_bounded() {
        let t0 = Instant::now();
        let mut s = MgrStat::default();
        let mut big = check("BIG", HealthSeverity::Warning);
        big.summary = "x".repeat(MAX_TEXT_BYTES * 2);
        big.detail = vec!["d".into(); MAX_DETAIL_LINES * 3];
        let mut checks: Vec<MgrHealthCheck> = (0..MAX_MGR_CHECKS + 10)
            .map(|i| check(&format!("C{i}"), HealthSeverity::Warning))
            .collect();
        checks.insert(0, big);
        s.report(
            &MonMgrReport {
                gid: 1,
                health_checks: checks,
            },
            &active(1),
            t0,
        )
        .expect("report");
        let got = s.checks(&active(1), t0, Duration::from_secs(1));
        assert_eq!(got.len(), MAX_MGR_CHECKS);
        assert_eq!(got[0].summary.len(), MAX_TEXT_BYTES);
        assert_eq!(got[0].detail.len(), MAX_DETAIL_LINES);
    }
}
