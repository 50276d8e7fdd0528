//! The mgr's PGMap: the latest PG statistics of every PG (from its
//! primary's `OsdPgStats`), each OSD's usage, and the history that rates
//! and the recovery progress event are derived from. Pure data: the
//! daemon feeds it reports and ticks, [`render`] turns it into Ceph's
//! `pg stat`, `pg dump`, `df`, `osd df` and the data/io part of `status`.

pub mod delta;
pub mod render;
pub mod space;
pub mod summary;

use std::collections::{BTreeMap, VecDeque};

use kalmar_maps::{OsdId, OsdMap, PgId};
use kalmar_proto::pgstats::{OsdPgStats, OsdStatEntry, PgStatEntry};

/// One PG's latest report.
#[derive(Debug, Clone)]
pub struct Reported {
    pub stat: PgStatEntry,
    pub reporter: OsdId,
    /// When the mgr received it (wall-clock microseconds).
    pub received_us: u64,
}

/// Monotonic totals the rates are computed from: per-PG counter growth
/// summed as reports arrive (a PG whose counters restart, e.g. on a new
/// primary, adds nothing for that report rather than a negative delta).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub stamp_us: u64,
    pub num_read: u64,
    pub num_read_kb: u64,
    pub num_write: u64,
    pub num_write_kb: u64,
    /// The OSDs' `osd.recovery_ops` / `osd.recovery_bytes` counters summed
    /// (sampled at each tick).
    pub recovery_ops: u64,
    pub recovery_bytes: u64,
}

/// Per-second rates over the smoothing window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub read_bytes_sec: u64,
    pub write_bytes_sec: u64,
    pub read_op_per_sec: u64,
    pub write_op_per_sec: u64,
    pub recovering_objects_per_sec: u64,
    pub recovering_bytes_per_sec: u64,
    /// Objects needing recovery (degraded + misplaced + unfound) drop by
    /// this many per second (the progress event's pace).
    pub recovery_drain_per_sec: f64,
}

/// A recovery in progress (Ceph's "Global Recovery Event").
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryEvent {
    pub id: String,
    pub started_us: u64,
    /// Most objects waiting for recovery seen since it started.
    pub peak_remaining: u64,
    pub remaining: u64,
}

impl RecoveryEvent {
    /// Fraction done, 0.0 to 1.0.
    pub fn progress(&self) -> f64 {
        if self.peak_remaining == 0 {
            return 1.0;
        }
        1.0 - self.remaining as f64 / self.peak_remaining as f64
    }
}

/// The PG statistics the mgr knows.
#[derive(Debug, Clone)]
pub struct PgMap {
    pgs: BTreeMap<PgId, Reported>,
    osds: BTreeMap<OsdId, OsdStatEntry>,
    version: u64,
    stamp_us: u64,
    cumulative: Totals,
    history: VecDeque<Totals>,
    /// `(stamp_us, objects needing recovery)` per tick.
    remaining_history: VecDeque<(u64, u64)>,
    max_history: usize,
    stale_after_us: u64,
    event: Option<RecoveryEvent>,
    next_event_seq: u64,
    /// Per-pool stat sums of the window (`io_rate`, pool rates).
    deltas: delta::PoolDeltas,
}

