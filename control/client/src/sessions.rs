//! The objecter's sessions, one per OSD, read by every op without a lock:
//! the table is an immutable vector (indexed by OSD id) behind an
//! `ArcSwap`, replaced whole when a session opens or goes away, which
//! happens once per OSD and per map change, not per op.

use std::sync::Arc;

use arc_swap::ArcSwap;
use kalmar_maps::{EntityAddr, OsdId};
use parking_lot::Mutex;

use crate::transport::OsdSession;

#[derive(Clone)]
struct Entry<S> {
    addr: EntityAddr,
    session: S,
}

pub struct Sessions<S: OsdSession> {
    table: ArcSwap<Vec<Option<Entry<S>>>>,
    /// Serialises the writers, so two ops missing the same session do
    /// not open two.
    write: Mutex<()>,
}

impl<S: OsdSession> Sessions<S> {
    pub fn new() -> Self {
        Sessions {
            table: ArcSwap::from_pointee(Vec::new()),
            write: Mutex::new(()),
        }
    }

    fn current(table: &[Option<Entry<S>>], osd: OsdId, addr: &EntityAddr) -> Option<S> {
        let e = table.get(usize::try_from(osd).ok()?)?.as_ref()?;
        (e.addr == *addr && !e.session.is_closed()).then(|| e.session.clone())
    }

    /// The open session to `osd` at `addr`, or a new one from `open`
    /// (which replaces, and closes, a session to an older address).
    pub fn get_or_open(&self, osd: OsdId, addr: &EntityAddr, open: impl FnOnce() -> S) -> S {
        if let Some(s) = Self::current(&self.table.load(), osd, addr) {
            return s;
        }
        let _w = self.write.lock();
        let table = self.table.load_full();
        if let Some(s) = Self::current(&table, osd, addr) {
            return s;
        }
        let session = open();
        let mut next: Vec<Option<Entry<S>>> = (*table).clone();
        let at = usize::try_from(osd).unwrap_or(0);
        if next.len() <= at {
            next.resize(at + 1, None);
        }
        let old = next[at].replace(Entry {
            addr: *addr,
            session: session.clone(),
        });
        self.table.store(Arc::new(next));
        if let Some(old) = old {
            old.session.close("replaced by a new session");
        }
        session
    }

    /// Closes and forgets the sessions for which `keep` is false.
    pub fn retain(&self, reason: &str, keep: impl Fn(OsdId, &EntityAddr) -> bool) {
        let _w = self.write.lock();
        let table = self.table.load_full();
        let mut next: Vec<Option<Entry<S>>> = (*table).clone();
        let mut changed = false;
        for (i, slot) in next.iter_mut().enumerate() {
            let osd = OsdId::try_from(i).unwrap_or(OsdId::MAX);
            if let Some(e) = slot.take_if(|e| !keep(osd, &e.addr)) {
                e.session.close(reason);
                changed = true;
            }
        }
        if changed {
            self.table.store(Arc::new(next));
        }
    }

    /// The session to `osd`, if one is open.
    pub fn get(&self, osd: OsdId) -> Option<S> {
        let table = self.table.load();
        let e = table.get(usize::try_from(osd).ok()?)?.as_ref()?;
        Some(e.session.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fake_transport, osd_addr, FakeOptions};
    use crate::transport::Transport;

    #[test]
    fn one_session_per_osd_and_address() {
        let (t, _osds) = fake_transport(FakeOptions::default());
        let table = Sessions::new();
        let fsid = uuid::Uuid::nil();
        let a = table.get_or_open(2, &osd_addr(2), || t.open(2, &osd_addr(2), fsid));
        let again = table.get_or_open(2, &osd_addr(2), || panic!("already open"));
        assert_eq!(a.id(), again.id());
        // A new address (the OSD restarted elsewhere) replaces and closes.
        let b = table.get_or_open(2, &osd_addr(7), || t.open(2, &osd_addr(7), fsid));
        assert_ne!(a.id(), b.id());
        assert!(a.is_closed());
        // A closed session is replaced on next use.
        b.close("test");
        let c = table.get_or_open(2, &osd_addr(7), || t.open(2, &osd_addr(7), fsid));
        assert_ne!(b.id(), c.id());
        table.retain("gone", |osd, _| osd != 2);
        assert!(c.is_closed());
        assert!(table.get(2).is_none());
    }
}
