//! The scrub side of the state machine: requests wait for active+clean and
//! a scrub slot; results set stamps, `inconsistent` and its counts; a
//! repair's items become missing objects that recovery rewrites, after
//! which the PG is clean again. A primary copy that cannot be read for a
//! push is pulled from another copy first, or reported unfound.

use std::collections::BTreeSet;
use std::sync::Arc;

use kalmar_maps::{OsdId, PgId};
use kalmar_peering::scrub::RepairItem;
use kalmar_peering::{
    Action, Active, ClusterView, Event, Eversion, OsdView, PeeringSettings, Pg, PgMapping,
    ReservationKind, ScrubResult, State,
};

fn view(epoch: u32) -> Arc<ClusterView> {
    Arc::new(ClusterView {
        epoch,
        osds: (0..3)
            .map(|_| OsdView {
                exists: true,
                up: true,
                up_from: 1,
                up_thru: epoch,
                ..Default::default()
            })
            .collect(),
        flags: 0,
    })
}

fn mapping(epoch: u32) -> PgMapping {
    PgMapping {
        epoch,
        pool_exists: true,
        pool_size: 3,
        pool_min_size: 2,
        pg_num: 1,
        up: vec![0, 1, 2],
        up_primary: 0,
        acting: vec![0, 1, 2],
        acting_primary: 0,
    }
}

/// Three copies of a PG, with messages routed between them.
struct Trio {
    pgs: Vec<Pg>,
    t: u64,
    /// Actions of the primary other than sends, in order.
    primary_actions: Vec<Action>,
    /// The replicas' reservation releases.
    replica_releases: Vec<(OsdId, ReservationKind)>,
}

impl Trio {
    fn new() -> Trio {
        let s = PeeringSettings::default();
        let pgs = (0..3)
            .map(|o| Pg::create(o, PgId::new(1, 0), 1, s.clone()))
            .collect();
        let mut t = Trio {
            pgs,
            t: 0,
            primary_actions: Vec::new(),
            replica_releases: Vec::new(),
        };
        for o in 0..3 {
            t.feed(o, Event::Initialize);
            t.feed(
                o,
                Event::AdvMap {
                    map: view(1),
                    mapping: mapping(1),
                },
            );
            t.feed(o, Event::ActMap);
        }
        assert_eq!(t.pgs[0].state(), State::Active(Active::Clean));
        t.primary_actions.clear();
        t
    }

    /// Feeds an event and delivers every message it causes; reservations
    /// are granted at once except the primary's, which tests grant.
    fn feed(&mut self, osd: OsdId, ev: Event) {
        let mut queue = vec![(osd, ev)];
        while !queue.is_empty() {
            let (o, ev) = queue.remove(0);
            self.t += 1;
            let acts = self.pgs[o as usize].handle(ev, self.t);
            for a in acts {
                match a {
                    Action::Send { to, msg } => queue.push((to, Event::Message { from: o, msg })),
                    Action::RequestReservation { kind, .. } if o != 0 => {
                        queue.push((o, Event::ReservationGranted { kind }))
                    }
                    other if o == 0 => self.primary_actions.push(other),
                    Action::ReleaseReservation { kind } => self.replica_releases.push((o, kind)),
                    _ => {}
                }
            }
        }
    }

    fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.primary_actions)
    }

    fn flags(&self) -> String {
        self.pgs[0].state_flags().to_string()
    }
}

fn requested(acts: &[Action], kind: ReservationKind) -> bool {
    acts.iter()
        .any(|a| matches!(a, Action::RequestReservation { kind: k, .. } if *k == kind))
}

