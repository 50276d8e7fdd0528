use kalmar_maps::crush::map::WEIGHT_ONE;
use kalmar_maps::osd::{OsdState, WEIGHT_IN};
use kalmar_maps::pool::PgPool;
use kalmar_maps::PgId;
use kalmar_proto::pgstats::PgStatEntry;

use super::*;

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
    m.pools.insert(1, PgPool::replicated(1, "rbd", 3, 2, 4, 0));
    m
}

fn line(seed: u32, state: &str, objects: u64, degraded: u64) -> PgLine {
    PgLine {
        pgid: PgId::new(1, seed),
        state: state.into(),
        stat: (state != "unknown").then(|| PgStatEntry {
            pgid: PgId::new(1, seed),
            state: state.into(),
            acting: vec![0, 1],
            num_objects: objects,
            num_bytes: objects * 1024,
            num_object_copies: objects * 3,
            num_objects_degraded: degraded,
            ..Default::default()
        }),
    }
}

fn clean(n: u32, objects: u64) -> Vec<PgLine> {
    (0..n)
        .map(|s| line(s, "active+clean", objects, 0))
        .collect()
}

fn reported<'a>(pgs: &'a [PgLine], usage: &[(OsdId, u64, u64)]) -> Reported<'a> {
    Reported {
        osd_usage: usage.iter().map(|&(o, u, t)| (o, (u, t))).collect(),
        pgs,
        quota_warn_pct: 0,
    }
}

fn find<'a>(checks: &'a [Check], code: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.code == code)
        .unwrap_or_else(|| panic!("no {code} in {checks:?}"))
}

