//! The data path of preparation: extent shards, block reads for
//! read-modify-write, and the two ways of writing blocks.

use kalmar_common::encoding::{Decode, Encode};
use smallvec::SmallVec;

use super::{Batch, BigWrite};
use bytes::Bytes;

use crate::device::{aligned_bytes, is_aligned, AlignedBuf, IoOp};
use crate::error::StoreError;
use crate::keys;
use crate::layout::BLOCK_SIZE;
use crate::onode::{shard_of, BlockMap, Shard};

const BS: usize = BLOCK_SIZE as usize;

/// The extent shards of one object touched by an operation, loaded on
/// demand and written back with [`ShardSet::store`].
pub struct ShardSet {
    pub nid: u64,
    /// By shard index, ascending. A small write touches one: kept inline,
    /// no allocation.
    shards: SmallVec<[Loaded; 1]>,
}

struct Loaded {
    idx: u32,
    shard: Shard,
    dirty: bool,
}

impl ShardSet {
    pub fn new(nid: u64) -> ShardSet {
        ShardSet {
            nid,
            shards: SmallVec::new(),
        }
    }

    fn load(&mut self, batch: &Batch<'_>, idx: u32) -> Result<&mut Loaded, StoreError> {
        let at = match self.shards.binary_search_by_key(&idx, |l| l.idx) {
            Ok(at) => at,
            Err(at) => {
                let key = keys::extent_shard(self.nid, idx);
                let mut shard = Ok(Shard::default());
                batch.kv.get_with(&batch.view, &key, &mut |v| {
                    if let Some(v) = v {
                        shard = Shard::from_bytes(v);
                    }
                })?;
                let shard = shard.map_err(|e| StoreError::corrupt(keys::describe(&key), e))?;
                self.insert_loaded(at, idx, shard);
                at
            }
        };
        Ok(&mut self.shards[at])
    }

    /// Keeps shard `idx` as read, at position `at` of the sorted list.
    fn insert_loaded(&mut self, at: usize, idx: u32, shard: Shard) {
        let l = Loaded {
            idx,
            shard,
            dirty: false,
        };
        self.shards.insert(at, l);
    }

    /// Loads every stored shard of the object with index >= `from`.
    pub fn load_from(&mut self, batch: &Batch<'_>, from: u32) -> Result<(), StoreError> {
        let start = keys::extent_shard(self.nid, from);
        let (_, end) = keys::nid_range(keys::P_EXTENT, self.nid);
        for (k, v) in batch.kv.scan(&batch.view, &start, &end, usize::MAX)? {
            let Some((_, _, rest)) = keys::parse_nid_key(&k) else {
                continue;
            };
            let Ok(idx) = <[u8; 4]>::try_from(rest).map(u32::from_be_bytes) else {
                return Err(StoreError::corrupt(keys::describe(&k), "bad shard key"));
            };
            if let Err(at) = self.shards.binary_search_by_key(&idx, |l| l.idx) {
                let shard = Shard::from_bytes(&v)
                    .map_err(|e| StoreError::corrupt(keys::describe(&k), e))?;
                self.insert_loaded(at, idx, shard);
            }
        }
        Ok(())
    }

    pub fn get(&mut self, batch: &Batch<'_>, block: u64) -> Result<Option<BlockMap>, StoreError> {
        let (idx, i) = shard_of(block);
        Ok(self.load(batch, idx)?.shard.get(i))
    }

    pub fn set(
        &mut self,
        batch: &Batch<'_>,
        block: u64,
        m: Option<BlockMap>,
    ) -> Result<Option<BlockMap>, StoreError> {
        let (idx, i) = shard_of(block);
        let l = self.load(batch, idx)?;
        l.dirty = true;
        Ok(l.shard.set(i, m))
    }

    /// Mapped blocks among the loaded shards, as (logical block, map).
    pub fn loaded_mapped(&self) -> Vec<(u64, BlockMap)> {
        let per = crate::onode::SHARD_BLOCKS;
        self.shards
            .iter()
            .flat_map(|l| {
                l.shard
                    .mapped()
                    .map(move |(i, m)| (l.idx as u64 * per + i as u64, m))
            })
            .collect()
    }

    /// Writes changed shards back (deleting empty ones).
    pub fn store(self, batch: &mut Batch<'_>) {
        for l in self.shards.iter().filter(|l| l.dirty) {
            let key = keys::extent_shard(self.nid, l.idx);
            if l.shard.is_empty() {
                batch.kv.delete(key);
            } else {
                batch.kv.put(key, l.shard.to_bytes());
            }
        }
    }
}

