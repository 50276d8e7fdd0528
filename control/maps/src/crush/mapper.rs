//! `crush_do_rule`: the CRUSH placement walk, step by step as Ceph's
//! `mapper.c` does it, so every mapping is bit-identical.
//!
//! Only straw2 buckets are placed (the text parser refuses the others);
//! the permutation fallback used by legacy `choose_local_fallback_tries`
//! is implemented statelessly (Ceph caches the permutation, which changes
//! nothing about its result).

use super::hash::{crush_hash32_2, crush_hash32_3};
use super::ln::crush_ln;
use super::map::{Bucket, ChooseMode, CrushMap, RuleStep, MAX_RESULT};
use crate::ITEM_NONE;

/// A slot not yet decided during an indep pass (`CRUSH_ITEM_UNDEF`).
const ITEM_UNDEF: i32 = 0x7fff_fffe;

/// See [`CrushMap::classify`].
enum Found<'a> {
    Wanted(i32),
    Descend(&'a Bucket),
    Bad,
}

/// Reusable buffers for [`CrushMap::do_rule_into`], so the hot path does
/// not allocate.
#[derive(Debug, Default, Clone)]
pub struct Workspace {
    w: Vec<i32>,
    o: Vec<i32>,
    c: Vec<i32>,
}

/// Parameters fixed for one choose step.
struct ChooseParams<'a> {
    weights: &'a [u32],
    x: u32,
    local_retries: u32,
    local_fallback_retries: u32,
    vary_r: u32,
    stable: bool,
}

/// Straw2: every item draws ln(u)/weight; the largest draw wins.
#[inline]
fn straw2_choose(b: &Bucket, x: u32, r: u32) -> i32 {
    let mut high = 0usize;
    let mut high_draw = 0i64;
    for (i, (&item, &w)) in b.items.iter().zip(&b.weights).enumerate() {
        let draw = if w != 0 {
            let u = crush_hash32_3(x, item as u32, r) & 0xffff;
            // ln(u) - 2^48 is <= 0; Ceph divides it (truncating toward
            // zero) by the weight: draw = -floor(neg_ln / w).
            let neg_ln = 0x1_0000_0000_0000 - crush_ln(u);
            -(div_floor_u49(neg_ln, w) as i64)
        } else {
            i64::MIN
        };
        if i == 0 || draw > high_draw {
            high = i;
            high_draw = draw;
        }
    }
    b.items[high]
}

/// `a / w` (floor) for `a <= 2^48`, exactly. A 64-bit integer division
/// costs 40-90 cycles on common x86 cores; the f64 quotient is within
/// 2^-4 of the true one at this size, so truncating it is off by at most
/// one, which the remainder check corrects.
#[inline(always)]
fn div_floor_u49(a: u64, w: u32) -> u64 {
    let w = u64::from(w);
    let mut q = (a as f64 / w as f64) as u64;
    // q * w cannot overflow: q <= a / w + 1 and a < 2^49.
    let qw = q * w;
    if qw > a {
        q -= 1;
    } else if a - qw >= w {
        q += 1;
    }
    q
}

/// Ceph's `bucket_perm_choose`, computed from scratch for (x, r).
fn perm_choose(b: &Bucket, x: u32, r: u32) -> i32 {
    let size = b.items.len() as u32;
    let pr = r % size;
    let mut perm: Vec<u32> = (0..size).collect();
    for p in 0..=pr {
        if p < size - 1 {
            let i = crush_hash32_3(x, b.id as u32, p) % (size - p);
            perm.swap(p as usize, (p + i) as usize);
        }
    }
    b.items[perm[pr as usize] as usize]
}

impl CrushMap {
    /// Whether a device is rejected for input `x` by its reweight: fully
    /// in at >= 0x10000, out at 0, otherwise kept with that probability.
    #[inline]
    fn is_out(weights: &[u32], item: i32, x: u32) -> bool {
        let Some(&w) = weights.get(item as usize) else {
            return true;
        };
        if w >= 0x10000 {
            return false;
        }
        if w == 0 {
            return true;
        }
        (crush_hash32_2(x, item as u32) & 0xffff) >= w
    }

