//! Object name -> PG -> OSDs, step for step as Ceph's OSDMap computes it:
//! rjenkins name hash, `ceph_stable_mod` over pg_num, the HASHPSPOOL
//! placement seed, CRUSH, drop nonexistent OSDs, drop down OSDs (replicated
//! pools shift left; EC pools keep holes), primary affinity, then
//! pg_temp / primary_temp to get the acting set.

use serde::Serialize;

use crate::crush::hash::crush_hash32_2;
use crate::crush::Workspace;
use crate::error::MapError;
use crate::hash::str_hash_rjenkins;
use crate::osd::PRIMARY_AFFINITY_DEFAULT;
use crate::osdmap::OsdMap;
use crate::pg::PgId;
use crate::pool::PgPool;
use crate::{Epoch, OsdId, PoolId, ITEM_NONE};

/// The up and acting sets of one PG.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct UpActing {
    pub up: Vec<OsdId>,
    /// -1 when the up set is empty.
    pub up_primary: OsdId,
    pub acting: Vec<OsdId>,
    pub acting_primary: OsdId,
}

/// `osd map POOL OBJECT`, with Ceph's JSON keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectMapping {
    pub epoch: Epoch,
    pub pool: String,
    pub pool_id: PoolId,
    pub objname: String,
    /// The full-hash PG, e.g. `1.7fc1f406`.
    pub raw_pgid: String,
    pub pgid: String,
    pub up: Vec<OsdId>,
    pub up_primary: OsdId,
    pub acting: Vec<OsdId>,
    pub acting_primary: OsdId,
}

/// `pg map PGID`, with Ceph's JSON keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PgMapping {
    pub epoch: Epoch,
    pub raw_pgid: String,
    pub pgid: String,
    pub up: Vec<OsdId>,
    pub acting: Vec<OsdId>,
}

/// `[1,2,3]`, as Ceph prints an OSD vector.
pub fn format_osd_vec(v: &[OsdId]) -> String {
    let inner: Vec<String> = v.iter().map(i32::to_string).collect();
    format!("[{}]", inner.join(","))
}

impl ObjectMapping {
    /// `osdmap e30 pool 'rbd' (2) object 'foo' -> pg 2.7fc1f406 (2.6) ->
    /// up ([0,2,1], p0) acting ([0,2,1], p0)`
    pub fn to_line(&self) -> String {
        format!(
            "osdmap e{} pool '{}' ({}) object '{}' -> pg {} ({}) -> up ({}, p{}) acting ({}, p{})",
            self.epoch,
            self.pool,
            self.pool_id,
            self.objname,
            self.raw_pgid,
            self.pgid,
            format_osd_vec(&self.up),
            self.up_primary,
            format_osd_vec(&self.acting),
            self.acting_primary
        )
    }
}

impl PgMapping {
    /// `osdmap e30 pg 2.6 (2.6) -> up [0,2,1] acting [0,2,1]`
    pub fn to_line(&self) -> String {
        format!(
            "osdmap e{} pg {} ({}) -> up {} acting {}",
            self.epoch,
            self.raw_pgid,
            self.pgid,
            format_osd_vec(&self.up),
            format_osd_vec(&self.acting)
        )
    }
}

impl OsdMap {
    /// The raw PG (full name hash as seed) of an object, optionally in a
    /// namespace (hashed as `nspace + '\x1f' + name`, as Ceph does).
    pub fn object_to_raw_pg(
        &self,
        pool: PoolId,
        nspace: &str,
        name: &str,
    ) -> Result<PgId, MapError> {
        self.pool(pool)?;
        let hash = if nspace.is_empty() {
            str_hash_rjenkins(name.as_bytes())
        } else {
            let mut key = Vec::with_capacity(nspace.len() + 1 + name.len());
            key.extend_from_slice(nspace.as_bytes());
            key.push(0x1f);
            key.extend_from_slice(name.as_bytes());
            str_hash_rjenkins(&key)
        };
        Ok(PgId::new(pool, hash))
    }

    /// The PG an object lives in.
    pub fn object_to_pg(&self, pool: PoolId, name: &str) -> Result<PgId, MapError> {
        let raw = self.object_to_raw_pg(pool, "", name)?;
        Ok(self.pool(pool)?.raw_pg_to_pg(raw))
    }

