//! Replays every crushtool golden case in `fixtures/crush/cases.tsv`:
//! the decompiled map text plus crushtool's flags must give exactly
//! crushtool's `--test --show-mappings` output.

use std::path::{Path, PathBuf};

use kalmar_maps::crush::{crush_test_string, CrushMap, CrushTestArgs};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crush")
}

/// Parses crushtool-style flags (the subset the fixtures use).
fn parse_args(s: &str) -> CrushTestArgs {
    let mut a = CrushTestArgs::default();
    let toks: Vec<&str> = s.split_whitespace().collect();
    let mut i = 0;
    while i < toks.len() {
        let v = |k: usize| toks[i + k].to_string();
        match toks[i] {
            "--rule" => a.rule = Some(v(1).parse().expect("rule")),
            "--num-rep" => a.num_rep = Some(v(1).parse().expect("num-rep")),
            "--min-x" => a.min_x = Some(v(1).parse().expect("min-x")),
            "--max-x" => a.max_x = Some(v(1).parse().expect("max-x")),
            "--pool-id" => a.pool_id = Some(v(1).parse().expect("pool-id")),
            "--weight" => {
                a.weights
                    .push((v(1).parse().expect("id"), v(2).parse().expect("w")));
                i += 1;
            }
            other => panic!("unknown flag {other} in cases.tsv"),
        }
        i += 2;
    }
    a
}

#[test]
fn crushtool_golden_cases() {
    let dir = fixtures();
    let cases = std::fs::read_to_string(dir.join("cases.tsv")).expect("cases.tsv");
    let mut n = 0;
    for line in cases.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split('\t');
        let (case, map, args) = (
            f.next().expect("case"),
            f.next().expect("map"),
            f.next().unwrap_or(""),
        );
        let text = std::fs::read_to_string(dir.join(format!("{map}.txt"))).expect("map text");
        let crush = CrushMap::from_text(&text).unwrap_or_else(|e| panic!("{map}: {e}"));
        let want =
            std::fs::read_to_string(dir.join(format!("{case}.out"))).expect("expected output");
        let got = crush_test_string(&crush, &parse_args(args));
        if got != want {
            let first = got
                .lines()
                .zip(want.lines())
                .find(|(g, w)| g != w)
                .map(|(g, w)| format!("got  {g}\nwant {w}"))
                .unwrap_or_else(|| {
                    format!(
                        "line counts differ: {} vs {}",
                        got.lines().count(),
                        want.lines().count()
                    )
                });
            panic!("case {case} ({map} {args}) differs from crushtool:\n{first}");
        }
        n += 1;
    }
    assert!(n >= 36, "expected the full fixture set, ran {n}");
}

#[test]
fn shared_reference_pair_matches() {
    // The golden pair shipped in shared/reference, if present beside the repo.
    let dir = fixtures();
    let text = std::fs::read_to_string(dir.join("sample12.txt")).expect("sample");
    let crush = CrushMap::from_text(&text).expect("parses");
    let want = std::fs::read_to_string(dir.join("sample12_rep3.out")).expect("out");
    let args = CrushTestArgs {
        num_rep: Some(3),
        ..Default::default()
    };
    assert_eq!(crush_test_string(&crush, &args), want);
}

#[test]
fn decompile_matches_crushtool_text() {
    // Every committed map text is crushtool's own `-d` output: parsing it
    // and writing it back must give the same bytes.
    let dir = fixtures();
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.ends_with(".txt") || name == "classes_src.txt" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("text");
        let map = CrushMap::from_text(&text).expect("parses");
        assert_eq!(
            map.to_text(),
            text,
            "{name} does not decompile to crushtool's text"
        );
        n += 1;
    }
    assert!(n >= 10, "decompiled {n} maps");
}
