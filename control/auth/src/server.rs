//! The accepting side of the handshake, as pure steps over a
//! [`KeySource`]: [`ServerAuth::begin`] reads the peer's request and
//! issues a challenge, [`ServerAuth::finish`] checks the proof and answers
//! with the acceptor's own proof (and, from the mon, a sealed grant).
//!
//! The mon authenticates an entity by its long-term secret; an OSD or mgr
//! authenticates a ticket sealed under its service's rotating secret, so
//! it never asks the mon per connection.

use std::collections::BTreeMap;
use std::sync::Arc;

use kalmar_common::encoding::{Blob, Decode, Encode};

use crate::caps::{EntityCaps, Profile, Service};
use crate::crypto::{self, mac_eq};
use crate::key::{os_random, ConnectionKey, CryptoKey, SECRET_BYTES};
use crate::proto::{
    AuthChallenge, AuthNonce, AuthProof, AuthReply, AuthRequest, Grant, RotatingSecret,
    SealedTicket, ServiceTicket, Ticket, METHOD_CEPHX,
};
use crate::source::KeySource;
use crate::{AuthError, AuthMode};

/// Who the peer proved to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthedPeer {
    /// `None` when the acceptor does not require authentication and the
    /// peer offered none.
    pub entity: Option<String>,
    pub global_id: u64,
    pub caps: EntityCaps,
    /// The raw caps text (for tickets and `auth` output).
    pub caps_text: BTreeMap<String, String>,
    /// A key both sides derived for this connection (frame protection;
    /// wiped when dropped).
    pub connection_key: Option<ConnectionKey>,
}

impl AuthedPeer {
    fn anonymous() -> AuthedPeer {
        AuthedPeer {
            entity: None,
            global_id: 0,
            caps: EntityCaps::default(),
            caps_text: BTreeMap::new(),
            connection_key: None,
        }
    }
}

/// A challenge issued and not yet answered.
pub struct PendingServer {
    entity: String,
    client_nonce: AuthNonce,
    server_nonce: AuthNonce,
}

/// What [`ServerAuth::begin`] decided.
pub enum ServerStep {
    /// No authentication (mode `none` and the peer offered none).
    Accept(AuthedPeer),
    /// Send the challenge, wait for the proof.
    Challenge(Box<PendingServer>, AuthChallenge),
}

/// The acceptor's authentication settings and keys.
#[derive(Clone)]
pub struct ServerAuth {
    pub mode: AuthMode,
    /// The service this acceptor is (which tickets it takes).
    pub service: Service,
    pub keys: Arc<dyn KeySource>,
}

pub(crate) fn new_nonce() -> Result<AuthNonce, AuthError> {
    let mut n = [0u8; crate::proto::NONCE_BYTES];
    os_random(&mut n)?;
    Ok(n)
}

/// The additional data a ticket is sealed with (its service and secret).
pub(crate) fn ticket_aad(service: Service, secret_id: u64) -> Vec<u8> {
    let mut aad = b"kalmar-ticket".to_vec();
    aad.push(service as u8);
    aad.extend_from_slice(&secret_id.to_le_bytes());
    aad
}

pub(crate) fn proof(
    key: &[u8; SECRET_BYTES],
    role: &[u8],
    entity: &str,
    cn: &AuthNonce,
    sn: &AuthNonce,
) -> crypto::Mac32 {
    crypto::mac(key, &[b"kalmar-auth", role, entity.as_bytes(), cn, sn])
}

pub(crate) fn connection_key(
    key: &[u8; SECRET_BYTES],
    entity: &str,
    cn: &AuthNonce,
    sn: &AuthNonce,
) -> ConnectionKey {
    let mut m = proof(key, b"connection", entity, cn, sn);
    let mut k = [0u8; SECRET_BYTES];
    k.copy_from_slice(&m[..SECRET_BYTES]);
    let ck = ConnectionKey::new(k);
    // The MAC it was cut from is key material too.
    zeroize::Zeroize::zeroize(&mut m);
    zeroize::Zeroize::zeroize(&mut k);
    ck
}

/// The key a proof is checked with, and who it names.
struct Resolved {
    key: [u8; SECRET_BYTES],
    global_id: u64,
    caps_text: BTreeMap<String, String>,
    by_ticket: bool,
}

impl Drop for Resolved {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl ServerAuth {
    /// Reads the peer's request (`None`: it offered no authentication).
    pub fn begin(&self, peer: &str, req: Option<&AuthRequest>) -> Result<ServerStep, AuthError> {
        let Some(req) = req else {
            return match self.mode {
                AuthMode::None => Ok(ServerStep::Accept(AuthedPeer::anonymous())),
                AuthMode::Cephx => Err(AuthError::Required),
            };
        };
        if req.method != METHOD_CEPHX {
            return Err(AuthError::Method(req.method));
        }
        let challenge = AuthChallenge {
            service: self.service,
            server_nonce: new_nonce()?,
        };
        let pending = PendingServer {
            entity: peer.to_string(),
            client_nonce: req.client_nonce,
            server_nonce: challenge.server_nonce,
        };
        Ok(ServerStep::Challenge(Box::new(pending), challenge))
    }

