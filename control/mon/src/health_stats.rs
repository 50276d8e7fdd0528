//! Health checks from what the OSDs report (their PG states and usage),
//! with Ceph's codes, severities and texts:
//!
//! - `OSD_FULL` (HEALTH_ERR), `OSD_BACKFILLFULL`, `OSD_NEARFULL`: an up,
//!   in OSD's used ratio against the OSDMap's `full_ratio`,
//!   `backfillfull_ratio` and `nearfull_ratio`.
//! - `POOL_FULL`: a pool at its quota (`running out of quota`) or served
//!   by a full OSD (`no space`); `POOL_BACKFILLFULL`, `POOL_NEARFULL`:
//!   served by such OSDs; `POOL_NEAR_FULL`: a pool past
//!   `mon_pool_quota_warn_threshold` percent of its quota.
//! - `OSD_SCRUB_ERRORS` (HEALTH_ERR): the errors the PGs' last scrubs
//!   left (`num_scrub_errors`), summed.
//! - `PG_AVAILABILITY` (PGs inactive, down, peering, incomplete, stale),
//!   `PG_DAMAGED` (HEALTH_ERR: inconsistent, unfound or snaptrim_error
//!   PGs) and `PG_DEGRADED` (degraded objects, degraded or undersized PGs).
//!
//! Pure: takes the map and the reported statistics, returns checks.

use std::collections::{BTreeMap, BTreeSet};

use kalmar_maps::placement::format_osd_vec;
use kalmar_maps::{OsdId, OsdMap, PoolId};

use crate::health::{Check, Severity};
use crate::pgmap::PgLine;
use crate::status::bytes_human;

/// Detail lines kept per check (Ceph's `mon_health_max_detail`).
pub const MAX_DETAIL: usize = 50;

/// What the checks read besides the map.
pub struct Reported<'a> {
    /// Per OSD: `(kb_used, kb)` from its last report.
    pub osd_usage: BTreeMap<OsdId, (u64, u64)>,
    /// Every PG of every pool, `unknown` when never reported.
    pub pgs: &'a [PgLine],
    /// `mon_pool_quota_warn_threshold`: percent of a quota that warns
    /// (0: off, as in Ceph).
    pub quota_warn_pct: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fullness {
    Near,
    Backfill,
    Full,
}

/// The fullness of every up, in OSD past a threshold.
fn osd_fullness(m: &OsdMap, usage: &BTreeMap<OsdId, (u64, u64)>) -> BTreeMap<OsdId, Fullness> {
    let mut out = BTreeMap::new();
    for (&id, &(used, total)) in usage {
        if total == 0 || !m.is_up(id) || !m.is_in(id) {
            continue;
        }
        let ratio = used as f64 / total as f64;
        let level = if ratio >= m.full_ratio {
            Fullness::Full
        } else if ratio >= m.backfillfull_ratio {
            Fullness::Backfill
        } else if ratio >= m.nearfull_ratio {
            Fullness::Near
        } else {
            continue;
        };
        out.insert(id, level);
    }
    out
}

fn osd_checks(full: &BTreeMap<OsdId, Fullness>, out: &mut Vec<Check>) {
    for (level, code, severity, noun, what) in [
        (Fullness::Full, "OSD_FULL", Severity::Err, "full", "full"),
        (
            Fullness::Backfill,
            "OSD_BACKFILLFULL",
            Severity::Warn,
            "backfillfull",
            "backfill full",
        ),
        (
            Fullness::Near,
            "OSD_NEARFULL",
            Severity::Warn,
            "nearfull",
            "near full",
        ),
    ] {
        let ids: Vec<OsdId> = full
            .iter()
            .filter(|(_, l)| **l == level)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        out.push(Check {
            code: code.into(),
            severity,
            summary: format!("{} {noun} osd(s)", ids.len()),
            count: ids.len(),
            detail: ids.iter().map(|id| format!("osd.{id} is {what}")).collect(),
        });
    }
}

/// Objects and bytes per pool from the PGs' latest reports.
fn pool_usage(pgs: &[PgLine]) -> BTreeMap<PoolId, (u64, u64)> {
    let mut out: BTreeMap<PoolId, (u64, u64)> = BTreeMap::new();
    for l in pgs {
        if let Some(s) = &l.stat {
            let e = out.entry(l.pgid.pool).or_default();
            e.0 += s.num_objects;
            e.1 += s.num_bytes;
        }
    }
    out
}

