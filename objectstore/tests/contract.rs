//! The store's contract, operation by operation, with edge cases and
//! remounts between steps.

mod common;

use std::ops::Bound;

use common::{cid, oid, pattern, test_settings, FileStore};
use kalmar_objectstore::types::MAX_OBJECT_NAME_BYTES;
use kalmar_objectstore::{Bytes, MkfsOptions, ObjectId, ObjectStore, StoreError, Transaction};
use uuid::Uuid;

const MIB: u64 = 1 << 20;

fn read_all(fs: &FileStore, c: &str, o: &str) -> Vec<u8> {
    let (c, o) = (cid(c), oid(o));
    let size = fs.s().stat(&c, &o).expect("stat").size_bytes;
    fs.s().read(&c, &o, 0, size).expect("read").to_vec()
}

fn new_store() -> FileStore {
    let fs = FileStore::new(64 * MIB);
    let mut t = Transaction::new();
    t.create_collection(&cid("c"));
    fs.apply(t);
    fs
}

#[test]
fn writes_of_every_shape_match_a_byte_array() {
    let mut fs = new_store();
    let (c, o) = (cid("c"), oid("obj"));
    let mut expect: Vec<u8> = Vec::new();
    // (offset, len): zero-length, unaligned, overlapping, past EOF with a
    // hole, big unaligned, one byte, exact blocks.
    let writes: &[(u64, usize)] = &[
        (0, 0),
        (5, 10),
        (3, 4093),
        (4000, 200),
        (20_000, 1),
        (8191, 2),
        (100_000, 300_000),
        (150_001, 70_000),
        (4096, 4096),
        (0, 1),
        (399_999, 5),
    ];
    for (i, &(off, len)) in writes.iter().enumerate() {
        let data = pattern(i as u64, len);
        let mut t = Transaction::new();
        t.write(&c, &o, off, data.clone());
        fs.apply(t);
        if len > 0 {
            let end = off as usize + len;
            if expect.len() < end {
                expect.resize(end, 0);
            }
            expect[off as usize..end].copy_from_slice(&data);
        }
        assert_eq!(
            read_all(&fs, "c", "obj"),
            expect,
            "after write {i} ({off}, {len})"
        );
        if i % 4 == 3 {
            fs.remount();
            assert_eq!(
                read_all(&fs, "c", "obj"),
                expect,
                "after write {i} and a remount"
            );
        }
    }
    // Partial reads anywhere, including past the end.
    for (off, len) in [
        (0u64, 1u64),
        (4095, 2),
        (7, 9000),
        (399_990, 100),
        (404_000, 10),
    ] {
        let got = fs.s().read(&c, &o, off, len).expect("read");
        let end = (off + len).min(expect.len() as u64);
        let want = if off >= end {
            &[][..]
        } else {
            &expect[off as usize..end as usize]
        };
        assert_eq!(&got[..], want, "read({off}, {len})");
    }
    fs.crash_remount();
    assert_eq!(
        read_all(&fs, "c", "obj"),
        expect,
        "after a crash-like remount"
    );
    assert!(fs.s().fsck(true).expect("fsck").is_clean());
}

#[test]
fn zero_length_write_creates_an_empty_object() {
    let fs = new_store();
    let mut t = Transaction::new();
    t.write(&cid("c"), &oid("e"), 12_345, Vec::new());
    fs.apply(t);
    let st = fs.s().stat(&cid("c"), &oid("e")).expect("stat");
    assert_eq!((st.size_bytes, st.allocated_bytes), (0, 0));
}

#[test]
fn truncate_down_and_up_exposes_zeros() {
    let mut fs = new_store();
    let (c, o) = (cid("c"), oid("t"));
    let data = pattern(1, 50_000);
    let mut t = Transaction::new();
    t.write(&c, &o, 0, data.clone());
    fs.apply(t);
    for (i, size) in [30_001u64, 8192, 4097, 100_000, 1, 0, 70_000]
        .into_iter()
        .enumerate()
    {
        let mut t = Transaction::new();
        t.truncate(&c, &o, size);
        fs.apply(t);
        if i == 3 {
            fs.remount();
        }
    }
    // Data left: byte 0 (kept by truncate to 1) then zeros up to 70 000.
    let got = read_all(&fs, "c", "t");
    assert_eq!(got.len(), 70_000);
    assert!(
        got.iter().all(|&b| b == 0),
        "truncate to 0 then up: all zeros"
    );
    // Truncate down to unaligned, then grow: the old tail must be zeros.
    let mut t = Transaction::new();
    t.write(&c, &o, 0, data.clone());
    t.truncate(&c, &o, 5000);
    t.truncate(&c, &o, 9000);
    fs.apply(t);
    let got = read_all(&fs, "c", "t");
    let mut want = data[..5000].to_vec();
    want.resize(9000, 0);
    assert_eq!(got, want);
    let st = fs.s().stat(&c, &o).expect("stat");
    assert_eq!(
        st.allocated_bytes,
        2 * 4096,
        "blocks past the size were released"
    );
    // Truncate creates a missing object.
    let mut t = Transaction::new();
    t.truncate(&c, &oid("new"), 10);
    fs.apply(t);
    assert_eq!(read_all(&fs, "c", "new"), vec![0u8; 10]);
}

