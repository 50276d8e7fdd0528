//! Events the OSD feeds into a PG's state machine, and the peering
//! messages OSDs exchange about a PG.

use std::sync::Arc;

use kalmar_maps::{Epoch, OsdId, PgId};

use crate::backfill::ScanResult;
use crate::eversion::Eversion;
use crate::info::{PgHistory, PgInfo};
use crate::intervals::{ClusterView, PastIntervals, PgMapping};
use crate::log::PgLog;
use crate::missing::PgMissing;
use crate::object::{ObjectBound, ObjectName};
use crate::scrub::RepairItem;

/// What a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// Reply with a [`PeeringMessage::Notify`].
    Info,
    /// Reply with a [`PeeringMessage::Log`] (whole log and missing set).
    Log,
}

/// Which reservation slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReservationKind {
    /// The primary's own recovery slot (`osd_recovery_max_active` OSD-wide
    /// budget is the OSD's business).
    LocalRecovery,
    /// A replica's slot for a primary's recovery.
    RemoteRecovery,
    /// The primary's own backfill slot (`osd_max_backfills`).
    LocalBackfill,
    /// A target's backfill slot (`osd_max_backfills`).
    RemoteBackfill,
    /// The primary's scrub slot (`osd_max_scrubs`).
    Scrub,
}

/// Recovery or backfill, in reservation messages between OSDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReserveFor {
    Recovery,
    Backfill,
}

/// A message about one PG between two OSDs. Every message carries the
/// sender's map epoch and the interval it belongs to (the sender's
/// `same_interval_since`); the receiver drops messages of another interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeeringMessage {
    /// Primary -> any: send me your info or log.
    Query {
        pgid: PgId,
        epoch: Epoch,
        interval: Epoch,
        kind: QueryKind,
    },
    /// Any -> primary: my info, past intervals (reply to an info query, or
    /// unsolicited at the start of every interval).
    Notify {
        pgid: PgId,
        epoch: Epoch,
        interval: Epoch,
        info: PgInfo,
        past_intervals: PastIntervals,
    },
    /// Reply to a log query.
    Log {
        pgid: PgId,
        epoch: Epoch,
        interval: Epoch,
        info: PgInfo,
        log: PgLog,
        missing: PgMissing,
    },
    /// Primary -> member: adopt this history and log and activate.
    /// `backfill_from`: `Some(bound)` for a backfill target (its objects
    /// past `bound` are invalid; `MIN` restarts backfill).
    Activate {
        pgid: PgId,
        epoch: Epoch,
        interval: Epoch,
        info: PgInfo,
        log: PgLog,
        past_intervals: PastIntervals,
        backfill_from: Option<ObjectBound>,
    },
    /// Member -> primary: activation persisted.
    Activated {
        pgid: PgId,
        epoch: Epoch,
        interval: Epoch,
        info: PgInfo,
    },
    /// Primary -> members: the shared history advanced (activation
    /// complete, PG clean).
    Info {
        pgid: PgId,
        epoch: Epoch,
        interval: Epoch,
        history: PgHistory,
    },
    /// Primary -> member: reserve (or release) a recovery/backfill slot.
    /// `num_bytes`: the primary's PG size, from which the target judges
    /// what a backfill would add to its store.
    ReserveRequest {
        pgid: PgId,
        epoch: Epoch,
        interval: Epoch,
        kind: ReserveFor,
        num_bytes: u64,
    },
    ReserveGrant {
        pgid: PgId,
        epoch: Epoch,
        interval: Epoch,
        kind: ReserveFor,
    },
    ReserveRelease {
        pgid: PgId,
        epoch: Epoch,
        interval: Epoch,
        kind: ReserveFor,
    },
    /// Member -> primary: reservation refused, the member's store is too
    /// full for the work (Ceph's `RejectTooFullRemoteReservation`).
    ReserveRejectTooFull {
        pgid: PgId,
        epoch: Epoch,
        interval: Epoch,
        kind: ReserveFor,
    },
    /// Primary -> backfill target: objects up to `last_backfill` are now
    /// complete on you; persist it.
    BackfillProgress {
        pgid: PgId,
        epoch: Epoch,
        interval: Epoch,
        last_backfill: ObjectBound,
        last_update: Eversion,
    },
    /// Primary -> stray: the PG is clean without you; delete your copy.
    Purge {
        pgid: PgId,
        epoch: Epoch,
        interval: Epoch,
    },
}

