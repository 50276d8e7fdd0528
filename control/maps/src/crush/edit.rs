//! The CRUSH edits behind the mon's `osd crush ...` commands, with Ceph's
//! semantics (`CrushWrapper`): locations (`root=default rack=r1`) that
//! create the missing buckets on the way, moving and detaching subtrees,
//! device classes and their shadow trees rebuilt after every change with
//! the ids they had, and simple replicated rules.
//!
//! Only mechanics live here; the commands' messages and error numbers are
//! the mon's.

use std::collections::{BTreeMap, BTreeSet};

use super::map::{Bucket, ChooseMode, CrushMap, Rule, RuleStep, RULE_TYPE_REPLICATED};
use crate::error::MapError;

fn err(msg: String) -> MapError {
    MapError::Crush(msg)
}

/// Most rules a map may hold (Ceph's `CRUSH_MAX_RULES` is 256).
pub const MAX_RULES: u32 = 256;

/// Ceph's `is_valid_crush_name`: letters, digits, `-`, `_`, `.`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A CRUSH weight as the mon takes it: `f32`, scaled by 0x10000 in `f32`,
/// truncated (Ceph's `(int)(weight * (float)0x10000)`).
pub fn weight_from_f64(w: f64) -> Result<u32, MapError> {
    let f = w as f32;
    if !f.is_finite() || !(0.0..=65535.0).contains(&f) {
        return Err(err(format!("weight {w} must be in 0..65535")));
    }
    Ok((f * 65536f32) as u32)
}

/// A location `type=name`, keyed by type name (Ceph's `map<string,
/// string>`, so printed sorted by type name).
pub type Location = BTreeMap<String, String>;

/// Parses `root=default rack=r1` words into a location.
pub fn parse_location(args: &[String]) -> Result<Location, MapError> {
    let mut loc = Location::new();
    for a in args {
        let (t, n) = a
            .split_once('=')
            .filter(|(t, n)| !t.is_empty() && !n.is_empty())
            .ok_or_else(|| err(format!("location '{a}' is not of the form TYPE=NAME")))?;
        if !is_valid_name(n) {
            return Err(err(format!("'{n}' is not a valid crush name")));
        }
        loc.insert(t.to_string(), n.to_string());
    }
    Ok(loc)
}

/// `{rack=r1,root=default}`, as Ceph prints a location.
pub fn location_string(loc: &Location) -> String {
    let parts: Vec<String> = loc.iter().map(|(t, n)| format!("{t}={n}")).collect();
    format!("{{{}}}", parts.join(","))
}

impl CrushMap {
    /// Checks every type named in `loc` exists.
    fn check_location(&self, loc: &Location) -> Result<(), MapError> {
        for t in loc.keys() {
            if self.type_id(t).is_none() {
                return Err(err(format!("unknown crush type '{t}' in location")));
            }
        }
        Ok(())
    }

    /// The type of an item (devices are type 0).
    fn item_type(&self, item: i32) -> i32 {
        self.bucket(item).map_or(0, |b| b.type_id)
    }

    /// Whether `item` already sits directly in the lowest bucket `loc`
    /// names above its type (Ceph's `check_item_loc`).
    pub fn is_at_location(&self, item: i32, loc: &Location) -> bool {
        let own = self.item_type(item);
        for (&tid, tname) in &self.types {
            if tid <= own {
                continue;
            }
            if let Some(name) = loc.get(tname) {
                return self
                    .bucket_by_name(name)
                    .is_some_and(|b| b.items.contains(&item));
            }
        }
        false
    }

