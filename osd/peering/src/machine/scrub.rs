//! The primary's side of scrubbing: requests wait for active+clean and a
//! scrub slot; a finished scrub records its stamps and error counts, and a
//! repair turns its items into missing objects that recovery rewrites.

use super::{Action, Active, Pg, PgWrite, ReservationKind, ScrubRequest, ScrubResult, State};
use crate::eversion::Eversion;
use crate::flags::PgStateFlags as F;
use crate::merge::last_complete;
use crate::object::ObjectName;
use crate::scrub::RepairItem;

impl Pg {
    /// Whether a scrub is running (between `StartScrub` and its result).
    pub fn is_scrubbing(&self) -> bool {
        self.scrub_flags.has(F::SCRUBBING)
    }

    /// The scrub asked for and not started yet, as `(deep, repair)`.
    pub fn scrub_requested(&self) -> Option<(bool, bool)> {
        self.scrub_pending.map(|r| (r.deep, r.repair))
    }

    /// A new interval ends a running scrub. A primary that stays primary
    /// keeps what was asked for (a scrub cut short starts over once the
    /// PG is clean again); a new primary knows nothing of it.
    pub(super) fn scrub_new_interval(&mut self) {
        let running = self.is_scrubbing().then(|| ScrubRequest {
            deep: self.scrub_flags.has(F::DEEP_SCRUB),
            repair: self.scrub_flags.has(F::REPAIR),
        });
        self.scrub_flags = F::empty();
        if self.mapping.acting_primary != self.whoami {
            self.scrub_pending = None;
            return;
        }
        if let Some(r) = running {
            let p = self.scrub_pending.get_or_insert(ScrubRequest::default());
            p.deep |= r.deep;
            p.repair |= r.repair;
        }
    }

    pub(super) fn on_scrub_requested(&mut self, deep: bool, repair: bool) {
        if !self.is_primary() {
            return;
        }
        let r = self.scrub_pending.get_or_insert(ScrubRequest::default());
        r.deep |= deep || repair;
        r.repair |= repair;
        self.maybe_start_scrub();
    }

    /// Asks for the scrub slot once a pending scrub may run.
    pub(super) fn maybe_start_scrub(&mut self) {
        if self.scrub_pending.is_some()
            && !self.is_scrubbing()
            && self.state == State::Active(Active::Clean)
        {
            self.request(ReservationKind::Scrub);
        }
    }

    pub(super) fn on_scrub_reserved(&mut self) {
        let runnable = self.state == State::Active(Active::Clean) && !self.is_scrubbing();
        let Some(req) = self.scrub_pending.filter(|_| runnable) else {
            self.release(ReservationKind::Scrub);
            return;
        };
        self.scrub_pending = None;
        self.scrub_flags.clear(F::FAILED_REPAIR);
        self.scrub_flags.set(F::SCRUBBING);
        self.scrub_flags.assign(F::DEEP_SCRUB, req.deep);
        self.scrub_flags.assign(F::REPAIR, req.repair);
        self.out.push(Action::StartScrub {
            deep: req.deep,
            repair: req.repair,
        });
    }

    pub(super) fn on_scrub_finished(&mut self, r: ScrubResult) {
        if !self.is_scrubbing() {
            return;
        }
        self.release(ReservationKind::Scrub);
        self.scrub_flags
            .clear(F::SCRUBBING | F::DEEP_SCRUB | F::REPAIR);
        if r.aborted {
            self.maybe_start_scrub();
            return;
        }
        let h = &mut self.info.history;
        h.last_scrub = self.info.last_update;
        h.last_scrub_stamp_us = self.now_us;
        if r.deep {
            h.last_deep_scrub = self.info.last_update;
            h.last_deep_scrub_stamp_us = self.now_us;
        }
        let s = &mut self.info.stats;
        if r.repair {
            // What repair rewrites is fixed once recovery ran; what it
            // could not is still wrong.
            s.num_shallow_scrub_errors = r.unrepairable_shallow;
            s.num_deep_scrub_errors = r.unrepairable_deep;
        } else if r.deep {
            s.num_shallow_scrub_errors = r.shallow_errors;
            s.num_deep_scrub_errors = r.deep_errors;
        } else {
            // A shallow scrub does not recheck what only a deep one finds.
            s.num_shallow_scrub_errors = r.shallow_errors + r.deep_errors;
        }
        s.num_scrub_errors = s.num_shallow_scrub_errors + s.num_deep_scrub_errors;
        if r.repair && r.unrepairable_shallow + r.unrepairable_deep > 0 {
            self.scrub_flags.set(F::FAILED_REPAIR);
        }
        let repairs_queued = r.repair && self.queue_repairs(r.repairs);
        self.persist(PgWrite {
            info: Some(self.info.clone()),
            missing: repairs_queued.then(|| self.missing.clone()),
            ..Default::default()
        });
        if repairs_queued {
            self.recover_queued();
        } else {
            self.maybe_start_scrub();
        }
    }

    /// Starts recovery of objects just added to the missing sets: from
    /// clean, through the reservations; while recovering, at once; in the
    /// reservation waits, once they are granted.
    fn recover_queued(&mut self) {
        match self.state {
            State::Active(Active::Clean) => self.next_recovery_step(),
            State::Active(Active::Recovering) => self.issue_recovery(),
            _ => {}
        }
    }

    pub(super) fn on_read_error(&mut self, oid: ObjectName, version: Eversion) {
        use Active as A;
        if !self.is_primary() || !self.is_active() || self.missing.is_missing(&oid) {
            return;
        }
        let recovering = matches!(
            self.state,
            State::Active(
                A::WaitLocalRecoveryReserved | A::WaitRemoteRecoveryReserved | A::Recovering
            )
        );
        if self.state != State::Active(A::Clean) && !recovering {
            return; // backfill and the like: the read fails, scrub repairs
        }
        self.missing.add(&oid, version, Eversion::ZERO);
        self.info.last_complete = last_complete(&self.log, &self.missing);
        self.persist(PgWrite {
            info: Some(self.info.clone()),
            missing: Some(self.missing.clone()),
            ..Default::default()
        });
        self.recover_queued();
    }

    /// Records each bad copy as missing the object (the primary's own in
    /// its missing set, a member's in its peer missing set), so recovery
    /// copies the authoritative object over it (or removes it). Returns
    /// whether anything was queued.
    fn queue_repairs(&mut self, items: Vec<RepairItem>) -> bool {
        let mut queued = false;
        for it in items {
            if self.deleted_since(&it.oid, it.version) {
                continue; // a client removed it since: nothing to repair
            }
            for osd in it.to {
                if osd == self.whoami {
                    self.missing.add(&it.oid, it.version, Eversion::ZERO);
                } else {
                    self.p.peer_missing.entry(osd).or_default().add(
                        &it.oid,
                        it.version,
                        Eversion::ZERO,
                    );
                }
                queued = true;
            }
        }
        if queued {
            self.info.last_complete = last_complete(&self.log, &self.missing);
        }
        queued
    }

    /// Whether the newest log entry of `oid` after `since` deletes it.
    fn deleted_since(&self, oid: &str, since: Eversion) -> bool {
        self.log
            .entries()
            .rev()
            .take_while(|e| e.version > since)
            .find(|e| e.oid == oid && e.op.changes_object())
            .is_some_and(|e| e.op.is_delete())
    }
}
