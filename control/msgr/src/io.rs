//! Driving one TCP connection for a session: reading and checking frames,
//! delivering messages, writing batches of frames with vectored writes,
//! acknowledgements and keepalives.

use std::io::{self, IoSlice};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::frame::{Frame, FrameDecoder, FrameError, FrameHeader, FrameKind, HEADER_BYTES};
use crate::session::{Message, PeerInfo, Session};
use crate::{Event, Incoming, SessionHandle};

/// Bytes asked of the kernel per read when no large frame is pending.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why no frame could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The bytes are not a valid frame.
    Frame(FrameError),
    /// The stream failed or ended inside a frame.
    Stream(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Frame(e) => write!(f, "malformed frame: {e}"),
            ReadError::Stream(e) => f.write_str(e),
        }
    }
}

impl From<ReadError> for String {
    fn from(e: ReadError) -> String {
        e.to_string()
    }
}

/// Reads whole frames from a stream.
pub(crate) struct FramedRead {
    rd: OwnedReadHalf,
    buf: BytesMut,
    dec: FrameDecoder,
}

impl FramedRead {
    pub(crate) fn new(rd: OwnedReadHalf, max_frame_bytes: usize) -> Self {
        FramedRead {
            rd,
            buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            dec: FrameDecoder::new(max_frame_bytes),
        }
    }

    /// The next frame; `Ok(None)` at a clean end of stream.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            match self.dec.decode(&mut self.buf) {
                Ok(Some(f)) => return Ok(Some(f)),
                Ok(None) => {}
                Err(e) => return Err(ReadError::Frame(e)),
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK_BYTES / 4 {
                self.buf.reserve(READ_CHUNK_BYTES);
            }
            match self.rd.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => {
                    return Err(ReadError::Stream(format!(
                        "connection closed inside a frame ({} bytes buffered)",
                        self.buf.len()
                    )))
                }
                Ok(_) => {}
                Err(e) => return Err(ReadError::Stream(format!("read failed: {e}"))),
            }
        }
    }
}

/// Writes frames (header + payload each) with as few syscalls as possible
/// and without copying payloads.
pub(crate) async fn write_frames(
    w: &mut OwnedWriteHalf,
    frames: &[([u8; HEADER_BYTES], Bytes)],
) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(frames.len() * 2);
    for (h, p) in frames {
        slices.push(IoSlice::new(h));
        if !p.is_empty() {
            slices.push(IoSlice::new(p));
        }
    }
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = w.write_vectored(rest).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "socket accepted no bytes",
            ));
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// Writes one control frame (hello, reply, reject, close).
pub(crate) async fn write_control(
    w: &mut OwnedWriteHalf,
    kind: FrameKind,
    ack: u64,
    payload: &[u8],
) -> io::Result<()> {
    let h = FrameHeader::for_payload(kind, 0, 0, ack, payload).encode();
    write_frames(w, &[(h, Bytes::copy_from_slice(payload))]).await
}

/// How a connection ended.
#[derive(Debug)]
pub(crate) enum ConnEnd {
    /// The peer ended the session with a close frame (its reason, if it
    /// gave one).
    PeerClosed(String),
    /// We closed the session (close frame sent).
    LocalClosed,
    /// The connection broke; the session may resume on a new one.
    Failed(String),
    /// The peer broke a rule that a replay would break again (a frame over
    /// our limit): the session is closed for good, the reason sent to the
    /// peer in the close frame.
    Violation(String),
}

/// The reason a close frame carries (empty from older peers).
fn close_reason(payload: &[u8]) -> String {
    if payload.is_empty() {
        "peer closed the session".into()
    } else {
        format!(
            "peer closed the session: {}",
            String::from_utf8_lossy(payload)
        )
    }
}

/// Runs the connection until it fails or the session closes.
pub(crate) async fn run_connection(
    session: Arc<Session>,
    peer: Arc<PeerInfo>,
    conn_gen: u64,
    reader: FramedRead,
    mut writer: OwnedWriteHalf,
    events: mpsc::Sender<Event>,
) -> ConnEnd {
    let end = {
        let read = read_loop(&session, &peer, conn_gen, reader, &events);
        let write = write_loop(&session, conn_gen, &mut writer);
        tokio::pin!(read, write);
        let end = tokio::select! {
            e = &mut read => e,
            e = &mut write => e,
        };
        if let ConnEnd::Violation(reason) = &end {
            // The writer finishes its batch, then tells the peer why.
            tracing::error!(peer = %peer.entity, "ending the session: {reason}");
            session.close(reason);
            let _ = timeout(session.config.keepalive_interval, &mut write).await;
        }
        end
    };
    let _ = writer.shutdown().await;
    end
}

