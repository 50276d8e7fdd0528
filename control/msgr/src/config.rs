//! Every bound and timeout of the messenger, as named settings.

use std::time::Duration;

/// Largest frame payload accepted by default (64 MiB): big enough for a
/// several-MiB replicated write plus headers, small enough that a corrupt
/// length cannot make a daemon allocate gigabytes.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 << 20;

/// Settings of one messenger endpoint (listener or outbound connection).
#[derive(Debug, Clone)]
pub struct MsgrConfig {
    /// Frames whose payload is larger than this close the connection.
    pub max_frame_bytes: usize,
    /// Messages queued (unsent + sent but unacknowledged) per peer before
    /// `send` waits.
    pub send_queue_max_messages: usize,
    /// Payload bytes queued per peer before `send` waits (a single message
    /// larger than this is still accepted when the queue is empty).
    pub send_queue_max_bytes: usize,
    /// Frames written in one vectored write at most.
    pub write_batch_max_frames: usize,
    /// An idle connection sends a keepalive this often.
    pub keepalive_interval: Duration,
    /// A connection that received nothing for this long is dead.
    pub keepalive_timeout: Duration,
    /// Bound on one TCP connect attempt.
    pub connect_timeout: Duration,
    /// Bound on the hello exchange after connecting.
    pub handshake_timeout: Duration,
    /// First and largest pause between reconnect attempts.
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    /// Consecutive failed reconnect attempts before an outbound session is
    /// closed for good; `None` retries forever (daemons talking to the mon).
    pub reconnect_max_attempts: Option<u32>,
    /// A listener keeps the state of a disconnected peer (its unacked
    /// replies, the last sequence seen) this long, waiting for a reconnect.
    pub session_idle_timeout: Duration,
    /// Sessions a listener keeps at most; beyond that the oldest detached
    /// one is dropped, and with none detached the new peer is refused.
    pub max_sessions: usize,
    /// Inbound messages of one connection waiting for the dispatcher; the
    /// reader stops reading (TCP backpressure) while the channel is full.
    pub dispatch_queue_messages: usize,
}

impl Default for MsgrConfig {
    fn default() -> Self {
        MsgrConfig {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            send_queue_max_messages: 4096,
            send_queue_max_bytes: 256 << 20,
            write_batch_max_frames: 64,
            keepalive_interval: Duration::from_secs(2),
            keepalive_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
            reconnect_max_attempts: None,
            session_idle_timeout: Duration::from_secs(300),
            max_sessions: 4096,
            dispatch_queue_messages: 1024,
        }
    }
}
