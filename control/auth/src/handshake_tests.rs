//! The handshake end to end, in memory: a mon, an OSD (whose listener
//! checks tickets with the secrets the mon granted it) and clients.

use std::collections::BTreeMap;
use std::sync::Arc;

use kalmar_common::encoding::{Blob, Decode, Encode};

use crate::proto::{AuthChallenge, AuthProof, AuthReply, AuthRequest};
use crate::*;

const NOW: u64 = 1_000_000;

fn caps(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

struct Cluster {
    mon_keys: Arc<MemKeySource>,
    mon: ServerAuth,
}

fn cluster() -> Cluster {
    let mon_keys = Arc::new(MemKeySource::with_ticket_ttl(60));
    mon_keys.rotate(Service::Osd, NOW + 3600).expect("rng");
    mon_keys.rotate(Service::Mgr, NOW + 3600).expect("rng");
    Cluster {
        mon: ServerAuth {
            mode: AuthMode::Cephx,
            service: Service::Mon,
            keys: mon_keys.clone(),
        },
        mon_keys,
    }
}

impl Cluster {
    fn add(&self, entity: &str, c: &[(&str, &str)]) -> CryptoKey {
        let key = CryptoKey::generate().expect("rng");
        self.mon_keys.add_entity(entity, key.clone(), caps(c));
        key
    }
}

/// Runs the whole exchange between `client` and `server`, through the
/// wire encodings. Returns what the server learnt.
fn run(
    client: &ClientAuth,
    server: &ServerAuth,
    target: Service,
    now: u64,
) -> Result<AuthedPeer, AuthError> {
    let req = client.request(now)?;
    let wire_req = req
        .as_ref()
        .map(|(r, _)| AuthRequest::from_bytes(&r.to_bytes()).expect("decode"));
    match server.begin(client.entity(), wire_req.as_ref())? {
        ServerStep::Accept(peer) => Ok(peer),
        ServerStep::Challenge(pending, challenge) => {
            assert_eq!(challenge.service, target);
            let challenge = AuthChallenge::from_bytes(&challenge.to_bytes()).expect("decode");
            let (_, mut cp) = req.ok_or(AuthError::OutOfOrder)?;
            let proof = client.prove(&mut cp, &challenge, now)?;
            let proof = AuthProof::from_bytes(&proof.to_bytes()).expect("decode");
            let (reply, peer) = server.finish(&pending, &proof, now)?;
            let reply = AuthReply::from_bytes(&reply.to_bytes()).expect("decode");
            let ck = client.finish(&cp, &reply)?;
            assert_eq!(Some(ck), peer.connection_key, "both ends derive one key");
            Ok(peer)
        }
    }
}

fn osd_server(osd: &ClientAuth) -> ServerAuth {
    ServerAuth {
        mode: AuthMode::Cephx,
        service: Service::Osd,
        keys: osd.rotating_keys(),
    }
}

#[test]
fn client_authenticates_to_mon_then_osd_with_a_ticket() {
    let c = cluster();
    let okey = c.add("osd.0", &[("mon", "allow profile osd"), ("osd", "allow *")]);
    let ckey = c.add("client.a", &[("mon", "allow r"), ("osd", "allow r pool=a")]);
    let osd = ClientAuth::new("osd.0", Some(okey));
    run(&osd, &c.mon, Service::Mon, NOW).expect("osd to mon");
    // The OSD got its service's secrets, the client did not.
    assert!(osd
        .rotating_keys()
        .current_service_secret(Service::Osd)
        .is_some());
    let client = ClientAuth::new("client.a", Some(ckey));
    let at_mon = run(&client, &c.mon, Service::Mon, NOW).expect("client to mon");
    assert_eq!(at_mon.entity.as_deref(), Some("client.a"));
    assert!(client
        .rotating_keys()
        .current_service_secret(Service::Osd)
        .is_none());
    assert!(client.has_ticket(Service::Osd, NOW));
    let at_osd = run(&client, &osd_server(&osd), Service::Osd, NOW + 10).expect("ticket");
    assert_eq!(at_osd.entity.as_deref(), Some("client.a"));
    assert_eq!(at_osd.global_id, at_mon.global_id);
    let op = caps::OsdOp {
        pool: "a",
        namespace: "",
        object: "o",
        need: Perms::R,
    };
    assert!(at_osd.caps.osd.allows_osd_op(&op));
    assert!(!at_osd.caps.osd.allows_osd_op(&caps::OsdOp {
        need: Perms::W,
        ..op
    }));
    assert!(!at_osd
        .caps
        .osd
        .allows_osd_op(&caps::OsdOp { pool: "b", ..op }));
}

#[test]
fn wrong_key_unknown_entity_and_no_key_are_refused() {
    let c = cluster();
    c.add("client.a", &[("mon", "allow r")]);
    let wrong = ClientAuth::new("client.a", Some(CryptoKey::generate().expect("rng")));
    assert_eq!(
        run(&wrong, &c.mon, Service::Mon, NOW),
        Err(AuthError::BadProof("client.a".into()))
    );
    let stranger = ClientAuth::new("client.b", Some(CryptoKey::generate().expect("rng")));
    assert_eq!(
        run(&stranger, &c.mon, Service::Mon, NOW),
        Err(AuthError::UnknownEntity("client.b".into()))
    );
    let keyless = ClientAuth::new("client.a", None);
    assert_eq!(
        run(&keyless, &c.mon, Service::Mon, NOW),
        Err(AuthError::Required)
    );
    // With auth off, the keyless client is let in anonymously.
    let open = ServerAuth {
        mode: AuthMode::None,
        ..c.mon.clone()
    };
    assert_eq!(
        run(&keyless, &open, Service::Mon, NOW)
            .expect("none")
            .entity,
        None
    );
}

#[test]
fn posing_as_an_osd_and_expired_tickets_are_refused() {
    let c = cluster();
    let okey = c.add("osd.0", &[("mon", "allow profile osd")]);
    let ckey = c.add("client.a", &[("mon", "allow r")]);
    let osd = ClientAuth::new("osd.0", Some(okey));
    run(&osd, &c.mon, Service::Mon, NOW).expect("osd");
    let client = ClientAuth::new("client.a", Some(ckey));
    run(&client, &c.mon, Service::Mon, NOW).expect("client");
    // A client has no OSD service secrets, so it cannot stand in for an
    // OSD: its "listener" opens no ticket.
    let fake = osd_server(&client);
    assert!(matches!(
        run(&client, &fake, Service::Osd, NOW),
        Err(AuthError::UnknownSecret(Service::Osd, _))
    ));
    // A client without a key or ticket offers nothing, which cephx refuses.
    let fresh = ClientAuth::new("client.a", None);
    assert_eq!(
        run(&fresh, &osd_server(&osd), Service::Osd, NOW),
        Err(AuthError::Required)
    );
    // A client with a key but no ticket cannot answer an OSD's challenge.
    let keyed = ClientAuth::new("client.a", Some(CryptoKey::generate().expect("rng")));
    assert_eq!(
        run(&keyed, &osd_server(&osd), Service::Osd, NOW),
        Err(AuthError::NoTicket(Service::Osd))
    );
    // An expired ticket: the client no longer offers it...
    assert!(!client.has_ticket(Service::Osd, NOW + 61));
    assert_eq!(
        run(&client, &osd_server(&osd), Service::Osd, NOW + 61),
        Err(AuthError::NoTicket(Service::Osd))
    );
    // ...and the OSD refuses it when shown anyway.
    let shown = |peer: &str, at: u64| {
        let (req, mut cp) = client.request(NOW).expect("ok").expect("req");
        let server = osd_server(&osd);
        let ServerStep::Challenge(pending, ch) = server.begin(peer, Some(&req)).expect("begin")
        else {
            panic!("expected a challenge")
        };
        let proof = client.prove(&mut cp, &ch, NOW).expect("ticket");
        server.finish(&pending, &proof, at).map(|_| ())
    };
    assert!(matches!(
        shown("client.a", NOW + 61),
        Err(AuthError::TicketExpired { .. })
    ));
    // A ticket shown by another entity is refused.
    assert!(matches!(
        shown("client.b", NOW),
        Err(AuthError::TicketEntity { .. })
    ));
    assert_eq!(shown("client.a", NOW), Ok(()));
}

#[test]
fn replayed_exchange_and_tampered_ticket_are_refused() {
    let c = cluster();
    let key = c.add("client.a", &[("mon", "allow r")]);
    let client = ClientAuth::new("client.a", Some(key));
    // Record one full exchange...
    let (req, mut cp) = client.request(NOW).expect("ok").expect("req");
    let ServerStep::Challenge(pending, ch) = c.mon.begin("client.a", Some(&req)).expect("begin")
    else {
        panic!("expected a challenge")
    };
    let recorded = client.prove(&mut cp, &ch, NOW).expect("key");
    c.mon.finish(&pending, &recorded, NOW).expect("genuine");
    // ...and replay it: the mon's new challenge makes the old proof wrong.
    let ServerStep::Challenge(pending2, _) = c.mon.begin("client.a", Some(&req)).expect("begin")
    else {
        panic!("expected a challenge")
    };
    assert!(matches!(
        c.mon.finish(&pending2, &recorded, NOW),
        Err(AuthError::BadProof(_))
    ));
    // A reply from an impostor who does not hold the key.
    let fake = AuthReply {
        server_proof: [0; 32],
        sealed_grant: Blob::default(),
    };
    assert_eq!(client.finish(&cp, &fake), Err(AuthError::ServerNotGenuine));

    // A ticket with one byte changed does not open.
    let okey = c.add("osd.0", &[("mon", "allow profile osd")]);
    let osd = ClientAuth::new("osd.0", Some(okey));
    run(&osd, &c.mon, Service::Mon, NOW).expect("osd");
    run(&client, &c.mon, Service::Mon, NOW).expect("client");
    let (req, mut cp) = client.request(NOW).expect("ok").expect("req");
    let server = osd_server(&osd);
    let ServerStep::Challenge(pending, ch) = server.begin("client.a", Some(&req)).expect("begin")
    else {
        panic!("expected a challenge")
    };
    let mut proof = client.prove(&mut cp, &ch, NOW).expect("ticket");
    if let Some(t) = proof.ticket.as_mut() {
        let last = t.blob.0.len() - 1;
        t.blob.0[last] ^= 1;
    }
    assert!(matches!(
        server.finish(&pending, &proof, NOW),
        Err(AuthError::BadTicket)
    ));
}

#[test]
fn rotation_keeps_live_tickets_valid() {
    let c = cluster();
    let okey = c.add("osd.0", &[("mon", "allow profile osd")]);
    let ckey = c.add("client.a", &[("mon", "allow r")]);
    let client = ClientAuth::new("client.a", Some(ckey));
    run(&client, &c.mon, Service::Mon, NOW).expect("client");
    // The mon rotates; the OSD re-authenticates and learns both secrets.
    c.mon_keys.rotate(Service::Osd, NOW + 7200).expect("rng");
    let osd = ClientAuth::new("osd.0", Some(okey));
    run(&osd, &c.mon, Service::Mon, NOW).expect("osd");
    run(&client, &osd_server(&osd), Service::Osd, NOW).expect("old ticket still good");
    // A client authenticating now gets a ticket under the new secret.
    run(&client, &c.mon, Service::Mon, NOW).expect("renew");
    run(&client, &osd_server(&osd), Service::Osd, NOW).expect("new ticket");
    // Past the kept window the oldest secret is gone.
    for _ in 0..source::MAX_ROTATING_SECRETS {
        c.mon_keys.rotate(Service::Osd, NOW + 7200).expect("rng");
    }
    assert_eq!(
        c.mon_keys.service_secrets(Service::Osd).len(),
        source::MAX_ROTATING_SECRETS
    );
}

#[test]
fn clients_renew_on_the_lifetime_the_mon_grants() {
    let c = cluster();
    let key = c.add("client.a", &[("mon", "allow r")]);
    let client = ClientAuth::new("client.a", Some(key));
    assert_eq!(client.renewal_period(), None, "nothing granted yet");
    run(&client, &c.mon, Service::Mon, NOW).expect("auth");
    // The test mon issues 60 s tickets: renew every quarter, 15 s.
    assert_eq!(client.ticket_lifetime_secs(), Some(60));
    assert_eq!(
        client.renewal_period(),
        Some(std::time::Duration::from_secs(15))
    );
    assert_eq!(
        crate::client::renewal_period(3600),
        std::time::Duration::from_secs(900)
    );
    // A tiny (or skewed-to-nothing) lifetime: the floor.
    assert_eq!(
        crate::client::renewal_period(1),
        std::time::Duration::from_secs(crate::client::MIN_RENEWAL_SECS)
    );
}
