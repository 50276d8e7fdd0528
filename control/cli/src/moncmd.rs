//! Sending a command dict to the mon and printing its reply the way
//! Ceph's CLI does: data (`outbuf`) on stdout, the status text (`outs`) on
//! stderr, `Error ENOENT: ...` and the errno as the exit code on failure.

use kalmar_msgr::{EntityName, EntityType, MsgrConfig};
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
    if let Value::Object(m) = &mut cmd {
        m.insert("format".into(), Value::String(ctx.format.as_str().into()));
    }
    let addrs = ctx.mon_addrs()?;
    let msgr = MsgrConfig {
        connect_timeout: ctx.connect_timeout,
        handshake_timeout: ctx.connect_timeout,
        // A CLI gives up instead of retrying for ever.
        reconnect_max_attempts: Some(3),
        ..MsgrConfig::default()
    };
    let me = EntityName::new(EntityType::Client, "admin");
    let (client, _events) = MonClient::connect_any(&addrs, me, uuid::Uuid::nil(), msgr)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let reply = client
        .command(&cmd, ctx.timeout)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"));
    client.close().await;
    reply
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
