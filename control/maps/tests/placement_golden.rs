//! Object -> PG -> OSDs against Ceph's osdmaptool (fixtures/osdmap): a
//! 15-OSD map with pool 1 (pg_num 120, pgp_num 60, hashpspool) and the
//! `hosts` CRUSH map.

use std::path::{Path, PathBuf};

use kalmar_maps::crush::CrushMap;
use kalmar_maps::osd::{OsdAddrs, OsdState, WEIGHT_IN};
use kalmar_maps::placement::format_osd_vec;
use kalmar_maps::{OsdMap, PgId, PgPool};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn field(line: &str, key: &str) -> u32 {
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == key {
            return it.next().expect("value").parse().expect("number");
        }
    }
    panic!("{key} missing in {line}");
}

fn golden_map(out_osd: Option<i32>) -> OsdMap {
    let d = dir();
    let crush =
        CrushMap::from_text(&std::fs::read_to_string(d.join("crush/hosts.txt")).expect("crush"))
            .expect("parses");
    let pool_line = std::fs::read_to_string(d.join("osdmap/pool.txt")).expect("pool");
    let mut pool = PgPool::replicated(
        1,
        "rbd",
        field(&pool_line, "size"),
        field(&pool_line, "min_size"),
        0,
        0,
    );
    pool.pg_num = field(&pool_line, "pg_num");
    pool.pgp_num = field(&pool_line, "pgp_num");
    pool.crush_rule = field(&pool_line, "crush_rule");
    assert!(pool_line.contains("hashpspool"));
    let mut m = OsdMap::new(uuid::Uuid::nil(), 0);
    m.crush = crush;
    m.pools.insert(1, pool);
    m.set_max_osd(15);
    for i in 0..15 {
        let s = m.osd_mut(i).expect("slot");
        s.state = OsdState(OsdState::EXISTS | OsdState::UP);
        s.weight = if Some(i) == out_osd { 0 } else { WEIGHT_IN };
        s.addrs = OsdAddrs::default();
    }
    m
}

fn check_pgs(m: &OsdMap, file: &str) {
    let want = std::fs::read_to_string(dir().join("osdmap").join(file)).expect("golden");
    let mut n = 0;
    for line in want.lines() {
        let pg: PgId = line
            .split_whitespace()
            .next()
            .expect("pgid")
            .parse()
            .expect("pg");
        let raw = m.pg_to_raw_osds(pg).expect("raw");
        let ua = m.pg_to_up_acting_osds(pg).expect("maps");
        let raw_p = raw.first().copied().unwrap_or(-1);
        let got = format!(
            "{pg} raw ({}, p{raw_p}) up ({}, p{}) acting ({}, p{})",
            format_osd_vec(&raw),
            format_osd_vec(&ua.up),
            ua.up_primary,
            format_osd_vec(&ua.acting),
            ua.acting_primary
        );
        assert_eq!(got, line, "{file}");
        n += 1;
    }
    assert_eq!(n, 120);
}

#[test]
fn pgs_match_osdmaptool_all_in() {
    check_pgs(&golden_map(None), "pgs_all_in.out");
}

#[test]
fn pgs_match_osdmaptool_with_osd9_out() {
    check_pgs(&golden_map(Some(9)), "pgs_out9.out");
}

#[test]
fn objects_match_osdmaptool() {
    let m = golden_map(None);
    let d = dir().join("osdmap");
    let names = std::fs::read_to_string(d.join("objects.txt")).expect("names");
    let want = std::fs::read_to_string(d.join("objects.out")).expect("golden");
    for (name, line) in names.lines().zip(want.lines()) {
        let pg = m.object_to_pg(1, name).expect("pg");
        let ua = m.pg_to_up_acting_osds(pg).expect("maps");
        let got = format!(" object '{name}' -> {pg} -> {}", format_osd_vec(&ua.acting));
        assert_eq!(got, line);
    }
    assert_eq!(names.lines().count(), want.lines().count());
}
