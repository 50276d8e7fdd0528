//! The per-host exporter's rendering with N daemons, each with the counter
//! set of a real Kalmar OSD (`osd_perf.json`: its `perf schema` and `perf
//! dump`): time and size of one `/metrics` answer, without the admin
//! socket round trips (one per daemon and scrape, measured live).
//!
//! Run: `cargo bench -p kalmar-cli --bench exporter_render` (env `OSDS`,
//! default "100,1000", and `ITERATIONS`, default 5).

use std::time::Instant;

use kalmar_cli::exporter::{render, DaemonCounters};

fn main() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("osd_perf.json")).expect("fixture");
    let sizes: Vec<usize> = std::env::var("OSDS")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let iterations: usize = std::env::var("ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    println!("{:>6} {:>12} {:>12}", "OSDs", "render ms", "bytes");
    for n in sizes {
        let daemons: Vec<DaemonCounters> = (0..n)
            .map(|i| DaemonCounters {
                name: format!("osd.{i}"),
                schema: fixture["schema"].clone(),
                dump: fixture["dump"].clone(),
            })
            .collect();
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..iterations {
            let t = Instant::now();
            bytes = render(&daemons, 5).len();
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!("{n:>6} {:>12.1} {bytes:>12}", times[times.len() / 2] * 1e3);
    }
}
