//! Ceph-shaped test data: a fake cluster's `get()` documents, an OSD's
//! counter set (Ceph's `osd` logger names, types, priorities and nicks,
//! plus the main `bluestore` latencies) and a scripted [`MgrHost`].
//! Used by this crate's tests and benchmark, and by the daemon's tests
//! until it computes the real documents.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::cluster_state::{ClusterDataName, ClusterStateStore};
use crate::daemon_state::{
    pack_values, DaemonKey, DaemonStateIndex, IngestError, PerfCounterType, ReportData,
};
use crate::host::{ClogPriority, MgrHost, MonCommandCompletion, MonCommandReply};

/// `(path, type bits, priority, nick, unit)` of an OSD's counters.
pub const OSD_COUNTERS: &[(&str, u8, u8, &str, u8)] = &[
    ("osd.op_wip", 2, 5, "", 1),
    ("osd.op", 10, 10, "ops", 1),
    ("osd.op_in_bytes", 10, 8, "wr", 0),
    ("osd.op_out_bytes", 10, 8, "rd", 0),
    ("osd.op_latency", 5, 9, "l", 1),
    ("osd.op_process_latency", 5, 5, "", 1),
    ("osd.op_prepare_latency", 5, 5, "", 1),
    ("osd.op_r", 10, 5, "", 1),
    ("osd.op_r_out_bytes", 10, 5, "", 0),
    ("osd.op_r_latency", 5, 5, "", 1),
    ("osd.op_r_process_latency", 5, 5, "", 1),
    ("osd.op_r_prepare_latency", 5, 5, "", 1),
    ("osd.op_w", 10, 5, "", 1),
    ("osd.op_w_in_bytes", 10, 5, "", 1),
    ("osd.op_w_latency", 5, 5, "", 1),
    ("osd.op_w_process_latency", 5, 5, "", 1),
    ("osd.op_w_prepare_latency", 5, 5, "", 1),
    ("osd.op_rw", 10, 5, "", 1),
    ("osd.op_rw_in_bytes", 10, 5, "", 0),
    ("osd.op_rw_out_bytes", 10, 5, "", 0),
    ("osd.op_rw_latency", 5, 5, "", 1),
    ("osd.op_rw_process_latency", 5, 5, "", 1),
    ("osd.op_rw_prepare_latency", 5, 5, "", 1),
    ("osd.op_before_queue_op_lat", 5, 0, "", 1),
    ("osd.op_before_dequeue_op_lat", 5, 0, "", 1),
    ("osd.subop", 10, 0, "", 1),
    ("osd.subop_in_bytes", 10, 0, "", 0),
    ("osd.subop_latency", 5, 0, "", 1),
    ("osd.subop_w", 10, 0, "", 1),
    ("osd.subop_w_in_bytes", 10, 0, "", 0),
    ("osd.subop_w_latency", 5, 0, "", 1),
    ("osd.subop_pull", 10, 0, "", 1),
    ("osd.subop_pull_latency", 5, 0, "", 1),
    ("osd.subop_push", 10, 0, "", 1),
    ("osd.subop_push_in_bytes", 10, 0, "", 0),
    ("osd.subop_push_latency", 5, 0, "", 1),
    ("osd.pull", 10, 0, "", 1),
    ("osd.push", 10, 0, "", 1),
    ("osd.push_out_bytes", 10, 0, "", 0),
    ("osd.recovery_ops", 10, 8, "rop", 1),
    ("osd.recovery_bytes", 10, 8, "rbt", 1),
    ("osd.loadavg", 2, 0, "", 1),
    ("osd.cached_crc", 2, 0, "", 1),
    ("osd.cached_crc_adjusted", 2, 0, "", 1),
    ("osd.missed_crc", 2, 0, "", 1),
    ("osd.numpg", 2, 5, "pgs", 1),
    ("osd.numpg_primary", 2, 0, "", 1),
    ("osd.numpg_replica", 2, 0, "", 1),
    ("osd.numpg_stray", 2, 0, "", 1),
    ("osd.numpg_removing", 2, 5, "pgsr", 1),
    ("osd.heartbeat_to_peers", 2, 0, "", 1),
    ("osd.map_messages", 10, 0, "", 1),
    ("osd.map_message_epochs", 10, 0, "", 1),
    ("osd.map_message_epoch_dups", 10, 0, "", 1),
    ("osd.messages_delayed_for_map", 10, 0, "", 1),
    ("osd.osd_map_cache_hit", 10, 0, "", 1),
    ("osd.osd_map_cache_miss", 10, 0, "", 1),
    ("osd.osd_map_cache_miss_low", 10, 0, "", 1),
    ("osd.osd_map_cache_miss_low_avg", 6, 0, "", 1),
    ("osd.osd_map_bl_cache_hit", 10, 0, "", 1),
    ("osd.osd_map_bl_cache_miss", 10, 0, "", 1),
    ("osd.stat_bytes", 2, 5, "size", 0),
    ("osd.stat_bytes_used", 2, 5, "used", 0),
    ("osd.stat_bytes_avail", 2, 0, "", 0),
    ("osd.copyfrom", 10, 0, "", 1),
    ("osd.tier_promote", 10, 0, "", 1),
    ("osd.tier_flush", 10, 0, "", 1),
    ("osd.tier_flush_fail", 10, 0, "", 1),
    ("osd.tier_try_flush", 10, 0, "", 1),
    ("osd.tier_try_flush_fail", 10, 0, "", 1),
    ("osd.tier_evict", 10, 0, "", 1),
    ("osd.tier_whiteout", 10, 0, "", 1),
    ("osd.tier_dirty", 10, 0, "", 1),
    ("osd.tier_clean", 10, 0, "", 1),
    ("osd.tier_delay", 10, 0, "", 1),
    ("osd.tier_proxy_read", 10, 0, "", 1),
    ("osd.tier_proxy_write", 10, 0, "", 1),
    ("osd.agent_wake", 10, 0, "", 1),
    ("osd.agent_skip", 10, 0, "", 1),
    ("osd.agent_flush", 10, 0, "", 1),
    ("osd.agent_evict", 10, 0, "", 1),
    ("osd.object_ctx_cache_hit", 10, 0, "", 1),
    ("osd.object_ctx_cache_total", 10, 0, "", 1),
    ("osd.op_cache_hit", 10, 0, "", 1),
    ("osd.osd_tier_flush_lat", 5, 0, "", 1),
    ("osd.osd_tier_promote_lat", 5, 0, "", 1),
    ("osd.osd_tier_r_lat", 5, 0, "", 1),
    ("osd.osd_pg_info", 10, 0, "", 1),
    ("osd.osd_pg_fastinfo", 10, 0, "", 1),
    ("osd.osd_pg_biginfo", 10, 0, "", 1),
    ("bluestore.commit_lat", 5, 10, "c_l", 1),
    ("bluestore.submit_lat", 5, 10, "s_l", 1),
    ("bluestore.throttle_lat", 5, 10, "th_l", 1),
    ("bluestore.read_lat", 5, 10, "r_l", 1),
    ("bluestore.kv_flush_lat", 5, 8, "fl_l", 1),
    ("bluestore.kv_commit_lat", 5, 0, "", 1),
    ("bluestore.kv_sync_lat", 5, 8, "ks_l", 1),
    ("bluestore.kv_final_lat", 5, 8, "kf_l", 1),
    ("bluestore.bluestore_allocated", 2, 0, "", 1),
    ("bluestore.bluestore_stored", 2, 0, "", 1),
];

