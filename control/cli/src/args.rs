//! The CLI's global options: mon address, conf file, output format and
//! time bounds, shared by every command group.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail};
use kalmar_common::config::Conf;

/// Output format (`-f/--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Plain,
    Json,
    JsonPretty,
}

impl Format {
    pub fn parse(s: &str) -> anyhow::Result<Format> {
        match s {
            "plain" => Ok(Format::Plain),
            "json" => Ok(Format::Json),
            "json-pretty" => Ok(Format::JsonPretty),
            other => bail!("unknown format '{other}': use plain, json or json-pretty"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Json => "json",
            Format::JsonPretty => "json-pretty",
        }
    }

    pub fn is_json(self) -> bool {
        self != Format::Plain
    }
}

/// Everything a command group may need besides its own words.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub mon: Option<String>,
    pub conf: Conf,
    pub format: Format,
    /// Bound on waiting for a command's reply.
    pub timeout: Duration,
    /// Bound on reaching the mon.
    pub connect_timeout: Duration,
    pub admin_socket: Option<PathBuf>,
    /// Who the CLI authenticates as (`-n/--name`, default `client.admin`).
    pub name: String,
    /// `-k/--keyring`: the keyring to take the key from (else the conf's
    /// `keyring`, else Ceph's search path next to the conf and in
    /// /etc/kalmar).
    pub keyring: Option<PathBuf>,
}

impl Ctx {
    /// The entity's key, looked up as described at [`Ctx::keyring`]:
    /// `None` when no keyring holds it (then the CLI offers no
    /// authentication, which a cluster with auth off accepts).
    pub fn client_auth(&self) -> anyhow::Result<Option<std::sync::Arc<kalmar_auth::ClientAuth>>> {
        use kalmar_auth::keyring::find_key;
        let found = match &self.keyring {
            Some(p) => {
                let ring = kalmar_auth::Keyring::read_file(p)?;
                let e = ring.get(&self.name).ok_or_else(|| {
                    anyhow!("keyring {} holds no key for {}", p.display(), self.name)
                })?;
                Some(e.key.clone())
            }
            None => {
                let opt = self.conf.get::<String>(&self.name, "keyring")?;
                let conf_dir = self.conf.path().and_then(|p| p.parent());
                find_key(&self.name, opt.as_deref(), conf_dir)?.map(|(_, e)| e.key)
            }
        };
        Ok(found.map(|k| std::sync::Arc::new(kalmar_auth::ClientAuth::new(&self.name, Some(k)))))
    }

    /// The entity name as the messenger takes it (`client.admin`).
    pub fn entity(&self) -> anyhow::Result<kalmar_msgr::EntityName> {
        self.name.parse().map_err(|e| anyhow!("--name: {e}"))
    }
    /// The mons' addresses: `-m A[,B,...]`, else `KALMAR_MON`, else the
    /// conf's `mon_host` (a string or a list).
    pub fn mon_addrs(&self) -> anyhow::Result<Vec<SocketAddr>> {
        let (raw, from) = match (&self.mon, std::env::var("KALMAR_MON").ok()) {
            (Some(m), _) => (m.clone(), "-m"),
            (None, Some(env)) => (env, "KALMAR_MON"),
            (None, None) => {
                let hosts = kalmar_common::config::mon_hosts(&self.conf, "client")?;
                if hosts.is_empty() {
                    bail!(
                        "no mon address: pass -m IP:PORT[,IP:PORT...], set KALMAR_MON, or use --conf with mon_host"
                    );
                }
                return Ok(hosts);
            }
        };
        kalmar_common::config::parse_mon_list(&raw).map_err(|e| anyhow!("{e} (from {from})"))
    }

    /// The first mon's address (for tools that talk to one mon).
    pub fn mon_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.mon_addrs()?[0])
    }
}

/// Pulls `-f X`, `--format X` and `--format=X` out of `words` (Ceph
/// accepts the format anywhere on the line).
pub fn take_format(words: &mut Vec<String>) -> anyhow::Result<Option<Format>> {
    let mut found = None;
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        if w == "-f" || w == "--format" {
            let v = words
                .get(i + 1)
                .cloned()
                .ok_or_else(|| anyhow!("{w} needs a value: plain, json or json-pretty"))?;
            found = Some(Format::parse(&v)?);
            words.drain(i..i + 2);
        } else if let Some(v) = w.strip_prefix("--format=") {
            found = Some(Format::parse(v)?);
            words.remove(i);
        } else {
            i += 1;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn format_anywhere() {
        let mut w = words("osd dump -f json");
        assert_eq!(take_format(&mut w).expect("ok"), Some(Format::Json));
        assert_eq!(w, words("osd dump"));
        let mut w = words("--format=json-pretty status");
        assert_eq!(take_format(&mut w).expect("ok"), Some(Format::JsonPretty));
        assert_eq!(w, words("status"));
        assert!(take_format(&mut words("status -f")).is_err());
        assert!(take_format(&mut words("status -f yaml")).is_err());
        let mut w = words("osd tree");
        assert_eq!(take_format(&mut w).expect("ok"), None);
    }

    #[test]
    fn mon_address_sources() {
        let ctx = |mon: Option<&str>, conf: &str| Ctx {
            mon: mon.map(String::from),
            conf: Conf::parse(conf).expect("toml"),
            format: Format::Plain,
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            admin_socket: None,
            name: "client.admin".into(),
            keyring: None,
        };
        // KALMAR_MON is not set in tests.
        if std::env::var("KALMAR_MON").is_err() {
            let a = ctx(None, "[global]\nmon_host = \"127.0.0.1:6789\"\n")
                .mon_addr()
                .expect("conf");
            assert_eq!(a.port(), 6789);
            assert!(ctx(None, "").mon_addr().is_err());
        }
        let a = ctx(Some("[v2:127.0.0.1:7000],127.0.0.2:1"), "")
            .mon_addrs()
            .expect("flag");
        assert_eq!(a[0].to_string(), "127.0.0.1:7000");
        assert_eq!(a.len(), 2);
        let l = ctx(
            None,
            "[global]\nmon_host = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n",
        )
        .mon_addrs();
        if std::env::var("KALMAR_MON").is_err() {
            assert_eq!(l.expect("conf list").len(), 2);
        }
        assert!(ctx(Some("localhost"), "").mon_addr().is_err());
    }
}
