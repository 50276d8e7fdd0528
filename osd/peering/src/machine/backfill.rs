//! The primary's backfill rounds: scan both sides, push what differs,
//! remove extras, advance `last_backfill`.

use std::collections::{BTreeMap, BTreeSet};

use kalmar_maps::{OsdId, OsdMapFlags};

use super::{
    Action, Active, BackfillRound, PeeringMessage, Pg, ReservationKind, ReserveFor, State,
};
use crate::backfill::{common_end, plan_backfill, ScanResult};
use crate::eversion::Eversion;
use crate::object::{ObjectBound, ObjectName};

impl Pg {
    // ---- backfill ----------------------------------------------------------

    pub(super) fn start_backfill_round(&mut self) {
        if self.state != State::Active(Active::Backfilling)
            || self.map.test_flag(OsdMapFlags::NOBACKFILL)
        {
            return;
        }
        let Some(begin) = self.p.peer_last_backfill.values().min().cloned() else {
            self.backfill_done();
            return;
        };
        if begin.is_max() {
            self.backfill_done();
            return;
        }
        let targets: Vec<OsdId> = self.p.peer_last_backfill.keys().copied().collect();
        let mut waiting: BTreeSet<OsdId> = targets.iter().copied().collect();
        waiting.insert(self.whoami);
        self.p.backfill = Some(BackfillRound {
            begin: begin.clone(),
            scan_head: self.info.last_update,
            scans: BTreeMap::new(),
            waiting_scans: waiting,
            end: None,
            pending_pushes: BTreeMap::new(),
        });
        let max = self.settings.osd_backfill_scan_max;
        self.out.push(Action::ScanLocal {
            begin: begin.clone(),
            max,
        });
        for peer in targets {
            self.out.push(Action::ScanPeer {
                peer,
                begin: begin.clone(),
                max,
            });
        }
    }

    pub(super) fn on_scan_completed(&mut self, from: OsdId, scan: ScanResult) {
        let Some(round) = self.p.backfill.as_mut() else {
            return;
        };
        if round.end.is_some() || !round.waiting_scans.remove(&from) || scan.begin != round.begin {
            return;
        }
        round.scans.insert(from, scan);
        if !round.waiting_scans.is_empty() {
            return;
        }
        let Some(mut local) = round.scans.remove(&self.whoami) else {
            return;
        };
        local.apply_log(self.log.entries_after(round.scan_head).cloned());
        let end = common_end(round.scans.values().chain(std::iter::once(&local)));
        let mut pushes: BTreeMap<ObjectName, (Eversion, BTreeSet<OsdId>)> = BTreeMap::new();
        let mut removes = Vec::new();
        for (&t, peer_scan) in &round.scans {
            let lb = self
                .p
                .peer_last_backfill
                .get(&t)
                .cloned()
                .unwrap_or(ObjectBound::Min);
            let step = plan_backfill(&local, peer_scan, &lb, &end);
            for oid in step.remove {
                removes.push((t, oid));
            }
            for (oid, v) in step.push {
                pushes
                    .entry(oid)
                    .or_insert((v, BTreeSet::new()))
                    .1
                    .insert(t);
            }
        }
        round.end = Some(end.clone());
        round.pending_pushes = pushes
            .iter()
            .map(|(o, (_, to))| (o.clone(), to.clone()))
            .collect();
        let targets: Vec<OsdId> = round.scans.keys().copied().collect();
        for t in targets {
            let started = self
                .p
                .last_backfill_started
                .entry(t)
                .or_insert(ObjectBound::Min);
            if *started < end {
                *started = end.clone();
            }
        }
        for (peer, oid) in removes {
            self.out.push(Action::RemoveOnPeer { peer, oid });
        }
        let empty = pushes.is_empty();
        for (oid, (version, to)) in pushes {
            self.out.push(Action::Push {
                oid,
                version,
                to: to.into_iter().collect(),
                backfill: true,
            });
        }
        if empty {
            self.finish_backfill_round();
        }
    }

    pub(super) fn finish_backfill_round(&mut self) {
        let Some(round) = self.p.backfill.take() else {
            return;
        };
        let Some(end) = round.end else { return };
        let targets: Vec<OsdId> = self.p.peer_last_backfill.keys().copied().collect();
        let (epoch, interval) = (self.epoch(), self.interval());
        for t in targets {
            let lb = self
                .p
                .peer_last_backfill
                .entry(t)
                .or_insert(ObjectBound::Min);
            if *lb < end {
                *lb = end.clone();
            }
            let last_backfill = lb.clone();
            let msg = PeeringMessage::BackfillProgress {
                pgid: self.info.pgid,
                epoch,
                interval,
                last_backfill,
                last_update: self.info.last_update,
            };
            self.send(t, msg);
        }
        if end.is_max() {
            self.backfill_done();
        } else {
            self.start_backfill_round();
        }
    }

    /// Backfill is over; objects that became missing meanwhile (a copy
    /// that could not be read for a push) are recovered before the PG
    /// may go clean.
    pub(super) fn backfill_done(&mut self) {
        self.p.backfill = None;
        self.release(ReservationKind::LocalBackfill);
        self.release_remote(ReserveFor::Backfill);
        self.next_recovery_step();
    }
}
