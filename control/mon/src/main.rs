//! `kalmar-mon`: create a mon store, or run the mon.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{CommandFactory, Parser, Subcommand};
use kalmar_common::config::Conf;
use std::collections::BTreeMap;

use kalmar_mon::monmap::{self, MonIdentity};
use kalmar_mon::{persist, MonConfig, MonOptions};
use kalmar_msgr::MsgrConfig;

#[derive(Parser)]
#[command(
    name = "kalmar-mon",
    version,
    about = "Kalmar monitor: owns the cluster maps",
    long_about = "Kalmar monitor: keeps the cluster's maps (the monmap, the OSDMap with \
CRUSH, the MgrMap) and its keys, and hands them to daemons and clients. \
Several mons form a quorum: a majority of them commits every change.

`mkfs` creates a mon's store (for the first mon, a new cluster: its fsid, \
the `mon.` key and the admin's keyring); `run` serves it. The systemd unit \
kalmar-mon@NAME runs `kalmar-mon run --name NAME --data \
/var/lib/kalmar/mon/kalmar-NAME --conf /etc/kalmar/kalmar.conf`.",
    after_help = "Examples:
  kalmar-mon mkfs --data /var/lib/kalmar/mon/kalmar-a --conf /etc/kalmar/kalmar.conf
  systemctl enable --now kalmar-mon@a
  kalmar-mon run --name a --data /var/lib/kalmar/mon/kalmar-a --conf /etc/kalmar/kalmar.conf
  # the mons of a three-mon cluster: the same members and fsid at each mkfs
  kalmar-mon mkfs --name b --data /var/lib/kalmar/mon/kalmar-b --fsid UUID \\
    --initial-members a=192.0.2.11:6789,b=192.0.2.12:6789,c=192.0.2.13:6789 \\
    --keyring kalmar.mon.keyring --admin-keyring /etc/kalmar/kalmar.client.admin.keyring

