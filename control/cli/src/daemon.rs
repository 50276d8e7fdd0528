//! `kalmar daemon NAME CMD...`: a command to a daemon's admin socket
//! (`perf dump`, `config show`, `status`, ...). The socket path comes from
//! `--admin-socket` or the conf's `[NAME] admin_socket`, else where the
//! systemd units put it (`/run/kalmar/NAME.asok`).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use kalmar_msgr::EntityName;
use serde_json::{json, Value};

use crate::args::{Ctx, Format};

/// The systemd units' runtime folder (dist/systemd: RuntimeDirectory).
const RUN_DIR: &str = "/run/kalmar";

/// Where `name`'s admin socket is.
pub fn socket_path(ctx: &Ctx, name: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = &ctx.admin_socket {
        return Ok(p.clone());
    }
    match ctx.conf.get::<String>(name, "admin_socket")? {
        Some(p) => Ok(PathBuf::from(p)),
        None if Path::new(RUN_DIR).join(format!("{name}.asok")).exists() => {
            Ok(Path::new(RUN_DIR).join(format!("{name}.asok")))
        }
        None => bail!(
            "no admin socket known for {name}: pass --admin-socket PATH or use --conf with [\"{name}\"] admin_socket"
        ),
    }
}

/// Runs `daemon NAME CMD...`; prints the reply as JSON.
pub fn run(ctx: &Ctx, words: &[String]) -> anyhow::Result<()> {
    let (name, cmd) = match words {
        [name, cmd @ ..] if !cmd.is_empty() => (name, cmd),
        _ => bail!("usage: kalmar daemon osd.N|mon.X|mgr.X <command> (e.g. perf dump, config show, status)"),
    };
    name.parse::<EntityName>().map_err(|e| anyhow!("{e}"))?;
    let path = socket_path(ctx, name)?;
    let req = json!({"prefix": cmd.join(" ")});
    let reply: Value = kalmar_common::admin_socket::request(&path, &req, ctx.timeout)
        .map_err(|e| anyhow!("{name}: {e}"))?;
    let text = match ctx.format {
        Format::Json => serde_json::to_string(&reply)?,
        _ => serde_json::to_string_pretty(&reply)?,
    };
    println!("{text}");
    Ok(())
}
