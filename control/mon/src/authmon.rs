//! The auth service: the committed auth database, a pending copy that
//! commands change (committed through the log with the map epochs, like
//! every mon change), and the key source the mon's listener checks peers
//! with (swapped on every commit).

use std::sync::Arc;

use kalmar_auth::authdb::{AuthDb, AuthDbError};
use kalmar_auth::{AuthDbKeys, KeySource, Service};

/// Service secrets kept (previous, current, next in Ceph's terms): a
/// ticket sealed under any of them still opens, so a rotation does not
/// break live sessions.
pub const ROTATING_SECRETS_KEPT: usize = 3;

pub struct AuthMon {
    committed: AuthDb,
    pending: Option<AuthDb>,
    keys: Arc<AuthDbKeys>,
    ticket_ttl_secs: u64,
}

impl AuthMon {
    pub fn new(db: AuthDb, ticket_ttl_secs: u64) -> AuthMon {
        AuthMon {
            keys: Arc::new(AuthDbKeys::new(db.clone(), ticket_ttl_secs)),
            committed: db,
            pending: None,
            ticket_ttl_secs,
        }
    }

    /// What the listener authenticates against.
    pub fn keys(&self) -> Arc<AuthDbKeys> {
        self.keys.clone()
    }

    /// The newest state: pending changes included, so a command sees the
    /// one before it in the same epoch.
    pub fn db(&self) -> &AuthDb {
        self.pending.as_ref().unwrap_or(&self.committed)
    }

    pub fn committed_db(&self) -> &AuthDb {
        &self.committed
    }

    /// Applies `f` to the pending copy; a refused change, or one that
    /// changed nothing, leaves no pending version.
    pub fn edit<R>(
        &mut self,
        f: impl FnOnce(&mut AuthDb) -> Result<R, AuthDbError>,
    ) -> Result<R, AuthDbError> {
        let mut copy = self.db().clone();
        let r = f(&mut copy)?;
        if copy != *self.db() {
            copy.version = self.committed.version + 1;
            self.pending = Some(copy);
        }
        Ok(r)
    }

    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    pub fn discard_pending(&mut self) {
        self.pending = None;
    }

    pub fn take_pending(&mut self) -> Option<AuthDb> {
        self.pending.take()
    }

    /// A committed version (from the log or a reload).
    pub fn committed(&mut self, db: AuthDb) {
        self.keys.set(db.clone());
        self.committed = db;
    }

    /// On the leader: adds a fresh service secret when the newest one has
    /// less than half a ticket lifetime left (or none exists), so tickets
    /// are always sealed under a secret that outlives them.
    pub fn rotate_if_due(&mut self, now_unix_secs: u64) -> bool {
        let ttl = self.ticket_ttl_secs;
        let due: Vec<Service> = [Service::Osd, Service::Mgr]
            .into_iter()
            .filter(|s| {
                self.db().newest_secret_expiry(*s) < now_unix_secs.saturating_add(ttl / 2 + ttl)
            })
            .collect();
        if due.is_empty() {
            return false;
        }
        let expires = now_unix_secs.saturating_add(ttl.saturating_mul(3));
        let rotated = self.edit(|db| {
            for s in &due {
                db.rotate(*s, expires, ROTATING_SECRETS_KEPT)
                    .map_err(|e| AuthDbError {
                        retval: kalmar_auth::authdb::EINVAL,
                        msg: e.to_string(),
                    })?;
            }
            Ok(())
        });
        match rotated {
            Ok(()) => {
                tracing::info!(services = ?due, "rotating service secrets");
                true
            }
            Err(e) => {
                tracing::error!("rotating service secrets failed: {e}");
                false
            }
        }
    }
}

/// What the mon's listener authenticates peers with: the committed
/// database, and while none is committed yet (a mon of several before the
/// first leader commits the seed, a mon joining before it caught up) the
/// keys this mon was made with: its mkfs seed and the shared `mon.` key of
/// DATA/keyring. Without them the mons could not authenticate each other
/// (nor the admin) to form the quorum that commits the database. Tickets
/// are only ever sealed under committed service secrets.
pub struct ListenerKeys {
    db: Arc<AuthDbKeys>,
    bootstrap: kalmar_auth::Keyring,
}