See also:
kalmar(8), kalmar-mgr(8), kalmar-osd(8); deploy.md and mon-quorum.md in PREFIX/share/doc/kalmar."
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
        /// Cluster fsid (default: a new random one). Every mon of a
        /// cluster of several needs the same one.
        #[arg(long)]
        fsid: Option<uuid::Uuid>,
        /// The cluster's first mons, `a=IP:PORT,b=IP:PORT,c=IP:PORT`
        /// (default: the conf's `mon_initial_members` with `mon_host`, else
        /// this mon alone). Run mkfs on each with the same list and fsid.
        #[arg(long)]
        initial_members: Option<String>,
        /// Join a running cluster as the rank `kalmar mon add` gave this
        /// mon (needs the cluster's --fsid; the members come from the
        /// leader).
        #[arg(long, conflicts_with = "initial_members")]
        join: Option<u64>,
        /// A keyring whose keys the new cluster starts with (Ceph's
        /// `--keyring`; give every mon of a cluster of several the same
        /// one). `mon.` and `client.admin` are made when it lacks them.
        #[arg(long)]
        keyring: Option<PathBuf>,
        /// Where to write the admin keyring (default: the conf's
        /// `keyring` for client.admin, else `kalmar.client.admin.keyring`
        /// next to the conf, else in DATA).
        #[arg(long)]
        admin_keyring: Option<PathBuf>,
    },
    /// Run the mon.
    Run {
        #[command(flatten)]
        common: Common,
        /// Address to listen on (default: this mon's address in the
        /// monmap, else the conf's mon_host).
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

/// `mon_initial_members = "a,b,c"` with `mon_host` listing their
/// addresses in the same order (a string `"IP:PORT,..."` or a list).
fn initial_members_from_conf(
    conf: &Conf,
    entity: &str,
) -> anyhow::Result<Option<BTreeMap<u64, monmap::MonNode>>> {
    let Some(names) = conf.get::<String>(entity, "mon_initial_members")? else {
        return Ok(None);
    };
    let hosts = kalmar_common::config::mon_hosts(conf, entity)?;
    let names: Vec<&str> = names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.len() != hosts.len() {
        bail!(
            "mon_initial_members names {} mons but mon_host lists {} addresses",
            names.len(),
            hosts.len()
        );
    }
    let spec: Vec<String> = names
        .iter()
        .zip(&hosts)
        .map(|(n, a)| format!("{n}={a}"))
        .collect();
    Ok(Some(
        monmap::parse_initial_members(&spec.join(",")).map_err(anyhow::Error::msg)?,
    ))
}

/// Writes the mon's own keyring (`mon.`) into its data dir and the admin
/// keyring where clients on this host find it, both mode 0600.
fn write_bootstrap_keyrings(
    c: &Common,
    conf: &Conf,
    auth: &kalmar_auth::AuthDb,
    admin_out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mon_ring = auth.keyring_of("mon.").context("no mon. key")?;
    mon_ring.write_file(&c.data.join("keyring"))?;
    let admin_path = match admin_out {
        Some(p) => p,
        None => {
            let opt = conf.get::<String>("client.admin", "keyring")?;
            let conf_dir = c.conf.as_deref().and_then(|p| p.parent());
            match (opt, conf_dir) {
                (Some(o), _) => kalmar_auth::keyring::search_paths("client.admin", Some(&o), None)
                    .into_iter()
                    .next()
                    .context("empty keyring option")?,
                (None, Some(d)) => d.join("kalmar.client.admin.keyring"),
                (None, None) => c.data.join("kalmar.client.admin.keyring"),
            }
        }
    };
    auth.keyring_of("client.admin")
        .context("no client.admin key")?
        .write_file(&admin_path)?;
    println!("wrote the admin keyring to {}", admin_path.display());
    Ok(())
}

/// The mon's outgoing side (to the other mons and the mgr): `mon.`'s key
/// from DATA/keyring, under this mon's name (every mon shares the key).
/// With auth off (no `auth_*_required = cephx`) it offers none: mons made
/// each with its own mkfs (no shared `--keyring`) hold different `mon.`
/// keys and must still talk to each other.
fn mon_client_auth(
    c: &Common,
    conf: &Conf,
    entity: &str,
) -> anyhow::Result<kalmar_msgr::auth::MsgrAuth> {
    let required =
        kalmar_msgr::auth::AuthRequired::from_conf(conf, entity).map_err(anyhow::Error::msg)?;
    // ms_cluster_mode / ms_service_mode / ms_client_mode: its listener's
    // and its outgoing sessions' connection modes.
    let modes =
        kalmar_msgr::onwire::WireModes::from_conf(conf, entity).map_err(anyhow::Error::msg)?;
    if !required.any_cephx() {
        return Ok(kalmar_msgr::auth::MsgrAuth {
            modes,
            ..Default::default()
        });
    }
    let path = c.data.join("keyring");
    let key = if path.exists() {
        kalmar_auth::Keyring::read_file(&path)?
            .get("mon.")
            .map(|e| e.key.clone())
    } else {
        None
    };
    Ok(kalmar_msgr::auth::MsgrAuth {
        client: key.map(|k| {
            std::sync::Arc::new(kalmar_auth::ClientAuth::new(
                &format!("mon.{}", c.name),
                Some(k),
            ))
        }),
        modes,
        ..Default::default()
    })
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
    kalmar_common::manpage::print_if_asked(Cli::command);
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Mkfs {
            common,
            fsid,
            initial_members,
            join,
            keyring,
            admin_keyring,
        } => {
            let (conf, entity) = load_conf(&common)?;
            init_logging(&common, &conf, &entity)?;
            let opts = MonOptions::from_conf(&conf, &entity)?;
            let members = match initial_members {
                Some(s) => Some(monmap::parse_initial_members(&s).map_err(anyhow::Error::msg)?),
                None => initial_members_from_conf(&conf, &entity)?,
            };
            let (me, members) = match (join, members) {
                (Some(id), _) => {
                    if fsid.is_none() && conf.get::<String>(&entity, "fsid")?.is_none() {
                        bail!("--join needs the cluster's --fsid");
                    }
                    (
                        MonIdentity {
                            id,
                            name: common.name.clone(),
                        },
                        BTreeMap::new(),
                    )
                }
                (None, members) => match members {
                    Some(m) => {
                        let id = m
                            .iter()
                            .find(|(_, n)| n.name == common.name)
                            .map(|(id, _)| *id)
                            .with_context(|| {
                                format!("mon.{} is not one of the initial members", common.name)
                            })?;
                        (
                            MonIdentity {
                                id,
                                name: common.name.clone(),
                            },
                            m,
                        )
                    }
                    None => (
                        MonIdentity {
                            id: 0,
                            name: common.name.clone(),
                        },
                        BTreeMap::from([(
                            0,
                            monmap::MonNode {
                                name: common.name.clone(),
                                addr: String::new(),
                            },
                        )]),
                    ),
                },
            };
            let fsid = match (fsid, conf.get::<String>(&entity, "fsid")?) {
                (Some(f), _) => Some(f),
                (None, Some(s)) => Some(
                    s.parse()
                        .with_context(|| format!("fsid '{s}' in the conf"))?,
                ),
                (None, None) => None,
            };
            if members.len() > 1 && fsid.is_none() {
                bail!("a cluster of several mons needs one fsid: pass the same --fsid UUID to each mon's mkfs");
            }
            let import = match &keyring {
                Some(p) => Some(kalmar_auth::Keyring::read_file(p)?),
                None => None,
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let auth =
                persist::initial_auth(import.as_ref(), now, opts.auth_service_ticket_ttl_secs)
                    .map_err(anyhow::Error::msg)
                    .context("building the initial keys")?;
            let fsid = persist::mkfs(&common.data, fsid, &opts, &me, &members, &auth)?;
            write_bootstrap_keyrings(&common, &conf, &auth, admin_keyring)?;
            let of = if members.is_empty() {
                "joining: the members come from the leader".to_string()
            } else {
                format!("of {}", members.len())
            };
            println!(
                "created mon store at {} for cluster {fsid} (mon.{}, rank {} {of})",
                common.data.display(),
                me.name,
                me.id,
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
            // Else the monmap's address; a single mon's `mon_host` string.
            let bind = match bind {
                Some(b) => Some(b),
                None => match conf.get::<String>(&entity, "mon_host") {
                    Ok(Some(h)) if !h.contains(',') => Some(
                        h.parse()
                            .with_context(|| format!("mon_host '{h}' is not IP:PORT"))?,
                    ),
                    _ => None,
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
                msgr: MsgrConfig {
                    auth: mon_client_auth(&common, &conf, &entity)?,
                    ..MsgrConfig::from_conf(&conf, &entity)?
                },
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
