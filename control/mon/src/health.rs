//! Health checks with Ceph's codes, severities and wording, computed from
//! the maps; rendered for `health`, `health detail` and `status`.

use kalmar_maps::osd::OsdState;
use kalmar_maps::{MgrMap, OsdMap, OsdMapFlags};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warn,
    Err,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warn => "HEALTH_WARN",
            Severity::Err => "HEALTH_ERR",
        }
    }
    fn tag(self) -> &'static str {
        match self {
            Severity::Warn => "[WRN]",
            Severity::Err => "[ERR]",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `OSD_DOWN`, `MGR_MODULE_ERROR`, ...
    pub code: String,
    pub severity: Severity,
    pub summary: String,
    /// How many things the check counts (OSDs down, pools, ...).
    pub count: usize,
    pub detail: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    pub checks: Vec<Check>,
}

/// What the checks look at besides the maps.
#[derive(Debug, Clone, Copy)]
pub struct HealthInputs {
    /// The mon has run longer than `mon_mgr_mkfs_grace`.
    pub mgr_grace_passed: bool,
    pub osd_pool_default_size: u32,
    /// `osd_failsafe_full_ratio` as the OSDs are assumed to run with it
    /// (Ceph's mon makes the same assumption).
    pub osd_failsafe_full_ratio: f64,
    /// Which `auth_*_required` options are `none` (from the conf or by
    /// default).
    pub auth_off: AuthOff,
}

/// The `auth_*_required` options that are `none`: each one that is makes
/// `AUTH_INSECURE` warn, however it came to be `none`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthOff {
    pub cluster: bool,
    pub service: bool,
    pub client: bool,
}

impl AuthOff {
    /// The names of the options that are `none`, in Ceph's order.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.cluster, "auth_cluster_required"),
            (self.service, "auth_service_required"),
            (self.client, "auth_client_required"),
        ]
        .into_iter()
        .filter(|(off, _)| *off)
        .map(|(_, n)| n)
        .collect()
    }
}

/// Flags that make `OSDMAP_FLAGS` warn.
const WARN_FLAGS: &[u32] = &[
    OsdMapFlags::PAUSERD,
    OsdMapFlags::PAUSEWR,
    OsdMapFlags::NOUP,
    OsdMapFlags::NODOWN,
    OsdMapFlags::NOOUT,
    OsdMapFlags::NOIN,
    OsdMapFlags::NOBACKFILL,
    OsdMapFlags::NOREBALANCE,
    OsdMapFlags::NORECOVER,
    OsdMapFlags::NOSCRUB,
    OsdMapFlags::NODEEP_SCRUB,
];

fn crush_location(m: &OsdMap, id: i32) -> String {
    let mut parts = Vec::new();
    let mut item = id;
    while let Some(&parent) = m.crush.parents_of(item).first() {
        let ty = m
            .crush
            .bucket(parent)
            .and_then(|b| m.crush.type_name(b.type_id))
            .unwrap_or("bucket");
        parts.push(format!("{ty}={}", m.crush.item_name(parent).unwrap_or("?")));
        item = parent;
    }
    parts.reverse();
    parts.join(",")
}

/// `OSD_OUT_OF_ORDER_FULL`: the ratios must rise nearfull <= backfillfull
/// <= full <= failsafe. Each one below its predecessor is named, and then
/// counts as raised to it, as an OSD treats it.
pub fn out_of_order_full(m: &OsdMap, failsafe: f64) -> Option<Check> {
    let mut detail = Vec::new();
    let mut backfill = m.backfillfull_ratio;
    if backfill < m.nearfull_ratio {
        detail.push(format!(
            "backfillfull_ratio ({backfill}) < nearfull_ratio ({}), increased",
            m.nearfull_ratio
        ));
        backfill = m.nearfull_ratio;
    }
    let mut full = m.full_ratio;
    if full < backfill {
        detail.push(format!(
            "full_ratio ({full}) < backfillfull_ratio ({backfill}), increased"
        ));
        full = backfill;
    }
    if failsafe < full {
        detail.push(format!(
            "osd_failsafe_full_ratio ({failsafe}) < full_ratio ({full}), increased"
        ));
    }
    (!detail.is_empty()).then(|| Check {
        code: "OSD_OUT_OF_ORDER_FULL".into(),
        severity: Severity::Err,
        summary: "full ratio(s) out of order".into(),
        count: detail.len(),
        detail,
    })
}

