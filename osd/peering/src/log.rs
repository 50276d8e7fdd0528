//! The PG log: the ordered record of recent modifications, `(tail, head]`.
//!
//! The OSD persists each entry in its PG's collection log under
//! [`Eversion::log_key`], in the same transaction as the object change the
//! entry describes; trimmed entries stay there as the dups.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use kalmar_common::encoding::{encode_versioned, Decode, DecodeError, Decoder, Encode};
use kalmar_common::{impl_enum_u8, impl_versioned};
use serde::Serialize;

use crate::error::PeeringError;
use crate::eversion::{Eversion, ReqId};
use crate::object::ObjectName;

/// What a log entry did to its object (`pg_log_entry_t::op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogOp {
    /// Created or changed the object (data, xattrs or omap).
    Modify,
    /// Removed the object.
    Delete,
    /// The op failed; logged so a resend gets the same error.
    Error,
    /// Admin reverted an unfound object to an older version.
    LostRevert,
    /// Admin deleted an unfound object.
    LostDelete,
    /// Written by a primary when it activates: changes no object, but gives
    /// the activated history a head in the activation epoch, so a later
    /// peering never prefers an older interval's divergent entries to a
    /// history that was already activated (and possibly read).
    Marker,
}
impl_enum_u8!(LogOp, "log op", {
    Modify = 1, Delete = 2, Error = 3, LostRevert = 4, LostDelete = 5, Marker = 6,
});

impl LogOp {
    /// Whether the entry leaves the object absent.
    pub fn is_delete(self) -> bool {
        matches!(self, LogOp::Delete | LogOp::LostDelete)
    }

    /// Whether the entry changes object state at all (errors do not).
    pub fn changes_object(self) -> bool {
        !matches!(self, LogOp::Error | LogOp::Marker)
    }
}

/// One log entry (`pg_log_entry_t`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PgLogEntry {
    pub op: LogOp,
    pub oid: ObjectName,
    pub version: Eversion,
    /// The object's version before this entry (`0'0` if it did not exist).
    pub prior_version: Eversion,
    pub reqid: ReqId,
    pub mtime_us: u64,
    pub return_code: i32,
    pub user_version: u64,
}
impl_versioned!(PgLogEntry, "pg_log_entry", version = 1, compat = 1, {
    op, oid, version, prior_version, reqid, mtime_us, return_code, user_version,
});

/// What is kept of a trimmed entry so a resent request is still answered
/// (`pg_log_dup_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PgLogDup {
    pub reqid: ReqId,
    pub version: Eversion,
    pub user_version: u64,
    pub return_code: i32,
}
impl_versioned!(PgLogDup, "pg_log_dup", version = 1, compat = 1, {
    reqid, version, user_version, return_code,
});

impl From<&PgLogEntry> for PgLogDup {
    fn from(e: &PgLogEntry) -> Self {
        PgLogDup {
            reqid: e.reqid,
            version: e.version,
            user_version: e.user_version,
            return_code: e.return_code,
        }
    }
}

/// The answer for a request already in the log or its dups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedRequest {
    pub version: Eversion,
    pub user_version: u64,
    pub return_code: i32,
}

impl From<&PgLogEntry> for CompletedRequest {
    fn from(e: &PgLogEntry) -> Self {
        CompletedRequest {
            version: e.version,
            user_version: e.user_version,
            return_code: e.return_code,
        }
    }
}

impl From<&PgLogDup> for CompletedRequest {
    fn from(d: &PgLogDup) -> Self {
        CompletedRequest {
            version: d.version,
            user_version: d.user_version,
            return_code: d.return_code,
        }
    }
}

/// A list that is one or two items long on every steady-state write (a
/// write trims one entry, adds one dup, evicts one): kept inline, so
/// trimming allocates nothing.
pub type Few<T> = smallvec::SmallVec<[T; 2]>;

