//! The `--image POOL/NAME` export: a cluster block image through the
//! client library. A write resolves when the primary OSD reports it
//! committed on every member of the acting set, so FUA and FLUSH need
//! nothing more; there is no client cache, so several connections see one
//! consistent image.

use bytes::Bytes;
use kalmar_image::{Image, ImageError};

use crate::backend::{BackendError, BlockBackend};

pub struct ImageBackend {
    image: Image,
}

impl ImageBackend {
    pub fn new(image: Image) -> ImageBackend {
        ImageBackend { image }
    }

    pub fn image(&self) -> &Image {
        &self.image
    }
}

fn image_err(e: ImageError) -> BackendError {
    match e.errno() {
        28 | 27 | 122 => BackendError::NoSpace(e.to_string()),
        22 => BackendError::Invalid(e.to_string()),
        108 => BackendError::Shutdown,
        _ => BackendError::Io(e.to_string()),
    }
}

impl BlockBackend for ImageBackend {
    fn size_bytes(&self) -> u64 {
        self.image.size_bytes()
    }

    fn can_multi_conn(&self) -> bool {
        true
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, BackendError> {
        self.image
            .read(offset, u64::from(len))
            .await
            .map_err(image_err)
    }

    async fn write(&self, offset: u64, data: Bytes, _fua: bool) -> Result<(), BackendError> {
        self.image.write(offset, data).await.map_err(image_err)
    }

    async fn flush(&self) -> Result<(), BackendError> {
        // Every acknowledged write is committed on all replicas already.
        Ok(())
    }

    async fn trim(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.image.discard(offset, len).await.map_err(image_err)
    }

    async fn write_zeroes(&self, offset: u64, len: u64, no_hole: bool) -> Result<(), BackendError> {
        let r = if no_hole {
            self.image.write_zeroes_allocated(offset, len).await
        } else {
            self.image.discard(offset, len).await
        };
        r.map_err(image_err)
    }
}
