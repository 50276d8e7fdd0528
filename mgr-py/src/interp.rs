//! Starting the embedded interpreter once per process, checking it is the
//! one this binary was built for, and installing `mgr_module` & co.
//!
//! The binary links the libpython of the system python3 (build.rs records
//! its prefix and version). At start we check `sys.version` and
//! `sys.base_prefix` against those, so a pyenv or venv interpreter (or a
//! stray PYTHONHOME) cannot slip in a different stdlib unnoticed.

use std::ffi::CString;
use std::path::PathBuf;
use std::sync::OnceLock;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule};

use crate::config::PYTHON_PATH_ENV;
use crate::native;

/// The interpreter the binary runs.
#[derive(Debug, Clone)]
pub struct PythonInfo {
    /// `sys.version_info` as `3.11.2`.
    pub version: String,
    pub base_prefix: String,
    /// Where the mgr_module sources came from: a folder, or "embedded".
    pub api_source: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum InterpError {
    #[error(
        "the embedded Python is {found} but kalmar was built against {built} ({what}); \
         run with the system python3 environment (unset PYTHONHOME/PYTHONPATH) or rebuild"
    )]
    Mismatch {
        what: String,
        found: String,
        built: String,
    },
    #[error("starting the embedded Python failed: {0}")]
    Init(String),
}

/// Build-time facts recorded by build.rs.
pub const BUILD_PYTHON_VERSION: &str = env!("KALMAR_BUILD_PYTHON_VERSION");
pub const BUILD_PYTHON_PREFIX: &str = env!("KALMAR_BUILD_PYTHON_PREFIX");

/// The Python API files, compiled in so an installed binary needs nothing
/// else; `KALMAR_MGR_PYTHON_DIR` overrides them (for plugin developers).
const EMBEDDED: [(&str, &str, &str); 5] = [
    (
        "ceph_argparse",
        concat!(env!("CARGO_MANIFEST_DIR"), "/python/ceph_argparse.py"),
        include_str!("../python/ceph_argparse.py"),
    ),
    (
        "mgr_util",
        concat!(env!("CARGO_MANIFEST_DIR"), "/python/mgr_util.py"),
        include_str!("../python/mgr_util.py"),
    ),
    (
        "_kalmar_osdmap",
        concat!(env!("CARGO_MANIFEST_DIR"), "/python/_kalmar_osdmap.py"),
        include_str!("../python/_kalmar_osdmap.py"),
    ),
    (
        "mgr_module",
        concat!(env!("CARGO_MANIFEST_DIR"), "/python/mgr_module.py"),
        include_str!("../python/mgr_module.py"),
    ),
    (
        "_kalmar_loader",
        concat!(env!("CARGO_MANIFEST_DIR"), "/python/_kalmar_loader.py"),
        include_str!("../python/_kalmar_loader.py"),
    ),
];

static PYTHON: OnceLock<Result<PythonInfo, InterpError>> = OnceLock::new();

/// Starts Python (once) and installs the API. Later calls return the
/// first outcome.
pub fn ensure_python() -> Result<PythonInfo, InterpError> {
    PYTHON.get_or_init(init).clone()
}

fn init() -> Result<PythonInfo, InterpError> {
    // SAFETY of the check: Py_IsInitialized only reads a flag.
    let fresh = unsafe { pyo3::ffi::Py_IsInitialized() } == 0;
    if fresh {
        pyo3::append_to_inittab!(_kalmar_mgr_mod);
        Python::initialize();
    }
    Python::attach(|py| -> Result<PythonInfo, InterpError> {
        let err = |e: PyErr| InterpError::Init(e.to_string());
        let sys = py.import("sys").map_err(err)?;
        let vi = sys.getattr("version_info").map_err(err)?;
        let (major, minor, micro): (u32, u32, u32) = (
            vi.get_item(0).and_then(|x| x.extract()).map_err(err)?,
            vi.get_item(1).and_then(|x| x.extract()).map_err(err)?,
            vi.get_item(2).and_then(|x| x.extract()).map_err(err)?,
        );
        let version = format!("{major}.{minor}.{micro}");
        let base_prefix: String = sys
            .getattr("base_prefix")
            .and_then(|x| x.extract())
            .map_err(err)?;
        if !BUILD_PYTHON_VERSION.is_empty() && version != BUILD_PYTHON_VERSION {
            return Err(InterpError::Mismatch {
                what: "version".into(),
                found: version,
                built: BUILD_PYTHON_VERSION.into(),
            });
        }
        if !BUILD_PYTHON_PREFIX.is_empty() && base_prefix != BUILD_PYTHON_PREFIX {
            return Err(InterpError::Mismatch {
                what: "sys.base_prefix".into(),
                found: base_prefix,
                built: BUILD_PYTHON_PREFIX.into(),
            });
        }
        if !fresh {
            // Someone else started Python: register the native module by hand.
            let m = PyModule::new(py, "_kalmar_mgr").map_err(err)?;
            m.add_class::<native::ModuleHandle>().map_err(err)?;
            let modules = sys.getattr("modules").map_err(err)?;
            modules.set_item("_kalmar_mgr", m).map_err(err)?;
        }
        if sys.getattr("argv").is_err() {
            sys.setattr("argv", vec!["kalmar-mgr"]).map_err(err)?;
        }
        let api_source = install_api(py).map_err(err)?;
        Ok(PythonInfo {
            version,
            base_prefix,
            api_source,
        })
    })
}

use native::_kalmar_mgr as _kalmar_mgr_mod;

fn install_api(py: Python<'_>) -> PyResult<String> {
    if let Some(dir) = std::env::var_os(PYTHON_PATH_ENV).map(PathBuf::from) {
        let sys = py.import("sys")?;
        sys.getattr("path")?
            .call_method1("insert", (0, dir.to_string_lossy().to_string()))?;
        for (name, _, _) in EMBEDDED {
            py.import(name)?;
        }
        return Ok(dir.to_string_lossy().to_string());
    }
    for (name, file, source) in EMBEDDED {
        let code = CString::new(source).map_err(|e| crate::native::runtime_error(e.to_string()))?;
        let file = CString::new(file).map_err(|e| crate::native::runtime_error(e.to_string()))?;
        let name_c = CString::new(name).map_err(|e| crate::native::runtime_error(e.to_string()))?;
        PyModule::from_code(py, &code, &file, &name_c)?;
    }
    Ok("embedded".to_string())
}

/// Runs a snippet in a fresh namespace (tests and diagnostics).
pub fn run_snippet<'py>(py: Python<'py>, code: &str) -> PyResult<Bound<'py, PyDict>> {
    let globals = PyDict::new(py);
    let code = CString::new(code).map_err(|e| crate::native::runtime_error(e.to_string()))?;
    py.run(&code, Some(&globals), None)?;
    Ok(globals)
}
