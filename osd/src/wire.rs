//! Encodings of the peering crate's types that travel between OSDs: the
//! peering messages (inside `OsdPeeringMsg`), the PG metadata of a
//! replicated write (inside `RepOp::pg_meta`), and backfill scan results.
//! Versioned like every other Kalmar encoding; decoding never panics.

use std::collections::BTreeMap;

use kalmar_common::encoding::{encode_versioned, Decode, DecodeError, Decoder, Encode};
use kalmar_maps::PgId;
use kalmar_peering::{
    Eversion, ObjectBound, PastIntervals, PeeringMessage, PgHistory, PgInfo, PgLog, PgLogEntry,
    PgMissing, PgObjectStats, QueryKind, ReserveFor, ScanResult,
};

// 2: ReserveRequest carries the primary's PG size; ReserveRejectTooFull.
const PEERING_VERSION: u8 = 2;

fn put_query_kind(k: QueryKind, b: &mut Vec<u8>) {
    b.push(match k {
        QueryKind::Info => 1,
        QueryKind::Log => 2,
    });
}

fn get_query_kind(d: &mut Decoder<'_>) -> Result<QueryKind, DecodeError> {
    match d.u8()? {
        1 => Ok(QueryKind::Info),
        2 => Ok(QueryKind::Log),
        v => Err(DecodeError::Invalid {
            what: "query kind",
            detail: format!("value {v}"),
        }),
    }
}

fn put_reserve(k: ReserveFor, b: &mut Vec<u8>) {
    b.push(match k {
        ReserveFor::Recovery => 1,
        ReserveFor::Backfill => 2,
    });
}

fn get_reserve(d: &mut Decoder<'_>) -> Result<ReserveFor, DecodeError> {
    match d.u8()? {
        1 => Ok(ReserveFor::Recovery),
        2 => Ok(ReserveFor::Backfill),
        v => Err(DecodeError::Invalid {
            what: "reservation kind",
            detail: format!("value {v}"),
        }),
    }
}

/// Encodes a peering message (tag, PG, epoch, interval, then its fields).
pub fn encode_peering(m: &PeeringMessage) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    encode_versioned(&mut buf, PEERING_VERSION, 2, |b| {
        let tag: u8 = match m {
            PeeringMessage::Query { .. } => 1,
            PeeringMessage::Notify { .. } => 2,
            PeeringMessage::Log { .. } => 3,
            PeeringMessage::Activate { .. } => 4,
            PeeringMessage::Activated { .. } => 5,
            PeeringMessage::Info { .. } => 6,
            PeeringMessage::ReserveRequest { .. } => 7,
            PeeringMessage::ReserveGrant { .. } => 8,
            PeeringMessage::ReserveRelease { .. } => 9,
            PeeringMessage::BackfillProgress { .. } => 10,
            PeeringMessage::Purge { .. } => 11,
            PeeringMessage::ReserveRejectTooFull { .. } => 12,
        };
        b.push(tag);
        m.pgid().encode(b);
        m.epoch().encode(b);
        m.interval().encode(b);
        match m {
            PeeringMessage::Query { kind, .. } => put_query_kind(*kind, b),
            PeeringMessage::Notify {
                info,
                past_intervals,
                ..
            } => {
                info.encode(b);
                past_intervals.encode(b);
            }
            PeeringMessage::Log {
                info, log, missing, ..
            } => {
                info.encode(b);
                log.encode(b);
                missing.encode(b);
            }
            PeeringMessage::Activate {
                info,
                log,
                past_intervals,
                backfill_from,
                ..
            } => {
                info.encode(b);
                log.encode(b);
                past_intervals.encode(b);
                backfill_from.encode(b);
            }
            PeeringMessage::Activated { info, .. } => info.encode(b),
            PeeringMessage::Info { history, .. } => history.encode(b),
            PeeringMessage::ReserveRequest {
                kind, num_bytes, ..
            } => {
                put_reserve(*kind, b);
                num_bytes.encode(b);
            }
            PeeringMessage::ReserveGrant { kind, .. }
            | PeeringMessage::ReserveRelease { kind, .. }
            | PeeringMessage::ReserveRejectTooFull { kind, .. } => put_reserve(*kind, b),
            PeeringMessage::BackfillProgress {
                last_backfill,
                last_update,
                ..
            } => {
                last_backfill.encode(b);
                last_update.encode(b);
            }
            PeeringMessage::Purge { .. } => {}
        }
    });
    buf
}

