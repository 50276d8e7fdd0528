//! A whole cluster with cephx on every side: vstart gives each daemon its
//! key (osd.N, mgr.x), the OSDs and the mgr authenticate with the mon and
//! take tickets for each other; clients use client.admin. Checked: the
//! cluster comes up (peering, reports, the mgr) and serves I/O, a client
//! without a key is refused, and an entity posing as an OSD (no key, a
//! wrong key, or another entity's ticket) is refused by the OSDs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kalmar_client::{ClientConfig, Rados};
use kalmar_msgr::auth::MsgrAuth;
use kalmar_msgr::{event_channel, Connection, EntityName, EntityType, MsgrConfig};
use kalmar_tests::{Cluster, ClusterOpts};
use serde_json::json;

fn cephx_opts() -> ClusterOpts {
    let mut o = ClusterOpts {
        mgrs: 1,
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

/// The cluster (peer) address of osd.`id` from the mon's map.
async fn cluster_addr(c: &Cluster, id: u64) -> anyhow::Result<SocketAddr> {
    let d = c.mon_command(json!({"prefix": "osd dump"})).await?;
    let osd = d["osds"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["osd"] == json!(id)))
        .ok_or_else(|| anyhow::anyhow!("osd.{id} not in the map"))?;
    let a = osd["cluster_addr"].as_str().unwrap_or_default();
    Ok(a.split('/').next().unwrap_or_default().parse()?)
}

/// Opens a session to `addr` as `me` with `auth`; Ok when the OSD lets
/// it in.
async fn dial(addr: SocketAddr, me: EntityName, auth: MsgrAuth) -> anyhow::Result<()> {
    let cfg = MsgrConfig {
        auth,
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
        reconnect_max_attempts: Some(0),
        ..MsgrConfig::default()
    };
    let (tx, _rx) = event_channel(&cfg);
    let c = Connection::connect(addr, me, uuid::Uuid::nil(), cfg, tx).await?;
    c.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cephx_cluster_serves_keyed_entities_and_refuses_impostors() -> anyhow::Result<()> {
    let c = Cluster::start(cephx_opts()).await?;
    // Every daemon got its own key, 0600, next to the conf.
    for name in ["osd.0", "osd.1", "osd.2", "mgr.x"] {
        let p = c.dir().join(format!("kalmar.{name}.keyring"));
        let ring = kalmar_auth::Keyring::read_file(&p)?;
        assert!(ring.get(name).is_some(), "{} lacks {name}", p.display());
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&p)?.permissions());
        assert_eq!(mode & 0o777, 0o600, "{}", p.display());
    }
    // Peering between the OSDs and their reports to the mon work: PGs
    // go active+clean; the admin's I/O goes through.
    c.create_pool("sec", 8, 3, 2).await?;
    c.wait_pgs(1, 8, &["active", "clean"], Duration::from_secs(90))
        .await?;
    let rados = c.client().await?;
    let io = kalmar_tests::wait_for(
        "the pool in the client's map",
        Duration::from_secs(30),
        || async { rados.ioctx("sec").ok() },
    )
    .await?;
    for i in 0..8 {
        let data = Bytes::from(format!("secret {i}").repeat(i + 1));
        io.write_full(&format!("o{i}"), data.clone()).await?;
        assert_eq!(io.read(&format!("o{i}"), 0, 0).await?, data);
    }
    // Keyed clients all connect as client.admin; each instance still has
    // its own client id, so the OSDs' duplicate-op detection (by client
    // id, nonce and tid) never takes one client's first write for
    // another's.
    let (r1, r2) = (c.client().await?, c.client().await?);
    assert_ne!(r1.client_id(), r2.client_id());
    let io1 = kalmar_tests::wait_for("the pool in r1's map", Duration::from_secs(30), || async {
        r1.ioctx("sec").ok()
    })
    .await?;
    let io2 = kalmar_tests::wait_for("the pool in r2's map", Duration::from_secs(30), || async {
        r2.ioctx("sec").ok()
    })
    .await?;
    io1.write_full("shared", Bytes::from_static(b"first"))
        .await?;
    io2.write_full("shared", Bytes::from_static(b"second"))
        .await?;
    assert_eq!(
        io1.read("shared", 0, 0).await?,
        Bytes::from_static(b"second")
    );
    // The OSDs' perf reports reach the mgr (it checks their tickets).
    let mgr = c.mon_command(json!({"prefix": "mgr stat"})).await?;
    assert_eq!(mgr["available"], json!(true), "{mgr}");

    // A client without a key: the mon refuses it.
    let mut cfg = ClientConfig::new(c.mon);
    cfg.mon_timeout = Duration::from_secs(5);
    cfg.msgr.connect_timeout = Duration::from_secs(5);
    cfg.msgr.reconnect_max_attempts = Some(0);
    cfg.msgr.auth = MsgrAuth {
        client: Some(Arc::new(kalmar_auth::ClientAuth::new("client.nokey", None))),
        ..Default::default()
    };
    assert!(
        Rados::connect(cfg).await.is_err(),
        "a keyless client was let in"
    );

    let peer = cluster_addr(&c, 1).await?;
    // The genuine osd.0 key gets in to osd.1 (the path above, checked
    // directly): authenticate with the mon for tickets, then dial.
    let osd0 = c.auth_as("osd.0")?;
    dial(c.mon, EntityName::osd(0), osd0.clone()).await?;
    dial(peer, EntityName::osd(0), osd0).await?;
    // Posing as osd.2 with no key.
    let keyless = MsgrAuth::default();
    assert!(dial(peer, EntityName::osd(2), keyless).await.is_err());
    // Posing as osd.2 with a key of its own making.
    let forged = MsgrAuth {
        client: Some(Arc::new(kalmar_auth::ClientAuth::new(
            "osd.2",
            Some(kalmar_auth::CryptoKey::generate()?),
        ))),
        ..Default::default()
    };
    assert!(dial(c.mon, EntityName::osd(2), forged.clone())
        .await
        .is_err());
    assert!(dial(peer, EntityName::osd(2), forged).await.is_err());
    // The admin's genuine ticket, shown by an entity calling itself
    // osd.2: the ticket names client.admin, so the OSD refuses.
    let admin = c.admin_auth()?;
    dial(
        c.mon,
        EntityName::new(EntityType::Client, "admin"),
        admin.clone(),
    )
    .await?;
    assert!(dial(peer, EntityName::osd(2), admin).await.is_err());
    // The refusals did not disturb the cluster: still clean, still serving.
    c.wait_pgs(1, 8, &["active", "clean"], Duration::from_secs(30))
        .await?;
    assert_eq!(
        io.read("o3", 0, 0).await?,
        Bytes::from("secret 3".repeat(4))
    );
    Ok(())
}

