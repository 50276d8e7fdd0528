//! The hello exchange that opens (or resumes) a session.
//!
//! The connecting side sends [`Hello`] with its name, the cluster fsid (nil
//! when it does not know it, e.g. the CLI), a session id it chose, and the
//! sequence numbers it has seen. The accepting side answers [`HelloReply`]:
//! if it still holds that session, both ends drop what the other already
//! has and replay the rest; otherwise (`reset`) it opens a fresh session and
//! the connector replays everything it has not seen acknowledged.
//!
//! With authentication, the hello carries the connector's
//! `AuthRequest`, the acceptor answers with an `AuthChallenge` frame, the
//! connector with an `AuthProof` frame, and the hello reply carries the
//! acceptor's `AuthReply` (see [`crate::auth`]).
//!
//! Each side also states the largest frame payload it accepts, so a sender
//! refuses a message its peer could not take (an error at `send`) instead
//! of putting it on the wire to be refused there.

use kalmar_auth::proto::{AuthReply, AuthRequest};
use kalmar_common::impl_versioned;
use uuid::Uuid;

use crate::entity::EntityName;

/// Bumped when the frame layout or the session rules change incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub protocol_version: u32,
    pub entity: EntityName,
    pub fsid: Uuid,
    pub session_id: u64,
    /// Highest sequence the connector received from the acceptor.
    pub in_seq: u64,
    /// Highest of the connector's own sequences known to be acknowledged:
    /// a fresh session on the acceptor starts expecting `acked_seq + 1`.
    pub acked_seq: u64,
    pub features: u64,
    /// Largest frame payload the connector accepts (0: not stated, an
    /// older peer; see [`peer_frame_limit`]).
    pub max_frame_bytes: u64,
    /// The connector's authentication opening (`None`: it offers none).
    pub auth: Option<AuthRequest>,
    /// The connection modes the connector allows, most preferred first
    /// ([`crate::onwire::WireMode`] ids; empty: an older peer, crc only).
    pub modes: Vec<u8>,
}
impl_versioned!(Hello, "hello", version = 4, compat = 1,
    { protocol_version, entity, fsid, session_id, in_seq, acked_seq, features },
    since 2 { max_frame_bytes },
    since 3 { auth },
    since 4 { modes });

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloReply {
    pub protocol_version: u32,
    pub entity: EntityName,
    pub fsid: Uuid,
    /// Highest sequence the acceptor received from the connector.
    pub in_seq: u64,
    /// The acceptor had no state for the session (new peer, or it restarted).
    pub reset: bool,
    pub features: u64,
    /// Largest frame payload the acceptor accepts (0: not stated).
    pub max_frame_bytes: u64,
    /// The acceptor's proof (and the mon's grant) after an authentication.
    pub auth: Option<AuthReply>,
    /// The connection mode the acceptor chose (0: an older peer, crc).
    pub mode: u8,
    /// With authentication: HMAC-SHA256 under the connection key of the
    /// offer as the acceptor received it and the choice (see
    /// [`crate::onwire::transcript_mac`]), so a rewritten offer is seen.
    pub mode_mac: Option<[u8; 32]>,
}
impl_versioned!(HelloReply, "hello reply", version = 4, compat = 1,
    { protocol_version, entity, fsid, in_seq, reset, features },
    since 2 { max_frame_bytes },
    since 3 { auth },
    since 4 { mode, mode_mac });

/// The largest payload we may send a peer that stated `stated` (0 when it
/// did not: an older peer, held to the default) given our own limit.
pub fn peer_frame_limit(ours: usize, stated: u64) -> usize {
    let theirs = if stated == 0 {
        crate::config::DEFAULT_MAX_FRAME_BYTES
    } else {
        usize::try_from(stated).unwrap_or(usize::MAX)
    };
    ours.min(theirs)
}

