//! Block images striped over the objects of a pool, in RBD's layout:
//!
//! - `rbd_directory`: omap `name_<NAME>` -> image id, `id_<ID>` -> name;
//! - `rbd_header.<ID>`: omap `size` (u64 LE), `order` (log2 of the object
//!   size, one byte), `object_prefix`;
//! - `rbd_data.<ID>.<object number, 16 hex digits>`: the data, object `n`
//!   holding bytes `[n << order, (n + 1) << order)`, created on first write.
//!
//! A missing object, or a range past an object's end, reads as zeros;
//! discard removes whole objects and zeroes partial ranges (the store
//! frees the blocks). A write is acknowledged when the primary OSD has
//! committed it on every member of the acting set, so there is nothing to
//! flush. Writes spanning objects are not atomic across them (neither are
//! RBD's).
#![deny(clippy::unwrap_used)]

pub mod header;
pub mod stripe;

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use kalmar_client::transport::Transport;
use kalmar_client::{ClientError, IoCtx, MsgrTransport};
use kalmar_proto::client::OsdOp;
use nix::errno::Errno;

pub use header::{ImageHeader, ImageSpec};
use stripe::{Extent, ObjectName};

pub const DIRECTORY_OBJECT: &str = "rbd_directory";
/// Default object size: 4 MiB (order 22), as RBD.
pub const DEFAULT_ORDER: u8 = 22;
/// Objects removed concurrently by [`remove`].
pub const REMOVE_PARALLELISM: usize = 16;
/// Largest zero buffer sent by one write-zeroes op.
const ZERO_CHUNK_BYTES: usize = 1 << 20;
static ZEROS: [u8; ZERO_CHUNK_BYTES] = [0u8; ZERO_CHUNK_BYTES];

#[derive(Debug, Clone, thiserror::Error)]
pub enum ImageError {
    #[error("image {0} does not exist")]
    NotFound(String),
    #[error("image {0} already exists")]
    Exists(String),
    #[error("invalid image argument: {0}")]
    Invalid(String),
    #[error("image header {0} is corrupt: {1}")]
    CorruptHeader(String, String),
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl ImageError {
    /// The positive errno, as Ceph's tools exit with.
    pub fn errno(&self) -> i32 {
        let e = match self {
            ImageError::NotFound(_) => Errno::ENOENT,
            ImageError::Exists(_) => Errno::EEXIST,
            ImageError::Invalid(_) => Errno::EINVAL,
            ImageError::CorruptHeader(..) => Errno::EIO,
            ImageError::Client(e) => e.errno_value(),
        };
        e as i32
    }
}

/// An open image.
pub struct Image<T: Transport = MsgrTransport> {
    io: IoCtx<T>,
    name: String,
    header: ImageHeader,
    /// `<object prefix>.`, so a data object's name is formatted once per
    /// extent without building the prefix again.
    data_prefix: String,
}

/// `len` bytes of zeros, without allocating up to [`ZERO_CHUNK_BYTES`].
fn zeros(len: u64) -> Bytes {
    match ZEROS.get(..len as usize) {
        Some(z) => Bytes::from_static(z),
        None => BytesMut::zeroed(len as usize).freeze(),
    }
}

fn ignore_not_found(r: Result<(), ClientError>) -> Result<(), ClientError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        r => r,
    }
}

/// Creates image `name` of `size_bytes` in the pool of `io`.
pub async fn create<T: Transport>(
    io: &IoCtx<T>,
    name: &str,
    size_bytes: u64,
    order: u8,
) -> Result<(), ImageError> {
    ImageSpec::check_name(name)?;
    let header = ImageHeader::new(
        uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        size_bytes,
        order,
    )?;
    if lookup(io, name).await?.is_some() {
        return Err(ImageError::Exists(name.into()));
    }
    // Header first: a directory entry never points at a missing header.
    io.omap_set(&header.header_object(), header.encode())
        .await?;
    io.omap_set(
        DIRECTORY_OBJECT,
        vec![
            (
                format!("name_{name}"),
                Bytes::copy_from_slice(header.id.as_bytes()),
            ),
            (
                format!("id_{}", header.id),
                Bytes::copy_from_slice(name.as_bytes()),
            ),
        ],
    )
    .await?;
    Ok(())
}

