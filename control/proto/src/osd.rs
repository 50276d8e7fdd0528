//! The OSD <-> OSD protocol (type ids 100-199): heartbeats, replicated
//! writes, the envelope of peering messages, recovery and scrub.
//!
//! A replicated write ([`RepOp`]) carries the store-level operations the
//! primary applied to one object, plus PG metadata (the log entry, the
//! trim point, stat deltas) encoded by the OSD crate; the replica applies
//! both in one transaction and answers [`RepOpReply`] once it is durable.

use bytes::Bytes;
use kalmar_common::encoding::{
    encode_versioned, put_bytes, Blob, Decode, DecodeError, Decoder, Encode,
};
use kalmar_common::impl_versioned;
use kalmar_maps::{Epoch, OsdId, PgId};
use kalmar_msgr::Message;

use crate::payload;
use crate::registry::{
    OSD_PEERING, OSD_PG_BACKFILL_REMOVE, OSD_PG_PULL, OSD_PG_PUSH, OSD_PG_PUSH_REPLY, OSD_PG_SCAN,
    OSD_PG_SCAN_REPLY, OSD_PG_SCRUB, OSD_PG_SCRUB_MAP, OSD_PING, OSD_REPOP, OSD_REPOP_REPLY,
};
use crate::segments::{self, SegmentReader, SegmentWriter, SegmentedDecode, SegmentedEncode};
use crate::ProtoError;

/// A heartbeat ping or its answer (on the heartbeat port).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsdPing {
    pub from: OsdId,
    pub map_epoch: Epoch,
    /// The pinger's clock when it sent the ping; echoed in the reply.
    pub stamp_us: u64,
    pub is_reply: bool,
}
impl_versioned!(OsdPing, "osd ping", version = 1, compat = 1, { from, map_epoch, stamp_us, is_reply });
payload!(OsdPing, OSD_PING, "osd_ping");

/// A peering message about one PG; `body` is the OSD crate's encoding of
/// the peering crate's message (this crate does not depend on it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsdPeeringMsg {
    pub from: OsdId,
    pub map_epoch: Epoch,
    pub body: Blob,
}
impl_versioned!(OsdPeeringMsg, "osd peering", version = 1, compat = 1, { from, map_epoch, body });
payload!(OsdPeeringMsg, OSD_PEERING, "osd_peering");

/// One store-level operation on the replicated object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    Touch,
    Write { offset: u64, data: Bytes },
    Truncate { size: u64 },
    Zero { offset: u64, len: u64 },
    Remove,
    SetAttrs { attrs: Vec<(String, Bytes)> },
    RmAttr { name: String },
    OmapSet { entries: Vec<(Bytes, Bytes)> },
    OmapRm { keys: Vec<Bytes> },
    OmapClear,
}

fn encode_pairs<K: AsRef<[u8]>>(b: &mut Vec<u8>, pairs: &[(K, Bytes)]) {
    (pairs.len() as u32).encode(b);
    for (k, v) in pairs {
        put_bytes(b, k.as_ref());
        put_bytes(b, v);
    }
}

impl SegmentedEncode for StoreOp {
    fn encode_seg(&self, b: &mut Vec<u8>, segs: &mut SegmentWriter) {
        match self {
            StoreOp::Touch => b.push(1),
            StoreOp::Write { offset, data } => {
                b.push(2);
                offset.encode(b);
                segs.put(b, data);
            }
            StoreOp::Truncate { size } => {
                b.push(3);
                size.encode(b);
            }
            StoreOp::Zero { offset, len } => {
                b.push(4);
                offset.encode(b);
                len.encode(b);
            }
            StoreOp::Remove => b.push(5),
            StoreOp::SetAttrs { attrs } => {
                b.push(6);
                encode_pairs(b, attrs);
            }
            StoreOp::RmAttr { name } => {
                b.push(7);
                name.encode(b);
            }
            StoreOp::OmapSet { entries } => {
                b.push(8);
                encode_pairs(b, entries);
            }
            StoreOp::OmapRm { keys } => {
                b.push(9);
                (keys.len() as u32).encode(b);
                for k in keys {
                    put_bytes(b, k);
                }
            }
            StoreOp::OmapClear => b.push(10),
        }
    }
}

