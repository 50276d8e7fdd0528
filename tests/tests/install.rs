//! `scripts/install.sh` and `scripts/uninstall.sh` into a temporary root
//! (`--destdir`), the manual pages they install, and the systemd units
//! they install through `systemd-analyze verify`.
#![deny(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

const BINARIES: [&str; 6] = [
    "kalmar",
    "kalmar-mon",
    "kalmar-mgr",
    "kalmar-osd",
    "kalmar-nbd",
    "kalmar-objectstore-tool",
];

/// Instances verified: one of each template, and every target.
const UNITS: [&str; 10] = [
    "kalmar-mon@a.service",
    "kalmar-mgr@x.service",
    "kalmar-osd@0.service",
    "kalmar-nbd@rbd-vol1.service",
    "kalmar-exporter.service",
    "kalmar.target",
    "kalmar-mon.target",
    "kalmar-mgr.target",
    "kalmar-osd.target",
    "kalmar-nbd.target",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn bin_dir() -> Result<PathBuf> {
    let osd = kalmar_cli::procs::find_bin("kalmar-osd")
        .context("kalmar-osd not found: build the workspace or set KALMAR_BIN_DIR")?;
    let dir = osd
        .parent()
        .context("kalmar-osd has no folder")?
        .to_path_buf();
    for b in BINARIES {
        if !dir.join(b).is_file() {
            bail!(
                "{} missing beside kalmar-osd: cargo build --release --workspace --bins",
                b
            );
        }
    }
    Ok(dir)
}

fn run(script: &str, args: &[&str]) -> Result<Output> {
    let out = Command::new(repo().join("scripts").join(script))
        .args(args)
        .output()
        .with_context(|| format!("running {script}"))?;
    Ok(out)
}

fn ok(script: &str, args: &[&str]) -> Result<String> {
    let out = run(script, args)?;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        bail!("{script} {args:?} failed: {stderr}");
    }
    Ok(stderr)
}

