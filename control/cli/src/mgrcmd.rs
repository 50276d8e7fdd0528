//! The mgr-facing commands: `tell mgr <words>`, `mgr module
//! ls|enable|disable`, and `pg stat`, `pg dump`, `df`, `osd df` and the
//! data/io/progress part of `status`, which come from the active mgr when
//! the MgrMap has an available one (the mon's own answers otherwise).

use std::net::SocketAddr;

use anyhow::{anyhow, bail};
use kalmar_common::encoding::Blob;
use kalmar_msgr::MsgrConfig;
use kalmar_proto::mon::MonCommandReply;
use kalmar_proto::monc::MonClient;
use serde_json::{json, Value};

use crate::args::Ctx;
use crate::moncmd;

/// What a command line means for the mgr side.
#[derive(Debug, Clone, PartialEq)]
pub enum MgrRoute {
    /// `tell mgr <words> [-i FILE]`: only the mgr can answer; `FILE`
    /// (`-` for stdin) is the command's input buffer, as Ceph's `-i`.
    Tell(Vec<String>, Option<String>),
    /// Served by the active mgr, by the mon when none is available.
    MgrFirst(Value),
    /// `status`: the mon's, with the data part from the mgr.
    Status,
    /// Changes the MgrMap: the mon's.
    Mon(Value),
}

/// Recognises the mgr-facing commands; `None` for everything else.
pub fn route(words: &[String]) -> Option<Result<MgrRoute, String>> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    Some(Ok(match w.as_slice() {
        ["tell", "mgr", rest @ ..] | ["tell", "mgr.*", rest @ ..] => {
            if rest.is_empty() {
                return Some(Err("usage: kalmar tell mgr <command words...>".into()));
            }
            let mut words: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            let mut input = None;
            if let Some(i) = words.iter().position(|w| w == "-i" || w == "--in-file") {
                if i + 1 >= words.len() {
                    return Some(Err("-i needs a file name (or - for stdin)".into()));
                }
                input = Some(words.remove(i + 1));
                words.remove(i);
            }
            MgrRoute::Tell(words, input)
        }
        ["status"] | ["-s"] => MgrRoute::Status,
        ["df"] => MgrRoute::MgrFirst(json!({"prefix": "df"})),
        ["df", "detail"] => MgrRoute::MgrFirst(json!({"prefix": "df", "detail": "detail"})),
        ["osd", "df"] => MgrRoute::MgrFirst(json!({"prefix": "osd df"})),
        ["pg", "stat"] => MgrRoute::MgrFirst(json!({"prefix": "pg stat"})),
        ["pg", "dump"] => MgrRoute::MgrFirst(json!({"prefix": "pg dump"})),
        ["pg", "dump", what] => {
            if !["all", "summary", "sum", "pgs", "pgs_brief", "osds", "pools"].contains(what) {
                return Some(Err(format!(
                    "pg dump: unknown '{what}'\nusage: kalmar pg dump [all|summary|pgs|pgs_brief|osds|pools]"
                )));
            }
            MgrRoute::MgrFirst(json!({"prefix": "pg dump", "dumpcontents": [what]}))
        }
        ["mgr", "module", "ls"] => MgrRoute::MgrFirst(json!({"prefix": "mgr module ls"})),
        ["mgr", "module", op @ ("enable" | "disable"), rest @ ..] => {
            let force = rest.contains(&"--force");
            let names: Vec<&&str> = rest.iter().filter(|a| **a != "--force").collect();
            let [name] = names.as_slice() else {
                return Some(Err(format!(
                    "usage: kalmar mgr module {op} NAME{}",
                    if *op == "enable" { " [--force]" } else { "" }
                )));
            };
            let mut cmd = json!({"prefix": format!("mgr module {op}"), "module": name});
            if force && *op == "enable" {
                cmd["force"] = json!(true);
            }
            MgrRoute::Mon(cmd)
        }
        _ => return None,
    }))
}

fn with_format(ctx: &Ctx, mut cmd: Value) -> Value {
    cmd["format"] = json!(ctx.format.as_str());
    cmd
}

fn cli_msgr(ctx: &Ctx) -> MsgrConfig {
    MsgrConfig {
        connect_timeout: ctx.connect_timeout,
        handshake_timeout: ctx.connect_timeout,
        reconnect_max_attempts: Some(3),
        ..MsgrConfig::default()
    }
}

