//! `kalmar-osd run`: mount the store, open the client, cluster and
//! heartbeat ports, load PGs, boot against the mon, and serve until a
//! signal (or a store failure) stops the OSD.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kalmar_common::perf::PerfCollection;
use kalmar_maps::{EntityAddr, OsdAddrs, OsdId, OsdMap};
use kalmar_msgr::{event_channel, EntityName, Listener, MsgrConfig};
use kalmar_objectstore::device::BlockDevice;
use kalmar_objectstore::meta as smeta;
use kalmar_objectstore::{Drive, MountOptions, ObjectStore, PlacementFn, StoreError};
use kalmar_proto::monc::{MonClient, MonEvent};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::admin::{self, StatusView};
use crate::dispatch::{map_waiter, ClientSink, ClientThrottle, ClusterSink};
use crate::heartbeat::Heartbeat;
use crate::maps::MapStore;
use crate::mapwork::MapWork;
use crate::mark_down::{self, Outcome};
use crate::options::OsdOptions;
use crate::peers::{cluster_addr, heartbeat_addr, Peers};
use crate::perf;
use crate::pg::PgEvent;
use crate::report;
use crate::service::Service;
use crate::shard::store::ShardStore;

/// How often PGs check their queued ops for expiry.
const PG_TICK: Duration = Duration::from_secs(1);
/// Room added to the largest client write for a frame's headers.
const FRAME_HEADROOM_BYTES: usize = 1 << 20;
/// Longest wait for the PG tasks to end once asked to stop, before the
/// store is stopped under them.
const PG_STOP_WAIT: Duration = Duration::from_secs(10);

/// A block device handed over in memory instead of opened by path (the
/// whole-cluster simulator's fault-injecting device).
#[derive(Clone)]
pub struct DeviceHandle(pub Arc<dyn BlockDevice>);

impl std::fmt::Debug for DeviceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceHandle({})", self.0.path().display())
    }
}

/// How an OSD's run ends when its stop future resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A signal: tell the mon, stop the PGs, unmount.
    Clean,
    /// The process dies (the simulator's kill -9): nothing is told,
    /// flushed or checkpointed; the store is left as a crash leaves it.
    Crash,
}

