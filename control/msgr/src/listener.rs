//! The accepting side: binds a port (TCP, or a simulated network's), runs the hello handshake on each
//! connection, keeps the sessions of connected (and recently disconnected)
//! peers, and delivers their messages as [`Event`]s to an [`EventSink`].
//!
//! The handshake runs on the listener's runtime. Then a [`Placement`], if
//! given, picks the runtime the connection lives on (its read and write
//! tasks, its socket's readiness, and so its sink calls): a shard-per-core
//! daemon keeps each connection on one shard's thread.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kalmar_common::encoding::{Decode, Encode};
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use uuid::Uuid;

use crate::config::MsgrConfig;
use crate::entity::EntityName;
use crate::frame::FrameKind;
use crate::handshake::{fsid_matches, Hello, HelloReply, PROTOCOL_VERSION};
use crate::io::{run_connection, ConnEnd};
use crate::onwire::{self, Protect, Protection};
use crate::pool::RecvPool;
use crate::read::{FrameReader, FramedRead};
use crate::session::{PeerInfo, Session};
use crate::sink::{emit, EventSink};
use crate::transport::{self, Acceptor, ReadHalf, WriteHalf};
use crate::write::{write_control, write_protected};
use crate::{Event, SessionHandle};

type Sessions = Arc<Mutex<HashMap<u64, Arc<Session>>>>;

/// Chooses the runtime an accepted connection runs on, once the handshake
/// named the peer; `None` keeps it on the listener's runtime. Called once
/// per connection, on the listener's runtime; it should return at once.
pub type Placement = Arc<dyn Fn(&PeerInfo) -> Option<Handle> + Send + Sync>;

struct Shared<S> {
    me: EntityName,
    fsid: Uuid,
    config: Arc<MsgrConfig>,
    sessions: Sessions,
    sink: S,
    placement: Option<Placement>,
    /// Receive chunks of every connection of this listener.
    pool: RecvPool,
}

/// A bound listener; dropping it stops accepting and closes every session.
pub struct Listener {
    local_addr: SocketAddr,
    sessions: Sessions,
    tasks: Vec<JoinHandle<()>>,
}

impl Listener {
    /// Binds `addr` and starts accepting; every connection runs on the
    /// current runtime. `fsid` is the cluster's (nil accepts peers of any
    /// cluster). `events` gets every event of every session (an
    /// `mpsc::Sender<Event>` from [`crate::event_channel`], or a sink of
    /// the application's; each connection calls a clone of it).
    pub async fn bind<S: EventSink + Clone>(
        addr: SocketAddr,
        me: EntityName,
        fsid: Uuid,
        config: MsgrConfig,
        events: S,
    ) -> std::io::Result<Listener> {
        Listener::bind_placed(addr, me, fsid, config, events, None).await
    }

