//! One scrape of the shipped prometheus module (`collect()`, what
//! `/metrics` serves) with N simulated OSDs, each with a full OSD counter
//! set: the cluster-level metrics alone (`exclude_perf_counters`, the
//! shape since Ceph 17, when the per-daemon counters come from the
//! per-host exporter), then with every daemon's counters through the mgr
//! (the pre-17 shape, Ceph's known bottleneck at scale). Time and size.
//!
//! Run: `cargo bench -p kalmar-mgr-py --bench prometheus_scrape`
//! (env `OSDS` — default "100,1000" — and `ITERATIONS`, default 5).

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use kalmar_mgr_py::fake::{FakeCluster, FakeHost, FakeOsd};
use kalmar_mgr_py::{
    shipped_modules_dir, ClusterStateStore, DaemonStateIndex, DaemonStateLimits, MemoryStore,
    PyModules, PyModulesConfig,
};

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2] * 1e3
}

fn scrape(mods: &PyModules, iterations: usize) -> (f64, usize) {
    let words: Vec<String> = ["prometheus", "metrics"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..iterations {
        let start = Instant::now();
        let r = mods.handle_command(&words, None, None);
        times.push(start.elapsed().as_secs_f64());
        assert_eq!(r.retval, 0, "{}", r.stderr);
        size = r.stdout.len();
    }
    (median_ms(times), size)
}

fn main() {
    let sizes: Vec<u32> = std::env::var("OSDS")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let iterations: usize = std::env::var("ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    println!(
        "{:>6} {:>26} {:>12} {:>26} {:>12}",
        "OSDs", "cluster metrics: ms", "bytes", "+ every daemon's counters: ms", "bytes"
    );
    for osds in sizes {
        let state = DaemonStateIndex::new(DaemonStateLimits::default());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut fakes: Vec<FakeOsd> = (0..osds).map(FakeOsd::new).collect();
        for f in &mut fakes {
            f.open(&state, "bench").expect("open");
            f.report(&state, t0).expect("ingest");
        }
        let cluster = ClusterStateStore::new();
        FakeCluster {
            num_osds: osds,
            ..FakeCluster::default()
        }
        .publish(&cluster);
        let config = PyModulesConfig {
            module_dirs: vec![shipped_modules_dir()],
            command_timeout: Duration::from_secs(600),
            ..Default::default()
        };
        let mods = PyModules::new(
            config,
            state,
            cluster,
            FakeHost::new("x"),
            Arc::new(MemoryStore::new()),
        )
        .expect("python");
        mods.load();
        // Any free port: the bench only calls collect() through the command.
        mods.set_module_option("prometheus", "server_port", Some("0"))
            .expect("option");
        mods.set_enabled(["prometheus".to_string()]);
        mods.start();
        mods.set_module_option("prometheus", "exclude_perf_counters", Some("true"))
            .expect("option");
        let (cl_ms, cl_bytes) = scrape(&mods, iterations);
        mods.set_module_option("prometheus", "exclude_perf_counters", Some("false"))
            .expect("option");
        let (all_ms, all_bytes) = scrape(&mods, iterations);
        println!("{osds:>6} {cl_ms:>26.1} {cl_bytes:>12} {all_ms:>26.1} {all_bytes:>12}");
        mods.shutdown();
    }
}