fn decode_pairs(
    d: &mut Decoder<'_>,
    segs: &SegmentReader,
) -> Result<Vec<(Bytes, Bytes)>, DecodeError> {
    let n = d.len_prefix(8, "store op pairs")?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let k = segs.header_part(d.bytes()?);
        let val = segs.header_part(d.bytes()?);
        v.push((k, val));
    }
    Ok(v)
}

impl SegmentedDecode for StoreOp {
    fn decode_seg(d: &mut Decoder<'_>, segs: &mut SegmentReader) -> Result<Self, DecodeError> {
        Ok(match d.u8()? {
            1 => StoreOp::Touch,
            2 => StoreOp::Write {
                offset: d.u64()?,
                data: segs.take(d)?,
            },
            3 => StoreOp::Truncate { size: d.u64()? },
            4 => StoreOp::Zero {
                offset: d.u64()?,
                len: d.u64()?,
            },
            5 => StoreOp::Remove,
            6 => {
                // The same bytes as the pairs of an omap set, decoded
                // straight into names and values.
                let n = d.len_prefix(8, "store op pairs")?;
                let mut attrs = Vec::with_capacity(n);
                for _ in 0..n {
                    let name =
                        std::str::from_utf8(d.bytes()?).map_err(|e| DecodeError::Invalid {
                            what: "xattr name",
                            detail: e.to_string(),
                        })?;
                    let name = name.to_owned();
                    attrs.push((name, segs.header_part(d.bytes()?)));
                }
                StoreOp::SetAttrs { attrs }
            }
            7 => StoreOp::RmAttr {
                name: String::decode(d)?,
            },
            8 => StoreOp::OmapSet {
                entries: decode_pairs(d, segs)?,
            },
            9 => {
                let n = d.len_prefix(4, "omap keys")?;
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    keys.push(segs.header_part(d.bytes()?));
                }
                StoreOp::OmapRm { keys }
            }
            10 => StoreOp::OmapClear,
            t => {
                return Err(DecodeError::Invalid {
                    what: "store op",
                    detail: format!("unknown code {t}"),
                })
            }
        })
    }
}

/// A replicated write: primary -> each other acting member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepOp {
    pub pgid: PgId,
    pub from: OsdId,
    pub map_epoch: Epoch,
    /// The interval (`same_interval_since`) the write belongs to; a
    /// replica in another interval drops it.
    pub interval: Epoch,
    /// The primary's id for this write, echoed in the reply.
    pub tid: u64,
    pub oid: String,
    pub ops: Vec<StoreOp>,
    /// PG metadata for the same transaction (log entry, trim point, stat
    /// deltas), encoded by the OSD.
    pub pg_meta: Bytes,
}

const REPOP_VERSION: u8 = 1;

impl SegmentedEncode for RepOp {
    fn encode_seg(&self, buf: &mut Vec<u8>, segs: &mut SegmentWriter) {
        encode_versioned(buf, REPOP_VERSION, 1, |b| {
            self.pgid.encode(b);
            self.from.encode(b);
            self.map_epoch.encode(b);
            self.interval.encode(b);
            self.tid.encode(b);
            self.oid.encode(b);
            self.ops.encode_seg(b, segs);
            segs.put(b, &self.pg_meta);
        })
    }
}

impl SegmentedDecode for RepOp {
    fn decode_seg(d: &mut Decoder<'_>, segs: &mut SegmentReader) -> Result<Self, DecodeError> {
        d.versioned("repop", REPOP_VERSION, |d, _| {
            Ok(RepOp {
                pgid: PgId::decode(d)?,
                from: i32::decode(d)?,
                map_epoch: d.u32()?,
                interval: d.u32()?,
                tid: d.u64()?,
                oid: String::decode(d)?,
                ops: Vec::decode_seg(d, segs)?,
                pg_meta: segs.take(d)?,
            })
        })
    }
}

impl RepOp {
    pub fn to_message(&self) -> Message {
        segments::to_message(OSD_REPOP, self)
    }

    pub fn from_message(msg: &Message) -> Result<Self, ProtoError> {
        segments::decode_message(msg, OSD_REPOP, "osd_repop")
    }

    /// Data bytes carried.
    pub fn data_bytes(&self) -> u64 {
        self.ops
            .iter()
            .map(|o| match o {
                StoreOp::Write { data, .. } => data.len() as u64,
                _ => 0,
            })
            .sum()
    }
}

