//! `osd ok-to-stop` and `osd safe-to-destroy`: whether stopping OSDs keeps
//! every PG available, and whether an OSD can go without losing data.
//! Ceph answers them in the mgr (`DaemonServer`); here the mon does, from
//! the current OSDMap and the PG map the OSDs' reports fill. Both only
//! read. The checks are pure functions over a [`PgView`] list, so they are
//! tested without a cluster.
//!
//! Ceph's shapes: `ok-to-stop` always answers its report as JSON
//! (`ok_to_stop`, `osds`, `num_ok_pgs`, `num_not_ok_pgs` and the PG lists
//! that are not empty) with EBUSY when unsafe and EAGAIN while PG states
//! are unknown; `safe-to-destroy` answers a status line (EBUSY/EAGAIN when
//! not safe), or with a JSON format the four lists and 0.
//!
//! Where Kalmar differs, it is more careful: the copies a PG keeps are
//! counted from the current map's acting set (down OSDs are not in it),
//! not from the last report; a `stale` PG (its reporter is down) is not
//! active; a degraded PG that is recovering or backfilling, or degraded
//! without being undersized, counts as one that would become inactive,
//! since the mon does not know which of its copies are complete (Ceph
//! knows from `avail_no_missing`); and an id that does not exist is
//! ENOENT for both commands.

use std::collections::{BTreeMap, BTreeSet};

use kalmar_maps::crush::CrushMap;
use kalmar_maps::{OsdId, OsdMap, PgId, ITEM_NONE};
use serde_json::{json, Value};

use crate::commands::{arg_u32, osd_ids, CmdReply, Format};
use crate::errors::CmdError;
use crate::pgmap::PgMap;

pub const EAGAIN: i32 = -11;
pub const EBUSY: i32 = -16;

/// What the checks know of one PG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgView {
    pub pgid: PgId,
    /// As the PG map shows it: `unknown` when no OSD reported the PG,
    /// `stale+...` when its reporter is down.
    pub state: String,
    pub min_size: u32,
    /// Up and acting sets of the current map (down OSDs left out).
    pub up: Vec<OsdId>,
    pub acting: Vec<OsdId>,
    /// Up and acting sets of the PG's last report (empty if none).
    pub reported_up: Vec<OsdId>,
    pub reported_acting: Vec<OsdId>,
}

impl PgView {
    fn has(&self, flag: &str) -> bool {
        self.state.split('+').any(|s| s == flag)
    }

    fn unknown(&self) -> bool {
        self.state == "unknown"
    }

    fn active(&self) -> bool {
        self.has("active") && !self.has("stale")
    }

    fn active_clean(&self) -> bool {
        self.active() && self.has("clean")
    }

    /// Degraded in a way that may leave acting members without some
    /// objects: recovering or backfilling, or degraded while full-sized.
    fn may_lack_data(&self) -> bool {
        const MOVING: &[&str] = &[
            "recovery_wait",
            "recovering",
            "recovery_toofull",
            "recovery_unfound",
            "backfill_wait",
            "backfilling",
            "backfill_toofull",
            "backfill_unfound",
        ];
        self.has("degraded") && (!self.has("undersized") || MOVING.iter().any(|f| self.has(f)))
    }

    /// Whether `osd` holds or should hold this PG, by the map or the
    /// last report.
    fn names(&self, osd: OsdId) -> bool {
        self.acting.contains(&osd)
            || self.up.contains(&osd)
            || self.reported_acting.contains(&osd)
            || self.reported_up.contains(&osd)
    }
}

/// Every PG of every pool of `map`, with its PG map state and sets.
pub fn pg_views(map: &OsdMap, pgmap: &PgMap) -> Vec<PgView> {
    let mut mapped = BTreeMap::new();
    for &pool in map.pools.keys() {
        // A pool that does not map (its rule is gone) leaves its PGs
        // without sets; they then count as unknown below.
        if let Ok(pgs) = map.map_pool_pgs(pool) {
            mapped.extend(pgs);
        }
    }
    let clean =
        |v: &[OsdId]| -> Vec<OsdId> { v.iter().copied().filter(|&o| o != ITEM_NONE).collect() };
    pgmap
        .lines(map)
        .into_iter()
        .map(|l| {
            let min_size = map.pools.get(&l.pgid.pool).map_or(u32::MAX, |p| p.min_size);
            let (state, up, acting) = match mapped.get(&l.pgid) {
                Some(m) => (l.state, clean(&m.up), clean(&m.acting)),
                None => ("unknown".to_string(), Vec::new(), Vec::new()),
            };
            let (reported_up, reported_acting) = match &l.stat {
                Some(s) => (clean(&s.up), clean(&s.acting)),
                None => (Vec::new(), Vec::new()),
            };
            PgView {
                pgid: l.pgid,
                state,
                min_size,
                up,
                acting,
                reported_up,
                reported_acting,
            }
        })
        .collect()
}

