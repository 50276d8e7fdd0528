//! `kalmar-objectstore-tool` end to end: every subcommand, JSON output,
//! errors and exit codes, and the device lock.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{cid, mount_opts, oid, pattern};
use kalmar_objectstore::meta::{self, MapEpoch, OsdSuperblock};
use kalmar_objectstore::{Bytes, ObjectStore};
use uuid::Uuid;

fn tool(dev: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kalmar-objectstore-tool"))
        .arg("--device")
        .arg(dev)
        .args(args)
        .output()
        .expect("run the tool")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_subcommand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("osd.img");
    let fsid = Uuid::new_v4();
    let out = ok(&tool(
        &dev,
        &[
            "mkfs",
            "--size",
            "64M",
            "--fsid",
            &fsid.to_string(),
            "--format",
            "json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["fsid"], fsid.to_string());
    assert!(
        dir.path().join("osd.img.db").join("CURRENT").exists(),
        "metadata beside the file"
    );

    // mkfs again refuses without --force.
    let again = tool(&dev, &["mkfs"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds"),
        "{:?}",
        again
    );

    let input = dir.path().join("in.bin");
    let data = pattern(5, 300_000);
    std::fs::write(&input, &data).expect("input");
    ok(&tool(
        &dev,
        &[
            "put",
            "1.0_head",
            "rbd_data.1",
            input.to_str().expect("utf8"),
        ],
    ));
    ok(&tool(
        &dev,
        &["put", "1.0_head", "small", input.to_str().expect("utf8")],
    ));
    let output = dir.path().join("out.bin");
    ok(&tool(
        &dev,
        &[
            "get",
            "1.0_head",
            "rbd_data.1",
            output.to_str().expect("utf8"),
        ],
    ));
    assert_eq!(std::fs::read(&output).expect("output"), data);

    let colls: Vec<String> =
        serde_json::from_str(&ok(&tool(&dev, &["--format", "json", "list-collections"])))
            .expect("json");
    assert_eq!(colls, vec!["1.0_head"]);
    let plain = ok(&tool(&dev, &["list", "1.0_head"]));
    assert_eq!(plain, "rbd_data.1\t300000\nsmall\t300000\n");
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&tool(&dev, &["list", "1.0_head", "-f", "json"]))).expect("json");
    assert_eq!(listed[0]["name"], "rbd_data.1");
    assert_eq!(listed[0]["size_bytes"], 300000);
    assert!(listed[0].get("data_crc32c").is_none(), "only with --digest");
    let digests: serde_json::Value = serde_json::from_str(&ok(&tool(
        &dev,
        &["list", "1.0_head", "--digest", "-f", "json"],
    )))
    .expect("json");
    let crc = u64::from(crc32c::crc32c(&data));
    assert_eq!(digests[0]["data_crc32c"], crc);
    assert_eq!(digests[1]["data_crc32c"], crc);
    let plain = ok(&tool(&dev, &["list", "1.0_head", "--digest"]));
    assert!(
        plain.starts_with(&format!("rbd_data.1\t300000\t{crc:08x}\n")),
        "{plain}"
    );

    ok(&tool(&dev, &["rm", "1.0_head", "small"]));
    let rm_again = tool(&dev, &["rm", "1.0_head", "small"]);
    assert_eq!(rm_again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&rm_again.stderr).contains("does not exist"));

    let fsck: serde_json::Value =
        serde_json::from_str(&ok(&tool(&dev, &["fsck", "--deep", "--format", "json"])))
            .expect("json");
    assert_eq!(fsck["problems"], 0);
    assert_eq!(fsck["objects"], 1);

    let j = ok(&tool(&dev, &["dump-journal"]));
    assert!(j.contains("superblock copy"), "{j}");
    let jj: serde_json::Value =
        serde_json::from_str(&ok(&tool(&dev, &["dump-journal", "-f", "json-pretty"])))
            .expect("json");
    assert_eq!(jj["label"]["fsid"], fsid.to_string());

    // meta list: write maps with the library, read them with the tool.
    {
        let db = dir.path().join("osd.img.db");
        let s = ObjectStore::mount(&dev, &mount_opts(&db, common::test_settings())).expect("mount");
        let mut t = kalmar_objectstore::Transaction::new();
        meta::create_meta_collection(&mut t);
        s.apply_transaction(t).expect("meta collection");
        let sb = OsdSuperblock {
            cluster_fsid: fsid,
            osd_fsid: Uuid::new_v4(),
            whoami: 3,
            oldest_map: 9,
            newest_map: 11,
        };
        let epochs: Vec<MapEpoch> = (9..=11)
            .map(|e| MapEpoch {
                epoch: e,
                full: Some(Bytes::from(format!("full {e}"))),
                incremental: Some(Bytes::from(format!("inc {e}"))),
            })
            .collect();
        meta::store_maps(&s, &epochs, &sb).wait().expect("maps");
        s.umount().expect("umount");
    }
    let m: serde_json::Value =
        serde_json::from_str(&ok(&tool(&dev, &["meta", "list", "-f", "json"]))).expect("json");
    assert_eq!(m["full_maps"], serde_json::json!([9, 10, 11]));
    assert_eq!(m["superblock"]["whoami"], 3);
    assert_eq!(m["superblock"]["newest_map"], 11);
    let plain = ok(&tool(&dev, &["meta", "list"]));
    assert!(plain.contains("oldest_map 9 newest_map 11"), "{plain}");

    // blocks: where the data lives; damaging one block there is a
    // checksum error for reads and a problem for a deep fsck.
    let blocks: serde_json::Value = serde_json::from_str(&ok(&tool(
        &dev,
        &["blocks", "1.0_head", "rbd_data.1", "-f", "json"],
    )))
    .expect("json");
    let blocks = blocks.as_array().expect("array");
    assert_eq!(blocks.len(), 300_000usize.div_ceil(4096));
    assert_eq!(blocks[3]["logical_block"], 3);
    let plain = ok(&tool(&dev, &["blocks", "1.0_head", "rbd_data.1"]));
    assert!(plain.starts_with("block 0 offset "), "{plain}");
    let at = blocks[3]["device_offset"].as_u64().expect("offset") + 10;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dev)
            .expect("open");
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).expect("read");
        b[0] ^= 0x08;
        f.write_all_at(&b, at).expect("write");
        f.sync_all().expect("sync");
    }
    let bad = tool(
        &dev,
        &[
            "get",
            "1.0_head",
            "rbd_data.1",
            output.to_str().expect("utf8"),
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("checksum mismatch"),
        "{bad:?}"
    );
    let fsck = tool(&dev, &["fsck", "--deep"]);
    assert_eq!(fsck.status.code(), Some(4), "{fsck:?}");
}

