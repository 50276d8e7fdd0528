//! Primary peering: GetInfo -> GetLog -> GetMissing -> WaitUpThru, or
//! Down / Incomplete / WaitActingChange.

use std::collections::BTreeSet;

use kalmar_maps::OsdId;

use super::{Action, Active, Peering, PeeringMessage, Pg, PgWrite, QueryKind, SourceCopy, State};
use crate::choose::{choose_acting, find_best_info, ActingInputs};
use crate::error::PeeringError;
use crate::info::PgInfo;
use crate::intervals::PastIntervals;
use crate::log::PgLog;
use crate::merge::{last_complete, merge_log, proc_replica_log};
use crate::missing::PgMissing;
use crate::object::ObjectBound;
use crate::prior::build_prior;

use super::action::LogWrite;

impl Pg {
    /// Enters GetInfo: builds the prior set and queries it.
    pub(super) fn start_peering(&mut self) {
        self.go(State::Peering(Peering::GetInfo));
        if self.need_up_thru() && !self.p.up_thru_requested {
            self.p.up_thru_requested = true;
            self.out.push(Action::RequestUpThru {
                epoch: self.interval(),
            });
        }
        self.p.prior = build_prior(
            &self.mapping,
            &self.map,
            &self.past_intervals,
            &self.info.history,
        );
        self.p.peer_info.insert(self.whoami, self.info.clone());
        if self.p.prior.pg_down {
            self.go(State::Peering(Peering::Down));
            return;
        }
        let probe: Vec<OsdId> = self.p.prior.probe.iter().copied().collect();
        for o in probe {
            if o == self.whoami
                || self.p.peer_info.contains_key(&o)
                || self.p.pending_info.contains(&o)
            {
                continue;
            }
            self.p.pending_info.insert(o);
            self.query(o, QueryKind::Info);
        }
        if self.p.pending_info.is_empty() {
            self.get_log();
        }
    }

    /// [`choose_acting`] over this interval's mapping and the infos
    /// gathered so far.
    pub(super) fn choose_acting_with(&self, auth: OsdId) -> Option<crate::choose::ActingChoice> {
        choose_acting(ActingInputs {
            up: &self.mapping.up,
            up_primary: self.mapping.up_primary,
            acting: &self.mapping.acting,
            pool_size: self.mapping.pool_size as usize,
            map: &self.map,
            infos: &self.p.peer_info,
            auth,
            force_backfill: &self.p.force_backfill,
        })
    }

    pub(super) fn query(&mut self, to: OsdId, kind: QueryKind) {
        let msg = PeeringMessage::Query {
            pgid: self.info.pgid,
            epoch: self.epoch(),
            interval: self.interval(),
            kind,
        };
        self.send(to, msg);
    }

    /// A peer's info (reply or unsolicited).
    pub(super) fn on_notify(&mut self, from: OsdId, info: PgInfo, past: PastIntervals) {
        if !self.is_primary() {
            return;
        }
        let known = self.p.peer_info.get(&from) == Some(&info);
        let les_before = self.info.history.last_epoch_started;
        let hist_changed = self.info.history.merge(&info.history);
        let past_changed = self.past_intervals.merge(&past);
        self.p.peer_info.insert(from, info);
        self.p.pending_info.remove(&from);
        if hist_changed || past_changed {
            self.persist(PgWrite {
                info: Some(self.info.clone()),
                past_intervals: past_changed.then(|| self.past_intervals.clone()),
                ..Default::default()
            });
        }
        let prior_stale = self.info.history.last_epoch_started != les_before || past_changed;
        match self.state {
            State::Reset | State::Start => {}
            State::Peering(Peering::GetInfo) => {
                if prior_stale {
                    self.start_peering();
                } else if self.p.pending_info.is_empty() {
                    self.get_log();
                }
            }
            State::Peering(Peering::Down) | State::Peering(Peering::Incomplete) if !known => {
                self.start_peering();
            }
            State::Active(Active::Clean) => {
                let member = self.acting_recovery_backfill().contains(&from);
                if !member {
                    self.purge_stray(from);
                }
            }
            // A copy came back while objects are unfound: it may have them.
            State::Active(_)
                if !self.p.unfound.is_empty() && !self.p.pending_log.contains(&from) =>
            {
                self.p.pending_log.insert(from);
                self.query(from, QueryKind::Log);
            }
            _ => {}
        }
    }