/// What stopping a set of OSDs does to the PGs they serve (Ceph's
/// `offline_pg_report`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfflineReport {
    pub osds: BTreeSet<OsdId>,
    pub ok: BTreeSet<PgId>,
    pub not_ok: BTreeSet<PgId>,
    /// PGs no OSD reported: nothing can be concluded while there are any.
    pub unknown: BTreeSet<PgId>,
    pub ok_become_degraded: BTreeSet<PgId>,
    pub ok_become_more_degraded: BTreeSet<PgId>,
    pub bad_already_inactive: BTreeSet<PgId>,
    pub bad_become_inactive: BTreeSet<PgId>,
}

impl OfflineReport {
    pub fn ok_to_stop(&self) -> bool {
        self.not_ok.is_empty() && self.unknown.is_empty()
    }

    /// Ceph's JSON: the counts, then each list only when it has PGs.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "ok_to_stop": self.ok_to_stop(),
            "osds": self.osds,
            "num_ok_pgs": self.ok.len(),
            "num_not_ok_pgs": self.not_ok.len(),
        });
        for (key, set) in [
            ("unknown_pgs", &self.unknown),
            ("bad_already_inactive", &self.bad_already_inactive),
            ("bad_become_inactive", &self.bad_become_inactive),
            ("ok_become_degraded", &self.ok_become_degraded),
            ("ok_become_more_degraded", &self.ok_become_more_degraded),
        ] {
            if !set.is_empty() {
                let ids: Vec<String> = set.iter().map(PgId::to_string).collect();
                v[key] = json!(ids);
            }
        }
        v
    }
}

/// Ceph's `_check_offlines_pgs` over `pgs`: each PG an OSD of `osds` is
/// acting for (by the map or its last report) is ok when it is active
/// and keeps at least `min_size` acting copies on the other OSDs.
pub fn check_offline(pgs: &[PgView], osds: &BTreeSet<OsdId>) -> OfflineReport {
    let mut r = OfflineReport {
        osds: osds.clone(),
        ..OfflineReport::default()
    };
    for pg in pgs {
        if pg.unknown() {
            r.unknown.insert(pg.pgid);
            continue;
        }
        let involved = pg
            .acting
            .iter()
            .chain(&pg.reported_acting)
            .any(|o| osds.contains(o));
        if !involved {
            continue;
        }
        let left = pg.acting.iter().filter(|o| !osds.contains(*o)).count();
        let mut bad = false;
        if !pg.active() {
            r.bad_already_inactive.insert(pg.pgid);
            bad = true;
        }
        if left < pg.min_size as usize || pg.may_lack_data() {
            r.bad_become_inactive.insert(pg.pgid);
            bad = true;
        }
        if bad {
            r.not_ok.insert(pg.pgid);
        } else {
            r.ok.insert(pg.pgid);
            if pg.has("degraded") {
                r.ok_become_more_degraded.insert(pg.pgid);
            } else {
                r.ok_become_degraded.insert(pg.pgid);
            }
        }
    }
    r
}

/// The bucket holding `item` in the real (not class shadow) hierarchy.
fn crush_parent(crush: &CrushMap, item: i32) -> Option<i32> {
    crush
        .parents_of(item)
        .into_iter()
        .find(|&p| crush.bucket(p).is_some_and(|b| !b.is_shadow()))
}

/// Every device below `bucket`, ascending.
fn devices_under(crush: &CrushMap, bucket: i32) -> BTreeSet<OsdId> {
    let mut out = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut stack = vec![bucket];
    while let Some(id) = stack.pop() {
        if id >= 0 {
            out.insert(id);
            continue;
        }
        if !seen.insert(id) {
            continue;
        }
        if let Some(b) = crush.bucket(id) {
            stack.extend(b.items.iter().copied());
        }
    }
    out
}

