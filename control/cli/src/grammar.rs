//! Ceph's command grammar for what the mon answers: words on the command
//! line become a JSON command dict (`osd pool create rbd 32 --size 2` ->
//! `{"prefix": "osd pool create", "pool": "rbd", "pg_num": 32, "size": 2}`).
//! Pure: parsed and checked here, sent by [`crate::moncmd`].

use serde_json::{json, Map, Value};

/// A usage error: what was wrong and the form expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}\nusage: kalmar {usage}")]
pub struct UsageError {
    pub msg: String,
    pub usage: &'static str,
}

/// The mon commands the CLI knows, with their usage lines.
pub const USAGE: &[(&str, &str)] = &[
    ("status", "status | -s"),
    ("health", "health [detail]"),
    ("osd tree", "osd tree"),
    ("osd dump", "osd dump"),
    ("osd stat", "osd stat"),
    ("osd ls", "osd ls"),
    ("osd out", "osd out ID [ID...]"),
    ("osd in", "osd in ID [ID...]"),
    ("osd down", "osd down ID [ID...]"),
    ("osd set", "osd set noout|noup|nodown|noin|nobackfill|norebalance|norecover|noscrub|nodeep-scrub|pause"),
    ("osd unset", "osd unset FLAG"),
    ("osd set-full-ratio", "osd set-full-ratio RATIO"),
    ("osd set-backfillfull-ratio", "osd set-backfillfull-ratio RATIO"),
    ("osd set-nearfull-ratio", "osd set-nearfull-ratio RATIO"),
    ("osd add-noup", "osd add-noup ID [ID...]"),
    ("osd add-nodown", "osd add-nodown ID [ID...]"),
    ("osd add-noin", "osd add-noin ID [ID...]"),
    ("osd add-noout", "osd add-noout ID [ID...]"),
    ("osd rm-noup", "osd rm-noup ID [ID...]"),
    ("osd rm-nodown", "osd rm-nodown ID [ID...]"),
    ("osd rm-noin", "osd rm-noin ID [ID...]"),
    ("osd rm-noout", "osd rm-noout ID [ID...]"),
    ("osd new", "osd new UUID [ID]"),
    (
        "osd pool create",
        "osd pool create NAME [PG_NUM [PGP_NUM]] [replicated] [--size N] [--min-size N]",
    ),
    ("osd pool set", "osd pool set NAME size|min_size|pg_num|pgp_num|crush_rule VALUE"),
    ("osd pool ls", "osd pool ls [detail]"),
    ("osd pool set-quota", "osd pool set-quota NAME max_objects|max_bytes VALUE"),
    ("osd pool get-quota", "osd pool get-quota NAME"),
    ("osd pool rm", "osd pool rm NAME NAME --yes-i-really-really-mean-it"),
    ("osd map", "osd map POOL OBJECT"),
    ("osd crush dump", "osd crush dump"),
    ("pg map", "pg map PGID"),
    ("pg stat", "pg stat"),
    ("pg dump", "pg dump [all|summary|pgs|pgs_brief|osds|pools]"),
    ("mgr stat", "mgr stat"),
    ("mgr dump", "mgr dump"),
    ("mgr fail", "mgr fail [NAME]"),
    ("quorum_status", "quorum_status"),
    ("mon stat", "mon stat"),
    ("mon dump", "mon dump"),
    ("mon add", "mon add NAME IP:PORT"),
    ("mon rm", "mon rm NAME"),
    (
        "auth get-or-create",
        "auth get-or-create ENTITY [SERVICE 'CAPS']... [-o FILE]",
    ),
    ("auth get", "auth get ENTITY [-o FILE]"),
    ("auth ls", "auth ls"),
    ("auth list", "auth list"),
    ("auth caps", "auth caps ENTITY SERVICE 'CAPS' [SERVICE 'CAPS']..."),
    ("auth rm", "auth rm ENTITY"),
    ("auth del", "auth del ENTITY"),
    ("auth print-key", "auth print-key ENTITY"),
    ("auth print_key", "auth print_key ENTITY"),
    ("auth get-key", "auth get-key ENTITY"),
    ("auth add", "auth add ENTITY [SERVICE 'CAPS']... [-i KEYRING]"),
];

