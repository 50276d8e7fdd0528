//! PG statistics from the OSDs' reports, kept by the mon until the mgr
//! takes them over: `pg stat`, `pg dump [pgs_brief]`, and the pgmap part
//! of `status` (Ceph's shapes and key names).
//!
//! Each PG shows its primary's latest report; a PG no OSD has reported is
//! `unknown`, and a report from an OSD that is now down is `stale+...`.

use std::collections::BTreeMap;

use kalmar_maps::placement::format_osd_vec;
use kalmar_maps::time::format_stamp;
use kalmar_maps::{OsdId, OsdMap, PgId, PoolId};
use kalmar_proto::pgstats::{OsdPgStats, OsdStatEntry, PgStatEntry};
use serde_json::{json, Value};

use crate::status::{bytes_human, PgSummary};

#[derive(Debug, Clone)]
struct Reported {
    stat: PgStatEntry,
    reporter: OsdId,
}

/// The PG statistics the mon knows.
#[derive(Debug, Clone, Default)]
pub struct PgMap {
    pgs: BTreeMap<PgId, Reported>,
    osds: BTreeMap<OsdId, OsdStatEntry>,
    /// Each pool's `(objects, bytes)` over `pgs`, kept as reports arrive so
    /// a report costs its own PGs, not the whole map (1,000 OSDs reporting
    /// a 32768-PG pool every second would otherwise re-sum it 1,000 times
    /// a second). Wrapping arithmetic: every add is undone by an exact
    /// subtract, so the sum is exact while the true total fits in a u64.
    pool_sums: BTreeMap<PoolId, (u64, u64)>,
    version: u64,
    stamp_us: u64,
}

fn add_to(sum: &mut (u64, u64), s: &PgStatEntry) {
    sum.0 = sum.0.wrapping_add(s.num_objects);
    sum.1 = sum.1.wrapping_add(s.num_bytes);
}

fn remove_from(sum: &mut (u64, u64), s: &PgStatEntry) {
    sum.0 = sum.0.wrapping_sub(s.num_objects);
    sum.1 = sum.1.wrapping_sub(s.num_bytes);
}

/// One PG as `pg dump` shows it.
#[derive(Debug, Clone)]
pub struct PgLine {
    pub pgid: PgId,
    pub state: String,
    pub stat: Option<PgStatEntry>,
}

impl PgMap {
    /// Takes an OSD's report: its PGs replace older reports of the same
    /// PGs (newer epoch/sequence wins), its own figures replace the last.
    pub fn apply(&mut self, r: &OsdPgStats, now_us: u64) {
        for s in &r.pgs {
            // Newer epoch/sequence wins; another OSD's report (a new
            // primary) wins unless it is from an older epoch.
            let newer = match self.pgs.get(&s.pgid) {
                None => true,
                Some(old) if old.reporter == r.osd_id => {
                    (s.reported_epoch, s.reported_seq)
                        >= (old.stat.reported_epoch, old.stat.reported_seq)
                }
                Some(old) => s.reported_epoch >= old.stat.reported_epoch,
            };
            if newer {
                let old = self.pgs.insert(
                    s.pgid,
                    Reported {
                        stat: s.clone(),
                        reporter: r.osd_id,
                    },
                );
                let sum = self.pool_sums.entry(s.pgid.pool).or_default();
                if let Some(old) = old {
                    remove_from(sum, &old.stat);
                }
                add_to(sum, s);
            }
        }
        self.osds.insert(r.osd_id, r.osd_stat.clone());
        self.version += 1;
        self.stamp_us = now_us;
    }

    /// Each OSD's `(kb_used, kb)` from its last report.
    pub fn osd_usage(&self) -> BTreeMap<OsdId, (u64, u64)> {
        self.osds
            .iter()
            .map(|(id, s)| (*id, (s.kb_used, s.kb)))
            .collect()
    }

    /// The PG count of an OSD's last report (None: it never reported).
    pub fn osd_num_pgs(&self, osd: OsdId) -> Option<u32> {
        self.osds.get(&osd).map(|s| s.num_pgs)
    }

