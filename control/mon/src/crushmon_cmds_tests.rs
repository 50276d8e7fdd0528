use std::sync::Arc;
use std::time::Instant;

use kalmar_maps::crush::map::WEIGHT_ONE;
use kalmar_maps::{MgrMap, OsdMap, PgId};
use kalmar_proto::mon::OsdBoot;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::commands::execute;
use crate::options::MonOptions;

fn state(osds: usize) -> MonState {
    let mut map = OsdMap::new(Uuid::new_v4(), 1);
    map.epoch = 1;
    let opts = Arc::new(MonOptions::default());
    let mut st = MonState::new("a", opts, map, MgrMap::default(), Instant::now(), 1);
    for i in 0..osds {
        let r = run(
            &mut st,
            json!({"prefix": "osd new", "uuid": Uuid::new_v4().to_string(), "host": format!("h{i}")}),
        );
        assert_eq!(r.retval, 0, "{r:?}");
    }
    st
}

fn run(st: &mut MonState, cmd: Value) -> CmdReply {
    let r = execute(st, &cmd, Instant::now(), 2);
    if let Some((map, _)) = st.osd.take_pending(3).expect("valid incremental") {
        st.osd.committed(map);
    }
    r
}

fn ok(st: &mut MonState, cmd: Value) -> String {
    let r = run(st, cmd.clone());
    assert_eq!(r.retval, 0, "{cmd}: {r:?}");
    r.outs
}

fn fails(st: &mut MonState, cmd: Value, retval: i32) -> String {
    let epoch = st.osd.map().epoch;
    let r = run(st, cmd.clone());
    assert_eq!(r.retval, retval, "{cmd}: {r:?}");
    assert_eq!(
        st.osd.map().epoch,
        epoch,
        "{cmd}: a refused command changes nothing"
    );
    r.outs
}

fn out_json(st: &mut MonState, cmd: Value) -> Value {
    let r = run(st, cmd);
    assert_eq!(r.retval, 0, "{r:?}");
    serde_json::from_slice(&r.outbuf).expect("json")
}

fn boot(st: &mut MonState, id: i32, class: Option<&str>) {
    let slot = *st.osd.view().osd(id).expect("slot");
    let mut b = OsdBoot {
        osd_id: id,
        uuid: slot.uuid,
        ..OsdBoot::default()
    };
    b.addrs.public =
        kalmar_maps::EntityAddr::new(format!("127.0.0.1:{}", 6800 + id).parse().expect("addr"), 1);
    b.addrs.cluster = b.addrs.public;
    if let Some(c) = class {
        b.metadata.insert("crush_device_class".into(), c.into());
    }
    st.osd.boot(&b, Instant::now()).expect("boot");
    if let Some((map, _)) = st.osd.take_pending(3).expect("valid") {
        st.osd.committed(map);
    }
}

