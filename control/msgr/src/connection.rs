//! The connecting side: one session to one address, kept alive across
//! broken connections by reconnecting with backoff and replaying what the
//! peer had not acknowledged. It runs on the runtime it was started on
//! ([`Connection::start_on`]), or the current one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kalmar_common::encoding::{Decode, Encode};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use uuid::Uuid;

use crate::config::MsgrConfig;
use crate::entity::EntityName;
use crate::frame::FrameKind;
use crate::handshake::{fsid_matches, Hello, HelloReply, PROTOCOL_VERSION};
use crate::io::{run_connection, ConnEnd};
use crate::onwire::{self, Protect, Protection, WireMode};
use crate::pool::RecvPool;
use crate::read::{FrameReader, FramedRead};
use crate::session::{Message, PeerInfo, SendError, Session};
use crate::sink::{emit, EventSink};
use crate::transport::{self, ReadHalf, WriteHalf};
use crate::write::{write_control, write_protected};
use crate::{Event, SessionHandle};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("could not reach {addr} within {timeout_ms} ms: {last_error}")]
    Unreachable {
        addr: SocketAddr,
        timeout_ms: u128,
        last_error: String,
    },
    #[error("{addr} refused the session: {reason}")]
    Refused { addr: SocketAddr, reason: String },
}

/// Where an outbound session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected; the last attempt failed for this reason (empty before
    /// the first attempt).
    Connecting(String),
    Up,
    /// The peer refused the session (wrong cluster, protocol); final.
    Refused(String),
}

/// An outbound session. Dropping it closes the session.
pub struct Connection {
    handle: SessionHandle,
    addr: SocketAddr,
    state: watch::Receiver<LinkState>,
    driver: JoinHandle<()>,
    /// The runtime the connection's tasks run on.
    rt: Handle,
}

impl Connection {
    /// Starts connecting in the background on the current runtime and
    /// returns at once; messages sent before the first connection are
    /// queued (within the bounds). `events` gets the session's events.
    pub fn start<S: EventSink>(
        addr: SocketAddr,
        me: EntityName,
        fsid: Uuid,
        config: MsgrConfig,
        events: S,
    ) -> Connection {
        Connection::start_on(&Handle::current(), addr, me, fsid, config, events)
    }

    /// Like [`Connection::start`], with every task of the connection (and
    /// so its socket and its sink calls) on runtime `rt`.
    pub fn start_on<S: EventSink>(
        rt: &Handle,
        addr: SocketAddr,
        me: EntityName,
        fsid: Uuid,
        config: MsgrConfig,
        events: S,
    ) -> Connection {
        let session = Session::new(config.transport.session_id(), Arc::new(config));
        let (state_tx, state) = watch::channel(LinkState::Connecting(String::new()));
        let driver = rt.spawn(drive(session.clone(), addr, me, fsid, events, state_tx));
        session.set_conn_task(driver.abort_handle());
        Connection {
            handle: SessionHandle { session },
            addr,
            state,
            driver,
            rt: rt.clone(),
        }
    }

    /// Connects and waits for the first handshake (bounded by the connect
    /// and handshake timeouts); later breaks are repaired in the background.
    pub async fn connect<S: EventSink>(
        addr: SocketAddr,
        me: EntityName,
        fsid: Uuid,
        config: MsgrConfig,
        events: S,
    ) -> Result<Connection, ConnectError> {
        Connection::connect_on(&Handle::current(), addr, me, fsid, config, events).await
    }

