//! `kalmar-objectstore-bench`: fio-like jobs straight against a local
//! ObjectStore (no network, no NBD), writing fio-shaped JSON so that
//! `benches/bench_report.py` prints them next to fio's raw-device rows.
//!
//! The store is laid out as a block image: objects of `--object-size`
//! bytes (default 4 MiB, like an RBD image) covering `--size` bytes, all
//! written once (prefill) before any job, as fio's files are. The store's
//! engine runs as an `EngineDriver` task on one current-thread tokio
//! runtime, and each in-flight I/O is a task on the same thread (the way
//! the OSD's shards and `kalmar-nbd --store` use the store): a write is a
//! transaction from admission to its durable commit, a read goes through
//! the engine's ring.
//!
//!   kalmar-objectstore-bench --device /dev/loop1 --db /tmp/os.db --size 2G \
//!     --runtime 20 --ramp 2 --out-dir results/objectstore --mkfs

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use kalmar_objectstore::{
    device::{aligned_bytes, AlignedBuf},
    Bytes, CollectionId, CommitDriver, Drive, MkfsOptions, MountOptions, ObjectId, ObjectStore,
    Transaction,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "kalmar-objectstore-bench",
    about = "fio-like jobs against a local Kalmar ObjectStore"
)]
struct Args {
    /// Block device or file for the store.
    #[arg(long)]
    device: PathBuf,
    /// Metadata database directory.
    #[arg(long)]
    db: PathBuf,
    /// Bytes of the image the jobs use (like fio's size=).
    #[arg(long, value_parser = parse_size)]
    size: u64,
    /// Bytes per object.
    #[arg(long, value_parser = parse_size, default_value = "4M")]
    object_size: u64,
    /// Measured seconds per job.
    #[arg(long, default_value_t = 20)]
    runtime: u64,
    /// Seconds run before measuring.
    #[arg(long, default_value_t = 2)]
    ramp: u64,
    /// Jobs to run, in order (fio job names).
    #[arg(
        long,
        value_delimiter = ' ',
        default_value = "seqwrite-1m randwrite-4k-qd1 randwrite-4k-qd32"
    )]
    jobs: Vec<String>,
    /// Where to write <job>.json.
    #[arg(long)]
    out_dir: PathBuf,
    /// Append "<target> <job> <cpu seconds>" lines here, and "<target>
    /// <job> <allocations> <context switches>" to daemon.tsv beside it.
    #[arg(long)]
    cpu_tsv: Option<PathBuf>,
    /// Target name in cpu_tsv.
    #[arg(long, default_value = "objectstore")]
    target: String,
    /// Format the device first (destroys what is on it).
    #[arg(long)]
    mkfs: bool,
    /// Journal size for --mkfs.
    #[arg(long, value_parser = parse_size)]
    journal_size: Option<u64>,
    /// Journal sector for --mkfs (default: the device's preference).
    #[arg(long)]
    journal_sector: Option<u32>,
    /// Store setting commit_pipeline_depth (default: the store's).
    #[arg(long)]
    pipeline_depth: Option<usize>,
    /// Store setting deferred_max_bytes (default: the store's).
    #[arg(long, value_parser = parse_size)]
    deferred_max_bytes: Option<u64>,
    /// Store setting max_batch_txns (default: the store's).
    #[arg(long)]
    max_batch_txns: Option<usize>,
    /// Store setting kv.read_cache_bytes (default: the store's; 0 is off).
    #[arg(long, value_parser = parse_size)]
    read_cache_bytes: Option<u64>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.chars().last() {
        Some('K') | Some('k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') | Some('m') => (&s[..s.len() - 1], 1 << 20),
        Some('G') | Some('g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|e| format!("{s}: {e}"))
}

struct Job {
    name: String,
    write: bool,
    random: bool,
    block_bytes: u64,
    depth: usize,
}

fn job(name: &str) -> Result<Job> {
    let (write, random, block_bytes, depth) = match name {
        "seqwrite-1m" => (true, false, 1 << 20, 4),
        "randwrite-4k-qd1" => (true, true, 4096, 1),
        "randwrite-4k-qd32" => (true, true, 4096, 32),
        "randread-4k-qd1" => (false, true, 4096, 1),
        "randread-4k-qd32" => (false, true, 4096, 32),
        "seqread-1m" => (false, false, 1 << 20, 4),
        other => bail!("unknown job {other}"),
    };
    Ok(Job {
        name: name.to_string(),
        write,
        random,
        block_bytes,
        depth,
    })
}

/// Maps image offsets to (object, offset in object).
struct Image {
    cid: CollectionId,
    names: Vec<ObjectId>,
    object_bytes: u64,
    size: u64,
}

impl Image {
    fn locate(&self, off: u64) -> (&ObjectId, u64) {
        (
            &self.names[(off / self.object_bytes) as usize],
            off % self.object_bytes,
        )
    }
}

/// Latency samples and counts of the measured window.
#[derive(Default)]
struct Stats {
    lat_us: Vec<u32>,
    bytes: u64,
}

/// Hands out offsets: sequential (wrapping) or uniformly random, aligned.
struct Offsets {
    next: AtomicU64,
    size: u64,
    bs: u64,
    random: bool,
}

impl Offsets {
    fn take(&self, rng: &mut ChaCha8Rng) -> u64 {
        let blocks = self.size / self.bs;
        if self.random {
            rng.random_range(0..blocks) * self.bs
        } else {
            (self.next.fetch_add(1, Ordering::Relaxed) % blocks) * self.bs
        }
    }
}

// Allocations per I/O for the report (the load generator's own tasks are
// counted too: they run in this process).
#[global_allocator]
static ALLOC: kalmar_common::alloc_count::CountingAlloc = kalmar_common::alloc_count::CountingAlloc;

/// CPU seconds and context switches (voluntary + involuntary) of the
/// whole process, exited threads included.
fn process_usage() -> (f64, u64) {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (
        t(ru.ru_utime) + t(ru.ru_stime),
        (ru.ru_nvcsw + ru.ru_nivcsw) as u64,
    )
}

/// Runs `depth` tasks of writes (or reads) on the current runtime until
/// `stop`; samples only while `measuring`.
async fn run_job(
    engine: &Arc<CommitDriver>,
    img: &Arc<Image>,
    j: &Job,
    offs: &Arc<Offsets>,
    measuring: &Arc<AtomicBool>,
    stop: &Arc<AtomicBool>,
) -> Result<Stats> {
    // Aligned, as fio's own I/O buffers are: the store writes big ones
    // without a copy.
    let payload = aligned_payload(0x5a, j.block_bytes as usize);
    let mut tasks = Vec::new();
    for t in 0..j.depth {
        let (engine, img, offs, measuring, stop, payload) = (
            engine.clone(),
            img.clone(),
            offs.clone(),
            measuring.clone(),
            stop.clone(),
            payload.clone(),
        );
        let (write, bs) = (j.write, j.block_bytes);
        tasks.push(tokio::spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(t as u64 + if write { 1 } else { 100 });
            let mut st = Stats::default();
            while !stop.load(Ordering::Relaxed) {
                let (o, within) = img.locate(offs.take(&mut rng));
                let t0 = Instant::now();
                if write {
                    let mut txn = Transaction::new();
                    txn.write(&img.cid, o, within, payload.clone());
                    engine.commit(txn).await?;
                } else {
                    let got = engine.read(&img.cid, o, within, bs).await?;
                    if got.len() as u64 != bs {
                        bail!("short read: {} of {bs}", got.len());
                    }
                }
                if measuring.load(Ordering::Relaxed) {
                    st.lat_us
                        .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    st.bytes += bs;
                }
            }
            Ok::<Stats, anyhow::Error>(st)
        }));
    }
    let mut all = Stats::default();
    for t in tasks {
        let st = t.await??;
        all.lat_us.extend(st.lat_us);
        all.bytes += st.bytes;
    }
    Ok(all)
}