/// Dict keys the CLI handles itself and strips before sending: a file the
/// reply's data goes to (`-o`), a keyring file read into `keyring` (`-i`).
pub const OUTPUT_FILE: &str = "_output_file";
pub const INPUT_FILE: &str = "_input_file";

/// An entity name as the auth commands take it (`TYPE.ID`; `mon.` too).
fn entity(prefix: &str, e: &str) -> Result<(), UsageError> {
    if kalmar_auth::keyring::valid_entity_name(e) {
        Ok(())
    } else {
        Err(err(
            prefix,
            format!("'{e}' is not an entity name (TYPE.ID, e.g. client.foo)"),
        ))
    }
}

fn caps_pairs(prefix: &str, rest: &[String], required: bool) -> Result<Value, UsageError> {
    if !rest.len().is_multiple_of(2) {
        return Err(err(
            prefix,
            "caps come in pairs: SERVICE 'CAPS' (e.g. mon 'allow r')",
        ));
    }
    if required && rest.is_empty() {
        return Err(err(prefix, "missing caps"));
    }
    for pair in rest.chunks(2) {
        if !["mon", "osd", "mgr", "mds"].contains(&pair[0].as_str()) {
            return Err(err(
                prefix,
                format!("unknown service '{}' (mon, osd, mgr, mds)", pair[0]),
            ));
        }
    }
    Ok(json!(rest))
}

fn parse_auth(
    prefix: &str,
    rest: &mut Vec<String>,
    cmd: &mut Map<String, Value>,
) -> Result<(), UsageError> {
    if matches!(prefix, "auth get-or-create" | "auth get") {
        if let Some(o) = take_opt(rest, &["-o", "--out-file"], prefix)? {
            cmd.insert(OUTPUT_FILE.into(), json!(o));
        }
    }
    if prefix == "auth add" {
        if let Some(i) = take_opt(rest, &["-i", "--in-file"], prefix)? {
            cmd.insert(INPUT_FILE.into(), json!(i));
        }
    }
    if matches!(prefix, "auth ls" | "auth list") {
        return no_more(prefix, rest);
    }
    let (name, tail) = rest
        .split_first()
        .ok_or_else(|| err(prefix, "missing ENTITY"))?;
    entity(prefix, name)?;
    cmd.insert("entity".into(), json!(name));
    match prefix {
        "auth get-or-create" | "auth add" => {
            cmd.insert("caps".into(), caps_pairs(prefix, tail, false)?);
        }
        "auth caps" => {
            cmd.insert("caps".into(), caps_pairs(prefix, tail, true)?);
        }
        _ => no_more(prefix, tail)?,
    }
    Ok(())
}

fn usage_of(prefix: &str) -> &'static str {
    USAGE
        .iter()
        .find(|(p, _)| *p == prefix)
        .map(|(_, u)| *u)
        .unwrap_or("<command> (see kalmar --help)")
}

fn err(prefix: &str, msg: impl Into<String>) -> UsageError {
    UsageError {
        msg: msg.into(),
        usage: usage_of(prefix),
    }
}

/// Takes `--name VALUE` / `--name=VALUE` options out of `args`.
fn take_opt(
    args: &mut Vec<String>,
    names: &[&str],
    prefix: &str,
) -> Result<Option<String>, UsageError> {
    let mut found = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].clone();
        if names.contains(&a.as_str()) {
            let v = args
                .get(i + 1)
                .cloned()
                .ok_or_else(|| err(prefix, format!("{a} needs a value")))?;
            found = Some(v);
            args.drain(i..i + 2);
        } else if let Some((k, v)) = a.split_once('=').filter(|(k, _)| names.contains(k)) {
            let _ = k;
            found = Some(v.to_string());
            args.remove(i);
        } else {
            i += 1;
        }
    }
    Ok(found)
}

