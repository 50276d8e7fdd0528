//! `kalmar`: the admin CLI, with Ceph's grammar.
//!
//! Global flags come first (`-m ADDR`, `--conf FILE`, `-f FORMAT`); the
//! format may also appear anywhere later. The first words pick the group:
//! offline ones (`osd crush test`, `vstart`, `vstop`, `daemon`), object and
//! image access (`rados`, `image`), PG commands the primary OSD answers
//! (`kalmar_cli::pgcmd`), and everything else is a mon command parsed by
//! `kalmar_cli::grammar`. To add a group: a module in this crate
//! and one arm in `dispatch`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kalmar_cli::args::{take_format, Ctx, Format};
use kalmar_cli::{crush, daemon, exporter, grammar, image, mgrcmd, moncmd, pgcmd, rados, vstart};
use kalmar_common::config::Conf;

/// The conf of an installed host (scripts/install.sh writes it).
const DEFAULT_CONF: &str = "/etc/kalmar/kalmar.conf";

#[derive(Parser)]
#[command(
    name = "kalmar",
    version,
    about = "Kalmar admin CLI (Ceph's command grammar)",
    long_about = "Kalmar admin CLI, with the grammar, replies and JSON shapes of Ceph's \
`ceph` command: cluster status and health, OSDs, pools, CRUSH, PGs, the \
mgr and its modules, keys, maintenance checks; plus objects (`rados`), \
images (`image`), admin sockets (`daemon`), a local test cluster \
(`vstart`, `vstop`) and the host's Prometheus exporter (`exporter`).

Global flags come before the command words. The mon's address comes from \
-m, else KALMAR_MON, else the conf's mon_host; the conf from --conf, else \
KALMAR_CONF, else /etc/kalmar/kalmar.conf when it exists. Commands \
authenticate as client.admin unless -n says otherwise. Errors go to \
stderr with a non-zero exit (Ceph's errno values: EINVAL 22, ENOENT 2, \
EBUSY 16, EACCES 13).",
    after_help = "Command words:
  status | -s, health [detail], df [detail], quorum_status, mon stat|dump|add|rm
  osd tree|dump|stat|ls|df, osd out|in|down ID..., osd set|unset FLAG, osd new
  osd pool create|set|ls|rm|set-quota|get-quota, osd map POOL OBJECT
  osd crush dump|tree|add-bucket|move|rm|reweight|set|add|create-or-move|test
  osd crush set-device-class|rm-device-class|class ls|class ls-osd
  osd crush rule create-replicated|ls|dump|rm
  osd ok-to-stop ID... [--max N], osd safe-to-destroy ID..., osd destroy|purge|rm
  pg map|stat|dump, pg PGID query, pg scrub|deep-scrub|repair PGID
  mgr stat|dump|fail, mgr module ls|enable|disable, tell mgr WORDS..., config dump
  auth get-or-create|get|ls|caps|rm|print-key|add
  daemon NAME COMMAND..., rados -p POOL ..., image ..., vstart ..., vstop ...
  exporter [--addr IP:PORT] [--sock-dir DIR]...
  (a command the mon does not know goes to the active mgr's modules)

Examples:
  kalmar status
  kalmar -f json-pretty osd tree
  kalmar osd pool create rbd 128 --size 3 --min-size 2
  kalmar rados -p rbd put hello /etc/hostname
  kalmar image create rbd/vol1 --size 100G
  until kalmar osd ok-to-stop 3; do sleep 5; done; systemctl restart kalmar-osd@3
  kalmar daemon osd.0 perf dump
  kalmar vstart --osds 3 --dir /tmp/kc && kalmar --conf /tmp/kc/kalmar.conf status

See also:
kalmar-mon(8), kalmar-mgr(8), kalmar-osd(8), kalmar-nbd(8), kalmar-objectstore-tool(8); interfaces.md and deploy.md in PREFIX/share/doc/kalmar."
)]
struct Cli {
    /// Mon address IP:PORT (else KALMAR_MON, else the conf's mon_host).
    #[arg(short = 'm', long = "mon")]
    mon: Option<String>,
    /// Conf file (TOML; [global] mon_host, [NAME] admin_socket ...;
    /// default /etc/kalmar/kalmar.conf when it exists).
    #[arg(short = 'c', long, env = "KALMAR_CONF")]
    conf: Option<PathBuf>,
    /// Output format: plain, json, json-pretty.
    #[arg(short = 'f', long)]
    format: Option<String>,
    /// Seconds to wait for a reply.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Seconds to wait for the mon to answer at all.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
    /// Who to authenticate as (Ceph's -n/--name).
    #[arg(
        short = 'n',
        long = "name",
        env = "KALMAR_NAME",
        default_value = "client.admin"
    )]
    name: String,
    /// Keyring holding that entity's key (else the conf's `keyring`, else
    /// kalmar.NAME.keyring / kalmar.keyring / keyring next to the conf and
    /// in /etc/kalmar).
    #[arg(short = 'k', long)]
    keyring: Option<PathBuf>,
    /// Admin socket for `daemon` (overrides the conf).
    #[arg(long)]
    admin_socket: Option<PathBuf>,
    /// Same as the `status` command.
    #[arg(short = 's')]
    status: bool,
    /// The command words.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    words: Vec<String>,
}

