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
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| CmdError::inval("caps must be strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(CmdError::inval("caps must be a list of SERVICE CAP pairs")),
    };
    if !list.len().is_multiple_of(2) {
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
pub(crate) fn run(
    st: &mut MonState,
    prefix: &str,
    cmd: &Value,
    fmt: Format,
) -> Result<CmdReply, CmdError> {
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
            st.auth
                .edit(|db| db.set_caps(entity, caps))
                .map_err(db_err)?;
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
            st.auth
                .edit(|db| db.add(entity, &key, caps))
                .map_err(db_err)?;
            Ok(CmdReply::status(format!("added key for {entity}")))
        }
        other => Err(CmdError::inval(format!("unknown auth command '{other}'"))),
    }
}

/// Commands that only read (Ceph declares them `r`); every other command
/// changes something and needs `rw`.
const READ_ONLY: &[&str] = &[
    "status",
    "health",
    "osd tree",
    "osd dump",
    "osd stat",
    "osd ls",
    "osd pool ls",
    "osd pool get-quota",
    "osd map",
    "osd crush dump",
    "osd crush class ls",
    "osd crush class ls-osd",
    "osd crush rule ls",
    "osd crush rule list",
    "osd crush rule dump",
    "osd crush tree",
    "osd ok-to-stop",
    "osd safe-to-destroy",
    "pg map",
    "pg stat",
    "pg dump",
    "mgr stat",
    "mgr dump",
    "mgr module ls",
    "quorum_status",
    "mon stat",
    "mon dump",
];

/// Auth commands that reveal keys (`rx` in Ceph) and those that change
/// them (`rwx`).
const AUTH_READ: &[&str] = &[
    "auth get",
    "auth ls",
    "auth list",
    "auth print-key",
    "auth print_key",
    "auth get-key",
];

/// What a mon command needs of the caller's mon caps.
pub fn required_perms(prefix: &str) -> kalmar_auth::Perms {
    use kalmar_auth::Perms;
    if AUTH_READ.contains(&prefix) {
        Perms::R.union(Perms::X)
    } else if prefix.starts_with("auth ") {
        Perms::RWX
    } else if READ_ONLY.contains(&prefix) {
        Perms::R
    } else {
        Perms::RW
    }
}

/// Whether an authenticated caller with mon caps `caps` may run `cmd`;
/// the error is Ceph's `EACCES access denied`.
pub fn check_caps(caps: &kalmar_auth::Caps, cmd: &Value) -> Result<(), CmdError> {
    let prefix = cmd.get("prefix").and_then(Value::as_str).unwrap_or("");
    // String arguments (for `allow command X with k=v` and the bootstrap
    // profiles), and the mon cap a `caps` list asks for as `caps_mon`.
    let mut owned: Vec<(String, String)> = Vec::new();
    if let Some(obj) = cmd.as_object() {
        for (k, v) in obj {
            if let Some(s) = v.as_str() {
                owned.push((k.clone(), s.to_string()));
            }
        }
    }
    if let Ok(c) = caps_arg(cmd) {
        for (svc, cap) in c {
            owned.push((format!("caps_{svc}"), cap));
        }
    }
    let args: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let allowed = caps.allows_mon_command(&kalmar_auth::caps::MonCommand {
        prefix,
        args: &args,
        need: required_perms(prefix),
    });
    if allowed {
        Ok(())
    } else {
        Err(CmdError::new(crate::errors::EACCES, "access denied"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_auth::caps::parse_caps;
    use kalmar_auth::Service;

    fn allowed(cap: &str, cmd: Value) -> bool {
        check_caps(&parse_caps(Service::Mon, cap).expect("caps"), &cmd).is_ok()
    }

    #[test]
    fn command_caps() {
        assert!(allowed("allow r", json!({"prefix": "status"})));
        assert!(!allowed(
            "allow r",
            json!({"prefix": "osd pool create", "pool": "x"})
        ));
        assert!(allowed(
            "allow rw",
            json!({"prefix": "osd pool create", "pool": "x"})
        ));
        // Keys need x; changing them rwx.
        assert!(!allowed(
            "allow rw",
            json!({"prefix": "auth get", "entity": "client.a"})
        ));
        assert!(allowed(
            "allow rx",
            json!({"prefix": "auth get", "entity": "client.a"})
        ));
        assert!(!allowed(
            "allow rx",
            json!({"prefix": "auth rm", "entity": "client.a"})
        ));
        assert!(allowed(
            "allow *",
            json!({"prefix": "auth rm", "entity": "client.a"})
        ));
        let boot = json!({"prefix": "auth get-or-create", "entity": "osd.3",
                          "caps": ["mon", "allow profile osd", "osd", "allow *"]});
        assert!(allowed("profile bootstrap-osd", boot));
        let grab = json!({"prefix": "auth get-or-create", "entity": "client.admin"});
        assert!(!allowed("profile bootstrap-osd", grab));
        assert!(allowed(
            "allow command \"osd pool set\" with pool=a",
            json!({"prefix": "osd pool set", "pool": "a", "var": "size", "val": "2"})
        ));
        assert!(!allowed(
            "allow command \"osd pool set\" with pool=a",
            json!({"prefix": "osd pool set", "pool": "b", "var": "size", "val": "2"})
        ));
        assert_eq!(
            check_caps(&Default::default(), &json!({"prefix": "status"}))
                .expect_err("no caps")
                .retval,
            crate::errors::EACCES
        );
    }
}
