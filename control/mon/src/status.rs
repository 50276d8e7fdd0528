//! `status` (`-s`): the mon's part of Ceph's cluster summary, as JSON with
//! Ceph's keys and as Ceph's plain layout. PG and usage figures come from
//! OSD reports through the mgr; until those exist they are zeros/empty.

use std::time::Duration;

use kalmar_maps::{MgrMap, OsdMap};
use serde_json::{json, Value};

use crate::health::Health;

/// PG and usage summary (filled from OSD/mgr reports).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PgSummary {
    /// `(state_name, count)`, e.g. `("active+clean", 64)`.
    pub pgs_by_state: Vec<(String, u64)>,
    pub num_objects: u64,
    pub data_bytes: u64,
    pub bytes_used: u64,
    pub bytes_avail: u64,
    pub bytes_total: u64,
}

/// Everything `status` shows.
pub struct StatusInputs<'a> {
    pub mon_name: &'a str,
    pub mon_age: Duration,
    pub quorum: &'a crate::monmap::QuorumView,
    pub osdmap: &'a OsdMap,
    pub mgrmap: &'a MgrMap,
    pub health: &'a Health,
    pub pgs: &'a PgSummary,
    /// Wall-clock microseconds now, and when the up / in sets last changed.
    pub now_us: u64,
    pub osd_up_since_us: u64,
    pub osd_in_since_us: u64,
}

/// Ceph's short ages: `45s`, `7m`, `3h`, `2d`.
pub fn short_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// `1000 MiB`, `2.2 GiB`, `0 B`, as Ceph's byte_u_t prints.
pub fn bytes_human(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 || v >= 10.0 {
        format!("{} {}", v.round() as u64, UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u]).replace(".0 ", " ")
    }
}

fn num_pgs(m: &OsdMap) -> u64 {
    m.pools.values().map(|p| u64::from(p.pg_num)).sum()
}

fn num_remapped(m: &OsdMap) -> usize {
    m.pg_temp.len()
}

/// `mgr:` line: `x(active, since 7m), standbys: y` / `no daemons active`.
pub fn mgr_line(mgr: &MgrMap, now_us: u64) -> String {
    if mgr.active_gid == 0 {
        let standbys: Vec<&str> = mgr.standbys.values().map(|s| s.name.as_str()).collect();
        return if standbys.is_empty() {
            "no daemons active".into()
        } else {
            format!("no daemons active, standbys: {}", standbys.join(", "))
        };
    }
    let since = short_age(Duration::from_micros(
        now_us.saturating_sub(mgr.active_change_us),
    ));
    let state = if mgr.available {
        "active"
    } else {
        "active, starting"
    };
    let mut line = format!("{}({state}, since {since})", mgr.active_name);
    if !mgr.standbys.is_empty() {
        let names: Vec<&str> = mgr.standbys.values().map(|s| s.name.as_str()).collect();
        line.push_str(&format!(", standbys: {}", names.join(", ")));
    }
    line
}

/// The OSD counts of `status` and `osd stat` (Ceph's keys).
pub fn osdmap_summary_json(m: &OsdMap, up_since_us: u64, in_since_us: u64) -> Value {
    json!({
        "epoch": m.epoch,
        "num_osds": m.num_osds(),
        "num_up_osds": m.num_up_osds(),
        "osd_up_since": up_since_us / 1_000_000,
        "num_in_osds": m.num_in_osds(),
        "osd_in_since": in_since_us / 1_000_000,
        "num_remapped_pgs": num_remapped(m),
    })
}

/// `3 osds: 3 up (since 7m), 3 in (since 7m)`.
pub fn osd_counts_line(m: &OsdMap, now_us: u64, up_since_us: u64, in_since_us: u64) -> String {
    let age = |since_us: u64| short_age(Duration::from_micros(now_us.saturating_sub(since_us)));
    format!(
        "{} osds: {} up (since {}), {} in (since {})",
        m.num_osds(),
        m.num_up_osds(),
        age(up_since_us),
        m.num_in_osds(),
        age(in_since_us)
    )
}

pub fn status_json(s: &StatusInputs<'_>) -> Value {
    let m = s.osdmap;
    let pgs_by_state: Vec<Value> = s
        .pgs
        .pgs_by_state
        .iter()
        .map(|(name, count)| json!({"state_name": name, "count": count}))
        .collect();
    json!({
        "fsid": m.fsid.to_string(),
        "health": s.health.to_json(false),
        "election_epoch": s.quorum.election_epoch,
        "quorum": s.quorum.quorum,
        "quorum_names": s.quorum.quorum_names(),
        "quorum_age": s.quorum.quorum_age.as_secs(),
        "monmap": {
            "epoch": s.quorum.monmap_epoch,
            "min_mon_release_name": "kalmar",
            "num_mons": s.quorum.members.len(),
        },
        "osdmap": osdmap_summary_json(m, s.osd_up_since_us, s.osd_in_since_us),
        "pgmap": {
            "pgs_by_state": pgs_by_state,
            "num_pgs": num_pgs(m),
            "num_pools": m.pools.len(),
            "num_objects": s.pgs.num_objects,
            "data_bytes": s.pgs.data_bytes,
            "bytes_used": s.pgs.bytes_used,
            "bytes_avail": s.pgs.bytes_avail,
            "bytes_total": s.pgs.bytes_total,
        },
        "fsmap": {"epoch": 1, "by_rank": [], "up:standby": 0},
        "mgrmap": {
            "available": s.mgrmap.available,
            "num_standbys": s.mgrmap.standbys.len(),
            "modules": s.mgrmap.modules.iter().collect::<Vec<_>>(),
            "services": s.mgrmap.services,
        },
        "servicemap": {"epoch": 1, "modified": "", "services": {}},
        "progress_events": {},
    })
}

