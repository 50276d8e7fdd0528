//! Crash reports in Ceph's shape. A daemon that panics writes
//! `CRASH_DIR/<crash_id>/meta` (the JSON that Ceph's daemons write to
//! `/var/lib/ceph/crash`, read by the mgr's `crash` module); the active mgr
//! posts the reports it finds there to that module and moves each one to
//! `CRASH_DIR/posted/` (the job of Ceph's per-host `ceph-crash` agent).
//!
//! The crash directory is the conf's `crash_dir`, else a `crash` folder
//! beside the daemon's admin socket (so a vstart cluster's daemons and its
//! mgr share `DIR/crash`).

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Folder (inside the crash dir) holding reports already posted.
pub const POSTED: &str = "posted";
/// Bound on the reports posted per scan (a crash loop cannot make one scan
/// run long).
pub const MAX_POST_PER_SCAN: usize = 16;
/// Bound on the backtrace frames kept in a report.
const MAX_FRAMES: usize = 64;

/// The crash dir of a daemon: the conf's `crash_dir` if set, else
/// `crash/` beside its admin socket.
pub fn crash_dir(conf_value: Option<String>, admin_socket: &Path) -> PathBuf {
    conf_value.map(PathBuf::from).unwrap_or_else(|| {
        admin_socket
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("crash")
    })
}

/// UTC time as Ceph's crash reports write it: `2026-12-05T10:00:00.123456Z`.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (the era-based conversion: 400-year cycles of 146097 days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// What a panic leaves behind: its message, where it was raised, the
/// stack.
#[derive(Debug, Clone)]
pub struct Panic {
    pub message: String,
    pub file: String,
    pub line: u32,
    pub thread: String,
    pub backtrace: Vec<String>,
}

/// The report's `meta` document, with Ceph's keys (`crash_id`,
/// `timestamp`, `entity_name`, `process_name`, `backtrace`, `assert_*`,
/// `utsname_*`, `ceph_version`).
pub fn report(entity_name: &str, process_name: &str, p: &Panic, now: SystemTime) -> Value {
    let ts = timestamp(now);
    let uts = uname();
    json!({
        "crash_id": format!("{ts}_{}", uuid::Uuid::new_v4()),
        "timestamp": ts,
        "entity_name": entity_name,
        "process_name": process_name,
        "ceph_version": env!("CARGO_PKG_VERSION"),
        // Ceph's assert text: the crash module's stack signature keeps
        // the first line up to " thread" and the message after the last
        // ": " (so the thread, time and line number do not change it).
        "assert_msg": format!(
            "{}: In function '{}' thread {} time {ts}\n{}: {}: {}\n",
            p.file, p.thread, std::process::id(), p.file, p.line, p.message
        ),
        "assert_condition": p.message,
        "assert_file": p.file,
        "assert_line": p.line,
        "assert_thread_name": p.thread,
        "backtrace": p.backtrace,
        "utsname_hostname": crate::hostname(),
        "utsname_sysname": uts[0],
        "utsname_release": uts[1],
        "utsname_version": uts[2],
        "utsname_machine": uts[3],
    })
}

/// sysname, release, version, machine of the running kernel.
fn uname() -> [String; 4] {
    let read = |f: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{f}"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    [
        read("ostype"),
        read("osrelease"),
        read("version"),
        std::env::consts::ARCH.to_string(),
    ]
}

/// Writes a report into `dir/<crash_id>/meta` (created with its parents);
/// the folder it wrote.
pub fn write_report(dir: &Path, meta: &Value) -> std::io::Result<PathBuf> {
    let id = meta["crash_id"].as_str().unwrap_or("unknown");
    let d = dir.join(id);
    std::fs::create_dir_all(&d)?;
    let tmp = d.join("meta.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(meta)?)?;
    std::fs::rename(tmp, d.join("meta"))?;
    Ok(d)
}

/// Whether the admin socket's `assert` command may crash this daemon
/// (Ceph's `debug_asok_assert_abort`, off by default).
static ASSERT_ALLOWED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A daemon's crash setup, from its conf: the panic hook writing into
/// `crash_dir` (the conf's, else `crash/` beside `admin_socket`) and
/// whether `assert` on the admin socket is allowed.
pub fn init(
    conf: &crate::config::Conf,
    entity: &str,
    process_name: &str,
    admin_socket: &Path,
) -> Result<PathBuf, crate::config::ConfError> {
    let dir = crash_dir(conf.get::<String>(entity, "crash_dir")?, admin_socket);
    let allow = conf.get_or(entity, "debug_asok_assert_abort", false)?;
    ASSERT_ALLOWED.store(allow, std::sync::atomic::Ordering::Relaxed);
    install_panic_hook(entity, process_name, dir.clone());
    Ok(dir)
}

/// The admin socket's `assert`: with `debug_asok_assert_abort` set, panics
/// (writing a crash report) and aborts the process, as a failed assert
/// stops a Ceph daemon; refused otherwise.
pub fn asok_assert() -> Result<serde_json::Value, String> {
    if !ASSERT_ALLOWED.load(std::sync::atomic::Ordering::Relaxed) {
        return Err("assert: debug_asok_assert_abort is false in this daemon's conf".into());
    }
    let _ = std::panic::catch_unwind(|| panic!("assert from the admin socket"));
    std::process::abort()
}

/// Makes every later panic of this process write a report into `dir`
/// before the previous hook (the usual message on stderr) runs. Once per
/// process; later calls do nothing.
pub fn install_panic_hook(entity_name: &str, process_name: &str, dir: PathBuf) {
    static ONCE: Once = Once::new();
    let entity = entity_name.to_string();
    let process = process_name.to_string();
    ONCE.call_once(move || {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            let (file, line) = info
                .location()
                .map(|l| (l.file().to_string(), l.line()))
                .unwrap_or_default();
            let bt = std::backtrace::Backtrace::force_capture().to_string();
            let p = Panic {
                message,
                file,
                line,
                thread: std::thread::current().name().unwrap_or("").to_string(),
                backtrace: frames(&bt),
            };
            let meta = report(&entity, &process, &p, SystemTime::now());
            match write_report(&dir, &meta) {
                Ok(d) => eprintln!("crash report written to {}", d.display()),
                Err(e) => eprintln!("crash report not written to {}: {e}", dir.display()),
            }
            prev(info);
        }));
    });
}

