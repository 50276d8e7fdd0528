//! PG state bits with Ceph's values (`PG_STATE_*`) and Ceph's string form:
//! set names joined by `+` in Ceph's fixed order (`active+clean`), `unknown`
//! for no bits.

use std::fmt;
use std::str::FromStr;

use kalmar_common::encoding::{Decode, DecodeError, Decoder, Encode};

use crate::error::PeeringError;

/// A PG's state bitmask as `pg dump` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct PgStateFlags(pub u64);

impl PgStateFlags {
    pub const CREATING: u64 = 1 << 0;
    pub const ACTIVE: u64 = 1 << 1;
    pub const CLEAN: u64 = 1 << 2;
    pub const DOWN: u64 = 1 << 4;
    pub const RECOVERY_UNFOUND: u64 = 1 << 5;
    pub const BACKFILL_UNFOUND: u64 = 1 << 6;
    pub const PREMERGE: u64 = 1 << 7;
    pub const SCRUBBING: u64 = 1 << 8;
    pub const DEGRADED: u64 = 1 << 10;
    pub const INCONSISTENT: u64 = 1 << 11;
    pub const PEERING: u64 = 1 << 12;
    pub const REPAIR: u64 = 1 << 13;
    pub const RECOVERING: u64 = 1 << 14;
    pub const BACKFILL_WAIT: u64 = 1 << 15;
    pub const INCOMPLETE: u64 = 1 << 16;
    pub const STALE: u64 = 1 << 17;
    pub const REMAPPED: u64 = 1 << 18;
    pub const DEEP_SCRUB: u64 = 1 << 19;
    pub const BACKFILLING: u64 = 1 << 20;
    pub const BACKFILL_TOOFULL: u64 = 1 << 21;
    pub const RECOVERY_WAIT: u64 = 1 << 22;
    pub const UNDERSIZED: u64 = 1 << 23;
    pub const ACTIVATING: u64 = 1 << 24;
    pub const PEERED: u64 = 1 << 25;
    pub const SNAPTRIM: u64 = 1 << 26;
    pub const SNAPTRIM_WAIT: u64 = 1 << 27;
    pub const RECOVERY_TOOFULL: u64 = 1 << 28;
    pub const SNAPTRIM_ERROR: u64 = 1 << 29;
    pub const FORCED_RECOVERY: u64 = 1 << 30;
    pub const FORCED_BACKFILL: u64 = 1 << 31;
    pub const FAILED_REPAIR: u64 = 1 << 32;
    pub const LAGGY: u64 = 1 << 33;
    pub const WAIT: u64 = 1 << 34;

    /// Names in the order Ceph's `pg_state_string` prints them.
    pub const ORDER: &'static [(u64, &'static str)] = &[
        (Self::STALE, "stale"),
        (Self::CREATING, "creating"),
        (Self::ACTIVE, "active"),
        (Self::ACTIVATING, "activating"),
        (Self::CLEAN, "clean"),
        (Self::RECOVERY_WAIT, "recovery_wait"),
        (Self::RECOVERY_TOOFULL, "recovery_toofull"),
        (Self::RECOVERING, "recovering"),
        (Self::FORCED_RECOVERY, "forced_recovery"),
        (Self::DOWN, "down"),
        (Self::RECOVERY_UNFOUND, "recovery_unfound"),
        (Self::BACKFILL_UNFOUND, "backfill_unfound"),
        (Self::UNDERSIZED, "undersized"),
        (Self::DEGRADED, "degraded"),
        (Self::REMAPPED, "remapped"),
        (Self::PREMERGE, "premerge"),
        (Self::SCRUBBING, "scrubbing"),
        (Self::DEEP_SCRUB, "deep"),
        (Self::INCONSISTENT, "inconsistent"),
        (Self::PEERING, "peering"),
        (Self::REPAIR, "repair"),
        (Self::BACKFILL_WAIT, "backfill_wait"),
        (Self::BACKFILLING, "backfilling"),
        (Self::FORCED_BACKFILL, "forced_backfill"),
        (Self::BACKFILL_TOOFULL, "backfill_toofull"),
        (Self::INCOMPLETE, "incomplete"),
        (Self::PEERED, "peered"),
        (Self::SNAPTRIM, "snaptrim"),
        (Self::SNAPTRIM_WAIT, "snaptrim_wait"),
        (Self::SNAPTRIM_ERROR, "snaptrim_error"),
        (Self::FAILED_REPAIR, "failed_repair"),
        (Self::LAGGY, "laggy"),
        (Self::WAIT, "wait"),
    ];

    pub const fn empty() -> Self {
        PgStateFlags(0)
    }

    pub fn has(self, bits: u64) -> bool {
        self.0 & bits == bits
    }

    pub fn set(&mut self, bits: u64) {
        self.0 |= bits;
    }

    pub fn clear(&mut self, bits: u64) {
        self.0 &= !bits;
    }

    pub fn assign(&mut self, bits: u64, on: bool) {
        if on {
            self.set(bits)
        } else {
            self.clear(bits)
        }
    }

    /// The bit of one state name (`backfill_wait`), as `pg ls` filters use.
    pub fn bit_of(name: &str) -> Option<u64> {
        Self::ORDER
            .iter()
            .find(|(_, n)| *n == name)
            .map(|&(b, _)| b)
    }
}

impl fmt::Display for PgStateFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for &(bit, name) in Self::ORDER {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str("+")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("unknown")?;
        }
        Ok(())
    }
}

impl FromStr for PgStateFlags {
    type Err = PeeringError;
    /// Parses `active+clean` (any order) and `unknown`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "unknown" {
            return Ok(PgStateFlags(0));
        }
        let mut bits = 0;
        for part in s.split('+') {
            bits |= Self::bit_of(part).ok_or_else(|| PeeringError::Parse {
                what: "pg state",
                input: s.to_string(),
            })?;
        }
        Ok(PgStateFlags(bits))
    }
}

impl serde::Serialize for PgStateFlags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Encode for PgStateFlags {
    fn encode(&self, buf: &mut Vec<u8>) {
        self.0.encode(buf)
    }
}
impl Decode for PgStateFlags {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(PgStateFlags(u64::decode(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ceph_strings() {
        use PgStateFlags as F;
        assert_eq!(F(0).to_string(), "unknown");
        assert_eq!(F(F::CLEAN | F::ACTIVE).to_string(), "active+clean");
        assert_eq!(
            F(F::ACTIVE | F::UNDERSIZED | F::DEGRADED).to_string(),
            "active+undersized+degraded"
        );
        assert_eq!(
            F(F::ACTIVE | F::REMAPPED | F::BACKFILLING | F::DEGRADED).to_string(),
            "active+degraded+remapped+backfilling"
        );
        assert_eq!(
            F(F::ACTIVE | F::CLEAN | F::SCRUBBING | F::DEEP_SCRUB).to_string(),
            "active+clean+scrubbing+deep"
        );
        assert_eq!(F(F::DOWN | F::PEERING).to_string(), "down+peering");
        assert_eq!(
            "clean+active".parse::<F>().expect("parses"),
            F(F::ACTIVE | F::CLEAN)
        );
        assert!("active+bogus".parse::<F>().is_err());
    }

    proptest! {
        #[test]
        fn string_roundtrip(bits in any::<u64>()) {
            let known = PgStateFlags::ORDER.iter().fold(0, |a, (b, _)| a | b);
            let f = PgStateFlags(bits & known);
            prop_assert_eq!(f.to_string().parse::<PgStateFlags>().expect("parses"), f);
        }
    }
}
