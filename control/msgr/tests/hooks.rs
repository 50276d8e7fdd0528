//! The hooks for a shard-per-core daemon: connections placed on a chosen
//! runtime (accepted ones by a `Placement`, outbound ones by `start_on`),
//! and an inline event sink, called on the connection's own thread, in
//! order, whose waiting pauses reading.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, ThreadId};
use std::time::Duration;

use bytes::Bytes;
use kalmar_msgr::{
    event_channel, Connection, EntityName, Event, EventSink, Listener, Message, MsgrConfig,
    Placement, SendError, Upcoming,
};
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Semaphore, SemaphorePermit};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

fn name(s: &str) -> EntityName {
    s.parse().expect("valid entity")
}

/// A "shard": a thread running a current-thread runtime until dropped.
struct Shard {
    handle: Handle,
    thread: ThreadId,
    stop: Option<oneshot::Sender<()>>,
    join: Option<thread::JoinHandle<()>>,
}

impl Shard {
    fn start() -> Shard {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let join = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            tx.send((rt.handle().clone(), thread::current().id()))
                .expect("test alive");
            rt.block_on(async {
                let _ = stopped.await;
            });
        });
        let (handle, thread) = rx.recv().expect("shard started");
        Shard {
            handle,
            thread,
            stop: Some(stop),
            join: Some(join),
        }
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// A sink that records what it gets and on which thread, and lets one
/// message through per permit of its gate (no permit: the connection
/// waits, reading nothing).
#[derive(Clone)]
struct Recorder {
    inner: Arc<RecorderInner>,
}

struct RecorderInner {
    gate: Semaphore,
    /// `reserve` calls waiting for a permit right now.
    waiting: AtomicUsize,
    got: Mutex<Vec<(ThreadId, u32)>>,
}

impl Recorder {
    fn new(permits: usize) -> Recorder {
        Recorder {
            inner: Arc::new(RecorderInner {
                gate: Semaphore::new(permits),
                waiting: AtomicUsize::new(0),
                got: Mutex::new(Vec::new()),
            }),
        }
    }

    fn got(&self) -> Vec<(ThreadId, u32)> {
        self.inner.got.lock().clone()
    }

