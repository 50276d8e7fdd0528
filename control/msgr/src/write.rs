//! Writing batches of frames: every frame header and every payload chunk
//! is one slice of a vectored write, so no payload is copied, and the
//! slice array lives on the stack, so no write allocates.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use tokio::io::AsyncWrite;

use crate::frame::{FrameError, FrameHeader, FrameKind, HEADER_BYTES};
use crate::message::Message;
use crate::onwire::{Protect, WireMode, TAG_BYTES};

/// Slices given to one `writev` at most: a stack array of this many, well
/// under Linux's `IOV_MAX` (1024). A batch with more is written in several
/// calls.
const WRITEV_MAX_SLICES: usize = 256;

/// One frame ready to go: its encoded header and its payload chunks, and
/// in the protected modes its tag (signed) or where the whole sealed frame
/// (header, payload and their tags) lies in the writer's buffer (secure).
pub(crate) struct OutFrame {
    pub(crate) header: [u8; HEADER_BYTES],
    pub(crate) payload: Message,
    /// Sequence number of a message frame.
    seq: u64,
    /// Signed mode: the tag after the payload.
    tag: Option<[u8; TAG_BYTES]>,
    /// Secure mode: the sealed header, the ciphertext and its tag,
    /// `arena[start..end]`, sent instead of the header and the chunks.
    sealed: Option<(usize, usize)>,
}

impl OutFrame {
    /// A message frame (header crc computed over the chunks).
    #[cfg(test)]
    pub(crate) fn message(seq: u64, ack: u64, msg: Message) -> OutFrame {
        let mut f = OutFrame::unsealed(seq, msg);
        f.seal(ack, &mut Protect::crc(), &mut Vec::new())
            .expect("crc cannot fail");
        f
    }

    /// A message frame whose header is built later by [`OutFrame::seal`]
    /// (taken from the queue under its lock, sealed outside it).
    pub(crate) fn unsealed(seq: u64, msg: Message) -> OutFrame {
        OutFrame {
            header: [0; HEADER_BYTES],
            payload: msg,
            seq,
            tag: None,
            sealed: None,
        }
    }

    /// Builds the header of a message frame (computing its crc in crc
    /// mode) and protects the frame as `tx` says, encrypting into `arena`
    /// in secure mode.
    pub(crate) fn seal(
        &mut self,
        ack: u64,
        tx: &mut Protect,
        arena: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        if tx.is_crc() {
            self.header = FrameHeader::for_message(self.seq, ack, &self.payload).encode();
            return Ok(());
        }
        self.header = FrameHeader::for_message_uncrc(self.seq, ack, &self.payload).encode();
        self.protect(tx, arena)
    }

    fn protect(&mut self, tx: &mut Protect, arena: &mut Vec<u8>) -> Result<(), FrameError> {
        match tx.mode() {
            WireMode::Crc => {}
            WireMode::Signed => self.tag = Some(tx.sign(&self.header, self.payload.chunks())?),
            WireMode::Secure => {
                let start = arena.len();
                tx.seal_into(&self.header, self.payload.chunks(), arena)?;
                self.sealed = Some((start, arena.len()));
            }
        }
        Ok(())
    }

    /// A frame with an empty payload (ack, keepalive), protected by `tx`.
    pub(crate) fn empty(
        kind: FrameKind,
        ack: u64,
        tx: &mut Protect,
        arena: &mut Vec<u8>,
    ) -> Result<OutFrame, FrameError> {
        OutFrame::control(kind, ack, Bytes::new(), tx, arena)
    }

    /// A control frame (close, ack, keepalive; the handshake's in crc
    /// mode) carrying `payload`, protected by `tx`.
    pub(crate) fn control(
        kind: FrameKind,
        ack: u64,
        payload: Bytes,
        tx: &mut Protect,
        arena: &mut Vec<u8>,
    ) -> Result<OutFrame, FrameError> {
        let mut h = FrameHeader::for_payload(kind, 0, 0, ack, &[]);
        h.payload_len = payload.len() as u32;
        if tx.is_crc() {
            h.payload_crc = crc32c::crc32c(&payload);
        }
        let payload = if payload.is_empty() {
            Message::default()
        } else {
            Message::new(0, payload)
        };
        let mut f = OutFrame {
            header: h.encode(),
            payload,
            seq: 0,
            tag: None,
            sealed: None,
        };
        f.protect(tx, arena)?;
        Ok(f)
    }

    /// Slice `part` of the frame: 0 is the header, then the chunks and the
    /// tag; in secure mode the whole sealed frame in `arena` is part 0.
    fn part<'a>(&'a self, part: usize, arena: &'a [u8]) -> Option<&'a [u8]> {
        if part == 0 {
            return Some(match self.sealed {
                Some((start, end)) => &arena[start..end],
                None => &self.header,
            });
        }
        if self.sealed.is_some() {
            return None;
        }
        let chunks = self.payload.chunks();
        match chunks.get(part - 1) {
            Some(c) => Some(&c[..]),
            None if part == chunks.len() + 1 => self.tag.as_ref().map(|t| &t[..]),
            None => None,
        }
    }
}

