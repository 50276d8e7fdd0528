//! The mon protocol's messages.
//!
//! Maps travel as sealed blobs (encoding + crc32c, see
//! `kalmar_common::encoding::seal`): the mon stores exactly those bytes per
//! epoch and forwards them without re-encoding; receivers check the crc
//! when they decode.

use std::collections::BTreeMap;

use kalmar_common::encoding::{Blob, DecodeError};
use kalmar_common::impl_versioned;
use kalmar_maps::{
    EntityAddr, Epoch, Incremental, MgrMap, MgrModuleInfo, OsdAddrs, OsdId, OsdMap, PgId,
};
use uuid::Uuid;

use crate::payload;
use crate::registry::*;

/// One subscription: `what` is `osdmap` or `mgrmap`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeItem {
    pub what: String,
    /// First epoch wanted (the subscriber has `start - 1`); 0 asks for the
    /// latest full map only.
    pub start: Epoch,
    /// Send once, not on every change.
    pub onetime: bool,
}
impl_versioned!(SubscribeItem, "subscribe item", version = 1, compat = 1, { what, start, onetime });

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MonSubscribe {
    pub items: Vec<SubscribeItem>,
}
impl_versioned!(MonSubscribe, "mon subscribe", version = 1, compat = 1, {
    items
});
payload!(MonSubscribe, MON_SUBSCRIBE, "mon_subscribe");

/// OSDMap epochs: incrementals after the subscriber's epoch, or full maps
/// when it is too far behind (or new).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsdMapMsg {
    pub fsid: Uuid,
    /// Sealed `Incremental`s by epoch.
    pub incrementals: BTreeMap<Epoch, Blob>,
    /// Sealed full `OsdMap`s by epoch.
    pub maps: BTreeMap<Epoch, Blob>,
    /// Oldest and newest epochs the mon holds.
    pub oldest: Epoch,
    pub newest: Epoch,
}
impl_versioned!(OsdMapMsg, "osdmap message", version = 1, compat = 1,
    { fsid, incrementals, maps, oldest, newest });
payload!(OsdMapMsg, OSD_MAP, "osd_map");

impl OsdMapMsg {
    pub fn decode_incrementals(&self) -> Result<Vec<Incremental>, DecodeError> {
        self.incrementals
            .values()
            .map(|b| Incremental::decode_sealed(&b.0))
            .collect()
    }

    pub fn decode_maps(&self) -> Result<Vec<OsdMap>, DecodeError> {
        self.maps
            .values()
            .map(|b| OsdMap::decode_sealed(&b.0))
            .collect()
    }

    /// Brings `current` (if any) to the newest epoch in this message: the
    /// newest full map at or after it, then the incrementals that follow.
    /// Returns `None` when the message does not connect to `current`.
    pub fn advance(&self, current: Option<&OsdMap>) -> Result<Option<OsdMap>, String> {
        let have = current.map(|m| m.epoch).unwrap_or(0);
        let mut map = match self.maps.range(have.saturating_add(1)..).next_back() {
            Some((_, b)) => OsdMap::decode_sealed(&b.0).map_err(|e| format!("full map: {e}"))?,
            None => match current {
                Some(m) => m.clone(),
                None => return Ok(None),
            },
        };
        for (epoch, b) in self.incrementals.range(map.epoch.saturating_add(1)..) {
            if *epoch != map.epoch + 1 {
                return Ok(None);
            }
            let inc = Incremental::decode_sealed(&b.0)
                .map_err(|e| format!("incremental {epoch}: {e}"))?;
            map.apply_incremental(&inc).map_err(|e| e.to_string())?;
        }
        Ok(Some(map))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MgrMapMsg {
    /// A sealed `MgrMap`.
    pub map: Blob,
}
impl_versioned!(MgrMapMsg, "mgrmap message", version = 1, compat = 1, {
    map
});
payload!(MgrMapMsg, MGR_MAP, "mgr_map");

impl MgrMapMsg {
    pub fn new(map: &MgrMap) -> Self {
        MgrMapMsg {
            map: Blob(map.encode_sealed()),
        }
    }

    pub fn decode_map(&self) -> Result<MgrMap, DecodeError> {
        MgrMap::decode_sealed(&self.map.0)
    }
}

/// The mons (subscription `monmap`): each mon's name and address, so a
/// client learns mons added or removed after it started.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MonMapMsg {
    pub fsid: Uuid,
    /// Grows with every membership change.
    pub epoch: u64,
    /// Name -> `IP:PORT`.
    pub mons: BTreeMap<String, String>,
}
impl_versioned!(MonMapMsg, "monmap message", version = 1, compat = 1, { fsid, epoch, mons });
payload!(MonMapMsg, MON_MAP, "mon_map");

/// A Ceph-style command: `cmd` is a JSON object such as
/// `{"prefix": "osd pool create", "pool": "rbd", "pg_num": 32}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MonCommand {
    pub tid: u64,
    pub cmd: String,
    pub inbuf: Blob,
}
impl_versioned!(MonCommand, "mon command", version = 1, compat = 1, { tid, cmd, inbuf });
payload!(MonCommand, MON_COMMAND, "mon_command");

