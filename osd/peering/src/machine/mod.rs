//! The PG state machine: one [`Pg`] per PG copy on an OSD. The OSD feeds it
//! [`Event`]s and carries out the [`Action`]s it returns; see the crate docs
//! for the contract.

mod action;
mod active;
mod backfill;
mod event;
mod primary;
mod replica;
mod report;
mod scrub;
mod state;
mod toofull;
mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kalmar_maps::{Epoch, OsdId, PgId};

pub use action::{Action, LogWrite, PgStatsReport, PgWrite};
pub use event::{Event, PeeringMessage, QueryKind, ReservationKind, ReserveFor, ScrubResult};
pub use state::{Active, Peering, Replica, State, StateHistory, StateHistoryEntry};
pub use write::{ReplicationTarget, ReplicationTargets, WriteReadiness};

use crate::backfill::ScanResult;
use crate::choose::ActingChoice;
use crate::eversion::Eversion;
use crate::flags::PgStateFlags;
use crate::info::{PgHistory, PgInfo, PgObjectStats};
use crate::intervals::{
    check_new_interval, is_osd, ClusterView, IntervalChange, PastIntervals, PgMapping,
};
use crate::log::PgLog;
use crate::missing::PgMissing;
use crate::object::{ObjectBound, ObjectName};
use crate::prior::PriorSet;
use crate::settings::PeeringSettings;
use crate::toofull::Fullness;

/// What the OSD persisted for a PG, to rebuild its machine after restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgMeta {
    pub info: PgInfo,
    pub log: PgLog,
    pub missing: PgMissing,
    pub past_intervals: PastIntervals,
}

/// A recovery operation under way.
#[derive(Debug, Clone, Default)]
struct InFlight {
    /// Peers whose push has not completed (empty for a pull).
    waiting: BTreeSet<OsdId>,
    pull_from: Option<OsdId>,
    version: Eversion,
}

/// What a copy outside the acting set holds, as judged from its log at
/// peering time: a place to pull objects from.
#[derive(Debug, Clone)]
struct SourceCopy {
    missing: PgMissing,
    last_update: Eversion,
    last_backfill: ObjectBound,
}

/// One backfill round.
#[derive(Debug, Clone)]
struct BackfillRound {
    begin: ObjectBound,
    /// Log head when the local scan was requested: later entries are
    /// applied to the local listing.
    scan_head: Eversion,
    scans: BTreeMap<OsdId, ScanResult>,
    waiting_scans: BTreeSet<OsdId>,
    end: Option<ObjectBound>,
    pending_pushes: BTreeMap<ObjectName, BTreeSet<OsdId>>,
}

/// Primary-only state, reset at every interval.
#[derive(Debug, Clone, Default)]
struct PrimaryCtx {
    prior: PriorSet,
    peer_info: BTreeMap<OsdId, PgInfo>,
    pending_info: BTreeSet<OsdId>,
    pending_log: BTreeSet<OsdId>,
    auth: Option<OsdId>,
    choice: Option<ActingChoice>,
    force_backfill: BTreeSet<OsdId>,
    peer_missing: BTreeMap<OsdId, PgMissing>,
    /// Copies (strays, backfill targets before their reset, the
    /// authoritative copy) that recovery may pull from.
    sources: BTreeMap<OsdId, SourceCopy>,
    peer_last_backfill: BTreeMap<OsdId, ObjectBound>,
    last_backfill_started: BTreeMap<OsdId, ObjectBound>,
    activation_epoch: Epoch,
    activated: BTreeSet<OsdId>,
    all_activated: bool,
    up_thru_requested: bool,
    remote_granted: BTreeSet<OsdId>,
    in_flight: BTreeMap<ObjectName, InFlight>,
    prioritized: Vec<ObjectName>,
    unfound: BTreeSet<ObjectName>,
    backfill: Option<BackfillRound>,
    /// Versions every acting member has committed (log trim bound).
    committed_to: Eversion,
    /// Recovery or backfill was refused for lack of space; set until its
    /// reservations are all granted (`recovery_toofull`/`backfill_toofull`).
    toofull: Option<ReserveFor>,
}

/// A scrub asked for (requests merge: deep and repair win).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ScrubRequest {
    deep: bool,
    repair: bool,
}

