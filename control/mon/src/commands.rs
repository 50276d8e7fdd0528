//! Admin commands as Ceph-style JSON dicts (`{"prefix": "osd pool create",
//! "pool": "rbd", "pg_num": 32}`), so the CLI stays thin and the mgr can
//! forward `mon_command` calls. Reads render plain text or JSON as the
//! dict's `format` asks; changes land in the pending epoch and the server
//! replies once it is committed.

use std::time::Instant;

use kalmar_maps::crush::map::WEIGHT_ONE;
use kalmar_maps::dump;
use kalmar_maps::{OsdId, PgId};
use serde_json::{json, Value};

use crate::errors::{CmdError, EINVAL};
use crate::pools::{self, PoolCreate};
use crate::state::MonState;
use crate::status::{osd_counts_line, osdmap_summary_json, status_json, status_plain};

/// A command's result: Ceph's `(retval, outs, outbuf)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CmdReply {
    pub retval: i32,
    pub outs: String,
    pub outbuf: Vec<u8>,
}

impl CmdReply {
    pub(crate) fn status(outs: impl Into<String>) -> Self {
        CmdReply {
            retval: 0,
            outs: outs.into(),
            outbuf: Vec::new(),
        }
    }

    pub(crate) fn data(outbuf: impl Into<Vec<u8>>) -> Self {
        CmdReply {
            retval: 0,
            outs: String::new(),
            outbuf: outbuf.into(),
        }
    }
}

impl From<CmdError> for CmdReply {
    fn from(e: CmdError) -> Self {
        CmdReply {
            retval: e.retval,
            outs: e.msg,
            outbuf: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Plain,
    Json,
    JsonPretty,
}

impl Format {
    fn of(cmd: &Value) -> Result<Format, CmdError> {
        match cmd.get("format").and_then(Value::as_str) {
            None | Some("plain") => Ok(Format::Plain),
            Some("json") => Ok(Format::Json),
            Some("json-pretty") => Ok(Format::JsonPretty),
            Some(other) => Err(CmdError::inval(format!(
                "unsupported format '{other}'; use plain, json or json-pretty"
            ))),
        }
    }

    /// JSON data, or `plain` when the format is plain.
    pub(crate) fn render(self, v: &Value, plain: impl FnOnce() -> String) -> Vec<u8> {
        match self {
            Format::Plain => plain().into_bytes(),
            Format::Json => format!("{v}\n").into_bytes(),
            Format::JsonPretty => {
                format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()).into_bytes()
            }
        }
    }

    /// Data that is JSON in every format (Ceph prints `mgr dump` so).
    pub(crate) fn json_always(self, v: &Value) -> Vec<u8> {
        match self {
            Format::Json => format!("{v}\n").into_bytes(),
            _ => format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()).into_bytes(),
        }
    }
}

pub(crate) fn arg_str<'a>(cmd: &'a Value, key: &str) -> Option<&'a str> {
    cmd.get(key).and_then(Value::as_str)
}

pub(crate) fn req_str<'a>(cmd: &'a Value, key: &str) -> Result<&'a str, CmdError> {
    arg_str(cmd, key).ok_or_else(|| CmdError::inval(format!("missing required argument '{key}'")))
}

/// A float given as a JSON number or a numeric string (Ceph's CephFloat).
pub(crate) fn req_f64(cmd: &Value, key: &str) -> Result<f64, CmdError> {
    let bad = |v: &Value| CmdError::inval(format!("unable to parse '{key}' value '{v}'"));
    match cmd.get(key) {
        None | Some(Value::Null) => Err(CmdError::inval(format!(
            "missing required argument '{key}'"
        ))),
        Some(v @ Value::Number(n)) => n.as_f64().ok_or_else(|| bad(v)),
        Some(v @ Value::String(s)) => s
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| bad(v)),
        Some(v) => Err(bad(v)),
    }
}

