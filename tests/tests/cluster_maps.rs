//! Maps under meta: every epoch an OSD consumes is stored as `osdmap.<e>`
//! and `inc_osdmap.<e>` with the superblock's range; old epochs are
//! trimmed to `osd_map_max_epochs_stored`; after a restart the OSD picks up
//! from its stored epoch, and the offline tool shows the stored range.

use std::time::Duration;

use kalmar_tests::{wait_for, Cluster, ClusterOpts};
use serde_json::{json, Value};

/// Epochs an OSD keeps in this test.
const KEEP: u64 = 12;

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
    assert!(
        inc.len() as u64 + 1 >= newest - oldest + 1,
        "incrementals {inc:?}"
    );
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
    .set("osd_target_transaction_size", "4");
    let c = Cluster::start(opts).await?;
    c.create_pool("maps", 4, 2, 1).await?;
    c.wait_pgs(1, 4, &["active", "clean"], Duration::from_secs(60))
        .await?;

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

    // Stopped, the offline tool shows exactly that range.
    c.stop("osd.0")?;
    let listing = c.objectstore_tool(0, &["meta", "list"])?;
    check_listing(&listing, oldest, newest);
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
    check_listing(&listing, newest2 + 1 - KEEP, newest2);
    Ok(())
}
