//! Settings of the plugin host. Every bound (queue depth, wait, timeout) is
//! a named field with a default the daemon may override from its conf.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable with extra plugin folders, colon-separated.
pub const MODULE_PATH_ENV: &str = "KALMAR_MGR_MODULE_PATH";
/// Environment variable overriding where `mgr_module.py` & co. are read
/// from (otherwise the copies compiled into the binary are used).
pub const PYTHON_PATH_ENV: &str = "KALMAR_MGR_PYTHON_DIR";

#[derive(Debug, Clone)]
pub struct PyModulesConfig {
    /// Folders searched for `NAME/module.py`, first match wins.
    pub module_dirs: Vec<PathBuf>,
    /// Modules that run whether or not they are in the enabled set.
    pub always_on: Vec<String>,
    /// Notifications queued per module before new ones are dropped.
    pub notify_queue_depth: usize,
    /// How long a `handle_command` may run before the caller gets
    /// `-ETIMEDOUT` (the command keeps running on its own thread).
    pub command_timeout: Duration,
    /// Commands running at once per module; more get `-EBUSY`.
    pub max_inflight_commands: usize,
    /// How long `mon_command` waits for the mon.
    pub mon_command_timeout: Duration,
    /// How long a module's `__init__` may take when it is started.
    pub start_timeout: Duration,
    /// How long stopping a module waits for `shutdown()`, `serve()` and its
    /// notify thread before abandoning them (and reporting it).
    pub shutdown_wait: Duration,
    /// A notify running longer than this raises `MGR_MODULE_STALLED`.
    pub notify_stall_warn: Duration,
    /// Largest value `set_store` / `set_module_option` accept.
    pub max_store_value_bytes: usize,
}

impl Default for PyModulesConfig {
    fn default() -> Self {
        PyModulesConfig {
            module_dirs: vec![shipped_modules_dir()],
            always_on: Vec::new(),
            notify_queue_depth: 256,
            command_timeout: Duration::from_secs(30),
            max_inflight_commands: 4,
            mon_command_timeout: Duration::from_secs(30),
            start_timeout: Duration::from_secs(10),
            shutdown_wait: Duration::from_secs(5),
            notify_stall_warn: Duration::from_secs(30),
            max_store_value_bytes: 64 * 1024,
        }
    }
}

/// The plugins shipped with Kalmar: `share/kalmar/mgr-modules` beside an
/// installed binary's prefix if present, else this crate's `modules/`.
pub fn shipped_modules_dir() -> PathBuf {
    if let Some(p) = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.parent()
                .and_then(Path::parent)
                .map(|prefix| prefix.join("share/kalmar/mgr-modules"))
        })
        .filter(|p| p.is_dir())
    {
        return p;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/modules"))
}

/// The search list the daemon passes: `--modules-dir` flags, then the
/// conf's `mgr_module_path` (colon-separated), then
/// `KALMAR_MGR_MODULE_PATH`, then the shipped plugins. Duplicates dropped.
pub fn module_search_path(
    flag_dirs: &[PathBuf],
    conf_path: Option<&str>,
    env_path: Option<&str>,
) -> Vec<PathBuf> {
    let split = |s: &str| -> Vec<PathBuf> {
        s.split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect()
    };
    let mut out: Vec<PathBuf> = Vec::new();
    let all = flag_dirs
        .iter()
        .cloned()
        .chain(conf_path.map(split).unwrap_or_default())
        .chain(env_path.map(split).unwrap_or_default())
        .chain(std::iter::once(shipped_modules_dir()));
    for p in all {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn search_path_order() {
        let p = module_search_path(&[PathBuf::from("/a")], Some("/b:/c"), Some("/c:/d"));
        assert_eq!(
            &p[..4],
            &[PathBuf::from("/a"), "/b".into(), "/c".into(), "/d".into()]
        );
        assert_eq!(p.last(), Some(&shipped_modules_dir()));
        assert!(shipped_modules_dir().join("hello/module.py").is_file());
    }
}
