//! `PyModules`: the set of plugins the active mgr runs. It discovers and
//! imports plugin folders, keeps the enabled set (the daemon persists it in
//! the MgrMap), starts and stops modules, fans notifications out, routes
//! `tell mgr` commands, and reports what failed.
//!
//! Threads: every call into Python runs on a thread of the module
//! (serve, notify, one per command). The methods here are either
//! non-blocking (`notify_all`, `module_ls`, `health_checks`,
//! `dispatch_command`) or bounded-blocking (`load`, `start`, `enable`,
//! `disable`, `shutdown`): call the latter from a blocking context
//! (`tokio::task::spawn_blocking`), never on an async worker thread.

mod loader;
mod running;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::cluster_state::ClusterStateProvider;
use crate::commands::{match_command, CommandDesc, MatchError};
use crate::config::PyModulesConfig;
use crate::context::{HostShared, ModuleCtx};
use crate::daemon_state::DaemonStateIndex;
use crate::health::{self, HealthCheck, Severity};
use crate::host::{MgrHost, MgrStore, EINVAL};
use crate::interp::{ensure_python, InterpError, PythonInfo};
use running::RunningModule;
pub use running::{CommandResult, CommandTicket, StopReport};

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("module '{0}' is not known (not found in the mgr module path)")]
    Unknown(String),
    #[error("module '{name}' cannot run: {reason} (enable with force to override)")]
    CannotRun { name: String, reason: String },
    #[error("module '{0}' is always on and cannot be disabled")]
    AlwaysOn(String),
    #[error("module option {module}/{key} is not declared in MODULE_OPTIONS")]
    UnknownOption { module: String, key: String },
    #[error("module option {module}/{key}: {reason}")]
    BadOption {
        module: String,
        key: String,
        reason: String,
    },
    #[error(transparent)]
    Python(#[from] InterpError),
}

/// Where a module stands, for `module ls` and health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleState {
    /// Importable, not enabled.
    Disabled,
    /// Enabled (or always on) and running.
    Running,
    /// Enabled but not running: failed to import, cannot run, its
    /// constructor failed, or `serve()` raised. The text says which.
    Failed(String),
    /// Enabled (or always on), imported, but its `can_run()` says it
    /// cannot run (a missing Python package): the text is its reason.
    MissingDependency(String),
    /// Not enabled and cannot run (import failed or `can_run()` false).
    Unavailable(String),
}

/// One line of `module ls`.
#[derive(Debug, Clone)]
pub struct ModuleInfo {
    pub name: String,
    pub dir: PathBuf,
    pub always_on: bool,
    pub enabled: bool,
    pub can_run: bool,
    pub error_string: String,
    pub state: ModuleState,
    pub options: Value,
    pub commands: Vec<String>,
}

struct Available {
    dir: PathBuf,
    load: Result<loader::LoadedModule, String>,
}

#[derive(Default)]
struct Registry {
    available: BTreeMap<String, Available>,
    enabled: BTreeSet<String>,
    running: BTreeMap<String, Arc<RunningModule>>,
    /// Modules whose start failed, with the reason.
    start_failed: BTreeMap<String, String>,
    /// Whether `start` was called (enable then starts modules at once).
    started: bool,
}

/// A loaded module's class and its NOTIFY_TYPES, ready to start.
type Runnable = (Arc<pyo3::Py<pyo3::PyAny>>, Option<Vec<String>>);

/// Queues a notification for every running module that wants it.
fn notify_running(reg: &Mutex<Registry>, notify_type: &str, notify_id: &str) -> usize {
    let running: Vec<Arc<RunningModule>> = reg.lock().running.values().cloned().collect();
    running
        .iter()
        .filter(|m| m.wants(notify_type))
        .filter(|m| m.notify(notify_type, notify_id))
        .count()
}

/// The plugin host.
pub struct PyModules {
    shared: Arc<HostShared>,
    reg: Arc<Mutex<Registry>>,
    python: PythonInfo,
}

