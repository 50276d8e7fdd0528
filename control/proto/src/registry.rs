//! Message type ids. Ranges are reserved per protocol so helpers can add
//! types without colliding: mon 1-99, OSD<->OSD 100-199, client<->OSD
//! 200-299, mgr 300-399.

use std::ops::RangeInclusive;

use kalmar_msgr::Message;

use crate::{Payload, ProtoError};

pub const MON_RANGE: RangeInclusive<u16> = 1..=99;
pub const OSD_RANGE: RangeInclusive<u16> = 100..=199;
pub const CLIENT_RANGE: RangeInclusive<u16> = 200..=299;
pub const MGR_RANGE: RangeInclusive<u16> = 300..=399;

pub const MON_SUBSCRIBE: u16 = 1;
pub const OSD_MAP: u16 = 2;
pub const MGR_MAP: u16 = 3;
pub const MON_COMMAND: u16 = 4;
pub const MON_COMMAND_REPLY: u16 = 5;
pub const OSD_MKFS: u16 = 10;
pub const OSD_MKFS_REPLY: u16 = 11;
pub const OSD_BOOT: u16 = 12;
pub const OSD_FAILURE: u16 = 13;
pub const OSD_BEACON: u16 = 14;
pub const OSD_ALIVE: u16 = 15;
pub const OSD_PG_TEMP: u16 = 16;
/// A cleanly stopping OSD asks to be marked down; the mon acks with the
/// same type (Ceph's `MOSDMarkMeDown`).
pub const OSD_MARK_ME_DOWN: u16 = 17;
pub const MGR_BEACON: u16 = 20;
/// The active mgr's health checks to the mon (Ceph's `MMonMgrReport`).
pub const MON_MGR_REPORT: u16 = 21;
/// Mon <-> mon: one consensus (Raft) request, and its reply.
pub const MON_RAFT: u16 = 30;
pub const MON_RAFT_REPLY: u16 = 31;
/// A follower mon hands a daemon's or client's message to the leader, and
/// the leader's reply travels back the same way (Ceph's `MForward` and
/// `MRoute`).
pub const MON_FORWARD: u16 = 32;
pub const MON_ROUTE: u16 = 33;
/// OSD -> mon PG statistics (`pgstats`, sent to the mgr once it exists).
pub const OSD_PG_STATS: u16 = 40;

// OSD <-> OSD (`osd`).
pub const OSD_PING: u16 = 100;
pub const OSD_REPOP: u16 = 101;
pub const OSD_REPOP_REPLY: u16 = 102;
pub const OSD_PEERING: u16 = 103;
pub const OSD_PG_PUSH: u16 = 104;
pub const OSD_PG_PUSH_REPLY: u16 = 105;
pub const OSD_PG_PULL: u16 = 106;
pub const OSD_PG_SCAN: u16 = 107;
pub const OSD_PG_SCAN_REPLY: u16 = 108;
pub const OSD_PG_BACKFILL_REMOVE: u16 = 109;
pub const OSD_PG_SCRUB: u16 = 110;
pub const OSD_PG_SCRUB_MAP: u16 = 111;

// Client <-> OSD (`client`).
pub const CLIENT_OSD_OP: u16 = 200;
pub const CLIENT_OSD_OP_REPLY: u16 = 201;

// Daemons -> mgr (`mgr`).
pub const MGR_OPEN: u16 = 300;
pub const MGR_CONFIGURE: u16 = 301;
pub const MGR_REPORT: u16 = 302;
pub const MGR_CLOSE: u16 = 303;

