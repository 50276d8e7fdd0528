//! `df [detail]` and `osd df`: raw space by device class, per-pool usage
//! and per-OSD utilisation, in Ceph's layouts and JSON keys.

use std::collections::BTreeMap;

use kalmar_maps::dump::osd_tree_json;
use kalmar_maps::{OsdId, OsdMap};
use serde_json::{json, Value};

use super::summary::Summary;
use super::PgMap;
use crate::units::{bytes, si, table};

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// CRUSH facts per OSD from the tree: `(class, crush_weight, reweight, status)`.
fn osd_facts(map: &OsdMap) -> BTreeMap<OsdId, (String, f64, f64, String)> {
    let tree = osd_tree_json(map);
    let nodes = tree["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(tree["stray"].as_array().into_iter().flatten());
    nodes
        .filter(|n| n["type"] == "osd")
        .filter_map(|n| {
            let id = i32::try_from(n["id"].as_i64()?).ok()?;
            let class = match n["device_class"].as_str() {
                Some(c) if !c.is_empty() => c.to_string(),
                _ => "hdd".to_string(),
            };
            Some((
                id,
                (
                    class,
                    n["crush_weight"].as_f64().unwrap_or(0.0),
                    n["reweight"].as_f64().unwrap_or(0.0),
                    n["status"].as_str().unwrap_or("down").to_string(),
                ),
            ))
        })
        .collect()
}

/// `df [detail]`: JSON and the text.
pub fn df(pm: &PgMap, map: &OsdMap, now_us: u64, detail: bool) -> (Value, String) {
    let s = Summary::of(pm, map, now_us);
    let facts = osd_facts(map);
    // Raw space per device class, from the up OSDs' reports.
    let mut classes: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for (osd, st) in pm.osd_stats() {
        if !map.is_up(*osd) {
            continue;
        }
        let class = facts.get(osd).map_or("hdd".to_string(), |f| f.0.clone());
        let e = classes.entry(class).or_default();
        e.0 += st.kb * 1024;
        e.1 += st.kb_avail * 1024;
        e.2 += st.kb_used * 1024;
    }
    let class_json = |t: u64, a: u64, u: u64| {
        json!({"total_bytes": t, "total_avail_bytes": a, "total_used_bytes": u,
               "total_used_raw_bytes": u, "total_used_raw_ratio": if t == 0 { 0.0 } else { u as f64 / t as f64 }})
    };
    let mut pools_json = Vec::new();
    let mut pool_rows = Vec::new();
    for p in &s.pools {
        let used = p.sum.num_bytes * u64::from(p.size);
        let max_avail = s.max_avail(p.size);
        let avail_raw = max_avail * u64::from(p.size);
        let percent_used = if used + avail_raw == 0 {
            0.0
        } else {
            used as f64 / (used + avail_raw) as f64
        };
        pools_json.push(json!({"name": p.name, "id": p.id, "stats": {
            "stored": p.sum.num_bytes, "stored_data": p.sum.num_bytes, "stored_omap": 0,
            "objects": p.sum.num_objects, "kb_used": used / 1024, "bytes_used": used,
            "data_bytes_used": used, "omap_bytes_used": 0, "percent_used": percent_used,
            "max_avail": max_avail, "dirty": 0,
            "quota_objects": map.pools.get(&p.id).map_or(0, |x| x.quota_max_objects),
            "quota_bytes": map.pools.get(&p.id).map_or(0, |x| x.quota_max_bytes),
            "rd": p.sum.num_read, "rd_bytes": p.sum.num_read_kb * 1024,
            "wr": p.sum.num_write, "wr_bytes": p.sum.num_write_kb * 1024,
            "compress_bytes_used": 0, "compress_under_bytes": 0,
            "stored_raw": used, "avail_raw": avail_raw}}));
        let pct_used = format!("{:.2}", percent_used * 100.0);
        pool_rows.push(if detail {
            vec![
                p.name.clone(),
                p.id.to_string(),
                p.pg_num.to_string(),
                bytes(p.sum.num_bytes),
                bytes(p.sum.num_bytes),
                bytes(0),
                si(p.sum.num_objects),
                bytes(used),
                bytes(used),
                bytes(0),
                pct_used,
                bytes(max_avail),
                "N/A".into(),
                "N/A".into(),
                "N/A".into(),
                bytes(0),
                bytes(0),
            ]
        } else {
            vec![
                p.name.clone(),
                p.id.to_string(),
                p.pg_num.to_string(),
                bytes(p.sum.num_bytes),
                si(p.sum.num_objects),
                bytes(used),
                pct_used,
                bytes(max_avail),
            ]
        });
    }
    let num_osds = pm.osd_stats().len();
    let v = json!({
        "stats": {"total_bytes": s.bytes_total, "total_avail_bytes": s.bytes_avail,
                  "total_used_bytes": s.bytes_used, "total_used_raw_bytes": s.bytes_used,
                  "total_used_raw_ratio": if s.bytes_total == 0 { 0.0 } else { s.bytes_used as f64 / s.bytes_total as f64 },
                  "num_osds": num_osds, "num_per_pool_osds": num_osds, "num_per_pool_omap_osds": num_osds},
        "stats_by_class": classes.iter().map(|(c, &(t, a, u))| (c.clone(), class_json(t, a, u))).collect::<serde_json::Map<_, _>>(),
        "pools": pools_json,
    });
    let mut raw = vec![["CLASS", "SIZE", "AVAIL", "USED", "RAW USED", "%RAW USED"]
        .map(String::from)
        .to_vec()];
    let raw_row = |name: &str, t: u64, a: u64, u: u64| {
        vec![
            name.to_string(),
            bytes(t),
            bytes(a),
            bytes(u),
            bytes(u),
            format!("{:.2}", pct(u, t)),
        ]
    };
    for (c, &(t, a, u)) in &classes {
        raw.push(raw_row(c, t, a, u));
    }
    raw.push(raw_row("TOTAL", s.bytes_total, s.bytes_avail, s.bytes_used));
    let header: Vec<&str> = if detail {
        vec![
            "POOL",
            "ID",
            "PGS",
            "STORED",
            "(DATA)",
            "(OMAP)",
            "OBJECTS",
            "USED",
            "(DATA)",
            "(OMAP)",
            "%USED",
            "MAX AVAIL",
            "QUOTA OBJECTS",
            "QUOTA BYTES",
            "DIRTY",
            "USED COMPR",
            "UNDER COMPR",
        ]
    } else {
        vec![
            "POOL",
            "ID",
            "PGS",
            "STORED",
            "OBJECTS",
            "USED",
            "%USED",
            "MAX AVAIL",
        ]
    };
    let mut pools = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    pools.extend(pool_rows);
    let text = format!(
        "--- RAW STORAGE ---\n{} \n--- POOLS ---\n{}",
        table(&raw, &[0]),
        table(&pools, &[0])
    );
    (v, text)
}

/// `osd df`: JSON `{nodes, stray, summary}` and the text.
pub fn osd_df(pm: &PgMap, map: &OsdMap) -> (Value, String) {
    let facts = osd_facts(map);
    let stats = pm.osd_stats();
    let (mut t_kb, mut t_used, mut t_avail) = (0u64, 0u64, 0u64);
    for st in stats.values() {
        t_kb += st.kb;
        t_used += st.kb_used;
        t_avail += st.kb_avail;
    }
    let avg_util = pct(t_used, t_kb);
    let mut nodes = Vec::new();
    let mut rows = vec![[
        "ID", "CLASS", "WEIGHT", "REWEIGHT", "SIZE", "RAW USE", "DATA", "OMAP", "META", "AVAIL",
        "%USE", "VAR", "PGS", "STATUS",
    ]
    .map(String::from)
    .to_vec()];
    let mut vars = Vec::new();
    for (id, (class, weight, reweight, status)) in &facts {
        let st = stats.get(id).cloned().unwrap_or_default();
        let util = pct(st.kb_used, st.kb);
        let var = if avg_util > 0.0 { util / avg_util } else { 0.0 };
        if st.kb > 0 {
            vars.push(var);
        }
        nodes.push(json!({
            "id": id, "device_class": class, "name": format!("osd.{id}"), "type": "osd", "type_id": 0,
            "crush_weight": weight, "depth": 0, "pool_weights": {}, "reweight": reweight,
            "kb": st.kb, "kb_used": st.kb_used, "kb_used_data": st.kb_used, "kb_used_omap": 0,
            "kb_used_meta": 0, "kb_avail": st.kb_avail, "utilization": util, "var": var,
            "pgs": st.num_pgs, "status": status,
        }));
        rows.push(vec![
            id.to_string(),
            class.clone(),
            format!("{weight:.5}"),
            format!("{reweight:.5}"),
            bytes(st.kb * 1024),
            bytes(st.kb_used * 1024),
            bytes(st.kb_used * 1024),
            bytes(0),
            bytes(0),
            bytes(st.kb_avail * 1024),
            format!("{util:.2}"),
            format!("{var:.2}"),
            st.num_pgs.to_string(),
            status.clone(),
        ]);
    }
    let min_var = vars.iter().copied().fold(f64::INFINITY, f64::min);
    let max_var = vars.iter().copied().fold(0.0, f64::max);
    let min_var = if min_var.is_finite() { min_var } else { 0.0 };
    let n = vars.len().max(1) as f64;
    let dev = (facts
        .keys()
        .filter_map(|id| stats.get(id))
        .filter(|st| st.kb > 0)
        .map(|st| (pct(st.kb_used, st.kb) - avg_util).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    rows.push(vec![
        String::new(),
        String::new(),
        String::new(),
        "TOTAL".into(),
        bytes(t_kb * 1024),
        bytes(t_used * 1024),
        bytes(t_used * 1024),
        bytes(0),
        bytes(0),
        bytes(t_avail * 1024),
        format!("{avg_util:.2}"),
    ]);
    let v = json!({
        "nodes": nodes, "stray": [],
        "summary": {"total_kb": t_kb, "total_kb_used": t_used, "total_kb_used_data": t_used,
                    "total_kb_used_omap": 0, "total_kb_used_meta": 0, "total_kb_avail": t_avail,
                    "average_utilization": avg_util, "min_var": min_var, "max_var": max_var, "dev": dev},
    });
    let text = format!(
        "{}MIN/MAX VAR: {min_var:.2}/{max_var:.2}  STDDEV: {dev:.2}\n",
        table(&rows, &[])
    );
    (v, text)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{map, report};
    use super::*;

    #[test]
    fn df_and_osd_df() {
        let m = map(2, 2);
        let mut pm = PgMap::new(6, 60_000_000);
        pm.apply(&report(0, 0, "active+clean", 1, 256), 1);
        pm.apply(&report(1, 1, "active+clean", 1, 0), 1);
        let (j, text) = df(&pm, &m, 2, false);
        assert_eq!(j["pools"][0]["stats"]["stored"], json!(256 * 4096));
        assert_eq!(j["pools"][0]["stats"]["bytes_used"], json!(2 * 256 * 4096));
        assert_eq!(j["stats"]["total_bytes"], json!(2u64 << 30));
        assert!(text.starts_with("--- RAW STORAGE ---\nCLASS"), "{text}");
        assert!(text.contains("TOTAL  2.0 GiB"), "{text}");
        assert!(
            text.contains("rbd    1    2  1.0 MiB      256  2.0 MiB   0.10   1023 MiB"),
            "{text}"
        );
        let (_, detail) = df(&pm, &m, 2, true);
        assert!(detail.contains("QUOTA OBJECTS"), "{detail}");
        let (j, text) = osd_df(&pm, &m);
        assert_eq!(j["nodes"].as_array().map(Vec::len), Some(2));
        assert_eq!(j["summary"]["total_kb"], json!(2u64 << 20));
        assert!(
            text.contains("MIN/MAX VAR: 1.00/1.00  STDDEV: 0.00"),
            "{text}"
        );
    }
}
