//! Divergent log entries across real processes (3 OSDs, pool size 3,
//! min_size 2), made without any fault injection:
//!
//! 1. Both replicas of primary P are frozen (SIGSTOP). A raw client session
//!    (it never resends) sends P first a large write, whose replicated
//!    write fills the sockets to the frozen replicas, then a create, a
//!    modify, a delete and an overwrite. P applies and logs all of them;
//!    their replicated writes sit behind the large one in P's send queues.
//! 2. P is killed (SIGKILL) before the replicas thaw (SIGCONT), before any
//!    heartbeat grace ran out: the replicas only ever see a cut-off frame.
//!    Offline, P's store is checked to hold the unacknowledged writes.
//! 3. The replicas mark P down, peer without it and go on: the
//!    unacknowledged writes are not visible; a client overwrites one of
//!    the objects (acknowledged).
//! 4. P returns as the primary of its PGs with a log that diverged: it
//!    must find the replicas' log authoritative, roll its own entries back
//!    (remove the object it created, restore the removed and modified
//!    ones) and recover.
//!
//! At the end every object reads as the clients were acknowledged, and
//! offline every OSD holds exactly the acknowledged objects, byte for byte.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kalmar_proto::client::{errno, OsdOp, OsdOpRequest};
use kalmar_tests::{
    counter, osd_addr, placement_problems, wait_for, Cluster, ClusterOpts, Placement, StoredObject,
};
use serde_json::json;

const POOL: &str = "div";
const PG_NUM: u32 = 8;
/// Heartbeat grace: longer than the replicas stay frozen.
const GRACE_S: u64 = 6;
/// The write that blocks the replication sockets: more than the kernel
/// buffers of a loopback connection hold (32 MiB receive + 4 MiB send
/// here), less than the OSD's largest message.
const BIG: usize = 80 << 20;