#[test]
fn device_classes_set_rm_and_list() {
    let mut st = state(4);
    let e0 = st.osd.map().epoch;
    assert_eq!(
        ok(
            &mut st,
            json!({"prefix": "osd crush set-device-class", "class": "ssd", "ids": ["0", "osd.1"]})
        ),
        "set osd(s) 0,1 to class 'ssd'"
    );
    assert_eq!(st.osd.map().epoch, e0 + 1, "one command, one epoch");
    assert!(st.osd.map().crush.item_id("default~ssd").is_some());
    assert_eq!(
        ok(
            &mut st,
            json!({"prefix": "osd crush set-device-class", "class": "ssd", "ids": ["0"]})
        ),
        "osd.0 already set to class ssd. "
    );
    let msg = fails(
        &mut st,
        json!({"prefix": "osd crush set-device-class", "class": "hdd", "ids": ["1"]}),
        EBUSY,
    );
    assert!(msg.contains("has already bound to class 'ssd'"), "{msg}");
    ok(
        &mut st,
        json!({"prefix": "osd crush set-device-class", "class": "hdd", "ids": ["2", "3"]}),
    );
    assert_eq!(
        out_json(
            &mut st,
            json!({"prefix": "osd crush class ls", "format": "json"})
        ),
        json!(["ssd", "hdd"])
    );
    assert_eq!(
        out_json(
            &mut st,
            json!({"prefix": "osd crush class ls-osd", "class": "hdd", "format": "json"})
        ),
        json!([2, 3])
    );
    assert_eq!(
        ok(
            &mut st,
            json!({"prefix": "osd crush rm-device-class", "ids": ["2", "3"]})
        ),
        "done removing class of osd(s): 2,3"
    );
    assert!(st.osd.map().crush.item_id("default~hdd").is_none());
    assert_eq!(
        ok(
            &mut st,
            json!({"prefix": "osd crush rm-device-class", "ids": ["2"]})
        ),
        "osd.2 belongs to no class, "
    );
    // `all` means every OSD.
    ok(
        &mut st,
        json!({"prefix": "osd crush rm-device-class", "ids": ["all"]}),
    );
    ok(
        &mut st,
        json!({"prefix": "osd crush set-device-class", "class": "nvme", "ids": ["all"]}),
    );
    assert_eq!(st.osd.map().crush.class_devices("nvme"), vec![0, 1, 2, 3]);
    assert_eq!(
        out_json(
            &mut st,
            json!({"prefix": "osd crush class ls", "format": "json"})
        ),
        json!(["nvme"])
    );
}

#[test]
fn class_rules_place_only_on_their_class_and_pools_follow() {
    let mut st = state(6);
    ok(
        &mut st,
        json!({"prefix": "osd crush set-device-class", "class": "ssd", "ids": ["0", "2", "4"]}),
    );
    ok(
        &mut st,
        json!({"prefix": "osd crush set-device-class", "class": "hdd", "ids": ["1", "3", "5"]}),
    );
    for i in 0..6 {
        boot(&mut st, i, None);
    }
    let e = fails(
        &mut st,
        json!({"prefix": "osd crush rule create-replicated", "name": "fast", "root": "default", "type": "host", "class": "tape"}),
        EINVAL,
    );
    assert_eq!(e, "device class tape does not exist");
    let e = fails(
        &mut st,
        json!({"prefix": "osd crush rule create-replicated", "name": "fast", "root": "nowhere", "type": "host"}),
        ENOENT,
    );
    assert_eq!(e, "root item nowhere does not exist");
    fails(
        &mut st,
        json!({"prefix": "osd crush rule create-replicated", "name": "fast", "root": "default", "type": "shelf"}),
        EINVAL,
    );
    ok(
        &mut st,
        json!({"prefix": "osd crush rule create-replicated", "name": "fast", "root": "default", "type": "host", "class": "ssd"}),
    );
    assert_eq!(
        ok(
            &mut st,
            json!({"prefix": "osd crush rule create-replicated", "name": "fast", "root": "default", "type": "host"})
        ),
        "rule fast already exists"
    );
    let rules = out_json(
        &mut st,
        json!({"prefix": "osd crush rule ls", "format": "json"}),
    );
    assert_eq!(rules, json!(["replicated_rule", "fast"]));
    let dump = out_json(
        &mut st,
        json!({"prefix": "osd crush rule dump", "name": "fast"}),
    );
    assert_eq!(dump["rule_id"], 1);
    assert_eq!(dump["steps"][0]["item_name"], "default~ssd");
    assert_eq!(
        dump["steps"][1],
        json!({"op": "chooseleaf_firstn", "num": 0, "type": "host"})
    );
    fails(
        &mut st,
        json!({"prefix": "osd crush rule dump", "name": "nope"}),
        ENOENT,
    );

    ok(
        &mut st,
        json!({"prefix": "osd pool create", "pool": "p", "pg_num": 16, "size": 3}),
    );
    assert_eq!(
        ok(
            &mut st,
            json!({"prefix": "osd pool set", "pool": "p", "var": "crush_rule", "val": "fast"})
        ),
        "set pool 1 crush_rule to fast"
    );
    let m = st.osd.map();
    for seed in 0..16 {
        let a = m
            .pg_to_up_acting_osds(PgId { pool: 1, seed })
            .expect("maps");
        assert_eq!(a.acting.len(), 3, "pg 1.{seed:x}: {a:?}");
        assert!(
            a.acting.iter().all(|o| o % 2 == 0),
            "pg 1.{seed:x} left ssd: {a:?}"
        );
    }
    let e = fails(
        &mut st,
        json!({"prefix": "osd crush rule rm", "name": "fast"}),
        EBUSY,
    );
    assert!(e.contains("in use by pool 'p'"), "{e}");
    ok(
        &mut st,
        json!({"prefix": "osd pool set", "pool": "p", "var": "crush_rule", "val": "0"}),
    );
    ok(
        &mut st,
        json!({"prefix": "osd crush rule rm", "name": "fast"}),
    );
    assert_eq!(
        ok(
            &mut st,
            json!({"prefix": "osd crush rule rm", "name": "fast"})
        ),
        "rule fast does not exist"
    );
}

