//! Per-pool statistic deltas over the smoothing window (Ceph's
//! `pg_sum_delta` / `per_pool_sum_delta` with their `stamp_delta`): the
//! difference between the newest and the oldest kept sample of each
//! pool's stat sum. They give `io_rate`, `pg_dump`'s `pg_stats_delta` and
//! `osd_pool_stats`' `client_io_rate` / `recovery_rate`.
//!
//! Counters (reads, writes, recovered objects) are summed as reports
//! arrive, adding each PG's growth since the same primary's last report,
//! so a new primary whose counters restart adds nothing instead of a
//! negative delta. Gauges (objects, bytes, degraded, ...) are the sums of
//! the PGs' latest reports at the sample time.

use std::collections::{BTreeMap, VecDeque};

use kalmar_maps::PoolId;
use kalmar_proto::pgstats::PgStatEntry;
use serde_json::{json, Map, Value};

/// Sums over a pool's PGs (or their difference between two samples).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatSum {
    pub num_bytes: i64,
    pub num_objects: i64,
    pub num_object_copies: i64,
    pub num_objects_missing_on_primary: i64,
    pub num_objects_degraded: i64,
    pub num_objects_misplaced: i64,
    pub num_objects_unfound: i64,
    pub num_read: i64,
    pub num_read_kb: i64,
    pub num_write: i64,
    pub num_write_kb: i64,
    pub num_objects_recovered: i64,
    pub num_bytes_recovered: i64,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl StatSum {
    fn add_gauges(&mut self, s: &PgStatEntry) {
        self.num_bytes += i(s.num_bytes);
        self.num_objects += i(s.num_objects);
        self.num_object_copies += i(s.num_object_copies);
        self.num_objects_missing_on_primary += i(s.num_objects_missing_on_primary);
        self.num_objects_degraded += i(s.num_objects_degraded);
        self.num_objects_misplaced += i(s.num_objects_misplaced);
        self.num_objects_unfound += i(s.num_objects_unfound);
    }

    /// Adds the counter growth of `new` over `old` (the same primary's
    /// previous report), or nothing without one.
    pub fn add_counter_growth(&mut self, new: &PgStatEntry, old: Option<&PgStatEntry>) {
        let Some(old) = old else { return };
        let grow = |n: u64, o: u64| i(n.saturating_sub(o));
        self.num_read += grow(new.num_read, old.num_read);
        self.num_read_kb += grow(new.num_read_kb, old.num_read_kb);
        self.num_write += grow(new.num_write, old.num_write);
        self.num_write_kb += grow(new.num_write_kb, old.num_write_kb);
        self.num_objects_recovered += grow(new.num_objects_recovered, old.num_objects_recovered);
        self.num_bytes_recovered += grow(new.num_bytes_recovered, old.num_bytes_recovered);
    }

    fn with_counters_of(mut self, c: &StatSum) -> StatSum {
        self.num_read = c.num_read;
        self.num_read_kb = c.num_read_kb;
        self.num_write = c.num_write;
        self.num_write_kb = c.num_write_kb;
        self.num_objects_recovered = c.num_objects_recovered;
        self.num_bytes_recovered = c.num_bytes_recovered;
        self
    }

    fn combine(&self, o: &StatSum, sign: i64) -> StatSum {
        StatSum {
            num_bytes: self.num_bytes + sign * o.num_bytes,
            num_objects: self.num_objects + sign * o.num_objects,
            num_object_copies: self.num_object_copies + sign * o.num_object_copies,
            num_objects_missing_on_primary: self.num_objects_missing_on_primary
                + sign * o.num_objects_missing_on_primary,
            num_objects_degraded: self.num_objects_degraded + sign * o.num_objects_degraded,
            num_objects_misplaced: self.num_objects_misplaced + sign * o.num_objects_misplaced,
            num_objects_unfound: self.num_objects_unfound + sign * o.num_objects_unfound,
            num_read: self.num_read + sign * o.num_read,
            num_read_kb: self.num_read_kb + sign * o.num_read_kb,
            num_write: self.num_write + sign * o.num_write,
            num_write_kb: self.num_write_kb + sign * o.num_write_kb,
            num_objects_recovered: self.num_objects_recovered + sign * o.num_objects_recovered,
            num_bytes_recovered: self.num_bytes_recovered + sign * o.num_bytes_recovered,
        }
    }

    /// Ceph's `object_stat_sum_t` keys (those Kalmar tracks; the rest 0).
    pub fn to_json(&self) -> Value {
        json!({
            "num_bytes": self.num_bytes,
            "num_objects": self.num_objects,
            "num_object_clones": 0,
            "num_object_copies": self.num_object_copies,
            "num_objects_missing_on_primary": self.num_objects_missing_on_primary,
            "num_objects_missing": 0,
            "num_objects_degraded": self.num_objects_degraded,
            "num_objects_misplaced": self.num_objects_misplaced,
            "num_objects_unfound": self.num_objects_unfound,
            "num_objects_dirty": 0,
            "num_whiteouts": 0,
            "num_read": self.num_read,
            "num_read_kb": self.num_read_kb,
            "num_write": self.num_write,
            "num_write_kb": self.num_write_kb,
            "num_scrub_errors": 0,
            "num_objects_recovered": self.num_objects_recovered,
            "num_bytes_recovered": self.num_bytes_recovered,
            "num_keys_recovered": 0,
        })
    }
}

