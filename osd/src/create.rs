//! `kalmar-osd create`: a whole device becomes a running OSD in one step,
//! as `ceph-volume lvm create` does for Ceph: refuse a device in use,
//! register and format it, link it where the systemd unit looks
//! (`DATA_ROOT/kalmar-N/block`), enable and start `kalmar-osd@N`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kalmar_common::config::Conf;
use kalmar_maps::OsdId;
use kalmar_msgr::{EntityName, EntityType, MsgrConfig};
use kalmar_proto::monc::MonClient;
use uuid::Uuid;

use crate::devices;
use crate::mkfs::{mkfs_with_id, MkfsConfig};

pub struct CreateArgs {
    pub device: PathBuf,
    /// Reuse this id (a replaced disk); None: the lowest free id.
    pub id: Option<OsdId>,
    pub mon: Option<SocketAddr>,
    pub conf: PathBuf,
    pub force: bool,
    pub data_root: PathBuf,
    pub no_start: bool,
    pub journal_bytes: Option<u64>,
    pub timeout: Duration,
    /// `--device-class`: the class CRUSH records instead of the detected.
    pub device_class: Option<String>,
}

/// Why `device` must not be formatted (empty: it is free). A regular file
/// (tests, vstart) is checked for a Kalmar store only.
fn refusals(device: &Path) -> Result<(Vec<String>, Option<&'static str>)> {
    let meta = std::fs::metadata(device).with_context(|| format!("{}", device.display()))?;
    if meta.is_file() {
        let why = if devices::has_kalmar_label(device) {
            vec!["holds a Kalmar store".to_string()]
        } else {
            vec![]
        };
        return Ok((why, None));
    }
    let Some(name) = devices::disk_name_of(device) else {
        bail!(
            "{} is neither a whole disk (/sys/block) nor a regular file; partitions and volumes are not supported yet",
            device.display()
        );
    };
    let info = devices::inspect_disk(&name);
    Ok((info.reject_reasons, Some(info.device_class)))
}

/// Caps of an OSD's key, as Ceph's deployment tools give them.
pub const OSD_CAPS: &[&str] = &[
    "mon",
    "allow profile osd",
    "mgr",
    "allow profile osd",
    "osd",
    "allow *",
];

/// Makes (or fetches) osd.ID's key with the mon, as the admin, and writes
/// it to `path` (0600) where the OSD's keyring search finds it.
async fn register_osd_key(
    mon: SocketAddr,
    id: OsdId,
    timeout: Duration,
    auth: &kalmar_msgr::auth::MsgrAuth,
    path: &Path,
) -> Result<()> {
    let me = EntityName::new(EntityType::Client, "admin");
    let msgr = MsgrConfig {
        auth: auth.clone(),
        ..MsgrConfig::default()
    };
    let (c, _events) = MonClient::connect(mon, me, Uuid::nil(), msgr)
        .await
        .with_context(|| format!("connecting to the mon at {mon}"))?;
    let entity = format!("osd.{id}");
    let r = c
        .command(
            &serde_json::json!({"prefix": "auth get-or-create", "entity": entity,
                                "caps": OSD_CAPS, "format": "json"}),
            timeout,
        )
        .await;
    c.close().await;
    let r = r.with_context(|| format!("auth get-or-create {entity}"))?;
    if r.retval != 0 {
        bail!("auth get-or-create {entity}: {} ({})", r.outs, r.retval);
    }
    let v: serde_json::Value =
        serde_json::from_slice(&r.outbuf.0).context("auth get-or-create is not JSON")?;
    let key = v[0]["key"]
        .as_str()
        .with_context(|| format!("no key for {entity} in the reply"))?;
    let mut ring = kalmar_auth::Keyring::default();
    ring.insert(
        &entity,
        kalmar_auth::KeyringEntry {
            key: key
                .parse()
                .map_err(|e| anyhow::anyhow!("{entity}'s key: {e}"))?,
            caps: OSD_CAPS
                .chunks(2)
                .map(|p| (p[0].to_string(), p[1].to_string()))
                .collect(),
        },
    );
    ring.write_file(path)?;
    Ok(())
}

/// The uuid of `osd.id` in the cluster's map, if it exists; an error if
/// it is up (its disk is still in use somewhere).
async fn existing_osd_uuid(
    mon: SocketAddr,
    id: OsdId,
    timeout: Duration,
    auth: &kalmar_msgr::auth::MsgrAuth,
) -> Result<Option<Uuid>> {
    let me = EntityName::new(EntityType::Client, "admin");
    let msgr = MsgrConfig {
        auth: auth.clone(),
        ..MsgrConfig::default()
    };
    let (c, _events) = MonClient::connect(mon, me, Uuid::nil(), msgr)
        .await
        .with_context(|| format!("connecting to the mon at {mon}"))?;
    let r = c
        .command(
            &serde_json::json!({"prefix": "osd dump", "format": "json"}),
            timeout,
        )
        .await;
    c.close().await;
    let r = r.with_context(|| format!("osd dump from the mon at {mon}"))?;
    if r.retval != 0 {
        bail!("osd dump: {} ({})", r.outs, r.retval);
    }
    let dump: serde_json::Value =
        serde_json::from_slice(&r.outbuf.0).context("osd dump is not JSON")?;
    let Some(osd) = dump["osds"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["osd"].as_i64() == Some(i64::from(id))))
    else {
        return Ok(None);
    };
    if osd["up"].as_i64() == Some(1) {
        bail!("osd.{id} is up: stop it (systemctl stop kalmar-osd@{id}) before giving its id to another disk");
    }
    let destroyed = osd["state"]
        .as_array()
        .is_some_and(|st| st.iter().any(|s| s.as_str() == Some("destroyed")));
    if destroyed {
        // `osd destroy` cleared its uuid: the new disk registers its own
        // and the mon hands it the destroyed id (and its CRUSH place).
        return Ok(None);
    }
    Ok(osd["uuid"].as_str().and_then(|u| u.parse().ok()))
}

