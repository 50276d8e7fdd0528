//! CRUSH and OSDMap benchmarks (kalmar-maps), side by side with Ceph's
//! crushtool in the same run.
//!
//! cargo bench -p kalmar-benches --bench crush_bench [-- --inputs N --runs R]
//!
//! 1. CRUSH: a 1,000-OSD map (10 racks x 10 hosts x 10 OSDs, straw2,
//!    uneven weights), rule `chooseleaf firstn 0 type host`, inputs
//!    0..N x 3 replicas. Kalmar's mapper alone, Kalmar's `crush_test`
//!    (mapping + formatting every line), and `crushtool --test
//!    --show-mappings` (one process: decode + map + print, output to a
//!    file) on the same compiled map; the two outputs are compared byte
//!    for byte. crushtool is optional: without it the ratio is skipped.
//! 2. OSDMap: 1,000 OSDs, 10,000 PGs (pool of pg_num 10000) each with a
//!    pg_temp of 3 OSDs: sealed encoded size, encode and decode time, and
//!    the time to apply incrementals (a typical one and one rewriting
//!    every pg_temp entry).

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use kalmar_maps::crush::{crush_test, CrushMap, CrushTestArgs, Workspace};
use kalmar_maps::osd::{OsdAddrs, OsdState, WEIGHT_IN};
use kalmar_maps::{EntityAddr, Incremental, OsdMap, PgId, PgPool};

const RACKS: usize = 10;
const HOSTS_PER_RACK: usize = 10;
const OSDS_PER_HOST: usize = 10;

