//! OSDMap incrementals: the change from epoch N to N+1.
//!
//! Semantics follow Ceph's `OSDMap::apply_incremental`: `new_state` XORs
//! state bits (clearing UP records `down_at`; clearing EXISTS wipes the
//! slot), `new_up` marks an OSD up at this epoch with its addresses, an
//! empty `new_pg_temp` entry and a `new_primary_temp` of -1 delete.
//!
//! One departure: the temp tables only ever name pools that exist. Ceph's
//! `apply_incremental` leaves them alone and relies on the mon to send the
//! clearing entries (`_prepare_remove_pool`, `clean_temps`, and
//! `prepare_pgtemp` ignoring pools pending removal). Here `old_pools` drops
//! the pool's entries and a new entry for a pool missing after the
//! incremental is ignored, so a sloppy incremental cannot leave a stale
//! override behind, and [`Incremental::diff`] stays exact.

use std::collections::{BTreeMap, BTreeSet};

use kalmar_common::encoding::{seal, unseal, DecodeError};
use kalmar_common::impl_versioned;

use crate::crush::CrushMap;
use crate::error::MapError;
use crate::osd::{OsdAddrs, OsdSlot, OsdState};
use crate::osdmap::{OsdMap, MAX_OSD};
use crate::pg::PgId;
use crate::pool::PgPool;
use crate::{Epoch, OsdId, PoolId};

/// Changes that turn the map at `epoch - 1` into the map at `epoch`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Incremental {
    pub fsid: uuid::Uuid,
    /// The epoch this incremental produces.
    pub epoch: Epoch,
    pub modified_us: u64,
    pub new_flags: Option<u32>,
    pub new_max_osd: Option<i32>,
    pub new_pool_max: Option<PoolId>,
    /// Pools created or changed (whole pool records).
    pub new_pools: BTreeMap<PoolId, PgPool>,
    pub old_pools: BTreeSet<PoolId>,
    /// OSDs that booted: EXISTS|UP set, `up_from = epoch`, addresses set.
    pub new_up: BTreeMap<OsdId, OsdAddrs>,
    /// State bits to toggle (XOR); 0 toggles UP, as in Ceph.
    pub new_state: BTreeMap<OsdId, u32>,
    /// 16.16 reweights.
    pub new_weight: BTreeMap<OsdId, u32>,
    pub new_primary_affinity: BTreeMap<OsdId, u32>,
    pub new_up_thru: BTreeMap<OsdId, Epoch>,
    pub new_uuid: BTreeMap<OsdId, uuid::Uuid>,
    /// Kalmar extension used by [`Incremental::diff`]: whole OSD slots,
    /// applied after every other OSD change, so a diff is always exact.
    pub new_slots: BTreeMap<OsdId, OsdSlot>,
    /// Empty vector = remove the entry.
    pub new_pg_temp: BTreeMap<PgId, Vec<OsdId>>,
    /// -1 = remove the entry.
    pub new_primary_temp: BTreeMap<PgId, OsdId>,
    /// A replacement CRUSH map.
    pub crush: Option<CrushMap>,
    pub new_full_ratio: Option<f64>,
    pub new_backfillfull_ratio: Option<f64>,
    pub new_nearfull_ratio: Option<f64>,
}

impl_versioned!(Incremental, "osdmap_incremental", version = 1, compat = 1, {
    fsid, epoch, modified_us, new_flags, new_max_osd, new_pool_max, new_pools,
    old_pools, new_up, new_state, new_weight, new_primary_affinity, new_up_thru,
    new_uuid, new_slots, new_pg_temp, new_primary_temp, crush,
    new_full_ratio, new_backfillfull_ratio, new_nearfull_ratio,
});

impl Incremental {
    /// An empty incremental producing `epoch`.
    pub fn new(fsid: uuid::Uuid, epoch: Epoch, modified_us: u64) -> Self {
        Incremental {
            fsid,
            epoch,
            modified_us,
            ..Default::default()
        }
    }

    pub fn encode_sealed(&self) -> Vec<u8> {
        seal(self)
    }

    pub fn decode_sealed(bytes: &[u8]) -> Result<Self, DecodeError> {
        unseal(bytes)
    }

    /// An incremental that turns `from` into `to` (`to.epoch` must be
    /// `from.epoch + 1` for it to apply). Changed OSDs travel as whole
    /// slots so the result is exact, for any `to` whose temp entries all
    /// name existing pools (`apply_incremental` keeps that true).
    pub fn diff(from: &OsdMap, to: &OsdMap) -> Incremental {
        let mut inc = Incremental::new(to.fsid, to.epoch, to.modified_us);
        if from.flags != to.flags {
            inc.new_flags = Some(to.flags);
        }
        if from.max_osd() != to.max_osd() {
            inc.new_max_osd = Some(to.max_osd());
        }
        if from.pool_max != to.pool_max {
            inc.new_pool_max = Some(to.pool_max);
        }
        for (id, p) in &to.pools {
            if from.pools.get(id) != Some(p) {
                inc.new_pools.insert(*id, p.clone());
            }
        }
        inc.old_pools = from
            .pools
            .keys()
            .filter(|id| !to.pools.contains_key(id))
            .copied()
            .collect();
        for (i, new) in to.osds.iter().enumerate() {
            if from.osds.get(i) != Some(new) {
                inc.new_slots.insert(i as OsdId, *new);
            }
        }
        for (pg, osds) in &to.pg_temp {
            if from.pg_temp.get(pg) != Some(osds) {
                inc.new_pg_temp.insert(*pg, osds.clone());
            }
        }
        for pg in from
            .pg_temp
            .keys()
            .filter(|pg| !to.pg_temp.contains_key(pg))
        {
            inc.new_pg_temp.insert(*pg, Vec::new());
        }
        for (pg, osd) in &to.primary_temp {
            if from.primary_temp.get(pg) != Some(osd) {
                inc.new_primary_temp.insert(*pg, *osd);
            }
        }
        for pg in from
            .primary_temp
            .keys()
            .filter(|pg| !to.primary_temp.contains_key(pg))
        {
            inc.new_primary_temp.insert(*pg, -1);
        }
        // Applying a crush map bumps `crush_version` even when the map is
        // the same (as Ceph does), so a bump alone must also send it.
        if from.crush != to.crush || from.crush_version != to.crush_version {
            inc.crush = Some(to.crush.clone());
        }
        if from.full_ratio != to.full_ratio {
            inc.new_full_ratio = Some(to.full_ratio);
        }
        if from.backfillfull_ratio != to.backfillfull_ratio {
            inc.new_backfillfull_ratio = Some(to.backfillfull_ratio);
        }
        if from.nearfull_ratio != to.nearfull_ratio {
            inc.new_nearfull_ratio = Some(to.nearfull_ratio);
        }
        inc
    }
}

