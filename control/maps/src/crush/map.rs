//! The CRUSH map: devices, bucket types, buckets, rules and tunables.

use std::collections::BTreeMap;

use kalmar_common::encoding::{Decode, DecodeError, Decoder, Encode};
use kalmar_common::impl_versioned;

/// Ceph's bucket algorithm numbers; Kalmar places with straw2 only.
pub const BUCKET_ALG_UNIFORM: u8 = 1;
pub const BUCKET_ALG_LIST: u8 = 2;
pub const BUCKET_ALG_TREE: u8 = 3;
pub const BUCKET_ALG_STRAW: u8 = 4;
pub const BUCKET_ALG_STRAW2: u8 = 5;
/// `CRUSH_HASH_RJENKINS1`.
pub const HASH_RJENKINS1: u8 = 0;
/// Rule types (`pg_pool_t::TYPE_*`).
pub const RULE_TYPE_REPLICATED: u8 = 1;
pub const RULE_TYPE_ERASURE: u8 = 3;
/// Most buckets a map may hold (ids -1 ..= -MAX_BUCKETS): bounds the
/// bucket table a text or an encoding can make us allocate.
pub const MAX_BUCKETS: i32 = 1 << 16;
/// Device ids must stay below this (bounds `max_devices` and the weight
/// vectors sized by it).
pub const MAX_DEVICES: i32 = 1 << 20;
/// Most items one rule may return (pool sizes are far smaller); bounds the
/// mapper's scratch space.
pub const MAX_RESULT: usize = 256;
/// 1.0 in CRUSH's 16.16 fixed point.
pub const WEIGHT_ONE: u32 = 0x10000;

/// Retry and descent behaviour of the mapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunables {
    pub choose_local_tries: u32,
    pub choose_local_fallback_tries: u32,
    pub choose_total_tries: u32,
    pub chooseleaf_descend_once: u32,
    pub chooseleaf_vary_r: u8,
    pub chooseleaf_stable: u8,
    pub straw_calc_version: u8,
    pub allowed_bucket_algs: u32,
}
impl_versioned!(Tunables, "crush_tunables", version = 1, compat = 1, {
    choose_local_tries, choose_local_fallback_tries, choose_total_tries,
    chooseleaf_descend_once, chooseleaf_vary_r, chooseleaf_stable,
    straw_calc_version, allowed_bucket_algs,
});

impl Tunables {
    /// Ceph's `optimal` profile (jewel and later).
    pub fn optimal() -> Self {
        Tunables {
            choose_local_tries: 0,
            choose_local_fallback_tries: 0,
            choose_total_tries: 50,
            chooseleaf_descend_once: 1,
            chooseleaf_vary_r: 1,
            chooseleaf_stable: 1,
            straw_calc_version: 1,
            allowed_bucket_algs: (1 << BUCKET_ALG_UNIFORM)
                | (1 << BUCKET_ALG_LIST)
                | (1 << BUCKET_ALG_STRAW)
                | (1 << BUCKET_ALG_STRAW2),
        }
    }
}

impl Default for Tunables {
    fn default() -> Self {
        Self::optimal()
    }
}

/// A leaf (an OSD).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Device {
    pub id: i32,
    pub name: String,
    /// Device class (`hdd`, `ssd`, `nvme`), if set.
    pub class: Option<String>,
}
impl_versioned!(Device, "crush_device", version = 1, compat = 1, { id, name, class });

/// An interior node. Items are kept in two parallel vectors so the straw2
/// loop walks plain arrays.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bucket {
    /// Negative.
    pub id: i32,
    pub name: String,
    pub type_id: i32,
    pub alg: u8,
    pub hash: u8,
    /// Child ids: devices (>= 0) or buckets (< 0).
    pub items: Vec<i32>,
    /// 16.16 weight of each child, same order as `items`.
    pub weights: Vec<u32>,
}
impl_versioned!(Bucket, "crush_bucket", version = 1, compat = 1, {
    id, name, type_id, alg, hash, items, weights,
});

impl Bucket {
    /// Sum of the children's weights (16.16), as Ceph keeps it in 32 bits.
    pub fn weight(&self) -> u32 {
        self.weights.iter().fold(0u32, |a, &w| a.wrapping_add(w))
    }

    pub fn size(&self) -> usize {
        self.items.len()
    }

    /// A per-device-class copy of a bucket (`name~class`), which Ceph
    /// builds for `step take X class C` and hides from tree views.
    pub fn is_shadow(&self) -> bool {
        self.name.contains('~')
    }