    /// Like [`Connection::connect`], with the connection on runtime `rt`.
    pub async fn connect_on<S: EventSink>(
        rt: &Handle,
        addr: SocketAddr,
        me: EntityName,
        fsid: Uuid,
        config: MsgrConfig,
        events: S,
    ) -> Result<Connection, ConnectError> {
        let limit = config.connect_timeout + config.handshake_timeout;
        let conn = Connection::start_on(rt, addr, me, fsid, config, events);
        let mut rx = conn.state.clone();
        let waited = timeout(limit, async {
            loop {
                if *rx.borrow_and_update() == LinkState::Up {
                    return Ok(());
                }
                if let Some(reason) = conn.handle.session.closed_reason() {
                    return Err(reason);
                }
                if rx.changed().await.is_err() {
                    return Err(conn
                        .handle
                        .session
                        .closed_reason()
                        .unwrap_or_else(|| "connection task ended".into()));
                }
            }
        })
        .await;
        match waited {
            Ok(Ok(())) => Ok(conn),
            Ok(Err(reason)) => match &*conn.state.borrow() {
                LinkState::Refused(r) => Err(ConnectError::Refused {
                    addr,
                    reason: r.clone(),
                }),
                _ => Err(ConnectError::Unreachable {
                    addr,
                    timeout_ms: limit.as_millis(),
                    last_error: reason,
                }),
            },
            Err(_) => {
                let last_error = match &*conn.state.borrow() {
                    LinkState::Connecting(e) if !e.is_empty() => e.clone(),
                    _ => "no answer".to_string(),
                };
                Err(ConnectError::Unreachable {
                    addr,
                    timeout_ms: limit.as_millis(),
                    last_error,
                })
            }
        }
    }

    pub fn handle(&self) -> SessionHandle {
        self.handle.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether a connection is up right now.
    pub fn is_connected(&self) -> bool {
        *self.state.borrow() == LinkState::Up
    }

    pub fn link_state(&self) -> LinkState {
        self.state.borrow().clone()
    }

    pub fn send(
        &self,
        msg: Message,
    ) -> impl std::future::Future<Output = Result<u64, SendError>> + Send + '_ {
        self.handle.session.send(msg)
    }

    pub fn try_send(&self, msg: Message) -> Result<u64, SendError> {
        self.handle.try_send(msg)
    }

    /// Ends the session, telling the peer (bounded by the keepalive
    /// interval), and stops reconnecting.
    pub async fn close(self) {
        self.handle.close("closed by the application");
        let limit = self.handle.session.config.keepalive_interval;
        let mut rx = self.state.clone();
        // The driver drops the sender when it ends.
        let _ = timeout(limit, async { while rx.changed().await.is_ok() {} }).await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.handle.close("connection dropped");
        // Give the writer a moment to send the close frame, then stop.
        let driver = self.driver.abort_handle();
        let grace = self
            .handle
            .session
            .config
            .keepalive_interval
            .min(Duration::from_millis(200));
        // On the connection's runtime, which outlives this handle unless
        // it is shutting down (then the task is dropped, and so is the
        // driver).
        self.rt.spawn(async move {
            tokio::time::sleep(grace).await;
            driver.abort();
        });
    }
}