fn install(root: &Path, bins: &Path) -> Result<String> {
    let root = root.to_str().context("utf-8 temp path")?;
    let bins = bins.to_str().context("utf-8 bin path")?;
    ok(
        "install.sh",
        &[
            "--no-build",
            "--bin-dir",
            bins,
            "--prefix",
            "/usr",
            "--destdir",
            root,
        ],
    )
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[test]
fn install_upgrade_and_uninstall_into_a_temporary_root() -> Result<()> {
    let bins = bin_dir()?;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("root");
    let r = |p: &str| root.join(p.trim_start_matches('/'));
    install(&root, &bins)?;

    for b in BINARIES {
        assert!(
            is_executable(&r(&format!("/usr/bin/{b}"))),
            "{b} not installed"
        );
    }
    // kalmar-mgr finds PREFIX/share/kalmar/mgr-modules beside PREFIX/bin.
    for m in ["hello", "prometheus", "status"] {
        let f = r(&format!("/usr/share/kalmar/mgr-modules/{m}/module.py"));
        assert!(f.is_file(), "{} missing", f.display());
    }
    let conf = kalmar_common::config::Conf::load(&r("/etc/kalmar/kalmar.conf"))
        .context("the default conf is valid TOML")?;
    assert_eq!(
        conf.get::<String>("osd.0", "crash_dir")?.as_deref(),
        Some("/var/lib/kalmar/crash")
    );
    assert!(
        conf.get::<String>("osd.0", "mon_host")?.is_none(),
        "mon_host is commented out"
    );
    assert!(r("/etc/default/kalmar").is_file());
    let rotate = std::fs::read_to_string(r("/etc/logrotate.d/kalmar"))?;
    assert!(rotate.contains("/var/log/kalmar/*.log") && rotate.contains("copytruncate"));
    for d in ["mon", "mgr", "osd", "crash", "objectstore"] {
        assert!(
            r(&format!("/var/lib/kalmar/{d}")).is_dir(),
            "/var/lib/kalmar/{d}"
        );
    }
    assert!(r("/var/log/kalmar").is_dir());
    let osd_unit = std::fs::read_to_string(r("/usr/lib/systemd/system/kalmar-osd@.service"))?;
    assert!(
        osd_unit.contains("ExecStart=/usr/bin/kalmar-osd run --id %i"),
        "{osd_unit}"
    );
    assert!(!osd_unit.contains("@BINDIR@"), "{osd_unit}");
    assert!(r("/usr/share/doc/kalmar/README.md").is_file());
    for b in BINARIES {
        assert!(
            r(&format!("/usr/share/man/man8/{b}.8")).is_file(),
            "{b}.8 not installed"
        );
    }

    // An admin's edits and the cluster's data survive a reinstall.
    std::fs::write(
        r("/etc/kalmar/kalmar.conf"),
        "[global]\nmon_host = \"10.0.0.1:6789\"\n",
    )?;
    std::fs::create_dir_all(r("/var/lib/kalmar/mon/kalmar-a"))?;
    std::fs::write(r("/var/lib/kalmar/mon/kalmar-a/store"), b"mon data")?;
    std::fs::write(r("/var/log/kalmar/mon.a.log"), b"log")?;
    let again = install(&root, &bins)?;
    assert!(again.contains("kept /etc/kalmar/kalmar.conf"), "{again}");
    assert!(std::fs::read_to_string(r("/etc/kalmar/kalmar.conf"))?.contains("10.0.0.1"));
    assert!(r("/etc/kalmar/kalmar.conf.dist").is_file());

    let root_s = root.to_str().context("utf-8")?;
    ok("uninstall.sh", &["--prefix", "/usr", "--destdir", root_s])?;
    for b in BINARIES {
        assert!(!r(&format!("/usr/bin/{b}")).exists(), "{b} left behind");
    }
    assert!(!r("/usr/share/kalmar").exists(), "share/kalmar left behind");
    for b in BINARIES {
        assert!(
            !r(&format!("/usr/share/man/man8/{b}.8")).exists(),
            "{b}.8 left behind"
        );
    }
    assert!(!r("/usr/lib/systemd/system/kalmar-osd@.service").exists());
    assert!(!r("/etc/logrotate.d/kalmar").exists());
    // Data, logs and the conf stay unless asked.
    assert_eq!(
        std::fs::read(r("/var/lib/kalmar/mon/kalmar-a/store"))?,
        b"mon data"
    );
    assert!(r("/var/log/kalmar/mon.a.log").is_file());
    assert!(r("/etc/kalmar/kalmar.conf").is_file());
    // Nothing installed any more: a second uninstall says so.
    let second = run("uninstall.sh", &["--prefix", "/usr", "--destdir", root_s])?;
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("nothing installed"));

    install(&root, &bins)?;
    ok(
        "uninstall.sh",
        &["--prefix", "/usr", "--destdir", root_s, "--purge"],
    )?;
    for gone in [
        "/var/lib/kalmar",
        "/var/log/kalmar",
        "/etc/kalmar",
        "/etc/default/kalmar",
        "/usr/bin/kalmar",
    ] {
        assert!(!r(gone).exists(), "{gone} survived --purge");
    }
    Ok(())
}

/// What each binary's page must name besides the binary itself: its
/// subcommands (with their full names) and options.
const MAN_WORDS: [(&str, &[&str]); 6] = [
    (
        "kalmar",
        &[
            "--conf",
            "--keyring",
            "--format",
            "osd pool create",
            "osd ok-to-stop",
            "kalmar rados",
            "kalmar vstart",
            "--osds",
            "kalmar exporter",
        ],
    ),
    (
        "kalmar-mon",
        &[
            "kalmar-mon mkfs",
            "kalmar-mon run",
            "--initial-members",
            "--data",
            "--bind",
        ],
    ),
    (
        "kalmar-mgr",
        &["kalmar-mgr run", "--modules-dir", "--name", "--bind"],
    ),
    (
        "kalmar-osd",
        &[
            "kalmar-osd mkfs",
            "kalmar-osd run",
            "kalmar-osd create",
            "kalmar-osd list-devices",
            "--device",
            "--device-class",
        ],
    ),
    ("kalmar-nbd", &["--image", "--store", "--socket", "--mkfs"]),
    (
        "kalmar-objectstore-tool",
        &[
            "kalmar-objectstore-tool fsck",
            "kalmar-objectstore-tool meta list",
            "kalmar-objectstore-tool dump-journal",
            "--device",
            "--deep",
        ],
    ),
];

