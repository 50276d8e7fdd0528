//! The primary's view of its objects' infos, projected over writes that
//! are logged but not yet committed everywhere (the next write of an
//! object must build on the previous one, and the store only shows
//! committed state). Bounded: idle entries are evicted oldest first.

use std::collections::{HashMap, VecDeque};

use crate::names::ObjectInfo;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// `None`: the object does not exist.
    info: Option<ObjectInfo>,
    /// Writes of this object not yet committed by every member.
    inflight: u32,
}

/// Object infos of one PG.
#[derive(Debug)]
pub struct ObjectCache {
    max: usize,
    entries: HashMap<String, Entry>,
    /// Insertion order, for eviction (may hold names already gone).
    order: VecDeque<String>,
}

impl ObjectCache {
    pub fn new(max: usize) -> Self {
        ObjectCache {
            max: max.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The cached info: `Some(None)` means known absent.
    pub fn get(&self, oid: &str) -> Option<Option<ObjectInfo>> {
        self.entries.get(oid).map(|e| e.info)
    }

    /// Writes of `oid` in flight.
    pub fn inflight(&self, oid: &str) -> u32 {
        self.entries.get(oid).map_or(0, |e| e.inflight)
    }

    /// Records the info read from the store.
    pub fn fill(&mut self, oid: &str, info: Option<ObjectInfo>) {
        if let Some(e) = self.entries.get_mut(oid) {
            e.info = info;
            return;
        }
        self.entries
            .insert(oid.to_string(), Entry { info, inflight: 0 });
        self.order.push_back(oid.to_string());
        self.evict();
    }

    /// A write was issued: the projected info, one more in flight.
    pub fn start_write(&mut self, oid: &str, info: Option<ObjectInfo>) {
        match self.entries.get_mut(oid) {
            Some(e) => {
                e.info = info;
                e.inflight += 1;
            }
            None => {
                self.entries
                    .insert(oid.to_string(), Entry { info, inflight: 1 });
                self.order.push_back(oid.to_string());
                self.evict();
            }
        }
    }

    /// A write completed; returns whether none is left in flight.
    pub fn finish_write(&mut self, oid: &str) -> bool {
        match self.entries.get_mut(oid) {
            Some(e) => {
                e.inflight = e.inflight.saturating_sub(1);
                e.inflight == 0
            }
            None => true,
        }
    }

    /// Forgets one object (its copy was replaced by recovery).
    pub fn forget(&mut self, oid: &str) {
        if self.entries.get(oid).is_some_and(|e| e.inflight == 0) {
            self.entries.remove(oid);
        }
    }

    /// Forgets everything (a new interval may roll writes back).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn evict(&mut self) {
        // Each entry appears once in `order` while cached; busy entries go
        // back to the end, so the loop ends after one pass at most.
        let mut budget = self.order.len();
        while self.entries.len() > self.max && budget > 0 {
            budget -= 1;
            let Some(oid) = self.order.pop_front() else {
                break;
            };
            match self.entries.get(&oid) {
                Some(e) if e.inflight > 0 => self.order.push_back(oid),
                Some(_) => {
                    self.entries.remove(&oid);
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oi(size: u64) -> Option<ObjectInfo> {
        Some(ObjectInfo {
            size_bytes: size,
            ..Default::default()
        })
    }

    #[test]
    fn bounded_and_busy_entries_stay() {
        let mut c = ObjectCache::new(2);
        c.start_write("a", oi(1));
        c.fill("b", None);
        c.fill("c", oi(3));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("a"), Some(oi(1)), "in flight: never evicted");
        assert_eq!(c.get("b"), None, "oldest idle evicted");
        assert_eq!(c.get("c"), Some(oi(3)));
        c.start_write("a", oi(5));
        assert_eq!(c.inflight("a"), 2);
        assert!(!c.finish_write("a"));
        assert!(c.finish_write("a"));
        c.fill("d", None);
        c.fill("e", None);
        assert!(c.len() <= 2);
        c.clear();
        assert!(c.is_empty());
    }
}
