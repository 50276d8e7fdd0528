//! `kalmar-osd list-devices` and `kalmar-osd create` on loop devices:
//! devices in use or holding data are refused unless forced, a free one
//! becomes an OSD in one command (linked where the systemd unit looks),
//! lands under its CRUSH host bucket (`crush_location`'s `host=`), boots,
//! and a replaced disk keeps the OSD's id.
//!
//! Needs root and loop devices (`losetup`); skips with a message without
//! them. Every loop device is detached by name when the test ends.
#![deny(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kalmar_cli::procs::find_bin;
use kalmar_tests::{wait_for, Cluster, ClusterOpts};
use serde_json::Value;

/// A loop device over a file, detached (by its name) when dropped.
struct Loop {
    dev: PathBuf,
}

impl Loop {
    fn new(file: &Path, size_bytes: u64) -> Result<Option<Loop>> {
        std::fs::File::create(file)?.set_len(size_bytes)?;
        let out = Command::new("losetup")
            .args(["-f", "--show", "--direct-io=on"])
            .arg(file)
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let dev = String::from_utf8(o.stdout)?.trim().to_string();
                Ok(Some(Loop { dev: dev.into() }))
            }
            Ok(o) => {
                eprintln!(
                    "SKIPPED: losetup failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                Ok(None)
            }
            Err(e) => {
                eprintln!("SKIPPED: no losetup: {e}");
                Ok(None)
            }
        }
    }

    fn path(&self) -> &str {
        self.dev.to_str().unwrap_or_default()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg(&self.dev)
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// An OSD run by this test, stopped (SIGTERM, by PID) when dropped.
struct Osd(Child);

impl Drop for Osd {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its PID.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        for _ in 0..100 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn osd_bin() -> Result<PathBuf> {
    find_bin("kalmar-osd").context("kalmar-osd not built")
}

fn kalmar_osd(args: &[&str]) -> Result<Output> {
    Ok(Command::new(osd_bin()?).args(args).output()?)
}

fn listed(dev: &str) -> Result<Value> {
    let out = kalmar_osd(&["list-devices", "--format", "json"])?;
    if !out.status.success() {
        bail!("list-devices: {}", String::from_utf8_lossy(&out.stderr));
    }
    let all: Value = serde_json::from_slice(&out.stdout)?;
    all.as_array()
        .and_then(|a| a.iter().find(|d| d["path"] == dev).cloned())
        .with_context(|| format!("{dev} not listed: {all}"))
}

fn reasons(d: &Value) -> String {
    d["reject_reasons"].to_string()
}

/// The conf of `cluster` with `crush_location` added to `[global]`, and
/// the admin keyring next to it.
fn conf_with_location(cluster: &Cluster, dir: &Path, location: &str) -> Result<PathBuf> {
    let text = std::fs::read_to_string(&cluster.conf)?;
    let mut t: toml::Table = text.parse()?;
    t.entry("global")
        .or_insert_with(|| toml::Value::Table(Default::default()))
        .as_table_mut()
        .context("[global] is a table")?
        .insert("crush_location".into(), location.into());
    let path = dir.join("kalmar.conf");
    std::fs::write(&path, toml::to_string(&t)?)?;
    // The admin's key beside it, as on a host the admin keyring was
    // copied to: `create` registers the OSD as client.admin.
    std::fs::copy(
        cluster.dir().join("kalmar.client.admin.keyring"),
        dir.join("kalmar.client.admin.keyring"),
    )?;
    Ok(path)
}

fn start_osd(dir: &Path, link: &Path, conf: &Path) -> Result<Osd> {
    let child = Command::new(osd_bin()?)
        .args(["run", "--id", "0", "--device"])
        .arg(link)
        .arg("--conf")
        .arg(conf)
        .arg("--admin-socket")
        .arg(dir.join("osd.0.asok"))
        .arg("--log-file")
        .arg(dir.join("osd.0.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Osd(child))
}

async fn wait_up(cluster: &Cluster) -> Result<()> {
    wait_for("osd.0 up", Duration::from_secs(60), || async {
        let up = cluster.osds_up().await.ok()?;
        up.iter().any(|(id, up)| *id == 0 && *up).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_listed_checked_and_made_osds() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: loop devices need root");
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let Some(lo) = Loop::new(&tmp.path().join("disk.img"), 1 << 30)? else {
        return Ok(());
    };
    let dev = lo.path().to_string();

    // A blank device: listed, with its size and backing file, free.
    let d = listed(&dev)?;
    assert_eq!(d["size_bytes"], 1u64 << 30, "{d}");
    assert!(
        d["model"].as_str().is_some_and(|m| m.contains("disk.img")),
        "{d}"
    );
    assert!(
        ["hdd", "ssd"].contains(&d["device_class"].as_str().unwrap_or("")),
        "{d}"
    );
    assert_eq!(d["reject_reasons"], serde_json::json!([]), "{d}");
    let table = kalmar_osd(&["list-devices"])?;
    assert!(String::from_utf8_lossy(&table.stdout).contains(&dev));

    // A filesystem: listed as such, and create refuses it (before asking
    // any mon: the address below has nobody).
    let mkfs = Command::new("mkfs.ext4").args(["-q", "-F", &dev]).status();
    if mkfs.is_ok_and(|s| s.success()) {
        let d = listed(&dev)?;
        assert!(reasons(&d).contains("ext4"), "{d}");
        let out = kalmar_osd(&[
            "create",
            "--device",
            &dev,
            "--mon",
            "127.0.0.1:9",
            "--no-start",
        ])?;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("refusing") && err.contains("ext4") && err.contains("--force"),
            "{err}"
        );
        // Mounted: refused for that too.
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir_all(&mnt)?;
        if Command::new("mount")
            .arg(&dev)
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success())
        {
            let d = listed(&dev)?;
            let r = reasons(&d);
            let _ = Command::new("umount").arg(&mnt).status();
            assert!(r.contains("mounted at"), "{d}");
            eprintln!("mounted: refused ({r})");
        } else {
            eprintln!("mount is not permitted here: the mounted case is not checked");
        }
    }
    // Wipe the signature so the device is free again.
    let zero = vec![0u8; 1 << 20];
    std::fs::write(&dev, &zero)?;
    assert_eq!(listed(&dev)?["reject_reasons"], serde_json::json!([]));

    // A cluster with no OSD; create one on the device under a host named
    // by crush_location.
    let cluster = Cluster::start(ClusterOpts {
        osds: 0,
        ..Default::default()
    })
    .await?;
    let conf = conf_with_location(&cluster, tmp.path(), "root=default host=rack1-node7")?;
    let conf_s = conf.to_str().context("utf-8")?;
    let data_root = tmp.path().join("osd");
    let root_s = data_root.to_str().context("utf-8")?;
    let out = kalmar_osd(&[
        "create",
        "--device",
        &dev,
        "--conf",
        conf_s,
        "--data-root",
        root_s,
        "--no-start",
    ])?;
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("created osd.0") && said.contains("host rack1-node7"),
        "{said}"
    );
    let link = data_root.join("kalmar-0/block");
    assert_eq!(std::fs::canonicalize(&link)?, std::fs::canonicalize(&dev)?);
    assert_eq!(
        std::fs::read_to_string(data_root.join("kalmar-0/whoami"))?.trim(),
        "0"
    );

    // Now it holds a Kalmar store: listed so, refused without --force.
    let d = listed(&dev)?;
    assert_eq!(d["kalmar_label"], true, "{d}");
    let again = kalmar_osd(&[
        "create",
        "--device",
        &dev,
        "--conf",
        conf_s,
        "--data-root",
        root_s,
        "--no-start",
    ])?;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("holds a Kalmar store"));

    // The CRUSH map has osd.0 under host rack1-node7.
    let crush = cluster
        .mon_command(serde_json::json!({"prefix": "osd crush dump", "format": "json"}))
        .await?;
    let host = crush["buckets"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["name"] == "rack1-node7"))
        .with_context(|| format!("no host bucket rack1-node7: {crush}"))?;
    assert!(host["items"].to_string().contains("\"id\":0"), "{host}");

    // It runs from the link, as the unit would start it, and comes up.
    let osd = start_osd(tmp.path(), &link, &conf)?;
    wait_up(&cluster).await?;
    eprintln!("osd.0 is up");
    // While it runs, the device is busy, and its id cannot go to another disk.
    let d = listed(&dev)?;
    assert!(reasons(&d).contains("another process"), "{d}");
    let taken = kalmar_osd(&[
        "create",
        "--device",
        &dev,
        "--id",
        "0",
        "--conf",
        conf_s,
        "--data-root",
        root_s,
        "--no-start",
        "--force",
    ])?;
    assert!(!taken.status.success());
    drop(osd);

    // The disk is replaced by a blank one: it takes over osd.0 (the id and
    // the uuid from the map) and comes up as osd.0.
    std::fs::write(&dev, &zero)?;
    let out = kalmar_osd(&[
        "create",
        "--device",
        &dev,
        "--id",
        "0",
        "--conf",
        conf_s,
        "--data-root",
        root_s,
        "--no-start",
    ])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created osd.0"));
    let osd = start_osd(tmp.path(), &link, &conf)?;
    wait_up(&cluster).await?;
    drop(osd);
    drop(cluster);
    drop(lo);
    Ok(())
}
