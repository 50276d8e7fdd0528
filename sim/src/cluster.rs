//! A cluster in one process: the real mon on a temporary directory, real
//! OSDs on fault-injecting in-memory devices, every daemon a host of one
//! simulated network, all on the caller's (current-thread, paused-time)
//! runtime.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use kalmar_client::{ClientConfig, Rados};
use kalmar_msgr::sim::SimNet;
use kalmar_msgr::{EntityName, EntityType, MsgrConfig};
use kalmar_objectstore::device::{FaultConfig, FaultyDevice};
use kalmar_objectstore::kv::PoweredKv;
use kalmar_objectstore::{Drive, KvHandle, MkfsOptions, MountOptions, ObjectStore, StoreSettings};
use kalmar_osd::{DeviceHandle, OsdError, OsdOptions, RunConfig, Stop};
use kalmar_proto::mon::OsdMkfs;
use kalmar_proto::monc::MonClient;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The mon's address on the simulated network.
const MON_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 6789);
/// Where registrations and admin commands come from.
const ADMIN_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100));
/// Bound on one mon command, in simulated time.
const MON_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on an OSD's exit after it was told to stop, in simulated time.
const OSD_STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The shape of the simulated cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub osds: u32,
    pub device_bytes: u64,
    pub journal_bytes: u64,
    /// Network latency range per message.
    pub latency: (Duration, Duration),
    /// `osd_max_pg_log_entries` of every OSD (`None`: the default, which
    /// the OSDs shorten to fit the journal). A short log sends an OSD that
    /// was away for a while to backfill instead of log recovery.
    pub pg_log_entries: Option<usize>,
    /// Each device operation answers after up to this many polls of its
    /// queue, a simulated millisecond apart
    /// (`FaultConfig::completion_delay_polls`); 0: at once. Commits then
    /// take simulated time, as on a disk, and the PG work that does not
    /// wait for them runs meanwhile.
    pub device_delay_polls: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            osds: 3,
            device_bytes: 64 << 20,
            // A PG log rewrite is one journal record, at most a quarter of
            // the journal: the OSDs shorten their logs to fit (to ~900
            // entries here, `fit_log_to_journal`).
            journal_bytes: 16 << 20,
            latency: (Duration::from_micros(20), Duration::from_micros(400)),
            pg_log_entries: None,
            device_delay_polls: 0,
        }
    }
}

/// The address of osd.`id`'s host.
pub fn osd_ip(id: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, id as u8 + 1))
}

/// The address of client `n`'s host.
pub fn client_ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 2, n as u8 + 1))
}

/// One OSD: its disk (device and metadata database on the same power)
/// and, while it runs, its task.
struct SimOsd {
    id: u32,
    dev: Arc<FaultyDevice>,
    kv: Arc<PoweredKv>,
    running: Option<RunningOsd>,
    /// Lives of this OSD so far (names its admin socket).
    lives: u32,
}

struct RunningOsd {
    stop: oneshot::Sender<Stop>,
    task: JoinHandle<Result<(), OsdError>>,
}

/// See the module documentation.
pub struct Cluster {
    pub net: Arc<SimNet>,
    pub fsid: Uuid,
    dir: tempfile::TempDir,
    _mon: kalmar_mon::RunningMon,
    osds: Vec<SimOsd>,
    seed: u64,
    /// Power cuts so far (each picks its own media image).
    power_cuts: u64,
    /// What the cluster was made with (the OSDs' options and devices).
    cfg: ClusterConfig,
}

fn store_settings() -> StoreSettings {
    StoreSettings {
        drive: Drive::Caller,
        // Checkpoints by journal use only: what happens does not depend on
        // how long the host took to run it.
        checkpoint_interval_ms: 3_600_000,
        checkpoint_journal_percent: 20,
        apply_max_delay_ms: 0,
        ..StoreSettings::default()
    }
}

fn msgr_on(net: &Arc<SimNet>, ip: IpAddr) -> MsgrConfig {
    MsgrConfig {
        transport: net.host(ip).transport(),
        ..MsgrConfig::default()
    }
}

impl Cluster {
    /// Makes and starts a cluster whose every random choice comes from
    /// `seed`, and waits until each OSD is up.
    pub async fn start(seed: u64, cfg: &ClusterConfig) -> anyhow::Result<Cluster> {
        let net = SimNet::new(seed);
        net.set_latency(cfg.latency.0, cfg.latency.1);
        let dir = tempfile::Builder::new().prefix("kalmar-sim-").tempdir()?;
        let mon = start_mon(&net, &dir.path().join("mon")).await?;
        let mut c = Cluster {
            fsid: mon.fsid,
            net,
            dir,
            _mon: mon,
            osds: Vec::new(),
            seed,
            power_cuts: 0,
            cfg: cfg.clone(),
        };
        for id in 0..cfg.osds {
            let osd = c.make_osd(id).await?;
            c.osds.push(osd);
            c.start_osd(id)?;
        }
        c.wait_osds_up(cfg.osds, Duration::from_secs(120)).await?;
        Ok(c)
    }

