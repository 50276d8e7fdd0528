//! Actions a PG's state machine asks the OSD to carry out.

use std::collections::BTreeSet;

use kalmar_maps::{Epoch, OsdId, PgId};
use serde::Serialize;

use crate::eversion::Eversion;
use crate::flags::PgStateFlags;
use crate::info::PgInfo;
use crate::intervals::PastIntervals;
use crate::log::{Few, PgLog, PgLogDup, PgLogEntry};
use crate::merge::MergeOutcome;
use crate::missing::PgMissing;
use crate::object::{ObjectBound, ObjectName};

use super::event::{PeeringMessage, ReservationKind, ReserveFor};

/// How the PG log changes on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogWrite {
    /// Replace every log and dup key with this log (after a merge).
    Rewrite(PgLog),
    /// Incremental change (client writes, trims).
    Delta {
        append: Vec<PgLogEntry>,
        /// Entry keys to delete (trimmed).
        remove: Few<Eversion>,
        dups_add: Few<PgLogDup>,
        dups_remove: Few<PgLogDup>,
    },
}

impl LogWrite {
    /// How a merge into `log` (the merged log) reaches the disk: nothing
    /// when the log did not change; the entries it took after the point
    /// where both logs agreed when that is all it did (a copy that was
    /// behind, the common case when an OSD comes back); the whole log when
    /// it rolled entries back or took older ones below its tail.
    pub fn after_merge(out: &MergeOutcome, log: &PgLog) -> Option<LogWrite> {
        if !out.changed {
            return None;
        }
        if !out.divergent.is_empty() || out.tail_extended {
            return Some(LogWrite::Rewrite(log.clone()));
        }
        Some(LogWrite::Delta {
            append: log.entries_after(out.agreed).cloned().collect(),
            remove: Few::new(),
            dups_add: Few::new(),
            dups_remove: Few::new(),
        })
    }
}

/// PG metadata to persist in one transaction (in the PG's omap / meta
/// object). Anything `None` is unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgWrite {
    pub info: Option<PgInfo>,
    pub past_intervals: Option<PastIntervals>,
    pub log: Option<LogWrite>,
    /// The whole missing set (it is small next to the log).
    pub missing: Option<PgMissing>,
    /// Objects to delete from the store in the same transaction (rolled
    /// back divergent creations, deletes learned from the log).
    pub remove_objects: BTreeSet<ObjectName>,
}

impl PgWrite {
    pub fn is_empty(&self) -> bool {
        self.info.is_none()
            && self.past_intervals.is_none()
            && self.log.is_none()
            && self.missing.is_none()
            && self.remove_objects.is_empty()
    }
}

/// A snapshot of the PG for `pg dump` / the mgr (`pg_stat_t` subset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PgStatsReport {
    pub pgid: PgId,
    pub state: PgStateFlags,
    pub reported_epoch: Epoch,
    pub state_stamp_us: u64,
    pub last_update: Eversion,
    pub log_size: u64,
    pub up: Vec<OsdId>,
    pub up_primary: OsdId,
    pub acting: Vec<OsdId>,
    pub acting_primary: OsdId,
    pub num_objects: u64,
    pub num_bytes: u64,
    pub num_object_copies: u64,
    pub degraded: u64,
    pub misplaced: u64,
    pub missing_on_primary: u64,
    pub unfound: u64,
    /// What the last scrub left unrepaired (`inconsistent` while not 0).
    pub num_scrub_errors: u64,
    pub num_shallow_scrub_errors: u64,
    pub num_deep_scrub_errors: u64,
    pub last_epoch_clean: Epoch,
    pub last_became_active_us: u64,
    pub last_scrub: Eversion,
    pub last_scrub_stamp_us: u64,
    pub last_deep_scrub: Eversion,
    pub last_deep_scrub_stamp_us: u64,
    /// The `pg query` state path.
    pub state_name: &'static str,
    /// OSDs peering waits for (down PGs).
    pub blocked_by: Vec<OsdId>,
}

/// Something the OSD must do. Actions of one `handle` call are returned in
/// order and must be carried out in that order; a `Persist` must be
/// durable before any later `Send` of the same batch leaves the OSD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a peering message to another OSD.
    Send { to: OsdId, msg: PeeringMessage },
    /// Persist PG metadata (and remove objects) in one transaction.
    Persist(PgWrite),
    /// Ask the mon for a pg_temp (`want` empty = remove it). The mon
    /// raises our up_thru with it.
    RequestPgTemp { want: Vec<OsdId> },
    /// Ask the mon for `up_thru >= epoch` (MOSDAlive).
    RequestUpThru { epoch: Epoch },
    /// Ask this OSD's reserver for a slot; answer with
    /// `Event::ReservationGranted`.
    RequestReservation {
        kind: ReservationKind,
        priority: u32,
    },
    /// Give a slot back (also cancels a queued request).
    ReleaseReservation { kind: ReservationKind },
    /// Deliver `Event::RetryReservation { kind }` after `delay_ms`, if the
    /// PG is still in the same interval (backfill/recovery toofull).
    ScheduleRetry { kind: ReserveFor, delay_ms: u64 },
    /// Copy `oid` at `version` from `from` into the local store, then
    /// deliver `Event::ObjectRecovered` (or `Event::PullFailed`).
    Pull {
        oid: ObjectName,
        version: Eversion,
        from: OsdId,
    },
    /// Send the local copy of `oid` (or its removal, if the local store no
    /// longer has it) to each of `to`; deliver `Event::PushCompleted` per
    /// target once it committed. On the target, the OSD writes the object
    /// and delivers `Event::ObjectRecovered` to its PG. `backfill` tells
    /// a backfill push from a log-based recovery push (for counters).
    Push {
        oid: ObjectName,
        version: Eversion,
        to: Vec<OsdId>,
        backfill: bool,
    },
    /// List the local collection in object order after `begin`, at most
    /// `max` objects, before applying any further write to this PG;
    /// deliver `Event::ScanCompleted { from: self }`.
    ScanLocal { begin: ObjectBound, max: usize },
    /// Ask `peer` to list its collection likewise (MOSDPGScan); deliver
    /// `Event::ScanCompleted { from: peer }`.
    ScanPeer {
        peer: OsdId,
        begin: ObjectBound,
        max: usize,
    },
    /// Remove `oid` from `peer`'s copy (MOSDPGBackfillRemove), ordered
    /// before later messages to that peer.
    RemoveOnPeer { peer: OsdId, oid: ObjectName },
    /// Start a scrub (the OSD's scrubber reports with
    /// `Event::ScrubFinished`); the PG's scrub slot is held until then.
    StartScrub { deep: bool, repair: bool },
    /// Report stats to the mgr (primary only).
    PublishStats(Box<PgStatsReport>),
    /// Feed a `recoverystate_perf` latency counter.
    RecordStateLatency {
        counter: &'static str,
        duration_us: u64,
    },
    /// Remove the PG's collection and metadata.
    DeletePg,
}
