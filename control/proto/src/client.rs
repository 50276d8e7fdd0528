//! The client <-> OSD protocol (type ids 200-299): object operations sent
//! to a PG's primary and their replies.
//!
//! A request names a PG, an object and a list of operations applied
//! atomically: either all reads (served by the primary from committed
//! state) or all writes (logged, replicated to the acting set, answered
//! once every acting member has committed). Data travels in segments
//! after the header (see [`crate::segments`]), so neither side copies it
//! out of the frame.
//!
//! Every request carries a request id (client, nonce, tid). A resend
//! keeps it, and the OSD answers a request already in the PG log from the
//! log's record instead of applying it again.

use std::collections::BTreeMap;

use bytes::Bytes;
use kalmar_common::encoding::{encode_versioned, put_bytes, Decode, DecodeError, Decoder, Encode};
use kalmar_maps::{Epoch, PgId};
use kalmar_msgr::Message;

use crate::registry::{CLIENT_OSD_OP, CLIENT_OSD_OP_REPLY};
use crate::segments::{self, SegmentReader, SegmentWriter, SegmentedDecode, SegmentedEncode};
use crate::ProtoError;

/// Errno values (positive); results carry them negated, as Ceph's do.
pub mod errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const E2BIG: i32 = 7;
    pub const EAGAIN: i32 = 11;
    pub const EACCES: i32 = 13;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const EINVAL: i32 = 22;
    pub const EFBIG: i32 = 27;
    pub const ENOSPC: i32 = 28;
    pub const ERANGE: i32 = 34;
    pub const ENAMETOOLONG: i32 = 36;
    pub const ENODATA: i32 = 61;
    /// A request or its reply would not fit one message (Ceph's
    /// `OSD_WRITETOOBIG` is this errno too).
    pub const EMSGSIZE: i32 = 90;
    pub const EOPNOTSUPP: i32 = 95;
    pub const ETIMEDOUT: i32 = 110;
    /// A pool at its quota (`full_quota`) refuses writes that grow it.
    pub const EDQUOT: i32 = 122;

    /// A short description, as `strerror` gives it.
    pub fn describe(e: i32) -> &'static str {
        match e.abs() {
            EPERM => "Operation not permitted",
            ENOENT => "No such file or directory",
            EIO => "Input/output error",
            E2BIG => "Argument list too long",
            EAGAIN => "Resource temporarily unavailable",
            EACCES => "Permission denied",
            EBUSY => "Device or resource busy",
            EEXIST => "File exists",
            EINVAL => "Invalid argument",
            EFBIG => "File too large",
            ENOSPC => "No space left on device",
            ERANGE => "Numerical result out of range",
            ENAMETOOLONG => "File name too long",
            ENODATA => "No data available",
            EMSGSIZE => "Message too long",
            EOPNOTSUPP => "Operation not supported",
            ETIMEDOUT => "Connection timed out",
            EDQUOT => "Disk quota exceeded",
            _ => "Unknown error",
        }
    }
}