/// Every registered type: id and name. Add new types here.
pub const TYPES: &[(u16, &str)] = &[
    (MON_SUBSCRIBE, "mon_subscribe"),
    (OSD_MAP, "osd_map"),
    (MGR_MAP, "mgr_map"),
    (MON_COMMAND, "mon_command"),
    (MON_COMMAND_REPLY, "mon_command_reply"),
    (OSD_MKFS, "osd_mkfs"),
    (OSD_MKFS_REPLY, "osd_mkfs_reply"),
    (OSD_BOOT, "osd_boot"),
    (OSD_FAILURE, "osd_failure"),
    (OSD_BEACON, "osd_beacon"),
    (OSD_ALIVE, "osd_alive"),
    (OSD_PG_TEMP, "osd_pg_temp"),
    (OSD_MARK_ME_DOWN, "osd_mark_me_down"),
    (MGR_BEACON, "mgr_beacon"),
    (MON_MGR_REPORT, "mon_mgr_report"),
    (MON_RAFT, "mon_raft"),
    (MON_RAFT_REPLY, "mon_raft_reply"),
    (MON_FORWARD, "mon_forward"),
    (MON_ROUTE, "mon_route"),
    (OSD_PG_STATS, "osd_pg_stats"),
    (OSD_PING, "osd_ping"),
    (OSD_REPOP, "osd_repop"),
    (OSD_REPOP_REPLY, "osd_repop_reply"),
    (OSD_PEERING, "osd_peering"),
    (OSD_PG_PUSH, "osd_pg_push"),
    (OSD_PG_PUSH_REPLY, "osd_pg_push_reply"),
    (OSD_PG_PULL, "osd_pg_pull"),
    (OSD_PG_SCAN, "osd_pg_scan"),
    (OSD_PG_SCAN_REPLY, "osd_pg_scan_reply"),
    (OSD_PG_BACKFILL_REMOVE, "osd_pg_backfill_remove"),
    (OSD_PG_SCRUB, "osd_pg_scrub"),
    (OSD_PG_SCRUB_MAP, "osd_pg_scrub_map"),
    (CLIENT_OSD_OP, "osd_op"),
    (CLIENT_OSD_OP_REPLY, "osd_op_reply"),
    (MGR_OPEN, "mgr_open"),
    (MGR_CONFIGURE, "mgr_configure"),
    (MGR_REPORT, "mgr_report"),
    (MGR_CLOSE, "mgr_close"),
];

pub fn type_name(id: u16) -> Option<&'static str> {
    TYPES.iter().find(|(t, _)| *t == id).map(|&(_, n)| n)
}

