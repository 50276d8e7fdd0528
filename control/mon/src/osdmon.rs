//! The OSDMap service: the committed map, the changes pending for the next
//! epoch, and the OSD lifecycle (registration, boot, failure reports,
//! beacons, down -> out, up_thru and pg_temp requests, an OSD's request to
//! be marked down as it stops).
//!
//! Pure logic: time comes in as a parameter and nothing here does I/O, so
//! the rules are tested directly. Changes accumulate in a pending copy of
//! the map (epoch + 1); the server commits it, and the incremental is the
//! difference between the two.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalmar_maps::crush::map::WEIGHT_ONE;
use kalmar_maps::osd::{OsdState, WEIGHT_IN, WEIGHT_OUT};
use kalmar_maps::{Epoch, Incremental, OsdId, OsdMap, OsdMapFlags, OsdSlot};
use kalmar_proto::mon::{OsdAlive, OsdBeacon, OsdBoot, OsdFailure, OsdPgTemp};
use uuid::Uuid;

use crate::errors::{CmdError, EEXIST};
use crate::options::MonOptions;

/// Largest OSD id the mon hands out (bounds `max_osd` and the map size).
pub const MAX_OSD_ID: OsdId = 1 << 16;

#[derive(Debug, Clone, Copy)]
struct Report {
    received: Instant,
    failed_for: Duration,
}

pub struct OsdMon {
    map: OsdMap,
    pending: Option<OsdMap>,
    opts: Arc<MonOptions>,
    /// target -> reporter -> report.
    failures: BTreeMap<OsdId, BTreeMap<OsdId, Report>>,
    last_beacon: BTreeMap<OsdId, Instant>,
    down_since: BTreeMap<OsdId, Instant>,
    last_epoch_clean: BTreeMap<OsdId, Epoch>,
    /// An instant and the wall clock then: down stamps are kept in the
    /// map in wall-clock time, the timers run on instants.
    clock_base: (Instant, u64),
}

impl OsdMon {
    /// Takes over the committed `map` at `now` (wall clock: the system's).
    pub fn new(map: OsdMap, opts: Arc<MonOptions>, now: Instant) -> OsdMon {
        Self::new_at(map, opts, now, kalmar_maps::time::now_us())
    }

    /// Takes over the committed `map` at `now`, when the wall clock reads
    /// `now_us`: up OSDs get a fresh beacon window (the mon cannot know
    /// what happened while it was away); a down OSD's down -> out window
    /// runs from its `down_stamp_us` in the map (Ceph's
    /// `osd_xinfo.down_stamp`), so a mon restart does not reset it.
    pub fn new_at(map: OsdMap, opts: Arc<MonOptions>, now: Instant, now_us: u64) -> OsdMon {
        let mut last_beacon = BTreeMap::new();
        let mut down_since = BTreeMap::new();
        for id in map.existing_osds() {
            if map.is_up(id) {
                last_beacon.insert(id, now);
            } else if map.is_in(id) {
                let stamp = map.osd(id).map_or(0, |s| s.down_stamp_us);
                let down_for = Duration::from_micros(now_us.saturating_sub(stamp));
                let since = match stamp {
                    0 => now,
                    _ => now.checked_sub(down_for).unwrap_or(now),
                };
                down_since.insert(id, since);
            }
        }
        OsdMon {
            map,
            pending: None,
            opts,
            failures: BTreeMap::new(),
            last_beacon,
            down_since,
            last_epoch_clean: BTreeMap::new(),
            clock_base: (now, now_us),
        }
    }

    /// The wall clock at `now`.
    fn wall_us(&self, now: Instant) -> u64 {
        let (base, base_us) = self.clock_base;
        base_us.saturating_add(now.saturating_duration_since(base).as_micros() as u64)
    }

    /// The committed map.
    pub fn map(&self) -> &OsdMap {
        &self.map
    }

    /// The map as it will be after the pending changes.
    pub fn view(&self) -> &OsdMap {
        self.pending.as_ref().unwrap_or(&self.map)
    }

    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    fn next_epoch(&self) -> Epoch {
        self.map.epoch + 1
    }

