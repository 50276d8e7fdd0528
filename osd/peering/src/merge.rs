//! Merging an authoritative log into a local one (`PGLog::merge_log`,
//! `_merge_divergent_entries`) and judging a replica's log against the
//! authoritative one (`proc_replica_log`).
//!
//! A version is assigned by exactly one primary, so two logs agree up to
//! the newest version both hold. Local entries past that point are
//! divergent: they were never acknowledged (an acknowledged write is on
//! every acting member, and the authoritative log descends from one of
//! them) and are rolled back: the object is removed if the divergent
//! entry created it, else marked missing at the version it had before.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::PeeringError;
use crate::eversion::Eversion;
use crate::info::PgInfo;
use crate::log::{PgLog, PgLogEntry};
use crate::missing::PgMissing;
use crate::object::{ObjectBound, ObjectName};

/// What a merge changed, for persistence and for the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Local entries rolled back, oldest first.
    pub divergent: Vec<PgLogEntry>,
    /// Objects to delete from the local store now (rolled-back creations
    /// and deletes the authoritative log records).
    pub remove_objects: BTreeSet<ObjectName>,
    /// Whether the log changed at all.
    pub changed: bool,
    /// Where the two logs agree: the local log keeps its entries up to
    /// here and takes the authoritative ones after it.
    pub agreed: Eversion,
    /// Older authoritative entries were added below the local tail.
    pub tail_extended: bool,
}

/// Checks that `local` can be brought up to date from `auth` by the log
/// alone: its head reaches the authoritative tail, and where the tail
/// falls inside the local log, the local log holds that very entry.
pub fn check_overlap(local: &PgLog, auth: &PgLog) -> Result<(), PeeringError> {
    let no = || PeeringError::NoOverlap {
        head: local.head(),
        auth_tail: auth.tail(),
        auth_head: auth.head(),
    };
    if local.head() < auth.tail() {
        return Err(no());
    }
    let at = auth.tail();
    if at > local.tail() && at <= local.head() && local.get(at).is_none() {
        return Err(no());
    }
    Ok(())
}

/// The newest local version the authoritative log also holds (or that is
/// older than its tail, hence shared history).
fn divergence_point(local: &PgLog, auth: &PgLog) -> Eversion {
    for e in local.entries().rev() {
        if e.version <= auth.head() && (e.version <= auth.tail() || auth.get(e.version).is_some()) {
            return e.version;
        }
    }
    local.tail()
}

/// Merges `auth` into `local`, rewinding divergent entries and updating
/// `missing` with every object whose newest version the store lacks.
/// Objects the store must drop now are returned in the outcome.
pub fn merge_log(
    local: &mut PgLog,
    missing: &mut PgMissing,
    auth: &PgLog,
) -> Result<MergeOutcome, PeeringError> {
    check_overlap(local, auth)?;
    let mut out = MergeOutcome::default();
    let lu = divergence_point(local, auth);
    out.agreed = lu;
    let divergent = local.rewind_to(lu);

    // Objects the authoritative log touches after the divergence point:
    // their final state comes from those entries.
    let auth_touched: BTreeSet<&str> = auth
        .entries_after(lu)
        .filter(|e| e.op.changes_object())
        .map(|e| e.oid.as_str())
        .collect();
    // Oldest divergent entry per object: its prior version is the state
    // to return to.
    let mut rewind_to: BTreeMap<&str, Eversion> = BTreeMap::new();
    for e in divergent.iter().filter(|e| e.op.changes_object()) {
        rewind_to.entry(e.oid.as_str()).or_insert(e.prior_version);
    }
    for (oid, target) in rewind_to {
        if auth_touched.contains(oid) {
            continue;
        }
        let held = missing.get(oid).map(|m| m.have);
        match held {
            // Created by a divergent entry: whatever the store holds goes
            // (a `have` of 0'0 means "no usable copy", not "absent").
            _ if target.is_zero() => {
                missing.rm(oid);
                out.remove_objects.insert(oid.to_string());
            }
            Some(have) if have == target => {
                missing.rm(oid);
            }
            Some(_) => {
                missing.rm(oid);
                missing.add(oid, target, Eversion::ZERO);
            }
            None => missing.add(oid, target, Eversion::ZERO),
        }
    }
    out.changed |= !divergent.is_empty();
    out.divergent = divergent;

    for e in auth.entries_after(lu) {
        if e.op.changes_object() {
            if e.op.is_delete() {
                missing.rm(&e.oid);
                out.remove_objects.insert(e.oid.clone());
            } else if out.remove_objects.contains(&e.oid) {
                missing.rm(&e.oid);
                missing.add(&e.oid, e.version, Eversion::ZERO);
            } else {
                // The store holds the state before this entry unless the
                // object was already missing (then `add` keeps its have).
                missing.add(&e.oid, e.version, e.prior_version);
            }
        }
        local.append(e.clone())?;
        out.changed = true;
    }
    if auth.tail() < local.tail() {
        let older: Vec<PgLogEntry> = auth
            .entries()
            .take_while(|e| e.version <= local.tail())
            .cloned()
            .collect();
        local.extend_tail(auth.tail(), older);
        out.changed = true;
        out.tail_extended = true;
    }
    Ok(out)
}

