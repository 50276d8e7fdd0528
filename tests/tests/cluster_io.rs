//! One 3-OSD cluster, pool size 3 / min_size 2, and the client I/O checks
//! on it in sequence: 1,000 objects of varied sizes with their contents
//! checked, xattr and omap round trips, the other ops, bad input (garbage
//! on every port, an op on a missing pool, oversized names), resends that
//! must not apply twice, admin socket and PG stats; finally the OSDs are
//! stopped and the offline tool checks every acting OSD holds every object.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kalmar_client::{ClientConfig, IoCtx, Rados};
use kalmar_maps::PgId;
use kalmar_msgr::config::DEFAULT_MAX_FRAME_BYTES;
use kalmar_proto::client::{errno, flags, OsdOp, OsdOpRequest};
use kalmar_tests::{wait_for, Cluster, ClusterOpts};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const POOL: &str = "io";
const PG_NUM: u32 = 16;
const OBJECTS: usize = 1000;
const CONCURRENCY: usize = 32;

/// The deterministic content of test object `i`.
fn content(i: usize, size: usize) -> Bytes {
    Bytes::from(
        (0..size)
            .map(|j| ((i * 7919 + j * 31) % 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn sizes(seed: u64) -> Vec<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..OBJECTS)
        .map(|i| match i % 10 {
            0 => 0,
            1 => rng.random_range(256 * 1024..1 << 20),
            2 | 3 => rng.random_range(4096..65536),
            _ => rng.random_range(1..4096),
        })
        .collect()
}

/// Runs `f(i, size)` for every object with `CONCURRENCY` in flight.
async fn for_each_object<F, Fut>(sizes: &[usize], f: F) -> anyhow::Result<()>
where
    F: Fn(usize, usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let permit = sem.clone().acquire_owned().await?;
        let fut = f(i, size);
        tasks.push(tokio::spawn(async move {
            let _p = permit;
            fut.await
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn put_all(io: &IoCtx, sizes: &[usize]) -> anyhow::Result<()> {
    for_each_object(sizes, |i, size| {
        let io = io.clone();
        async move {
            io.write_full(&format!("object-{i:04}"), content(i, size))
                .await?;
            Ok(())
        }
    })
    .await
}

async fn check_all(io: &IoCtx, sizes: &[usize]) -> anyhow::Result<()> {
    for_each_object(sizes, |i, size| {
        let io = io.clone();
        async move {
            let name = format!("object-{i:04}");
            let got = io.read(&name, 0, 0).await?;
            anyhow::ensure!(
                got == content(i, size),
                "{name}: content differs ({} bytes read, {size} written)",
                got.len()
            );
            let st = io.stat(&name).await?;
            anyhow::ensure!(
                st.size_bytes == size as u64,
                "{name}: stat size {} != {size}",
                st.size_bytes
            );
            Ok(())
        }
    })
    .await
}

async fn xattrs_and_omap(io: &IoCtx) -> anyhow::Result<()> {
    let o = "meta-object";
    io.setxattr(o, "color", Bytes::from_static(b"blue")).await?;
    io.setxattr(o, "shape", Bytes::from_static(b"round"))
        .await?;
    assert_eq!(io.getxattr(o, "color").await?, Bytes::from_static(b"blue"));
    let all = io.getxattrs(o).await?;
    assert_eq!(
        all.keys().cloned().collect::<Vec<_>>(),
        vec!["color", "shape"],
        "object info is not a user xattr"
    );
    io.rmxattr(o, "color").await?;
    let e = io.getxattr(o, "color").await.expect_err("removed");
    assert_eq!(e.errno(), errno::ENODATA);
    let entries: Vec<(String, Bytes)> = (0..250)
        .map(|k| (format!("key{k:03}"), Bytes::from(format!("value {k}"))))
        .collect();
    io.omap_set(o, entries.clone()).await?;
    let got = io.omap_get_all(o).await?;
    assert_eq!(got.len(), 250);
    for (k, v) in &entries {
        assert_eq!(got.get(k), Some(v), "omap {k}");
    }
    let (page, more) = io.omap_get_vals(o, "key099", 10).await?;
    assert!(more);
    assert_eq!(page.keys().next().map(String::as_str), Some("key100"));
    let some = io
        .omap_get_vals_by_keys(o, vec!["key007".into(), "nope".into()])
        .await?;
    assert_eq!(some.len(), 1);
    io.omap_rm_keys(o, vec!["key000".into(), "key001".into()])
        .await?;
    assert_eq!(io.omap_get_all(o).await?.len(), 248);
    io.omap_clear(o).await?;
    assert!(io.omap_get_all(o).await?.is_empty());
    let e = io
        .omap_get_all("no-such-object")
        .await
        .expect_err("missing object");
    assert_eq!(e.errno(), errno::ENOENT);
    Ok(())
}

async fn other_ops(io: &IoCtx) -> anyhow::Result<()> {
    let o = "ops-object";
    io.append(o, Bytes::from_static(b"hello")).await?;
    io.append(o, Bytes::from_static(b" world")).await?;
    assert_eq!(io.read(o, 0, 0).await?, Bytes::from_static(b"hello world"));
    io.write(o, 20, Bytes::from_static(b"X")).await?;
    let r = io.read(o, 0, 0).await?;
    assert_eq!(r.len(), 21);
    assert_eq!(&r[11..20], &[0u8; 9], "a hole reads as zeros");
    io.truncate(o, 5).await?;
    assert_eq!(io.read(o, 0, 0).await?, Bytes::from_static(b"hello"));
    assert_eq!(io.read(o, 2, 2).await?, Bytes::from_static(b"ll"));
    let e = io.create(o, true).await.expect_err("exists");
    assert_eq!(e.errno(), errno::EEXIST);
    io.remove(o).await?;
    assert_eq!(
        io.stat(o).await.expect_err("removed").errno(),
        errno::ENOENT
    );
    assert_eq!(
        io.read(o, 0, 0).await.expect_err("removed").errno(),
        errno::ENOENT
    );
    assert_eq!(
        io.remove(o).await.expect_err("removed twice").errno(),
        errno::ENOENT
    );
    Ok(())
}

fn osd_addrs(dump: &Value, osd: u32) -> BTreeMap<&'static str, SocketAddr> {
    let o = &dump["osds"][osd as usize];
    let parse = |k: &str| {
        o[k].as_str()
            .and_then(|s| s.split('/').next())
            .and_then(|s| s.parse::<SocketAddr>().ok())
    };
    let mut m = BTreeMap::new();
    for (name, key) in [
        ("public", "public_addr"),
        ("cluster", "cluster_addr"),
        ("heartbeat", "heartbeat_back_addr"),
    ] {
        if let Some(a) = parse(key) {
            m.insert(name, a);
        }
    }
    m
}

async fn bad_input(c: &Cluster, rados: &Rados, io: &IoCtx) -> anyhow::Result<()> {
    // Names up to osd_max_object_name_len (2048, as in Ceph) work; longer
    // ones are refused with a clear error.
    let long = "n".repeat(2048);
    io.write_full(&long, Bytes::from_static(b"long name"))
        .await?;
    assert_eq!(
        io.read(&long, 0, 0).await?,
        Bytes::from_static(b"long name")
    );
    let too_long = "n".repeat(2049);
    let e = io
        .write_full(&too_long, Bytes::from_static(b"x"))
        .await
        .expect_err("too long");
    assert_eq!(e.errno(), errno::ENAMETOOLONG, "{e}");
    assert!(e.to_string().contains("osd_max_object_name_len"), "{e}");
    // A pool that does not exist.
    let e = rados.ioctx("no-such-pool").err().expect("no such pool");
    assert_eq!(e.errno(), errno::ENOENT);
    let dump = c.mon_command(json!({"prefix": "osd dump"})).await?;
    let addrs = osd_addrs(&dump, 0);
    let mut raw = c
        .raw_session(addrs["public"], 777, DEFAULT_MAX_FRAME_BYTES)
        .await?;
    let req = OsdOpRequest {
        tid: 1,
        client: 777,
        nonce: 1,
        pgid: PgId::new(999, 0),
        map_epoch: 1,
        oid: "x".into(),
        flags: 0,
        ops: vec![OsdOp::Stat],
    };
    let r = raw.call(&req).await?;
    assert_eq!(r.result, -errno::ENOENT, "{r:?}");
    assert!(r.error.contains("pool 999 does not exist"), "{}", r.error);
    // Garbage on every port of every OSD: the connection is dropped, the
    // OSD keeps serving.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for osd in 0..3 {
        for (_port, addr) in osd_addrs(&dump, osd) {
            for len in [1usize, 35, 36, 4096] {
                let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                let mut s = TcpStream::connect(addr)?;
                s.set_write_timeout(Some(Duration::from_secs(5)))?;
                let _ = s.write_all(&junk);
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            // A valid frame header announcing an absurd length.
            let mut s = TcpStream::connect(addr)?;
            let _ = s.write_all(b"KLMR\x03\x00\x01\x00");
            let _ = s.write_all(&[0xff; 28]);
            drop(s);
        }
        assert!(
            c.pid(&format!("osd.{osd}")).is_some(),
            "osd.{osd} died of garbage"
        );
    }
    for i in 0..20 {
        let name = format!("after-garbage-{i}");
        io.write_full(&name, Bytes::from(name.clone())).await?;
        assert_eq!(io.read(&name, 0, 0).await?, Bytes::from(name.clone()));
    }
    Ok(())
}

/// A resent request (same request id) is answered from the PG log, not
/// applied again; also under injected session failures.
async fn resends(c: &Cluster, rados: &Rados, io: &IoCtx) -> anyhow::Result<()> {
    let map = rados.osdmap();
    let pool = map.pool_by_name(POOL)?.id;
    let obj = "append-once";
    let pgid = map.object_to_pg(pool, obj)?;
    let primary = map.pg_to_up_acting_osds(pgid)?.acting_primary;
    let dump = c.mon_command(json!({"prefix": "osd dump"})).await?;
    let addr = osd_addrs(&dump, primary as u32)["public"];
    let mut req = OsdOpRequest {
        tid: 42,
        client: 888,
        nonce: 5,
        pgid,
        map_epoch: map.epoch,
        oid: obj.into(),
        flags: 0,
        ops: vec![OsdOp::Append {
            data: Bytes::from_static(b"0123456789"),
        }],
    };
    let mut s1 = c.raw_session(addr, 888, DEFAULT_MAX_FRAME_BYTES).await?;
    let first = s1.call(&req).await?;
    assert_eq!(first.result, 0, "{first:?}");
    drop(s1);
    // The reply was "lost": the client resends on a new session.
    req.flags |= flags::RETRY;
    let mut s2 = c.raw_session(addr, 888, DEFAULT_MAX_FRAME_BYTES).await?;
    let again = s2.call(&req).await?;
    assert_eq!(again.result, 0);
    assert_eq!(
        (again.version_epoch, again.version),
        (first.version_epoch, first.version),
        "the resend is answered with the first write's version"
    );
    assert_eq!(io.stat(obj).await?.size_bytes, 10, "applied once");
    // A new request id is a new append.
    req.tid = 43;
    s2.call(&req).await?;
    assert_eq!(io.stat(obj).await?.size_bytes, 20);

    // Many appends while sessions keep failing: every record exactly once.
    let mut cfg = ClientConfig::new(c.mon);
    cfg.inject_socket_failures = 3;
    cfg.op_timeout = Duration::from_secs(60);
    let chaos = c.client_with(cfg).await?;
    let cio = chaos.ioctx(POOL)?;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let cio = cio.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..50 {
                let rec = format!("w{w}n{n:03};");
                cio.append(&format!("chaos-{w}"), Bytes::from(rec)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    for w in 0..4 {
        let body = io.read(&format!("chaos-{w}"), 0, 0).await?;
        let text = String::from_utf8(body.to_vec())?;
        let expect: String = (0..50).map(|n| format!("w{w}n{n:03};")).collect();
        assert_eq!(
            text, expect,
            "chaos-{w}: each append exactly once, in order"
        );
    }
    chaos.shutdown().await;
    Ok(())
}

fn perf(v: &Value, logger: &str, counter: &str) -> u64 {
    v[logger][counter].as_u64().unwrap_or(0)
}

async fn admin_and_stats(c: &Cluster, objects: usize) -> anyhow::Result<()> {
    let mut op_w = 0;
    let mut subop_w = 0;
    for osd in 0..3 {
        let name = format!("osd.{osd}");
        let d = c.admin(&name, "perf dump")?;
        op_w += perf(&d, "osd", "op_w");
        subop_w += perf(&d, "osd", "subop_w");
        assert!(
            d["osd"]["op_w_latency"]["avgcount"].is_u64(),
            "{name}: op_w_latency is a time average"
        );
        assert!(
            d["objectstore"]["txns"].as_u64().unwrap_or(0) > 0,
            "{name}: objectstore logger"
        );
        assert!(perf(&d, "osd", "numpg") > 0);
        assert!(perf(&d, "osd", "stat_bytes") > 0);
        let s = c.admin(&name, "perf schema")?;
        assert_eq!(s["osd"]["op_latency"]["type"], json!(5));
        assert_eq!(s["osd"]["op"]["type"], json!(10));
        assert_eq!(s["osd"]["numpg"]["type"], json!(2));
        assert!(s["recoverystate_perf"]["getinfo_latency"].is_object());
        let st = c.admin(&name, "status")?;
        assert_eq!(st["whoami"], json!(osd));
        assert_eq!(st["state"], json!("active"));
        assert!(st["newest_map"].as_u64().unwrap_or(0) >= st["oldest_map"].as_u64().unwrap_or(0));
        assert!(st["num_pgs"].as_u64().unwrap_or(0) > 0);
        assert!(st["cluster_fsid"].as_str().is_some() && st["osd_fsid"].as_str().is_some());
        let cfg = c.admin(&name, "config show")?;
        assert_eq!(cfg["osd_heartbeat_interval"], json!("1"));
        assert_eq!(cfg["name"], json!(name));
        let ops = c.admin(&name, "dump_ops_in_flight")?;
        assert!(ops["ops"].is_array() && ops["num_ops"].is_u64());
    }
    assert!(
        op_w >= objects as u64,
        "client writes counted on primaries: {op_w}"
    );
    assert!(
        subop_w >= 2 * objects as u64,
        "replicated writes counted: {subop_w}"
    );
    // PG stats reach the mon: pg stat, pg dump, status.
    wait_for(
        "pg stats with every object",
        Duration::from_secs(30),
        || async {
            let s = c.mon_command(json!({"prefix": "pg stat"})).await.ok()?;
            (s["num_objects"].as_u64()? >= objects as u64).then_some(())
        },
    )
    .await?;
    let s = c.mon_command(json!({"prefix": "pg stat"})).await?;
    assert_eq!(s["num_pgs"], json!(PG_NUM));
    assert_eq!(
        s["num_pg_by_state"],
        json!([{"name": "active+clean", "num": PG_NUM}])
    );
    let st = c.mon_command(json!({"prefix": "status"})).await?;
    assert_eq!(st["pgmap"]["num_pgs"], json!(PG_NUM));
    assert_eq!(
        st["pgmap"]["pgs_by_state"],
        json!([{"state_name": "active+clean", "count": PG_NUM}])
    );
    let dump = c.pg_stats().await?;
    assert_eq!(dump.len(), PG_NUM as usize);
    for p in &dump {
        assert_eq!(p["acting"].as_array().map(Vec::len), Some(3), "{p}");
        assert!(p["version"].as_str().is_some_and(|v| v.contains('\'')));
    }
    let brief = c
        .mon_command(json!({"prefix": "pg dump", "dumpcontents": ["pgs_brief"]}))
        .await?;
    assert_eq!(
        brief["pg_stats"].as_array().map(Vec::len),
        Some(PG_NUM as usize)
    );
    Ok(())
}

/// Stops the OSDs and checks with the offline tool that every acting OSD
/// of each PG holds each of its objects with the right size.
async fn offline_check(
    c: &Cluster,
    rados: &Rados,
    expect: &BTreeMap<String, u64>,
) -> anyhow::Result<()> {
    let map = rados.osdmap();
    let pool = map.pool_by_name(POOL)?.id;
    for osd in 0..3 {
        c.stop(&format!("osd.{osd}"))?;
    }
    let mut held: BTreeMap<u32, BTreeMap<String, u64>> = BTreeMap::new();
    for osd in 0..3u32 {
        let colls = c.objectstore_tool(osd, &["list-collections"])?;
        let colls: Vec<String> = serde_json::from_value(colls)?;
        let mut objs = BTreeMap::new();
        for coll in colls.iter().filter(|c| c.starts_with(&format!("{pool}."))) {
            let list = c.objectstore_tool(osd, &["list", coll])?;
            for e in list.as_array().cloned().unwrap_or_default() {
                let name = e["name"].as_str().unwrap_or_default().to_string();
                if name.starts_with('\0') {
                    continue;
                }
                objs.insert(name, e["size_bytes"].as_u64().unwrap_or(u64::MAX));
            }
        }
        held.insert(osd, objs);
        let fsck = c.run_bin(
            "kalmar-objectstore-tool",
            &["--device", &c.device(osd).display().to_string(), "fsck"],
            Duration::from_secs(120),
        )?;
        assert!(
            fsck.status.success(),
            "fsck of osd.{osd}: {}",
            String::from_utf8_lossy(&fsck.stdout)
        );
    }
    let mut checked = 0;
    for (name, size) in expect {
        let pg = map.object_to_pg(pool, name)?;
        let acting: BTreeSet<i32> = map.pg_to_up_acting_osds(pg)?.acting.into_iter().collect();
        assert_eq!(acting.len(), 3);
        for osd in acting {
            assert_eq!(
                held[&(osd as u32)].get(name),
                Some(size),
                "{name} on osd.{osd}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, expect.len() * 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_io_on_three_osds() -> anyhow::Result<()> {
    let c = Cluster::start(ClusterOpts::default()).await?;
    c.create_pool(POOL, PG_NUM, 3, 2).await?;
    c.wait_pgs(1, PG_NUM, &["active", "clean"], Duration::from_secs(60))
        .await?;
    let rados = c.client().await?;
    let io = wait_for(
        "the pool in the client's map",
        Duration::from_secs(30),
        || async { rados.ioctx(POOL).ok() },
    )
    .await?;

    let sizes = sizes(2024);
    put_all(&io, &sizes).await?;
    check_all(&io, &sizes).await?;
    xattrs_and_omap(&io).await?;
    other_ops(&io).await?;
    bad_input(&c, &rados, &io).await?;
    resends(&c, &rados, &io).await?;

    let mut expect: BTreeMap<String, u64> = sizes
        .iter()
        .enumerate()
        .map(|(i, &s)| (format!("object-{i:04}"), s as u64))
        .collect();
    expect.insert("meta-object".into(), 0);
    expect.insert("n".repeat(2048), 9);
    expect.insert("append-once".into(), 20);
    for w in 0..4 {
        expect.insert(
            format!("chaos-{w}"),
            (0..50).map(|n| format!("w{w}n{n:03};").len() as u64).sum(),
        );
    }
    for i in 0..20 {
        expect.insert(
            format!("after-garbage-{i}"),
            format!("after-garbage-{i}").len() as u64,
        );
    }
    let listed: BTreeSet<String> = io.list_objects().await?.into_iter().collect();
    assert_eq!(
        listed,
        expect.keys().cloned().collect::<BTreeSet<_>>(),
        "ls lists exactly the objects"
    );

    admin_and_stats(&c, expect.len()).await?;
    offline_check(&c, &rados, &expect).await?;
    rados.shutdown().await;
    Ok(())
}
