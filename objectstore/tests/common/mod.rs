//! Shared test helpers: an in-memory model of the store's contract, a
//! seeded workload generator, state dumps for comparison, and stores on
//! temporary files.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kalmar_objectstore::device::BlockDevice;
use kalmar_objectstore::types::{MAX_OBJECT_SIZE_BYTES, MAX_XATTRS_TOTAL_BYTES};
use kalmar_objectstore::{
    Bytes, CollectionId, MkfsOptions, MountOptions, ObjectId, ObjectStore, Op, StoreError,
    StoreSettings, Transaction,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

pub fn cid(s: &str) -> CollectionId {
    CollectionId::new(s).expect("valid collection id")
}

pub fn oid(s: &str) -> ObjectId {
    ObjectId::new(s).expect("valid object name")
}

/// Settings that exercise the interesting paths on small devices: small
/// memtables (background database flushes), frequent checkpoints.
pub fn test_settings() -> StoreSettings {
    let mut s = StoreSettings::default();
    s.kv.write_buffer_bytes = 256 << 10;
    s.kv.block_cache_bytes = 4 << 20;
    s.checkpoint_interval_ms = 50;
    s.reader_threads = 2;
    s.uring.max_rings = 6;
    s.uring.ring_entries = 64;
    s
}

pub fn mount_opts(db: &Path, settings: StoreSettings) -> MountOptions {
    MountOptions {
        db_path: Some(db.to_path_buf()),
        settings,
        ..MountOptions::default()
    }
}

/// A store on a sparse temporary file.
pub struct FileStore {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub db: PathBuf,
    pub settings: StoreSettings,
    pub store: Option<ObjectStore>,
    pub fsid: Uuid,
}

/// The store first, then its directory: a store still mounted when the
/// directory went first (fields drop in declaration order) wrote into it
/// while it was being removed, and the directory stayed behind.
impl Drop for FileStore {
    fn drop(&mut self) {
        drop(self.store.take());
    }
}

impl FileStore {
    pub fn new(size_bytes: u64) -> FileStore {
        FileStore::with(size_bytes, None, test_settings())
    }

    pub fn with(size_bytes: u64, journal_bytes: Option<u64>, settings: StoreSettings) -> FileStore {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dev");
        std::fs::File::create(&path)
            .and_then(|f| f.set_len(size_bytes))
            .expect("device file");
        let db = dir.path().join("dev.db");
        let fsid = Uuid::new_v4();
        let mut mk = MkfsOptions::new(fsid, Uuid::new_v4());
        mk.journal_bytes = journal_bytes;
        mk.db_path = Some(db.clone());
        ObjectStore::mkfs(&path, &mk).expect("mkfs");
        let mut fs = FileStore {
            dir,
            path,
            db,
            settings,
            store: None,
            fsid,
        };
        fs.mount();
        fs
    }

    pub fn mount(&mut self) {
        let s = ObjectStore::mount(&self.path, &mount_opts(&self.db, self.settings.clone()))
            .expect("mount");
        self.store = Some(s);
    }

    pub fn s(&self) -> &ObjectStore {
        self.store.as_ref().expect("mounted")
    }

    pub fn umount(&mut self) {
        if let Some(s) = self.store.take() {
            s.umount().expect("umount");
        }
    }

    pub fn remount(&mut self) {
        self.umount();
        self.mount();
    }

    /// Stops without a checkpoint (as a crash would) and mounts again.
    pub fn crash_remount(&mut self) {
        if let Some(s) = self.store.take() {
            s.abandon();
        }
        self.mount();
    }

    pub fn apply(&self, t: Transaction) {
        self.s().apply_transaction(t).expect("transaction commits");
    }
}

/// Deterministic pseudo-random bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| r.random()).collect()
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelObject {
    pub data: Vec<u8>,
    pub attrs: BTreeMap<String, Vec<u8>>,
    pub omap: BTreeMap<Vec<u8>, Vec<u8>>,
    pub header: Option<Vec<u8>>,
}

/// The whole observable state: collection -> object name -> object. A
/// collection's log (when not empty) shows as the object [`LOG_OBJECT`]
/// whose omap maps each key (16 bytes, big-endian) to its value.
pub type State = BTreeMap<String, BTreeMap<Vec<u8>, ModelObject>>;

/// The name under which a collection's log shows in a [`State`] (no
/// generated object has it).
pub const LOG_OBJECT: &[u8] = b"\0log";

/// The store's contract, executed in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub colls: State,
    /// Each collection log's floor: appends at or below it are ignored.
    pub log_floors: BTreeMap<String, u128>,
}