#[test]
fn errors_and_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    let out = tool(&missing, &["list-collections"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot open device") && err.contains("nope"),
        "{err}"
    );

    let usage = tool(&missing, &["frobnicate"]);
    assert_eq!(usage.status.code(), Some(2), "bad usage");
    let help = Command::new(env!("CARGO_BIN_EXE_kalmar-objectstore-tool"))
        .arg("--help")
        .output()
        .expect("help");
    assert!(String::from_utf8_lossy(&help.stdout).contains("dump-journal"));

    // A file that is not a store.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0u8; 8 << 20]).expect("junk");
    let out = tool(&junk, &["fsck"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not hold a Kalmar object store"));
}

#[test]
fn the_tool_never_touches_a_store_in_use_and_fsck_reports_damage() {
    let mut fs = common::FileStore::new(32 << 20);
    let c = cid("c");
    let mut t = kalmar_objectstore::Transaction::new();
    t.create_collection(&c);
    t.write(&c, &oid("x"), 0, pattern(1, 10_000));
    fs.apply(t);
    // Mounted here: the tool must refuse (it waits for the lock, then fails).
    let out = tool(
        &fs.path,
        &["--db-path", fs.db.to_str().expect("utf8"), "rm", "c", "x"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another process"),
        "{out:?}"
    );
    fs.umount();
    assert!(ObjectStore::mount(&fs.path, &mount_opts(&fs.db, common::test_settings())).is_ok());
    // Damage a data block: fsck is clean, fsck --deep exits 4.
    let data_offset = {
        let dev = kalmar_objectstore::device::UringDevice::open(&fs.path, Default::default())
            .expect("open");
        kalmar_objectstore::inspect::read_label(&dev)
            .expect("label")
            .data_offset
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&fs.path)
        .expect("open");
    std::os::unix::fs::FileExt::write_all_at(&f, b"XX", data_offset + 10).expect("flip");
    drop(f);
    let db = fs.db.to_str().expect("utf8").to_string();
    ok(&tool(&fs.path, &["--db-path", &db, "fsck"]));
    let deep = tool(&fs.path, &["--db-path", &db, "fsck", "--deep"]);
    assert_eq!(deep.status.code(), Some(4), "{deep:?}");
    assert!(String::from_utf8_lossy(&deep.stdout).contains("checksum error in c/x block 0"));
    let get = tool(&fs.path, &["--db-path", &db, "get", "c", "x", "-"]);
    assert_eq!(get.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&get.stderr).contains("checksum mismatch"));
}
