//! The real transport: messenger sessions to the OSDs, whose read tasks
//! hand replies and lost sessions straight to the objecter.

use std::sync::{Arc, OnceLock, Weak};

use kalmar_maps::{EntityAddr, OsdId};
use kalmar_msgr::{
    Connection, EntityName, Event, EventSink, MsgrConfig, SendError, SessionHandle, Upcoming,
};
use kalmar_proto::client::{OsdOpReply, OsdOpRequest};
use kalmar_proto::registry::CLIENT_OSD_OP_REPLY;

use crate::objecter::Objecter;
use crate::transport::{OsdSession, SendFailure, Transport};

pub struct MsgrTransport {
    me: EntityName,
    config: MsgrConfig,
    replies: Arc<ReplySink>,
}

impl MsgrTransport {
    /// A transport whose sessions report to `replies`; attach the
    /// objecter to it once built ([`ReplySink::attach`]).
    pub fn new(me: EntityName, config: MsgrConfig, replies: Arc<ReplySink>) -> Self {
        MsgrTransport {
            me,
            config,
            replies,
        }
    }
}

struct Inner {
    /// Dropping the connection closes the session, so it lives as long as
    /// the last handle on it.
    _conn: Connection,
    handle: SessionHandle,
}

/// A messenger session to one OSD.
#[derive(Clone)]
pub struct MsgrSession(Arc<Inner>);

impl Transport for MsgrTransport {
    type Session = MsgrSession;

    fn open(&self, _osd: OsdId, addr: &EntityAddr, fsid: uuid::Uuid) -> MsgrSession {
        let conn = Connection::start(
            addr.addr,
            self.me.clone(),
            fsid,
            self.config.clone(),
            self.replies.clone(),
        );
        let handle = conn.handle();
        MsgrSession(Arc::new(Inner {
            _conn: conn,
            handle,
        }))
    }
}

impl OsdSession for MsgrSession {
    fn id(&self) -> u64 {
        self.0.handle.id()
    }

    fn is_closed(&self) -> bool {
        self.0.handle.is_closed()
    }

    fn close(&self, reason: &str) {
        self.0.handle.close(reason)
    }

    fn send(
        &self,
        req: &OsdOpRequest,
    ) -> impl std::future::Future<Output = Result<(), SendFailure>> + Send {
        let msg = req.to_message();
        let handle = &self.0.handle;
        async move {
            match handle.send(msg).await {
                Ok(_) => Ok(()),
                Err(SendError::TooLarge { len, max }) => Err(SendFailure::TooLarge { len, max }),
                Err(e) => {
                    tracing::debug!("send to an OSD failed: {e}");
                    Err(SendFailure::Closed)
                }
            }
        }
    }
}

/// Takes the OSDs' replies and lost sessions on each connection's read
/// task and hands them to the objecter there: both only complete or
/// requeue waiting ops (a lock and a wake-up), so no task sits between
/// the socket and the op's waiter.
#[derive(Default)]
pub struct ReplySink {
    objecter: OnceLock<Weak<Objecter<MsgrTransport>>>,
}

impl ReplySink {
    /// Sends the events to `o` from now on (sessions open only once the
    /// objecter exists, so none is missed).
    pub fn attach(&self, o: &Arc<Objecter<MsgrTransport>>) {
        let _ = self.objecter.set(Arc::downgrade(o));
    }

    fn objecter(&self) -> Option<Arc<Objecter<MsgrTransport>>> {
        self.objecter.get().and_then(Weak::upgrade)
    }
}

impl EventSink for ReplySink {
    type Permit<'a> = Arc<Objecter<MsgrTransport>>;

    /// Always room while the objecter lives; gone with it (the session
    /// closes).
    async fn reserve(&self, _next: &Upcoming<'_>) -> Option<Arc<Objecter<MsgrTransport>>> {
        self.objecter()
    }

    fn deliver(&self, o: Arc<Objecter<MsgrTransport>>, ev: Event) {
        match ev {
            Event::Message(inc) if inc.msg.msg_type == CLIENT_OSD_OP_REPLY => {
                match OsdOpReply::from_message(&inc.msg) {
                    Ok(r) => o.on_reply(r),
                    Err(e) => tracing::warn!(peer = %inc.peer.entity, "bad reply: {e}"),
                }
            }
            Event::Message(inc) => {
                tracing::debug!(peer = %inc.peer.entity, msg_type = inc.msg.msg_type, "unexpected message from an OSD")
            }
            Event::Reset(h) | Event::Closed(h, _) => o.on_session_lost(h.id()),
        }
    }
}