/// Where a partly written batch stands: the first unwritten byte is
/// `offset` into part `part` of frame `frame`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cursor {
    frame: usize,
    part: usize,
    offset: usize,
}

impl Cursor {
    /// Moves past `n` written bytes.
    fn advance(&mut self, frames: &[OutFrame], arena: &[u8], mut n: usize) {
        while let Some(f) = frames.get(self.frame) {
            let Some(p) = f.part(self.part, arena) else {
                self.frame += 1;
                self.part = 0;
                continue;
            };
            let left = p.len() - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.part += 1;
            self.offset = 0;
            if n == 0 {
                return;
            }
        }
    }
}

/// Fills `iov` with the unwritten slices from `at` on; returns how many.
fn gather<'a>(
    frames: &'a [OutFrame],
    arena: &'a [u8],
    at: Cursor,
    iov: &mut [IoSlice<'a>],
) -> usize {
    let (mut f, mut p, mut off) = (at.frame, at.part, at.offset);
    let mut n = 0;
    while n < iov.len() {
        let Some(frame) = frames.get(f) else { break };
        match frame.part(p, arena) {
            Some(s) => {
                if off < s.len() {
                    iov[n] = IoSlice::new(&s[off..]);
                    n += 1;
                }
                p += 1;
                off = 0;
            }
            None => {
                f += 1;
                p = 0;
            }
        }
    }
    n
}

/// Writes `frames` in order with as few syscalls as the socket allows
/// (`arena`: the writer's buffer the secure mode encrypted into).
pub(crate) async fn write_frames<W: AsyncWrite + Unpin>(
    w: &mut W,
    frames: &[OutFrame],
    arena: &[u8],
) -> io::Result<()> {
    let mut at = Cursor::default();
    loop {
        // The slice array lives on the stack of each poll, not in the
        // future (which would be moved around at 4 KiB).
        let mut done = false;
        let written = poll_fn(|cx| {
            let mut iov = [IoSlice::new(&[]); WRITEV_MAX_SLICES];
            let n = gather(frames, arena, at, &mut iov);
            if n == 0 {
                done = true;
                return Poll::Ready(Ok(0));
            }
            Pin::new(&mut *w).poll_write_vectored(cx, &iov[..n])
        })
        .await?;
        if done {
            return Ok(());
        }
        if written == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "socket accepted no bytes",
            ));
        }
        at.advance(frames, arena, written);
    }
}

/// Writes one control frame (hello, reply, reject, and a close before a
/// mode was chosen) in crc mode.
pub(crate) async fn write_control<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: FrameKind,
    ack: u64,
    payload: Bytes,
) -> io::Result<()> {
    write_protected(w, kind, ack, payload, &mut Protect::crc()).await
}