/// One operation on an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OsdOp {
    /// Reads `len` bytes at `offset` (0 = to the end). Output: the bytes.
    Read {
        offset: u64,
        len: u64,
    },
    /// Output: an encoded [`StatOut`].
    Stat,
    /// Output: the value (`-ENODATA` when absent).
    GetXattr {
        name: String,
    },
    /// Output: an encoded `BTreeMap<String, Blob>` of user xattrs.
    GetXattrs,
    /// Output: an encoded [`OmapPage`] of entries after `start_after`.
    OmapGetVals {
        start_after: String,
        max: u32,
    },
    /// Output: an encoded `BTreeMap<String, Blob>` of the keys present.
    OmapGetValsByKeys {
        keys: Vec<String>,
    },
    /// Lists the PG's objects (the request's object name is ignored).
    /// Output: an encoded [`ListPage`].
    PgLs {
        start_after: String,
        max: u32,
    },
    /// PG command (the request's object name is ignored): the PG's state
    /// as Ceph's `pg PGID query` shows it. Output: JSON.
    PgQuery,
    /// PG command: schedule a scrub (`deep`), or a repair (a deep scrub
    /// that rewrites bad copies). Output: JSON `{"osd": N}` (the primary).
    PgScrub {
        deep: bool,
        repair: bool,
    },
    /// PG command: the inconsistent objects the last scrub of the current
    /// interval recorded, after `start_after`. Output: JSON `{"epoch",
    /// "inconsistents": [...], "more"}`; `-ENOENT` when there is no scrub
    /// record.
    PgListInconsistent {
        start_after: String,
        max: u32,
    },
    /// Creates the object; with `exclusive`, fails `-EEXIST` if it exists.
    Create {
        exclusive: bool,
    },
    Write {
        offset: u64,
        data: Bytes,
    },
    /// Replaces the whole data.
    WriteFull {
        data: Bytes,
    },
    Append {
        data: Bytes,
    },
    Truncate {
        size: u64,
    },
    Zero {
        offset: u64,
        len: u64,
    },
    /// Removes the object (`-ENOENT` if absent).
    Remove,
    SetXattr {
        name: String,
        value: Bytes,
    },
    /// `-ENODATA` if absent.
    RmXattr {
        name: String,
    },
    OmapSetVals {
        entries: Vec<(String, Bytes)>,
    },
    OmapRmKeys {
        keys: Vec<String>,
    },
    OmapClear,
}

