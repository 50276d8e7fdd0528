//! Recovery, backfill and scrub reservations (Ceph's `AsyncReserver`):
//! slots for this OSD's own recovery/backfill work (local) and for work
//! primaries do on this OSD (remote), each bounded by `osd_max_backfills`,
//! and scrubs this OSD runs as primary, bounded by `osd_max_scrubs`. A
//! request beyond the bound waits in FIFO order; a grant is delivered
//! through the callback given with the request.

use std::collections::{BTreeSet, VecDeque};

use kalmar_maps::PgId;
use kalmar_peering::ReservationKind;
use parking_lot::Mutex;

type Grant = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Slots {
    granted: BTreeSet<(PgId, ReservationKind)>,
    queue: VecDeque<(PgId, ReservationKind, Grant)>,
}

/// The OSD's reserver.
pub struct Reserver {
    max: usize,
    max_scrubs: usize,
    local: Mutex<Slots>,
    remote: Mutex<Slots>,
    scrub: Mutex<Slots>,
}

impl Reserver {
    pub fn new(max_slots: usize, max_scrubs: usize) -> Self {
        Reserver {
            max: max_slots.max(1),
            max_scrubs: max_scrubs.max(1),
            local: Mutex::new(Slots::default()),
            remote: Mutex::new(Slots::default()),
            scrub: Mutex::new(Slots::default()),
        }
    }

    /// The pool a kind draws from and its bound.
    fn slots(&self, kind: ReservationKind) -> (&Mutex<Slots>, usize) {
        match kind {
            ReservationKind::LocalRecovery | ReservationKind::LocalBackfill => {
                (&self.local, self.max)
            }
            ReservationKind::RemoteRecovery | ReservationKind::RemoteBackfill => {
                (&self.remote, self.max)
            }
            ReservationKind::Scrub => (&self.scrub, self.max_scrubs),
        }
    }

    /// Asks for a slot; `grant` runs when it is given (at once if free).
    /// A repeated request of a held or queued slot is ignored.
    pub fn request(
        &self,
        pgid: PgId,
        kind: ReservationKind,
        grant: impl FnOnce() + Send + 'static,
    ) {
        let (slots, max) = self.slots(kind);
        let mut s = slots.lock();
        let key = (pgid, kind);
        if s.granted.contains(&key) || s.queue.iter().any(|(p, k, _)| (*p, *k) == key) {
            return;
        }
        if s.granted.len() < max {
            s.granted.insert(key);
            drop(s);
            grant();
        } else {
            s.queue.push_back((pgid, kind, Box::new(grant)));
        }
    }

    /// Gives a slot back (or withdraws a queued request) and grants the
    /// next waiter.
    pub fn release(&self, pgid: PgId, kind: ReservationKind) {
        let mut s = self.slots(kind).0.lock();
        s.queue.retain(|(p, k, _)| (*p, *k) != (pgid, kind));
        if !s.granted.remove(&(pgid, kind)) {
            return;
        }
        let next = s.queue.pop_front();
        if let Some((p, k, grant)) = next {
            s.granted.insert((p, k));
            drop(s);
            grant();
        }
    }

    /// Drops everything a PG holds or waits for (the PG went away).
    pub fn release_all(&self, pgid: PgId) {
        for kind in [
            ReservationKind::LocalRecovery,
            ReservationKind::LocalBackfill,
            ReservationKind::RemoteRecovery,
            ReservationKind::RemoteBackfill,
            ReservationKind::Scrub,
        ] {
            self.release(pgid, kind);
        }
    }

    /// `(granted, queued)` scrub slots.
    pub fn scrubs(&self) -> (usize, usize) {
        let s = self.scrub.lock();
        (s.granted.len(), s.queue.len())
    }

    /// `(granted, queued)` of local and remote slots.
    pub fn counts(&self) -> ((usize, usize), (usize, usize)) {
        let l = self.local.lock();
        let r = self.remote.lock();
        (
            (l.granted.len(), l.queue.len()),
            (r.granted.len(), r.queue.len()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn bounded_fifo_grants() {
        let r = Reserver::new(1, 1);
        let n = Arc::new(AtomicUsize::new(0));
        let (a, b, c) = (PgId::new(1, 1), PgId::new(1, 2), PgId::new(1, 3));
        for pg in [a, b, c] {
            let n = n.clone();
            r.request(pg, ReservationKind::LocalBackfill, move || {
                n.fetch_add(1, Ordering::SeqCst);
            });
        }
        assert_eq!(n.load(Ordering::SeqCst), 1, "one slot");
        // Remote slots are separate.
        let m = Arc::new(AtomicUsize::new(0));
        let m2 = m.clone();
        r.request(a, ReservationKind::RemoteRecovery, move || {
            m2.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(m.load(Ordering::SeqCst), 1);
        // Withdrawing a queued request grants nothing; releasing grants b.
        r.release(c, ReservationKind::LocalBackfill);
        assert_eq!(n.load(Ordering::SeqCst), 1);
        r.release(a, ReservationKind::LocalBackfill);
        assert_eq!(n.load(Ordering::SeqCst), 2);
        assert_eq!(r.counts(), ((1, 0), (1, 0)));
        // Scrub slots are their own pool, bounded by osd_max_scrubs.
        let k = Arc::new(AtomicUsize::new(0));
        for pg in [a, b] {
            let k = k.clone();
            r.request(pg, ReservationKind::Scrub, move || {
                k.fetch_add(1, Ordering::SeqCst);
            });
        }
        assert_eq!(k.load(Ordering::SeqCst), 1);
        r.release_all(b);
        r.release_all(a);
        assert_eq!(r.counts(), ((0, 0), (0, 0)));
        assert_eq!(r.scrubs(), (0, 0));
    }
}