/// A replica's answer: the write is durable (or failed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepOpReply {
    pub pgid: PgId,
    pub from: OsdId,
    pub interval: Epoch,
    pub tid: u64,
    /// 0 or a negative errno.
    pub result: i32,
    /// The replica's newest durable log version (`epoch'version`).
    pub committed_epoch: Epoch,
    pub committed_version: u64,
}
impl_versioned!(RepOpReply, "repop reply", version = 1, compat = 1,
    { pgid, from, interval, tid, result, committed_epoch, committed_version });
payload!(RepOpReply, OSD_REPOP_REPLY, "osd_repop_reply");

/// An object copied for recovery or backfill (primary -> member), or the
/// answer to a pull (member -> primary). `exists == false` carries a
/// removal; a pull the source cannot serve has `result == -ENOENT`.
///
/// An object larger than `osd_recovery_max_chunk` travels as several
/// messages, in order on one session: each carries the data at
/// `data_offset`; only the last (`complete`) carries the xattrs and omap
/// and is answered. The first replaces any local copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgPush {
    pub pgid: PgId,
    pub from: OsdId,
    pub map_epoch: Epoch,
    pub interval: Epoch,
    pub oid: String,
    /// The object's log version (`epoch'version`).
    pub version_epoch: Epoch,
    pub version: u64,
    pub result: i32,
    pub exists: bool,
    pub is_pull_reply: bool,
    pub data: Bytes,
    pub attrs: Vec<(String, Bytes)>,
    pub omap: Vec<(Bytes, Bytes)>,
    pub omap_header: Option<Bytes>,
    /// Where `data` goes in the object (version 2).
    pub data_offset: u64,
    /// The last (or only) message of the object (version 2).
    pub complete: bool,
}

impl Default for PgPush {
    fn default() -> Self {
        PgPush {
            pgid: PgId::default(),
            from: 0,
            map_epoch: 0,
            interval: 0,
            oid: String::new(),
            version_epoch: 0,
            version: 0,
            result: 0,
            exists: false,
            is_pull_reply: false,
            data: Bytes::new(),
            attrs: Vec::new(),
            omap: Vec::new(),
            omap_header: None,
            data_offset: 0,
            complete: true,
        }
    }
}

/// Version 2 adds chunks (`data_offset`, `complete`); a whole object in
/// one message stays readable by version 1.
const PUSH_VERSION: u8 = 2;

impl SegmentedEncode for PgPush {
    fn encode_seg(&self, buf: &mut Vec<u8>, segs: &mut SegmentWriter) {
        let whole = self.data_offset == 0 && self.complete;
        let compat = if whole { 1 } else { 2 };
        encode_versioned(buf, PUSH_VERSION, compat, |b| {
            self.pgid.encode(b);
            self.from.encode(b);
            self.map_epoch.encode(b);
            self.interval.encode(b);
            self.oid.encode(b);
            self.version_epoch.encode(b);
            self.version.encode(b);
            self.result.encode(b);
            self.exists.encode(b);
            self.is_pull_reply.encode(b);
            segs.put(b, &self.data);
            encode_pairs(b, &self.attrs);
            encode_pairs(b, &self.omap);
            match &self.omap_header {
                None => b.push(0),
                Some(h) => {
                    b.push(1);
                    put_bytes(b, h);
                }
            }
            self.data_offset.encode(b);
            self.complete.encode(b);
        })
    }
}

impl SegmentedDecode for PgPush {
    fn decode_seg(d: &mut Decoder<'_>, segs: &mut SegmentReader) -> Result<Self, DecodeError> {
        d.versioned("pg push", PUSH_VERSION, |d, version| {
            let mut push = PgPush {
                pgid: PgId::decode(d)?,
                from: i32::decode(d)?,
                map_epoch: d.u32()?,
                interval: d.u32()?,
                oid: String::decode(d)?,
                version_epoch: d.u32()?,
                version: d.u64()?,
                result: i32::decode(d)?,
                exists: bool::decode(d)?,
                is_pull_reply: bool::decode(d)?,
                data: segs.take(d)?,
                attrs: decode_pairs(d, segs)?
                    .into_iter()
                    .map(|(k, v)| {
                        String::from_utf8(k.to_vec()).map(|k| (k, v)).map_err(|e| {
                            DecodeError::Invalid {
                                what: "xattr name",
                                detail: e.to_string(),
                            }
                        })
                    })
                    .collect::<Result<_, _>>()?,
                omap: decode_pairs(d, segs)?,
                omap_header: match d.u8()? {
                    0 => None,
                    1 => Some(segs.header_part(d.bytes()?)),
                    t => {
                        return Err(DecodeError::Invalid {
                            what: "omap header tag",
                            detail: format!("{t}"),
                        })
                    }
                },
                data_offset: 0,
                complete: true,
            };
            if version >= 2 {
                push.data_offset = d.u64()?;
                push.complete = bool::decode(d)?;
            }
            Ok(push)
        })
    }
}

