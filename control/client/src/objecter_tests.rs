//! The objecter against scripted OSDs (the fake transport) on a paused
//! tokio clock: time only moves when every task waits, so deadlines and
//! backoffs are checked to the exact virtual instant, and "nothing was
//! resent" is checked after a stretch of virtual time, not a real sleep.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kalmar_maps::osd::OsdAddrs;
use kalmar_maps::OsdMap;
use kalmar_proto::client::{flags, OsdOp, OsdOpReply};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::*;
use crate::testing::{
    cluster_map, delete_pool, fake_objecter, mark_down, next_map, osd_addr, primary_of,
    test_config, FakeOptions, FakeOsds, FakeRequest, FakeTransport, POOL,
};

const OID: &str = "obj";
const OP_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(80);
/// Longer than any wait a test expects: a request that does not come by
/// then is a failure, not a hang.
const GUARD: Duration = Duration::from_secs(3600);

type Op = JoinHandle<Result<OsdOpReply, ClientError>>;

fn setup_with(map: OsdMap, opts: FakeOptions) -> (Arc<Objecter<FakeTransport>>, FakeOsds) {
    let mut c = test_config();
    c.op_timeout = OP_TIMEOUT;
    c.retry_backoff_min = BACKOFF_MIN;
    c.retry_backoff_max = BACKOFF_MAX;
    fake_objecter(c, opts, map)
}

fn setup(map: OsdMap) -> (Arc<Objecter<FakeTransport>>, FakeOsds) {
    setup_with(
        map,
        FakeOptions {
            record: true,
            ..FakeOptions::default()
        },
    )
}

fn write(o: &Arc<Objecter<FakeTransport>>) -> Op {
    let o = o.clone();
    tokio::spawn(async move {
        let op = OsdOp::Write {
            offset: 0,
            data: Bytes::from_static(b"data"),
        };
        o.submit(POOL, Target::Object(OID), [op]).await
    })
}

async fn next(osds: &mut FakeOsds) -> FakeRequest {
    tokio::time::timeout(GUARD, osds.next())
        .await
        .expect("a request within the guard time")
}

async fn result(op: Op) -> Result<OsdOpReply, ClientError> {
    tokio::time::timeout(GUARD, op)
        .await
        .expect("the op ends within the guard time")
        .expect("the op task does not panic")
}

