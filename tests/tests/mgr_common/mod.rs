//! Helpers of the mgr tests: a cluster with short mgr periods and the
//! `livecheck` test plugin on the module path, and `tell mgr` from Rust.
#![allow(dead_code)]

pub mod apt;
pub mod listeners;
pub mod scrape;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use kalmar_msgr::auth::MsgrAuth;
use kalmar_msgr::{EntityName, EntityType, MsgrConfig};
use kalmar_proto::monc::MonClient;
use kalmar_tests::{wait_for, Cluster, ClusterOpts};
use serde_json::{json, Value};

/// Beacon grace of the test mon, in seconds.
pub const BEACON_GRACE_S: u64 = 3;
/// Beacon period of the test mgrs, in seconds.
pub const BEACON_PERIOD_S: u64 = 1;

pub fn plugin_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/plugins").to_string()
}

/// A cluster with `mgrs` mgrs, 1 s report/stats periods and the test
/// plugins on `mgr_module_path`.
pub fn opts(mgrs: u32) -> ClusterOpts {
    let mut o = ClusterOpts::default()
        .set("mgr_tick_period", &BEACON_PERIOD_S.to_string())
        .set("mon_mgr_beacon_grace", &BEACON_GRACE_S.to_string())
        .set("mgr_stats_period", "1")
        .set("mgr_digest_period", "1")
        .set("mgr_module_path", &plugin_dir())
        // The exporter on any free port; its URL is in `mgr services`.
        .set("mgr/prometheus/server_port", "0");
    o.mgrs = mgrs;
    o
}

/// `(active_name, active_addr, available, standbys)` from the MgrMap.
pub async fn mgr_map(c: &Cluster) -> anyhow::Result<Value> {
    c.mon_command(json!({"prefix": "mgr dump"})).await
}

pub async fn active(c: &Cluster) -> anyhow::Result<Option<(String, SocketAddr)>> {
    let m = mgr_map(c).await?;
    if m["available"] != json!(true) {
        return Ok(None);
    }
    let name = m["active_name"].as_str().unwrap_or_default().to_string();
    let addr = m["active_addr"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| anyhow!("no active_addr in {m}"))?;
    remember_auth(c, addr)?;
    Ok(Some((name, addr)))
}

/// The admin's authentication (and the mons to take tickets from) for
/// each mgr address [`active`] returned, so [`mgr_command`] can be called
/// with the address alone. Ports are unique among the clusters alive at
/// once; an address reused later is overwritten by the next `active`.
type MgrAuths = BTreeMap<SocketAddr, (Vec<SocketAddr>, MsgrAuth)>;

fn mgr_auths() -> &'static Mutex<MgrAuths> {
    static AUTHS: OnceLock<Mutex<MgrAuths>> = OnceLock::new();
    AUTHS.get_or_init(Default::default)
}

fn remember_auth(c: &Cluster, mgr: SocketAddr) -> anyhow::Result<()> {
    let auth = c.admin_auth()?;
    mgr_auths()
        .lock()
        .map_err(|_| anyhow!("poisoned"))?
        .insert(mgr, (c.mons.clone(), auth));
    Ok(())
}

/// Waits until `name` is the active, available mgr; returns its address.
pub async fn wait_active(c: &Cluster, name: &str, timeout: Duration) -> anyhow::Result<SocketAddr> {
    wait_for(
        &format!("mgr.{name} active and available"),
        timeout,
        || async {
            match active(c).await.ok().flatten() {
                Some((n, a)) if n == name => Some(a),
                _ => None,
            }
        },
    )
    .await
}

/// Sends a command dict to the mgr at `addr`; returns `(retval, outs, outbuf)`.
pub async fn mgr_command(addr: SocketAddr, cmd: Value) -> anyhow::Result<(i32, String, Vec<u8>)> {
    mgr_command_with_input(addr, cmd, Vec::new()).await
}

