//! kalmar-nbd: an NBD server (fixed newstyle) exporting a Kalmar block
//! device, so fio's nbd engine, qemu-img, qemu-io and libnbd tools can
//! drive Kalmar.
//!
//! - [`proto`]: the protocol as pure code (handshake decisions, request
//!   checks, reply encoding), tested on its own.
//! - [`server`]: the tokio server: many requests in flight per connection,
//!   replies out of order as they complete, every bound a named setting
//!   ([`ServerSettings`]).
//! - [`BlockBackend`]: what an export is served from; [`StoreBackend`]
//!   (a local ObjectStore, no cluster) and [`MemBackend`] (tests).
//! - [`stripe`]: the object layout shared with block images
//!   ([`kalmar_image`]), and [`ImageBackend`] (a cluster image).
#![deny(clippy::unwrap_used)]

pub mod backend;
pub mod image_backend;
pub mod mem_backend;
pub mod perf;
pub mod proto;
pub mod server;
pub mod settings;
pub mod size;
pub mod store_backend;

pub use backend::{BackendError, BlockBackend};
pub use image_backend::ImageBackend;
/// The object layout, shared with block images.
pub use kalmar_image::stripe;
pub use mem_backend::MemBackend;
pub use server::{ListenAddr, Listener, Server};
pub use settings::ServerSettings;
pub use store_backend::{StoreBackend, StoreExportOptions};
