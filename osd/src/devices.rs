//! The block devices of this host as candidates for OSDs (`kalmar-osd
//! list-devices`, the checks of `kalmar-osd create`): what Ceph's
//! `ceph-volume inventory` tells an admin. Facts come from sysfs, the
//! mount and swap tables, `blkid -p` (filesystems and partition tables)
//! and the device's first block (a Kalmar label); whether another process
//! holds the device comes from an exclusive open and a non-blocking
//! `flock` (what a running OSD or `kalmar-objectstore-tool` holds).
//!
//! The parsing is pure (plain text in, plain data out) and tested here;
//! the probing of real devices is tested on loop devices in
//! `osd/tests/devices.rs`.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kalmar_common::config::Conf;
use kalmar_objectstore::layout::{LABEL_MAGIC, LABEL_OFFSET};
use serde::Serialize;

/// Device-name prefixes never offered: RAM disks, compressed swap,
/// optical and floppy drives, device-mapper and md volumes (built on
/// other devices, which are listed themselves).
const SKIPPED_PREFIXES: [&str; 6] = ["ram", "zram", "sr", "fd", "dm-", "md"];

/// CRUSH device class from what the kernel says of the device, as Ceph
/// decides it: NVMe by name, else rotational or not.
pub fn device_class(name: &str, rotational: bool) -> &'static str {
    if name.starts_with("nvme") {
        "nvme"
    } else if rotational {
        "hdd"
    } else {
        "ssd"
    }
}

/// What `blkid -p -o export` found on a device.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Probe {
    /// A filesystem, swap or volume signature (`TYPE`): ext4, xfs, swap,
    /// LVM2_member, crypto_LUKS ...
    pub signature: Option<String>,
    /// A partition table (`PTTYPE`): gpt, dos.
    pub partition_table: Option<String>,
}

/// Parses `blkid -p -o export` output (`KEY=VALUE` lines).
pub fn parse_blkid_export(text: &str) -> Probe {
    let mut p = Probe::default();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("TYPE", v)) if !v.is_empty() => p.signature = Some(v.to_string()),
            Some(("PTTYPE", v)) if !v.is_empty() => p.partition_table = Some(v.to_string()),
            _ => {}
        }
    }
    p
}

/// The `MAJOR:MINOR` device numbers of mounted filesystems, with their
/// mount points, from `/proc/self/mountinfo`.
pub fn parse_mountinfo(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let dev = f.nth(2)?;
            let mount_point = f.nth(1)?;
            Some((dev.to_string(), mount_point.to_string()))
        })
        .collect()
}

/// Device paths in use as swap, from `/proc/swaps`.
pub fn parse_swaps(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Where this host's OSDs sit in CRUSH, from the conf's `crush_location`
/// (Ceph's syntax: `root=default rack=r1 host=node1`, the pairs separated
/// by spaces, tabs, commas or semicolons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrushLocation {
    /// (bucket type, bucket name), in the order given.
    pub items: Vec<(String, String)>,
}

impl CrushLocation {
    pub fn parse(text: &str) -> Result<CrushLocation, String> {
        let mut items = Vec::new();
        for word in text
            .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
            .filter(|w| !w.is_empty())
        {
            let (ty, name) = word
                .split_once('=')
                .filter(|(t, n)| !t.is_empty() && !n.is_empty())
                .ok_or_else(|| format!("crush_location item '{word}' is not TYPE=NAME"))?;
            if items.iter().any(|(t, _): &(String, String)| t == ty) {
                return Err(format!("crush_location names the bucket type '{ty}' twice"));
            }
            for part in [ty, name] {
                if !kalmar_maps::crush::edit::is_valid_name(part) {
                    return Err(format!(
                        "crush_location item '{word}': '{part}' is not a valid crush name (letters, digits, '-', '_', '.')"
                    ));
                }
            }
            items.push((ty.to_string(), name.to_string()));
        }
        Ok(CrushLocation { items })
    }

    /// The `host=` bucket, if given.
    pub fn host(&self) -> Option<&str> {
        self.get("host")
    }

