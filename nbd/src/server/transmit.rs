//! The transmission phase of one connection: one task reads requests,
//! runs them concurrently against the backend (bounded), and sends each
//! reply as soon as its request completes, so replies go out of order.
//!
//! Small write payloads are cut out of the read buffer without copying
//! and handed to the backend; large ones are received straight into an
//! aligned buffer of their own, which a store backend writes to the device
//! without another copy. Read data goes to the socket as its own buffer in
//! a vectored write, batched with every other reply that is ready.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use kalmar_common::perf::PerfCounters;
use kalmar_io::{aligned_bytes, AlignedBuf};
use tokio::sync::watch;

use super::stream::NbdStream;
use super::ConnError;
use crate::backend::{BackendError, BlockBackend};
use crate::perf;
use crate::proto::consts::{CHUNK_HEADER_BYTES, MAX_STRING_BYTES, REQUEST_HEADER_BYTES};
use crate::proto::request::command_name;
use crate::proto::{reply, validate, Command, Errno, RequestHeader, Session};
use crate::settings::ServerSettings;

/// Most buffers in one vectored socket write.
const MAX_WRITE_IOVECS: usize = 64;
/// Read buffer growth step.
const READ_CHUNK_BYTES: usize = 256 * 1024;
/// Write payloads of at least this many bytes are received into an aligned
/// buffer of their own.
const ALIGNED_PAYLOAD_MIN_BYTES: usize = 64 * 1024;
/// Reply header scratch growth step.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Longest reply header: an error chunk with the longest message.
const MAX_REPLY_HEADER_BYTES: usize = CHUNK_HEADER_BYTES + 6 + MAX_STRING_BYTES;

/// Replies waiting for the socket.
struct OutQueue {
    chunks: VecDeque<Bytes>,
    scratch: BytesMut,
    queued_bytes: u64,
}