    /// Registers osd.`id` with the mon and formats its device.
    async fn make_osd(&self, id: u32) -> anyhow::Result<SimOsd> {
        let rng_seed = (self.seed ^ (u64::from(id) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let dev = Arc::new(FaultyDevice::new(
            self.cfg.device_bytes,
            self.fault_config(rng_seed),
        ));
        let kv = Arc::new(PoweredKv::new(dev.clone()));
        let uuid = Uuid::from_u64_pair(self.seed, u64::from(id) + 1);
        let mon = self.admin_monc().await?;
        let reply = mon
            .register_osd(
                OsdMkfs {
                    uuid,
                    want_id: id as i32,
                    hostname: format!("sim-host{id}"),
                    device_class: "ssd".into(),
                    ..OsdMkfs::default()
                },
                MON_COMMAND_TIMEOUT,
            )
            .await
            .with_context(|| format!("registering osd.{id}"))?;
        mon.close().await;
        if reply.retval != 0 || reply.osd_id != id as i32 {
            bail!(
                "the mon refused osd.{id}: {} ({}; got id {})",
                reply.error,
                reply.retval,
                reply.osd_id
            );
        }
        let mut mk = MkfsOptions::new(self.fsid, uuid);
        mk.journal_bytes = Some(self.cfg.journal_bytes);
        mk.kv = Some(KvHandle(kv.clone()));
        ObjectStore::mkfs_device(&*dev, &mk)?;
        let store = ObjectStore::mount_device(
            dev.clone(),
            &self.dir.path().join(format!("osd{id}")),
            &MountOptions {
                settings: StoreSettings {
                    drive: Drive::Inline,
                    ..store_settings()
                },
                kv: Some(KvHandle(kv.clone())),
                expected_fsid: Some(self.fsid),
                ..MountOptions::default()
            },
        )?;
        kalmar_osd::write_osd_meta(&store, self.fsid, uuid, id as i32)?;
        store.umount()?;
        Ok(SimOsd {
            id,
            dev,
            kv,
            running: None,
            lives: 0,
        })
    }

    /// A mon session from the admin host.
    async fn admin_monc(&self) -> anyhow::Result<MonClient> {
        let me = EntityName::new(EntityType::Client, "admin");
        let (mon, _events) =
            MonClient::connect_any(&[MON_ADDR], me, Uuid::nil(), msgr_on(&self.net, ADMIN_IP))
                .await?;
        Ok(mon)
    }

    /// Starts osd.`id` on its device as it is now (a new life of its host).
    pub fn start_osd(&mut self, id: u32) -> anyhow::Result<()> {
        let net = self.net.clone();
        let dir = self.dir.path().to_path_buf();
        let opts = osd_options(&self.cfg);
        let osd = self.osd_mut(id)?;
        if osd.running.is_some() {
            bail!("osd.{id} runs already");
        }
        osd.lives += 1;
        osd.kv.attach(osd.dev.clone());
        let cfg = osd_config(&net, &dir, osd, opts);
        let (stop_tx, stop_rx) = oneshot::channel();
        let stop = async move { stop_rx.await.unwrap_or(Stop::Crash) };
        let shards = vec![tokio::runtime::Handle::current()];
        let task = tokio::spawn(kalmar_osd::run(cfg, stop, shards));
        osd.running = Some(RunningOsd {
            stop: stop_tx,
            task,
        });
        Ok(())
    }

    /// Stops osd.`id`: cleanly (it marks itself down and unmounts), or as
    /// a crash of its process (`power_cut` also loses what its device had
    /// not flushed, and its database what it had not synced).
    pub async fn stop_osd(&mut self, id: u32, how: Stop, power_cut: bool) -> anyhow::Result<()> {
        let ip = osd_ip(id);
        let seed = self.seed ^ self.power_cuts.wrapping_mul(0x2545_f491_4f6c_dd1d);
        if power_cut {
            self.power_cuts += 1;
        }
        let net = self.net.clone();
        let faults = self.fault_config(seed);
        let osd = self.osd_mut(id)?;
        let Some(run) = osd.running.take() else {
            bail!("osd.{id} is not running");
        };
        if how == Stop::Crash {
            // Nothing more reaches the disk or the network from this life.
            osd.dev.crash_now();
            net.kill_host(ip);
        }
        let _ = run.stop.send(how);
        let res = tokio::time::timeout(OSD_STOP_TIMEOUT, run.task)
            .await
            .with_context(|| format!("osd.{id} did not stop"))?;
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) if how == Stop::Crash => {
                tracing::debug!(osd = id, "crashed osd ended with: {e}")
            }
            Ok(Err(e)) => bail!("osd.{id} failed as it stopped: {e}"),
            Err(e) => bail!("osd.{id}'s task: {e}"),
        }
        if how == Stop::Crash {
            // The process is gone, the disk stays as the crash left it:
            // after a power cut, what the media held; else everything the
            // device acknowledged.
            let image = if power_cut {
                osd.kv.crash();
                osd.dev.power_loss_image(seed)
            } else {
                osd.dev.written_image()
            };
            osd.dev = Arc::new(FaultyDevice::from_image(image, faults));
        } else {
            net.kill_host(ip);
        }
        Ok(())
    }