/// One connect + handshake attempt.
async fn establish(
    session: &Arc<Session>,
    addr: SocketAddr,
    me: &EntityName,
    fsid: Uuid,
    pool: &RecvPool,
) -> Result<(FramedRead<ReadHalf>, WriteHalf, HelloReply, Protect), Attempt> {
    let cfg = &session.config;
    let (rd, mut wr) = timeout(
        cfg.connect_timeout,
        transport::connect(&cfg.transport, addr),
    )
    .await
    .map_err(|_| {
        Attempt::Retry(format!(
            "connect timed out after {} ms",
            cfg.connect_timeout.as_millis()
        ))
    })?
    .map_err(|e| Attempt::Retry(format!("connect: {e}")))?;
    let mut reader = FramedRead::new(rd, FrameReader::new(cfg, pool.clone()));
    let (in_seq, acked_seq) = session.seqs();
    let (auth_req, mut auth_st) = crate::auth::open(&cfg.auth).map_err(Attempt::Fatal)?;
    let (allowed, option) = cfg.auth.modes.for_connector(me.kind);
    let offer = onwire::offer_ids(allowed);
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        entity: me.clone(),
        fsid,
        session_id: session.id,
        in_seq,
        acked_seq,
        features: 0,
        max_frame_bytes: cfg.max_frame_bytes as u64,
        auth: auth_req,
        modes: offer.clone(),
    };
    write_control(&mut wr, FrameKind::Hello, 0, hello.to_bytes().into())
        .await
        .map_err(|e| Attempt::Retry(format!("sending hello: {e}")))?;
    let mut frame = timeout(cfg.handshake_timeout, reader.next())
        .await
        .map_err(|_| Attempt::Retry("no hello reply within the handshake timeout".into()))?
        .map_err(|e| Attempt::Retry(e.to_string()))?
        .ok_or_else(|| Attempt::Retry("closed during handshake".into()))?;
    if frame.header.kind == FrameKind::AuthChallenge {
        crate::auth::answer(&cfg.auth, &mut auth_st, &frame.payload, &mut wr)
            .await
            .map_err(Attempt::Fatal)?;
        frame = timeout(cfg.handshake_timeout, reader.next())
            .await
            .map_err(|_| Attempt::Retry("no hello reply within the handshake timeout".into()))?
            .map_err(|e| Attempt::Retry(e.to_string()))?
            .ok_or_else(|| Attempt::Retry("closed during authentication".into()))?;
    }
    match frame.header.kind {
        FrameKind::HelloReply => {}
        FrameKind::Reject => {
            return Err(Attempt::Fatal(
                String::from_utf8_lossy(&frame.payload).into_owned(),
            ))
        }
        k => return Err(Attempt::Retry(format!("expected hello reply, got {k:?}"))),
    }
    let reply = HelloReply::from_bytes(&frame.payload).map_err(|e| match e {
        // A newer, incompatible release answered: retrying cannot help.
        kalmar_common::encoding::DecodeError::Incompatible { .. } => Attempt::Fatal(format!(
            "{addr}: {e}: the peer runs a newer, incompatible release (this side runs Kalmar {})",
            kalmar_common::release::VERSION
        )),
        e => Attempt::Retry(format!("bad hello reply: {e}")),
    })?;
    if reply.protocol_version != PROTOCOL_VERSION {
        return Err(Attempt::Fatal(format!(
            "{} ({addr}) speaks protocol version {}, this side speaks {PROTOCOL_VERSION}: \
             not a supported mix of releases (docs/deploy.md, \"Upgrading\")",
            reply.entity, reply.protocol_version
        )));
    }
    let conn_key =
        crate::auth::finish(&cfg.auth, &auth_st, reply.auth.as_ref()).map_err(Attempt::Fatal)?;
    if !fsid_matches(fsid, reply.fsid) {
        return Err(Attempt::Fatal(format!(
            "{addr} belongs to cluster {}, expected {fsid}",
            reply.fsid
        )));
    }
    let mode = check_mode(&reply, &offer, allowed, option, conn_key.as_ref())
        .map_err(|e| Attempt::Fatal(format!("{} ({addr}): {e}", reply.entity)))?;
    let prot = Protection::new(mode, conn_key.as_ref(), &offer, true).map_err(Attempt::Fatal)?;
    reader.frames.set_rx(prot.rx);
    session.set_wire_mode(mode);
    Ok((reader, wr, reply, prot.tx))
}

/// The connector's check of the mode the acceptor chose: one this side
/// offered, proven (with authentication) by a MAC over the offer as the
/// acceptor received it, so a rewritten offer is caught.
fn check_mode(
    reply: &HelloReply,
    offer: &[u8],
    allowed: &[WireMode],
    option: &str,
    conn_key: Option<&kalmar_auth::ConnectionKey>,
) -> Result<WireMode, String> {
    // An acceptor of the previous version states no mode: crc.
    let mode = if reply.mode == 0 {
        WireMode::Crc
    } else if let Some(what) = onwire::legacy_mode(reply.mode) {
        return Err(format!(
            "the peer chose {what}, which this version no longer speaks: upgrade it"
        ));
    } else {
        WireMode::from_id(reply.mode)
            .ok_or_else(|| format!("the peer chose an unknown connection mode {}", reply.mode))?
    };
    if !allowed.contains(&mode) {
        return Err(format!(
            "the peer chose connection mode {mode}, which {option} does not allow here"
        ));
    }
    if let (Some(k), true) = (conn_key, reply.mode != 0) {
        let proven = reply
            .mode_mac
            .as_ref()
            .is_some_and(|mac| onwire::transcript_ok(k.expose(), offer, mode, mac));
        if !proven {
            return Err(format!(
                "the connection mode negotiation was tampered with (the acceptor's proof of \
                 the offer and of its choice, {mode}, does not match what this side sent)"
            ));
        }
    }
    Ok(mode)
}

