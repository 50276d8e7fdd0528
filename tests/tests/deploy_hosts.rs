//! docs/deploy.md across hosts. Each host is a network namespace with its
//! own address on a test bridge (the bridge in a namespace of its own, so
//! nothing on the machine's network is touched) and its own hostname
//! (`unshare --uts`); loop devices stand in for disks. node1 runs the mon
//! and is the client; node2..node4 each make their disk an OSD with
//! `kalmar-osd create`. Then: a pool of size 3, objects written, node4 cut
//! off the bridge and back, node3's disk replaced (same id, empty disk,
//! backfilled), and every object read back intact.
//!
//! systemd does not run here, so daemons are started as the units would
//! start them (same flags), by PID, and stopped with SIGTERM.
//!
//! Needs root, `ip` (iproute2), `unshare` and loop devices; skips with a
//! message without them. Namespaces, loop devices and processes are
//! removed when the test ends, by name and PID.
#![deny(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kalmar_cli::procs::find_bin;
use serde_json::Value;

const SUBNET: &str = "10.254.77";
const MON_PORT: u16 = 6789;
const OSD_HOSTS: [usize; 3] = [2, 3, 4];
const PG_NUM: u32 = 16;
const OBJECT_BYTES: usize = 48 * 1024;
/// Bound on each wait for the cluster to settle.
const SETTLE: Duration = Duration::from_secs(120);

fn bin(name: &str) -> Result<PathBuf> {
    find_bin(name).with_context(|| format!("{name} not built"))
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

/// The hosts: namespace `kt<pid>h<N>` with 10.254.77.N on `eth0`, whose
/// peer `p<N>` is a port of `br0` in namespace `kt<pid>sw`.
struct Hosts {
    switch: String,
    hosts: Vec<(usize, String)>,
}

impl Hosts {
    fn new(ids: &[usize]) -> Result<Hosts> {
        let tag = format!("kt{}", std::process::id());
        let mut h = Hosts {
            switch: format!("{tag}sw"),
            hosts: Vec::new(),
        };
        ip(&["netns", "add", &h.switch])?;
        ip(&["-n", &h.switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &h.switch, "link", "set", "br0", "up"])?;
        for &id in ids {
            let ns = format!("{tag}h{id}");
            ip(&["netns", "add", &ns])?;
            h.hosts.push((id, ns.clone()));
            let port = format!("p{id}");
            // Both ends are made inside the namespaces: the machine's own
            // network namespace never sees them.
            ip(&[
                "-n", &h.switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            ip(&["-n", &h.switch, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{SUBNET}.{id}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(h)
    }

    fn ns(&self, id: usize) -> &str {
        self.hosts
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, n)| n.as_str())
            .unwrap_or_default()
    }

    /// `program args` on host `id`, with hostname `node<id>`.
    fn command(&self, id: usize, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns(id), "unshare", "--uts", "sh", "-c"])
            .arg("hostname \"$0\" && exec \"$@\"")
            .arg(format!("node{id}"))
            .arg(program);
        c
    }

    /// Cuts host `id` off the bridge, or plugs it back.
    fn link(&self, id: usize, up: bool) -> Result<()> {
        let port = format!("p{id}");
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &port,
            if up { "up" } else { "down" },
        ])?;
        Ok(())
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for (_, ns) in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.switch])
            .status();
    }
}

/// A loop device over a sparse file, detached by name when dropped.
struct Loop(String);

