//! The Kalmar OSD: stores objects of the PGs that map to it, serves client
//! I/O on the PGs it is primary for with replication to the acting set,
//! keeps every map epoch under `meta`, heartbeats its peers, and exposes
//! perf counters (Ceph's names) on an admin socket.
//!
//! - [`daemon`]: `kalmar-osd run` (ports, boot, the main loop).
//! - [`mkfs`]: `kalmar-osd mkfs` (registration, format, superblock).
//! - [`mapwork`], [`maps`]: maps under meta; PG creation; AdvMap/ActMap.
//! - [`pg`]: one task per PG: the peering state machine's driver, the
//!   client write path, replicated writes, reads, recovery I/O.
//! - [`dispatch`]: client and cluster ports to PG tasks; client throttle.
//! - [`heartbeat`], [`report`], [`admin`], [`perf`], [`tracker`]:
//!   failure detection, stats to the mon, admin socket, counters, ops.
//! - [`names`], [`wire`], [`options`]: layout in the store, encodings of
//!   peering types, settings.
#![deny(clippy::unwrap_used)]

pub mod admin;
pub mod daemon;
pub mod dispatch;
pub mod heartbeat;
pub mod maps;
pub mod mapwork;
pub mod mkfs;
pub mod names;
pub mod options;
pub mod peers;
pub mod perf;
pub mod pg;
pub mod report;
pub mod reserver;
pub mod service;
pub mod tracker;
pub mod wire;

pub use daemon::{run, OsdError, RunConfig};
pub use mkfs::{mkfs, MkfsConfig, MkfsError};
pub use options::OsdOptions;