#[test]
fn deep_scrub_records_inconsistency_and_stamps() {
    let mut t = Trio::new();
    t.feed(
        0,
        Event::ScrubRequested {
            deep: true,
            repair: false,
        },
    );
    let acts = t.take();
    assert!(requested(&acts, ReservationKind::Scrub), "{acts:?}");
    assert_eq!(t.flags(), "active+clean", "no scrub before the slot");
    t.feed(
        0,
        Event::ReservationGranted {
            kind: ReservationKind::Scrub,
        },
    );
    let acts = t.take();
    assert!(acts.contains(&Action::StartScrub {
        deep: true,
        repair: false
    }));
    assert_eq!(t.flags(), "active+clean+scrubbing+deep");
    // A second request while scrubbing waits for the next round.
    t.feed(
        0,
        Event::ScrubRequested {
            deep: false,
            repair: false,
        },
    );
    assert!(!requested(&t.take(), ReservationKind::Scrub));
    let before = t.t;
    t.feed(
        0,
        Event::ScrubFinished(ScrubResult {
            deep: true,
            shallow_errors: 1,
            deep_errors: 2,
            ..Default::default()
        }),
    );
    let acts = t.take();
    assert!(acts.contains(&Action::ReleaseReservation {
        kind: ReservationKind::Scrub
    }));
    assert!(acts.iter().any(|a| matches!(a, Action::Persist(w) if w.info.as_ref().is_some_and(|i| i.stats.num_scrub_errors == 3))));
    assert_eq!(t.flags(), "active+clean+inconsistent");
    let h = t.pgs[0].info().history;
    assert!(h.last_deep_scrub_stamp_us > before && h.last_scrub_stamp_us > before);
    assert_eq!(h.last_deep_scrub, t.pgs[0].info().last_update);
    // The queued shallow scrub asks for its slot again.
    assert!(requested(&acts, ReservationKind::Scrub));
    t.feed(
        0,
        Event::ReservationGranted {
            kind: ReservationKind::Scrub,
        },
    );
    assert_eq!(t.flags(), "active+clean+scrubbing+inconsistent");
    // A clean shallow scrub keeps the deep errors.
    t.feed(0, Event::ScrubFinished(ScrubResult::default()));
    assert_eq!(t.pgs[0].info().stats.num_scrub_errors, 2);
    assert_eq!(t.flags(), "active+clean+inconsistent");
    // An abandoned scrub records nothing.
    let stamp = t.pgs[0].info().history.last_scrub_stamp_us;
    t.feed(
        0,
        Event::ScrubRequested {
            deep: false,
            repair: false,
        },
    );
    t.feed(
        0,
        Event::ReservationGranted {
            kind: ReservationKind::Scrub,
        },
    );
    t.feed(
        0,
        Event::ScrubFinished(ScrubResult {
            aborted: true,
            ..Default::default()
        }),
    );
    assert_eq!(t.pgs[0].info().history.last_scrub_stamp_us, stamp);
    assert_eq!(t.flags(), "active+clean+inconsistent");
}

#[test]
fn repair_recovers_bad_copies_and_goes_clean() {
    let mut t = Trio::new();
    t.feed(
        0,
        Event::ScrubRequested {
            deep: false,
            repair: true,
        },
    );
    t.feed(
        0,
        Event::ReservationGranted {
            kind: ReservationKind::Scrub,
        },
    );
    assert!(t.take().contains(&Action::StartScrub {
        deep: true,
        repair: true
    }));
    assert_eq!(t.flags(), "active+clean+scrubbing+deep+repair");
    let v = Eversion::new(1, 1);
    t.feed(
        0,
        Event::ScrubFinished(ScrubResult {
            deep: true,
            repair: true,
            deep_errors: 2,
            repairs: vec![
                RepairItem {
                    oid: "bad-on-primary".into(),
                    version: v,
                    from: Some(1),
                    to: BTreeSet::from([0]),
                },
                RepairItem {
                    oid: "bad-on-2".into(),
                    version: v,
                    from: Some(0),
                    to: BTreeSet::from([2]),
                },
            ],
            ..Default::default()
        }),
    );
    let acts = t.take();
    assert!(t.pgs[0].missing().is_missing("bad-on-primary"));
    assert!(t.pgs[0]
        .peer_missing(2)
        .is_some_and(|m| m.is_missing("bad-on-2")));
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Persist(w) if w.missing.is_some())),
        "the primary's missing set is persisted: {acts:?}"
    );
    assert!(requested(&acts, ReservationKind::LocalRecovery));
    assert!(!t.flags().contains("inconsistent"), "{}", t.flags());
    t.feed(
        0,
        Event::ReservationGranted {
            kind: ReservationKind::LocalRecovery,
        },
    );
    assert_eq!(t.pgs[0].state(), State::Active(Active::Recovering));
    let acts = t.take();
    assert!(acts.contains(&Action::Pull {
        oid: "bad-on-primary".into(),
        version: v,
        from: 1
    }));
    assert!(acts.contains(&Action::Push {
        oid: "bad-on-2".into(),
        version: v,
        to: vec![2],
        backfill: false,
    }));
    // Client ops on objects under repair wait for it.
    assert!(matches!(
        t.pgs[0].readiness("bad-on-2"),
        kalmar_peering::WriteReadiness::NeedsRecovery(_)
            | kalmar_peering::WriteReadiness::InFlight(_)
    ));
    t.feed(
        0,
        Event::ObjectRecovered {
            oid: "bad-on-primary".into(),
            version: v,
        },
    );
    t.feed(
        0,
        Event::PushCompleted {
            peer: 2,
            oid: "bad-on-2".into(),
            version: v,
        },
    );
    assert_eq!(t.pgs[0].state(), State::Active(Active::Clean));
    assert_eq!(t.flags(), "active+clean");
    assert!(t.pgs[0].missing().is_empty());
    assert_eq!(t.pgs[0].info().last_complete, t.pgs[0].info().last_update);
}

