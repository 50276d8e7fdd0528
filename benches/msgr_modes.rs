//! The messenger's connection modes side by side (issue 15): crc, signed
//! (keyed BLAKE3 tag per frame) and secure (AES-128-GCM) on one loopback
//! connection, 4 KiB messages, in one run, with the ratios to crc.
//!
//! `cargo bench -p kalmar-benches --bench msgr_modes [-- ROUNDS [COUNT]]`
//!
//! Each round runs the three modes one after the other (so a load change
//! on the machine hits all three alike); the table has the medians over
//! the rounds. Both ends authenticate (cephx) in every mode, so the
//! handshake is the same and only the per-frame work differs. Events go
//! to an inline sink on the connection's read task (no dispatcher task),
//! so the messenger's own cost is what is measured. CPU is the process's
//! user + system time per message, sender and receiver together.
//!
//! A second table times the per-frame protection alone on one thread:
//! tagging or sealing a 4 KiB frame and checking or opening it again (in
//! secure mode both seals: the header's and the payload's).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kalmar_auth::{AuthMode, ClientAuth, CryptoKey, MemKeySource, ServerAuth, Service};
use kalmar_msgr::auth::MsgrAuth;
use kalmar_msgr::frame::{FrameHeader, FrameKind};
use kalmar_msgr::onwire::{Protect, WireMode, WireModes, SEALED_HEADER_BYTES};
use kalmar_msgr::{
    event_channel, Connection, EntityName, Event, EventSink, Listener, Message, MsgrConfig,
    Upcoming,
};
use tokio::sync::Notify;

const SIZE: usize = 4096;
const MODES: [WireMode; 3] = [WireMode::Crc, WireMode::Signed, WireMode::Secure];

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Counts messages on the connection's read task and drops them there.
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

/// One timed run of `count` messages in `mode`: (wall, cpu).
async fn run(mode: WireMode, count: usize) -> (Duration, Duration) {
    let keys = Arc::new(MemKeySource::new());
    let key = CryptoKey::generate().expect("rng");
    keys.add_entity(
        "osd.0",
        key.clone(),
        [("mon".to_string(), "allow *".to_string())].into(),
    );
    let modes = WireModes::all(&[mode]);
    let server_cfg = MsgrConfig {
        auth: MsgrAuth {
            server: Some(ServerAuth {
                mode: AuthMode::Cephx,
                service: Service::Mon,
                keys,
            }),
            modes: modes.clone(),
            ..MsgrAuth::default()
        },
        ..MsgrConfig::default()
    };
    let client_cfg = MsgrConfig {
        auth: MsgrAuth {
            client: Some(Arc::new(ClientAuth::new("osd.0", Some(key)))),
            require_server_proof: true,
            modes,
            ..MsgrAuth::default()
        },
        ..MsgrConfig::default()
    };
    let counter = Counter {
        left: Arc::new(AtomicUsize::new(count)),
        done: Arc::new(Notify::new()),
    };
    let done = counter.done.clone();
    let me: EntityName = "mon.a".parse().expect("name");
    let l = Listener::bind(
        "127.0.0.1:0".parse().expect("addr"),
        me,
        uuid::Uuid::nil(),
        server_cfg,
        counter,
    )
    .await
    .expect("bind");
    let (ctx, _crx) = event_channel(&client_cfg);
    let c = Connection::connect(
        l.local_addr(),
        EntityName::osd(0),
        uuid::Uuid::nil(),
        client_cfg,
        ctx,
    )
    .await
    .expect("connect");
    assert_eq!(c.handle().wire_mode(), Some(mode));
    let payload = Bytes::from(vec![0xabu8; SIZE]);
    let receiver = tokio::spawn(async move { done.notified().await });
    let (c0, t0) = (cpu_time(), Instant::now());
    for _ in 0..count {
        c.send(Message::new(100, payload.clone()))
            .await
            .expect("send");
    }
    receiver.await.expect("receiver");
    let r = (t0.elapsed(), cpu_time() - c0);
    drop(c);
    drop(l);
    r
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// ns per frame to protect and check a 4 KiB frame, one thread.
fn protect_ns(mode: WireMode, frames: usize) -> f64 {
    let key = [5u8; 32];
    let (mut tx, mut rx) = (Protect::new(mode, &key), Protect::new(mode, &key));
    let chunks = [Bytes::from(vec![0x5au8; SIZE])];
    let header = FrameHeader::for_payload(FrameKind::Message, 1, 1, 0, &[]).encode();
    let mut buf: Vec<u8> = Vec::with_capacity(SEALED_HEADER_BYTES + SIZE + 16);
    let t0 = Instant::now();
    for _ in 0..frames {
        buf.clear();
        match mode {
            WireMode::Crc => {
                let c = crc32c::crc32c(&chunks[0]);
                std::hint::black_box(c);
                let c = crc32c::crc32c(&chunks[0]);
                std::hint::black_box(c);
                continue;
            }
            WireMode::Signed => {
                buf.extend_from_slice(&chunks[0]);
                let tag = tx.sign(&header, &chunks).expect("sign");
                buf.extend_from_slice(&tag);
            }
            WireMode::Secure => {
                tx.seal_into(&header, &chunks, &mut buf).expect("seal");
                let (sealed, body) = buf.split_at_mut(SEALED_HEADER_BYTES);
                let sealed = <&[u8; SEALED_HEADER_BYTES]>::try_from(&*sealed).expect("52 bytes");
                let h = rx.open_header(sealed).expect("open header");
                rx.open(&h, body).expect("open");
                continue;
            }
        }
        rx.open(&header, &mut buf).expect("open");
    }
    t0.elapsed().as_nanos() as f64 / frames as f64
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    // One warm-up round, not counted.
    for round in 0..=rounds {
        for (i, mode) in MODES.iter().enumerate() {
            let (wall, cpu) = rt.block_on(run(*mode, count));
            if round > 0 {
                rates[i].push(count as f64 / wall.as_secs_f64());
                cpus[i].push(cpu.as_secs_f64() * 1e6 / count as f64);
            }
        }
    }
    println!(
        "{count} messages of {SIZE} B per run, median of {rounds} rounds; cpu = process user+sys us per message (both ends)"
    );
    println!("| mode | msg/s | MiB/s | vs crc | CPU us/msg | vs crc |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let base_rate = median(rates[0].clone());
    let base_cpu = median(cpus[0].clone());
    for (i, mode) in MODES.iter().enumerate() {
        let r = median(rates[i].clone());
        let c = median(cpus[i].clone());
        println!(
            "| {mode} | {r:.0} | {:.0} | {:.2}x | {c:.2} | {:.2}x |",
            r * SIZE as f64 / (1 << 20) as f64,
            r / base_rate,
            c / base_cpu
        );
    }
    println!();
    println!("per-frame protection alone, 4 KiB, one thread (protect + check):");
    println!("| mode | ns/frame | GiB/s |");
    println!("| --- | --- | --- |");
    for mode in MODES {
        let ns = median((0..5).map(|_| protect_ns(mode, 50_000)).collect());
        println!(
            "| {mode} | {ns:.0} | {:.2} |",
            SIZE as f64 / ns / 1.073_741_824
        );
    }
}