/// `[off, off + len)` as (end, first block, block after the last).
fn span(off: u64, len: u64) -> (u64, u64, u64) {
    let end = off + len;
    (end, off / BLOCK_SIZE, end.div_ceil(BLOCK_SIZE))
}

/// Where the bytes of a range write come from.
#[derive(Clone, Copy)]
pub enum Fill<'d> {
    Data(&'d Bytes),
    Zeros,
}

/// How blocks are written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In place (allocating holes), data carried by the journal record.
    Deferred,
    /// To newly allocated blocks, data written before the record.
    Big,
}

impl Batch<'_> {
    /// Contents of physical blocks whose stored crc is given, in order:
    /// from this batch, from committed-but-unapplied blocks, else from the
    /// device (verified).
    pub(crate) fn read_phys(&self, wanted: &[(u64, u32)]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out: Vec<Vec<u8>> = Vec::with_capacity(wanted.len());
        let mut ops = Vec::new();
        let mut op_slots = Vec::new();
        for (i, &(phys, csum)) in wanted.iter().enumerate() {
            if let Some(b) = self.batch_block(phys) {
                out.push(b.to_vec());
            } else if let Some(p) = self.overlay.get(phys).filter(|p| p.csum == csum) {
                out.push(p.data().to_vec());
            } else {
                // Filled from the device below.
                out.push(Vec::new());
                ops.push(IoOp::read(self.sh.layout.block_offset(phys), BS));
                op_slots.push(i);
            }
        }
        if !ops.is_empty() {
            for chunk in ops.chunks_mut(self.sh.settings.apply_batch_ios.max(1)) {
                self.sh.dev.submit(chunk)?;
            }
            for (op, i) in ops.into_iter().zip(op_slots) {
                let data = op
                    .into_read_buf()
                    .expect("read_phys queues only reads")
                    .to_vec();
                let (phys, csum) = wanted[i];
                let computed = crc32c::crc32c(&data);
                if computed != csum {
                    self.sh.perf.inc(crate::perf::L_CSUM_ERRORS, 1);
                    return Err(StoreError::Checksum {
                        what: format!("block {phys} (read-modify-write)"),
                        offset: self.sh.layout.block_offset(phys),
                        stored: csum,
                        computed,
                    });
                }
                out[i] = data;
            }
        }
        // Every slot holds one whole block: callers copy them into block
        // slices, where a short one would fail far from here.
        assert!(
            out.iter().all(|b| b.len() == BS),
            "read_phys: a block of {} asked came back short",
            wanted.len()
        );
        Ok(out)
    }

    /// Content of logical block `b` (zeros for a hole).
    fn read_logical(&self, ss: &mut ShardSet, b: u64) -> Result<Vec<u8>, StoreError> {
        match ss.get(self, b)? {
            None => Ok(vec![0u8; BS]),
            Some(m) => Ok(self
                .read_phys(&[(m.phys, m.csum)])?
                .pop()
                .expect("read_phys returns one block per block asked")),
        }
    }

    /// Writes `[off, off + len)` of the object with `fill`, merging partial
    /// head and tail blocks with their current content.
    pub(crate) fn write_range(
        &mut self,
        ss: &mut ShardSet,
        off: u64,
        len: u64,
        fill: Fill<'_>,
        mode: Mode,
    ) -> Result<(), StoreError> {
        if len == 0 {
            return Ok(());
        }
        let (end, b0, b1) = span(off, len);
        let n = (b1 - b0) as usize;
        if let Fill::Data(d) = fill {
            let whole = off.is_multiple_of(BLOCK_SIZE) && end.is_multiple_of(BLOCK_SIZE);
            match mode {
                // Whole blocks in an aligned buffer: written as they are.
                Mode::Big if off.is_multiple_of(BLOCK_SIZE) && is_aligned(d) => {
                    return self.write_big(ss, b0, d.clone());
                }
                // Whole blocks go to the journal record from the caller's
                // buffer: no staging copy.
                Mode::Deferred if whole => return self.write_deferred(ss, b0, d.clone()),
                _ => {}
            }
        }
        // Every byte is written below: old content, data or zeros.
        let mut buf = AlignedBuf::for_overwrite(n * BS);
        let head_partial = !off.is_multiple_of(BLOCK_SIZE);
        let tail_partial = !end.is_multiple_of(BLOCK_SIZE);
        if head_partial || (n == 1 && tail_partial) {
            buf[..BS].copy_from_slice(&self.read_logical(ss, b0)?);
        }
        if tail_partial && n > 1 {
            let last = self.read_logical(ss, b1 - 1)?;
            buf[(n - 1) * BS..].copy_from_slice(&last);
        }
        let at = (off - b0 * BLOCK_SIZE) as usize;
        match fill {
            Fill::Data(d) => buf[at..at + len as usize].copy_from_slice(d),
            Fill::Zeros => buf[at..at + len as usize].fill(0),
        }
        match mode {
            Mode::Deferred => self.write_deferred(ss, b0, aligned_bytes(buf)),
            Mode::Big => self.write_big(ss, b0, aligned_bytes(buf)),
        }
    }

    /// Writes whole blocks from `b0` in place (allocating holes), their
    /// content carried by the journal record.
    fn write_deferred(&mut self, ss: &mut ShardSet, b0: u64, buf: Bytes) -> Result<(), StoreError> {
        let n = buf.len() / BS;
        let mut current: SmallVec<[Option<BlockMap>; 4]> = SmallVec::with_capacity(n);
        for i in 0..n {
            current.push(ss.get(self, b0 + i as u64)?);
        }
        let holes = current.iter().filter(|m| m.is_none()).count() as u64;
        let extents = if holes > 0 {
            self.allocate(holes)?
        } else {
            Vec::new()
        };
        let mut fresh = extents.into_iter().flat_map(|e| e.start..e.start + e.len);
        for (i, cur) in current.into_iter().enumerate() {
            let block = buf.slice(i * BS..(i + 1) * BS);
            let phys = match cur {
                Some(m) => m.phys,
                None => fresh.next().ok_or_else(|| {
                    StoreError::corrupt("allocator", "returned fewer blocks than asked")
                })?,
            };
            let csum = crc32c::crc32c(&block);
            self.set_deferred(phys, block);
            ss.set(self, b0 + i as u64, Some(BlockMap { phys, csum }))?;
        }
        self.undo.deferred_bytes += buf.len() as u64;
        self.counters.deferred_ops += 1;
        self.counters.deferred_bytes += buf.len() as u64;
        Ok(())
    }

    /// Writes whole blocks from `b0` to new space; `buf` is aligned.
    fn write_big(&mut self, ss: &mut ShardSet, b0: u64, buf: Bytes) -> Result<(), StoreError> {
        let n = (buf.len() / BS) as u64;
        let extents = self.allocate(n)?;
        let mut logical = b0;
        let mut from = 0usize;
        for e in extents {
            // Extents are whole blocks, so every part stays aligned.
            let part = buf.slice(from..from + e.len as usize * BS);
            from += e.len as usize * BS;
            let mut crcs = Vec::with_capacity(e.len as usize);
            for i in 0..e.len {
                let block = &part[i as usize * BS..(i as usize + 1) * BS];
                let csum = crc32c::crc32c(block);
                crcs.push(csum);
                if let Some(old) = ss.set(
                    self,
                    logical,
                    Some(BlockMap {
                        phys: e.start + i,
                        csum,
                    }),
                )? {
                    self.free_block(old.phys);
                }
                logical += 1;
            }
            self.push_big(BigWrite {
                phys: e.start,
                buf: part,
                crcs,
            });
        }
        self.counters.big_ops += 1;
        self.counters.big_bytes += n * BLOCK_SIZE;
        Ok(())
    }

    /// Unmaps logical block `b`, freeing its physical block.
    pub(crate) fn unmap(&mut self, ss: &mut ShardSet, b: u64) -> Result<(), StoreError> {
        if let Some(old) = ss.set(self, b, None)? {
            self.free_block(old.phys);
        }
        Ok(())
    }

    /// Makes `[off, off + len)` read as zeros: whole blocks are unmapped,
    /// partial ones rewritten in place.
    pub(crate) fn zero_range(
        &mut self,
        ss: &mut ShardSet,
        off: u64,
        len: u64,
    ) -> Result<(), StoreError> {
        if len == 0 {
            return Ok(());
        }
        let (end, b0, b1) = span(off, len);
        for b in b0..b1 {
            let bs = b * BLOCK_SIZE;
            let (from, to) = (off.max(bs), end.min(bs + BLOCK_SIZE));
            if from == bs && to == bs + BLOCK_SIZE {
                self.unmap(ss, b)?;
            } else if ss.get(self, b)?.is_some() {
                self.write_range(ss, from, to - from, Fill::Zeros, Mode::Deferred)?;
            }
        }
        Ok(())
    }

    /// Frees every mapped block with logical index >= `from_block`.
    pub(crate) fn unmap_from(
        &mut self,
        ss: &mut ShardSet,
        from_block: u64,
    ) -> Result<(), StoreError> {
        ss.load_from(self, shard_of(from_block).0)?;
        for (b, _) in ss.loaded_mapped() {
            if b >= from_block {
                self.unmap(ss, b)?;
            }
        }
        Ok(())
    }
}
