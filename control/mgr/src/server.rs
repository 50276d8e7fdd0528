//! The DaemonServer: the sessions daemons open with the active mgr
//! (MgrOpen -> MgrConfigure, then MgrReport and PG stats), and commands
//! (`tell mgr`, `pg dump`, ...). Ingest is a map update under short
//! locks, on the messenger's task: it never waits for Python.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use kalmar_common::encoding::Blob;
use kalmar_maps::time::now_us;
use kalmar_mgr_py::{DaemonKey, PerfCounterType, ReportData};
use kalmar_msgr::{EntityType, Event, Incoming};
use kalmar_proto::mgr::{MgrClose, MgrConfigure, MgrOpen, MgrReport};
use kalmar_proto::mon::{MonCommand, MonCommandReply};
use kalmar_proto::pgstats::OsdPgStats;
use kalmar_proto::registry::*;
use kalmar_proto::Payload;
use tokio::sync::{mpsc, Semaphore};

use crate::daemon::MgrShared;
use crate::perf::*;

/// Serves the listener's events until the channel closes.
pub async fn serve(shared: Arc<MgrShared>, mut rx: mpsc::Receiver<Event>) {
    let mut sessions: HashMap<u64, DaemonKey> = HashMap::new();
    let commands = Arc::new(Semaphore::new(shared.opts.mgr_max_inflight_commands));
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Message(m) => handle(&shared, &mut sessions, &commands, m),
            Event::Reset(h) | Event::Closed(h, _) => {
                if let Some(key) = sessions.remove(&h.id()) {
                    tracing::debug!(daemon = %key, "daemon session ended");
                }
                shared.perf.set(L_SESSIONS, sessions.len() as u64);
            }
        }
    }
}

fn handle(
    shared: &Arc<MgrShared>,
    sessions: &mut HashMap<u64, DaemonKey>,
    commands: &Arc<Semaphore>,
    m: Incoming,
) {
    let sid = m.from.id();
    match m.msg.msg_type {
        MON_COMMAND => match MonCommand::from_message(&m.msg) {
            Ok(c) => spawn_command(shared.clone(), commands.clone(), m, c),
            Err(e) => m.from.close(&format!("malformed command: {e}")),
        },
        MGR_OPEN => {
            let Some(active) = shared.active() else {
                // A daemon with a stale MgrMap: it retries at the active one.
                m.from.close("this mgr is not active");
                return;
            };
            let open = match MgrOpen::from_message(&m.msg) {
                Ok(o) => o,
                Err(e) => return m.from.close(&format!("malformed MgrOpen: {e}")),
            };
            let key = match DaemonKey::parse(&open.daemon_name) {
                Some(k) if k.to_string() == m.peer.entity.to_string() => k,
                _ => {
                    tracing::warn!(peer = %m.peer.entity, name = %open.daemon_name, "MgrOpen for another daemon; refused");
                    return m.from.close("MgrOpen names another daemon");
                }
            };
            if let Err(e) = active.daemon_state.open_session(&key, open.metadata) {
                tracing::warn!(daemon = %key, "session refused: {e}");
                return m.from.close(&e.to_string());
            }
            if !open.daemon_status.is_empty() {
                let _ = active.daemon_state.set_status(&key, open.daemon_status);
            }
            let conf = MgrConfigure {
                stats_period_ms: shared.opts.mgr_stats_period.as_millis() as u64,
                stats_threshold: shared.opts.mgr_stats_threshold,
            };
            if let Err(e) = m.from.try_send(conf.to_message()) {
                tracing::warn!(daemon = %key, "MgrConfigure not sent: {e}");
                return m.from.close("cannot answer MgrOpen");
            }
            tracing::info!(daemon = %key, "daemon session opened");
            sessions.insert(sid, key);
            shared.perf.inc(L_OPENS, 1);
            shared.perf.set(L_SESSIONS, sessions.len() as u64);
        }
        MGR_REPORT => {
            let (Some(active), Some(key)) = (shared.active(), sessions.get(&sid)) else {
                // A report before MgrOpen (replayed after our restart, or
                // sent to a mgr that just lost the active role): the
                // daemon must open a new session.
                return m.from.close("report without an open session");
            };
            let report = match MgrReport::from_message(&m.msg) {
                Ok(r) => r,
                Err(e) => return m.from.close(&format!("malformed MgrReport: {e}")),
            };
            ingest(shared, &active, key, report, &m);
        }
        OSD_PG_STATS => {
            let Some(active) = shared.active() else {
                return;
            };
            match OsdPgStats::from_message(&m.msg) {
                Ok(r)
                    if m.peer.entity.kind == EntityType::Osd
                        && m.peer.entity.osd_id() == u32::try_from(r.osd_id).ok() =>
                {
                    active.pgmap.lock().apply(&r, now_us());
                    shared.perf.inc(L_PG_STATS, 1);
                }
                Ok(_) => {
                    tracing::warn!(peer = %m.peer.entity, "PG stats about another OSD; ignored")
                }
                Err(e) => m.from.close(&format!("malformed PG stats: {e}")),
            }
        }
        MGR_CLOSE => {
            if let Ok(c) = MgrClose::from_message(&m.msg) {
                tracing::info!(daemon = %c.daemon_name, "daemon closed its session");
            }
            sessions.remove(&sid);
            shared.perf.set(L_SESSIONS, sessions.len() as u64);
        }
        other => {
            tracing::warn!(peer = %m.peer.entity, msg_type = other, "unexpected message type; ignored");
        }
    }
}

