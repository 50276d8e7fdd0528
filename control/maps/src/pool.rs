//! Pools (`pg_pool_t`): replication, PG counts and the PG seed arithmetic.

use std::collections::BTreeMap;

use kalmar_common::{impl_enum_u8, impl_versioned};

use crate::crush::hash::crush_hash32_2;
use crate::hash::{cbits, stable_mod, str_hash_rjenkins};
use crate::pg::PgId;
use crate::PoolId;

/// Pool kinds, with Ceph's numbers (`TYPE_REPLICATED = 1`, `TYPE_ERASURE = 3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolType {
    #[default]
    Replicated,
    Erasure,
}
impl_enum_u8!(PoolType, "pool type", { Replicated = 1, Erasure = 3 });

impl PoolType {
    pub fn ceph_code(self) -> u8 {
        match self {
            PoolType::Replicated => 1,
            PoolType::Erasure => 3,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            PoolType::Replicated => "replicated",
            PoolType::Erasure => "erasure",
        }
    }
}

/// `FLAG_HASHPSPOOL`: mix the pool id into the placement seed so pools
/// with the same pg_num do not map identically.
pub const POOL_FLAG_HASHPSPOOL: u64 = 1 << 0;
/// `FLAG_FULL`: writes that grow the pool are refused (set with
/// `FLAG_FULL_QUOTA` when the pool reaches its quota).
pub const POOL_FLAG_FULL: u64 = 1 << 1;
/// `FLAG_FULL_QUOTA`: the pool reached `quota_max_objects` or
/// `quota_max_bytes`; the OSDs answer growing writes with EDQUOT.
pub const POOL_FLAG_FULL_QUOTA: u64 = 1 << 10;
/// `FLAG_NEARFULL`, `FLAG_BACKFILLFULL` (cleared when the pool is full).
pub const POOL_FLAG_NEARFULL: u64 = 1 << 11;
pub const POOL_FLAG_BACKFILLFULL: u64 = 1 << 12;
/// Ceph's names for pool flag bits, in bit order, for `osd dump`.
pub const POOL_FLAG_NAMES: &[(u64, &str)] = &[
    (1 << 0, "hashpspool"),
    (1 << 1, "full"),
    (1 << 2, "ec_overwrites"),
    (1 << 3, "incomplete_clones"),
    (1 << 4, "nodelete"),
    (1 << 5, "nopgchange"),
    (1 << 6, "nosizechange"),
    (1 << 7, "write_fadvise_dontneed"),
    (1 << 8, "noscrub"),
    (1 << 9, "nodeep-scrub"),
    (1 << 10, "full_quota"),
    (1 << 11, "nearfull"),
    (1 << 12, "backfillfull"),
    (1 << 13, "selfmanaged_snaps"),
    (1 << 14, "pool_snaps"),
    (1 << 15, "creating"),
    (1 << 16, "eio"),
    (1 << 17, "bulk"),
];

/// `object_hash` value for rjenkins (`CEPH_STR_HASH_RJENKINS`).
pub const OBJECT_HASH_RJENKINS: u8 = 2;

/// One pool.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgPool {
    pub id: PoolId,
    pub name: String,
    pub pool_type: PoolType,
    /// Replicas wanted.
    pub size: u32,
    /// Replicas needed to serve I/O.
    pub min_size: u32,
    pub crush_rule: u32,
    pub object_hash: u8,
    pub pg_num: u32,
    /// PGs used for placement (`pgp_num`, `pg_placement_num` in JSON).
    pub pgp_num: u32,
    pub flags: u64,
    /// Epoch of the last change to this pool.
    pub last_change: u32,
    /// `application` tags (`rbd`, `mgr_devicehealth`, ...) and their keys.
    pub application_metadata: BTreeMap<String, BTreeMap<String, String>>,
    /// `osd pool set-quota`: 0 = no quota.
    pub quota_max_bytes: u64,
    pub quota_max_objects: u64,
}