#[test]
fn zero_releases_whole_blocks_and_extends() {
    let fs = new_store();
    let (c, o) = (cid("c"), oid("z"));
    let data = pattern(2, 40_960);
    let mut t = Transaction::new();
    t.write(&c, &o, 0, data.clone());
    fs.apply(t);
    let before = fs.s().stat(&c, &o).expect("stat").allocated_bytes;
    let mut t = Transaction::new();
    t.zero(&c, &o, 100, 20_000);
    t.zero(&c, &o, 45_000, 10);
    fs.apply(t);
    let mut want = data.clone();
    want[100..20_100].fill(0);
    want.resize(45_010, 0);
    assert_eq!(read_all(&fs, "c", "z"), want);
    let after = fs.s().stat(&c, &o).expect("stat").allocated_bytes;
    assert_eq!(
        before - after,
        3 * 4096,
        "blocks 1..=3 lie wholly inside [100, 20100)"
    );
}

#[test]
fn clone_then_write_either_side() {
    let mut fs = new_store();
    let c = cid("c");
    let (a, b) = (oid("a"), oid("b"));
    let small = pattern(3, 10_000);
    let big = pattern(4, 700_000);
    let mut t = Transaction::new();
    t.write(&c, &a, 0, big.clone());
    t.write(&c, &b, 0, small.clone());
    t.setattr(&c, &b, "only_b", Bytes::from_static(b"x"));
    t.omap_setkeys(
        &c,
        &a,
        vec![(Bytes::from_static(b"k"), Bytes::from_static(b"v"))],
    );
    t.omap_setheader(&c, &a, Bytes::from_static(b"hdr"));
    t.setattr(&c, &a, "_", Bytes::from_static(b"info"));
    fs.apply(t);
    // Clone replaces b entirely (data, xattrs, omap).
    let mut t = Transaction::new();
    t.clone(&c, &a, &b);
    fs.apply(t);
    fs.remount();
    assert_eq!(read_all(&fs, "c", "b"), big);
    assert_eq!(
        fs.s().getattrs(&c, &b).expect("attrs"),
        vec![("_".to_string(), Bytes::from_static(b"info"))]
    );
    assert_eq!(
        fs.s().omap_get_header(&c, &b).expect("hdr"),
        Some(Bytes::from_static(b"hdr"))
    );
    // Writes to one side do not show on the other.
    let mut t = Transaction::new();
    t.write(&c, &a, 5, b"AAAA".to_vec());
    t.write(&c, &b, 700_000 - 3, b"BBBBBB".to_vec());
    t.omap_setkeys(
        &c,
        &b,
        vec![(Bytes::from_static(b"k"), Bytes::from_static(b"changed"))],
    );
    fs.apply(t);
    let mut want_a = big.clone();
    want_a[5..9].copy_from_slice(b"AAAA");
    let mut want_b = big.clone();
    want_b.truncate(700_000 - 3);
    want_b.extend_from_slice(b"BBBBBB");
    assert_eq!(read_all(&fs, "c", "a"), want_a);
    assert_eq!(read_all(&fs, "c", "b"), want_b);
    let av = fs
        .s()
        .omap_get_values(&c, &a, &[Bytes::from_static(b"k")])
        .expect("omap");
    assert_eq!(av[0].1, Bytes::from_static(b"v"));
    // A small clone takes the journal path; both copies stay independent.
    let mut t = Transaction::new();
    t.write(&c, &oid("s"), 0, small.clone());
    t.clone(&c, &oid("s"), &oid("s2"));
    t.write(&c, &oid("s2"), 0, b"x".to_vec());
    fs.apply(t);
    assert_eq!(read_all(&fs, "c", "s"), small);
    assert_eq!(read_all(&fs, "c", "s2")[0], b'x');
    assert!(fs.s().fsck(true).expect("fsck").is_clean());
    // A missing source refuses the transaction.
    let mut t = Transaction::new();
    t.clone(&c, &oid("missing"), &oid("x"));
    assert!(matches!(
        fs.s().apply_transaction(t),
        Err(StoreError::ObjectNotFound { .. })
    ));
}

