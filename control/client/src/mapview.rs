//! One OSDMap epoch as the objecter reads it on every op: where a target
//! lives (its PG, the PG's acting primary and that OSD's address), with
//! each PG's primary computed by CRUSH once per epoch, on first use, and
//! then read without a lock or an allocation.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use kalmar_maps::{EntityAddr, Epoch, OsdId, OsdMap, PgId, PoolId};

/// What an op is addressed to, as the objecter keeps it between epochs:
/// an object by its raw PG (the full name hash, folded onto the pool's
/// PGs in each epoch, so a PG split moves it), or one PG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Object { raw: PgId },
    Pg(PgId),
}

/// Where an op goes in one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    pub pgid: PgId,
    /// The acting primary, or `None` when the PG has none that is up.
    pub primary: Option<(OsdId, EntityAddr)>,
}

/// Primaries of one pool's PGs, by PG seed; -1 = no acting primary.
struct PoolPrimaries(Box<[OnceLock<OsdId>]>);

pub struct MapView {
    map: Arc<OsdMap>,
    pools: HashMap<PoolId, PoolPrimaries>,
}

impl MapView {
    pub fn new(map: OsdMap) -> MapView {
        let pools = map
            .pools
            .iter()
            .map(|(&id, p)| {
                let cells = (0..p.pg_num).map(|_| OnceLock::new()).collect();
                (id, PoolPrimaries(cells))
            })
            .collect();
        MapView {
            map: Arc::new(map),
            pools,
        }
    }

    pub fn map(&self) -> &Arc<OsdMap> {
        &self.map
    }

    pub fn epoch(&self) -> Epoch {
        self.map.epoch
    }

    /// How the objecter keeps `object` of `pool` between epochs; `None`
    /// when the pool does not exist.
    pub fn place_object(&self, pool: PoolId, object: &str) -> Option<Placement> {
        let p = self.map.pool(pool).ok()?;
        Some(Placement::Object {
            raw: p.object_to_raw_pg(object),
        })
    }

    /// Where `placement` goes in this epoch; `None` when its pool does not
    /// exist.
    pub fn locate(&self, placement: Placement) -> Option<Located> {
        let pgid = match placement {
            Placement::Object { raw } => self.map.pool(raw.pool).ok()?.raw_pg_to_pg(raw),
            Placement::Pg(pg) => {
                self.map.pool(pg.pool).ok()?;
                pg
            }
        };
        let primary = self.primary(pgid);
        let addr = (primary >= 0)
            .then(|| self.map.osd(primary))
            .flatten()
            .filter(|s| s.is_up())
            .map(|s| (primary, s.addrs.public));
        Some(Located {
            pgid,
            primary: addr,
        })
    }

    fn primary(&self, pgid: PgId) -> OsdId {
        let compute = || {
            self.map
                .pg_to_up_acting_osds(pgid)
                .map(|u| u.acting_primary)
                .unwrap_or(-1)
        };
        match self
            .pools
            .get(&pgid.pool)
            .and_then(|p| p.0.get(pgid.seed as usize))
        {
            Some(cell) => *cell.get_or_init(compute),
            // A PG past the pool's pg_num (a PG command for a PG the map
            // does not have): not cached, the OSD will say so.
            None => compute(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cluster_map, mark_down, POOL};

    #[test]
    fn locates_like_the_map_and_follows_a_down_primary() {
        let map = cluster_map(4, 32, 3);
        let view = MapView::new(map.clone());
        let place = view.place_object(POOL, "obj").expect("pool");
        let at = view.locate(place).expect("pool");
        let pg = map.object_to_pg(POOL, "obj").expect("pg");
        let primary = map.pg_to_up_acting_osds(pg).expect("pg").acting_primary;
        assert_eq!(at.pgid, pg);
        assert_eq!(at.primary.map(|p| p.0), Some(primary));
        // Cached answers stay right on a second call.
        assert_eq!(view.locate(place), Some(at));

        let down = MapView::new(mark_down(&map, primary));
        let moved = down.locate(place).expect("pool");
        assert_eq!(moved.pgid, pg);
        assert_ne!(moved.primary.map(|p| p.0), Some(primary));
        assert!(view.place_object(99, "obj").is_none());
        assert!(view.locate(Placement::Pg(PgId::new(99, 0))).is_none());
    }
}