impl PeeringMessage {
    pub fn pgid(&self) -> PgId {
        match self {
            PeeringMessage::Query { pgid, .. }
            | PeeringMessage::Notify { pgid, .. }
            | PeeringMessage::Log { pgid, .. }
            | PeeringMessage::Activate { pgid, .. }
            | PeeringMessage::Activated { pgid, .. }
            | PeeringMessage::Info { pgid, .. }
            | PeeringMessage::ReserveRequest { pgid, .. }
            | PeeringMessage::ReserveGrant { pgid, .. }
            | PeeringMessage::ReserveRelease { pgid, .. }
            | PeeringMessage::ReserveRejectTooFull { pgid, .. }
            | PeeringMessage::BackfillProgress { pgid, .. }
            | PeeringMessage::Purge { pgid, .. } => *pgid,
        }
    }

    /// The sender's map epoch: deliver only once the receiving PG has
    /// advanced to at least this epoch.
    pub fn epoch(&self) -> Epoch {
        match self {
            PeeringMessage::Query { epoch, .. }
            | PeeringMessage::Notify { epoch, .. }
            | PeeringMessage::Log { epoch, .. }
            | PeeringMessage::Activate { epoch, .. }
            | PeeringMessage::Activated { epoch, .. }
            | PeeringMessage::Info { epoch, .. }
            | PeeringMessage::ReserveRequest { epoch, .. }
            | PeeringMessage::ReserveGrant { epoch, .. }
            | PeeringMessage::ReserveRelease { epoch, .. }
            | PeeringMessage::ReserveRejectTooFull { epoch, .. }
            | PeeringMessage::BackfillProgress { epoch, .. }
            | PeeringMessage::Purge { epoch, .. } => *epoch,
        }
    }

    /// The interval (`same_interval_since`) the message belongs to.
    pub fn interval(&self) -> Epoch {
        match self {
            PeeringMessage::Query { interval, .. }
            | PeeringMessage::Notify { interval, .. }
            | PeeringMessage::Log { interval, .. }
            | PeeringMessage::Activate { interval, .. }
            | PeeringMessage::Activated { interval, .. }
            | PeeringMessage::Info { interval, .. }
            | PeeringMessage::ReserveRequest { interval, .. }
            | PeeringMessage::ReserveGrant { interval, .. }
            | PeeringMessage::ReserveRelease { interval, .. }
            | PeeringMessage::ReserveRejectTooFull { interval, .. }
            | PeeringMessage::BackfillProgress { interval, .. }
            | PeeringMessage::Purge { interval, .. } => *interval,
        }
    }

    /// The reply an OSD without a copy of the PG sends to a query: an empty,
    /// incomplete info (it holds nothing), so the primary can go on.
    pub fn reply_without_copy(query: &PeeringMessage, my_epoch: Epoch) -> Option<PeeringMessage> {
        let PeeringMessage::Query {
            pgid,
            interval,
            kind,
            ..
        } = query
        else {
            return None;
        };
        let mut info = PgInfo::new(*pgid, 0);
        info.last_backfill = ObjectBound::Min;
        Some(match kind {
            QueryKind::Info => PeeringMessage::Notify {
                pgid: *pgid,
                epoch: my_epoch,
                interval: *interval,
                info,
                past_intervals: PastIntervals::new(),
            },
            QueryKind::Log => PeeringMessage::Log {
                pgid: *pgid,
                epoch: my_epoch,
                interval: *interval,
                info,
                log: PgLog::new(Eversion::ZERO),
                missing: PgMissing::new(),
            },
        })
    }
}

