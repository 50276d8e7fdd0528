//! The mon's settings, with Ceph's option names and defaults. Each can be
//! set in the conf file (`[mon]` or `[global]`); tests shorten the times.

use std::time::Duration;

use kalmar_common::config::{Conf, ConfError};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct MonOptions {
    /// Distinct OSDs that must report a peer before it is marked down.
    pub mon_osd_min_down_reporters: usize,
    /// How long a peer must have been failing before it is marked down.
    pub osd_heartbeat_grace: Duration,
    /// An up OSD without a beacon for this long is marked down.
    pub mon_osd_report_timeout: Duration,
    /// A down OSD is marked out after this long (unless `noout`).
    pub mon_osd_down_out_interval: Duration,
    /// Map epochs always kept (older ones are trimmed).
    pub mon_min_osdmap_epochs: u32,
    /// A mgr without a beacon for this long is dropped (the active one
    /// is replaced by a standby).
    pub mon_mgr_beacon_grace: Duration,
    /// After the mon starts, how long "no mgr" is not yet a health warning.
    pub mon_mgr_mkfs_grace: Duration,
    /// Period of the mon's timer (failure grace, down/out, mgr failover).
    pub mon_tick_interval: Duration,
    /// Most incrementals sent in one osdmap message; a subscriber further
    /// behind gets the newest full map instead.
    pub osd_map_message_max: u32,
    /// Pool defaults.
    pub osd_pool_default_size: u32,
    /// 0: `size - size / 2`, as Ceph computes it.
    pub osd_pool_default_min_size: u32,
    pub osd_pool_default_pg_num: u32,
    /// Largest pg_num a pool may have.
    pub mon_max_pool_pg_num: u32,
    /// Whether `osd pool rm` is allowed at all (Ceph's default is false;
    /// Kalmar's test clusters want it on).
    pub mon_allow_pool_delete: bool,
    /// CRUSH failure domain of the default rule at mkfs (1 = host; 0 = osd
    /// for single-machine clusters).
    pub osd_crush_chooseleaf_type: i32,
    /// Percent of a pool quota that raises POOL_NEAR_FULL (0: off, as
    /// in Ceph).
    pub mon_pool_quota_warn_threshold: u32,
    /// The OSDs' `osd_failsafe_full_ratio` (read from the same conf key),
    /// for the OSD_OUT_OF_ORDER_FULL health check.
    pub osd_failsafe_full_ratio: f64,
    /// With several mons: a follower that hears nothing from the leader
    /// for this long (randomized up to twice it) starts an election.
    pub mon_election_timeout: Duration,
    /// How often the leader mon heartbeats its followers.
    pub mon_heartbeat_interval: Duration,
    /// Bound on one map commit (a majority must store it in this time,
    /// else the change is dropped and its requester told to retry).
    pub mon_commit_timeout: Duration,
    /// Lifetime of the tickets the mon issues for OSD and mgr sessions
    /// (Ceph's `auth_service_ticket_ttl`); service secrets rotate on it.
    pub auth_service_ticket_ttl_secs: u64,
    /// Whether daemons must authenticate to each other
    /// (`auth_cluster_required`), clients to the services
    /// (`auth_service_required`), and whether clients demand that the
    /// daemons prove themselves (`auth_client_required`, as the mon's own
    /// conf says it). `health` warns (AUTH_INSECURE) while any is `none`,
    /// whether the conf says so or the default does.
    pub auth_cluster_required: kalmar_auth::AuthMode,
    pub auth_service_required: kalmar_auth::AuthMode,
    pub auth_client_required: kalmar_auth::AuthMode,
}

