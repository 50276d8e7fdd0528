//! The active primary: activation, log-based recovery, backfill, and the
//! move to clean (including dropping a pg_temp once backfill is done).

use std::collections::{BTreeMap, BTreeSet};

use kalmar_maps::{OsdId, OsdMapFlags};

use super::{Active, InFlight, PeeringMessage, Pg, PgWrite, ReservationKind, ReserveFor, State};
use crate::eversion::{Eversion, ReqId};
use crate::info::PgInfo;
use crate::log::{LogOp, PgLogEntry};
use crate::merge::last_complete;
use crate::object::{ObjectBound, ObjectName};
use crate::recovery::{plan_recovery, PeerCopy, RecoveryInputs, RecoveryOp};

use super::action::{Action, LogWrite};

impl Pg {
    /// Activation: record the new last_epoch_started and send every member
    /// the history and log it must adopt.
    pub(super) fn activate(&mut self) {
        let Some(choice) = self.p.choice.clone() else {
            self.crash("activation without an acting choice".into());
            return;
        };
        self.go(State::Active(Active::Activating));
        let epoch = self.epoch();
        self.p.activation_epoch = epoch;
        self.p.committed_to = self.info.last_update;
        // Only an interval that can take writes (acting >= min_size) counts
        // as started; a peered one must not raise last_epoch_started.
        if self.writeable() {
            self.info.last_epoch_started = epoch;
            self.info.last_interval_started = self.interval();
        }
        let marker = PgLogEntry {
            op: LogOp::Marker,
            oid: String::new(),
            version: Eversion::new(
                epoch.max(self.info.last_update.epoch),
                self.info.last_update.version + 1,
            ),
            prior_version: Eversion::ZERO,
            reqid: ReqId::default(),
            mtime_us: self.now_us,
            return_code: 0,
            user_version: self.info.last_user_version,
        };
        let was_complete = self.info.last_complete == self.info.last_update;
        if let Err(e) = self.log.append(marker.clone()) {
            self.crash(format!("activation marker: {e}"));
            return;
        }
        self.info.last_update = self.log.head();
        if was_complete {
            self.info.last_complete = self.info.last_update;
        }
        self.persist(PgWrite {
            info: Some(self.info.clone()),
            log: Some(LogWrite::Delta {
                append: vec![marker],
                remove: Default::default(),
                dups_add: Default::default(),
                dups_remove: Default::default(),
            }),
            ..Default::default()
        });
        for &t in &choice.backfill_targets {
            let from = match self.p.peer_info.get(&t) {
                Some(pi) if self.backfill_resumable(t, pi) => pi.last_backfill.clone(),
                _ => ObjectBound::Min,
            };
            if from == ObjectBound::Min {
                // Its old missing set (if any) is moot: everything is redone.
                self.p.peer_missing.remove(&t);
            }
            self.p.peer_last_backfill.insert(t, from.clone());
            self.p.last_backfill_started.insert(t, from);
        }
        let me = self.whoami;
        for &peer in choice.acting_recovery_backfill.iter().filter(|&&o| o != me) {
            let msg = PeeringMessage::Activate {
                pgid: self.info.pgid,
                epoch,
                interval: self.interval(),
                info: self.info.clone(),
                log: self.log.clone(),
                past_intervals: self.past_intervals.clone(),
                backfill_from: self.p.peer_last_backfill.get(&peer).cloned(),
            };
            self.send(peer, msg);
        }
        if choice
            .acting_recovery_backfill
            .iter()
            .all(|&o| o == self.whoami)
        {
            self.all_activated();
        }
    }

    /// The acting set can take writes (at least min_size members).
    pub(super) fn writeable(&self) -> bool {
        self.acting_count() >= self.mapping.pool_min_size as usize
    }

    pub(super) fn on_activated(&mut self, from: OsdId, info: PgInfo) {
        if self.state != State::Active(Active::Activating) {
            return;
        }
        self.p.peer_info.insert(from, info);
        self.p.activated.insert(from);
        let members = self.acting_recovery_backfill();
        if members
            .iter()
            .all(|o| *o == self.whoami || self.p.activated.contains(o))
        {
            self.all_activated();
        }
    }