impl PgMap {
    /// `smooth_intervals` samples are kept for rates; a report older than
    /// `stale_after_us` makes its PGs `stale`.
    pub fn new(smooth_intervals: usize, stale_after_us: u64) -> Self {
        PgMap {
            pgs: BTreeMap::new(),
            osds: BTreeMap::new(),
            version: 0,
            stamp_us: 0,
            cumulative: Totals::default(),
            history: VecDeque::new(),
            remaining_history: VecDeque::new(),
            max_history: smooth_intervals.max(2),
            stale_after_us,
            event: None,
            next_event_seq: 1,
            deltas: delta::PoolDeltas::new(smooth_intervals.max(2)),
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn stamp_us(&self) -> u64 {
        self.stamp_us
    }

    pub fn osd_stats(&self) -> &BTreeMap<OsdId, OsdStatEntry> {
        &self.osds
    }

    /// Stat deltas over the smoothing window.
    pub fn deltas(&self) -> &delta::PoolDeltas {
        &self.deltas
    }

    pub fn event(&self) -> Option<&RecoveryEvent> {
        self.event.as_ref()
    }

    /// Takes an OSD's report: newer epoch/sequence of a PG replaces the
    /// older one; another OSD's report (a new primary) wins unless it is
    /// from an older epoch.
    pub fn apply(&mut self, r: &OsdPgStats, now_us: u64) {
        for s in &r.pgs {
            let (newer, base) = match self.pgs.get(&s.pgid) {
                None => (true, None),
                Some(old) if old.reporter == r.osd_id => (
                    (s.reported_epoch, s.reported_seq)
                        >= (old.stat.reported_epoch, old.stat.reported_seq),
                    Some(&old.stat),
                ),
                Some(old) => (s.reported_epoch >= old.stat.reported_epoch, None),
            };
            if !newer {
                continue;
            }
            // Counter growth since the same primary's last report; a new
            // primary's counters start from its own zero.
            let grow = |new: u64, old: Option<u64>| match old {
                Some(o) if new >= o => new - o,
                _ => 0,
            };
            self.cumulative.num_read += grow(s.num_read, base.map(|b| b.num_read));
            self.cumulative.num_read_kb += grow(s.num_read_kb, base.map(|b| b.num_read_kb));
            self.cumulative.num_write += grow(s.num_write, base.map(|b| b.num_write));
            self.cumulative.num_write_kb += grow(s.num_write_kb, base.map(|b| b.num_write_kb));
            self.deltas.on_report(s, base);
            self.pgs.insert(
                s.pgid,
                Reported {
                    stat: s.clone(),
                    reporter: r.osd_id,
                    received_us: now_us,
                },
            );
        }
        self.osds.insert(r.osd_id, r.osd_stat.clone());
        self.version += 1;
        self.stamp_us = now_us;
    }

    /// Forgets PGs of deleted pools (or beyond a pool's pg_num) and OSDs
    /// that no longer exist.
    pub fn prune(&mut self, map: &OsdMap) {
        self.pgs
            .retain(|pg, _| map.pools.get(&pg.pool).is_some_and(|p| pg.seed < p.pg_num));
        self.osds.retain(|osd, _| map.exists(*osd));
        self.deltas
            .retain_pools(|pool| map.pools.contains_key(&pool));
    }

    /// One sample for rates and the progress event; `recovery` is the
    /// OSDs' summed `(recovery_ops, recovery_bytes)` counters.
    pub fn tick(&mut self, map: &OsdMap, now_us: u64, recovery: (u64, u64)) {
        let sample = Totals {
            stamp_us: now_us,
            recovery_ops: recovery.0,
            recovery_bytes: recovery.1,
            ..self.cumulative
        };
        push_bounded(&mut self.history, sample, self.max_history);
        self.deltas
            .sample(now_us, self.pgs.values().map(|r| &r.stat));
        let remaining = self.objects_to_recover(map);
        push_bounded(
            &mut self.remaining_history,
            (now_us, remaining),
            self.max_history,
        );
        self.update_event(map, now_us, remaining);
    }

    fn objects_to_recover(&self, map: &OsdMap) -> u64 {
        self.lines(map, u64::MAX)
            .iter()
            .filter_map(|l| l.stat)
            .map(|s| s.num_objects_degraded + s.num_objects_misplaced + s.num_objects_unfound)
            .sum()
    }

    fn update_event(&mut self, map: &OsdMap, now_us: u64, remaining: u64) {
        let clean = self
            .lines(map, now_us)
            .iter()
            .all(|l| l.state == "active+clean");
        match &mut self.event {
            Some(ev) if remaining == 0 && clean => {
                tracing::info!(id = %ev.id, "recovery event finished");
                self.event = None;
            }
            Some(ev) => {
                ev.peak_remaining = ev.peak_remaining.max(remaining);
                ev.remaining = remaining;
            }
            None if remaining > 0 => {
                let id = format!("global-recovery-{}", self.next_event_seq);
                self.next_event_seq += 1;
                self.event = Some(RecoveryEvent {
                    id,
                    started_us: now_us,
                    peak_remaining: remaining,
                    remaining,
                });
            }
            None => {}
        }
    }

    /// Rates over the kept samples (zeros with fewer than two).
    pub fn rates(&self) -> Rates {
        let (Some(first), Some(last)) = (self.history.front(), self.history.back()) else {
            return Rates::default();
        };
        let dt_us = last.stamp_us.saturating_sub(first.stamp_us);
        if dt_us == 0 {
            return Rates::default();
        }
        let per_sec = |d: u64| (d as f64 * 1e6 / dt_us as f64).round() as u64;
        // Recovery counters restart with their OSD: add only growth.
        let grown = |f: fn(&Totals) -> u64| -> u64 {
            self.history
                .iter()
                .zip(self.history.iter().skip(1))
                .map(|(a, b)| f(b).saturating_sub(f(a)))
                .sum()
        };
        let drain = match (
            self.remaining_history.front(),
            self.remaining_history.back(),
        ) {
            (Some(&(t0, r0)), Some(&(t1, r1))) if t1 > t0 && r0 > r1 => {
                (r0 - r1) as f64 * 1e6 / (t1 - t0) as f64
            }
            _ => 0.0,
        };
        Rates {
            read_bytes_sec: per_sec((last.num_read_kb - first.num_read_kb) * 1024),
            write_bytes_sec: per_sec((last.num_write_kb - first.num_write_kb) * 1024),
            read_op_per_sec: per_sec(last.num_read - first.num_read),
            write_op_per_sec: per_sec(last.num_write - first.num_write),
            recovering_objects_per_sec: per_sec(grown(|t| t.recovery_ops)),
            recovering_bytes_per_sec: per_sec(grown(|t| t.recovery_bytes)),
            recovery_drain_per_sec: drain,
        }
    }

    /// Every PG of every pool in `map`, in pgid order, with the state it
    /// shows: `unknown` if never reported, `stale+...` if its reporter is
    /// down or its report is older than the stale timeout.
    pub fn lines(&self, map: &OsdMap, now_us: u64) -> Vec<PgLine<'_>> {
        let mut out = Vec::new();
        for pool in map.pools.values() {
            for pgid in pool.pgs() {
                out.push(match self.pgs.get(&pgid) {
                    None => PgLine {
                        pgid,
                        state: "unknown".into(),
                        stat: None,
                    },
                    Some(r) => {
                        let old = now_us != u64::MAX
                            && now_us.saturating_sub(r.received_us) > self.stale_after_us;
                        let state = if map.is_up(r.reporter) && !old {
                            r.stat.state.clone()
                        } else {
                            format!("stale+{}", r.stat.state)
                        };
                        PgLine {
                            pgid,
                            state,
                            stat: Some(&r.stat),
                        }
                    }
                });
            }
        }
        out
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T, max: usize) {
    if q.len() == max {
        q.pop_front();
    }
    q.push_back(v);
}

/// One PG as the renderings show it.
#[derive(Debug, Clone)]
pub struct PgLine<'a> {
    pub pgid: PgId,
    pub state: String,
    pub stat: Option<&'a PgStatEntry>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kalmar_maps::osd::{OsdState, WEIGHT_IN};
    use kalmar_maps::pool::PgPool;

    pub fn map(osds: i32, pg_num: u32) -> OsdMap {
        let mut m = OsdMap::new(uuid::Uuid::nil(), 0);
        m.epoch = 9;
        m.set_max_osd(osds);
        for i in 0..osds {
            if let Some(s) = m.osd_mut(i) {
                s.state = OsdState(OsdState::EXISTS | OsdState::UP);
                s.weight = WEIGHT_IN;
            }
        }
        m.pools
            .insert(1, PgPool::replicated(1, "rbd", 2, 1, pg_num, 0));
        m
    }

    pub fn report(osd: OsdId, seed: u32, state: &str, seq: u64, objects: u64) -> OsdPgStats {
        OsdPgStats {
            osd_id: osd,
            epoch: 9,
            pgs: vec![PgStatEntry {
                pgid: PgId::new(1, seed),
                state: state.into(),
                reported_epoch: 9,
                reported_seq: seq,
                up: vec![osd, 1 - osd],
                acting: vec![osd, 1 - osd],
                up_primary: osd,
                acting_primary: osd,
                num_objects: objects,
                num_bytes: objects * 4096,
                num_write: seq * 10,
                num_write_kb: seq * 40,
                ..Default::default()
            }],
            osd_stat: OsdStatEntry {
                osd,
                kb: 1 << 20,
                kb_used: 1 << 10,
                kb_avail: (1 << 20) - (1 << 10),
                ..Default::default()
            },
        }
    }

    #[test]
    fn rates_from_counter_growth_and_restarts() {
        let m = map(2, 4);
        let mut pm = PgMap::new(6, 60_000_000);
        pm.apply(&report(0, 0, "active+clean", 1, 1), 0);
        pm.tick(&m, 0, (0, 0));
        // 10 writes / 40 KiB more each second, for 2 s.
        pm.apply(&report(0, 0, "active+clean", 2, 1), 1_000_000);
        pm.tick(&m, 1_000_000, (5, 500));
        pm.apply(&report(0, 0, "active+clean", 3, 1), 2_000_000);
        pm.tick(&m, 2_000_000, (10, 1000));
        let r = pm.rates();
        assert_eq!(r.write_op_per_sec, 10);
        assert_eq!(r.write_bytes_sec, 40 * 1024);
        assert_eq!(r.recovering_objects_per_sec, 5);
        assert_eq!(r.recovering_bytes_per_sec, 500);
        // A new primary starts its counters at its own zero: no negative
        // rate, no jump.
        pm.apply(&report(1, 0, "active+clean", 1, 1), 3_000_000);
        pm.tick(&m, 3_000_000, (0, 0));
        let r = pm.rates();
        assert_eq!(r.write_op_per_sec, 7, "20 writes over 3 s, rounded");
        assert_eq!(r.recovering_objects_per_sec, 3, "10 ops over 3 s");
    }

    #[test]
    fn recovery_event_starts_progresses_and_ends() {
        let m = map(2, 1);
        let mut pm = PgMap::new(6, 60_000_000);
        let mut degraded = report(0, 0, "active+recovering+degraded", 1, 100);
        degraded.pgs[0].num_objects_degraded = 80;
        pm.apply(&degraded, 0);
        pm.tick(&m, 0, (0, 0));
        let ev = pm.event().expect("event started").clone();
        assert_eq!(ev.progress(), 0.0);
        degraded.pgs[0].num_objects_degraded = 20;
        degraded.pgs[0].reported_seq = 2;
        pm.apply(&degraded, 1_000_000);
        pm.tick(&m, 1_000_000, (60, 0));
        let ev = pm.event().expect("still running");
        assert!((ev.progress() - 0.75).abs() < 1e-9);
        assert!((pm.rates().recovery_drain_per_sec - 60.0).abs() < 1e-9);
        pm.apply(&report(0, 0, "active+clean", 3, 100), 2_000_000);
        pm.tick(&m, 2_000_000, (80, 0));
        assert!(pm.event().is_none());
    }

    #[test]
    fn stale_when_reporter_down_or_silent() {
        let mut m = map(2, 2);
        let mut pm = PgMap::new(6, 10_000_000);
        pm.apply(&report(0, 0, "active+clean", 1, 1), 0);
        assert_eq!(pm.lines(&m, 1)[0].state, "active+clean");
        assert_eq!(pm.lines(&m, 1)[1].state, "unknown");
        assert_eq!(pm.lines(&m, 20_000_000)[0].state, "stale+active+clean");
        if let Some(s) = m.osd_mut(0) {
            s.state = OsdState(OsdState::EXISTS);
        }
        assert_eq!(pm.lines(&m, 1)[0].state, "stale+active+clean");
        m.pools.clear();
        pm.prune(&m);
        assert!(pm.lines(&m, 1).is_empty());
    }

    #[test]
    fn pool_rates_and_deltas_in_the_documents() {
        use serde_json::json;
        let m = map(2, 2);
        let mut pm = PgMap::new(6, 60_000_000);
        let mut r = report(0, 0, "active+clean", 1, 10);
        r.pgs[0].num_objects_recovered = 2;
        r.pgs[0].num_bytes_recovered = 8192;
        pm.apply(&r, 0);
        pm.tick(&m, 0, (0, 0));
        // 2 s later: +20 writes (+80 KiB), +4 objects recovered (+16 KiB).
        r.pgs[0].reported_seq = 3;
        r.pgs[0].num_write = 30;
        r.pgs[0].num_write_kb = 120;
        r.pgs[0].num_objects_recovered = 6;
        r.pgs[0].num_bytes_recovered = 8192 + 16384;
        pm.apply(&r, 2_000_000);
        pm.tick(&m, 2_000_000, (0, 0));
        let lines = pm.lines(&m, 2_000_000);
        let s = summary::Summary::from_lines(&pm, &m, &lines);
        let pools = render::osd_pool_stats_json(&pm, &s);
        assert_eq!(pools[0]["pool_name"], "rbd");
        assert_eq!(
            pools[0]["client_io_rate"],
            json!({"write_bytes_sec": 40 * 1024, "write_op_per_sec": 10})
        );
        assert_eq!(pools[0]["recovery_rate"]["recovering_objects_per_sec"], 2);
        assert_eq!(pools[0]["recovery_rate"]["recovering_bytes_per_sec"], 8192);
        assert_eq!(pools[0]["recovery_rate"]["num_objects_recovered"], 4);
        let dump = render::pg_dump_json(&pm, &m, &lines, &s);
        assert_eq!(dump["pg_stats_delta"]["stamp_delta"], "2.000000");
        assert_eq!(dump["pg_stats_delta"]["stat_sum"]["num_write"], 20);
        let status = render::pgmap_json(&pm, &m, &s);
        assert_eq!(status["recovering_objects_per_sec"], 2);
        assert_eq!(status["num_bytes_recovered"], 16384);
    }
}
