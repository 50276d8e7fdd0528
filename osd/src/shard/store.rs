//! A shard's way to the store: its commit engine, driven on the shard's
//! thread by the store's [`EngineDriver`].
//!
//! PGs of the shard submit transactions straight into the engine (after
//! taking an admission permit, before they change any state the
//! transaction records); the driver hands each finished transaction's
//! follow-up to its PG on the same thread. A PG transaction that fails
//! after admission stops the OSD: the PG's memory may be ahead of its
//! disk, which must never be served.
//!
//! Client reads go the same way: planned against the committed metadata
//! on this thread, their device reads on the engine's ring, their answers
//! completed by the driver (no reader thread in between).

use std::sync::Arc;

use kalmar_objectstore::{EngineDriver, StoreError};
use tokio::sync::mpsc;

use crate::pg::{AfterCommit, PgEvent};

/// What to do when a PG's transaction is durable: `after`, sent on the
/// PG's channel `tx`.
pub struct FollowUp {
    pub(crate) tx: mpsc::UnboundedSender<PgEvent>,
    pub(crate) after: AfterCommit,
}

/// A shard's engine and its driver.
pub type ShardStore = EngineDriver<FollowUp>;

/// The driver task of shard `id` (spawned on the shard's runtime).
/// `fatal` stops the OSD (`Service::fatal`).
pub async fn drive(store: Arc<ShardStore>, id: usize, fatal: impl Fn(String)) {
    let done = |f: FollowUp, res: Result<(), StoreError>| match res {
        Ok(()) => f.after.run(&f.tx),
        Err(e) => fatal(format!(
            "shard {id}: a PG transaction failed after admission: {e}"
        )),
    };
    if let Err(e) = store.drive(done).await {
        fatal(format!(
            "shard {id}: cannot watch the store's descriptors: {e}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_objectstore::{CollectionId, Drive, MountOptions, ObjectStore, Transaction};

    /// A transaction that fails after admission stops the OSD and its
    /// follow-up never runs (the PG's memory may be ahead of its disk);
    /// one that commits runs its follow-up on the shard.
    #[test]
    fn a_failed_transaction_after_admission_is_fatal() {
        let (_dir, dev) = crate::test_store::formatted_device();
        let mut opts = MountOptions::default();
        opts.settings.drive = Drive::External;
        opts.settings.engines = 1;
        let store = ObjectStore::mount(&dev, &opts).expect("mount");
        let engine = store.take_engines().expect("engines").pop().expect("one");
        let shard = ShardStore::new(engine, store.checkpoint_stepper());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (fatal_tx, mut fatal) = mpsc::unbounded_channel::<String>();
        let (engine, why) = rt.block_on(async {
            let driver = tokio::spawn(drive(shard.clone(), 0, move |why| {
                let _ = fatal_tx.send(why);
            }));
            let (tx, mut rx) = mpsc::unbounded_channel();
            let c = CollectionId::new("pg_1.0").expect("cid");
            let mut ok = Transaction::new();
            ok.create_collection(&c);
            let permit = shard.admit().await.expect("admitted");
            shard.submit(
                ok,
                permit,
                FollowUp {
                    tx: tx.clone(),
                    after: AfterCommit::Tid(1),
                },
            );
            let ev = rx.recv().await.expect("follow-up");
            assert!(matches!(ev, PgEvent::Committed { tid: 1 }));
            assert!(fatal.try_recv().is_err(), "nothing fatal yet");
            // Refused by the store after admission: a write into a
            // collection that does not exist.
            let mut bad = Transaction::new();
            let o = kalmar_objectstore::ObjectId::new(b"x").expect("name");
            bad.write(
                &CollectionId::new("pg_1.1").expect("cid"),
                &o,
                0,
                vec![1u8; 4096],
            );
            let permit = shard.admit().await.expect("admitted");
            shard.submit(
                bad,
                permit,
                FollowUp {
                    tx,
                    after: AfterCommit::Tid(2),
                },
            );
            let why = tokio::time::timeout(std::time::Duration::from_secs(10), fatal.recv())
                .await
                .expect("the failure is reported in time")
                .expect("the driver reports it");
            assert!(rx.try_recv().is_err(), "no follow-up for the failed one");
            let engine = shard.stop().await;
            driver.await.expect("driver ends");
            (engine, why)
        });
        assert!(why.contains("failed after admission"), "{why}");
        store.return_engines(engine.into_iter().collect());
        store.umount().expect("umount");
    }
}
