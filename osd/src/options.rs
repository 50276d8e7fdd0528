//! Every bound, interval and switch of the OSD, with Ceph's option names
//! and (where Ceph has one) Ceph's default. Each can be set in the conf
//! file (`[global]`, `[osd]`, `["osd.N"]`); tests shorten the times.

use std::time::Duration;

use kalmar_common::config::{Conf, ConfError};
use kalmar_peering::PeeringSettings;
use serde_json::{json, Map, Value};

/// Smallest CRUSH weight a device's size gives (Ceph's floor of
/// .00001 is below CRUSH's 16.16 resolution; this is one step of it, so a
/// tiny device still gets data).
pub const MIN_SIZE_WEIGHT: f64 = 1.0 / 65536.0;

/// [`OsdOptions::initial_crush_weight`] from the option's value alone
/// (mkfs registers the OSD with it before a store exists to mount).
pub fn initial_crush_weight(option: f64, device_bytes: u64) -> f64 {
    if option >= 0.0 {
        return option;
    }
    (device_bytes as f64 / (1u64 << 40) as f64).max(MIN_SIZE_WEIGHT)
}

#[derive(Debug, Clone, PartialEq)]
pub struct OsdOptions {
    /// Ping every heartbeat peer this often.
    pub osd_heartbeat_interval: Duration,
    /// A peer silent for longer is reported to the mon as failed.
    pub osd_heartbeat_grace: Duration,
    /// Ping at least this many peers (neighbours by id) even without
    /// shared PGs, so failures are noticed in an empty cluster.
    pub osd_heartbeat_min_peers: usize,
    /// Liveness beacon to the mon.
    pub osd_beacon_report_interval: Duration,
    /// PG and OSD statistics to the mon.
    pub osd_mon_report_interval: Duration,
    /// On a clean stop, how long to wait for the mon to ack the OSD's
    /// request to be marked down (0: do not ask, stop at once).
    pub osd_mon_shutdown_timeout: Duration,
    /// Map epochs kept in the meta collection; older ones are trimmed.
    pub osd_map_max_epochs_stored: u32,
    /// Map epochs trimmed per transaction.
    pub osd_target_transaction_size: u32,
    /// Map epochs kept decoded in memory.
    pub osd_map_cache_size: usize,
    /// PG log length kept before trimming, and trimmed requests remembered
    /// for resend detection.
    pub osd_max_pg_log_entries: usize,
    pub osd_pg_log_dups_tracked: usize,
    /// Client ops waiting inside one PG (PG not active, object busy);
    /// beyond it new ops are refused with EAGAIN.
    pub osd_pg_max_queued_ops: usize,
    /// Shards (threads, each with its PGs, its journal zone and its store
    /// ring); default: the cores this process may run on.
    pub osd_op_num_shards: usize,
    /// A client op waiting longer than this in a PG is answered ETIMEDOUT.
    pub osd_op_queue_timeout: Duration,
    /// Client ops and their payload bytes in flight in the whole OSD;
    /// beyond them the OSD stops reading client connections.
    pub osd_client_message_cap: usize,
    pub osd_client_message_size_cap: u64,
    pub osd_max_write_size: u64,
    pub osd_max_object_size: u64,
    pub osd_max_object_name_len: usize,
    pub osd_max_attr_name_len: usize,
    pub osd_max_attr_size: u64,
    /// Object infos cached per PG (idle ones are evicted beyond it).
    pub osd_pg_object_cache_size: usize,
    /// Recovery and backfill bounds.
    pub osd_recovery_max_active: usize,
    pub osd_max_backfills: usize,
    pub osd_backfill_scan_max: usize,
    /// Data bytes per push message: a larger object travels in several
    /// (bounded by `osd_max_write_size`, so a chunk always fits the
    /// cluster messenger's frames). Objects of any size recover this way;
    /// there is no size limit on recovery (the former
    /// `osd_recovery_max_object_size` is gone; Ceph has none either).
    pub osd_recovery_max_chunk: u64,
    /// Pause between a PG's recovery or backfill pushes (Ceph's
    /// `osd_recovery_sleep`; 0 = none): throttles recovery in favour of
    /// client I/O.
    pub osd_recovery_sleep: Duration,
    /// Wait in `backfill_toofull` before asking the targets again.
    pub osd_backfill_retry_interval: Duration,
    /// Wait in `recovery_toofull` before asking the members again.
    pub osd_recovery_retry_interval: Duration,
    pub osd_find_best_info_ignore_history_les: bool,
    /// Writes that add data are refused (ENOSPC) once the store is this
    /// full, so a transaction never runs out of space halfway through a
    /// replicated write.
    pub osd_failsafe_full_ratio: f64,
    /// Scrubs this OSD runs as primary at once.
    pub osd_max_scrubs: usize,
    /// A PG is scrubbed once its last scrub is this old, deep-scrubbed once
    /// its last deep scrub is this old (0: never scheduled).
    pub osd_scrub_min_interval: Duration,
    pub osd_deep_scrub_interval: Duration,
    /// Objects per scrub chunk: the range whose writes wait while every
    /// member builds its map (bounds the maps' memory too).
    pub osd_scrub_chunk_max: usize,
    /// Bytes read per store call when a deep scrub digests an object.
    pub osd_deep_scrub_stride: u64,
    /// Pause between chunks (0: none).
    pub osd_scrub_sleep: Duration,
    /// A chunk whose maps have not all arrived after this is abandoned
    /// (the scrub ends without a result and writes go on).
    pub osd_scrub_map_timeout: Duration,
    /// Inconsistent objects a scrub keeps for `list-inconsistent-obj`
    /// (the rest are counted, not listed).
    pub osd_scrub_max_recorded_inconsistent: usize,
    /// CRUSH weight an OSD gives itself at its first boot (Ceph's
    /// `osd_crush_initial_weight`); negative (the default, -1): the size of
    /// its device in TiB.
    pub osd_crush_initial_weight: f64,
}

