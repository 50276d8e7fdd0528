//! The on-disk layout, written down once.
//!
//! ```text
//! block 0        label       magic, format version, fsid, osd uuid, sizes
//! block 1, 2     superblock  two copies, written alternately (highest valid
//!                            sb_seq wins), so a torn write cannot lose both
//! 1 MiB ..       journal     divided into zones, one per commit engine;
//!                            each a circular log of records (see `journal`)
//! .. end         data area   object data in BLOCK_SIZE blocks
//! ```
//!
//! The journal is addressed in sectors of `Label::journal_sector` bytes
//! (the device's direct-I/O granularity, 512 on most devices), so a small
//! record (header and metadata) costs one sector, not a whole block. The
//! number of zones is chosen at each mount (the superblock records the
//! division the last mount used; replay follows it, and the checkpoint that
//! ends a mount leaves every zone empty, so the next mount may divide the
//! journal differently).
//!
//! Every structure carries a magic, a version and a crc32c, and is checked on
//! read before anything in it is trusted.

use bytemuck::{Pod, Zeroable};
use kalmar_common::encoding::{Decode, DecodeError, Encode};
use kalmar_common::impl_versioned;
use uuid::Uuid;

/// The unit of allocation, checksumming and data I/O.
pub const BLOCK_SIZE: u64 = 4096;
/// The on-disk format this build writes and the only one it reads.
/// Version 1 had a single block-granular journal.
pub const FORMAT_VERSION: u32 = 2;

pub const LABEL_MAGIC: [u8; 8] = *b"KLMR_OSL";
pub const SUPERBLOCK_MAGIC: [u8; 8] = *b"KLMR_OSS";
pub const RECORD_MAGIC: [u8; 8] = *b"KLMR_JRN";

pub const LABEL_OFFSET: u64 = 0;
pub const SUPERBLOCK_OFFSETS: [u64; 2] = [BLOCK_SIZE, 2 * BLOCK_SIZE];
/// Zones start on 1 MiB boundaries: friendlier to RAID stripes and SSD pages.
pub const ZONE_ALIGN: u64 = 1 << 20;
pub const MIN_JOURNAL_BYTES: u64 = 1 << 20;
pub const MAX_JOURNAL_BYTES: u64 = 1 << 30;
pub const MIN_DATA_BYTES: u64 = 1 << 20;
/// Smallest and largest journal sector a store accepts.
pub const MIN_SECTOR: u32 = 512;
pub const MAX_SECTOR: u32 = BLOCK_SIZE as u32;
/// Most journal zones (commit engines) a mount may use.
pub const MAX_ZONES: usize = 64;
/// Smallest journal zone, in bytes: a zone must hold a few records of the
/// largest ordinary batch.
pub const MIN_ZONE_BYTES: u64 = 256 << 10;

const _: () = assert!(BLOCK_SIZE.is_power_of_two());
const _: () = assert!(ZONE_ALIGN.is_multiple_of(BLOCK_SIZE));
const _: () = assert!(SUPERBLOCK_OFFSETS[1] + BLOCK_SIZE <= ZONE_ALIGN);
const _: () = assert!(RECORD_HEADER_BYTES <= MIN_SECTOR as usize);
const _: () = assert!(std::mem::size_of::<RawRecordHeader>() == RECORD_HEADER_BYTES);
// The raw header is read and written as the machine's integers.
#[cfg(not(target_endian = "little"))]
compile_error!("the on-disk structs are little-endian; this target is not");

pub fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

pub fn align_down(v: u64, a: u64) -> u64 {
    v / a * a
}

/// Byte ranges of the zones, derived from the device size and the journal
/// size chosen at mkfs (both recorded in the label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub device_bytes: u64,
    pub journal_offset: u64,
    pub journal_bytes: u64,
    pub data_offset: u64,
    pub data_bytes: u64,
    /// The journal's addressing unit in bytes.
    pub sector: u64,
}

/// One journal zone: `[start, start + sectors)`, in sectors from the start
/// of the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneRange {
    pub start: u64,
    pub sectors: u64,
}