impl OsdOp {
    /// Whether the op changes the object (the request goes down the write
    /// path: logged and replicated).
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            OsdOp::Read { .. }
                | OsdOp::Stat
                | OsdOp::GetXattr { .. }
                | OsdOp::GetXattrs
                | OsdOp::OmapGetVals { .. }
                | OsdOp::OmapGetValsByKeys { .. }
                | OsdOp::PgLs { .. }
                | OsdOp::PgQuery
                | OsdOp::PgScrub { .. }
                | OsdOp::PgListInconsistent { .. }
        )
    }

    /// Whether the op is a command to the PG itself, answered by its
    /// primary in any state.
    pub fn is_pg_command(&self) -> bool {
        matches!(
            self,
            OsdOp::PgQuery | OsdOp::PgScrub { .. } | OsdOp::PgListInconsistent { .. }
        )
    }

    /// Data bytes the op carries to the OSD.
    pub fn in_bytes(&self) -> u64 {
        match self {
            OsdOp::Write { data, .. } | OsdOp::WriteFull { data } | OsdOp::Append { data } => {
                data.len() as u64
            }
            OsdOp::SetXattr { name, value } => (name.len() + value.len()) as u64,
            OsdOp::OmapSetVals { entries } => entries
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum(),
            _ => 0,
        }
    }

    /// The op's name and extent (offset, length) for descriptions, without
    /// allocating (`describe` formats the same, with names and counts).
    pub fn brief(&self) -> (&'static str, Option<(u64, u64)>) {
        match self {
            OsdOp::Read { offset, len } => ("read", Some((*offset, *len))),
            OsdOp::Stat => ("stat", None),
            OsdOp::GetXattr { .. } => ("getxattr", None),
            OsdOp::GetXattrs => ("getxattrs", None),
            OsdOp::OmapGetVals { .. } => ("omap-get-vals", None),
            OsdOp::OmapGetValsByKeys { .. } => ("omap-get-vals-by-keys", None),
            OsdOp::PgLs { .. } => ("pgnls", None),
            OsdOp::PgQuery => ("query", None),
            OsdOp::PgScrub { repair: true, .. } => ("repair", None),
            OsdOp::PgScrub { deep: true, .. } => ("deep-scrub", None),
            OsdOp::PgScrub { .. } => ("scrub", None),
            OsdOp::PgListInconsistent { .. } => ("scrubls", None),
            OsdOp::Create { .. } => ("create", None),
            OsdOp::Write { offset, data } => ("write", Some((*offset, data.len() as u64))),
            OsdOp::WriteFull { data } => ("writefull", Some((0, data.len() as u64))),
            OsdOp::Append { data } => ("append", Some((0, data.len() as u64))),
            OsdOp::Truncate { size } => ("truncate", Some((*size, 0))),
            OsdOp::Zero { offset, len } => ("zero", Some((*offset, *len))),
            OsdOp::Remove => ("delete", None),
            OsdOp::SetXattr { .. } => ("setxattr", None),
            OsdOp::RmXattr { .. } => ("rmxattr", None),
            OsdOp::OmapSetVals { .. } => ("omap-set-vals", None),
            OsdOp::OmapRmKeys { .. } => ("omap-rm-keys", None),
            OsdOp::OmapClear => ("omap-clear", None),
        }
    }

    /// The op's kind, as [`OsdOp::describe`] names it without arguments
    /// (`write`, `omap-get-vals`): for logs that must not allocate.
    pub fn kind(&self) -> &'static str {
        match self {
            OsdOp::Read { .. } => "read",
            OsdOp::Stat => "stat",
            OsdOp::GetXattr { .. } => "getxattr",
            OsdOp::GetXattrs => "getxattrs",
            OsdOp::OmapGetVals { .. } => "omap-get-vals",
            OsdOp::OmapGetValsByKeys { .. } => "omap-get-vals-by-keys",
            OsdOp::PgLs { .. } => "pgnls",
            OsdOp::PgQuery => "query",
            OsdOp::PgScrub { repair: true, .. } => "repair",
            OsdOp::PgScrub { deep: true, .. } => "deep-scrub",
            OsdOp::PgScrub { .. } => "scrub",
            OsdOp::PgListInconsistent { .. } => "scrubls",
            OsdOp::Create { .. } => "create",
            OsdOp::Write { .. } => "write",
            OsdOp::WriteFull { .. } => "writefull",
            OsdOp::Append { .. } => "append",
            OsdOp::Truncate { .. } => "truncate",
            OsdOp::Zero { .. } => "zero",
            OsdOp::Remove => "delete",
            OsdOp::SetXattr { .. } => "setxattr",
            OsdOp::RmXattr { .. } => "rmxattr",
            OsdOp::OmapSetVals { .. } => "omap-set-vals",
            OsdOp::OmapRmKeys { .. } => "omap-rm-keys",
            OsdOp::OmapClear => "omap-clear",
        }
    }

    /// Ceph-style short name for op descriptions (`write 0~4096`).
    pub fn describe(&self) -> String {
        match self {
            OsdOp::Read { offset, len } => format!("read {offset}~{len}"),
            OsdOp::Stat => "stat".into(),
            OsdOp::GetXattr { name } => format!("getxattr {name}"),
            OsdOp::GetXattrs => "getxattrs".into(),
            OsdOp::OmapGetVals { .. } => "omap-get-vals".into(),
            OsdOp::OmapGetValsByKeys { .. } => "omap-get-vals-by-keys".into(),
            OsdOp::PgLs { .. } => "pgnls".into(),
            OsdOp::PgQuery => "query".into(),
            OsdOp::PgScrub { deep, repair } => match (deep, repair) {
                (_, true) => "repair".into(),
                (true, false) => "deep-scrub".into(),
                (false, false) => "scrub".into(),
            },
            OsdOp::PgListInconsistent { .. } => "scrubls".into(),
            OsdOp::Create { .. } => "create".into(),
            OsdOp::Write { offset, data } => format!("write {offset}~{}", data.len()),
            OsdOp::WriteFull { data } => format!("writefull 0~{}", data.len()),
            OsdOp::Append { data } => format!("append {}", data.len()),
            OsdOp::Truncate { size } => format!("truncate {size}"),
            OsdOp::Zero { offset, len } => format!("zero {offset}~{len}"),
            OsdOp::Remove => "delete".into(),
            OsdOp::SetXattr { name, .. } => format!("setxattr {name}"),
            OsdOp::RmXattr { name } => format!("rmxattr {name}"),
            OsdOp::OmapSetVals { entries } => format!("omap-set-vals {}", entries.len()),
            OsdOp::OmapRmKeys { keys } => format!("omap-rm-keys {}", keys.len()),
            OsdOp::OmapClear => "omap-clear".into(),
        }
    }
}

