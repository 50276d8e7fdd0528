//! Commands the mgr answers: its native ones (`pg stat`, `pg dump`, `df`,
//! `osd df`, the data part of `status`, `mgr module ls`, `mgr services`)
//! and `tell mgr <words>`, which tries the native commands first and then
//! the plugin whose COMMANDS match.

use std::sync::Arc;

use kalmar_maps::time::now_us;
use serde_json::{json, Value};

use kalmar_auth::AuthedPeer;

use crate::cmdcaps;
use crate::daemon::MgrShared;
use crate::pgmap::render::{self, DumpWhat};
use crate::pgmap::space;

const EINVAL: i32 = -22;
const EAGAIN: i32 = -11;
const EIO: i32 = -5;

/// Ceph's `(retval, outs, outbuf)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdReply {
    pub retval: i32,
    pub outs: String,
    pub outbuf: Vec<u8>,
}

impl CmdReply {
    fn err(retval: i32, outs: impl Into<String>) -> Self {
        CmdReply {
            retval,
            outs: outs.into(),
            outbuf: Vec::new(),
        }
    }

    fn data(outbuf: impl Into<Vec<u8>>) -> Self {
        CmdReply {
            retval: 0,
            outs: String::new(),
            outbuf: outbuf.into(),
        }
    }
}

/// The native commands, longest prefixes first matter only for lookup.
pub const NATIVE: &[&str] = &[
    "pg stat",
    "pg dump",
    "df",
    "osd df",
    "status",
    "mgr module ls",
    "mgr services",
    "config set",
    "config get",
    "config rm",
    "config dump",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Plain,
    Json,
    JsonPretty,
}

impl Format {
    fn of(cmd: &Value) -> Result<Format, String> {
        match cmd.get("format").and_then(Value::as_str) {
            None | Some("plain") => Ok(Format::Plain),
            Some("json") => Ok(Format::Json),
            Some("json-pretty") => Ok(Format::JsonPretty),
            Some(f) => Err(format!(
                "unsupported format '{f}'; use plain, json or json-pretty"
            )),
        }
    }

    fn render(self, v: &Value, plain: String) -> Vec<u8> {
        match self {
            Format::Plain => plain.into_bytes(),
            Format::Json => format!("{v}\n").into_bytes(),
            Format::JsonPretty => {
                format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()).into_bytes()
            }
        }
    }

    fn json_always(self, v: &Value) -> Vec<u8> {
        match self {
            Format::Json => format!("{v}\n").into_bytes(),
            _ => format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()).into_bytes(),
        }
    }
}

/// Turns `tell mgr` words into a native command dict, if they name one:
/// `pg dump pgs_brief` -> `{"prefix": "pg dump", "dumpcontents": ["pgs_brief"]}`.
pub fn native_from_words(words: &[String]) -> Option<Result<Value, String>> {
    let (prefix, n) = NATIVE
        .iter()
        .filter_map(|p| {
            let pw: Vec<&str> = p.split(' ').collect();
            (words.len() >= pw.len() && words[..pw.len()].iter().zip(&pw).all(|(a, b)| a == b))
                .then_some((*p, pw.len()))
        })
        .max_by_key(|(_, n)| *n)?;
    let rest = &words[n..];
    let mut cmd = json!({"prefix": prefix});
    let bad = |a: &String| Err(format!("{prefix}: unexpected argument '{a}'"));
    match (prefix, rest) {
        (_, []) => {}
        ("pg dump", [what]) if DumpWhat::parse(what).is_some() => {
            cmd["dumpcontents"] = json!([what]);
        }
        ("df", [d]) if d == "detail" => cmd["detail"] = json!("detail"),
        ("config set", [who, name, value]) => {
            cmd["who"] = json!(who);
            cmd["name"] = json!(name);
            cmd["value"] = json!(value);
        }
        ("config get" | "config rm", [who, name]) => {
            cmd["who"] = json!(who);
            cmd["key"] = json!(name);
            cmd["name"] = json!(name);
        }
        (_, [a, ..]) => return Some(bad(a)),
    }
    Some(Ok(cmd))
}

