//! Objects larger than one message may carry (the client's 64 MiB frame
//! limit), up to `osd_max_object_size` (128 MiB), on a 3-OSD cluster:
//!
//! - `kalmar rados put` / `get` move a 100 MiB object in pieces, byte for
//!   byte;
//! - a whole-object read of it through the client library fails at once
//!   with EMSGSIZE and a message saying what to do (the OSD refuses a reply
//!   the session cannot carry, and logs it), not at the op timeout; the
//!   OSD keeps serving;
//! - a 120 MiB object written while a replica is down is recovered to it
//!   (chunked pushes; no size limit on recovery, whatever the legacy
//!   `osd_recovery_max_object_size` says);
//! - an object whose primary copy cannot be read when it is pushed is
//!   pulled from another copy first (Ceph's primary_error), not left to
//!   stall its PG;
//! - the PGs go clean; offline, every object is on all three OSDs, byte
//!   for byte.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kalmar_maps::PgId;
use kalmar_proto::client::errno;
use kalmar_tests::{placement_problems, wait_for, Cluster, ClusterOpts, Placement, StoredObject};
use serde_json::json;

const POOL: &str = "big";
const PG_NUM: u32 = 8;
const MIB: usize = 1 << 20;
/// Client writes of the 120 MiB object, like `rados put` would send.
const PIECE: usize = 4 * MIB;

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|j| ((j / 4096 * 31 + j + seed) % 251) as u8)
        .collect()
}

fn kalmar(c: &Cluster, args: &[&str]) -> anyhow::Result<()> {
    c.kalmar_ok(args).map(drop)
}

/// Flips a byte in the second data block of `oid` on the stopped osd's
/// device: the block no longer matches its checksum, so reading it fails.
fn corrupt_block(c: &Cluster, osd: u32, pg: PgId, oid: &str) -> anyhow::Result<()> {
    let coll = format!("{}.{:x}_head", pg.pool, pg.seed);
    let blocks = c.objectstore_tool(osd, &["blocks", &coll, oid])?;
    let at = blocks[1]["device_offset"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no second block of {oid}: {blocks}"))?
        + 100;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(c.device(osd))?;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at)?;
    b[0] ^= 0x10;
    f.write_all_at(&b, at)?;
    f.sync_all()?;
    Ok(())
}

/// Waits until the mon's map shows osd.`osd` up (or down); returns the
/// map's epoch then.
async fn wait_osd(c: &Cluster, osd: u32, up: bool) -> anyhow::Result<u64> {
    let what = format!("osd.{osd} to be {}", if up { "up" } else { "down" });
    wait_for(&what, Duration::from_secs(60), || async {
        let d = c.mon_command(json!({"prefix": "osd dump"})).await.ok()?;
        let is_up = d["osds"]
            .as_array()?
            .iter()
            .find(|o| o["osd"].as_u64() == Some(osd.into()))
            .map(|o| o["up"].as_i64() == Some(1))?;
        (is_up == up).then(|| d["epoch"].as_u64()).flatten()
    })
    .await
}

