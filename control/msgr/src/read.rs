//! Reading whole frames off a stream.
//!
//! Small frames are read many at a time into a receive chunk from the
//! endpoint's [`RecvPool`] and handed out as slices of it (no copy, no
//! allocation once the pool is warm). A frame of `recv_aligned_min_bytes`
//! or more is read straight into an [`AlignedBuf`] of its own, placed so
//! that the data after a head-prefixed payload's header starts on a
//! [`BUF_ALIGN`] boundary: the store can then write it with O_DIRECT as it
//! is. The bytes of such a frame that arrived with earlier frames (at most
//! one read's worth) are copied over; the rest goes from the kernel into
//! the aligned buffer.

use bytes::{Buf, BytesMut};
use kalmar_io::{aligned_bytes, AlignedBuf, BUF_ALIGN};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::config::MsgrConfig;
use crate::frame::{check_payload, Frame, FrameDecoder, FrameError, FrameHeader};
use crate::onwire::{Protect, WireMode};
use crate::pool::RecvPool;

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

/// A large frame being received into its own aligned buffer.
struct Aligned {
    header: FrameHeader,
    buf: AlignedBuf,
    /// Where the payload starts in `buf`.
    start: usize,
    /// Payload bytes received so far.
    got: usize,
}

/// The buffers and decoding state of one connection's read side, apart
/// from the socket so a connection can move to another runtime.
pub(crate) struct FrameReader {
    /// The current receive chunk; its content is the unparsed bytes.
    buf: BytesMut,
    /// `buf` came from the pool (and goes back to it).
    pooled: bool,
    dec: FrameDecoder,
    pool: RecvPool,
    aligned_min_bytes: usize,
    aligned: Option<Aligned>,
    /// Checks (and decrypts) the frames after the handshake.
    rx: Protect,
}

impl FrameReader {
    pub(crate) fn new(config: &MsgrConfig, pool: RecvPool) -> FrameReader {
        FrameReader {
            buf: BytesMut::new(),
            pooled: false,
            dec: FrameDecoder::new(config.max_frame_bytes),
            pool,
            aligned_min_bytes: config.recv_aligned_min_bytes,
            aligned: None,
            rx: Protect::crc(),
        }
    }

    /// From the next frame on, frames are protected by `rx` (set once
    /// the handshake chose a mode).
    pub(crate) fn set_rx(&mut self, rx: Protect) {
        self.rx = rx;
    }

