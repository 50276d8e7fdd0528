//! A real network partition of a three-mon quorum: each mon runs in a
//! network namespace of its own, on a bridge in a namespace of its own
//! (nothing on the machine's network, see `harness::netns`). The leader's
//! link is cut: the minority (the old leader) cannot commit a map, the
//! majority elects a leader and commits; after the link is back the old
//! leader steps down and catches up. A client on each side records every
//! epoch it receives; no epoch has two contents, and the map the minority
//! tried to make never appears.
//!
//! Needs root and `ip` (iproute2); without them the test says so and
//! passes without running.

mod harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::netns::NetLab;
use harness::*;
use kalmar_maps::OsdMap;
use kalmar_msgr::{EntityName, EntityType};
use kalmar_proto::monc::{MonClient, MonEvent};
use parking_lot::Mutex;
use serde_json::{json, Value};
use uuid::Uuid;

const MON_PORT: u16 = 6789;
/// Default consensus timers; a short commit bound so the minority's
/// attempt ends within the test, and quick keepalives.
const CONF: &str = r#"
[global]
auth_cluster_required = "none"
auth_service_required = "none"
auth_client_required = "none"
ms_keepalive_interval = 0.5
ms_keepalive_timeout = 3
[mon]
mon_commit_timeout = 3
"#;
/// Bound on the majority electing a new leader once the old one is cut
/// off (an election timeout after its last heartbeat, then a vote).
const ELECTION_BOUND: Duration = Duration::from_secs(10);

/// Three mons in three namespaces; killed by pid, then the namespaces
/// deleted, when dropped (also on a panic).
struct NsQuorum {
    children: Vec<Option<Child>>,
    dir: tempfile::TempDir,
    names: Vec<String>,
    // Dropped after the children are killed (fields drop after `drop`).
    lab: NetLab,
}

impl NsQuorum {
    fn start(lab: NetLab, n: usize) -> NsQuorum {
        let dir = tempfile::Builder::new()
            .prefix("kalmar-partition-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::write(dir.path().join("kalmar.conf"), CONF).expect("conf");
        let names: Vec<String> = (0..n)
            .map(|i| ((b'a' + i as u8) as char).to_string())
            .collect();
        let mut q = NsQuorum {
            children: (0..n).map(|_| None).collect(),
            dir,
            names,
            lab,
        };
        let members = (0..n)
            .map(|i| format!("{}={}", q.names[i], q.addr(i)))
            .collect::<Vec<_>>()
            .join(",");
        let fsid = Uuid::new_v4().to_string();
        for i in 0..n {
            let out = std::process::Command::new(bin("kalmar-mon"))
                .args(["mkfs", "--name", &q.names[i], "--data"])
                .arg(q.data(i))
                .arg("--conf")
                .arg(q.conf())
                .args(["--fsid", &fsid, "--initial-members", &members])
                .output()
                .expect("run kalmar-mon mkfs");
            assert!(
                out.status.success(),
                "mkfs: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for i in 0..n {
            let child = q
                .lab
                .command(i, &bin("kalmar-mon"))
                .args(["run", "--name", &q.names[i], "--data"])
                .arg(q.data(i))
                .arg("--conf")
                .arg(q.conf())
                .args(["--log-level", "debug,openraft=info", "--log-file"])
                .arg(q.log(i))
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn kalmar-mon in its namespace");
            q.children[i] = Some(child);
        }
        q
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("kalmar.conf")
    }

    fn data(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("mon.{}", self.names[i]))
    }

    fn log(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("mon.{}.log", self.names[i]))
    }

    fn addr(&self, i: usize) -> std::net::SocketAddr {
        (self.lab.addr(i), MON_PORT).into()
    }

    fn addrs(&self) -> Vec<std::net::SocketAddr> {
        (0..self.names.len()).map(|i| self.addr(i)).collect()
    }

    /// Mon `i`'s own view (its admin socket: no network involved).
    fn status(&self, i: usize) -> Option<Value> {
        let sock = self.data(i).join(format!("mon.{}.asok", self.names[i]));
        kalmar_common::admin_socket::request(
            Path::new(&sock),
            &json!({"prefix": "status"}),
            Duration::from_secs(2),
        )
        .ok()
    }

