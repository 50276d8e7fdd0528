//! `pg stat`, `pg dump` and the data/io/progress part of `status`, as
//! Ceph prints them (plain) and with Ceph's JSON keys.

use kalmar_maps::placement::format_osd_vec;
use kalmar_maps::time::format_stamp;
use kalmar_maps::OsdMap;
use serde_json::{json, Value};

use super::summary::Summary;
use super::{PgLine, PgMap, Rates};
use crate::units::{bytes, si, table};

/// `pg stat`: JSON and the one-line text.
pub fn pg_stat(pm: &PgMap, map: &OsdMap, now_us: u64) -> (Value, String) {
    let s = Summary::of(pm, map, now_us);
    let r = pm.rates();
    let states = s.states_by_count();
    let v = json!({
        "pg_ready": true,
        "num_pg_by_state": states.iter().map(|(n, c)| json!({"name": n, "num": c})).collect::<Vec<_>>(),
        "num_pgs": s.num_pgs,
        "num_bytes": s.all.num_bytes,
        "num_objects": s.all.num_objects,
        "total_bytes": s.bytes_total,
        "total_avail_bytes": s.bytes_avail,
        "total_used_bytes": s.bytes_used,
        "total_used_raw_bytes": s.bytes_used,
        "read_bytes_sec": r.read_bytes_sec,
        "write_bytes_sec": r.write_bytes_sec,
        "read_op_per_sec": r.read_op_per_sec,
        "write_op_per_sec": r.write_op_per_sec,
    });
    let states_text: Vec<String> = states.iter().map(|(n, c)| format!("{c} {n}")).collect();
    let mut text = format!(
        "{} pgs: {}; {} data, {} used, {} / {} avail",
        s.num_pgs,
        states_text.join(", "),
        bytes(s.all.num_bytes),
        bytes(s.bytes_used),
        bytes(s.bytes_avail),
        bytes(s.bytes_total)
    );
    if let Some(io) = io_oneline(&r) {
        text.push_str("; ");
        text.push_str(&io);
    }
    text.push('\n');
    (v, text)
}

/// `853 B/s rd, 38 KiB/s wr, 6 op/s` (None when there is no I/O).
fn io_oneline(r: &Rates) -> Option<String> {
    let mut parts = Vec::new();
    if r.read_bytes_sec > 0 || r.read_op_per_sec > 0 {
        parts.push(format!("{}/s rd", bytes(r.read_bytes_sec)));
    }
    if r.write_bytes_sec > 0 || r.write_op_per_sec > 0 {
        parts.push(format!("{}/s wr", bytes(r.write_bytes_sec)));
    }
    if parts.is_empty() {
        return None;
    }
    parts.push(format!(
        "{} op/s",
        si(r.read_op_per_sec + r.write_op_per_sec)
    ));
    Some(parts.join(", "))
}

/// What `pg dump` shows (`pg dump [all|summary|pgs|pgs_brief|osds|pools]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpWhat {
    All,
    Summary,
    Pgs,
    PgsBrief,
    Osds,
    Pools,
}

impl DumpWhat {
    pub fn parse(s: &str) -> Option<DumpWhat> {
        Some(match s {
            "all" => DumpWhat::All,
            "summary" | "sum" => DumpWhat::Summary,
            "pgs" => DumpWhat::Pgs,
            "pgs_brief" => DumpWhat::PgsBrief,
            "osds" => DumpWhat::Osds,
            "pools" => DumpWhat::Pools,
            _ => return None,
        })
    }
}

fn sets(l: &PgLine<'_>) -> [String; 4] {
    match l.stat {
        Some(s) => [
            format_osd_vec(&s.up),
            s.up_primary.to_string(),
            format_osd_vec(&s.acting),
            s.acting_primary.to_string(),
        ],
        None => ["[]".into(), "-1".into(), "[]".into(), "-1".into()],
    }
}

/// One PG's `pg_stat_t` JSON.
pub fn pg_json(l: &PgLine<'_>) -> Value {
    let s = l.stat.cloned().unwrap_or_default();
    let mut sum = super::summary::StatSum::default();
    sum.add(&s);
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
        "stat_sum": sum.to_json(),
    })
}

fn brief_json(l: &PgLine<'_>) -> Value {
    let s = l.stat.cloned().unwrap_or_default();
    json!({
        "pgid": l.pgid.to_string(), "state": l.state,
        "up": s.up, "acting": s.acting, "up_primary": s.up_primary, "acting_primary": s.acting_primary,
    })
}

