//! The callers' `mgr` caps, checked on every command from an
//! authenticated session (cephx), as Ceph's DaemonServer does: a plugin
//! command needs what its COMMANDS entry declares as `perm` (`r`, `w`,
//! `x` letters; `rw` when it declares none, the MgrModule default) and is
//! matched by `allow module NAME PERMS` grants of its module; the native
//! commands need `r` (`pg stat`, `pg dump`, `df`, `osd df`, `status`,
//! `mgr module ls`, `mgr services`, `config get`, `config dump`) or `rw`
//! (`config set`, `config rm`). A refusal is Ceph's `EACCES` with
//! `access denied`, and a log line. Unauthenticated sessions (auth
//! `none`) are not checked.

use kalmar_auth::caps::MgrCommand;
use kalmar_auth::{AuthedPeer, Perms};
use serde_json::Value;

pub const EACCES: i32 = -13;

/// Native commands that only read.
const READ_ONLY: &[&str] = &[
    "pg stat",
    "pg dump",
    "df",
    "osd df",
    "status",
    "mgr module ls",
    "mgr services",
    "config get",
    "config dump",
];

/// What a native command needs.
pub fn native_need(prefix: &str) -> Perms {
    if READ_ONLY.contains(&prefix) {
        Perms::R
    } else {
        Perms::RW
    }
}

/// A declared `perm` (`r`, `rw`, `w`, `rwx`, `*`) as permissions; an
/// empty or unknown declaration needs `rw` (the MgrModule default).
pub fn declared_need(perm: &str) -> Perms {
    let perm = perm.trim();
    if perm == "*" {
        return Perms::ALL;
    }
    if perm.is_empty() || !perm.chars().all(|c| "rwx".contains(c)) {
        return Perms::RW;
    }
    perm.chars().fold(Perms::NONE, |p, c| {
        p.union(match c {
            'r' => Perms::R,
            'w' => Perms::W,
            _ => Perms::X,
        })
    })
}

/// The refusal text (and the log's).
pub const DENIED: &str = "access denied";

/// Checks an authenticated caller's mgr caps for command `prefix` (of
/// plugin `module`, if any) with the command dict `cmd` (its string
/// arguments can be pinned by `allow command ... with`). `Err` carries the
/// message to answer with `EACCES`.
pub fn check(
    peer: &AuthedPeer,
    prefix: &str,
    module: Option<&str>,
    cmd: &Value,
    need: Perms,
) -> Result<(), String> {
    let args: Vec<(&str, &str)> = cmd
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.as_str(), s)))
        .collect();
    let c = MgrCommand {
        prefix,
        module,
        args: &args,
        need,
    };
    if peer.caps.mgr.allows_mgr_command(&c) {
        return Ok(());
    }
    let entity = peer.entity.as_deref().unwrap_or("?");
    tracing::warn!(
        entity,
        prefix,
        module = module.unwrap_or("-"),
        need = %need,
        "mgr command refused by the caller's mgr caps"
    );
    Err(format!(
        "{DENIED}: {entity}'s mgr caps do not allow '{prefix}' (needs {need})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn peer(mgr_caps: &str) -> AuthedPeer {
        let texts: BTreeMap<String, String> = [("mgr".to_string(), mgr_caps.to_string())].into();
        AuthedPeer {
            entity: Some("client.t".into()),
            global_id: 1,
            caps: kalmar_auth::EntityCaps::parse(&texts).expect("caps"),
            caps_text: texts,
            connection_key: None,
        }
    }

    #[test]
    fn perms_of_commands() {
        assert_eq!(native_need("pg dump"), Perms::R);
        assert_eq!(native_need("config set"), Perms::RW);
        assert_eq!(declared_need("r"), Perms::R);
        assert_eq!(declared_need("rw"), Perms::RW);
        assert_eq!(declared_need("w"), Perms::W);
        assert_eq!(declared_need(""), Perms::RW);
        assert_eq!(declared_need("bogus"), Perms::RW);
        assert_eq!(declared_need("*"), Perms::ALL);
        assert!(declared_need("rwx").covers(Perms::X));
    }

    #[test]
    fn read_caps_refuse_writes() {
        let r = peer("allow r");
        let set = json!({"prefix": "config set", "who": "mgr"});
        assert!(check(&r, "df", None, &json!({}), Perms::R).is_ok());
        let e = check(&r, "config set", None, &set, Perms::RW).expect_err("write");
        assert!(e.starts_with(DENIED), "{e}");
        assert!(check(&peer("allow *"), "config set", None, &set, Perms::RW).is_ok());
        assert!(check(&r, "hello", Some("hello"), &json!({}), declared_need("r")).is_ok());
        assert!(check(
            &r,
            "hello set",
            Some("hello"),
            &json!({}),
            declared_need("rw")
        )
        .is_err());
        let pinned = peer("allow command \"config set\" with who=mgr");
        assert!(check(&pinned, "config set", None, &set, Perms::RW).is_ok());
        let other = json!({"prefix": "config set", "who": "osd"});
        assert!(check(&pinned, "config set", None, &other, Perms::RW).is_err());
        assert!(check(&peer(""), "df", None, &json!({}), Perms::R).is_err());
    }
}
