//! The cap grammar: a small tokenizer (words, quoted strings, `=`, and the
//! grant separators `,` `;`) and a parser over its tokens. Bounded: cap
//! text and grant counts past the named limits are refused.

use super::{Caps, Grant, ObjectMatch, Perms, Profile, Service};

/// Longest cap string accepted.
pub const MAX_CAP_TEXT_BYTES: usize = 4096;
/// Most grants in one cap string.
pub const MAX_GRANTS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapsError {
    #[error("{service} caps '{text}': {reason}")]
    Syntax {
        service: &'static str,
        text: String,
        reason: String,
    },
    #[error("caps for unknown service '{0}' (expected mon, osd, mgr)")]
    UnknownService(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Quoted(String),
    Eq,
    Sep,
}

fn tokenize(text: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            ',' | ';' => {
                chars.next();
                toks.push(Tok::Sep);
            }
            '=' => {
                chars.next();
                toks.push(Tok::Eq);
            }
            '"' | '\'' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated quote".into()),
                        Some(q) if q == c => break,
                        Some(ch) => s.push(ch),
                    }
                }
                toks.push(Tok::Quoted(s));
            }
            _ => {
                let mut s = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() || ",;=\"'".contains(ch) {
                        break;
                    }
                    s.push(ch);
                    chars.next();
                }
                toks.push(Tok::Word(s));
            }
        }
    }
    Ok(toks)
}

/// Parses the cap text of `service` (empty text grants nothing).
pub fn parse_caps(service: Service, text: &str) -> Result<Caps, CapsError> {
    let err = |reason: String| CapsError::Syntax {
        service: service.as_str(),
        text: text.chars().take(200).collect(),
        reason,
    };
    if text.len() > MAX_CAP_TEXT_BYTES {
        return Err(err(format!("longer than {MAX_CAP_TEXT_BYTES} bytes")));
    }
    let toks = tokenize(text).map_err(err)?;
    let mut grants = Vec::new();
    for grant in toks.split(|t| *t == Tok::Sep) {
        if grant.is_empty() {
            continue;
        }
        if grants.len() == MAX_GRANTS {
            return Err(err(format!("more than {MAX_GRANTS} grants")));
        }
        grants.push(parse_grant(service, grant).map_err(err)?);
    }
    Ok(Caps { grants })
}

/// A cursor over one grant's tokens.
struct Cursor<'a> {
    toks: &'a [Tok],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<&'a Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<&'a Tok> {
        let t = self.toks.get(self.pos);
        self.pos += 1;
        t
    }

    /// A word or quoted string.
    fn value(&mut self, what: &str) -> Result<String, String> {
        match self.next() {
            Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => Ok(w.clone()),
            _ => Err(format!("expected {what}")),
        }
    }

    /// `NAME=VALUE` or `NAME VALUE` after the name was read.
    fn setting(&mut self, name: &str) -> Result<String, String> {
        if self.peek() == Some(&Tok::Eq) {
            self.next();
        }
        self.value(&format!("a value for '{name}'"))
    }

    fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }
}

fn parse_grant(service: Service, toks: &[Tok]) -> Result<Grant, String> {
    let mut c = Cursor { toks, pos: 0 };
    let first = match c.next() {
        Some(Tok::Word(w)) => w.as_str(),
        _ => return Err("a grant starts with 'allow' or 'profile'".into()),
    };
    let grant = match first {
        "profile" => parse_profile(service, &mut c)?,
        "allow" => match c.peek() {
            Some(Tok::Word(w)) if w == "profile" => {
                c.next();
                parse_profile(service, &mut c)?
            }
            Some(Tok::Word(w)) if w == "command" && service != Service::Osd => {
                c.next();
                parse_command(&mut c)?
            }
            Some(Tok::Word(w))
                if (w == "service" && service == Service::Mon)
                    || (w == "module" && service == Service::Mgr) =>
            {
                c.next();
                let name = c.setting(w)?;
                let perms = parse_perms(&mut c)?;
                Grant::Service { name, perms }
            }
            _ => parse_allow(service, &mut c)?,
        },
        other => {
            return Err(format!(
                "'{other}': a grant starts with 'allow' or 'profile'"
            ))
        }
    };
    if !c.at_end() {
        return Err(format!("unexpected {:?} at the end of a grant", c.peek()));
    }
    Ok(grant)
}

fn parse_profile(service: Service, c: &mut Cursor<'_>) -> Result<Grant, String> {
    let name = c.value("a profile name")?;
    let profile = Profile::from_name(&name).ok_or_else(|| format!("unknown profile '{name}'"))?;
    let mut pool = None;
    if let Some(Tok::Word(w)) = c.peek() {
        if w == "pool" && service != Service::Mon {
            c.next();
            pool = Some(c.setting("pool")?);
        }
    }
    Ok(Grant::Profile { profile, pool })
}

fn parse_command(c: &mut Cursor<'_>) -> Result<Grant, String> {
    let prefix = c.setting("command")?;
    let mut args = Vec::new();
    if let Some(Tok::Word(w)) = c.peek() {
        if w == "with" {
            c.next();
            while !c.at_end() {
                let k = c.value("an argument name")?;
                if c.next() != Some(&Tok::Eq) {
                    return Err(format!("expected '=' after '{k}'"));
                }
                let v = c.value(&format!("a value for '{k}'"))?;
                args.push((k, v));
            }
        }
    }
    if prefix.trim().is_empty() {
        return Err("empty command".into());
    }
    Ok(Grant::Command { prefix, args })
}