pub fn compute(osdmap: &OsdMap, mgrmap: &MgrMap, inp: HealthInputs) -> Health {
    let mut checks = Vec::new();

    let flags: Vec<&str> = WARN_FLAGS
        .iter()
        .filter(|f| osdmap.test_flag(**f))
        .flat_map(|f| OsdMapFlags::names(*f))
        .collect();
    if !flags.is_empty() {
        checks.push(Check {
            code: "OSDMAP_FLAGS".into(),
            severity: Severity::Warn,
            summary: format!("{} flag(s) set", flags.join(",")),
            count: flags.len(),
            detail: Vec::new(),
        });
    }

    if let Some(c) = out_of_order_full(osdmap, inp.osd_failsafe_full_ratio) {
        checks.push(c);
    }

    let off = inp.auth_off.names();
    if !off.is_empty() {
        let what = match (inp.auth_off.cluster, inp.auth_off.service) {
            (true, true) => "daemons and clients connect without proving who they are",
            (true, false) => "daemons connect to each other without proving who they are",
            (false, true) => "clients connect without proving who they are",
            (false, false) => "clients do not check that the daemons are genuine",
        };
        checks.push(Check {
            code: "AUTH_INSECURE".into(),
            severity: Severity::Warn,
            summary: format!("auth is off: {} = none ({what})", off.join(", ")),
            count: off.len(),
            detail: off
                .iter()
                .map(|n| {
                    format!("{n} is none (set it to cephx in the conf of every daemon and client)")
                })
                .collect(),
        });
    }

    let down: Vec<i32> = osdmap
        .existing_osds()
        .filter(|&id| !osdmap.is_up(id))
        .collect();
    // A registered OSD that never booted is not "down" (Ceph's NEW state).
    let down: Vec<i32> = down
        .into_iter()
        .filter(|&id| osdmap.osd(id).is_some_and(|s| !s.state.has(OsdState::NEW)))
        .collect();
    if !down.is_empty() {
        checks.push(Check {
            code: "OSD_DOWN".into(),
            severity: Severity::Warn,
            summary: format!("{} osds down", down.len()),
            count: down.len(),
            detail: down
                .iter()
                .map(|id| format!("osd.{id} ({}) is down", crush_location(osdmap, *id)))
                .collect(),
        });
    }

    let num_osds = osdmap.num_osds();
    if num_osds > 0 && (num_osds as u32) < inp.osd_pool_default_size {
        checks.push(Check {
            code: "TOO_FEW_OSDS".into(),
            severity: Severity::Warn,
            summary: format!(
                "OSD count {num_osds} < osd_pool_default_size {}",
                inp.osd_pool_default_size
            ),
            count: 1,
            detail: Vec::new(),
        });
    }

    if inp.mgr_grace_passed && !(mgrmap.active_gid != 0 && mgrmap.available) {
        checks.push(Check {
            code: "MGR_DOWN".into(),
            severity: Severity::Warn,
            summary: "no active mgr".into(),
            count: 1,
            detail: Vec::new(),
        });
    }

    let single: Vec<&str> = osdmap
        .pools
        .values()
        .filter(|p| p.size == 1)
        .map(|p| p.name.as_str())
        .collect();
    if !single.is_empty() {
        checks.push(Check {
            code: "POOL_NO_REDUNDANCY".into(),
            severity: Severity::Warn,
            summary: format!("{} pool(s) have no replicas configured", single.len()),
            count: single.len(),
            detail: single
                .iter()
                .map(|n| format!("pool '{n}' has no replicas configured"))
                .collect(),
        });
    }

    // PGs that cannot be active by the map alone: fewer than min_size up
    // OSDs in the acting set (OSD-reported states refine this later).
    let mut inactive = Vec::new();
    for pool in osdmap.pools.values() {
        if let Ok(pgs) = osdmap.map_pool_pgs(pool.id) {
            for (pg, m) in pgs {
                let up = m.acting.iter().filter(|&&o| osdmap.is_up(o)).count();
                if (up as u32) < pool.min_size {
                    inactive.push(pg);
                }
            }
        }
    }
    if !inactive.is_empty() {
        checks.push(Check {
            code: "PG_AVAILABILITY".into(),
            severity: Severity::Warn,
            summary: format!("Reduced data availability: {} pgs inactive", inactive.len()),
            count: inactive.len(),
            detail: inactive
                .iter()
                .take(50)
                .map(|pg| {
                    format!(
                        "pg {pg} is inactive: fewer than min_size OSDs of its acting set are up"
                    )
                })
                .collect(),
        });
    }

    Health { checks }
}

