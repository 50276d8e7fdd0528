//! Per-OSD state in the OSDMap: state bits, reweight, addresses, uuid and
//! the epochs of its last up/down transitions.

use kalmar_common::impl_versioned;
use serde::Serialize;

use crate::addr::EntityAddr;
use crate::Epoch;

/// OSD state bits with Ceph's values (`CEPH_OSD_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize)]
pub struct OsdState(pub u32);

impl OsdState {
    pub const EXISTS: u32 = 1 << 0;
    pub const UP: u32 = 1 << 1;
    pub const AUTOOUT: u32 = 1 << 2;
    pub const NEW: u32 = 1 << 3;
    pub const FULL: u32 = 1 << 4;
    pub const NEARFULL: u32 = 1 << 5;
    pub const BACKFILLFULL: u32 = 1 << 6;
    pub const DESTROYED: u32 = 1 << 7;
    pub const NOUP: u32 = 1 << 8;
    pub const NODOWN: u32 = 1 << 9;
    pub const NOIN: u32 = 1 << 10;
    pub const NOOUT: u32 = 1 << 11;
    pub const STOP: u32 = 1 << 12;

    /// Names of the bits, in bit order, as `osd dump` prints them.
    pub const NAMES: &'static [(u32, &'static str)] = &[
        (Self::EXISTS, "exists"),
        (Self::UP, "up"),
        (Self::AUTOOUT, "autoout"),
        (Self::NEW, "new"),
        (Self::FULL, "full"),
        (Self::NEARFULL, "nearfull"),
        (Self::BACKFILLFULL, "backfillfull"),
        (Self::DESTROYED, "destroyed"),
        (Self::NOUP, "noup"),
        (Self::NODOWN, "nodown"),
        (Self::NOIN, "noin"),
        (Self::NOOUT, "noout"),
        (Self::STOP, "stop"),
    ];

    pub fn has(self, bits: u32) -> bool {
        self.0 & bits == bits
    }

    pub fn exists(self) -> bool {
        self.has(Self::EXISTS)
    }

    pub fn is_up(self) -> bool {
        self.has(Self::EXISTS | Self::UP)
    }

    /// Names of the set bits (`["exists", "up"]`).
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|&(_, n)| n)
            .collect()
    }
}

/// Encoded as its raw bits inside the enclosing [`OsdSlot`] frame.
impl kalmar_common::Encode for OsdState {
    fn encode(&self, buf: &mut Vec<u8>) {
        self.0.encode(buf)
    }
}
impl kalmar_common::Decode for OsdState {
    fn decode(d: &mut kalmar_common::Decoder<'_>) -> Result<Self, kalmar_common::DecodeError> {
        Ok(OsdState(u32::decode(d)?))
    }
}

/// Epochs of an OSD's life (`osd_info_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct OsdInfo {
    /// Epoch the OSD last booted (came up).
    pub up_from: Epoch,
    /// Latest epoch the OSD is known to have been up through (for peering).
    pub up_thru: Epoch,
    /// Epoch the OSD last went down.
    pub down_at: Epoch,
    /// Epoch the OSD was declared lost (0 if never).
    pub lost_at: Epoch,
    pub last_clean_begin: Epoch,
    pub last_clean_end: Epoch,
}
impl_versioned!(OsdInfo, "osd_info", version = 1, compat = 1, {
    up_from, up_thru, down_at, lost_at, last_clean_begin, last_clean_end,
});

/// The four addresses an OSD serves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OsdAddrs {
    /// Clients and the mon reach the OSD here.
    pub public: EntityAddr,
    /// Replication traffic between OSDs.
    pub cluster: EntityAddr,
    pub heartbeat_back: EntityAddr,
    pub heartbeat_front: EntityAddr,
}
impl_versioned!(OsdAddrs, "osd_addrs", version = 1, compat = 1, {
    public, cluster, heartbeat_back, heartbeat_front,
});

impl OsdAddrs {
    /// All four roles on one address (tests and single-NIC setups).
    pub fn all(addr: EntityAddr) -> Self {
        OsdAddrs {
            public: addr,
            cluster: addr,
            heartbeat_back: addr,
            heartbeat_front: addr,
        }
    }
}

/// Reweight of an OSD that is fully in (`CEPH_OSD_IN`, 1.0 in 16.16).
pub const WEIGHT_IN: u32 = 0x10000;
/// Reweight of an OSD that is out.
pub const WEIGHT_OUT: u32 = 0;
/// Default primary affinity (1.0 in 16.16).
pub const PRIMARY_AFFINITY_DEFAULT: u32 = 0x10000;

/// Everything the OSDMap keeps for one OSD id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsdSlot {
    pub state: OsdState,
    /// 16.16 reweight: 0x10000 = in, 0 = out, in between = partly out.
    pub weight: u32,
    pub primary_affinity: u32,
    pub uuid: uuid::Uuid,
    pub addrs: OsdAddrs,
    pub info: OsdInfo,
    /// Wall-clock microseconds when the OSD was last marked down (Ceph's
    /// `osd_xinfo.down_stamp`): the down -> out timer survives a mon
    /// restart. 0 = never.
    pub down_stamp_us: u64,
}

impl Default for OsdSlot {
    fn default() -> Self {
        OsdSlot {
            state: OsdState(0),
            weight: WEIGHT_OUT,
            primary_affinity: PRIMARY_AFFINITY_DEFAULT,
            uuid: uuid::Uuid::nil(),
            addrs: OsdAddrs::default(),
            info: OsdInfo::default(),
            down_stamp_us: 0,
        }
    }
}
impl_versioned!(OsdSlot, "osd_slot", version = 2, compat = 1, {
    state, weight, primary_affinity, uuid, addrs, info,
}, since 2 { down_stamp_us });

impl OsdSlot {
    pub fn exists(&self) -> bool {
        self.state.exists()
    }
    pub fn is_up(&self) -> bool {
        self.state.is_up()
    }
    /// In = exists with a nonzero reweight.
    pub fn is_in(&self) -> bool {
        self.exists() && self.weight != WEIGHT_OUT
    }
    /// Reweight as a float (1.0 = in).
    pub fn weight_f64(&self) -> f64 {
        f64::from(self.weight) / f64::from(WEIGHT_IN)
    }
}
