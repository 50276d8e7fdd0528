//! [`EngineDriver`]: a commit engine run as a task on a current-thread
//! tokio runtime (as `kalmar-nbd --store` and the OSD's shards run it).
//! Commits resolve once durable, more commits than the engine admits at
//! once all finish (they wait for permits, nothing is refused), follow-ups
//! come back in submission order, reads see what committed, and after
//! `stop` the engine goes back to the store with everything durable.

mod common;

use std::time::Duration;

use common::{cid, oid, pattern, FileStore};
use kalmar_objectstore::{Drive, EngineDriver, StoreError, Transaction};

/// Bound on the whole async part of the test.
const WAIT: Duration = Duration::from_secs(30);

/// Transactions the engine admits at once in this test (fewer than the
/// test submits).
const QUEUE: usize = 4;

#[test]
fn a_driven_engine_commits_reads_and_gives_its_engine_back() {
    let mut fs = FileStore::new(64 << 20);
    fs.settings.drive = Drive::External;
    fs.settings.engines = 1;
    fs.settings.max_queued_txns = QUEUE;
    fs.remount();
    let engine = fs.s().take_engines().expect("engines").pop().expect("one");
    let driver = EngineDriver::<u32>::new(engine, None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let c = cid("c");
    let engine = rt.block_on(async {
        tokio::time::timeout(WAIT, async {
            let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
            let task = tokio::spawn(driver.clone().drive(move |n: u32, r| {
                let _ = done_tx.send((n, r));
            }));
            let mut t = Transaction::new();
            t.create_collection(&c);
            driver.commit(t).await.expect("collection");

            // Four times what the engine admits at once, each waiting for
            // its own permit: all commit, their follow-ups in order.
            for n in 0..4 * QUEUE as u32 {
                let permit = driver.admit().await.expect("admitted");
                let mut t = Transaction::new();
                t.write(&c, &oid(&format!("o{n}")), 0, pattern(n as u64, 8192));
                driver.submit(t, permit, n);
            }
            for n in 0..4 * QUEUE as u32 {
                let (got, r) = done_rx.recv().await.expect("a follow-up");
                assert_eq!(got, n, "in submission order");
                r.expect("committed");
            }
            // Reads see every committed write; a missing object is an error.
            for n in 0..4 * QUEUE as u32 {
                let got = driver
                    .read(&c, &oid(&format!("o{n}")), 4096, 4096)
                    .await
                    .expect("reads");
                assert_eq!(&got[..], &pattern(n as u64, 8192)[4096..]);
            }
            let missing = driver.read(&c, &oid("nope"), 0, 4096).await;
            assert!(
                matches!(missing, Err(StoreError::ObjectNotFound { .. })),
                "{missing:?}"
            );

            // A refused transaction reaches its follow-up as an error.
            let permit = driver.admit().await.expect("admitted");
            let mut bad = Transaction::new();
            bad.write(&cid("none"), &oid("x"), 0, pattern(9, 4096));
            driver.submit(bad, permit, 99);
            let (got, r) = done_rx.recv().await.expect("a follow-up");
            assert_eq!(got, 99);
            assert!(
                matches!(r, Err(StoreError::CollectionNotFound { .. })),
                "{r:?}"
            );

            let engine = driver.stop().await;
            task.await
                .expect("the driver ends")
                .expect("it could watch");
            // Stopped: nothing more is taken.
            let after = driver.commit(Transaction::new()).await;
            assert!(matches!(after, Err(StoreError::Unmounted)), "{after:?}");
            let after = driver.read(&c, &oid("o0"), 0, 4096).await;
            assert!(matches!(after, Err(StoreError::Unmounted)), "{after:?}");
            engine
        })
        .await
        .expect("the driven engine answered in time")
    });
    fs.s().return_engines(engine.into_iter().collect());
    fs.umount();
    // Everything acknowledged is there after a remount.
    fs.settings.drive = Drive::Threads;
    fs.mount();
    for n in 0..4 * QUEUE as u32 {
        let got = fs
            .s()
            .read(&c, &oid(&format!("o{n}")), 0, 8192)
            .expect("reads");
        assert_eq!(got, pattern(n as u64, 8192));
    }
    fs.umount();
}