    /// GetLog: choose the authoritative copy and the acting set, then fetch
    /// the authoritative log if another OSD has it.
    pub(super) fn get_log(&mut self) {
        self.go(State::Peering(Peering::GetLog));
        self.p.peer_info.insert(self.whoami, self.info.clone());
        let Some(best) = find_best_info(
            &self.p.peer_info,
            self.whoami,
            self.settings.osd_find_best_info_ignore_history_les,
        ) else {
            self.go(State::Peering(Peering::Incomplete));
            return;
        };
        let choice = self.choose_acting_with(best.osd);
        let Some(choice) = choice else {
            self.go(State::Peering(Peering::Incomplete));
            return;
        };
        self.p.auth = Some(best.osd);
        let temp = choice.pg_temp.clone();
        self.p.choice = Some(choice);
        if let Some(want) = temp {
            self.out.push(Action::RequestPgTemp { want });
            self.go(State::WaitActingChange);
            return;
        }
        if best.osd == self.whoami {
            self.get_missing();
        } else {
            self.p.pending_log.insert(best.osd);
            self.query(best.osd, QueryKind::Log);
        }
    }

    /// A log: the authoritative one (GetLog) or a replica's (GetMissing).
    pub(super) fn on_log(&mut self, from: OsdId, info: PgInfo, log: PgLog, missing: PgMissing) {
        if !self.is_primary() || !self.p.pending_log.remove(&from) {
            return;
        }
        match self.state {
            State::Peering(Peering::GetLog) if self.p.auth == Some(from) => {
                self.proc_master_log(from, info, log, missing)
            }
            State::Peering(Peering::GetMissing) => {
                let Some(choice) = self.p.choice.clone() else {
                    return;
                };
                let backfill = choice.backfill_targets.contains(&from);
                let member = choice.acting_recovery_backfill.contains(&from) && !backfill;
                match proc_replica_log(&self.log, &info, &log, &missing) {
                    Ok(st) => {
                        if member || (backfill && self.backfill_resumable(from, &info)) {
                            self.p.peer_missing.insert(from, st.missing.clone());
                        }
                        let source = SourceCopy {
                            missing: st.missing,
                            last_update: st.last_update,
                            last_backfill: info.last_backfill.clone(),
                        };
                        self.p.sources.insert(from, source);
                    }
                    Err(PeeringError::NoOverlap { .. }) if member => {
                        // Its log forked before our tail, though its info
                        // looked recoverable. Reshuffling the acting set
                        // would undo itself next interval (the info still
                        // looks fine), so keep it acting and backfill it;
                        // its persisted info then tells the truth.
                        self.p.force_backfill.insert(from);
                        if let Some(c) = self.p.choice.as_mut() {
                            c.backfill_targets.insert(from);
                        }
                    }
                    Err(PeeringError::NoOverlap { .. }) => {
                        // Not a usable source; a backfill target restarts
                        // from the beginning rather than resume.
                        self.p.force_backfill.insert(from);
                        self.p.peer_missing.remove(&from);
                    }
                    Err(e) => {
                        self.crash(format!("processing osd.{from}'s log: {e}"));
                        return;
                    }
                }
                self.p.peer_info.insert(from, info);
                if self.p.pending_log.is_empty() {
                    self.after_get_missing();
                }
            }
            State::Active(_) => {
                if let Ok(st) = proc_replica_log(&self.log, &info, &log, &missing) {
                    let source = SourceCopy {
                        missing: st.missing,
                        last_update: st.last_update,
                        last_backfill: info.last_backfill,
                    };
                    self.p.sources.insert(from, source);
                    if self.state == State::Active(Active::NotRecovering)
                        && self.p.toofull.is_none()
                        && !self.p.unfound.is_empty()
                    {
                        // Parked on unfound objects: this copy may have
                        // some; reserve again and look.
                        self.next_recovery_step();
                    } else {
                        self.issue_recovery();
                    }
                }
            }
            _ => {}
        }
    }

