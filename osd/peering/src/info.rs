//! What an OSD knows about its copy of a PG (`pg_info_t`) and the PG's
//! shared history (`pg_history_t`).

use kalmar_common::impl_versioned;
use kalmar_maps::{Epoch, PgId};
use serde::Serialize;

use crate::eversion::Eversion;
use crate::object::ObjectBound;

/// Epochs every member of a PG agrees on, carried in every info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PgHistory {
    pub epoch_created: Epoch,
    /// Raised once every acting member persisted an activation: writes of
    /// that interval may have been acknowledged.
    pub last_epoch_started: Epoch,
    pub last_interval_started: Epoch,
    /// Epoch the PG was last seen clean; past intervals before it are moot.
    pub last_epoch_clean: Epoch,
    pub last_interval_clean: Epoch,
    pub same_up_since: Epoch,
    pub same_interval_since: Epoch,
    pub same_primary_since: Epoch,
    pub last_scrub: Eversion,
    pub last_deep_scrub: Eversion,
    pub last_scrub_stamp_us: u64,
    pub last_deep_scrub_stamp_us: u64,
}
impl_versioned!(PgHistory, "pg_history", version = 1, compat = 1, {
    epoch_created, last_epoch_started, last_interval_started, last_epoch_clean,
    last_interval_clean, same_up_since, same_interval_since, same_primary_since,
    last_scrub, last_deep_scrub, last_scrub_stamp_us, last_deep_scrub_stamp_us,
});

impl PgHistory {
    /// Takes the newer of each epoch from another member's history
    /// (`pg_history_t::merge`). Returns whether anything changed.
    pub fn merge(&mut self, o: &PgHistory) -> bool {
        let before = *self;
        if self.epoch_created == 0 || (o.epoch_created != 0 && o.epoch_created < self.epoch_created)
        {
            self.epoch_created = o.epoch_created;
        }
        if o.last_epoch_started > self.last_epoch_started {
            self.last_epoch_started = o.last_epoch_started;
        }
        if o.last_interval_started > self.last_interval_started {
            self.last_interval_started = o.last_interval_started;
        }
        if o.last_epoch_clean > self.last_epoch_clean {
            self.last_epoch_clean = o.last_epoch_clean;
        }
        if o.last_interval_clean > self.last_interval_clean {
            self.last_interval_clean = o.last_interval_clean;
        }
        if o.last_scrub > self.last_scrub {
            self.last_scrub = o.last_scrub;
            self.last_scrub_stamp_us = o.last_scrub_stamp_us;
        }
        if o.last_deep_scrub > self.last_deep_scrub {
            self.last_deep_scrub = o.last_deep_scrub;
            self.last_deep_scrub_stamp_us = o.last_deep_scrub_stamp_us;
        }
        *self != before
    }
}

/// Object and byte counts the OSD maintains for its copy, and the errors
/// the last scrub left (Ceph's `num_scrub_errors`: the PG is
/// `inconsistent` while they are not zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PgObjectStats {
    pub num_objects: u64,
    pub num_bytes: u64,
    pub num_scrub_errors: u64,
    pub num_shallow_scrub_errors: u64,
    pub num_deep_scrub_errors: u64,
}
impl_versioned!(PgObjectStats, "pg_object_stats", version = 2, compat = 1, {
    num_objects, num_bytes,
}, since 2 { num_scrub_errors, num_shallow_scrub_errors, num_deep_scrub_errors });

/// One OSD's summary of its copy of a PG.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PgInfo {
    pub pgid: PgId,
    /// Newest log entry applied to the log.
    pub last_update: Eversion,
    /// Newest version such that every object the log names up to it is in
    /// the store (`last_update` when nothing is missing).
    pub last_complete: Eversion,
    pub log_tail: Eversion,
    /// Objects `<= last_backfill` are complete; `MAX` unless mid-backfill.
    pub last_backfill: ObjectBound,
    /// Epoch this copy last activated (its own, not the PG's).
    pub last_epoch_started: Epoch,
    pub last_interval_started: Epoch,
    pub last_user_version: u64,
    pub history: PgHistory,
    pub stats: PgObjectStats,
}
impl_versioned!(PgInfo, "pg_info", version = 1, compat = 1, {
    pgid, last_update, last_complete, log_tail, last_backfill,
    last_epoch_started, last_interval_started, last_user_version, history, stats,
});

