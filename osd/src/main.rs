//! `kalmar-osd`: format a device for an OSD, or run one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{CommandFactory, Parser, Subcommand};
use kalmar_common::config::Conf;
use kalmar_objectstore::MountOptions;
use kalmar_osd::{MkfsConfig, OsdOptions, RunConfig};
use serde_json::Value;

#[global_allocator]
static ALLOC: kalmar_common::alloc_count::CountingAlloc = kalmar_common::alloc_count::CountingAlloc;

#[derive(Parser)]
#[command(
    name = "kalmar-osd",
    version,
    about = "Kalmar OSD: stores PGs and serves object I/O",
    long_about = "Kalmar OSD: one per disk. It keeps its PGs' objects in a journaled \
object store on the raw device (metadata in RocksDB), serves clients' \
reads and writes, replicates to its peers, and peers, recovers and \
backfills its PGs as the OSDMap changes.

`list-devices` and `create` are the way to make a disk an OSD on an \
installed host; `mkfs` and `run` are the steps underneath (and what \
`kalmar vstart` uses). The systemd unit kalmar-osd@N runs `kalmar-osd run \
--id N --device /var/lib/kalmar/osd/kalmar-N/block --conf \
/etc/kalmar/kalmar.conf`.",
    after_help = "Examples:
  kalmar-osd list-devices
  kalmar-osd create --device /dev/sdb
  kalmar-osd create --device /dev/sdc --id 3        # a replaced disk takes osd.3's id
  kalmar-osd run --id 0 --device /var/lib/kalmar/osd/kalmar-0/block --conf /etc/kalmar/kalmar.conf

See also:
kalmar(8), kalmar-mon(8), kalmar-objectstore-tool(8); deploy.md in PREFIX/share/doc/kalmar."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct Common {
    /// The OSD id (the N of osd.N).
    #[arg(long)]
    id: i32,
    /// The block device or file holding the OSD's store.
    #[arg(long)]
    device: PathBuf,
    /// The mons' addresses, IP:PORT[,IP:PORT...] (default: the conf's
    /// mon_host).
    #[arg(long)]
    mon: Option<String>,
    /// Conf file (TOML with [global], [osd] and ["osd.N"]); flags override it.
    #[arg(long)]
    conf: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long)]
    log_level: Option<String>,
    /// Log file (default: stderr).
    #[arg(long)]
    log_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Register the OSD with the mon and format its device.
    Mkfs {
        #[command(flatten)]
        common: Common,
        /// Format a device that already holds a store.
        #[arg(long)]
        force: bool,
        /// Journal size in bytes (default: 1/16 of the device, 1 MiB..1 GiB).
        #[arg(long)]
        journal_bytes: Option<u64>,
        /// Bound on waiting for the mon, in seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// List this host's block devices as OSD candidates: size, device
    /// class, rotational, model, and why a device may not be used (in use,
    /// mounted, a filesystem, a partition table or a Kalmar store on it).
    ListDevices {
        /// plain (a table) or json.
        #[arg(long, short = 'f', default_value = "plain")]
        format: String,
    },
    /// Make a whole device an OSD in one step: check that it is free,
    /// register and format it, link it as /var/lib/kalmar/osd/kalmar-N/block
    /// and enable and start its systemd unit (kalmar-osd@N).
    Create {
        /// The block device (or a file, for tests).
        #[arg(long)]
        device: PathBuf,
        /// Reuse this OSD id (a replaced disk); default: the lowest free id.
        #[arg(long)]
        id: Option<i32>,
        /// The mon's address (default: the conf's mon_host).
        #[arg(long)]
        mon: Option<SocketAddr>,
        /// Conf file.
        #[arg(long, default_value = "/etc/kalmar/kalmar.conf")]
        conf: PathBuf,
        /// Use the device although it is in use, holds a filesystem, a
        /// partition table or a Kalmar store: ERASES IT.
        #[arg(long)]
        force: bool,
        /// Where the OSDs' folders are (kalmar-N/block links).
        #[arg(long, default_value = "/var/lib/kalmar/osd")]
        data_root: PathBuf,
        /// Do not enable and start kalmar-osd@N.
        #[arg(long)]
        no_start: bool,
        /// Journal size in bytes (default: 1/16 of the device, 1 MiB..1 GiB).
        #[arg(long)]
        journal_bytes: Option<u64>,
        /// Bound on waiting for the mon, in seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Device class CRUSH records (default: the conf's osd_class, else
        /// nvme/ssd/hdd from the disk; a regular file has none).
        #[arg(long)]
        device_class: Option<String>,
    },
    /// Run the OSD.
    Run {
        #[command(flatten)]
        common: Common,
        /// Admin socket path (default: osd.N.asok next to the device).
        #[arg(long)]
        admin_socket: Option<PathBuf>,
        /// Address the client, cluster and heartbeat ports bind to
        /// (default: the conf's osd_bind_ip, else the mon's address).
        #[arg(long)]
        bind_ip: Option<IpAddr>,
    },
}

