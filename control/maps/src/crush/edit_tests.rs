use super::*;
use crate::crush::build::DEFAULT_TYPES;
use crate::crush::{crush_test_string, CrushTestArgs, WEIGHT_ONE};

fn loc(words: &[&str]) -> Location {
    parse_location(&words.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("location")
}

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/crush")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn typed_empty() -> CrushMap {
    let mut m = CrushMap::empty();
    for &(id, n) in DEFAULT_TYPES {
        m.types.insert(id, n.to_string());
    }
    m
}

/// Builds regen.py's `classes` map the way an admin would with the mon's
/// commands (add-bucket, move, crush set, set-device-class, rule
/// create-replicated), each followed by the shadow rebuild the mon does.
fn classes_map_by_commands() -> CrushMap {
    let mut m = typed_empty();
    let host_t = m.type_id("host").expect("host");
    let rack_t = m.type_id("rack").expect("rack");
    let root_t = m.type_id("root").expect("root");
    let class_of = |d: i32| ["hdd", "ssd", "hdd", "nvme"][((d * 7 + d / 5) % 4) as usize];
    let mut osd = 0;
    // regen.py writes hosts, then their rack, rack by rack, then the root.
    for r in 0..3 {
        for h in 0..3 {
            let name = format!("host{r}-{h}");
            let id = m.next_bucket_id();
            m.add_bucket(id, &name, host_t).expect("add-bucket host");
            for _ in 0..4 {
                let w = 1.0 + f64::from(osd % 3) * 0.5;
                m.add_device(osd, &format!("osd.{osd}"), None)
                    .expect("device");
                m.insert_at(
                    osd,
                    weight_from_f64(w).expect("w"),
                    &loc(&[&format!("host={name}")]),
                )
                .expect("crush set");
                osd += 1;
            }
        }
        let id = m.next_bucket_id();
        m.add_bucket(id, &format!("rack{r}"), rack_t)
            .expect("add-bucket rack");
        for h in 0..3 {
            let host = m.item_id(&format!("host{r}-{h}")).expect("host");
            m.move_item(host, &loc(&[&format!("rack=rack{r}")]))
                .expect("move host");
        }
    }
    let id = m.next_bucket_id();
    m.add_bucket(id, "default", root_t)
        .expect("add-bucket root");
    for r in 0..3 {
        let rack = m.item_id(&format!("rack{r}")).expect("rack");
        m.move_item(rack, &loc(&["root=default"]))
            .expect("move rack");
    }
    for d in 0..osd {
        m.devices.get_mut(&d).expect("device").class = Some(class_of(d).to_string());
        m.rebuild_shadow_trees().expect("rebuild");
    }
    let root = m.item_id("default").expect("root");
    let shadow = |m: &CrushMap, name: &str| m.item_id(name).expect("shadow root");
    m.add_replicated_rule("replicated_rule", root, host_t)
        .expect("rule 0");
    let hdd = shadow(&m, "default~hdd");
    m.add_replicated_rule("hdd_hosts", hdd, host_t)
        .expect("rule 1");
    let ssd = shadow(&m, "default~ssd");
    m.add_replicated_rule("ssd_osds", ssd, 0).expect("rule 2");
    let rack1_hdd = shadow(&m, "rack1~hdd");
    m.add_replicated_rule("rack1_hdd", rack1_hdd, host_t)
        .expect("rule 3");
    m.rebuild_shadow_trees().expect("rebuild");
    m
}

/// crushtool's lines for `rule` from a golden output, relabelled `as_rule`.
fn golden_lines(out: &str, rule: u32, as_rule: u32) -> String {
    out.lines()
        .filter(|l| l.starts_with(&format!("CRUSH rule {rule} ")))
        .map(|l| {
            l.replacen(
                &format!("CRUSH rule {rule} "),
                &format!("CRUSH rule {as_rule} "),
                1,
            ) + "\n"
        })
        .collect()
}

fn buckets_section(text: &str) -> String {
    let start = text.find("# buckets").expect("buckets");
    let end = text.find("# rules").expect("rules");
    text[start..end].to_string()
}