    fn proc_master_log(
        &mut self,
        from: OsdId,
        info: PgInfo,
        auth_log: PgLog,
        auth_missing: PgMissing,
    ) {
        match merge_log(&mut self.log, &mut self.missing, &auth_log) {
            Ok(out) => {
                self.info.history.merge(&info.history);
                self.info.last_update = self.log.head();
                self.info.log_tail = self.log.tail();
                self.info.last_complete = last_complete(&self.log, &self.missing);
                self.info.last_user_version =
                    self.info.last_user_version.max(info.last_user_version);
                self.persist(PgWrite {
                    info: Some(self.info.clone()),
                    log: LogWrite::after_merge(&out, &self.log),
                    missing: Some(self.missing.clone()),
                    remove_objects: out.remove_objects,
                    ..Default::default()
                });
                self.p.peer_info.insert(self.whoami, self.info.clone());
                self.p.peer_info.insert(from, info.clone());
                self.p.sources.insert(
                    from,
                    SourceCopy {
                        missing: auth_missing,
                        last_update: info.last_update,
                        last_backfill: info.last_backfill.clone(),
                    },
                );
                self.get_missing();
            }
            Err(PeeringError::NoOverlap { .. }) => {
                // Our own log forked before the authoritative tail: we
                // cannot lead. Record that our copy needs backfill, so every
                // later primary agrees, and let another copy lead.
                self.info.last_backfill = ObjectBound::Min;
                self.persist_info();
                self.p.peer_info.insert(self.whoami, self.info.clone());
                self.p.force_backfill.insert(self.whoami);
                self.get_log();
            }
            Err(e) => self.crash(format!(
                "merging the authoritative log from osd.{from}: {e}"
            )),
        }
    }

    /// GetMissing: fetch the log of every member that is not plainly up to
    /// date, to learn what it lacks.
    fn get_missing(&mut self) {
        self.go(State::Peering(Peering::GetMissing));
        let Some(choice) = self.p.choice.clone() else {
            self.crash("GetMissing without an acting choice".into());
            return;
        };
        let me = self.whoami;
        for &peer in choice.acting_recovery_backfill.iter().filter(|&&o| o != me) {
            let Some(pi) = self.p.peer_info.get(&peer).cloned() else {
                self.crash(format!("osd.{peer} chosen without its info"));
                return;
            };
            if choice.backfill_targets.contains(&peer) {
                if !self.backfill_resumable(peer, &pi) {
                    continue;
                }
            } else if pi.last_update == self.info.last_update && !pi.has_missing() {
                self.p.peer_missing.insert(peer, PgMissing::new());
                continue;
            }
            self.p.pending_log.insert(peer);
            self.query(peer, QueryKind::Log);
        }
        // Other copies may hold objects the members lack: learn what they
        // have, so recovery can pull from them (Ceph's might_have_unfound).
        let others: Vec<OsdId> = self
            .p
            .peer_info
            .iter()
            .filter(|(o, i)| {
                **o != me
                    && self.map.is_up(**o)
                    && !i.last_update.is_zero()
                    && !self.p.pending_log.contains(*o)
                    && (!choice.acting_recovery_backfill.contains(*o)
                        || choice.backfill_targets.contains(*o))
            })
            .map(|(o, _)| *o)
            .collect();
        for peer in others {
            self.p.pending_log.insert(peer);
            self.query(peer, QueryKind::Log);
        }
        if self.p.pending_log.is_empty() {
            self.after_get_missing();
        }
    }

    /// A backfill target that was interrupted mid-backfill and whose log
    /// still overlaps ours resumes at its `last_backfill`.
    pub(super) fn backfill_resumable(&self, peer: OsdId, pi: &PgInfo) -> bool {
        !self.p.force_backfill.contains(&peer)
            && pi.last_backfill != ObjectBound::Min
            && pi.last_update >= self.log.tail()
    }

    fn after_get_missing(&mut self) {
        if self.need_up_thru() {
            if !self.p.up_thru_requested {
                self.p.up_thru_requested = true;
                self.out.push(Action::RequestUpThru {
                    epoch: self.interval(),
                });
            }
            self.go(State::Peering(Peering::WaitUpThru));
        } else {
            self.activate();
        }
    }

    /// Tells a stray whose copy is no longer needed to delete it.
    pub(super) fn purge_stray(&mut self, osd: OsdId) {
        // Only an OSD up in our map (Ceph's purge_strays does the same): a
        // restarting OSD may tell us of its copy before we have the map that
        // brings it back up, and into the PG again; purging then would
        // throw away a copy it is about to need (a resumable backfill).
        // Once up, it tells us again and is purged if still a stray.
        if !self.map.is_up(osd) {
            return;
        }
        let msg = PeeringMessage::Purge {
            pgid: self.info.pgid,
            epoch: self.epoch(),
            interval: self.interval(),
        };
        self.send(osd, msg);
    }

    /// Strays: copies we heard of that are not members.
    pub(super) fn strays(&self) -> BTreeSet<OsdId> {
        let members = self.acting_recovery_backfill();
        self.p
            .peer_info
            .keys()
            .copied()
            .filter(|o| *o != self.whoami && !members.contains(o) && !self.mapping.up.contains(o))
            .collect()
    }
}
