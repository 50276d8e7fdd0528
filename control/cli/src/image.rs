//! `kalmar image create POOL/NAME --size SIZE`, `kalmar image ls POOL`,
//! `kalmar image rm POOL/NAME`: block images striped over a pool's
//! objects (RBD's layout; see the `kalmar-image` crate). `ls` prints
//! names, or with `--format json` `[{"image","id","size","order"}]` like
//! `rbd ls -l --format json` keys.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context};
use kalmar_image::{ImageSpec, DEFAULT_ORDER};
use serde_json::json;

use crate::procs::parse_size;
use crate::rados::connect;

#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    /// Seconds an op may take before failing with ETIMEDOUT.
    #[arg(long, default_value_t = 30)]
    pub op_timeout: u64,
    #[command(subcommand)]
    pub cmd: ImageCmd,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ImageCmd {
    /// Create an image (thin: no data object exists until written).
    Create {
        /// POOL/NAME
        spec: String,
        /// Size, e.g. 10G.
        #[arg(long, value_parser = parse_size)]
        size: u64,
        /// Object size (power of two, 4K to 64M).
        #[arg(long, value_parser = parse_size, default_value = "4M")]
        object_size: u64,
    },
    /// List the images of a pool.
    Ls { pool: String },
    /// Remove an image and its data.
    Rm {
        /// POOL/NAME
        spec: String,
    },
}

fn order_of(object_size: u64) -> anyhow::Result<u8> {
    if !object_size.is_power_of_two() {
        return Err(anyhow!("--object-size {object_size} is not a power of two"));
    }
    Ok(object_size.trailing_zeros() as u8)
}

/// Runs an `image` command against the cluster at `mon`.
pub async fn run(
    args: &ImageArgs,
    mon: &[SocketAddr],
    auth: Option<std::sync::Arc<kalmar_auth::ClientAuth>>,
    json_out: bool,
    pretty: bool,
) -> anyhow::Result<()> {
    let rados = connect(mon, Duration::from_secs(args.op_timeout), auth).await?;
    let r = run_on(&rados, &args.cmd, json_out, pretty).await;
    rados.shutdown().await;
    r
}

async fn run_on(
    rados: &kalmar_client::Rados,
    cmd: &ImageCmd,
    json_out: bool,
    pretty: bool,
) -> anyhow::Result<()> {
    let ioctx = |pool: &str| {
        rados
            .ioctx(pool)
            .map_err(|e| anyhow!("error opening pool {pool}: ({}) {e}", e.errno()))
    };
    match cmd {
        ImageCmd::Create {
            spec,
            size,
            object_size,
        } => {
            let s = ImageSpec::parse(spec)?;
            let order = if *object_size == 4 << 20 {
                DEFAULT_ORDER
            } else {
                order_of(*object_size)?
            };
            kalmar_image::create(&ioctx(&s.pool)?, &s.name, *size, order)
                .await
                .with_context(|| format!("cannot create image {s}"))?;
        }
        ImageCmd::Rm { spec } => {
            let s = ImageSpec::parse(spec)?;
            kalmar_image::remove(&ioctx(&s.pool)?, &s.name)
                .await
                .with_context(|| format!("cannot remove image {s}"))?;
        }
        ImageCmd::Ls { pool } => {
            let images = kalmar_image::list(&ioctx(pool)?).await?;
            if json_out {
                let v: Vec<_> = images
                    .iter()
                    .map(|(name, h)| json!({"image": name, "id": h.id, "size": h.size_bytes, "order": h.order}))
                    .collect();
                let v = serde_json::Value::Array(v);
                let s = if pretty {
                    serde_json::to_string_pretty(&v)?
                } else {
                    serde_json::to_string(&v)?
                };
                println!("{s}");
            } else {
                for (name, _) in images {
                    println!("{name}");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::order_of;

    #[test]
    fn object_size_orders() {
        assert_eq!(order_of(4 << 20).expect("pow2"), 22);
        assert_eq!(order_of(4096).expect("pow2"), 12);
        assert!(order_of(3 << 20).is_err());
    }
}
