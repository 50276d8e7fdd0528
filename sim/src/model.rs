//! What the clients were told, and what a read may therefore return.
//!
//! Each object has one writer at a time, which writes versions 1, 2, 3...
//! in order. A version is *acknowledged* when its write returned success;
//! a write that failed or timed out may or may not have happened. After
//! the run, an object must hold its newest acknowledged version or a
//! later one whose outcome was unknown — never an older one (a lost
//! acknowledged write) and never bytes no version had (corruption).

use std::fmt;

/// Bytes of one object version written whole.
pub const OBJECT_BYTES: usize = 4096;

/// The payload of version `v` of object `o`: both numbers, then a pattern
/// derived from them, so any mix-up of objects, versions or blocks shows.
pub fn payload(o: u32, v: u64) -> Vec<u8> {
    record(o, v, OBJECT_BYTES)
}

/// The version `data` holds for object `o`, if it is a whole, valid
/// payload of that object.
pub fn version_of(o: u32, data: &[u8]) -> Option<u64> {
    record_version(o, data, OBJECT_BYTES)
}

/// `len` bytes (at least 12) naming object `o` and version `v`, then a
/// pattern derived from both.
pub fn record(o: u32, v: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len.max(12)];
    b[..4].copy_from_slice(&o.to_le_bytes());
    b[4..12].copy_from_slice(&v.to_le_bytes());
    let mut x = (u64::from(o) << 32) ^ v ^ 0x5851_f42d_4c95_7f2d;
    for chunk in b[12..].chunks_mut(8) {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let n = chunk.len();
        chunk.copy_from_slice(&x.to_le_bytes()[..n]);
    }
    b
}

/// The version whose `len`-byte record of object `o` `data` is, if any.
pub fn record_version(o: u32, data: &[u8], len: usize) -> Option<u64> {
    if data.len() != len || len < 12 {
        return None;
    }
    let v = u64::from_le_bytes(data[4..12].try_into().ok()?);
    (record(o, v, len) == data).then_some(v)
}

/// What slot `slot` of an object whose versions each write their own
/// `len`-byte record (version `v` at slot `v - 1`) holds, read as `chunk`
/// (short or empty past the end of the object): `Ok(None)` when nothing
/// was written there (zeros or past the end), an error when the bytes are
/// not the record of version `slot + 1`.
pub fn slot_version(o: u32, slot: usize, chunk: &[u8], len: usize) -> Result<Option<u64>, String> {
    if chunk.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    let want = slot as u64 + 1;
    match record_version(o, chunk, len) {
        Some(v) if v == want => Ok(Some(v)),
        Some(v) => Err(format!(
            "slot {slot} holds the record of v{v}, not of v{want}"
        )),
        None => Err(format!(
            "slot {slot}: {} bytes that are no record of it",
            chunk.len()
        )),
    }
}

/// One object's history as the client saw it.
#[derive(Debug, Clone, Default)]
pub struct ObjectHistory {
    /// Newest acknowledged version (0: none yet).
    pub acked: u64,
    /// Versions after `acked` whose writes ended without an answer.
    pub unknown: Vec<u64>,
}

impl ObjectHistory {
    pub fn acknowledged(&mut self, v: u64) {
        self.acked = self.acked.max(v);
        self.unknown.retain(|&u| u > v);
    }

    pub fn uncertain(&mut self, v: u64) {
        if v > self.acked {
            self.unknown.push(v);
        }
    }

    /// Whether a read returning `found` (None: no object, or not a valid
    /// payload) is allowed.
    pub fn allows(&self, found: Option<u64>) -> bool {
        match found {
            // Absent (or never whole) only while nothing was acknowledged.
            None => self.acked == 0,
            Some(v) => v == self.acked || self.unknown.contains(&v),
        }
    }
}

/// A read that contradicts what the client was told.
#[derive(Debug, Clone)]
pub struct Violation {
    pub object: u32,
    pub history: ObjectHistory,
    pub found: Option<u64>,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "object {}: acknowledged v{}, unknown {:?}, read {} ({})",
            self.object,
            self.history.acked,
            self.history.unknown,
            self.found
                .map_or("nothing valid".into(), |v| format!("v{v}")),
            self.detail
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_their_object_and_version() {
        let p = payload(7, 42);
        assert_eq!(version_of(7, &p), Some(42));
        assert_eq!(version_of(8, &p), None, "another object's bytes");
        let mut torn = p.clone();
        torn[2048] ^= 1;
        assert_eq!(version_of(7, &torn), None, "a changed byte");
        assert_eq!(version_of(7, &p[..4095]), None, "a short read");
    }

    #[test]
    fn records_sit_in_their_slots_and_zeros_are_unwritten() {
        let r = record(3, 6, 512);
        assert_eq!(record_version(3, &r, 512), Some(6));
        assert_eq!(record_version(4, &r, 512), None, "another object's record");
        assert_eq!(slot_version(3, 5, &r, 512), Ok(Some(6)));
        assert!(slot_version(3, 4, &r, 512).is_err(), "v6 sits in slot 5");
        assert_eq!(slot_version(3, 2, &[0; 512], 512), Ok(None));
        assert_eq!(slot_version(3, 2, &[], 512), Ok(None), "past the end");
        assert!(slot_version(3, 5, &r[..100], 512).is_err(), "a torn record");
        assert_eq!(payload(3, 6), record(3, 6, OBJECT_BYTES));
    }

    #[test]
    fn a_read_may_return_the_acked_or_a_later_unknown_version() {
        let mut h = ObjectHistory::default();
        assert!(h.allows(None), "never written");
        h.acknowledged(1);
        h.uncertain(2);
        assert!(h.allows(Some(1)));
        assert!(h.allows(Some(2)));
        assert!(!h.allows(Some(3)), "never sent");
        assert!(!h.allows(None), "an acknowledged write lost");
        h.acknowledged(3);
        assert!(!h.allows(Some(2)), "older than the acknowledged");
        assert!(!h.allows(Some(1)));
        assert!(h.allows(Some(3)));
    }
}
