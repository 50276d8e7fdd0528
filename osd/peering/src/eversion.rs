//! Versions of PG log entries (`eversion_t`) and client request ids
//! (`osd_reqid_t`).

use std::fmt;
use std::str::FromStr;

use kalmar_common::impl_versioned;
use kalmar_maps::Epoch;
use serde::Serialize;

use crate::error::PeeringError;

/// A PG log version: the map epoch of the primary that assigned it and a
/// per-PG counter. Ordered by epoch, then version; shown as `45'123`.
///
/// A given `Eversion` is assigned by exactly one primary (the only one
/// active in that epoch), so two logs holding the same version hold the
/// same entry: log merging relies on that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Eversion {
    pub epoch: Epoch,
    pub version: u64,
}
impl_versioned!(Eversion, "eversion", version = 1, compat = 1, { epoch, version });

impl Eversion {
    /// `0'0`: before any write.
    pub const ZERO: Eversion = Eversion {
        epoch: 0,
        version: 0,
    };
    /// Greater than every real version (Ceph's `eversion_t::max()`).
    pub const MAX: Eversion = Eversion {
        epoch: Epoch::MAX,
        version: u64::MAX,
    };

    pub const fn new(epoch: Epoch, version: u64) -> Self {
        Eversion { epoch, version }
    }

    pub fn is_zero(self) -> bool {
        self == Self::ZERO
    }

    /// The key of a log entry of this version in the store's collection
    /// log: keys must increase with the version, so epoch in the high half.
    pub const fn log_key(self) -> u128 {
        ((self.epoch as u128) << 64) | self.version as u128
    }

    /// The version of a collection log key.
    pub const fn from_log_key(key: u128) -> Option<Eversion> {
        let epoch = key >> 64;
        if epoch > Epoch::MAX as u128 {
            return None;
        }
        Some(Eversion::new(epoch as Epoch, key as u64))
    }
}

impl fmt::Display for Eversion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}'{}", self.epoch, self.version)
    }
}

impl FromStr for Eversion {
    type Err = PeeringError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PeeringError::Parse {
            what: "eversion",
            input: s.to_string(),
        };
        let (e, v) = s.split_once('\'').ok_or_else(bad)?;
        Ok(Eversion::new(
            e.parse().map_err(|_| bad())?,
            v.parse().map_err(|_| bad())?,
        ))
    }
}

impl Serialize for Eversion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A client request id: who sent it (entity number and its per-instance
/// nonce) and the client's transaction id. A resent request carries the
/// same id, so the PG log's dup index can answer it without reapplying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct ReqId {
    /// `client.N`: the entity number.
    pub client: u64,
    /// Distinguishes two instances of the same entity number.
    pub nonce: u64,
    pub tid: u64,
}
impl_versioned!(ReqId, "reqid", version = 1, compat = 1, { client, nonce, tid });

impl ReqId {
    pub const fn new(client: u64, nonce: u64, tid: u64) -> Self {
        ReqId { client, nonce, tid }
    }

    /// Log entries written by the OSD itself (recovery markers) carry no
    /// client request.
    pub fn is_none(&self) -> bool {
        *self == ReqId::default()
    }
}

impl fmt::Display for ReqId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client.{}.{}:{}", self.client, self.nonce, self.tid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_common::{Decode, Encode};
    use proptest::prelude::*;

    #[test]
    fn display_parse_order() {
        let v: Eversion = "45'123".parse().expect("parses");
        assert_eq!(v, Eversion::new(45, 123));
        assert_eq!(v.to_string(), "45'123");
        assert!(Eversion::new(3, 100) < Eversion::new(4, 1));
        assert!(Eversion::new(4, 1) < Eversion::new(4, 2));
        assert!("45".parse::<Eversion>().is_err());
        assert!("a'1".parse::<Eversion>().is_err());
        assert_eq!(ReqId::new(4123, 7, 17).to_string(), "client.4123.7:17");
    }

    proptest! {
        #[test]
        fn log_key_order_is_version_order(a: (u32, u64), b: (u32, u64)) {
            let (x, y) = (Eversion::new(a.0, a.1), Eversion::new(b.0, b.1));
            prop_assert_eq!(x.cmp(&y), x.log_key().cmp(&y.log_key()));
            prop_assert_eq!(Eversion::from_log_key(x.log_key()), Some(x));
            prop_assert_eq!(Eversion::from_bytes(&x.to_bytes()).expect("decodes"), x);
        }
    }
}
