//! Commands a PG's primary OSD answers: `pg PGID query` and `pg
//! scrub|deep-scrub|repair PGID`.
//!
//! They travel straight to the primary as PG ops of the client protocol,
//! not through the mon: the client library already finds a PG's primary
//! in the newest map and resends when it moves or answers "not me", so
//! the mon needs no forwarding path of its own. (Ceph's `pg query` goes to
//! the OSD too; its `pg scrub` asks the mon, which only looks the primary
//! up and forwards.)

use anyhow::anyhow;
use kalmar_client::ClientError;
use kalmar_maps::PgId;
use kalmar_proto::client::OsdOp;
use serde_json::{json, Value};

use crate::args::{Ctx, Format};
use crate::moncmd::{errno_name, exit_code};

/// A parsed PG command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgCmd {
    Query(PgId),
    Scrub { pg: PgId, deep: bool, repair: bool },
}

impl PgCmd {
    fn pg(&self) -> PgId {
        match self {
            PgCmd::Query(pg) | PgCmd::Scrub { pg, .. } => *pg,
        }
    }
}

fn parse_pgid(s: &str) -> Result<PgId, String> {
    s.parse()
        .map_err(|_| format!("pgid '{s}' has an invalid format (expected POOL.SEED, e.g. 1.1f)"))
}

/// Recognises the PG commands; `None` for every other command line.
pub fn route(words: &[String]) -> Option<Result<PgCmd, String>> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    Some(match w.as_slice() {
        ["pg", op @ ("scrub" | "deep-scrub" | "repair"), rest @ ..] => match rest {
            [pgid] => parse_pgid(pgid).map(|pg| PgCmd::Scrub {
                pg,
                deep: *op != "scrub",
                repair: *op == "repair",
            }),
            _ => Err(format!("usage: kalmar pg {op} PGID")),
        },
        ["pg", pgid, "query", rest @ ..] if !matches!(*pgid, "map" | "stat" | "dump") => {
            if !rest.is_empty() {
                return Some(Err("usage: kalmar pg PGID query".into()));
            }
            parse_pgid(pgid).map(PgCmd::Query)
        }
        _ => return None,
    })
}

fn print_json(v: &Value, pretty: bool) {
    use std::io::Write;
    let s = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    };
    // A closed pipe (`| head`) is not an error of the command.
    let _ = writeln!(std::io::stdout().lock(), "{}", s.unwrap_or_default());
}

/// Runs a PG command; returns the exit code (the errno on failure, as
/// Ceph's CLI).
pub async fn run(ctx: &Ctx, cmd: PgCmd) -> anyhow::Result<i32> {
    let rados = crate::rados::connect(&ctx.mon_addrs()?, ctx.timeout, ctx.client_auth()?)
        .await
        .map_err(|e| anyhow!("connecting to the cluster: {e}"))?;
    let pg = cmd.pg();
    let op = match &cmd {
        PgCmd::Query(_) => OsdOp::PgQuery,
        PgCmd::Scrub { deep, repair, .. } => OsdOp::PgScrub {
            deep: *deep,
            repair: *repair,
        },
    };
    let r = rados.pg_command(pg, op.clone()).await;
    rados.shutdown().await;
    let out = match r {
        Ok(v) => v,
        Err(e) => return Ok(report(pg, &e)),
    };
    match cmd {
        PgCmd::Query(_) => print_json(&out, ctx.format != Format::Json),
        PgCmd::Scrub { .. } => {
            let osd = out["osd"].as_i64().unwrap_or(-1);
            let what = op.describe();
            // Ceph's status line (on stderr, as the mon's `outs`).
            eprintln!("instructing pg {pg} on osd.{osd} to {what}");
            if ctx.format.is_json() {
                print_json(
                    &json!({"pgid": pg.to_string(), "osd": osd, "command": what}),
                    ctx.format == Format::JsonPretty,
                );
            }
        }
    }
    Ok(0)
}

/// Prints a failure the way Ceph's CLI does; returns the exit code.
pub fn report(pg: PgId, e: &ClientError) -> i32 {
    let errno = e.errno();
    match e {
        ClientError::NoSuchPg(_) | ClientError::NoSuchPool(_) => {
            eprintln!("Error {}: pg {pg} does not exist", errno_name(errno))
        }
        other => eprintln!("Error {}: {other}", errno_name(errno)),
    }
    exit_code(-errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn grammar() {
        let pg = PgId::new(1, 0x1f);
        assert_eq!(route(&w("pg 1.1f query")), Some(Ok(PgCmd::Query(pg))));
        assert_eq!(
            route(&w("pg deep-scrub 1.1f")),
            Some(Ok(PgCmd::Scrub {
                pg,
                deep: true,
                repair: false
            }))
        );
        assert_eq!(
            route(&w("pg repair 1.1f")),
            Some(Ok(PgCmd::Scrub {
                pg,
                deep: true,
                repair: true
            }))
        );
        assert!(matches!(route(&w("pg scrub")), Some(Err(_))));
        assert!(matches!(route(&w("pg scrub x.y")), Some(Err(_))));
        assert!(matches!(route(&w("pg 1.0 query extra")), Some(Err(_))));
        assert_eq!(route(&w("pg map 1.0")), None);
        assert_eq!(route(&w("pg dump")), None);
        assert_eq!(route(&w("osd tree")), None);
    }
}