impl Layout {
    /// The journal size mkfs picks when none is given: 1/16 of the device,
    /// between 1 MiB and 1 GiB.
    pub fn default_journal_bytes(device_bytes: u64) -> u64 {
        align_down(device_bytes / 16, ZONE_ALIGN).clamp(MIN_JOURNAL_BYTES, MAX_JOURNAL_BYTES)
    }

    /// Smallest device that can hold a store.
    pub fn min_device_bytes() -> u64 {
        ZONE_ALIGN + MIN_JOURNAL_BYTES + MIN_DATA_BYTES
    }

    /// Computes the zones; `None` when the device is too small or the
    /// sector is not a power of two in [`MIN_SECTOR`, `MAX_SECTOR`].
    pub fn compute(device_bytes: u64, journal_bytes: u64, sector: u32) -> Option<Layout> {
        if !sector.is_power_of_two() || !(MIN_SECTOR..=MAX_SECTOR).contains(&sector) {
            return None;
        }
        let journal_bytes = align_up(journal_bytes.max(MIN_JOURNAL_BYTES), ZONE_ALIGN);
        let journal_offset = ZONE_ALIGN;
        let data_offset = journal_offset + journal_bytes;
        let end = align_down(device_bytes, BLOCK_SIZE);
        if end < data_offset + MIN_DATA_BYTES {
            return None;
        }
        Some(Layout {
            device_bytes,
            journal_offset,
            journal_bytes,
            data_offset,
            data_bytes: end - data_offset,
            sector: sector as u64,
        })
    }

    pub fn data_blocks(&self) -> u64 {
        self.data_bytes / BLOCK_SIZE
    }

    pub fn journal_sectors(&self) -> u64 {
        self.journal_bytes / self.sector
    }

    /// Most zones the journal can be divided into.
    pub fn max_zones(&self) -> usize {
        ((self.journal_bytes / MIN_ZONE_BYTES) as usize).clamp(1, MAX_ZONES)
    }

    /// Zone `i` of a division into `n` equal zones (the last one takes the
    /// remainder).
    pub fn zone(&self, i: usize, n: usize) -> ZoneRange {
        let n = n.max(1) as u64;
        let each = self.journal_sectors() / n;
        let start = each * i as u64;
        let sectors = if i as u64 + 1 == n {
            self.journal_sectors() - start
        } else {
            each
        };
        ZoneRange { start, sectors }
    }

    /// Device offset of a journal sector.
    pub fn journal_sector_offset(&self, sector: u64) -> u64 {
        self.journal_offset + sector * self.sector
    }

    /// Device offset of a data-area block.
    pub fn block_offset(&self, block: u64) -> u64 {
        self.data_offset + block * BLOCK_SIZE
    }
}

/// The label's versioned body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Label {
    pub fsid: Uuid,
    pub osd_uuid: Uuid,
    pub device_bytes: u64,
    pub block_size: u32,
    pub journal_offset: u64,
    pub journal_bytes: u64,
    pub data_offset: u64,
    /// Random per mkfs; every journal record carries it, so records left
    /// over from an earlier store on the same device never replay.
    pub journal_nonce: u64,
    /// Random per mkfs; the metadata database stores the same value, so a
    /// device is never mounted with another store's metadata.
    pub kv_instance: Uuid,
    /// Absolute path of the metadata directory chosen at mkfs.
    pub kv_path_hint: String,
    pub created_unix_secs: u64,
    /// The journal's addressing unit: the device's direct-I/O granularity
    /// at mkfs.
    pub journal_sector: u32,
}
impl_versioned!(Label, "objectstore label", version = 2, compat = 2, {
    fsid, osd_uuid, device_bytes, block_size, journal_offset, journal_bytes, data_offset,
    journal_nonce, kv_instance, kv_path_hint, created_unix_secs, journal_sector
});

impl Label {
    pub fn layout(&self) -> Option<Layout> {
        let l = Layout::compute(self.device_bytes, self.journal_bytes, self.journal_sector)?;
        (l.journal_offset == self.journal_offset && l.data_offset == self.data_offset).then_some(l)
    }
}

