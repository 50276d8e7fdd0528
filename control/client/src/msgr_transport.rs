//! The real transport: messenger sessions to the OSDs, and the task that
//! turns their events into replies and lost sessions for the objecter.

use std::sync::{Arc, Weak};

use kalmar_maps::{EntityAddr, OsdId};
use kalmar_msgr::{Connection, EntityName, Event, MsgrConfig, SendError, SessionHandle};
use kalmar_proto::client::{OsdOpReply, OsdOpRequest};
use kalmar_proto::registry::CLIENT_OSD_OP_REPLY;
use tokio::sync::mpsc;

use crate::objecter::Objecter;
use crate::transport::{OsdSession, SendFailure, Transport};

pub struct MsgrTransport {
    me: EntityName,
    config: MsgrConfig,
    events: mpsc::Sender<Event>,
}

impl MsgrTransport {
    /// A transport whose sessions report to `events`; run [`reply_task`]
    /// on the other end.
    pub fn new(me: EntityName, config: MsgrConfig, events: mpsc::Sender<Event>) -> Self {
        MsgrTransport { me, config, events }
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
            self.events.clone(),
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

/// Hands the OSDs' replies and lost sessions to the objecter until it is
/// dropped.
pub async fn reply_task(o: Weak<Objecter<MsgrTransport>>, mut rx: mpsc::Receiver<Event>) {
    while let Some(ev) = rx.recv().await {
        let Some(o) = o.upgrade() else { return };
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