    /// Every member persisted the activation: writes may be acknowledged
    /// from now on, so the shared history records this epoch.
    fn all_activated(&mut self) {
        self.p.all_activated = true;
        if self.writeable() {
            let (activation, interval) = (self.p.activation_epoch, self.interval());
            let h = &mut self.info.history;
            h.last_epoch_started = h.last_epoch_started.max(activation);
            h.last_interval_started = h.last_interval_started.max(interval);
        }
        self.last_became_active_us = self.now_us;
        self.persist_info();
        self.share_history();
        self.next_recovery_step();
    }

    fn share_history(&mut self) {
        for peer in self.acting_recovery_backfill() {
            let msg = PeeringMessage::Info {
                pgid: self.info.pgid,
                epoch: self.epoch(),
                interval: self.interval(),
                history: self.info.history,
            };
            self.send(peer, msg);
        }
    }

    fn needs_recovery(&self) -> bool {
        self.any_missing()
    }

    fn needs_backfill(&self) -> bool {
        self.p.peer_last_backfill.values().any(|b| !b.is_max())
    }

    pub(super) fn next_recovery_step(&mut self) {
        if self.needs_recovery() {
            self.go(State::Active(Active::WaitLocalRecoveryReserved));
            self.request(ReservationKind::LocalRecovery);
        } else if self.needs_backfill() {
            self.go(State::Active(Active::WaitLocalBackfillReserved));
            self.request(ReservationKind::LocalBackfill);
        } else {
            self.recovered();
        }
    }

    pub(super) fn on_reservation_granted(&mut self, kind: ReservationKind) {
        if !self.reservations.contains(&kind) {
            // Granted after we gave up on it (new interval): hand it back.
            self.out.push(Action::ReleaseReservation { kind });
            return;
        }
        match (self.state, kind) {
            (State::Active(Active::WaitLocalRecoveryReserved), ReservationKind::LocalRecovery) => {
                // Recovery pulls into our own store too.
                if self.room_for(ReserveFor::Recovery, 0).is_err() {
                    self.go_toofull(ReserveFor::Recovery);
                    return;
                }
                self.go(State::Active(Active::WaitRemoteRecoveryReserved));
                self.reserve_remote(ReserveFor::Recovery);
            }
            (State::Active(Active::WaitLocalBackfillReserved), ReservationKind::LocalBackfill) => {
                self.go(State::Active(Active::WaitRemoteBackfillReserved));
                self.reserve_remote(ReserveFor::Backfill);
            }
            (_, ReservationKind::Scrub) => self.on_scrub_reserved(),
            _ => self.on_replica_reservation_granted(kind),
        }
    }

    pub(super) fn remote_targets(&self, kind: ReserveFor) -> BTreeSet<OsdId> {
        match kind {
            ReserveFor::Recovery => self
                .acting_recovery_backfill()
                .into_iter()
                .filter(|&o| o != self.whoami)
                .collect(),
            ReserveFor::Backfill => self.backfill_targets(),
        }
    }

    /// Reserves a slot on every remote target, one at a time in ascending
    /// OSD id (Ceph's `remote_reservation_targets` walk). Asking all at
    /// once deadlocks with one slot per OSD: three primaries can each hold
    /// one replica's slot while waiting for the slot another holds. Taking
    /// them in one global order makes such a cycle impossible.
    fn reserve_remote(&mut self, kind: ReserveFor) {
        self.p.remote_granted.clear();
        self.ask_next_remote(kind);
    }

    /// Asks the lowest target not yet granted, or finishes the walk.
    fn ask_next_remote(&mut self, kind: ReserveFor) {
        let next = self
            .remote_targets(kind)
            .into_iter()
            .find(|o| !self.p.remote_granted.contains(o));
        let Some(peer) = next else {
            self.remote_reserved(kind);
            return;
        };
        let msg = PeeringMessage::ReserveRequest {
            pgid: self.info.pgid,
            epoch: self.epoch(),
            interval: self.interval(),
            kind,
            num_bytes: self.info.stats.num_bytes,
        };
        self.send(peer, msg);
    }

