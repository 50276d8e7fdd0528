//! Authentication in the handshake over loopback sockets: a mon listener
//! with an in-memory key source, an OSD listener checking tickets with
//! the rotating secrets the mon granted its OSD, and clients with right,
//! wrong and missing keys.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kalmar_auth::{AuthMode, ClientAuth, CryptoKey, MemKeySource, Perms, ServerAuth, Service};
use kalmar_msgr::auth::MsgrAuth;
use kalmar_msgr::{
    event_channel, ConnectError, Connection, EntityName, Event, Listener, Message, MsgrConfig,
};
use tokio::sync::mpsc;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

fn base() -> MsgrConfig {
    MsgrConfig {
        reconnect_backoff_min: Duration::from_millis(10),
        connect_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(2),
        ..MsgrConfig::default()
    }
}

fn name(s: &str) -> EntityName {
    s.parse().expect("valid entity")
}

fn caps(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

struct Mon {
    keys: Arc<MemKeySource>,
    listener: Listener,
    events: mpsc::Receiver<Event>,
    fsid: Uuid,
}

async fn mon(mode: AuthMode) -> Mon {
    let keys = Arc::new(MemKeySource::new());
    let far = u64::MAX / 2;
    keys.rotate(Service::Osd, far).expect("rng");
    keys.rotate(Service::Mgr, far).expect("rng");
    let cfg = MsgrConfig {
        auth: MsgrAuth {
            server: Some(ServerAuth {
                mode,
                service: Service::Mon,
                keys: keys.clone(),
            }),
            ..MsgrAuth::default()
        },
        ..base()
    };
    let fsid = Uuid::new_v4();
    let (tx, events) = event_channel(&cfg);
    let listener = Listener::bind(
        "127.0.0.1:0".parse().expect("addr"),
        name("mon.a"),
        fsid,
        cfg,
        tx,
    )
    .await
    .expect("bind");
    Mon {
        keys,
        listener,
        events,
        fsid,
    }
}

impl Mon {
    fn add(&self, entity: &str, c: &[(&str, &str)]) -> CryptoKey {
        let key = CryptoKey::generate().expect("rng");
        self.keys.add_entity(entity, key.clone(), caps(c));
        key
    }

    async fn connect(&self, who: &str, auth: MsgrAuth) -> Result<Connection, ConnectError> {
        connect_to(self.listener.local_addr(), self.fsid, who, auth).await
    }
}

async fn connect_to(
    addr: std::net::SocketAddr,
    fsid: Uuid,
    who: &str,
    auth: MsgrAuth,
) -> Result<Connection, ConnectError> {
    let cfg = MsgrConfig { auth, ..base() };
    let (tx, _rx) = event_channel(&cfg);
    Connection::connect(addr, name(who), fsid, cfg, tx).await
}

fn as_client(c: &Arc<ClientAuth>) -> MsgrAuth {
    MsgrAuth {
        client: Some(c.clone()),
        require_server_proof: true,
        ..MsgrAuth::default()
    }
}

async fn next_message(rx: &mut mpsc::Receiver<Event>) -> kalmar_msgr::Incoming {
    loop {
        match tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("event in time")
            .expect("channel open")
        {
            Event::Message(m) => return m,
            other => eprintln!("skipping {other:?}"),
        }
    }
}

fn refused_because(r: Result<Connection, ConnectError>, want: &str) {
    match r {
        Err(ConnectError::Refused { reason, .. }) => {
            assert!(
                reason.contains(want),
                "refused for '{reason}', expected '{want}'"
            )
        }
        Err(e) => panic!("expected a refusal containing '{want}', got {e}"),
        Ok(_) => panic!("expected a refusal containing '{want}', got a session"),
    }
}

#[tokio::test]
async fn right_key_is_let_in_and_the_peer_is_known() {
    let mut m = mon(AuthMode::Cephx).await;
    let key = m.add("client.admin", &[("mon", "allow *")]);
    let client = Arc::new(ClientAuth::new("client.admin", Some(key)));
    let c = m
        .connect("client.admin", as_client(&client))
        .await
        .expect("authenticated");
    c.send(Message::new(1, Bytes::from_static(b"hi")))
        .await
        .expect("send");
    let got = next_message(&mut m.events).await;
    let auth = got.peer.auth.as_ref().expect("authenticated peer");
    assert_eq!(auth.entity.as_deref(), Some("client.admin"));
    assert!(auth.caps.mon.allows_daemon(kalmar_auth::Profile::Osd));
    assert!(client.has_ticket(Service::Osd, kalmar_auth_now()));
}

fn kalmar_auth_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test]
async fn wrong_key_unknown_entity_and_keyless_are_refused() {
    let m = mon(AuthMode::Cephx).await;
    m.add("client.a", &[("mon", "allow r")]);
    let wrong = Arc::new(ClientAuth::new(
        "client.a",
        Some(CryptoKey::generate().expect("rng")),
    ));
    refused_because(m.connect("client.a", as_client(&wrong)).await, "wrong key");
    let stranger = Arc::new(ClientAuth::new(
        "client.zed",
        Some(CryptoKey::generate().expect("rng")),
    ));
    refused_because(
        m.connect("client.zed", as_client(&stranger)).await,
        "unknown entity",
    );
    refused_because(
        m.connect("client.a", MsgrAuth::default()).await,
        "authentication required",
    );
    // Posing as an OSD without its key.
    m.add("osd.0", &[("mon", "allow profile osd")]);
    let pose = Arc::new(ClientAuth::new(
        "osd.0",
        Some(CryptoKey::generate().expect("rng")),
    ));
    refused_because(m.connect("osd.0", as_client(&pose)).await, "wrong key");
    // The mon still serves the right key after all that.
    let key = m.add("client.b", &[("mon", "allow r")]);
    let ok = Arc::new(ClientAuth::new("client.b", Some(key)));
    m.connect("client.b", as_client(&ok))
        .await
        .expect("still serving");
}

