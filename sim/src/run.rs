//! One seed's run: a cluster, writers, faults, then the check.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use kalmar_client::{ClientError, IoCtx};
use kalmar_osd::Stop;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::cluster::{Cluster, ClusterConfig};
use crate::model::{payload, record, slot_version, version_of, ObjectHistory, Violation};

/// The pool every run writes to.
const POOL: &str = "sim";

/// What one seed does.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub cluster: ClusterConfig,
    pub pg_num: u32,
    pub objects: u32,
    /// Writers at once (each owns the objects `o % writers == w`).
    pub writers: u32,
    /// How each version of an object is written.
    pub writes: Writes,
    /// Simulated time the writers and faults run.
    pub duration: Duration,
    /// Inject faults (OSD crashes and power cuts, partitions, cut links).
    pub faults: bool,
    /// Bound on reaching active+clean after the faults stop (simulated).
    pub settle_limit: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            cluster: ClusterConfig::default(),
            pg_num: 8,
            objects: 32,
            writers: 4,
            writes: Writes::Whole,
            duration: Duration::from_secs(60),
            faults: true,
            settle_limit: Duration::from_secs(600),
        }
    }
}

/// How the writers write each version of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// Version `v` replaces the whole object with its 4 KiB payload.
    Whole,
    /// Version `v` writes its own `record`-byte record at offset
    /// `(v - 1) * record`: objects grow and nothing is ever overwritten, so
    /// a copy that missed one write keeps the hole for good (no later
    /// version covers it), and small writes land inside store blocks.
    Records { record: usize },
}

impl Writes {
    /// The slot of an object's history that version `v` belongs to.
    fn slot(self, v: u64) -> usize {
        match self {
            Writes::Whole => 0,
            Writes::Records { .. } => v.saturating_sub(1) as usize,
        }
    }

    /// What each slot of object `o` holds in `data` (its bytes), for at
    /// least `slots` slots.
    fn decode(self, o: u32, data: &[u8], slots: usize) -> Vec<Result<Option<u64>, String>> {
        match self {
            Writes::Whole => vec![version_of(o, data)
                .map(Some)
                .ok_or_else(|| format!("{} bytes that are no version of it", data.len()))],
            Writes::Records { record } => {
                let n = slots.max(data.len().div_ceil(record));
                (0..n)
                    .map(|i| {
                        let from = (i * record).min(data.len());
                        let chunk = &data[from..(from + record).min(data.len())];
                        slot_version(o, i, chunk, record)
                    })
                    .collect()
            }
        }
    }