#[test]
fn objects_spanning_many_extents() {
    let mut fs = new_store();
    let c = cid("c");
    // Interleave big writes of two objects so their extents alternate on
    // the device, then overwrite pieces of both.
    let mut want: [Vec<u8>; 2] = [vec![0; 4 << 20], vec![0; 4 << 20]];
    for i in 0..16u64 {
        for (j, name) in ["x", "y"].iter().enumerate() {
            let d = pattern(i * 2 + j as u64, 256 << 10);
            let off = i * (256 << 10);
            let mut t = Transaction::new();
            t.write(&c, &oid(name), off, d.clone());
            fs.apply(t);
            want[j][off as usize..off as usize + d.len()].copy_from_slice(&d);
        }
    }
    for k in 0..50u64 {
        let off = (k * 81_919) % (4 << 20);
        let d = pattern(1000 + k, 3000 + (k as usize * 1000) % 90_000);
        let end = (off as usize + d.len()).min(4 << 20);
        let mut t = Transaction::new();
        t.write(&c, &oid("x"), off, d[..end - off as usize].to_vec());
        fs.apply(t);
        want[0][off as usize..end].copy_from_slice(&d[..end - off as usize]);
    }
    fs.remount();
    assert_eq!(read_all(&fs, "c", "x"), want[0]);
    assert_eq!(read_all(&fs, "c", "y"), want[1]);
    let st = fs.s().stat(&c, &oid("x")).expect("stat");
    assert_eq!(st.allocated_bytes, 4 << 20);
    assert!(fs.s().fsck(true).expect("fsck").is_clean());
}

#[test]
fn omap_iteration_bounds_and_removal() {
    let mut fs = new_store();
    let (c, o) = (cid("c"), oid("m"));
    let keys: Vec<String> = (0..50).map(|i| format!("key{i:02}")).collect();
    let mut t = Transaction::new();
    t.omap_setkeys(
        &c,
        &o,
        keys.iter()
            .map(|k| (Bytes::from(k.clone()), Bytes::from(format!("v-{k}"))))
            .collect(),
    );
    t.omap_setkeys(
        &c,
        &o,
        vec![(Bytes::from_static(b""), Bytes::from_static(b"empty key"))],
    );
    fs.apply(t);
    fs.remount();
    let s = fs.s();
    let names = |v: Vec<(Bytes, Bytes)>| {
        v.into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
            .collect::<Vec<_>>()
    };
    let all = names(
        s.omap_iter(&c, &o, Bound::Unbounded, Bound::Unbounded, 1000)
            .expect("iter"),
    );
    assert_eq!(all.len(), 51);
    assert_eq!(all[0], "", "the empty key sorts first");
    let r = names(
        s.omap_iter(
            &c,
            &o,
            Bound::Excluded(b"key10"),
            Bound::Excluded(b"key13"),
            100,
        )
        .expect("iter"),
    );
    assert_eq!(r, vec!["key11", "key12"]);
    let r = names(
        s.omap_iter(
            &c,
            &o,
            Bound::Included(b"key10"),
            Bound::Included(b"key13"),
            100,
        )
        .expect("iter"),
    );
    assert_eq!(r, vec!["key10", "key11", "key12", "key13"]);
    let r = names(
        s.omap_iter(&c, &o, Bound::Included(b"key4"), Bound::Unbounded, 3)
            .expect("iter"),
    );
    assert_eq!(
        r,
        vec!["key40", "key41", "key42"],
        "limit and prefix-like bound"
    );
    let r = s
        .omap_iter(&c, &o, Bound::Included(b"z"), Bound::Excluded(b"a"), 10)
        .expect("iter");
    assert!(r.is_empty(), "inverted range is empty");
    let got = s
        .omap_get_values(
            &c,
            &o,
            &[Bytes::from_static(b"key07"), Bytes::from_static(b"nope")],
        )
        .expect("values");
    assert_eq!(
        got,
        vec![(Bytes::from_static(b"key07"), Bytes::from_static(b"v-key07"))]
    );

    // Another object's omap never leaks into this one's range.
    let mut t = Transaction::new();
    t.omap_setkeys(
        &c,
        &oid("m2"),
        vec![(Bytes::from_static(b"key00"), Bytes::from_static(b"other"))],
    );
    t.omap_rmkeys(
        &c,
        &o,
        vec![Bytes::from_static(b"key00"), Bytes::from_static(b"absent")],
    );
    t.omap_setheader(&c, &o, Bytes::from_static(b"H"));
    fs.apply(t);
    let r = names(
        fs.s()
            .omap_iter(&c, &o, Bound::Unbounded, Bound::Included(b"key01"), 10)
            .expect("iter"),
    );
    assert_eq!(r, vec!["", "key01"]);
    let mut t = Transaction::new();
    t.omap_clear(&c, &o);
    fs.apply(t);
    assert!(fs
        .s()
        .omap_iter(&c, &o, Bound::Unbounded, Bound::Unbounded, 10)
        .expect("iter")
        .is_empty());
    assert_eq!(fs.s().omap_get_header(&c, &o).expect("hdr"), None);
    assert_eq!(
        fs.s()
            .omap_iter(&c, &oid("m2"), Bound::Unbounded, Bound::Unbounded, 10)
            .expect("iter")
            .len(),
        1
    );
}

