//! The conf file shared by every daemon and the CLI: TOML with `[global]`,
//! `[mon]`, `[mgr]`, `[osd]` and optional per-daemon sections such as
//! `["osd.3"]`. A key is looked up in the most specific section first, then
//! the daemon type's, then `[global]`. Command-line flags override all of
//! it; that is each binary's business.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("cannot read conf file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("conf file {path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("conf option {key} in [{section}] has the wrong type: {detail}")]
    Type {
        section: String,
        key: String,
        detail: String,
    },
}

/// A parsed conf file (or an empty one).
#[derive(Debug, Clone, Default)]
pub struct Conf {
    path: Option<PathBuf>,
    table: toml::Table,
}

impl Conf {
    pub fn empty() -> Conf {
        Conf::default()
    }

    pub fn load(path: &Path) -> Result<Conf, ConfError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Conf::parse(&text)
            .map_err(|source| ConfError::Parse {
                path: path.to_path_buf(),
                source: Box::new(source),
            })
            .map(|mut c| {
                c.path = Some(path.to_path_buf());
                c
            })
    }

    pub fn parse(text: &str) -> Result<Conf, toml::de::Error> {
        Ok(Conf {
            path: None,
            table: text.parse::<toml::Table>()?,
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Looks `key` up for daemon `entity` (e.g. `osd.3`, `mon.a`, or just
    /// `osd`): `[osd.3]`, then `[osd]`, then `[global]`.
    pub fn get<T: DeserializeOwned>(
        &self,
        entity: &str,
        key: &str,
    ) -> Result<Option<T>, ConfError> {
        let ty = entity.split('.').next().unwrap_or(entity);
        for section in [entity, ty, "global"] {
            if let Some(v) = self.table.get(section).and_then(|s| s.get(key)) {
                return v
                    .clone()
                    .try_into()
                    .map(Some)
                    .map_err(|e: toml::de::Error| ConfError::Type {
                        section: section.to_string(),
                        key: key.to_string(),
                        detail: e.to_string(),
                    });
            }
        }
        Ok(None)
    }

    /// Like [`Conf::get`] with a default.
    pub fn get_or<T: DeserializeOwned>(
        &self,
        entity: &str,
        key: &str,
        default: T,
    ) -> Result<T, ConfError> {
        Ok(self.get(entity, key)?.unwrap_or(default))
    }

    /// A number that TOML may hold as an integer or a float (`3`, `0.5`).
    pub fn get_number(&self, entity: &str, key: &str) -> Result<Option<f64>, ConfError> {
        match self.get::<toml::Value>(entity, key)? {
            None => Ok(None),
            Some(toml::Value::Integer(i)) => Ok(Some(i as f64)),
            Some(toml::Value::Float(f)) => Ok(Some(f)),
            Some(other) => Err(ConfError::Type {
                section: entity.to_string(),
                key: key.to_string(),
                detail: format!("expected a number, got {other}"),
            }),
        }
    }

    /// A duration given in seconds, whole or fractional (`20`, `0.5`).
    pub fn get_secs(
        &self,
        entity: &str,
        key: &str,
    ) -> Result<Option<std::time::Duration>, ConfError> {
        match self.get_number(entity, key)? {
            None => Ok(None),
            Some(s) if (0.0..1e12).contains(&s) => Ok(Some(std::time::Duration::from_secs_f64(s))),
            Some(s) => Err(ConfError::Type {
                section: entity.to_string(),
                key: key.to_string(),
                detail: format!("{s} is not a duration in seconds"),
            }),
        }
    }

    /// The raw table (for `config show`-style dumps).
    pub fn table(&self) -> &toml::Table {
        &self.table
    }
}

/// Parses a list of mon addresses: `IP:PORT[,IP:PORT...]` (spaces and
/// Ceph's `[v2:IP:PORT/0]` decorations are accepted).
pub fn parse_mon_list(s: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for part in s.split([',', ' ']).map(str::trim).filter(|p| !p.is_empty()) {
        let bare = part
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_start_matches("v2:")
            .trim_start_matches("v1:");
        let bare = bare.split('/').next().unwrap_or(bare);
        let addr: SocketAddr = bare
            .parse()
            .map_err(|_| format!("mon address '{part}' is not IP:PORT"))?;
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    if out.is_empty() {
        return Err(format!("no mon address in '{s}'"));
    }
    Ok(out)
}

/// The conf's `mon_host` for `entity`: a string (`"IP:PORT"` or
/// `"IP:PORT,IP:PORT"`) or a list of strings. Empty when unset.
pub fn mon_hosts(conf: &Conf, entity: &str) -> Result<Vec<SocketAddr>, ConfError> {
    let bad = |detail: String| ConfError::Type {
        section: entity.to_string(),
        key: "mon_host".into(),
        detail,
    };
    match conf.get::<toml::Value>(entity, "mon_host")? {
        None => Ok(Vec::new()),
        Some(toml::Value::String(s)) => parse_mon_list(&s).map_err(bad),
        Some(toml::Value::Array(a)) => {
            let mut parts = Vec::new();
            for v in a {
                match v {
                    toml::Value::String(s) => parts.push(s),
                    other => return Err(bad(format!("expected strings, got {other}"))),
                }
            }
            parse_mon_list(&parts.join(",")).map_err(bad)
        }
        Some(other) => Err(bad(format!("expected a string or a list, got {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mon_host_lists() {
        let c =
            Conf::parse("[global]\nmon_host = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n").expect("toml");
        assert_eq!(mon_hosts(&c, "osd.1").expect("ok").len(), 2);
        let c = Conf::parse("[global]\nmon_host = \"127.0.0.1:1, [v2:127.0.0.1:2/0]\"\n")
            .expect("toml");
        let h = mon_hosts(&c, "client").expect("ok");
        assert_eq!(h[1], "127.0.0.1:2".parse::<SocketAddr>().expect("addr"));
        assert!(mon_hosts(&Conf::parse("[global]\nmon_host = 3\n").expect("toml"), "x").is_err());
        assert!(mon_hosts(&Conf::empty(), "x").expect("ok").is_empty());
        assert!(parse_mon_list("nowhere").is_err());
    }

    #[test]
    fn lookup_order() {
        let c = Conf::parse(
            r#"
[global]
mon_host = "127.0.0.1:6789"
log_level = "info"
[osd]
log_level = "debug"
["osd.3"]
log_level = "trace"
"#,
        )
        .expect("parse");
        assert_eq!(
            c.get::<String>("osd.3", "log_level")
                .expect("ok")
                .as_deref(),
            Some("trace")
        );
        assert_eq!(
            c.get::<String>("osd.1", "log_level")
                .expect("ok")
                .as_deref(),
            Some("debug")
        );
        assert_eq!(
            c.get::<String>("mon.a", "log_level")
                .expect("ok")
                .as_deref(),
            Some("info")
        );
        assert_eq!(
            c.get::<String>("mon.a", "mon_host").expect("ok").as_deref(),
            Some("127.0.0.1:6789")
        );
        assert!(c.get::<u32>("mon.a", "log_level").is_err());
        assert_eq!(c.get_or("mgr", "missing", 7u32).expect("ok"), 7);
    }

    #[test]
    fn numbers_and_seconds() {
        let c = Conf::parse("[mon]\na = 3\nb = 0.5\nc = \"x\"\nd = -1\n").expect("parse");
        assert_eq!(c.get_number("mon.a", "a").expect("ok"), Some(3.0));
        assert_eq!(
            c.get_secs("mon.a", "b").expect("ok"),
            Some(std::time::Duration::from_millis(500))
        );
        assert_eq!(c.get_secs("mon.a", "missing").expect("ok"), None);
        assert!(c.get_number("mon.a", "c").is_err());
        assert!(c.get_secs("mon.a", "d").is_err());
    }
}