    /// The key to check the proof with: the ticket's session key at an
    /// OSD or mgr, the entity's secret at the mon.
    fn resolve(
        &self,
        p: &PendingServer,
        proof_msg: &AuthProof,
        now: u64,
    ) -> Result<Resolved, AuthError> {
        match &proof_msg.ticket {
            Some(t) => {
                let ticket = self.open_ticket(t, now)?;
                if ticket.entity != p.entity {
                    return Err(AuthError::TicketEntity {
                        ticket: ticket.entity,
                        peer: p.entity.clone(),
                    });
                }
                Ok(Resolved {
                    key: ticket.session_key,
                    global_id: ticket.global_id,
                    caps_text: ticket.caps,
                    by_ticket: true,
                })
            }
            None if self.service != Service::Mon => Err(AuthError::TicketNeeded(self.service)),
            None => {
                let (key, caps_text) = self
                    .keys
                    .entity(&p.entity)
                    .ok_or_else(|| AuthError::UnknownEntity(p.entity.clone()))?;
                Ok(Resolved {
                    key: *key.secret(),
                    global_id: self.keys.new_global_id(),
                    caps_text,
                    by_ticket: false,
                })
            }
        }
    }

    fn open_ticket(&self, t: &SealedTicket, now_unix_secs: u64) -> Result<Ticket, AuthError> {
        if t.service != self.service {
            return Err(AuthError::TicketService {
                ticket: t.service,
                ours: self.service,
            });
        }
        let secret = self
            .keys
            .service_secret(t.service, t.secret_id)
            .ok_or(AuthError::UnknownSecret(t.service, t.secret_id))?;
        let plain = crypto::open(
            secret.secret(),
            &ticket_aad(t.service, t.secret_id),
            &t.blob.0,
        )
        .map_err(|_| AuthError::BadTicket)?;
        let ticket = Ticket::from_bytes(&plain).map_err(|_| AuthError::BadTicket)?;
        if ticket.expires_unix_secs <= now_unix_secs {
            return Err(AuthError::TicketExpired {
                expired_unix_secs: ticket.expires_unix_secs,
            });
        }
        Ok(ticket)
    }

    /// Checks the peer's proof; on success the reply to send and who the
    /// peer is.
    pub fn finish(
        &self,
        p: &PendingServer,
        proof_msg: &AuthProof,
        now_unix_secs: u64,
    ) -> Result<(AuthReply, AuthedPeer), AuthError> {
        let mut r = self.resolve(p, proof_msg, now_unix_secs)?;
        let want = proof(
            &r.key,
            b"client",
            &p.entity,
            &p.client_nonce,
            &p.server_nonce,
        );
        if !mac_eq(&want, &proof_msg.proof) {
            return Err(AuthError::BadProof(p.entity.clone()));
        }
        let caps = EntityCaps::parse(&r.caps_text).map_err(|e| AuthError::Caps(e.to_string()))?;
        let sealed_grant = if r.by_ticket {
            Blob::default()
        } else {
            let grant = self.grant(&p.entity, &r, &caps, now_unix_secs)?;
            let aad = grant_aad(&p.client_nonce, &p.server_nonce);
            Blob(crypto::seal(&r.key, &aad, &grant.to_bytes())?)
        };
        let reply = AuthReply {
            server_proof: proof(
                &r.key,
                b"server",
                &p.entity,
                &p.client_nonce,
                &p.server_nonce,
            ),
            sealed_grant,
        };
        let peer = AuthedPeer {
            entity: Some(p.entity.clone()),
            global_id: r.global_id,
            caps,
            caps_text: std::mem::take(&mut r.caps_text),
            connection_key: Some(connection_key(
                &r.key,
                &p.entity,
                &p.client_nonce,
                &p.server_nonce,
            )),
        };
        Ok((reply, peer))
    }

    /// Tickets for the OSDs and the mgr, and for daemons their service's
    /// rotating secrets.
    fn grant(
        &self,
        entity: &str,
        r: &Resolved,
        caps: &EntityCaps,
        now_unix_secs: u64,
    ) -> Result<Grant, AuthError> {
        let expires = now_unix_secs.saturating_add(self.keys.ticket_ttl_secs());
        let mut grant = Grant {
            global_id: r.global_id,
            caps: r.caps_text.clone(),
            ticket_ttl_secs: self.keys.ticket_ttl_secs(),
            ..Grant::default()
        };
        for service in [Service::Osd, Service::Mgr] {
            let Some((secret_id, secret)) = self.keys.current_service_secret(service) else {
                continue;
            };
            let mut session_key = [0u8; SECRET_BYTES];
            os_random(&mut session_key)?;
            let ticket = Ticket {
                entity: entity.to_string(),
                global_id: r.global_id,
                caps: r.caps_text.clone(),
                session_key,
                expires_unix_secs: expires,
            };
            let blob = crypto::seal(
                secret.secret(),
                &ticket_aad(service, secret_id),
                &ticket.to_bytes(),
            )?;
            grant.tickets.push(ServiceTicket {
                service,
                session_key,
                expires_unix_secs: expires,
                ticket: SealedTicket {
                    service,
                    secret_id,
                    blob: Blob(blob),
                },
            });
            let role = match service {
                Service::Osd => Profile::Osd,
                _ => Profile::Mgr,
            };
            if caps.mon.allows_daemon(role) {
                for (id, key, exp) in self.keys.service_secrets(service) {
                    grant.rotating.push(RotatingSecret {
                        service,
                        id,
                        key: *key.secret(),
                        expires_unix_secs: exp,
                    });
                }
            }
        }
        Ok(grant)
    }
}

pub(crate) fn grant_aad(cn: &AuthNonce, sn: &AuthNonce) -> Vec<u8> {
    let mut aad = b"kalmar-grant".to_vec();
    aad.extend_from_slice(cn);
    aad.extend_from_slice(sn);
    aad
}

/// A key type alias used by sources.
pub type SecretList = Vec<(u64, CryptoKey, u64)>;
