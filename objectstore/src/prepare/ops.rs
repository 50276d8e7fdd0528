//! One function per transaction operation; the contracts are documented on
//! the [`crate::Transaction`] builder methods.

use bytes::Bytes;
use kalmar_common::encoding::{Blob, Decode, Encode};

use super::data::{Fill, Mode, ShardSet};
use super::Batch;
use crate::error::StoreError;
use crate::keys;
use crate::layout::BLOCK_SIZE;
use crate::onode::{replace_attr_in_place, set_size_in_place, CollectionRecord, Onode, OnodeHead};
use crate::txn::Op;
use crate::types::{
    check_omap_key, check_omap_value, check_xattr_name, CollectionId, ObjectId,
    MAX_OBJECT_SIZE_BYTES, MAX_XATTRS_TOTAL_BYTES,
};

fn not_found(c: &CollectionId, o: &ObjectId) -> StoreError {
    StoreError::ObjectNotFound {
        collection: c.to_string(),
        object: o.to_display(),
    }
}

fn check_end(offset: u64, len: u64) -> Result<u64, StoreError> {
    offset
        .checked_add(len)
        .filter(|&e| e <= MAX_OBJECT_SIZE_BYTES)
        .ok_or_else(|| {
            StoreError::InvalidArgument(format!(
                "range {offset}+{len} ends past the largest object size {MAX_OBJECT_SIZE_BYTES}"
            ))
        })
}

