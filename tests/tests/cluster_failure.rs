//! One OSD of three fails: the mon marks it down from its peers' reports
//! within the heartbeat grace; the PGs re-peer with the two left (size 3,
//! min_size 2) and I/O goes on; the OSD restarts with a new up_from, is
//! recovered from the logs, and every PG is active+clean again with every
//! object on all three OSDs. Then two OSDs fail: below min_size the PGs
//! take no I/O, a write waits and is answered ETIMEDOUT after
//! `osd_op_queue_timeout`; with the OSDs back, writes go on.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kalmar_proto::client::errno;
use kalmar_tests::{wait_for, Cluster, ClusterOpts};
use serde_json::json;

const POOL: &str = "fail";
const PG_NUM: u32 = 8;
/// Heartbeat grace of the cluster (seconds).
const GRACE_S: u64 = 4;
/// How long a client op may wait in a PG that cannot serve it (seconds).
const QUEUE_TIMEOUT_S: u64 = 8;

fn data(tag: &str, i: usize) -> Bytes {
    Bytes::from(format!("{tag}-{i}-").repeat(50 + i % 40))
}

async fn up_from(c: &Cluster, osd: usize) -> anyhow::Result<(bool, u64)> {
    let d = c.mon_command(json!({"prefix": "osd dump"})).await?;
    let o = &d["osds"][osd];
    Ok((
        o["up"].as_i64() == Some(1),
        o["up_from"].as_u64().unwrap_or(0),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn osd_failure_and_return() -> anyhow::Result<()> {
    let opts = ClusterOpts::default()
        .set("osd_heartbeat_grace", &GRACE_S.to_string())
        // One survivor must be able to report two dead peers.
        .set("mon_osd_min_down_reporters", "1")
        .set("osd_op_queue_timeout", &QUEUE_TIMEOUT_S.to_string());
    let c = Cluster::start(opts).await?;
    let (rados, io) = c.ready_pool(POOL, PG_NUM, 3, 2).await?;
    let mut expect: BTreeMap<String, Bytes> = BTreeMap::new();
    for i in 0..60 {
        let (k, v) = (format!("before-{i}"), data("before", i));
        io.write_full(&k, v.clone()).await?;
        expect.insert(k, v);
    }
    let (_, old_up_from) = up_from(&c, 2).await?;

    // osd.2 dies: its peers report it; the mon marks it down.
    c.kill9("osd.2")?;
    let t0 = Instant::now();
    wait_for("osd.2 marked down", Duration::from_secs(60), || async {
        let (up, _) = up_from(&c, 2).await.ok()?;
        (!up).then_some(())
    })
    .await?;
    let detect = t0.elapsed();
    eprintln!(
        "osd.2 marked down after {:.1} s (grace {GRACE_S} s)",
        detect.as_secs_f64()
    );
    // Grace, plus up to a heartbeat interval to notice, a mon tick and the
    // epoch's commit; generous for a loaded 2-core machine.
    assert!(detect < Duration::from_secs(GRACE_S + 8), "took {detect:?}");

    // The PGs re-peer with two OSDs and serve I/O (undersized, degraded).
    c.wait_pgs(
        1,
        PG_NUM,
        &["active", "undersized", "degraded"],
        Duration::from_secs(60),
    )
    .await?;
    for i in 0..60 {
        let (k, v) = (format!("during-{i}"), data("during", i));
        io.write_full(&k, v.clone()).await?;
        expect.insert(k, v);
    }
    for i in 0..20 {
        let k = format!("before-{i}");
        let v = data("rewritten", i);
        io.write_full(&k, v.clone()).await?;
        expect.insert(k, v);
    }
    for (k, v) in &expect {
        assert_eq!(&io.read(k, 0, 0).await?, v, "{k} while osd.2 is down");
    }

    // osd.2 comes back: a new boot, a new up_from; recovery makes the PGs
    // clean again.
    c.restart_missing().await?;
    let (up, new_up_from) = up_from(&c, 2).await?;
    assert!(up, "osd.2 is up again");
    assert!(
        new_up_from > old_up_from,
        "new up_from {new_up_from} after {old_up_from}"
    );
    c.wait_pgs(1, PG_NUM, &["active", "clean"], Duration::from_secs(120))
        .await?;
    for (k, v) in &expect {
        assert_eq!(&io.read(k, 0, 0).await?, v, "{k} after recovery");
    }
    let recovered: u64 = (0..3)
        .map(|o| {
            c.admin(&format!("osd.{o}"), "perf dump")
                .map(|d| d["osd"]["push"].as_u64().unwrap_or(0))
        })
        .collect::<anyhow::Result<Vec<u64>>>()?
        .into_iter()
        .sum();
    assert!(recovered > 0, "objects were pushed to the returning OSD");

    // Two OSDs down: one copy left, below min_size: no I/O, bounded wait.
    c.kill9("osd.1")?;
    c.kill9("osd.2")?;
    wait_for(
        "osd.1 and osd.2 marked down",
        Duration::from_secs(60),
        || async {
            let up = c.osds_up().await.ok()?;
            (up == vec![(0, true), (1, false), (2, false)]).then_some(())
        },
    )
    .await?;
    c.wait_pgs(1, PG_NUM, &["peered"], Duration::from_secs(60))
        .await?;
    let t0 = Instant::now();
    let e = io
        .write_full("below-min-size", data("x", 1))
        .await
        .expect_err("no I/O below min_size");
    let waited = t0.elapsed();
    assert_eq!(e.errno(), errno::ETIMEDOUT, "{e}");
    assert!(
        waited >= Duration::from_secs(QUEUE_TIMEOUT_S - 2)
            && waited < Duration::from_secs(QUEUE_TIMEOUT_S + 10),
        "answered after {waited:?}"
    );
    let e = io
        .read("during-1", 0, 0)
        .await
        .expect_err("no reads either");
    assert_eq!(e.errno(), errno::ETIMEDOUT, "{e}");
    c.restart_missing().await?;
    c.wait_pgs(1, PG_NUM, &["active", "clean"], Duration::from_secs(120))
        .await?;
    io.write_full("below-min-size", data("x", 1)).await?;
    expect.insert("below-min-size".into(), data("x", 1));
    for (k, v) in &expect {
        assert_eq!(&io.read(k, 0, 0).await?, v, "{k} after both returned");
    }

    // Offline: osd.2 holds every object of every PG it is acting for.
    let map = rados.osdmap();
    let pool = map.pool_by_name(POOL)?.id;
    rados.shutdown().await;
    c.stop("osd.2")?;
    let colls: Vec<String> = serde_json::from_value(c.objectstore_tool(2, &["list-collections"])?)?;
    let mut held: BTreeMap<String, u64> = BTreeMap::new();
    for coll in colls.iter().filter(|c| c.starts_with(&format!("{pool}."))) {
        for e in c
            .objectstore_tool(2, &["list", coll])?
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            held.insert(
                e["name"].as_str().unwrap_or_default().to_string(),
                e["size_bytes"].as_u64().unwrap_or(0),
            );
        }
    }
    for (k, v) in &expect {
        let pg = map.object_to_pg(pool, k)?;
        if map.pg_to_up_acting_osds(pg)?.acting.contains(&2) {
            assert_eq!(held.get(k), Some(&(v.len() as u64)), "{k} on osd.2");
        }
    }
    Ok(())
}
