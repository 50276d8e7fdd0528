//! The grammar of the CRUSH administration, OSD removal and maintenance
//! check commands (`osd crush set-device-class ssd 0 1`, `osd crush move
//! h1 rack=r1 root=default`, `osd destroy osd.3 --yes-i-really-mean-it`,
//! `osd ok-to-stop 3 --max 4`, ...): words to the mon's JSON dict, with
//! Ceph's argument names. Pure.

use serde_json::{json, Map, Value};

use crate::grammar::UsageError;

/// The commands parsed here, with their usage lines.
pub const USAGE: &[(&str, &str)] = &[
    (
        "osd crush set-device-class",
        "osd crush set-device-class CLASS OSD [OSD...] (OSD: N, osd.N or all)",
    ),
    (
        "osd crush rm-device-class",
        "osd crush rm-device-class OSD [OSD...]",
    ),
    ("osd crush class ls", "osd crush class ls"),
    ("osd crush class ls-osd", "osd crush class ls-osd CLASS"),
    (
        "osd crush rule create-replicated",
        "osd crush rule create-replicated NAME ROOT FAILURE_DOMAIN_TYPE [CLASS]",
    ),
    ("osd crush rule ls", "osd crush rule ls"),
    ("osd crush rule list", "osd crush rule list"),
    ("osd crush rule dump", "osd crush rule dump [NAME]"),
    ("osd crush rule rm", "osd crush rule rm NAME"),
    (
        "osd crush add-bucket",
        "osd crush add-bucket NAME TYPE [TYPE=NAME...]",
    ),
    (
        "osd crush move",
        "osd crush move NAME TYPE=NAME [TYPE=NAME...]",
    ),
    ("osd crush rm", "osd crush rm NAME"),
    ("osd crush remove", "osd crush remove NAME"),
    ("osd crush unlink", "osd crush unlink NAME"),
    ("osd crush reweight", "osd crush reweight NAME WEIGHT"),
    (
        "osd crush set",
        "osd crush set osd.N WEIGHT TYPE=NAME [TYPE=NAME...]",
    ),
    (
        "osd crush add",
        "osd crush add osd.N WEIGHT TYPE=NAME [TYPE=NAME...]",
    ),
    ("osd crush tree", "osd crush tree [--show-shadow]"),
    (
        "osd crush create-or-move",
        "osd crush create-or-move osd.N WEIGHT TYPE=NAME [TYPE=NAME...]",
    ),
    (
        "osd ok-to-stop",
        "osd ok-to-stop ID [ID...] [--max N] (ID: N, osd.N or all)",
    ),
    ("osd safe-to-destroy", "osd safe-to-destroy ID [ID...]"),
    ("osd destroy", "osd destroy osd.N --yes-i-really-mean-it"),
    ("osd purge", "osd purge osd.N --yes-i-really-mean-it"),
    ("osd rm", "osd rm ID [ID...]"),
];

fn err(prefix: &str, msg: impl Into<String>) -> UsageError {
    UsageError {
        msg: msg.into(),
        usage: USAGE
            .iter()
            .find(|(p, _)| *p == prefix)
            .map_or("<command>", |(_, u)| *u),
    }
}

fn osd_id(prefix: &str, s: &str) -> Result<(), UsageError> {
    let n = s.strip_prefix("osd.").unwrap_or(s);
    n.parse::<u32>().map(|_| ()).map_err(|_| {
        err(
            prefix,
            format!("invalid OSD id '{s}' (expected N or osd.N)"),
        )
    })
}

fn weight(prefix: &str, s: &str) -> Result<f64, UsageError> {
    s.parse::<f64>()
        .ok()
        .filter(|w| w.is_finite() && *w >= 0.0)
        .ok_or_else(|| err(prefix, format!("WEIGHT must be a number >= 0, not '{s}'")))
}

/// `--max N` or `--max=N`, taken out of `rest`.
fn take_max(prefix: &str, rest: &mut Vec<String>) -> Result<Option<u32>, UsageError> {
    let Some(i) = rest
        .iter()
        .position(|a| a == "--max" || a.starts_with("--max="))
    else {
        return Ok(None);
    };
    let word = rest.remove(i);
    let v = match word.strip_prefix("--max=") {
        Some(v) => v.to_string(),
        None if i < rest.len() => rest.remove(i),
        None => return Err(err(prefix, "--max needs a number")),
    };
    v.parse::<u32>().map(Some).map_err(|_| {
        err(
            prefix,
            format!("--max must be a non-negative integer, not '{v}'"),
        )
    })
}

fn location(prefix: &str, words: &[String]) -> Result<Value, UsageError> {
    if let Some(bad) = words.iter().find(|w| !w.contains('=')) {
        return Err(err(prefix, format!("location '{bad}' is not TYPE=NAME")));
    }
    Ok(json!(words))
}