fn ingest(
    shared: &MgrShared,
    active: &crate::active::Active,
    key: &DaemonKey,
    report: MgrReport,
    m: &Incoming,
) {
    if report.daemon_name != key.to_string() {
        return m.from.close("report names another daemon");
    }
    let declare: Vec<PerfCounterType> = report
        .declare_types
        .into_iter()
        .map(|d| PerfCounterType {
            path: d.path,
            description: d.description,
            nick: d.nick,
            type_bits: d.type_bits,
            priority: d.priority,
            unit: d.unit,
        })
        .collect();
    let Blob(packed) = report.packed;
    let data = ReportData {
        declare_types: &declare,
        undeclare_types: &report.undeclare_types,
        packed: &packed,
        timestamp: SystemTime::now(),
    };
    match active.daemon_state.ingest_report(key, &data) {
        Ok(()) => {
            shared.perf.inc(L_REPORTS, 1);
            shared.perf.inc(L_REPORT_BYTES, packed.len() as u64);
            if !report.daemon_status.is_empty() {
                let _ = active.daemon_state.set_status(key, report.daemon_status);
            }
        }
        Err(e) => {
            // Declarations and values disagree: start the session over so
            // the daemon declares everything again.
            tracing::warn!(daemon = %key, "report refused: {e}; closing the session");
            shared.perf.inc(L_REPORTS_REFUSED, 1);
            m.from.close(&format!("report refused: {e}"));
        }
    }
}

fn spawn_command(shared: Arc<MgrShared>, slots: Arc<Semaphore>, m: Incoming, c: MonCommand) {
    let reply_to = m.from.clone();
    let caller = m.peer.auth.clone();
    let Ok(permit) = slots.try_acquire_owned() else {
        let r = MonCommandReply {
            tid: c.tid,
            retval: -16,
            outs: "too many commands in flight (mgr_max_inflight_commands); retry".into(),
            outbuf: Blob::default(),
        };
        let _ = reply_to.try_send(r.to_message());
        return;
    };
    shared.perf.inc(L_COMMANDS, 1);
    tokio::spawn(async move {
        let r = crate::commands::run(&shared, &c.cmd, c.inbuf.0, caller.as_deref()).await;
        let reply = MonCommandReply {
            tid: c.tid,
            retval: r.retval,
            outs: r.outs,
            outbuf: Blob(r.outbuf),
        };
        if let Err(e) = reply_to.send(reply.to_message()).await {
            tracing::debug!("command reply not sent: {e}");
        }
        drop(permit);
    });
}

/// Whether the active side is ready (for the beacon's `available`).
pub fn is_ready(shared: &MgrShared) -> bool {
    shared
        .active()
        .is_some_and(|a| a.ready.load(Ordering::Acquire))
}