/// A page as a reader sees it: rendered by `man -l` when man is here,
/// else the roff with its escapes and font changes taken out.
fn page_text(page: &Path) -> Result<String> {
    let man = ["/usr/bin/man", "/bin/man"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file());
    if let Some(man) = man {
        let out = Command::new(man)
            .arg("-l")
            .arg(page)
            .env("MANWIDTH", "250")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .env("MAN_KEEP_FORMATTING", "")
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "man -l {}: {stderr}", page.display());
        // groff's warnings about the page itself (not man-db's notes).
        assert!(
            !stderr.contains("warning"),
            "man -l {}: {stderr}",
            page.display()
        );
        // Overstrikes (bold, underline) out.
        let mut text = String::new();
        for c in String::from_utf8_lossy(&out.stdout).chars() {
            if c == '\u{8}' {
                text.pop();
            } else {
                text.push(c);
            }
        }
        // Hyphen-like characters groff may print for `\-`.
        return Ok(text.replace(['\u{2010}', '\u{2212}'], "-"));
    }
    eprintln!("man is not installed: checking the roff text");
    let roff = std::fs::read_to_string(page)?;
    Ok(roff
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\&", ""))
}

/// Every binary's page is installed under share/man/man8, renders, and
/// names its command, a description, its subcommands and options, and
/// examples.
#[test]
fn installed_manual_pages_name_their_commands_and_options() -> Result<()> {
    let bins = bin_dir()?;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("root");
    install(&root, &bins)?;
    for (b, words) in MAN_WORDS {
        let page = root.join(format!("usr/share/man/man8/{b}.8"));
        let roff = std::fs::read_to_string(&page).with_context(|| format!("{b}.8"))?;
        assert!(
            roff.contains(&format!(".TH {} 8 ", b.to_uppercase())),
            "{b}.8 has no section-8 title"
        );
        let text = page_text(&page)?;
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat.contains(&format!("NAME {b} - ")),
            "{b}.8 does not name {b}:\n{text}"
        );
        for section in ["SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXAMPLES"] {
            assert!(flat.contains(section), "{b}.8 lacks {section}:\n{text}");
        }
        for w in words {
            assert!(flat.contains(w), "{b}.8 does not mention {w:?}:\n{text}");
        }
        // --help says the same: a description and examples.
        let help = Command::new(bins.join(b)).arg("--help").output()?;
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(help.contains("Examples:"), "{b} --help:\n{help}");
    }
    Ok(())
}

