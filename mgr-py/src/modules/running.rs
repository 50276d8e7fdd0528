//! One running module: its instance, its `serve()` thread, its notify
//! thread with a bounded queue, and its command threads. Python never runs
//! on the caller's thread; every wait on a module is bounded.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::prelude::*;

use crate::context::ModuleCtx;
use crate::host::{EBUSY, EINVAL, ETIMEDOUT};
use crate::native::ModuleHandle;

/// A command's answer, Ceph's `(retval, stdout, stderr)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    pub retval: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CommandResult {
    pub fn error(retval: i32, stderr: impl Into<String>) -> Self {
        CommandResult {
            retval,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }
}

/// A command running on its own thread.
pub struct CommandTicket {
    rx: Receiver<CommandResult>,
    timeout: Duration,
    module: String,
}

impl CommandTicket {
    /// Blocks until the module answers or `command_timeout` passes
    /// (`-ETIMEDOUT`; the module's thread keeps running on its own).
    pub fn wait(self) -> CommandResult {
        match self.rx.recv_timeout(self.timeout) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => CommandResult::error(
                ETIMEDOUT,
                format!(
                    "module {} did not answer within {} ms (command_timeout)",
                    self.module,
                    self.timeout.as_millis()
                ),
            ),
            Err(RecvTimeoutError::Disconnected) => CommandResult::error(
                EINVAL,
                format!("module {} dropped the command", self.module),
            ),
        }
    }

    /// The same, for async callers: waits on a blocking-pool thread.
    pub async fn wait_async(self) -> CommandResult {
        let module = self.module.clone();
        tokio::task::spawn_blocking(move || self.wait())
            .await
            .unwrap_or_else(|e| {
                CommandResult::error(
                    EINVAL,
                    format!("module {module}: command waiter failed: {e}"),
                )
            })
    }

    pub fn module(&self) -> &str {
        &self.module
    }
}

enum NotifyMsg {
    Notify(String, String),
    ConfigNotify,
    Stop,
}

/// What stopping a module left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReport {
    pub module: String,
    /// Threads still inside Python after `shutdown_wait` ("serve",
    /// "notify", "shutdown"): abandoned, they end when Python returns.
    pub abandoned: Vec<String>,
}

pub(crate) struct RunningModule {
    pub ctx: Arc<ModuleCtx>,
    /// Shared by `Arc` so no caller thread needs the GIL to hand it on.
    instance: Arc<Py<PyAny>>,
    notify_types: Option<Vec<String>>,
    notify_tx: SyncSender<NotifyMsg>,
    notify_thread: Mutex<Option<JoinHandle<()>>>,
    serve_thread: Mutex<Option<JoinHandle<()>>>,
    /// Set when serve() raised (or start failed later): the traceback.
    pub failed: Arc<Mutex<Option<String>>>,
    /// When the notify in progress started, and its type.
    pub notify_busy: Arc<Mutex<Option<(Instant, String)>>>,
    pub dropped_notifies: AtomicU64,
    inflight: Arc<AtomicUsize>,
    stopping: Arc<AtomicBool>,
}

fn loader_call<'py>(
    py: Python<'py>,
    f: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> Result<Bound<'py, PyAny>, String> {
    py.import("_kalmar_loader")
        .and_then(|l| l.call_method1(f, args))
        .map_err(|e| e.to_string())
}

