//! `kalmar-osd mkfs`: register the OSD with the mon (which hands out the
//! cluster fsid), format the device through the ObjectStore, and write the
//! OSD superblock and the meta collection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kalmar_maps::OsdId;
use kalmar_msgr::{EntityName, MsgrConfig};
use kalmar_objectstore::meta::{self as smeta, OsdSuperblock};
use kalmar_objectstore::{MkfsOptions, MountOptions, ObjectStore, StoreError, Transaction};
use kalmar_proto::mon::OsdMkfs;
use kalmar_proto::monc::{MonClient, MonClientError};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct MkfsConfig {
    pub id: OsdId,
    pub device: PathBuf,
    pub mon: SocketAddr,
    /// More mons to try (`--mon` lists).
    pub other_mons: Vec<SocketAddr>,
    /// Reformat a device that already holds a store.
    pub force: bool,
    pub journal_bytes: Option<u64>,
    pub hostname: String,
    pub timeout: Duration,
    /// The uuid to register: a new disk taking over an OSD's id carries
    /// that OSD's uuid. None: the store's own if the device holds one,
    /// else a new uuid.
    pub osd_uuid: Option<Uuid>,
    /// Device class CRUSH records at registration (empty: none).
    pub device_class: String,
    /// `osd_crush_initial_weight` (negative: unset, the store's capacity
    /// in TiB): the CRUSH weight the OSD is registered with, the same its
    /// first boot asks for.
    pub crush_initial_weight: f64,
    /// Whom the mon session authenticates as (osd.N's key, or an admin's
    /// when the id is not known yet); its entity names the session.
    pub auth: kalmar_msgr::auth::MsgrAuth,
}

#[derive(Debug, thiserror::Error)]
pub enum MkfsError {
    #[error("{device} already holds the store of osd.{whoami}; pass --force to format it again")]
    AlreadyFormatted { device: PathBuf, whoami: OsdId },
    #[error("registering with the mon at {mon}: {source}")]
    Mon {
        mon: SocketAddr,
        source: MonClientError,
    },
    #[error("the mon refused osd.{id}: {error} (errno {retval})")]
    Refused {
        id: OsdId,
        retval: i32,
        error: String,
    },
    #[error("the mon registered the OSD as osd.{got}, not osd.{want}")]
    WrongId { want: OsdId, got: OsdId },
    #[error("formatting {device}: {source}")]
    Store { device: PathBuf, source: StoreError },
    #[error("{0}")]
    Task(String),
}

/// The osd uuid of a store already on the device, with its OSD id.
fn existing(device: &Path) -> Option<(Uuid, OsdId)> {
    if !device.exists() {
        return None;
    }
    let store = ObjectStore::mount(device, &MountOptions::default()).ok()?;
    let sb = smeta::read_superblock(&store).ok().flatten();
    let out = (store.osd_uuid(), sb.map_or(-1, |s| s.whoami));
    let _ = store.umount();
    Some(out)
}

fn format(cfg: &MkfsConfig, fsid: Uuid, osd_uuid: Uuid) -> Result<(), StoreError> {
    let mut o = MkfsOptions::new(fsid, osd_uuid);
    o.force = cfg.force;
    o.journal_bytes = cfg.journal_bytes;
    ObjectStore::mkfs(&cfg.device, &o)?;
    let store = ObjectStore::mount(
        &cfg.device,
        &MountOptions {
            expected_fsid: Some(fsid),
            ..Default::default()
        },
    )?;
    write_osd_meta(&store, fsid, osd_uuid, cfg.id)?;
    store.umount()
}

/// Makes a freshly formatted store osd.`id`'s: the meta collection and
/// the OSD superblock (no maps yet).
pub fn write_osd_meta(
    store: &ObjectStore,
    fsid: Uuid,
    osd_uuid: Uuid,
    id: OsdId,
) -> Result<(), StoreError> {
    let mut t = Transaction::new();
    smeta::create_meta_collection(&mut t);
    let sb = OsdSuperblock {
        cluster_fsid: fsid,
        osd_fsid: osd_uuid,
        whoami: id,
        oldest_map: 0,
        newest_map: 0,
    };
    smeta::add_maps(&mut t, &[], &sb);
    store.apply_transaction(t)
}

