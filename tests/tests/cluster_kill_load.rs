//! kill -9 of one OSD of three under a steady write load (pool size 3,
//! min_size 2). Writers keep replacing objects and appending records while
//! osd.0 dies, while the PGs run degraded, and while it returns and is
//! recovered. Checked:
//!
//! - every writer is acknowledged again within [`RESUME_BOUND`] of the
//!   kill (heartbeat grace + failure report + new map + peering + margin);
//! - no acknowledged write is lost and no append is applied twice (each
//!   object reads back as its last acknowledged write; each record log as
//!   the acknowledged records in order);
//! - recovery brings every PG to active+clean, also for two objects
//!   written while osd.0 was down that are larger than any message may be
//!   (one pushed to osd.0, one pulled by it as primary): they travel in
//!   `osd_recovery_max_chunk` pieces;
//! - offline, each object is on all three OSDs, byte for byte (crc32c of
//!   the data, read by the objectstore tool).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kalmar_client::IoCtx;
use kalmar_tests::{placement_problems, wait_for, Cluster, ClusterOpts, Placement, StoredObject};

const POOL: &str = "load";
const PG_NUM: u32 = 16;
const WRITERS: usize = 4;
/// Objects each writer cycles through.
const KEYS: usize = 40;
/// Heartbeat grace of the cluster (seconds).
const GRACE_S: u64 = 4;
/// A writer must be acknowledged again this soon after the kill: the grace
/// (4 s), up to a heartbeat interval to notice (1 s), the mon's tick and
/// the new epoch (~1 s), peering and activation on a loaded 2-core
/// machine (a few seconds), and the client's resend on the new map;
/// 16 s in all.
const RESUME_BOUND: Duration = Duration::from_secs(GRACE_S + 12);
/// Client writes and recovery chunks of this size; the messenger's frame
/// bound is then its 64 MiB floor, below [`HUGE`].
const WRITE_MAX: usize = 4 << 20;
const HUGE: usize = 70 << 20;

