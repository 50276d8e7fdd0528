use std::time::Duration;

use kalmar_maps::osd::OsdAddrs;
use kalmar_maps::pool::PgPool;
use kalmar_maps::PgId;
use kalmar_proto::mon::OsdMarkMeDown;

use super::*;

fn opts() -> Arc<MonOptions> {
    Arc::new(MonOptions {
        mon_osd_min_down_reporters: 2,
        osd_heartbeat_grace: Duration::from_secs(20),
        mon_osd_report_timeout: Duration::from_secs(900),
        mon_osd_down_out_interval: Duration::from_secs(600),
        osd_crush_chooseleaf_type: 0,
        ..MonOptions::default()
    })
}

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

/// Commits the pending epoch, checking the incremental rebuilds it.
fn commit(m: &mut OsdMon) -> bool {
    match m.take_pending(1).expect("valid incremental") {
        Some((map, _inc)) => {
            m.committed(map);
            true
        }
        None => false,
    }
}

fn boot_msg(id: OsdId, uuid: Uuid) -> OsdBoot {
    OsdBoot {
        osd_id: id,
        uuid,
        addrs: OsdAddrs::all(format!("127.0.0.1:{}/1", 6800 + id).parse().expect("addr")),
        have_epoch: 0,
        hostname: "h".into(),
        metadata: Default::default(),
    }
}

/// A mon whose map (epoch 1) has no OSD yet.
fn empty_mon(t0: Instant) -> OsdMon {
    let mut map = OsdMap::new(Uuid::new_v4(), 1);
    map.epoch = 1;
    OsdMon::new(map, opts(), t0)
}

/// A mon with `n` OSDs registered and booted, committed.
fn cluster(n: usize, t0: Instant) -> (OsdMon, Vec<Uuid>) {
    let mut m = empty_mon(t0);
    let uuids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    for (i, u) in uuids.iter().enumerate() {
        assert_eq!(m.osd_mkfs(*u, -1, "h").expect("mkfs"), i as OsdId);
    }
    commit(&mut m);
    for (i, u) in uuids.iter().enumerate() {
        assert!(m.boot(&boot_msg(i as OsdId, *u), t0).expect("boot"));
    }
    commit(&mut m);
    (m, uuids)
}

fn report(reporter: OsdId, target: OsdId, failed_for_s: u64, epoch: Epoch) -> OsdFailure {
    OsdFailure {
        reporter,
        target,
        failed_for_ms: failed_for_s * 1000,
        epoch,
        is_failed: true,
        ..Default::default()
    }
}

#[test]
fn mkfs_is_idempotent_per_uuid_and_boot_marks_up_and_in() {
    let t0 = Instant::now();
    let mut m = empty_mon(t0);
    let u = Uuid::new_v4();
    assert_eq!(m.osd_mkfs(u, -1, "h").expect("mkfs"), 0);
    assert_eq!(m.osd_mkfs(u, -1, "h").expect("mkfs again"), 0);
    assert_eq!(m.osd_mkfs(Uuid::new_v4(), 5, "h").expect("wanted id"), 5);
    assert!(m.osd_mkfs(Uuid::new_v4(), 5, "h").is_err(), "id taken");
    assert!(
        m.osd_mkfs(u, 3, "h").is_err(),
        "uuid already has another id"
    );
    assert!(m.osd_mkfs(Uuid::nil(), -1, "h").is_err());
    assert_eq!(m.osd_mkfs(Uuid::new_v4(), -1, "h").expect("lowest free"), 1);
    assert!(commit(&mut m));
    assert_eq!(m.map().epoch, 2);
    assert_eq!(m.map().max_osd(), 6);
    assert!(m.map().exists(0) && !m.map().is_up(0) && !m.map().is_in(0));
    assert!(
        m.boot(&boot_msg(0, Uuid::new_v4()), t0).is_err(),
        "wrong uuid"
    );
    assert!(m.boot(&boot_msg(2, u), t0).is_err(), "no such osd");
    assert!(m.boot(&boot_msg(0, u), t0).expect("boot"));
    assert!(commit(&mut m));
    let s = m.map().osd(0).expect("slot");
    assert!(s.is_up() && s.is_in());
    assert_eq!(s.info.up_from, 3);
    assert!(!s.state.has(OsdState::NEW));
    // Booting again with the same addresses changes nothing.
    assert!(!m.boot(&boot_msg(0, u), t0).expect("boot"));
    assert!(!commit(&mut m));
}

