//! A client of the mon, for daemons and the CLI.
//!
//! It owns one messenger session to the mon and a task that routes what
//! comes back: command and mkfs replies to their waiting callers (by tid),
//! maps to the owner's event channel. Subscriptions are remembered and sent
//! again when the mon restarts (the session is reset), starting after the
//! newest osdmap epoch this client has passed on.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kalmar_common::encoding::Blob;
use kalmar_msgr::{
    event_channel, Connection, EntityName, Event, Incoming, Message, MsgrConfig, SendError,
};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::mon::*;
use crate::registry::{MGR_MAP, MON_COMMAND_REPLY, OSD_MAP, OSD_MKFS_REPLY};
use crate::{Payload, ProtoError};

/// Default bound on waiting for a command reply.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Events buffered for the owner before the routing task waits.
pub const EVENT_QUEUE_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MonClientError {
    #[error("cannot talk to the mon: {0}")]
    Connect(#[from] kalmar_msgr::ConnectError),
    #[error("sending to the mon failed: {0}")]
    Send(#[from] SendError),
    #[error("the mon did not answer within {0} ms (is it running and reachable?)")]
    Timeout(u128),
    #[error("the session to the mon ended before the reply: {0}")]
    Closed(String),
    #[error("the mon sent a bad reply: {0}")]
    BadReply(#[from] ProtoError),
    #[error("command is not valid JSON: {0}")]
    BadCommand(String),
}

/// What the mon sends that nobody asked for by tid.
#[derive(Debug)]
pub enum MonEvent {
    OsdMap(OsdMapMsg),
    MgrMap(MgrMapMsg),
    /// Any other message (the owner's protocol extensions).
    Other(Incoming),
    /// The mon restarted; subscriptions were sent again.
    Reset,
    /// The session ended for good.
    Closed(String),
}

#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<u64, oneshot::Sender<Message>>>,
    subs: Mutex<BTreeMap<String, SubscribeItem>>,
}

/// A session with the mon.
pub struct MonClient {
    conn: Connection,
    shared: Arc<Shared>,
    next_tid: AtomicU64,
    router: JoinHandle<()>,
}

impl MonClient {
    /// Connects (bounded by the messenger's connect and handshake
    /// timeouts) and returns the client with its event stream.
    pub async fn connect(
        addr: SocketAddr,
        me: EntityName,
        fsid: Uuid,
        config: MsgrConfig,
    ) -> Result<(MonClient, mpsc::Receiver<MonEvent>), MonClientError> {
        let (tx, rx) = event_channel(&config);
        let conn = Connection::connect(addr, me, fsid, config, tx).await?;
        Ok(MonClient::with_connection(conn, rx))
    }

    /// Like [`MonClient::connect`] but returns at once and keeps trying in
    /// the background (a daemon starting before its mon).
    pub fn start(
        addr: SocketAddr,
        me: EntityName,
        fsid: Uuid,
        config: MsgrConfig,
    ) -> (MonClient, mpsc::Receiver<MonEvent>) {
        let (tx, rx) = event_channel(&config);
        let conn = Connection::start(addr, me, fsid, config, tx);
        MonClient::with_connection(conn, rx)
    }

    fn with_connection(
        conn: Connection,
        rx: mpsc::Receiver<Event>,
    ) -> (MonClient, mpsc::Receiver<MonEvent>) {
        let shared = Arc::new(Shared::default());
        let (out_tx, out_rx) = mpsc::channel(EVENT_QUEUE_LEN);
        let router = tokio::spawn(route(rx, shared.clone(), out_tx));
        let client = MonClient {
            conn,
            shared,
            next_tid: AtomicU64::new(1),
            router,
        };
        (client, out_rx)
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_connected()
    }

    /// Sends any payload to the mon.
    pub async fn send<T: Payload>(&self, payload: &T) -> Result<(), MonClientError> {
        self.conn.send(payload.to_message()).await?;
        Ok(())
    }

    /// Runs a command (a JSON object with a `prefix`) and waits for the
    /// reply, at most `timeout`.
    pub async fn command(
        &self,
        cmd: &serde_json::Value,
        timeout: Duration,
    ) -> Result<MonCommandReply, MonClientError> {
        self.command_with_input(cmd, Vec::new(), timeout).await
    }

    /// [`MonClient::command`] with an input buffer (`-i FILE` of Ceph's
    /// CLI: `crash post`, `config-key set`, ...).
    pub async fn command_with_input(
        &self,
        cmd: &serde_json::Value,
        inbuf: Vec<u8>,
        timeout: Duration,
    ) -> Result<MonCommandReply, MonClientError> {
        if !cmd.get("prefix").is_some_and(|p| p.is_string()) {
            return Err(MonClientError::BadCommand(format!(
                "no \"prefix\" in {cmd}"
            )));
        }
        let tid = self.next_tid.fetch_add(1, Ordering::Relaxed);
        let msg = MonCommand {
            tid,
            cmd: cmd.to_string(),
            inbuf: Blob(inbuf),
        };
        let reply = self.request(tid, msg.to_message(), timeout).await?;
        Ok(MonCommandReply::from_message(&reply)?)
    }

    /// Registers an OSD by uuid (see [`OsdMkfs`]).
    pub async fn osd_mkfs(
        &self,
        uuid: Uuid,
        want_id: i32,
        hostname: &str,
        timeout: Duration,
    ) -> Result<OsdMkfsReply, MonClientError> {
        let tid = self.next_tid.fetch_add(1, Ordering::Relaxed);
        let msg = OsdMkfs {
            tid,
            uuid,
            want_id,
            hostname: hostname.to_string(),
        };
        let reply = self.request(tid, msg.to_message(), timeout).await?;
        Ok(OsdMkfsReply::from_message(&reply)?)
    }

    async fn request(
        &self,
        tid: u64,
        msg: Message,
        timeout: Duration,
    ) -> Result<Message, MonClientError> {
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().insert(tid, tx);
        let result = async {
            self.conn.send(msg).await?;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(_)) => Err(MonClientError::Closed(if self.conn.handle().is_closed() {
                    "session closed".to_string()
                } else {
                    "the mon restarted".to_string()
                })),
                Err(_) => Err(MonClientError::Timeout(timeout.as_millis())),
            }
        }
        .await;
        self.shared.pending.lock().remove(&tid);
        result
    }

    /// Subscribes to `what` (`osdmap`, `mgrmap`) from epoch `start`.
    pub async fn subscribe(
        &self,
        what: &str,
        start: u32,
        onetime: bool,
    ) -> Result<(), MonClientError> {
        let item = SubscribeItem {
            what: what.to_string(),
            start,
            onetime,
        };
        if !onetime {
            self.shared
                .subs
                .lock()
                .insert(what.to_string(), item.clone());
        }
        self.send(&MonSubscribe { items: vec![item] }).await
    }

    /// Ends the session (the mon is told). Dropping the client also ends
    /// it; the routing task stops when the session's events stop.
    pub async fn close(self) {
        self.router.abort();
        self.conn.close().await;
    }
}