pub fn status_plain(s: &StatusInputs<'_>) -> String {
    let m = s.osdmap;
    let mut out = String::new();
    out.push_str("  cluster:\n");
    out.push_str(&format!("    id:     {}\n", m.fsid));
    out.push_str(&format!("    health: {}\n", s.health.status()));
    for c in &s.health.checks {
        out.push_str(&format!("            {}\n", c.summary));
    }
    out.push_str(" \n  services:\n");
    out.push_str(&format!("    mon: {}\n", s.quorum.status_line()));
    out.push_str(&format!("    mgr: {}\n", mgr_line(s.mgrmap, s.now_us)));
    let mut osd = format!(
        "    osd: {}",
        osd_counts_line(m, s.now_us, s.osd_up_since_us, s.osd_in_since_us)
    );
    if num_remapped(m) > 0 {
        osd.push_str(&format!("; {} remapped pgs", num_remapped(m)));
    }
    out.push_str(&osd);
    out.push_str("\n \n  data:\n");
    let total_pgs = num_pgs(m);
    out.push_str(&format!(
        "    pools:   {} pools, {} pgs\n",
        m.pools.len(),
        total_pgs
    ));
    out.push_str(&format!(
        "    objects: {} objects, {}\n",
        s.pgs.num_objects,
        bytes_human(s.pgs.data_bytes)
    ));
    out.push_str(&format!(
        "    usage:   {} used, {} / {} avail\n",
        bytes_human(s.pgs.bytes_used),
        bytes_human(s.pgs.bytes_avail),
        bytes_human(s.pgs.bytes_total)
    ));
    if total_pgs > 0 {
        let reported: u64 = s.pgs.pgs_by_state.iter().map(|(_, c)| c).sum();
        let unknown = total_pgs.saturating_sub(reported);
        let mut states = s.pgs.pgs_by_state.clone();
        if unknown > 0 {
            states.push(("unknown".into(), unknown));
        }
        states.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let width = states
            .iter()
            .map(|(_, c)| c.to_string().len())
            .max()
            .unwrap_or(1);
        let mut first = true;
        if unknown > 0 {
            out.push_str(&format!(
                "    pgs:     {:.3}% pgs unknown\n",
                unknown as f64 * 100.0 / total_pgs as f64
            ));
            first = false;
        }
        for (name, count) in states {
            let lead = if first {
                "    pgs:     "
            } else {
                "             "
            };
            first = false;
            out.push_str(&format!("{lead}{count:<width$} {name}\n"));
        }
    }
    out.push_str(" \n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{compute, HealthInputs};
    use kalmar_maps::pool::PgPool;

    #[test]
    fn plain_and_json_shapes() {
        let mut m = OsdMap::new(uuid::Uuid::nil(), 0);
        m.epoch = 5;
        m.pools.insert(1, PgPool::replicated(1, "rbd", 1, 1, 8, 0));
        let mgr = MgrMap {
            active_gid: 4,
            active_name: "x".into(),
            available: true,
            active_change_us: 1_000_000,
            ..Default::default()
        };
        let health = compute(
            &m,
            &mgr,
            HealthInputs {
                mgr_grace_passed: true,
                osd_pool_default_size: 1,
                osd_failsafe_full_ratio: 0.97,
                auth_off: Default::default(),
            },
        );
        let pgs = PgSummary::default();
        let quorum = crate::monmap::QuorumView {
            quorum_age: Duration::from_secs(420),
            ..crate::monmap::QuorumView::single("a")
        };
        let s = StatusInputs {
            mon_name: "a",
            mon_age: Duration::from_secs(420),
            quorum: &quorum,
            osdmap: &m,
            mgrmap: &mgr,
            health: &health,
            pgs: &pgs,
            now_us: 421_000_000,
            osd_up_since_us: 1_000_000,
            osd_in_since_us: 1_000_000,
        };
        let text = status_plain(&s);
        assert!(
            text.contains("    id:     00000000-0000-0000-0000-000000000000\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "    health: HEALTH_WARN\n            1 pool(s) have no replicas configured\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("    mon: 1 daemons, quorum a (age 7m)\n"),
            "{text}"
        );
        assert!(text.contains("    mgr: x(active, since 7m)\n"), "{text}");
        assert!(
            text.contains("    osd: 0 osds: 0 up (since 7m), 0 in (since 7m)\n"),
            "{text}"
        );
        assert!(text.contains("    pools:   1 pools, 8 pgs\n"), "{text}");
        assert!(
            text.contains("    pgs:     100.000% pgs unknown\n             8 unknown\n"),
            "{text}"
        );
        let j = status_json(&s);
        assert_eq!(j["pgmap"]["num_pgs"], json!(8));
        assert_eq!(j["pgmap"]["pgs_by_state"], json!([]));
        assert_eq!(j["osdmap"]["epoch"], json!(5));
        assert_eq!(j["health"]["status"], json!("HEALTH_WARN"));
        assert_eq!(j["mgrmap"]["available"], json!(true));
    }

    #[test]
    fn human_units() {
        assert_eq!(bytes_human(0), "0 B");
        assert_eq!(bytes_human(1000 << 20), "1000 MiB");
        assert_eq!(bytes_human(2_362_232_012), "2.2 GiB");
        assert_eq!(bytes_human(15 << 30), "15 GiB");
        assert_eq!(short_age(Duration::from_secs(7200)), "2h");
    }
}
