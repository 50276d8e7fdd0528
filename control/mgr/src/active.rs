//! The active side of a mgr: the DaemonState index, the PGMap, the
//! ClusterState documents the plugins read, and the plugins themselves.
//! Built when the MgrMap makes this mgr active, torn down when it stops
//! being so.

use std::collections::BTreeMap;
use std::sync::Arc;

use kalmar_maps::dump;
use kalmar_maps::{MgrMap, OsdMap};
use kalmar_mgr_py::{
    ClusterDataName as N, ClusterStateProvider, ClusterStateStore, DaemonKey, DaemonStateIndex,
    DaemonStateLimits, PyModules,
};
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};

use crate::options::MgrOptions;
use crate::pgmap::render::{
    osd_pool_stats_json, osd_stat_json, pg_dump_json, pgmap_json, pool_stats_json,
};
use crate::pgmap::space;
use crate::pgmap::summary::Summary;
use crate::pgmap::PgMap;

/// Everything the active mgr holds.
pub struct Active {
    pub daemon_state: Arc<DaemonStateIndex>,
    pub cluster: Arc<ClusterStateStore>,
    pub pgmap: Mutex<PgMap>,
    /// Set once the plugins are loaded and started (on a blocking
    /// thread); `None` while starting or when Python is unavailable.
    pub py: RwLock<Option<Arc<PyModules>>>,
    /// Why the plugin host could not start, if it could not.
    pub py_error: Mutex<Option<String>>,
    /// Set when the server is up and the plugins are started (or failed):
    /// the beacon then says `available`.
    pub ready: std::sync::atomic::AtomicBool,
}