/// `retval` is 0 or a negative errno; `outs` the status text; `outbuf` the
/// data (JSON, or plain text when the command asked for it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MonCommandReply {
    pub tid: u64,
    pub retval: i32,
    pub outs: String,
    pub outbuf: Blob,
}
impl_versioned!(MonCommandReply, "mon command reply", version = 1, compat = 1, { tid, retval, outs, outbuf });
payload!(MonCommandReply, MON_COMMAND_REPLY, "mon_command_reply");

/// Registers a new OSD (or finds the one with this uuid).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsdMkfs {
    pub tid: u64,
    pub uuid: Uuid,
    /// The id wanted, or -1 for the lowest free one.
    pub want_id: OsdId,
    /// CRUSH host bucket for the new OSD.
    pub hostname: String,
    /// Device class to set in CRUSH (`hdd`, `ssd`, `nvme`); empty: none.
    pub device_class: String,
    /// CRUSH weight (16.16 fixed point) to place a new OSD with: the one
    /// its first boot asks for, so placing it moves no PG twice. 0 (and
    /// senders before version 3): weight 1.
    pub crush_weight: u32,
}
impl_versioned!(OsdMkfs, "osd mkfs", version = 3, compat = 1, { tid, uuid, want_id, hostname },
    since 2 { device_class }, since 3 { crush_weight });
payload!(OsdMkfs, OSD_MKFS, "osd_mkfs");

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsdMkfsReply {
    pub tid: u64,
    pub retval: i32,
    pub osd_id: OsdId,
    pub fsid: Uuid,
    /// Why it failed (empty on success).
    pub error: String,
}
impl_versioned!(OsdMkfsReply, "osd mkfs reply", version = 1, compat = 1, { tid, retval, osd_id, fsid, error });
payload!(OsdMkfsReply, OSD_MKFS_REPLY, "osd_mkfs_reply");

/// An OSD announces it is running.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsdBoot {
    pub osd_id: OsdId,
    pub uuid: Uuid,
    pub addrs: OsdAddrs,
    /// Newest map epoch the OSD has.
    pub have_epoch: Epoch,
    pub hostname: String,
    pub metadata: BTreeMap<String, String>,
}
impl_versioned!(OsdBoot, "osd boot", version = 1, compat = 1, { osd_id, uuid, addrs, have_epoch, hostname, metadata });
payload!(OsdBoot, OSD_BOOT, "osd_boot");

/// `reporter` has not heard from `target` for `failed_for_ms`; with
/// `is_failed = false` the reporter takes its report back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsdFailure {
    pub reporter: OsdId,
    pub target: OsdId,
    pub target_addr: EntityAddr,
    pub failed_for_ms: u64,
    pub epoch: Epoch,
    pub is_failed: bool,
}
impl_versioned!(OsdFailure, "osd failure", version = 1, compat = 1,
    { reporter, target, target_addr, failed_for_ms, epoch, is_failed });
payload!(OsdFailure, OSD_FAILURE, "osd_failure");

/// Periodic liveness from an OSD.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsdBeacon {
    pub osd_id: OsdId,
    pub epoch: Epoch,
    /// PGs this OSD is primary for.
    pub pgs: Vec<PgId>,
    pub last_epoch_clean: Epoch,
}
impl_versioned!(OsdBeacon, "osd beacon", version = 1, compat = 1, { osd_id, epoch, pgs, last_epoch_clean });
payload!(OsdBeacon, OSD_BEACON, "osd_beacon");

/// Asks for `up_thru >= want_up_thru` (before a primary activates).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsdAlive {
    pub osd_id: OsdId,
    pub want_up_thru: Epoch,
}
impl_versioned!(OsdAlive, "osd alive", version = 1, compat = 1, { osd_id, want_up_thru });
payload!(OsdAlive, OSD_ALIVE, "osd_alive");

