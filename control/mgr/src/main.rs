//! `kalmar-mgr run --name NAME --mon ADDR`: a mgr daemon (standby until
//! the MgrMap makes it active).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use kalmar_common::config::Conf;
use kalmar_mgr::{MgrConfig, MgrOptions};
use kalmar_msgr::MsgrConfig;

#[derive(Parser)]
#[command(
    name = "kalmar-mgr",
    version,
    about = "Kalmar manager daemon: daemon reports, PG statistics, Python plugins",
    long_about = "Kalmar manager daemon: collects the daemons' counters and PG \
statistics (what `df` and `osd status` show), answers its own and its \
plugins' commands, and hosts Python plugins with Ceph's MgrModule API (prometheus, status, \
crash, ...). Several mgrs may run: the mon makes one active, the others \
wait as standbys.

Plugins are found in --modules-dir, the conf's mgr_module_path, \
KALMAR_MGR_MODULE_PATH, then PREFIX/share/kalmar/mgr-modules beside the \
binary. The systemd unit kalmar-mgr@NAME runs `kalmar-mgr run --name NAME \
--conf /etc/kalmar/kalmar.conf`; its key is kalmar.mgr.NAME.keyring next to \
the conf.",
    after_help = "Examples:
  kalmar auth get-or-create mgr.node1 mon 'allow profile mgr' osd 'allow *' mgr 'allow *' \\
    -o /etc/kalmar/kalmar.mgr.node1.keyring
  systemctl enable --now kalmar-mgr@node1
  kalmar-mgr run --name node1 --conf /etc/kalmar/kalmar.conf --bind 192.0.2.11:0
  kalmar mgr module enable prometheus

See also:
kalmar(8), kalmar-mon(8), kalmar-osd(8); deploy.md in PREFIX/share/doc/kalmar."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a mgr (standby until the mon makes it active).
    Run {
        /// The mgr's id (the `x` of `mgr.x`).
        #[arg(long)]
        name: String,
        /// The mons' addresses IP:PORT[,IP:PORT...] (default: the conf's
        /// mon_host).
        #[arg(long)]
        mon: Option<String>,
        /// Extra plugin folders (repeatable), searched first.
        #[arg(long = "modules-dir")]
        modules_dir: Vec<PathBuf>,
        /// Conf file (TOML with [global], [mgr], [mgr.NAME]); flags override it.
        #[arg(long)]
        conf: Option<PathBuf>,
        /// Address daemons and the CLI reach this mgr at (default 127.0.0.1, any port).
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
        /// Admin socket path (default: the conf's admin_socket, else
        /// kalmar-mgr.NAME.asok in the temporary folder).
        #[arg(long)]
        admin_socket: Option<PathBuf>,
        /// Where module options and stores are kept (default: the conf's
        /// mgr_data, else a `mgr.NAME` folder beside the admin socket).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Log level: error, warn, info, debug, trace.
        #[arg(long)]
        log_level: Option<String>,
        /// Log file (default: stderr).
        #[arg(long)]
        log_file: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    kalmar_common::manpage::print_if_asked(Cli::command);
    let Cmd::Run {
        name,
        mon,
        modules_dir,
        conf,
        bind,
        admin_socket,
        data,
        log_level,
        log_file,
    } = Cli::parse().cmd;
    let conf = match &conf {
        Some(p) => Conf::load(p).with_context(|| format!("loading conf {}", p.display()))?,
        None => Conf::empty(),
    };
    let entity = format!("mgr.{name}");
    let level = match log_level {
        Some(l) => l,
        None => conf.get_or(&entity, "log_level", "info".to_string())?,
    };
    let log_file = match log_file {
        Some(f) => Some(f),
        None => conf.get::<String>(&entity, "log_file")?.map(PathBuf::from),
    };
    kalmar_common::logging::init(&level, log_file.as_deref()).context("opening the log file")?;
    let mons = match mon {
        Some(m) => kalmar_common::config::parse_mon_list(&m).map_err(anyhow::Error::msg)?,
        None => kalmar_common::config::mon_hosts(&conf, &entity)?,
    };
    let Some((&mon, other_mons)) = mons.split_first() else {
        anyhow::bail!(
            "no mon address: pass --mon IP:PORT[,IP:PORT...] or set mon_host in the conf"
        );
    };
    let other_mons = other_mons.to_vec();
    let admin_socket = match admin_socket {
        Some(p) => p,
        None => match conf.get::<String>(&entity, "admin_socket")? {
            Some(p) => PathBuf::from(p),
            None => std::env::temp_dir().join(format!("kalmar-{entity}.asok")),
        },
    };
    let data_dir = match data {
        Some(d) => d,
        None => match conf.get::<String>(&entity, "mgr_data")? {
            Some(d) => PathBuf::from(d),
            None => admin_socket
                .parent()
                .map_or_else(|| PathBuf::from("."), PathBuf::from)
                .join(&entity),
        },
    };
    let crash_dir = kalmar_common::crash::init(&conf, &entity, "kalmar-mgr", &admin_socket)?;
    let cfg = MgrConfig {
        crash_dir,
        name,
        mon,
        other_mons,
        bind,
        admin_socket,
        data_dir,
        module_dirs: modules_dir,
        opts: MgrOptions::from_conf(&conf, &entity)?,
        msgr: MsgrConfig {
            // mgr.NAME's key for the mon; its listener checks the tickets
            // of daemons and clients with the secrets the mon grants it.
            auth: kalmar_msgr::auth::MsgrAuth::daemon_from_conf(
                &conf,
                &entity,
                kalmar_auth::Service::Mgr,
            )
            .map_err(anyhow::Error::msg)?,
            ..MsgrConfig::from_conf(&conf, &entity)?
        },
        auth_refresh: kalmar_msgr::auth::refresh_interval(
            conf.get_number(&entity, "auth_service_ticket_ttl")?
                .map(|v| v.max(1.0) as u64)
                .unwrap_or(kalmar_auth::source::DEFAULT_TICKET_TTL_SECS),
        ),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("mgr")
        .build()?;
    rt.block_on(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let stop = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
                _ = term.recv() => tracing::info!("terminated; stopping"),
            }
        };
        kalmar_mgr::run(cfg, stop)
            .await
            .map_err(anyhow::Error::from)
    })
}
