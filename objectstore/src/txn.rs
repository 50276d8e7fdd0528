//! Transactions: an ordered list of operations applied atomically.
//!
//! A [`Transaction`] owns its data (`Bytes`), so the caller's buffers can
//! go as soon as it is built. Operations run in order; a later operation
//! sees the effects of the earlier ones. If any operation fails, none of
//! them takes effect and the commit reports the error. The contract of each
//! operation is on its builder method.

use bytes::Bytes;

use crate::types::{CollectionId, ObjectId};

/// One operation. Build them with the [`Transaction`] methods.
#[derive(Debug, Clone)]
pub enum Op {
    CreateCollection(CollectionId),
    RemoveCollection(CollectionId),
    Touch(CollectionId, ObjectId),
    Write {
        cid: CollectionId,
        oid: ObjectId,
        offset: u64,
        data: Bytes,
    },
    Zero {
        cid: CollectionId,
        oid: ObjectId,
        offset: u64,
        len: u64,
    },
    Truncate {
        cid: CollectionId,
        oid: ObjectId,
        size: u64,
    },
    Remove(CollectionId, ObjectId),
    Clone {
        cid: CollectionId,
        src: ObjectId,
        dst: ObjectId,
    },
    SetAttrs {
        cid: CollectionId,
        oid: ObjectId,
        attrs: Vec<(String, Bytes)>,
    },
    RmAttr {
        cid: CollectionId,
        oid: ObjectId,
        name: String,
    },
    OmapSetKeys {
        cid: CollectionId,
        oid: ObjectId,
        entries: Vec<(Bytes, Bytes)>,
    },
    OmapRmKeys {
        cid: CollectionId,
        oid: ObjectId,
        keys: Vec<Bytes>,
    },
    OmapClear(CollectionId, ObjectId),
    OmapSetHeader {
        cid: CollectionId,
        oid: ObjectId,
        header: Bytes,
    },
    CollectionMoveRename {
        src_cid: CollectionId,
        src_oid: ObjectId,
        dst_cid: CollectionId,
        dst_oid: ObjectId,
    },
    /// Appends to the collection's log (see [`Transaction::log_append`]).
    LogAppend {
        cid: CollectionId,
        key: u128,
        value: Bytes,
    },
    LogTrim {
        cid: CollectionId,
        through: u128,
    },
    LogClear(CollectionId),
}

/// An atomic group of operations; see the module documentation. (Not
/// `Clone`: `clone` is the object-copy operation; use
/// [`Transaction::duplicate`].)
#[derive(Debug, Default)]
pub struct Transaction {
    pub(crate) ops: Vec<Op>,
    data_bytes: u64,
}

impl Transaction {
    pub fn new() -> Transaction {
        Transaction::default()
    }

