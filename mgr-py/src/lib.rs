//! kalmar-mgr-py: the mgr's embedded CPython plugin host, with Ceph's
//! `MgrModule` API (`from mgr_module import MgrModule`).
//!
//! # How the mgr daemon plugs in
//!
//! The daemon (`control/mgr`, binary `kalmar-mgr`) owns the network side;
//! this crate owns everything Python, behind four plain interfaces:
//!
//! - [`DaemonStateIndex`] — per-daemon metadata and perf counters (last
//!   [`SAMPLES_PER_COUNTER`] samples each). The DaemonServer calls
//!   [`DaemonStateIndex::open_session`] on MgrOpen and
//!   [`DaemonStateIndex::ingest_report`] on each MgrReport (declare types
//!   once per session, then packed values in declaration order). Ingest is
//!   a map lookup and a per-daemon lock: no Python, bounded by
//!   [`DaemonStateLimits`].
//! - [`ClusterStateProvider`] — the documents `get(name)` returns
//!   (osd_map, pg_summary, df, health, ...), in Ceph's shapes. The daemon
//!   fills a [`ClusterStateStore`] as maps and stats change, then calls
//!   [`PyModules::notify_all`] (`"osd_map"`, `"pg_summary"`, `"health"`,
//!   `"mon_map"`, `"command"`, ...).
//! - [`MgrHost`] — `mon_command` (asynchronous: complete the
//!   [`MonCommandCompletion`] from any thread; the Python caller waits with
//!   the GIL released), `have_mon_connection`, `mgr_id`, the cluster log.
//! - [`MgrStore`] — module options (`mgr/<module>/<opt>`, the mon config
//!   DB) and module stores (`mgr/<module>/<key>`, config-key). Reads are
//!   local; writes may wait for the mon. [`MemoryStore`] is the in-memory
//!   implementation.
//!
//! Then [`PyModules`]: `new` (starts Python, checks it is the interpreter
//! the binary was built for), `load` (imports every `NAME/module.py` in
//! [`PyModulesConfig::module_dirs`]; see [`module_search_path`]),
//! `set_enabled` (the MgrMap's module set), `start`, `enable`/`disable`,
//! `module_ls` (Ceph's JSON), `dispatch_command` (`tell mgr <words>`, after
//! the daemon's native commands), `command_descriptions` (for the CLI and
//! the beacon), `health_checks` (merged, for the mon), `shutdown`.
//!
//! Python never runs on the caller's thread: `serve()` has a thread per
//! module, notifications a thread and a bounded queue per module, commands
//! a thread each with a timeout. A slow, stuck or raising plugin delays only
//! itself; failures show in `module ls` and health.
//!
//! [`fake`] has Ceph-shaped test data (a fake cluster and OSD counters).
#![deny(clippy::unwrap_used)]

pub mod cluster_state;
pub mod commands;
pub mod config;
mod context;
pub mod daemon_state;
pub mod fake;
pub mod health;
pub mod host;
pub mod interp;
mod modules;
mod native;
mod pyconv;

pub use cluster_state::{ClusterDataName, ClusterStateProvider, ClusterStateStore};
pub use commands::{match_command, CommandDesc, MatchError};
pub use config::{
    module_search_path, shipped_modules_dir, PyModulesConfig, MODULE_PATH_ENV, PYTHON_PATH_ENV,
};
pub use daemon_state::{
    pack_values, DaemonKey, DaemonStateIndex, DaemonStateLimits, IngestError, PerfCounterType,
    ReportData, Sample, SAMPLES_PER_COUNTER,
};
pub use health::{HealthCheck, Severity};
pub use host::{
    ClogPriority, MemoryStore, MgrHost, MgrStore, MonCommandCompletion, MonCommandReply, StoreError,
};
pub use interp::{ensure_python, PythonInfo};
pub use modules::{
    CommandResult, CommandTicket, ModuleError, ModuleInfo, ModuleState, PyModules, StopReport,
};