/// Waits for a thread to finish, up to `deadline`; returns whether it did.
fn join_until(handle: Option<JoinHandle<()>>, deadline: Instant) -> bool {
    let Some(h) = handle else { return true };
    while !h.is_finished() {
        if Instant::now() >= deadline {
            return false; // dropped: the thread is detached
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = h.join();
    true
}

impl RunningModule {
    /// Constructs the module on its serve thread and starts `serve()`.
    /// Returns once the constructor returned (bounded by `start_timeout`).
    pub fn start(
        ctx: Arc<ModuleCtx>,
        class: Arc<Py<PyAny>>,
        notify_types: Option<Vec<String>>,
    ) -> Result<Arc<RunningModule>, String> {
        let cfg = &ctx.shared.config;
        let name = ctx.name.clone();
        let failed = Arc::new(Mutex::new(None));
        let (inst_tx, inst_rx) = sync_channel::<Result<Arc<Py<PyAny>>, String>>(1);
        let (go_tx, go_rx) = sync_channel::<bool>(1);
        let serve_ctx = ctx.clone();
        let serve_failed = failed.clone();
        let serve_thread = std::thread::Builder::new()
            .name(format!("mgr-{name}-serve"))
            .spawn(move || {
                let handle = ModuleHandle {
                    ctx: serve_ctx.clone(),
                };
                let inst = Python::attach(|py| -> Result<Arc<Py<PyAny>>, String> {
                    let h = Py::new(py, handle).map_err(|e| e.to_string())?;
                    let r = loader_call(
                        py,
                        "instantiate",
                        (class.bind(py), serve_ctx.name.as_str(), h),
                    )?;
                    Ok(Arc::new(r.unbind()))
                });
                let inst = match inst {
                    Ok(i) => i,
                    Err(e) => {
                        let _ = inst_tx.send(Err(e));
                        return;
                    }
                };
                let for_serve = inst.clone();
                if inst_tx.send(Ok(inst)).is_err() {
                    return; // start timed out; never serve
                }
                if !go_rx.recv().unwrap_or(false) {
                    return;
                }
                let err = Python::attach(|py| {
                    match loader_call(py, "call_hook", (for_serve.bind(py), "serve")) {
                        Ok(v) => v.extract::<Option<String>>().unwrap_or(None),
                        Err(e) => Some(e),
                    }
                });
                if let Some(tb) = err {
                    tracing::error!(module = %serve_ctx.name, "mgr module serve() raised:\n{tb}");
                    *serve_failed.lock() = Some(tb);
                }
            })
            .map_err(|e| format!("cannot start a thread for module {name}: {e}"))?;

        let instance = match inst_rx.recv_timeout(cfg.start_timeout) {
            Ok(Ok(i)) => i,
            Ok(Err(e)) => {
                let _ = serve_thread.join();
                return Err(format!("constructing the module failed: {e}"));
            }
            Err(_) => {
                return Err(format!(
                "the module's constructor did not return within {} ms (start_timeout); abandoned",
                cfg.start_timeout.as_millis()
            ))
            }
        };

        let (notify_tx, notify_rx) = sync_channel::<NotifyMsg>(cfg.notify_queue_depth.max(1));
        let notify_busy: Arc<Mutex<Option<(Instant, String)>>> = Arc::new(Mutex::new(None));
        let busy = notify_busy.clone();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop_flag = stopping.clone();
        let notify_inst = instance.clone();
        let nname = name.clone();
        let notify_thread = std::thread::Builder::new()
            .name(format!("mgr-{name}-notify"))
            .spawn(move || {
                while let Ok(msg) = notify_rx.recv() {
                    if stop_flag.load(Ordering::Acquire) {
                        break;
                    }
                    let (f, args) = match msg {
                        NotifyMsg::Stop => break,
                        NotifyMsg::Notify(t, id) => ("notify", (t, id)),
                        NotifyMsg::ConfigNotify => {
                            ("call_hook", ("config_notify".to_string(), String::new()))
                        }
                    };
                    *busy.lock() = Some((Instant::now(), args.0.clone()));
                    let err = Python::attach(|py| {
                        let r = if f == "notify" {
                            loader_call(
                                py,
                                "notify",
                                (notify_inst.bind(py), args.0.as_str(), args.1.as_str()),
                            )
                        } else {
                            loader_call(py, "call_hook", (notify_inst.bind(py), "config_notify"))
                        };
                        match r {
                            Ok(v) => v.extract::<Option<String>>().unwrap_or(None),
                            Err(e) => Some(e),
                        }
                    });
                    *busy.lock() = None;
                    if let Some(tb) = err {
                        tracing::warn!(module = %nname, "mgr module {f}({}) raised:\n{tb}", args.0);
                    }
                }
            })
            .map_err(|e| format!("cannot start the notify thread of module {name}: {e}"));
        let notify_thread = match notify_thread {
            Ok(t) => t,
            Err(e) => {
                let _ = go_tx.send(false);
                return Err(e);
            }
        };
        let _ = go_tx.send(true);
        Ok(Arc::new(RunningModule {
            ctx,
            instance,
            notify_types,
            notify_tx,
            notify_thread: Mutex::new(Some(notify_thread)),
            serve_thread: Mutex::new(Some(serve_thread)),
            failed,
            notify_busy,
            dropped_notifies: AtomicU64::new(0),
            inflight: Arc::new(AtomicUsize::new(0)),
            stopping,
        }))
    }

    pub fn name(&self) -> &str {
        &self.ctx.name
    }

    pub fn wants(&self, notify_type: &str) -> bool {
        match &self.notify_types {
            None => true,
            Some(t) => t.iter().any(|x| x == notify_type),
        }
    }

    /// Queues a notification; never blocks. A full queue drops it.
    pub fn notify(&self, notify_type: &str, notify_id: &str) -> bool {
        self.enqueue(
            NotifyMsg::Notify(notify_type.to_string(), notify_id.to_string()),
            notify_type,
        )
    }

    pub fn config_notify(&self) -> bool {
        self.enqueue(NotifyMsg::ConfigNotify, "config_notify")
    }

    fn enqueue(&self, msg: NotifyMsg, what: &str) -> bool {
        match self.notify_tx.try_send(msg) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                let n = self.dropped_notifies.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    module = %self.name(),
                    "notify queue full ({} entries, notify_queue_depth): dropped {what} ({n} dropped so far)",
                    self.ctx.shared.config.notify_queue_depth
                );
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Runs a command on a new thread; the ticket waits with a timeout.
    pub fn command(
        &self,
        cmd: serde_json::Value,
        inbuf: Option<String>,
    ) -> Result<CommandTicket, CommandResult> {
        let cfg = &self.ctx.shared.config;
        let n = self.inflight.fetch_add(1, Ordering::AcqRel);
        if n >= cfg.max_inflight_commands {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            return Err(CommandResult::error(
                EBUSY,
                format!(
                    "module {} already runs {n} commands (max_inflight_commands)",
                    self.name()
                ),
            ));
        }
        let (tx, rx) = sync_channel(1);
        let inst = self.instance.clone();
        let inflight = self.inflight.clone();
        let cmd_json = cmd.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("mgr-{}-cmd", self.name()))
            .spawn(move || {
                let r = Python::attach(|py| {
                    match loader_call(
                        py,
                        "dispatch",
                        (inst.bind(py), cmd_json.as_str(), inbuf.as_deref()),
                    ) {
                        Ok(v) => v
                            .extract::<(i32, String, String)>()
                            .map(|(retval, stdout, stderr)| CommandResult {
                                retval,
                                stdout,
                                stderr,
                            })
                            .unwrap_or_else(|e| {
                                CommandResult::error(EINVAL, format!("bad command result: {e}"))
                            }),
                        Err(e) => CommandResult::error(EINVAL, e),
                    }
                });
                inflight.fetch_sub(1, Ordering::AcqRel);
                let _ = tx.send(r);
            });
        if let Err(e) = spawned {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            return Err(CommandResult::error(
                EBUSY,
                format!("cannot start a command thread: {e}"),
            ));
        }
        Ok(CommandTicket {
            rx,
            timeout: cfg.command_timeout,
            module: self.name().to_string(),
        })
    }

    /// Calls `shutdown()`, stops the notify thread, waits for `serve()`:
    /// all within `shutdown_wait`; whatever is still inside Python then is
    /// abandoned and reported.
    pub fn stop(&self) -> StopReport {
        let wait = self.ctx.shared.config.shutdown_wait;
        let deadline = Instant::now() + wait;
        self.stopping.store(true, Ordering::Release);
        let _ = self.notify_tx.try_send(NotifyMsg::Stop);
        let inst = self.instance.clone();
        let name = self.name().to_string();
        let shutdown = std::thread::Builder::new()
            .name(format!("mgr-{name}-shutdown"))
            .spawn(move || {
                let err = Python::attach(|py| {
                    match loader_call(py, "call_hook", (inst.bind(py), "shutdown")) {
                        Ok(v) => v.extract::<Option<String>>().unwrap_or(None),
                        Err(e) => Some(e),
                    }
                });
                if let Some(tb) = err {
                    tracing::warn!(module = %name, "mgr module shutdown() raised:\n{tb}");
                }
            })
            .ok();
        let mut abandoned = Vec::new();
        if !join_until(shutdown, deadline) {
            abandoned.push("shutdown".to_string());
        }
        if !join_until(self.serve_thread.lock().take(), deadline) {
            abandoned.push("serve".to_string());
        }
        if !join_until(self.notify_thread.lock().take(), deadline) {
            abandoned.push("notify".to_string());
        }
        if !abandoned.is_empty() {
            tracing::warn!(
                module = %self.name(),
                "mgr module did not stop within {} ms (shutdown_wait): abandoned its {} thread(s)",
                wait.as_millis(),
                abandoned.join(", ")
            );
        }
        StopReport {
            module: self.name().to_string(),
            abandoned,
        }
    }
}
