//! Building and changing CRUSH maps: the default hierarchy, adding OSDs
//! under hosts, reweighting with propagation to the ancestors.

use super::map::{
    Bucket, ChooseMode, CrushMap, Device, Rule, RuleStep, Tunables, BUCKET_ALG_STRAW2,
    HASH_RJENKINS1, MAX_BUCKETS, MAX_DEVICES, RULE_TYPE_REPLICATED,
};
use crate::error::MapError;

/// Ceph's default bucket types.
pub const DEFAULT_TYPES: &[(i32, &str)] = &[
    (0, "osd"),
    (1, "host"),
    (2, "chassis"),
    (3, "rack"),
    (4, "row"),
    (5, "pdu"),
    (6, "pod"),
    (7, "room"),
    (8, "datacenter"),
    (9, "zone"),
    (10, "region"),
    (11, "root"),
];

/// Name of the default root and rule.
pub const DEFAULT_ROOT: &str = "default";
pub const DEFAULT_RULE: &str = "replicated_rule";

fn err(msg: String) -> MapError {
    MapError::Crush(msg)
}

impl CrushMap {
    /// The map a new cluster starts with: default types, an empty root
    /// `default`, and rule 0 `replicated_rule` (one OSD per host).
    pub fn new_default() -> Self {
        let mut m = CrushMap {
            tunables: Tunables::optimal(),
            ..CrushMap::default()
        };
        for &(id, name) in DEFAULT_TYPES {
            m.types.insert(id, name.to_string());
        }
        let root = m
            .add_bucket(-1, DEFAULT_ROOT, 11)
            .expect("empty map has room for the root");
        let host = 1;
        m.rules
            .insert(0, Rule::replicated(0, DEFAULT_RULE, root, host));
        m
    }

    /// Lowest unused bucket id (-1, -2, ...), as Ceph assigns them.
    pub fn next_bucket_id(&self) -> i32 {
        match self.buckets.iter().position(Option::is_none) {
            Some(i) => -1 - i as i32,
            None => -1 - self.buckets.len() as i32,
        }
    }

    /// Adds an empty straw2 bucket with the given id (`id < 0`).
    pub fn add_bucket(&mut self, id: i32, name: &str, type_id: i32) -> Result<i32, MapError> {
        if !(-MAX_BUCKETS..0).contains(&id) {
            return Err(err(format!(
                "bucket id {id} must be in -{MAX_BUCKETS}..=-1"
            )));
        }
        if self.item_id(name).is_some() {
            return Err(err(format!("item name '{name}' already exists")));
        }
        if !self.types.contains_key(&type_id) {
            return Err(err(format!("bucket '{name}': unknown type id {type_id}")));
        }
        let idx = (-1 - i64::from(id)) as usize;
        if idx >= self.buckets.len() {
            self.buckets.resize(idx + 1, None);
        }
        if self.buckets[idx].is_some() {
            return Err(err(format!("bucket id {id} already in use")));
        }
        self.buckets[idx] = Some(Bucket {
            id,
            name: name.to_string(),
            type_id,
            alg: BUCKET_ALG_STRAW2,
            hash: HASH_RJENKINS1,
            items: Vec::new(),
            weights: Vec::new(),
        });
        Ok(id)
    }

    /// Declares a device (`device N osd.N [class C]`).
    pub fn add_device(&mut self, id: i32, name: &str, class: Option<&str>) -> Result<(), MapError> {
        if !(0..MAX_DEVICES).contains(&id) {
            return Err(err(format!("device id {id} must be in 0..{MAX_DEVICES}")));
        }
        if let Some(other) = self.item_id(name) {
            if other != id {
                return Err(err(format!(
                    "item name '{name}' already names item {other}"
                )));
            }
        }
        self.devices.insert(
            id,
            Device {
                id,
                name: name.to_string(),
                class: class.map(str::to_string),
            },
        );
        self.max_devices = self.max_devices.max(id + 1);
        Ok(())
    }

    /// Puts `item` into bucket `parent` with `weight`, then raises the
    /// weights of `parent` in its own ancestors to match.
    pub fn insert_item(&mut self, parent: i32, item: i32, weight: u32) -> Result<(), MapError> {
        if item >= 0 && !self.devices.contains_key(&item) {
            return Err(err(format!("device {item} is not declared")));
        }
        if item < 0 && self.bucket(item).is_none() {
            return Err(err(format!("bucket {item} does not exist")));
        }
        if item == parent || (item < 0 && self.is_ancestor(item, parent)) {
            return Err(err(format!(
                "adding {item} under {parent} would make a loop"
            )));
        }
        let b = self
            .bucket_mut(parent)
            .ok_or_else(|| err(format!("bucket {parent} does not exist")))?;
        if b.items.contains(&item) {
            return Err(err(format!("item {item} is already in bucket {parent}")));
        }
        b.items.push(item);
        b.weights.push(weight);
        self.propagate_weight(parent);
        Ok(())
    }

    /// Whether `anc` is `item` or holds it, directly or not.
    pub(crate) fn is_ancestor(&self, anc: i32, item: i32) -> bool {
        let mut stack = vec![anc];
        let mut seen = 0usize;
        while let Some(id) = stack.pop() {
            if id == item {
                return true;
            }
            seen += 1;
            if seen > self.buckets.len() + 1 {
                return false;
            }
            if let Some(b) = self.bucket(id) {
                stack.extend(b.items.iter().copied().filter(|&i| i < 0));
            }
        }
        false
    }

