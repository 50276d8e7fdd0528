//! `get_all_perf_counters()` latency from Python with 1,000 OSDs, each
//! with a full OSD counter set (100 counters), ingested in process. Printed
//! side by side: the Rust snapshot of the same counters (the floor), the
//! Python call, and `json.loads` of the same data (a JSON bridge's cost).
//!
//! Run: `cargo bench -p kalmar-mgr-py --bench get_all_perf_counters`
//! (env `OSDS`, `ITERATIONS` override 1000 and 15).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use kalmar_mgr_py::fake::{FakeCluster, FakeHost, FakeOsd};
use kalmar_mgr_py::{
    ClusterStateStore, DaemonStateIndex, DaemonStateLimits, MemoryStore, PyModules, PyModulesConfig,
};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn stats_ms(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2] * 1e3, v[0] * 1e3, v[v.len() - 1] * 1e3)
}

fn main() {
    let osds = env_or("OSDS", 1000);
    let iterations = env_or("ITERATIONS", 15);
    let state = DaemonStateIndex::new(DaemonStateLimits::default());
    let mut fakes: Vec<FakeOsd> = (0..osds as u32).map(FakeOsd::new).collect();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for f in &mut fakes {
        f.open(&state, "bench").expect("open");
    }
    // Two reports each (declare + values, then values only); time ingest.
    let mut ingest = Vec::new();
    for round in 0..2u64 {
        let start = Instant::now();
        for f in &mut fakes {
            f.add("osd.op_w", 1, 0);
            f.report(&state, t0 + Duration::from_secs(5 * round))
                .expect("ingest");
        }
        ingest.push(start.elapsed().as_secs_f64() / osds as f64);
    }

    // The Rust floor: snapshot every daemon's counters.
    let mut rust_s = Vec::new();
    let mut n_counters = 0;
    for _ in 0..iterations {
        let start = Instant::now();
        n_counters = 0;
        for k in state.daemons() {
            n_counters += state.counters(&k).len();
        }
        rust_s.push(start.elapsed().as_secs_f64());
    }

    let cluster = ClusterStateStore::new();
    FakeCluster {
        num_osds: osds as u32,
        ..FakeCluster::default()
    }
    .publish(&cluster);
    let config = PyModulesConfig {
        module_dirs: vec![PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/plugins"
        ))],
        command_timeout: Duration::from_secs(600),
        ..Default::default()
    };
    let mods = PyModules::new(
        config,
        state.clone(),
        cluster,
        FakeHost::new("x"),
        Arc::new(MemoryStore::new()),
    )
    .expect("python");
    mods.load();
    mods.set_enabled(["perfbench".to_string()]);
    mods.start();
    let words: Vec<String> = ["perfbench", "run", &iterations.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let r = mods.handle_command(&words, None, None);
    assert_eq!(r.retval, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let list = |k: &str| -> Vec<f64> {
        v[k].as_array()
            .expect(k)
            .iter()
            .filter_map(|x| x.as_f64())
            .collect()
    };
    let (api_med, api_min, api_max) = stats_ms(list("api_s"));
    let (js_med, js_min, js_max) = stats_ms(list("json_loads_s"));
    let (rs_med, rs_min, rs_max) = stats_ms(rust_s);
    println!("get_all_perf_counters, in process: {osds} OSDs, {} counters returned ({n_counters} held), python {}",
        v["counters"], mods.python().version);
    println!(
        "ingest per MgrReport (100 counters): declare {:.1} us, values {:.1} us",
        ingest[0] * 1e6,
        ingest[1] * 1e6
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "path", "median ms", "min ms", "max ms"
    );
    println!(
        "{:<44} {:>10.2} {:>10.2} {:>10.2}",
        "Rust snapshot of the same counters", rs_med, rs_min, rs_max
    );
    println!(
        "{:<44} {:>10.2} {:>10.2} {:>10.2}",
        "Python get_all_perf_counters()", api_med, api_min, api_max
    );
    println!(
        "{:<44} {:>10.2} {:>10.2} {:>10.2}",
        format!(
            "Python json.loads of the same ({} MB)",
            v["json_bytes"].as_f64().unwrap_or(0.0) / 1e6
        ),
        js_med,
        js_min,
        js_max
    );
    println!(
        "ratio get_all_perf_counters / Rust snapshot: {:.1}x",
        api_med / rs_med
    );
    println!(
        "ratio get_all_perf_counters / json.loads:   {:.2}x",
        api_med / js_med
    );
}
