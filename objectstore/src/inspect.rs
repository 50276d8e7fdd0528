//! Read-only inspection of a store's label, superblocks and journal,
//! without mounting (mounting would replay and trim the journal).

use serde::Serialize;

use crate::device::{read_at, BlockDevice};
use crate::error::StoreError;
use crate::journal::{find_later_record, replay, ReplayStart};
use crate::keys;
use crate::kv::KvOp;
use crate::layout::{
    decode_block, BlockCheck, Label, Superblock, ZoneStart, BLOCK_SIZE, LABEL_MAGIC, LABEL_OFFSET,
    SUPERBLOCK_MAGIC, SUPERBLOCK_OFFSETS,
};

/// Database keys listed per record; the rest are only counted.
const MAX_KEYS_PER_RECORD: usize = 32;

#[derive(Debug, Clone, Serialize)]
pub struct SuperblockInfo {
    pub slot: usize,
    pub sb_seq: u64,
    pub generation: u64,
    pub clean_umount: bool,
    /// Where each zone's live records start (sector, seq).
    pub zones: Vec<ZoneStart>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordInfo {
    pub seq: u64,
    pub generation: u64,
    /// Position in its zone, in journal sectors.
    pub sector: u64,
    pub sectors: u32,
    pub txns: u32,
    pub kv_ops: usize,
    pub deferred_blocks: u64,
    pub allocated_extents: usize,
    pub freed_extents: usize,
    /// The first database changes, described.
    pub changes: Vec<String>,
}

/// One zone of the journal as replay would walk it.
#[derive(Debug, Clone, Serialize)]
pub struct ZoneDump {
    pub zone: usize,
    /// Records replay would apply, in order.
    pub records: Vec<RecordInfo>,
    /// Why the chain ends there.
    pub end_reason: String,
    pub end_sector: u64,
    pub end_seq: u64,
    /// Set when a valid record follows a damaged one (corruption).
    pub later_valid_record_seq: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JournalDump {
    pub label: Label,
    pub superblocks: Vec<SuperblockInfo>,
    /// The zones of the newest superblock's division.
    pub zones: Vec<ZoneDump>,
}

fn describe(op: &KvOp) -> String {
    match op {
        KvOp::Put(k, v) => format!("put {} ({} bytes)", keys::describe(k), v.len()),
        KvOp::Delete(k) => format!("delete {}", keys::describe(k)),
        KvOp::DeleteRange(s, _) => format!("delete range from {}", keys::describe(s)),
    }
}

/// Reads the label; refuses a device that holds no store.
pub fn read_label(dev: &dyn BlockDevice) -> Result<Label, StoreError> {
    let block = read_at(dev, LABEL_OFFSET, BLOCK_SIZE as usize)?;
    decode_block::<Label>(LABEL_MAGIC, &block).map_err(|e| StoreError::NotAStore {
        path: dev.path().to_path_buf(),
        detail: match e {
            BlockCheck::BadMagic => "no Kalmar label magic".into(),
            other => format!("label: {other}"),
        },
    })
}

/// Walks the journal as replay would, applying nothing.
pub fn dump_journal(dev: &dyn BlockDevice) -> Result<JournalDump, StoreError> {
    let label = read_label(dev)?;
    let layout = label.layout().ok_or_else(|| StoreError::NotAStore {
        path: dev.path().to_path_buf(),
        detail: "label zones are inconsistent".into(),
    })?;
    let mut sbs = Vec::new();
    let mut newest: Option<Superblock> = None;
    for (slot, &off) in SUPERBLOCK_OFFSETS.iter().enumerate() {
        let block = read_at(dev, off, BLOCK_SIZE as usize)?;
        if let Ok(sb) = decode_block::<Superblock>(SUPERBLOCK_MAGIC, &block) {
            sbs.push(SuperblockInfo {
                slot,
                sb_seq: sb.sb_seq,
                generation: sb.generation,
                clean_umount: sb.clean_umount,
                zones: sb.zones.clone(),
            });
            if newest.as_ref().is_none_or(|n| sb.sb_seq > n.sb_seq) {
                newest = Some(sb);
            }
        }
    }
    let Some(sb) = newest else {
        return Err(StoreError::NoSuperblock {
            path: dev.path().to_path_buf(),
            detail: "neither copy is valid".into(),
        });
    };
    let n = sb.zones.len();
    let mut zones = Vec::with_capacity(n);
    for (z, zs) in sb.zones.iter().enumerate() {
        let zr = layout.zone(z, n);
        let start = ReplayStart {
            zone: zr,
            pos: zs.pos,
            seq: zs.seq,
            nonce: label.journal_nonce,
            max_generation: sb.generation,
        };
        let mut records = Vec::new();
        let end = replay(dev, &layout, start, |rec| {
            let mut changes: Vec<String> = rec
                .meta
                .kv_ops
                .iter()
                .take(MAX_KEYS_PER_RECORD)
                .map(describe)
                .collect();
            if rec.meta.kv_ops.len() > MAX_KEYS_PER_RECORD {
                changes.push(format!(
                    "... {} more",
                    rec.meta.kv_ops.len() - MAX_KEYS_PER_RECORD
                ));
            }
            records.push(RecordInfo {
                seq: rec.header.seq,
                generation: rec.header.generation,
                sector: rec.pos,
                sectors: rec.header.total_sectors,
                txns: rec.header.n_txns,
                kv_ops: rec.meta.kv_ops.len(),
                deferred_blocks: rec.meta.data_blocks(),
                allocated_extents: rec.meta.allocs.len(),
                freed_extents: rec.meta.frees.len(),
                changes,
            });
            Ok(())
        })?;
        let later = if end.damaged {
            find_later_record(
                dev,
                &layout,
                zr,
                label.journal_nonce,
                end.seq,
                sb.generation,
            )?
            .map(|(s, _)| s)
        } else {
            None
        };
        zones.push(ZoneDump {
            zone: z,
            records,
            end_reason: end.reason,
            end_sector: end.pos,
            end_seq: end.seq,
            later_valid_record_seq: later,
        });
    }
    Ok(JournalDump {
        label,
        superblocks: sbs,
        zones,
    })
}