fn content(tag: &str, gen: usize) -> Bytes {
    let size = 3000 + gen * 1111 + tag.len() * 17;
    Bytes::from(
        (0..size)
            .map(|j| ((j * 13 + gen * 7 + tag.len()) % 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn stored(v: &Bytes) -> StoredObject {
    StoredObject {
        size: v.len() as u64,
        crc32c: Some(crc32c::crc32c(v)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn divergent_entries_roll_back() -> anyhow::Result<()> {
    let opts = ClusterOpts::default().set("osd_heartbeat_grace", &GRACE_S.to_string());
    let c = Cluster::start(opts).await?;
    let (rados, io) = c.ready_pool(POOL, PG_NUM, 3, 2).await?;
    let map = rados.osdmap();
    let pool = map.pool_by_name(POOL)?.id;

    // The objects of the scenario, all in PGs led by P.
    let primary_of = |name: &str| -> anyhow::Result<i32> {
        Ok(map
            .pg_to_up_acting_osds(map.object_to_pg(pool, name)?)?
            .acting_primary)
    };
    let p = primary_of("x")?;
    let mut names: BTreeMap<&str, String> = BTreeMap::new();
    for tag in ["big", "created", "modified", "removed", "overwritten"] {
        let name = (0..)
            .map(|i| format!("{tag}-{i}"))
            .find(|n| primary_of(n).is_ok_and(|o| o == p))
            .unwrap_or_default();
        names.insert(tag, name);
    }
    let replicas: Vec<u32> = (0..3).filter(|&o| o != p as u32).collect();
    eprintln!("primary osd.{p}, replicas {replicas:?}, objects {names:?}");

    // Acknowledged state before the divergence.
    let mut acked: BTreeMap<String, Bytes> = BTreeMap::new();
    for tag in ["modified", "removed", "overwritten"] {
        let v = content(tag, 0);
        io.write_full(&names[tag], v.clone()).await?;
        acked.insert(names[tag].clone(), v);
    }
    for i in 0..40 {
        let (k, v) = (format!("other-{i}"), content("other", i));
        io.write_full(&k, v.clone()).await?;
        acked.insert(k, v);
    }

    // 1. Freeze the replicas; P takes writes nobody else sees.
    let pname = format!("osd.{p}");
    let txns_before = counter(&c.perf_dump(&pname)?, "objectstore", "txns");
    for r in &replicas {
        c.signal(&format!("osd.{r}"), libc::SIGSTOP)?;
    }
    let thaw = |c: &Cluster| {
        for r in &replicas {
            let _ = c.signal(&format!("osd.{r}"), libc::SIGCONT);
        }
    };
    let dump = c.mon_command(json!({"prefix": "osd dump"})).await?;
    let addr = osd_addr(&dump, p as u32, "public_addr")
        .ok_or_else(|| anyhow::anyhow!("no public_addr of osd.{p}"))?;
    let raw = c.raw_session(addr, 4242, BIG + (1 << 20)).await?;
    let big = Bytes::from(vec![0x5a_u8; BIG]);
    let divergent: Vec<(&str, OsdOp)> = vec![
        ("big", OsdOp::WriteFull { data: big.clone() }),
        (
            "created",
            OsdOp::WriteFull {
                data: content("created", 9),
            },
        ),
        (
            "modified",
            OsdOp::WriteFull {
                data: content("modified", 9),
            },
        ),
        ("removed", OsdOp::Remove),
        (
            "overwritten",
            OsdOp::WriteFull {
                data: content("overwritten", 9),
            },
        ),
    ];
    // The big write first, alone: its replicated writes must be queued
    // (they are sent before P's own commit completes) before the others,
    // which go to other PGs and could otherwise overtake it.
    for (tid, (tag, op)) in divergent.iter().enumerate() {
        if tid == 1 {
            let first = wait_for(
                "P to apply the big write",
                Duration::from_secs(20),
                || async {
                    let n = counter(&c.perf_dump(&pname).ok()?, "objectstore", "txns");
                    (n > txns_before).then_some(())
                },
            )
            .await;
            if let Err(e) = first {
                thaw(&c);
                return Err(e);
            }
            // The PG task queues the replicated writes right after its own
            // transaction; give it a moment beyond the commit.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let oid = names[tag].clone();
        let req = OsdOpRequest {
            tid: tid as u64 + 1,
            client: 4242,
            nonce: 1,
            pgid: map.object_to_pg(pool, &oid)?,
            map_epoch: map.epoch,
            oid,
            flags: 0,
            ops: vec![op.clone()],
        };
        if let Err(e) = raw.send(&req).await {
            thaw(&c);
            return Err(e);
        }
    }
    // P commits each locally (one transaction per write) while no replica
    // answers.
    let committed = wait_for(
        "P to apply the five writes",
        Duration::from_secs(10),
        || async {
            let n = counter(&c.perf_dump(&pname).ok()?, "objectstore", "txns");
            (n >= txns_before + divergent.len() as u64).then_some(())
        },
    )
    .await;

    // 2. P dies before the replicas thaw.
    let killed = c.kill9(&pname);
    thaw(&c);
    committed?;
    killed?;
    drop(raw);
    let on_p = c.stored_objects(p as u32, pool, true)?;
    assert_eq!(
        on_p.get(&names["big"]).map(|o| o.size),
        Some(BIG as u64),
        "P applied the big write"
    );
    assert_eq!(
        on_p.get(&names["created"]),
        Some(&stored(&content("created", 9)))
    );
    assert_eq!(
        on_p.get(&names["modified"]),
        Some(&stored(&content("modified", 9)))
    );
    assert_eq!(on_p.get(&names["removed"]), None);
    assert_eq!(
        on_p.get(&names["overwritten"]),
        Some(&stored(&content("overwritten", 9)))
    );

    // 3. The replicas go on without P; its writes are not visible.
    wait_for(
        &format!("{pname} marked down"),
        Duration::from_secs(60),
        || async {
            let up = c.osds_up().await.ok()?;
            up.contains(&(p as u32, false)).then_some(())
        },
    )
    .await?;
    c.wait_pgs(1, PG_NUM, &["active"], Duration::from_secs(60))
        .await?;
    for tag in ["big", "created"] {
        let e = io
            .read(&names[tag], 0, 0)
            .await
            .expect_err("never acknowledged");
        assert_eq!(e.errno(), errno::ENOENT, "{tag}: {e}");
    }
    for tag in ["modified", "removed", "overwritten"] {
        assert_eq!(io.read(&names[tag], 0, 0).await?, content(tag, 0), "{tag}");
    }
    let v = content("overwritten", 5);
    io.write_full(&names["overwritten"], v.clone()).await?;
    acked.insert(names["overwritten"].clone(), v);
    for i in 0..10 {
        let (k, v) = (format!("after-{i}"), content("after", i));
        io.write_full(&k, v.clone()).await?;
        acked.insert(k, v);
    }

    // 4. P returns, rolls back, recovers.
    c.restart_missing().await?;
    c.wait_pgs(1, PG_NUM, &["active", "clean"], Duration::from_secs(120))
        .await?;
    let map = rados.osdmap();
    for tag in ["created", "modified", "removed", "overwritten"] {
        let pg = map.object_to_pg(pool, &names[tag])?;
        assert_eq!(
            map.pg_to_up_acting_osds(pg)?.acting_primary,
            p,
            "{tag}: P leads its PG again, so the primary rolled back"
        );
    }
    for tag in ["big", "created"] {
        let e = io.read(&names[tag], 0, 0).await.expect_err("rolled back");
        assert_eq!(e.errno(), errno::ENOENT, "{tag}: {e}");
    }
    for (k, v) in &acked {
        assert!(io.read(k, 0, 0).await? == *v, "{k} after P returned");
    }

    // Offline: exactly the acknowledged objects, on all three.
    let expect: Placement = acked
        .iter()
        .map(|(k, v)| (k.clone(), (vec![0, 1, 2], stored(v))))
        .collect();
    rados.shutdown().await;
    for o in 0..3 {
        c.stop(&format!("osd.{o}"))?;
    }
    let mut held = BTreeMap::new();
    for o in 0..3 {
        held.insert(o, c.stored_objects(o, pool, true)?);
    }
    let problems = placement_problems(&held, &expect);
    assert!(problems.is_empty(), "{problems:#?}");
    Ok(())
}
