//! The journal: record format, placement in the circular zone, and the
//! replay scan.
//!
//! A record is block-aligned: the 64-byte header, the encoded metadata
//! (database operations and the home locations of the deferred data), zero
//! padding to a block boundary, then the deferred data blocks. One crc32c
//! covers the whole record. Records follow each other; a record that does
//! not fit before the end of the zone is preceded by a one-block pad record
//! and placed at the zone start.
//!
//! Replay starts at the superblock's journal start and accepts a record only
//! if its magic, version, nonce (this store), sequence number (exactly the
//! next), generation (not older than its predecessor, not newer than the
//! superblock) and crc all check. The first record that fails ends the
//! replay.
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

use crate::device::{AlignedBuf, BlockDevice, IoOp};
use crate::error::{DeviceError, StoreError};
use crate::kv::KvOp;
use crate::layout::{
    record_crc, set_record_crc, stored_record_crc, Layout, RecordHeader, RecordKind, BLOCK_SIZE,
    RECORD_HEADER_BYTES,
};

/// Deferred data for `blocks` consecutive data-area blocks from `phys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeferredRun {
    pub phys: u64,
    pub blocks: u32,
}

/// Newly allocated blocks `[phys, phys + blocks)` written (not
/// journaled) by the record's transactions, with what their data must
/// check against. Replay checks the records no later record proves
/// durable: the data and the record go to the device together, ahead of
/// one flush, so only those can point at data that did not make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigRun {
    pub phys: u64,
    pub blocks: u32,
    pub check: BigCheck,
}

/// How replay checks the data of a [`BigRun`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BigCheck {
    /// The crc32c of every block, in order: the checksums the extent map
    /// stores anyway, so writing a run costs one checksum pass (records of
    /// version 2).
    Blocks(Vec<u32>),
    /// One crc32c over the whole run (records of version 1).
    Run(u32),
}

/// The metadata part of a record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordMeta {
    pub kv_ops: Vec<KvOp>,
    pub deferred: Vec<DeferredRun>,
    pub big: Vec<BigRun>,
}

impl Encode for RecordMeta {
    fn encode(&self, buf: &mut Vec<u8>) {
        kalmar_common::encoding::encode_versioned(buf, 2, 2, |buf| {
            self.kv_ops.encode(buf);
            (self.deferred.len() as u32).encode(buf);
            for r in &self.deferred {
                r.phys.encode(buf);
                r.blocks.encode(buf);
            }
            (self.big.len() as u32).encode(buf);
            for r in &self.big {
                r.phys.encode(buf);
                r.blocks.encode(buf);
                // Version 2: one crc per block (a run crc is never written).
                let crcs: &[u32] = match &r.check {
                    BigCheck::Blocks(c) => c,
                    BigCheck::Run(_) => &[],
                };
                for c in crcs {
                    c.encode(buf);
                }
            }
        });
    }
}