impl PyModules {
    /// Starts Python if needed; loads nothing yet.
    pub fn new(
        config: PyModulesConfig,
        daemon_state: Arc<DaemonStateIndex>,
        cluster: Arc<dyn ClusterStateProvider>,
        host: Arc<dyn MgrHost>,
        store: Arc<dyn MgrStore>,
    ) -> Result<PyModules, ModuleError> {
        let python = ensure_python()?;
        let shared = Arc::new(HostShared {
            daemon_state,
            cluster,
            host,
            store,
            config,
            notifier: std::sync::OnceLock::new(),
        });
        let reg = Arc::new(Mutex::new(Registry::default()));
        // Weak: the registry owns the modules, whose contexts own `shared`.
        let weak = Arc::downgrade(&reg);
        let _ = shared.notifier.set(Box::new(move |t: &str, id: &str| {
            weak.upgrade().map_or(0, |reg| notify_running(&reg, t, id))
        }));
        Ok(PyModules {
            shared,
            reg,
            python,
        })
    }

    pub fn python(&self) -> &PythonInfo {
        &self.python
    }

    pub fn config(&self) -> &PyModulesConfig {
        &self.shared.config
    }

    /// Discovers and imports every plugin in the module path. A plugin
    /// that fails to import is recorded (module ls, health), not fatal.
    /// Already loaded modules are kept.
    pub fn load(&self) {
        let found = loader::discover(&self.shared.config.module_dirs);
        for (name, dir) in found {
            if self.reg.lock().available.contains_key(&name) {
                continue;
            }
            let load = self.load_one(&name, &dir);
            if let Err(e) = &load {
                tracing::error!(module = %name, dir = %dir.display(), "mgr module failed to load:\n{e}");
            }
            self.reg
                .lock()
                .available
                .insert(name, Available { dir, load });
        }
    }

