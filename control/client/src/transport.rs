//! The objecter's I/O, as a trait: a session to one OSD that takes
//! requests. Replies and lost sessions come back the other way, through
//! [`crate::objecter::Objecter::on_reply`] and
//! [`crate::objecter::Objecter::on_session_lost`], called by whoever
//! reads the transport (the messenger's reply task, or a test).
//!
//! The real transport is the messenger ([`crate::msgr_transport`]); tests
//! use the scripted one in [`crate::testing`], so the resend logic runs
//! in-process against a controlled clock.

use std::future::Future;

use kalmar_maps::{EntityAddr, OsdId};
use kalmar_proto::client::OsdOpRequest;

/// Why a request could not be queued on a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    /// No session to any OSD would take it: the op fails at once.
    TooLarge { len: usize, max: usize },
    /// The session is gone; the op is resent on a new one.
    Closed,
}

/// Opens sessions to OSDs.
pub trait Transport: Send + Sync + 'static {
    type Session: OsdSession;

    /// Starts a session to `osd` at `addr` and returns at once;
    /// connecting (and reconnecting) happens in the background, and
    /// requests sent meanwhile are queued.
    fn open(&self, osd: OsdId, addr: &EntityAddr, fsid: uuid::Uuid) -> Self::Session;
}

/// A session to one OSD. Clones are cheap handles on the same session.
pub trait OsdSession: Clone + Send + Sync + 'static {
    /// Unique among the transport's sessions; a lost session is reported
    /// by this id.
    fn id(&self) -> u64;

    fn is_closed(&self) -> bool;

    /// Ends the session (the OSD went down or moved).
    fn close(&self, reason: &str);

    /// Queues `req`, waiting while the session's send queue is full.
    fn send(&self, req: &OsdOpRequest) -> impl Future<Output = Result<(), SendFailure>> + Send;
}