#[test]
fn healthy_cluster_has_no_stat_checks() {
    let m = cluster(&[true, true, true]);
    let pgs = clean(4, 10);
    let got = checks(
        &m,
        &reported(&pgs, &[(0, 10, 100), (1, 50, 100), (2, 84, 100)]),
    );
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn osd_full_backfillfull_nearfull_and_pools_they_serve() {
    let m = cluster(&[true, true, true, false]);
    let pgs = clean(4, 10);
    // 96% >= full 0.95, 91% >= backfillfull 0.90, 86% >= nearfull 0.85;
    // the down osd.3 at 99% is not counted.
    let got = checks(
        &m,
        &reported(
            &pgs,
            &[(0, 96, 100), (1, 91, 100), (2, 86, 100), (3, 99, 100)],
        ),
    );
    let full = find(&got, "OSD_FULL");
    assert_eq!(full.severity, Severity::Err);
    assert_eq!(full.summary, "1 full osd(s)");
    assert_eq!(full.detail, vec!["osd.0 is full"]);
    let bf = find(&got, "OSD_BACKFILLFULL");
    assert_eq!(
        (bf.severity, bf.summary.as_str()),
        (Severity::Warn, "1 backfillfull osd(s)")
    );
    assert_eq!(bf.detail, vec!["osd.1 is backfill full"]);
    let near = find(&got, "OSD_NEARFULL");
    assert_eq!(near.summary, "1 nearfull osd(s)");
    assert_eq!(near.detail, vec!["osd.2 is near full"]);
    // Every PG of the size-3 pool lands on osd.0: the pool is full.
    let pool = find(&got, "POOL_FULL");
    assert_eq!(pool.summary, "1 pool(s) full");
    assert_eq!(pool.detail, vec!["pool 'rbd' is full (no space)"]);
    assert!(!got.iter().any(|c| c.code == "POOL_NEARFULL"));
    let h = crate::health::Health { checks: got };
    assert_eq!(h.status(), "HEALTH_ERR");

    // Only a nearfull OSD: the pool is nearfull.
    let got = checks(&m, &reported(&pgs, &[(1, 87, 100)]));
    assert_eq!(
        find(&got, "POOL_NEARFULL").detail,
        vec!["pool 'rbd' is nearfull"]
    );
    assert_eq!(find(&got, "POOL_NEARFULL").summary, "1 pool(s) nearfull");
    let got = checks(&m, &reported(&pgs, &[(2, 92, 100)]));
    assert_eq!(
        find(&got, "POOL_BACKFILLFULL").detail,
        vec!["pool 'rbd' is backfillfull"]
    );
    // The map's ratios are what counts.
    let mut lower = m.clone();
    lower.nearfull_ratio = 0.5;
    let got = checks(&lower, &reported(&pgs, &[(1, 60, 100)]));
    assert_eq!(
        find(&got, "OSD_NEARFULL").detail,
        vec!["osd.1 is near full"]
    );
}

#[test]
fn pool_quotas_full_and_near_full() {
    let mut m = cluster(&[true, true, true]);
    if let Some(p) = m.pools.get_mut(&1) {
        p.quota_max_objects = 40;
    }
    let mut q = PgPool::replicated(2, "q", 3, 2, 1, 0);
    q.quota_max_bytes = 10 * 1024;
    m.pools.insert(2, q);
    // rbd: 4 PGs x 10 objects = 40 = its quota; q: 8 KiB of 10 KiB.
    let mut pgs = clean(4, 10);
    pgs.push(PgLine {
        pgid: PgId::new(2, 0),
        state: "active+clean".into(),
        stat: Some(PgStatEntry {
            pgid: PgId::new(2, 0),
            state: "active+clean".into(),
            num_objects: 8,
            num_bytes: 8 * 1024,
            ..Default::default()
        }),
    });
    let mut r = reported(&pgs, &[]);
    let got = checks(&m, &r);
    let full = find(&got, "POOL_FULL");
    assert_eq!(
        full.detail,
        vec!["pool 'rbd' is full (running out of quota)"]
    );
    assert!(
        !got.iter().any(|c| c.code == "POOL_NEAR_FULL"),
        "warning is off by default"
    );
    r.quota_warn_pct = 80;
    let got = checks(&m, &r);
    let near = find(&got, "POOL_NEAR_FULL");
    assert_eq!(near.severity, Severity::Warn);
    assert_eq!(near.summary, "1 pools nearfull");
    assert_eq!(near.detail, vec!["pool 'q' has 8 KiB (max 10 KiB)"]);
    // The full pool is not also "near".
    assert_eq!(find(&got, "POOL_FULL").count, 1);
}

#[test]
fn pg_availability_and_degraded_from_reported_states() {
    let m = cluster(&[true, true, true]);
    let pgs = vec![
        line(0, "unknown", 0, 0),
        line(1, "peering", 0, 0),
        line(2, "stale+active+clean", 5, 0),
        line(3, "active+undersized+degraded", 10, 5),
        line(4, "active+clean", 5, 0),
    ];
    let got = checks(&m, &reported(&pgs, &[]));
    let avail = find(&got, "PG_AVAILABILITY");
    assert_eq!(avail.severity, Severity::Warn);
    assert_eq!(
        avail.summary,
        "Reduced data availability: 2 pgs inactive, 1 pg peering, 1 pg stale"
    );
    assert_eq!(avail.count, 3);
    assert_eq!(
        avail.detail,
        vec![
            "pg 1.0 is unknown, acting []",
            "pg 1.1 is peering, acting [0,1]",
            "pg 1.2 is stale+active+clean, acting [0,1]",
        ]
    );
    let deg = find(&got, "PG_DEGRADED");
    // 5 degraded of (5+10+5) * 3 copies = 60.
    assert_eq!(
        deg.summary,
        "Degraded data redundancy: 5/60 objects degraded (8.333%), 1 pg degraded, 1 pg undersized"
    );
    assert_eq!(
        deg.detail,
        vec!["pg 1.3 is active+undersized+degraded, acting [0,1]"]
    );
    // Detail lines are bounded.
    let many: Vec<PgLine> = (0..200).map(|s| line(s, "unknown", 0, 0)).collect();
    let got = checks(&m, &reported(&many, &[]));
    let avail = find(&got, "PG_AVAILABILITY");
    assert_eq!(avail.summary, "Reduced data availability: 200 pgs inactive");
    assert_eq!(avail.detail.len(), MAX_DETAIL);
}

#[test]
fn scrub_errors_and_damaged_pgs() {
    let m = cluster(&[true, true, true]);
    let with_errors = |seed: u32, state: &str, errors: u64| {
        let mut l = line(seed, state, 10, 0);
        if let Some(s) = l.stat.as_mut() {
            s.acting = vec![0, 2, 1];
            s.num_scrub_errors = errors;
        }
        l
    };
    let pgs = vec![
        with_errors(0, "active+clean", 0),
        with_errors(1, "active+clean+inconsistent", 3),
        with_errors(2, "active+clean", 0),
        with_errors(3, "active+clean", 0),
    ];
    let got = checks(&m, &reported(&pgs, &[]));
    let codes: Vec<&str> = got.iter().map(|c| c.code.as_str()).collect();
    assert_eq!(codes, ["OSD_SCRUB_ERRORS", "PG_DAMAGED"]);
    let errs = find(&got, "OSD_SCRUB_ERRORS");
    assert_eq!(
        (errs.severity, errs.summary.as_str(), errs.count),
        (Severity::Err, "3 scrub errors", 3)
    );
    assert!(errs.detail.is_empty());
    let dmg = find(&got, "PG_DAMAGED");
    assert_eq!(dmg.severity, Severity::Err);
    assert_eq!(dmg.summary, "Possible data damage: 1 pg inconsistent");
    assert_eq!(dmg.count, 1);
    assert_eq!(
        dmg.detail,
        vec!["pg 1.1 is active+clean+inconsistent, acting [0,2,1]"]
    );
    let h = crate::health::Health { checks: got };
    assert_eq!(h.status(), "HEALTH_ERR");
    assert_eq!(
        h.summary_line(),
        "HEALTH_ERR 3 scrub errors; Possible data damage: 1 pg inconsistent"
    );
    assert_eq!(
        h.detail_text(),
        "HEALTH_ERR 3 scrub errors; Possible data damage: 1 pg inconsistent\n\
         [ERR] OSD_SCRUB_ERRORS: 3 scrub errors\n\
         [ERR] PG_DAMAGED: Possible data damage: 1 pg inconsistent\n    \
         pg 1.1 is active+clean+inconsistent, acting [0,2,1]\n"
    );

    // Several damaged states, a stale report and unfound objects.
    let mut unfound = with_errors(0, "active+recovery_unfound+degraded", 0);
    if let Some(s) = unfound.stat.as_mut() {
        s.num_objects_unfound = 2;
    }
    let pgs = vec![
        unfound,
        with_errors(1, "stale+active+clean+inconsistent", 1),
        with_errors(2, "active+clean+scrubbing+deep+inconsistent", 2),
        with_errors(3, "active+clean", 0),
    ];
    let got = checks(&m, &reported(&pgs, &[]));
    assert_eq!(find(&got, "OSD_SCRUB_ERRORS").summary, "3 scrub errors");
    let dmg = find(&got, "PG_DAMAGED");
    assert_eq!(
        dmg.summary,
        "Possible data damage: 1 pg recovery_unfound, 2 pgs inconsistent"
    );
    assert_eq!(dmg.count, 3);
    assert_eq!(
        dmg.detail,
        vec![
            "pg 1.0 is active+recovery_unfound+degraded, acting [0,2,1], 2 unfound",
            "pg 1.1 is stale+active+clean+inconsistent, acting [0,2,1]",
            "pg 1.2 is active+clean+scrubbing+deep+inconsistent, acting [0,2,1]",
        ]
    );

    // Repaired: neither check.
    let got = checks(&m, &reported(&clean(4, 10), &[]));
    assert!(
        !got.iter()
            .any(|c| c.code == "OSD_SCRUB_ERRORS" || c.code == "PG_DAMAGED"),
        "{got:?}"
    );
}
