//! Links the libpython of the interpreter named by PYO3_PYTHON (the system
//! python3, see .cargo/config.toml) with an rpath, and records that
//! interpreter's prefix and version so the binary can check at run time that
//! it loaded the library and stdlib it was built for.

use std::process::Command;

fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    // The shipped modules and the Python sources are found through
    // CARGO_MANIFEST_DIR, baked in at compile time; the target dir is
    // shared between checkouts (scripts/env.sh), so rebuild when it moves.
    println!("cargo:rerun-if-env-changed=KALMAR_SOURCE_ROOT");
    let cfg = pyo3_build_config::get();
    let exe = std::env::var("PYO3_PYTHON")
        .ok()
        .or_else(|| cfg.executable().map(str::to_string))
        .unwrap_or_else(|| "python3".to_string());
    let probe = Command::new(&exe)
        .args([
            "-c",
            "import sys; print(sys.base_prefix); print('%d.%d.%d' % sys.version_info[:3])",
        ])
        .output();
    let (prefix, version) = match probe {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let mut lines = text.lines();
            (
                lines.next().unwrap_or("").trim().to_string(),
                lines.next().unwrap_or("").trim().to_string(),
            )
        }
        _ => (String::new(), String::new()),
    };
    println!("cargo:rustc-env=KALMAR_BUILD_PYTHON_PREFIX={prefix}");
    println!("cargo:rustc-env=KALMAR_BUILD_PYTHON_VERSION={version}");
    println!("cargo:rustc-env=KALMAR_BUILD_PYTHON_EXE={exe}");
}
