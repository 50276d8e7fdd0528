//! The connecting side of the handshake. A [`ClientAuth`] holds the
//! entity's key (if it has one) and what the mon granted it: tickets for
//! the OSDs and the mgr, and for a daemon its service's rotating secrets,
//! which it keeps in a [`MemKeySource`] that its own listener checks
//! tickets with.

use std::sync::Arc;

use kalmar_common::encoding::Decode;
use parking_lot::Mutex;

use crate::caps::Service;
use crate::crypto::{self, mac_eq};
use crate::key::{CryptoKey, SECRET_BYTES};
use crate::proto::{
    AuthChallenge, AuthNonce, AuthProof, AuthReply, AuthRequest, Grant, ServiceTicket, METHOD_CEPHX,
};
use crate::server::{connection_key, grant_aad, new_nonce, proof};
use crate::source::MemKeySource;
use crate::AuthError;

/// A request sent, waiting for the challenge and then the reply.
pub struct PendingClient {
    key: [u8; SECRET_BYTES],
    client_nonce: AuthNonce,
    server_nonce: Option<AuthNonce>,
    to_mon: bool,
}

impl Drop for PendingClient {
    /// The copy of the entity's secret (or ticket session key) is wiped
    /// with the handshake's state.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

#[derive(Default)]
struct Granted {
    global_id: u64,
    tickets: Vec<ServiceTicket>,
    /// The lifetime the mon gave the last grant's tickets (as it states
    /// it; from an older mon, the time to their expiry on this host's
    /// clock when they arrived).
    lifetime_secs: Option<u64>,
}

/// The shortest period a keyed client renews its tickets on, whatever
/// lifetime the mon states (the mon clamps `auth_service_ticket_ttl` to
/// at least 10 s; the floor keeps a skewed clock, which makes a lifetime
/// look near zero, from renewing in a tight loop).
pub const MIN_RENEWAL_SECS: u64 = 2;

/// How often a keyed client renews tickets that live `lifetime_secs`: a
/// quarter of the lifetime (as the daemons do), at least
/// [`MIN_RENEWAL_SECS`]. A quarter leaves three quarters of a lifetime for
/// a failed renewal to be retried (every 2 s, at the next mon) before the
/// held tickets expire and new OSD sessions would be refused.
pub fn renewal_period(lifetime_secs: u64) -> std::time::Duration {
    std::time::Duration::from_secs((lifetime_secs / 4).max(MIN_RENEWAL_SECS))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub struct ClientAuth {
    entity: String,
    key: Option<CryptoKey>,
    granted: Mutex<Granted>,
    /// Rotating secrets the mon gave this entity (a daemon's listener
    /// checks tickets with them).
    rotating: Arc<MemKeySource>,
}

impl ClientAuth {
    /// `key`: the entity's secret from its keyring; `None` offers no
    /// authentication (accepted only where `auth_*_required = none`).
    pub fn new(entity: &str, key: Option<CryptoKey>) -> ClientAuth {
        ClientAuth {
            entity: entity.to_string(),
            key,
            granted: Mutex::new(Granted::default()),
            rotating: Arc::new(MemKeySource::new()),
        }
    }

    pub fn entity(&self) -> &str {
        &self.entity
    }

    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// The rotating secrets granted so far (for this daemon's listener).
    pub fn rotating_keys(&self) -> Arc<MemKeySource> {
        self.rotating.clone()
    }

    /// The global id the mon gave the last session (0 before one).
    pub fn global_id(&self) -> u64 {
        self.granted.lock().global_id
    }

    /// The lifetime of the tickets the mon last granted (`None` before a
    /// grant, or when it held no tickets).
    pub fn ticket_lifetime_secs(&self) -> Option<u64> {
        self.granted.lock().lifetime_secs
    }

    /// When to renew next: [`renewal_period`] of the lifetime the mon
    /// last granted; `None` before a grant.
    pub fn renewal_period(&self) -> Option<std::time::Duration> {
        self.ticket_lifetime_secs().map(renewal_period)
    }

    /// Whether a ticket for `service` valid at `now` is held.
    pub fn has_ticket(&self, service: Service, now_unix_secs: u64) -> bool {
        self.ticket(service, now_unix_secs).is_some()
    }

    fn ticket(&self, service: Service, now_unix_secs: u64) -> Option<ServiceTicket> {
        self.granted
            .lock()
            .tickets
            .iter()
            .find(|t| t.service == service && t.expires_unix_secs > now_unix_secs)
            .cloned()
    }

    /// The opening of a handshake, or `None` to offer no authentication
    /// (an entity with no key and no tickets).
    pub fn request(
        &self,
        now_unix_secs: u64,
    ) -> Result<Option<(AuthRequest, PendingClient)>, AuthError> {
        let any_ticket = [Service::Osd, Service::Mgr]
            .iter()
            .any(|s| self.has_ticket(*s, now_unix_secs));
        if self.key.is_none() && !any_ticket {
            return Ok(None);
        }
        let client_nonce = new_nonce()?;
        let req = AuthRequest {
            method: METHOD_CEPHX,
            client_nonce,
        };
        let pending = PendingClient {
            key: [0; SECRET_BYTES],
            client_nonce,
            server_nonce: None,
            to_mon: false,
        };
        Ok(Some((req, pending)))
    }

    /// Answers the acceptor's challenge: with the entity's key to the mon,
    /// with the ticket for its service to an OSD or the mgr.
    pub fn prove(
        &self,
        p: &mut PendingClient,
        ch: &AuthChallenge,
        now_unix_secs: u64,
    ) -> Result<AuthProof, AuthError> {
        let (key, ticket) = match ch.service {
            Service::Mon => (*self.key.as_ref().ok_or(AuthError::NoKey)?.secret(), None),
            s => {
                let t = self
                    .ticket(s, now_unix_secs)
                    .ok_or(AuthError::NoTicket(s))?;
                (t.session_key, Some(t.ticket))
            }
        };
        p.key = key;
        p.to_mon = ch.service == Service::Mon;
        p.server_nonce = Some(ch.server_nonce);
        Ok(AuthProof {
            ticket,
            proof: proof(
                &key,
                b"client",
                &self.entity,
                &p.client_nonce,
                &ch.server_nonce,
            ),
        })
    }

    /// Checks that the acceptor holds the same key (it is genuine) and
    /// keeps what the mon granted. Returns the connection key.
    pub fn finish(
        &self,
        p: &PendingClient,
        reply: &AuthReply,
    ) -> Result<crate::key::ConnectionKey, AuthError> {
        let sn = p.server_nonce.ok_or(AuthError::OutOfOrder)?;
        let want = proof(&p.key, b"server", &self.entity, &p.client_nonce, &sn);
        if !mac_eq(&want, &reply.server_proof) {
            return Err(AuthError::ServerNotGenuine);
        }
        if p.to_mon {
            let plain = crypto::open(
                &p.key,
                &grant_aad(&p.client_nonce, &sn),
                &reply.sealed_grant.0,
            )
            .map_err(|_| AuthError::BadGrant)?;
            let grant = Grant::from_bytes(&plain).map_err(|_| AuthError::BadGrant)?;
            for s in &grant.rotating {
                self.rotating.add_service_secret(
                    s.service,
                    s.id,
                    CryptoKey::from_secret(s.key, 0, 0),
                    s.expires_unix_secs,
                );
            }
            let lifetime = if grant.tickets.is_empty() {
                None
            } else if grant.ticket_ttl_secs > 0 {
                Some(grant.ticket_ttl_secs)
            } else {
                // An older mon states no ttl: what is left on our clock.
                let now = unix_now();
                grant
                    .tickets
                    .iter()
                    .map(|t| t.expires_unix_secs.saturating_sub(now))
                    .min()
            };
            let mut g = self.granted.lock();
            g.global_id = grant.global_id;
            g.tickets = grant.tickets;
            g.lifetime_secs = lifetime;
        }
        Ok(connection_key(&p.key, &self.entity, &p.client_nonce, &sn))
    }
}