/// Lets virtual time pass, then checks no request was sent meanwhile.
async fn nothing_sent_for(osds: &mut FakeOsds, d: Duration) {
    tokio::time::sleep(d).await;
    if let Some(r) = osds.try_next() {
        panic!("unexpected request: {r:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_reply_answers_the_op_and_frees_its_slot() {
    let map = cluster_map(4, 32, 3);
    let (pg, primary) = primary_of(&map, POOL, OID);
    let (o, mut osds) = setup(map);
    let op = write(&o);
    let r = next(&mut osds).await;
    assert_eq!((r.osd, r.pgid, r.map_epoch), (primary, pg, 1));
    assert_eq!(r.flags & flags::RETRY, 0, "a first send is no retry");
    let req = r.req.as_ref().expect("recorded");
    assert_eq!((req.oid.as_str(), req.client, req.nonce), (OID, 4242, 7));
    o.on_reply(r.ok());
    let reply = result(op).await.expect("ok");
    assert_eq!(reply.version, r.tid);
    assert_eq!(o.ops_in_flight(), 0);

    // An OSD error comes back typed.
    let op = write(&o);
    let r = next(&mut osds).await;
    assert_ne!(r.tid, reply.tid, "each op its own tid");
    o.on_reply(r.answer(-libc::ENOENT));
    assert!(
        matches!(result(op).await, Err(ClientError::ObjectNotFound { object, .. }) if object == OID)
    );
    let op = write(&o);
    let r = next(&mut osds).await;
    o.on_reply(r.answer(-libc::ENOSPC));
    assert!(matches!(
        result(op).await,
        Err(ClientError::Osd {
            errno: Errno::ENOSPC,
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn eagain_with_retry_epoch_waits_for_that_map_then_resends_with_retry() {
    let map1 = cluster_map(4, 32, 3);
    let (o, mut osds) = setup(map1.clone());
    let op = write(&o);
    let first = next(&mut osds).await;
    o.on_reply(first.eagain(3));
    // Not before epoch 3: neither time nor epoch 2 brings a resend.
    nothing_sent_for(&mut osds, Duration::from_secs(5)).await;
    let map2 = next_map(&map1, |_| {});
    o.apply_map(map2.clone());
    nothing_sent_for(&mut osds, Duration::from_secs(1)).await;
    o.apply_map(next_map(&map2, |_| {}));
    let again = next(&mut osds).await;
    assert_eq!(again.tid, first.tid, "the same request id");
    assert_ne!(again.flags & flags::RETRY, 0, "marked as a retry");
    assert_eq!(again.map_epoch, 3);
    o.on_reply(again.ok());
    assert!(result(op).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_map_moving_the_primary_resends_to_the_new_primary_only() {
    let map1 = cluster_map(4, 32, 3);
    let (pg, old) = primary_of(&map1, POOL, OID);
    let (o, mut osds) = setup(map1.clone());
    let op = write(&o);
    let first = next(&mut osds).await;
    assert_eq!(first.osd, old);
    // A map that does not move the PG resends nothing.
    let map2 = next_map(&map1, |_| {});
    o.apply_map(map2.clone());
    nothing_sent_for(&mut osds, Duration::from_secs(1)).await;

    let map3 = mark_down(&map2, old);
    let (pg3, new) = primary_of(&map3, POOL, OID);
    assert_eq!(pg3, pg);
    assert_ne!(new, old);
    o.apply_map(map3);
    let again = next(&mut osds).await;
    assert_eq!((again.osd, again.tid, again.map_epoch), (new, first.tid, 3));
    assert_ne!(again.flags & flags::RETRY, 0);
    o.on_reply(again.ok());
    assert!(result(op).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_lost_session_resends_on_a_new_session_to_the_same_osd() {
    let map = cluster_map(4, 32, 3);
    let (_, primary) = primary_of(&map, POOL, OID);
    let (o, mut osds) = setup(map);
    let op = write(&o);
    let first = next(&mut osds).await;
    assert_eq!(osds.sessions_opened(primary), 1);
    osds.lose_sessions(primary, &o);
    let again = next(&mut osds).await;
    assert_eq!((again.osd, again.tid), (primary, first.tid));
    assert_ne!(again.session, first.session, "on a new session");
    assert_ne!(again.flags & flags::RETRY, 0);
    assert_eq!(osds.sessions_opened(primary), 2);
    // The lost session's late answer (same tid) is as good as any.
    o.on_reply(first.ok());
    assert!(result(op).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_op_times_out_at_its_deadline() {
    let (o, mut osds) = setup(cluster_map(4, 32, 3));
    let start = Instant::now();
    let op = write(&o);
    let _ignored = next(&mut osds).await;
    let r = result(op).await;
    let waited = start.elapsed();
    assert!(
        matches!(&r, Err(ClientError::Timeout { ms, .. }) if *ms == OP_TIMEOUT.as_millis()),
        "{r:?}"
    );
    assert!(
        waited >= OP_TIMEOUT && waited < OP_TIMEOUT + Duration::from_millis(1),
        "timed out after {waited:?}"
    );
    assert_eq!(o.ops_in_flight(), 0, "the slot is given back");
}

#[tokio::test(start_paused = true)]
async fn a_deleted_pool_fails_the_op_with_no_such_pool() {
    let map = cluster_map(4, 32, 3);
    let (o, mut osds) = setup(map.clone());
    let op = write(&o);
    let _in_flight = next(&mut osds).await;
    o.apply_map(delete_pool(&map, POOL));
    assert!(matches!(result(op).await, Err(ClientError::NoSuchPool(_))));
    // Later ops fail at once.
    assert!(matches!(
        result(write(&o)).await,
        Err(ClientError::NoSuchPool(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn an_osd_whose_map_has_no_such_pool_is_no_such_pool_not_a_missing_object() {
    let (o, mut osds) = setup(cluster_map(4, 32, 3));
    let op = write(&o);
    let r = next(&mut osds).await;
    // The OSD's dispatcher answers before any PG, with epoch 0.
    let mut gone = r.answer(-libc::ENOENT);
    gone.map_epoch = 0;
    o.on_reply(gone);
    let e = result(op).await.expect_err("fails");
    assert!(matches!(e, ClientError::NoSuchPool(_)), "{e:?}");
    assert!(!e.is_not_found());
}

#[tokio::test(start_paused = true)]
async fn retry_backoff_doubles_up_to_its_bound() {
    let (o, mut osds) = setup(cluster_map(4, 32, 3));
    let op = write(&o);
    let mut gaps = Vec::new();
    let mut r = next(&mut osds).await;
    let mut at = Instant::now();
    for _ in 0..6 {
        // Retry with a map the client already has: back off and resend.
        o.on_reply(r.eagain(1));
        r = next(&mut osds).await;
        gaps.push(at.elapsed());
        at = Instant::now();
    }
    let ms = |n| Duration::from_millis(n);
    assert_eq!(gaps, [ms(10), ms(20), ms(40), ms(80), ms(80), ms(80)]);
    o.on_reply(r.ok());
    assert!(result(op).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn with_no_primary_up_the_op_waits_for_a_map_with_one() {
    let map1 = cluster_map(3, 8, 3);
    let map2 = mark_down(&map1, 0);
    let map3 = mark_down(&map2, 1);
    let down = mark_down(&map3, 2);
    let (o, mut osds) = setup(down.clone());
    let op = write(&o);
    nothing_sent_for(&mut osds, Duration::from_secs(5)).await;
    let up = next_map(&down, |inc| {
        for i in 0..3 {
            inc.new_up.insert(i, OsdAddrs::all(osd_addr(i)));
        }
    });
    let (_, primary) = primary_of(&up, POOL, OID);
    o.apply_map(up);
    let r = next(&mut osds).await;
    assert_eq!(r.osd, primary);
    o.on_reply(r.ok());
    assert!(result(op).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn shutdown_fails_ops_in_flight_and_later_ones() {
    let (o, mut osds) = setup(cluster_map(4, 32, 3));
    let op = write(&o);
    let _in_flight = next(&mut osds).await;
    o.shutdown().await;
    assert!(matches!(result(op).await, Err(ClientError::Shutdown)));
    assert!(matches!(
        result(write(&o)).await,
        Err(ClientError::Shutdown)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_request_over_the_session_limit_fails_at_once() {
    let (o, _osds) = setup_with(
        cluster_map(4, 32, 3),
        FakeOptions {
            max_message_bytes: 2,
            ..FakeOptions::default()
        },
    );
    let start = Instant::now();
    let r = result(write(&o)).await;
    assert!(
        matches!(r, Err(ClientError::TooLarge { len: 4, max: 2, .. })),
        "{r:?}"
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "not at the deadline");
}
