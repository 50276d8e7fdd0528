//! The Kalmar OSD: stores objects of the PGs that map to it, serves client
//! I/O on the PGs it is primary for with replication to the acting set,
//! keeps every map epoch under `meta`, heartbeats its peers, and exposes
//! perf counters (Ceph's names) on an admin socket.
//!
//! - [`daemon`]: `kalmar-osd run` (ports, boot, the main loop);
//!   [`mark_down`]: a clean stop asks the mon to mark the OSD down first.
//! - [`mkfs`]: `kalmar-osd mkfs` (registration, format, superblock).
//! - [`mapwork`], [`maps`]: maps under meta; PG creation; AdvMap/ActMap.
//! - [`pg`]: one task per PG: the peering state machine's driver, the
//!   client write path, replicated writes, reads, recovery I/O, scrub and
//!   repair, and the PG commands (`pg query`, `pg scrub`, ...).
//! - [`dispatch`]: client and cluster ports to PG tasks; client throttle;
//!   [`caps`]: the clients' osd caps, checked per op under cephx.
//! - [`heartbeat`], [`report`], [`admin`], [`perf`], [`tracker`]:
//!   failure detection, stats to the mon, admin socket, counters, ops.
//! - [`names`], [`wire`], [`options`]: layout in the store, encodings of
//!   peering types, settings.
//!
//! # How the work is split
//!
//! Networking runs on tokio (`osd_worker_threads`, half the cores by
//! default); storage runs on the ObjectStore's own threads and is reached
//! only through its non-blocking calls (queued transactions, `*_async`
//! reads). Each PG is one task that owns its state machine, so a PG's
//! writes are ordered without locks; the map task alone creates PGs and
//! consumes maps; no lock is held across an await.
//!
//! # Bounds
//!
//! Client ops and their bytes in flight per OSD (`osd_client_message_cap`,
//! `osd_client_message_size_cap`), ops queued in a PG
//! (`osd_pg_max_queued_ops`) and how long they may wait
//! (`osd_op_queue_timeout`), object infos cached per PG, map epochs kept
//! (`osd_map_max_epochs_stored`), the PG log (`osd_max_pg_log_entries`),
//! recovery, backfill and scrub slots, scrub chunks and their maps'
//! wait (`osd_scrub_chunk_max`, `osd_scrub_map_timeout`), the inconsistent
//! objects a scrub records (`osd_scrub_max_recorded_inconsistent`), and the store's
//! fill level (`osd_failsafe_full_ratio`) are all named options
//! ([`OsdOptions`]).
//!
//! # Durability
//!
//! A client write is answered only after its transaction (data, object
//! info, log entry and PG info together) is durable on the primary and on
//! every other acting member. Peering metadata the state machine asks to
//! persist is durable before any message that depends on it leaves.
//!
//! # Integrity
//!
//! Every block read is checksummed by the store; whole-object reads are
//! also checked against the data digest the object info records, and a
//! primary whose copy fails either recovers the object from another copy
//! before answering. Scrubs compare every copy (deep scrubs by reading all
//! data) and repair rewrites bad copies from the authoritative one; what a
//! scrub found is stored with its error counts, so it outlives a restart.
#![deny(clippy::unwrap_used)]

pub mod admin;
pub mod caps;
pub mod create;
pub mod daemon;
pub mod devices;
pub mod dispatch;
pub mod heartbeat;
pub mod maps;
pub mod mapwork;
pub mod mark_down;
pub mod mkfs;
pub mod names;
pub mod options;
pub mod peers;
pub mod perf;
pub mod pg;
pub mod report;
pub mod reserver;
pub mod service;
pub mod shard;
#[cfg(test)]
mod test_store;
pub mod tracker;
pub mod wire;

pub use daemon::{run, DeviceHandle, OsdError, RunConfig, Stop};
pub use mkfs::{mkfs, mkfs_with_id, write_osd_meta, MkfsConfig, MkfsError};
pub use options::OsdOptions;
