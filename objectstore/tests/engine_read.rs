//! Reads on an engine's own queue (`CommitEngine::read`), as an OSD shard
//! runs them: the same answers as the blocking read for every range
//! (device blocks, blocks not yet written home, holes, past the end), a
//! flipped byte on the device is a checksum error after the retries and
//! never wrong data, and a missing object is answered at once.

mod common;

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::{cid, oid, pattern, FileStore};
use kalmar_objectstore::device::{UringDevice, UringOptions};
use kalmar_objectstore::inspect::read_label;
use kalmar_objectstore::layout::BLOCK_SIZE;
use kalmar_objectstore::{
    Bytes, CollectionId, CommitEngine, Drive, Notify, ObjectId, StoreError, Transaction,
};

/// Bound on waiting for one read or commit.
const WAIT: Duration = Duration::from_secs(10);

/// Reads through the engine, polling it as a shard's driver would.
/// Returns the answer and whether it needed device I/O.
fn engine_read(
    e: &mut CommitEngine,
    c: &CollectionId,
    o: &ObjectId,
    off: u64,
    len: u64,
) -> (Result<Bytes, StoreError>, bool) {
    if let Some(r) = e.read(c, o, off, len, 7) {
        return (r, false);
    }
    let started = Instant::now();
    let mut out = Vec::new();
    loop {
        e.poll();
        e.take_read_completions(&mut out);
        if let Some((token, r)) = out.pop() {
            assert_eq!(token, 7);
            assert!(out.is_empty(), "one answer per read");
            return (r, true);
        }
        assert!(started.elapsed() < WAIT, "the read was answered");
        std::thread::sleep(Duration::from_micros(50));
    }
}

fn engine_commit(e: &mut CommitEngine, t: Transaction) {
    let permit = e.admission().try_acquire_owned().expect("room");
    e.submit(t, Notify::Token(1), permit);
    let started = Instant::now();
    let mut out = Vec::new();
    loop {
        e.poll();
        e.take_completions(&mut out);
        if let Some((_, r)) = out.pop() {
            r.expect("commits");
            return;
        }
        assert!(started.elapsed() < WAIT, "the commit was answered");
        std::thread::sleep(Duration::from_micros(50));
    }
}

#[test]
fn engine_reads_match_the_blocking_read_and_check_every_block() {
    let mut fs = FileStore::new(32 << 20);
    let c = cid("c");
    let whole = pattern(1, 64 << 10);
    let mut t = Transaction::new();
    t.create_collection(&c);
    t.write(&c, &oid("obj"), 0, whole.clone());
    // A hole of two blocks, then one block.
    t.write(&c, &oid("sparse"), 3 * BLOCK_SIZE, pattern(2, 4096));
    fs.apply(t);
    fs.umount();
    // Everything is home: flip a byte of block 5 of "obj" (the first
    // allocation, data blocks 0..16).
    let data_offset = {
        let dev = UringDevice::open(&fs.path, UringOptions::default()).expect("open");
        read_label(&dev).expect("label").data_offset
    };
    {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fs.path)
            .expect("open");
        let at = data_offset + 5 * BLOCK_SIZE + 77;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).expect("read");
        b[0] ^= 0x10;
        f.write_all_at(&b, at).expect("write");
        f.sync_all().expect("sync");
    }
    fs.settings.drive = Drive::External;
    fs.settings.engines = 1;
    fs.mount();
    let mut engines = fs.s().take_engines().expect("engines");
    let e = &mut engines[0];
    let bs = BLOCK_SIZE;

    // Ranges within blocks 0..5: one device read each, same bytes as the
    // blocking read.
    for (off, len) in [
        (0, 4096),
        (100, 200),
        (4096, 8192),
        (bs - 1, 2),
        (0, 5 * bs),
    ] {
        let (r, io) = engine_read(e, &c, &oid("obj"), off, len);
        let got = r.expect("reads");
        assert!(io, "from the device");
        let (a, b) = (off as usize, (off + len) as usize);
        assert_eq!(&got[..], &whole[a..b], "at {off}+{len}");
        let blocking = fs.s().read(&c, &oid("obj"), off, len).expect("blocking");
        assert_eq!(got, blocking);
    }
    // The flipped block: a checksum error, never wrong bytes; its
    // neighbours still read.
    let before = fs.s().perf_counters().dump()["checksum_errors"]
        .as_u64()
        .expect("count");
    for (off, len) in [(5 * bs, 4096), (0, 64 << 10), (5 * bs + 77, 1)] {
        let (r, _) = engine_read(e, &c, &oid("obj"), off, len);
        let err = r.expect_err("corrupt block");
        assert!(matches!(err, StoreError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains("obj block 5"), "{err}");
    }
    let after = fs.s().perf_counters().dump()["checksum_errors"]
        .as_u64()
        .expect("count");
    assert_eq!(after - before, 3, "one count per failed read");
    let (r, _) = engine_read(e, &c, &oid("obj"), 6 * bs, 100);
    assert_eq!(&r.expect("block 6")[..], &whole[6 * bs as usize..][..100]);

    // Holes read as zeros; past the end is empty.
    let (r, _) = engine_read(e, &c, &oid("sparse"), 0, 4 * bs);
    let got = r.expect("sparse");
    assert!(got[..3 * bs as usize].iter().all(|&x| x == 0));
    assert_eq!(&got[3 * bs as usize..], &pattern(2, 4096)[..]);
    let (r, io) = engine_read(e, &c, &oid("sparse"), 10 * bs, 4096);
    assert!(r.expect("past the end").is_empty());
    assert!(!io, "nothing to read from the device");
    // A missing object is answered at once.
    let (r, io) = engine_read(e, &c, &oid("nope"), 0, 4096);
    assert!(matches!(r, Err(StoreError::ObjectNotFound { .. })), "{r:?}");
    assert!(!io);

    // A block committed but not yet written home is served from memory,
    // without device I/O; once home, from the device.
    let fresh = pattern(3, 4096);
    let mut t = Transaction::new();
    t.write(&c, &oid("obj"), 5 * bs, fresh.clone());
    engine_commit(e, t);
    let (r, io) = engine_read(e, &c, &oid("obj"), 5 * bs, 4096);
    assert_eq!(&r.expect("healed")[..], &fresh[..]);
    assert!(!io, "from the overlay");
    e.set_draining();
    let started = Instant::now();
    while !e.is_idle() {
        e.poll();
        assert!(started.elapsed() < WAIT, "written home");
        std::thread::sleep(Duration::from_micros(50));
    }
    let (r, io) = engine_read(e, &c, &oid("obj"), 4 * bs, 2 * bs);
    let got = r.expect("reads");
    assert!(io, "home now");
    assert_eq!(
        &got[..bs as usize],
        &whole[4 * bs as usize..5 * bs as usize]
    );
    assert_eq!(&got[bs as usize..], &fresh[..]);

    fs.s().return_engines(engines);
    fs.umount();
}
