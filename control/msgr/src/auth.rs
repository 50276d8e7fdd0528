//! Authentication inside the handshake: the I/O around `kalmar_auth`'s
//! pure steps. After the hello, an acceptor with a [`ServerAuth`] sends an
//! `AuthChallenge` frame and waits (bounded by the handshake timeout) for
//! the `AuthProof` frame; its hello reply then carries the `AuthReply`.
//! A refusal is a `Reject` frame with the reason, logged on both sides.
//!
//! The three Ceph options map onto [`MsgrAuth`]: an acceptor built with
//! `ServerAuth { mode: Cephx }` refuses unauthenticated peers
//! (`auth_cluster_required` / `auth_service_required`), and a connector
//! with `require_server_proof` refuses an acceptor that does not prove
//! itself (`auth_client_required`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kalmar_auth::proto::{AuthChallenge, AuthProof, AuthReply, AuthRequest};
use kalmar_auth::{AuthedPeer, ClientAuth, ServerAuth, ServerStep};
use kalmar_common::encoding::{Decode, Encode};
use tokio::io::AsyncRead;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::time::timeout;

use crate::frame::FrameKind;
use crate::read::FramedRead;
use crate::write::write_control;

/// Who authenticates on this endpoint, and with what.
#[derive(Clone, Default)]
pub struct MsgrAuth {
    /// The acceptor side; `None` lets every peer in unauthenticated (and
    /// ignores what a peer offers).
    pub server: Option<ServerAuth>,
    /// The connector side: this entity's key and tickets; `None` offers
    /// no authentication.
    pub client: Option<Arc<ClientAuth>>,
    /// The connector refuses an acceptor that does not authenticate.
    pub require_server_proof: bool,
}

impl std::fmt::Debug for MsgrAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsgrAuth")
            .field("server", &self.server.as_ref().map(|s| s.mode))
            .field(
                "client",
                &self.client.as_ref().map(|c| c.entity().to_string()),
            )
            .field("require_server_proof", &self.require_server_proof)
            .finish()
    }
}

pub(crate) fn now_unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Acceptor: authenticates the peer named in the hello. `Ok((reply,
/// peer))` with both `None` when no authentication ran; `Err` is the
/// reason to refuse with.
pub(crate) async fn accept<R: AsyncRead + Unpin>(
    auth: &MsgrAuth,
    peer_name: &str,
    req: Option<&AuthRequest>,
    reader: &mut FramedRead<R>,
    wr: &mut OwnedWriteHalf,
    handshake_timeout: std::time::Duration,
) -> Result<(Option<AuthReply>, Option<Arc<AuthedPeer>>), String> {
    let Some(server) = &auth.server else {
        return Ok((None, None));
    };
    let refused = |e: kalmar_auth::AuthError| format!("authentication of {peer_name} failed: {e}");
    let (pending, challenge) = match server.begin(peer_name, req).map_err(refused)? {
        ServerStep::Accept(_) => return Ok((None, None)),
        ServerStep::Challenge(p, c) => (p, c),
    };
    write_control(wr, FrameKind::AuthChallenge, 0, challenge.to_bytes().into())
        .await
        .map_err(|e| format!("writing auth challenge: {e}"))?;
    let frame = timeout(handshake_timeout, reader.next())
        .await
        .map_err(|_| "no auth proof within the handshake timeout".to_string())?
        .map_err(String::from)?
        .ok_or("closed during authentication")?;
    if frame.header.kind != FrameKind::AuthProof {
        return Err(format!("expected auth proof, got {:?}", frame.header.kind));
    }
    let proof =
        AuthProof::from_bytes(&frame.payload).map_err(|e| format!("bad auth proof: {e}"))?;
    let (reply, peer) = server
        .finish(&pending, &proof, now_unix_secs())
        .map_err(refused)?;
    Ok((Some(reply), Some(Arc::new(peer))))
}

/// Connector state between the hello and the hello reply.
pub(crate) struct Connecting {
    pending: Option<kalmar_auth::client::PendingClient>,
    challenged: bool,
}

/// Connector: the request to put in the hello.
pub(crate) fn open(auth: &MsgrAuth) -> Result<(Option<AuthRequest>, Connecting), String> {
    let opened = match &auth.client {
        Some(c) => c.request(now_unix_secs()).map_err(|e| e.to_string())?,
        None => None,
    };
    let (req, pending) = match opened {
        Some((r, p)) => (Some(r), Some(p)),
        None => (None, None),
    };
    Ok((
        req,
        Connecting {
            pending,
            challenged: false,
        },
    ))
}

/// Connector: answers a challenge frame with a proof frame. An error is
/// final (no key, no ticket: retrying cannot help).
pub(crate) async fn answer(
    auth: &MsgrAuth,
    st: &mut Connecting,
    payload: &Bytes,
    wr: &mut OwnedWriteHalf,
) -> Result<(), String> {
    let (Some(client), Some(pending)) = (&auth.client, st.pending.as_mut()) else {
        return Err("the peer requires authentication and this entity has no key".into());
    };
    let ch = AuthChallenge::from_bytes(payload).map_err(|e| format!("bad auth challenge: {e}"))?;
    let proof = client
        .prove(pending, &ch, now_unix_secs())
        .map_err(|e| e.to_string())?;
    st.challenged = true;
    write_control(wr, FrameKind::AuthProof, 0, proof.to_bytes().into())
        .await
        .map_err(|e| format!("sending auth proof: {e}"))
}

/// Connector: checks the acceptor's proof in the hello reply. An error is
/// final: the acceptor is not who it claims, or did not authenticate when
/// this side requires it.
pub(crate) fn finish(
    auth: &MsgrAuth,
    st: &Connecting,
    reply: Option<&AuthReply>,
) -> Result<(), String> {
    match (st.challenged, reply, &auth.client, &st.pending) {
        (true, Some(r), Some(c), Some(p)) => c
            .finish(p, r)
            .map(|_| ())
            .map_err(|e| format!("authenticating the peer: {e}")),
        (true, _, _, _) => Err("the peer challenged us but sent no proof of its own".into()),
        (false, _, _, _) if auth.require_server_proof => {
            Err("the peer did not authenticate and auth_client_required is cephx".into())
        }
        (false, _, _, _) => Ok(()),
    }
}
