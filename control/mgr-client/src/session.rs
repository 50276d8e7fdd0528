//! The client task: follows the MgrMap, keeps one session with the active
//! mgr (open -> configure -> periodic reports), and starts over when the
//! active mgr changes or the session breaks.

use std::net::SocketAddr;
use std::sync::Arc;

use kalmar_common::perf::PerfCollection;
use kalmar_maps::MgrMap;
use kalmar_msgr::{event_channel, Connection, Event, SessionHandle};
use kalmar_proto::mgr::{MgrClose, MgrConfigure, MgrOpen};
use kalmar_proto::registry::MGR_CONFIGURE;
use kalmar_proto::Payload;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use crate::report::ReportBuilder;
use crate::{MgrClientConfig, MgrClientStatus};

pub(crate) struct Shared {
    pub status: Mutex<MgrClientStatus>,
    /// The current configured session and this daemon's name, for sends
    /// from the owner (PG stats) and `close`.
    pub session: Mutex<Option<(SessionHandle, String)>>,
}

/// The active mgr a session should be with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    gid: u64,
    name: String,
    addr: SocketAddr,
}

fn target_of(map: Option<&MgrMap>) -> Option<Target> {
    let m = map?;
    (m.active_gid != 0 && !m.active_addr.is_blank()).then(|| Target {
        gid: m.active_gid,
        name: m.active_name.clone(),
        addr: m.active_addr.addr,
    })
}

struct Session {
    conn: Connection,
    events: mpsc::Receiver<Event>,
    builder: ReportBuilder,
    configured: Option<MgrConfigure>,
    opened_at: Instant,
    next_report: Instant,
}

pub(crate) fn send_now<T: Payload>(shared: &Shared, payload: &T) -> bool {
    let handle = shared.session.lock().as_ref().map(|(h, _)| h.clone());
    handle.is_some_and(|h| h.try_send(payload.to_message()).is_ok())
}

pub(crate) async fn close(shared: &Shared) {
    let s = shared.session.lock().take();
    if let Some((h, name)) = s {
        let _ = h.try_send(MgrClose { daemon_name: name }.to_message());
        // Give the writer a moment to put it on the wire.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        h.close("daemon shutting down");
    }
}

fn open_message(cfg: &MgrClientConfig) -> MgrOpen {
    MgrOpen {
        daemon_name: cfg.name.to_string(),
        service_name: cfg.name.kind.as_str().to_string(),
        metadata: cfg.metadata.clone(),
        daemon_status: Default::default(),
    }
}

fn open(cfg: &MgrClientConfig, target: &Target, shared: &Shared) -> Session {
    let (tx, rx) = event_channel(&cfg.msgr);
    let conn = Connection::start(
        target.addr,
        cfg.name.clone(),
        uuid::Uuid::nil(),
        cfg.msgr.clone(),
        tx,
    );
    // Queued until the connection is up.
    if let Err(e) = conn.try_send(open_message(cfg).to_message()) {
        tracing::warn!("MgrOpen not queued: {e}");
    }
    {
        let mut st = shared.status.lock();
        st.mgr_name = target.name.clone();
        st.mgr_gid = target.gid;
        st.configured = false;
        st.sessions_opened += 1;
    }
    tracing::info!(mgr = %target.name, addr = %target.addr, "opening a session with the active mgr");
    let now = Instant::now();
    Session {
        conn,
        events: rx,
        builder: ReportBuilder::new(),
        configured: None,
        opened_at: now,
        next_report: now,
    }
}

fn drop_session(sess: &mut Option<Session>, shared: &Shared) {
    if let Some(s) = sess.take() {
        s.conn.handle().close("the active mgr changed");
    }
    *shared.session.lock() = None;
    let mut st = shared.status.lock();
    st.configured = false;
    st.mgr_name.clear();
    st.mgr_gid = 0;
}

