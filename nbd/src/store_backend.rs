//! The `--store` export: a block device striped over objects of one
//! collection of a local [`ObjectStore`], with no cluster in between (the
//! counterpart of Ceph's fio objectstore engine).
//!
//! Layout: collection `nbd` (by default) holds `nbd_header` (xattrs `size`
//! and `object_size`, little-endian u64) and data objects
//! `nbd_data.<object number, 16 hex digits>`, created on first write. A
//! missing object or a range past an object's end reads as zeros. Every
//! request is one transaction, so a write spanning two objects is atomic,
//! and it is acknowledged when the store says it is durable: FUA and
//! FLUSH need nothing more.
//!
//! The store is mounted with `Drive::External`: the export's commit
//! engine is driven by an [`CommitDriver`] task on the server's own
//! runtime, so a request's transaction, its device I/O and its reply all
//! happen on the thread that read the request (as on an OSD shard).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kalmar_objectstore::{
    CollectionId, CommitDriver, ObjectId, ObjectStore, StoreError, Transaction,
};

use crate::backend::{BackendError, BlockBackend};
use kalmar_image::stripe::{self, Extent};

/// Largest zero-filled range served from a static buffer without copying.
const ZERO_BUF_BYTES: usize = 1 << 20;
static ZEROS: [u8; ZERO_BUF_BYTES] = [0u8; ZERO_BUF_BYTES];

const HEADER_OBJECT: &str = "nbd_header";
const DATA_PREFIX: &str = "nbd_data";
const ATTR_SIZE: &str = "size";
const ATTR_OBJECT_SIZE: &str = "object_size";

/// Settings of a store export.
#[derive(Debug, Clone)]
pub struct StoreExportOptions {
    /// Collection holding the export.
    pub collection: String,
    /// Bytes per data object (a power of two, 4 KiB to 64 MiB).
    pub object_bytes: u64,
    /// Largest number of data objects an export may span.
    pub max_objects: u64,
}

impl Default for StoreExportOptions {
    fn default() -> Self {
        StoreExportOptions {
            collection: "nbd".into(),
            object_bytes: 4 << 20,
            max_objects: 16 << 20,
        }
    }
}

/// A block export on a mounted store. See the module documentation.
pub struct StoreBackend {
    store: Arc<ObjectStore>,
    /// The driver of the engine the export's collection is placed on.
    engine: Arc<CommitDriver>,
    cid: CollectionId,
    object_bytes: u64,
    size_bytes: u64,
    names: Vec<ObjectId>,
}

fn store_err(e: StoreError) -> BackendError {
    match e {
        StoreError::NoSpace { .. } => BackendError::NoSpace(e.to_string()),
        StoreError::InvalidArgument(_) => BackendError::Invalid(e.to_string()),
        StoreError::Unmounted => BackendError::Shutdown,
        e => BackendError::Io(e.to_string()),
    }
}

fn zeros(len: usize) -> Bytes {
    if len <= ZERO_BUF_BYTES {
        Bytes::from_static(&ZEROS[..len])
    } else {
        Bytes::from(vec![0u8; len])
    }
}