    /// The next frame from `rd`; `Ok(None)` at a clean end of stream.
    pub(crate) async fn next<R: AsyncRead + Unpin>(
        &mut self,
        rd: &mut R,
    ) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(a) = &mut self.aligned {
                let len = a.header.payload_len as usize + self.rx.trailer_len();
                if a.got == len {
                    return self.finish_aligned().map(Some);
                }
                let n = rd
                    .read(&mut a.buf[a.start + a.got..a.start + len])
                    .await
                    .map_err(|e| ReadError::Stream(format!("read failed: {e}")))?;
                if n == 0 {
                    return Err(ReadError::Stream(format!(
                        "connection closed inside a frame ({} of {len} payload bytes received)",
                        a.got
                    )));
                }
                a.got += n;
                continue;
            }
            // How many bytes the buffer must hold to make progress.
            let header = self.dec.header(&mut self.buf, &self.rx);
            let want = match header.map_err(ReadError::Frame)? {
                None => self.rx.header_len(),
                Some(h) if (h.payload_len as usize) >= self.aligned_min_bytes => {
                    // The head length of a head-prefixed payload places it.
                    if h.head_prefixed() && self.buf.len() < 4 && h.payload_len >= 4 {
                        4
                    } else {
                        self.start_aligned(h);
                        continue;
                    }
                }
                Some(h) => {
                    if let Some(f) = self
                        .dec
                        .decode_protected(&mut self.buf, &mut self.rx)
                        .map_err(ReadError::Frame)?
                    {
                        return Ok(Some(f));
                    }
                    h.payload_len as usize + self.rx.trailer_len()
                }
            };
            self.make_room(want);
            let n = rd
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| ReadError::Stream(format!("read failed: {e}")))?;
            if n == 0 {
                if self.buf.is_empty() && self.dec.take_header().is_none() {
                    return Ok(None);
                }
                return Err(ReadError::Stream(format!(
                    "connection closed inside a frame ({} bytes buffered)",
                    self.buf.len()
                )));
            }
        }
    }

    /// Makes room in the buffer for at least `want` bytes in all, and for
    /// a read of a useful size: in place if every message sliced out of
    /// the chunk is gone, else in another chunk (the partial frame, less
    /// than `want` bytes, is copied over).
    fn make_room(&mut self, want: usize) {
        let chunk_bytes = self.pool.chunk_bytes();
        // Smallest room worth a read when moving is cheap.
        let min_read = chunk_bytes / 4;
        let len = self.buf.len();
        let spare = self.buf.capacity() - len;
        let missing = want.saturating_sub(len);
        // Stay when the frame can complete here and either the read is of
        // a useful size or moving would copy much of a frame.
        if spare >= missing && (spare >= min_read || len >= min_read) {
            return;
        }
        let fits_chunk = want <= chunk_bytes;
        if fits_chunk && self.pooled && self.buf.try_reclaim(chunk_bytes - len) {
            return;
        }
        let mut next = if fits_chunk {
            self.pool.take()
        } else {
            // Only when the aligned threshold is above the chunk size.
            BytesMut::with_capacity(want)
        };
        next.extend_from_slice(&self.buf);
        let old = std::mem::replace(&mut self.buf, next);
        if self.pooled {
            self.pool.park(old);
        }
        self.pooled = fits_chunk;
    }

    /// Starts receiving the payload of `h` into an aligned buffer.
    fn start_aligned(&mut self, h: FrameHeader) {
        let len = h.payload_len as usize;
        // Encrypted, the head length cannot be read yet: the payload is
        // received at 0 with room for the largest pad, and moved into
        // place once decrypted (see `finish_aligned`).
        let encrypted = self.rx.mode() == WireMode::Secure;
        let start = if h.head_prefixed() && !encrypted {
            data_alignment_pad(&self.buf, len)
        } else {
            0
        };
        let room = if h.head_prefixed() && encrypted {
            BUF_ALIGN
        } else {
            0
        };
        // The tag of a protected frame lands after the payload.
        let wire = len + self.rx.trailer_len();
        let mut buf = AlignedBuf::for_overwrite((start + room + wire).next_multiple_of(BUF_ALIGN));
        let have = self.buf.len().min(wire);
        buf[start..start + have].copy_from_slice(&self.buf[..have]);
        self.buf.advance(have);
        self.dec.take_header();
        self.aligned = Some(Aligned {
            header: h,
            buf,
            start,
            got: have,
        });
    }

    fn finish_aligned(&mut self) -> Result<Frame, ReadError> {
        let Some(a) = self.aligned.take() else {
            return Err(ReadError::Stream("no aligned frame in progress".into()));
        };
        let len = a.header.payload_len as usize;
        let mut a = a;
        if self.rx.is_crc() {
            check_payload(&a.header, &a.buf[a.start..a.start + len]).map_err(ReadError::Frame)?;
        } else {
            let wire = len + self.rx.trailer_len();
            self.rx
                .open(&a.header.encode(), &mut a.buf[a.start..a.start + wire])
                .map_err(ReadError::Frame)?;
            if a.header.head_prefixed() && self.rx.mode() == WireMode::Secure {
                let pad = data_alignment_pad(&a.buf[..len], len);
                a.buf.copy_within(0..len, pad);
                a.start = pad;
            }
        }
        let payload = aligned_bytes(a.buf).slice(a.start..a.start + len);
        Ok(Frame {
            header: a.header,
            payload,
        })
    }
}

impl Drop for FrameReader {
    /// The current chunk goes back to the pool with the connection's end.
    fn drop(&mut self) {
        if self.pooled {
            self.pool.park(std::mem::take(&mut self.buf));
        }
    }
}

/// Where to start a head-prefixed payload of `len` bytes in an aligned
/// buffer so its data (after the `u32` head length and the head) starts on
/// a block boundary. `first` holds the payload's first bytes (at least 4).
/// A head length that does not fit the payload places nothing: the frame
/// will fail to decode as a message anyway, and the crc still guards it.
fn data_alignment_pad(first: &[u8], len: usize) -> usize {
    let Some(n) = first.first_chunk::<4>() else {
        return 0;
    };
    let data_at = 4 + u32::from_le_bytes(*n) as usize;
    if data_at > len {
        return 0;
    }
    (BUF_ALIGN - data_at % BUF_ALIGN) % BUF_ALIGN
}

/// Reads frames from one half of a TCP connection.
pub(crate) struct FramedRead<R> {
    pub(crate) rd: R,
    pub(crate) frames: FrameReader,
}

impl<R: AsyncRead + Unpin> FramedRead<R> {
    pub(crate) fn new(rd: R, frames: FrameReader) -> Self {
        FramedRead { rd, frames }
    }

    /// The next frame; `Ok(None)` at a clean end of stream.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, ReadError> {
        self.frames.next(&mut self.rd).await
    }
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
