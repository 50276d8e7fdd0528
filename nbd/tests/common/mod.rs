//! Helpers shared by the integration tests: a minimal blocking NBD client
//! that can also send malformed bytes, and a server started in-process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

pub fn require(tool: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{tool} is missing: run scripts/setup.sh (installs fio, qemu-utils, libnbd-bin)"
    );
}

pub fn fio_configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fio-configs")
}

/// A `kalmar-nbd` process; SIGTERM (then SIGKILL) on drop.
pub struct NbdProcess {
    pub child: Child,
    pub uri: String,
}

pub enum Listen<'a> {
    Unix(&'a Path),
    Tcp,
}

impl NbdProcess {
    /// `kalmar-nbd --store DEVICE --size SIZE [--mkfs]`.
    pub fn start(device: &Path, size: &str, mkfs: bool, listen: Listen<'_>) -> NbdProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kalmar-nbd"));
        cmd.arg("--store").arg(device).args(["--size", size]);
        if mkfs {
            cmd.arg("--mkfs");
        }
        NbdProcess::spawn(cmd, listen)
    }

    /// `kalmar-nbd --image POOL/NAME --conf CONF`.
    pub fn start_image(spec: &str, conf: &Path, listen: Listen<'_>) -> NbdProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kalmar-nbd"));
        cmd.args(["--image", spec]).arg("--conf").arg(conf);
        NbdProcess::spawn(cmd, listen)
    }

    fn spawn(mut cmd: Command, listen: Listen<'_>) -> NbdProcess {
        cmd.args(["--log-level", "warn"]);
        match listen {
            Listen::Unix(p) => cmd.arg("--socket").arg(p),
            Listen::Tcp => cmd.args(["--bind", "127.0.0.1:0"]),
        };
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn kalmar-nbd");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) if !l.is_empty() => l,
            _ => {
                let _ = child.kill();
                panic!("kalmar-nbd did not report ready: {:?}", child.wait());
            }
        };
        let v: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
        let uri = v["uri"].as_str().expect("uri").to_string();
        NbdProcess { child, uri }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM and wait: the store is unmounted cleanly.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: signalling the child this test spawned, by its pid.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(st)) = self.child.try_wait() {
                assert!(st.success(), "kalmar-nbd exited with {st} after SIGTERM");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("kalmar-nbd did not stop within 30 s of SIGTERM");
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NbdProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// xorshift64*: deterministic test inputs from a printed seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub const MIB: u64 = 1 << 20;

/// Patterns in 5 MiB slots (so some cross the 4 MiB object boundaries),
/// at odd offsets and lengths, then read back, holes included.
pub fn qemu_io_patterns(uri: &str, seed: u64) -> Vec<(u64, u64, u8)> {
    let mut rng = Rng(seed);
    let lens = [
        1,
        511,
        512,
        4095,
        4096,
        4097,
        65536,
        131_071,
        MIB + 3,
        3 * MIB,
    ];
    let mut pats = Vec::new();
    for slot in 0..40u64 {
        let len = lens[rng.below(lens.len() as u64) as usize];
        let off = slot * 5 * MIB + rng.below(5 * MIB - len);
        pats.push((off, len, 1 + (rng.below(254) as u8)));
    }
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw", uri]);
    for (off, len, p) in &pats {
        cmd.arg("-c").arg(format!("write -P {p:#x} {off} {len}"));
    }
    for (off, len, p) in &pats {
        cmd.arg("-c").arg(format!("read -P {p:#x} {off} {len}"));
    }
    // The gap before each pattern in its slot was never written: zeros.
    for (i, (off, _, _)) in pats.iter().enumerate() {
        let slot_start = i as u64 * 5 * MIB;
        if *off > slot_start {
            cmd.arg("-c").arg(format!(
                "read -P 0 {slot_start} {}",
                (off - slot_start).min(MIB)
            ));
        }
    }
    let out = run(&mut cmd);
    assert!(!out.contains("verification failed"), "{out}");
    pats
}

pub fn check_patterns(uri: &str, pats: &[(u64, u64, u8)]) {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw", uri]);
    for (off, len, p) in pats {
        cmd.arg("-c").arg(format!("read -P {p:#x} {off} {len}"));
    }
    let out = run(&mut cmd);
    assert!(!out.contains("verification failed"), "{out}");
}

/// A file of `len` random bytes (seeded) with a 10 MiB zero hole at
/// 100 MiB when it is that large; returns its path and contents.
pub fn random_file(dir: &Path, len: u64, seed: u64) -> (PathBuf, Vec<u8>) {
    let mut data = vec![0u8; len as usize];
    let mut rng = Rng(seed ^ u64::from(std::process::id()));
    for chunk in data.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes()[..chunk.len()]);
    }
    if len >= 110 * MIB {
        data[100 * MIB as usize..110 * MIB as usize].fill(0);
    }
    let path = dir.join("src.img");
    std::fs::write(&path, &data).expect("write the source file");
    (path, data)
}

/// `qemu-img info` sees `size` bytes; `qemu-img convert` writes `src` in.
pub fn qemu_img_in(src: &Path, uri: &str, size: u64) {
    let info = run(Command::new("qemu-img").args(["info", "--output=json", uri]));
    let v: serde_json::Value = serde_json::from_str(&info).expect("qemu-img info json");
    assert_eq!(v["virtual-size"].as_u64(), Some(size), "{info}");
    run(Command::new("qemu-img")
        .args(["convert", "-n", "-f", "raw", "-O", "raw"])
        .arg(src)
        .arg(uri));
}

/// `qemu-img convert` out of `uri` gives exactly `want`.
pub fn qemu_img_out_equals(uri: &str, dir: &Path, want: &[u8]) {
    let back = dir.join("back.img");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw", uri])
        .arg(&back));
    let got = std::fs::read(&back).expect("read back");
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "qemu-img convert out differs from what went in"
    );
    let _ = std::fs::remove_file(back);
}
