//! Where an acceptor finds keys: the mon answers from its auth database,
//! an OSD or mgr from the rotating service secrets the mon gave it. Both,
//! and the tests, implement [`KeySource`].

use std::collections::BTreeMap;

use parking_lot::Mutex;

use crate::caps::Service;
use crate::key::CryptoKey;
use crate::server::SecretList;

/// A service ticket lives this long by default (Ceph's
/// `auth_service_ticket_ttl`, one hour).
pub const DEFAULT_TICKET_TTL_SECS: u64 = 3600;

pub trait KeySource: Send + Sync {
    /// An entity's long-term secret and its caps (`service -> text`); only
    /// the mon knows these.
    fn entity(&self, name: &str) -> Option<(CryptoKey, BTreeMap<String, String>)>;

    /// Rotating secret `id` of `service` (current or previous).
    fn service_secret(&self, service: Service, id: u64) -> Option<CryptoKey>;

    /// The newest secret of `service`, to seal new tickets with (the mon).
    fn current_service_secret(&self, service: Service) -> Option<(u64, CryptoKey)>;

    /// Every secret of `service` held, `(id, key, expires_unix_secs)`:
    /// what a daemon of that service is given.
    fn service_secrets(&self, service: Service) -> SecretList;

    /// A fresh global id for an authenticated session.
    fn new_global_id(&self) -> u64 {
        rand_u64()
    }

    fn ticket_ttl_secs(&self) -> u64 {
        DEFAULT_TICKET_TTL_SECS
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    // A failed OS RNG leaves zeros: a global id is a label, not a secret.
    let _ = crate::key::os_random(&mut b);
    u64::from_le_bytes(b) >> 1
}

/// Keys held in memory: entity secrets (for a mon) and rotating service
/// secrets (for any acceptor). Tests use it directly; daemons fill it
/// from what the mon grants.
#[derive(Default)]
pub struct MemKeySource {
    inner: Mutex<MemKeys>,
    ttl_secs: Option<u64>,
}

#[derive(Default)]
struct MemKeys {
    entities: BTreeMap<String, (CryptoKey, BTreeMap<String, String>)>,
    /// Per service: id -> (key, expires).
    secrets: BTreeMap<Service, BTreeMap<u64, (CryptoKey, u64)>>,
}

/// Rotating secrets kept per service (the current and the previous one;
/// Ceph keeps three, the middle being current).
pub const MAX_ROTATING_SECRETS: usize = 3;

impl MemKeySource {
    pub fn new() -> MemKeySource {
        MemKeySource::default()
    }

    pub fn with_ticket_ttl(ttl_secs: u64) -> MemKeySource {
        MemKeySource {
            ttl_secs: Some(ttl_secs),
            ..MemKeySource::default()
        }
    }

    pub fn add_entity(&self, name: &str, key: CryptoKey, caps: BTreeMap<String, String>) {
        self.inner
            .lock()
            .entities
            .insert(name.to_string(), (key, caps));
    }

    pub fn remove_entity(&self, name: &str) {
        self.inner.lock().entities.remove(name);
    }

    /// Adds (or replaces) service secret `id`, dropping the oldest beyond
    /// [`MAX_ROTATING_SECRETS`].
    pub fn add_service_secret(&self, service: Service, id: u64, key: CryptoKey, expires: u64) {
        let mut inner = self.inner.lock();
        let m = inner.secrets.entry(service).or_default();
        m.insert(id, (key, expires));
        while m.len() > MAX_ROTATING_SECRETS {
            m.pop_first();
        }
    }

    /// A new random secret for `service` with the next id: a rotation.
    pub fn rotate(&self, service: Service, expires: u64) -> Result<u64, crate::key::KeyError> {
        let key = CryptoKey::generate()?;
        let id = self
            .inner
            .lock()
            .secrets
            .get(&service)
            .and_then(|m| m.keys().next_back().copied())
            .unwrap_or(0)
            + 1;
        self.add_service_secret(service, id, key, expires);
        Ok(id)
    }
}

impl KeySource for MemKeySource {
    fn entity(&self, name: &str) -> Option<(CryptoKey, BTreeMap<String, String>)> {
        self.inner.lock().entities.get(name).cloned()
    }