/// Decodes a message written by [`encode_peering`].
pub fn decode_peering(bytes: &[u8]) -> Result<PeeringMessage, DecodeError> {
    let mut d = Decoder::new(bytes);
    let m = d.versioned("peering message", PEERING_VERSION, |d, _| {
        let tag = d.u8()?;
        let pgid = PgId::decode(d)?;
        let epoch = d.u32()?;
        let interval = d.u32()?;
        Ok(match tag {
            1 => PeeringMessage::Query {
                pgid,
                epoch,
                interval,
                kind: get_query_kind(d)?,
            },
            2 => PeeringMessage::Notify {
                pgid,
                epoch,
                interval,
                info: PgInfo::decode(d)?,
                past_intervals: PastIntervals::decode(d)?,
            },
            3 => PeeringMessage::Log {
                pgid,
                epoch,
                interval,
                info: PgInfo::decode(d)?,
                log: PgLog::decode(d)?,
                missing: PgMissing::decode(d)?,
            },
            4 => PeeringMessage::Activate {
                pgid,
                epoch,
                interval,
                info: PgInfo::decode(d)?,
                log: PgLog::decode(d)?,
                past_intervals: PastIntervals::decode(d)?,
                backfill_from: Option::<ObjectBound>::decode(d)?,
            },
            5 => PeeringMessage::Activated {
                pgid,
                epoch,
                interval,
                info: PgInfo::decode(d)?,
            },
            6 => PeeringMessage::Info {
                pgid,
                epoch,
                interval,
                history: PgHistory::decode(d)?,
            },
            7 => PeeringMessage::ReserveRequest {
                pgid,
                epoch,
                interval,
                kind: get_reserve(d)?,
                num_bytes: d.u64()?,
            },
            8 => PeeringMessage::ReserveGrant {
                pgid,
                epoch,
                interval,
                kind: get_reserve(d)?,
            },
            9 => PeeringMessage::ReserveRelease {
                pgid,
                epoch,
                interval,
                kind: get_reserve(d)?,
            },
            10 => PeeringMessage::BackfillProgress {
                pgid,
                epoch,
                interval,
                last_backfill: ObjectBound::decode(d)?,
                last_update: Eversion::decode(d)?,
            },
            11 => PeeringMessage::Purge {
                pgid,
                epoch,
                interval,
            },
            12 => PeeringMessage::ReserveRejectTooFull {
                pgid,
                epoch,
                interval,
                kind: get_reserve(d)?,
            },
            t => {
                return Err(DecodeError::Invalid {
                    what: "peering message",
                    detail: format!("unknown tag {t}"),
                })
            }
        })
    })?;
    d.finish()?;
    Ok(m)
}

/// The PG part of a replicated write: the log entries to append, where to
/// trim the log, and the PG's object stats after the write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepMeta {
    pub entries: Vec<PgLogEntry>,
    pub trim_to: Option<Eversion>,
    pub stats: PgObjectStats,
}

impl RepMeta {
    /// The encoding of a `RepMeta` of these parts, from borrowed parts:
    /// the primary encodes its new entry for the replicas and then moves
    /// it into its own log, without a copy of the entry.
    pub fn encode_parts(
        entries: &[PgLogEntry],
        trim_to: Option<Eversion>,
        stats: &PgObjectStats,
    ) -> Vec<u8> {
        kalmar_common::encoding::encode_exact(|buf| {
            Self::encode_fields(buf, entries, trim_to, stats)
        })
    }

    fn encode_fields(
        buf: &mut Vec<u8>,
        entries: &[PgLogEntry],
        trim_to: Option<Eversion>,
        stats: &PgObjectStats,
    ) {
        encode_versioned(buf, 1, 1, |b| {
            entries.encode(b);
            trim_to.encode(b);
            stats.encode(b);
        })
    }
}

impl Encode for RepMeta {
    fn encode(&self, buf: &mut Vec<u8>) {
        Self::encode_fields(buf, &self.entries, self.trim_to, &self.stats)
    }
}

impl Decode for RepMeta {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.versioned("repop meta", 1, |d, _| {
            Ok(RepMeta {
                entries: Decode::decode(d)?,
                trim_to: Decode::decode(d)?,
                stats: Decode::decode(d)?,
            })
        })
    }
}

/// Encodes a backfill scan result.
pub fn encode_scan(s: &ScanResult) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_versioned(&mut buf, 1, 1, |b| {
        s.begin.encode(b);
        s.end.encode(b);
        s.objects.encode(b);
    });
    buf
}