    /// Weight of child `item` in this bucket.
    pub fn item_weight(&self, item: i32) -> Option<u32> {
        let pos = self.items.iter().position(|&i| i == item)?;
        // A decoded bucket may carry fewer weights than items.
        self.weights.get(pos).copied()
    }
}

/// How a choose step fills its slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChooseMode {
    /// Depth-first; later slots shift on failure (replicated pools).
    Firstn,
    /// Position-stable; failed slots stay empty (EC pools).
    Indep,
}

/// One step of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleStep {
    /// Start from a bucket (or device).
    Take(i32),
    /// `choose`/`chooseleaf` `firstn`/`indep` `num` `type`; `num <= 0`
    /// means "the pool size plus num".
    Choose {
        leaf: bool,
        mode: ChooseMode,
        num: i32,
        type_id: i32,
    },
    Emit,
    SetChooseTries(i32),
    SetChooseleafTries(i32),
    SetChooseLocalTries(i32),
    SetChooseLocalFallbackTries(i32),
    SetChooseleafVaryR(i32),
    SetChooseleafStable(i32),
}

impl RuleStep {
    /// Ceph's op name for JSON dumps.
    pub fn op_name(&self) -> &'static str {
        match self {
            RuleStep::Take(_) => "take",
            RuleStep::Choose {
                leaf: false,
                mode: ChooseMode::Firstn,
                ..
            } => "choose_firstn",
            RuleStep::Choose {
                leaf: false,
                mode: ChooseMode::Indep,
                ..
            } => "choose_indep",
            RuleStep::Choose {
                leaf: true,
                mode: ChooseMode::Firstn,
                ..
            } => "chooseleaf_firstn",
            RuleStep::Choose {
                leaf: true,
                mode: ChooseMode::Indep,
                ..
            } => "chooseleaf_indep",
            RuleStep::Emit => "emit",
            RuleStep::SetChooseTries(_) => "set_choose_tries",
            RuleStep::SetChooseleafTries(_) => "set_chooseleaf_tries",
            RuleStep::SetChooseLocalTries(_) => "set_choose_local_tries",
            RuleStep::SetChooseLocalFallbackTries(_) => "set_choose_local_fallback_tries",
            RuleStep::SetChooseleafVaryR(_) => "set_chooseleaf_vary_r",
            RuleStep::SetChooseleafStable(_) => "set_chooseleaf_stable",
        }
    }
}

impl Encode for RuleStep {
    fn encode(&self, buf: &mut Vec<u8>) {
        let (tag, a, b): (u8, i32, i32) = match *self {
            RuleStep::Take(i) => (1, i, 0),
            RuleStep::Choose {
                leaf,
                mode,
                num,
                type_id,
            } => {
                let tag = match (leaf, mode) {
                    (false, ChooseMode::Firstn) => 2,
                    (false, ChooseMode::Indep) => 3,
                    (true, ChooseMode::Firstn) => 6,
                    (true, ChooseMode::Indep) => 7,
                };
                (tag, num, type_id)
            }
            RuleStep::Emit => (4, 0, 0),
            RuleStep::SetChooseTries(v) => (8, v, 0),
            RuleStep::SetChooseleafTries(v) => (9, v, 0),
            RuleStep::SetChooseLocalTries(v) => (10, v, 0),
            RuleStep::SetChooseLocalFallbackTries(v) => (11, v, 0),
            RuleStep::SetChooseleafVaryR(v) => (12, v, 0),
            RuleStep::SetChooseleafStable(v) => (13, v, 0),
        };
        // Ceph's op numbers, then both arguments.
        buf.push(tag);
        a.encode(buf);
        b.encode(buf);
    }
}

impl Decode for RuleStep {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let tag = d.u8()?;
        let a = i32::decode(d)?;
        let b = i32::decode(d)?;
        let choose = |leaf, mode| RuleStep::Choose {
            leaf,
            mode,
            num: a,
            type_id: b,
        };
        Ok(match tag {
            1 => RuleStep::Take(a),
            2 => choose(false, ChooseMode::Firstn),
            3 => choose(false, ChooseMode::Indep),
            6 => choose(true, ChooseMode::Firstn),
            7 => choose(true, ChooseMode::Indep),
            4 => RuleStep::Emit,
            8 => RuleStep::SetChooseTries(a),
            9 => RuleStep::SetChooseleafTries(a),
            10 => RuleStep::SetChooseLocalTries(a),
            11 => RuleStep::SetChooseLocalFallbackTries(a),
            12 => RuleStep::SetChooseleafVaryR(a),
            13 => RuleStep::SetChooseleafStable(a),
            t => {
                return Err(DecodeError::Invalid {
                    what: "crush rule step",
                    detail: format!("unknown op {t}"),
                })
            }
        })
    }
}