/// An OSD of a release this mon does not run next to (newer than the
/// mon, or older than the series it upgrades from) stays down, and the
/// reason names both versions; its own release, or none stated (builds
/// from before the field), boots.
#[test]
fn boot_of_an_unsupported_release_is_refused_naming_both_versions() {
    use kalmar_common::release::{Release, METADATA_KEY, VERSION};
    let t0 = Instant::now();
    let mut m = empty_mon(t0);
    let u = Uuid::new_v4();
    assert_eq!(m.osd_mkfs(u, -1, "h").expect("mkfs"), 0);
    assert!(commit(&mut m));
    let ours = Release::current();
    let with = |v: &str| {
        let mut b = boot_msg(0, u);
        b.metadata.insert(METADATA_KEY.to_string(), v.to_string());
        b
    };
    let newer = format!("{}.{}.0", ours.major, ours.minor + 1);
    let e = m.boot(&with(&newer), t0).expect_err("newer release");
    assert!(
        e.contains(&format!(
            "osd.0 runs Kalmar {newer}, newer than this mon's {ours}"
        )),
        "{e}"
    );
    let e = m.boot(&with("0.0.1"), t0).expect_err("older release");
    assert!(
        e.contains("Kalmar 0.0.1") && e.contains(&ours.to_string()),
        "{e}"
    );
    assert!(!commit(&mut m), "a refused boot changes no map");
    assert!(!m.map().is_up(0));
    assert!(m.boot(&with(VERSION), t0).expect("same release"));
    assert!(commit(&mut m));
    assert!(m.map().is_up(0));
    assert!(
        !m.boot(&boot_msg(0, u), t0).expect("no release stated"),
        "already up"
    );
}

#[test]
fn failure_needs_enough_reporters_and_the_grace() {
    let t0 = Instant::now();
    let (mut m, _) = cluster(4, t0);
    let e = m.map().epoch;
    // One reporter is not enough, however long.
    m.failure(&report(3, 1, 100, e), secs(t0, 1))
        .expect("report");
    m.tick(secs(t0, 2));
    assert!(!m.has_pending());
    // Two reporters, osd.0 failing since t0 - 4 s; grace 20 s.
    m.failure(&report(1, 0, 5, e), secs(t0, 1)).expect("report");
    m.failure(&report(2, 0, 0, e), secs(t0, 1)).expect("report");
    m.tick(secs(t0, 2));
    assert!(!m.has_pending(), "grace not yet passed");
    m.tick(secs(t0, 15));
    assert!(!m.has_pending(), "19 s < grace");
    m.tick(secs(t0, 16));
    assert!(m.has_pending(), "20 s: down");
    assert!(!m.view().is_up(0));
    assert!(m.view().is_up(1), "a single reporter never marks down");
    assert!(commit(&mut m));
    let s = m.map().osd(0).expect("slot");
    assert!(!s.is_up());
    assert_eq!(s.info.down_at, m.map().epoch);
    // Reports against a down OSD, from a down OSD, or self-reports: no-ops.
    assert!(m.failure(&report(0, 1, 100, e), secs(t0, 18)).is_err());
    assert!(m.failure(&report(1, 1, 100, e), secs(t0, 18)).is_err());
    m.failure(&report(1, 0, 100, e), secs(t0, 18))
        .expect("ignored");
    assert!(!m.has_pending());
}

#[test]
fn retracted_and_stale_reports_do_not_count() {
    let t0 = Instant::now();
    let (mut m, uuids) = cluster(3, t0);
    let e = m.map().epoch;
    m.failure(&report(1, 0, 30, e), t0).expect("report");
    let mut retract = report(1, 0, 0, e);
    retract.is_failed = false;
    m.failure(&retract, t0).expect("retract");
    m.failure(&report(2, 0, 30, e), t0).expect("report");
    assert!(!m.has_pending(), "only one live report");
    // A report about an earlier incarnation (before up_from) is ignored.
    m.mark_down(0, t0);
    commit(&mut m);
    m.boot(&boot_msg(0, uuids[0]), t0).expect("boot");
    commit(&mut m);
    m.failure(&report(1, 0, 30, e), t0).expect("old epoch");
    m.failure(&report(2, 0, 30, e), t0).expect("old epoch");
    assert!(!m.has_pending());
}