impl Model {
    /// Applies `t` all-or-nothing; `false` if the store must refuse it.
    pub fn apply(&mut self, t: &Transaction) -> bool {
        let mut next = self.colls.clone();
        let mut floors = self.log_floors.clone();
        if t.ops()
            .iter()
            .all(|op| apply_op(&mut next, &mut floors, op))
        {
            self.colls = next;
            self.log_floors = floors;
            true
        } else {
            false
        }
    }
}

/// A collection's log in the model, dropped from the state when empty.
fn model_log(
    s: &mut State,
    c: &CollectionId,
    f: impl FnOnce(&mut BTreeMap<Vec<u8>, Vec<u8>>),
) -> bool {
    let Some(coll) = s.get_mut(c.as_str()) else {
        return false;
    };
    let log = coll.entry(LOG_OBJECT.to_vec()).or_default();
    f(&mut log.omap);
    if log.omap.is_empty() {
        coll.remove(LOG_OBJECT);
    }
    true
}

fn obj<'a>(
    s: &'a mut State,
    c: &CollectionId,
    o: &ObjectId,
    create: bool,
) -> Option<&'a mut ModelObject> {
    let coll = s.get_mut(c.as_str())?;
    if create {
        Some(coll.entry(o.as_bytes().to_vec()).or_default())
    } else {
        coll.get_mut(o.as_bytes())
    }
}