    /// What a drawn item means for a choose step wanting `type_id`: the
    /// wanted type, a bucket to descend into, or an invalid item (beyond
    /// max_devices, a dangling bucket id, a device of the wrong type, or
    /// a descent past `hops` = number of buckets).
    #[inline]
    fn classify(&self, item: i32, type_id: i32, hops: &mut usize) -> Found<'_> {
        if item >= self.max_devices {
            return Found::Bad;
        }
        if item >= 0 {
            return if type_id == 0 {
                Found::Wanted(0)
            } else {
                Found::Bad
            };
        }
        match self.bucket(item) {
            Some(b) if b.type_id == type_id => Found::Wanted(type_id),
            // More descents than buckets means a cycle (a corrupt map).
            Some(b) if *hops <= self.buckets.len() => {
                *hops += 1;
                Found::Descend(b)
            }
            _ => Found::Bad,
        }
    }

    /// Depth-first selection of `numrep` distinct items of the wanted type
    /// (`crush_choose_firstn`). Returns the new `outpos`.
    #[allow(clippy::too_many_arguments)]
    fn choose_firstn(
        &self,
        p: &ChooseParams<'_>,
        bucket: &Bucket,
        numrep: i32,
        type_id: i32,
        out: &mut [i32],
        mut outpos: usize,
        out_size: usize,
        tries: u32,
        recurse_tries: u32,
        recurse_to_leaf: bool,
        mut out2: Option<&mut [i32]>,
        parent_r: i32,
    ) -> usize {
        let mut count = out_size;
        let mut rep: i32 = if p.stable { 0 } else { outpos as i32 };
        while rep < numrep && count > 0 {
            let mut ftotal: u32 = 0;
            let mut skip_rep = false;
            let mut item: i32;
            'descent: loop {
                let mut inb = bucket;
                let mut flocal: u32 = 0;
                let mut hops = 0usize;
                loop {
                    let r = (rep + parent_r).wrapping_add(ftotal as i32);
                    let mut collide = false;
                    let reject;
                    if inb.items.is_empty() {
                        reject = true;
                        item = 0;
                    } else {
                        item = if p.local_fallback_retries > 0
                            && flocal >= (inb.items.len() as u32 >> 1)
                            && flocal > p.local_fallback_retries
                        {
                            perm_choose(inb, p.x, r as u32)
                        } else {
                            straw2_choose(inb, p.x, r as u32)
                        };
                        let itemtype = match self.classify(item, type_id, &mut hops) {
                            Found::Wanted(t) => t,
                            Found::Descend(next) => {
                                inb = next;
                                continue;
                            }
                            Found::Bad => {
                                skip_rep = true;
                                break 'descent;
                            }
                        };
                        collide = out[..outpos].contains(&item);
                        let mut rej = false;
                        if !collide && recurse_to_leaf {
                            if item < 0 {
                                let sub_r = if p.vary_r != 0 {
                                    r.checked_shr(p.vary_r - 1).unwrap_or(0)
                                } else {
                                    0
                                };
                                let sub = self.bucket(item);
                                let got = match (sub, out2.as_deref_mut()) {
                                    (Some(sub), Some(o2)) => self.choose_firstn(
                                        p,
                                        sub,
                                        if p.stable { 1 } else { outpos as i32 + 1 },
                                        0,
                                        o2,
                                        outpos,
                                        count,
                                        recurse_tries,
                                        0,
                                        false,
                                        None,
                                        sub_r,
                                    ),
                                    _ => outpos,
                                };
                                rej = got <= outpos;
                            } else if let Some(o2) = out2.as_deref_mut() {
                                o2[outpos] = item;
                            }
                        }
                        if !rej && itemtype == 0 {
                            rej = Self::is_out(p.weights, item, p.x);
                        }
                        reject = rej;
                    }
                    if reject || collide {
                        ftotal += 1;
                        flocal += 1;
                        // Retry in this bucket (locally, or by the fallback
                        // permutation), else from the top, else give up.
                        let local = collide && flocal <= p.local_retries;
                        let fallback = p.local_fallback_retries > 0
                            && flocal <= inb.items.len() as u32 + p.local_fallback_retries;
                        if local || fallback {
                            continue;
                        } else if ftotal < tries {
                            continue 'descent;
                        } else {
                            skip_rep = true;
                        }
                    }
                    break 'descent;
                }
            }
            rep += 1;
            if skip_rep {
                continue;
            }
            out[outpos] = item;
            outpos += 1;
            count -= 1;
        }
        outpos
    }

    /// Breadth-first, position-stable selection (`crush_choose_indep`):
    /// slot `rep` keeps its place; failures leave `ITEM_NONE`.
    #[allow(clippy::too_many_arguments)]
    fn choose_indep(
        &self,
        p: &ChooseParams<'_>,
        bucket: &Bucket,
        mut left: i32,
        numrep: i32,
        type_id: i32,
        out: &mut [i32],
        outpos: usize,
        tries: u32,
        recurse_tries: u32,
        recurse_to_leaf: bool,
        mut out2: Option<&mut [i32]>,
        parent_r: i32,
    ) {
        let endpos = outpos + left.max(0) as usize;
        out[outpos..endpos].fill(ITEM_UNDEF);
        if let Some(o2) = out2.as_deref_mut() {
            o2[outpos..endpos].fill(ITEM_UNDEF);
        }
        let mut ftotal: u32 = 0;
        while left > 0 && ftotal < tries {
            for rep in outpos..endpos {
                if out[rep] != ITEM_UNDEF {
                    continue;
                }
                let mut inb = bucket;
                let mut hops = 0usize;
                loop {
                    let r =
                        (rep as i32 + parent_r).wrapping_add(numrep.wrapping_mul(ftotal as i32));
                    if inb.items.is_empty() {
                        break;
                    }
                    let item = straw2_choose(inb, p.x, r as u32);
                    let itemtype = match self.classify(item, type_id, &mut hops) {
                        Found::Wanted(t) => t,
                        Found::Descend(next) => {
                            inb = next;
                            continue;
                        }
                        Found::Bad => {
                            out[rep] = ITEM_NONE;
                            if let Some(o2) = out2.as_deref_mut() {
                                o2[rep] = ITEM_NONE;
                            }
                            left -= 1;
                            break;
                        }
                    };
                    if out[outpos..endpos].contains(&item) {
                        break;
                    }
                    if recurse_to_leaf {
                        if let Some(o2) = out2.as_deref_mut() {
                            if item < 0 {
                                if let Some(sub) = self.bucket(item) {
                                    self.choose_indep(
                                        p,
                                        sub,
                                        1,
                                        numrep,
                                        0,
                                        o2,
                                        rep,
                                        recurse_tries,
                                        0,
                                        false,
                                        None,
                                        r,
                                    );
                                }
                                if o2[rep] == ITEM_NONE || o2[rep] == ITEM_UNDEF {
                                    break;
                                }
                            } else {
                                o2[rep] = item;
                            }
                        }
                    }
                    if itemtype == 0 && Self::is_out(p.weights, item, p.x) {
                        break;
                    }
                    out[rep] = item;
                    left -= 1;
                    break;
                }
            }
            ftotal += 1;
        }
        for v in &mut out[outpos..endpos] {
            if *v == ITEM_UNDEF {
                *v = ITEM_NONE;
            }
        }
        if let Some(o2) = out2 {
            for v in &mut o2[outpos..endpos] {
                if *v == ITEM_UNDEF {
                    *v = ITEM_NONE;
                }
            }
        }
    }

    /// Runs rule `rule_id` for input `x`, wanting `result_max` items (at
    /// most [`MAX_RESULT`]);
    /// `weights[osd]` is the 16.16 reweight (`is_out`). Returns the items
    /// (fewer than `result_max` when devices run out; `ITEM_NONE` holes
    /// for indep rules). An unknown rule gives an empty result, as in Ceph.
    pub fn do_rule(&self, rule_id: u32, x: u32, result_max: usize, weights: &[u32]) -> Vec<i32> {
        let mut ws = Workspace::default();
        let mut out = Vec::with_capacity(result_max);
        self.do_rule_into(rule_id, x, result_max, weights, &mut ws, &mut out);
        out
    }

    /// [`CrushMap::do_rule`] into caller-owned buffers (no allocation once
    /// the workspace has grown to `result_max`).
    pub fn do_rule_into(
        &self,
        rule_id: u32,
        x: u32,
        result_max: usize,
        weights: &[u32],
        ws: &mut Workspace,
        result: &mut Vec<i32>,
    ) {
        result.clear();
        let result_max = result_max.min(MAX_RESULT);
        let Some(rule) = self.rules.get(&rule_id) else {
            return;
        };
        for v in [&mut ws.w, &mut ws.o, &mut ws.c] {
            v.clear();
            v.resize(result_max, 0);
        }
        let t = &self.tunables;
        // Ceph counts total tries one higher than the tunable says.
        let mut choose_tries = t.choose_total_tries.wrapping_add(1);
        let mut choose_leaf_tries: u32 = 0;
        let mut local_retries = t.choose_local_tries;
        let mut local_fallback_retries = t.choose_local_fallback_tries;
        let mut vary_r = u32::from(t.chooseleaf_vary_r);
        let mut stable = t.chooseleaf_stable != 0;
        let mut wsize = 0usize;
        for step in &rule.steps {
            match *step {
                RuleStep::Take(item) => {
                    let valid =
                        (item >= 0 && item < self.max_devices) || self.bucket(item).is_some();
                    if valid && result_max > 0 {
                        ws.w[0] = item;
                        wsize = 1;
                    }
                }
                RuleStep::SetChooseTries(v) if v > 0 => choose_tries = v as u32,
                RuleStep::SetChooseleafTries(v) if v > 0 => choose_leaf_tries = v as u32,
                RuleStep::SetChooseLocalTries(v) if v >= 0 => local_retries = v as u32,
                RuleStep::SetChooseLocalFallbackTries(v) if v >= 0 => {
                    local_fallback_retries = v as u32
                }
                RuleStep::SetChooseleafVaryR(v) if v >= 0 => vary_r = v as u32,
                RuleStep::SetChooseleafStable(v) if v >= 0 => stable = v != 0,
                RuleStep::Choose {
                    leaf,
                    mode,
                    num,
                    type_id,
                } => {
                    if wsize == 0 {
                        continue;
                    }
                    let params = ChooseParams {
                        weights,
                        x,
                        local_retries,
                        local_fallback_retries,
                        vary_r,
                        stable,
                    };
                    let mut osize = 0usize;
                    for i in 0..wsize {
                        let mut numrep = num;
                        if numrep <= 0 {
                            numrep += result_max as i32;
                            if numrep <= 0 {
                                continue;
                            }
                        }
                        let Some(b) = self.bucket(ws.w[i]) else {
                            continue;
                        };
                        match mode {
                            ChooseMode::Firstn => {
                                let recurse_tries = if choose_leaf_tries != 0 {
                                    choose_leaf_tries
                                } else if t.chooseleaf_descend_once != 0 {
                                    1
                                } else {
                                    choose_tries
                                };
                                let (o, c) = (&mut ws.o[osize..], &mut ws.c[osize..]);
                                osize += self.choose_firstn(
                                    &params,
                                    b,
                                    numrep,
                                    type_id,
                                    o,
                                    0,
                                    result_max - osize,
                                    choose_tries,
                                    recurse_tries,
                                    leaf,
                                    Some(c),
                                    0,
                                );
                            }
                            ChooseMode::Indep => {
                                let out_size = (numrep as usize).min(result_max - osize);
                                let leaf_tries = if choose_leaf_tries != 0 {
                                    choose_leaf_tries
                                } else {
                                    1
                                };
                                let (o, c) = (&mut ws.o[osize..], &mut ws.c[osize..]);
                                self.choose_indep(
                                    &params,
                                    b,
                                    out_size as i32,
                                    numrep,
                                    type_id,
                                    o,
                                    0,
                                    choose_tries,
                                    leaf_tries,
                                    leaf,
                                    Some(c),
                                    0,
                                );
                                osize += out_size;
                            }
                        }
                    }
                    if leaf {
                        ws.o[..osize].copy_from_slice(&ws.c[..osize]);
                    }
                    std::mem::swap(&mut ws.o, &mut ws.w);
                    wsize = osize;
                }
                RuleStep::Emit => {
                    let room = result_max - result.len();
                    result.extend_from_slice(&ws.w[..wsize.min(room)]);
                    wsize = 0;
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::div_floor_u49;
    use proptest::prelude::*;

    #[test]
    fn division_edges() {
        let max = 1u64 << 48;
        for w in [
            1u32,
            2,
            3,
            7,
            0xffff,
            0x10000,
            0x10001,
            0x7fff_ffff,
            u32::MAX,
        ] {
            for a in [
                0,
                1,
                max - 1,
                max,
                u64::from(w),
                u64::from(w) * 3 - 1,
                u64::from(w) * 3,
            ] {
                assert_eq!(div_floor_u49(a, w), a / u64::from(w), "{a} / {w}");
            }
        }
    }

    proptest! {
        #[test]
        fn division_is_exact(a in 0u64..=(1u64 << 48), w in 1u32..) {
            prop_assert_eq!(div_floor_u49(a, w), a / u64::from(w));
        }

        #[test]
        fn division_exact_near_multiples(q in 0u64..(1u64 << 30), w in 1u32.., d in -2i64..=2) {
            let a = (q * u64::from(w)).saturating_add_signed(d).min(1u64 << 48);
            prop_assert_eq!(div_floor_u49(a, w), a / u64::from(w));
        }
    }
}
