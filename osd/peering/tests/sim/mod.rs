//! A deterministic in-process cluster for one PG: OSD nodes running the real
//! PG state machines, a toy mon (maps, pg_temp, up_thru), per-link FIFO
//! network queues, toy stores, and clients whose writes are acknowledged
//! only once every acting member persisted them.
#![allow(dead_code)]

mod checks;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use kalmar_maps::{OsdId, PgId};
use kalmar_peering::{
    build_initial_history, Action, ClusterView, Event, Eversion, Fullness, LogOp, ObjectBound,
    ObjectName, OsdView, PeeringMessage, PeeringSettings, Pg, PgLogEntry, PgMapping, PgStateFlags,
    ReqId, ReservationKind, ReserveFor, ScanResult, State, WriteReadiness,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use store::{Obj, Store};

/// What travels between OSDs.
#[allow(clippy::large_enum_variant)] // test traffic; size does not matter
#[derive(Debug, Clone)]
pub enum Net {
    Peering(PeeringMessage),
    Repop {
        write: u64,
        interval: u32,
        entry: PgLogEntry,
        trim_to: Option<Eversion>,
        data: Option<Option<Obj>>,
    },
    RepopAck {
        write: u64,
    },
    Push {
        oid: ObjectName,
        version: Eversion,
        obj: Option<Obj>,
    },
    PushAck {
        oid: ObjectName,
        version: Eversion,
    },
    PullReq {
        oid: ObjectName,
        version: Eversion,
    },
    PullReply {
        oid: ObjectName,
        version: Eversion,
        obj: Option<Obj>,
    },
    ScanReq {
        begin: ObjectBound,
        max: usize,
    },
    ScanReply {
        scan: ScanResult,
    },
    BackfillRemove {
        oid: ObjectName,
    },
    /// The target refused a push for lack of space (ENOSPC).
    PushRefused {
        oid: ObjectName,
    },
}

#[derive(Debug, Clone, Copy, Default)]
pub struct MonOsd {
    pub exists: bool,
    pub up: bool,
    pub in_: bool,
    pub up_from: u32,
    pub up_thru: u32,
    pub down_at: u32,
    pub lost_at: u32,
}

pub struct Node {
    pub alive: bool,
    pub pg: Option<Pg>,
    pub store: Store,
    pub local: VecDeque<Event>,
    /// The store use the OSD reports to its PG (reservation decisions).
    pub fullness: Option<Fullness>,
    /// The store refuses pushes (ENOSPC).
    pub refuse_pushes: bool,
    /// Reservation slots the PG holds (granted at once, until released).
    pub held: BTreeSet<ReservationKind>,
}

struct PendingWrite {
    primary: OsdId,
    interval: u32,
    oid: ObjectName,
    version: Eversion,
    value: Option<u64>,
    waiting: BTreeSet<OsdId>,
}

pub struct Sim {
    pub rng: ChaCha8Rng,
    pub pgid: PgId,
    pub pool_size: u32,
    pub min_size: u32,
    pub settings: PeeringSettings,
    pub epoch: u32,
    pub mon: Vec<MonOsd>,
    pub pg_temp: Vec<OsdId>,
    pub maps: Vec<(Arc<ClusterView>, PgMapping)>,
    pub nodes: Vec<Node>,
    links: BTreeMap<(OsdId, OsdId), VecDeque<Net>>,
    mon_queue: Vec<(OsdId, Action)>,
    pending: BTreeMap<u64, PendingWrite>,
    next_write: u64,
    pub now_us: u64,
    /// Last acknowledged state per object: (version, value or deleted).
    pub acked: BTreeMap<ObjectName, (Eversion, Option<u64>)>,
    /// Every write ever issued by a primary: version -> (object, value).
    pub issued: BTreeMap<Eversion, (ObjectName, Option<u64>)>,
    pub acked_count: u64,
    /// States published by primaries, in order.
    pub published: Vec<(OsdId, PgStateFlags)>,
    pub pg_temp_requests: Vec<Vec<OsdId>>,
    pub objects: Vec<ObjectName>,
    pub trace: Vec<String>,
    /// Set when maps keep changing without end.
    pub livelock: bool,
    /// Retries primaries scheduled (toofull), fired by `fire_retries`.
    pub retries: Vec<(OsdId, ReserveFor)>,
}

impl Sim {
    pub fn new(
        seed: u64,
        n_osds: usize,
        pool_size: u32,
        min_size: u32,
        settings: PeeringSettings,
    ) -> Sim {
        let mut sim = Sim {
            rng: ChaCha8Rng::seed_from_u64(seed),
            pgid: PgId::new(1, 0),
            pool_size,
            min_size,
            settings,
            epoch: 0,
            mon: vec![MonOsd::default(); n_osds],
            pg_temp: Vec::new(),
            maps: Vec::new(),
            nodes: (0..n_osds)
                .map(|_| Node {
                    alive: true,
                    pg: None,
                    store: Store::default(),
                    local: VecDeque::new(),
                    fullness: None,
                    refuse_pushes: false,
                    held: BTreeSet::new(),
                })
                .collect(),
            links: BTreeMap::new(),
            mon_queue: Vec::new(),
            pending: BTreeMap::new(),
            next_write: 1,
            now_us: 0,
            acked: BTreeMap::new(),
            issued: BTreeMap::new(),
            acked_count: 0,
            published: Vec::new(),
            pg_temp_requests: Vec::new(),
            objects: (0..8).map(|i| format!("obj{i:02}")).collect(),
            trace: Vec::new(),
            livelock: false,
            retries: Vec::new(),
        };
        for m in sim.mon.iter_mut() {
            *m = MonOsd {
                exists: true,
                up: true,
                in_: true,
                up_from: 1,
                ..Default::default()
            };
        }
        // Epoch 1: the pool and its PG are created on the up set.
        sim.epoch = 1;
        let (view, mapping) = sim.compute_map();
        sim.maps.push((view.clone(), mapping.clone()));
        for o in mapping.up.clone() {
            let mut pg = Pg::create(o, sim.pgid, 1, sim.settings.clone());
            let mut acts = pg.handle(Event::Initialize, 0);
            acts.extend(pg.handle(
                Event::AdvMap {
                    map: view.clone(),
                    mapping: mapping.clone(),
                },
                0,
            ));
            sim.nodes[o as usize].pg = Some(pg);
            sim.nodes[o as usize].store.pg_epoch = 1;
            sim.exec(o, acts);
            sim.deliver(o, Event::ActMap);
        }
        sim
    }

    fn log(&mut self, s: String) {
        if self.trace.len() < 100_000 {
            self.trace.push(s);
        }
    }

    // ---- the toy mon -----------------------------------------------------

    /// Rendezvous placement over in OSDs: stable, and moves data only to or
    /// from the OSD that changed.
    pub fn raw_set(&self) -> Vec<OsdId> {
        let mut c: Vec<(u64, OsdId)> = self
            .mon
            .iter()
            .enumerate()
            .filter(|(_, m)| m.exists && m.in_)
            .map(|(i, _)| {
                let mut h = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995;
                h ^= h >> 29;
                h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
                (h ^ (h >> 32), i as OsdId)
            })
            .collect();
        c.sort();
        c.into_iter()
            .take(self.pool_size as usize)
            .map(|(_, o)| o)
            .collect()
    }

    fn compute_map(&self) -> (Arc<ClusterView>, PgMapping) {
        let view = ClusterView {
            epoch: self.epoch,
            osds: self
                .mon
                .iter()
                .map(|m| OsdView {
                    exists: m.exists,
                    up: m.up,
                    up_from: m.up_from,
                    up_thru: m.up_thru,
                    down_at: m.down_at,
                    lost_at: m.lost_at,
                })
                .collect(),
            flags: 0,
        };
        let up: Vec<OsdId> = self
            .raw_set()
            .into_iter()
            .filter(|&o| self.mon[o as usize].up)
            .collect();
        let temp: Vec<OsdId> = self
            .pg_temp
            .iter()
            .copied()
            .filter(|&o| self.mon[o as usize].up)
            .collect();
        let acting = if temp.is_empty() { up.clone() } else { temp };
        let mapping = PgMapping {
            epoch: self.epoch,
            pool_exists: true,
            pool_size: self.pool_size,
            pool_min_size: self.min_size,
            pg_num: 1,
            up_primary: up.first().copied().unwrap_or(-1),
            acting_primary: acting.first().copied().unwrap_or(-1),
            up,
            acting,
        };
        (Arc::new(view), mapping)
    }

    /// Publishes a new epoch to every live OSD.
    pub fn new_epoch(&mut self) {
        self.epoch += 1;
        if self.epoch > 3000 {
            self.livelock = true;
            return;
        }
        if !self.pg_temp.is_empty() && self.pg_temp == self.raw_set() {
            self.pg_temp.clear(); // clean_temps: a temp equal to CRUSH is moot
        }
        let (view, mapping) = self.compute_map();
        self.log(format!(
            "e{} up {:?} acting {:?}",
            self.epoch, mapping.up, mapping.acting
        ));
        self.maps.push((view, mapping));
        for o in 0..self.nodes.len() as OsdId {
            if self.nodes[o as usize].alive {
                self.catch_up(o);
            }
        }
    }

    /// Brings one OSD's PG to the newest map (creating a copy if it is now a
    /// member).
    fn catch_up(&mut self, o: OsdId) {
        let (view, mapping) = self.maps.last().cloned().expect("maps exist");
        let member = mapping.up.contains(&o) || mapping.acting.contains(&o);
        if self.nodes[o as usize].pg.is_none() {
            if !member {
                return;
            }
            let (h, past) =
                build_initial_history(self.pgid, self.maps.iter().map(|(v, m)| (&**v, m)));
            let mut pg = Pg::new_empty_copy(o, self.pgid, h, past, self.settings.clone());
            let mut acts = pg.handle(Event::Initialize, self.now_us);
            acts.extend(pg.handle(Event::AdvMap { map: view, mapping }, self.now_us));
            self.nodes[o as usize].pg = Some(pg);
            self.nodes[o as usize].store.pg_epoch = self.epoch;
            self.exec(o, acts);
            self.deliver(o, Event::ActMap);
            return;
        }
        let from = self.nodes[o as usize].store.pg_epoch;
        for e in (from + 1)..=self.epoch {
            let (v, m) = self.maps[(e - 1) as usize].clone();
            self.deliver(o, Event::AdvMap { map: v, mapping: m });
            self.nodes[o as usize].store.pg_epoch = e;
        }
        self.deliver(o, Event::ActMap);
    }

    /// The mon handles queued pg_temp and up_thru requests (one new epoch).
    pub fn mon_tick(&mut self) {
        if self.mon_queue.is_empty() {
            return;
        }
        let mut changed = false;
        let current_primary = self
            .maps
            .last()
            .map(|(_, m)| m.acting_primary)
            .unwrap_or(-1);
        for (from, a) in std::mem::take(&mut self.mon_queue) {
            if !self.mon[from as usize].up {
                continue;
            }
            match a {
                Action::RequestUpThru { epoch } => {
                    let m = &mut self.mon[from as usize];
                    if m.up_thru < epoch && m.up_from <= epoch {
                        m.up_thru = epoch;
                        changed = true;
                    }
                }
                Action::RequestPgTemp { want } => {
                    if from != current_primary || want == self.pg_temp {
                        continue;
                    }
                    self.pg_temp_requests.push(want.clone());
                    self.pg_temp = want;
                    let m = &mut self.mon[from as usize];
                    m.up_thru = m.up_thru.max(self.epoch);
                    changed = true;
                }
                _ => {}
            }
        }
        if changed {
            self.new_epoch();
        }
    }

    pub fn crash(&mut self, o: OsdId) {
        if !self.nodes[o as usize].alive {
            return;
        }
        self.log(format!("crash osd.{o}"));
        let n = &mut self.nodes[o as usize];
        n.alive = false;
        n.pg = None;
        n.local.clear();
        n.held.clear();
        self.links.retain(|(a, b), _| *a != o && *b != o);
        self.pending.retain(|_, w| w.primary != o);
        self.mon_queue.retain(|(f, _)| *f != o);
        let m = &mut self.mon[o as usize];
        m.up = false;
        m.down_at = self.epoch + 1;
        self.new_epoch();
    }

    pub fn restart(&mut self, o: OsdId) {
        if self.nodes[o as usize].alive {
            return;
        }
        self.log(format!("restart osd.{o}"));
        // The OSD loads its PG at the epoch it last processed, then boots.
        let node = &mut self.nodes[o as usize];
        node.alive = true;
        if let Some(meta) = node.store.meta() {
            let mut pg = Pg::load(o, meta, self.settings.clone());
            let mut acts = pg.handle(Event::Initialize, self.now_us);
            let from = node.store.pg_epoch.max(1);
            let (v, m) = self.maps[(from - 1) as usize].clone();
            acts.extend(pg.handle(Event::AdvMap { map: v, mapping: m }, self.now_us));
            node.pg = Some(pg);
            self.exec(o, acts);
        }
        {
            let m = &mut self.mon[o as usize];
            m.up = true;
            m.up_from = self.epoch + 1;
        }
        self.new_epoch();
    }

    pub fn set_in(&mut self, o: OsdId, in_: bool) {
        if self.mon[o as usize].in_ == in_ {
            return;
        }
        self.log(format!("osd.{o} in={in_}"));
        self.mon[o as usize].in_ = in_;
        self.new_epoch();
    }

    // ---- OSD side: executing actions ------------------------------------

    fn send(&mut self, from: OsdId, to: OsdId, m: Net) {
        if self.nodes.get(to as usize).is_some_and(|n| n.alive) {
            self.links.entry((from, to)).or_default().push_back(m);
        }
    }

    fn exec(&mut self, o: OsdId, actions: Vec<Action>) {
        // Remote reservations are taken one at a time, in OSD id order: a
        // primary asking several replicas at once can deadlock with others
        // doing the same when each OSD has one slot.
        let asks = actions
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::Send {
                        msg: PeeringMessage::ReserveRequest { .. },
                        ..
                    }
                )
            })
            .count();
        assert!(
            asks <= 1,
            "osd.{o} asked {asks} replicas for a reservation at once"
        );
        for a in actions {
            match a {
                Action::Send { to, msg } => self.send(o, to, Net::Peering(msg)),
                Action::Persist(w) => {
                    if !w.remove_objects.is_empty() {
                        self.log(format!("osd.{o} removes {:?} (merge)", w.remove_objects));
                    }
                    if let Some(kalmar_peering::LogWrite::Rewrite(l)) = &w.log {
                        let es: Vec<String> = l
                            .entries()
                            .map(|e| format!("{}:{}", e.version, e.oid))
                            .collect();
                        let before = self.nodes[o as usize].pg.as_ref().map(|p| p.state());
                        self.log(format!(
                            "osd.{o} ({before:?}) rewrites log ({}, {}] {es:?}",
                            l.tail(),
                            l.head()
                        ));
                        if let Some(p) = self.nodes[o as usize]
                            .pg
                            .as_ref()
                            .filter(|p| p.is_primary())
                        {
                            let q = p.query_json();
                            let peers: Vec<String> = q["peer_info"]
                                .as_array()
                                .map(|a| {
                                    a.iter()
                                        .map(|x| {
                                            format!(
                                                "{}: les {} hles {} lu {} lb {}",
                                                x["peer"],
                                                x["info"]["last_epoch_started"],
                                                x["info"]["history"]["last_epoch_started"],
                                                x["info"]["last_update"],
                                                x["info"]["last_backfill"]
                                            )
                                        })
                                        .collect()
                                })
                                .unwrap_or_default();
                            self.log(format!(
                                "   self les {} hles {} lu {}; peers {peers:?}",
                                p.info().last_epoch_started,
                                p.info().history.last_epoch_started,
                                p.info().last_update
                            ));
                        }
                    }
                    self.nodes[o as usize].store.apply(&w)
                }
                Action::RequestPgTemp { .. } | Action::RequestUpThru { .. } => {
                    self.mon_queue.push((o, a))
                }
                Action::RequestReservation { kind, .. } => {
                    let n = &mut self.nodes[o as usize];
                    n.held.insert(kind);
                    n.local.push_back(Event::ReservationGranted { kind });
                }
                Action::ReleaseReservation { kind } => {
                    self.nodes[o as usize].held.remove(&kind);
                }
                Action::ScheduleRetry { kind, .. } => self.retries.push((o, kind)),
                Action::Pull { oid, version, from } => {
                    self.send(o, from, Net::PullReq { oid, version })
                }
                Action::Push {
                    oid, version, to, ..
                } => {
                    let obj = self.nodes[o as usize].store.objects.get(&oid).copied();
                    for t in to {
                        self.send(
                            o,
                            t,
                            Net::Push {
                                oid: oid.clone(),
                                version,
                                obj,
                            },
                        );
                    }
                }
                Action::ScanLocal { begin, max } => {
                    let scan = self.nodes[o as usize].store.scan(&begin, max);
                    self.nodes[o as usize]
                        .local
                        .push_back(Event::ScanCompleted { from: o, scan });
                }
                Action::ScanPeer { peer, begin, max } => {
                    self.send(o, peer, Net::ScanReq { begin, max })
                }
                Action::RemoveOnPeer { peer, oid } => {
                    self.send(o, peer, Net::BackfillRemove { oid })
                }
                Action::StartScrub { deep, repair } => self.nodes[o as usize].local.push_back(
                    Event::ScrubFinished(kalmar_peering::ScrubResult {
                        deep,
                        repair,
                        ..Default::default()
                    }),
                ),
                Action::PublishStats(r) => self.published.push((o, r.state)),
                Action::RecordStateLatency { .. } => {}
                Action::DeletePg => {
                    self.log(format!("osd.{o} deletes its copy"));
                    let n = &mut self.nodes[o as usize];
                    n.pg = None;
                    n.held.clear();
                    n.store.wipe();
                }
            }
        }
    }

    pub fn deliver(&mut self, o: OsdId, ev: Event) {
        self.now_us += 10;
        let fullness = self.nodes[o as usize].fullness;
        let Some(pg) = self.nodes[o as usize].pg.as_mut() else {
            return;
        };
        pg.set_fullness(fullness);
        let was_active = pg.is_active();
        let before = pg.state();
        let evs = format!("{ev:?}").chars().take(90).collect::<String>();
        let acts = pg.handle(ev, self.now_us);
        let after = pg.state();
        if before != after {
            let line = format!("osd.{o} {before:?} -> {after:?} on {evs}");
            let extra = (std::env::var("SIM_DEBUG").is_ok()
                && after == State::Peering(kalmar_peering::Peering::GetLog))
            .then(|| {
                let q = pg.query_json();
                format!("   info {} peers {}", q["info"], q["peer_info"])
            });
            self.log(line);
            if let Some(x) = extra {
                self.log(x);
            }
        }
        let Some(pg) = self.nodes[o as usize].pg.as_mut() else {
            return;
        };
        let active_now = pg.is_active() && pg.is_primary();
        if let Some(r) = pg.crash_reason() {
            panic!("osd.{o} pg crashed: {r}");
        }
        self.exec(o, acts);
        if active_now && !was_active {
            self.check_acked_in_log(o);
        }
    }

    /// Invariant: an active primary's log holds every acknowledged entry
    /// (or has trimmed past it, which needs every member to have it).
    fn check_acked_in_log(&self, o: OsdId) {
        let Some(pg) = self.nodes[o as usize].pg.as_ref() else {
            return;
        };
        let log = pg.log();
        for (oid, (v, _)) in &self.acked {
            assert!(
                log.get(*v).is_some() || *v <= log.tail(),
                "osd.{o} went active at e{} without acknowledged write {oid}@{v} (log ({}, {}])",
                self.epoch,
                log.tail(),
                log.head()
            );
        }
    }

    fn on_net(&mut self, from: OsdId, to: OsdId, m: Net) {
        match m {
            Net::Peering(msg) => {
                if self.nodes[to as usize].pg.is_none() {
                    // No copy here: answer queries with an empty info.
                    if let Some(reply) = PeeringMessage::reply_without_copy(&msg, self.epoch) {
                        self.send(to, from, Net::Peering(reply));
                    }
                    return;
                }
                self.deliver(to, Event::Message { from, msg })
            }
            Net::Repop {
                write,
                interval,
                entry,
                trim_to,
                data,
            } => {
                let Some(pg) = self.nodes[to as usize].pg.as_mut() else {
                    return;
                };
                if pg.info().history.same_interval_since != interval
                    || !matches!(pg.state(), State::ReplicaActive(_))
                {
                    return;
                }
                let w = pg
                    .append_log(vec![entry.clone()], trim_to)
                    .expect("replica log append");
                let store = &mut self.nodes[to as usize].store;
                store.apply(&w);
                if let Some(obj) = data {
                    match obj {
                        Some(v) => store.objects.insert(entry.oid.clone(), v),
                        None => store.objects.remove(&entry.oid),
                    };
                }
                self.send(to, from, Net::RepopAck { write });
            }
            Net::RepopAck { write } => {
                let done = match self.pending.get_mut(&write) {
                    Some(w) if w.primary == to => {
                        w.waiting.remove(&from);
                        w.waiting.is_empty()
                    }
                    _ => false,
                };
                if done {
                    self.complete_write(write);
                }
            }
            Net::Push { oid, .. } if self.nodes[to as usize].refuse_pushes => {
                self.log(format!("osd.{to} refuses push {oid}: full"));
                self.send(to, from, Net::PushRefused { oid });
            }
            Net::PushRefused { oid } => {
                self.deliver(to, Event::PushRefusedFull { peer: from, oid })
            }
            Net::Push { oid, version, obj } => {
                self.log(format!("osd.{to} gets push {oid} {obj:?} from osd.{from}"));
                let store = &mut self.nodes[to as usize].store;
                match obj {
                    Some(v) => store.objects.insert(oid.clone(), v),
                    None => store.objects.remove(&oid),
                };
                if let Some((v, _)) = obj {
                    self.deliver(
                        to,
                        Event::ObjectRecovered {
                            oid: oid.clone(),
                            version: v,
                        },
                    );
                }
                self.send(to, from, Net::PushAck { oid, version });
            }
            Net::PushAck { oid, version } => self.deliver(
                to,
                Event::PushCompleted {
                    peer: from,
                    oid,
                    version,
                },
            ),
            Net::PullReq { oid, version } => {
                let obj = self.nodes[to as usize].store.objects.get(&oid).copied();
                self.send(to, from, Net::PullReply { oid, version, obj });
            }
            Net::PullReply { oid, version, obj } => match obj {
                Some(v) if v.0 == version => {
                    self.nodes[to as usize].store.objects.insert(oid.clone(), v);
                    self.deliver(to, Event::ObjectRecovered { oid, version });
                }
                _ => self.deliver(to, Event::PullFailed { from, oid }),
            },
            Net::ScanReq { begin, max } => {
                let scan = self.nodes[to as usize].store.scan(&begin, max);
                self.send(to, from, Net::ScanReply { scan });
            }
            Net::ScanReply { scan } => self.deliver(to, Event::ScanCompleted { from, scan }),
            Net::BackfillRemove { oid } => {
                self.log(format!("osd.{to} backfill-removes {oid}"));
                self.nodes[to as usize].store.objects.remove(&oid);
            }
        }
    }

    fn complete_write(&mut self, id: u64) {
        let Some(w) = self.pending.remove(&id) else {
            return;
        };
        self.log(format!("ack {}@{}", w.oid, w.version));
        self.acked.insert(w.oid.clone(), (w.version, w.value));
        self.acked_count += 1;
        if let Some(pg) = self.nodes[w.primary as usize].pg.as_mut() {
            pg.on_write_committed(w.version);
        }
    }

    // ---- clients ---------------------------------------------------------

    /// A client write (or delete) of `oid` to the current primary. Returns
    /// whether it was issued.
    pub fn client_write(&mut self, oid: &str, delete: bool) -> bool {
        let primary = self
            .maps
            .last()
            .map(|(_, m)| m.acting_primary)
            .unwrap_or(-1);
        if primary < 0 || !self.nodes[primary as usize].alive {
            return false;
        }
        let readiness = match self.nodes[primary as usize].pg.as_ref() {
            Some(pg) => pg.readiness(oid),
            None => return false,
        };
        match readiness {
            WriteReadiness::Ready => {}
            WriteReadiness::NeedsRecovery(o) => {
                self.deliver(primary, Event::ClientWaitsFor { oid: o });
                return false;
            }
            _ => return false,
        }
        let existing = self.nodes[primary as usize].store.objects.get(oid).copied();
        if delete && existing.is_none() {
            return false;
        }
        let id = self.next_write;
        self.next_write += 1;
        let value = (!delete).then(|| self.rng.random::<u64>());
        let Some(pg) = self.nodes[primary as usize].pg.as_mut() else {
            return false;
        };
        let op = if delete { LogOp::Delete } else { LogOp::Modify };
        let prior = existing.map_or(Eversion::ZERO, |o| o.0);
        let entry = pg.new_log_entry(op, oid, prior, ReqId::new(7, 1, id), self.now_us, 0);
        let trim = pg.trim_to();
        let w = pg
            .append_log(vec![entry.clone()], trim)
            .expect("primary log append");
        let targets = pg.replication_targets(oid);
        let interval = pg.info().history.same_interval_since;
        let store = &mut self.nodes[primary as usize].store;
        store.apply(&w);
        let obj = value.map(|v| (entry.version, v));
        match obj {
            Some(o) => store.objects.insert(oid.to_string(), o),
            None => store.objects.remove(oid),
        };
        self.issued.insert(entry.version, (oid.to_string(), value));
        self.log(format!(
            "osd.{primary} writes {oid}@{} -> {:?}",
            entry.version, targets
        ));
        let mut waiting = BTreeSet::new();
        for t in &targets {
            waiting.insert(t.osd);
            let data = t.with_data.then_some(obj);
            self.send(
                primary,
                t.osd,
                Net::Repop {
                    write: id,
                    interval,
                    entry: entry.clone(),
                    trim_to: trim,
                    data,
                },
            );
        }
        self.pending.insert(
            id,
            PendingWrite {
                primary,
                interval,
                oid: oid.to_string(),
                version: entry.version,
                value,
                waiting,
            },
        );
        if targets.is_empty() {
            self.complete_write(id);
        }
        true
    }

    // ---- scheduling ------------------------------------------------------

    /// Delivers one queued item (network message or local event) chosen at
    /// random; false if nothing was queued.
    pub fn step_one(&mut self) -> bool {
        let links: Vec<(OsdId, OsdId)> = self
            .links
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| *k)
            .collect();
        let locals: Vec<OsdId> = (0..self.nodes.len() as OsdId)
            .filter(|&o| !self.nodes[o as usize].local.is_empty())
            .collect();
        let total = links.len() + locals.len();
        if total == 0 {
            return false;
        }
        let pick = self.rng.random_range(0..total);
        if pick < links.len() {
            let (from, to) = links[pick];
            let Some(m) = self
                .links
                .get_mut(&(from, to))
                .and_then(VecDeque::pop_front)
            else {
                return true;
            };
            self.on_net(from, to, m);
        } else {
            let o = locals[pick - links.len()];
            if let Some(ev) = self.nodes[o as usize].local.pop_front() {
                self.deliver(o, ev);
            }
        }
        true
    }

    /// Runs until nothing is queued and the mon has nothing to do.
    pub fn settle(&mut self, max_steps: usize) -> bool {
        for _ in 0..max_steps {
            if self.livelock {
                return false;
            }
            if !self.step_one() {
                if self.mon_queue.is_empty() {
                    return true;
                }
                self.mon_tick();
            }
        }
        false
    }

    /// Delivers the retries primaries scheduled (their wait is over).
    pub fn fire_retries(&mut self) {
        for (o, kind) in std::mem::take(&mut self.retries) {
            if self.nodes[o as usize].alive {
                self.nodes[o as usize]
                    .local
                    .push_back(Event::RetryReservation { kind });
            }
        }
    }

    pub fn primary(&self) -> OsdId {
        self.maps
            .last()
            .map(|(_, m)| m.acting_primary)
            .unwrap_or(-1)
    }

    pub fn mapping(&self) -> PgMapping {
        self.maps.last().map(|(_, m)| m.clone()).unwrap_or_default()
    }
}