impl OsdMap {
    /// Applies `inc`, producing epoch `inc.epoch`. Refuses an incremental
    /// that does not follow this epoch or belongs to another cluster; the
    /// map is unchanged when it refuses.
    pub fn apply_incremental(&mut self, inc: &Incremental) -> Result<(), MapError> {
        if inc.fsid != self.fsid {
            return Err(MapError::FsidMismatch {
                have: self.fsid,
                got: inc.fsid,
            });
        }
        if Some(inc.epoch) != self.epoch.checked_add(1) {
            return Err(MapError::EpochGap {
                have: self.epoch,
                got: inc.epoch,
            });
        }
        if let Some(m) = inc.new_max_osd {
            if !(0..=MAX_OSD).contains(&m) {
                return Err(MapError::MaxOsdOutOfRange {
                    max_osd: m,
                    limit: MAX_OSD,
                });
            }
        }
        self.epoch = inc.epoch;
        self.modified_us = inc.modified_us;
        if let Some(f) = inc.new_flags {
            self.flags = f;
        }
        if let Some(m) = inc.new_max_osd {
            // Range checked above, before anything changed.
            self.set_max_osd(m);
        }
        if let Some(m) = inc.new_pool_max {
            self.pool_max = m;
        }
        for (id, p) in &inc.new_pools {
            self.pools.insert(*id, p.clone());
            self.pool_max = self.pool_max.max(*id);
        }
        for id in &inc.old_pools {
            self.pools.remove(id);
            self.pg_temp.retain(|pg, _| pg.pool != *id);
            self.primary_temp.retain(|pg, _| pg.pool != *id);
        }
        if let Some(c) = &inc.crush {
            self.crush = c.clone();
            self.crush_version = self.crush_version.wrapping_add(1);
        }
        let epoch = self.epoch;
        for (&id, &w) in &inc.new_weight {
            if let Some(s) = self.osd_mut(id) {
                s.weight = w;
                if w != 0 {
                    s.state.0 &= !(OsdState::AUTOOUT | OsdState::NEW);
                }
            }
        }
        for (&id, &a) in &inc.new_primary_affinity {
            if let Some(s) = self.osd_mut(id) {
                s.primary_affinity = a;
            }
        }
        for (&id, &bits) in &inc.new_state {
            let Some(s) = self.osd_mut(id) else { continue };
            let bits = if bits == 0 { OsdState::UP } else { bits };
            if s.state.0 & OsdState::UP != 0 && bits & OsdState::UP != 0 {
                s.info.down_at = epoch;
            }
            if s.state.0 & OsdState::EXISTS != 0 && bits & OsdState::EXISTS != 0 {
                // Destroyed: forget everything about the id.
                *s = OsdSlot::default();
            } else {
                s.state.0 ^= bits;
            }
        }
        for (&id, addrs) in &inc.new_up {
            if let Some(s) = self.osd_mut(id) {
                s.state.0 |= OsdState::EXISTS | OsdState::UP;
                s.addrs = *addrs;
                s.info.up_from = epoch;
            }
        }
        for (&id, &e) in &inc.new_up_thru {
            if let Some(s) = self.osd_mut(id) {
                s.info.up_thru = e;
            }
        }
        for (&id, &u) in &inc.new_uuid {
            if let Some(s) = self.osd_mut(id) {
                s.uuid = u;
            }
        }
        for (&id, slot) in &inc.new_slots {
            if let Some(s) = self.osd_mut(id) {
                *s = *slot;
            }
        }
        // Pools are final by now. A temp entry naming a pool that does not
        // exist (removed by this very incremental, or earlier) is dropped:
        // `old_pools` cleared the pool's entries above, and letting a later
        // field re-add one would leave a stale override that `diff` cannot
        // express and that would apply to a new pool with the same id.
        for (pg, osds) in &inc.new_pg_temp {
            if osds.is_empty() || !self.pools.contains_key(&pg.pool) {
                self.pg_temp.remove(pg);
            } else {
                self.pg_temp.insert(*pg, osds.clone());
            }
        }
        for (pg, &osd) in &inc.new_primary_temp {
            if osd < 0 || !self.pools.contains_key(&pg.pool) {
                self.primary_temp.remove(pg);
            } else {
                self.primary_temp.insert(*pg, osd);
            }
        }
        if let Some(r) = inc.new_full_ratio {
            self.full_ratio = r;
        }
        if let Some(r) = inc.new_backfillfull_ratio {
            self.backfillfull_ratio = r;
        }
        if let Some(r) = inc.new_nearfull_ratio {
            self.nearfull_ratio = r;
        }
        Ok(())
    }
}
