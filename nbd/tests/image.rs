//! Block images on a real 3-OSD cluster (vstart in a tempdir): create, ls,
//! holes read as zeros, trim frees objects, rm; then `kalmar-nbd --image`
//! driven by qemu-io patterns and fio's verify job.

mod common;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use kalmar_image::{Image, DEFAULT_ORDER};
use kalmar_tests::{wait_for, Cluster, ClusterOpts};

const IMAGE_BYTES: u64 = 256 << 20;

async fn cluster_with_pool(
    pool: &str,
    size: u32,
) -> anyhow::Result<(Cluster, kalmar_client::Rados)> {
    let c = Cluster::start(ClusterOpts::default()).await?;
    c.create_pool(pool, 16, size, 1).await?;
    c.wait_pgs(1, 16, &["active", "clean"], Duration::from_secs(90))
        .await?;
    let rados = c.client().await?;
    wait_for(
        "the pool in the client's map",
        Duration::from_secs(30),
        || async { rados.ioctx(pool).ok() },
    )
    .await?;
    Ok((c, rados))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_create_list_read_holes_trim_and_remove() -> anyhow::Result<()> {
    let (_c, rados) = cluster_with_pool("rbd", 3).await?;
    let io = rados.ioctx("rbd")?;
    assert!(kalmar_image::list(&io).await?.is_empty());
    kalmar_image::create(&io, "disk", IMAGE_BYTES, DEFAULT_ORDER).await?;
    kalmar_image::create(&io, "other", 8 << 20, 12).await?;
    assert_eq!(
        kalmar_image::create(&io, "disk", 1 << 20, DEFAULT_ORDER)
            .await
            .map_err(|e| e.errno()),
        Err(17)
    );
    let names: Vec<String> = kalmar_image::list(&io)
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, vec!["disk", "other"]);

    let img = Image::open(rados.ioctx("rbd")?, "disk").await?;
    assert_eq!(img.size_bytes(), IMAGE_BYTES);
    // A never-written image reads as zeros, also across objects.
    let r = img.read((4 << 20) - 100, 300).await?;
    assert!(r.iter().all(|&b| b == 0));
    // A write crossing an object boundary, read back with its zero margins.
    let data = Bytes::from((0..10_000u32).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
    img.write((4 << 20) - 5000, data.clone()).await?;
    let r = img.read((4 << 20) - 6000, 12_000).await?;
    assert!(r[..1000].iter().all(|&b| b == 0));
    assert_eq!(&r[1000..11_000], &data[..]);
    assert!(r[11_000..].iter().all(|&b| b == 0));
    // Out of range is refused.
    assert!(img
        .write(IMAGE_BYTES - 1, Bytes::from_static(b"xy"))
        .await
        .is_err());

    // Trim: the whole second object goes away; a partial range reads zeros.
    let second = img.header().data_object(1);
    img.write(4 << 20, Bytes::from(vec![7u8; 4 << 20])).await?;
    assert!(io.stat(&second).await.is_ok());
    img.discard(4 << 20, 4 << 20).await?;
    assert!(
        io.stat(&second).await.is_err_and(|e| e.is_not_found()),
        "trim must free the object"
    );
    img.discard((4 << 20) - 5000, 1000).await?;
    let r = img.read((4 << 20) - 5000, 5000).await?;
    assert!(r[..1000].iter().all(|&b| b == 0));
    assert_eq!(&r[1000..], &data[1000..5000]);

    // rm deletes the data objects, the header and the directory entries.
    kalmar_image::remove(&io, "disk").await?;
    let names: Vec<String> = kalmar_image::list(&io)
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, vec!["other"]);
    let left: Vec<String> = io
        .list_objects()
        .await?
        .into_iter()
        .filter(|o| o.contains(&img.header().id))
        .collect();
    assert!(
        left.is_empty(),
        "objects of the removed image remain: {left:?}"
    );
    assert!(Image::open(rados.ioctx("rbd")?, "disk").await.is_err());
    rados.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbd_image_export_passes_qemu_io_and_fio_verify() -> anyhow::Result<()> {
    require("qemu-io");
    require("fio");
    let (c, rados) = cluster_with_pool("rbd", 3).await?;
    kalmar_image::create(&rados.ioctx("rbd")?, "vol", IMAGE_BYTES, DEFAULT_ORDER).await?;
    rados.shutdown().await;
    let tmp = tempfile::tempdir()?;
    let conf = c.conf.clone();
    let sock = tmp.path().join("nbd.sock");
    let dir = tmp.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let srv = NbdProcess::start_image("rbd/vol", &conf, Listen::Unix(&sock));
        let pats = qemu_io_patterns(&srv.uri, 0x1ea5e ^ u64::from(std::process::id()));
        srv.stop();
        // A new server on the same image sees the data.
        let srv = NbdProcess::start_image("rbd/vol", &conf, Listen::Tcp);
        check_patterns(&srv.uri, &pats);
        // A random 256 MiB file in and out again, byte-identical.
        let (src, data) = random_file(&dir, IMAGE_BYTES, 0x1a6e);
        qemu_img_in(&src, &srv.uri, IMAGE_BYTES);
        qemu_img_out_equals(&srv.uri, &dir, &data);
        let out = run(Command::new("fio")
            .arg(fio_configs().join("verify.fio"))
            .args(["--output-format=json", "--output"])
            .arg(dir.join("verify.json"))
            .env("NBD_URI", &srv.uri)
            .env("FIO_SIZE", "32M")
            .current_dir(&dir));
        let j: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("verify.json")).expect("json"))
                .expect("fio json");
        for job in j["jobs"].as_array().expect("jobs") {
            assert_eq!(job["error"].as_i64(), Some(0), "{}: {out}", job["jobname"]);
        }
        srv.stop();
    })
    .await?;
    Ok(())
}
