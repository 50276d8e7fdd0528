//! Health checks raised by plugins (`set_health_checks`) and by the host
//! itself (a module that failed or is stuck), merged into one set the
//! daemon reports to the mon and `kalmar health` shows.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Largest number of checks one module may raise, and detail lines kept
/// per check: a runaway plugin cannot make health reports unbounded.
pub const MAX_CHECKS_PER_MODULE: usize = 64;
pub const MAX_DETAIL_LINES: usize = 64;
pub const MAX_HEALTH_TEXT_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    /// Ceph's JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "HEALTH_WARN",
            Severity::Error => "HEALTH_ERR",
        }
    }
}

/// One check, Ceph's `health_check_t`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub severity: Severity,
    pub summary: String,
    pub count: u64,
    pub detail: Vec<String>,
}

impl HealthCheck {
    /// `{severity, summary: {message, count}, detail: [{message}]}`.
    pub fn to_json(&self) -> Value {
        json!({
            "severity": self.severity.as_str(),
            "summary": {"message": self.summary, "count": self.count},
            "detail": self.detail.iter().map(|d| json!({"message": d})).collect::<Vec<_>>(),
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HealthInputError {
    #[error("health checks must be a dict of NAME -> {{severity, summary, count, detail}}")]
    NotADict,
    #[error("health check {0}: must be a dict")]
    CheckNotADict(String),
    #[error("health check {name}: severity {got:?} is not \"warning\" or \"error\"")]
    Severity { name: String, got: String },
    #[error("health check {0}: summary must be a string")]
    Summary(String),
    #[error("more than {MAX_CHECKS_PER_MODULE} health checks from one module")]
    TooMany,
}

fn cut(s: &str) -> String {
    let mut end = s.len().min(MAX_HEALTH_TEXT_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Parses what a plugin passes to `set_health_checks`:
/// `{"NAME": {"severity": "warning"|"error", "summary": str, "count": int,
/// "detail": [str]}}`.
pub fn parse_module_checks(v: &Value) -> Result<BTreeMap<String, HealthCheck>, HealthInputError> {
    let obj = v.as_object().ok_or(HealthInputError::NotADict)?;
    if obj.len() > MAX_CHECKS_PER_MODULE {
        return Err(HealthInputError::TooMany);
    }
    let mut out = BTreeMap::new();
    for (name, c) in obj {
        let c = c
            .as_object()
            .ok_or_else(|| HealthInputError::CheckNotADict(name.clone()))?;
        let sev = c.get("severity").and_then(Value::as_str).unwrap_or("");
        let severity = match sev.to_ascii_lowercase().as_str() {
            "warning" | "warn" | "health_warn" => Severity::Warning,
            "error" | "err" | "health_err" => Severity::Error,
            _ => {
                return Err(HealthInputError::Severity {
                    name: name.clone(),
                    got: sev.to_string(),
                })
            }
        };
        let summary = c
            .get("summary")
            .and_then(Value::as_str)
            .ok_or_else(|| HealthInputError::Summary(name.clone()))?;
        let detail: Vec<String> = c
            .get("detail")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .take(MAX_DETAIL_LINES)
                    .map(|d| {
                        cut(d
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| d.to_string())
                            .as_str())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let count = c
            .get("count")
            .and_then(Value::as_u64)
            .unwrap_or(detail.len() as u64);
        out.insert(
            name.clone(),
            HealthCheck {
                severity,
                summary: cut(summary),
                count,
                detail,
            },
        );
    }
    Ok(out)
}

/// Merges checks from several sources: same name -> worst severity,
/// counts added, details concatenated (bounded).
pub fn merge<'a>(
    sets: impl IntoIterator<Item = &'a BTreeMap<String, HealthCheck>>,
) -> BTreeMap<String, HealthCheck> {
    let mut out: BTreeMap<String, HealthCheck> = BTreeMap::new();
    for set in sets {
        for (name, c) in set {
            match out.get_mut(name) {
                None => {
                    out.insert(name.clone(), c.clone());
                }
                Some(m) => {
                    m.severity = m.severity.max(c.severity);
                    m.count += c.count;
                    if m.summary != c.summary {
                        m.summary = format!("{}; {}", m.summary, c.summary);
                        m.summary = cut(&m.summary);
                    }
                    m.detail.extend(c.detail.iter().cloned());
                    m.detail.truncate(MAX_DETAIL_LINES);
                }
            }
        }
    }
    out
}

/// Ceph's health document for a set of checks:
/// `{status, checks: {NAME: ...}, mutes: []}`.
pub fn health_json(checks: &BTreeMap<String, HealthCheck>) -> Value {
    let status = checks
        .values()
        .map(|c| c.severity)
        .max()
        .map(Severity::as_str)
        .unwrap_or("HEALTH_OK");
    let obj: serde_json::Map<String, Value> = checks
        .iter()
        .map(|(k, c)| (k.clone(), c.to_json()))
        .collect();
    json!({"status": status, "checks": obj, "mutes": []})
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_merge() {
        let a = parse_module_checks(&json!({
            "FOO_SLOW": {"severity": "warning", "summary": "foo is slow", "count": 2, "detail": ["a", "b"]}
        }))
        .unwrap();
        let b = parse_module_checks(&json!({
            "FOO_SLOW": {"severity": "error", "summary": "foo is slow", "detail": ["c"]}
        }))
        .unwrap();
        assert_eq!(b["FOO_SLOW"].count, 1);
        let m = merge([&a, &b]);
        assert_eq!(m["FOO_SLOW"].severity, Severity::Error);
        assert_eq!(m["FOO_SLOW"].count, 3);
        assert_eq!(m["FOO_SLOW"].detail, vec!["a", "b", "c"]);
        let h = health_json(&m);
        assert_eq!(h["status"], "HEALTH_ERR");
        assert_eq!(h["checks"]["FOO_SLOW"]["summary"]["count"], 3);
        assert_eq!(health_json(&BTreeMap::new())["status"], "HEALTH_OK");
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(
            parse_module_checks(&json!([])),
            Err(HealthInputError::NotADict)
        );
        assert!(matches!(
            parse_module_checks(&json!({"X": {"severity": "meh", "summary": "s"}})),
            Err(HealthInputError::Severity { .. })
        ));
        assert_eq!(
            parse_module_checks(&json!({"X": {"severity": "error"}})),
            Err(HealthInputError::Summary("X".into()))
        );
    }
}
