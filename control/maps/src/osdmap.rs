//! The OSDMap: which OSDs exist, are up and in, where they listen, the
//! pools, temporary PG mappings, and the CRUSH map, at one epoch.

use std::collections::BTreeMap;

use kalmar_common::encoding::{seal, unseal, DecodeError};
use kalmar_common::impl_versioned;

use crate::crush::CrushMap;
use crate::error::MapError;
use crate::osd::OsdSlot;
use crate::pg::PgId;
use crate::pool::PgPool;
use crate::{Epoch, OsdId, PoolId};

/// Most OSD ids a map may hold: bounds the OSD table an incremental can
/// make a daemon allocate (Ceph's `mon_max_osd` defaults to 10,000).
pub const MAX_OSD: i32 = 1 << 16;

/// Cluster-wide flags with Ceph's bit values (`CEPH_OSDMAP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OsdMapFlags;

impl OsdMapFlags {
    pub const NEARFULL: u32 = 1 << 0;
    pub const FULL: u32 = 1 << 1;
    pub const PAUSERD: u32 = 1 << 2;
    pub const PAUSEWR: u32 = 1 << 3;
    pub const PAUSEREC: u32 = 1 << 4;
    pub const NOUP: u32 = 1 << 5;
    pub const NODOWN: u32 = 1 << 6;
    pub const NOOUT: u32 = 1 << 7;
    pub const NOIN: u32 = 1 << 8;
    pub const NOBACKFILL: u32 = 1 << 9;
    pub const NORECOVER: u32 = 1 << 10;
    pub const NOSCRUB: u32 = 1 << 11;
    pub const NODEEP_SCRUB: u32 = 1 << 12;
    pub const NOTIERAGENT: u32 = 1 << 13;
    pub const NOREBALANCE: u32 = 1 << 14;
    pub const SORTBITWISE: u32 = 1 << 15;
    pub const RECOVERY_DELETES: u32 = 1 << 19;
    pub const PURGED_SNAPDIRS: u32 = 1 << 20;
    pub const NOSNAPTRIM: u32 = 1 << 21;
    pub const PGLOG_HARDLIMIT: u32 = 1 << 22;
    pub const NOAUTOSCALE: u32 = 1 << 23;

    /// Flags every new cluster starts with (as a Ceph 16 cluster does).
    pub const DEFAULT: u32 =
        Self::SORTBITWISE | Self::RECOVERY_DELETES | Self::PURGED_SNAPDIRS | Self::PGLOG_HARDLIMIT;

    /// Names in the order Ceph prints them (`flags sortbitwise,...`).
    pub const NAMES: &'static [(u32, &'static str)] = &[
        (Self::NEARFULL, "nearfull"),
        (Self::FULL, "full"),
        (Self::PAUSERD, "pauserd"),
        (Self::PAUSEWR, "pausewr"),
        (Self::PAUSEREC, "pauserec"),
        (Self::NOUP, "noup"),
        (Self::NODOWN, "nodown"),
        (Self::NOOUT, "noout"),
        (Self::NOIN, "noin"),
        (Self::NOBACKFILL, "nobackfill"),
        (Self::NOREBALANCE, "norebalance"),
        (Self::NORECOVER, "norecover"),
        (Self::NOSCRUB, "noscrub"),
        (Self::NODEEP_SCRUB, "nodeep-scrub"),
        (Self::NOTIERAGENT, "notieragent"),
        (Self::NOSNAPTRIM, "nosnaptrim"),
        (Self::SORTBITWISE, "sortbitwise"),
        (Self::RECOVERY_DELETES, "recovery_deletes"),
        (Self::PURGED_SNAPDIRS, "purged_snapdirs"),
        (Self::PGLOG_HARDLIMIT, "pglog_hardlimit"),
        (Self::NOAUTOSCALE, "noautoscale"),
    ];

    /// The bit for a flag name (`noout` -> NOOUT), for `osd set`.
    pub fn from_name(name: &str) -> Option<u32> {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|&(b, _)| b)
    }

    /// Set flags as names, in Ceph's order.
    pub fn names(flags: u32) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(b, _)| flags & b != 0)
            .map(|&(_, n)| n)
            .collect()
    }
}

/// The OSDMap at one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct OsdMap {
    pub fsid: uuid::Uuid,
    pub epoch: Epoch,
    pub created_us: u64,
    pub modified_us: u64,
    /// [`OsdMapFlags`] bits.
    pub flags: u32,
    /// One slot per OSD id below `max_osd`.
    pub osds: Vec<OsdSlot>,
    pub pools: BTreeMap<PoolId, PgPool>,
    /// Highest pool id ever allocated (ids are never reused).
    pub pool_max: PoolId,
    /// Acting sets that override CRUSH while data moves. Keys name only
    /// pools in `pools` (see [`crate::incremental`]).
    pub pg_temp: BTreeMap<PgId, Vec<OsdId>>,
    /// Primaries that override the acting set's first member; keys name
    /// only pools in `pools`, as for `pg_temp`.
    pub primary_temp: BTreeMap<PgId, OsdId>,
    pub crush: CrushMap,
    /// Bumped whenever the CRUSH map changes.
    pub crush_version: u32,
    pub full_ratio: f64,
    pub backfillfull_ratio: f64,
    pub nearfull_ratio: f64,
}