    pub(super) fn on_reserve_grant(&mut self, from: OsdId, kind: ReserveFor) {
        let waiting = match kind {
            ReserveFor::Recovery => State::Active(Active::WaitRemoteRecoveryReserved),
            ReserveFor::Backfill => State::Active(Active::WaitRemoteBackfillReserved),
        };
        if self.state != waiting || !self.remote_targets(kind).contains(&from) {
            return;
        }
        // A repeated grant asks nobody twice.
        if self.p.remote_granted.insert(from) {
            self.ask_next_remote(kind);
        }
    }

    fn remote_reserved(&mut self, kind: ReserveFor) {
        self.p.toofull = None;
        match kind {
            ReserveFor::Recovery => {
                self.go(State::Active(Active::Recovering));
                self.issue_recovery();
            }
            ReserveFor::Backfill => {
                self.go(State::Active(Active::Backfilling));
                self.start_backfill_round();
            }
        }
    }

    pub(super) fn release_remote(&mut self, kind: ReserveFor) {
        let granted = std::mem::take(&mut self.p.remote_granted);
        self.send_release(granted, kind);
    }

    /// Tells each of `peers` to give back the slot it holds (or has queued)
    /// for this PG's `kind` of work.
    pub(super) fn send_release(&mut self, peers: BTreeSet<OsdId>, kind: ReserveFor) {
        for peer in peers {
            let msg = PeeringMessage::ReserveRelease {
                pgid: self.info.pgid,
                epoch: self.epoch(),
                interval: self.interval(),
                kind,
            };
            self.send(peer, msg);
        }
    }

    // ---- log-based recovery ----------------------------------------------

    /// Plans and issues recovery operations up to the active bound.
    pub(super) fn issue_recovery(&mut self) {
        if self.state != State::Active(Active::Recovering) {
            return;
        }
        if !self.needs_recovery() && self.p.in_flight.is_empty() {
            self.recovery_done();
            return;
        }
        if self.map.test_flag(OsdMapFlags::NORECOVER) {
            return;
        }
        let head = self.info.last_update;
        let max = ObjectBound::Max;
        let members = self.acting_recovery_backfill();
        let backfill = self.backfill_targets();
        let mut peers: BTreeMap<OsdId, PeerCopy<'_>> = BTreeMap::new();
        // Copies outside the acting set, as they were at peering.
        for (&o, s) in &self.p.sources {
            if o != self.whoami && (!members.contains(&o) || backfill.contains(&o)) {
                let copy = PeerCopy {
                    missing: &s.missing,
                    last_update: s.last_update,
                    last_backfill: &s.last_backfill,
                };
                peers.insert(o, copy);
            }
        }
        // Acting members and resumed backfill targets, as recovery keeps
        // them up to date.
        for (&o, m) in &self.p.peer_missing {
            if o == self.whoami {
                continue;
            }
            let lb = self.p.peer_last_backfill.get(&o).unwrap_or(&max);
            let copy = PeerCopy {
                missing: m,
                last_update: head,
                last_backfill: lb,
            };
            peers.insert(o, copy);
        }
        let targets: BTreeSet<OsdId> = members.into_iter().filter(|&o| o != self.whoami).collect();
        let in_flight: BTreeSet<ObjectName> = self.p.in_flight.keys().cloned().collect();
        let plan = plan_recovery(RecoveryInputs {
            primary_missing: &self.missing,
            peers: &peers,
            targets: &targets,
            in_flight: &in_flight,
            prioritized: &self.p.prioritized,
            max_active: self.settings.osd_recovery_max_active,
        });
        self.p.unfound = plan.unfound.into_iter().collect();
        if !self.p.unfound.is_empty() {
            self.search_for_unfound();
        }
        for op in plan.ops {
            match op {
                RecoveryOp::Pull { oid, version, from } => {
                    self.p.in_flight.insert(
                        oid.clone(),
                        InFlight {
                            waiting: BTreeSet::new(),
                            pull_from: Some(from),
                            version,
                        },
                    );
                    self.out.push(Action::Pull { oid, version, from });
                }
                RecoveryOp::Push { oid, version, to } => {
                    self.p.in_flight.insert(
                        oid.clone(),
                        InFlight {
                            waiting: to.iter().copied().collect(),
                            pull_from: None,
                            version,
                        },
                    );
                    self.out.push(Action::Push {
                        oid,
                        version,
                        to,
                        backfill: false,
                    });
                }
            }
        }
        if self.p.in_flight.is_empty() && !self.p.unfound.is_empty() {
            self.park_unfound();
        }
    }