/// The newest version up to which the store holds every object the log
/// names: just below the oldest missing need, or the head.
pub fn last_complete(log: &PgLog, missing: &PgMissing) -> Eversion {
    match missing.oldest_need() {
        None => log.head(),
        Some(need) => log
            .entries()
            .rev()
            .map(|e| e.version)
            .find(|&v| v < need)
            .unwrap_or(log.tail()),
    }
}

/// A replica's state after judging its log against the authoritative one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    pub missing: PgMissing,
    pub divergent: Vec<PgLogEntry>,
    pub last_update: Eversion,
    pub last_complete: Eversion,
}

/// Computes what a replica lacks (`proc_replica_log`): its own missing set
/// plus everything the authoritative log changed since the point where
/// the two logs agree, with its divergent entries rolled back. Objects
/// past the replica's `last_backfill` are left to backfill.
pub fn proc_replica_log(
    auth: &PgLog,
    peer_info: &PgInfo,
    peer_log: &PgLog,
    peer_missing: &PgMissing,
) -> Result<ReplicaState, PeeringError> {
    let mut log = peer_log.clone();
    let mut missing = peer_missing.clone();
    let out = merge_log(&mut log, &mut missing, auth)?;
    filter_backfill(&mut missing, &peer_info.last_backfill);
    Ok(ReplicaState {
        last_complete: last_complete(&log, &missing),
        last_update: log.head(),
        missing,
        divergent: out.divergent,
    })
}

