//! Scrub, deep scrub and repair on a 3-OSD cluster (pool size 3), with
//! damage planted offline in one OSD's store:
//! - on a replica: a copy rewritten with one byte flipped (consistently
//!   checksummed, so only a comparison finds it), a data block corrupted
//!   on the device (its checksum fails: `read_error`), an object removed
//!   (`missing`) and one truncated (`size_mismatch`). A shallow scrub
//!   finds the last two, a deep scrub all four; `list-inconsistent-obj`
//!   names each object and the bad shard; reads never return bad bytes;
//!   `pg repair` rewrites the bad copies and the PG is active+clean, every
//!   copy byte-identical (checked offline). While the PG is inconsistent,
//!   `health detail` shows `OSD_SCRUB_ERRORS` and `PG_DAMAGED`; they go
//!   once the repair is done. The findings are stored: after a restart of
//!   the primary, `list-inconsistent-obj` still names the objects.
//! - on the primary: a corrupted block and a flipped byte; the deep scrub
//!   picks a replica as authoritative; a read of either finds the copy
//!   corrupt (block checksum, data digest of the object info), recovers it
//!   from a replica and returns the right bytes.
//! - `pg PGID query` shows the state history and the scrubber; unknown
//!   PGIDs are clear errors.
//! - A scheduled deep scrub runs by itself when `osd_deep_scrub_interval`
//!   passes.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::process::Output;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kalmar_client::{IoCtx, Rados};
use kalmar_maps::{OsdId, PgId};
use kalmar_proto::client::{errno, OsdOp};
use kalmar_tests::{wait_for, Cluster, ClusterOpts};
use serde_json::{json, Value};

const POOL: &str = "scrubbed";
const PG_NUM: u32 = 2;
const OBJECTS: usize = 40;
/// Objects per scrub chunk.
const CHUNK_OBJECTS: usize = 4;

