//! Cluster-wide state the Python `get(name)` returns: the daemon computes
//! these documents from the OSDMap, PG stats, MgrMap and mon digests and
//! publishes them here; plugins read snapshots (an `Arc` clone), so a
//! plugin never waits on the daemon and the daemon never waits on Python.
//!
//! Shapes are Ceph's (`ActivePyModules::get_python`); see
//! `shared/reference/ceph-interfaces.md` §1. `health` and `mon_status` are
//! `{"json": "<text>"}` as in Ceph.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::{json, Value};

/// The names `get()` answers (besides `osd_metadata`, which comes from the
/// [`DaemonStateIndex`](crate::DaemonStateIndex)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClusterDataName {
    OsdMap,
    OsdMapTree,
    OsdMapCrush,
    PgSummary,
    PgStatus,
    PgDump,
    PgStats,
    OsdStats,
    PoolStats,
    OsdPoolStats,
    Df,
    Health,
    MonStatus,
    MonMap,
    MgrMap,
    ServiceMap,
    IoRate,
    /// Kalmar's own: `{"epoch", "pgs": {pgid: {up, acting, up_primary,
    /// acting_primary}}}`, computed with CRUSH for each OSDMap; the
    /// Python `OSDMap` view answers `map_pool_pgs_up` and
    /// `pg_to_up_acting_osds` from it.
    PgMappings,
}

impl ClusterDataName {
    pub const ALL: [ClusterDataName; 18] = [
        ClusterDataName::OsdMap,
        ClusterDataName::OsdMapTree,
        ClusterDataName::OsdMapCrush,
        ClusterDataName::PgSummary,
        ClusterDataName::PgStatus,
        ClusterDataName::PgDump,
        ClusterDataName::PgStats,
        ClusterDataName::OsdStats,
        ClusterDataName::PoolStats,
        ClusterDataName::OsdPoolStats,
        ClusterDataName::Df,
        ClusterDataName::Health,
        ClusterDataName::MonStatus,
        ClusterDataName::MonMap,
        ClusterDataName::MgrMap,
        ClusterDataName::ServiceMap,
        ClusterDataName::IoRate,
        ClusterDataName::PgMappings,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClusterDataName::OsdMap => "osd_map",
            ClusterDataName::OsdMapTree => "osd_map_tree",
            ClusterDataName::OsdMapCrush => "osd_map_crush",
            ClusterDataName::PgSummary => "pg_summary",
            ClusterDataName::PgStatus => "pg_status",
            ClusterDataName::PgDump => "pg_dump",
            ClusterDataName::PgStats => "pg_stats",
            ClusterDataName::OsdStats => "osd_stats",
            ClusterDataName::PoolStats => "pool_stats",
            ClusterDataName::OsdPoolStats => "osd_pool_stats",
            ClusterDataName::Df => "df",
            ClusterDataName::Health => "health",
            ClusterDataName::MonStatus => "mon_status",
            ClusterDataName::MonMap => "mon_map",
            ClusterDataName::MgrMap => "mgr_map",
            ClusterDataName::ServiceMap => "service_map",
            ClusterDataName::IoRate => "io_rate",
            ClusterDataName::PgMappings => "pg_mappings",
        }
    }

    pub fn parse(name: &str) -> Option<ClusterDataName> {
        ClusterDataName::ALL
            .into_iter()
            .find(|n| n.as_str() == name)
    }
}

/// Where `get()` reads from. The daemon may implement it over its own
/// structures, or fill a [`ClusterStateStore`].
pub trait ClusterStateProvider: Send + Sync {
    /// The current document, or `None` when the mgr has none yet (Python
    /// then gets `None`, as Ceph's `get` does before the first map). Must
    /// not block: it is called with the GIL held.
    fn get(&self, name: ClusterDataName) -> Option<Arc<Value>>;
}

/// A provider the daemon fills as maps and stats arrive.
#[derive(Default)]
pub struct ClusterStateStore {
    docs: RwLock<HashMap<ClusterDataName, Arc<Value>>>,
}

impl ClusterStateStore {
    pub fn new() -> Arc<Self> {
        Arc::new(ClusterStateStore::default())
    }

    /// Publishes a document. `health` and `mon_status` take the decoded
    /// document; the `{"json": text}` wrapping is done here.
    pub fn set(&self, name: ClusterDataName, doc: Value) {
        let doc = match name {
            ClusterDataName::Health | ClusterDataName::MonStatus => {
                json!({ "json": doc.to_string() })
            }
            _ => doc,
        };
        self.docs.write().insert(name, Arc::new(doc));
    }

    pub fn clear(&self, name: ClusterDataName) {
        self.docs.write().remove(&name);
    }
}

impl ClusterStateProvider for ClusterStateStore {
    fn get(&self, name: ClusterDataName) -> Option<Arc<Value>> {
        self.docs.read().get(&name).cloned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in ClusterDataName::ALL {
            assert_eq!(ClusterDataName::parse(n.as_str()), Some(n));
        }
        assert_eq!(ClusterDataName::parse("fs_map"), None);
    }

    #[test]
    fn health_is_wrapped_as_json_text() {
        let s = ClusterStateStore::new();
        s.set(
            ClusterDataName::Health,
            json!({"status": "HEALTH_OK", "checks": {}}),
        );
        let v = s.get(ClusterDataName::Health).unwrap();
        let inner: Value = serde_json::from_str(v["json"].as_str().unwrap()).unwrap();
        assert_eq!(inner["status"], "HEALTH_OK");
    }
}
