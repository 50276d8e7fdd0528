//! Maps under meta: every epoch an OSD consumes is stored as `osdmap.<e>`
//! and `inc_osdmap.<e>` with the superblock's range; old epochs are
//! trimmed to `osd_map_max_epochs_stored`; after a restart the OSD picks up
//! from its stored epoch, and the offline tool shows the stored range. The
//! PG logs are trimmed to `osd_max_pg_log_entries`; deleting the pool
//! removes its PGs from the OSDs.

use std::time::Duration;

use kalmar_tests::{wait_for, Cluster, ClusterOpts};
use serde_json::{json, Value};

/// Epochs an OSD keeps in this test.
const KEEP: u64 = 12;
/// PG log length kept in this test.
const LOG_ENTRIES: u64 = 10;

async fn mon_epoch(c: &Cluster) -> anyhow::Result<u64> {
    let d = c.mon_command(json!({"prefix": "osd dump"})).await?;
    d["epoch"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("osd dump without an epoch"))
}

/// Makes `n` new epochs (each flag change is one).
async fn churn(c: &Cluster, n: usize) -> anyhow::Result<()> {
    for i in 0..n {
        let prefix = if i % 2 == 0 { "osd set" } else { "osd unset" };
        c.mon_command(json!({"prefix": prefix, "key": "noscrub"}))
            .await?;
    }
    Ok(())
}

async fn osd_caught_up(c: &Cluster, osd: &str) -> anyhow::Result<Value> {
    let want = mon_epoch(c).await?;
    wait_for(
        &format!("{osd} at epoch {want}"),
        Duration::from_secs(30),
        || async {
            let s = c.admin(osd, "status").ok()?;
            (s["newest_map"].as_u64()? >= want).then_some(s)
        },
    )
    .await
}

fn check_listing(l: &Value, oldest: u64, newest: u64) {
    let full: Vec<u64> = serde_json::from_value(l["full_maps"].clone()).unwrap_or_default();
    let inc: Vec<u64> = serde_json::from_value(l["incremental_maps"].clone()).unwrap_or_default();
    assert_eq!(
        full,
        (oldest..=newest).collect::<Vec<_>>(),
        "full maps {full:?}"
    );
    // Incrementals are stored for every epoch that came as one (all but,
    // at most, the very first the OSD ever received).
    assert!(
        inc.iter().all(|e| (oldest..=newest).contains(e)),
        "incrementals {inc:?}"
    );
    assert!(inc.len() as u64 >= newest - oldest, "incrementals {inc:?}");
    assert_eq!(l["superblock"]["oldest_map"].as_u64(), Some(oldest));
    assert_eq!(l["superblock"]["newest_map"].as_u64(), Some(newest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maps_stored_trimmed_and_reloaded() -> anyhow::Result<()> {
    let opts = ClusterOpts {
        osds: 2,
        ..ClusterOpts::default()
    }
    .set("osd_map_max_epochs_stored", &KEEP.to_string())
    .set("osd_target_transaction_size", "4")
    .set("osd_max_pg_log_entries", &LOG_ENTRIES.to_string());
    let c = Cluster::start(opts).await?;
    c.create_pool("maps", 4, 2, 1).await?;
    c.wait_pgs(1, 4, &["active", "clean"], Duration::from_secs(60))
        .await?;

    // PG logs stay within their bound.
    let rados = c.client().await?;
    let io = wait_for("the pool", Duration::from_secs(30), || async {
        rados.ioctx("maps").ok()
    })
    .await?;
    for i in 0..100 {
        io.write_full(&format!("o{i}"), bytes::Bytes::from(vec![1u8; 100]))
            .await?;
    }
    wait_for("stats of 100 objects", Duration::from_secs(30), || async {
        let s = c.mon_command(json!({"prefix": "pg stat"})).await.ok()?;
        (s["num_objects"].as_u64()? == 100).then_some(())
    })
    .await?;
    for p in c.pg_stats().await? {
        let n = p["log_size"].as_u64().unwrap_or(u64::MAX);
        // The write being committed may sit above the trim point.
        assert!(
            n > 0 && n <= LOG_ENTRIES + 1,
            "{}: log of {n} entries",
            p["pgid"]
        );
    }

    // Many epochs: the stored range stays within the bound.
    churn(&c, 30).await?;
    let s = osd_caught_up(&c, "osd.0").await?;
    let (oldest, newest) = (
        s["oldest_map"].as_u64().unwrap_or(0),
        s["newest_map"].as_u64().unwrap_or(0),
    );
    assert!(newest >= 30, "newest {newest}");
    assert_eq!(
        newest - oldest + 1,
        KEEP,
        "trimmed to the bound: {oldest}..={newest}"
    );

    // Stopped, the offline tool shows a range of that bound (a few epochs
    // may have arrived since the status was read).
    c.stop("osd.0")?;
    let listing = c.objectstore_tool(0, &["meta", "list"])?;
    let stored_newest = listing["superblock"]["newest_map"].as_u64().unwrap_or(0);
    assert!(stored_newest >= newest && oldest >= 1);
    let newest = stored_newest;
    check_listing(&listing, newest + 1 - KEEP, newest);
    assert_eq!(listing["superblock"]["whoami"], json!(0));

    // Epochs made while it is down arrive after the restart; the PGs come
    // back from the stored epoch.
    churn(&c, 6).await?;
    c.restart_missing().await?;
    let s = osd_caught_up(&c, "osd.0").await?;
    let newest2 = s["newest_map"].as_u64().unwrap_or(0);
    assert!(newest2 >= newest + 6);
    assert_eq!(newest2 - s["oldest_map"].as_u64().unwrap_or(0) + 1, KEEP);
    c.wait_pgs(1, 4, &["active", "clean"], Duration::from_secs(60))
        .await?;
    c.stop("osd.0")?;
    let listing = c.objectstore_tool(0, &["meta", "list"])?;
    let stored_newest = listing["superblock"]["newest_map"].as_u64().unwrap_or(0);
    assert!(stored_newest >= newest2);
    check_listing(&listing, stored_newest + 1 - KEEP, stored_newest);

    // Deleting the pool removes its PGs from the OSDs.
    c.restart_missing().await?;
    let rm = json!({"prefix": "osd pool rm", "pool": "maps", "pool2": "maps", "yes_i_really_really_mean_it": true});
    c.mon_command(rm).await?;
    for osd in ["osd.0", "osd.1"] {
        wait_for(
            &format!("{osd} to drop the pool's PGs"),
            Duration::from_secs(30),
            || async {
                let s = c.admin(osd, "status").ok()?;
                (s["num_pgs"].as_u64()? == 0).then_some(())
            },
        )
        .await?;
    }
    c.stop("osd.1")?;
    let colls: Vec<String> = serde_json::from_value(c.objectstore_tool(1, &["list-collections"])?)?;
    assert_eq!(colls, vec!["meta".to_string()]);
    rados.shutdown().await;
    Ok(())
}
