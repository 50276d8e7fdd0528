//! What the plugins reach through the daemon: `mon_command` over the mgr's
//! mon session ([`DaemonHost`]) and persistence of module options and
//! stores ([`FileStore`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kalmar_mgr_py::{
    ClogPriority, MemoryStore, MgrHost, MgrStore, MonCommandCompletion, MonCommandReply, StoreError,
};
use kalmar_proto::monc::MonClient;
use parking_lot::Mutex;
use serde_json::{json, Value};

/// `MgrHost` over the daemon's mon session.
pub struct DaemonHost {
    pub name: String,
    pub mon: Arc<MonClient>,
    pub rt: tokio::runtime::Handle,
    pub timeout: Duration,
    /// The module options, for `config dump`.
    pub store: Arc<FileStore>,
}

/// Ceph's `config dump` (JSON) of the options the mgr holds: Kalmar keeps
/// no central config database in the mon (daemons read their conf file),
/// so the cluster's run-time options are the mgr modules' (`mgr/MODULE/KEY`).
pub fn config_dump_json(config: &BTreeMap<String, String>) -> Value {
    Value::Array(
        config
            .iter()
            .map(|(name, value)| {
                json!({"section": "mgr", "name": name, "value": value, "level": "advanced",
                       "can_update_at_runtime": true, "mask": "",
                       "location_type": "", "location_value": ""})
            })
            .collect(),
    )
}

impl MgrHost for DaemonHost {
    fn mgr_id(&self) -> String {
        self.name.clone()
    }

    fn have_mon_connection(&self) -> bool {
        self.mon.is_connected()
    }

    fn mon_command(&self, cmd: Value, inbuf: Vec<u8>, done: MonCommandCompletion) {
        if cmd["prefix"] == "config dump" {
            // Answered here: the mgr holds the only run-time options
            // (insights reads them; the mon has no config database).
            let config = self.store.config_all();
            done.complete(MonCommandReply {
                retval: 0,
                outb: config_dump_json(&config).to_string().into_bytes(),
                outs: String::new(),
            });
            return;
        }
        let mon = self.mon.clone();
        let timeout = self.timeout;
        self.rt.spawn(async move {
            let reply = match mon.command_with_input(&cmd, inbuf, timeout).await {
                Ok(r) => MonCommandReply {
                    retval: r.retval,
                    outb: r.outbuf.0,
                    outs: r.outs,
                },
                Err(e) => MonCommandReply {
                    retval: kalmar_mgr_py::host::EIO,
                    outb: Vec::new(),
                    outs: e.to_string(),
                },
            };
            done.complete(reply);
        });
    }

    fn cluster_log(&self, channel: &str, priority: ClogPriority, message: &str) {
        tracing::info!(target: "kalmar_mgr::clog", channel, ?priority, "{message}");
    }
}

/// Module options and stores kept in memory and written through to one
/// JSON file (replaced atomically, synced) in the mgr's data directory,
/// so they survive a restart of this mgr.
pub struct FileStore {
    mem: MemoryStore,
    path: PathBuf,
    /// Serialises writers so the file always holds a complete snapshot.
    write_lock: Mutex<()>,
}

impl FileStore {
    /// Loads `path` if it exists (a missing file is an empty store).
    pub fn open(path: &Path) -> Result<FileStore, StoreError> {
        let backend = |reason: String| StoreError::Backend {
            key: path.display().to_string(),
            reason,
        };
        let mem = MemoryStore::new();
        match std::fs::read(path) {
            Ok(bytes) => {
                let v: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| backend(format!("not valid JSON: {e}")))?;
                for (section, set) in [("config", true), ("kv", false)] {
                    for (k, val) in v[section].as_object().into_iter().flatten() {
                        let val = val.as_str().unwrap_or_default();
                        if set {
                            mem.config_set(k, Some(val))?;
                        } else {
                            mem.kv_set(k, Some(val))?;
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(backend(e.to_string())),
        }
        Ok(FileStore {
            mem,
            path: path.to_path_buf(),
            write_lock: Mutex::new(()),
        })
    }

    /// A module option from the conf: used while nothing was set at run
    /// time; not written to the file.
    pub fn set_default(&self, key: &str, value: &str) -> Result<(), StoreError> {
        if self.mem.config_get(key).is_none() {
            self.mem.config_set(key, Some(value))?;
        }
        Ok(())
    }

    fn persist(&self, key: &str) -> Result<(), StoreError> {
        let _guard = self.write_lock.lock();
        let (config, kv) = self.mem.dump();
        let body = json!({"config": config, "kv": kv}).to_string();
        write_synced(&self.path, body.as_bytes()).map_err(|e| StoreError::Backend {
            key: key.to_string(),
            reason: format!("{}: {e}", self.path.display()),
        })
    }
}

/// Writes a temp file, syncs it, renames it over `path`, syncs the folder.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl MgrStore for FileStore {
    fn config_get(&self, key: &str) -> Option<String> {
        self.mem.config_get(key)
    }

    fn config_all(&self) -> BTreeMap<String, String> {
        self.mem.config_all()
    }

    fn config_set(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        self.mem.config_set(key, value)?;
        self.persist(key)
    }

    fn kv_get(&self, key: &str) -> Option<String> {
        self.mem.kv_get(key)
    }

    fn kv_set(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        self.mem.kv_set(key, value)?;
        self.persist(key)
    }

    fn kv_prefix(&self, prefix: &str) -> BTreeMap<String, String> {
        self.mem.kv_prefix(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_store_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/store.json");
        let s = FileStore::open(&path).expect("empty");
        s.kv_set("mgr/hello/x", Some("1")).expect("set");
        s.config_set("mgr/prometheus/server_port", Some("9999"))
            .expect("set");
        s.kv_set("mgr/hello/y", Some("2")).expect("set");
        s.kv_set("mgr/hello/y", None).expect("rm");
        drop(s);
        let s = FileStore::open(&path).expect("reopen");
        assert_eq!(s.kv_get("mgr/hello/x").as_deref(), Some("1"));
        assert_eq!(s.kv_get("mgr/hello/y"), None);
        assert_eq!(
            s.config_get("mgr/prometheus/server_port").as_deref(),
            Some("9999")
        );
        std::fs::write(&path, "not json").expect("write");
        assert!(FileStore::open(&path).is_err());
    }
}
