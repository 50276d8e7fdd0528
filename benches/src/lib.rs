//! Helpers of the benchmarks under `benches/` (the criterion hot-path
//! benchmarks and the main job's report).

use std::fmt::Write as _;

/// A flat CRUSH map in crushtool's text form: `hosts` straw2 hosts of
/// `osds_per_host` OSDs (weights 1.0 to 2.5 in steps of 0.5) under one
/// root, rule 0 = `chooseleaf firstn 0 type host`.
pub fn flat_crush_text(hosts: usize, osds_per_host: usize) -> String {
    let mut s = String::from(
        "tunable choose_total_tries 50\ntunable chooseleaf_descend_once 1\ntunable chooseleaf_vary_r 1\n\
         tunable chooseleaf_stable 1\ntunable straw_calc_version 1\ntunable allowed_bucket_algs 54\n",
    );
    for i in 0..hosts * osds_per_host {
        let _ = writeln!(s, "device {i} osd.{i}");
    }
    s.push_str("type 0 osd\ntype 1 host\ntype 11 root\n");
    for h in 0..hosts {
        let _ = writeln!(s, "host h{h} {{\n\tid -{}\n\talg straw2\n\thash 0", h + 2);
        for o in 0..osds_per_host {
            let osd = h * osds_per_host + o;
            let _ = writeln!(
                s,
                "\titem osd.{osd} weight {:.3}",
                1.0 + (osd % 4) as f64 * 0.5
            );
        }
        s.push_str("}\n");
    }
    s.push_str("root default {\n\tid -1\n\talg straw2\n\thash 0\n");
    for h in 0..hosts {
        let _ = writeln!(s, "\titem h{h}");
    }
    s.push_str(
        "}\nrule replicated_rule {\n\tid 0\n\ttype replicated\n\tstep take default\n\
         \tstep chooseleaf firstn 0 type host\n\tstep emit\n}\n",
    );
    s
}
