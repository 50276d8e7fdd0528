//! Keyring files in Ceph's format:
//!
//! ```text
//! [client.admin]
//!     key = AQB...==
//!     caps mon = "allow *"
//!     caps osd = "allow *"
//! ```
//!
//! Sections name entities; each holds one `key` and any `caps SERVICE`
//! lines (the value quoted or not). `#` and `;` start comments. A keyring
//! holds secrets, so [`Keyring::write_file`] creates it readable by its
//! owner only.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::key::{CryptoKey, KeyError};

/// Largest keyring file read (a keyring of thousands of entities is still
/// far below this); a larger file is refused rather than read whole.
pub const MAX_KEYRING_BYTES: usize = 4 << 20;
/// Longest entity name accepted in a section header.
pub const MAX_ENTITY_NAME_BYTES: usize = 128;

/// One entity's key and caps (`service -> cap text`, e.g. `mon -> allow r`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringEntry {
    pub key: CryptoKey,
    pub caps: BTreeMap<String, String>,
}

/// Entities and their keys, in name order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Keyring {
    pub entries: BTreeMap<String, KeyringEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("line {line}: {reason}")]
    Syntax { line: usize, reason: String },
    #[error("line {line}: {source}")]
    Key { line: usize, source: KeyError },
    #[error("[{0}] has no key")]
    NoKey(String),
    #[error("keyring is {0} bytes, more than the {MAX_KEYRING_BYTES} accepted")]
    TooLarge(usize),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Whether `name` looks like an entity name (`TYPE.ID`, `mon.` allowed).