impl SegmentedEncode for OsdOp {
    fn encode_seg(&self, b: &mut Vec<u8>, segs: &mut SegmentWriter) {
        match self {
            OsdOp::Read { offset, len } => {
                b.push(1);
                offset.encode(b);
                len.encode(b);
            }
            OsdOp::Stat => b.push(2),
            OsdOp::GetXattr { name } => {
                b.push(3);
                name.encode(b);
            }
            OsdOp::GetXattrs => b.push(4),
            OsdOp::OmapGetVals { start_after, max } => {
                b.push(5);
                start_after.encode(b);
                max.encode(b);
            }
            OsdOp::OmapGetValsByKeys { keys } => {
                b.push(6);
                keys.encode(b);
            }
            OsdOp::PgLs { start_after, max } => {
                b.push(7);
                start_after.encode(b);
                max.encode(b);
            }
            OsdOp::PgQuery => b.push(8),
            OsdOp::PgScrub { deep, repair } => {
                b.push(9);
                deep.encode(b);
                repair.encode(b);
            }
            OsdOp::PgListInconsistent { start_after, max } => {
                b.push(10);
                start_after.encode(b);
                max.encode(b);
            }
            OsdOp::Create { exclusive } => {
                b.push(20);
                exclusive.encode(b);
            }
            OsdOp::Write { offset, data } => {
                b.push(21);
                offset.encode(b);
                segs.put(b, data);
            }
            OsdOp::WriteFull { data } => {
                b.push(22);
                segs.put(b, data);
            }
            OsdOp::Append { data } => {
                b.push(23);
                segs.put(b, data);
            }
            OsdOp::Truncate { size } => {
                b.push(24);
                size.encode(b);
            }
            OsdOp::Zero { offset, len } => {
                b.push(25);
                offset.encode(b);
                len.encode(b);
            }
            OsdOp::Remove => b.push(26),
            OsdOp::SetXattr { name, value } => {
                b.push(27);
                name.encode(b);
                segs.put(b, value);
            }
            OsdOp::RmXattr { name } => {
                b.push(28);
                name.encode(b);
            }
            OsdOp::OmapSetVals { entries } => {
                b.push(29);
                (entries.len() as u32).encode(b);
                for (k, v) in entries {
                    k.encode(b);
                    put_bytes(b, v);
                }
            }
            OsdOp::OmapRmKeys { keys } => {
                b.push(30);
                keys.encode(b);
            }
            OsdOp::OmapClear => b.push(31),
        }
    }
}

