//! Multi-OSD simulations of one PG through random and scripted histories:
//! OSD crashes and restarts, out/in, pg_temp handoffs, divergent writes.
//!
//! `KALMAR_SIM_SEEDS=N` runs N random seeds (default 150);
//! `KALMAR_SIM_SEED=S` runs only seed S (with its trace on failure).

mod sim;

use kalmar_maps::OsdId;
use kalmar_peering::{Peering, PeeringSettings, PgStateFlags, State};
use rand::Rng;
use sim::Sim;

fn small_settings() -> PeeringSettings {
    PeeringSettings {
        osd_max_pg_log_entries: 12,
        osd_pg_log_dups_tracked: 20,
        osd_recovery_max_active: 2,
        osd_backfill_scan_max: 3,
        ..Default::default()
    }
}

/// One random history; Err describes the violated property.
/// The cluster shape a seed runs with: most seeds use 5 OSDs with 3
/// copies (min_size 2); every fourth seed varies OSD count, size and
/// min_size.
fn shape(seed: u64) -> (usize, u32, u32) {
    if seed % 4 != 3 {
        return (5, 3, 2);
    }
    let v = seed / 4;
    let size = 2 + (v % 2) as u32;
    let n = size as usize + 1 + (v / 2 % 3) as usize;
    let min_size = 1 + (v / 6 % u64::from(size)) as u32;
    (n, size, min_size)
}

fn random_history(seed: u64, steps: usize) -> (Result<(), String>, Sim) {
    let (n, size, min_size) = shape(seed);
    let mut sim = Sim::new(seed, n, size, min_size, small_settings());
    for _ in 0..steps {
        let r = sim.rng.random_range(0..100);
        match r {
            0..30 => {
                let i = sim.rng.random_range(0..sim.objects.len());
                let oid = sim.objects[i].clone();
                let delete = sim.rng.random_range(0..10) == 0;
                sim.client_write(&oid, delete);
            }
            30..84 => {
                if !sim.step_one() {
                    sim.mon_tick();
                }
            }
            84..90 => sim.mon_tick(),
            90..92 => {
                let o = sim.rng.random_range(0..n) as OsdId;
                sim.crash(o);
            }
            92..96 => {
                let o = sim.rng.random_range(0..n) as OsdId;
                sim.restart(o);
            }
            96..98 => {
                let o = sim.rng.random_range(0..n) as OsdId;
                sim.set_in(o, false);
            }
            _ => {
                let o = sim.rng.random_range(0..n) as OsdId;
                sim.set_in(o, true);
            }
        }
    }
    for o in 0..n as OsdId {
        sim.restart(o);
        sim.set_in(o, true);
    }
    if !sim.settle(100_000) {
        return (Err("did not settle".into()), sim);
    }
    if let Err(e) = sim.check_converged() {
        // Ceph's recovery_unfound after multi-failure lineage switches:
        // tolerated only when no acknowledged data is gone.
        return match sim.check_unfound_only_unacked() {
            Ok(unfound) => (Err(format!("{UNFOUND_TAG} {unfound:?}")), sim),
            Err(_) => (Err(e), sim),
        };
    }
    // The clean PG still takes writes, and they are acknowledged.
    let before = sim.acked_count;
    let oid = sim.objects[0].clone();
    if !sim.client_write(&oid, false) || !sim.settle(10_000) || sim.acked_count != before + 1 {
        return (Err("clean PG did not acknowledge a write".into()), sim);
    }
    (sim.check_converged(), sim)
}

/// Marks a history that ended in `recovery_unfound` with every acknowledged
/// write intact.
const UNFOUND_TAG: &str = "ended recovery_unfound (unacknowledged data only):";

fn run_seed(seed: u64, verbose: bool) -> Result<u64, String> {
    let result = std::panic::catch_unwind(|| {
        let (r, sim) = random_history(seed, 1000);
        let mut trace = sim.trace.clone();
        if r.is_err() {
            trace.extend(sim.dump());
        }
        (r, sim.acked_count, trace)
    });
    match result {
        Ok((Ok(()), acked, _)) => Ok(acked),
        Ok((Err(e), _, trace)) => {
            if verbose {
                for l in trace.iter() {
                    eprintln!("  {l}");
                }
            }
            Err(format!("seed {seed}: {e}"))
        }
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(format!(
                "seed {seed}: panicked: {}",
                msg.unwrap_or_default()
            ))
        }
    }
}