impl Default for MonOptions {
    fn default() -> Self {
        MonOptions {
            mon_osd_min_down_reporters: 2,
            osd_heartbeat_grace: Duration::from_secs(20),
            mon_osd_report_timeout: Duration::from_secs(900),
            mon_osd_down_out_interval: Duration::from_secs(600),
            mon_min_osdmap_epochs: 500,
            mon_mgr_beacon_grace: Duration::from_secs(30),
            mon_mgr_mkfs_grace: Duration::from_secs(120),
            mon_tick_interval: Duration::from_secs(5),
            osd_map_message_max: 40,
            osd_pool_default_size: 3,
            osd_pool_default_min_size: 0,
            osd_pool_default_pg_num: 32,
            mon_max_pool_pg_num: 65536,
            mon_allow_pool_delete: true,
            osd_crush_chooseleaf_type: 1,
            mon_pool_quota_warn_threshold: 0,
            osd_failsafe_full_ratio: 0.97,
            mon_election_timeout: Duration::from_millis(1000),
            mon_heartbeat_interval: Duration::from_millis(200),
            mon_commit_timeout: Duration::from_secs(10),
            auth_service_ticket_ttl_secs: kalmar_auth::source::DEFAULT_TICKET_TTL_SECS,
            auth_cluster_required: kalmar_auth::AuthMode::DEFAULT,
            auth_service_required: kalmar_auth::AuthMode::DEFAULT,
            auth_client_required: kalmar_auth::AuthMode::DEFAULT,
        }
    }
}

impl MonOptions {
    /// Options for `entity` (e.g. `mon.a`) from the conf, defaults elsewhere.
    pub fn from_conf(conf: &Conf, entity: &str) -> Result<MonOptions, ConfError> {
        let d = MonOptions::default();
        let int = |key: &str, default: u64| -> Result<u64, ConfError> {
            Ok(conf
                .get_number(entity, key)?
                .map(|v| v.max(0.0) as u64)
                .unwrap_or(default))
        };
        let dur = |key: &str, default: Duration| -> Result<Duration, ConfError> {
            Ok(conf.get_secs(entity, key)?.unwrap_or(default))
        };
        Ok(MonOptions {
            mon_osd_min_down_reporters: int(
                "mon_osd_min_down_reporters",
                d.mon_osd_min_down_reporters as u64,
            )?
            .max(1) as usize,
            osd_heartbeat_grace: dur("osd_heartbeat_grace", d.osd_heartbeat_grace)?,
            mon_osd_report_timeout: dur("mon_osd_report_timeout", d.mon_osd_report_timeout)?,
            mon_osd_down_out_interval: dur(
                "mon_osd_down_out_interval",
                d.mon_osd_down_out_interval,
            )?,
            mon_min_osdmap_epochs: int("mon_min_osdmap_epochs", d.mon_min_osdmap_epochs.into())?
                .clamp(1, u32::MAX.into()) as u32,
            mon_mgr_beacon_grace: dur("mon_mgr_beacon_grace", d.mon_mgr_beacon_grace)?,
            mon_mgr_mkfs_grace: dur("mon_mgr_mkfs_grace", d.mon_mgr_mkfs_grace)?,
            mon_tick_interval: dur("mon_tick_interval", d.mon_tick_interval)?
                .max(Duration::from_millis(10)),
            osd_map_message_max: int("osd_map_message_max", d.osd_map_message_max.into())?
                .clamp(1, 10_000) as u32,
            osd_pool_default_size: int("osd_pool_default_size", d.osd_pool_default_size.into())?
                .clamp(1, 10) as u32,
            osd_pool_default_min_size: int(
                "osd_pool_default_min_size",
                d.osd_pool_default_min_size.into(),
            )?
            .min(10) as u32,
            osd_pool_default_pg_num: int(
                "osd_pool_default_pg_num",
                d.osd_pool_default_pg_num.into(),
            )?
            .clamp(1, 65536) as u32,
            mon_max_pool_pg_num: int("mon_max_pool_pg_num", d.mon_max_pool_pg_num.into())?
                .clamp(1, 1 << 20) as u32,
            mon_allow_pool_delete: conf
                .get(entity, "mon_allow_pool_delete")?
                .unwrap_or(d.mon_allow_pool_delete),
            osd_crush_chooseleaf_type: int(
                "osd_crush_chooseleaf_type",
                d.osd_crush_chooseleaf_type as u64,
            )?
            .min(11) as i32,
            mon_pool_quota_warn_threshold: int(
                "mon_pool_quota_warn_threshold",
                d.mon_pool_quota_warn_threshold.into(),
            )?
            .min(100) as u32,
            // Ceph accepts percentages here too (97 = 0.97).
            osd_failsafe_full_ratio: match conf.get_number(entity, "osd_failsafe_full_ratio")? {
                Some(v) if v > 1.0 => v / 100.0,
                Some(v) => v.max(0.0),
                None => d.osd_failsafe_full_ratio,
            },
            mon_election_timeout: dur("mon_election_timeout", d.mon_election_timeout)?
                .max(Duration::from_millis(50)),
            mon_heartbeat_interval: dur("mon_heartbeat_interval", d.mon_heartbeat_interval)?
                .max(Duration::from_millis(10)),
            mon_commit_timeout: dur("mon_commit_timeout", d.mon_commit_timeout)?
                .max(Duration::from_millis(100)),
            auth_service_ticket_ttl_secs: int(
                "auth_service_ticket_ttl",
                d.auth_service_ticket_ttl_secs,
            )?
            .clamp(10, 30 * 86_400),
            auth_cluster_required: auth_mode(conf, entity, "auth_cluster_required")?,
            auth_service_required: auth_mode(conf, entity, "auth_service_required")?,
            auth_client_required: auth_mode(conf, entity, "auth_client_required")?,
        })
    }