/// Replica-only state, reset at every interval.
#[derive(Debug, Clone, Default)]
struct ReplicaCtx {
    primary: Option<OsdId>,
    /// The primary's PG size in the pending reservation request (what a
    /// backfill would bring here), checked again when the slot is granted.
    request_bytes: u64,
}

/// One PG copy's state machine.
#[derive(Debug, Clone)]
pub struct Pg {
    whoami: OsdId,
    settings: PeeringSettings,
    state: State,
    flags: PgStateFlags,
    /// scrubbing, deep, repair, failed_repair (reset every interval).
    scrub_flags: PgStateFlags,
    /// A scrub asked for and not started yet.
    scrub_pending: Option<ScrubRequest>,
    info: PgInfo,
    log: PgLog,
    missing: PgMissing,
    past_intervals: PastIntervals,
    map: Arc<ClusterView>,
    mapping: PgMapping,
    has_mapping: bool,
    history: StateHistory,
    now_us: u64,
    state_stamp_us: u64,
    peering_start_us: Option<u64>,
    last_became_active_us: u64,
    p: PrimaryCtx,
    r: ReplicaCtx,
    /// Reservations requested or held from this OSD's reserver.
    reservations: BTreeSet<ReservationKind>,
    out: Vec<Action>,
    crash_reason: Option<String>,
    published: Option<(PgStateFlags, State)>,
    /// This OSD's store use, as the OSD last sampled it (reservation
    /// decisions); `None` until the OSD provides one.
    fullness: Option<Fullness>,
}

impl Pg {
    fn with(whoami: OsdId, settings: PeeringSettings, meta: PgMeta) -> Self {
        let history = StateHistory::new(settings.state_history_max);
        Pg {
            whoami,
            settings,
            state: State::Initial,
            flags: PgStateFlags::empty(),
            scrub_flags: PgStateFlags::empty(),
            scrub_pending: None,
            info: meta.info,
            log: meta.log,
            missing: meta.missing,
            past_intervals: meta.past_intervals,
            map: Arc::new(ClusterView::default()),
            mapping: PgMapping::default(),
            has_mapping: false,
            history,
            now_us: 0,
            state_stamp_us: 0,
            peering_start_us: None,
            last_became_active_us: 0,
            p: PrimaryCtx::default(),
            r: ReplicaCtx::default(),
            reservations: BTreeSet::new(),
            out: Vec::new(),
            crash_reason: None,
            published: None,
            fullness: None,
        }
    }

    /// A PG created with its pool (or by a pg_num increase): every copy
    /// starts complete and empty at `epoch`.
    pub fn create(whoami: OsdId, pgid: PgId, epoch: Epoch, settings: PeeringSettings) -> Self {
        let meta = PgMeta {
            info: PgInfo::new(pgid, epoch),
            log: PgLog::new(Eversion::ZERO),
            missing: PgMissing::new(),
            past_intervals: PastIntervals::new(),
        };
        Pg::with(whoami, settings, meta)
    }

    /// A new, empty copy of an existing PG on this OSD (it joined the up or
    /// acting set, or was sent an activation). It holds nothing, so it is
    /// incomplete and never chosen as authoritative. `history` and `past`
    /// come from [`crate::build_initial_history`] over the maps since the
    /// PG's creation; peers' notifies refine them.
    pub fn new_empty_copy(
        whoami: OsdId,
        pgid: PgId,
        history: PgHistory,
        past: PastIntervals,
        settings: PeeringSettings,
    ) -> Self {
        let mut info = PgInfo::new(pgid, history.epoch_created);
        info.history = history;
        info.last_backfill = ObjectBound::Min;
        let meta = PgMeta {
            info,
            log: PgLog::new(Eversion::ZERO),
            missing: PgMissing::new(),
            past_intervals: past,
        };
        Pg::with(whoami, settings, meta)
    }

    /// A PG loaded from the store. The first `AdvMap` must carry the map
    /// epoch the PG last processed (the OSD records it with the PG).
    pub fn load(whoami: OsdId, meta: PgMeta, settings: PeeringSettings) -> Self {
        Pg::with(whoami, settings, meta)
    }

    // ---- accessors -------------------------------------------------------

