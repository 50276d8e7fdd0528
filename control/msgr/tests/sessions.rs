//! The messenger over real loopback sockets: delivery, replies, replay
//! after a broken connection, peer restart, bad frames, fsid refusal,
//! keepalive timeouts and the bounded send queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kalmar_msgr::frame::{FrameHeader, FrameKind};
use kalmar_msgr::{
    event_channel, Connection, EntityName, Event, Listener, Message, MsgrConfig, SessionHandle,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

fn fast_config() -> MsgrConfig {
    MsgrConfig {
        keepalive_interval: Duration::from_millis(100),
        keepalive_timeout: Duration::from_millis(600),
        reconnect_backoff_min: Duration::from_millis(10),
        reconnect_backoff_max: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(2),
        ..MsgrConfig::default()
    }
}

fn name(s: &str) -> EntityName {
    s.parse().expect("valid entity")
}

async fn next_message(rx: &mut mpsc::Receiver<Event>) -> kalmar_msgr::Incoming {
    loop {
        match tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("event in time")
            .expect("channel open")
        {
            Event::Message(m) => return m,
            other => eprintln!("skipping {other:?}"),
        }
    }
}

/// A hand-made hello of a fresh session without auth and without a mode
/// offer (an older peer's: crc).
fn plain_hello(
    protocol_version: u32,
    entity: &str,
    fsid: Uuid,
    session_id: u64,
) -> kalmar_msgr::handshake::Hello {
    kalmar_msgr::handshake::Hello {
        protocol_version,
        entity: name(entity),
        fsid,
        session_id,
        in_seq: 0,
        acked_seq: 0,
        features: 0,
        max_frame_bytes: 0,
        auth: None,
        modes: Vec::new(),
    }
}

async fn listener(fsid: Uuid, cfg: MsgrConfig) -> (Listener, mpsc::Receiver<Event>) {
    let (tx, rx) = event_channel(&cfg);
    let l = Listener::bind(
        "127.0.0.1:0".parse().expect("addr"),
        name("mon.a"),
        fsid,
        cfg,
        tx,
    )
    .await
    .expect("bind");
    (l, rx)
}

#[tokio::test]
async fn messages_and_replies_flow_in_order() {
    let fsid = Uuid::new_v4();
    let (l, mut srv) = listener(fsid, fast_config()).await;
    let (ctx, mut cli) = event_channel(&fast_config());
    let c = Connection::connect(l.local_addr(), name("osd.3"), fsid, fast_config(), ctx)
        .await
        .expect("connect");
    let big = Bytes::from(vec![0xab; 4 << 20]);
    for i in 0..100u32 {
        let payload = if i == 50 {
            big.clone()
        } else {
            Bytes::from(i.to_le_bytes().to_vec())
        };
        c.send(Message::new(7, payload)).await.expect("send");
    }
    for i in 0..100u32 {
        let m = next_message(&mut srv).await;
        assert_eq!(m.peer.entity, name("osd.3"));
        assert_eq!(m.msg.msg_type, 7);
        if i == 50 {
            assert_eq!(*m.msg.contiguous(), big);
        } else {
            assert_eq!(&m.msg.contiguous()[..], &i.to_le_bytes());
        }
        if i == 99 {
            m.from
                .send(Message::new(8, &b"reply"[..]))
                .await
                .expect("reply");
        }
    }
    let r = next_message(&mut cli).await;
    assert_eq!(r.peer.entity, name("mon.a"));
    assert_eq!(&r.msg.contiguous()[..], b"reply");
}

/// A TCP proxy we can cut, to break connections without touching either end.
struct Proxy {
    addr: SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    /// Connections accepted so far.
    accepted: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let (cut, cut_rx) = tokio::sync::watch::channel(0u64);
        let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = l.accept().await else {
                    return;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Ok(outbound) = TcpStream::connect(target).await else {
                    continue;
                };
                let mut cut_rx = cut_rx.clone();
                cut_rx.borrow_and_update();
                tokio::spawn(async move {
                    let (mut a, mut b) = (inbound, outbound);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            cut,
            accepted,
            task,
        }
    }

    fn cut(&self) {
        self.cut.send_modify(|v| *v += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The keepalive timers are armed once and re-armed from the last activity
/// (not per frame): neither an idle connection (keepalives only) nor a busy
/// one (frames all the time, so every timer fires "early") may be dropped
/// when the first deadline passes.
#[tokio::test]
async fn idle_and_busy_connections_outlive_the_keepalive_timeout() {
    let fsid = Uuid::new_v4();
    let cfg = fast_config();
    let (l, mut srv) = listener(fsid, cfg.clone()).await;
    let proxy = Proxy::start(l.local_addr()).await;
    let (ctx, _cli) = event_channel(&cfg);
    let c = Connection::connect(proxy.addr, name("osd.2"), fsid, cfg.clone(), ctx)
        .await
        .expect("connect");
    // Idle for three timeouts: only keepalives cross.
    tokio::time::sleep(cfg.keepalive_timeout * 3).await;
    // Busy for three timeouts: a message every 20 ms.
    let start = tokio::time::Instant::now();
    let mut sent = 0u32;
    while start.elapsed() < cfg.keepalive_timeout * 3 {
        c.send(Message::new(1, Bytes::from(sent.to_le_bytes().to_vec())))
            .await
            .expect("send");
        let m = next_message(&mut srv).await;
        assert_eq!(&m.msg.contiguous()[..], &sent.to_le_bytes());
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(c.is_connected());
    assert_eq!(
        proxy.accepted.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the connection was dropped and made again"
    );
}

#[tokio::test]
async fn broken_connection_replays_without_loss_or_duplicates() {
    let fsid = Uuid::new_v4();
    let (l, mut srv) = listener(fsid, fast_config()).await;
    let proxy = Proxy::start(l.local_addr()).await;
    let (ctx, mut cli) = event_channel(&fast_config());
    let c = Connection::connect(proxy.addr, name("osd.1"), fsid, fast_config(), ctx)
        .await
        .expect("connect");
    let total = 2000u32;
    let sender = {
        let h = c.handle();
        tokio::spawn(async move {
            for i in 0..total {
                h.send(Message::new(1, Bytes::from(i.to_le_bytes().to_vec())))
                    .await
                    .expect("send");
                if i.is_multiple_of(100) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    let mut seen = 0u32;
    let mut server_handle = None;
    while seen < total {
        let m = next_message(&mut srv).await;
        let v = u32::from_le_bytes(m.msg.contiguous()[..4].try_into().expect("4 bytes"));
        assert_eq!(v, seen, "messages arrive once and in order");
        seen += 1;
        if seen.is_multiple_of(500) {
            proxy.cut();
        }
        // Replies queued while the link is down are replayed too.
        if seen.is_multiple_of(250) {
            m.from
                .send(Message::new(2, Bytes::from(seen.to_le_bytes().to_vec())))
                .await
                .expect("reply");
        }
        server_handle = Some(m.from);
    }
    sender.await.expect("sender");
    for want in (250..=total).step_by(250) {
        let r = next_message(&mut cli).await;
        assert_eq!(
            u32::from_le_bytes(r.msg.contiguous()[..4].try_into().expect("4 bytes")),
            want
        );
    }
    assert!(!server_handle.expect("had messages").is_closed());
}

#[tokio::test]
async fn peer_restart_resets_session_and_replays_unacked() {
    let fsid = Uuid::new_v4();
    // Acks at once: "before" is known delivered before the peer goes.
    let cfg = MsgrConfig {
        ack_delay: Duration::ZERO,
        ..fast_config()
    };
    let (l, mut srv) = listener(fsid, cfg.clone()).await;
    let addr = l.local_addr();
    let (ctx, mut cli) = event_channel(&cfg);
    let c = Connection::connect(addr, name("osd.2"), fsid, cfg.clone(), ctx)
        .await
        .expect("connect");
    c.send(Message::new(1, &b"before"[..])).await.expect("send");
    assert_eq!(
        &next_message(&mut srv).await.msg.contiguous()[..],
        b"before"
    );
    drop(l);
    drop(srv);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Queued while the peer is down.
    c.send(Message::new(1, &b"during"[..])).await.expect("send");
    let (tx, mut srv2) = event_channel(&cfg);
    let _l2 = Listener::bind(addr, name("mon.a"), fsid, cfg.clone(), tx)
        .await
        .expect("rebind");
    let got = next_message(&mut srv2).await;
    assert_eq!(&got.msg.contiguous()[..], b"during");
    let reset = tokio::time::timeout(WAIT, cli.recv())
        .await
        .expect("event")
        .expect("open");
    assert!(matches!(reset, Event::Reset(_)), "{reset:?}");
    // The new session numbers replies from 1 again and the client takes them.
    got.from
        .send(Message::new(3, &b"after"[..]))
        .await
        .expect("reply");
    assert_eq!(&next_message(&mut cli).await.msg.contiguous()[..], b"after");
}

/// Replies carry the acks of the requests they answer, so a request is
/// acknowledged with its reply; a message nothing answers is acknowledged
/// by an ack frame after `ack_delay`, or at once when `ack_max_pending`
/// messages wait.
#[tokio::test]
async fn acks_ride_on_replies_or_wait_for_the_ack_delay() {
    let fsid = Uuid::new_v4();
    let cfg = MsgrConfig {
        ack_delay: Duration::from_millis(400),
        ack_max_pending: 5,
        ..fast_config()
    };
    let (l, mut srv) = listener(fsid, cfg.clone()).await;
    let (ctx, mut cli) = event_channel(&cfg);
    let c = Connection::connect(l.local_addr(), name("osd.1"), fsid, cfg.clone(), ctx)
        .await
        .expect("connect");
    let h = c.handle();
    let unacked_within = |h: &SessionHandle, want: usize, within: Duration| {
        let h = h.clone();
        async move {
            let start = tokio::time::Instant::now();
            while h.unacked_messages() != want {
                if start.elapsed() > within {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            true
        }
    };
    // A request answered at once: the reply carries the ack.
    let started = tokio::time::Instant::now();
    c.send(Message::new(1, &b"request"[..]))
        .await
        .expect("send");
    let req = next_message(&mut srv).await;
    req.from
        .send(Message::new(2, &b"reply"[..]))
        .await
        .expect("reply");
    next_message(&mut cli).await;
    assert!(unacked_within(&h, 0, WAIT).await);
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "acked with the reply, not after the delay"
    );
    // A one-way message: acked only after the delay.
    let started = tokio::time::Instant::now();
    c.send(Message::new(1, &b"one way"[..]))
        .await
        .expect("send");
    next_message(&mut srv).await;
    assert!(
        !unacked_within(&h, 0, Duration::from_millis(200)).await,
        "not yet"
    );
    assert!(unacked_within(&h, 0, WAIT).await);
    assert!(started.elapsed() >= Duration::from_millis(400));
    // Enough one-way messages: acked without waiting.
    let started = tokio::time::Instant::now();
    for _ in 0..5 {
        c.send(Message::new(1, &b"burst"[..])).await.expect("send");
    }
    for _ in 0..5 {
        next_message(&mut srv).await;
    }
    assert!(unacked_within(&h, 0, WAIT).await);
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "the bound forces the ack"
    );
}

#[tokio::test]
async fn wrong_fsid_is_refused() {
    let (l, _srv) = listener(Uuid::new_v4(), fast_config()).await;
    let (ctx, _cli) = event_channel(&fast_config());
    let err = Connection::connect(
        l.local_addr(),
        name("osd.0"),
        Uuid::new_v4(),
        fast_config(),
        ctx,
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("belongs to cluster"), "{err}");
    // A client that does not know the fsid (nil) is accepted.
    let (ctx, _cli) = event_channel(&fast_config());
    Connection::connect(
        l.local_addr(),
        name("client.admin"),
        Uuid::nil(),
        fast_config(),
        ctx,
    )
    .await
    .expect("nil fsid accepted");
}

#[tokio::test]
async fn unreachable_peer_gives_bounded_error() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = free.local_addr().expect("addr");
    drop(free);
    let cfg = MsgrConfig {
        connect_timeout: Duration::from_millis(300),
        handshake_timeout: Duration::from_millis(300),
        ..fast_config()
    };
    let (ctx, _cli) = event_channel(&cfg);
    let t0 = std::time::Instant::now();
    let err = Connection::connect(addr, name("client.admin"), Uuid::nil(), cfg, ctx)
        .await
        .err()
        .expect("unreachable");
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(err.to_string().contains("could not reach"), "{err}");
}

/// Raw-socket peers sending garbage: each gets its connection closed, no
/// message reaches the application, and the listener keeps serving.
#[tokio::test]
async fn malformed_frames_close_only_that_connection() {
    let fsid = Uuid::new_v4();
    let cfg = MsgrConfig {
        max_frame_bytes: 1024,
        ..fast_config()
    };
    let (l, mut srv) = listener(fsid, cfg.clone()).await;
    let hello = plain_hello(kalmar_msgr::handshake::PROTOCOL_VERSION, "osd.9", fsid, 77);
    let hello_bytes = kalmar_common::Encode::to_bytes(&hello);
    let frame = |kind, seq, payload: &[u8]| {
        let mut v = FrameHeader::for_payload(kind, 1, seq, 0, payload)
            .encode()
            .to_vec();
        v.extend_from_slice(payload);
        v
    };
    // A well-formed header announcing more than the listener takes.
    let mut big_header = FrameHeader::for_payload(FrameKind::Message, 1, 1, 0, &[0; 10]);
    big_header.payload_len = 4096;
    let oversized = big_header.encode().to_vec();
    let mut bad_header_crc = frame(FrameKind::Message, 1, &[0; 10]);
    bad_header_crc[24] ^= 1;
    let mut bad_crc = frame(FrameKind::Message, 1, b"abc");
    bad_crc[36] ^= 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"GET / HTTP/1.1\r\n\r\n".repeat(3)),
        (
            "oversized",
            [frame(FrameKind::Hello, 0, &hello_bytes), oversized].concat(),
        ),
        (
            "header crc",
            [frame(FrameKind::Hello, 0, &hello_bytes), bad_header_crc].concat(),
        ),
        (
            "payload crc",
            [frame(FrameKind::Hello, 0, &hello_bytes), bad_crc].concat(),
        ),
        (
            "sequence gap",
            [
                frame(FrameKind::Hello, 0, &hello_bytes),
                frame(FrameKind::Message, 5, b"x"),
            ]
            .concat(),
        ),
        (
            "hello twice",
            [
                frame(FrameKind::Hello, 0, &hello_bytes),
                frame(FrameKind::Hello, 0, &hello_bytes),
            ]
            .concat(),
        ),
    ];
    for (what, bytes) in cases {
        let mut s = TcpStream::connect(l.local_addr()).await.expect("connect");
        s.write_all(&bytes).await.expect("write");
        let mut sink = Vec::new();
        let r = tokio::time::timeout(WAIT, s.read_to_end(&mut sink)).await;
        assert!(r.is_ok(), "{what}: connection was not closed");
        if what == "oversized" {
            // A replay would be refused again: the session ends, and the
            // close frame tells the sender why.
            let text = String::from_utf8_lossy(&sink);
            assert!(
                text.contains("4096 bytes, over this side's limit of 1024 bytes"),
                "close frame without the reason: {text:?}"
            );
        }
    }
    while let Ok(ev) = srv.try_recv() {
        assert!(
            !matches!(ev, Event::Message(_)),
            "a message reached the dispatcher: {ev:?}"
        );
    }
    let (ctx, _cli) = event_channel(&cfg);
    let c = Connection::connect(l.local_addr(), name("osd.1"), fsid, cfg, ctx)
        .await
        .expect("still serving");
    c.send(Message::new(1, &b"ok"[..])).await.expect("send");
    assert_eq!(&next_message(&mut srv).await.msg.contiguous()[..], b"ok");
}

#[tokio::test]
async fn silent_peer_times_out_and_session_expires() {
    let fsid = Uuid::new_v4();
    let cfg = MsgrConfig {
        session_idle_timeout: Duration::from_millis(300),
        ..fast_config()
    };
    let (l, mut srv) = listener(fsid, cfg.clone()).await;
    let hello = plain_hello(
        kalmar_msgr::handshake::PROTOCOL_VERSION,
        "client.5",
        fsid,
        99,
    );
    let payload = kalmar_common::Encode::to_bytes(&hello);
    let mut raw = FrameHeader::for_payload(FrameKind::Hello, 0, 0, 0, &payload)
        .encode()
        .to_vec();
    raw.extend_from_slice(&payload);
    let mut s = TcpStream::connect(l.local_addr()).await.expect("connect");
    s.write_all(&raw).await.expect("hello");
    // We never answer keepalives: the listener drops us after the timeout,
    // then forgets the session after the idle timeout.
    let mut sink = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut sink))
        .await
        .expect("closed by peer")
        .ok();
    match tokio::time::timeout(WAIT, srv.recv())
        .await
        .expect("event")
        .expect("open")
    {
        Event::Closed(h, reason) => {
            assert_eq!(h.id(), 99);
            assert!(reason.contains("idle"), "{reason}");
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(l.sessions().is_empty());
}

#[tokio::test]
async fn send_blocks_when_queue_full_until_acked() {
    let fsid = Uuid::new_v4();
    let cfg = MsgrConfig {
        send_queue_max_messages: 4,
        ..fast_config()
    };
    // Nobody listens yet: nothing can be acknowledged.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = free.local_addr().expect("addr");
    drop(free);
    let (ctx, _cli) = event_channel(&cfg);
    let c = Connection::start(addr, name("osd.4"), fsid, cfg.clone(), ctx);
    for i in 0..4u8 {
        c.try_send(Message::new(1, vec![i])).expect("room");
    }
    assert!(c.try_send(Message::new(1, vec![4])).is_err());
    let h = c.handle();
    let blocked = tokio::spawn(async move { h.send(Message::new(1, vec![4])).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !blocked.is_finished(),
        "send must wait while the queue is full"
    );
    let (tx, mut srv) = event_channel(&cfg);
    let _l = Listener::bind(addr, name("mon.a"), fsid, cfg, tx)
        .await
        .expect("bind");
    for i in 0..5u8 {
        assert_eq!(&next_message(&mut srv).await.msg.contiguous()[..], &[i]);
    }
    tokio::time::timeout(WAIT, blocked)
        .await
        .expect("unblocked")
        .expect("join")
        .expect("sent");
}

/// Each side states its frame limit in the handshake: a message the peer
/// could not take fails at `send`, on either side, instead of being put on
/// the wire and refused there (over and over, as replays).
#[tokio::test]
async fn frame_limits_are_exchanged_and_bound_sends() {
    let fsid = Uuid::new_v4();
    let small = MsgrConfig {
        max_frame_bytes: 1024,
        ..fast_config()
    };
    // A small listener, a default connector.
    let (l, mut srv) = listener(fsid, small.clone()).await;
    let (ctx, _cli) = event_channel(&fast_config());
    let c = Connection::connect(l.local_addr(), name("osd.1"), fsid, fast_config(), ctx)
        .await
        .expect("connect");
    assert_eq!(c.handle().max_message_bytes(), 1024);
    let err = c
        .try_send(Message::new(1, vec![0; 2000]))
        .expect_err("over the listener's limit");
    assert_eq!(
        err,
        kalmar_msgr::SendError::TooLarge {
            len: 2000,
            max: 1024
        }
    );
    c.send(Message::new(1, vec![1; 1024]))
        .await
        .expect("at the limit");
    assert_eq!(next_message(&mut srv).await.msg.len(), 1024);

    // A default listener, a small connector: the listener may not reply
    // with more than the connector takes.
    let (l2, mut srv2) = listener(fsid, fast_config()).await;
    let (ctx2, mut cli2) = event_channel(&small);
    let c2 = Connection::connect(l2.local_addr(), name("client.7"), fsid, small, ctx2)
        .await
        .expect("connect");
    c2.send(Message::new(1, &b"req"[..])).await.expect("send");
    let m = next_message(&mut srv2).await;
    assert_eq!(m.from.max_message_bytes(), 1024);
    let err = m
        .from
        .send(Message::new(2, vec![0; 1025]))
        .await
        .expect_err("over the connector's limit");
    assert!(matches!(
        err,
        kalmar_msgr::SendError::TooLarge {
            len: 1025,
            max: 1024
        }
    ));
    m.from
        .send(Message::new(2, &b"small reply"[..]))
        .await
        .expect("fits");
    assert_eq!(
        &next_message(&mut cli2).await.msg.contiguous()[..],
        b"small reply"
    );
    assert!(!c2.handle().is_closed(), "the session goes on");
}

/// The first frame of a connection, as a raw peer writes it.
fn raw_frame(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let mut v = FrameHeader::for_payload(kind, 0, 0, 0, payload)
        .encode()
        .to_vec();
    v.extend_from_slice(payload);
    v
}

/// What the listener answers `bytes` with before it closes.
async fn answer_to(l: &Listener, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(l.local_addr()).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut got))
        .await
        .expect("closed in time")
        .ok();
    String::from_utf8_lossy(&got).into_owned()
}

/// A peer of another release: a hello announcing an unknown protocol
/// version, or laid out in a newer incompatible encoding, is refused with
/// a reason naming both versions (not misparsed, not dropped silently),
/// and a connector whose acceptor answers with another protocol version
/// gives up at once with both named.
#[tokio::test]
async fn peers_of_unsupported_versions_are_refused_naming_both() {
    use kalmar_common::Encode;
    use kalmar_msgr::handshake::{HelloReply, PROTOCOL_VERSION};
    let fsid = Uuid::new_v4();
    let (l, mut srv) = listener(fsid, fast_config()).await;
    let future = PROTOCOL_VERSION + 1;
    let hello = plain_hello(future, "osd.9", fsid, 5);
    let text = answer_to(&l, &raw_frame(FrameKind::Hello, &hello.to_bytes())).await;
    assert!(
        text.contains(&format!(
            "protocol version {future} is not supported (this peer speaks {PROTOCOL_VERSION}, Kalmar {}",
            kalmar_common::release::VERSION
        )),
        "{text:?}"
    );

    // A hello whose encoding needs a newer reader (compat 200).
    let mut newer = Vec::new();
    kalmar_common::encoding::encode_versioned(&mut newer, 200, 200, |b| {
        b.extend_from_slice(&[0xAB; 40]);
    });
    let text = answer_to(&l, &raw_frame(FrameKind::Hello, &newer)).await;
    assert!(
        text.contains("hello has compat version 200, this build reads up to version"),
        "{text:?}"
    );
    assert!(text.contains("newer, incompatible release"), "{text:?}");
    while let Ok(ev) = srv.try_recv() {
        assert!(!matches!(ev, Event::Message(_)), "{ev:?}");
    }

    // The other direction: an acceptor of another protocol version.
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = fake.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut s, _) = fake.accept().await.expect("accept");
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await;
        let reply = HelloReply {
            protocol_version: future,
            entity: name("osd.7"),
            fsid,
            in_seq: 0,
            reset: true,
            features: 0,
            max_frame_bytes: 0,
            auth: None,
            mode: 0,
            mode_mac: None,
        };
        let _ = s
            .write_all(&raw_frame(FrameKind::HelloReply, &reply.to_bytes()))
            .await;
        let _ = s.read(&mut buf).await;
    });
    let (ctx, _cli) = event_channel(&fast_config());
    let t0 = std::time::Instant::now();
    let err = Connection::connect(addr, name("osd.1"), fsid, fast_config(), ctx)
        .await
        .err()
        .expect("refused");
    let err = err.to_string();
    assert!(
        err.contains(&format!(
            "osd.7 ({addr}) speaks protocol version {future}, this side speaks {PROTOCOL_VERSION}"
        )),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "retried instead");
    server.abort();
}
