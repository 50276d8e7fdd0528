//! Caps enforced beyond the mon, with cephx on every side (the fixture of
//! `auth_cluster.rs`): the OSDs check each client op against the client's
//! `osd` caps carried in its ticket (EPERM when refused), the mgr checks
//! commands against `mgr` caps (EACCES), and keyed clients renew their
//! tickets on the lifetime the mon issues (`auth_service_ticket_ttl`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kalmar_client::{ClientConfig, ClientError, IoCtx, Rados};
use kalmar_msgr::auth::MsgrAuth;
use kalmar_msgr::{event_channel, Connection, EntityName, MsgrConfig};
use kalmar_proto::monc::MonClient;
use kalmar_tests::{wait_for, Cluster, ClusterOpts};
use serde_json::{json, Value};

fn cephx_opts(mgrs: u32) -> ClusterOpts {
    let mut o = ClusterOpts {
        mgrs,
        ..ClusterOpts::default()
    };
    for k in [
        "auth_cluster_required",
        "auth_service_required",
        "auth_client_required",
    ] {
        o.settings.push((k.to_string(), "cephx".to_string()));
    }
    o
}

/// Creates `entity` with `caps` (`["mon", "allow r", "osd", ...]`) and
/// returns its authentication.
async fn keyed(c: &Cluster, entity: &str, caps: &[&str]) -> anyhow::Result<MsgrAuth> {
    c.mon_command(json!({"prefix": "auth get-or-create", "entity": entity, "caps": caps}))
        .await?;
    let k = c
        .mon_command(json!({"prefix": "auth print-key", "entity": entity}))
        .await?;
    let key: kalmar_auth::CryptoKey = k["key"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no key in {k}"))?
        .parse()
        .map_err(|e| anyhow::anyhow!("key of {entity}: {e:?}"))?;
    Ok(MsgrAuth {
        client: Some(Arc::new(kalmar_auth::ClientAuth::new(entity, Some(key)))),
        require_server_proof: true,
        ..Default::default()
    })
}

/// A client as `auth`, with an I/O context on each of `pools`.
async fn client_as(
    c: &Cluster,
    auth: MsgrAuth,
    pools: &[&str],
) -> anyhow::Result<(Rados, Vec<IoCtx>)> {
    let mut cfg = ClientConfig::new(c.mon);
    cfg.op_timeout = Duration::from_secs(30);
    cfg.msgr.auth = auth;
    let rados = c.client_with(cfg).await?;
    let mut ios = Vec::new();
    for p in pools {
        let io = wait_for(
            "the pool in the client's map",
            Duration::from_secs(30),
            || async { rados.ioctx(p).ok() },
        )
        .await?;
        ios.push(io);
    }
    Ok((rados, ios))
}

#[track_caller]
fn errno_of<T: std::fmt::Debug>(r: Result<T, ClientError>) -> i32 {
    match r {
        Err(e) => e.errno_value() as i32,
        Ok(v) => panic!("expected a refusal, got {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn osds_enforce_osd_caps_and_the_mgr_mgr_caps() -> anyhow::Result<()> {
    let c = Cluster::start(cephx_opts(1)).await?;
    c.create_pool("a", 8, 2, 1).await?;
    c.create_pool("b", 8, 2, 1).await?;
    let (admin, ios) = client_as(&c, c.admin_auth()?, &["a", "b"]).await?;
    let (pa, pb) = (ios[0].pool_id(), ios[1].pool_id());
    c.wait_pgs(pa, 8, &["active", "clean"], Duration::from_secs(60))
        .await?;
    c.wait_pgs(pb, 8, &["active", "clean"], Duration::from_secs(60))
        .await?;
    let seed = Bytes::from_static(b"seed");
    ios[0].write_full("o", seed.clone()).await?;
    ios[1].write_full("o", seed.clone()).await?;
    let data = Bytes::from_static(b"new");

    // allow r pool=a: reads a; cannot write a; cannot read b.
    let ro = keyed(
        &c,
        "client.ro",
        &["mon", "allow r", "osd", "allow r pool=a"],
    )
    .await?;
    let (_r1, io) = client_as(&c, ro, &["a", "b"]).await?;
    assert_eq!(io[0].read("o", 0, 0).await?, seed);
    assert_eq!(
        errno_of(io[0].write_full("o", data.clone()).await),
        libc::EPERM
    );
    assert_eq!(errno_of(io[1].read("o", 0, 0).await), libc::EPERM);
    // The refusals leave the session usable.
    assert_eq!(io[0].read("o", 0, 0).await?, seed);

    // allow rw pool=a: writes a only.
    let rw = keyed(
        &c,
        "client.rw",
        &["mon", "allow r", "osd", "allow rw pool=a"],
    )
    .await?;
    let (r2, io) = client_as(&c, rw, &["a", "b"]).await?;
    io[0].write_full("rw", data.clone()).await?;
    assert_eq!(io[0].read("rw", 0, 0).await?, data);
    assert_eq!(
        errno_of(io[1].write_full("rw", data.clone()).await),
        libc::EPERM
    );
    assert_eq!(errno_of(io[1].read("o", 0, 0).await), libc::EPERM);
    // PG commands need allow *: refused as Ceph's OSD refuses commands.
    let pg = kalmar_maps::PgId {
        pool: ios[0].pool_id(),
        seed: 0,
    };
    assert_eq!(
        errno_of(
            r2.pg_command(pg, kalmar_proto::client::OsdOp::PgQuery)
                .await
        ),
        libc::EACCES
    );
    admin
        .pg_command(pg, kalmar_proto::client::OsdOp::PgQuery)
        .await?;

    // profile rbd pool=a: writes a, not b.
    let rbd = keyed(
        &c,
        "client.rbd",
        &["mon", "profile rbd", "osd", "profile rbd pool=a"],
    )
    .await?;
    let (_r3, io) = client_as(&c, rbd, &["a", "b"]).await?;
    io[0].write_full("rbd", data.clone()).await?;
    assert_eq!(
        errno_of(io[1].write_full("rbd", data.clone()).await),
        libc::EPERM
    );

    // No osd caps at all: every op refused.
    let none = keyed(&c, "client.noosd", &["mon", "allow r"]).await?;
    let (_r4, io) = client_as(&c, none, &["a"]).await?;
    assert_eq!(errno_of(io[0].read("o", 0, 0).await), libc::EPERM);
    assert_eq!(
        errno_of(io[0].write_full("x", data.clone()).await),
        libc::EPERM
    );
    // The admin (allow *) still reads everything the others wrote.
    assert_eq!(ios[0].read("rbd", 0, 0).await?, data);
    assert_eq!(ios[1].read("o", 0, 0).await?, seed);

    // The mgr: a read command with allow r; a write refused (EACCES);
    // the same write accepted for allow * (client.admin).
    let mgr_r = keyed(&c, "client.mgrr", &["mon", "allow r", "mgr", "allow r"]).await?;
    let addr = active_mgr(&c).await?;
    let set = json!({"prefix": "config set", "who": "mgr",
                     "name": "mgr/status/server_addr", "value": "127.0.0.1"});
    let df = json!({"prefix": "df", "format": "json"});
    wait_for(
        "df from the mgr as client.mgrr",
        Duration::from_secs(30),
        || async {
            let r = mgr_command(&c, &mgr_r, "client.mgrr", addr, df.clone())
                .await
                .ok()?;
            (r.0 == 0).then_some(())
        },
    )
    .await?;
    let (rv, outs) = mgr_command(&c, &mgr_r, "client.mgrr", addr, set.clone()).await?;
    assert_eq!(rv, -libc::EACCES, "{outs}");
    assert!(outs.contains("access denied"), "{outs}");
    let admin_auth = c.admin_auth()?;
    wait_for(
        "config set as client.admin",
        Duration::from_secs(60),
        || async {
            let r = mgr_command(&c, &admin_auth, "client.admin", addr, set.clone())
                .await
                .ok()?;
            assert_ne!(r.0, -libc::EACCES, "{}", r.1);
            (r.0 == 0).then_some(())
        },
    )
    .await?;
    // A plugin-free write by a client with no mgr caps: refused too.
    let (rv, _) = mgr_command(
        &c,
        &mgr_r,
        "client.mgrr",
        addr,
        json!({"prefix": "config rm", "who": "mgr", "name": "mgr/status/server_addr"}),
    )
    .await?;
    assert_eq!(rv, -libc::EACCES);
    Ok(())
}

/// The active mgr's address from the mon's MgrMap (bounded wait).
async fn active_mgr(c: &Cluster) -> anyhow::Result<SocketAddr> {
    wait_for("an available mgr", Duration::from_secs(60), || async {
        let m = c.mon_command(json!({"prefix": "mgr dump"})).await.ok()?;
        if m["available"] != json!(true) {
            return None;
        }
        m["active_addr"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
    })
    .await
}

/// One command to the mgr at `addr` as `entity` (tickets from the mon
/// first, as the CLI does): `(retval, outs)`.
async fn mgr_command(
    c: &Cluster,
    auth: &MsgrAuth,
    entity: &str,
    addr: SocketAddr,
    cmd: Value,
) -> anyhow::Result<(i32, String)> {
    let me: EntityName = entity.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let cfg = MsgrConfig {
        auth: auth.clone(),
        reconnect_max_attempts: Some(0),
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
        ..MsgrConfig::default()
    };
    let (mon, _ev) =
        MonClient::connect_any(&[c.mon], me.clone(), uuid::Uuid::nil(), cfg.clone()).await?;
    mon.close().await;
    let (m, _ev) = MonClient::connect(addr, me, uuid::Uuid::nil(), cfg).await?;
    let r = m.command(&cmd, Duration::from_secs(20)).await;
    m.close().await;
    let r = r?;
    Ok((r.retval, r.outs))
}

/// Keyed clients renew on the lifetime the mon issues: with
/// `auth_service_ticket_ttl = 10` (the mon's floor), a client whose first
/// tickets are long expired still opens new OSD sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_renew_tickets_on_a_short_ttl() -> anyhow::Result<()> {
    let mut o = cephx_opts(0);
    o.settings
        .push(("auth_service_ticket_ttl".into(), "10".into()));
    let c = Cluster::start(o).await?;
    c.create_pool("t", 8, 2, 1).await?;
    let auth = c.admin_auth()?;
    let (_rados, io) = client_as(&c, auth.clone(), &["t"]).await?;
    let held = auth
        .client
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no client"))?;
    // The client learned the mon's lifetime and renews on a quarter.
    assert_eq!(held.ticket_lifetime_secs(), Some(10));
    assert_eq!(held.renewal_period(), Some(Duration::from_secs(2)));
    io[0].write_full("first", Bytes::from_static(b"1")).await?;
    // Two lifetimes later the first tickets are long expired.
    tokio::time::sleep(Duration::from_secs(22)).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    assert!(
        held.has_ticket(kalmar_auth::Service::Osd, now),
        "the client holds no valid OSD ticket after two lifetimes"
    );
    // A new session to an OSD with the renewed tickets is let in.
    let osd = osd_public_addr(&c, 0).await?;
    let cfg = MsgrConfig {
        auth,
        reconnect_max_attempts: Some(0),
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
        ..MsgrConfig::default()
    };
    let (tx, _rx) = event_channel(&cfg);
    let conn = Connection::connect(
        osd,
        "client.admin"
            .parse::<EntityName>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?,
        uuid::Uuid::nil(),
        cfg,
        tx,
    )
    .await?;
    conn.close().await;
    // And the client's own I/O still goes through.
    io[0].write_full("later", Bytes::from_static(b"2")).await?;
    assert_eq!(io[0].read("first", 0, 0).await?, Bytes::from_static(b"1"));
    Ok(())
}

/// The client (public) address of osd.`id` from the mon's map.
async fn osd_public_addr(c: &Cluster, id: u64) -> anyhow::Result<SocketAddr> {
    let d = c.mon_command(json!({"prefix": "osd dump"})).await?;
    let osd = d["osds"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["osd"] == json!(id)))
        .ok_or_else(|| anyhow::anyhow!("osd.{id} not in the map"))?;
    let a = osd["public_addr"].as_str().unwrap_or_default();
    Ok(a.split('/').next().unwrap_or_default().parse()?)
}
