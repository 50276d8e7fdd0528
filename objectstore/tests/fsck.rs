//! fsck finds what it must: leaked and doubly allocated space, dangling
//! metadata, wrong statistics; and mount refuses devices it must refuse.

mod common;

use common::{cid, mount_opts, oid, pattern, FileStore};
use kalmar_common::encoding::{Decode, Encode};
use kalmar_objectstore::keys;
use kalmar_objectstore::kv::{KvOp, KvRead, KvStore, RocksKv};
use kalmar_objectstore::layout::{BLOCK_SIZE, LABEL_OFFSET};
use kalmar_objectstore::onode::{Onode, Shard};
use kalmar_objectstore::{MountOptions, ObjectStore, StoreError, Transaction};
use uuid::Uuid;

/// A store with two objects, unmounted, and its database opened raw.
fn damaged_store() -> (FileStore, RocksKv) {
    let mut fs = FileStore::new(32 << 20);
    let c = cid("c");
    let mut t = Transaction::new();
    t.create_collection(&c);
    t.write(&c, &oid("a"), 0, pattern(1, 3 * 4096));
    t.write(&c, &oid("b"), 0, pattern(2, 4096));
    t.omap_setkeys(&c, &oid("b"), vec![("k".into(), "v".into())]);
    fs.apply(t);
    fs.umount();
    let kv = RocksKv::open(&fs.db, &Default::default()).expect("open the database");
    (fs, kv)
}

fn onode(kv: &RocksKv, name: &str) -> Onode {
    let v = kv
        .get(&keys::onode(&cid("c"), &oid(name)))
        .expect("get")
        .expect("exists");
    Onode::from_bytes(&v).expect("decodes")
}

fn fsck(fs: &mut FileStore) -> kalmar_objectstore::FsckReport {
    fs.mount();
    let r = fs.s().fsck(false).expect("fsck");
    fs.umount();
    r
}

#[test]
fn clean_store_is_clean() {
    let (mut fs, kv) = damaged_store();
    drop(kv);
    let r = fsck(&mut fs);
    assert!(r.is_clean(), "{:?}", r.errors);
    assert_eq!((r.objects, r.mapped_blocks), (2, 4));
}

#[test]
fn leaked_blocks_are_reported() {
    let (mut fs, kv) = damaged_store();
    // Mark block 100 allocated in the bitmap: nothing maps it.
    let seg = kv
        .get(&keys::bitmap_segment(0))
        .expect("get")
        .expect("segment 0");
    let mut seg = seg.clone();
    seg[100 / 8] |= 1 << (100 % 8);
    kv.write(&[KvOp::Put(keys::bitmap_segment(0), seg)])
        .expect("write");
    kv.flush().expect("flush");
    drop(kv);
    let r = fsck(&mut fs);
    assert_eq!(r.leaked_blocks, 1, "{:?}", r.errors);
    assert!(r
        .errors
        .iter()
        .any(|e| e.contains("data block 100") && e.contains("leaked")));
}

#[test]
fn doubly_allocated_and_used_but_free_blocks_are_reported() {
    let (mut fs, kv) = damaged_store();
    // Point b's block 0 at a's block 0, and clear one used bit.
    let (a, b) = (onode(&kv, "a"), onode(&kv, "b"));
    let sa = Shard::from_bytes(
        &kv.get(&keys::extent_shard(a.nid, 0))
            .expect("get")
            .expect("a shard"),
    )
    .expect("shard");
    let mut sb = Shard::from_bytes(
        &kv.get(&keys::extent_shard(b.nid, 0))
            .expect("get")
            .expect("b shard"),
    )
    .expect("shard");
    let a0 = sa.get(0).expect("a block 0");
    let old_b0 = sb.set(0, Some(a0)).expect("b block 0");
    let mut seg = kv
        .get(&keys::bitmap_segment(0))
        .expect("get")
        .expect("segment");
    let a1 = sa.get(1).expect("a block 1").phys;
    seg[(a1 / 8) as usize] &= !(1 << (a1 % 8));
    kv.write(&[
        KvOp::Put(keys::extent_shard(b.nid, 0), sb.to_bytes()),
        KvOp::Put(keys::bitmap_segment(0), seg),
    ])
    .expect("write");
    kv.flush().expect("flush");
    drop(kv);
    let r = fsck(&mut fs);
    assert_eq!(r.doubly_allocated_blocks, 1, "{:?}", r.errors);
    assert_eq!(r.used_but_free_blocks, 1, "{:?}", r.errors);
    // b's old block is now allocated but unmapped.
    assert_eq!(
        r.leaked_blocks, 1,
        "{:?} (old block {})",
        r.errors, old_b0.phys
    );
}