    /// A copy of this transaction (the data buffers are shared).
    pub fn duplicate(&self) -> Transaction {
        Transaction {
            ops: self.ops.clone(),
            data_bytes: self.data_bytes,
        }
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Bytes of data, attribute and omap payload carried (for throttling).
    pub fn payload_bytes(&self) -> u64 {
        self.data_bytes
    }

    fn push(&mut self, op: Op, bytes: usize) -> &mut Self {
        self.data_bytes += bytes as u64;
        self.ops.push(op);
        self
    }

    /// Creates collection `cid`. Fails with `CollectionExists` if it exists.
    pub fn create_collection(&mut self, cid: &CollectionId) -> &mut Self {
        self.push(Op::CreateCollection(cid.clone()), 0)
    }

    /// Removes collection `cid` (and its log). Fails with
    /// `CollectionNotFound`, or with `CollectionNotEmpty` while it holds
    /// objects.
    pub fn remove_collection(&mut self, cid: &CollectionId) -> &mut Self {
        self.push(Op::RemoveCollection(cid.clone()), 0)
    }

    /// Creates the object (empty) if it does not exist; otherwise nothing.
    /// Every object operation fails with `CollectionNotFound` when `cid`
    /// does not exist.
    pub fn touch(&mut self, cid: &CollectionId, oid: &ObjectId) -> &mut Self {
        self.push(Op::Touch(cid.clone(), oid.clone()), 0)
    }

    /// Writes `data` at `offset` (any offset and length), creating the
    /// object if needed and growing its size to `offset + len`. A
    /// zero-length write only creates the object. A gap between the old
    /// size and `offset` reads as zeros.
    pub fn write(
        &mut self,
        cid: &CollectionId,
        oid: &ObjectId,
        offset: u64,
        data: impl Into<Bytes>,
    ) -> &mut Self {
        let data = data.into();
        let n = data.len();
        self.push(
            Op::Write {
                cid: cid.clone(),
                oid: oid.clone(),
                offset,
                data,
            },
            n,
        )
    }

    /// Like [`Transaction::write`], copying a borrowed slice.
    pub fn write_slice(
        &mut self,
        cid: &CollectionId,
        oid: &ObjectId,
        offset: u64,
        data: &[u8],
    ) -> &mut Self {
        self.write(cid, oid, offset, Bytes::copy_from_slice(data))
    }

    /// Makes `[offset, offset + len)` read as zeros, releasing whole blocks;
    /// creates the object if needed and grows its size to cover the range.
    pub fn zero(&mut self, cid: &CollectionId, oid: &ObjectId, offset: u64, len: u64) -> &mut Self {
        self.push(
            Op::Zero {
                cid: cid.clone(),
                oid: oid.clone(),
                offset,
                len,
            },
            0,
        )
    }

    /// Sets the size: shrinking releases the data past `size`, growing
    /// exposes zeros. Creates the object if needed.
    pub fn truncate(&mut self, cid: &CollectionId, oid: &ObjectId, size: u64) -> &mut Self {
        self.push(
            Op::Truncate {
                cid: cid.clone(),
                oid: oid.clone(),
                size,
            },
            0,
        )
    }

    /// Removes the object with its data, xattrs and omap. Fails with
    /// `ObjectNotFound` if it does not exist.
    pub fn remove(&mut self, cid: &CollectionId, oid: &ObjectId) -> &mut Self {
        self.push(Op::Remove(cid.clone(), oid.clone()), 0)
    }

    /// Makes `dst` a copy of `src` (data, xattrs, omap and header),
    /// replacing `dst` if it exists. Fails with `ObjectNotFound` if `src`
    /// does not exist. The data is copied (cost grows with the size).
    pub fn clone(&mut self, cid: &CollectionId, src: &ObjectId, dst: &ObjectId) -> &mut Self {
        self.push(
            Op::Clone {
                cid: cid.clone(),
                src: src.clone(),
                dst: dst.clone(),
            },
            0,
        )
    }

    /// Sets xattrs (replacing values of existing names), creating the
    /// object if needed.
    pub fn setattrs(
        &mut self,
        cid: &CollectionId,
        oid: &ObjectId,
        attrs: Vec<(String, Bytes)>,
    ) -> &mut Self {
        let n = attrs.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.push(
            Op::SetAttrs {
                cid: cid.clone(),
                oid: oid.clone(),
                attrs,
            },
            n,
        )
    }

    /// One xattr; see [`Transaction::setattrs`].
    pub fn setattr(
        &mut self,
        cid: &CollectionId,
        oid: &ObjectId,
        name: &str,
        value: impl Into<Bytes>,
    ) -> &mut Self {
        self.setattrs(cid, oid, vec![(name.to_string(), value.into())])
    }

    /// Removes one xattr (nothing if absent). Fails with `ObjectNotFound`.
    pub fn rmattr(&mut self, cid: &CollectionId, oid: &ObjectId, name: &str) -> &mut Self {
        self.push(
            Op::RmAttr {
                cid: cid.clone(),
                oid: oid.clone(),
                name: name.to_string(),
            },
            0,
        )
    }

    /// Sets omap entries, creating the object if needed.
    pub fn omap_setkeys(
        &mut self,
        cid: &CollectionId,
        oid: &ObjectId,
        entries: Vec<(Bytes, Bytes)>,
    ) -> &mut Self {
        let n = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.push(
            Op::OmapSetKeys {
                cid: cid.clone(),
                oid: oid.clone(),
                entries,
            },
            n,
        )
    }

    /// Removes omap keys (absent keys are ignored). Fails with
    /// `ObjectNotFound`.
    pub fn omap_rmkeys(
        &mut self,
        cid: &CollectionId,
        oid: &ObjectId,
        keys: Vec<Bytes>,
    ) -> &mut Self {
        let n = keys.iter().map(Bytes::len).sum();
        self.push(
            Op::OmapRmKeys {
                cid: cid.clone(),
                oid: oid.clone(),
                keys,
            },
            n,
        )
    }

    /// Removes every omap entry and the omap header. Fails with
    /// `ObjectNotFound`.
    pub fn omap_clear(&mut self, cid: &CollectionId, oid: &ObjectId) -> &mut Self {
        self.push(Op::OmapClear(cid.clone(), oid.clone()), 0)
    }

    /// Sets the omap header, creating the object if needed.
    pub fn omap_setheader(
        &mut self,
        cid: &CollectionId,
        oid: &ObjectId,
        header: impl Into<Bytes>,
    ) -> &mut Self {
        let header = header.into();
        let n = header.len();
        self.push(
            Op::OmapSetHeader {
                cid: cid.clone(),
                oid: oid.clone(),
                header,
            },
            n,
        )
    }

    /// Moves object `src_oid` of `src_cid` to `dst_oid` in `dst_cid` (which
    /// may be the same collection), keeping data, xattrs and omap. Fails
    /// with `ObjectNotFound` for a missing source, `ObjectExists` when the
    /// destination exists.
    pub fn collection_move_rename(
        &mut self,
        src_cid: &CollectionId,
        src_oid: &ObjectId,
        dst_cid: &CollectionId,
        dst_oid: &ObjectId,
    ) -> &mut Self {
        self.push(
            Op::CollectionMoveRename {
                src_cid: src_cid.clone(),
                src_oid: src_oid.clone(),
                dst_cid: dst_cid.clone(),
                dst_oid: dst_oid.clone(),
            },
            0,
        )
    }

    /// Appends an entry to the log of collection `cid`: an append-only
    /// sequence of (key, value) that lives in the journal and is written to
    /// the metadata database in chunks at checkpoints, so an append costs
    /// no database write of its own (the PG log). Keys must increase
    /// (the store keeps the first of two entries with the same key).
    /// Fails with `CollectionNotFound`.
    pub fn log_append(
        &mut self,
        cid: &CollectionId,
        key: u128,
        value: impl Into<Bytes>,
    ) -> &mut Self {
        let value = value.into();
        let n = value.len();
        self.push(
            Op::LogAppend {
                cid: cid.clone(),
                key,
                value,
            },
            n,
        )
    }

    /// Drops the entries of the log of `cid` with keys up to `through`.
    pub fn log_trim(&mut self, cid: &CollectionId, through: u128) -> &mut Self {
        self.push(
            Op::LogTrim {
                cid: cid.clone(),
                through,
            },
            0,
        )
    }

    /// Drops every entry of the log of `cid`.
    pub fn log_clear(&mut self, cid: &CollectionId) -> &mut Self {
        self.push(Op::LogClear(cid.clone()), 0)
    }
}
