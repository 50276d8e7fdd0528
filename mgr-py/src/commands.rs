//! Ceph's command-description grammar (`MonCommands.h`, plugin
//! `COMMANDS`) and the matching of CLI words against it. Pure logic.
//!
//! A description is `"prefix words name=arg,type=CephInt,req=false ..."`:
//! leading bare words are the prefix; each `name=...` token declares an
//! argument with `type` (CephString, CephInt, CephFloat, CephBool,
//! CephChoices with `strings=a|b`, CephPoolname, CephObjectname, CephPgid,
//! CephOsdName, CephEntityAddr, CephUUID, CephName, CephFilepath, ...),
//! optional `req=false`, `n=N` (repeated), `range=min|max`.
//!
//! Matching builds the command dict a plugin gets:
//! `{"prefix": "words", <arg>: <typed value>, ..., "format": ...}`.

use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum ArgType {
    String,
    Int {
        min: Option<i64>,
        max: Option<i64>,
    },
    Float {
        min: Option<f64>,
        max: Option<f64>,
    },
    Bool,
    Choices(Vec<String>),
    Pgid,
    OsdName,
    Uuid,
    /// Any other Ceph string-like type, kept by name (CephPoolname, ...).
    Other(String),
}

impl ArgType {
    pub fn ceph_name(&self) -> &str {
        match self {
            ArgType::String => "CephString",
            ArgType::Int { .. } => "CephInt",
            ArgType::Float { .. } => "CephFloat",
            ArgType::Bool => "CephBool",
            ArgType::Choices(_) => "CephChoices",
            ArgType::Pgid => "CephPgid",
            ArgType::OsdName => "CephOsdName",
            ArgType::Uuid => "CephUUID",
            ArgType::Other(n) => n,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArgDesc {
    pub name: String,
    pub ty: ArgType,
    pub required: bool,
    /// `n=N`: takes every remaining valid word, value is a list.
    pub repeated: bool,
}

/// One parsed command description.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandDesc {
    pub prefix: Vec<String>,
    pub args: Vec<ArgDesc>,
    /// The original `cmd` string.
    pub signature: String,
    pub desc: String,
    pub perm: String,
    pub poll: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    #[error("command description {0:?} has no prefix words")]
    NoPrefix(String),
    #[error("command description {sig:?}: argument token {token:?} is malformed ({why})")]
    BadArg {
        sig: String,
        token: String,
        why: String,
    },
}

fn parse_range<T: std::str::FromStr>(s: &str) -> (Option<T>, Option<T>) {
    let mut it = s.split('|');
    let min = it.next().and_then(|x| x.parse().ok());
    let max = it.next().and_then(|x| x.parse().ok());
    (min, max)
}

impl CommandDesc {
    /// Parses a `cmd` string; `desc`, `perm` and `poll` come from the
    /// surrounding dict.
    pub fn parse(
        signature: &str,
        desc: &str,
        perm: &str,
        poll: bool,
    ) -> Result<CommandDesc, GrammarError> {
        let mut prefix = Vec::new();
        let mut args = Vec::new();
        for token in signature.split_whitespace() {
            if !token.contains('=') {
                if !args.is_empty() {
                    return Err(GrammarError::BadArg {
                        sig: signature.into(),
                        token: token.into(),
                        why: "bare word after the arguments".into(),
                    });
                }
                prefix.push(token.to_string());
                continue;
            }
            let mut name = None;
            let mut ty_name = "CephString".to_string();
            let mut required = true;
            let mut repeated = false;
            let mut strings = Vec::new();
            let mut range = String::new();
            for kv in token.split(',') {
                let Some((k, v)) = kv.split_once('=') else {
                    return Err(GrammarError::BadArg {
                        sig: signature.into(),
                        token: token.into(),
                        why: format!("{kv:?} is not key=value"),
                    });
                };
                match k {
                    "name" => name = Some(v.to_string()),
                    "type" => ty_name = v.to_string(),
                    "req" => required = v != "false",
                    "n" => repeated = v == "N" || v.parse::<u32>().is_ok_and(|n| n > 1),
                    "strings" => strings = v.split('|').map(str::to_string).collect(),
                    "range" => range = v.to_string(),
                    _ => {} // goodchars, positional, ...: accepted, not enforced
                }
            }
            let name = name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| GrammarError::BadArg {
                    sig: signature.into(),
                    token: token.into(),
                    why: "no name=".into(),
                })?;
            let ty = match ty_name.as_str() {
                "CephString" => ArgType::String,
                "CephInt" => {
                    let (min, max) = parse_range(&range);
                    ArgType::Int { min, max }
                }
                "CephFloat" => {
                    let (min, max) = parse_range(&range);
                    ArgType::Float { min, max }
                }
                "CephBool" => ArgType::Bool,
                "CephChoices" => {
                    if strings.is_empty() {
                        return Err(GrammarError::BadArg {
                            sig: signature.into(),
                            token: token.into(),
                            why: "CephChoices without strings=".into(),
                        });
                    }
                    ArgType::Choices(strings)
                }
                "CephPgid" => ArgType::Pgid,
                "CephOsdName" => ArgType::OsdName,
                "CephUUID" => ArgType::Uuid,
                other if other.starts_with("Ceph") => ArgType::Other(other.to_string()),
                other => {
                    return Err(GrammarError::BadArg {
                        sig: signature.into(),
                        token: token.into(),
                        why: format!("unknown type {other}"),
                    })
                }
            };
            args.push(ArgDesc {
                name,
                ty,
                required,
                repeated,
            });
        }
        if prefix.is_empty() {
            return Err(GrammarError::NoPrefix(signature.into()));
        }
        Ok(CommandDesc {
            prefix,
            args,
            signature: signature.into(),
            desc: desc.into(),
            perm: perm.into(),
            poll,
        })
    }

    pub fn prefix_string(&self) -> String {
        self.prefix.join(" ")
    }

    /// Ceph's `get_command_descriptions` entry: `{sig, help, module, perm,
    /// flags}` with `sig` = prefix words then argument objects.
    pub fn to_ceph_json(&self, module: &str) -> Value {
        let mut sig: Vec<Value> = self.prefix.iter().map(|w| json!(w)).collect();
        for a in &self.args {
            let mut o = Map::new();
            o.insert("name".into(), json!(a.name));
            o.insert("type".into(), json!(a.ty.ceph_name()));
            o.insert(
                "req".into(),
                json!(if a.required { "true" } else { "false" }),
            );
            if a.repeated {
                o.insert("n".into(), json!("N"));
            }
            match &a.ty {
                ArgType::Choices(s) => {
                    o.insert("strings".into(), json!(s.join("|")));
                }
                ArgType::Int { min, max } if min.is_some() || max.is_some() => {
                    let r = |x: &Option<i64>| x.map(|v| v.to_string()).unwrap_or_default();
                    o.insert("range".into(), json!(format!("{}|{}", r(min), r(max))));
                }
                _ => {}
            }
            sig.push(Value::Object(o));
        }
        json!({"sig": sig, "help": self.desc, "module": module, "perm": self.perm, "flags": 0})
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    #[error("no command matches {0:?}")]
    NoMatch(String),
    #[error("{prefix}: missing required argument {arg} ({usage})")]
    Missing {
        prefix: String,
        arg: String,
        usage: String,
    },
    #[error("{prefix}: invalid {arg} {value:?}: {why} ({usage})")]
    Invalid {
        prefix: String,
        arg: String,
        value: String,
        why: String,
        usage: String,
    },
    #[error("{prefix}: unexpected argument {value:?} ({usage})")]
    Extra {
        prefix: String,
        value: String,
        usage: String,
    },
}

impl MatchError {
    /// Whether the words matched some prefix (a usage error, not "unknown").
    pub fn matched_prefix(&self) -> bool {
        !matches!(self, MatchError::NoMatch(_))
    }
}

fn valid_pgid(s: &str) -> bool {
    let Some((pool, seed)) = s.split_once('.') else {
        return false;
    };
    pool.parse::<u64>().is_ok() && !seed.is_empty() && u32::from_str_radix(seed, 16).is_ok()
}

fn valid_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&groups)
            .all(|(n, g)| g.len() == *n)
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Converts one word to the argument's JSON value.
pub fn convert(arg: &ArgDesc, word: &str) -> Result<Value, String> {
    match &arg.ty {
        ArgType::String | ArgType::Other(_) => Ok(json!(word)),
        ArgType::Int { min, max } => {
            let v: i64 = word.parse().map_err(|_| "not an integer".to_string())?;
            if min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m) {
                return Err(format!(
                    "out of range {}..{}",
                    min.unwrap_or(i64::MIN),
                    max.unwrap_or(i64::MAX)
                ));
            }
            Ok(json!(v))
        }
        ArgType::Float { min, max } => {
            let v: f64 = word.parse().map_err(|_| "not a number".to_string())?;
            if !v.is_finite() || min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m) {
                return Err("out of range".into());
            }
            Ok(json!(v))
        }
        ArgType::Bool => match word.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(json!(true)),
            "false" | "no" | "0" => Ok(json!(false)),
            _ => Err("not true or false".into()),
        },
        ArgType::Choices(c) => {
            if c.iter().any(|x| x == word) {
                Ok(json!(word))
            } else {
                Err(format!("not one of {}", c.join("|")))
            }
        }
        ArgType::Pgid => valid_pgid(word)
            .then(|| json!(word))
            .ok_or_else(|| "not a pgid (<pool>.<hex>)".into()),
        ArgType::Uuid => valid_uuid(word)
            .then(|| json!(word))
            .ok_or_else(|| "not a UUID".into()),
        ArgType::OsdName => {
            let id = word.strip_prefix("osd.").unwrap_or(word);
            id.parse::<u32>()
                .map(|i| json!(i))
                .map_err(|_| "not osd.N or N".into())
        }
    }
}

