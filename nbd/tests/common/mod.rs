//! Helpers shared by the integration tests: a minimal blocking NBD client
//! that can also send malformed bytes, and a server started in-process.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use kalmar_nbd::proto::consts::*;
use kalmar_nbd::{BlockBackend, ListenAddr, Listener, Server, ServerSettings};

/// A server running on its own runtime thread; stopped on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start<B: BlockBackend>(backend: Arc<B>, settings: ServerSettings) -> TestServer {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let server = Server::new(backend, settings).expect("settings");
                let l = Listener::bind(&ListenAddr::Tcp("127.0.0.1:0".parse().expect("addr")))
                    .await
                    .expect("bind");
                addr_tx
                    .send(l.local_tcp_addr().expect("tcp"))
                    .expect("send addr");
                server
                    .run(
                        l,
                        async {
                            let _ = stop_rx.await;
                        },
                        Duration::from_secs(5),
                    )
                    .await
                    .expect("run");
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server address");
        TestServer {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A reply as the test client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub handle: u64,
    pub error: u32,
    pub data: Vec<u8>,
    /// Error message of a structured error chunk.
    pub message: String,
}

pub struct Client {
    pub s: TcpStream,
    pub structured: bool,
    pub size: u64,
    pub flags: u16,
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

pub fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).expect("read");
    b
}

/// Reads the greeting and sends client flags.
pub fn greet(s: &mut TcpStream, client_flags: u32) {
    let g = read_exact(s, 18);
    assert_eq!(&g[0..16], b"NBDMAGICIHAVEOPT");
    s.write_all(&client_flags.to_be_bytes()).expect("flags");
}

pub fn send_option(s: &mut TcpStream, option: u32, data: &[u8]) {
    let mut b = IHAVEOPT.to_be_bytes().to_vec();
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    s.write_all(&b).expect("option");
}

/// Reads one option reply: (option, type, data).
pub fn read_option_reply(s: &mut TcpStream) -> (u32, u32, Vec<u8>) {
    let h = read_exact(s, 20);
    assert_eq!(
        u64::from_be_bytes(h[0..8].try_into().expect("8")),
        OPT_REPLY_MAGIC
    );
    let opt = u32::from_be_bytes(h[8..12].try_into().expect("4"));
    let ty = u32::from_be_bytes(h[12..16].try_into().expect("4"));
    let len = u32::from_be_bytes(h[16..20].try_into().expect("4")) as usize;
    (opt, ty, read_exact(s, len))
}

pub fn go_data(name: &[u8], requests: &[u16]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name);
    d.extend_from_slice(&(requests.len() as u16).to_be_bytes());
    for r in requests {
        d.extend_from_slice(&r.to_be_bytes());
    }
    d
}

impl Client {
    /// Fixed newstyle, no zeroes, optionally structured replies, then GO.
    pub fn open(addr: SocketAddr, structured: bool) -> Client {
        let mut s = connect(addr);
        greet(&mut s, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
        if structured {
            send_option(&mut s, OPT_STRUCTURED_REPLY, &[]);
            assert_eq!(read_option_reply(&mut s).1, REP_ACK);
        }
        Client::go(s, structured)
    }

    pub fn go(mut s: TcpStream, structured: bool) -> Client {
        send_option(&mut s, OPT_GO, &go_data(b"", &[INFO_BLOCK_SIZE]));
        let (mut size, mut flags) = (0, 0);
        loop {
            let (_, ty, data) = read_option_reply(&mut s);
            match ty {
                REP_ACK => break,
                REP_INFO if u16::from_be_bytes([data[0], data[1]]) == INFO_EXPORT => {
                    size = u64::from_be_bytes(data[2..10].try_into().expect("8"));
                    flags = u16::from_be_bytes([data[10], data[11]]);
                }
                REP_INFO => {}
                other => panic!(
                    "GO failed with reply type {other:#x}: {}",
                    String::from_utf8_lossy(&data)
                ),
            }
        }
        Client {
            s,
            structured,
            size,
            flags,
        }
    }

    pub fn send(
        &mut self,
        command: u16,
        flags: u16,
        handle: u64,
        offset: u64,
        length: u32,
        payload: &[u8],
    ) {
        let mut b = REQUEST_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&command.to_be_bytes());
        b.extend_from_slice(&handle.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&length.to_be_bytes());
        b.extend_from_slice(payload);
        self.s.write_all(&b).expect("request");
    }

    /// Reads one complete reply. `read_len` gives the data length a
    /// successful simple read reply carries, by handle.
    pub fn recv(&mut self, read_len: impl Fn(u64) -> usize) -> Reply {
        let magic = u32::from_be_bytes(read_exact(&mut self.s, 4).try_into().expect("4"));
        if magic == SIMPLE_REPLY_MAGIC {
            let rest = read_exact(&mut self.s, 12);
            let error = u32::from_be_bytes(rest[0..4].try_into().expect("4"));
            let handle = u64::from_be_bytes(rest[4..12].try_into().expect("8"));
            let data = if error == 0 {
                read_exact(&mut self.s, read_len(handle))
            } else {
                Vec::new()
            };
            return Reply {
                handle,
                error,
                data,
                message: String::new(),
            };
        }
        assert_eq!(magic, STRUCTURED_REPLY_MAGIC, "unknown reply magic");
        let rest = read_exact(&mut self.s, 16);
        let flags = u16::from_be_bytes([rest[0], rest[1]]);
        let kind = u16::from_be_bytes([rest[2], rest[3]]);
        let handle = u64::from_be_bytes(rest[4..12].try_into().expect("8"));
        let len = u32::from_be_bytes(rest[12..16].try_into().expect("4")) as usize;
        let payload = read_exact(&mut self.s, len);
        assert_ne!(
            flags & REPLY_FLAG_DONE,
            0,
            "this server sends single-chunk replies"
        );
        match kind {
            REPLY_TYPE_OFFSET_DATA => Reply {
                handle,
                error: 0,
                data: payload[8..].to_vec(),
                message: String::new(),
            },
            REPLY_TYPE_ERROR => {
                let mlen = u16::from_be_bytes([payload[4], payload[5]]) as usize;
                Reply {
                    handle,
                    error: u32::from_be_bytes(payload[0..4].try_into().expect("4")),
                    data: Vec::new(),
                    message: String::from_utf8_lossy(&payload[6..6 + mlen]).into_owned(),
                }
            }
            REPLY_TYPE_NONE => Reply {
                handle,
                error: 0,
                data: Vec::new(),
                message: String::new(),
            },
            other => panic!("unexpected chunk type {other}"),
        }
    }

    pub fn write(&mut self, handle: u64, offset: u64, data: &[u8]) -> Reply {
        self.send(CMD_WRITE, 0, handle, offset, data.len() as u32, data);
        self.recv(|_| 0)
    }

    pub fn read(&mut self, handle: u64, offset: u64, len: u32) -> Reply {
        self.send(CMD_READ, 0, handle, offset, len, &[]);
        self.recv(|_| len as usize)
    }

    /// True once the server has closed the connection (EOF within 10 s).
    pub fn closed_by_server(&mut self) -> bool {
        closed(&mut self.s)
    }
}

pub fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}
