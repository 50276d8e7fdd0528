//! The journal: record format, placement in a circular zone, and the
//! replay scan.
//!
//! The journal is divided into zones, one per commit engine (see
//! [`crate::layout`]); each zone is a circular log with its own sequence
//! numbers. A record is sector-aligned: the 64-byte header, the encoded
//! metadata (database operations, allocations, the home locations of the
//! deferred data), zero padding to a sector boundary, then the deferred
//! data blocks. One crc32c covers the whole record. Records follow each
//! other; a record that does not fit before the end of its zone is
//! preceded by a one-sector pad record and placed at the zone start.
//!
//! Replay starts at the superblock's start of each zone and accepts a
//! record only if its magic, version, nonce (this store), sequence number
//! (exactly the next), generation (not older than its predecessor, not
//! newer than the superblock) and crc all check. The first record that
//! fails ends the zone's replay.
//!
//! Several records may be in flight at once (written, not yet flushed), so
//! the device may keep a later one and lose an earlier one. Each record
//! therefore says up to which sequence number everything was durable when
//! it was written (`durable_seq`). Replay uses that twice: a record that no
//! later record proves durable may point at big-write data that never made
//! it, so that data is checked (see [`BigRun`]); and a valid record that
//! proves the failing one durable means corruption in the middle, not a
//! torn tail: [`find_later_record`] looks for that.

use kalmar_common::encoding::{Decode, DecodeError, Decoder, Encode};

/// What a transaction costs in a journal record, as the commit engine
/// counts it against its record limit ([`crate::CommitEngine::max_record_bytes`]):
/// these fixed amounts plus the bytes of the keys and values themselves.
/// Callers that must know in advance that a transaction fits (the OSD's
/// PG log rewrite) add them up the same way.
pub mod cost {
    /// Every record: header and batch framing.
    pub const RECORD_BASE_BYTES: u64 = 256;
    /// Each database key set or deleted, besides its key and value.
    pub const KV_CHANGE_BYTES: u64 = 9;
    /// Each collection whose log a record changes.
    pub const LOG_DELTA_BYTES: u64 = 32;
    /// Each item appended to a collection log, besides its value.
    pub const LOG_ITEM_BYTES: u64 = 24;
}

use crate::alloc::Extent;
use crate::collog::LogOp;
use crate::device::{AlignedBuf, BlockDevice, IoOp};
use crate::error::{DeviceError, StoreError};
use crate::kv::KvOp;
use crate::layer::Layer;
use crate::layout::{
    record_crc, set_record_crc, stored_record_crc, Layout, RecordHeader, RecordKind, ZoneRange,
    BLOCK_SIZE, RECORD_HEADER_BYTES,
};

/// Deferred data for `blocks` consecutive data-area blocks from `phys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeferredRun {
    pub phys: u64,
    pub blocks: u32,
}

/// Newly allocated blocks `[phys, phys + blocks)` written (not
/// journaled) by the record's transactions, with the crc32c of each block,
/// which replay checks for the records no later record proves durable: the
/// data and the record go to the device together, ahead of one flush, so
/// only those can point at data that did not make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigRun {
    pub phys: u64,
    pub blocks: u32,
    pub crcs: Vec<u32>,
}

/// Changes of the store-wide counters made by a record's transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsDelta {
    pub objects: i64,
    pub stored_bytes: i64,
}

/// The metadata part of a record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordMeta {
    /// Database changes with their final values.
    pub kv_ops: Vec<KvOp>,
    pub deferred: Vec<DeferredRun>,
    pub big: Vec<BigRun>,
    /// Blocks the record's transactions started to use...
    pub allocs: Vec<Extent>,
    /// ... and stopped using (reusable after a checkpoint covers them).
    pub frees: Vec<Extent>,
    pub stats: StatsDelta,
    /// Highest object id the record's transactions handed out (0: none).
    pub max_nid: u64,
    /// Changes of collection logs.
    pub logs: Vec<LogOp>,
}

fn encode_extents(v: &[Extent], buf: &mut Vec<u8>) {
    (v.len() as u32).encode(buf);
    for e in v {
        e.start.encode(buf);
        e.len.encode(buf);
    }
}

