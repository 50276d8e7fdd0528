//! The OSD's admin socket: `perf dump`, `perf schema`, `perf reset`,
//! `config show`, `dump_ops_in_flight` (and `ops`), `status`, `version`,
//! `help`, in Ceph's JSON shapes.

use std::path::Path;
use std::sync::Arc;

use kalmar_common::admin_socket::{AdminCommands, AdminSocket};
use kalmar_common::perf::PerfCollection;
use parking_lot::Mutex;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::tracker::OpTracker;

/// What `status` shows; the map task keeps it current.
#[derive(Debug, Clone)]
pub struct StatusView {
    pub cluster_fsid: Uuid,
    pub osd_fsid: Uuid,
    pub whoami: i32,
    pub state: &'static str,
    pub oldest_map: u32,
    pub newest_map: u32,
    pub num_pgs: usize,
}

impl StatusView {
    pub fn to_json(&self) -> Value {
        json!({
            "cluster_fsid": self.cluster_fsid.to_string(),
            "osd_fsid": self.osd_fsid.to_string(),
            "whoami": self.whoami,
            "state": self.state,
            "oldest_map": self.oldest_map,
            "newest_map": self.newest_map,
            "num_pgs": self.num_pgs,
        })
    }
}

/// Starts the admin socket at `path`. `config` is the whole `config show`
/// object (options plus identity keys).
pub fn start(
    path: &Path,
    perf: Arc<PerfCollection>,
    status: Arc<Mutex<StatusView>>,
    tracker: OpTracker,
    config: Value,
) -> std::io::Result<AdminSocket> {
    let cmds = AdminCommands::new();
    cmds.register_perf(perf);
    cmds.register(
        "status",
        "high-level status of the OSD (fsids, state, stored map epochs, PGs)",
        move |_| Ok(status.lock().to_json()),
    );
    cmds.register("config show", "dump the current config", move |_| {
        Ok(config.clone())
    });
    let t = tracker.clone();
    cmds.register(
        "dump_ops_in_flight",
        "show the ops currently in flight",
        move |_| Ok(t.dump()),
    );
    cmds.register("ops", "show the ops currently in flight", move |_| {
        Ok(tracker.dump())
    });
    AdminSocket::start(path, cmds)
}