    fn pending_mut(&mut self) -> &mut OsdMap {
        let next = self.next_epoch();
        self.pending.get_or_insert_with(|| {
            let mut m = self.map.clone();
            m.epoch = next;
            m
        })
    }

    fn slot_mut(&mut self, id: OsdId) -> Result<&mut OsdSlot, CmdError> {
        let max_osd = self.view().max_osd();
        self.pending_mut()
            .osd_mut(id)
            .filter(|s| s.exists())
            .ok_or_else(|| CmdError::noent(format!("osd.{id} does not exist (max_osd {max_osd})")))
    }

    /// The pending map and its incremental, stamped `now_us`, ready to be
    /// committed. The incremental is checked to rebuild the map exactly.
    pub fn take_pending(&mut self, now_us: u64) -> Result<Option<(OsdMap, Incremental)>, String> {
        let Some(mut next) = self.pending.take() else {
            return Ok(None);
        };
        next.modified_us = now_us;
        if next.crush != self.map.crush {
            // Applying an incremental with a crush map bumps the version.
            next.crush_version = self.map.crush_version.wrapping_add(1);
        }
        let inc = Incremental::diff(&self.map, &next);
        let mut check = self.map.clone();
        check
            .apply_incremental(&inc)
            .map_err(|e| format!("incremental for epoch {} does not apply: {e}", next.epoch))?;
        if check != next {
            return Err(format!(
                "incremental for epoch {} does not rebuild the map",
                next.epoch
            ));
        }
        Ok(Some((next, inc)))
    }

    /// Drops pending changes (their commit failed).
    pub fn discard_pending(&mut self) {
        self.pending = None;
    }

    /// The epoch was committed.
    pub fn committed(&mut self, map: OsdMap) {
        self.map = map;
    }

    /// Lowest `last_epoch_clean` reported by the up OSDs (trimming bound).
    pub fn min_last_epoch_clean(&self) -> Option<Epoch> {
        self.map
            .existing_osds()
            .filter(|&id| self.map.is_up(id))
            .map(|id| self.last_epoch_clean.get(&id).copied().unwrap_or(0))
            .min()
    }

    /// Registers an OSD: the id already holding `uuid`, else `want_id`
    /// (when free), else the lowest free id. New OSDs exist but are out
    /// until their first boot.
    pub fn osd_mkfs(&mut self, uuid: Uuid, want_id: OsdId, host: &str) -> Result<OsdId, CmdError> {
        self.osd_mkfs_class(uuid, want_id, host, "", WEIGHT_ONE)
    }

