//! The MgrMap service: mgr beacons, choosing the active mgr, failover when
//! its beacons stop, `mgr fail`. Pure logic with time as a parameter.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use kalmar_maps::{MgrMap, MgrStandby};
use kalmar_proto::mon::{CommandDesc, MgrBeacon};

use crate::errors::CmdError;
use crate::options::MonOptions;

pub struct MgrMon {
    map: MgrMap,
    pending: Option<MgrMap>,
    opts: Arc<MonOptions>,
    last_beacon: BTreeMap<u64, Instant>,
    /// Commands the active mgr serves (from its beacons; not in the map).
    active_commands: Vec<CommandDesc>,
}

impl MgrMon {
    /// Takes over the committed map at `now`; every mgr in it gets a fresh
    /// grace window.
    pub fn new(map: MgrMap, opts: Arc<MonOptions>, now: Instant) -> MgrMon {
        let mut last_beacon = BTreeMap::new();
        if map.active_gid != 0 {
            last_beacon.insert(map.active_gid, now);
        }
        for gid in map.standbys.keys() {
            last_beacon.insert(*gid, now);
        }
        MgrMon {
            map,
            pending: None,
            opts,
            last_beacon,
            active_commands: Vec::new(),
        }
    }

    pub fn map(&self) -> &MgrMap {
        &self.map
    }

    pub fn view(&self) -> &MgrMap {
        self.pending.as_ref().unwrap_or(&self.map)
    }

    pub fn active_commands(&self) -> &[CommandDesc] {
        &self.active_commands
    }

    fn pending_mut(&mut self) -> &mut MgrMap {
        let next = self.map.epoch + 1;
        self.pending.get_or_insert_with(|| {
            let mut m = self.map.clone();
            m.epoch = next;
            m
        })
    }

    /// Applies `f` to a copy; keeps it as pending only if it changed.
    fn edit(&mut self, f: impl FnOnce(&mut MgrMap)) {
        let mut scratch = self.view().clone();
        f(&mut scratch);
        if &scratch != self.view() {
            *self.pending_mut() = MgrMap {
                epoch: self.map.epoch + 1,
                ..scratch
            };
        }
    }

    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    pub fn take_pending(&mut self) -> Option<MgrMap> {
        self.pending.take()
    }

    pub fn discard_pending(&mut self) {
        self.pending = None;
    }

    pub fn committed(&mut self, map: MgrMap) {
        self.map = map;
    }

    pub fn beacon(&mut self, b: &MgrBeacon, now: Instant, now_us: u64) {
        if b.gid == 0 || b.name.is_empty() {
            tracing::warn!(name = %b.name, gid = b.gid, "ignoring mgr beacon without gid or name");
            return;
        }
        self.last_beacon.insert(b.gid, now);
        let view = self.view();
        // A mgr restarted under the same name gets a new gid: the old
        // incarnation is gone.
        let stale: Vec<u64> = view
            .standbys
            .values()
            .filter(|s| s.name == b.name && s.gid != b.gid)
            .map(|s| s.gid)
            .chain(
                (view.active_name == b.name && view.active_gid != b.gid && view.active_gid != 0)
                    .then_some(view.active_gid),
            )
            .collect();
        self.edit(|m| {
            for gid in &stale {
                m.standbys.remove(gid);
                if m.active_gid == *gid {
                    drop_active(m);
                }
            }
            if m.active_gid == b.gid {
                m.active_addr = b.addr;
                m.available = b.available;
                m.available_modules = b.available_modules.clone();
                m.services = b.services.clone();
            } else if m.active_gid == 0 {
                m.standbys.remove(&b.gid);
                make_active(m, b.gid, &b.name, now_us);
                m.active_addr = b.addr;
                m.available = b.available;
                m.available_modules = b.available_modules.clone();
            } else {
                let s = MgrStandby {
                    gid: b.gid,
                    name: b.name.clone(),
                    available_modules: b.available_modules.clone(),
                };
                m.standbys.insert(b.gid, s);
            }
        });
        if self.view().active_gid == b.gid {
            self.active_commands = b.command_descs.clone();
        }
    }

    /// Drops mgrs whose beacons stopped; replaces a silent active mgr.
    pub fn tick(&mut self, now: Instant, now_us: u64) {
        let grace = self.opts.mon_mgr_beacon_grace;
        let silent = |gid: &u64, last: &BTreeMap<u64, Instant>| {
            last.get(gid)
                .is_none_or(|t| now.saturating_duration_since(*t) > grace)
        };
        let view = self.view();
        let active_silent = view.active_gid != 0 && silent(&view.active_gid, &self.last_beacon);
        let silent_standbys: Vec<u64> = view
            .standbys
            .keys()
            .filter(|g| silent(g, &self.last_beacon))
            .copied()
            .collect();
        if active_silent {
            tracing::info!(name = %view.active_name, "active mgr missed its beacons; failing over");
        }
        let last = self.last_beacon.clone();
        self.edit(|m| {
            for g in &silent_standbys {
                m.standbys.remove(g);
            }
            if active_silent {
                drop_active(m);
            }
            if m.active_gid == 0 {
                promote_standby(m, now_us, |g| !silent(g, &last));
            }
        });
        for g in silent_standbys {
            self.last_beacon.remove(&g);
        }
    }