impl SegmentedDecode for OsdOp {
    fn decode_seg(d: &mut Decoder<'_>, segs: &mut SegmentReader) -> Result<Self, DecodeError> {
        Ok(match d.u8()? {
            1 => OsdOp::Read {
                offset: d.u64()?,
                len: d.u64()?,
            },
            2 => OsdOp::Stat,
            3 => OsdOp::GetXattr {
                name: String::decode(d)?,
            },
            4 => OsdOp::GetXattrs,
            5 => OsdOp::OmapGetVals {
                start_after: String::decode(d)?,
                max: d.u32()?,
            },
            6 => OsdOp::OmapGetValsByKeys {
                keys: Vec::decode(d)?,
            },
            7 => OsdOp::PgLs {
                start_after: String::decode(d)?,
                max: d.u32()?,
            },
            8 => OsdOp::PgQuery,
            9 => OsdOp::PgScrub {
                deep: bool::decode(d)?,
                repair: bool::decode(d)?,
            },
            10 => OsdOp::PgListInconsistent {
                start_after: String::decode(d)?,
                max: d.u32()?,
            },
            20 => OsdOp::Create {
                exclusive: bool::decode(d)?,
            },
            21 => OsdOp::Write {
                offset: d.u64()?,
                data: segs.take(d)?,
            },
            22 => OsdOp::WriteFull {
                data: segs.take(d)?,
            },
            23 => OsdOp::Append {
                data: segs.take(d)?,
            },
            24 => OsdOp::Truncate { size: d.u64()? },
            25 => OsdOp::Zero {
                offset: d.u64()?,
                len: d.u64()?,
            },
            26 => OsdOp::Remove,
            27 => OsdOp::SetXattr {
                name: String::decode(d)?,
                value: segs.take(d)?,
            },
            28 => OsdOp::RmXattr {
                name: String::decode(d)?,
            },
            29 => {
                let n = d.len_prefix(8, "omap entries")?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = String::decode(d)?;
                    let v = segs.header_part(d.bytes()?);
                    entries.push((k, v));
                }
                OsdOp::OmapSetVals { entries }
            }
            30 => OsdOp::OmapRmKeys {
                keys: Vec::decode(d)?,
            },
            31 => OsdOp::OmapClear,
            t => {
                return Err(DecodeError::Invalid {
                    what: "osd op",
                    detail: format!("unknown op code {t}"),
                })
            }
        })
    }
}

/// Request flags.
pub mod flags {
    /// The request was sent before (after a new map or a lost session).
    pub const RETRY: u32 = 1;
}

/// A client's request to a PG's primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsdOpRequest {
    /// The client's transaction id (part of the request id).
    pub tid: u64,
    /// The client's entity number (`client.N`).
    pub client: u64,
    /// Distinguishes two instances of the same client number.
    pub nonce: u64,
    pub pgid: PgId,
    /// The client's map epoch when it computed the target.
    pub map_epoch: Epoch,
    pub oid: String,
    pub flags: u32,
    pub ops: Vec<OsdOp>,
}

const REQUEST_VERSION: u8 = 1;

impl SegmentedEncode for OsdOpRequest {
    fn encode_seg(&self, buf: &mut Vec<u8>, segs: &mut SegmentWriter) {
        encode_versioned(buf, REQUEST_VERSION, 1, |b| {
            self.tid.encode(b);
            self.client.encode(b);
            self.nonce.encode(b);
            self.pgid.encode(b);
            self.map_epoch.encode(b);
            self.oid.encode(b);
            self.flags.encode(b);
            self.ops.encode_seg(b, segs);
        })
    }
}

impl SegmentedDecode for OsdOpRequest {
    fn decode_seg(d: &mut Decoder<'_>, segs: &mut SegmentReader) -> Result<Self, DecodeError> {
        d.versioned("osd op request", REQUEST_VERSION, |d, _| {
            Ok(OsdOpRequest {
                tid: d.u64()?,
                client: d.u64()?,
                nonce: d.u64()?,
                pgid: PgId::decode(d)?,
                map_epoch: d.u32()?,
                oid: String::decode(d)?,
                flags: d.u32()?,
                ops: Vec::decode_seg(d, segs)?,
            })
        })
    }
}

impl OsdOpRequest {
    pub fn to_message(&self) -> Message {
        segments::to_message(CLIENT_OSD_OP, self)
    }

    pub fn from_message(msg: &Message) -> Result<Self, ProtoError> {
        segments::decode_message(msg, CLIENT_OSD_OP, "osd_op")
    }

    /// Whether the request changes anything (all its ops are writes).
    pub fn is_write(&self) -> bool {
        self.ops.iter().any(OsdOp::is_write)
    }

    pub fn in_bytes(&self) -> u64 {
        self.ops.iter().map(OsdOp::in_bytes).sum()
    }
}

/// One op's result: its return value and output data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpOutput {
    pub rval: i32,
    pub data: Bytes,
}