#[test]
fn nodown_flag_blocks_marking_down() {
    let t0 = Instant::now();
    let (mut m, _) = cluster(3, t0);
    m.cmd_flag("nodown", true).expect("set");
    commit(&mut m);
    let e = m.map().epoch;
    m.failure(&report(1, 0, 60, e), t0).expect("report");
    m.failure(&report(2, 0, 60, e), t0).expect("report");
    m.tick(secs(t0, 1000));
    assert!(!m.has_pending());
    assert!(m.cmd_flag("nosuchflag", true).is_err());
}

#[test]
fn missing_beacons_mark_down_then_out_unless_noout() {
    let t0 = Instant::now();
    let (mut m, _) = cluster(3, t0);
    for s in (0..=1000).step_by(100) {
        m.beacon(
            &OsdBeacon {
                osd_id: 1,
                epoch: 3,
                pgs: vec![],
                last_epoch_clean: 2,
            },
            secs(t0, s),
        );
        m.beacon(
            &OsdBeacon {
                osd_id: 2,
                epoch: 3,
                pgs: vec![],
                last_epoch_clean: 3,
            },
            secs(t0, s),
        );
    }
    m.tick(secs(t0, 899));
    assert!(!m.has_pending());
    m.tick(secs(t0, 900));
    assert!(commit(&mut m));
    assert!(!m.map().is_up(0));
    assert!(m.map().is_up(1) && m.map().is_up(2));
    assert!(m.map().is_in(0));
    assert_eq!(m.min_last_epoch_clean(), Some(2));
    m.tick(secs(t0, 1499));
    assert!(!m.has_pending());
    m.tick(secs(t0, 1500));
    assert!(commit(&mut m));
    let s = m.map().osd(0).expect("slot");
    assert!(!s.is_in());
    assert!(s.state.has(OsdState::AUTOOUT));

    // noout: osd.1 goes down but stays in.
    let (mut m, uuids) = cluster(3, t0);
    m.cmd_flag("noout", true).expect("set");
    m.cmd_down(1, t0).expect("down");
    commit(&mut m);
    m.tick(secs(t0, 5000));
    m.beacon(
        &OsdBeacon {
            osd_id: 0,
            ..Default::default()
        },
        secs(t0, 5000),
    );
    assert!(m.map().is_in(1));
    // An auto-out OSD comes back in when it boots; a manual out stays out.
    m.cmd_flag("noout", false).expect("unset");
    commit(&mut m);
    m.tick(secs(t0, 10_000));
    commit(&mut m);
    assert!(m.map().osd(1).expect("slot").state.has(OsdState::AUTOOUT));
    m.boot(&boot_msg(1, uuids[1]), secs(t0, 10_001))
        .expect("boot");
    commit(&mut m);
    assert!(m.map().is_in(1) && m.map().is_up(1));
    let (mut m, uuids) = cluster(3, t0);
    assert_eq!(m.cmd_out(2).expect("out"), "marked out osd.2. ");
    m.cmd_down(2, t0).expect("down");
    commit(&mut m);
    m.boot(&boot_msg(2, uuids[2]), t0).expect("boot");
    commit(&mut m);
    assert!(m.map().is_up(2) && !m.map().is_in(2));
}

#[test]
fn osd_in_out_down_messages() {
    let t0 = Instant::now();
    let (mut m, _) = cluster(2, t0);
    assert_eq!(m.cmd_out(1).expect("out"), "marked out osd.1. ");
    assert_eq!(m.cmd_out(1).expect("out"), "osd.1 is already out. ");
    assert_eq!(m.cmd_in(1, t0).expect("in"), "marked in osd.1. ");
    assert_eq!(m.cmd_down(0, t0).expect("down"), "marked down osd.0. ");
    assert_eq!(m.cmd_down(0, t0).expect("down"), "osd.0 is already down. ");
    assert!(m.cmd_out(9).is_err());
    assert_eq!(m.cmd_flag("noout", true).expect("set"), "noout is set");
    assert!(commit(&mut m));
    assert!(m.map().test_flag(OsdMapFlags::NOOUT));
}

fn with_pool(m: &mut OsdMon, size: u32, pg_num: u32) {
    m.edit_map(|map, e| {
        let mut p = PgPool::replicated(1, "p", size, 1, pg_num, 0);
        p.last_change = e;
        map.pools.insert(1, p);
        map.pool_max = 1;
        Ok(())
    })
    .expect("pool");
    commit(m);
}

