//! Posting this host's crash reports to the `crash` module: what Ceph's
//! per-host `ceph-crash` agent does with `ceph crash post -i meta`. A
//! daemon that panicked left `CRASH_DIR/<id>/meta`; each one the module
//! accepts (or rejects as malformed) moves to `CRASH_DIR/posted/`, so it is
//! posted once. Reports stay where they are while no `crash` module runs.

use std::path::Path;

use kalmar_common::crash;
use kalmar_mgr_py::PyModules;

/// Answers meaning "not now" (errno values as the plugin host returns them).
const EBUSY: i32 = -16;
const ETIMEDOUT: i32 = -110;

/// Posts the pending reports in `dir`; how many the module took.
pub fn post_pending(py: &PyModules, dir: &Path) -> usize {
    let words = ["crash".to_string(), "post".to_string()];
    let mut posted = 0;
    for (report, meta) in crash::pending(dir) {
        let r = py.handle_command(&words, None, Some(meta));
        let no_module = r.stderr.starts_with("No handler found")
            || r.stderr.starts_with("module crash stopped")
            || r.retval == EBUSY
            || r.retval == ETIMEDOUT;
        if r.retval != 0 && no_module {
            // No crash module running, or it is busy: try again later.
            tracing::debug!(report = %report.display(), "crash report not posted: {}", r.stderr);
            return posted;
        }
        if r.retval != 0 {
            // Refused (malformed, or the module raised on it): never
            // offered again.
            tracing::warn!(report = %report.display(), "crash report rejected: {}", r.stderr);
        } else {
            tracing::info!(report = %report.display(), "crash report posted");
            posted += 1;
        }
        if let Err(e) = crash::mark_posted(dir, &report) {
            tracing::warn!(report = %report.display(), "posted crash report not moved: {e}");
            return posted;
        }
    }
    posted
}
