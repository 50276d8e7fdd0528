//! Power loss on the fault-injecting device.
//!
//! For each seed: a random workload runs on a device with a volatile write
//! cache; at a write or flush chosen by the seed the power goes (the
//! operation in flight is cut short). The media then keeps, drops, tears
//! or keeps an older version of every unflushed block, again by seed. For
//! some seeds the power goes a second time during recovery. After the
//! final mount:
//!
//! - every acknowledged transaction is there in full, and the state is
//!   exactly the model after some prefix of the submitted transactions
//!   (so no unacknowledged transaction is partly visible);
//! - refused transactions were refused by the model too;
//! - fsck (deep) is clean.
//!
//! The metadata database is the in-memory one, on the same power as the
//! device: its flushes count toward the crash point, and a power loss
//! drops whatever it was not flushed.
//!
//! `KALMAR_POWERLOSS_SEEDS=<count>` runs more seeds, `KALMAR_POWERLOSS_SEED=<n>`
//! one seed. A failing seed prints itself; add it to `REGRESSION_SEEDS`.

mod common;

use std::sync::Arc;

use common::{diff, try_dump, Gen, Model};
use kalmar_objectstore::device::{FaultConfig, FaultyDevice};
use kalmar_objectstore::kv::PoweredKv;
use kalmar_objectstore::{
    KvHandle, MkfsOptions, MountOptions, ObjectStore, StoreError, StoreSettings, Transaction,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

const DEFAULT_SEEDS: u64 = 1000;
const DEVICE_BYTES: u64 = 10 << 20;
const JOURNAL_BYTES: u64 = 1 << 20;
const TXNS: usize = 60;
/// Crash points are drawn from 1..=CRASH_WINDOW writes and flushes after
/// mount; the workload takes about this many, so some seeds outlive it.
const CRASH_WINDOW: u64 = 56;
/// Seeds that once failed; they always run.
/// 586: a big write and a journaled overwrite of the same block in one
/// record, the overwrite applied home before the crash: replay took the big
/// write for lost and dropped an acknowledged record.
const REGRESSION_SEEDS: &[u64] = &[586];

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("KALMAR_POWERLOSS_SEED") {
        return vec![s.parse().expect("KALMAR_POWERLOSS_SEED is a number")];
    }
    let n = std::env::var("KALMAR_POWERLOSS_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    REGRESSION_SEEDS.iter().copied().chain(0..n).collect()
}

fn settings(background: bool, seed: u64) -> StoreSettings {
    let mut s = common::test_settings();
    // In background mode, small batches keep several in flight at once.
    s.max_batch_txns = if background {
        1 + (seed / 2 % 3) as usize
    } else {
        256
    };
    s.commit_pipeline_depth = 1 + (seed / 2 % 4) as usize;
    // Inline apply and size-triggered checkpoints make a seed replay the
    // same operations in the same order.
    s.drive = if background {
        kalmar_objectstore::Drive::Threads
    } else {
        kalmar_objectstore::Drive::Inline
    };
    s.checkpoint_interval_ms = if background { 5 } else { 3_600_000 };
    s.checkpoint_journal_percent = 30;
    s.deferred_txn_max_bytes = 64 << 10;
    s.reader_threads = 1;
    s
}

fn mount_on(
    dev: Arc<FaultyDevice>,
    kv: &Arc<PoweredKv>,
    settings: StoreSettings,
) -> kalmar_objectstore::Result<ObjectStore> {
    kv.attach(dev.clone());
    let opts = MountOptions {
        settings,
        kv: Some(KvHandle(kv.clone())),
        ..MountOptions::default()
    };
    ObjectStore::mount_device(dev, std::path::Path::new("unused"), &opts)
}

/// What the workload learnt about each submitted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Acked,
    Refused,
    Unknown,
}

struct Run {
    history: Vec<(Transaction, Outcome)>,
}