#[test]
fn pg_temp_only_from_primary_and_raises_up_thru() {
    let t0 = Instant::now();
    let (mut m, _) = cluster(4, t0);
    with_pool(&mut m, 2, 8);
    let pg = PgId::new(1, 3);
    let acting = m.map().pg_to_up_acting_osds(pg).expect("maps");
    let primary = acting.acting_primary;
    let other = (0..4).find(|o| *o != primary).expect("another osd");
    let e = m.map().epoch;
    let want: Vec<OsdId> = (0..4).filter(|o| !acting.up.contains(o)).take(2).collect();
    let req = |from: OsdId, osds: Vec<OsdId>| OsdPgTemp {
        osd_id: from,
        map_epoch: e,
        pg_temp: [(pg, osds)].into(),
    };
    assert!(
        m.pg_temp(&req(other, want.clone())).is_err(),
        "not the primary"
    );
    assert!(!m.has_pending());
    assert!(
        m.pg_temp(&req(primary, vec![0, 1, 2])).is_err(),
        "longer than size"
    );
    assert!(m.pg_temp(&req(primary, vec![0, 9])).is_err(), "unknown osd");
    assert_eq!(m.pg_temp(&req(primary, want.clone())).expect("accepted"), 1);
    assert!(commit(&mut m));
    assert_eq!(m.map().pg_temp.get(&pg), Some(&want));
    assert_eq!(
        m.map().osd(primary).expect("slot").info.up_thru,
        m.map().epoch
    );
    // Now want[0] is the acting primary; it may drop the entry.
    let new_primary = m
        .map()
        .pg_to_up_acting_osds(pg)
        .expect("maps")
        .acting_primary;
    assert_eq!(new_primary, want[0]);
    assert!(
        m.pg_temp(&req(primary, vec![])).is_err(),
        "old primary may not"
    );
    assert_eq!(
        m.pg_temp(&req(new_primary, want.clone())).expect("no-op"),
        0
    );
    assert_eq!(m.pg_temp(&req(new_primary, vec![])).expect("removed"), 1);
    assert!(commit(&mut m));
    assert!(m.map().pg_temp.is_empty());
    let bad = OsdPgTemp {
        osd_id: primary,
        map_epoch: e,
        pg_temp: [(PgId::new(1, 99), vec![])].into(),
    };
    assert!(m.pg_temp(&bad).is_err(), "pg out of range");
}

/// A pg_temp request that arrives after `osd pool rm` but before the
/// epoch commits: the entry would name a pool the epoch removes, which
/// applying the incremental drops, so the commit found a map its own
/// incremental does not rebuild (and the mon stopped).
#[test]
fn pg_temp_for_a_pool_pending_removal_is_refused() {
    let t0 = Instant::now();
    let (mut m, _) = cluster(4, t0);
    with_pool(&mut m, 2, 8);
    let pg = PgId::new(1, 3);
    let acting = m.map().pg_to_up_acting_osds(pg).expect("maps");
    let want: Vec<OsdId> = (0..4).filter(|o| !acting.up.contains(o)).take(2).collect();
    m.edit_map(|map, _| crate::pools::rm(map, "p", Some("p"), true, true))
        .expect("pool rm");
    let req = OsdPgTemp {
        osd_id: acting.acting_primary,
        map_epoch: m.map().epoch,
        pg_temp: [(pg, want)].into(),
    };
    let err = m.pg_temp(&req).expect_err("pool pending removal");
    assert!(err.contains("being removed"), "{err}");
    assert!(commit(&mut m), "the pool removal commits");
    assert!(m.map().pools.is_empty() && m.map().pg_temp.is_empty());
}

#[test]
fn alive_raises_up_thru_once() {
    let t0 = Instant::now();
    let (mut m, _) = cluster(1, t0);
    let e = m.map().epoch;
    assert!(m
        .alive(&OsdAlive {
            osd_id: 0,
            want_up_thru: e
        })
        .expect("alive"));
    assert!(commit(&mut m));
    assert_eq!(m.map().osd(0).expect("slot").info.up_thru, e);
    assert!(!m
        .alive(&OsdAlive {
            osd_id: 0,
            want_up_thru: e
        })
        .expect("alive"));
    // Never beyond the epoch being built.
    assert!(m
        .alive(&OsdAlive {
            osd_id: 0,
            want_up_thru: 1000
        })
        .expect("alive"));
    assert!(commit(&mut m));
    assert_eq!(m.map().osd(0).expect("slot").info.up_thru, m.map().epoch);
    assert!(m
        .alive(&OsdAlive {
            osd_id: 7,
            want_up_thru: 1
        })
        .is_err());
}

