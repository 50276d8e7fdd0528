//! Pool quotas enforced through the OSDMap (Ceph's
//! `OSDMonitor::update_pools_status`): a pool whose reported usage reaches
//! `quota_max_objects` or `quota_max_bytes` gets `full_quota` and `full`
//! in a new epoch, and loses both once it is under again (objects
//! removed, quota raised or removed). The OSDs refuse writes that grow a
//! `full_quota` pool with EDQUOT.
//!
//! Usage comes from the PG stats the OSDs report, so it lags the writes
//! by up to a report interval: a pool may briefly hold more than its
//! quota, as in Ceph.
//!
//! Pure: takes the map and the usage, changes pool flags.

use std::collections::BTreeMap;

use kalmar_maps::pool::{
    PgPool, POOL_FLAG_BACKFILLFULL, POOL_FLAG_FULL, POOL_FLAG_FULL_QUOTA, POOL_FLAG_NEARFULL,
};
use kalmar_maps::{Epoch, OsdMap, PoolId};

/// A pool's reported `(objects, bytes)`.
pub type PoolUsage = BTreeMap<PoolId, (u64, u64)>;

/// What the quota asks of a pool's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaChange {
    /// Reached its quota: set `full_quota` and `full`. The texts say which
    /// limit was reached (Ceph's cluster log wording).
    Full(Vec<String>),
    /// Flagged but under its quota now: clear `full_quota` and `full`.
    Clear,
}

/// Whether `objects` / `bytes` reach the pool's quota (0: no quota).
pub fn at_quota(pool: &PgPool, objects: u64, bytes: u64) -> bool {
    (pool.quota_max_objects > 0 && objects >= pool.quota_max_objects)
        || (pool.quota_max_bytes > 0 && bytes >= pool.quota_max_bytes)
}

/// The change `usage` calls for on `pool`, if any. A pool without
/// reported usage keeps its flags (nothing is known about it yet).
pub fn decide(pool: &PgPool, usage: Option<(u64, u64)>) -> Option<QuotaChange> {
    let (objects, bytes) = usage?;
    let full = at_quota(pool, objects, bytes);
    let flagged = pool.has_flag(POOL_FLAG_FULL_QUOTA);
    match (flagged, full) {
        (true, false) => Some(QuotaChange::Clear),
        (false, true) => {
            let mut why = Vec::new();
            if pool.quota_max_bytes > 0 && bytes >= pool.quota_max_bytes {
                why.push(format!(
                    "pool '{}' is full (reached quota's max_bytes: {})",
                    pool.name, pool.quota_max_bytes
                ));
            }
            if pool.quota_max_objects > 0 && objects >= pool.quota_max_objects {
                why.push(format!(
                    "pool '{}' is full (reached quota's max_objects: {})",
                    pool.name, pool.quota_max_objects
                ));
            }
            Some(QuotaChange::Full(why))
        }
        _ => None,
    }
}