#[test]
fn scrubs_wait_for_clean_and_end_with_the_interval() {
    let mut t = Trio::new();
    // Not primary: ignored.
    t.feed(
        1,
        Event::ScrubRequested {
            deep: true,
            repair: false,
        },
    );
    assert_eq!(t.pgs[1].scrub_requested(), None);
    t.feed(
        0,
        Event::ScrubRequested {
            deep: false,
            repair: false,
        },
    );
    t.feed(
        0,
        Event::ReservationGranted {
            kind: ReservationKind::Scrub,
        },
    );
    assert!(t.pgs[0].is_scrubbing());
    // osd.2 leaves: a new interval ends the scrub and drops its flags; the
    // result of the old scrub is ignored, and the scrub is asked for again
    // (this OSD stays primary), to start once the PG is clean.
    let mut m = mapping(2);
    m.up = vec![0, 1];
    m.acting = vec![0, 1];
    t.feed(
        0,
        Event::AdvMap {
            map: view(2),
            mapping: m,
        },
    );
    let acts = t.take();
    assert!(acts.contains(&Action::ReleaseReservation {
        kind: ReservationKind::Scrub
    }));
    assert!(!t.pgs[0].is_scrubbing());
    t.feed(
        0,
        Event::ScrubFinished(ScrubResult {
            deep_errors: 5,
            ..Default::default()
        }),
    );
    assert_eq!(t.pgs[0].info().stats.num_scrub_errors, 0);
    assert_eq!(t.pgs[0].scrub_requested(), Some((false, false)));
    t.feed(0, Event::ActMap);
    assert!(!t.pgs[0].state_flags().to_string().contains("clean"));
    assert!(!t
        .take()
        .iter()
        .any(|a| matches!(a, Action::StartScrub { .. })));
    assert_eq!(t.pgs[0].scrub_requested(), Some((false, false)));
    // Another OSD becomes primary: the request is gone with the role.
    let mut m = mapping(3);
    m.up = vec![1, 0];
    m.acting = vec![1, 0];
    m.up_primary = 1;
    m.acting_primary = 1;
    t.feed(
        0,
        Event::AdvMap {
            map: view(3),
            mapping: m,
        },
    );
    assert_eq!(t.pgs[0].scrub_requested(), None);
}

#[test]
fn a_corrupt_read_on_the_primary_recovers_the_object() {
    let mut t = Trio::new();
    let v = Eversion::new(1, 1);
    // Replicas do not act on it.
    t.feed(
        1,
        Event::ReadError {
            oid: "o".into(),
            version: v,
        },
    );
    assert!(t.pgs[1].missing().is_empty());
    t.feed(
        0,
        Event::ReadError {
            oid: "o".into(),
            version: v,
        },
    );
    assert!(t.pgs[0].missing().is_missing("o"));
    let acts = t.take();
    assert!(acts.iter().any(
        |a| matches!(a, Action::Persist(w) if w.missing.as_ref().is_some_and(|m| m.is_missing("o")))
    ));
    assert!(requested(&acts, ReservationKind::LocalRecovery));
    assert!(matches!(
        t.pgs[0].readiness("o"),
        kalmar_peering::WriteReadiness::NeedsRecovery(_)
    ));
    t.feed(
        0,
        Event::ReservationGranted {
            kind: ReservationKind::LocalRecovery,
        },
    );
    assert!(t
        .take()
        .iter()
        .any(|a| matches!(a, Action::Pull { oid, from, .. } if oid == "o" && *from != 0)));
    t.feed(
        0,
        Event::ObjectRecovered {
            oid: "o".into(),
            version: v,
        },
    );
    assert_eq!(t.pgs[0].state(), State::Active(Active::Clean));
    assert!(t.pgs[0].missing().is_empty());
}

