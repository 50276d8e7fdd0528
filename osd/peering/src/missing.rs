//! Missing sets (`pg_missing_t`): objects an OSD's log says it should have
//! at a version its store does not hold.

use std::collections::BTreeMap;

use kalmar_common::impl_versioned;
use serde::Serialize;

use crate::eversion::Eversion;
use crate::log::PgLogEntry;
use crate::object::ObjectName;

/// One missing object: the version the log requires and the version the
/// store holds (`0'0` when the store has no copy at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MissingItem {
    pub need: Eversion,
    pub have: Eversion,
}
impl_versioned!(MissingItem, "missing_item", version = 1, compat = 1, { need, have });

/// Object -> missing item, in object order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PgMissing {
    pub items: BTreeMap<ObjectName, MissingItem>,
}
impl_versioned!(PgMissing, "pg_missing", version = 1, compat = 1, { items });

impl PgMissing {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn is_missing(&self, oid: &str) -> bool {
        self.items.contains_key(oid)
    }

    pub fn get(&self, oid: &str) -> Option<&MissingItem> {
        self.items.get(oid)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ObjectName, &MissingItem)> {
        self.items.iter()
    }

    /// Records that `oid` must reach `need`; keeps the `have` already
    /// recorded if the object was missing before.
    pub fn add(&mut self, oid: &str, need: Eversion, have: Eversion) {
        let have = self.items.get(oid).map_or(have, |m| m.have);
        self.items
            .insert(oid.to_string(), MissingItem { need, have });
    }

    pub fn rm(&mut self, oid: &str) -> Option<MissingItem> {
        self.items.remove(oid)
    }

    /// The object now exists at `version`: drop it if that satisfies the
    /// need, else remember the newer `have`.
    pub fn got(&mut self, oid: &str, version: Eversion) {
        if let Some(m) = self.items.get_mut(oid) {
            if version >= m.need {
                self.items.remove(oid);
            } else if version > m.have {
                m.have = version;
            }
        }
    }

    /// A log entry reached a store that lacks its object's prior state
    /// (`add_next_event`): the object stays missing, now at the new need.
    pub fn add_next_event(&mut self, e: &PgLogEntry) {
        if !e.op.changes_object() {
            return;
        }
        if let Some(m) = self.items.get_mut(&e.oid) {
            m.need = e.version;
        }
    }

    /// The oldest version any missing object needs.
    pub fn oldest_need(&self) -> Option<Eversion> {
        self.items.values().map(|m| m.need).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_common::{Decode, Encode};

    #[test]
    fn add_got_keeps_have() {
        let mut m = PgMissing::new();
        m.add("a", Eversion::new(2, 5), Eversion::new(1, 1));
        m.add("a", Eversion::new(2, 7), Eversion::ZERO);
        assert_eq!(m.get("a").map(|i| i.have), Some(Eversion::new(1, 1)));
        m.got("a", Eversion::new(2, 5));
        assert_eq!(m.get("a").map(|i| i.have), Some(Eversion::new(2, 5)));
        m.got("a", Eversion::new(2, 7));
        assert!(m.is_empty());
        m.add("b", Eversion::new(3, 1), Eversion::ZERO);
        assert_eq!(PgMissing::from_bytes(&m.to_bytes()).expect("decodes"), m);
    }
}