/// What a trim removed and added, for the OSD to mirror in the omap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrimOutcome {
    /// Entries removed (delete their omap keys).
    pub trimmed: Few<Eversion>,
    /// Dup records created from trimmed entries (write them).
    pub dups_added: Few<PgLogDup>,
    /// Dup records evicted past the dup bound (delete their keys).
    pub dups_removed: Few<PgLogDup>,
}

/// The PG log: entries in `(tail, head]`, plus dups of trimmed entries.
#[derive(Debug, Clone, Default)]
pub struct PgLog {
    tail: Eversion,
    head: Eversion,
    entries: VecDeque<PgLogEntry>,
    dups: VecDeque<PgLogDup>,
    /// Request id -> completion, over entries and dups; rebuilt on decode.
    /// Looked up or changed several times per write: a fast hash, seeded
    /// per process (never iterated, so the seed changes no behaviour).
    index: HashMap<ReqId, CompletedRequest, foldhash::fast::RandomState>,
}

impl PartialEq for PgLog {
    fn eq(&self, o: &Self) -> bool {
        self.tail == o.tail
            && self.head == o.head
            && self.entries == o.entries
            && self.dups == o.dups
    }
}
impl Eq for PgLog {}

impl PgLog {
    /// An empty log whose history starts after `tail` (`0'0` for a new PG).
    pub fn new(tail: Eversion) -> Self {
        PgLog {
            tail,
            head: tail,
            ..Default::default()
        }
    }

    /// Builds a log from entries in version order.
    pub fn from_entries(
        tail: Eversion,
        entries: impl IntoIterator<Item = PgLogEntry>,
    ) -> Result<Self, PeeringError> {
        let mut log = PgLog::new(tail);
        for e in entries {
            log.append(e)?;
        }
        Ok(log)
    }

    /// Rebuilds a log from its stored pieces (the omap keys of entries and
    /// dups, and the tail from the info).
    pub fn from_parts(
        tail: Eversion,
        entries: impl IntoIterator<Item = PgLogEntry>,
        dups: impl IntoIterator<Item = PgLogDup>,
    ) -> Result<Self, PeeringError> {
        let mut log = PgLog::from_entries(tail, entries)?;
        log.dups = dups.into_iter().collect();
        // Dups are trimmed entries: in version order, none above the tail.
        let mut prev = Eversion::ZERO;
        for d in &log.dups {
            if d.version < prev || d.version > tail {
                return Err(PeeringError::LogOrder {
                    entry: d.version,
                    head: prev.max(tail),
                });
            }
            prev = d.version;
        }
        log.rebuild_index();
        Ok(log)
    }

    pub fn tail(&self) -> Eversion {
        self.tail
    }