impl Default for OsdOptions {
    fn default() -> Self {
        OsdOptions {
            osd_heartbeat_interval: Duration::from_secs(6),
            osd_heartbeat_grace: Duration::from_secs(20),
            osd_heartbeat_min_peers: 10,
            osd_beacon_report_interval: Duration::from_secs(300),
            osd_mon_report_interval: Duration::from_secs(5),
            osd_mon_shutdown_timeout: Duration::from_secs(5),
            osd_map_max_epochs_stored: 500,
            osd_target_transaction_size: 30,
            osd_map_cache_size: 50,
            osd_max_pg_log_entries: 3000,
            osd_pg_log_dups_tracked: 3000,
            osd_pg_max_queued_ops: 1024,
            osd_op_num_shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            osd_op_queue_timeout: Duration::from_secs(30),
            osd_client_message_cap: 256,
            osd_client_message_size_cap: 500 << 20,
            osd_max_write_size: 90 << 20,
            osd_max_object_size: 128 << 20,
            osd_max_object_name_len: 2048,
            osd_max_attr_name_len: 100,
            osd_max_attr_size: 64 << 10,
            osd_pg_object_cache_size: 4096,
            osd_recovery_max_active: 3,
            osd_max_backfills: 1,
            osd_backfill_scan_max: 512,
            osd_recovery_max_chunk: 8 << 20,
            osd_recovery_sleep: Duration::ZERO,
            osd_backfill_retry_interval: Duration::from_secs(30),
            osd_recovery_retry_interval: Duration::from_secs(30),
            osd_find_best_info_ignore_history_les: false,
            osd_failsafe_full_ratio: 0.97,
            osd_max_scrubs: 1,
            osd_scrub_min_interval: Duration::from_secs(24 * 3600),
            osd_deep_scrub_interval: Duration::from_secs(7 * 24 * 3600),
            osd_scrub_chunk_max: 25,
            osd_deep_scrub_stride: 512 << 10,
            osd_scrub_sleep: Duration::ZERO,
            osd_scrub_map_timeout: Duration::from_secs(120),
            osd_scrub_max_recorded_inconsistent: 1000,
            osd_crush_initial_weight: -1.0,
        }
    }
}