/// Decodes `msg` with the decoder its type names and throws the value
/// away: checks that a payload is well formed (tests, fuzzing, logging).
pub fn validate(msg: &Message) -> Result<(), ProtoError> {
    use crate::mon::*;
    fn check<T: Payload>(msg: &Message) -> Result<(), ProtoError> {
        T::from_message(msg).map(|_| ())
    }
    match msg.msg_type {
        MON_SUBSCRIBE => check::<MonSubscribe>(msg),
        OSD_MAP => check::<OsdMapMsg>(msg),
        MGR_MAP => check::<MgrMapMsg>(msg),
        MON_COMMAND => check::<MonCommand>(msg),
        MON_COMMAND_REPLY => check::<MonCommandReply>(msg),
        OSD_MKFS => check::<OsdMkfs>(msg),
        OSD_MKFS_REPLY => check::<OsdMkfsReply>(msg),
        OSD_BOOT => check::<OsdBoot>(msg),
        OSD_FAILURE => check::<OsdFailure>(msg),
        OSD_BEACON => check::<OsdBeacon>(msg),
        OSD_ALIVE => check::<OsdAlive>(msg),
        OSD_PG_TEMP => check::<OsdPgTemp>(msg),
        OSD_MARK_ME_DOWN => check::<OsdMarkMeDown>(msg),
        MGR_BEACON => check::<MgrBeacon>(msg),
        MON_MGR_REPORT => check::<MonMgrReport>(msg),
        MON_RAFT => check::<MonRaft>(msg),
        MON_RAFT_REPLY => check::<MonRaftReply>(msg),
        MON_FORWARD => check::<MonForward>(msg),
        MON_ROUTE => check::<MonRoute>(msg),
        OSD_PG_STATS => check::<crate::pgstats::OsdPgStats>(msg),
        OSD_PING => check::<crate::osd::OsdPing>(msg),
        OSD_REPOP => crate::osd::RepOp::from_message(msg).map(|_| ()),
        OSD_REPOP_REPLY => check::<crate::osd::RepOpReply>(msg),
        OSD_PEERING => check::<crate::osd::OsdPeeringMsg>(msg),
        OSD_PG_PUSH => crate::osd::PgPush::from_message(msg).map(|_| ()),
        OSD_PG_PUSH_REPLY => check::<crate::osd::PgPushReply>(msg),
        OSD_PG_PULL => check::<crate::osd::PgPull>(msg),
        OSD_PG_SCAN => check::<crate::osd::PgScan>(msg),
        OSD_PG_SCAN_REPLY => check::<crate::osd::PgScanReply>(msg),
        OSD_PG_BACKFILL_REMOVE => check::<crate::osd::PgBackfillRemove>(msg),
        OSD_PG_SCRUB => check::<crate::osd::PgScrub>(msg),
        OSD_PG_SCRUB_MAP => check::<crate::osd::PgScrubMap>(msg),
        CLIENT_OSD_OP => crate::client::OsdOpRequest::from_message(msg).map(|_| ()),
        CLIENT_OSD_OP_REPLY => crate::client::OsdOpReply::from_message(msg).map(|_| ()),
        MGR_OPEN => check::<crate::mgr::MgrOpen>(msg),
        MGR_CONFIGURE => check::<crate::mgr::MgrConfigure>(msg),
        MGR_REPORT => check::<crate::mgr::MgrReport>(msg),
        MGR_CLOSE => check::<crate::mgr::MgrClose>(msg),
        other => Err(ProtoError::UnknownType(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mon::*;
    use proptest::prelude::*;

    #[test]
    fn ids_unique_in_their_ranges_and_match_payloads() {
        let mut ids: Vec<u16> = TYPES.iter().map(|t| t.0).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), TYPES.len());
        assert!(ids.iter().all(|id| MON_RANGE.contains(id)
            || OSD_RANGE.contains(id)
            || CLIENT_RANGE.contains(id)
            || MGR_RANGE.contains(id)));
        assert_eq!(type_name(OsdBoot::TYPE), Some(OsdBoot::NAME));
        assert_eq!(type_name(MgrBeacon::TYPE), Some(MgrBeacon::NAME));
        assert_eq!(type_name(OsdPgTemp::TYPE), Some(OsdPgTemp::NAME));
        for &(id, name) in TYPES {
            // Every registered type has a decoder (an empty payload is
            // malformed, not unknown).
            let err = validate(&Message::new(id, Vec::new())).expect_err("empty payload");
            assert!(
                matches!(err, ProtoError::Decode { what, .. } if what == name),
                "{id}: {err}"
            );
        }
    }

    proptest! {
        #[test]
        fn every_decoder_survives_random_bytes(id in 0u16..400, bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = validate(&Message::new(id, bytes));
        }

        #[test]
        fn every_decoder_survives_mutated_valid_payloads(flip in 0usize..400, bit in 0u8..8, cut in 0usize..400) {
            let samples: Vec<Message> = vec![
                MonSubscribe { items: vec![SubscribeItem { what: "osdmap".into(), start: 5, onetime: false }] }.to_message(),
                MonCommand { tid: 9, cmd: "{\"prefix\":\"status\"}".into(), inbuf: Default::default() }.to_message(),
                OsdPgTemp { osd_id: 1, map_epoch: 3, pg_temp: [(kalmar_maps::PgId::new(1, 2), vec![0, 1])].into() }.to_message(),
                MgrBeacon { gid: 4, name: "x".into(), available: true, ..Default::default() }.to_message(),
                MonMgrReport { gid: 4, health_checks: vec![MgrHealthCheck { code: "X".into(), severity: HealthSeverity::Error, summary: "s".into(), count: 1, detail: vec!["d".into()] }] }.to_message(),
                OsdFailure { reporter: 1, target: 2, failed_for_ms: 100, epoch: 4, is_failed: true, ..Default::default() }.to_message(),
                OsdMarkMeDown { target_osd: 2, epoch: 7, request_ack: true, ..Default::default() }.to_message(),
            ];
            for m in samples {
                let mut bytes = m.to_vec();
                if !bytes.is_empty() {
                    let i = flip % bytes.len();
                    bytes[i] ^= 1 << bit;
                    bytes.truncate(cut.max(1).min(bytes.len()));
                }
                let _ = validate(&Message::new(m.msg_type, bytes));
            }
        }
    }
}
