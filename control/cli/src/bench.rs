//! `kalmar rados -p POOL bench SECONDS write -b SIZE -t CONCURRENCY`:
//! object writes with CONCURRENCY in flight for SECONDS, printed in the
//! shape of Ceph's `rados bench` (a line per second, then the summary).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kalmar_client::IoCtx;
use parking_lot::Mutex;
use serde_json::{json, Value};

/// Bench settings.
#[derive(Debug, Clone)]
pub struct BenchOpts {
    pub seconds: u64,
    pub block_size: u64,
    pub concurrency: usize,
    pub cleanup: bool,
    pub prefix: String,
    /// Stop after this many objects (0: no limit).
    pub max_objects: u64,
}

/// The summary, with Ceph's JSON keys.
#[derive(Debug, Clone, Default)]
pub struct BenchResult {
    pub total_time_run: f64,
    pub total_writes_made: u64,
    pub write_size: u64,
    pub bandwidth_mb: f64,
    pub stddev_bandwidth: f64,
    pub max_bandwidth: f64,
    pub min_bandwidth: f64,
    pub average_iops: f64,
    pub stddev_iops: f64,
    pub max_iops: u64,
    pub min_iops: u64,
    pub average_latency: f64,
    pub stddev_latency: f64,
    pub max_latency: f64,
    pub min_latency: f64,
}

impl BenchResult {
    pub fn to_json(&self) -> Value {
        json!({
            "total_time_run": self.total_time_run,
            "total_writes_made": self.total_writes_made,
            "write_size": self.write_size,
            "object_size": self.write_size,
            "bandwidth": self.bandwidth_mb,
            "stddev_bandwidth": self.stddev_bandwidth,
            "max_bandwidth": self.max_bandwidth,
            "min_bandwidth": self.min_bandwidth,
            "average_iops": self.average_iops,
            "stddev_iops": self.stddev_iops,
            "max_iops": self.max_iops,
            "min_iops": self.min_iops,
            "average_latency": self.average_latency,
            "stddev_latency": self.stddev_latency,
            "max_latency": self.max_latency,
            "min_latency": self.min_latency,
        })
    }
}

#[derive(Default)]
struct Stats {
    started: u64,
    finished: u64,
    lat_sum: f64,
    lat_sq: f64,
    lat_max: f64,
    lat_min: f64,
    last_lat: f64,
    errors: u64,
    first_error: Option<String>,
}

fn mean_stddev(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

fn min_of(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().copied().fold(f64::MAX, f64::min)
    }
}