/// Where one journal zone's live records start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ZoneStart {
    /// Sector of the first live record, relative to the zone's start.
    pub pos: u64,
    /// Sequence number of that record (each zone numbers its own).
    pub seq: u64,
}
impl_versioned!(ZoneStart, "journal zone start", version = 1, compat = 1, { pos, seq });

/// The superblock's versioned body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Incremented on every write; the valid copy with the highest wins.
    pub sb_seq: u64,
    /// Incremented on every mount; records carry the generation that wrote
    /// them and replay refuses a record older than its predecessor.
    pub generation: u64,
    pub clean_umount: bool,
    pub osd_uuid: Uuid,
    /// The journal's division into zones, and where each one's live records
    /// start.
    pub zones: Vec<ZoneStart>,
}
impl_versioned!(Superblock, "objectstore superblock", version = 2, compat = 2, {
    sb_seq, generation, clean_umount, osd_uuid, zones
});

/// Why a label or superblock block was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockCheck {
    BadMagic,
    /// Written by a format this build does not read (older or newer).
    OtherFormat(u32),
    Corrupt(String),
}

impl std::fmt::Display for BlockCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockCheck::BadMagic => f.write_str("wrong magic"),
            BlockCheck::OtherFormat(v) => write!(f, "format version {v}"),
            BlockCheck::Corrupt(d) => write!(f, "corrupt: {d}"),
        }
    }
}

/// Writes `magic, format version, body length, body, crc32c` into one block.
pub fn encode_block<T: Encode>(magic: [u8; 8], body: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(BLOCK_SIZE as usize);
    out.extend_from_slice(&magic);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    let body = body.to_bytes();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert!(
        out.len() as u64 <= BLOCK_SIZE,
        "label and superblock fit one block"
    );
    out.resize(BLOCK_SIZE as usize, 0);
    out
}

/// Checks and decodes a block written by [`encode_block`].
pub fn decode_block<T: Decode>(magic: [u8; 8], block: &[u8]) -> Result<T, BlockCheck> {
    if block.len() < 20 || block[0..8] != magic {
        return Err(BlockCheck::BadMagic);
    }
    let version = u32::from_le_bytes([block[8], block[9], block[10], block[11]]);
    if version != FORMAT_VERSION {
        return Err(BlockCheck::OtherFormat(version));
    }
    let body_len = u32::from_le_bytes([block[12], block[13], block[14], block[15]]) as usize;
    let end = 16usize
        .checked_add(body_len)
        .filter(|e| e + 4 <= block.len())
        .ok_or_else(|| {
            BlockCheck::Corrupt(format!("body length {body_len} does not fit the block"))
        })?;
    let stored = u32::from_le_bytes([block[end], block[end + 1], block[end + 2], block[end + 3]]);
    let computed = crc32c::crc32c(&block[..end]);
    if stored != computed {
        return Err(BlockCheck::Corrupt(format!(
            "crc stored {stored:#010x}, computed {computed:#010x}"
        )));
    }
    T::from_bytes(&block[16..end]).map_err(|e: DecodeError| BlockCheck::Corrupt(e.to_string()))
}

/// Kinds of journal record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A group of committed transactions.
    Txns = 1,
    /// Filler at the end of the zone: the next record is at the zone start.
    Pad = 2,
}

pub const RECORD_HEADER_BYTES: usize = 64;
/// Version 2: sizes and positions in journal sectors.
pub const RECORD_VERSION: u16 = 2;
const RECORD_CRC_AT: usize = 12;

/// The header as it lies on disk (little-endian integers, no padding).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RawRecordHeader {
    magic: [u8; 8],
    version: u16,
    kind: u16,
    /// crc32c of the whole record with this field zero.
    crc: u32,
    seq: u64,
    generation: u64,
    nonce: u64,
    total_sectors: u32,
    meta_len: u32,
    data_blocks: u32,
    n_txns: u32,
    durable_seq: u64,
}
const _: () = assert!(std::mem::offset_of!(RawRecordHeader, crc) == RECORD_CRC_AT);