    /// As [`OsdMon::osd_mkfs`], also setting the device class in CRUSH
    /// when `class` is not empty and the OSD has none (Ceph's `osd new`
    /// with `crush_device_class`). A new OSD goes into CRUSH at `host`
    /// with `weight` (16.16 fixed point). A destroyed id is given to the
    /// new uuid, keeping its CRUSH position and weight (a replaced disk).
    pub fn osd_mkfs_class(
        &mut self,
        uuid: Uuid,
        want_id: OsdId,
        host: &str,
        class: &str,
        weight: u32,
    ) -> Result<OsdId, CmdError> {
        if uuid.is_nil() {
            return Err(CmdError::inval("an OSD needs a non-nil uuid"));
        }
        let view = self.view();
        if let Some(id) = view
            .existing_osds()
            .find(|&id| view.osd(id).is_some_and(|s| s.uuid == uuid))
        {
            if want_id >= 0 && want_id != id {
                return Err(CmdError::new(
                    EEXIST,
                    format!("uuid {uuid} is already osd.{id}, not osd.{want_id}"),
                ));
            }
            return Ok(id);
        }
        let id = if want_id >= 0 {
            if want_id > MAX_OSD_ID {
                return Err(CmdError::inval(format!(
                    "osd id {want_id} is above the limit {MAX_OSD_ID}"
                )));
            }
            let destroyed = view
                .osd(want_id)
                .is_some_and(|s| s.state.has(OsdState::DESTROYED));
            if view.exists(want_id) && !destroyed {
                return Err(CmdError::new(
                    EEXIST,
                    format!("osd.{want_id} already exists with another uuid; destroy it first (osd destroy osd.{want_id} --yes-i-really-mean-it) to give its id to a new disk"),
                ));
            }
            want_id
        } else {
            (0..=MAX_OSD_ID)
                .find(|&i| !view.exists(i))
                .ok_or_else(|| CmdError::inval("no free osd id"))?
        };
        // A destroyed id given to a new disk keeps its OSD info (up_from,
        // ...), as Ceph keeps osd_info across `osd destroy` and `osd new`:
        // the id has booted before, so its first boot on the new disk is
        // not a new OSD's (its CRUSH weight stays; see create-or-move).
        let kept_info = view
            .osd(id)
            .filter(|s| s.state.has(OsdState::DESTROYED))
            .map(|s| s.info);
        let host = if host.is_empty() { "localhost" } else { host };
        let m = self.pending_mut();
        if id >= m.max_osd() {
            m.set_max_osd(id + 1);
        }
        if !m.crush.device_is_placed(id) {
            m.crush.add_osd(id, weight, host)?;
        }
        if !class.is_empty() {
            if let Some(d) = m.crush.devices.get_mut(&id).filter(|d| d.class.is_none()) {
                d.class = Some(class.to_string());
            }
        }
        m.crush.rebuild_shadow_trees()?;
        if let Some(s) = m.osd_mut(id) {
            *s = OsdSlot {
                state: OsdState(OsdState::EXISTS | OsdState::NEW),
                weight: WEIGHT_OUT,
                uuid,
                info: kept_info.unwrap_or_default(),
                ..OsdSlot::default()
            };
        }
        Ok(id)
    }

    /// An OSD says it is running. Returns whether the map changes.
    pub fn boot(&mut self, b: &OsdBoot, now: Instant) -> Result<bool, String> {
        let view = self.view();
        let slot = view.osd(b.osd_id).filter(|s| s.exists()).ok_or_else(|| {
            format!(
                "osd.{} does not exist; register it with osd mkfs first",
                b.osd_id
            )
        })?;
        if slot.uuid != b.uuid {
            return Err(format!(
                "osd.{} has uuid {}, the booting daemon has {}",
                b.osd_id, slot.uuid, b.uuid
            ));
        }
        // The supported mixes of releases (docs/deploy.md, "Upgrading"):
        // an OSD of a release this mon does not run next to stays down,
        // with both versions in the mon's log. OSDs from before the
        // field (development builds of the first release) state none.
        if let Some(v) = b.metadata.get(kalmar_common::release::METADATA_KEY) {
            kalmar_common::release::check_peer(
                &format!("osd.{}", b.osd_id),
                v,
                kalmar_common::release::Release::current(),
                kalmar_common::release::UPGRADES_FROM,
            )?;
        }
        if view.test_flag(OsdMapFlags::NOUP) || slot.state.has(OsdState::NOUP) {
            return Err(format!("osd.{} may not boot: noup is set", b.osd_id));
        }
        let unchanged = slot.is_up() && slot.addrs == b.addrs;
        let replaced = slot.is_up() && slot.addrs != b.addrs;
        if self.map.is_up(b.osd_id) && !view.is_up(b.osd_id) {
            // Marked down in the epoch being built: boot after it.
            return Ok(false);
        }
        if replaced {
            // A new instance while the old one is still marked up: the old
            // one goes down in this epoch and the OSD's repeated boot marks
            // the new one up in a later epoch, so its PGs see an interval
            // without it and re-peer (Ceph's prepare_boot does the same).
            tracing::info!(
                osd = b.osd_id,
                "boot of a new instance: marking the old one down first"
            );
            self.mark_down(b.osd_id, now);
            return Ok(true);
        }
        self.last_beacon.insert(b.osd_id, now);
        self.failures.remove(&b.osd_id);
        self.down_since.remove(&b.osd_id);
        if unchanged {
            return Ok(false);
        }
        self.update_class_on_boot(b);
        let next = self.next_epoch();
        let noin_global = self.view().test_flag(OsdMapFlags::NOIN);
        let s = self.slot_mut(b.osd_id).map_err(|e| e.msg)?;
        s.state.0 |= OsdState::UP;
        s.addrs = b.addrs;
        s.info.up_from = next;
        let wants_in = s.state.has(OsdState::NEW)
            || (s.state.has(OsdState::AUTOOUT) && s.weight == WEIGHT_OUT);
        // Ceph's can_mark_in: the global `noin` flag or the OSD's own
        // NOIN keeps a booting OSD out. It stays NEW/AUTOOUT, so a boot
        // after the flag is gone marks it in.
        let noin = noin_global || s.state.has(OsdState::NOIN);
        if wants_in && noin {
            tracing::info!(osd = b.osd_id, "noin is set: the booting osd stays out");
        } else {
            if wants_in {
                s.weight = WEIGHT_IN;
            }
            s.state.0 &= !(OsdState::NEW | OsdState::AUTOOUT);
        }
        Ok(true)
    }

