//! Reads. They see committed (durable) state only: the engine's committed
//! layers, then the database (see [`crate::layer`]); data not yet written
//! home is served from the engine's data overlay. A read resolves its
//! metadata under one hold of the engine's layers, so it is consistent; a
//! checksum mismatch (a block being rewritten under us, or real
//! corruption) is retried with fresh metadata a bounded number of times,
//! then reported.

use std::ops::Bound;
use std::time::Instant;

use bytes::Bytes;
use kalmar_common::encoding::Decode;

use super::Shared;
use crate::device::{AlignedBuf, IoOp};
use crate::error::StoreError;
use crate::keys;
use crate::kv::KvRead;
use crate::layer::LayeredRead;
use crate::layout::BLOCK_SIZE;
use crate::onode::{shard_of, BlockMap, Onode, Shard, SHARD_BLOCKS};
use crate::perf;
use crate::read_plan::{ReadEnd, ReadPlan};
use crate::types::{BlockLocation, CollectionId, ObjectId, ObjectStat, StatFs};

const BS: u64 = BLOCK_SIZE;

fn not_found(c: &CollectionId, o: &ObjectId) -> StoreError {
    StoreError::ObjectNotFound {
        collection: c.to_string(),
        object: o.to_display(),
    }
}

impl Shared {
    /// Runs `f` over the committed metadata of the engine of `c`.
    fn with_view<R>(&self, c: &CollectionId, f: impl FnOnce(&dyn KvRead) -> R) -> R {
        let es = &self.engines[self.engine_of(c)];
        let committed = es.committed.read();
        let view = LayeredRead {
            layers: committed.layers(),
            base: self.kv.as_ref(),
        };
        f(&view)
    }

    /// Runs `f` over the committed metadata of every engine.
    pub(crate) fn with_global_view<R>(&self, f: impl FnOnce(&dyn KvRead) -> R) -> R {
        let guards: Vec<_> = self.engines.iter().map(|e| e.committed.read()).collect();
        let view = LayeredRead {
            layers: guards.iter().flat_map(|g| g.layers()).collect(),
            base: self.kv.as_ref(),
        };
        f(&view)
    }

    pub(crate) fn overlay_of(&self, c: &CollectionId) -> &crate::overlay::DataOverlay {
        &self.engines[self.engine_of(c)].overlay
    }

    fn onode_in(
        &self,
        r: &dyn KvRead,
        c: &CollectionId,
        o: &ObjectId,
    ) -> Result<Onode, StoreError> {
        let key = keys::onode_lookup(c, o);
        // Decoded where the record lies, not from a copy of it.
        let mut found = None;
        r.get_with(&key, &mut |v| found = v.map(Onode::from_bytes))?;
        match found {
            Some(on) => on.map_err(|e| StoreError::corrupt(keys::describe(&key), e)),
            None => {
                if r.get(&keys::collection_lookup(c))?.is_none() {
                    Err(StoreError::CollectionNotFound(c.to_string()))
                } else {
                    Err(not_found(c, o))
                }
            }
        }
    }

    fn shard_in(&self, r: &dyn KvRead, nid: u64, idx: u32) -> Result<Shard, StoreError> {
        let key = keys::extent_shard(nid, idx);
        match r.get(&key)? {
            Some(v) => {
                Shard::from_bytes(&v).map_err(|e| StoreError::corrupt(keys::describe(&key), e))
            }
            None => Ok(Shard::default()),
        }
    }

    /// Reads committed data, blocking on the device (tools, tests and
    /// the reader threads; an OSD shard reads through its engine, see
    /// [`crate::CommitEngine::read`]).
    pub fn read(
        &self,
        c: &CollectionId,
        o: &ObjectId,
        off: u64,
        len: u64,
    ) -> Result<Bytes, StoreError> {
        let t0 = Instant::now();
        let mut plan = ReadPlan::default();
        let mut attempt = 0;
        loop {
            self.plan_read(c, o, off, len, &mut plan)?;
            let mut ops: Vec<IoOp> = plan.io_ops(&self.layout).collect();
            self.dev.submit(&mut ops)?;
            let mut bufs: Vec<Option<AlignedBuf>> =
                ops.into_iter().map(IoOp::into_read_buf).collect();
            match self.finish_read(c, o, &plan, &mut bufs, &mut attempt) {
                ReadEnd::Done(r) => return r.inspect(|b| self.count_read(b, t0)),
                ReadEnd::Retry => {}
            }
        }
    }