fn decode_extents(d: &mut Decoder<'_>, what: &'static str) -> Result<Vec<Extent>, DecodeError> {
    let n = d.len_prefix(16, what)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(Extent {
            start: d.u64()?,
            len: d.u64()?,
        });
    }
    Ok(v)
}

impl Encode for RecordMeta {
    fn encode(&self, buf: &mut Vec<u8>) {
        self.encode_parts(
            buf,
            |buf| self.kv_ops.encode(buf),
            |buf| self.logs.encode(buf),
        );
    }
}

impl RecordMeta {
    /// The record metadata of a batch, whose database and log changes are
    /// read from its layer (`kv_ops` and `logs` of `self` are not used):
    /// the same bytes as a `RecordMeta` holding copies of them, without
    /// the copies.
    pub fn encode_from_layer(&self, layer: &Layer) -> Vec<u8> {
        kalmar_common::encoding::encode_exact(|buf| {
            self.encode_parts(
                buf,
                |buf| {
                    let ops = layer.kv_op_refs();
                    (ops.len() as u32).encode(buf);
                    for op in ops {
                        op.encode(buf);
                    }
                },
                |buf| {
                    (layer.logs().len() as u32).encode(buf);
                    for (cid, delta) in layer.logs() {
                        crate::collog::encode_log_op(cid, delta, buf);
                    }
                },
            )
        })
    }

    fn encode_parts(
        &self,
        buf: &mut Vec<u8>,
        kv_ops: impl FnOnce(&mut Vec<u8>),
        logs: impl FnOnce(&mut Vec<u8>),
    ) {
        kalmar_common::encoding::encode_versioned(buf, 3, 3, |buf| {
            kv_ops(buf);
            (self.deferred.len() as u32).encode(buf);
            for r in &self.deferred {
                r.phys.encode(buf);
                r.blocks.encode(buf);
            }
            (self.big.len() as u32).encode(buf);
            for r in &self.big {
                r.phys.encode(buf);
                r.blocks.encode(buf);
                for c in &r.crcs {
                    c.encode(buf);
                }
            }
            encode_extents(&self.allocs, buf);
            encode_extents(&self.frees, buf);
            self.stats.objects.encode(buf);
            self.stats.stored_bytes.encode(buf);
            self.max_nid.encode(buf);
            logs(buf);
        });
    }
}

impl Decode for RecordMeta {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.versioned("journal record meta", 3, |d, _| {
            let kv_ops = Vec::<KvOp>::decode(d)?;
            let n = d.len_prefix(12, "deferred runs")?;
            let mut deferred = Vec::with_capacity(n);
            for _ in 0..n {
                deferred.push(DeferredRun {
                    phys: d.u64()?,
                    blocks: d.u32()?,
                });
            }
            let n = d.len_prefix(12, "big runs")?;
            let mut big = Vec::with_capacity(n);
            for _ in 0..n {
                let phys = d.u64()?;
                let blocks = d.u32()?;
                let want = (blocks as usize).saturating_mul(4);
                if want > d.remaining() {
                    return Err(DecodeError::Truncated {
                        needed: want - d.remaining(),
                        context: "big run block crcs",
                    });
                }
                let crcs = (0..blocks).map(|_| d.u32()).collect::<Result<_, _>>()?;
                big.push(BigRun { phys, blocks, crcs });
            }
            let allocs = decode_extents(d, "allocated extents")?;
            let frees = decode_extents(d, "freed extents")?;
            let stats = StatsDelta {
                objects: i64::decode(d)?,
                stored_bytes: i64::decode(d)?,
            };
            let max_nid = d.u64()?;
            let logs = Vec::<LogOp>::decode(d)?;
            Ok(RecordMeta {
                kv_ops,
                deferred,
                big,
                allocs,
                frees,
                stats,
                max_nid,
                logs,
            })
        })
    }
}

impl RecordMeta {
    pub fn data_blocks(&self) -> u64 {
        self.deferred.iter().map(|r| r.blocks as u64).sum()
    }
}

/// Identity of the record being built.
#[derive(Debug, Clone, Copy)]
pub struct RecordId {
    pub seq: u64,
    pub generation: u64,
    pub nonce: u64,
    /// See [`RecordHeader::durable_seq`].
    pub durable_seq: u64,
}

