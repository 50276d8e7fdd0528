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
use tokio::io::{AsyncRead, AsyncWrite};
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
    /// The connection modes allowed after authentication
    /// (`ms_cluster_mode`, `ms_service_mode`, `ms_client_mode`).
    pub modes: crate::onwire::WireModes,
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
            .field("modes", &self.modes)
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
/// peer, key))` with all three `None` when no authentication ran; `Err`
/// is the reason to refuse with. The connection key comes apart from the
/// peer's record, which the session keeps: the caller drops (and so
/// wipes) it once it has derived the frame keys.
pub(crate) async fn accept<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    auth: &MsgrAuth,
    peer_name: &str,
    req: Option<&AuthRequest>,
    reader: &mut FramedRead<R>,
    wr: &mut W,
    handshake_timeout: std::time::Duration,
) -> Result<Accepted, String> {
    let Some(server) = &auth.server else {
        return Ok((None, None, None));
    };
    let refused = |e: kalmar_auth::AuthError| format!("authentication of {peer_name} failed: {e}");
    let (pending, challenge) = match server.begin(peer_name, req).map_err(refused)? {
        ServerStep::Accept(_) => return Ok((None, None, None)),
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
    let (reply, mut peer) = server
        .finish(&pending, &proof, now_unix_secs())
        .map_err(refused)?;
    let key = peer.connection_key.take();
    Ok((Some(reply), Some(Arc::new(peer)), key))
}

/// What [`accept`] returns: the reply's auth part, who the peer is, and
/// the connection key.
pub(crate) type Accepted = (
    Option<AuthReply>,
    Option<Arc<AuthedPeer>>,
    Option<kalmar_auth::ConnectionKey>,
);

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
pub(crate) async fn answer<W: AsyncWrite + Unpin>(
    auth: &MsgrAuth,
    st: &mut Connecting,
    payload: &Bytes,
    wr: &mut W,
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

/// Connector: checks the acceptor's proof in the hello reply, and returns
/// the connection key both sides derived (`None` when no authentication
/// ran). An error is final: the acceptor is not who it claims, or did not
/// authenticate when this side requires it.
pub(crate) fn finish(
    auth: &MsgrAuth,
    st: &Connecting,
    reply: Option<&AuthReply>,
) -> Result<Option<kalmar_auth::ConnectionKey>, String> {
    match (st.challenged, reply, &auth.client, &st.pending) {
        (true, Some(r), Some(c), Some(p)) => c
            .finish(p, r)
            .map(Some)
            .map_err(|e| format!("authenticating the peer: {e}")),
        (true, _, _, _) => Err("the peer challenged us but sent no proof of its own".into()),
        (false, _, _, _) if auth.require_server_proof => {
            Err("the peer did not authenticate and auth_client_required is cephx".into())
        }
        (false, _, _, _) => Ok(None),
    }
}

/// Ceph's three `auth_*_required` options for one entity (default
/// [`kalmar_auth::AuthMode::DEFAULT`], `cephx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthRequired {
    pub cluster: kalmar_auth::AuthMode,
    pub service: kalmar_auth::AuthMode,
    pub client: kalmar_auth::AuthMode,
}

impl AuthRequired {
    pub fn from_conf(
        conf: &kalmar_common::config::Conf,
        entity: &str,
    ) -> Result<AuthRequired, String> {
        let mode = |key: &str| -> Result<kalmar_auth::AuthMode, String> {
            match conf.get::<String>(entity, key).map_err(|e| e.to_string())? {
                None => Ok(kalmar_auth::AuthMode::DEFAULT),
                Some(v) => v.parse().map_err(|e| format!("{key}: {e}")),
            }
        };
        Ok(AuthRequired {
            cluster: mode("auth_cluster_required")?,
            service: mode("auth_service_required")?,
            client: mode("auth_client_required")?,
        })
    }

    /// What a daemon's acceptor requires: cephx when either side of it
    /// (daemons or clients) must authenticate.
    pub fn acceptor(&self) -> kalmar_auth::AuthMode {
        use kalmar_auth::AuthMode::Cephx;
        if self.cluster == Cephx || self.service == Cephx {
            Cephx
        } else {
            kalmar_auth::AuthMode::None
        }
    }

    pub fn any_cephx(&self) -> bool {
        self.acceptor() == kalmar_auth::AuthMode::Cephx
            || self.client == kalmar_auth::AuthMode::Cephx
    }
}

/// `entity`'s key from the keyring search path (the conf's `keyring`
/// option, else `kalmar.$name.keyring`, `kalmar.keyring`, `keyring` next
/// to the conf and in /etc/kalmar). An error when the conf asks for cephx
/// and no key is found.
pub fn key_from_conf(
    conf: &kalmar_common::config::Conf,
    entity: &str,
    required: &AuthRequired,
) -> Result<Option<kalmar_auth::CryptoKey>, String> {
    let opt = conf
        .get::<String>(entity, "keyring")
        .map_err(|e| e.to_string())?;
    let dir = conf.path().and_then(|p| p.parent());
    let found = kalmar_auth::keyring::find_key(entity, opt.as_deref(), dir)
        .map_err(|e| format!("reading {entity}'s keyring: {e}"))?;
    match found {
        Some((_, e)) => Ok(Some(e.key)),
        None if required.any_cephx() => Err(format!(
            "auth is cephx but no keyring holds {entity}'s key (searched {})",
            kalmar_auth::keyring::search_paths(entity, opt.as_deref(), dir)
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => Ok(None),
    }
}

impl MsgrAuth {
    /// A client (`client.NAME`, or a daemon's outgoing side): its key, and
    /// whether it demands the acceptor prove itself.
    pub fn client_from_conf(
        conf: &kalmar_common::config::Conf,
        entity: &str,
    ) -> Result<MsgrAuth, String> {
        let required = AuthRequired::from_conf(conf, entity)?;
        let key = key_from_conf(conf, entity, &required)?;
        Ok(MsgrAuth {
            server: None,
            client: Some(Arc::new(ClientAuth::new(entity, key))),
            require_server_proof: required.client == kalmar_auth::AuthMode::Cephx,
            modes: crate::onwire::WireModes::from_conf(conf, entity)?,
        })
    }

    /// A daemon of `service` (OSD or mgr): its key for the mon, and an
    /// acceptor that checks tickets with the rotating secrets the mon
    /// grants this daemon (so it never asks the mon per connection).
    pub fn daemon_from_conf(
        conf: &kalmar_common::config::Conf,
        entity: &str,
        service: kalmar_auth::Service,
    ) -> Result<MsgrAuth, String> {
        let required = AuthRequired::from_conf(conf, entity)?;
        let mut a = MsgrAuth::client_from_conf(conf, entity)?;
        let keys = a.client.as_ref().map(|c| c.rotating_keys());
        a.server = keys.map(|keys| ServerAuth {
            mode: required.acceptor(),
            service,
            keys,
        });
        Ok(a)
    }
}

/// How often a daemon renews its tickets and rotating secrets: a quarter
/// of the ticket lifetime, so a secret the mon adds reaches every daemon
/// before the mon seals tickets under it (it waits half a lifetime).
pub fn refresh_interval(ticket_ttl_secs: u64) -> std::time::Duration {
    std::time::Duration::from_secs((ticket_ttl_secs / 4).max(1))
}

/// Authenticates with one of `mons` at once and then periodically, which
/// renews the tickets and rotating secrets held in `cfg.auth.client`. The
/// period is read again after every round: the renewal period of the
/// lifetime the mon last granted ([`ClientAuth::renewal_period`]), or
/// `every` before a grant (or for a client that holds no tickets), so a
/// changed `auth_service_ticket_ttl` takes effect at the next renewal. A
/// failure is logged and retried soon, with the next mon (the held ones
/// stay valid longer than a turn).
pub fn spawn_refresh(
    mons: Vec<std::net::SocketAddr>,
    me: crate::EntityName,
    fsid: uuid::Uuid,
    cfg: crate::MsgrConfig,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut turn = 0usize;
        while !mons.is_empty() {
            let addr = mons[turn % mons.len()];
            turn += 1;
            let (tx, _rx) = crate::event_channel(&cfg);
            let ok = match crate::Connection::connect(addr, me.clone(), fsid, cfg.clone(), tx).await
            {
                Ok(c) => {
                    tracing::debug!(mon = %addr, "renewed tickets");
                    c.close().await;
                    true
                }
                Err(e) => {
                    tracing::warn!(mon = %addr, "renewing tickets failed: {e}");
                    false
                }
            };
            let period = current_period(&cfg.auth, every);
            let pause = if ok {
                period
            } else {
                period.min(std::time::Duration::from_secs(2))
            };
            tokio::time::sleep(pause).await;
        }
    })
}

/// The renewal period now: from the last grant, else `fallback`.
fn current_period(auth: &MsgrAuth, fallback: std::time::Duration) -> std::time::Duration {
    auth.client
        .as_ref()
        .and_then(|c| c.renewal_period())
        .unwrap_or(fallback)
}