impl SegmentedEncode for OpOutput {
    fn encode_seg(&self, b: &mut Vec<u8>, segs: &mut SegmentWriter) {
        self.rval.encode(b);
        segs.put(b, &self.data);
    }
}

impl SegmentedDecode for OpOutput {
    fn decode_seg(d: &mut Decoder<'_>, segs: &mut SegmentReader) -> Result<Self, DecodeError> {
        Ok(OpOutput {
            rval: i32::decode(d)?,
            data: segs.take(d)?,
        })
    }
}

/// The primary's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsdOpReply {
    pub tid: u64,
    /// 0, or the negative errno of the first failing op (nothing applied).
    pub result: i32,
    /// PG log version of a write (`epoch'version`); the object's version
    /// for reads.
    pub version_epoch: Epoch,
    pub version: u64,
    /// The OSD's map epoch.
    pub map_epoch: Epoch,
    /// With `result == -EAGAIN`: resend once the client has a map of at
    /// least this epoch (the OSD is not, or not yet, the primary).
    pub retry_epoch: Epoch,
    /// Human-readable reason of a failure (empty on success).
    pub error: String,
    pub outputs: Vec<OpOutput>,
}

const REPLY_VERSION: u8 = 1;

impl SegmentedEncode for OsdOpReply {
    fn encode_seg(&self, buf: &mut Vec<u8>, segs: &mut SegmentWriter) {
        encode_versioned(buf, REPLY_VERSION, 1, |b| {
            self.tid.encode(b);
            self.result.encode(b);
            self.version_epoch.encode(b);
            self.version.encode(b);
            self.map_epoch.encode(b);
            self.retry_epoch.encode(b);
            self.error.encode(b);
            self.outputs.encode_seg(b, segs);
        })
    }
}

impl SegmentedDecode for OsdOpReply {
    fn decode_seg(d: &mut Decoder<'_>, segs: &mut SegmentReader) -> Result<Self, DecodeError> {
        d.versioned("osd op reply", REPLY_VERSION, |d, _| {
            Ok(OsdOpReply {
                tid: d.u64()?,
                result: i32::decode(d)?,
                version_epoch: d.u32()?,
                version: d.u64()?,
                map_epoch: d.u32()?,
                retry_epoch: d.u32()?,
                error: String::decode(d)?,
                outputs: Vec::decode_seg(d, segs)?,
            })
        })
    }
}

impl OsdOpReply {
    /// A failure without outputs.
    pub fn error(tid: u64, errno_neg: i32, map_epoch: Epoch, error: impl Into<String>) -> Self {
        OsdOpReply {
            tid,
            result: errno_neg,
            map_epoch,
            error: error.into(),
            ..Default::default()
        }
    }

    pub fn to_message(&self) -> Message {
        segments::to_message(CLIENT_OSD_OP_REPLY, self)
    }

    pub fn from_message(msg: &Message) -> Result<Self, ProtoError> {
        segments::decode_message(msg, CLIENT_OSD_OP_REPLY, "osd_op_reply")
    }
}

/// Output of [`OsdOp::Stat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatOut {
    pub size_bytes: u64,
    pub mtime_us: u64,
}
kalmar_common::impl_versioned!(StatOut, "stat out", version = 1, compat = 1, { size_bytes, mtime_us });

/// Output of [`OsdOp::OmapGetVals`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OmapPage {
    pub entries: BTreeMap<String, kalmar_common::encoding::Blob>,
    /// More entries follow the last one returned.
    pub more: bool,
}
kalmar_common::impl_versioned!(OmapPage, "omap page", version = 1, compat = 1, { entries, more });