    /// A booting OSD that names its device class (metadata
    /// `crush_device_class`, sent when its `osd_class_update_on_start` is
    /// on) gets it in CRUSH unless it already has a class: an admin's
    /// `set-device-class` wins, as in Ceph.
    fn update_class_on_boot(&mut self, b: &OsdBoot) {
        let Some(class) = b.metadata.get("crush_device_class") else {
            return;
        };
        if !kalmar_maps::crush::edit::is_valid_name(class) {
            tracing::warn!(
                osd = b.osd_id,
                class,
                "invalid device class from a booting osd"
            );
            return;
        }
        let unset = self
            .view()
            .crush
            .devices
            .get(&b.osd_id)
            .is_some_and(|d| d.class.is_none());
        if !unset {
            return;
        }
        let r = self.edit_map(|m, _| {
            if let Some(d) = m.crush.devices.get_mut(&b.osd_id) {
                d.class = Some(class.clone());
            }
            m.crush.rebuild_shadow_trees().map_err(CmdError::from)
        });
        match r {
            Ok(()) => tracing::info!(osd = b.osd_id, class, "device class set at boot"),
            Err(e) => tracing::warn!(osd = b.osd_id, "device class not set: {e}"),
        }
    }

    fn mark_down(&mut self, id: OsdId, now: Instant) {
        let next = self.next_epoch();
        let stamp = self.wall_us(now);
        if let Ok(s) = self.slot_mut(id) {
            s.state.0 &= !OsdState::UP;
            s.info.down_at = next;
            s.down_stamp_us = stamp;
        }
        self.last_beacon.remove(&id);
        self.failures.remove(&id);
        self.down_since.insert(id, now);
    }

    /// A peer's failure report (or its retraction).
    pub fn failure(&mut self, f: &OsdFailure, now: Instant) -> Result<(), String> {
        let view = self.view();
        if f.reporter == f.target {
            return Err(format!("osd.{} reported itself", f.reporter));
        }
        if !view.is_up(f.reporter) {
            return Err(format!("reporter osd.{} is not up", f.reporter));
        }
        let Some(target) = view.osd(f.target).filter(|s| s.is_up()) else {
            return Ok(()); // already down: nothing to do
        };
        if f.epoch < target.info.up_from {
            return Ok(()); // about an earlier incarnation
        }
        if f.is_failed {
            let report = Report {
                received: now,
                failed_for: Duration::from_millis(f.failed_for_ms),
            };
            self.failures
                .entry(f.target)
                .or_default()
                .insert(f.reporter, report);
            self.check_failure(f.target, now);
        } else if let Some(r) = self.failures.get_mut(&f.target) {
            r.remove(&f.reporter);
            if r.is_empty() {
                self.failures.remove(&f.target);
            }
        }
        Ok(())
    }