fn apply_op(s: &mut State, floors: &mut BTreeMap<String, u128>, op: &Op) -> bool {
    match op {
        Op::CreateCollection(c) => {
            floors.remove(c.as_str());
            s.insert(c.to_string(), BTreeMap::new()).is_none()
        }
        Op::RemoveCollection(c) => match s.get(c.as_str()) {
            Some(m) if m.keys().all(|k| k == LOG_OBJECT) => {
                floors.remove(c.as_str());
                s.remove(c.as_str()).is_some()
            }
            _ => false,
        },
        Op::LogAppend { cid, key, value } => {
            // A key not above the floor is refused.
            let floor = floors.get(cid.as_str()).copied().unwrap_or(0);
            if *key <= floor {
                return false;
            }
            let ok = model_log(s, cid, |log| {
                log.insert(key.to_be_bytes().to_vec(), value.to_vec());
            });
            if ok {
                floors.insert(cid.to_string(), *key);
            }
            ok
        }
        Op::LogTrim { cid, through } => {
            let ok = model_log(s, cid, |log| {
                log.retain(|k, _| k.as_slice() > through.to_be_bytes().as_slice())
            });
            if ok {
                let f = floors.entry(cid.to_string()).or_default();
                *f = (*f).max(*through);
            }
            ok
        }
        Op::LogClear(c) => {
            let ok = model_log(s, c, |log| log.clear());
            if ok {
                floors.remove(c.as_str());
            }
            ok
        }
        Op::Touch(c, o) => obj(s, c, o, true).is_some(),
        Op::Write {
            cid,
            oid,
            offset,
            data,
        } => {
            let end = offset + data.len() as u64;
            if end > MAX_OBJECT_SIZE_BYTES {
                return false;
            }
            let Some(x) = obj(s, cid, oid, true) else {
                return false;
            };
            if !data.is_empty() {
                if x.data.len() < end as usize {
                    x.data.resize(end as usize, 0);
                }
                x.data[*offset as usize..end as usize].copy_from_slice(data);
            }
            true
        }
        Op::Zero {
            cid,
            oid,
            offset,
            len,
        } => {
            let end = offset + len;
            if end > MAX_OBJECT_SIZE_BYTES {
                return false;
            }
            let Some(x) = obj(s, cid, oid, true) else {
                return false;
            };
            if *len > 0 {
                if x.data.len() < end as usize {
                    x.data.resize(end as usize, 0);
                }
                x.data[*offset as usize..end as usize].fill(0);
            }
            true
        }
        Op::Truncate { cid, oid, size } => {
            let Some(x) = obj(s, cid, oid, true) else {
                return false;
            };
            x.data.resize(*size as usize, 0);
            true
        }
        Op::Remove(c, o) => s
            .get_mut(c.as_str())
            .is_some_and(|m| m.remove(o.as_bytes()).is_some()),
        Op::Clone { cid, src, dst } => {
            let Some(coll) = s.get_mut(cid.as_str()) else {
                return false;
            };
            let Some(x) = coll.get(src.as_bytes()).cloned() else {
                return false;
            };
            coll.insert(dst.as_bytes().to_vec(), x);
            true
        }
        Op::SetAttrs { cid, oid, attrs } => {
            let Some(x) = obj(s, cid, oid, true) else {
                return false;
            };
            for (k, v) in attrs {
                if k.is_empty() || k.len() > 255 {
                    return false;
                }
                x.attrs.insert(k.clone(), v.to_vec());
            }
            x.attrs
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
                <= MAX_XATTRS_TOTAL_BYTES
        }
        Op::RmAttr { cid, oid, name } => match obj(s, cid, oid, false) {
            Some(x) => {
                x.attrs.remove(name);
                true
            }
            None => false,
        },
        Op::OmapSetKeys { cid, oid, entries } => {
            let Some(x) = obj(s, cid, oid, true) else {
                return false;
            };
            for (k, v) in entries {
                x.omap.insert(k.to_vec(), v.to_vec());
            }
            true
        }
        Op::OmapRmKeys { cid, oid, keys } => match obj(s, cid, oid, false) {
            Some(x) => {
                for k in keys {
                    x.omap.remove(&k[..]);
                }
                true
            }
            None => false,
        },
        Op::OmapClear(c, o) => match obj(s, c, o, false) {
            Some(x) => {
                x.omap.clear();
                x.header = None;
                true
            }
            None => false,
        },
        Op::OmapSetHeader { cid, oid, header } => match obj(s, cid, oid, true) {
            Some(x) => {
                x.header = Some(header.to_vec());
                true
            }
            None => false,
        },
        Op::CollectionMoveRename {
            src_cid,
            src_oid,
            dst_cid,
            dst_oid,
        } => {
            if !s.contains_key(dst_cid.as_str()) {
                return false;
            }
            if s[dst_cid.as_str()].contains_key(dst_oid.as_bytes()) {
                return false;
            }
            let Some(x) = s
                .get_mut(src_cid.as_str())
                .and_then(|m| m.remove(src_oid.as_bytes()))
            else {
                return false;
            };
            s.get_mut(dst_cid.as_str())
                .map(|m| m.insert(dst_oid.as_bytes().to_vec(), x))
                .is_some()
        }
    }
}

/// Reads the whole observable state of a store.
pub fn dump(store: &ObjectStore) -> State {
    try_dump(store).expect("the store's state can be read")
}

/// Like [`dump`], returning the first read error.
pub fn try_dump(store: &ObjectStore) -> Result<State, StoreError> {
    let mut out = State::new();
    for c in store.list_collections()? {
        let mut objs = BTreeMap::new();
        let mut start: Option<ObjectId> = None;
        loop {
            let (names, next) = store.collection_list(&c, start.as_ref(), 7)?;
            for o in names {
                let st = store.stat(&c, &o)?;
                let data = store.read(&c, &o, 0, st.size_bytes + 100)?.to_vec();
                assert_eq!(
                    data.len() as u64,
                    st.size_bytes,
                    "read returns the whole object"
                );
                let attrs = store
                    .getattrs(&c, &o)?
                    .into_iter()
                    .map(|(k, v)| (k, v.to_vec()))
                    .collect();
                let omap = store
                    .omap_iter(&c, &o, Bound::Unbounded, Bound::Unbounded, usize::MAX)?
                    .into_iter()
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .collect();
                let header = store.omap_get_header(&c, &o)?.map(|h| h.to_vec());
                objs.insert(
                    o.as_bytes().to_vec(),
                    ModelObject {
                        data,
                        attrs,
                        omap,
                        header,
                    },
                );
            }
            match next {
                Some(n) => start = Some(n),
                None => break,
            }
        }
        let log = store.log_read(&c)?;
        if !log.is_empty() {
            objs.insert(
                LOG_OBJECT.to_vec(),
                ModelObject {
                    omap: log
                        .into_iter()
                        .map(|(k, v)| (k.to_be_bytes().to_vec(), v.to_vec()))
                        .collect(),
                    ..ModelObject::default()
                },
            );
        }
        out.insert(c.to_string(), objs);
    }
    Ok(out)
}