fn usage(d: &CommandDesc) -> String {
    let mut s = d.prefix_string();
    for a in &d.args {
        let mut t = format!("<{}:{}>", a.name, a.ty.ceph_name());
        if a.repeated {
            t.push_str("...");
        }
        if !a.required {
            t = format!("[{t}]");
        }
        s.push(' ');
        s.push_str(&t);
    }
    s
}

/// Takes `--format X`, `--format=X`, `-f X` out of the words.
pub fn split_format(words: &[String]) -> (Vec<String>, Option<String>) {
    let mut out = Vec::with_capacity(words.len());
    let mut format = None;
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        if let Some(f) = w.strip_prefix("--format=") {
            format = Some(f.to_string());
        } else if (w == "--format" || w == "-f") && i + 1 < words.len() {
            format = Some(words[i + 1].clone());
            i += 1;
        } else {
            out.push(w.clone());
        }
        i += 1;
    }
    (out, format)
}

/// Binds `words` (after the prefix) to `d`'s arguments.
fn bind(d: &CommandDesc, words: &[String]) -> Result<Map<String, Value>, MatchError> {
    let prefix = d.prefix_string();
    let mut out = Map::new();
    let err_invalid = |a: &ArgDesc, w: &str, why: String| MatchError::Invalid {
        prefix: prefix.clone(),
        arg: a.name.clone(),
        value: w.to_string(),
        why,
        usage: usage(d),
    };
    // `--name value`, `--name=value` and `--flag` (booleans) first.
    let mut positional = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let named = w.strip_prefix("--").and_then(|rest| {
            let (n, v) = match rest.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (rest, None),
            };
            let n = n.replace('-', "_");
            d.args
                .iter()
                .find(|a| a.name.replace('-', "_") == n)
                .map(|a| (a, v))
        });
        match named {
            Some((a, v)) => {
                let v = match (v, &a.ty) {
                    (Some(v), _) => v,
                    (None, ArgType::Bool) => "true".to_string(),
                    (None, _) if i + 1 < words.len() => {
                        i += 1;
                        words[i].clone()
                    }
                    (None, _) => {
                        return Err(MatchError::Missing {
                            prefix: prefix.clone(),
                            arg: a.name.clone(),
                            usage: usage(d),
                        })
                    }
                };
                let val = convert(a, &v).map_err(|why| err_invalid(a, &v, why))?;
                if a.repeated {
                    let e = out.entry(a.name.clone()).or_insert_with(|| json!([]));
                    if let Value::Array(arr) = e {
                        arr.push(val);
                    }
                } else {
                    out.insert(a.name.clone(), val);
                }
            }
            None => positional.push(w.clone()),
        }
        i += 1;
    }
    let mut pos = positional.iter().peekable();
    for a in &d.args {
        if out.contains_key(&a.name) {
            continue;
        }
        if a.repeated {
            let mut vals = Vec::new();
            while let Some(w) = pos.peek() {
                match convert(a, w) {
                    Ok(v) => {
                        vals.push(v);
                        pos.next();
                    }
                    Err(why) if vals.is_empty() && a.required => {
                        return Err(err_invalid(a, w, why))
                    }
                    Err(_) => break,
                }
            }
            if !vals.is_empty() {
                out.insert(a.name.clone(), Value::Array(vals));
            } else if a.required {
                return Err(MatchError::Missing {
                    prefix: prefix.clone(),
                    arg: a.name.clone(),
                    usage: usage(d),
                });
            }
            continue;
        }
        match pos.peek() {
            Some(w) => match convert(a, w) {
                Ok(v) => {
                    out.insert(a.name.clone(), v);
                    pos.next();
                }
                // An optional argument that does not fit is skipped, as
                // Ceph does, so the word may fill a later one.
                Err(_) if !a.required => {}
                Err(why) => return Err(err_invalid(a, w, why)),
            },
            None if a.required => {
                return Err(MatchError::Missing {
                    prefix: prefix.clone(),
                    arg: a.name.clone(),
                    usage: usage(d),
                })
            }
            None => {}
        }
    }
    if let Some(extra) = pos.next() {
        return Err(MatchError::Extra {
            prefix,
            value: extra.clone(),
            usage: usage(d),
        });
    }
    Ok(out)
}