    /// Each pool's `(objects, bytes)`, summed over its reported PGs; a
    /// pool none of whose PGs reported is absent.
    pub fn pool_usage(&self) -> &BTreeMap<PoolId, (u64, u64)> {
        &self.pool_sums
    }

    /// Forgets PGs of deleted pools (or beyond a pool's pg_num) and OSDs
    /// that no longer exist.
    pub fn prune(&mut self, map: &OsdMap) {
        let sums = &mut self.pool_sums;
        self.pgs.retain(|pg, r| {
            let keep = map.pools.get(&pg.pool).is_some_and(|p| pg.seed < p.pg_num);
            if !keep {
                if let Some(sum) = sums.get_mut(&pg.pool) {
                    remove_from(sum, &r.stat);
                }
            }
            keep
        });
        sums.retain(|pool, _| map.pools.contains_key(pool));
        self.osds.retain(|osd, _| map.exists(*osd));
    }

    /// Every PG of every pool in `map`, in pgid order.
    pub fn lines(&self, map: &OsdMap) -> Vec<PgLine> {
        let mut out = Vec::new();
        for pool in map.pools.values() {
            for pgid in pool.pgs() {
                out.push(match self.pgs.get(&pgid) {
                    None => PgLine {
                        pgid,
                        state: "unknown".into(),
                        stat: None,
                    },
                    Some(r) => {
                        let state = if map.is_up(r.reporter) {
                            r.stat.state.clone()
                        } else {
                            format!("stale+{}", r.stat.state)
                        };
                        PgLine {
                            pgid,
                            state,
                            stat: Some(r.stat.clone()),
                        }
                    }
                });
            }
        }
        out
    }

    fn usage(&self, map: &OsdMap) -> (u64, u64, u64) {
        let up = self
            .osds
            .iter()
            .filter(|(o, _)| map.is_up(**o))
            .map(|(_, s)| s);
        let (mut total, mut used, mut avail) = (0, 0, 0);
        for s in up {
            total += s.kb * 1024;
            used += s.kb_used * 1024;
            avail += s.kb_avail * 1024;
        }
        (total, used, avail)
    }

    /// The pgmap summary `status` shows.
    pub fn summary(&self, map: &OsdMap) -> PgSummary {
        let lines = self.lines(map);
        let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
        let (mut objects, mut bytes) = (0, 0);
        for l in &lines {
            if l.state != "unknown" {
                *by_state.entry(l.state.clone()).or_default() += 1;
            }
            if let Some(s) = &l.stat {
                objects += s.num_objects;
                bytes += s.num_bytes;
            }
        }
        let (total, used, avail) = self.usage(map);
        PgSummary {
            pgs_by_state: by_state.into_iter().collect(),
            num_objects: objects,
            data_bytes: bytes,
            bytes_used: used,
            bytes_avail: avail,
            bytes_total: total,
        }
    }

    /// `pg stat`: JSON and the one-line text.
    pub fn stat(&self, map: &OsdMap) -> (Value, String) {
        let lines = self.lines(map);
        let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
        for l in &lines {
            *by_state.entry(l.state.clone()).or_default() += 1;
        }
        let mut states: Vec<(String, u64)> = by_state.into_iter().collect();
        states.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let s = self.summary(map);
        let v = json!({
            "pg_ready": true,
            "num_pg_by_state": states.iter().map(|(n, c)| json!({"name": n, "num": c})).collect::<Vec<_>>(),
            "num_pgs": lines.len(),
            "num_bytes": s.data_bytes,
            "num_objects": s.num_objects,
            "total_bytes": s.bytes_total,
            "total_avail_bytes": s.bytes_avail,
            "total_used_bytes": s.bytes_used,
            "total_used_raw_bytes": s.bytes_used,
        });
        let states_text: Vec<String> = states.iter().map(|(n, c)| format!("{c} {n}")).collect();
        let text = format!(
            "{} pgs: {}; {} data, {} used, {} / {} avail\n",
            lines.len(),
            states_text.join(", "),
            bytes_human(s.data_bytes),
            bytes_human(s.bytes_used),
            bytes_human(s.bytes_avail),
            bytes_human(s.bytes_total)
        );
        (v, text)
    }

