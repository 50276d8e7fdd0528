//! The MgrMap: which mgr is active, the standbys, and the modules.

use std::collections::{BTreeMap, BTreeSet};

use kalmar_common::encoding::{seal, unseal, DecodeError};
use kalmar_common::impl_versioned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::addr::EntityAddr;
use crate::time::format_stamp;
use crate::Epoch;

/// A module a mgr can load, with whether it can run there.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MgrModuleInfo {
    pub name: String,
    pub can_run: bool,
    /// Why it cannot run (empty when it can).
    pub error_string: String,
}
impl_versioned!(MgrModuleInfo, "mgr_module_info", version = 1, compat = 1, {
    name, can_run, error_string,
});

/// A mgr waiting to take over.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MgrStandby {
    pub gid: u64,
    pub name: String,
    pub available_modules: Vec<MgrModuleInfo>,
}
impl_versioned!(MgrStandby, "mgr_standby", version = 1, compat = 1, {
    gid, name, available_modules,
});

/// The MgrMap at one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MgrMap {
    pub epoch: Epoch,
    /// 0 when there is no active mgr.
    pub active_gid: u64,
    pub active_name: String,
    pub active_addr: EntityAddr,
    /// The active mgr has finished starting and serves requests.
    pub available: bool,
    /// When the active mgr last changed (microseconds since the epoch).
    pub active_change_us: u64,
    pub standbys: BTreeMap<u64, MgrStandby>,
    /// Enabled modules.
    pub modules: BTreeSet<String>,
    /// Modules the active mgr can load.
    pub available_modules: Vec<MgrModuleInfo>,
    /// Module name -> URI it serves (e.g. prometheus).
    pub services: BTreeMap<String, String>,
    /// Modules that run whatever `modules` says.
    pub always_on_modules: BTreeSet<String>,
    /// OSDMap epoch of the last failover.
    pub last_failure_osd_epoch: Epoch,
}
impl_versioned!(MgrMap, "mgrmap", version = 1, compat = 1, {
    epoch, active_gid, active_name, active_addr, available, active_change_us,
    standbys, modules, available_modules, services, always_on_modules,
    last_failure_osd_epoch,
});

impl MgrMap {
    pub fn encode_sealed(&self) -> Vec<u8> {
        seal(self)
    }

    pub fn decode_sealed(bytes: &[u8]) -> Result<Self, DecodeError> {
        unseal(bytes)
    }

    pub fn have_active(&self) -> bool {
        self.active_gid != 0
    }

    /// Names of every mgr in the map, the active first.
    pub fn all_names(&self) -> Vec<&str> {
        let active = self.have_active().then_some(self.active_name.as_str());
        active
            .into_iter()
            .chain(self.standbys.values().map(|s| s.name.as_str()))
            .collect()
    }

    /// `mgr stat` JSON.
    pub fn stat_json(&self) -> Value {
        json!({
            "epoch": self.epoch,
            "available": self.available,
            "active_name": self.active_name,
            "num_standby": self.standbys.len(),
        })
    }

    /// `mgr dump` JSON, in Ceph's shape.
    pub fn dump_json(&self) -> Value {
        let addrvec = |a: &EntityAddr| {
            if a.is_blank() {
                json!({ "addrvec": [] })
            } else {
                json!({ "addrvec": [{ "type": "v2", "addr": a.addr.to_string(), "nonce": a.nonce }] })
            }
        };
        let standbys: Vec<Value> = self
            .standbys
            .values()
            .map(|s| {
                json!({
                    "gid": s.gid,
                    "name": s.name,
                    "mgr_features": 0,
                    "available_modules": s.available_modules,
                })
            })
            .collect();
        json!({
            "epoch": self.epoch,
            "active_gid": self.active_gid,
            "active_name": self.active_name,
            "active_addrs": addrvec(&self.active_addr),
            "active_addr": self.active_addr.to_string(),
            "active_change": format_stamp(self.active_change_us),
            "active_mgr_features": 0,
            "available": self.available,
            "standbys": standbys,
            "modules": self.modules,
            "available_modules": self.available_modules,
            "services": self.services,
            "always_on_modules": self.always_on_modules,
            "last_failure_osd_epoch": self.last_failure_osd_epoch,
            "active_clients": [],
        })
    }

    /// The summary `ceph -s` shows: `x(active, since ...), standbys: y, z`.
    pub fn summary(&self) -> String {
        let mut s = if self.have_active() {
            let state = if self.available {
                "active"
            } else {
                "active, starting"
            };
            format!("{}({state})", self.active_name)
        } else {
            "no daemons active".to_string()
        };
        if !self.standbys.is_empty() {
            let names: Vec<&str> = self.standbys.values().map(|s| s.name.as_str()).collect();
            s.push_str(&format!(", standbys: {}", names.join(", ")));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_common::{Decode, Encode};

    fn sample() -> MgrMap {
        let mut m = MgrMap {
            epoch: 7,
            active_gid: 4100,
            active_name: "x".into(),
            active_addr: "127.0.0.1:6800/42".parse().expect("addr"),
            available: true,
            ..Default::default()
        };
        m.standbys.insert(
            4200,
            MgrStandby {
                gid: 4200,
                name: "y".into(),
                available_modules: vec![],
            },
        );
        m.modules.insert("prometheus".into());
        m.available_modules.push(MgrModuleInfo {
            name: "hello".into(),
            can_run: true,
            error_string: String::new(),
        });
        m
    }

    #[test]
    fn roundtrip_and_json() {
        let m = sample();
        assert_eq!(MgrMap::from_bytes(&m.to_bytes()).expect("decodes"), m);
        assert_eq!(
            MgrMap::decode_sealed(&m.encode_sealed()).expect("unseals"),
            m
        );
        let stat = m.stat_json();
        assert_eq!(stat["active_name"], "x");
        assert_eq!(stat["num_standby"], 1);
        assert_eq!(stat["available"], true);
        let dump = m.dump_json();
        assert_eq!(dump["active_addrs"]["addrvec"][0]["addr"], "127.0.0.1:6800");
        assert_eq!(dump["standbys"][0]["name"], "y");
        assert_eq!(dump["modules"][0], "prometheus");
        assert_eq!(dump["available_modules"][0]["can_run"], true);
        assert_eq!(m.summary(), "x(active), standbys: y");
    }
}