#[test]
fn buckets_add_move_remove_and_tree() {
    let mut st = state(4);
    assert_eq!(
        ok(
            &mut st,
            json!({"prefix": "osd crush add-bucket", "name": "r1", "type": "rack"})
        ),
        "added bucket r1 type rack to crush map"
    );
    fails(
        &mut st,
        json!({"prefix": "osd crush add-bucket", "name": "r2", "type": "shelf"}),
        EINVAL,
    );
    fails(
        &mut st,
        json!({"prefix": "osd crush add-bucket", "name": "bad/name", "type": "rack"}),
        EINVAL,
    );
    assert_eq!(
        ok(
            &mut st,
            json!({"prefix": "osd crush add-bucket", "name": "r2", "type": "rack", "args": ["root=default"]})
        ),
        "added bucket r2 type rack to location {root=default}"
    );
    assert_eq!(
        ok(
            &mut st,
            json!({"prefix": "osd crush move", "name": "r1", "args": ["root=default"]})
        ),
        format!(
            "moved item id {} name 'r1' to location {{root=default}} in crush map",
            st.osd.map().crush.item_id("r1").expect("r1")
        )
    );
    ok(
        &mut st,
        json!({"prefix": "osd crush move", "name": "h0", "args": ["root=default", "rack=r1"]}),
    );
    ok(
        &mut st,
        json!({"prefix": "osd crush move", "name": "h1", "args": ["rack=r1"]}),
    );
    let again = ok(
        &mut st,
        json!({"prefix": "osd crush move", "name": "h1", "args": ["rack=r1"]}),
    );
    assert!(again.starts_with("no need to move"), "{again}");
    ok(
        &mut st,
        json!({"prefix": "osd crush move", "name": "h2", "args": ["rack=r2"]}),
    );
    ok(
        &mut st,
        json!({"prefix": "osd crush move", "name": "h3", "args": ["rack=r3", "row=row1", "root=default"]}),
    );
    fails(
        &mut st,
        json!({"prefix": "osd crush move", "name": "nope", "args": ["rack=r1"]}),
        ENOENT,
    );
    let c = &st.osd.map().crush;
    let row1 = c.item_id("row1").expect("row made on the way");
    assert_eq!(
        c.parents_of(row1),
        vec![c.item_id("default").expect("root")]
    );

    let tree = String::from_utf8(run(&mut st, json!({"prefix": "osd tree"})).outbuf).expect("utf8");
    let has = |line: &str| tree.lines().any(|l| l.trim_end().ends_with(line));
    assert!(has("-6         2.00000      rack r1"), "{tree}");
    assert!(has("      row row1"), "{tree}");
    assert!(has("-5         1.00000              host h3"), "{tree}");
    let ctree =
        String::from_utf8(run(&mut st, json!({"prefix": "osd crush tree"})).outbuf).expect("utf8");
    assert!(
        ctree.starts_with("ID  CLASS  WEIGHT   TYPE NAME"),
        "{ctree}"
    );

    // A non-empty bucket stays; an empty one goes.
    let e = fails(
        &mut st,
        json!({"prefix": "osd crush rm", "name": "r2"}),
        ENOTEMPTY,
    );
    assert!(e.contains("Directory not empty"), "{e}");
    ok(
        &mut st,
        json!({"prefix": "osd crush move", "name": "h2", "args": ["rack=r1"]}),
    );
    assert_eq!(
        ok(&mut st, json!({"prefix": "osd crush rm", "name": "r2"})),
        format!("removed item id {} name 'r2' from crush map", -7)
    );
    assert_eq!(
        ok(&mut st, json!({"prefix": "osd crush rm", "name": "r2"})),
        "device 'r2' does not appear in the crush map"
    );

    // Weights: reweight an OSD, set one elsewhere with a weight.
    assert_eq!(
        ok(
            &mut st,
            json!({"prefix": "osd crush reweight", "name": "osd.0", "weight": 2.5})
        ),
        "reweighted item id 0 name 'osd.0' to 2.5 in crush map"
    );
    fails(
        &mut st,
        json!({"prefix": "osd crush reweight", "name": "r1", "weight": 1.0}),
        EINVAL,
    );
    let r1 = st.osd.map().crush.item_id("r1").expect("r1");
    assert_eq!(st.osd.map().crush.item_weight(r1), Some(0x10000 * 9 / 2));
    assert_eq!(
        ok(
            &mut st,
            json!({"prefix": "osd crush set", "id": "osd.3", "weight": "0.5", "args": ["host=h0"]})
        ),
        "set item id 3 name 'osd.3' weight 0.5 at location {host=h0} to crush map"
    );
    let c = &st.osd.map().crush;
    assert_eq!(c.parents_of(3), vec![c.item_id("h0").expect("h0")]);
    assert_eq!(c.item_weight(3), Some(0x8000));
    fails(
        &mut st,
        json!({"prefix": "osd crush add", "id": "osd.3", "weight": 1, "args": ["host=h1"]}),
        EEXIST,
    );
    // osd crush remove takes an OSD out of CRUSH (not out of the map).
    ok(
        &mut st,
        json!({"prefix": "osd crush remove", "name": "osd.3"}),
    );
    assert!(!st.osd.map().crush.devices.contains_key(&3));
    assert!(st.osd.map().exists(3));
    assert_eq!(
        ok(
            &mut st,
            json!({"prefix": "osd crush add", "id": "3", "weight": 1, "args": ["host=h4", "rack=r1"]})
        ),
        "add item id 3 name 'osd.3' weight 1 at location {host=h4,rack=r1} to crush map"
    );
}

