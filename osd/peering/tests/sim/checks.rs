//! Property checks and failure reports over a simulated cluster.

use kalmar_peering::{ObjectName, PgStateFlags, ReservationKind, State};

use super::Sim;

impl Sim {
    /// Every node's PG and store, for failure reports.
    pub fn dump(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (o, n) in self.nodes.iter().enumerate() {
            let pg = n.pg.as_ref().map(|p| {
                format!(
                    "{:?} lu {} lc {} tail {} lb {} les {} missing {:?}",
                    p.state(),
                    p.info().last_update,
                    p.info().last_complete,
                    p.info().log_tail,
                    p.info().last_backfill,
                    p.info().last_epoch_started,
                    p.missing().items.keys().collect::<Vec<_>>()
                )
            });
            if let Some(p) = n.pg.as_ref() {
                let l: Vec<String> = p
                    .log()
                    .entries()
                    .map(|e| format!("{}:{}", e.version, e.oid))
                    .collect();
                out.push(format!(
                    "osd.{o} log ({}, {}] {l:?}",
                    p.log().tail(),
                    p.log().head()
                ));
            }
            let objs: Vec<String> = n
                .store
                .objects
                .iter()
                .map(|(k, (v, _))| format!("{k}@{v}"))
                .collect();
            out.push(format!(
                "osd.{o} alive={} pg={pg:?} objects={objs:?}",
                n.alive
            ));
        }
        out.push(format!(
            "acked {:?}",
            self.acked
                .iter()
                .map(|(k, (v, _))| format!("{k}@{v}"))
                .collect::<Vec<_>>()
        ));
        out
    }

    pub fn primary_state(&self) -> Option<(State, PgStateFlags)> {
        let p = self.primary();
        let pg = self.nodes.get(usize::try_from(p).ok()?)?.pg.as_ref()?;
        Some((pg.state(), pg.state_flags()))
    }

    /// A PG stuck with unfound objects (Ceph's `recovery_unfound`, which
    /// needs `mark_unfound_lost`): acceptable only if no acknowledged data is
    /// gone. Every unfound object must need a version newer than its last
    /// acknowledged one, and that acknowledged version must still be held by
    /// some live copy (so a revert finds it). Returns the unfound objects.
    pub fn check_unfound_only_unacked(&self) -> Result<Vec<ObjectName>, String> {
        let p = self.primary();
        let pg = self
            .nodes
            .get(p as usize)
            .and_then(|n| n.pg.as_ref())
            .ok_or("no primary PG")?;
        if pg.unfound().is_empty() {
            return Err("not stuck on unfound objects".into());
        }
        // Parked, not recovering: no recovery slot held anywhere, so other
        // PGs on these OSDs are not stuck behind this one.
        for (o, n) in self.nodes.iter().enumerate() {
            let held: Vec<_> = n
                .held
                .iter()
                .filter(|k| {
                    matches!(
                        k,
                        ReservationKind::LocalRecovery | ReservationKind::RemoteRecovery
                    )
                })
                .collect();
            if n.alive && !held.is_empty() {
                return Err(format!("recovery_unfound, osd.{o} still holds {held:?}"));
            }
        }
        for oid in pg.unfound() {
            let need = pg
                .missing()
                .get(oid)
                .map(|m| m.need)
                .ok_or(format!("{oid} unfound but not missing"))?;
            if let Some((av, aval)) = self.acked.get(oid) {
                if *av >= need {
                    return Err(format!("{oid}: acknowledged {av} is unfound"));
                }
                if let Some(val) = aval {
                    let held = self.nodes.iter().any(|n| {
                        n.alive
                            && n.store
                                .objects
                                .get(oid)
                                .is_some_and(|(v, x)| v >= av && (v != av || x == val))
                    });
                    if !held {
                        return Err(format!("{oid}: no copy holds acknowledged {av} any more"));
                    }
                }
            }
        }
        Ok(pg.unfound().iter().cloned().collect())
    }

    /// Checks the final contents against every acknowledged write, and
    /// that all acting members hold identical objects.
    pub fn check_converged(&self) -> Result<(), String> {
        let m = self.mapping();
        let p = m.acting_primary;
        let (state, flags) = self.primary_state().ok_or("no primary PG")?;
        if !flags.has(PgStateFlags::ACTIVE | PgStateFlags::CLEAN) {
            let pg = self.nodes[p as usize].pg.as_ref().ok_or("no pg")?;
            return Err(format!(
                "primary osd.{p} is {state:?} ({flags}), not active+clean; missing {:?} unfound {:?} info {:?} query {}",
                pg.missing(),
                pg.unfound(),
                pg.info(),
                pg.query_json()
            ));
        }
        if m.acting != m.up {
            return Err(format!(
                "still remapped: up {:?} acting {:?}",
                m.up, m.acting
            ));
        }
        let primary_objs = &self.nodes[p as usize].store.objects;
        for &o in &m.acting {
            let objs = &self.nodes[o as usize].store.objects;
            if objs != primary_objs {
                return Err(format!(
                    "osd.{o} differs from primary osd.{p}: {objs:?} vs {primary_objs:?}"
                ));
            }
            let pg = self.nodes[o as usize]
                .pg
                .as_ref()
                .ok_or(format!("osd.{o} has no PG"))?;
            if pg.info().last_update
                != self.nodes[p as usize]
                    .pg
                    .as_ref()
                    .map(|g| g.info().last_update)
                    .unwrap_or_default()
            {
                return Err(format!("osd.{o} last_update differs"));
            }
            if !pg.missing().is_empty() || !pg.info().last_backfill.is_max() {
                return Err(format!(
                    "osd.{o} still missing {:?} / {}",
                    pg.missing(),
                    pg.info().last_backfill
                ));
            }
        }
        for oid in &self.objects {
            let acked = self.acked.get(oid);
            match primary_objs.get(oid) {
                Some((v, val)) => {
                    if self.issued.get(v) != Some(&(oid.clone(), Some(*val))) {
                        return Err(format!("{oid}@{v} holds a value no client wrote"));
                    }
                    if let Some((av, _)) = acked {
                        if v < av {
                            return Err(format!("{oid}: acknowledged {av} lost, store has {v}"));
                        }
                    }
                }
                None => {
                    if let Some((av, Some(_))) = acked {
                        let deleted_later = self
                            .issued
                            .iter()
                            .any(|(v, (o, val))| o == oid && val.is_none() && v > av);
                        if !deleted_later {
                            return Err(format!(
                                "{oid}: acknowledged write {av} lost (object absent)"
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