/// `osd ok-to-stop IDS --max N` (Ceph's `_maximize_ok_to_stop_set`): the
/// report for `osds`; when they are ok and fewer than `max`, up OSDs
/// next to the first one in CRUSH (its host, then the host's parent, ...)
/// are added one at a time while the set stays ok, up to `max`.
pub fn ok_to_stop(
    map: &OsdMap,
    pgs: &[PgView],
    osds: &BTreeSet<OsdId>,
    max: usize,
) -> OfflineReport {
    let mut report = check_offline(pgs, osds);
    if !report.ok_to_stop() || osds.len() >= max {
        return report;
    }
    let Some(&first) = osds.iter().next() else {
        return report;
    };
    let mut set = osds.clone();
    let mut cur = first;
    // Each pass climbs one level; the depth is bounded by the buckets.
    for _ in 0..=map.crush.max_buckets() {
        let Some(parent) = crush_parent(&map.crush, cur) else {
            return report;
        };
        cur = parent;
        let mut failed = false;
        for o in devices_under(&map.crush, parent) {
            if !map.is_up(o) || set.contains(&o) {
                continue;
            }
            set.insert(o);
            let r = check_offline(pgs, &set);
            if !r.ok_to_stop() {
                set.remove(&o);
                failed = true;
                continue;
            }
            report = r;
            if set.len() >= max {
                return report;
            }
        }
        if failed {
            return report;
        }
    }
    report
}

/// What `osd safe-to-destroy` found for each OSD asked about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestroyReport {
    pub safe_to_destroy: BTreeSet<OsdId>,
    /// OSDs some PG maps to (by the map or its last report).
    pub active: BTreeSet<OsdId>,
    /// OSDs with no stats (or down) while not every PG is active+clean.
    pub missing_stats: BTreeSet<OsdId>,
    /// OSDs whose last stats report PGs while not every PG is
    /// active+clean.
    pub stored_pgs: BTreeSet<OsdId>,
    /// PGs mapped to the `active` OSDs (a PG counted once per OSD).
    pub affected_pgs: usize,
    /// PGs in the `unknown` state: nothing can be concluded.
    pub unknown_pgs: usize,
}

impl DestroyReport {
    pub fn to_json(&self) -> Value {
        json!({
            "safe_to_destroy": self.safe_to_destroy,
            "active": self.active,
            "missing_stats": self.missing_stats,
            "stored_pgs": self.stored_pgs,
        })
    }
}

/// Ceph's safe-to-destroy check: an OSD is safe when no PG maps to it
/// and either every PG is active+clean, or it is up and its last stats
/// say it holds no PG.
pub fn safe_to_destroy(
    map: &OsdMap,
    pgs: &[PgView],
    num_pgs_of: impl Fn(OsdId) -> Option<u32>,
    osds: &BTreeSet<OsdId>,
) -> DestroyReport {
    let mut r = DestroyReport {
        unknown_pgs: pgs.iter().filter(|p| p.unknown()).count(),
        ..DestroyReport::default()
    };
    if r.unknown_pgs > 0 {
        return r;
    }
    let all_clean = pgs.iter().all(PgView::active_clean);
    for &osd in osds {
        let mapped = pgs.iter().filter(|p| p.names(osd)).count();
        if mapped > 0 {
            r.active.insert(osd);
            r.affected_pgs += mapped;
            continue;
        }
        if !all_clean {
            match num_pgs_of(osd) {
                None => {
                    r.missing_stats.insert(osd);
                    continue;
                }
                Some(_) if !map.is_up(osd) => {
                    r.missing_stats.insert(osd);
                    continue;
                }
                Some(n) if n > 0 => {
                    r.stored_pgs.insert(osd);
                    continue;
                }
                Some(_) => {}
            }
        }
        r.safe_to_destroy.insert(osd);
    }
    r
}

/// `1,2,3`, as Ceph prints a set of ids.
fn id_list(ids: &BTreeSet<OsdId>) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// The ids asked about: `ids` (N or osd.N; `all`, `any` or `*` for every
/// OSD). One that does not exist is ENOENT.
fn parse_ids(map: &OsdMap, cmd: &Value) -> Result<BTreeSet<OsdId>, CmdError> {
    let words: Vec<Value> = match cmd.get("ids") {
        Some(Value::Array(a)) => a.clone(),
        Some(v @ (Value::String(_) | Value::Number(_))) => vec![v.clone()],
        _ => Vec::new(),
    };
    let all = words
        .iter()
        .any(|v| matches!(v.as_str(), Some("all" | "any" | "*")));
    let ids: BTreeSet<OsdId> = if all {
        map.existing_osds().collect()
    } else if words.is_empty() {
        BTreeSet::new()
    } else {
        osd_ids(cmd)?.into_iter().collect()
    };
    if ids.is_empty() {
        return Err(CmdError::inval("must specify one or more OSDs"));
    }
    if let Some(id) = ids.iter().find(|&&id| !map.exists(id)) {
        return Err(CmdError::noent(format!("osd.{id} does not exist")));
    }
    Ok(ids)
}

