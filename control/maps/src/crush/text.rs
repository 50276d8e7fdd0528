//! Ceph's decompiled CRUSH map text (`crushtool -d` output), parsed the
//! way `crushtool -c` compiles it: legacy tunables unless stated, item
//! weights as `f32 * 0x10000` truncated, bucket ids assigned from -1
//! downwards when a bucket has none, a bucket's default weight in its
//! parent = the sum of its items, device-class shadow trees built when the
//! first rule is read (so `step take default class hdd` works).
//!
//! Refused with a clear error: bucket algorithms other than straw2, hashes
//! other than rjenkins1, `choose_args` weight sets, MSR rules.

use std::collections::{BTreeMap, BTreeSet};

use super::map::{
    Bucket, ChooseMode, CrushMap, Rule, RuleStep, Tunables, BUCKET_ALG_STRAW2, HASH_RJENKINS1,
    RULE_TYPE_ERASURE, RULE_TYPE_REPLICATED,
};

/// A parse failure, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("crush map text line {line}: {msg}")]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

/// The tunables a map has when its text names none (`crushtool -c`
/// starts from Ceph's legacy profile).
pub fn legacy_tunables() -> Tunables {
    Tunables {
        choose_local_tries: 2,
        choose_local_fallback_tries: 5,
        choose_total_tries: 19,
        chooseleaf_descend_once: 0,
        chooseleaf_vary_r: 0,
        chooseleaf_stable: 0,
        straw_calc_version: 0,
        allowed_bucket_algs: (1 << 1) | (1 << 2) | (1 << 4),
    }
}

#[derive(Debug, Clone)]
struct Token<'a> {
    text: &'a str,
    line: usize,
}

fn tokenize(src: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    for (i, raw) in src.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        for word in line.split_whitespace() {
            // Braces may touch words (`host a{`); split them off.
            let mut rest = word;
            while !rest.is_empty() {
                match rest.find(['{', '}', '[', ']']) {
                    Some(0) => {
                        out.push(Token {
                            text: &rest[..1],
                            line: i + 1,
                        });
                        rest = &rest[1..];
                    }
                    Some(p) => {
                        out.push(Token {
                            text: &rest[..p],
                            line: i + 1,
                        });
                        rest = &rest[p..];
                    }
                    None => {
                        out.push(Token {
                            text: rest,
                            line: i + 1,
                        });
                        rest = "";
                    }
                }
            }
        }
    }
    out
}

struct Parser<'a> {
    toks: Vec<Token<'a>>,
    pos: usize,
    map: CrushMap,
    /// Bucket weights as computed at parse time (default weight in parents).
    bucket_weight: BTreeMap<i32, u32>,
    /// Every bucket id the text names, so automatic ids avoid them.
    used_ids: BTreeSet<i32>,
    saw_rule: bool,
    /// Device classes in order of first use (Ceph's class ids).
    classes: Vec<String>,
    /// (bucket id, class) -> id of its shadow copy, as the text gives it.
    shadow_ids: BTreeMap<(i32, String), i32>,
}