    /// Marks `target` down when enough distinct, live reporters agree and
    /// it has been failing for at least the grace.
    fn check_failure(&mut self, target: OsdId, now: Instant) -> bool {
        let view = self.view();
        if view.test_flag(OsdMapFlags::NODOWN)
            || view
                .osd(target)
                .is_some_and(|s| s.state.has(OsdState::NODOWN))
        {
            return false;
        }
        let Some(reports) = self.failures.get(&target) else {
            return false;
        };
        let live: Vec<&Report> = reports
            .iter()
            .filter(|(reporter, _)| view.is_up(**reporter))
            .map(|(_, r)| r)
            .collect();
        if live.len() < self.opts.mon_osd_min_down_reporters {
            return false;
        }
        let failed_since = live
            .iter()
            .map(|r| r.received.checked_sub(r.failed_for).unwrap_or(r.received))
            .min();
        match failed_since {
            Some(t) if now.saturating_duration_since(t) >= self.opts.osd_heartbeat_grace => {
                tracing::info!(
                    osd = target,
                    reporters = live.len(),
                    "marking osd down: failure reports"
                );
                self.mark_down(target, now);
                true
            }
            _ => false,
        }
    }

    pub fn beacon(&mut self, b: &OsdBeacon, now: Instant) {
        if self.view().is_up(b.osd_id) {
            self.last_beacon.insert(b.osd_id, now);
            self.last_epoch_clean.insert(b.osd_id, b.last_epoch_clean);
        }
    }

    /// Raises `up_thru` (never beyond the epoch being built).
    pub fn alive(&mut self, a: &OsdAlive) -> Result<bool, String> {
        let view = self.view();
        let slot = view
            .osd(a.osd_id)
            .filter(|s| s.is_up())
            .ok_or(format!("osd.{} is not up", a.osd_id))?;
        let want = a.want_up_thru.min(self.next_epoch());
        if slot.info.up_thru >= want {
            return Ok(false);
        }
        self.slot_mut(a.osd_id).map_err(|e| e.msg)?.info.up_thru = want;
        Ok(true)
    }

    /// pg_temp requests of `p.osd_id`, honoured only for PGs it is the
    /// current acting primary of. An empty list removes the entry. The
    /// sender's up_thru is raised to the new epoch, so it can activate the
    /// interval the change starts. Returns the number of entries changed.
    pub fn pg_temp(&mut self, p: &OsdPgTemp) -> Result<usize, String> {
        if !self.view().is_up(p.osd_id) {
            return Err(format!("osd.{} is not up", p.osd_id));
        }
        let mut changes = Vec::new();
        for (pg, osds) in &p.pg_temp {
            // A pool the pending epoch removes (Ceph's prepare_pgtemp skips
            // those too): applying the epoch drops temp entries of missing
            // pools, so the pending map would no longer match its
            // incremental and the commit would fail.
            if !self.view().pools.contains_key(&pg.pool) {
                return Err(format!("pool {} is being removed", pg.pool));
            }
            let pool = self.map.pool(pg.pool).map_err(|e| e.to_string())?;
            if pg.seed >= pool.pg_num {
                return Err(format!(
                    "pg {pg} does not exist (pool {} has pg_num {})",
                    pg.pool, pool.pg_num
                ));
            }
            let primary = self
                .map
                .pg_to_up_acting_osds(*pg)
                .map_err(|e| e.to_string())?
                .acting_primary;
            if primary != p.osd_id {
                return Err(format!(
                    "osd.{} is not the primary of {pg} (osd.{primary} is)",
                    p.osd_id
                ));
            }
            if osds.len() > pool.size as usize {
                return Err(format!(
                    "pg_temp for {pg} has {} osds, pool size is {}",
                    osds.len(),
                    pool.size
                ));
            }
            if let Some(bad) = osds.iter().find(|&&o| !self.map.exists(o)) {
                return Err(format!(
                    "pg_temp for {pg} names osd.{bad}, which does not exist"
                ));
            }
            let current = self.view().pg_temp.get(pg);
            let unchanged = match current {
                None => osds.is_empty(),
                Some(cur) => cur == osds,
            };
            if !unchanged {
                changes.push((*pg, osds.clone()));
            }
        }
        if changes.is_empty() {
            return Ok(0);
        }
        let next = self.next_epoch();
        let n = changes.len();
        let m = self.pending_mut();
        for (pg, osds) in changes {
            m.primary_temp.remove(&pg);
            if osds.is_empty() {
                m.pg_temp.remove(&pg);
            } else {
                m.pg_temp.insert(pg, osds);
            }
        }
        if let Some(s) = m.osd_mut(p.osd_id) {
            s.info.up_thru = s.info.up_thru.max(next);
        }
        Ok(n)
    }