/// pg_temp wishes of a primary; an empty list removes the entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsdPgTemp {
    pub osd_id: OsdId,
    pub map_epoch: Epoch,
    pub pg_temp: BTreeMap<PgId, Vec<OsdId>>,
}
impl_versioned!(OsdPgTemp, "osd pg_temp", version = 1, compat = 1, { osd_id, map_epoch, pg_temp });
payload!(OsdPgTemp, OSD_PG_TEMP, "osd_pg_temp");

/// An OSD stopping cleanly asks the mon to mark it down now (Ceph's
/// `MOSDMarkMeDown`) instead of waiting for failure reports or missing
/// beacons. `target_addrs` and `epoch` name the instance: the mon only
/// marks down the instance that is up with those addresses. With
/// `request_ack` the mon answers with the same message (`request_ack`
/// false) once the down is committed, or at once when it ignores it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsdMarkMeDown {
    pub fsid: Uuid,
    pub target_osd: OsdId,
    pub target_addrs: OsdAddrs,
    /// The newest map epoch the OSD has.
    pub epoch: Epoch,
    pub request_ack: bool,
}
impl_versioned!(OsdMarkMeDown, "osd mark me down", version = 1, compat = 1,
    { fsid, target_osd, target_addrs, epoch, request_ack });
payload!(OsdMarkMeDown, OSD_MARK_ME_DOWN, "osd_mark_me_down");

impl OsdMarkMeDown {
    /// The mon's answer to this request.
    pub fn ack(&self) -> OsdMarkMeDown {
        OsdMarkMeDown {
            request_ack: false,
            ..self.clone()
        }
    }
}

/// A command a mgr (or plugin) serves, advertised in its beacon.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandDesc {
    /// Ceph's signature form: `hello name=person_name,type=CephString,req=false`.
    pub cmd: String,
    pub help: String,
    pub perm: String,
}
impl_versioned!(CommandDesc, "command desc", version = 1, compat = 1, { cmd, help, perm });

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MgrBeacon {
    pub gid: u64,
    pub name: String,
    pub addr: EntityAddr,
    /// The mgr has started its server (meaningful for the active one).
    pub available: bool,
    pub available_modules: Vec<MgrModuleInfo>,
    pub command_descs: Vec<CommandDesc>,
    pub metadata: BTreeMap<String, String>,
    /// Module -> URI (active mgr only).
    pub services: BTreeMap<String, String>,
}
impl_versioned!(MgrBeacon, "mgr beacon", version = 1, compat = 1,
    { gid, name, addr, available, available_modules, command_descs, metadata, services });
payload!(MgrBeacon, MGR_BEACON, "mgr_beacon");

/// How bad a health check is (Ceph's `health_status_t` above OK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum HealthSeverity {
    #[default]
    Warning,
    Error,
}
kalmar_common::impl_enum_u8!(HealthSeverity, "health severity", { Warning = 1, Error = 2 });

/// One health check raised on the mgr (a plugin's `set_health_checks`,
/// or the mgr's own `MGR_MODULE_ERROR`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MgrHealthCheck {
    /// `MGR_MODULE_ERROR`, `PROMETHEUS_DOWN`, ...
    pub code: String,
    pub severity: HealthSeverity,
    pub summary: String,
    pub count: u64,
    pub detail: Vec<String>,
}
impl_versioned!(MgrHealthCheck, "mgr health check", version = 1, compat = 1,
    { code, severity, summary, count, detail });

/// What the active mgr tells the mon every beacon period (Ceph's
/// `MMonMgrReport`): the complete set of its health checks, which replaces
/// the previous set. The mon shows them while `gid` is the active mgr and
/// its reports keep coming.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MonMgrReport {
    pub gid: u64,
    pub health_checks: Vec<MgrHealthCheck>,
}
impl_versioned!(MonMgrReport, "mon mgr report", version = 1, compat = 1,
    { gid, health_checks });