    pub fn head(&self) -> Eversion {
        self.head
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &PgLogEntry> + ExactSizeIterator {
        self.entries.iter()
    }

    pub fn dups(&self) -> impl Iterator<Item = &PgLogDup> {
        self.dups.iter()
    }

    /// Entries newer than `v`, oldest first.
    pub fn entries_after(&self, v: Eversion) -> impl Iterator<Item = &PgLogEntry> {
        let start = self.entries.partition_point(|e| e.version <= v);
        self.entries.range(start..)
    }

    /// The entry of exactly this version, if the log holds it.
    pub fn get(&self, v: Eversion) -> Option<&PgLogEntry> {
        let i = self.entries.partition_point(|e| e.version < v);
        self.entries.get(i).filter(|e| e.version == v)
    }

    /// The newest entry for an object, if the log has one.
    pub fn latest_for(&self, oid: &str) -> Option<&PgLogEntry> {
        self.entries.iter().rev().find(|e| e.oid == oid)
    }

    /// Appends one entry; its version must be newer than the head.
    pub fn append(&mut self, e: PgLogEntry) -> Result<(), PeeringError> {
        if e.version <= self.head {
            return Err(PeeringError::LogOrder {
                entry: e.version,
                head: self.head,
            });
        }
        self.head = e.version;
        if !e.reqid.is_none() {
            self.index.insert(e.reqid, CompletedRequest::from(&e));
        }
        self.entries.push_back(e);
        Ok(())
    }

    /// A resent request: the completion recorded for it, if any.
    pub fn find_reqid(&self, reqid: &ReqId) -> Option<CompletedRequest> {
        self.index.get(reqid).copied()
    }

    /// Where to trim so at most `max_entries` remain, never past
    /// `can_trim_to` (entries every replica has committed). Always the
    /// version of an entry, so a trimmed tail still names a real point of
    /// the history that other logs can be checked against.
    pub fn trim_target(&self, max_entries: usize, can_trim_to: Eversion) -> Option<Eversion> {
        let excess = self.entries.len().checked_sub(max_entries)?;
        let allowed = self.entries.partition_point(|e| e.version <= can_trim_to);
        let n = excess.min(allowed);
        let to = self.entries.get(n.checked_sub(1)?)?.version;
        (to > self.tail).then_some(to)
    }

    /// Removes entries `<= to`, keeping up to `max_dups` of the newest
    /// trimmed requests as dups; the tail becomes `to`.
    pub fn trim(&mut self, to: Eversion, max_dups: usize) -> Result<TrimOutcome, PeeringError> {
        if to > self.head {
            return Err(PeeringError::TrimPastHead {
                to,
                head: self.head,
            });
        }
        let mut out = TrimOutcome::default();
        if to <= self.tail {
            return Ok(out);
        }
        while self.entries.front().is_some_and(|e| e.version <= to) {
            let Some(e) = self.entries.pop_front() else {
                break;
            };
            out.trimmed.push(e.version);
            if !e.reqid.is_none() && max_dups > 0 {
                let dup = PgLogDup::from(&e);
                self.dups.push_back(dup);
                out.dups_added.push(dup);
            } else if !e.reqid.is_none() {
                self.unindex(&e.reqid, e.version);
            }
        }
        let old_tail = self.tail;
        let mut newest_evicted = Eversion::ZERO;
        while self.dups.len() > max_dups {
            let Some(d) = self.dups.pop_front() else {
                break;
            };
            self.unindex(&d.reqid, d.version);
            newest_evicted = d.version;
            // A dup added and evicted in this same call never reached the
            // store: nothing to delete.
            if d.version <= old_tail {
                out.dups_removed.push(d);
            }
        }
        out.dups_added.retain(|a| a.version > newest_evicted);
        self.tail = to;
        Ok(out)
    }

    /// Removes and returns every entry newer than `to` (divergent entries),
    /// newest last; the head becomes `to`.
    pub fn rewind_to(&mut self, to: Eversion) -> Vec<PgLogEntry> {
        let keep = self.entries.partition_point(|e| e.version <= to);
        let removed: Vec<PgLogEntry> = self.entries.drain(keep..).collect();
        for e in &removed {
            self.unindex(&e.reqid, e.version);
        }
        self.head = to.max(self.tail);
        removed
    }

    /// Prepends older entries (from an authoritative log reaching further
    /// back); they must all be `<= tail`.
    pub fn extend_tail(&mut self, new_tail: Eversion, older: Vec<PgLogEntry>) {
        if new_tail >= self.tail {
            return;
        }
        for e in older.into_iter().rev() {
            if e.version > new_tail && e.version <= self.tail {
                if !e.reqid.is_none() {
                    self.index
                        .entry(e.reqid)
                        .or_insert(CompletedRequest::from(&e));
                }
                self.entries.push_front(e);
            }
        }
        self.tail = new_tail;
        // Dups are trimmed entries, all at or below the tail: the ones the
        // older entries now cover stop being dups (else the log would hold
        // a version twice, and its stored form would not be in key order).
        while self.dups.back().is_some_and(|d| d.version > new_tail) {
            self.dups.pop_back();
        }
    }

    /// Forgets every entry: the log restarts empty at `at` (a backfill
    /// target adopting the primary's history).
    pub fn reset(&mut self, at: Eversion) {
        *self = PgLog::new(at);
    }

    fn unindex(&mut self, reqid: &ReqId, version: Eversion) {
        if let Entry::Occupied(o) = self.index.entry(*reqid) {
            if o.get().version == version {
                o.remove();
            }
        }
    }

    fn rebuild_index(&mut self) {
        self.index.clear();
        for d in &self.dups {
            self.index.insert(d.reqid, CompletedRequest::from(d));
        }
        for e in &self.entries {
            if !e.reqid.is_none() {
                self.index.insert(e.reqid, CompletedRequest::from(e));
            }
        }
    }
}

const PG_LOG_VERSION: u8 = 1;

impl Encode for PgLog {
    fn encode(&self, buf: &mut Vec<u8>) {
        encode_versioned(buf, PG_LOG_VERSION, 1, |buf| {
            self.tail.encode(buf);
            self.head.encode(buf);
            (self.entries.len() as u32).encode(buf);
            for e in &self.entries {
                e.encode(buf);
            }
            (self.dups.len() as u32).encode(buf);
            for d in &self.dups {
                d.encode(buf);
            }
        })
    }
}

impl Decode for PgLog {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.versioned("pg_log", PG_LOG_VERSION, |d, _v| {
            let tail = Eversion::decode(d)?;
            let head = Eversion::decode(d)?;
            let n = d.len_prefix(1, "pg_log entries")?;
            let mut entries = VecDeque::with_capacity(n);
            let mut prev = tail;
            for _ in 0..n {
                let e = PgLogEntry::decode(d)?;
                if e.version <= prev || e.version > head {
                    return Err(DecodeError::Invalid {
                        what: "pg_log",
                        detail: format!("entry {} out of order in ({tail}, {head}]", e.version),
                    });
                }
                prev = e.version;
                entries.push_back(e);
            }
            let n = d.len_prefix(1, "pg_log dups")?;
            let mut dups = VecDeque::with_capacity(n);
            for _ in 0..n {
                dups.push_back(PgLogDup::decode(d)?);
            }
            let mut log = PgLog {
                tail,
                head,
                entries,
                dups,
                index: HashMap::default(),
            };
            log.rebuild_index();
            Ok(log)
        })
    }
}

