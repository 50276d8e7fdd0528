//! The DaemonServer with real MgrClients over loopback, no mon and no
//! Python: sessions open and get configured, counters are declared once
//! and sampled, PG stats land in the PGMap, a report for another daemon
//! is refused, and after a "failover" (a new MgrMap naming another
//! server) the client opens a session there and declares everything again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kalmar_common::perf::{CounterKind, PerfCollection, PerfCountersBuilder, Unit};
use kalmar_maps::{EntityAddr, MgrMap, PgId};
use kalmar_mgr::{start_server, MgrOptions, MgrShared};
use kalmar_mgr_client::{MgrClient, MgrClientConfig};
use kalmar_mgr_py::DaemonKey;
use kalmar_msgr::{EntityName, MsgrConfig};
use kalmar_proto::pgstats::{OsdPgStats, PgStatEntry};

async fn server(name: &str) -> (Arc<MgrShared>, SocketAddrGuard) {
    let opts = MgrOptions {
        mgr_stats_period: Duration::from_millis(200),
        ..MgrOptions::default()
    };
    let (listener, rx) = start_server(
        "127.0.0.1:0".parse().expect("addr"),
        name,
        &MsgrConfig::default(),
    )
    .await
    .expect("bind");
    let addr = EntityAddr::new(listener.local_addr(), 1);
    let shared = MgrShared::standalone(name, opts, addr);
    tokio::spawn(kalmar_mgr::server::serve(shared.clone(), rx));
    (shared, SocketAddrGuard(listener))
}

