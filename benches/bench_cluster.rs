//! `kalmar-bench-cluster`: the cluster steps of scripts/bench.sh: a
//! vstart cluster, replicated pools, images on them. (The `kalmar` CLI covers these as `vstart`,
//! `osd pool create` and `image create`; this helper keeps the main job
//! independent of the CLI's front end.)
//!
//!   kalmar-bench-cluster up --dir DIR --osds 3 --osd-size 6G
//!   kalmar-bench-cluster pool --conf DIR/kalmar.conf --pool rbd3 --size 3 --pg-num 32
//!   kalmar-bench-cluster image --conf DIR/kalmar.conf --image rbd3/vol --size 2G
//!   kalmar-bench-cluster rm-image --conf DIR/kalmar.conf --image rbd3/vol
//!   kalmar-bench-cluster down --dir DIR

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use kalmar_cli::vstart::{vstart, vstop, VstartArgs, VstopArgs};
use kalmar_client::{ClientConfig, Rados};
use kalmar_image::{ImageSpec, DEFAULT_ORDER};
use kalmar_nbd::size::parse_size;
use serde_json::json;

/// Bound on waiting for a new pool's PGs to become active+clean.
const PG_WAIT: Duration = Duration::from_secs(180);

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Up {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        osds: u32,
        #[arg(long, default_value = "6G")]
        osd_size: String,
        /// Extra [global] conf settings, KEY=VALUE (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    Pool {
        #[arg(long)]
        conf: PathBuf,
        #[arg(long)]
        pool: String,
        #[arg(long)]
        size: u32,
        #[arg(long, default_value_t = 32)]
        pg_num: u32,
    },
    Image {
        #[arg(long)]
        conf: PathBuf,
        #[arg(long)]
        image: String,
        #[arg(long, value_parser = parse_size)]
        size: u64,
    },
    RmImage {
        #[arg(long)]
        conf: PathBuf,
        #[arg(long)]
        image: String,
    },
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
}

fn mon_of(conf: &Path) -> Result<SocketAddr> {
    let t: toml::Table = std::fs::read_to_string(conf)?.parse()?;
    // One address, or a list of them (several mons): the first will do.
    let m = match t.get("global").and_then(|g| g.get("mon_host")) {
        Some(toml::Value::String(s)) => s.split(',').next().map(str::trim),
        Some(toml::Value::Array(a)) => a.first().and_then(|v| v.as_str()),
        _ => None,
    }
    .context("no [global] mon_host")?;
    Ok(m.parse()?)
}

/// A client as client.admin, with the key vstart wrote next to the conf
/// (none needed when the conf turns auth off).
async fn connect(conf: &Path) -> Result<Rados> {
    let mut cfg = ClientConfig::new(mon_of(conf)?);
    let c = kalmar_common::config::Conf::load(conf)?;
    cfg.msgr.auth = kalmar_msgr::auth::MsgrAuth::client_from_conf(&c, "client.admin")
        .map_err(anyhow::Error::msg)?;
    Ok(Rados::connect(cfg).await?)
}

async fn create_pool(rados: &Rados, pool: &str, size: u32, pg_num: u32) -> Result<()> {
    let cmd = json!({"prefix": "osd pool create", "pool": pool, "pg_num": pg_num,
                     "size": size, "min_size": 1, "format": "json"});
    let r = rados.mon_command(&cmd).await?;
    if r.retval != 0 {
        bail!("osd pool create {pool}: {} ({})", r.outs, r.retval);
    }
    let t0 = Instant::now();
    loop {
        let id = rados.osdmap().pool_by_name(pool).map(|p| p.id).ok();
        let dump = rados
            .mon_command(&json!({"prefix": "pg dump", "dumpcontents": ["pgs"], "format": "json"}))
            .await?;
        let v: serde_json::Value = serde_json::from_slice(&dump.outbuf.0).unwrap_or_default();
        let stats = v["pg_map"]["pg_stats"]
            .as_array()
            .or_else(|| v["pg_stats"].as_array());
        if let (Some(id), Some(stats)) = (id, stats) {
            let prefix = format!("{id}.");
            let clean = stats
                .iter()
                .filter(|p| p["pgid"].as_str().is_some_and(|s| s.starts_with(&prefix)))
                .filter(|p| {
                    let st = p["state"].as_str().unwrap_or("");
                    st.split('+').any(|s| s == "active") && st.split('+').any(|s| s == "clean")
                })
                .count();
            if clean == pg_num as usize {
                return Ok(());
            }
        }
        if t0.elapsed() > PG_WAIT {
            bail!(
                "pool {pool}: PGs not active+clean after {} s",
                PG_WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Up {
            dir,
            osds,
            osd_size,
            set,
        } => {
            let c = vstart(&VstartArgs {
                mons: 1,
                osds,
                mgrs: 0,
                dir,
                osd_size,
                set,
                timeout: 120,
            })
            .await?;
            println!("{}", json!({"mon": c.mon.to_string(), "conf": c.conf}));
        }
        Cmd::Pool {
            conf,
            pool,
            size,
            pg_num,
        } => {
            let r = connect(&conf).await?;
            let res = create_pool(&r, &pool, size, pg_num).await;
            r.shutdown().await;
            res?;
        }
        Cmd::Image { conf, image, size } => {
            let spec = ImageSpec::parse(&image)?;
            let r = connect(&conf).await?;
            let res = async {
                Ok::<_, anyhow::Error>(
                    kalmar_image::create(&r.ioctx(&spec.pool)?, &spec.name, size, DEFAULT_ORDER)
                        .await?,
                )
            }
            .await;
            r.shutdown().await;
            res?;
        }
        Cmd::RmImage { conf, image } => {
            let spec = ImageSpec::parse(&image)?;
            let r = connect(&conf).await?;
            let res = async {
                Ok::<_, anyhow::Error>(
                    kalmar_image::remove(&r.ioctx(&spec.pool)?, &spec.name).await?,
                )
            }
            .await;
            r.shutdown().await;
            res?;
        }
        Cmd::Down { dir } => {
            let stopped = vstop(&VstopArgs { dir, timeout: 20 })?;
            println!("{}", json!({"stopped": stopped}));
        }
    }
    Ok(())
}
