//! Sending a command dict to the mon and printing its reply the way
//! Ceph's CLI does: data (`outbuf`) on stdout, the status text (`outs`) on
//! stderr, `Error ENOENT: ...` and the errno as the exit code on failure.

use kalmar_msgr::MsgrConfig;
use kalmar_proto::mon::MonCommandReply;
use kalmar_proto::monc::MonClient;
use serde_json::Value;

use crate::args::Ctx;

/// Ceph's name for a (positive) errno.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        1 => "EPERM",
        2 => "ENOENT",
        5 => "EIO",
        11 => "EAGAIN",
        13 => "EACCES",
        16 => "EBUSY",
        17 => "EEXIST",
        22 => "EINVAL",
        34 => "ERANGE",
        39 => "ENOTEMPTY",
        95 => "EOPNOTSUPP",
        110 => "ETIMEDOUT",
        122 => "EDQUOT",
        _ => "error",
    }
}

/// Exit code for a negative retval (the errno, as Ceph's CLI exits).
pub fn exit_code(retval: i32) -> i32 {
    retval.unsigned_abs().clamp(1, 255) as i32
}

/// Connects to the mon (bounded) and runs one command.
pub async fn send(ctx: &Ctx, mut cmd: Value) -> anyhow::Result<MonCommandReply> {
    let mut output_file = None;
    if let Value::Object(m) = &mut cmd {
        m.insert("format".into(), Value::String(ctx.format.as_str().into()));
        output_file = m
            .remove(crate::grammar::OUTPUT_FILE)
            .and_then(|v| v.as_str().map(std::path::PathBuf::from));
        if let Some(path) = m.remove(crate::grammar::INPUT_FILE) {
            let path = path.as_str().unwrap_or_default().to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("reading {path}: {e}"))?;
            m.insert("keyring".into(), Value::String(text));
        }
    }
    let addrs = ctx.mon_addrs()?;
    let msgr = MsgrConfig {
        connect_timeout: ctx.connect_timeout,
        handshake_timeout: ctx.connect_timeout,
        // A CLI gives up instead of retrying for ever.
        reconnect_max_attempts: Some(3),
        auth: kalmar_msgr::auth::MsgrAuth {
            client: ctx.client_auth()?,
            ..Default::default()
        },
        ..MsgrConfig::default()
    };
    let me = ctx.entity()?;
    let (client, _events) = MonClient::connect_any(&addrs, me, uuid::Uuid::nil(), msgr)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let reply = client
        .command(&cmd, ctx.timeout)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"));
    client.close().await;
    let mut reply = reply?;
    if let (Some(path), 0) = (output_file, reply.retval) {
        // Keyrings hold secrets: written 0600, as Ceph's `-o`.
        kalmar_auth::keyring::write_secret_file(&path, &reply.outbuf.0)?;
        reply.outbuf = Default::default();
    }
    Ok(reply)
}

/// Prints a reply; returns the process exit code.
pub fn print(reply: &MonCommandReply) -> i32 {
    use std::io::Write;
    if !reply.outbuf.0.is_empty() {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&reply.outbuf.0);
        let _ = out.flush();
    }
    if reply.retval < 0 {
        let errno = -reply.retval;
        eprintln!("Error {}: {}", errno_name(errno), reply.outs);
        return exit_code(reply.retval);
    }
    if !reply.outs.is_empty() {
        eprintln!("{}", reply.outs.trim_end());
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        assert_eq!(errno_name(2), "ENOENT");
        assert_eq!(exit_code(-2), 2);
        assert_eq!(exit_code(-22), 22);
        assert_eq!(exit_code(-1000), 255);
        assert_eq!(exit_code(0), 1);
    }
}
