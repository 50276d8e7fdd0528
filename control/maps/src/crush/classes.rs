//! Device-class shadow trees: for every class, a copy of each hierarchy
//! holding only that class's devices (`default~hdd`), which rules reach
//! with `step take default class hdd`. Built as Ceph's
//! `populate_classes` / `device_class_clone` build them, so ids, item
//! order and weights (and therefore placements) match.

use std::collections::{BTreeMap, BTreeSet};

use super::map::{Bucket, CrushMap, MAX_BUCKETS};
use crate::error::MapError;

impl CrushMap {
    /// Builds a shadow tree per root and class. `keep_ids` gives the ids
    /// shadow buckets had before (from `id -7 class ssd` lines); others get
    /// the lowest id free. Existing shadows with the same name are kept.
    pub fn build_shadow_trees(
        &mut self,
        classes: &[String],
        keep_ids: &BTreeMap<(i32, String), i32>,
    ) -> Result<(), MapError> {
        self.build_shadow_trees_reserving(classes, keep_ids, &BTreeSet::new())
    }

    /// As [`CrushMap::build_shadow_trees`], also keeping the ids in
    /// `used` (shadows that existed before) from new shadow buckets, as
    /// Ceph's `populate_classes` does.
    pub(crate) fn build_shadow_trees_reserving(
        &mut self,
        classes: &[String],
        keep_ids: &BTreeMap<(i32, String), i32>,
        used: &BTreeSet<i32>,
    ) -> Result<(), MapError> {
        let mut reserved: BTreeSet<i32> = keep_ids.values().copied().collect();
        reserved.extend(used.iter().copied());
        for root in self.roots() {
            for class in classes {
                self.clone_for_class(root, class, keep_ids, &reserved, 0)?;
            }
        }
        Ok(())
    }

    fn clone_for_class(
        &mut self,
        original: i32,
        class: &str,
        keep_ids: &BTreeMap<(i32, String), i32>,
        reserved: &BTreeSet<i32>,
        depth: usize,
    ) -> Result<i32, MapError> {
        if depth > self.buckets.len() {
            return Err(MapError::Crush("bucket hierarchy has a cycle".into()));
        }
        let orig = self
            .bucket(original)
            .cloned()
            .ok_or_else(|| MapError::Crush(format!("bucket {original} does not exist")))?;
        let name = format!("{}~{class}", orig.name);
        if let Some(b) = self.bucket_by_name(&name) {
            return Ok(b.id);
        }
        let mut items = Vec::new();
        let mut weights = Vec::new();
        for (&item, &w) in orig.items.iter().zip(&orig.weights) {
            if item >= 0 {
                let matches =
                    self.devices.get(&item).and_then(|d| d.class.as_deref()) == Some(class);
                if matches {
                    items.push(item);
                    weights.push(w);
                }
            } else {
                let child = self.clone_for_class(item, class, keep_ids, reserved, depth + 1)?;
                items.push(child);
                weights.push(self.bucket(child).map_or(0, Bucket::weight));
            }
        }
        let id = match keep_ids.get(&(original, class.to_string())) {
            Some(&id) => id,
            None => {
                let mut id = -1;
                while self.bucket(id).is_some() || reserved.contains(&id) {
                    id -= 1;
                }
                id
            }
        };
        let idx = (-1 - i64::from(id)) as usize;
        if !(-MAX_BUCKETS..0).contains(&id) || self.buckets.get(idx).is_some_and(Option::is_some) {
            return Err(MapError::Crush(format!(
                "shadow bucket id {id} for {name} is taken"
            )));
        }
        if idx >= self.buckets.len() {
            self.buckets.resize(idx + 1, None);
        }
        self.buckets[idx] = Some(Bucket {
            id,
            name,
            type_id: orig.type_id,
            alg: orig.alg,
            hash: orig.hash,
            items,
            weights,
        });
        Ok(id)
    }
}
