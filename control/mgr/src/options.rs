//! The mgr's settings, with Ceph's option names and defaults. Each can be
//! set in the conf file (`[mgr]`, `[mgr.NAME]` or `[global]`); tests
//! shorten the periods.

use std::time::Duration;

use kalmar_common::config::{Conf, ConfError};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct MgrOptions {
    /// Beacon period to the mon (Ceph's `mgr_tick_period`).
    pub mgr_tick_period: Duration,
    /// Report period handed to daemons in MgrConfigure.
    pub mgr_stats_period: Duration,
    /// Counters below this priority are not reported by daemons.
    pub mgr_stats_threshold: u8,
    /// How often the active mgr asks the mon for health and status (the
    /// `MMgrDigest` period, `mon_mgr_digest_period`).
    pub mgr_digest_period: Duration,
    /// Rate samples kept for client I/O and recovery rates (Ceph's
    /// `mon_stat_smooth_intervals`).
    pub mgr_stat_smooth_intervals: usize,
    /// A PG whose primary's report is older than this shows `stale`.
    pub mgr_pg_stale_timeout: Duration,
    /// Plugin folders (colon-separated), searched before the shipped ones.
    pub mgr_module_path: Option<String>,
    /// Modules that run whatever the MgrMap's enabled set says.
    pub mgr_always_on_modules: Vec<String>,
    /// Bound on a mon command the mgr (or a plugin) sends.
    pub mgr_mon_command_timeout: Duration,
    /// Bound on a plugin command (`tell mgr ...`).
    pub mgr_command_timeout: Duration,
    /// Daemons tracked at most (reports from more are refused).
    pub mgr_max_daemons: usize,
    /// Commands served at once; more get EBUSY.
    pub mgr_max_inflight_commands: usize,
    /// Module options from the conf (`mgr/<module>/<option> = value`
    /// keys, as Ceph's conf file allows); options set at run time win.
    pub module_config: std::collections::BTreeMap<String, String>,
}

impl Default for MgrOptions {
    fn default() -> Self {
        MgrOptions {
            mgr_tick_period: Duration::from_secs(2),
            mgr_stats_period: Duration::from_secs(5),
            mgr_stats_threshold: kalmar_proto::mgr::DEFAULT_STATS_THRESHOLD,
            mgr_digest_period: Duration::from_secs(5),
            mgr_stat_smooth_intervals: 6,
            mgr_pg_stale_timeout: Duration::from_secs(60),
            mgr_module_path: None,
            mgr_always_on_modules: vec!["status".to_string()],
            mgr_mon_command_timeout: Duration::from_secs(30),
            mgr_command_timeout: Duration::from_secs(30),
            mgr_max_daemons: 10_000,
            mgr_max_inflight_commands: 64,
            module_config: Default::default(),
        }
    }
}

impl MgrOptions {
    /// Reads every option for `entity` (`mgr.x`), defaults for the rest.
    pub fn from_conf(conf: &Conf, entity: &str) -> Result<MgrOptions, ConfError> {
        let d = MgrOptions::default();
        let secs = |key: &str, default: Duration| -> Result<Duration, ConfError> {
            Ok(conf.get_secs(entity, key)?.unwrap_or(default))
        };
        let count = |key: &str, default: usize| -> Result<usize, ConfError> {
            Ok(conf
                .get_number(entity, key)?
                .map_or(default, |v| v.max(1.0) as usize))
        };
        let always_on = match conf.get::<String>(entity, "mgr_always_on_modules")? {
            Some(s) => s
                .split([',', ' '])
                .filter(|m| !m.is_empty())
                .map(String::from)
                .collect(),
            None => d.mgr_always_on_modules.clone(),
        };
        Ok(MgrOptions {
            mgr_tick_period: secs("mgr_tick_period", d.mgr_tick_period)?,
            mgr_stats_period: secs("mgr_stats_period", d.mgr_stats_period)?,
            mgr_stats_threshold: conf
                .get_number(entity, "mgr_stats_threshold")?
                .map_or(d.mgr_stats_threshold, |v| v.clamp(0.0, 10.0) as u8),
            mgr_digest_period: secs("mgr_digest_period", d.mgr_digest_period)?,
            mgr_stat_smooth_intervals: count(
                "mgr_stat_smooth_intervals",
                d.mgr_stat_smooth_intervals,
            )?
            .max(2),
            mgr_pg_stale_timeout: secs("mgr_pg_stale_timeout", d.mgr_pg_stale_timeout)?,
            mgr_module_path: conf.get::<String>(entity, "mgr_module_path")?,
            mgr_always_on_modules: always_on,
            mgr_mon_command_timeout: secs("mgr_mon_command_timeout", d.mgr_mon_command_timeout)?,
            mgr_command_timeout: secs("mgr_command_timeout", d.mgr_command_timeout)?,
            mgr_max_daemons: count("mgr_max_daemons", d.mgr_max_daemons)?,
            mgr_max_inflight_commands: count(
                "mgr_max_inflight_commands",
                d.mgr_max_inflight_commands,
            )?,
            module_config: module_config(conf, entity),
        })
    }