/// Recovery that finds `oid` missing on the replicas in `bad` (a repair
/// makes them so) and has just pushed it from the primary.
fn pushing(bad: &[OsdId]) -> (Trio, Eversion) {
    let mut t = Trio::new();
    let v = Eversion::new(1, 1);
    t.feed(
        0,
        Event::ScrubRequested {
            deep: false,
            repair: true,
        },
    );
    t.feed(
        0,
        Event::ReservationGranted {
            kind: ReservationKind::Scrub,
        },
    );
    t.feed(
        0,
        Event::ScrubFinished(ScrubResult {
            deep: true,
            repair: true,
            deep_errors: 1,
            repairs: vec![RepairItem {
                oid: "o".into(),
                version: v,
                from: Some(0),
                to: bad.iter().copied().collect(),
            }],
            ..Default::default()
        }),
    );
    t.feed(
        0,
        Event::ReservationGranted {
            kind: ReservationKind::LocalRecovery,
        },
    );
    let acts = t.take();
    assert!(
        acts.contains(&Action::Push {
            oid: "o".into(),
            version: v,
            to: bad.to_vec(),
            backfill: false,
        }),
        "{acts:?}"
    );
    (t, v)
}

#[test]
fn an_unreadable_primary_copy_is_pulled_from_another_before_the_push() {
    let (mut t, v) = pushing(&[2]);
    // The primary could not read its copy to push it.
    t.feed(
        0,
        Event::PushFailed {
            oid: "o".into(),
            version: v,
        },
    );
    assert!(t.pgs[0].missing().is_missing("o"));
    let acts = t.take();
    assert!(acts.iter().any(
        |a| matches!(a, Action::Persist(w) if w.missing.as_ref().is_some_and(|m| m.is_missing("o")))
    ));
    assert!(
        acts.contains(&Action::Pull {
            oid: "o".into(),
            version: v,
            from: 1
        }),
        "pulled from the copy that has it: {acts:?}"
    );
    assert!(t.pgs[0].unfound().is_empty());
    t.feed(
        0,
        Event::ObjectRecovered {
            oid: "o".into(),
            version: v,
        },
    );
    assert!(t.take().contains(&Action::Push {
        oid: "o".into(),
        version: v,
        to: vec![2],
        backfill: false,
    }));
    t.feed(
        0,
        Event::PushCompleted {
            peer: 2,
            oid: "o".into(),
            version: v,
        },
    );
    assert_eq!(t.pgs[0].state(), State::Active(Active::Clean));
    assert_eq!(t.flags(), "active+clean");
}

#[test]
fn an_unreadable_last_copy_is_unfound_not_a_stall() {
    let (mut t, v) = pushing(&[1, 2]);
    t.replica_releases.clear();
    t.feed(
        0,
        Event::PushFailed {
            oid: "o".into(),
            version: v,
        },
    );
    // No copy is left to pull from: unfound, shown as Ceph shows it, and
    // nothing is issued (no spinning).
    assert!(t.pgs[0].unfound().contains("o"));
    let acts = t.take();
    assert!(
        !acts
            .iter()
            .any(|a| matches!(a, Action::Pull { .. } | Action::Push { .. })),
        "{acts:?}"
    );
    let flags = t.flags();
    assert!(flags.contains("recovery_unfound"), "{flags}");
    assert!(flags.contains("degraded"), "{flags}");
    assert!(!flags.contains("recovering"), "{flags}");
    // Parked: the recovery slots are given back, here and on both
    // replicas, so other PGs are not stuck behind this one.
    assert_eq!(t.pgs[0].state(), State::Active(Active::NotRecovering));
    assert!(
        acts.contains(&Action::ReleaseReservation {
            kind: ReservationKind::LocalRecovery
        }),
        "{acts:?}"
    );
    for peer in [1, 2] {
        assert!(
            t.replica_releases
                .contains(&(peer, ReservationKind::RemoteRecovery)),
            "osd.{peer} still holds its recovery slot: {:?}",
            t.replica_releases
        );
    }
    // A stale failure (nothing in flight) changes nothing.
    t.feed(
        0,
        Event::PushFailed {
            oid: "other".into(),
            version: v,
        },
    );
    assert!(!t.pgs[0].missing().is_missing("other"));
    assert_eq!(t.pgs[0].stats_report().unfound, 1);
}
