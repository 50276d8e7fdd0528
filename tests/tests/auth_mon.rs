//! Authentication against a real mon process with `auth_cluster_required
//! = cephx`: the keys mkfs made, the `auth` commands, and refusals of a
//! client with no key, a wrong key, an unknown name, one posing as an
//! OSD, and one whose caps do not allow the command. The mon keeps
//! serving the right keys throughout.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use kalmar_cli::procs::{find_bin, run_bounded};

const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// A mon process, stopped when dropped.
struct Mon {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Mon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn bin(name: &str) -> PathBuf {
    find_bin(name).unwrap_or_else(|| panic!("{name} not built"))
}

impl Mon {
    fn start() -> Mon {
        let dir = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let conf = dir.path().join("kalmar.conf");
        std::fs::write(
            &conf,
            format!(
                "[global]\nmon_host = \"127.0.0.1:{port}\"\nauth_cluster_required = \"cephx\"\nauth_service_required = \"cephx\"\n"
            ),
        )
        .expect("conf");
        let data = dir.path().join("mon");
        let out = run_bounded(
            &bin("kalmar-mon"),
            &[
                "mkfs".into(),
                "--data".into(),
                data.display().to_string(),
                "--conf".into(),
                conf.display().to_string(),
            ],
            CLI_TIMEOUT,
        )
        .expect("mkfs");
        assert!(
            out.status.success(),
            "mkfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = std::fs::File::create(dir.path().join("mon.log")).expect("log");
        let child = Command::new(bin("kalmar-mon"))
            .args(["run", "--data"])
            .arg(&data)
            .arg("--conf")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run the mon");
        let mon = Mon { child, dir };
        // Up when the admin can read its status.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !mon.cli(&["status"]).status.success() {
            assert!(std::time::Instant::now() < deadline, "mon did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
        mon
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cli(&self, args: &[&str]) -> Output {
        let mut a = vec![
            "--conf".to_string(),
            self.path("kalmar.conf").display().to_string(),
            "--connect-timeout".into(),
            "5".into(),
        ];
        a.extend(args.iter().map(|s| s.to_string()));
        run_bounded(&bin("kalmar"), &a, CLI_TIMEOUT).expect("run kalmar")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "kalmar {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `args` expecting exit code `code` and `want` in stderr.
    fn fails(&self, args: &[&str], code: i32, want: &str) {
        let out = self.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "kalmar {args:?}: {err}");
        assert!(
            err.contains(want),
            "kalmar {args:?}: '{err}' lacks '{want}'"
        );
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

#[test]
fn cephx_mon_admits_keys_and_enforces_caps() {
    let mon = Mon::start();
    // mkfs wrote the admin keyring next to the conf, owner-only.
    let admin = mon.path("kalmar.client.admin.keyring");
    assert_eq!(mode(&admin), 0o600);
    assert_eq!(mode(&mon.path("mon/keyring")), 0o600);

    // A reader's key, written with -o (0600).
    let ro = mon.path("ro.keyring");
    let ro_s = ro.display().to_string();
    mon.ok(&[
        "auth",
        "get-or-create",
        "client.ro",
        "mon",
        "allow r",
        "osd",
        "allow r pool=a",
        "-o",
        &ro_s,
    ]);
    assert_eq!(mode(&ro), 0o600);
    let ring = kalmar_auth::Keyring::read_file(&ro).expect("keyring");
    let key = ring.get("client.ro").expect("entry").key.to_printable();
    assert_eq!(mon.ok(&["auth", "print-key", "client.ro"]).trim(), key);
    let ls = mon.ok(&["auth", "ls", "-f", "json"]);
    let v: serde_json::Value = serde_json::from_str(&ls).expect("json");
    let names: Vec<&str> = v["auth_dump"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["entity"].as_str())
        .collect();
    assert_eq!(names, vec!["client.admin", "client.ro", "mon."]);

    // The reader may read but not change the cluster, nor read keys.
    mon.ok(&["-n", "client.ro", "-k", &ro_s, "status"]);
    mon.fails(
        &[
            "-n",
            "client.ro",
            "-k",
            &ro_s,
            "osd",
            "pool",
            "create",
            "p",
            "8",
        ],
        13,
        "access denied",
    );
    mon.fails(
        &[
            "-n",
            "client.ro",
            "-k",
            &ro_s,
            "auth",
            "get",
            "client.admin",
        ],
        13,
        "access denied",
    );

    // No key, a wrong key, an unknown name, a pretend OSD: refused.
    mon.fails(
        &["-n", "client.nokey", "status"],
        1,
        "authentication required",
    );
    let wrong = mon.path("wrong.keyring");
    std::fs::write(
        &wrong,
        "[client.ro]\n\tkey = AQBGsNplAAAAABAAyXuVR0aaSeBu0vHq8QbNNg==\n[osd.0]\n\tkey = AQBGsNplAAAAABAAyXuVR0aaSeBu0vHq8QbNNg==\n[client.ghost]\n\tkey = AQBGsNplAAAAABAAyXuVR0aaSeBu0vHq8QbNNg==\n",
    )
    .expect("write");
    let wrong_s = wrong.display().to_string();
    mon.fails(
        &["-n", "client.ro", "-k", &wrong_s, "status"],
        1,
        "wrong key",
    );
    mon.fails(
        &["-n", "client.ghost", "-k", &wrong_s, "status"],
        1,
        "unknown entity",
    );
    mon.fails(
        &["-n", "osd.0", "-k", &wrong_s, "status"],
        1,
        "unknown entity",
    );

    // Changing caps takes effect on the next session; removal locks out.
    mon.ok(&["auth", "caps", "client.ro", "mon", "allow rw"]);
    mon.ok(&[
        "-n",
        "client.ro",
        "-k",
        &ro_s,
        "osd",
        "pool",
        "create",
        "p",
        "8",
    ]);
    mon.ok(&["auth", "rm", "client.ro"]);
    mon.fails(
        &["-n", "client.ro", "-k", &ro_s, "status"],
        1,
        "unknown entity",
    );
    mon.fails(&["auth", "get", "client.ro"], 2, "failed to find client.ro");
    // The admin still gets in after all the refusals.
    mon.ok(&["status"]);
}