fn ok(c: &Cluster, args: &[&str]) -> anyhow::Result<Output> {
    let out = c.kalmar(args)?;
    anyhow::ensure!(
        out.status.success(),
        "kalmar {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// `kalmar-objectstore-tool --device <osd.N's> ARGS` (the OSD is stopped).
fn tool(c: &Cluster, osd: OsdId, args: &[&str]) -> anyhow::Result<Output> {
    let dev = c.device(osd as u32).display().to_string();
    let mut a = vec!["--device", dev.as_str()];
    a.extend_from_slice(args);
    let out = c.run_bin("kalmar-objectstore-tool", &a, Duration::from_secs(60))?;
    anyhow::ensure!(
        out.status.success(),
        "objectstore-tool {args:?} on osd.{osd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

fn body(i: usize) -> Bytes {
    // 5 KiB .. 44 KiB: most objects span several 4 KiB blocks.
    let len = 5000 + i * 1000;
    Bytes::from(
        (0..len)
            .map(|j| ((i * 31 + j) % 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn coll(pg: PgId) -> String {
    format!("{}.{:x}_head", pg.pool, pg.seed)
}

/// Rewrites `oid` in osd's store with `f` applied to its bytes.
fn rewrite(
    c: &Cluster,
    osd: OsdId,
    pg: PgId,
    oid: &str,
    f: impl FnOnce(&mut Vec<u8>),
) -> anyhow::Result<()> {
    let file = c.dir().join(format!("{oid}.osd{osd}"));
    let path = file.display().to_string();
    tool(c, osd, &["get", &coll(pg), oid, &path])?;
    let mut data = std::fs::read(&file)?;
    f(&mut data);
    std::fs::write(&file, &data)?;
    tool(c, osd, &["put", &coll(pg), oid, &path])?;
    Ok(())
}

/// Flips a byte of `oid`'s second data block on osd's device itself: the
/// block no longer matches its checksum.
fn corrupt_block(c: &Cluster, osd: OsdId, pg: PgId, oid: &str) -> anyhow::Result<()> {
    let out = tool(c, osd, &["--format", "json", "blocks", &coll(pg), oid])?;
    let blocks: Value = serde_json::from_slice(&out.stdout)?;
    let at = blocks[1]["device_offset"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no second block of {oid}: {blocks}"))?
        + 100;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(c.device(osd as u32))?;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at)?;
    b[0] ^= 0x10;
    f.write_all_at(&b, at)?;
    f.sync_all()?;
    Ok(())
}

/// `up_from` of an OSD in the mon's map, and the map's epoch.
async fn up_from(c: &Cluster, osd: OsdId) -> anyhow::Result<(u64, u64)> {
    let d = c.mon_command(json!({"prefix": "osd dump"})).await?;
    let o = d["osds"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["osd"].as_i64() == Some(osd.into())))
        .cloned()
        .unwrap_or_default();
    let up = o["up"].as_i64() == Some(1);
    Ok((
        if up {
            o["up_from"].as_u64().unwrap_or(0)
        } else {
            0
        },
        d["epoch"].as_u64().unwrap_or(0),
    ))
}

/// Stops `osd`, runs `damage` on its store, restarts it, and waits until
/// the PG's primary has seen it come back and the PG is in `settled`
/// (`active+clean`, or that and `inconsistent`) again.
async fn with_osd_stopped(
    c: &Cluster,
    rados: &Rados,
    pg: PgId,
    osd: OsdId,
    settled: &str,
    damage: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (before, _) = up_from(c, osd).await?;
    c.stop(&format!("osd.{osd}"))?;
    damage()?;
    c.restart_missing().await?;
    let epoch = wait_for(
        &format!("osd.{osd} up again"),
        Duration::from_secs(60),
        || async {
            let (now, epoch) = up_from(c, osd).await.ok()?;
            (now > before).then_some(epoch)
        },
    )
    .await?;
    wait_for(
        &format!("pg {pg} {settled} after osd.{osd} returned"),
        Duration::from_secs(90),
        || async {
            let q = query(rados, pg).await.ok()?;
            let seen = q["epoch"].as_u64().unwrap_or(0) >= epoch;
            let full = q["acting"].as_array().map_or(0, Vec::len) == 3;
            (seen && full && q["state"] == settled).then_some(())
        },
    )
    .await
}

async fn query(rados: &Rados, pg: PgId) -> anyhow::Result<Value> {
    Ok(rados.pg_command(pg, OsdOp::PgQuery).await?)
}

/// Runs `kalmar pg <what> PGID` and waits until that scrub finished (and,
/// for a repair, until the PG is clean again).
async fn scrub(c: &Cluster, rados: &Rados, pg: PgId, what: &str) -> anyhow::Result<Value> {
    let stamp_key = if what == "scrub" {
        "last_scrub_stamp_us"
    } else {
        "last_deep_scrub_stamp_us"
    };
    let before = query(rados, pg).await?["info"]["history"][stamp_key]
        .as_u64()
        .unwrap_or(0);
    let pgid = pg.to_string();
    let out = ok(c, &["pg", what, &pgid])?;
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        said.starts_with(&format!("instructing pg {pgid} on osd.")) && said.contains(what),
        "{said}"
    );
    wait_for(
        &format!("pg {pgid} {what} to finish"),
        Duration::from_secs(60),
        || async {
            let q = query(rados, pg).await.ok()?;
            let done = q["info"]["history"][stamp_key].as_u64().unwrap_or(0) > before
                && q["scrubber"]["active"] == Value::Bool(false);
            let state = q["state"].as_str().unwrap_or("").to_string();
            let settled = what != "repair" || state == "active+clean";
            (done && settled).then_some(q)
        },
    )
    .await
}

/// `rados list-inconsistent-obj PGID`, by object name.
fn inconsistents(c: &Cluster, pg: PgId) -> anyhow::Result<BTreeMap<String, Value>> {
    let out = ok(
        c,
        &[
            "-f",
            "json",
            "rados",
            "list-inconsistent-obj",
            &pg.to_string(),
        ],
    )?;
    let v: Value = serde_json::from_slice(&out.stdout)?;
    anyhow::ensure!(v["epoch"].as_u64().is_some(), "no epoch in {v}");
    Ok(v["inconsistents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i["object"]["name"].as_str().unwrap_or("").to_string(), i))
        .collect())
}

/// `kalmar health detail --format json` until `f` accepts it.
async fn wait_health<T>(
    c: &Cluster,
    what: &str,
    f: impl Fn(&Value) -> Option<T>,
) -> anyhow::Result<T> {
    wait_for(what, Duration::from_secs(30), || async {
        let out = ok(c, &["health", "detail", "--format", "json"]).ok()?;
        f(&serde_json::from_slice(&out.stdout).ok()?)
    })
    .await
}

fn shard(inc: &Value, osd: OsdId) -> &Value {
    inc["shards"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["osd"].as_i64() == Some(osd.into())))
        .unwrap_or(&Value::Null)
}

fn errors(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Every object reads back as written: a bad copy never reaches a client
/// (an error is allowed where no good copy is readable by the primary).
async fn check_reads(io: &IoCtx, expect: &BTreeMap<String, Bytes>) -> anyhow::Result<()> {
    for (k, v) in expect {
        match io.read(k, 0, 0).await {
            Ok(got) => assert!(got == v, "{k}: a read returned wrong bytes"),
            Err(e) => assert_eq!(e.errno(), errno::EIO, "{k}: {e}"),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_deep_scrub_and_repair() -> anyhow::Result<()> {
    // Scheduled scrubs off: only the ones the test asks for run. Small
    // chunks with a pause between them: a scrub takes several rounds.
    let opts = ClusterOpts::default()
        .set("osd_scrub_min_interval", "0")
        .set("osd_deep_scrub_interval", "0")
        .set("osd_scrub_chunk_max", &CHUNK_OBJECTS.to_string())
        .set("osd_scrub_sleep", "0.2");
    let c = Cluster::start(opts).await?;
    let (rados, io) = c.ready_pool(POOL, PG_NUM, 3, 2).await?;
    let mut expect: BTreeMap<String, Bytes> = BTreeMap::new();
    for i in 0..OBJECTS {
        let (k, v) = (format!("obj-{i:03}"), body(i));
        io.write_full(&k, v.clone()).await?;
        if i % 3 == 0 {
            io.setxattr(&k, "tag", Bytes::from(format!("t{i}"))).await?;
            io.omap_set(&k, vec![(format!("key{i}"), Bytes::from("value"))])
                .await?;
        }
        expect.insert(k, v);
    }
    // The PG with most objects, its primary and a replica.
    let map = rados.osdmap();
    let pool = map.pool_by_name(POOL)?.id;
    let mut by_pg: BTreeMap<PgId, Vec<String>> = BTreeMap::new();
    for k in expect.keys() {
        by_pg
            .entry(map.object_to_pg(pool, k)?)
            .or_default()
            .push(k.clone());
    }
    let (pg, names) = by_pg
        .iter()
        .max_by_key(|(_, v)| v.len())
        .map(|(p, v)| (*p, v.clone()))
        .expect("objects");
    assert!(names.len() >= 8, "{names:?}");
    let acting = map.pg_to_up_acting_osds(pg)?.acting;
    let (primary, replica) = (acting[0], acting[1]);
    let pgid = pg.to_string();

    // No scrub yet: no scrub information.
    let none = c.kalmar(&["rados", "list-inconsistent-obj", &pgid])?;
    assert!(!none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stderr)
            .contains(&format!("No scrub information available for pg {pgid}")),
        "{none:?}"
    );

    // Damage on the replica, planted while it is stopped.
    let [flipped, broken, removed, truncated] = [&names[0], &names[1], &names[2], &names[3]];
    with_osd_stopped(&c, &rados, pg, replica, "active+clean", || {
        rewrite(&c, replica, pg, flipped, |d| d[1234] ^= 0x01)?;
        corrupt_block(&c, replica, pg, broken)?;
        tool(&c, replica, &["rm", &coll(pg), removed])?;
        rewrite(&c, replica, pg, truncated, |d| d.truncate(d.len() / 2))
    })
    .await?;
    check_reads(&io, &expect).await?;

    // A shallow scrub finds what needs no data read.
    let q = scrub(&c, &rados, pg, "scrub").await?;
    assert_eq!(q["state"], "active+clean+inconsistent", "{}", q["state"]);
    let found = inconsistents(&c, pg)?;
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        vec![removed, truncated],
        "{found:?}"
    );
    assert_eq!(
        errors(&shard(&found[removed], replica)["errors"]),
        ["missing"]
    );
    assert_eq!(shard(&found[removed], primary)["primary"], true);
    assert!(errors(&found[truncated]["errors"]).contains(&"size_mismatch".to_string()));
    assert_eq!(
        errors(&shard(&found[truncated], replica)["errors"]),
        ["size_mismatch_info", "obj_size_info_mismatch"]
    );
    assert!(errors(&shard(&found[truncated], primary)["errors"]).is_empty());

    // A deep scrub finds the data damage too, and names the bad shard.
    let q = scrub(&c, &rados, pg, "deep-scrub").await?;
    assert_eq!(q["state"], "active+clean+inconsistent");
    assert_eq!(q["info"]["stats"]["num_scrub_errors"], 4);
    let found = inconsistents(&c, pg)?;
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        vec![flipped, broken, removed, truncated]
    );
    let f = &found[flipped];
    assert_eq!(errors(&f["errors"]), ["data_digest_mismatch"]);
    assert_eq!(
        errors(&shard(f, replica)["errors"]),
        ["data_digest_mismatch_info"]
    );
    assert_ne!(
        shard(f, replica)["data_digest"],
        shard(f, primary)["data_digest"]
    );
    assert_eq!(
        shard(f, acting[2])["data_digest"],
        shard(f, primary)["data_digest"]
    );
    let b = &found[broken];
    assert_eq!(errors(&shard(b, replica)["errors"]), ["read_error"]);
    assert_eq!(errors(&b["union_shard_errors"]), ["read_error"]);
    assert!(errors(&shard(b, primary)["errors"]).is_empty());
    // The mon's pg dump shows it too.
    wait_for(
        "pg dump to show inconsistent",
        Duration::from_secs(30),
        || async {
            let stats = c.pg_stats().await.ok()?;
            stats
                .iter()
                .any(|p| {
                    p["pgid"] == pgid.as_str()
                        && p["state"].as_str().unwrap_or("").contains("inconsistent")
                })
                .then_some(())
        },
    )
    .await?;
    check_reads(&io, &expect).await?;

    // Health: the scrub errors and the damaged PG, as Ceph words them
    // (once the mon has the report of the finished deep scrub: the
    // shallow one left 2 errors).
    let h = wait_health(&c, "OSD_SCRUB_ERRORS and PG_DAMAGED", |v| {
        let checks = &v["checks"];
        let settled = checks["OSD_SCRUB_ERRORS"]["summary"]["message"] == "4 scrub errors"
            && !checks["PG_DAMAGED"].to_string().contains("scrubbing");
        settled.then(|| v.clone())
    })
    .await?;
    assert_eq!(h["status"], "HEALTH_ERR", "{h}");
    let errs = &h["checks"]["OSD_SCRUB_ERRORS"];
    assert_eq!(errs["severity"], "HEALTH_ERR");
    assert_eq!(errs["summary"]["message"], "4 scrub errors");
    let dmg = &h["checks"]["PG_DAMAGED"];
    assert_eq!(dmg["severity"], "HEALTH_ERR");
    assert_eq!(
        dmg["summary"]["message"],
        "Possible data damage: 1 pg inconsistent"
    );
    let acting_text = format!(
        "[{}]",
        acting
            .iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(
        dmg["detail"],
        json!([{"message": format!("pg {pgid} is active+clean+inconsistent, acting {acting_text}")}])
    );
    let out = ok(&c, &["status"])?;
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.contains("4 scrub errors")
            && status.contains("Possible data damage: 1 pg inconsistent"),
        "{status}"
    );

    // The findings are stored: a restarted primary still lists them.
    with_osd_stopped(&c, &rados, pg, primary, "active+clean+inconsistent", || {
        Ok(())
    })
    .await?;
    let q = query(&rados, pg).await?;
    assert_eq!(
        q["acting"][0].as_i64(),
        Some(primary.into()),
        "primary again"
    );
    let again = inconsistents(&c, pg)?;
    assert_eq!(again, found, "the same findings after the restart");

    // pg query: the state history and the scrubber.
    let q = query(&rados, pg).await?;
    let states: Vec<&str> = q["recovery_state"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(states.first(), Some(&"Started/Primary/Active/Clean"));
    assert!(
        states.contains(&"Started/Primary/Peering/GetInfo"),
        "{states:?}"
    );
    assert!(q["recovery_state"][0]["enter_time"].as_str().is_some());
    assert_eq!(q["scrubber"]["last_result"]["inconsistent_objects"], 4);
    let out = ok(&c, &["pg", &pgid, "query"])?;
    let cli: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(cli["acting"], serde_json::json!(acting));

    // Repair: the bad copies are rewritten from the good ones, and the
    // health checks go.
    scrub(&c, &rados, pg, "repair").await?;
    wait_health(&c, "the scrub health checks to clear", |v| {
        let checks = &v["checks"];
        (checks.get("OSD_SCRUB_ERRORS").is_none() && checks.get("PG_DAMAGED").is_none())
            .then_some(())
    })
    .await?;
    let q = scrub(&c, &rados, pg, "deep-scrub").await?;
    assert_eq!(q["state"], "active+clean");
    assert_eq!(q["info"]["stats"]["num_scrub_errors"], 0);
    assert!(inconsistents(&c, pg)?.is_empty());
    check_reads(&io, &expect).await?;

    // Writes go on during a scrub (each chunk holds back only the writes
    // to its own range, until every copy's map of it is taken) and never
    // make the copies look inconsistent.
    let writer = {
        let (io, names) = (io.clone(), names.clone());
        tokio::spawn(async move {
            let mut last = BTreeMap::new();
            let end = Instant::now() + Duration::from_secs(3);
            let mut round = 0usize;
            while Instant::now() < end {
                for k in &names {
                    let v = Bytes::from(format!("{k}-round-{round}-").repeat(400));
                    io.write_full(k, v.clone()).await?;
                    last.insert(k.clone(), v);
                }
                round += 1;
            }
            anyhow::Ok((last, round))
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let q = scrub(&c, &rados, pg, "deep-scrub").await?;
    let (written, rounds) = writer.await??;
    assert!(rounds >= 2, "the writer ran through the scrub");
    let d = c.admin(&format!("osd.{primary}"), "perf dump")?;
    eprintln!(
        "writes delayed by scrub chunks: {}",
        d["osd_scrub"]["scrub_writes_delayed"]
    );
    assert_eq!(q["state"], "active+clean");
    assert!(inconsistents(&c, pg)?.is_empty());
    expect.extend(written);
    check_reads(&io, &expect).await?;

    // Damage on the primary: a corrupted block and a flipped byte.
    let [broken2, flipped2] = [&names[4], &names[5]];
    with_osd_stopped(&c, &rados, pg, primary, "active+clean", || {
        corrupt_block(&c, primary, pg, broken2)?;
        rewrite(&c, primary, pg, flipped2, |d| d[99] ^= 0x80)
    })
    .await?;
    let q = query(&rados, pg).await?;
    assert_eq!(
        q["acting"][0].as_i64(),
        Some(primary.into()),
        "primary again"
    );
    scrub(&c, &rados, pg, "deep-scrub").await?;
    let found = inconsistents(&c, pg)?;
    assert_eq!(found.keys().collect::<Vec<_>>(), vec![broken2, flipped2]);
    assert_eq!(
        errors(&shard(&found[broken2], primary)["errors"]),
        ["read_error"]
    );
    assert_eq!(
        errors(&shard(&found[flipped2], primary)["errors"]),
        ["data_digest_mismatch_info"]
    );
    // Reads of the primary's bad copies are served after the primary
    // recovered the object from a replica.
    for k in [broken2, flipped2] {
        assert!(
            io.read(k, 0, 0).await? == expect[k],
            "{k} read from the primary"
        );
    }
    let d = c.admin(&format!("osd.{primary}"), "perf dump")?;
    assert_eq!(d["osd_scrub"]["read_repairs"], 2, "{}", d["osd_scrub"]);
    check_reads(&io, &expect).await?;
    scrub(&c, &rados, pg, "repair").await?;
    let q = scrub(&c, &rados, pg, "deep-scrub").await?;
    assert_eq!(q["state"], "active+clean");
    assert!(inconsistents(&c, pg)?.is_empty());
    for k in &names {
        assert!(io.read(k, 0, 0).await? == expect[k], "{k} after repair");
    }

    // Unknown PGs are clear errors.
    for bad in [format!("{pool}.{:x}", PG_NUM + 5), "99.0".to_string()] {
        for args in [
            vec!["pg", bad.as_str(), "query"],
            vec!["pg", "scrub", bad.as_str()],
        ] {
            let out = c.kalmar(&args)?;
            assert_eq!(out.status.code(), Some(errno::ENOENT), "{args:?}");
            assert!(
                String::from_utf8_lossy(&out.stderr)
                    .contains(&format!("Error ENOENT: pg {bad} does not exist")),
                "{out:?}"
            );
        }
    }
    let out = c.kalmar(&["pg", "scrub", "x.y"])?;
    assert_eq!(out.status.code(), Some(errno::EINVAL));

    // Offline: every copy of the PG is byte-identical to what was written.
    rados.shutdown().await;
    for &osd in &acting {
        c.stop(&format!("osd.{osd}"))?;
        for k in &names {
            let file = c.dir().join(format!("check-{k}.osd{osd}"));
            tool(&c, osd, &["get", &coll(pg), k, &file.display().to_string()])?;
            assert!(
                std::fs::read(&file)? == expect[k],
                "{k} on osd.{osd} differs after repair"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_deep_scrub() -> anyhow::Result<()> {
    let opts = ClusterOpts {
        osds: 1,
        ..ClusterOpts::default()
    }
    .set("osd_scrub_min_interval", "0")
    .set("osd_deep_scrub_interval", "3");
    let c = Cluster::start(opts).await?;
    c.create_pool(POOL, 1, 1, 1).await?;
    c.wait_pgs(1, 1, &["active", "clean"], Duration::from_secs(60))
        .await?;
    let rados = c.client().await?;
    let io = wait_for("the pool", Duration::from_secs(30), || async {
        rados.ioctx(POOL).ok()
    })
    .await?;
    io.write_full("x", body(1)).await?;
    let pg = PgId::new(1, 0);
    let stamps = wait_for(
        "a scheduled deep scrub",
        Duration::from_secs(60),
        || async {
            let q = query(&rados, pg).await.ok()?;
            let h = &q["info"]["history"];
            let deep = h["last_deep_scrub_stamp_us"].as_u64()?;
            (deep > 0).then(|| (deep, h["last_scrub_stamp_us"].as_u64().unwrap_or(0)))
        },
    )
    .await?;
    assert_eq!(stamps.0, stamps.1, "a deep scrub is also a scrub");
    let d = c.admin("osd.0", "perf dump")?;
    assert!(
        d["osd_scrub"]["scrubs_completed"].as_u64() >= Some(1),
        "{}",
        d["osd_scrub"]
    );
    assert!(d["osd_scrub"]["scrub_read_bytes"].as_u64() >= Some(body(1).len() as u64));
    rados.shutdown().await;
    Ok(())
}
