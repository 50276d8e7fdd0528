//! `runtime_probe`: which runtime for the OSD shards (issue 11)?
//!
//! One workload shaped like one OSD shard serving one client, on three
//! runtimes: (a) `tokio-ring`: a current-thread tokio runtime plus our own
//! io-uring 0.7 ring whose completions wake the runtime through an eventfd
//! in `AsyncFd`; (b) `compio` (0.19) with its own net and file APIs;
//! (c) `tokio-uring` (0.5). A server thread accepts one loopback TCP
//! connection; a client thread (plain blocking sockets, the same for every
//! variant) sends 4 KiB requests at a fixed queue depth; the server writes
//! each request's 4 KiB with O_DIRECT and DSYNC (a FUA write) at a random
//! aligned offset of a filled file, or skips the disk with `--no-disk`,
//! then sends a 64-byte reply.
//!
//! Reported per variant, medians of `--rounds` runs taken in rotating
//! order in one process: requests/s, mean latency, the server thread's CPU
//! per request (RUSAGE_THREAD), the server side's CPU per request (the
//! whole process less the client thread: io_uring's io-wq workers count
//! here), context switches and heap allocations per request, and the
//! ratios of rate and CPU to (a).
//!
//!   runtime_probe --file /tmp/probe.dat --file-size 1G --qd 1,32 --rounds 5 --seconds 5

mod common;
mod compio_rt;
mod tokio_ring;
mod tokio_uring_rt;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

use kalmar_common::alloc_count::{snapshot, CountingAlloc};

use common::{
    process_usage, thread_usage, DiskTarget, ServeStats, Usage, REPLY_BYTES, REQUEST_BYTES,
};

// Counts the heap allocations of each run (the client allocates only
// before its loop, so they are the server side's).
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[derive(Parser, Debug)]
#[command(
    name = "runtime_probe",
    about = "Runtime choice for the OSD shards: one shard's workload on three runtimes"
)]
struct Args {
    /// Variants to run, in this order within a round (rotated each round).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "tokio-ring,compio,tokio-uring"
    )]
    variants: Vec<Variant>,
    /// Queue depths (requests the client keeps outstanding).
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    qd: Vec<usize>,
    /// Runs of each variant per queue depth.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// The data file (created and filled to --file-size when smaller).
    #[arg(long, default_value = "/tmp/kalmar-runtime-probe.dat")]
    file: PathBuf,
    /// Size of the data file, in MiB.
    #[arg(long, default_value_t = 1024)]
    file_size_mib: u64,
    /// Reply without writing to disk (network and runtime cost alone).
    #[arg(long)]
    no_disk: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Variant {
    TokioRing,
    Compio,
    TokioUring,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::TokioRing => "(a) tokio + own ring",
            Variant::Compio => "(b) compio 0.19",
            Variant::TokioUring => "(c) tokio-uring 0.5",
        }
    }

    fn serve(self, l: TcpListener, disk: Option<DiskTarget>) -> std::io::Result<ServeStats> {
        match self {
            Variant::TokioRing => tokio_ring::serve(l, disk),
            Variant::Compio => compio_rt::serve(l, disk),
            Variant::TokioUring => tokio_uring_rt::serve(l, disk),
        }
    }
}

/// The figures of one run.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    req_per_s: f64,
    mean_lat_us: f64,
    thread_cpu_us: f64,
    side_cpu_us: f64,
    thread_csw: f64,
    side_csw: f64,
    allocs: f64,
}

/// How long the client waits for a reply before calling the run failed.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

struct ClientRun {
    replies: u64,
    elapsed_s: f64,
    latency_sum_us: f64,
}

/// Keeps `qd` requests outstanding until `seconds` have passed, each
/// request carrying its slot so the reply finds its send time.
fn run_client(addr: SocketAddr, qd: usize, seconds: f64) -> Result<ClientRun> {
    let mut s = TcpStream::connect(addr).context("connect")?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(REPLY_TIMEOUT))?;
    let mut req = vec![0xA5u8; REQUEST_BYTES];
    let mut reply = [0u8; REPLY_BYTES];
    let start = Instant::now();
    let mut sent_at = vec![start; qd];
    for (slot, at) in sent_at.iter_mut().enumerate() {
        req[..8].copy_from_slice(&(slot as u64).to_le_bytes());
        *at = Instant::now();
        s.write_all(&req)?;
    }
    let deadline = start + Duration::from_secs_f64(seconds);
    let (mut replies, mut latency_sum_us) = (0u64, 0f64);
    let elapsed_s = loop {
        s.read_exact(&mut reply).context("reply")?;
        let slot = common::request_slot(&reply) as usize;
        let now = Instant::now();
        let Some(at) = sent_at.get_mut(slot) else {
            bail!("reply for unknown slot {slot}");
        };
        latency_sum_us += now.duration_since(*at).as_secs_f64() * 1e6;
        replies += 1;
        if now >= deadline {
            break now.duration_since(start).as_secs_f64();
        }
        *at = now;
        req[..8].copy_from_slice(&(slot as u64).to_le_bytes());
        s.write_all(&req)?;
    };
    for _ in 1..qd {
        s.read_exact(&mut reply).context("draining replies")?;
    }
    s.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)?;
    Ok(ClientRun {
        replies,
        elapsed_s,
        latency_sum_us,
    })
}