#[test]
fn long_names_and_many_objects_list_in_order() {
    let mut fs = new_store();
    let long_coll = "x".repeat(255);
    let lc = cid(&long_coll);
    let long_name = ObjectId::new(vec![b'n'; MAX_OBJECT_NAME_BYTES]).expect("4 KiB name");
    let mut t = Transaction::new();
    t.create_collection(&lc);
    t.write(&lc, &long_name, 0, b"long".to_vec());
    t.setattr(&lc, &long_name, "a", Bytes::from_static(b"1"));
    fs.apply(t);
    // 3000 objects in batches, with binary names too.
    let c = cid("c");
    let mut names: Vec<Vec<u8>> = (0..3000u32)
        .map(|i| format!("rbd_data.{:08x}", i * 7919 % 3001).into_bytes())
        .collect();
    names.push(vec![0u8, 1, 255]);
    for chunk in names.chunks(500) {
        let mut t = Transaction::new();
        for n in chunk {
            t.touch(&c, &ObjectId::new(n.clone()).expect("name"));
        }
        fs.apply(t);
    }
    fs.remount();
    names.sort();
    let mut listed = Vec::new();
    let mut start: Option<ObjectId> = None;
    let mut pages = 0;
    loop {
        let (page, next) = fs
            .s()
            .collection_list(&c, start.as_ref(), 333)
            .expect("list");
        assert!(page.len() <= 333);
        listed.extend(page.into_iter().map(|o| o.as_bytes().to_vec()));
        pages += 1;
        match next {
            Some(n) => start = Some(n),
            None => break,
        }
    }
    assert_eq!(listed, names, "every object once, in bytewise order");
    assert_eq!(pages, names.len().div_ceil(333));
    // From a start that names no object: the objects at or after it.
    let between = ObjectId::new(b"rbd_data.00000100x").expect("name");
    let (page, _) = fs.s().collection_list(&c, Some(&between), 5).expect("list");
    let expect: Vec<Vec<u8>> = names
        .iter()
        .filter(|n| n.as_slice() >= between.as_bytes())
        .take(5)
        .cloned()
        .collect();
    let got: Vec<Vec<u8>> = page.iter().map(|o| o.as_bytes().to_vec()).collect();
    assert_eq!(got, expect);
    // From an existing object: that object first. Past the end: nothing.
    let at = ObjectId::new(names[1234].clone()).expect("name");
    let (page, _) = fs.s().collection_list(&c, Some(&at), 1).expect("list");
    assert_eq!(page, vec![at]);
    let past = ObjectId::new(vec![0xff; 8]).expect("name");
    assert_eq!(
        fs.s().collection_list(&c, Some(&past), 10).expect("list"),
        (Vec::new(), None)
    );
    assert_eq!(
        fs.s().read(&lc, &long_name, 0, 100).expect("read"),
        Bytes::from_static(b"long")
    );
    let (l, _) = fs.s().collection_list(&lc, None, 10).expect("list");
    assert_eq!(l, vec![long_name.clone()]);
    assert!(ObjectId::new(vec![b'n'; MAX_OBJECT_NAME_BYTES + 1]).is_err());
    assert_eq!(fs.s().statfs().expect("statfs").num_objects, 3002);
}

#[test]
fn collections_and_errors() {
    let fs = new_store();
    let s = fs.s();
    let (c, d) = (cid("c"), cid("d"));
    let mut t = Transaction::new();
    t.create_collection(&c);
    assert_eq!(
        s.apply_transaction(t),
        Err(StoreError::CollectionExists("c".into()))
    );
    let mut t = Transaction::new();
    t.touch(&d, &oid("o"));
    assert_eq!(
        s.apply_transaction(t),
        Err(StoreError::CollectionNotFound("d".into()))
    );
    let mut t = Transaction::new();
    t.remove(&c, &oid("nope"));
    assert!(matches!(
        s.apply_transaction(t),
        Err(StoreError::ObjectNotFound { .. })
    ));
    let mut t = Transaction::new();
    t.write(&c, &oid("o"), 0, b"data".to_vec());
    t.create_collection(&d);
    fs.apply(t);
    let mut t = Transaction::new();
    t.remove_collection(&c);
    assert_eq!(
        s.apply_transaction(t),
        Err(StoreError::CollectionNotEmpty("c".into()))
    );
    // Move to d, then c is empty and can go.
    let mut t = Transaction::new();
    t.collection_move_rename(&c, &oid("o"), &d, &oid("moved"));
    t.remove_collection(&c);
    fs.apply(t);
    assert_eq!(s.list_collections().expect("list"), vec![d.clone()]);
    assert_eq!(
        s.read(&d, &oid("moved"), 0, 10).expect("read"),
        Bytes::from_static(b"data")
    );
    assert!(!s.exists(&c, &oid("o")).expect("exists"));
    // Moving onto an existing object is refused.
    let mut t = Transaction::new();
    t.touch(&d, &oid("other"));
    t.collection_move_rename(&d, &oid("other"), &d, &oid("moved"));
    assert!(matches!(
        s.apply_transaction(t),
        Err(StoreError::ObjectExists { .. })
    ));
    assert!(
        !s.exists(&d, &oid("other")).expect("exists"),
        "the failed transaction left nothing"
    );
    assert!(matches!(
        s.stat(&c, &oid("o")),
        Err(StoreError::CollectionNotFound(_))
    ));
    assert!(matches!(
        s.stat(&d, &oid("zz")),
        Err(StoreError::ObjectNotFound { .. })
    ));
}