/// Registers and formats; returns the cluster fsid.
pub async fn mkfs(cfg: MkfsConfig) -> Result<Uuid, MkfsError> {
    Ok(mkfs_with_id(cfg).await?.0)
}

/// Registers and formats; returns the cluster fsid and the OSD's id (the
/// mon picks the lowest free one when `cfg.id` is negative).
pub async fn mkfs_with_id(cfg: MkfsConfig) -> Result<(Uuid, OsdId), MkfsError> {
    let dev = cfg.device.clone();
    let found = tokio::task::spawn_blocking(move || existing(&dev))
        .await
        .map_err(|e| MkfsError::Task(e.to_string()))?;
    let osd_uuid = match found {
        Some((_, whoami)) if !cfg.force => {
            return Err(MkfsError::AlreadyFormatted {
                device: cfg.device.clone(),
                whoami,
            })
        }
        // Reformatting keeps the uuid, so the mon gives back the same id.
        Some((u, _)) => cfg.osd_uuid.unwrap_or(u),
        None => cfg.osd_uuid.unwrap_or_else(Uuid::new_v4),
    };
    // The weight the first boot will ask for, from the capacity the format
    // below gives the store: placed at any other weight, the OSD would draw
    // PGs it never keeps (every PG, at weight 1 beside small devices) and
    // each of them would peer twice.
    let (dev, journal_bytes) = (cfg.device.clone(), cfg.journal_bytes);
    let capacity = on_device(&cfg.device, move || {
        let mut o = MkfsOptions::new(Uuid::nil(), Uuid::nil());
        o.journal_bytes = journal_bytes;
        ObjectStore::planned_capacity(&dev, &o)
    })
    .await?;
    let weight = crate::options::initial_crush_weight(cfg.crush_initial_weight, capacity);
    let crush_weight = kalmar_maps::crush::edit::weight_from_f64(weight)
        .map_err(|e| MkfsError::Task(format!("CRUSH weight {weight}: {e}")))?;
    let keyed = cfg.auth.client.as_ref().filter(|c| c.has_key());
    let me = match keyed.map(|c| c.entity().parse::<EntityName>()) {
        Some(Ok(e)) => e,
        _ => EntityName::osd(cfg.id.max(0) as u32),
    };
    let mon_err = |source| MkfsError::Mon {
        mon: cfg.mon,
        source,
    };
    let mons: Vec<SocketAddr> = std::iter::once(cfg.mon)
        .chain(cfg.other_mons.iter().copied())
        .collect();
    let msgr = MsgrConfig {
        auth: cfg.auth.clone(),
        ..MsgrConfig::default()
    };
    let (mon, _events) = MonClient::connect_any(&mons, me, Uuid::nil(), msgr)
        .await
        .map_err(mon_err)?;
    let reply = mon
        .register_osd(
            OsdMkfs {
                uuid: osd_uuid,
                want_id: cfg.id,
                hostname: cfg.hostname.clone(),
                device_class: cfg.device_class.clone(),
                crush_weight,
                ..OsdMkfs::default()
            },
            cfg.timeout,
        )
        .await
        .map_err(mon_err)?;
    mon.close().await;
    if reply.retval != 0 {
        return Err(MkfsError::Refused {
            id: cfg.id,
            retval: reply.retval,
            error: reply.error,
        });
    }
    if cfg.id >= 0 && reply.osd_id != cfg.id {
        return Err(MkfsError::WrongId {
            want: cfg.id,
            got: reply.osd_id,
        });
    }
    let fsid = reply.fsid;
    let c = MkfsConfig {
        id: reply.osd_id,
        force: true,
        ..cfg.clone()
    };
    on_device(&cfg.device, move || format(&c, fsid, osd_uuid)).await?;
    Ok((fsid, reply.osd_id))
}

/// Runs store work on `device` off the runtime's threads.
async fn on_device<T: Send + 'static>(
    device: &Path,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, MkfsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| MkfsError::Task(e.to_string()))?
        .map_err(|source| MkfsError::Store {
            device: device.to_path_buf(),
            source,
        })
}
