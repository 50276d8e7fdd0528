//! The map task: the only place PGs are created and maps consumed.
//!
//! On every osdmap message: store the new epochs (maps + superblock in one
//! transaction, durable before anything acts on them), then for each epoch
//! in order create the PGs that now map here and advance every PG
//! (`AdvMap`), then `ActMap` once; update heartbeat peers and sessions;
//! boot again if the map says this OSD is down; trim old epochs. At start
//! it loads the PGs found in the store and replays the epochs they missed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalmar_common::encoding::Blob;
use kalmar_maps::{Epoch, OsdAddrs, OsdMap, PgId};
use kalmar_objectstore::Transaction;
use kalmar_peering::{build_initial_history, ClusterView, PeeringMessage, Pg, PgMapping};
use kalmar_proto::mon::{OsdBoot, OsdMapMsg};
use kalmar_proto::osd::OsdPeeringMsg;
use kalmar_proto::Payload;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::admin::StatusView;
use crate::dispatch::CreateRequest;
use crate::heartbeat::{choose_peers, Heartbeat};
use crate::maps::{advance, MapStore};
use crate::names::{parse_pg_collection, pg_collection};
use crate::perf::*;
use crate::pg::{mapping_for, meta, MapEpoch, PgActor, PgEvent};
use crate::service::Service;
use crate::wire::encode_peering;

/// How often an OSD that is not up yet repeats its boot message.
pub const BOOT_RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// Where this OSD stands with the mon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootState {
    /// Sent a boot message, not yet up in the map.
    Booting,
    /// Up in the map with this process's addresses.
    Active,
    Stopping,
}

impl BootState {
    pub fn as_str(self) -> &'static str {
        match self {
            BootState::Booting => "booting",
            BootState::Active => "active",
            BootState::Stopping => "stopping",
        }
    }
}

pub struct MapWork {
    svc: Arc<Service>,
    maps: MapStore,
    hb: Arc<Heartbeat>,
    epoch_tx: watch::Sender<Epoch>,
    status: Arc<Mutex<StatusView>>,
    addrs: OsdAddrs,
    hostname: String,
    /// Sent at boot as `crush_device_class` (osd_class_update_on_start).
    pub device_class: Option<String>,
    /// No boot message while set: the CRUSH location is being placed
    /// first (osd_crush_update_on_start).
    pub hold_boot: bool,
    boot: BootState,
    last_boot: Option<Instant>,
    /// Map epoch when the boot was last sent.
    boot_epoch: Epoch,
    /// Peering messages for unknown PGs from epochs not reached yet.
    deferred: Vec<CreateRequest>,
}

