//! The native module `_kalmar_mgr` behind `mgr_module.MgrModule`: one
//! `ModuleHandle` per running module. Every method reads a snapshot and
//! returns; the only waits (mon commands, store writes that go to the mon)
//! happen with the GIL released.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use pyo3::{intern, IntoPyObjectExt};

use crate::cluster_state::ClusterDataName;
use crate::context::ModuleCtx;
use crate::daemon_state::{CounterSnapshot, DaemonKey, PerfCounterType, Sample};
use crate::health::parse_module_checks;
use crate::host::{ClogPriority, MonCommandCompletion};
use crate::pyconv::to_py;

/// A counter declaration with its path string and schema dict, built once
/// per `get_all_perf_counters` call.
type Template<'py> = (
    Arc<PerfCounterType>,
    Bound<'py, PyString>,
    Bound<'py, PyDict>,
);

/// A running module's handle into the mgr (constructed by the host only).
#[pyclass(frozen, module = "_kalmar_mgr")]
pub struct ModuleHandle {
    pub(crate) ctx: Arc<ModuleCtx>,
}

fn sample_list<'py>(py: Python<'py>, avg: bool, s: &Sample) -> PyResult<Bound<'py, PyList>> {
    if avg {
        PyList::new(
            py,
            [
                s.t.into_py_any(py)?,
                s.v.into_py_any(py)?,
                s.c.into_py_any(py)?,
            ],
        )
    } else {
        PyList::new(py, [s.t.into_py_any(py)?, s.v.into_py_any(py)?])
    }
}

fn schema_dict<'py>(py: Python<'py>, c: &CounterSnapshot) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "description"), c.ty.description.as_str())?;
    d.set_item(intern!(py, "nick"), c.ty.nick.as_str())?;
    d.set_item(intern!(py, "type"), c.ty.type_bits)?;
    d.set_item(intern!(py, "priority"), c.ty.priority)?;
    d.set_item(intern!(py, "units"), c.ty.unit)?;
    Ok(d)
}

impl ModuleHandle {
    fn state(&self) -> &crate::daemon_state::DaemonStateIndex {
        &self.ctx.shared.daemon_state
    }
}

#[pymethods]
impl ModuleHandle {
    #[getter]
    fn module_name(&self) -> &str {
        &self.ctx.name
    }