impl<'a> Parser<'a> {
    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or_else(|| self.toks.last())
            .map_or(1, |t| t.line)
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: self.line(),
            msg: msg.into(),
        })
    }

    fn peek(&self) -> Option<&'a str> {
        self.toks.get(self.pos).map(|t| t.text)
    }

    fn next(&mut self, what: &str) -> Result<&'a str, ParseError> {
        match self.toks.get(self.pos) {
            Some(t) => {
                self.pos += 1;
                Ok(t.text)
            }
            None => self.err(format!("unexpected end of input, expected {what}")),
        }
    }

    fn expect(&mut self, want: &str) -> Result<(), ParseError> {
        let got = self.next(want)?;
        if got != want {
            self.pos -= 1;
            return self.err(format!("expected '{want}', found '{got}'"));
        }
        Ok(())
    }

    fn int(&mut self, what: &str) -> Result<i64, ParseError> {
        let t = self.next(what)?;
        t.parse::<i64>().or_else(|_| {
            self.pos -= 1;
            self.err(format!("expected an integer for {what}, found '{t}'"))
        })
    }

    fn int32(&mut self, what: &str) -> Result<i32, ParseError> {
        let v = self.int(what)?;
        i32::try_from(v).or_else(|_| self.err(format!("{what} {v} is out of range")))
    }

    /// A weight: parsed as `f32`, scaled by 0x10000 in `f32`, truncated,
    /// exactly as the compiler does.
    fn weight(&mut self) -> Result<u32, ParseError> {
        let t = self.next("weight")?;
        match t.parse::<f32>() {
            Ok(w) if w.is_finite() && w >= 0.0 => Ok((w * 65536f32) as u32),
            _ => {
                self.pos -= 1;
                self.err(format!("bad weight '{t}'"))
            }
        }
    }

    fn parse(mut self) -> Result<CrushMap, ParseError> {
        self.prescan_bucket_ids();
        while let Some(tok) = self.peek() {
            match tok {
                "tunable" => self.tunable()?,
                "device" => self.device()?,
                "type" => self.bucket_type()?,
                "rule" => {
                    if !self.saw_rule {
                        // Ceph builds the class shadow trees when the first
                        // rule is parsed, so rules can take them.
                        let ids = std::mem::take(&mut self.shadow_ids);
                        let classes = self.classes.clone();
                        self.map
                            .build_shadow_trees(&classes, &ids)
                            .or_else(|e| self.err(e.to_string()))?;
                    }
                    self.rule()?
                }
                "choose_args" => return self.err("choose_args (weight sets) are not supported"),
                _ => {
                    if self.saw_rule {
                        return self.err("buckets must be defined before rules");
                    }
                    self.bucket()?
                }
            }
        }
        Ok(self.map)
    }

    fn prescan_bucket_ids(&mut self) {
        let toks = &self.toks;
        for w in toks.windows(3) {
            if w[0].text == "id" && w[2].text != "class" {
                if let Ok(id) = w[1].text.parse::<i32>() {
                    if id < 0 {
                        self.used_ids.insert(id);
                    }
                }
            }
        }
        // Class-tagged ids (`id -5 class hdd`) are taken too.
        for w in toks.windows(3) {
            if w[0].text == "id" && w[2].text == "class" {
                if let Ok(id) = w[1].text.parse::<i32>() {
                    self.used_ids.insert(id);
                }
            }
        }
    }

    fn tunable(&mut self) -> Result<(), ParseError> {
        self.expect("tunable")?;
        let name = self.next("tunable name")?;
        let v = self.int("tunable value")?;
        let t = &mut self.map.tunables;
        let as_u32 = u32::try_from(v).unwrap_or(0);
        match name {
            "choose_local_tries" => t.choose_local_tries = as_u32,
            "choose_local_fallback_tries" => t.choose_local_fallback_tries = as_u32,
            "choose_total_tries" => t.choose_total_tries = as_u32,
            "chooseleaf_descend_once" => t.chooseleaf_descend_once = as_u32,
            "chooseleaf_vary_r" => t.chooseleaf_vary_r = as_u32.min(255) as u8,
            "chooseleaf_stable" => t.chooseleaf_stable = as_u32.min(255) as u8,
            "straw_calc_version" => t.straw_calc_version = as_u32.min(255) as u8,
            "allowed_bucket_algs" => t.allowed_bucket_algs = as_u32,
            // MSR tunables (Ceph 19+) only affect msr rules, which are refused.
            "msr_descents" | "msr_collision_tries" => {}
            other => return self.err(format!("unknown tunable '{other}'")),
        }
        Ok(())
    }

    fn device(&mut self) -> Result<(), ParseError> {
        self.expect("device")?;
        let id = self.int32("device id")?;
        let name = self.next("device name")?;
        let class = if self.peek() == Some("class") {
            self.pos += 1;
            let c = self.next("device class")?;
            self.class_id(c);
            Some(c)
        } else {
            None
        };
        if id < 0 {
            return self.err(format!("device id {id} must not be negative"));
        }
        if self.map.item_id(name).is_some() {
            return self.err(format!("item '{name}' defined twice"));
        }
        self.map
            .add_device(id, name, class)
            .or_else(|e| self.err(e.to_string()))
    }

    fn bucket_type(&mut self) -> Result<(), ParseError> {
        self.expect("type")?;
        let id = self.int32("type id")?;
        let name = self.next("type name")?;
        self.map.types.insert(id, name.to_string());
        Ok(())
    }

    fn bucket(&mut self) -> Result<(), ParseError> {
        let type_name = self.next("bucket type")?;
        let Some(type_id) = self.map.type_id(type_name) else {
            return self.err(format!(
                "unknown bucket type '{type_name}' (declare it with 'type N {type_name}')"
            ));
        };
        let name = self.next("bucket name")?;
        if self.map.item_id(name).is_some() {
            return self.err(format!("item '{name}' defined twice"));
        }
        self.expect("{")?;
        let mut id: Option<i32> = None;
        let mut alg = BUCKET_ALG_STRAW2;
        let mut hash = HASH_RJENKINS1;
        // (item id, weight, explicit position)
        let mut entries: Vec<(i32, u32, Option<usize>)> = Vec::new();
        let mut class_ids: Vec<(&str, i32)> = Vec::new();
        loop {
            match self.next("bucket field or '}'")? {
                "}" => break,
                "id" => {
                    let v = self.int32("bucket id")?;
                    if self.peek() == Some("class") {
                        // The id this bucket's shadow copy for that device
                        // class keeps (`id -7 class ssd`).
                        self.pos += 1;
                        let class = self.next("class name")?;
                        self.class_id(class);
                        if class_ids.iter().any(|(c, _)| *c == class) {
                            return self
                                .err(format!("duplicate device class {class} for bucket {name}"));
                        }
                        class_ids.push((class, v));
                    } else {
                        id = Some(v);
                    }
                }
                "alg" => {
                    let a = self.next("bucket algorithm")?;
                    alg = match a {
                        "straw2" => BUCKET_ALG_STRAW2,
                        "uniform" | "list" | "tree" | "straw" => {
                            return self.err(format!(
                                "bucket '{name}': alg {a} is not supported; Kalmar places with straw2 only"
                            ))
                        }
                        other => return self.err(format!("unknown bucket alg '{other}'")),
                    };
                }
                "hash" => {
                    let h = self.next("hash")?;
                    hash = match h {
                        "rjenkins1" | "0" => HASH_RJENKINS1,
                        other => {
                            return self
                                .err(format!("unsupported hash '{other}' (only 0, rjenkins1)"))
                        }
                    };
                }
                "item" => {
                    let iname = self.next("item name")?;
                    let Some(iid) = self.map.item_id(iname) else {
                        self.pos -= 1;
                        return self
                            .err(format!("item '{iname}' in bucket '{name}' is not defined"));
                    };
                    let mut w = if iid < 0 {
                        self.bucket_weight.get(&iid).copied().unwrap_or(0)
                    } else {
                        0x10000
                    };
                    let mut pos = None;
                    loop {
                        match self.peek() {
                            Some("weight") => {
                                self.pos += 1;
                                w = self.weight()?;
                            }
                            Some("pos") => {
                                self.pos += 1;
                                let p = self.int("item pos")?;
                                pos =
                                    Some(usize::try_from(p).or_else(|_| self.err("negative pos"))?);
                            }
                            _ => break,
                        }
                    }
                    entries.push((iid, w, pos));
                }
                other => {
                    self.pos -= 1;
                    return self.err(format!("unexpected '{other}' in bucket '{name}'"));
                }
            }
        }
        let (items, weights) = self.place_items(name, &entries)?;
        let id = match id {
            Some(id) => id,
            None => {
                let mut c = -1;
                while self.used_ids.contains(&c) || self.map.bucket(c).is_some() {
                    c -= 1;
                }
                c
            }
        };
        self.used_ids.insert(id);
        if id >= 0 {
            return self.err(format!("bucket '{name}' id {id} must be negative"));
        }
        if self.map.bucket(id).is_some() {
            return self.err(format!("duplicate bucket id {id}"));
        }
        let total = weights.iter().fold(0u32, |a, &w| a.wrapping_add(w));
        self.map
            .add_bucket(id, name, type_id)
            .or_else(|e| self.err(e.to_string()))?;
        if let Some(b) = self.map.bucket_mut(id) {
            *b = Bucket {
                id,
                name: name.to_string(),
                type_id,
                alg,
                hash,
                items,
                weights,
            };
        }
        self.bucket_weight.insert(id, total);
        for (class, shadow) in class_ids {
            self.shadow_ids.insert((id, class.to_string()), shadow);
        }
        Ok(())
    }

    /// Ceph's class ids are handed out 0, 1, 2... in order of first use.
    fn class_id(&mut self, class: &str) {
        if !self.classes.iter().any(|c| c == class) {
            self.classes.push(class.to_string());
        }
    }

    /// Lays items out by explicit `pos`, filling the rest in order.
    fn place_items(
        &self,
        name: &str,
        entries: &[(i32, u32, Option<usize>)],
    ) -> Result<(Vec<i32>, Vec<u32>), ParseError> {
        let used: BTreeSet<usize> = entries.iter().filter_map(|e| e.2).collect();
        let size = entries.len().max(used.iter().next_back().map_or(0, |&p| p));
        let mut items = vec![0i32; size];
        let mut weights = vec![0u32; size];
        let mut cur = 0usize;
        for &(iid, w, pos) in entries {
            let p = match pos {
                Some(p) if p >= size => {
                    return self.err(format!(
                        "item in bucket '{name}' has pos {p} >= size {size}"
                    ))
                }
                Some(p) => p,
                None => {
                    while used.contains(&cur) {
                        cur += 1;
                    }
                    cur += 1;
                    cur - 1
                }
            };
            if p >= size {
                return self.err(format!(
                    "bucket '{name}': too many items for the positions given"
                ));
            }
            items[p] = iid;
            weights[p] = w;
        }
        Ok((items, weights))
    }

    fn rule(&mut self) -> Result<(), ParseError> {
        self.expect("rule")?;
        self.saw_rule = true;
        let name = match self.peek() {
            Some("{") => String::new(),
            _ => self.next("rule name")?.to_string(),
        };
        self.expect("{")?;
        let mut rule = Rule {
            name,
            min_size: 1,
            max_size: 10,
            rule_type: RULE_TYPE_REPLICATED,
            ..Rule::default()
        };
        let mut id = None;
        loop {
            match self.next("rule field or '}'")? {
                "}" => break,
                "id" | "ruleset" => id = Some(self.int("rule id")?),
                "type" => {
                    rule.rule_type = match self.next("rule type")? {
                        "replicated" => RULE_TYPE_REPLICATED,
                        "erasure" => RULE_TYPE_ERASURE,
                        other => return self.err(format!("unsupported rule type '{other}'")),
                    }
                }
                "min_size" => rule.min_size = u32::try_from(self.int("min_size")?).unwrap_or(0),
                "max_size" => rule.max_size = u32::try_from(self.int("max_size")?).unwrap_or(0),
                "step" => {
                    let s = self.step()?;
                    rule.steps.push(s);
                }
                other => {
                    self.pos -= 1;
                    return self.err(format!("unexpected '{other}' in rule '{}'", rule.name));
                }
            }
        }
        let Some(id) = id.and_then(|i| u32::try_from(i).ok()) else {
            return self.err(format!("rule '{}' has no valid id", rule.name));
        };
        if self.map.rules.contains_key(&id) {
            return self.err(format!("rule {id} already exists"));
        }
        if !rule.name.is_empty() && self.map.rule_by_name(&rule.name).is_some() {
            return self.err(format!("rule name '{}' already defined", rule.name));
        }
        rule.id = id;
        self.map.rules.insert(id, rule);
        Ok(())
    }

    fn step(&mut self) -> Result<RuleStep, ParseError> {
        let op = self.next("step op")?;
        Ok(match op {
            "take" => {
                let item = self.next("item to take")?;
                let Some(id) = self.map.item_id(item) else {
                    self.pos -= 1;
                    return self.err(format!("item '{item}' not defined"));
                };
                if self.peek() == Some("class") {
                    self.pos += 1;
                    let class = self.next("class name")?;
                    let shadow = self.map.bucket(id).map(|b| format!("{}~{class}", b.name));
                    let Some(sid) = shadow.and_then(|n| self.map.bucket_by_name(&n).map(|b| b.id))
                    else {
                        return self.err(format!(
                            "step take {item}: no matching bucket for class {class}"
                        ));
                    };
                    return Ok(RuleStep::Take(sid));
                }
                RuleStep::Take(id)
            }
            "choose" | "chooseleaf" => {
                let mode = match self.next("firstn or indep")? {
                    "firstn" => ChooseMode::Firstn,
                    "indep" => ChooseMode::Indep,
                    other => return self.err(format!("expected firstn or indep, found '{other}'")),
                };
                let num = self.int32("replica count")?;
                self.expect("type")?;
                let tname = self.next("type name")?;
                let Some(type_id) = self.map.type_id(tname) else {
                    self.pos -= 1;
                    return self.err(format!("type '{tname}' not defined"));
                };
                RuleStep::Choose {
                    leaf: op == "chooseleaf",
                    mode,
                    num,
                    type_id,
                }
            }
            "emit" => RuleStep::Emit,
            "set_choose_tries" => RuleStep::SetChooseTries(self.int32("value")?),
            "set_chooseleaf_tries" => RuleStep::SetChooseleafTries(self.int32("value")?),
            "set_choose_local_tries" => RuleStep::SetChooseLocalTries(self.int32("value")?),
            "set_choose_local_fallback_tries" => {
                RuleStep::SetChooseLocalFallbackTries(self.int32("value")?)
            }
            "set_chooseleaf_vary_r" => RuleStep::SetChooseleafVaryR(self.int32("value")?),
            "set_chooseleaf_stable" => RuleStep::SetChooseleafStable(self.int32("value")?),
            other => {
                self.pos -= 1;
                return self.err(format!("unknown step '{other}'"));
            }
        })
    }
}

impl CrushMap {
    /// Parses Ceph's decompiled crush map text.
    pub fn from_text(src: &str) -> Result<CrushMap, ParseError> {
        let map = CrushMap {
            tunables: legacy_tunables(),
            ..CrushMap::default()
        };
        Parser {
            toks: tokenize(src),
            pos: 0,
            map,
            bucket_weight: BTreeMap::new(),
            used_ids: BTreeSet::new(),
            saw_rule: false,
            classes: Vec::new(),
            shadow_ids: BTreeMap::new(),
        }
        .parse()
    }
}
