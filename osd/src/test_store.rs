//! A store on a 64 MiB file for unit tests (a 4 MiB journal: one zone,
//! records up to 1 MiB).

use std::path::PathBuf;

use kalmar_objectstore::{MkfsOptions, ObjectStore};

/// Bytes of the device file.
pub const DEVICE_BYTES: u64 = 64 << 20;

/// A formatted device file; the directory holds it as long as it lives.
pub fn formatted_device() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("dev");
    std::fs::File::create(&dev)
        .and_then(|f| f.set_len(DEVICE_BYTES))
        .expect("device file");
    ObjectStore::mkfs(
        &dev,
        &MkfsOptions::new(uuid::Uuid::new_v4(), uuid::Uuid::new_v4()),
    )
    .expect("mkfs");
    (dir, dev)
}
