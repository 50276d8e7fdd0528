//! The state machine driven by hand: the action sequence of a first peering,
//! the persist-before-send order, stale messages, pool deletion.

use std::sync::Arc;

use kalmar_maps::{OsdId, PgId};
use kalmar_peering::{
    Action, Active, ClusterView, Event, OsdView, Peering, PeeringMessage, PeeringSettings, Pg,
    PgMapping, PgStateFlags, QueryKind, State,
};

fn view(epoch: u32, up_thru: u32) -> Arc<ClusterView> {
    Arc::new(ClusterView {
        epoch,
        osds: (0..3)
            .map(|_| OsdView {
                exists: true,
                up: true,
                up_from: 1,
                up_thru,
                ..Default::default()
            })
            .collect(),
        flags: 0,
    })
}

fn mapping(epoch: u32, pool_exists: bool) -> PgMapping {
    PgMapping {
        epoch,
        pool_exists,
        pool_size: 3,
        pool_min_size: 2,
        pg_num: 1,
        up: vec![0, 1, 2],
        up_primary: 0,
        acting: vec![0, 1, 2],
        acting_primary: 0,
    }
}

fn sends(actions: &[Action]) -> Vec<(OsdId, PeeringMessage)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, msg } => Some((*to, msg.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn first_peering_goes_active_clean_with_ordered_actions() {
    let pgid = PgId::new(1, 0);
    let s = PeeringSettings::default();
    let mut pgs: Vec<Pg> = (0..3).map(|o| Pg::create(o, pgid, 1, s.clone())).collect();
    let mut inbox: Vec<(OsdId, OsdId, PeeringMessage)> = Vec::new();
    let mut all = Vec::new();
    for (o, pg) in pgs.iter_mut().enumerate() {
        pg.handle(Event::Initialize, 0);
        pg.handle(
            Event::AdvMap {
                map: view(1, 0),
                mapping: mapping(1, true),
            },
            1,
        );
        let acts = pg.handle(Event::ActMap, 2);
        for (to, m) in sends(&acts) {
            inbox.push((o as OsdId, to, m));
        }
        all.push(acts);
    }
    assert_eq!(pgs[0].state(), State::Peering(Peering::GetInfo));
    assert_eq!(pgs[0].state_flags().to_string(), "peering");
    assert!(all[0].contains(&Action::RequestUpThru { epoch: 1 }));
    assert!(all[0].iter().any(|a| matches!(
        a,
        Action::Send {
            msg: PeeringMessage::Query {
                kind: QueryKind::Info,
                ..
            },
            ..
        }
    )));
    assert_eq!(pgs[1].state(), State::Stray);

    let mut t = 10;
    let pump = |pgs: &mut Vec<Pg>, inbox: &mut Vec<(OsdId, OsdId, PeeringMessage)>, t: &mut u64| {
        while let Some((from, to, msg)) = (!inbox.is_empty()).then(|| inbox.remove(0)) {
            *t += 1;
            let acts = pgs[to as usize].handle(Event::Message { from, msg }, *t);
            // State a message reveals is persisted earlier in the batch.
            for (k, a) in acts.iter().enumerate() {
                if let Action::Send {
                    msg:
                        PeeringMessage::Activate { .. }
                        | PeeringMessage::Activated { .. }
                        | PeeringMessage::Info { .. },
                    ..
                } = a
                {
                    assert!(
                        acts[..k].iter().any(|p| matches!(p, Action::Persist(_))),
                        "unpersisted send in {acts:?}"
                    );
                }
            }
            for (dst, m) in sends(&acts) {
                inbox.push((to, dst, m));
            }
        }
    };
    pump(&mut pgs, &mut inbox, &mut t);
    // Without an up_thru covering the interval the primary may not activate.
    assert_eq!(pgs[0].state(), State::Peering(Peering::WaitUpThru));
    pgs[0].handle(
        Event::AdvMap {
            map: view(2, 1),
            mapping: mapping(2, true),
        },
        50,
    );
    let acts = pgs[0].handle(Event::ActMap, 51);
    assert_eq!(pgs[0].state(), State::Active(Active::Activating));
    assert_eq!(pgs[0].state_flags().to_string(), "activating");
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::RecordStateLatency {
            counter: "waitupthru_latency",
            ..
        }
    )));
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::RecordStateLatency {
            counter: "peering_latency",
            ..
        }
    )));
    for (to, m) in sends(&acts) {
        inbox.push((0, to, m));
    }
    for pg in pgs.iter_mut().skip(1) {
        pg.handle(
            Event::AdvMap {
                map: view(2, 1),
                mapping: mapping(2, true),
            },
            52,
        );
        pg.handle(Event::ActMap, 53);
    }
    pump(&mut pgs, &mut inbox, &mut t);
    assert_eq!(pgs[0].state(), State::Active(Active::Clean));
    assert_eq!(
        pgs[0].state_flags(),
        PgStateFlags(PgStateFlags::ACTIVE | PgStateFlags::CLEAN)
    );
    assert!(pgs[0].is_active());
    for pg in &pgs[1..] {
        assert!(matches!(pg.state(), State::ReplicaActive(_)));
        assert_eq!(
            pg.info().history.last_epoch_clean,
            2,
            "replicas learn the clean epoch"
        );
        assert_eq!(pg.log().head(), pgs[0].log().head());
    }
    let q = pgs[0].query_json();
    assert_eq!(q["state"], "active+clean");
    assert_eq!(
        q["recovery_state"][0]["name"],
        "Started/Primary/Active/Clean"
    );
}

#[test]
fn messages_of_another_interval_are_dropped() {
    let pgid = PgId::new(1, 0);
    let mut pg = Pg::create(1, pgid, 1, PeeringSettings::default());
    pg.handle(Event::Initialize, 0);
    pg.handle(
        Event::AdvMap {
            map: view(1, 0),
            mapping: mapping(1, true),
        },
        0,
    );
    pg.handle(Event::ActMap, 0);
    let stale = PeeringMessage::Query {
        pgid,
        epoch: 1,
        interval: 0,
        kind: QueryKind::Info,
    };
    assert!(pg
        .handle(
            Event::Message {
                from: 0,
                msg: stale
            },
            1
        )
        .is_empty());
    let current = PeeringMessage::Query {
        pgid,
        epoch: 1,
        interval: 1,
        kind: QueryKind::Log,
    };
    let acts = pg.handle(
        Event::Message {
            from: 0,
            msg: current,
        },
        2,
    );
    assert!(matches!(
        sends(&acts).as_slice(),
        [(0, PeeringMessage::Log { .. })]
    ));
}

#[test]
fn deleted_pool_deletes_the_pg() {
    let mut pg = Pg::create(0, PgId::new(1, 0), 1, PeeringSettings::default());
    pg.handle(Event::Initialize, 0);
    pg.handle(
        Event::AdvMap {
            map: view(1, 0),
            mapping: mapping(1, true),
        },
        0,
    );
    let acts = pg.handle(
        Event::AdvMap {
            map: view(2, 0),
            mapping: mapping(2, false),
        },
        1,
    );
    assert_eq!(pg.state(), State::ToDelete);
    assert!(acts.contains(&Action::DeletePg));
}
