//! Finding plugin folders and importing them (on the caller's thread,
//! which must not be an async runtime thread).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use serde_json::Value;

use crate::commands::CommandDesc;

/// A plugin that imported and described itself.
pub(crate) struct LoadedModule {
    pub class: std::sync::Arc<Py<PyAny>>,
    pub commands: Vec<CommandDesc>,
    /// `module ls` option objects by name.
    pub options: serde_json::Map<String, Value>,
    /// `None`: every notification (the module declares no NOTIFY_TYPES).
    pub notify_types: Option<Vec<String>>,
    pub can_run: bool,
    pub error_string: String,
}

/// A folder `NAME/` with a `module.py`, first one found per name.
pub(crate) fn discover(dirs: &[PathBuf]) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            tracing::warn!(dir = %dir.display(), "mgr module folder is missing or unreadable; skipped");
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join("module.py").is_file())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.') && !n.starts_with('_'))
            .collect();
        names.sort();
        for n in names {
            out.entry(n).or_insert_with(|| dir.clone());
        }
    }
    out
}

fn py_err_text(py: Python<'_>, e: &PyErr) -> String {
    let tb = e
        .traceback(py)
        .and_then(|tb| tb.format().ok())
        .unwrap_or_default();
    format!("{tb}{e}")
}

/// Imports `dir/name`; an error is the text `module ls` and health show.
pub(crate) fn load(name: &str, dir: &Path) -> Result<LoadedModule, String> {
    Python::attach(|py| {
        let loader = py
            .import("_kalmar_loader")
            .map_err(|e| py_err_text(py, &e))?;
        let r = loader
            .call_method1("load", (name, dir.to_string_lossy().to_string()))
            .map_err(|e| py_err_text(py, &e))?;
        let (class, desc): (Py<PyAny>, String) = r.extract().map_err(|e| py_err_text(py, &e))?;
        let desc: Value =
            serde_json::from_str(&desc).map_err(|e| format!("bad module description: {e}"))?;
        let mut commands = Vec::new();
        for c in desc["commands"].as_array().into_iter().flatten() {
            let sig = c["cmd"].as_str().unwrap_or_default();
            let d = CommandDesc::parse(
                sig,
                c["desc"].as_str().unwrap_or_default(),
                c["perm"].as_str().unwrap_or("rw"),
                c["poll"].as_bool().unwrap_or(false),
            )
            .map_err(|e| format!("COMMANDS: {e}"))?;
            commands.push(d);
        }
        let notify_types = desc["notify_types"].as_array().map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        });
        Ok(LoadedModule {
            class: std::sync::Arc::new(class),
            commands,
            options: desc["options"].as_object().cloned().unwrap_or_default(),
            notify_types,
            can_run: desc["can_run"].as_bool().unwrap_or(false),
            error_string: desc["error_string"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
    })
}

/// Last line of a traceback: the short form for `module ls`.
pub(crate) fn short_error(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
        .to_string()
}