/// The available active mgr's address from the mon's MgrMap.
pub async fn active_mgr(ctx: &Ctx) -> anyhow::Result<Option<SocketAddr>> {
    let ctx_json = Ctx {
        format: crate::args::Format::Json,
        ..ctx.clone()
    };
    let r = moncmd::send(&ctx_json, json!({"prefix": "mgr dump"})).await?;
    if r.retval != 0 {
        bail!("mgr dump: {}", r.outs);
    }
    let map: Value = serde_json::from_slice(&r.outbuf.0)?;
    if map["available"] != json!(true) || map["active_gid"].as_u64().unwrap_or(0) == 0 {
        return Ok(None);
    }
    let addr = map["active_addr"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok());
    Ok(addr)
}

/// Sends one command dict to the mgr at `addr` (bounded like mon commands).
pub async fn send_to_mgr(
    ctx: &Ctx,
    addr: SocketAddr,
    cmd: Value,
) -> anyhow::Result<MonCommandReply> {
    send_to_mgr_with_input(ctx, addr, cmd, Vec::new()).await
}

/// [`send_to_mgr`] with an input buffer.
pub async fn send_to_mgr_with_input(
    ctx: &Ctx,
    addr: SocketAddr,
    cmd: Value,
    inbuf: Vec<u8>,
) -> anyhow::Result<MonCommandReply> {
    let me = ctx.entity()?;
    let mut cfg = cli_msgr(ctx);
    cfg.auth.client = ctx.client_auth()?;
    if cfg.auth.client.is_some() {
        // The mgr takes a ticket, which the mon gives on authentication.
        let (mon, _ev) = MonClient::connect_any(
            &ctx.mon_addrs()?,
            me.clone(),
            uuid::Uuid::nil(),
            cfg.clone(),
        )
        .await
        .map_err(|e| anyhow!("authenticating with the mon: {e}"))?;
        mon.close().await;
    }
    let (client, _events) = MonClient::connect(addr, me, uuid::Uuid::nil(), cfg)
        .await
        .map_err(|e| anyhow!("cannot reach the active mgr at {addr}: {e}"))?;
    let reply = client
        .command_with_input(&with_format(ctx, cmd), inbuf, ctx.timeout)
        .await
        .map_err(|e| anyhow!("mgr at {addr}: {e}"));
    client.close().await;
    reply
}

/// Runs a routed command; returns the reply to print.
pub async fn run(ctx: &Ctx, route: MgrRoute) -> anyhow::Result<MonCommandReply> {
    match route {
        MgrRoute::Mon(cmd) => moncmd::send(ctx, cmd).await,
        MgrRoute::Tell(words, input) => match active_mgr(ctx).await? {
            Some(addr) => {
                let inbuf = match input.as_deref() {
                    None => Vec::new(),
                    Some("-") => {
                        let mut b = Vec::new();
                        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
                        b
                    }
                    Some(f) => std::fs::read(f)
                        .map_err(|e| anyhow!("cannot read the input file {f}: {e}"))?,
                };
                send_to_mgr_with_input(ctx, addr, json!({"prefix": "tell", "args": words}), inbuf)
                    .await
            }
            None => Ok(MonCommandReply {
                retval: -11,
                outs: "no mgr is active and available (see `kalmar mgr stat`)".into(),
                ..Default::default()
            }),
        },
        MgrRoute::MgrFirst(cmd) => match active_mgr(ctx).await? {
            Some(addr) => send_to_mgr(ctx, addr, cmd).await,
            None => {
                let prefix = cmd["prefix"].as_str().unwrap_or_default();
                if ["df", "osd df"].contains(&prefix) {
                    return Ok(MonCommandReply {
                        retval: -11,
                        outs: format!("'{prefix}' needs an active mgr and none is available (see `kalmar mgr stat`)"),
                        ..Default::default()
                    });
                }
                moncmd::send(ctx, cmd).await
            }
        },
        MgrRoute::Status => {
            let mon = moncmd::send(ctx, json!({"prefix": "status"})).await?;
            if mon.retval != 0 {
                return Ok(mon);
            }
            let Some(addr) = active_mgr(ctx).await.ok().flatten() else {
                return Ok(mon);
            };
            match send_to_mgr(ctx, addr, json!({"prefix": "status"})).await {
                Ok(mgr) if mgr.retval == 0 => Ok(MonCommandReply {
                    outbuf: Blob(merge_status(
                        ctx.format.is_json(),
                        &mon.outbuf.0,
                        &mgr.outbuf.0,
                    )),
                    ..mon
                }),
                // The mgr is failing over: the mon's figures still answer.
                _ => Ok(mon),
            }
        }
    }
}

