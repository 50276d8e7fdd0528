//! CRUSH properties on random maps: a weight change only moves data to or
//! from the changed item, out devices are never chosen, results are unique.

use kalmar_maps::crush::{ChooseMode, CrushMap, Rule, RuleStep, WEIGHT_ONE};
use kalmar_maps::ITEM_NONE;
use proptest::prelude::*;

/// root `default` -> hosts -> OSDs with the given 16.16 weights.
fn build(hosts: &[Vec<u32>]) -> CrushMap {
    let mut m = CrushMap::new_default();
    let mut osd = 0;
    for (h, osds) in hosts.iter().enumerate() {
        for &w in osds {
            m.add_osd(osd, w, &format!("host{h}")).expect("adds");
            osd += 1;
        }
    }
    let root = m.bucket_by_name("default").expect("root").id;
    let host = m.type_id("host").expect("host");
    let mut indep = Rule::replicated(1, "ec", root, host);
    indep.steps[1] = RuleStep::Choose {
        leaf: true,
        mode: ChooseMode::Indep,
        num: 0,
        type_id: host,
    };
    m.rules.insert(1, indep);
    let mut flat = Rule::replicated(2, "osds", root, 0);
    flat.steps[1] = RuleStep::Choose {
        leaf: false,
        mode: ChooseMode::Firstn,
        num: 0,
        type_id: 0,
    };
    m.rules.insert(2, flat);
    m
}

fn weights_strategy() -> impl Strategy<Value = Vec<Vec<u32>>> {
    proptest::collection::vec(
        proptest::collection::vec(
            prop_oneof![Just(WEIGHT_ONE), 1u32..(4 * WEIGHT_ONE), Just(0)],
            1..5,
        ),
        1..7,
    )
}