#[test]
fn a_failing_operation_undoes_the_whole_transaction() {
    let mut fs = new_store();
    let c = cid("c");
    let mut t = Transaction::new();
    t.write(&c, &oid("keep"), 0, pattern(9, 9000));
    fs.apply(t);
    let before = common::dump(fs.s());
    let statfs = fs.s().statfs().expect("statfs");
    let mut t = Transaction::new();
    t.write(&c, &oid("keep"), 100, pattern(10, 500_000)); // big path: allocates
    t.write(&c, &oid("new"), 0, pattern(11, 5000)); // deferred path
    t.omap_setkeys(
        &c,
        &oid("new"),
        vec![(Bytes::from_static(b"k"), Bytes::from_static(b"v"))],
    );
    t.setattr(&c, &oid("keep"), "a", Bytes::from_static(b"1"));
    t.remove(&c, &oid("missing")); // fails
    assert!(fs.s().apply_transaction(t).is_err());
    assert_eq!(common::dump(fs.s()), before);
    let after = fs.s().statfs().expect("statfs");
    assert_eq!(
        after.allocated_bytes, statfs.allocated_bytes,
        "allocations were undone"
    );
    fs.remount();
    assert_eq!(common::dump(fs.s()), before);
    assert!(fs.s().fsck(false).expect("fsck").is_clean());
}

#[test]
fn xattrs() {
    let mut fs = new_store();
    let (c, o) = (cid("c"), oid("x"));
    let mut t = Transaction::new();
    t.setattrs(
        &c,
        &o,
        vec![
            ("b".into(), Bytes::from_static(b"2")),
            ("a".into(), Bytes::from_static(b"1")),
        ],
    );
    t.setattr(&c, &o, "b", Bytes::from_static(b"22"));
    fs.apply(t);
    fs.remount();
    let s = fs.s();
    assert_eq!(
        s.getattr(&c, &o, "b").expect("get"),
        Some(Bytes::from_static(b"22"))
    );
    assert_eq!(s.getattr(&c, &o, "zz").expect("get"), None);
    assert_eq!(s.getattrs(&c, &o).expect("all").len(), 2);
    let mut t = Transaction::new();
    t.rmattr(&c, &o, "a");
    t.rmattr(&c, &o, "never-set");
    fs.apply(t);
    assert_eq!(
        s.getattrs(&c, &o).expect("all"),
        vec![("b".to_string(), Bytes::from_static(b"22"))]
    );
    let mut t = Transaction::new();
    t.setattr(&c, &o, "huge", vec![0u8; 70_000]);
    assert!(matches!(
        s.apply_transaction(t),
        Err(StoreError::InvalidArgument(_))
    ));
    let mut t = Transaction::new();
    t.setattr(&c, &o, "", Bytes::new());
    assert!(matches!(
        s.apply_transaction(t),
        Err(StoreError::InvalidArgument(_))
    ));
}

/// What mkfs will give (an OSD registers its CRUSH weight from it before
/// formatting) is what statfs reports after: the default journal and a
/// given one, on a file that is not a whole number of blocks.
#[test]
fn planned_capacity_is_what_statfs_reports_after_mkfs() {
    for journal in [None, Some(3 << 20)] {
        let size = (96 << 20) + 1234;
        let probe = tempfile::tempdir().expect("tempdir");
        let path = probe.path().join("dev");
        std::fs::File::create(&path)
            .and_then(|f| f.set_len(size))
            .expect("device file");
        let mut mk = MkfsOptions::new(Uuid::nil(), Uuid::nil());
        mk.journal_bytes = journal;
        let planned = ObjectStore::planned_capacity(&path, &mk).expect("planned");
        let fs = FileStore::with(size, journal, test_settings());
        let total = fs.s().statfs().expect("statfs").total_bytes;
        assert_eq!(planned, total, "journal {journal:?}");
        assert!(total < size && total > size / 2, "{total} of {size}");
    }
}

