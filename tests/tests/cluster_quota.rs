//! Pool quotas enforced: once a pool's reported usage reaches its quota
//! the mon flags it `full_quota` (and `full`), `rados put` fails with
//! EDQUOT and a non-zero exit, reads and removes still work, and raising
//! the quota clears the flag so writes work again.

use std::time::Duration;

use bytes::Bytes;
use kalmar_proto::client::errno;
use kalmar_tests::{wait_for, Cluster, ClusterOpts};
use serde_json::Value;

const POOL: &str = "quota";

/// The pool's `flags_names` in `osd dump --format json`.
fn pool_flags(c: &Cluster) -> anyhow::Result<String> {
    let dump: Value = serde_json::from_str(&c.kalmar_ok(&["-f", "json", "osd", "dump"])?)?;
    let pool = dump["pools"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["pool_name"] == POOL))
        .ok_or_else(|| anyhow::anyhow!("pool {POOL} not in osd dump: {dump}"))?;
    Ok(pool["flags_names"].as_str().unwrap_or_default().to_string())
}

fn has_flag(flags: &str, flag: &str) -> bool {
    flags.split(',').any(|f| f == flag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_quota_refuses_writes_until_raised() -> anyhow::Result<()> {
    // Stats every second, mon ticks every 0.5 s (the defaults of the
    // shared fixture): the flag follows the usage within ~2 s.
    let c = Cluster::start(ClusterOpts::default()).await?;
    c.create_pool(POOL, 8, 3, 2).await?;
    c.wait_pgs(1, 8, &["active", "clean"], Duration::from_secs(60))
        .await?;
    c.kalmar_ok(&["osd", "pool", "set-quota", POOL, "max_objects", "3"])?;
    let src = c.dir().join("obj.bin");
    std::fs::write(&src, vec![0x42u8; 4096])?;
    let srcs = src.display().to_string();

    // Put until refused. The OSDs report PG stats to the mon every
    // second and the mon flags the pool from those reports, so a few
    // puts past the quota may be accepted before the flag reaches the
    // OSDs (Ceph's quotas lag the same way). Never fewer than 3 succeed:
    // the flag cannot be set before the usage reaches the quota.
    let mut written = 0usize;
    let refused = loop {
        let name = format!("obj-{written}");
        let out = c.kalmar(&["rados", "-p", POOL, "put", &name, &srcs])?;
        if !out.status.success() {
            break out;
        }
        written += 1;
        anyhow::ensure!(
            written < 40,
            "40 puts accepted with max_objects 3: the quota is not enforced"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("{written} puts accepted before the refusal (max_objects 3)");
    assert!(written >= 3, "refused before the quota: {written} puts");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("Disk quota exceeded") && stderr.contains("(122)"),
        "the refusal names EDQUOT: {stderr}"
    );
    assert!(stderr.contains("reached its quota"), "{stderr}");
    assert_ne!(refused.status.code(), Some(0));

    let flags = pool_flags(&c)?;
    assert!(
        has_flag(&flags, "full_quota") && has_flag(&flags, "full"),
        "osd dump shows the pool full: {flags}"
    );
    let plain = c.kalmar_ok(&["osd", "dump"])?;
    assert!(
        plain
            .lines()
            .any(|l| l.contains(&format!("'{POOL}'")) && l.contains("max_objects 3")),
        "plain osd dump shows the quota: {plain}"
    );

    // Through the library: ops that grow the pool fail at once with
    // EDQUOT (no retry until the op timeout); shrinking works.
    let rados = c.client().await?;
    let io = rados.ioctx(POOL)?;
    let e = io
        .write_full("lib-new", Bytes::from_static(b"x"))
        .await
        .expect_err("a new object in a full_quota pool");
    assert_eq!(e.errno(), errno::EDQUOT, "{e}");
    let e = io
        .setxattr("obj-1", "k", Bytes::from_static(b"v"))
        .await
        .expect_err("an xattr set in a full_quota pool");
    assert_eq!(e.errno(), errno::EDQUOT, "{e}");
    let e = io
        .omap_set("obj-1", vec![("k".into(), Bytes::from_static(b"v"))])
        .await
        .expect_err("an omap set in a full_quota pool");
    assert_eq!(e.errno(), errno::EDQUOT, "{e}");
    io.truncate("obj-1", 100).await?;
    assert_eq!(io.stat("obj-1").await?.size_bytes, 100);

    // Reads and removes still work on a full pool.
    let stat = c.kalmar_ok(&["rados", "-p", POOL, "stat", "obj-0"])?;
    assert!(stat.contains("size 4096"), "{stat}");
    c.kalmar_ok(&["rados", "-p", POOL, "rm", "obj-0"])?;

    // Raising the quota clears the flags (once the mon re-evaluates) and
    // writes work again.
    c.kalmar_ok(&["osd", "pool", "set-quota", POOL, "max_objects", "100"])?;
    wait_for("full_quota cleared", Duration::from_secs(20), || async {
        pool_flags(&c)
            .ok()
            .filter(|f| !has_flag(f, "full_quota") && !has_flag(f, "full"))
    })
    .await?;
    c.kalmar_ok(&["rados", "-p", POOL, "put", "after-raise", &srcs])?;

    // A byte quota below the usage flags the pool again; removing every
    // quota (0) clears it.
    c.kalmar_ok(&["osd", "pool", "set-quota", POOL, "max_bytes", "4096"])?;
    wait_for(
        "full_quota from max_bytes",
        Duration::from_secs(20),
        || async { pool_flags(&c).ok().filter(|f| has_flag(f, "full_quota")) },
    )
    .await?;
    let out = c.kalmar(&["rados", "-p", POOL, "put", "too-big", &srcs])?;
    assert!(!out.status.success(), "put refused by max_bytes");
    c.kalmar_ok(&["osd", "pool", "set-quota", POOL, "max_bytes", "0"])?;
    c.kalmar_ok(&["osd", "pool", "set-quota", POOL, "max_objects", "0"])?;
    wait_for(
        "full_quota cleared again",
        Duration::from_secs(20),
        || async { pool_flags(&c).ok().filter(|f| !has_flag(f, "full_quota")) },
    )
    .await?;
    c.kalmar_ok(&["rados", "-p", POOL, "put", "no-quota", &srcs])?;
    Ok(())
}
