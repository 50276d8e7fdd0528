//! The meta collection helpers: maps and the OSD superblock stored and
//! trimmed together.

mod common;

use common::FileStore;
use kalmar_objectstore::meta::{self, MapEpoch, OsdSuperblock};
use kalmar_objectstore::{Bytes, Transaction};
use uuid::Uuid;

fn epoch(e: u32) -> MapEpoch {
    MapEpoch {
        epoch: e,
        full: Some(Bytes::from(vec![e as u8; 100 + e as usize * 1000])),
        incremental: (e > 1).then(|| Bytes::from(format!("inc {e}"))),
    }
}

#[test]
fn store_read_trim_and_list_maps() {
    let mut fs = FileStore::new(32 << 20);
    let s = fs.s();
    assert_eq!(
        meta::list(s).expect("list"),
        meta::MetaListing::default(),
        "nothing before the collection"
    );
    assert_eq!(meta::read_superblock(s).expect("sb"), None);
    let mut t = Transaction::new();
    meta::create_meta_collection(&mut t);
    fs.apply(t);
    let mut sb = OsdSuperblock {
        cluster_fsid: Uuid::new_v4(),
        osd_fsid: Uuid::new_v4(),
        whoami: 7,
        oldest_map: 1,
        newest_map: 0,
    };
    for chunk in (1..=20u32).collect::<Vec<_>>().chunks(6) {
        sb.newest_map = *chunk.last().expect("chunk");
        let epochs: Vec<MapEpoch> = chunk.iter().map(|&e| epoch(e)).collect();
        meta::store_maps(fs.s(), &epochs, &sb)
            .wait()
            .expect("store maps");
    }
    fs.remount();
    let s = fs.s();
    let l = meta::list(s).expect("list");
    assert_eq!(
        l.full_maps,
        (1..=20).collect::<Vec<_>>(),
        "numeric order, not name order"
    );
    assert_eq!(l.incremental_maps, (2..=20).collect::<Vec<_>>());
    assert_eq!(
        l.superblock.as_ref().map(|x| (x.oldest_map, x.newest_map)),
        Some((1, 20))
    );
    assert_eq!(meta::read_osdmap(s, 12).expect("read"), epoch(12).full);
    assert_eq!(
        meta::read_inc_osdmap(s, 12).expect("read"),
        epoch(12).incremental
    );
    assert_eq!(meta::read_osdmap(s, 21).expect("read"), None);

    sb.oldest_map = 11;
    meta::trim_maps(s, 1, 10, &sb)
        .expect("trim")
        .wait()
        .expect("commit");
    let l = meta::list(s).expect("list");
    assert_eq!(l.full_maps, (11..=20).collect::<Vec<_>>());
    assert_eq!(l.incremental_maps, (11..=20).collect::<Vec<_>>());
    assert_eq!(l.superblock, Some(sb.clone()));
    // Trimming epochs that are already gone is fine.
    meta::trim_maps(s, 5, 12, &sb)
        .expect("trim")
        .wait()
        .expect("commit");
    assert_eq!(
        meta::list(s).expect("list").full_maps,
        (13..=20).collect::<Vec<_>>()
    );
    assert!(s.fsck(true).expect("fsck").is_clean());
}
