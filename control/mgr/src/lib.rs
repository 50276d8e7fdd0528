//! kalmar-mgr: the mgr daemon.
//!
//! - [`daemon`]: standby/active by the MgrMap (beacons to the mon every
//!   `mgr_tick_period`), activation and teardown of the active side, the
//!   mon digest (health, status), the admin socket.
//! - [`server`]: the DaemonServer (MgrOpen -> MgrConfigure, MgrReport into
//!   the DaemonState index, OSD PG stats into the PGMap, commands).
//! - [`active`]: what the active mgr holds, and the ClusterState documents
//!   the Python plugins read (`get("osd_map")`, `get("pg_summary")`, ...).
//! - [`pgmap`]: PG statistics, rates, the recovery progress event, and the
//!   `pg stat`, `pg dump`, `df`, `osd df`, `status` renderings.
//! - [`commands`]: native commands and `tell mgr` routing to plugins;
//!   [`cmdcaps`]: the callers' mgr caps, checked per command under cephx.
//! - [`crashpost`]: this host's crash reports posted to the `crash` module.
//! - [`host`]: `mon_command` for plugins and the module option/store file.
//!
//! Python never runs on the async threads: the plugin host
//! (`kalmar-mgr-py`) is started, changed and stopped on blocking threads,
//! and commands wait for plugins there too.
#![deny(clippy::unwrap_used)]

pub mod active;
pub mod cmdcaps;
pub mod commands;
pub mod crashpost;
pub mod daemon;
pub mod host;
pub mod options;
pub mod perf;
pub mod pgmap;
pub mod server;
pub mod units;

pub use daemon::{run, start_server, MgrConfig, MgrError, MgrShared};
pub use options::MgrOptions;
