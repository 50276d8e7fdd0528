//! Kalmar's messenger: framed messages over TCP (or, in tests and the
//! simulator, over the in-memory network of [`sim`]; see [`Transport`]).
//!
//! - [`frame`]: the 36-byte header (magic, kind, flags, type, seq, ack,
//!   length, crc32c of payload and header) and a bounded, pure decoder.
//! - [`message`]: a [`Message`] is a type id and a payload of one or more
//!   `Bytes` chunks (an encoded header and the caller's data segments).
//! - [`session`]: sequence numbers, acknowledgements, the bounded send queue
//!   and replay of unacknowledged messages after a reconnect.
//! - [`listener::Listener`]: accepts connections, runs the hello handshake
//!   (entity name + cluster fsid, then authentication, see [`auth`]), resumes sessions, and hands every inbound
//!   message to the application as an [`Event`]; a [`Placement`] callback
//!   may put each connection on a runtime of the application's choosing.
//! - [`connection::Connection`]: an outbound session that reconnects with
//!   backoff and replays what the peer had not acknowledged; it can be
//!   started on a given runtime.
//! - [`sink`]: where events go. The read task of each connection calls an
//!   [`EventSink`] for every event, in order, on its own thread, and stops
//!   reading while the sink makes it wait. A bounded `mpsc::Sender<Event>`
//!   (see [`event_channel`]) is one sink, feeding a dispatcher task; an
//!   application can route messages from the read task itself instead.
//!
//! A malformed frame closes its connection with a logged reason; it never
//! reaches the application. Each side states its frame limit in the
//! handshake and `send` refuses (`SendError::TooLarge`) a message the peer
//! could not take. A peer that sends an oversized frame anyway gets its
//! session ended with the reason in the close frame (replaying it would
//! fail the same way forever).
//!
//! Payload data is not copied by the messenger on either side. A message's
//! chunks are written as they are, every header and chunk one slice of a
//! vectored write (the crc is computed over the chunks in order), and a
//! message cloned to several peers shares its chunks. Received payloads
//! are `Bytes` sliced out of receive chunks that come from a bounded pool
//! and are reused once the application has dropped every message sliced
//! out of them; frames of `recv_aligned_min_bytes` or more go straight
//! into a 4 KiB-aligned buffer of their own, their data on a block
//! boundary, ready for O_DIRECT. The steady-state send and receive paths
//! of a connection allocate nothing per message (see
//! `tests/allocations.rs`); what the application does to build or decode
//! a message is its own affair.
#![deny(clippy::unwrap_used)]

pub mod auth;
pub mod config;
pub mod connection;
pub mod entity;
pub mod frame;
pub mod handshake;
mod io;
pub mod listener;
pub mod message;
pub mod onwire;
mod pool;
mod read;
pub mod session;
pub mod sim;
pub mod sink;
mod transport;
mod write;

use std::sync::Arc;

pub use config::MsgrConfig;
pub use connection::{ConnectError, Connection, LinkState};
pub use entity::{EntityName, EntityType};
pub use listener::{Listener, Placement};
pub use message::Message;
pub use session::{PeerInfo, SendError};
pub use sink::{EventSink, Upcoming};
pub use transport::Transport;

use session::Session;
use tokio::sync::mpsc;

/// What the messenger tells the application.
#[derive(Debug)]
pub enum Event {
    /// A message arrived (in order, exactly once per session).
    Message(Incoming),
    /// The peer lost the session's state (it restarted): anything the
    /// application registered with it (subscriptions) must be sent again.
    /// Messages not acknowledged before the reset are replayed regardless.
    Reset(SessionHandle),
    /// The session ended for good (peer closed it, it expired, or
    /// reconnecting gave up); the reason is for logs.
    Closed(SessionHandle, String),
}

/// One inbound message with its sender.
#[derive(Debug)]
pub struct Incoming {
    pub peer: Arc<PeerInfo>,
    pub msg: Message,
    /// Replies go back through this handle.
    pub from: SessionHandle,
}

/// A channel of events, bounded by `config.dispatch_queue_messages`.
pub fn event_channel(config: &MsgrConfig) -> (mpsc::Sender<Event>, mpsc::Receiver<Event>) {
    mpsc::channel(config.dispatch_queue_messages.max(1))
}

/// A cheap handle on a session, for sending to its peer.
#[derive(Clone)]
pub struct SessionHandle {
    pub(crate) session: Arc<Session>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.session.id)
            .field("peer", &self.peer().map(|p| p.entity.to_string()))
            .finish()
    }
}

impl SessionHandle {
    /// Queues a message, waiting while the peer's send queue is full.
    pub fn send(
        &self,
        msg: Message,
    ) -> impl std::future::Future<Output = Result<u64, SendError>> + Send + '_ {
        // Not an async fn: one future less to build around the message.
        self.session.send(msg)
    }

    /// Queues a message or fails at once with [`SendError::Full`].
    pub fn try_send(&self, msg: Message) -> Result<u64, SendError> {
        self.session.try_send(msg)
    }

    pub fn peer(&self) -> Option<Arc<PeerInfo>> {
        self.session.peer()
    }

    /// The largest message payload this session carries: our frame limit,
    /// or the peer's if it stated a smaller one. A larger `send` fails with
    /// [`SendError::TooLarge`], so a reply that could not fit is known
    /// before it is built.
    pub fn max_message_bytes(&self) -> usize {
        self.session.max_message_bytes()
    }

    /// The session id (chosen by the connecting side).
    pub fn id(&self) -> u64 {
        self.session.id
    }

    /// Ends the session: the peer is told, queued messages are dropped.
    pub fn close(&self, reason: &str) {
        self.session.close(reason)
    }

    pub fn is_closed(&self) -> bool {
        self.session.closed_reason().is_some()
    }

    /// Messages queued to the peer and not yet acknowledged by it (sent
    /// or not): what a reconnect would replay.
    pub fn unacked_messages(&self) -> usize {
        self.session.queued().0
    }

    /// The connection mode (crc, signed, secure) the last handshake of
    /// this session chose; `None` before one.
    pub fn wire_mode(&self) -> Option<onwire::WireMode> {
        self.session.wire_mode()
    }

    /// Whether both handles name the same session.
    pub fn same_session(&self, other: &SessionHandle) -> bool {
        Arc::ptr_eq(&self.session, &other.session)
    }
}
