//! Backfill planning: compare the primary's and a target's object
//! listings over one scanned range and decide what to push and remove.
//!
//! Both sides are listed in object order (see [`crate::object`]) from the
//! same start bound, up to `osd_backfill_scan_max` objects each. The range
//! both listings cover is `(begin, min(end_local, end_peer)]`; after its
//! pushes and removes complete, the target's `last_backfill` moves to that
//! end, which makes backfill resumable from `last_backfill` after a restart.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::eversion::Eversion;
use crate::log::PgLogEntry;
use crate::object::{ObjectBound, ObjectName};

/// One side's listing of a range: objects with their versions, after
/// `begin`, up to and including `end` (`Max` when the scan reached the end).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ScanResult {
    pub begin: ObjectBound,
    pub end: ObjectBound,
    pub objects: BTreeMap<ObjectName, Eversion>,
}

impl ScanResult {
    /// Applies log entries newer than the scan (writes that landed while
    /// the scan was under way) to the primary's listing (`update_range`).
    pub fn apply_log(&mut self, entries: impl Iterator<Item = PgLogEntry>) {
        for e in entries {
            if !e.op.changes_object() || !in_range(&self.begin, &self.end, &e.oid) {
                continue;
            }
            if e.op.is_delete() {
                self.objects.remove(&e.oid);
            } else {
                self.objects.insert(e.oid, e.version);
            }
        }
    }
}

fn in_range(begin: &ObjectBound, end: &ObjectBound, oid: &str) -> bool {
    !begin.covers(oid) && end.covers(oid)
}

/// What one round does for one target.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct BackfillStep {
    /// Objects the target lacks or holds at another version.
    pub push: Vec<(ObjectName, Eversion)>,
    /// Objects the target holds that the primary does not.
    pub remove: Vec<ObjectName>,
    /// `last_backfill` once the pushes and removes are done.
    pub new_last_backfill: ObjectBound,
}

/// The end of the range both listings cover.
pub fn common_end<'a>(scans: impl Iterator<Item = &'a ScanResult>) -> ObjectBound {
    scans
        .map(|s| s.end.clone())
        .min()
        .unwrap_or(ObjectBound::Max)
}

/// Plans one round for one target over `(target_last_backfill, end]`.
pub fn plan_backfill(
    local: &ScanResult,
    peer: &ScanResult,
    target_last_backfill: &ObjectBound,
    end: &ObjectBound,
) -> BackfillStep {
    let mut step = BackfillStep {
        new_last_backfill: end.clone().max(target_last_backfill.clone()),
        ..Default::default()
    };
    let within = |oid: &str| in_range(target_last_backfill, end, oid);
    for (oid, v) in local.objects.iter().filter(|(o, _)| within(o)) {
        if peer.objects.get(oid) != Some(v) {
            step.push.push((oid.clone(), *v));
        }
    }
    for oid in peer.objects.keys().filter(|o| within(o)) {
        if !local.objects.contains_key(oid) {
            step.remove.push(oid.clone());
        }
    }
    step
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eversion::ReqId;
    use crate::log::LogOp;
    use proptest::prelude::*;

    fn scan(begin: ObjectBound, end: ObjectBound, objs: &[(&str, u64)]) -> ScanResult {
        ScanResult {
            begin,
            end,
            objects: objs
                .iter()
                .map(|&(o, v)| (o.to_string(), Eversion::new(1, v)))
                .collect(),
        }
    }

    #[test]
    fn push_changed_remove_extra() {
        let local = scan(
            ObjectBound::Min,
            ObjectBound::Max,
            &[("a", 1), ("b", 2), ("d", 4)],
        );
        let peer = scan(
            ObjectBound::Min,
            ObjectBound::Object("c".into()),
            &[("a", 1), ("b", 1), ("c", 3)],
        );
        let end = common_end([&local, &peer].into_iter());
        assert_eq!(end, ObjectBound::Object("c".into()));
        let step = plan_backfill(&local, &peer, &ObjectBound::Min, &end);
        assert_eq!(step.push, vec![("b".to_string(), Eversion::new(1, 2))]);
        assert_eq!(step.remove, vec!["c".to_string()]);
        assert_eq!(step.new_last_backfill, end);
        // resume past "a": only b.. is considered
        let step = plan_backfill(&local, &peer, &ObjectBound::Object("b".into()), &end);
        assert!(step.push.is_empty());
    }

    #[test]
    fn writes_during_scan_update_listing() {
        let mut local = scan(
            ObjectBound::Min,
            ObjectBound::Object("m".into()),
            &[("a", 1), ("b", 2)],
        );
        let e = |op, oid: &str, v| PgLogEntry {
            op,
            oid: oid.into(),
            version: Eversion::new(2, v),
            prior_version: Eversion::ZERO,
            reqid: ReqId::default(),
            mtime_us: 0,
            return_code: 0,
            user_version: v,
        };
        local.apply_log(
            vec![
                e(LogOp::Modify, "c", 9),
                e(LogOp::Delete, "a", 10),
                e(LogOp::Modify, "z", 11),
            ]
            .into_iter(),
        );
        assert_eq!(local.objects.keys().collect::<Vec<_>>(), vec!["b", "c"]);
    }

    proptest! {
        /// Applying a round's plan makes the target equal the primary over
        /// the round's range, and leaves everything else untouched.
        #[test]
        fn round_converges(
            local in proptest::collection::btree_map("[a-h]{1,2}", 1u64..4, 0..20),
            peer in proptest::collection::btree_map("[a-h]{1,2}", 1u64..4, 0..20),
            lb in proptest::option::of("[a-h]{1,2}"),
            cut in proptest::option::of("[a-h]{1,2}"),
        ) {
            let to_ev = |m: &BTreeMap<String, u64>| m.iter().map(|(k, v)| (k.clone(), Eversion::new(1, *v))).collect::<BTreeMap<_, _>>();
            let lb = lb.map_or(ObjectBound::Min, ObjectBound::Object);
            let end = cut.map_or(ObjectBound::Max, ObjectBound::Object);
            let l = ScanResult { begin: lb.clone(), end: ObjectBound::Max, objects: to_ev(&local) };
            let p = ScanResult { begin: lb.clone(), end: end.clone(), objects: to_ev(&peer) };
            let step = plan_backfill(&l, &p, &lb, &end);
            let mut target = to_ev(&peer);
            for (o, v) in &step.push { target.insert(o.clone(), *v); }
            for o in &step.remove { target.remove(o); }
            for (o, v) in &l.objects {
                if !lb.covers(o) && end.covers(o) { prop_assert_eq!(target.get(o), Some(v)); }
            }
            for (o, v) in &target {
                if !lb.covers(o) && end.covers(o) { prop_assert_eq!(l.objects.get(o), Some(v)); }
                else { prop_assert_eq!(p.objects.get(o), Some(v)); }
            }
        }
    }
}
