//! PG and OSD statistics an OSD reports (Ceph's `MPGStats`): the stats of
//! the PGs it is primary for, and its own usage. They go to the mon now
//! (for `pg stat`, `pg dump` and the `status` pgmap) and to the mgr once
//! it exists.

use kalmar_common::impl_versioned;
use kalmar_maps::{Epoch, OsdId, PgId};

use crate::payload;
use crate::registry::OSD_PG_STATS;

/// One PG as its primary sees it (a subset of Ceph's `pg_stat_t`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgStatEntry {
    pub pgid: PgId,
    /// Ceph's `+`-joined state string (`active+clean`).
    pub state: String,
    /// Map epoch of the report and a per-PG sequence (`REPORTED e:s`).
    pub reported_epoch: Epoch,
    pub reported_seq: u64,
    /// Newest log version (`VERSION e'v`).
    pub version_epoch: Epoch,
    pub version: u64,
    pub up: Vec<OsdId>,
    pub up_primary: OsdId,
    pub acting: Vec<OsdId>,
    pub acting_primary: OsdId,
    pub num_objects: u64,
    pub num_bytes: u64,
    pub num_object_copies: u64,
    pub num_objects_degraded: u64,
    pub num_objects_misplaced: u64,
    pub num_objects_missing_on_primary: u64,
    pub num_objects_unfound: u64,
    pub log_size: u64,
    pub num_read: u64,
    pub num_read_kb: u64,
    pub num_write: u64,
    pub num_write_kb: u64,
    /// When the state last changed (unix microseconds).
    pub state_stamp_us: u64,
    pub last_scrub_stamp_us: u64,
    pub last_deep_scrub_stamp_us: u64,
    /// Newest epoch the PG was clean in (the mon trims maps below it).
    pub last_epoch_clean: Epoch,
    /// Objects and bytes this primary recovered (pushed to a peer or
    /// pulled from one) since it became primary: per-pool recovery rates.
    pub num_objects_recovered: u64,
    pub num_bytes_recovered: u64,
    /// What the last scrub left unrepaired (Ceph's `num_scrub_errors`,
    /// the sum of the shallow and deep ones): `OSD_SCRUB_ERRORS`.
    pub num_scrub_errors: u64,
    pub num_shallow_scrub_errors: u64,
    pub num_deep_scrub_errors: u64,
}
impl_versioned!(PgStatEntry, "pg stat", version = 3, compat = 1, {
    pgid, state, reported_epoch, reported_seq, version_epoch, version,
    up, up_primary, acting, acting_primary, num_objects, num_bytes,
    num_object_copies, num_objects_degraded, num_objects_misplaced,
    num_objects_missing_on_primary, num_objects_unfound, log_size,
    num_read, num_read_kb, num_write, num_write_kb,
    state_stamp_us, last_scrub_stamp_us, last_deep_scrub_stamp_us, last_epoch_clean,
}, since 2 { num_objects_recovered, num_bytes_recovered },
since 3 { num_scrub_errors, num_shallow_scrub_errors, num_deep_scrub_errors });

/// An OSD's own figures (Ceph's `osd_stat_t` subset).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsdStatEntry {
    pub osd: OsdId,
    pub num_pgs: u32,
    pub kb: u64,
    pub kb_used: u64,
    pub kb_avail: u64,
    /// Peers this OSD heartbeats.
    pub hb_peers: Vec<OsdId>,
    pub commit_latency_ms: u64,
    pub apply_latency_ms: u64,
}
impl_versioned!(OsdStatEntry, "osd stat", version = 1, compat = 1, {
    osd, num_pgs, kb, kb_used, kb_avail, hb_peers, commit_latency_ms, apply_latency_ms,
});

/// The periodic report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsdPgStats {
    pub osd_id: OsdId,
    pub epoch: Epoch,
    pub pgs: Vec<PgStatEntry>,
    pub osd_stat: OsdStatEntry,
}
impl_versioned!(OsdPgStats, "osd pg stats", version = 1, compat = 1, { osd_id, epoch, pgs, osd_stat });
payload!(OsdPgStats, OSD_PG_STATS, "osd_pg_stats");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Payload;

    #[test]
    fn roundtrip() {
        let s = OsdPgStats {
            osd_id: 1,
            epoch: 9,
            pgs: vec![PgStatEntry {
                pgid: PgId::new(1, 3),
                state: "active+clean".into(),
                up: vec![1, 0, 2],
                acting: vec![1, 0, 2],
                num_objects: 4,
                num_scrub_errors: 3,
                num_shallow_scrub_errors: 1,
                num_deep_scrub_errors: 2,
                ..Default::default()
            }],
            osd_stat: OsdStatEntry {
                osd: 1,
                num_pgs: 8,
                kb: 100,
                ..Default::default()
            },
        };
        assert_eq!(
            OsdPgStats::from_message(&s.to_message()).expect("decodes"),
            s
        );
    }

    /// The fields of version 2, for reading across versions.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    struct PgStatEntryV2 {
        pgid: PgId,
        state: String,
        reported_epoch: Epoch,
        reported_seq: u64,
        version_epoch: Epoch,
        version: u64,
        up: Vec<OsdId>,
        up_primary: OsdId,
        acting: Vec<OsdId>,
        acting_primary: OsdId,
        num_objects: u64,
        num_bytes: u64,
        num_object_copies: u64,
        num_objects_degraded: u64,
        num_objects_misplaced: u64,
        num_objects_missing_on_primary: u64,
        num_objects_unfound: u64,
        log_size: u64,
        num_read: u64,
        num_read_kb: u64,
        num_write: u64,
        num_write_kb: u64,
        state_stamp_us: u64,
        last_scrub_stamp_us: u64,
        last_deep_scrub_stamp_us: u64,
        last_epoch_clean: Epoch,
        num_objects_recovered: u64,
        num_bytes_recovered: u64,
    }
    impl_versioned!(PgStatEntryV2, "pg stat", version = 2, compat = 1, {
        pgid, state, reported_epoch, reported_seq, version_epoch, version,
        up, up_primary, acting, acting_primary, num_objects, num_bytes,
        num_object_copies, num_objects_degraded, num_objects_misplaced,
        num_objects_missing_on_primary, num_objects_unfound, log_size,
        num_read, num_read_kb, num_write, num_write_kb,
        state_stamp_us, last_scrub_stamp_us, last_deep_scrub_stamp_us, last_epoch_clean,
        num_objects_recovered, num_bytes_recovered,
    });

    #[test]
    fn scrub_errors_across_versions() {
        use kalmar_common::{Decode, Encode};
        let new = PgStatEntry {
            pgid: PgId::new(2, 5),
            state: "active+clean+inconsistent".into(),
            num_objects: 7,
            num_bytes_recovered: 9,
            num_scrub_errors: 4,
            num_deep_scrub_errors: 4,
            ..Default::default()
        };
        // A version-2 reader skips the scrub errors.
        let old = PgStatEntryV2::from_bytes(&new.to_bytes()).expect("old reader");
        assert_eq!(
            (old.state.as_str(), old.num_objects, old.num_bytes_recovered),
            ("active+clean+inconsistent", 7, 9)
        );
        // A version-2 report reads as no scrub errors.
        let back = PgStatEntry::from_bytes(&old.to_bytes()).expect("new reader");
        assert_eq!(
            back,
            PgStatEntry {
                num_scrub_errors: 0,
                num_deep_scrub_errors: 0,
                ..new
            }
        );
    }
}