struct Setup {
    conf: Conf,
    entity: String,
    mon: SocketAddr,
    /// The other mons of the list, to hunt among.
    other_mons: Vec<SocketAddr>,
}

fn setup(c: &Common) -> anyhow::Result<Setup> {
    let conf = match &c.conf {
        Some(p) => Conf::load(p)?,
        None => Conf::empty(),
    };
    let entity = format!("osd.{}", c.id);
    let level = match &c.log_level {
        Some(l) => l.clone(),
        None => conf.get_or(&entity, "log_level", "info".to_string())?,
    };
    let file = match &c.log_file {
        Some(f) => Some(f.clone()),
        None => conf.get::<String>(&entity, "log_file")?.map(PathBuf::from),
    };
    kalmar_common::logging::init(&level, file.as_deref()).context("opening the log file")?;
    let mons = match &c.mon {
        Some(m) => kalmar_common::config::parse_mon_list(m).map_err(anyhow::Error::msg)?,
        None => kalmar_common::config::mon_hosts(&conf, &entity)?,
    };
    let Some((&mon, others)) = mons.split_first() else {
        bail!("no mon address: pass --mon IP:PORT[,IP:PORT...] or set mon_host in the conf");
    };
    let other_mons = others.to_vec();
    if c.id < 0 {
        bail!("--id must be 0 or more, got {}", c.id);
    }
    Ok(Setup {
        conf,
        entity,
        mon,
        other_mons,
    })
}

fn default_admin_socket(device: &Path, entity: &str) -> PathBuf {
    device
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(format!("{entity}.asok"))
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .thread_name("osd")
        .build()?)
}