    /// Only unfound objects are left: nothing can be recovered until a
    /// copy that has them turns up, so the PG gives its reservations back
    /// (other PGs on these OSDs would otherwise wait behind it for good)
    /// and waits in `recovery_unfound`, as Ceph's does. A log from a copy
    /// that came back (`on_log`) or a new interval resumes it.
    fn park_unfound(&mut self) {
        self.release(ReservationKind::LocalRecovery);
        self.release_remote(ReserveFor::Recovery);
        self.p.toofull = None;
        self.go(State::Active(Active::NotRecovering));
    }

    /// Asks every known, up copy we have not examined for its log: one of
    /// them may hold what no member has.
    fn search_for_unfound(&mut self) {
        let me = self.whoami;
        let candidates: Vec<OsdId> = self
            .p
            .peer_info
            .keys()
            .copied()
            .filter(|&o| {
                o != me
                    && self.map.is_up(o)
                    && !self.p.sources.contains_key(&o)
                    && !self.p.peer_missing.contains_key(&o)
                    && !self.p.pending_log.contains(&o)
            })
            .collect();
        for o in candidates {
            self.p.pending_log.insert(o);
            self.query(o, super::QueryKind::Log);
        }
    }

    fn recovery_done(&mut self) {
        self.release(ReservationKind::LocalRecovery);
        self.release_remote(ReserveFor::Recovery);
        self.p.prioritized.clear();
        if self.needs_backfill() {
            self.go(State::Active(Active::WaitLocalBackfillReserved));
            self.request(ReservationKind::LocalBackfill);
        } else {
            self.recovered();
        }
    }

    pub(super) fn on_object_recovered(&mut self, oid: ObjectName, version: Eversion) {
        if self.missing.is_missing(&oid) {
            self.missing.got(&oid, version);
            self.info.last_complete = last_complete(&self.log, &self.missing);
            self.persist(PgWrite {
                info: Some(self.info.clone()),
                missing: Some(self.missing.clone()),
                ..Default::default()
            });
        }
        if !self.is_primary() {
            return;
        }
        self.p.prioritized.retain(|o| *o != oid);
        if self
            .p
            .in_flight
            .get(&oid)
            .is_some_and(|f| f.pull_from.is_some())
        {
            self.p.in_flight.remove(&oid);
        }
        self.issue_recovery();
    }

    pub(super) fn on_push_completed(&mut self, peer: OsdId, oid: ObjectName, version: Eversion) {
        if !self.is_primary() {
            return;
        }
        if let Some(f) = self.p.in_flight.get_mut(&oid) {
            if f.waiting.remove(&peer) {
                let v = f.version.max(version);
                if let Some(m) = self.p.peer_missing.get_mut(&peer) {
                    m.got(&oid, v);
                }
                if f.waiting.is_empty() {
                    self.p.in_flight.remove(&oid);
                }
                self.issue_recovery();
                return;
            }
        }
        let done = match self.p.backfill.as_mut() {
            Some(round) => {
                let emptied = round
                    .pending_pushes
                    .get_mut(&oid)
                    .is_some_and(|w| w.remove(&peer) && w.is_empty());
                if emptied {
                    round.pending_pushes.remove(&oid);
                }
                emptied && round.end.is_some() && round.pending_pushes.is_empty()
            }
            None => false,
        };
        if done {
            self.finish_backfill_round();
        }
    }

    pub(super) fn on_pull_failed(&mut self, from: OsdId, oid: ObjectName) {
        if let Some(f) = self.p.in_flight.remove(&oid) {
            // That copy does not have it after all: never ask it again.
            if let Some(m) = self.p.peer_missing.get_mut(&from) {
                m.add(&oid, f.version, Eversion::ZERO);
            }
        }
        self.issue_recovery();
    }