/// The frames of a printed std backtrace in Ceph's form, `(symbol)
/// [file:line]` (the crash module signs the part in parentheses).
fn frames(bt: &str) -> Vec<String> {
    let mut syms: Vec<(String, String)> = Vec::new();
    for l in bt.lines().map(str::trim) {
        if let Some(at) = l.strip_prefix("at ") {
            if let Some(last) = syms.last_mut() {
                last.1 = at.replace(' ', "_");
            }
        } else if let Some((n, sym)) = l.split_once(": ") {
            if n.chars().all(|c| c.is_ascii_digit()) {
                if syms.len() == MAX_FRAMES {
                    break;
                }
                syms.push((sym.replace(' ', ""), "?".into()));
            }
        }
    }
    // The frames of the hook and the panic machinery come first: the
    // report starts at the frame that panicked.
    let machinery = syms
        .iter()
        .rposition(|(sym, _)| sym.contains("panicking::") || sym.contains("rust_begin_unwind"))
        .map_or(0, |i| i + 1);
    syms.into_iter()
        .skip(machinery)
        .map(|(sym, at)| format!("({sym}) [{at}]"))
        .collect()
}

/// Reports in `dir` not posted yet, oldest first: `(folder, meta text)`,
/// at most [`MAX_POST_PER_SCAN`].
pub fn pending(dir: &Path) -> Vec<(PathBuf, String)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n != POSTED) && p.join("meta").is_file())
        .collect();
    found.sort();
    found
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(p.join("meta")).ok().map(|m| (p, m)))
        .take(MAX_POST_PER_SCAN)
        .collect()
}

/// Moves a posted report's folder into `dir/posted/`.
pub fn mark_posted(dir: &Path, report: &Path) -> std::io::Result<()> {
    let posted = dir.join(POSTED);
    std::fs::create_dir_all(&posted)?;
    let name = report.file_name().unwrap_or_default();
    std::fs::rename(report, posted.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_ceph_utc() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        // 2026-12-05 10:00:00.5 UTC, and a leap day.
        let t = UNIX_EPOCH + Duration::from_micros(1_796_464_800_500_000);
        assert_eq!(timestamp(t), "2026-12-05T10:00:00.500000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn report_written_listed_and_moved_once_posted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Panic {
            message: "boom".into(),
            file: "src/x.rs".into(),
            line: 7,
            thread: "main".into(),
            backtrace: frames(
                "   0: std::panicking::begin_panic\n   1: a::b\n             at src/a.rs:1:2\n   2: main\n",
            ),
        };
        assert_eq!(p.backtrace, ["(a::b) [src/a.rs:1:2]", "(main) [?]"]);
        let meta = report("osd.3", "kalmar-osd", &p, SystemTime::now());
        let id = meta["crash_id"].as_str().expect("id").to_string();
        assert!(id.starts_with(meta["timestamp"].as_str().expect("ts")));
        let d = write_report(dir.path(), &meta).expect("write");
        let found = pending(dir.path());
        assert_eq!(found.len(), 1);
        let back: Value = serde_json::from_str(&found[0].1).expect("json");
        assert_eq!(back["entity_name"], "osd.3");
        assert_eq!(back["assert_condition"], "boom");
        let msg = back["assert_msg"].as_str().expect("assert_msg");
        assert!(
            msg.starts_with("src/x.rs: In function 'main' thread "),
            "{msg}"
        );
        assert!(msg.ends_with("src/x.rs: 7: boom\n"), "{msg}");
        mark_posted(dir.path(), &d).expect("move");
        assert!(pending(dir.path()).is_empty());
        assert!(dir.path().join(POSTED).join(&id).join("meta").is_file());
    }
}