    fn get(&self, ty: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|(t, _)| t == ty)
            .map(|(_, n)| n.as_str())
    }

    /// With `host=HOST` and `root=default` added when not named: the
    /// full location an OSD places itself at.
    pub fn with_defaults(mut self, host: &str) -> CrushLocation {
        if self.host().is_none() {
            self.items.insert(0, ("host".into(), host.to_string()));
        }
        if self.get("root").is_none() {
            self.items.push(("root".into(), "default".into()));
        }
        self
    }

    /// The `TYPE=NAME` words of `osd crush create-or-move`.
    pub fn args(&self) -> Vec<String> {
        self.items.iter().map(|(t, n)| format!("{t}={n}")).collect()
    }
}

/// This host's short name (up to the first dot), as Ceph names host
/// buckets.
pub fn short_hostname() -> String {
    let full = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    match full.split('.').next() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "localhost".to_string(),
    }
}

/// The CRUSH host bucket of this host's OSDs: `host=` of the conf's
/// `crush_location` (Ceph's syntax), else the short hostname.
pub fn crush_host(conf: &Conf, entity: &str) -> anyhow::Result<String> {
    Ok(boot_crush_location(conf, entity)?
        .host()
        .map_or_else(short_hostname, str::to_string))
}

/// Where an OSD places itself in CRUSH when it starts (Ceph's
/// `osd_crush_update_on_start`): the conf's `crush_location` with
/// `host=` (the short hostname) and `root=default` added when it does not
/// name them; without `crush_location`, `host=SHORT_HOSTNAME
/// root=default`. A location that does not parse is an error here; one
/// the map cannot take (an unknown bucket type, a bucket of another type)
/// is refused by the mon.
pub fn boot_crush_location(conf: &Conf, entity: &str) -> anyhow::Result<CrushLocation> {
    let loc = match conf.get::<String>(entity, "crush_location")? {
        Some(text) => CrushLocation::parse(&text).map_err(anyhow::Error::msg)?,
        None => CrushLocation { items: Vec::new() },
    };
    Ok(loc.with_defaults(&short_hostname()))
}

/// Most a `crush_location_hook` may run (Ceph's
/// `crush_location_hook_timeout`, 10 s): beyond it the hook is killed and
/// the OSD boots at its conf's location.
pub const CRUSH_LOCATION_HOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between checks on a running hook.
const HOOK_POLL: Duration = Duration::from_millis(20);
/// Most of a failing hook's stderr quoted in the warning.
const HOOK_STDERR_QUOTED: usize = 300;

/// Runs Ceph's `crush_location_hook`: `HOOK --cluster kalmar --id ID
/// --type osd`, whose standard output is the location (Ceph's syntax, as
/// `crush_location`). An error (it cannot start, fails, prints nothing or
/// something that does not parse, or runs longer than `timeout` and is
/// killed) says what happened.
pub fn run_location_hook(hook: &Path, id: i32, timeout: Duration) -> Result<CrushLocation, String> {
    let what = format!("crush_location_hook {}", hook.display());
    let mut child = Command::new(hook)
        .args([
            "--cluster",
            "kalmar",
            "--id",
            &id.to_string(),
            "--type",
            "osd",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: cannot run it: {e}"))?;
    // Read both pipes on threads, so a chatty hook never blocks on a full
    // pipe while this waits for it to exit.
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut out);
            }
            out
        })
    };
    let stdout = pipe(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = pipe(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{what}: still running after {} s; killed",
                    timeout.as_secs_f64()
                ));
            }
            Ok(None) => std::thread::sleep(HOOK_POLL),
            Err(e) => return Err(format!("{what}: waiting for it: {e}")),
        }
    };
    let out = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
    if !status.success() {
        let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
        let err: String = err.trim().chars().take(HOOK_STDERR_QUOTED).collect();
        return Err(format!("{what}: exited with {status}: {err}"));
    }
    let text = out.trim();
    if text.is_empty() {
        return Err(format!("{what}: printed no location"));
    }
    CrushLocation::parse(text).map_err(|e| format!("{what}: printed '{text}': {e}"))
}