impl Batch<'_> {
    pub(crate) fn apply_op(&mut self, op: &Op) -> Result<(), StoreError> {
        match op {
            Op::CreateCollection(c) => self.op_create_collection(c),
            Op::RemoveCollection(c) => self.op_remove_collection(c),
            Op::Touch(c, o) => self.head_or_create(c, o).map(|_| ()),
            Op::Write {
                cid,
                oid,
                offset,
                data,
            } => self.op_write(cid, oid, *offset, data),
            Op::Zero {
                cid,
                oid,
                offset,
                len,
            } => self.op_zero(cid, oid, *offset, *len),
            Op::Truncate { cid, oid, size } => self.op_truncate(cid, oid, *size),
            Op::Remove(c, o) => {
                let on = self.require_onode(c, o)?;
                self.remove_object(c, o, on)
            }
            Op::Clone { cid, src, dst } => self.op_clone(cid, src, dst),
            Op::SetAttrs { cid, oid, attrs } => self.op_set_attrs(cid, oid, attrs),
            Op::RmAttr { cid, oid, name } => {
                let mut on = self.require_onode(cid, oid)?;
                if on.attrs.remove(name).is_some() {
                    self.put_onode(cid, oid, &on);
                }
                Ok(())
            }
            Op::OmapSetKeys { cid, oid, entries } => {
                let on = self.head_or_create(cid, oid)?;
                for (k, v) in entries {
                    check_omap_key(k)?;
                    check_omap_value(v)?;
                    self.kv.put(keys::omap(on.nid, k), v.to_vec());
                }
                Ok(())
            }
            Op::OmapRmKeys { cid, oid, keys: ks } => {
                let on = self.require_head(cid, oid)?;
                for k in ks {
                    self.kv.delete(keys::omap(on.nid, k));
                }
                Ok(())
            }
            Op::OmapClear(c, o) => {
                let on = self.require_head(c, o)?;
                let (s, e) = keys::nid_range(keys::P_OMAP, on.nid);
                self.kv.delete_range(s, e);
                self.kv.delete(keys::omap_header(on.nid));
                Ok(())
            }
            Op::OmapSetHeader { cid, oid, header } => {
                check_omap_value(header)?;
                let on = self.head_or_create(cid, oid)?;
                self.kv.put(keys::omap_header(on.nid), header.to_vec());
                Ok(())
            }
            Op::CollectionMoveRename {
                src_cid,
                src_oid,
                dst_cid,
                dst_oid,
            } => self.op_move_rename(src_cid, src_oid, dst_cid, dst_oid),
            Op::LogAppend { cid, key, value } => {
                self.require_coll(cid)?;
                check_omap_value(value)?;
                let floor = self.log_mark(cid)?.floor();
                if *key <= floor {
                    return Err(StoreError::InvalidArgument(format!(
                        "log of {cid}: key {key} is not above {floor}, the last key appended or trimmed"
                    )));
                }
                self.kv.log_append(cid, *key, value.clone());
                Ok(())
            }
            Op::LogTrim { cid, through } => {
                self.require_coll(cid)?;
                // A trim not past the trim point changes nothing (and must
                // not lower the stored one).
                if *through > self.log_mark(cid)?.trim {
                    self.kv.log_trim(cid, *through);
                }
                Ok(())
            }
            Op::LogClear(cid) => {
                self.require_coll(cid)?;
                self.kv.log_clear(cid);
                Ok(())
            }
        }
    }

    fn coll_exists(&mut self, c: &CollectionId) -> Result<bool, StoreError> {
        if self.colls_seen.contains(c) {
            return Ok(true);
        }
        let mut exists = false;
        self.kv
            .get_with(&self.view, &keys::collection_lookup(c), &mut |v| {
                exists = v.is_some()
            })?;
        if exists {
            self.saw_coll(c);
        }
        Ok(exists)
    }

    fn require_coll(&mut self, c: &CollectionId) -> Result<(), StoreError> {
        if self.coll_exists(c)? {
            Ok(())
        } else {
            Err(StoreError::CollectionNotFound(c.to_string()))
        }
    }

    fn get_onode(&self, c: &CollectionId, o: &ObjectId) -> Result<Option<Onode>, StoreError> {
        let key = keys::onode_lookup(c, o);
        match self.kv.get(&self.view, &key)? {
            None => Ok(None),
            Some(v) => Onode::from_bytes(&v)
                .map(Some)
                .map_err(|e| StoreError::corrupt(keys::describe(&key), e)),
        }
    }

    /// An object's nid and size, read in place from its stored record.
    fn get_head(&self, c: &CollectionId, o: &ObjectId) -> Result<Option<OnodeHead>, StoreError> {
        let key = keys::onode_lookup(c, o);
        let mut head = Ok(None);
        self.kv.get_with(&self.view, &key, &mut |v| {
            head = v.map(OnodeHead::read).transpose()
        })?;
        head.map_err(|e| StoreError::corrupt(keys::describe(&key), e))
    }

    fn require_head(&mut self, c: &CollectionId, o: &ObjectId) -> Result<OnodeHead, StoreError> {
        self.require_coll(c)?;
        self.get_head(c, o)?.ok_or_else(|| not_found(c, o))
    }

    /// The object's nid and size, the object created (and recorded) if
    /// missing.
    fn head_or_create(&mut self, c: &CollectionId, o: &ObjectId) -> Result<OnodeHead, StoreError> {
        self.require_coll(c)?;
        if let Some(h) = self.get_head(c, o)? {
            return Ok(h);
        }
        let on = self.create_onode(c, o);
        Ok(OnodeHead {
            nid: on.nid,
            size: on.size,
        })
    }

    /// The stored bytes of an object's record, to change in place.
    fn onode_bytes(
        &self,
        c: &CollectionId,
        o: &ObjectId,
        key: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        self.kv.get(&self.view, key)?.ok_or_else(|| not_found(c, o))
    }

    /// Records a new size without decoding the attributes.
    fn resize(
        &mut self,
        c: &CollectionId,
        o: &ObjectId,
        old: u64,
        size: u64,
    ) -> Result<(), StoreError> {
        let key = keys::onode(c, o);
        let mut raw = self.onode_bytes(c, o, &key)?;
        set_size_in_place(&mut raw, size)
            .map_err(|e| StoreError::corrupt(keys::describe(&key), e))?;
        self.stats.stored_bytes += size as i64 - old as i64;
        self.kv.put(key, raw);
        Ok(())
    }

    fn op_set_attrs(
        &mut self,
        c: &CollectionId,
        o: &ObjectId,
        attrs: &[(String, Bytes)],
    ) -> Result<(), StoreError> {
        for (name, _) in attrs {
            check_xattr_name(name)?;
        }
        self.require_coll(c)?;
        let key = keys::onode(c, o);
        let mut raw = match self.kv.get(&self.view, &key)? {
            Some(raw) => raw,
            None => self.create_onode(c, o).to_bytes(),
        };
        let corrupt = |e| StoreError::corrupt(keys::describe(&key), e);
        let mut in_place = true;
        for (name, value) in attrs {
            if !replace_attr_in_place(&mut raw, name, value).map_err(corrupt)? {
                in_place = false;
                break;
            }
        }
        if !in_place {
            // A new attribute or a new length: decode, change, re-encode
            // (values already replaced above are set again, unchanged).
            let mut on = Onode::from_bytes(&raw).map_err(corrupt)?;
            for (name, value) in attrs {
                match on.attrs.get_mut(name.as_str()) {
                    Some(b) => {
                        b.0.clear();
                        b.0.extend_from_slice(value);
                    }
                    None => {
                        on.attrs.insert(name.clone(), Blob(value.to_vec()));
                    }
                }
            }
            if on.attrs_bytes() > MAX_XATTRS_TOTAL_BYTES {
                return Err(StoreError::InvalidArgument(format!(
                    "xattrs of {o} would take {} bytes, the limit is {MAX_XATTRS_TOTAL_BYTES}",
                    on.attrs_bytes()
                )));
            }
            raw = on.to_bytes();
        }
        self.kv.put(key, raw);
        Ok(())
    }

    fn require_onode(&mut self, c: &CollectionId, o: &ObjectId) -> Result<Onode, StoreError> {
        self.require_coll(c)?;
        self.get_onode(c, o)?.ok_or_else(|| not_found(c, o))
    }

    /// Records a new, empty object.
    fn create_onode(&mut self, c: &CollectionId, o: &ObjectId) -> Onode {
        let on = Onode {
            nid: self.new_nid(),
            size: 0,
            attrs: Default::default(),
        };
        self.stats.objects += 1;
        self.put_onode(c, o, &on);
        on
    }

    fn put_onode(&mut self, c: &CollectionId, o: &ObjectId, on: &Onode) {
        self.kv.put(keys::onode(c, o), on.to_bytes());
    }

    fn set_size(&mut self, on: &mut Onode, size: u64) {
        self.stats.stored_bytes += size as i64 - on.size as i64;
        on.size = size;
    }

    fn op_create_collection(&mut self, c: &CollectionId) -> Result<(), StoreError> {
        if self.coll_exists(c)? {
            return Err(StoreError::CollectionExists(c.to_string()));
        }
        let rec = CollectionRecord { created_seq: 0 };
        self.kv.put(keys::collection(c), rec.to_bytes());
        Ok(())
    }

    fn op_remove_collection(&mut self, c: &CollectionId) -> Result<(), StoreError> {
        self.require_coll(c)?;
        let prefix = keys::onode_prefix(c);
        let end = keys::prefix_end(&prefix);
        if !self.kv.scan(&self.view, &prefix, &end, 1)?.is_empty() {
            return Err(StoreError::CollectionNotEmpty(c.to_string()));
        }
        self.kv.delete(keys::collection(c));
        self.kv.log_clear(c);
        self.colls_seen.clear();
        Ok(())
    }

    fn op_write(
        &mut self,
        c: &CollectionId,
        o: &ObjectId,
        offset: u64,
        data: &Bytes,
    ) -> Result<(), StoreError> {
        let len = data.len() as u64;
        let end = check_end(offset, len)?;
        let on = self.head_or_create(c, o)?;
        if len == 0 {
            return Ok(());
        }
        let covered = (end.div_ceil(BLOCK_SIZE) - offset / BLOCK_SIZE) * BLOCK_SIZE;
        let s = &self.sh.settings;
        let mode = if len <= s.deferred_max_bytes
            && self.undo.deferred_bytes + covered <= s.deferred_txn_max_bytes
        {
            Mode::Deferred
        } else {
            Mode::Big
        };
        let mut ss = ShardSet::new(on.nid);
        self.write_range(&mut ss, offset, len, Fill::Data(data), mode)?;
        ss.store(self);
        self.counters.bytes_written += len;
        if end > on.size {
            self.resize(c, o, on.size, end)?;
        }
        Ok(())
    }

    fn op_zero(
        &mut self,
        c: &CollectionId,
        o: &ObjectId,
        offset: u64,
        len: u64,
    ) -> Result<(), StoreError> {
        let end = check_end(offset, len)?;
        let on = self.head_or_create(c, o)?;
        if len == 0 {
            return Ok(());
        }
        let mut ss = ShardSet::new(on.nid);
        self.zero_range(&mut ss, offset, len)?;
        ss.store(self);
        if end > on.size {
            self.resize(c, o, on.size, end)?;
        }
        Ok(())
    }

    fn op_truncate(&mut self, c: &CollectionId, o: &ObjectId, size: u64) -> Result<(), StoreError> {
        check_end(size, 0)?;
        let on = self.head_or_create(c, o)?;
        if size == on.size {
            return Ok(());
        }
        if size < on.size {
            let mut ss = ShardSet::new(on.nid);
            self.unmap_from(&mut ss, size.div_ceil(BLOCK_SIZE))?;
            // Keep the bytes past the end of the last block zero, so that
            // growing the object later exposes zeros.
            let tail = size % BLOCK_SIZE;
            if tail != 0 && ss.get(self, size / BLOCK_SIZE)?.is_some() {
                self.write_range(
                    &mut ss,
                    size,
                    BLOCK_SIZE - tail,
                    Fill::Zeros,
                    Mode::Deferred,
                )?;
            }
            ss.store(self);
        }
        self.resize(c, o, on.size, size)
    }

    /// Deletes an object and everything that hangs off its nid.
    fn remove_object(
        &mut self,
        c: &CollectionId,
        o: &ObjectId,
        on: Onode,
    ) -> Result<(), StoreError> {
        let mut ss = ShardSet::new(on.nid);
        self.unmap_from(&mut ss, 0)?;
        self.kv.delete(keys::onode(c, o));
        for p in [keys::P_EXTENT, keys::P_OMAP] {
            let (s, e) = keys::nid_range(p, on.nid);
            self.kv.delete_range(s, e);
        }
        self.kv.delete(keys::omap_header(on.nid));
        self.stats.objects -= 1;
        self.stats.stored_bytes -= on.size as i64;
        Ok(())
    }

    fn op_clone(
        &mut self,
        c: &CollectionId,
        src: &ObjectId,
        dst: &ObjectId,
    ) -> Result<(), StoreError> {
        let src_on = self.require_onode(c, src)?;
        if src == dst {
            return Ok(());
        }
        if src_on.size > self.sh.settings.max_clone_bytes {
            return Err(StoreError::TooLarge {
                bytes: src_on.size,
                limit: self.sh.settings.max_clone_bytes,
            });
        }
        if let Some(d) = self.get_onode(c, dst)? {
            self.remove_object(c, dst, d)?;
        }
        // `dst` is gone now (removed above, or never there).
        let mut dst_on = self.create_onode(c, dst);
        dst_on.attrs = src_on.attrs.clone();
        self.set_size(&mut dst_on, src_on.size);
        self.put_onode(c, dst, &dst_on);

        let mut src_ss = ShardSet::new(src_on.nid);
        src_ss.load_from(self, 0)?;
        let mapped = src_ss.loaded_mapped();
        let wanted: Vec<(u64, u32)> = mapped.iter().map(|(_, m)| (m.phys, m.csum)).collect();
        let contents = self.read_phys(&wanted)?;
        let total = mapped.len() as u64 * BLOCK_SIZE;
        let s = &self.sh.settings;
        let mode = if total <= s.deferred_max_bytes
            && self.undo.deferred_bytes + total <= s.deferred_txn_max_bytes
        {
            Mode::Deferred
        } else {
            Mode::Big
        };
        let mut dst_ss = ShardSet::new(dst_on.nid);
        let mut i = 0;
        while i < mapped.len() {
            // One write per run of consecutive logical blocks.
            let mut j = i + 1;
            while j < mapped.len() && mapped[j].0 == mapped[j - 1].0 + 1 {
                j += 1;
            }
            let data = Bytes::from(contents[i..j].concat());
            self.write_range(
                &mut dst_ss,
                mapped[i].0 * BLOCK_SIZE,
                data.len() as u64,
                Fill::Data(&data),
                mode,
            )?;
            i = j;
        }
        dst_ss.store(self);

        let (s, e) = keys::nid_range(keys::P_OMAP, src_on.nid);
        for (k, v) in self.kv.scan(&self.view, &s, &e, usize::MAX)? {
            let user_key = &k[9..];
            self.kv.put(keys::omap(dst_on.nid, user_key), v);
        }
        if let Some(h) = self.kv.get(&self.view, &keys::omap_header(src_on.nid))? {
            self.kv.put(keys::omap_header(dst_on.nid), h);
        }
        Ok(())
    }

    fn op_move_rename(
        &mut self,
        src_c: &CollectionId,
        src_o: &ObjectId,
        dst_c: &CollectionId,
        dst_o: &ObjectId,
    ) -> Result<(), StoreError> {
        let on = self.require_onode(src_c, src_o)?;
        self.require_coll(dst_c)?;
        if self.get_onode(dst_c, dst_o)?.is_some() {
            return Err(StoreError::ObjectExists {
                collection: dst_c.to_string(),
                object: dst_o.to_display(),
            });
        }
        self.kv.delete(keys::onode(src_c, src_o));
        self.put_onode(dst_c, dst_o, &on);
        Ok(())
    }
}