/// `len` bytes of `fill` in an aligned buffer.
fn aligned_payload(fill: u8, len: usize) -> Bytes {
    let mut b = AlignedBuf::zeroed(len);
    b.fill(fill);
    aligned_bytes(b)
}

/// Writes every object once, 1 MiB at a time, 8 in flight.
async fn prefill(engine: &Arc<CommitDriver>, img: &Image) -> Result<()> {
    let chunk = 1u64 << 20;
    let data = aligned_payload(0xa5, chunk as usize);
    let mut pending = tokio::task::JoinSet::new();
    let mut off = 0;
    while off < img.size {
        let (o, within) = img.locate(off);
        let len = chunk.min(img.object_bytes - within).min(img.size - off);
        let mut t = Transaction::new();
        t.write(&img.cid, o, within, data.slice(..len as usize));
        let engine = engine.clone();
        pending.spawn(async move { engine.commit(t).await });
        if pending.len() >= 8 {
            if let Some(r) = pending.join_next().await {
                r??;
            }
        }
        off += len;
    }
    while let Some(r) = pending.join_next().await {
        r??;
    }
    Ok(())
}

fn fio_json(j: &Job, st: &mut Stats, runtime: Duration) -> serde_json::Value {
    st.lat_us.sort_unstable();
    let n = st.lat_us.len() as u64;
    let mean_ns = if n == 0 {
        0.0
    } else {
        st.lat_us.iter().map(|&x| x as f64).sum::<f64>() * 1000.0 / n as f64
    };
    let pct = |p: f64| -> u64 {
        if n == 0 {
            return 0;
        }
        let i = ((p / 100.0) * (n as f64 - 1.0)).round() as usize;
        st.lat_us[i] as u64 * 1000
    };
    let secs = runtime.as_secs_f64();
    let side = json!({
        "io_bytes": st.bytes,
        "bw_bytes": (st.bytes as f64 / secs) as u64,
        "iops": n as f64 / secs,
        "runtime": (secs * 1000.0) as u64,
        "total_ios": n,
        "lat_ns": {"mean": mean_ns},
        "clat_ns": {"mean": mean_ns, "percentile": {
            "50.000000": pct(50.0), "99.000000": pct(99.0), "99.900000": pct(99.9)}},
    });
    let empty = json!({"io_bytes": 0, "bw_bytes": 0, "iops": 0.0, "runtime": 0, "total_ios": 0,
        "lat_ns": {"mean": 0.0}, "clat_ns": {"mean": 0.0, "percentile": {}}});
    let (read, write) = if j.write {
        (empty, side)
    } else {
        (side, empty)
    };
    json!({"fio version": "kalmar-objectstore-bench", "jobs": [{
        "jobname": j.name, "error": 0, "read": read, "write": write}]})
}

