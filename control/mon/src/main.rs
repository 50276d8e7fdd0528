//! `kalmar-mon`: create a mon store, or run the mon.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use kalmar_common::config::Conf;
use kalmar_mon::{persist, MonConfig, MonOptions};
use kalmar_msgr::MsgrConfig;

#[derive(Parser)]
#[command(
    name = "kalmar-mon",
    version,
    about = "Kalmar monitor: owns the cluster maps"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct Common {
    /// The mon's store directory.
    #[arg(long)]
    data: PathBuf,
    /// Conf file (TOML with [global] and [mon]); flags override it.
    #[arg(long)]
    conf: Option<PathBuf>,
    /// The mon's id (the `a` of `mon.a`).
    #[arg(long, default_value = "a")]
    name: String,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long)]
    log_level: Option<String>,
    /// Log file (default: stderr).
    #[arg(long)]
    log_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a new mon store (a new cluster).
    Mkfs {
        #[command(flatten)]
        common: Common,
        /// Cluster fsid (default: a new random one).
        #[arg(long)]
        fsid: Option<uuid::Uuid>,
    },
    /// Run the mon.
    Run {
        #[command(flatten)]
        common: Common,
        /// Address to listen on (default: the conf's mon_host).
        #[arg(long)]
        bind: Option<SocketAddr>,
        /// Admin socket path (default: DATA/mon.NAME.asok).
        #[arg(long)]
        admin_socket: Option<PathBuf>,
    },
}

fn load_conf(c: &Common) -> anyhow::Result<(Conf, String)> {
    let conf = match &c.conf {
        Some(p) => Conf::load(p)?,
        None => Conf::empty(),
    };
    Ok((conf, format!("mon.{}", c.name)))
}

fn init_logging(c: &Common, conf: &Conf, entity: &str) -> anyhow::Result<()> {
    let level = match &c.log_level {
        Some(l) => l.clone(),
        None => conf.get_or(entity, "log_level", "info".to_string())?,
    };
    let file = match &c.log_file {
        Some(f) => Some(f.clone()),
        None => conf.get::<String>(entity, "log_file")?.map(PathBuf::from),
    };
    kalmar_common::logging::init(&level, file.as_deref()).context("opening the log file")?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Mkfs { common, fsid } => {
            let (conf, entity) = load_conf(&common)?;
            init_logging(&common, &conf, &entity)?;
            let opts = MonOptions::from_conf(&conf, &entity)?;
            let fsid = persist::mkfs(&common.data, fsid, &opts)?;
            println!(
                "created mon store at {} for cluster {fsid}",
                common.data.display()
            );
            Ok(())
        }
        Cmd::Run {
            common,
            bind,
            admin_socket,
        } => {
            let (conf, entity) = load_conf(&common)?;
            init_logging(&common, &conf, &entity)?;
            let opts = MonOptions::from_conf(&conf, &entity)?;
            let bind = match bind {
                Some(b) => b,
                None => match conf.get::<String>(&entity, "mon_host")? {
                    Some(h) => h.parse().with_context(|| format!("mon_host '{h}' is not IP:PORT"))?,
                    None => bail!("no address to listen on: pass --bind 127.0.0.1:PORT or set mon_host in the conf"),
                },
            };
            let admin_socket = match admin_socket {
                Some(p) => p,
                None => match conf.get::<String>(&entity, "admin_socket")? {
                    Some(p) => PathBuf::from(p),
                    None => common.data.join(format!("{entity}.asok")),
                },
            };
            kalmar_common::crash::init(&conf, &entity, "kalmar-mon", &admin_socket)?;
            let cfg = MonConfig {
                name: common.name.clone(),
                data_dir: common.data.clone(),
                bind,
                admin_socket,
                opts,
                msgr: MsgrConfig::from_conf(&conf, &entity)?,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .thread_name("mon")
                .build()?;
            rt.block_on(async move {
                let mon = kalmar_mon::start(cfg).await?;
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                tokio::select! {
                    r = mon.wait() => r.map_err(anyhow::Error::from),
                    _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted; stopping"); Ok(()) }
                    _ = term.recv() => { tracing::info!("terminated; stopping"); Ok(()) }
                }
            })
        }
    }
}
