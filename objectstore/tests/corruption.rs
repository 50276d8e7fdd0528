//! Flipped bytes in data, journal records, the label and the superblocks:
//! a clear error every time (read error, replay stops at the bad record,
//! mount refuses), never a panic, never wrong data.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{cid, diff, mount_opts, oid, pattern, try_dump, FileStore, Model};
use kalmar_objectstore::device::{UringDevice, UringOptions};
use kalmar_objectstore::inspect::{dump_journal, read_label, JournalDump};
use kalmar_objectstore::layout::{BLOCK_SIZE, SUPERBLOCK_OFFSETS};
use kalmar_objectstore::{MountOptions, ObjectStore, StoreError, Transaction};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn flip(path: &Path, offset: u64, mask: u8) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open device file");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).expect("read byte");
    b[0] ^= mask;
    f.write_all_at(&b, offset).expect("write byte");
    f.sync_all().expect("sync");
}

fn journal(path: &Path) -> JournalDump {
    let dev = UringDevice::open(path, UringOptions::default()).expect("open");
    dump_journal(&dev).expect("dump journal")
}

/// Settings that keep every record in the journal (no checkpoints).
fn no_checkpoints() -> kalmar_objectstore::StoreSettings {
    let mut s = common::test_settings();
    s.checkpoint_interval_ms = 3_600_000;
    s.checkpoint_journal_percent = 100;
    s
}

fn try_mount(fs: &FileStore, opts: MountOptions) -> Result<ObjectStore, StoreError> {
    ObjectStore::mount(&fs.path, &opts)
}