async fn lookup<T: Transport>(io: &IoCtx<T>, name: &str) -> Result<Option<String>, ImageError> {
    let key = format!("name_{name}");
    match io
        .omap_get_vals_by_keys(DIRECTORY_OBJECT, vec![key.clone()])
        .await
    {
        Ok(m) => Ok(m.get(&key).map(|v| String::from_utf8_lossy(v).into_owned())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Image names and sizes of the pool, in name order.
pub async fn list<T: Transport>(io: &IoCtx<T>) -> Result<Vec<(String, ImageHeader)>, ImageError> {
    let dir = match io.omap_get_all(DIRECTORY_OBJECT).await {
        Ok(d) => d,
        Err(e) if e.is_not_found() => BTreeMap::new(),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for (k, id) in dir {
        if let Some(name) = k.strip_prefix("name_") {
            let id = String::from_utf8_lossy(&id).into_owned();
            out.push((name.to_string(), read_header(io, name, &id).await?));
        }
    }
    Ok(out)
}

async fn read_header<T: Transport>(
    io: &IoCtx<T>,
    name: &str,
    id: &str,
) -> Result<ImageHeader, ImageError> {
    let obj = header::header_object(id);
    let m = match io.omap_get_all(&obj).await {
        Ok(m) => m,
        Err(e) if e.is_not_found() => {
            return Err(ImageError::CorruptHeader(
                obj,
                format!("missing for image {name}"),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    ImageHeader::decode(id, &m).map_err(|e| ImageError::CorruptHeader(obj, e))
}

/// Removes image `name` with all its data objects.
pub async fn remove<T: Transport>(io: &IoCtx<T>, name: &str) -> Result<(), ImageError> {
    let id = lookup(io, name)
        .await?
        .ok_or_else(|| ImageError::NotFound(name.into()))?;
    if let Ok(h) = read_header(io, name, &id).await {
        let names: Vec<String> = (0..h.object_count()).map(|n| h.data_object(n)).collect();
        for chunk in names.chunks(REMOVE_PARALLELISM) {
            for r in join_all(chunk.iter().map(|o| io.remove(o))).await {
                ignore_not_found(r)?;
            }
        }
        ignore_not_found(io.remove(&h.header_object()).await)?;
    }
    io.omap_rm_keys(
        DIRECTORY_OBJECT,
        vec![format!("name_{name}"), format!("id_{id}")],
    )
    .await?;
    Ok(())
}

impl<T: Transport> Image<T> {
    /// Opens image `name` of the pool of `io`.
    pub async fn open(io: IoCtx<T>, name: &str) -> Result<Self, ImageError> {
        let id = lookup(&io, name)
            .await?
            .ok_or_else(|| ImageError::NotFound(name.into()))?;
        let header = read_header(&io, name, &id).await?;
        Ok(Image::with_header(io, name, header))
    }

    /// An image whose header the caller has already read.
    pub fn with_header(io: IoCtx<T>, name: &str, header: ImageHeader) -> Self {
        Image {
            data_prefix: format!("{}.", header.object_prefix()),
            io,
            name: name.to_string(),
            header,
        }
    }

    fn data_object(&self, object_no: u64) -> ObjectName {
        ObjectName::new(&self.data_prefix, object_no)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn header(&self) -> &ImageHeader {
        &self.header
    }

    pub fn size_bytes(&self) -> u64 {
        self.header.size_bytes
    }

    fn extents(&self, offset: u64, len: u64) -> Result<impl Iterator<Item = Extent>, ImageError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.header.size_bytes => {
                Ok(stripe::extents(offset, len, self.header.object_bytes()))
            }
            _ => Err(ImageError::Invalid(format!(
                "offset {offset} length {len} is beyond the image size {}",
                self.header.size_bytes
            ))),
        }
    }

    /// Exactly `len` bytes at `offset`; holes read as zeros.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Bytes, ImageError> {
        let mut extents = self.extents(offset, len)?;
        let Some(first) = extents.next() else {
            return Ok(Bytes::new());
        };
        let Some(second) = extents.next() else {
            // One object (the common case): no join, no copy when the
            // object has all the bytes, no allocation for a hole.
            return match self.read_extent(&first).await? {
                Some(b) if b.len() as u64 == first.len => Ok(b),
                Some(short) => {
                    let mut out = BytesMut::zeroed(len as usize);
                    out[..short.len()].copy_from_slice(&short);
                    Ok(out.freeze())
                }
                None => Ok(zeros(len)),
            };
        };
        let extents: Vec<Extent> = [first, second].into_iter().chain(extents).collect();
        let results = join_all(extents.iter().map(|e| self.read_extent(e))).await;
        let mut out = BytesMut::zeroed(len as usize);
        for (e, r) in extents.iter().zip(results) {
            if let Some(b) = r? {
                let at = e.buf_offset as usize;
                let n = b.len().min(e.len as usize);
                out[at..at + n].copy_from_slice(&b[..n]);
            }
        }
        Ok(out.freeze())
    }

    /// The bytes of one extent (fewer past the object's end), or `None`
    /// when its object does not exist: only a missing object is a hole,
    /// never a missing pool or PG.
    async fn read_extent(&self, e: &Extent) -> Result<Option<Bytes>, ImageError> {
        let obj = self.data_object(e.object_no);
        match self.io.read(obj.as_str(), e.object_offset, e.len).await {
            Ok(b) => Ok(Some(b)),
            Err(ClientError::ObjectNotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Writes `data` at `offset`; resolves once every replica committed.
    pub async fn write(&self, offset: u64, data: Bytes) -> Result<(), ImageError> {
        let mut extents = self.extents(offset, data.len() as u64)?;
        let Some(first) = extents.next() else {
            return Ok(());
        };
        let Some(second) = extents.next() else {
            return self.write_extent(&first, data).await;
        };
        let writes = [first, second].into_iter().chain(extents).map(|e| {
            let at = e.buf_offset as usize;
            let piece = data.slice(at..at + e.len as usize);
            async move { self.write_extent(&e, piece).await }
        });
        for r in join_all(writes).await {
            r?;
        }
        Ok(())
    }

    async fn write_extent(&self, e: &Extent, piece: Bytes) -> Result<(), ImageError> {
        let obj = self.data_object(e.object_no);
        self.io.write(obj.as_str(), e.object_offset, piece).await?;
        Ok(())
    }

    /// Frees the range: whole objects are removed, partial ranges zeroed.
    pub async fn discard(&self, offset: u64, len: u64) -> Result<(), ImageError> {
        let ob = self.header.object_bytes();
        let ops = self.extents(offset, len)?.map(|e| {
            let obj = self.data_object(e.object_no);
            async move {
                if e.is_whole_object(ob) {
                    ignore_not_found(self.io.remove(obj.as_str()).await)
                } else {
                    let zero = OsdOp::Zero {
                        offset: e.object_offset,
                        len: e.len,
                    };
                    ignore_not_found(self.io.operate(obj.as_str(), vec![zero]).await.map(|_| ()))
                }
            }
        });
        for r in join_all(ops).await {
            r?;
        }
        Ok(())
    }

    /// Makes the range read as zeros and keeps it allocated (zeros are
    /// written), for NBD's write-zeroes with NO_HOLE.
    pub async fn write_zeroes_allocated(&self, offset: u64, len: u64) -> Result<(), ImageError> {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(ZERO_CHUNK_BYTES as u64);
            self.write(offset + done, Bytes::from_static(&ZEROS[..n as usize]))
                .await?;
            done += n;
        }
        Ok(())
    }
}