impl PgPush {
    pub fn to_message(&self) -> Message {
        segments::to_message(OSD_PG_PUSH, self)
    }

    pub fn from_message(msg: &Message) -> Result<Self, ProtoError> {
        segments::decode_message(msg, OSD_PG_PUSH, "osd_pg_push")
    }
}

/// A member committed a push.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgPushReply {
    pub pgid: PgId,
    pub from: OsdId,
    pub interval: Epoch,
    pub oid: String,
    pub version_epoch: Epoch,
    pub version: u64,
    pub result: i32,
}
impl_versioned!(PgPushReply, "pg push reply", version = 1, compat = 1,
    { pgid, from, interval, oid, version_epoch, version, result });
payload!(PgPushReply, OSD_PG_PUSH_REPLY, "osd_pg_push_reply");

/// The primary asks a member for its copy of an object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgPull {
    pub pgid: PgId,
    pub from: OsdId,
    pub map_epoch: Epoch,
    pub interval: Epoch,
    pub oid: String,
    pub version_epoch: Epoch,
    pub version: u64,
}
impl_versioned!(PgPull, "pg pull", version = 1, compat = 1,
    { pgid, from, map_epoch, interval, oid, version_epoch, version });
payload!(PgPull, OSD_PG_PULL, "osd_pg_pull");

/// The primary asks a backfill target to list its objects after `begin`
/// (an encoded object bound of the peering crate).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgScan {
    pub pgid: PgId,
    pub from: OsdId,
    pub map_epoch: Epoch,
    pub interval: Epoch,
    pub begin: Blob,
    pub max: u32,
}
impl_versioned!(PgScan, "pg scan", version = 1, compat = 1, { pgid, from, map_epoch, interval, begin, max });
payload!(PgScan, OSD_PG_SCAN, "osd_pg_scan");

/// The listing (an encoded scan result of the peering crate).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgScanReply {
    pub pgid: PgId,
    pub from: OsdId,
    pub interval: Epoch,
    pub scan: Blob,
}
impl_versioned!(PgScanReply, "pg scan reply", version = 1, compat = 1, { pgid, from, interval, scan });
payload!(PgScanReply, OSD_PG_SCAN_REPLY, "osd_pg_scan_reply");

/// The primary removes an object a backfill target should not have.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgBackfillRemove {
    pub pgid: PgId,
    pub from: OsdId,
    pub map_epoch: Epoch,
    pub interval: Epoch,
    pub oid: String,
}
impl_versioned!(PgBackfillRemove, "pg backfill remove", version = 1, compat = 1,
    { pgid, from, map_epoch, interval, oid });
payload!(
    PgBackfillRemove,
    OSD_PG_BACKFILL_REMOVE,
    "osd_pg_backfill_remove"
);

/// The primary asks a member for its scrub map of the objects after
/// `start` up to and including `end` (encoded object bounds of the peering
/// crate), with data digests when `deep`. Writes to that range wait at the
/// primary until the reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgScrub {
    pub pgid: PgId,
    pub from: OsdId,
    pub map_epoch: Epoch,
    pub interval: Epoch,
    /// Identifies the scrub and chunk the reply belongs to.
    pub scrub_id: u64,
    pub start: Blob,
    pub end: Blob,
    pub deep: bool,
}
impl_versioned!(PgScrub, "pg scrub", version = 1, compat = 1,
    { pgid, from, map_epoch, interval, scrub_id, start, end, deep });
payload!(PgScrub, OSD_PG_SCRUB, "osd_pg_scrub");

/// A member's scrub map (an encoded scrub map of the peering crate), or a
/// negative errno when it could not build one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgScrubMap {
    pub pgid: PgId,
    pub from: OsdId,
    pub interval: Epoch,
    pub scrub_id: u64,
    pub result: i32,
    pub map: Blob,
}
impl_versioned!(PgScrubMap, "pg scrub map", version = 1, compat = 1,
    { pgid, from, interval, scrub_id, result, map });