/// Sectors a record takes: header and metadata rounded up to the sector,
/// then the data blocks.
pub fn record_sectors(meta_len: usize, data_blocks: usize, sector: u64) -> u64 {
    (RECORD_HEADER_BYTES + meta_len).div_ceil(sector as usize) as u64
        + data_blocks as u64 * (BLOCK_SIZE / sector)
}

/// Builds a record of `sector`-byte sectors: header, the encoded metadata
/// `meta` (from [`RecordMeta::encode`]), then the data blocks in run order.
/// Returns the buffer and the byte offset of the first data block.
pub fn build_record(
    id: RecordId,
    n_txns: u32,
    meta: &[u8],
    data: &[&[u8]],
    sector: u64,
) -> (AlignedBuf, usize) {
    let data_at = (RECORD_HEADER_BYTES + meta.len()).div_ceil(sector as usize) * sector as usize;
    let total = data_at + data.len() * BLOCK_SIZE as usize;
    let mut buf = AlignedBuf::for_overwrite(total);
    RecordHeader {
        kind: RecordKind::Txns,
        seq: id.seq,
        generation: id.generation,
        nonce: id.nonce,
        total_sectors: (total as u64 / sector) as u32,
        meta_len: meta.len() as u32,
        data_blocks: data.len() as u32,
        n_txns,
        durable_seq: id.durable_seq,
    }
    .write_to(&mut buf);
    let meta_end = RECORD_HEADER_BYTES + meta.len();
    buf[RECORD_HEADER_BYTES..meta_end].copy_from_slice(meta);
    buf[meta_end..data_at].fill(0);
    for (i, block) in data.iter().enumerate() {
        let at = data_at + i * BLOCK_SIZE as usize;
        buf[at..at + BLOCK_SIZE as usize].copy_from_slice(block);
    }
    set_record_crc(&mut buf);
    (buf, data_at)
}

/// A one-sector pad record.
pub fn build_pad(id: RecordId, sector: u64) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(sector as usize);
    RecordHeader {
        kind: RecordKind::Pad,
        seq: id.seq,
        generation: id.generation,
        nonce: id.nonce,
        total_sectors: 1,
        meta_len: 0,
        data_blocks: 0,
        n_txns: 0,
        durable_seq: id.durable_seq,
    }
    .write_to(&mut buf);
    set_record_crc(&mut buf);
    buf
}

/// Where the next record goes, in sectors relative to its zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// A pad record is needed here first.
    pub pad_at: Option<u64>,
    pub at: u64,
    pub sectors: u64,
    /// Sectors of the zone this record uses up (including a skipped tail).
    pub consumed: u64,
}

impl Placement {
    /// The sector after the record (the next record's position).
    pub fn end(&self, zone_sectors: u64) -> u64 {
        (self.at + self.sectors) % zone_sectors
    }
}

/// Head and fill level of a circular zone, in sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalRing {
    pub zone_sectors: u64,
    pub head: u64,
    pub used: u64,
}

impl JournalRing {
    /// Places a record of `sectors` sectors; `None` when the zone lacks
    /// room until a checkpoint frees some.
    pub fn place(&self, sectors: u64) -> Option<Placement> {
        let to_end = self.zone_sectors - self.head;
        let p = if sectors <= to_end {
            Placement {
                pad_at: None,
                at: self.head,
                sectors,
                consumed: sectors,
            }
        } else {
            Placement {
                pad_at: Some(self.head),
                at: 0,
                sectors,
                consumed: to_end + sectors,
            }
        };
        (self.used + p.consumed <= self.zone_sectors).then_some(p)
    }

    pub fn advance(&mut self, p: &Placement) {
        self.head = p.end(self.zone_sectors);
        self.used += p.consumed;
    }

    pub fn release(&mut self, consumed: u64) {
        debug_assert!(consumed <= self.used, "released more than was used");
        self.used = self.used.saturating_sub(consumed);
    }
}

/// A record accepted by replay.
pub struct ReplayedRecord {
    pub header: RecordHeader,
    pub meta: RecordMeta,
    /// The whole record; deferred data starts at `data_at`.
    pub buf: AlignedBuf,
    pub data_at: usize,
    /// Position (sectors, zone-relative) of the record.
    pub pos: u64,
    /// Sectors of the zone it used up (a pad before it included).
    pub consumed: u64,
}