impl Serialize for PgLog {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("pg_log", 4)?;
        st.serialize_field("tail", &self.tail)?;
        st.serialize_field("head", &self.head)?;
        st.serialize_field("log", &self.entries)?;
        st.serialize_field("dups", &self.dups)?;
        st.end()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn entry(e: u32, v: u64, oid: &str, prior: Eversion) -> PgLogEntry {
        PgLogEntry {
            op: LogOp::Modify,
            oid: oid.to_string(),
            version: Eversion::new(e, v),
            prior_version: prior,
            reqid: ReqId::new(1, 1, v),
            mtime_us: 0,
            return_code: 0,
            user_version: v,
        }
    }

    #[test]
    fn append_refuses_old_versions() {
        let mut log = PgLog::new(Eversion::ZERO);
        log.append(entry(1, 1, "a", Eversion::ZERO)).expect("first");
        assert!(matches!(
            log.append(entry(1, 1, "b", Eversion::ZERO)),
            Err(PeeringError::LogOrder { .. })
        ));
        assert_eq!(log.head(), Eversion::new(1, 1));
    }

    #[test]
    fn trim_keeps_dups_up_to_bound() {
        let mut log = PgLog::new(Eversion::ZERO);
        for v in 1..=10 {
            log.append(entry(1, v, "a", Eversion::ZERO))
                .expect("append");
        }
        assert_eq!(log.trim_target(4, Eversion::MAX), Some(Eversion::new(1, 6)));
        assert_eq!(
            log.trim_target(4, Eversion::new(1, 3)),
            Some(Eversion::new(1, 3))
        );
        assert_eq!(log.trim_target(20, Eversion::MAX), None);
        let out = log.trim(Eversion::new(1, 6), 3).expect("trim");
        assert_eq!(out.trimmed.len(), 6);
        assert_eq!(log.len(), 4);
        assert_eq!(log.tail(), Eversion::new(1, 6));
        // dups 4, 5, 6 kept, 1..3 forgotten (never written since they were
        // added and evicted in the same call)
        assert_eq!(out.dups_added.len(), 3);
        assert!(out.dups_removed.is_empty());
        assert!(log.find_reqid(&ReqId::new(1, 1, 5)).is_some());
        assert!(log.find_reqid(&ReqId::new(1, 1, 2)).is_none());
        assert!(log.find_reqid(&ReqId::new(1, 1, 9)).is_some());
        assert!(log.trim(Eversion::new(2, 0), 3).is_err());
    }