    pub fn pgid(&self) -> PgId {
        self.info.pgid
    }
    pub fn whoami(&self) -> OsdId {
        self.whoami
    }
    pub fn state(&self) -> State {
        self.state
    }
    pub fn state_flags(&self) -> PgStateFlags {
        self.flags
    }
    pub fn info(&self) -> &PgInfo {
        &self.info
    }
    pub fn log(&self) -> &PgLog {
        &self.log
    }
    pub fn missing(&self) -> &PgMissing {
        &self.missing
    }
    pub fn past_intervals(&self) -> &PastIntervals {
        &self.past_intervals
    }
    pub fn mapping(&self) -> &PgMapping {
        &self.mapping
    }
    pub fn state_history(&self) -> &StateHistory {
        &self.history
    }
    pub fn crash_reason(&self) -> Option<&str> {
        self.crash_reason.as_deref()
    }
    pub fn is_primary(&self) -> bool {
        self.has_mapping && self.mapping.acting_primary == self.whoami
    }
    /// Everything the OSD must persist to rebuild this machine.
    pub fn meta(&self) -> PgMeta {
        PgMeta {
            info: self.info.clone(),
            log: self.log.clone(),
            missing: self.missing.clone(),
            past_intervals: self.past_intervals.clone(),
        }
    }
    /// OSDs that must end up with every object (primary only, once
    /// peered): acting plus backfill targets.
    pub fn acting_recovery_backfill(&self) -> BTreeSet<OsdId> {
        self.p
            .choice
            .as_ref()
            .map(|c| c.acting_recovery_backfill.clone())
            .unwrap_or_default()
    }
    pub fn backfill_targets(&self) -> BTreeSet<OsdId> {
        self.p
            .choice
            .as_ref()
            .map(|c| c.backfill_targets.clone())
            .unwrap_or_default()
    }
    /// The primary's view of a peer's missing set.
    pub fn peer_missing(&self, osd: OsdId) -> Option<&PgMissing> {
        self.p.peer_missing.get(&osd)
    }
    /// Objects no known copy can provide.
    pub fn unfound(&self) -> &BTreeSet<ObjectName> {
        &self.p.unfound
    }

    /// The OSD samples its store's use before events that reserve
    /// recovery or backfill room (see [`crate::toofull`]).
    pub fn set_fullness(&mut self, fullness: Option<Fullness>) {
        self.fullness = fullness;
    }

    /// The OSD updates object and byte counts as it applies writes.
    pub fn set_object_stats(&mut self, stats: PgObjectStats) {
        self.info.stats = stats;
    }

    // ---- event dispatch --------------------------------------------------

    /// Feeds one event; returns the actions to carry out, in order.
    pub fn handle(&mut self, event: Event, now_us: u64) -> Vec<Action> {
        self.now_us = self.now_us.max(now_us);
        if self.state == State::Crashed {
            return Vec::new();
        }
        match event {
            Event::Initialize => {
                if self.state == State::Initial {
                    self.go(State::Reset);
                }
            }
            Event::AdvMap { map, mapping } => self.on_adv_map(map, mapping),
            Event::ActMap => self.on_act_map(),
            Event::Message { from, msg } => self.on_message(from, msg),
            Event::ReservationGranted { kind } => self.on_reservation_granted(kind),
            Event::ObjectRecovered { oid, version } => self.on_object_recovered(oid, version),
            Event::PushCompleted { peer, oid, version } => {
                self.on_push_completed(peer, oid, version)
            }
            Event::PullFailed { from, oid } => self.on_pull_failed(from, oid),
            Event::PushFailed { oid, version } => self.on_push_failed(oid, version),
            Event::PushRefusedFull { peer, oid } => self.on_push_refused_full(peer, oid),
            Event::RetryReservation { kind } => self.on_retry_reservation(kind),
            Event::ScanCompleted { from, scan } => self.on_scan_completed(from, scan),
            Event::ClientWaitsFor { oid } => self.on_client_waits(oid),
            Event::ScrubRequested { deep, repair } => self.on_scrub_requested(deep, repair),
            Event::ScrubFinished(result) => self.on_scrub_finished(result),
            Event::ReadError { oid, version } => self.on_read_error(oid, version),
        }
        self.refresh_flags();
        self.maybe_publish();
        std::mem::take(&mut self.out)
    }