    fn last_committed(&self, i: usize) -> u64 {
        self.status(i)
            .and_then(|s| s["osdmap_last_committed"].as_u64())
            .unwrap_or(0)
    }

    /// The mon among `among` that says it leads with `n` in quorum.
    fn leader(&self, among: &[usize], n: usize) -> Option<usize> {
        among.iter().copied().find(|&i| {
            self.status(i).is_some_and(|s| {
                s["state"] == "leader" && s["quorum"].as_array().is_some_and(|q| q.len() >= n)
            })
        })
    }

    /// A command sent from inside mon `from`'s namespace to the mons
    /// `to`, bounded by `timeout`: its errno and status, or the error.
    async fn command_from(
        &self,
        from: usize,
        to: Vec<std::net::SocketAddr>,
        cmd: Value,
        timeout: Duration,
    ) -> Result<(i32, String), String> {
        self.lab
            .run_in(from, move || async move {
                let (c, _ev) = MonClient::connect_any(
                    &to,
                    EntityName::new(EntityType::Client, "partition-test"),
                    Uuid::nil(),
                    fast_msgr(),
                )
                .await
                .map_err(|e| e.to_string())?;
                let r = c.command(&cmd, timeout).await.map_err(|e| e.to_string());
                c.close().await;
                r.map(|r| (r.retval, r.outs))
            })
            .await
    }

    fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(self.log(i)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for NsQuorum {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..self.names.len() {
                eprintln!(
                    "---- mon.{} log tail ----\n{}",
                    self.names[i],
                    self.log_tail(i)
                );
            }
        }
        for c in self.children.iter_mut() {
            if let Some(mut c) = c.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A client inside one mon's namespace that follows the OSDMap through
/// the whole mon list and records every epoch it goes through.
struct Observer {
    history: Arc<Mutex<Vec<OsdMap>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Observer {
    fn start(q: &NsQuorum, side: usize, name: &str) -> Observer {
        let history = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s, mons, name) = (history.clone(), stop.clone(), q.addrs(), name.to_string());
        let thread = q.lab.spawn_in(side, move || async move {
            let (c, mut ev) = MonClient::start_any(
                &mons,
                EntityName::new(EntityType::Client, name),
                Uuid::nil(),
                fast_msgr(),
            );
            c.subscribe("osdmap", 1, false).await.ok();
            let mut cur: Option<OsdMap> = None;
            while !s.load(Ordering::SeqCst) {
                let next = tokio::time::timeout(Duration::from_millis(100), ev.recv()).await;
                match next {
                    Ok(Some(MonEvent::OsdMap(msg))) => {
                        let maps = epochs_of(&msg, cur.as_ref());
                        if let Some(last) = maps.last() {
                            cur = Some(last.clone());
                        }
                        h.lock().extend(maps);
                    }
                    // The session came back (or moved): ask again from
                    // the next epoch (the client does it too; harmless).
                    Ok(Some(MonEvent::Reset)) => {
                        let from = cur.as_ref().map_or(1, |m| m.epoch + 1);
                        c.subscribe("osdmap", from, false).await.ok();
                    }
                    Ok(Some(_)) | Err(_) => {}
                    Ok(None) => break,
                }
            }
            c.close().await;
        });
        Observer {
            history,
            stop,
            thread: Some(thread),
        }
    }

    fn newest(&self) -> u32 {
        self.history.lock().last().map_or(0, |m| m.epoch)
    }

    fn has_pool(&self, pool: &str) -> bool {
        self.history
            .lock()
            .iter()
            .any(|m| m.pool_by_name(pool).is_ok())
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Polls `f` every 100 ms until it holds, at most `bound`.
async fn until(what: &str, bound: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < bound, "timed out after {bound:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_commits_nothing_and_catches_up() {
    let lab = match NetLab::new(3) {
        Ok(lab) => lab,
        Err(why) => {
            eprintln!(
                "SKIPPED a_partitioned_leader_commits_nothing_and_catches_up: network \
                 namespaces are not available here (needs root and iproute2): {why}"
            );
            return;
        }
    };
    let q = NsQuorum::start(lab, 3);
    let all: Vec<usize> = (0..3).collect();
    until("a quorum of three", WAIT, || q.leader(&all, 3).is_some()).await;
    let (rv, outs) = q
        .command_from(
            0,
            q.addrs(),
            json!({"prefix": "osd pool create", "pool": "before", "pg_num": 8}),
            WAIT,
        )
        .await
        .expect("command");
    assert_eq!(rv, 0, "{outs}");
    let old = q.leader(&all, 3).expect("a leader");
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != old).collect();
    let minority = Observer::start(&q, old, "minority");
    let majority = Observer::start(&q, others[0], "majority");
    until("both observers have the first pool", WAIT, || {
        minority.has_pool("before") && majority.has_pool("before")
    })
    .await;
    let e0 = q.last_committed(old);

    // Cut the leader off.
    q.lab.cut(old);
    let took = until("a new leader on the majority side", ELECTION_BOUND, || {
        q.leader(&others, 2).is_some()
    })
    .await;
    eprintln!("the majority elected a leader {took:?} after the cut");
    let to_majority: Vec<_> = others.iter().map(|&i| q.addr(i)).collect();
    for pool in ["m1", "m2", "m3", "majority"] {
        let (rv, outs) = q
            .command_from(
                others[1],
                to_majority.clone(),
                json!({"prefix": "osd pool create", "pool": pool, "pg_num": 8}),
                WAIT,
            )
            .await
            .expect("command on the majority side");
        assert_eq!(rv, 0, "the majority commits: {outs}");
    }
    until("the majority's observer sees its pool", WAIT, || {
        majority.has_pool("majority")
    })
    .await;

    // The minority: a change sent to the old leader (the only mon its side
    // reaches) does not commit.
    let r = q
        .command_from(
            old,
            vec![q.addr(old)],
            json!({"prefix": "osd pool create", "pool": "minority", "pg_num": 8}),
            Duration::from_secs(6),
        )
        .await;
    assert!(
        !matches!(r, Ok((0, _))),
        "a lone mon committed a map: {r:?}"
    );
    eprintln!("the minority's change: {r:?}");
    assert_eq!(q.last_committed(old), e0, "the minority's epoch moved");
    assert!(
        minority.newest() <= e0 as u32,
        "the minority client went past {e0}"
    );
    assert!(!minority.has_pool("majority"));

    // Heal: the old leader steps down and takes the majority's epochs.
    q.lab.heal(old);
    let majority_epoch = q.last_committed(others[0]);
    let healed = until("the old leader catches up as a follower", WAIT, || {
        q.status(old).is_some_and(|s| {
            s["state"] == "peon" && s["osdmap_last_committed"].as_u64() >= Some(majority_epoch)
        })
    })
    .await;
    eprintln!("the old leader followed and caught up {healed:?} after healing");
    let (rv, outs) = q
        .command_from(
            old,
            q.addrs(),
            json!({"prefix": "osd pool create", "pool": "after", "pg_num": 8}),
            WAIT,
        )
        .await
        .expect("command after healing");
    assert_eq!(rv, 0, "{outs}");
    until(
        "both observers see the pool made after healing",
        WAIT,
        || minority.has_pool("after") && majority.has_pool("after"),
    )
    .await;
    until("all mons hold the newest epoch", WAIT, || {
        let e = q.last_committed(others[0]);
        all.iter().all(|&i| q.last_committed(i) == e)
    })
    .await;

    // One content per epoch across both sides; the minority's map never
    // existed.
    let mut seen = BTreeMap::new();
    for o in [&minority, &majority] {
        let h = o.history.lock().clone();
        check_one_content_per_epoch(&mut seen, &h);
        assert!(
            h.iter().all(|m| m.pool_by_name("minority").is_err()),
            "an uncommitted map reached a client"
        );
    }
    assert!(
        minority.has_pool("majority"),
        "the minority client caught up"
    );
    assert!(seen.len() >= 4, "only {} epochs seen", seen.len());
    eprintln!(
        "{} epochs seen, one content each; the old leader was mon.{}",
        seen.len(),
        q.names[old]
    );
}