enum Attempt {
    Retry(String),
    Fatal(String),
}

async fn drive<S: EventSink>(
    session: Arc<Session>,
    addr: SocketAddr,
    me: EntityName,
    fsid: Uuid,
    events: S,
    state: watch::Sender<LinkState>,
) {
    let cfg = session.config.clone();
    // Receive chunks for every connection of this session.
    let pool = RecvPool::new(&cfg);
    let mut backoff = cfg.reconnect_backoff_min;
    let mut failures: u32 = 0;
    let mut ever_connected = false;
    let handle = SessionHandle {
        session: session.clone(),
    };
    loop {
        if session.closed_reason().is_some() {
            return;
        }
        match establish(&session, addr, &me, fsid, &pool).await {
            Ok((reader, wr, reply, tx)) => {
                failures = 0;
                backoff = cfg.reconnect_backoff_min;
                let peer = Arc::new(PeerInfo {
                    entity: reply.entity.clone(),
                    addr,
                    session_id: session.id,
                    auth: None,
                });
                let conn_gen = match session.attach(
                    peer.clone(),
                    reply.in_seq,
                    reply.reset,
                    reply.max_frame_bytes,
                ) {
                    Ok(g) => g,
                    Err(reason) => {
                        tracing::error!(peer = %peer.entity, %addr, "ending the session: {reason}");
                        let (mut wr, mut tx) = (wr, tx);
                        let _ = write_protected(
                            &mut wr,
                            FrameKind::Close,
                            0,
                            Bytes::from(reason.clone()),
                            &mut tx,
                        )
                        .await;
                        session.close(&reason);
                        emit(&events, Event::Closed(handle.clone(), reason)).await;
                        return;
                    }
                };
                let _ = state.send(LinkState::Up);
                if reply.reset && ever_connected {
                    tracing::info!(peer = %peer.entity, %addr, "peer lost our session (restart?); replaying");
                    emit(&events, Event::Reset(handle.clone())).await;
                }
                ever_connected = true;
                let end = run_connection(
                    session.clone(),
                    peer.clone(),
                    conn_gen,
                    reader,
                    wr,
                    tx,
                    &events,
                )
                .await;
                session.detach(conn_gen);
                let _ = state.send(LinkState::Connecting(String::new()));
                match end {
                    ConnEnd::Failed(reason) => {
                        tracing::info!(peer = %peer.entity, %addr, "connection lost: {reason}")
                    }
                    ConnEnd::PeerClosed(reason) => {
                        tracing::info!(peer = %peer.entity, %addr, "{reason}");
                        session.close(&reason);
                        emit(&events, Event::Closed(handle.clone(), reason)).await;
                        return;
                    }
                    ConnEnd::LocalClosed => return,
                    ConnEnd::Violation(reason) => {
                        emit(&events, Event::Closed(handle.clone(), reason)).await;
                        return;
                    }
                }
            }
            Err(Attempt::Fatal(reason)) => {
                tracing::warn!(%addr, "session refused: {reason}");
                let _ = state.send(LinkState::Refused(reason.clone()));
                session.close(&reason);
                emit(&events, Event::Closed(handle.clone(), reason)).await;
                return;
            }
            Err(Attempt::Retry(reason)) => {
                failures += 1;
                let _ = state.send(LinkState::Connecting(reason.clone()));
                tracing::debug!(%addr, failures, "connect attempt failed: {reason}");
                if cfg
                    .reconnect_max_attempts
                    .is_some_and(|max| failures >= max)
                {
                    let reason = format!("gave up after {failures} attempts: {reason}");
                    session.close(&reason);
                    emit(&events, Event::Closed(handle.clone(), reason)).await;
                    return;
                }
            }
        }
        let closed = session.closed_wake.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if session.closed_reason().is_some() {
            return;
        }
        tokio::select! {
            biased;
            _ = closed => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(cfg.reconnect_backoff_max);
    }
}
