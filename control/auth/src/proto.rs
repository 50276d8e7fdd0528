//! The authentication messages, in Kalmar's versioned encoding. The
//! messenger carries the first and last inside its hello exchange and the
//! middle two in frames of their own:
//!
//! ```text
//! connector                                   acceptor
//!   Hello + AuthRequest{client_nonce}            ->
//!                <- AuthChallenge{service, server_nonce}
//!   AuthProof{[ticket], mac(K, client, nonces)}  ->
//!                         <- HelloReply + AuthReply{mac(K, server, nonces), sealed grant}
//! ```
//!
//! `K` is the entity's own secret when talking to the mon, or the session
//! key inside a ticket when talking to an OSD or the mgr (the challenge
//! names the acceptor's service, so the connector need not know it). Neither ever
//! crosses the wire in the clear; both nonces feed every proof, so a
//! recorded exchange replayed against a new challenge fails.

use std::collections::BTreeMap;

use kalmar_common::encoding::Blob;
use kalmar_common::impl_versioned;

use crate::caps::Service;
use crate::crypto::Mac32;
use crate::key::SECRET_BYTES;

pub const NONCE_BYTES: usize = 16;
pub type AuthNonce = [u8; NONCE_BYTES];

/// Method numbers (the request's `method`).
pub const METHOD_CEPHX: u8 = 2;

kalmar_common::impl_enum_u8!(Service, "service", { Mon = 1, Osd = 2, Mgr = 3 });

/// A ticket as a client holds and shows it: sealed under service secret
/// `secret_id` of `service`, opaque to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedTicket {
    pub service: Service,
    pub secret_id: u64,
    pub blob: Blob,
}
impl_versioned!(SealedTicket, "sealed ticket", version = 1, compat = 1,
    { service, secret_id, blob });

/// What a ticket says, once opened by the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub entity: String,
    pub global_id: u64,
    /// The entity's caps as stored with its key (`service -> text`).
    pub caps: BTreeMap<String, String>,
    pub session_key: [u8; SECRET_BYTES],
    /// Seconds since the epoch after which the ticket is refused.
    pub expires_unix_secs: u64,
}
impl_versioned!(Ticket, "ticket", version = 1, compat = 1,
    { entity, global_id, caps, session_key, expires_unix_secs });

/// The connector's opening, carried in its hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub method: u8,
    pub client_nonce: AuthNonce,
}
impl_versioned!(AuthRequest, "auth request", version = 1, compat = 1,
    { method, client_nonce });

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthChallenge {
    /// What the acceptor is: the mon checks entity keys, the others tickets.
    pub service: Service,
    pub server_nonce: AuthNonce,
}
impl_versioned!(AuthChallenge, "auth challenge", version = 1, compat = 1,
    { service, server_nonce });

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthProof {
    /// Present when authenticating to an OSD or mgr.
    pub ticket: Option<SealedTicket>,
    pub proof: Mac32,
}
impl_versioned!(AuthProof, "auth proof", version = 1, compat = 1, { ticket, proof });

/// The acceptor's answer, carried in its hello reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthReply {
    pub server_proof: Mac32,
    /// A [`Grant`] sealed under `K` (empty from an OSD or mgr).
    pub sealed_grant: Blob,
}
impl_versioned!(AuthReply, "auth reply", version = 1, compat = 1,
    { server_proof, sealed_grant });

/// A ticket for one service, with the session key the client uses with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTicket {
    pub service: Service,
    pub session_key: [u8; SECRET_BYTES],
    pub expires_unix_secs: u64,
    pub ticket: SealedTicket,
}
impl_versioned!(ServiceTicket, "service ticket", version = 1, compat = 1,
    { service, session_key, expires_unix_secs, ticket });

/// One rotating service secret (given to the daemons of that service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotatingSecret {
    pub service: Service,
    pub id: u64,
    pub key: [u8; SECRET_BYTES],
    pub expires_unix_secs: u64,
}
impl_versioned!(RotatingSecret, "rotating secret", version = 1, compat = 1,
    { service, id, key, expires_unix_secs });

/// What the mon gives an authenticated entity (sealed in [`AuthReply`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grant {
    pub global_id: u64,
    pub caps: BTreeMap<String, String>,
    pub tickets: Vec<ServiceTicket>,
    /// Service secrets, for daemons of that service only.
    pub rotating: Vec<RotatingSecret>,
    /// The lifetime the mon gave the tickets (its `auth_service_ticket_ttl`),
    /// so a client renews on it whatever its clock says; 0 from a mon
    /// older than version 2 of the grant (the client then takes the
    /// tickets' expiry against its own clock).
    pub ticket_ttl_secs: u64,
}
impl_versioned!(Grant, "auth grant", version = 2, compat = 1,
    { global_id, caps, tickets, rotating }, since 2 { ticket_ttl_secs });

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_common::encoding::{Decode, Encode};
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        let t = SealedTicket {
            service: Service::Osd,
            secret_id: 3,
            blob: Blob(vec![1, 2, 3]),
        };
        let req = AuthRequest {
            method: METHOD_CEPHX,
            client_nonce: [9; NONCE_BYTES],
        };
        assert_eq!(AuthRequest::from_bytes(&req.to_bytes()).expect("rt"), req);
        let proof = AuthProof {
            ticket: Some(t.clone()),
            proof: [3; 32],
        };
        assert_eq!(AuthProof::from_bytes(&proof.to_bytes()).expect("rt"), proof);
        let g = Grant {
            global_id: 7,
            caps: [("mon".to_string(), "allow r".to_string())].into(),
            tickets: vec![ServiceTicket {
                service: Service::Mgr,
                session_key: [1; 16],
                expires_unix_secs: 99,
                ticket: t,
            }],
            rotating: vec![RotatingSecret {
                service: Service::Osd,
                id: 2,
                key: [5; 16],
                expires_unix_secs: 100,
            }],
            ticket_ttl_secs: 600,
        };
        assert_eq!(Grant::from_bytes(&g.to_bytes()).expect("rt"), g);
        // A version-1 grant (an older mon) decodes with no stated ttl.
        let mut v1 = Vec::new();
        kalmar_common::encoding::encode_versioned(&mut v1, 1, 1, |b| {
            g.global_id.encode(b);
            g.caps.encode(b);
            g.tickets.encode(b);
            g.rotating.encode(b);
        });
        let old = Grant::from_bytes(&v1).expect("v1");
        assert_eq!(old.ticket_ttl_secs, 0);
        assert_eq!(old.tickets, g.tickets);
    }

    proptest! {
        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = AuthRequest::from_bytes(&b);
            let _ = AuthChallenge::from_bytes(&b);
            let _ = AuthProof::from_bytes(&b);
            let _ = AuthReply::from_bytes(&b);
            let _ = Grant::from_bytes(&b);
            let _ = Ticket::from_bytes(&b);
            let _ = SealedTicket::from_bytes(&b);
        }
    }
}
