//! Typed errors for map changes and lookups.

use crate::{Epoch, OsdId, PoolId};

/// Why a map operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("incremental for epoch {got} cannot apply to map epoch {have}: expected epoch {}", have + 1)]
    EpochGap { have: Epoch, got: Epoch },
    #[error("incremental belongs to cluster {got}, this map is cluster {have}")]
    FsidMismatch { have: uuid::Uuid, got: uuid::Uuid },
    #[error("osd.{osd} does not exist (max_osd {max_osd})")]
    NoSuchOsd { osd: OsdId, max_osd: i32 },
    #[error("pool {0} does not exist")]
    NoSuchPool(PoolId),
    #[error("pool '{0}' does not exist")]
    NoSuchPoolName(String),
    #[error("pg {pgid} is out of range: pool {pool} has pg_num {pg_num}")]
    PgOutOfRange {
        pgid: String,
        pool: PoolId,
        pg_num: u32,
    },
    #[error("invalid pg id '{0}': expected POOL.HEXSEED such as 1.1f")]
    BadPgId(String),
    #[error("crush rule {0} does not exist")]
    NoSuchRule(u32),
    #[error("max_osd {max_osd} is out of range 0..={limit}")]
    MaxOsdOutOfRange { max_osd: i32, limit: i32 },
    #[error("crush: {0}")]
    Crush(String),
}
