//! `osd crush dump`: devices, types, buckets, rules and tunables in
//! Ceph's JSON shape (weights as raw 16.16 integers).

use serde_json::{json, Value};

use crate::crush::map::BUCKET_ALG_STRAW2;
use crate::crush::{CrushMap, RuleStep, Tunables};

fn alg_name(alg: u8) -> &'static str {
    match alg {
        1 => "uniform",
        2 => "list",
        3 => "tree",
        4 => "straw",
        BUCKET_ALG_STRAW2 => "straw2",
        _ => "unknown",
    }
}

fn tunables_json(t: &Tunables) -> Value {
    let optimal = *t == Tunables::optimal();
    json!({
        "choose_local_tries": t.choose_local_tries,
        "choose_local_fallback_tries": t.choose_local_fallback_tries,
        "choose_total_tries": t.choose_total_tries,
        "chooseleaf_descend_once": t.chooseleaf_descend_once,
        "chooseleaf_vary_r": t.chooseleaf_vary_r,
        "chooseleaf_stable": t.chooseleaf_stable,
        "straw_calc_version": t.straw_calc_version,
        "allowed_bucket_algs": t.allowed_bucket_algs,
        "profile": if optimal { "jewel" } else { "unknown" },
        "optimal_tunables": u8::from(optimal),
        "legacy_tunables": 0,
        "minimum_required_version": "jewel",
        "require_feature_tunables": 1,
        "require_feature_tunables2": 1,
        "has_v2_rules": 0,
        "require_feature_tunables3": u8::from(t.chooseleaf_vary_r != 0),
        "has_v3_rules": 0,
        "has_v4_buckets": 1,
        "require_feature_tunables5": u8::from(t.chooseleaf_stable != 0),
        "has_v5_rules": 0,
    })
}

fn step_json(crush: &CrushMap, s: &RuleStep) -> Value {
    let op = s.op_name();
    match *s {
        RuleStep::Take(item) => {
            json!({ "op": op, "item": item, "item_name": crush.item_name(item).unwrap_or("") })
        }
        RuleStep::Choose { num, type_id, .. } => {
            json!({ "op": op, "num": num, "type": crush.type_name(type_id).unwrap_or("") })
        }
        RuleStep::Emit => json!({ "op": op }),
        RuleStep::SetChooseTries(v)
        | RuleStep::SetChooseleafTries(v)
        | RuleStep::SetChooseLocalTries(v)
        | RuleStep::SetChooseLocalFallbackTries(v)
        | RuleStep::SetChooseleafVaryR(v)
        | RuleStep::SetChooseleafStable(v) => json!({ "op": op, "num": v }),
    }
}

/// One rule as `osd crush rule dump` shows it.
pub fn rule_json(crush: &CrushMap, r: &crate::crush::Rule) -> Value {
    json!({
        "rule_id": r.id,
        "rule_name": r.name,
        "ruleset": r.id,
        "type": r.rule_type,
        "min_size": r.min_size,
        "max_size": r.max_size,
        "steps": r.steps.iter().map(|s| step_json(crush, s)).collect::<Vec<_>>(),
    })
}

/// `osd crush dump --format json`.
pub fn crush_dump_json(crush: &CrushMap) -> Value {
    let devices: Vec<Value> = crush
        .devices
        .values()
        .map(|d| match &d.class {
            Some(c) => json!({ "id": d.id, "name": d.name, "class": c }),
            None => json!({ "id": d.id, "name": d.name }),
        })
        .collect();
    let types: Vec<Value> = crush
        .types
        .iter()
        .map(|(id, n)| json!({ "type_id": id, "name": n }))
        .collect();
    let buckets: Vec<Value> = crush
        .buckets()
        .map(|b| {
            let items: Vec<Value> = b
                .items
                .iter()
                .zip(&b.weights)
                .enumerate()
                .map(|(pos, (id, w))| json!({ "id": id, "weight": w, "pos": pos }))
                .collect();
            json!({
                "id": b.id,
                "name": b.name,
                "type_id": b.type_id,
                "type_name": crush.type_name(b.type_id).unwrap_or(""),
                "weight": b.weight(),
                "alg": alg_name(b.alg),
                "hash": "rjenkins1",
                "items": items,
            })
        })
        .collect();
    let rules: Vec<Value> = crush.rules.values().map(|r| rule_json(crush, r)).collect();
    json!({
        "devices": devices,
        "types": types,
        "buckets": buckets,
        "rules": rules,
        "tunables": tunables_json(&crush.tunables),
        "choose_args": {},
    })
}
