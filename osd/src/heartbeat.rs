//! Heartbeats on their own port: every `osd_heartbeat_interval` this OSD
//! pings the OSDs it shares PGs with (plus neighbours by id, so failures
//! are seen in a cluster without pools); a peer silent for longer than
//! `osd_heartbeat_grace` is reported to the mon (again on every tick while
//! it stays silent), and the report is taken back when it answers again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalmar_maps::{Epoch, OsdId, OsdMap};
use kalmar_msgr::{Event, Incoming};
use kalmar_proto::mon::OsdFailure;
use kalmar_proto::osd::OsdPing;
use kalmar_proto::registry::OSD_PING;
use kalmar_proto::Payload;
use parking_lot::Mutex;

use crate::peers::Peers;
use crate::perf::L_HEARTBEAT_TO_PEERS;
use crate::service::{reply, Service};
use tokio::sync::mpsc;

/// The OSDs to ping: up members of this OSD's PGs, topped up with the next
/// up OSDs by id (wrapping) to at least `min_peers`.
pub fn choose_peers(
    map: &OsdMap,
    whoami: OsdId,
    pg_members: &BTreeSet<OsdId>,
    min_peers: usize,
) -> BTreeSet<OsdId> {
    let mut out: BTreeSet<OsdId> = pg_members
        .iter()
        .copied()
        .filter(|&o| o != whoami && map.is_up(o))
        .collect();
    let n = map.max_osd();
    if n > 0 {
        for step in 1..n {
            if out.len() >= min_peers {
                break;
            }
            let o = (whoami + step).rem_euclid(n);
            if o != whoami && map.is_up(o) {
                out.insert(o);
            }
        }
    }
    out
}

/// How long a peer has been silent, if longer than the grace.
pub fn silent_for(last_heard: Instant, now: Instant, grace: Duration) -> Option<Duration> {
    let d = now.saturating_duration_since(last_heard);
    (d > grace).then_some(d)
}

#[derive(Debug, Clone, Copy)]
struct PeerHb {
    /// The incarnation pinged (a restart starts afresh).
    up_from: Epoch,
    /// When we last heard from it, or started pinging it.
    last_heard: Instant,
    reported: bool,
}

pub struct Heartbeat {
    svc: Arc<Service>,
    peers: Peers<mpsc::Sender<kalmar_msgr::Event>>,
    state: Mutex<BTreeMap<OsdId, PeerHb>>,
}

impl Heartbeat {
    pub fn new(svc: Arc<Service>, peers: Peers<mpsc::Sender<kalmar_msgr::Event>>) -> Self {
        Heartbeat {
            svc,
            peers,
            state: Mutex::new(BTreeMap::new()),
        }
    }

    /// The peers to ping under a new map. Reports against peers that left
    /// or restarted are taken back.
    pub async fn set_peers(&self, map: &OsdMap, want: &BTreeSet<OsdId>) {
        let now = kalmar_common::clock::now();
        let mut retract = Vec::new();
        {
            let mut st = self.state.lock();
            st.retain(|osd, p| {
                let keep = want.contains(osd)
                    && map.osd(*osd).is_some_and(|s| s.info.up_from == p.up_from);
                if !keep && p.reported && map.is_up(*osd) {
                    retract.push(*osd);
                }
                keep
            });
            for &osd in want {
                let up_from = map.osd(osd).map_or(0, |s| s.info.up_from);
                st.entry(osd).or_insert(PeerHb {
                    up_from,
                    last_heard: now,
                    reported: false,
                });
            }
        }
        self.peers.on_map(map, Some(&|o| want.contains(&o)));
        self.svc.perf.set(L_HEARTBEAT_TO_PEERS, want.len() as u64);
        for osd in retract {
            self.report(map, osd, Duration::ZERO, false).await;
        }
    }

    pub fn peer_ids(&self) -> Vec<OsdId> {
        self.state.lock().keys().copied().collect()
    }

