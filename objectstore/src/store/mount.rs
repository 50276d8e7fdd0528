//! mkfs and mount: label and superblock checks, journal replay.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use kalmar_common::encoding::{Decode, Encode};
use parking_lot::{Condvar, Mutex};
use uuid::Uuid;

use super::apply::{write_superblock, Applier};
use super::commit::CommitState;
use super::{ApplyQueue, Shared, Space, SubmitQueue};
use crate::alloc::Allocator;
use crate::device::{read_at, write_at, BlockDevice, IoBuf, IoOp};
use crate::error::StoreError;
use crate::journal::{find_later_record, replay, JournalRing, ReplayStart};
use crate::keys;
use crate::kv::{Kv, KvOp, KvRead};
use crate::layout::{
    decode_block, encode_block, BlockCheck, Label, Layout, Superblock, BLOCK_SIZE, FORMAT_VERSION,
    LABEL_MAGIC, LABEL_OFFSET, SUPERBLOCK_MAGIC, SUPERBLOCK_OFFSETS,
};
use crate::onode::StoreStats;
use crate::overlay::DataOverlay;
use crate::settings::{MkfsOptions, MountOptions};

/// Where mkfs puts the metadata database by default: next to a file
/// (`<file>.db`), or under `/var/lib/kalmar/objectstore/` for a block
/// device.
pub fn default_db_path(device: &Path, osd_uuid: Uuid) -> PathBuf {
    let is_block = std::fs::metadata(device).is_ok_and(|m| m.file_type().is_block_device());
    if is_block {
        PathBuf::from(format!("/var/lib/kalmar/objectstore/{osd_uuid}.db"))
    } else {
        let mut s = device.as_os_str().to_owned();
        s.push(".db");
        PathBuf::from(s)
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

pub(crate) fn mkfs(path: &Path, opts: &MkfsOptions) -> Result<(), StoreError> {
    let dev = crate::device::UringDevice::open(path, Default::default())?;
    mkfs_on(&dev, opts)
}

fn read_label(dev: &dyn BlockDevice) -> Result<Result<Label, BlockCheck>, StoreError> {
    let block = read_at(dev, LABEL_OFFSET, BLOCK_SIZE as usize)?;
    Ok(decode_block::<Label>(LABEL_MAGIC, &block))
}

/// Removes an old metadata directory, refusing anything that does not
/// look like one.
fn clear_db_dir(p: &Path, force: bool) -> Result<(), StoreError> {
    let err = |detail: String| StoreError::MetadataDir {
        path: p.to_path_buf(),
        detail,
    };
    let Ok(mut entries) = std::fs::read_dir(p) else {
        return Ok(());
    };
    if entries.next().is_none() {
        return Ok(());
    }
    if !p.join("CURRENT").exists() {
        return Err(err(
            "exists, is not empty and holds no database; refusing to touch it".into(),
        ));
    }
    if !force {
        return Err(err(
            "already holds a metadata database; pass force to overwrite it".into(),
        ));
    }
    std::fs::remove_dir_all(p).map_err(|e| err(format!("cannot remove the old database: {e}")))
}

pub(crate) fn mkfs_on(dev: &dyn BlockDevice, opts: &MkfsOptions) -> Result<(), StoreError> {
    let path = dev.path().to_path_buf();
    let size = dev.size_bytes();
    let journal_bytes = opts
        .journal_bytes
        .unwrap_or_else(|| Layout::default_journal_bytes(size));
    let layout = Layout::compute(size, journal_bytes).ok_or(StoreError::DeviceTooSmall {
        path: path.clone(),
        size_bytes: size,
        min_bytes: Layout::min_device_bytes().max(journal_bytes + (2 << 20)),
    })?;
    if let Ok(old) = read_label(dev)? {
        if !opts.force {
            return Err(StoreError::AlreadyFormatted {
                path,
                osd_uuid: old.osd_uuid,
            });
        }
    }
    let db_path = absolute(
        &opts
            .db_path
            .clone()
            .unwrap_or_else(|| default_db_path(&path, opts.osd_uuid)),
    );
    clear_db_dir(&db_path, opts.force)?;
    if let Some(parent) = db_path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::MetadataDir {
            path: db_path.clone(),
            detail: format!("cannot create its parent directory: {e}"),
        })?;
    }
    let label = Label {
        fsid: opts.fsid,
        osd_uuid: opts.osd_uuid,
        device_bytes: size,
        block_size: BLOCK_SIZE as u32,
        journal_offset: layout.journal_offset,
        journal_bytes: layout.journal_bytes,
        data_offset: layout.data_offset,
        journal_nonce: rand::random::<u64>(),
        kv_instance: Uuid::new_v4(),
        kv_path_hint: db_path.to_string_lossy().into_owned(),
        created_unix_secs: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let kv = Kv::create(&db_path, &Default::default())?;
    kv.write(&[
        KvOp::Put(
            keys::STORE_KV_INSTANCE.to_vec(),
            label.kv_instance.as_bytes().to_vec(),
        ),
        KvOp::Put(keys::STORE_NEXT_NID.to_vec(), 1u64.to_le_bytes().to_vec()),
        KvOp::Put(keys::STORE_STATS.to_vec(), StoreStats::default().to_bytes()),
    ])?;
    kv.flush()?;
    drop(kv);

    // The label goes last, so a half-made store never mounts.
    write_at(
        dev,
        layout.journal_offset,
        &[0u8; BLOCK_SIZE as usize],
        false,
    )?;
    let sb = Superblock {
        sb_seq: 1,
        journal_start_pos: 0,
        journal_start_seq: 1,
        generation: 0,
        clean_umount: true,
        osd_uuid: opts.osd_uuid,
    };
    write_superblock(dev, &sb, 0)?;
    write_superblock(dev, &Superblock { sb_seq: 0, ..sb }, 1)?;
    dev.flush()?;
    write_at(dev, LABEL_OFFSET, &encode_block(LABEL_MAGIC, &label), true)?;
    dev.flush()?;
    tracing::info!(path = %path.display(), fsid = %opts.fsid, osd_uuid = %opts.osd_uuid,
        journal_bytes = layout.journal_bytes, data_bytes = layout.data_bytes, db = %db_path.display(), "mkfs done");
    Ok(())
}

/// Reads both superblock copies; returns the newest valid one and the slot
/// the next write goes to.
fn read_superblock(
    dev: &dyn BlockDevice,
    path: &Path,
    label: &Label,
) -> Result<(Superblock, usize), StoreError> {
    let mut best: Option<(Superblock, usize)> = None;
    let mut problems = Vec::new();
    for (slot, &off) in SUPERBLOCK_OFFSETS.iter().enumerate() {
        let block = read_at(dev, off, BLOCK_SIZE as usize)?;
        match decode_block::<Superblock>(SUPERBLOCK_MAGIC, &block) {
            Ok(sb) if sb.osd_uuid != label.osd_uuid => {
                problems.push(format!("copy {slot}: another osd's"))
            }
            Ok(sb) => {
                if best.as_ref().is_none_or(|(b, _)| sb.sb_seq > b.sb_seq) {
                    best = Some((sb, slot));
                }
            }
            Err(e) => problems.push(format!("copy {slot}: {e}")),
        }
    }
    if !problems.is_empty() && best.is_some() {
        tracing::warn!(path = %path.display(), problems = ?problems, "a superblock copy is damaged; using the other");
    }
    match best {
        Some((sb, slot)) => Ok((sb, slot ^ 1)),
        None => Err(StoreError::NoSuperblock {
            path: path.to_path_buf(),
            detail: problems.join("; "),
        }),
    }
}

fn check_label(
    dev: &dyn BlockDevice,
    path: &Path,
    opts: &MountOptions,
) -> Result<(Label, Layout), StoreError> {
    let label = match read_label(dev)? {
        Ok(l) => l,
        Err(BlockCheck::BadMagic) => {
            return Err(StoreError::NotAStore {
                path: path.to_path_buf(),
                detail: "no Kalmar label magic".into(),
            })
        }
        Err(BlockCheck::NewerFormat(found)) => {
            return Err(StoreError::NewerFormat {
                path: path.to_path_buf(),
                found,
                supported: FORMAT_VERSION,
            })
        }
        Err(BlockCheck::Corrupt(d)) => {
            return Err(StoreError::NotAStore {
                path: path.to_path_buf(),
                detail: format!("label is corrupt ({d})"),
            })
        }
    };
    if let Some(expected) = opts.expected_fsid {
        if expected != label.fsid {
            return Err(StoreError::WrongFsid {
                path: path.to_path_buf(),
                expected,
                found: label.fsid,
            });
        }
    }
    if dev.size_bytes() < label.device_bytes {
        return Err(StoreError::DeviceShrank {
            path: path.to_path_buf(),
            label_bytes: label.device_bytes,
            size_bytes: dev.size_bytes(),
        });
    }
    if label.block_size as u64 != BLOCK_SIZE {
        return Err(StoreError::NotAStore {
            path: path.to_path_buf(),
            detail: format!("block size {} is not {BLOCK_SIZE}", label.block_size),
        });
    }
    let layout = label.layout().ok_or_else(|| StoreError::NotAStore {
        path: path.to_path_buf(),
        detail: "label zones are inconsistent".into(),
    })?;
    Ok((label, layout))
}

fn open_kv(path: &Path, label: &Label, opts: &MountOptions) -> Result<(Kv, PathBuf), StoreError> {
    let db_path = match &opts.db_path {
        Some(p) => p.clone(),
        None => {
            let beside = default_db_path(path, label.osd_uuid);
            if beside.join("CURRENT").exists() {
                beside
            } else {
                PathBuf::from(&label.kv_path_hint)
            }
        }
    };
    let kv = Kv::open(&db_path, &opts.settings.kv)?;
    let instance = kv.get(keys::STORE_KV_INSTANCE)?;
    if instance.as_deref() != Some(label.kv_instance.as_bytes().as_slice()) {
        return Err(StoreError::MetadataDir {
            path: db_path,
            detail: format!("belongs to another store than {}", path.display()),
        });
    }
    Ok((kv, db_path))
}

/// Replays the journal into the database and the data area. Returns where
/// the next record goes.
fn replay_journal(
    dev: &dyn BlockDevice,
    path: &Path,
    kv: &Kv,
    label: &Label,
    layout: &Layout,
    sb: &Superblock,
    opts: &MountOptions,
) -> Result<(u64, u64), StoreError> {
    let start = ReplayStart {
        pos: sb.journal_start_pos,
        seq: sb.journal_start_seq,
        nonce: label.journal_nonce,
        max_generation: sb.generation,
    };
    let end = replay(dev, layout, start, |rec| {
        kv.write(&rec.meta.kv_ops)?;
        let buf = std::sync::Arc::new(rec.buf);
        let mut at = rec.data_at;
        let mut ops = Vec::with_capacity(rec.meta.deferred.len());
        for run in &rec.meta.deferred {
            let len = run.blocks as usize * BLOCK_SIZE as usize;
            ops.push(IoOp::Write {
                offset: layout.block_offset(run.phys),
                buf: IoBuf::Shared {
                    buf: buf.clone(),
                    start: at,
                    len,
                },
                fua: false,
            });
            at += len;
        }
        dev.submit(&mut ops)?;
        Ok(())
    })?;
    tracing::info!(path = %path.display(), records = end.records, next_seq = end.seq, stop = %end.reason,
        "journal replayed");
    if end.damaged || !sb.clean_umount {
        if let Some((later, pos)) =
            find_later_record(dev, layout, label.journal_nonce, end.seq, sb.generation)?
        {
            let offset = layout.journal_offset + end.pos * BLOCK_SIZE;
            if !opts.discard_journal_after_corruption {
                return Err(StoreError::JournalCorrupt {
                    seq: end.seq,
                    offset,
                    detail: format!(
                        "{}; a valid record seq {later} follows at block {pos}",
                        end.reason
                    ),
                });
            }
            tracing::error!(
                seq = end.seq,
                offset,
                later,
                "discarding journal records after a corrupt one"
            );
        } else if end.damaged {
            tracing::warn!(seq = end.seq, reason = %end.reason, "journal ends in a torn record (not acknowledged)");
        }
    }
    Ok((end.pos, end.seq))
}

pub(crate) fn mount(
    dev: std::sync::Arc<dyn BlockDevice>,
    path: &Path,
    opts: &MountOptions,
) -> Result<(Shared, CommitState, Applier), StoreError> {
    let (label, layout) = check_label(dev.as_ref(), path, opts)?;
    let (sb, next_slot) = read_superblock(dev.as_ref(), path, &label)?;
    let (kv, db_path) = open_kv(path, &label, opts)?;
    let (pos, seq) = replay_journal(dev.as_ref(), path, &kv, &label, &layout, &sb, opts)?;
    // Make the replayed state durable, then start a new generation whose
    // records replay will accept after the ones already there.
    dev.flush()?;
    kv.flush()?;
    let sb = Superblock {
        sb_seq: sb.sb_seq + 1,
        journal_start_pos: pos,
        journal_start_seq: seq,
        generation: sb.generation + 1,
        clean_umount: false,
        osd_uuid: label.osd_uuid,
    };
    write_superblock(dev.as_ref(), &sb, next_slot)?;

    let mut alloc = Allocator::new(layout.data_blocks());
    let (bs, be) = (vec![keys::P_BITMAP], vec![keys::P_BITMAP + 1]);
    let mut load_err = None;
    kv.scan(&bs, &be, &mut |k, v| {
        let seg = keys::parse_nid_key(k).map(|(_, s, _)| s);
        let r = match seg {
            Some(s) => alloc.load_segment(s, v),
            None => Err(StoreError::corrupt(keys::describe(k), "bad bitmap key")),
        };
        if let Err(e) = r {
            load_err = Some(e);
            return false;
        }
        true
    })?;
    if let Some(e) = load_err {
        return Err(e);
    }
    alloc.take_dirty();
    let next_nid = match kv.get(keys::STORE_NEXT_NID)? {
        Some(v) if v.len() == 8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(&v);
            u64::from_le_bytes(a)
        }
        _ => {
            return Err(StoreError::corrupt(
                "store next_nid",
                "missing or malformed",
            ))
        }
    };
    let stats = match kv.get(keys::STORE_STATS)? {
        Some(v) => StoreStats::from_bytes(&v).map_err(|e| StoreError::corrupt("store stats", e))?,
        None => return Err(StoreError::corrupt("store stats", "missing")),
    };
    let perf = crate::perf::build();
    perf.set(
        crate::perf::L_ALLOCATED_BYTES,
        alloc.used_blocks() * BLOCK_SIZE,
    );
    let commit = CommitState {
        next_seq: seq,
        generation: sb.generation,
        next_nid,
        stats,
    };
    let applier = Applier::new(sb, next_slot ^ 1);
    let sh = Shared {
        dev,
        kv,
        label,
        layout,
        settings: opts.settings.clone(),
        perf,
        alloc: Mutex::new(alloc),
        overlay: DataOverlay::default(),
        queue: Mutex::new(SubmitQueue::default()),
        queue_cv: Condvar::new(),
        space: Mutex::new(Space {
            ring: JournalRing {
                zone_blocks: layout.journal_blocks(),
                head: pos,
                used: 0,
            },
            checkpointed_seq: seq.saturating_sub(1),
        }),
        space_cv: Condvar::new(),
        apply_q: Mutex::new(ApplyQueue::default()),
        apply_cv: Condvar::new(),
        inflight: Mutex::new(Default::default()),
        written: Mutex::new(Default::default()),
        written_cv: Condvar::new(),
        durable_seq: std::sync::atomic::AtomicU64::new(seq.saturating_sub(1)),
        poisoned: Default::default(),
        poison_reason: Mutex::new(None),
        stats: Mutex::new(stats),
        db_path,
    };
    Ok((sh, commit, applier))
}