/// Drops missing entries a backfill will handle (objects past the bound).
pub fn filter_backfill(missing: &mut PgMissing, last_backfill: &ObjectBound) {
    if !last_backfill.is_max() {
        missing.items.retain(|oid, _| last_backfill.covers(oid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eversion::ReqId;
    use crate::log::LogOp;

    fn ev(e: u32, v: u64) -> Eversion {
        Eversion::new(e, v)
    }

    fn ent(op: LogOp, oid: &str, v: Eversion, prior: Eversion) -> PgLogEntry {
        PgLogEntry {
            op,
            oid: oid.into(),
            version: v,
            prior_version: prior,
            reqid: ReqId::new(1, 0, v.version),
            mtime_us: 0,
            return_code: 0,
            user_version: v.version,
        }
    }

    fn log(tail: Eversion, es: Vec<PgLogEntry>) -> PgLog {
        PgLog::from_entries(tail, es).expect("ordered")
    }

    #[test]
    fn divergent_creation_is_removed_and_modification_rewound() {
        use LogOp::*;
        let common = vec![
            ent(Modify, "a", ev(1, 1), Eversion::ZERO),
            ent(Modify, "b", ev(1, 2), Eversion::ZERO),
        ];
        let mut local_entries = common.clone();
        // divergent: modify b, create c, delete a
        local_entries.push(ent(Modify, "b", ev(2, 3), ev(1, 2)));
        local_entries.push(ent(Modify, "c", ev(2, 4), Eversion::ZERO));
        local_entries.push(ent(Delete, "a", ev(2, 5), ev(1, 1)));
        let mut auth_entries = common;
        auth_entries.push(ent(Modify, "d", ev(3, 3), Eversion::ZERO));
        let mut local = log(Eversion::ZERO, local_entries);
        let auth = log(Eversion::ZERO, auth_entries);
        let mut missing = PgMissing::new();
        let out = merge_log(&mut local, &mut missing, &auth).expect("merges");
        assert_eq!(out.divergent.len(), 3);
        assert_eq!(out.remove_objects, BTreeSet::from(["c".to_string()]));
        // b back to 1'2 and a (deleted divergently) back to 1'1; d is new
        assert_eq!(missing.get("b").map(|m| m.need), Some(ev(1, 2)));
        assert_eq!(missing.get("a").map(|m| m.need), Some(ev(1, 1)));
        assert_eq!(
            missing.get("d").map(|m| (m.need, m.have)),
            Some((ev(3, 3), Eversion::ZERO))
        );
        assert!(!missing.is_missing("c"));
        assert_eq!(local.head(), ev(3, 3));
        assert_eq!(local, auth);
        assert_eq!(last_complete(&local, &missing), Eversion::ZERO);
    }

    /// What each kind of merge writes: nothing for an equal log, the new
    /// entries for one that was behind, the whole log after a rollback.
    #[test]
    fn a_merge_writes_only_what_it_changed() {
        use crate::machine::LogWrite;
        use LogOp::*;
        let a1 = ent(Modify, "a", ev(1, 1), Eversion::ZERO);
        let a2 = ent(Modify, "a", ev(1, 2), ev(1, 1));
        let b3 = ent(Modify, "b", ev(1, 3), Eversion::ZERO);
        let auth = log(Eversion::ZERO, vec![a1.clone(), a2.clone(), b3.clone()]);

        let mut same = auth.clone();
        let out = merge_log(&mut same, &mut PgMissing::new(), &auth).expect("merges");
        assert_eq!(LogWrite::after_merge(&out, &same), None);

        let mut behind = log(Eversion::ZERO, vec![a1.clone()]);
        let out = merge_log(&mut behind, &mut PgMissing::new(), &auth).expect("merges");
        assert_eq!(
            LogWrite::after_merge(&out, &behind),
            Some(LogWrite::Delta {
                append: vec![a2.clone(), b3.clone()],
                remove: Default::default(),
                dups_add: Default::default(),
                dups_remove: Default::default(),
            }),
            "a log that was behind appends"
        );

        let mut forked = log(
            Eversion::ZERO,
            vec![a1.clone(), ent(Modify, "c", ev(2, 2), Eversion::ZERO)],
        );
        let out = merge_log(&mut forked, &mut PgMissing::new(), &auth).expect("merges");
        assert_eq!(
            LogWrite::after_merge(&out, &forked),
            Some(LogWrite::Rewrite(auth.clone()))
        );

        let mut short = log(ev(1, 1), vec![a2, b3]);
        let out = merge_log(&mut short, &mut PgMissing::new(), &auth).expect("merges");
        assert_eq!(
            LogWrite::after_merge(&out, &short),
            Some(LogWrite::Rewrite(auth))
        );
    }

    #[test]
    fn replica_behind_gets_new_entries_as_missing() {
        use LogOp::*;
        let auth = log(
            Eversion::ZERO,
            vec![
                ent(Modify, "a", ev(1, 1), Eversion::ZERO),
                ent(Modify, "a", ev(1, 2), ev(1, 1)),
                ent(Delete, "b", ev(1, 3), Eversion::ZERO),
                ent(Modify, "c", ev(1, 4), Eversion::ZERO),
            ],
        );
        let peer_log = log(
            Eversion::ZERO,
            vec![ent(Modify, "a", ev(1, 1), Eversion::ZERO)],
        );
        let pi = PgInfo {
            last_backfill: ObjectBound::Max,
            ..Default::default()
        };
        let r = proc_replica_log(&auth, &pi, &peer_log, &PgMissing::new()).expect("overlaps");
        assert!(r.divergent.is_empty());
        assert_eq!(
            r.missing.get("a").map(|m| (m.need, m.have)),
            Some((ev(1, 2), ev(1, 1)))
        );
        assert!(!r.missing.is_missing("b"));
        assert_eq!(r.last_update, ev(1, 4));
        assert_eq!(r.last_complete, ev(1, 1));
    }

    #[test]
    fn no_overlap_and_divergence_below_tail() {
        use LogOp::*;
        let auth = log(ev(5, 10), vec![ent(Modify, "a", ev(5, 11), ev(1, 1))]);
        let behind = log(
            Eversion::ZERO,
            vec![ent(Modify, "a", ev(1, 1), Eversion::ZERO)],
        );
        assert!(matches!(
            check_overlap(&behind, &auth),
            Err(PeeringError::NoOverlap { .. })
        ));
        // reaches past the tail but lacks the tail entry: diverged before it
        let forked = log(
            Eversion::ZERO,
            vec![
                ent(Modify, "a", ev(4, 9), Eversion::ZERO),
                ent(Modify, "x", ev(5, 12), Eversion::ZERO),
            ],
        );
        assert!(check_overlap(&forked, &auth).is_err());
        let ok = log(ev(5, 10), vec![]);
        assert!(check_overlap(&ok, &auth).is_ok());
    }

    #[test]
    fn missing_object_rewound_to_what_store_has() {
        use LogOp::*;
        let mut local = log(
            Eversion::ZERO,
            vec![
                ent(Modify, "a", ev(1, 1), Eversion::ZERO),
                ent(Modify, "a", ev(2, 2), ev(1, 1)),
            ],
        );
        let mut missing = PgMissing::new();
        // the store never got 2'2: it still holds 1'1
        missing.add("a", ev(2, 2), ev(1, 1));
        let auth = log(
            Eversion::ZERO,
            vec![ent(Modify, "a", ev(1, 1), Eversion::ZERO)],
        );
        merge_log(&mut local, &mut missing, &auth).expect("merges");
        assert!(missing.is_empty());
        assert_eq!(local.head(), ev(1, 1));
    }

    #[test]
    fn rolled_back_creation_is_removed_even_if_already_missing() {
        use LogOp::*;
        let mut local = log(
            Eversion::ZERO,
            vec![
                ent(Modify, "a", ev(1, 1), Eversion::ZERO),
                ent(Modify, "b", ev(2, 2), Eversion::ZERO),
            ],
        );
        // b was rolled back once already (store holds a stale copy)
        let mut missing = PgMissing::new();
        missing.add("b", ev(2, 2), Eversion::ZERO);
        let auth = log(
            Eversion::ZERO,
            vec![ent(Modify, "a", ev(1, 1), Eversion::ZERO)],
        );
        let out = merge_log(&mut local, &mut missing, &auth).expect("merges");
        assert!(out.remove_objects.contains("b"));
        assert!(missing.is_empty());
    }

    #[test]
    fn backfill_filter() {
        let mut m = PgMissing::new();
        m.add("a", ev(1, 1), Eversion::ZERO);
        m.add("m", ev(1, 2), Eversion::ZERO);
        filter_backfill(&mut m, &ObjectBound::Object("b".into()));
        assert!(m.is_missing("a") && !m.is_missing("m"));
    }
}
