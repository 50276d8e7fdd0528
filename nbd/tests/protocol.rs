//! The server over real sockets with a hand-rolled client: malformed
//! handshakes and requests get NBD errors (or a closed connection where
//! the spec demands one) while other clients keep being served; replies
//! come out of order; many requests are in flight at once.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use kalmar_nbd::proto::consts::*;
use kalmar_nbd::{BackendError, BlockBackend, MemBackend, ServerSettings};

const SIZE: u64 = 16 << 20;

fn settings() -> ServerSettings {
    ServerSettings {
        max_payload_bytes: 1 << 20,
        max_inflight_bytes: 8 << 20,
        handshake_timeout_ms: 500,
        ..ServerSettings::default()
    }
}

fn mem_server() -> TestServer {
    TestServer::start(Arc::new(MemBackend::new(SIZE).expect("mem")), settings())
}

/// A good client still works: write, read back.
fn assert_serving(server: &TestServer) {
    let mut c = Client::open(server.addr, true);
    assert_eq!(c.write(1, 4096, b"still here").error, 0);
    assert_eq!(c.read(2, 4096, 10).data, b"still here");
}

#[test]
fn handshake_negotiates_export_and_flags() {
    let server = mem_server();
    let c = Client::open(server.addr, false);
    assert_eq!(c.size, SIZE);
    for f in [
        FLAG_HAS_FLAGS,
        FLAG_SEND_FLUSH,
        FLAG_SEND_FUA,
        FLAG_SEND_TRIM,
        FLAG_SEND_WRITE_ZEROES,
        FLAG_CAN_MULTI_CONN,
    ] {
        assert_ne!(c.flags & f, 0, "flag {f:#x} missing");
    }
    assert_eq!(c.flags & FLAG_SEND_DF, 0, "DF only with structured replies");
    assert_ne!(Client::open(server.addr, true).flags & FLAG_SEND_DF, 0);

    // LIST, INFO, EXPORT_NAME with the 124 zero bytes of old clients.
    let mut s = connect(server.addr);
    greet(&mut s, FLAG_C_FIXED_NEWSTYLE);
    send_option(&mut s, OPT_LIST, &[]);
    let (_, ty, data) = read_option_reply(&mut s);
    assert_eq!((ty, &data[4..]), (REP_SERVER, &b"kalmar"[..]));
    assert_eq!(read_option_reply(&mut s).1, REP_ACK);
    send_option(&mut s, OPT_INFO, &go_data(b"kalmar", &[INFO_NAME]));
    let mut types = Vec::new();
    loop {
        let (_, ty, _) = read_option_reply(&mut s);
        types.push(ty);
        if ty == REP_ACK {
            break;
        }
    }
    assert_eq!(types, vec![REP_INFO, REP_INFO, REP_INFO, REP_ACK]);
    send_option(&mut s, OPT_EXPORT_NAME, b"kalmar");
    let r = read_exact(&mut s, 8 + 2 + 124);
    assert_eq!(u64::from_be_bytes(r[0..8].try_into().expect("8")), SIZE);
    assert!(r[10..].iter().all(|&b| b == 0));
}