    /// Counts a finished read.
    pub(crate) fn count_read(&self, b: &Bytes, started: Instant) {
        self.perf.inc(perf::L_READ_OPS, 1);
        self.perf.inc(perf::L_READ_BYTES, b.len() as u64);
        self.perf.tinc(perf::L_READ_LAT, started.elapsed());
    }

    /// Resolves a read of `c/o` against the committed metadata of its
    /// engine into `plan` (cleared first, its buffers reused).
    pub(crate) fn plan_read(
        &self,
        c: &CollectionId,
        o: &ObjectId,
        off: u64,
        len: u64,
        plan: &mut ReadPlan,
    ) -> Result<(), StoreError> {
        plan.clear();
        self.with_view(c, |snap| self.plan_read_in(snap, c, o, off, len, plan))
    }

    fn plan_read_in(
        &self,
        snap: &dyn KvRead,
        c: &CollectionId,
        o: &ObjectId,
        off: u64,
        len: u64,
        plan: &mut ReadPlan,
    ) -> Result<(), StoreError> {
        let on = self.onode_in(snap, c, o)?;
        if off >= on.size || len == 0 {
            return Ok(());
        }
        let end = off + len.min(on.size - off);
        if end - off > self.settings.max_read_bytes {
            return Err(StoreError::InvalidArgument(format!(
                "read of {} bytes exceeds max_read_bytes ({}); read in pieces",
                end - off,
                self.settings.max_read_bytes
            )));
        }
        plan.off = off;
        plan.end = end;
        let (b0, b1) = (off / BS, end.div_ceil(BS));
        let max_blocks = (self.settings.max_io_bytes / BS).clamp(1, u32::MAX as u64) as u32;
        // The extent shard of the last block looked up (reads are mostly
        // within one shard).
        let mut shard: Option<(u32, Shard)> = None;
        for b in b0..b1 {
            let (idx, i) = shard_of(b);
            if shard.as_ref().is_none_or(|(at, _)| *at != idx) {
                shard = Some((idx, self.shard_in(snap, on.nid, idx)?));
            }
            let Some(BlockMap { phys, csum }) = shard.as_ref().and_then(|(_, s)| s.get(i)) else {
                plan.holes = true;
                continue;
            };
            if let Some(p) = self.overlay_of(c).get(phys).filter(|p| p.csum == csum) {
                plan.overlay.push((b, p));
                continue;
            }
            plan.add_block(b, phys, csum, max_blocks);
        }
        Ok(())
    }

    /// Checks the device buffers of `plan` (one per run, in order) and
    /// assembles the data. A checksum mismatch (a block rewritten under
    /// the read, or corruption) asks for a retry with fresh metadata up to
    /// `read_retries` times (`attempt` counts them), then is the answer.
    pub(crate) fn finish_read(
        &self,
        c: &CollectionId,
        o: &ObjectId,
        plan: &ReadPlan,
        bufs: &mut [Option<AlignedBuf>],
        attempt: &mut u32,
    ) -> ReadEnd {
        match plan.assemble(bufs, &self.layout) {
            Err(bad) => {
                let e = StoreError::Checksum {
                    what: format!("{c}/{o} block {}", bad.logical),
                    offset: bad.offset,
                    stored: bad.stored,
                    computed: bad.computed,
                };
                if *attempt >= self.settings.read_retries {
                    self.perf.inc(perf::L_CSUM_ERRORS, 1);
                    tracing::error!(collection = %c, object = %o, error = %e, "read failed its checksum");
                    return ReadEnd::Done(Err(e));
                }
                *attempt += 1;
                ReadEnd::Retry
            }
            Ok(b) => ReadEnd::Done(Ok(b)),
        }
    }

    pub fn size(&self, c: &CollectionId, o: &ObjectId) -> Result<u64, StoreError> {
        self.with_view(c, |snap| self.onode_in(snap, c, o).map(|on| on.size))
    }

    pub fn stat(&self, c: &CollectionId, o: &ObjectId) -> Result<ObjectStat, StoreError> {
        self.with_view(c, |snap| self.stat_in(snap, c, o))
    }