/// A short description of the first difference between two states.
pub fn diff(a: &State, b: &State) -> String {
    if a.keys().collect::<Vec<_>>() != b.keys().collect::<Vec<_>>() {
        return format!(
            "collections {:?} vs {:?}",
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>()
        );
    }
    for (c, objs) in a {
        let other = &b[c];
        let names: Vec<_> = objs
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        let onames: Vec<_> = other
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        if names != onames {
            return format!("{c}: objects {names:?} vs {onames:?}");
        }
        for (o, x) in objs {
            let y = &other[o];
            let name = String::from_utf8_lossy(o);
            if x.data != y.data {
                let at = x.data.iter().zip(&y.data).position(|(p, q)| p != q);
                return format!(
                    "{c}/{name}: data len {} vs {}, first difference at {at:?}",
                    x.data.len(),
                    y.data.len()
                );
            }
            if x != y {
                return format!(
                    "{c}/{name}: attrs/omap differ: {:?} vs {:?}",
                    (&x.attrs, &x.omap.len(), &x.header),
                    (&y.attrs, &y.omap.len(), &y.header)
                );
            }
        }
    }
    "equal".into()
}

/// Draws random transactions over a small name space, so that operations
/// collide (overwrite, clone onto, remove, rename into existing names).
pub struct Gen {
    pub rng: ChaCha8Rng,
    pub max_write: usize,
    pub max_offset: u64,
    counter: u64,
    /// The next collection-log key (mostly increasing).
    log_key: u128,
}