/// Reads a number that TOML may hold as an integer or a float.
fn num(conf: &Conf, entity: &str, key: &str) -> Result<Option<f64>, ConfError> {
    match conf.get::<toml::Value>(entity, key)? {
        None => Ok(None),
        Some(toml::Value::Integer(i)) => Ok(Some(i as f64)),
        Some(toml::Value::Float(f)) => Ok(Some(f)),
        Some(other) => Err(ConfError::Type {
            section: entity.into(),
            key: key.into(),
            detail: format!("expected a number, got {other}"),
        }),
    }
}

fn bad(entity: &str, key: &str, detail: String) -> ConfError {
    ConfError::Type {
        section: entity.into(),
        key: key.into(),
        detail,
    }
}

struct Reader<'a> {
    conf: &'a Conf,
    entity: &'a str,
}

impl Reader<'_> {
    fn secs(&self, key: &str, d: Duration) -> Result<Duration, ConfError> {
        match num(self.conf, self.entity, key)? {
            None => Ok(d),
            Some(s) if s.is_finite() && s > 0.0 => Ok(Duration::from_secs_f64(s)),
            Some(s) => Err(bad(
                self.entity,
                key,
                format!("{s} is not a positive duration in seconds"),
            )),
        }
    }

    /// Seconds, where 0 means "off" or "none".
    fn secs_or_zero(&self, key: &str, d: Duration) -> Result<Duration, ConfError> {
        match num(self.conf, self.entity, key)? {
            None => Ok(d),
            Some(s) if s.is_finite() && s >= 0.0 => Ok(Duration::from_secs_f64(s)),
            Some(s) => Err(bad(
                self.entity,
                key,
                format!("{s} is not a duration in seconds (>= 0)"),
            )),
        }
    }

    fn int(&self, key: &str, d: u64, min: u64) -> Result<u64, ConfError> {
        match num(self.conf, self.entity, key)? {
            None => Ok(d),
            Some(v) if v.is_finite() && v >= min as f64 && v.fract() == 0.0 => Ok(v as u64),
            Some(v) => Err(bad(
                self.entity,
                key,
                format!("{v} is not an integer >= {min}"),
            )),
        }
    }

    fn usize(&self, key: &str, d: usize, min: usize) -> Result<usize, ConfError> {
        Ok(self.int(key, d as u64, min as u64)? as usize)
    }
}

