//! A real cluster with three mons (vstart --mons 3): kill -9 of the leader
//! mon while a client writes, an OSD is killed and boots again, and a pool
//! is created across the leader change. Checked:
//!
//! - a new leader within [`FAILOVER_BOUND`] (default timers);
//! - writes go on (the client's map is served by any mon; no write waits
//!   for the election longer than [`WRITE_STALL_BOUND`]);
//! - an OSD that boots while the leader is gone comes up, and a map change
//!   asked for during the election is committed;
//! - every acknowledged write reads back;
//! - the killed mon rejoins and the quorum is whole again; its health
//!   check `MON_DOWN` named it meanwhile.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kalmar_tests::{wait_for, Cluster, ClusterOpts};
use serde_json::{json, Value};

/// kill -9 of the leader to a new leader answering `quorum_status`.
const FAILOVER_BOUND: Duration = Duration::from_secs(5);
/// Longest a single write may take across the failover (a write needs no
/// mon unless the map changes; an OSD kill during the election adds a
/// failure-detection grace of 4 s and peering).
const WRITE_STALL_BOUND: Duration = Duration::from_secs(30);

fn content(n: usize) -> Bytes {
    Bytes::from(
        (0..4096 + n % 1000)
            .map(|j| ((n * 31 + j) % 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

async fn leader(c: &Cluster) -> Option<String> {
    let q = c
        .mon_command(json!({"prefix": "quorum_status"}))
        .await
        .ok()?;
    q["quorum_leader_name"].as_str().map(String::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill9_under_writes_and_osd_boot() {
    let opts = ClusterOpts {
        mons: 3,
        ..ClusterOpts::default()
    };
    let c = Cluster::start(opts).await.expect("cluster");
    let q = c
        .mon_command(json!({"prefix": "quorum_status"}))
        .await
        .expect("quorum_status");
    assert_eq!(q["quorum_names"], json!(["a", "b", "c"]), "{q}");
    let (_rados, io) = c.ready_pool("rbd", 16, 3, 2).await.expect("pool");

    let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
    let worst: Arc<Mutex<Duration>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (acked, worst, stop) = (acked.clone(), worst.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t0 = Instant::now();
                io.write_full(&format!("obj{n}"), content(n))
                    .await
                    .unwrap_or_else(|e| panic!("write {n}: {e}"));
                let took = t0.elapsed();
                {
                    let mut w = worst.lock().expect("lock");
                    *w = (*w).max(took);
                }
                acked.lock().expect("lock").push(n);
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            io
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    let old = leader(&c).await.expect("a leader");
    let t0 = Instant::now();
    c.kill9(&format!("mon.{old}")).expect("kill the leader");
    // An OSD dies and boots again while the mons elect.
    c.kill9("osd.2").expect("kill osd.2");
    let new = wait_for("a new leader", Duration::from_secs(30), || async {
        leader(&c).await.filter(|l| *l != old)
    })
    .await
    .expect("new leader");
    let failover = t0.elapsed();
    eprintln!("mon leader failover under load: {failover:?} (mon.{old} -> mon.{new})");
    assert!(failover < FAILOVER_BOUND, "failover took {failover:?}");

    let h = c
        .mon_command(json!({"prefix": "health", "detail": "detail"}))
        .await
        .expect("health");
    let msg = h["checks"]["MON_DOWN"]["detail"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(msg.contains(&format!("mon.{old}")), "{h}");

    // A map change during the failover's aftermath commits.
    c.create_pool("after", 8, 3, 2).await.expect("pool create");
    // Everything missing comes back: the old leader and osd.2.
    c.restart_missing().await.expect("restart mon and osd");
    wait_for("a quorum of three", Duration::from_secs(30), || async {
        let q = c
            .mon_command(json!({"prefix": "quorum_status"}))
            .await
            .ok()?;
        (q["quorum"].as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await
    .expect("quorum of three");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let io = writer.await.expect("writer");
    let worst = *worst.lock().expect("lock");
    let acked = acked.lock().expect("lock").clone();
    eprintln!("{} writes acknowledged; slowest {worst:?}", acked.len());
    assert!(worst < WRITE_STALL_BOUND, "a write took {worst:?}");
    assert!(acked.len() > 20);
    for n in acked {
        let want = content(n);
        let got = io
            .read(&format!("obj{n}"), 0, want.len() as u64)
            .await
            .unwrap_or_else(|e| panic!("read obj{n}: {e}"));
        assert_eq!(got, want, "obj{n}");
    }
    let dump: Value = c
        .mon_command(json!({"prefix": "osd dump"}))
        .await
        .expect("osd dump");
    assert!(
        dump["pools"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["pool_name"] == "after")),
        "{dump}"
    );
}