async fn read_loop(
    session: &Arc<Session>,
    peer: &Arc<PeerInfo>,
    conn_gen: u64,
    mut reader: FramedRead,
    events: &mpsc::Sender<Event>,
) -> ConnEnd {
    let limit = session.config.keepalive_timeout;
    loop {
        let frame = match timeout(limit, reader.next()).await {
            Err(_) => {
                return ConnEnd::Failed(format!("nothing received for {} ms", limit.as_millis()))
            }
            Ok(Err(ReadError::Frame(FrameError::TooLarge { len, max }))) => {
                return ConnEnd::Violation(format!(
                    "{} sent a frame of {len} bytes, over this side's limit of {max} bytes",
                    peer.entity
                ))
            }
            Ok(Err(e)) => return ConnEnd::Failed(e.to_string()),
            Ok(Ok(None)) => return ConnEnd::Failed("peer closed the connection".into()),
            Ok(Ok(Some(f))) => f,
        };
        session.on_ack(frame.header.ack);
        match frame.header.kind {
            FrameKind::Message => {
                // Room in the dispatch queue first: once the sequence is
                // counted the message must reach the application, even if
                // this task is aborted right after.
                let Ok(permit) = events.reserve().await else {
                    session.close("the dispatcher is gone");
                    return ConnEnd::LocalClosed;
                };
                match session.on_incoming(frame.header.seq, conn_gen) {
                    Ok(true) => {
                        permit.send(Event::Message(Incoming {
                            peer: peer.clone(),
                            msg: Message {
                                msg_type: frame.header.msg_type,
                                payload: frame.payload,
                            },
                            from: SessionHandle {
                                session: session.clone(),
                            },
                        }));
                        session.writer_wake.notify_one();
                    }
                    Ok(false) => {
                        tracing::debug!(peer = %peer.entity, seq = frame.header.seq, "dropping replayed duplicate")
                    }
                    Err(e) => return ConnEnd::Failed(e),
                }
            }
            FrameKind::Ack | FrameKind::Keepalive => {}
            FrameKind::Close => return ConnEnd::PeerClosed(close_reason(&frame.payload)),
            other => {
                return ConnEnd::Failed(format!("unexpected {other:?} frame inside a session"))
            }
        }
    }
}

async fn write_loop(session: &Arc<Session>, conn_gen: u64, w: &mut OwnedWriteHalf) -> ConnEnd {
    let interval = session.config.keepalive_interval;
    let mut frames: Vec<([u8; HEADER_BYTES], Bytes)> = Vec::new();
    loop {
        if let Some(reason) = session.closed_reason() {
            let (in_seq, _) = session.seqs();
            let close = write_control(w, FrameKind::Close, in_seq, reason.as_bytes());
            let _ = timeout(interval, close).await;
            return ConnEnd::LocalClosed;
        }
        let Some(out) = session.next_outgoing(conn_gen) else {
            return ConnEnd::Failed("superseded by a newer connection".into());
        };
        frames.clear();
        for (seq, msg) in out.messages {
            let h = FrameHeader::for_payload(
                FrameKind::Message,
                msg.msg_type,
                seq,
                out.ack,
                &msg.payload,
            );
            frames.push((h.encode(), msg.payload));
        }
        if out.ack_only {
            frames.push((
                FrameHeader::for_payload(FrameKind::Ack, 0, 0, out.ack, &[]).encode(),
                Bytes::new(),
            ));
        }
        if frames.is_empty() {
            if timeout(interval, session.writer_wake.notified())
                .await
                .is_err()
            {
                let (in_seq, _) = session.seqs();
                let h = FrameHeader::for_payload(FrameKind::Keepalive, 0, 0, in_seq, &[]).encode();
                frames.push((h, Bytes::new()));
            } else {
                continue;
            }
        }
        if let Err(e) = write_frames(w, &frames).await {
            return ConnEnd::Failed(format!("write failed: {e}"));
        }
    }
}