/// [`boot_crush_location`] with the conf's `crush_location_hook` asked
/// first: its location (with `host=` and `root=` added as for
/// `crush_location`) replaces the conf's. When the hook fails, the conf's
/// location (or the hostname's) is used and the second value says why, for
/// the OSD to log as a warning.
pub fn boot_crush_location_with_hook(
    conf: &Conf,
    entity: &str,
    id: i32,
    timeout: Duration,
) -> anyhow::Result<(CrushLocation, Option<String>)> {
    let Some(hook) = conf.get::<String>(entity, "crush_location_hook")? else {
        return Ok((boot_crush_location(conf, entity)?, None));
    };
    match run_location_hook(Path::new(&hook), id, timeout) {
        Ok(loc) => Ok((loc.with_defaults(&short_hostname()), None)),
        Err(why) => Ok((
            boot_crush_location(conf, entity)?,
            Some(format!(
                "{why}; using crush_location from the conf (else host=<hostname> root=default)"
            )),
        )),
    }
}

/// One candidate device and why it may not be used.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub rotational: bool,
    pub model: String,
    pub device_class: &'static str,
    /// The first block holds a Kalmar store label.
    pub kalmar_label: bool,
    pub signature: Option<String>,
    pub partition_table: Option<String>,
    pub partitions: Vec<String>,
    /// Mount points of the device or its partitions.
    pub mounted: Vec<String>,
    /// Devices built on it (device-mapper, md), from sysfs `holders`.
    pub holders: Vec<String>,
    /// Another process holds it (an exclusive open or a `flock`).
    pub busy: bool,
    pub swap: bool,
    /// Empty when the device is free for a new OSD.
    pub reject_reasons: Vec<String>,
}