/// Three mons with cephx: before the first leader commits the auth
/// database, the mons know each other (and the admin) by the keys they
/// were made with, so they form a quorum; then the cluster serves I/O.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cephx_with_three_mons_forms_a_quorum_and_serves() -> anyhow::Result<()> {
    let c = Cluster::start(ClusterOpts {
        mons: 3,
        mgrs: 0,
        ..cephx_opts()
    })
    .await?;
    let q = c.mon_command(json!({"prefix": "quorum_status"})).await?;
    assert_eq!(q["quorum_names"], json!(["a", "b", "c"]), "{q}");
    let (_rados, io) = c.ready_pool("sec3", 8, 3, 2).await?;
    io.write_full("o", Bytes::from_static(b"three mons"))
        .await?;
    assert_eq!(io.read("o", 0, 0).await?, Bytes::from_static(b"three mons"));
    Ok(())
}

/// Every connection in `secure` mode (`ms_cluster_mode`, `ms_service_mode`
/// and `ms_client_mode` all `secure`): the daemons find each other (PGs
/// go clean, the mgr is available), a client writes and reads small and
/// large objects, its sessions are encrypted, and a client that allows
/// only crc is refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_mode_cluster_serves_io_and_refuses_crc_only_clients() -> anyhow::Result<()> {
    use kalmar_msgr::onwire::{WireMode, WireModes};
    let mut opts = cephx_opts();
    for k in ["ms_cluster_mode", "ms_service_mode", "ms_client_mode"] {
        opts.settings.push((k.to_string(), "secure".to_string()));
    }
    let c = Cluster::start(opts).await?;
    let (_rados, io) = c.ready_pool("enc", 8, 3, 2).await?;
    for i in 0..8usize {
        let data = Bytes::from(vec![i as u8; 100 + i * 40_000]);
        io.write_full(&format!("o{i}"), data.clone()).await?;
        assert_eq!(io.read(&format!("o{i}"), 0, 0).await?, data);
    }
    let big = Bytes::from((0..(2 << 20)).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    io.write_full("big", big.clone()).await?;
    assert_eq!(io.read("big", 0, 0).await?, big);
    let mgr = c.mon_command(json!({"prefix": "mgr stat"})).await?;
    assert_eq!(mgr["available"], json!(true), "{mgr}");

    // The admin's own session to an OSD is encrypted.
    let peer = cluster_addr(&c, 0).await?;
    let admin = c.admin_auth()?;
    assert_eq!(admin.modes, WireModes::all(&[WireMode::Secure]));
    let me = EntityName::new(EntityType::Client, "admin");
    for addr in [c.mon, peer] {
        let cfg = MsgrConfig {
            auth: admin.clone(),
            reconnect_max_attempts: Some(0),
            ..MsgrConfig::default()
        };
        let (tx, _rx) = event_channel(&cfg);
        let s = Connection::connect(addr, me.clone(), uuid::Uuid::nil(), cfg, tx).await?;
        assert_eq!(s.handle().wire_mode(), Some(WireMode::Secure), "{addr}");
        s.close().await;
    }
    // A client that allows only crc.
    let crc_only = MsgrAuth {
        modes: WireModes::all(&[WireMode::Crc]),
        ..admin
    };
    let err = dial(peer, me, crc_only)
        .await
        .expect_err("crc-only client refused");
    assert!(
        err.to_string().contains("no connection mode in common"),
        "{err}"
    );
    Ok(())
}