/// Finds the description matching `words` among `descs` (longest prefix
/// first; among equal prefixes, the first that binds) and builds the
/// command dict. Returns the index of the description and the dict.
pub fn match_command(
    descs: &[&CommandDesc],
    words: &[String],
    format: Option<&str>,
) -> Result<(usize, Value), MatchError> {
    let (words, word_format) = split_format(words);
    let format = format.map(str::to_string).or(word_format);
    let mut candidates: Vec<(usize, &CommandDesc)> = descs
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            d.prefix.len() <= words.len() && d.prefix.iter().zip(&words).all(|(p, w)| p == w)
        })
        .map(|(i, d)| (i, *d))
        .collect();
    // Longest prefix first; stable so declaration order breaks ties.
    candidates.sort_by_key(|(_, d)| std::cmp::Reverse(d.prefix.len()));
    let mut first_err = None;
    for (i, d) in candidates {
        match bind(d, &words[d.prefix.len()..]) {
            Ok(mut args) => {
                let mut cmd = Map::new();
                cmd.insert("prefix".into(), json!(d.prefix_string()));
                cmd.append(&mut args);
                if let Some(f) = &format {
                    cmd.insert("format".into(), json!(f));
                }
                return Ok((i, Value::Object(cmd)));
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| MatchError::NoMatch(words.join(" "))))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(sig: &str) -> CommandDesc {
        CommandDesc::parse(sig, "", "r", false).unwrap()
    }

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_ceph_grammar() {
        let c = d("osd pool set name=pool,type=CephPoolname name=var,type=CephChoices,strings=size|min_size name=val,type=CephInt,range=0|10,req=false");
        assert_eq!(c.prefix, vec!["osd", "pool", "set"]);
        assert_eq!(c.args.len(), 3);
        assert_eq!(c.args[0].ty, ArgType::Other("CephPoolname".into()));
        assert_eq!(
            c.args[1].ty,
            ArgType::Choices(vec!["size".into(), "min_size".into()])
        );
        assert_eq!(
            c.args[2].ty,
            ArgType::Int {
                min: Some(0),
                max: Some(10)
            }
        );
        assert!(!c.args[2].required);
        let j = c.to_ceph_json("mgr");
        assert_eq!(j["sig"][0], "osd");
        assert_eq!(j["sig"][4]["strings"], "size|min_size");
        assert_eq!(j["sig"][5]["req"], "false");
        assert!(CommandDesc::parse("name=x,type=CephInt", "", "r", false).is_err());
        assert!(CommandDesc::parse("x name=y,type=Bogus", "", "r", false).is_err());
        assert!(CommandDesc::parse("x type=CephInt", "", "r", false).is_err());
    }

    #[test]
    fn matches_and_types_values() {
        let a = d("hello");
        let b = d("hello world name=n,type=CephInt name=flag,type=CephBool,req=false name=rest,type=CephString,n=N,req=false");
        let descs = [&a, &b];
        let (i, cmd) = match_command(&descs, &w("hello"), None).unwrap();
        assert_eq!((i, cmd), (0, json!({"prefix": "hello"})));
        let (i, cmd) = match_command(&descs, &w("hello world 3 x y --format json"), None).unwrap();
        assert_eq!(i, 1);
        assert_eq!(
            cmd,
            json!({"prefix": "hello world", "n": 3, "rest": ["x", "y"], "format": "json"})
        );
        let (_, cmd) =
            match_command(&descs, &w("hello world --flag --n=4"), Some("plain")).unwrap();
        assert_eq!(
            cmd,
            json!({"prefix": "hello world", "n": 4, "flag": true, "format": "plain"})
        );
        assert!(matches!(
            match_command(&descs, &w("hello world x"), None),
            Err(MatchError::Invalid { .. })
        ));
        assert!(matches!(
            match_command(&descs, &w("hello world"), None),
            Err(MatchError::Missing { .. })
        ));
        assert!(matches!(
            match_command(&descs, &w("bye"), None),
            Err(MatchError::NoMatch(_))
        ));
        let e = d("x name=a,type=CephChoices,strings=p|q");
        assert!(matches!(
            match_command(&[&e], &w("x p q"), None),
            Err(MatchError::Extra { .. })
        ));
    }

    #[test]
    fn optional_args_are_skipped_when_the_word_fits_a_later_one() {
        let c =
            d("osd status name=bucket,type=CephInt,req=false name=who,type=CephString,req=false");
        let (_, cmd) = match_command(&[&c], &w("osd status host1"), None).unwrap();
        assert_eq!(cmd, json!({"prefix": "osd status", "who": "host1"}));
    }

    #[test]
    fn special_types() {
        let c = d(
            "pg x name=pgid,type=CephPgid name=osd,type=CephOsdName name=u,type=CephUUID,req=false",
        );
        let (_, cmd) = match_command(&[&c], &w("pg x 1.1f osd.3"), None).unwrap();
        assert_eq!(cmd, json!({"prefix": "pg x", "pgid": "1.1f", "osd": 3}));
        assert!(match_command(&[&c], &w("pg x 1.zz 3"), None).is_err());
        let (_, cmd) = match_command(
            &[&c],
            &w("pg x 2.0 7 54656202-0b55-49f3-a2fd-2337038b7535"),
            None,
        )
        .unwrap();
        assert_eq!(cmd["u"], "54656202-0b55-49f3-a2fd-2337038b7535");
    }

    proptest! {
        #[test]
        fn ints_round_trip_and_never_panic(n in any::<i64>(), junk in "[a-z0-9 .=-]{0,30}") {
            let c = d("set name=v,type=CephInt");
            let (_, cmd) = match_command(&[&c], &[String::from("set"), n.to_string()], None).unwrap();
            prop_assert_eq!(cmd["v"].as_i64(), Some(n));
            let words: Vec<String> = junk.split_whitespace().map(str::to_string).collect();
            let _ = match_command(&[&c], &words, None);
        }

        #[test]
        fn parse_never_panics(sig in "[a-zA-Z=,|. ]{0,60}") {
            let _ = CommandDesc::parse(&sig, "", "r", false);
        }
    }
}
