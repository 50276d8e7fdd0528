//! Debian packages a test needs (Ceph's modules, Prometheus, Ceph's
//! dashboards and alert rules), installed with apt at test time when
//! missing; never copied into the repository.

use std::process::Command;
use std::time::Duration;

/// Bound on `apt-get update` + `install`.
const APT_TIMEOUT: Duration = Duration::from_secs(600);

pub fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("ok installed"))
}

/// Runs a command with a time bound; true if it exited 0.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> bool {
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    let start = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return st.success(),
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(200)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Installs the packages if missing. `Err` names why they are unavailable.
pub fn ensure_packages(packages: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let sudo = if unsafe { libc::geteuid() } == 0 {
        vec![]
    } else {
        vec!["sudo", "-n"]
    };
    let apt = |args: &[&str]| {
        let mut all: Vec<&str> = sudo.clone();
        all.push("apt-get");
        all.extend_from_slice(args);
        let mut c = Command::new(all[0]);
        c.args(&all[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::null());
        c
    };
    run_bounded(&mut apt(&["update", "-qq"]), APT_TIMEOUT);
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(missing.iter().copied());
    if !run_bounded(&mut apt(&args), APT_TIMEOUT) {
        return Err(format!("apt-get install {} failed", missing.join(" ")));
    }
    match packages.iter().find(|p| !installed(p)) {
        Some(p) => Err(format!("{p} is still not installed after apt-get")),
        None => Ok(()),
    }
}