    /// `mgr fail [NAME]`: fails the active mgr (or the named one).
    pub fn cmd_fail(
        &mut self,
        who: Option<&str>,
        now: Instant,
        now_us: u64,
    ) -> Result<String, CmdError> {
        let view = self.view();
        let target = match who {
            None => {
                if view.active_gid == 0 {
                    return Err(CmdError::noent("there is no active mgr to fail"));
                }
                view.active_gid
            }
            Some(name) => {
                if view.active_gid != 0 && view.active_name == name {
                    view.active_gid
                } else {
                    view.standbys
                        .values()
                        .find(|s| s.name == name)
                        .map(|s| s.gid)
                        .ok_or_else(|| {
                            CmdError::noent(format!("mgr '{name}' is neither active nor standby"))
                        })?
                }
            }
        };
        let last = self.last_beacon.clone();
        let grace = self.opts.mon_mgr_beacon_grace;
        self.edit(|m| {
            if m.active_gid == target {
                drop_active(m);
                // The failed mgr comes back as a standby with its next beacon.
                promote_standby(m, now_us, |g| {
                    *g != target
                        && last
                            .get(g)
                            .is_some_and(|t| now.saturating_duration_since(*t) <= grace)
                });
            } else {
                m.standbys.remove(&target);
            }
        });
        self.last_beacon.remove(&target);
        Ok(String::new())
    }
}

impl MgrMon {
    /// `mgr module enable NAME [--force]`: adds the module to the enabled
    /// set (kept in the MgrMap, so it survives restarts and failovers).
    /// Without `force` the module must be one a mgr reported it can run.
    pub fn cmd_module_enable(&mut self, name: &str, force: bool) -> Result<String, CmdError> {
        let view = self.view();
        if view.modules.contains(name) {
            return Ok(format!("module '{name}' is already enabled"));
        }
        if view.always_on_modules.contains(name) {
            return Ok(format!("module '{name}' is already enabled (always-on)"));
        }
        if !force {
            match view.available_modules.iter().find(|m| m.name == name) {
                None => {
                    return Err(CmdError::noent(format!(
                        "all mgr daemons do not support module '{name}', pass --force to force enablement"
                    )))
                }
                Some(m) if !m.can_run => {
                    return Err(CmdError::noent(format!(
                        "module '{name}' reports that it cannot run on the active manager daemon: {} (pass --force to force enablement)",
                        m.error_string
                    )))
                }
                Some(_) => {}
            }
        }
        let name = name.to_string();
        self.edit(|m| {
            m.modules.insert(name);
        });
        Ok(String::new())
    }

    /// `mgr module disable NAME`.
    pub fn cmd_module_disable(&mut self, name: &str) -> Result<String, CmdError> {
        if !self.view().modules.contains(name) {
            return Ok(format!("module '{name}' is already disabled"));
        }
        self.edit(|m| {
            m.modules.remove(name);
        });
        Ok(String::new())
    }

    /// `mgr module ls` from the map alone (the active mgr answers it with
    /// each module's state; this is the answer without one).
    pub fn module_ls_json(&self) -> serde_json::Value {
        let m = self.map();
        let disabled: Vec<serde_json::Value> = m
            .available_modules
            .iter()
            .filter(|x| !m.modules.contains(&x.name) && !m.always_on_modules.contains(&x.name))
            .map(|x| serde_json::json!({"name": x.name, "can_run": x.can_run, "error_string": x.error_string, "module_options": {}}))
            .collect();
        serde_json::json!({
            "always_on_modules": m.always_on_modules,
            "enabled_modules": m.modules,
            "disabled_modules": disabled,
        })
    }
}

fn drop_active(m: &mut MgrMap) {
    m.active_gid = 0;
    m.active_name.clear();
    m.active_addr = Default::default();
    m.available = false;
    m.services.clear();
}

fn make_active(m: &mut MgrMap, gid: u64, name: &str, now_us: u64) {
    m.active_gid = gid;
    m.active_name = name.to_string();
    m.active_change_us = now_us;
    m.available = false;
}