impl OsdOptions {
    /// Options for `entity` (`osd.3`) from the conf; defaults elsewhere.
    pub fn from_conf(conf: &Conf, entity: &str) -> Result<OsdOptions, ConfError> {
        let d = OsdOptions::default();
        let r = Reader { conf, entity };
        Ok(OsdOptions {
            osd_heartbeat_interval: r.secs("osd_heartbeat_interval", d.osd_heartbeat_interval)?,
            osd_heartbeat_grace: r.secs("osd_heartbeat_grace", d.osd_heartbeat_grace)?,
            osd_heartbeat_min_peers: r.usize(
                "osd_heartbeat_min_peers",
                d.osd_heartbeat_min_peers,
                0,
            )?,
            osd_beacon_report_interval: r
                .secs("osd_beacon_report_interval", d.osd_beacon_report_interval)?,
            osd_mon_report_interval: r
                .secs("osd_mon_report_interval", d.osd_mon_report_interval)?,
            osd_mon_shutdown_timeout: r
                .secs_or_zero("osd_mon_shutdown_timeout", d.osd_mon_shutdown_timeout)?,
            osd_map_max_epochs_stored: r
                .int(
                    "osd_map_max_epochs_stored",
                    d.osd_map_max_epochs_stored.into(),
                    2,
                )?
                .min(u32::MAX.into()) as u32,
            osd_target_transaction_size: r
                .int(
                    "osd_target_transaction_size",
                    d.osd_target_transaction_size.into(),
                    1,
                )?
                .min(10_000) as u32,
            osd_map_cache_size: r.usize("osd_map_cache_size", d.osd_map_cache_size, 2)?,
            osd_max_pg_log_entries: r.usize(
                "osd_max_pg_log_entries",
                d.osd_max_pg_log_entries,
                1,
            )?,
            osd_pg_log_dups_tracked: r.usize(
                "osd_pg_log_dups_tracked",
                d.osd_pg_log_dups_tracked,
                0,
            )?,
            osd_pg_max_queued_ops: r.usize("osd_pg_max_queued_ops", d.osd_pg_max_queued_ops, 1)?,
            osd_op_num_shards: r
                .usize("osd_op_num_shards", d.osd_op_num_shards, 1)?
                .min(kalmar_objectstore::layout::MAX_ZONES),
            osd_op_queue_timeout: r.secs("osd_op_queue_timeout", d.osd_op_queue_timeout)?,
            osd_client_message_cap: r.usize(
                "osd_client_message_cap",
                d.osd_client_message_cap,
                1,
            )?,
            osd_client_message_size_cap: r.int(
                "osd_client_message_size_cap",
                d.osd_client_message_size_cap,
                1 << 20,
            )?,
            osd_max_write_size: r.int("osd_max_write_size", d.osd_max_write_size, 4096)?,
            osd_max_object_size: r.int("osd_max_object_size", d.osd_max_object_size, 4096)?,
            osd_max_object_name_len: r
                .usize("osd_max_object_name_len", d.osd_max_object_name_len, 1)?
                .min(kalmar_objectstore::types::MAX_OBJECT_NAME_BYTES),
            osd_max_attr_name_len: r
                .usize("osd_max_attr_name_len", d.osd_max_attr_name_len, 1)?
                .min(kalmar_objectstore::types::MAX_XATTR_NAME_BYTES - 1),
            osd_max_attr_size: r.int("osd_max_attr_size", d.osd_max_attr_size, 1)?,
            osd_pg_object_cache_size: r.usize(
                "osd_pg_object_cache_size",
                d.osd_pg_object_cache_size,
                16,
            )?,
            osd_recovery_max_active: r.usize(
                "osd_recovery_max_active",
                d.osd_recovery_max_active,
                1,
            )?,
            osd_max_backfills: r.usize("osd_max_backfills", d.osd_max_backfills, 1)?,
            osd_backfill_scan_max: r.usize("osd_backfill_scan_max", d.osd_backfill_scan_max, 1)?,
            osd_recovery_max_chunk: r
                .int("osd_recovery_max_chunk", d.osd_recovery_max_chunk, 4096)?
                .min(r.int("osd_max_write_size", d.osd_max_write_size, 4096)?),
            osd_recovery_sleep: r.secs_or_zero("osd_recovery_sleep", d.osd_recovery_sleep)?,
            osd_backfill_retry_interval: r
                .secs("osd_backfill_retry_interval", d.osd_backfill_retry_interval)?,
            osd_recovery_retry_interval: r
                .secs("osd_recovery_retry_interval", d.osd_recovery_retry_interval)?,
            osd_find_best_info_ignore_history_les: conf
                .get(entity, "osd_find_best_info_ignore_history_les")?
                .unwrap_or(d.osd_find_best_info_ignore_history_les),
            osd_failsafe_full_ratio: match num(conf, entity, "osd_failsafe_full_ratio")? {
                None => d.osd_failsafe_full_ratio,
                Some(r) if (0.0..=1.0).contains(&r) => r,
                Some(r) => {
                    return Err(bad(
                        entity,
                        "osd_failsafe_full_ratio",
                        format!("{r} is not a ratio in 0..1"),
                    ))
                }
            },
            osd_max_scrubs: r.usize("osd_max_scrubs", d.osd_max_scrubs, 1)?,
            osd_scrub_min_interval: r
                .secs_or_zero("osd_scrub_min_interval", d.osd_scrub_min_interval)?,
            osd_deep_scrub_interval: r
                .secs_or_zero("osd_deep_scrub_interval", d.osd_deep_scrub_interval)?,
            osd_scrub_chunk_max: r.usize("osd_scrub_chunk_max", d.osd_scrub_chunk_max, 1)?,
            osd_deep_scrub_stride: r.int("osd_deep_scrub_stride", d.osd_deep_scrub_stride, 4096)?,
            osd_scrub_sleep: r.secs_or_zero("osd_scrub_sleep", d.osd_scrub_sleep)?,
            osd_scrub_map_timeout: r.secs("osd_scrub_map_timeout", d.osd_scrub_map_timeout)?,
            osd_scrub_max_recorded_inconsistent: r.usize(
                "osd_scrub_max_recorded_inconsistent",
                d.osd_scrub_max_recorded_inconsistent,
                1,
            )?,
            osd_crush_initial_weight: match num(conf, entity, "osd_crush_initial_weight")? {
                None => d.osd_crush_initial_weight,
                Some(w) if w.is_finite() && w < 65535.0 => w,
                Some(w) => {
                    return Err(bad(
                        entity,
                        "osd_crush_initial_weight",
                        format!(
                            "{w} is not a CRUSH weight (below 65535; negative: by device size)"
                        ),
                    ))
                }
            },
        })
    }