#[test]
fn statfs_tracks_space_and_objects() {
    let mut fs = new_store();
    let c = cid("c");
    let s0 = fs.s().statfs().expect("statfs");
    assert_eq!(
        (s0.num_objects, s0.allocated_bytes, s0.stored_bytes),
        (0, 0, 0)
    );
    let mut t = Transaction::new();
    t.write(&c, &oid("a"), 0, pattern(1, 1 << 20));
    t.write(&c, &oid("b"), 10, pattern(2, 10));
    fs.apply(t);
    let s1 = fs.s().statfs().expect("statfs");
    assert_eq!(s1.num_objects, 2);
    assert_eq!(s1.stored_bytes, (1 << 20) + 20);
    assert_eq!(s1.allocated_bytes, (1 << 20) + 4096);
    assert_eq!(s1.available_bytes, s0.available_bytes - s1.allocated_bytes);
    let mut t = Transaction::new();
    t.remove(&c, &oid("a"));
    fs.apply(t);
    let s2 = fs.s().statfs().expect("statfs");
    assert_eq!(s2.allocated_bytes, 4096);
    // Freed space returns after a checkpoint (a remount makes one).
    fs.remount();
    let s3 = fs.s().statfs().expect("statfs");
    assert_eq!(s3.available_bytes, s0.available_bytes - 4096);
    assert_eq!(s3.pending_free_bytes, 0);
}

#[test]
fn running_out_of_space_refuses_and_recovers() {
    let fs = FileStore::new(8 * MIB);
    let c = cid("c");
    let mut t = Transaction::new();
    t.create_collection(&c);
    fs.apply(t);
    let avail = fs.s().statfs().expect("statfs").available_bytes;
    let mut t = Transaction::new();
    t.write(&c, &oid("big"), 0, vec![7u8; avail as usize + 4096]);
    assert!(matches!(
        fs.s().apply_transaction(t),
        Err(StoreError::NoSpace { .. })
    ));
    let mut t = Transaction::new();
    t.write(&c, &oid("fits"), 0, vec![7u8; 100_000]);
    fs.apply(t);
    assert!(fs.s().fsck(false).expect("fsck").is_clean());
}

#[test]
fn group_commit_and_perf_counters() {
    let fs = new_store();
    let c = cid("c");
    let txns: Vec<Transaction> = (0..200)
        .map(|i| {
            let mut t = Transaction::new();
            t.write(
                &c,
                &oid(&format!("o{}", i % 17)),
                (i * 1000) as u64,
                pattern(i as u64, 1000),
            );
            t
        })
        .collect();
    let commits = fs.s().queue_transactions(txns);
    for cm in commits {
        cm.wait().expect("commit");
    }
    let perf = fs.s().perf_counters().dump();
    assert_eq!(perf["txns"], 201);
    let records = perf["journal_records"].as_u64().expect("records");
    assert!(
        records < 20,
        "200 transactions queued together share records: {records}"
    );
    assert!(perf["commit_lat"]["avgcount"].as_u64().expect("count") >= 200);
    assert!(perf["deferred_write_ops"].as_u64().expect("deferred") >= 200);
    let _ = fs.s().read(&c, &oid("o1"), 0, 10).expect("read");
    assert_eq!(fs.s().perf_counters().dump()["read_ops"], 1);
}

#[test]
fn the_journal_wraps_and_checkpoints_many_times() {
    // 1 MiB journal: hundreds of records force wraps, pads and waits for
    // checkpoints.
    let mut settings = common::test_settings();
    settings.checkpoint_interval_ms = 1000;
    let mut fs = FileStore::with(16 * MIB, Some(MIB), settings);
    let c = cid("c");
    let mut t = Transaction::new();
    t.create_collection(&c);
    fs.apply(t);
    let mut model = vec![0u8; 200_000];
    for i in 0..400u64 {
        let off = (i * 7001) % 190_000;
        let d = pattern(i, 1 + (i as usize * 37) % 9000);
        let end = (off as usize + d.len()).min(200_000);
        let mut t = Transaction::new();
        t.write(&c, &oid("w"), off, d[..end - off as usize].to_vec());
        fs.apply(t);
        model[off as usize..end].copy_from_slice(&d[..end - off as usize]);
        if i == 250 {
            fs.crash_remount();
        }
    }
    // Counters restart at the remount: these are for the last 149 records.
    let perf = fs.s().perf_counters().dump();
    assert!(
        perf["journal_bytes"].as_u64().expect("bytes") > MIB,
        "the journal wrapped: {perf}"
    );
    assert!(perf["checkpoints"].as_u64().expect("cp") >= 1, "{perf}");
    let got = read_all(&fs, "c", "w");
    assert_eq!(&got[..], &model[..got.len()]);
    fs.crash_remount();
    assert_eq!(read_all(&fs, "c", "w"), got);
    assert!(fs.s().fsck(true).expect("fsck").is_clean());
}

