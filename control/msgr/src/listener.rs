//! The accepting side: binds a TCP port, runs the hello handshake on each
//! connection, keeps the sessions of connected (and recently disconnected)
//! peers, and delivers their messages as [`Event`]s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kalmar_common::encoding::{Decode, Encode};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use uuid::Uuid;

use crate::config::MsgrConfig;
use crate::entity::EntityName;
use crate::frame::FrameKind;
use crate::handshake::{fsid_matches, Hello, HelloReply, PROTOCOL_VERSION};
use crate::io::{run_connection, write_control, ConnEnd, FramedRead};
use crate::session::{PeerInfo, Session};
use crate::{Event, SessionHandle};

type Sessions = Arc<Mutex<HashMap<u64, Arc<Session>>>>;

struct Shared {
    me: EntityName,
    fsid: Uuid,
    config: Arc<MsgrConfig>,
    sessions: Sessions,
    events: mpsc::Sender<Event>,
}

/// A bound listener; dropping it stops accepting and closes every session.
pub struct Listener {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Listener {
    /// Binds `addr` and starts accepting. `fsid` is the cluster's (nil
    /// accepts peers of any cluster).
    pub async fn bind(
        addr: SocketAddr,
        me: EntityName,
        fsid: Uuid,
        config: MsgrConfig,
        events: mpsc::Sender<Event>,
    ) -> std::io::Result<Listener> {
        let tcp = TcpListener::bind(addr).await?;
        let local_addr = tcp.local_addr()?;
        let shared = Arc::new(Shared {
            me,
            fsid,
            config: Arc::new(config),
            sessions: Arc::new(Mutex::new(HashMap::new())),
            events,
        });
        let accept = tokio::spawn(accept_loop(tcp, shared.clone()));
        let sweep = tokio::spawn(sweep_loop(shared.clone()));
        Ok(Listener {
            local_addr,
            shared,
            tasks: vec![accept, sweep],
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Handles on every session currently held.
    pub fn sessions(&self) -> Vec<SessionHandle> {
        self.shared
            .sessions
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
        for s in self.shared.sessions.lock().drain().map(|(_, s)| s) {
            s.close("listener shut down");
            s.abort_conn_task();
        }
    }
}

async fn accept_loop(tcp: TcpListener, shared: Arc<Shared>) {
    loop {
        match tcp.accept().await {
            Ok((stream, addr)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = accept_one(stream, addr, shared).await {
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

async fn accept_one(
    stream: TcpStream,
    addr: SocketAddr,
    shared: Arc<Shared>,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut reader = FramedRead::new(rd, shared.config.max_frame_bytes);
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
    let hello = Hello::from_bytes(&first.payload).map_err(|e| format!("bad hello: {e}"))?;
    if hello.protocol_version != PROTOCOL_VERSION {
        return refuse(
            &mut wr,
            format!(
                "protocol version {} is not supported (this peer speaks {PROTOCOL_VERSION})",
                hello.protocol_version
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
    };
    write_control(&mut wr, FrameKind::HelloReply, 0, &reply.to_bytes())
        .await
        .map_err(|e| format!("writing hello reply: {e}"))?;
    let peer = Arc::new(PeerInfo {
        entity: hello.entity.clone(),
        addr,
        session_id: hello.session_id,
    });
    let conn_gen = match session.attach(peer.clone(), hello.in_seq, false, hello.max_frame_bytes) {
        Ok(g) => g,
        Err(reason) => {
            tracing::error!(peer = %peer.entity, %addr, "ending the session: {reason}");
            let _ = write_control(&mut wr, FrameKind::Close, 0, reason.as_bytes()).await;
            end_session(&shared, &session, &reason).await;
            return Err(reason);
        }
    };
    tracing::debug!(peer = %peer.entity, %addr, session = hello.session_id, fresh, "session attached");
    let task = {
        let session = session.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let end = run_connection(
                session.clone(),
                peer.clone(),
                conn_gen,
                reader,
                wr,
                shared.events.clone(),
            )
            .await;
            session.detach(conn_gen);
            match end {
                ConnEnd::Failed(reason) => {
                    tracing::info!(peer = %peer.entity, %addr, "connection ended: {reason}");
                }
                ConnEnd::PeerClosed(reason) => end_session(&shared, &session, &reason).await,
                ConnEnd::LocalClosed => end_session(&shared, &session, "closed locally").await,
                ConnEnd::Violation(reason) => end_session(&shared, &session, &reason).await,
            }
        })
    };
    session.set_conn_task(task.abort_handle());
    Ok(())
}

async fn refuse(wr: &mut tokio::net::tcp::OwnedWriteHalf, reason: String) -> Result<(), String> {
    let _ = write_control(wr, FrameKind::Reject, 0, reason.as_bytes()).await;
    Err(reason)
}

/// The session named in `hello`, or a new one (`true`).
fn find_or_create(shared: &Shared, hello: &Hello) -> Result<(Arc<Session>, bool), String> {
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

async fn end_session(shared: &Shared, session: &Arc<Session>, reason: &str) {
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
        let _ = shared
            .events
            .send(Event::Closed(handle, reason.to_string()))
            .await;
    }
}

/// Drops sessions whose peer has been away longer than the idle timeout.
async fn sweep_loop(shared: Arc<Shared>) {
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
