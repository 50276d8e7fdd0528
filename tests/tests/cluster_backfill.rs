//! Backfill and the PG Temp handoff across real processes, on one cluster
//! in sequence (3 OSDs, pool size 3 / min_size 2, data written first):
//!
//! 1. A fourth OSD joins while a client keeps writing and removing: every
//!    PG whose up set gains it shows `remapped` and
//!    `backfill_wait`/`backfilling`, with a pg_temp in `osd dump` that
//!    keeps the old holders acting; the entries disappear when done, the
//!    PGs are clean, the old copies are purged, and the backfill counters
//!    account for every object copied.
//! 2. `osd out 0`: its data moves away (it ends holding no PG); `osd in 0`:
//!    it moves back to the same mapping.
//! 3. `osd out 3`, then `osd in 3`: while it is being backfilled again it
//!    is killed with SIGKILL and restarted; backfill resumes from the
//!    target's `last_backfill` rather than start over.
//!
//! Finally every OSD is stopped and the offline tool checks that each
//! object is on exactly the OSDs of its acting set, byte for byte.
//!
//! `osd_recovery_sleep` paces the pushes so each PG's backfill lasts a few
//! seconds: long enough to be seen in the once-a-second PG reports.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kalmar_client::IoCtx;
use kalmar_tests::{
    counter, placement_problems, wait_for, Cluster, ClusterOpts, Placement, StoredObject,
};
use serde_json::{json, Value};

const POOL: &str = "bf";
const PG_NUM: u32 = 16;
/// Objects written before the cluster changes.
const OBJECTS: usize = 800;
/// Objects rewritten while the fourth OSD is backfilled.
const HOT: usize = 40;
/// Pause between a PG's pushes: ~50 objects per PG make a backfill of
/// about 2.5 s.
const RECOVERY_SLEEP: &str = "0.05";
const MAX_BACKFILLS: u64 = 2;
const SCAN_MAX: u64 = 16;
/// The pool's size.
const SIZE: u32 = 3;
/// Writes the background writer has in flight at once (it waits for each).
const WRITER_IN_FLIGHT: u32 = 1;
/// Bound on each change settling (all clean, no pg_temp).
const SETTLE: Duration = Duration::from_secs(150);

/// The content of `tag`/`i`: 1..8 KiB, distinct per (tag, i, generation).
fn content(tag: &str, i: usize, gen: usize) -> Bytes {
    let size = 1024 + (i * 7919 + gen * 131) % 7168;
    let seed = tag.len() * 1009 + i * 31 + gen * 17;
    Bytes::from(
        (0..size)
            .map(|j| ((seed + j * 7) % 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

type Acked = Arc<Mutex<BTreeMap<String, Bytes>>>;

/// One PG's line of `pg dump`.
#[derive(Debug, Clone, PartialEq)]
struct PgLine {
    state: String,
    up: Vec<u32>,
    acting: Vec<u32>,
    misplaced: u64,
    degraded: u64,
}

fn osds(v: &Value) -> Vec<u32> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o.as_u64())
                .map(|o| o as u32)
                .collect()
        })
        .unwrap_or_default()
}

async fn pg_lines(c: &Cluster) -> anyhow::Result<BTreeMap<String, PgLine>> {
    let mut m = BTreeMap::new();
    for p in c.pg_stats().await? {
        let id = p["pgid"].as_str().unwrap_or_default().to_string();
        let line = PgLine {
            state: p["state"].as_str().unwrap_or_default().to_string(),
            up: osds(&p["up"]),
            acting: osds(&p["acting"]),
            misplaced: p["stat_sum"]["num_objects_misplaced"].as_u64().unwrap_or(0),
            degraded: p["stat_sum"]["num_objects_degraded"].as_u64().unwrap_or(0),
        };
        m.insert(id, line);
    }
    Ok(m)
}

