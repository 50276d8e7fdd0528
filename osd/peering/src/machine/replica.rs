//! Non-primary copies: Stray (answering queries, waiting for activation)
//! and ReplicaActive (applying activation, reservations, backfill
//! progress).

use kalmar_maps::OsdId;

use super::{PeeringMessage, Pg, PgWrite, Replica, ReservationKind, ReserveFor, State};
use crate::eversion::Eversion;
use crate::info::{PgHistory, PgInfo};
use crate::intervals::PastIntervals;
use crate::log::PgLog;
use crate::merge::{filter_backfill, last_complete, merge_log};
use crate::missing::PgMissing;
use crate::object::ObjectBound;

use super::action::{Action, LogWrite};

impl Pg {
    fn is_replica_role(&self) -> bool {
        matches!(
            self.state,
            State::Stray | State::ReplicaActive(_) | State::Reset | State::Start
        ) && self.mapping.acting_primary != self.whoami
    }

    /// The primary's activation: adopt its history, bring the log in line
    /// with the authoritative one (rolling back divergent entries), persist,
    /// and acknowledge.
    pub(super) fn on_activate(
        &mut self,
        from: OsdId,
        pinfo: PgInfo,
        plog: PgLog,
        past: PastIntervals,
        backfill_from: Option<ObjectBound>,
    ) {
        if !self.is_replica_role() || from != self.mapping.acting_primary {
            return;
        }
        self.info.history.merge(&pinfo.history);
        self.past_intervals.merge(&past);
        let mut remove_objects = Default::default();
        let log_write;
        match backfill_from {
            Some(ObjectBound::Min) => {
                // Full backfill: our objects are all suspect; the primary
                // will push what differs and remove extras.
                log_write = Some(LogWrite::Rewrite(plog.clone()));
                self.log = plog;
                self.missing = PgMissing::new();
                self.info.last_backfill = ObjectBound::Min;
            }
            resume => {
                match merge_log(&mut self.log, &mut self.missing, &plog) {
                    Ok(out) => {
                        log_write = LogWrite::after_merge(&out, &self.log);
                        remove_objects = out.remove_objects;
                    }
                    Err(e) => {
                        self.crash(format!(
                            "activation log from osd.{from} does not merge: {e}"
                        ));
                        return;
                    }
                }
                if let Some(bound) = resume {
                    filter_backfill(&mut self.missing, &bound);
                    self.info.last_backfill = bound;
                }
            }
        }
        self.info.last_update = self.log.head();
        self.info.log_tail = self.log.tail();
        self.info.last_complete = last_complete(&self.log, &self.missing);
        // A peered (below min_size) primary does not raise its own
        // last_epoch_started; ours never goes back.
        if pinfo.last_epoch_started > self.info.last_epoch_started {
            self.info.last_epoch_started = pinfo.last_epoch_started;
            self.info.last_interval_started = self.interval();
        }
        self.info.last_user_version = self.info.last_user_version.max(pinfo.last_user_version);
        self.persist(PgWrite {
            info: Some(self.info.clone()),
            past_intervals: Some(self.past_intervals.clone()),
            log: log_write,
            missing: Some(self.missing.clone()),
            remove_objects,
        });
        self.r.primary = Some(from);
        self.go(State::ReplicaActive(Replica::RepNotRecovering));
        let msg = PeeringMessage::Activated {
            pgid: self.info.pgid,
            epoch: self.epoch(),
            interval: self.interval(),
            info: self.info.clone(),
        };
        self.send(from, msg);
    }

    /// The shared history advanced (activation complete, or clean).
    pub(super) fn on_info(&mut self, history: PgHistory) {
        if self.is_primary() {
            return;
        }
        let lec_before = self.info.history.last_epoch_clean;
        if !self.info.history.merge(&history) {
            return;
        }
        let clean = self.info.history.last_epoch_clean > lec_before;
        if clean {
            self.past_intervals.clear();
        }
        self.persist(PgWrite {
            info: Some(self.info.clone()),
            past_intervals: clean.then(|| self.past_intervals.clone()),
            ..Default::default()
        });
    }

    pub(super) fn on_reserve_request(&mut self, from: OsdId, kind: ReserveFor, num_bytes: u64) {
        if !matches!(self.state, State::ReplicaActive(_)) || self.r.primary != Some(from) {
            return;
        }
        self.r.request_bytes = num_bytes;
        if self.room_for(kind, num_bytes).is_err() {
            self.go(State::ReplicaActive(Replica::RepNotRecovering));
            self.reject_reservation(from, kind);
            return;
        }
        let (wait, slot) = match kind {
            ReserveFor::Recovery => (
                Replica::RepWaitRecoveryReserved,
                ReservationKind::RemoteRecovery,
            ),
            ReserveFor::Backfill => (
                Replica::RepWaitBackfillReserved,
                ReservationKind::RemoteBackfill,
            ),
        };
        self.go(State::ReplicaActive(wait));
        self.request(slot);
    }

    pub(super) fn on_replica_reservation_granted(&mut self, kind: ReservationKind) {
        let Some(primary) = self.r.primary else {
            return;
        };
        let grant = match (self.state, kind) {
            (
                State::ReplicaActive(Replica::RepWaitRecoveryReserved),
                ReservationKind::RemoteRecovery,
            ) => ReserveFor::Recovery,
            (
                State::ReplicaActive(Replica::RepWaitBackfillReserved),
                ReservationKind::RemoteBackfill,
            ) => ReserveFor::Backfill,
            _ => return,
        };
        // The store may have filled while the request waited for a slot.
        if self.room_for(grant, self.r.request_bytes).is_err() {
            self.release(kind);
            self.go(State::ReplicaActive(Replica::RepNotRecovering));
            self.reject_reservation(primary, grant);
            return;
        }
        self.go(State::ReplicaActive(Replica::RepRecovering));
        let msg = PeeringMessage::ReserveGrant {
            pgid: self.info.pgid,
            epoch: self.epoch(),
            interval: self.interval(),
            kind: grant,
        };
        self.send(primary, msg);
    }

    pub(super) fn on_reserve_release(&mut self, kind: ReserveFor) {
        if !matches!(self.state, State::ReplicaActive(_)) {
            return;
        }
        let slot = match kind {
            ReserveFor::Recovery => ReservationKind::RemoteRecovery,
            ReserveFor::Backfill => ReservationKind::RemoteBackfill,
        };
        self.release(slot);
        self.go(State::ReplicaActive(Replica::RepNotRecovering));
    }

    /// Backfill reached `last_backfill` on this copy: persist it.
    pub(super) fn on_backfill_progress(
        &mut self,
        last_backfill: ObjectBound,
        last_update: Eversion,
    ) {
        if !matches!(self.state, State::ReplicaActive(_))
            || last_backfill <= self.info.last_backfill
        {
            return;
        }
        self.info.last_backfill = last_backfill;
        if self.info.last_backfill.is_max()
            && self.missing.is_empty()
            && last_update == self.info.last_update
        {
            self.info.last_complete = self.info.last_update;
        }
        self.persist_info();
    }

    pub(super) fn on_purge(&mut self, from: OsdId) {
        if self.state == State::Stray && from == self.mapping.acting_primary {
            self.go(State::ToDelete);
            self.out.push(Action::DeletePg);
        }
    }
}