    /// Bytes to read to see `slots` slots and anything past them.
    fn read_len(self, slots: usize) -> u64 {
        match self {
            Writes::Whole => crate::model::OBJECT_BYTES as u64,
            Writes::Records { record } => ((slots + 1) * record) as u64,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub seed: u64,
    pub acked_writes: u64,
    pub unknown_writes: u64,
    pub faults: Vec<String>,
    pub violations: Vec<String>,
}

/// Runs `seed` on the current runtime (a current-thread one with paused
/// time makes it a simulation: see the crate documentation).
pub async fn run_seed(seed: u64, opts: &SimOptions) -> anyhow::Result<Report> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cluster = Cluster::start(seed, &opts.cluster)
        .await
        .context("starting the cluster")?;
    let size = opts.cluster.osds.min(3);
    cluster
        .mon_command(json!({
            "prefix": "osd pool create", "pool": POOL, "pg_num": opts.pg_num,
            "size": size, "min_size": size.div_ceil(2).max(1),
        }))
        .await?;
    cluster
        .wait_clean(opts.settle_limit)
        .await
        .context("the new pool")?;
    let client = cluster.client(0).await?;
    let io = client.ioctx(POOL)?;
    // Each object's histories, one per slot (see `Writes::slot`).
    let histories: Rc<RefCell<Histories>> =
        Rc::new(RefCell::new(vec![
            vec![ObjectHistory::default()];
            opts.objects as usize
        ]));
    let report = Rc::new(RefCell::new(Report {
        seed,
        ..Report::default()
    }));
    let stop_writers = Rc::new(std::cell::Cell::new(false));
    let mut writers = Vec::new();
    let local = tokio::task::LocalSet::new();
    for w in 0..opts.writers {
        let (io, h, r, stop) = (
            io.clone(),
            histories.clone(),
            report.clone(),
            stop_writers.clone(),
        );
        let shape = Shape {
            writers: opts.writers,
            objects: opts.objects,
            writes: opts.writes,
        };
        writers.push(local.spawn_local(async move {
            writer(w, shape, io, h, r, stop).await;
        }));
    }
    let faults_done = local
        .run_until(async {
            if opts.faults {
                inject_faults(&mut cluster, &mut rng, opts.duration, &report).await
            } else {
                tokio::time::sleep(opts.duration).await;
                Ok(())
            }
        })
        .await;
    faults_done?;
    // Every OSD back, the network whole: the cluster must settle.
    cluster.net.heal();
    for id in cluster.osd_ids() {
        if !cluster.running_osds().contains(&id) {
            cluster.start_osd(id)?;
        }
    }
    stop_writers.set(true);
    local
        .run_until(async {
            for w in writers {
                let _ = w.await;
            }
        })
        .await;
    cluster
        .wait_osds_up(opts.cluster.osds, opts.settle_limit)
        .await?;
    cluster
        .wait_clean(opts.settle_limit)
        .await
        .context("settling after the faults")?;
    // The writers are done: the histories are final.
    let histories = histories.borrow().clone();
    let read = check(&io, &histories, opts.writes, &report).await?;
    client.shutdown().await;
    cluster.stop_all().await?;
    // Replicas converged: every OSD holds each object as the client read
    // it (all OSDs are in every acting set when there are `size` of them).
    if opts.cluster.osds == size {
        check_replicas(&cluster, &read, opts.writes, size, &report)?;
    }
    let r = report.borrow().clone();
    Ok(r)
}

/// How the writers share the objects.
#[derive(Clone, Copy)]
struct Shape {
    writers: u32,
    objects: u32,
    writes: Writes,
}

/// Object -> slot -> what the client was told of the version(s) there.
type Histories = Vec<Vec<ObjectHistory>>;

/// Writes the versions of its objects in turn until told to stop.
async fn writer(
    w: u32,
    shape: Shape,
    io: IoCtx,
    histories: Rc<RefCell<Histories>>,
    report: Rc<RefCell<Report>>,
    stop: Rc<std::cell::Cell<bool>>,
) {
    let Shape {
        writers,
        objects,
        writes,
    } = shape;
    let mine: Vec<u32> = (0..objects).filter(|o| o % writers == w).collect();
    let mut next = vec![1u64; objects as usize];
    let mut i = 0;
    while !stop.get() && !mine.is_empty() {
        let o = mine[i % mine.len()];
        i += 1;
        let v = next[o as usize];
        next[o as usize] += 1;
        let res = match writes {
            Writes::Whole => {
                io.write_full(&object_name(o), Bytes::from(payload(o, v)))
                    .await
            }
            Writes::Records { record: len } => {
                let offset = (v - 1) * len as u64;
                io.write(&object_name(o), offset, Bytes::from(record(o, v, len)))
                    .await
            }
        };
        let mut all = histories.borrow_mut();
        let slot = writes.slot(v);
        let h = &mut all[o as usize];
        if h.len() <= slot {
            h.resize(slot + 1, ObjectHistory::default());
        }
        let at = slot;
        match res {
            Ok(_) => {
                h[at].acknowledged(v);
                report.borrow_mut().acked_writes += 1;
            }
            Err(e) => {
                tracing::debug!(
                    object = o,
                    version = v,
                    "write ended without an answer: {e}"
                );
                h[at].uncertain(v);
                report.borrow_mut().unknown_writes += 1;
            }
        }
    }
}

fn object_name(o: u32) -> String {
    format!("obj{o}")
}

/// Faults from the seed for `duration`, one at a time: an OSD crashed,
/// powered off, restarted or partitioned, two OSDs losing power together
/// (writes stop below min_size until they are back), connection resets.
async fn inject_faults(
    cluster: &mut Cluster,
    rng: &mut ChaCha8Rng,
    duration: Duration,
    report: &Rc<RefCell<Report>>,
) -> anyhow::Result<()> {
    let end = tokio::time::Instant::now() + duration;
    while tokio::time::Instant::now() < end {
        let pause = Duration::from_millis(rng.random_range(500..5_000));
        tokio::time::sleep(pause).await;
        let ids = cluster.osd_ids();
        let victim = ids[rng.random_range(0..ids.len())];
        let what = match rng.random_range(0..5) {
            4 if ids.len() >= 3 => {
                // Two OSDs lose power together (a shared circuit): every
                // acknowledged write still has its third copy, and the
                // two must come back from what their media kept.
                let other =
                    ids[(ids.iter().position(|&i| i == victim).unwrap_or(0) + 1) % ids.len()];
                cluster.stop_osd(victim, Stop::Crash, true).await?;
                cluster.stop_osd(other, Stop::Crash, true).await?;
                let down = Duration::from_millis(rng.random_range(100..20_000));
                tokio::time::sleep(down).await;
                cluster.start_osd(victim)?;
                cluster.start_osd(other)?;
                format!("osd.{victim} and osd.{other} lost power together for {down:?}")
            }
            0 => {
                let power = rng.random_bool(0.5);
                cluster.stop_osd(victim, Stop::Crash, power).await?;
                let down = Duration::from_millis(rng.random_range(100..30_000));
                tokio::time::sleep(down).await;
                cluster.start_osd(victim)?;
                format!(
                    "osd.{victim} {} for {down:?}",
                    if power { "lost power" } else { "crashed" }
                )
            }
            1 => {
                let others: Vec<_> = ids
                    .iter()
                    .filter(|&&i| i != victim)
                    .map(|&i| crate::cluster::osd_ip(i))
                    .collect();
                cluster
                    .net
                    .partition(&[crate::cluster::osd_ip(victim)], &others);
                let cut = Duration::from_millis(rng.random_range(100..30_000));
                tokio::time::sleep(cut).await;
                cluster.net.heal();
                format!("osd.{victim} cut off from its peers for {cut:?}")
            }
            2 => {
                let n = cluster.net.cut_host(crate::cluster::osd_ip(victim));
                format!("osd.{victim}'s {n} connections reset")
            }
            _ => {
                cluster.stop_osd(victim, Stop::Clean, false).await?;
                let down = Duration::from_millis(rng.random_range(100..10_000));
                tokio::time::sleep(down).await;
                cluster.start_osd(victim)?;
                format!("osd.{victim} restarted after {down:?}")
            }
        };
        tracing::info!(at = ?tokio::time::Instant::now(), "fault: {what}");
        report.borrow_mut().faults.push(what);
    }
    Ok(())
}

fn show(v: Option<u64>) -> String {
    v.map_or("nothing".into(), |v| format!("v{v}"))
}

/// Compares every OSD's copy of each object with what the client read
/// (`read[o][slot]`: the version there, None when absent).
fn check_replicas(
    cluster: &Cluster,
    read: &[Vec<Option<u64>>],
    writes: Writes,
    size: u32,
    report: &Rc<RefCell<Report>>,
) -> anyhow::Result<()> {
    let stored = cluster.stored_objects()?;
    let mut copies = vec![0u32; read.len()];
    let mut bad = Vec::new();
    for s in &stored {
        let Some(o) = s
            .name
            .strip_prefix("obj")
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|&o| (o as usize) < read.len())
        else {
            bad.push(format!(
                "osd.{} holds an unknown object {:?}",
                s.osd, s.name
            ));
            continue;
        };
        copies[o as usize] += 1;
        let want = &read[o as usize];
        for (slot, got) in writes
            .decode(o, &s.data, want.len())
            .into_iter()
            .enumerate()
        {
            let w = want.get(slot).copied().flatten();
            let at = match writes {
                Writes::Whole => String::new(),
                Writes::Records { .. } => format!(" slot {slot}"),
            };
            match got {
                Ok(v) if v == w => {}
                Ok(v) => bad.push(format!(
                    "osd.{} holds object {o}{at} at {} where the client read {}",
                    s.osd,
                    show(v),
                    show(w)
                )),
                Err(why) => bad.push(format!(
                    "osd.{} holds object {o}: {why} (the client read {})",
                    s.osd,
                    show(w)
                )),
            }
        }
    }
    for (o, (&n, r)) in copies.iter().zip(read).enumerate() {
        let want = if r.iter().any(Option::is_some) {
            size
        } else {
            0
        };
        if n != want {
            bad.push(format!("object {o} has {n} copies, not {want}"));
        }
    }
    report.borrow_mut().violations.extend(bad);
    Ok(())
}

