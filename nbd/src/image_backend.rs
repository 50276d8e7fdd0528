//! The `--image POOL/NAME` export: a cluster block image through the
//! client library. A write resolves when the primary OSD reports it
//! committed on every member of the acting set, so FUA and FLUSH need
//! nothing more; there is no client cache, so several connections see one
//! consistent image.

use bytes::Bytes;
use kalmar_client::transport::Transport;
use kalmar_client::{ClientError, MsgrTransport};
use kalmar_image::{Image, ImageError};
use nix::errno::Errno;

use crate::backend::{BackendError, BlockBackend};

pub struct ImageBackend<T: Transport = MsgrTransport> {
    image: Image<T>,
}

impl<T: Transport> ImageBackend<T> {
    pub fn new(image: Image<T>) -> Self {
        ImageBackend { image }
    }

    pub fn image(&self) -> &Image<T> {
        &self.image
    }
}

/// The NBD error for an image error, by what happened (not by errno
/// number): a full cluster or pool is ENOSPC, a request the cluster
/// refuses as malformed or too large is EINVAL, a client shutting down is
/// ESHUTDOWN (NBD's "the server is going away: send only NBD_CMD_DISC"),
/// and anything else (timeouts, a deleted pool, OSD errors) is EIO.
fn image_err(e: ImageError) -> BackendError {
    let invalid = |e: ImageError| BackendError::Invalid(e.to_string());
    match &e {
        ImageError::Invalid(_) => invalid(e),
        ImageError::Client(c) => match c {
            ClientError::Shutdown => BackendError::Shutdown,
            ClientError::Invalid(_) | ClientError::TooLarge { .. } => invalid(e),
            ClientError::Osd { errno, .. } => match *errno {
                Errno::ENOSPC | Errno::EDQUOT | Errno::EFBIG => {
                    BackendError::NoSpace(e.to_string())
                }
                Errno::EINVAL => invalid(e),
                _ => BackendError::Io(e.to_string()),
            },
            _ => BackendError::Io(e.to_string()),
        },
        ImageError::NotFound(_) | ImageError::Exists(_) | ImageError::CorruptHeader(..) => {
            BackendError::Io(e.to_string())
        }
    }
}

impl<T: Transport> BlockBackend for ImageBackend<T> {
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

#[cfg(test)]
#[path = "image_backend_tests.rs"]
mod tests;
