//! A session: the reliable, ordered message stream between two entities,
//! which outlives any one TCP connection.
//!
//! Outgoing messages get consecutive sequence numbers and stay queued until
//! the peer acknowledges them, so a reconnect replays exactly what the peer
//! has not seen. Incoming messages at or below the last delivered sequence
//! are duplicates from such a replay and are dropped. The queue is bounded
//! in messages and bytes; `send` waits for acknowledgements when it is full.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::config::MsgrConfig;
use crate::entity::EntityName;
use crate::handshake::peer_frame_limit;
pub use crate::message::Message;

/// Who is on the other end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub entity: EntityName,
    pub addr: SocketAddr,
    pub session_id: u64,
    /// Who the peer proved to be (acceptor side; `None` when the
    /// connection was not authenticated).
    pub auth: Option<Arc<kalmar_auth::AuthedPeer>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("session with {peer} is closed: {reason}")]
    Closed { peer: String, reason: String },
    #[error("message of {len} bytes exceeds the frame limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("send queue to {peer} is full")]
    Full { peer: String },
}

#[derive(Debug)]
struct Pending {
    seq: u64,
    msg: Message,
}

#[derive(Debug)]
pub(crate) struct SessionState {
    next_seq: u64,
    queue: VecDeque<Pending>,
    /// `queue[..sent]` went out on the current connection.
    sent: usize,
    queued_bytes: usize,
    /// Highest sequence delivered from the peer.
    pub(crate) in_seq: u64,
    /// Highest `in_seq` we have told the peer about.
    acked_in_seq: u64,
    /// Highest of our sequences the peer acknowledged.
    pub(crate) acked_seq: u64,
    closed: Option<String>,
    peer: Option<Arc<PeerInfo>>,
    detached_since: Option<Instant>,
    /// Bumped by every attach, so a superseded connection cannot detach
    /// the one that replaced it.
    conn_gen: u64,
    /// Largest payload we may send: the smaller of our own frame limit and
    /// the one the peer stated in the handshake (ours until then).
    max_message_bytes: usize,
}

/// What the writer should put on the wire next, besides the messages.
pub(crate) struct Outgoing {
    /// The ack the batch's frames carry.
    pub(crate) ack: u64,
    /// With no message to send: received messages not acknowledged yet
    /// (an ack frame may be due, see [`Session::take_ack`]).
    pub(crate) unacked: u64,
}

pub(crate) struct Session {
    pub(crate) id: u64,
    pub(crate) config: Arc<MsgrConfig>,
    state: Mutex<SessionState>,
    /// Wakes the writer (new message or ack owed). One writer per session.
    pub(crate) writer_wake: Notify,
    /// Wakes senders waiting for queue space.
    space: Notify,
    /// Wakes whoever waits for the session to end (a reconnect backoff).
    pub(crate) closed_wake: Notify,
    /// The task driving the current connection, aborted when replaced.
    conn_task: Mutex<Option<AbortHandle>>,
    /// The connection mode of the last connection (a `WireMode` id; 0
    /// before the first).
    wire_mode: std::sync::atomic::AtomicU8,
}

impl Session {
    pub(crate) fn new(id: u64, config: Arc<MsgrConfig>) -> Arc<Session> {
        Arc::new(Session {
            id,
            config: config.clone(),
            state: Mutex::new(SessionState {
                next_seq: 1,
                queue: VecDeque::new(),
                sent: 0,
                queued_bytes: 0,
                in_seq: 0,
                acked_in_seq: 0,
                acked_seq: 0,
                closed: None,
                peer: None,
                detached_since: Some(Instant::now()),
                conn_gen: 0,
                max_message_bytes: config.max_frame_bytes,
            }),
            writer_wake: Notify::new(),
            space: Notify::new(),
            closed_wake: Notify::new(),
            conn_task: Mutex::new(None),
            wire_mode: std::sync::atomic::AtomicU8::new(0),
        })
    }

    pub(crate) fn set_wire_mode(&self, mode: crate::onwire::WireMode) {
        self.wire_mode
            .store(mode.id(), std::sync::atomic::Ordering::Relaxed);
    }

