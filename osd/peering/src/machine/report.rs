//! What the primary reports: Ceph's state flags, `pg dump` stats and
//! `pg query`.

use kalmar_maps::time::format_stamp;
use kalmar_maps::OsdId;

use super::{Action, Active, Peering, Pg, PgStatsReport, ReserveFor, State};
use crate::flags::PgStateFlags;
use crate::object::ObjectBound;
use crate::stats::{copy_counts, CopyState};

impl Pg {
    // ---- state flags and stats -------------------------------------------

    pub(super) fn acting_count(&self) -> usize {
        self.mapping.acting_members().count()
    }

    pub(super) fn any_missing(&self) -> bool {
        !self.missing.is_empty() || self.p.peer_missing.values().any(|m| !m.is_empty())
    }

    /// An acting member (not just an up one) is still being backfilled.
    pub(super) fn acting_backfill_incomplete(&self) -> bool {
        self.mapping.acting_members().any(|o| {
            self.p
                .peer_last_backfill
                .get(&o)
                .is_some_and(|b| !b.is_max())
        })
    }

    pub(super) fn refresh_flags(&mut self) {
        type F = PgStateFlags;
        let mut f = F::empty();
        let primary_state = matches!(
            self.state,
            State::Peering(_) | State::WaitActingChange | State::Active(_)
        );
        match self.state {
            State::Peering(Peering::Down) => f.set(F::DOWN),
            State::Peering(Peering::Incomplete) => f.set(F::INCOMPLETE),
            State::Peering(_) | State::WaitActingChange => f.set(F::PEERING),
            State::Active(a) => {
                if a == Active::Activating {
                    f.set(F::ACTIVATING);
                } else if self.acting_count() >= self.mapping.pool_min_size as usize {
                    f.set(F::ACTIVE);
                } else {
                    f.set(F::PEERED);
                }
                match a {
                    Active::WaitLocalRecoveryReserved | Active::WaitRemoteRecoveryReserved => {
                        f.set(F::RECOVERY_WAIT)
                    }
                    // With nothing in flight and only unfound objects
                    // left, nothing is being recovered (Ceph shows
                    // recovery_unfound without recovering).
                    Active::Recovering
                        if !self.p.in_flight.is_empty() || self.p.unfound.is_empty() =>
                    {
                        f.set(F::RECOVERING)
                    }
                    Active::WaitLocalBackfillReserved | Active::WaitRemoteBackfillReserved => {
                        f.set(F::BACKFILL_WAIT)
                    }
                    Active::Backfilling => f.set(F::BACKFILLING),
                    Active::Clean => f.set(F::CLEAN),
                    _ => {}
                }
                let undersized = self.acting_count() < self.mapping.pool_size as usize;
                f.assign(
                    F::DEGRADED,
                    undersized || self.any_missing() || self.acting_backfill_incomplete(),
                );
                f.assign(F::RECOVERY_UNFOUND, !self.p.unfound.is_empty());
                f.assign(
                    F::RECOVERY_TOOFULL,
                    self.shows_toofull(ReserveFor::Recovery),
                );
                f.assign(
                    F::BACKFILL_TOOFULL,
                    self.shows_toofull(ReserveFor::Backfill),
                );
                f.set(self.scrub_flags.0);
                f.assign(F::INCONSISTENT, self.info.stats.num_scrub_errors > 0);
            }
            _ => {}
        }
        if primary_state {
            f.assign(F::REMAPPED, self.mapping.is_remapped());
            f.assign(
                F::UNDERSIZED,
                self.acting_count() < self.mapping.pool_size as usize,
            );
        }
        self.flags = f;
    }

    pub(super) fn maybe_publish(&mut self) {
        if !self.is_primary() || matches!(self.state, State::Initial | State::Reset | State::Start)
        {
            return;
        }
        let key = (self.flags, self.state);
        if self.published == Some(key) {
            return;
        }
        self.published = Some(key);
        let report = self.stats_report();
        self.out.push(Action::PublishStats(Box::new(report)));
    }

