//! Aggregates every rendering needs: per-pool sums of the PG stats, PG
//! counts by state, and raw usage from the OSDs' own figures.

use std::collections::BTreeMap;

use kalmar_maps::{OsdMap, PoolId};
use kalmar_proto::pgstats::PgStatEntry;
use serde_json::{json, Value};

use super::{PgLine, PgMap};

/// Sums of `pg_stat_t` fields (Ceph's `object_stat_sum_t` subset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatSum {
    pub num_bytes: u64,
    pub num_objects: u64,
    pub num_object_copies: u64,
    pub num_objects_missing_on_primary: u64,
    pub num_objects_degraded: u64,
    pub num_objects_misplaced: u64,
    pub num_objects_unfound: u64,
    pub num_read: u64,
    pub num_read_kb: u64,
    pub num_write: u64,
    pub num_write_kb: u64,
    pub log_size: u64,
}

impl StatSum {
    pub fn add(&mut self, s: &PgStatEntry) {
        self.num_bytes += s.num_bytes;
        self.num_objects += s.num_objects;
        self.num_object_copies += s.num_object_copies;
        self.num_objects_missing_on_primary += s.num_objects_missing_on_primary;
        self.num_objects_degraded += s.num_objects_degraded;
        self.num_objects_misplaced += s.num_objects_misplaced;
        self.num_objects_unfound += s.num_objects_unfound;
        self.num_read += s.num_read;
        self.num_read_kb += s.num_read_kb;
        self.num_write += s.num_write;
        self.num_write_kb += s.num_write_kb;
        self.log_size += s.log_size;
    }

    /// Ceph's `stat_sum` object.
    pub fn to_json(&self) -> Value {
        json!({
            "num_bytes": self.num_bytes,
            "num_objects": self.num_objects,
            "num_object_clones": 0,
            "num_object_copies": self.num_object_copies,
            "num_objects_missing_on_primary": self.num_objects_missing_on_primary,
            "num_objects_missing": self.num_objects_missing_on_primary,
            "num_objects_degraded": self.num_objects_degraded,
            "num_objects_misplaced": self.num_objects_misplaced,
            "num_objects_unfound": self.num_objects_unfound,
            "num_objects_dirty": self.num_objects,
            "num_read": self.num_read,
            "num_read_kb": self.num_read_kb,
            "num_write": self.num_write,
            "num_write_kb": self.num_write_kb,
            "num_omap_bytes": 0,
            "num_omap_keys": 0,
        })
    }
}

/// One pool's figures.
#[derive(Debug, Clone, Default)]
pub struct PoolSum {
    pub id: PoolId,
    pub name: String,
    pub size: u32,
    pub pg_num: u32,
    pub sum: StatSum,
    pub states: BTreeMap<String, u64>,
}

/// Everything at one moment.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub pools: Vec<PoolSum>,
    pub all: StatSum,
    pub states: BTreeMap<String, u64>,
    pub num_pgs: u64,
    /// PGs by state per acting OSD (`pg_summary.by_osd`).
    pub by_osd: BTreeMap<i32, BTreeMap<String, u64>>,
    /// Raw space of the up OSDs, in bytes.
    pub bytes_total: u64,
    pub bytes_used: u64,
    pub bytes_avail: u64,
}

impl Summary {
    pub fn of(pm: &PgMap, map: &OsdMap, now_us: u64) -> Summary {
        let lines = pm.lines(map, now_us);
        Summary::from_lines(pm, map, &lines)
    }

    pub fn from_lines(pm: &PgMap, map: &OsdMap, lines: &[PgLine<'_>]) -> Summary {
        let mut pools: BTreeMap<PoolId, PoolSum> = map
            .pools
            .values()
            .map(|p| {
                (
                    p.id,
                    PoolSum {
                        id: p.id,
                        name: p.name.clone(),
                        size: p.size,
                        pg_num: p.pg_num,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let mut s = Summary {
            num_pgs: lines.len() as u64,
            ..Default::default()
        };
        for l in lines {
            *s.states.entry(l.state.clone()).or_default() += 1;
            let pool = pools.get_mut(&l.pgid.pool);
            if let Some(p) = pool {
                *p.states.entry(l.state.clone()).or_default() += 1;
                if let Some(st) = l.stat {
                    p.sum.add(st);
                }
            }
            if let Some(st) = l.stat {
                s.all.add(st);
                for osd in &st.acting {
                    *s.by_osd
                        .entry(*osd)
                        .or_default()
                        .entry(l.state.clone())
                        .or_default() += 1;
                }
            }
        }
        for (osd, st) in pm.osd_stats() {
            if map.is_up(*osd) {
                s.bytes_total += st.kb * 1024;
                s.bytes_used += st.kb_used * 1024;
                s.bytes_avail += st.kb_avail * 1024;
            }
        }
        s.pools = pools.into_values().collect();
        s
    }

    /// States sorted as Ceph prints them: by count, then name.
    pub fn states_by_count(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.states.iter().map(|(k, c)| (k.clone(), *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Space a replicated pool of `size` can still take (Ceph's
    /// `MAX AVAIL`): the raw free space divided by the replica count.
    pub fn max_avail(&self, size: u32) -> u64 {
        self.bytes_avail / u64::from(size.max(1))
    }
}