pub const COLLS: &[&str] = &["c0", "c1", "1.1f_head"];
const OBJS: &[&str] = &["a", "b", "obj.with.a.longer.name", "z"];

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen {
            rng: ChaCha8Rng::seed_from_u64(seed),
            max_write: 200_000,
            max_offset: 600_000,
            counter: 0,
            log_key: 1,
        }
    }

    fn c(&mut self) -> CollectionId {
        cid(COLLS[self.rng.random_range(0..COLLS.len())])
    }

    fn o(&mut self) -> ObjectId {
        oid(OBJS[self.rng.random_range(0..OBJS.len())])
    }

    fn len(&mut self) -> usize {
        // Mostly small (deferred path), sometimes big, sometimes zero.
        match self.rng.random_range(0..10) {
            0 => 0,
            1..=6 => self.rng.random_range(1..9000),
            7 => 4096 * self.rng.random_range(1..4),
            _ => self.rng.random_range(60_000..=self.max_write),
        }
    }

    fn offset(&mut self) -> u64 {
        if self.rng.random_bool(0.3) {
            4096 * self.rng.random_range(0..self.max_offset / 4096)
        } else {
            self.rng.random_range(0..self.max_offset)
        }
    }

    pub fn op(&mut self, t: &mut Transaction) {
        self.counter += 1;
        let n = self.counter;
        let (c, o) = (self.c(), self.o());
        match self.rng.random_range(0..100) {
            0..=3 => {
                t.create_collection(&c);
            }
            4 => {
                t.remove_collection(&c);
            }
            5..=7 => {
                t.touch(&c, &o);
            }
            8..=39 => {
                let (off, len) = (self.offset(), self.len());
                t.write(&c, &o, off, pattern(n, len));
            }
            40..=45 => {
                let (off, len) = (self.offset(), self.len() as u64);
                t.zero(&c, &o, off, len);
            }
            46..=51 => {
                let size = if self.rng.random_bool(0.5) {
                    self.offset()
                } else {
                    self.rng.random_range(0..9000)
                };
                t.truncate(&c, &o, size);
            }
            52..=57 => {
                t.remove(&c, &o);
            }
            58..=62 => {
                let d = self.o();
                t.clone(&c, &o, &d);
            }
            63..=69 => {
                let k = format!("attr{}", self.rng.random_range(0..4));
                t.setattr(&c, &o, &k, pattern(n, self.rng.random_range(0..300)));
            }
            70..=72 => {
                let k = format!("attr{}", self.rng.random_range(0..4));
                t.rmattr(&c, &o, &k);
            }
            73..=82 => {
                let entries = (0..self.rng.random_range(1..6))
                    .map(|i| {
                        let k = format!("k{:03}", self.rng.random_range(0..40));
                        (
                            Bytes::from(k),
                            Bytes::from(pattern(n * 10 + i, self.rng.random_range(0..200))),
                        )
                    })
                    .collect();
                t.omap_setkeys(&c, &o, entries);
            }
            83..=86 => {
                let keys = (0..self.rng.random_range(1..4))
                    .map(|_| Bytes::from(format!("k{:03}", self.rng.random_range(0..40))))
                    .collect();
                t.omap_rmkeys(&c, &o, keys);
            }
            87..=88 => {
                t.omap_clear(&c, &o);
            }
            89..=91 => {
                t.omap_setheader(&c, &o, pattern(n, self.rng.random_range(0..100)));
            }
            92..=95 => {
                // Now and then a key at or below one used before: refused.
                let key = if self.rng.random_bool(0.1) {
                    self.log_key.saturating_sub(self.rng.random_range(0..3))
                } else {
                    self.log_key += self.rng.random_range(1..4);
                    self.log_key
                };
                t.log_append(&c, key, pattern(n, self.rng.random_range(0..120)));
            }
            96 => {
                let through = self.log_key.saturating_sub(self.rng.random_range(0..6));
                t.log_trim(&c, through);
            }
            97 if self.rng.random_bool(0.3) => {
                t.log_clear(&c);
            }
            _ => {
                let (c2, o2) = (self.c(), self.o());
                t.collection_move_rename(&c, &o, &c2, &o2);
            }
        }
    }

    /// A transaction of 1..=max_ops operations; collection creation is
    /// favoured early so that later operations have somewhere to go.
    pub fn txn(&mut self, max_ops: usize) -> Transaction {
        let mut t = Transaction::new();
        if self.rng.random_bool(0.15) {
            let c = self.c();
            t.create_collection(&c);
            return t;
        }
        for _ in 0..self.rng.random_range(1..=max_ops) {
            self.op(&mut t);
        }
        t
    }
}

/// Mounts a store on a device (e.g. a fault-injecting one).
pub fn mount_dev(
    dev: Arc<dyn BlockDevice>,
    db: &Path,
    settings: StoreSettings,
) -> kalmar_objectstore::Result<ObjectStore> {
    ObjectStore::mount_device(dev, Path::new("unused"), &mount_opts(db, settings))
}

/// One line per operation, without the data (for traces).
pub fn describe(t: &Transaction) -> String {
    t.ops()
        .iter()
        .map(|op| match op {
            Op::Write {
                cid,
                oid,
                offset,
                data,
            } => format!("write {cid}/{oid} {offset}+{}", data.len()),
            Op::Zero {
                cid,
                oid,
                offset,
                len,
            } => format!("zero {cid}/{oid} {offset}+{len}"),
            Op::Truncate { cid, oid, size } => format!("truncate {cid}/{oid} {size}"),
            Op::Clone { cid, src, dst } => format!("clone {cid}/{src} -> {dst}"),
            Op::Remove(c, o) => format!("remove {c}/{o}"),
            Op::CollectionMoveRename {
                src_cid,
                src_oid,
                dst_cid,
                dst_oid,
            } => {
                format!("move {src_cid}/{src_oid} -> {dst_cid}/{dst_oid}")
            }
            other => format!("{:?}", other).chars().take(60).collect(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
