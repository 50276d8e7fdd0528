//! Messenger throughput over loopback next to a raw TCP baseline in the
//! same run: one connection, N messages of S bytes, sender to receiver.
//!
//! `cargo run --release -p kalmar-msgr --example throughput [ROUNDS]`
//!
//! The baseline writes an 8-byte length and the payload per message with
//! `write_all` and reads them back: the least a framed stream can do. The
//! messenger adds its header, crc32c of payload and header, sequence
//! numbers, acknowledgements and the bounded queue.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kalmar_msgr::{event_channel, Connection, EntityName, Event, Listener, Message, MsgrConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn raw_tcp(size: usize, count: usize) -> Duration {
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
    let t0 = Instant::now();
    for _ in 0..count {
        s.write_u64_le(size as u64).await.expect("len");
        s.write_all(&payload).await.expect("payload");
    }
    reader.await.expect("reader");
    t0.elapsed()
}

async fn msgr(size: usize, count: usize) -> Duration {
    let cfg = MsgrConfig::default();
    let (tx, mut rx) = event_channel(&cfg);
    let l = Listener::bind(
        "127.0.0.1:0".parse().expect("addr"),
        "osd.1".parse().expect("name"),
        uuid::Uuid::nil(),
        cfg.clone(),
        tx,
    )
    .await
    .expect("bind");
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
    let receiver = tokio::spawn(async move {
        let mut got = 0;
        while got < count {
            if let Some(Event::Message(_)) = rx.recv().await {
                got += 1;
            }
        }
    });
    let t0 = Instant::now();
    for _ in 0..count {
        c.send(Message::new(100, payload.clone()))
            .await
            .expect("send");
    }
    receiver.await.expect("receiver");
    let took = t0.elapsed();
    drop(c);
    drop(l);
    took
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
    println!("size      count   raw msg/s   raw MiB/s  msgr msg/s  msgr MiB/s  ratio (median of {rounds})");
    for (size, count) in [
        (64usize, 200_000usize),
        (4 << 10, 100_000),
        (1 << 20, 1_000),
        (4 << 20, 300),
    ] {
        let mut raw = Vec::new();
        let mut ours = Vec::new();
        for _ in 0..rounds {
            raw.push(raw_tcp(size, count).await);
            ours.push(msgr(size, count).await);
        }
        raw.sort();
        ours.sort();
        let (r_msgs, r_mib) = rate(size, count, raw[rounds / 2]);
        let (m_msgs, m_mib) = rate(size, count, ours[rounds / 2]);
        println!(
            "{size:>8} {count:>8} {r_msgs:>11.0} {r_mib:>11.1} {m_msgs:>11.0} {m_mib:>11.1}  {:.2}",
            m_mib / r_mib
        );
    }
}