impl Decode for RecordMeta {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.versioned("journal record meta", 2, |d, version| {
            let kv_ops = Vec::<KvOp>::decode(d)?;
            let n = d.len_prefix(12, "deferred runs")?;
            let mut deferred = Vec::with_capacity(n);
            for _ in 0..n {
                deferred.push(DeferredRun {
                    phys: d.u64()?,
                    blocks: d.u32()?,
                });
            }
            let n = d.len_prefix(16, "big runs")?;
            let mut big = Vec::with_capacity(n);
            for _ in 0..n {
                let phys = d.u64()?;
                let blocks = d.u32()?;
                let check = if version >= 2 {
                    let n = blocks as usize;
                    if n.saturating_mul(4) > d.remaining() {
                        return Err(DecodeError::Truncated {
                            needed: n.saturating_mul(4) - d.remaining(),
                            context: "big run block crcs",
                        });
                    }
                    BigCheck::Blocks((0..n).map(|_| d.u32()).collect::<Result<_, _>>()?)
                } else {
                    BigCheck::Run(d.u32()?)
                };
                big.push(BigRun {
                    phys,
                    blocks,
                    check,
                });
            }
            Ok(RecordMeta {
                kv_ops,
                deferred,
                big,
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

/// Builds a record: header, `meta`, then the data blocks in run order.
/// Returns the buffer and the byte offset of the first data block.
pub fn build_record(
    id: RecordId,
    n_txns: u32,
    meta: &RecordMeta,
    data: &[&[u8]],
) -> (AlignedBuf, usize) {
    let mut enc = Vec::new();
    meta.encode(&mut enc);
    let data_blocks = data.len();
    let meta_blocks = (RECORD_HEADER_BYTES + enc.len()).div_ceil(BLOCK_SIZE as usize);
    let total_blocks = meta_blocks + data_blocks;
    let mut buf = AlignedBuf::zeroed(total_blocks * BLOCK_SIZE as usize);
    RecordHeader {
        kind: RecordKind::Txns,
        seq: id.seq,
        generation: id.generation,
        nonce: id.nonce,
        total_blocks: total_blocks as u32,
        meta_len: enc.len() as u32,
        data_blocks: data_blocks as u32,
        n_txns,
        durable_seq: id.durable_seq,
    }
    .write_to(&mut buf);
    buf[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + enc.len()].copy_from_slice(&enc);
    let data_at = meta_blocks * BLOCK_SIZE as usize;
    for (i, block) in data.iter().enumerate() {
        let at = data_at + i * BLOCK_SIZE as usize;
        buf[at..at + BLOCK_SIZE as usize].copy_from_slice(block);
    }
    set_record_crc(&mut buf);
    (buf, data_at)
}

/// A one-block pad record.
pub fn build_pad(id: RecordId) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(BLOCK_SIZE as usize);
    RecordHeader {
        kind: RecordKind::Pad,
        seq: id.seq,
        generation: id.generation,
        nonce: id.nonce,
        total_blocks: 1,
        meta_len: 0,
        data_blocks: 0,
        n_txns: 0,
        durable_seq: id.durable_seq,
    }
    .write_to(&mut buf);
    set_record_crc(&mut buf);
    buf
}

/// Where the next record goes, in blocks relative to the journal zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// A pad record is needed here first.
    pub pad_at: Option<u64>,
    pub at: u64,
    pub blocks: u64,
    /// Blocks of the zone this record uses up (including a skipped tail).
    pub consumed: u64,
}

impl Placement {
    /// The block after the record (the next record's position).
    pub fn end(&self, zone_blocks: u64) -> u64 {
        (self.at + self.blocks) % zone_blocks
    }
}

/// Head and fill level of the circular zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalRing {
    pub zone_blocks: u64,
    pub head: u64,
    pub used: u64,
}

impl JournalRing {
    /// Places a record of `blocks` blocks; `None` when the zone lacks room
    /// until a checkpoint frees some.
    pub fn place(&self, blocks: u64) -> Option<Placement> {
        let to_end = self.zone_blocks - self.head;
        let p = if blocks <= to_end {
            Placement {
                pad_at: None,
                at: self.head,
                blocks,
                consumed: blocks,
            }
        } else {
            Placement {
                pad_at: Some(self.head),
                at: 0,
                blocks,
                consumed: to_end + blocks,
            }
        };
        (self.used + p.consumed <= self.zone_blocks).then_some(p)
    }

    pub fn advance(&mut self, p: &Placement) {
        self.head = p.end(self.zone_blocks);
        self.used += p.consumed;
    }

    pub fn release(&mut self, consumed: u64) {
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
    /// Position (blocks, zone-relative) of the record.
    pub pos: u64,
}

/// Why replay stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayEnd {
    /// Position and sequence number where the next record goes.
    pub pos: u64,
    pub seq: u64,
    /// Records accepted.
    pub records: u64,
    /// What was found at `pos`.
    pub reason: String,
    /// True if a record header for `seq` was there but failed its checks
    /// (torn or corrupt), false for no record at all.
    pub damaged: bool,
}

/// The state replay starts from.
#[derive(Debug, Clone, Copy)]
pub struct ReplayStart {
    pub pos: u64,
    pub seq: u64,
    pub nonce: u64,
    pub max_generation: u64,
}

fn io_err(e: DeviceError) -> StoreError {
    StoreError::Device(e)
}

/// Reads and checks the record at `pos`; `Err(reason, damaged)` ends replay.
fn read_record(
    dev: &dyn BlockDevice,
    layout: &Layout,
    pos: u64,
    expect_seq: u64,
    nonce: u64,
    gen_range: (u64, u64),
) -> Result<Result<ReplayedRecord, (String, bool)>, StoreError> {
    let zone = layout.journal_blocks();
    let off = layout.journal_offset + pos * BLOCK_SIZE;
    let mut ops = [IoOp::read(off, BLOCK_SIZE as usize)];
    dev.submit(&mut ops).map_err(io_err)?;
    let [op] = ops;
    let first = op.into_read_buf().unwrap_or_else(|| AlignedBuf::zeroed(0));
    let h = match RecordHeader::parse(&first) {
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
    if pos + h.total_blocks as u64 > zone {
        return Ok(Err((
            format!("record of {} blocks runs past the zone end", h.total_blocks),
            true,
        )));
    }
    let buf = if h.total_blocks > 1 {
        let mut all = AlignedBuf::zeroed(h.total_blocks as usize * BLOCK_SIZE as usize);
        all[..BLOCK_SIZE as usize].copy_from_slice(&first);
        let mut rest = [IoOp::read(
            off + BLOCK_SIZE,
            (h.total_blocks as usize - 1) * BLOCK_SIZE as usize,
        )];
        dev.submit(&mut rest).map_err(io_err)?;
        let [r] = rest;
        let r = r.into_read_buf().unwrap_or_else(|| AlignedBuf::zeroed(0));
        all[BLOCK_SIZE as usize..].copy_from_slice(&r);
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
    let data_at = h.meta_blocks() as usize * BLOCK_SIZE as usize;
    Ok(Ok(ReplayedRecord {
        header: h,
        meta,
        buf,
        data_at,
        pos,
    }))
}

/// Walks the chain of records from `start`, calling `f` for each accepted
/// transaction record (pads are followed silently).
pub fn replay(
    dev: &dyn BlockDevice,
    layout: &Layout,
    start: ReplayStart,
    mut f: impl FnMut(ReplayedRecord) -> Result<(), StoreError>,
) -> Result<ReplayEnd, StoreError> {
    let zone = layout.journal_blocks();
    let mut pos = start.pos % zone;
    let mut seq = start.seq;
    let mut last_gen = 0u64;
    let mut records = 0u64;
    // Records not yet proven durable by a later record wait here.
    let mut held: std::collections::VecDeque<ReplayedRecord> = std::collections::VecDeque::new();
    let mut proven = 0u64;
    // Every accepted record advances at least one block; a chain longer
    // than the zone means a loop, which checks above make impossible.
    for _ in 0..=zone {
        match read_record(
            dev,
            layout,
            pos,
            seq,
            start.nonce,
            (last_gen, start.max_generation),
        )? {
            Err((reason, damaged)) => {
                // The unproven tail: apply up to the first record whose
                // big-write data did not make it.
                while let Some(rec) = held.pop_front() {
                    if let Some(why) = big_data_missing(dev, layout, &rec.meta)? {
                        return Ok(ReplayEnd {
                            pos: rec.pos,
                            seq: rec.header.seq,
                            records,
                            reason: format!(
                                "record seq {} and later dropped: {why} (never acknowledged)",
                                rec.header.seq
                            ),
                            damaged: false,
                        });
                    }
                    records += 1;
                    f(rec)?;
                }
                return Ok(ReplayEnd {
                    pos,
                    seq,
                    records,
                    reason,
                    damaged,
                });
            }
            Ok(rec) => {
                last_gen = rec.header.generation;
                proven = proven.max(rec.header.durable_seq);
                // A pad carries the sequence number of the record after it.
                if rec.header.kind == RecordKind::Pad {
                    pos = 0;
                    continue;
                }
                seq += 1;
                pos = (pos + rec.header.total_blocks as u64) % zone;
                held.push_back(rec);
                while held.front().is_some_and(|r| r.header.seq <= proven) {
                    if let Some(r) = held.pop_front() {
                        records += 1;
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

/// Checks the data of a record's big runs; says what is wrong, if anything.
fn big_data_missing(
    dev: &dyn BlockDevice,
    layout: &Layout,
    meta: &RecordMeta,
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
        let intact = match &r.check {
            BigCheck::Run(crc) => crc32c::crc32c(&data) == *crc,
            BigCheck::Blocks(crcs) => {
                crcs.len() == r.blocks as usize
                    && data
                        .chunks(BLOCK_SIZE as usize)
                        .zip(crcs)
                        .all(|(b, c)| crc32c::crc32c(b) == *c)
            }
        };
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
    nonce: u64,
    seq: u64,
    max_generation: u64,
) -> Result<Option<(u64, u64)>, StoreError> {
    let zone = layout.journal_blocks();
    let chunk_blocks = 256u64;
    let mut base = 0u64;
    while base < zone {
        let n = chunk_blocks.min(zone - base);
        let mut ops = [IoOp::read(
            layout.journal_offset + base * BLOCK_SIZE,
            (n * BLOCK_SIZE) as usize,
        )];
        dev.submit(&mut ops).map_err(io_err)?;
        let [op] = ops;
        let chunk = op.into_read_buf().unwrap_or_else(|| AlignedBuf::zeroed(0));
        for i in 0..n {
            let b = &chunk[(i * BLOCK_SIZE) as usize..((i + 1) * BLOCK_SIZE) as usize];
            let Ok(h) = RecordHeader::parse(b) else {
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
            if let Ok(rec) = read_record(dev, layout, pos, h.seq, nonce, (0, max_generation))? {
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
    use crate::device::{FaultConfig, FaultyDevice};

    fn layout() -> Layout {
        Layout::compute(8 << 20, 1 << 20).expect("layout")
    }

    fn write(dev: &dyn BlockDevice, l: &Layout, pos: u64, buf: AlignedBuf) {
        let mut ops = [IoOp::write(l.journal_offset + pos * BLOCK_SIZE, buf, true)];
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
            big: Vec::new(),
        };
        let blocks: Vec<Vec<u8>> = (0..data)
            .map(|i| vec![i as u8; BLOCK_SIZE as usize])
            .collect();
        let refs: Vec<&[u8]> = blocks.iter().map(|b| &b[..]).collect();
        let (buf, _) = build_record(
            RecordId {
                seq,
                generation,
                nonce: 42,
                durable_seq: seq - 1,
            },
            1,
            &meta,
            &refs,
        );
        let n = buf.len() as u64 / BLOCK_SIZE;
        (buf, n)
    }

    #[test]
    fn chain_replays_and_stops_at_damage() {
        let l = layout();
        let dev = FaultyDevice::new(l.device_bytes, FaultConfig::new(0));
        let mut ring = JournalRing {
            zone_blocks: l.journal_blocks(),
            head: 0,
            used: 0,
        };
        let mut positions = Vec::new();
        for seq in 1..=5u64 {
            let (buf, n) = rec(seq, 1, seq as usize);
            let p = ring.place(n).expect("room");
            write(&dev, &l, p.at, buf);
            positions.push(p.at);
            ring.advance(&p);
        }
        let start = ReplayStart {
            pos: 0,
            seq: 1,
            nonce: 42,
            max_generation: 1,
        };
        let mut seen = Vec::new();
        let end = replay(&dev, &l, start, |r| {
            assert_eq!(r.meta.data_blocks(), r.header.seq);
            seen.push(r.header.seq);
            Ok(())
        })
        .expect("replay");
        assert_eq!(seen, vec![1, 2, 3, 4, 5]);
        assert_eq!((end.seq, end.pos, end.damaged), (6, ring.head, false));
        assert_eq!(find_later_record(&dev, &l, 42, 5, 1).expect("scan"), None);

        // A flipped byte in record 3: replay stops there, and records 4 and
        // 5 show that this is corruption, not a torn tail.
        dev.corrupt_byte(l.journal_offset + positions[2] * BLOCK_SIZE + 5000, 0x01);
        let end = replay(&dev, &l, start, |_| Ok(())).expect("replay");
        assert_eq!((end.seq, end.damaged, end.records), (3, true, 2));
        assert_eq!(
            find_later_record(&dev, &l, 42, 3, 1)
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
        let zone = l.journal_blocks();
        let dev = FaultyDevice::new(l.device_bytes, FaultConfig::new(0));
        // Start near the end so the second record wraps.
        let mut ring = JournalRing {
            zone_blocks: zone,
            head: zone - 3,
            used: 0,
        };
        let (a, na) = rec(10, 2, 1);
        let pa = ring.place(na).expect("room");
        assert_eq!(pa.pad_at, None);
        write(&dev, &l, pa.at, a);
        ring.advance(&pa);
        let (b, nb) = rec(11, 2, 3);
        let pb = ring.place(nb).expect("room");
        assert_eq!((pb.pad_at, pb.at), (Some(zone - 1), 0));
        write(
            &dev,
            &l,
            zone - 1,
            build_pad(RecordId {
                seq: 11,
                generation: 2,
                nonce: 42,
                durable_seq: 10,
            }),
        );
        write(&dev, &l, 0, b);
        ring.advance(&pb);
        // A stale record of an older generation right after: refused.
        let (stale, _) = rec(12, 1, 0);
        write(&dev, &l, ring.head, stale);
        let start = ReplayStart {
            pos: zone - 3,
            seq: 10,
            nonce: 42,
            max_generation: 2,
        };
        let mut seen = Vec::new();
        let end = replay(&dev, &l, start, |r| {
            seen.push(r.header.seq);
            Ok(())
        })
        .expect("replay");
        assert_eq!(seen, vec![10, 11]);
        assert_eq!(end.seq, 12);
        assert!(end.reason.contains("generation"), "{}", end.reason);
    }

    #[test]
    fn ring_refuses_to_overrun_the_tail() {
        let mut r = JournalRing {
            zone_blocks: 10,
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
    fn big_runs_check_block_crcs_and_read_version_1_run_crcs() {
        let l = layout();
        let dev = FaultyDevice::new(l.device_bytes, FaultConfig::new(0));
        let data: Vec<u8> = (0..3 * BLOCK_SIZE as usize)
            .map(|i| (i % 253) as u8)
            .collect();
        let crcs: Vec<u32> = data
            .chunks(BLOCK_SIZE as usize)
            .map(crc32c::crc32c)
            .collect();
        let run = |check| RecordMeta {
            kv_ops: Vec::new(),
            deferred: Vec::new(),
            big: vec![BigRun {
                phys: 5,
                blocks: 3,
                check,
            }],
        };
        let meta = run(BigCheck::Blocks(crcs.clone()));
        assert_eq!(RecordMeta::from_bytes(&meta.to_bytes()).expect("v2"), meta);
        // A version-1 body: the run's one crc in place of the block crcs.
        let mut v1 = Vec::new();
        kalmar_common::encoding::encode_versioned(&mut v1, 1, 1, |buf| {
            Vec::<KvOp>::new().encode(buf);
            0u32.encode(buf);
            1u32.encode(buf);
            5u64.encode(buf);
            3u32.encode(buf);
            crc32c::crc32c(&data).encode(buf);
        });
        let old = RecordMeta::from_bytes(&v1).expect("v1");
        assert_eq!(old, run(BigCheck::Run(crc32c::crc32c(&data))));
        // Missing data is seen by either check; the data on the device
        // passes both.
        for m in [&meta, &old] {
            assert!(big_data_missing(&dev, &l, m).expect("check").is_some());
        }
        let mut ops = [IoOp::write(
            l.block_offset(5),
            AlignedBuf::from_slice(&data),
            true,
        )];
        dev.submit(&mut ops).expect("write data");
        for m in [&meta, &old] {
            assert_eq!(big_data_missing(&dev, &l, m).expect("check"), None);
        }
        // One block short of crcs: never taken for intact.
        let short = run(BigCheck::Blocks(crcs[..2].to_vec()));
        assert!(RecordMeta::from_bytes(&short.to_bytes()).is_err());
    }
}
