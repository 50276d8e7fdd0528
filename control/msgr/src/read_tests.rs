//! Tests of the frame reader: pooled chunks, aligned receive, errors.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};

use super::*;
use crate::frame::{FLAG_HEAD_PREFIXED, HEADER_BYTES};
use crate::message::Message;

/// An in-memory stream handing out at most `step` bytes per read.
struct Drip {
    data: Vec<u8>,
    at: usize,
    step: usize,
}

impl AsyncRead for Drip {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = (self.data.len() - self.at)
            .min(self.step)
            .min(buf.remaining());
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

fn config(aligned_min: usize) -> MsgrConfig {
    MsgrConfig {
        recv_chunk_bytes: 16 << 10,
        recv_pool_max_chunks: 4,
        recv_aligned_min_bytes: aligned_min,
        ..MsgrConfig::default()
    }
}

fn frame(seq: u64, msg: &Message) -> Vec<u8> {
    let mut v = FrameHeader::for_message(seq, 0, msg).encode().to_vec();
    v.extend_from_slice(&msg.to_vec());
    v
}

fn pattern(n: usize, seed: u8) -> Bytes {
    (0..n).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// A head-prefixed message: `[u32 n][n head bytes][data]`.
fn segmented(head_len: usize, data: Bytes) -> Message {
    let mut head = (head_len as u32).to_le_bytes().to_vec();
    head.extend(std::iter::repeat_n(0x5a, head_len));
    Message::head_prefixed(7, head.into(), [data])
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Reads every frame of `wire`, `step` bytes per read.
fn read_all(cfg: &MsgrConfig, pool: &RecvPool, wire: Vec<u8>, step: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    read_each(cfg, pool, wire, step, |f| out.push(f));
    out
}

/// Hands every frame of `wire` to `each` as it is read.
fn read_each(
    cfg: &MsgrConfig,
    pool: &RecvPool,
    wire: Vec<u8>,
    step: usize,
    mut each: impl FnMut(Frame),
) {
    let mut rd = Drip {
        data: wire,
        at: 0,
        step,
    };
    let mut r = FrameReader::new(cfg, pool.clone());
    block_on(async {
        while let Some(f) = r.next(&mut rd).await.expect("valid stream") {
            each(f);
        }
    })
}

#[test]
fn frames_of_every_size_come_out_whole_in_any_read_pattern() {
    let cfg = config(32 << 10);
    let msgs: Vec<Message> = [
        0usize,
        1,
        35,
        36,
        4096,
        16 << 10,
        (32 << 10) - 1,
        32 << 10,
        100_000,
    ]
    .iter()
    .enumerate()
    .map(|(i, &n)| Message::new(3, pattern(n, i as u8)))
    .chain([segmented(61, pattern(70_000, 9))])
    .collect();
    let wire: Vec<u8> = msgs
        .iter()
        .enumerate()
        .flat_map(|(i, m)| frame(i as u64 + 1, m))
        .collect();
    for step in [1, 7, 4096, 20_000, usize::MAX] {
        let pool = RecvPool::new(&cfg);
        let got = read_all(&cfg, &pool, wire.clone(), step);
        assert_eq!(got.len(), msgs.len(), "step {step}");
        for (i, (f, m)) in got.iter().zip(&msgs).enumerate() {
            assert_eq!(f.header.seq, i as u64 + 1);
            assert!(f.payload == m.to_vec(), "payload {i} differs (step {step})");
        }
    }
}

#[test]
fn large_frames_land_aligned_with_their_data_on_a_block() {
    let cfg = config(64 << 10);
    let pool = RecvPool::new(&cfg);
    let plain = Message::new(3, pattern(200_000, 1));
    let seg = segmented(93, pattern(128 << 10, 2));
    let small = Message::new(3, pattern(1000, 3));
    let wire = [frame(1, &small), frame(2, &plain), frame(3, &seg)].concat();
    let got = read_all(&cfg, &pool, wire, 64 << 10);
    assert_eq!(got.len(), 3);
    let (p, s) = (&got[1].payload, &got[2].payload);
    assert!(p[..] == plain.to_vec()[..] && s[..] == seg.to_vec()[..]);
    assert_eq!(p.as_ptr() as usize % BUF_ALIGN, 0, "payload start aligned");
    assert_eq!(got[2].header.flags, FLAG_HEAD_PREFIXED);
    let data = &s[4 + 93..];
    assert_eq!(data.len(), 128 << 10);
    assert_eq!(data.as_ptr() as usize % BUF_ALIGN, 0, "data aligned");
    // A message received small stays in the chunk (not aligned on purpose).
    assert_eq!(got[0].payload.len(), 1000);
}

#[test]
fn a_held_message_keeps_its_chunk_and_the_chunk_returns_after() {
    let cfg = config(1 << 20);
    let pool = RecvPool::new(&cfg);
    // 3 KiB messages through 16 KiB chunks: several chunks' worth.
    let msgs: Vec<Message> = (0..40).map(|i| Message::new(1, pattern(3000, i))).collect();
    let wire = |from: u64| -> Vec<u8> {
        msgs.iter()
            .enumerate()
            .flat_map(|(i, m)| frame(from + i as u64, m))
            .collect()
    };
    // Each message dropped once read: the reader reclaims its own chunk.
    let mut n = 0;
    read_each(&cfg, &pool, wire(1), 16 << 10, |f| {
        assert!(f.payload == msgs[n].to_vec());
        n += 1;
    });
    assert_eq!(n, 40);
    assert_eq!(
        pool.allocated(),
        1,
        "one chunk for a stream of released messages"
    );
    // Messages held a little (a window of 8, as an application with 8
    // operations in flight): a few chunks, then none.
    let mut window = std::collections::VecDeque::new();
    read_each(&cfg, &pool, wire(41), 16 << 10, |f| {
        window.push_back(f);
        if window.len() > 8 {
            window.pop_front();
        }
    });
    drop(window);
    let warm = pool.allocated();
    assert!(warm <= 4, "{warm} chunks for a window of 8 x 3 KiB");
    let mut window = std::collections::VecDeque::new();
    read_each(&cfg, &pool, wire(81), 16 << 10, |f| {
        window.push_back(f);
        if window.len() > 8 {
            window.pop_front();
        }
    });
    drop(window);
    assert_eq!(pool.allocated(), warm, "a warm pool allocates nothing");
    // Holding every message: each chunk stays with its messages.
    let held = read_all(&cfg, &pool, wire(121), 16 << 10);
    assert!(pool.allocated() > warm + 4, "held chunks cannot be reused");
    assert!(held.iter().zip(&msgs).all(|(f, m)| f.payload == m.to_vec()));
    assert!(pool.parked() <= 4, "the pool keeps at most its bound");
    // Let go of the messages: another stream reuses the chunks.
    drop(held);
    let before = pool.allocated();
    let mut n = 0;
    read_each(&cfg, &pool, wire(161), 16 << 10, |_| n += 1);
    assert_eq!(n, 40);
    assert_eq!(pool.allocated(), before, "released chunks come back");
}

#[test]
fn corruption_is_caught_on_both_paths() {
    let cfg = config(8 << 10);
    for n in [100usize, 20_000] {
        let msg = segmented(10, pattern(n, 4));
        let mut wire = frame(1, &msg);
        let last = wire.len() - 1;
        wire[last] ^= 0x80;
        let mut rd = Drip {
            data: wire,
            at: 0,
            step: 4096,
        };
        let mut r = FrameReader::new(&cfg, RecvPool::new(&cfg));
        let err = block_on(r.next(&mut rd)).expect_err("corrupt");
        assert!(
            matches!(err, ReadError::Frame(FrameError::PayloadCrc { .. })),
            "{n} bytes: {err}"
        );
    }
}

#[test]
fn an_end_of_stream_inside_a_frame_is_an_error() {
    let cfg = config(8 << 10);
    for n in [100usize, 20_000] {
        let mut wire = frame(1, &Message::new(1, pattern(n, 0)));
        wire.truncate(wire.len() - 1);
        for cut in [HEADER_BYTES, wire.len()] {
            let mut rd = Drip {
                data: wire[..cut].to_vec(),
                at: 0,
                step: 1000,
            };
            let mut r = FrameReader::new(&cfg, RecvPool::new(&cfg));
            let err = block_on(r.next(&mut rd)).expect_err("truncated");
            assert!(matches!(err, ReadError::Stream(_)), "{err}");
        }
    }
    // A clean end between frames is not.
    let mut rd = Drip {
        data: frame(1, &Message::new(1, pattern(10, 0))),
        at: 0,
        step: 3,
    };
    let mut r = FrameReader::new(&cfg, RecvPool::new(&cfg));
    assert!(block_on(r.next(&mut rd)).expect("frame").is_some());
    assert!(block_on(r.next(&mut rd)).expect("clean end").is_none());
}