/// Why replay stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayEnd {
    /// Position and sequence number where the next record goes.
    pub pos: u64,
    pub seq: u64,
    /// Records accepted.
    pub records: u64,
    /// Zone sectors the accepted records use.
    pub used: u64,
    /// What was found at `pos`.
    pub reason: String,
    /// True if a record header for `seq` was there but failed its checks
    /// (torn or corrupt), false for no record at all.
    pub damaged: bool,
}

/// Where one zone's replay starts.
#[derive(Debug, Clone, Copy)]
pub struct ReplayStart {
    pub zone: ZoneRange,
    pub pos: u64,
    pub seq: u64,
    pub nonce: u64,
    pub max_generation: u64,
}

fn io_err(e: DeviceError) -> StoreError {
    StoreError::Device(e)
}

fn read_sectors(
    dev: &dyn BlockDevice,
    layout: &Layout,
    zone: ZoneRange,
    pos: u64,
    n: u64,
) -> Result<AlignedBuf, StoreError> {
    let off = layout.journal_sector_offset(zone.start + pos);
    let mut ops = [IoOp::read(off, (n * layout.sector) as usize)];
    dev.submit(&mut ops).map_err(io_err)?;
    let [op] = ops;
    Ok(op.into_read_buf().unwrap_or_else(|| AlignedBuf::zeroed(0)))
}

/// Reads and checks the record at `pos`; `Err(reason, damaged)` ends replay.
fn read_record(
    dev: &dyn BlockDevice,
    layout: &Layout,
    zone: ZoneRange,
    pos: u64,
    expect_seq: u64,
    nonce: u64,
    gen_range: (u64, u64),
) -> Result<Result<ReplayedRecord, (String, bool)>, StoreError> {
    let sector = layout.sector;
    let first = read_sectors(dev, layout, zone, pos, 1)?;
    let h = match RecordHeader::parse(&first, sector) {
        Ok(h) => h,
        Err(e) => return Ok(Err((e, false))),
    };
    if h.nonce != nonce {
        return Ok(Err((
            "record of another store (nonce differs)".into(),
            false,
        )));
    }
    if h.seq != expect_seq {
        return Ok(Err((
            format!("found seq {} where {} was expected", h.seq, expect_seq),
            false,
        )));
    }
    if h.generation < gen_range.0 || h.generation > gen_range.1 {
        return Ok(Err((
            format!(
                "generation {} outside [{}, {}] (left over from an earlier mount)",
                h.generation, gen_range.0, gen_range.1
            ),
            false,
        )));
    }
    if pos + h.total_sectors as u64 > zone.sectors {
        return Ok(Err((
            format!(
                "record of {} sectors runs past the zone end",
                h.total_sectors
            ),
            true,
        )));
    }
    let buf = if h.total_sectors > 1 {
        let mut all = read_sectors(dev, layout, zone, pos, h.total_sectors as u64)?;
        // The first sector as first read: a second read sees the same.
        all[..sector as usize].copy_from_slice(&first);
        all
    } else {
        first
    };
    let (stored, computed) = (stored_record_crc(&buf), record_crc(&buf));
    if stored != computed {
        return Ok(Err((
            format!(
                "crc mismatch (stored {stored:#010x}, computed {computed:#010x}): torn or corrupt"
            ),
            true,
        )));
    }
    let meta_end = RECORD_HEADER_BYTES + h.meta_len as usize;
    let meta = if h.kind == RecordKind::Pad {
        RecordMeta::default()
    } else {
        match RecordMeta::from_bytes(&buf[RECORD_HEADER_BYTES..meta_end]) {
            Ok(m) if m.data_blocks() == h.data_blocks as u64 => m,
            Ok(_) => return Ok(Err(("deferred runs disagree with the header".into(), true))),
            Err(e) => return Ok(Err((format!("metadata does not decode: {e}"), true))),
        }
    };
    let data_at = (h.meta_sectors(sector) * sector) as usize;
    Ok(Ok(ReplayedRecord {
        header: h,
        meta,
        buf,
        data_at,
        pos,
        consumed: h.total_sectors as u64,
    }))
}

