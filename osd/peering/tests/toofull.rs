//! Recovery and backfill onto a copy without room: the PG shows
//! `backfill_toofull` / `recovery_toofull`, holds no reservation, retries,
//! and goes clean once there is room; a push refused with ENOSPC ends the
//! same way instead of stalling.

mod sim;

use kalmar_maps::OsdId;
use kalmar_peering::{Active, Fullness, PeeringSettings, PgStateFlags, ReserveFor, State};
use sim::Sim;

fn settings() -> PeeringSettings {
    PeeringSettings {
        osd_max_pg_log_entries: 12,
        osd_pg_log_dups_tracked: 20,
        osd_recovery_max_active: 2,
        osd_backfill_scan_max: 3,
        ..Default::default()
    }
}

/// `used` percent of a 1000-byte store, with Ceph's default ratios.
fn used(percent: u64) -> Option<Fullness> {
    Some(Fullness {
        used_bytes: percent * 10,
        total_bytes: 1000,
        full_ratio: 0.95,
        backfillfull_ratio: 0.90,
    })
}

fn primary_flags(sim: &Sim) -> (State, PgStateFlags) {
    let p = sim.primary();
    let pg = sim.nodes[p as usize].pg.as_ref().expect("primary pg");
    (pg.state(), pg.state_flags())
}

/// A 4-OSD cluster, size 3, whose first up OSD is out while 20 writes
/// land: bringing it in makes it a backfill target.
fn cluster_with_newcomer() -> (Sim, OsdId) {
    let mut sim = Sim::new(7, 4, 3, 2, settings());
    let newcomer = sim.raw_set()[0];
    sim.set_in(newcomer, false);
    assert!(sim.settle(50_000));
    for i in 0..20 {
        let oid = sim.objects[i % sim.objects.len()].clone();
        assert!(sim.client_write(&oid, false), "write {i} refused");
        assert!(sim.settle(50_000));
    }
    sim.check_converged().expect("clean before the newcomer");
    (sim, newcomer)
}

#[test]
fn backfillfull_target_rejects_then_backfills_once_it_has_room() {
    let (mut sim, newcomer) = cluster_with_newcomer();
    sim.nodes[newcomer as usize].fullness = used(91);
    sim.set_in(newcomer, true);
    assert!(
        sim.settle(100_000),
        "settles (nothing left stuck in flight)"
    );
    let (state, flags) = primary_flags(&sim);
    assert_eq!(state, State::Active(Active::NotBackfilling));
    assert!(flags.has(PgStateFlags::BACKFILL_TOOFULL), "{flags}");
    assert!(!flags.has(PgStateFlags::BACKFILLING), "{flags}");
    assert_eq!(flags.to_string(), "active+remapped+backfill_toofull");
    assert_eq!(sim.retries, vec![(sim.primary(), ReserveFor::Backfill)]);

    // Still full at the retry: refused again, one more retry scheduled.
    sim.fire_retries();
    assert!(sim.settle(100_000));
    let (state, _) = primary_flags(&sim);
    assert_eq!(state, State::Active(Active::NotBackfilling));
    assert_eq!(sim.retries.len(), 1);
    // The target holds no reservation for it meanwhile.
    let target = sim.nodes[newcomer as usize].pg.as_ref().expect("target pg");
    assert!(
        matches!(
            target.state(),
            State::ReplicaActive(kalmar_peering::Replica::RepNotRecovering)
        ),
        "{:?}",
        target.state()
    );

    // Room again (a lower use, as after raising the ratio): it backfills.
    sim.nodes[newcomer as usize].fullness = used(50);
    sim.fire_retries();
    assert!(sim.settle(200_000));
    sim.check_converged().expect("clean after backfill");
    assert_eq!(
        sim.nodes[newcomer as usize].store.objects.len(),
        sim.objects.len()
    );
    let strings: Vec<String> = sim.published.iter().map(|(_, f)| f.to_string()).collect();
    assert!(
        strings
            .iter()
            .any(|s| s.contains("backfill_wait+backfill_toofull")),
        "the retry shows backfill_wait while toofull: {strings:?}"
    );
    assert!(strings.iter().any(|s| s.contains("backfilling")));
    assert!(sim.retries.is_empty());
}

