//! The binary runs the interpreter it was built for (the system python3),
//! even with pyenv's python first on PATH, and refuses a foreign stdlib.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use kalmar_mgr_py::interp::{ensure_python, BUILD_PYTHON_PREFIX, BUILD_PYTHON_VERSION};

#[test]
fn loads_the_libpython_and_stdlib_it_was_built_for() {
    if std::env::var_os("KALMAR_EMBED_CHILD").is_some() {
        return; // only the child test runs in the child
    }
    assert_eq!(
        BUILD_PYTHON_PREFIX, "/usr",
        "built against a non-system python: check PYO3_PYTHON"
    );
    let info = ensure_python().unwrap();
    assert_eq!(info.version, BUILD_PYTHON_VERSION);
    assert_eq!(info.base_prefix, BUILD_PYTHON_PREFIX);
    assert_eq!(info.api_source, "embedded");
    // The mapped libpython is the system one.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let libs: Vec<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.contains("libpython"))
        .collect();
    assert!(!libs.is_empty(), "no libpython mapped");
    assert!(libs.iter().all(|p| p.starts_with("/usr/lib/")), "{libs:?}");
    // And ldd agrees.
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("ldd").arg(&exe).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("libpython"))
        .unwrap_or_default();
    assert!(
        line.contains("=> /usr/lib/") || line.contains("=> /lib/"),
        "ldd: {line}"
    );
}

#[test]
fn a_foreign_pythonhome_is_refused() {
    if std::env::var_os("KALMAR_EMBED_CHILD").is_some() {
        // In the child: PYTHONHOME points elsewhere; start must fail cleanly.
        let e = ensure_python().unwrap_err().to_string();
        eprintln!("refused: {e}");
        assert!(
            e.contains("built against") || e.contains("starting the embedded Python failed"),
            "{e}"
        );
        return;
    }
    // The pitfall seen here: pyenv's 3.11.7 stdlib with Debian's 3.11.2
    // library. Elsewhere an empty folder stands in for a foreign home.
    let empty = tempfile::tempdir().unwrap();
    let pyenv = std::path::Path::new("/root/.pyenv/versions/3.11.7");
    let home = if pyenv.is_dir() { pyenv } else { empty.path() };
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", "a_foreign_pythonhome_is_refused", "--nocapture"])
        .env("KALMAR_EMBED_CHILD", "1")
        .env("PYTHONHOME", home)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Either our check refuses it, or CPython itself aborts: never a run on
    // a mismatched stdlib.
    assert!(
        out.status.success() || text.contains("Fatal Python error"),
        "child: {text}"
    );
    assert!(
        !text.contains("panicked") || text.contains("Fatal Python error"),
        "{text}"
    );
    if pyenv.is_dir() {
        assert!(text.contains("1 passed"), "{text}");
    }
}