/// Walks one zone's chain of records from `start`, calling `f` for each
/// accepted transaction record (pads are followed silently).
pub fn replay(
    dev: &dyn BlockDevice,
    layout: &Layout,
    start: ReplayStart,
    mut f: impl FnMut(ReplayedRecord) -> Result<(), StoreError>,
) -> Result<ReplayEnd, StoreError> {
    let zone = start.zone;
    let mut pos = start.pos % zone.sectors;
    let mut seq = start.seq;
    let mut last_gen = 0u64;
    let mut records = 0u64;
    let mut used = 0u64;
    // Sectors skipped by a pad, charged to the record after it.
    let mut pad_skip = 0u64;
    // Records not yet proven durable by a later record wait here.
    let mut held: std::collections::VecDeque<ReplayedRecord> = std::collections::VecDeque::new();
    let mut proven = 0u64;
    // Every accepted record advances at least one sector; a chain longer
    // than the zone means a loop, which checks above make impossible.
    for _ in 0..=zone.sectors {
        match read_record(
            dev,
            layout,
            zone,
            pos,
            seq,
            start.nonce,
            (last_gen, start.max_generation),
        )? {
            Err((reason, damaged)) => {
                // The unproven tail: apply the longest prefix whose
                // big-write data made it.
                let (keep, why) = intact_prefix(dev, layout, &held)?;
                let mut held: Vec<ReplayedRecord> = held.into_iter().collect();
                let dropped = held.split_off(keep);
                for rec in held {
                    records += 1;
                    used += rec.consumed;
                    f(rec)?;
                }
                if let (Some(first), Some(why)) = (dropped.first(), why) {
                    return Ok(ReplayEnd {
                        pos: first.pos,
                        seq: first.header.seq,
                        records,
                        used,
                        reason: format!(
                            "record seq {} and later dropped: {why} (never acknowledged)",
                            first.header.seq
                        ),
                        damaged: false,
                    });
                }
                return Ok(ReplayEnd {
                    pos,
                    seq,
                    records,
                    used,
                    reason,
                    damaged,
                });
            }
            Ok(mut rec) => {
                last_gen = rec.header.generation;
                proven = proven.max(rec.header.durable_seq);
                // A pad carries the sequence number of the record after it.
                if rec.header.kind == RecordKind::Pad {
                    pad_skip = zone.sectors - pos;
                    pos = 0;
                    continue;
                }
                rec.consumed += std::mem::take(&mut pad_skip);
                seq += 1;
                pos = (pos + rec.header.total_sectors as u64) % zone.sectors;
                held.push_back(rec);
                while held.front().is_some_and(|r| r.header.seq <= proven) {
                    if let Some(r) = held.pop_front() {
                        records += 1;
                        used += r.consumed;
                        f(r)?;
                    }
                }
            }
        }
    }
    Err(StoreError::corrupt(
        "journal",
        "record chain longer than the journal zone",
    ))
}

/// How many of the unproven `tail` records replay keeps, and why the next
/// one is dropped: the longest prefix whose big-write data is on the
/// device. A block that a record of the prefix (the same one or a later
/// one) also journals may hold that newer content instead of the big
/// write's: it is not checked, since replay rewrites it from the journal.
fn intact_prefix(
    dev: &dyn BlockDevice,
    layout: &Layout,
    tail: &std::collections::VecDeque<ReplayedRecord>,
) -> Result<(usize, Option<String>), StoreError> {
    let mut first_why = None;
    for keep in (0..=tail.len()).rev() {
        let mut rewritten = std::collections::HashSet::new();
        let mut why = None;
        for rec in tail.iter().take(keep).rev() {
            for d in &rec.meta.deferred {
                rewritten.extend(d.phys..d.phys + d.blocks as u64);
            }
            if let Some(w) = big_data_missing(dev, layout, &rec.meta, &rewritten)? {
                why = Some(w);
                break;
            }
        }
        match why {
            None => return Ok((keep, first_why)),
            Some(w) => first_why = Some(w),
        }
    }
    Ok((0, first_why))
}