/// The defaults (no auth option anywhere in the conf) require cephx: the
/// keyless are refused, vstart's keys let the admin and the daemons in,
/// and health has no AUTH_INSECURE. Written out as `none`, the same
/// cluster lets the keyless in and health warns, naming the options.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cephx_by_default_and_auth_insecure_when_off() -> anyhow::Result<()> {
    let c = Cluster::start(ClusterOpts {
        osds: 1,
        ..ClusterOpts::default()
    })
    .await?;
    let conf = std::fs::read_to_string(c.dir().join("kalmar.conf"))?;
    assert!(!conf.contains("auth_"), "no auth option written: {conf}");
    let h = c
        .mon_command(json!({"prefix": "health", "detail": "detail"}))
        .await?;
    assert!(h["checks"].get("AUTH_INSECURE").is_none(), "{h}");
    let keyless = |c: &Cluster| {
        let mut cfg = ClientConfig::new(c.mon);
        cfg.mon_timeout = Duration::from_secs(5);
        cfg.msgr.connect_timeout = Duration::from_secs(5);
        cfg.msgr.reconnect_max_attempts = Some(0);
        cfg
    };
    assert!(
        Rados::connect(keyless(&c)).await.is_err(),
        "a keyless client was let in by default"
    );
    drop(c);

    let mut o = ClusterOpts {
        osds: 1,
        ..ClusterOpts::default()
    };
    for k in [
        "auth_cluster_required",
        "auth_service_required",
        "auth_client_required",
    ] {
        o = o.set(k, "none");
    }
    let c = Cluster::start(o).await?;
    let _open = Rados::connect(keyless(&c)).await?;
    let h = c
        .mon_command(json!({"prefix": "health", "detail": "detail"}))
        .await?;
    assert_eq!(h["status"], "HEALTH_WARN", "{h}");
    let msg = h["checks"]["AUTH_INSECURE"]["summary"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for k in [
        "auth_cluster_required",
        "auth_service_required",
        "auth_client_required",
    ] {
        assert!(msg.contains(k), "{msg}");
    }
    Ok(())
}