/// How to run one OSD.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub id: OsdId,
    pub device: PathBuf,
    /// The device itself, when it is not opened from `device` (which then
    /// only names it).
    pub block_device: Option<DeviceHandle>,
    /// How the OSD's sessions reach the network (TCP, or a host of the
    /// simulated network).
    pub transport: kalmar_msgr::Transport,
    pub mon: SocketAddr,
    /// More mons to hunt among (`--mon` lists).
    pub other_mons: Vec<SocketAddr>,
    pub admin_socket: PathBuf,
    /// Address the three ports bind to.
    pub bind_ip: IpAddr,
    pub opts: OsdOptions,
    pub mount: MountOptions,
    /// Extra `config show` keys (identity, paths).
    pub identity: serde_json::Map<String, Value>,
    /// Device class to give CRUSH at boot when it has none.
    pub device_class: Option<String>,
    /// `TYPE=NAME` words of the CRUSH location this OSD places itself at
    /// before it boots (Ceph's `osd_crush_update_on_start`); None: leave
    /// CRUSH alone.
    pub crush_location: Option<Vec<String>>,
    /// This OSD's key (for the mon) and its acceptor's ticket check.
    pub auth: kalmar_msgr::auth::MsgrAuth,
    /// How often tickets and rotating secrets are renewed.
    pub auth_refresh: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum OsdError {
    #[error("cannot mount {path}: {source}")]
    Mount { path: PathBuf, source: StoreError },
    #[error("{0}")]
    NotThisOsd(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin socket {path}: {source}")]
    AdminSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Map(String),
    #[error("the OSD stopped: {0}")]
    Fatal(String),
    #[error("{0}")]
    Config(String),
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

async fn bind(
    ip: IpAddr,
    me: &EntityName,
    fsid: uuid::Uuid,
    cfg: &MsgrConfig,
) -> Result<
    (
        Listener,
        mpsc::Receiver<kalmar_msgr::Event>,
        mpsc::Sender<kalmar_msgr::Event>,
    ),
    OsdError,
> {
    let (tx, rx) = event_channel(cfg);
    let addr = SocketAddr::new(ip, 0);
    let l = Listener::bind(addr, me.clone(), fsid, cfg.clone(), tx.clone())
        .await
        .map_err(|source| OsdError::Bind { addr, source })?;
    Ok((l, rx, tx))
}

/// Binds a port whose connections are spread over the shards.
async fn bind_placed<S: kalmar_msgr::sink::EventSink + Clone>(
    ip: IpAddr,
    me: &EntityName,
    fsid: uuid::Uuid,
    cfg: &MsgrConfig,
    sink: S,
    place: kalmar_msgr::listener::Placement,
) -> Result<Listener, OsdError> {
    let addr = SocketAddr::new(ip, 0);
    Listener::bind_placed(addr, me.clone(), fsid, cfg.clone(), sink, Some(place))
        .await
        .map_err(|source| OsdError::Bind { addr, source })
}

/// A connection goes to the shard its peer hashes to.
fn shard_placement(shards: &[tokio::runtime::Handle]) -> kalmar_msgr::listener::Placement {
    let shards = shards.to_vec();
    Arc::new(move |peer: &kalmar_msgr::PeerInfo| {
        let n = shards.len().max(1);
        let h =
            crc32c::crc32c(peer.entity.to_string().as_bytes()) as usize ^ peer.session_id as usize;
        shards.get(h % n).cloned()
    })
}

/// Where the store places a collection: a PG's on its shard's engine,
/// everything else (`meta`) on shard 0's.
fn placement(shards: usize) -> PlacementFn {
    PlacementFn(Arc::new(move |c: &kalmar_objectstore::CollectionId| {
        match crate::names::parse_pg_collection(c) {
            Some(pgid) => crate::shard::shard_of(pgid, shards),
            None => 0,
        }
    }))
}

/// How long one `osd crush create-or-move` waits for the mon before it is
/// sent again.
const CRUSH_UPDATE_TIMEOUT: Duration = Duration::from_secs(30);

/// Asks the mon to place osd.`id` at `args` (`osd crush create-or-move`),
/// again while the mon cannot be reached. `weight` is the OSD's initial
/// CRUSH weight (`osd_crush_initial_weight`, else its size in TiB): the
/// mon gives it to an OSD that has not booted since it was created and
/// keeps the weight of one that has. The answer: the mon's status line, or
/// its refusal (an invalid location) as the reason the OSD stops.
fn spawn_crush_update(
    mon: Arc<MonClient>,
    id: OsdId,
    args: Vec<String>,
    weight: f64,
) -> tokio::sync::oneshot::Receiver<Result<String, String>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let cmd = serde_json::json!({
        "prefix": "osd crush create-or-move",
        "id": id,
        "weight": weight,
        "args": args,
    });
    tokio::spawn(async move {
        let place = args.join(" ");
        let r = loop {
            match mon.command(&cmd, CRUSH_UPDATE_TIMEOUT).await {
                Ok(reply) if reply.retval == 0 => break Ok(reply.outs),
                Ok(reply) if reply.retval == -11 => {
                    tracing::warn!(
                        "crush location not set yet (EAGAIN: {}); retrying",
                        reply.outs
                    );
                }
                Ok(reply) => {
                    break Err(format!(
                        "crush_location '{place}': the mon refused it (errno {}): {}",
                        -reply.retval, reply.outs
                    ))
                }
                Err(e) => tracing::warn!("crush location not set yet: {e}; retrying"),
            }
            tokio::time::sleep(crate::mapwork::BOOT_RETRY_INTERVAL).await;
        };
        let _ = tx.send(r);
    });
    rx
}

/// Mounts the OSD's store: opened from its path on a blocking thread, or
/// mounted on the given device right here (in memory).
async fn mount_store(cfg: &RunConfig, shards: usize) -> Result<ObjectStore, OsdError> {
    let device = cfg.device.clone();
    let mut mount = cfg.mount.clone();
    mount.settings.engines = shards.max(1);
    // The shards drive the engines; `Caller` (no thread of the store's
    // own) is the simulator's choice and stays.
    if mount.settings.drive != Drive::Caller {
        mount.settings.drive = Drive::External;
    }
    mount.placement = Some(placement(shards.max(1)));
    let mounted = match &cfg.block_device {
        Some(dev) => ObjectStore::mount_device(dev.0.clone(), &device, &mount),
        None => tokio::task::spawn_blocking(move || ObjectStore::mount(&device, &mount))
            .await
            .map_err(|e| OsdError::Fatal(format!("mount task: {e}")))?,
    };
    mounted.map_err(|source| OsdError::Mount {
        path: cfg.device.clone(),
        source,
    })
}

/// Fewest log entries (and dups) an OSD runs with when it shortens its PG
/// logs to fit its journal; below that it refuses to start.
const MIN_FITTED_LOG_ENTRIES: usize = 100;

/// A PG log rewrite is one transaction, so one journal record: with logs
/// as long as the options allow and names as long as they allow, it must
/// fit the store's largest record, or it would stop the OSD in the middle
/// of peering. On a small journal the OSD shortens `osd_max_pg_log_entries`
/// and `osd_pg_log_dups_tracked` in proportion until it does (with a
/// warning: fewer entries mean peers fall back to backfill sooner), and
/// refuses to start when even `MIN_FITTED_LOG_ENTRIES` would not fit.
fn fit_log_to_journal(
    opts: &mut OsdOptions,
    engines: &[kalmar_objectstore::CommitEngine],
) -> Result<(), OsdError> {
    use crate::pg::meta::rewrite_record_bytes;
    let Some(limit) = engines.iter().map(|e| e.max_record_bytes()).min() else {
        return Ok(());
    };
    let (entries, dups, name_len) = (
        opts.osd_max_pg_log_entries,
        opts.osd_pg_log_dups_tracked,
        opts.osd_max_object_name_len,
    );
    let need = rewrite_record_bytes(entries, dups, name_len);
    if need <= limit {
        return Ok(());
    }
    // The bound is linear in entries and dups: scale both by one factor.
    let fixed = rewrite_record_bytes(0, 0, name_len);
    let scale = limit.saturating_sub(fixed) as f64 / (need - fixed) as f64;
    let fitted = |n: usize| (n as f64 * scale) as usize;
    let (fit_entries, fit_dups) = (fitted(entries), fitted(dups));
    if fit_entries < MIN_FITTED_LOG_ENTRIES.min(entries)
        || rewrite_record_bytes(fit_entries, fit_dups, name_len) > limit
    {
        return Err(OsdError::Config(format!(
            "a PG log of osd_max_pg_log_entries = {entries} entries and \
             osd_pg_log_dups_tracked = {dups} dups, with object names up to \
             osd_max_object_name_len = {name_len} bytes, can take {need} bytes in one journal \
             record, but this store's journal takes records of at most {limit} bytes (a quarter \
             of a journal zone; the journal is divided among {} shards), and fewer than \
             {MIN_FITTED_LOG_ENTRIES} entries would fit: lower osd_max_object_name_len, run \
             fewer shards (osd_op_num_shards), or make the OSD on a larger device",
            engines.len()
        )));
    }
    tracing::warn!(
        osd_max_pg_log_entries = fit_entries,
        osd_pg_log_dups_tracked = fit_dups,
        configured_entries = entries,
        configured_dups = dups,
        osd_max_object_name_len = name_len,
        journal_record_limit = limit,
        "PG logs shortened to fit this store's journal records (a log rewrite is one record); \
         a larger device, fewer shards or a lower osd_max_object_name_len keeps them longer"
    );
    opts.osd_max_pg_log_entries = fit_entries;
    opts.osd_pg_log_dups_tracked = fit_dups;
    Ok(())
}

/// Runs the OSD until `stop` resolves or the store fails. `shards` are
/// the runtimes of the shards; the first is the one this runs on.
pub async fn run(
    cfg: RunConfig,
    stop: impl Future<Output = Stop>,
    shards: Vec<tokio::runtime::Handle>,
) -> Result<(), OsdError> {
    let store = mount_store(&cfg, shards.len()).await?;
    let store = Arc::new(store);
    // Each shard drives the engine of its journal zone.
    let engines = store.take_engines().map_err(|source| OsdError::Mount {
        path: cfg.device.clone(),
        source,
    })?;
    if engines.len() != shards.len() {
        return Err(OsdError::Fatal(format!(
            "the store runs {} engines for {} shards (the journal is too small to divide further)",
            engines.len(),
            shards.len()
        )));
    }
    let mut opts = cfg.opts.clone();
    if let Err(e) = fit_log_to_journal(&mut opts, &engines) {
        // Unmounting needs the engines back.
        store.return_engines(engines);
        return Err(e);
    }
    let opts = Arc::new(opts);
    let shard_stores: Vec<(tokio::runtime::Handle, Arc<ShardStore>)> = shards
        .iter()
        .cloned()
        .zip(engines)
        .map(|(h, e)| (h, ShardStore::new(e, store.checkpoint_stepper())))
        .collect();
    let sb = smeta::read_superblock(&store)
        .map_err(|source| OsdError::Mount {
            path: cfg.device.clone(),
            source,
        })?
        .ok_or_else(|| {
            OsdError::NotThisOsd(format!(
                "{} holds no OSD superblock; run `kalmar-osd mkfs --id {} --device {} --mon ADDR` first",
                cfg.device.display(),
                cfg.id,
                cfg.device.display()
            ))
        })?;
    if sb.whoami != cfg.id {
        return Err(OsdError::NotThisOsd(format!(
            "{} belongs to osd.{}, not osd.{}",
            cfg.device.display(),
            sb.whoami,
            cfg.id
        )));
    }
    let fsid = sb.cluster_fsid;
    let me = EntityName::osd(cfg.id as u32);
    // Every session of the OSD (mon, mgr, peers, heartbeats, clients)
    // authenticates with osd.N's key or the tickets it earns.
    let base = MsgrConfig {
        auth: cfg.auth.clone(),
        transport: cfg.transport.clone(),
        ..MsgrConfig::default()
    };
    let mut msgr = base.clone();
    msgr.max_frame_bytes = msgr
        .max_frame_bytes
        .max(opts.osd_max_write_size as usize + FRAME_HEADROOM_BYTES);

    let perf_osd = perf::build_osd();
    let perf_rs = perf::build_recoverystate();
    let perf_scrub = perf::build_scrub();
    let perf = PerfCollection::new();
    perf.add(perf_osd.clone());
    perf.add(perf_rs.clone());
    perf.add(perf_scrub.clone());
    perf.add(store.perf_counters());
    perf.add(kalmar_common::alloc_count::perf_counters());

    // Client and cluster connections live on the shards (spread by peer)
    // and route each message from their read task.
    let (waiting_tx, waiting_rx) = mpsc::channel(opts.osd_pg_max_queued_ops.max(1));
    let client_sink = Arc::new(ClientSink::new(
        ClientThrottle::new(
            opts.osd_client_message_cap,
            opts.osd_client_message_size_cap,
        ),
        waiting_tx,
    ));
    let (create_tx, mut create_rx) = mpsc::channel(opts.osd_pg_max_queued_ops.max(1));
    let cluster_sink = Arc::new(ClusterSink::new(create_tx));
    let place = shard_placement(&shards);
    let public = bind_placed(
        cfg.bind_ip,
        &me,
        fsid,
        &msgr,
        client_sink.clone(),
        place.clone(),
    )
    .await?;
    let cluster = bind_placed(cfg.bind_ip, &me, fsid, &msgr, cluster_sink.clone(), place).await?;
    let (hb_listener, mut hb_rx, hb_tx) = bind(cfg.bind_ip, &me, fsid, &base).await?;
    let nonce = std::process::id();
    let addrs = OsdAddrs {
        public: EntityAddr::new(public.local_addr(), nonce),
        cluster: EntityAddr::new(cluster.local_addr(), nonce),
        heartbeat_back: EntityAddr::new(hb_listener.local_addr(), nonce),
        heartbeat_front: EntityAddr::new(hb_listener.local_addr(), nonce),
    };
    tracing::info!(public = %addrs.public, cluster = %addrs.cluster, heartbeat = %addrs.heartbeat_back, "osd.{} listening", cfg.id);

    let mons: Vec<SocketAddr> = std::iter::once(cfg.mon)
        .chain(cfg.other_mons.iter().copied())
        .collect();
    let (mon, mut mon_events) = MonClient::start_any(&mons, me.clone(), fsid, base.clone());
    if cfg.auth.client.as_ref().is_some_and(|c| c.has_key()) {
        kalmar_msgr::auth::spawn_refresh(
            mons.clone(),
            me.clone(),
            fsid,
            base.clone(),
            cfg.auth_refresh,
        );
    }
    // Perf counter reports and PG stats to the active mgr.
    let mut mgr_cfg = kalmar_mgr_client::MgrClientConfig::new(me.clone());
    mgr_cfg.msgr.auth = cfg.auth.clone();
    mgr_cfg.msgr.transport = cfg.transport.clone();
    for (k, v) in [
        ("osd_objectstore", "kalmar".to_string()),
        ("hostname", hostname()),
        ("front_addr", addrs.public.to_string()),
        ("back_addr", addrs.cluster.to_string()),
        (
            "ceph_version",
            format!("kalmar {}", env!("CARGO_PKG_VERSION")),
        ),
    ] {
        mgr_cfg.metadata.insert(k.to_string(), v);
    }
    let mgr = kalmar_mgr_client::MgrClient::start(mgr_cfg, perf.clone());
    let mon = Arc::new(mon);
    let maps = MapStore::new(store.clone(), sb.clone(), opts.osd_map_cache_size);
    let current = match sb.newest_map {
        0 => Arc::new(OsdMap::new(fsid, 0)),
        e => maps
            .get(e)
            .await
            .map_err(|e| OsdError::Map(format!("loading the newest stored map: {e}")))?
            .ok_or_else(|| {
                OsdError::Map(format!(
                    "the superblock names epoch {e}, which is not stored"
                ))
            })?,
    };
    let cluster_peers = Peers::new(
        me.clone(),
        fsid,
        msgr.clone(),
        cluster_addr,
        cluster_sink.clone(),
    );
    let svc = Arc::new(Service::new(
        cfg.id,
        fsid,
        sb.osd_fsid,
        opts.clone(),
        store.clone(),
        perf_osd,
        perf_rs,
        perf_scrub,
        cluster_peers,
        mon.clone(),
        current.clone(),
        shard_stores.clone(),
    ));
    for (id, (h, st)) in shard_stores.iter().enumerate() {
        let svc = svc.clone();
        h.spawn(crate::shard::store::drive(st.clone(), id, move |why| {
            svc.fatal(why)
        }));
    }
    cluster_sink.set_service(&svc);
    let hb_peers = Peers::new(me.clone(), fsid, base.clone(), heartbeat_addr, hb_tx);
    let hb = Arc::new(Heartbeat::new(svc.clone(), hb_peers));
    let status = Arc::new(Mutex::new(StatusView {
        cluster_fsid: fsid,
        osd_fsid: sb.osd_fsid,
        whoami: cfg.id,
        state: "booting",
        oldest_map: sb.oldest_map,
        newest_map: sb.newest_map,
        num_pgs: 0,
    }));
    let mut config = opts.to_json();
    if let Value::Object(m) = &mut config {
        m.extend(cfg.identity.clone());
        m.insert(
            "public_addr".into(),
            Value::String(addrs.public.to_string()),
        );
        m.insert(
            "cluster_addr".into(),
            Value::String(addrs.cluster.to_string()),
        );
    }
    let _admin = admin::start(
        &cfg.admin_socket,
        perf,
        status.clone(),
        svc.tracker.clone(),
        config,
    )
    .map_err(|source| OsdError::AdminSocket {
        path: cfg.admin_socket.clone(),
        source,
    })?;

    let (epoch_tx, epoch_rx) = watch::channel(current.epoch);
    let mut work = MapWork::new(
        svc.clone(),
        maps,
        hb.clone(),
        epoch_tx,
        status,
        addrs,
        hostname(),
    );
    work.device_class = cfg.device_class.clone();
    let loaded = work.load_pgs().await.map_err(OsdError::Map)?;
    tracing::info!(
        pgs = loaded,
        epoch = current.epoch,
        "loaded PGs from the store"
    );

    tokio::spawn(map_waiter(svc.clone(), waiting_rx, epoch_rx));
    client_sink.set_service(svc.clone());
    let hb2 = hb.clone();
    let hb_interval = opts.osd_heartbeat_interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(hb_interval);
        loop {
            tokio::select! {
                ev = hb_rx.recv() => match ev {
                    Some(ev) => hb2.on_event(ev).await,
                    None => return,
                },
                _ = tick.tick() => hb2.tick().await,
            }
        }
    });

    let start = if sb.newest_map == 0 {
        0
    } else {
        sb.newest_map + 1
    };
    if let Err(e) = mon.subscribe("osdmap", start, false).await {
        tracing::warn!("osdmap subscription not sent yet: {e}");
    }
    if let Err(e) = mon.subscribe("mgrmap", 0, false).await {
        tracing::warn!("mgrmap subscription not sent yet: {e}");
    }
    // Ceph's osd_crush_update_on_start: the OSD asks the mon to place it
    // at its crush_location before its first boot; a location the mon
    // refuses stops the OSD.
    let mut crush_placed = cfg.crush_location.clone().map(|args| {
        work.hold_boot = true;
        let size = store.statfs().map_or(0, |s| s.total_bytes);
        let weight = opts.initial_crush_weight(size);
        spawn_crush_update(mon.clone(), cfg.id, args, weight)
    });
    work.send_boot().await;

    let mut fatal = svc.fatal_watch();
    let mut pg_tick = tokio::time::interval(PG_TICK);
    let mut report_tick = tokio::time::interval(opts.osd_mon_report_interval);
    let mut beacon_tick = tokio::time::interval(opts.osd_beacon_report_interval);
    let mut boot_tick = tokio::time::interval(crate::mapwork::BOOT_RETRY_INTERVAL);
    let mut last_epoch_clean = 0;
    tokio::pin!(stop);
    let mut crashed = false;
    let result = loop {
        tokio::select! {
            ev = mon_events.recv() => match ev {
                Some(MonEvent::OsdMap(m)) => {
                    if let Err(e) = work.handle_osdmap(m).await {
                        break Err(OsdError::Map(e));
                    }
                }
                Some(MonEvent::Reset) => {
                    tracing::info!("the mon restarted; re-sending boot state");
                    if work.boot_state() != crate::mapwork::BootState::Active {
                        work.send_boot().await;
                    }
                    report::send_beacon(&svc, last_epoch_clean).await;
                }
                Some(MonEvent::MgrMap(m)) => match m.decode_map() {
                    Ok(map) => mgr.handle_mgrmap(&map),
                    Err(e) => tracing::warn!("bad mgrmap from the mon: {e}"),
                },
                Some(MonEvent::Closed(reason)) => break Err(OsdError::Fatal(format!("the mon session ended: {reason}"))),
                Some(_) => {}
                None => break Err(OsdError::Fatal("the mon client stopped".into())),
            },
            req = create_rx.recv() => {
                if let Some(req) = req {
                    if let Err(e) = work.create_for(req).await {
                        break Err(OsdError::Map(e));
                    }
                }
            }
            _ = pg_tick.tick() => {
                let handles: Vec<_> = svc.pgs.read().values().cloned().collect();
                for h in handles {
                    h.send(PgEvent::Tick);
                }
            }
            _ = report_tick.tick() => {
                let (lec, primaries) = report::send_stats(&svc, hb.peer_ids(), Some(&mgr)).await;
                last_epoch_clean = lec;
                work.count_roles(primaries);
            }
            _ = beacon_tick.tick() => report::send_beacon(&svc, last_epoch_clean).await,
            placed = async {
                match crush_placed.as_mut() {
                    Some(rx) => rx.await,
                    None => std::future::pending().await,
                }
            }, if crush_placed.is_some() => {
                crush_placed = None;
                match placed {
                    Ok(Ok(outs)) => {
                        tracing::info!("crush location: {outs}");
                        work.hold_boot = false;
                        work.send_boot().await;
                    }
                    Ok(Err(e)) => break Err(OsdError::Fatal(e)),
                    Err(_) => break Err(OsdError::Fatal("the crush location update stopped".into())),
                }
            }
            _ = boot_tick.tick() => {
                work.maybe_reboot().await;
                svc.send_up_thru().await;
            }
            changed = fatal.changed() => {
                let reason = fatal.borrow().clone().unwrap_or_default();
                if changed.is_err() || !reason.is_empty() {
                    break Err(OsdError::Fatal(reason));
                }
            }
            how = &mut stop => {
                crashed = how == Stop::Crash;
                break Ok(());
            }
        }
    };
    work.stopping();
    if crashed {
        // A dead process tells nobody and writes nothing more: the store
        // is left as a crash leaves it, and the teardown below only ends
        // this process's tasks.
        tracing::info!("osd.{} crashed (simulated)", cfg.id);
        store.abandon();
    } else if result.is_ok() {
        // A clean stop: tell the mon before the PGs stop, so peers and
        // clients see this OSD down now, not after the heartbeat grace.
        let t0 = std::time::Instant::now();
        let outcome = mark_down::mark_me_down(&svc, addrs, &mut mon_events).await;
        let ms = t0.elapsed().as_millis() as u64;
        match outcome {
            Outcome::Skipped => {
                tracing::info!(
                    "osd_mon_shutdown_timeout is 0: not asking the mon to mark this osd down"
                )
            }
            Outcome::NotUp => tracing::info!("not up in the map: nothing to tell the mon"),
            Outcome::NoMon => {
                tracing::info!("no session to the mon: stopping without marking down")
            }
            Outcome::Acked => tracing::info!(ms, "the mon acked: marked down"),
            Outcome::SeenDown => tracing::info!(ms, "the map shows this osd down"),
            Outcome::NoAnswer => tracing::info!(
                ms,
                "no answer from the mon within osd_mon_shutdown_timeout; stopping anyway"
            ),
        }
    }
    mgr.close().await;
    tracing::info!("stopping osd.{}", cfg.id);
    let handles: Vec<_> = svc.pgs.read().values().cloned().collect();
    for h in handles {
        h.send(PgEvent::Shutdown);
    }
    drop(public);
    drop(cluster);
    drop(hb_listener);
    let still_running = svc.pg_tasks_ended(PG_STOP_WAIT).await;
    if still_running > 0 {
        tracing::warn!(
            still_running,
            "PG tasks did not end within {PG_STOP_WAIT:?}: stopping the store under them"
        );
    }
    // The engines go back to the store, which commits what is queued and
    // checkpoints as it unmounts.
    let mut engines = Vec::new();
    for (_, st) in &shard_stores {
        if let Some(e) = st.stop().await {
            engines.push(e);
        }
    }
    if crashed {
        return Ok(());
    }
    store.return_engines(engines);
    if result.is_ok() {
        let s = store.clone();
        let unmounted = if store.settings().drive == Drive::Caller {
            Ok(s.umount())
        } else {
            tokio::task::spawn_blocking(move || s.umount()).await
        };
        match unmounted {
            Ok(Ok(())) => tracing::info!("store unmounted"),
            Ok(Err(e)) => tracing::warn!("umount: {e}"),
            Err(e) => tracing::warn!("umount task: {e}"),
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_objectstore::MountOptions;

    /// A 64 MiB store (a 4 MiB journal, one zone: records up to 1 MiB)
    /// with its engine taken, as the OSD mounts it.
    fn small_store() -> (
        tempfile::TempDir,
        ObjectStore,
        Vec<kalmar_objectstore::CommitEngine>,
    ) {
        let (dir, dev) = crate::test_store::formatted_device();
        let mut mount = MountOptions::default();
        mount.settings.drive = Drive::External;
        mount.settings.engines = 1;
        let store = ObjectStore::mount(&dev, &mount).expect("mount");
        let engines = store.take_engines().expect("engines");
        (dir, store, engines)
    }

    #[test]
    fn pg_logs_shrink_to_fit_a_small_journal_or_the_osd_refuses() {
        use crate::pg::meta::rewrite_record_bytes;
        let (_dir, store, engines) = small_store();
        let limit = engines[0].max_record_bytes();
        assert_eq!(limit, 1 << 20, "a quarter of the 4 MiB journal");
        // The defaults need ~13 MB per rewrite: both lengths shrink in
        // proportion until a rewrite fits.
        let mut opts = OsdOptions::default();
        fit_log_to_journal(&mut opts, &engines).expect("fitted");
        let d = OsdOptions::default();
        assert!(opts.osd_max_pg_log_entries < d.osd_max_pg_log_entries);
        assert!(opts.osd_max_pg_log_entries >= MIN_FITTED_LOG_ENTRIES);
        assert_eq!(opts.osd_pg_log_dups_tracked, opts.osd_max_pg_log_entries);
        let fitted = rewrite_record_bytes(
            opts.osd_max_pg_log_entries,
            opts.osd_pg_log_dups_tracked,
            opts.osd_max_object_name_len,
        );
        assert!(fitted <= limit, "{fitted} > {limit}");
        assert!(
            fitted > limit * 9 / 10,
            "shrunk no more than needed: {fitted}"
        );
        // Options that fit stay as they are.
        let small = OsdOptions {
            osd_max_pg_log_entries: 500,
            osd_pg_log_dups_tracked: 500,
            osd_max_object_name_len: 256,
            ..OsdOptions::default()
        };
        let mut same = small.clone();
        fit_log_to_journal(&mut same, &engines).expect("fits");
        assert_eq!(same.osd_max_pg_log_entries, 500);
        assert_eq!(same.osd_pg_log_dups_tracked, 500);
        // Names so long that not even MIN_FITTED_LOG_ENTRIES fit: refused,
        // naming the options.
        let mut long_names = OsdOptions {
            osd_max_object_name_len: 16 << 10,
            ..OsdOptions::default()
        };
        let msg = fit_log_to_journal(&mut long_names, &engines)
            .expect_err("refused")
            .to_string();
        for option in [
            "osd_max_pg_log_entries",
            "osd_pg_log_dups_tracked",
            "osd_max_object_name_len",
            "osd_op_num_shards",
        ] {
            assert!(msg.contains(option), "{msg}");
        }
        assert!(msg.contains(&limit.to_string()), "{msg}");
        store.return_engines(engines);
        store.umount().expect("umount");
    }
}