    /// The settings the PG state machine obeys.
    pub fn peering(&self) -> PeeringSettings {
        PeeringSettings {
            osd_max_pg_log_entries: self.osd_max_pg_log_entries,
            osd_pg_log_dups_tracked: self.osd_pg_log_dups_tracked,
            osd_recovery_max_active: self.osd_recovery_max_active,
            osd_backfill_scan_max: self.osd_backfill_scan_max,
            osd_find_best_info_ignore_history_les: self.osd_find_best_info_ignore_history_les,
            osd_backfill_retry_interval_ms: self.osd_backfill_retry_interval.as_millis() as u64,
            osd_recovery_retry_interval_ms: self.osd_recovery_retry_interval.as_millis() as u64,
            ..PeeringSettings::default()
        }
    }

    /// The CRUSH weight this OSD gives itself at its first boot (Ceph's
    /// `OSD::update_crush_location`): `osd_crush_initial_weight` when it
    /// is >= 0, else the store's size in TiB, at least
    /// [`MIN_SIZE_WEIGHT`] so a small device is not left with weight 0.
    pub fn initial_crush_weight(&self, device_bytes: u64) -> f64 {
        initial_crush_weight(self.osd_crush_initial_weight, device_bytes)
    }

    /// `config show`: every option as Ceph prints it (strings, durations in
    /// seconds).
    pub fn to_json(&self) -> Value {
        let s = |d: Duration| d.as_secs_f64().to_string();
        let mut m = Map::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), json!(v));
        };
        put("osd_heartbeat_interval", s(self.osd_heartbeat_interval));
        put("osd_heartbeat_grace", s(self.osd_heartbeat_grace));
        put(
            "osd_heartbeat_min_peers",
            self.osd_heartbeat_min_peers.to_string(),
        );
        put(
            "osd_beacon_report_interval",
            s(self.osd_beacon_report_interval),
        );
        put("osd_mon_report_interval", s(self.osd_mon_report_interval));
        put("osd_mon_shutdown_timeout", s(self.osd_mon_shutdown_timeout));
        put(
            "osd_map_max_epochs_stored",
            self.osd_map_max_epochs_stored.to_string(),
        );
        put(
            "osd_target_transaction_size",
            self.osd_target_transaction_size.to_string(),
        );
        put("osd_map_cache_size", self.osd_map_cache_size.to_string());
        put(
            "osd_max_pg_log_entries",
            self.osd_max_pg_log_entries.to_string(),
        );
        put(
            "osd_pg_log_dups_tracked",
            self.osd_pg_log_dups_tracked.to_string(),
        );
        put(
            "osd_pg_max_queued_ops",
            self.osd_pg_max_queued_ops.to_string(),
        );
        put("osd_op_num_shards", self.osd_op_num_shards.to_string());
        put("osd_op_queue_timeout", s(self.osd_op_queue_timeout));
        put(
            "osd_client_message_cap",
            self.osd_client_message_cap.to_string(),
        );
        put(
            "osd_client_message_size_cap",
            self.osd_client_message_size_cap.to_string(),
        );
        put("osd_max_write_size", self.osd_max_write_size.to_string());
        put("osd_max_object_size", self.osd_max_object_size.to_string());
        put(
            "osd_max_object_name_len",
            self.osd_max_object_name_len.to_string(),
        );
        put(
            "osd_max_attr_name_len",
            self.osd_max_attr_name_len.to_string(),
        );
        put("osd_max_attr_size", self.osd_max_attr_size.to_string());
        put(
            "osd_pg_object_cache_size",
            self.osd_pg_object_cache_size.to_string(),
        );
        put(
            "osd_recovery_max_active",
            self.osd_recovery_max_active.to_string(),
        );
        put("osd_max_backfills", self.osd_max_backfills.to_string());
        put(
            "osd_backfill_scan_max",
            self.osd_backfill_scan_max.to_string(),
        );
        put(
            "osd_recovery_max_chunk",
            self.osd_recovery_max_chunk.to_string(),
        );
        put("osd_recovery_sleep", s(self.osd_recovery_sleep));
        put(
            "osd_backfill_retry_interval",
            s(self.osd_backfill_retry_interval),
        );
        put(
            "osd_recovery_retry_interval",
            s(self.osd_recovery_retry_interval),
        );
        put(
            "osd_failsafe_full_ratio",
            self.osd_failsafe_full_ratio.to_string(),
        );
        put(
            "osd_find_best_info_ignore_history_les",
            self.osd_find_best_info_ignore_history_les.to_string(),
        );
        put("osd_max_scrubs", self.osd_max_scrubs.to_string());
        put("osd_scrub_min_interval", s(self.osd_scrub_min_interval));
        put("osd_deep_scrub_interval", s(self.osd_deep_scrub_interval));
        put("osd_scrub_chunk_max", self.osd_scrub_chunk_max.to_string());
        put(
            "osd_deep_scrub_stride",
            self.osd_deep_scrub_stride.to_string(),
        );
        put("osd_scrub_sleep", s(self.osd_scrub_sleep));
        put("osd_scrub_map_timeout", s(self.osd_scrub_map_timeout));
        put(
            "osd_scrub_max_recorded_inconsistent",
            self.osd_scrub_max_recorded_inconsistent.to_string(),
        );
        put(
            "osd_crush_initial_weight",
            self.osd_crush_initial_weight.to_string(),
        );
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_overrides_and_validation() {
        let conf = Conf::parse(
            r#"
[global]
osd_heartbeat_grace = 3
[osd]
osd_heartbeat_interval = 0.5
osd_max_pg_log_entries = 50
osd_deep_scrub_interval = 0
["osd.2"]
osd_heartbeat_interval = 2
"#,
        )
        .expect("toml");
        let o = OsdOptions::from_conf(&conf, "osd.1").expect("valid");
        assert_eq!(o.osd_heartbeat_grace, Duration::from_secs(3));
        assert_eq!(o.osd_heartbeat_interval, Duration::from_millis(500));
        assert_eq!(o.osd_max_pg_log_entries, 50);
        assert_eq!(o.peering().osd_max_pg_log_entries, 50);
        assert_eq!(o.osd_deep_scrub_interval, Duration::ZERO, "0 turns it off");
        assert_eq!(o.osd_scrub_chunk_max, 25);
        let o2 = OsdOptions::from_conf(&conf, "osd.2").expect("valid");
        assert_eq!(o2.osd_heartbeat_interval, Duration::from_secs(2));
        for bad in [
            "[osd]\nosd_heartbeat_grace = -1\n",
            "[osd]\nosd_max_pg_log_entries = 0\n",
            "[osd]\nosd_max_pg_log_entries = 1.5\n",
            "[osd]\nosd_heartbeat_grace = \"soon\"\n",
            "[osd]\nosd_scrub_min_interval = -1\n",
            "[osd]\nosd_scrub_chunk_max = 0\n",
            "[osd]\nosd_recovery_sleep = -0.1\n",
            "[osd]\nosd_mon_shutdown_timeout = -1\n",
            "[osd]\nosd_backfill_retry_interval = 0\n",
            "[osd]\nosd_crush_initial_weight = 70000\n",
            "[osd]\nosd_crush_initial_weight = \"big\"\n",
        ] {
            let c = Conf::parse(bad).expect("toml");
            assert!(OsdOptions::from_conf(&c, "osd.0").is_err(), "{bad}");
        }
        assert_eq!(o.osd_recovery_sleep, Duration::ZERO, "off by default");
        let c = Conf::parse("[osd]\nosd_recovery_sleep = 0.05\n").expect("toml");
        let o3 = OsdOptions::from_conf(&c, "osd.0").expect("valid");
        assert_eq!(o3.osd_recovery_sleep, Duration::from_millis(50));
        let c = Conf::parse("[osd]\nosd_recovery_sleep = 0\n").expect("toml");
        let o4 = OsdOptions::from_conf(&c, "osd.0").expect("valid");
        assert_eq!(o4.osd_recovery_sleep, Duration::ZERO);
        assert_eq!(o4.osd_recovery_max_chunk, 8 << 20);
        assert_eq!(o4.osd_mon_shutdown_timeout, Duration::from_secs(5));
        let c = Conf::parse("[osd]\nosd_mon_shutdown_timeout = 0\n").expect("toml");
        let o6 = OsdOptions::from_conf(&c, "osd.0").expect("valid");
        assert_eq!(o6.osd_mon_shutdown_timeout, Duration::ZERO, "0 skips it");
        assert_eq!(o4.osd_backfill_retry_interval, Duration::from_secs(30));
        let c = Conf::parse("[osd]\nosd_backfill_retry_interval = 0.5\n").expect("toml");
        let o7 = OsdOptions::from_conf(&c, "osd.0").expect("valid");
        assert_eq!(o7.peering().osd_backfill_retry_interval_ms, 500);
        assert_eq!(o7.peering().osd_recovery_retry_interval_ms, 30_000);
        let c = Conf::parse(
            "[osd]\nosd_recovery_max_chunk = 1073741824\nosd_max_write_size = 1048576\n",
        )
        .expect("toml");
        let o5 = OsdOptions::from_conf(&c, "osd.0").expect("valid");
        assert_eq!(o5.osd_recovery_max_chunk, 1 << 20, "a chunk fits a write");
        let j = o.to_json();
        assert_eq!(j["osd_crush_initial_weight"], json!("-1"));
        assert_eq!(j["osd_heartbeat_interval"], json!("0.5"));
        assert_eq!(j["osd_max_pg_log_entries"], json!("50"));
    }

    #[test]
    fn initial_crush_weight_by_option_else_by_size() {
        const TIB: u64 = 1 << 40;
        // Unset: the device's size in TiB, with a floor for tiny devices.
        let d = OsdOptions::default();
        assert_eq!(d.initial_crush_weight(4 * TIB), 4.0);
        assert_eq!(d.initial_crush_weight(TIB / 2), 0.5);
        assert_eq!(d.initial_crush_weight(0), MIN_SIZE_WEIGHT);
        assert!(d.initial_crush_weight(2 << 30) > MIN_SIZE_WEIGHT);
        // Set (>= 0, 0 included): that weight whatever the size.
        for (text, want) in [("1.5", 1.5), ("0", 0.0), ("3", 3.0)] {
            let c =
                Conf::parse(&format!("[osd]\nosd_crush_initial_weight = {text}\n")).expect("toml");
            let o = OsdOptions::from_conf(&c, "osd.0").expect("valid");
            assert_eq!(o.initial_crush_weight(4 * TIB), want, "{text}");
        }
        // Negative: back to the size, as Ceph's -1.
        let c = Conf::parse("[osd]\nosd_crush_initial_weight = -1\n").expect("toml");
        let o = OsdOptions::from_conf(&c, "osd.0").expect("valid");
        assert_eq!(o.initial_crush_weight(2 * TIB), 2.0);
    }
}
