//! `kalmar rados -p POOL <command>`: object access with the grammar and
//! output of Ceph's `rados` tool.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use kalmar_client::{ClientConfig, ClientError, IoCtx, Rados};
use kalmar_maps::time::format_stamp;
use serde_json::{json, Value};

use crate::bench::{write_bench, BenchOpts};
use crate::procs::parse_size;

/// Bytes per request when `put`/`get` move a file.
pub const OP_SIZE_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, clap::Args)]
pub struct RadosArgs {
    /// The pool.
    #[arg(short = 'p', long = "pool")]
    pub pool: Option<String>,
    /// Seconds an op may take before failing with ETIMEDOUT.
    #[arg(long, default_value_t = 30)]
    pub op_timeout: u64,
    #[command(subcommand)]
    pub cmd: RadosCmd,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum RadosCmd {
    /// Write FILE (or stdin for "-") as object OBJ.
    Put {
        obj: String,
        file: String,
    },
    /// Read object OBJ into FILE (or stdout for "-").
    Get {
        obj: String,
        file: String,
    },
    /// Append FILE (or stdin) to OBJ.
    Append {
        obj: String,
        file: String,
    },
    /// Remove objects.
    Rm {
        #[arg(required = true)]
        objs: Vec<String>,
    },
    /// Size and mtime of an object.
    Stat {
        obj: String,
    },
    /// Create an object (fails if it exists).
    Create {
        obj: String,
    },
    /// Truncate an object to SIZE bytes.
    Truncate {
        obj: String,
        size: u64,
    },
    /// List the pool's objects.
    Ls,
    Setxattr {
        obj: String,
        name: String,
        value: String,
    },
    Getxattr {
        obj: String,
        name: String,
    },
    Rmxattr {
        obj: String,
        name: String,
    },
    Listxattr {
        obj: String,
    },
    Setomapval {
        obj: String,
        key: String,
        value: String,
    },
    Getomapval {
        obj: String,
        key: String,
    },
    Rmomapkey {
        obj: String,
        key: String,
    },
    Listomapkeys {
        obj: String,
    },
    Listomapvals {
        obj: String,
    },
    /// The inconsistent objects the last scrub of PGID found (needs no
    /// pool).
    #[command(name = "list-inconsistent-obj")]
    ListInconsistentObj {
        pgid: String,
    },
    /// Write benchmark: `bench SECONDS write [-b SIZE] [-t CONCURRENCY]`.
    Bench {
        seconds: u64,
        /// Only `write` is supported.
        mode: String,
        /// Object (and write) size, e.g. 4K, 4M.
        #[arg(short = 'b', default_value = "4M")]
        block_size: String,
        /// Writes in flight.
        #[arg(short = 't', default_value_t = 16)]
        concurrency: usize,
        /// Leave the benchmark objects in the pool.
        #[arg(long)]
        no_cleanup: bool,
        /// Object name prefix (default benchmark_data_HOST_PID).
        #[arg(long)]
        run_name: Option<String>,
        /// Stop after this many objects (0: only the time limit).
        #[arg(long, default_value_t = 0)]
        max_objects: u64,
    },
}

/// The source of `put`/`append`: a file, or stdin for "-".
fn open_input(file: &str) -> anyhow::Result<Box<dyn Read>> {
    if file == "-" {
        Ok(Box::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("error reading {file}"))?;
        Ok(Box::new(f))
    }
}

/// Fills `buf` from `r` unless the input ends first; returns the bytes read.
fn read_chunk(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Ceph's hexdump of a value (`listomapvals`).
pub fn hexdump(b: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in b.chunks(16).enumerate() {
        out.push_str(&format!("{:08x}  ", i * 16));
        for j in 0..16 {
            match chunk.get(j) {
                Some(x) => out.push_str(&format!("{x:02x} ")),
                None => out.push_str("   "),
            }
            if j == 7 {
                out.push(' ');
            }
        }
        out.push_str(" |");
        for &x in chunk {
            out.push(if x.is_ascii_graphic() || x == b' ' {
                x as char
            } else {
                '.'
            });
        }
        out.push_str("|\n");
    }
    out.push_str(&format!("{:08x}\n", b.len()));
    out
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Connects to the cluster at `mon`, as `auth`'s entity when given.
pub async fn connect(
    mons: &[SocketAddr],
    op_timeout: Duration,
    auth: Option<std::sync::Arc<kalmar_auth::ClientAuth>>,
) -> Result<Rados, ClientError> {
    let mut cfg = ClientConfig::new(mons.first().copied().unwrap_or(([127, 0, 0, 1], 0).into()));
    cfg.other_mons = mons.get(1..).unwrap_or_default().to_vec();
    cfg.op_timeout = op_timeout;
    cfg.msgr.auth.client = auth;
    Rados::connect(cfg).await
}

/// Runs a `rados` command; `json` selects JSON output where it is data.
pub async fn run(
    args: &RadosArgs,
    mon: &[SocketAddr],
    auth: Option<std::sync::Arc<kalmar_auth::ClientAuth>>,
    json_out: bool,
    pretty: bool,
) -> anyhow::Result<()> {
    if let RadosCmd::ListInconsistentObj { pgid } = &args.cmd {
        let pg: kalmar_maps::PgId = pgid.parse().map_err(|_| anyhow!("bad pg: {pgid}"))?;
        let rados = connect(mon, Duration::from_secs(args.op_timeout), auth.clone()).await?;
        let r = rados.list_inconsistent_obj(pg).await;
        rados.shutdown().await;
        return match r {
            Ok(v) => print_json(&v, pretty),
            // The PG's own ENOENT (not a missing pool or PG): it has no
            // scrub record.
            Err(e @ ClientError::Osd { .. }) if e.errno() == libc::ENOENT => {
                // Ceph's words, and its exit status (ENOENT).
                Err(anyhow!("No scrub information available for pg {pg}"))
            }
            Err(e) => Err(anyhow!("{e}")),
        };
    }
    let pool = args
        .pool
        .as_deref()
        .ok_or_else(|| anyhow!("a pool is required: pass -p POOL"))?;
    let rados = connect(mon, Duration::from_secs(args.op_timeout), auth.clone()).await?;
    let io = rados
        .ioctx(pool)
        .map_err(|e| anyhow!("error opening pool {pool}: ({}) {e}", e.errno()))?;
    let r = run_on(&io, &args.cmd, json_out, pretty).await;
    rados.shutdown().await;
    r
}

fn print_json(v: &Value, pretty: bool) -> anyhow::Result<()> {
    let s = if pretty {
        serde_json::to_string_pretty(v)?
    } else {
        serde_json::to_string(v)?
    };
    println!("{s}");
    Ok(())
}

/// Writes the input as `obj` in `OP_SIZE_BYTES` pieces, as Ceph's `rados
/// put` does (the first replaces the object, the rest write at their
/// offsets), so neither the file nor a request has to hold all of it.
async fn put(io: &IoCtx, obj: &str, input: &mut dyn Read, append: bool) -> anyhow::Result<()> {
    let mut off = 0u64;
    loop {
        let mut buf = vec![0u8; OP_SIZE_BYTES];
        let n = read_chunk(input, &mut buf).context("error reading the input")?;
        buf.truncate(n);
        let chunk = Bytes::from(buf);
        if append {
            if n > 0 {
                io.append(obj, chunk).await?;
            }
        } else if off == 0 {
            io.write_full(obj, chunk).await?;
        } else if n > 0 {
            io.write(obj, off, chunk).await?;
        }
        off += n as u64;
        if n < OP_SIZE_BYTES {
            return Ok(());
        }
    }
}

/// Reads `obj` into `out` in `OP_SIZE_BYTES` pieces (an object may be
/// larger than one reply can carry); returns the bytes copied.
async fn get(io: &IoCtx, obj: &str, out: &mut dyn Write) -> anyhow::Result<u64> {
    let mut off = 0u64;
    loop {
        let b = io.read(obj, off, OP_SIZE_BYTES as u64).await?;
        out.write_all(&b).context("error writing the output")?;
        off += b.len() as u64;
        if b.len() < OP_SIZE_BYTES {
            out.flush().context("error writing the output")?;
            return Ok(off);
        }
    }
}

/// A failed write as Ceph's `rados` words it: `error putting pool/obj:
/// (errno) text`; errors that are not the client's (reading the input)
/// keep their own text.
fn write_error(what: &str, pool: &str, obj: &str, e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<ClientError>() {
        Some(c) => anyhow!("error {what} {pool}/{obj}: ({}) {c}", c.errno()),
        None => e,
    }
}

/// The command on an open pool.
pub async fn run_on(
    io: &IoCtx,
    cmd: &RadosCmd,
    json_out: bool,
    pretty: bool,
) -> anyhow::Result<()> {
    let pool = io.pool_name().to_string();
    match cmd {
        // Ceph's words: `error putting data/obj: (122) Disk quota exceeded`.
        RadosCmd::Put { obj, file } => put(io, obj, &mut *open_input(file)?, false)
            .await
            .map_err(|e| write_error("putting", &pool, obj, e))?,
        RadosCmd::Append { obj, file } => put(io, obj, &mut *open_input(file)?, true)
            .await
            .map_err(|e| write_error("appending", &pool, obj, e))?,
        RadosCmd::Get { obj, file } => {
            // Stat first, so a missing object leaves no empty file behind.
            io.stat(obj)
                .await
                .map_err(|e| anyhow!("error getting {pool}/{obj}: {e}"))?;
            let mut out: Box<dyn Write> = if file == "-" {
                Box::new(std::io::stdout().lock())
            } else {
                let f = std::fs::File::create(PathBuf::from(file))
                    .with_context(|| format!("error writing {file}"))?;
                Box::new(std::io::BufWriter::new(f))
            };
            get(io, obj, &mut *out)
                .await
                .map_err(|e| anyhow!("error getting {pool}/{obj}: {e}"))?;
        }
        RadosCmd::Rm { objs } => {
            for o in objs {
                io.remove(o)
                    .await
                    .map_err(|e| anyhow!("error removing {pool}>{o}: ({}) {e}", e.errno()))?;
            }
        }
        RadosCmd::Stat { obj } => {
            let st = io
                .stat(obj)
                .await
                .map_err(|e| anyhow!(" error stat-ing {pool}/{obj}: ({}) {e}", e.errno()))?;
            if json_out {
                print_json(
                    &json!({"pool": pool, "name": obj, "mtime": format_stamp(st.mtime_us), "size": st.size_bytes}),
                    pretty,
                )?;
            } else {
                println!(
                    "{pool}/{obj} mtime {}, size {}",
                    format_stamp(st.mtime_us),
                    st.size_bytes
                );
            }
        }
        RadosCmd::Create { obj } => io
            .create(obj, true)
            .await
            .map_err(|e| write_error("creating", &pool, obj, e.into()))?,
        RadosCmd::Truncate { obj, size } => io.truncate(obj, *size).await?,
        RadosCmd::Ls => {
            let names = io.list_objects().await?;
            if json_out {
                let v: Vec<Value> = names
                    .iter()
                    .map(|n| json!({"namespace": "", "name": n}))
                    .collect();
                print_json(&Value::Array(v), pretty)?;
            } else {
                let mut out = std::io::stdout().lock();
                for n in names {
                    writeln!(out, "{n}")?;
                }
            }
        }
        RadosCmd::Setxattr { obj, name, value } => {
            io.setxattr(obj, name, Bytes::copy_from_slice(value.as_bytes()))
                .await?
        }
        RadosCmd::Getxattr { obj, name } => {
            let v = io.getxattr(obj, name).await.map_err(|e| {
                anyhow!(
                    "error getting xattr {pool}/{obj}/{name}: ({}) {e}",
                    e.errno()
                )
            })?;
            std::io::stdout().write_all(&v)?;
            if !json_out {
                println!();
            }
        }
        RadosCmd::Rmxattr { obj, name } => io.rmxattr(obj, name).await?,
        RadosCmd::Listxattr { obj } => {
            for k in io.getxattrs(obj).await?.keys() {
                println!("{k}");
            }
        }
        RadosCmd::Setomapval { obj, key, value } => {
            io.omap_set(
                obj,
                vec![(key.clone(), Bytes::copy_from_slice(value.as_bytes()))],
            )
            .await?
        }
        RadosCmd::Getomapval { obj, key } => {
            let m = io.omap_get_vals_by_keys(obj, vec![key.clone()]).await?;
            match m.get(key) {
                Some(v) => {
                    println!("value ({} bytes) :", v.len());
                    print!("{}", hexdump(v));
                }
                None => bail!("No such key: {pool}/{obj}/{key}"),
            }
        }
        RadosCmd::Rmomapkey { obj, key } => io.omap_rm_keys(obj, vec![key.clone()]).await?,
        RadosCmd::Listomapkeys { obj } => {
            for k in io.omap_get_all(obj).await?.keys() {
                println!("{k}");
            }
        }
        RadosCmd::Listomapvals { obj } => {
            let all = io.omap_get_all(obj).await?;
            if json_out {
                let m: serde_json::Map<String, Value> = all
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            Value::String(String::from_utf8_lossy(v).into_owned()),
                        )
                    })
                    .collect();
                print_json(&Value::Object(m), pretty)?;
            } else {
                for (k, v) in all {
                    println!("{k}");
                    println!("value ({} bytes) :", v.len());
                    print!("{}", hexdump(&v));
                    println!();
                }
            }
        }
        RadosCmd::ListInconsistentObj { .. } => {
            bail!("list-inconsistent-obj takes a PGID, not a pool")
        }
        RadosCmd::Bench {
            seconds,
            mode,
            block_size,
            concurrency,
            no_cleanup,
            run_name,
            max_objects,
        } => {
            if mode != "write" {
                bail!("bench mode '{mode}' is not supported (only 'write')");
            }
            let block_size = parse_size(block_size).map_err(|e| anyhow!("-b: {e}"))?;
            if block_size == 0 {
                bail!("-b must be at least 1 byte");
            }
            let opts = BenchOpts {
                seconds: *seconds,
                block_size,
                concurrency: (*concurrency).max(1),
                cleanup: !no_cleanup,
                max_objects: *max_objects,
                prefix: run_name
                    .clone()
                    .unwrap_or_else(|| format!("benchmark_data_{}_{}", host(), std::process::id())),
            };
            let mut out = std::io::stdout();
            let r = write_bench(io, &opts, &mut out, json_out).await?;
            if json_out {
                print_json(&r.to_json(), pretty)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hexdump_shape() {
        assert_eq!(
            hexdump(b"value"),
            "00000000  76 61 6c 75 65                                    |value|\n00000005\n"
        );
        let d = hexdump(&[0u8; 17]);
        assert!(d.starts_with("00000000  00 00 00 00 00 00 00 00  00 00"));
        assert!(d.contains("\n00000010  00 "));
        assert!(d.ends_with("00000011\n"));
    }
}