impl Health {
    pub fn status(&self) -> &'static str {
        self.checks
            .iter()
            .map(|c| c.severity)
            .max()
            .map(Severity::as_str)
            .unwrap_or("HEALTH_OK")
    }

    /// `health` plain: `HEALTH_WARN 1 osds down; noout flag(s) set`.
    pub fn summary_line(&self) -> String {
        if self.checks.is_empty() {
            return "HEALTH_OK".into();
        }
        let parts: Vec<&str> = self.checks.iter().map(|c| c.summary.as_str()).collect();
        format!("{} {}", self.status(), parts.join("; "))
    }

    /// `health detail` plain.
    pub fn detail_text(&self) -> String {
        let mut s = self.summary_line();
        s.push('\n');
        for c in &self.checks {
            s.push_str(&format!("{} {}: {}\n", c.severity.tag(), c.code, c.summary));
            for d in &c.detail {
                s.push_str(&format!("    {d}\n"));
            }
        }
        s
    }

    /// Ceph's JSON: `{status, checks{CODE{severity, summary{message,
    /// count}, muted[, detail]}}, mutes}`.
    pub fn to_json(&self, detail: bool) -> Value {
        let mut checks = Map::new();
        for c in &self.checks {
            let mut v = json!({
                "severity": c.severity.as_str(),
                "summary": {"message": c.summary, "count": c.count},
                "muted": false,
            });
            if detail {
                v["detail"] =
                    Value::Array(c.detail.iter().map(|d| json!({"message": d})).collect());
            }
            checks.insert(c.code.clone(), v);
        }
        json!({"status": self.status(), "checks": checks, "mutes": []})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_maps::crush::map::WEIGHT_ONE;
    use kalmar_maps::osd::WEIGHT_IN;
    use kalmar_maps::pool::PgPool;

    fn inputs() -> HealthInputs {
        HealthInputs {
            mgr_grace_passed: true,
            osd_pool_default_size: 3,
            osd_failsafe_full_ratio: 0.97,
            auth_off: AuthOff::default(),
        }
    }

    #[test]
    fn full_ratios_out_of_order() {
        let mut m = cluster(&[true, true, true]);
        assert!(
            out_of_order_full(&m, 0.97).is_none(),
            "defaults are in order"
        );
        // Equal ratios are in order.
        m.nearfull_ratio = 0.9;
        m.backfillfull_ratio = 0.9;
        m.full_ratio = 0.9;
        assert!(out_of_order_full(&m, 0.9).is_none());
        // backfillfull below nearfull: named, then counts as nearfull, so
        // full (0.9) is not below it.
        m.nearfull_ratio = 0.85;
        m.backfillfull_ratio = 0.8;
        let c = out_of_order_full(&m, 0.97).expect("out of order");
        assert_eq!(c.code, "OSD_OUT_OF_ORDER_FULL");
        assert_eq!(c.severity, Severity::Err);
        assert_eq!(c.summary, "full ratio(s) out of order");
        assert_eq!(
            c.detail,
            vec!["backfillfull_ratio (0.8) < nearfull_ratio (0.85), increased"]
        );
        // Raised backfillfull (0.85) above full: both named; the failsafe
        // compares with the raised full.
        m.full_ratio = 0.5;
        let c = out_of_order_full(&m, 0.7).expect("out of order");
        assert_eq!(
            c.detail,
            vec![
                "backfillfull_ratio (0.8) < nearfull_ratio (0.85), increased",
                "full_ratio (0.5) < backfillfull_ratio (0.85), increased",
                "osd_failsafe_full_ratio (0.7) < full_ratio (0.85), increased",
            ]
        );
        // It reaches the cluster's health.
        let h = compute(&m, &mgr_ok(), inputs());
        assert!(h.checks.iter().any(|c| c.code == "OSD_OUT_OF_ORDER_FULL"));
        assert_eq!(h.status(), "HEALTH_ERR");
    }

    fn cluster(up: &[bool]) -> OsdMap {
        let mut m = OsdMap::new(uuid::Uuid::new_v4(), 1);
        m.set_max_osd(up.len() as i32);
        for (i, &u) in up.iter().enumerate() {
            m.crush
                .add_osd(i as i32, WEIGHT_ONE, &format!("h{i}"))
                .expect("add");
            let s = m.osd_mut(i as i32).expect("slot");
            s.state = OsdState(OsdState::EXISTS | if u { OsdState::UP } else { 0 });
            s.weight = WEIGHT_IN;
        }
        m
    }

    fn mgr_ok() -> MgrMap {
        MgrMap {
            active_gid: 1,
            active_name: "x".into(),
            available: true,
            ..Default::default()
        }
    }

    #[test]
    fn healthy_cluster_is_ok() {
        let mut m = cluster(&[true, true, true]);
        m.pools.insert(1, PgPool::replicated(1, "rbd", 3, 2, 8, 0));
        let h = compute(&m, &mgr_ok(), inputs());
        assert_eq!(h.status(), "HEALTH_OK", "{h:?}");
        assert_eq!(h.summary_line(), "HEALTH_OK");
        assert_eq!(h.to_json(false)["checks"], json!({}));
    }

    #[test]
    fn down_osds_flags_mgr_and_pools() {
        let mut m = cluster(&[true, false, false]);
        m.flags |= OsdMapFlags::NOOUT;
        m.pools.insert(1, PgPool::replicated(1, "one", 1, 1, 4, 0));
        m.pools
            .insert(2, PgPool::replicated(2, "three", 3, 2, 4, 0));
        let h = compute(&m, &MgrMap::default(), inputs());
        assert_eq!(h.status(), "HEALTH_WARN");
        let codes: Vec<&str> = h.checks.iter().map(|c| c.code.as_str()).collect();
        assert_eq!(
            codes,
            vec![
                "OSDMAP_FLAGS",
                "OSD_DOWN",
                "MGR_DOWN",
                "POOL_NO_REDUNDANCY",
                "PG_AVAILABILITY"
            ]
        );
        let text = h.detail_text();
        assert!(
            text.starts_with("HEALTH_WARN noout flag(s) set; 2 osds down; no active mgr;"),
            "{text}"
        );
        assert!(
            text.contains(
                "[WRN] OSD_DOWN: 2 osds down\n    osd.1 (root=default,host=h1) is down\n"
            ),
            "{text}"
        );
        let j = h.to_json(true);
        assert_eq!(j["checks"]["OSD_DOWN"]["summary"]["count"], json!(2));
        assert_eq!(
            j["checks"]["OSD_DOWN"]["detail"][1]["message"],
            json!("osd.2 (root=default,host=h2) is down")
        );
        // Pool "three" (min_size 2) has only one up OSD: all 4 of its PGs
        // are inactive; pool "one" adds those mapped to a down OSD.
        let inactive = j["checks"]["PG_AVAILABILITY"]["summary"]["count"]
            .as_u64()
            .expect("count");
        assert!((4..=8).contains(&inactive), "{inactive}");
        let details = j["checks"]["PG_AVAILABILITY"]["detail"].to_string();
        for pg in ["2.0", "2.1", "2.2", "2.3"] {
            assert!(
                details.contains(&format!("pg {pg} is inactive")),
                "{details}"
            );
        }
        let worse = Health {
            checks: vec![Check {
                code: "X".into(),
                severity: Severity::Err,
                summary: "bad".into(),
                count: 1,
                detail: vec![],
            }],
        };
        assert_eq!(worse.status(), "HEALTH_ERR");
        assert!(!compute(&m, &MgrMap::default(), inputs())
            .checks
            .iter()
            .any(|c| c.code == "AUTH_INSECURE"));
        let insecure = HealthInputs {
            auth_off: AuthOff {
                cluster: true,
                service: false,
                client: true,
            },
            ..inputs()
        };
        let h = compute(&m, &MgrMap::default(), insecure);
        let c = h
            .checks
            .iter()
            .find(|c| c.code == "AUTH_INSECURE")
            .expect("AUTH_INSECURE");
        assert_eq!(c.severity, Severity::Warn);
        assert!(c.summary.contains("auth_cluster_required"), "{}", c.summary);
        assert!(c.summary.contains("auth_client_required"), "{}", c.summary);
        assert!(
            !c.summary.contains("auth_service_required"),
            "{}",
            c.summary
        );
        assert_eq!(c.count, 2);
        let no_grace = HealthInputs {
            mgr_grace_passed: false,
            ..inputs()
        };
        assert!(!compute(&m, &MgrMap::default(), no_grace)
            .checks
            .iter()
            .any(|c| c.code == "MGR_DOWN"));
    }
}
