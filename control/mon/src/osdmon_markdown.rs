//! An OSD stopping cleanly asks to be marked down (Ceph's
//! `preprocess_mark_me_down` / `prepare_mark_me_down`): only the instance
//! that is up now, with the addresses the request names, goes down; any
//! other request is ignored with a reason (and still acked by the server,
//! so a stopping OSD does not wait out its timeout for nothing).

use std::time::Instant;

use kalmar_maps::osd::OsdState;
use kalmar_maps::OsdMapFlags;
use kalmar_proto::mon::OsdMarkMeDown;

use super::OsdMon;

/// What the mon did with a mark-me-down request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkMeDown {
    /// The OSD goes down in the epoch being built.
    Marked,
    /// Nothing changes, for this reason.
    Ignored(String),
}

impl OsdMon {
    /// Marks `m.target_osd` down in the next epoch when the request comes
    /// from the instance that is up (same addresses, an epoch not older
    /// than its `up_from`) and neither the global nor the OSD's own
    /// `nodown` flag is set.
    pub fn mark_me_down(&mut self, m: &OsdMarkMeDown, now: Instant) -> MarkMeDown {
        let id = m.target_osd;
        let view = self.view();
        if m.fsid != view.fsid {
            return MarkMeDown::Ignored(format!(
                "fsid {} is not this cluster's ({})",
                m.fsid, view.fsid
            ));
        }
        let Some(slot) = view.osd(id).filter(|s| s.exists()) else {
            return MarkMeDown::Ignored(format!("osd.{id} does not exist"));
        };
        if !slot.is_up() {
            return MarkMeDown::Ignored(format!("osd.{id} is already down"));
        }
        if slot.addrs != m.target_addrs {
            return MarkMeDown::Ignored(format!(
                "osd.{id} is up as another instance (addresses {}, the request names {})",
                slot.addrs.public, m.target_addrs.public
            ));
        }
        if m.epoch < slot.info.up_from {
            return MarkMeDown::Ignored(format!(
                "the request's epoch {} is older than osd.{id}'s up_from {}",
                m.epoch, slot.info.up_from
            ));
        }
        if view.test_flag(OsdMapFlags::NODOWN) || slot.state.has(OsdState::NODOWN) {
            return MarkMeDown::Ignored(format!("nodown is set; osd.{id} stays up"));
        }
        tracing::info!(osd = id, epoch = m.epoch, "osd.{id} marked itself down");
        self.mark_down(id, now);
        MarkMeDown::Marked
    }
}