/// Runs the write bench, printing progress to `out` unless `quiet`.
pub async fn write_bench(
    io: &IoCtx,
    o: &BenchOpts,
    out: &mut dyn Write,
    quiet: bool,
) -> anyhow::Result<BenchResult> {
    let mb = 1024.0 * 1024.0;
    if !quiet {
        writeln!(out, "hints = 1")?;
        writeln!(
            out,
            "Maintaining {} concurrent writes of {} bytes to objects of size {} for up to {} seconds or {} objects",
            o.concurrency, o.block_size, o.block_size, o.seconds, o.max_objects
        )?;
        writeln!(out, "Object prefix: {}", o.prefix)?;
        writeln!(
            out,
            "{:>5} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11} {:>11}",
            "sec",
            "Cur ops",
            "started",
            "finished",
            "avg MB/s",
            "cur MB/s",
            "last lat(s)",
            "avg lat(s)"
        )?;
    }
    let stats = Arc::new(Mutex::new(Stats {
        lat_min: f64::MAX,
        ..Default::default()
    }));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(o.seconds);
    let data = Bytes::from(
        (0..o.block_size)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    // Objects to write at most (`max_objects == 0`: only the time limit).
    let limit = match o.max_objects {
        0 => u64::MAX,
        n => n,
    };
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..o.concurrency.max(1) {
        let (io, stats, data, next, prefix) = (
            io.clone(),
            stats.clone(),
            data.clone(),
            next.clone(),
            o.prefix.clone(),
        );
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= limit {
                    return;
                }
                let name = format!("{prefix}_object{n}");
                stats.lock().started += 1;
                let t0 = Instant::now();
                let r = io.write_full(&name, data.clone()).await;
                let lat = t0.elapsed().as_secs_f64();
                let mut s = stats.lock();
                match r {
                    Ok(_) => {
                        s.finished += 1;
                        s.lat_sum += lat;
                        s.lat_sq += lat * lat;
                        s.lat_max = s.lat_max.max(lat);
                        s.lat_min = s.lat_min.min(lat);
                        s.last_lat = lat;
                    }
                    Err(e) => {
                        s.errors += 1;
                        s.first_error.get_or_insert_with(|| e.to_string());
                        return;
                    }
                }
            }
        }));
    }
    let mut per_sec_ops: Vec<f64> = Vec::new();
    let mut last_finished = 0u64;
    let mut sec = 0u64;
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    if !quiet {
        writeln!(
            out,
            "{:>5} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11} {:>11}",
            0, 0, 0, 0, 0, 0, "-", 0
        )?;
    }
    let mut done = false;
    while Instant::now() < deadline && !done {
        tick.tick().await;
        sec += 1;
        let s = stats.lock();
        done = o.max_objects > 0 && s.finished + s.errors >= o.max_objects;
        let cur = (s.finished - last_finished) as f64;
        last_finished = s.finished;
        per_sec_ops.push(cur);
        let elapsed = start.elapsed().as_secs_f64();
        let avg_mb = s.finished as f64 * o.block_size as f64 / mb / elapsed;
        let avg_lat = if s.finished > 0 {
            s.lat_sum / s.finished as f64
        } else {
            0.0
        };
        if !quiet {
            writeln!(
                out,
                "{:>5} {:>7} {:>9} {:>9} {:>9.5} {:>9.5} {:>11.6} {:>11.6}",
                sec,
                s.started - s.finished - s.errors,
                s.started,
                s.finished,
                avg_mb,
                cur * o.block_size as f64 / mb,
                s.last_lat,
                avg_lat
            )?;
        }
    }
    for w in workers {
        let _ = w.await;
    }
    let total = start.elapsed().as_secs_f64();
    let r = {
        let s = stats.lock();
        if let Some(e) = &s.first_error {
            anyhow::bail!("bench write failed ({} errors): {e}", s.errors);
        }
        let bw: Vec<f64> = per_sec_ops
            .iter()
            .map(|n| n * o.block_size as f64 / mb)
            .collect();
        let (_, bw_sd) = mean_stddev(&bw);
        let (_, iops_sd) = mean_stddev(&per_sec_ops);
        let n = s.finished.max(1) as f64;
        let lat_mean = s.lat_sum / n;
        let lat_sd = if s.finished > 1 {
            ((s.lat_sq - n * lat_mean * lat_mean) / (n - 1.0))
                .max(0.0)
                .sqrt()
        } else {
            0.0
        };
        let r = BenchResult {
            total_time_run: total,
            total_writes_made: s.finished,
            write_size: o.block_size,
            bandwidth_mb: s.finished as f64 * o.block_size as f64 / mb / total,
            stddev_bandwidth: bw_sd,
            max_bandwidth: bw.iter().copied().fold(0.0, f64::max),
            min_bandwidth: min_of(&bw),
            average_iops: s.finished as f64 / total,
            stddev_iops: iops_sd,
            max_iops: per_sec_ops.iter().copied().fold(0.0, f64::max) as u64,
            min_iops: min_of(&per_sec_ops) as u64,
            average_latency: lat_mean,
            stddev_latency: lat_sd,
            max_latency: s.lat_max,
            min_latency: if s.finished > 0 { s.lat_min } else { 0.0 },
        };
        r
    };
    let written = next.load(std::sync::atomic::Ordering::Relaxed).min(limit);
    if !quiet {
        writeln!(out, "Total time run:         {:.4}", r.total_time_run)?;
        writeln!(out, "Total writes made:      {}", r.total_writes_made)?;
        writeln!(out, "Write size:             {}", r.write_size)?;
        writeln!(out, "Object size:            {}", r.write_size)?;
        writeln!(out, "Bandwidth (MB/sec):     {:.3}", r.bandwidth_mb)?;
        writeln!(out, "Stddev Bandwidth:       {:.4}", r.stddev_bandwidth)?;
        writeln!(out, "Max bandwidth (MB/sec): {:.3}", r.max_bandwidth)?;
        writeln!(out, "Min bandwidth (MB/sec): {:.3}", r.min_bandwidth)?;
        writeln!(out, "Average IOPS:           {:.0}", r.average_iops)?;
        writeln!(out, "Stddev IOPS:            {:.4}", r.stddev_iops)?;
        writeln!(out, "Max IOPS:               {}", r.max_iops)?;
        writeln!(out, "Min IOPS:               {}", r.min_iops)?;
        writeln!(out, "Average Latency(s):     {:.6}", r.average_latency)?;
        writeln!(out, "Stddev Latency(s):      {:.6}", r.stddev_latency)?;
        writeln!(out, "Max latency(s):         {:.6}", r.max_latency)?;
        writeln!(out, "Min latency(s):         {:.6}", r.min_latency)?;
    }
    if o.cleanup {
        let t0 = Instant::now();
        if !quiet {
            writeln!(out, "Cleaning up (deleting benchmark objects)")?;
        }
        let removed = cleanup(io, &o.prefix, written, o.concurrency.max(1)).await;
        if !quiet {
            writeln!(out, "Removed {removed} objects")?;
            writeln!(
                out,
                "Clean up completed and total clean up time :{:.4}",
                t0.elapsed().as_secs_f64()
            )?;
        }
    }
    Ok(r)
}

/// Removes the bench objects `0..n` with `concurrency` removals in flight.
async fn cleanup(io: &IoCtx, prefix: &str, n: u64, concurrency: usize) -> u64 {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let removed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (io, next, removed, prefix) = (
            io.clone(),
            next.clone(),
            removed.clone(),
            prefix.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                if io.remove(&format!("{prefix}_object{i}")).await.is_ok() {
                    removed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    removed.load(std::sync::atomic::Ordering::Relaxed)
}