/// Permission words up to the first non-permission token.
fn parse_perms(c: &mut Cursor<'_>) -> Result<Perms, String> {
    let mut perms = Perms::NONE;
    let mut any = false;
    while let Some(Tok::Word(w)) = c.peek() {
        let p = match w.as_str() {
            "*" | "all" => Perms::ALL,
            "class-read" => Perms::CLASS_READ,
            "class-write" => Perms::CLASS_WRITE,
            letters if !letters.is_empty() && letters.chars().all(|ch| "rwx".contains(ch)) => {
                letters.chars().fold(Perms::NONE, |p, ch| {
                    p.union(match ch {
                        'r' => Perms::R,
                        'w' => Perms::W,
                        // Ceph: `x` includes calling object classes.
                        _ => Perms::X.union(Perms::CLASS_READ).union(Perms::CLASS_WRITE),
                    })
                })
            }
            _ => break,
        };
        c.next();
        perms = perms.union(p);
        any = true;
    }
    if !any {
        return Err("expected permissions (r, w, x, *, class-read, class-write)".into());
    }
    Ok(perms)
}

/// `allow PERMS [match...]`, or the older osd order `allow pool P PERMS`.
fn parse_allow(service: Service, c: &mut Cursor<'_>) -> Result<Grant, String> {
    let mut matches = ObjectMatch::default();
    let mut perms = None;
    while !c.at_end() {
        match c.peek() {
            Some(Tok::Word(w))
                if service == Service::Osd
                    && ["pool", "namespace", "object_prefix"].contains(&w.as_str()) =>
            {
                let w = w.clone();
                c.next();
                let v = c.setting(&w)?;
                let slot = match w.as_str() {
                    "pool" => &mut matches.pool,
                    "namespace" => &mut matches.namespace,
                    _ => &mut matches.object_prefix,
                };
                if slot.replace(v).is_some() {
                    return Err(format!("'{w}' given twice"));
                }
            }
            _ if perms.is_none() => perms = Some(parse_perms(c)?),
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    let perms = perms.ok_or("'allow' without permissions")?;
    Ok(Grant::Allow { perms, matches })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(service: Service, text: &str) -> Grant {
        let caps = parse_caps(service, text).expect(text);
        assert_eq!(caps.grants.len(), 1, "{text}");
        caps.grants[0].clone()
    }

    #[test]
    fn ceph_shapes() {
        assert_eq!(
            one(Service::Mon, "allow *"),
            Grant::Allow {
                perms: Perms::ALL,
                matches: ObjectMatch::default()
            }
        );
        assert_eq!(
            one(Service::Mon, "profile osd"),
            Grant::Profile {
                profile: Profile::Osd,
                pool: None
            }
        );
        assert_eq!(
            one(Service::Mon, "allow profile osd"),
            one(Service::Mon, "profile osd")
        );
        let g = one(Service::Osd, "allow rw pool=images");
        assert_eq!(
            g,
            Grant::Allow {
                perms: Perms::RW,
                matches: ObjectMatch {
                    pool: Some("images".into()),
                    ..Default::default()
                }
            }
        );
        assert_eq!(one(Service::Osd, "allow pool images rw"), g);
        assert_eq!(
            one(
                Service::Osd,
                "allow rwx pool=a namespace=n object_prefix rbd_data"
            ),
            Grant::Allow {
                perms: Perms::RWX,
                matches: ObjectMatch {
                    pool: Some("a".into()),
                    namespace: Some("n".into()),
                    object_prefix: Some("rbd_data".into()),
                }
            }
        );
        assert_eq!(
            one(Service::Osd, "profile rbd pool=vms"),
            Grant::Profile {
                profile: Profile::Rbd,
                pool: Some("vms".into())
            }
        );
        assert_eq!(
            one(
                Service::Mon,
                "allow command \"auth get\" with entity=\"client.a\""
            ),
            Grant::Command {
                prefix: "auth get".into(),
                args: vec![("entity".into(), "client.a".into())]
            }
        );
        assert_eq!(
            one(Service::Mgr, "allow module prometheus r"),
            Grant::Service {
                name: "prometheus".into(),
                perms: Perms::R
            }
        );
        let caps =
            parse_caps(Service::Osd, "allow r pool=a, allow rw pool=b; profile rbd").expect("list");
        assert_eq!(caps.grants.len(), 3);
        assert!(parse_caps(Service::Mon, "")
            .expect("empty")
            .grants
            .is_empty());
    }

    #[test]
    fn errors() {
        for (s, text) in [
            (Service::Mon, "allow"),
            (Service::Mon, "deny r"),
            (Service::Mon, "allow q"),
            (Service::Mon, "profile nope"),
            (Service::Mon, "allow r pool=a"),
            (Service::Osd, "allow command \"osd tree\""),
            (Service::Osd, "allow rw pool=a pool=b"),
            (Service::Mon, "allow command \"x"),
            (Service::Mon, "allow command \"x\" with a"),
        ] {
            assert!(parse_caps(s, text).is_err(), "{text}");
        }
        let long = "allow r,".repeat(MAX_GRANTS + 1);
        assert!(parse_caps(Service::Mon, &long).is_err());
    }

    proptest! {
        #[test]
        fn any_text_never_panics(s in ".{0,200}") {
            for svc in Service::ALL {
                let _ = parse_caps(svc, &s);
            }
        }

        #[test]
        fn grammar_like_text_never_panics(s in "(allow|profile|command|pool|with|r|w|x|\\*|=|,|;|\"|'| |[a-z]{1,4})*") {
            for svc in Service::ALL {
                let _ = parse_caps(svc, &s);
            }
        }
    }
}