#[test]
fn backfill_counts_the_bytes_it_would_add() {
    // 85% used is below backfillfull, but the PG's bytes would pass it.
    let (mut sim, newcomer) = cluster_with_newcomer();
    // Every holder reports the PG at 100 bytes (whichever becomes primary
    // asks with that size).
    for n in sim.nodes.iter_mut() {
        if let Some(pg) = n.pg.as_mut() {
            let mut stats = pg.info().stats;
            stats.num_bytes = 100;
            pg.set_object_stats(stats);
        }
    }
    sim.nodes[newcomer as usize].fullness = used(85);
    sim.set_in(newcomer, true);
    assert!(sim.settle(100_000));
    let (state, _) = primary_flags(&sim);
    assert_eq!(state, State::Active(Active::NotBackfilling));
    sim.nodes[newcomer as usize].fullness = used(10);
    sim.fire_retries();
    assert!(sim.settle(200_000));
    sim.check_converged().expect("clean");
}

#[test]
fn enospc_push_goes_backfill_toofull_and_retries() {
    let (mut sim, newcomer) = cluster_with_newcomer();
    sim.nodes[newcomer as usize].refuse_pushes = true;
    sim.set_in(newcomer, true);
    assert!(sim.settle(100_000), "no push left waiting");
    let (state, flags) = primary_flags(&sim);
    assert_eq!(state, State::Active(Active::NotBackfilling), "{flags}");
    assert!(flags.has(PgStateFlags::BACKFILL_TOOFULL));
    sim.nodes[newcomer as usize].refuse_pushes = false;
    sim.fire_retries();
    assert!(sim.settle(200_000));
    sim.check_converged().expect("clean after the retry");
}

#[test]
fn full_member_goes_recovery_toofull_then_recovers() {
    let mut sim = Sim::new(3, 3, 3, 2, settings());
    assert!(sim.settle(50_000));
    let replica = *sim
        .mapping()
        .acting
        .iter()
        .find(|&&o| o != sim.primary())
        .expect("a replica");
    sim.crash(replica);
    assert!(sim.settle(50_000));
    for i in 0..4 {
        let oid = sim.objects[i].clone();
        assert!(sim.client_write(&oid, false));
        assert!(sim.settle(50_000));
    }
    // Backfillfull is no reason to refuse recovery; full is.
    sim.nodes[replica as usize].fullness = used(96);
    sim.restart(replica);
    assert!(sim.settle(100_000));
    let (state, flags) = primary_flags(&sim);
    assert_eq!(state, State::Active(Active::NotRecovering), "{flags}");
    assert!(flags.has(PgStateFlags::RECOVERY_TOOFULL), "{flags}");
    assert!(flags.has(PgStateFlags::DEGRADED), "{flags}");

    sim.nodes[replica as usize].fullness = used(92);
    sim.fire_retries();
    assert!(sim.settle(200_000));
    sim.check_converged().expect("recovered");
}

#[test]
fn full_primary_does_not_start_recovery() {
    let mut sim = Sim::new(5, 3, 3, 2, settings());
    assert!(sim.settle(50_000));
    let p = sim.primary();
    let replica = *sim
        .mapping()
        .acting
        .iter()
        .find(|&&o| o != p)
        .expect("a replica");
    sim.crash(replica);
    assert!(sim.settle(50_000));
    assert!(sim.client_write(&sim.objects[0].clone(), false));
    assert!(sim.settle(50_000));
    sim.nodes[p as usize].fullness = used(99);
    sim.restart(replica);
    assert!(sim.settle(100_000));
    assert_eq!(sim.primary(), p);
    let (state, flags) = primary_flags(&sim);
    assert_eq!(state, State::Active(Active::NotRecovering));
    assert!(flags.has(PgStateFlags::RECOVERY_TOOFULL), "{flags}");
    sim.nodes[p as usize].fullness = None;
    sim.fire_retries();
    assert!(sim.settle(200_000));
    sim.check_converged().expect("recovered");
}