/// A group parsed with clap on its own words.
#[derive(Parser)]
#[command(name = "kalmar", no_binary_name = true)]
enum Group {
    /// Objects of a pool, with the grammar of Ceph's `rados` (put, get,
    /// rm, stat, ls, xattrs, omap, list-inconsistent-obj).
    Rados(rados::RadosArgs),
    /// Block images striped over a pool's objects: create, ls, rm.
    Image(image::ImageArgs),
    /// A whole cluster on this machine (mons, a mgr, OSDs on sparse files)
    /// in one folder, for development and tests; run again it starts what
    /// is not running and adds OSDs.
    Vstart(vstart::VstartArgs),
    /// Stop the daemons of a vstart cluster.
    Vstop(vstart::VstopArgs),
    /// This host's daemons' perf counters for Prometheus (Ceph's
    /// ceph-exporter), read from their admin sockets.
    Exporter(exporter::ExporterArgs),
}

/// The manual page's command: the global flags, and the groups clap
/// parses on their own words (`rados`, `image`, `vstart`, ...) as its
/// subcommands, so their options are documented too.
fn man_command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command().subcommands(Group::command().get_subcommands().cloned())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn dispatch(ctx: &Ctx, words: Vec<String>) -> anyhow::Result<i32> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["osd", "crush", "test", ..] => {
            let mut out = std::io::stdout().lock();
            crush::run(&words[3..], &mut out)?;
            Ok(0)
        }
        ["daemon", ..] => {
            let mut rest = words[1..].to_vec();
            let mut ctx = ctx.clone();
            if let Some(i) = rest.iter().position(|w| w == "--admin-socket") {
                let path = rest
                    .get(i + 1)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("--admin-socket needs a path"))?;
                ctx.admin_socket = Some(PathBuf::from(path));
                rest.drain(i..i + 2);
            }
            daemon::run(&ctx, &rest)?;
            Ok(0)
        }
        ["rados" | "image" | "vstart" | "vstop" | "exporter", ..] => {
            let group = match Group::try_parse_from(&words) {
                Ok(g) => g,
                Err(e) => {
                    let _ = e.print();
                    return Ok(if e.use_stderr() { 22 } else { 0 });
                }
            };
            if let Group::Exporter(a) = &group {
                exporter::run(a, ctx.conf.path())?;
                return Ok(0);
            }
            let json = ctx.format.is_json();
            let pretty = ctx.format == Format::JsonPretty;
            runtime()?.block_on(async {
                match group {
                    Group::Rados(a) => {
                        rados::run(&a, &ctx.mon_addrs()?, ctx.client_auth()?, json, pretty).await
                    }
                    Group::Image(a) => {
                        image::run(&a, &ctx.mon_addrs()?, ctx.client_auth()?, json, pretty).await
                    }
                    Group::Vstart(a) => {
                        let c = vstart::vstart(&a).await?;
                        println!(
                            "cluster running; use: kalmar --conf {} status",
                            c.conf.display()
                        );
                        Ok(())
                    }
                    Group::Exporter(_) => Ok(()),
                    Group::Vstop(a) => {
                        for name in vstart::vstop(&a)? {
                            println!("stopped {name}");
                        }
                        Ok(())
                    }
                }
            })?;
            Ok(0)
        }
        [] => {
            eprintln!("no command given; try `kalmar --help`");
            Ok(22)
        }
        _ if pgcmd::route(&words).is_some() => match pgcmd::route(&words) {
            Some(Ok(cmd)) => runtime()?.block_on(pgcmd::run(ctx, cmd)),
            Some(Err(e)) => {
                eprintln!("Invalid command: {e}");
                Ok(22)
            }
            None => Ok(22),
        },
        _ if mgrcmd::route(&words).is_some() => match mgrcmd::route(&words) {
            Some(Ok(route)) => {
                let reply = runtime()?.block_on(mgrcmd::run(ctx, route))?;
                Ok(moncmd::print(&reply))
            }
            Some(Err(e)) => {
                eprintln!("Invalid command: {e}");
                Ok(22)
            }
            None => Ok(22),
        },
        _ => {
            let cmd = match grammar::parse(&words) {
                Ok(c) => c,
                Err(e) => {
                    // As Ceph's CLI: a command the mon does not know may be
                    // one a mgr module registered (`crash ls`, `osd status`,
                    // `balancer status`).
                    // Only words the mon grammar does not know at all: a
                    // known mon command with bad arguments is a usage error.
                    let unknown_to_mon = e.msg.starts_with("unknown command");
                    let route = mgrcmd::route(
                        &[&["tell".to_string(), "mgr".to_string()][..], &words[..]].concat(),
                    );
                    if let (true, Some(Ok(route))) = (unknown_to_mon, route) {
                        // No mon or mgr to ask: the usage error below.
                        if let Ok(reply) = runtime()?.block_on(mgrcmd::run(ctx, route)) {
                            let unknown = reply.outs.starts_with("No handler found")
                                || reply.outs.starts_with("no mgr is active");
                            if !unknown {
                                return Ok(moncmd::print(&reply));
                            }
                        }
                    }
                    eprintln!("Invalid command: {e}");
                    return Ok(22);
                }
            };
            let reply = runtime()?.block_on(moncmd::send(ctx, cmd))?;
            Ok(moncmd::print(&reply))
        }
    }
}