fn run_once(v: Variant, qd: usize, seconds: f64, disk: Option<DiskTarget>) -> Result<Figures> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (proc0, me0, allocs0) = (process_usage(), thread_usage(), snapshot());
    let server = std::thread::Builder::new()
        .name("probe-server".into())
        .spawn(move || v.serve(listener, disk))?;
    let client = run_client(addr, qd, seconds);
    let served = server
        .join()
        .map_err(|_| anyhow::anyhow!("server thread panicked"))?
        .with_context(|| format!("{} server", v.name()))?;
    let client = client?;
    // Everything but the client thread: the server thread and any helper
    // threads the runtime or the kernel (io-wq) used.
    let side: Usage = process_usage()
        .minus(&proc0)
        .minus(&thread_usage().minus(&me0));
    let allocs = snapshot().since(&allocs0).allocations;
    let n = served.requests.max(1) as f64;
    Ok(Figures {
        req_per_s: client.replies as f64 / client.elapsed_s,
        mean_lat_us: client.latency_sum_us / client.replies.max(1) as f64,
        thread_cpu_us: served.thread.cpu_us / n,
        side_cpu_us: side.cpu_us / n,
        thread_csw: (served.thread.voluntary_csw + served.thread.involuntary_csw) / n,
        side_csw: (side.voluntary_csw + side.involuntary_csw) / n,
        allocs: allocs as f64 / n,
    })
}

/// Creates the file and writes it whole, so block allocation stays out of
/// the measurement (a sparse file halves direct-write rates). Filled with
/// direct writes and its cached pages dropped, as `dd oflag=direct` does
/// for the main job, so every run starts from the same state.
fn prepare_file(path: &PathBuf, size_mib: u64) -> Result<DiskTarget> {
    let want = size_mib * 1024 * 1024;
    let have = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if have < want {
        eprintln!("runtime_probe: filling {} ({size_mib} MiB)", path.display());
        common::fill_direct(path, size_mib)?;
    }
    common::drop_cached_pages(path)?;
    Ok(DiskTarget {
        path: path.clone(),
        blocks: want / common::DIRECT_ALIGN as u64,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn print_table(qd: usize, variants: &[Variant], runs: &[Vec<Figures>]) {
    let med = |i: usize, f: fn(&Figures) -> f64| median(runs[i].iter().map(f).collect());
    println!(
        "{:<22} {:>9} {:>15} {:>6} {:>9} {:>8} {:>6} {:>8} {:>6} {:>8} {:>8}",
        "variant",
        "req/s",
        "(min-max)",
        "x(a)",
        "lat us",
        "thr us",
        "x(a)",
        "side us",
        "x(a)",
        "thr csw",
        "side csw"
    );
    let base_rate = med(0, |f| f.req_per_s);
    let base_thr = med(0, |f| f.thread_cpu_us);
    let base_side = med(0, |f| f.side_cpu_us);
    for (i, v) in variants.iter().enumerate() {
        let rates: Vec<f64> = runs[i].iter().map(|f| f.req_per_s).collect();
        let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rates.iter().copied().fold(0.0, f64::max);
        let (rate, thr, side) = (
            med(i, |f| f.req_per_s),
            med(i, |f| f.thread_cpu_us),
            med(i, |f| f.side_cpu_us),
        );
        println!(
            "{:<22} {:>9.0} {:>15} {:>6.2} {:>9.1} {:>8.1} {:>6.2} {:>8.1} {:>6.2} {:>8.2} {:>8.2} {:>7.2}",
            v.name(),
            rate,
            format!("({lo:.0}-{hi:.0})"),
            rate / base_rate,
            med(i, |f| f.mean_lat_us),
            thr,
            thr / base_thr,
            side,
            side / base_side,
            med(i, |f| f.thread_csw),
            med(i, |f| f.side_csw),
            med(i, |f| f.allocs),
        );
    }
    println!(
        "(QD {qd}; medians of {} runs each)",
        runs.first().map_or(0, |r| r.len())
    );
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.variants.is_empty() || args.rounds == 0 {
        bail!("nothing to run");
    }
    let disk = if args.no_disk {
        None
    } else {
        Some(prepare_file(&args.file, args.file_size_mib)?)
    };
    println!(
        "runtime_probe: {}; {} rounds x {} s per variant and queue depth",
        match &disk {
            None => "no disk (reply at once)".to_string(),
            Some(d) => format!("4 KiB O_DIRECT+DSYNC writes to {}", d.path.display()),
        },
        args.rounds,
        args.seconds
    );
    println!(
        "columns: thr = server thread, side = process less the client thread; \
         us (CPU), csw (context switches) and allocs (heap allocations) per request"
    );
    for &qd in &args.qd {
        let load_before = loadavg();
        let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); args.variants.len()];
        for round in 0..args.rounds {
            for k in 0..args.variants.len() {
                let i = (round + k) % args.variants.len();
                let v = args.variants[i];
                let f = run_once(v, qd, args.seconds, disk.clone())?;
                eprintln!(
                    "  QD{qd} round {round} {:<22} {:>8.0} req/s {:>7.1} us/req",
                    v.name(),
                    f.req_per_s,
                    f.side_cpu_us
                );
                runs[i].push(f);
            }
        }
        println!("\nload average before: {load_before}; after: {}", loadavg());
        print_table(qd, &args.variants, &runs);
    }
    Ok(())
}
