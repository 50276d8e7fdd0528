//! A cephx-authenticated pair of ends in one connection mode, for tests
//! that need protected frames without the details of the handshake.

use std::sync::Arc;

use kalmar_auth::{AuthMode, ClientAuth, CryptoKey, MemKeySource, ServerAuth, Service};
use kalmar_msgr::auth::MsgrAuth;
use kalmar_msgr::onwire::{WireMode, WireModes};

/// The acceptor's and the connector's authentication: `entity` with a new
/// key (mon caps `allow *`), both ends requiring `mode`, the connector
/// demanding the acceptor's proof.
pub fn cephx_pair(entity: &str, mode: WireMode) -> (MsgrAuth, MsgrAuth) {
    let keys = Arc::new(MemKeySource::new());
    let key = CryptoKey::generate().expect("rng");
    keys.add_entity(
        entity,
        key.clone(),
        [("mon".to_string(), "allow *".to_string())].into(),
    );
    let server = MsgrAuth {
        server: Some(ServerAuth {
            mode: AuthMode::Cephx,
            service: Service::Mon,
            keys,
        }),
        modes: WireModes::all(&[mode]),
        ..MsgrAuth::default()
    };
    let client = MsgrAuth {
        client: Some(Arc::new(ClientAuth::new(entity, Some(key)))),
        require_server_proof: true,
        modes: WireModes::all(&[mode]),
        ..MsgrAuth::default()
    };
    (server, client)
}
