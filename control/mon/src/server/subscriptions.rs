//! Subscriptions: what each session asked for (osdmap, mgrmap) and the
//! messages that bring it up to date, sent without blocking the mon's task.

use std::collections::BTreeMap;

use kalmar_common::encoding::Blob;
use kalmar_maps::Epoch;
use kalmar_msgr::SessionHandle;
use kalmar_proto::mon::*;
use kalmar_proto::Payload;

use super::Server;
use crate::perf::*;
use crate::persist;
use crate::store::StoreError;

impl Server {
    pub(super) async fn subscribe(&mut self, from: &SessionHandle, s: MonSubscribe) {
        let sub = self.subs.entry(from.id()).or_default();
        if sub.handle.is_none() {
            self.perf.mon.inc(MON_SESSION_ADD, 1);
        }
        sub.handle = Some(from.clone());
        for item in s.items {
            match item.what.as_str() {
                "osdmap" => sub.osdmap = Some(item),
                "mgrmap" => sub.mgrmap = Some(item),
                other => tracing::warn!(what = other, "unknown subscription"),
            }
        }
        self.perf.mon.set(MON_NUM_SESSIONS, self.subs.len() as u64);
        self.publish_to(from.id()).await;
    }

    /// The osdmap message bringing a subscriber that wants `start` up to
    /// date: incrementals when they are held and few enough, else the
    /// newest full map.
    fn osdmap_message(&mut self, start: Epoch) -> Result<OsdMapMsg, StoreError> {
        let map = self.st.osd.map();
        let last = map.epoch;
        let mut msg = OsdMapMsg {
            fsid: map.fsid,
            incrementals: BTreeMap::new(),
            maps: BTreeMap::new(),
            oldest: self.osd_first,
            newest: last,
        };
        let inc_from = self.osd_first.max(2);
        let too_far = last.saturating_sub(start) >= self.st.opts.osd_map_message_max;
        if start == 0 || start < inc_from || too_far {
            msg.maps.insert(last, Blob(map.encode_sealed()));
            return Ok(msg);
        }
        for e in start..=last {
            let blob = match self.incs.get(&e) {
                Some(b) => b.clone(),
                None => match persist::load_inc_bytes(&self.store, e)? {
                    Some(b) => Blob(b),
                    None => {
                        msg.incrementals.clear();
                        msg.maps
                            .insert(last, Blob(self.st.osd.map().encode_sealed()));
                        return Ok(msg);
                    }
                },
            };
            msg.incrementals.insert(e, blob);
        }
        Ok(msg)
    }

    pub(super) async fn publish_to(&mut self, session: u64) {
        let last = self.st.osd.map().epoch;
        let mgr_epoch = self.st.mgr.map().epoch;
        let Some(sub) = self.subs.get(&session) else {
            return;
        };
        let Some(handle) = sub.handle.clone() else {
            return;
        };
        let osd_start = sub
            .osdmap
            .as_ref()
            .filter(|i| last >= 1 && i.start <= last)
            .map(|i| i.start);
        // Epoch 0 is a mon of several waiting for its first leader: there
        // is nothing to send yet.
        let mgr_due = mgr_epoch >= 1 && sub.mgrmap.as_ref().is_some_and(|i| i.start <= mgr_epoch);
        // A subscriber whose queue is full keeps its start epoch, so the
        // next publish covers what this one could not send.
        let mut osd_sent = false;
        if let Some(start) = osd_start {
            match self.osdmap_message(start) {
                Ok(msg) => match handle.try_send(msg.to_message()) {
                    Ok(_) => osd_sent = true,
                    Err(e) => tracing::info!(session, "osdmap not sent: {e}"),
                },
                Err(e) => tracing::error!("reading maps for a subscriber: {e}"),
            }
        }
        let mut mgr_sent = false;
        if mgr_due {
            match handle.try_send(MgrMapMsg::new(self.st.mgr.map()).to_message()) {
                Ok(_) => mgr_sent = true,
                Err(e) => tracing::info!(session, "mgrmap not sent: {e}"),
            }
        }
        if let Some(sub) = self.subs.get_mut(&session) {
            if osd_sent {
                sub.osdmap = sub.osdmap.take().filter(|i| !i.onetime).map(|mut i| {
                    i.start = last + 1;
                    i
                });
            }
            if mgr_sent {
                sub.mgrmap = sub.mgrmap.take().filter(|i| !i.onetime).map(|mut i| {
                    i.start = mgr_epoch + 1;
                    i
                });
            }
        }
    }
}