fn map_text() -> String {
    let mut s = String::from(
        "tunable choose_local_tries 0\ntunable choose_local_fallback_tries 0\ntunable choose_total_tries 50\n\
         tunable chooseleaf_descend_once 1\ntunable chooseleaf_vary_r 1\ntunable chooseleaf_stable 1\n\
         tunable straw_calc_version 1\ntunable allowed_bucket_algs 54\n",
    );
    let n = RACKS * HOSTS_PER_RACK * OSDS_PER_HOST;
    for i in 0..n {
        let _ = writeln!(s, "device {i} osd.{i}");
    }
    s.push_str("type 0 osd\ntype 1 host\ntype 3 rack\ntype 11 root\n");
    let mut id = -1;
    let mut osd = 0;
    let mut racks = Vec::new();
    for r in 0..RACKS {
        let mut hosts = Vec::new();
        for h in 0..HOSTS_PER_RACK {
            let _ = writeln!(s, "host host{r}-{h} {{\n\tid {id}\n\talg straw2\n\thash 0");
            id -= 1;
            for _ in 0..OSDS_PER_HOST {
                let w = 1.0 + (osd % 7) as f64 * 0.25;
                let _ = writeln!(s, "\titem osd.{osd} weight {w:.3}");
                osd += 1;
            }
            s.push_str("}\n");
            hosts.push(format!("host{r}-{h}"));
        }
        let _ = writeln!(s, "rack rack{r} {{\n\tid {id}\n\talg straw2\n\thash 0");
        id -= 1;
        for h in hosts {
            let _ = writeln!(s, "\titem {h}");
        }
        s.push_str("}\n");
        racks.push(format!("rack{r}"));
    }
    let _ = writeln!(s, "root default {{\n\tid {id}\n\talg straw2\n\thash 0");
    for r in racks {
        let _ = writeln!(s, "\titem {r}");
    }
    s.push_str("}\nrule replicated_rule {\n\tid 0\n\ttype replicated\n\tmin_size 1\n\tmax_size 10\n\tstep take default\n\tstep chooseleaf firstn 0 type host\n\tstep emit\n}\n");
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn spread(v: &[Duration]) -> (Duration, Duration) {
    (
        v.iter().min().copied().unwrap_or_default(),
        v.iter().max().copied().unwrap_or_default(),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn time_runs(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

fn crush_section(inputs: u32, runs: usize) {
    let text = map_text();
    let map = CrushMap::from_text(&text).expect("bench map parses");
    let weights = vec![0x10000u32; map.max_devices() as usize];
    let args = CrushTestArgs {
        rule: Some(0),
        num_rep: Some(3),
        min_x: Some(0),
        max_x: Some(i64::from(inputs) - 1),
        ..Default::default()
    };

    // Kalmar: mapping only.
    let mut ws = Workspace::default();
    let mut out = Vec::new();
    let mut check = 0u64;
    let mapper = time_runs(runs, || {
        for x in 0..inputs {
            map.do_rule_into(0, x, 3, &weights, &mut ws, &mut out);
            check = check.wrapping_add(out.iter().map(|&o| o as u64).sum::<u64>());
        }
    });
    // Kalmar: crushtool's whole job (map + format every line).
    let mut kalmar_out = Vec::new();
    let tester = time_runs(runs, || {
        kalmar_out.clear();
        crush_test(&map, &args, &mut kalmar_out).expect("writes");
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("map.txt");
    let bin = dir.path().join("map.bin");
    let outp = dir.path().join("out.txt");
    std::fs::write(&src, &text).expect("write map");
    let have_crushtool = Command::new("crushtool")
        .args([
            "-c".as_ref(),
            src.as_os_str(),
            "-o".as_ref(),
            bin.as_os_str(),
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let mut ceph = Vec::new();
    let mut identical = None;
    if have_crushtool {
        ceph = time_runs(runs, || {
            let f = std::fs::File::create(&outp).expect("out file");
            let st = Command::new("crushtool")
                .arg("-i")
                .arg(&bin)
                .args([
                    "--test",
                    "--show-mappings",
                    "--rule",
                    "0",
                    "--num-rep",
                    "3",
                    "--min-x",
                    "0",
                ])
                .args(["--max-x", &(inputs - 1).to_string()])
                .stdout(f)
                .status()
                .expect("crushtool runs");
            assert!(st.success());
        });
        let theirs = std::fs::read(&outp).expect("crushtool output");
        identical = Some(theirs == kalmar_out);
    }

    let n = f64::from(inputs);
    let rate = |d: Duration| n / d.as_secs_f64();
    let (mm, tm) = (median(mapper.clone()), median(tester.clone()));
    println!("## CRUSH: {inputs} inputs x 3 replicas, 1,000 OSDs (10 racks x 10 hosts x 10), chooseleaf firstn host");
    println!();
    println!("| what | median ms | min-max ms | mappings/s | ratio to crushtool |");
    println!("| --- | --- | --- | --- | --- |");
    let row = |name: &str, v: &[Duration], cm: Option<Duration>| {
        let m = median(v.to_vec());
        let (lo, hi) = spread(v);
        let ratio = cm.map_or("-".to_string(), |c| {
            format!("{:.2}x faster", c.as_secs_f64() / m.as_secs_f64())
        });
        println!(
            "| {name} | {:.1} | {:.1}-{:.1} | {:.0} | {ratio} |",
            ms(m),
            ms(lo),
            ms(hi),
            rate(m)
        );
    };
    let cm = (!ceph.is_empty()).then(|| median(ceph.clone()));
    if cm.is_some() {
        row(
            "crushtool --test --show-mappings (process, to file)",
            &ceph,
            None,
        );
    }
    row("kalmar crush_test (map + format lines)", &tester, cm);
    row("kalmar do_rule only", &mapper, cm);
    println!();
    match identical {
        Some(true) => println!("outputs identical: yes ({} bytes)", kalmar_out.len()),
        Some(false) => println!("outputs identical: NO - MISMATCH"),
        None => println!("crushtool not found: install ceph-base for the side-by-side figure"),
    }
    println!(
        "(checksum {check}, kalmar mapper {:.0} ns/mapping, crush_test {:.0} ns/line)",
        mm.as_nanos() as f64 / n,
        tm.as_nanos() as f64 / n
    );
    println!();
    if identical == Some(false) {
        std::process::exit(1);
    }
}

fn big_osdmap(n_osds: i32, pg_num: u32) -> OsdMap {
    let fsid = uuid::Uuid::from_u128(0x1234);
    let mut m = OsdMap::new(fsid, 1_700_000_000_000_000);
    let mut inc = Incremental::new(fsid, 1, 1_700_000_000_000_001);
    inc.new_max_osd = Some(n_osds);
    let mut crush = m.crush.clone();
    for i in 0..n_osds {
        crush
            .add_osd(i, 0x10000, &format!("host{}", i / 10))
            .expect("crush add");
        inc.new_uuid.insert(i, uuid::Uuid::from_u128(i as u128 + 1));
        inc.new_state.insert(i, OsdState::EXISTS);
        inc.new_weight.insert(i, WEIGHT_IN);
        let a = EntityAddr::new(
            ([10, 0, (i / 250) as u8, (i % 250) as u8], 6800).into(),
            i as u32,
        );
        inc.new_up.insert(i, OsdAddrs::all(a));
    }
    inc.crush = Some(crush);
    inc.new_pools
        .insert(1, PgPool::replicated(1, "rbd", 3, 2, pg_num, 0));
    m.apply_incremental(&inc).expect("epoch 1");
    let mut inc = Incremental::new(fsid, 2, 1_700_000_000_000_002);
    for s in 0..pg_num {
        let o = (s as i32 * 7) % n_osds;
        inc.new_pg_temp
            .insert(PgId::new(1, s), vec![o, (o + 1) % n_osds, (o + 2) % n_osds]);
    }
    m.apply_incremental(&inc).expect("epoch 2");
    m
}

fn osdmap_section(runs: usize) {
    let t = Instant::now();
    let m = big_osdmap(1000, 10_000);
    let build = t.elapsed();
    let sealed = m.encode_sealed();
    let enc = time_runs(runs, || {
        std::hint::black_box(m.encode_sealed());
    });
    let dec = time_runs(runs, || {
        std::hint::black_box(OsdMap::decode_sealed(&sealed).expect("decodes"));
    });
    // Typical: one OSD down, its up_thru bump elsewhere, 50 pg_temp changes.
    let mut typical = Incremental::new(m.fsid, m.epoch + 1, m.modified_us + 1);
    typical.new_state.insert(17, OsdState::UP);
    typical.new_up_thru.insert(3, m.epoch);
    for s in 0..50 {
        typical
            .new_pg_temp
            .insert(PgId::new(1, s * 13), vec![1, 2, 3]);
    }
    let mut all = Incremental::new(m.fsid, m.epoch + 1, m.modified_us + 1);
    for s in 0..10_000u32 {
        all.new_pg_temp.insert(PgId::new(1, s), vec![4, 5, 6]);
    }
    let apply = |inc: &Incremental| {
        let maps: Vec<OsdMap> = (0..runs).map(|_| m.clone()).collect();
        maps.into_iter()
            .map(|mut mm| {
                let t = Instant::now();
                mm.apply_incremental(inc).expect("applies");
                t.elapsed()
            })
            .collect::<Vec<_>>()
    };
    let ap_typ = apply(&typical);
    let ap_all = apply(&all);
    let typ_size = typical.encode_sealed().len();
    let all_size = all.encode_sealed().len();
    let dec_inc = time_runs(runs, || {
        std::hint::black_box(Incremental::decode_sealed(&all.encode_sealed()).expect("decodes"));
    });
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("## OSDMap: 1,000 OSDs, pool pg_num 10,000, 10,000 pg_temp entries (3 OSDs each)");
    println!();
    println!("| measure | median | min-max |");
    println!("| --- | --- | --- |");
    println!(
        "| sealed full-map size | {} bytes ({:.1} KiB) | - |",
        sealed.len(),
        sealed.len() as f64 / 1024.0
    );
    let row = |name: &str, v: &[Duration]| {
        let (lo, hi) = spread(v);
        println!(
            "| {name} | {:.0} us | {:.0}-{:.0} us |",
            us(median(v.to_vec())),
            us(lo),
            us(hi)
        );
    };
    row("encode + crc32c (full map)", &enc);
    row("crc check + decode (full map)", &dec);
    row(
        &format!("apply typical incremental ({typ_size} bytes: 1 down, 1 up_thru, 50 pg_temp)"),
        &ap_typ,
    );
    row(
        &format!("apply incremental rewriting all 10,000 pg_temp ({all_size} bytes)"),
        &ap_all,
    );
    row("encode + decode that incremental", &dec_inc);
    println!();
    println!("(building the map took {:.0} ms)", ms(build));
}

fn main() {
    let mut inputs = 100_000u32;
    let mut runs = 5usize;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--inputs" => inputs = it.next().and_then(|v| v.parse().ok()).unwrap_or(inputs),
            "--runs" => runs = it.next().and_then(|v| v.parse().ok()).unwrap_or(runs),
            _ => {} // cargo bench passes --bench
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    crush_section(inputs.max(1), runs.max(1));
    osdmap_section(runs.max(1));
}