payload!(MonMgrReport, MON_MGR_REPORT, "mon_mgr_report");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Payload;
    use kalmar_maps::osd::OsdState;

    #[test]
    fn message_roundtrip_and_type_check() {
        let boot = OsdBoot {
            osd_id: 3,
            uuid: Uuid::new_v4(),
            addrs: OsdAddrs::all("127.0.0.1:6800/7".parse().expect("addr")),
            have_epoch: 12,
            hostname: "node1".into(),
            metadata: BTreeMap::from([("osd_objectstore".to_string(), "kalmar".to_string())]),
        };
        let m = boot.to_message();
        assert_eq!(m.msg_type, OSD_BOOT);
        assert_eq!(OsdBoot::from_message(&m).expect("decodes"), boot);
        assert!(matches!(
            OsdAlive::from_message(&m),
            Err(crate::ProtoError::WrongType { .. })
        ));
    }

    #[test]
    fn mark_me_down_roundtrip_and_ack() {
        let req = OsdMarkMeDown {
            fsid: Uuid::new_v4(),
            target_osd: 2,
            target_addrs: OsdAddrs::all("127.0.0.1:6802/9".parse().expect("addr")),
            epoch: 41,
            request_ack: true,
        };
        let m = req.to_message();
        assert_eq!(m.msg_type, OSD_MARK_ME_DOWN);
        assert_eq!(OsdMarkMeDown::from_message(&m).expect("decodes"), req);
        let ack = req.ack();
        assert!(!ack.request_ack);
        assert_eq!(
            (ack.fsid, ack.target_osd, ack.target_addrs, ack.epoch),
            (req.fsid, req.target_osd, req.target_addrs, req.epoch)
        );
    }

    #[test]
    fn osdmap_message_advances_a_map() {
        let fsid = Uuid::new_v4();
        let mut m0 = OsdMap::new(fsid, 1);
        m0.epoch = 1;
        let mut m1 = m0.clone();
        m1.epoch = 2;
        m1.set_max_osd(1);
        if let Some(s) = m1.osd_mut(0) {
            s.state = OsdState(OsdState::EXISTS);
        }
        let mut m2 = m1.clone();
        m2.epoch = 3;
        m2.flags |= kalmar_maps::OsdMapFlags::NOOUT;
        let msg = OsdMapMsg {
            fsid,
            incrementals: BTreeMap::from([
                (2, Blob(Incremental::diff(&m0, &m1).encode_sealed())),
                (3, Blob(Incremental::diff(&m1, &m2).encode_sealed())),
            ]),
            maps: BTreeMap::new(),
            oldest: 1,
            newest: 3,
        };
        assert_eq!(msg.advance(Some(&m0)).expect("applies"), Some(m2.clone()));
        // Without a base and without a full map the message cannot help.
        assert_eq!(msg.advance(None).expect("no error"), None);
        let full = OsdMapMsg {
            maps: BTreeMap::from([(3, Blob(m2.encode_sealed()))]),
            ..msg
        };
        assert_eq!(full.advance(None).expect("applies"), Some(m2));
    }
}

/// What a [`MonRaft`] request carries.
pub mod raft_kind {
    pub const APPEND_ENTRIES: u8 = 1;
    pub const VOTE: u8 = 2;
    pub const INSTALL_SNAPSHOT: u8 = 3;
    /// Not Raft: "what monmap and how much history do you hold?" (a mon
    /// starting from an empty store, or one that may have been removed).
    pub const PROBE: u8 = 4;
}

/// One Raft RPC between mons: `body` is the request, encoded by the mon
/// (the consensus library's own serialization); `kind` is one of
/// [`raft_kind`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MonRaft {
    pub tid: u64,
    pub kind: u8,
    pub body: Blob,
}
impl_versioned!(MonRaft, "mon raft", version = 1, compat = 1, { tid, kind, body });
payload!(MonRaft, MON_RAFT, "mon_raft");

/// The reply to a [`MonRaft`]: `ok` says whether `body` is the response
/// or the receiving mon's error.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MonRaftReply {
    pub tid: u64,
    pub ok: bool,
    pub body: Blob,
}
impl_versioned!(MonRaftReply, "mon raft reply", version = 1, compat = 1, { tid, ok, body });
payload!(MonRaftReply, MON_RAFT_REPLY, "mon_raft_reply");

/// A message a follower mon received from `entity` on its session
/// `session`, handed to the leader as it came.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MonForward {
    pub session: u64,
    pub entity: String,
    pub msg_type: u16,
    pub payload: Blob,
}
impl_versioned!(MonForward, "mon forward", version = 1, compat = 1, { session, entity, msg_type, payload });
payload!(MonForward, MON_FORWARD, "mon_forward");

/// The leader's reply to a forwarded message, for the follower to pass on
/// to its session `session`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MonRoute {
    pub session: u64,
    pub msg_type: u16,
    pub payload: Blob,
}
impl_versioned!(MonRoute, "mon route", version = 1, compat = 1, { session, msg_type, payload });
payload!(MonRoute, MON_ROUTE, "mon_route");
