//! The Kalmar monitor.
//!
//! - [`store`]: RocksDB behind a small key-value interface (synced batches).
//! - [`persist`]: map epochs in the store (mkfs, load, commit, trim).
//! - [`osdmon`], [`pools`]: the OSDMap service and pool commands.
//! - [`osd_safety`]: `osd ok-to-stop` and `osd safe-to-destroy`.
//! - [`quota`]: pool quotas enforced through the `full_quota` pool flag.
//! - [`mgrmon`]: the MgrMap service (beacons, failover).
//! - [`mgrstat`]: health checks the active mgr reports.
//! - [`health`], [`health_stats`], [`status`]: health checks (from the
//!   maps and from the OSDs' reports) and `status` output.
//! - [`raft`], [`monmap`]: the mons' consensus (openraft, log and state
//!   machine in the mon's RocksDB) and who is in quorum.
//! - [`authmon`], [`auth_cmds`]: the auth database (keys, caps, rotating
//!   service secrets) and the `auth` commands.
//! - [`monmap_history`]: monmap epochs, and what a probe of a peer mon
//!   decides (this mon was removed; a mon with no log joins).
//! - [`commands`]: Ceph-style JSON commands.
//! - [`server`]: the daemon loop (messenger events, ticks, commits,
//!   subscriptions, admin socket).
#![deny(clippy::unwrap_used)]

pub mod auth_cmds;
pub mod authmon;
pub mod commands;
pub mod crushmon_cmds;
pub mod errors;
pub mod health;
pub mod health_stats;
pub mod mgrmon;
pub mod mgrstat;
pub mod monmap;
pub mod monmap_history;
pub mod options;
pub mod osd_safety;
pub mod osdmon;
pub mod perf;
pub mod persist;
pub mod pgmap;
pub mod pools;
pub mod quota;
pub mod raft;
pub mod server;
pub mod state;
pub mod status;
pub mod store;

pub use options::MonOptions;
pub use server::{start, MonConfig, MonError, RunningMon};