/// Applies every pool's quota change to `map` (the map of epoch `epoch`);
/// returns how many pools changed.
pub fn apply(map: &mut OsdMap, usage: &PoolUsage, epoch: Epoch) -> usize {
    let mut changed = 0;
    for pool in map.pools.values_mut() {
        let Some(change) = decide(pool, usage.get(&pool.id).copied()) else {
            continue;
        };
        match change {
            QuotaChange::Full(why) => {
                for w in why {
                    tracing::warn!("{w}");
                }
                // FULL takes precedence over the nearer levels.
                pool.flags |= POOL_FLAG_FULL_QUOTA | POOL_FLAG_FULL;
                pool.flags &= !(POOL_FLAG_NEARFULL | POOL_FLAG_BACKFILLFULL);
            }
            QuotaChange::Clear => {
                tracing::info!(
                    "pool '{}' no longer out of quota; removing full_quota flag",
                    pool.name
                );
                pool.flags &= !(POOL_FLAG_FULL_QUOTA | POOL_FLAG_FULL);
            }
        }
        pool.last_change = epoch;
        changed += 1;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(max_objects: u64, max_bytes: u64) -> PgPool {
        let mut p = PgPool::replicated(1, "data", 3, 2, 8, 0);
        p.quota_max_objects = max_objects;
        p.quota_max_bytes = max_bytes;
        p
    }

    fn flagged(mut p: PgPool) -> PgPool {
        p.flags |= POOL_FLAG_FULL_QUOTA | POOL_FLAG_FULL;
        p
    }

    fn is_full(c: Option<QuotaChange>) -> bool {
        matches!(c, Some(QuotaChange::Full(_)))
    }

    #[test]
    fn objects_under_at_over() {
        let p = pool(3, 0);
        assert_eq!(decide(&p, Some((2, 1 << 40))), None, "under; no byte quota");
        assert!(is_full(decide(&p, Some((3, 0)))), "at the quota is full");
        assert!(is_full(decide(&p, Some((4, 0)))), "over");
        // Already flagged and still full: nothing to do.
        assert_eq!(decide(&flagged(p.clone()), Some((3, 0))), None);
        assert_eq!(
            decide(&flagged(p), Some((2, 0))),
            Some(QuotaChange::Clear),
            "under again"
        );
    }

    #[test]
    fn bytes_under_at_over() {
        let p = pool(0, 4096);
        assert_eq!(decide(&p, Some((1000, 4095))), None);
        match decide(&p, Some((1, 4096))) {
            Some(QuotaChange::Full(why)) => {
                assert_eq!(why.len(), 1);
                assert!(why[0].contains("max_bytes: 4096"), "{why:?}");
            }
            other => panic!("expected Full, got {other:?}"),
        }
        assert!(is_full(decide(&p, Some((0, 1 << 20)))));
        assert_eq!(
            decide(&flagged(p), Some((1, 100))),
            Some(QuotaChange::Clear)
        );
    }

    #[test]
    fn both_limits_named() {
        match decide(&pool(2, 10), Some((2, 10))) {
            Some(QuotaChange::Full(why)) => assert_eq!(why.len(), 2, "{why:?}"),
            other => panic!("expected Full, got {other:?}"),
        }
    }

    #[test]
    fn zero_quota_is_none_and_clears() {
        let p = pool(0, 0);
        assert_eq!(decide(&p, Some((u64::MAX, u64::MAX))), None);
        // Quota removed while flagged: cleared.
        assert_eq!(
            decide(&flagged(p), Some((u64::MAX, u64::MAX))),
            Some(QuotaChange::Clear)
        );
    }

    #[test]
    fn raised_quota_clears() {
        let mut p = flagged(pool(3, 0));
        assert_eq!(decide(&p, Some((3, 0))), None);
        p.quota_max_objects = 10;
        assert_eq!(decide(&p, Some((3, 0))), Some(QuotaChange::Clear));
    }

    #[test]
    fn no_usage_keeps_flags() {
        assert_eq!(decide(&pool(1, 0), None), None);
        assert_eq!(decide(&flagged(pool(0, 0)), None), None);
    }

    #[test]
    fn apply_sets_and_clears_flags_and_last_change() {
        let mut m = OsdMap::new(uuid::Uuid::nil(), 0);
        let mut a = pool(3, 0);
        a.flags |= POOL_FLAG_NEARFULL;
        let mut b = flagged(pool(0, 0));
        b.id = 2;
        b.name = "b".into();
        let c = PgPool {
            id: 3,
            name: "c".into(),
            ..pool(5, 0)
        };
        m.pools.insert(1, a);
        m.pools.insert(2, b);
        m.pools.insert(3, c.clone());
        let usage: PoolUsage = [(1, (3, 0)), (2, (7, 7)), (3, (1, 0))].into();
        assert_eq!(apply(&mut m, &usage, 9), 2);
        let a = &m.pools[&1];
        assert!(a.has_flag(POOL_FLAG_FULL_QUOTA) && a.has_flag(POOL_FLAG_FULL));
        assert!(!a.has_flag(POOL_FLAG_NEARFULL));
        assert_eq!(a.last_change, 9);
        assert!(a.flag_names().contains(&"full_quota"));
        let b = &m.pools[&2];
        assert!(!b.has_flag(POOL_FLAG_FULL_QUOTA) && !b.has_flag(POOL_FLAG_FULL));
        assert_eq!(b.last_change, 9);
        assert_eq!(m.pools[&3], c, "untouched");
        // A second pass changes nothing.
        assert_eq!(apply(&mut m, &usage, 10), 0);
    }
}
