//! The connection modes after authentication (`ms_*_mode`: crc, signed,
//! secure) over loopback sockets: round trips of multi-chunk and large
//! messages in both protected modes, the negotiation (the connector's
//! order wins, a mismatch is a clear refusal), and a man in the middle
//! (a proxy between the two) who rewrites the offer, alters a frame or
//! replays one, or only watches (in secure mode no frame header is
//! readable after the handshake).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kalmar_auth::{AuthMode, ClientAuth, CryptoKey, MemKeySource, ServerAuth, Service};
use kalmar_common::encoding::{Decode, Encode};
use kalmar_msgr::auth::MsgrAuth;
use kalmar_msgr::frame::{FrameHeader, FrameKind, HEADER_BYTES};
use kalmar_msgr::handshake::Hello;
use kalmar_msgr::onwire::{WireMode, WireModes, SEALED_HEADER_BYTES, TAG_BYTES};
use kalmar_msgr::{
    event_channel, ConnectError, Connection, EntityName, Event, Listener, Message, MsgrConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

fn name(s: &str) -> EntityName {
    s.parse().expect("valid entity")
}

fn base() -> MsgrConfig {
    MsgrConfig {
        reconnect_backoff_min: Duration::from_millis(10),
        reconnect_backoff_max: Duration::from_millis(50),
        connect_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(2),
        // Small enough that a 200 KiB message takes the aligned path.
        recv_aligned_min_bytes: 64 << 10,
        ..MsgrConfig::default()
    }
}

/// A mon-like acceptor requiring cephx, allowing `modes`.
struct Server {
    keys: Arc<MemKeySource>,
    listener: Listener,
    events: mpsc::Receiver<Event>,
    fsid: Uuid,
}

async fn server(auth: AuthMode, modes: &[WireMode]) -> Server {
    let keys = Arc::new(MemKeySource::new());
    let far = u64::MAX / 2;
    keys.rotate(Service::Osd, far).expect("rng");
    let cfg = MsgrConfig {
        auth: MsgrAuth {
            server: Some(ServerAuth {
                mode: auth,
                service: Service::Mon,
                keys: keys.clone(),
            }),
            modes: WireModes::all(modes),
            ..MsgrAuth::default()
        },
        ..base()
    };
    let fsid = Uuid::new_v4();
    let (tx, events) = event_channel(&cfg);
    let listener = Listener::bind(
        "127.0.0.1:0".parse().expect("addr"),
        name("mon.a"),
        fsid,
        cfg,
        tx,
    )
    .await
    .expect("bind");
    Server {
        keys,
        listener,
        events,
        fsid,
    }
}

impl Server {
    /// A keyed client of the server allowing `modes`.
    fn client(&self, who: &str, modes: &[WireMode]) -> MsgrAuth {
        let key = CryptoKey::generate().expect("rng");
        self.keys.add_entity(
            who,
            key.clone(),
            [("mon".to_string(), "allow *".to_string())].into(),
        );
        MsgrAuth {
            client: Some(Arc::new(ClientAuth::new(who, Some(key)))),
            require_server_proof: true,
            modes: WireModes::all(modes),
            ..MsgrAuth::default()
        }
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        who: &str,
        auth: MsgrAuth,
    ) -> (Result<Connection, ConnectError>, mpsc::Receiver<Event>) {
        let cfg = MsgrConfig { auth, ..base() };
        let (tx, rx) = event_channel(&cfg);
        (
            Connection::connect(addr, name(who), self.fsid, cfg, tx).await,
            rx,
        )
    }
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

fn data(n: usize, seed: u8) -> Bytes {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(29) ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

fn refused_because(r: Result<Connection, ConnectError>, want: &str) {
    match r {
        Err(ConnectError::Refused { reason, .. }) => {
            assert!(
                reason.contains(want),
                "refused for '{reason}', expected '{want}'"
            )
        }
        Err(e) => panic!("expected a refusal containing '{want}', got {e}"),
        Ok(_) => panic!("expected a refusal containing '{want}', got a session"),
    }
}

#[tokio::test]
async fn signed_and_secure_carry_multi_chunk_and_large_messages_both_ways() {
    for mode in [WireMode::Signed, WireMode::Secure] {
        let mut s = server(AuthMode::Cephx, &[mode]).await;
        let auth = s.client("client.a", &[mode]);
        let (c, mut crx) = s.connect(s.listener.local_addr(), "client.a", auth).await;
        let c = c.expect("session");
        assert_eq!(c.handle().wire_mode(), Some(mode));
        let mut sent = Vec::new();
        for i in 0..20u8 {
            let m = Message::from_chunks(7, [data(5, i), data(300 + i as usize, i), data(4096, i)]);
            sent.push(m.to_vec());
            c.send(m).await.expect("send");
        }
        // A large head-prefixed one: received into aligned memory.
        let head = {
            let mut h = 6u32.to_le_bytes().to_vec();
            h.extend_from_slice(b"header");
            Bytes::from(h)
        };
        let big = Message::head_prefixed(8, head, [data(200 << 10, 1), data(4096, 2)]);
        sent.push(big.to_vec());
        c.send(big).await.expect("send");
        for (i, want) in sent.iter().enumerate() {
            let got = next_message(&mut s.events).await;
            assert_eq!(&got.msg.to_vec(), want, "{mode}: message {i}");
            assert_eq!(got.from.wire_mode(), Some(mode));
            if i == sent.len() - 1 {
                let p = got.msg.contiguous();
                assert_eq!(
                    (p.as_ptr() as usize + 10) % 4096,
                    0,
                    "{mode}: the data after the head lands on a block"
                );
            }
            // Replies go back through the protected path too.
            got.from
                .send(Message::from_chunks(9, [data(3, i as u8), data(9000, 3)]))
                .await
                .expect("reply");
        }
        for i in 0..sent.len() {
            let got = next_message(&mut crx).await;
            assert_eq!(got.msg.to_vec(), [data(3, i as u8), data(9000, 3)].concat());
        }
        c.close().await;
    }
}

#[tokio::test]
async fn the_connectors_order_wins_and_signed_is_the_default() {
    let s = server(
        AuthMode::Cephx,
        &[WireMode::Crc, WireMode::Signed, WireMode::Secure],
    )
    .await;
    let addr = s.listener.local_addr();
    for (offer, want) in [
        (vec![WireMode::Secure, WireMode::Crc], WireMode::Secure),
        (vec![WireMode::Signed, WireMode::Secure], WireMode::Signed),
        (vec![WireMode::Crc, WireMode::Secure], WireMode::Crc),
    ] {
        let auth = s.client("client.b", &offer);
        let (c, _rx) = s.connect(addr, "client.b", auth).await;
        assert_eq!(c.expect("session").handle().wire_mode(), Some(want));
    }
    // With the defaults on both sides, an authenticated session is signed.
    let s = server(AuthMode::Cephx, &kalmar_msgr::onwire::DEFAULT_MODES).await;
    let mut auth = s.client("client.c", &[]);
    auth.modes = WireModes::default();
    let (c, _rx) = s.connect(s.listener.local_addr(), "client.c", auth).await;
    assert_eq!(
        c.expect("session").handle().wire_mode(),
        Some(WireMode::Signed)
    );
    // Without authentication there is no key: the defaults fall to crc.
    let open = server(AuthMode::None, &kalmar_msgr::onwire::DEFAULT_MODES).await;
    let (c, _rx) = open
        .connect(open.listener.local_addr(), "client.c", MsgrAuth::default())
        .await;
    assert_eq!(
        c.expect("session").handle().wire_mode(),
        Some(WireMode::Crc)
    );
}

#[tokio::test]
async fn a_mode_mismatch_is_a_clear_refusal() {
    let s = server(AuthMode::Cephx, &[WireMode::Secure]).await;
    let auth = s.client("client.d", &[WireMode::Crc]);
    let (c, _rx) = s.connect(s.listener.local_addr(), "client.d", auth).await;
    refused_because(c, "no connection mode in common");
    // The client requires secure from an acceptor that does not
    // authenticate: there is no key for it.
    let open = server(AuthMode::None, &[WireMode::Crc, WireMode::Secure]).await;
    let auth = MsgrAuth {
        modes: WireModes::all(&[WireMode::Secure]),
        ..MsgrAuth::default()
    };
    let (c, _rx) = open
        .connect(open.listener.local_addr(), "client.e", auth)
        .await;
    refused_because(c, "without authentication");
}

/// What the proxy does with each frame from the connector, by connection
/// number and frame number: the frames to pass on instead.
type Tamper = Arc<dyn Fn(usize, usize, FrameKind, Vec<u8>) -> Vec<Vec<u8>> + Send + Sync>;

/// How the proxy finds the connector's frames after the handshake.
#[derive(Clone, Copy)]
enum After {
    /// Headers in clear (crc, signed): each payload is followed by
    /// `trailer` tag bytes.
    Clear { trailer: usize },
    /// Secure: no header is readable, so the test states how long the
    /// first frame after the handshake is (it knows what it sends); the
    /// proxy cuts that one out and passes the rest on as it comes.
    Sealed { first: usize },
}

/// A man in the middle: forwards acceptor-to-connector bytes as they are
/// and connector-to-acceptor frames through `tamper`, the handshake's
/// (in clear) and after it as `after` says.
/// Returns its address and the count of connections it took.
async fn proxy(
    upstream: SocketAddr,
    after: After,
    tamper: Tamper,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((down, _)) = l.accept().await {
            let n = conns.fetch_add(1, Ordering::SeqCst);
            let tamper = tamper.clone();
            tokio::spawn(async move {
                let Ok(up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut dr, mut dw) = down.into_split();
                let (mut ur, mut uw) = up.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut ur, &mut dw).await;
                    let _ = dw.shutdown().await;
                });
                let mut i = 0;
                let mut handshake_done = false;
                loop {
                    if let (true, After::Sealed { first }) = (handshake_done, after) {
                        let mut frame = vec![0u8; first];
                        if dr.read_exact(&mut frame).await.is_err() {
                            break;
                        }
                        for f in tamper(n, i, FrameKind::Message, frame) {
                            if uw.write_all(&f).await.is_err() {
                                return;
                            }
                        }
                        let _ = tokio::io::copy(&mut dr, &mut uw).await;
                        break;
                    }
                    let mut h = [0u8; HEADER_BYTES];
                    if dr.read_exact(&mut h).await.is_err() {
                        break;
                    }
                    let hdr = FrameHeader::decode(&h, usize::MAX).expect("a frame");
                    let handshake = matches!(hdr.kind, FrameKind::Hello | FrameKind::AuthProof);
                    let trailer = match after {
                        After::Clear { trailer } if !handshake => trailer,
                        _ => 0,
                    };
                    let len = hdr.payload_len as usize + trailer;
                    let mut frame = h.to_vec();
                    frame.resize(HEADER_BYTES + len, 0);
                    if dr.read_exact(&mut frame[HEADER_BYTES..]).await.is_err() {
                        break;
                    }
                    for f in tamper(n, i, hdr.kind, frame) {
                        if uw.write_all(&f).await.is_err() {
                            return;
                        }
                    }
                    // The connector's last handshake frame: protected ones follow.
                    handshake_done |= hdr.kind == FrameKind::AuthProof;
                    i += 1;
                }
                let _ = uw.shutdown().await;
            });
        }
    });
    (addr, counted)
}