    /// The mode the mon's listener requires: `cephx` when either option
    /// asks for it (its peers are daemons and clients alike).
    pub fn listener_auth_mode(&self) -> kalmar_auth::AuthMode {
        use kalmar_auth::AuthMode;
        if self.auth_cluster_required == AuthMode::Cephx
            || self.auth_service_required == AuthMode::Cephx
        {
            AuthMode::Cephx
        } else {
            AuthMode::None
        }
    }

    /// Which of the three `auth_*_required` options are `none` (the
    /// AUTH_INSECURE health check names them).
    pub fn auth_off(&self) -> crate::health::AuthOff {
        use kalmar_auth::AuthMode;
        crate::health::AuthOff {
            cluster: self.auth_cluster_required == AuthMode::None,
            service: self.auth_service_required == AuthMode::None,
            client: self.auth_client_required == AuthMode::None,
        }
    }

    /// `min_size` for a pool of `size` when none was given.
    pub fn default_min_size(&self, size: u32) -> u32 {
        match self.osd_pool_default_min_size {
            0 => size - size / 2,
            m => m.min(size),
        }
    }

    /// `config show` form: every option with its value as Ceph prints it
    /// (strings; durations in seconds).
    pub fn to_json(&self) -> Value {
        let s = |d: Duration| d.as_secs_f64().to_string();
        json!({
            "mon_osd_min_down_reporters": self.mon_osd_min_down_reporters.to_string(),
            "osd_heartbeat_grace": s(self.osd_heartbeat_grace),
            "mon_osd_report_timeout": s(self.mon_osd_report_timeout),
            "mon_osd_down_out_interval": s(self.mon_osd_down_out_interval),
            "mon_min_osdmap_epochs": self.mon_min_osdmap_epochs.to_string(),
            "mon_mgr_beacon_grace": s(self.mon_mgr_beacon_grace),
            "mon_mgr_mkfs_grace": s(self.mon_mgr_mkfs_grace),
            "mon_tick_interval": s(self.mon_tick_interval),
            "osd_map_message_max": self.osd_map_message_max.to_string(),
            "osd_pool_default_size": self.osd_pool_default_size.to_string(),
            "osd_pool_default_min_size": self.osd_pool_default_min_size.to_string(),
            "osd_pool_default_pg_num": self.osd_pool_default_pg_num.to_string(),
            "mon_max_pool_pg_num": self.mon_max_pool_pg_num.to_string(),
            "mon_allow_pool_delete": self.mon_allow_pool_delete.to_string(),
            "osd_crush_chooseleaf_type": self.osd_crush_chooseleaf_type.to_string(),
            "mon_pool_quota_warn_threshold": self.mon_pool_quota_warn_threshold.to_string(),
            "osd_failsafe_full_ratio": self.osd_failsafe_full_ratio.to_string(),
            "mon_election_timeout": s(self.mon_election_timeout),
            "mon_heartbeat_interval": s(self.mon_heartbeat_interval),
            "mon_commit_timeout": s(self.mon_commit_timeout),
            "auth_service_ticket_ttl": self.auth_service_ticket_ttl_secs.to_string(),
            "auth_cluster_required": self.auth_cluster_required.as_str(),
            "auth_service_required": self.auth_service_required.as_str(),
            "auth_client_required": self.auth_client_required.as_str(),
        })
    }
}

