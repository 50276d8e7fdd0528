//! Scrub error sets with Ceph's bits and names (`librados::err_t` for one
//! copy, `obj_err_t` for an object), printed as lists of names in Ceph's
//! order.

use kalmar_common::encoding::{Decode, DecodeError, Decoder, Encode};
use serde::Serialize;

/// Errors of one copy (shard) of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct ShardErrors(pub u64);

impl ShardErrors {
    pub const MISSING: u64 = 1 << 1;
    pub const STAT_ERROR: u64 = 1 << 2;
    pub const READ_ERROR: u64 = 1 << 3;
    pub const DATA_DIGEST_MISMATCH_INFO: u64 = 1 << 9;
    pub const OMAP_DIGEST_MISMATCH_INFO: u64 = 1 << 10;
    pub const SIZE_MISMATCH_INFO: u64 = 1 << 11;
    pub const INFO_MISSING: u64 = 1 << 14;
    pub const INFO_CORRUPTED: u64 = 1 << 15;
    pub const OBJ_SIZE_INFO_MISMATCH: u64 = 1 << 18;

    /// Found without reading data.
    pub const SHALLOW: u64 = Self::MISSING
        | Self::STAT_ERROR
        | Self::SIZE_MISMATCH_INFO
        | Self::INFO_MISSING
        | Self::INFO_CORRUPTED
        | Self::OBJ_SIZE_INFO_MISMATCH;
    /// Found by reading data (deep scrub).
    pub const DEEP: u64 =
        Self::READ_ERROR | Self::DATA_DIGEST_MISMATCH_INFO | Self::OMAP_DIGEST_MISMATCH_INFO;

    /// Names in the order Ceph's `rados list-inconsistent-obj` prints them.
    pub const NAMES: &'static [(u64, &'static str)] = &[
        (Self::MISSING, "missing"),
        (Self::STAT_ERROR, "stat_error"),
        (Self::READ_ERROR, "read_error"),
        (Self::DATA_DIGEST_MISMATCH_INFO, "data_digest_mismatch_info"),
        (Self::OMAP_DIGEST_MISMATCH_INFO, "omap_digest_mismatch_info"),
        (Self::SIZE_MISMATCH_INFO, "size_mismatch_info"),
        (Self::INFO_MISSING, "info_missing"),
        (Self::INFO_CORRUPTED, "info_corrupted"),
        (Self::OBJ_SIZE_INFO_MISMATCH, "obj_size_info_mismatch"),
    ];

    pub fn set(&mut self, bits: u64) {
        self.0 |= bits;
    }
    pub fn has(self, bits: u64) -> bool {
        self.0 & bits != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn names(self) -> Vec<&'static str> {
        names(self.0, Self::NAMES)
    }
}

/// Errors of an object as a whole: its copies disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct ObjectErrors(pub u64);

impl ObjectErrors {
    pub const OBJECT_INFO_INCONSISTENCY: u64 = 1 << 1;
    pub const DATA_DIGEST_MISMATCH: u64 = 1 << 4;
    pub const OMAP_DIGEST_MISMATCH: u64 = 1 << 5;
    pub const SIZE_MISMATCH: u64 = 1 << 6;
    pub const ATTR_VALUE_MISMATCH: u64 = 1 << 7;
    pub const ATTR_NAME_MISMATCH: u64 = 1 << 8;

    pub const DEEP: u64 = Self::DATA_DIGEST_MISMATCH | Self::OMAP_DIGEST_MISMATCH;

    pub const NAMES: &'static [(u64, &'static str)] = &[
        (Self::OBJECT_INFO_INCONSISTENCY, "object_info_inconsistency"),
        (Self::DATA_DIGEST_MISMATCH, "data_digest_mismatch"),
        (Self::OMAP_DIGEST_MISMATCH, "omap_digest_mismatch"),
        (Self::SIZE_MISMATCH, "size_mismatch"),
        (Self::ATTR_VALUE_MISMATCH, "attr_value_mismatch"),
        (Self::ATTR_NAME_MISMATCH, "attr_name_mismatch"),
    ];

    pub fn set(&mut self, bits: u64) {
        self.0 |= bits;
    }
    pub fn has(self, bits: u64) -> bool {
        self.0 & bits != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn names(self) -> Vec<&'static str> {
        names(self.0, Self::NAMES)
    }
}

fn names(bits: u64, table: &[(u64, &'static str)]) -> Vec<&'static str> {
    table
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|&(_, n)| n)
        .collect()
}

// Stored with a PG's scrub results: the bits as they are (a newer
// writer's unknown bits are kept and print no name).
impl Encode for ShardErrors {
    fn encode(&self, buf: &mut Vec<u8>) {
        self.0.encode(buf)
    }
}
impl Decode for ShardErrors {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(ShardErrors(u64::decode(d)?))
    }
}
impl Encode for ObjectErrors {
    fn encode(&self, buf: &mut Vec<u8>) {
        self.0.encode(buf)
    }
}
impl Decode for ObjectErrors {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(ObjectErrors(u64::decode(d)?))
    }
}

impl Serialize for ShardErrors {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl Serialize for ObjectErrors {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_ceph_order() {
        let mut e = ShardErrors::default();
        e.set(ShardErrors::OBJ_SIZE_INFO_MISMATCH | ShardErrors::READ_ERROR);
        assert_eq!(e.names(), vec!["read_error", "obj_size_info_mismatch"]);
        assert!(e.has(ShardErrors::DEEP) && e.has(ShardErrors::SHALLOW));
        let o = ObjectErrors(ObjectErrors::SIZE_MISMATCH | ObjectErrors::DATA_DIGEST_MISMATCH);
        assert_eq!(
            serde_json::to_value(o).expect("serializes"),
            serde_json::json!(["data_digest_mismatch", "size_mismatch"])
        );
        // Every name has its own bit.
        let all: u64 = ShardErrors::NAMES.iter().fold(0, |a, (b, _)| {
            assert_eq!(a & b, 0);
            a | b
        });
        assert_eq!(all, ShardErrors::SHALLOW | ShardErrors::DEEP);
    }
}
