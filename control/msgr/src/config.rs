//! Every bound and timeout of the messenger, as named settings.

use std::time::Duration;

use kalmar_common::config::{Conf, ConfError};

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
    /// How long an acknowledgement of received messages may wait for an
    /// outgoing message to carry it before it goes out in a frame of its
    /// own. Requests and replies carry each other's acks, so in steady
    /// traffic no ack frame is written at all.
    pub ack_delay: Duration,
    /// Received messages left unacknowledged at most: past this many an
    /// ack frame goes out at once (bounds the peer's replay queue).
    pub ack_max_pending: u64,
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
    /// Size of one receive chunk. A connection reads into a chunk and
    /// hands out each message as a slice of it; a chunk is reused once the
    /// last slice is dropped. A quarter of it is the smallest room a read
    /// is given.
    pub recv_chunk_bytes: usize,
    /// Receive chunks an endpoint (a listener and its connections, or one
    /// outbound connection) keeps for reuse, whether idle or still
    /// referenced by messages the application holds; past that the oldest
    /// is let go (freed when its last slice is dropped). Bounds the idle
    /// receive memory at `recv_pool_max_chunks * recv_chunk_bytes`.
    pub recv_pool_max_chunks: usize,
    /// Frames with at least this many payload bytes are received straight
    /// into a buffer of their own, 4 KiB-aligned, with the data of a
    /// head-prefixed payload on a block boundary, so a store can write it
    /// with O_DIRECT without a copy. Smaller ones are sliced out of the
    /// receive chunks.
    pub recv_aligned_min_bytes: usize,
    /// Who authenticates, and with what keys (default: nobody).
    pub auth: crate::auth::MsgrAuth,
    /// The network underneath (default: TCP).
    pub transport: crate::Transport,
}

impl Default for MsgrConfig {
    fn default() -> Self {
        MsgrConfig {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            send_queue_max_messages: 4096,
            send_queue_max_bytes: 256 << 20,
            write_batch_max_frames: 64,
            ack_delay: Duration::from_millis(2),
            ack_max_pending: 64,
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
            recv_chunk_bytes: 64 << 10,
            recv_pool_max_chunks: 32,
            recv_aligned_min_bytes: 64 << 10,
            auth: crate::auth::MsgrAuth::default(),
            transport: crate::Transport::Tcp,
        }
    }
}

impl MsgrConfig {
    /// The settings for `entity` from the conf file (`ms_*` keys in
    /// `[global]`, the daemon type's section or its own), defaults for the
    /// rest. Durations are in seconds.
    pub fn from_conf(conf: &Conf, entity: &str) -> Result<MsgrConfig, ConfError> {
        let d = MsgrConfig::default();
        let count = |key: &str, default: usize| -> Result<usize, ConfError> {
            Ok(conf
                .get_number(entity, key)?
                .map(|v| v.max(1.0) as usize)
                .unwrap_or(default))
        };
        let secs = |key: &str, default: Duration| -> Result<Duration, ConfError> {
            Ok(conf
                .get_secs(entity, key)?
                .unwrap_or(default)
                .max(Duration::from_millis(1)))
        };
        Ok(MsgrConfig {
            max_frame_bytes: count("ms_max_frame_bytes", d.max_frame_bytes)?,
            send_queue_max_messages: count(
                "ms_send_queue_max_messages",
                d.send_queue_max_messages,
            )?,
            send_queue_max_bytes: count("ms_send_queue_max_bytes", d.send_queue_max_bytes)?,
            write_batch_max_frames: count("ms_write_batch_max_frames", d.write_batch_max_frames)?,
            ack_delay: secs("ms_ack_delay", d.ack_delay)?,
            ack_max_pending: count("ms_ack_max_pending", d.ack_max_pending as usize)? as u64,
            keepalive_interval: secs("ms_keepalive_interval", d.keepalive_interval)?,
            keepalive_timeout: secs("ms_keepalive_timeout", d.keepalive_timeout)?,
            connect_timeout: secs("ms_connect_timeout", d.connect_timeout)?,
            handshake_timeout: secs("ms_handshake_timeout", d.handshake_timeout)?,
            reconnect_backoff_min: secs("ms_reconnect_backoff_min", d.reconnect_backoff_min)?,
            reconnect_backoff_max: secs("ms_reconnect_backoff_max", d.reconnect_backoff_max)?,
            reconnect_max_attempts: match conf.get_number(entity, "ms_reconnect_max_attempts")? {
                None => d.reconnect_max_attempts,
                Some(v) if v <= 0.0 => None,
                Some(v) => Some(v as u32),
            },
            session_idle_timeout: secs("ms_session_idle_timeout", d.session_idle_timeout)?,
            max_sessions: count("ms_max_sessions", d.max_sessions)?,
            dispatch_queue_messages: count(
                "ms_dispatch_queue_messages",
                d.dispatch_queue_messages,
            )?,
            recv_chunk_bytes: count("ms_recv_chunk_bytes", d.recv_chunk_bytes)?,
            recv_pool_max_chunks: count("ms_recv_pool_max_chunks", d.recv_pool_max_chunks)?,
            recv_aligned_min_bytes: count("ms_recv_aligned_min_bytes", d.recv_aligned_min_bytes)?,
            auth: d.auth,
            transport: d.transport,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_keys() {
        let conf = Conf::parse(
            "[global]\nms_keepalive_timeout = 3\n[osd]\nms_max_frame_bytes = 1024\nms_reconnect_max_attempts = 0\nms_recv_pool_max_chunks = 4\n",
        )
        .expect("toml");
        let c = MsgrConfig::from_conf(&conf, "osd.1").expect("valid");
        assert_eq!(c.keepalive_timeout, Duration::from_secs(3));
        assert_eq!(c.max_frame_bytes, 1024);
        assert_eq!(c.reconnect_max_attempts, None);
        assert_eq!(c.recv_pool_max_chunks, 4);
        assert_eq!(
            c.send_queue_max_messages,
            MsgrConfig::default().send_queue_max_messages
        );
        let bad = Conf::parse("[global]\nms_keepalive_timeout = \"soon\"\n").expect("toml");
        assert!(MsgrConfig::from_conf(&bad, "mon.a").is_err());
    }
}
