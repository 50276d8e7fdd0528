//! `kalmar-nbd`: serves a Kalmar block device over NBD.
//!
//! `kalmar-nbd --store PATH --size SIZE [--mkfs] (--socket PATH | --bind 127.0.0.1:PORT)`
//! exports a local ObjectStore; `--image POOL/NAME` exports a cluster image.
//! When it listens it prints one JSON line on stdout (`uri`, `size_bytes`,
//! `export`) for scripts; logs go to stderr or `--log-file`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser};
use kalmar_client::{ClientConfig, Rados};
use kalmar_common::admin_socket::{AdminCommands, AdminSocket};
use kalmar_common::perf::{PerfCollection, PerfCounters};
use kalmar_image::{Image, ImageSpec};
use kalmar_nbd::size::parse_size;
use kalmar_nbd::{
    BlockBackend, ImageBackend, Listener, Server, ServerSettings, StoreBackend, StoreExportOptions,
};
use kalmar_objectstore::{
    CommitDriver, CommitEngine, Drive, MkfsOptions, MountOptions, ObjectStore,
};

#[global_allocator]
static ALLOC: kalmar_common::alloc_count::CountingAlloc = kalmar_common::alloc_count::CountingAlloc;

#[derive(Parser, Debug)]
#[command(
    name = "kalmar-nbd",
    version,
    about = "NBD server for Kalmar block devices (fixed newstyle; fio, qemu and libnbd clients)",
    long_about = "NBD server for Kalmar block devices (fixed newstyle), for fio, qemu, \
libnbd and the kernel's nbd-client.

With --image POOL/NAME it exports a cluster image (striped over the \
pool's objects); with --store PATH it exports a local object store on a \
device or file with no cluster (the store-level benchmark target). The \
systemd unit kalmar-nbd@POOL-IMAGE exports an image on \
/run/kalmar/nbd/POOL-IMAGE.sock.",
    after_help = "Examples:
  kalmar image create rbd/vol1 --size 100G
  kalmar-nbd --image rbd/vol1 --conf /etc/kalmar/kalmar.conf --socket /run/kalmar/nbd/rbd-vol1.sock
  nbd-client -unix /run/kalmar/nbd/rbd-vol1.sock /dev/nbd0
  kalmar-nbd --store /dev/loop0 --size 10G --mkfs --socket /tmp/k.sock
  fio --ioengine=nbd --uri='nbd+unix:///?socket=/tmp/k.sock' --name=t --rw=randwrite --bs=4k --size=10G

See also:
kalmar(8), kalmar-objectstore-tool(8)."
)]
struct Cli {
    /// Export a local ObjectStore on this device or file (no cluster).
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "image",
        required_unless_present = "image"
    )]
    store: Option<PathBuf>,
    /// Export size, e.g. 10G (with --store).
    #[arg(long, value_parser = parse_size, required_unless_present = "image")]
    size: Option<u64>,
    /// Format --store PATH first (erases it). A missing regular file is
    /// created with --device-size.
    #[arg(long, requires = "store")]
    mkfs: bool,
    /// Size of a regular file --mkfs creates (default: export size plus an
    /// eighth plus 64 MiB for the journal).
    #[arg(long, value_parser = parse_size, requires = "mkfs")]
    device_size: Option<u64>,
    /// Metadata directory of the store (default: PATH.db, or what mkfs recorded).
    #[arg(long, value_name = "DIR", requires = "store")]
    db: Option<PathBuf>,
    /// Collection that holds the export inside the store.
    #[arg(long, default_value = "nbd", requires = "store")]
    collection: String,
    /// Bytes per data object (power of two).
    #[arg(long, value_parser = parse_size, default_value = "4M")]
    object_size: u64,

    /// Export a cluster image POOL/NAME.
    #[arg(long, value_name = "POOL/NAME")]
    image: Option<String>,
    /// Mon address (with --image).
    #[arg(long, value_name = "ADDR", requires = "image")]
    mon: Option<String>,
    /// Cluster conf file (with --image).
    #[arg(long, value_name = "FILE", requires = "image")]
    conf: Option<PathBuf>,
    /// Who to authenticate as (with --image; the key is looked up on the
    /// conf's keyring search path).
    #[arg(
        long = "name",
        short = 'n',
        default_value = "client.admin",
        requires = "image"
    )]
    entity: String,

    /// Listen on this unix socket.
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "bind",
        required_unless_present = "bind"
    )]
    socket: Option<PathBuf>,
    /// Listen on this loopback TCP address (port 0 picks a free port).
    #[arg(long, value_name = "127.0.0.1:PORT")]
    bind: Option<String>,

    /// Export name clients may ask for (the empty name works too).
    #[arg(long)]
    export_name: Option<String>,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = ServerSettings::default().max_inflight_requests)]
    max_inflight: usize,
    /// Connections served at once.
    #[arg(long, default_value_t = ServerSettings::default().max_connections)]
    max_connections: usize,
    /// Minimum block size clients must align to once they agree to it.
    #[arg(long, default_value_t = ServerSettings::default().min_block_bytes)]
    min_block_size: u32,
    /// Largest read or write payload.
    #[arg(long, value_parser = parse_size, default_value = "32M")]
    max_payload: u64,
    /// Threads of the network runtime (1: a single-threaded event loop).
    #[arg(long, default_value_t = 1)]
    io_threads: usize,
    /// Seconds to let requests in flight finish at shutdown.
    #[arg(long, default_value_t = 30)]
    shutdown_grace_secs: u64,
    /// Admin socket (Ceph's protocol: `perf dump` with the `nbd` and
    /// `objectstore` counters); none when not given.
    #[arg(long, value_name = "PATH")]
    admin_socket: Option<PathBuf>,
    /// error, warn, info, debug or trace (KALMAR_LOG refines it).
    #[arg(long, default_value = "info")]
    log_level: String,
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
}