    fn on_adv_map(&mut self, map: Arc<ClusterView>, mapping: PgMapping) {
        if self.state == State::Initial {
            self.go(State::Reset);
        }
        if self.state == State::ToDelete {
            self.map = map;
            self.mapping = mapping;
            return;
        }
        if !mapping.pool_exists {
            self.map = map;
            self.mapping = mapping;
            self.go(State::ToDelete);
            self.out.push(Action::DeletePg);
            return;
        }
        if self.has_mapping {
            let change = check_new_interval(IntervalChange {
                old: &self.mapping,
                new: &mapping,
                last_map: &self.map,
                same_interval_since: self.info.history.same_interval_since,
                last_epoch_clean: self.info.history.last_epoch_clean,
            });
            let up_changed = self.mapping.up != mapping.up;
            let primary_changed = self.mapping.acting_primary != mapping.acting_primary;
            if let Some(interval) = change {
                self.past_intervals.add(interval);
                let h = &mut self.info.history;
                h.same_interval_since = mapping.epoch;
                if up_changed {
                    h.same_up_since = mapping.epoch;
                }
                if primary_changed {
                    h.same_primary_since = mapping.epoch;
                }
                self.map = map;
                self.mapping = mapping;
                self.start_new_interval();
                return;
            }
            let waited_on_died = self
                .p
                .pending_info
                .iter()
                .chain(self.p.pending_log.iter())
                .any(|&o| !map.is_up(o));
            if self.state.is_peering() && (self.p.prior.affected_by_map(&map) || waited_on_died) {
                // Same interval, but a probed OSD died or a blocking one
                // returned: peering restarts from GetInfo.
                self.map = map;
                self.mapping = mapping;
                let up_thru_requested = self.p.up_thru_requested;
                self.p = PrimaryCtx {
                    up_thru_requested,
                    ..Default::default()
                };
                self.go(State::Reset);
                return;
            }
            // Active: stop waiting for logs from copies that died.
            self.p.pending_log.retain(|&o| map.is_up(o));
        }
        self.has_mapping = true;
        self.map = map;
        self.mapping = mapping;
    }

    /// Drops everything tied to the old interval and persists the new
    /// history; peering restarts on the next ActMap.
    fn start_new_interval(&mut self) {
        for kind in std::mem::take(&mut self.reservations) {
            self.out.push(Action::ReleaseReservation { kind });
        }
        self.p = PrimaryCtx::default();
        self.r = ReplicaCtx::default();
        self.scrub_new_interval();
        self.go(State::Reset);
        self.persist(PgWrite {
            info: Some(self.info.clone()),
            past_intervals: Some(self.past_intervals.clone()),
            ..Default::default()
        });
    }

    fn on_act_map(&mut self) {
        if !self.has_mapping {
            return;
        }
        match self.state {
            State::Reset => self.start_role(),
            State::Peering(Peering::WaitUpThru) if !self.need_up_thru() => self.activate(),
            State::WaitActingChange => {
                if let Some(temp) = self.p.choice.as_ref().and_then(|c| c.pg_temp.clone()) {
                    self.out.push(Action::RequestPgTemp { want: temp });
                }
            }
            State::Active(Active::Recovering) => self.issue_recovery(),
            State::Active(Active::Backfilling) if self.p.backfill.is_none() => {
                self.start_backfill_round()
            }
            _ => {}
        }
        // Always report once per map so the mgr sees the new epoch.
        self.published = None;
    }

    fn start_role(&mut self) {
        self.go(State::Start);
        if self.mapping.acting_primary == self.whoami {
            self.start_peering();
        } else {
            self.go(State::Stray);
            self.send_notify();
        }
    }

