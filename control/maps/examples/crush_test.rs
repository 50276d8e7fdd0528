//! Developer tool: `crushtool --test --show-mappings` on decompiled text.
//! The user-facing command is `kalmar osd crush test`.
//!
//! cargo run --release -p kalmar-maps --example crush-test -- --map FILE
//!     [--rule N] [--num-rep N] [--min-x A --max-x B] [--weight ID W]...
//!     [--pool-id P] [--show-mappings]

use std::process::ExitCode;

use kalmar_maps::crush::{crush_test, CrushMap, CrushTestArgs};

fn value<T: std::str::FromStr>(
    it: &mut impl Iterator<Item = String>,
    flag: &str,
) -> Result<T, String> {
    let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
    v.parse().map_err(|_| format!("{flag}: bad value '{v}'"))
}

fn run() -> Result<(), String> {
    let mut args = CrushTestArgs::default();
    let mut map_path = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--map" | "-i" => map_path = Some(value::<String>(&mut it, &a)?),
            "--rule" => args.rule = Some(value(&mut it, &a)?),
            "--num-rep" => args.num_rep = Some(value(&mut it, &a)?),
            "--min-x" => args.min_x = Some(value(&mut it, &a)?),
            "--max-x" => args.max_x = Some(value(&mut it, &a)?),
            "--pool-id" => args.pool_id = Some(value(&mut it, &a)?),
            "--weight" => {
                let id = value(&mut it, &a)?;
                let w = value(&mut it, &a)?;
                args.weights.push((id, w));
            }
            "--show-mappings" | "--test" => {}
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    let path = map_path.ok_or("--map FILE is required")?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let map = CrushMap::from_text(&text).map_err(|e| format!("{path}: {e}"))?;
    let stdout = std::io::stdout();
    let mut lock = std::io::BufWriter::new(stdout.lock());
    crush_test(&map, &args, &mut lock).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crush-test: {e}");
            ExitCode::FAILURE
        }
    }
}
