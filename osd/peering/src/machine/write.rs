//! The client write path's questions to the PG: may this op run now, which
//! version does it get, who must apply it, and what to persist with it.

use kalmar_maps::OsdId;

use super::action::{LogWrite, PgWrite};
use super::{Active, Pg, State};
use crate::error::PeeringError;
use crate::eversion::{Eversion, ReqId};
use crate::flags::PgStateFlags;
use crate::log::{CompletedRequest, LogOp, PgLogEntry};
use crate::object::ObjectName;

/// Whether a client op on an object may run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteReadiness {
    Ready,
    /// Not an active primary (peering, peered below min_size, replica):
    /// queue the op until the PG is active or the map changes.
    NotActive,
    /// The object is missing on the primary or on a member: send
    /// `Event::ClientWaitsFor` and retry once it is recovered.
    NeedsRecovery(ObjectName),
    /// A recovery or backfill push of this object is under way: retry
    /// after its completion.
    InFlight(ObjectName),
}

/// One OSD a replicated write goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationTarget {
    pub osd: OsdId,
    /// Apply the object change, not just the log entry (false for a
    /// backfill target that has not reached this object yet).
    pub with_data: bool,
}

/// The members a write goes to besides the primary: inline up to a
/// size-5 pool's four (no allocation per write).
pub type ReplicationTargets = smallvec::SmallVec<[ReplicationTarget; 4]>;

impl Pg {
    /// Whether client I/O is served (active, every member activated, at
    /// least min_size acting).
    pub fn is_active(&self) -> bool {
        matches!(self.state, State::Active(a) if a != Active::Activating)
            && self.flags.has(PgStateFlags::ACTIVE)
    }

    /// Whether a read or write of `oid` may run now on this primary.
    pub fn readiness(&self, oid: &str) -> WriteReadiness {
        if !self.is_primary() || !self.is_active() {
            return WriteReadiness::NotActive;
        }
        let missing_somewhere = self.missing.is_missing(oid)
            || self.p.peer_missing.iter().any(|(o, m)| {
                m.is_missing(oid)
                    && self
                        .p
                        .peer_last_backfill
                        .get(o)
                        .is_none_or(|lb| lb.covers(oid))
            });
        if missing_somewhere {
            return WriteReadiness::NeedsRecovery(oid.to_string());
        }
        if self.object_in_flight(oid) {
            return WriteReadiness::InFlight(oid.to_string());
        }
        WriteReadiness::Ready
    }

    /// Builds the log entry of a new client write (version = current epoch,
    /// next counter). `prior_version` is the object's current version, `0'0`
    /// if it does not exist (also after a delete).
    #[allow(clippy::too_many_arguments)]
    pub fn new_log_entry(
        &self,
        op: LogOp,
        oid: &str,
        prior_version: Eversion,
        reqid: ReqId,
        mtime_us: u64,
        return_code: i32,
    ) -> PgLogEntry {
        let head = self.info.last_update;
        let epoch = self.epoch().max(head.epoch);
        PgLogEntry {
            op,
            oid: oid.to_string(),
            version: Eversion::new(epoch, head.version + 1),
            prior_version,
            reqid,
            mtime_us,
            return_code,
            user_version: self.info.last_user_version + 1,
        }
    }

    /// The members a write of `oid` goes to (the primary excluded).
    pub fn replication_targets(&self, oid: &str) -> ReplicationTargets {
        let Some(choice) = self.p.choice.as_ref() else {
            return ReplicationTargets::new();
        };
        choice
            .acting_recovery_backfill
            .iter()
            .copied()
            .filter(|&o| o != self.whoami)
            .map(|o| ReplicationTarget {
                osd: o,
                with_data: self
                    .p
                    .last_backfill_started
                    .get(&o)
                    .is_none_or(|b| b.covers(oid)),
            })
            .collect()
    }

    /// A resent request that already completed.
    pub fn find_reqid(&self, reqid: &ReqId) -> Option<CompletedRequest> {
        self.log.find_reqid(reqid)
    }

    /// Where the log may be trimmed to (primary): keeps
    /// `osd_max_pg_log_entries`, never past what every member committed,
    /// nor past an entry whose object some member still misses
    /// (`min_last_complete_ondisk`): a copy holding that object must stay
    /// log-recoverable.
    pub fn trim_to(&self) -> Option<Eversion> {
        let backfill = self.backfill_targets();
        let oldest_missing = std::iter::once(&self.missing)
            .chain(
                self.p
                    .peer_missing
                    .iter()
                    .filter(|(o, _)| !backfill.contains(o))
                    .map(|(_, m)| m),
            )
            .filter_map(|m| m.oldest_need())
            .min();
        let mut bound = self.p.committed_to;
        if let Some(need) = oldest_missing {
            bound = bound.min(Eversion::new(need.epoch, need.version.saturating_sub(1)));
        }
        self.log
            .trim_target(self.settings.osd_max_pg_log_entries, bound)
    }

    /// Primary: every member committed the write of `version`.
    pub fn on_write_committed(&mut self, version: Eversion) {
        self.p.committed_to = self.p.committed_to.max(version);
    }

    /// Appends entries of a write (primary or replica) and trims to
    /// `trim_to`; returns what to persist in the same transaction as the
    /// object changes.
    pub fn append_log(
        &mut self,
        entries: Vec<PgLogEntry>,
        trim_to: Option<Eversion>,
    ) -> Result<PgWrite, PeeringError> {
        let mut appended = Vec::with_capacity(entries.len());
        for e in entries {
            if self.missing.is_missing(&e.oid) {
                self.missing.add_next_event(&e);
            }
            self.info.last_user_version = self.info.last_user_version.max(e.user_version);
            self.log.append(e.clone())?;
            appended.push(e);
        }
        let was_complete = self.info.last_complete == self.info.last_update;
        self.info.last_update = self.log.head();
        if was_complete && self.missing.is_empty() {
            self.info.last_complete = self.info.last_update;
        }
        let trim = match trim_to {
            Some(to) if to > self.log.tail() => self.log.trim(
                to.min(self.log.head()),
                self.settings.osd_pg_log_dups_tracked,
            )?,
            _ => Default::default(),
        };
        self.info.log_tail = self.log.tail();
        Ok(PgWrite {
            info: Some(self.info.clone()),
            log: Some(LogWrite::Delta {
                append: appended,
                remove: trim.trimmed,
                dups_add: trim.dups_added,
                dups_remove: trim.dups_removed,
            }),
            ..Default::default()
        })
    }
}
