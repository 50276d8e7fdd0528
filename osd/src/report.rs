//! Periodic reports to the mon (and the active mgr): PG and OSD statistics (`pg stat`, `pg
//! dump`, the `status` pgmap) and the liveness beacon; the space gauges of
//! the `osd` perf logger are refreshed at the same time.

use std::time::Duration;

use kalmar_maps::Epoch;
use kalmar_proto::mon::OsdBeacon;
use kalmar_proto::pgstats::{OsdPgStats, OsdStatEntry, PgStatEntry};
use tokio::sync::oneshot;

use crate::perf::*;
use crate::pg::PgEvent;
use crate::service::Service;

/// How long PGs get to answer a stats query.
const STATS_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The stats of the PGs this OSD is primary for.
pub async fn collect(svc: &Service) -> Vec<PgStatEntry> {
    let handles: Vec<_> = svc.pgs.read().values().cloned().collect();
    let mut waits = Vec::with_capacity(handles.len());
    for h in handles {
        let (tx, rx) = oneshot::channel();
        if h.send(PgEvent::Stats(tx)) {
            waits.push(rx);
        }
    }
    let deadline = tokio::time::Instant::now() + STATS_QUERY_TIMEOUT;
    let mut out = Vec::new();
    for rx in waits {
        if let Ok(Ok(Some(s))) = tokio::time::timeout_at(deadline, rx).await {
            out.push(s);
        }
    }
    out.sort_by_key(|s| s.pgid);
    out
}

/// Sends PG stats and the OSD's usage; returns the primaries' oldest
/// `last_epoch_clean` (for the beacon) and the number of primaries.
pub async fn send_stats(
    svc: &Service,
    hb_peers: Vec<i32>,
    mgr: Option<&kalmar_mgr_client::MgrClient>,
) -> (Epoch, usize) {
    let pgs = collect(svc).await;
    let epoch = svc.epoch();
    let lec = pgs
        .iter()
        .map(|p| p.last_epoch_clean)
        .min()
        .unwrap_or(epoch);
    let primaries = pgs.len();
    let (kb, kb_used, kb_avail) = match svc.store.statfs() {
        Ok(s) => {
            let used = s.settled_used_bytes();
            svc.perf.set(L_STAT_BYTES, s.total_bytes);
            if let Some(l) = loadavg_x100() {
                svc.perf.set(L_LOADAVG, l);
            }
            svc.perf.set(L_STAT_BYTES_USED, used);
            svc.perf
                .set(L_STAT_BYTES_AVAIL, s.settled_available_bytes());
            (
                s.total_bytes / 1024,
                used / 1024,
                s.settled_available_bytes() / 1024,
            )
        }
        Err(e) => {
            tracing::warn!("statfs failed: {e}");
            (0, 0, 0)
        }
    };
    let commit_latency_ms = {
        let p = svc.store.perf_counters();
        p.index_of("commit_lat")
            .map(|i| p.get(i))
            .map_or(0, |v| v.value.checked_div(v.count).unwrap_or(0) / 1_000_000)
    };
    let report = OsdPgStats {
        osd_id: svc.whoami,
        epoch,
        osd_stat: OsdStatEntry {
            osd: svc.whoami,
            num_pgs: svc.pgs.read().len() as u32,
            kb,
            kb_used,
            kb_avail,
            hb_peers,
            commit_latency_ms,
            apply_latency_ms: commit_latency_ms,
        },
        pgs,
    };
    // The mgr (when one is active) serves `pg dump`, `df`, ...; the mon
    // keeps its copy for when none is.
    if let Some(mgr) = mgr {
        mgr.send_pg_stats(&report);
    }
    if let Err(e) = svc.mon.send(&report).await {
        tracing::debug!("pg stats not sent: {e}");
    }
    (lec, primaries)
}

/// The liveness beacon.
pub async fn send_beacon(svc: &Service, last_epoch_clean: Epoch) {
    let pgs = collect(svc).await.into_iter().map(|s| s.pgid).collect();
    let b = OsdBeacon {
        osd_id: svc.whoami,
        epoch: svc.epoch(),
        pgs,
        last_epoch_clean,
    };
    if let Err(e) = svc.mon.send(&b).await {
        tracing::debug!("beacon not sent: {e}");
    }
}