#[test]
fn class_map_built_by_commands_places_as_crushtool() {
    let m = classes_map_by_commands();
    // The hierarchy, shadow ids included, is what crushtool compiled.
    assert_eq!(
        buckets_section(&m.to_text()),
        buckets_section(&fixture("classes.txt"))
    );
    let golden = fixture("classes_rep3.out");
    // crushtool's rule 4 (rack1_hdd) is rule 3 here: no EC rule between.
    for (ours, theirs) in [(0, 0), (1, 1), (2, 2), (3, 4)] {
        let args = CrushTestArgs {
            rule: Some(ours),
            num_rep: Some(3),
            ..CrushTestArgs::default()
        };
        let got = crush_test_string(&m, &args);
        assert_eq!(
            got,
            golden_lines(&golden, theirs, ours),
            "rule {ours} differs from crushtool's rule {theirs}"
        );
    }
    // And with reweights, as the golden case with --weight does.
    let args = CrushTestArgs {
        rule: Some(1),
        num_rep: Some(3),
        weights: vec![(0, 0.0), (2, 0.5)],
        ..CrushTestArgs::default()
    };
    assert_eq!(
        crush_test_string(&m, &args),
        fixture("classes_rule1_out.out")
    );
}

#[test]
fn shadow_ids_survive_rebuilds_and_are_never_reused() {
    let mut m = CrushMap::new_default();
    for i in 0..4 {
        m.add_osd(i, WEIGHT_ONE, &format!("h{}", i / 2))
            .expect("osd");
    }
    m.devices.get_mut(&0).expect("d").class = Some("ssd".into());
    m.rebuild_shadow_trees().expect("rebuild");
    let ssd_root = m.item_id("default~ssd").expect("shadow");
    let h1_ssd = m.item_id("h1~ssd").expect("shadow");
    m.devices.get_mut(&2).expect("d").class = Some("hdd".into());
    m.rebuild_shadow_trees().expect("rebuild");
    assert_eq!(m.item_id("default~ssd"), Some(ssd_root), "ssd kept its ids");
    assert_eq!(m.item_id("h1~ssd"), Some(h1_ssd));
    let hdd_ids: Vec<i32> = ["h0~hdd", "h1~hdd", "default~hdd"]
        .iter()
        .map(|n| m.item_id(n).expect("hdd shadow"))
        .collect();
    assert!(hdd_ids.iter().all(|id| *id < ssd_root.min(h1_ssd)));
    // ssd's only device leaves the class: its tree goes, its ids stay
    // reserved, so a later class does not take them.
    m.devices.get_mut(&0).expect("d").class = None;
    m.rebuild_shadow_trees().expect("rebuild");
    assert!(m.item_id("default~ssd").is_none());
    assert_eq!(m.classes(), vec!["hdd".to_string()]);
    // A rule still taking a class keeps the class alive.
    let hdd_root = m.item_id("default~hdd").expect("hdd root");
    m.add_replicated_rule("fast", hdd_root, 1).expect("rule");
    m.devices.get_mut(&2).expect("d").class = None;
    m.rebuild_shadow_trees().expect("rebuild");
    assert_eq!(m.item_id("default~hdd"), Some(hdd_root));
    assert_eq!(m.class_devices("hdd"), Vec::<i32>::new());
}

#[test]
fn locations_create_missing_buckets_and_moves_carry_weight() {
    let mut m = CrushMap::new_default();
    m.add_osd(0, WEIGHT_ONE, "a").expect("osd");
    m.add_osd(1, 2 * WEIGHT_ONE, "b").expect("osd");
    let a = m.item_id("a").expect("a");
    // A rack that does not exist yet is made under the root.
    m.move_item(a, &loc(&["root=default", "rack=r1"]))
        .expect("move");
    let r1 = m.item_id("r1").expect("rack made");
    assert_eq!(m.bucket(r1).expect("r1").items, vec![a]);
    assert_eq!(m.item_weight(r1), Some(WEIGHT_ONE));
    let root = m.item_id("default").expect("root");
    assert_eq!(m.item_weight(root), Some(3 * WEIGHT_ONE));
    assert!(m.is_at_location(a, &loc(&["rack=r1", "root=default"])));
    // A device moves with its weight; the old host keeps nothing.
    m.move_item(1, &loc(&["host=a"])).expect("move osd");
    let b = m.item_id("b").expect("b");
    assert_eq!(m.item_weight(b), Some(0));
    assert_eq!(m.item_weight(r1), Some(3 * WEIGHT_ONE));
    // Type mismatches and loops are refused and change nothing.
    let before = m.clone();
    assert!(m.move_item(a, &loc(&["rack=default"])).is_err());
    assert!(m.move_item(root, &loc(&["rack=r1"])).is_err());
    assert_eq!(m, before);
    assert!(parse_location(&["rack".to_string()]).is_err());
    assert!(parse_location(&["rack=a/b".to_string()]).is_err());
    assert_eq!(
        location_string(&loc(&["root=default", "rack=r1"])),
        "{rack=r1,root=default}"
    );
}