#[test]
fn malformed_handshakes_are_refused_and_others_still_served() {
    let server = mem_server();
    // Unknown client flags: the server must close.
    let mut s = connect(server.addr);
    greet(&mut s, 0x80);
    assert!(closed(&mut s));
    // Bad option magic.
    let mut s = connect(server.addr);
    greet(&mut s, FLAG_C_FIXED_NEWSTYLE);
    s.write_all(&[0xde; 16]).expect("garbage");
    assert!(closed(&mut s));
    // Unknown option, malformed GO, unknown export, oversized option: errors, then a good GO.
    let mut s = connect(server.addr);
    greet(&mut s, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
    send_option(&mut s, 4242, b"xyz");
    assert_eq!(read_option_reply(&mut s).1, REP_ERR_UNSUP);
    send_option(&mut s, OPT_GO, &[0, 0, 0, 9, b'a']);
    assert_eq!(read_option_reply(&mut s).1, REP_ERR_INVALID);
    send_option(&mut s, OPT_GO, &go_data(b"nope", &[]));
    let (_, ty, msg) = read_option_reply(&mut s);
    assert_eq!(ty, REP_ERR_UNKNOWN);
    assert!(String::from_utf8_lossy(&msg).contains("nope"));
    send_option(&mut s, OPT_INFO, &vec![0u8; 100_000]);
    assert_eq!(read_option_reply(&mut s).1, REP_ERR_TOO_BIG);
    send_option(&mut s, OPT_STARTTLS, &[]);
    assert_eq!(read_option_reply(&mut s).1, REP_ERR_UNSUP);
    let mut c = Client::go(s, false);
    assert_eq!(c.write(1, 0, b"ok").error, 0);
    // Unknown export by EXPORT_NAME: closed without a reply.
    let mut s = connect(server.addr);
    greet(&mut s, FLAG_C_FIXED_NEWSTYLE);
    send_option(&mut s, OPT_EXPORT_NAME, b"missing");
    assert!(closed(&mut s));
    // ABORT gets an ACK, then the server closes.
    let mut s = connect(server.addr);
    greet(&mut s, FLAG_C_FIXED_NEWSTYLE);
    send_option(&mut s, OPT_ABORT, &[]);
    assert_eq!(read_option_reply(&mut s).1, REP_ACK);
    assert!(closed(&mut s));
    // A silent client is dropped after the handshake timeout.
    let mut s = connect(server.addr);
    let t0 = Instant::now();
    let _ = read_exact(&mut s, 18);
    assert!(closed(&mut s));
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_serving(&server);
}

#[test]
fn bad_requests_get_nbd_errors_and_the_stream_stays_in_sync() {
    let server = mem_server();
    for structured in [false, true] {
        let mut c = Client::open(server.addr, structured);
        // Unknown command, unknown flag, DF without structured replies.
        c.send(77, 0, 1, 0, 512, &[]);
        assert_eq!(c.recv(|_| 0).error, 22);
        c.send(CMD_READ, 0x100, 2, 0, 512, &[]);
        assert_eq!(c.recv(|_| 0).error, 22);
        // Writes past the end: ENOSPC, and the payload is consumed.
        c.send(CMD_WRITE, 0, 3, SIZE - 2, 4, b"abcd");
        let r = c.recv(|_| 0);
        assert_eq!(r.error, 28);
        if structured {
            assert!(
                r.message.contains("beyond the export size"),
                "{}",
                r.message
            );
        }
        // Reads past the end, zero length, offset overflow: EINVAL.
        c.send(CMD_READ, 0, 4, SIZE, 1, &[]);
        assert_eq!(c.recv(|_| 0).error, 22);
        c.send(CMD_READ, 0, 5, 0, 0, &[]);
        assert_eq!(c.recv(|_| 0).error, 22);
        c.send(CMD_TRIM, 0, 6, u64::MAX - 10, 100, &[]);
        assert_eq!(c.recv(|_| 0).error, 28);
        // A write larger than the payload limit: EINVAL, payload skipped.
        let big = vec![7u8; (1 << 20) + 4096];
        c.send(CMD_WRITE, 0, 7, 0, big.len() as u32, &big);
        assert_eq!(c.recv(|_| 0).error, 22);
        // FLUSH with a range is invalid; a proper one succeeds.
        c.send(CMD_FLUSH, 0, 8, 0, 4, &[]);
        assert_eq!(c.recv(|_| 0).error, 22);
        c.send(CMD_FLUSH, 0, 9, 0, 0, &[]);
        assert_eq!(c.recv(|_| 0).error, 0);
        // The stream is still in sync.
        assert_eq!(c.write(10, 100, b"in sync").error, 0);
        assert_eq!(c.read(11, 100, 7).data, b"in sync");
    }
    // A bad request magic ends that connection only.
    let mut c = Client::open(server.addr, true);
    c.s.write_all(&[0x55; 28]).expect("garbage");
    assert!(c.closed_by_server());
    assert_serving(&server);
}

#[test]
fn alignment_is_enforced_when_the_client_agreed_to_block_sizes() {
    let s = ServerSettings {
        min_block_bytes: 512,
        ..settings()
    };
    let server = TestServer::start(Arc::new(MemBackend::new(SIZE).expect("mem")), s);
    // Client::open asks for NBD_INFO_BLOCK_SIZE in GO, so it agreed.
    let mut c = Client::open(server.addr, true);
    c.send(CMD_WRITE, 0, 1, 100, 512, &[1u8; 512]);
    let r = c.recv(|_| 0);
    assert_eq!(r.error, 22);
    assert!(r.message.contains("aligned"), "{}", r.message);
    assert_eq!(c.write(2, 512, &[1u8; 512]).error, 0);
}

#[test]
fn trim_zero_flush_fua_and_many_requests_in_flight() {
    let server = mem_server();
    let mut c = Client::open(server.addr, true);
    // 200 writes pipelined, each with FUA, before reading any reply.
    for i in 0..200u64 {
        let data = vec![(i % 251) as u8; 4096];
        c.send(CMD_WRITE, CMD_FLAG_FUA, i, i * 4096, 4096, &data);
    }
    let mut seen: Vec<u64> = (0..200)
        .map(|_| c.recv(|_| 0))
        .map(|r| {
            assert_eq!(r.error, 0);
            r.handle
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
    for i in [0u64, 57, 199] {
        assert_eq!(
            c.read(1000 + i, i * 4096, 4096).data,
            vec![(i % 251) as u8; 4096]
        );
    }
    c.send(CMD_TRIM, 0, 2000, 0, 8192, &[]);
    assert_eq!(c.recv(|_| 0).error, 0);
    c.send(
        CMD_WRITE_ZEROES,
        CMD_FLAG_NO_HOLE | CMD_FLAG_FUA,
        2001,
        8192 + 10,
        100,
        &[],
    );
    assert_eq!(c.recv(|_| 0).error, 0);
    let r = c.read(2002, 0, 3 * 4096);
    assert!(r.data[..8192].iter().all(|&b| b == 0));
    assert!(r.data[8192..8192 + 10].iter().all(|&b| b == 2));
    assert!(r.data[8192 + 10..8192 + 110].iter().all(|&b| b == 0));
    assert!(r.data[8192 + 110..].iter().all(|&b| b == 2));
    // DISC: the write sent just before is still answered, then the server closes.
    c.send(CMD_WRITE, 0, 3000, 0, 3, b"end");
    c.send(CMD_DISC, 0, 3001, 0, 0, &[]);
    assert_eq!(c.recv(|_| 0).handle, 3000);
    assert!(c.closed_by_server());
}

/// Delays requests at offset 0, to show replies overtaking them.
struct SlowAtZero(MemBackend);

impl BlockBackend for SlowAtZero {
    fn size_bytes(&self) -> u64 {
        self.0.size_bytes()
    }
    fn can_multi_conn(&self) -> bool {
        false
    }
    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, BackendError> {
        if offset == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.0.read(offset, len).await
    }
    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), BackendError> {
        self.0.write(offset, data, fua).await
    }
    async fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }
    async fn trim(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.0.trim(offset, len).await
    }
    async fn write_zeroes(&self, offset: u64, len: u64, no_hole: bool) -> Result<(), BackendError> {
        self.0.write_zeroes(offset, len, no_hole).await
    }
}

#[test]
fn replies_come_out_of_order_as_requests_complete() {
    let server = TestServer::start(
        Arc::new(SlowAtZero(MemBackend::new(SIZE).expect("mem"))),
        settings(),
    );
    let mut c = Client::open(server.addr, false);
    assert_eq!(c.flags & FLAG_CAN_MULTI_CONN, 0);
    c.send(CMD_READ, 0, 1, 0, 4096, &[]);
    c.send(CMD_READ, 0, 2, 4096, 4096, &[]);
    c.send(CMD_FLUSH, 0, 3, 0, 0, &[]);
    let order: Vec<u64> = (0..3)
        .map(|_| c.recv(|h| if h == 3 { 0 } else { 4096 }).handle)
        .collect();
    assert_eq!(
        order.last(),
        Some(&1),
        "the slow read must finish last: {order:?}"
    );
}

#[test]
fn connections_beyond_the_limit_are_closed_and_the_first_keeps_working() {
    let s = ServerSettings {
        max_connections: 1,
        ..settings()
    };
    let server = TestServer::start(Arc::new(MemBackend::new(SIZE).expect("mem")), s);
    let mut first = Client::open(server.addr, true);
    let mut second = connect(server.addr);
    assert!(closed(&mut second), "the second connection must be refused");
    assert_eq!(first.write(1, 0, b"first").error, 0);
    assert_eq!(first.read(2, 0, 5).data, b"first");
    // Once the first leaves, a new client gets in.
    first.send(CMD_DISC, 0, 3, 0, 0, &[]);
    assert!(first.closed_by_server());
    let t0 = Instant::now();
    loop {
        let mut s = connect(server.addr);
        let mut g = [0u8; 18];
        if std::io::Read::read_exact(&mut s, &mut g).is_ok() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the slot was not released"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Counts the large write payloads that reached the backend aligned for
/// direct I/O, and those that did not.
struct AlignmentProbe {
    inner: MemBackend,
    aligned: std::sync::atomic::AtomicU64,
    unaligned: std::sync::atomic::AtomicU64,
}

impl BlockBackend for AlignmentProbe {
    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }
    fn can_multi_conn(&self) -> bool {
        false
    }
    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, BackendError> {
        self.inner.read(offset, len).await
    }
    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), BackendError> {
        use std::sync::atomic::Ordering::Relaxed;
        if data.len() >= 64 * 1024 {
            if kalmar_objectstore::device::is_aligned(&data) {
                self.aligned.fetch_add(1, Relaxed);
            } else {
                self.unaligned.fetch_add(1, Relaxed);
            }
        }
        self.inner.write(offset, data, fua).await
    }
    async fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }
    async fn trim(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.inner.trim(offset, len).await
    }
    async fn write_zeroes(&self, offset: u64, len: u64, no_hole: bool) -> Result<(), BackendError> {
        self.inner.write_zeroes(offset, len, no_hole).await
    }
}