    fn stat_in(
        &self,
        snap: &dyn KvRead,
        c: &CollectionId,
        o: &ObjectId,
    ) -> Result<ObjectStat, StoreError> {
        let on = self.onode_in(snap, c, o)?;
        let (s, e) = keys::nid_range(keys::P_EXTENT, on.nid);
        let mut blocks = 0u64;
        let mut bad = None;
        snap.scan(&s, &e, &mut |k, v| match Shard::from_bytes(v) {
            Ok(sh) => {
                blocks += sh.mapped().count() as u64;
                true
            }
            Err(err) => {
                bad = Some(StoreError::corrupt(keys::describe(k), err));
                false
            }
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        Ok(ObjectStat {
            size_bytes: on.size,
            allocated_bytes: blocks * BS,
        })
    }

    pub fn block_map(
        &self,
        c: &CollectionId,
        o: &ObjectId,
    ) -> Result<Vec<BlockLocation>, StoreError> {
        self.with_view(c, |snap| self.block_map_in(snap, c, o))
    }

    fn block_map_in(
        &self,
        snap: &dyn KvRead,
        c: &CollectionId,
        o: &ObjectId,
    ) -> Result<Vec<BlockLocation>, StoreError> {
        let on = self.onode_in(snap, c, o)?;
        let shards = on.size.div_ceil(BS).div_ceil(SHARD_BLOCKS);
        let mut out = Vec::new();
        for idx in 0..shards {
            let idx = u32::try_from(idx)
                .map_err(|_| StoreError::corrupt(format!("{c}/{o}"), "object too large to map"))?;
            let sh = self.shard_in(snap, on.nid, idx)?;
            for (i, m) in sh.mapped() {
                out.push(BlockLocation {
                    logical_block: u64::from(idx) * SHARD_BLOCKS + i as u64,
                    device_offset: self.layout.block_offset(m.phys),
                    csum: m.csum,
                });
            }
        }
        Ok(out)
    }

    pub fn exists(&self, c: &CollectionId, o: &ObjectId) -> Result<bool, StoreError> {
        self.with_view(c, |v| Ok(v.get(&keys::onode_lookup(c, o))?.is_some()))
    }

    pub fn getattr(
        &self,
        c: &CollectionId,
        o: &ObjectId,
        name: &str,
    ) -> Result<Option<Bytes>, StoreError> {
        let on = self.with_view(c, |v| self.onode_in(v, c, o))?;
        Ok(on.attrs.get(name).map(|b| Bytes::from(b.0.clone())))
    }

    pub fn getattrs(
        &self,
        c: &CollectionId,
        o: &ObjectId,
    ) -> Result<Vec<(String, Bytes)>, StoreError> {
        let on = self.with_view(c, |v| self.onode_in(v, c, o))?;
        Ok(on
            .attrs
            .into_iter()
            .map(|(k, v)| (k, Bytes::from(v.0)))
            .collect())
    }

    pub fn omap_get_header(
        &self,
        c: &CollectionId,
        o: &ObjectId,
    ) -> Result<Option<Bytes>, StoreError> {
        self.with_view(c, |snap| {
            let on = self.onode_in(snap, c, o)?;
            Ok(snap.get(&keys::omap_header(on.nid))?.map(Bytes::from))
        })
    }

    pub fn omap_get_values(
        &self,
        c: &CollectionId,
        o: &ObjectId,
        wanted: &[Bytes],
    ) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        self.with_view(c, |snap| {
            let on = self.onode_in(snap, c, o)?;
            let mut sorted: Vec<&Bytes> = wanted.iter().collect();
            sorted.sort();
            sorted.dedup();
            let mut out = Vec::new();
            for k in sorted {
                if let Some(v) = snap.get(&keys::omap(on.nid, k))? {
                    out.push((k.clone(), Bytes::from(v)));
                }
            }
            Ok(out)
        })
    }

    pub fn omap_iter(
        &self,
        c: &CollectionId,
        o: &ObjectId,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        self.with_view(c, |snap| self.omap_iter_in(snap, c, o, start, end, limit))
    }

    fn omap_iter_in(
        &self,
        snap: &dyn KvRead,
        c: &CollectionId,
        o: &ObjectId,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        let on = self.onode_in(snap, c, o)?;
        let (lo, hi) = keys::nid_range(keys::P_OMAP, on.nid);
        // The key right after k is k followed by a zero byte.
        let after = |k: &[u8]| {
            let mut v = keys::omap(on.nid, k);
            v.push(0);
            v
        };
        let from = match start {
            Bound::Included(k) => keys::omap(on.nid, k),
            Bound::Excluded(k) => after(k),
            Bound::Unbounded => lo,
        };
        let to = match end {
            Bound::Included(k) => after(k),
            Bound::Excluded(k) => keys::omap(on.nid, k),
            Bound::Unbounded => hi,
        };
        if from >= to {
            return Ok(Vec::new());
        }
        Ok(snap
            .scan_collect(&from, &to, limit)?
            .into_iter()
            .map(|(k, v)| (Bytes::copy_from_slice(&k[9..]), Bytes::from(v)))
            .collect())
    }

    pub fn list_collections(&self) -> Result<Vec<CollectionId>, StoreError> {
        self.with_global_view(|v| self.list_collections_in(v))
    }

    fn list_collections_in(&self, view: &dyn KvRead) -> Result<Vec<CollectionId>, StoreError> {
        let mut out = Vec::new();
        let mut bad = None;
        view.scan(&[keys::P_COLL], &[keys::P_COLL + 1], &mut |k, _| {
            match keys::parse_collection(k) {
                Some(c) => out.push(c),
                None => bad = Some(StoreError::corrupt(keys::describe(k), "bad collection key")),
            }
            bad.is_none()
        })?;
        match bad {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// The entries of collection `c`'s log, in key order.
    pub fn log_read(&self, c: &CollectionId) -> Result<Vec<(u128, Bytes)>, StoreError> {
        let es = &self.engines[self.engine_of(c)];
        let committed = es.committed.read();
        let layers = committed.layers();
        let view = LayeredRead {
            layers: layers.clone(),
            base: self.kv.as_ref(),
        };
        if view.get(&keys::collection_lookup(c))?.is_none() {
            return Err(StoreError::CollectionNotFound(c.to_string()));
        }
        let persisted = crate::collog::read_persisted(self.kv.as_ref(), c)?;
        // Oldest first: sealed layers, then the active one.
        Ok(
            crate::collog::apply_deltas(persisted, layers.iter().rev().filter_map(|l| l.log(c)))
                .entries,
        )
    }

    pub fn collection_exists(&self, c: &CollectionId) -> Result<bool, StoreError> {
        self.with_view(c, |v| Ok(v.get(&keys::collection_lookup(c))?.is_some()))
    }

    pub fn collection_list(
        &self,
        c: &CollectionId,
        start: Option<&ObjectId>,
        limit: usize,
    ) -> Result<(Vec<ObjectId>, Option<ObjectId>), StoreError> {
        self.with_view(c, |snap| self.collection_list_in(snap, c, start, limit))
    }

    fn collection_list_in(
        &self,
        snap: &dyn KvRead,
        c: &CollectionId,
        start: Option<&ObjectId>,
        limit: usize,
    ) -> Result<(Vec<ObjectId>, Option<ObjectId>), StoreError> {
        if snap.get(&keys::collection_lookup(c))?.is_none() {
            return Err(StoreError::CollectionNotFound(c.to_string()));
        }
        let prefix = keys::onode_prefix(c);
        let from = match start {
            Some(o) => keys::onode(c, o),
            None => prefix.clone(),
        };
        let mut names = Vec::new();
        let mut bad = None;
        snap.scan(&from, &keys::prefix_end(&prefix), &mut |k, _| {
            match keys::parse_onode(k) {
                Some((_, o)) => names.push(o),
                None => bad = Some(StoreError::corrupt(keys::describe(k), "bad object key")),
            }
            bad.is_none() && names.len() <= limit
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        let next = if names.len() > limit {
            names.pop()
        } else {
            None
        };
        Ok((names, next))
    }

    pub fn statfs(&self) -> StatFs {
        use std::sync::atomic::Ordering::Relaxed;
        let total = self.layout.data_blocks();
        let used = self.used_blocks.load(Relaxed);
        let busy = self.busy_blocks.load(Relaxed).max(used);
        StatFs {
            total_bytes: self.layout.data_bytes,
            available_bytes: total.saturating_sub(busy) * BS,
            allocated_bytes: used * BS,
            pending_free_bytes: (busy - used) * BS,
            stored_bytes: self.stats_bytes.load(Relaxed).max(0) as u64,
            num_objects: self.stats_objects.load(Relaxed).max(0) as u64,
            journal_bytes: self.layout.journal_bytes,
        }
    }
}