#[test]
fn a_flipped_data_byte_is_a_read_error() {
    let mut fs = FileStore::new(32 << 20);
    let c = cid("c");
    let mut t = Transaction::new();
    t.create_collection(&c);
    t.write(&c, &oid("victim"), 0, pattern(1, 64 << 10));
    fs.apply(t);
    let mut t = Transaction::new();
    t.write(&c, &oid("other"), 0, pattern(2, 8192));
    fs.apply(t);
    fs.umount();
    let data_offset = {
        let dev = UringDevice::open(&fs.path, UringOptions::default()).expect("open");
        read_label(&dev).expect("label").data_offset
    };
    // The victim was the first allocation: data blocks 0..16.
    flip(&fs.path, data_offset + BLOCK_SIZE + 123, 0x40);
    fs.mount();
    let s = fs.s();
    let err = s
        .read(&c, &oid("victim"), 0, 64 << 10)
        .expect_err("corrupt block");
    assert!(matches!(err, StoreError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    // The blocks around it still read, and so does the other object.
    assert_eq!(
        &s.read(&c, &oid("victim"), 0, 4096).expect("block 0")[..],
        &pattern(1, 64 << 10)[..4096]
    );
    assert_eq!(
        &s.read(&c, &oid("victim"), 8192, 100).expect("block 2")[..],
        &pattern(1, 64 << 10)[8192..8292]
    );
    assert_eq!(
        &s.read(&c, &oid("other"), 0, 8192).expect("other")[..],
        &pattern(2, 8192)[..]
    );
    assert!(
        s.perf_counters().dump()["checksum_errors"]
            .as_u64()
            .expect("count")
            >= 1
    );
    assert!(s.fsck(false).expect("fsck").is_clean(), "metadata is fine");
    let deep = s.fsck(true).expect("deep fsck");
    assert_eq!(deep.checksum_errors, 1, "{:?}", deep.errors);
    assert!(
        deep.errors[0].contains("victim block 1"),
        "{:?}",
        deep.errors
    );
    // Rewriting the block heals the object.
    let mut t = Transaction::new();
    t.write(&c, &oid("victim"), 4096, pattern(3, 4096));
    fs.apply(t);
    assert!(fs.s().read(&c, &oid("victim"), 0, 64 << 10).is_ok());
}

/// Builds a store whose journal holds one record per transaction.
fn store_with_records(n: usize) -> (FileStore, Vec<Transaction>) {
    let fs = FileStore::with(32 << 20, Some(4 << 20), no_checkpoints());
    let c = cid("c");
    let mut txns = Vec::new();
    let mut t = Transaction::new();
    t.create_collection(&c);
    txns.push(t);
    for i in 0..n as u64 {
        let mut t = Transaction::new();
        t.write(&c, &oid(&format!("o{}", i % 3)), i * 1000, pattern(i, 3000));
        t.omap_setkeys(&c, &oid("log"), vec![(format!("{i}").into(), "v".into())]);
        txns.push(t);
    }
    for t in &txns {
        fs.apply(t.duplicate());
    }
    (fs, txns)
}

fn model_after(txns: &[Transaction], k: usize) -> Model {
    let mut m = Model::default();
    for t in &txns[..k] {
        assert!(m.apply(t));
    }
    m
}

#[test]
fn a_flipped_byte_in_a_journal_record_stops_replay_there() {
    let (mut fs, txns) = store_with_records(6);
    fs.store.take().expect("mounted").abandon();
    let j = journal(&fs.path);
    assert_eq!(
        j.zones[0].records.len(),
        txns.len(),
        "one record per transaction: {:?}",
        j.zones[0].end_reason
    );
    let bad = &j.zones[0].records[3];
    flip(
        &fs.path,
        j.label.journal_offset + bad.sector * j.label.journal_sector as u64 + 200,
        0x01,
    );

    // A damaged record followed by valid ones: refuse, naming the record.
    let err = try_mount(&fs, mount_opts(&fs.db, no_checkpoints()))
        .map(|_| ())
        .expect_err("refused");
    match &err {
        StoreError::JournalCorrupt { seq, .. } => assert_eq!(*seq, bad.seq),
        other => panic!("expected JournalCorrupt, got {other}"),
    }
    let dump = journal(&fs.path);
    assert_eq!(dump.zones[0].records.len(), 3);
    assert_eq!(dump.zones[0].later_valid_record_seq, Some(bad.seq + 1));
    assert!(
        dump.zones[0].end_reason.contains("crc"),
        "{}",
        dump.zones[0].end_reason
    );

    // Accepting the loss replays exactly the records before it.
    let mut opts = mount_opts(&fs.db, no_checkpoints());
    opts.discard_journal_after_corruption = true;
    let s = try_mount(&fs, opts).expect("mount accepting the loss");
    let state = try_dump(&s).expect("dump");
    let want = model_after(&txns, 3);
    assert!(state == want.colls, "{}", diff(&state, &want.colls));
    assert!(s.fsck(true).expect("fsck").is_clean());
}

#[test]
fn a_flipped_byte_in_the_last_record_is_a_torn_tail() {
    let (mut fs, txns) = store_with_records(4);
    fs.store.take().expect("mounted").abandon();
    let j = journal(&fs.path);
    let last = j.zones[0].records.last().expect("records");
    flip(
        &fs.path,
        j.label.journal_offset + last.sector * j.label.journal_sector as u64 + 70,
        0x80,
    );
    fs.settings = no_checkpoints();
    fs.mount();
    let state = try_dump(fs.s()).expect("dump");
    let want = model_after(&txns, txns.len() - 1);
    assert!(state == want.colls, "{}", diff(&state, &want.colls));
}

#[test]
fn a_damaged_label_or_superblocks_refuse_the_mount() {
    let mut fs = FileStore::new(16 << 20);
    fs.umount();
    let opts = || mount_opts(&fs.db, common::test_settings());
    // One superblock copy damaged: the other one serves.
    flip(&fs.path, SUPERBLOCK_OFFSETS[0] + 20, 0xff);
    try_mount(&fs, opts())
        .expect("mounts from the other copy")
        .umount()
        .expect("umount");
    // Both damaged (the umount above rewrote one): refuse.
    flip(&fs.path, SUPERBLOCK_OFFSETS[0] + 20, 0xff);
    flip(&fs.path, SUPERBLOCK_OFFSETS[1] + 20, 0xff);
    match try_mount(&fs, opts()) {
        Err(StoreError::NoSuperblock { .. }) => {}
        other => panic!("expected NoSuperblock, got {:?}", other.map(|_| ())),
    }
    // A damaged label: refuse with a clear message.
    flip(&fs.path, 40, 0x10);
    let err = try_mount(&fs, opts()).map(|_| ()).expect_err("refused");
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    assert!(err.to_string().contains("label is corrupt"), "{err}");
    flip(&fs.path, 40, 0x10);
    flip(&fs.path, 0, 0x01);
    let err = try_mount(&fs, opts()).map(|_| ()).expect_err("refused");
    assert!(err.to_string().contains("no Kalmar label magic"), "{err}");
}

#[test]
fn random_flips_never_panic_and_never_return_wrong_data() {
    let seeds: u64 = std::env::var("KALMAR_CORRUPTION_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let (mut fs, txns) = store_with_records(8);
    fs.store.take().expect("mounted").abandon();
    let pristine = std::fs::read(&fs.path).expect("image");
    let db_copy = fs.dir.path().join("db-pristine");
    copy_dir(&fs.db, &db_copy);
    let j = journal(&fs.path);
    // Every byte that matters: label, superblocks, journal records, data.
    let end = j.label.data_offset + (256 << 10);
    let states: Vec<Model> = (0..=txns.len()).map(|k| model_after(&txns, k)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    for round in 0..seeds {
        std::fs::write(&fs.path, &pristine).expect("restore image");
        let _ = std::fs::remove_dir_all(&fs.db);
        copy_dir(&db_copy, &fs.db);
        let region = rng.random_range(0..4);
        let off = match region {
            0 => rng.random_range(0..BLOCK_SIZE * 3),
            1 => {
                let r = &j.zones[0].records[rng.random_range(0..j.zones[0].records.len())];
                let sector = j.label.journal_sector as u64;
                j.label.journal_offset
                    + r.sector * sector
                    + rng.random_range(0..r.sectors as u64 * sector)
            }
            _ => rng.random_range(j.label.data_offset..end),
        };
        flip(&fs.path, off, 1 << rng.random_range(0..8));
        let mut opts = mount_opts(&fs.db, no_checkpoints());
        opts.discard_journal_after_corruption = true;
        let Ok(s) = try_mount(&fs, opts) else {
            continue;
        };
        // Whatever reads succeed return bytes of some admissible state.
        for name in ["o0", "o1", "o2"] {
            let (c, o) = (cid("c"), oid(name));
            let Ok(st) = s.stat(&c, &o) else { continue };
            if let Ok(data) = s.read(&c, &o, 0, st.size_bytes) {
                let ok = states.iter().any(|m| {
                    m.colls
                        .get("c")
                        .and_then(|x| x.get(name.as_bytes()))
                        .is_some_and(|x| x.data == data.to_vec())
                });
                assert!(
                    ok,
                    "round {round}: flip at {off} made {name} read wrong bytes"
                );
            }
        }
        let _ = s.fsck(true);
        let _ = s.umount();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}