/// Makes the lowest-gid eligible standby active (it reports `available`
/// in a later beacon, once its server runs).
fn promote_standby(m: &mut MgrMap, now_us: u64, eligible: impl Fn(&u64) -> bool) {
    let Some(gid) = m.standbys.keys().copied().find(|g| eligible(g)) else {
        return;
    };
    if let Some(s) = m.standbys.remove(&gid) {
        make_active(m, gid, &s.name, now_us);
        m.available_modules = s.available_modules;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn beacon(gid: u64, name: &str, available: bool) -> MgrBeacon {
        MgrBeacon {
            gid,
            name: name.into(),
            available,
            ..Default::default()
        }
    }

    fn commit(m: &mut MgrMon) -> bool {
        match m.take_pending() {
            Some(p) => {
                m.committed(p);
                true
            }
            None => false,
        }
    }

    #[test]
    fn first_is_active_then_failover_on_silence() {
        let opts = Arc::new(MonOptions {
            mon_mgr_beacon_grace: Duration::from_secs(10),
            ..MonOptions::default()
        });
        let t0 = Instant::now();
        let mut m = MgrMon::new(MgrMap::default(), opts, t0);
        m.beacon(&beacon(10, "x", false), t0, 1);
        m.beacon(&beacon(11, "y", false), t0, 1);
        assert!(commit(&mut m));
        assert_eq!(m.map().active_name, "x");
        assert!(!m.map().available);
        assert_eq!(
            m.map().standbys.keys().copied().collect::<Vec<_>>(),
            vec![11]
        );
        m.beacon(&beacon(10, "x", true), t0 + Duration::from_secs(1), 1);
        assert!(commit(&mut m));
        assert!(m.map().available);
        // Same beacon again: no new epoch.
        m.beacon(&beacon(10, "x", true), t0 + Duration::from_secs(2), 1);
        assert!(!commit(&mut m));
        // Only y keeps beaconing.
        for s in 3..=12 {
            m.beacon(&beacon(11, "y", false), t0 + Duration::from_secs(s), 1);
            m.tick(t0 + Duration::from_secs(s), 1);
        }
        assert!(!commit(&mut m), "x is still within its grace at 12 s");
        m.beacon(&beacon(11, "y", false), t0 + Duration::from_secs(13), 1);
        m.tick(t0 + Duration::from_secs(13), 1);
        assert!(commit(&mut m));
        assert_eq!(m.map().active_name, "y");
        assert!(m.map().standbys.is_empty());
        // x returns: standby.
        m.beacon(&beacon(10, "x", true), t0 + Duration::from_secs(14), 1);
        assert!(commit(&mut m));
        assert_eq!(
            m.map().standbys.get(&10).map(|s| s.name.as_str()),
            Some("x")
        );
    }

    #[test]
    fn module_enable_disable_kept_in_the_map() {
        let t0 = Instant::now();
        let mut m = MgrMon::new(MgrMap::default(), Arc::new(MonOptions::default()), t0);
        let mut b = beacon(1, "x", true);
        b.available_modules = vec![
            kalmar_maps::MgrModuleInfo {
                name: "hello".into(),
                can_run: true,
                error_string: String::new(),
            },
            kalmar_maps::MgrModuleInfo {
                name: "broken".into(),
                can_run: false,
                error_string: "no deps".into(),
            },
        ];
        m.beacon(&b, t0, 1);
        commit(&mut m);
        assert!(m.cmd_module_enable("nosuch", false).is_err());
        assert!(m.cmd_module_enable("broken", false).is_err());
        m.cmd_module_enable("hello", false).expect("enable");
        assert!(commit(&mut m));
        assert!(m.map().modules.contains("hello"));
        let ls = m.module_ls_json();
        assert_eq!(ls["enabled_modules"], serde_json::json!(["hello"]));
        assert_eq!(ls["disabled_modules"][0]["name"], "broken");
        m.cmd_module_enable("broken", true).expect("forced");
        m.cmd_module_disable("hello").expect("disable");
        assert!(commit(&mut m));
        assert_eq!(m.map().modules.iter().collect::<Vec<_>>(), vec!["broken"]);
        // Beacons do not touch the enabled set.
        m.beacon(&b, t0, 2);
        commit(&mut m);
        assert!(m.map().modules.contains("broken"));
    }

    #[test]
    fn mgr_fail_and_restart_under_same_name() {
        let t0 = Instant::now();
        let mut m = MgrMon::new(MgrMap::default(), Arc::new(MonOptions::default()), t0);
        assert!(m.cmd_fail(None, t0, 1).is_err());
        m.beacon(&beacon(1, "a", true), t0, 1);
        m.beacon(&beacon(2, "b", true), t0, 1);
        commit(&mut m);
        m.cmd_fail(None, t0, 2).expect("fail");
        commit(&mut m);
        assert_eq!(m.map().active_name, "b");
        assert!(
            !m.map().available,
            "a promoted mgr is unavailable until it says so"
        );
        assert!(m.cmd_fail(Some("zzz"), t0, 3).is_err());
        // b restarts with a new gid: the old incarnation is replaced.
        m.beacon(&beacon(3, "b", false), t0, 4);
        commit(&mut m);
        assert_eq!(m.map().active_gid, 3);
        assert_eq!(m.map().active_name, "b");
    }
}