/// Checks the data of a record's big runs, except blocks in `skip`; says
/// what is wrong, if anything.
fn big_data_missing(
    dev: &dyn BlockDevice,
    layout: &Layout,
    meta: &RecordMeta,
    skip: &std::collections::HashSet<u64>,
) -> Result<Option<String>, StoreError> {
    for r in &meta.big {
        if r.phys + r.blocks as u64 > layout.data_blocks() {
            return Ok(Some(format!(
                "big run at block {} runs past the data area",
                r.phys
            )));
        }
        let mut ops = [IoOp::read(
            layout.block_offset(r.phys),
            r.blocks as usize * BLOCK_SIZE as usize,
        )];
        dev.submit(&mut ops).map_err(io_err)?;
        let [op] = ops;
        let data = op.into_read_buf().unwrap_or_else(|| AlignedBuf::zeroed(0));
        let intact = r.crcs.len() == r.blocks as usize
            && data
                .chunks(BLOCK_SIZE as usize)
                .zip(&r.crcs)
                .enumerate()
                .all(|(i, (b, c))| skip.contains(&(r.phys + i as u64)) || crc32c::crc32c(b) == *c);
        if !intact {
            return Ok(Some(format!(
                "the data it wrote at block {} is not on the device",
                r.phys
            )));
        }
    }
    Ok(None)
}

