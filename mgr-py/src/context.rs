//! State shared by every plugin, and each running module's own context
//! (its name, its health checks, its URI). Pure Rust: the Python bindings
//! in `native.rs` read through these.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use crate::cluster_state::ClusterStateProvider;
use crate::config::PyModulesConfig;
use crate::daemon_state::{DaemonKey, DaemonStateIndex};
use crate::health::HealthCheck;
use crate::host::{MgrHost, MgrStore, StoreError};

/// What every module reads from.
pub(crate) struct HostShared {
    pub daemon_state: Arc<DaemonStateIndex>,
    pub cluster: Arc<dyn ClusterStateProvider>,
    pub host: Arc<dyn MgrHost>,
    pub store: Arc<dyn MgrStore>,
    pub config: PyModulesConfig,
    /// `notify_all` of the host, for notifications a module's own call
    /// completes (`send_command` -> `command`). Set once by `PyModules`.
    pub notifier: std::sync::OnceLock<Notifier>,
}

/// Queues a notification for every interested module; never blocks.
pub(crate) type Notifier = Box<dyn Fn(&str, &str) -> usize + Send + Sync>;

impl HostShared {
    pub fn notify_all(&self, notify_type: &str, notify_id: &str) -> usize {
        self.notifier.get().map_or(0, |n| n(notify_type, notify_id))
    }
}

/// One running module's side of the host.
pub(crate) struct ModuleCtx {
    pub name: String,
    pub shared: Arc<HostShared>,
    pub health: Mutex<BTreeMap<String, HealthCheck>>,
    pub uri: Mutex<Option<String>>,
}

impl ModuleCtx {
    pub fn new(name: &str, shared: Arc<HostShared>) -> Arc<ModuleCtx> {
        Arc::new(ModuleCtx {
            name: name.to_string(),
            shared,
            health: Mutex::new(BTreeMap::new()),
            uri: Mutex::new(None),
        })
    }

    /// `mgr/<module>/<key>`, where both options and store keys live.
    pub fn key(&self, key: &str) -> String {
        format!("mgr/{}/{}", self.name, key)
    }

    fn check_size(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        let limit = self.shared.config.max_store_value_bytes;
        match value {
            Some(v) if v.len() > limit => Err(StoreError::TooLarge {
                key: self.key(key),
                size_bytes: v.len(),
                limit_bytes: limit,
            }),
            _ => Ok(()),
        }
    }

    pub fn set_config(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        self.check_size(key, value)?;
        self.shared.store.config_set(&self.key(key), value)
    }

    pub fn set_store(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        self.check_size(key, value)?;
        self.shared.store.kv_set(&self.key(key), value)
    }

    /// Store keys under `prefix`, without the `mgr/<module>/` part.
    pub fn store_prefix(&self, prefix: &str) -> BTreeMap<String, String> {
        let base = self.key("");
        self.shared
            .store
            .kv_prefix(&self.key(prefix))
            .into_iter()
            .map(|(k, v)| (k[base.len()..].to_string(), v))
            .collect()
    }
}

impl HostShared {
    /// `get('osd_metadata')`: `{"<id>": {metadata...}}` from the daemon
    /// index (what the OSDs sent in MgrOpen).
    pub fn osd_metadata(&self) -> Value {
        let mut out = Map::new();
        for k in self.daemon_state.matching("osd", "") {
            if let Some(m) = self.daemon_state.metadata(&k) {
                out.insert(k.svc_id.clone(), json!(m));
            }
        }
        Value::Object(out)
    }

    /// `list_servers()`: daemons grouped by their metadata's hostname.
    pub fn list_servers(&self) -> Value {
        let mut hosts: BTreeMap<String, (String, Vec<Value>)> = BTreeMap::new();
        for k in self.daemon_state.daemons() {
            let meta = self.daemon_state.metadata(&k).unwrap_or_default();
            let host = meta.get("hostname").cloned().unwrap_or_default();
            let version = meta.get("ceph_version").cloned().unwrap_or_default();
            let e = hosts
                .entry(host)
                .or_insert_with(|| (version.clone(), Vec::new()));
            if e.0.is_empty() {
                e.0 = version.clone();
            }
            e.1.push(json!({"type": k.svc_type, "id": k.svc_id, "ceph_version": version}));
        }
        Value::Array(
            hosts
                .into_iter()
                .map(|(h, (v, s))| json!({"hostname": h, "ceph_version": v, "services": s}))
                .collect(),
        )
    }

    pub fn get_server(&self, hostname: &str) -> Value {
        match self.list_servers() {
            Value::Array(a) => a
                .into_iter()
                .find(|s| s["hostname"] == hostname)
                .unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    pub fn metadata(&self, svc_type: &str, svc_id: &str) -> Option<BTreeMap<String, String>> {
        self.daemon_state
            .metadata(&DaemonKey::new(svc_type, svc_id))
    }
}