/// JSON data in every format: compact, or indented for `json-pretty`.
fn json_data(fmt: Format, v: &Value) -> Vec<u8> {
    fmt.render(v, || format!("{v}\n"))
}

/// `osd ok-to-stop ID [ID...] [--max N]`.
pub(crate) fn cmd_ok_to_stop(
    map: &OsdMap,
    pgmap: &PgMap,
    cmd: &Value,
    fmt: Format,
) -> Result<CmdReply, CmdError> {
    let osds = parse_ids(map, cmd)?;
    let max = (arg_u32(cmd, "max")?.unwrap_or(1) as usize).max(osds.len());
    let pgs = pg_views(map, pgmap);
    let r = ok_to_stop(map, &pgs, &osds, max);
    let outbuf = json_data(fmt, &r.to_json());
    let (retval, outs) = if !r.unknown.is_empty() {
        (
            EAGAIN,
            format!(
                "{} pgs have unknown state; cannot draw any conclusions",
                r.unknown.len()
            ),
        )
    } else if !r.ok_to_stop() {
        (
            EBUSY,
            format!(
                "unsafe to stop osd(s) at this time ({} PGs are or would become offline)",
                r.not_ok.len()
            ),
        )
    } else {
        (
            0,
            format!(
                "OSD(s) {} are ok to stop without reducing availability, provided there are no other concurrent failures or interventions. {} PGs are likely to be degraded (but remain available) as a result.",
                id_list(&r.osds),
                r.ok.len()
            ),
        )
    };
    Ok(CmdReply {
        retval,
        outs,
        outbuf,
    })
}

/// `osd safe-to-destroy ID [ID...]`.
pub(crate) fn cmd_safe_to_destroy(
    map: &OsdMap,
    pgmap: &PgMap,
    cmd: &Value,
    fmt: Format,
) -> Result<CmdReply, CmdError> {
    let osds = parse_ids(map, cmd)?;
    let pgs = pg_views(map, pgmap);
    let r = safe_to_destroy(map, &pgs, |o| pgmap.osd_num_pgs(o), &osds);
    if r.unknown_pgs > 0 {
        return Err(CmdError::new(
            EAGAIN,
            format!(
                "{} pgs have unknown state; cannot draw any conclusions",
                r.unknown_pgs
            ),
        ));
    }
    if fmt != Format::Plain {
        // Ceph answers the lists, and 0, whenever a format is asked for.
        return Ok(CmdReply::data(json_data(fmt, &r.to_json())));
    }
    let mut outs = String::new();
    let mut retval = 0;
    if r.active.is_empty() && r.missing_stats.is_empty() && r.stored_pgs.is_empty() {
        outs = format!(
            "OSD(s) {} are safe to destroy without reducing data durability.",
            id_list(&osds)
        );
    } else {
        if !r.safe_to_destroy.is_empty() {
            outs.push_str(&format!(
                "OSD(s) {} are safe to destroy without reducing data durability. ",
                id_list(&r.safe_to_destroy)
            ));
        }
        if !r.active.is_empty() {
            outs.push_str(&format!(
                "OSD(s) {} have {} pgs currently mapped to them. ",
                id_list(&r.active),
                r.affected_pgs
            ));
        }
        if !r.missing_stats.is_empty() {
            outs.push_str(&format!(
                "OSD(s) {} have no reported stats, and not all PGs are active+clean; we cannot draw any conclusions. ",
                id_list(&r.missing_stats)
            ));
        }
        if !r.stored_pgs.is_empty() {
            outs.push_str(&format!(
                "OSD(s) {} last reported they still store some PG data, and not all PGs are active+clean; we cannot be sure they aren't still needed.",
                id_list(&r.stored_pgs)
            ));
        }
        retval = if !r.active.is_empty() || !r.stored_pgs.is_empty() {
            EBUSY
        } else {
            EAGAIN
        };
        outs = outs.trim_end().to_string();
    }
    Ok(CmdReply {
        retval,
        outs,
        outbuf: Vec::new(),
    })
}

#[cfg(test)]
#[path = "osd_safety_tests.rs"]
mod tests;