    #[test]
    fn extending_the_tail_turns_covered_dups_back_into_entries() {
        // Found by the whole-cluster simulator: a log trimmed to 1'6 (dups
        // 4..6) extended back to 0'0 from an authoritative log kept dups
        // above its new tail, and the PG's rewrite of it was refused.
        let mut log = PgLog::new(Eversion::ZERO);
        let all: Vec<PgLogEntry> = (1..=8).map(|v| entry(1, v, "a", Eversion::ZERO)).collect();
        for e in &all {
            log.append(e.clone()).expect("append");
        }
        log.trim(Eversion::new(1, 6), 3).expect("trim");
        assert_eq!(log.dups().count(), 3);
        log.extend_tail(Eversion::ZERO, all[..6].to_vec());
        assert_eq!(log.tail(), Eversion::ZERO);
        assert_eq!(log.len(), 8);
        assert_eq!(log.dups().count(), 0, "every dup is an entry again");
        assert!(log.find_reqid(&ReqId::new(1, 1, 5)).is_some());
        // Partly: back to 1'4 leaves the dup 1'4 and makes 5 and 6 entries.
        let mut log = PgLog::new(Eversion::ZERO);
        for e in &all {
            log.append(e.clone()).expect("append");
        }
        log.trim(Eversion::new(1, 6), 3).expect("trim");
        log.extend_tail(Eversion::new(1, 4), all[4..6].to_vec());
        let dups: Vec<Eversion> = log.dups().map(|d| d.version).collect();
        assert_eq!(dups, vec![Eversion::new(1, 4)]);
        assert_eq!(
            log.entries().next().map(|e| e.version),
            Some(Eversion::new(1, 5))
        );
        let again = PgLog::from_parts(log.tail(), log.entries().cloned(), log.dups().copied());
        assert!(again.is_ok(), "the log is valid as stored: {again:?}");
    }

    #[test]
    fn rewind_drops_index() {
        let mut log = PgLog::new(Eversion::ZERO);
        for v in 1..=5 {
            log.append(entry(1, v, "a", Eversion::ZERO))
                .expect("append");
        }
        let gone = log.rewind_to(Eversion::new(1, 3));
        assert_eq!(gone.len(), 2);
        assert_eq!(log.head(), Eversion::new(1, 3));
        assert!(log.find_reqid(&ReqId::new(1, 1, 4)).is_none());
        assert!(log.get(Eversion::new(1, 3)).is_some());
        assert!(log.get(Eversion::new(1, 4)).is_none());
    }

    proptest! {
        #[test]
        fn encode_roundtrip(n in 0u64..40, trim in 0u64..40, dups in 0usize..10) {
            let mut log = PgLog::new(Eversion::ZERO);
            for v in 1..=n {
                log.append(entry(2, v, &format!("o{}", v % 5), Eversion::ZERO)).expect("append");
            }
            let to = if n == 0 { Eversion::ZERO } else { Eversion::new(2, trim.min(n)) };
            log.trim(to, dups).expect("trim");
            let back = PgLog::from_bytes(&log.to_bytes()).expect("decodes");
            prop_assert_eq!(&back, &log);
            for e in log.entries() {
                prop_assert_eq!(back.find_reqid(&e.reqid).map(|c| c.version), Some(e.version));
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = PgLog::from_bytes(&bytes);
        }
    }
}