fn reply_tid(msg: &Message) -> Result<u64, ProtoError> {
    Ok(match msg.msg_type {
        MON_COMMAND_REPLY => MonCommandReply::from_message(msg)?.tid,
        _ => OsdMkfsReply::from_message(msg)?.tid,
    })
}

async fn route(mut rx: mpsc::Receiver<Event>, shared: Arc<Shared>, out: mpsc::Sender<MonEvent>) {
    while let Some(ev) = rx.recv().await {
        let forward = match ev {
            Event::Message(m) => match m.msg.msg_type {
                MON_COMMAND_REPLY | OSD_MKFS_REPLY => {
                    match reply_tid(&m.msg) {
                        Ok(tid) => {
                            if let Some(tx) = shared.pending.lock().remove(&tid) {
                                let _ = tx.send(m.msg);
                            }
                        }
                        Err(e) => tracing::warn!("dropping reply from the mon: {e}"),
                    }
                    None
                }
                OSD_MAP => match OsdMapMsg::from_message(&m.msg) {
                    Ok(map) => {
                        if let Some(sub) = shared.subs.lock().get_mut("osdmap") {
                            sub.start = sub.start.max(map.newest.saturating_add(1));
                        }
                        Some(MonEvent::OsdMap(map))
                    }
                    Err(e) => {
                        tracing::warn!("dropping osdmap from the mon: {e}");
                        None
                    }
                },
                MGR_MAP => match MgrMapMsg::from_message(&m.msg) {
                    Ok(map) => Some(MonEvent::MgrMap(map)),
                    Err(e) => {
                        tracing::warn!("dropping mgrmap from the mon: {e}");
                        None
                    }
                },
                _ => Some(MonEvent::Other(m)),
            },
            Event::Reset(handle) => {
                // Replies to requests in flight are lost with the mon's
                // state: fail them now rather than at their timeout.
                shared.pending.lock().clear();
                let items: Vec<SubscribeItem> = shared.subs.lock().values().cloned().collect();
                if !items.is_empty() {
                    if let Err(e) = handle.send(MonSubscribe { items }.to_message()).await {
                        tracing::warn!("re-subscribing after a mon restart failed: {e}");
                    }
                }
                Some(MonEvent::Reset)
            }
            Event::Closed(_, reason) => {
                shared.pending.lock().clear();
                Some(MonEvent::Closed(reason))
            }
        };
        if let Some(ev) = forward {
            // An owner that dropped its receiver (the CLI) still gets its
            // replies routed; a slow owner is waited for.
            if let Err(mpsc::error::TrySendError::Full(ev)) = out.try_send(ev) {
                let _ = out.send(ev).await;
            }
        }
    }
}