fn main() -> Result<()> {
    let args = Args::parse();
    let _ = kalmar_common::logging::init("warn", None);
    let jobs = args
        .jobs
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| job(s))
        .collect::<Result<Vec<_>>>()?;
    if args.mkfs {
        let mut o = MkfsOptions::new(uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        o.force = true;
        o.db_path = Some(args.db.clone());
        o.journal_bytes = args.journal_size;
        o.journal_sector = args.journal_sector;
        ObjectStore::mkfs(&args.device, &o)
            .with_context(|| format!("mkfs {}", args.device.display()))?;
    }
    let mut mo = MountOptions {
        db_path: Some(args.db.clone()),
        ..MountOptions::default()
    };
    if let Some(d) = args.pipeline_depth {
        mo.settings.commit_pipeline_depth = d;
    }
    if let Some(b) = args.read_cache_bytes {
        mo.settings.kv.read_cache_bytes = b as usize;
    }
    if let Some(n) = args.max_batch_txns {
        mo.settings.max_batch_txns = n;
    }
    if let Some(b) = args.deferred_max_bytes {
        mo.settings.deferred_max_bytes = b;
    }
    mo.settings.drive = Drive::External;
    let store = Arc::new(ObjectStore::mount(&args.device, &mo).context("mount")?);
    let drivers: Vec<Arc<CommitDriver>> = store
        .take_engines()?
        .into_iter()
        .map(|e| CommitDriver::new(e, None))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (result, engines) = rt.block_on(async {
        let tasks: Vec<_> = drivers
            .iter()
            .map(|d| tokio::spawn(d.clone().drive_commits()))
            .collect();
        let result = bench(&args, &store, &drivers, &jobs).await;
        let mut engines = Vec::new();
        for (d, t) in drivers.iter().zip(tasks) {
            engines.extend(d.stop().await);
            if let Ok(Err(e)) = t.await {
                eprintln!("objectstore-bench: the engine could not be driven: {e}");
            }
        }
        (result, engines)
    });
    store.return_engines(engines);
    store.umount()?;
    result
}