#[test]
fn boot_of_a_new_instance_marks_the_old_one_down_first() {
    let t0 = Instant::now();
    let (mut m, uuids) = cluster(2, t0);
    let old_up_from = m.map().osd(1).map(|s| s.info.up_from).expect("osd.1");
    // osd.1 restarts (new addresses) before anyone reported it.
    let mut b = boot_msg(1, uuids[1]);
    b.addrs = OsdAddrs::all("127.0.0.1:7801/2".parse().expect("addr"));
    assert!(m.boot(&b, t0).expect("boot"));
    // A repeated boot in the same epoch changes nothing.
    assert!(!m.boot(&b, t0).expect("boot"));
    commit(&mut m);
    let down_epoch = m.map().epoch;
    assert!(!m.map().is_up(1), "the old instance is down for one epoch");
    assert_eq!(m.map().osd(1).map(|s| s.info.down_at), Some(down_epoch));
    assert!(m.boot(&b, t0).expect("boot"));
    commit(&mut m);
    let s = m.map().osd(1).expect("osd.1");
    assert!(s.is_up());
    assert_eq!(s.addrs, b.addrs);
    assert!(s.info.up_from > down_epoch && s.info.up_from > old_up_from);
}

#[test]
fn noin_keeps_a_booting_osd_out_global_and_per_osd() {
    let t0 = Instant::now();
    let (mut m, _) = cluster(3, t0);
    // Global noin: a new OSD boots up but stays out (and NEW).
    m.cmd_flag("noin", true).expect("set");
    let u = Uuid::new_v4();
    assert_eq!(m.osd_mkfs(u, -1, "h").expect("mkfs"), 3);
    commit(&mut m);
    assert!(m.boot(&boot_msg(3, u), t0).expect("boot"));
    commit(&mut m);
    assert!(m.map().is_up(3) && !m.map().is_in(3));
    assert!(m.map().osd(3).expect("slot").state.has(OsdState::NEW));
    // Without the flag its next boot marks it in.
    m.cmd_flag("noin", false).expect("unset");
    m.cmd_down(3, t0).expect("down");
    commit(&mut m);
    m.boot(&boot_msg(3, u), t0).expect("boot");
    commit(&mut m);
    assert!(m.map().is_up(3) && m.map().is_in(3));
    assert!(!m.map().osd(3).expect("slot").state.has(OsdState::NEW));

    // Per-OSD noin: osd.1, auto-marked out, stays out on boot; osd.2
    // (same story, no flag) comes back in.
    let (mut m, uuids) = cluster(3, t0);
    m.cmd_down(1, t0).expect("down");
    m.cmd_down(2, t0).expect("down");
    commit(&mut m);
    m.tick(secs(t0, 600));
    commit(&mut m);
    assert!(!m.map().is_in(1) && !m.map().is_in(2));
    assert_eq!(
        m.cmd_osd_flag(&[1], "noin", true).expect("add-noin"),
        "set osd(s) 1 to noin"
    );
    assert!(m.cmd_osd_flag(&[9], "noin", true).is_err());
    assert!(m.cmd_osd_flag(&[1], "nosuch", true).is_err());
    commit(&mut m);
    m.boot(&boot_msg(1, uuids[1]), secs(t0, 601)).expect("boot");
    m.boot(&boot_msg(2, uuids[2]), secs(t0, 601)).expect("boot");
    commit(&mut m);
    assert!(
        m.map().is_up(1) && !m.map().is_in(1),
        "noin osd.1 stays out"
    );
    assert!(m.map().is_up(2) && m.map().is_in(2));
    assert!(m.map().osd(1).expect("slot").state.has(OsdState::AUTOOUT));
    // rm-noin, then a restart of the daemon: in again.
    m.cmd_osd_flag(&[1], "noin", false).expect("rm-noin");
    m.cmd_down(1, secs(t0, 602)).expect("down");
    commit(&mut m);
    m.boot(&boot_msg(1, uuids[1]), secs(t0, 603)).expect("boot");
    commit(&mut m);
    assert!(m.map().is_up(1) && m.map().is_in(1));
}