/// The declarations an OSD sends in its first MgrReport.
pub fn osd_counter_types() -> Vec<PerfCounterType> {
    OSD_COUNTERS
        .iter()
        .map(|(path, bits, prio, nick, unit)| PerfCounterType {
            path: path.to_string(),
            description: format!("fake OSD counter {path}"),
            nick: nick.to_string(),
            type_bits: *bits,
            priority: *prio,
            unit: *unit,
        })
        .collect()
}

/// One fake OSD's counter values, `(value, count)` in declaration order.
pub struct FakeOsd {
    pub key: DaemonKey,
    pub types: Vec<PerfCounterType>,
    pub values: Vec<(u64, u64)>,
    declared: bool,
}

impl FakeOsd {
    pub fn new(id: u32) -> FakeOsd {
        let types = osd_counter_types();
        let values = types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                (
                    1000 * u64::from(id) + i as u64,
                    if t.is_avg() { 10 + i as u64 } else { 0 },
                )
            })
            .collect();
        FakeOsd {
            key: DaemonKey::new("osd", id.to_string()),
            types,
            values,
            declared: false,
        }
    }

    /// Index of a counter by path.
    pub fn index(&self, path: &str) -> Option<usize> {
        self.types.iter().position(|t| t.path == path)
    }

    /// Adds to a counter (`count` too, for averages).
    pub fn add(&mut self, path: &str, value: u64, count: u64) {
        if let Some(i) = self.index(path) {
            self.values[i].0 += value;
            self.values[i].1 += count;
        }
    }

    /// MgrOpen with Ceph-like metadata.
    pub fn open(&mut self, idx: &DaemonStateIndex, hostname: &str) -> Result<(), IngestError> {
        self.declared = false;
        idx.open_session(&self.key, osd_metadata(&self.key.svc_id, hostname))
    }

    /// One MgrReport: declarations the first time, values always.
    pub fn report(&mut self, idx: &DaemonStateIndex, at: SystemTime) -> Result<(), IngestError> {
        let packed = pack_values(&self.types, &self.values);
        let declare: &[PerfCounterType] = if self.declared { &[] } else { &self.types };
        idx.ingest_report(
            &self.key,
            &ReportData {
                declare_types: declare,
                undeclare_types: &[],
                packed: &packed,
                timestamp: at,
            },
        )?;
        self.declared = true;
        Ok(())
    }
}

