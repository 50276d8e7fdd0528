//! Placement group ids (`pg_t`): a pool and a seed, shown as `1.1f`.

use std::fmt;
use std::str::FromStr;

use kalmar_common::encoding::{Decode, DecodeError, Decoder, Encode};
use serde::{Serialize, Serializer};

use crate::error::MapError;
use crate::PoolId;

/// A placement group: `pool.seed` with the seed in hex (`2.1f`).
///
/// Before [`crate::pool::PgPool::raw_pg_to_pg`] the seed may be a full
/// 32-bit object hash (a "raw" pg, printed by `osd map` as `2.7fc1f406`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PgId {
    pub pool: PoolId,
    pub seed: u32,
}

impl PgId {
    pub fn new(pool: PoolId, seed: u32) -> Self {
        PgId { pool, seed }
    }
}

impl fmt::Display for PgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:x}", self.pool, self.seed)
    }
}

impl FromStr for PgId {
    type Err = MapError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MapError::BadPgId(s.to_string());
        let (pool, seed) = s.split_once('.').ok_or_else(bad)?;
        if pool.is_empty() || seed.is_empty() || seed.starts_with('+') || pool.starts_with('+') {
            return Err(bad());
        }
        let pool = pool.parse::<PoolId>().map_err(|_| bad())?;
        let seed = u32::from_str_radix(seed, 16).map_err(|_| bad())?;
        Ok(PgId { pool, seed })
    }
}

impl Serialize for PgId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Encoded like Ceph's `pg_t`: one version byte, then pool and seed. A
/// full frame per key would triple the size of large pg_temp tables.
const PG_ID_VERSION: u8 = 1;

impl Encode for PgId {
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.push(PG_ID_VERSION);
        self.pool.encode(buf);
        self.seed.encode(buf);
    }
}

impl Decode for PgId {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let v = d.u8()?;
        if v != PG_ID_VERSION {
            return Err(DecodeError::Incompatible {
                what: "pg_t",
                compat: v,
                supported: PG_ID_VERSION,
            });
        }
        Ok(PgId {
            pool: d.u64()?,
            seed: d.u32()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse() {
        let p: PgId = "1.1f".parse().expect("parses");
        assert_eq!(p, PgId::new(1, 0x1f));
        assert_eq!(p.to_string(), "1.1f");
        assert_eq!(PgId::new(2, 0x7fc1_f406).to_string(), "2.7fc1f406");
        for bad in ["", "1", ".1", "1.", "x.1", "1.g", "1.1.1", "-1.0", "1.+1"] {
            assert!(bad.parse::<PgId>().is_err(), "{bad} must not parse");
        }
        assert_eq!(PgId::from_bytes(&p.to_bytes()).expect("decodes"), p);
        let mut b = p.to_bytes();
        b[0] = 2;
        assert!(PgId::from_bytes(&b).is_err());
    }
}