/// The fixed 64-byte header at the start of every journal record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: RecordKind,
    pub seq: u64,
    pub generation: u64,
    pub nonce: u64,
    /// Whole record length in journal sectors (header, metadata, data).
    pub total_sectors: u32,
    /// Bytes of encoded metadata after the header.
    pub meta_len: u32,
    /// Data blocks at the end of the record.
    pub data_blocks: u32,
    pub n_txns: u32,
    /// Every record up to this sequence number was durable when this one
    /// was written (replay's proof that they were acknowledged).
    pub durable_seq: u64,
}

impl RecordHeader {
    /// Writes the header into `buf[..64]` with a zero crc field.
    pub fn write_to(&self, buf: &mut [u8]) {
        let raw = RawRecordHeader {
            magic: RECORD_MAGIC,
            version: RECORD_VERSION,
            kind: self.kind as u16,
            crc: 0,
            seq: self.seq,
            generation: self.generation,
            nonce: self.nonce,
            total_sectors: self.total_sectors,
            meta_len: self.meta_len,
            data_blocks: self.data_blocks,
            n_txns: self.n_txns,
            durable_seq: self.durable_seq,
        };
        buf[..RECORD_HEADER_BYTES].copy_from_slice(bytemuck::bytes_of(&raw));
    }

    /// Parses the header fields of a record of `sector`-byte sectors; says
    /// nothing about the crc.
    pub fn parse(buf: &[u8], sector: u64) -> Result<RecordHeader, String> {
        let Some(head) = buf.get(..RECORD_HEADER_BYTES) else {
            return Err("short header".into());
        };
        let raw: RawRecordHeader = bytemuck::pod_read_unaligned(head);
        if raw.magic != RECORD_MAGIC {
            return Err("no record magic".into());
        }
        if raw.version != RECORD_VERSION {
            return Err(format!("record version {}", raw.version));
        }
        let kind = match raw.kind {
            1 => RecordKind::Txns,
            2 => RecordKind::Pad,
            k => return Err(format!("unknown record kind {k}")),
        };
        let h = RecordHeader {
            kind,
            seq: raw.seq,
            generation: raw.generation,
            nonce: raw.nonce,
            total_sectors: raw.total_sectors,
            meta_len: raw.meta_len,
            data_blocks: raw.data_blocks,
            n_txns: raw.n_txns,
            durable_seq: raw.durable_seq,
        };
        let expect = h.meta_sectors(sector) + h.data_blocks as u64 * (BLOCK_SIZE / sector);
        if h.total_sectors == 0 || expect != h.total_sectors as u64 {
            return Err(format!(
                "inconsistent sizes: total {} sectors, meta {} bytes, data {} blocks",
                h.total_sectors, h.meta_len, h.data_blocks
            ));
        }
        Ok(h)
    }

    /// Sectors taken by the header and the metadata, before the data.
    pub fn meta_sectors(&self, sector: u64) -> u64 {
        (RECORD_HEADER_BYTES as u64 + self.meta_len as u64).div_ceil(sector)
    }
}

/// Computes the record crc over `record` (whole record bytes) as if the crc
/// field were zero.
pub fn record_crc(record: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&record[..RECORD_CRC_AT]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc32c::crc32c_append(crc, &record[RECORD_CRC_AT + 4..])
}