impl_versioned!(PgPool, "pg_pool", version = 2, compat = 1, {
    id, name, pool_type, size, min_size, crush_rule, object_hash, pg_num, pgp_num,
    flags, last_change, application_metadata,
}, since 2 { quota_max_bytes, quota_max_objects });

impl PgPool {
    /// A replicated pool as `osd pool create` makes it: rjenkins object
    /// hash, HASHPSPOOL, `pgp_num = pg_num`.
    pub fn replicated(
        id: PoolId,
        name: &str,
        size: u32,
        min_size: u32,
        pg_num: u32,
        crush_rule: u32,
    ) -> Self {
        PgPool {
            id,
            name: name.to_string(),
            pool_type: PoolType::Replicated,
            size,
            min_size,
            crush_rule,
            object_hash: OBJECT_HASH_RJENKINS,
            pg_num,
            pgp_num: pg_num,
            flags: POOL_FLAG_HASHPSPOOL,
            last_change: 0,
            application_metadata: BTreeMap::new(),
            quota_max_bytes: 0,
            quota_max_objects: 0,
        }
    }

    pub fn is_replicated(&self) -> bool {
        self.pool_type == PoolType::Replicated
    }

    pub fn has_flag(&self, flag: u64) -> bool {
        self.flags & flag != 0
    }

    /// Next power of two at or above `pg_num`, minus one.
    pub fn pg_num_mask(&self) -> u32 {
        mask_for(self.pg_num)
    }

    pub fn pgp_num_mask(&self) -> u32 {
        mask_for(self.pgp_num)
    }

    /// The raw PG of an object name: the full 32-bit name hash as seed.
    pub fn object_to_raw_pg(&self, name: &str) -> PgId {
        PgId::new(self.id, str_hash_rjenkins(name.as_bytes()))
    }

    /// Folds a raw PG onto one of this pool's `pg_num` PGs.
    pub fn raw_pg_to_pg(&self, raw: PgId) -> PgId {
        PgId::new(
            raw.pool,
            stable_mod(raw.seed, self.pg_num, self.pg_num_mask()),
        )
    }

    /// The CRUSH input for a PG (`raw_pg_to_pps`): the seed folded onto
    /// `pgp_num`, hashed with the pool id under HASHPSPOOL.
    pub fn raw_pg_to_pps(&self, pg: PgId) -> u32 {
        let folded = stable_mod(pg.seed, self.pgp_num, self.pgp_num_mask());
        if self.has_flag(POOL_FLAG_HASHPSPOOL) {
            // Ceph passes the 64-bit pool id through a 32-bit parameter.
            crush_hash32_2(folded, pg.pool as u32)
        } else {
            folded.wrapping_add(pg.pool as u32)
        }
    }

    /// Every PG of the pool, in seed order.
    pub fn pgs(&self) -> impl Iterator<Item = PgId> + '_ {
        (0..self.pg_num).map(|seed| PgId::new(self.id, seed))
    }

    /// `flags` as Ceph's comma-separated names.
    pub fn flag_names(&self) -> Vec<&'static str> {
        POOL_FLAG_NAMES
            .iter()
            .filter(|(bit, _)| self.flags & bit != 0)
            .map(|&(_, n)| n)
            .collect()
    }
}

fn mask_for(n: u32) -> u32 {
    match n {
        0 => 0,
        n => ((1u64 << cbits(n - 1)) - 1) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_common::{Decode, Encode};

    #[test]
    fn masks() {
        let mut p = PgPool::replicated(1, "rbd", 3, 2, 32, 0);
        assert_eq!(p.pg_num_mask(), 31);
        p.pg_num = 1;
        assert_eq!(p.pg_num_mask(), 0);
        p.pg_num = 100;
        assert_eq!(p.pg_num_mask(), 127);
        assert_eq!(PgPool::from_bytes(&p.to_bytes()).expect("decodes"), p);
    }
}