    /// Sets the weight of `item` in every bucket holding it, and propagates
    /// the changed bucket weights to the root (Ceph's `adjust_item_weight`).
    pub fn adjust_item_weight(&mut self, item: i32, weight: u32) -> Result<(), MapError> {
        let parents = self.parents_of(item);
        if parents.is_empty() {
            return Err(err(format!("item {item} is not in any bucket")));
        }
        for p in parents {
            if let Some(b) = self.bucket_mut(p) {
                for (i, w) in b.items.iter().zip(b.weights.iter_mut()) {
                    if *i == item {
                        *w = weight;
                    }
                }
            }
            self.propagate_weight(p);
        }
        Ok(())
    }

    /// Re-sets `bucket`'s weight in its parents from its items, upwards.
    fn propagate_weight(&mut self, bucket: i32) {
        let mut frontier = vec![bucket];
        // Each pass climbs one level; a hierarchy cannot be deeper than the
        // number of buckets, which bounds the walk even on a corrupt map.
        for _ in 0..=self.buckets.len() {
            let mut next = Vec::new();
            for id in frontier {
                let Some(w) = self.bucket(id).map(Bucket::weight) else {
                    continue;
                };
                for p in self.parents_of(id) {
                    if let Some(pb) = self.bucket_mut(p) {
                        for (i, pw) in pb.items.iter().zip(pb.weights.iter_mut()) {
                            if *i == id {
                                *pw = w;
                            }
                        }
                    }
                    next.push(p);
                }
            }
            if next.is_empty() {
                return;
            }
            frontier = next;
        }
    }

    /// Removes `item` from every bucket (and the device table if a
    /// device); weights of the former ancestors shrink accordingly.
    pub fn remove_item(&mut self, item: i32) -> Result<(), MapError> {
        if item < 0 && self.bucket(item).is_some_and(|b| !b.items.is_empty()) {
            return Err(err(format!("bucket {item} is not empty")));
        }
        for p in self.parents_of(item) {
            if let Some(b) = self.bucket_mut(p) {
                if let Some(pos) = b.items.iter().position(|&i| i == item) {
                    b.items.remove(pos);
                    if pos < b.weights.len() {
                        b.weights.remove(pos);
                    }
                }
            }
            self.propagate_weight(p);
        }
        if item >= 0 {
            self.devices.remove(&item);
            self.max_devices = self.devices.keys().next_back().map_or(0, |&m| m + 1);
        } else if let Some(slot) = self.buckets.get_mut((-1 - i64::from(item)) as usize) {
            *slot = None;
        }
        Ok(())
    }

    /// Adds `osd.N` with `weight` under host bucket `host` in root
    /// `default`, creating the host if needed: how a new OSD joins.
    pub fn add_osd(&mut self, osd: i32, weight: u32, host: &str) -> Result<(), MapError> {
        let root = match self.bucket_by_name(DEFAULT_ROOT) {
            Some(b) => b.id,
            None => {
                let root_type = self
                    .type_id("root")
                    .ok_or_else(|| err("map has no type 'root'".into()))?;
                let id = self.next_bucket_id();
                self.add_bucket(id, DEFAULT_ROOT, root_type)?
            }
        };
        let host_id = match self.bucket_by_name(host) {
            Some(b) => b.id,
            None => {
                let host_type = self
                    .type_id("host")
                    .ok_or_else(|| err("map has no type 'host'".into()))?;
                let id = self.next_bucket_id();
                self.add_bucket(id, host, host_type)?;
                self.insert_item(root, id, 0)?;
                id
            }
        };
        let name = format!("osd.{osd}");
        self.add_device(osd, &name, None)?;
        if self.device_is_placed(osd) {
            return self.adjust_item_weight(osd, weight);
        }
        self.insert_item(host_id, osd, weight)
    }
}

impl Rule {
    /// `take ROOT, chooseleaf firstn 0 type FAILURE_DOMAIN, emit`.
    pub fn replicated(id: u32, name: &str, root: i32, failure_domain: i32) -> Self {
        Rule {
            id,
            name: name.to_string(),
            rule_type: RULE_TYPE_REPLICATED,
            min_size: 1,
            max_size: 10,
            steps: vec![
                RuleStep::Take(root),
                RuleStep::Choose {
                    leaf: true,
                    mode: ChooseMode::Firstn,
                    num: 0,
                    type_id: failure_domain,
                },
                RuleStep::Emit,
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crush::map::WEIGHT_ONE;

    #[test]
    fn add_osds_builds_hosts_and_weights() {
        let mut m = CrushMap::new_default();
        m.add_osd(0, WEIGHT_ONE, "a").expect("adds");
        m.add_osd(1, WEIGHT_ONE, "a").expect("adds");
        m.add_osd(2, 2 * WEIGHT_ONE, "b").expect("adds");
        let root = m.bucket_by_name("default").expect("root");
        assert_eq!(root.weight(), 4 * WEIGHT_ONE);
        assert_eq!(m.bucket_by_name("a").expect("host").id, -2);
        assert_eq!(m.max_devices(), 3);
        m.adjust_item_weight(2, WEIGHT_ONE).expect("reweights");
        assert_eq!(
            m.bucket_by_name("default").expect("root").weight(),
            3 * WEIGHT_ONE
        );
        m.remove_item(1).expect("removes");
        assert_eq!(
            m.bucket_by_name("default").expect("root").weight(),
            2 * WEIGHT_ONE
        );
        assert!(m.insert_item(-2, -1, 0).is_err(), "loops are refused");
        assert!(m.remove_item(-1).is_err(), "non-empty bucket stays");
    }
}