    /// CRUSH's answer for a PG, minus OSDs that do not exist (`raw`).
    pub fn pg_to_raw_osds(&self, pg: PgId) -> Result<Vec<OsdId>, MapError> {
        let pool = self.pool(pg.pool)?;
        let mut ws = Workspace::default();
        let mut out = Vec::with_capacity(pool.size as usize);
        let weights = self.crush_weights();
        self.raw_osds_into(pool, pg, &weights, &mut ws, &mut out);
        Ok(out)
    }

    fn raw_osds_into(
        &self,
        pool: &PgPool,
        pg: PgId,
        weights: &[u32],
        ws: &mut Workspace,
        out: &mut Vec<OsdId>,
    ) {
        let pps = pool.raw_pg_to_pps(pg);
        self.crush
            .do_rule_into(pool.crush_rule, pps, pool.size as usize, weights, ws, out);
        if pool.is_replicated() {
            out.retain(|&o| self.exists(o));
        } else {
            for o in out.iter_mut() {
                if !self.exists(*o) {
                    *o = ITEM_NONE;
                }
            }
        }
    }

    /// Up set from a raw set: down OSDs dropped (replicated) or replaced
    /// by `ITEM_NONE` (erasure).
    fn raw_to_up(&self, pool: &PgPool, raw: &[OsdId]) -> Vec<OsdId> {
        if pool.is_replicated() {
            raw.iter().copied().filter(|&o| self.is_up(o)).collect()
        } else {
            raw.iter()
                .map(|&o| if self.is_up(o) { o } else { ITEM_NONE })
                .collect()
        }
    }

    /// Moves the primary according to primary affinity (only when some
    /// member has a non-default affinity).
    fn apply_primary_affinity(
        &self,
        pps: u32,
        pool: &PgPool,
        osds: &mut [OsdId],
        primary: &mut OsdId,
    ) {
        let affinity = |o: OsdId| {
            self.osd(o)
                .map_or(PRIMARY_AFFINITY_DEFAULT, |s| s.primary_affinity)
        };
        if !osds
            .iter()
            .any(|&o| o != ITEM_NONE && affinity(o) != PRIMARY_AFFINITY_DEFAULT)
        {
            return;
        }
        let mut pos: Option<usize> = None;
        for (i, &o) in osds.iter().enumerate() {
            if o == ITEM_NONE {
                continue;
            }
            let a = affinity(o);
            if a < PRIMARY_AFFINITY_DEFAULT && (crush_hash32_2(pps, o as u32) >> 16) >= a {
                // Declined; remember as a fallback and keep looking.
                pos.get_or_insert(i);
            } else {
                pos = Some(i);
                break;
            }
        }
        let Some(pos) = pos else { return };
        *primary = osds[pos];
        if pool.is_replicated() && pos > 0 {
            osds[..=pos].rotate_right(1);
        }
    }

    /// pg_temp (without down OSDs) and the temp primary for a PG.
    fn temp_osds(&self, pool: &PgPool, pg: PgId) -> (Vec<OsdId>, OsdId) {
        let pg = pool.raw_pg_to_pg(pg);
        let mut temp = Vec::new();
        if let Some(t) = self.pg_temp.get(&pg) {
            for &o in t {
                if self.is_up(o) {
                    temp.push(o);
                } else if !pool.is_replicated() {
                    temp.push(ITEM_NONE);
                }
            }
        }
        let primary = match self.primary_temp.get(&pg) {
            Some(&p) => p,
            None => temp.iter().copied().find(|&o| o != ITEM_NONE).unwrap_or(-1),
        };
        (temp, primary)
    }

    /// Ceph's `pg_to_up_acting_osds`. `pg` may be raw (a full hash seed);
    /// it is folded onto the pool's PGs. An unknown pool is an error.
    pub fn pg_to_up_acting_osds(&self, pg: PgId) -> Result<UpActing, MapError> {
        let weights = self.crush_weights();
        let mut ws = Workspace::default();
        self.pg_to_up_acting_with(pg, &weights, &mut ws)
    }