impl PgInfo {
    /// A newly created, empty PG.
    pub fn new(pgid: PgId, created: Epoch) -> Self {
        PgInfo {
            pgid,
            last_backfill: ObjectBound::Max,
            history: PgHistory {
                epoch_created: created,
                same_up_since: created,
                same_interval_since: created,
                same_primary_since: created,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Mid-backfill: the copy lacks objects past `last_backfill`, so it can
    /// neither be the authoritative log nor serve reads.
    pub fn is_incomplete(&self) -> bool {
        !self.last_backfill.is_max()
    }

    /// The copy lacks objects its log names.
    pub fn has_missing(&self) -> bool {
        self.last_complete != self.last_update
    }

    /// Never written and never activated: holds nothing worth probing.
    pub fn is_empty(&self) -> bool {
        self.last_update.is_zero() && self.last_epoch_started == 0
    }
}

/// The fields of a `PgInfo` that every write changes (Ceph's
/// `pg_fast_info_t`). The OSD stores them with the write's log entry
/// instead of rewriting the whole info; `last_update` is the entry's
/// version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PgFastInfo {
    pub last_complete: Eversion,
    pub log_tail: Eversion,
    pub last_user_version: u64,
    pub stats: PgObjectStats,
}
impl_versioned!(PgFastInfo, "pg_fast_info", version = 1, compat = 1, {
    last_complete, log_tail, last_user_version, stats,
});

impl PgInfo {
    pub fn fast(&self) -> PgFastInfo {
        PgFastInfo {
            last_complete: self.last_complete,
            log_tail: self.log_tail,
            last_user_version: self.last_user_version,
            stats: self.stats,
        }
    }

    /// Takes the fast fields of a write newer than this info.
    pub fn apply_fast(&mut self, last_update: Eversion, f: &PgFastInfo) {
        self.last_update = last_update;
        self.last_complete = f.last_complete;
        self.log_tail = f.log_tail;
        self.last_user_version = f.last_user_version;
        self.stats = f.stats;
    }

    /// Whether a field outside the fast ones differs: then the whole info
    /// must be written. Destructured so a new field cannot be forgotten.
    pub fn differs_beyond_fast(&self, other: &PgInfo) -> bool {
        let PgInfo {
            pgid,
            last_update: _,
            last_complete: _,
            log_tail: _,
            last_backfill,
            last_epoch_started,
            last_interval_started,
            last_user_version: _,
            history,
            stats: _,
        } = self;
        *pgid != other.pgid
            || *last_backfill != other.last_backfill
            || *last_epoch_started != other.last_epoch_started
            || *last_interval_started != other.last_interval_started
            || *history != other.history
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_common::{Decode, Encode};

    #[test]
    fn history_merge_takes_newest() {
        let mut a = PgHistory {
            epoch_created: 5,
            last_epoch_started: 10,
            ..Default::default()
        };
        let b = PgHistory {
            epoch_created: 4,
            last_epoch_started: 8,
            last_epoch_clean: 9,
            ..Default::default()
        };
        assert!(a.merge(&b));
        assert_eq!(
            (a.epoch_created, a.last_epoch_started, a.last_epoch_clean),
            (4, 10, 9)
        );
        assert!(!a.merge(&b));
        let mut i = PgInfo::new(PgId::new(1, 2), 3);
        i.history = a;
        assert_eq!(PgInfo::from_bytes(&i.to_bytes()).expect("decodes"), i);
        assert!(!i.is_incomplete() && !i.has_missing() && i.is_empty());
    }

    #[test]
    fn fast_fields_split_from_the_rest() {
        let mut a = PgInfo::new(PgId::new(1, 2), 3);
        let mut b = a.clone();
        b.stats.num_objects = 9;
        b.last_user_version = 4;
        b.log_tail = Eversion::new(3, 1);
        b.last_complete = Eversion::new(3, 2);
        assert!(!a.differs_beyond_fast(&b), "only fast fields changed");
        a.apply_fast(Eversion::new(3, 2), &b.fast());
        b.last_update = Eversion::new(3, 2);
        assert_eq!(a, b);
        b.history.last_epoch_clean = 7;
        assert!(a.differs_beyond_fast(&b));
        let f = b.fast();
        assert_eq!(PgFastInfo::from_bytes(&f.to_bytes()).expect("decodes"), f);
    }
}