    /// The PG's stats as the primary sees them now.
    pub fn stats_report(&self) -> PgStatsReport {
        let n = self.info.stats.num_objects;
        let missing_of = |o: OsdId| {
            if o == self.whoami {
                self.missing.len() as u64
            } else {
                self.p.peer_missing.get(&o).map_or(0, |m| m.len() as u64)
            }
        };
        let acting: Vec<CopyState> = self
            .mapping
            .acting_members()
            .map(|o| CopyState {
                osd: o,
                // An acting member under backfill lacks (at most) all.
                missing: if self
                    .p
                    .peer_last_backfill
                    .get(&o)
                    .is_some_and(|b| !b.is_max())
                {
                    n
                } else {
                    missing_of(o)
                },
                not_backfilled: None,
            })
            .collect();
        let backfill: Vec<CopyState> = self
            .backfill_targets()
            .into_iter()
            .map(|o| CopyState {
                osd: o,
                missing: 0,
                not_backfilled: Some(
                    if self
                        .p
                        .peer_last_backfill
                        .get(&o)
                        .is_some_and(ObjectBound::is_max)
                    {
                        0
                    } else {
                        n
                    },
                ),
            })
            .collect();
        let counts = copy_counts(
            n,
            u64::from(self.mapping.pool_size),
            &self.mapping.up,
            &acting,
            &backfill,
        );
        let h = &self.info.history;
        PgStatsReport {
            pgid: self.info.pgid,
            state: self.flags,
            reported_epoch: self.epoch(),
            state_stamp_us: self.state_stamp_us,
            last_update: self.info.last_update,
            log_size: self.log.len() as u64,
            up: self.mapping.up.clone(),
            up_primary: self.mapping.up_primary,
            acting: self.mapping.acting.clone(),
            acting_primary: self.mapping.acting_primary,
            num_objects: n,
            num_bytes: self.info.stats.num_bytes,
            num_object_copies: counts.num_object_copies,
            degraded: counts.degraded,
            misplaced: counts.misplaced,
            missing_on_primary: self.missing.len() as u64,
            unfound: self.p.unfound.len() as u64,
            num_scrub_errors: self.info.stats.num_scrub_errors,
            num_shallow_scrub_errors: self.info.stats.num_shallow_scrub_errors,
            num_deep_scrub_errors: self.info.stats.num_deep_scrub_errors,
            last_epoch_clean: h.last_epoch_clean,
            last_became_active_us: self.last_became_active_us,
            last_scrub: h.last_scrub,
            last_scrub_stamp_us: h.last_scrub_stamp_us,
            last_deep_scrub: h.last_deep_scrub,
            last_deep_scrub_stamp_us: h.last_deep_scrub_stamp_us,
            state_name: self.state.name(),
            blocked_by: self.p.prior.blocked_by.keys().copied().collect(),
        }
    }

    /// `pg query` output (Ceph's key names where they exist).
    pub fn query_json(&self) -> serde_json::Value {
        let peers: Vec<serde_json::Value> = self
            .p
            .peer_info
            .iter()
            .filter(|(o, _)| **o != self.whoami)
            .map(|(o, i)| serde_json::json!({ "peer": o.to_string(), "info": i }))
            .collect();
        serde_json::json!({
            "snap_trimq": "[]",
            "state": self.flags.to_string(),
            "epoch": self.epoch(),
            "up": self.mapping.up,
            "acting": self.mapping.acting,
            "backfill_targets": self.backfill_targets(),
            "acting_recovery_backfill": self.acting_recovery_backfill(),
            "info": self.info,
            "peer_info": peers,
            "recovery_state": self.history.entries().rev().map(|e| serde_json::json!({
                "name": e.state,
                "enter_time": format_stamp(e.enter_us),
                "exit_time": e.exit_us.map(format_stamp),
                "enter_time_us": e.enter_us,
                "exit_time_us": e.exit_us,
            })).collect::<Vec<_>>(),
            "prior_set": self.p.prior,
            "past_intervals": self.past_intervals,
            "missing": self.missing.len(),
            "unfound": self.p.unfound,
            "scrub_requested": self.scrub_pending.map(|r| serde_json::json!({
                "deep": r.deep,
                "repair": r.repair,
            })),
        })
    }
}