/// Writes one control frame protected by `tx` (a close frame on a
/// connection whose mode is chosen).
pub(crate) async fn write_protected<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: FrameKind,
    ack: u64,
    payload: Bytes,
    tx: &mut Protect,
) -> io::Result<()> {
    let mut arena = Vec::new();
    let frame = OutFrame::control(kind, ack, payload, tx, &mut arena)
        .map_err(|e| io::Error::other(e.to_string()))?;
    write_frames(w, std::slice::from_ref(&frame), &arena).await
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::BytesMut;

    use super::*;
    use crate::frame::FrameDecoder;

    /// A writer that takes at most `max` bytes and `max_slices` slices per
    /// call, to exercise partial vectored writes.
    struct Trickle {
        out: Vec<u8>,
        max: usize,
        max_slices: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.max);
            self.out.extend_from_slice(&buf[..n]);
            self.calls += 1;
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            let mut budget = self.max;
            let mut n = 0;
            for b in bufs.iter().take(self.max_slices) {
                let k = b.len().min(budget);
                self.out.extend_from_slice(&b[..k]);
                budget -= k;
                n += k;
                if budget == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn wire(frames: &[OutFrame], max: usize, max_slices: usize) -> (Vec<u8>, usize) {
        let mut w = Trickle {
            out: Vec::new(),
            max,
            max_slices,
            calls: 0,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(write_frames(&mut w, frames, &[]))
            .expect("written");
        (w.out, w.calls)
    }

    fn data(n: usize, seed: u8) -> Bytes {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    /// The same messages as one chunk each and as several chunks.
    fn batches() -> (Vec<OutFrame>, Vec<OutFrame>) {
        let mut one = Vec::new();
        let mut many = Vec::new();
        for i in 0..40u64 {
            let (a, b, c) = (data(7, 1), data(300 + i as usize, 2), data(4096, i as u8));
            let whole: Bytes = [&a[..], &b[..], &c[..]].concat().into();
            one.push(OutFrame::message(i + 1, 9, Message::new(3, whole)));
            many.push(OutFrame::message(
                i + 1,
                9,
                Message::from_chunks(3, [a, b, c]),
            ));
        }
        let crc = || OutFrame::empty(FrameKind::Ack, 9, &mut Protect::crc(), &mut Vec::new());
        one.push(crc().expect("crc"));
        many.push(crc().expect("crc"));
        (one, many)
    }

    #[test]
    fn chunked_messages_put_the_same_bytes_on_the_wire() {
        let (one, many) = batches();
        let (reference, _) = wire(&one, usize::MAX, usize::MAX);
        // Whole writes, and writes cut at every kind of place.
        for (max, slices) in [
            (usize::MAX, usize::MAX),
            (1, 1),
            (5, 3),
            (4099, 2),
            (65536, 7),
        ] {
            let (got, calls) = wire(&many, max, slices);
            assert!(
                got == reference,
                "chunked bytes differ (max {max}, {slices} slices)"
            );
            if max == usize::MAX && slices == usize::MAX {
                // 41 headers + 120 chunks: one writev per 256 slices.
                assert_eq!(calls, 1);
            }
        }
        // And they decode to the same messages.
        let mut buf = BytesMut::from(&reference[..]);
        let mut dec = FrameDecoder::new(1 << 20);
        for f in &many[..40] {
            let got = dec.decode(&mut buf).expect("valid").expect("complete");
            assert_eq!(got.payload, f.payload.contiguous().as_ref());
        }
    }

    #[test]
    fn more_slices_than_one_writev_takes() {
        // 300 frames of header + 2 chunks = 900 slices: several writevs.
        let frames: Vec<OutFrame> = (0..300u64)
            .map(|i| OutFrame::message(i, 0, Message::from_chunks(1, [data(3, 0), data(5, 1)])))
            .collect();
        let (got, calls) = wire(&frames, usize::MAX, usize::MAX);
        assert_eq!(got.len(), 300 * (HEADER_BYTES + 8));
        assert_eq!(calls, 900usize.div_ceil(WRITEV_MAX_SLICES));
    }

    #[test]
    fn secure_frames_go_out_whole_and_sealed() {
        let k = [8u8; 32];
        let (mut tx, mut rx) = (
            Protect::new(WireMode::Secure, &k),
            Protect::new(WireMode::Secure, &k),
        );
        let (_, many) = batches();
        let mut arena = Vec::new();
        let mut frames: Vec<OutFrame> = many[..40]
            .iter()
            .map(|f| OutFrame::unsealed(f.seq, f.payload.clone()))
            .collect();
        for f in &mut frames {
            f.seal(9, &mut tx, &mut arena).expect("seal");
        }
        frames.push(OutFrame::empty(FrameKind::Ack, 9, &mut tx, &mut arena).expect("ack"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        for (max, slices) in [(usize::MAX, usize::MAX), (7, 2), (4099, 3)] {
            let mut w = Trickle {
                out: Vec::new(),
                max,
                max_slices: slices,
                calls: 0,
            };
            rt.block_on(write_frames(&mut w, &frames, &arena))
                .expect("written");
            assert_eq!(w.out, arena, "one slice per frame, in order");
        }
        // No header in clear: not even the magic.
        assert!(!arena.windows(4).any(|w| w == b"KLMR"));
        let mut buf = BytesMut::from(&arena[..]);
        let mut dec = FrameDecoder::new(1 << 20);
        for f in &many[..40] {
            let got = dec
                .decode_protected(&mut buf, &mut rx)
                .expect("valid")
                .expect("complete");
            assert_eq!(got.header.seq, f.seq);
            assert_eq!(got.header.ack, 9);
            assert_eq!(got.payload, f.payload.contiguous().as_ref());
        }
        let ack = dec.decode_protected(&mut buf, &mut rx).expect("valid");
        assert_eq!(ack.expect("complete").header.kind, FrameKind::Ack);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_flipped_bit_in_any_chunk_fails_the_crc() {
        let (_, many) = batches();
        let (mut bytes, _) = wire(&many[..1], usize::MAX, usize::MAX);
        // One bit in the last chunk's data.
        let at = bytes.len() - 10;
        bytes[at] ^= 0x04;
        let err = FrameDecoder::new(1 << 20)
            .decode(&mut BytesMut::from(&bytes[..]))
            .expect_err("corrupt");
        assert!(
            matches!(err, crate::frame::FrameError::PayloadCrc { .. }),
            "{err:?}"
        );
    }
}