    /// `config show` on the admin socket.
    pub fn to_json(&self) -> Value {
        json!({
            "mgr_tick_period": self.mgr_tick_period.as_secs_f64(),
            "mgr_stats_period": self.mgr_stats_period.as_secs_f64(),
            "mgr_stats_threshold": self.mgr_stats_threshold,
            "mgr_digest_period": self.mgr_digest_period.as_secs_f64(),
            "mgr_stat_smooth_intervals": self.mgr_stat_smooth_intervals,
            "mgr_pg_stale_timeout": self.mgr_pg_stale_timeout.as_secs_f64(),
            "mgr_module_path": self.mgr_module_path.clone().unwrap_or_default(),
            "mgr_always_on_modules": self.mgr_always_on_modules.join(","),
            "mgr_mon_command_timeout": self.mgr_mon_command_timeout.as_secs_f64(),
            "mgr_command_timeout": self.mgr_command_timeout.as_secs_f64(),
            "mgr_max_daemons": self.mgr_max_daemons,
            "mgr_max_inflight_commands": self.mgr_max_inflight_commands,
        })
    }
}

/// `mgr/...` keys of `[global]`, `[mgr]` and `[mgr.NAME]` (later sections
/// win), as strings.
fn module_config(conf: &Conf, entity: &str) -> std::collections::BTreeMap<String, String> {
    let ty = entity.split('.').next().unwrap_or(entity);
    let mut out = std::collections::BTreeMap::new();
    for section in ["global", ty, entity] {
        let Some(t) = conf.table().get(section).and_then(|s| s.as_table()) else {
            continue;
        };
        for (k, v) in t.iter().filter(|(k, _)| k.starts_with("mgr/")) {
            let v = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.insert(k.clone(), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_overrides_defaults() {
        let conf = Conf::parse(
            "[global]\nmgr_tick_period = 0.5\n[mgr]\nmgr_stats_period = 1\nmgr_always_on_modules = \"status,hello\"\n",
        )
        .expect("toml");
        let o = MgrOptions::from_conf(&conf, "mgr.x").expect("options");
        assert_eq!(o.mgr_tick_period, Duration::from_millis(500));
        assert_eq!(o.mgr_stats_period, Duration::from_secs(1));
        assert_eq!(o.mgr_always_on_modules, ["status", "hello"]);
        assert_eq!(o.mgr_digest_period, Duration::from_secs(5));
        let c = Conf::parse(
            "[global]\n\"mgr/prometheus/server_port\" = 0\n[\"mgr.x\"]\n\"mgr/hello/a\" = \"b\"\n",
        )
        .expect("toml");
        let o = MgrOptions::from_conf(&c, "mgr.x").expect("options");
        assert_eq!(o.module_config["mgr/prometheus/server_port"], "0");
        assert_eq!(o.module_config["mgr/hello/a"], "b");
        let bad = Conf::parse("[mgr]\nmgr_tick_period = \"soon\"\n").expect("toml");
        assert!(MgrOptions::from_conf(&bad, "mgr.x").is_err());
    }
}
