//! The NBD errors the image export answers with, by what failed; and the
//! export over the fake transport: holes, a deleted pool, a shut-down
//! client.

use std::time::Duration;

use kalmar_client::testing::{cluster_map, fake_objecter, test_config, FakeOptions, POOL_NAME};
use kalmar_client::IoCtx;
use kalmar_image::ImageHeader;

use super::*;
use crate::proto::Errno as NbdErrno;

fn osd(errno: Errno) -> ImageError {
    ImageError::Client(ClientError::Osd {
        errno,
        msg: "op on 'o'".into(),
    })
}

#[test]
fn each_failure_maps_to_its_nbd_error() {
    let cases: Vec<(ImageError, NbdErrno)> = vec![
        (osd(Errno::ENOSPC), NbdErrno::NoSpc),
        (osd(Errno::EDQUOT), NbdErrno::NoSpc),
        (osd(Errno::EFBIG), NbdErrno::NoSpc),
        (osd(Errno::EINVAL), NbdErrno::Inval),
        (osd(Errno::EIO), NbdErrno::Io),
        (osd(Errno::ENOENT), NbdErrno::Io),
        (
            ImageError::Invalid("beyond the end".into()),
            NbdErrno::Inval,
        ),
        (
            ClientError::Invalid("empty name".into()).into(),
            NbdErrno::Inval,
        ),
        (
            ClientError::TooLarge {
                what: "op".into(),
                len: 2,
                max: 1,
            }
            .into(),
            NbdErrno::Inval,
        ),
        (ClientError::Shutdown.into(), NbdErrno::Shutdown),
        (ClientError::NoSuchPool("rbd".into()).into(), NbdErrno::Io),
        (ClientError::NoSuchPg("1.2".into()).into(), NbdErrno::Io),
        (
            ClientError::Timeout {
                what: "op".into(),
                ms: 1,
            }
            .into(),
            NbdErrno::Io,
        ),
        (
            ClientError::ObjectNotFound {
                object: "o".into(),
                msg: "op on 'o'".into(),
            }
            .into(),
            NbdErrno::Io,
        ),
        (
            ImageError::CorruptHeader("h".into(), "x".into()),
            NbdErrno::Io,
        ),
    ];
    for (e, want) in cases {
        let shown = e.to_string();
        assert_eq!(image_err(e).errno(), want, "{shown}");
    }
    // NBD's ESHUTDOWN is the system's.
    assert_eq!(NbdErrno::Shutdown.code(), libc::ESHUTDOWN as u32);
}

fn backend() -> (
    ImageBackend<kalmar_client::testing::FakeTransport>,
    std::sync::Arc<kalmar_client::objecter::Objecter<kalmar_client::testing::FakeTransport>>,
    kalmar_client::testing::FakeOsds,
) {
    let (o, osds) = fake_objecter(test_config(), FakeOptions::default(), cluster_map(3, 16, 3));
    let io = IoCtx::new(o.clone(), POOL_NAME).expect("pool");
    let header = ImageHeader::new("abc".into(), 1 << 30, 22).expect("header");
    (
        ImageBackend::new(Image::with_header(io, "img", header)),
        o,
        osds,
    )
}

#[tokio::test]
async fn a_missing_object_reads_as_zeros_but_a_deleted_pool_fails() {
    let (b, o, mut osds) = backend();
    // The PG answers ENOENT (with its epoch): the object is a hole.
    let (read, ()) = tokio::join!(b.read(4096, 4096), async {
        let r = osds.next().await;
        o.on_reply(r.answer(-libc::ENOENT));
    });
    let data = read.expect("a hole reads");
    assert_eq!(data.len(), 4096);
    assert!(data.iter().all(|&x| x == 0));

    // The OSD's map no longer has the pool (it answers before any PG,
    // with epoch 0): never zeros.
    let (read, ()) = tokio::join!(b.read(0, 4096), async {
        let r = osds.next().await;
        let mut gone = r.answer(-libc::ENOENT);
        gone.map_epoch = 0;
        o.on_reply(gone);
    });
    assert_eq!(read.map_err(|e| e.errno()), Err(NbdErrno::Io));
}

#[tokio::test]
async fn a_shut_down_client_answers_eshutdown() {
    let (b, o, mut osds) = backend();
    let (write, ()) = tokio::join!(b.write(0, Bytes::from_static(&[1; 512]), false), async {
        // The write is in flight when the client shuts down.
        let _ = osds.next().await;
        o.shutdown().await;
    });
    assert_eq!(write.map_err(|e| e.errno()), Err(NbdErrno::Shutdown));
    let later = tokio::time::timeout(Duration::from_secs(1), b.read(0, 512)).await;
    assert_eq!(
        later.expect("answered at once").map_err(|e| e.errno()),
        Err(NbdErrno::Shutdown)
    );
}