payload!(PgScrubMap, OSD_PG_SCRUB_MAP, "osd_pg_scrub_map");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Payload;
    use proptest::prelude::*;

    fn sample() -> RepOp {
        RepOp {
            pgid: PgId::new(2, 7),
            from: 1,
            map_epoch: 20,
            interval: 18,
            tid: 99,
            oid: "obj".into(),
            ops: vec![
                StoreOp::Touch,
                StoreOp::Write {
                    offset: 8,
                    data: Bytes::from_static(b"abc"),
                },
                StoreOp::Truncate { size: 11 },
                StoreOp::Zero { offset: 0, len: 1 },
                StoreOp::SetAttrs {
                    attrs: vec![("_".into(), Bytes::from_static(b"oi"))],
                },
                StoreOp::RmAttr { name: "_x".into() },
                StoreOp::OmapSet {
                    entries: vec![(Bytes::from_static(b"k"), Bytes::from_static(b"v"))],
                },
                StoreOp::OmapRm {
                    keys: vec![Bytes::from_static(b"k")],
                },
                StoreOp::OmapClear,
                StoreOp::Remove,
            ],
            pg_meta: Bytes::from_static(b"meta"),
        }
    }

    #[test]
    fn roundtrips() {
        let r = sample();
        assert_eq!(RepOp::from_message(&r.to_message()).expect("decodes"), r);
        assert_eq!(r.data_bytes(), 3);
        let reply = RepOpReply {
            pgid: PgId::new(2, 7),
            from: 2,
            interval: 18,
            tid: 99,
            result: 0,
            committed_epoch: 20,
            committed_version: 5,
        };
        assert_eq!(
            RepOpReply::from_message(&reply.to_message()).expect("decodes"),
            reply
        );
        let ping = OsdPing {
            from: 3,
            map_epoch: 4,
            stamp_us: 5,
            is_reply: true,
        };
        assert_eq!(
            OsdPing::from_message(&ping.to_message()).expect("decodes"),
            ping
        );
        let scrub = PgScrub {
            pgid: PgId::new(1, 2),
            from: 0,
            map_epoch: 9,
            interval: 8,
            scrub_id: 77,
            start: Blob(vec![1]),
            end: Blob(vec![2, 3]),
            deep: true,
        };
        assert_eq!(
            PgScrub::from_message(&scrub.to_message()).expect("decodes"),
            scrub
        );
        let map = PgScrubMap {
            pgid: PgId::new(1, 2),
            from: 1,
            interval: 8,
            scrub_id: 77,
            result: -5,
            map: Blob(vec![4]),
        };
        assert_eq!(
            PgScrubMap::from_message(&map.to_message()).expect("decodes"),
            map
        );
        let push = PgPush {
            pgid: PgId::new(1, 2),
            from: 0,
            map_epoch: 9,
            interval: 8,
            oid: "o".into(),
            version_epoch: 8,
            version: 3,
            result: 0,
            exists: true,
            is_pull_reply: false,
            data: Bytes::from_static(b"payload"),
            attrs: vec![("_".into(), Bytes::from_static(b"oi"))],
            omap: vec![(Bytes::from_static(b"k"), Bytes::from_static(b"v"))],
            omap_header: Some(Bytes::from_static(b"h")),
            data_offset: 0,
            complete: true,
        };
        assert_eq!(
            PgPush::from_message(&push.to_message()).expect("decodes"),
            push
        );
        // A whole object keeps compat 1; a chunk needs version 2 (the
        // header follows the segmented message's 4-byte header length).
        assert_eq!(push.to_message().to_vec()[4..6], [2, 1], "version, compat");
        let chunk = PgPush {
            data_offset: 8 << 20,
            complete: false,
            attrs: Vec::new(),
            omap: Vec::new(),
            omap_header: None,
            ..push.clone()
        };
        let m = chunk.to_message();
        assert_eq!(m.to_vec()[4..6], [2, 2], "version, compat");
        assert_eq!(PgPush::from_message(&m).expect("decodes"), chunk);
    }

    proptest! {
        #[test]
        fn mutated_repops_never_panic(flip in 0usize..1000, bit in 0u8..8, cut in 1usize..1000) {
            let mut b = sample().to_message().to_vec();
            let i = flip % b.len();
            b[i] ^= 1 << bit;
            b.truncate(cut.min(b.len()));
            let _ = RepOp::from_message(&Message::new(OSD_REPOP, b));
        }
    }
}