/// Both directions' bytes as a proxy saw them: (connector to acceptor,
/// acceptor to connector).
type Recorded = Arc<Mutex<(Vec<u8>, Vec<u8>)>>;

/// A proxy that only watches: passes every byte on and records it.
async fn recording_proxy(upstream: SocketAddr) -> (SocketAddr, Recorded) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let seen: Recorded = Arc::default();
    let rec = seen.clone();
    tokio::spawn(async move {
        while let Ok((down, _)) = l.accept().await {
            let Ok(up) = TcpStream::connect(upstream).await else {
                return;
            };
            let (dr, dw) = down.into_split();
            let (ur, uw) = up.into_split();
            tokio::spawn(pump(dr, uw, rec.clone(), true));
            tokio::spawn(pump(ur, dw, rec.clone(), false));
        }
    });
    (addr, seen)
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    rec: Recorded,
    upward: bool,
) {
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        {
            let mut r = rec.lock().expect("lock");
            let side = if upward { &mut r.0 } else { &mut r.1 };
            side.extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// How often the frame magic occurs in `bytes`: once per header in clear.
fn magics(bytes: &[u8]) -> usize {
    bytes.windows(4).filter(|w| *w == b"KLMR").count()
}

#[tokio::test]
async fn secure_mode_shows_no_frame_header_on_the_wire() {
    for mode in [WireMode::Signed, WireMode::Secure] {
        let mut s = server(AuthMode::Cephx, &[mode]).await;
        let (addr, seen) = recording_proxy(s.listener.local_addr()).await;
        let auth = s.client("client.w", &[mode]);
        let (c, mut crx) = s.connect(addr, "client.w", auth).await;
        let c = c.expect("session");
        const N: u8 = 20;
        for i in 0..N {
            c.send(Message::from_chunks(3, [data(10, i), data(2000, i)]))
                .await
                .expect("send");
        }
        for _ in 0..N {
            let got = next_message(&mut s.events).await;
            got.from
                .send(Message::new(4, data(500, 1)))
                .await
                .expect("reply");
        }
        for _ in 0..N {
            next_message(&mut crx).await;
        }
        let (up, down) = seen.lock().expect("lock").clone();
        // The first message's header as it would read in clear.
        let plain = FrameHeader {
            kind: FrameKind::Message,
            flags: 0,
            msg_type: 3,
            seq: 1,
            ack: 0,
            payload_len: 2010,
            payload_crc: 0,
        }
        .encode();
        let in_clear = up.windows(HEADER_BYTES).any(|w| w == plain);
        if mode == WireMode::Secure {
            // Only the handshake's headers: hello and auth proof up,
            // auth challenge and hello reply down.
            assert_eq!(magics(&up), 2, "secure: headers in clear going up");
            assert_eq!(magics(&down), 2, "secure: headers in clear coming down");
            assert!(
                !in_clear,
                "secure: the first message's header is not on the wire"
            );
        } else {
            assert!(magics(&up) >= 2 + N as usize, "signed: headers in clear");
            assert!(magics(&down) >= 2 + N as usize, "signed: headers in clear");
            assert!(in_clear, "signed: the header travels as it is");
        }
        c.close().await;
    }
}

#[tokio::test]
async fn a_rewritten_offer_is_caught() {
    let s = server(AuthMode::Cephx, &[WireMode::Crc, WireMode::Secure]).await;
    // The connector wants secure first; the proxy strips the offer down
    // to crc, which the acceptor allows.
    let (addr, _) = proxy(
        s.listener.local_addr(),
        After::Clear { trailer: 0 },
        Arc::new(|_, _, kind, frame| {
            if kind != FrameKind::Hello {
                return vec![frame];
            }
            let mut hello = Hello::from_bytes(&frame[HEADER_BYTES..]).expect("hello");
            hello.modes = vec![WireMode::Crc.id()];
            let payload = hello.to_bytes();
            let mut out = FrameHeader::for_payload(FrameKind::Hello, 0, 0, 0, &payload)
                .encode()
                .to_vec();
            out.extend_from_slice(&payload);
            vec![out]
        }),
    )
    .await;
    let auth = s.client("client.f", &[WireMode::Secure, WireMode::Crc]);
    let (c, _rx) = s.connect(addr, "client.f", auth).await;
    refused_because(c, "tampered");
}

/// A session through a proxy that does `what` to the first message frame
/// of the first connection: the connection fails its tag and closes, the
/// connector reconnects (through the proxy, untouched now) and replays,
/// and every message arrives once and intact.
async fn first_message_frame(mode: WireMode, what: fn(Vec<u8>) -> Vec<Vec<u8>>) {
    let mut s = server(AuthMode::Cephx, &[mode]).await;
    let after = match mode {
        // The messages below are 110 bytes.
        WireMode::Secure => After::Sealed {
            first: SEALED_HEADER_BYTES + 110 + TAG_BYTES,
        },
        _ => After::Clear { trailer: TAG_BYTES },
    };
    let (addr, conns) = proxy(
        s.listener.local_addr(),
        after,
        Arc::new(move |conn, _, kind, frame| {
            if conn == 0 && kind == FrameKind::Message {
                what(frame)
            } else {
                vec![frame]
            }
        }),
    )
    .await;
    let auth = s.client("client.g", &[mode]);
    let (c, _rx) = s.connect(addr, "client.g", auth).await;
    let c = c.expect("session");
    for i in 0..5u8 {
        c.send(Message::from_chunks(3, [data(10, i), data(100, i)]))
            .await
            .expect("send");
    }
    for i in 0..5u8 {
        let got = next_message(&mut s.events).await;
        assert_eq!(
            got.msg.to_vec(),
            [data(10, i), data(100, i)].concat(),
            "{mode}: message {i} once, intact, in order"
        );
    }
    let more = tokio::time::timeout(Duration::from_millis(300), s.events.recv()).await;
    assert!(
        !matches!(more, Ok(Some(Event::Message(_)))),
        "{mode}: no duplicate"
    );
    assert!(
        conns.load(Ordering::SeqCst) >= 2,
        "{mode}: the tampered connection was closed and the session reconnected"
    );
}

#[tokio::test]
async fn an_altered_frame_is_refused() {
    for mode in [WireMode::Signed, WireMode::Secure] {
        // A payload byte.
        first_message_frame(mode, |mut f| {
            let at = f.len() - TAG_BYTES - 3;
            f[at] ^= 1;
            vec![f]
        })
        .await;
        // A tag byte.
        first_message_frame(mode, |mut f| {
            let last = f.len() - 1;
            f[last] ^= 0x40;
            vec![f]
        })
        .await;
        if mode == WireMode::Secure {
            // A byte of the sealed header (where msg_type is, encrypted),
            // and one of the header's tag: the header does not open.
            first_message_frame(mode, |mut f| {
                f[6] ^= 1;
                vec![f]
            })
            .await;
            first_message_frame(mode, |mut f| {
                f[SEALED_HEADER_BYTES - 1] ^= 0x20;
                vec![f]
            })
            .await;
        } else {
            // A header field, its crc made right again (msg_type).
            first_message_frame(mode, |mut f| {
                let mut h = [0u8; HEADER_BYTES];
                h.copy_from_slice(&f[..HEADER_BYTES]);
                let mut hdr = FrameHeader::decode(&h, usize::MAX).expect("header");
                hdr.msg_type ^= 1;
                f[..HEADER_BYTES].copy_from_slice(&hdr.encode());
                vec![f]
            })
            .await;
        }
    }
}

#[tokio::test]
async fn a_replayed_or_dropped_frame_is_refused() {
    for mode in [WireMode::Signed, WireMode::Secure] {
        // Sent twice: the second copy is under the wrong counter (the
        // session would have dropped it as a duplicate; the tag stops it
        // first).
        first_message_frame(mode, |f| vec![f.clone(), f]).await;
        // Dropped: the next frame arrives under the wrong counter.
        first_message_frame(mode, |_| vec![]).await;
    }
}