/// Waits until every PG of the pool reports active from map `epoch` on
/// (so no report from before that epoch counts).
async fn active_since(c: &Cluster, epoch: u64) -> anyhow::Result<()> {
    wait_for(
        "the PGs to be active again",
        Duration::from_secs(60),
        || async {
            let stats = c.pg_stats().await.ok()?;
            let good = stats
                .iter()
                .filter(|p| p["pgid"].as_str().is_some_and(|id| id.starts_with("1.")))
                .filter(|p| p["reported_epoch"].as_u64().is_some_and(|e| e >= epoch))
                .filter(|p| {
                    p["state"]
                        .as_str()
                        .is_some_and(|st| st.split('+').any(|s| s == "active"))
                })
                .count();
            (good == PG_NUM as usize).then_some(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_objects_get_put_read_and_recover() -> anyhow::Result<()> {
    // A legacy setting below the big object: recovery has no size limit
    // any more, so it must not matter.
    let opts = ClusterOpts::default().set("osd_recovery_max_object_size", &(64 * MIB).to_string());
    let c = Cluster::start(opts).await?;
    c.create_pool(POOL, PG_NUM, 3, 2).await?;
    c.wait_pgs(1, PG_NUM, &["active", "clean"], Duration::from_secs(60))
        .await?;

    // rados put / get of 100 MiB.
    let body = pattern(100 * MIB, 1);
    let src = c.dir().join("big.in");
    let dst = c.dir().join("big.out");
    std::fs::write(&src, &body)?;
    kalmar(
        &c,
        &[
            "rados",
            "-p",
            POOL,
            "put",
            "big100",
            &src.display().to_string(),
        ],
    )?;
    kalmar(
        &c,
        &[
            "rados",
            "-p",
            POOL,
            "get",
            "big100",
            &dst.display().to_string(),
        ],
    )?;
    let got = std::fs::read(&dst)?;
    assert!(
        got == body,
        "rados get returned {} bytes, put stored {}",
        got.len(),
        body.len()
    );
    std::fs::remove_file(&src)?;
    std::fs::remove_file(&dst)?;

    // A whole-object read cannot fit one reply: a clear error at once.
    let rados = c.client().await?;
    let io = wait_for("the pool", Duration::from_secs(30), || async {
        rados.ioctx(POOL).ok()
    })
    .await?;
    let t0 = Instant::now();
    let err = io
        .read("big100", 0, 0)
        .await
        .expect_err("a 100 MiB reply exceeds the client's message limit");
    let took = t0.elapsed();
    eprintln!("whole-object read: {err} after {} ms", took.as_millis());
    assert_eq!(err.errno(), errno::EMSGSIZE, "{err}");
    assert!(err.to_string().contains("read in smaller pieces"), "{err}");
    assert!(
        took < Duration::from_secs(10),
        "answered in {} ms, not at the 60 s op timeout",
        took.as_millis()
    );
    // An explicit length too large for one reply likewise.
    let err = io
        .read("big100", 0, 80 * MIB as u64)
        .await
        .expect_err("80 MiB in one reply");
    assert_eq!(err.errno(), errno::EMSGSIZE, "{err}");
    // The OSD keeps serving: pieces, at the end, and a small object.
    let tail = io.read("big100", (100 * MIB - 10) as u64, 0).await?;
    assert_eq!(&tail[..], &body[100 * MIB - 10..]);
    let piece = io.read("big100", (50 * MIB) as u64, PIECE as u64).await?;
    assert_eq!(&piece[..], &body[50 * MIB..50 * MIB + PIECE]);
    io.write_full("small", Bytes::from_static(b"still serving"))
        .await?;
    assert_eq!(&io.read("small", 0, 0).await?[..], b"still serving");
    let logged = (0..3).any(|o| {
        std::fs::read_to_string(c.dir().join(format!("osd.{o}.log")))
            .is_ok_and(|l| l.contains("read refused") && l.contains("big100"))
    });
    assert!(logged, "the primary logs the refused read");

    // While osd.2 (a replica of every PG) is down: 120 MiB are written,
    // and a small object whose copy on its primary, osd.0, then rots.
    let map = rados.osdmap();
    let pool = map.pool_by_name(POOL)?.id;
    let primary_of = |name: &str| -> anyhow::Result<(PgId, i32)> {
        let pg = map.object_to_pg(pool, name)?;
        Ok((pg, map.pg_to_up_acting_osds(pg)?.acting_primary))
    };
    let (rot, rot_pg) = (0..)
        .map(|i| format!("rots-on-primary-{i}"))
        .find_map(|n| match primary_of(&n) {
            Ok((pg, 0)) => Some((n, pg)),
            _ => None,
        })
        .unwrap_or_default();
    // Frozen, not stopped: it stays down while osd.0 is restarted alone.
    c.signal("osd.2", libc::SIGSTOP)?;
    c.wait_pgs(
        1,
        PG_NUM,
        &["active", "undersized", "degraded"],
        Duration::from_secs(60),
    )
    .await?;
    let big = Bytes::from(pattern(120 * MIB, 2));
    for (i, p) in big.chunks(PIECE).enumerate() {
        io.write("big120", (i * PIECE) as u64, big.slice_ref(p))
            .await?;
    }
    assert_eq!(io.stat("big120").await?.size_bytes, big.len() as u64);
    let rot_body = pattern(20_000, 3);
    io.write_full(&rot, Bytes::from(rot_body.clone())).await?;
    c.stop("osd.0")?;
    // osd.1 alone cannot get it marked down (two reporters are needed).
    c.mon_command(json!({"prefix": "osd down", "ids": ["0"]}))
        .await?;
    wait_osd(&c, 0, false).await?;
    corrupt_block(&c, 0, rot_pg, &rot)?;
    // osd.0 returns first and its PGs activate with osd.1 (so osd.0 is the
    // primary that pushes the rotten copy); then osd.2 thaws: big120 is
    // recovered to it in chunks (no size limit, whatever the legacy
    // setting says), and pushing the rotten object fails to read on
    // osd.0, which pulls it from osd.1 first. vstart waits for osd.2 too,
    // so it runs alongside.
    let thaw = async {
        let back = wait_osd(&c, 0, true).await?;
        active_since(&c, back).await?;
        c.signal("osd.2", libc::SIGCONT)
    };
    let (started, thawed) = tokio::join!(c.restart_missing(), thaw);
    thawed?;
    started?;
    c.wait_pgs(1, PG_NUM, &["active", "clean"], Duration::from_secs(120))
        .await?;
    let d = c.perf_dump("osd.2")?;
    assert!(
        kalmar_tests::counter(&d, "osd", "subop_push_in_bytes") >= big.len() as u64,
        "the 120 MiB object reached osd.2 by recovery: {}",
        d["osd"]
    );
    let log0 = std::fs::read_to_string(c.dir().join("osd.0.log"))?;
    assert!(
        log0.lines()
            .any(|l| l.contains("cannot read our copy to push it") && l.contains(&rot)),
        "osd.0 found its copy of {rot} unreadable while pushing it"
    );
    assert_eq!(&io.read(&rot, 0, 0).await?[..], &rot_body[..]);
    rados.shutdown().await;

    // Offline: both big objects (and the small one) on all three OSDs.
    let obj = |v: &[u8]| StoredObject {
        size: v.len() as u64,
        crc32c: Some(crc32c::crc32c(v)),
    };
    let mut expect = Placement::new();
    expect.insert("big100".into(), (vec![0, 1, 2], obj(&body)));
    expect.insert("big120".into(), (vec![0, 1, 2], obj(&big)));
    expect.insert("small".into(), (vec![0, 1, 2], obj(b"still serving")));
    expect.insert(rot.clone(), (vec![0, 1, 2], obj(&rot_body)));
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