fn workload(store: &ObjectStore, gen: &mut Gen, mut history: Vec<(Transaction, Outcome)>) -> Run {
    let mut down = false;
    while history.len() < TXNS && !down {
        let group = gen.rng.random_range(1..=4);
        let txns: Vec<Transaction> = (0..group).map(|_| gen.txn(3)).collect();
        let copies: Vec<Transaction> = txns.iter().map(Transaction::duplicate).collect();
        for (copy, commit) in copies.into_iter().zip(store.queue_transactions(txns)) {
            let outcome = match commit.wait() {
                Ok(()) => Outcome::Acked,
                Err(e) if e.is_fatal() => {
                    down = true;
                    Outcome::Unknown
                }
                Err(StoreError::TooLarge { .. }) => Outcome::Unknown,
                Err(_) => Outcome::Refused,
            };
            history.push((copy, outcome));
        }
    }
    Run { history }
}

/// Checks the recovered state against every admissible prefix.
fn verify(seed: u64, store: &ObjectStore, run: &Run) -> Result<(), String> {
    let state =
        try_dump(store).map_err(|e| format!("seed {seed}: reading the recovered state: {e}"))?;
    if std::env::var("KALMAR_POWERLOSS_DEBUG").is_ok() {
        for (i, (t, o)) in run.history.iter().enumerate() {
            eprintln!("txn {i} {o:?}: {}", common::describe(t));
        }
    }
    let last_acked = run.history.iter().rposition(|(_, o)| *o == Outcome::Acked);
    let min_prefix = last_acked.map_or(0, |i| i + 1);
    let mut model = Model::default();
    let mut matched = None;
    let mut at_min = None;
    if min_prefix == 0 && state == model.colls {
        matched = Some(0);
    }
    if min_prefix == 0 {
        at_min = Some(model.colls.clone());
    }
    for (i, (t, outcome)) in run.history.iter().enumerate() {
        let ok = model.apply(t);
        match outcome {
            Outcome::Acked if !ok => {
                return Err(format!("txn {i} was acknowledged but the model refuses it"))
            }
            Outcome::Refused if ok => {
                return Err(format!("txn {i} was refused but the model accepts it"))
            }
            _ => {}
        }
        if i + 1 == min_prefix {
            at_min = Some(model.colls.clone());
        }
        if i + 1 >= min_prefix && matched.is_none() && state == model.colls {
            matched = Some(i + 1);
        }
    }
    match matched {
        Some(_) => Ok(()),
        None => Err(format!(
            "seed {seed}: the recovered state is no admissible prefix (>= {min_prefix} of {} txns); vs the acked prefix: {}",
            run.history.len(),
            at_min.as_ref().map_or("?".into(), |m| diff(&state, m))
        )),
    }
}

/// What one seed exercised, to check that the seeds cover the cases.
#[derive(Default)]
struct Coverage {
    crashed_mid_workload: bool,
    acked: usize,
    unknown: usize,
}