#[test]
fn destroy_keeps_id_and_position_purge_and_rm_remove() {
    let mut st = state(3);
    ok(
        &mut st,
        json!({"prefix": "osd crush set-device-class", "class": "hdd", "ids": ["1"]}),
    );
    ok(
        &mut st,
        json!({"prefix": "osd crush reweight", "name": "osd.1", "weight": 3}),
    );
    boot(&mut st, 1, None);
    let e = fails(
        &mut st,
        json!({"prefix": "osd destroy", "id": "osd.1"}),
        EPERM,
    );
    assert!(e.starts_with("Are you SURE?"), "{e}");
    let e = fails(
        &mut st,
        json!({"prefix": "osd destroy", "id": "osd.1", "yes_i_really_mean_it": true}),
        EBUSY,
    );
    assert_eq!(e, "osd.1 is not `down`.");
    fails(&mut st, json!({"prefix": "osd rm", "ids": ["1"]}), EBUSY);
    ok(&mut st, json!({"prefix": "osd down", "ids": ["1"]}));
    assert_eq!(
        ok(
            &mut st,
            json!({"prefix": "osd destroy", "id": "osd.1", "yes_i_really_mean_it": true})
        ),
        "destroyed osd.1"
    );
    let m = st.osd.map();
    let s = m.osd(1).expect("slot");
    assert!(s.exists() && s.state.has(OsdState::DESTROYED) && s.uuid.is_nil());
    assert_eq!(
        m.crush.item_weight(1),
        Some(3 * 0x10000),
        "position and weight kept"
    );
    let tree = String::from_utf8(run(&mut st, json!({"prefix": "osd tree"})).outbuf).expect("utf8");
    assert!(tree.contains("destroyed"), "{tree}");

    // A new disk with a new uuid takes the destroyed id back.
    let e = st
        .osd
        .osd_mkfs_class(Uuid::new_v4(), 0, "h9", "ssd", WEIGHT_ONE);
    assert!(e.is_err(), "a live id is not given away");
    let new_uuid = Uuid::new_v4();
    assert_eq!(
        st.osd
            .osd_mkfs_class(new_uuid, 1, "elsewhere", "ssd", WEIGHT_ONE)
            .expect("reuse"),
        1
    );
    let (map, _) = st.osd.take_pending(4).expect("valid").expect("changed");
    st.osd.committed(map);
    let m = st.osd.map();
    let s = m.osd(1).expect("slot");
    assert!(!s.state.has(OsdState::DESTROYED) && s.state.has(OsdState::NEW));
    assert_eq!(s.uuid, new_uuid);
    assert_eq!(
        m.crush.item_weight(1),
        Some(3 * 0x10000),
        "same place, same weight"
    );
    assert!(s.info.up_from > 0, "the id's earlier boots are remembered");
    // The new disk's first boot asks for its own initial weight: the id
    // has booted before, so the weight it had stays (as in Ceph).
    let e = st.osd.map().epoch;
    ok(
        &mut st,
        json!({"prefix": "osd crush create-or-move", "id": 1, "weight": 0.5,
            "args": ["host=h1", "root=default"]}),
    );
    assert_eq!(st.osd.map().crush.item_weight(1), Some(3 * 0x10000));
    assert_eq!(st.osd.map().epoch, e, "nothing to change");
    let m = st.osd.map();
    let real: Vec<i32> = m
        .crush
        .parents_of(1)
        .into_iter()
        .filter(|&p| m.crush.shadow_of(p).is_none())
        .collect();
    assert_eq!(real, vec![m.crush.item_id("h1").expect("h1")]);
    assert_eq!(
        m.crush.devices[&1].class.as_deref(),
        Some("hdd"),
        "the class set before is kept"
    );

    // purge: out of CRUSH and the map.
    assert_eq!(
        ok(
            &mut st,
            json!({"prefix": "osd purge", "id": "osd.2", "yes_i_really_mean_it": true})
        ),
        "purged osd.2"
    );
    assert!(!st.osd.map().exists(2));
    assert!(!st.osd.map().crush.devices.contains_key(&2));
    assert_eq!(
        ok(
            &mut st,
            json!({"prefix": "osd purge", "id": "2", "yes_i_really_mean_it": true})
        ),
        "osd.2 does not exist"
    );
    // rm: out of the map, CRUSH keeps the device (tree shows DNE).
    assert_eq!(
        ok(&mut st, json!({"prefix": "osd rm", "ids": ["0"]})),
        "removed osd.0"
    );
    assert!(!st.osd.map().exists(0));
    assert!(st.osd.map().crush.devices.contains_key(&0));
}

