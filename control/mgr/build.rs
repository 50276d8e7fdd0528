//! The binary links libpython itself: the rpath/link args of kalmar-mgr-py
//! do not carry over to a dependent binary, so without this the loader may
//! pick another libpython (a pyenv one first on PATH) than the one pyo3 was
//! built for.

fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