    /// The mode the handshake of the last connection chose.
    pub(crate) fn wire_mode(&self) -> Option<crate::onwire::WireMode> {
        crate::onwire::WireMode::from_id(self.wire_mode.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub(crate) fn peer(&self) -> Option<Arc<PeerInfo>> {
        self.state.lock().peer.clone()
    }

    fn peer_name(&self) -> String {
        self.state
            .lock()
            .peer
            .as_ref()
            .map(|p| p.entity.to_string())
            .unwrap_or_else(|| "(not connected)".into())
    }

    pub(crate) fn closed_reason(&self) -> Option<String> {
        self.state.lock().closed.clone()
    }

    pub(crate) fn seqs(&self) -> (u64, u64) {
        let st = self.state.lock();
        (st.in_seq, st.acked_seq)
    }

    pub(crate) fn detached_since(&self) -> Option<Instant> {
        self.state.lock().detached_since
    }

    /// The largest message payload this session may carry: our frame
    /// limit, lowered to the peer's once the handshake told it.
    pub(crate) fn max_message_bytes(&self) -> usize {
        self.state.lock().max_message_bytes
    }

    /// Queues `msg` if there is room; `Err(msg)` back when full.
    fn try_enqueue(&self, msg: Message) -> Result<Result<u64, Message>, SendError> {
        let len = msg.len();
        let mut st = self.state.lock();
        if len > st.max_message_bytes {
            return Err(SendError::TooLarge {
                len,
                max: st.max_message_bytes,
            });
        }
        if let Some(reason) = &st.closed {
            return Err(SendError::Closed {
                peer: st
                    .peer
                    .as_ref()
                    .map(|p| p.entity.to_string())
                    .unwrap_or_default(),
                reason: reason.clone(),
            });
        }
        let fits_msgs = st.queue.len() < self.config.send_queue_max_messages;
        let fits_bytes =
            st.queue.is_empty() || st.queued_bytes + len <= self.config.send_queue_max_bytes;
        if !(fits_msgs && fits_bytes) {
            return Ok(Err(msg));
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.queued_bytes += len;
        st.queue.push_back(Pending { seq, msg });
        drop(st);
        self.writer_wake.notify_one();
        Ok(Ok(seq))
    }

    /// Queues `msg`, waiting while the queue is full. Returns its sequence.
    pub(crate) async fn send(&self, msg: Message) -> Result<u64, SendError> {
        // Room at once, the common case: no waiter to set up.
        let mut msg = match self.try_enqueue(msg)? {
            Ok(seq) => return Ok(seq),
            Err(back) => back,
        };
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_enqueue(msg)? {
                Ok(seq) => return Ok(seq),
                Err(back) => msg = back,
            }
            notified.await;
        }
    }

    pub(crate) fn try_send(&self, msg: Message) -> Result<u64, SendError> {
        match self.try_enqueue(msg)? {
            Ok(seq) => Ok(seq),
            Err(_) => Err(SendError::Full {
                peer: self.peer_name(),
            }),
        }
    }

    /// The peer has everything up to `ack`: free those messages.
    pub(crate) fn on_ack(&self, ack: u64) {
        let mut st = self.state.lock();
        if ack <= st.acked_seq {
            return;
        }
        st.acked_seq = ack.min(st.next_seq - 1);
        let mut freed = false;
        while st.queue.front().is_some_and(|p| p.seq <= ack) {
            if let Some(p) = st.queue.pop_front() {
                st.queued_bytes -= p.msg.len();
                st.sent = st.sent.saturating_sub(1);
                freed = true;
            }
        }
        drop(st);
        if freed {
            self.space.notify_waiters();
        }
    }

    /// Records an incoming message on connection `conn_gen`; false when it
    /// is a replayed duplicate. A gap is a protocol violation, and a
    /// superseded connection may not deliver (`Err`).
    pub(crate) fn on_incoming(&self, seq: u64, conn_gen: u64) -> Result<bool, String> {
        let mut st = self.state.lock();
        if st.conn_gen != conn_gen {
            return Err("superseded by a newer connection".into());
        }
        if seq <= st.in_seq {
            return Ok(false);
        }
        if seq != st.in_seq + 1 {
            return Err(format!(
                "sequence gap: expected {}, got {seq}",
                st.in_seq + 1
            ));
        }
        st.in_seq = seq;
        Ok(true)
    }

    /// Gives the next batch to write on connection `conn_gen` to `each`,
    /// in order, with its sequence numbers (under the session lock: `each`
    /// only clones, which shares the message's chunks); `None` once a newer
    /// connection has taken over.
    pub(crate) fn next_outgoing(
        &self,
        conn_gen: u64,
        mut each: impl FnMut(u64, &Message),
    ) -> Option<Outgoing> {
        let mut st = self.state.lock();
        if st.conn_gen != conn_gen {
            return None;
        }
        let end = st
            .queue
            .len()
            .min(st.sent + self.config.write_batch_max_frames);
        for p in st.queue.range(st.sent..end) {
            each(p.seq, &p.msg);
        }
        let none = st.sent == end;
        st.sent = end;
        let ack = st.in_seq;
        let unacked = if none {
            ack - st.acked_in_seq
        } else {
            // The frames carry it.
            st.acked_in_seq = ack;
            0
        };
        Some(Outgoing { ack, unacked })
    }

    /// The ack for an ack frame: everything received so far.
    pub(crate) fn take_ack(&self) -> u64 {
        let mut st = self.state.lock();
        st.acked_in_seq = st.in_seq;
        st.in_seq
    }

    /// Received messages not acknowledged yet.
    pub(crate) fn unacked_in(&self) -> u64 {
        let st = self.state.lock();
        st.in_seq - st.acked_in_seq
    }

    /// A new connection carries the session: drop what the peer already has
    /// and rewind so the rest is replayed. `reset` means the peer lost its
    /// state: it starts its own numbering again. `peer_max_frame_bytes` is
    /// the limit the peer stated (0: none). A queued message larger than
    /// the peer takes (queued before it stated its limit) can never be
    /// delivered: that is an `Err` with the reason, and the caller ends
    /// the session rather than replay it forever.
    pub(crate) fn attach(
        &self,
        peer: Arc<PeerInfo>,
        peer_in_seq: u64,
        reset: bool,
        peer_max_frame_bytes: u64,
    ) -> Result<u64, String> {
        self.on_ack(peer_in_seq);
        let mut st = self.state.lock();
        let limit = peer_frame_limit(self.config.max_frame_bytes, peer_max_frame_bytes);
        st.max_message_bytes = limit;
        if let Some(p) = st.queue.iter().find(|p| p.msg.len() > limit) {
            return Err(format!(
                "a queued message (type {}, {} bytes) exceeds the {limit}-byte frame limit of {}",
                p.msg.msg_type,
                p.msg.len(),
                peer.entity
            ));
        }
        if reset {
            st.in_seq = 0;
        }
        st.sent = 0;
        st.acked_in_seq = 0;
        st.peer = Some(peer);
        st.detached_since = None;
        st.conn_gen += 1;
        let conn_gen = st.conn_gen;
        drop(st);
        self.writer_wake.notify_one();
        Ok(conn_gen)
    }

    /// Makes `task` the one driving this session, stopping the previous one
    /// (a peer that reconnected before we noticed its old connection died).
    pub(crate) fn set_conn_task(&self, task: AbortHandle) {
        if let Some(old) = self.conn_task.lock().replace(task) {
            old.abort();
        }
    }

    /// The connection of generation `conn_gen` ended.
    pub(crate) fn detach(&self, conn_gen: u64) {
        let mut st = self.state.lock();
        if st.conn_gen == conn_gen && st.detached_since.is_none() {
            st.detached_since = Some(Instant::now());
        }
    }

    /// A fresh session on the accepting side expects `acked + 1` next.
    pub(crate) fn start_in_seq_at(&self, acked: u64) {
        let mut st = self.state.lock();
        st.in_seq = acked;
        st.acked_in_seq = acked;
    }

    /// Ends the session for good: senders get errors, queued messages are
    /// dropped, the writer sends a close frame and the connection ends.
    pub(crate) fn close(&self, reason: &str) {
        {
            let mut st = self.state.lock();
            if st.closed.is_none() {
                st.closed = Some(reason.to_string());
            }
            st.queue.clear();
            st.queued_bytes = 0;
            st.sent = 0;
        }
        self.space.notify_waiters();
        self.closed_wake.notify_waiters();
        self.writer_wake.notify_one();
    }

    /// Stops the task driving the connection right away.
    pub(crate) fn abort_conn_task(&self) {
        if let Some(t) = self.conn_task.lock().take() {
            t.abort();
        }
    }

    /// Messages and payload bytes queued (unsent or unacknowledged).
    pub(crate) fn queued(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.queue.len(), st.queued_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(max_msgs: usize, max_bytes: usize) -> Arc<Session> {
        let config = MsgrConfig {
            send_queue_max_messages: max_msgs,
            send_queue_max_bytes: max_bytes,
            write_batch_max_frames: 2,
            ..MsgrConfig::default()
        };
        Session::new(1, Arc::new(config))
    }

    /// The sequence numbers of the next batch.
    fn batch(s: &Session, conn_gen: u64) -> Option<Vec<u64>> {
        let mut v = Vec::new();
        s.next_outgoing(conn_gen, |seq, _| v.push(seq))?;
        Some(v)
    }

    #[test]
    fn bounded_queue_and_acks() {
        let s = session(3, 10);
        assert_eq!(s.try_send(Message::new(1, vec![0; 4])).expect("room"), 1);
        assert_eq!(s.try_send(Message::new(1, vec![0; 4])).expect("room"), 2);
        // 8 + 4 > 10 bytes.
        assert!(matches!(
            s.try_send(Message::new(1, vec![0; 4])),
            Err(SendError::Full { .. })
        ));
        assert_eq!(s.try_send(Message::new(1, vec![0; 2])).expect("room"), 3);
        assert!(matches!(
            s.try_send(Message::new(1, vec![])),
            Err(SendError::Full { .. })
        ));
        s.on_ack(2);
        assert_eq!(s.queued(), (1, 2));
        assert!(s.try_send(Message::new(1, vec![0; 8])).is_ok());
    }

    #[test]
    fn replay_after_reconnect_resends_unacked_only() {
        let s = session(10, 1000);
        for _ in 0..3 {
            s.try_send(Message::new(5, vec![1])).expect("room");
        }
        assert_eq!(batch(&s, 0), Some(vec![1, 2]));
        assert_eq!(batch(&s, 0), Some(vec![3]));
        assert_eq!(batch(&s, 0), Some(vec![]));
        let peer = Arc::new(PeerInfo {
            entity: "mon.a".parse().expect("valid"),
            addr: "127.0.0.1:1".parse().expect("valid"),
            session_id: 1,
            auth: None,
        });
        // The peer saw only message 1 before the connection broke.
        let conn_gen = s.attach(peer, 1, false, 0).expect("fits");
        assert_eq!(batch(&s, 0), None, "the old connection is superseded");
        assert!(s.on_incoming(1, 0).is_err());
        assert_eq!(batch(&s, conn_gen), Some(vec![2, 3]));
    }

    #[test]
    fn duplicates_dropped_gaps_refused() {
        let s = session(10, 1000);
        assert_eq!(s.on_incoming(1, 0), Ok(true));
        assert_eq!(s.on_incoming(1, 0), Ok(false));
        assert!(s.on_incoming(3, 0).is_err());
        assert_eq!(s.on_incoming(2, 0), Ok(true));
        let out = s.next_outgoing(0, |_, _| {}).expect("current");
        assert_eq!((out.ack, out.unacked), (2, 2), "nothing carried the ack");
        assert_eq!(s.unacked_in(), 2);
        assert_eq!(s.take_ack(), 2);
        assert_eq!(s.next_outgoing(0, |_, _| {}).expect("current").unacked, 0);
        // A message sent carries the ack.
        assert_eq!(s.on_incoming(3, 0), Ok(true));
        assert_eq!(s.unacked_in(), 1);
        s.try_send(Message::new(1, vec![1])).expect("room");
        let out = s.next_outgoing(0, |_, _| {}).expect("current");
        assert_eq!((out.ack, out.unacked), (3, 0));
        assert_eq!(s.unacked_in(), 0);
    }

    #[tokio::test]
    async fn send_waits_for_space_and_close_wakes() {
        let s = session(1, 1000);
        s.send(Message::new(1, vec![1])).await.expect("room");
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.send(Message::new(1, vec![2])).await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        s.on_ack(1);
        assert_eq!(waiter.await.expect("join").expect("sent"), 2);
        let s3 = s.clone();
        let waiter = tokio::spawn(async move { s3.send(Message::new(1, vec![3])).await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        s.close("test");
        assert!(matches!(
            waiter.await.expect("join"),
            Err(SendError::Closed { .. })
        ));
    }

    fn peer(name: &str) -> Arc<PeerInfo> {
        Arc::new(PeerInfo {
            entity: name.parse().expect("valid"),
            addr: "127.0.0.1:1".parse().expect("valid"),
            session_id: 1,
            auth: None,
        })
    }

    #[test]
    fn the_peers_frame_limit_bounds_sends() {
        let s = session(10, 1 << 20);
        let own = s.max_message_bytes();
        assert_eq!(own, MsgrConfig::default().max_frame_bytes);
        s.attach(peer("client.1"), 0, false, 100)
            .expect("empty queue");
        assert_eq!(s.max_message_bytes(), 100);
        assert_eq!(
            s.try_send(Message::new(1, vec![0; 101])),
            Err(SendError::TooLarge { len: 101, max: 100 })
        );
        assert!(s.try_send(Message::new(1, vec![0; 100])).is_ok());
    }

    #[test]
    fn a_queued_message_the_peer_cannot_take_fails_the_attach() {
        let s = session(10, 1 << 20);
        s.try_send(Message::new(7, vec![0; 500]))
            .expect("fits our limit");
        let err = s
            .attach(peer("osd.2"), 0, false, 200)
            .expect_err("peer takes 200 bytes");
        assert!(err.contains("500 bytes") && err.contains("osd.2"), "{err}");
    }
}