/// `systemd-analyze`, installed with apt when missing (as root), or None
/// when it cannot be had here.
fn systemd_analyze() -> Option<PathBuf> {
    let find = || {
        ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    };
    if let Some(p) = find() {
        return Some(p);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let apt = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", "systemd"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    if !apt.is_ok_and(|s| s.success()) {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "systemd"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    find()
}

#[test]
fn installed_units_pass_systemd_analyze_verify() -> Result<()> {
    let Some(analyze) = systemd_analyze() else {
        eprintln!(
            "SKIPPED: systemd-analyze is not installed and cannot be (not root, or apt failed)"
        );
        return Ok(());
    };
    let bins = bin_dir()?;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("root");
    install(&root, &bins)?;
    // The units name /usr/bin/...; verify checks that ExecStart is
    // executable, so point them at the staged copies (nothing else changes).
    let staged_bin = format!("{}/usr/bin/", root.display());
    let units = tmp.path().join("units");
    std::fs::create_dir_all(&units)?;
    let installed = root.join("usr/lib/systemd/system");
    let mut names = Vec::new();
    for e in std::fs::read_dir(&installed)? {
        let e = e?;
        let text = std::fs::read_to_string(e.path())?;
        assert!(
            !text.contains("@BINDIR@") && !text.contains("@DOCDIR@"),
            "{:?}",
            e.file_name()
        );
        std::fs::write(
            units.join(e.file_name()),
            text.replace("/usr/bin/", &staged_bin),
        )?;
        names.push(e.file_name().to_string_lossy().to_string());
    }
    for u in [
        "kalmar-mon@.service",
        "kalmar-mgr@.service",
        "kalmar-osd@.service",
        "kalmar-nbd@.service",
    ] {
        assert!(names.iter().any(|n| n == u), "{u} not installed");
    }
    // A trailing ':' keeps systemd's own unit folders (sysinit.target, ...).
    let unit_path = format!("{}:", units.display());
    let man_path = root.join("usr/share/man");
    for unit in UNITS {
        let out = Command::new(&analyze)
            .arg("verify")
            .arg(unit)
            .env("SYSTEMD_UNIT_PATH", &unit_path)
            // verify runs `man` for each `Documentation=man:...`: the
            // staged pages must answer.
            .env("MANPATH", &man_path)
            .env("SYSTEMD_LOG_COLOR", "0")
            .current_dir(tmp.path())
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("Failed to initialize manager")
            || stderr.contains("Operation not permitted")
        {
            eprintln!("SKIPPED: systemd-analyze verify cannot run in this container: {stderr}");
            return Ok(());
        }
        // verify exits 0 on unknown keys and bad values, with a warning:
        // any output is a failure.
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{unit}: {stderr}"
        );
    }
    // The checker checks: a broken unit is reported.
    let broken = units.join("kalmar-osd@.service");
    let text = std::fs::read_to_string(&broken)?;
    std::fs::write(
        &broken,
        text.replace("Restart=on-failure", "Restart=on-failur"),
    )?;
    let out = Command::new(&analyze)
        .args(["verify", "kalmar-osd@0.service"])
        .env("SYSTEMD_UNIT_PATH", &unit_path)
        .env("MANPATH", &man_path)
        .current_dir(tmp.path())
        .output()?;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("on-failur"),
        "a broken Restart= went unnoticed"
    );
    Ok(())
}

/// The installed kalmar-mgr, started with no module flag, conf option or
/// environment, loads the plugins installed beside its binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_mgr_finds_its_plugins_without_flags() -> Result<()> {
    let bins = bin_dir()?;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("root");
    install(&root, &bins)?;
    let cluster = kalmar_tests::Cluster::start(kalmar_tests::ClusterOpts {
        osds: 0,
        ..Default::default()
    })
    .await?;
    let log = tmp.path().join("mgr.log");
    // Auth is on (the default): the mgr's key, beside a conf of its own
    // that names nothing but the mon (no module path).
    let keyring = tmp.path().join("kalmar.mgr.installed.keyring");
    cluster.kalmar_ok(&[
        "auth",
        "get-or-create",
        "mgr.installed",
        "mon",
        "allow profile mgr",
        "osd",
        "allow *",
        "mgr",
        "allow *",
        "-o",
        keyring.to_str().context("utf-8")?,
    ])?;
    let conf = tmp.path().join("kalmar.conf");
    std::fs::write(&conf, format!("[global]\nmon_host = \"{}\"\n", cluster.mon))?;
    let mut mgr = Command::new(root.join("usr/bin/kalmar-mgr"))
        .args([
            "run",
            "--name",
            "installed",
            "--mon",
            &cluster.mon.to_string(),
        ])
        .arg("--conf")
        .arg(&conf)
        .arg("--admin-socket")
        .arg(tmp.path().join("mgr.asok"))
        .arg("--log-file")
        .arg(&log)
        .env_remove("KALMAR_MGR_MODULE_PATH")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let want = root.join("usr/share/kalmar/mgr-modules");
    let found = kalmar_tests::wait_for(
        "the mgr's module folders",
        std::time::Duration::from_secs(30),
        || {
            let log = log.clone();
            async move {
                let text = std::fs::read_to_string(&log).ok()?;
                text.lines()
                    .find(|l| l.contains("dirs="))
                    .map(str::to_string)
            }
        },
    )
    .await;
    // SAFETY: signalling our own child by its PID.
    unsafe { libc::kill(mgr.id() as i32, libc::SIGTERM) };
    let _ = mgr.wait();
    let line = found?;
    assert!(
        line.contains(&format!("dirs=[\"{}\"]", want.display())),
        "{line}"
    );
    Ok(())
}