#[test]
fn booting_osd_sets_its_class_once() {
    let mut st = state(2);
    boot(&mut st, 0, Some("nvme"));
    assert_eq!(
        st.osd.map().crush.devices[&0].class.as_deref(),
        Some("nvme")
    );
    assert!(st.osd.map().crush.item_id("default~nvme").is_some());
    // An admin's class wins over what the OSD detects.
    ok(
        &mut st,
        json!({"prefix": "osd crush set-device-class", "class": "ssd", "ids": ["1"]}),
    );
    boot(&mut st, 1, Some("hdd"));
    assert_eq!(st.osd.map().crush.devices[&1].class.as_deref(), Some("ssd"));
    // Registration can carry the class too (kalmar-osd create).
    let id = st
        .osd
        .osd_mkfs_class(Uuid::new_v4(), -1, "h5", "hdd", WEIGHT_ONE)
        .expect("mkfs");
    let (map, _) = st.osd.take_pending(4).expect("valid").expect("changed");
    st.osd.committed(map);
    assert_eq!(
        st.osd.map().crush.devices[&id].class.as_deref(),
        Some("hdd")
    );
    let _ = TEST_ERRNOS;
}

/// What an OSD asks at boot with `crush_location = "root=default rack=r1
/// host=h0"`: the rack is made and h0 moves into it once; the second ask
/// changes nothing (no new epoch); bad locations are EINVAL and change
/// nothing.
#[test]
fn create_or_move_places_an_osd_at_its_full_location() {
    let mut st = state(3);
    ok(
        &mut st,
        json!({"prefix": "osd crush set-device-class", "class": "ssd", "ids": ["0"]}),
    );
    let e0 = st.osd.map().epoch;
    let cmd = json!({"prefix": "osd crush create-or-move", "id": 0, "weight": 1.0,
        "args": ["root=default", "rack=r1", "host=h0"]});
    assert_eq!(
        ok(&mut st, cmd.clone()),
        "create-or-move updating item name 'osd.0' weight 1 at location {host=h0,rack=r1,root=default} to crush map"
    );
    assert_eq!(st.osd.map().epoch, e0 + 1);
    let crush = &st.osd.map().crush;
    let r1 = crush.item_id("r1").expect("rack made");
    let h0 = crush.item_id("h0").expect("h0");
    assert_eq!(crush.bucket(r1).expect("r1").items, vec![h0]);
    assert!(
        crush.item_id("r1~ssd").is_some(),
        "the class tree follows the move"
    );
    let tree = String::from_utf8(run(&mut st, json!({"prefix": "osd tree"})).outbuf).expect("utf8");
    assert!(tree.contains("rack r1"), "{tree}");
    assert_eq!(
        ok(&mut st, cmd),
        "create-or-move updated item name 'osd.0' weight 1 at location {host=h0,rack=r1,root=default} to crush map"
    );
    assert_eq!(st.osd.map().epoch, e0 + 1, "nothing to change, no epoch");
    // osd.1's host is left where it is by a location that names no rack.
    ok(
        &mut st,
        json!({"prefix": "osd crush move", "name": "h1", "args": ["rack=r1", "root=default"]}),
    );
    let e1 = st.osd.map().epoch;
    ok(
        &mut st,
        json!({"prefix": "osd crush create-or-move", "id": "osd.1", "weight": "1",
            "args": ["host=h1", "root=default"]}),
    );
    assert_eq!(st.osd.map().epoch, e1);
    let (_, _, einval, enoent) = TEST_ERRNOS;
    for (args, why) in [
        (json!(["host=h1"]), "names no root"),
        (
            json!(["shelf=s1", "root=default"]),
            "unknown crush type 'shelf'",
        ),
        (json!(["host=r1", "root=default"]), "is a rack, not a host"),
        (json!([]), "missing location"),
    ] {
        let msg = fails(
            &mut st,
            json!({"prefix": "osd crush create-or-move", "id": 1, "weight": 1, "args": args}),
            einval,
        );
        assert!(msg.contains(why), "{args}: {msg}");
    }
    fails(
        &mut st,
        json!({"prefix": "osd crush create-or-move", "id": 9, "weight": 1, "args": ["host=h9", "root=default"]}),
        enoent,
    );
}