    /// Like [`Listener::bind`], with each connection put on the runtime
    /// `placement` picks for its peer.
    pub async fn bind_placed<S: EventSink + Clone>(
        addr: SocketAddr,
        me: EntityName,
        fsid: Uuid,
        config: MsgrConfig,
        events: S,
        placement: Option<Placement>,
    ) -> std::io::Result<Listener> {
        let acceptor = Acceptor::bind(&config.transport, addr).await?;
        let local_addr = acceptor.local_addr()?;
        let shared = Arc::new(Shared {
            me,
            fsid,
            pool: RecvPool::new(&config),
            config: Arc::new(config),
            sessions: Arc::new(Mutex::new(HashMap::new())),
            sink: events,
            placement,
        });
        let sessions = shared.sessions.clone();
        let accept = tokio::spawn(accept_loop(acceptor, shared.clone()));
        let sweep = tokio::spawn(sweep_loop(shared));
        Ok(Listener {
            local_addr,
            sessions,
            tasks: vec![accept, sweep],
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Handles on every session currently held.
    pub fn sessions(&self) -> Vec<SessionHandle> {
        self.sessions
            .lock()
            .values()
            .map(|s| SessionHandle { session: s.clone() })
            .collect()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for s in self.sessions.lock().drain().map(|(_, s)| s) {
            s.close("listener shut down");
            s.abort_conn_task();
        }
    }
}

async fn accept_loop<S: EventSink + Clone>(mut acceptor: Acceptor, shared: Arc<Shared<S>>) {
    loop {
        match acceptor.accept().await {
            Ok((rd, wr, addr)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = accept_one(rd, wr, addr, shared).await {
                        tracing::warn!(%addr, "refused connection: {e}");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn accept_one<S: EventSink + Clone>(
    rd: ReadHalf,
    mut wr: WriteHalf,
    addr: SocketAddr,
    shared: Arc<Shared<S>>,
) -> Result<(), String> {
    let mut reader = FramedRead::new(rd, FrameReader::new(&shared.config, shared.pool.clone()));
    let first = timeout(shared.config.handshake_timeout, reader.next())
        .await
        .map_err(|_| "no hello within the handshake timeout".to_string())?
        .map_err(String::from)?
        .ok_or("closed before hello")?;
    if first.header.kind != FrameKind::Hello {
        return Err(format!(
            "first frame is {:?}, expected hello",
            first.header.kind
        ));
    }
    let hello = match Hello::from_bytes(&first.payload) {
        Ok(h) => h,
        // A hello of a newer layout than this build reads (a peer of a
        // later, incompatible release) is told so, both versions named,
        // rather than dropped without a word.
        Err(e @ kalmar_common::encoding::DecodeError::Incompatible { .. }) => {
            return refuse(
                &mut wr,
                format!(
                    "{e}: the peer runs a newer, incompatible release (this side runs Kalmar {})",
                    kalmar_common::release::VERSION
                ),
            )
            .await;
        }
        Err(e) => return Err(format!("bad hello: {e}")),
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        return refuse(
            &mut wr,
            format!(
                "protocol version {} is not supported (this peer speaks {PROTOCOL_VERSION}, \
                 Kalmar {}): not a supported mix of releases (docs/deploy.md, \"Upgrading\")",
                hello.protocol_version,
                kalmar_common::release::VERSION
            ),
        )
        .await;
    }
    if !fsid_matches(shared.fsid, hello.fsid) {
        return refuse(
            &mut wr,
            format!(
                "{} belongs to cluster {}, this is cluster {}",
                hello.entity, hello.fsid, shared.fsid
            ),
        )
        .await;
    }
    let peer_name = hello.entity.to_string();
    let auth = crate::auth::accept(
        &shared.config.auth,
        &peer_name,
        hello.auth.as_ref(),
        &mut reader,
        &mut wr,
        shared.config.handshake_timeout,
    )
    .await;
    let (auth_reply, authed, conn_key) = match auth {
        Ok(v) => v,
        Err(reason) => return refuse(&mut wr, reason).await,
    };
    // The connection mode: the first of the peer's offer this side
    // allows (with no authentication, and so no key, crc only). The key
    // lives only until the direction keys are derived: it is wiped when
    // dropped, at the end of this function.
    let (allowed, option) = shared.config.auth.modes.for_acceptor(hello.entity.kind);
    let mode = match onwire::pick(&hello.modes, allowed, option, conn_key.is_some()) {
        Ok(m) => m,
        Err(reason) => return refuse(&mut wr, format!("{peer_name}: {reason}")).await,
    };
    let prot = match Protection::new(mode, conn_key.as_ref(), &hello.modes, false) {
        Ok(p) => p,
        Err(reason) => return refuse(&mut wr, reason).await,
    };
    let (session, fresh) = match find_or_create(&shared, &hello) {
        Ok(v) => v,
        Err(reason) => return refuse(&mut wr, reason).await,
    };
    let (in_seq, _) = session.seqs();
    let reply = HelloReply {
        protocol_version: PROTOCOL_VERSION,
        entity: shared.me.clone(),
        fsid: shared.fsid,
        in_seq,
        reset: fresh,
        features: 0,
        max_frame_bytes: shared.config.max_frame_bytes as u64,
        auth: auth_reply,
        mode: mode.id(),
        mode_mac: conn_key
            .as_ref()
            .map(|k| onwire::transcript_mac(k.expose(), &hello.modes, mode)),
    };
    write_control(&mut wr, FrameKind::HelloReply, 0, reply.to_bytes().into())
        .await
        .map_err(|e| format!("writing hello reply: {e}"))?;
    // Every frame after the reply is protected as the mode says.
    let Protection { mut tx, rx } = prot;
    reader.frames.set_rx(rx);
    session.set_wire_mode(mode);
    let peer = Arc::new(PeerInfo {
        entity: hello.entity.clone(),
        addr,
        session_id: hello.session_id,
        auth: authed,
    });
    let conn_gen = match session.attach(peer.clone(), hello.in_seq, false, hello.max_frame_bytes) {
        Ok(g) => g,
        Err(reason) => {
            tracing::error!(peer = %peer.entity, %addr, "ending the session: {reason}");
            let close = Bytes::from(reason.clone());
            let _ = write_protected(&mut wr, FrameKind::Close, 0, close, &mut tx).await;
            end_session(&shared, &session, &reason).await;
            return Err(reason);
        }
    };
    tracing::debug!(peer = %peer.entity, %addr, session = hello.session_id, fresh, "session attached");
    let conn = Accepted {
        session: session.clone(),
        peer,
        conn_gen,
        shared,
        tx,
    };
    let task = match conn.shared.placement.as_ref().and_then(|p| p(&conn.peer)) {
        None => tokio::spawn(conn.run(reader, wr)),
        Some(rt) => {
            // The connection's readiness is polled on the chosen runtime's
            // thread from now on.
            let FramedRead { rd, frames } = reader;
            let (rd, wr) = match transport::move_to(rd, wr, &rt) {
                Ok(v) => v,
                Err(e) => {
                    // The session waits for the peer to reconnect.
                    conn.session.detach(conn.conn_gen);
                    return Err(format!("moving the connection to its runtime: {e}"));
                }
            };
            rt.spawn(async move { conn.run(FramedRead::new(rd, frames), wr).await })
        }
    };
    session.set_conn_task(task.abort_handle());
    Ok(())
}

/// A connection past the handshake, attached to its session.
struct Accepted<S> {
    session: Arc<Session>,
    peer: Arc<PeerInfo>,
    conn_gen: u64,
    shared: Arc<Shared<S>>,
    /// The protection of the frames this side sends.
    tx: Protect,
}

impl<S: EventSink + Clone> Accepted<S> {
    async fn run(mut self, reader: FramedRead<ReadHalf>, wr: WriteHalf) {
        let sink = self.shared.sink.clone();
        let tx = std::mem::replace(&mut self.tx, Protect::crc());
        let end = run_connection(
            self.session.clone(),
            self.peer.clone(),
            self.conn_gen,
            reader,
            wr,
            tx,
            &sink,
        )
        .await;
        self.end(end).await
    }

    async fn end(self, end: ConnEnd) {
        let (session, shared) = (&self.session, &self.shared);
        session.detach(self.conn_gen);
        match end {
            ConnEnd::Failed(reason) => {
                tracing::info!(peer = %self.peer.entity, addr = %self.peer.addr, "connection ended: {reason}");
            }
            ConnEnd::PeerClosed(reason) => end_session(shared, session, &reason).await,
            ConnEnd::LocalClosed => end_session(shared, session, "closed locally").await,
            ConnEnd::Violation(reason) => end_session(shared, session, &reason).await,
        }
    }
}

async fn refuse(wr: &mut WriteHalf, reason: String) -> Result<(), String> {
    let _ = write_control(wr, FrameKind::Reject, 0, Bytes::from(reason.clone())).await;
    Err(reason)
}

/// The session named in `hello`, or a new one (`true`).
fn find_or_create<S>(shared: &Shared<S>, hello: &Hello) -> Result<(Arc<Session>, bool), String> {
    let mut sessions = shared.sessions.lock();
    if let Some(s) = sessions.get(&hello.session_id) {
        return match s.peer() {
            Some(p) if p.entity != hello.entity => Err(format!(
                "session {} belongs to {}, not {}",
                hello.session_id, p.entity, hello.entity
            )),
            _ => Ok((s.clone(), false)),
        };
    }
    if sessions.len() >= shared.config.max_sessions {
        let oldest = sessions
            .iter()
            .filter_map(|(id, s)| s.detached_since().map(|t| (t, *id)))
            .min();
        match oldest {
            Some((_, id)) => {
                if let Some(s) = sessions.remove(&id) {
                    s.close("evicted: too many sessions");
                }
            }
            None => {
                return Err(format!(
                    "too many sessions ({})",
                    shared.config.max_sessions
                ))
            }
        }
    }
    let s = Session::new(hello.session_id, shared.config.clone());
    s.start_in_seq_at(hello.acked_seq);
    sessions.insert(hello.session_id, s.clone());
    Ok((s, true))
}

async fn end_session<S: EventSink>(shared: &Shared<S>, session: &Arc<Session>, reason: &str) {
    session.close(reason);
    let removed = {
        let mut sessions = shared.sessions.lock();
        match sessions.get(&session.id) {
            Some(s) if Arc::ptr_eq(s, session) => sessions.remove(&session.id).is_some(),
            _ => false,
        }
    };
    if removed {
        let handle = SessionHandle {
            session: session.clone(),
        };
        emit(&shared.sink, Event::Closed(handle, reason.to_string())).await;
    }
}

/// Drops sessions whose peer has been away longer than the idle timeout.
async fn sweep_loop<S: EventSink>(shared: Arc<Shared<S>>) {
    let idle = shared.config.session_idle_timeout;
    let period = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(period).await;
        let expired: Vec<Arc<Session>> = shared
            .sessions
            .lock()
            .values()
            .filter(|s| s.detached_since().is_some_and(|t| t.elapsed() > idle))
            .cloned()
            .collect();
        for s in expired {
            end_session(
                &shared,
                &s,
                "peer did not come back within the session idle timeout",
            )
            .await;
        }
    }
}