fn huge(seed: usize) -> Bytes {
    Bytes::from(
        (0..HUGE)
            .map(|j| ((j / 4096 * 31 + j + seed) % 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn content(w: usize, n: usize) -> Bytes {
    let size = 512 + (w * 977 + n * 131) % 12000;
    Bytes::from(
        (0..size)
            .map(|j| ((w * 59 + n * 7 + j) % 253) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn record(w: usize, n: usize) -> Bytes {
    Bytes::from(format!("w{w}:{n:06};"))
}

/// What the writers were acknowledged.
#[derive(Default)]
struct Acks {
    /// Object -> its last acknowledged content.
    objects: BTreeMap<String, Bytes>,
    /// Writer -> its acknowledged appends, in order.
    logs: BTreeMap<usize, BytesMut>,
    /// Writer -> when each op was sent and when it was acknowledged.
    times: BTreeMap<usize, Vec<(Instant, Instant)>>,
}

type Shared = Arc<Mutex<Acks>>;

fn lock(a: &Shared) -> anyhow::Result<std::sync::MutexGuard<'_, Acks>> {
    a.lock().map_err(|_| anyhow::anyhow!("a writer panicked"))
}

/// One writer: alternately replaces one of its objects and appends a
/// record to its log, one op at a time; any error fails the test.
async fn writer(io: IoCtx, w: usize, acks: Shared, stop: Arc<AtomicBool>) -> anyhow::Result<usize> {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        if n % 2 == 0 {
            let (k, v) = (format!("w{w}-{:03}", (n / 2) % KEYS), content(w, n));
            io.write_full(&k, v.clone())
                .await
                .map_err(|e| anyhow::anyhow!("writer {w} op {n}: write_full {k}: {e}"))?;
            let mut a = lock(&acks)?;
            a.objects.insert(k, v);
            a.times.entry(w).or_default().push((sent, Instant::now()));
        } else {
            let (k, r) = (format!("log-{w}"), record(w, n));
            io.append(&k, r.clone())
                .await
                .map_err(|e| anyhow::anyhow!("writer {w} op {n}: append {k}: {e}"))?;
            let mut a = lock(&acks)?;
            a.logs.entry(w).or_default().extend_from_slice(&r);
            a.times.entry(w).or_default().push((sent, Instant::now()));
        }
        n += 1;
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_under_write_load() -> anyhow::Result<()> {
    let opts = ClusterOpts::default()
        .set("osd_heartbeat_grace", &GRACE_S.to_string())
        .set("osd_max_write_size", &WRITE_MAX.to_string())
        .set("osd_recovery_max_chunk", &WRITE_MAX.to_string());
    let c = Cluster::start(opts).await?;
    let (rados, io) = c.ready_pool(POOL, PG_NUM, 3, 2).await?;
    let map = rados.osdmap();
    let pool = map.pool_by_name(POOL)?.id;
    // Two huge objects: one in a PG osd.0 leads (it pulls), one it does not
    // (it is pushed to).
    let primary_of = |name: &str| -> anyhow::Result<i32> {
        Ok(map
            .pg_to_up_acting_osds(map.object_to_pg(pool, name)?)?
            .acting_primary)
    };
    let pick = |want0: bool| {
        (0..)
            .map(|i| format!("huge-{i}"))
            .find(|n| primary_of(n).is_ok_and(|p| (p == 0) == want0))
            .unwrap_or_default()
    };
    let huge_names = [pick(true), pick(false)];

    let acks: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(io.clone(), w, acks.clone(), stop.clone())))
        .collect();

    // Steady state, then the kill.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = lock(&acks)?.times.values().map(Vec::len).sum::<usize>();
    assert!(before > 20, "the writers write: {before} acks in 3 s");
    c.kill9("osd.0")?;
    let killed = Instant::now();
    // Resumed: an op sent after the kill is acknowledged, for every writer.
    let resumed = |a: &Acks, w: usize| {
        a.times
            .get(&w)
            .and_then(|t| t.iter().find(|(sent, _)| *sent > killed))
            .map(|(_, acked)| *acked - killed)
    };
    wait_for(
        "every writer to be acknowledged after the kill",
        RESUME_BOUND + Duration::from_secs(30),
        || async {
            let a = lock(&acks).ok()?;
            (0..WRITERS).all(|w| resumed(&a, w).is_some()).then_some(())
        },
    )
    .await?;
    {
        let a = lock(&acks)?;
        for w in 0..WRITERS {
            let r = resumed(&a, w).unwrap_or(Duration::MAX);
            eprintln!(
                "writer {w}: resumed {:.1} s after the kill",
                r.as_secs_f64()
            );
            assert!(
                r <= RESUME_BOUND,
                "writer {w} resumed {:.1} s after the kill (bound {} s)",
                r.as_secs_f64(),
                RESUME_BOUND.as_secs()
            );
        }
    }
    c.wait_pgs(
        1,
        PG_NUM,
        &["active", "undersized", "degraded"],
        Duration::from_secs(60),
    )
    .await?;
    // Degraded writes for a while (and the huge objects), then osd.0
    // returns while they go on.
    for (seed, name) in huge_names.iter().enumerate() {
        let v = huge(seed);
        for (i, piece) in v.chunks(WRITE_MAX).enumerate() {
            io.write(name, (i * WRITE_MAX) as u64, v.slice_ref(piece))
                .await?;
        }
        lock(&acks)?.objects.insert(name.clone(), v);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.restart_missing().await?;
    c.wait_pgs(1, PG_NUM, &["active", "clean"], Duration::from_secs(120))
        .await?;
    let d = c.perf_dump("osd.0")?;
    assert!(
        kalmar_tests::counter(&d, "osd", "subop_push_in_bytes") >= HUGE as u64 * 2,
        "both huge objects reached osd.0 by recovery: {}",
        d["osd"]
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    eprintln!("{total} ops acknowledged in all");

    // Nothing acknowledged is lost; nothing applied twice.
    let a = std::mem::take(&mut *lock(&acks)?);
    for (k, v) in &a.objects {
        // In pieces: one reply may not exceed the messenger's frame bound.
        let mut got = BytesMut::new();
        while got.len() < v.len() {
            let piece = io.read(k, got.len() as u64, WRITE_MAX as u64).await?;
            if piece.is_empty() {
                break;
            }
            got.extend_from_slice(&piece);
        }
        assert!(
            got == *v,
            "{k}: {} bytes read, the last ack was {} bytes",
            got.len(),
            v.len()
        );
    }
    for (w, log) in &a.logs {
        let got = io.read(&format!("log-{w}"), 0, 0).await?;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(log),
            "log-{w}: each acknowledged append exactly once, in order"
        );
    }

    // Offline: every object on all three OSDs, byte for byte.
    let mut expect = Placement::new();
    let all = || vec![0, 1, 2];
    for (k, v) in &a.objects {
        let obj = StoredObject {
            size: v.len() as u64,
            crc32c: Some(crc32c::crc32c(v)),
        };
        expect.insert(k.clone(), (all(), obj));
    }
    for (w, log) in &a.logs {
        let obj = StoredObject {
            size: log.len() as u64,
            crc32c: Some(crc32c::crc32c(log)),
        };
        expect.insert(format!("log-{w}"), (all(), obj));
    }
    rados.shutdown().await;
    for o in 0..3 {
        c.stop(&format!("osd.{o}"))?;
    }
    let mut held = BTreeMap::new();
    for o in 0..3 {
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