#[test]
fn replicated_rules_take_lowest_free_id_and_choose_devices_directly() {
    let mut m = CrushMap::new_default();
    let root = m.item_id("default").expect("root");
    assert_eq!(m.add_replicated_rule("by_osd", root, 0).expect("rule"), 1);
    let r = m.rule_by_name("by_osd").expect("rule");
    assert_eq!(r.steps[1].op_name(), "choose_firstn");
    m.rules.remove(&0);
    assert_eq!(m.add_replicated_rule("again", root, 1).expect("rule"), 0);
    assert_eq!(
        m.rule_by_name("again").expect("rule").steps[1].op_name(),
        "chooseleaf_firstn"
    );
    assert_eq!(weight_from_f64(0.0078).expect("w"), 511);
    assert!(weight_from_f64(-1.0).is_err());
}

#[test]
fn create_or_move_builds_the_path_and_keeps_what_is_already_there() {
    let mut m = CrushMap::new_default();
    m.add_osd(0, WEIGHT_ONE, "h1").expect("osd");
    m.add_osd(1, 2 * WEIGHT_ONE, "h1").expect("osd");
    let root = m.item_id("default").expect("root");
    let h1 = m.item_id("h1").expect("h1");
    // Already there (the default location of an OSD): nothing changes.
    let before = m.clone();
    assert!(!m
        .create_or_move_at(0, 5 * WEIGHT_ONE, &loc(&["host=h1", "root=default"]))
        .expect("same place"));
    assert_eq!(m, before);
    // A rack level: the rack is made under the root and the host moves
    // into it with both its OSDs; osd.0 keeps its weight.
    assert!(m
        .create_or_move_at(
            0,
            5 * WEIGHT_ONE,
            &loc(&["root=default", "rack=r1", "host=h1"])
        )
        .expect("rack"));
    let r1 = m.item_id("r1").expect("rack made");
    assert_eq!(m.bucket(r1).expect("r1").type_id, 3);
    assert_eq!(m.bucket(r1).expect("r1").items, vec![h1]);
    assert_eq!(m.bucket(root).expect("root").items, vec![r1]);
    assert_eq!(m.item_weight(0), Some(WEIGHT_ONE));
    assert_eq!(m.item_weight(r1), Some(3 * WEIGHT_ONE));
    assert_eq!(m.item_weight(root), Some(3 * WEIGHT_ONE));
    // The second OSD of the host asks for the same: nothing to do.
    let before = m.clone();
    assert!(!m
        .create_or_move_at(1, WEIGHT_ONE, &loc(&["root=default", "rack=r1", "host=h1"]))
        .expect("same"));
    assert_eq!(m, before);
    // A location that skips the rack still finds h1 inside the root: the
    // admin's rack stays.
    assert!(!m
        .create_or_move_at(1, WEIGHT_ONE, &loc(&["host=h1", "root=default"]))
        .expect("inside"));
    assert_eq!(m, before);
    // Several missing levels at once, and a device moved to another host
    // keeps its weight; the old host keeps the other OSD.
    assert!(m
        .create_or_move_at(
            1,
            WEIGHT_ONE,
            &loc(&[
                "root=default",
                "datacenter=dc1",
                "row=a",
                "rack=r2",
                "host=h2"
            ])
        )
        .expect("new path"));
    let names: Vec<&str> = ["h2", "r2", "a", "dc1"].to_vec();
    let ids: Vec<i32> = names.iter().map(|n| m.item_id(n).expect("made")).collect();
    for (pair, want_type) in ids.windows(2).zip(["rack", "row", "datacenter"]) {
        let parent = m.bucket(pair[1]).expect("parent");
        assert_eq!(m.type_name(parent.type_id), Some(want_type));
        assert_eq!(parent.items, vec![pair[0]]);
    }
    assert_eq!(m.bucket(ids[0]).expect("h2").items, vec![1]);
    assert_eq!(m.item_weight(1), Some(2 * WEIGHT_ONE));
    assert_eq!(m.item_weight(h1), Some(WEIGHT_ONE));
    assert_eq!(m.item_weight(root), Some(3 * WEIGHT_ONE));
    // A device not in CRUSH at all gets the weight given.
    assert!(m
        .create_or_move_at(7, WEIGHT_ONE / 2, &loc(&["root=default", "host=h7"]))
        .expect("new device"));
    assert_eq!(m.item_weight(7), Some(WEIGHT_ONE / 2));
    assert!(m.device_is_placed(7));
}