pub fn valid_entity_name(name: &str) -> bool {
    let Some((ty, id)) = name.split_once('.') else {
        return false;
    };
    name.len() <= MAX_ENTITY_NAME_BYTES
        && ["mon", "osd", "mgr", "client", "mds"].contains(&ty)
        && (id.is_empty() && ty == "mon" || !id.is_empty())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl Keyring {
    pub fn get(&self, entity: &str) -> Option<&KeyringEntry> {
        self.entries.get(entity)
    }

    pub fn insert(&mut self, entity: &str, entry: KeyringEntry) {
        self.entries.insert(entity.to_string(), entry);
    }

    /// Parses keyring text.
    pub fn parse(text: &str) -> Result<Keyring, KeyringError> {
        if text.len() > MAX_KEYRING_BYTES {
            return Err(KeyringError::TooLarge(text.len()));
        }
        // Per section: its key (once seen) and caps.
        let mut sections: Vec<(String, Option<CryptoKey>, BTreeMap<String, String>)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let syntax = |reason: String| KeyringError::Syntax {
                line: line_no,
                reason,
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .ok_or_else(|| syntax("section header without ']'".into()))?
                    .trim();
                if !valid_entity_name(name) {
                    return Err(syntax(format!("'{name}' is not an entity name")));
                }
                sections.push((name.to_string(), None, BTreeMap::new()));
                continue;
            }
            let (lhs, rhs) = line
                .split_once('=')
                .ok_or_else(|| syntax("expected 'key = value'".into()))?;
            let Some(section) = sections.last_mut() else {
                return Err(syntax("setting before any [entity] section".into()));
            };
            let lhs: Vec<&str> = lhs.split_whitespace().collect();
            let value = unquote(rhs.trim());
            match lhs.as_slice() {
                ["key"] => {
                    let key = value.parse().map_err(|source| KeyringError::Key {
                        line: line_no,
                        source,
                    })?;
                    section.1 = Some(key);
                }
                ["caps", service] => {
                    section.2.insert(service.to_string(), value.to_string());
                }
                // Ceph keyrings of old carried `auid`; nothing uses it.
                ["auid"] => {}
                other => return Err(syntax(format!("unknown setting '{}'", other.join(" ")))),
            }
        }
        let mut ring = Keyring::default();
        for (name, key, caps) in sections {
            let key = key.ok_or_else(|| KeyringError::NoKey(name.clone()))?;
            ring.entries.insert(name, KeyringEntry { key, caps });
        }
        Ok(ring)
    }

    /// The keyring as Ceph writes it.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (name, e) in &self.entries {
            out.push_str(&entry_text(name, e));
        }
        out
    }

    /// Reads a keyring file (bounded by [`MAX_KEYRING_BYTES`]).
    pub fn read_file(path: &Path) -> Result<Keyring, KeyringError> {
        let io = |source| KeyringError::Io {
            path: path.display().to_string(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_KEYRING_BYTES as u64 {
            return Err(KeyringError::TooLarge(
                usize::try_from(len).unwrap_or(usize::MAX),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Keyring::parse(&text)
    }

    /// Writes the keyring, readable and writable by its owner only (mode
    /// 0600, also when the file existed with a wider mode).
    pub fn write_file(&self, path: &Path) -> Result<(), KeyringError> {
        write_secret_file(path, self.to_text().as_bytes())
    }
}

/// Where an entity's keyring is looked for, in order (Ceph's `keyring`
/// option semantics): the conf's `keyring` (comma-separated, `$name`
/// replaced by the entity) if set; else `kalmar.$name.keyring`,
/// `kalmar.keyring` and `keyring` next to the conf file, then in
/// `/etc/kalmar`.
pub fn search_paths(
    entity: &str,
    keyring_opt: Option<&str>,
    conf_dir: Option<&Path>,
) -> Vec<std::path::PathBuf> {
    if let Some(opt) = keyring_opt.filter(|o| !o.trim().is_empty()) {
        return opt
            .split(',')
            .map(|p| std::path::PathBuf::from(p.trim().replace("$name", entity)))
            .collect();
    }
    let names = [
        format!("kalmar.{entity}.keyring"),
        "kalmar.keyring".to_string(),
        "keyring".to_string(),
    ];
    let etc = Path::new("/etc/kalmar");
    conf_dir
        .into_iter()
        .chain(std::iter::once(etc))
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .collect()
}

/// The first keyring on the search path that holds `entity`'s key.
pub fn find_key(
    entity: &str,
    keyring_opt: Option<&str>,
    conf_dir: Option<&Path>,
) -> Result<Option<(std::path::PathBuf, KeyringEntry)>, KeyringError> {
    for p in search_paths(entity, keyring_opt, conf_dir) {
        if !p.exists() {
            continue;
        }
        if let Some(e) = Keyring::read_file(&p)?.get(entity) {
            return Ok(Some((p, e.clone())));
        }
    }
    Ok(None)
}

/// One `[entity]` section as Ceph prints it (tab-indented, caps quoted).
pub fn entry_text(name: &str, e: &KeyringEntry) -> String {
    let mut out = format!("[{name}]\n\tkey = {}\n", e.key);
    for (service, cap) in &e.caps {
        out.push_str(&format!("\tcaps {service} = \"{cap}\"\n"));
    }
    out
}

/// Writes `bytes` to `path` with mode 0600.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), KeyringError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |source| KeyringError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    // `mode` applies only to a file this call created.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ADMIN: &str = "[client.admin]\n\tkey = AQBGsNplAAAAABAAyXuVR0aaSeBu0vHq8QbNNg==\n\tcaps mds = \"allow *\"\n\tcaps mgr = \"allow *\"\n\tcaps mon = \"allow *\"\n\tcaps osd = \"allow *\"\n";

    #[test]
    fn parses_and_writes_cephs_format() {
        let ring = Keyring::parse(ADMIN).expect("valid");
        let e = ring.get("client.admin").expect("entry");
        assert_eq!(e.caps.get("mon").map(String::as_str), Some("allow *"));
        assert_eq!(e.caps.len(), 4);
        assert_eq!(ring.to_text(), ADMIN);
    }

    #[test]
    fn comments_unquoted_caps_and_mon_dot() {
        let text = "# made by hand\n[mon.]\nkey=AQBGsNplAAAAABAAyXuVR0aaSeBu0vHq8QbNNg==\n; note\n[osd.3]\n  key = AQBGsNplAAAAABAAyXuVR0aaSeBu0vHq8QbNNg==\n  caps mon = allow profile osd\n";
        let ring = Keyring::parse(text).expect("valid");
        assert!(ring.get("mon.").is_some());
        assert_eq!(
            ring.get("osd.3")
                .and_then(|e| e.caps.get("mon"))
                .map(String::as_str),
            Some("allow profile osd")
        );
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("key = x\n", "before any"),
            ("[client.a\n", "']'"),
            ("[disk.1]\n", "entity"),
            ("[client.a]\nkey\n", "key = value"),
            ("[client.a]\nsecret = 1\n", "unknown setting"),
            ("[client.a]\ncaps mon = \"allow r\"\n", "no key"),
        ];
        for (text, want) in cases {
            let err = Keyring::parse(text).expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let err = Keyring::parse("[client.a]\nkey = AQAA\n").expect_err("short key");
        assert!(matches!(err, KeyringError::Key { line: 2, .. }), "{err}");
    }

    #[test]
    fn written_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("keyring");
        std::fs::write(&path, "old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let ring = Keyring::parse(ADMIN).expect("valid");
        ring.write_file(&path).expect("write");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Keyring::read_file(&path).expect("read"), ring);
    }

    #[test]
    fn search_path_follows_the_keyring_option_then_the_conf_dir() {
        let p = search_paths("client.admin", Some("/x/$name.keyring, /y/k"), None);
        assert_eq!(
            p,
            vec![
                std::path::PathBuf::from("/x/client.admin.keyring"),
                "/y/k".into()
            ]
        );
        let p = search_paths("osd.1", None, Some(Path::new("/c")));
        assert_eq!(p[0], std::path::PathBuf::from("/c/kalmar.osd.1.keyring"));
        assert_eq!(
            p[3],
            std::path::PathBuf::from("/etc/kalmar/kalmar.osd.1.keyring")
        );
        let dir = tempfile::tempdir().expect("tmp");
        let ring = Keyring::parse(ADMIN).expect("valid");
        ring.write_file(&dir.path().join("kalmar.keyring"))
            .expect("write");
        let (path, e) = find_key("client.admin", None, Some(dir.path()))
            .expect("read")
            .expect("found");
        assert_eq!(path, dir.path().join("kalmar.keyring"));
        assert_eq!(Some(&e), ring.get("client.admin"));
        assert!(find_key("client.nobody", None, Some(dir.path()))
            .expect("read")
            .is_none());
    }

    proptest! {
        #[test]
        fn any_text_never_panics(s in "[\\[\\]a-z.=\" \n#A-Za-z0-9+/]{0,300}") {
            let _ = Keyring::parse(&s);
        }

        #[test]
        fn round_trips(secret in any::<[u8; 16]>(), id in "[a-z0-9]{1,12}", cap in "allow [rwx]{1,3}") {
            let mut ring = Keyring::default();
            let mut caps = BTreeMap::new();
            caps.insert("mon".to_string(), cap);
            ring.insert(&format!("client.{id}"), KeyringEntry { key: CryptoKey::from_secret(secret, 1, 2), caps });
            prop_assert_eq!(Keyring::parse(&ring.to_text()).expect("parse"), ring);
        }
    }
}
