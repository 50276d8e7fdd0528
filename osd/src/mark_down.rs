//! A clean stop tells the mon first (Ceph's `OSD::prepare_to_stop`): the
//! OSD asks to be marked down and waits, at most
//! `osd_mon_shutdown_timeout`, for the mon's ack, so clients and peers
//! move on at once instead of after the heartbeat grace.

use std::time::Duration;

use kalmar_maps::{OsdAddrs, OsdMap};
use kalmar_proto::mon::OsdMarkMeDown;
use kalmar_proto::monc::MonEvent;
use kalmar_proto::registry::OSD_MARK_ME_DOWN;
use kalmar_proto::Payload;
use tokio::sync::mpsc;

use crate::service::Service;

/// How the wait for the mon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `osd_mon_shutdown_timeout` is 0.
    Skipped,
    /// The map does not show this instance up: nothing to ask.
    NotUp,
    /// The mon acked (it marked this OSD down, or knows it is not up).
    Acked,
    /// A map from the mon shows this instance down (the ack may be lost).
    SeenDown,
    /// No session to the mon now: waiting would only delay the stop.
    NoMon,
    /// No answer within the timeout, or the mon session ended.
    NoAnswer,
}

/// Whether `map` shows osd `id` up with `addrs` (this instance).
fn up_here(map: &OsdMap, id: i32, addrs: &OsdAddrs) -> bool {
    map.osd(id).is_some_and(|s| s.is_up() && &s.addrs == addrs)
}

/// Whether `msg` is the mon's ack of `req`.
pub fn is_ack(req: &OsdMarkMeDown, msg: &kalmar_msgr::Message) -> bool {
    msg.msg_type == OSD_MARK_ME_DOWN
        && OsdMarkMeDown::from_message(msg).is_ok_and(|a| {
            !a.request_ack && a.target_osd == req.target_osd && a.target_addrs == req.target_addrs
        })
}

/// Asks the mon to mark this OSD down and waits for its answer; the other
/// mon events that arrive meanwhile are dropped (the OSD is stopping).
pub async fn mark_me_down(
    svc: &Service,
    addrs: OsdAddrs,
    events: &mut mpsc::Receiver<MonEvent>,
) -> Outcome {
    let timeout: Duration = svc.opts.osd_mon_shutdown_timeout;
    if timeout.is_zero() {
        return Outcome::Skipped;
    }
    let map = svc.map();
    if !up_here(&map, svc.whoami, &addrs) {
        return Outcome::NotUp;
    }
    let req = OsdMarkMeDown {
        fsid: svc.fsid,
        target_osd: svc.whoami,
        target_addrs: addrs,
        epoch: map.epoch,
        request_ack: true,
    };
    if !svc.mon.is_connected() {
        return Outcome::NoMon;
    }
    if let Err(e) = svc.mon.send(&req).await {
        tracing::info!("cannot ask the mon to mark this osd down: {e}");
        return Outcome::NoMon;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut map = map;
    loop {
        let ev = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) | Err(_) => return Outcome::NoAnswer,
        };
        match ev {
            MonEvent::Other(m) if is_ack(&req, &m.msg) => return Outcome::Acked,
            MonEvent::OsdMap(msg) => {
                if let Ok(Some(next)) = msg.advance(Some(&map)) {
                    if !up_here(&next, svc.whoami, &addrs) {
                        return Outcome::SeenDown;
                    }
                    map = std::sync::Arc::new(next);
                }
            }
            MonEvent::Reset => {
                // The mon restarted and lost the request: ask again.
                if let Err(e) = svc.mon.send(&req).await {
                    tracing::info!("cannot ask the mon again: {e}");
                }
            }
            MonEvent::Closed(_) => return Outcome::NoAnswer,
            MonEvent::Other(_) | MonEvent::MgrMap(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_ack_for_this_instance_counts() {
        let addrs = OsdAddrs::all("127.0.0.1:6801/3".parse().expect("addr"));
        let req = OsdMarkMeDown {
            target_osd: 1,
            target_addrs: addrs,
            epoch: 9,
            request_ack: true,
            ..Default::default()
        };
        assert!(is_ack(&req, &req.ack().to_message()));
        assert!(!is_ack(&req, &req.to_message()), "a request is no ack");
        let other = OsdMarkMeDown {
            target_osd: 2,
            ..req.ack()
        };
        assert!(!is_ack(&req, &other.to_message()));
        let older = OsdMarkMeDown {
            target_addrs: OsdAddrs::all("127.0.0.1:6901/2".parse().expect("addr")),
            ..req.ack()
        };
        assert!(!is_ack(&req, &older.to_message()), "another instance's ack");
    }
}
