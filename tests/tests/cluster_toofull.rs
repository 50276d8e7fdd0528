//! A backfill target too full for backfill: with `backfillfull_ratio`
//! lowered to 0 (every store counts as too full), a fourth OSD joins; the
//! PGs it gains show `backfill_toofull` (never `backfilling`) while they
//! keep serving from the old holders; raising the ratio back lets the
//! retry (`osd_backfill_retry_interval`, 1 s here) backfill them, and every
//! PG goes active+clean with the data intact.

use std::time::Duration;

use bytes::Bytes;
use kalmar_tests::{wait_for, Cluster, ClusterOpts};
use serde_json::json;

const POOL: &str = "tf";
const PG_NUM: u32 = 8;
const OBJECTS: usize = 60;

fn content(i: usize) -> Bytes {
    Bytes::from(
        (0..2048 + i * 13)
            .map(|j| ((i * 31 + j * 7) % 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_toofull_until_the_ratio_allows() -> anyhow::Result<()> {
    let opts = ClusterOpts::default().set("osd_backfill_retry_interval", "1");
    let mut c = Cluster::start(opts).await?;
    let (_rados, io) = c.ready_pool(POOL, PG_NUM, 3, 2).await?;
    for i in 0..OBJECTS {
        io.write_full(&format!("o-{i}"), content(i)).await?;
    }

    c.mon_command(json!({"prefix": "osd set-backfillfull-ratio", "ratio": 0.0}))
        .await?;
    let dump = c.mon_command(json!({"prefix": "osd dump"})).await?;
    assert_eq!(dump["backfillfull_ratio"].as_f64(), Some(0.0), "{dump}");
    // A backfillfull ratio below nearfull is an error in the health.
    let health = c
        .mon_command(json!({"prefix": "health", "detail": "detail"}))
        .await?;
    let check = &health["checks"]["OSD_OUT_OF_ORDER_FULL"];
    assert_eq!(check["severity"], json!("HEALTH_ERR"), "{health}");
    assert!(
        check["detail"][0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("backfillfull_ratio (0) < nearfull_ratio")),
        "{health}"
    );

    c.add_osds(4).await?;
    // Every PG that gained osd.3 waits in backfill_toofull.
    let toofull = wait_for(
        "PGs gaining osd.3 to be backfill_toofull",
        Duration::from_secs(60),
        || async {
            let stats = c.pg_stats().await.ok()?;
            let gained: Vec<&serde_json::Value> = stats
                .iter()
                .filter(|p| {
                    p["up"]
                        .as_array()
                        .is_some_and(|u| u.iter().any(|o| o.as_u64() == Some(3)))
                })
                .collect();
            let all = !gained.is_empty()
                && gained.iter().all(|p| {
                    p["state"]
                        .as_str()
                        .is_some_and(|s| s.contains("backfill_toofull"))
                });
            all.then(|| {
                gained
                    .iter()
                    .map(|p| p["pgid"].as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
            })
        },
    )
    .await?;
    eprintln!("backfill_toofull: {toofull:?}");
    // Across several retries nothing backfills, and I/O goes on.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for p in c.pg_stats().await? {
            let st = p["state"].as_str().unwrap_or_default();
            assert!(
                !st.contains("backfilling") && st.contains("active"),
                "{}: {st}",
                p["pgid"]
            );
        }
    }
    io.write_full("during", content(1)).await?;
    let status = c.mon_command(json!({"prefix": "pg stat"})).await?;
    assert!(
        status.to_string().contains("backfill_toofull"),
        "pg stat shows it: {status}"
    );

    c.mon_command(json!({"prefix": "osd set-backfillfull-ratio", "ratio": 0.9}))
        .await?;
    let health = c.mon_command(json!({"prefix": "health"})).await?;
    assert!(
        health["checks"].get("OSD_OUT_OF_ORDER_FULL").is_none(),
        "ratios in order again: {health}"
    );
    c.wait_pgs(1, PG_NUM, &["active", "clean"], Duration::from_secs(60))
        .await?;
    // The PGs that waited are backfilled: osd.3 now serves them.
    for p in c.pg_stats().await? {
        let id = p["pgid"].as_str().unwrap_or_default().to_string();
        if toofull.contains(&id) {
            let acting = p["acting"].as_array().cloned().unwrap_or_default();
            assert!(
                acting.iter().any(|o| o.as_u64() == Some(3)),
                "{id} acting {acting:?}"
            );
        }
    }
    for i in 0..OBJECTS {
        assert_eq!(io.read(&format!("o-{i}"), 0, 1 << 20).await?, content(i));
    }
    assert_eq!(io.read("during", 0, 1 << 20).await?, content(1));
    Ok(())
}
