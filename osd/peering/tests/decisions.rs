//! Property tests of the pure peering decisions over random histories.

use std::collections::{BTreeMap, BTreeSet};

use kalmar_maps::{OsdId, PgId};
use kalmar_peering::{
    build_prior, check_new_interval, find_best_info, merge_log, ClusterView, Eversion,
    IntervalChange, LogOp, OsdView, PastIntervals, PgInfo, PgLog, PgLogEntry, PgMapping, PgMissing,
    ReqId,
};
use proptest::prelude::*;

fn entry(op: LogOp, oid: &str, v: Eversion, prior: Eversion) -> PgLogEntry {
    PgLogEntry {
        op,
        oid: oid.to_string(),
        version: v,
        prior_version: prior,
        reqid: ReqId::new(1, 0, v.version),
        mtime_us: 0,
        return_code: 0,
        user_version: v.version,
    }
}

/// Object versions a store holds after applying entries in order.
type Store = BTreeMap<String, Eversion>;

/// Appends entries for `ops` (object index, delete?) to a log and store.
fn write(log: &mut PgLog, store: &mut Store, epoch: u32, ops: &[(u8, bool)]) {
    for &(o, delete) in ops {
        let oid = format!("o{o}");
        let v = Eversion::new(epoch, log.head().version + 1);
        let prior = store.get(&oid).copied().unwrap_or(Eversion::ZERO);
        if delete && prior.is_zero() {
            continue;
        }
        let op = if delete { LogOp::Delete } else { LogOp::Modify };
        log.append(entry(op, &oid, v, prior)).expect("ordered");
        if delete {
            store.remove(&oid);
        } else {
            store.insert(oid, v);
        }
    }
}