/// Keeps the listener alive for the test.
struct SocketAddrGuard(#[allow(dead_code)] kalmar_msgr::Listener);

fn map(epoch: u32, gid: u64, name: &str, addr: EntityAddr) -> MgrMap {
    MgrMap {
        epoch,
        active_gid: gid,
        active_name: name.into(),
        active_addr: addr,
        available: true,
        ..MgrMap::default()
    }
}

async fn wait<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn op_w_samples(shared: &MgrShared) -> Vec<u64> {
    let Some(a) = shared.active() else {
        return Vec::new();
    };
    a.daemon_state
        .history(&DaemonKey::new("osd", "3"), "osd.op_w")
        .map(|(_, h)| h.iter().map(|s| s.v).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_reports_pg_stats_and_failover() {
    let (a, _ga) = server("a").await;
    let perf = PerfCollection::new();
    let mut b = PerfCountersBuilder::new("osd");
    let op_w = b.add("op_w", CounterKind::Counter, "writes", "wr", 8, Unit::None);
    b.add(
        "op_w_lat",
        CounterKind::TimeAvg,
        "latency",
        "wl",
        9,
        Unit::None,
    );
    b.add(
        "subop_w",
        CounterKind::Counter,
        "debug only",
        "",
        0,
        Unit::None,
    );
    let logger = b.build();
    perf.add(logger.clone());
    let client = MgrClient::start(MgrClientConfig::new(EntityName::osd(3)), perf);
    client.handle_mgrmap(&map(1, 10, "a", a.addr));
    wait("configured", || client.status().configured.then_some(())).await;
    logger.inc(op_w, 5);
    wait("op_w = 5 at a", || {
        op_w_samples(&a)
            .last()
            .is_some_and(|v| *v == 5)
            .then_some(())
    })
    .await;
    let active = a.active().expect("active");
    let counters = active.daemon_state.counters(&DaemonKey::new("osd", "3"));
    let paths: Vec<&str> = counters.iter().map(|c| c.ty.path.as_str()).collect();
    assert_eq!(
        paths,
        ["osd.op_w", "osd.op_w_lat"],
        "priority-0 counters are not reported"
    );

    // PG stats from the OSD go into the PGMap.
    let stats = OsdPgStats {
        osd_id: 3,
        epoch: 1,
        pgs: vec![PgStatEntry {
            pgid: PgId::new(1, 0),
            state: "active+clean".into(),
            num_objects: 9,
            ..Default::default()
        }],
        osd_stat: Default::default(),
    };
    wait("pg stats sent", || {
        client.send_pg_stats(&stats).then_some(())
    })
    .await;
    wait("pg stats applied", || {
        (active.pgmap.lock().osd_stats().contains_key(&3)).then_some(())
    })
    .await;

    // "Failover": a new map names server b; the client re-opens there and
    // declares its counters again, and the values keep flowing.
    let (b_srv, _gb) = server("b").await;
    let opened = client.status().sessions_opened;
    client.handle_mgrmap(&map(2, 11, "b", b_srv.addr));
    wait("session at b", || {
        (client.status().mgr_name == "b" && client.status().configured).then_some(())
    })
    .await;
    assert_eq!(client.status().sessions_opened, opened + 1);
    logger.inc(op_w, 2);
    wait("op_w = 7 at b", || {
        op_w_samples(&b_srv)
            .last()
            .is_some_and(|v| *v == 7)
            .then_some(())
    })
    .await;
    let samples = op_w_samples(&b_srv);
    assert!(samples.len() <= kalmar_mgr_py::SAMPLES_PER_COUNTER);
    // An old map does not move the client back.
    client.handle_mgrmap(&map(1, 10, "a", a.addr));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.status().mgr_name, "b");
    // History is bounded at 20 samples per counter.
    wait("20 samples", || {
        (op_w_samples(&b_srv).len() == kalmar_mgr_py::SAMPLES_PER_COUNTER).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        op_w_samples(&b_srv).len(),
        kalmar_mgr_py::SAMPLES_PER_COUNTER
    );
    client.close().await;
}

/// Sends `msg` as `who` and waits for the server to end the session.
async fn expect_closed(
    addr: std::net::SocketAddr,
    who: EntityName,
    msg: kalmar_msgr::Message,
) -> String {
    let cfg = MsgrConfig {
        reconnect_max_attempts: Some(1),
        ..MsgrConfig::default()
    };
    let (tx, mut rx) = kalmar_msgr::event_channel(&cfg);
    let conn = kalmar_msgr::Connection::connect(addr, who, uuid::Uuid::nil(), cfg, tx)
        .await
        .expect("connect");
    conn.send(msg).await.expect("send");
    let ev = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Some(kalmar_msgr::Event::Closed(_, reason)) => return reason,
                Some(_) => {}
                None => return "event stream ended".to_string(),
            }
        }
    })
    .await
    .expect("the server closes the session");
    drop(conn);
    ev
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sessions_are_closed() {
    use kalmar_proto::mgr::{MgrOpen, MgrReport};
    use kalmar_proto::Payload;
    let (a, _ga) = server("a").await;
    let addr = a.addr.addr;
    // A report before MgrOpen.
    let r = MgrReport {
        daemon_name: "osd.5".into(),
        service_name: "osd".into(),
        ..Default::default()
    };
    let why = expect_closed(addr, EntityName::osd(5), r.to_message()).await;
    assert!(!why.is_empty());
    // MgrOpen naming another daemon than the session's.
    let open = MgrOpen {
        daemon_name: "osd.7".into(),
        service_name: "osd".into(),
        ..Default::default()
    };
    let why = expect_closed(addr, EntityName::osd(6), open.to_message()).await;
    assert!(!why.is_empty());
    // A malformed MgrOpen.
    let garbage = kalmar_msgr::Message::new(kalmar_proto::registry::MGR_OPEN, vec![1, 2, 3]);
    let why = expect_closed(addr, EntityName::osd(8), garbage).await;
    assert!(!why.is_empty());
    // Packed values that do not match the declarations.
    let cfg = MsgrConfig::default();
    let (tx, mut rx) = kalmar_msgr::event_channel(&cfg);
    let conn =
        kalmar_msgr::Connection::connect(addr, EntityName::osd(9), uuid::Uuid::nil(), cfg, tx)
            .await
            .expect("connect");
    let open = MgrOpen {
        daemon_name: "osd.9".into(),
        service_name: "osd".into(),
        ..Default::default()
    };
    conn.send(open.to_message()).await.expect("open");
    let bad = MgrReport {
        daemon_name: "osd.9".into(),
        service_name: "osd".into(),
        packed: kalmar_common::encoding::Blob(vec![0; 8]),
        ..Default::default()
    };
    conn.send(bad.to_message()).await.expect("report");
    let why = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(kalmar_msgr::Event::Closed(_, r)) = rx.recv().await {
                return r;
            }
        }
    })
    .await
    .expect("closed");
    assert!(!why.is_empty());
    assert_eq!(a.perf.get(kalmar_mgr::perf::L_REPORTS_REFUSED).value, 1);
    // Only osd.9's MgrOpen was accepted, and nothing was ingested.
    assert_eq!(a.perf.get(kalmar_mgr::perf::L_OPENS).value, 1);
    assert_eq!(a.perf.get(kalmar_mgr::perf::L_REPORTS).value, 0);
}