fn take_flag(args: &mut Vec<String>, name: &str) -> bool {
    let before = args.len();
    args.retain(|a| a != name);
    args.len() != before
}

fn uint(prefix: &str, what: &str, v: &str) -> Result<u64, UsageError> {
    v.parse::<u64>().map_err(|_| {
        err(
            prefix,
            format!("{what} must be a non-negative integer, got '{v}'"),
        )
    })
}

fn no_more(prefix: &str, rest: &[String]) -> Result<(), UsageError> {
    match rest.first() {
        None => Ok(()),
        Some(extra) => Err(err(prefix, format!("unexpected argument '{extra}'"))),
    }
}

/// Parses the words of a mon command into its JSON dict.
pub fn parse(words: &[String]) -> Result<Value, UsageError> {
    if let Some(r) = crate::crush_grammar::parse(words) {
        return r;
    }
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    // The longest known prefix wins.
    let (prefix, n) = USAGE
        .iter()
        .map(|(p, _)| *p)
        .filter_map(|p| {
            let pw: Vec<&str> = p.split(' ').collect();
            (w.len() >= pw.len() && w[..pw.len()] == pw[..]).then_some((p, pw.len()))
        })
        .max_by_key(|(_, n)| *n)
        .or(match w.as_slice() {
            ["-s", ..] => Some(("status", 1)),
            ["osd", "pool", "delete", ..] => Some(("osd pool rm", 3)),
            _ => None,
        })
        .ok_or_else(|| UsageError {
            msg: format!("unknown command '{}'", w.join(" ")),
            usage: "<command>; known: status, health, quorum_status, mon ..., osd ..., pg ..., mgr ..., daemon, rados, image, vstart, vstop",
        })?;
    let mut rest: Vec<String> = words[n..].to_vec();
    let mut cmd = Map::new();
    cmd.insert("prefix".into(), json!(prefix));
    if prefix.starts_with("auth ") {
        parse_auth(prefix, &mut rest, &mut cmd)?;
        return Ok(Value::Object(cmd));
    }
    match prefix {
        "status" | "osd tree" | "osd dump" | "osd stat" | "osd ls" | "osd crush dump"
        | "pg stat" | "mgr stat" | "mgr dump" | "quorum_status" | "mon stat" | "mon dump" => {
            no_more(prefix, &rest)?
        }
        "mon add" => match rest.as_slice() {
            [name, addr] => {
                cmd.insert("name".into(), json!(name));
                cmd.insert("addr".into(), json!(addr));
            }
            _ => return Err(err(prefix, "expected a mon name and its address")),
        },
        "mon rm" => match rest.as_slice() {
            [name] => {
                cmd.insert("name".into(), json!(name));
            }
            _ => return Err(err(prefix, "expected a mon name")),
        },
        "health" => match rest.as_slice() {
            [] => {}
            [d] if d == "detail" => {
                cmd.insert("detail".into(), json!("detail"));
            }
            _ => return Err(err(prefix, format!("unexpected argument '{}'", rest[0]))),
        },
        "osd out" | "osd in" | "osd down" | "osd add-noup" | "osd add-nodown" | "osd add-noin"
        | "osd add-noout" | "osd rm-noup" | "osd rm-nodown" | "osd rm-noin" | "osd rm-noout" => {
            if rest.is_empty() {
                return Err(err(prefix, "missing OSD id"));
            }
            for id in &rest {
                let n = id.strip_prefix("osd.").unwrap_or(id);
                if n.parse::<u32>().is_err() {
                    return Err(err(
                        prefix,
                        format!("invalid OSD id '{id}' (expected N or osd.N)"),
                    ));
                }
            }
            cmd.insert("ids".into(), json!(rest));
        }
        "osd set" | "osd unset" => match rest.as_slice() {
            [flag] => {
                cmd.insert("key".into(), json!(flag));
            }
            [] => return Err(err(prefix, "missing flag")),
            _ => return Err(err(prefix, format!("unexpected argument '{}'", rest[1]))),
        },
        "osd set-full-ratio" | "osd set-backfillfull-ratio" | "osd set-nearfull-ratio" => {
            match rest.as_slice() {
                [r] => match r.parse::<f64>() {
                    Ok(v) if (0.0..=1.0).contains(&v) => {
                        cmd.insert("ratio".into(), json!(v));
                    }
                    _ => return Err(err(prefix, format!("RATIO must be in 0.0..1.0, not '{r}'"))),
                },
                [] => return Err(err(prefix, "missing RATIO")),
                _ => return Err(err(prefix, format!("unexpected argument '{}'", rest[1]))),
            }
        }
        "osd new" => match rest.as_slice() {
            [uuid] => {
                cmd.insert("uuid".into(), json!(uuid));
            }
            [uuid, id] => {
                cmd.insert("uuid".into(), json!(uuid));
                cmd.insert("id".into(), json!(uint(prefix, "ID", id)?));
            }
            _ => return Err(err(prefix, "expected a uuid and an optional id")),
        },
        "osd pool create" => {
            let size = take_opt(&mut rest, &["--size"], prefix)?;
            let min_size = take_opt(&mut rest, &["--min-size", "--min_size"], prefix)?;
            let rule = take_opt(&mut rest, &["--rule", "--crush-rule"], prefix)?;
            if let Some(pos) = rest.iter().position(|a| a == "replicated") {
                rest.remove(pos);
            }
            if let Some(bad) = rest.iter().find(|a| a.starts_with("--") || *a == "erasure") {
                return Err(err(prefix, format!("unsupported option '{bad}'")));
            }
            let name = rest
                .first()
                .ok_or_else(|| err(prefix, "missing pool name"))?;
            cmd.insert("pool".into(), json!(name));
            if let Some(pg) = rest.get(1) {
                cmd.insert("pg_num".into(), json!(uint(prefix, "PG_NUM", pg)?));
            }
            if let Some(pgp) = rest.get(2) {
                cmd.insert("pgp_num".into(), json!(uint(prefix, "PGP_NUM", pgp)?));
            }
            no_more(prefix, rest.get(3..).unwrap_or(&[]))?;
            if let Some(s) = size {
                cmd.insert("size".into(), json!(uint(prefix, "--size", &s)?));
            }
            if let Some(s) = min_size {
                cmd.insert("min_size".into(), json!(uint(prefix, "--min-size", &s)?));
            }
            if let Some(r) = rule {
                cmd.insert("rule".into(), json!(r));
            }
        }
        "osd pool set" => match rest.as_slice() {
            [pool, var, val] => {
                cmd.insert("pool".into(), json!(pool));
                cmd.insert("var".into(), json!(var));
                cmd.insert("val".into(), json!(val));
            }
            _ => return Err(err(prefix, "expected a pool, a variable and a value")),
        },
        "osd pool set-quota" => match rest.as_slice() {
            [pool, field, val] => {
                cmd.insert("pool".into(), json!(pool));
                cmd.insert("field".into(), json!(field));
                cmd.insert("val".into(), json!(val));
            }
            _ => {
                return Err(err(
                    prefix,
                    "expected a pool, max_objects|max_bytes and a value",
                ))
            }
        },
        "osd pool get-quota" => match rest.as_slice() {
            [pool] => {
                cmd.insert("pool".into(), json!(pool));
            }
            _ => return Err(err(prefix, "expected a pool name")),
        },
        "osd pool ls" => match rest.as_slice() {
            [] => {}
            [d] if d == "detail" => {
                cmd.insert("detail".into(), json!("detail"));
            }
            _ => return Err(err(prefix, format!("unexpected argument '{}'", rest[0]))),
        },
        "osd pool rm" => {
            let sure = take_flag(&mut rest, "--yes-i-really-really-mean-it");
            match rest.as_slice() {
                [pool] => {
                    cmd.insert("pool".into(), json!(pool));
                }
                [pool, pool2] => {
                    cmd.insert("pool".into(), json!(pool));
                    cmd.insert("pool2".into(), json!(pool2));
                }
                _ => return Err(err(prefix, "expected the pool name twice")),
            }
            cmd.insert("yes_i_really_really_mean_it".into(), json!(sure));
        }
        "osd map" => match rest.as_slice() {
            [pool, object] => {
                cmd.insert("pool".into(), json!(pool));
                cmd.insert("object".into(), json!(object));
            }
            _ => return Err(err(prefix, "expected a pool and an object name")),
        },
        "pg map" => match rest.as_slice() {
            [pgid] => {
                cmd.insert("pgid".into(), json!(pgid));
            }
            _ => return Err(err(prefix, "expected one PGID such as 1.1f")),
        },
        "pg dump" => {
            if !rest.is_empty() {
                cmd.insert("dumpcontents".into(), json!(rest));
            }
        }
        "mgr fail" => match rest.as_slice() {
            [] => {}
            [who] => {
                cmd.insert("who".into(), json!(who));
            }
            _ => return Err(err(prefix, format!("unexpected argument '{}'", rest[1]))),
        },
        _ => no_more(prefix, &rest)?,
    }
    Ok(Value::Object(cmd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Result<Value, UsageError> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn auth_commands() {
        let v = |w: &[&str]| parse(&w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            v(&[
                "auth",
                "get-or-create",
                "client.a",
                "mon",
                "allow r",
                "osd",
                "allow rw pool=x",
                "-o",
                "/tmp/k"
            ])
            .expect("ok"),
            json!({"prefix": "auth get-or-create", "entity": "client.a",
                   "caps": ["mon", "allow r", "osd", "allow rw pool=x"], "_output_file": "/tmp/k"})
        );
        assert_eq!(
            v(&["auth", "ls"]).expect("ok"),
            json!({"prefix": "auth ls"})
        );
        assert_eq!(
            v(&["auth", "add", "osd.1", "-i", "/k"]).expect("ok"),
            json!({"prefix": "auth add", "entity": "osd.1", "caps": [], "_input_file": "/k"})
        );
        assert_eq!(
            v(&["auth", "print-key", "mon."]).expect("ok"),
            json!({"prefix": "auth print-key", "entity": "mon."})
        );
        assert!(v(&["auth", "get"]).is_err());
        assert!(v(&["auth", "get", "bob"]).is_err());
        assert!(v(&["auth", "caps", "client.a"]).is_err());
        assert!(v(&["auth", "caps", "client.a", "mon"]).is_err());
        assert!(v(&["auth", "get-or-create", "client.a", "disk", "allow r"]).is_err());
        assert!(v(&["auth", "rm", "client.a", "extra"]).is_err());
    }

    #[test]
    fn ceph_grammar() {
        assert_eq!(p("status").expect("ok"), json!({"prefix": "status"}));
        assert_eq!(p("-s").expect("ok"), json!({"prefix": "status"}));
        assert_eq!(
            p("health detail").expect("ok"),
            json!({"prefix": "health", "detail": "detail"})
        );
        assert_eq!(
            p("osd pool create rbd 32 --size 2 --min-size=1").expect("ok"),
            json!({"prefix": "osd pool create", "pool": "rbd", "pg_num": 32, "size": 2, "min_size": 1})
        );
        assert_eq!(
            p("osd pool create rbd 32 32 replicated").expect("ok"),
            json!({"prefix": "osd pool create", "pool": "rbd", "pg_num": 32, "pgp_num": 32})
        );
        assert_eq!(
            p("osd pool set rbd size 3").expect("ok"),
            json!({"prefix": "osd pool set", "pool": "rbd", "var": "size", "val": "3"})
        );
        assert_eq!(
            p("osd pool rm rbd rbd --yes-i-really-really-mean-it").expect("ok"),
            json!({"prefix": "osd pool rm", "pool": "rbd", "pool2": "rbd", "yes_i_really_really_mean_it": true})
        );
        assert_eq!(
            p("osd pool delete x").expect("ok")["prefix"],
            json!("osd pool rm")
        );
        assert_eq!(
            p("osd out 3 osd.4").expect("ok"),
            json!({"prefix": "osd out", "ids": ["3", "osd.4"]})
        );
        assert_eq!(
            p("osd set noout").expect("ok"),
            json!({"prefix": "osd set", "key": "noout"})
        );
        assert_eq!(
            p("osd set-backfillfull-ratio 0.85").expect("ok"),
            json!({"prefix": "osd set-backfillfull-ratio", "ratio": 0.85})
        );
        assert_eq!(
            p("osd map rbd foo").expect("ok"),
            json!({"prefix": "osd map", "pool": "rbd", "object": "foo"})
        );
        assert_eq!(
            p("pg map 1.1f").expect("ok"),
            json!({"prefix": "pg map", "pgid": "1.1f"})
        );
        assert_eq!(
            p("mgr fail x").expect("ok"),
            json!({"prefix": "mgr fail", "who": "x"})
        );
        assert_eq!(p("mgr fail").expect("ok"), json!({"prefix": "mgr fail"}));
        assert_eq!(
            p("pg dump pgs_brief").expect("ok"),
            json!({"prefix": "pg dump", "dumpcontents": ["pgs_brief"]})
        );
        assert_eq!(
            p("mon add d 10.0.0.4:6789").expect("ok"),
            json!({"prefix": "mon add", "name": "d", "addr": "10.0.0.4:6789"})
        );
        assert_eq!(
            p("mon rm d").expect("ok"),
            json!({"prefix": "mon rm", "name": "d"})
        );
        assert!(p("mon add d").is_err());
        assert!(p("mon rm").is_err());
    }

    #[test]
    fn malformed_arguments_are_clear_errors() {
        for (line, needle) in [
            ("frobnicate", "unknown command 'frobnicate'"),
            ("osd", "unknown command 'osd'"),
            ("osd out", "missing OSD id"),
            ("osd out x", "invalid OSD id 'x'"),
            ("osd out -1", "invalid OSD id '-1'"),
            ("osd pool create", "missing pool name"),
            (
                "osd pool create rbd many",
                "PG_NUM must be a non-negative integer",
            ),
            ("osd pool create rbd 8 --size", "--size needs a value"),
            ("osd pool create rbd 8 --size two", "--size must be"),
            (
                "osd pool create rbd 8 erasure",
                "unsupported option 'erasure'",
            ),
            ("osd pool create rbd 8 8 8", "unexpected argument '8'"),
            (
                "osd pool set rbd size",
                "expected a pool, a variable and a value",
            ),
            ("osd pool rm", "expected the pool name twice"),
            ("osd map rbd", "expected a pool and an object name"),
            ("pg map", "expected one PGID"),
            ("osd tree extra", "unexpected argument 'extra'"),
            ("health loud", "unexpected argument 'loud'"),
            ("osd set", "missing flag"),
            ("osd set-full-ratio", "missing RATIO"),
            ("osd set-full-ratio 1.5", "RATIO must be in 0.0..1.0"),
            ("osd set-nearfull-ratio high", "RATIO must be in 0.0..1.0"),
        ] {
            let e = p(line).expect_err(line);
            assert!(e.to_string().contains(needle), "{line}: {e}");
            assert!(e.to_string().contains("usage: kalmar"), "{line}: {e}");
        }
    }

    proptest! {
        #[test]
        fn random_words_never_panic(words in proptest::collection::vec("[a-z0-9.=-]{0,12}", 0..8)) {
            let _ = parse(&words);
            let mut with_osd = vec!["osd".to_string()];
            with_osd.extend(words.iter().cloned());
            let _ = parse(&with_osd);
        }
    }
}