#[test]
fn down_out_timer_survives_a_mon_restart() {
    let t0 = Instant::now();
    let (mut m, _) = cluster(3, t0);
    m.cmd_down(2, secs(t0, 10)).expect("down");
    commit(&mut m);
    let stamp = m.map().osd(2).expect("slot").down_stamp_us;
    assert!(stamp > 0, "the map keeps when osd.2 went down");
    // The mon restarts 500 s later (a new process: a new instant base);
    // the OSD has been down 500 s of its 600 s.
    let t1 = secs(t0, 1000);
    let mut m = OsdMon::new_at(m.map().clone(), opts(), t1, stamp + 500_000_000);
    m.tick(t1 + Duration::from_secs(99));
    assert!(!m.has_pending(), "not out before 600 s in total");
    m.tick(t1 + Duration::from_secs(100));
    assert!(commit(&mut m));
    assert!(!m.map().is_in(2), "out 600 s after going down");
    // A map without a stamp (older mon): the window starts at the restart.
    let (mut m, _) = cluster(3, t0);
    m.cmd_down(1, t0).expect("down");
    commit(&mut m);
    let mut map = m.map().clone();
    if let Some(s) = map.osd_mut(1) {
        s.down_stamp_us = 0;
    }
    let mut m = OsdMon::new_at(map, opts(), t1, 5_000_000_000);
    m.tick(t1 + Duration::from_secs(599));
    assert!(!m.has_pending());
    m.tick(t1 + Duration::from_secs(600));
    assert!(commit(&mut m));
    assert!(!m.map().is_in(1));
}

#[test]
fn pool_quota_flags_land_in_a_new_epoch() {
    use kalmar_maps::pool::{POOL_FLAG_FULL, POOL_FLAG_FULL_QUOTA};
    let t0 = Instant::now();
    let (mut m, _) = cluster(3, t0);
    with_pool(&mut m, 3, 8);
    let id = *m.map().pools.keys().next().expect("pool");
    m.edit_map(|map, _| {
        map.pools.get_mut(&id).expect("pool").quota_max_objects = 3;
        Ok(())
    })
    .expect("set quota");
    commit(&mut m);
    let e0 = m.map().epoch;
    let usage = |objects: u64| crate::quota::PoolUsage::from([(id, (objects, 0))]);
    assert_eq!(m.update_pool_quotas(&usage(2)), 0);
    assert!(!m.has_pending(), "under the quota: no new epoch");
    assert_eq!(m.update_pool_quotas(&usage(3)), 1);
    assert!(commit(&mut m), "the incremental carries the flags");
    let p = &m.map().pools[&id];
    assert_eq!(m.map().epoch, e0 + 1);
    assert!(p.has_flag(POOL_FLAG_FULL_QUOTA) && p.has_flag(POOL_FLAG_FULL));
    assert_eq!(p.last_change, e0 + 1);
    assert_eq!(m.update_pool_quotas(&usage(4)), 0, "still full");
    assert!(!m.has_pending());
    assert_eq!(m.update_pool_quotas(&usage(2)), 1);
    assert!(commit(&mut m));
    let p = &m.map().pools[&id];
    assert!(!p.has_flag(POOL_FLAG_FULL_QUOTA) && !p.has_flag(POOL_FLAG_FULL));
}

#[test]
fn ratio_commands_change_the_map_and_validate() {
    let t0 = Instant::now();
    let (mut m, _) = cluster(3, t0);
    let e0 = m.view().epoch;
    assert_eq!(
        m.cmd_ratio("osd set-backfillfull-ratio", 0.5).expect("set"),
        "osd set-backfillfull-ratio 0.5"
    );
    assert_eq!(
        m.cmd_ratio("osd set-full-ratio", 0.97).expect("set"),
        "osd set-full-ratio 0.97"
    );
    assert_eq!(
        m.cmd_ratio("osd set-nearfull-ratio", 0.4).expect("set"),
        "osd set-nearfull-ratio 0.4"
    );
    assert!(commit(&mut m), "one new map");
    let v = m.view();
    assert_eq!(v.epoch, e0 + 1);
    assert_eq!(
        (v.full_ratio, v.backfillfull_ratio, v.nearfull_ratio),
        (0.97, 0.5, 0.4)
    );
    // Setting the current value proposes nothing.
    m.cmd_ratio("osd set-full-ratio", 0.97).expect("same");
    assert!(!commit(&mut m));
    for bad in [-0.1, 1.01, f64::NAN] {
        assert!(m.cmd_ratio("osd set-full-ratio", bad).is_err(), "{bad}");
    }
    assert!(m.cmd_ratio("osd set-bogus-ratio", 0.5).is_err());
    assert_eq!(m.view().full_ratio, 0.97);
}

#[path = "osdmon_markdown_tests.rs"]
mod markdown;