#[test]
fn async_api_from_tokio() {
    let fs = new_store();
    let store = fs.s();
    let c = cid("c");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut commits = Vec::new();
        for i in 0..64u64 {
            let mut t = Transaction::new();
            t.write(&c, &oid(&format!("a{i}")), 0, pattern(i, 4096));
            commits.push(store.queue_transaction(t));
        }
        for cm in commits {
            cm.await.expect("commit");
        }
        for i in 0..64u64 {
            let got = store
                .read_async(&c, &oid(&format!("a{i}")), 0, 4096)
                .await
                .expect("read");
            assert_eq!(&got[..], &pattern(i, 4096)[..]);
        }
        let st = store.stat_async(&c, &oid("a3")).await.expect("stat");
        assert_eq!(st.size_bytes, 4096);
        let (names, next) = store
            .collection_list_async(&c, None, 10)
            .await
            .expect("list");
        assert_eq!((names.len(), next.is_some()), (10, true));
        let missing = store.read_async(&c, &oid("nope"), 0, 1).await;
        assert!(matches!(missing, Err(StoreError::ObjectNotFound { .. })));
    });
}

/// More transactions than the store admits at once: each waits for room
/// and commits; none is refused for load (there is no "throttled" error to
/// interpret), and the sync API from many threads does the same.
#[test]
fn admission_waits_for_room_instead_of_refusing() {
    let settings = kalmar_objectstore::StoreSettings {
        max_queued_txns: 2,
        ..common::test_settings()
    };
    let fs = FileStore::with(64 * MIB, None, settings);
    let mut t = Transaction::new();
    t.create_collection(&cid("c"));
    fs.apply(t);
    let store = fs.s();
    let c = cid("c");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let commits: Vec<_> = (0..256u64)
            .map(|i| {
                let mut t = Transaction::new();
                t.write(&c, &oid(&format!("a{i}")), 0, pattern(i, 4096));
                store.queue_transaction(t)
            })
            .collect();
        for (i, cm) in commits.into_iter().enumerate() {
            cm.await
                .unwrap_or_else(|e| panic!("transaction {i} refused: {e}"));
        }
    });
    std::thread::scope(|sc| {
        for th in 0..8u64 {
            let c = &c;
            sc.spawn(move || {
                for i in 0..32u64 {
                    let mut t = Transaction::new();
                    t.write(c, &oid(&format!("t{th}.{i}")), 0, pattern(i, 512));
                    store.apply_transaction(t).expect("admitted and committed");
                }
            });
        }
    });
    for i in (0..256u64).step_by(37) {
        assert_eq!(read_all(&fs, "c", &format!("a{i}")), pattern(i, 4096));
    }
    assert_eq!(read_all(&fs, "c", "t7.31"), pattern(31, 512));
}

#[test]
fn concurrent_writers_and_readers() {
    let fs = new_store();
    let store = fs.s();
    let c = cid("c");
    std::thread::scope(|scope| {
        for w in 0..4u64 {
            let c = c.clone();
            scope.spawn(move || {
                for i in 0..100u64 {
                    let o = oid(&format!("w{w}"));
                    let mut t = Transaction::new();
                    t.write(&c, &o, (i % 10) * 4096, pattern(w * 1000 + i, 4096));
                    t.omap_setkeys(
                        &c,
                        &o,
                        vec![(Bytes::from(format!("{i:04}")), Bytes::from_static(b"v"))],
                    );
                    store.apply_transaction(t).expect("commit");
                    // Read-your-writes: the acknowledged block is visible.
                    let got = store.read(&c, &o, (i % 10) * 4096, 4096).expect("read");
                    assert_eq!(&got[..], &pattern(w * 1000 + i, 4096)[..]);
                }
            });
        }
    });
    for w in 0..4 {
        let n = store
            .omap_iter(
                &c,
                &oid(&format!("w{w}")),
                Bound::Unbounded,
                Bound::Unbounded,
                1000,
            )
            .expect("omap");
        assert_eq!(n.len(), 100);
    }
    assert!(store.fsck(true).expect("fsck").is_clean());
}

