//! The `auth` commands, with Ceph's shapes: `get-or-create` and `get`
//! print a keyring (JSON: a list of `{entity, key, caps}`), `ls` prints
//! every entity (JSON: `{"auth_dump": [...]}`), `print-key` the bare key;
//! `caps`, `rm` and `add` change the database (committed like a map
//! epoch before the reply goes out).

use std::collections::BTreeMap;

use kalmar_auth::keyring::KeyringEntry;
use kalmar_auth::Keyring;
use serde_json::{json, Value};

use crate::commands::{CmdReply, Format};
use crate::errors::CmdError;
use crate::state::MonState;

pub const PREFIXES: &[&str] = &[
    "auth get-or-create",
    "auth get",
    "auth ls",
    "auth list",
    "auth caps",
    "auth rm",
    "auth del",
    "auth print-key",
    "auth print_key",
    "auth get-key",
    "auth add",
];

fn db_err(e: kalmar_auth::authdb::AuthDbError) -> CmdError {
    CmdError {
        retval: e.retval,
        msg: e.msg,
    }
}

fn entity_arg(cmd: &Value) -> Result<&str, CmdError> {
    cmd.get("entity")
        .and_then(Value::as_str)
        .ok_or_else(|| CmdError::inval("missing required argument 'entity'"))
}

/// Ceph's `caps` argument: `[SERVICE, CAP, SERVICE, CAP, ...]`.
pub fn caps_arg(cmd: &Value) -> Result<BTreeMap<String, String>, CmdError> {
    let list: Vec<&str> = match cmd.get("caps") {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().ok_or_else(|| CmdError::inval("caps must be strings")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(CmdError::inval("caps must be a list of SERVICE CAP pairs")),
    };
    if list.len() % 2 != 0 {
        return Err(CmdError::inval(
            "caps come in pairs: SERVICE 'CAP' (e.g. mon 'allow r')",
        ));
    }
    Ok(list
        .chunks(2)
        .map(|p| (p[0].to_string(), p[1].to_string()))
        .collect())
}

fn entry_json(name: &str, e: &KeyringEntry) -> Value {
    json!({ "entity": name, "key": e.key.to_printable(), "caps": e.caps })
}

fn keyring_reply(fmt: Format, name: &str, e: KeyringEntry) -> CmdReply {
    let v = json!([entry_json(name, &e)]);
    let mut ring = Keyring::default();
    ring.insert(name, e);
    CmdReply::data(fmt.render(&v, || ring.to_text()))
}

fn not_found(entity: &str) -> CmdError {
    CmdError {
        retval: kalmar_auth::authdb::ENOENT,
        msg: format!("failed to find {entity} in keyring"),
    }
}

/// Runs one `auth ...` command.
pub(crate) fn run(st: &mut MonState, prefix: &str, cmd: &Value, fmt: Format) -> Result<CmdReply, CmdError> {
    match prefix {
        "auth get-or-create" => {
            let entity = entity_arg(cmd)?;
            let caps = caps_arg(cmd)?;
            st.auth
                .edit(|db| db.get_or_create(entity, caps))
                .map_err(db_err)?;
            let e = st.auth.db().get(entity).ok_or_else(|| not_found(entity))?;
            Ok(keyring_reply(fmt, entity, e))
        }
        "auth get" => {
            let entity = entity_arg(cmd)?;
            let e = st.auth.db().get(entity).ok_or_else(|| not_found(entity))?;
            let mut r = keyring_reply(fmt, entity, e);
            r.outs = format!("exported keyring for {entity}");
            Ok(r)
        }
        "auth print-key" | "auth print_key" | "auth get-key" => {
            let entity = entity_arg(cmd)?;
            let e = st.auth.db().get(entity).ok_or_else(|| not_found(entity))?;
            let key = e.key.to_printable();
            Ok(CmdReply::data(
                fmt.render(&json!({ "key": key }), || format!("{key}\n")),
            ))
        }
        "auth ls" | "auth list" => {
            let db = st.auth.db();
            let dump: Vec<Value> = db.entries().map(|(n, e)| entry_json(n, &e)).collect();
            let mut r = CmdReply::data(fmt.render(&json!({ "auth_dump": dump }), || {
                let mut out = String::new();
                for (n, e) in db.entries() {
                    out.push_str(&format!("{n}\n\tkey: {}\n", e.key));
                    for (svc, cap) in &e.caps {
                        out.push_str(&format!("\tcaps: [{svc}] {cap}\n"));
                    }
                }
                out
            }));
            r.outs = "installed auth entries:\n".into();
            Ok(r)
        }
        "auth caps" => {
            let entity = entity_arg(cmd)?;
            let caps = caps_arg(cmd)?;
            st.auth.edit(|db| db.set_caps(entity, caps)).map_err(db_err)?;
            Ok(CmdReply::status(format!("updated caps for {entity}")))
        }
        "auth rm" | "auth del" => {
            let entity = entity_arg(cmd)?;
            if st.auth.db().get(entity).is_none() {
                return Ok(CmdReply::status(format!("entity {entity} does not exist")));
            }
            st.auth.edit(|db| Ok(db.remove(entity))).map_err(db_err)?;
            Ok(CmdReply::status("updated"))
        }
        "auth add" => {
            let entity = entity_arg(cmd)?;
            let mut caps = caps_arg(cmd)?;
            let text = cmd.get("keyring").and_then(Value::as_str);
            let key = match text {
                Some(t) => {
                    let ring = Keyring::parse(t)
                        .map_err(|e| CmdError::inval(format!("bad keyring: {e}")))?;
                    let e = ring.get(entity).ok_or_else(|| {
                        CmdError::inval(format!("the keyring holds no key for {entity}"))
                    })?;
                    if caps.is_empty() {
                        caps = e.caps.clone();
                    }
                    e.key.clone()
                }
                // Ceph makes a new key when none is given.
                None => kalmar_auth::CryptoKey::generate()
                    .map_err(|e| CmdError::inval(e.to_string()))?,
            };
            st.auth.edit(|db| db.add(entity, &key, caps)).map_err(db_err)?;
            Ok(CmdReply::status(format!("added key for {entity}")))
        }
        other => Err(CmdError::inval(format!("unknown auth command '{other}'"))),
    }
}
