//! kill -9 of a process in the middle of a stream of writes to a real
//! file, then remount and check: every acknowledged transaction is there,
//! and the state is the model after a prefix of the stream.
//!
//! The writer is this test binary run again (`child_writer` with
//! `KALMAR_KILL9_*` set); it prints `ACK <i>` after transaction `i`
//! commits, with up to `IN_FLIGHT` transactions queued.

mod common;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{cid, diff, dump, mount_opts, oid, pattern, test_settings, Model};
use kalmar_objectstore::{Bytes, MkfsOptions, ObjectStore, Transaction};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

const IN_FLIGHT: usize = 8;
const ROUNDS: usize = 3;

/// Transaction `i` of the stream: small and big writes, xattrs, omap.
fn txn(i: u64) -> Transaction {
    let c = cid("stream");
    let o = oid(&format!("o{}", i % 13));
    let mut t = Transaction::new();
    let len = if i.is_multiple_of(5) {
        150_000 + (i as usize * 7919) % 200_000
    } else {
        1 + (i as usize * 131) % 12_000
    };
    t.write(&c, &o, (i * 4099) % 300_000, pattern(i, len));
    t.setattr(&c, &o, "_", Bytes::from(format!("v{i}")));
    t.omap_setkeys(
        &c,
        &o,
        vec![(
            Bytes::from(format!("{i:08}")),
            Bytes::from(pattern(i + 7, 40)),
        )],
    );
    if i.is_multiple_of(17) {
        t.truncate(&c, &o, (i * 31) % 100_000);
    }
    t
}

#[test]
fn child_writer() {
    let (Ok(dev), Ok(db), Ok(start)) = (
        std::env::var("KALMAR_KILL9_DEVICE"),
        std::env::var("KALMAR_KILL9_DB"),
        std::env::var("KALMAR_KILL9_START"),
    ) else {
        return; // not the child: nothing to do
    };
    let start: u64 = start.parse().expect("start index");
    let store = ObjectStore::mount(
        Path::new(&dev),
        &mount_opts(Path::new(&db), test_settings()),
    )
    .expect("child mount");
    let mut pending = VecDeque::new();
    let mut out = std::io::stdout().lock();
    for i in start.. {
        pending.push_back((i, store.queue_transaction(txn(i))));
        if pending.len() >= IN_FLIGHT {
            if let Some((j, c)) = pending.pop_front() {
                c.wait().expect("commit");
                writeln!(out, "ACK {j}").expect("stdout");
                out.flush().expect("stdout");
            }
        }
    }
}

#[test]
fn kill_9_mid_stream_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("dev");
    let db = dir.path().join("dev.db");
    std::fs::File::create(&dev)
        .and_then(|f| f.set_len(256 << 20))
        .expect("device");
    let mut mk = MkfsOptions::new(Uuid::new_v4(), Uuid::new_v4());
    mk.db_path = Some(db.clone());
    mk.journal_bytes = Some(8 << 20);
    ObjectStore::mkfs(&dev, &mk).expect("mkfs");
    {
        let s = ObjectStore::mount(&dev, &mount_opts(&db, test_settings())).expect("mount");
        let mut t = Transaction::new();
        t.create_collection(&cid("stream"));
        s.apply_transaction(t).expect("create");
        s.umount().expect("umount");
    }
    let mut model = Model::default();
    let mut t = Transaction::new();
    t.create_collection(&cid("stream"));
    assert!(model.apply(&t));

    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut next = 0u64;
    for round in 0..ROUNDS {
        let kill_after = rng.random_range(20..120u64);
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env("KALMAR_KILL9_DEVICE", &dev)
            .env("KALMAR_KILL9_DB", &db)
            .env("KALMAR_KILL9_START", next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut last_ack: Option<u64> = None;
        let mut killed = false;
        // Read to the end of the pipe, also after the kill: acknowledgements
        // the writer printed before the signal landed count too.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The harness may have printed "test child_writer ... " first.
            if let Some(n) = line.find("ACK ").map(|at| &line[at + 4..]) {
                let i: u64 = n.trim().parse().expect("ack index");
                assert_eq!(i, last_ack.map_or(next, |a| a + 1), "acks arrive in order");
                last_ack = Some(i);
                if !killed && i + 1 - next >= kill_after {
                    // SAFETY: kill(2) on the pid of the child we spawned.
                    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
                    killed = true;
                }
            }
        }
        assert!(killed, "round {round}: the writer stopped before the kill");
        let status = child.wait().expect("reap writer");
        assert!(
            !status.success(),
            "round {round}: the writer was killed, not finished"
        );
        let acked = last_ack.expect("the writer acknowledged something before the kill");

        let store = ObjectStore::mount(&dev, &mount_opts(&db, test_settings()))
            .expect("mount after kill -9");
        let state = dump(&store);
        // Apply the stream up to the last acknowledged transaction, then
        // look for the state among the prefixes still in flight.
        for i in next..=acked {
            assert!(model.apply(&txn(i)), "txn {i} is valid");
        }
        let mut candidate = model.clone();
        let mut recovered = None;
        for extra in 0..=IN_FLIGHT as u64 {
            if state == candidate.colls {
                recovered = Some(acked + 1 + extra);
                break;
            }
            candidate.apply(&txn(acked + 1 + extra));
        }
        let Some(upto) = recovered else {
            panic!(
                "round {round}: state after kill -9 is no prefix >= {} : {}",
                acked + 1,
                diff(&state, &model.colls)
            );
        };
        model = {
            let mut m = model.clone();
            for i in acked + 1..upto {
                m.apply(&txn(i));
            }
            m
        };
        let report = store.fsck(true).expect("fsck");
        assert!(
            report.is_clean(),
            "round {round}: fsck: {:?}",
            report.errors
        );
        store.umount().expect("umount");
        eprintln!(
            "round {round}: killed after ack {acked}; recovered transactions up to {}",
            upto - 1
        );
        next = upto;
    }
}