impl StoreBackend {
    /// Opens the export of `size_bytes` on `store`, creating the
    /// collection and header on first use. Refuses a store whose export
    /// was created with another size or object size. `engines` are the
    /// drivers of all the store's engines, by index (their tasks must be
    /// running).
    pub async fn open(
        store: Arc<ObjectStore>,
        engines: &[Arc<CommitDriver>],
        size_bytes: u64,
        opts: &StoreExportOptions,
    ) -> Result<StoreBackend, BackendError> {
        let ob = opts.object_bytes;
        if !ob.is_power_of_two() || !(4096..=64 << 20).contains(&ob) {
            return Err(BackendError::Invalid(format!(
                "object size {ob} must be a power of two from 4 KiB to 64 MiB"
            )));
        }
        if size_bytes == 0 {
            return Err(BackendError::Invalid(
                "the export size must be more than 0".into(),
            ));
        }
        let count = stripe::object_count(size_bytes, ob);
        if count > opts.max_objects {
            return Err(BackendError::Invalid(format!(
                "an export of {size_bytes} bytes needs {count} objects of {ob} bytes, more than {}; use larger objects",
                opts.max_objects
            )));
        }
        let cid = CollectionId::new(opts.collection.clone()).map_err(store_err)?;
        let engine = engines
            .get(store.engine_of(&cid))
            .cloned()
            .ok_or_else(|| BackendError::Invalid("the store's engines were not given".into()))?;
        let header = ObjectId::new(HEADER_OBJECT).map_err(store_err)?;
        if store.collection_exists(&cid).map_err(store_err)? {
            let stored = |name: &str| -> Result<Option<u64>, BackendError> {
                let v = store.getattr(&cid, &header, name).map_err(|e| match e {
                    StoreError::ObjectNotFound { .. } => BackendError::Invalid(format!(
                        "collection {cid} exists but holds no export header; pick another --collection or --mkfs"
                    )),
                    e => store_err(e),
                })?;
                Ok(v.and_then(|b| <[u8; 8]>::try_from(&b[..]).ok())
                    .map(u64::from_le_bytes))
            };
            let (s, o) = (stored(ATTR_SIZE)?, stored(ATTR_OBJECT_SIZE)?);
            if s != Some(size_bytes) || o != Some(ob) {
                return Err(BackendError::Invalid(format!(
                    "collection {cid} holds an export of size {} with objects of {} bytes; \
                     asked for size {size_bytes} with objects of {ob}: use the same size or --mkfs",
                    s.map_or("unknown".into(), |v| v.to_string()),
                    o.map_or("unknown".into(), |v| v.to_string()),
                )));
            }
        } else {
            let mut t = Transaction::new();
            t.create_collection(&cid);
            t.setattrs(
                &cid,
                &header,
                vec![
                    (
                        ATTR_SIZE.into(),
                        Bytes::copy_from_slice(&size_bytes.to_le_bytes()),
                    ),
                    (
                        ATTR_OBJECT_SIZE.into(),
                        Bytes::copy_from_slice(&ob.to_le_bytes()),
                    ),
                ],
            );
            engine.commit(t).await.map_err(store_err)?;
        }
        let names = (0..count)
            .map(|n| ObjectId::new(stripe::object_name(DATA_PREFIX, n).into_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_err)?;
        Ok(StoreBackend {
            store,
            engine,
            cid,
            object_bytes: ob,
            size_bytes,
            names,
        })
    }

    pub fn store(&self) -> &Arc<ObjectStore> {
        &self.store
    }

    fn oid(&self, e: &Extent) -> Result<&ObjectId, BackendError> {
        self.names.get(e.object_no as usize).ok_or_else(|| {
            BackendError::Invalid(format!("object {} is beyond the export", e.object_no))
        })
    }

    fn extents(&self, offset: u64, len: u64) -> impl Iterator<Item = Extent> {
        stripe::extents(offset, len, self.object_bytes)
    }

    /// Queues the transaction `build` makes and waits until it is durable
    /// (a full store queue makes this wait for room, never fail).
    async fn commit(
        &self,
        build: impl Fn(&mut Transaction) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let mut t = Transaction::new();
        build(&mut t)?;
        self.engine.commit(t).await.map_err(store_err)
    }

    /// Frees the range (whole objects are removed, partial ones zeroed).
    fn discard_into(&self, t: &mut Transaction, offset: u64, len: u64) -> Result<(), BackendError> {
        for e in self.extents(offset, len) {
            let oid = self.oid(&e)?;
            if e.is_whole_object(self.object_bytes) {
                // touch first: remove refuses a missing object.
                t.touch(&self.cid, oid).remove(&self.cid, oid);
            } else {
                t.zero(&self.cid, oid, e.object_offset, e.len);
            }
        }
        Ok(())
    }
}

impl BlockBackend for StoreBackend {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn can_multi_conn(&self) -> bool {
        // One store behind every connection, no cache above it.
        true
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, BackendError> {
        let len = len as usize;
        let mut pieces = Vec::with_capacity(2);
        for e in self.extents(offset, len as u64) {
            let fut = self
                .engine
                .read(&self.cid, self.oid(&e)?, e.object_offset, e.len);
            pieces.push((e, fut));
        }
        if pieces.len() == 1 {
            if let Some((e, fut)) = pieces.pop() {
                return match fut.await {
                    Ok(b) if b.len() as u64 == e.len => Ok(b),
                    Ok(b) => {
                        let mut out = BytesMut::zeroed(len);
                        out[..b.len()].copy_from_slice(&b);
                        Ok(out.freeze())
                    }
                    Err(StoreError::ObjectNotFound { .. }) => Ok(zeros(len)),
                    Err(e) => Err(store_err(e)),
                };
            }
        }
        let mut out = BytesMut::zeroed(len);
        for (e, fut) in pieces {
            match fut.await {
                Ok(b) => {
                    let at = e.buf_offset as usize;
                    out[at..at + b.len()].copy_from_slice(&b);
                }
                Err(StoreError::ObjectNotFound { .. }) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        Ok(out.freeze())
    }

    async fn write(&self, offset: u64, data: Bytes, _fua: bool) -> Result<(), BackendError> {
        self.commit(|t| {
            for e in self.extents(offset, data.len() as u64) {
                let at = e.buf_offset as usize;
                t.write(
                    &self.cid,
                    self.oid(&e)?,
                    e.object_offset,
                    data.slice(at..at + e.len as usize),
                );
            }
            Ok(())
        })
        .await
    }

    async fn flush(&self) -> Result<(), BackendError> {
        // Every acknowledged write is already durable.
        Ok(())
    }

    async fn trim(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.commit(|t| self.discard_into(t, offset, len)).await
    }

    async fn write_zeroes(&self, offset: u64, len: u64, no_hole: bool) -> Result<(), BackendError> {
        if !no_hole {
            return self.commit(|t| self.discard_into(t, offset, len)).await;
        }
        self.commit(|t| {
            for e in self.extents(offset, len) {
                let oid = self.oid(&e)?;
                let mut done = 0;
                while done < e.len {
                    let n = (e.len - done).min(ZERO_BUF_BYTES as u64);
                    t.write(&self.cid, oid, e.object_offset + done, zeros(n as usize));
                    done += n;
                }
            }
            Ok(())
        })
        .await
    }
}