impl Loop {
    fn new(file: &Path, bytes: u64) -> Result<Loop> {
        std::fs::File::create(file)?.set_len(bytes)?;
        let dev = run(Command::new("losetup")
            .args(["-f", "--show", "--direct-io=on"])
            .arg(file))?;
        Ok(Loop(dev.trim().to_string()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// A daemon started by this test; SIGTERM by PID when dropped.
struct Daemon {
    name: String,
    child: Child,
}

impl Daemon {
    fn stop(&mut self) {
        // SAFETY: signalling our own child by its PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{} did not stop within 20 s: killed", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

struct Deployment {
    dir: PathBuf,
    /// Dropped first: daemons stop before their network and disks go.
    daemons: Vec<Daemon>,
    hosts: Hosts,
    disks: Vec<(usize, Loop)>,
}

impl Deployment {
    fn conf(&self, id: usize) -> PathBuf {
        self.dir.join(format!("node{id}/kalmar.conf"))
    }

    fn write_conf(&self, id: usize) -> Result<()> {
        let mut global = toml::Table::new();
        global.insert("mon_host".into(), format!("{SUBNET}.1:{MON_PORT}").into());
        global.insert(
            "crash_dir".into(),
            self.dir
                .join(format!("node{id}/crash"))
                .display()
                .to_string()
                .into(),
        );
        // The test cluster's short timings (heartbeats every second, ...).
        for (k, v) in kalmar_tests::ClusterOpts::default().settings {
            let value: toml::Value = match (v.parse::<i64>(), v.parse::<f64>()) {
                (Ok(i), _) => i.into(),
                (_, Ok(f)) => f.into(),
                _ => v.into(),
            };
            global.insert(k, value);
        }
        global.insert("osd_op_num_shards".into(), 1i64.into());
        let mut osd = toml::Table::new();
        osd.insert("osd_bind_ip".into(), format!("{SUBNET}.{id}").into());
        let mut t = toml::Table::new();
        t.insert("global".into(), global.into());
        t.insert("osd".into(), osd.into());
        let path = self.conf(id);
        std::fs::create_dir_all(path.parent().context("conf folder")?)?;
        std::fs::write(&path, toml::to_string(&t)?)?;
        Ok(())
    }

    fn start(&mut self, host: usize, name: &str, program: &str, args: &[String]) -> Result<()> {
        let mut c = self.hosts.command(host, &bin(program)?);
        c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        let child = c.spawn().with_context(|| format!("starting {name}"))?;
        self.daemons.push(Daemon {
            name: name.to_string(),
            child,
        });
        Ok(())
    }

    fn stop(&mut self, name: &str) {
        if let Some(i) = self.daemons.iter().position(|d| d.name == name) {
            let mut d = self.daemons.remove(i);
            d.stop();
        }
    }

    /// `kalmar ARGS` on node1 (the client host).
    fn kalmar(&self, args: &[&str]) -> Result<String> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.hosts.ns(1)])
            .arg(bin("kalmar")?)
            .arg("--conf")
            .arg(self.conf(1))
            .args(["--timeout", "20"])
            .args(args);
        run(&mut c)
    }

    fn json(&self, args: &[&str]) -> Result<Value> {
        let mut a = vec!["--format", "json"];
        a.extend_from_slice(args);
        Ok(serde_json::from_str(&self.kalmar(&a)?)?)
    }

    fn wait(&self, what: &str, mut ok: impl FnMut(&Deployment) -> Result<bool>) -> Result<()> {
        let t0 = Instant::now();
        let mut last = String::new();
        while t0.elapsed() < SETTLE {
            match ok(self) {
                Ok(true) => {
                    eprintln!("{what}: after {:.1} s", t0.elapsed().as_secs_f64());
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => last = format!("{e:#}"),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        self.print_logs();
        bail!(
            "timed out after {} s waiting for {what} ({last})",
            SETTLE.as_secs()
        )
    }

    fn osds_up(&self) -> Result<Vec<(i64, bool)>> {
        let d = self.json(&["osd", "dump"])?;
        Ok(d["osds"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| Some((o["osd"].as_i64()?, o["up"].as_i64()? == 1)))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn epoch(&self) -> Result<u64> {
        self.json(&["osd", "dump"])?["epoch"]
            .as_u64()
            .context("osd dump has no epoch")
    }

    /// Every PG active+clean, as reported by its primary at `epoch` or
    /// later (older reports may predate the change being waited for).
    fn all_clean_since(&self, epoch: u64) -> Result<bool> {
        let d = self.json(&["pg", "dump", "pgs"])?;
        let stats = d["pg_map"]["pg_stats"]
            .as_array()
            .or_else(|| d["pg_stats"].as_array())
            .cloned()
            .unwrap_or_default();
        let clean = stats
            .iter()
            .filter(|p| p["reported_epoch"].as_u64().is_some_and(|e| e >= epoch))
            .filter(|p| {
                let st = p["state"].as_str().unwrap_or("");
                st.split('+').any(|s| s == "active") && st.split('+').any(|s| s == "clean")
            })
            .count();
        Ok(clean == PG_NUM as usize)
    }

    /// The names of the client objects of `pool` on a stopped OSD's device.
    fn stored_objects(&self, device: &Path, pool: u64) -> Result<Vec<String>> {
        let tool = bin("kalmar-objectstore-tool")?;
        let json = |args: &[&str]| -> Result<Value> {
            let out = run(Command::new(&tool)
                .arg("--device")
                .arg(device)
                .args(["--format", "json"])
                .args(args))?;
            Ok(serde_json::from_str(&out)?)
        };
        let colls: Vec<String> = serde_json::from_value(json(&["list-collections"])?)?;
        let mut names = Vec::new();
        for c in colls.iter().filter(|c| c.starts_with(&format!("{pool}."))) {
            for e in json(&["list", c])?.as_array().cloned().unwrap_or_default() {
                let n = e["name"].as_str().unwrap_or("\0");
                if !n.starts_with('\0') {
                    names.push(n.to_string());
                }
            }
        }
        Ok(names)
    }

    fn print_logs(&self) {
        for entry in walk(&self.dir) {
            if entry.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&entry).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                eprintln!("--- {} (last lines)", entry.display());
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        // Daemons first (by PID), then the namespaces (Hosts), then the
        // disks (Loop), in field order after this.
        while let Some(mut d) = self.daemons.pop() {
            d.stop();
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn object_bytes(i: usize) -> Vec<u8> {
    (0..OBJECT_BYTES)
        .map(|b| ((b * 31 + i * 7919) % 251) as u8)
        .collect()
}

fn prerequisites() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (namespaces, loop devices)".into());
    }
    for tool in ["ip", "unshare", "losetup"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some(format!("{tool} is not installed"));
        }
    }
    let probe = format!("ktprobe{}", std::process::id());
    if ip(&["netns", "add", &probe]).is_err() {
        return Some("ip netns add is not permitted here".into());
    }
    let _ = ip(&["netns", "del", &probe]);
    None
}

#[test]
fn deployment_guide_across_hosts() -> Result<()> {
    if let Some(why) = prerequisites() {
        eprintln!("SKIPPED: {why}");
        return Ok(());
    }
    let tmp = tempfile::Builder::new().prefix("kalmar-hosts-").tempdir()?;
    let dir = tmp.path().to_path_buf();
    let hosts = Hosts::new(&[1, 2, 3, 4])?;
    let mut disks = Vec::new();
    for &h in &OSD_HOSTS {
        disks.push((h, Loop::new(&dir.join(format!("disk{h}.img")), 1 << 30)?));
    }
    let mut dep = Deployment {
        dir: dir.clone(),
        daemons: Vec::new(),
        hosts,
        disks,
    };
    for h in 1..=4 {
        dep.write_conf(h)?;
    }

    // The first mon, on node1. Its mkfs makes the cluster's keys and
    // writes client.admin's next to the conf (auth is cephx by default).
    let mon_data = dir.join("node1/mon");
    run(Command::new(bin("kalmar-mon")?)
        .arg("mkfs")
        .arg("--data")
        .arg(&mon_data)
        .arg("--conf")
        .arg(dep.conf(1)))?;
    let conf1 = dep.conf(1).display().to_string();
    let node1 = dir.join("node1");
    let admin_keyring = node1.join("kalmar.client.admin.keyring");
    assert!(admin_keyring.is_file(), "mkfs wrote no admin keyring");
    // The admin keyring goes to each OSD host (docs/deploy.md: `kalmar-osd
    // create` registers the OSD and its key as client.admin).
    for &h in &OSD_HOSTS {
        std::fs::copy(
            &admin_keyring,
            dir.join(format!("node{h}/kalmar.client.admin.keyring")),
        )?;
    }
    dep.start(
        1,
        "mon.a",
        "kalmar-mon",
        &[
            "run".into(),
            "--data".into(),
            mon_data.display().to_string(),
            "--conf".into(),
            conf1,
            "--bind".into(),
            format!("{SUBNET}.1:{MON_PORT}"),
            "--admin-socket".into(),
            node1.join("mon.a.asok").display().to_string(),
            "--log-file".into(),
            node1.join("mon.a.log").display().to_string(),
        ],
    )?;
    dep.wait("the mon answers", |d| Ok(d.kalmar(&["status"]).is_ok()))?;
    // A mgr beside it, reached at node1's address, with a key of its own.
    let mgr_keyring = node1.join("kalmar.mgr.node1.keyring");
    dep.kalmar(&[
        "auth",
        "get-or-create",
        "mgr.node1",
        "mon",
        "allow profile mgr",
        "osd",
        "allow *",
        "mgr",
        "allow *",
        "-o",
        &mgr_keyring.display().to_string(),
    ])?;
    let conf1 = dep.conf(1).display().to_string();
    dep.start(
        1,
        "mgr.node1",
        "kalmar-mgr",
        &[
            "run".into(),
            "--name".into(),
            "node1".into(),
            "--conf".into(),
            conf1,
            "--bind".into(),
            format!("{SUBNET}.1:0"),
            "--data".into(),
            node1.join("mgr").display().to_string(),
            "--admin-socket".into(),
            node1.join("mgr.node1.asok").display().to_string(),
            "--log-file".into(),
            node1.join("mgr.node1.log").display().to_string(),
        ],
    )?;
    dep.wait("the mgr active", |d| {
        let s = d.json(&["mgr", "stat"])?;
        Ok(s["available"] == true && s["active_name"] == "node1")
    })?;

    // An OSD on each other host's disk, in one command each.
    let mut osd_of = Vec::new();
    for &h in &OSD_HOSTS {
        let dev = dep
            .disks
            .iter()
            .find(|(i, _)| *i == h)
            .map(|(_, l)| l.0.clone())
            .unwrap_or_default();
        let node = dir.join(format!("node{h}"));
        let out = run(dep
            .hosts
            .command(h, &bin("kalmar-osd")?)
            .args(["create", "--device", &dev, "--no-start", "--conf"])
            .arg(dep.conf(h))
            .arg("--data-root")
            .arg(node.join("osd")))?;
        let id: i64 = out
            .split("created osd.")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no id in: {out}"))?;
        assert!(out.contains(&format!("host node{h}")), "{out}");
        osd_of.push((h, id));
        start_osd(&mut dep, h, id)?;
    }
    dep.wait("every OSD up", |d| {
        Ok(d.osds_up()?.iter().filter(|(_, up)| *up).count() == 3)
    })?;

    // Each OSD sits under its own host bucket.
    let crush = dep.json(&["osd", "crush", "dump"])?;
    for &(h, id) in &osd_of {
        let bucket = crush["buckets"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["name"] == format!("node{h}").as_str()))
            .with_context(|| format!("no bucket node{h}: {crush}"))?;
        assert!(
            bucket["items"]
                .to_string()
                .contains(&format!("\"id\":{id}")),
            "{bucket}"
        );
    }

    dep.kalmar(&[
        "osd",
        "pool",
        "create",
        "data",
        &PG_NUM.to_string(),
        "--size",
        "3",
        "--min-size",
        "2",
    ])?;
    dep.wait("PGs active+clean", |d| d.all_clean_since(0))?;
    let put = |dep: &Deployment, i: usize| -> Result<()> {
        let f = dir.join(format!("obj{i}"));
        std::fs::write(&f, object_bytes(i))?;
        dep.kalmar(&[
            "rados",
            "-p",
            "data",
            "put",
            &format!("obj{i}"),
            &f.display().to_string(),
        ])?;
        Ok(())
    };
    for i in 0..20 {
        put(&dep, i)?;
    }
    // An image, exported by kalmar-nbd on node1 as kalmar-nbd@ would, and
    // written through NBD.
    dep.kalmar(&["image", "create", "data/vol1", "--size", "64M"])?;
    let sock = dir.join("node1/nbd-vol1.sock");
    let qemu = |script: &[&str]| -> Result<String> {
        let mut c = Command::new("qemu-io");
        c.args(["-f", "raw"])
            .arg(format!("nbd+unix:///?socket={}", sock.display()));
        for s in script {
            c.args(["-c", s]);
        }
        let out = run(&mut c)?;
        if out.contains("Pattern verification failed") || out.contains("error") {
            bail!("qemu-io {script:?}: {out}");
        }
        Ok(out)
    };
    start_nbd(&mut dep, &sock)?;
    dep.wait("the export listening", |_| Ok(sock.exists()))?;
    qemu(&["write -P 0x5a 0 4M", "write -P 0xa5 60M 4M"])?;
    dep.stop("nbd.vol1");

    // node4 is cut off: its OSD is marked down, writes go on (min_size 2).
    let (cut_host, cut_osd) = osd_of[2];
    dep.hosts.link(cut_host, false)?;
    dep.wait("the cut-off OSD marked down", |d| {
        Ok(d.osds_up()?.iter().any(|(id, up)| *id == cut_osd && !*up))
    })?;
    for i in 20..30 {
        put(&dep, i)?;
    }
    dep.hosts.link(cut_host, true)?;
    dep.wait("the OSD back up", |d| {
        Ok(d.osds_up()?.iter().all(|(_, up)| *up))
    })?;
    let back = dep.epoch()?;
    dep.wait("PGs active+clean after the host came back", |d| {
        d.all_clean_since(back)
    })?;

    // node3's disk fails and is replaced: stop the OSD, a blank disk takes
    // its id, it is backfilled.
    let (rep_host, rep_osd) = osd_of[1];
    dep.stop(&format!("osd.{rep_osd}"));
    dep.wait("the stopped OSD marked down", |d| {
        Ok(d.osds_up()?.iter().any(|(id, up)| *id == rep_osd && !*up))
    })?;
    let dev = dep
        .disks
        .iter()
        .find(|(i, _)| *i == rep_host)
        .map(|(_, l)| l.0.clone())
        .unwrap_or_default();
    std::fs::write(&dev, vec![0u8; 1 << 20])?;
    let node = dir.join(format!("node{rep_host}"));
    let out = run(dep
        .hosts
        .command(rep_host, &bin("kalmar-osd")?)
        .args([
            "create",
            "--device",
            &dev,
            "--no-start",
            "--id",
            &rep_osd.to_string(),
            "--conf",
        ])
        .arg(dep.conf(rep_host))
        .arg("--data-root")
        .arg(node.join("osd")))?;
    assert!(out.contains(&format!("created osd.{rep_osd}")), "{out}");
    start_osd(&mut dep, rep_host, rep_osd)?;
    dep.wait("the replaced OSD up", |d| {
        Ok(d.osds_up()?.iter().all(|(_, up)| *up))
    })?;
    let replaced = dep.epoch()?;
    dep.wait("PGs active+clean after the disk was replaced", |d| {
        d.all_clean_since(replaced)
    })?;

    // The image reads back through a new export.
    start_nbd(&mut dep, &sock)?;
    dep.wait("the export listening again", |_| Ok(sock.exists()))?;
    qemu(&[
        "read -P 0x5a 0 4M",
        "read -P 0xa5 60M 4M",
        "read -P 0 8M 4M",
    ])?;
    dep.stop("nbd.vol1");

    // Every object intact.
    for i in 0..30 {
        let out = dir.join(format!("got{i}"));
        dep.kalmar(&[
            "rados",
            "-p",
            "data",
            "get",
            &format!("obj{i}"),
            &out.display().to_string(),
        ])?;
        assert_eq!(std::fs::read(&out)?, object_bytes(i), "obj{i} differs");
    }
    // The new disk holds every object (size 3 on 3 OSDs): it was backfilled.
    let pool = dep.json(&["osd", "dump"])?["pools"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["pool_name"] == "data"))
        .and_then(|p| p["pool"].as_u64())
        .context("pool data in osd dump")?;
    dep.stop(&format!("osd.{rep_osd}"));
    let link = node.join(format!("osd/kalmar-{rep_osd}/block"));
    let stored = dep.stored_objects(&link, pool)?;
    for i in 0..30 {
        assert!(
            stored.contains(&format!("obj{i}")),
            "obj{i} missing on the replaced disk: {stored:?}"
        );
    }
    drop(dep);
    Ok(())
}

fn start_nbd(dep: &mut Deployment, sock: &Path) -> Result<()> {
    let _ = std::fs::remove_file(sock);
    let node = dep.dir.join("node1");
    let conf = dep.conf(1).display().to_string();
    dep.start(
        1,
        "nbd.vol1",
        "kalmar-nbd",
        &[
            "--image".into(),
            "data/vol1".into(),
            "--conf".into(),
            conf,
            "--socket".into(),
            sock.display().to_string(),
            "--admin-socket".into(),
            node.join("nbd.vol1.asok").display().to_string(),
            "--log-file".into(),
            node.join("nbd.vol1.log").display().to_string(),
        ],
    )
}

fn start_osd(dep: &mut Deployment, host: usize, id: i64) -> Result<()> {
    let node = dep.dir.join(format!("node{host}"));
    let conf = dep.conf(host).display().to_string();
    dep.start(
        host,
        &format!("osd.{id}"),
        "kalmar-osd",
        &[
            "run".into(),
            "--id".into(),
            id.to_string(),
            "--device".into(),
            node.join(format!("osd/kalmar-{id}/block"))
                .display()
                .to_string(),
            "--conf".into(),
            conf,
            "--admin-socket".into(),
            node.join(format!("osd.{id}.asok")).display().to_string(),
            "--log-file".into(),
            node.join(format!("osd.{id}.log")).display().to_string(),
        ],
    )
}
