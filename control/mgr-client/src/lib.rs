//! kalmar-mgr-client: how a daemon (an OSD, the mon) reports to the active
//! mgr, as Ceph's `MgrClient`.
//!
//! The owner hands every MgrMap it receives to [`MgrClient::handle_mgrmap`].
//! The client connects to the active mgr, sends `MgrOpen`, waits for
//! `MgrConfigure` (report period and priority threshold), then sends a
//! `MgrReport` every period: counters declared once per session, then
//! their packed values. An OSD also hands its PG statistics to
//! [`MgrClient::send_pg_stats`]. When the active mgr changes (failover,
//! `mgr fail`) or its session breaks, the client opens a new session and
//! declares everything again. Nothing here ever blocks the owner: sends
//! that do not fit the messenger's queue are dropped (and declarations
//! taken back).
#![deny(clippy::unwrap_used)]

mod report;
mod session;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kalmar_common::perf::PerfCollection;
use kalmar_maps::MgrMap;
use kalmar_msgr::{EntityName, MsgrConfig};
use kalmar_proto::pgstats::OsdPgStats;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use report::{Pending, ReportBuilder};
use session::{run, Shared};

/// Settings of a MgrClient; every wait is bounded here.
#[derive(Debug, Clone)]
pub struct MgrClientConfig {
    /// `osd.0`, `mon.a`.
    pub name: EntityName,
    /// Metadata sent in `MgrOpen` (hostname, addresses, ...).
    pub metadata: BTreeMap<String, String>,
    /// Messenger settings of the session to the mgr.
    pub msgr: MsgrConfig,
    /// How long to wait for `MgrConfigure` after connecting before the
    /// session is dropped and opened again.
    pub configure_timeout: Duration,
    /// Pause before opening a new session after one ended.
    pub reconnect_delay: Duration,
}

impl MgrClientConfig {
    pub fn new(name: EntityName) -> Self {
        MgrClientConfig {
            name,
            metadata: BTreeMap::new(),
            msgr: MsgrConfig {
                // A mgr that died stays in the map until the mon notices;
                // keep the retry pace modest meanwhile.
                reconnect_backoff_max: Duration::from_secs(1),
                send_queue_max_messages: 64,
                ..MsgrConfig::default()
            },
            configure_timeout: Duration::from_secs(10),
            reconnect_delay: Duration::from_millis(500),
        }
    }
}

/// What the client is doing, for status output and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MgrClientStatus {
    /// Name of the active mgr the session is with (empty: none).
    pub mgr_name: String,
    pub mgr_gid: u64,
    /// `MgrConfigure` was received on the current session.
    pub configured: bool,
    pub stats_period_ms: u64,
    pub stats_threshold: u8,
    /// Sessions opened so far (grows with every failover/reconnect).
    pub sessions_opened: u64,
    pub reports_sent: u64,
    pub reports_dropped: u64,
    pub pg_stats_sent: u64,
}

/// A running MgrClient; dropping it stops the client (without `MgrClose`).
pub struct MgrClient {
    map_tx: watch::Sender<Option<MgrMap>>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl MgrClient {
    /// Starts the client task (needs a tokio runtime). It does nothing
    /// until a MgrMap names an active mgr.
    pub fn start(config: MgrClientConfig, perf: Arc<PerfCollection>) -> MgrClient {
        let (map_tx, map_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            status: Mutex::new(MgrClientStatus::default()),
            session: Mutex::new(None),
        });
        let task = tokio::spawn(run(config, perf, map_rx, shared.clone()));
        MgrClient {
            map_tx,
            shared,
            task,
        }
    }

    /// A new MgrMap from the mon (cheap; the session follows it).
    pub fn handle_mgrmap(&self, map: &MgrMap) {
        let newer = self
            .map_tx
            .borrow()
            .as_ref()
            .is_none_or(|m| m.epoch < map.epoch);
        if newer {
            self.map_tx.send_replace(Some(map.clone()));
        }
    }

    /// Sends an OSD's PG statistics on the current session. Returns false
    /// (and drops them) when there is no configured session or its queue
    /// is full: the next period's stats replace them anyway.
    pub fn send_pg_stats(&self, stats: &OsdPgStats) -> bool {
        let sent = session::send_now(&self.shared, stats);
        if sent {
            self.shared.status.lock().pg_stats_sent += 1;
        }
        sent
    }

    pub fn status(&self) -> MgrClientStatus {
        self.shared.status.lock().clone()
    }

    /// Tells the mgr the session ends (bounded by the messenger's
    /// keepalive interval) and stops.
    pub async fn close(self) {
        session::close(&self.shared).await;
        self.task.abort();
    }
}

impl Drop for MgrClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}
