//! Heap allocations per message on a warm connection, counted by a global
//! allocator: the messenger's send and receive paths allocate nothing per
//! message, whether messages are one chunk or a header chunk plus data, and
//! whether events go through the mpsc channel (tokio allocates a channel
//! block now and then) or an inline sink (nothing at all).
//!
//! One test per file: the counter is process-wide, so nothing else may run
//! beside it.

#[path = "support/cephx.rs"]
mod cephx;
#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use kalmar_msgr::auth::MsgrAuth;
use kalmar_msgr::onwire::WireMode;
use kalmar_msgr::{
    event_channel, Connection, EntityName, Event, EventSink, Listener, Message, MsgrConfig,
    Upcoming,
};
use tokio::sync::Notify;
use uuid::Uuid;

#[global_allocator]
static ALLOC: counting_alloc::CountingAlloc = counting_alloc::CountingAlloc;

/// Messages sent before counting (pools, queues and buffers grow).
const WARMUP: u64 = 5_000;
/// Messages counted.
const COUNTED: u64 = 20_000;
/// Dispatch queue of the mpsc runs: the receive pool (32 chunks of 64 KiB)
/// holds what a full queue of 4 KiB messages refers to. (Messages the
/// application holds pin their chunks; beyond the pool's bound, chunks
/// are allocated anew.)
const QUEUE: usize = 256;

/// An inline sink that only counts messages (and drops them at once).
#[derive(Clone, Default)]
struct Count {
    n: Arc<AtomicU64>,
    wake: Arc<Notify>,
}

impl EventSink for Count {
    type Permit<'a> = ();

    async fn reserve(&self, _: &Upcoming<'_>) -> Option<()> {
        Some(())
    }

    fn deliver(&self, _: (), event: Event) {
        if let Event::Message(_) = event {
            self.n.fetch_add(1, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }
}

enum Receiver {
    Channel(tokio::sync::mpsc::Receiver<Event>),
    Inline(Count),
}

impl Receiver {
    /// Waits until `total` messages arrived.
    async fn until(&mut self, total: u64, seen: &mut u64) {
        while *seen < total {
            match self {
                Receiver::Channel(rx) => {
                    if let Some(Event::Message(_)) = rx.recv().await {
                        *seen += 1;
                    }
                }
                Receiver::Inline(c) => {
                    let n = c.n.load(Ordering::Relaxed);
                    if n < total {
                        c.wake.notified().await;
                    }
                    *seen = c.n.load(Ordering::Relaxed);
                }
            }
        }
    }
}

/// Allocations per message over `COUNTED` messages built by `make`.
async fn per_message(inline: bool, make: impl Fn() -> Message) -> f64 {
    per_message_in(inline, make, None).await
}

async fn per_message_in(inline: bool, make: impl Fn() -> Message, mode: Option<WireMode>) -> f64 {
    let (server_auth, client_auth) = match mode {
        Some(m) => cephx::cephx_pair("osd.0", m),
        None => (MsgrAuth::default(), MsgrAuth::default()),
    };
    let cfg = MsgrConfig {
        dispatch_queue_messages: QUEUE,
        auth: server_auth,
        ..MsgrConfig::default()
    };
    let addr = "127.0.0.1:0".parse().expect("addr");
    let fsid = Uuid::nil();
    let (l, mut rx) = if inline {
        let count = Count::default();
        let l = Listener::bind(addr, EntityName::osd(1), fsid, cfg.clone(), count.clone());
        (l.await.expect("bind"), Receiver::Inline(count))
    } else {
        let (tx, rx) = event_channel(&cfg);
        let l = Listener::bind(addr, EntityName::osd(1), fsid, cfg.clone(), tx);
        (l.await.expect("bind"), Receiver::Channel(rx))
    };
    let cfg = MsgrConfig {
        auth: client_auth,
        ..cfg
    };
    let (ctx, _crx) = event_channel(&cfg);
    let c = Connection::connect(l.local_addr(), EntityName::osd(0), fsid, cfg, ctx)
        .await
        .expect("connect");
    assert_eq!(c.handle().wire_mode(), Some(mode.unwrap_or(WireMode::Crc)));
    let mut seen = 0;
    // Sender and receiver interleave on this thread, as on a shard.
    let send = |n: u64| {
        let (c, make) = (&c, &make);
        async move {
            for _ in 0..n {
                c.send(make()).await.expect("send");
            }
        }
    };
    tokio::join!(send(WARMUP), rx.until(WARMUP, &mut seen));
    let before = counting_alloc::allocations();
    tokio::join!(send(COUNTED), rx.until(WARMUP + COUNTED, &mut seen));
    let allocs = counting_alloc::allocations() - before;
    drop(c);
    drop(l);
    allocs as f64 / COUNTED as f64
}

#[tokio::test(flavor = "current_thread")]
async fn a_warm_connection_allocates_nothing_per_message() {
    let data = Bytes::from(vec![0xab; 4096]);
    // A shared header chunk, as a daemon replicating one write sends the
    // same message to several peers.
    let mut head = 60u32.to_le_bytes().to_vec();
    head.extend([7u8; 60]);
    let head = Bytes::from(head);
    let one_chunk = || Message::new(100, data.clone());
    let chunked = || Message::head_prefixed(100, head.clone(), [data.clone()]);
    let results = [
        ("one chunk, mpsc", per_message(false, one_chunk).await),
        ("header + data, mpsc", per_message(false, chunked).await),
        ("one chunk, inline sink", per_message(true, one_chunk).await),
        (
            "header + data, inline sink",
            per_message(true, chunked).await,
        ),
    ];
    for (what, per_msg) in results {
        println!("{what}: {per_msg:.4} allocations per 4 KiB message");
    }
    // The messenger itself: nothing. Through the channel, tokio allocates
    // a block of 32 slots when it cannot recycle one (a deep queue).
    for (what, per_msg) in &results[..2] {
        assert!(*per_msg <= 1.0 / 32.0, "{what}: {per_msg:.4} per message");
    }
    for (what, per_msg) in &results[2..] {
        assert!(*per_msg <= 0.001, "{what}: {per_msg:.4} per message");
    }
    // The count sees a payload built afresh for every message.
    let fresh = per_message(true, || Message::new(100, vec![1u8; 4096])).await;
    println!("a fresh payload per message: {fresh:.4} allocations per message");
    assert!(fresh >= 1.0, "{fresh}");
    signed_and_secure_connections_allocate_nothing_per_message().await;
}

/// The signed and secure modes allocate nothing per message either: the
/// keyed BLAKE3 hasher lives on the stack, the writer encrypts into a
/// buffer it reuses, and the reader decrypts in place. (Called from the
/// test above: the allocation counter is process-wide, so the
/// measurements must not run side by side.)
async fn signed_and_secure_connections_allocate_nothing_per_message() {
    let data = Bytes::from(vec![0xab; 4096]);
    let mut head = 60u32.to_le_bytes().to_vec();
    head.extend([7u8; 60]);
    let head = Bytes::from(head);
    for mode in [WireMode::Signed, WireMode::Secure] {
        let one = per_message_in(true, || Message::new(100, data.clone()), Some(mode)).await;
        let chunked = per_message_in(
            true,
            || Message::head_prefixed(100, head.clone(), [data.clone()]),
            Some(mode),
        )
        .await;
        println!("{mode}: {one:.4} / {chunked:.4} allocations per 4 KiB message (one chunk / header + data, inline sink)");
        assert!(one <= 0.001, "{mode}, one chunk: {one:.4} per message");
        assert!(
            chunked <= 0.001,
            "{mode}, header + data: {chunked:.4} per message"
        );
    }
}