impl DeviceInfo {
    pub fn available(&self) -> bool {
        self.reject_reasons.is_empty()
    }
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Names of the whole disks sysfs lists, skipping devices no OSD should
/// sit on and loop devices with nothing behind them.
fn disk_names(sys_block: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(sys_block)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| !SKIPPED_PREFIXES.iter().any(|p| n.starts_with(p)))
                .filter(|n| {
                    !n.starts_with("loop") || sys_block.join(n).join("loop/backing_file").exists()
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Whether the first block of `dev` (a device or file) is a Kalmar store label.
pub fn has_kalmar_label(dev: &Path) -> bool {
    let Ok(mut f) = std::fs::File::open(dev) else {
        return false;
    };
    let mut block = [0u8; 4096];
    let start = LABEL_OFFSET as usize;
    if start + LABEL_MAGIC.len() > block.len() || f.read_exact(&mut block).is_err() {
        return false;
    }
    block[start..start + LABEL_MAGIC.len()] == LABEL_MAGIC
}

fn blkid(dev: &Path) -> Probe {
    // -p: read the device itself, not blkid's cache.
    match Command::new("blkid")
        .arg("-p")
        .args(["-o", "export"])
        .arg(dev)
        .output()
    {
        Ok(out) => parse_blkid_export(&String::from_utf8_lossy(&out.stdout)),
        Err(_) => Probe::default(),
    }
}

/// Whether another process holds the device: the kernel refuses an
/// exclusive open of a mounted or stacked device (EBUSY), and Kalmar's
/// store keeps an exclusive `flock` while open.
fn busy(dev: &Path) -> bool {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(dev)
    {
        Ok(f) => f,
        Err(e) => return e.raw_os_error() == Some(libc::EBUSY),
    };
    // SAFETY: flock on a descriptor we own; released when `f` closes.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 }
}

/// Everything known about one disk `name` (a `/sys/block` entry).
pub fn inspect_disk(name: &str) -> DeviceInfo {
    let sys = Path::new("/sys/block").join(name);
    let path = Path::new("/dev").join(name);
    let size_bytes = read_trim(&sys.join("size"))
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        * 512;
    let rotational = read_trim(&sys.join("queue/rotational")).as_deref() == Some("1");
    let model = read_trim(&sys.join("device/model"))
        .or_else(|| read_trim(&sys.join("loop/backing_file")).map(|f| format!("loop over {f}")))
        .unwrap_or_default();
    let partitions: Vec<String> = std::fs::read_dir(&sys)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with(name) && sys.join(n).join("partition").exists())
                .collect()
        })
        .unwrap_or_default();
    let holders: Vec<String> = std::fs::read_dir(sys.join("holders"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut devnums: Vec<String> = read_trim(&sys.join("dev")).into_iter().collect();
    devnums.extend(
        partitions
            .iter()
            .filter_map(|p| read_trim(&sys.join(p).join("dev"))),
    );
    let mounted: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
        .into_iter()
        .filter(|(dev, _)| devnums.contains(dev))
        .map(|(_, mp)| mp)
        .collect();
    let mut own_paths = vec![path.display().to_string()];
    own_paths.extend(partitions.iter().map(|p| format!("/dev/{p}")));
    let swap = std::fs::read_to_string("/proc/swaps")
        .map(|t| parse_swaps(&t))
        .unwrap_or_default()
        .iter()
        .any(|s| own_paths.contains(s));
    let probe = blkid(&path);
    let kalmar_label = has_kalmar_label(&path);
    let busy = busy(&path);
    let mut info = DeviceInfo {
        device_class: device_class(name, rotational),
        path,
        size_bytes,
        rotational,
        model,
        kalmar_label,
        signature: probe.signature,
        partition_table: probe.partition_table,
        partitions,
        mounted,
        holders,
        busy,
        swap,
        reject_reasons: Vec::new(),
    };
    info.reject_reasons = reject_reasons(&info);
    info
}

/// Why a device must not become an OSD without `--force`.
pub fn reject_reasons(d: &DeviceInfo) -> Vec<String> {
    let mut r = Vec::new();
    if !d.mounted.is_empty() {
        r.push(format!("mounted at {}", d.mounted.join(", ")));
    }
    if d.swap {
        r.push("in use as swap".into());
    }
    if !d.holders.is_empty() {
        r.push(format!("held by {}", d.holders.join(", ")));
    }
    if d.busy && d.mounted.is_empty() && d.holders.is_empty() {
        r.push("opened exclusively by another process (a running OSD?)".into());
    }
    if d.kalmar_label {
        r.push("holds a Kalmar store".into());
    }
    if let Some(s) = &d.signature {
        r.push(format!("holds {s} (blkid)"));
    }
    if let Some(p) = &d.partition_table {
        r.push(format!("has a partition table ({p})"));
    } else if !d.partitions.is_empty() {
        r.push(format!("has partitions {}", d.partitions.join(", ")));
    }
    if d.size_bytes < MIN_DEVICE_BYTES {
        r.push(format!("smaller than {} MiB", MIN_DEVICE_BYTES >> 20));
    }
    r
}

/// Below this a store has no room to speak of (the journal alone takes
/// 1/16 of the device, at least 1 MiB).
pub const MIN_DEVICE_BYTES: u64 = 64 << 20;

/// The host's candidate disks.
pub fn list() -> Vec<DeviceInfo> {
    disk_names(Path::new("/sys/block"))
        .iter()
        .map(|n| inspect_disk(n))
        .collect()
}

/// The `/sys/block` name of a block device path (following links such as
/// `/dev/disk/by-id/...`), or None for a file or a partition.
pub fn disk_name_of(dev: &Path) -> Option<String> {
    let real = std::fs::canonicalize(dev).ok()?;
    if !std::fs::metadata(&real).ok()?.file_type().is_block_device() {
        return None;
    }
    let name = real.file_name()?.to_string_lossy().to_string();
    Path::new("/sys/block").join(&name).exists().then_some(name)
}

/// The class CRUSH records for an OSD: `override_class` (`--device-class`
/// or the conf's `osd_class`), else what the whole disk under `dev` is
/// (`nvme`, `ssd`, `hdd`), else none (a regular file has no class of its
/// own: set one with `osd_class`).
pub fn choose_class(dev: &Path, override_class: Option<&str>) -> Option<String> {
    if let Some(c) = override_class.filter(|c| !c.is_empty()) {
        return Some(c.to_string());
    }
    disk_name_of(dev).map(|name| inspect_disk(&name).device_class.to_string())
}

/// The store's media for a device class: `hdd` is rotational, every
/// other class (ssd, nvme, a custom one) gets the SSD defaults.
pub fn media_of_class(class: Option<&str>) -> kalmar_objectstore::Media {
    match class {
        Some("hdd") => kalmar_objectstore::Media::Rotational,
        _ => kalmar_objectstore::Media::Solid,
    }
}

/// A stable name for a device: its `/dev/disk/by-id` link if it has one
/// (device letters move between boots), else the path given.
pub fn stable_path(dev: &Path) -> PathBuf {
    let Ok(real) = std::fs::canonicalize(dev) else {
        return dev.to_path_buf();
    };
    let mut links: Vec<PathBuf> = std::fs::read_dir("/dev/disk/by-id")
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    links.sort();
    // wwn- names survive a change of controller; prefer them.
    links.sort_by_key(|l| {
        !l.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("wwn-"))
    });
    links
        .into_iter()
        .find(|l| std::fs::canonicalize(l).ok().as_ref() == Some(&real))
        .unwrap_or_else(|| real.clone())
}

/// A human table of `list()`.
pub fn render_table(devs: &[DeviceInfo]) -> String {
    let header = [
        "PATH",
        "SIZE",
        "CLASS",
        "ROT",
        "MODEL",
        "AVAILABLE",
        "WHY NOT",
    ];
    let rows: Vec<[String; 7]> = devs
        .iter()
        .map(|d| {
            [
                d.path.display().to_string(),
                human_size(d.size_bytes),
                d.device_class.to_string(),
                if d.rotational { "1" } else { "0" }.to_string(),
                d.model.clone(),
                if d.available() { "yes" } else { "no" }.to_string(),
                d.reject_reasons.join("; "),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.to_vec());
    for r in &rows {
        out.push('\n');
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hdd_gets_the_rotational_store_defaults() {
        use kalmar_objectstore::{Media, StoreSettings};
        assert_eq!(media_of_class(Some("hdd")), Media::Rotational);
        for c in [None, Some("ssd"), Some("nvme"), Some("fast")] {
            assert_eq!(media_of_class(c), Media::Solid, "{c:?}");
        }
        let (hdd, ssd) = (
            StoreSettings::for_media(Media::Rotational),
            StoreSettings::for_media(Media::Solid),
        );
        // Deeper batches of home writes, fewer reads in flight, same
        // deferred threshold.
        assert!(hdd.apply_min_bytes > ssd.apply_min_bytes);
        assert!(hdd.apply_max_delay_ms > ssd.apply_max_delay_ms);
        assert!(hdd.apply_batch_ios < ssd.apply_batch_ios);
        assert_eq!(hdd.deferred_max_bytes, ssd.deferred_max_bytes);
    }

    #[test]
    fn classes_follow_ceph() {
        assert_eq!(device_class("nvme0n1", false), "nvme");
        assert_eq!(device_class("sda", true), "hdd");
        assert_eq!(device_class("sdb", false), "ssd");
    }

    #[test]
    fn blkid_export_is_parsed() {
        let p = parse_blkid_export("DEVNAME=/dev/loop0\nUUID=x\nTYPE=ext4\nUSAGE=filesystem\n");
        assert_eq!(p.signature.as_deref(), Some("ext4"));
        assert_eq!(p.partition_table, None);
        let p = parse_blkid_export("DEVNAME=/dev/sda\nPTUUID=y\nPTTYPE=gpt\n");
        assert_eq!(p.partition_table.as_deref(), Some("gpt"));
        assert_eq!(parse_blkid_export(""), Probe::default());
    }

    #[test]
    fn mountinfo_gives_device_numbers_and_mount_points() {
        let t = "46 27 7:0 / /tmp/ltm rw,relatime - ext4 /dev/loop0 rw\n\
                 22 1 254:1 / / rw - ext4 /dev/vda rw\n";
        assert_eq!(
            parse_mountinfo(t),
            vec![
                ("7:0".into(), "/tmp/ltm".into()),
                ("254:1".into(), "/".into())
            ]
        );
    }

    #[test]
    fn swaps_skip_the_header() {
        let t = "Filename\tType\tSize\tUsed\tPriority\n/dev/sdb2 partition 100 0 -2\n";
        assert_eq!(parse_swaps(t), vec!["/dev/sdb2".to_string()]);
    }

    #[test]
    fn crush_location_in_ceph_syntax() {
        let l = CrushLocation::parse("root=default rack=r1, host=node1").expect("valid");
        assert_eq!(l.host(), Some("node1"));
        assert_eq!(l.items.len(), 3);
        let l = CrushLocation::parse(" datacenter=dc1;row=a\track=r-2.b ").expect("valid");
        assert_eq!(l.args(), vec!["datacenter=dc1", "row=a", "rack=r-2.b"]);
        assert!(CrushLocation::parse("host").is_err());
        assert!(CrushLocation::parse("host=").is_err());
        assert!(CrushLocation::parse("=h1").is_err());
        assert!(CrushLocation::parse("host=a host=b").is_err());
        let e = CrushLocation::parse("rack=r/1").expect_err("slash");
        assert!(e.contains("'r/1' is not a valid crush name"), "{e}");
        assert_eq!(
            CrushLocation::parse("").expect("empty is valid").host(),
            None
        );
    }

    #[test]
    fn boot_location_adds_host_and_root_when_missing() {
        let full = |text: &str| {
            CrushLocation::parse(text)
                .expect("valid")
                .with_defaults("node1")
                .args()
        };
        assert_eq!(full(""), vec!["host=node1", "root=default"]);
        assert_eq!(
            full("rack=r1"),
            vec!["host=node1", "rack=r1", "root=default"]
        );
        assert_eq!(
            full("root=ssd rack=r1 host=n1-ssd"),
            vec!["root=ssd", "rack=r1", "host=n1-ssd"]
        );
        assert_eq!(
            full("host=h7 row=a"),
            vec!["host=h7", "row=a", "root=default"]
        );
        let conf = |text: &str| kalmar_common::config::Conf::parse(text).expect("toml");
        let c = conf("[osd]\ncrush_location = \"rack=r1 host=h2\"\n[\"osd.4\"]\ncrush_location = \"root=fast host=h9\"\n");
        assert_eq!(
            boot_crush_location(&c, "osd.1").expect("ok").args(),
            vec!["rack=r1", "host=h2", "root=default"]
        );
        assert_eq!(
            boot_crush_location(&c, "osd.4").expect("ok").args(),
            vec!["root=fast", "host=h9"]
        );
        assert_eq!(crush_host(&c, "osd.4").expect("ok"), "h9");
        let bad = conf("[osd]\ncrush_location = \"rack\"\n");
        assert!(boot_crush_location(&bad, "osd.0").is_err());
        let none = conf("[global]\n");
        assert_eq!(
            boot_crush_location(&none, "osd.0").expect("ok").args(),
            vec![
                format!("host={}", short_hostname()),
                "root=default".to_string()
            ]
        );
    }

    /// An executable script in `dir` with `body`.
    fn hook(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write hook");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    #[test]
    fn location_hook_is_run_with_cephs_arguments() {
        let dir = tempfile::tempdir().expect("tempdir");
        // It echoes its arguments into the location, so they are checked.
        let h = hook(
            dir.path(),
            "args",
            r#"[ "$1 $2 $3 $5 $6" = "--cluster kalmar --id --type osd" ] || exit 3
echo "root=default rack=r$4 host=node$4""#,
        );
        let loc = run_location_hook(&h, 7, CRUSH_LOCATION_HOOK_TIMEOUT).expect("ran");
        assert_eq!(loc.args(), vec!["root=default", "rack=r7", "host=node7"]);
        // The conf names it: its location replaces crush_location; host=
        // and root= are added when it leaves them out.
        let short = hook(dir.path(), "short", "echo rack=r2");
        let c = kalmar_common::config::Conf::parse(&format!(
            "[osd]\ncrush_location = \"rack=conf\"\ncrush_location_hook = \"{}\"\n",
            short.display()
        ))
        .expect("toml");
        let (loc, warn) =
            boot_crush_location_with_hook(&c, "osd.0", 0, CRUSH_LOCATION_HOOK_TIMEOUT).expect("ok");
        assert!(warn.is_none(), "{warn:?}");
        assert_eq!(
            loc.args(),
            vec![
                format!("host={}", short_hostname()),
                "rack=r2".to_string(),
                "root=default".to_string()
            ]
        );
    }

    #[test]
    fn a_failing_hook_falls_back_to_the_conf_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            (
                hook(dir.path(), "fails", "echo nope >&2; exit 2"),
                "exited with",
            ),
            (hook(dir.path(), "silent", "true"), "printed no location"),
            (
                hook(dir.path(), "garbage", "echo 'rack r1'"),
                "is not TYPE=NAME",
            ),
            (
                hook(dir.path(), "slow", "sleep 5; echo rack=late"),
                "killed",
            ),
            (dir.path().join("missing"), "cannot run it"),
        ];
        for (h, why) in cases {
            let c = kalmar_common::config::Conf::parse(&format!(
                "[osd]\ncrush_location = \"rack=r1 host=h1\"\ncrush_location_hook = \"{}\"\n",
                h.display()
            ))
            .expect("toml");
            let t0 = Instant::now();
            let (loc, warn) =
                boot_crush_location_with_hook(&c, "osd.3", 3, Duration::from_millis(300))
                    .expect("falls back");
            assert!(t0.elapsed() < Duration::from_secs(4), "bounded: {h:?}");
            assert_eq!(loc.args(), vec!["rack=r1", "host=h1", "root=default"]);
            let warn = warn.expect("a reason");
            assert!(warn.contains(why), "{h:?}: {warn}");
            assert!(warn.contains(&h.display().to_string()), "{warn}");
        }
        // No hook: the conf's location, no warning.
        let c = kalmar_common::config::Conf::parse("[osd]\ncrush_location = \"host=h5\"\n")
            .expect("toml");
        let (loc, warn) =
            boot_crush_location_with_hook(&c, "osd.0", 0, CRUSH_LOCATION_HOOK_TIMEOUT).expect("ok");
        assert_eq!(
            (loc.args(), warn),
            (vec!["host=h5".into(), "root=default".into()], None)
        );
    }

    fn blank() -> DeviceInfo {
        DeviceInfo {
            path: "/dev/x".into(),
            size_bytes: 1 << 30,
            rotational: false,
            model: String::new(),
            device_class: "ssd",
            kalmar_label: false,
            signature: None,
            partition_table: None,
            partitions: vec![],
            mounted: vec![],
            holders: vec![],
            busy: false,
            swap: false,
            reject_reasons: vec![],
        }
    }

    #[test]
    fn every_kind_of_use_is_a_reason_to_refuse() {
        assert!(reject_reasons(&blank()).is_empty());
        type Case = (fn(&mut DeviceInfo), &'static str);
        let cases: Vec<Case> = vec![
            (|d| d.mounted = vec!["/srv".into()], "mounted at /srv"),
            (|d| d.swap = true, "swap"),
            (|d| d.holders = vec!["dm-0".into()], "held by dm-0"),
            (|d| d.busy = true, "another process"),
            (|d| d.kalmar_label = true, "Kalmar store"),
            (|d| d.signature = Some("xfs".into()), "xfs"),
            (|d| d.partition_table = Some("gpt".into()), "gpt"),
            (|d| d.size_bytes = 1 << 20, "smaller"),
        ];
        for (set, want) in cases {
            let mut d = blank();
            set(&mut d);
            let r = reject_reasons(&d);
            assert!(r.len() == 1 && r[0].contains(want), "{want}: {r:?}");
        }
    }

    #[test]
    fn table_has_a_row_per_device() {
        let mut d = blank();
        d.reject_reasons = vec!["mounted at /srv".into()];
        let t = render_table(&[blank(), d]);
        assert_eq!(t.lines().count(), 3);
        assert!(
            t.contains("1.0 GiB") && t.contains("mounted at /srv"),
            "{t}"
        );
    }
}