fn send_report(cfg: &MgrClientConfig, perf: &PerfCollection, s: &mut Session, shared: &Shared) {
    let Some(conf) = &s.configured else { return };
    let name = cfg.name.to_string();
    let (report, pending) =
        s.builder
            .build(&name, cfg.name.kind.as_str(), perf, conf.stats_threshold);
    match s.conn.try_send(report.to_message()) {
        Ok(_) => shared.status.lock().reports_sent += 1,
        Err(e) => {
            tracing::debug!("report not sent: {e}");
            s.builder.rollback(pending);
            shared.status.lock().reports_dropped += 1;
        }
    }
}

pub(crate) async fn run(
    cfg: MgrClientConfig,
    perf: Arc<PerfCollection>,
    mut map_rx: watch::Receiver<Option<MgrMap>>,
    shared: Arc<Shared>,
) {
    let mut target: Option<Target> = None;
    let mut sess: Option<Session> = None;
    let mut retry_at = Instant::now();
    loop {
        let wanted = target_of(map_rx.borrow_and_update().as_ref());
        if wanted != target {
            drop_session(&mut sess, &shared);
            target = wanted;
            retry_at = Instant::now();
        }
        if sess.is_none() && Instant::now() >= retry_at {
            if let Some(t) = &target {
                sess = Some(open(&cfg, t, &shared));
            }
        }
        // The next thing due: a report, the configure deadline, a retry.
        let deadline = match &sess {
            Some(s) if s.configured.is_some() => s.next_report,
            Some(s) => s.opened_at + cfg.configure_timeout,
            None if target.is_some() => retry_at,
            None => Instant::now() + std::time::Duration::from_secs(3600),
        };
        tokio::select! {
            changed = map_rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            ev = async {
                match sess.as_mut() {
                    Some(s) => s.events.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                let Some(s) = sess.as_mut() else { continue };
                match ev {
                    Some(Event::Message(m)) if m.msg.msg_type == MGR_CONFIGURE => {
                        match MgrConfigure::from_message(&m.msg) {
                            Ok(c) => {
                                let period = c.stats_period_ms.max(100);
                                tracing::info!(period_ms = period, threshold = c.stats_threshold, "configured by the mgr");
                                {
                                    let mut st = shared.status.lock();
                                    st.configured = true;
                                    st.stats_period_ms = period;
                                    st.stats_threshold = c.stats_threshold;
                                }
                                s.configured = Some(MgrConfigure { stats_period_ms: period, ..c });
                                s.next_report = Instant::now();
                                *shared.session.lock() = Some((s.conn.handle(), cfg.name.to_string()));
                            }
                            Err(e) => tracing::warn!("bad MgrConfigure: {e}"),
                        }
                    }
                    Some(Event::Message(m)) => {
                        tracing::debug!(msg_type = m.msg.msg_type, "unexpected message from the mgr; ignored");
                    }
                    Some(Event::Reset(_)) => {
                        // The mgr restarted at the same address: it knows
                        // nothing of this session. Open it again.
                        tracing::info!("the mgr lost our session; opening again");
                        drop_session(&mut sess, &shared);
                        retry_at = Instant::now();
                    }
                    other => {
                        let reason = match other {
                            Some(Event::Closed(_, r)) => r,
                            _ => "event stream ended".to_string(),
                        };
                        tracing::info!("mgr session ended: {reason}; retrying");
                        drop_session(&mut sess, &shared);
                        retry_at = Instant::now() + cfg.reconnect_delay;
                    }
                }
            }
            _ = sleep_until(deadline) => {
                match sess.as_mut() {
                    Some(s) if s.configured.is_some() => {
                        send_report(&cfg, &perf, s, &shared);
                        let period = s.configured.as_ref().map_or(5_000, |c| c.stats_period_ms);
                        s.next_report = Instant::now() + std::time::Duration::from_millis(period);
                    }
                    Some(_) => {
                        tracing::info!("no MgrConfigure within {:?}; reopening", cfg.configure_timeout);
                        drop_session(&mut sess, &shared);
                        retry_at = Instant::now() + cfg.reconnect_delay;
                    }
                    None => {}
                }
            }
        }
    }
}