/// Reads every object back and compares each slot with what the client
/// was told; returns what each slot held (None: absent or never written).
async fn check(
    io: &IoCtx,
    histories: &[Vec<ObjectHistory>],
    writes: Writes,
    report: &Rc<RefCell<Report>>,
) -> anyhow::Result<Vec<Vec<Option<u64>>>> {
    let mut read = Vec::with_capacity(histories.len());
    let never = ObjectHistory::default();
    for (o, hs) in histories.iter().enumerate() {
        let o = o as u32;
        let found = match io.read(&object_name(o), 0, writes.read_len(hs.len())).await {
            Ok(data) => writes.decode(o, &data, hs.len()),
            Err(ClientError::ObjectNotFound { .. }) => vec![Ok(None); hs.len()],
            Err(e) => bail!("reading object {o} after the cluster settled: {e}"),
        };
        let mut slots = Vec::with_capacity(found.len());
        for (slot, f) in found.into_iter().enumerate() {
            let h = hs.get(slot).unwrap_or(&never);
            let at = match writes {
                Writes::Whole => String::new(),
                Writes::Records { .. } => format!("slot {slot} "),
            };
            let (found, detail) = match f {
                Ok(v) => (
                    v,
                    format!("{at}{}", if v.is_none() { "absent" } else { "" }),
                ),
                Err(why) => {
                    let v = Violation {
                        object: o,
                        history: h.clone(),
                        found: None,
                        detail: why,
                    };
                    report.borrow_mut().violations.push(v.to_string());
                    slots.push(None);
                    continue;
                }
            };
            slots.push(found);
            if !h.allows(found) {
                let v = Violation {
                    object: o,
                    history: h.clone(),
                    found,
                    detail,
                };
                report.borrow_mut().violations.push(v.to_string());
            }
        }
        read.push(slots);
    }
    Ok(read)
}