/// Metadata as an OSD sends it (keys of `ceph osd metadata`).
pub fn osd_metadata(id: &str, hostname: &str) -> BTreeMap<String, String> {
    let n: u32 = id.parse().unwrap_or(0);
    [
        ("id", id.to_string()),
        ("hostname", hostname.to_string()),
        ("arch", "x86_64".to_string()),
        ("ceph_version", "kalmar version 0.1.0".to_string()),
        ("ceph_version_short", "0.1.0".to_string()),
        ("osd_objectstore", "kalmar".to_string()),
        ("default_device_class", "ssd".to_string()),
        ("devices", format!("loop{n}")),
        ("bluestore_bdev_dev_node", format!("/dev/loop{n}")),
        ("front_addr", format!("127.0.0.1:{}/0", 6800 + 2 * n)),
        ("back_addr", format!("127.0.0.1:{}/0", 6801 + 2 * n)),
        ("kernel_version", "6.1.0".to_string()),
        ("os", "Linux".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A pool of the fake cluster.
#[derive(Debug, Clone)]
pub struct FakePool {
    pub id: u32,
    pub name: String,
    pub size: u32,
    pub pg_num: u32,
    pub objects: u64,
    pub stored_bytes: u64,
}

/// A small healthy cluster: `num_osds` OSDs on one host, some pools, all
/// PGs `active+clean` except `degraded_pgs` of the first pool.
#[derive(Debug, Clone)]
pub struct FakeCluster {
    pub fsid: String,
    pub epoch: u64,
    pub num_osds: u32,
    pub hostname: String,
    pub pools: Vec<FakePool>,
    pub degraded_pgs: u32,
    pub osd_bytes: u64,
    pub osd_used_bytes: u64,
}

impl Default for FakeCluster {
    fn default() -> Self {
        FakeCluster {
            fsid: "54656202-0b55-49f3-a2fd-2337038b7535".into(),
            epoch: 30,
            num_osds: 3,
            hostname: "vm".into(),
            pools: vec![
                FakePool {
                    id: 1,
                    name: "rbd".into(),
                    size: 3,
                    pg_num: 32,
                    objects: 517,
                    stored_bytes: 2 << 30,
                },
                FakePool {
                    id: 2,
                    name: "rbd1".into(),
                    size: 1,
                    pg_num: 8,
                    objects: 4780,
                    stored_bytes: 1 << 30,
                },
            ],
            degraded_pgs: 0,
            osd_bytes: 8 << 30,
            osd_used_bytes: 3 << 30,
        }
    }
}

fn pg_state(c: &FakeCluster, pool: &FakePool, seed: u32) -> &'static str {
    if pool.id == c.pools[0].id && seed < c.degraded_pgs {
        "active+undersized+degraded"
    } else {
        "active+clean"
    }
}

fn acting(c: &FakeCluster, pool: &FakePool, seed: u32) -> Vec<u32> {
    (0..pool.size.min(c.num_osds))
        .map(|r| (seed + r) % c.num_osds.max(1))
        .collect()
}

impl FakeCluster {
    pub fn osd_map(&self) -> Value {
        let pools: Vec<Value> = self
            .pools
            .iter()
            .map(|p| {
                json!({
                    "pool": p.id, "pool_name": p.name, "type": 1, "size": p.size,
                    "min_size": (p.size / 2 + 1).min(p.size), "crush_rule": 0, "object_hash": 2,
                    "pg_num": p.pg_num, "pg_placement_num": p.pg_num, "pg_num_target": p.pg_num,
                    "pg_autoscale_mode": "off", "erasure_code_profile": "",
                    "application_metadata": {"rbd": {}}, "flags_names": "hashpspool",
                })
            })
            .collect();
        let osds: Vec<Value> = (0..self.num_osds)
            .map(|i| {
                let addr = format!("127.0.0.1:{}/0", 6800 + 2 * i);
                json!({
                    "osd": i, "uuid": format!("00000000-0000-0000-0000-{:012x}", i), "up": 1, "in": 1,
                    "weight": 1.0, "primary_affinity": 1.0, "up_from": 5 + i, "up_thru": 21,
                    "down_at": 0, "lost_at": 0, "last_clean_begin": 0, "last_clean_end": 0,
                    "public_addr": addr, "cluster_addr": addr, "heartbeat_back_addr": addr,
                    "heartbeat_front_addr": addr, "state": ["exists", "up"],
                })
            })
            .collect();
        json!({
            "epoch": self.epoch, "fsid": self.fsid,
            "created": "2026-11-21T12:02:13.459613+0000", "modified": "2026-11-21T12:03:08.456118+0000",
            "flags": "sortbitwise,recovery_deletes,purged_snapdirs,pglog_hardlimit",
            "flags_set": ["pglog_hardlimit", "purged_snapdirs", "recovery_deletes", "sortbitwise"],
            "crush_version": 7, "full_ratio": 0.95, "backfillfull_ratio": 0.9, "nearfull_ratio": 0.85,
            "max_osd": self.num_osds, "require_osd_release": "kalmar", "pools": pools, "osds": osds,
            "osd_xinfo": [], "pg_upmap": [], "pg_upmap_items": [], "pg_temp": [], "primary_temp": [],
            "blocklist": {}, "erasure_code_profiles": {},
        })
    }

    fn weight(&self) -> f64 {
        self.osd_bytes as f64 / (1u64 << 40) as f64
    }

    pub fn osd_map_tree(&self) -> Value {
        let osd_ids: Vec<i64> = (0..i64::from(self.num_osds)).collect();
        let mut nodes = vec![
            json!({"id": -1, "name": "default", "type": "root", "type_id": 11, "children": [-2]}),
            json!({"id": -2, "name": self.hostname, "type": "host", "type_id": 1, "pool_weights": {}, "children": osd_ids}),
        ];
        for i in 0..self.num_osds {
            nodes.push(json!({
                "id": i, "device_class": "ssd", "name": format!("osd.{i}"), "type": "osd", "type_id": 0,
                "crush_weight": self.weight(), "depth": 2, "pool_weights": {}, "exists": 1,
                "status": "up", "reweight": 1.0, "primary_affinity": 1.0,
            }));
        }
        json!({"nodes": nodes, "stray": []})
    }

    pub fn osd_map_crush(&self) -> Value {
        let w = (self.weight() * 65536.0) as u64;
        let devices: Vec<Value> = (0..self.num_osds)
            .map(|i| json!({"id": i, "name": format!("osd.{i}"), "class": "ssd"}))
            .collect();
        let items: Vec<Value> = (0..self.num_osds)
            .map(|i| json!({"id": i, "weight": w, "pos": i}))
            .collect();
        json!({
            "devices": devices,
            "types": [{"type_id": 0, "name": "osd"}, {"type_id": 1, "name": "host"}, {"type_id": 11, "name": "root"}],
            "buckets": [
                {"id": -1, "name": "default", "type_id": 11, "type_name": "root", "weight": w * u64::from(self.num_osds),
                 "alg": "straw2", "hash": "rjenkins1", "items": [{"id": -2, "weight": w * u64::from(self.num_osds), "pos": 0}]},
                {"id": -2, "name": self.hostname, "type_id": 1, "type_name": "host", "weight": w * u64::from(self.num_osds),
                 "alg": "straw2", "hash": "rjenkins1", "items": items},
            ],
            "rules": [{"rule_id": 0, "rule_name": "replicated_rule", "type": 1, "steps": [
                {"op": "take", "item": -1, "item_name": "default"},
                {"op": "chooseleaf_firstn", "num": 0, "type": "osd"},
                {"op": "emit"}]}],
            "tunables": {"choose_local_tries": 0, "choose_local_fallback_tries": 0, "choose_total_tries": 50,
                         "chooseleaf_descend_once": 1, "chooseleaf_vary_r": 1, "chooseleaf_stable": 1,
                         "straw_calc_version": 1, "allowed_bucket_algs": 54, "profile": "jewel"},
            "choose_args": {},
        })
    }

    fn pg_stat_sum(&self, objects: u64, bytes: u64, degraded: u64) -> Value {
        json!({
            "num_bytes": bytes, "num_objects": objects, "num_object_clones": 0, "num_object_copies": objects * 3,
            "num_objects_missing_on_primary": 0, "num_objects_missing": 0, "num_objects_degraded": degraded,
            "num_objects_misplaced": 0, "num_objects_unfound": 0, "num_objects_dirty": objects,
            "num_read": 10, "num_read_kb": 40, "num_write": objects, "num_write_kb": bytes / 1024,
            "num_omap_bytes": 0, "num_omap_keys": 0,
        })
    }

    /// Every PG's pg_stat_t.
    pub fn pg_stats(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for p in &self.pools {
            for seed in 0..p.pg_num {
                let a = acting(self, p, seed);
                let objs = p.objects / u64::from(p.pg_num.max(1));
                let bytes = p.stored_bytes / u64::from(p.pg_num.max(1));
                let state = pg_state(self, p, seed);
                let degraded = if state.contains("degraded") { objs } else { 0 };
                out.push(json!({
                    "pgid": format!("{}.{:x}", p.id, seed), "version": format!("{}'{}", self.epoch, objs),
                    "reported_seq": 100 + seed, "reported_epoch": self.epoch, "state": state,
                    "last_fresh": "2026-11-21T12:10:00.000000+0000", "last_change": "2026-11-21T12:03:08.000000+0000",
                    "up": a, "acting": a, "up_primary": a.first(), "acting_primary": a.first(),
                    "stat_sum": self.pg_stat_sum(objs, bytes, degraded),
                    "last_scrub_stamp": "2026-11-21T12:03:08.000000+0000",
                    "last_deep_scrub_stamp": "2026-11-21T12:03:08.000000+0000",
                    "log_size": objs, "ondisk_log_size": objs,
                }));
            }
        }
        out
    }

    pub fn osd_stats(&self) -> Vec<Value> {
        (0..self.num_osds)
            .map(|i| {
                let pgs: u32 = self
                    .pools
                    .iter()
                    .map(|p| (0..p.pg_num).filter(|s| acting(self, p, *s).contains(&i)).count() as u32)
                    .sum();
                let peers: Vec<u32> = (0..self.num_osds).filter(|&j| j != i).collect();
                json!({
                    "osd": i, "up_from": 5 + i, "seq": 21474836480u64 + u64::from(i), "num_pgs": pgs,
                    "num_osds": 1, "num_per_pool_osds": 1, "num_per_pool_omap_osds": 1,
                    "kb": self.osd_bytes / 1024, "kb_used": self.osd_used_bytes / 1024,
                    "kb_used_data": self.osd_used_bytes / 1024, "kb_used_omap": 0, "kb_used_meta": 0,
                    "kb_avail": (self.osd_bytes - self.osd_used_bytes) / 1024,
                    "statfs": {"total": self.osd_bytes, "available": self.osd_bytes - self.osd_used_bytes,
                               "internally_reserved": 0, "allocated": self.osd_used_bytes,
                               "data_stored": self.osd_used_bytes, "data_compressed": 0},
                    "hb_peers": peers, "snap_trim_queue_len": 0, "num_snap_trimming": 0,
                    "perf_stat": {"commit_latency_ms": 2 + i, "apply_latency_ms": 2 + i,
                                  "commit_latency_ns": (2 + u64::from(i)) * 1_000_000,
                                  "apply_latency_ns": (2 + u64::from(i)) * 1_000_000},
                })
            })
            .collect()
    }

    fn states_count(&self, filter: impl Fn(&FakePool, u32) -> bool) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for p in &self.pools {
            for s in 0..p.pg_num {
                if filter(p, s) {
                    *m.entry(pg_state(self, p, s).to_string()).or_insert(0) += 1;
                }
            }
        }
        m
    }

    pub fn pg_summary(&self) -> Value {
        let by_osd: BTreeMap<String, BTreeMap<String, u64>> = (0..self.num_osds)
            .map(|i| {
                (
                    i.to_string(),
                    self.states_count(|p, s| acting(self, p, s).contains(&i)),
                )
            })
            .collect();
        let by_pool: BTreeMap<String, BTreeMap<String, u64>> = self
            .pools
            .iter()
            .map(|p| (p.id.to_string(), self.states_count(|q, _| q.id == p.id)))
            .collect();
        json!({
            "by_osd": by_osd, "by_pool": by_pool, "all": self.states_count(|_, _| true),
            "pg_stats_sum": {"stat_sum": self.pg_stat_sum(self.total_objects(), self.total_stored(), self.degraded_objects())},
        })
    }

    fn total_objects(&self) -> u64 {
        self.pools.iter().map(|p| p.objects).sum()
    }

    fn total_stored(&self) -> u64 {
        self.pools.iter().map(|p| p.stored_bytes).sum()
    }

    fn degraded_objects(&self) -> u64 {
        self.pools
            .first()
            .map(|p| {
                p.objects / u64::from(p.pg_num.max(1)) * u64::from(self.degraded_pgs.min(p.pg_num))
            })
            .unwrap_or(0)
    }

    fn total_bytes(&self) -> u64 {
        self.osd_bytes * u64::from(self.num_osds)
    }

    fn used_bytes(&self) -> u64 {
        self.osd_used_bytes * u64::from(self.num_osds)
    }

    pub fn pg_status(&self) -> Value {
        let states: Vec<Value> = self
            .states_count(|_, _| true)
            .into_iter()
            .map(|(s, n)| json!({"state_name": s, "count": n}))
            .collect();
        let num_pgs: u32 = self.pools.iter().map(|p| p.pg_num).sum();
        let copies: u64 = self
            .pools
            .iter()
            .map(|p| p.objects * u64::from(p.size))
            .sum();
        let mut v = json!({
            "pgs_by_state": states, "num_pgs": num_pgs, "num_pools": self.pools.len(),
            "num_objects": self.total_objects(), "data_bytes": self.total_stored(),
            "bytes_used": self.used_bytes(), "bytes_avail": self.total_bytes() - self.used_bytes(),
            "bytes_total": self.total_bytes(), "read_bytes_sec": 85, "write_bytes_sec": 0,
            "read_op_per_sec": 0, "write_op_per_sec": 3810,
        });
        if self.degraded_pgs > 0 {
            v["degraded_objects"] = json!(self.degraded_objects());
            v["degraded_total"] = json!(copies);
            v["degraded_ratio"] = json!(self.degraded_objects() as f64 / copies.max(1) as f64);
        }
        v
    }

    fn pool_stats(&self) -> Vec<Value> {
        self.pools
            .iter()
            .map(|p| {
                json!({"poolid": p.id, "num_pg": p.pg_num,
                       "stat_sum": self.pg_stat_sum(p.objects, p.stored_bytes, 0),
                       "store_stats": {"total": 0, "available": 0, "allocated": p.stored_bytes * u64::from(p.size),
                                       "data_stored": p.stored_bytes * u64::from(p.size), "data_compressed": 0},
                       "log_size": p.objects, "ondisk_log_size": p.objects, "up": p.pg_num * p.size,
                       "acting": p.pg_num * p.size, "num_store_stats": self.num_osds})
            })
            .collect()
    }

    pub fn pg_dump(&self) -> Value {
        let sum = self.pg_stat_sum(
            self.total_objects(),
            self.total_stored(),
            self.degraded_objects(),
        );
        json!({
            "version": 1234, "stamp": "2026-11-21T12:10:00.000000+0000", "last_osdmap_epoch": 0,
            "last_pg_scan": 0, "pg_stats_sum": {"stat_sum": sum},
            "osd_stats_sum": {"kb": self.total_bytes() / 1024, "kb_used": self.used_bytes() / 1024,
                              "kb_avail": (self.total_bytes() - self.used_bytes()) / 1024, "num_osds": self.num_osds},
            "pg_stats_delta": {"stat_sum": self.pg_stat_sum(0, 0, 0), "stamp_delta": "5.000000"},
            "pg_stats": self.pg_stats(), "pool_stats": self.pool_stats(), "osd_stats": self.osd_stats(),
            "pool_statfs": [],
        })
    }

    pub fn df(&self) -> Value {
        let total = self.total_bytes();
        let used = self.used_bytes();
        let pools: Vec<Value> = self
            .pools
            .iter()
            .map(|p| {
                let bytes_used = p.stored_bytes * u64::from(p.size);
                let max_avail = (total - used) / u64::from(p.size.max(1));
                json!({"name": p.name, "id": p.id, "stats": {
                    "stored": p.stored_bytes, "stored_data": p.stored_bytes, "stored_omap": 0,
                    "objects": p.objects, "kb_used": bytes_used / 1024, "bytes_used": bytes_used,
                    "data_bytes_used": bytes_used, "omap_bytes_used": 0,
                    "percent_used": bytes_used as f64 / (bytes_used + max_avail).max(1) as f64,
                    "max_avail": max_avail, "quota_objects": 0, "quota_bytes": 0, "dirty": 0,
                    "rd": 10 * u64::from(p.id), "rd_bytes": 4096 * u64::from(p.id), "wr": p.objects,
                    "wr_bytes": p.stored_bytes, "compress_bytes_used": 0, "compress_under_bytes": 0,
                    "stored_raw": bytes_used, "avail_raw": total - used}})
            })
            .collect();
        json!({
            "stats": {"total_bytes": total, "total_avail_bytes": total - used, "total_used_bytes": used,
                      "total_used_raw_bytes": used, "total_used_raw_ratio": used as f64 / total.max(1) as f64,
                      "num_osds": self.num_osds, "num_per_pool_osds": self.num_osds, "num_per_pool_omap_osds": self.num_osds},
            "stats_by_class": {"ssd": {"total_bytes": total, "total_avail_bytes": total - used,
                                        "total_used_bytes": used, "total_used_raw_bytes": used,
                                        "total_used_raw_ratio": used as f64 / total.max(1) as f64}},
            "pools": pools,
        })
    }

    pub fn health(&self) -> Value {
        if self.degraded_pgs == 0 {
            return json!({"status": "HEALTH_OK", "checks": {}, "mutes": []});
        }
        json!({"status": "HEALTH_WARN", "checks": {"PG_DEGRADED": {"severity": "HEALTH_WARN",
            "summary": {"message": format!("Degraded data redundancy: {} pgs degraded", self.degraded_pgs), "count": self.degraded_pgs},
            "detail": [], "muted": false}}, "mutes": []})
    }

    pub fn mon_status(&self) -> Value {
        json!({"name": "a", "rank": 0, "state": "leader", "election_epoch": 3, "quorum": [0],
               "quorum_age": 420, "features": {}, "outside_quorum": [], "extra_probe_peers": [],
               "sync_provider": [], "monmap": {"epoch": 1, "fsid": self.fsid, "min_mon_release_name": "kalmar",
               "mons": [{"rank": 0, "name": "a", "public_addr": "127.0.0.1:6789/0", "addr": "127.0.0.1:6789/0"}]}})
    }

    pub fn mgr_map(&self) -> Value {
        json!({"epoch": 5, "active_gid": 4100, "active_name": "x", "active_addrs": {"addrvec": [
               {"type": "v1", "addr": "127.0.0.1:6810", "nonce": 0}]}, "active_addr": "127.0.0.1:6810/0",
               "active_change": "2026-11-21T12:02:20.000000+0000", "available": true, "standbys": [],
               "modules": ["hello", "prometheus"], "available_modules": [], "services": {},
               "always_on_modules": {}})
    }

    pub fn io_rate(&self) -> Value {
        json!({"pg_stats_delta": {"stat_sum": self.pg_stat_sum(0, 0, 0), "stamp_delta": "5.000000"}})
    }

    /// Publishes every document into `store`.
    pub fn publish(&self, store: &ClusterStateStore) {
        use ClusterDataName as N;
        store.set(N::OsdMap, self.osd_map());
        store.set(N::OsdMapTree, self.osd_map_tree());
        store.set(N::OsdMapCrush, self.osd_map_crush());
        store.set(N::PgSummary, self.pg_summary());
        store.set(N::PgStatus, self.pg_status());
        store.set(N::PgDump, self.pg_dump());
        store.set(N::PgStats, json!({"pg_stats": self.pg_stats()}));
        store.set(N::OsdStats, json!({"osd_stats": self.osd_stats()}));
        store.set(N::PoolStats, json!({"pool_stats": self.pool_stats()}));
        store.set(N::Df, self.df());
        store.set(N::Health, self.health());
        store.set(N::MonStatus, self.mon_status());
        store.set(N::MonMap, self.mon_status()["monmap"].clone());
        store.set(N::MgrMap, self.mgr_map());
        store.set(N::IoRate, self.io_rate());
    }
}

/// A scripted host: records mon commands and answers them from a table
/// (`prefix` -> reply), or never (`hang_prefixes`) to test timeouts.
pub struct FakeHost {
    pub mgr_id: String,
    pub connected: AtomicBool,
    pub replies: Mutex<BTreeMap<String, MonCommandReply>>,
    pub hang_prefixes: Mutex<Vec<String>>,
    pub commands: Mutex<Vec<Value>>,
    pub clog: Mutex<Vec<(String, ClogPriority, String)>>,
    held: Mutex<Vec<MonCommandCompletion>>,
}

impl FakeHost {
    pub fn new(mgr_id: &str) -> Arc<FakeHost> {
        Arc::new(FakeHost {
            mgr_id: mgr_id.to_string(),
            connected: AtomicBool::new(true),
            replies: Mutex::new(BTreeMap::new()),
            hang_prefixes: Mutex::new(Vec::new()),
            commands: Mutex::new(Vec::new()),
            clog: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
        })
    }
}

impl MgrHost for FakeHost {
    fn mgr_id(&self) -> String {
        self.mgr_id.clone()
    }

    fn have_mon_connection(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    fn mon_command(&self, cmd: Value, _inbuf: Vec<u8>, done: MonCommandCompletion) {
        let prefix = cmd["prefix"].as_str().unwrap_or_default().to_string();
        self.commands.lock().push(cmd);
        if self.hang_prefixes.lock().contains(&prefix) {
            self.held.lock().push(done);
            return;
        }
        // Answer from another thread, as the daemon's mon client would.
        let reply = self
            .replies
            .lock()
            .get(&prefix)
            .cloned()
            .unwrap_or(MonCommandReply {
                retval: crate::host::EINVAL,
                outb: Vec::new(),
                outs: format!("unknown command {prefix}"),
            });
        std::thread::spawn(move || done.complete(reply));
    }

    fn cluster_log(&self, channel: &str, priority: ClogPriority, message: &str) {
        self.clog
            .lock()
            .push((channel.to_string(), priority, message.to_string()));
    }
}