pub fn set_record_crc(record: &mut [u8]) {
    let crc = record_crc(record);
    record[RECORD_CRC_AT..RECORD_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
}

pub fn stored_record_crc(record: &[u8]) -> u32 {
    u32::from_le_bytes([
        record[RECORD_CRC_AT],
        record[RECORD_CRC_AT + 1],
        record[RECORD_CRC_AT + 2],
        record[RECORD_CRC_AT + 3],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label() -> Label {
        Label {
            fsid: Uuid::from_u128(1),
            osd_uuid: Uuid::from_u128(2),
            device_bytes: 64 << 20,
            block_size: BLOCK_SIZE as u32,
            journal_offset: ZONE_ALIGN,
            journal_bytes: 4 << 20,
            data_offset: ZONE_ALIGN + (4 << 20),
            journal_nonce: 77,
            kv_instance: Uuid::from_u128(3),
            kv_path_hint: "/x/y.db".into(),
            created_unix_secs: 5,
            journal_sector: 512,
        }
    }

    #[test]
    fn label_roundtrip_and_checks() {
        let b = encode_block(LABEL_MAGIC, &label());
        assert_eq!(b.len() as u64, BLOCK_SIZE);
        assert_eq!(decode_block::<Label>(LABEL_MAGIC, &b), Ok(label()));
        assert_eq!(
            decode_block::<Label>(SUPERBLOCK_MAGIC, &b),
            Err(BlockCheck::BadMagic)
        );
        for i in 0..60 {
            let mut c = b.clone();
            c[i] ^= 0x10;
            assert!(
                decode_block::<Label>(LABEL_MAGIC, &c).is_err(),
                "flip at {i} detected"
            );
        }
        let mut newer = b.clone();
        newer[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        assert_eq!(
            decode_block::<Label>(LABEL_MAGIC, &newer),
            Err(BlockCheck::OtherFormat(FORMAT_VERSION + 1))
        );
        let mut older = b.clone();
        older[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            decode_block::<Label>(LABEL_MAGIC, &older),
            Err(BlockCheck::OtherFormat(1))
        );
        assert!(label().layout().is_some());
    }

    #[test]
    fn layout_bounds_and_zones() {
        assert!(Layout::compute(Layout::min_device_bytes() - BLOCK_SIZE, 0, 512).is_none());
        assert!(
            Layout::compute(64 << 20, 0, 1000).is_none(),
            "not a power of two"
        );
        assert!(
            Layout::compute(64 << 20, 0, 8192).is_none(),
            "larger than a block"
        );
        let l = Layout::compute(Layout::min_device_bytes(), 0, 512).expect("fits");
        assert_eq!(l.data_bytes, MIN_DATA_BYTES);
        assert_eq!(Layout::default_journal_bytes(8 << 20), MIN_JOURNAL_BYTES);
        assert_eq!(Layout::default_journal_bytes(1 << 40), MAX_JOURNAL_BYTES);
        let l = Layout::compute((1 << 30) + 123, 64 << 20, 512).expect("fits");
        assert_eq!(l.data_offset % ZONE_ALIGN, 0);
        assert_eq!(l.data_bytes % BLOCK_SIZE, 0);
        // Zones tile the journal exactly, whatever the division.
        for n in 1..=7usize {
            let mut next = 0;
            for i in 0..n {
                let z = l.zone(i, n);
                assert_eq!(z.start, next);
                assert!(z.sectors > 0);
                next = z.start + z.sectors;
            }
            assert_eq!(next, l.journal_sectors());
        }
        assert_eq!(l.max_zones(), MAX_ZONES);
        let small = Layout::compute(64 << 20, 1 << 20, 512).expect("fits");
        assert_eq!(small.max_zones(), 4);
    }

    #[test]
    fn record_header_roundtrip() {
        let h = RecordHeader {
            kind: RecordKind::Txns,
            seq: 9,
            generation: 2,
            nonce: 3,
            total_sectors: 17,
            meta_len: 100,
            data_blocks: 2,
            n_txns: 4,
            durable_seq: 8,
        };
        let mut buf = vec![0u8; 17 * 512];
        h.write_to(&mut buf);
        set_record_crc(&mut buf);
        assert_eq!(RecordHeader::parse(&buf, 512), Ok(h));
        assert_eq!(stored_record_crc(&buf), record_crc(&buf));
        // The same bytes do not describe a record of 4 KiB sectors.
        assert!(RecordHeader::parse(&buf, 4096).is_err());
        buf[5000] ^= 1;
        assert_ne!(stored_record_crc(&buf), record_crc(&buf));
        let mut bad = h;
        bad.data_blocks = 5;
        bad.write_to(&mut buf);
        assert!(RecordHeader::parse(&buf, 512).is_err());
        // Fields sit where the format says.
        h.write_to(&mut buf);
        assert_eq!(&buf[0..8], &RECORD_MAGIC);
        assert_eq!(u64::from_le_bytes(buf[16..24].try_into().expect("8")), 9);
        assert_eq!(u32::from_le_bytes(buf[40..44].try_into().expect("4")), 17);
        assert_eq!(u64::from_le_bytes(buf[56..64].try_into().expect("8")), 8);
    }
}