/// Output of [`OsdOp::PgLs`]: object names in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    pub names: Vec<String>,
    /// More objects follow the last one returned.
    pub more: bool,
}
kalmar_common::impl_versioned!(ListPage, "list page", version = 1, compat = 1, { names, more });

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_ops() -> Vec<OsdOp> {
        vec![
            OsdOp::Read { offset: 1, len: 2 },
            OsdOp::Stat,
            OsdOp::GetXattr { name: "a".into() },
            OsdOp::GetXattrs,
            OsdOp::OmapGetVals {
                start_after: "k".into(),
                max: 9,
            },
            OsdOp::OmapGetValsByKeys {
                keys: vec!["x".into(), "y".into()],
            },
            OsdOp::PgLs {
                start_after: String::new(),
                max: 100,
            },
            OsdOp::PgQuery,
            OsdOp::PgScrub {
                deep: true,
                repair: false,
            },
            OsdOp::PgListInconsistent {
                start_after: "o".into(),
                max: 32,
            },
            OsdOp::Create { exclusive: true },
            OsdOp::Write {
                offset: 4096,
                data: Bytes::from_static(b"data"),
            },
            OsdOp::WriteFull {
                data: Bytes::from_static(b"full"),
            },
            OsdOp::Append {
                data: Bytes::from_static(b""),
            },
            OsdOp::Truncate { size: 3 },
            OsdOp::Zero { offset: 1, len: 5 },
            OsdOp::Remove,
            OsdOp::SetXattr {
                name: "n".into(),
                value: Bytes::from_static(b"v"),
            },
            OsdOp::RmXattr { name: "n".into() },
            OsdOp::OmapSetVals {
                entries: vec![("k".into(), Bytes::from_static(b"v"))],
            },
            OsdOp::OmapRmKeys {
                keys: vec!["k".into()],
            },
            OsdOp::OmapClear,
        ]
    }

    #[test]
    fn request_and_reply_roundtrip() {
        let req = OsdOpRequest {
            tid: 5,
            client: 4123,
            nonce: 9,
            pgid: PgId::new(1, 0x1f),
            map_epoch: 12,
            oid: "obj".into(),
            flags: flags::RETRY,
            ops: sample_ops(),
        };
        let m = req.to_message();
        assert_eq!(OsdOpRequest::from_message(&m).expect("decodes"), req);
        assert!(req.is_write());
        let reply = OsdOpReply {
            tid: 5,
            result: 0,
            version_epoch: 12,
            version: 77,
            map_epoch: 12,
            retry_epoch: 0,
            error: String::new(),
            outputs: vec![
                OpOutput {
                    rval: 0,
                    data: Bytes::from_static(b"bytes"),
                },
                OpOutput::default(),
            ],
        };
        assert_eq!(
            OsdOpReply::from_message(&reply.to_message()).expect("decodes"),
            reply
        );
        assert!(OsdOpReply::from_message(&m).is_err(), "type is checked");
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let m = Message::new(CLIENT_OSD_OP, bytes.clone());
            let _ = OsdOpRequest::from_message(&m);
            let _ = OsdOpReply::from_message(&Message::new(CLIENT_OSD_OP_REPLY, bytes));
        }

        #[test]
        fn mutated_requests_never_panic(flip in 0usize..2000, bit in 0u8..8) {
            let req = OsdOpRequest {
                tid: 1, client: 2, nonce: 3, pgid: PgId::new(1, 2), map_epoch: 4,
                oid: "o".into(), flags: 0, ops: sample_ops(),
            };
            let mut b = req.to_message().to_vec();
            let i = flip % b.len();
            b[i] ^= 1 << bit;
            let _ = OsdOpRequest::from_message(&Message::new(CLIENT_OSD_OP, b));
        }

        #[test]
        fn write_roundtrip(offset: u64, data in proptest::collection::vec(any::<u8>(), 0..2000), name in "[a-z]{1,20}") {
            let req = OsdOpRequest {
                tid: 1, client: 2, nonce: 3, pgid: PgId::new(1, 2), map_epoch: 4,
                oid: name, flags: 0,
                ops: vec![OsdOp::Write { offset, data: Bytes::from(data) }],
            };
            prop_assert_eq!(OsdOpRequest::from_message(&req.to_message()).expect("decodes"), req);
        }
    }
}