pub fn decode_scan(bytes: &[u8]) -> Result<ScanResult, DecodeError> {
    let mut d = Decoder::new(bytes);
    let s = d.versioned("scan result", 1, |d, _| {
        Ok(ScanResult {
            begin: ObjectBound::decode(d)?,
            end: ObjectBound::decode(d)?,
            objects: BTreeMap::<String, Eversion>::decode(d)?,
        })
    })?;
    d.finish()?;
    Ok(s)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kalmar_peering::{LogOp, ReqId};
    use proptest::prelude::*;

    /// A client write's log entry at `epoch'v` from client `client`.
    pub(crate) fn test_entry(epoch: u32, v: u64, client: u64) -> PgLogEntry {
        PgLogEntry {
            op: LogOp::Modify,
            oid: format!("o{v}"),
            version: Eversion::new(epoch, v),
            prior_version: Eversion::ZERO,
            reqid: ReqId::new(client, 1, v),
            mtime_us: v,
            return_code: 0,
            user_version: v,
        }
    }

    fn entry(v: u64) -> PgLogEntry {
        test_entry(3, v, 1)
    }

    fn samples() -> Vec<PeeringMessage> {
        let pgid = PgId::new(1, 7);
        let info = PgInfo::new(pgid, 3);
        let log = PgLog::from_entries(Eversion::ZERO, (1..=3).map(entry)).expect("ordered");
        let mut missing = PgMissing::new();
        missing.add("o1", Eversion::new(3, 1), Eversion::ZERO);
        vec![
            PeeringMessage::Query {
                pgid,
                epoch: 5,
                interval: 4,
                kind: QueryKind::Log,
            },
            PeeringMessage::Notify {
                pgid,
                epoch: 5,
                interval: 4,
                info: info.clone(),
                past_intervals: PastIntervals::new(),
            },
            PeeringMessage::Log {
                pgid,
                epoch: 5,
                interval: 4,
                info: info.clone(),
                log: log.clone(),
                missing,
            },
            PeeringMessage::Activate {
                pgid,
                epoch: 5,
                interval: 4,
                info: info.clone(),
                log,
                past_intervals: PastIntervals::new(),
                backfill_from: Some(ObjectBound::Object("m".into())),
            },
            PeeringMessage::Activated {
                pgid,
                epoch: 5,
                interval: 4,
                info: info.clone(),
            },
            PeeringMessage::Info {
                pgid,
                epoch: 5,
                interval: 4,
                history: info.history,
            },
            PeeringMessage::ReserveRequest {
                pgid,
                epoch: 5,
                interval: 4,
                kind: ReserveFor::Backfill,
                num_bytes: 123 << 20,
            },
            PeeringMessage::ReserveRejectTooFull {
                pgid,
                epoch: 5,
                interval: 4,
                kind: ReserveFor::Backfill,
            },
            PeeringMessage::ReserveGrant {
                pgid,
                epoch: 5,
                interval: 4,
                kind: ReserveFor::Recovery,
            },
            PeeringMessage::ReserveRelease {
                pgid,
                epoch: 5,
                interval: 4,
                kind: ReserveFor::Recovery,
            },
            PeeringMessage::BackfillProgress {
                pgid,
                epoch: 5,
                interval: 4,
                last_backfill: ObjectBound::Max,
                last_update: Eversion::new(5, 1),
            },
            PeeringMessage::Purge {
                pgid,
                epoch: 5,
                interval: 4,
            },
        ]
    }

    #[test]
    fn every_message_roundtrips() {
        for m in samples() {
            let back = decode_peering(&encode_peering(&m)).expect("decodes");
            assert_eq!(back, m);
        }
        let meta = RepMeta {
            entries: vec![entry(1), entry(2)],
            trim_to: Some(Eversion::new(2, 9)),
            stats: PgObjectStats {
                num_objects: 3,
                num_bytes: 10,
                ..Default::default()
            },
        };
        assert_eq!(
            RepMeta::from_bytes(&meta.to_bytes()).expect("decodes"),
            meta
        );
        assert_eq!(
            RepMeta::encode_parts(&meta.entries, meta.trim_to, &meta.stats),
            meta.to_bytes(),
            "the primary's borrowed encoding is the struct's"
        );
        let scan = ScanResult {
            begin: ObjectBound::Min,
            end: ObjectBound::Object("z".into()),
            objects: [("a".to_string(), Eversion::new(1, 1))].into(),
        };
        assert_eq!(decode_scan(&encode_scan(&scan)).expect("decodes"), scan);
    }

    proptest! {
        #[test]
        fn mutated_messages_never_panic(which in 0usize..11, flip in 0usize..4000, bit in 0u8..8, cut in 0usize..4000) {
            let mut b = encode_peering(&samples()[which]);
            let i = flip % b.len();
            b[i] ^= 1 << bit;
            b.truncate(cut.max(1).min(b.len()));
            let _ = decode_peering(&b);
            let _ = decode_scan(&b);
            let _ = RepMeta::from_bytes(&b);
        }
    }
}
