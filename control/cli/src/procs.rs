//! Starting and stopping daemons by PID, for `vstart` / `vstop` and the
//! test harness: find the binaries, spawn detached with logs, pid files,
//! liveness checks that guard against PID reuse, bounded stops.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the Kalmar binaries are: `$KALMAR_BIN_DIR`, then the directory
/// of the running executable and its parent (test binaries live in
/// `target/release/deps/`), then `$PATH`.
pub fn find_bin(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("KALMAR_BIN_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent() {
            dirs.push(d.to_path_buf());
            if let Some(p) = d.parent() {
                dirs.push(p.to_path_buf());
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Whether `pid` is a live process whose command line mentions `name`
/// (a reused PID of another program does not count).
pub fn pid_alive(pid: i32, name: &str) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(c) => {
            let is_zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    s.rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
                })
                .unwrap_or(false);
            !is_zombie && String::from_utf8_lossy(&c).contains(name)
        }
        Err(_) => false,
    }
}

pub fn read_pid(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Spawns `bin args` detached (own session, stdin closed), appending its
/// stdout and stderr to `log`, and records its PID in `pid_file`.
pub fn spawn_daemon(bin: &Path, args: &[String], log: &Path, pid_file: &Path) -> io::Result<i32> {
    let out: File = OpenOptions::new().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(bin);
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from the
    // caller's terminal and process group so it outlives the CLI.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = child.id() as i32;
    std::fs::write(pid_file, format!("{pid}\n"))?;
    // The child is reaped by init once we exit; dropping the handle does
    // not kill it.
    std::mem::forget(child);
    Ok(pid)
}

/// Runs a command to completion within `timeout`, returning its output.
pub fn run_bounded(
    bin: &Path,
    args: &[String],
    timeout: Duration,
) -> io::Result<std::process::Output> {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let start = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            return child.wait_with_output();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} did not finish within {} s",
                    bin.display(),
                    timeout.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `sig` to `pid` if it is still the process we started.
pub fn signal(pid: i32, name: &str, sig: i32) -> bool {
    if !pid_alive(pid, name) {
        return false;
    }
    // SAFETY: plain kill(2) on a PID we verified belongs to our daemon.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Stops a daemon: SIGTERM, then SIGKILL after `grace`. Returns whether it
/// was running.
pub fn stop(pid: i32, name: &str, grace: Duration) -> bool {
    if !signal(pid, name, libc::SIGTERM) {
        return false;
    }
    let start = Instant::now();
    while pid_alive(pid, name) {
        if start.elapsed() > grace {
            signal(pid, name, libc::SIGKILL);
            let kill_start = Instant::now();
            while pid_alive(pid, name) && kill_start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Parses sizes like `10G`, `512M`, `4096`, `4K` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        None => (s, 1u64),
        Some((i, _)) => {
            let unit = s[i..].to_ascii_uppercase();
            let m = match unit.trim_end_matches("IB").trim_end_matches('B') {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => return Err(format!("unknown size unit in '{s}' (use K, M, G or T)")),
            };
            (&s[..i], m)
        }
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("x").is_err());
        assert!(parse_size("4Q").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn own_process_is_alive_and_others_are_not() {
        let me = std::process::id() as i32;
        assert!(pid_alive(me, ""));
        assert!(!pid_alive(me, "definitely-not-in-my-cmdline-xyz"));
        assert!(!pid_alive(0, ""));
        assert!(!pid_alive(-5, ""));
    }
}