fn host_of(hosts: &[Vec<u32>], osd: i32) -> usize {
    let mut n = 0;
    for (h, o) in hosts.iter().enumerate() {
        n += o.len() as i32;
        if osd < n {
            return h;
        }
    }
    usize::MAX
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// One replica: after changing osd k's weight, an input that moved
    /// moved into or out of k's host, and within that host to or from k.
    #[test]
    fn weight_change_moves_only_to_or_from_item(
        hosts in weights_strategy(),
        pick in any::<prop::sample::Index>(),
        new_w in 0u32..(5 * WEIGHT_ONE),
    ) {
        let before = build(&hosts);
        let total: usize = hosts.iter().map(Vec::len).sum();
        let k = pick.index(total) as i32;
        let mut after = before.clone();
        after.adjust_item_weight(k, new_w).expect("reweights");
        let rw = vec![0x10000u32; total];
        let hk = host_of(&hosts, k);
        for x in 0..400u32 {
            for rule in [0u32, 2] {
                let a = before.do_rule(rule, x, 1, &rw);
                let b = after.do_rule(rule, x, 1, &rw);
                if a == b { continue; }
                let (oa, ob) = (a.first().copied(), b.first().copied());
                let in_h = |o: Option<i32>| o.is_some_and(|o| host_of(&hosts, o) == hk);
                prop_assert!(in_h(oa) || in_h(ob), "x={x}: {a:?} -> {b:?} not via host of {k}");
                if in_h(oa) && in_h(ob) {
                    prop_assert!(oa == Some(k) || ob == Some(k), "x={x}: {a:?} -> {b:?} inside host, k={k}");
                }
            }
        }
    }

    /// Flat bucket: any input whose single replica moved, moved to or from k.
    #[test]
    fn flat_weight_change_moves_only_to_or_from_item(
        weights in proptest::collection::vec(prop_oneof![Just(WEIGHT_ONE), 1u32..(4 * WEIGHT_ONE)], 2..20),
        pick in any::<prop::sample::Index>(),
        new_w in 0u32..(5 * WEIGHT_ONE),
    ) {
        let mut before = CrushMap::new_default();
        let root = before.bucket_by_name("default").expect("root").id;
        for (i, &w) in weights.iter().enumerate() {
            before.add_device(i as i32, &format!("osd.{i}"), None).expect("device");
            before.insert_item(root, i as i32, w).expect("insert");
        }
        let mut rule = Rule::replicated(0, "flat", root, 0);
        rule.steps[1] = RuleStep::Choose { leaf: false, mode: ChooseMode::Firstn, num: 0, type_id: 0 };
        before.rules.insert(0, rule);
        let k = pick.index(weights.len()) as i32;
        let mut after = before.clone();
        after.adjust_item_weight(k, new_w).expect("reweights");
        let rw = vec![0x10000u32; weights.len()];
        for x in 0..1000u32 {
            let a = before.do_rule(0, x, 1, &rw);
            let b = after.do_rule(0, x, 1, &rw);
            if a != b {
                prop_assert!(a == vec![k] || b == vec![k], "x={x}: {a:?} -> {b:?}, k={k}");
            }
            if new_w == 0 {
                prop_assert!(b != vec![k], "a zero-weight item is never drawn");
            }
        }
    }

    /// Devices with reweight 0 are never chosen; results hold no duplicate.
    #[test]
    fn out_never_chosen_and_results_unique(
        hosts in weights_strategy(),
        outs in proptest::collection::vec(any::<bool>(), 30),
        partial in proptest::collection::vec(0u32..=0x10000, 30),
        numrep in 1usize..6,
    ) {
        let m = build(&hosts);
        let total: usize = hosts.iter().map(Vec::len).sum();
        let rw: Vec<u32> = (0..total).map(|i| if outs[i % 30] { 0 } else { partial[i % 30].max(1) }).collect();
        for x in 0..300u32 {
            for rule in [0u32, 1, 2] {
                let r = m.do_rule(rule, x, numrep, &rw);
                prop_assert!(r.len() <= numrep);
                let mut seen = std::collections::BTreeSet::new();
                for &o in &r {
                    if o == ITEM_NONE { continue; }
                    prop_assert!(o >= 0 && (o as usize) < total, "bad item {o}");
                    prop_assert!(rw[o as usize] != 0, "out osd.{o} chosen for x={x} rule {rule}");
                    prop_assert!(seen.insert(o), "duplicate {o} in {r:?}");
                }
                if rule == 1 {
                    prop_assert_eq!(r.len(), numrep, "indep keeps every position");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Writing a map as Ceph text and reading it back keeps every mapping
    /// (weights on a 1/8 grid survive the text's 3 decimals exactly).
    #[test]
    fn text_roundtrip_keeps_mappings(
        hosts in proptest::collection::vec(proptest::collection::vec(1u32..40, 1..5), 1..6),
    ) {
        let hosts: Vec<Vec<u32>> = hosts.iter().map(|h| h.iter().map(|w| w * 8192).collect()).collect();
        let m = build(&hosts);
        let text = m.to_text();
        let back = CrushMap::from_text(&text).expect("own text parses");
        prop_assert_eq!(back.to_text(), text);
        let total: usize = hosts.iter().map(Vec::len).sum();
        let rw = vec![0x10000u32; total];
        for x in 0..200u32 {
            for rule in [0u32, 1, 2] {
                prop_assert_eq!(m.do_rule(rule, x, 3, &rw), back.do_rule(rule, x, 3, &rw));
            }
        }
    }
}

/// A corrupt decoded map with a bucket cycle must not hang the mapper.
#[test]
fn bucket_cycle_does_not_hang() {
    use kalmar_common::{Decode, Encode};
    let mut m = build(&[vec![WEIGHT_ONE, WEIGHT_ONE], vec![WEIGHT_ONE]]);
    // Make host0 hold the root (the builder refuses this; a corrupt
    // encoding could carry it).
    let root = m.bucket_by_name("default").expect("root").id;
    let h0 = m.bucket_by_name("host0").expect("host").id;
    let b = m.bucket_mut(h0).expect("host");
    b.items.push(root);
    b.weights.push(WEIGHT_ONE);
    let m = CrushMap::from_bytes(&m.to_bytes()).expect("still decodes");
    let rw = vec![0x10000u32; 3];
    for x in 0..200 {
        for rule in [0u32, 1, 2] {
            let _ = m.do_rule(rule, x, 3, &rw);
        }
    }
    let _ = m.to_text();
}

#[test]
fn short_result_when_devices_run_out() {
    let m = build(&[vec![WEIGHT_ONE], vec![WEIGHT_ONE]]);
    let rw = vec![0x10000; 2];
    for x in 0..100 {
        assert_eq!(
            m.do_rule(0, x, 3, &rw).len(),
            2,
            "two hosts give two replicas"
        );
        let ec = m.do_rule(1, x, 3, &rw);
        assert_eq!(
            ec.iter().filter(|&&o| o == ITEM_NONE).count(),
            1,
            "indep leaves one hole"
        );
    }
    assert!(
        m.do_rule(9, 1, 3, &rw).is_empty(),
        "unknown rule maps to nothing"
    );
}