fn main() {
    kalmar_common::manpage::print_if_asked(Cli::command);
    let cli = Cli::parse();
    if let Err(e) = kalmar_common::logging::init(&cli.log_level, cli.log_file.as_deref()) {
        eprintln!("kalmar-nbd: cannot open the log: {e}");
        std::process::exit(1);
    }
    if let Err(e) = run(cli) {
        eprintln!("kalmar-nbd: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut settings = ServerSettings {
        max_inflight_requests: cli.max_inflight,
        max_connections: cli.max_connections,
        min_block_bytes: cli.min_block_size,
        max_payload_bytes: u32::try_from(cli.max_payload)
            .context("--max-payload must be below 4 GiB")?,
        ..ServerSettings::default()
    };
    let addr = kalmar_nbd::server::listen_addr(cli.socket.as_deref(), cli.bind.as_deref())
        .map_err(anyhow::Error::msg)?;
    let rt = runtime(&cli)?;
    if let Some(image) = cli.image.clone() {
        return rt.block_on(run_image(&cli, &image, settings, addr));
    }
    let (Some(path), Some(size)) = (cli.store.clone(), cli.size) else {
        bail!("give --store PATH --size SIZE, or --image POOL/NAME");
    };
    settings.export_name = cli
        .export_name
        .clone()
        .unwrap_or_else(|| "kalmar-store".into());
    settings.export_description = format!("Kalmar ObjectStore export on {}", path.display());
    if cli.mkfs {
        mkfs(&path, size, cli.device_size, cli.db.clone())?;
    }
    let mut mount_opts = MountOptions {
        db_path: cli.db.clone(),
        ..MountOptions::default()
    };
    // The engines run as tasks on this runtime (see `StoreBackend`).
    mount_opts.settings.drive = Drive::External;
    let store = Arc::new(ObjectStore::mount(&path, &mount_opts).with_context(|| {
        format!(
            "cannot mount the store on {} (format it with --mkfs)",
            path.display()
        )
    })?);
    let opts = StoreExportOptions {
        collection: cli.collection.clone(),
        object_bytes: cli.object_size,
        ..StoreExportOptions::default()
    };
    let engines = store.take_engines()?;
    let (served, engines) = rt.block_on(serve_store(
        &cli, &store, engines, size, &opts, settings, addr,
    ));
    // Checkpoint and mark the store clean whatever happened to the server.
    store.return_engines(engines);
    let unmounted = store.umount().context("unmounting the store failed");
    served?;
    unmounted
}

/// Runs the store's engines on this runtime, serves the export until
/// shutdown (or an engine's driver fails), and gives the engines back.
async fn serve_store(
    cli: &Cli,
    store: &Arc<ObjectStore>,
    engines: Vec<CommitEngine>,
    size: u64,
    opts: &StoreExportOptions,
    settings: ServerSettings,
    addr: kalmar_nbd::ListenAddr,
) -> (Result<()>, Vec<CommitEngine>) {
    let drivers: Vec<Arc<CommitDriver>> = engines
        .into_iter()
        .map(|e| CommitDriver::new(e, None))
        .collect();
    let (failed_tx, mut failed) = tokio::sync::mpsc::unbounded_channel();
    for (i, d) in drivers.iter().enumerate() {
        let d = d.clone();
        let failed_tx = failed_tx.clone();
        tokio::spawn(async move {
            if let Err(e) = d.drive_commits().await {
                let _ = failed_tx.send(format!("store engine {i} cannot be driven: {e}"));
            }
        });
    }
    let served = async {
        let backend = StoreBackend::open(store.clone(), &drivers, size, opts)
            .await
            .context("cannot open the export")?;
        // Why the server stopped, when an engine's driver failed.
        let mut failure = None;
        let stop = async {
            tokio::select! {
                _ = shutdown_signal() => {}
                Some(why) = failed.recv() => failure = Some(why),
            }
        };
        serve(
            cli,
            Arc::new(backend),
            settings,
            addr,
            vec![store.perf_counters()],
            stop,
        )
        .await?;
        match failure {
            Some(why) => bail!(why),
            None => Ok(()),
        }
    }
    .await;
    let mut engines = Vec::new();
    for d in &drivers {
        engines.extend(d.stop().await);
    }
    (served, engines)
}

fn mkfs(path: &Path, size: u64, device_size: Option<u64>, db: Option<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(path);
    let is_file = meta.as_ref().map(|m| m.is_file()).unwrap_or(true);
    if is_file {
        let want = device_size.unwrap_or(size + size / 8 + (64 << 20));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        if f.metadata()?.len() < want {
            f.set_len(want)?;
        }
    } else if device_size.is_some() {
        bail!(
            "--device-size only applies to a regular file; {} is not one",
            path.display()
        );
    }
    let mut opts = MkfsOptions::new(uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    opts.force = true;
    opts.db_path = db;
    ObjectStore::mkfs(path, &opts).with_context(|| format!("mkfs of {} failed", path.display()))?;
    tracing::info!(path = %path.display(), "formatted a new store");
    Ok(())
}

fn runtime(cli: &Cli) -> Result<tokio::runtime::Runtime> {
    let mut rt = if cli.io_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(cli.io_threads);
        b
    };
    rt.enable_all()
        .thread_name("kalmar-nbd")
        .build()
        .context("cannot start the runtime")
}

/// The mons' addresses from --mon, --conf ([global] mon_host, a string or
/// a list) or KALMAR_MON; `IP:PORT[,IP:PORT...]`.
fn mon_addrs(cli: &Cli) -> Result<Vec<SocketAddr>> {
    let text = match (&cli.mon, &cli.conf) {
        (Some(m), _) => m.clone(),
        (None, Some(conf)) => {
            let t: toml::Table = std::fs::read_to_string(conf)
                .with_context(|| format!("cannot read {}", conf.display()))?
                .parse()
                .with_context(|| format!("{} is not valid TOML", conf.display()))?;
            match t.get("global").and_then(|g| g.get("mon_host")) {
                Some(toml::Value::String(s)) => s.clone(),
                Some(toml::Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                _ => anyhow::bail!("{}: no [global] mon_host", conf.display()),
            }
        }
        (None, None) => std::env::var("KALMAR_MON")
            .context("give --mon ADDR or --conf FILE (or set KALMAR_MON)")?,
    };
    kalmar_common::config::parse_mon_list(&text).map_err(anyhow::Error::msg)
}

async fn run_image(
    cli: &Cli,
    image: &str,
    mut settings: ServerSettings,
    addr: kalmar_nbd::ListenAddr,
) -> Result<()> {
    let spec = ImageSpec::parse(image)?;
    let mons = mon_addrs(cli)?;
    let mut cfg = ClientConfig::new(mons[0]);
    cfg.other_mons = mons[1..].to_vec();
    let conf = match &cli.conf {
        Some(p) => kalmar_common::config::Conf::load(p)?,
        None => kalmar_common::config::Conf::empty(),
    };
    cfg.msgr.auth = kalmar_msgr::auth::MsgrAuth::client_from_conf(&conf, &cli.entity)
        .map_err(anyhow::Error::msg)?;
    let rados = Rados::connect(cfg)
        .await
        .context("cannot reach the cluster")?;
    let result = async {
        let io = rados
            .ioctx(&spec.pool)
            .with_context(|| format!("cannot open pool {}", spec.pool))?;
        let img = Image::open(io, &spec.name)
            .await
            .with_context(|| format!("cannot open image {spec}"))?;
        settings.export_name = cli.export_name.clone().unwrap_or_else(|| spec.to_string());
        settings.export_description = format!("Kalmar image {spec}");
        serve(
            cli,
            Arc::new(ImageBackend::new(img)),
            settings,
            addr,
            Vec::new(),
            shutdown_signal(),
        )
        .await
    }
    .await;
    rados.shutdown().await;
    result
}

async fn serve<B: BlockBackend>(
    cli: &Cli,
    backend: Arc<B>,
    settings: ServerSettings,
    addr: kalmar_nbd::ListenAddr,
    extra_perf: Vec<Arc<PerfCounters>>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let export = settings.export_name.clone();
    let server = Server::new(backend.clone(), settings).map_err(anyhow::Error::msg)?;
    let _admin = match &cli.admin_socket {
        Some(path) => {
            let perf = PerfCollection::new();
            perf.add(server.perf_counters());
            perf.add(kalmar_common::alloc_count::perf_counters());
            extra_perf.into_iter().for_each(|p| perf.add(p));
            let cmds = AdminCommands::new();
            cmds.register_perf(perf);
            Some(
                AdminSocket::start(path, cmds)
                    .with_context(|| format!("cannot open the admin socket {}", path.display()))?,
            )
        }
        None => None,
    };
    {
        let listener = Listener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr:?}"))?;
        let ready = serde_json::json!({
            "uri": listener.uri(),
            "size_bytes": backend.size_bytes(),
            "export": export,
        });
        let mut out = std::io::stdout().lock();
        writeln!(out, "{ready}")?;
        out.flush()?;
        drop(out);
        tracing::info!(uri = %listener.uri(), size_bytes = backend.size_bytes(), "serving");
        server
            .run(listener, stop, Duration::from_secs(cli.shutdown_grace_secs))
            .await
            .context("the server failed")?;
        tracing::info!("shutting down");
        Ok(())
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
