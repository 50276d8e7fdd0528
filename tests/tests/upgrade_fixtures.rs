//! What earlier releases wrote stays readable. Each
//! `tests/fixtures/release-VERSION.tar.gz` (made by
//! `tests/fixtures/make-release-fixture.sh` with that release) holds a mon
//! store, an OSD's store and the objects of pool `fixture`; this release's
//! mon and OSD start on them (moved to another folder and another port),
//! the OSD comes up, and every object reads back as saved.
#![deny(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kalmar_cli::procs::find_bin;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its PID.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin(name: &str) -> Result<PathBuf> {
    find_bin(name).with_context(|| format!("{name} not built"))
}

fn spawn(name: &str, args: &[String]) -> Result<Daemon> {
    Ok(Daemon(
        Command::new(bin(name)?)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    ))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn kalmar(mon: &str, args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new(bin("kalmar")?)
        .args(["-m", mon, "--timeout", "10"])
        .args(args)
        .output()?)
}

fn check_release(archive: &Path) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let st = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-xzf")
        .arg(archive)
        .status()?;
    if !st.success() {
        bail!("cannot unpack {}", archive.display());
    }
    let mon = format!("127.0.0.1:{}", free_port()?);
    let p = |s: &str| dir.join(s).display().to_string();
    // The saved releases ran with auth off (their default then) and hold
    // no keyrings: the upgraded daemons keep it off, written out, as
    // docs/auth.md tells such a cluster to before upgrading.
    std::fs::write(
        dir.join("kalmar.conf"),
        "[global]\nauth_cluster_required = \"none\"\nauth_service_required = \"none\"\nauth_client_required = \"none\"\n",
    )?;
    let _mon = spawn(
        "kalmar-mon",
        &[
            "run".into(),
            "--conf".into(),
            p("kalmar.conf"),
            "--data".into(),
            p("mon"),
            "--bind".into(),
            mon.clone(),
            "--admin-socket".into(),
            p("mon.asok"),
            "--log-file".into(),
            p("mon.log"),
        ],
    )?;
    let _osd = spawn(
        "kalmar-osd",
        &[
            "run".into(),
            "--conf".into(),
            p("kalmar.conf"),
            "--id".into(),
            "0".into(),
            "--device".into(),
            p("osd.0/device"),
            "--mon".into(),
            mon.clone(),
            "--admin-socket".into(),
            p("osd.asok"),
            "--log-file".into(),
            p("osd.log"),
        ],
    )?;
    let logs = || {
        let l = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        format!("mon log:\n{}\nosd log:\n{}", l("mon.log"), l("osd.log"))
    };
    let made = std::fs::read_to_string(dir.join("MADE")).unwrap_or_default();
    let t0 = Instant::now();
    for entry in std::fs::read_dir(dir.join("objects"))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        let want = std::fs::read(entry.path())?;
        let got = dir.join(format!("got-{name}"));
        loop {
            let out = kalmar(
                &mon,
                &[
                    "rados",
                    "-p",
                    "fixture",
                    "get",
                    &name,
                    &got.display().to_string(),
                ],
            )?;
            if out.status.success() {
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!(
                    "{} ({}): {name} unreadable: {}\n{}",
                    archive.display(),
                    made.trim(),
                    String::from_utf8_lossy(&out.stderr),
                    logs()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(
            std::fs::read(&got)? == want,
            "{} ({}): {name} differs",
            archive.display(),
            made.trim()
        );
    }
    Ok(())
}

#[test]
fn earlier_releases_stores_are_read() -> Result<()> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut archives: Vec<PathBuf> = std::fs::read_dir(&fixtures)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy().starts_with("release-")
                    && n.to_string_lossy().ends_with(".tar.gz")
            })
        })
        .collect();
    archives.sort();
    assert!(
        !archives.is_empty(),
        "no release fixtures in {}",
        fixtures.display()
    );
    for a in &archives {
        check_release(a)?;
        eprintln!("{}: read", a.display());
    }
    Ok(())
}
