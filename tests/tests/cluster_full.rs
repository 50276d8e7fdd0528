//! Filling the OSDs: writes are refused with ENOSPC once a store passes
//! `osd_failsafe_full_ratio`; no OSD stops, reads go on, and removing
//! objects makes room for writes again.

use std::time::Duration;

use bytes::Bytes;
use kalmar_proto::client::errno;
use kalmar_tests::{wait_for, Cluster, ClusterOpts};

const OBJ: usize = 4 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_osds_refuse_writes_and_keep_serving() -> anyhow::Result<()> {
    let opts = ClusterOpts {
        osd_size: "512M".into(),
        ..ClusterOpts::default()
    }
    .set("osd_failsafe_full_ratio", "0.80");
    let c = Cluster::start(opts).await?;
    c.create_pool("full", 8, 3, 2).await?;
    c.wait_pgs(1, 8, &["active", "clean"], Duration::from_secs(60))
        .await?;
    let rados = c.client().await?;
    let io = wait_for("the pool", Duration::from_secs(30), || async {
        rados.ioctx("full").ok()
    })
    .await?;
    let data = Bytes::from(vec![0x5au8; OBJ]);
    let mut written = 0usize;
    let err = loop {
        match io
            .write_full(&format!("fill-{written}"), data.clone())
            .await
        {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 200, "512 MiB devices never filled up");
    };
    assert_eq!(err.errno(), errno::ENOSPC, "{err}");
    assert!(err.to_string().contains("full"), "{err}");
    assert!(written > 10, "only {written} objects fit");
    for osd in 0..3 {
        assert!(c.pid(&format!("osd.{osd}")).is_some(), "osd.{osd} stopped");
    }
    // Reads, deletes and metadata-only writes still work.
    assert_eq!(io.read("fill-0", 0, 16).await?, data.slice(0..16));
    io.setxattr("fill-0", "k", Bytes::from_static(b"v")).await?;
    for i in 0..written / 2 {
        io.remove(&format!("fill-{i}")).await?;
    }
    // Freed space is reusable after the stores' next checkpoint.
    wait_for("room for writes again", Duration::from_secs(60), || async {
        io.write_full("after-full", data.clone()).await.ok()
    })
    .await?;
    assert_eq!(io.stat("after-full").await?.size_bytes, OBJ as u64);
    c.wait_pgs(1, 8, &["active", "clean"], Duration::from_secs(30))
        .await?;
    Ok(())
}