/// Prefills the image, then runs the jobs and writes their results.
async fn bench(
    args: &Args,
    store: &Arc<ObjectStore>,
    drivers: &[Arc<CommitDriver>],
    jobs: &[Job],
) -> Result<()> {
    let cid = CollectionId::new("bench")?;
    let count = args.size.div_ceil(args.object_size);
    let names = (0..count)
        .map(|i| ObjectId::new(format!("rbd_data.{i:016x}").into_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let img = Arc::new(Image {
        cid: cid.clone(),
        names,
        object_bytes: args.object_size,
        size: args.size,
    });
    let engine = drivers
        .get(store.engine_of(&cid))
        .context("no driver for the image's engine")?;
    if !store.collection_exists(&cid)? {
        let mut t = Transaction::new();
        t.create_collection(&cid);
        engine.commit(t).await?;
    }
    let t0 = Instant::now();
    prefill(engine, &img).await?;
    eprintln!(
        "objectstore-bench: prefilled {} bytes in {:.1}s",
        args.size,
        t0.elapsed().as_secs_f64()
    );
    std::fs::create_dir_all(&args.out_dir)?;
    for j in jobs {
        let offs = Arc::new(Offsets {
            next: AtomicU64::new(0),
            size: args.size,
            bs: j.block_bytes,
            random: j.random,
        });
        let measuring = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let perf = store.perf_counters();
        let timer = {
            let (measuring, stop, perf) = (measuring.clone(), stop.clone(), perf.clone());
            let (ramp, runtime) = (
                Duration::from_secs(args.ramp),
                Duration::from_secs(args.runtime),
            );
            std::thread::spawn(move || {
                std::thread::sleep(ramp);
                perf.reset();
                let (cpu0, csw0) = process_usage();
                let allocs0 = kalmar_common::alloc_count::snapshot();
                let start = Instant::now();
                measuring.store(true, Ordering::Relaxed);
                std::thread::sleep(runtime);
                measuring.store(false, Ordering::Relaxed);
                let elapsed = start.elapsed();
                let (cpu1, csw1) = process_usage();
                let allocs = kalmar_common::alloc_count::snapshot().since(&allocs0);
                let dump = perf.dump();
                stop.store(true, Ordering::Relaxed);
                (
                    elapsed,
                    cpu1 - cpu0,
                    dump,
                    (allocs.allocations, csw1 - csw0),
                )
            })
        };
        let mut st = run_job(engine, &img, j, &offs, &measuring, &stop).await?;
        let (elapsed, cpu, dump, (allocs, csw)) = timer
            .join()
            .map_err(|_| anyhow::anyhow!("timer thread panicked"))?;
        let doc = fio_json(j, &mut st, elapsed);
        std::fs::write(
            args.out_dir.join(format!("{}.json", j.name)),
            serde_json::to_string_pretty(&doc)?,
        )?;
        if let Some(p) = &args.cpu_tsv {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?;
            writeln!(f, "{} {} {cpu}", args.target, j.name)?;
            // Beside cpu.tsv, as scripts/bench.sh writes it for daemons.
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p.with_file_name("daemon.tsv"))?;
            writeln!(f, "{} {} {allocs} {csw}", args.target, j.name)?;
        }
        let side = if j.write {
            &doc["jobs"][0]["write"]
        } else {
            &doc["jobs"][0]["read"]
        };
        eprintln!(
            "objectstore-bench: {}: {:.0} IOPS, {:.1} MiB/s, mean {:.0} us, p99 {} us, CPU {:.1} us/IO; txns/record {:.1}, journal write {:.0} us, kv commit {:.0} us",
            j.name,
            side["iops"].as_f64().unwrap_or(0.0),
            side["bw_bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64,
            side["lat_ns"]["mean"].as_f64().unwrap_or(0.0) / 1000.0,
            side["clat_ns"]["percentile"]["99.000000"].as_u64().unwrap_or(0) / 1000,
            cpu * 1e6 / side["total_ios"].as_f64().unwrap_or(1.0).max(1.0),
            avg(&dump["group_commit_txns"], false),
            avg(&dump["journal_write_lat"], true),
            avg(&dump["kv_commit_lat"], true),
        );
        eprintln!("objectstore-bench: {} perf: {}", j.name, dump);
    }
    Ok(())
}

/// Mean of a perf avg counter (microseconds for time averages).
fn avg(v: &serde_json::Value, time: bool) -> f64 {
    let n = v["avgcount"].as_f64().unwrap_or(0.0);
    if n == 0.0 {
        return 0.0;
    }
    let s = v["sum"].as_f64().unwrap_or(0.0);
    if time {
        s / n * 1e6
    } else {
        s / n
    }
}