/// A placement rule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub id: u32,
    pub name: String,
    pub rule_type: u8,
    /// Smallest and largest replica counts the rule is meant for;
    /// `crushtool --test` tests this range when `--num-rep` is absent.
    pub min_size: u32,
    pub max_size: u32,
    pub steps: Vec<RuleStep>,
}
impl_versioned!(Rule, "crush_rule", version = 1, compat = 1, {
    id, name, rule_type, min_size, max_size, steps,
});

/// A whole CRUSH map.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CrushMap {
    pub tunables: Tunables,
    pub devices: BTreeMap<i32, Device>,
    pub types: BTreeMap<i32, String>,
    /// Indexed by `-1 - id`.
    pub(crate) buckets: Vec<Option<Bucket>>,
    pub rules: BTreeMap<u32, Rule>,
    /// Highest device id + 1: items at or above it are invalid.
    pub(crate) max_devices: i32,
}
impl_versioned!(CrushMap, "crush_map", version = 1, compat = 1, {
    tunables, devices, types, buckets, rules, max_devices,
});

impl CrushMap {
    /// An empty map with optimal tunables and no types.
    pub fn empty() -> Self {
        CrushMap::default()
    }

    pub fn max_devices(&self) -> i32 {
        self.max_devices
    }

    /// Number of bucket slots (`-1 - id` below this).
    pub fn max_buckets(&self) -> usize {
        self.buckets.len()
    }

    pub fn bucket(&self, id: i32) -> Option<&Bucket> {
        if id >= 0 {
            return None;
        }
        self.buckets.get((-1 - i64::from(id)) as usize)?.as_ref()
    }

    pub fn bucket_mut(&mut self, id: i32) -> Option<&mut Bucket> {
        if id >= 0 {
            return None;
        }
        self.buckets
            .get_mut((-1 - i64::from(id)) as usize)?
            .as_mut()
    }

    /// Buckets in id order, -1 first.
    pub fn buckets(&self) -> impl Iterator<Item = &Bucket> {
        self.buckets.iter().flatten()
    }

    pub fn bucket_by_name(&self, name: &str) -> Option<&Bucket> {
        self.buckets().find(|b| b.name == name)
    }

    pub fn type_id(&self, name: &str) -> Option<i32> {
        self.types
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(&id, _)| id)
    }

    pub fn type_name(&self, id: i32) -> Option<&str> {
        self.types.get(&id).map(String::as_str)
    }

    /// Name of a device or bucket.
    pub fn item_name(&self, id: i32) -> Option<&str> {
        if id >= 0 {
            self.devices.get(&id).map(|d| d.name.as_str())
        } else {
            self.bucket(id).map(|b| b.name.as_str())
        }
    }

    /// Id of a device or bucket by name.
    pub fn item_id(&self, name: &str) -> Option<i32> {
        self.devices
            .values()
            .find(|d| d.name == name)
            .map(|d| d.id)
            .or_else(|| self.bucket_by_name(name).map(|b| b.id))
    }

    /// Whether a device appears in some bucket.
    pub fn device_is_placed(&self, id: i32) -> bool {
        self.buckets().any(|b| b.items.contains(&id))
    }

    /// Buckets that hold `item` directly.
    pub fn parents_of(&self, item: i32) -> Vec<i32> {
        self.buckets()
            .filter(|b| b.items.contains(&item))
            .map(|b| b.id)
            .collect()
    }

    /// Buckets no other bucket holds (roots of the hierarchy), ascending
    /// id order, device-class shadow roots left out.
    pub fn roots(&self) -> Vec<i32> {
        let mut held = std::collections::BTreeSet::new();
        for b in self.buckets() {
            held.extend(b.items.iter().copied().filter(|&i| i < 0));
        }
        let mut roots: Vec<i32> = self
            .buckets()
            .filter(|b| !b.is_shadow())
            .map(|b| b.id)
            .filter(|id| !held.contains(id))
            .collect();
        roots.sort_unstable();
        roots
    }

    /// Weight of a bucket, or of a device inside its first parent.
    pub fn item_weight(&self, id: i32) -> Option<u32> {
        if id < 0 {
            return self.bucket(id).map(Bucket::weight);
        }
        self.buckets().find_map(|b| b.item_weight(id))
    }

    pub fn rule_by_name(&self, name: &str) -> Option<&Rule> {
        self.rules.values().find(|r| r.name == name)
    }
}