/// `osd_crush_initial_weight` (or the device's size): the weight an OSD
/// asks for at its first boot is what it gets, even though mkfs placed it
/// with weight 1; once it has booted, a later ask keeps the weight it has
/// (an admin's reweight survives restarts), as Ceph's create-or-move.
#[test]
fn create_or_move_gives_the_initial_weight_at_first_boot_only() {
    let mut st = state(2);
    assert_eq!(st.osd.map().crush.item_weight(0), Some(WEIGHT_ONE));
    let e0 = st.osd.map().epoch;
    let ask = |w: f64| {
        json!({"prefix": "osd crush create-or-move", "id": 0, "weight": w,
            "args": ["host=h0", "root=default"]})
    };
    ok(&mut st, ask(0.5));
    assert_eq!(st.osd.map().epoch, e0 + 1);
    assert_eq!(st.osd.map().crush.item_weight(0), Some(WEIGHT_ONE / 2));
    let h0 = st.osd.map().crush.item_id("h0").expect("h0");
    assert_eq!(st.osd.map().crush.item_weight(h0), Some(WEIGHT_ONE / 2));
    // The same ask again: nothing changes.
    ok(&mut st, ask(0.5));
    assert_eq!(st.osd.map().epoch, e0 + 1);
    // Booted: the next start's ask (another size, another option) keeps
    // the weight, whether set at first boot or by an admin since.
    boot(&mut st, 0, None);
    ok(&mut st, ask(2.0));
    assert_eq!(st.osd.map().crush.item_weight(0), Some(WEIGHT_ONE / 2));
    ok(
        &mut st,
        json!({"prefix": "osd crush reweight", "name": "osd.0", "weight": 3.0}),
    );
    ok(&mut st, ask(0.25));
    assert_eq!(st.osd.map().crush.item_weight(0), Some(3 * WEIGHT_ONE));
    // osd.1, never booted, moving to a new rack at its first boot: placed
    // there with its initial weight in one step.
    ok(
        &mut st,
        json!({"prefix": "osd crush create-or-move", "id": 1, "weight": 0.125,
            "args": ["host=h1", "rack=r9", "root=default"]}),
    );
    let crush = &st.osd.map().crush;
    assert_eq!(crush.item_weight(1), Some(WEIGHT_ONE / 8));
    let r9 = crush.item_id("r9").expect("rack made");
    assert_eq!(crush.item_weight(r9), Some(WEIGHT_ONE / 8));
}