fn main() -> anyhow::Result<()> {
    kalmar_common::manpage::print_if_asked(Cli::command);
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Mkfs {
            common,
            force,
            journal_bytes,
            timeout,
        } => {
            let s = setup(&common)?;
            let cfg = MkfsConfig {
                id: common.id,
                device: common.device.clone(),
                mon: s.mon,
                other_mons: s.other_mons.clone(),
                force,
                journal_bytes,
                hostname: kalmar_osd::devices::crush_host(&s.conf, &s.entity)?,
                crush_initial_weight: OsdOptions::from_conf(&s.conf, &s.entity)?
                    .osd_crush_initial_weight,
                timeout: Duration::from_secs(timeout),
                osd_uuid: None,
                device_class: kalmar_osd::devices::choose_class(
                    &common.device,
                    s.conf.get::<String>(&s.entity, "osd_class")?.as_deref(),
                )
                .unwrap_or_default(),
                auth: kalmar_msgr::auth::MsgrAuth::client_from_conf(&s.conf, &s.entity)
                    .map_err(anyhow::Error::msg)?,
            };
            let fsid = runtime(1)?.block_on(kalmar_osd::mkfs(cfg))?;
            println!(
                "created object store {} for osd.{} in cluster {fsid}",
                common.device.display(),
                common.id
            );
            Ok(())
        }
        Cmd::ListDevices { format } => {
            let devs = kalmar_osd::devices::list();
            match format.as_str() {
                "json" | "json-pretty" => println!("{}", serde_json::to_string_pretty(&devs)?),
                "plain" => println!("{}", kalmar_osd::devices::render_table(&devs)),
                f => bail!("unknown format '{f}': plain or json"),
            }
            Ok(())
        }
        Cmd::Create {
            device,
            id,
            mon,
            conf,
            force,
            data_root,
            no_start,
            journal_bytes,
            timeout,
            device_class,
        } => kalmar_osd::create::run(kalmar_osd::create::CreateArgs {
            device,
            id,
            mon,
            conf,
            force,
            data_root,
            no_start,
            journal_bytes,
            timeout: Duration::from_secs(timeout),
            device_class,
        }),
        Cmd::Run {
            common,
            admin_socket,
            bind_ip,
        } => {
            let s = setup(&common)?;
            let opts = OsdOptions::from_conf(&s.conf, &s.entity)?;
            let admin_socket = match admin_socket {
                Some(p) => p,
                None => match s.conf.get::<String>(&s.entity, "admin_socket")? {
                    Some(p) => PathBuf::from(p),
                    None => default_admin_socket(&common.device, &s.entity),
                },
            };
            kalmar_common::crash::init(&s.conf, &s.entity, "kalmar-osd", &admin_socket)?;
            let bind_ip = match bind_ip {
                Some(ip) => ip,
                None => match s.conf.get::<String>(&s.entity, "osd_bind_ip")? {
                    Some(ip) => ip
                        .parse()
                        .with_context(|| format!("osd_bind_ip '{ip}' is not an IP address"))?,
                    None if s.mon.ip().is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    None => s.mon.ip(),
                },
            };
            if s.conf
                .get::<String>(&s.entity, "osd_worker_threads")?
                .is_some()
            {
                tracing::warn!("osd_worker_threads is no longer used: the OSD runs osd_op_num_shards shard threads");
            }
            let shards = opts.osd_op_num_shards;
            let mut identity = serde_json::Map::new();
            identity.insert("name".into(), Value::String(s.entity.clone()));
            identity.insert(
                "osd_data".into(),
                Value::String(common.device.display().to_string()),
            );
            identity.insert(
                "admin_socket".into(),
                Value::String(admin_socket.display().to_string()),
            );
            identity.insert("mon_host".into(), Value::String(s.mon.to_string()));
            if let Some(f) = &common.log_file {
                identity.insert("log_file".into(), Value::String(f.display().to_string()));
            }
            // Ceph's osd_class_update_on_start: the class the OSD gives
            // CRUSH at boot if it has none (osd_class, else the disk's).
            let update_class = s
                .conf
                .get::<bool>(&s.entity, "osd_class_update_on_start")?
                .unwrap_or(true);
            // The class also picks the store's HDD or SSD defaults.
            let class = kalmar_osd::devices::choose_class(
                &common.device,
                s.conf.get::<String>(&s.entity, "osd_class")?.as_deref(),
            );
            let media = kalmar_osd::devices::media_of_class(class.as_deref());
            tracing::info!(class = ?class, ?media, "store defaults for the device");
            let device_class = if update_class { class } else { None };
            // Ceph's osd_crush_update_on_start: the OSD places itself at
            // its crush_location (with host= and root=default filled in)
            // before it boots.
            let crush_location = if s
                .conf
                .get::<bool>(&s.entity, "osd_crush_update_on_start")?
                .unwrap_or(true)
            {
                let (loc, hook_failed) = kalmar_osd::devices::boot_crush_location_with_hook(
                    &s.conf,
                    &s.entity,
                    common.id,
                    kalmar_osd::devices::CRUSH_LOCATION_HOOK_TIMEOUT,
                )?;
                if let Some(why) = hook_failed {
                    tracing::warn!("{why}");
                }
                tracing::info!(location = %loc.args().join(" "), "crush location");
                Some(loc.args())
            } else {
                None
            };
            let cfg = RunConfig {
                device_class,
                crush_location,
                id: common.id,
                device: common.device.clone(),
                block_device: None,
                transport: kalmar_msgr::Transport::Tcp,
                mon: s.mon,
                other_mons: s.other_mons.clone(),
                admin_socket,
                bind_ip,
                opts,
                mount: MountOptions {
                    settings: kalmar_objectstore::StoreSettings::for_media(media),
                    ..MountOptions::default()
                },
                identity,
                auth: kalmar_msgr::auth::MsgrAuth::daemon_from_conf(
                    &s.conf,
                    &s.entity,
                    kalmar_auth::Service::Osd,
                )
                .map_err(anyhow::Error::msg)?,
                auth_refresh: kalmar_msgr::auth::refresh_interval(
                    s.conf
                        .get_number(&s.entity, "auth_service_ticket_ttl")?
                        .map(|v| v.max(1.0) as u64)
                        .unwrap_or(kalmar_auth::source::DEFAULT_TICKET_TTL_SECS),
                ),
            };
            // Shard 0 is this thread: it runs the daemon and its PGs; the
            // other shards get threads of their own.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let threads = kalmar_osd::shard::ShardThreads::start(shards, rt.handle().clone())?;
            let handles = threads.handles.clone();
            let res = rt.block_on(async move {
                let shutdown = async {
                    let term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
                    match term {
                        Ok(mut t) => {
                            tokio::select! {
                                _ = t.recv() => tracing::info!("terminated"),
                                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
                            }
                        }
                        Err(_) => {
                            let _ = tokio::signal::ctrl_c().await;
                        }
                    }
                    kalmar_osd::Stop::Clean
                };
                kalmar_osd::run(cfg, shutdown, handles).await
            });
            threads.stop();
            res?;
            Ok(())
        }
    }
}
