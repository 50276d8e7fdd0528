//! mkfs and mount: label and superblock checks, journal replay.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::Arc;

use kalmar_common::encoding::{Decode, Encode};
use parking_lot::Mutex;
use uuid::Uuid;

use super::{default_placement, InlineDriver, Shared};
use crate::alloc::Allocator;
use crate::checkpoint::{CheckpointRecord, Checkpointer};
use crate::device::{read_at, write_at, BlockDevice, IoBuf, IoOp};
use crate::engine::{CommitEngine, EngineShared, ZoneState};
use crate::error::StoreError;
use crate::journal::{find_later_record, replay, ReplayStart};
use crate::keys;
use crate::kv::{KvOp, KvStore, RocksKv};
use crate::layer::Layer;
use crate::layout::{
    decode_block, encode_block, BlockCheck, Label, Layout, Superblock, ZoneStart, BLOCK_SIZE,
    FORMAT_VERSION, LABEL_MAGIC, LABEL_OFFSET, SUPERBLOCK_MAGIC, SUPERBLOCK_OFFSETS,
};
use crate::onode::StoreStats;
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

/// Writes `sb` to superblock slot `slot` with FUA.
pub(crate) fn write_superblock(
    dev: &dyn BlockDevice,
    sb: &Superblock,
    slot: usize,
) -> Result<(), StoreError> {
    let block = encode_block(SUPERBLOCK_MAGIC, sb);
    write_at(dev, SUPERBLOCK_OFFSETS[slot], &block, true)?;
    Ok(())
}

/// The zones mkfs lays out on `dev` with `opts`.
fn planned_layout(dev: &dyn BlockDevice, opts: &MkfsOptions) -> Result<Layout, StoreError> {
    let size = dev.size_bytes();
    let journal_bytes = opts
        .journal_bytes
        .unwrap_or_else(|| Layout::default_journal_bytes(size));
    let sector = opts
        .journal_sector
        .unwrap_or_else(|| dev.journal_sector() as u32)
        .max(dev.dio_align() as u32);
    Layout::compute(size, journal_bytes, sector).ok_or(StoreError::DeviceTooSmall {
        path: dev.path().to_path_buf(),
        size_bytes: size,
        min_bytes: Layout::min_device_bytes().max(journal_bytes + (2 << 20)),
    })
}

/// The data capacity (`statfs` total bytes) mkfs with `opts` would give
/// the store on `path`, without writing anything.
pub(crate) fn planned_capacity(path: &Path, opts: &MkfsOptions) -> Result<u64, StoreError> {
    let dev = crate::device::UringDevice::open(path, Default::default())?;
    Ok(planned_layout(&dev, opts)?.data_bytes)
}