fn pool_checks(
    m: &OsdMap,
    r: &Reported<'_>,
    full: &BTreeMap<OsdId, Fullness>,
    out: &mut Vec<Check>,
) {
    let usage = pool_usage(r.pgs);
    let (mut full_d, mut backfill_d, mut near_d, mut quota_near_d) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for pool in m.pools.values() {
        let (objects, bytes) = usage.get(&pool.id).copied().unwrap_or_default();
        let name = &pool.name;
        let over_objects = pool.quota_max_objects > 0 && objects >= pool.quota_max_objects;
        let over_bytes = pool.quota_max_bytes > 0 && bytes >= pool.quota_max_bytes;
        // The worst fullness among the OSDs serving the pool.
        let serving: BTreeSet<OsdId> = m
            .map_pool_pgs(pool.id)
            .map(|pgs| pgs.into_iter().flat_map(|(_, p)| p.acting).collect())
            .unwrap_or_default();
        let worst = serving.iter().filter_map(|o| full.get(o)).max().copied();
        if over_objects || over_bytes {
            full_d.push(format!("pool '{name}' is full (running out of quota)"));
        } else if worst == Some(Fullness::Full) {
            full_d.push(format!("pool '{name}' is full (no space)"));
        } else if worst == Some(Fullness::Backfill) {
            backfill_d.push(format!("pool '{name}' is backfillfull"));
        } else if worst == Some(Fullness::Near) {
            near_d.push(format!("pool '{name}' is nearfull"));
        }
        if r.quota_warn_pct == 0 || over_objects || over_bytes {
            continue;
        }
        let warn = |max: u64, have: u64| {
            max > 0 && have as u128 * 100 >= max as u128 * u128::from(r.quota_warn_pct)
        };
        if warn(pool.quota_max_objects, objects) {
            quota_near_d.push(format!(
                "pool '{name}' has {objects} objects (max {})",
                pool.quota_max_objects
            ));
        }
        if warn(pool.quota_max_bytes, bytes) {
            quota_near_d.push(format!(
                "pool '{name}' has {} (max {})",
                bytes_human(bytes),
                bytes_human(pool.quota_max_bytes)
            ));
        }
    }
    for (code, noun, detail) in [
        ("POOL_FULL", "pool(s) full", full_d),
        ("POOL_BACKFILLFULL", "pool(s) backfillfull", backfill_d),
        ("POOL_NEARFULL", "pool(s) nearfull", near_d),
    ] {
        if !detail.is_empty() {
            out.push(Check {
                code: code.into(),
                severity: Severity::Warn,
                summary: format!("{} {noun}", detail.len()),
                count: detail.len(),
                detail,
            });
        }
    }
    let near_pools: BTreeSet<&str> = quota_near_d
        .iter()
        .filter_map(|d| d.split('\'').nth(1))
        .collect();
    if !near_pools.is_empty() {
        out.push(Check {
            code: "POOL_NEAR_FULL".into(),
            severity: Severity::Warn,
            summary: format!("{} pools nearfull", near_pools.len()),
            count: near_pools.len(),
            detail: quota_near_d,
        });
    }
}

/// One PG's line in a PG check's detail (Ceph's wording).
fn pg_detail(l: &PgLine) -> String {
    let acting = l
        .stat
        .as_ref()
        .map(|s| s.acting.clone())
        .unwrap_or_default();
    let mut d = format!(
        "pg {} is {}, acting {}",
        l.pgid,
        l.state,
        format_osd_vec(&acting)
    );
    if let Some(u) = l
        .stat
        .as_ref()
        .map(|s| s.num_objects_unfound)
        .filter(|u| *u > 0)
    {
        d.push_str(&format!(", {u} unfound"));
    }
    d
}

/// `N pgs inactive, M pg down` (Ceph pluralises per state).
fn counts_text(counts: &[(&str, usize)]) -> Vec<String> {
    counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{n} {} {name}", if *n == 1 { "pg" } else { "pgs" }))
        .collect()
}

/// PG states that mean possible data damage (Ceph's `DAMAGED`), in the
/// order Ceph's summary lists them.
const DAMAGED_STATES: &[&str] = &[
    "recovery_unfound",
    "backfill_unfound",
    "inconsistent",
    "snaptrim_error",
];

