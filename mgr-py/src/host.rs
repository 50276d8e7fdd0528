//! What the plugin host needs from the mgr daemon: the mon connection
//! (`mon_command`, `have_mon_connection`), the mgr's identity, the cluster
//! log, and persistence of module options and stores.
//!
//! `mon_command` is asynchronous on the daemon's side: the host passes a
//! [`MonCommandCompletion`] that the daemon completes from any thread (a
//! tokio task, typically). The Python caller waits on it with the GIL
//! released, bounded by `mon_command_timeout`.

use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use parking_lot::RwLock;
use serde_json::Value;

/// `-ETIMEDOUT`.
pub const ETIMEDOUT: i32 = -110;
/// `-EIO`.
pub const EIO: i32 = -5;
/// `-EINVAL`.
pub const EINVAL: i32 = -22;
/// `-ENOENT`.
pub const ENOENT: i32 = -2;
/// `-EBUSY`.
pub const EBUSY: i32 = -16;
/// `-EOPNOTSUPP`.
pub const EOPNOTSUPP: i32 = -95;

/// A mon command's answer: `(retval, outb, outs)` as Ceph's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonCommandReply {
    pub retval: i32,
    pub outb: Vec<u8>,
    pub outs: String,
}

/// Completes one `mon_command`. Dropping it uncompleted answers `-EIO`.
pub struct MonCommandCompletion {
    tx: SyncSender<MonCommandReply>,
}

impl MonCommandCompletion {
    /// A completion and the receiver the caller waits on.
    pub fn new() -> (MonCommandCompletion, MonCommandWaiter) {
        let (tx, rx) = sync_channel(1);
        (MonCommandCompletion { tx }, MonCommandWaiter { rx })
    }

    pub fn complete(self, reply: MonCommandReply) {
        // The waiter may have timed out and gone: nothing to do then.
        let _ = self.tx.try_send(reply);
    }
}

/// The caller's side of a [`MonCommandCompletion`].
pub struct MonCommandWaiter {
    rx: Receiver<MonCommandReply>,
}

impl MonCommandWaiter {
    /// Waits up to `timeout`; a timeout gives `-ETIMEDOUT`, an abandoned
    /// command `-EIO`, each with a message in `outs`.
    pub fn wait(self, timeout: Duration) -> MonCommandReply {
        match self.rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => MonCommandReply {
                retval: ETIMEDOUT,
                outb: Vec::new(),
                outs: format!(
                    "mon command timed out after {} ms (mon_command_timeout)",
                    timeout.as_millis()
                ),
            },
            Err(RecvTimeoutError::Disconnected) => MonCommandReply {
                retval: EIO,
                outb: Vec::new(),
                outs: "mon command was dropped by the mgr (no mon connection?)".to_string(),
            },
        }
    }
}

/// Cluster log priorities (Ceph's `clog_type`, as plugins pass them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClogPriority {
    Debug,
    Info,
    Sec,
    Warn,
    Error,
}

impl ClogPriority {
    /// Ceph's `MgrModule.ClusterLogPrio` values: DEBUG 0, INFO 1, SEC 2,
    /// WARN 3, ERROR 4.
    pub fn from_int(p: i64) -> ClogPriority {
        match p {
            0 => ClogPriority::Debug,
            1 => ClogPriority::Info,
            2 => ClogPriority::Sec,
            3 => ClogPriority::Warn,
            _ => ClogPriority::Error,
        }
    }
}

/// The mgr daemon's services the plugins use.
pub trait MgrHost: Send + Sync {
    /// `x` of `mgr.x`.
    fn mgr_id(&self) -> String;
    /// Whether the mgr has a live mon session.
    fn have_mon_connection(&self) -> bool;
    /// Sends `cmd` (`{"prefix": ..., ...}`) to the mon; completes `done`
    /// when the answer arrives. Must return at once (never block: it is
    /// called from a plugin thread, but with the GIL released only while
    /// the caller waits on the completion).
    fn mon_command(&self, cmd: Value, inbuf: Vec<u8>, done: MonCommandCompletion);
    /// Appends to the cluster log (`ceph -w`); default: the mgr's own log.
    fn cluster_log(&self, channel: &str, priority: ClogPriority, message: &str) {
        tracing::info!(target: "kalmar_mgr_py::clog", channel, ?priority, "{message}");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("value for {key} is {size_bytes} bytes, more than the {limit_bytes} allowed (max_store_value_bytes)")]
    TooLarge {
        key: String,
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("storing {key} failed: {reason}")]
    Backend { key: String, reason: String },
}