pub(crate) fn mkfs_on(dev: &dyn BlockDevice, opts: &MkfsOptions) -> Result<(), StoreError> {
    let path = dev.path().to_path_buf();
    let layout = planned_layout(dev, opts)?;
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
    let kv: Arc<dyn KvStore> = match &opts.kv {
        Some(k) => k.0.clone(),
        None => {
            clear_db_dir(&db_path, opts.force)?;
            if let Some(parent) = db_path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::MetadataDir {
                    path: db_path.clone(),
                    detail: format!("cannot create its parent directory: {e}"),
                })?;
            }
            Arc::new(RocksKv::create(&db_path, &Default::default())?)
        }
    };
    let label = Label {
        fsid: opts.fsid,
        osd_uuid: opts.osd_uuid,
        device_bytes: layout.device_bytes,
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
        journal_sector: layout.sector as u32,
    };
    let record = CheckpointRecord {
        generation: 0,
        sealed: vec![0],
        stats: StoreStats::default(),
        next_nid: 1,
    };
    kv.write(&[
        KvOp::DeleteRange(Vec::new(), vec![0xff; 8]),
        KvOp::Put(
            keys::STORE_KV_INSTANCE.to_vec(),
            label.kv_instance.as_bytes().to_vec(),
        ),
        KvOp::Put(keys::STORE_CHECKPOINT.to_vec(), record.to_bytes()),
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
        generation: 0,
        clean_umount: true,
        osd_uuid: opts.osd_uuid,
        zones: vec![ZoneStart { pos: 0, seq: 1 }],
    };
    write_superblock(dev, &sb, 0)?;
    write_superblock(dev, &Superblock { sb_seq: 0, ..sb }, 1)?;
    dev.flush()?;
    write_at(dev, LABEL_OFFSET, &encode_block(LABEL_MAGIC, &label), true)?;
    dev.flush()?;
    tracing::info!(path = %path.display(), fsid = %opts.fsid, osd_uuid = %opts.osd_uuid,
        journal_bytes = layout.journal_bytes, journal_sector = layout.sector, data_bytes = layout.data_bytes,
        db = %db_path.display(), "mkfs done");
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
        Err(BlockCheck::OtherFormat(found)) => {
            return Err(StoreError::OtherFormat {
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

fn open_kv(
    path: &Path,
    label: &Label,
    opts: &MountOptions,
) -> Result<(Arc<dyn KvStore>, PathBuf), StoreError> {
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
    let kv: Arc<dyn KvStore> = match &opts.kv {
        Some(k) => k.0.clone(),
        None => Arc::new(RocksKv::open(&db_path, &opts.settings.kv)?),
    };
    let instance = kv.get(keys::STORE_KV_INSTANCE)?;
    if instance.as_deref() != Some(label.kv_instance.as_bytes().as_slice()) {
        return Err(StoreError::MetadataDir {
            path: db_path,
            detail: format!("belongs to another store than {}", path.display()),
        });
    }
    Ok((kv, db_path))
}

fn read_checkpoint(kv: &dyn KvStore) -> Result<CheckpointRecord, StoreError> {
    match kv.get(keys::STORE_CHECKPOINT)? {
        Some(v) => CheckpointRecord::from_bytes(&v)
            .map_err(|e| StoreError::corrupt("checkpoint record", e)),
        None => Err(StoreError::corrupt("checkpoint record", "missing")),
    }
}

fn load_allocator(kv: &dyn KvStore, layout: &Layout) -> Result<Allocator, StoreError> {
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
    Ok(alloc)
}

/// What replay rebuilt: the metadata changes not yet in the database.
struct Replayed {
    layer: Layer,
    stats: crate::journal::StatsDelta,
    max_nid: u64,
    /// One past the highest record seq found in any zone.
    next_seq: u64,
    records: u64,
}

/// Replays every zone of the last mount's division: each record's data
/// goes home; its metadata joins `Replayed::layer` unless the checkpoint
/// record says the database has it already.
#[allow(clippy::too_many_arguments)]
fn replay_journal(
    dev: &dyn BlockDevice,
    path: &Path,
    label: &Label,
    layout: &Layout,
    sb: &Superblock,
    cp: &CheckpointRecord,
    alloc: &mut Allocator,
    opts: &MountOptions,
) -> Result<Replayed, StoreError> {
    let mut out = Replayed {
        layer: Layer::default(),
        stats: Default::default(),
        max_nid: 0,
        next_seq: cp.sealed.iter().copied().max().unwrap_or(0) + 1,
        records: 0,
    };
    let n = sb.zones.len();
    for (z, start) in sb.zones.iter().enumerate() {
        out.next_seq = out.next_seq.max(start.seq);
        // The database holds the metadata of records up to `sealed`.
        let sealed = if cp.generation == sb.generation {
            cp.sealed.get(z).copied().unwrap_or(0)
        } else {
            0
        };
        let zr = layout.zone(z, n);
        let rs = ReplayStart {
            zone: zr,
            pos: start.pos,
            seq: start.seq,
            nonce: label.journal_nonce,
            max_generation: sb.generation,
        };
        let end = replay(dev, layout, rs, |rec| {
            let buf = Arc::new(rec.buf);
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
            if rec.header.seq <= sealed {
                return Ok(());
            }
            for op in &rec.meta.kv_ops {
                out.layer.apply_op(op);
            }
            for l in &rec.meta.logs {
                out.layer.merge_log(&l.cid, &l.delta);
            }
            for e in &rec.meta.allocs {
                alloc.replay_alloc(*e)?;
            }
            for e in &rec.meta.frees {
                alloc.replay_free(*e)?;
            }
            out.stats.objects += rec.meta.stats.objects;
            out.stats.stored_bytes += rec.meta.stats.stored_bytes;
            out.max_nid = out.max_nid.max(rec.meta.max_nid);
            out.records += 1;
            Ok(())
        })?;
        out.next_seq = out.next_seq.max(end.seq);
        tracing::info!(path = %path.display(), zone = z, records = end.records, next_seq = end.seq,
            stop = %end.reason, "journal zone replayed");
        if end.damaged || !sb.clean_umount {
            if let Some((later, pos)) =
                find_later_record(dev, layout, zr, label.journal_nonce, end.seq, sb.generation)?
            {
                let offset = layout.journal_sector_offset(zr.start + end.pos);
                if !opts.discard_journal_after_corruption {
                    return Err(StoreError::JournalCorrupt {
                        seq: end.seq,
                        offset,
                        detail: format!(
                            "{}; a valid record seq {later} follows at sector {pos} of zone {z}",
                            end.reason
                        ),
                    });
                }
                tracing::error!(
                    zone = z,
                    seq = end.seq,
                    offset,
                    later,
                    "discarding journal records after a corrupt one"
                );
            } else if end.damaged {
                tracing::warn!(zone = z, seq = end.seq, reason = %end.reason,
                    "journal ends in a torn record (not acknowledged)");
            }
        }
    }
    Ok(out)
}

/// Mounts: checks, replay, and the checkpoint that makes the replayed
/// state the database's and divides the journal for this mount. Returns
/// the shared state and one engine per zone.
pub(crate) fn mount(
    dev: Arc<dyn BlockDevice>,
    path: &Path,
    opts: &MountOptions,
) -> Result<(Arc<Shared>, Vec<CommitEngine>), StoreError> {
    let (label, layout) = check_label(dev.as_ref(), path, opts)?;
    if (dev.dio_align()) > layout.sector {
        return Err(StoreError::NotAStore {
            path: path.to_path_buf(),
            detail: format!(
                "the journal was laid out in {}-byte sectors; this device needs {}-byte alignment",
                layout.sector,
                dev.dio_align()
            ),
        });
    }
    let (sb, next_slot) = read_superblock(dev.as_ref(), path, &label)?;
    let (kv, db_path) = open_kv(path, &label, opts)?;
    let cp = read_checkpoint(kv.as_ref())?;
    if cp.generation < sb.generation {
        return Err(StoreError::MetadataDir {
            path: db_path,
            detail: format!(
                "the database is older (generation {}) than the device (generation {}): \
                 it is not this store's current metadata",
                cp.generation, sb.generation
            ),
        });
    }
    let mut alloc = load_allocator(kv.as_ref(), &layout)?;
    // A database ahead of the superblock (a crash inside the checkpoint
    // that ends a mount) already holds everything the journal does, and
    // that checkpoint wrote every block home first.
    let replayed = if cp.generation > sb.generation {
        Replayed {
            layer: Layer::default(),
            stats: Default::default(),
            max_nid: 0,
            next_seq: cp.sealed.iter().copied().max().unwrap_or(0) + 1,
            records: 0,
        }
    } else {
        replay_journal(
            dev.as_ref(),
            path,
            &label,
            &layout,
            &sb,
            &cp,
            &mut alloc,
            opts,
        )?
    };
    dev.flush()?;

    // This mount's division of the journal, all zones empty.
    let n = opts.settings.engines.clamp(1, layout.max_zones());
    let generation = cp.generation.max(sb.generation) + 1;
    let seq = replayed.next_seq;
    let stats = StoreStats {
        num_objects: (cp.stats.num_objects as i64 + replayed.stats.objects).max(0) as u64,
        stored_bytes: (cp.stats.stored_bytes as i64 + replayed.stats.stored_bytes).max(0) as u64,
    };
    let next_nid = cp.next_nid.max(replayed.max_nid + 1);
    let record = CheckpointRecord {
        generation,
        sealed: vec![seq - 1; n],
        stats,
        next_nid,
    };
    let mut ops = replayed.layer.to_ops();
    for seg in alloc.take_dirty() {
        ops.push(KvOp::Put(
            keys::bitmap_segment(seg),
            alloc.segment_bytes(seg),
        ));
    }
    ops.push(KvOp::Put(
        keys::STORE_CHECKPOINT.to_vec(),
        record.to_bytes(),
    ));
    kv.write(&ops)?;
    kv.flush()?;
    alloc.release_all();
    let sb = Superblock {
        sb_seq: sb.sb_seq + 1,
        generation,
        clean_umount: false,
        osd_uuid: label.osd_uuid,
        zones: vec![ZoneStart { pos: 0, seq }; n],
    };
    write_superblock(dev.as_ref(), &sb, next_slot)?;
    tracing::info!(path = %path.display(), replayed = replayed.records, engines = n, generation,
        "store mounted");

    let perf = crate::perf::build();
    perf.set(
        crate::perf::L_ALLOCATED_BYTES,
        alloc.used_blocks() * BLOCK_SIZE,
    );
    let mut engines_shared = Vec::with_capacity(n);
    for z in 0..n {
        engines_shared.push(Arc::new(EngineShared::new(
            z,
            opts.settings.max_queued_txns,
        )?));
    }
    let placement = opts
        .placement
        .as_ref()
        .map(|p| p.0.clone())
        .unwrap_or_else(|| default_placement(n));
    let sh = Arc::new(Shared {
        used_blocks: AtomicU64::new(alloc.used_blocks()),
        busy_blocks: AtomicU64::new(alloc.total_blocks() - alloc.free_blocks()),
        alloc: Mutex::new(alloc),
        next_nid: AtomicU64::new(next_nid),
        stats_objects: AtomicI64::new(stats.num_objects as i64),
        stats_bytes: AtomicI64::new(stats.stored_bytes as i64),
        checkpointer: Checkpointer::new(sb, next_slot ^ 1, stats, n),
        engines: engines_shared,
        generation,
        placement,
        poisoned: AtomicBool::new(false),
        poison_reason: Mutex::new(None),
        db_path,
        dev: dev.clone(),
        kv,
        label,
        layout,
        settings: opts.settings.clone(),
        perf,
    });
    let mut engines = Vec::with_capacity(n);
    for z in 0..n {
        let io = dev.clone().queue()?;
        engines.push(CommitEngine::new(
            sh.clone(),
            sh.engines[z].clone(),
            io,
            ZoneState {
                range: layout.zone(z, n),
                head: 0,
                used: 0,
                next_seq: seq,
                sealed_seq: seq - 1,
            },
        ));
    }
    Ok((sh, engines))
}

/// Unmounts with every engine in hand: commits what is queued, writes
/// every journaled block home, then a last checkpoint marks the store
/// clean.
pub(crate) fn quiesce_and_close(d: &InlineDriver) -> Result<(), StoreError> {
    let sh = &d.sh;
    {
        let mut engines = d.engines.lock();
        loop {
            let mut idle = true;
            for e in engines.iter_mut() {
                e.set_draining();
                e.poll();
                idle &= e.is_idle();
            }
            if let Some(reason) = sh.poisoned() {
                return Err(StoreError::Poisoned(reason));
            }
            if idle {
                break;
            }
            std::thread::yield_now();
        }
    }
    // A round the checkpointer began and did not finish (its thread stops
    // waiting at unmount) is finished first: the layers the engines
    // sealed for it are in its reports and nowhere else on their way to
    // the database.
    if let Some(open) = crate::checkpoint::open_round(sh) {
        let reports = collect_reports(d, open)?;
        crate::checkpoint::finish_round(sh, open, reports, false)?;
    }
    let round = crate::checkpoint::begin_round(sh);
    let reports = collect_reports(d, round)?;
    crate::checkpoint::finish_round(sh, round, reports, true)?;
    for e in d.engines.lock().iter_mut() {
        e.poll();
    }
    Ok(())
}

/// Polls the engines until every one reported for `round`.
fn collect_reports(
    d: &InlineDriver,
    round: u64,
) -> Result<Vec<crate::engine::SealReport>, StoreError> {
    loop {
        for e in d.engines.lock().iter_mut() {
            e.poll();
        }
        if let Some(r) = crate::checkpoint::take_reports(&d.sh, round) {
            return Ok(r);
        }
        if let Some(reason) = d.sh.poisoned() {
            return Err(StoreError::Poisoned(reason));
        }
    }
}