/// Parses `words` if they start with one of this module's commands.
pub fn parse(words: &[String]) -> Option<Result<Value, UsageError>> {
    let (prefix, n) = USAGE
        .iter()
        .map(|(p, _)| *p)
        .filter_map(|p| {
            let pw: Vec<&str> = p.split(' ').collect();
            let matches =
                words.len() >= pw.len() && words[..pw.len()].iter().zip(&pw).all(|(a, b)| a == b);
            matches.then_some((p, pw.len()))
        })
        .max_by_key(|(_, n)| *n)?;
    Some(parse_args(prefix, words[n..].to_vec()))
}

fn parse_args(prefix: &str, mut rest: Vec<String>) -> Result<Value, UsageError> {
    let mut cmd = Map::new();
    cmd.insert("prefix".into(), json!(prefix));
    let mut put = |k: &str, v: Value| {
        cmd.insert(k.into(), v);
    };
    match prefix {
        "osd crush class ls" | "osd crush rule ls" | "osd crush rule list" => {
            if let Some(x) = rest.first() {
                return Err(err(prefix, format!("unexpected argument '{x}'")));
            }
        }
        "osd crush set-device-class" => {
            if rest.len() < 2 {
                return Err(err(prefix, "expected a class and at least one OSD"));
            }
            let class = rest.remove(0);
            for id in rest
                .iter()
                .filter(|i| !matches!(i.as_str(), "all" | "any" | "*"))
            {
                osd_id(prefix, id)?;
            }
            put("class", json!(class));
            put("ids", json!(rest));
        }
        "osd crush rm-device-class" | "osd rm" => {
            if rest.is_empty() {
                return Err(err(prefix, "missing OSD id"));
            }
            for id in rest
                .iter()
                .filter(|i| !matches!(i.as_str(), "all" | "any" | "*"))
            {
                osd_id(prefix, id)?;
            }
            put("ids", json!(rest));
        }
        "osd crush class ls-osd" | "osd crush rule rm" => match rest.as_slice() {
            [one] => put(
                if prefix.ends_with("ls-osd") {
                    "class"
                } else {
                    "name"
                },
                json!(one),
            ),
            _ => return Err(err(prefix, "expected one name")),
        },
        "osd crush rule dump" => match rest.as_slice() {
            [] => {}
            [name] => put("name", json!(name)),
            _ => return Err(err(prefix, "expected at most one rule name")),
        },
        "osd crush rule create-replicated" => match rest.as_slice() {
            [name, root, ty] | [name, root, ty, _] => {
                put("name", json!(name));
                put("root", json!(root));
                put("type", json!(ty));
                if let Some(c) = rest.get(3) {
                    put("class", json!(c));
                }
            }
            _ => return Err(err(prefix, "expected NAME ROOT TYPE [CLASS]")),
        },
        "osd crush add-bucket" => {
            if rest.len() < 2 {
                return Err(err(prefix, "expected a bucket name and a type"));
            }
            put("name", json!(rest[0]));
            put("type", json!(rest[1]));
            if rest.len() > 2 {
                put("args", location(prefix, &rest[2..])?);
            }
        }
        "osd crush move" => {
            if rest.len() < 2 {
                return Err(err(prefix, "expected a name and a location"));
            }
            put("name", json!(rest[0]));
            put("args", location(prefix, &rest[1..])?);
        }
        "osd crush rm" | "osd crush remove" | "osd crush unlink" => match rest.as_slice() {
            [name] => put("name", json!(name)),
            [_, _] => {
                return Err(err(
                    prefix,
                    "removing from one ancestor only is not supported; give just the name",
                ))
            }
            _ => return Err(err(prefix, "expected an item name")),
        },
        "osd crush reweight" => match rest.as_slice() {
            [name, w] => {
                put("name", json!(name));
                put("weight", json!(weight(prefix, w)?));
            }
            _ => return Err(err(prefix, "expected a name and a weight")),
        },
        "osd ok-to-stop" | "osd safe-to-destroy" => {
            if prefix == "osd ok-to-stop" {
                if let Some(max) = take_max(prefix, &mut rest)? {
                    put("max", json!(max));
                }
            }
            if rest.is_empty() {
                return Err(err(prefix, "missing OSD id"));
            }
            for id in rest
                .iter()
                .filter(|i| !matches!(i.as_str(), "all" | "any" | "*"))
            {
                osd_id(prefix, id)?;
            }
            put("ids", json!(rest));
        }
        "osd crush set" | "osd crush add" | "osd crush create-or-move" => {
            if rest.len() < 3 {
                return Err(err(prefix, "expected osd.N, a weight and a location"));
            }
            osd_id(prefix, &rest[0])?;
            put("id", json!(rest[0]));
            put("weight", json!(weight(prefix, &rest[1])?));
            put("args", location(prefix, &rest[2..])?);
        }
        "osd crush tree" => {
            let shadow = rest.iter().any(|a| a == "--show-shadow");
            rest.retain(|a| a != "--show-shadow");
            if let Some(x) = rest.first() {
                return Err(err(prefix, format!("unexpected argument '{x}'")));
            }
            if shadow {
                put("shadow", json!(true));
            }
        }
        "osd destroy" | "osd purge" => {
            let sure = rest.iter().any(|a| a == "--yes-i-really-mean-it");
            rest.retain(|a| a != "--yes-i-really-mean-it");
            match rest.as_slice() {
                [id] => {
                    osd_id(prefix, id)?;
                    put("id", json!(id));
                }
                _ => return Err(err(prefix, "expected one OSD id")),
            }
            put("yes_i_really_mean_it", json!(sure));
        }
        other => return Err(err(other, "unknown command")),
    }
    Ok(Value::Object(cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Value, UsageError> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>()).expect("known")
    }

    #[test]
    fn ceph_words_become_dicts() {
        assert_eq!(
            p("osd crush set-device-class ssd 0 osd.1").expect("ok"),
            json!({"prefix": "osd crush set-device-class", "class": "ssd", "ids": ["0", "osd.1"]})
        );
        assert_eq!(
            p("osd crush rule create-replicated fast default host ssd").expect("ok"),
            json!({"prefix": "osd crush rule create-replicated", "name": "fast", "root": "default", "type": "host", "class": "ssd"})
        );
        assert_eq!(
            p("osd crush rule rm fast").expect("ok"),
            json!({"prefix": "osd crush rule rm", "name": "fast"})
        );
        assert_eq!(
            p("osd crush rm r1").expect("ok"),
            json!({"prefix": "osd crush rm", "name": "r1"})
        );
        assert_eq!(
            p("osd crush move h1 rack=r1 root=default").expect("ok"),
            json!({"prefix": "osd crush move", "name": "h1", "args": ["rack=r1", "root=default"]})
        );
        assert_eq!(
            p("osd crush set osd.3 0.5 host=h0").expect("ok"),
            json!({"prefix": "osd crush set", "id": "osd.3", "weight": 0.5, "args": ["host=h0"]})
        );
        assert_eq!(
            p("osd crush tree --show-shadow").expect("ok"),
            json!({"prefix": "osd crush tree", "shadow": true})
        );
        assert_eq!(
            p("osd destroy osd.3 --yes-i-really-mean-it").expect("ok"),
            json!({"prefix": "osd destroy", "id": "osd.3", "yes_i_really_mean_it": true})
        );
        assert_eq!(
            p("osd rm 3 4").expect("ok"),
            json!({"prefix": "osd rm", "ids": ["3", "4"]})
        );
        assert_eq!(
            p("osd ok-to-stop 1 osd.2 --max 4").expect("ok"),
            json!({"prefix": "osd ok-to-stop", "ids": ["1", "osd.2"], "max": 4})
        );
        assert_eq!(
            p("osd ok-to-stop --max=2 all").expect("ok"),
            json!({"prefix": "osd ok-to-stop", "ids": ["all"], "max": 2})
        );
        assert_eq!(
            p("osd safe-to-destroy osd.3").expect("ok"),
            json!({"prefix": "osd safe-to-destroy", "ids": ["osd.3"]})
        );
        assert_eq!(
            p("osd crush create-or-move osd.3 1.5 root=default rack=r1 host=h1").expect("ok"),
            json!({"prefix": "osd crush create-or-move", "id": "osd.3", "weight": 1.5,
                   "args": ["root=default", "rack=r1", "host=h1"]})
        );
        assert!(parse(&["osd".into(), "rm-noup".into(), "1".into()]).is_none());
        assert!(parse(&["osd".into(), "crush".into(), "dump".into()]).is_none());
    }

    #[test]
    fn bad_arguments_say_what_is_expected() {
        for (line, want) in [
            ("osd crush move h1", "expected a name and a location"),
            ("osd crush move h1 r1", "location 'r1' is not TYPE=NAME"),
            (
                "osd crush reweight osd.1 -2",
                "WEIGHT must be a number >= 0",
            ),
            ("osd destroy x --yes-i-really-mean-it", "invalid OSD id 'x'"),
            ("osd ok-to-stop", "missing OSD id"),
            ("osd ok-to-stop 1 --max", "--max needs a number"),
            (
                "osd ok-to-stop 1 --max x",
                "--max must be a non-negative integer",
            ),
            ("osd safe-to-destroy osd.x", "invalid OSD id 'osd.x'"),
            (
                "osd crush rule create-replicated fast",
                "expected NAME ROOT TYPE",
            ),
            (
                "osd crush set-device-class ssd",
                "expected a class and at least one OSD",
            ),
        ] {
            let e = p(line).expect_err(line);
            assert!(e.msg.contains(want), "{line}: {}", e.msg);
        }
    }
}
