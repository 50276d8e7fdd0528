//! Where a connection's events go.
//!
//! The read task of each connection hands every [`Event`] to an
//! [`EventSink`], in order, on its own thread: first it waits for room
//! ([`EventSink::reserve`]), then it gives the event ([`EventSink::deliver`]),
//! with nothing in between that could lose it. While `reserve` waits, the
//! connection reads nothing more: the peer's messages back up into TCP and
//! then into its bounded send queue.
//!
//! Two ways to use it:
//! - `mpsc::Sender<Event>` is a sink: events queue in a bounded channel
//!   (see [`crate::event_channel`]) for a dispatcher task. The mon, the mgr,
//!   the clients and the tests work this way.
//! - An application sink routes each message from the read task itself
//!   (no task hop), e.g. a shard of an OSD, whose `reserve` waits for a
//!   throttle permit and whose `deliver` queues the operation to the PG on
//!   the same thread.
//!
//! The order matters for exactly-once delivery: a message is counted as
//! received (and acknowledged later) only after `reserve` succeeded, and
//! `deliver` cannot fail; a connection torn down while `reserve` waits
//! has not counted the message, so the peer sends it again.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::session::PeerInfo;
use crate::Event;

/// What comes next, for a sink that sizes its room (a byte throttle).
#[derive(Debug, Clone, Copy)]
pub enum Upcoming<'a> {
    Message {
        peer: &'a PeerInfo,
        msg_type: u16,
        payload_bytes: usize,
    },
    /// [`Event::Reset`] or [`Event::Closed`].
    SessionChange,
}

/// Takes the events of connections, in order, from their read tasks.
pub trait EventSink: Send + Sync + 'static {
    /// Room for one event, held from `reserve` to `deliver`.
    type Permit<'a>: Send
    where
        Self: 'a;

    /// Waits until the sink can take the next event, described by `next`;
    /// the connection reads nothing meanwhile. `None`: the sink is gone for
    /// good, and the session is closed. Should not allocate when there is
    /// room (it runs once per message).
    fn reserve(&self, next: &Upcoming<'_>)
        -> impl Future<Output = Option<Self::Permit<'_>>> + Send;

    /// Takes the event; must not block. Called right after `reserve`, on
    /// the same task.
    fn deliver(&self, permit: Self::Permit<'_>, event: Event);
}

impl EventSink for mpsc::Sender<Event> {
    type Permit<'a> = mpsc::Permit<'a, Event>;

    async fn reserve(&self, _next: &Upcoming<'_>) -> Option<mpsc::Permit<'_, Event>> {
        mpsc::Sender::reserve(self).await.ok()
    }

    fn deliver(&self, permit: mpsc::Permit<'_, Event>, event: Event) {
        permit.send(event)
    }
}

impl<S: EventSink> EventSink for Arc<S> {
    type Permit<'a> = S::Permit<'a>;

    fn reserve(
        &self,
        next: &Upcoming<'_>,
    ) -> impl Future<Output = Option<Self::Permit<'_>>> + Send {
        S::reserve(self, next)
    }

    fn deliver(&self, permit: Self::Permit<'_>, event: Event) {
        S::deliver(self, permit, event)
    }
}

/// Waits for room, then delivers a session-level event. False: the sink
/// is gone.
pub(crate) async fn emit<S: EventSink>(sink: &S, event: Event) -> bool {
    match sink.reserve(&Upcoming::SessionChange).await {
        Some(permit) => {
            sink.deliver(permit, event);
            true
        }
        None => false,
    }
}