impl_versioned!(OsdMap, "osdmap", version = 1, compat = 1, {
    fsid, epoch, created_us, modified_us, flags, osds, pools, pool_max,
    pg_temp, primary_temp, crush, crush_version, full_ratio, backfillfull_ratio,
    nearfull_ratio,
});

impl OsdMap {
    /// Epoch 0 of a new cluster: no OSDs, no pools, the default CRUSH map.
    /// The mon's first incremental makes epoch 1.
    pub fn new(fsid: uuid::Uuid, created_us: u64) -> Self {
        OsdMap {
            fsid,
            epoch: 0,
            created_us,
            modified_us: created_us,
            flags: OsdMapFlags::DEFAULT,
            osds: Vec::new(),
            pools: BTreeMap::new(),
            pool_max: 0,
            pg_temp: BTreeMap::new(),
            primary_temp: BTreeMap::new(),
            crush: CrushMap::new_default(),
            crush_version: 1,
            full_ratio: 0.95,
            backfillfull_ratio: 0.90,
            nearfull_ratio: 0.85,
        }
    }

    /// Full-map blob: the versioned encoding followed by its crc32c.
    pub fn encode_sealed(&self) -> Vec<u8> {
        seal(self)
    }

    /// Checks the crc, then decodes; refuses encodings from a newer,
    /// incompatible writer.
    pub fn decode_sealed(bytes: &[u8]) -> Result<Self, DecodeError> {
        unseal(bytes)
    }

    pub fn max_osd(&self) -> i32 {
        self.osds.len() as i32
    }

    /// Grows or shrinks the OSD table; new slots are empty (not existing).
    /// The size is clamped to `0..=MAX_OSD`; [`OsdMap::apply_incremental`]
    /// refuses larger values with a typed error instead.
    pub fn set_max_osd(&mut self, max_osd: i32) {
        self.osds
            .resize(max_osd.clamp(0, MAX_OSD) as usize, OsdSlot::default());
    }

    pub fn osd(&self, id: OsdId) -> Option<&OsdSlot> {
        usize::try_from(id).ok().and_then(|i| self.osds.get(i))
    }

    pub fn osd_mut(&mut self, id: OsdId) -> Option<&mut OsdSlot> {
        usize::try_from(id)
            .ok()
            .and_then(move |i| self.osds.get_mut(i))
    }

    /// The slot of an OSD that exists, or a typed error.
    pub fn existing_osd(&self, id: OsdId) -> Result<&OsdSlot, MapError> {
        self.osd(id)
            .filter(|s| s.exists())
            .ok_or(MapError::NoSuchOsd {
                osd: id,
                max_osd: self.max_osd(),
            })
    }

    pub fn exists(&self, id: OsdId) -> bool {
        self.osd(id).is_some_and(OsdSlot::exists)
    }

    pub fn is_up(&self, id: OsdId) -> bool {
        self.osd(id).is_some_and(OsdSlot::is_up)
    }

    pub fn is_down(&self, id: OsdId) -> bool {
        !self.is_up(id)
    }

    pub fn is_in(&self, id: OsdId) -> bool {
        self.osd(id).is_some_and(OsdSlot::is_in)
    }

    pub fn is_out(&self, id: OsdId) -> bool {
        !self.is_in(id)
    }

    /// Ids of OSDs that exist.
    pub fn existing_osds(&self) -> impl Iterator<Item = OsdId> + '_ {
        (0..self.max_osd()).filter(|&i| self.exists(i))
    }

    pub fn num_osds(&self) -> usize {
        self.existing_osds().count()
    }

    pub fn num_up_osds(&self) -> usize {
        self.existing_osds().filter(|&i| self.is_up(i)).count()
    }

    pub fn num_in_osds(&self) -> usize {
        self.existing_osds().filter(|&i| self.is_in(i)).count()
    }

    pub fn test_flag(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    pub fn pool(&self, id: PoolId) -> Result<&PgPool, MapError> {
        self.pools.get(&id).ok_or(MapError::NoSuchPool(id))
    }

    pub fn pool_by_name(&self, name: &str) -> Result<&PgPool, MapError> {
        self.pools
            .values()
            .find(|p| p.name == name)
            .ok_or_else(|| MapError::NoSuchPoolName(name.to_string()))
    }

    /// The OSD registered with `uuid`, if any (so a re-registering OSD
    /// gets its old id back).
    pub fn osd_by_uuid(&self, uuid: &uuid::Uuid) -> Option<OsdId> {
        self.existing_osds()
            .find(|&i| self.osd(i).is_some_and(|s| &s.uuid == uuid))
    }

    /// The lowest id free for a new OSD (a hole left by a destroyed OSD,
    /// or `max_osd`).
    pub fn next_free_osd_id(&self) -> OsdId {
        (0..self.max_osd())
            .find(|&i| !self.exists(i))
            .unwrap_or(self.max_osd())
    }

    /// The lowest pool id never used (`pool_max + 1`).
    pub fn next_pool_id(&self) -> PoolId {
        self.pool_max + 1
    }

    /// Reweights indexed by OSD id, as CRUSH's `is_out` reads them
    /// (0 for ids that do not exist).
    pub fn crush_weights(&self) -> Vec<u32> {
        self.osds
            .iter()
            .map(|s| if s.exists() { s.weight } else { 0 })
            .collect()
    }
}