/// Ceph's `osd_stat_t` JSON for one OSD.
pub fn osd_stat_json(o: &kalmar_proto::pgstats::OsdStatEntry) -> Value {
    json!({
        "osd": o.osd, "num_pgs": o.num_pgs, "kb": o.kb, "kb_used": o.kb_used,
        "kb_used_data": o.kb_used, "kb_used_omap": 0, "kb_used_meta": 0, "kb_avail": o.kb_avail,
        "statfs": {"total": o.kb * 1024, "available": o.kb_avail * 1024, "internally_reserved": 0,
                   "allocated": o.kb_used * 1024, "data_stored": o.kb_used * 1024, "data_compressed": 0},
        "hb_peers": o.hb_peers,
        "perf_stat": {"commit_latency_ms": o.commit_latency_ms, "apply_latency_ms": o.apply_latency_ms,
                      "commit_latency_ns": o.commit_latency_ms * 1_000_000,
                      "apply_latency_ns": o.apply_latency_ms * 1_000_000},
    })
}

/// Ceph's `pool_stats` entries.
pub fn pool_stats_json(s: &Summary) -> Vec<Value> {
    s.pools
        .iter()
        .map(|p| {
            json!({
                "poolid": p.id, "num_pg": p.pg_num, "stat_sum": p.sum.to_json(),
                "store_stats": {"total": 0, "available": 0,
                                "allocated": p.sum.num_bytes * u64::from(p.size),
                                "data_stored": p.sum.num_bytes * u64::from(p.size), "data_compressed": 0},
                "log_size": p.sum.log_size, "ondisk_log_size": p.sum.log_size,
                "up": p.pg_num * p.size, "acting": p.pg_num * p.size,
            })
        })
        .collect()
}