/// A number given as a JSON number or a numeric string.
pub(crate) fn arg_u32(cmd: &Value, key: &str) -> Result<Option<u32>, CmdError> {
    let bad = || CmdError::inval(format!("argument '{key}' must be a non-negative integer"));
    match cmd.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .map(Some)
            .ok_or_else(bad),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// OSD ids from `ids` (strings like `3` or `osd.3`, or numbers).
pub(crate) fn osd_ids(cmd: &Value) -> Result<Vec<OsdId>, CmdError> {
    let list = match cmd.get("ids") {
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        Some(v @ (Value::String(_) | Value::Number(_))) => vec![v.clone()],
        _ => return Err(CmdError::inval("missing OSD ids (e.g. `osd out 3`)")),
    };
    list.iter()
        .map(|v| {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let n = s.strip_prefix("osd.").unwrap_or(&s);
            n.parse::<OsdId>()
                .ok()
                .filter(|id| *id >= 0)
                .ok_or_else(|| {
                    CmdError::inval(format!("invalid OSD id '{s}' (expected N or osd.N)"))
                })
        })
        .collect()
}

/// Every prefix the mon answers, for `help` and the CLI's error messages.
pub const PREFIXES: &[&str] = &[
    "status",
    "health",
    "osd tree",
    "osd dump",
    "osd stat",
    "osd ls",
    "osd out",
    "osd in",
    "osd down",
    "osd set",
    "osd unset",
    "osd set-full-ratio",
    "osd set-backfillfull-ratio",
    "osd set-nearfull-ratio",
    "osd add-noup",
    "osd add-nodown",
    "osd add-noin",
    "osd add-noout",
    "osd rm-noup",
    "osd rm-nodown",
    "osd rm-noin",
    "osd rm-noout",
    "osd new",
    "osd pool create",
    "osd pool set",
    "osd pool ls",
    "osd pool rm",
    "osd pool set-quota",
    "osd pool get-quota",
    "osd map",
    "pg map",
    "pg stat",
    "pg dump",
    "osd crush dump",
    "osd ok-to-stop",
    "osd safe-to-destroy",
    // CRUSH administration and OSD removal: crushmon_cmds.rs.
    "mgr stat",
    "mgr dump",
    "mgr fail",
    "mgr module enable",
    "mgr module disable",
    "mgr module ls",
    "quorum_status",
    "mon stat",
    "mon dump",
    "auth get-or-create",
    "auth get",
    "auth ls",
    "auth caps",
    "auth rm",
    "auth print-key",
    "auth add",
];

/// Runs one command against the mon's state.
pub fn execute(st: &mut MonState, cmd: &Value, now: Instant, now_us: u64) -> CmdReply {
    match run(st, cmd, now, now_us) {
        Ok(r) => r,
        Err(e) => e.into(),
    }
}

fn run(st: &mut MonState, cmd: &Value, now: Instant, now_us: u64) -> Result<CmdReply, CmdError> {
    let prefix = req_str(cmd, "prefix")?;
    let fmt = Format::of(cmd)?;
    if let Some(r) = crate::crushmon_cmds::dispatch(st, prefix, cmd, fmt) {
        return r;
    }
    let osdmap = st.osd.map();
    if prefix.starts_with("auth ") {
        return crate::auth_cmds::run(st, prefix, cmd, fmt);
    }
    Ok(match prefix {
        "status" => CmdReply::data(st.with_status(now, now_us, |s| {
            fmt.render(&status_json(s), || status_plain(s))
        })),
        "health" => {
            let detail = arg_str(cmd, "detail") == Some("detail");
            let h = st.health(now);
            CmdReply::data(fmt.render(&h.to_json(detail), || {
                if detail {
                    h.detail_text()
                } else {
                    format!("{}\n", h.summary_line())
                }
            }))
        }
        "osd tree" => CmdReply::data(fmt.render(&dump::osd_tree_json(osdmap), || {
            dump::osd_tree_plain(osdmap)
        })),
        "osd dump" => CmdReply::data(fmt.render(&dump::osd_dump_json(osdmap), || {
            dump::osd_dump_plain(osdmap)
        })),
        "osd stat" => {
            let (up, inn) = (st.osd_up_since_us, st.osd_in_since_us);
            let v = osdmap_summary_json(osdmap, up, inn);
            CmdReply::data(fmt.render(&v, || {
                format!(
                    "{}; epoch: e{}\n",
                    osd_counts_line(osdmap, now_us, up, inn),
                    osdmap.epoch
                )
            }))
        }
        "osd ls" => {
            let ids: Vec<OsdId> = osdmap.existing_osds().collect();
            CmdReply::data(fmt.render(&json!(ids), || {
                ids.iter().map(|i| format!("{i}\n")).collect()
            }))
        }
        "osd out" | "osd in" | "osd down" => {
            let ids = osd_ids(cmd)?;
            for id in &ids {
                osdmap.existing_osd(*id)?;
            }
            let mut outs = String::new();
            for id in ids {
                outs.push_str(&match prefix {
                    "osd out" => st.osd.cmd_out(id)?,
                    "osd in" => st.osd.cmd_in(id, now)?,
                    _ => st.osd.cmd_down(id, now)?,
                });
            }
            CmdReply::status(outs)
        }
        "osd set-full-ratio" | "osd set-backfillfull-ratio" | "osd set-nearfull-ratio" => {
            CmdReply::status(st.osd.cmd_ratio(prefix, req_f64(cmd, "ratio")?)?)
        }
        "osd set" | "osd unset" => {
            CmdReply::status(st.osd.cmd_flag(req_str(cmd, "key")?, prefix == "osd set")?)
        }
        p if p.starts_with("osd add-no") || p.starts_with("osd rm-no") => {
            let (set, flag) = match p.strip_prefix("osd add-") {
                Some(f) => (true, f),
                None => (false, p.trim_start_matches("osd rm-")),
            };
            let ids = osd_ids(cmd)?;
            CmdReply::status(st.osd.cmd_osd_flag(&ids, flag, set)?)
        }
        "osd new" => {
            let uuid: uuid::Uuid = req_str(cmd, "uuid")?
                .parse()
                .map_err(|e| CmdError::inval(format!("invalid uuid: {e}")))?;
            let want = arg_u32(cmd, "id")?.map(|v| v as OsdId).unwrap_or(-1);
            let host = arg_str(cmd, "host").unwrap_or("");
            let class = arg_str(cmd, "crush_device_class").unwrap_or("");
            let id = st.osd.osd_mkfs_class(uuid, want, host, class, WEIGHT_ONE)?;
            CmdReply::data(fmt.render(&json!({ "osdid": id }), || format!("{id}\n")))
        }
        "osd pool create" => {
            let req = PoolCreate {
                name: req_str(cmd, "pool")?.to_string(),
                pg_num: arg_u32(cmd, "pg_num")?,
                size: arg_u32(cmd, "size")?,
                min_size: arg_u32(cmd, "min_size")?,
                crush_rule: arg_str(cmd, "rule").map(String::from),
            };
            if let Some(pgp) = arg_u32(cmd, "pgp_num")? {
                if Some(pgp) != req.pg_num {
                    return Err(CmdError::inval(
                        "pgp_num must equal pg_num at pool creation",
                    ));
                }
            }
            let opts = st.opts.clone();
            CmdReply::status(st.osd.edit_map(|m, e| pools::create(m, e, &opts, &req))?)
        }
        "osd pool set" => {
            let (pool, var) = (req_str(cmd, "pool")?, req_str(cmd, "var")?);
            let val = match cmd.get("val") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Err(CmdError::inval("missing required argument 'val'")),
            };
            CmdReply::status(st.osd.edit_map(|m, e| pools::set(m, e, pool, var, &val))?)
        }
        "osd pool set-quota" => {
            let (pool, field) = (req_str(cmd, "pool")?, req_str(cmd, "field")?);
            let val = match cmd.get("val") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Err(CmdError::inval("missing required argument 'val'")),
            };
            CmdReply::status(
                st.osd
                    .edit_map(|m, _| pools::set_quota(m, pool, field, &val))?,
            )
        }
        "osd pool get-quota" => {
            let (text, v) = pools::get_quota(osdmap, req_str(cmd, "pool")?)?;
            CmdReply::data(fmt.render(&v, || text))
        }
        "osd pool ls" => {
            let detail = arg_str(cmd, "detail") == Some("detail");
            let (text, v) = pools::ls(osdmap, detail);
            CmdReply::data(fmt.render(&v, || text))
        }
        "osd pool rm" | "osd pool delete" => {
            let pool = req_str(cmd, "pool")?;
            let pool2 = arg_str(cmd, "pool2");
            let sure = cmd
                .get("yes_i_really_really_mean_it")
                .and_then(Value::as_bool)
                == Some(true);
            let allowed = st.opts.mon_allow_pool_delete;
            CmdReply::status(
                st.osd
                    .edit_map(|m, _| pools::rm(m, pool, pool2, sure, allowed))?,
            )
        }
        "osd map" => {
            let (pool, object) = (req_str(cmd, "pool")?, req_str(cmd, "object")?);
            let m = osdmap.map_object(pool, object)?;
            let v = serde_json::to_value(&m).map_err(|e| CmdError::inval(e.to_string()))?;
            CmdReply::data(fmt.render(&v, || format!("{}\n", m.to_line())))
        }
        "pg stat" => {
            let (v, text) = st.pgmap.stat(osdmap);
            CmdReply::data(fmt.render(&v, || text))
        }
        "pg dump" => {
            let brief = match cmd.get("dumpcontents") {
                Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some("pgs_brief")),
                Some(Value::String(s)) => s == "pgs_brief",
                _ => false,
            };
            let (v, text) = st.pgmap.dump(osdmap, brief);
            CmdReply::data(fmt.render(&v, || text))
        }
        "pg map" => {
            let pgid: PgId = req_str(cmd, "pgid")?.parse().map_err(CmdError::from)?;
            let m = osdmap.map_pg(pgid)?;
            let v = serde_json::to_value(&m).map_err(|e| CmdError::inval(e.to_string()))?;
            CmdReply::data(fmt.render(&v, || format!("{}\n", m.to_line())))
        }
        "osd crush dump" => CmdReply::data(fmt.json_always(&dump::crush_dump_json(&osdmap.crush))),
        "osd ok-to-stop" => crate::osd_safety::cmd_ok_to_stop(osdmap, &st.pgmap, cmd, fmt)?,
        "osd safe-to-destroy" => {
            crate::osd_safety::cmd_safe_to_destroy(osdmap, &st.pgmap, cmd, fmt)?
        }
        "mgr stat" => CmdReply::data(fmt.json_always(&st.mgr.map().stat_json())),
        "mgr dump" => CmdReply::data(fmt.json_always(&st.mgr.map().dump_json())),
        "mgr fail" => CmdReply::status(st.mgr.cmd_fail(arg_str(cmd, "who"), now, now_us)?),
        "mgr module enable" => {
            let force = cmd.get("force").and_then(Value::as_bool) == Some(true)
                || arg_str(cmd, "force") == Some("--force");
            CmdReply::status(st.mgr.cmd_module_enable(req_str(cmd, "module")?, force)?)
        }
        "mgr module disable" => {
            CmdReply::status(st.mgr.cmd_module_disable(req_str(cmd, "module")?)?)
        }
        "mgr module ls" => CmdReply::data(fmt.json_always(&st.mgr.module_ls_json())),
        "quorum_status" => CmdReply::data(fmt.json_always(&st.quorum.quorum_status_json())),
        "mon stat" => {
            CmdReply::data(fmt.render(&st.quorum.mon_stat_json(), || st.quorum.mon_stat_plain()))
        }
        "mon dump" => {
            let mut r =
                CmdReply::data(fmt.render(&st.quorum.monmap_json(), || st.quorum.mon_dump_plain()));
            r.outs = format!("dumped monmap epoch {}", st.quorum.monmap_epoch);
            r
        }
        other => {
            return Err(CmdError::new(
                EINVAL,
                format!(
                    "unknown command '{other}'; the mon knows: {}",
                    PREFIXES.join(", ")
                ),
            ))
        }
    })
}

#[cfg(test)]
#[path = "commands_tests.rs"]
mod tests;