#[test]
fn random_histories_lose_no_acknowledged_write_and_converge() {
    if let Some(seed) = std::env::var("KALMAR_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        if let Err(e) = run_seed(seed, true) {
            panic!("{e}");
        }
        return;
    }
    let seeds: u64 = std::env::var("KALMAR_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let mut failures = Vec::new();
    let mut unfound_endings = Vec::new();
    let mut acked = 0;
    for seed in 0..seeds {
        let t = std::time::Instant::now();
        let r = run_seed(seed, false);
        if t.elapsed().as_secs() >= 2 {
            eprintln!("seed {seed} took {:?}", t.elapsed());
        }
        match r {
            Ok(a) => acked += a,
            Err(e) if e.contains(UNFOUND_TAG) => unfound_endings.push(e),
            Err(e) => failures.push(e),
        }
    }
    eprintln!(
        "{seeds} seeds, {acked} acknowledged writes, {} failures, {} ended recovery_unfound with acknowledged data intact",
        failures.len(),
        unfound_endings.len()
    );
    for u in &unfound_endings {
        eprintln!("  {u}");
    }
    // Rare by construction (several overlapping failures); a jump means a
    // regression in recovery sourcing.
    assert!(
        unfound_endings.len() as u64 * 500 <= seeds.max(500),
        "too many unfound endings: {unfound_endings:?}"
    );
    assert!(
        failures.is_empty(),
        "{} failing seeds (rerun one with KALMAR_SIM_SEED=S):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        acked > seeds * 20,
        "histories acknowledged too few writes ({acked}) to mean anything"
    );
}

/// Seeds that once failed, each for a bug since fixed (trim past missing
/// objects, pg_temp flip-flop on a forked log, waiting on a dead peer,
/// unfound objects on strays, resurrected divergent histories, resuming a
/// backfill target whose log does not overlap).
const REGRESSION_SEEDS: &[u64] = &[
    31, 464, 792, 1006, 1036, 1058, 1067, 1096, 1103, 1234, 1395, 1506, 1564, 2104, 2238, 2293,
    2360, 4710, 10927, 12341, 14202, 16102,
];