impl ListenerKeys {
    pub fn new(db: Arc<AuthDbKeys>, bootstrap: kalmar_auth::Keyring) -> ListenerKeys {
        ListenerKeys { db, bootstrap }
    }

    fn bootstrap_entity(&self, name: &str) -> Option<kalmar_auth::KeyringEntry> {
        if self.db.get().version != 0 {
            return None;
        }
        self.bootstrap
            .get(name)
            .or_else(|| {
                name.strip_prefix("mon.")
                    .filter(|id| !id.is_empty())
                    .and_then(|_| self.bootstrap.get("mon."))
            })
            .cloned()
    }
}

impl KeySource for ListenerKeys {
    fn entity(
        &self,
        name: &str,
    ) -> Option<(
        kalmar_auth::CryptoKey,
        std::collections::BTreeMap<String, String>,
    )> {
        self.db
            .entity(name)
            .or_else(|| self.bootstrap_entity(name).map(|e| (e.key, e.caps)))
    }

    fn service_secret(&self, service: Service, id: u64) -> Option<kalmar_auth::CryptoKey> {
        self.db.service_secret(service, id)
    }

    fn current_service_secret(&self, service: Service) -> Option<(u64, kalmar_auth::CryptoKey)> {
        self.db.current_service_secret(service)
    }

    fn service_secrets(&self, service: Service) -> kalmar_auth::server::SecretList {
        self.db.service_secrets(service)
    }

    fn new_global_id(&self) -> u64 {
        self.db.new_global_id()
    }

    fn ticket_ttl_secs(&self) -> u64 {
        self.db.ticket_ttl_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_keys_fall_back_to_the_seed_until_a_version_is_committed() {
        let seed = crate::persist::initial_auth(None, 1000, 100).expect("seed");
        let mut boot = kalmar_auth::Keyring::default();
        for (n, e) in seed.entries() {
            boot.insert(n, e);
        }
        let mut a = AuthMon::new(AuthDb::default(), 100);
        let keys = ListenerKeys::new(a.keys(), boot);
        // Nothing committed: the seed's admin, and mon.b by the shared key.
        assert!(keys.entity("client.admin").is_some());
        assert_eq!(
            keys.entity("mon.b").map(|e| e.0),
            seed.get("mon.").map(|e| e.key)
        );
        assert!(keys.entity("client.nobody").is_none());
        assert!(keys.current_service_secret(Service::Osd).is_none());
        // Once a version is committed, only it counts.
        let mut db = AuthDb::default();
        db.get_or_create("client.x", Default::default())
            .expect("create");
        db.version = 1;
        a.committed(db);
        assert!(keys.entity("client.x").is_some());
        assert!(keys.entity("client.admin").is_none());
    }

    #[test]
    fn edits_are_pending_until_committed_and_rotation_is_timed() {
        let mut a = AuthMon::new(AuthDb::default(), 100);
        a.edit(|db| db.get_or_create("client.x", Default::default()))
            .expect("create");
        assert!(a.db().get("client.x").is_some());
        assert!(a.committed_db().get("client.x").is_none());
        // A refused edit changes nothing.
        assert!(a
            .edit(|db| db.set_caps("client.none", Default::default()))
            .is_err());
        let db = a.take_pending().expect("pending");
        assert_eq!(db.version, 1);
        a.committed(db);
        use kalmar_auth::KeySource;
        assert!(a.keys().entity("client.x").is_some());
        // No secrets yet: due at once; then not until they near expiry.
        assert!(a.rotate_if_due(1000));
        let db = a.take_pending().expect("pending");
        a.committed(db);
        assert!(!a.rotate_if_due(1000));
        assert!(a.rotate_if_due(1000 + 200));
        assert!(a.keys().current_service_secret(Service::Osd).is_some());
    }
}