    /// [`OsdMap::pg_to_up_acting_osds`] with caller-owned CRUSH weights
    /// ([`OsdMap::crush_weights`]) and workspace, for mapping many PGs.
    pub fn pg_to_up_acting_with(
        &self,
        pg: PgId,
        weights: &[u32],
        ws: &mut Workspace,
    ) -> Result<UpActing, MapError> {
        let pool = self.pool(pg.pool)?;
        let mut raw = Vec::with_capacity(pool.size as usize);
        self.raw_osds_into(pool, pg, weights, ws, &mut raw);
        let mut up = self.raw_to_up(pool, &raw);
        let mut up_primary = up.iter().copied().find(|&o| o != ITEM_NONE).unwrap_or(-1);
        self.apply_primary_affinity(pool.raw_pg_to_pps(pg), pool, &mut up, &mut up_primary);
        let (temp, temp_primary) = self.temp_osds(pool, pg);
        let (acting, acting_primary) = if temp.is_empty() {
            let p = if temp_primary == -1 {
                up_primary
            } else {
                temp_primary
            };
            (up.clone(), p)
        } else {
            (temp, temp_primary)
        };
        Ok(UpActing {
            up,
            up_primary,
            acting,
            acting_primary,
        })
    }

    /// Up/acting sets of every PG of a pool, in seed order.
    pub fn map_pool_pgs(&self, pool: PoolId) -> Result<Vec<(PgId, UpActing)>, MapError> {
        let p = self.pool(pool)?;
        let weights = self.crush_weights();
        let mut ws = Workspace::default();
        p.pgs()
            .map(|pg| Ok((pg, self.pg_to_up_acting_with(pg, &weights, &mut ws)?)))
            .collect()
    }

    /// PGs of `pool` whose acting set contains `osd` (what an OSD hosts).
    pub fn pgs_on_osd(&self, pool: PoolId, osd: OsdId) -> Result<Vec<PgId>, MapError> {
        Ok(self
            .map_pool_pgs(pool)?
            .into_iter()
            .filter(|(_, m)| m.acting.contains(&osd) || m.up.contains(&osd))
            .map(|(pg, _)| pg)
            .collect())
    }

    /// `osd map POOL OBJECT` by pool name.
    pub fn map_object(&self, pool_name: &str, object: &str) -> Result<ObjectMapping, MapError> {
        self.map_object_ns(pool_name, "", object)
    }

    /// `osd map POOL OBJECT NSPACE`: the object inside a namespace, shown
    /// as `nspace/object` as Ceph does.
    pub fn map_object_ns(
        &self,
        pool_name: &str,
        nspace: &str,
        object: &str,
    ) -> Result<ObjectMapping, MapError> {
        let pool = self.pool_by_name(pool_name)?;
        let raw = self.object_to_raw_pg(pool.id, nspace, object)?;
        let pg = pool.raw_pg_to_pg(raw);
        let m = self.pg_to_up_acting_osds(raw)?;
        let objname = if nspace.is_empty() {
            object.to_string()
        } else {
            format!("{nspace}/{object}")
        };
        Ok(ObjectMapping {
            epoch: self.epoch,
            pool: pool.name.clone(),
            pool_id: pool.id,
            objname,
            raw_pgid: raw.to_string(),
            pgid: pg.to_string(),
            up: m.up,
            up_primary: m.up_primary,
            acting: m.acting,
            acting_primary: m.acting_primary,
        })
    }

    /// `pg map PGID`; refuses PGs beyond the pool's pg_num.
    pub fn map_pg(&self, pgid: PgId) -> Result<PgMapping, MapError> {
        let pool = self.pool(pgid.pool)?;
        if pgid.seed >= pool.pg_num {
            return Err(MapError::PgOutOfRange {
                pgid: pgid.to_string(),
                pool: pool.id,
                pg_num: pool.pg_num,
            });
        }
        let m = self.pg_to_up_acting_osds(pgid)?;
        Ok(PgMapping {
            epoch: self.epoch,
            raw_pgid: pgid.to_string(),
            pgid: pool.raw_pg_to_pg(pgid).to_string(),
            up: m.up,
            acting: m.acting,
        })
    }
}