/// Whether an acceptor of cluster `ours` talks to a peer claiming `theirs`:
/// a nil fsid on either side means "not known yet" and matches anything.
pub fn fsid_matches(ours: Uuid, theirs: Uuid) -> bool {
    ours.is_nil() || theirs.is_nil() || ours == theirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_common::encoding::{Decode, Encode};
    use proptest::prelude::*;

    #[test]
    fn roundtrip() {
        let h = Hello {
            protocol_version: PROTOCOL_VERSION,
            entity: "osd.3".parse().expect("valid"),
            fsid: Uuid::new_v4(),
            session_id: 42,
            in_seq: 7,
            acked_seq: 5,
            features: 0,
            max_frame_bytes: 1 << 20,
            auth: Some(AuthRequest {
                method: kalmar_auth::proto::METHOD_CEPHX,
                client_nonce: [4; 16],
            }),
            modes: vec![3, 1],
        };
        assert_eq!(Hello::from_bytes(&h.to_bytes()).expect("roundtrip"), h);
        assert!(fsid_matches(Uuid::nil(), h.fsid));
        assert!(!fsid_matches(Uuid::new_v4(), h.fsid));
    }

    #[test]
    fn frame_limit_is_the_smaller_of_both() {
        assert_eq!(peer_frame_limit(64 << 20, 96 << 20), 64 << 20);
        assert_eq!(peer_frame_limit(96 << 20, 64 << 20), 64 << 20);
        // A peer that did not state one is held to the default.
        assert_eq!(
            peer_frame_limit(96 << 20, 0),
            crate::config::DEFAULT_MAX_FRAME_BYTES
        );
        assert_eq!(peer_frame_limit(1024, 0), 1024);
    }

    /// What a peer of the previous version (3) writes: the same fields
    /// up to `auth`, under version 3.
    fn v3_hello(h: &Hello) -> Vec<u8> {
        let mut buf = Vec::new();
        kalmar_common::encoding::encode_versioned(&mut buf, 3, 1, |buf| {
            h.protocol_version.encode(buf);
            h.entity.encode(buf);
            h.fsid.encode(buf);
            h.session_id.encode(buf);
            h.in_seq.encode(buf);
            h.acked_seq.encode(buf);
            h.features.encode(buf);
            h.max_frame_bytes.encode(buf);
            h.auth.encode(buf);
        });
        buf
    }

    fn any_hello() -> impl Strategy<Value = Hello> {
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(any::<[u8; 16]>()),
            proptest::collection::vec(any::<u8>(), 0..8),
        )
            .prop_map(|(session_id, in_seq, acked_seq, max, nonce, modes)| Hello {
                protocol_version: PROTOCOL_VERSION,
                entity: "client.7".parse().expect("valid"),
                fsid: Uuid::from_u64_pair(session_id, in_seq),
                session_id,
                in_seq,
                acked_seq,
                features: 0,
                max_frame_bytes: max,
                auth: nonce.map(|n| AuthRequest {
                    method: kalmar_auth::proto::METHOD_CEPHX,
                    client_nonce: n,
                }),
                modes,
            })
    }

    proptest! {
        #[test]
        fn hello_modes_roundtrip(h in any_hello()) {
            prop_assert_eq!(Hello::from_bytes(&h.to_bytes()).expect("roundtrip"), h.clone());
            // A version-3 writer's hello decodes with no offer (crc only).
            let old = Hello::from_bytes(&v3_hello(&h)).expect("v3 decodes");
            prop_assert!(old.modes.is_empty());
            prop_assert_eq!(Hello { modes: h.modes.clone(), ..old }, h);
        }

        #[test]
        fn reply_mode_roundtrip(mode: u8, mac in proptest::option::of(any::<[u8; 32]>()), in_seq: u64, reset: bool) {
            let r = HelloReply {
                protocol_version: PROTOCOL_VERSION,
                entity: "osd.1".parse().expect("valid"),
                fsid: Uuid::nil(),
                in_seq,
                reset,
                features: 0,
                max_frame_bytes: 1 << 20,
                auth: None,
                mode,
                mode_mac: mac,
            };
            let bytes = r.to_bytes();
            prop_assert_eq!(HelloReply::from_bytes(&bytes).expect("roundtrip"), r.clone());
            // Any cut of it is an error, never a panic or a wrong value.
            for cut in 0..bytes.len() {
                prop_assert!(HelloReply::from_bytes(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Hello::from_bytes(&bytes);
            let _ = HelloReply::from_bytes(&bytes);
        }
    }
}