fn run_seed(seed: u64) -> Result<Coverage, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let background = seed % 2 == 1;
    let cfg = FaultConfig::new(seed);
    let dev = Arc::new(FaultyDevice::new(DEVICE_BYTES, cfg.clone()));
    let kv = Arc::new(PoweredKv::new(dev.clone()));
    let mut mk = MkfsOptions::new(Uuid::from_u128(1), Uuid::from_u128(2));
    mk.journal_bytes = Some(JOURNAL_BYTES);
    mk.kv = Some(KvHandle(kv.clone()));
    ObjectStore::mkfs_device(dev.as_ref(), &mk).map_err(|e| format!("mkfs: {e}"))?;
    let store = mount_on(dev.clone(), &kv, settings(background, seed))
        .map_err(|e| format!("mount: {e}"))?;
    // Collections first, so that most of the workload has somewhere to go.
    let mut setup = Transaction::new();
    for c in common::COLLS {
        setup.create_collection(&common::cid(c));
    }
    let history = vec![(setup.duplicate(), Outcome::Acked)];
    store
        .apply_transaction(setup)
        .map_err(|e| format!("setup: {e}"))?;
    let ops0 = dev.ops();
    dev.arm_crash(Some(dev.ops() + rng.random_range(1..=CRASH_WINDOW)));
    let mut gen = Gen::new(seed ^ 0x5eed);
    gen.max_write = 100_000;
    gen.max_offset = 300_000;
    let run = workload(&store, &mut gen, history);
    let cov = Coverage {
        crashed_mid_workload: dev.crashed(),
        acked: run
            .history
            .iter()
            .filter(|(_, o)| *o == Outcome::Acked)
            .count(),
        unknown: run
            .history
            .iter()
            .filter(|(_, o)| *o == Outcome::Unknown)
            .count(),
    };
    if std::env::var("KALMAR_POWERLOSS_DEBUG").is_ok() {
        eprintln!(
            "seed {seed}: workload used {} writes and flushes",
            dev.ops() - ops0
        );
    }
    dev.crash_now();
    store.abandon();
    drop(store);
    kv.crash();

    let mut image = dev.power_loss_image(seed);
    // A second power loss during recovery, for a quarter of the seeds.
    if rng.random_bool(0.25) {
        let dev2 = Arc::new(FaultyDevice::from_image(
            image.clone(),
            FaultConfig::new(seed + 1),
        ));
        dev2.arm_crash(Some(rng.random_range(1..=12)));
        match mount_on(dev2.clone(), &kv, settings(background, seed)) {
            Ok(s) => {
                // Recovery finished before the crash point: lose power now.
                dev2.crash_now();
                s.abandon();
            }
            Err(StoreError::Device(_)) | Err(StoreError::Kv(_)) => {}
            Err(e) => {
                return Err(format!(
                    "seed {seed}: recovery failed with a non-device error: {e}"
                ))
            }
        }
        kv.crash();
        image = dev2.power_loss_image(seed + 1);
    }
    let dev3 = Arc::new(FaultyDevice::from_image(image, FaultConfig::new(seed + 2)));
    let store = mount_on(dev3, &kv, settings(background, seed))
        .map_err(|e| format!("seed {seed}: remount: {e}"))?;
    verify(seed, &store, &run)?;
    let report = store
        .fsck(true)
        .map_err(|e| format!("seed {seed}: fsck: {e}"))?;
    if !report.is_clean() {
        return Err(format!("seed {seed}: fsck found {:?}", report.errors));
    }
    // The recovered store takes new writes and survives a clean remount.
    let mut t = Transaction::new();
    t.create_collection(&common::cid("after-recovery"));
    store
        .apply_transaction(t)
        .map_err(|e| format!("seed {seed}: write after recovery: {e}"))?;
    store
        .umount()
        .map_err(|e| format!("seed {seed}: umount: {e}"))?;
    Ok(cov)
}

#[test]
fn acknowledged_transactions_survive_power_loss() {
    let mut failures = Vec::new();
    let seeds = seeds();
    let (mut mid, mut acked, mut unknown) = (0, 0, 0);
    for &seed in &seeds {
        match run_seed(seed) {
            Ok(c) => {
                mid += c.crashed_mid_workload as usize;
                acked += c.acked;
                unknown += c.unknown;
            }
            Err(e) => {
                eprintln!(
                "power-loss seed {seed} FAILED: {e}\n  rerun: KALMAR_POWERLOSS_SEED={seed} cargo test --release -p kalmar-objectstore --test powerloss"
            );
                failures.push(seed);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "failing power-loss seeds: {failures:?} (of {})",
        seeds.len()
    );
    eprintln!("{} seeds: {mid} lost power mid-workload, {acked} acknowledged and {unknown} in-flight transactions", seeds.len());
    if seeds.len() >= 20 {
        assert!(
            mid * 3 >= seeds.len(),
            "too few seeds lose power mid-workload ({mid}): widen the window"
        );
        assert!(
            mid * 10 <= seeds.len() * 9,
            "too few seeds finish the workload ({mid} crashed)"
        );
    }
}