    /// Imports one plugin on its own thread, bounded by `start_timeout`
    /// (an import that hangs is abandoned and reported).
    fn load_one(&self, name: &str, dir: &std::path::Path) -> Result<loader::LoadedModule, String> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (n, d) = (name.to_string(), dir.to_path_buf());
        std::thread::Builder::new()
            .name(format!("mgr-{name}-load"))
            .spawn(move || {
                let _ = tx.send(loader::load(&n, &d));
            })
            .map_err(|e| format!("cannot start a thread to import {name}: {e}"))?;
        let wait = self.shared.config.start_timeout;
        rx.recv_timeout(wait).unwrap_or_else(|_| {
            Err(format!(
                "importing the module did not finish within {} ms (start_timeout); abandoned",
                wait.as_millis()
            ))
        })
    }

    /// Replaces the enabled set (from the MgrMap at startup). Running
    /// modules not in it are stopped; with `start` done, new ones start.
    pub fn set_enabled(&self, names: impl IntoIterator<Item = String>) -> Vec<StopReport> {
        let names: BTreeSet<String> = names.into_iter().collect();
        let to_stop: Vec<String> = {
            let mut r = self.reg.lock();
            r.enabled = names;
            let r = &*r;
            r.running
                .keys()
                .filter(|n| !self.should_run(r, n))
                .cloned()
                .collect()
        };
        let reports = to_stop.iter().filter_map(|n| self.stop_one(n)).collect();
        if self.reg.lock().started {
            self.start();
        }
        reports
    }

    pub fn enabled(&self) -> BTreeSet<String> {
        self.reg.lock().enabled.clone()
    }

    fn should_run(&self, r: &Registry, name: &str) -> bool {
        r.enabled.contains(name) || self.shared.config.always_on.iter().any(|a| a == name)
    }

    /// Starts every enabled and always-on module that can run and is not
    /// running yet.
    pub fn start(&self) {
        let todo: Vec<(String, Option<Runnable>, Option<String>)> = {
            let mut r = self.reg.lock();
            r.started = true;
            let r = &*r;
            let mut names: BTreeSet<String> = r.enabled.clone();
            names.extend(self.shared.config.always_on.iter().cloned());
            names
                .into_iter()
                .filter(|n| !r.running.contains_key(n))
                .map(|n| match r.available.get(&n) {
                    None => (
                        n.clone(),
                        None,
                        Some(format!("module '{n}' is enabled but was not found")),
                    ),
                    Some(Available { load: Err(e), .. }) => (n, None, Some(loader::short_error(e))),
                    Some(Available { load: Ok(m), .. }) if !m.can_run => {
                        (n, None, Some(m.error_string.clone()))
                    }
                    Some(Available { load: Ok(m), .. }) => {
                        let class = m.class.clone();
                        (n, Some((class, m.notify_types.clone())), None)
                    }
                })
                .collect()
        };
        for (name, runnable, err) in todo {
            let outcome = match (runnable, err) {
                (Some((class, notify_types)), _) => RunningModule::start(
                    ModuleCtx::new(&name, self.shared.clone()),
                    class,
                    notify_types,
                ),
                (None, e) => Err(e.unwrap_or_default()),
            };
            let mut r = self.reg.lock();
            match outcome {
                Ok(m) => {
                    tracing::info!(module = %name, "mgr module started");
                    r.start_failed.remove(&name);
                    r.running.insert(name, m);
                }
                Err(e) => {
                    tracing::error!(module = %name, "mgr module could not start: {e}");
                    r.start_failed.insert(name, e);
                }
            }
        }
    }

    /// `mgr module enable NAME [--force]`.
    pub fn enable(&self, name: &str, force: bool) -> Result<(), ModuleError> {
        {
            let mut r = self.reg.lock();
            match r.available.get(name) {
                None => return Err(ModuleError::Unknown(name.to_string())),
                Some(Available { load: Err(e), .. }) if !force => {
                    return Err(ModuleError::CannotRun {
                        name: name.to_string(),
                        reason: loader::short_error(e),
                    })
                }
                Some(Available { load: Ok(m), .. }) if !m.can_run && !force => {
                    return Err(ModuleError::CannotRun {
                        name: name.to_string(),
                        reason: m.error_string.clone(),
                    })
                }
                _ => {}
            }
            r.enabled.insert(name.to_string());
            if !r.started {
                return Ok(());
            }
        }
        self.start();
        Ok(())
    }

    /// `mgr module disable NAME`: stops it (bounded) and reports leftovers.
    pub fn disable(&self, name: &str) -> Result<Option<StopReport>, ModuleError> {
        if self.shared.config.always_on.iter().any(|a| a == name) {
            return Err(ModuleError::AlwaysOn(name.to_string()));
        }
        {
            let mut r = self.reg.lock();
            if !r.available.contains_key(name) && !r.enabled.contains(name) {
                return Err(ModuleError::Unknown(name.to_string()));
            }
            r.enabled.remove(name);
            r.start_failed.remove(name);
        }
        Ok(self.stop_one(name))
    }

    fn stop_one(&self, name: &str) -> Option<StopReport> {
        let m = self.reg.lock().running.remove(name)?;
        let report = m.stop();
        tracing::info!(module = %name, "mgr module stopped");
        Some(report)
    }

    /// Stops every module, in parallel, each bounded by `shutdown_wait`.
    pub fn shutdown(&self) -> Vec<StopReport> {
        let all: Vec<Arc<RunningModule>> = {
            let mut r = self.reg.lock();
            r.started = false;
            std::mem::take(&mut r.running).into_values().collect()
        };
        let handles: Vec<_> = all
            .into_iter()
            .map(|m| std::thread::spawn(move || m.stop()))
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    }

    /// Tells every interested module (never blocks; full queues drop).
    /// Returns how many modules the notification was queued for.
    pub fn notify_all(&self, notify_type: &str, notify_id: &str) -> usize {
        notify_running(&self.reg, notify_type, notify_id)
    }

    /// Notifications dropped so far for a module (queue overflow).
    pub fn dropped_notifies(&self, name: &str) -> u64 {
        self.reg
            .lock()
            .running
            .get(name)
            .map(|m| {
                m.dropped_notifies
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .unwrap_or(0)
    }

    /// Sets a module option from outside the module (`config set`),
    /// then calls the module's `config_notify()`.
    pub fn set_module_option(
        &self,
        module: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), ModuleError> {
        let declared = {
            let r = self.reg.lock();
            match r.available.get(module) {
                Some(Available { load: Ok(m), .. }) => m.options.get(key).cloned(),
                _ => return Err(ModuleError::Unknown(module.to_string())),
            }
        };
        let Some(opt) = declared else {
            return Err(ModuleError::UnknownOption {
                module: module.into(),
                key: key.into(),
            });
        };
        if let Some(v) = value {
            let bad = |reason: String| ModuleError::BadOption {
                module: module.into(),
                key: key.into(),
                reason,
            };
            match opt["type"].as_str().unwrap_or("str") {
                "int" | "uint" | "size" | "secs" => {
                    v.parse::<i64>()
                        .map_err(|_| bad(format!("{v:?} is not an integer")))?;
                }
                "float" => {
                    v.parse::<f64>()
                        .map_err(|_| bad(format!("{v:?} is not a number")))?;
                }
                "bool"
                    if !["true", "false", "1", "0", "yes", "no", "on", "off"]
                        .contains(&v.to_ascii_lowercase().as_str()) =>
                {
                    return Err(bad(format!("{v:?} is not a boolean")));
                }
                _ => {}
            }
        }
        let ctx = ModuleCtx::new(module, self.shared.clone());
        ctx.set_config(key, value)
            .map_err(|e| ModuleError::BadOption {
                module: module.into(),
                key: key.into(),
                reason: e.to_string(),
            })?;
        if let Some(m) = self.reg.lock().running.get(module).cloned() {
            m.config_notify();
        }
        Ok(())
    }

    /// Every module option set, `mgr/MODULE/KEY` -> value.
    pub fn config_all(&self) -> BTreeMap<String, String> {
        self.shared.store.config_all()
    }

    /// A module option as stored (`None`: not set, the module's default
    /// applies). The option must be declared in MODULE_OPTIONS.
    pub fn get_module_option(
        &self,
        module: &str,
        key: &str,
    ) -> Result<Option<String>, ModuleError> {
        let declared = {
            let r = self.reg.lock();
            match r.available.get(module) {
                Some(Available { load: Ok(m), .. }) => m.options.contains_key(key),
                _ => return Err(ModuleError::Unknown(module.to_string())),
            }
        };
        if !declared {
            return Err(ModuleError::UnknownOption {
                module: module.into(),
                key: key.into(),
            });
        }
        Ok(self.shared.store.config_get(&format!("mgr/{module}/{key}")))
    }

    /// Commands of the running modules, with their module name.
    pub fn commands(&self) -> Vec<(String, CommandDesc)> {
        let r = self.reg.lock();
        let mut out = Vec::new();
        for name in r.running.keys() {
            if let Some(Available { load: Ok(m), .. }) = r.available.get(name) {
                out.extend(m.commands.iter().map(|c| (name.clone(), c.clone())));
            }
        }
        out
    }

    /// Ceph's `get_command_descriptions` for the mgr's plugin commands:
    /// `{"cmd000": {sig, help, module, perm, flags}, ...}`.
    pub fn command_descriptions(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (i, (module, c)) in self.commands().iter().enumerate() {
            out.insert(format!("cmd{i:03}"), c.to_ceph_json(module));
        }
        Value::Object(out)
    }

    /// Routes `tell mgr <words>` to the module whose COMMANDS match and
    /// starts it on a command thread. `Err` is an immediate answer: no
    /// match or a usage error (`-EINVAL`), too many commands (`-EBUSY`).
    pub fn dispatch_command(
        &self,
        words: &[String],
        format: Option<&str>,
        inbuf: Option<String>,
    ) -> Result<CommandTicket, CommandResult> {
        self.dispatch_command_checked(words, format, inbuf, |_, _, _| Ok(()))
    }

    /// [`PyModules::dispatch_command`], asking `allow` first with the
    /// matched command's module, description (its declared `perm`) and
    /// bound arguments; an `Err` from it is the answer and the command
    /// does not run (the mgr's cap check).
    pub fn dispatch_command_checked(
        &self,
        words: &[String],
        format: Option<&str>,
        inbuf: Option<String>,
        allow: impl FnOnce(&str, &CommandDesc, &Value) -> Result<(), CommandResult>,
    ) -> Result<CommandTicket, CommandResult> {
        let cmds = self.commands();
        let refs: Vec<&CommandDesc> = cmds.iter().map(|(_, c)| c).collect();
        let (i, cmd) = match match_command(&refs, words, format) {
            Ok(x) => x,
            Err(e @ MatchError::NoMatch(_)) => {
                return Err(CommandResult::error(
                    EINVAL,
                    format!("No handler found for '{}': {e}", words.join(" ")),
                ))
            }
            Err(e) => return Err(CommandResult::error(EINVAL, e.to_string())),
        };
        let module = &cmds[i].0;
        allow(module, &cmds[i].1, &cmd)?;
        let m = self.reg.lock().running.get(module).cloned();
        match m {
            Some(m) => m.command(cmd, inbuf),
            None => Err(CommandResult::error(
                EINVAL,
                format!("module {module} stopped"),
            )),
        }
    }

    /// `dispatch_command` then wait: for blocking callers and tests.
    pub fn handle_command(
        &self,
        words: &[String],
        format: Option<&str>,
        inbuf: Option<String>,
    ) -> CommandResult {
        match self.dispatch_command(words, format, inbuf) {
            Ok(t) => t.wait(),
            Err(r) => r,
        }
    }

    /// Every module, for `mgr module ls`.
    pub fn module_infos(&self) -> Vec<ModuleInfo> {
        let r = self.reg.lock();
        r.available
            .iter()
            .map(|(name, a)| {
                let always_on = self.shared.config.always_on.iter().any(|x| x == name);
                let enabled = r.enabled.contains(name);
                let (can_run, error_string, options, commands) = match &a.load {
                    Ok(m) => (
                        m.can_run,
                        m.error_string.clone(),
                        Value::Object(m.options.clone()),
                        m.commands.iter().map(|c| c.signature.clone()).collect(),
                    ),
                    Err(e) => (false, loader::short_error(e), json!({}), Vec::new()),
                };
                let state = if let Some(m) = r.running.get(name) {
                    match m.failed.lock().clone() {
                        Some(tb) => ModuleState::Failed(format!(
                            "serve() raised: {}",
                            loader::short_error(&tb)
                        )),
                        None => ModuleState::Running,
                    }
                } else if (enabled || always_on) && a.load.is_ok() && !can_run {
                    ModuleState::MissingDependency(error_string.clone())
                } else if enabled || always_on {
                    ModuleState::Failed(r.start_failed.get(name).cloned().unwrap_or_else(|| {
                        if can_run {
                            "not started".to_string()
                        } else {
                            error_string.clone()
                        }
                    }))
                } else if can_run {
                    ModuleState::Disabled
                } else {
                    ModuleState::Unavailable(error_string.clone())
                };
                ModuleInfo {
                    name: name.clone(),
                    dir: a.dir.clone(),
                    always_on,
                    enabled,
                    can_run,
                    error_string,
                    state,
                    options,
                    commands,
                }
            })
            .collect()
    }

    /// Ceph's `mgr module ls` JSON: `always_on_modules`, `enabled_modules`,
    /// `disabled_modules[{name, can_run, error_string, module_options}]`,
    /// plus `failed_modules[{name, error_string}]` for enabled modules that
    /// are not running.
    pub fn module_ls(&self) -> Value {
        let infos = self.module_infos();
        let always: Vec<&str> = infos
            .iter()
            .filter(|m| m.always_on)
            .map(|m| m.name.as_str())
            .collect();
        let enabled: Vec<&str> = infos
            .iter()
            .filter(|m| m.enabled && !m.always_on)
            .map(|m| m.name.as_str())
            .collect();
        let disabled: Vec<Value> = infos
            .iter()
            .filter(|m| !m.enabled && !m.always_on)
            .map(|m| json!({"name": m.name, "can_run": m.can_run, "error_string": m.error_string, "module_options": m.options}))
            .collect();
        let failed: Vec<Value> = infos
            .iter()
            .filter_map(|m| match &m.state {
                ModuleState::Failed(e) | ModuleState::MissingDependency(e) => {
                    Some(json!({"name": m.name, "error_string": e}))
                }
                _ => None,
            })
            .collect();
        json!({
            "always_on_modules": always,
            "enabled_modules": enabled,
            "disabled_modules": disabled,
            "failed_modules": failed,
        })
    }

    /// Module URIs (`set_uri`), the MgrMap's `services`.
    pub fn services(&self) -> BTreeMap<String, String> {
        self.reg
            .lock()
            .running
            .iter()
            .filter_map(|(n, m)| m.ctx.uri.lock().clone().map(|u| (n.clone(), u)))
            .collect()
    }

    /// Every module's `set_health_checks` merged, plus the host's own:
    /// `MGR_MODULE_ERROR` (an enabled module failed) and
    /// `MGR_MODULE_STALLED` (a notify running past `notify_stall_warn`).
    pub fn health_checks(&self) -> BTreeMap<String, HealthCheck> {
        let running: Vec<Arc<RunningModule>> = self.reg.lock().running.values().cloned().collect();
        let module_sets: Vec<BTreeMap<String, HealthCheck>> = running
            .iter()
            .map(|m| m.ctx.health.lock().clone())
            .collect();
        let mut own = BTreeMap::new();
        let infos = self.module_infos();
        let failed: Vec<String> = infos
            .iter()
            .filter_map(|m| match &m.state {
                ModuleState::Failed(e) => Some(format!("Module '{}' has failed: {}", m.name, e)),
                _ => None,
            })
            .collect();
        // As Ceph: an enabled module that cannot run for want of a
        // dependency is a warning naming the reason, not an error.
        let missing: Vec<String> = infos
            .iter()
            .filter_map(|m| match &m.state {
                ModuleState::MissingDependency(e) => {
                    Some(format!("Module '{}' has failed dependency: {}", m.name, e))
                }
                _ => None,
            })
            .collect();
        if !missing.is_empty() {
            let summary = if missing.len() == 1 {
                missing[0].clone()
            } else {
                format!("{} mgr modules have failed dependencies", missing.len())
            };
            own.insert(
                "MGR_MODULE_DEPENDENCY".to_string(),
                HealthCheck {
                    severity: Severity::Warning,
                    summary,
                    count: missing.len() as u64,
                    detail: missing,
                },
            );
        }
        if !failed.is_empty() {
            let summary = if failed.len() == 1 {
                failed[0].clone()
            } else {
                format!("{} mgr modules have failed", failed.len())
            };
            own.insert(
                "MGR_MODULE_ERROR".to_string(),
                HealthCheck {
                    severity: Severity::Error,
                    summary,
                    count: failed.len() as u64,
                    detail: failed,
                },
            );
        }
        let warn_after = self.shared.config.notify_stall_warn;
        let stalled: Vec<String> = running
            .iter()
            .filter_map(|m| {
                let busy = m.notify_busy.lock().clone();
                busy.filter(|(since, _)| since.elapsed() >= warn_after)
                    .map(|(since, what)| {
                        format!(
                            "Module '{}' has been in notify({what}) for {} s",
                            m.name(),
                            since.elapsed().as_secs()
                        )
                    })
            })
            .collect();
        if !stalled.is_empty() {
            own.insert(
                "MGR_MODULE_STALLED".to_string(),
                HealthCheck {
                    severity: Severity::Warning,
                    summary: format!("{} mgr module(s) stuck in notify", stalled.len()),
                    count: stalled.len() as u64,
                    detail: stalled,
                },
            );
        }
        let mut sets: Vec<&BTreeMap<String, HealthCheck>> = module_sets.iter().collect();
        sets.push(&own);
        health::merge(sets)
    }

    /// How long a module's current notify has been running, if any.
    pub fn notify_busy_for(&self, name: &str) -> Option<Duration> {
        let m = self.reg.lock().running.get(name).cloned()?;
        let busy = m.notify_busy.lock().clone();
        busy.map(|(t, _)| t.elapsed())
    }
}

impl Drop for PyModules {
    fn drop(&mut self) {
        let reports = self.shutdown();
        for r in reports.iter().filter(|r| !r.abandoned.is_empty()) {
            tracing::warn!(module = %r.module, "abandoned threads at mgr shutdown: {:?}", r.abandoned);
        }
    }
}
