//! Recovery and backfill that a copy has no room for: the target refuses
//! the reservation (or a push) and the primary waits in
//! `recovery_toofull` / `backfill_toofull`, holding no reservation so
//! other PGs may proceed, then asks again after the retry interval.

use kalmar_maps::OsdId;

use super::{Action, Active, PeeringMessage, Pg, ReservationKind, ReserveFor, State};
use crate::object::ObjectName;
use crate::toofull::{backfill_adds, reservation_verdict, TooFull};

impl Pg {
    /// Whether this OSD's store has room for the work a primary (or this
    /// primary itself) wants to reserve; `primary_bytes`: the primary's
    /// PG size.
    pub(super) fn room_for(&self, kind: ReserveFor, primary_bytes: u64) -> Result<(), TooFull> {
        let adding = match kind {
            ReserveFor::Backfill => backfill_adds(primary_bytes, self.info.stats.num_bytes),
            ReserveFor::Recovery => 0,
        };
        reservation_verdict(kind, self.fullness, adding)
    }

    /// Replica: refuse a reservation for lack of room.
    pub(super) fn reject_reservation(&mut self, primary: OsdId, kind: ReserveFor) {
        let msg = PeeringMessage::ReserveRejectTooFull {
            pgid: self.info.pgid,
            epoch: self.epoch(),
            interval: self.interval(),
            kind,
        };
        self.send(primary, msg);
    }

    /// Primary: a member refused our reservation for lack of room.
    pub(super) fn on_reserve_reject_toofull(&mut self, _from: OsdId, kind: ReserveFor) {
        let waiting = match kind {
            ReserveFor::Recovery => State::Active(Active::WaitRemoteRecoveryReserved),
            ReserveFor::Backfill => State::Active(Active::WaitRemoteBackfillReserved),
        };
        if self.state == waiting {
            self.go_toofull(kind);
        }
    }

    /// Primary: a target refused a push for lack of space (ENOSPC): the
    /// work stops and is retried later, never left waiting for a push
    /// that will not complete.
    pub(super) fn on_push_refused_full(&mut self, peer: OsdId, oid: ObjectName) {
        if !self.is_primary() {
            return;
        }
        match self.state {
            State::Active(Active::Backfilling) => {
                let pending = self
                    .p
                    .backfill
                    .as_ref()
                    .and_then(|r| r.pending_pushes.get(&oid))
                    .is_some_and(|to| to.contains(&peer));
                if pending {
                    self.go_toofull(ReserveFor::Backfill);
                }
            }
            State::Active(Active::Recovering) => {
                let pending = self.p.in_flight.get(&oid).is_some_and(|f| {
                    f.waiting.contains(&peer) || (peer == self.whoami && f.pull_from.is_some())
                });
                if pending {
                    self.go_toofull(ReserveFor::Recovery);
                }
            }
            _ => {}
        }
    }

    /// Stops the work of `kind`: gives back every reservation (the remote
    /// ones, granted or still queued, too), forgets what was under way
    /// (it is redone: pushes are idempotent, `last_backfill` only moves
    /// at the end of a round) and schedules the retry.
    pub(super) fn go_toofull(&mut self, kind: ReserveFor) {
        let (local, state, delay_ms) = match kind {
            ReserveFor::Recovery => (
                ReservationKind::LocalRecovery,
                Active::NotRecovering,
                self.settings.osd_recovery_retry_interval_ms,
            ),
            ReserveFor::Backfill => (
                ReservationKind::LocalBackfill,
                Active::NotBackfilling,
                self.settings.osd_backfill_retry_interval_ms,
            ),
        };
        match kind {
            ReserveFor::Recovery => self.p.in_flight.clear(),
            ReserveFor::Backfill => self.p.backfill = None,
        }
        self.release(local);
        let mut asked = self.remote_targets(kind);
        asked.extend(std::mem::take(&mut self.p.remote_granted));
        self.send_release(asked, kind);
        self.p.toofull = Some(kind);
        self.go(State::Active(state));
        self.out.push(Action::ScheduleRetry { kind, delay_ms });
    }

    /// Primary: the retry interval passed: reserve again.
    pub(super) fn on_retry_reservation(&mut self, kind: ReserveFor) {
        let waiting = match kind {
            ReserveFor::Recovery => State::Active(Active::NotRecovering),
            ReserveFor::Backfill => State::Active(Active::NotBackfilling),
        };
        if self.state == waiting {
            self.next_recovery_step();
        }
    }

    /// Whether the PG shows `kind`'s toofull flag: refused, and waiting to
    /// retry or retrying (not yet granted again).
    pub(super) fn shows_toofull(&self, kind: ReserveFor) -> bool {
        if self.p.toofull != Some(kind) {
            return false;
        }
        let states: [Active; 3] = match kind {
            ReserveFor::Recovery => [
                Active::NotRecovering,
                Active::WaitLocalRecoveryReserved,
                Active::WaitRemoteRecoveryReserved,
            ],
            ReserveFor::Backfill => [
                Active::NotBackfilling,
                Active::WaitLocalBackfillReserved,
                Active::WaitRemoteBackfillReserved,
            ],
        };
        matches!(self.state, State::Active(a) if states.contains(&a))
    }
}