/// What was seen while a change settled.
#[derive(Default, Debug)]
struct Seen {
    /// PG -> states reported.
    states: BTreeMap<String, BTreeSet<String>>,
    /// PG -> pg_temp entries in `osd dump`.
    temps: BTreeMap<String, BTreeSet<Vec<u32>>>,
    /// PG -> the most misplaced / degraded objects it reported.
    misplaced: BTreeMap<String, u64>,
    degraded: BTreeMap<String, u64>,
}

impl Seen {
    fn had_state(&self, pg: &str, state: &str) -> bool {
        self.states
            .get(pg)
            .is_some_and(|s| s.iter().any(|st| st.split('+').any(|x| x == state)))
    }
}

/// Polls `pg dump` and `osd dump` until every PG is active+clean with
/// up == acting, no pg_temp is left, and `done` holds for the up sets
/// (so reports from before the change cannot pass for the result).
async fn settle(
    c: &Cluster,
    what: &str,
    done: impl Fn(&BTreeMap<String, PgLine>) -> bool,
) -> anyhow::Result<(Seen, BTreeMap<String, PgLine>)> {
    let mut seen = Seen::default();
    let start = Instant::now();
    loop {
        let dump = c.mon_command(json!({"prefix": "osd dump"})).await?;
        let temps = dump["pg_temp"].as_array().cloned().unwrap_or_default();
        for t in &temps {
            let pg = t["pgid"].as_str().unwrap_or_default().to_string();
            seen.temps.entry(pg).or_default().insert(osds(&t["osds"]));
        }
        let lines = pg_lines(c).await?;
        for (pg, l) in &lines {
            seen.states
                .entry(pg.clone())
                .or_default()
                .insert(l.state.clone());
            let m = seen.misplaced.entry(pg.clone()).or_default();
            *m = (*m).max(l.misplaced);
            let d = seen.degraded.entry(pg.clone()).or_default();
            *d = (*d).max(l.degraded);
        }
        let clean = lines.len() == PG_NUM as usize
            && lines
                .values()
                .all(|l| l.state == "active+clean" && l.up == l.acting && l.up.len() == 3);
        if clean && temps.is_empty() && done(&lines) {
            eprintln!("{what}: settled in {:.1} s", start.elapsed().as_secs_f64());
            return Ok((seen, lines));
        }
        if start.elapsed() > SETTLE {
            anyhow::bail!(
                "{what}: not settled after {} s: pg_temp {temps:?}, pgs {lines:?}",
                SETTLE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// PGs held per OSD (`status` num_pgs), strays included.
fn pgs_held(c: &Cluster) -> anyhow::Result<Vec<u64>> {
    (0..c.osds)
        .map(|o| {
            let s = c.admin(&format!("osd.{o}"), "status")?;
            Ok(s["num_pgs"].as_u64().unwrap_or(u64::MAX))
        })
        .collect()
}

/// Waits until the copies no acting set needs are deleted.
async fn strays_purged(c: &Cluster, want: impl Fn(&[u64]) -> bool) -> anyhow::Result<()> {
    wait_for("strays to be purged", Duration::from_secs(60), || async {
        let held = pgs_held(c).ok()?;
        want(&held).then_some(())
    })
    .await
}

fn perf_sum(c: &Cluster, name: &str) -> anyhow::Result<u64> {
    let mut sum = 0;
    for o in 0..c.osds {
        sum += counter(&c.perf_dump(&format!("osd.{o}"))?, "osd", name);
    }
    Ok(sum)
}

async fn check_reads(io: &IoCtx, acked: &Acked) -> anyhow::Result<()> {
    let want: Vec<(String, Bytes)> = acked
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in want {
        let got = io.read(&k, 0, 0).await?;
        anyhow::ensure!(
            got == v,
            "{k}: {} bytes read, {} acknowledged",
            got.len(),
            v.len()
        );
    }
    Ok(())
}

/// Writes new objects, rewrites and removes the hot ones until told to
/// stop; records every acknowledged write and removal.
fn start_writer(
    io: IoCtx,
    acked: Acked,
) -> (
    Arc<std::sync::atomic::AtomicBool>,
    tokio::task::JoinHandle<anyhow::Result<usize>>,
) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let h = tokio::spawn(async move {
        let mut n = 0;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            let i = (n * 7) % HOT;
            let hot = format!("hot-{i:03}");
            let exists = acked
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .contains_key(&hot);
            if n % 4 == 2 && exists {
                io.remove(&hot).await?;
                acked
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .remove(&hot);
            } else {
                let (k, v) = if n % 4 == 0 {
                    (format!("live-{n:05}"), content("live", n, 0))
                } else {
                    (hot, content("hot", i, n))
                };
                io.write_full(&k, v.clone()).await?;
                acked
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .insert(k, v);
            }
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(n)
    });
    (stop, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_pg_temp_out_in_and_resume() -> anyhow::Result<()> {
    let opts = ClusterOpts::default()
        .set("osd_recovery_sleep", RECOVERY_SLEEP)
        .set("osd_max_backfills", &MAX_BACKFILLS.to_string())
        .set("osd_backfill_scan_max", &SCAN_MAX.to_string());
    let mut c = Cluster::start(opts).await?;
    let (rados, io) = c.ready_pool(POOL, PG_NUM, SIZE, 2).await?;
    let pool = rados.osdmap().pool_by_name(POOL)?.id;
    let acked: Acked = Arc::default();
    for i in 0..OBJECTS {
        let (k, v) = (format!("obj-{i:04}"), content("obj", i, 0));
        io.write_full(&k, v.clone()).await?;
        acked
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(k, v);
    }
    for i in 0..HOT {
        let (k, v) = (format!("hot-{i:03}"), content("hot", i, 0));
        io.write_full(&k, v.clone()).await?;
        acked
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(k, v);
    }
    let before = pg_lines(&c).await?;
    let map = rados.osdmap();
    let pg_of =
        |name: &str| -> anyhow::Result<String> { Ok(map.object_to_pg(pool, name)?.to_string()) };

    // ---- 1. a fourth OSD joins ------------------------------------------
    let (stop, writer) = start_writer(io.clone(), acked.clone());
    let perf_before: BTreeMap<&str, u64> = [
        "backfill_ops",
        "backfill_bytes",
        "backfill_scans",
        "recovery_ops",
    ]
    .into_iter()
    .map(|n| Ok((n, perf_sum(&c, n)?)))
    .collect::<anyhow::Result<_>>()?;
    c.add_osds(4).await?;
    let (seen, after) =
        settle(&c, "osd.3 added", |l| l.values().any(|p| p.up.contains(&3))).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.await??;
    eprintln!("{writes} writes during the backfill");
    assert!(writes > 20, "the writer kept writing during the backfill");
    let gained: BTreeSet<String> = after
        .iter()
        .filter(|(_, l)| l.up.contains(&3))
        .map(|(pg, _)| pg.clone())
        .collect();
    assert!(
        gained.len() >= 6,
        "osd.3 takes a share of the PGs: {gained:?}"
    );
    for (pg, l) in &after {
        let temps = seen.temps.get(pg).cloned().unwrap_or_default();
        if gained.contains(pg) {
            let old: BTreeSet<u32> = before[pg].acting.iter().copied().collect();
            assert!(
                !temps.is_empty(),
                "{pg} (up {:?}) never had a pg_temp while osd.3 was backfilled",
                l.up
            );
            for t in &temps {
                assert_eq!(
                    t.iter().copied().collect::<BTreeSet<u32>>(),
                    old,
                    "{pg}: the pg_temp keeps the old holders acting"
                );
            }
            assert!(
                seen.had_state(pg, "remapped"),
                "{pg}: {:?}",
                seen.states[pg]
            );
            assert!(
                seen.had_state(pg, "backfilling") || seen.had_state(pg, "backfill_wait"),
                "{pg}: {:?}",
                seen.states[pg]
            );
            // Three whole copies stay acting: the backfilled objects are
            // misplaced, never degraded. The one exception is the writer's
            // write in flight when the interval changed: replicas drop a
            // replicated write of the old interval, so the new peering
            // finds it missing on them and recovers it (Ceph does the
            // same). That is at most one object, missing on the replicas.
            assert!(
                seen.misplaced[pg] > 0,
                "{pg}: no misplaced objects reported"
            );
            assert!(
                seen.degraded[pg] <= u64::from(WRITER_IN_FLIGHT * (SIZE - 1)),
                "{pg}: {} copies degraded while three copies were acting ({:?})",
                seen.degraded[pg],
                seen.states[pg]
            );
        } else {
            assert!(
                temps.is_empty(),
                "{pg} did not change, yet had pg_temp {temps:?}"
            );
            assert!(
                !seen.had_state(pg, "remapped"),
                "{pg}: {:?}",
                seen.states[pg]
            );
            assert_eq!(l.up, before[pg].up, "{pg}");
        }
    }
    strays_purged(&c, |h| h.iter().sum::<u64>() == 3 * PG_NUM as u64).await?;
    check_reads(&io, &acked).await?;

    // Every object written before osd.3 joined, in a PG that gained it, was
    // copied to it by backfill.
    let mut copied = 0u64;
    let mut copied_bytes = 0u64;
    for i in 0..OBJECTS {
        let k = format!("obj-{i:04}");
        if gained.contains(&pg_of(&k)?) {
            copied += 1;
            copied_bytes += content("obj", i, 0).len() as u64;
        }
    }
    let delta = |n: &str| -> anyhow::Result<u64> { Ok(perf_sum(&c, n)? - perf_before[n]) };
    let (ops, bytes, scans, rops) = (
        delta("backfill_ops")?,
        delta("backfill_bytes")?,
        delta("backfill_scans")?,
        delta("recovery_ops")?,
    );
    eprintln!("backfill_ops {ops} backfill_bytes {bytes} scans {scans} (>= {copied} objects, {copied_bytes} bytes)");
    assert!(
        ops >= copied,
        "backfill_ops {ops} < {copied} objects backfilled"
    );
    assert!(
        bytes >= copied_bytes,
        "backfill_bytes {bytes} < {copied_bytes}"
    );
    assert!(
        scans >= gained.len() as u64 * 2,
        "a local and a target scan per PG: {scans}"
    );
    assert!(
        rops >= ops,
        "backfill pushes count as recovery ops: {rops} < {ops}"
    );
    let osd3 = c.perf_dump("osd.3")?;
    assert!(counter(&osd3, "osd", "subop_push") >= copied, "{osd3}");
    let schema = c.admin("osd.0", "perf schema")?;
    assert_eq!(schema["osd"]["backfill_bytes"]["units"], json!("bytes"));
    assert_eq!(schema["osd"]["backfill_ops"]["type"], json!(10));
    let final_up: BTreeMap<String, Vec<u32>> = after
        .iter()
        .map(|(p, l)| (p.clone(), l.up.clone()))
        .collect();

    // ---- 2. osd out 0, then osd in 0 ------------------------------------
    c.mon_command(json!({"prefix": "osd out", "ids": ["0"]}))
        .await?;
    let (seen, _) = settle(&c, "osd.0 out", |l| l.values().all(|p| !p.up.contains(&0))).await?;
    let moved = final_up.values().filter(|up| up.contains(&0)).count();
    let remapped = final_up
        .iter()
        .filter(|(pg, _)| seen.had_state(pg, "remapped"))
        .count();
    assert!(
        remapped >= moved,
        "{moved} PGs lost osd.0, {remapped} were seen remapped"
    );
    strays_purged(&c, |h| h[0] == 0).await?;
    check_reads(&io, &acked).await?;
    c.mon_command(json!({"prefix": "osd in", "ids": ["0"]}))
        .await?;
    let (_, back) = settle(&c, "osd.0 in", |l| l.values().any(|p| p.up.contains(&0))).await?;
    let back_up: BTreeMap<String, Vec<u32>> = back
        .iter()
        .map(|(p, l)| (p.clone(), l.up.clone()))
        .collect();
    assert_eq!(back_up, final_up, "the same mapping as before osd out");
    strays_purged(&c, |h| h.iter().sum::<u64>() == 3 * PG_NUM as u64).await?;
    check_reads(&io, &acked).await?;

    // ---- 3. backfill of osd.3 resumes after a restart --------------------
    c.mon_command(json!({"prefix": "osd out", "ids": ["3"]}))
        .await?;
    settle(&c, "osd.3 out", |l| l.values().all(|p| !p.up.contains(&3))).await?;
    strays_purged(&c, |h| h[3] == 0).await?;
    // Objects osd.3 will hold again.
    let names: Vec<String> = acked
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .keys()
        .cloned()
        .collect();
    let mut target = 0u64;
    for k in &names {
        if final_up[&pg_of(k)?].contains(&3) {
            target += 1;
        }
    }
    let base = counter(&c.perf_dump("osd.3")?, "osd", "subop_push");
    c.mon_command(json!({"prefix": "osd in", "ids": ["3"]}))
        .await?;
    let first = wait_for(
        "osd.3 to be a third backfilled",
        Duration::from_secs(90),
        || async {
            let n = counter(&c.perf_dump("osd.3").ok()?, "osd", "subop_push") - base;
            (n >= target / 3).then_some(n)
        },
    )
    .await?;
    c.kill9("osd.3")?;
    // Pushes that arrived between the reading and the kill are not
    // counted: the bound below only gets stricter.
    let pushed_before = first;
    assert!(
        pushed_before + 2 * MAX_BACKFILLS * SCAN_MAX < target,
        "the kill came well before the end: {pushed_before} of {target}"
    );
    wait_for("osd.3 marked down", Duration::from_secs(60), || async {
        let up = c.osds_up().await.ok()?;
        up.contains(&(3, false)).then_some(())
    })
    .await?;
    c.restart_missing().await?;
    settle(&c, "osd.3 back", |l| {
        l.iter().all(|(pg, p)| p.up == final_up[pg])
    })
    .await?;
    let pushed_after = counter(&c.perf_dump("osd.3")?, "osd", "subop_push");
    // Rounds under way at the kill are redone; everything else is not.
    let slack = MAX_BACKFILLS * SCAN_MAX;
    eprintln!("osd.3 holds {target} objects: {pushed_before} pushed before the kill, {pushed_after} after");
    assert!(
        pushed_before + pushed_after <= target + slack,
        "backfill started over: {pushed_before} + {pushed_after} pushes for {target} objects"
    );
    strays_purged(&c, |h| h.iter().sum::<u64>() == 3 * PG_NUM as u64).await?;
    check_reads(&io, &acked).await?;

    // ---- offline: each object exactly on its acting set, byte for byte ---
    let mut expect = Placement::new();
    for (k, v) in acked
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .iter()
    {
        let obj = StoredObject {
            size: v.len() as u64,
            crc32c: Some(crc32c::crc32c(v)),
        };
        expect.insert(k.clone(), (final_up[&pg_of(k)?].clone(), obj));
    }
    rados.shutdown().await;
    for o in 0..c.osds {
        c.stop(&format!("osd.{o}"))?;
    }
    let mut held = BTreeMap::new();
    for o in 0..c.osds {
        held.insert(o, c.stored_objects(o, pool, true)?);
    }
    let problems = placement_problems(&held, &expect);
    assert!(
        problems.is_empty(),
        "{} problems: {:#?}",
        problems.len(),
        &problems[..problems.len().min(20)]
    );
    Ok(())
}