/// An input to [`crate::machine::Pg::handle`].
// Peering messages carry logs and are far larger than other events; each
// event is moved once into `handle`, so boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Event {
    /// The PG was created or loaded: start the machine.
    Initialize,
    /// A new map epoch (deliver every epoch, in order).
    AdvMap {
        map: Arc<ClusterView>,
        mapping: PgMapping,
    },
    /// All maps up to the newest were delivered: act on the newest.
    ActMap,
    /// A peering message from another OSD.
    Message { from: OsdId, msg: PeeringMessage },
    /// A reservation requested with [`crate::Action::RequestReservation`]
    /// was granted.
    ReservationGranted { kind: ReservationKind },
    /// The local store now holds `oid` at `version` (pulled by the primary,
    /// or pushed to this replica). Its persistence goes in the same
    /// transaction as the object.
    ObjectRecovered { oid: ObjectName, version: Eversion },
    /// Primary: `peer` committed a push of `oid` (or its removal when the
    /// primary no longer has it).
    PushCompleted {
        peer: OsdId,
        oid: ObjectName,
        version: Eversion,
    },
    /// Primary: a pull could not be served (the source lacks the object).
    PullFailed { from: OsdId, oid: ObjectName },
    /// Primary: its own copy of `oid` (at `version`, as the push was
    /// asked for) could not be read to push it (Ceph's `primary_error`).
    /// The copy counts as missing here: recovery pulls the object from
    /// another copy first, or, with none, reports it unfound.
    PushFailed { oid: ObjectName, version: Eversion },
    /// Primary: `peer` refused a push of `oid` for lack of space (ENOSPC);
    /// `peer` = this OSD when a pull into our own store was refused.
    /// Backfill goes to `backfill_toofull`, recovery to `recovery_toofull`,
    /// and both retry later, never a stalled PG.
    PushRefusedFull { peer: OsdId, oid: ObjectName },
    /// Primary: the wait asked for with [`crate::Action::ScheduleRetry`]
    /// is over: ask for the reservations again.
    RetryReservation { kind: ReserveFor },
    /// Primary: result of [`crate::Action::ScanLocal`] (`from` = self) or
    /// [`crate::Action::ScanPeer`].
    ScanCompleted { from: OsdId, scan: ScanResult },
    /// Primary: a client op waits for `oid`; recover it first.
    ClientWaitsFor { oid: ObjectName },
    /// Primary: an admin or the schedule asked for a scrub (`repair`: a
    /// deep scrub that then rewrites bad copies). It starts once the PG is
    /// active+clean and holds a scrub slot.
    ScrubRequested { deep: bool, repair: bool },
    /// Primary: the scrub asked for with [`crate::Action::StartScrub`]
    /// finished (or was abandoned).
    ScrubFinished(ScrubResult),
    /// Primary: reading `oid` found the local copy corrupt (a checksum or
    /// digest failed); `version`: the object's version, if known. The
    /// object becomes missing here and is recovered from another copy
    /// (when the PG is clean or recovering).
    ReadError { oid: ObjectName, version: Eversion },
}

/// What a finished scrub found, as the OSD's scrubber reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubResult {
    pub deep: bool,
    pub repair: bool,
    /// The scrub stopped before the end: nothing is recorded.
    pub aborted: bool,
    /// Inconsistent objects found (shallow: without reading data).
    pub shallow_errors: u64,
    pub deep_errors: u64,
    /// Repair only: what to rewrite, from the authoritative copies.
    pub repairs: Vec<RepairItem>,
    /// Repair only: inconsistent objects no copy could be trusted for.
    pub unrepairable_shallow: u64,
    pub unrepairable_deep: u64,
}
