//! The per-daemon admin socket, with Ceph's wire format: the client writes a
//! JSON command object followed by a NUL byte; the daemon answers with a
//! 4-byte big-endian length and the payload. A payload that starts with
//! `ERROR: ` is a failure (the rest is the message).
//!
//! Commands are matched by their `prefix` words. When the prefix is not a
//! registered command, the longest registered leading run of its words is
//! used and the remaining words are passed as `"args": [...]`, so both
//! `{"prefix": "perf dump", "logger": "osd"}` and
//! `{"prefix": "perf dump osd"}` reach `perf dump`.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::RwLock;
use serde_json::{json, Value};

use crate::perf::PerfCollection;

/// Largest command accepted, in bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Most connections served at once; more are refused.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to send its command.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A command handler: gets the command object, returns JSON or an error.
pub type Handler = Arc<dyn Fn(&Value) -> Result<Value, String> + Send + Sync>;

struct Command {
    help: String,
    handler: Handler,
}

/// The set of commands a daemon answers.
#[derive(Default, Clone)]
pub struct AdminCommands {
    commands: Arc<RwLock<BTreeMap<String, Command>>>,
}

impl Clone for Command {
    fn clone(&self) -> Self {
        Command {
            help: self.help.clone(),
            handler: self.handler.clone(),
        }
    }
}

impl AdminCommands {
    pub fn new() -> Self {
        let c = AdminCommands::default();
        let inner = c.clone();
        c.register("help", "list available commands", move |_| {
            let m: serde_json::Map<String, Value> = inner
                .commands
                .read()
                .iter()
                .map(|(k, v)| (k.clone(), json!(v.help)))
                .collect();
            Ok(Value::Object(m))
        });
        c.register(
            "assert",
            "crash the daemon (only with debug_asok_assert_abort)",
            |_| crate::crash::asok_assert(),
        );
        c.register("version", "daemon version", |_| {
            Ok(json!({"version": env!("CARGO_PKG_VERSION"), "release": "kalmar"}))
        });
        c
    }

    /// Registers `perf dump`, `perf schema` and `perf reset` over `perf`.
    pub fn register_perf(&self, perf: Arc<PerfCollection>) {
        let p = perf.clone();
        self.register(
            "perf dump",
            "dump perf counters: perf dump [logger [counter]]",
            move |cmd| {
                let (logger, counter) = logger_and_counter(cmd);
                Ok(p.dump(logger.as_deref(), counter.as_deref()))
            },
        );
        let p = perf.clone();
        self.register("perf schema", "dump perf counter schema", move |_| {
            Ok(p.schema())
        });
        self.register(
            "perf reset",
            "zero perf counters: perf reset all|LOGGER",
            move |cmd| {
                let (logger, _) = logger_and_counter(cmd);
                for l in perf.loggers() {
                    if logger
                        .as_deref()
                        .is_none_or(|n| n == "all" || n == l.name())
                    {
                        l.reset();
                    }
                }
                Ok(json!({"success": "perf reset"}))
            },
        );
    }

    pub fn register(
        &self,
        prefix: &str,
        help: &str,
        handler: impl Fn(&Value) -> Result<Value, String> + Send + Sync + 'static,
    ) {
        self.commands.write().insert(
            prefix.to_string(),
            Command {
                help: help.to_string(),
                handler: Arc::new(handler),
            },
        );
    }

    /// Runs one command object and returns the reply payload.
    pub fn execute(&self, cmd: &Value) -> Result<Value, String> {
        let prefix = cmd
            .get("prefix")
            .and_then(Value::as_str)
            .ok_or_else(|| "command has no \"prefix\"".to_string())?;
        let words: Vec<&str> = prefix.split_whitespace().collect();
        let commands = self.commands.read();
        for n in (1..=words.len()).rev() {
            let candidate = words[..n].join(" ");
            if let Some(c) = commands.get(&candidate) {
                let handler = c.handler.clone();
                drop(commands);
                let mut cmd = cmd.clone();
                if n < words.len() {
                    if let Value::Object(m) = &mut cmd {
                        m.insert("prefix".into(), json!(candidate));
                        m.insert("args".into(), json!(words[n..]));
                    }
                }
                return handler(&cmd);
            }
        }
        Err(format!("unknown command '{prefix}'; try 'help'"))
    }
}

fn logger_and_counter(cmd: &Value) -> (Option<String>, Option<String>) {
    let args: Vec<String> = cmd
        .get("args")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let logger = cmd
        .get("logger")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| args.first().cloned());
    let counter = cmd
        .get("counter")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| args.get(1).cloned());
    (logger, counter)
}

