//! The mon's auth database: every entity's key and caps, and the rotating
//! service secrets that tickets are sealed with. A plain value: the mon
//! changes a copy (a pending version), commits it through its replicated
//! log, and every mon applies the same bytes. Operations return Ceph's
//! errors and messages.

use std::collections::BTreeMap;

use kalmar_common::encoding::{Decode, DecodeError, Decoder, Encode};
use kalmar_common::impl_versioned;

use crate::caps::{EntityCaps, Service};
use crate::key::{CryptoKey, KeyError, ENCODED_KEY_BYTES};
use crate::keyring::{valid_entity_name, Keyring, KeyringEntry};

/// Entities held at most: a bound on the database (and so on each commit,
/// which carries it whole).
pub const MAX_ENTITIES: usize = 100_000;

pub const ENOENT: i32 = -2;
pub const EINVAL: i32 = -22;
pub const EEXIST: i32 = -17;

/// A refused operation: Ceph's return value and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct AuthDbError {
    pub retval: i32,
    pub msg: String,
}

fn err(retval: i32, msg: impl Into<String>) -> AuthDbError {
    AuthDbError {
        retval,
        msg: msg.into(),
    }
}

/// A key in its Ceph encoding (how the database stores it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredKey([u8; ENCODED_KEY_BYTES]);

impl Encode for StoredKey {
    fn encode(&self, buf: &mut Vec<u8>) {
        self.0.encode(buf)
    }
}

impl Decode for StoredKey {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let raw = <[u8; ENCODED_KEY_BYTES]>::decode(d)?;
        CryptoKey::decode(&raw).map_err(|e: KeyError| DecodeError::Invalid {
            what: "stored key",
            detail: e.to_string(),
        })?;
        Ok(StoredKey(raw))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredEntity {
    key: StoredKey,
    caps: BTreeMap<String, String>,
}
impl_versioned!(StoredEntity, "auth entity", version = 1, compat = 1, { key, caps });

#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredSecret {
    key: StoredKey,
    expires_unix_secs: u64,
}
impl_versioned!(StoredSecret, "service secret", version = 1, compat = 1, { key, expires_unix_secs });

/// The database. `version` grows by one per committed change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthDb {
    pub version: u64,
    entities: BTreeMap<String, StoredEntity>,
    /// Per service (as its `u8`): secret id -> secret.
    secrets: BTreeMap<u8, BTreeMap<u64, StoredSecret>>,
}
impl_versioned!(AuthDb, "auth db", version = 1, compat = 1, { version, entities, secrets });

fn key_of(s: &StoredKey) -> CryptoKey {
    // Validated when stored or decoded.
    CryptoKey::decode(&s.0).unwrap_or_else(|_| CryptoKey::from_secret([0; 16], 0, 0))
}

fn service_byte(s: Service) -> u8 {
    match s {
        Service::Mon => 1,
        Service::Osd => 2,
        Service::Mgr => 3,
    }
}

impl AuthDb {
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// An entity's key and caps.
    pub fn get(&self, entity: &str) -> Option<KeyringEntry> {
        self.entities.get(entity).map(|e| KeyringEntry {
            key: key_of(&e.key),
            caps: e.caps.clone(),
        })
    }