#[test]
fn dangling_metadata_and_wrong_stats_are_reported() {
    let (mut fs, kv) = damaged_store();
    let b = onode(&kv, "b");
    kv.write(&[
        // omap and extents of an object id nobody has
        KvOp::Put(keys::omap(9999, b"ghost"), b"x".to_vec()),
        KvOp::Put(keys::extent_shard(9999, 0), Shard::default().to_bytes()),
        // an object in a collection that does not exist
        KvOp::Put(
            keys::onode(&cid("nope"), &oid("orphan")),
            Onode {
                nid: 5000,
                ..Onode::default()
            }
            .to_bytes(),
        ),
        // b's header loses its object: drop b itself
        KvOp::Delete(keys::onode(&cid("c"), &oid("b"))),
    ])
    .expect("write");
    kv.flush().expect("flush");
    drop(kv);
    let r = fsck(&mut fs);
    assert!(r.dangling_keys >= 4, "{:?}", r.errors);
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains("missing collection nope")),
        "{:?}",
        r.errors
    );
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains("omap entry of object id 9999")),
        "{:?}",
        r.errors
    );
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains(&format!("object id {}", b.nid))),
        "{:?}",
        r.errors
    );
    assert!(
        r.errors.iter().any(|e| e.contains("store stats")),
        "{:?}",
        r.errors
    );
    assert!(
        r.errors.iter().any(|e| e.contains("next object id")),
        "{:?}",
        r.errors
    );
}

#[test]
fn mount_refuses_another_cluster_and_a_newer_format() {
    let mut fs = FileStore::new(16 << 20);
    fs.umount();
    let mut opts = mount_opts(&fs.db, common::test_settings());
    opts.expected_fsid = Some(Uuid::new_v4());
    match ObjectStore::mount(&fs.path, &opts) {
        Err(StoreError::WrongFsid { found, .. }) => assert_eq!(found, fs.fsid),
        other => panic!("expected WrongFsid, got {:?}", other.map(|_| ())),
    }
    opts.expected_fsid = Some(fs.fsid);
    ObjectStore::mount(&fs.path, &opts)
        .expect("right fsid")
        .umount()
        .expect("umount");

    // Rewrite the label as a newer format (valid crc): refused by version.
    let mut block =
        std::fs::read(&fs.path).expect("read")[LABEL_OFFSET as usize..BLOCK_SIZE as usize].to_vec();
    block[8..12].copy_from_slice(&99u32.to_le_bytes());
    let body_len = u32::from_le_bytes([block[12], block[13], block[14], block[15]]) as usize;
    let crc = crc32c::crc32c(&block[..16 + body_len]);
    block[16 + body_len..20 + body_len].copy_from_slice(&crc.to_le_bytes());
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&fs.path)
        .expect("open");
    std::os::unix::fs::FileExt::write_all_at(&f, &block, LABEL_OFFSET).expect("write label");
    drop(f);
    let err = ObjectStore::mount(
        &fs.path,
        &MountOptions {
            db_path: Some(fs.db.clone()),
            ..MountOptions::default()
        },
    )
    .map(|_| ())
    .expect_err("refused");
    assert!(
        matches!(err, StoreError::OtherFormat { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("newer Kalmar"), "{err}");
}