#[test]
fn reads_are_bounded() {
    let mut settings = common::test_settings();
    settings.max_read_bytes = 64 << 10;
    let fs = FileStore::with(32 * MIB, None, settings);
    let c = cid("c");
    let mut t = Transaction::new();
    t.create_collection(&c);
    t.write(&c, &oid("big"), 0, pattern(1, 100_000));
    fs.apply(t);
    let err = fs
        .s()
        .read(&c, &oid("big"), 0, 100_000)
        .expect_err("too large");
    assert!(matches!(err, StoreError::InvalidArgument(_)), "{err}");
    assert_eq!(
        fs.s()
            .read(&c, &oid("big"), 0, 64 << 10)
            .expect("fits")
            .len(),
        64 << 10
    );
    // The bound applies after clamping to the object's size.
    assert_eq!(
        fs.s()
            .read(&c, &oid("big"), 90_000, u64::MAX)
            .expect("tail")
            .len(),
        10_000
    );
}

/// Big writes go to the device once, from the caller's buffer when it is
/// aligned (no copy) and from a copy when it is not; either way the data
/// reads back after the publish, after a remount and through fragmented
/// space, and the journal carries only metadata for them.
#[test]
fn big_writes_are_written_once_from_aligned_and_unaligned_buffers() {
    use kalmar_objectstore::device::{aligned_bytes, AlignedBuf};
    let mut fs = FileStore::new(64 * MIB);
    let c = cid("c");
    let mut t = Transaction::new();
    t.create_collection(&c);
    // Small objects every other block first, so later allocations split.
    for i in 0..64u64 {
        t.write(&c, &oid(&format!("s{i}")), 0, pattern(i, 4096));
    }
    fs.apply(t);
    let mut t = Transaction::new();
    for i in (0..64u64).step_by(2) {
        t.remove(&c, &oid(&format!("s{i}")));
    }
    fs.apply(t);
    fs.remount(); // frees become reusable after the checkpoint

    let before = fs.s().perf_counters().dump();
    let mut aligned = AlignedBuf::zeroed(MIB as usize);
    aligned.copy_from_slice(&pattern(7, MIB as usize));
    let aligned = aligned_bytes(aligned);
    // One byte into a buffer: never aligned, so it is copied.
    let mut backing = vec![0u8; MIB as usize + 1];
    backing[1..].copy_from_slice(&pattern(8, MIB as usize));
    let unaligned = Bytes::from(backing).slice(1..);
    let mut t = Transaction::new();
    t.write(&c, &oid("a"), 0, aligned.clone());
    t.write(&c, &oid("u"), 4096, unaligned.clone());
    fs.apply(t);
    let after = fs.s().perf_counters().dump();
    let delta = |k: &str| after[k].as_u64().expect(k) - before[k].as_u64().expect(k);
    assert_eq!(delta("big_write_bytes"), 2 * MIB);
    assert!(
        delta("journal_bytes") < 64 * 1024,
        "only metadata is journaled for big writes: {} bytes",
        delta("journal_bytes")
    );
    for _ in 0..2 {
        assert_eq!(fs.s().read(&c, &oid("a"), 0, MIB).expect("a"), aligned);
        let u = fs.s().read(&c, &oid("u"), 0, MIB + 4096).expect("u");
        assert!(u[..4096].iter().all(|&b| b == 0));
        assert_eq!(&u[4096..], &unaligned[..]);
        fs.remount();
    }
    assert!(fs.s().fsck(true).expect("fsck").is_clean());
}

/// A transaction that created a collection and then failed leaves no
/// trace for the transactions prepared after it in the same batch (the
/// batch remembers which collections exist; a rollback must forget).
#[test]
fn a_rolled_back_creation_is_forgotten_within_the_batch() {
    let fs = new_store();
    let (c, missing) = (cid("fresh"), cid("missing"));
    let mut t1 = Transaction::new();
    t1.create_collection(&c);
    t1.touch(&c, &oid("a"));
    t1.touch(&missing, &oid("x"));
    let mut t2 = Transaction::new();
    t2.touch(&c, &oid("b"));
    let mut t3 = Transaction::new();
    t3.create_collection(&c);
    t3.touch(&c, &oid("c"));
    let mut t4 = Transaction::new();
    t4.touch(&c, &oid("d"));
    let res: Vec<_> = fs
        .s()
        .queue_transactions(vec![t1, t2, t3, t4])
        .into_iter()
        .map(|cm| cm.wait())
        .collect();
    assert!(
        matches!(res[0], Err(StoreError::CollectionNotFound(_))),
        "{:?}",
        res[0]
    );
    assert!(
        matches!(res[1], Err(StoreError::CollectionNotFound(_))),
        "the creation was undone: {:?}",
        res[1]
    );
    assert!(res[2].is_ok() && res[3].is_ok(), "{res:?}");
    let perf = fs.s().perf_counters().dump();
    assert!(
        perf["journal_records"].as_u64().expect("records") <= 2,
        "prepared together"
    );
    let names: Vec<String> = fs
        .s()
        .collection_list(&c, None, 10)
        .expect("list")
        .0
        .iter()
        .map(|o| o.to_display())
        .collect();
    assert_eq!(names, vec!["c", "d"]);
}