    /// Our copy could not be read for a push: it is missing here, and
    /// every target still waiting for it stays (or becomes) missing it.
    /// Recovery then pulls it from another copy and pushes it on; with no
    /// copy left it is unfound (`recovery_unfound`), never a push that
    /// nobody will ever answer.
    pub(super) fn on_push_failed(&mut self, oid: ObjectName, version: Eversion) {
        if !self.is_primary() {
            return;
        }
        let recovering = self.p.in_flight.remove(&oid);
        let round = self.p.backfill.as_mut();
        let backfilling = round.and_then(|r| r.pending_pushes.remove(&oid));
        if recovering.is_none() && backfilling.is_none() {
            return; // not (or no longer) being pushed
        }
        let version = recovering
            .as_ref()
            .map_or(version, |f| f.version.max(version));
        // A backfill target's last_backfill passes the object when its
        // round ends: recovery must bring it there afterwards.
        for peer in backfilling.into_iter().flatten() {
            self.p
                .peer_missing
                .entry(peer)
                .or_default()
                .add(&oid, version, Eversion::ZERO);
        }
        if !self.missing.is_missing(&oid) {
            self.missing.add(&oid, version, Eversion::ZERO);
            self.info.last_complete = last_complete(&self.log, &self.missing);
            self.persist(PgWrite {
                info: Some(self.info.clone()),
                missing: Some(self.missing.clone()),
                ..Default::default()
            });
        }
        match self.state {
            State::Active(Active::Recovering) => self.issue_recovery(),
            State::Active(Active::Backfilling) => {
                let done = self
                    .p
                    .backfill
                    .as_ref()
                    .is_some_and(|r| r.end.is_some() && r.pending_pushes.is_empty());
                if done {
                    self.finish_backfill_round();
                }
            }
            _ => {}
        }
    }

    pub(super) fn on_client_waits(&mut self, oid: ObjectName) {
        if !self.is_primary() || self.p.prioritized.contains(&oid) {
            return;
        }
        self.p.prioritized.push(oid);
        self.issue_recovery();
    }

    /// Whether an object is being recovered or backfilled right now: writes
    /// to it wait.
    pub(super) fn object_in_flight(&self, oid: &str) -> bool {
        self.p.in_flight.contains_key(oid)
            || self
                .p
                .backfill
                .as_ref()
                .is_some_and(|r| r.pending_pushes.contains_key(oid))
    }

    // ---- recovered and clean -----------------------------------------------

    /// All copies complete: drop a pg_temp that is no longer needed, and go
    /// clean if the acting set is full.
    pub(super) fn recovered(&mut self) {
        self.go(State::Active(Active::Recovered));
        let members = self.acting_recovery_backfill();
        for o in members {
            let mut info = if o == self.whoami {
                self.info.clone()
            } else {
                self.p.peer_info.get(&o).cloned().unwrap_or_default()
            };
            info.last_update = self.info.last_update;
            info.last_complete = self.info.last_update;
            info.log_tail = self.info.log_tail;
            info.last_backfill = ObjectBound::Max;
            self.p.peer_info.insert(o, info);
        }
        self.p.force_backfill.clear();
        let choice = self.choose_acting_with(self.whoami);
        match choice.and_then(|c| c.pg_temp) {
            Some(want) => self.out.push(Action::RequestPgTemp { want }),
            None if self.acting_count() >= self.mapping.pool_size as usize => self.go_clean(),
            None => {}
        }
    }

    fn go_clean(&mut self) {
        self.go(State::Active(Active::Clean));
        let epoch = self.epoch();
        let interval = self.interval();
        let h = &mut self.info.history;
        h.last_epoch_clean = h.last_epoch_clean.max(epoch);
        h.last_interval_clean = h.last_interval_clean.max(interval);
        self.past_intervals.clear();
        self.persist(PgWrite {
            info: Some(self.info.clone()),
            past_intervals: Some(self.past_intervals.clone()),
            ..Default::default()
        });
        self.share_history();
        for stray in self.strays() {
            self.purge_stray(stray);
        }
        self.maybe_start_scrub();
    }
}