#[tokio::test]
async fn auth_none_lets_keyless_peers_in_and_a_demanding_client_refuses_it() {
    let m = mon(AuthMode::None).await;
    m.connect("client.a", MsgrAuth::default())
        .await
        .expect("open cluster");
    // A client that insists on a proof refuses an acceptor that gives none
    // (anyone could stand up a listener claiming to be the mon).
    let plain = Listener::bind(
        "127.0.0.1:0".parse().expect("addr"),
        name("mon.a"),
        m.fsid,
        base(),
        event_channel(&base()).0,
    )
    .await
    .expect("bind");
    let key = m.add("client.a", &[("mon", "allow r")]);
    let client = Arc::new(ClientAuth::new("client.a", Some(key)));
    refused_because(
        connect_to(plain.local_addr(), m.fsid, "client.a", as_client(&client)).await,
        "did not authenticate",
    );
}

#[tokio::test]
async fn tickets_open_osd_sessions_without_the_mon() {
    let m = mon(AuthMode::Cephx).await;
    // The OSD authenticates to the mon and so learns its service secrets.
    let okey = m.add("osd.0", &[("mon", "allow profile osd"), ("osd", "allow *")]);
    let osd_auth = Arc::new(ClientAuth::new("osd.0", Some(okey)));
    let _osd_mon = m
        .connect("osd.0", as_client(&osd_auth))
        .await
        .expect("osd to mon");
    let osd_cfg = MsgrConfig {
        auth: MsgrAuth {
            server: Some(ServerAuth {
                mode: AuthMode::Cephx,
                service: Service::Osd,
                keys: osd_auth.rotating_keys(),
            }),
            ..MsgrAuth::default()
        },
        ..base()
    };
    let (otx, mut osd_events) = event_channel(&osd_cfg);
    let osd = Listener::bind(
        "127.0.0.1:0".parse().expect("addr"),
        name("osd.0"),
        m.fsid,
        osd_cfg,
        otx,
    )
    .await
    .expect("bind");
    // A client with a ticket from the mon.
    let ckey = m.add("client.a", &[("mon", "allow r"), ("osd", "allow r pool=a")]);
    let client = Arc::new(ClientAuth::new("client.a", Some(ckey)));
    let _c_mon = m
        .connect("client.a", as_client(&client))
        .await
        .expect("client to mon");
    let c = connect_to(osd.local_addr(), m.fsid, "client.a", as_client(&client))
        .await
        .expect("ticket accepted");
    c.send(Message::new(1, Bytes::from_static(b"op")))
        .await
        .expect("send");
    let got = next_message(&mut osd_events).await;
    let auth = got.peer.auth.as_ref().expect("authenticated");
    let op = kalmar_auth::caps::OsdOp {
        pool: "a",
        namespace: "",
        object: "x",
        need: Perms::R,
    };
    assert!(auth.caps.osd.allows_osd_op(&op));
    assert!(!auth.caps.osd.allows_osd_op(&kalmar_auth::caps::OsdOp {
        need: Perms::W,
        ..op
    }));
    // Without a ticket (never went to the mon) the OSD refuses.
    let lone = Arc::new(ClientAuth::new(
        "client.a",
        Some(CryptoKey::generate().expect("rng")),
    ));
    refused_because(
        connect_to(osd.local_addr(), m.fsid, "client.a", as_client(&lone)).await,
        "no valid ticket",
    );
    refused_because(
        connect_to(osd.local_addr(), m.fsid, "client.a", MsgrAuth::default()).await,
        "authentication required",
    );
}

/// `spawn_refresh` takes its period from the lifetime the mon granted,
/// read again every round (not the interval it was started with): with
/// 8-second tickets it renews every 2 s although it was given an hour.
#[tokio::test]
async fn ticket_renewal_follows_the_granted_lifetime() {
    let keys = Arc::new(MemKeySource::with_ticket_ttl(8));
    let far = u64::MAX / 2;
    keys.rotate(Service::Osd, far).expect("rng");
    let key = CryptoKey::generate().expect("rng");
    keys.add_entity("osd.4", key.clone(), caps(&[("mon", "allow profile osd")]));
    let cfg = MsgrConfig {
        auth: MsgrAuth {
            server: Some(ServerAuth {
                mode: AuthMode::Cephx,
                service: Service::Mon,
                keys: keys.clone(),
            }),
            ..MsgrAuth::default()
        },
        ..base()
    };
    let fsid = Uuid::new_v4();
    let (tx, mut events) = event_channel(&cfg);
    let listener = Listener::bind(
        "127.0.0.1:0".parse().expect("addr"),
        name("mon.a"),
        fsid,
        cfg,
        tx,
    )
    .await
    .expect("bind");
    let client = Arc::new(ClientAuth::new("osd.4", Some(key)));
    let cfg = MsgrConfig {
        auth: as_client(&client),
        ..base()
    };
    let task = kalmar_msgr::auth::spawn_refresh(
        vec![listener.local_addr()],
        name("osd.4"),
        fsid,
        cfg,
        Duration::from_secs(3600),
    );
    let mut sessions = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(5500);
    while let Ok(Some(ev)) = tokio::time::timeout_at(until, events.recv()).await {
        if let Event::Closed(..) = ev {
            sessions += 1;
        }
    }
    task.abort();
    assert_eq!(client.renewal_period(), Some(Duration::from_secs(2)));
    assert!(sessions >= 2, "{sessions} renewals in 5.5 s");
}