/// A difference over the window and how long the window was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta {
    pub sum: StatSum,
    pub stamp_delta_us: u64,
}

impl Delta {
    /// Per second over the window, never negative (a shrinking gauge has
    /// no rate).
    fn per_sec(&self, v: i64) -> i64 {
        if self.stamp_delta_us == 0 || v <= 0 {
            return 0;
        }
        (v as f64 * 1e6 / self.stamp_delta_us as f64).round() as i64
    }

    /// `{"stat_sum": {...}, "stamp_delta": "5.000000"}` (Ceph's
    /// `pg_stats_delta`).
    pub fn to_json(&self) -> Value {
        json!({
            "stat_sum": self.sum.to_json(),
            "stamp_delta": format!("{}.{:06}", self.stamp_delta_us / 1_000_000, self.stamp_delta_us % 1_000_000),
        })
    }

    /// Ceph's `client_io_rate`: only the rates above zero are present.
    pub fn client_io_rate_json(&self) -> Value {
        let mut m = Map::new();
        let s = &self.sum;
        for (key, v) in [
            (
                "read_bytes_sec",
                self.per_sec(s.num_read_kb.saturating_mul(1024)),
            ),
            (
                "write_bytes_sec",
                self.per_sec(s.num_write_kb.saturating_mul(1024)),
            ),
            ("read_op_per_sec", self.per_sec(s.num_read)),
            ("write_op_per_sec", self.per_sec(s.num_write)),
        ] {
            if v > 0 {
                m.insert(key.into(), json!(v));
            }
        }
        Value::Object(m)
    }

    /// Ceph's `recovery_rate`: present only while something recovered.
    pub fn recovery_rate_json(&self) -> Value {
        let s = &self.sum;
        if s.num_objects_recovered <= 0 && s.num_bytes_recovered <= 0 {
            return json!({});
        }
        json!({
            "recovering_objects_per_sec": self.per_sec(s.num_objects_recovered),
            "recovering_bytes_per_sec": self.per_sec(s.num_bytes_recovered),
            "recovering_keys_per_sec": 0,
            "num_objects_recovered": s.num_objects_recovered.max(0),
            "num_bytes_recovered": s.num_bytes_recovered.max(0),
            "num_keys_recovered": 0,
        })
    }
}

/// One sample: every pool's stat sum at `stamp_us`.
#[derive(Debug, Clone, Default)]
struct Sample {
    stamp_us: u64,
    pools: BTreeMap<PoolId, StatSum>,
}

/// The per-pool samples of the window.
#[derive(Debug, Clone)]
pub struct PoolDeltas {
    /// Counter totals so far (gauge fields unused).
    counters: BTreeMap<PoolId, StatSum>,
    history: VecDeque<Sample>,
    max_samples: usize,
}

impl PoolDeltas {
    pub fn new(max_samples: usize) -> Self {
        PoolDeltas {
            counters: BTreeMap::new(),
            history: VecDeque::new(),
            max_samples: max_samples.max(2),
        }
    }

    /// A PG report replaced `old` (same primary) or arrived first.
    pub fn on_report(&mut self, new: &PgStatEntry, old_same_primary: Option<&PgStatEntry>) {
        self.counters
            .entry(new.pgid.pool)
            .or_default()
            .add_counter_growth(new, old_same_primary);
    }