    /// `pg dump [pgs_brief]`: JSON and the text table.
    pub fn dump(&self, map: &OsdMap, brief: bool) -> (Value, String) {
        let lines = self.lines(map);
        if brief {
            let v: Vec<Value> = lines.iter().map(brief_json).collect();
            let mut rows = vec![vec![
                "PG_STAT".to_string(),
                "STATE".into(),
                "UP".into(),
                "UP_PRIMARY".into(),
                "ACTING".into(),
                "ACTING_PRIMARY".into(),
            ]];
            for l in &lines {
                let (up, upp, act, actp) = sets(l);
                rows.push(vec![
                    l.pgid.to_string(),
                    l.state.clone(),
                    up,
                    upp,
                    act,
                    actp,
                ]);
            }
            return (
                json!({"pg_ready": true, "pg_stats": v}),
                table(&rows, &[0, 1]),
            );
        }
        let stats: Vec<Value> = lines.iter().map(full_json).collect();
        let osd_stats: Vec<Value> = self
            .osds
            .values()
            .map(|o| {
                json!({
                    "osd": o.osd, "num_pgs": o.num_pgs, "kb": o.kb, "kb_used": o.kb_used,
                    "kb_avail": o.kb_avail, "hb_peers": o.hb_peers,
                    "perf_stat": {"commit_latency_ms": o.commit_latency_ms, "apply_latency_ms": o.apply_latency_ms},
                })
            })
            .collect();
        let s = self.summary(map);
        let v = json!({
            "pg_ready": true,
            "pg_map": {
                "version": self.version,
                "stamp": format_stamp(self.stamp_us),
                "last_osdmap_epoch": map.epoch,
                "pg_stats_sum": {"stat_sum": {"num_bytes": s.data_bytes, "num_objects": s.num_objects}},
                "osd_stats_sum": {"kb": s.bytes_total / 1024, "kb_used": s.bytes_used / 1024, "kb_avail": s.bytes_avail / 1024},
                "pg_stats": stats,
                "osd_stats": osd_stats,
            }
        });
        let mut rows = vec![[
            "PG_STAT",
            "OBJECTS",
            "MISSING_ON_PRIMARY",
            "DEGRADED",
            "MISPLACED",
            "UNFOUND",
            "BYTES",
            "LOG",
            "STATE",
            "STATE_STAMP",
            "VERSION",
            "REPORTED",
            "UP",
            "UP_PRIMARY",
            "ACTING",
            "ACTING_PRIMARY",
            "SCRUB_STAMP",
            "DEEP_SCRUB_STAMP",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()];
        for l in &lines {
            let (up, upp, act, actp) = sets(l);
            let st = l.stat.clone().unwrap_or_default();
            rows.push(vec![
                l.pgid.to_string(),
                st.num_objects.to_string(),
                st.num_objects_missing_on_primary.to_string(),
                st.num_objects_degraded.to_string(),
                st.num_objects_misplaced.to_string(),
                st.num_objects_unfound.to_string(),
                st.num_bytes.to_string(),
                st.log_size.to_string(),
                l.state.clone(),
                format_stamp(st.state_stamp_us),
                format!("{}'{}", st.version_epoch, st.version),
                format!("{}:{}", st.reported_epoch, st.reported_seq),
                up,
                upp,
                act,
                actp,
                format_stamp(st.last_scrub_stamp_us),
                format_stamp(st.last_deep_scrub_stamp_us),
            ]);
        }
        (v, table(&rows, &[0, 8, 9]))
    }
}

fn sets(l: &PgLine) -> (String, String, String, String) {
    match &l.stat {
        Some(s) => (
            format_osd_vec(&s.up),
            s.up_primary.to_string(),
            format_osd_vec(&s.acting),
            s.acting_primary.to_string(),
        ),
        None => ("[]".into(), "-1".into(), "[]".into(), "-1".into()),
    }
}

fn brief_json(l: &PgLine) -> Value {
    let s = l.stat.clone().unwrap_or_default();
    json!({
        "pgid": l.pgid.to_string(), "state": l.state,
        "up": s.up, "acting": s.acting, "up_primary": s.up_primary, "acting_primary": s.acting_primary,
    })
}

fn full_json(l: &PgLine) -> Value {
    let s = l.stat.clone().unwrap_or_default();
    json!({
        "pgid": l.pgid.to_string(),
        "version": format!("{}'{}", s.version_epoch, s.version),
        "reported_seq": s.reported_seq,
        "reported_epoch": s.reported_epoch,
        "state": l.state,
        "last_change": format_stamp(s.state_stamp_us),
        "up": s.up,
        "acting": s.acting,
        "up_primary": s.up_primary,
        "acting_primary": s.acting_primary,
        "log_size": s.log_size,
        "ondisk_log_size": s.log_size,
        "last_epoch_clean": s.last_epoch_clean,
        "last_scrub_stamp": format_stamp(s.last_scrub_stamp_us),
        "last_deep_scrub_stamp": format_stamp(s.last_deep_scrub_stamp_us),
        "stat_sum": {
            "num_bytes": s.num_bytes,
            "num_objects": s.num_objects,
            "num_object_copies": s.num_object_copies,
            "num_objects_missing_on_primary": s.num_objects_missing_on_primary,
            "num_objects_degraded": s.num_objects_degraded,
            "num_objects_misplaced": s.num_objects_misplaced,
            "num_objects_unfound": s.num_objects_unfound,
            "num_read": s.num_read,
            "num_read_kb": s.num_read_kb,
            "num_write": s.num_write,
            "num_write_kb": s.num_write_kb,
            "num_scrub_errors": s.num_scrub_errors,
            "num_shallow_scrub_errors": s.num_shallow_scrub_errors,
            "num_deep_scrub_errors": s.num_deep_scrub_errors,
        },
    })
}

/// Columns separated by two spaces; columns in `left` are left-aligned,
/// the others right-aligned (as Ceph's table printer does).
fn table(rows: &[Vec<String>], left: &[usize]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = (0..cols)
            .map(|c| {
                let s = r.get(c).map_or("", String::as_str);
                if left.contains(&c) {
                    format!("{s:<w$}", w = widths[c])
                } else {
                    format!("{s:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_maps::osd::{OsdState, WEIGHT_IN};
    use kalmar_maps::pool::PgPool;

    fn map() -> OsdMap {
        let mut m = OsdMap::new(uuid::Uuid::nil(), 0);
        m.epoch = 9;
        m.set_max_osd(2);
        for i in 0..2 {
            if let Some(s) = m.osd_mut(i) {
                s.state = OsdState(OsdState::EXISTS | OsdState::UP);
                s.weight = WEIGHT_IN;
            }
        }
        m.pools.insert(1, PgPool::replicated(1, "rbd", 2, 1, 4, 0));
        m
    }

    fn report(
        osd: OsdId,
        seed: u32,
        state: &str,
        epoch: u32,
        seq: u64,
        objects: u64,
    ) -> OsdPgStats {
        OsdPgStats {
            osd_id: osd,
            epoch,
            pgs: vec![PgStatEntry {
                pgid: PgId::new(1, seed),
                state: state.into(),
                reported_epoch: epoch,
                reported_seq: seq,
                up: vec![osd, 1 - osd],
                acting: vec![osd, 1 - osd],
                up_primary: osd,
                acting_primary: osd,
                num_objects: objects,
                num_bytes: objects * 10,
                ..Default::default()
            }],
            osd_stat: OsdStatEntry {
                osd,
                kb: 1024,
                kb_used: 24,
                kb_avail: 1000,
                ..Default::default()
            },
        }
    }

    #[test]
    fn reports_states_and_staleness() {
        let mut m = map();
        let mut pm = PgMap::default();
        pm.apply(&report(0, 0, "active+clean", 9, 1, 3), 1);
        pm.apply(&report(1, 1, "peering", 9, 1, 0), 2);
        // An older report never replaces a newer one.
        pm.apply(&report(0, 0, "peering", 8, 9, 0), 3);
        let lines = pm.lines(&m);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].state, "active+clean");
        assert_eq!(lines[1].state, "peering");
        assert_eq!(lines[2].state, "unknown");
        let s = pm.summary(&m);
        assert_eq!(s.num_objects, 3);
        assert_eq!(s.bytes_total, 2 * 1024 * 1024);
        assert_eq!(
            s.pgs_by_state,
            vec![("active+clean".into(), 1), ("peering".into(), 1)]
        );
        let (j, text) = pm.stat(&m);
        assert_eq!(j["num_pgs"], json!(4));
        assert!(
            text.starts_with("4 pgs: 2 unknown, 1 active+clean, 1 peering; "),
            "{text}"
        );
        // osd.0 goes down: its PG is stale until the new primary reports.
        if let Some(s) = m.osd_mut(0) {
            s.state = OsdState(OsdState::EXISTS);
        }
        assert_eq!(pm.lines(&m)[0].state, "stale+active+clean");
        pm.apply(&report(1, 0, "active+undersized+degraded", 10, 1, 3), 4);
        assert_eq!(pm.lines(&m)[0].state, "active+undersized+degraded");
        let (j, text) = pm.dump(&m, true);
        assert_eq!(j["pg_stats"][0]["pgid"], json!("1.0"));
        assert!(text.starts_with("PG_STAT  STATE"), "{text}");
        assert!(
            text.contains("1.0      active+undersized+degraded  [1,0]"),
            "{text}"
        );
        let (j, text) = pm.dump(&m, false);
        assert_eq!(
            j["pg_map"]["pg_stats"][0]["stat_sum"]["num_objects"],
            json!(3)
        );
        assert!(text.contains("VERSION"), "{text}");
        // Pool deleted: its PGs go.
        m.pools.clear();
        pm.prune(&m);
        assert!(pm.lines(&m).is_empty());
        assert!(pm.pool_usage().is_empty());
    }

    /// The per-pool sums kept as reports arrive equal a fresh sum over the
    /// PGs after replacements, ignored stale reports and a pg_num cut.
    #[test]
    fn pool_usage_follows_replacements_and_pruning() {
        let mut m = map();
        let mut pm = PgMap::default();
        let fresh_sum = |pm: &PgMap, m: &OsdMap| {
            let (mut o, mut b) = (0, 0);
            for l in pm.lines(m) {
                if let Some(s) = l.stat {
                    o += s.num_objects;
                    b += s.num_bytes;
                }
            }
            (o, b)
        };
        pm.apply(&report(0, 0, "active+clean", 9, 1, 3), 1);
        pm.apply(&report(0, 2, "active+clean", 9, 1, 5), 1);
        pm.apply(&report(1, 3, "active+clean", 9, 1, 7), 1);
        assert_eq!(pm.pool_usage()[&1], (15, 150));
        // A newer report replaces a PG's figures; an older one does not.
        pm.apply(&report(0, 0, "active+clean", 9, 2, 1), 2);
        pm.apply(&report(0, 2, "active+clean", 8, 5, 100), 2);
        assert_eq!(pm.pool_usage()[&1], (13, 130));
        assert_eq!(pm.pool_usage()[&1], fresh_sum(&pm, &m));
        // pg_num cut to 2: PGs 2 and 3 leave the sums.
        if let Some(p) = m.pools.get_mut(&1) {
            p.pg_num = 2;
        }
        pm.prune(&m);
        assert_eq!(pm.pool_usage()[&1], (1, 10));
        assert_eq!(pm.pool_usage()[&1], fresh_sum(&pm, &m));
    }
}