/// The mon's `status` with its data part replaced by the mgr's: the
/// `pgmap` and `progress_events` keys in JSON, the text from `  data:` on
/// in plain.
pub fn merge_status(json: bool, mon: &[u8], mgr: &[u8]) -> Vec<u8> {
    if json {
        let (Ok(mut m), Ok(g)) = (
            serde_json::from_slice::<Value>(mon),
            serde_json::from_slice::<Value>(mgr),
        ) else {
            return mon.to_vec();
        };
        m["pgmap"] = g["pgmap"].clone();
        m["progress_events"] = g["progress_events"].clone();
        let pretty = std::str::from_utf8(mon).is_ok_and(|s| s.contains("\n  "));
        let text = if pretty {
            serde_json::to_string_pretty(&m).unwrap_or_default()
        } else {
            m.to_string()
        };
        return format!("{text}\n").into_bytes();
    }
    let mon = String::from_utf8_lossy(mon);
    let head = match mon.find("  data:\n") {
        Some(i) => &mon[..i],
        None => &mon,
    };
    format!("{head}{}", String::from_utf8_lossy(mgr)).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn routes() {
        assert_eq!(
            route(&w("tell mgr hello world")),
            Some(Ok(MgrRoute::Tell(w("hello world"), None)))
        );
        assert!(matches!(route(&w("tell mgr")), Some(Err(_))));
        assert_eq!(
            route(&w("tell mgr crash post -i /tmp/meta")),
            Some(Ok(MgrRoute::Tell(
                w("crash post"),
                Some("/tmp/meta".into())
            )))
        );
        assert!(matches!(route(&w("tell mgr crash post -i")), Some(Err(_))));
        assert_eq!(
            route(&w("osd df")),
            Some(Ok(MgrRoute::MgrFirst(json!({"prefix": "osd df"}))))
        );
        assert_eq!(
            route(&w("pg dump pgs_brief")),
            Some(Ok(MgrRoute::MgrFirst(
                json!({"prefix": "pg dump", "dumpcontents": ["pgs_brief"]})
            )))
        );
        assert!(matches!(route(&w("pg dump x")), Some(Err(_))));
        assert_eq!(
            route(&w("mgr module enable hello --force")),
            Some(Ok(MgrRoute::Mon(
                json!({"prefix": "mgr module enable", "module": "hello", "force": true})
            )))
        );
        assert!(matches!(route(&w("mgr module disable")), Some(Err(_))));
        assert_eq!(route(&w("osd tree")), None);
        assert_eq!(route(&w("status")), Some(Ok(MgrRoute::Status)));
    }

    #[test]
    fn status_merge() {
        let mon = b"  cluster:\n    id: x\n \n  data:\n    pools:   0 pools, 0 pgs\n \n";
        let mgr = b"  data:\n    pools:   1 pools, 8 pgs\n \n  io:\n    client: ...\n \n";
        let out = String::from_utf8(merge_status(false, mon, mgr)).expect("utf8");
        assert_eq!(out, "  cluster:\n    id: x\n \n  data:\n    pools:   1 pools, 8 pgs\n \n  io:\n    client: ...\n \n");
        let mon = br#"{"fsid":"f","pgmap":{"num_pgs":0},"progress_events":{}}"#;
        let mgr = br#"{"pgmap":{"num_pgs":8},"progress_events":{"e":{}}}"#;
        let v: Value = serde_json::from_slice(&merge_status(true, mon, mgr)).expect("json");
        assert_eq!(v["pgmap"]["num_pgs"], 8);
        assert_eq!(v["fsid"], "f");
        assert!(v["progress_events"]["e"].is_object());
    }
}