/// An `auth_*_required` option: `cephx` or `none` (absent:
/// [`kalmar_auth::AuthMode::DEFAULT`], `cephx`).
pub fn auth_mode(conf: &Conf, entity: &str, key: &str) -> Result<kalmar_auth::AuthMode, ConfError> {
    match conf.get::<String>(entity, key)? {
        None => Ok(kalmar_auth::AuthMode::DEFAULT),
        Some(v) => v.parse().map_err(|detail: String| ConfError::Type {
            section: entity.to_string(),
            key: key.to_string(),
            detail,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_overrides_defaults() {
        let conf = Conf::parse(
            r#"
[global]
osd_heartbeat_grace = 3
[mon]
mon_osd_down_out_interval = 0.5
mon_osd_min_down_reporters = 1
mon_allow_pool_delete = false
"#,
        )
        .expect("toml");
        let o = MonOptions::from_conf(&conf, "mon.a").expect("valid");
        assert_eq!(o.osd_heartbeat_grace, Duration::from_secs(3));
        assert_eq!(o.mon_osd_down_out_interval, Duration::from_millis(500));
        assert_eq!(o.mon_osd_min_down_reporters, 1);
        assert!(!o.mon_allow_pool_delete);
        assert_eq!(o.mon_min_osdmap_epochs, 500);
        assert_eq!(o.default_min_size(3), 2);
        assert_eq!(o.default_min_size(1), 1);
        let bad = Conf::parse("[mon]\nosd_heartbeat_grace = \"soon\"\n").expect("toml");
        assert!(MonOptions::from_conf(&bad, "mon.a").is_err());
    }

    #[test]
    fn auth_off_names_every_none_option_however_it_came_about() {
        // Written out in the conf.
        let conf = Conf::parse(
            "[global]\nauth_cluster_required = \"none\"\nauth_service_required = \"cephx\"\nauth_client_required = \"cephx\"\n",
        )
        .expect("toml");
        let o = MonOptions::from_conf(&conf, "mon.a").expect("valid");
        assert_eq!(o.auth_off().names(), vec!["auth_cluster_required"]);
        // All three cephx: nothing to warn about.
        let conf = Conf::parse(
            "[global]\nauth_cluster_required = \"cephx\"\nauth_service_required = \"cephx\"\nauth_client_required = \"cephx\"\n",
        )
        .expect("toml");
        let o = MonOptions::from_conf(&conf, "mon.a").expect("valid");
        assert!(o.auth_off().names().is_empty());
        // Left unset: cephx (a new cluster requires auth), so nothing to
        // warn about; were a default `none`, it would be named like the
        // conf's.
        let o = MonOptions::from_conf(&Conf::parse("").expect("toml"), "mon.a").expect("valid");
        let d = MonOptions::default();
        let mut want = Vec::new();
        for (mode, name) in [
            (d.auth_cluster_required, "auth_cluster_required"),
            (d.auth_service_required, "auth_service_required"),
            (d.auth_client_required, "auth_client_required"),
        ] {
            if mode == kalmar_auth::AuthMode::None {
                want.push(name);
            }
        }
        assert_eq!(o.auth_off().names(), want);
        assert_eq!(o.auth_cluster_required, kalmar_auth::AuthMode::Cephx);
        assert_eq!(o.auth_service_required, kalmar_auth::AuthMode::Cephx);
        assert_eq!(o.auth_client_required, kalmar_auth::AuthMode::Cephx);
        assert!(want.is_empty());
    }
}
