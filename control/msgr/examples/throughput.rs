//! Messenger throughput over loopback next to a raw TCP baseline in the
//! same run: one connection, N messages of S bytes, sender to receiver.
//!
//! `cargo run --release -p kalmar-msgr --example throughput [ROUNDS]`
//!
//! The baseline writes an 8-byte length and the payload per message with
//! `write_all` and reads them back: the least a framed stream can do. The
//! messenger adds its header, crc32c of payload and header, sequence
//! numbers, acknowledgements and the bounded queue.
//!
//! Besides the rates it prints, for each side, the process CPU time per
//! message (user + system from getrusage, sender and receiver together,
//! as both run in this process) and, for the messenger, heap allocations
//! per message (counted by a global allocator over the timed part).

use std::time::{Duration, Instant};

#[path = "../tests/support/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static ALLOC: counting_alloc::CountingAlloc = counting_alloc::CountingAlloc;

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// One timed run: wall time, CPU time, allocations.
#[derive(Clone, Copy)]
struct Run {
    wall: Duration,
    cpu: Duration,
    allocs: u64,
}

async fn measure<F: std::future::Future<Output = ()>>(f: F) -> Run {
    let (c0, a0, t0) = (cpu_time(), counting_alloc::allocations(), Instant::now());
    f.await;
    Run {
        wall: t0.elapsed(),
        cpu: cpu_time() - c0,
        allocs: counting_alloc::allocations() - a0,
    }
}

use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use kalmar_msgr::{
    event_channel, Connection, EntityName, Event, EventSink, Listener, Message, MsgrConfig,
    Upcoming,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

async fn raw_tcp(size: usize, count: usize) -> Run {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let reader = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let mut buf = vec![0u8; size];
        for _ in 0..count {
            let n = s.read_u64_le().await.expect("len") as usize;
            s.read_exact(&mut buf[..n]).await.expect("payload");
        }
    });
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let payload = vec![0xabu8; size];
    measure(async {
        for _ in 0..count {
            s.write_u64_le(size as u64).await.expect("len");
            s.write_all(&payload).await.expect("payload");
        }
        reader.await.expect("reader");
    })
    .await
}

/// A message as kalmar-proto's segmented messages (client ops, replicated
/// writes) are built: a small encoded header (`[u32 len][header]`, a fresh
/// buffer per message) and the caller's data as a chunk of its own, not
/// copied.
fn segmented(data: &Bytes) -> Message {
    let mut head = Vec::with_capacity(64);
    head.extend_from_slice(&60u32.to_le_bytes());
    head.extend_from_slice(&[7u8; 60]);
    Message::head_prefixed(100, Bytes::from(head), [data.clone()])
}

/// An inline sink: counts messages on the connection's read task and
/// drops them there (no dispatcher task).
#[derive(Clone)]
struct Counter {
    left: Arc<AtomicUsize>,
    done: Arc<Notify>,
}

impl EventSink for Counter {
    type Permit<'a> = ();

    async fn reserve(&self, _: &Upcoming<'_>) -> Option<()> {
        Some(())
    }

    fn deliver(&self, _: (), event: Event) {
        if let Event::Message(_) = event {
            if self.left.fetch_sub(1, Ordering::Relaxed) == 1 {
                self.done.notify_one();
            }
        }
    }
}

/// How the messenger rows are run.
#[derive(Clone, Copy)]
struct Mode {
    /// Messages built as segmented ones (header chunk + data).
    seg: bool,
    /// Events to an inline sink instead of the channel and a task.
    inline: bool,
}

async fn msgr(size: usize, count: usize, mode: Mode) -> Run {
    let cfg = MsgrConfig::default();
    let addr = "127.0.0.1:0".parse().expect("addr");
    let me: EntityName = "osd.1".parse().expect("name");
    let (l, receiver) = if mode.inline {
        let counter = Counter {
            left: Arc::new(AtomicUsize::new(count)),
            done: Arc::new(Notify::new()),
        };
        let done = counter.done.clone();
        let l = Listener::bind(addr, me, uuid::Uuid::nil(), cfg.clone(), counter).await;
        (l, tokio::spawn(async move { done.notified().await }))
    } else {
        let (tx, mut rx) = event_channel(&cfg);
        let l = Listener::bind(addr, me, uuid::Uuid::nil(), cfg.clone(), tx).await;
        let receiver = tokio::spawn(async move {
            let mut got = 0;
            while got < count {
                if let Some(Event::Message(_)) = rx.recv().await {
                    got += 1;
                }
            }
        });
        (l, receiver)
    };
    let l = l.expect("bind");
    let (ctx, _crx) = event_channel(&cfg);
    let c = Connection::connect(
        l.local_addr(),
        EntityName::osd(0),
        uuid::Uuid::nil(),
        cfg,
        ctx,
    )
    .await
    .expect("connect");
    let payload = Bytes::from(vec![0xabu8; size]);
    let run = measure(async {
        for _ in 0..count {
            let m = if mode.seg {
                segmented(&payload)
            } else {
                Message::new(100, payload.clone())
            };
            c.send(m).await.expect("send");
        }
        receiver.await.expect("receiver");
    })
    .await;
    drop(c);
    drop(l);
    run
}

fn rate(size: usize, count: usize, d: Duration) -> (f64, f64) {
    let secs = d.as_secs_f64();
    (
        count as f64 / secs,
        (size * count) as f64 / secs / (1 << 20) as f64,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    println!("median of {rounds} rounds; cpu = process user+sys us per message (both sides)");
    println!("(s: messages built as segmented: a 64-byte header chunk + the data;");
    println!(" i: events to an inline sink on the read task, not a channel and a task)");
    println!("    size      count   raw msg/s   raw MiB/s  msgr msg/s  msgr MiB/s  ratio  raw cpu  msgr cpu  msgr allocs/msg");
    let plain = Mode {
        seg: false,
        inline: false,
    };
    let seg = Mode { seg: true, ..plain };
    let inline = Mode {
        inline: true,
        ..plain
    };
    for (size, count, mode) in [
        (64usize, 200_000usize, plain),
        (4 << 10, 100_000, plain),
        (4 << 10, 100_000, seg),
        (4 << 10, 100_000, inline),
        (1 << 20, 1_000, plain),
        (4 << 20, 300, plain),
    ] {
        let mut raw = Vec::new();
        let mut ours = Vec::new();
        for _ in 0..rounds {
            raw.push(raw_tcp(size, count).await);
            ours.push(msgr(size, count, mode).await);
        }
        raw.sort_by_key(|r| r.wall);
        ours.sort_by_key(|r| r.wall);
        let (r, m) = (raw[rounds / 2], ours[rounds / 2]);
        let (r_msgs, r_mib) = rate(size, count, r.wall);
        let (m_msgs, m_mib) = rate(size, count, m.wall);
        let per_msg_us = |d: Duration| d.as_secs_f64() * 1e6 / count as f64;
        println!(
            "{size:>8} {}{} {count:>8} {r_msgs:>11.0} {r_mib:>11.1} {m_msgs:>11.0} {m_mib:>11.1}  {:>5.2} {:>8.2} {:>9.2} {:>16.2}",
            if mode.seg { "s" } else { " " },
            if mode.inline { "i" } else { " " },
            m_mib / r_mib,
            per_msg_us(r.cpu),
            per_msg_us(m.cpu),
            m.allocs as f64 / count as f64,
        );
    }
}