    fn on_message(&mut self, from: OsdId, msg: PeeringMessage) {
        if msg.pgid() != self.info.pgid || !self.has_mapping {
            return;
        }
        if msg.interval() != self.info.history.same_interval_since {
            return; // another interval's message: stale or not yet ours
        }
        match msg {
            PeeringMessage::Query { kind, .. } => self.reply_query(from, kind),
            PeeringMessage::Notify {
                info,
                past_intervals,
                ..
            } => self.on_notify(from, info, past_intervals),
            PeeringMessage::Log {
                info, log, missing, ..
            } => self.on_log(from, info, log, missing),
            PeeringMessage::Activate {
                info,
                log,
                past_intervals,
                backfill_from,
                ..
            } => self.on_activate(from, info, log, past_intervals, backfill_from),
            PeeringMessage::Activated { info, .. } => self.on_activated(from, info),
            PeeringMessage::Info { history, .. } => self.on_info(history),
            PeeringMessage::ReserveRequest {
                kind, num_bytes, ..
            } => self.on_reserve_request(from, kind, num_bytes),
            PeeringMessage::ReserveRejectTooFull { kind, .. } => {
                self.on_reserve_reject_toofull(from, kind)
            }
            PeeringMessage::ReserveGrant { kind, .. } => self.on_reserve_grant(from, kind),
            PeeringMessage::ReserveRelease { kind, .. } => self.on_reserve_release(kind),
            PeeringMessage::BackfillProgress {
                last_backfill,
                last_update,
                ..
            } => self.on_backfill_progress(last_backfill, last_update),
            PeeringMessage::Purge { .. } => self.on_purge(from),
        }
    }

    // ---- helpers shared by the state modules -----------------------------

    fn go(&mut self, s: State) {
        if s == self.state {
            return;
        }
        let old = self.state;
        if let Some((_, dur)) = self.history.enter(s, self.now_us) {
            self.out.push(Action::RecordStateLatency {
                counter: old.perf_counter(),
                duration_us: dur,
            });
        }
        let was_peering = old.is_peering() || old == State::WaitActingChange;
        let is_peering = s.is_peering() || s == State::WaitActingChange;
        if is_peering && !was_peering {
            self.peering_start_us = Some(self.now_us);
        } else if was_peering && !is_peering {
            if let Some(start) = self.peering_start_us.take() {
                self.out.push(Action::RecordStateLatency {
                    counter: "peering_latency",
                    duration_us: self.now_us.saturating_sub(start),
                });
            }
        }
        self.state = s;
        self.state_stamp_us = self.now_us;
    }

    fn crash(&mut self, reason: String) {
        self.crash_reason = Some(reason);
        self.go(State::Crashed);
    }

    fn persist(&mut self, w: PgWrite) {
        if !w.is_empty() {
            self.out.push(Action::Persist(w));
        }
    }

    fn persist_info(&mut self) {
        self.persist(PgWrite {
            info: Some(self.info.clone()),
            ..Default::default()
        });
    }

    fn send(&mut self, to: OsdId, msg: PeeringMessage) {
        if to != self.whoami && is_osd(to) {
            self.out.push(Action::Send { to, msg });
        }
    }

    fn epoch(&self) -> Epoch {
        self.map.epoch.max(self.mapping.epoch)
    }

    fn interval(&self) -> Epoch {
        self.info.history.same_interval_since
    }

    fn need_up_thru(&self) -> bool {
        self.map.osd(self.whoami).up_thru < self.interval()
    }

    fn request(&mut self, kind: ReservationKind) {
        if self.reservations.insert(kind) {
            self.out.push(Action::RequestReservation {
                kind,
                priority: 180,
            });
        }
    }

    fn release(&mut self, kind: ReservationKind) {
        if self.reservations.remove(&kind) {
            self.out.push(Action::ReleaseReservation { kind });
        }
    }

    fn send_notify(&mut self) {
        let primary = self.mapping.acting_primary;
        if is_osd(primary) && self.map.is_up(primary) {
            let msg = PeeringMessage::Notify {
                pgid: self.info.pgid,
                epoch: self.epoch(),
                interval: self.interval(),
                info: self.info.clone(),
                past_intervals: self.past_intervals.clone(),
            };
            self.send(primary, msg);
        }
    }

    fn reply_query(&mut self, from: OsdId, kind: QueryKind) {
        let (pgid, epoch, interval) = (self.info.pgid, self.epoch(), self.interval());
        let msg = match kind {
            QueryKind::Info => PeeringMessage::Notify {
                pgid,
                epoch,
                interval,
                info: self.info.clone(),
                past_intervals: self.past_intervals.clone(),
            },
            QueryKind::Log => PeeringMessage::Log {
                pgid,
                epoch,
                interval,
                info: self.info.clone(),
                log: self.log.clone(),
                missing: self.missing.clone(),
            },
        };
        self.send(from, msg);
    }
}