impl OutQueue {
    fn new() -> OutQueue {
        OutQueue {
            chunks: VecDeque::new(),
            scratch: BytesMut::with_capacity(SCRATCH_BYTES),
            queued_bytes: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.scratch.is_empty()
    }

    fn bytes(&self) -> u64 {
        self.queued_bytes + self.scratch.len() as u64
    }

    /// Encodes a header (or a whole small reply) into the scratch buffer.
    fn header(&mut self, encode: impl FnOnce(&mut BytesMut)) {
        if self.scratch.capacity() - self.scratch.len() < MAX_REPLY_HEADER_BYTES {
            self.seal();
            self.scratch.reserve(SCRATCH_BYTES);
        }
        encode(&mut self.scratch);
    }

    fn data(&mut self, b: Bytes) {
        self.seal();
        self.queued_bytes += b.len() as u64;
        self.chunks.push_back(b);
    }

    fn seal(&mut self) {
        if !self.scratch.is_empty() {
            let b = self.scratch.split().freeze();
            self.queued_bytes += b.len() as u64;
            self.chunks.push_back(b);
        }
    }

    /// Writes as much as the socket takes now; true when all went out.
    fn try_flush<S: NbdStream>(&mut self, s: &S) -> io::Result<bool> {
        self.seal();
        while !self.chunks.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_WRITE_IOVECS];
            let mut n = 0;
            for c in self.chunks.iter().take(MAX_WRITE_IOVECS) {
                iov[n] = IoSlice::new(c);
                n += 1;
            }
            match s.try_write_iov(&iov[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.advance(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn advance(&mut self, mut n: usize) {
        self.queued_bytes -= n as u64;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

/// What the read buffer yields next.
enum Next {
    NeedMore,
    Request(RequestHeader, Bytes),
    /// A write whose payload is too large to buffer: it is skipped and the
    /// request refused.
    Oversized(RequestHeader),
}

struct Input {
    buf: BytesMut,
    /// Payload bytes of a refused oversized write still to skip.
    discard: u64,
    max_payload: u32,
    /// A large write payload being received into its own buffer.
    receiving: Option<Receiving>,
}

struct Receiving {
    header: RequestHeader,
    payload: AlignedBuf,
    got: usize,
}

impl Input {
    fn new(max_payload: u32) -> Input {
        Input {
            buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            discard: 0,
            max_payload,
            receiving: None,
        }
    }

    fn next(&mut self) -> Result<Next, ConnError> {
        if let Some(r) = &self.receiving {
            if r.got < r.payload.len() {
                return Ok(Next::NeedMore);
            }
            if let Some(r) = self.receiving.take() {
                return Ok(Next::Request(r.header, aligned_bytes(r.payload)));
            }
        }
        if self.discard > 0 {
            let n = self.discard.min(self.buf.len() as u64);
            self.buf.advance(n as usize);
            self.discard -= n;
            if self.discard > 0 {
                return Ok(Next::NeedMore);
            }
        }
        let Some(raw) = self.buf.get(..REQUEST_HEADER_BYTES) else {
            return Ok(Next::NeedMore);
        };
        let mut hdr = [0u8; REQUEST_HEADER_BYTES];
        hdr.copy_from_slice(raw);
        let h = RequestHeader::parse(&hdr)?;
        let payload = h.payload_bytes() as usize;
        if payload > self.max_payload as usize {
            self.buf.advance(REQUEST_HEADER_BYTES);
            self.discard = payload as u64;
            return Ok(Next::Oversized(h));
        }
        if payload >= ALIGNED_PAYLOAD_MIN_BYTES {
            self.buf.advance(REQUEST_HEADER_BYTES);
            let mut aligned = AlignedBuf::for_overwrite(payload);
            let have = self.buf.len().min(payload);
            aligned[..have].copy_from_slice(&self.buf[..have]);
            self.buf.advance(have);
            self.receiving = Some(Receiving {
                header: h,
                payload: aligned,
                got: have,
            });
            return self.next();
        }
        let need = REQUEST_HEADER_BYTES + payload;
        if self.buf.len() < need {
            self.buf.reserve(need - self.buf.len());
            return Ok(Next::NeedMore);
        }
        self.buf.advance(REQUEST_HEADER_BYTES);
        Ok(Next::Request(h, self.buf.split_to(payload).freeze()))
    }

    /// One non-blocking read; false at end of stream.
    fn fill<S: NbdStream>(&mut self, s: &S) -> io::Result<bool> {
        if let Some(r) = self.receiving.as_mut().filter(|r| r.got < r.payload.len()) {
            return match s.try_read_slice(&mut r.payload[r.got..]) {
                Ok(0) => Ok(false),
                Ok(n) => {
                    r.got += n;
                    Ok(true)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
                Err(e) => Err(e),
            };
        }
        if self.buf.capacity() - self.buf.len() < READ_CHUNK_BYTES / 4 {
            self.buf.reserve(READ_CHUNK_BYTES);
        }
        match s.try_read_into(&mut self.buf) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
            Err(e) => Err(e),
        }
    }
}

/// A finished request.
struct Done {
    handle: u64,
    command: Command,
    cost_bytes: u64,
    started: Instant,
    result: Result<Option<Bytes>, BackendError>,
}

async fn execute<B: BlockBackend>(
    b: &B,
    handle: u64,
    command: Command,
    data: Bytes,
    cost_bytes: u64,
) -> Done {
    let started = Instant::now();
    let unit = |r: Result<(), BackendError>| r.map(|()| None);
    let result = match command {
        Command::Read { offset, len } => match b.read(offset, len).await {
            Ok(d) if d.len() == len as usize => Ok(Some(d)),
            Ok(d) => Err(BackendError::Io(format!(
                "backend returned {} bytes for a read of {len}",
                d.len()
            ))),
            Err(e) => Err(e),
        },
        Command::Write { offset, fua, .. } => unit(b.write(offset, data, fua).await),
        Command::Flush => unit(b.flush().await),
        Command::Trim { offset, len, .. } => unit(b.trim(offset, u64::from(len)).await),
        Command::WriteZeroes {
            offset,
            len,
            no_hole,
            ..
        } => unit(b.write_zeroes(offset, u64::from(len), no_hole).await),
        Command::Disconnect => Ok(None),
    };
    Done {
        handle,
        command,
        cost_bytes,
        started,
        result,
    }
}

fn cost(c: &Command) -> u64 {
    match c {
        Command::Read { len, .. } | Command::Write { len, .. } => u64::from(*len),
        _ => 0,
    }
}

/// Serves requests until the client disconnects, the connection fails or
/// `shutdown` turns true (in-flight requests are finished first).
pub(crate) async fn transmit<S: NbdStream, B: BlockBackend>(
    s: &S,
    backend: &B,
    session: &Session,
    settings: &ServerSettings,
    perf: &PerfCounters,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnError> {
    let structured = session.structured_replies;
    let mut input = Input::new(session.block_sizes.max_payload_bytes);
    let mut out = OutQueue::new();
    let mut inflight = FuturesUnordered::new();
    let mut inflight_bytes = 0u64;
    let mut closing = *shutdown.borrow();

    let finish = |d: Done, out: &mut OutQueue| {
        perf::account(perf, &d.command, d.result.is_ok(), d.started.elapsed());
        match d.result {
            Ok(Some(data)) => {
                let offset = match d.command {
                    Command::Read { offset, .. } => offset,
                    _ => 0,
                };
                out.header(|v| {
                    reply::read_ok_header(structured, d.handle, offset, data.len() as u32, v)
                });
                out.data(data);
            }
            Ok(None) => out.header(|v| reply::ok(d.handle, v)),
            Err(e) => {
                tracing::debug!(handle = d.handle, error = %e, "request failed");
                out.header(|v| reply::error(structured, d.handle, e.errno(), &e.to_string(), v));
            }
        }
        d.cost_bytes
    };

    loop {
        // Take every buffered request the bounds allow.
        while !closing
            && inflight.len() < settings.max_inflight_requests
            && inflight_bytes + out.bytes() < settings.max_inflight_bytes
        {
            match input.next()? {
                Next::NeedMore => break,
                Next::Oversized(h) => {
                    perf.inc(perf::L_OP_ERRORS, 1);
                    let msg = format!(
                        "{}: payload of {} bytes is too large",
                        command_name(h.command),
                        h.length
                    );
                    out.header(|v| reply::error(structured, h.handle, Errno::Inval, &msg, v));
                }
                Next::Request(h, data) => match validate(&h, session) {
                    Err(r) => {
                        out.header(|v| reply::error(structured, h.handle, r.errno, &r.message, v))
                    }
                    Ok(Command::Disconnect) => closing = true,
                    Ok(c) => {
                        let c_bytes = cost(&c);
                        inflight_bytes += c_bytes;
                        inflight.push(execute(backend, h.handle, c, data, c_bytes));
                    }
                },
            }
        }
        out.try_flush(s)?;
        if closing && inflight.is_empty() && out.is_empty() {
            return Ok(());
        }
        let want_read = !closing
            && inflight.len() < settings.max_inflight_requests
            && inflight_bytes + out.bytes() < settings.max_inflight_bytes;
        tokio::select! {
            biased;
            Some(d) = inflight.next(), if !inflight.is_empty() => {
                inflight_bytes -= finish(d, &mut out);
                // Batch every other reply that is ready into the same write.
                while let Some(Some(d)) = inflight.next().now_or_never() {
                    inflight_bytes -= finish(d, &mut out);
                }
            }
            r = s.writable(), if !out.is_empty() => r?,
            r = s.readable(), if want_read => {
                r?;
                if !input.fill(s)? {
                    // The client went away; finish what it asked for.
                    closing = true;
                }
            }
            r = shutdown.changed(), if !closing => {
                if r.is_err() || *shutdown.borrow() {
                    closing = true;
                }
            }
        }
    }
}