#[test]
fn create_or_move_refuses_bad_locations_and_changes_nothing() {
    let mut m = CrushMap::new_default();
    m.add_osd(0, WEIGHT_ONE, "h1").expect("osd");
    let before = m.clone();
    for (words, why) in [
        (&["host=h1"][..], "names no root"),
        (&["host=h1", "rack=r1"][..], "names no root"),
        (
            &["shelf=s1", "root=default"][..],
            "unknown crush type 'shelf'",
        ),
        (&["osd=x", "root=default"][..], "device type"),
        (&["host=default", "root=other"][..], "is a root, not a host"),
        (&["host=h9", "root=h1"][..], "is a host, not a root"),
        (
            &["host=x", "rack=r", "root=x"][..],
            "names the bucket 'x' twice",
        ),
    ] {
        let e = m
            .create_or_move_at(0, WEIGHT_ONE, &loc(words))
            .expect_err(why)
            .to_string();
        assert!(e.contains(why), "{words:?}: {e}");
        assert_eq!(m, before, "{words:?} changed the map");
    }
    // A host that holds the rack it should go into is a loop.
    let h1 = m.item_id("h1").expect("h1");
    let rack = m.next_bucket_id();
    m.add_bucket(rack, "odd", 3).expect("rack");
    m.insert_item(h1, rack, 0).expect("rack under host");
    let before = m.clone();
    let e = m
        .create_or_move_at(
            0,
            WEIGHT_ONE,
            &loc(&["host=h1", "rack=odd", "root=default"]),
        )
        .expect_err("loop")
        .to_string();
    assert!(e.contains("holds"), "{e}");
    assert_eq!(m, before);
}

#[test]
fn create_or_move_first_boot_sets_the_weight_where_mkfs_placed_it() {
    let mut m = CrushMap::new_default();
    m.add_osd(0, WEIGHT_ONE, "h1").expect("osd");
    let root = m.item_id("default").expect("root");
    // Same place, another weight: only the weight changes, up the tree.
    assert!(m
        .create_or_move_first_boot(0, WEIGHT_ONE / 4, &loc(&["host=h1", "root=default"]))
        .expect("reweighted"));
    assert_eq!(m.item_weight(0), Some(WEIGHT_ONE / 4));
    assert_eq!(m.item_weight(root), Some(WEIGHT_ONE / 4));
    // Asked again: nothing to do.
    assert!(!m
        .create_or_move_first_boot(0, WEIGHT_ONE / 4, &loc(&["host=h1", "root=default"]))
        .expect("same"));
    // A bad location changes nothing, weight included.
    let before = m.clone();
    assert!(m
        .create_or_move_first_boot(0, 2 * WEIGHT_ONE, &loc(&["host=h1"]))
        .is_err());
    assert_eq!(m, before);
    // An OSD CRUSH does not hold yet: placed with the weight.
    assert!(m
        .create_or_move_first_boot(5, 3 * WEIGHT_ONE, &loc(&["host=h2", "root=default"]))
        .expect("placed"));
    assert_eq!(m.item_weight(5), Some(3 * WEIGHT_ONE));
}