/// [`mgr_command`] with an input buffer (Ceph's `-i FILE`).
pub async fn mgr_command_with_input(
    addr: SocketAddr,
    cmd: Value,
    inbuf: Vec<u8>,
) -> anyhow::Result<(i32, String, Vec<u8>)> {
    let known = mgr_auths()
        .lock()
        .map_err(|_| anyhow!("poisoned"))?
        .get(&addr)
        .cloned();
    let (mons, auth) = known.unwrap_or_default();
    let keyed = auth
        .client
        .as_ref()
        .filter(|c| c.has_key())
        .map(|c| c.entity().to_string());
    let me: EntityName = match &keyed {
        Some(e) => e.parse().map_err(|e| anyhow!("{e:?}"))?,
        None => EntityName::new(EntityType::Client, format!("mgrtest{}", std::process::id())),
    };
    let cfg = MsgrConfig {
        reconnect_max_attempts: Some(3),
        auth,
        ..MsgrConfig::default()
    };
    if keyed.is_some() {
        // Tickets first, from a mon; the mgr checks them.
        let (m, _ev) =
            MonClient::connect_any(&mons, me.clone(), uuid::Uuid::nil(), cfg.clone()).await?;
        m.close().await;
    }
    let (c, _ev) = MonClient::connect(addr, me, uuid::Uuid::nil(), cfg).await?;
    let r = c
        .command_with_input(&cmd, inbuf, Duration::from_secs(30))
        .await;
    c.close().await;
    let r = r?;
    Ok((r.retval, r.outs, r.outbuf.0))
}

/// `tell mgr WORDS` with JSON output, parsed.
pub async fn tell(addr: SocketAddr, words: &str) -> anyhow::Result<Value> {
    let args: Vec<&str> = words.split_whitespace().collect();
    let (rv, outs, out) = mgr_command(
        addr,
        json!({"prefix": "tell", "args": args, "format": "json"}),
    )
    .await?;
    if rv != 0 {
        bail!("tell mgr {words}: {outs} (errno {rv})");
    }
    serde_json::from_slice(&out).with_context(|| {
        format!(
            "tell mgr {words}: not JSON: {}",
            String::from_utf8_lossy(&out)
        )
    })
}

/// Enables a module and waits until the active mgr runs it.
pub async fn enable_module(c: &Cluster, addr: SocketAddr, module: &str) -> anyhow::Result<()> {
    c.mon_command(json!({"prefix": "mgr module enable", "module": module}))
        .await?;
    wait_for(
        &format!("module {module} running"),
        Duration::from_secs(30),
        || async {
            let (rv, _, out) =
                mgr_command(addr, json!({"prefix": "mgr module ls", "format": "json"}))
                    .await
                    .ok()?;
            let v: Value = serde_json::from_slice(&out).ok()?;
            let enabled = v["enabled_modules"].as_array()?.iter().any(|m| m == module);
            let failed = v["failed_modules"]
                .as_array()?
                .iter()
                .any(|m| m["name"] == module);
            (rv == 0 && enabled && !failed).then_some(())
        },
    )
    .await
}

/// Sum of `osd.op_w` over the OSDs in a `livecheck report`.
pub fn op_w_sum(report: &Value) -> u64 {
    report["op_w"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

/// Writes `n` objects `PREFIXi` of `size_bytes` each into `pool`.
pub async fn write_objects(
    c: &Cluster,
    pool: &str,
    prefix: &str,
    n: u64,
    size_bytes: usize,
) -> anyhow::Result<()> {
    let rados = c.client().await?;
    let io = wait_for(
        "the pool in the client's map",
        Duration::from_secs(30),
        || async { rados.ioctx(pool).ok() },
    )
    .await?;
    for i in 0..n {
        io.write_full(&format!("{prefix}{i}"), Bytes::from(vec![7u8; size_bytes]))
            .await?;
    }
    Ok(())
}

/// `tell mgr WORDS` (plain output) with an optional input buffer; an
/// error carries the module's message (`outs`).
pub async fn tell_text(addr: SocketAddr, words: &str, inbuf: &[u8]) -> anyhow::Result<String> {
    let args: Vec<&str> = words.split_whitespace().collect();
    let (rv, outs, out) = mgr_command_with_input(
        addr,
        json!({"prefix": "tell", "args": args, "format": "plain"}),
        inbuf.to_vec(),
    )
    .await?;
    if rv != 0 {
        bail!("tell mgr {words}: {outs} (errno {rv})");
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}