fn main() -> ExitCode {
    kalmar_common::manpage::print_if_asked(man_command);
    let cli = Cli::parse();
    let result = (|| -> anyhow::Result<i32> {
        let mut words = cli.words.clone();
        let late_format = take_format(&mut words)?;
        let format = match (late_format, &cli.format) {
            (Some(f), _) => f,
            (None, Some(f)) => Format::parse(f)?,
            (None, None) => Format::Plain,
        };
        if cli.status {
            words.insert(0, "status".into());
        }
        let conf = match &cli.conf {
            Some(p) => Conf::load(p).with_context(|| format!("loading conf {}", p.display()))?,
            // As Ceph's CLI reads /etc/ceph/ceph.conf: the installed
            // host's conf (scripts/install.sh), when there is one.
            None if Path::new(DEFAULT_CONF).is_file() => Conf::load(Path::new(DEFAULT_CONF))
                .with_context(|| {
                    format!("loading conf {DEFAULT_CONF} (pass --conf to use another)")
                })?,
            None => Conf::empty(),
        };
        let ctx = Ctx {
            mon: cli.mon.clone(),
            conf,
            format,
            timeout: Duration::from_secs(cli.timeout.max(1)),
            connect_timeout: Duration::from_secs(cli.connect_timeout.max(1)),
            admin_socket: cli.admin_socket.clone(),
            name: cli.name.clone(),
            keyring: cli.keyring.clone(),
        };
        dispatch(&ctx, words)
    })();
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(code.clamp(1, 255) as u8),
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}