#[test]
fn large_write_payloads_arrive_aligned_and_in_sync() {
    use std::sync::atomic::Ordering::Relaxed;
    let probe = Arc::new(AlignmentProbe {
        inner: MemBackend::new(SIZE).expect("mem"),
        aligned: Default::default(),
        unaligned: Default::default(),
    });
    let server = TestServer::start(probe.clone(), settings());
    let mut c = Client::open(server.addr, true);
    // Large and small writes pipelined back to back, one large one out of
    // range: each large payload is received into a buffer of its own, and
    // the stream stays in sync around them.
    let big = |i: u64| vec![(i * 31 % 251) as u8; 256 * 1024 + 4096 * i as usize];
    let mut handles = 0;
    for i in 0..6u64 {
        let d = big(i);
        c.send(CMD_WRITE, 0, i, i << 20, d.len() as u32, &d);
        c.send(CMD_WRITE, 0, 100 + i, (8 << 20) + i * 4096, 5, b"small");
        handles += 2;
    }
    let d = big(1);
    c.send(CMD_WRITE, 0, 999, SIZE - 4096, d.len() as u32, &d);
    let mut errors = 0;
    for _ in 0..handles + 1 {
        let r = c.recv(|_| 0);
        if r.handle == 999 {
            assert_eq!(r.error, 28, "the out-of-range write is refused");
            errors += 1;
        } else {
            assert_eq!(r.error, 0, "handle {}", r.handle);
        }
    }
    assert_eq!(errors, 1);
    for i in 0..6u64 {
        let d = big(i);
        assert_eq!(c.read(200 + i, i << 20, d.len() as u32).data, d);
        assert_eq!(c.read(300 + i, (8 << 20) + i * 4096, 5).data, b"small");
    }
    assert_eq!(probe.unaligned.load(Relaxed), 0);
    assert!(probe.aligned.load(Relaxed) >= 6);
}