/// Looks anywhere in the zone for a valid record of this store that proves
/// record `seq` durable (its `durable_seq` reaches `seq`): then `seq` was
/// acknowledged and its damage is corruption. Returns (seq, position) of
/// the first found.
pub fn find_later_record(
    dev: &dyn BlockDevice,
    layout: &Layout,
    zone: ZoneRange,
    nonce: u64,
    seq: u64,
    max_generation: u64,
) -> Result<Option<(u64, u64)>, StoreError> {
    let chunk = 256u64;
    let mut base = 0u64;
    while base < zone.sectors {
        let n = chunk.min(zone.sectors - base);
        let buf = read_sectors(dev, layout, zone, base, n)?;
        for i in 0..n {
            let s = &buf[(i * layout.sector) as usize..((i + 1) * layout.sector) as usize];
            let Ok(h) = RecordHeader::parse(s, layout.sector) else {
                continue;
            };
            if h.nonce != nonce
                || h.seq <= seq
                || h.durable_seq < seq
                || h.generation > max_generation
            {
                continue;
            }
            let pos = base + i;
            if let Ok(rec) = read_record(dev, layout, zone, pos, h.seq, nonce, (0, max_generation))?
            {
                return Ok(Some((rec.header.seq, pos)));
            }
        }
        base += n;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record encoded from a batch's layer has the bytes of one that
    /// holds copies of the layer's changes, and decodes to them.
    #[test]
    fn record_meta_from_layer_matches_the_copied_form() {
        use crate::collog::{LogDelta, LogOp};
        use crate::types::CollectionId;
        let mut layer = Layer::default();
        layer.put(b"k1".to_vec(), b"v1".to_vec());
        layer.delete(b"k0".to_vec());
        layer.delete_range(b"r0".to_vec(), b"r9".to_vec());
        let c = CollectionId::new("1.2_head").expect("cid");
        let mut d = LogDelta::default();
        d.trim(3);
        d.append(7, bytes::Bytes::from_static(b"entry"));
        layer.merge_log(&c, &d);
        let meta = RecordMeta {
            max_nid: 42,
            allocs: vec![Extent { start: 8, len: 2 }],
            ..Default::default()
        };
        let copied = RecordMeta {
            kv_ops: layer.kv_ops(),
            logs: vec![LogOp { cid: c, delta: d }],
            ..meta.clone()
        };
        let bytes = meta.encode_from_layer(&layer);
        assert_eq!(bytes, copied.to_bytes());
        assert_eq!(RecordMeta::from_bytes(&bytes).expect("decodes"), copied);
        assert_eq!(copied.kv_ops.len(), 3);
    }
    use crate::device::{FaultConfig, FaultyDevice};

    fn layout() -> Layout {
        Layout::compute(8 << 20, 1 << 20, 512).expect("layout")
    }

    fn write(dev: &dyn BlockDevice, l: &Layout, z: ZoneRange, pos: u64, buf: AlignedBuf) {
        let mut ops = [IoOp::write(
            l.journal_sector_offset(z.start + pos),
            buf,
            true,
        )];
        dev.submit(&mut ops).expect("write");
    }

    fn rec(seq: u64, generation: u64, data: usize) -> (AlignedBuf, u64) {
        let meta = RecordMeta {
            kv_ops: vec![KvOp::Put(
                format!("k{seq}").into_bytes(),
                vec![seq as u8; 10],
            )],
            deferred: (0..data)
                .map(|i| DeferredRun {
                    phys: i as u64 * 2,
                    blocks: 1,
                })
                .collect(),
            allocs: vec![Extent { start: seq, len: 1 }],
            stats: StatsDelta {
                objects: -1,
                stored_bytes: 4096,
            },
            max_nid: seq,
            ..RecordMeta::default()
        };
        let blocks: Vec<Vec<u8>> = (0..data)
            .map(|i| vec![i as u8; BLOCK_SIZE as usize])
            .collect();
        let refs: Vec<&[u8]> = blocks.iter().map(|b| &b[..]).collect();
        let id = RecordId {
            seq,
            generation,
            nonce: 42,
            durable_seq: seq - 1,
        };
        let (buf, data_at) = build_record(id, 1, &meta.to_bytes(), &refs, 512);
        assert_eq!(data_at % 512, 0);
        let n = buf.len() as u64 / 512;
        assert_eq!(n, record_sectors(meta.to_bytes().len(), data, 512));
        (buf, n)
    }

    #[test]
    fn small_records_take_one_sector_plus_data() {
        let (buf, n) = rec(1, 1, 1);
        assert_eq!(n, 1 + 8, "header and metadata in one sector, then 4 KiB");
        assert_eq!(buf.len(), 512 + 4096);
    }

    #[test]
    fn chain_replays_per_zone_and_stops_at_damage() {
        let l = layout();
        let dev = FaultyDevice::new(l.device_bytes, FaultConfig::new(0));
        // Two zones: records of zone 1 never leak into zone 0's replay.
        let (z0, z1) = (l.zone(0, 2), l.zone(1, 2));
        let mut ring = JournalRing {
            zone_sectors: z0.sectors,
            head: 0,
            used: 0,
        };
        let mut positions = Vec::new();
        for seq in 1..=5u64 {
            let (buf, n) = rec(seq, 1, seq as usize);
            let p = ring.place(n).expect("room");
            write(&dev, &l, z0, p.at, buf);
            positions.push(p.at);
            ring.advance(&p);
        }
        let (other, _) = rec(1, 1, 2);
        write(&dev, &l, z1, 0, other);
        let start = ReplayStart {
            zone: z0,
            pos: 0,
            seq: 1,
            nonce: 42,
            max_generation: 1,
        };
        let mut seen = Vec::new();
        let end = replay(&dev, &l, start, |r| {
            assert_eq!(r.meta.data_blocks(), r.header.seq);
            assert_eq!(r.meta.max_nid, r.header.seq);
            seen.push(r.header.seq);
            Ok(())
        })
        .expect("replay");
        assert_eq!(seen, vec![1, 2, 3, 4, 5]);
        assert_eq!((end.seq, end.pos, end.damaged), (6, ring.head, false));
        assert_eq!(end.used, ring.used);
        let z1_start = ReplayStart { zone: z1, ..start };
        assert_eq!(
            replay(&dev, &l, z1_start, |_| Ok(()))
                .expect("replay")
                .records,
            1
        );
        assert_eq!(
            find_later_record(&dev, &l, z0, 42, 5, 1).expect("scan"),
            None
        );

        // A flipped byte in record 3: replay stops there, and records 4 and
        // 5 show that this is corruption, not a torn tail.
        dev.corrupt_byte(l.journal_sector_offset(z0.start + positions[2]) + 600, 0x01);
        let end = replay(&dev, &l, start, |_| Ok(())).expect("replay");
        assert_eq!((end.seq, end.damaged, end.records), (3, true, 2));
        assert_eq!(
            find_later_record(&dev, &l, z0, 42, 3, 1)
                .expect("scan")
                .map(|x| x.0),
            Some(4)
        );
        // Another store's nonce never matches.
        let other = ReplayStart { nonce: 7, ..start };
        assert_eq!(
            replay(&dev, &l, other, |_| Ok(())).expect("replay").records,
            0
        );
    }

    #[test]
    fn wraps_with_pad_and_refuses_older_generation() {
        let l = layout();
        let z = l.zone(0, 1);
        let dev = FaultyDevice::new(l.device_bytes, FaultConfig::new(0));
        // Start near the end so the second record wraps.
        let mut ring = JournalRing {
            zone_sectors: z.sectors,
            head: z.sectors - 12,
            used: 0,
        };
        let (a, na) = rec(10, 2, 1);
        let pa = ring.place(na).expect("room");
        assert_eq!(pa.pad_at, None);
        write(&dev, &l, z, pa.at, a);
        ring.advance(&pa);
        let (b, nb) = rec(11, 2, 3);
        let pb = ring.place(nb).expect("room");
        assert_eq!((pb.pad_at, pb.at), (Some(z.sectors - 3), 0));
        let pad = build_pad(
            RecordId {
                seq: 11,
                generation: 2,
                nonce: 42,
                durable_seq: 10,
            },
            512,
        );
        write(&dev, &l, z, z.sectors - 3, pad);
        write(&dev, &l, z, 0, b);
        ring.advance(&pb);
        // A stale record of an older generation right after: refused.
        let (stale, _) = rec(12, 1, 0);
        write(&dev, &l, z, ring.head, stale);
        let start = ReplayStart {
            zone: z,
            pos: z.sectors - 12,
            seq: 10,
            nonce: 42,
            max_generation: 2,
        };
        let mut seen = Vec::new();
        let end = replay(&dev, &l, start, |r| {
            seen.push((r.header.seq, r.consumed));
            Ok(())
        })
        .expect("replay");
        assert_eq!(seen, vec![(10, na), (11, nb + 3)], "the pad's skip counts");
        assert_eq!(end.seq, 12);
        assert_eq!(end.used, ring.used);
        assert!(end.reason.contains("generation"), "{}", end.reason);
    }

    #[test]
    fn ring_refuses_to_overrun_the_tail() {
        let mut r = JournalRing {
            zone_sectors: 10,
            head: 0,
            used: 0,
        };
        let p = r.place(6).expect("room");
        r.advance(&p);
        assert!(r.place(5).is_none());
        let p = r.place(4).expect("room");
        r.advance(&p);
        assert_eq!((r.head, r.used), (0, 10));
        r.release(6);
        let p = r.place(3).expect("room after release");
        assert_eq!(p.at, 0);
    }

    #[test]
    fn big_runs_check_block_crcs() {
        let l = layout();
        let dev = FaultyDevice::new(l.device_bytes, FaultConfig::new(0));
        let data: Vec<u8> = (0..3 * BLOCK_SIZE as usize)
            .map(|i| (i % 253) as u8)
            .collect();
        let crcs: Vec<u32> = data
            .chunks(BLOCK_SIZE as usize)
            .map(crc32c::crc32c)
            .collect();
        let run = |crcs: Vec<u32>| RecordMeta {
            big: vec![BigRun {
                phys: 5,
                blocks: 3,
                crcs,
            }],
            ..RecordMeta::default()
        };
        let meta = run(crcs.clone());
        assert_eq!(
            RecordMeta::from_bytes(&meta.to_bytes()).expect("decodes"),
            meta
        );
        let none = std::collections::HashSet::new();
        assert!(big_data_missing(&dev, &l, &meta, &none)
            .expect("check")
            .is_some());
        // Blocks journaled again later are not checked.
        let all: std::collections::HashSet<u64> = (5..8).collect();
        assert_eq!(
            big_data_missing(&dev, &l, &meta, &all).expect("check"),
            None
        );
        let mut ops = [IoOp::write(
            l.block_offset(5),
            AlignedBuf::from_slice(&data),
            true,
        )];
        dev.submit(&mut ops).expect("write data");
        assert_eq!(
            big_data_missing(&dev, &l, &meta, &none).expect("check"),
            None
        );
        // One block short of crcs: never taken for intact.
        let short = run(crcs[..2].to_vec());
        assert!(RecordMeta::from_bytes(&short.to_bytes()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn meta_garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = RecordMeta::from_bytes(&bytes);
        }
    }
}