proptest! {
    /// After merging, every object is either at the authoritative version
    /// in the local store, or missing with exactly that version needed;
    /// objects the authority lacks are gone.
    #[test]
    fn merge_log_reaches_the_authoritative_state(
        common in proptest::collection::vec((0u8..6, proptest::bool::weighted(0.15)), 0..12),
        local_tail in proptest::collection::vec((0u8..6, proptest::bool::weighted(0.15)), 0..8),
        auth_tail in proptest::collection::vec((0u8..6, proptest::bool::weighted(0.15)), 0..8),
        preexisting_missing in proptest::collection::btree_set(0u8..6, 0..3),
    ) {
        let mut base = PgLog::new(Eversion::ZERO);
        let mut base_store = Store::new();
        write(&mut base, &mut base_store, 2, &common);
        let (mut local, mut local_store) = (base.clone(), base_store.clone());
        let (mut auth, mut auth_store) = (base, base_store);
        // The local branch is older (epoch 3), the authoritative newer (4).
        write(&mut local, &mut local_store, 3, &local_tail);
        write(&mut auth, &mut auth_store, 4, &auth_tail);
        // Some objects the local store never received (earlier recovery).
        let mut missing = PgMissing::new();
        for o in preexisting_missing {
            let oid = format!("o{o}");
            if let Some(v) = local_store.remove(&oid) {
                missing.add(&oid, v, Eversion::ZERO);
            }
        }
        let out = merge_log(&mut local, &mut missing, &auth).expect("logs overlap");
        for o in &out.remove_objects {
            local_store.remove(o);
        }
        prop_assert_eq!(local.head(), auth.head());
        for i in 0..6u8 {
            let oid = format!("o{i}");
            let want = auth_store.get(&oid);
            match missing.get(&oid) {
                Some(m) => prop_assert_eq!(Some(&m.need), want, "{} needs the authoritative version", oid),
                None => prop_assert_eq!(local_store.get(&oid), want, "{} matches the authority", oid),
            }
        }
    }

    /// Random histories of intervals: every time a primary peers with the
    /// rules (prior set, best info), the log it adopts contains every
    /// write acknowledged before (acknowledged = on every acting member).
    #[test]
    fn chosen_log_never_drops_an_acknowledged_entry(
        steps in proptest::collection::vec(
            (proptest::collection::btree_set(0i32..4, 1..4), proptest::collection::btree_set(0i32..4, 0..4), 0usize..4, 0u8..3),
            1..25,
        ),
    ) {
        let n = 4usize;
        let pgid = PgId::new(1, 0);
        let mut logs: Vec<PgLog> = vec![PgLog::new(Eversion::ZERO); n];
        let mut infos: Vec<PgInfo> = (0..n).map(|_| PgInfo::new(pgid, 1)).collect();
        let mut past = PastIntervals::new();
        let mut up_thru = vec![0u32; n];
        let mut acked: BTreeSet<Eversion> = BTreeSet::new();
        let mut last: Option<(PgMapping, ClusterView)> = None;
        let mut same_interval_since = 1;
        let mut epoch = 1;
        for (acting_set, up_osds, partial, writes) in steps {
            epoch += 1;
            let up: BTreeSet<OsdId> = up_osds.union(&acting_set).copied().collect();
            let acting: Vec<OsdId> = acting_set.iter().copied().collect();
            let view = ClusterView {
                epoch,
                osds: (0..n as OsdId)
                    .map(|o| OsdView { exists: true, up: up.contains(&o), up_from: 1, up_thru: up_thru[o as usize], ..Default::default() })
                    .collect(),
                flags: 0,
            };
            let mapping = PgMapping {
                epoch,
                pool_exists: true,
                pool_size: 3,
                pool_min_size: 1,
                pg_num: 1,
                up: acting.clone(),
                up_primary: acting[0],
                acting: acting.clone(),
                acting_primary: acting[0],
            };
            if let Some((old, old_view)) = &last {
                let lec = infos.iter().map(|i| i.history.last_epoch_clean).max().unwrap_or(0);
                if let Some(iv) = check_new_interval(IntervalChange {
                    old,
                    new: &mapping,
                    last_map: old_view,
                    same_interval_since,
                    last_epoch_clean: lec,
                }) {
                    past.add(iv);
                    same_interval_since = epoch;
                }
            }
            last = Some((mapping.clone(), view.clone()));
            let primary = acting[0];
            let history = infos.iter().fold(infos[0].history, |mut h, i| { h.merge(&i.history); h });
            let prior = build_prior(&mapping, &view, &past, &history);
            if prior.pg_down {
                continue;
            }
            let probed: BTreeMap<OsdId, PgInfo> = prior.probe.iter().map(|&o| (o, infos[o as usize].clone())).collect();
            let Some(best) = find_best_info(&probed, primary, false) else { continue };
            let auth = logs[best.osd as usize].clone();
            for a in &acked {
                prop_assert!(auth.get(*a).is_some() || *a <= auth.tail(),
                    "epoch {}: chose osd.{}'s log ({}, {}] without acknowledged {}", epoch, best.osd, auth.tail(), auth.head(), a);
            }
            // Activate every acting member on the authoritative log (the
            // primary gets its up_thru first).
            up_thru[primary as usize] = epoch;
            for &o in &acting {
                let mut m = PgMissing::new();
                if merge_log(&mut logs[o as usize], &mut m, &auth).is_err() {
                    logs[o as usize] = auth.clone();
                }
                let i = &mut infos[o as usize];
                i.last_update = logs[o as usize].head();
                i.last_complete = i.last_update;
                i.log_tail = logs[o as usize].tail();
                i.last_epoch_started = epoch;
                i.history.last_epoch_started = epoch;
                i.history.merge(&history);
            }
            if let Some((old, _)) = last.as_mut() {
                // up_thru lands in this epoch's map: the interval may go rw
                let _ = old;
            }
            last = Some((mapping.clone(), ClusterView {
                osds: view.osds.iter().enumerate().map(|(o, v)| OsdView { up_thru: up_thru[o], ..*v }).collect(),
                ..view
            }));
            // Writes: each goes to the primary and to the first `partial`
            // replicas; acknowledged only if every acting member got it.
            for _ in 0..writes {
                let v = Eversion::new(epoch, logs[primary as usize].head().version + 1);
                let e = entry(LogOp::Modify, "x", v, Eversion::ZERO);
                let receivers: Vec<OsdId> = std::iter::once(primary)
                    .chain(acting.iter().copied().filter(|&o| o != primary).take(partial))
                    .collect();
                for &o in &receivers {
                    logs[o as usize].append(e.clone()).expect("newer");
                    infos[o as usize].last_update = v;
                    infos[o as usize].last_complete = v;
                }
                if receivers.len() == acting.len() {
                    acked.insert(v);
                }
            }
        }
    }
}