/// The conf section an OSD being created reads (`osd.N`, else `osd`).
fn entity_of(id: Option<OsdId>) -> String {
    id.map_or_else(|| "osd".to_string(), |i| format!("osd.{i}"))
}

fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

pub fn run(a: CreateArgs) -> Result<()> {
    let conf = if a.conf.exists() {
        Conf::load(&a.conf)?
    } else if a.mon.is_some() {
        Conf::empty()
    } else {
        bail!(
            "no conf at {} and no --mon: install Kalmar (scripts/install.sh) and set mon_host, or pass --mon IP:PORT",
            a.conf.display()
        );
    };
    kalmar_common::logging::init("warn", None).context("logging")?;
    // mon_host may list several mons (a quorum): the first is asked first.
    let mons = match a.mon {
        Some(m) => vec![m],
        None => kalmar_common::config::mon_hosts(&conf, "osd")?,
    };
    let Some((&mon, other_mons)) = mons.split_first() else {
        bail!("no mon address: set mon_host in the conf or pass --mon IP:PORT");
    };
    let (why_not, _detected) = refusals(&a.device)?;
    let conf_class = conf.get::<String>(&entity_of(a.id), "osd_class")?;
    let class = devices::choose_class(
        &a.device,
        a.device_class.as_deref().or(conf_class.as_deref()),
    );
    if !why_not.is_empty() {
        if !a.force {
            bail!(
                "refusing {}: {}; pass --force to erase it",
                a.device.display(),
                why_not.join("; ")
            );
        }
        eprintln!(
            "kalmar-osd create: --force: erasing {} ({})",
            a.device.display(),
            why_not.join("; ")
        );
    }
    let entity = entity_of(a.id);
    let host = devices::crush_host(&conf, &entity)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // A new disk for an existing id takes over that OSD's uuid, so the mon
    // hands the id back; never while that OSD is up.
    // The id is not known before the mon gives it: the mon session runs
    // as the admin (whose key the conf's keyring search finds).
    let admin = kalmar_msgr::auth::MsgrAuth::client_from_conf(&conf, "client.admin")
        .map_err(anyhow::Error::msg)?;
    let osd_uuid = match a.id {
        Some(id) => rt.block_on(existing_osd_uuid(mon, id, a.timeout, &admin))?,
        None => None,
    };
    let cfg = MkfsConfig {
        id: a.id.unwrap_or(-1),
        device: a.device.clone(),
        mon,
        other_mons: other_mons.to_vec(),
        force: a.force,
        journal_bytes: a.journal_bytes,
        hostname: host.clone(),
        crush_initial_weight: crate::options::OsdOptions::from_conf(&conf, &entity)?
            .osd_crush_initial_weight,
        timeout: a.timeout,
        osd_uuid,
        device_class: class.clone().unwrap_or_default(),
        auth: admin.clone(),
    };
    let (fsid, id) = rt.block_on(mkfs_with_id(cfg))?;
    if admin.client.as_ref().is_some_and(|c| c.has_key()) {
        let path = a
            .conf
            .parent()
            .unwrap_or(Path::new("/etc/kalmar"))
            .join(format!("kalmar.osd.{id}.keyring"));
        rt.block_on(register_osd_key(mon, id, a.timeout, &admin, &path))?;
        println!("wrote osd.{id}'s key to {}", path.display());
    }

    let dir = a.data_root.join(format!("kalmar-{id}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let link = dir.join("block");
    let target = if std::fs::metadata(&a.device)?.is_file() {
        std::fs::canonicalize(&a.device)?
    } else {
        devices::stable_path(&a.device)
    };
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(&link).with_context(|| format!("replacing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(&target, &link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
    std::fs::write(dir.join("whoami"), format!("{id}\n"))?;
    std::fs::write(dir.join("fsid"), format!("{fsid}\n"))?;
    let class = class.map_or(String::new(), |c| format!(", device class {c}"));

    println!(
        "created osd.{id} on {} (host {host}{class}) in cluster {fsid}",
        target.display()
    );

    let unit = format!("kalmar-osd@{id}");
    if a.no_start {
        println!("start it with: systemctl enable --now {unit}");
    } else if systemd_running() {
        let st = Command::new("systemctl")
            .args(["enable", "--now", &unit])
            .status()
            .context("running systemctl")?;
        if !st.success() {
            bail!("systemctl enable --now {unit} failed ({st}); the OSD is formatted, start it by hand");
        }
        println!("started {unit}");
    } else {
        println!(
            "systemd is not running here; run it with: kalmar-osd run --id {id} --device {} --conf {}",
            link.display(),
            a.conf.display()
        );
    }
    Ok(())
}