/// An OSD registered with the weight its first boot asks for (what
/// `kalmar-osd mkfs` sends) changes the up set only of PGs it will hold,
/// and its first boot's create-or-move changes nothing. Placed at weight 1
/// beside small devices, it drew nearly every PG while it was down and
/// out, so PGs it never holds lost copies from their up sets and peered
/// twice (`cluster_backfill` saw one reported `remapped`).
#[test]
fn a_new_osd_at_its_boot_weight_moves_only_the_pgs_it_will_hold() {
    use kalmar_maps::crush::edit::weight_from_f64;
    const SMALL: f64 = 0.0029;
    let mut st = state(3);
    for i in 0..3 {
        ok(
            &mut st,
            json!({"prefix": "osd crush reweight", "name": format!("osd.{i}"), "weight": SMALL}),
        );
        boot(&mut st, i, None);
    }
    ok(
        &mut st,
        json!({"prefix": "osd pool create", "pool": "p", "pg_num": 64, "size": "3"}),
    );
    let ups = |st: &MonState| -> Vec<(PgId, Vec<i32>)> {
        let m = st.osd.map();
        m.pools
            .values()
            .flat_map(|p| p.pgs())
            .map(|pg| (pg, m.pg_to_up_acting_osds(pg).expect("mapping").up))
            .collect()
    };
    let before = ups(&st);
    let id = st
        .osd
        .osd_mkfs_class(
            Uuid::new_v4(),
            3,
            "h3",
            "",
            weight_from_f64(SMALL).expect("weight"),
        )
        .expect("registered");
    assert_eq!(id, 3);
    let (map, _) = st.osd.take_pending(4).expect("valid").expect("changed");
    st.osd.committed(map);
    let registered = ups(&st);
    let e = st.osd.map().epoch;
    ok(
        &mut st,
        json!({"prefix": "osd crush create-or-move", "id": 3, "weight": SMALL,
            "args": ["host=h3", "root=default"]}),
    );
    assert_eq!(
        st.osd.map().epoch,
        e,
        "the first boot's placement is a no-op"
    );
    boot(&mut st, 3, None);
    let booted = ups(&st);
    let mut gained = 0;
    for ((pg, b), ((_, r), (_, a))) in before.iter().zip(registered.iter().zip(&booted)) {
        if a.contains(&3) {
            gained += 1;
        } else {
            assert_eq!(
                b, r,
                "{pg} never holds osd.3, yet registering it moved {b:?} to {r:?}"
            );
            assert_eq!(b, a, "{pg}");
        }
    }
    assert!(gained > 0, "osd.3 takes a share of the PGs");
}