/// The `pg_map` object of `pg dump` (also `get("pg_dump")`).
pub fn pg_dump_json(pm: &PgMap, map: &OsdMap, lines: &[PgLine<'_>], s: &Summary) -> Value {
    json!({
        "version": pm.version(),
        "stamp": format_stamp(pm.stamp_us()),
        "last_osdmap_epoch": map.epoch,
        "last_pg_scan": map.epoch,
        "pg_stats_sum": {"stat_sum": s.all.to_json()},
        "pg_stats_delta": pm.deltas().total().to_json(),
        "osd_stats_sum": {"kb": s.bytes_total / 1024, "kb_used": s.bytes_used / 1024,
                          "kb_avail": s.bytes_avail / 1024, "num_osds": pm.osd_stats().len()},
        "pg_stats": lines.iter().map(pg_json).collect::<Vec<_>>(),
        "pool_stats": pool_stats_json(s),
        "osd_stats": pm.osd_stats().values().map(osd_stat_json).collect::<Vec<_>>(),
        "pool_statfs": [],
    })
}

/// `pg dump [what]`: JSON and the text.
pub fn pg_dump(pm: &PgMap, map: &OsdMap, now_us: u64, what: DumpWhat) -> (Value, String) {
    let lines = pm.lines(map, now_us);
    let s = Summary::from_lines(pm, map, &lines);
    match what {
        DumpWhat::PgsBrief => {
            let mut rows = vec![[
                "PG_STAT",
                "STATE",
                "UP",
                "UP_PRIMARY",
                "ACTING",
                "ACTING_PRIMARY",
            ]
            .map(String::from)
            .to_vec()];
            for l in &lines {
                let [up, upp, act, actp] = sets(l);
                rows.push(vec![
                    l.pgid.to_string(),
                    l.state.clone(),
                    up,
                    upp,
                    act,
                    actp,
                ]);
            }
            let v = json!({"pg_ready": true, "pg_stats": lines.iter().map(brief_json).collect::<Vec<_>>()});
            (v, table(&rows, &[0, 1]))
        }
        DumpWhat::Osds => {
            let v = json!({"pg_ready": true, "osd_stats": pm.osd_stats().values().map(osd_stat_json).collect::<Vec<_>>()});
            let mut rows = vec![["OSD_STAT", "USED", "AVAIL", "TOTAL", "HB_PEERS", "PG_SUM"]
                .map(String::from)
                .to_vec()];
            for o in pm.osd_stats().values() {
                rows.push(vec![
                    o.osd.to_string(),
                    bytes(o.kb_used * 1024),
                    bytes(o.kb_avail * 1024),
                    bytes(o.kb * 1024),
                    format_osd_vec(&o.hb_peers),
                    o.num_pgs.to_string(),
                ]);
            }
            (v, table(&rows, &[0, 4]))
        }
        DumpWhat::Pools => {
            let v = json!({"pg_ready": true, "pool_stats": pool_stats_json(&s)});
            let mut rows = vec![[
                "POOLID",
                "OBJECTS",
                "DEGRADED",
                "MISPLACED",
                "UNFOUND",
                "BYTES",
                "LOG",
            ]
            .map(String::from)
            .to_vec()];
            for p in &s.pools {
                rows.push(vec![
                    p.id.to_string(),
                    p.sum.num_objects.to_string(),
                    p.sum.num_objects_degraded.to_string(),
                    p.sum.num_objects_misplaced.to_string(),
                    p.sum.num_objects_unfound.to_string(),
                    p.sum.num_bytes.to_string(),
                    p.sum.log_size.to_string(),
                ]);
            }
            (v, table(&rows, &[0]))
        }
        DumpWhat::Summary => {
            let v = json!({"pg_ready": true, "pg_map": {
                "version": pm.version(), "stamp": format_stamp(pm.stamp_us()),
                "pg_stats_sum": {"stat_sum": s.all.to_json()},
                "osd_stats_sum": {"kb": s.bytes_total / 1024, "kb_used": s.bytes_used / 1024, "kb_avail": s.bytes_avail / 1024},
            }});
            let text = format!(
                "version {}\nstamp {}\nlast_osdmap_epoch {}\nsum {} objects, {} bytes, {} degraded, {} misplaced, {} unfound\n",
                pm.version(),
                format_stamp(pm.stamp_us()),
                map.epoch,
                s.all.num_objects,
                s.all.num_bytes,
                s.all.num_objects_degraded,
                s.all.num_objects_misplaced,
                s.all.num_objects_unfound
            );
            (v, text)
        }
        DumpWhat::All | DumpWhat::Pgs => {
            let v = json!({"pg_ready": true, "pg_map": pg_dump_json(pm, map, &lines, &s)});
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
            .map(String::from)
            .to_vec()];
            for l in &lines {
                let [up, upp, act, actp] = sets(l);
                let st = l.stat.cloned().unwrap_or_default();
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
}

/// The `pgmap` object of `status` (also `get("pg_status")`).
pub fn pgmap_json(pm: &PgMap, map: &OsdMap, s: &Summary) -> Value {
    let r = pm.rates();
    let mut v = json!({
        "pgs_by_state": s.states_by_count().iter().map(|(n, c)| json!({"state_name": n, "count": c})).collect::<Vec<_>>(),
        "num_pgs": s.num_pgs,
        "num_pools": map.pools.len(),
        "num_objects": s.all.num_objects,
        "data_bytes": s.all.num_bytes,
        "bytes_used": s.bytes_used,
        "bytes_avail": s.bytes_avail,
        "bytes_total": s.bytes_total,
        "read_bytes_sec": r.read_bytes_sec,
        "write_bytes_sec": r.write_bytes_sec,
        "read_op_per_sec": r.read_op_per_sec,
        "write_op_per_sec": r.write_op_per_sec,
    });
    if let (Value::Object(out), Value::Object(rec)) = (&mut v, recovery_summary_json(&s.all)) {
        out.extend(rec);
    }
    // The PGs' own recovered counters over the window when they moved;
    // else the OSDs' recovery counters (rates only).
    match pm.deltas().total().recovery_rate_json() {
        Value::Object(rec) if !rec.is_empty() => {
            if let Value::Object(out) = &mut v {
                out.extend(rec);
            }
        }
        _ if r.recovering_objects_per_sec > 0 || r.recovering_bytes_per_sec > 0 => {
            v["recovering_objects_per_sec"] = json!(r.recovering_objects_per_sec);
            v["recovering_bytes_per_sec"] = json!(r.recovering_bytes_per_sec);
            v["recovering_keys_per_sec"] = json!(0);
        }
        _ => {}
    }
    v
}

/// Ceph's `recovery_summary`: degraded, misplaced and unfound objects,
/// each only when there are any.
pub fn recovery_summary_json(sum: &super::summary::StatSum) -> Value {
    let mut v = json!({});
    let copies = sum.num_object_copies.max(1);
    if sum.num_objects_degraded > 0 {
        v["degraded_objects"] = json!(sum.num_objects_degraded);
        v["degraded_total"] = json!(sum.num_object_copies);
        v["degraded_ratio"] = json!(sum.num_objects_degraded as f64 / copies as f64);
    }
    if sum.num_objects_misplaced > 0 {
        v["misplaced_objects"] = json!(sum.num_objects_misplaced);
        v["misplaced_total"] = json!(sum.num_object_copies);
        v["misplaced_ratio"] = json!(sum.num_objects_misplaced as f64 / copies as f64);
    }
    if sum.num_objects_unfound > 0 {
        v["unfound_objects"] = json!(sum.num_objects_unfound);
        v["unfound_total"] = json!(sum.num_objects);
        v["unfound_ratio"] = json!(sum.num_objects_unfound as f64 / sum.num_objects.max(1) as f64);
    }
    v
}

/// `osd pool stats` entries (also `get("osd_pool_stats")`): each pool's
/// recovery summary and its client and recovery rates over the window.
pub fn osd_pool_stats_json(pm: &PgMap, s: &Summary) -> Vec<Value> {
    s.pools
        .iter()
        .map(|p| {
            let d = pm.deltas().pool(p.id);
            json!({"pool_name": p.name, "pool_id": p.id,
                   "recovery": recovery_summary_json(&p.sum),
                   "recovery_rate": d.recovery_rate_json(),
                   "client_io_rate": d.client_io_rate_json()})
        })
        .collect()
}

/// Width of the progress bar between the brackets (Ceph's is 28).
const BAR_WIDTH: usize = 28;

fn progress_bar(frac: f64) -> String {
    let done = ((frac.clamp(0.0, 1.0) * BAR_WIDTH as f64).round()) as usize;
    format!("[{}{}]", "=".repeat(done), ".".repeat(BAR_WIDTH - done))
}

/// `status`'s data, io and progress sections: `{pgmap, progress_events}`
/// and the plain text from `  data:` on.
pub fn status_data(pm: &PgMap, map: &OsdMap, now_us: u64) -> (Value, String) {
    let s = Summary::of(pm, map, now_us);
    let r = pm.rates();
    let mut events = serde_json::Map::new();
    let mut out = String::from("  data:\n");
    out.push_str(&format!(
        "    pools:   {} pools, {} pgs\n",
        map.pools.len(),
        s.num_pgs
    ));
    out.push_str(&format!(
        "    objects: {} objects, {}\n",
        si(s.all.num_objects),
        bytes(s.all.num_bytes)
    ));
    out.push_str(&format!(
        "    usage:   {} used, {} / {} avail\n",
        bytes(s.bytes_used),
        bytes(s.bytes_avail),
        bytes(s.bytes_total)
    ));
    if s.num_pgs > 0 {
        let mut lines: Vec<String> = Vec::new();
        let inactive: u64 = s
            .states
            .iter()
            .filter(|(n, _)| !n.split('+').any(|p| p == "active"))
            .map(|(_, c)| c)
            .sum();
        if inactive > 0 {
            lines.push(format!(
                "{:.3}% pgs not active",
                inactive as f64 * 100.0 / s.num_pgs as f64
            ));
        }
        let copies = s.all.num_object_copies.max(1);
        for (n, what) in [
            (s.all.num_objects_degraded, "degraded"),
            (s.all.num_objects_misplaced, "misplaced"),
        ] {
            if n > 0 {
                lines.push(format!(
                    "{n}/{copies} objects {what} ({:.3}%)",
                    n as f64 * 100.0 / copies as f64
                ));
            }
        }
        if s.all.num_objects_unfound > 0 {
            lines.push(format!("{} unfound", s.all.num_objects_unfound));
        }
        let states = s.states_by_count();
        let width = states
            .iter()
            .map(|(_, c)| c.to_string().len())
            .max()
            .unwrap_or(1);
        for (name, count) in &states {
            lines.push(format!("{count:<width$} {name}"));
        }
        for (i, l) in lines.iter().enumerate() {
            let lead = if i == 0 {
                "    pgs:     "
            } else {
                "             "
            };
            out.push_str(&format!("{lead}{l}\n"));
        }
    }
    let client = r.read_bytes_sec + r.write_bytes_sec + r.read_op_per_sec + r.write_op_per_sec > 0;
    let recovering = r.recovering_objects_per_sec > 0 || r.recovering_bytes_per_sec > 0;
    if client || recovering {
        out.push_str(" \n  io:\n");
        if client {
            out.push_str(&format!(
                "    client:   {}/s rd, {}/s wr, {} op/s rd, {} op/s wr\n",
                bytes(r.read_bytes_sec),
                bytes(r.write_bytes_sec),
                si(r.read_op_per_sec),
                si(r.write_op_per_sec)
            ));
        }
        if recovering {
            out.push_str(&format!(
                "    recovery: {}/s, {} objects/s\n",
                bytes(r.recovering_bytes_per_sec),
                si(r.recovering_objects_per_sec)
            ));
        }
    }
    if let Some(ev) = pm.event() {
        let age_s = now_us.saturating_sub(ev.started_us) / 1_000_000;
        let remaining = if r.recovery_drain_per_sec > 0.0 {
            format!(
                " (remaining: {}s)",
                (ev.remaining as f64 / r.recovery_drain_per_sec).ceil() as u64
            )
        } else {
            String::new()
        };
        out.push_str(" \n  progress:\n");
        out.push_str(&format!("    Global Recovery Event ({age_s}s)\n"));
        out.push_str(&format!(
            "      {}{remaining}\n",
            progress_bar(ev.progress())
        ));
        events.insert(
            ev.id.clone(),
            json!({"message": "Global Recovery Event", "progress": ev.progress(),
                   "add_to_ceph_s": true, "remaining_objects": ev.remaining,
                   "started_at": format_stamp(ev.started_us)}),
        );
    }
    out.push_str(" \n");
    let v = json!({"pgmap": pgmap_json(pm, map, &s), "progress_events": Value::Object(events)});
    (v, out)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{map, report};
    use super::*;

    #[test]
    fn pg_stat_and_dump_shapes() {
        let m = map(2, 4);
        let mut pm = PgMap::new(6, 60_000_000);
        pm.apply(&report(0, 0, "active+clean", 1, 3), 1);
        pm.apply(&report(1, 1, "peering", 1, 0), 2);
        let (j, text) = pg_stat(&pm, &m, 3);
        assert_eq!(j["num_pgs"], json!(4));
        assert_eq!(j["num_objects"], json!(3));
        assert!(
            text.starts_with("4 pgs: 2 unknown, 1 active+clean, 1 peering; 12 KiB data, 2.0 MiB used, 2.0 GiB / 2.0 GiB avail"),
            "{text}"
        );
        let (j, text) = pg_dump(&pm, &m, 3, DumpWhat::PgsBrief);
        assert_eq!(j["pg_stats"][0]["pgid"], json!("1.0"));
        assert!(text.starts_with("PG_STAT  STATE"), "{text}");
        assert!(text.contains("1.0      active+clean  [0,1]"), "{text}");
        let (j, text) = pg_dump(&pm, &m, 3, DumpWhat::All);
        assert_eq!(
            j["pg_map"]["pg_stats"][0]["stat_sum"]["num_objects"],
            json!(3)
        );
        assert_eq!(j["pg_map"]["osd_stats"][1]["osd"], json!(1));
        assert!(text.contains("DEEP_SCRUB_STAMP"), "{text}");
    }

    #[test]
    fn status_sections_with_io_and_progress() {
        let m = map(2, 1);
        let mut pm = PgMap::new(6, 60_000_000);
        let mut r = report(0, 0, "active+recovering+degraded", 1, 100);
        r.pgs[0].num_objects_degraded = 40;
        r.pgs[0].num_object_copies = 200;
        pm.apply(&r, 0);
        pm.tick(&m, 0, (0, 0));
        r.pgs[0].reported_seq = 2;
        r.pgs[0].num_write = 1000;
        r.pgs[0].num_write_kb = 4000;
        r.pgs[0].num_objects_degraded = 20;
        pm.apply(&r, 1_000_000);
        pm.tick(&m, 1_000_000, (20, 20 * 4096));
        let (j, text) = status_data(&pm, &m, 1_000_000);
        assert_eq!(j["pgmap"]["degraded_objects"], json!(20));
        assert_eq!(j["pgmap"]["recovering_objects_per_sec"], json!(20));
        assert!(
            text.contains("    pgs:     20/200 objects degraded (10.000%)\n"),
            "{text}"
        );
        assert!(
            text.contains("    client:   0 B/s rd, 3.9 MiB/s wr, 0 op/s rd, 990 op/s wr\n"),
            "{text}"
        );
        assert!(
            text.contains("    recovery: 80 KiB/s, 20 objects/s\n"),
            "{text}"
        );
        assert!(text.contains("    Global Recovery Event (1s)\n      [==============..............] (remaining: 1s)\n"), "{text}");
        let ev = j["progress_events"].as_object().expect("events");
        assert_eq!(ev.len(), 1);
    }
}