/// A running admin socket; dropping it stops the listener and removes the
/// socket file.
pub struct AdminSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AdminSocket {
    /// Binds `path` (replacing a stale socket file) and serves `commands`.
    pub fn start(path: &Path, commands: AdminCommands) -> io::Result<AdminSocket> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            // A live daemon answers a connect; only a dead socket is replaced.
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "admin socket {} is in use by another daemon",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let active = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::Builder::new()
            .name("admin-socket".into())
            .spawn(move || accept_loop(listener, commands, stop2, active))?;
        Ok(AdminSocket {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(
    listener: UnixListener,
    commands: AdminCommands,
    stop: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    let _ = reply(&stream, b"ERROR: too many admin socket connections");
                    continue;
                }
                active.fetch_add(1, Ordering::Relaxed);
                let commands = commands.clone();
                let active2 = active.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("admin-conn".into())
                        .spawn(move || {
                            serve_one(stream, &commands);
                            active2.fetch_sub(1, Ordering::Relaxed);
                        });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!("admin socket accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn serve_one(mut stream: UnixStream, commands: &AdminCommands) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let mut req = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                req.extend_from_slice(&chunk[..n]);
                if let Some(end) = req.iter().position(|&b| b == 0) {
                    req.truncate(end);
                    break;
                }
                if req.len() > MAX_REQUEST_BYTES {
                    let _ = reply(&stream, b"ERROR: request too large");
                    return;
                }
            }
            Err(_) => return,
        }
    }
    let payload = match serde_json::from_slice::<Value>(&req) {
        Err(e) => format!("ERROR: command is not JSON: {e}").into_bytes(),
        Ok(cmd) => match commands.execute(&cmd) {
            Ok(v) => serde_json::to_vec_pretty(&v).unwrap_or_default(),
            Err(e) => format!("ERROR: {e}").into_bytes(),
        },
    };
    let _ = reply(&stream, &payload);
}

fn reply(mut stream: &UnixStream, payload: &[u8]) -> io::Result<()> {
    stream.write_all(&(payload.len() as u32).to_be_bytes())?;
    stream.write_all(payload)
}

/// Sends one command to a daemon's admin socket and returns its JSON reply.
pub fn request(path: &Path, cmd: &Value, timeout: Duration) -> Result<Value, String> {
    let mut s = UnixStream::connect(path)
        .map_err(|e| format!("cannot connect to admin socket {}: {e}", path.display()))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut req = serde_json::to_vec(cmd).map_err(|e| e.to_string())?;
    req.push(0);
    s.write_all(&req)
        .map_err(|e| format!("admin socket write: {e}"))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)
        .map_err(|e| format!("admin socket read: {e}"))?;
    let len = u32::from_be_bytes(len) as usize;
    let mut payload = Vec::with_capacity(len.min(64 << 20));
    s.take(len as u64)
        .read_to_end(&mut payload)
        .map_err(|e| format!("admin socket read: {e}"))?;
    if let Some(msg) = payload.strip_prefix(b"ERROR: ") {
        return Err(String::from_utf8_lossy(msg).into_owned());
    }
    serde_json::from_slice(&payload).map_err(|e| format!("admin socket reply is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::{CounterKind, PerfCountersBuilder, Unit, PRIO_USEFUL};

    #[test]
    fn serves_perf_dump_and_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("osd.0.asok");
        let perf = PerfCollection::new();
        let mut b = PerfCountersBuilder::new("osd");
        let op = b.add(
            "op",
            CounterKind::Counter,
            "ops",
            "",
            PRIO_USEFUL,
            Unit::None,
        );
        let pc = b.build();
        pc.inc(op, 5);
        perf.add(pc);
        let cmds = AdminCommands::new();
        cmds.register_perf(perf);
        let _sock = AdminSocket::start(&path, cmds).expect("start");
        let t = Duration::from_secs(5);
        let v = request(&path, &json!({"prefix": "perf dump"}), t).expect("dump");
        assert_eq!(v["osd"]["op"], json!(5));
        let v = request(&path, &json!({"prefix": "perf dump osd op"}), t).expect("dump one");
        assert_eq!(v["osd"]["op"], json!(5));
        let e = request(&path, &json!({"prefix": "bogus"}), t).expect_err("unknown");
        assert!(e.contains("unknown command"), "{e}");
        // A second daemon cannot steal a live socket.
        assert!(AdminSocket::start(&path, AdminCommands::new()).is_err());
    }
}
