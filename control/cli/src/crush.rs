//! `kalmar osd crush test --map FILE ...`: crushtool's `--test
//! --show-mappings` on a decompiled CRUSH map, offline (no mon needed).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use kalmar_maps::crush::tester::{crush_test, CrushTestArgs};
use kalmar_maps::CrushMap;

#[derive(Debug, Parser)]
#[command(
    name = "kalmar osd crush test",
    about = "crushtool --test on a decompiled CRUSH map"
)]
pub struct CrushTestCli {
    /// Decompiled CRUSH map (crushtool -d output).
    #[arg(long, short = 'i')]
    pub map: PathBuf,
    /// Only this rule (default: every rule).
    #[arg(long)]
    pub rule: Option<u32>,
    /// Replica count (default: each rule's min_size..max_size).
    #[arg(long)]
    pub num_rep: Option<u32>,
    #[arg(long, allow_hyphen_values = true)]
    pub min_x: Option<i64>,
    #[arg(long, allow_hyphen_values = true)]
    pub max_x: Option<i64>,
    /// Reweight device ID to W (0..1), as crushtool's --weight.
    #[arg(long, num_args = 2, value_names = ["ID", "W"], action = clap::ArgAction::Append)]
    pub weight: Vec<String>,
    /// Hash x with this pool id, as PG placement does.
    #[arg(long)]
    pub pool_id: Option<i64>,
    /// Print each mapping (the only output supported).
    #[arg(long)]
    pub show_mappings: bool,
    /// Accepted for crushtool compatibility.
    #[arg(long)]
    pub test: bool,
}

/// Runs the test and writes crushtool's lines to `out`.
pub fn run(words: &[String], out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let argv = std::iter::once("kalmar osd crush test".to_string()).chain(words.iter().cloned());
    let cli = match CrushTestCli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help / --version
            write!(out, "{e}")?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if !cli.show_mappings {
        bail!("only --show-mappings output is supported; add --show-mappings");
    }
    let mut weights = Vec::new();
    for pair in cli.weight.chunks(2) {
        let [id, w] = pair else {
            bail!("--weight needs an ID and a weight");
        };
        let id: i32 = id
            .parse()
            .with_context(|| format!("--weight: device id '{id}' is not a number"))?;
        let w: f32 = w
            .parse()
            .with_context(|| format!("--weight: weight '{w}' is not a number"))?;
        if !(0.0..=1.0).contains(&w) {
            bail!("--weight {id} {w}: the weight must be between 0 and 1");
        }
        weights.push((id, w));
    }
    let text = std::fs::read_to_string(&cli.map)
        .with_context(|| format!("reading {}", cli.map.display()))?;
    let map = CrushMap::from_text(&text)
        .map_err(|e| anyhow::anyhow!("{}:{}: {}", cli.map.display(), e.line, e.msg))?;
    if let Some(r) = cli.rule {
        if !map.rules.contains_key(&r) {
            bail!("rule {r} does not exist in {}", cli.map.display());
        }
    }
    let args = CrushTestArgs {
        rule: cli.rule,
        num_rep: cli.num_rep,
        min_x: cli.min_x,
        max_x: cli.max_x,
        weights,
        pool_id: cli.pool_id,
    };
    crush_test(&map, &args, out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    /// Every crushtool golden case of kalmar-maps, through the CLI's
    /// argument handling: output identical to crushtool's, byte for byte.
    #[test]
    fn matches_crushtool_golden_output() {
        let base =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../maps/tests/fixtures/crush");
        let cases = std::fs::read_to_string(base.join("cases.tsv")).expect("cases.tsv");
        let mut checked = 0;
        for line in cases
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let mut cols = line.split('\t');
            let (Some(case), Some(map), Some(args)) = (cols.next(), cols.next(), cols.next())
            else {
                panic!("bad cases.tsv line: {line}");
            };
            let mut argv = words(&format!(
                "--map {} --show-mappings",
                base.join(format!("{map}.txt")).display()
            ));
            argv.extend(words(args));
            let mut out = Vec::new();
            run(&argv, &mut out).unwrap_or_else(|e| panic!("{case}: {e}"));
            let want = std::fs::read(base.join(format!("{case}.out"))).expect("golden output");
            assert!(out == want, "{case}: output differs from crushtool's");
            checked += 1;
        }
        assert!(checked >= 10, "only {checked} golden cases found");
    }

    #[test]
    fn bad_arguments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut out = Vec::new();
        assert!(
            run(&words("--num-rep 3"), &mut out).is_err(),
            "--map is required"
        );
        let missing = dir.path().join("nope.txt");
        let e = run(
            &words(&format!("--map {} --show-mappings", missing.display())),
            &mut out,
        )
        .expect_err("missing");
        assert!(e.to_string().contains("reading"), "{e}");
        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, "rule broken {\n").expect("write");
        assert!(run(
            &words(&format!("--map {} --show-mappings", bad.display())),
            &mut out
        )
        .is_err());
        assert!(run(
            &words(&format!("--map {} --num-rep 3", bad.display())),
            &mut out
        )
        .is_err());
    }
}
