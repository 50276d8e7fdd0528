//! Quick end-to-end check: a 3-OSD cluster serves writes and reads.

use std::time::Duration;

use bytes::Bytes;
use kalmar_tests::{Cluster, ClusterOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_write_read() -> anyhow::Result<()> {
    let c = Cluster::start(ClusterOpts::default()).await?;
    c.create_pool("smoke", 8, 3, 2).await?;
    c.wait_pgs(1, 8, &["active", "clean"], Duration::from_secs(60))
        .await?;
    let rados = c.client().await?;
    let io = kalmar_tests::wait_for(
        "the pool in the client's map",
        Duration::from_secs(30),
        || async { rados.ioctx("smoke").ok() },
    )
    .await?;
    for i in 0..20 {
        let data = Bytes::from(format!("object {i} data").repeat(i + 1));
        io.write_full(&format!("obj{i}"), data.clone()).await?;
        let back = io.read(&format!("obj{i}"), 0, 0).await?;
        assert_eq!(back, data);
    }
    let mut names = io.list_objects().await?;
    names.sort();
    assert_eq!(names.len(), 20);
    Ok(())
}
