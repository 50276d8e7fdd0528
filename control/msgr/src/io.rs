//! Driving one TCP connection for a session: reading and checking frames,
//! handing messages to the sink, writing batches of frames with vectored
//! writes, acknowledgements and keepalives.
//!
//! Nothing here allocates per message once a connection is warm: the
//! batch buffers are reused, frame headers are built on the stack,
//! messages are sliced out of pooled receive chunks, and the sink gets
//! each event without a queue of our own in between.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::time::{timeout, Instant, Sleep};

use crate::frame::{FrameError, FrameKind};
use crate::onwire::Protect;
use crate::read::{FramedRead, ReadError};
use crate::session::{Message, PeerInfo, Session};
use crate::sink::{EventSink, Upcoming};
use crate::transport::{ReadHalf, WriteHalf};
use crate::write::{write_frames, write_protected, OutFrame};
use crate::{Event, Incoming, SessionHandle};

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
pub(crate) async fn run_connection<S: EventSink>(
    session: Arc<Session>,
    peer: Arc<PeerInfo>,
    conn_gen: u64,
    reader: FramedRead<ReadHalf>,
    mut writer: WriteHalf,
    tx: Protect,
    sink: &S,
) -> ConnEnd {
    let end = {
        let read = read_loop(&session, &peer, conn_gen, reader, sink);
        let write = write_loop(&session, conn_gen, &mut writer, tx);
        tokio::pin!(read, write);
        // Biased (no random branch order): a simulated run must replay
        // exactly from its seed.
        let end = tokio::select! {
            biased;
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

async fn read_loop<S: EventSink>(
    session: &Arc<Session>,
    peer: &Arc<PeerInfo>,
    conn_gen: u64,
    mut reader: FramedRead<ReadHalf>,
    sink: &S,
) -> ConnEnd {
    let limit = session.config.keepalive_timeout;
    // One timer for the connection's life, not one per frame: it is armed
    // at the last frame's time plus the limit and only re-armed when it
    // fires early (a frame came since), so a busy connection touches the
    // timer wheel once per `limit`, not per frame.
    let mut last_frame = Instant::now();
    let silence = tokio::time::sleep_until(last_frame + limit);
    tokio::pin!(silence);
    loop {
        let next = tokio::select! {
            biased;
            r = reader.next() => Ok(r),
            () = &mut silence => Err(()),
        };
        if next.is_err() {
            let due = last_frame + limit;
            if Instant::now() < due {
                silence.as_mut().reset(due);
                continue;
            }
        }
        let frame = match next {
            Err(()) => {
                return ConnEnd::Failed(format!("nothing received for {} ms", limit.as_millis()))
            }
            Ok(Err(ReadError::Frame(FrameError::TooLarge { len, max }))) => {
                return ConnEnd::Violation(format!(
                    "{} sent a frame of {len} bytes, over this side's limit of {max} bytes",
                    peer.entity
                ))
            }
            Ok(Err(ReadError::Frame(
                e @ (FrameError::Tag | FrameError::HeaderTag | FrameError::CounterExhausted),
            ))) => {
                tracing::warn!(peer = %peer.entity, addr = %peer.addr, "closing the connection: {e}");
                return ConnEnd::Failed(format!("{e} from {}", peer.entity));
            }
            Ok(Err(e)) => return ConnEnd::Failed(e.to_string()),
            Ok(Ok(None)) => return ConnEnd::Failed("peer closed the connection".into()),
            Ok(Ok(Some(f))) => f,
        };
        last_frame = Instant::now();
        session.on_ack(frame.header.ack);
        match frame.header.kind {
            FrameKind::Message => {
                // Room in the sink first: once the sequence is counted the
                // message must reach the application, even if this task is
                // aborted right after.
                let next = Upcoming::Message {
                    peer,
                    msg_type: frame.header.msg_type,
                    payload_bytes: frame.payload.len(),
                };
                let Some(permit) = sink.reserve(&next).await else {
                    session.close("the dispatcher is gone");
                    return ConnEnd::LocalClosed;
                };
                match session.on_incoming(frame.header.seq, conn_gen) {
                    Ok(true) => {
                        let head_prefixed = frame.header.head_prefixed();
                        sink.deliver(
                            permit,
                            Event::Message(Incoming {
                                peer: peer.clone(),
                                msg: Message::received(
                                    frame.header.msg_type,
                                    frame.payload,
                                    head_prefixed,
                                ),
                                from: SessionHandle {
                                    session: session.clone(),
                                },
                            }),
                        );
                        // The writer arms its ack timer at the first
                        // unacked message, and acks at once at the bound;
                        // otherwise a reply carries the ack.
                        let unacked = session.unacked_in();
                        if unacked == 1 || unacked >= session.config.ack_max_pending {
                            session.writer_wake.notify_one();
                        }
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

async fn write_loop(
    session: &Arc<Session>,
    conn_gen: u64,
    w: &mut WriteHalf,
    mut tx: Protect,
) -> ConnEnd {
    let interval = session.config.keepalive_interval;
    // Reused for every batch: no allocation once it has grown.
    let mut frames: Vec<OutFrame> = Vec::new();
    // What the secure mode encrypts a batch into, reused the same way.
    let mut arena: Vec<u8> = Vec::new();
    // When the pending ack must go out in a frame of its own.
    let mut ack_due: Option<Instant> = None;
    // When the last batch went out: a keepalive follows `interval` after.
    let mut last_sent = Instant::now();
    // One timer for both waits, kept for the connection's life (see
    // `wait_for_work`).
    let timer = tokio::time::sleep_until(last_sent + interval);
    tokio::pin!(timer);
    loop {
        if let Some(reason) = session.closed_reason() {
            let (in_seq, _) = session.seqs();
            let close = write_protected(w, FrameKind::Close, in_seq, Bytes::from(reason), &mut tx);
            let _ = timeout(interval, close).await;
            return ConnEnd::LocalClosed;
        }
        frames.clear();
        arena.clear();
        let next = session.next_outgoing(conn_gen, |seq, msg| {
            frames.push(OutFrame::unsealed(seq, msg.clone()))
        });
        let Some(out) = next else {
            return ConnEnd::Failed("superseded by a newer connection".into());
        };
        // Headers (and the crc, tag or encryption of each payload)
        // outside the session lock.
        for f in &mut frames {
            if let Err(e) = f.seal(out.ack, &mut tx, &mut arena) {
                return ConnEnd::Failed(format!("protecting a frame: {e}"));
            }
        }
        if frames.is_empty() && out.unacked > 0 {
            let now = tokio::time::Instant::now();
            let due = *ack_due.get_or_insert(now + session.config.ack_delay);
            if now < due && out.unacked < session.config.ack_max_pending {
                // Wait for a message to carry the ack, or the deadline.
                wait_for_work(timer.as_mut(), due, session).await;
                continue;
            }
            match OutFrame::empty(FrameKind::Ack, session.take_ack(), &mut tx, &mut arena) {
                Ok(f) => frames.push(f),
                Err(e) => return ConnEnd::Failed(format!("protecting a frame: {e}")),
            }
        }
        if !frames.is_empty() {
            ack_due = None;
        }
        if frames.is_empty() {
            let due = last_sent + interval;
            if Instant::now() < due {
                wait_for_work(timer.as_mut(), due, session).await;
                continue;
            }
            let (in_seq, _) = session.seqs();
            match OutFrame::empty(FrameKind::Keepalive, in_seq, &mut tx, &mut arena) {
                Ok(f) => frames.push(f),
                Err(e) => return ConnEnd::Failed(format!("protecting a frame: {e}")),
            }
        }
        let written = write_frames(w, &frames, &arena).await;
        last_sent = Instant::now();
        // Let go of the payloads now, not when the next batch comes.
        frames.clear();
        if let Err(e) = written {
            return ConnEnd::Failed(format!("write failed: {e}"));
        }
    }
}

/// Waits until the writer is woken or `due` passes, on the connection's one
/// timer. The timer is moved only when it would fire late (or has fired);
/// one that fires early merely sends the caller round its loop to check
/// again. A busy connection whose keepalive deadline moves with every
/// batch so re-arms the timer about once per keepalive interval instead
/// of registering a new one in the timer wheel at every idle moment.
async fn wait_for_work(mut timer: Pin<&mut Sleep>, due: Instant, session: &Session) {
    if timer.deadline() > due || timer.is_elapsed() {
        timer.as_mut().reset(due);
    }
    tokio::select! {
        biased;
        () = session.writer_wake.notified() => {}
        () = timer => {}
    }
}