/// Persistence of module options (Ceph: the mon config DB,
/// `mgr/<module>/<option>`) and module stores (Ceph: config-key,
/// `mgr/<module>/<key>`). Reads must be local (a cache); writes may wait
/// for the mon (they are made from plugin threads with the GIL released).
pub trait MgrStore: Send + Sync {
    fn config_get(&self, key: &str) -> Option<String>;
    fn config_set(&self, key: &str, value: Option<&str>) -> Result<(), StoreError>;
    fn kv_get(&self, key: &str) -> Option<String>;
    fn kv_set(&self, key: &str, value: Option<&str>) -> Result<(), StoreError>;
    /// Every key starting with `prefix`, with its value.
    fn kv_prefix(&self, prefix: &str) -> BTreeMap<String, String>;
    /// Every module option set (`mgr/MODULE/KEY` -> value), for `config dump`.
    fn config_all(&self) -> BTreeMap<String, String>;
}

/// An in-memory [`MgrStore`], for tests and a mgr without a mon.
#[derive(Default)]
pub struct MemoryStore {
    config: RwLock<BTreeMap<String, String>>,
    kv: RwLock<BTreeMap<String, String>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Everything stored, as `(config, kv)`: what the daemon would persist.
    pub fn dump(&self) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        (self.config.read().clone(), self.kv.read().clone())
    }
}

fn put(map: &RwLock<BTreeMap<String, String>>, key: &str, value: Option<&str>) {
    let mut m = map.write();
    match value {
        Some(v) => {
            m.insert(key.to_string(), v.to_string());
        }
        None => {
            m.remove(key);
        }
    }
}

impl MgrStore for MemoryStore {
    fn config_get(&self, key: &str) -> Option<String> {
        self.config.read().get(key).cloned()
    }

    fn config_set(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        put(&self.config, key, value);
        Ok(())
    }

    fn kv_get(&self, key: &str) -> Option<String> {
        self.kv.read().get(key).cloned()
    }

    fn kv_set(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        put(&self.kv, key, value);
        Ok(())
    }

    fn config_all(&self) -> BTreeMap<String, String> {
        self.config.read().clone()
    }

    fn kv_prefix(&self, prefix: &str) -> BTreeMap<String, String> {
        self.kv
            .read()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn completion_timeout_and_drop() {
        let (done, wait) = MonCommandCompletion::new();
        drop(done);
        assert_eq!(wait.wait(Duration::from_millis(10)).retval, EIO);
        let (_done, wait) = MonCommandCompletion::new();
        assert_eq!(wait.wait(Duration::from_millis(10)).retval, ETIMEDOUT);
        let (done, wait) = MonCommandCompletion::new();
        std::thread::spawn(move || {
            done.complete(MonCommandReply {
                retval: 0,
                outb: b"x".to_vec(),
                outs: String::new(),
            })
        });
        assert_eq!(wait.wait(Duration::from_secs(5)).outb, b"x");
    }

    #[test]
    fn memory_store_prefix() {
        let s = MemoryStore::new();
        s.kv_set("mgr/a/x", Some("1")).unwrap();
        s.kv_set("mgr/a/y", Some("2")).unwrap();
        s.kv_set("mgr/b/x", Some("3")).unwrap();
        s.kv_set("mgr/a/y", None).unwrap();
        let p = s.kv_prefix("mgr/a/");
        assert_eq!(p.len(), 1);
        assert_eq!(p["mgr/a/x"], "1");
    }
}