    /// Timer work: failure graces that have now passed, missing beacons,
    /// down -> out, stale reports.
    pub fn tick(&mut self, now: Instant) {
        let targets: Vec<OsdId> = self.failures.keys().copied().collect();
        for t in targets {
            self.check_failure(t, now);
        }
        let report_timeout = self.opts.mon_osd_report_timeout;
        for r in self.failures.values_mut() {
            r.retain(|_, rep| now.saturating_duration_since(rep.received) < report_timeout);
        }
        self.failures.retain(|_, r| !r.is_empty());

        let view = self.view();
        let nodown = view.test_flag(OsdMapFlags::NODOWN);
        let silent: Vec<OsdId> = view
            .existing_osds()
            .filter(|&id| view.is_up(id))
            .filter(|id| {
                self.last_beacon
                    .get(id)
                    .is_none_or(|t| now.saturating_duration_since(*t) >= report_timeout)
            })
            .collect();
        if !nodown {
            for id in silent {
                tracing::info!(
                    osd = id,
                    "marking osd down: no beacon within mon_osd_report_timeout"
                );
                self.mark_down(id, now);
            }
        }

        let view = self.view();
        if view.test_flag(OsdMapFlags::NOOUT) {
            return;
        }
        let interval = self.opts.mon_osd_down_out_interval;
        let candidates: Vec<OsdId> = view
            .existing_osds()
            .filter(|&id| !view.is_up(id) && view.is_in(id))
            .filter(|&id| view.osd(id).is_some_and(|s| !s.state.has(OsdState::NOOUT)))
            .collect();
        for id in candidates {
            let since = *self.down_since.entry(id).or_insert(now);
            if now.saturating_duration_since(since) >= interval {
                tracing::info!(
                    osd = id,
                    "marking osd out: down longer than mon_osd_down_out_interval"
                );
                if let Ok(s) = self.slot_mut(id) {
                    s.weight = WEIGHT_OUT;
                    s.state.0 |= OsdState::AUTOOUT;
                }
            }
        }
    }

    /// Sets or clears pools' `full_quota` / `full` flags from their
    /// reported usage (see [`crate::quota`]); returns the pools changed.
    pub fn update_pool_quotas(&mut self, usage: &crate::quota::PoolUsage) -> usize {
        let due = self
            .view()
            .pools
            .values()
            .any(|p| crate::quota::decide(p, usage.get(&p.id).copied()).is_some());
        if !due {
            return 0;
        }
        let epoch = self.next_epoch();
        crate::quota::apply(self.pending_mut(), usage, epoch)
    }

    /// Applies a change made by a command to a copy of the map (given the
    /// epoch it will land in); only a successful, real change is kept.
    pub fn edit_map<T>(
        &mut self,
        f: impl FnOnce(&mut OsdMap, Epoch) -> Result<T, CmdError>,
    ) -> Result<T, CmdError> {
        let next = self.next_epoch();
        let mut scratch = self.view().clone();
        let out = f(&mut scratch, next)?;
        if &scratch != self.view() {
            scratch.epoch = next;
            self.pending = Some(scratch);
        }
        Ok(out)
    }
}

#[path = "osdmon_cmds.rs"]
mod cmds;

#[path = "osdmon_markdown.rs"]
mod markdown;
pub use markdown::MarkMeDown;

#[cfg(test)]
#[path = "osdmon_tests.rs"]
mod tests;