    /// Takes a sample from the PGs' latest reports.
    pub fn sample<'a>(&mut self, now_us: u64, pgs: impl Iterator<Item = &'a PgStatEntry>) {
        let mut pools: BTreeMap<PoolId, StatSum> = BTreeMap::new();
        for s in pgs {
            pools.entry(s.pgid.pool).or_default().add_gauges(s);
        }
        for (pool, c) in &self.counters {
            let e = pools.entry(*pool).or_default();
            *e = e.with_counters_of(c);
        }
        if self.history.len() == self.max_samples {
            self.history.pop_front();
        }
        self.history.push_back(Sample {
            stamp_us: now_us,
            pools,
        });
    }

    /// Forgets pools that are gone.
    pub fn retain_pools(&mut self, keep: impl Fn(PoolId) -> bool) {
        self.counters.retain(|p, _| keep(*p));
        for s in &mut self.history {
            s.pools.retain(|p, _| keep(*p));
        }
    }

    fn delta_of(&self, f: impl Fn(&Sample) -> StatSum) -> Delta {
        match (self.history.front(), self.history.back()) {
            (Some(first), Some(last)) if last.stamp_us > first.stamp_us => Delta {
                sum: f(last).combine(&f(first), -1),
                stamp_delta_us: last.stamp_us - first.stamp_us,
            },
            _ => Delta::default(),
        }
    }

    /// One pool's delta over the window.
    pub fn pool(&self, pool: PoolId) -> Delta {
        self.delta_of(|s| s.pools.get(&pool).copied().unwrap_or_default())
    }

    /// The whole cluster's delta over the window.
    pub fn total(&self) -> Delta {
        self.delta_of(|s| {
            s.pools
                .values()
                .fold(StatSum::default(), |acc, p| acc.combine(p, 1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_maps::PgId;

    fn pg(pool: PoolId, seed: u32, writes: u64, objects: u64, recovered: u64) -> PgStatEntry {
        PgStatEntry {
            pgid: PgId::new(pool, seed),
            num_write: writes,
            num_write_kb: writes * 4,
            num_objects: objects,
            num_bytes: objects * 4096,
            num_objects_recovered: recovered,
            num_bytes_recovered: recovered * 4096,
            ..Default::default()
        }
    }

    #[test]
    fn deltas_per_pool_and_total_with_rates() {
        let mut d = PoolDeltas::new(3);
        assert_eq!(d.total(), Delta::default());
        // t=0: pool 1 has 10 writes, pool 2 has 0.
        let a0 = pg(1, 0, 10, 10, 0);
        let b0 = pg(2, 0, 0, 0, 0);
        d.on_report(&a0, None);
        d.on_report(&b0, None);
        d.sample(0, [&a0, &b0].into_iter());
        // t=2 s: pool 1 +40 writes (+40 objects), pool 2 recovers 6 objects.
        let a1 = pg(1, 0, 50, 50, 0);
        let b1 = pg(2, 0, 0, 6, 6);
        d.on_report(&a1, Some(&a0));
        d.on_report(&b1, Some(&b0));
        d.sample(2_000_000, [&a1, &b1].into_iter());
        let p1 = d.pool(1);
        assert_eq!(p1.stamp_delta_us, 2_000_000);
        assert_eq!(p1.sum.num_write, 40);
        assert_eq!(p1.sum.num_objects, 40);
        assert_eq!(
            p1.client_io_rate_json(),
            json!({"write_bytes_sec": 80 * 1024, "write_op_per_sec": 20})
        );
        assert_eq!(p1.recovery_rate_json(), json!({}));
        let p2 = d.pool(2);
        assert_eq!(p2.client_io_rate_json(), json!({}));
        assert_eq!(p2.recovery_rate_json()["recovering_objects_per_sec"], 3);
        assert_eq!(p2.recovery_rate_json()["num_bytes_recovered"], 6 * 4096);
        let t = d.total();
        assert_eq!(t.sum.num_write, 40);
        assert_eq!(t.sum.num_objects, 46);
        assert_eq!(t.to_json()["stamp_delta"], "2.000000");
        assert_eq!(t.to_json()["stat_sum"]["num_write_kb"], 160);
        // Deleting objects: a negative gauge delta, no negative rate.
        let a2 = pg(1, 0, 50, 20, 0);
        d.on_report(&a2, Some(&a1));
        d.sample(4_000_000, [&a2, &b1].into_iter());
        d.sample(6_000_000, [&a2, &b1].into_iter());
        let p1 = d.pool(1);
        assert_eq!(p1.stamp_delta_us, 4_000_000, "window of 3 samples");
        assert_eq!(p1.sum.num_objects, -30);
        assert_eq!(p1.sum.num_write, 0);
        // A new primary restarts its counters: no growth counted.
        let restarted = pg(1, 0, 3, 20, 0);
        d.on_report(&restarted, None);
        d.sample(8_000_000, [&restarted, &b1].into_iter());
        assert_eq!(d.pool(1).sum.num_write, 0);
        d.retain_pools(|p| p == 2);
        assert_eq!(d.pool(1).sum, StatSum::default());
    }
}