fn pg_checks(pgs: &[PgLine], out: &mut Vec<Check>) {
    let has = |l: &PgLine, s: &str| l.state.split('+').any(|x| x == s);
    // OSD_SCRUB_ERRORS: no detail lines (PG_DAMAGED names the PGs).
    let scrub_errors: u64 = pgs
        .iter()
        .filter_map(|l| l.stat.as_ref())
        .map(|s| s.num_scrub_errors)
        .sum();
    if scrub_errors > 0 {
        out.push(Check {
            code: "OSD_SCRUB_ERRORS".into(),
            severity: Severity::Err,
            summary: format!("{scrub_errors} scrub errors"),
            count: scrub_errors as usize,
            detail: Vec::new(),
        });
    }
    // PG_AVAILABILITY: not active (unknown included), down, peering,
    // incomplete, stale.
    let unavailable: Vec<&PgLine> = pgs
        .iter()
        .filter(|l| {
            !has(l, "active")
                || ["down", "peering", "incomplete", "stale"]
                    .iter()
                    .any(|s| has(l, s))
        })
        .collect();
    if !unavailable.is_empty() {
        let n = |s: &str| unavailable.iter().filter(|l| has(l, s)).count();
        let inactive = unavailable.iter().filter(|l| !has(l, "active")).count();
        let parts = counts_text(&[
            ("inactive", inactive),
            ("down", n("down")),
            ("peering", n("peering")),
            ("incomplete", n("incomplete")),
            ("stale", n("stale")),
        ]);
        out.push(Check {
            code: "PG_AVAILABILITY".into(),
            severity: Severity::Warn,
            summary: format!("Reduced data availability: {}", parts.join(", ")),
            count: unavailable.len(),
            detail: unavailable
                .iter()
                .take(MAX_DETAIL)
                .map(|l| pg_detail(l))
                .collect(),
        });
    }
    // PG_DAMAGED: its count is per state, as Ceph's (a PG both
    // inconsistent and unfound counts twice).
    let damaged: Vec<&PgLine> = pgs
        .iter()
        .filter(|l| DAMAGED_STATES.iter().any(|s| has(l, s)))
        .collect();
    if !damaged.is_empty() {
        let per_state: Vec<(&str, usize)> = DAMAGED_STATES
            .iter()
            .map(|s| (*s, damaged.iter().filter(|l| has(l, s)).count()))
            .collect();
        out.push(Check {
            code: "PG_DAMAGED".into(),
            severity: Severity::Err,
            summary: format!(
                "Possible data damage: {}",
                counts_text(&per_state).join(", ")
            ),
            count: per_state.iter().map(|(_, n)| n).sum(),
            detail: damaged
                .iter()
                .take(MAX_DETAIL)
                .map(|l| pg_detail(l))
                .collect(),
        });
    }
    // PG_DEGRADED: degraded objects, degraded or undersized PGs.
    let (degraded_objects, copies) = pgs
        .iter()
        .filter_map(|l| l.stat.as_ref())
        .fold((0u64, 0u64), |(d, c), s| {
            (d + s.num_objects_degraded, c + s.num_object_copies)
        });
    let degraded: Vec<&PgLine> = pgs
        .iter()
        .filter(|l| has(l, "degraded") || has(l, "undersized"))
        .collect();
    let mut parts = Vec::new();
    if degraded_objects > 0 && copies > 0 {
        parts.push(format!(
            "{degraded_objects}/{copies} objects degraded ({:.3}%)",
            degraded_objects as f64 * 100.0 / copies as f64
        ));
    }
    parts.extend(counts_text(&[
        (
            "degraded",
            degraded.iter().filter(|l| has(l, "degraded")).count(),
        ),
        (
            "undersized",
            degraded.iter().filter(|l| has(l, "undersized")).count(),
        ),
    ]));
    if !parts.is_empty() {
        out.push(Check {
            code: "PG_DEGRADED".into(),
            severity: Severity::Warn,
            summary: format!("Degraded data redundancy: {}", parts.join(", ")),
            count: degraded.len().max(1),
            detail: degraded
                .iter()
                .take(MAX_DETAIL)
                .map(|l| pg_detail(l))
                .collect(),
        });
    }
}

/// Every check this module knows, in Ceph's order of concern.
pub fn checks(m: &OsdMap, r: &Reported<'_>) -> Vec<Check> {
    let mut out = Vec::new();
    let full = osd_fullness(m, &r.osd_usage);
    osd_checks(&full, &mut out);
    pool_checks(m, r, &full, &mut out);
    pg_checks(r.pgs, &mut out);
    out
}

#[cfg(test)]
#[path = "health_stats_tests.rs"]
mod tests;
