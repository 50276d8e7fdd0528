//! The auth service: the committed auth database, a pending copy that
//! commands change (committed through the log with the map epochs, like
//! every mon change), and the key source the mon's listener checks peers
//! with (swapped on every commit).

use std::sync::Arc;

use kalmar_auth::authdb::{AuthDb, AuthDbError};
use kalmar_auth::{AuthDbKeys, Service};

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

#[cfg(test)]
mod tests {
    use super::*;

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