impl Active {
    pub fn new(opts: &MgrOptions) -> Arc<Active> {
        Arc::new(Active {
            daemon_state: DaemonStateIndex::new(DaemonStateLimits {
                max_daemons: opts.mgr_max_daemons,
                ..DaemonStateLimits::default()
            }),
            cluster: ClusterStateStore::new(),
            pgmap: Mutex::new(PgMap::new(
                opts.mgr_stat_smooth_intervals,
                opts.mgr_pg_stale_timeout.as_micros() as u64,
            )),
            py: RwLock::new(None),
            py_error: Mutex::new(None),
            ready: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn py(&self) -> Option<Arc<PyModules>> {
        self.py.read().clone()
    }

    fn notify(&self, what: &str) {
        if let Some(py) = self.py() {
            py.notify_all(what, "");
        }
    }

    /// A new OSDMap: map documents, and PGs of deleted pools forgotten.
    pub fn on_osdmap(&self, map: &OsdMap) {
        self.cluster
            .set(N::OsdMap, ceph_pool_keys(dump::osd_dump_json(map)));
        self.cluster.set(N::OsdMapTree, dump::osd_tree_json(map));
        self.cluster
            .set(N::OsdMapCrush, dump::crush_dump_json(&map.crush));
        self.cluster.set(N::PgMappings, pg_mappings_json(map));
        self.pgmap.lock().prune(map);
        for key in self.daemon_state.matching("osd", "") {
            let gone = key.svc_id.parse::<i32>().is_ok_and(|id| !map.exists(id));
            if gone {
                self.daemon_state.remove(&key);
            }
        }
        self.notify("osd_map");
    }

    pub fn on_mgrmap(&self, map: &MgrMap) {
        self.cluster.set(N::MgrMap, map.dump_json());
        self.notify("mgr_map");
    }

    /// The mon's health and status (the mgr digest).
    pub fn on_digest(&self, health: Option<Value>, status: Option<&Value>, mon_addr: &str) {
        if let Some(mut h) = health {
            // Ceph's health document always carries `detail` (insights
            // and alerts index it); the digest may leave it out.
            for c in h["checks"]
                .as_object_mut()
                .into_iter()
                .flat_map(|m| m.values_mut())
            {
                if let Some(c) = c.as_object_mut() {
                    c.entry("detail").or_insert(json!([]));
                }
            }
            self.cluster.set(N::Health, h);
            self.notify("health");
        }
        if let Some(st) = status {
            let names: Vec<String> = st["quorum_names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(String::from))
                .collect();
            let mons: Vec<Value> = names
                .iter()
                .enumerate()
                .map(|(rank, n)| json!({"rank": rank, "name": n, "public_addr": format!("{mon_addr}/0"), "addr": format!("{mon_addr}/0")}))
                .collect();
            let monmap = json!({"epoch": st["monmap"]["epoch"], "fsid": st["fsid"],
                                "min_mon_release_name": "kalmar", "mons": mons});
            self.cluster.set(
                N::MonStatus,
                json!({"name": names.first(), "rank": 0, "state": "leader",
                       "election_epoch": st["election_epoch"], "quorum": st["quorum"],
                       "quorum_age": st["quorum_age"], "monmap": monmap,
                       // Every mon is in quorum or out of the map (telegraf
                       // counts `outside_quorum`).
                       "outside_quorum": [], "extra_probe_peers": [],
                       "sync_provider": [],
                       "features": {"required_con": "0", "required_mon": [],
                                    "quorum_con": "0", "quorum_mon": []},
                       "feature_map": {}}),
            );
            // Ceph notifies `mon_map` when the MonMap changes (the first
            // one a new active mgr sees included).
            let changed = monmap_changed(self.cluster.get(N::MonMap).as_deref(), &monmap);
            self.cluster.set(N::MonMap, monmap);
            if changed {
                self.notify("mon_map");
            }
        }
    }

    /// Sums the OSDs' recovery counters (their latest samples).
    fn recovery_counters(&self) -> (u64, u64) {
        let (mut ops, mut bytes) = (0, 0);
        for key in self.daemon_state.matching("osd", "") {
            for c in self.daemon_state.counters(&key) {
                let v = c.latest.map_or(0, |s| s.v);
                match c.ty.path.as_str() {
                    "osd.recovery_ops" => ops += v,
                    "osd.recovery_bytes" => bytes += v,
                    _ => {}
                }
            }
        }
        (ops, bytes)
    }

    /// The stats period: a rate sample, then every PG document.
    pub fn on_stats_tick(&self, map: &OsdMap, now_us: u64) {
        let recovery = self.recovery_counters();
        let docs = {
            let mut pm = self.pgmap.lock();
            pm.tick(map, now_us, recovery);
            let lines = pm.lines(map, now_us);
            let s = Summary::from_lines(&pm, map, &lines);
            let dump = pg_dump_json(&pm, map, &lines, &s);
            let (df, _) = space::df(&pm, map, now_us, false);
            let r = pm.rates();
            let by_pool: BTreeMap<String, BTreeMap<String, u64>> = s
                .pools
                .iter()
                .map(|p| (p.id.to_string(), p.states.clone()))
                .collect();
            let by_osd: BTreeMap<String, BTreeMap<String, u64>> = s
                .by_osd
                .iter()
                .map(|(o, st)| (o.to_string(), st.clone()))
                .collect();
            let io = json!({"read_bytes_sec": r.read_bytes_sec, "write_bytes_sec": r.write_bytes_sec,
                            "read_op_per_sec": r.read_op_per_sec, "write_op_per_sec": r.write_op_per_sec});
            let pool_rates = osd_pool_stats_json(&pm, &s);
            vec![
                (
                    N::PgSummary,
                    json!({"by_osd": by_osd, "by_pool": by_pool, "all": s.states,
                                       "pg_stats_sum": {"stat_sum": s.all.to_json()}}),
                ),
                (N::PgStatus, pgmap_json(&pm, map, &s)),
                (N::PgStats, json!({"pg_stats": dump["pg_stats"]})),
                (
                    N::OsdStats,
                    json!({"osd_stats": pm.osd_stats().values().map(osd_stat_json).collect::<Vec<_>>()}),
                ),
                (N::PoolStats, json!({"pool_stats": pool_stats_json(&s)})),
                (N::OsdPoolStats, json!({"pool_stats": pool_rates})),
                (N::PgDump, dump),
                (N::Df, df),
                (
                    N::IoRate,
                    json!({"pg_stats_delta": pm.deltas().total().to_json(), "rates": io}),
                ),
            ]
        };
        for (name, doc) in docs {
            self.cluster.set(name, doc);
        }
        self.notify("pg_summary");
    }

    /// A daemon's key from its entity name (`osd.0`).
    pub fn key_of(name: &str) -> Option<DaemonKey> {
        DaemonKey::parse(name)
    }
}

/// Pool keys of Ceph's `osd dump` that Kalmar's map has no counterpart
/// for, with Ceph's values for a pool that never set them (stock modules
/// index them: pg_autoscaler reads `options`, insights `target_max_*`).
fn ceph_pool_keys(mut doc: Value) -> Value {
    for p in doc["pools"].as_array_mut().into_iter().flatten() {
        let Some(p) = p.as_object_mut() else { continue };
        for (k, v) in [
            ("options", json!({})),
            ("target_max_bytes", json!(0)),
            ("target_max_objects", json!(0)),
            ("tier_of", json!(-1)),
            ("read_tier", json!(-1)),
            ("write_tier", json!(-1)),
            ("cache_mode", json!("none")),
            ("snap_mode", json!("selfmanaged")),
            ("snap_seq", json!(0)),
            ("pool_snaps", json!([])),
            ("removed_snaps", json!("[]")),
            ("expected_num_objects", json!(0)),
            ("fast_read", json!(false)),
            ("peering_crush_bucket_count", json!(0)),
            ("peering_crush_bucket_target", json!(0)),
            ("peering_crush_bucket_barrier", json!(0)),
            ("peering_crush_bucket_mandatory_member", json!(2147483647)),
            ("create_time", json!("0.000000")),
        ] {
            p.entry(k).or_insert(v);
        }
    }
    doc
}

/// Up/acting sets of every PG of every pool (the `pg_mappings` document).
fn pg_mappings_json(map: &OsdMap) -> Value {
    let mut pgs = serde_json::Map::new();
    for pool in map.pools.keys() {
        let Ok(mapped) = map.map_pool_pgs(*pool) else {
            continue;
        };
        for (pg, m) in mapped {
            pgs.insert(
                pg.to_string(),
                json!({"up": m.up, "acting": m.acting,
                       "up_primary": m.up_primary, "acting_primary": m.acting_primary}),
            );
        }
    }
    json!({"epoch": map.epoch, "pgs": pgs})
}

/// Whether a MonMap document differs from the one held (none held: yes).
fn monmap_changed(old: Option<&Value>, new: &Value) -> bool {
    old.is_none_or(|old| old["epoch"] != new["epoch"] || old["mons"] != new["mons"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mon_map_notify_on_first_and_changed_maps_only() {
        let a = json!({"epoch": 1, "mons": [{"rank": 0, "name": "a"}]});
        assert!(monmap_changed(None, &a));
        assert!(!monmap_changed(Some(&a), &a.clone()));
        let b = json!({"epoch": 2, "mons": [{"rank": 0, "name": "a"}]});
        assert!(monmap_changed(Some(&a), &b));
        let c = json!({"epoch": 1, "mons": [{"rank": 0, "name": "b"}]});
        assert!(monmap_changed(Some(&a), &c));
    }
}