#[test]
fn regression_seeds() {
    let failures: Vec<String> = REGRESSION_SEEDS
        .iter()
        .filter_map(|&s| run_seed(s, false).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The seed document's flow: a new OSD becomes the up primary of a PG it has
/// no data for; the old holders keep serving under a pg_temp while it is
/// backfilled, then the pg_temp goes away and the new OSD leads.
#[test]
fn pg_temp_handoff_to_a_new_empty_primary() {
    let mut sim = Sim::new(1, 4, 3, 2, small_settings());
    let newcomer = sim.raw_set()[0];
    sim.set_in(newcomer, false);
    assert!(sim.settle(50_000));
    for i in 0..20 {
        let oid = sim.objects[i % sim.objects.len()].clone();
        assert!(sim.client_write(&oid, false), "write {i} refused");
        assert!(sim.settle(50_000));
    }
    sim.check_converged().expect("clean before the newcomer");
    assert!(!sim.mapping().up.contains(&newcomer));
    assert!(
        sim.nodes[newcomer as usize].pg.is_none(),
        "stray copy was purged"
    );
    let old_acting = sim.mapping().acting;

    sim.set_in(newcomer, true);
    assert_eq!(sim.mapping().up_primary, newcomer);
    assert!(sim.settle(100_000));
    let temp = sim
        .pg_temp_requests
        .iter()
        .find(|t| !t.is_empty())
        .cloned()
        .expect("pg_temp requested");
    assert!(
        !temp.contains(&newcomer),
        "pg_temp keeps the old holders acting: {temp:?}"
    );
    assert!(temp.iter().all(|o| old_acting.contains(o)));
    let saw = |bits: u64| sim.published.iter().any(|(_, f)| f.has(bits));
    assert!(
        saw(PgStateFlags::ACTIVE | PgStateFlags::REMAPPED),
        "served I/O while remapped"
    );
    assert!(saw(PgStateFlags::BACKFILLING), "backfilled the newcomer");
    let strings: Vec<String> = sim.published.iter().map(|(_, f)| f.to_string()).collect();
    assert!(
        strings.iter().any(|s| s == "active+remapped+backfilling"),
        "pg dump shows the handoff: {strings:?}"
    );
    assert!(strings.iter().any(|s| s == "active+clean"), "{strings:?}");
    assert_eq!(
        sim.pg_temp_requests.last(),
        Some(&vec![]),
        "pg_temp removed at the end"
    );
    sim.check_converged().expect("converged");
    assert_eq!(sim.primary(), newcomer);
    assert_eq!(
        sim.nodes[newcomer as usize].store.objects.len(),
        sim.objects.len()
    );
}

/// A PG whose only copies of a read-write interval are down goes down
/// instead of activating without the data, and recovers when one returns.
#[test]
fn down_when_no_member_of_a_rw_interval_survives() {
    let mut sim = Sim::new(2, 3, 2, 1, small_settings());
    assert!(sim.settle(50_000));
    let m = sim.mapping();
    let (a, b) = (m.acting[0], m.acting[1]);
    let c = (0..3).find(|o| !m.acting.contains(o)).expect("a third OSD");
    sim.client_write("obj00", false);
    assert!(sim.settle(50_000));
    sim.crash(b);
    assert!(sim.settle(50_000));
    // Acknowledged by a alone (min_size 1).
    assert!(sim.client_write("obj01", false));
    assert!(sim.settle(50_000));
    assert!(sim.acked.contains_key("obj01"));
    sim.crash(a);
    sim.set_in(a, false);
    sim.set_in(b, false);
    assert!(sim.settle(50_000));
    assert_eq!(sim.primary(), c);
    let (state, flags) = sim.primary_state().expect("c has the PG");
    assert_eq!(state, State::Peering(Peering::Down), "flags {flags}");
    assert!(flags.has(PgStateFlags::DOWN) && !flags.has(PgStateFlags::ACTIVE));
    // b alone does not help: it missed obj01.
    sim.restart(b);
    assert!(sim.settle(50_000));
    assert!(!sim.primary_state().expect("pg").1.has(PgStateFlags::ACTIVE));
    sim.restart(a);
    sim.set_in(a, true);
    sim.set_in(b, true);
    assert!(sim.settle(200_000));
    sim.check_converged().expect("converged");
    assert!(sim.nodes[sim.primary() as usize]
        .store
        .objects
        .contains_key("obj01"));
}

/// A write the primary applied but no replica received is rolled back once
/// the others have moved on.
#[test]
fn divergent_entries_are_rolled_back() {
    let mut sim = Sim::new(3, 3, 3, 2, small_settings());
    assert!(sim.settle(50_000));
    sim.client_write("obj00", false);
    sim.client_write("obj01", false);
    assert!(sim.settle(50_000));
    let p = sim.primary();
    let before = sim.nodes[p as usize].store.objects.get("obj00").copied();
    // Applied on the primary only: the primary dies before sending.
    assert!(sim.client_write("obj00", false));
    assert!(sim.client_write("obj05", false));
    let divergent = sim.nodes[p as usize]
        .store
        .objects
        .get("obj05")
        .copied()
        .expect("applied locally");
    sim.crash(p);
    assert!(sim.settle(50_000));
    assert!(sim.client_write("obj02", false), "survivors serve");
    assert!(sim.settle(50_000));
    sim.restart(p);
    assert!(sim.settle(100_000));
    sim.check_converged().expect("converged");
    for o in 0..3 {
        let objs = &sim.nodes[o].store.objects;
        assert!(
            !objs.contains_key("obj05"),
            "osd.{o} kept divergent {divergent:?}"
        );
        assert_eq!(
            objs.get("obj00").copied(),
            before,
            "osd.{o} rolled obj00 back"
        );
    }
}
