//! CRUSH map to Ceph's decompiled text, byte for byte as `crushtool -d`
//! writes it: tunables that differ from the legacy profile, devices,
//! types, buckets children-first (shadow buckets hidden, their ids listed
//! as `id N class C`), rules (shadow takes as `take X class C`).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::map::{ChooseMode, CrushMap, RuleStep, RULE_TYPE_ERASURE, RULE_TYPE_REPLICATED};
use super::text::legacy_tunables;

/// A 16.16 weight as `%.3f` of its `f32` value, as Ceph prints it.
fn fixed3(w: u32) -> String {
    format!("{:.3}", f64::from(w as f32 / 65536f32))
}

impl CrushMap {
    /// Device classes in Ceph's class-id order: first use among devices by
    /// id, then classes that only shadow buckets mention.
    pub(crate) fn class_order(&self) -> Vec<String> {
        let mut order: Vec<String> = Vec::new();
        for d in self.devices.values() {
            if let Some(c) = &d.class {
                if !order.contains(c) {
                    order.push(c.clone());
                }
            }
        }
        let extra: BTreeSet<String> = self
            .buckets()
            .filter_map(|b| b.name.split_once('~').map(|(_, c)| c.to_string()))
            .filter(|c| !order.contains(c))
            .collect();
        order.extend(extra);
        order
    }

    /// The decompiled text (`crushtool -d`).
    pub fn to_text(&self) -> String {
        let mut s = String::from("# begin crush map\n");
        let t = &self.tunables;
        let l = legacy_tunables();
        let tun: [(&str, u32, u32); 8] = [
            (
                "choose_local_tries",
                t.choose_local_tries,
                l.choose_local_tries,
            ),
            (
                "choose_local_fallback_tries",
                t.choose_local_fallback_tries,
                l.choose_local_fallback_tries,
            ),
            (
                "choose_total_tries",
                t.choose_total_tries,
                l.choose_total_tries,
            ),
            (
                "chooseleaf_descend_once",
                t.chooseleaf_descend_once,
                l.chooseleaf_descend_once,
            ),
            (
                "chooseleaf_vary_r",
                t.chooseleaf_vary_r.into(),
                l.chooseleaf_vary_r.into(),
            ),
            (
                "chooseleaf_stable",
                t.chooseleaf_stable.into(),
                l.chooseleaf_stable.into(),
            ),
            (
                "straw_calc_version",
                t.straw_calc_version.into(),
                l.straw_calc_version.into(),
            ),
            (
                "allowed_bucket_algs",
                t.allowed_bucket_algs,
                l.allowed_bucket_algs,
            ),
        ];
        for (name, v, legacy) in tun {
            if v != legacy {
                let _ = writeln!(s, "tunable {name} {v}");
            }
        }
        s.push_str("\n# devices\n");
        for d in self.devices.values() {
            let _ = write!(s, "device {} {}", d.id, d.name);
            if let Some(c) = &d.class {
                let _ = write!(s, " class {c}");
            }
            s.push('\n');
        }
        s.push_str("\n# types\n");
        if !self.types.contains_key(&0) && !self.types.is_empty() {
            s.push_str("type 0 osd\n");
        }
        for (id, name) in &self.types {
            let _ = writeln!(s, "type {id} {name}");
        }
        s.push_str("\n# buckets\n");
        let classes = self.class_order();
        let mut done = BTreeSet::new();
        for b in self.buckets() {
            self.decompile_bucket(b.id, &classes, &mut done, &mut s, 0);
        }
        s.push_str("\n# rules\n");
        for r in self.rules.values() {
            let _ = writeln!(s, "rule {} {{\n\tid {}", r.name, r.id);
            match r.rule_type {
                RULE_TYPE_REPLICATED => s.push_str("\ttype replicated\n"),
                RULE_TYPE_ERASURE => s.push_str("\ttype erasure\n"),
                other => {
                    let _ = writeln!(s, "\ttype {other}");
                }
            }
            let _ = writeln!(s, "\tmin_size {}\n\tmax_size {}", r.min_size, r.max_size);
            for step in &r.steps {
                self.decompile_step(step, &mut s);
            }
            s.push_str("}\n");
        }
        s.push_str("\n# end crush map\n");
        s
    }

    fn decompile_step(&self, step: &RuleStep, s: &mut String) {
        let type_name = |id: i32| {
            self.type_name(id)
                .map_or_else(|| format!("type{id}"), str::to_string)
        };
        let _ = match *step {
            RuleStep::Take(item) => {
                let name = self.item_name(item).unwrap_or("");
                match name.split_once('~') {
                    Some((orig, class)) => writeln!(s, "\tstep take {orig} class {class}"),
                    None => writeln!(s, "\tstep take {name}"),
                }
            }
            RuleStep::Choose {
                leaf,
                mode,
                num,
                type_id,
            } => {
                let op = if leaf { "chooseleaf" } else { "choose" };
                let m = if mode == ChooseMode::Firstn {
                    "firstn"
                } else {
                    "indep"
                };
                writeln!(s, "\tstep {op} {m} {num} type {}", type_name(type_id))
            }
            RuleStep::Emit => writeln!(s, "\tstep emit"),
            RuleStep::SetChooseTries(v) => writeln!(s, "\tstep set_choose_tries {v}"),
            RuleStep::SetChooseLocalTries(v) => writeln!(s, "\tstep set_choose_local_tries {v}"),
            RuleStep::SetChooseLocalFallbackTries(v) => {
                writeln!(s, "\tstep set_choose_local_fallback_tries {v}")
            }
            RuleStep::SetChooseleafTries(v) => writeln!(s, "\tstep set_chooseleaf_tries {v}"),
            RuleStep::SetChooseleafVaryR(v) => writeln!(s, "\tstep set_chooseleaf_vary_r {v}"),
            RuleStep::SetChooseleafStable(v) => writeln!(s, "\tstep set_chooseleaf_stable {v}"),
        };
    }

    /// Children first (depth-first), each bucket once.
    fn decompile_bucket(
        &self,
        id: i32,
        classes: &[String],
        done: &mut BTreeSet<i32>,
        s: &mut String,
        depth: usize,
    ) {
        if depth > self.buckets.len() || !done.insert(id) {
            return;
        }
        let Some(b) = self.bucket(id) else { return };
        for &item in &b.items {
            if item < 0 {
                self.decompile_bucket(item, classes, done, s, depth + 1);
            }
        }
        if b.is_shadow() {
            return;
        }
        let type_name = self
            .type_name(b.type_id)
            .map_or_else(|| format!("type{}", b.type_id), str::to_string);
        let _ = writeln!(s, "{type_name} {} {{", b.name);
        let _ = writeln!(s, "\tid {}\t\t# do not change unnecessarily", b.id);
        for c in classes {
            if let Some(shadow) = self.bucket_by_name(&format!("{}~{c}", b.name)) {
                let _ = writeln!(
                    s,
                    "\tid {} class {c}\t\t# do not change unnecessarily",
                    shadow.id
                );
            }
        }
        let _ = writeln!(s, "\t# weight {}", fixed3(b.weight()));
        s.push_str("\talg straw2\n\thash 0\t# rjenkins1\n");
        for (&item, &w) in b.items.iter().zip(&b.weights) {
            let name = self.item_name(item).map_or_else(
                || {
                    if item >= 0 {
                        format!("device{item}")
                    } else {
                        format!("bucket{}", -1 - item)
                    }
                },
                str::to_string,
            );
            let _ = writeln!(s, "\titem {name} weight {}", fixed3(w));
        }
        s.push_str("}\n");
    }
}