    fn service_secret(&self, service: Service, id: u64) -> Option<CryptoKey> {
        let inner = self.inner.lock();
        inner
            .secrets
            .get(&service)?
            .get(&id)
            .map(|(k, _)| k.clone())
    }

    fn current_service_secret(&self, service: Service) -> Option<(u64, CryptoKey)> {
        let inner = self.inner.lock();
        let (id, (k, _)) = inner.secrets.get(&service)?.iter().next_back()?;
        Some((*id, k.clone()))
    }

    fn service_secrets(&self, service: Service) -> SecretList {
        let inner = self.inner.lock();
        inner
            .secrets
            .get(&service)
            .map(|m| m.iter().map(|(id, (k, e))| (*id, k.clone(), *e)).collect())
            .unwrap_or_default()
    }

    fn ticket_ttl_secs(&self) -> u64 {
        self.ttl_secs.unwrap_or(DEFAULT_TICKET_TTL_SECS)
    }
}

/// The secret new tickets are sealed under: the oldest one (`secrets` in
/// id order) that outlives a ticket issued now, else the newest. A secret
/// the mon just added is thus not used before the daemons, which renew
/// every quarter lifetime, have fetched it.
pub fn sealing_secret(
    secrets: &SecretList,
    now_unix_secs: u64,
    ttl_secs: u64,
) -> Option<(u64, CryptoKey)> {
    let until = now_unix_secs.saturating_add(ttl_secs);
    secrets
        .iter()
        .find(|(_, _, exp)| *exp > until)
        .or(secrets.last())
        .map(|(i, k, _)| (*i, k.clone()))
}

/// The mon's key source: its committed auth database, swapped whole on
/// every commit. All mons share the `mon.` key, so `mon.a`, `mon.b`, ...
/// authenticate with it.
pub struct AuthDbKeys {
    db: parking_lot::RwLock<std::sync::Arc<crate::authdb::AuthDb>>,
    ttl_secs: u64,
}

impl AuthDbKeys {
    pub fn new(db: crate::authdb::AuthDb, ttl_secs: u64) -> AuthDbKeys {
        AuthDbKeys {
            db: parking_lot::RwLock::new(std::sync::Arc::new(db)),
            ttl_secs,
        }
    }

    pub fn set(&self, db: crate::authdb::AuthDb) {
        *self.db.write() = std::sync::Arc::new(db);
    }

    pub fn get(&self) -> std::sync::Arc<crate::authdb::AuthDb> {
        self.db.read().clone()
    }
}

impl KeySource for AuthDbKeys {
    fn entity(&self, name: &str) -> Option<(CryptoKey, BTreeMap<String, String>)> {
        let db = self.get();
        let e = db.get(name).or_else(|| {
            name.strip_prefix("mon.")
                .filter(|id| !id.is_empty())
                .and_then(|_| db.get("mon."))
        })?;
        Some((e.key, e.caps))
    }

    fn service_secret(&self, service: Service, id: u64) -> Option<CryptoKey> {
        self.get()
            .service_secrets(service)
            .into_iter()
            .find(|(i, _, _)| *i == id)
            .map(|(_, k, _)| k)
    }

    fn current_service_secret(&self, service: Service) -> Option<(u64, CryptoKey)> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        sealing_secret(&self.get().service_secrets(service), now, self.ttl_secs)
    }

    fn service_secrets(&self, service: Service) -> SecretList {
        self.get().service_secrets(service)
    }

    fn ticket_ttl_secs(&self) -> u64 {
        self.ttl_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_secrets_wait_before_sealing() {
        let k = |b: u8| CryptoKey::from_secret([b; crate::key::SECRET_BYTES], 0, 0);
        // Secret 1 outlives a ticket issued at 1000 (ttl 100); 2 is newer.
        let list: SecretList = vec![(1, k(1), 1150), (2, k(2), 1300)];
        assert_eq!(sealing_secret(&list, 1000, 100).map(|s| s.0), Some(1));
        // Half a lifetime later secret 1 no longer outlives a ticket.
        assert_eq!(sealing_secret(&list, 1050, 100).map(|s| s.0), Some(2));
        // None outlives one: the newest.
        assert_eq!(sealing_secret(&list, 1250, 100).map(|s| s.0), Some(2));
        assert!(sealing_secret(&Vec::new(), 0, 100).is_none());
    }
}