    async fn wait_for(&self, what: &str, cond: impl Fn(&Recorder) -> bool) {
        tokio::time::timeout(WAIT, async {
            while !cond(self) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }
}

impl EventSink for Recorder {
    /// Session changes pass without a permit.
    type Permit<'a> = Option<SemaphorePermit<'a>>;

    async fn reserve(&self, next: &Upcoming<'_>) -> Option<Option<SemaphorePermit<'_>>> {
        if let Upcoming::SessionChange = next {
            return Some(None);
        }
        self.inner.waiting.fetch_add(1, Ordering::SeqCst);
        let permit = self.inner.gate.acquire().await.ok();
        self.inner.waiting.fetch_sub(1, Ordering::SeqCst);
        permit.map(Some)
    }

    fn deliver(&self, permit: Option<SemaphorePermit<'_>>, event: Event) {
        // One permit per message, never returned: the test hands them out.
        if let Some(p) = permit {
            p.forget();
        }
        if let Event::Message(m) = event {
            let v = u32::from_le_bytes(m.msg.to_vec()[..4].try_into().expect("4 bytes"));
            self.inner.got.lock().push((thread::current().id(), v));
        }
    }
}

fn msg(i: u32) -> Message {
    Message::new(1, Bytes::copy_from_slice(&i.to_le_bytes()))
}

#[tokio::test]
async fn accepted_connections_run_where_the_placement_says() {
    let shard = Shard::start();
    let rec = Recorder::new(1000);
    let placed_for = Arc::new(Mutex::new(Vec::new()));
    let placement: Placement = {
        let (rt, placed_for) = (shard.handle.clone(), placed_for.clone());
        Arc::new(move |peer: &kalmar_msgr::PeerInfo| {
            placed_for.lock().push(peer.entity.to_string());
            Some(rt.clone())
        })
    };
    let cfg = MsgrConfig::default();
    let l = Listener::bind_placed(
        "127.0.0.1:0".parse().expect("addr"),
        name("osd.0"),
        Uuid::nil(),
        cfg.clone(),
        rec.clone(),
        Some(placement),
    )
    .await
    .expect("bind");
    let (tx, mut replies) = event_channel(&cfg);
    let c = Connection::connect(l.local_addr(), name("client.7"), Uuid::nil(), cfg, tx)
        .await
        .expect("connect");
    for i in 0..50 {
        c.send(msg(i)).await.expect("send");
    }
    rec.wait_for("50 messages", |r| r.got().len() == 50).await;
    let got = rec.got();
    assert!(
        got.iter().all(|(t, _)| *t == shard.thread),
        "every message delivered on the shard's thread"
    );
    assert_ne!(thread::current().id(), shard.thread);
    assert_eq!(
        got.iter().map(|g| g.1).collect::<Vec<_>>(),
        (0..50).collect::<Vec<_>>()
    );
    assert_eq!(*placed_for.lock(), vec!["client.7".to_string()]);
    // The moved connection still carries replies back.
    let session = l.sessions().pop().expect("one session");
    session.send(msg(99)).await.expect("reply");
    let reply = tokio::time::timeout(WAIT, replies.recv())
        .await
        .expect("in time")
        .expect("open");
    assert!(matches!(reply, Event::Message(m) if m.msg == msg(99)));
    drop(c);
    drop(l);
}

#[tokio::test]
async fn outbound_connections_run_on_the_runtime_they_start_on() {
    let shard = Shard::start();
    let cfg = MsgrConfig::default();
    let (tx, mut srv) = event_channel(&cfg);
    let l = Listener::bind(
        "127.0.0.1:0".parse().expect("addr"),
        name("osd.1"),
        Uuid::nil(),
        cfg.clone(),
        tx,
    )
    .await
    .expect("bind");
    let rec = Recorder::new(1000);
    let c = Connection::connect_on(
        &shard.handle,
        l.local_addr(),
        name("osd.2"),
        Uuid::nil(),
        cfg,
        rec.clone(),
    )
    .await
    .expect("connect");
    c.send(msg(1)).await.expect("send");
    let Some(Event::Message(m)) = tokio::time::timeout(WAIT, srv.recv())
        .await
        .expect("in time")
    else {
        panic!("expected a message");
    };
    for i in 0..20 {
        m.from.send(msg(i)).await.expect("reply");
    }
    rec.wait_for("20 replies", |r| r.got().len() == 20).await;
    assert!(rec.got().iter().all(|(t, _)| *t == shard.thread));
    drop(c);
}

#[tokio::test]
async fn a_waiting_sink_stops_reading_and_resumes_in_order() {
    let cfg = MsgrConfig {
        send_queue_max_messages: 5,
        ..MsgrConfig::default()
    };
    // Three messages get through, then the sink makes the connection wait.
    let rec = Recorder::new(3);
    let l = Listener::bind(
        "127.0.0.1:0".parse().expect("addr"),
        name("osd.0"),
        Uuid::nil(),
        cfg.clone(),
        rec.clone(),
    )
    .await
    .expect("bind");
    let (tx, _events) = event_channel(&cfg);
    let c = Connection::connect(l.local_addr(), name("client.1"), Uuid::nil(), cfg, tx)
        .await
        .expect("connect");
    // The sender's queue (5 unacknowledged messages) fills up, since the
    // receiver acknowledges only what its sink took.
    let mut sent = 0u32;
    tokio::time::timeout(WAIT, async {
        loop {
            match c.try_send(msg(sent)) {
                Ok(_) => sent += 1,
                // Full for good once the 3 taken are acknowledged.
                Err(SendError::Full { .. }) if sent >= 3 + 5 => break,
                Err(SendError::Full { .. }) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(e) => panic!("send: {e}"),
            }
        }
    })
    .await
    .expect("queue fills");
    assert_eq!(sent, 3 + 5);
    rec.wait_for("the reader to wait in the sink", |r| {
        r.inner.waiting.load(Ordering::SeqCst) == 1
    })
    .await;
    // Paused: nothing more is taken.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rec.got().len(), 3);
    assert!(matches!(c.try_send(msg(sent)), Err(SendError::Full { .. })));
    // Room again: the rest arrives, in order, and the sender's queue drains.
    rec.inner.gate.add_permits(100);
    for i in sent..sent + 10 {
        c.send(msg(i)).await.expect("send after resuming");
    }
    rec.wait_for("every message", |r| r.got().len() == sent as usize + 10)
        .await;
    let order: Vec<u32> = rec.got().iter().map(|g| g.1).collect();
    assert_eq!(order, (0..sent + 10).collect::<Vec<_>>());
}