    /// `get(name)`: a cluster document, or None.
    fn get<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        if name == "osd_metadata" {
            return to_py(py, &self.ctx.shared.osd_metadata());
        }
        match ClusterDataName::parse(name).and_then(|n| self.ctx.shared.cluster.get(n)) {
            Some(doc) => to_py(py, &doc),
            None => Ok(py.None().into_bound(py)),
        }
    }

    fn get_perf_schema<'py>(
        &self,
        py: Python<'py>,
        svc_type: &str,
        svc_id: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for k in self.state().matching(svc_type, svc_id) {
            let d = PyDict::new(py);
            for c in self.state().counters(&k) {
                d.set_item(c.ty.path.as_str(), schema_dict(py, &c)?)?;
            }
            out.set_item(k.to_string(), d)?;
        }
        Ok(out)
    }

    fn get_counter<'py>(
        &self,
        py: Python<'py>,
        svc_type: &str,
        svc_id: &str,
        path: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        let list = PyList::empty(py);
        if let Some((ty, samples)) = self
            .state()
            .history(&DaemonKey::new(svc_type, svc_id), path)
        {
            for s in &samples {
                list.append(sample_list(py, ty.is_avg(), s)?)?;
            }
        }
        out.set_item(path, list)?;
        Ok(out)
    }

    fn get_latest_counter<'py>(
        &self,
        py: Python<'py>,
        svc_type: &str,
        svc_id: &str,
        path: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        let latest = self
            .state()
            .history(&DaemonKey::new(svc_type, svc_id), path)
            .and_then(|(ty, samples)| samples.last().map(|s| (ty.is_avg(), *s)));
        match latest {
            Some((avg, s)) => out.set_item(path, sample_list(py, avg, &s)?)?,
            None => out.set_item(path, PyList::empty(py))?,
        }
        Ok(out)
    }

    /// `{"osd.0": {"osd.op_w": {description, nick, type, priority, units,
    /// value[, count]}}}` for counters at or above `prio_limit`.
    fn get_all_perf_counters<'py>(
        &self,
        py: Python<'py>,
        prio_limit: i64,
        services: Vec<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        // Daemons of a kind share their counter declarations: build each
        // schema dict and path string once per call and copy it (a C-level
        // dict copy) instead of re-creating five strings per counter.
        let mut templates: HashMap<String, Template<'py>> = HashMap::new();
        for k in self.state().daemons() {
            if !services.contains(&k.svc_type) {
                continue;
            }
            let counters = self.state().counters(&k);
            if counters.is_empty() {
                continue;
            }
            let d = PyDict::new(py);
            for c in counters
                .iter()
                .filter(|c| i64::from(c.ty.priority) >= prio_limit)
            {
                let fresh = match templates.get(&c.ty.path) {
                    Some((ty, _, _)) => !(Arc::ptr_eq(ty, &c.ty) || **ty == *c.ty),
                    None => true,
                };
                if fresh {
                    let key = PyString::new(py, &c.ty.path);
                    templates.insert(c.ty.path.clone(), (c.ty.clone(), key, schema_dict(py, c)?));
                }
                let Some((_, key, template)) = templates.get(&c.ty.path) else {
                    continue;
                };
                let info = template.copy()?;
                let s = c.latest.unwrap_or(Sample { t: 0.0, v: 0, c: 0 });
                info.set_item(intern!(py, "value"), s.v)?;
                if c.ty.is_avg() {
                    info.set_item(intern!(py, "count"), s.c)?;
                }
                d.set_item(key, info)?;
            }
            out.set_item(k.to_string(), d)?;
        }
        Ok(out)
    }

    fn list_servers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.ctx.shared.list_servers())
    }

    fn get_server<'py>(&self, py: Python<'py>, hostname: &str) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.ctx.shared.get_server(hostname))
    }

    fn get_metadata(&self, svc_type: &str, svc_id: &str) -> Option<BTreeMap<String, String>> {
        self.ctx.shared.metadata(svc_type, svc_id)
    }

    fn get_daemon_status(&self, svc_type: &str, svc_id: &str) -> Option<BTreeMap<String, String>> {
        self.state().status(&DaemonKey::new(svc_type, svc_id))
    }

    fn get_mgr_id(&self) -> String {
        self.ctx.shared.host.mgr_id()
    }

    fn have_mon_connection(&self) -> bool {
        self.ctx.shared.host.have_mon_connection()
    }

    /// Sends a mon command and waits for the answer with the GIL released.
    fn mon_command<'py>(
        &self,
        py: Python<'py>,
        cmd_json: &str,
        inbuf: Vec<u8>,
    ) -> PyResult<(i32, Bound<'py, PyBytes>, String)> {
        let cmd: serde_json::Value = serde_json::from_str(cmd_json)
            .map_err(|e| PyValueError::new_err(format!("command is not JSON: {e}")))?;
        let host = self.ctx.shared.host.clone();
        let timeout = self.ctx.shared.config.mon_command_timeout;
        let reply = py.detach(move || {
            let (done, waiter) = MonCommandCompletion::new();
            host.mon_command(cmd, inbuf, done);
            waiter.wait(timeout)
        });
        Ok((reply.retval, PyBytes::new(py, &reply.outb), reply.outs))
    }

    fn get_config(&self, key: &str) -> Option<String> {
        self.ctx.shared.store.config_get(&self.ctx.key(key))
    }

    fn set_config(&self, py: Python<'_>, key: &str, value: Option<String>) -> PyResult<()> {
        let ctx = self.ctx.clone();
        py.detach(move || ctx.set_config(key, value.as_deref()))
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    fn get_store(&self, key: &str) -> Option<String> {
        self.ctx.shared.store.kv_get(&self.ctx.key(key))
    }

    fn set_store(&self, py: Python<'_>, key: &str, value: Option<String>) -> PyResult<()> {
        let ctx = self.ctx.clone();
        py.detach(move || ctx.set_store(key, value.as_deref()))
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    fn get_store_prefix(&self, prefix: &str) -> BTreeMap<String, String> {
        self.ctx.store_prefix(prefix)
    }

    fn set_health_checks(&self, checks_json: &str) -> PyResult<()> {
        let v: serde_json::Value = serde_json::from_str(checks_json).map_err(|e| {
            PyValueError::new_err(format!("health checks are not JSON-serialisable: {e}"))
        })?;
        let checks = parse_module_checks(&v).map_err(|e| PyValueError::new_err(e.to_string()))?;
        *self.ctx.health.lock() = checks;
        Ok(())
    }

    /// Queues `notify(notify_type, notify_id)` for every module that
    /// wants it (this one included); never blocks.
    fn notify_all(&self, notify_type: &str, notify_id: &str) -> usize {
        self.ctx.shared.notify_all(notify_type, notify_id)
    }

    fn set_uri(&self, uri: String) {
        *self.ctx.uri.lock() = Some(uri);
    }

    /// A `logging` record from the module, at Python's numeric level.
    fn log(&self, level: i64, message: &str) {
        let module = self.ctx.name.as_str();
        match level {
            l if l >= 40 => tracing::error!(target: "kalmar_mgr_py::module", module, "{message}"),
            l if l >= 30 => tracing::warn!(target: "kalmar_mgr_py::module", module, "{message}"),
            l if l >= 20 => tracing::info!(target: "kalmar_mgr_py::module", module, "{message}"),
            _ => tracing::debug!(target: "kalmar_mgr_py::module", module, "{message}"),
        }
    }

    fn cluster_log(&self, channel: &str, priority: i64, message: &str) {
        self.ctx
            .shared
            .host
            .cluster_log(channel, ClogPriority::from_int(priority), message);
    }
}

/// Raised when a native call is misused.
pub(crate) fn runtime_error(msg: impl Into<String>) -> PyErr {
    PyRuntimeError::new_err(msg.into())
}

#[pymodule]
pub mod _kalmar_mgr {
    #[pymodule_export]
    use super::ModuleHandle;
}