    /// A message on the heartbeat port or an outbound heartbeat session.
    pub async fn on_event(&self, ev: Event) {
        let Event::Message(Incoming { msg, from, peer }) = ev else {
            return;
        };
        if msg.msg_type != OSD_PING {
            tracing::warn!(peer = %peer.entity, msg_type = msg.msg_type, "unexpected message on the heartbeat port");
            from.close("unexpected message on the heartbeat port");
            return;
        }
        let ping = match OsdPing::from_message(&msg) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(peer = %peer.entity, "bad ping: {e}");
                from.close("malformed ping");
                return;
            }
        };
        if !ping.is_reply {
            let r = OsdPing {
                from: self.svc.whoami,
                map_epoch: self.svc.epoch(),
                stamp_us: ping.stamp_us,
                is_reply: true,
            };
            reply(&from, r.to_message());
            return;
        }
        let was_reported = {
            let mut st = self.state.lock();
            match st.get_mut(&ping.from) {
                Some(p) => {
                    p.last_heard = kalmar_common::clock::now();
                    std::mem::replace(&mut p.reported, false)
                }
                None => false,
            }
        };
        if was_reported {
            tracing::info!(
                osd = ping.from,
                "peer answers heartbeats again; failure report taken back"
            );
            let map = self.svc.map();
            self.report(&map, ping.from, Duration::ZERO, false).await;
        }
    }

    /// Pings every peer and reports those silent beyond the grace.
    pub async fn tick(&self) {
        let map = self.svc.map();
        let now = kalmar_common::clock::now();
        let grace = self.svc.opts.osd_heartbeat_grace;
        let ping = OsdPing {
            from: self.svc.whoami,
            map_epoch: map.epoch,
            stamp_us: kalmar_maps::time::now_us(),
            is_reply: false,
        }
        .to_message();
        let mut failed = Vec::new();
        {
            let mut st = self.state.lock();
            for (&osd, p) in st.iter_mut() {
                if let Err(e) = self.peers.try_send(&map, osd, ping.clone()) {
                    tracing::debug!(osd, "ping not sent: {e}");
                }
                if let Some(d) = silent_for(p.last_heard, now, grace) {
                    p.reported = true;
                    failed.push((osd, d));
                }
            }
        }
        for (osd, d) in failed {
            tracing::warn!(
                osd,
                silent_ms = d.as_millis() as u64,
                "no heartbeat reply; reporting to the mon"
            );
            self.report(&map, osd, d, true).await;
        }
    }

    async fn report(&self, map: &OsdMap, target: OsdId, failed_for: Duration, is_failed: bool) {
        let f = OsdFailure {
            reporter: self.svc.whoami,
            target,
            target_addr: map.osd(target).map(|s| s.addrs.public).unwrap_or_default(),
            failed_for_ms: failed_for.as_millis() as u64,
            epoch: map.epoch,
            is_failed,
        };
        if let Err(e) = self.svc.mon.send(&f).await {
            tracing::info!("failure report not sent: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_maps::osd::{OsdState, WEIGHT_IN};

    fn map_with(up: &[bool]) -> OsdMap {
        let mut m = OsdMap::new(uuid::Uuid::nil(), 1);
        m.set_max_osd(up.len() as i32);
        for (i, &u) in up.iter().enumerate() {
            if let Some(s) = m.osd_mut(i as i32) {
                s.state = OsdState(OsdState::EXISTS | if u { OsdState::UP } else { 0 });
                s.weight = WEIGHT_IN;
            }
        }
        m
    }

    #[test]
    fn peers_are_pg_members_then_neighbours() {
        let m = map_with(&[true, true, false, true, true]);
        let members: BTreeSet<OsdId> = [0, 2, 3].into();
        // Members that are up (2 is down), self excluded.
        assert_eq!(choose_peers(&m, 0, &members, 0), [3].into());
        // Topped up with the next up ids after 0: 1 (2 is down), 3.
        assert_eq!(choose_peers(&m, 0, &members, 2), [1, 3].into());
        // Wraps around.
        assert_eq!(choose_peers(&m, 4, &BTreeSet::new(), 2), [0, 1].into());
        assert_eq!(choose_peers(&m, 4, &BTreeSet::new(), 10), [0, 1, 3].into());
        assert!(choose_peers(&map_with(&[]), 0, &BTreeSet::new(), 3).is_empty());
    }

    #[test]
    fn silence_beyond_grace() {
        let t0 = kalmar_common::clock::now();
        let g = Duration::from_secs(3);
        assert_eq!(silent_for(t0, t0 + Duration::from_secs(2), g), None);
        assert_eq!(
            silent_for(t0, t0 + Duration::from_secs(4), g),
            Some(Duration::from_secs(4))
        );
        assert_eq!(silent_for(t0 + Duration::from_secs(1), t0, g), None);
    }
}