fn dump_what(cmd: &Value) -> Result<DumpWhat, String> {
    let raw = match cmd.get("dumpcontents") {
        Some(Value::Array(a)) => a.first().and_then(Value::as_str),
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    match raw {
        None => Ok(DumpWhat::All),
        Some(w) => DumpWhat::parse(w).ok_or_else(|| {
            format!("pg dump: unknown '{w}' (use all, summary, pgs, pgs_brief, osds, pools)")
        }),
    }
}

/// Whether an authenticated `caller` may run native command `cmd` (an
/// unknown prefix is left to [`native_cmd`], which refuses it).
fn native_allowed(caller: Option<&AuthedPeer>, cmd: &Value) -> Result<(), CmdReply> {
    let (Some(peer), Some(prefix)) = (caller, cmd.get("prefix").and_then(Value::as_str)) else {
        return Ok(());
    };
    if !NATIVE.contains(&prefix) {
        return Ok(());
    }
    cmdcaps::check(peer, prefix, None, cmd, cmdcaps::native_need(prefix))
        .map_err(|e| CmdReply::err(cmdcaps::EACCES, e))
}

/// Runs one command dict (`cmd` is its JSON text) for `caller` (`None`:
/// an unauthenticated session, auth off), checking the caller's mgr caps.
pub async fn run(
    shared: &Arc<MgrShared>,
    cmd: &str,
    inbuf: Vec<u8>,
    caller: Option<&AuthedPeer>,
) -> CmdReply {
    let cmd: Value = match serde_json::from_str(cmd) {
        Ok(v @ Value::Object(_)) => v,
        _ => return CmdReply::err(EINVAL, format!("command is not a JSON object: {cmd}")),
    };
    let fmt = match Format::of(&cmd) {
        Ok(f) => f,
        Err(e) => return CmdReply::err(EINVAL, e),
    };
    let Some(prefix) = cmd.get("prefix").and_then(Value::as_str) else {
        return CmdReply::err(EINVAL, "command has no prefix");
    };
    if prefix == "tell" {
        let words: Vec<String> = cmd["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(String::from))
            .collect();
        return match native_from_words(&words) {
            Some(Ok(mut native)) => {
                if let Err(r) = native_allowed(caller, &native) {
                    return r;
                }
                native["format"] = cmd.get("format").cloned().unwrap_or(Value::Null);
                native_cmd(shared, &native, fmt)
            }
            Some(Err(e)) => CmdReply::err(EINVAL, e),
            None => plugin_cmd(shared, words, &cmd, inbuf, caller).await,
        };
    }
    if let Err(r) = native_allowed(caller, &cmd) {
        return r;
    }
    native_cmd(shared, &cmd, fmt)
}

fn native_cmd(shared: &MgrShared, cmd: &Value, fmt: Format) -> CmdReply {
    let prefix = cmd["prefix"].as_str().unwrap_or_default();
    if !NATIVE.contains(&prefix) {
        return CmdReply::err(
            EINVAL,
            format!(
                "unknown mgr command '{prefix}'; native: {}; plugin commands go through `tell mgr`",
                NATIVE.join(", ")
            ),
        );
    }
    let Some(active) = shared.active() else {
        return CmdReply::err(EAGAIN, format!("mgr.{} is not the active mgr", shared.name));
    };
    let map = shared.osdmap();
    let now = now_us();
    match prefix {
        "mgr module ls" => match active.py() {
            Some(py) => CmdReply::data(fmt.json_always(&py.module_ls())),
            None => CmdReply::err(
                EAGAIN,
                active
                    .py_error
                    .lock()
                    .clone()
                    .unwrap_or_else(|| "the plugins are still starting".into()),
            ),
        },
        "config dump" => match active.py() {
            Some(py) => {
                let all = py.config_all();
                let mut text = format!("{:<6}{:<14}{:<44}{}\n", "WHO", "LEVEL", "OPTION", "VALUE");
                for (k, v) in &all {
                    text.push_str(&format!("{:<6}{:<14}{:<44}{v}\n", "mgr", "advanced", k));
                }
                CmdReply::data(fmt.render(&crate::host::config_dump_json(&all), text))
            }
            None => CmdReply::err(EAGAIN, "the mgr's plugins are not running"),
        },
        "config set" | "config get" | "config rm" => match active.py() {
            Some(py) => module_option_cmd(&py, prefix, cmd, fmt),
            None => CmdReply::err(EAGAIN, "the mgr's plugins are not running"),
        },
        "mgr services" => {
            let services = active.py().map(|p| p.services()).unwrap_or_default();
            CmdReply::data(fmt.json_always(&json!(services)))
        }
        _ => {
            let pm = active.pgmap.lock();
            let (v, text) = match prefix {
                "pg stat" => render::pg_stat(&pm, &map, now),
                "pg dump" => match dump_what(cmd) {
                    Ok(w) => render::pg_dump(&pm, &map, now, w),
                    Err(e) => return CmdReply::err(EINVAL, e),
                },
                "df" => space::df(&pm, &map, now, cmd["detail"] == "detail"),
                "osd df" => space::osd_df(&pm, &map),
                _ => render::status_data(&pm, &map, now),
            };
            CmdReply::data(fmt.render(&v, text))
        }
    }
}

/// `config set|get|rm mgr mgr/MODULE/KEY [VALUE]`: a module option, as
/// Ceph admins set them (`ceph config set mgr mgr/alerts/smtp_host ...`).
/// Checked against the module's MODULE_OPTIONS; the module's
/// `config_notify()` runs after a change. Other options are the mon's.
fn module_option_cmd(
    py: &kalmar_mgr_py::PyModules,
    prefix: &str,
    cmd: &Value,
    fmt: Format,
) -> CmdReply {
    let who = cmd["who"].as_str().unwrap_or_default();
    let name = cmd["name"]
        .as_str()
        .or_else(|| cmd["key"].as_str())
        .unwrap_or_default();
    let parsed = name
        .strip_prefix("mgr/")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(m, k)| !m.is_empty() && !k.is_empty());
    let Some((module, key)) = parsed.filter(|_| who == "mgr" || who.starts_with("mgr.")) else {
        return CmdReply::err(
            EINVAL,
            format!(
                "{prefix}: the mgr holds only module options: use `{prefix} mgr mgr/MODULE/OPTION`"
            ),
        );
    };
    match prefix {
        "config get" => match py.get_module_option(module, key) {
            Ok(v) => CmdReply::data(fmt.render(&json!(v), format!("{}\n", v.unwrap_or_default()))),
            Err(e) => CmdReply::err(EINVAL, e.to_string()),
        },
        _ => {
            let value = if prefix == "config rm" {
                None
            } else {
                match cmd["value"].as_str() {
                    Some(v) => Some(v),
                    None => return CmdReply::err(EINVAL, "config set: no value given"),
                }
            };
            match py.set_module_option(module, key, value) {
                Ok(()) => CmdReply::data(Vec::new()),
                Err(e) => CmdReply::err(EINVAL, e.to_string()),
            }
        }
    }
}

async fn plugin_cmd(
    shared: &MgrShared,
    words: Vec<String>,
    cmd: &Value,
    inbuf: Vec<u8>,
    caller: Option<&AuthedPeer>,
) -> CmdReply {
    let Some(active) = shared.active() else {
        return CmdReply::err(EAGAIN, format!("mgr.{} is not the active mgr", shared.name));
    };
    let Some(py) = active.py() else {
        return CmdReply::err(EAGAIN, "the mgr's plugins are not running");
    };
    let format = cmd.get("format").and_then(Value::as_str).map(String::from);
    let inbuf = (!inbuf.is_empty()).then(|| String::from_utf8_lossy(&inbuf).into_owned());
    // The caps check runs once the command matched: it needs the plugin
    // module and the `perm` its COMMANDS entry declares.
    let allow = |module: &str, desc: &kalmar_mgr_py::CommandDesc, bound: &Value| match caller {
        None => Ok(()),
        Some(peer) => cmdcaps::check(
            peer,
            &desc.prefix_string(),
            Some(module),
            bound,
            cmdcaps::declared_need(&desc.perm),
        )
        .map_err(|e| kalmar_mgr_py::CommandResult::error(cmdcaps::EACCES, e)),
    };
    let ticket = match py.dispatch_command_checked(&words, format.as_deref(), inbuf, allow) {
        Ok(t) => t,
        Err(r) => return CmdReply::err(r.retval, r.stderr),
    };
    // The wait is bounded by the plugin host's command_timeout.
    match tokio::task::spawn_blocking(move || ticket.wait()).await {
        Ok(r) => CmdReply {
            retval: r.retval,
            outs: r.stderr,
            outbuf: r.stdout.into_bytes(),
        },
        Err(e) => CmdReply::err(EIO, format!("command thread failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn tell_words_to_native_dicts() {
        assert_eq!(
            native_from_words(&w("pg dump pgs_brief")).map(Result::ok),
            Some(Some(
                json!({"prefix": "pg dump", "dumpcontents": ["pgs_brief"]})
            ))
        );
        assert_eq!(
            native_from_words(&w("df detail")).map(Result::ok),
            Some(Some(json!({"prefix": "df", "detail": "detail"})))
        );
        assert_eq!(
            native_from_words(&w("osd df")).map(Result::ok),
            Some(Some(json!({"prefix": "osd df"})))
        );
        assert!(matches!(
            native_from_words(&w("pg dump bogus")),
            Some(Err(_))
        ));
        assert!(native_from_words(&w("hello world")).is_none());
        assert!(native_from_words(&w("pg")).is_none());
    }
}