    /// The faults of a device whose choices come from `seed`.
    fn fault_config(&self, seed: u64) -> FaultConfig {
        FaultConfig {
            completion_delay_polls: self.cfg.device_delay_polls,
            ..FaultConfig::new(seed)
        }
    }

    fn osd_mut(&mut self, id: u32) -> anyhow::Result<&mut SimOsd> {
        self.osds
            .iter_mut()
            .find(|o| o.id == id)
            .with_context(|| format!("no osd.{id}"))
    }

    /// OSD ids that run now.
    pub fn running_osds(&self) -> Vec<u32> {
        self.osds
            .iter()
            .filter(|o| o.running.is_some())
            .map(|o| o.id)
            .collect()
    }

    /// Every OSD id.
    pub fn osd_ids(&self) -> Vec<u32> {
        self.osds.iter().map(|o| o.id).collect()
    }

    /// Runs a mon command (JSON out) from the admin host.
    pub async fn mon_command(&self, mut cmd: Value) -> anyhow::Result<Value> {
        if let Value::Object(m) = &mut cmd {
            m.entry("format").or_insert(json!("json"));
        }
        let mon = self.admin_monc().await?;
        let r = mon.command(&cmd, MON_COMMAND_TIMEOUT).await;
        mon.close().await;
        let r = r?;
        if r.retval != 0 {
            bail!("mon command {cmd}: {} (errno {})", r.outs, r.retval);
        }
        if r.outbuf.0.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&r.outbuf.0)?)
    }

    /// A client on host `client_ip(n)`.
    pub async fn client(&self, n: u32) -> anyhow::Result<Rados> {
        let mut cfg = ClientConfig::new(MON_ADDR);
        cfg.msgr = msgr_on(&self.net, client_ip(n));
        cfg.op_timeout = Duration::from_secs(120);
        Ok(Rados::connect(cfg).await?)
    }

    /// Waits (bounded, simulated time) until `n` OSDs are up in the map.
    pub async fn wait_osds_up(&self, n: u32, limit: Duration) -> anyhow::Result<()> {
        self.wait_for(&format!("{n} OSDs up"), limit, || async {
            let st = self.mon_command(json!({"prefix": "osd stat"})).await.ok()?;
            (st["num_up_osds"].as_u64()? >= u64::from(n)).then_some(())
        })
        .await
    }

    /// Waits (bounded) until every PG is active+clean.
    pub async fn wait_clean(&self, limit: Duration) -> anyhow::Result<()> {
        self.wait_for("every PG active+clean", limit, || async {
            let d = self
                .mon_command(json!({"prefix": "pg dump", "dumpcontents": ["pgs"]}))
                .await
                .ok()?;
            let pgs = d["pg_map"]["pg_stats"]
                .as_array()
                .or_else(|| d["pg_stats"].as_array())?
                .clone();
            let clean = |p: &Value| {
                let st = p["state"].as_str().unwrap_or("");
                st.split('+').any(|s| s == "active") && st.split('+').any(|s| s == "clean")
            };
            (!pgs.is_empty() && pgs.iter().all(clean)).then_some(())
        })
        .await
    }

    async fn wait_for<T, F, Fut>(&self, what: &str, limit: Duration, mut f: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(v) = f().await {
                return Ok(v);
            }
            // An OSD that stopped by itself (a fatal error) will not come
            // back: say so instead of waiting out the limit.
            if let Some(o) = self
                .osds
                .iter()
                .find(|o| o.running.as_ref().is_some_and(|r| r.task.is_finished()))
            {
                bail!(
                    "osd.{} stopped by itself while waiting for {what} (its log says why)",
                    o.id
                );
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("timed out after {limit:?} (simulated) waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops every running OSD cleanly.
    pub async fn stop_all(&mut self) -> anyhow::Result<()> {
        for id in self.running_osds() {
            self.stop_osd(id, Stop::Clean, false).await?;
        }
        Ok(())
    }

    /// Every client object on every OSD's disk, read through the store
    /// (checksummed): `(osd, pool, object name, data)`. The OSDs must be
    /// stopped.
    pub fn stored_objects(&self) -> anyhow::Result<Vec<StoredObject>> {
        if !self.running_osds().is_empty() {
            bail!("the OSDs must be stopped to read their disks");
        }
        let mut out = Vec::new();
        for osd in &self.osds {
            osd.kv.attach(osd.dev.clone());
            let store = ObjectStore::mount_device(
                osd.dev.clone(),
                &self.dir.path().join(format!("osd{}", osd.id)),
                &MountOptions {
                    settings: StoreSettings {
                        drive: Drive::Inline,
                        ..store_settings()
                    },
                    kv: Some(KvHandle(osd.kv.clone())),
                    expected_fsid: Some(self.fsid),
                    ..MountOptions::default()
                },
            )
            .with_context(|| format!("mounting osd.{}'s store", osd.id))?;
            for c in store.list_collections()? {
                // PG collections are `POOL.SEED_head`.
                let Some(pool) = c
                    .as_str()
                    .strip_suffix("_head")
                    .and_then(|n| n.split_once('.'))
                    .and_then(|(p, _)| p.parse::<u64>().ok())
                else {
                    continue;
                };
                let mut start = None;
                loop {
                    let (objs, next) = store.collection_list(&c, start.as_ref(), 256)?;
                    for o in objs {
                        if o.as_bytes().first() == Some(&0) {
                            continue;
                        }
                        let data = store.read(&c, &o, 0, u64::MAX >> 1)?;
                        out.push(StoredObject {
                            osd: osd.id,
                            pool,
                            name: String::from_utf8_lossy(o.as_bytes()).into_owned(),
                            data,
                        });
                    }
                    match next {
                        Some(n) => start = Some(n),
                        None => break,
                    }
                }
            }
            store.umount()?;
        }
        Ok(out)
    }
}

/// A client object as one OSD's store holds it.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub osd: u32,
    pub pool: u64,
    pub name: String,
    pub data: bytes::Bytes,
}

async fn start_mon(
    net: &Arc<SimNet>,
    data: &std::path::Path,
) -> anyhow::Result<kalmar_mon::RunningMon> {
    use kalmar_mon::monmap::{MonIdentity, MonNode};
    use kalmar_mon::persist;
    // Authentication is off in the simulator (keys add nothing to what
    // it checks, and their randomness would not come from the seed).
    let opts = kalmar_mon::MonOptions {
        auth_cluster_required: kalmar_auth::AuthMode::None,
        auth_service_required: kalmar_auth::AuthMode::None,
        auth_client_required: kalmar_auth::AuthMode::None,
        ..kalmar_mon::MonOptions::default()
    };
    let me = MonIdentity {
        id: 0,
        name: "a".into(),
    };
    let members = std::collections::BTreeMap::from([(
        0,
        MonNode {
            name: "a".into(),
            addr: MON_ADDR.to_string(),
        },
    )]);
    let auth = persist::initial_auth(None, 0, opts.auth_service_ticket_ttl_secs)
        .map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(data)?;
    persist::mkfs(data, None, &opts, &me, &members, &auth)?;
    let cfg = kalmar_mon::MonConfig {
        name: "a".into(),
        data_dir: data.to_path_buf(),
        bind: Some(MON_ADDR),
        admin_socket: data.join("admin.sock"),
        opts,
        msgr: msgr_on(net, MON_ADDR.ip()),
    };
    Ok(kalmar_mon::start(cfg).await?)
}

fn osd_options(cfg: &ClusterConfig) -> OsdOptions {
    let mut opts = OsdOptions::default();
    if let Some(n) = cfg.pg_log_entries {
        opts.osd_max_pg_log_entries = n;
    }
    opts
}

fn osd_config(
    net: &Arc<SimNet>,
    dir: &std::path::Path,
    osd: &SimOsd,
    opts: OsdOptions,
) -> RunConfig {
    let id = osd.id;
    let device = PathBuf::from(format!("sim-osd{id}"));
    RunConfig {
        id: id as i32,
        device: device.clone(),
        block_device: Some(DeviceHandle(osd.dev.clone())),
        transport: net.host(osd_ip(id)).transport(),
        mon: MON_ADDR,
        other_mons: Vec::new(),
        admin_socket: dir.join(format!("osd{id}.{}.asok", osd.lives)),
        bind_ip: osd_ip(id),
        opts,
        mount: MountOptions {
            settings: store_settings(),
            kv: Some(KvHandle(osd.kv.clone())),
            ..MountOptions::default()
        },
        identity: serde_json::Map::new(),
        device_class: None,
        crush_location: None,
        auth: kalmar_msgr::auth::MsgrAuth::default(),
        auth_refresh: Duration::from_secs(3600),
    }
}