impl MapWork {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        svc: Arc<Service>,
        maps: MapStore,
        hb: Arc<Heartbeat>,
        epoch_tx: watch::Sender<Epoch>,
        status: Arc<Mutex<StatusView>>,
        addrs: OsdAddrs,
        hostname: String,
    ) -> Self {
        MapWork {
            svc,
            maps,
            hb,
            epoch_tx,
            status,
            addrs,
            hostname,
            device_class: None,
            hold_boot: false,
            boot: BootState::Booting,
            last_boot: None,
            boot_epoch: 0,
            deferred: Vec::new(),
        }
    }

    pub fn boot_state(&self) -> BootState {
        self.boot
    }

    fn refresh_status(&self) {
        let sb = self.maps.superblock();
        let mut s = self.status.lock();
        s.state = self.boot.as_str();
        s.oldest_map = sb.oldest_map;
        s.newest_map = sb.newest_map;
        s.num_pgs = self.svc.pgs.read().len();
    }

    /// Loads the PGs in the store and brings each to the current epoch.
    pub async fn load_pgs(&mut self) -> Result<usize, String> {
        let store = self.svc.store.clone();
        let colls = self
            .svc
            .store
            .run_read(move || store.list_collections())
            .await
            .map_err(|e| e.to_string())?;
        let current = self.svc.map();
        let mut n = 0;
        for c in colls {
            let Some(pgid) = parse_pg_collection(&c) else {
                continue;
            };
            let (pg_meta, epoch) = meta::load(&self.svc.store, &c)
                .await
                .map_err(|e| e.to_string())?;
            let pg = Pg::load(self.svc.whoami, pg_meta, self.svc.opts.peering());
            let h = PgActor::spawn(self.svc.clone(), pg, 0, current.clone(), None);
            // The first map is the one the PG last processed (or the
            // oldest still stored), then every epoch since.
            let first = epoch
                .max(self.maps.superblock().oldest_map)
                .min(current.epoch);
            for e in first..=current.epoch {
                if e == 0 {
                    continue;
                }
                match self.maps.get(e).await.map_err(|e| e.to_string())? {
                    Some(m) => {
                        h.send(PgEvent::AdvMap(MapEpoch::new(m)));
                    }
                    None => tracing::warn!(%pgid, epoch = e, "stored map missing; the PG skips it"),
                }
            }
            h.send(PgEvent::ActMap);
            n += 1;
        }
        self.update_pg_perf();
        self.refresh_status();
        Ok(n)
    }

    /// Sends the boot message (again), unless held.
    pub async fn send_boot(&mut self) {
        if self.hold_boot {
            return;
        }
        let mut metadata = std::collections::BTreeMap::new();
        metadata.insert("osd_objectstore".to_string(), "kalmar".to_string());
        // The mon checks it against the releases it runs next to.
        metadata.insert(
            kalmar_common::release::METADATA_KEY.to_string(),
            kalmar_common::release::VERSION.to_string(),
        );
        metadata.insert("hostname".to_string(), self.hostname.clone());
        metadata.insert("front_addr".to_string(), self.addrs.public.to_string());
        metadata.insert("back_addr".to_string(), self.addrs.cluster.to_string());
        metadata.insert(
            "osd_data".to_string(),
            self.svc.store.db_path().display().to_string(),
        );
        if let Some(c) = &self.device_class {
            metadata.insert("crush_device_class".to_string(), c.clone());
        }
        let boot = OsdBoot {
            osd_id: self.svc.whoami,
            uuid: self.svc.osd_uuid,
            addrs: self.addrs,
            have_epoch: self.svc.epoch(),
            hostname: self.hostname.clone(),
            metadata,
        };
        match self.svc.mon.send(&boot).await {
            Ok(()) => tracing::info!(epoch = boot.have_epoch, "boot sent to the mon"),
            Err(e) => tracing::warn!("boot not sent: {e}"),
        }
        self.last_boot = Some(kalmar_common::clock::now());
        self.boot_epoch = self.svc.epoch();
    }

    /// Repeats the boot while the map does not show this OSD up.
    pub async fn maybe_reboot(&mut self) {
        if self.boot == BootState::Booting
            && self
                .last_boot
                .is_none_or(|t| kalmar_common::clock::since(t) >= BOOT_RETRY_INTERVAL)
        {
            self.send_boot().await;
        }
    }

    pub fn stopping(&mut self) {
        self.boot = BootState::Stopping;
        self.refresh_status();
    }

    /// Handles one osdmap message from the mon.
    pub async fn handle_osdmap(&mut self, msg: OsdMapMsg) -> Result<(), String> {
        self.svc.perf.inc(L_MAP_MESSAGES, 1);
        let current = self.svc.map();
        let have = (current.epoch > 0).then_some(&*current);
        let new = advance(have, &msg)?;
        let dups = (msg.incrementals.len() + msg.maps.len()).saturating_sub(new.len());
        self.svc.perf.inc(L_MAP_MESSAGE_EPOCH_DUPS, dups as u64);
        if new.is_empty() {
            return Ok(());
        }
        self.svc.perf.inc(L_MAP_MESSAGE_EPOCHS, new.len() as u64);
        self.maps
            .persist(&new)
            .await
            .map_err(|e| format!("storing maps: {e}"))?;
        let mut prev = (current.epoch > 0).then(|| current.clone());
        for e in &new {
            self.consume(e.map.clone(), prev.as_ref()).await?;
            prev = Some(e.map.clone());
        }
        let handles: Vec<_> = self.svc.pgs.read().values().cloned().collect();
        for h in handles {
            h.send(PgEvent::ActMap);
        }
        self.after_maps().await;
        self.release_deferred().await?;
        let keep = self.svc.opts.osd_map_max_epochs_stored;
        let per_txn = self.svc.opts.osd_target_transaction_size;
        self.maps
            .trim(keep, per_txn)
            .await
            .map_err(|e| format!("trimming maps: {e}"))?;
        self.refresh_status();
        Ok(())
    }

    /// Creates the PGs that map here at this epoch and advances all PGs.
    async fn consume(
        &mut self,
        map: Arc<OsdMap>,
        prev: Option<&Arc<OsdMap>>,
    ) -> Result<(), String> {
        let me = MapEpoch::new(map.clone());
        let whoami = self.svc.whoami;
        for pool in map.pools.values() {
            let mapped = map.map_pool_pgs(pool.id).map_err(|e| e.to_string())?;
            for (pgid, ua) in mapped {
                if !(ua.up.contains(&whoami) || ua.acting.contains(&whoami))
                    || self.svc.pg(pgid).is_some()
                {
                    continue;
                }
                let new_pool = prev
                    .is_some_and(|p| p.epoch + 1 == map.epoch && !p.pools.contains_key(&pool.id));
                self.create_pg(pgid, &map, new_pool).await?;
            }
        }
        let handles: Vec<_> = self.svc.pgs.read().values().cloned().collect();
        for h in handles {
            h.send(PgEvent::AdvMap(me.clone()));
        }
        // Only now may client ops of this epoch reach the PGs: they queue
        // behind the AdvMap.
        self.svc.set_map(map.clone());
        self.epoch_tx.send_replace(map.epoch);
        Ok(())
    }

    /// Makes a PG copy: complete and empty when its pool was created in
    /// this very epoch, else an empty, incomplete copy (the data lives on
    /// other OSDs and is backfilled).
    async fn create_pg(
        &mut self,
        pgid: PgId,
        map: &Arc<OsdMap>,
        new_pool: bool,
    ) -> Result<(), String> {
        let coll = pg_collection(pgid);
        let store = self.svc.store.clone();
        let c2 = coll.clone();
        let s2 = store.clone();
        let exists = store
            .run_read(move || s2.collection_exists(&c2))
            .await
            .map_err(|e| e.to_string())?;
        if exists {
            // Left by an earlier life of this OSD: load it.
            let (pg_meta, _) = meta::load(&self.svc.store, &coll)
                .await
                .map_err(|e| e.to_string())?;
            let pg = Pg::load(self.svc.whoami, pg_meta, self.svc.opts.peering());
            PgActor::spawn(self.svc.clone(), pg, 0, map.clone(), None);
            return Ok(());
        }
        let settings = self.svc.opts.peering();
        let pg = if new_pool {
            Pg::create(self.svc.whoami, pgid, map.epoch, settings)
        } else {
            let (history, past) = self.initial_history(pgid, map).await?;
            Pg::new_empty_copy(self.svc.whoami, pgid, history, past, settings)
        };
        let mut t = Transaction::new();
        meta::add_create(&mut t, &coll, &pg.meta(), 0);
        tracing::info!(%pgid, new_pool, "pg created");
        // The PG commits it on its shard before anything else it writes.
        PgActor::spawn(self.svc.clone(), pg, 0, map.clone(), Some(t));
        self.update_pg_perf();
        Ok(())
    }

    /// History and past intervals of a PG over the maps still cached,
    /// for a copy joining an existing PG.
    async fn initial_history(
        &self,
        pgid: PgId,
        map: &Arc<OsdMap>,
    ) -> Result<(kalmar_peering::PgHistory, kalmar_peering::PastIntervals), String> {
        let first = map
            .epoch
            .saturating_sub(self.svc.opts.osd_map_cache_size as u32)
            .max(self.maps.superblock().oldest_map)
            .max(1);
        let mut seq: Vec<(ClusterView, PgMapping)> = Vec::new();
        for e in first..=map.epoch {
            let m = if e == map.epoch {
                Some(map.clone())
            } else {
                self.maps.get(e).await.map_err(|e| e.to_string())?
            };
            if let Some(m) = m {
                if m.pools.contains_key(&pgid.pool) {
                    seq.push((ClusterView::from_osdmap(&m), mapping_for(&m, pgid)));
                }
            }
        }
        Ok(build_initial_history(pgid, seq.iter().map(|(v, m)| (v, m))))
    }

    /// A peering message for a PG without a local copy: deliver it if the
    /// PG exists by now, answer a query with "no copy", create the copy an
    /// activation needs; anything of a newer epoch waits for that map.
    pub async fn create_for(&mut self, req: CreateRequest) -> Result<(), String> {
        let pgid = req.msg.pgid();
        if let Some(h) = self.svc.pg(pgid) {
            h.send(PgEvent::Peering {
                from: req.from,
                msg: Box::new(req.msg),
            });
            return Ok(());
        }
        if req.msg.epoch() > self.svc.epoch() {
            if self.deferred.len() >= self.svc.opts.osd_pg_max_queued_ops {
                tracing::warn!(%pgid, "too many peering messages wait for a map; dropping the oldest");
                self.deferred.remove(0);
            }
            self.deferred.push(req);
            return Ok(());
        }
        match &req.msg {
            PeeringMessage::Query { .. } => {
                if let Some(r) = PeeringMessage::reply_without_copy(&req.msg, self.svc.epoch()) {
                    let m = OsdPeeringMsg {
                        from: self.svc.whoami,
                        map_epoch: self.svc.epoch(),
                        body: Blob(encode_peering(&r)),
                    };
                    self.svc.send_osd(req.from, m.to_message()).await;
                }
            }
            PeeringMessage::Activate { .. } => {
                let map = self.svc.map();
                if map.pool(pgid.pool).is_err() {
                    return Ok(());
                }
                let coll = pg_collection(pgid);
                let (history, past) = self.initial_history(pgid, &map).await?;
                let pg = Pg::new_empty_copy(
                    self.svc.whoami,
                    pgid,
                    history,
                    past,
                    self.svc.opts.peering(),
                );
                let mut t = Transaction::new();
                meta::add_create(&mut t, &coll, &pg.meta(), 0);
                if let Err(e) = self.svc.store.queue_transaction(t).await {
                    self.svc.fatal(format!("creating pg {pgid}: {e}"));
                    return Ok(());
                }
                let h = PgActor::spawn(self.svc.clone(), pg, 0, map.clone(), None);
                h.send(PgEvent::AdvMap(MapEpoch::new(map)));
                h.send(PgEvent::ActMap);
                h.send(PgEvent::Peering {
                    from: req.from,
                    msg: Box::new(req.msg),
                });
                self.update_pg_perf();
            }
            _ => {
                tracing::debug!(%pgid, osd = req.from, "peering message for a PG this OSD does not hold; dropped")
            }
        }
        Ok(())
    }

    /// Handles the held messages the current map has caught up with.
    async fn release_deferred(&mut self) -> Result<(), String> {
        let epoch = self.svc.epoch();
        let (ready, later): (Vec<CreateRequest>, Vec<CreateRequest>) =
            std::mem::take(&mut self.deferred)
                .into_iter()
                .partition(|r| r.msg.epoch() <= epoch);
        self.deferred = later;
        for r in ready {
            self.create_for(r).await?;
        }
        Ok(())
    }

    /// After a batch of maps: our own state, heartbeat peers, sessions.
    async fn after_maps(&mut self) {
        let map = self.svc.map();
        let whoami = self.svc.whoami;
        let me = map.osd(whoami);
        let up_here = me.is_some_and(|s| s.is_up() && s.addrs == self.addrs);
        match (self.boot, up_here) {
            (BootState::Booting, true) => {
                let up_from = me.map_or(0, |s| s.info.up_from);
                tracing::info!(epoch = map.epoch, up_from, "osd.{whoami} is up");
                self.boot = BootState::Active;
            }
            (BootState::Active, false) => {
                tracing::warn!(
                    epoch = map.epoch,
                    "the map marks osd.{whoami} down while it runs; booting again"
                );
                self.boot = BootState::Booting;
                self.send_boot().await;
            }
            _ => {}
        }
        let mut members = BTreeSet::new();
        for pool in map.pools.values() {
            if let Ok(pgs) = map.map_pool_pgs(pool.id) {
                for (_, ua) in pgs {
                    if ua.up.contains(&whoami) || ua.acting.contains(&whoami) {
                        members.extend(ua.up.iter().chain(ua.acting.iter()).copied());
                    }
                }
            }
        }
        let peers = choose_peers(
            &map,
            whoami,
            &members,
            self.svc.opts.osd_heartbeat_min_peers,
        );
        self.hb.set_peers(&map, &peers).await;
        self.svc.cluster.on_map(&map, None);
        self.svc.send_up_thru().await;
    }

    fn update_pg_perf(&self) {
        self.svc.perf.set(L_NUMPG, self.svc.pgs.read().len() as u64);
    }

    /// The primary PGs' state, to keep `numpg_primary` current.
    /// Also `numpg_stray`: PGs held here whose acting set does not hold
    /// this OSD (Ceph's strays: kept until the primary purges them).
    pub fn count_roles(&self, primaries: usize) {
        let held: Vec<PgId> = self.svc.pgs.read().keys().copied().collect();
        let total = held.len();
        let map = self.svc.map();
        let whoami = self.svc.whoami;
        let stray = held
            .iter()
            .filter(|pg| {
                map.pg_to_up_acting_osds(**pg)
                    .is_ok_and(|ua| !ua.acting.contains(&whoami))
            })
            .count();
        self.svc.perf.set(L_NUMPG, total as u64);
        self.svc.perf.set(L_NUMPG_PRIMARY, primaries as u64);
        self.svc.perf.set(L_NUMPG_STRAY, stray as u64);
        self.svc.perf.set(
            L_NUMPG_REPLICA,
            total.saturating_sub(primaries + stray) as u64,
        );
        self.refresh_status();
    }
}