    /// Puts `item` at `loc` with `weight` (Ceph's `insert_item`): from the
    /// lowest type up, a named bucket that does not exist is created
    /// around what was built so far; the first one that exists receives
    /// it and the walk stops. The item must not be placed yet.
    pub fn insert_at(&mut self, item: i32, weight: u32, loc: &Location) -> Result<(), MapError> {
        self.check_location(loc)?;
        if item >= 0 && self.device_is_placed(item) || item < 0 && !self.parents_of(item).is_empty()
        {
            return Err(err(format!("item {item} is already placed")));
        }
        let own = self.item_type(item);
        let mut cur = item;
        let mut cur_weight = weight;
        let types: Vec<(i32, String)> = self.types.iter().map(|(&i, n)| (i, n.clone())).collect();
        for (tid, tname) in types {
            if tid == 0 {
                continue;
            }
            let Some(name) = loc.get(&tname) else {
                continue;
            };
            match self.item_id(name) {
                None => {
                    let id = self.next_bucket_id();
                    self.add_bucket(id, name, tid)?;
                    self.insert_item(id, cur, cur_weight)?;
                    cur = id;
                    cur_weight = self.bucket(id).map_or(0, Bucket::weight);
                }
                Some(id) => {
                    let b = self
                        .bucket(id)
                        .ok_or_else(|| err(format!("location {tname}={name} names a device")))?;
                    if b.type_id != tid {
                        let actual = self.type_name(b.type_id).unwrap_or("?").to_string();
                        return Err(err(format!("bucket '{name}' is a {actual}, not a {tname}")));
                    }
                    if tid <= own {
                        return Err(err(format!(
                            "cannot put a {} under {tname} '{name}'",
                            self.type_name(own).unwrap_or("?")
                        )));
                    }
                    self.insert_item(id, cur, cur_weight)?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Takes a bucket out of its parents (weights shrink), keeping it and
    /// its subtree (Ceph's `detach_bucket`).
    pub fn detach(&mut self, item: i32) {
        for p in self.parents_of(item) {
            if let Some(b) = self.bucket_mut(p) {
                if let Some(pos) = b.items.iter().position(|&i| i == item) {
                    b.items.remove(pos);
                    if pos < b.weights.len() {
                        b.weights.remove(pos);
                    }
                }
            }
            self.refresh_weight(p);
        }
    }

    /// Re-sets `bucket`'s weight in its ancestors after its items changed.
    fn refresh_weight(&mut self, bucket: i32) {
        // adjust_item_weight propagates upwards from the parents of the
        // item it changes; a bucket's own total is the sum of its items.
        let w = self.bucket(bucket).map_or(0, Bucket::weight);
        if !self.parents_of(bucket).is_empty() {
            let _ = self.adjust_item_weight(bucket, w);
        }
    }

    /// Moves a bucket (with its subtree and weight) to `loc` (Ceph's
    /// `move_bucket`), or a device keeping its weight (`create_or_move`).
    pub fn move_item(&mut self, item: i32, loc: &Location) -> Result<(), MapError> {
        self.check_location(loc)?;
        let weight = if item < 0 {
            self.bucket(item)
                .map(Bucket::weight)
                .ok_or_else(|| err(format!("bucket {item} does not exist")))?
        } else {
            self.item_weight(item).unwrap_or(0)
        };
        let mut scratch = self.clone();
        if item < 0 {
            scratch.detach(item);
        } else {
            scratch.unlink_device(item);
        }
        scratch.insert_at(item, weight, loc)?;
        *self = scratch;
        Ok(())
    }

    /// Places device `osd` at a full location, as an OSD asks at boot
    /// (`osd crush create-or-move`, Ceph's `osd_crush_update_on_start`)
    /// with its `crush_location`. Returns whether the map changed.
    ///
    /// The location must end at a bucket of the map's top type (`root`);
    /// every type must exist and be above the device type, and a named
    /// bucket that exists must have the named type. Then:
    /// - buckets named but missing are created with their types;
    /// - each named bucket is put inside the next one named above it
    ///   (`host=h1` into `rack=r1`, `rack=r1` into `root=default`) unless
    ///   it already sits somewhere below it: levels the location does not
    ///   name are left as they are, so a host an admin moved into a rack
    ///   stays there for a location of just `host=h1 root=default`;
    /// - the device goes directly into the lowest named bucket, keeping
    ///   the weight it had if it was placed (Ceph's `check_item_loc` then
    ///   `create_or_move_item`), else with `weight`; a device already there
    ///   is left alone.
    ///
    /// Nothing changes when an error is returned.
    pub fn create_or_move_at(
        &mut self,
        osd: i32,
        weight: u32,
        loc: &Location,
    ) -> Result<bool, MapError> {
        if osd < 0 {
            return Err(err(format!("{osd} is not a device id")));
        }
        self.check_location(loc)?;
        let mut levels: Vec<(i32, &str, &str)> = Vec::with_capacity(loc.len());
        for (t, n) in loc {
            let tid = self
                .type_id(t)
                .ok_or_else(|| err(format!("unknown crush type '{t}' in location")))?;
            if tid == 0 {
                return Err(err(format!(
                    "location names the device type '{t}'; name the buckets above the device"
                )));
            }
            levels.push((tid, t.as_str(), n.as_str()));
        }
        levels.sort_unstable_by_key(|l| l.0);
        let mut names = BTreeSet::new();
        if let Some(l) = levels.iter().find(|l| !names.insert(l.2)) {
            return Err(err(format!("location names the bucket '{}' twice", l.2)));
        }
        let (top_id, top_name) = self
            .types
            .iter()
            .next_back()
            .map(|(&i, n)| (i, n.clone()))
            .ok_or_else(|| err("the map has no bucket types".into()))?;
        if levels.last().is_none_or(|l| l.0 != top_id) {
            return Err(err(format!(
                "location {} names no {top_name}: it must end at a bucket of type '{top_name}' (e.g. {top_name}=default)",
                location_string(loc)
            )));
        }
        for &(tid, tname, name) in &levels {
            let Some(id) = self.item_id(name) else {
                continue;
            };
            let b = self
                .bucket(id)
                .ok_or_else(|| err(format!("location {tname}={name} names a device")))?;
            if b.is_shadow() {
                return Err(err(format!(
                    "location {tname}={name} names a device-class shadow bucket"
                )));
            }
            if b.type_id != tid {
                let actual = self.type_name(b.type_id).unwrap_or("?").to_string();
                return Err(err(format!("bucket '{name}' is a {actual}, not a {tname}")));
            }
        }
        let mut m = self.clone();
        let mut ids = Vec::with_capacity(levels.len());
        for &(tid, _, name) in &levels {
            let id = match m.item_id(name) {
                Some(id) => id,
                None => {
                    let id = m.next_bucket_id();
                    m.add_bucket(id, name, tid)?
                }
            };
            ids.push(id);
        }
        for pair in ids.windows(2) {
            let (child, parent) = (pair[0], pair[1]);
            if m.is_ancestor(parent, child) {
                continue;
            }
            if m.is_ancestor(child, parent) {
                return Err(err(format!(
                    "'{}' holds '{}'; it cannot also go inside it",
                    m.item_name(child).unwrap_or("?"),
                    m.item_name(parent).unwrap_or("?")
                )));
            }
            let w = m.bucket(child).map_or(0, Bucket::weight);
            m.detach(child);
            m.insert_item(parent, child, w)?;
        }
        if !m.devices.contains_key(&osd) {
            m.add_device(osd, &format!("osd.{osd}"), None)?;
        }
        let lowest = ids[0];
        if !m.bucket(lowest).is_some_and(|b| b.items.contains(&osd)) {
            let w = if m.device_is_placed(osd) {
                m.item_weight(osd).unwrap_or(weight)
            } else {
                weight
            };
            m.unlink_device(osd);
            m.insert_item(lowest, osd, w)?;
        }
        let changed = m != *self;
        *self = m;
        Ok(changed)
    }

    /// [`CrushMap::create_or_move_at`] for an OSD's first boot (Ceph's
    /// `osd_crush_initial_weight`, else the device's size): Ceph places an
    /// OSD in CRUSH only then, with the weight it asks for; Kalmar's mkfs
    /// already placed it at its host (`kalmar-osd mkfs` with this same
    /// weight, `osd new` with weight 1), so the device takes `weight` here
    /// wherever it is, as if it were placed now. Nothing changes when an
    /// error is returned.
    pub fn create_or_move_first_boot(
        &mut self,
        osd: i32,
        weight: u32,
        loc: &Location,
    ) -> Result<bool, MapError> {
        let mut m = self.clone();
        m.create_or_move_at(osd, weight, loc)?;
        if m.item_weight(osd) != Some(weight) {
            m.adjust_item_weight(osd, weight)?;
        }
        let changed = m != *self;
        *self = m;
        Ok(changed)
    }

    /// Takes a device out of every bucket, keeping its name and class.
    pub fn unlink_device(&mut self, id: i32) {
        for p in self.parents_of(id) {
            if let Some(b) = self.bucket_mut(p) {
                if let Some(pos) = b.items.iter().position(|&i| i == id) {
                    b.items.remove(pos);
                    if pos < b.weights.len() {
                        b.weights.remove(pos);
                    }
                }
            }
            self.refresh_weight(p);
        }
    }

    /// Device classes in use, in class-id order (see `class_order`):
    /// those of devices, and those rules still take.
    pub fn classes(&self) -> Vec<String> {
        let taken: BTreeSet<String> = self
            .rules
            .values()
            .flat_map(|r| r.steps.iter())
            .filter_map(|s| match s {
                RuleStep::Take(id) => self.bucket(*id),
                _ => None,
            })
            .filter_map(|b| b.name.split_once('~').map(|(_, c)| c.to_string()))
            .collect();
        self.class_order()
            .into_iter()
            .filter(|c| {
                taken.contains(c) || self.devices.values().any(|d| d.class.as_deref() == Some(c))
            })
            .collect()
    }

    /// Devices of `class`, ascending.
    pub fn class_devices(&self, class: &str) -> Vec<i32> {
        self.devices
            .values()
            .filter(|d| d.class.as_deref() == Some(class))
            .map(|d| d.id)
            .collect()
    }

    /// Rebuilds every shadow tree from the current hierarchy (Ceph's
    /// `rebuild_roots_with_classes`): shadows of the same bucket and class
    /// keep their ids, and no id a shadow ever had is reused for another,
    /// so rules taking `default~ssd` keep working and placements stay
    /// Ceph's.
    pub fn rebuild_shadow_trees(&mut self) -> Result<(), MapError> {
        let mut keep: BTreeMap<(i32, String), i32> = BTreeMap::new();
        let mut used: BTreeSet<i32> = BTreeSet::new();
        let shadows: Vec<(i32, String)> = self
            .buckets()
            .filter(|b| b.is_shadow())
            .map(|b| (b.id, b.name.clone()))
            .collect();
        for (id, name) in &shadows {
            used.insert(*id);
            if let Some((orig, class)) = name.split_once('~') {
                if let Some(o) = self.bucket_by_name(orig).filter(|b| !b.is_shadow()) {
                    keep.insert((o.id, class.to_string()), *id);
                }
            }
        }
        let classes = self.classes();
        for (id, _) in &shadows {
            if let Some(slot) = self.buckets.get_mut((-1 - i64::from(*id)) as usize) {
                *slot = None;
            }
        }
        self.build_shadow_trees_reserving(&classes, &keep, &used)?;
        // A rule whose class tree is gone would take a missing bucket.
        for r in self.rules.values() {
            for s in &r.steps {
                if let RuleStep::Take(id) = s {
                    if *id < 0 && self.bucket(*id).is_none() {
                        return Err(err(format!(
                            "rule '{}' takes bucket {id}, which the change removes",
                            r.name
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Lowest free rule id (Ceph's `add_simple_rule` picks so).
    pub fn next_rule_id(&self) -> Option<u32> {
        (0..MAX_RULES).find(|i| !self.rules.contains_key(i))
    }

    /// Adds `take ROOT [class C], chooseleaf firstn 0 type T, emit` (or
    /// `choose ... type osd` when the failure domain is the device), as
    /// Ceph's `add_simple_rule`. `root` is the shadow root for a class.
    pub fn add_replicated_rule(
        &mut self,
        name: &str,
        root: i32,
        failure_domain: i32,
    ) -> Result<u32, MapError> {
        let id = self
            .next_rule_id()
            .ok_or_else(|| err(format!("the map already holds {MAX_RULES} rules")))?;
        let mut rule = Rule::replicated(id, name, root, failure_domain);
        rule.rule_type = RULE_TYPE_REPLICATED;
        if failure_domain == 0 {
            rule.steps[1] = RuleStep::Choose {
                leaf: false,
                mode: ChooseMode::Firstn,
                num: 0,
                type_id: 0,
            };
        }
        self.rules.insert(id, rule);
        Ok(id)
    }

    /// The class of a shadow bucket's tree and its original, if `id` is
    /// one (`default~ssd` -> (`default`, `ssd`)).
    pub fn shadow_of(&self, id: i32) -> Option<(String, String)> {
        let b = self.bucket(id)?;
        let (o, c) = b.name.split_once('~')?;
        Some((o.to_string(), c.to_string()))
    }
}

#[cfg(test)]
#[path = "edit_tests.rs"]
mod tests;