    /// Every entity, in name order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, KeyringEntry)> + '_ {
        self.entities.iter().map(|(n, e)| {
            (
                n.as_str(),
                KeyringEntry {
                    key: key_of(&e.key),
                    caps: e.caps.clone(),
                },
            )
        })
    }

    /// The named entities as a keyring (`auth get`, `get-or-create`).
    pub fn keyring_of(&self, entity: &str) -> Option<Keyring> {
        let mut ring = Keyring::default();
        ring.insert(entity, self.get(entity)?);
        Some(ring)
    }

    fn check_new(entity: &str, caps: &BTreeMap<String, String>) -> Result<(), AuthDbError> {
        if !valid_entity_name(entity) {
            return Err(err(EINVAL, format!("bad entity name '{entity}'")));
        }
        EntityCaps::parse(caps).map_err(|e| err(EINVAL, e.to_string()))?;
        Ok(())
    }

    fn put(
        &mut self,
        entity: &str,
        key: &CryptoKey,
        caps: BTreeMap<String, String>,
    ) -> Result<(), AuthDbError> {
        if !self.entities.contains_key(entity) && self.entities.len() >= MAX_ENTITIES {
            return Err(err(
                EINVAL,
                format!("the auth database holds {MAX_ENTITIES} entities already"),
            ));
        }
        self.entities.insert(
            entity.to_string(),
            StoredEntity {
                key: StoredKey(key.encode()),
                caps,
            },
        );
        Ok(())
    }

    /// `auth get-or-create`: the existing entry when its caps match, else a
    /// new key. Returns whether it changed the database.
    pub fn get_or_create(
        &mut self,
        entity: &str,
        caps: BTreeMap<String, String>,
    ) -> Result<bool, AuthDbError> {
        Self::check_new(entity, &caps)?;
        if let Some(e) = self.entities.get(entity) {
            if !caps.is_empty() && e.caps != caps {
                let svc = caps
                    .iter()
                    .find(|(s, c)| e.caps.get(*s) != Some(*c))
                    .or_else(|| e.caps.iter().find(|(s, _)| !caps.contains_key(*s)))
                    .map(|(s, _)| s.clone())
                    .unwrap_or_default();
                return Err(err(
                    EINVAL,
                    format!("key for {entity} exists but cap {svc} does not match"),
                ));
            }
            return Ok(false);
        }
        let key = CryptoKey::generate().map_err(|e| err(EINVAL, e.to_string()))?;
        self.put(entity, &key, caps)?;
        Ok(true)
    }

    /// `auth add`: registers a given key (idempotent for the same key).
    pub fn add(
        &mut self,
        entity: &str,
        key: &CryptoKey,
        caps: BTreeMap<String, String>,
    ) -> Result<bool, AuthDbError> {
        Self::check_new(entity, &caps)?;
        if let Some(e) = self.entities.get(entity) {
            if key_of(&e.key) != *key {
                return Err(err(
                    EINVAL,
                    format!("entity {entity} exists but key does not match"),
                ));
            }
            if caps.is_empty() || e.caps == caps {
                return Ok(false);
            }
            return Err(err(
                EINVAL,
                format!("entity {entity} exists but caps do not match"),
            ));
        }
        self.put(entity, key, caps)?;
        Ok(true)
    }

    /// `auth caps`: replaces every cap of an existing entity.
    pub fn set_caps(
        &mut self,
        entity: &str,
        caps: BTreeMap<String, String>,
    ) -> Result<(), AuthDbError> {
        Self::check_new(entity, &caps)?;
        match self.entities.get_mut(entity) {
            Some(e) => {
                e.caps = caps;
                Ok(())
            }
            None => Err(err(ENOENT, format!("couldn't find entity {entity}"))),
        }
    }

    /// `auth rm`: whether the entity existed.
    pub fn remove(&mut self, entity: &str) -> bool {
        self.entities.remove(entity).is_some()
    }

    /// Adds a fresh secret for `service` with the next id, keeping the
    /// newest `keep`.
    pub fn rotate(
        &mut self,
        service: Service,
        expires_unix_secs: u64,
        keep: usize,
    ) -> Result<u64, KeyError> {
        let key = CryptoKey::generate()?;
        let m = self.secrets.entry(service_byte(service)).or_default();
        let id = m.keys().next_back().copied().unwrap_or(0) + 1;
        m.insert(
            id,
            StoredSecret {
                key: StoredKey(key.encode()),
                expires_unix_secs,
            },
        );
        while m.len() > keep.max(1) {
            m.pop_first();
        }
        Ok(id)
    }

    /// Service secrets `(id, key, expires)`, oldest first.
    pub fn service_secrets(&self, service: Service) -> Vec<(u64, CryptoKey, u64)> {
        self.secrets
            .get(&service_byte(service))
            .map(|m| {
                m.iter()
                    .map(|(id, s)| (*id, key_of(&s.key), s.expires_unix_secs))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// When the newest secret of `service` was made to expire (0: none).
    pub fn newest_secret_expiry(&self, service: Service) -> u64 {
        self.secrets
            .get(&service_byte(service))
            .and_then(|m| m.values().next_back())
            .map(|s| s.expires_unix_secs)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn caps(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn ceph_semantics() {
        let mut db = AuthDb::default();
        assert!(db
            .get_or_create("client.a", caps(&[("mon", "allow r")]))
            .expect("new"));
        let key = db.get("client.a").expect("held").key;
        // Same caps: the same key back, nothing changed.
        assert!(!db
            .get_or_create("client.a", caps(&[("mon", "allow r")]))
            .expect("same"));
        assert!(!db
            .get_or_create("client.a", BTreeMap::new())
            .expect("no caps"));
        assert_eq!(db.get("client.a").expect("held").key, key);
        let e = db
            .get_or_create("client.a", caps(&[("mon", "allow rw")]))
            .expect_err("mismatch");
        assert_eq!(e.msg, "key for client.a exists but cap mon does not match");
        assert_eq!(
            db.get_or_create("client.b", caps(&[("mon", "allow q")]))
                .expect_err("bad caps")
                .retval,
            EINVAL
        );
        assert_eq!(
            db.get_or_create("nobody", BTreeMap::new())
                .expect_err("name")
                .retval,
            EINVAL
        );
        db.set_caps("client.a", caps(&[("osd", "allow r pool=x")]))
            .expect("caps");
        assert_eq!(
            db.get("client.a").expect("held").caps,
            caps(&[("osd", "allow r pool=x")])
        );
        assert_eq!(
            db.set_caps("client.zz", BTreeMap::new())
                .expect_err("missing")
                .retval,
            ENOENT
        );
        let other = CryptoKey::generate().expect("rng");
        assert_eq!(
            db.add("client.a", &other, BTreeMap::new())
                .expect_err("key")
                .retval,
            EINVAL
        );
        assert!(!db.add("client.a", &key, BTreeMap::new()).expect("same key"));
        assert!(db
            .add("osd.1", &other, caps(&[("mon", "allow profile osd")]))
            .expect("add"));
        assert!(db.remove("client.a"));
        assert!(!db.remove("client.a"));
        assert_eq!(db.len(), 1);
    }

    #[test]
    fn encoding_round_trips_and_rotation_keeps_a_window() {
        let mut db = AuthDb::default();
        db.get_or_create("client.admin", caps(&[("mon", "allow *")]))
            .expect("new");
        for _ in 0..5 {
            db.rotate(Service::Osd, 99, 3).expect("rng");
        }
        let ids: Vec<u64> = db
            .service_secrets(Service::Osd)
            .iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(ids, vec![3, 4, 5]);
        assert_eq!(db.newest_secret_expiry(Service::Osd), 99);
        db.version = 7;
        assert_eq!(AuthDb::from_bytes(&db.to_bytes()).expect("rt"), db);
    }

    proptest! {
        #[test]
        fn decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = AuthDb::from_bytes(&b);
        }
    }
}
