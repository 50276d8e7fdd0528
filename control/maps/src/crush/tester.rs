//! `crushtool --test --show-mappings`, reproduced line for line.
//!
//! Behaviour measured against crushtool 16.2: without `--rule`, every rule
//! runs in id order; without `--num-rep`, each rule runs every replica
//! count from its `min_size` to its `max_size`; x runs from 0 to 1023
//! unless both `--min-x` and `--max-x` are given; `--weight ID W` sets a
//! device's reweight to `W * 0x10000` (in `f32`, clamped to [0, 0x10000]),
//! ignoring ids beyond the map's devices; devices in no bucket weigh 0.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::hash::crush_hash32_2;
use super::map::{CrushMap, MAX_DEVICES};
use super::mapper::Workspace;

/// The inputs `crushtool --test` takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CrushTestArgs {
    /// `--rule N`: only this rule.
    pub rule: Option<u32>,
    /// `--num-rep N`: this replica count instead of each rule's range.
    pub num_rep: Option<u32>,
    /// `--min-x` / `--max-x`: used only when both are present.
    pub min_x: Option<i64>,
    pub max_x: Option<i64>,
    /// `--weight ID W`, in the order given (a later one wins).
    pub weights: Vec<(i32, f32)>,
    /// `--pool-id N`: hash x with the pool id, as PG placement does.
    pub pool_id: Option<i64>,
}

/// Default x range when `--min-x`/`--max-x` are not both given.
pub const DEFAULT_MAX_X: i64 = 1023;

impl CrushTestArgs {
    /// The reweight vector crushtool builds: `--weight` overrides, 1.0
    /// for devices present in some bucket, 0 otherwise.
    pub fn weight_vector(&self, map: &CrushMap) -> Vec<u32> {
        // A map decoded from bytes is not bound by the parser's limits.
        let max = map.max_devices().clamp(0, MAX_DEVICES) as usize;
        let mut overrides = BTreeMap::new();
        for &(id, w) in &self.weights {
            let scaled = (w * 65536f32) as i64;
            overrides.insert(id, scaled.clamp(0, 0x10000) as u32);
        }
        (0..max as i32)
            .map(|o| match overrides.get(&o) {
                Some(&w) => w,
                None if map.device_is_placed(o) => 0x10000,
                None => 0,
            })
            .collect()
    }

    fn x_range(&self) -> (i64, i64) {
        match (self.min_x, self.max_x) {
            (Some(a), Some(b)) if a >= 0 && b >= 0 => (a, b),
            _ => (0, DEFAULT_MAX_X),
        }
    }
}

/// Writes `CRUSH rule R x X [a,b,c]` lines as `crushtool --test
/// --show-mappings` prints them.
pub fn crush_test(map: &CrushMap, args: &CrushTestArgs, out: &mut dyn Write) -> io::Result<()> {
    let weights = args.weight_vector(map);
    let (min_x, max_x) = args.x_range();
    let mut ws = Workspace::default();
    let mut result = Vec::new();
    let mut line = String::new();
    for (&rule_id, rule) in &map.rules {
        if args.rule.is_some_and(|r| r != rule_id) {
            continue;
        }
        let (min_rep, max_rep) = match args.num_rep {
            Some(n) => (n, n),
            None => (rule.min_size, rule.max_size),
        };
        for nr in min_rep..=max_rep {
            for x in min_x..=max_x {
                let real_x = match args.pool_id {
                    Some(pool) => crush_hash32_2(x as u32, pool as u32),
                    None => x as u32,
                };
                map.do_rule_into(rule_id, real_x, nr as usize, &weights, &mut ws, &mut result);
                line.clear();
                use std::fmt::Write as _;
                let _ = write!(line, "CRUSH rule {rule_id} x {x} [");
                for (i, v) in result.iter().enumerate() {
                    if i > 0 {
                        line.push(',');
                    }
                    let _ = write!(line, "{v}");
                }
                line.push_str("]\n");
                out.write_all(line.as_bytes())?;
            }
        }
    }
    Ok(())
}

/// [`crush_test`] into a `String`.
pub fn crush_test_string(map: &CrushMap, args: &CrushTestArgs) -> String {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = crush_test(map, args, &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
